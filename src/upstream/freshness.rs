//! Freshness: knowing that the index equals the upstream. [`MailboxState`]
//! holds the counters that tell (EXISTS or MESSAGES, UIDNEXT, UIDVALIDITY,
//! HIGHESTMODSEQ), from a SELECT answer kept current by the connection or
//! from the index, and says how the index falls short.

use super::conn::SelectInfo;
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
