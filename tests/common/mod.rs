//! Test support: the real upstream (testbed), leadgate as a child process,
//! and a small IMAP client that talks to it like a mail client would.
#![allow(dead_code)]

pub mod seed;
pub mod testbed;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc},
    time::{Duration, Instant},
};

pub use testbed::{Dovecot, Postfix, RawImap};

pub const SALES: (&str, &str) = ("sales", "sales-secret-pw");
pub const CUSTOMER: (&str, &str) = ("customer", "customer-pw");

/// Self-signed certificate + key (PEM) for `localhost` / 127.0.0.1.
pub fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("params");
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.self_signed(&key).expect("self-sign");
    (cert.pem(), key.serialize_pem())
}

/// The manager's own mailbox on the same Dovecot (maria@example.com), where
/// the daily digest lands. leadgate never logs in to it.
pub const MARIA_MAILBOX: (&str, &str) = ("maria", "maria-mailbox-pw");

/// The support team's mailbox (support@example.com), where support
/// handoffs are forwarded when `leads.support_forward_to` says so.
pub const SUPPORT_MAILBOX: (&str, &str) = ("support", "support-mailbox-pw");

/// Dovecot with the shared mailbox `sales`, a customer account, the
/// manager's own mailbox and support's.
pub fn upstream(dir: &Path) -> Dovecot {
    Dovecot::start(
        dir,
        &[SALES, CUSTOMER, MARIA_MAILBOX, SUPPORT_MAILBOX],
        None,
        false,
    )
}

pub struct GatewayOptions {
    pub listeners: Vec<&'static str>,
    pub extra: String,
    pub upstream_tls: Option<PathBuf>,
    /// `[views] rep_inbox`: the foundation tests write to INBOX as a rep,
    /// so they ask for "read-write"; the default config says "read-only".
    pub rep_inbox: &'static str,
    /// More keys of the `[auth]` section (one per line).
    pub auth_extra: &'static str,
    /// `[views] lead_card`. On in leadgate by default; off here by
    /// default, because the tests written before the cards count a lead
    /// folder's mail exactly. `lead_card.rs`, `read_state.rs` and
    /// `commands.rs` run with the cards.
    pub lead_card: bool,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            listeners: vec!["plaintext"],
            extra: String::new(),
            upstream_tls: None,
            rep_inbox: "read-write",
            auth_extra: "",
            lead_card: false,
        }
    }
}

/// leadgate running as a real process against the testbed.
pub struct Gateway {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub cert_pem: String,
    child: Option<Child>,
    lines: Option<mpsc::Receiver<String>>,
    /// Listener addresses by mode ("plaintext", "starttls", "implicit-tls").
    pub listeners: Vec<(String, SocketAddr)>,
}

impl Gateway {
    pub fn new(dir: &Path, dovecot: &Dovecot, opts: GatewayOptions) -> Gateway {
        let dir = dir.join("leadgate");
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = self_signed();
        std::fs::write(dir.join("cert.pem"), &cert).unwrap();
        std::fs::write(dir.join("key.pem"), &key).unwrap();
        let mut text = String::new();
        for mode in &opts.listeners {
            text.push_str(&format!(
                "[[imap.listener]]\naddr = \"127.0.0.1:0\"\ntls = \"{mode}\"\n\n"
            ));
        }
        let d = dir.display();
        text.push_str(&format!(
            "[tls]\ncert = \"{d}/cert.pem\"\nkey = \"{d}/key.pem\"\n\n"
        ));
        let (port, tls, ca) = match &opts.upstream_tls {
            Some(ca) => (
                dovecot.imaps_port,
                "implicit",
                format!("ca_file = \"{}\"\n", ca.display()),
            ),
            None => (dovecot.imap_port, "none", String::new()),
        };
        text.push_str(&format!(
            "[upstream.imap]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\n{ca}username = \"{}\"\npassword_file = \"{d}/upstream-password\"\npoll_interval_secs = 2\ntimeout_secs = 10\n\n",
            SALES.0
        ));
        std::fs::write(dir.join("upstream-password"), format!("{}\n", SALES.1)).unwrap();
        text.push_str(&format!("[store]\npath = \"{d}/leadgate.redb\"\n\n"));
        text.push_str(&format!("[auth]\nargon2_memory_kib = 1024\nargon2_iterations = 1\nmax_failures = 5\nlockout_secs = 60\n{}\n\n", opts.auth_extra));
        text.push_str(&format!(
            "[views]\nrep_inbox = \"{}\"\nlead_card = {}\n\n",
            opts.rep_inbox, opts.lead_card
        ));
        if !opts.extra.contains("[digest]") {
            // The daily digest would mail managers who have no mailbox here.
            text.push_str("[digest]\nenabled = false\n\n");
        }
        if !opts.extra.contains("[admin]") {
            // The CLI reaches the running daemon through this socket.
            text.push_str(&format!("[admin]\nsocket = \"{d}/admin.sock\"\n\n"));
        }
        text.push_str(&opts.extra);
        let config = dir.join("leadgate.toml");
        std::fs::write(&config, text).unwrap();
        Gateway {
            dir,
            config,
            cert_pem: cert,
            child: None,
            lines: None,
            listeners: Vec::new(),
        }
    }

    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_leadgate"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run leadgate cli");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    pub fn add_user(&self, name: &str, role: &str, password: &str) {
        let out = self.cli(
            &[
                "user",
                "add",
                name,
                "--role",
                role,
                "--email",
                &format!("{name}@example.com"),
            ],
            Some(&format!("{password}\n")),
        );
        assert!(
            out.status.success(),
            "user add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `leadgate serve` and waits for its listeners and first sync.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("leadgate.log"))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_leadgate"))
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("RUST_LOG", "info,leadgate=debug")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn leadgate serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.child = Some(child);
        self.lines = Some(rx);
        self.listeners.clear();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = self
                .next_line(deadline)
                .unwrap_or_else(|| panic!("leadgate did not become ready; log:\n{}", self.log()));
            if let Some(rest) = line.strip_prefix("leadgate: imap listening on ") {
                let (addr, mode) = rest.split_once(' ').unwrap();
                self.listeners.push((
                    mode.trim_matches(['(', ')']).to_owned(),
                    addr.parse().unwrap(),
                ));
            }
            if let Some(rest) = line.strip_prefix("leadgate: smtp listening on ") {
                let (addr, mode) = rest.split_once(' ').unwrap();
                let mode = format!("smtp-{}", mode.trim_matches(['(', ')']));
                self.listeners.push((mode, addr.parse().unwrap()));
            }
            if let Some(rest) = line.strip_prefix("leadgate: metrics listening on ") {
                self.listeners
                    .push(("metrics".into(), rest.trim().parse().unwrap()));
            }
            if line == "leadgate: upstream synced" {
                return;
            }
        }
    }

    fn next_line(&self, deadline: Instant) -> Option<String> {
        let rx = self.lines.as_ref()?;
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()
    }

    pub fn addr(&self, mode: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(m, _)| m == mode)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {mode} listener"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("leadgate.log")).unwrap_or_default()
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr("plaintext"))
    }

    pub fn login(&self, user: &str, password: &str) -> Client {
        let mut c = self.client();
        let r = c.run(&format!("LOGIN {user} {password}"));
        assert!(r.ok(), "login {user}: {}", r.text);
        c
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- last lines of {}/leadgate.log ---", self.dir.display());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// One complete response to a command: everything up to the tagged line.
#[derive(Debug, Clone)]
pub struct Reply {
    pub text: String,
    pub raw: Vec<u8>,
    pub tagged: String,
}

impl Reply {
    pub fn ok(&self) -> bool {
        self.tagged.split(' ').nth(1) == Some("OK")
    }
    pub fn no(&self) -> bool {
        self.tagged.split(' ').nth(1) == Some("NO")
    }
    pub fn bad(&self) -> bool {
        self.tagged.split(' ').nth(1) == Some("BAD")
    }
    /// Untagged lines (literals inlined).
    pub fn untagged(&self) -> Vec<&str> {
        self.text
            .split("\r\n")
            .filter(|l| l.starts_with("* "))
            .collect()
    }
    /// Numbers of `* SEARCH` lines.
    pub fn search(&self) -> Vec<u32> {
        self.untagged()
            .iter()
            .filter_map(|l| l.strip_prefix("* SEARCH"))
            // A trailing `(MODSEQ n)` (RFC 7162) is not a result.
            .flat_map(|rest| {
                rest.split_whitespace()
                    .take_while(|w| !w.starts_with('('))
                    .map(|n| n.parse().unwrap())
            })
            .collect()
    }
}

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A blocking IMAP client that frames responses correctly (literals).
pub struct Client {
    stream: Option<Stream>,
    buf: Vec<u8>,
    tag: u32,
    pub greeting: String,
}

pub fn tls_config(cert_pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

fn tls_wrap(tcp: TcpStream, cert_pem: &str) -> Stream {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(tls_config(cert_pem), name).unwrap();
    Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).expect("connect to leadgate");
        Self::over(Stream::Plain(tcp))
    }

    pub fn connect_tls(addr: SocketAddr, cert_pem: &str) -> Client {
        let tcp = TcpStream::connect(addr).expect("connect to leadgate");
        Self::over(tls_wrap(tcp, cert_pem))
    }

    fn over(stream: Stream) -> Client {
        if let Stream::Plain(s) = &stream {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        }
        if let Stream::Tls(s) = &stream {
            s.sock
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
        }
        let mut c = Client {
            stream: Some(stream),
            buf: Vec::new(),
            tag: 0,
            greeting: String::new(),
        };
        c.greeting = c
            .read_line_with_literals()
            .map(|(t, _)| t)
            .unwrap_or_default();
        c
    }

    /// Upgrades with STARTTLS; returns the tagged reply.
    pub fn starttls(&mut self, cert_pem: &str) -> Reply {
        let r = self.run("STARTTLS");
        if r.ok() {
            let Some(Stream::Plain(tcp)) = self.stream.take() else {
                panic!("already TLS")
            };
            self.stream = Some(tls_wrap(tcp, cert_pem));
        }
        r
    }

    fn stream(&mut self) -> &mut Stream {
        self.stream.as_mut().unwrap()
    }

    fn fill(&mut self) -> std::io::Result<usize> {
        let mut tmp = [0u8; 65536];
        loop {
            match self.stream().read(&mut tmp) {
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(n);
                }
                // A signal (SIGCHLD from the servers we run) interrupted the read.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// One logical line: a line plus any literals it announces. Returns the
    /// text with literals inlined, and the raw bytes.
    pub fn read_line_with_literals(&mut self) -> std::io::Result<(String, Vec<u8>)> {
        let mut raw = Vec::new();
        loop {
            let pos = loop {
                if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break p;
                }
                if self.fill()? == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "closed",
                    ));
                }
            };
            let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
            raw.extend_from_slice(&line);
            let body = &line[..line.len() - 2];
            let literal = body
                .ends_with(b"}")
                .then(|| body.iter().rposition(|&b| b == b'{'))
                .flatten()
                .and_then(|open| {
                    std::str::from_utf8(&body[open + 1..body.len() - 1])
                        .ok()?
                        .parse::<usize>()
                        .ok()
                });
            match literal {
                Some(n) => {
                    while self.buf.len() < n {
                        if self.fill()? == 0 {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "closed in literal",
                            ));
                        }
                    }
                    raw.extend(self.buf.drain(..n));
                }
                None => return Ok((String::from_utf8_lossy(&raw).into_owned(), raw)),
            }
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream().write_all(bytes).unwrap();
        self.stream().flush().unwrap();
    }

    pub fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("t{}", self.tag)
    }

    /// Reads until the tagged completion of `tag`.
    pub fn read_reply(&mut self, tag: &str) -> Reply {
        let mut text = String::new();
        let mut raw = Vec::new();
        loop {
            let (line, bytes) = self.read_line_with_literals().expect("read reply");
            text.push_str(&line);
            raw.extend_from_slice(&bytes);
            if line.starts_with(&format!("{tag} ")) {
                return Reply {
                    text,
                    raw,
                    tagged: line.trim_end().to_owned(),
                };
            }
        }
    }

    pub fn run(&mut self, cmd: &str) -> Reply {
        let tag = self.next_tag();
        self.send_raw(format!("{tag} {cmd}\r\n").as_bytes());
        self.read_reply(&tag)
    }

    /// APPEND with a synchronising literal (waits for the continuation).
    pub fn append(&mut self, mailbox: &str, flags: &str, message: &[u8]) -> Reply {
        let tag = self.next_tag();
        self.send_raw(
            format!("{tag} APPEND {mailbox} ({flags}) {{{}}}\r\n", message.len()).as_bytes(),
        );
        let (cont, _) = self.read_line_with_literals().unwrap();
        if !cont.starts_with('+') {
            return Reply {
                text: cont.clone(),
                raw: cont.clone().into_bytes(),
                tagged: cont.trim_end().to_owned(),
            };
        }
        self.send_raw(message);
        self.send_raw(b"\r\n");
        self.read_reply(&tag)
    }

    /// Starts IDLE and waits for the continuation.
    pub fn idle(&mut self) -> String {
        let tag = self.next_tag();
        self.send_raw(format!("{tag} IDLE\r\n").as_bytes());
        loop {
            let (line, _) = self.read_line_with_literals().unwrap();
            if line.starts_with('+') {
                return tag;
            }
            assert!(line.starts_with("* "), "IDLE refused: {line}");
        }
    }

    /// Waits up to `timeout` for an untagged line matching `pred`.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let set = |s: &mut Stream, d: Option<Duration>| match s {
            Stream::Plain(t) => t.set_read_timeout(d),
            Stream::Tls(t) => t.sock.set_read_timeout(d),
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                set(self.stream(), Some(Duration::from_secs(30))).unwrap();
                return None;
            }
            set(self.stream(), Some(left)).unwrap();
            match self.read_line_with_literals() {
                Ok((line, _)) if pred(&line) => {
                    set(self.stream(), Some(Duration::from_secs(30))).unwrap();
                    return Some(line);
                }
                Ok(_) => continue,
                Err(_) => {
                    set(self.stream(), Some(Duration::from_secs(30))).unwrap();
                    return None;
                }
            }
        }
    }

    pub fn done(&mut self, tag: &str) -> Reply {
        self.send_raw(b"DONE\r\n");
        self.read_reply(tag)
    }
}

/// A whole test setup: upstream Dovecot, leadgate with alice/bob/maria.
pub struct Setup {
    pub gateway: Gateway,
    pub postfix: Postfix,
    pub dovecot: Dovecot,
    pub dir: tempfile::TempDir,
}

pub const ALICE: (&str, &str) = ("alice", "alice-password");
pub const BOB: (&str, &str) = ("bob", "bob-password");
pub const MARIA: (&str, &str) = ("maria", "maria-password");

impl Setup {
    pub fn new(opts: GatewayOptions) -> Setup {
        Setup::with_customers(opts, &[], &[])
    }

    /// A setup where Postfix also delivers mail for `domains` into Dovecot,
    /// which has these extra `accounts` (customers who really get mail).
    pub fn with_customers(
        opts: GatewayOptions,
        accounts: &[(&str, &str)],
        domains: &[&str],
    ) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let mut all = vec![SALES, CUSTOMER, MARIA_MAILBOX, SUPPORT_MAILBOX];
        all.extend_from_slice(accounts);
        let dovecot = Dovecot::start(dir.path(), &all, None, false);
        let mut all_domains = vec!["example.com", "customer.test"];
        all_domains.extend_from_slice(domains);
        let postfix = Postfix::start(dir.path(), dovecot.lmtp_port, &all_domains, false);
        let opts = GatewayOptions {
            extra: opts
                .extra
                .replace("{POSTFIX_PORT}", &postfix.smtp_port.to_string()),
            ..opts
        };
        let mut gateway = Gateway::new(dir.path(), &dovecot, opts);

        gateway.add_user(ALICE.0, "rep", ALICE.1);
        gateway.add_user(BOB.0, "rep", BOB.1);
        gateway.add_user(MARIA.0, "manager", MARIA.1);
        gateway.start();
        Setup {
            dir,
            dovecot,
            postfix,
            gateway,
        }
    }

    /// Delivers a message to the shared mailbox the way the internet does:
    /// SMTP to Postfix, LMTP into Dovecot.
    pub fn deliver(&self, from: &str, message: &[u8]) {
        testbed::smtp_send(
            self.postfix.smtp_port,
            from,
            &["sales@example.com"],
            message,
        )
        .expect("deliver through postfix");
    }

    /// Number of messages in the shared INBOX, asked of Dovecot directly.
    pub fn upstream_count(&self) -> usize {
        let r = self.direct().run("STATUS INBOX (MESSAGES)");
        r.split("MESSAGES ")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Delivers and waits until Dovecot has `count` messages in INBOX.
    pub fn deliver_and_wait(&self, from: &str, message: &[u8], count: usize) {
        self.deliver(from, message);
        assert!(
            eventually(Duration::from_secs(20), || self.upstream_count() >= count),
            "postfix did not deliver within 20s; see {}/postfix/postfix.log",
            self.dir.path().display()
        );
    }

    /// An IMAP session straight to Dovecot as the shared account.
    pub fn direct(&self) -> RawImap {
        RawImap::login(self.dovecot.imap_port, SALES.0, SALES.1)
    }
}

/// A small RFC 5322 message.
pub fn message(from: &str, subject: &str, message_id: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: sales@example.com\r\nSubject: {subject}\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{message_id}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// Polls `f` until it is true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

// ---- Helpers for the load, fault and hostile-input tests ----

/// A TCP connection to `addr` from the loopback address `src` (any of
/// 127.0.0.0/8), so tests can act as many client addresses: per-IP limits
/// and lockouts then apply to one test case, not to the whole test.
pub fn connect_from(addr: SocketAddr, src: std::net::IpAddr) -> std::io::Result<TcpStream> {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .expect("tokio runtime for connect_from")
    });
    let stream = rt.block_on(async {
        let socket = match src {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(src, 0))?;
        tokio::time::timeout(Duration::from_secs(10), socket.connect(addr))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    })?;
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// The `n`th address of a /16 inside 127.0.0.0/8 (`net` picks the /16).
pub fn loopback_ip(net: u8, n: u32) -> std::net::IpAddr {
    let n = n % 65_000 + 1;
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(
        127,
        net,
        (n >> 8) as u8,
        (n & 0xff) as u8,
    ))
}

impl Client {
    /// The plain socket underneath, and what was read from it but not yet
    /// consumed.
    pub fn into_tcp(mut self) -> (TcpStream, Vec<u8>) {
        match self.stream.take() {
            Some(Stream::Plain(t)) => (t, std::mem::take(&mut self.buf)),
            _ => panic!("into_tcp on a TLS client"),
        }
    }

    /// An IMAP client over an already connected socket (reads the greeting).
    pub fn over_tcp(tcp: TcpStream) -> Client {
        Self::over(Stream::Plain(tcp))
    }
}

/// `MESSAGES n` from a STATUS reply (0 when absent).
/// What `tests/clients/smtp_send.py` reported for one submission.
pub struct Sent {
    pub ok: bool,
    pub code: u64,
    pub message: String,
}

/// One message submitted through leadgate's SMTP listener
/// (`smtp-plaintext`) with Python's smtplib, as a mail client does.
pub fn smtplib(
    s: &Setup,
    user: (&str, &str),
    from: &str,
    to: &str,
    subject: &str,
    in_reply_to: &str,
    body: &str,
) -> Sent {
    let addr = s.gateway.addr("smtp-plaintext");
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/smtp_send.py"
        ))
        .args([
            &addr.ip().to_string(),
            &addr.port().to_string(),
            user.0,
            user.1,
            from,
            to,
            subject,
            in_reply_to,
            body,
        ])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "smtp_send.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Sent {
        ok: v["ok"].as_bool().unwrap(),
        code: v["code"].as_u64().unwrap(),
        message: v["message"].as_str().unwrap_or_default().to_owned(),
    }
}

/// Runs mbsync (isync) on the channels of the configuration file `rc`;
/// fails the test with mbsync's output when it fails.
pub fn mbsync(rc: &Path) {
    let out = Command::new("mbsync")
        .arg("-c")
        .arg(rc)
        .arg("-a")
        .output()
        .expect("run mbsync");
    assert!(
        out.status.success(),
        "mbsync failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Everything a command printed: stdout, then stderr.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `leadgate audit verify --store FILE` on any store file (a backup, a
/// copy), no config needed: (passed, what it printed).
pub fn verify_store_file(path: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_leadgate"))
        .args(["audit", "verify", "--store"])
        .arg(path)
        .output()
        .unwrap();
    (out.status.success(), output_text(&out))
}

/// A manager's session that reads (STATUS INBOX, SELECT of the review
/// queue) over and over on its own thread while a test does something
/// heavy beside it; an answer that is not OK fails the test at `finish`.
pub struct Canary {
    stop: Arc<std::sync::atomic::AtomicBool>,
    answered: Arc<std::sync::atomic::AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Canary {
    pub fn start(s: &Setup) -> Canary {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let (flag, count) = (stop.clone(), answered.clone());
        let mut c = s.gateway.login(MARIA.0, MARIA.1);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                let r = c.run("STATUS INBOX (MESSAGES UIDNEXT)");
                assert!(r.ok(), "canary: {}", r.text);
                let r = c.run("SELECT \"Review/New and unassigned\"");
                assert!(r.ok(), "canary: {}", r.text);
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        Canary {
            stop,
            answered,
            thread,
        }
    }

    /// Rounds answered so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until `more` further rounds are answered.
    pub fn wait_more(&self, more: u64) {
        let target = self.answered() + more;
        while self.answered() < target {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it; the rounds it had answered.
    pub fn finish(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let answered = self.answered.clone();
        self.thread.join().expect("the canary kept getting answers");
        answered.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The last `* N EXISTS` of a reply (0 when there is none).
pub fn exists_in(r: &Reply) -> usize {
    r.untagged()
        .iter()
        .filter_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok())
        .next_back()
        .unwrap_or(0)
}

pub fn status_messages(reply: &str) -> usize {
    reply
        .split("MESSAGES ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl Gateway {
    /// `lead list --all --json`, one JSON object per lead.
    pub fn leads(&self) -> Vec<serde_json::Value> {
        let out = self.cli(&["lead", "list", "--all", "--json"], None);
        assert!(
            out.status.success(),
            "lead list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("lead list --json line"))
            .collect()
    }

    /// One lead of `lead list`, or `Null` when there is none with that id.
    pub fn lead(&self, id: u64) -> serde_json::Value {
        self.leads()
            .into_iter()
            .find(|l| l["id"] == id)
            .unwrap_or(serde_json::Value::Null)
    }

    /// `leadgate audit verify`: (passed, what it printed).
    pub fn audit_verify(&self) -> (bool, String) {
        let out = self.cli(&["audit", "verify"], None);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success() && text.contains("audit log ok"), text)
    }

    /// Whether the daemon process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The daemon's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

/// A plain SMTP client for tests: every read has a timeout; replies are
/// returned whole (all lines of a multi-line reply).
pub struct SmtpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// One SMTP reply: its code and all its lines.
#[derive(Debug, Clone)]
pub struct SmtpReply {
    pub code: u16,
    pub text: String,
}

impl SmtpClient {
    pub fn connect(addr: SocketAddr) -> std::io::Result<SmtpClient> {
        let tcp = TcpStream::connect(addr)?;
        Self::over(tcp)
    }

    pub fn over(tcp: TcpStream) -> std::io::Result<SmtpClient> {
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        tcp.set_nodelay(true)?;
        let mut c = SmtpClient {
            reader: BufReader::new(tcp.try_clone()?),
            writer: tcp,
        };
        let greeting = c.reply()?;
        if greeting.code != 220 {
            return Err(std::io::Error::other(format!(
                "greeting: {}",
                greeting.text
            )));
        }
        Ok(c)
    }

    /// Connects, says EHLO and authenticates with AUTH PLAIN.
    pub fn login(addr: SocketAddr, user: &str, password: &str) -> std::io::Result<SmtpClient> {
        use base64::Engine;
        let mut c = Self::connect(addr)?;
        c.command("EHLO client.test")?;
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{user}\0{password}").as_bytes());
        let r = c.command(&format!("AUTH PLAIN {token}"))?;
        if r.code != 235 {
            return Err(std::io::Error::other(format!("AUTH: {}", r.text)));
        }
        Ok(c)
    }

    pub fn reply(&mut self) -> std::io::Result<SmtpReply> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("connection closed after {text:?}"),
                ));
            }
            text.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                return Ok(SmtpReply { code, text });
            }
        }
    }

    pub fn command(&mut self, line: &str) -> std::io::Result<SmtpReply> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    /// MAIL, RCPT, DATA and the message (dot-stuffed here); returns the
    /// first refusal or the reply to the message.
    pub fn send(&mut self, from: &str, to: &[&str], message: &[u8]) -> std::io::Result<SmtpReply> {
        let r = self.command(&format!("MAIL FROM:<{from}>"))?;
        if r.code != 250 {
            return Ok(r);
        }
        for rcpt in to {
            let r = self.command(&format!("RCPT TO:<{rcpt}>"))?;
            if r.code != 250 {
                let _ = self.command("RSET");
                return Ok(r);
            }
        }
        let r = self.command("DATA")?;
        if r.code != 354 {
            return Ok(r);
        }
        let mut data = Vec::with_capacity(message.len() + 16);
        for line in message.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b".") {
                data.push(b'.');
            }
            data.extend_from_slice(line);
        }
        if !data.ends_with(b"\r\n") {
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b".\r\n");
        self.writer.write_all(&data)?;
        self.reply()
    }
}

/// Message-IDs of every message in `mailbox` of a Dovecot account, asked
/// of Dovecot directly (duplicates kept).
pub fn mailbox_message_ids(dovecot: &Dovecot, account: (&str, &str), mailbox: &str) -> Vec<String> {
    let mut c = RawImap::login(dovecot.imap_port, account.0, account.1);
    let sel = c.run(&format!("SELECT \"{mailbox}\""));
    if !sel.contains(" OK ") || sel.contains("* 0 EXISTS") {
        return Vec::new();
    }
    let r = c.run("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])");
    header_values(&r, "Message-ID")
}

/// Every value of header `name` in a FETCH response text.
pub fn header_values(text: &str, name: &str) -> Vec<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    text.split("\r\n")
        .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_owned())
        .collect()
}

/// A small seeded xorshift64* generator: tests print the seed so a failing
/// run can be repeated.
pub struct XorShift(pub u64);

impl XorShift {
    /// The seed from `var` if set, else from the clock; printed either way.
    pub fn from_env(var: &str) -> XorShift {
        let seed = std::env::var(var)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("seed {seed} (repeat with {var}={seed})");
        XorShift(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Whether the long variants are asked for (`LEADGATE_LONG_TESTS=1`).
pub fn long_tests() -> bool {
    std::env::var("LEADGATE_LONG_TESTS").is_ok_and(|v| v == "1")
}

impl Client {
    /// Like `run`, but a broken connection is an error instead of a panic
    /// (for clients of a server that is being killed).
    pub fn try_run(&mut self, cmd: &str) -> std::io::Result<Reply> {
        let tag = self.next_tag();
        let stream = self.stream();
        stream.write_all(format!("{tag} {cmd}\r\n").as_bytes())?;
        stream.flush()?;
        let mut text = String::new();
        let mut raw = Vec::new();
        loop {
            let (line, bytes) = self.read_line_with_literals()?;
            text.push_str(&line);
            raw.extend_from_slice(&bytes);
            if line.starts_with(&format!("{tag} ")) {
                return Ok(Reply {
                    text,
                    raw,
                    tagged: line.trim_end().to_owned(),
                });
            }
        }
    }
}
