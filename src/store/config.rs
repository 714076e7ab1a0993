//! `[store]`: where the redb file lives, and how much mail it keeps locally.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// Bodies of the shared mailbox kept locally (MiB), so downloads,
    /// stamping and lead triage do not wait for the upstream. 0 disables.
    #[serde(default = "d_body_cache_mib")]
    pub body_cache_mib: u64,
    /// Messages larger than this (KiB) are always fetched from the upstream.
    #[serde(default = "d_body_cache_max_kib")]
    pub body_cache_max_message_kib: u64,
}

fn d_body_cache_mib() -> u64 {
    2048
}
fn d_body_cache_max_kib() -> u64 {
    1024
}

/// `[audit]`: how long the audit log keeps events (see `store::retention`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Events older than this many days are compacted into a checkpoint,
    /// once a day by the daemon and on `leadgate audit compact`. Absent:
    /// kept forever.
    #[serde(default)]
    pub retain_days: Option<u32>,
    /// Write the events a compaction drops here first, one file per run
    /// (`audit-<first seq>-<last seq>.jsonl`); if that fails nothing is
    /// dropped.
    #[serde(default)]
    pub export_dir: Option<PathBuf>,
}

impl AuditConfig {
    pub fn validate(&self) -> Result<(), crate::section::Invalid> {
        if let Some(d) = self.retain_days {
            if !(1..=36_500).contains(&d) {
                return Err(crate::section::invalid(
                    "audit.retain_days",
                    "must be between 1 and 36500 days",
                ));
            }
        }
        if let Some(dir) = &self.export_dir {
            if !dir.is_absolute() {
                return Err(crate::section::invalid(
                    "audit.export_dir",
                    "must be an absolute path",
                ));
            }
        }
        Ok(())
    }

    /// The cutoff for `now_ms`: events before it are compacted.
    pub fn cutoff(retain_days: u32, now_ms: i64) -> i64 {
        now_ms - i64::from(retain_days) * 86_400_000
    }
}
