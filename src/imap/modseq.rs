//! CONDSTORE and QRESYNC (RFC 7162) towards clients.
//!
//! Modseqs are per user and folder (`store::modseq`): a sweep compares the
//! flags the user sees now with the digests last recorded and gives what
//! changed a new modseq. This module runs the sweeps for a session and
//! writes what RFC 7162 adds to the answers: HIGHESTMODSEQ, MODSEQ,
//! VANISHED. Session-only flags (`\Recent`, a lead folder's `\Deleted`, a
//! card marked unread) are left out of the digests: they are not state
//! another session of the user could see.
//!
//! VANISHED (EARLIER) is computed from the UIDs present, not from a log of
//! expunges: it names every UID below UIDNEXT (and within the client's
//! known UIDs, when it sends them) that is not in the folder, as RFC 7162
//! allows (3.2.5.1, a server without expunge history); clients ignore UIDs
//! they do not have. The ranges stay compact.

use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use super::{
    access::Ref,
    folders::Folder,
    session::{Io, Session},
};
use crate::store::modseq::{flags_digest, Sweep};

/// Now, in microseconds: the floor of a new modseq.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The key folders are recorded under: the name the client uses.
fn folder_key(folder: &Folder) -> String {
    folder.client_name().to_owned()
}

/// A sequence set as inclusive UID ranges, `*` standing for `largest`.
pub(crate) fn ranges_of(set: &SequenceSet, largest: u32) -> Vec<(u32, u32)> {
    let value = |s: &SeqOrUid| match s {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => largest,
    };
    let mut out: Vec<(u32, u32)> = set
        .0
        .as_ref()
        .iter()
        .map(|s| match s {
            Sequence::Single(x) => (value(x), value(x)),
            Sequence::Range(a, b) => {
                let (a, b) = (value(a), value(b));
                (a.min(b), a.max(b))
            }
        })
        .collect();
    out.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(out.len());
    for (a, b) in out {
        match merged.last_mut() {
            Some((_, end)) if u64::from(a) <= u64::from(*end) + 1 => *end = (*end).max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// The UIDs within `within` (sorted, disjoint ranges) and below `uidnext`
/// that are not in `present` (ascending), as ranges.
pub(crate) fn gaps(present: &[u32], within: &[(u32, u32)], uidnext: u32) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let Some(top) = uidnext.checked_sub(1) else {
        return out;
    };
    for &(a, b) in within {
        let (a, b) = (a.max(1), b.min(top));
        if a > b {
            continue;
        }
        let mut next = a;
        let start = present.partition_point(|&u| u < a);
        for &u in present[start..].iter().take_while(|&&u| u <= b) {
            if u > next {
                out.push((next, u - 1));
            }
            next = u.saturating_add(1);
        }
        if next <= b && next >= a {
            out.push((next, b));
        }
    }
    out
}

/// The line for a message gone from the selected folder: `VANISHED` once
/// QRESYNC is on (a UID), `EXPUNGE` otherwise (a sequence number).
pub(crate) fn expunged_line(qresync: bool, seq: u32, uid: u32) -> String {
    if qresync {
        format!("* VANISHED {uid}\r\n")
    } else {
        format!("* {seq} EXPUNGE\r\n")
    }
}

/// An unsolicited flag change, with MODSEQ once CONDSTORE is on.
pub(crate) fn fetch_flags_line(r: &Ref, flags: &str, modseq: Option<u64>) -> String {
    match modseq {
        Some(m) => format!(
            "* {} FETCH (UID {} FLAGS ({flags}) MODSEQ ({m}))\r\n",
            r.seq, r.uid
        ),
        None => format!("* {} FETCH (UID {} FLAGS ({flags}))\r\n", r.seq, r.uid),
    }
}

impl<S: Io> Session<S> {
    pub(crate) fn condstore(&self) -> bool {
        self.authed().is_some_and(|a| a.condstore)
    }

    pub(crate) fn qresync(&self) -> bool {
        self.authed().is_some_and(|a| a.qresync)
    }

    /// A CONDSTORE enabling command (RFC 7162 3.1): from now on FETCH
    /// answers that carry flags carry MODSEQ. When a folder is selected
    /// and CONDSTORE was off, the client is told its HIGHESTMODSEQ.
    pub(crate) async fn enable_condstore(&mut self) {
        let was = self.condstore();
        if let Some(a) = self.authed_mut() {
            a.condstore = true;
        }
        if !was && self.selected().is_some() {
            let refs = self.all_refs();
            if let Some(sweep) = self.sweep(&refs, true).await {
                self.untagged(&format!(
                    "OK [HIGHESTMODSEQ {}] Highest modseq",
                    sweep.highest
                ));
            }
        }
    }

    /// The digest modseqs follow: the flags without session-only ones.
    fn modseq_digest(&self, r: &Ref) -> u64 {
        let flags = self.flags_in(r, None);
        flags_digest(flags.iter().map(String::as_str))
    }

    /// Sweeps `refs` of the selected folder (`whole`: they are all of it).
    /// `None` when the store failed (logged).
    pub(crate) async fn sweep(&self, refs: &[Ref], whole: bool) -> Option<Sweep> {
        let sel = self.selected()?;
        let (key, uidvalidity) = (folder_key(&sel.folder), sel.uidvalidity);
        self.sweep_in(&key, uidvalidity, refs, whole).await
    }

    /// `sweep`, answering `NO [SERVERBUG]` for `verb` when the store
    /// failed.
    pub(crate) async fn sweep_or_refuse(
        &mut self,
        tag: &str,
        verb: &str,
        refs: &[Ref],
        whole: bool,
    ) -> Option<Sweep> {
        let sweep = self.sweep(refs, whole).await;
        if sweep.is_none() {
            self.no(
                tag,
                Some("SERVERBUG"),
                &format!("{verb} failed: modseqs unavailable"),
            );
        }
        sweep
    }

    async fn sweep_in(
        &self,
        key: &str,
        uidvalidity: u32,
        refs: &[Ref],
        whole: bool,
    ) -> Option<Sweep> {
        let user = self.viewer();
        let items: Vec<(u32, u64)> = refs
            .iter()
            .map(|r| (r.uid, self.modseq_digest(r)))
            .collect();
        match self
            .ctx
            .index
            .store()
            .modseq_sweep(&user, key, uidvalidity, items, whole, now_us())
            .await
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(user = %user, folder = key, "modseq sweep: {e}");
                None
            }
        }
    }

    /// Drops this user's modseqs of a private folder that was deleted or
    /// renamed (a folder made under the name again starts above them).
    pub(crate) async fn forget_modseqs(&self, name: &str) {
        let user = self.viewer();
        if let Err(e) = self.ctx.index.store().modseq_forget(&user, name).await {
            tracing::error!(user = %user, folder = name, "forgetting modseqs: {e}");
        }
    }

    /// HIGHESTMODSEQ of any folder (STATUS), swept whole.
    pub(crate) async fn highest_modseq(
        &self,
        folder: &Folder,
        scope: u32,
        uidvalidity: u32,
        uids: &[u32],
    ) -> Option<u64> {
        let pairs: Vec<(u32, u32)> = uids.iter().map(|u| (0, *u)).collect();
        let refs = self.refs_in(folder, scope, uidvalidity, &pairs);
        self.sweep_in(&folder_key(folder), uidvalidity, &refs, true)
            .await
            .map(|s| s.highest)
    }

    /// The modseqs of `refs` for unsolicited FETCH lines: `None` unless
    /// CONDSTORE is on (or the store failed, logged).
    pub(crate) async fn modseqs_to_send(&self, refs: &[Ref]) -> Option<Vec<u64>> {
        if !self.condstore() || refs.is_empty() {
            return None;
        }
        self.sweep(refs, false).await.map(|s| s.modseqs)
    }

    /// `VANISHED (EARLIER)` for the UIDs of `within` not in the selected
    /// folder (nothing when none).
    pub(crate) fn vanished_earlier(&mut self, within: &[(u32, u32)]) {
        let Some(sel) = self.selected() else { return };
        let uidnext = sel.uidnext.max(sel.uids.last().map_or(1, |u| u + 1));
        let gone = gaps(&sel.uids, within, uidnext);
        if !gone.is_empty() {
            let line = format!(
                "VANISHED (EARLIER) {}",
                crate::imap_wire::sequence_set(&gone)
            );
            self.untagged(&line);
        }
    }

    /// SELECT's QRESYNC part (RFC 7162 3.2.5), after the folder's sweep
    /// (`refs` and their modseqs): what vanished and what changed since the
    /// client's `modseq`. `known` limits both to UIDs the client has.
    pub(crate) fn qresync_select(
        &mut self,
        refs: &[Ref],
        sweep: &Sweep,
        modseq: u64,
        known: Option<&SequenceSet>,
    ) {
        let largest = self
            .selected()
            .and_then(|s| s.uids.last().copied())
            .unwrap_or(0);
        let within = match known {
            Some(set) => ranges_of(set, largest),
            None => vec![(1, u32::MAX)],
        };
        let inside = |uid: u32| within.iter().any(|&(a, b)| a <= uid && uid <= b);
        self.vanished_earlier(&within);
        for (r, m) in refs.iter().zip(&sweep.modseqs) {
            if *m > modseq && inside(r.uid) {
                let flags = self.flag_text(r);
                self.announce_keywords(&flags);
                let line = format!(
                    "{} FETCH (UID {} FLAGS ({flags}) MODSEQ ({m}))",
                    r.seq, r.uid
                );
                self.untagged(&line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_what_is_missing_below_uidnext() {
        assert_eq!(
            gaps(&[2, 3, 7], &[(1, u32::MAX)], 10),
            vec![(1, 1), (4, 6), (8, 9)]
        );
        assert_eq!(gaps(&[2, 3, 7], &[(3, 5)], 10), vec![(4, 5)]);
        assert_eq!(gaps(&[], &[(1, 5)], 1), vec![]);
        assert_eq!(gaps(&[1, 2, 3], &[(1, 3)], 4), vec![]);
        assert_eq!(
            gaps(&[5], &[(1, 2), (4, 9)], 7),
            vec![(1, 2), (4, 4), (6, 6)]
        );
    }

    #[test]
    fn ranges_merge_and_star_is_the_largest() {
        let set: SequenceSet = "5:3,1,4:*,20".try_into().unwrap();
        assert_eq!(ranges_of(&set, 9), vec![(1, 1), (3, 9), (20, 20)]);
        assert_eq!(crate::imap_wire::sequence_set(&[(1, 1), (3, 9)]), "1,3:9");
    }
}
