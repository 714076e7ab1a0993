//! A real upstream on loopback: Dovecot (IMAP + LMTP) and Postfix (SMTP,
//! delivering over LMTP into Dovecot), each with its own config, run and
//! mail directories under one folder, on ports picked at start. Used by the
//! integration tests, the benchmarks and `scripts/demo` (through the
//! `testbed` example), so all three run the same setup.
#![allow(dead_code)]

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A free loopback port (bound and released; the race is acceptable in tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

fn is_root() -> bool {
    // SAFETY-free: read our uid from /proc instead of libc.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn current_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "root".into())
}

/// Ends a foreground server and its whole process group: SIGTERM, a
/// moment to finish, then SIGKILL for anything left.
fn stop_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-s", "TERM", "--"])
        .arg(format!("-{}", child.id()))
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_group(child.id());
    let _ = child.wait();
}

/// SIGKILLs a process group started with `process_group(0)`.
fn kill_group(pid: u32) {
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--"])
        .arg(format!("-{pid}"))
        .stderr(Stdio::null())
        .status();
}

/// Waits until something accepts connections on the port.
pub fn wait_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

pub struct Dovecot {
    pub dir: PathBuf,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub lmtp_port: u16,
    /// PEM certificate the IMAPS listener uses, when TLS was asked for.
    pub tls_cert: Option<PathBuf>,
    child: Option<Child>,
    daemon: bool,
}

impl Dovecot {
    /// Writes the config for `accounts` (name, password) and starts Dovecot.
    /// With `tls`, `tls` is a (cert, key) PEM pair for an IMAPS listener.
    pub fn start(
        dir: &Path,
        accounts: &[(&str, &str)],
        tls: Option<(&str, &str)>,
        daemon: bool,
    ) -> Dovecot {
        let dir = dir.join("dovecot");
        for sub in ["run", "state", "mail"] {
            fs::create_dir_all(dir.join(sub)).expect("create dovecot dirs");
        }
        let (uid, gid) = if is_root() {
            ("mail".to_owned(), "mail".to_owned())
        } else {
            (current_user(), current_user())
        };
        if is_root() {
            let _ = Command::new("chown")
                .args(["-R", "mail:mail"])
                .arg(dir.join("mail"))
                .status();
            let mut p = dir.clone();
            // Dovecot's mail processes run as `mail`: let them reach the folder.
            while let Some(parent) = p.parent() {
                let _ = Command::new("chmod").arg("o+x").arg(&p).status();
                if parent == Path::new("/") || parent == Path::new("/tmp") {
                    break;
                }
                p = parent.to_path_buf();
            }
        }
        let mut users = String::new();
        for (name, pw) in accounts {
            users.push_str(&format!("{name}:{{PLAIN}}{pw}::::::\n"));
        }
        fs::write(dir.join("users"), users).expect("write users");
        let imap_port = free_port();
        let lmtp_port = free_port();
        let imaps_port = if tls.is_some() { free_port() } else { 0 };
        let d = dir.display();
        let (ssl, tls_cert) = match tls {
            Some((cert, key)) => {
                fs::write(dir.join("cert.pem"), cert).expect("write cert");
                fs::write(dir.join("key.pem"), key).expect("write key");
                (
                    format!("ssl = yes\nssl_cert = <{d}/cert.pem\nssl_key = <{d}/key.pem\n"),
                    Some(dir.join("cert.pem")),
                )
            }
            None => ("ssl = no\n".to_owned(), None),
        };
        let login_user = if is_root() {
            String::new()
        } else {
            format!("default_login_user = {uid}\ndefault_internal_user = {uid}\n")
        };
        let conf = format!(
            r#"base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
{ssl}{login_user}disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 0
mail_location = maildir:~/Maildir
mail_fsync = never
mail_max_userip_connections = 20000
imap_idle_notify_interval = 1 secs
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {d}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%n {d}/users
  default_fields = uid={uid} gid={gid} home={d}/mail/%n
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \Sent
    auto = subscribe
  }}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = {imaps_port}
  }}
  process_limit = 2000
  client_limit = 2000
}}
service imap {{
  process_limit = 10500
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service anvil {{
  chroot =
  client_limit = 15000
}}
service auth {{
  client_limit = 15000
}}
service pop3-login {{
  chroot =
}}
"#
        );
        fs::write(dir.join("dovecot.conf"), conf).expect("write dovecot.conf");
        let mut dv = Dovecot {
            dir,
            imap_port,
            imaps_port,
            lmtp_port,
            tls_cert,
            child: None,
            daemon,
        };
        dv.run();
        dv
    }

    fn run(&mut self) {
        let _ = fs::remove_file(self.dir.join("run/master.pid"));
        let conf = self.dir.join("dovecot.conf");
        if self.daemon {
            let status = Command::new("dovecot")
                .arg("-c")
                .arg(&conf)
                .status()
                .expect("run dovecot");
            assert!(
                status.success(),
                "dovecot failed to start; see {}",
                self.dir.join("dovecot.log").display()
            );
        } else {
            let child = Command::new("dovecot")
                .arg("-F")
                .arg("-c")
                .arg(&conf)
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn dovecot (is dovecot-imapd installed? scripts/test installs it)");
            self.child = Some(child);
        }
        assert!(
            wait_port(self.imap_port, Duration::from_secs(15))
                && wait_port(self.lmtp_port, Duration::from_secs(15)),
            "dovecot did not start listening; see {}",
            self.dir.join("dovecot.log").display()
        );
    }

    /// Stops Dovecot and every process it started, so no established
    /// connection survives (an outage, as a client sees it).
    pub fn stop(&mut self) {
        match self.child.take() {
            Some(mut c) => stop_group(&mut c),
            None => {
                let conf = self.dir.join("dovecot.conf");
                let _ = Command::new("doveadm")
                    .arg("-c")
                    .arg(&conf)
                    .arg("stop")
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.imap_port)).is_ok() && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// The Maildir of an account (for tests that look at the files).
    pub fn maildir(&self, account: &str) -> PathBuf {
        self.dir.join("mail").join(account).join("Maildir")
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if !self.daemon {
            self.stop();
        }
    }
}

pub struct Postfix {
    pub dir: PathBuf,
    pub smtp_port: u16,
    child: Option<Child>,
    daemon: bool,
}

impl Postfix {
    /// Postfix accepting mail for `domains` on a loopback port and handing
    /// it to Dovecot over LMTP. Needs root (Postfix's master does).
    pub fn start(dir: &Path, lmtp_port: u16, domains: &[&str], daemon: bool) -> Postfix {
        let dir = dir.join("postfix");
        for sub in ["etc", "queue", "data"] {
            fs::create_dir_all(dir.join(sub)).expect("create postfix dirs");
        }
        let _ = Command::new("chown")
            .arg("postfix")
            .arg(dir.join("data"))
            .status();
        let smtp_port = free_port();
        let d = dir.display();
        let main_cf = format!(
            "compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.leadgate.test
mydomain = leadgate.test
myorigin = leadgate.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = {d}/postfix.log
maillog_file_prefixes = /
virtual_mailbox_domains = {}
virtual_transport = lmtp:inet:127.0.0.1:{lmtp_port}
smtputf8_enable = no
biff = no
append_dot_mydomain = no
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
local_recipient_maps =
message_size_limit = 52428800
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 5s
",
            domains.join(" ")
        );
        fs::write(dir.join("etc/main.cf"), main_cf).expect("write main.cf");
        let master_cf = format!(
            "127.0.0.1:{smtp_port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"
        );
        fs::write(dir.join("etc/master.cf"), master_cf).expect("write master.cf");
        let mut pf = Postfix {
            dir,
            smtp_port,
            child: None,
            daemon,
        };
        pf.run();
        pf
    }

    fn etc(&self) -> PathBuf {
        self.dir.join("etc")
    }

    fn run(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(self.etc())
            .arg("check")
            .status();
        if self.daemon {
            let status = Command::new("postfix")
                .arg("-c")
                .arg(self.etc())
                .arg("start")
                .status()
                .expect("run postfix");
            assert!(
                status.success(),
                "postfix failed to start; see {}/postfix.log",
                self.dir.display()
            );
        } else {
            let child = Command::new("postfix")
                .arg("-c")
                .arg(self.etc())
                .arg("start-fg")
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn postfix (is postfix installed? scripts/test installs it)");
            self.child = Some(child);
        }
        assert!(
            wait_port(self.smtp_port, Duration::from_secs(20)),
            "postfix did not start listening; see {}/postfix.log",
            self.dir.display()
        );
    }

    /// Stops Postfix and every process it started. Postfix's master runs
    /// in a session of its own (it calls setsid), so it is stopped through
    /// `postfix stop` and, should that not do it, killed by its pid file.
    pub fn stop(&mut self) {
        let master = fs::read_to_string(self.dir.join("queue/pid/master.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(self.etc())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(pid) = master {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            kill_group(pid);
        }
        if let Some(mut c) = self.child.take() {
            stop_group(&mut c);
        }

        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.smtp_port)).is_ok() && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if !self.daemon {
            self.stop();
        }
    }
}

#[derive(Debug)]
pub struct SmtpError(pub String);

/// Sends one message over plain SMTP (what a remote MTA does to Postfix).
pub fn smtp_send(port: u16, from: &str, to: &[&str], message: &[u8]) -> Result<(), SmtpError> {
    let err = |e: std::io::Error| SmtpError(e.to_string());
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(err)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(err)?;
    let mut reader = BufReader::new(stream.try_clone().map_err(err)?);
    let mut writer = stream;
    let expect = |reader: &mut BufReader<TcpStream>, code: &str| -> Result<(), SmtpError> {
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).map_err(err)?;
            if line.is_empty() {
                return Err(SmtpError("connection closed".into()));
            }
            if !line.starts_with(code) {
                return Err(SmtpError(line));
            }
            if line.as_bytes().get(3) == Some(&b' ') {
                return Ok(());
            }
        }
    };
    expect(&mut reader, "220")?;
    writer.write_all(b"EHLO client.test\r\n").map_err(err)?;
    expect(&mut reader, "250")?;
    writer
        .write_all(format!("MAIL FROM:<{from}>\r\n").as_bytes())
        .map_err(err)?;
    expect(&mut reader, "250")?;
    for rcpt in to {
        writer
            .write_all(format!("RCPT TO:<{rcpt}>\r\n").as_bytes())
            .map_err(err)?;
        expect(&mut reader, "250")?;
    }
    writer.write_all(b"DATA\r\n").map_err(err)?;
    expect(&mut reader, "354")?;
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
    writer.write_all(&data).map_err(err)?;
    expect(&mut reader, "250")?;
    writer.write_all(b"QUIT\r\n").map_err(err)?;
    Ok(())
}

/// A minimal IMAP client for driving Dovecot directly (seeding, checks).
pub struct RawImap {
    stream: TcpStream,
    tag: u32,
}

impl RawImap {
    pub fn login(port: u16, user: &str, password: &str) -> RawImap {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to dovecot");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut c = RawImap { stream, tag: 0 };
        c.read_until(None);
        let r = c.run(&format!("LOGIN \"{user}\" \"{password}\""));
        assert!(r.contains(" OK "), "login to dovecot failed: {r}");
        c
    }

    fn read_until(&mut self, tag: Option<&str>) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            // Complete when the last line is the tagged one (or the greeting).
            let text = String::from_utf8_lossy(&out);
            let done = match tag {
                None => text.ends_with("\r\n"),
                Some(t) => text
                    .rsplit_terminator("\r\n")
                    .next()
                    .is_some_and(|l| l.starts_with(&format!("{t} "))),
            };
            if done && !out.is_empty() {
                return text.into_owned();
            }
            let n = match self.stream.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => r.expect("read from dovecot"),
            };
            assert!(n > 0, "dovecot closed the connection");
            out.extend_from_slice(&buf[..n]);
        }
    }

    pub fn run(&mut self, cmd: &str) -> String {
        self.tag += 1;
        let tag = format!("r{}", self.tag);
        self.stream
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .unwrap();
        self.read_until(Some(&tag))
    }

    pub fn append(&mut self, mailbox: &str, flags: &str, message: &[u8]) -> String {
        self.append_at(mailbox, flags, None, message)
    }

    /// APPEND with an INTERNALDATE ("27-Nov-2026 10:00:00 +0000"): mail
    /// that arrived days ago, as far as leadgate can tell.
    pub fn append_at(
        &mut self,
        mailbox: &str,
        flags: &str,
        internal_date: Option<&str>,
        message: &[u8],
    ) -> String {
        self.tag += 1;
        let tag = format!("r{}", self.tag);
        let date = internal_date
            .map(|d| format!(" \"{d}\""))
            .unwrap_or_default();
        self.stream
            .write_all(
                format!(
                    "{tag} APPEND \"{mailbox}\" ({flags}){date} {{{}+}}\r\n",
                    message.len()
                )
                .as_bytes(),
            )
            .unwrap();
        self.stream.write_all(message).unwrap();
        self.stream.write_all(b"\r\n").unwrap();
        self.read_until(Some(&tag))
    }
}
