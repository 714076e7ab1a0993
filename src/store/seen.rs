//! Per-user read state of shared messages (`\Seen` as each person's own,
//! like Dovecot's private flags). The upstream's `\Seen` of a shared
//! message is never written by leadgate; what each user sees is
//!
//! ```text
//! seen(user, message) = baseline(message) XOR differs(user, message)
//! ```
//!
//! - the *baseline* is the upstream `\Seen` of every shared message at the
//!   moment per-user read state began (taken once, META `seen_baseline`),
//!   stored under the user `*` (no user name can be `*`);
//! - `differs` is, per user and per mailbox generation, the UIDs whose read
//!   state differs from the baseline.
//!
//! Both are [`UidRanges`]: sorted runs of UIDs, as an IMAP sequence set
//! would write them. UIDs of one mailbox are dense and people read in
//! runs, so "read everything since Monday" is one run of 8 bytes, whatever
//! the mailbox's size; the worst case (every other message) is 4 bytes a
//! message. One row per (user, generation), rewritten whole on change.

use super::changes::WriteTxn;
use redb::ReadableTable;

use super::{
    schema::{meta_u64, META, SEEN},
    Store, StoreError,
};

/// The user name the baseline is stored under.
const BASELINE: &str = "*";

/// A set of UIDs as sorted, disjoint, non-adjacent inclusive runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UidRanges(Vec<(u32, u32)>);

impl UidRanges {
    /// The set of these UIDs (any order, repeats allowed).
    pub fn from_uids(uids: impl IntoIterator<Item = u32>) -> UidRanges {
        let mut v: Vec<u32> = uids.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for u in v {
            match runs.last_mut() {
                Some((_, end)) if u64::from(*end) + 1 == u64::from(u) => *end = u,
                _ => runs.push((u, u)),
            }
        }
        UidRanges(runs)
    }

    pub fn contains(&self, uid: u32) -> bool {
        let i = self.0.partition_point(|&(start, _)| start <= uid);
        i > 0 && self.0[i - 1].1 >= uid
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many runs (each costs 8 bytes in memory and on disk).
    pub fn runs(&self) -> usize {
        self.0.len()
    }

    /// How many UIDs.
    pub fn count(&self) -> u64 {
        self.0
            .iter()
            .map(|&(s, e)| u64::from(e) - u64::from(s) + 1)
            .sum()
    }

    /// Every UID in both, in O((n + m) log(n + m)).
    pub fn union(&self, other: &UidRanges) -> UidRanges {
        let mut all: Vec<(u32, u32)> = self.0.iter().chain(other.0.iter()).copied().collect();
        all.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(all.len());
        for (s, e) in all {
            match out.last_mut() {
                Some((_, end)) if u64::from(s) <= u64::from(*end) + 1 => *end = (*end).max(e),
                _ => out.push((s, e)),
            }
        }
        UidRanges(out)
    }

    /// The UIDs of `self` that are not in `other`, in one pass over both.
    pub fn subtract(&self, other: &UidRanges) -> UidRanges {
        let mut out = Vec::with_capacity(self.0.len());
        let mut j = 0;
        for &(s, e) in &self.0 {
            while j < other.0.len() && other.0[j].1 < s {
                j += 1;
            }
            // The next UID of (s, e) not yet cut or kept.
            let mut cur = u64::from(s);
            let end = u64::from(e);
            let mut k = j;
            while k < other.0.len() && u64::from(other.0[k].0) <= end {
                let (bs, be) = (u64::from(other.0[k].0), u64::from(other.0[k].1));
                if bs > cur {
                    out.push((cur as u32, (bs - 1) as u32));
                }
                cur = cur.max(be + 1);
                if cur > end {
                    break;
                }
                k += 1;
            }
            if cur <= end {
                out.push((cur as u32, e));
            }
        }
        UidRanges(out)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.len() * 8);
        for &(s, e) in &self.0 {
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&e.to_le_bytes());
        }
        out
    }

    /// Decodes what `encode` wrote; anything else (a cut-off row, runs out
    /// of order) is corrupt.
    fn decode(bytes: &[u8]) -> Result<UidRanges, StoreError> {
        if !bytes.len().is_multiple_of(8) {
            return Err(StoreError::corrupt("seen", "not a whole number of runs"));
        }
        let mut runs: Vec<(u32, u32)> = Vec::with_capacity(bytes.len() / 8);
        for c in bytes.chunks_exact(8) {
            let s = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let e = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            let ordered = runs
                .last()
                .is_none_or(|&(_, pe)| u64::from(s) > u64::from(pe) + 1);
            if s > e || !ordered {
                return Err(StoreError::corrupt("seen", "runs out of order"));
            }
            runs.push((s, e));
        }
        Ok(UidRanges(runs))
    }
}

/// One user's rows (or the baseline's): mailbox generation -> UIDs.
pub type SeenRows = Vec<(u32, UidRanges)>;

fn rows_of(
    table: &impl ReadableTable<(&'static str, u32), &'static [u8]>,
    user: &str,
) -> Result<SeenRows, StoreError> {
    let mut out = Vec::new();
    for row in table.range((user, 0u32)..=(user, u32::MAX))? {
        let (k, v) = row?;
        out.push((k.value().1, UidRanges::decode(v.value())?));
    }
    Ok(out)
}

fn load_rows(txn: &redb::ReadTransaction, user: &str) -> Result<SeenRows, StoreError> {
    match txn.open_table(SEEN) {
        Ok(t) => rows_of(&t, user),
        // A store last written by an older version, opened read-only.
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

fn save_rows(txn: &WriteTxn, user: &str, rows: &[(u32, UidRanges)]) -> Result<(), StoreError> {
    let mut table = txn.open_table(SEEN)?;
    for (gen, uids) in rows {
        if uids.is_empty() {
            table.remove((user, *gen))?;
        } else {
            table.insert((user, *gen), uids.encode().as_slice())?;
        }
    }
    Ok(())
}

impl Store {
    /// The baseline, or `None` before it was taken.
    pub fn seen_baseline(&self) -> Result<Option<SeenRows>, StoreError> {
        self.read(|txn| {
            let meta = txn.open_table(META)?;
            if meta_u64(&meta, "seen_baseline")?.is_none() {
                return Ok(None);
            }
            load_rows(txn, BASELINE).map(Some)
        })
    }

    /// Takes the baseline once: writes `rows` unless one was taken before,
    /// and returns the baseline in force.
    pub async fn seen_take_baseline(&self, rows: SeenRows) -> Result<SeenRows, StoreError> {
        self.write(move |txn| {
            let mut meta = txn.open_table(META)?;
            if meta_u64(&meta, "seen_baseline")?.is_some() {
                drop(meta);
                return rows_of(&txn.open_table(SEEN)?, BASELINE);
            }
            meta.insert("seen_baseline", 1u64.to_le_bytes().as_slice())?;
            drop(meta);
            save_rows(txn, BASELINE, &rows)?;
            Ok(rows.clone())
        })
        .await
    }

    /// A user's rows: per mailbox generation, the UIDs whose read state
    /// differs from the baseline.
    pub async fn seen_load(&self, user: &str) -> Result<SeenRows, StoreError> {
        if user == BASELINE {
            return Err(StoreError::corrupt("seen", "`*` is not a user"));
        }
        let user = user.to_owned();
        self.read_async(move |txn| load_rows(txn, &user)).await
    }

    /// Replaces some of a user's rows (an empty set removes its row).
    pub async fn seen_save(&self, user: &str, rows: SeenRows) -> Result<(), StoreError> {
        if user == BASELINE {
            return Err(StoreError::corrupt("seen", "`*` is not a user"));
        }
        let user = user.to_owned();
        self.write(move |txn| save_rows(txn, &user, &rows)).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn model(r: &UidRanges) -> BTreeSet<u32> {
        r.0.iter().flat_map(|&(s, e)| s..=e).collect()
    }

    /// Runs stay sorted, disjoint and non-adjacent.
    fn canonical(r: &UidRanges) -> bool {
        r.0.windows(2)
            .all(|w| u64::from(w[0].1) + 1 < u64::from(w[1].0))
            && r.0.iter().all(|&(s, e)| s <= e)
    }

    #[test]
    fn union_and_subtract_agree_with_a_plain_set() {
        // A property test against BTreeSet, seeded: 2,000 random pairs of
        // sets over a small universe (so runs touch and overlap often),
        // plus the edges of the UID space.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..2000 {
            let base = if round % 10 == 0 { u32::MAX - 40 } else { 1 };
            let mut pick = |n: u64| -> Vec<u32> {
                (0..next() % n)
                    .map(|_| base + (next() % 40) as u32)
                    .collect()
            };
            let (a, b) = (pick(30), pick(30));
            let (ra, rb) = (
                UidRanges::from_uids(a.clone()),
                UidRanges::from_uids(b.clone()),
            );
            let (ma, mb): (BTreeSet<u32>, BTreeSet<u32>) =
                (a.into_iter().collect(), b.into_iter().collect());
            assert_eq!(model(&ra), ma);
            let u = ra.union(&rb);
            let d = ra.subtract(&rb);
            assert!(canonical(&u) && canonical(&d), "{ra:?} {rb:?}");
            assert_eq!(model(&u), &ma | &mb);
            assert_eq!(model(&d), &ma - &mb);
            assert_eq!(u.count(), (&ma | &mb).len() as u64);
            for probe in base..base.saturating_add(40) {
                assert_eq!(ra.contains(probe), ma.contains(&probe));
            }
            assert_eq!(UidRanges::decode(&u.encode()).unwrap(), u);
        }
    }

    #[test]
    fn a_run_of_reads_costs_one_run() {
        let r = UidRanges::from_uids(1..=10_000);
        assert_eq!((r.runs(), r.count()), (1, 10_000));
        let holes = r.subtract(&UidRanges::from_uids([5, 6, 9_999]));
        assert_eq!(holes.runs(), 3);
        assert!(!holes.contains(5) && holes.contains(7) && holes.contains(10_000));
        assert!(UidRanges::decode(&[1, 2, 3]).is_err());
        // Out of order or overlapping runs are corrupt, not misread.
        let mut bad = UidRanges(vec![(5, 9)]).encode();
        bad.extend(UidRanges(vec![(7, 12)]).encode());
        assert!(UidRanges::decode(&bad).is_err());
    }

    #[tokio::test]
    async fn the_baseline_is_taken_once_and_rows_are_per_user() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        assert_eq!(store.seen_baseline().unwrap(), None);
        let first = vec![(3, UidRanges::from_uids([1, 2, 3]))];
        assert_eq!(
            store.seen_take_baseline(first.clone()).await.unwrap(),
            first
        );
        let again = vec![(3, UidRanges::from_uids([9]))];
        assert_eq!(
            store.seen_take_baseline(again).await.unwrap(),
            first,
            "a second start keeps the first baseline"
        );
        assert_eq!(store.seen_baseline().unwrap(), Some(first));

        let alice = vec![
            (3, UidRanges::from_uids([4])),
            (5, UidRanges::from_uids([1])),
        ];
        store.seen_save("alice", alice.clone()).await.unwrap();
        assert_eq!(store.seen_load("alice").await.unwrap(), alice);
        assert!(store.seen_load("alic").await.unwrap().is_empty());
        assert!(store.seen_load("alicex").await.unwrap().is_empty());
        store
            .seen_save("alice", vec![(3, UidRanges::default())])
            .await
            .unwrap();
        assert_eq!(
            store.seen_load("alice").await.unwrap(),
            vec![(5, UidRanges::from_uids([1]))]
        );
        assert!(store.seen_load("*").await.is_err());
        assert!(store.seen_save("*", Vec::new()).await.is_err());
    }
}
