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
