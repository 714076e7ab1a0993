//! Freshness: knowing that the index equals the upstream, and a cheap check
//! that bounds how long it can lag when every notification is lost.
//!
//! The watcher (`sync`) hears of INBOX changes through IDLE, but IDLE is a
//! hint: Dovecot learns of a Maildir written by another process through
//! inotify and may coalesce or miss notifications, nothing tells of private
//! folders or the shared Sent, and a connection can hang without an error.
//! So every `poll_interval` the [`Checker`]:
//!
//! 1. asks `STATUS <name> (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)` on
//!    one pool connection for INBOX, the other shared folders (the shared
//!    Sent) and every private folder a session has selected
//!    (`Index::selected_folders`). A pool connection that has one of them
//!    selected UNSELECTs first: Dovecot answers STATUS on the selected
//!    mailbox from that session's view, which lags;
//! 2. compares each answer with the index ([`MailboxState::behind`]);
//! 3. for INBOX behind, wakes the watcher, which leaves IDLE and resyncs;
//!    any other folder behind is resynced through the pool at once (its
//!    changes reach sessions, views and IDLE clients as index events);
//! 4. when every shared folder was equal, records the confirmation
//!    (`Health::confirm`), from which `/metrics` reports the sync lag.
//!
//! The worst case for a change nobody was told of is one interval plus one
//! resync.

use std::{sync::Arc, time::Duration};

use tokio::sync::{watch, Notify};

use super::{
    conn::{SelectInfo, UpstreamError},
    pool::Pool,
    sync::Health,
};
use crate::index::Index;

/// The counters that tell whether two views of a mailbox hold the same
/// messages and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxState {
    pub uidvalidity: u32,
    pub messages: u32,
    pub uidnext: u32,
    /// `None` when the server has no CONDSTORE.
    pub highestmodseq: Option<u64>,
}

impl MailboxState {
    /// What the server has reported of a selected mailbox.
    pub fn of_select(s: &SelectInfo) -> MailboxState {
        MailboxState {
            uidvalidity: s.uidvalidity,
            messages: s.exists,
            uidnext: s.uidnext,
            highestmodseq: s.highestmodseq,
        }
    }

    /// What the index holds of `name`.
    pub fn of_index(index: &Index, name: &str) -> Option<MailboxState> {
        index.with_mailbox(name, |m| MailboxState {
            uidvalidity: m.rec.uidvalidity,
            messages: u32::try_from(m.msgs.len()).unwrap_or(u32::MAX),
            uidnext: m.rec.uidnext,
            highestmodseq: Some(m.rec.highestmodseq),
        })
    }

    /// How `index` falls short of this (upstream) state, for a log line;
    /// `None` when it holds the same. The index's UIDNEXT and HIGHESTMODSEQ
    /// may run ahead of a report made before the last resync, never behind.
    pub fn behind(&self, index: Option<MailboxState>) -> Option<String> {
        let Some(ix) = index else {
            return Some("not indexed".into());
        };
        let mut diffs = Vec::new();
        if ix.uidvalidity != self.uidvalidity {
            diffs.push(format!(
                "UIDVALIDITY {} upstream, {} indexed",
                self.uidvalidity, ix.uidvalidity
            ));
        }
        if ix.messages != self.messages {
            diffs.push(format!(
                "{} messages upstream, {} indexed",
                self.messages, ix.messages
            ));
        }
        if ix.uidnext < self.uidnext {
            diffs.push(format!(
                "UIDNEXT {} upstream, {} indexed",
                self.uidnext, ix.uidnext
            ));
        }
        if let (Some(up), Some(known)) = (self.highestmodseq, ix.highestmodseq) {
            if known < up {
                diffs.push(format!("HIGHESTMODSEQ {up} upstream, {known} indexed"));
            }
        }
        (!diffs.is_empty()).then(|| diffs.join(", "))
    }
}

/// The periodic freshness check (the sequence in the module doc).
pub struct Checker {
    pub index: Arc<Index>,
    pub pool: Arc<Pool>,
    pub health: Arc<Health>,
    /// Wakes the watcher to resync INBOX.
    pub nudge: Arc<Notify>,
    /// INBOX first, then the other shared folders.
    pub shared: Vec<String>,
    pub interval: Duration,
}

impl Checker {
    /// Checks every `interval` until `shutdown` fires. `ready` turns true
    /// after the watcher's first sync; nothing is checked before.
    pub async fn run(self, mut ready: watch::Receiver<bool>, mut shutdown: watch::Receiver<bool>) {
        tokio::select! {
            r = ready.wait_for(|r| *r) => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = self.check().await {
                tracing::debug!("freshness check failed: {e}");
            }
        }
    }

    /// One round: STATUS, compare, resync what lags, confirm.
    pub async fn check(&self) -> Result<(), UpstreamError> {
        let mut names = self.shared.clone();
        for name in self.index.selected_folders() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let states = self.pool.states(&names).await?;
        // A shared folder left behind (INBOX waits for the watcher, which
        // confirms itself once it has settled).
        let mut lagging = false;
        for (name, state) in states {
            // A folder the upstream does not have: nothing to compare.
            let Some(upstream) = state else { continue };
            let Some(diff) = upstream.behind(MailboxState::of_index(&self.index, &name)) else {
                continue;
            };
            if name == "INBOX" {
                tracing::info!("freshness check: INBOX behind the upstream ({diff})");
                lagging = true;
                self.nudge.notify_one();
                continue;
            }
            tracing::info!("freshness check: {name} behind the upstream ({diff}): resyncing");
            if let Err(e) = self.pool.sync(&self.index, &name).await {
                tracing::warn!("resync of {name}: {e}");
                lagging |= self.shared.contains(&name);
            }
        }
        if !lagging {
            self.health.confirm();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::MailboxState;

    const SYNCED: MailboxState = MailboxState {
        uidvalidity: 7,
        messages: 12_449,
        uidnext: 12_450,
        highestmodseq: Some(900),
    };

    #[test]
    fn the_same_counters_are_not_behind() {
        assert_eq!(SYNCED.behind(Some(SYNCED)), None);
    }

    #[test]
    fn an_import_reported_after_the_resync_leaves_the_index_behind() {
        let upstream = MailboxState {
            messages: 20_000,
            ..SYNCED
        };
        assert_eq!(
            upstream.behind(Some(SYNCED)).as_deref(),
            Some("20000 messages upstream, 12449 indexed")
        );
    }

    #[test]
    fn a_flag_change_elsewhere_shows_in_highestmodseq() {
        let upstream = MailboxState {
            highestmodseq: Some(901),
            ..SYNCED
        };
        assert!(upstream.behind(Some(SYNCED)).is_some());
        // A server without CONDSTORE cannot tell; counts still can.
        let plain = MailboxState {
            highestmodseq: None,
            ..SYNCED
        };
        assert_eq!(plain.behind(Some(SYNCED)), None);
    }

    #[test]
    fn an_append_and_an_expunge_together_show_in_uidnext() {
        let upstream = MailboxState {
            uidnext: 12_451,
            ..SYNCED
        };
        assert!(upstream.behind(Some(SYNCED)).is_some());
        // The index may be ahead of an older report, never behind it.
        let older = MailboxState {
            uidnext: 12_440,
            highestmodseq: Some(850),
            ..SYNCED
        };
        assert_eq!(older.behind(Some(SYNCED)), None);
    }

    #[test]
    fn a_new_uidvalidity_or_a_missing_mailbox_is_behind() {
        let upstream = MailboxState {
            uidvalidity: 8,
            ..SYNCED
        };
        assert!(upstream.behind(Some(SYNCED)).is_some());
        assert!(SYNCED.behind(None).is_some());
    }
}
