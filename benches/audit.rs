//! Audit log throughput, on disk in a temporary directory:
//!
//! - durable appends: many tokio tasks each awaiting `Store::audit` (every
//!   event fsync'd in a batched commit before its call returns);
//! - `audit verify` over 1,000,000 events, through the library on a
//!   read-only handle beside the open writer and through the real
//!   `leadgate audit verify` process.
//!
//! `cargo bench --bench audit`; `AUDIT_BENCH_APPENDS` and
//! `AUDIT_BENCH_VERIFY` change the event counts.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use leadgate::store::{
    audit::{AuditChange, AuditDraft},
    Store,
};

const APPEND_TARGET: f64 = 20_000.0;
const VERIFY_TARGET: Duration = Duration::from_secs(5);
const REPS: [&str; 12] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj",
];

/// Events shaped like the real ones: mostly lead changes, some logins.
fn draft(i: u64) -> AuditDraft {
    let rep = REPS[(i % REPS.len() as u64) as usize];
    let at = 1_780_000_000_000 + i as i64 * 250;
    match i % 4 {
        0 => AuditDraft {
            at,
            actor: rep.into(),
            action: "auth.login".into(),
            lead: None,
            changes: Vec::new(),
            reason: "imap login from 192.0.2.17".into(),
        },
        1 => AuditDraft {
            at,
            actor: "system".into(),
            action: "lead.assign".into(),
            lead: Some(i % 20_000 + 1),
            changes: vec![
                AuditChange {
                    field: "owner".into(),
                    before: String::new(),
                    after: rep.into(),
                },
                AuditChange {
                    field: "status".into(),
                    before: "New".into(),
                    after: "Assigned".into(),
                },
            ],
            reason: "round robin within territory EMEA (rule 3)".into(),
        },
        2 => AuditDraft {
            at,
            actor: rep.into(),
            action: "lead.status".into(),
            lead: Some(i % 20_000 + 1),
            changes: vec![AuditChange {
                field: "status".into(),
                before: "Assigned".into(),
                after: "Waiting for reply".into(),
            }],
            reason: "reply sent <20261127.1234@leadgate>".into(),
        },
        _ => AuditDraft {
            at,
            actor: rep.into(),
            action: "reply.blocked".into(),
            lead: Some(i % 20_000 + 1),
            changes: Vec::new(),
            reason: "lead is owned by carol; ask for a handoff".into(),
        },
    }
}

fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Appends `count` events from `in_flight` tasks; returns events/s.
fn appends(rt: &tokio::runtime::Runtime, store: &Store, count: u64, in_flight: u64) -> f64 {
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..in_flight)
            .map(|k| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut i = k;
                    while i < count {
                        store.audit(draft(i)).await.expect("audit append");
                        i += in_flight;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("append task");
        }
    });
    count as f64 / start.elapsed().as_secs_f64()
}

/// Tops the log up to `total` events, 50,000 per commit.
fn fill(rt: &tokio::runtime::Runtime, store: &Store, from: u64, total: u64) {
    let mut next = from;
    while next < total {
        let end = (next + 50_000).min(total);
        let start = next;
        rt.block_on(store.change(move |tx| {
            for i in start..end {
                tx.append_audit(&draft(i))?;
            }
            Ok(())
        }))
        .expect("fill");
        next = end;
    }
}

fn write_config(dir: &Path, store: &Path) -> std::path::PathBuf {
    let config = dir.join("leadgate.toml");
    std::fs::write(
        &config,
        format!(
            "[[imap.listener]]\naddr = \"127.0.0.1:0\"\ntls = \"plaintext\"\n\n\
             [upstream.imap]\nhost = \"127.0.0.1\"\nport = 1\ntls = \"none\"\n\
             username = \"x\"\npassword = \"y\"\n\n[store]\npath = \"{}\"\n",
            store.display()
        ),
    )
    .expect("write config");
    config
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let appends_n = env_count("AUDIT_BENCH_APPENDS", 200_000);
    let verify_n = env_count("AUDIT_BENCH_VERIFY", 1_000_000).max(appends_n);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rows: Vec<(String, String, String)> = Vec::new();

    // Durable appends: a fresh store per concurrency level; the last one
    // keeps its events and grows into the verify log.
    let mut store = None;
    for in_flight in [64u64, 512] {
        let path = dir.path().join(format!("append-{in_flight}.redb"));
        let s = Store::open(&path).expect("open store");
        let rate = appends(&rt, &s, appends_n, in_flight);
        eprintln!("appends, {in_flight} in flight: {rate:.0} events/s");
        rows.push((
            format!("durable appends, {in_flight} in flight ({appends_n} events)"),
            format!("{rate:.0} events/s"),
            format!(">= {APPEND_TARGET:.0} events/s"),
        ));
        store = Some((path, s));
    }
    let (path, store) = store.expect("a store");

    fill(&rt, &store, appends_n, verify_n);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "verify log: {verify_n} events, {:.0} MiB on disk",
        size as f64 / (1024.0 * 1024.0)
    );

    // Verify through the library, on a read-only handle beside the writer.
    let reader = Store::open_read_only(&path).expect("open read-only");
    let mut times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let report = reader.audit_verify().expect("verify");
        times.push(start.elapsed());
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.events, verify_n);
    }
    eprintln!("verify (library) runs: {times:?}");
    let best = times.iter().min().copied().unwrap_or_default();
    rows.push((
        format!(
            "verify {verify_n} events, library (best of 3; first {})",
            secs(times[0])
        ),
        secs(best),
        format!("<= {}", secs(VERIFY_TARGET)),
    ));
    drop(reader);

    // And as an admin runs it: a new process opening the store read-only.
    let config = write_config(dir.path(), &path);
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_leadgate"))
        .arg("--config")
        .arg(&config)
        .args(["audit", "verify"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run leadgate audit verify");
    let took = start.elapsed();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.trim() == format!("audit log ok: {verify_n} events"),
        "leadgate audit verify: {said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    rows.push((
        format!("`leadgate audit verify`, {verify_n} events (whole process)"),
        secs(took),
        format!("<= {}", secs(VERIFY_TARGET)),
    ));
    drop(store);

    println!();
    println!("| audit log | measured | target |");
    println!("|---|---|---|");
    for (what, got, target) in &rows {
        println!("| {what} | {got} | {target} |");
    }
}
