//! The audit log through the real binary: `leadgate audit verify` and
//! `leadgate audit export` read a store that this test process keeps open
//! for writing, as they would beside a running `leadgate serve`. Tampering
//! goes straight to the redb tables, under the chain.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use leadgate::store::{
    audit::{AuditChange, AuditDraft, AuditEvent},
    schema::AUDIT,
    Store, StoreError,
};
use redb::ReadableTable;

/// Events in every log these tests build.
const N: u64 = 50;
/// `at` of event i (0-based) is this plus i minutes: 2026-04-30T23:40:00Z.
const BASE_MS: i64 = 1_777_592_400_000;
const ACTORS: [&str; 3] = ["alice", "bob", "carol"];

struct Fixture {
    _dir: tempfile::TempDir,
    config: PathBuf,
    store: Store,
}

fn draft(i: u64) -> AuditDraft {
    AuditDraft {
        at: BASE_MS + i as i64 * 60_000,
        actor: ACTORS[(i % 3) as usize].into(),
        action: if i.is_multiple_of(5) {
            "auth.login"
        } else {
            "lead.assign"
        }
        .into(),
        lead: (!i.is_multiple_of(5)).then_some(i % 7 + 1),
        changes: vec![AuditChange {
            field: "owner".into(),
            before: String::new(),
            after: ACTORS[(i % 3) as usize].into(),
        }],
        reason: format!("rule {i}: round robin"),
    }
}

/// A config and a store holding `events` audit events, left open for
/// writing (the store is this process's; the binary opens it read-only).
fn fixture(events: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("leadgate.redb");
    let config = dir.path().join("leadgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[imap.listener]]
addr = "127.0.0.1:0"
tls = "plaintext"

[upstream.imap]
host = "127.0.0.1"
port = 1
tls = "none"
username = "x"
password = "y"

[store]
path = "{}"
"#,
            store_path.display()
        ),
    )
    .unwrap();
    let store = Store::open(&store_path).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for i in 0..events {
            let ev = store.audit(draft(i)).await.unwrap();
            assert_eq!(ev.seq, i + 1);
        }
    });
    Fixture {
        _dir: dir,
        config,
        store,
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `leadgate --config <fixture> args...`, killed after 60 s.
fn leadgate(config: &Path, args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_leadgate"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start leadgate");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut stdout = String::new();
        let mut stderr = String::new();
        let _ = out.read_to_string(&mut stdout);
        let _ = err.read_to_string(&mut stderr);
        let status = child.wait();
        let _ = tx.send((status, stdout, stderr));
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok((status, stdout, stderr)) => Run {
            code: status.expect("wait for leadgate").code(),
            stdout,
            stderr,
        },
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("leadgate {args:?} did not finish within 60 s");
        }
    }
}

fn verify(fx: &Fixture) -> Run {
    leadgate(&fx.config, &["audit", "verify"])
}

/// Asserts verify fails naming `seq`; returns what it said.
fn assert_broken_at(fx: &Fixture, seq: u64) -> String {
    let run = verify(fx);
    assert_eq!(
        run.code,
        Some(1),
        "stdout: {} stderr: {}",
        run.stdout,
        run.stderr
    );
    let prefix = format!("audit log broken at seq {seq}: ");
    assert!(
        run.stdout.starts_with(&prefix),
        "expected {prefix:?}, got {:?} (stderr {:?})",
        run.stdout,
        run.stderr
    );
    run.stdout
}

/// Changes the raw AUDIT table under the chain, as someone with the file
/// (and the library) could.
fn tamper(
    fx: &Fixture,
    f: impl FnMut(&mut redb::Table<'_, u64, &'static [u8]>) -> Result<(), StoreError> + Send + 'static,
) {
    let mut f = f;
    fx.store
        .raw_write_blocking(move |txn| f(&mut txn.open_table(AUDIT)?))
        .unwrap();
}

fn record(table: &redb::Table<'_, u64, &'static [u8]>, seq: u64) -> Vec<u8> {
    table.get(seq).unwrap().unwrap().value().to_vec()
}

fn export(fx: &Fixture, args: &[&str]) -> Vec<AuditEvent> {
    let mut all = vec!["audit", "export"];
    all.extend_from_slice(args);
    let run = leadgate(&fx.config, &all);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    run.stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON event line ({e}): {line:?}"))
        })
        .collect()
}

#[test]
fn verify_of_an_intact_log_counts_every_event_while_the_store_is_open_for_writing() {
    let fx = fixture(N);
    let run = verify(&fx);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.stdout.trim(), format!("audit log ok: {N} events"));

    // The reader follows the writer's later commits.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(fx.store.audit(draft(N))).unwrap();
    assert_eq!(
        verify(&fx).stdout.trim(),
        format!("audit log ok: {} events", N + 1)
    );
}

#[test]
fn verify_of_an_empty_log_is_ok() {
    let fx = fixture(0);
    let run = verify(&fx);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.stdout.trim(), "audit log ok: 0 events");
}

#[test]
fn editing_one_audit_record_makes_verify_name_its_sequence() {
    let fx = fixture(N);
    tamper(&fx, |t| {
        let mut ev: serde_json::Value = serde_json::from_slice(&record(t, 17)).unwrap();
        assert_eq!(ev["seq"], 17);
        ev["actor"] = "mallory".into();
        t.insert(17, serde_json::to_vec(&ev).unwrap().as_slice())?;
        Ok(())
    });
    let said = assert_broken_at(&fx, 17);
    assert!(said.contains("edited"), "{said}");
}

#[test]
fn editing_a_record_and_its_hash_makes_verify_name_the_next_sequence() {
    let fx = fixture(N);
    tamper(&fx, |t| {
        let mut ev: AuditEvent = serde_json::from_slice(&record(t, 17)).unwrap();
        ev.actor = "mallory".into();
        ev.hash = ev.computed_hash().unwrap();
        t.insert(17, serde_json::to_vec(&ev).unwrap().as_slice())?;
        Ok(())
    });
    let said = assert_broken_at(&fx, 18);
    assert!(said.contains("prev is not the hash of seq 17"), "{said}");
}

#[test]
fn deleting_an_audit_record_makes_verify_name_its_sequence() {
    let fx = fixture(N);
    tamper(&fx, |t| {
        t.remove(23)?;
        Ok(())
    });
    let said = assert_broken_at(&fx, 23);
    assert!(said.contains("missing"), "{said}");
}

#[test]
fn deleting_a_record_and_renumbering_the_rest_makes_verify_name_its_sequence() {
    let fx = fixture(N);
    tamper(&fx, |t| {
        // Shift 24.. down by one, fixing their seq fields and hashes, so
        // there is no gap and every record matches its own hash.
        for seq in 23..N {
            let mut ev: AuditEvent = serde_json::from_slice(&record(t, seq + 1)).unwrap();
            ev.seq = seq;
            ev.hash = ev.computed_hash().unwrap();
            t.insert(seq, serde_json::to_vec(&ev).unwrap().as_slice())?;
        }
        t.remove(N)?;
        Ok(())
    });
    let said = assert_broken_at(&fx, 23);
    assert!(said.contains("prev is not the hash of seq 22"), "{said}");
}

#[test]
fn swapping_two_audit_records_makes_verify_name_the_first() {
    let fx = fixture(N);
    tamper(&fx, |t| {
        let (a, b) = (record(t, 12), record(t, 31));
        t.insert(12, b.as_slice())?;
        t.insert(31, a.as_slice())?;
        Ok(())
    });
    let said = assert_broken_at(&fx, 12);
    assert!(said.contains("says it is seq 31"), "{said}");
}

#[test]
fn truncating_the_end_of_the_audit_log_is_detected() {
    let fx = fixture(N);
    tamper(&fx, |t| {
        t.remove(N)?;
        Ok(())
    });
    let said = assert_broken_at(&fx, N);
    assert!(said.contains("chain head"), "{said}");
}

#[test]
fn export_by_actor_prints_only_that_actors_events_as_json_lines() {
    let fx = fixture(N);
    let events = export(&fx, &["--actor", "bob"]);
    let expected: Vec<u64> = (0..N).filter(|i| i % 3 == 1).map(|i| i + 1).collect();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), expected);
    assert!(events.iter().all(|e| e.actor == "bob"));
    // Exported events are the stored ones, hash included.
    assert!(events
        .iter()
        .all(|e| e.computed_hash().as_deref() == Some(e.hash.as_str())));
}

#[test]
fn export_by_lead_prints_only_that_leads_events() {
    let fx = fixture(N);
    let events = export(&fx, &["--lead", "3"]);
    let expected: Vec<u64> = (0..N)
        .filter(|i| i % 5 != 0 && i % 7 + 1 == 3)
        .map(|i| i + 1)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), expected);
    assert!(events.iter().all(|e| e.lead == Some(3)));
}

#[test]
fn export_since_a_time_or_a_date_skips_older_events() {
    let fx = fixture(N);
    // Event i is at 23:40 + i minutes on 2026-04-30.
    let since_time = export(&fx, &["--since", "2026-05-01T02:00:00+02:00"]);
    assert_eq!(since_time.first().map(|e| e.seq), Some(21));
    assert_eq!(since_time.len() as u64, N - 20);
    let since_date = export(&fx, &["--since", "2026-05-01"]);
    assert_eq!(since_date, since_time);
    let combined = export(&fx, &["--since", "2026-05-01", "--actor", "carol"]);
    assert!(combined.iter().all(|e| e.actor == "carol" && e.seq >= 21));
    assert!(!combined.is_empty());
}

#[test]
fn export_refuses_a_since_it_cannot_read() {
    let fx = fixture(1);
    let run = leadgate(&fx.config, &["audit", "export", "--since", "yesterday"]);
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("RFC 3339"), "{}", run.stderr);
}

#[test]
fn user_list_works_while_the_store_is_open_for_writing() {
    let fx = fixture(0);
    let run = leadgate(&fx.config, &["user", "list"]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(run.stdout.starts_with("name"), "{}", run.stdout);
}

#[test]
fn a_store_written_before_single_writer_mode_opens_and_keeps_its_data() {
    // Earlier versions opened the file in redb's default exclusive mode.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    let old = redb::Database::create(&path).unwrap();
    let txn = old.begin_write().unwrap();
    txn.open_table(leadgate::store::schema::META)
        .unwrap()
        .insert("old_key", b"kept".as_slice())
        .unwrap();
    txn.commit().unwrap();
    drop(old);

    let store = Store::open(&path).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(store.audit(draft(0))).unwrap();
    let reader = Store::open_read_only(&path).unwrap();
    let kept = reader
        .raw_read(|txn| {
            let t = txn.open_table(leadgate::store::schema::META)?;
            Ok(t.get("old_key")?.map(|v| v.value().to_vec()))
        })
        .unwrap();
    assert_eq!(kept.as_deref(), Some(b"kept".as_slice()));
    assert_eq!(reader.audit_verify().unwrap().events, 1);
}
