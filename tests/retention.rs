//! Audit retention (issue 16): old events are compacted into a checkpoint
//! from which `audit verify` still verifies the chain, the export holds
//! exactly the dropped events, and tampering afterwards is still named.

mod common;

use std::time::Duration;

use common::*;
use leadgate::store::{
    audit::AuditEvent,
    retention::{Checkpoint, CHECKPOINT_KEY},
    schema::{AUDIT, META},
    Store, StoreError,
};
use redb::ReadableTable;

fn export_lines(s: &Setup) -> Vec<String> {
    let out = s.gateway.cli(&["audit", "export"], None);
    assert!(out.status.success(), "{}", output_text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A raw change to a copied store, under the chain.
type Edit = Box<dyn Fn(&redb::WriteTransaction) -> Result<(), StoreError> + Send + Sync>;

/// A time far enough ahead that every event so far is older than 30 days.
fn in_a_year() -> String {
    (chrono::Utc::now() + chrono::Duration::days(365)).to_rfc3339()
}

#[test]
fn old_events_compact_into_a_checkpoint_that_verifies_and_tampering_is_still_named() {
    let mut s = Setup::new(GatewayOptions {
        extra: "[leads]\nshared_address = \"sales@example.com\"\n\n[audit]\nretain_days = 30\n"
            .into(),
        ..Default::default()
    });
    for i in 0..3 {
        s.deliver(
            "cora@customer.test",
            &message(
                "Cora <cora@customer.test>",
                &format!("Question {i}"),
                &format!("q{i}@customer.test"),
                "Tell me more.",
            ),
        );
    }
    assert!(eventually(Duration::from_secs(30), || s
        .gateway
        .leads()
        .len()
        == 3));
    let _ = s.gateway.login(ALICE.0, ALICE.1);
    let before = export_lines(&s);
    assert!(before.len() >= 4, "{before:?}");

    // Nothing is 30 days old yet.
    let out = s.gateway.cli(&["audit", "compact"], None);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(output_text(&out).contains("no audit event is old enough"));
    assert_eq!(export_lines(&s), before);

    // An export that cannot be written drops nothing.
    let out = s.gateway.cli(
        &[
            "audit",
            "compact",
            "--export",
            "/nonexistent/dir/audit.jsonl",
            "--now",
            &in_a_year(),
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("cannot write the export"),
        "{}",
        output_text(&out)
    );
    assert_eq!(export_lines(&s), before);

    // A year on, through the running daemon, with an export.
    let archive = s.dir.path().join("archive.jsonl");
    let out = s.gateway.cli(
        &[
            "audit",
            "compact",
            "--export",
            archive.to_str().unwrap(),
            "--now",
            &in_a_year(),
        ],
        None,
    );
    let said = output_text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("compacted {} audit events", before.len())),
        "{said}"
    );
    let exported: Vec<String> = std::fs::read_to_string(&archive)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let parse = |l: &String| serde_json::from_str::<AuditEvent>(l).unwrap();
    assert_eq!(
        exported.iter().map(parse).collect::<Vec<_>>(),
        before.iter().map(parse).collect::<Vec<_>>(),
        "the export holds exactly the dropped events"
    );
    let last_dropped = parse(before.last().unwrap());
    let (ok, said) = s.gateway.audit_verify();
    assert!(ok, "{said}");
    assert!(
        said.contains(&format!("checkpoint at seq {}", last_dropped.seq)),
        "{said}"
    );
    let after = export_lines(&s);
    assert_eq!(after.len(), 1, "only the audit.compact event: {after:?}");
    assert!(after[0].contains("audit.compact"));

    // New events chain on.
    let _ = s.gateway.login(ALICE.0, ALICE.1);
    assert!(eventually(Duration::from_secs(10), || export_lines(&s)
        .len()
        > 1));
    let (ok, said) = s.gateway.audit_verify();
    assert!(ok, "{said}");

    // Tampering after the compaction, in copies of the stopped store.
    s.gateway.stop();
    let store = s.gateway.dir.join("leadgate.redb");
    let copy = s.dir.path().join("copy.redb");
    let compact_seq = last_dropped.seq + 1;
    let edits: Vec<(u64, Edit)> = vec![
        // The counts in the checkpoint.
        (
            compact_seq,
            Box::new(|txn| {
                let mut meta = txn.open_table(META)?;
                let bytes = meta.get(CHECKPOINT_KEY)?.unwrap().value().to_vec();
                let mut cp: Checkpoint = serde_json::from_slice(&bytes).unwrap();
                cp.counts.insert("auth.failed".into(), 0);
                meta.insert(CHECKPOINT_KEY, serde_json::to_vec(&cp).unwrap().as_slice())?;
                Ok(())
            }),
        ),
        // The actor of the event after the checkpoint.
        (
            compact_seq,
            Box::new(move |txn| {
                let mut t = txn.open_table(AUDIT)?;
                let bytes = t.get(compact_seq)?.unwrap().value().to_vec();
                let mut ev: AuditEvent = serde_json::from_slice(&bytes).unwrap();
                ev.actor = "mallory".into();
                t.insert(compact_seq, serde_json::to_vec(&ev).unwrap().as_slice())?;
                Ok(())
            }),
        ),
    ];
    for (seq, edit) in edits {
        std::fs::copy(&store, &copy).unwrap();
        let db = Store::open(&copy).unwrap();
        db.raw_write_blocking(move |txn| edit(txn)).unwrap();
        db.close();
        drop(db);
        let (ok, said) = verify_store_file(&copy);
        assert!(!ok, "{said}");
        assert!(said.contains(&format!("broken at seq {seq}")), "{said}");
    }
    // A dropped event put back.
    std::fs::copy(&store, &copy).unwrap();
    let first = before[0].clone();
    let db = Store::open(&copy).unwrap();
    db.raw_write_blocking(move |txn| {
        txn.open_table(AUDIT)?.insert(1, first.as_bytes())?;
        Ok::<_, StoreError>(())
    })
    .unwrap();
    db.close();
    drop(db);
    let (ok, said) = verify_store_file(&copy);
    assert!(!ok && said.contains("broken at seq 1"), "{said}");
    std::fs::copy(&store, &copy).unwrap();
    assert!(verify_store_file(&copy).0);
}
