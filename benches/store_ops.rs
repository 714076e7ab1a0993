//! Data operations at scale (issue 16): a live `leadgate backup` and a live
//! `leadgate contact erase` of a store with 100,000 messages, 50,000 leads
//! and 1,000,000 audit events, while clients keep working: how long each
//! takes, and the longest answer a client waited for meanwhile.
//!
//! `cargo bench --bench store_ops` runs those sizes; `-- --quick` runs a
//! tenth of them; `--messages N`, `--events N` set them.
//!
//! Steps:
//! 1. Dovecot gets N messages in INBOX: N/2 contacts, each a first mail
//!    and an answer threaded to it (In-Reply-To), so N/2 leads.
//! 2. leadgate starts, indexes the mailbox and files the leads (the way a
//!    real store fills up); then it stops, and the audit log is topped up
//!    to the event count with the store's own append (so the chain is
//!    real), and leadgate starts again on that store.
//! 3. Three clients work all along: a reader (NOOP, then UID FETCH of a
//!    random message's FLAGS ENVELOPE, alternately) and a writer (UID STORE
//!    +FLAGS/-FLAGS \Flagged on a random message: the flag goes to Dovecot,
//!    then into leadgate's index, a durable store write) through leadgate,
//!    and the same writer straight on Dovecot (a second account with the
//!    same messages, which leadgate does not watch), which says how much
//!    of a slow write is the upstream's. Every answer is timed.
//! 4. `leadgate backup FILE` through the admin socket; then `leadgate
//!    contact erase ADDRESS` (which rewrites the store file). For each: the
//!    wall time, and the longest, 99th percentile and median answer of each
//!    client among the commands that overlapped it, next to the longest
//!    answer in a quiet period before.

#[path = "common/imap_client.rs"]
mod imap_client;
#[path = "../tests/common/testbed.rs"]
mod testbed;

use imap_client::Client;

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use leadgate::store::{
    audit::{append_in, head_in, AuditChange, AuditDraft},
    schema::{AUDIT, META},
    Store,
};

const SHARED: (&str, &str) = ("sales", "bench-shared-pw");
/// A mailbox with the same messages that leadgate does not watch, for the
/// writer straight on Dovecot.
const DIRECT: (&str, &str) = ("direct", "bench-direct-pw");
const USER: (&str, &str) = ("alice", "bench-alice-pw");

fn contact(c: usize) -> String {
    format!("buyer{c}@company{}.test", c % 1000)
}

/// Message `i`: contact i/2's first mail (even i) or their answer (odd i).
fn message(i: usize) -> Vec<u8> {
    let c = i / 2;
    let (subject, thread) = if i.is_multiple_of(2) {
        (
            format!("Quote for {} seats, contact {c}", 10 + c % 90),
            String::new(),
        )
    } else {
        (
            format!("Re: Quote for {} seats, contact {c}", 10 + c % 90),
            format!("In-Reply-To: <bench-{}@bench.test>\r\n", i - 1),
        )
    };
    let mut body = String::new();
    for l in 0..8 {
        body.push_str(&format!(
            "Line {l}: we would like pricing for {} seats and a demo next week.\r\n",
            10 + c % 90
        ));
    }
    format!(
        "From: Buyer {c} <{}>\r\nTo: sales@example.com\r\nSubject: {subject}\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench-{i}@bench.test>\r\n{thread}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}",
        contact(c)
    )
    .into_bytes()
}

/// Writes the messages into the Maildir's `new/` the way an importer does
/// (tmp/, then rename) and has `doveadm index` index them (APPEND of
/// 100,000 messages slows down as the folder grows).
fn seed(dovecot: &testbed::Dovecot, account: (&str, &str), n: usize) {
    use std::os::unix::fs::MetadataExt;
    // The first login makes the Maildir.
    let mut c = Client::login(dovecot.imap_port, account);
    c.run("SELECT INBOX");
    drop(c);
    let maildir = dovecot.maildir(account.0);
    let meta = std::fs::metadata(&maildir).expect("the Maildir exists after a login");
    let (uid, gid) = (meta.uid(), meta.gid());
    for i in 0..n {
        let name = format!("{}.bench{i:07}.leadgate", 1_700_000_000 + i);
        let tmp = maildir.join("tmp").join(&name);
        std::fs::write(&tmp, message(i)).unwrap();
        std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).unwrap();
        std::fs::rename(&tmp, maildir.join("new").join(&name)).unwrap();
    }
    let out = Command::new("doveadm")
        .arg("-c")
        .arg(dovecot.dir.join("dovecot.conf"))
        .args(["index", "-u", account.0, "INBOX"])
        .output()
        .expect("run doveadm index");
    assert!(
        out.status.success(),
        "doveadm index: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Leadgate {
    child: Child,
    imap_port: u16,
}

impl Leadgate {
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Leadgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(cfg: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_leadgate"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "leadgate {args:?}: {text}");
    text
}

fn serve(cfg: &Path, log: &Path) -> Leadgate {
    let mut child = Command::new(env!("CARGO_BIN_EXE_leadgate"))
        .arg("--config")
        .arg(cfg)
        .arg("serve")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut imap_port = 0;
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "leadgate exited; see {}",
            log.display()
        );
        if let Some(rest) = line.strip_prefix("leadgate: imap listening on ") {
            imap_port = rest
                .split(' ')
                .next()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap();
        }
        if line.trim() == "leadgate: upstream synced" {
            break;
        }
    }
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    Leadgate { child, imap_port }
}

/// Appends audit events until the log holds `target`, in transactions of
/// 50,000, with the store's own chain code.
fn top_up_audit(path: &Path, target: u64, leads: u64) -> u64 {
    let store = Store::open(path).unwrap();
    let have = store.raw_read(head_in).unwrap().map_or(0, |(seq, _)| seq);
    let mut at = chrono::Utc::now().timestamp_millis() - 400 * 86_400_000;
    let mut seq = have;
    while seq < target {
        let n = (target - seq).min(50_000);
        let base = seq;
        store
            .raw_write_blocking(move |txn| {
                let mut audit = txn.open_table(AUDIT)?;
                let mut meta = txn.open_table(META)?;
                for k in 0..n {
                    let i = base + k;
                    append_in(
                        &mut audit,
                        &mut meta,
                        &AuditDraft {
                            at: at + i as i64,
                            actor: if i.is_multiple_of(3) { "alice" } else { "bob" }.into(),
                            action: "lead.status".into(),
                            lead: Some(1 + i % leads.max(1)),
                            changes: vec![AuditChange {
                                field: "status".into(),
                                before: "Assigned".into(),
                                after: "Waiting for reply".into(),
                            }],
                            reason: format!("set status waiting for reply after the call {i}"),
                        },
                    )?;
                }
                Ok(())
            })
            .unwrap();
        seq += n;
        at += n as i64;
    }
    store.close();
    seq
}

/// One timed answer: when it was asked, how long it took.
type Sample = (Instant, Duration);

fn worker(
    port: u16,
    login: (&'static str, &'static str),
    max_uid: u32,
    stop: Arc<AtomicBool>,
    ready: Arc<AtomicUsize>,
    writes: bool,
) -> std::thread::JoinHandle<Vec<Sample>> {
    std::thread::spawn(move || {
        let mut c = Client::login(port, login);
        c.run("SELECT INBOX");
        ready.fetch_add(1, Ordering::SeqCst);
        let mut out = Vec::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(writes);
        let mut i = 0u64;
        while !stop.load(Ordering::SeqCst) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let uid = 1 + (x % u64::from(max_uid)) as u32;
            let cmd = if writes {
                let sign = if i.is_multiple_of(2) { '+' } else { '-' };
                format!("UID STORE {uid} {sign}FLAGS (\\Flagged)")
            } else if i.is_multiple_of(2) {
                "NOOP".to_owned()
            } else {
                format!("UID FETCH {uid} (FLAGS ENVELOPE)")
            };
            let t = Instant::now();
            c.run(&cmd);
            out.push((t, t.elapsed()));
            i += 1;
        }
        out
    })
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Longest, p99 and median of the samples overlapping [from, to], and the
/// longest before `from` (the quiet baseline).
fn window(samples: &[Sample], quiet: (Instant, Instant), from: Instant, to: Instant) -> String {
    let mut during: Vec<Duration> = samples
        .iter()
        .filter(|(t, d)| *t <= to && *t + *d >= from)
        .map(|s| s.1)
        .collect();
    let before = samples
        .iter()
        .filter(|(t, _)| *t >= quiet.0 && *t < quiet.1)
        .map(|s| s.1)
        .max()
        .unwrap_or_default();
    during.sort();
    if during.is_empty() {
        return "no answer overlapped".into();
    }
    let p = |q: f64| during[((during.len() - 1) as f64 * q) as usize];
    format!(
        "longest {} (p99 {}, median {}, {} answers; quiet before: longest {})",
        ms(*during.last().unwrap()),
        ms(p(0.99)),
        ms(p(0.5)),
        during.len(),
        ms(before)
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let quick = args.iter().any(|a| a == "--quick");
    let messages = arg("--messages").unwrap_or(if quick { 10_000 } else { 100_000 }) as usize;
    let events = arg("--events").unwrap_or(if quick { 100_000 } else { 1_000_000 });
    let leads = (messages / 2) as u64;

    let dir = tempfile::tempdir().unwrap();
    let dovecot = testbed::Dovecot::start(dir.path(), &[SHARED, DIRECT], None, false);
    let t = Instant::now();
    seed(&dovecot, SHARED, messages);
    seed(&dovecot, DIRECT, messages);
    eprintln!("seeded {messages} messages in {:.1?}", t.elapsed());

    let d = dir.path().join("leadgate");
    std::fs::create_dir_all(&d).unwrap();
    let cfg = d.join("leadgate.toml");
    let store_path = d.join("leadgate.redb");
    std::fs::write(
        &cfg,
        format!(
            r#"[[imap.listener]]
addr = "127.0.0.1:0"
tls = "plaintext"

[upstream.imap]
host = "127.0.0.1"
port = {}
tls = "none"
username = "{}"
password = "{}"

[store]
path = "{}"

[admin]
socket = "{}/admin.sock"

[auth]
argon2_memory_kib = 1024
argon2_iterations = 1

[views]
rep_inbox = "read-write"

[leads]
shared_address = "sales@example.com"
"#,
            dovecot.imap_port,
            SHARED.0,
            SHARED.1,
            store_path.display(),
            d.display()
        ),
    )
    .unwrap();
    // alice is the one rep: round robin gives her every lead, so she may
    // flag every message.
    cli(
        &cfg,
        &["user", "add", USER.0, "--role", "rep"],
        Some(&format!("{}\n", USER.1)),
    );
    let log = d.join("leadgate.log");
    let t = Instant::now();
    let gw = serve(&cfg, &log);
    loop {
        let n = cli(&cfg, &["lead", "list", "--all", "--json"], None)
            .lines()
            .count() as u64;
        if n >= leads {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(3600), "only {n} leads");
        std::thread::sleep(Duration::from_secs(5));
    }
    eprintln!("{leads} leads filed {:.1?} after start", t.elapsed());
    gw.stop();
    let t = Instant::now();
    let total = top_up_audit(&store_path, events, leads);
    eprintln!(
        "audit log topped up to {total} events in {:.1?}",
        t.elapsed()
    );
    let size = std::fs::metadata(&store_path).unwrap().len();
    let gw = serve(&cfg, &log);

    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicUsize::new(0));
    let n = messages as u32;
    let reader = worker(gw.imap_port, USER, n, stop.clone(), ready.clone(), false);
    let writer = worker(gw.imap_port, USER, n, stop.clone(), ready.clone(), true);
    // The same writes straight to Dovecot: what the upstream alone takes.
    let direct = worker(
        dovecot.imap_port,
        DIRECT,
        n,
        stop.clone(),
        ready.clone(),
        true,
    );
    let t = Instant::now();
    while ready.load(Ordering::SeqCst) < 3 {
        assert!(t.elapsed() < Duration::from_secs(300), "clients not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let marks = Arc::new(Mutex::new(Vec::new()));
    let quiet_from = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let quiet_to = Instant::now();

    let backup = dir.path().join("backup.redb");
    let t0 = Instant::now();
    let said = cli(&cfg, &["backup", backup.to_str().unwrap()], None);
    let t1 = Instant::now();
    marks.lock().unwrap().push(("backup", t0, t1, said));
    std::thread::sleep(Duration::from_secs(3));

    let t0 = Instant::now();
    let said = cli(
        &cfg,
        &["contact", "erase", &contact(leads as usize / 2)],
        None,
    );
    let t1 = Instant::now();
    marks.lock().unwrap().push(("contact erase", t0, t1, said));
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let reads = reader.join().unwrap();
    let writes = writer.join().unwrap();
    let direct = direct.join().unwrap();
    let (ok, verify) = {
        let out = Command::new(env!("CARGO_BIN_EXE_leadgate"))
            .args(["audit", "verify", "--store"])
            .arg(&backup)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert!(ok, "the backup verifies: {verify}");

    println!(
        "store: {messages} messages, {leads} leads, {total} audit events; file {:.0} MiB",
        size as f64 / 1048576.0
    );
    println!("backup verifies: {}", verify.trim());
    for (what, t0, t1, said) in marks.lock().unwrap().iter() {
        println!(
            "\n{what}: {:.2} s wall (CLI to answer)",
            (*t1 - *t0).as_secs_f64()
        );
        for line in said.lines() {
            println!("  says: {line}");
        }
        println!(
            "  reader (NOOP / UID FETCH FLAGS ENVELOPE): {}",
            window(&reads, (quiet_from, quiet_to), *t0, *t1)
        );
        println!(
            "  writer (UID STORE \\Flagged, durable index write): {}",
            window(&writes, (quiet_from, quiet_to), *t0, *t1)
        );
        println!(
            "  the same UID STORE straight to Dovecot: {}",
            window(&direct, (quiet_from, quiet_to), *t0, *t1)
        );
    }
    gw.stop();
    drop(dovecot);
}
