//! Modification sequences for CONDSTORE/QRESYNC (RFC 7162), per user and
//! folder as that user sees it.
//!
//! What a user sees of a message (its flags: the user's own `\Seen`, the
//! lead keywords computed for them, the upstream's flags) is not stored
//! anywhere as such, and much of it changes without a write (a follow-up
//! date passing, a lead changing owner). So leadgate does not count writes:
//! it remembers, per (user, folder, UID), a digest of the flags it last
//! showed and the modseq it gave them. A *sweep* compares the flags a
//! session computes now with those digests; every message whose digest
//! differs, and every new one, gets a new modseq, and messages gone from
//! the folder are dropped (an expunge raises HIGHESTMODSEQ too). Sweeps run
//! when a client asks for modseqs (SELECT with CONDSTORE, STATUS
//! HIGHESTMODSEQ, FETCH MODSEQ or CHANGEDSINCE, flag updates while
//! selected), so a client that never enables CONDSTORE costs nothing.
//!
//! A new modseq is `max(highest + 1, now in microseconds)`: it never goes
//! back, also after a restore from an older backup, as long as the clock
//! does not go back further than the backup's age.
//!
//! Sweeps are idempotent: several sessions of one user seeing the same
//! change give it one modseq (the second finds the digest already stored).

use std::collections::HashMap;

use redb::ReadableTable;

use super::{
    changes::WriteTxn,
    schema::{MODSEQ_HEADS, MODSEQ_ROWS},
    Store, StoreError,
};

/// What a sweep found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sweep {
    /// The folder's HIGHESTMODSEQ for this user, after the sweep.
    pub highest: u64,
    /// The modseq of each swept message, in the order given.
    pub modseqs: Vec<u64>,
}

/// The digest of a flag list, independent of order and of the Rust
/// release (it is stored): the first 8 bytes of SHA-256 over the sorted,
/// lower-cased flags.
pub fn flags_digest<'a>(flags: impl IntoIterator<Item = &'a str>) -> u64 {
    use sha2::{Digest, Sha256};
    let mut v: Vec<String> = flags.into_iter().map(|f| f.to_ascii_lowercase()).collect();
    v.sort_unstable();
    v.dedup();
    let mut h = Sha256::new();
    for f in &v {
        h.update(f.as_bytes());
        h.update([0u8]);
    }
    let out = h.finalize();
    u64::from_le_bytes(out[..8].try_into().unwrap_or([0; 8]))
}

/// What to write: the same comparison runs on a read snapshot (nothing to
/// write: no write transaction) and again inside the write.
struct Plan {
    /// The stored head, when its UIDVALIDITY matches.
    head: Option<u64>,
    /// Stored rows of the swept UIDs (or of the whole folder).
    rows: HashMap<u32, (u64, u64)>,
    /// Rows to drop: UIDs gone from the folder (whole sweeps only), or
    /// every row after a UIDVALIDITY change.
    gone: Vec<u32>,
}

impl Plan {
    fn read(
        heads: &impl ReadableTable<(&'static str, &'static str), (u32, u64)>,
        rows: &impl ReadableTable<(&'static str, &'static str, u32), (u64, u64)>,
        user: &str,
        folder: &str,
        uidvalidity: u32,
        items: &[(u32, u64)],
        whole: bool,
    ) -> Result<Plan, StoreError> {
        let stored = heads.get((user, folder))?.map(|v| v.value());
        let valid = stored.is_some_and(|(v, _)| v == uidvalidity);
        let mut found = HashMap::new();
        let mut gone = Vec::new();
        if whole || !valid {
            for row in rows.range((user, folder, 0)..=(user, folder, u32::MAX))? {
                let (k, v) = row?;
                let uid = k.value().2;
                found.insert(uid, v.value());
            }
            let present: std::collections::HashSet<u32> = items.iter().map(|(u, _)| *u).collect();
            gone = found
                .keys()
                .copied()
                .filter(|u| !valid || (whole && !present.contains(u)))
                .collect();
            if !valid {
                found.clear();
            }
        } else {
            for (uid, _) in items {
                if let Some(v) = rows.get((user, folder, *uid))? {
                    found.insert(*uid, v.value());
                }
            }
        }
        Ok(Plan {
            head: stored.filter(|_| valid).map(|(_, h)| h),
            rows: found,
            gone,
        })
    }

    fn is_settled(&self, items: &[(u32, u64)]) -> bool {
        self.head.is_some()
            && self.gone.is_empty()
            && items
                .iter()
                .all(|(uid, d)| self.rows.get(uid).is_some_and(|(stored, _)| stored == d))
    }

    fn answer(&self, items: &[(u32, u64)]) -> Sweep {
        let highest = self.head.unwrap_or(0);
        Sweep {
            highest,
            modseqs: items
                .iter()
                .map(|(uid, _)| self.rows.get(uid).map_or(highest, |(_, m)| *m))
                .collect(),
        }
    }
}

fn apply(
    txn: &WriteTxn,
    user: &str,
    folder: &str,
    uidvalidity: u32,
    items: &[(u32, u64)],
    whole: bool,
    now_us: u64,
) -> Result<Sweep, StoreError> {
    let mut heads = txn.open_table(MODSEQ_HEADS)?;
    let mut rows = txn.open_table(MODSEQ_ROWS)?;
    let mut plan = Plan::read(&*heads, &*rows, user, folder, uidvalidity, items, whole)?;
    if plan.is_settled(items) {
        return Ok(plan.answer(items));
    }
    // Any earlier head of this (user, folder), whatever its UIDVALIDITY:
    // a modseq never goes back.
    let before = heads.get((user, folder))?.map_or(0, |v| v.value().1);
    let next = before.saturating_add(1).max(now_us);
    for uid in &plan.gone {
        rows.remove((user, folder, *uid))?;
        plan.rows.remove(uid);
    }
    for &(uid, digest) in items {
        if plan.rows.get(&uid).is_none_or(|(d, _)| *d != digest) {
            rows.insert((user, folder, uid), (digest, next))?;
            plan.rows.insert(uid, (digest, next));
        }
    }
    heads.insert((user, folder), (uidvalidity, next))?;
    plan.head = Some(next);
    Ok(plan.answer(items))
}

impl Store {
    /// Compares `items` ((UID, flags digest) of messages as `user` sees them
    /// now in `folder`) with what was last recorded, and gives every changed
    /// or new message a new modseq. `whole`: `items` is the whole folder, so
    /// recorded UIDs not among them are gone. Writes only when something
    /// changed.
    pub async fn modseq_sweep(
        &self,
        user: &str,
        folder: &str,
        uidvalidity: u32,
        items: Vec<(u32, u64)>,
        whole: bool,
        now_us: u64,
    ) -> Result<Sweep, StoreError> {
        let (u, f) = (user.to_owned(), folder.to_owned());
        let (items, settled) = {
            let (u, f) = (u.clone(), f.clone());
            self.read_async(move |txn| {
                let heads = match txn.open_table(MODSEQ_HEADS) {
                    Ok(t) => t,
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok((items, None)),
                    Err(e) => return Err(e.into()),
                };
                let rows = txn.open_table(MODSEQ_ROWS)?;
                let plan = Plan::read(&heads, &rows, &u, &f, uidvalidity, &items, whole)?;
                let settled = plan.is_settled(&items).then(|| plan.answer(&items));
                Ok((items, settled))
            })
            .await?
        };
        if let Some(sweep) = settled {
            return Ok(sweep);
        }
        self.write(move |txn| apply(txn, &u, &f, uidvalidity, &items, whole, now_us))
            .await
    }

    /// Forgets `user`'s modseqs of `folder` (deleted or renamed; a folder
    /// made again under the name starts above the old values anyway, since
    /// modseqs follow the clock).
    pub async fn modseq_forget(&self, user: &str, folder: &str) -> Result<(), StoreError> {
        let (user, folder) = (user.to_owned(), folder.to_owned());
        self.write(move |txn| {
            let (u, f) = (user.as_str(), folder.as_str());
            txn.open_table(MODSEQ_HEADS)?.remove((u, f))?;
            let mut rows = txn.open_table(MODSEQ_ROWS)?;
            let uids: Vec<u32> = rows
                .range((u, f, 0)..=(u, f, u32::MAX))?
                .filter_map(|r| r.ok())
                .map(|(k, _)| k.value().2)
                .collect();
            for uid in uids {
                rows.remove((u, f, uid))?;
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        (dir, store)
    }

    #[test]
    fn the_digest_ignores_order_and_case() {
        assert_eq!(
            flags_digest(["\\Seen", "$Lead_Mine"]),
            flags_digest(["$lead_mine", "\\SEEN"])
        );
        assert_ne!(flags_digest(["\\Seen"]), flags_digest(["\\Flagged"]));
        assert_ne!(flags_digest([]), flags_digest(["\\Seen"]));
    }

    #[tokio::test]
    async fn only_what_changed_gets_a_new_modseq_and_nothing_goes_back() {
        let (_d, s) = store();
        let a = flags_digest(["\\Seen"]);
        let b = flags_digest([]);
        let items = vec![(1, a), (2, b), (3, b)];
        let first = s
            .modseq_sweep("alice", "INBOX", 7, items.clone(), true, 1000)
            .await
            .unwrap();
        assert_eq!(first.highest, 1000);
        assert_eq!(first.modseqs, vec![1000, 1000, 1000]);
        // Nothing changed: same answer, and the clock is not read.
        let again = s
            .modseq_sweep("alice", "INBOX", 7, items.clone(), true, 5000)
            .await
            .unwrap();
        assert_eq!(again, first);
        // Message 2 read: only it moves. The clock went back: still up.
        let changed = vec![(1, a), (2, a), (3, b)];
        let second = s
            .modseq_sweep("alice", "INBOX", 7, changed.clone(), false, 10)
            .await
            .unwrap();
        assert_eq!(second.highest, 1001);
        assert_eq!(second.modseqs, vec![1000, 1001, 1000]);
        // Another user has their own clock.
        let bob = s
            .modseq_sweep("bob", "INBOX", 7, changed.clone(), true, 2000)
            .await
            .unwrap();
        assert_eq!(bob.highest, 2000);
        // Message 3 expunged: the head moves, 3's row goes.
        let third = s
            .modseq_sweep("alice", "INBOX", 7, vec![(1, a), (2, a)], true, 3000)
            .await
            .unwrap();
        assert_eq!(third.highest, 3000);
        assert_eq!(third.modseqs, vec![1000, 1001]);
        // A new UIDVALIDITY: every message is new, above every old value.
        let reset = s
            .modseq_sweep("alice", "INBOX", 8, vec![(1, a)], false, 0)
            .await
            .unwrap();
        assert_eq!(reset.highest, 3001);
        assert_eq!(reset.modseqs, vec![3001]);
        // A deleted folder is forgotten; made again, it starts above.
        s.modseq_forget("alice", "INBOX").await.unwrap();
        let fresh = s
            .modseq_sweep("alice", "INBOX", 8, vec![(1, a)], true, 4000)
            .await
            .unwrap();
        assert_eq!(fresh.highest, 4000);
    }

    #[tokio::test]
    async fn a_partial_sweep_does_not_drop_what_it_did_not_see() {
        let (_d, s) = store();
        let d = flags_digest([]);
        s.modseq_sweep("u", "F", 1, vec![(1, d), (2, d), (3, d)], true, 100)
            .await
            .unwrap();
        let part = s
            .modseq_sweep("u", "F", 1, vec![(2, d)], false, 200)
            .await
            .unwrap();
        assert_eq!(part.highest, 100, "nothing changed");
        let whole = s
            .modseq_sweep("u", "F", 1, vec![(1, d), (2, d), (3, d)], true, 300)
            .await
            .unwrap();
        assert_eq!(whole.highest, 100, "rows 1 and 3 are still there");
    }
}
