//! Same workloads, same run, against Dovecot directly and through leadgate;
//! prints one table with both figures, the ratio and the target.
//!
//! `cargo bench --bench gateway` runs the issue's sizes (10,000 messages,
//! 10,000 IDLE sessions, ...); `-- --quick` runs smaller ones. Other flags:
//! `--messages N`, `--write BENCHMARKS.md` (also write the report there),
//! `--audit-table FILE` (merge the rows `cargo bench --bench audit` printed),
//! `--only NAME` (one workload: sync, bodies, review, qresync, cards,
//! newmail, smtp, idle),
//! `--submissions N`.
//! `LEADGATE_BENCH_LOG=leadgate=debug` runs leadgate with that log filter
//! and keeps its logs in the current directory.
//! `scripts/bench` runs both benches and writes BENCHMARKS.md.
//!
//! Workloads:
//! 1. full metadata sync of the 10,000-message INBOX;
//! 2. 1,000 body downloads, one per UID FETCH and 50 per UID FETCH;
//! 3. SELECT + FETCH (FLAGS ENVELOPE) of a 10,000-lead
//!    `Review/New and unassigned` (manager) vs Dovecot's INBOX; its full
//!    sync with the 10,000 lead cards, and the cards' memory (`cards`);
//!    a QRESYNC reopen of INBOX after 10 flag changes (`qresync`);
//! 4. new mail to client: Postfix delivery -> `* n EXISTS` in IDLE on
//!    `Leads/Unassigned` vs on Dovecot's INBOX;
//! 5. SMTP submission: through leadgate (policy, relay to Postfix, filed in
//!    the shared Sent) vs straight to Postfix;
//! 6. 10,000 logged-in IDLE sessions: leadgate's upstream connections and
//!    RSS; Dovecot's per-session cost from a smaller sample.

#[path = "common/imap_client.rs"]
mod imap_client;
#[path = "../tests/common/testbed.rs"]
mod testbed;

use imap_client::Client;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

const SHARED: (&str, &str) = ("sales", "bench-shared-pw");
const CUSTOMER: (&str, &str) = ("customer", "bench-customer-pw");
const USER: (&str, &str) = ("alice", "bench-alice-pw");
const MANAGER: (&str, &str) = ("maria", "bench-maria-pw");
const REVIEW: &str = "Review/New and unassigned";
const UNASSIGNED: &str = "Leads/Unassigned";

/// `MESSAGES n` of a STATUS reply.
fn status_messages(c: &mut Client, folder: &str) -> usize {
    let (_, text) = c.run(&format!("STATUS \"{folder}\" (MESSAGES)"));
    text.split("MESSAGES ")
        .nth(1)
        .and_then(|t| t.split(|ch: char| !ch.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn message(i: usize) -> Vec<u8> {
    // Realistic sizes: mostly a few KB, every 20th with a 60 KB attachment.
    // Every message has its own sender, so every one is its own lead.
    let body_lines = 20 + (i * 37) % 120;
    let mut body = String::new();
    for l in 0..body_lines {
        body.push_str(&format!(
            "Line {l} of the enquiry: we would like pricing for {} seats and a demo.\r\n",
            10 + i % 90
        ));
    }
    if i.is_multiple_of(20) {
        body.push_str("\r\n--attachment--\r\n");
        for _ in 0..800 {
            body.push_str(
                "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n",
            );
        }
    }
    format!(
        "From: Customer {i} <c{i}@customer{}.test>\r\nTo: sales@example.com\r\nSubject: Enquiry {i}: quote for {} seats\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench-{i}@customer.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}",
        i % 500,
        10 + i % 90
    )
    .into_bytes()
}

fn seed(port: u16, n: usize) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut c = Client::over(s.try_clone().unwrap());
    c.read_line().unwrap();
    c.run(&format!("LOGIN {} {}", SHARED.0, SHARED.1));
    // Pipelined APPENDs with LITERAL+, in batches.
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let mut out = Vec::new();
        for &i in chunk {
            let m = message(i);
            out.extend_from_slice(
                format!("s{i} APPEND INBOX (\\Seen) {{{}+}}\r\n", m.len()).as_bytes(),
            );
            out.extend_from_slice(&m);
            out.extend_from_slice(b"\r\n");
        }
        s.write_all(&out).unwrap();
        let last = format!("s{} ", chunk[chunk.len() - 1]);
        loop {
            let (line, _) = c.read_line().unwrap();
            if line.starts_with(&last) {
                break;
            }
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn time<F: FnMut()>(reps: usize, mut f: F) -> Duration {
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e3;
    if v < 10.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.0} ms")
    }
}

struct Row {
    name: String,
    direct: String,
    gateway: String,
    ratio: String,
    target: String,
    met: bool,
}

impl Row {
    fn verdict(&self) -> &'static str {
        if self.met {
            "met"
        } else {
            "MISSED"
        }
    }
}

/// leadgate as a child process, with its fd limit raised for 10,000
/// sessions.
struct Leadgate {
    child: Child,
    dir: PathBuf,
    imap_port: u16,
    smtp_port: u16,
}

impl Leadgate {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, a clean exit, and a fresh start on the same store: the
    /// index is loaded from disk, nothing of earlier workloads stays in
    /// memory.
    fn restart(mut self) -> Leadgate {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let _ = self.child.wait();
        serve(&self.dir)
    }
}

impl Drop for Leadgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // With LEADGATE_BENCH_LOG set (a RUST_LOG filter), the log is worth
        // keeping: it goes to the current directory before the temporary
        // one is removed.
        if std::env::var_os("LEADGATE_BENCH_LOG").is_some() {
            let kept = format!("leadgate-bench-{}.log", self.child.id());
            if std::fs::copy(self.dir.join("leadgate.log"), &kept).is_ok() {
                eprintln!("leadgate's log kept in {kept}");
            }
        }
    }
}

/// Lead cards are on (leadgate's default) unless `LEADGATE_BENCH_NO_CARDS`
/// is set (to compare).
fn cards_on() -> bool {
    std::env::var_os("LEADGATE_BENCH_NO_CARDS").is_none()
}

fn start_gateway(dir: &Path, dovecot_port: u16, postfix_port: u16) -> Leadgate {
    let d = dir.join("leadgate");
    std::fs::create_dir_all(&d).unwrap();
    let cfg = d.join("leadgate.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[[imap.listener]]
addr = "127.0.0.1:0"
tls = "plaintext"

[[smtp.listener]]
addr = "127.0.0.1:0"
tls = "plaintext"

[smtp.relay]
host = "127.0.0.1"
port = {postfix_port}
tls = "none"
timeout_secs = 30

[upstream.imap]
host = "127.0.0.1"
port = {dovecot_port}
tls = "none"
username = "{}"
password = "{}"

[store]
path = "{d}/leadgate.redb"

[limits]
max_connections = 30000
max_connections_per_ip = 100000

[admin]
socket = "{d}/admin.sock"

[leads]
shared_address = "sales@example.com"

[[leads.assignment]]
rule = "unassigned"

[views]
lead_card = {cards}
"#,
            SHARED.0,
            SHARED.1,
            d = d.display(),
            cards = cards_on(),
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_leadgate");
    for (user, role) in [(USER, "rep"), (MANAGER, "manager")] {
        let mut add = Command::new(bin)
            .args(["--config", cfg.to_str().unwrap(), "user", "add", user.0])
            .args([
                "--role",
                role,
                "--email",
                &format!("{}@example.com", user.0),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        add.stdin
            .take()
            .unwrap()
            .write_all(format!("{}\n", user.1).as_bytes())
            .unwrap();
        assert!(add.wait().unwrap().success(), "user add {}", user.0);
    }
    serve(&d)
}

/// Starts `leadgate serve` on the config in `d` and waits for its first
/// upstream sync.
fn serve(d: &Path) -> Leadgate {
    let bin = env!("CARGO_BIN_EXE_leadgate");
    let cfg = d.join("leadgate.toml");
    // 10,000 sessions need 10,000 descriptors: raise the limit in a shell
    // that then becomes leadgate (same pid).
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" --config "$1" serve"#)
        .arg(bin)
        .arg(&cfg)
        .env(
            "RUST_LOG",
            // The views' info lines say what the lead cards cost.
            std::env::var("LEADGATE_BENCH_LOG")
                .unwrap_or_else(|_| "warn,leadgate::imap::views=info".into()),
        )
        .stdout(Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(d.join("leadgate.log"))
                .unwrap(),
        )
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut imap_port, mut smtp_port) = (0, 0);
    let port_of = |rest: &str| -> u16 {
        rest.split(' ')
            .next()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "leadgate exited; see {}",
            d.join("leadgate.log").display()
        );
        if let Some(rest) = line.strip_prefix("leadgate: imap listening on ") {
            imap_port = port_of(rest);
        }
        if let Some(rest) = line.strip_prefix("leadgate: smtp listening on ") {
            smtp_port = port_of(rest);
        }
        if line.trim() == "leadgate: upstream synced" {
            break;
        }
    }
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    Leadgate {
        child,
        dir: d.to_path_buf(),
        imap_port,
        smtp_port,
    }
}

/// Raises this process's own descriptor limit (the client side of 10,000
/// sessions); works for root, or up to the hard limit otherwise.
fn raise_own_fd_limit() {
    let _ = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg("--nofile=65536:65536")
        .stderr(Stdio::null())
        .status();
}

fn own_fd_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(1024)
}

// ---------------------------------------------------------------- /proc

/// A field of /proc/<pid>/status in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Proportional set size in KiB (shared pages divided among sharers).
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Direct children of `parent` whose command name is `comm`.
fn children_named(parent: u32, comm: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let name = head.split_once(" (").map(|(_, n)| n).unwrap_or("");
        let ppid: u32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid == parent && name == comm {
            out.push(pid);
        }
    }
    out
}

/// Established TCP connections of process `pid` to `port` on loopback:
/// the socket inodes among its descriptors, looked up in /proc/net/tcp.
fn upstream_connections(pid: u32, port: u16) -> usize {
    let mut inodes = std::collections::HashSet::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.to_string_lossy();
                if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    inodes.insert(inode.to_owned());
                }
            }
        }
    }
    let mut n = 0;
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let remote_port = f[2]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if remote_port == Some(port) && f[3] == "01" && inodes.contains(f[9]) {
                n += 1;
            }
        }
    }
    n
}

// ------------------------------------------------------- many IDLE sessions

type Reader = tokio::io::BufReader<tokio::net::TcpStream>;

async fn read_until(r: &mut Reader, done: impl Fn(&str) -> bool) -> std::io::Result<String> {
    use tokio::io::AsyncBufReadExt;
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        if done(&text) {
            return Ok(text);
        }
    }
}

/// One session: LOGIN, SELECT `folder`, IDLE; returns the idling stream.
async fn open_idle(port: u16, who: (&str, &str), folder: &str) -> std::io::Result<Reader> {
    use tokio::io::AsyncWriteExt;
    let s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut r = tokio::io::BufReader::new(s);
    read_until(&mut r, |l| l.starts_with("* ")).await?;
    let login = format!("a LOGIN {} {}\r\nb SELECT \"{folder}\"\r\n", who.0, who.1);
    r.get_mut().write_all(login.as_bytes()).await?;
    let l = read_until(&mut r, |l| l.starts_with("a ")).await?;
    if !l.starts_with("a OK") {
        return Err(std::io::Error::other(format!("LOGIN: {l}")));
    }
    let l = read_until(&mut r, |l| l.starts_with("b ")).await?;
    if !l.starts_with("b OK") {
        return Err(std::io::Error::other(format!("SELECT: {l}")));
    }
    r.get_mut().write_all(b"c IDLE\r\n").await?;
    read_until(&mut r, |l| l.starts_with('+')).await?;
    Ok(r)
}

/// `count` idling sessions, opened `parallel` at a time.
fn open_many(
    rt: &tokio::runtime::Runtime,
    port: u16,
    who: (&'static str, &'static str),
    folder: &'static str,
    count: usize,
    parallel: usize,
) -> Vec<Reader> {
    rt.block_on(async move {
        let gate = Arc::new(tokio::sync::Semaphore::new(parallel));
        let mut tasks = Vec::with_capacity(count);
        for _ in 0..count {
            let permit = gate.clone().acquire_owned().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let r =
                    tokio::time::timeout(Duration::from_secs(120), open_idle(port, who, folder))
                        .await;
                drop(permit);
                match r {
                    Ok(r) => r,
                    Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
                }
            }));
        }
        let mut out = Vec::with_capacity(count);
        let mut failed = 0;
        let mut first_error = None;
        for t in tasks {
            match t.await.expect("session task") {
                Ok(r) => out.push(r),
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        if failed > 0 {
            eprintln!(
                "  {failed} of {count} sessions failed to open: {}",
                first_error.unwrap_or_default()
            );
        }
        out
    })
}

/// Waits until every session has seen `* n EXISTS`; returns how many did
/// within `timeout` and when the last one did.
fn wait_all_exists(
    rt: &tokio::runtime::Runtime,
    sessions: Vec<Reader>,
    start: Instant,
    timeout: Duration,
    deliver: impl FnOnce(),
) -> (usize, Duration, Vec<Reader>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|mut r| {
            let seen = seen.clone();
            rt.spawn(async move {
                let got = tokio::time::timeout(
                    timeout,
                    read_until(&mut r, |l| l.trim_end().ends_with(" EXISTS")),
                )
                .await;
                if matches!(got, Ok(Ok(_))) {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
                (r, Instant::now())
            })
        })
        .collect();
    deliver();
    let mut last = Duration::ZERO;
    let mut back = Vec::new();
    rt.block_on(async {
        for t in tasks {
            let (r, at) = t.await.expect("reader task");
            last = last.max(at.duration_since(start));
            back.push(r);
        }
    });
    (seen.load(Ordering::Relaxed), last, back)
}

// ----------------------------------------------------------------- SMTP

struct Smtp {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Smtp {
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            self.r.read_line(&mut line).expect("smtp read");
            assert!(!line.is_empty(), "smtp server closed: {all}");
            all.push_str(&line);
            if line.as_bytes().get(3) == Some(&b' ') {
                return all;
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
    }

    fn open(port: u16, auth: Option<(&str, &str)>) -> Smtp {
        use base64::Engine;
        let w = TcpStream::connect(("127.0.0.1", port)).unwrap();
        w.set_nodelay(true).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut s = Smtp {
            r: BufReader::new(w.try_clone().unwrap()),
            w,
        };
        assert!(s.reply().starts_with("220"));
        assert!(s.cmd("EHLO bench.test").starts_with("250"));
        if let Some((u, p)) = auth {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("\0{u}\0{p}").as_bytes());
            let r = s.cmd(&format!("AUTH PLAIN {token}"));
            assert!(r.starts_with("235"), "AUTH: {r}");
        }
        s
    }

    /// One transaction; the time from MAIL FROM to the final reply.
    fn submit(&mut self, from: &str, to: &str, message: &[u8]) -> (Duration, String) {
        let t = Instant::now();
        let r = self.cmd(&format!("MAIL FROM:<{from}>"));
        assert!(r.starts_with("250"), "MAIL: {r}");
        let r = self.cmd(&format!("RCPT TO:<{to}>"));
        assert!(r.starts_with("250"), "RCPT: {r}");
        let r = self.cmd("DATA");
        assert!(r.starts_with("354"), "DATA: {r}");
        let mut data = Vec::with_capacity(message.len() + 8);
        for line in message.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b".") {
                data.push(b'.');
            }
            data.extend_from_slice(line);
        }
        data.extend_from_slice(b".\r\n");
        self.w.write_all(&data).unwrap();
        let r = self.reply();
        (t.elapsed(), r)
    }
}

fn reply_message(i: usize) -> Vec<u8> {
    let mut body = String::new();
    for l in 0..30 {
        body.push_str(&format!(
            "Line {l}: thanks for your enquiry, here is the quote you asked for.\r\n"
        ));
    }
    format!(
        "From: Alice <alice@example.com>\r\nTo: Customer 0 <customer@customer.test>\r\nSubject: Re: Enquiry 0: quote for 10 seats (#{i})\r\nDate: Thu, 26 Nov 2026 11:00:00 +0000\r\nMessage-ID: <reply-{i}@bench.test>\r\nIn-Reply-To: <bench-0@customer.test>\r\nReferences: <bench-0@customer.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    )
    .into_bytes()
}

// ------------------------------------------------------------ workloads

struct Sizes {
    messages: usize,
    bodies: usize,
    deliveries: usize,
    submissions: usize,
    idle_sessions: usize,
    dovecot_idle_sample: usize,
}

fn full_sync(rows: &mut Vec<Row>, n: usize, direct: &mut Client, through: &mut Client) {
    let sync = "UID FETCH 1:* (FLAGS ENVELOPE RFC822.SIZE INTERNALDATE)";
    let (db, _) = direct.run(sync);
    let (gb, _) = through.run(sync);
    let d = time(9, || {
        direct.run(sync);
    });
    let g = time(9, || {
        through.run(sync);
    });
    let ratio = g.as_secs_f64() / d.as_secs_f64();
    rows.push(Row {
        name: format!(
            "full sync of a {n}-message folder (UID FETCH 1:* FLAGS ENVELOPE RFC822.SIZE INTERNALDATE), median of 9"
        ),
        direct: format!("{} ({} KB)", ms(d), db / 1024),
        gateway: format!("{} ({} KB)", ms(g), gb / 1024),
        ratio: format!("{ratio:.2}x time"),
        target: "<= 1.0x time".into(),
        met: ratio <= 1.0,
    });
}

fn body_downloads(
    rows: &mut Vec<Row>,
    n: usize,
    bodies: usize,
    direct: &mut Client,
    through: &mut Client,
) {
    let uids: Vec<usize> = (1..=bodies).map(|i| 1 + (i * 7919) % n).collect();
    let mut bytes = 0;
    let d = time(3, || {
        bytes = 0;
        for u in &uids {
            bytes += direct.run(&format!("UID FETCH {u} (BODY.PEEK[])")).0;
        }
    });
    let g = time(3, || {
        for u in &uids {
            through.run(&format!("UID FETCH {u} (BODY.PEEK[])"));
        }
    });
    let tput = |t: Duration| bytes as f64 / t.as_secs_f64() / 1e6;
    let ratio = tput(g) / tput(d);
    rows.push(Row {
        name: format!(
            "{bodies} body downloads, one UID FETCH BODY.PEEK[] each ({} MB), median of 3",
            bytes / 1_000_000
        ),
        direct: format!("{}, {:.1} MB/s", ms(d), tput(d)),
        gateway: format!("{}, {:.1} MB/s", ms(g), tput(g)),
        ratio: format!("{ratio:.2}x throughput"),
        target: ">= 0.8x throughput".into(),
        met: ratio >= 0.8,
    });

    // In batches of 50, as Thunderbird's offline sync does.
    let batches: Vec<String> = uids
        .chunks(50)
        .map(|c| {
            c.iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    let d = time(3, || {
        for b in &batches {
            direct.run(&format!("UID FETCH {b} (BODY.PEEK[])"));
        }
    });
    let g = time(3, || {
        for b in &batches {
            through.run(&format!("UID FETCH {b} (BODY.PEEK[])"));
        }
    });
    let ratio = tput(g) / tput(d);
    rows.push(Row {
        name: format!("{bodies} body downloads, 50 per UID FETCH, median of 3"),
        direct: format!("{}, {:.1} MB/s", ms(d), tput(d)),
        gateway: format!("{}, {:.1} MB/s", ms(g), tput(g)),
        ratio: format!("{ratio:.2}x throughput"),
        target: ">= 0.8x throughput".into(),
        met: ratio >= 0.8,
    });
}

fn review_folder(rows: &mut Vec<Row>, n: usize, dovecot_port: u16, gw: &Leadgate) {
    let mut direct = Client::login(dovecot_port, SHARED);
    let mut maria = Client::login(gw.imap_port, MANAGER);
    let fetch = "FETCH 1:* (FLAGS ENVELOPE)";
    let mut db = 0;
    let mut gb = 0;
    let d = time(9, || {
        direct.run("SELECT INBOX");
        db = direct.run(fetch).0;
        direct.run("UNSELECT");
    });
    let g = time(9, || {
        maria.run(&format!("SELECT \"{REVIEW}\""));
        gb = maria.run(fetch).0;
        maria.run("UNSELECT");
    });
    let ratio = g.as_secs_f64() / d.as_secs_f64();
    rows.push(Row {
        name: format!(
            "SELECT + FETCH 1:* (FLAGS ENVELOPE) of `{REVIEW}` with {n} leads{} (manager) vs Dovecot's {n}-message INBOX, median of 9",
            if cards_on() { format!(" and their {n} cards") } else { " (no lead cards)".into() }
        ),
        direct: format!("{} ({} KB)", ms(d), db / 1024),
        gateway: format!("{} ({} KB)", ms(g), gb / 1024),
        ratio: format!("{ratio:.2}x time"),
        target: "<= 1.0x time".into(),
        met: ratio <= 1.0,
    });
}

/// The number after `code` in `text` (`[HIGHESTMODSEQ n]`, `[UIDVALIDITY n]`).
fn number_after(text: &str, code: &str) -> u64 {
    text.split(code)
        .nth(1)
        .and_then(|t| t.split(|ch: char| !ch.is_ascii_digit()).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A client reopening a folder after 10 flag changes made elsewhere, with
/// QRESYNC (Apple Mail, iOS; Thunderbird does the same with FETCH
/// CHANGEDSINCE): the FETCH lines it receives, the time of that SELECT and
/// of the first SELECT (CONDSTORE), when leadgate records a modseq for
/// every message. `who` logs in twice (the client, and the session that
/// changes the flags).
fn qresync_one(port: u16, who: (&str, &str), n: usize) -> (usize, Duration, Duration) {
    let mut client = Client::login(port, who);
    client.run("ENABLE QRESYNC");
    let t = Instant::now();
    let (_, text) = client.run("SELECT INBOX (CONDSTORE)");
    let first = t.elapsed();
    let (h, uv) = (
        number_after(&text, "[HIGHESTMODSEQ "),
        number_after(&text, "[UIDVALIDITY "),
    );
    client.run("LOGOUT");
    let mut other = Client::login(port, who);
    other.run("SELECT INBOX");
    let step = (n / 10).max(1);
    let changed: Vec<usize> = (0..10).map(|k| 1 + k * step).filter(|s| *s <= n).collect();
    for s in &changed {
        other.run(&format!("STORE {s} +FLAGS.SILENT (\\Flagged)"));
    }
    let mut again = Client::login(port, who);
    again.run("ENABLE QRESYNC");
    let t = Instant::now();
    let (_, text) = again.run(&format!("SELECT INBOX (QRESYNC ({uv} {h}))"));
    let reopen = t.elapsed();
    let lines = text.lines().filter(|l| l.contains(" FETCH (")).count();
    for s in &changed {
        other.run(&format!("STORE {s} -FLAGS.SILENT (\\Flagged)"));
    }
    (lines, first, reopen)
}

fn qresync_reopen(rows: &mut Vec<Row>, n: usize, dovecot_port: u16, gw: &Leadgate) {
    let (dl, dfirst, dreopen) = qresync_one(dovecot_port, SHARED, n);
    let (gl, gfirst, greopen) = qresync_one(gw.imap_port, MANAGER, n);
    rows.push(Row {
        name: format!(
            "QRESYNC reopen of the {n}-message INBOX after 10 flag changes elsewhere: FETCH lines received (manager)"
        ),
        direct: dl.to_string(),
        gateway: gl.to_string(),
        ratio: "-".into(),
        target: "<= 20 lines".into(),
        met: gl <= 20,
    });
    rows.push(Row {
        name: format!("... that reopening SELECT (QRESYNC), {n} messages"),
        direct: ms(dreopen),
        gateway: ms(greopen),
        ratio: format!("{:.2}x time", greopen.as_secs_f64() / dreopen.as_secs_f64()),
        target: "(measured)".into(),
        met: true,
    });
    rows.push(Row {
        name: format!(
            "... the first SELECT (CONDSTORE) of that INBOX by the user (leadgate records {n} modseqs)"
        ),
        direct: ms(dfirst),
        gateway: ms(gfirst),
        ratio: format!("{:.2}x time", gfirst.as_secs_f64() / dfirst.as_secs_f64()),
        target: "(measured)".into(),
        met: true,
    });
}

/// Full sync of a lead folder with cards: the 10,000-lead review queue
/// holds each lead's message and its card (20,000 entries), against a
/// Dovecot folder of as many messages (INBOX copied twice into `Twice`)
/// and against Dovecot's 10,000-message INBOX. Then leadgate is restarted
/// and its log says what the cards cost in memory and start-up time.
fn cards_sync(rows: &mut Vec<Row>, n: usize, dovecot_port: u16, gw: Leadgate) -> Leadgate {
    let sync = "UID FETCH 1:* (FLAGS ENVELOPE RFC822.SIZE INTERNALDATE)";
    let mut direct = Client::login(dovecot_port, SHARED);
    direct.run("CREATE Twice");
    direct.run("SELECT INBOX");
    direct.run("UID COPY 1:* Twice");
    direct.run("UID COPY 1:* Twice");
    let (db10, _) = direct.run(sync);
    let d10 = time(9, || {
        direct.run(sync);
    });
    direct.run("SELECT Twice");
    let mut maria = Client::login(gw.imap_port, MANAGER);
    maria.run(&format!("SELECT \"{REVIEW}\""));
    let (db, _) = direct.run(sync);
    let (gb, _) = maria.run(sync);
    let d = time(9, || {
        direct.run(sync);
    });
    let g = time(9, || {
        maria.run(sync);
    });
    let ratio = g.as_secs_f64() / d.as_secs_f64();
    rows.push(Row {
        name: format!(
            "full sync of `{REVIEW}` with {n} leads and their {n} lead cards ({} entries; UID FETCH 1:* FLAGS ENVELOPE RFC822.SIZE INTERNALDATE, manager) vs a Dovecot folder of {} messages, median of 9 (Dovecot's {n}-message INBOX: {}, {} KB; ratio to it {:.2}x)",
            2 * n,
            2 * n,
            ms(d10),
            db10 / 1024,
            g.as_secs_f64() / d10.as_secs_f64()
        ),
        direct: format!("{} ({} KB)", ms(d), db / 1024),
        gateway: format!("{} ({} KB)", ms(g), gb / 1024),
        ratio: format!("{ratio:.2}x time"),
        target: "<= 0.5x time".into(),
        met: ratio <= 0.5,
    });
    drop((direct, maria));
    let gw = gw.restart();
    let log = std::fs::read_to_string(gw.dir.join("leadgate.log")).unwrap_or_default();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("lead cards rendered"))
        .unwrap_or_default();
    // Without the terminal colours tracing puts around field names.
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let line = plain;
    let field = |name: &str| -> Option<u64> {
        line.split(&format!("{name}="))
            .nth(1)?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    if let (Some(cards), Some(bytes), Some(ms)) = (field("cards"), field("bytes"), field("ms")) {
        let per = bytes as f64 / cards.max(1) as f64;
        rows.push(Row {
            name: format!(
                "lead cards in memory after a restart with {n} leads (slot, envelope, body structure per lead; bodies rendered on demand), and the time to render them all at start"
            ),
            direct: "n/a (leadgate only)".into(),
            gateway: format!(
                "{cards} cards, {:.1} MiB, {per:.0} bytes per lead; rendered in {ms} ms",
                bytes as f64 / 1048576.0
            ),
            ratio: "-".into(),
            target: "<= 2 KiB per lead".into(),
            met: per <= 2048.0,
        });
    } else {
        eprintln!("no card figures in the log: {line:?}");
    }
    gw
}

/// Postfix delivery -> `* n EXISTS` in an IDLE client, for both at once.
fn new_mail_latency(
    rows: &mut Vec<Row>,
    deliveries: usize,
    dovecot_port: u16,
    postfix_port: u16,
    gw: &Leadgate,
) {
    let mut direct = Client::login(dovecot_port, SHARED);
    direct.run("SELECT INBOX");
    let mut through = Client::login(gw.imap_port, USER);
    through.run(&format!("SELECT \"{UNASSIGNED}\""));
    let mut watchers = Vec::new();
    let mut stops = Vec::new();
    for mut c in [direct, through] {
        c.idle();
        stops.push(c.s.try_clone().unwrap());
        let (tx, rx) = mpsc::channel::<Instant>();
        let t = std::thread::spawn(move || {
            while let Ok((line, _)) = c.read_line() {
                if line.trim_end().ends_with(" EXISTS") && tx.send(Instant::now()).is_err() {
                    break;
                }
            }
        });
        watchers.push((rx, t));
    }
    let timeout = Duration::from_secs(30);
    let mut lat: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut missed = [0usize; 2];
    for i in 0..deliveries {
        let from = format!("lat{i}@latency{i}.test");
        let msg = format!(
            "From: Latency {i} <{from}>\r\nTo: sales@example.com\r\nSubject: Latency probe {i}: pricing question\r\nMessage-ID: <latency-{i}@bench.test>\r\nDate: Thu, 26 Nov 2026 12:00:00 +0000\r\n\r\nHow much for {i} seats?\r\n"
        );
        let t0 = Instant::now();
        testbed::smtp_send(postfix_port, &from, &["sales@example.com"], msg.as_bytes())
            .expect("deliver through postfix");
        for (k, (rx, _)) in watchers.iter().enumerate() {
            match rx.recv_timeout(timeout.saturating_sub(t0.elapsed())) {
                Ok(at) => lat[k].push(at.duration_since(t0)),
                Err(_) => {
                    missed[k] += 1;
                    lat[k].push(timeout);
                }
            }
        }
        // Let both sides settle before the next delivery: Dovecot tells an
        // IDLE client of a change 500 ms after it noticed it, and a change
        // made meanwhile by anyone (leadgate's own resync of the last
        // delivery included) is told at that same moment, so deliveries
        // closer together would catch a timer already running and measure
        // the direct client early by luck. Drop extra notifications too.
        std::thread::sleep(Duration::from_millis(1200));
        for (rx, _) in &watchers {
            while rx.try_recv().is_ok() {}
        }
    }
    for mut s in stops {
        let _ = s.write_all(b"DONE\r\nz LOGOUT\r\n");
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
    for (_, t) in watchers {
        let _ = t.join();
    }
    let (d50, d95) = (percentile(&lat[0], 0.5), percentile(&lat[0], 0.95));
    let (g50, g95) = (percentile(&lat[1], 0.5), percentile(&lat[1], 0.95));
    let note = |m: usize| {
        if m > 0 {
            format!(", {m} not seen within {}s", timeout.as_secs())
        } else {
            String::new()
        }
    };
    rows.push(Row {
        name: format!(
            "new mail to client: Postfix delivery -> `* n EXISTS` in IDLE (`{UNASSIGNED}` through leadgate, INBOX direct), {deliveries} deliveries"
        ),
        direct: format!("p50 {}, p95 {}{}", ms(d50), ms(d95), note(missed[0])),
        gateway: format!("p50 {}, p95 {}{}", ms(g50), ms(g95), note(missed[1])),
        ratio: format!(
            "{:.2}x p50, {:.2}x p95",
            g50.as_secs_f64() / d50.as_secs_f64(),
            g95.as_secs_f64() / d95.as_secs_f64()
        ),
        target: "p95 <= 1 s through leadgate".into(),
        met: g95 <= Duration::from_secs(1) && missed[1] == 0,
    });
}

/// Submitting one reply through leadgate vs straight to Postfix.
fn smtp_submission(rows: &mut Vec<Row>, submissions: usize, postfix_port: u16, gw: &Leadgate) {
    let mut direct = Smtp::open(postfix_port, None);
    let mut through = Smtp::open(gw.smtp_port, Some(USER));
    let from = "alice@example.com";
    let to = "customer@customer.test";
    // Warm up both; alice's first reply claims the unassigned lead.
    for i in 0..3 {
        let (_, r) = through.submit(from, to, &reply_message(1_000_000 + i));
        assert!(r.starts_with("250"), "reply through leadgate: {r}");
        let (_, r) = direct.submit(from, to, &reply_message(2_000_000 + i));
        assert!(r.starts_with("250"), "straight to postfix: {r}");
    }
    let mut d = Vec::new();
    let mut g = Vec::new();
    for i in 0..submissions {
        // Alternate, so both see the same background noise.
        let (t, r) = direct.submit(from, to, &reply_message(i));
        assert!(r.starts_with("250"), "straight to postfix: {r}");
        d.push(t);
        let (t, r) = through.submit(from, to, &reply_message(10_000 + i));
        assert!(r.starts_with("250"), "reply through leadgate: {r}");
        g.push(t);
    }
    let _ = direct.cmd("QUIT");
    let _ = through.cmd("QUIT");
    let (dm, gm) = (median(d.clone()), median(g.clone()));
    let added = gm.saturating_sub(dm);
    rows.push(Row {
        name: format!(
            "SMTP submission of one reply (owner rule, relay to Postfix, lead and Sent copy recorded; the copy is filed after the 250) vs straight to Postfix, {submissions} each, MAIL FROM to final 250"
        ),
        direct: format!("median {}, p95 {}", ms(dm), ms(percentile(&d, 0.95))),
        gateway: format!("median {}, p95 {}", ms(gm), ms(percentile(&g, 0.95))),
        ratio: format!("{:.2}x median; +{} added", gm.as_secs_f64() / dm.as_secs_f64(), ms(added)),
        target: "median added <= 5 ms".into(),
        met: added <= Duration::from_millis(5),
    });
}

/// 10,000 logged-in IDLE sessions through leadgate; Dovecot's cost per
/// session from a sample (10,000 Dovecot sessions are 10,000 processes).
fn idle_sessions(
    rows: &mut Vec<Row>,
    sizes: &Sizes,
    dovecot: &testbed::Dovecot,
    postfix_port: u16,
    gw: Leadgate,
) -> Leadgate {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let need = sizes.idle_sessions + 200;
    if own_fd_limit() < need {
        eprintln!(
            "  descriptor limit {} < {need}: run through scripts/bench or raise `ulimit -n`",
            own_fd_limit()
        );
    }

    // Dovecot: a sample of IDLE sessions on INBOX, one imap process each.
    let master: u32 = std::fs::read_to_string(dovecot.dir.join("run/master.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(0);
    let before: Vec<u32> = children_named(master, "imap");
    let sample = sizes.dovecot_idle_sample;
    let t = Instant::now();
    let held = open_many(&rt, dovecot.imap_port, SHARED, "INBOX", sample, 50);
    eprintln!(
        "  {} Dovecot IDLE sessions in {:.1?}",
        held.len(),
        t.elapsed()
    );
    std::thread::sleep(Duration::from_secs(1));
    let procs: Vec<u32> = children_named(master, "imap")
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    let pss: u64 = procs.iter().map(|&p| pss_kib(p)).sum();
    let rss: u64 = procs.iter().map(|&p| status_kib(p, "VmRSS:")).sum();
    let dovecot_sessions = held.len().max(1);
    let dovecot_pss_per = pss as f64 / dovecot_sessions as f64;
    let dovecot_rss_per = rss as f64 / dovecot_sessions as f64;
    eprintln!(
        "  Dovecot: {} imap processes, PSS {} KiB, RSS {} KiB",
        procs.len(),
        pss,
        rss
    );
    drop(held);

    // leadgate: first idling in an empty lead folder (the fixed cost of a
    // session), then on INBOX as a mail client keeps it (the cost of a
    // selected 10,000-message folder on top).
    let n = sizes.idle_sessions;
    // Right after a (re)start, everyone logs in at once, as mail clients
    // do after an upgrade: a smaller number, as this is costly.
    let cold_n = (n / 10).max(100);
    let cold_base = status_kib(gw.pid(), "VmRSS:");
    let cold = leadgate_idle_phase(&rt, &gw, dovecot.imap_port, EMPTY_FOLDER, cold_n, None);
    // Then a fresh daemon that has served one login already: the steady
    // state the targets are about.
    let gw = gw.restart();
    drop(open_many(&rt, gw.imap_port, USER, EMPTY_FOLDER, 1, 1));
    std::thread::sleep(Duration::from_secs(1));
    let baseline = status_kib(gw.pid(), "VmRSS:");
    let empty = leadgate_idle_phase(&rt, &gw, dovecot.imap_port, EMPTY_FOLDER, n, None);
    let inbox = leadgate_idle_phase(&rt, &gw, dovecot.imap_port, "INBOX", n, Some(postfix_port));
    drop(rt);
    let conns = empty.conns.max(inbox.conns);
    rows.push(Row {
        name: format!(
            "{n} concurrent logged-in IDLE sessions: upstream connections of leadgate (Dovecot: one per session)"
        ),
        direct: format!("1 per session ({n} for {n})"),
        gateway: format!(
            "{} (empty lead folder selected), {} (INBOX selected); {} before the sessions",
            empty.conns, inbox.conns, empty.conns_before
        ),
        ratio: format!("{:.4}x connections", conns as f64 / n as f64),
        target: "<= 8 upstream connections".into(),
        met: conns <= 8 && empty.opened == n && inbox.opened == n,
    });
    let dovecot_cell = format!(
        "{dovecot_pss_per:.0} KiB/session PSS ({dovecot_rss_per:.0} KiB RSS), from {sample} sessions; x{n} = {:.0} MiB",
        dovecot_pss_per * n as f64 / 1024.0
    );
    for (phase, what) in [
        (
            &inbox,
            format!("INBOX ({} messages) selected", sizes.messages),
        ),
        (
            &empty,
            format!("an empty lead folder (`{EMPTY_FOLDER}`) selected"),
        ),
    ] {
        // Against the RSS before any session: the second phase reuses
        // memory the first one freed.
        let per = phase.rss_peak.saturating_sub(baseline) as f64 / phase.opened.max(1) as f64;
        let fanout = match phase.notified {
            Some((seen, last)) => format!(
                "; one new mail reached all sessions' IDLE ({seen} of {}) within {:.1} s",
                phase.opened,
                last.as_secs_f64()
            ),
            None => String::new(),
        };
        rows.push(Row {
            name: format!(
                "{n} concurrent logged-in IDLE sessions, {what}: memory (leadgate VmRSS; Dovecot from a sample of {sample} IDLE sessions on INBOX, one imap process each){fanout}"
            ),
            direct: dovecot_cell.clone(),
            gateway: format!(
                "RSS {:.0} MiB ({:.0} MiB with no sessions), {per:.1} KiB/session; {} opened in {:.0} s",
                phase.rss_peak as f64 / 1024.0,
                baseline as f64 / 1024.0,
                phase.opened,
                phase.open_time.as_secs_f64()
            ),
            ratio: format!("{:.2}x per session", per / dovecot_pss_per.max(1.0)),
            target: "<= 300 MiB RSS".into(),
            met: phase.rss_peak <= 300 * 1024
                && phase.opened == n
                && phase.notified.is_none_or(|(seen, _)| seen == phase.opened),
        });
    }
    let per = cold.rss_peak.saturating_sub(cold_base) as f64 / cold.opened.max(1) as f64;
    rows.push(Row {
        name: format!(
            "{cold_n} sessions of one user logging in and IDLEing at once on a just-restarted leadgate (cold: the same sessions on a warm daemon are the rows above)"
        ),
        direct: dovecot_cell,
        gateway: format!(
            "RSS {:.0} MiB ({:.0} MiB before), {per:.0} KiB/session; {} opened in {:.1} s; {} upstream connections",
            cold.rss_peak as f64 / 1024.0,
            cold_base as f64 / 1024.0,
            cold.opened,
            cold.open_time.as_secs_f64(),
            cold.conns
        ),
        ratio: format!("{:.2}x per session", per / dovecot_pss_per.max(1.0)),
        target: "<= 300 MiB RSS".into(),
        met: cold.rss_peak <= 300 * 1024 && cold.opened == cold_n && cold.conns <= 8,
    });
    gw
}

/// A lead folder that stays empty for the bench's rep.
const EMPTY_FOLDER: &str = "Leads/Needs input";

struct IdlePhase {
    opened: usize,
    open_time: Duration,
    rss_peak: u64,
    conns_before: usize,
    conns: usize,
    /// With a fan-out probe: sessions that saw EXISTS, and when the last did.
    notified: Option<(usize, Duration)>,
}

/// `n` sessions of the rep idling on `folder` through leadgate; with
/// `probe_via` (Postfix's port), one new mail is delivered and every
/// session must see `* n EXISTS`. The sessions are closed at the end.
fn leadgate_idle_phase(
    rt: &tokio::runtime::Runtime,
    gw: &Leadgate,
    dovecot_port: u16,
    folder: &'static str,
    n: usize,
    probe_via: Option<u16>,
) -> IdlePhase {
    let pid = gw.pid();
    let rss_before = status_kib(pid, "VmRSS:");
    let conns_before = upstream_connections(pid, dovecot_port);
    let t = Instant::now();
    let held = open_many(rt, gw.imap_port, USER, folder, n, 200);
    let open_time = t.elapsed();
    let opened = held.len();
    eprintln!("  {opened} leadgate IDLE sessions on {folder} in {open_time:.1?}");
    std::thread::sleep(Duration::from_secs(2));
    let mut rss_peak = status_kib(pid, "VmRSS:");
    let mut conns = upstream_connections(pid, dovecot_port);
    eprintln!(
        "  leadgate: RSS {rss_before} -> {rss_peak} KiB, upstream connections {conns_before} -> {conns}"
    );
    let mut notified = None;
    let held = match probe_via {
        Some(postfix_port) => {
            let t0 = Instant::now();
            let (seen, last, held) = wait_all_exists(
                rt,
                held,
                t0,
                Duration::from_secs(120),
                || {
                    let msg = b"From: Fanout <fanout@fanout.test>\r\nTo: sales@example.com\r\nSubject: Fan-out probe\r\nMessage-ID: <fanout@bench.test>\r\n\r\nhello\r\n";
                    testbed::smtp_send(
                        postfix_port,
                        "fanout@fanout.test",
                        &["sales@example.com"],
                        msg,
                    )
                    .expect("deliver through postfix");
                },
            );
            eprintln!("  {seen} of {opened} sessions saw EXISTS; the last after {last:.1?}");
            notified = Some((seen, last));
            rss_peak = rss_peak.max(status_kib(pid, "VmRSS:"));
            conns = conns.max(upstream_connections(pid, dovecot_port));
            held
        }
        None => held,
    };
    drop(held);
    // Let leadgate notice the closed sessions before the next phase.
    std::thread::sleep(Duration::from_secs(3));
    IdlePhase {
        opened,
        open_time,
        rss_peak,
        conns_before,
        conns,
        notified,
    }
}

// --------------------------------------------------------------- report

/// Rows from `cargo bench --bench audit`'s table (`| what | got | target |`).
fn audit_rows(path: &str) -> Vec<Row> {
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("no audit table at {path}");
        return Vec::new();
    };
    let mut rows = Vec::new();
    for line in text.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if cells.len() != 3 || cells[0] == "audit log" || cells[0].starts_with("---") {
            continue;
        }
        let number = |s: &str| -> Option<f64> {
            s.split_whitespace()
                .find_map(|w| w.trim_start_matches(['<', '>', '=']).parse::<f64>().ok())
        };
        let (Some(got), Some(want)) = (number(cells[1]), number(cells[2])) else {
            continue;
        };
        let met = if cells[2].starts_with(">=") {
            got >= want
        } else {
            got <= want
        };
        rows.push(Row {
            name: format!("audit log: {}", cells[0]),
            direct: "n/a (leadgate only)".into(),
            gateway: cells[1].to_owned(),
            ratio: "-".into(),
            target: cells[2].to_owned(),
            met,
        });
    }
    rows
}

fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| workload | Dovecot direct | through leadgate | ratio | target | met/MISSED |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.name,
            r.direct,
            r.gateway,
            r.ratio,
            r.target,
            r.verdict()
        ));
    }
    t
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().next().and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|n| n.parse::<u64>().ok())
            })
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let dovecot = Command::new("dovecot")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{cpus} CPUs, {:.0} GiB RAM, Linux {}, Dovecot {dovecot}",
        mem as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

/// The 1-minute load average (other work on the machine shows here).
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let quick = args.iter().any(|a| a == "--quick");
    let mut sizes = if quick {
        Sizes {
            messages: 1_000,
            bodies: 200,
            deliveries: 20,
            submissions: 50,
            idle_sessions: 1_000,
            dovecot_idle_sample: 50,
        }
    } else {
        Sizes {
            messages: 10_000,
            bodies: 1_000,
            deliveries: 50,
            submissions: 200,
            idle_sessions: 10_000,
            dovecot_idle_sample: 200,
        }
    };
    if let Some(n) = arg("--messages").and_then(|v| v.parse().ok()) {
        sizes.messages = n;
    }
    if let Some(n) = arg("--sessions").and_then(|v| v.parse().ok()) {
        sizes.idle_sessions = n;
    }
    if let Some(n) = arg("--submissions").and_then(|v| v.parse().ok()) {
        sizes.submissions = n;
    }
    sizes.bodies = sizes.bodies.min(sizes.messages);
    let n = sizes.messages;
    raise_own_fd_limit();
    let started = Instant::now();
    let load_before = load();

    let dir = tempfile::tempdir().unwrap();
    let dovecot = testbed::Dovecot::start(dir.path(), &[SHARED, CUSTOMER], None, false);
    let postfix = testbed::Postfix::start(
        dir.path(),
        dovecot.lmtp_port,
        &["example.com", "customer.test"],
        false,
    );
    eprintln!("seeding {n} messages into Dovecot ...");
    let t = Instant::now();
    seed(dovecot.imap_port, n);
    eprintln!("seeded in {:.1?}", t.elapsed());
    let mut facts = vec![format!(
        "Seeding {n} messages into Dovecot (pipelined APPEND, LITERAL+) took {:.1} s.",
        t.elapsed().as_secs_f64()
    )];

    let t = Instant::now();
    let gw = start_gateway(dir.path(), dovecot.imap_port, postfix.smtp_port);
    let indexed = t.elapsed();
    eprintln!("leadgate indexed {n} messages in {indexed:.1?} (first start)");
    // Every message is its own unassigned lead: wait until all are filed.
    let mut maria = Client::login(gw.imap_port, MANAGER);
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        // Each lead is its message and its card.
        let got = status_messages(&mut maria, REVIEW);
        if got >= if cards_on() { 2 * n } else { n } {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {got} of {n} leads after 30 minutes; see {}",
            gw.dir.join("leadgate.log").display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(maria);
    eprintln!("{n} leads filed {:.1?} after start", t.elapsed());
    facts.push(format!(
        "leadgate's first start on that mailbox: index synced in {:.1} s, all {n} leads filed (and in the review queue) {:.1} s after start.",
        indexed.as_secs_f64(),
        t.elapsed().as_secs_f64()
    ));

    // `--only NAME` runs one workload (sync, bodies, review, newmail, smtp,
    // idle) on the same seeded mailbox.
    let only = arg("--only");
    let want = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let mut rows = Vec::new();
    if want("sync") || want("bodies") {
        let mut direct = Client::login(dovecot.imap_port, SHARED);
        direct.run("SELECT INBOX");
        let mut through = Client::login(gw.imap_port, USER);
        through.run("SELECT INBOX");
        if want("sync") {
            eprintln!("full sync ...");
            full_sync(&mut rows, n, &mut direct, &mut through);
        }
        if want("bodies") {
            eprintln!("body downloads ...");
            body_downloads(&mut rows, n, sizes.bodies, &mut direct, &mut through);
        }
    }
    if want("review") {
        eprintln!("review folder ...");
        review_folder(&mut rows, n, dovecot.imap_port, &gw);
    }
    if want("qresync") {
        eprintln!("QRESYNC reopen ...");
        qresync_reopen(&mut rows, n, dovecot.imap_port, &gw);
    }
    let gw = if want("cards") {
        eprintln!("lead cards ...");
        cards_sync(&mut rows, n, dovecot.imap_port, gw)
    } else {
        gw
    };
    if want("newmail") {
        eprintln!("new mail latency ...");
        new_mail_latency(
            &mut rows,
            sizes.deliveries,
            dovecot.imap_port,
            postfix.smtp_port,
            &gw,
        );
    }
    if want("smtp") {
        eprintln!("smtp submission ...");
        smtp_submission(&mut rows, sizes.submissions, postfix.smtp_port, &gw);
    }
    if want("idle") {
        eprintln!("idle sessions (leadgate restarted first) ...");
        let gw = gw.restart();
        let gw = idle_sessions(&mut rows, &sizes, &dovecot, postfix.smtp_port, gw);
        drop(gw);
    } else {
        drop(gw);
    }

    if let Some(path) = arg("--audit-table") {
        rows.extend(audit_rows(&path));
    }
    let table = table(&rows);
    println!("{table}");
    let missed: Vec<&str> = rows
        .iter()
        .filter(|r| !r.met)
        .map(|r| r.name.as_str())
        .collect();
    eprintln!(
        "{} of {} targets met; run took {:.0?}",
        rows.len() - missed.len(),
        rows.len(),
        started.elapsed()
    );
    if let Some(path) = arg("--write") {
        let report = format!(
            "# leadgate benchmarks\n\n\
             Generated by `scripts/bench{}` on {}; {}. Every workload runs against the same \
             Dovecot directly and through leadgate in the same run (leadgate in front of that \
             Dovecot, Postfix delivering into it over LMTP), on one machine shared with other \
             work, so single figures are noisy (1-minute load average {} at the start, {} at the end of this run). Release build; test Dovecot has `mail_fsync = never`.\n\n\
             {table}\n\
             Notes:\n\n\
             - {}\n\
             - Dovecot direct logs in as the shared account; leadgate as a rep (`alice`) or, for \
             the review queue, a manager (`maria`), with `[[leads.assignment]] rule = \"unassigned\"` \
             so every seeded message (each from its own sender) is its own unassigned lead.\n\
             - IDLE sessions: Dovecot runs one `imap` process per session, so its column is \
             measured on a sample and scaled; PSS divides shared pages among the processes, RSS \
             counts them in every one. leadgate's upstream connections are the established TCP \
             connections of its pid to Dovecot's port (from /proc/<pid>/fd and /proc/<pid>/net/tcp), \
             its memory is VmRSS of /proc/<pid>/status once all sessions are idling (and, on \
             INBOX, after one new mail was fanned out to all of them). leadgate is restarted on \
             the same store before these rows (index loaded from disk), so its baseline holds \
             nothing of the earlier workloads. First a tenth of the sessions log in at once on \
             the just-started daemon (the cold row); then it is restarted again, one session \
             logs in, and the full number idle on an empty lead folder, then on INBOX; \
             per-session figures are against the RSS with no sessions.\n\
             - New-mail latency is measured from the start of the SMTP delivery to Postfix to the \
             `* n EXISTS` line, with both IDLE clients waiting at the same time.\n\
             - SMTP submission reuses one authenticated connection for leadgate and one \
             connection for Postfix; each row times MAIL FROM to the final reply after DATA.\n\
             - Audit rows come from `cargo bench --bench audit` (leadgate only; no Dovecot \
             equivalent).\n",
            if quick { " --quick" } else { "" },
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            machine(),
            load_before,
            load(),
            facts.join(" ")
        );
        // Sections measured by other means (`## ...` after this report)
        // are kept as they are.
        let kept = std::fs::read_to_string(&path)
            .ok()
            .and_then(|old| old.find("\n## ").map(|at| old[at..].to_owned()))
            .unwrap_or_default();
        std::fs::write(&path, format!("{report}{kept}")).unwrap();
        eprintln!("wrote {path}");
    }
}
