use super::*;
use crate::store::changes::WriteTxn;

const T0: i64 = 1_780_000_000_000;
const DAY: i64 = 86_400_000;

/// A store with `n` events, event i (from 1) on day i.
async fn store(n: i64) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    for i in 1..=n {
        store
            .audit(AuditDraft {
                at: T0 + i * DAY,
                actor: "alice".into(),
                action: if i % 2 == 0 {
                    "lead.assign"
                } else {
                    "auth.login"
                }
                .into(),
                lead: Some(i as u64),
                changes: vec![],
                reason: format!("event {i}"),
            })
            .await
            .unwrap();
    }
    (dir, store)
}

fn seqs(store: &Store) -> Vec<u64> {
    store.all_audit_events().iter().map(|e| e.seq).collect()
}

async fn raw(store: &Store, f: impl FnMut(&WriteTxn) -> Result<(), StoreError> + Send + 'static) {
    store.write(f).await.unwrap();
}

#[tokio::test]
async fn old_events_become_a_checkpoint_the_chain_verifies_from() {
    let (dir, store) = store(10).await;
    let export = dir.path().join("old.jsonl");
    let before: Vec<AuditEvent> = store.all_audit_events();
    // Events on days 1..=5 are older than day 5.5.
    let r = store
        .audit_compact(
            T0 + 5 * DAY + DAY / 2,
            Some(ExportTo::File(export.clone())),
            "cli:root",
            T0 + 20 * DAY,
        )
        .await
        .unwrap();
    assert_eq!(r.dropped, 5);
    let cp = r.checkpoint.clone().unwrap();
    assert_eq!(cp.seq, 5);
    assert_eq!(cp.hash, before[4].hash);
    assert_eq!(cp.events, 5);
    assert_eq!(cp.counts["auth.login"], 3);
    assert_eq!(cp.counts["lead.assign"], 2);
    assert_eq!((cp.first_at, cp.last_at), (T0 + DAY, T0 + 5 * DAY));
    assert_eq!(seqs(&store), [6, 7, 8, 9, 10, 11]);
    let v = store.audit_verify().unwrap();
    assert!(v.is_ok(), "{v:?}");
    assert_eq!(v.events, 6);
    assert_eq!(v.checkpoint, Some(cp.clone()));

    // The export holds the dropped events exactly as they were.
    let text = std::fs::read_to_string(&export).unwrap();
    let exported: Vec<AuditEvent> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported, before[..5]);

    // Nothing more is old enough; a later run drops the rest, the old
    // audit.compact event included, and adds up the counts.
    let r = store
        .audit_compact(T0, None, "cli:root", T0 + 20 * DAY)
        .await
        .unwrap();
    assert_eq!(r.dropped, 0);
    let r = store
        .audit_compact(T0 + 30 * DAY, None, "leadgate", T0 + 40 * DAY)
        .await
        .unwrap();
    assert_eq!(r.dropped, 6);
    let cp = r.checkpoint.unwrap();
    assert_eq!((cp.seq, cp.events), (11, 11));
    assert_eq!(cp.counts[COMPACT_ACTION], 1);
    assert_eq!(seqs(&store), [12]);
    assert!(store.audit_verify().unwrap().is_ok());
    store
        .audit(AuditDraft {
            at: T0 + 41 * DAY,
            actor: "bob".into(),
            action: "auth.login".into(),
            lead: None,
            changes: vec![],
            reason: String::new(),
        })
        .await
        .unwrap();
    let v = store.audit_verify().unwrap();
    assert!(v.is_ok() && v.events == 2, "{v:?}");
}

#[tokio::test]
async fn tampering_after_a_compaction_is_named() {
    let (_dir, store) = store(8).await;
    let dropped: Vec<Vec<u8>> = store
        .all_audit_events()
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap())
        .collect();
    store
        .audit_compact(T0 + 4 * DAY + 1, None, "cli:root", T0 + 9 * DAY)
        .await
        .unwrap();
    assert!(store.audit_verify().unwrap().is_ok());
    let cp_bytes = store
        .read(|txn| {
            Ok(txn
                .open_table(META)?
                .get(CHECKPOINT_KEY)?
                .unwrap()
                .value()
                .to_vec())
        })
        .unwrap();

    // The counts edited in the checkpoint: named at the audit.compact event.
    let mut cp: Checkpoint = serde_json::from_slice(&cp_bytes).unwrap();
    cp.counts.insert("auth.failed".into(), 0);
    let edited = serde_json::to_vec(&cp).unwrap();
    raw(&store, move |txn| {
        txn.open_table(META)?
            .insert(CHECKPOINT_KEY, edited.as_slice())?;
        Ok(())
    })
    .await;
    let (seq, what) = store.audit_verify().unwrap().first_bad.unwrap();
    assert_eq!(seq, 9, "{what}");
    assert!(what.contains("checkpoint"), "{what}");

    // A resume point moved back (hiding a dropped event put back): named.
    let mut cp: Checkpoint = serde_json::from_slice(&cp_bytes).unwrap();
    cp.seq = 3;
    let edited = serde_json::to_vec(&cp).unwrap();
    let ev4 = dropped[3].clone();
    raw(&store, move |txn| {
        txn.open_table(META)?
            .insert(CHECKPOINT_KEY, edited.as_slice())?;
        txn.open_table(AUDIT)?.insert(4, ev4.as_slice())?;
        Ok(())
    })
    .await;
    let (seq, what) = store.audit_verify().unwrap().first_bad.unwrap();
    assert_eq!(seq, 4, "{what}");
    assert!(what.contains("checkpoint at seq 3"), "{what}");

    // The checkpoint back, a dropped event put back: outside the chain.
    let (cp1, ev2) = (cp_bytes.clone(), dropped[1].clone());
    raw(&store, move |txn| {
        txn.open_table(META)?
            .insert(CHECKPOINT_KEY, cp1.as_slice())?;
        txn.open_table(AUDIT)?.remove(4)?;
        txn.open_table(AUDIT)?.insert(2, ev2.as_slice())?;
        Ok(())
    })
    .await;
    let (seq, what) = store.audit_verify().unwrap().first_bad.unwrap();
    assert_eq!(seq, 2, "{what}");
    assert!(what.contains("outside the chain"), "{what}");

    // An edit of the first event after the checkpoint: named.
    raw(&store, move |txn| {
        txn.open_table(AUDIT)?.remove(2)?;
        let mut t = txn.open_table(AUDIT)?;
        let mut ev: AuditEvent = serde_json::from_slice(t.get(5)?.unwrap().value()).unwrap();
        ev.actor = "mallory".into();
        t.insert(5, serde_json::to_vec(&ev).unwrap().as_slice())?;
        Ok(())
    })
    .await;
    let (seq, _) = store.audit_verify().unwrap().first_bad.unwrap();
    assert_eq!(seq, 5);
    // A broken chain is never compacted.
    let err = store
        .audit_compact(T0 + 100 * DAY, None, "cli:root", T0 + 100 * DAY)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("broken at seq 5"), "{err}");
}

#[tokio::test]
async fn nothing_is_dropped_when_the_export_cannot_be_written() {
    let (dir, store) = store(4).await;
    let nowhere = dir.path().join("no/such/dir");
    let err = store
        .audit_compact(
            T0 + 10 * DAY,
            Some(ExportTo::Dir(nowhere)),
            "leadgate",
            T0 + 10 * DAY,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot write the export"), "{err}");
    assert_eq!(seqs(&store), [1, 2, 3, 4]);
    let r = store
        .audit_compact(
            T0 + 10 * DAY,
            Some(ExportTo::Dir(dir.path().to_owned())),
            "leadgate",
            T0 + 10 * DAY,
        )
        .await
        .unwrap();
    assert_eq!(r.exported_to, Some(dir.path().join("audit-1-4.jsonl")));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("audit-1-4.jsonl"))
            .unwrap()
            .lines()
            .count(),
        4
    );
}

#[tokio::test]
async fn the_daemons_schedule_compacts_into_the_export_dir_on_its_own() {
    let (dir, store) = store(6).await;
    let config = crate::store::config::AuditConfig {
        retain_days: Some(30),
        export_dir: Some(dir.path().to_owned()),
    };
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run_daily(
        store.clone(),
        config,
        // Day 40: days 1..=9 are older than 30 days.
        || T0 + 40 * DAY,
        Schedule {
            first: std::time::Duration::from_millis(10),
            every: std::time::Duration::from_secs(3600),
        },
        shutdown,
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while seqs(&store) != [7] {
        assert!(std::time::Instant::now() < deadline, "{:?}", seqs(&store));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    let v = store.audit_verify().unwrap();
    assert!(v.is_ok(), "{v:?}");
    assert_eq!(v.checkpoint.map(|c| c.seq), Some(6));
    let archived = std::fs::read_to_string(dir.path().join("audit-1-6.jsonl")).unwrap();
    assert_eq!(archived.lines().count(), 6);
    let ev = store.all_audit_events().pop().unwrap();
    assert_eq!(
        (ev.action.as_str(), ev.actor.as_str()),
        (COMPACT_ACTION, "leadgate")
    );
}
