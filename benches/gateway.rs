//! Same workload, same run, against Dovecot directly and through leadgate;
//! prints both figures and the ratio.
//!
//! `cargo bench --bench gateway` (add `-- --messages N` for another size,
//! `-- --write BENCHMARKS.md` to also write the table there).

#[path = "../tests/common/testbed.rs"]
mod testbed;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const SHARED: (&str, &str) = ("sales", "bench-shared-pw");
const USER: (&str, &str) = ("alice", "bench-alice-pw");

/// A blocking IMAP client that only frames responses (literals included)
/// and counts bytes, so both servers pay the same client cost.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
    tag: u32,
}

impl Client {
    fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let mut c = Client {
            s,
            buf: Vec::new(),
            tag: 0,
        };
        c.read_line();
        c
    }

    fn fill(&mut self) {
        let mut tmp = [0u8; 256 * 1024];
        let n = loop {
            match self.s.read(&mut tmp) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r.expect("read"),
            }
        };
        assert!(n > 0, "server closed the connection");
        self.buf.extend_from_slice(&tmp[..n]);
    }

    /// Reads one line with its literals; returns (first line, total bytes).
    fn read_line(&mut self) -> (String, usize) {
        let mut total = 0;
        let mut first = None;
        loop {
            let pos = loop {
                if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break p;
                }
                self.fill();
            };
            let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
            total += line.len();
            let text = String::from_utf8_lossy(&line).into_owned();
            let lit = text
                .trim_end()
                .strip_suffix('}')
                .and_then(|t| t.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok());
            first.get_or_insert(text);
            match lit {
                Some(n) => {
                    while self.buf.len() < n {
                        self.fill();
                    }
                    self.buf.drain(..n);
                    total += n;
                }
                None => return (first.unwrap_or_default(), total),
            }
        }
    }

    /// Runs a command; returns bytes received and the tagged line.
    fn run(&mut self, cmd: &str) -> (usize, String) {
        self.tag += 1;
        let tag = format!("b{}", self.tag);
        self.s
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .unwrap();
        let mut bytes = 0;
        loop {
            let (line, n) = self.read_line();
            bytes += n;
            if line.starts_with(&format!("{tag} ")) {
                assert!(line.contains(" OK "), "{cmd} failed: {line}");
                return (bytes, line);
            }
        }
    }
}

fn message(i: usize) -> Vec<u8> {
    // Realistic sizes: mostly a few KB, every 20th with a 60 KB attachment.
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
    let mut c = Client {
        s: s.try_clone().unwrap(),
        buf: Vec::new(),
        tag: 0,
    };
    c.read_line();
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
            let (line, _) = c.read_line();
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

struct Row {
    name: String,
    direct: String,
    gateway: String,
    ratio: String,
    target: String,
}

fn start_gateway(dir: &Path, dovecot_port: u16) -> (Child, u16) {
    let d = dir.join("leadgate");
    std::fs::create_dir_all(&d).unwrap();
    let cfg = d.join("leadgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[imap.listener]]\naddr = \"127.0.0.1:0\"\ntls = \"plaintext\"\n\n[upstream.imap]\nhost = \"127.0.0.1\"\nport = {dovecot_port}\ntls = \"none\"\nusername = \"{}\"\npassword = \"{}\"\n\n[store]\npath = \"{}/leadgate.redb\"\n\n[limits]\nmax_connections_per_ip = 100000\n",
            SHARED.0,
            SHARED.1,
            d.display()
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_leadgate");
    let mut add = Command::new(bin)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "user",
            "add",
            USER.0,
            "--role",
            "rep",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(format!("{}\n", USER.1).as_bytes())
        .unwrap();
    assert!(add.wait().unwrap().success());
    let mut child = Command::new(bin)
        .args(["--config", cfg.to_str().unwrap(), "serve"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(d.join("leadgate.log")).unwrap())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut port = 0;
    loop {
        let mut line = String::new();
        use std::io::BufRead;
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "leadgate exited; see {}",
            d.join("leadgate.log").display()
        );
        if let Some(rest) = line.strip_prefix("leadgate: imap listening on ") {
            port = rest
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
    (child, port)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let n: usize = arg("--messages")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let bodies: usize = arg("--bodies")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .min(n);
    let dir = tempfile::tempdir().unwrap();
    let dovecot = testbed::Dovecot::start(dir.path(), &[SHARED], None, false);
    eprintln!("seeding {n} messages into Dovecot ...");
    let t = Instant::now();
    seed(dovecot.imap_port, n);
    eprintln!("seeded in {:.1?}", t.elapsed());

    let t = Instant::now();
    let (mut gw, gw_port) = start_gateway(dir.path(), dovecot.imap_port);
    eprintln!(
        "leadgate indexed {n} messages in {:.1?} (first start)",
        t.elapsed()
    );

    let mut direct = Client::connect(dovecot.imap_port);
    direct.run(&format!("LOGIN {} {}", SHARED.0, SHARED.1));
    direct.run("SELECT INBOX");
    let mut through = Client::connect(gw_port);
    through.run(&format!("LOGIN {} {}", USER.0, USER.1));
    through.run("SELECT INBOX");

    let mut rows = Vec::new();
    // 1. Full sync of the folder's metadata, as a client does on first open.
    let sync = "UID FETCH 1:* (FLAGS ENVELOPE RFC822.SIZE INTERNALDATE)";
    let (db, _) = direct.run(sync);
    let (gb, _) = through.run(sync);
    let d = time(5, || {
        direct.run(sync);
    });
    let g = time(5, || {
        through.run(sync);
    });
    let ratio = g.as_secs_f64() / d.as_secs_f64();
    rows.push(Row {
        name: format!("full sync, {n} messages (FLAGS ENVELOPE RFC822.SIZE INTERNALDATE)"),
        direct: format!("{:.1} ms ({} KB)", d.as_secs_f64() * 1e3, db / 1024),
        gateway: format!("{:.1} ms ({} KB)", g.as_secs_f64() * 1e3, gb / 1024),
        ratio: format!("{ratio:.2}x time"),
        target: format!(
            "<= 1.0x time: {}",
            if ratio <= 1.0 { "met" } else { "MISSED" }
        ),
    });

    // 2. Body downloads, one UID FETCH per message (the slow, chatty way).
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
            "{bodies} body downloads, one UID FETCH each ({} MB)",
            bytes / 1_000_000
        ),
        direct: format!("{:.0} ms, {:.1} MB/s", d.as_secs_f64() * 1e3, tput(d)),
        gateway: format!("{:.0} ms, {:.1} MB/s", g.as_secs_f64() * 1e3, tput(g)),
        ratio: format!("{ratio:.2}x throughput"),
        target: format!(
            ">= 0.8x throughput: {}",
            if ratio >= 0.8 { "met" } else { "MISSED" }
        ),
    });

    // 3. Body downloads in batches of 50, as Thunderbird's offline sync does.
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
        name: format!("{bodies} body downloads, 50 per UID FETCH"),
        direct: format!("{:.0} ms, {:.1} MB/s", d.as_secs_f64() * 1e3, tput(d)),
        gateway: format!("{:.0} ms, {:.1} MB/s", g.as_secs_f64() * 1e3, tput(g)),
        ratio: format!("{ratio:.2}x throughput"),
        target: format!(
            ">= 0.8x throughput: {}",
            if ratio >= 0.8 { "met" } else { "MISSED" }
        ),
    });

    let _ = gw.kill();
    let _ = gw.wait();

    let mut table = String::from("| workload | Dovecot direct | through leadgate | ratio | target |\n|---|---|---|---|---|\n");
    for r in &rows {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.name, r.direct, r.gateway, r.ratio, r.target
        ));
    }
    println!("{table}");
    if let Some(path) = arg("--write") {
        std::fs::write(&path, &table).unwrap();
        eprintln!("wrote {path}");
    }
}
