//! The outbound side of the SMTP gateway against real servers: the relay
//! hands mail to Postfix, which delivers into Dovecot; direct delivery
//! finds Postfix through MX records served by a small DNS responder in
//! this file, queues durably in redb, retries, and bounces to the sender.

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use common::{
    eventually,
    testbed::{Dovecot, Postfix, RawImap},
};
use hickory_resolver::proto::{
    op::{Message, ResponseCode},
    rr::{
        rdata::{A, MX},
        Name, RData, Record,
    },
};
use leadgate::{
    smtp::{
        config::{DirectConfig, RelayConfig, RelayTls},
        mx::MxClient,
        queue::{self, Queue, QueueConfig},
        relay::{Relay, RelayError},
    },
    store::Store,
};
use tokio::sync::watch;

const CUSTOMER: (&str, &str) = ("customer", "customer-pw");
const ALICE: (&str, &str) = ("alice", "alice-pw");
const WAIT: Duration = Duration::from_secs(30);

/// Dovecot with the customer and alice, Postfix delivering customer.test
/// and example.com into it.
struct Servers {
    // Fields drop in order: the servers stop before their directory goes
    // (Postfix is stopped through its config and pid file there).
    postfix: Postfix,
    dovecot: Dovecot,
    dir: tempfile::TempDir,
}

impl Servers {
    fn start() -> Servers {
        let dir = tempfile::tempdir().unwrap();
        let dovecot = Dovecot::start(dir.path(), &[CUSTOMER, ALICE], None, false);
        let postfix = Postfix::start(
            dir.path(),
            dovecot.lmtp_port,
            &["customer.test", "example.com"],
            false,
        );
        Servers {
            postfix,
            dovecot,
            dir,
        }
    }

    fn imap(&self, account: (&str, &str)) -> RawImap {
        RawImap::login(self.dovecot.imap_port, account.0, account.1)
    }

    fn inbox_count(&self, account: (&str, &str)) -> usize {
        let r = self.imap(account).run("STATUS INBOX (MESSAGES)");
        r.split("MESSAGES ")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Waits until the account's INBOX holds `n` messages; returns them all.
    fn wait_inbox(&self, account: (&str, &str), n: usize) -> String {
        let ok = eventually(WAIT, || self.inbox_count(account) >= n);
        assert!(
            ok,
            "{} has {} messages, expected {n}; see {}/postfix/postfix.log",
            account.0,
            self.inbox_count(account),
            self.dir.path().display()
        );
        let mut imap = self.imap(account);
        imap.run("SELECT INBOX");
        imap.run("FETCH 1:* (BODY.PEEK[])")
    }

    fn relay(&self, timeout_secs: u64) -> Relay {
        let config = RelayConfig {
            host: "127.0.0.1".into(),
            port: self.postfix.smtp_port,
            tls: RelayTls::None,
            timeout_secs,
            ..RelayConfig::default()
        };
        Relay::new(&config, "leadgate.test").unwrap()
    }
}

fn message(from: &str, to: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{}@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello,\r\n.a line that starts with a dot\r\nBest\r\n",
        subject.replace(' ', "-")
    )
    .into_bytes()
}

fn rcpts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------- relay

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_mail_reaches_the_recipients_mailbox() {
    let s = Servers::start();
    let relay = s.relay(10);
    relay
        .send(
            "alice@example.com",
            &rcpts(&["customer@customer.test"]),
            &message(
                "alice@example.com",
                "customer@customer.test",
                "Relayed offer",
            ),
        )
        .await
        .expect("postfix accepts from loopback");
    let inbox = s.wait_inbox(CUSTOMER, 1);
    assert!(inbox.contains("Subject: Relayed offer"), "{inbox}");
    // The data was dot-stuffed on the way and unstuffed by Postfix.
    assert!(
        inbox.contains("\r\n.a line that starts with a dot\r\n"),
        "{inbox}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_gives_a_temporary_error() {
    let mut s = Servers::start();
    let relay = s.relay(5);
    s.postfix.stop();
    let started = Instant::now();
    let err = relay
        .send(
            "alice@example.com",
            &rcpts(&["customer@customer.test"]),
            &message("alice@example.com", "customer@customer.test", "While down"),
        )
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, RelayError::Temporary { code: None, .. }),
        "{err:?}"
    );
    let reply = err.to_reply();
    assert_eq!(reply.code, 451);
    assert_eq!((reply.status.0, reply.status.1), (4, 4), "{reply:?}");
    assert!(
        reply.text.contains(&s.postfix.smtp_port.to_string()),
        "{reply:?}"
    );

    s.postfix.restart();
    relay
        .send(
            "alice@example.com",
            &rcpts(&["customer@customer.test"]),
            &message(
                "alice@example.com",
                "customer@customer.test",
                "After restart",
            ),
        )
        .await
        .expect("relay works again once postfix is back");
    let inbox = s.wait_inbox(CUSTOMER, 1);
    assert!(inbox.contains("Subject: After restart"), "{inbox}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_5xx_passes_through_with_its_text() {
    let s = Servers::start();
    let relay = s.relay(10);
    // Postfix refuses the syntax of the second recipient: 501 5.1.3.
    let err = relay
        .send(
            "alice@example.com",
            &rcpts(&["customer@customer.test", "someone@-bad-.com"]),
            &message("alice@example.com", "customer@customer.test", "Refused"),
        )
        .await
        .unwrap_err();
    match &err {
        RelayError::Permanent {
            code,
            enhanced,
            text,
        } => {
            assert_eq!(*code, 501);
            assert_eq!(*enhanced, Some((5, 1, 3)));
            assert_eq!(text, "Bad recipient address syntax");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    let reply = err.to_reply();
    assert_eq!(
        (reply.code, reply.status, reply.text.as_str()),
        (501, (5, 1, 3), "Bad recipient address syntax")
    );
    // The whole message was refused: the good recipient got nothing. The
    // next message is the first to arrive.
    relay
        .send(
            "alice@example.com",
            &rcpts(&["customer@customer.test"]),
            &message("alice@example.com", "customer@customer.test", "Accepted"),
        )
        .await
        .unwrap();
    let inbox = s.wait_inbox(CUSTOMER, 1);
    assert!(inbox.contains("Subject: Accepted"), "{inbox}");
    assert!(!inbox.contains("Subject: Refused"), "{inbox}");
    assert_eq!(s.inbox_count(CUSTOMER), 1);
}

// --------------------------------------------------------------- direct

/// An authoritative DNS server for the test zones on 127.0.0.1 (UDP).
struct TestDns {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn key(n: &Name) -> String {
    n.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

impl TestDns {
    fn start() -> TestDns {
        let mx = |pref, host: &str| RData::MX(MX::new(pref, name(host)));
        let a = |ip: [u8; 4]| RData::A(A(Ipv4Addr::from(ip)));
        let zone: Vec<Record> = [
            ("customer.test.", mx(10, "mx.customer.test.")),
            ("mx.customer.test.", a([127, 0, 0, 1])),
            ("example.com.", mx(10, "mx.example.com.")),
            ("mx.example.com.", a([127, 0, 0, 1])),
            // Nothing listens on 127.0.0.2: connections are refused.
            ("dead.test.", mx(10, "mx.dead.test.")),
            ("mx.dead.test.", a([127, 0, 0, 2])),
            // RFC 7505 null MX.
            ("nomail.test.", RData::MX(MX::new(0, Name::root()))),
            // No MX: the domain is its own mail host.
            ("plain.test.", a([127, 0, 0, 1])),
            ("multi.test.", mx(20, "b.multi.test.")),
            ("multi.test.", mx(10, "a.multi.test.")),
        ]
        .into_iter()
        .map(|(n, rdata)| Record::from_rdata(name(n), 60, rdata))
        .collect();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stopping.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if let Ok(bytes) = answer(&query, &zone).to_vec() {
                    let _ = socket.send_to(&bytes, peer);
                }
            }
        });
        TestDns {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

fn answer(query: &Message, zone: &[Record]) -> Message {
    let mut resp = Message::response(query.metadata.id, query.metadata.op_code);
    resp.metadata.authoritative = true;
    resp.metadata.recursion_desired = query.metadata.recursion_desired;
    for q in &query.queries {
        resp.add_query(q.clone());
        let wanted = key(q.name());
        let owned: Vec<&Record> = zone.iter().filter(|r| key(&r.name) == wanted).collect();
        if owned.is_empty() {
            resp.metadata.response_code = ResponseCode::NXDomain;
        }
        for r in owned {
            if r.record_type() == q.query_type() {
                resp.add_answer(r.clone());
            }
        }
    }
    resp
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn direct_config(dns: &TestDns, smtp_port: u16) -> DirectConfig {
    DirectConfig {
        nameservers: vec![dns.addr],
        port: smtp_port,
        timeout_secs: 10,
        helo_name: Some("leadgate.test".into()),
        ..DirectConfig::default()
    }
}

fn queue(store: &Store, direct: &DirectConfig, max_age: Duration, retry: Duration) -> Arc<Queue> {
    let mut config = QueueConfig::from_direct(direct, "leadgate.test");
    config.max_age = max_age;
    config.retry_schedule = vec![retry];
    let mx = MxClient::new(direct, "leadgate.test").unwrap();
    Arc::new(Queue::with_parts(store.clone(), mx, config))
}

/// Runs the queue worker until the returned sender says stop (or drops).
fn spawn_worker(q: &Arc<Queue>) -> watch::Sender<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(queue::run(q.clone(), rx));
    tx
}

async fn wait_queue_empty(q: &Queue) {
    let deadline = Instant::now() + WAIT;
    loop {
        let entries = q.entries().await.unwrap();
        if entries.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "queue not empty: {entries:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn store_at(dir: &Path) -> Store {
    Store::open(&dir.join("leadgate.redb")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_lookup_follows_preference_implicit_mx_and_null_mx() {
    let dns = TestDns::start();
    let mx = MxClient::new(&direct_config(&dns, 25), "leadgate.test").unwrap();
    let hosts = |h: Vec<leadgate::smtp::mx::MxHost>| -> Vec<String> {
        h.into_iter().map(|h| h.name).collect()
    };
    assert_eq!(
        hosts(mx.mx_hosts("customer.test").await.unwrap()),
        ["mx.customer.test"]
    );
    assert_eq!(
        hosts(mx.mx_hosts("multi.test").await.unwrap()),
        ["a.multi.test", "b.multi.test"]
    );
    assert_eq!(
        hosts(mx.mx_hosts("plain.test").await.unwrap()),
        ["plain.test"]
    );
    let null = mx.mx_hosts("nomail.test").await.unwrap_err();
    assert!(null.is_permanent() && null.status == (5, 1, 10), "{null:?}");
    let missing = mx.mx_hosts("missing.test").await.unwrap_err();
    assert!(
        missing.is_permanent() && missing.status == (5, 1, 2),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_delivery_uses_mx_and_queues_durably() {
    let s = Servers::start();
    let dns = TestDns::start();
    let direct = direct_config(&dns, s.postfix.smtp_port);
    let data = tempfile::tempdir().unwrap();

    // Queued with no worker running: once enqueue resolves, the message is
    // on disk and survives the store being closed and opened again.
    let store = store_at(data.path());
    let q = queue(
        &store,
        &direct,
        Duration::from_secs(3600),
        Duration::from_secs(60),
    );
    let id = q
        .enqueue(
            "alice@example.com",
            &rcpts(&["customer@customer.test"]),
            &message(
                "alice@example.com",
                "customer@customer.test",
                "Direct offer",
            ),
        )
        .await
        .unwrap();
    drop(q);
    store.close();
    drop(store);

    let store = store_at(data.path());
    let q = queue(
        &store,
        &direct,
        Duration::from_secs(3600),
        Duration::from_secs(60),
    );
    let entries = q.entries().await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, id);
    assert_eq!(entries[0].1.recipients[0].address, "customer@customer.test");
    assert_eq!(entries[0].1.attempts, 0);

    let stop = spawn_worker(&q);
    let inbox = s.wait_inbox(CUSTOMER, 1);
    assert!(inbox.contains("Subject: Direct offer"), "{inbox}");
    wait_queue_empty(&q).await;
    let _ = stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_is_retried_after_a_temporary_failure() {
    let mut s = Servers::start();
    let dns = TestDns::start();
    let direct = direct_config(&dns, s.postfix.smtp_port);
    let data = tempfile::tempdir().unwrap();
    let store = store_at(data.path());
    let q = queue(
        &store,
        &direct,
        Duration::from_secs(3600),
        Duration::from_secs(3),
    );

    s.postfix.stop();
    let stop = spawn_worker(&q);
    q.enqueue(
        "alice@example.com",
        &rcpts(&["customer@customer.test"]),
        &message(
            "alice@example.com",
            "customer@customer.test",
            "Retried offer",
        ),
    )
    .await
    .unwrap();

    // The first attempt fails: the entry stays, rescheduled.
    let deadline = Instant::now() + WAIT;
    let entry = loop {
        let entries = q.entries().await.unwrap();
        if let Some((_, e)) = entries.first().filter(|(_, e)| e.attempts >= 1) {
            break e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no failed attempt recorded: {entries:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(entry.attempts, 1, "{entry:?}");
    assert!(entry.next_attempt_ms > entry.created_ms, "{entry:?}");
    let err = entry.recipients[0]
        .last_error
        .clone()
        .expect("error recorded");
    assert!(!err.is_permanent(), "{err:?}");
    assert!(err.text.contains("mx.customer.test"), "{err:?}");
    assert!(entry.last_error.is_some());
    assert_eq!(s.inbox_count(CUSTOMER), 0);

    s.postfix.restart();
    let inbox = s.wait_inbox(CUSTOMER, 1);
    assert!(inbox.contains("Subject: Retried offer"), "{inbox}");
    wait_queue_empty(&q).await;
    let _ = stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_past_its_maximum_age_bounces_to_the_sender() {
    let s = Servers::start();
    let dns = TestDns::start();
    let direct = direct_config(&dns, s.postfix.smtp_port);
    let data = tempfile::tempdir().unwrap();
    let store = store_at(data.path());
    let q = queue(
        &store,
        &direct,
        Duration::from_secs(2),
        Duration::from_secs(1),
    );
    let stop = spawn_worker(&q);
    q.enqueue(
        "alice@example.com",
        &rcpts(&["bob@dead.test"]),
        &message("alice@example.com", "bob@dead.test", "Never arrives"),
    )
    .await
    .unwrap();

    let inbox = s.wait_inbox(ALICE, 1);
    assert!(
        inbox.contains("Subject: Undelivered Mail Returned to Sender"),
        "{inbox}"
    );
    assert!(inbox.contains("MAILER-DAEMON@leadgate.test"), "{inbox}");
    assert!(
        inbox.contains("Final-Recipient: rfc822; bob@dead.test"),
        "{inbox}"
    );
    assert!(
        inbox.contains("127.0.0.2"),
        "the last error is quoted: {inbox}"
    );
    assert!(
        inbox.contains("Subject: Never arrives"),
        "original headers: {inbox}"
    );
    // The bounce went out with an empty sender.
    assert!(inbox.contains("Return-Path: <>"), "{inbox}");
    wait_queue_empty(&q).await;
    let _ = stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_recipient_bounces_at_once_and_the_others_are_delivered() {
    let s = Servers::start();
    let dns = TestDns::start();
    let direct = direct_config(&dns, s.postfix.smtp_port);
    let data = tempfile::tempdir().unwrap();
    let store = store_at(data.path());
    // A long maximum age: the bounce comes from the refusal, not the age.
    let q = queue(
        &store,
        &direct,
        Duration::from_secs(3600),
        Duration::from_secs(60),
    );
    let stop = spawn_worker(&q);
    q.enqueue(
        "alice@example.com",
        &rcpts(&["customer@customer.test", "nobody@nomail.test"]),
        &message(
            "alice@example.com",
            "customer@customer.test",
            "Two recipients",
        ),
    )
    .await
    .unwrap();

    let delivered = s.wait_inbox(CUSTOMER, 1);
    assert!(delivered.contains("Subject: Two recipients"), "{delivered}");
    let bounce = s.wait_inbox(ALICE, 1);
    assert!(
        bounce.contains("Final-Recipient: rfc822; nobody@nomail.test"),
        "{bounce}"
    );
    assert!(bounce.contains("Status: 5.1.10"), "{bounce}");
    assert!(
        !bounce.contains("Final-Recipient: rfc822; customer@customer.test"),
        "{bounce}"
    );
    wait_queue_empty(&q).await;
    let _ = stop.send(true);
}

// ------------------------------------------------------------------ TLS

/// A scripted SMTP server for what the testbed's Postfix does not offer:
/// STARTTLS, implicit TLS and AUTH PLAIN. It logs every command line with
/// whether TLS was on (`tls MAIL FROM:<...>`), and each message's data.
struct FakeSmtp {
    addr: SocketAddr,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone, Copy)]
struct FakeOptions {
    implicit: bool,
    login: Option<(&'static str, &'static str)>,
}

impl FakeSmtp {
    async fn start(cert: &Path, key: &Path, opts: FakeOptions) -> FakeSmtp {
        let acceptor =
            tokio_rustls::TlsAcceptor::from(leadgate::net::tls::server_config(cert, key).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let shared = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, log) = (acceptor.clone(), shared.clone());
                tokio::spawn(async move {
                    if opts.implicit {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            fake_session(tls, true, opts, &log).await;
                        }
                        return;
                    }
                    if let Some(tcp) = fake_session(tcp, false, opts, &log).await {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            fake_session(tls, true, opts, &log).await;
                        }
                    }
                });
            }
        });
        FakeSmtp { addr, log, task }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// Serves commands until QUIT (None) or STARTTLS (the stream, to upgrade).
async fn fake_session<S>(
    stream: S,
    tls: bool,
    opts: FakeOptions,
    log: &std::sync::Mutex<Vec<String>>,
) -> Option<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use base64::Engine;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let mode = if tls { "tls" } else { "plain" };
    let mut s = BufReader::new(stream);
    if tls == opts.implicit {
        // A greeting on a new connection, not after STARTTLS.
        s.get_mut()
            .write_all(b"220 fake.test ESMTP\r\n")
            .await
            .ok()?;
    }
    let mut authed = opts.login.is_none();
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end().to_owned();
        log.lock().unwrap().push(format!("{mode} {line}"));
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            let mut r = String::from("250-fake.test\r\n");
            if !tls {
                r.push_str("250-STARTTLS\r\n");
            }
            if opts.login.is_some() {
                r.push_str("250-AUTH PLAIN\r\n");
            }
            r.push_str("250 8BITMIME\r\n");
            r
        } else if upper == "STARTTLS" && !tls {
            s.get_mut().write_all(b"220 2.0.0 Ready\r\n").await.ok()?;
            return Some(s.into_inner());
        } else if let Some(b64) = line.strip_prefix("AUTH PLAIN ") {
            let (user, pw) = opts.login.unwrap_or_default();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default();
            if decoded == format!("\0{user}\0{pw}").as_bytes() {
                authed = true;
                "235 2.7.0 Authenticated\r\n".into()
            } else {
                "535 5.7.8 Bad credentials\r\n".into()
            }
        } else if upper.starts_with("MAIL FROM") && !authed {
            "530 5.7.0 Authentication required\r\n".into()
        } else if upper.starts_with("MAIL FROM") || upper.starts_with("RCPT TO") {
            "250 2.1.0 Ok\r\n".into()
        } else if upper == "DATA" {
            s.get_mut().write_all(b"354 Go ahead\r\n").await.ok()?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if s.read_line(&mut l).await.ok()? == 0 {
                    return None;
                }
                if l == ".\r\n" {
                    break;
                }
                data.push_str(&l);
            }
            log.lock().unwrap().push(format!("{mode} data {data}"));
            "250 2.0.0 Ok: queued as FAKE1\r\n".into()
        } else if upper == "QUIT" {
            let _ = s.get_mut().write_all(b"221 2.0.0 Bye\r\n").await;
            return None;
        } else {
            "502 5.5.1 Not implemented\r\n".into()
        };
        s.get_mut().write_all(reply.as_bytes()).await.ok()?;
    }
}

/// A self-signed certificate for localhost / 127.0.0.1, as files.
fn cert_files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = common::self_signed();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    (c, k)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_logs_in_only_over_tls_it_trusts() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_files(dir.path());
    let pw_file = dir.path().join("relay-password");
    std::fs::write(&pw_file, "relay-secret\n").unwrap();
    for implicit in [false, true] {
        let fake = FakeSmtp::start(
            &cert,
            &key,
            FakeOptions {
                implicit,
                login: Some(("sales", "relay-secret")),
            },
        )
        .await;
        let config = RelayConfig {
            host: "127.0.0.1".into(),
            port: fake.addr.port(),
            tls: if implicit {
                RelayTls::Implicit
            } else {
                RelayTls::Starttls
            },
            username: Some("sales".into()),
            password_file: Some(pw_file.clone()),
            ca_file: Some(cert.clone()),
            timeout_secs: 5,
            ..RelayConfig::default()
        };
        let body = message("alice@example.com", "customer@customer.test", "Over TLS");
        Relay::new(&config, "leadgate.test")
            .unwrap()
            .send(
                "alice@example.com",
                &rcpts(&["customer@customer.test"]),
                &body,
            )
            .await
            .expect("relay over TLS with the configured CA");
        let log = fake.log();
        assert!(
            log.iter().any(|l| l.starts_with("tls AUTH PLAIN ")),
            "{log:?}"
        );
        assert!(
            !log.iter()
                .any(|l| l.starts_with("plain AUTH") || l.starts_with("plain MAIL")),
            "nothing but EHLO and STARTTLS in clear: {log:?}"
        );
        assert!(
            log.iter()
                .any(|l| l.starts_with("tls data ") && l.contains("Subject: Over TLS")),
            "{log:?}"
        );

        // Without the CA the self-signed upstream is not trusted, and no
        // password is sent.
        let untrusted = RelayConfig {
            ca_file: None,
            ..config
        };
        let before = fake.log().len();
        let err = Relay::new(&untrusted, "leadgate.test")
            .unwrap()
            .send(
                "alice@example.com",
                &rcpts(&["customer@customer.test"]),
                &body,
            )
            .await
            .unwrap_err();
        assert!(err.is_temporary(), "{err:?}");
        assert!(err.to_string().contains("TLS"), "{err}");
        let after = fake.log();
        assert!(
            !after[before..].iter().any(|l| l.contains("AUTH")),
            "{after:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_delivery_uses_starttls_when_offered() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_files(dir.path());
    let fake = FakeSmtp::start(
        &cert,
        &key,
        FakeOptions {
            implicit: false,
            login: None,
        },
    )
    .await;
    let dns = TestDns::start();
    let direct = direct_config(&dns, fake.addr.port());
    let body = message(
        "alice@example.com",
        "customer@customer.test",
        "Opportunistic",
    );
    let mx = MxClient::new(&direct, "leadgate.test").unwrap();
    let outcomes = mx
        .deliver(
            "customer.test",
            "alice@example.com",
            &rcpts(&["customer@customer.test"]),
            &body,
        )
        .await;
    assert!(
        matches!(
            &outcomes[..],
            [leadgate::smtp::mx::RcptOutcome::Delivered { .. }]
        ),
        "{outcomes:?}"
    );
    let log = fake.log();
    assert!(log.iter().any(|l| l == "plain STARTTLS"), "{log:?}");
    assert!(
        log.iter()
            .any(|l| l.starts_with("tls MAIL FROM:<alice@example.com>")),
        "{log:?}"
    );

    // With require_tls the certificate must be valid for mx.customer.test:
    // this self-signed one is not, so the recipient waits for a retry.
    let strict = DirectConfig {
        require_tls: true,
        ..direct
    };
    let mx = MxClient::new(&strict, "leadgate.test").unwrap();
    let outcomes = mx
        .deliver(
            "customer.test",
            "alice@example.com",
            &rcpts(&["customer@customer.test"]),
            &body,
        )
        .await;
    match &outcomes[..] {
        [leadgate::smtp::mx::RcptOutcome::Failed(f)] => {
            assert!(!f.is_permanent(), "{f:?}");
            assert!(f.text.contains("TLS"), "{f:?}");
        }
        other => panic!("expected a temporary failure, got {other:?}"),
    }
}
