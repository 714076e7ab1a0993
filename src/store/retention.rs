//! Audit retention: events older than `[audit] retain_days` are compacted
//! into a checkpoint from which the chain still verifies.
//!
//! # The checkpoint
//!
//! META `audit_checkpoint` holds a JSON [`Checkpoint`]: the seq and hash of
//! the last dropped event (the chain resumes at seq + 1, whose `prev` is
//! that hash), and, over every compaction so far, how many events were
//! dropped, per action, and their time range. `audit verify` starts from
//! it and reports it.
//!
//! The checkpoint itself is covered by the chain: each compaction appends
//! an `audit.compact` event whose change `checkpoint` holds the SHA-256 of
//! the checkpoint's JSON ([`Checkpoint::digest`]). Verify checks that the
//! newest `audit.compact` event names the checkpoint in place, so editing
//! the counts, the range or the resume point is named. (The newest such
//! event is always newer than the checkpoint: a compaction that drops the
//! previous one writes the next.)
//!
//! # A compaction, in order
//!
//! 1. In one read transaction: verify the whole chain (a broken chain is
//!    never compacted: that would hide the break), and find the events to
//!    drop: from the start, every event older than the cutoff, up to the
//!    first that is not.
//! 2. If an export is asked for (`--export FILE` or `[audit] export_dir`),
//!    write those events, as stored, one JSON object per line, to a
//!    temporary file beside the target, sync it, rename it into place and
//!    sync the directory. If that fails nothing is dropped.
//! 3. In one write transaction: check that the events to drop are still
//!    exactly those exported (a `contact erase` in between makes the
//!    compaction stop; run it again), remove them, store the new
//!    checkpoint and append the `audit.compact` event.
//!
//! Dropped events are gone from the store's tables; as with any delete,
//! redb reuses their pages later, it does not wipe them (`contact erase`
//! rewrites the file for that reason; a compaction does not).

use super::changes::Table;
use std::{
    collections::BTreeMap,
    fs::File,
    io::Write,
    path::{Path, PathBuf},
};

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    audit::{self, AuditChange, AuditDraft, AuditEvent},
    backup,
    schema::{AUDIT, META},
    Store, StoreError,
};

/// META key of the checkpoint.
pub const CHECKPOINT_KEY: &str = "audit_checkpoint";

/// The action of the event that records a compaction.
pub const COMPACT_ACTION: &str = "audit.compact";

/// What the dropped events were (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The last dropped event; the chain resumes after it.
    pub seq: u64,
    /// Its hash (hex), the `prev` of event `seq + 1`.
    pub hash: String,
    /// Events dropped so far (all compactions), and per action.
    pub events: u64,
    pub counts: BTreeMap<String, u64>,
    /// Time of the oldest and newest dropped event (unix ms).
    pub first_at: i64,
    pub last_at: i64,
}

impl Checkpoint {
    /// Hex SHA-256 of the checkpoint's JSON (fields in declaration order,
    /// counts sorted by action), as the `audit.compact` event names it.
    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&json))
    }
}

impl std::fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let day = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_else(|| ms.to_string())
        };
        write!(
            f,
            "checkpoint at seq {}: {} earlier events compacted ({} to {})",
            self.seq,
            self.events,
            day(self.first_at),
            day(self.last_at)
        )
    }
}

/// The checkpoint in META, if any.
pub(super) fn read_checkpoint(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<Checkpoint>, String> {
    match meta.get(CHECKPOINT_KEY).map_err(|e| e.to_string())? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

/// Where a compaction writes the events it drops.
#[derive(Debug, Clone)]
pub enum ExportTo {
    /// This file (replaced atomically).
    File(PathBuf),
    /// A new file `audit-<first seq>-<last seq>.jsonl` in this directory.
    Dir(PathBuf),
}

/// What a compaction did.
#[derive(Debug, Clone)]
pub struct CompactReport {
    pub dropped: u64,
    /// The checkpoint now in force (`None`: there is none).
    pub checkpoint: Option<Checkpoint>,
    pub exported_to: Option<PathBuf>,
    /// The `audit.compact` event (`None` when nothing was dropped).
    pub event: Option<AuditEvent>,
}

impl std::fmt::Display for CompactReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.dropped == 0 {
            f.write_str("no audit event is old enough to compact")?;
        } else {
            write!(f, "compacted {} audit events", self.dropped)?;
            if let Some(p) = &self.exported_to {
                write!(f, " (exported to {})", p.display())?;
            }
            if let Some(ev) = &self.event {
                write!(f, "; recorded as audit event {}", ev.seq)?;
            }
        }
        if let Some(cp) = &self.checkpoint {
            write!(f, "\n{cp}")?;
        }
        Ok(())
    }
}

/// Why a compaction did not run; nothing was dropped.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("not compacting: audit log broken at seq {seq}: {what}")]
    Broken { seq: u64, what: String },
    #[error("not compacting: cannot write the export {path}: {source}")]
    Export {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not compacting: the audit log changed while it was exported (another compaction, or an erase); run it again")]
    Changed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The events a compaction drops, as steps 1 and 2 found them.
struct Selected {
    first: u64,
    last: u64,
    /// SHA-256 of their stored bytes, in order.
    digest: [u8; 32],
    exported_to: Option<PathBuf>,
}

/// Steps 1 and 2 of the module docs.
fn select_and_export(
    store: &Store,
    cutoff_ms: i64,
    export: Option<&ExportTo>,
) -> Result<Option<Selected>, CompactError> {
    store
        .read(|txn| {
            let report = audit::verify_in(txn)?;
            Ok(report)
        })
        .map_err(CompactError::from)
        .and_then(|r| match r.first_bad {
            Some((seq, what)) => Err(CompactError::Broken { seq, what }),
            None => Ok(()),
        })?;
    let r = store.read(|txn| {
        let base = read_checkpoint(&txn.open_table(META)?)
            .map_err(|e| StoreError::corrupt(CHECKPOINT_KEY, e))?
            .map_or(0, |c| c.seq);
        let t = txn.open_table(AUDIT)?;
        let mut last = None;
        let mut digest = Sha256::new();
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for row in t.range(base + 1..)? {
            let (k, v) = row?;
            let ev: AuditEvent = serde_json::from_slice(v.value())
                .map_err(|e| StoreError::corrupt(format!("audit {}", k.value()), e))?;
            if ev.at >= cutoff_ms {
                break;
            }
            digest.update(v.value());
            if export.is_some() {
                lines.push(v.value().to_vec());
            }
            last = Some(k.value());
        }
        Ok(last.map(|l| (base + 1, l, digest.finalize().into(), lines)))
    })?;
    let Some((first, last, digest, lines)) = r else {
        return Ok(None);
    };
    let exported = match export {
        None => None,
        Some(to) => {
            let path = match to {
                ExportTo::File(p) => p.clone(),
                ExportTo::Dir(d) => d.join(format!("audit-{first}-{last}.jsonl")),
            };
            write_atomically(&path, &lines).map_err(|source| CompactError::Export {
                path: path.clone(),
                source,
            })?;
            Some(path)
        }
    };
    Ok(Some(Selected {
        first,
        last,
        digest,
        exported_to: exported,
    }))
}

/// Writes `lines` to a temporary file beside `path`, syncs it, renames it
/// into place and syncs the directory.
fn write_atomically(path: &Path, lines: &[Vec<u8>]) -> std::io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(name);
    let result = (|| {
        let mut f = std::io::BufWriter::new(File::create(&tmp)?);
        for l in lines {
            f.write_all(l)?;
            f.write_all(b"\n")?;
        }
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        backup::sync_dir(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Step 3 of the module docs, in the writer's transaction.
fn drop_and_checkpoint(
    audit_t: &mut Table<'_, u64, &'static [u8]>,
    meta: &mut Table<'_, &'static str, &'static [u8]>,
    first: u64,
    last: u64,
    digest: &[u8; 32],
) -> Result<Result<(Checkpoint, Option<Checkpoint>), CompactError>, StoreError> {
    let old = read_checkpoint(meta).map_err(|e| StoreError::corrupt(CHECKPOINT_KEY, e))?;
    if old.as_ref().map_or(0, |c| c.seq) + 1 != first {
        return Ok(Err(CompactError::Changed));
    }
    let mut cp = old.clone().unwrap_or(Checkpoint {
        seq: 0,
        hash: String::new(),
        events: 0,
        counts: BTreeMap::new(),
        first_at: i64::MAX,
        last_at: i64::MIN,
    });
    let mut h = Sha256::new();
    for row in audit_t.range(first..=last)? {
        let (k, v) = row?;
        h.update(v.value());
        let ev: AuditEvent = serde_json::from_slice(v.value())
            .map_err(|e| StoreError::corrupt(format!("audit {}", k.value()), e))?;
        cp.seq = ev.seq;
        cp.hash = ev.hash;
        cp.events += 1;
        *cp.counts.entry(ev.action).or_default() += 1;
        cp.first_at = cp.first_at.min(ev.at);
        cp.last_at = cp.last_at.max(ev.at);
    }
    let now: [u8; 32] = h.finalize().into();
    if &now != digest || cp.seq != last {
        return Ok(Err(CompactError::Changed));
    }
    audit_t.retain_in(first..=last, |_, _| false)?;
    let bytes = serde_json::to_vec(&cp).map_err(|e| StoreError::corrupt(CHECKPOINT_KEY, e))?;
    meta.insert(CHECKPOINT_KEY, bytes.as_slice())?;
    Ok(Ok((cp, old)))
}

impl Store {
    /// Compacts the events older than `cutoff_ms` into the checkpoint (see
    /// the module docs), writing them to `export` first when given.
    pub async fn audit_compact(
        &self,
        cutoff_ms: i64,
        export: Option<ExportTo>,
        actor: &str,
        now_ms: i64,
    ) -> Result<CompactReport, CompactError> {
        let store = self.clone();
        let exp = export.clone();
        let selected =
            tokio::task::spawn_blocking(move || select_and_export(&store, cutoff_ms, exp.as_ref()))
                .await
                .map_err(|_| StoreError::WriterGone)??;
        let Some(Selected {
            first,
            last,
            digest,
            exported_to,
        }) = selected
        else {
            let checkpoint = self.read(|txn| {
                read_checkpoint(&txn.open_table(META)?)
                    .map_err(|e| StoreError::corrupt(CHECKPOINT_KEY, e))
            })?;
            return Ok(CompactReport {
                dropped: 0,
                checkpoint,
                exported_to: None,
                event: None,
            });
        };
        let actor = actor.to_owned();
        let where_to = exported_to.clone();
        let done = self
            .write(move |txn| {
                let mut audit_t = txn.open_table(AUDIT)?;
                let mut meta = txn.open_table(META)?;
                let (cp, old) =
                    match drop_and_checkpoint(&mut audit_t, &mut meta, first, last, &digest)? {
                        Ok(r) => r,
                        Err(e) => return Ok(Err(e)),
                    };
                let draft = AuditDraft {
                    at: now_ms,
                    actor: actor.clone(),
                    action: COMPACT_ACTION.into(),
                    lead: None,
                    changes: vec![AuditChange {
                        field: "checkpoint".into(),
                        before: old.map(|c| c.digest()).unwrap_or_default(),
                        after: cp.digest(),
                    }],
                    reason: format!(
                        "dropped events {first} to {last}, older than {}{}",
                        chrono::DateTime::from_timestamp_millis(cutoff_ms)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default(),
                        where_to
                            .as_ref()
                            .map(|p| format!("; exported to {}", p.display()))
                            .unwrap_or_default()
                    ),
                };
                let ev = audit::append_in(&mut audit_t, &mut meta, &draft)?;
                Ok(Ok((cp, ev)))
            })
            .await?;
        let (cp, ev) = done?;
        Ok(CompactReport {
            dropped: last - first + 1,
            checkpoint: Some(cp),
            exported_to,
            event: Some(ev),
        })
    }
}

/// When the daemon compacts: `first` after start, then every `every`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub first: std::time::Duration,
    pub every: std::time::Duration,
}

impl Schedule {
    /// A minute after start, then daily.
    pub const DAILY: Schedule = Schedule {
        first: std::time::Duration::from_secs(60),
        every: std::time::Duration::from_secs(24 * 3600),
    };
}

/// The daemon's compaction on `schedule` (`Schedule::DAILY`), until
/// `shutdown`; nothing without `retain_days`. `now_ms` is the daemon's
/// clock.
pub async fn run_daily(
    store: Store,
    config: super::config::AuditConfig,
    now_ms: impl Fn() -> i64 + Send + 'static,
    schedule: Schedule,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let Some(days) = config.retain_days else {
        return;
    };
    let mut wait = schedule.first;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        wait = schedule.every;
        let now = now_ms();
        let export = config.export_dir.clone().map(ExportTo::Dir);
        let cutoff = super::config::AuditConfig::cutoff(days, now);
        match store.audit_compact(cutoff, export, "leadgate", now).await {
            Ok(r) if r.dropped > 0 => tracing::info!("audit retention: {r}"),
            Ok(_) => {}
            Err(e) => tracing::error!("audit retention ([audit] retain_days = {days}): {e}"),
        }
    }
}

#[cfg(test)]
mod tests;
