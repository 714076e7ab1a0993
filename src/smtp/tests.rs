//! The protocol machine driven over an in-memory pipe, with a handler that
//! records submissions and answers with a configured reply. Logins go
//! through the real Authenticator over a store in a temporary directory.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{engine::general_purpose::STANDARD, Engine};
use rustls::{
    pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName},
    ClientConfig, RootCertStore, ServerConfig,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream},
    sync::watch,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;
use crate::{
    auth::AuthConfig,
    auth::{hash_password, AuthFailure},
    net::config::ListenerTls,
    net::listener::Admission,
    store::{
        users::{Role, User},
        Store,
    },
};

const HOST: &str = "mx.leadgate.test";
const SHARED: &str = "sales@example.com";

#[derive(Default)]
struct Recorder {
    submissions: Mutex<Vec<Submission>>,
    reply: Mutex<Option<Reply>>,
    refuse: Mutex<Option<(String, Reply)>>,
}

impl SubmissionHandler for Recorder {
    fn check_recipient<'a>(
        &'a self,
        _user: &'a Principal,
        rcpt: &'a str,
    ) -> BoxFuture<'a, Result<(), Reply>> {
        let refusal = match &*self.refuse.lock().unwrap() {
            Some((addr, reply)) if addr.eq_ignore_ascii_case(rcpt) => Some(reply.clone()),
            _ => None,
        };
        Box::pin(async move { refusal.map_or(Ok(()), Err) })
    }

    fn submit<'a>(&'a self, sub: Submission) -> BoxFuture<'a, Reply> {
        self.submissions.lock().unwrap().push(sub);
        let reply = self
            .reply
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| Reply::ok("Queued as T1"));
        Box::pin(async move { reply })
    }
}

impl Recorder {
    fn taken(&self) -> Vec<Submission> {
        std::mem::take(&mut *self.submissions.lock().unwrap())
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    auth: Arc<Authenticator>,
    handler: Arc<Recorder>,
}

/// alice (own address Alice@Example.com), bob (no address), carol (disabled).
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("leadgate.redb")).unwrap();
    let cfg = AuthConfig {
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        ..Default::default()
    };
    let users = [
        ("alice", "alice-pw", Some("Alice@Example.com"), true),
        ("bob", "bob-pw", None, true),
        ("carol", "carol-pw", Some("carol@example.com"), false),
    ];
    for (name, pw, email, enabled) in users {
        store
            .user_add(
                "test",
                User {
                    name: name.into(),
                    role: Role::Rep,
                    enabled,
                    password_hash: hash_password(pw, &cfg).unwrap(),
                    email: email.map(Into::into),
                    display_name: None,
                    created: 0,
                    changed: 0,
                },
            )
            .await
            .unwrap()
            .unwrap();
    }
    Fixture {
        _dir: dir,
        auth: Arc::new(Authenticator::new(store, cfg)),
        handler: Arc::new(Recorder::default()),
    }
}

fn config() -> SmtpConfig {
    SmtpConfig {
        shared_address: SHARED.into(),
        max_message_bytes: 2048,
        max_recipients: 3,
        ..Default::default()
    }
}

struct Client<C> {
    io: C,
    buf: Vec<u8>,
    /// Keeps the session's shutdown channel open; `send(true)` stops it.
    shutdown: Arc<watch::Sender<bool>>,
    session: Option<tokio::task::JoinHandle<()>>,
}

impl<C: AsyncRead + AsyncWrite + Unpin> Client<C> {
    async fn send(&mut self, text: &str) {
        self.send_bytes(text.as_bytes()).await;
    }

    async fn send_bytes(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
        self.io.flush().await.unwrap();
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8(line).expect("replies are UTF-8");
                assert!(line.ends_with("\r\n"), "reply line without CRLF: {line:?}");
                return line.trim_end_matches("\r\n").to_owned();
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), self.io.read(&mut chunk))
                .await
                .expect("a reply within 10 s")
                .unwrap_or(0);
            assert!(
                n > 0,
                "connection closed; unterminated: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// One whole reply; the lines of a multi-line reply joined with '\n'.
    async fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n")).await;
        self.reply().await
    }

    async fn expect_closed(&mut self) {
        assert!(self.buf.is_empty(), "unread: {:?}", self.buf);
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), self.io.read(&mut chunk))
            .await
            .expect("the server closes within 10 s")
            .unwrap_or(0);
        assert_eq!(
            n,
            0,
            "expected the connection to close, got {:?}",
            String::from_utf8_lossy(&chunk[..n])
        );
    }

    async fn ehlo(&mut self) -> Vec<String> {
        let reply = self.cmd("EHLO client.example").await;
        assert!(
            reply.starts_with(&format!("250-{HOST} Hello client.example")),
            "{reply}"
        );
        reply.lines().skip(1).map(|l| l[4..].to_owned()).collect()
    }

    async fn login(&mut self, user: &str, password: &str) {
        self.ehlo().await;
        let reply = self
            .cmd(&format!("AUTH PLAIN {}", plain(user, password)))
            .await;
        assert_eq!(reply, "235 2.7.0 Authentication successful");
    }
}

fn plain(user: &str, password: &str) -> String {
    STANDARD.encode(format!("\0{user}\0{password}"))
}

fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

struct Start {
    mode: ListenerTls,
    config: SmtpConfig,
    tls: Option<TlsAcceptor>,
    admission: Admission,
}

impl Default for Start {
    fn default() -> Self {
        Start {
            mode: ListenerTls::Plaintext,
            config: config(),
            tls: None,
            admission: Admission::Accepted,
        }
    }
}

/// A session over a duplex pipe; the greeting is not read yet.
fn open(fx: &Fixture, start: Start) -> Client<DuplexStream> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let ctx = Arc::new(SmtpCtx {
        hostname: HOST.into(),
        config: Arc::new(start.config),
        auth: fx.auth.clone(),
        tls: start.tls,
        handler: fx.handler.clone(),
        sessions: None,
    });
    let (tx, rx) = watch::channel(false);
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let session = tokio::spawn(run(ctx, server, peer, start.mode, start.admission, rx));
    Client {
        io: client,
        buf: Vec::new(),
        shutdown: Arc::new(tx),
        session: Some(session),
    }
}

/// A plaintext (loopback-style) session past the greeting.
async fn connect(fx: &Fixture) -> Client<DuplexStream> {
    connect_with(fx, config()).await
}

async fn connect_with(fx: &Fixture, config: SmtpConfig) -> Client<DuplexStream> {
    let mut c = open(
        fx,
        Start {
            config,
            ..Default::default()
        },
    );
    assert_eq!(c.reply().await, format!("220 {HOST} ESMTP leadgate"));
    c
}

/// Logged in as alice, with a transaction ready for DATA or BDAT.
async fn ready_for_data(fx: &Fixture) -> Client<DuplexStream> {
    let mut c = connect(fx).await;
    c.login("alice", "alice-pw").await;
    assert!(c
        .cmd("MAIL FROM:<alice@example.com>")
        .await
        .starts_with("250 2.1.0"));
    assert!(c
        .cmd("RCPT TO:<lead@customer.example>")
        .await
        .starts_with("250 2.1.5"));
    c
}

fn tls_pair() -> (TlsAcceptor, TlsConnector) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_der = cert.der().clone();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key_der)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        TlsAcceptor::from(Arc::new(server)),
        TlsConnector::from(Arc::new(client)),
    )
}

async fn upgrade(
    c: Client<DuplexStream>,
    connector: &TlsConnector,
) -> Client<tokio_rustls::client::TlsStream<DuplexStream>> {
    assert!(c.buf.is_empty(), "plaintext left over: {:?}", c.buf);
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, c.io).await.expect("TLS handshake");
    Client {
        io: tls,
        buf: Vec::new(),
        shutdown: c.shutdown,
        session: c.session,
    }
}

// ---- Capabilities -------------------------------------------------------

#[tokio::test]
async fn ehlo_on_plaintext_listener_offers_auth_until_logged_in() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    let caps = c.ehlo().await;
    assert_eq!(
        caps,
        [
            "PIPELINING",
            "SIZE 2048",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "CHUNKING",
            "AUTH PLAIN LOGIN"
        ]
    );
    assert!(!caps.iter().any(|c| c == "STARTTLS" || c == "SMTPUTF8"));
    c.login("alice", "alice-pw").await;
    let caps = c.ehlo().await;
    assert!(!caps.iter().any(|c| c.starts_with("AUTH")), "{caps:?}");
    assert!(caps.iter().any(|c| c == "SIZE 2048"));
}

#[tokio::test]
async fn starttls_listener_hides_auth_and_refuses_it_before_tls() {
    let fx = fixture().await;
    let (acceptor, _) = tls_pair();
    let mut c = open(
        &fx,
        Start {
            mode: ListenerTls::Starttls,
            tls: Some(acceptor),
            ..Default::default()
        },
    );
    c.reply().await;
    let caps = c.ehlo().await;
    assert!(caps.iter().any(|c| c == "STARTTLS"), "{caps:?}");
    assert!(!caps.iter().any(|c| c.starts_with("AUTH")), "{caps:?}");
    let reply = c
        .cmd(&format!("AUTH PLAIN {}", plain("alice", "alice-pw")))
        .await;
    assert_eq!(reply, "530 5.7.0 Must issue a STARTTLS command first");
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.com>").await,
        "530 5.7.0 Authentication required"
    );
}

#[tokio::test]
async fn starttls_drops_pipelined_plaintext_and_requires_ehlo_again() {
    let fx = fixture().await;
    let (acceptor, connector) = tls_pair();
    let mut c = open(
        &fx,
        Start {
            mode: ListenerTls::Starttls,
            tls: Some(acceptor),
            ..Default::default()
        },
    );
    c.reply().await;
    c.ehlo().await;
    // Injected after STARTTLS in the same packet: must never be executed.
    c.send("STARTTLS\r\nRSET\r\nNOOP injected\r\n").await;
    assert_eq!(c.line().await, "220 2.0.0 Ready to start TLS");
    let mut c = upgrade(c, &connector).await;
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", plain("alice", "alice-pw")))
            .await,
        "503 5.5.1 Send EHLO first"
    );
    let caps = c.ehlo().await;
    assert!(!caps.iter().any(|c| c == "STARTTLS"), "{caps:?}");
    assert!(caps.iter().any(|c| c == "AUTH PLAIN LOGIN"), "{caps:?}");
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", plain("alice", "alice-pw")))
            .await,
        "235 2.7.0 Authentication successful"
    );
    assert_eq!(c.cmd("STARTTLS").await, "503 5.5.1 TLS is already active");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    c.expect_closed().await;
}

#[tokio::test]
async fn implicit_tls_listener_greets_after_the_handshake() {
    let fx = fixture().await;
    let (acceptor, connector) = tls_pair();
    let c = open(
        &fx,
        Start {
            mode: ListenerTls::Implicit,
            tls: Some(acceptor),
            ..Default::default()
        },
    );
    let mut c = upgrade(c, &connector).await;
    assert_eq!(c.reply().await, format!("220 {HOST} ESMTP leadgate"));
    let caps = c.ehlo().await;
    assert!(caps.iter().any(|c| c == "AUTH PLAIN LOGIN"), "{caps:?}");
    assert!(!caps.iter().any(|c| c == "STARTTLS"), "{caps:?}");
}

#[tokio::test]
async fn starttls_is_not_offered_on_plaintext_listener() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.ehlo().await;
    assert_eq!(
        c.cmd("STARTTLS").await,
        "502 5.5.1 STARTTLS is not offered on this port"
    );
}

#[tokio::test]
async fn helo_works_without_extensions() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    assert_eq!(
        c.cmd("HELO client.example").await,
        format!("250 {HOST} Hello client.example")
    );
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", plain("alice", "alice-pw")))
            .await,
        "235 2.7.0 Authentication successful"
    );
}

// ---- AUTH ---------------------------------------------------------------

#[tokio::test]
async fn auth_plain_with_initial_response_logs_in() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.login("alice", "alice-pw").await;
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", plain("alice", "alice-pw")))
            .await,
        "503 5.5.1 Already authenticated"
    );
}

#[tokio::test]
async fn auth_plain_without_initial_response_prompts_for_it() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.ehlo().await;
    assert_eq!(c.cmd("AUTH PLAIN").await, "334 ");
    assert_eq!(
        c.cmd(&plain("alice", "alice-pw")).await,
        "235 2.7.0 Authentication successful"
    );
}

#[tokio::test]
async fn auth_plain_with_wrong_password_is_refused() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.ehlo().await;
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", plain("alice", "wrong")))
            .await,
        "535 5.7.8 Authentication credentials invalid"
    );
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", plain("nobody", "x"))).await,
        "535 5.7.8 Authentication credentials invalid"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.com>").await,
        "530 5.7.0 Authentication required"
    );
}

#[tokio::test]
async fn auth_plain_for_another_authzid_is_refused() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.ehlo().await;
    let creds = STANDARD.encode("bob\0alice\0alice-pw");
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {creds}")).await,
        "535 5.7.8 Logging in as another user is not allowed"
    );
}

#[tokio::test]
async fn auth_login_asks_for_user_then_password() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.ehlo().await;
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(c.cmd(&b64("alice")).await, "334 UGFzc3dvcmQ6");
    assert_eq!(
        c.cmd(&b64("alice-pw")).await,
        "235 2.7.0 Authentication successful"
    );
}

#[tokio::test]
async fn auth_login_with_initial_user_name_asks_only_for_password() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.ehlo().await;
    assert_eq!(
        c.cmd(&format!("AUTH LOGIN {}", b64("bob"))).await,
        "334 UGFzc3dvcmQ6"
    );
    assert_eq!(
        c.cmd(&b64("bob-pw")).await,
        "235 2.7.0 Authentication successful"
    );
}

#[tokio::test]
async fn auth_cancelled_with_star_gets_501_and_session_goes_on() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.ehlo().await;
    assert_eq!(c.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(c.cmd("*").await, "501 5.0.0 Authentication cancelled");
    assert_eq!(c.cmd("AUTH PLAIN").await, "334 ");
    assert_eq!(c.cmd("not base64!").await, "501 5.5.2 Invalid base64 data");
    c.login("alice", "alice-pw").await;
}

#[tokio::test]
async fn auth_of_disabled_account_says_so() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.ehlo().await;
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", plain("carol", "carol-pw")))
            .await,
        format!("535 5.7.8 {}", AuthFailure::Disabled.client_text())
    );
}

#[tokio::test]
async fn auth_with_unknown_mechanism_is_refused() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.ehlo().await;
    assert_eq!(
        c.cmd("AUTH CRAM-MD5").await,
        "504 5.5.4 Unrecognized authentication type; use PLAIN or LOGIN"
    );
}

#[tokio::test]
async fn auth_before_ehlo_is_out_of_sequence() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", plain("alice", "alice-pw")))
            .await,
        "503 5.5.1 Send EHLO first"
    );
}

#[tokio::test]
async fn repeated_auth_failures_close_the_session() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.ehlo().await;
    for _ in 0..2 {
        assert!(c
            .cmd(&format!("AUTH PLAIN {}", plain("alice", "nope")))
            .await
            .starts_with("535 5.7.8"));
    }
    c.send(&format!("AUTH PLAIN {}\r\n", plain("alice", "nope")))
        .await;
    assert!(c.reply().await.starts_with("535 5.7.8"));
    assert_eq!(
        c.reply().await,
        "421 4.7.0 Too many failed authentication attempts, closing connection"
    );
    c.expect_closed().await;
}

// ---- MAIL / RCPT ----------------------------------------------------------

#[tokio::test]
async fn mail_before_auth_is_refused() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.com>").await,
        "503 5.5.1 Send EHLO first"
    );
    c.ehlo().await;
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.com>").await,
        "530 5.7.0 Authentication required"
    );
    assert_eq!(
        c.cmd("RCPT TO:<lead@customer.example>").await,
        "530 5.7.0 Authentication required"
    );
    assert_eq!(c.cmd("DATA").await, "530 5.7.0 Authentication required");
}

#[tokio::test]
async fn spoofed_mail_from_is_refused_naming_the_allowed_addresses() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.login("alice", "alice-pw").await;
    assert_eq!(
        c.cmd("MAIL FROM:<ceo@example.com>").await,
        "553 5.7.1 Sender address <ceo@example.com> is not yours; use <Alice@Example.com> or <sales@example.com>"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<>").await,
        "553 5.7.1 Sender address <> is not yours; use <Alice@Example.com> or <sales@example.com>"
    );
    assert_eq!(
        c.cmd("RCPT TO:<lead@customer.example>").await,
        "503 5.5.1 Need MAIL command first"
    );
}

#[tokio::test]
async fn user_without_own_address_may_only_use_the_shared_one() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.login("bob", "bob-pw").await;
    assert_eq!(
        c.cmd("MAIL FROM:<bob@example.com>").await,
        "553 5.7.1 Sender address <bob@example.com> is not yours; use <sales@example.com>"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<sales@example.com>").await,
        "250 2.1.0 Sender <sales@example.com> OK"
    );
}

#[tokio::test]
async fn own_and_shared_sender_addresses_match_case_insensitively() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.login("alice", "alice-pw").await;
    assert_eq!(
        c.cmd("MAIL FROM:<alice@EXAMPLE.com>").await,
        "250 2.1.0 Sender <alice@EXAMPLE.com> OK"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.com>").await,
        "503 5.5.1 Sender already given; send RSET first"
    );
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Reset OK");
    assert_eq!(
        c.cmd("MAIL FROM:<SALES@example.com>").await,
        "250 2.1.0 Sender <SALES@example.com> OK"
    );
}

#[tokio::test]
async fn mail_size_parameter_over_the_limit_is_refused() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.login("alice", "alice-pw").await;
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.com> SIZE=999999").await,
        "552 5.3.4 Message size exceeds fixed maximum message size (limit 2048 bytes)"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.com> SMTPUTF8").await,
        "555 5.5.4 SMTPUTF8 is not supported"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<alice@example.com> XFOO=1").await,
        "555 5.5.4 Parameter XFOO=1 is not supported"
    );
    assert!(c
        .cmd("MAIL FROM:<alice@example.com> SIZE=100 BODY=8BITMIME AUTH=<>")
        .await
        .starts_with("250 2.1.0"));
}

#[tokio::test]
async fn too_many_recipients_get_452_and_the_rest_is_kept() {
    let fx = fixture().await;
    let mut c = ready_for_data(&fx).await;
    for rcpt in ["b@customer.example", "c@customer.example"] {
        assert!(c
            .cmd(&format!("RCPT TO:<{rcpt}>"))
            .await
            .starts_with("250 2.1.5"));
    }
    // A repeat is accepted once, not counted twice.
    assert!(c
        .cmd("RCPT TO:<LEAD@customer.example>")
        .await
        .starts_with("250 2.1.5"));
    assert_eq!(
        c.cmd("RCPT TO:<d@customer.example>").await,
        "452 4.5.3 Too many recipients"
    );
    assert_eq!(c.cmd("DATA").await.split(' ').next(), Some("354"));
    c.send("Subject: hi\r\n\r\nhello\r\n.\r\n").await;
    assert_eq!(c.reply().await, "250 2.0.0 Queued as T1");
    let sub = fx.handler.taken().remove(0);
    assert_eq!(
        sub.envelope.rcpt_to,
        [
            "lead@customer.example",
            "b@customer.example",
            "c@customer.example"
        ]
    );
}

#[tokio::test]
async fn recipient_syntax_errors_get_501_5_1_3() {
    let fx = fixture().await;
    let mut c = ready_for_data(&fx).await;
    assert_eq!(
        c.cmd("RCPT TO:<not an address>").await,
        "501 5.1.3 Bad recipient address syntax"
    );
    assert_eq!(
        c.cmd("RCPT TO:<>").await,
        "501 5.1.3 Bad recipient address syntax"
    );
    assert!(c
        .cmd("RCPT TO:<ok@customer.example>")
        .await
        .starts_with("250"));
}

#[tokio::test]
async fn handler_refusal_of_a_recipient_reaches_the_client() {
    let fx = fixture().await;
    *fx.handler.refuse.lock().unwrap() = Some((
        "notes+999@leadgate.test".into(),
        Reply::new(550, (5, 1, 1), "No lead 999 for internal notes"),
    ));
    let mut c = ready_for_data(&fx).await;
    assert_eq!(
        c.cmd("RCPT TO:<notes+999@leadgate.test>").await,
        "550 5.1.1 No lead 999 for internal notes"
    );
}

// ---- DATA -----------------------------------------------------------------

#[tokio::test]
async fn message_is_submitted_with_its_envelope_and_dots_unstuffed() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.login("alice", "alice-pw").await;
    c.cmd("MAIL FROM:<alice@example.com> BODY=8BITMIME SIZE=60")
        .await;
    c.cmd("RCPT TO:<lead@customer.example>").await;
    assert_eq!(
        c.cmd("DATA").await,
        "354 Start mail input; end with <CRLF>.<CRLF>"
    );
    c.send("Subject: quote\r\n\r\n..leading dot\r\n....\r\nend\r\n.\r\n")
        .await;
    assert_eq!(c.reply().await, "250 2.0.0 Queued as T1");
    let subs = fx.handler.taken();
    assert_eq!(subs.len(), 1);
    let sub = &subs[0];
    assert_eq!(sub.user.name, "alice");
    assert_eq!(
        sub.envelope,
        Envelope {
            mail_from: "alice@example.com".into(),
            rcpt_to: vec!["lead@customer.example".into()],
            size_hint: Some(60),
            body_8bit: true,
        }
    );
    assert_eq!(
        String::from_utf8_lossy(&sub.data),
        "Subject: quote\r\n\r\n.leading dot\r\n...\r\nend\r\n"
    );
    // The transaction is over: a new one starts from MAIL.
    assert_eq!(c.cmd("DATA").await, "503 5.5.1 Need MAIL command first");
}

#[tokio::test]
async fn bare_lf_dot_does_not_end_the_message() {
    let fx = fixture().await;
    let mut c = ready_for_data(&fx).await;
    c.cmd("DATA").await;
    c.send("a\n.\nMAIL FROM:<ceo@example.com>\r\n.\r\n").await;
    assert_eq!(c.reply().await, "250 2.0.0 Queued as T1");
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK");
    let subs = fx.handler.taken();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].data, b"a\n.\nMAIL FROM:<ceo@example.com>\r\n");
}

#[tokio::test]
async fn data_without_recipients_is_out_of_sequence() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.login("alice", "alice-pw").await;
    assert_eq!(c.cmd("DATA").await, "503 5.5.1 Need MAIL command first");
    c.cmd("MAIL FROM:<alice@example.com>").await;
    assert_eq!(c.cmd("DATA").await, "503 5.5.1 Need RCPT command first");
}

#[tokio::test]
async fn message_over_the_size_limit_is_refused_and_the_session_recovers() {
    let fx = fixture().await;
    let mut c = ready_for_data(&fx).await;
    c.cmd("DATA").await;
    let line = format!("{}\r\n", "x".repeat(98));
    let big = line.repeat(60); // 6000 bytes against a 2048 limit
    c.send(&format!("Subject: big\r\n\r\n{big}.\r\n")).await;
    assert_eq!(
        c.reply().await,
        "552 5.3.4 Message too big (limit 2048 bytes)"
    );
    assert!(fx.handler.taken().is_empty());
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Reset OK");
    c.cmd("MAIL FROM:<alice@example.com>").await;
    c.cmd("RCPT TO:<lead@customer.example>").await;
    c.cmd("DATA").await;
    c.send("Subject: small\r\n\r\nok\r\n.\r\n").await;
    assert_eq!(c.reply().await, "250 2.0.0 Queued as T1");
    assert_eq!(fx.handler.taken().len(), 1);
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.send(&format!(
        "EHLO client.example\r\nAUTH PLAIN {}\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<a@customer.example>\r\nRCPT TO:<bad>\r\nRCPT TO:<b@customer.example>\r\nDATA\r\n",
        plain("alice", "alice-pw")
    ))
    .await;
    assert!(c.reply().await.starts_with("250-"));
    assert_eq!(c.reply().await, "235 2.7.0 Authentication successful");
    assert!(c.reply().await.starts_with("250 2.1.0"));
    assert!(c.reply().await.starts_with("250 2.1.5 Recipient <a@"));
    assert!(c.reply().await.starts_with("501 5.1.3"));
    assert!(c.reply().await.starts_with("250 2.1.5 Recipient <b@"));
    assert!(c.reply().await.starts_with("354 "));
    c.send("Subject: x\r\n\r\nbody\r\n.\r\nNOOP\r\nVRFY bob\r\nQUIT\r\n")
        .await;
    assert_eq!(c.reply().await, "250 2.0.0 Queued as T1");
    assert_eq!(c.reply().await, "250 2.0.0 OK");
    assert!(c.reply().await.starts_with("252 2.5.2"));
    assert_eq!(c.reply().await, "221 2.0.0 Bye");
    c.expect_closed().await;
    let sub = fx.handler.taken().remove(0);
    assert_eq!(
        sub.envelope.rcpt_to,
        ["a@customer.example", "b@customer.example"]
    );
}

#[tokio::test]
async fn handler_reply_is_passed_through_as_a_multiline_reply() {
    let fx = fixture().await;
    *fx.handler.reply.lock().unwrap() = Some(Reply::new(
        550,
        (5, 7, 1),
        "Lead #42 is owned by bob\nAsk bob for a handoff: move it to Assign to/alice\r\n",
    ));
    let mut c = ready_for_data(&fx).await;
    c.cmd("DATA").await;
    c.send("Subject: re\r\n\r\nhi\r\n.\r\n").await;
    assert_eq!(
        c.reply().await,
        "550-5.7.1 Lead #42 is owned by bob\n550 5.7.1 Ask bob for a handoff: move it to Assign to/alice"
    );
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK");
}

// ---- BDAT -------------------------------------------------------------

#[tokio::test]
async fn bdat_chunks_are_joined_and_submitted() {
    let fx = fixture().await;
    let mut c = ready_for_data(&fx).await;
    c.send("BDAT 5\r\nHelloBDAT 8\r\n world\r\n").await;
    assert_eq!(c.reply().await, "250 2.0.0 5 bytes received");
    assert_eq!(c.reply().await, "250 2.0.0 8 bytes received");
    assert_eq!(c.cmd("BDAT 0 LAST").await, "250 2.0.0 Queued as T1");
    let sub = fx.handler.taken().remove(0);
    assert_eq!(sub.data, b"Hello world\r\n");
    c.send("BDAT 3 LAST\r\nabc").await;
    assert_eq!(c.reply().await, "503 5.5.1 Need MAIL command first");
}

#[tokio::test]
async fn bdat_out_of_sequence_still_consumes_its_chunk() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.login("alice", "alice-pw").await;
    // The chunk holds a command: it must be swallowed, not executed.
    c.send("BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n").await;
    assert_eq!(c.reply().await, "503 5.5.1 Need MAIL command first");
    assert_eq!(c.reply().await, "250 2.0.0 OK");
}

#[tokio::test]
async fn bdat_over_the_size_limit_is_refused_after_reading_it() {
    let fx = fixture().await;
    let mut c = ready_for_data(&fx).await;
    let chunk = "y".repeat(3000);
    c.send(&format!("BDAT 3000 LAST\r\n{chunk}NOOP\r\n")).await;
    assert_eq!(
        c.reply().await,
        "552 5.3.4 Message too big (limit 2048 bytes)"
    );
    assert_eq!(c.reply().await, "250 2.0.0 OK");
    assert!(c
        .cmd("MAIL FROM:<alice@example.com>")
        .await
        .starts_with("250"));
    assert!(fx.handler.taken().is_empty());
}

#[tokio::test]
async fn data_after_bdat_is_out_of_sequence() {
    let fx = fixture().await;
    let mut c = ready_for_data(&fx).await;
    c.send("BDAT 2\r\nhi").await;
    assert_eq!(c.reply().await, "250 2.0.0 2 bytes received");
    assert_eq!(
        c.cmd("DATA").await,
        "503 5.5.1 DATA is not allowed after BDAT"
    );
}

// ---- Limits, errors, misc -------------------------------------------------

#[tokio::test]
async fn over_long_command_line_is_refused_and_skipped() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    // In one piece.
    let long = format!("NOOP {}\r\n", "a".repeat(5000));
    c.send(&long).await;
    assert_eq!(c.reply().await, "500 5.5.2 Line too long");
    // In pieces, with a command hidden past the limit.
    c.send(&format!("NOOP {}", "b".repeat(3000))).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(&format!("{}QUIT\r\nNOOP\r\n", "b".repeat(3000)))
        .await;
    assert_eq!(c.reply().await, "500 5.5.2 Line too long");
    assert_eq!(c.reply().await, "250 2.0.0 OK");
}

#[tokio::test]
async fn configured_line_limit_is_enforced() {
    let fx = fixture().await;
    let mut c = connect_with(
        &fx,
        SmtpConfig {
            max_line_bytes: 600,
            ..config()
        },
    )
    .await;
    assert_eq!(
        c.cmd(&format!("NOOP {}", "a".repeat(700))).await,
        "500 5.5.2 Line too long"
    );
    assert_eq!(
        c.cmd(&format!("NOOP {}", "a".repeat(500))).await,
        "250 2.0.0 OK"
    );
}

#[tokio::test]
async fn garbage_bytes_are_refused_until_too_many_errors() {
    let fx = fixture().await;
    let mut c = connect_with(
        &fx,
        SmtpConfig {
            max_errors: 3,
            ..config()
        },
    )
    .await;
    c.send_bytes(b"\x16\x03\x01\x02\x00\x01\x00\xff\xfe\r\n")
        .await;
    assert_eq!(c.reply().await, "500 5.5.1 Command unrecognized");
    assert_eq!(
        c.cmd("EXPN staff").await,
        "502 5.5.1 Command not implemented"
    );
    c.send_bytes(b"\x00\x00\x00\nNOOP\r\n").await;
    assert_eq!(c.reply().await, "500 5.5.1 Command unrecognized");
    assert_eq!(
        c.reply().await,
        "421 4.7.0 Too many errors, closing connection"
    );
    c.expect_closed().await;
}

#[tokio::test]
async fn misc_commands_answer_as_documented() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK");
    assert!(c.cmd("VRFY alice").await.starts_with("252 2.5.2 "));
    assert!(c.cmd("HELP").await.starts_with("214 2.0.0 "));
    assert_eq!(c.cmd("FOO bar").await, "500 5.5.1 Command unrecognized");
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Reset OK");
    assert_eq!(c.cmd("EHLO").await, "501 5.5.2 Syntax: EHLO domain");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    c.expect_closed().await;
}

#[tokio::test]
async fn shutdown_says_421_and_closes() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    c.ehlo().await;
    c.shutdown.send(true).unwrap();
    assert_eq!(c.reply().await, "421 4.3.2 Service shutting down");
    c.expect_closed().await;
}

#[tokio::test]
async fn too_many_connections_from_one_address_get_421() {
    let fx = fixture().await;
    let mut c = open(
        &fx,
        Start {
            admission: Admission::TooManyFromIp,
            ..Default::default()
        },
    );
    assert_eq!(
        c.reply().await,
        "421 4.7.0 Too many connections from your address, try again later"
    );
    c.expect_closed().await;
}

#[tokio::test]
async fn idle_client_is_timed_out_with_421() {
    let fx = fixture().await;
    let mut c = connect_with(
        &fx,
        SmtpConfig {
            command_timeout_secs: 1,
            ..config()
        },
    )
    .await;
    assert_eq!(
        c.reply().await,
        "421 4.4.2 Timeout waiting for input, closing connection"
    );
    c.expect_closed().await;
}

#[tokio::test]
async fn commands_and_data_split_into_single_bytes_work() {
    let fx = fixture().await;
    let mut c = connect(&fx).await;
    let script = format!(
        "EHLO client.example\r\nAUTH PLAIN\r\n{}\r\nMAIL FROM:<alice@example.com>\r\n\
         RCPT TO:<lead@customer.example>\r\nDATA\r\n",
        plain("alice", "alice-pw")
    );
    let data = "Subject: split\r\n\r\n..dot\r\n.\r\nBDAT 4 LAST\r\nQUIT";
    for chunk in [script.as_str(), data] {
        for b in chunk.bytes() {
            c.send_bytes(&[b]).await;
            tokio::task::yield_now().await;
        }
    }
    let replies = [
        "250-",
        "334 ",
        "235 ",
        "250 2.1.0",
        "250 2.1.5",
        "354 ",
        "250 2.0.0 Queued",
        "503 5.5.1 Need MAIL",
    ];
    for want in replies {
        let got = c.reply().await;
        assert!(got.starts_with(want), "want {want:?}, got {got:?}");
    }
    assert_eq!(
        fx.handler.taken().remove(0).data,
        b"Subject: split\r\n\r\n.dot\r\n"
    );
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
}

#[tokio::test]
async fn random_input_never_panics_the_session() {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    const TOKENS: &[&str] = &[
        "EHLO x\r\n",
        "HELO x\r\n",
        "AUTH PLAIN AGFsaWNlAGFsaWNlLXB3\r\n",
        "AUTH PLAIN\r\n",
        "AUTH LOGIN\r\n",
        "YWxpY2U=\r\n",
        "*\r\n",
        "=\r\n",
        "MAIL FROM:<alice@example.com> SIZE=10 BODY=8BITMIME\r\n",
        "MAIL FROM:<sales@example.com>\r\n",
        "RCPT TO:<a@b.example>\r\n",
        "RCPT TO:<\"q\\\"x\"@b.example> NOTIFY=NEVER\r\n",
        "DATA\r\n",
        "BDAT 5\r\n",
        "BDAT 0 LAST\r\n",
        "BDAT 99999999 LAST\r\n",
        "STARTTLS\r\n",
        "RSET\r\n",
        "NOOP\r\n",
        ".\r\n",
        "..\r\n",
        "\r\n.\r\n",
        "\r\n",
        "\n",
        "\r",
        ".",
        " ",
        ":",
        "<",
        ">",
        "=",
    ];
    let fx = fixture().await;
    let mut rng = StdRng::seed_from_u64(0x5eed_5e55);
    for round in 0..60 {
        let mut input = Vec::new();
        if round % 2 == 0 {
            // A valid message first, so what follows runs in later states.
            input.extend_from_slice(
                b"EHLO x\r\nAUTH PLAIN AGFsaWNlAGFsaWNlLXB3\r\nMAIL FROM:<alice@example.com>\r\n\
                  RCPT TO:<a@b.example>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n",
            );
        }
        for _ in 0..rng.gen_range(1..80) {
            match rng.gen_range(0..10) {
                0 => input.extend((0..rng.gen_range(1..64)).map(|_| rng.gen::<u8>())),
                1 => input.extend(std::iter::repeat_n(b'a', rng.gen_range(1..6000))),
                _ => input.extend_from_slice(TOKENS[rng.gen_range(0..TOKENS.len())].as_bytes()),
            }
        }
        let mut c = open(
            &fx,
            Start {
                config: SmtpConfig {
                    max_errors: 1000,
                    ..config()
                },
                ..Default::default()
            },
        );
        let session = c.session.take().unwrap();
        let (mut rd, mut wr) = tokio::io::split(c.io);
        let drain = tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = rd.read_to_end(&mut sink).await;
        });
        let mut rest = input.as_slice();
        while !rest.is_empty() {
            let n = rng.gen_range(1..=rest.len().min(700));
            if wr.write_all(&rest[..n]).await.is_err() {
                break; // the session closed (QUIT-like token or too many errors)
            }
            rest = &rest[n..];
            tokio::task::yield_now().await;
        }
        // End of input; the session must notice and finish.
        let _ = wr.shutdown().await;
        let ended = tokio::time::timeout(Duration::from_secs(20), session)
            .await
            .unwrap_or_else(|_| panic!("round {round}: session did not end"));
        assert!(ended.is_ok(), "round {round}: session panicked");
        let _ = drain.await;
    }
    // The soup must reach the handler sometimes, or it tests little.
    assert!(!fx.handler.taken().is_empty());
}

#[test]
fn reply_lines_cannot_be_forged_and_keep_their_class() {
    let mut out = Vec::new();
    Reply::new(550, (4, 7, 1), "a\r\n250 2.0.0 fake\x07").write_to(&mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "550-5.7.1 a\r\n550 5.7.1 250 2.0.0 fake \r\n"
    );
    let mut out = Vec::new();
    Reply::new(99, (2, 0, 0), "odd").write_to(&mut out);
    assert_eq!(String::from_utf8(out).unwrap(), "451 4.3.0 odd\r\n");
    let mut out = Vec::new();
    Reply::ok("x".repeat(2000)).write_to(&mut out);
    assert!(out.len() < 512);
}
