//! Per-user `\Seen` of shared messages, in memory. The rule and its
//! storage are `store::seen`'s: a user's read state is the baseline (the
//! upstream `\Seen` when per-user read state began) XOR the user's own
//! differences. A message has one read state per user wherever it is shown
//! (INBOX, a lead folder, a review queue): the state is keyed by the
//! message (mailbox generation and upstream UID), not by folder.
//!
//! Memory: one [`UserSeen`] per user with a live session, shared by all of
//! that user's sessions, loaded at login and dropped with the last session;
//! 10,000 idle sessions of 50 people hold 50 sets. A set is runs of UIDs
//! (8 bytes a run), so it is small when people read in runs.
//!
//! Writes of one user are serialised and reach memory only once durable,
//! so memory never shows a state a restart would lose.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock, Weak},
};

use crate::store::{
    seen::{SeenRows, UidRanges},
    Store, StoreError,
};

/// Mailbox generation -> UIDs.
type Sets = HashMap<u32, UidRanges>;

fn split(key: u64) -> (u32, u32) {
    ((key >> 32) as u32, (key & 0xffff_ffff) as u32)
}

/// One user's differences from the baseline, shared by their sessions.
#[derive(Debug)]
pub struct UserSeen {
    /// Small number naming the user in index events (`Change::Private`).
    pub id: u32,
    name: String,
    differs: RwLock<Sets>,
    /// One write of this user's state at a time, memory after disk.
    write: tokio::sync::Mutex<()>,
}

impl UserSeen {
    /// Runs and bytes this user's set holds in memory (for measurements).
    pub fn footprint(&self) -> (usize, usize) {
        let sets = self.differs.read().unwrap_or_else(|e| e.into_inner());
        let runs: usize = sets.values().map(UidRanges::runs).sum();
        (
            runs,
            std::mem::size_of::<UserSeen>() + self.name.len() + sets.len() * 40 + runs * 8,
        )
    }
}

#[derive(Default)]
struct Users {
    ids: HashMap<String, u32>,
    live: HashMap<u32, Weak<UserSeen>>,
}

pub struct ReadState {
    store: Store,
    /// `None` until the baseline is taken (first start, after the first
    /// sync); every message is then read as the upstream said.
    baseline: RwLock<Option<Arc<Sets>>>,
    users: Mutex<Users>,
    /// Loads one user at a time, so two sessions logging in at once share
    /// one set.
    loading: tokio::sync::Mutex<()>,
}

impl ReadState {
    pub fn load(store: Store) -> Result<ReadState, StoreError> {
        let baseline = store
            .seen_baseline()?
            .map(|rows| Arc::new(rows.into_iter().collect::<Sets>()));
        Ok(ReadState {
            store,
            baseline: RwLock::new(baseline),
            users: Mutex::default(),
            loading: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether the baseline has been taken.
    pub fn has_baseline(&self) -> bool {
        self.baseline
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Takes the baseline (once in the store's life): `seen` is what the
    /// upstream marks `\Seen` now, per generation.
    pub async fn take_baseline(&self, seen: Vec<(u32, Vec<u32>)>) -> Result<(), StoreError> {
        let rows: SeenRows = seen
            .into_iter()
            .map(|(gen, uids)| (gen, UidRanges::from_uids(uids)))
            .collect();
        let kept = self.store.seen_take_baseline(rows).await?;
        *self.baseline.write().unwrap_or_else(|e| e.into_inner()) =
            Some(Arc::new(kept.into_iter().collect()));
        Ok(())
    }

    /// The user's set, loaded on first use and shared while any session
    /// holds it. Generations not in `live` (mailboxes reset or gone) are
    /// dropped from memory and from the store.
    pub async fn user(&self, name: &str, live: &[u32]) -> Result<Arc<UserSeen>, StoreError> {
        if let Some(u) = self.live_user(name) {
            return Ok(u);
        }
        let _loading = self.loading.lock().await;
        if let Some(u) = self.live_user(name) {
            return Ok(u);
        }
        let rows = self.store.seen_load(name).await?;
        let (keep, dead): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(g, _)| live.contains(g));
        if !dead.is_empty() {
            let forget = dead
                .into_iter()
                .map(|(g, _)| (g, UidRanges::default()))
                .collect();
            self.store.seen_save(name, forget).await?;
        }
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let next = users.ids.len() as u32 + 1;
        let id = *users.ids.entry(name.to_owned()).or_insert(next);
        let user = Arc::new(UserSeen {
            id,
            name: name.to_owned(),
            differs: RwLock::new(keep.into_iter().collect()),
            write: tokio::sync::Mutex::new(()),
        });
        users.live.insert(id, Arc::downgrade(&user));
        users.live.retain(|_, w| w.strong_count() > 0);
        Ok(user)
    }

    fn live_user(&self, name: &str) -> Option<Arc<UserSeen>> {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users.live.get(users.ids.get(name)?)?.upgrade()
    }

    /// How many users' sets are in memory.
    pub fn loaded_users(&self) -> usize {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users.live.values().filter(|w| w.strong_count() > 0).count()
    }

    /// A reader of `user`'s state under one lock each, for many messages.
    pub fn reader<'a>(&'a self, user: &'a UserSeen) -> SeenReader<'a> {
        SeenReader {
            baseline: self
                .baseline
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            differs: user.differs.read().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Whether `user` has read the message `key`.
    pub fn is_seen(&self, user: &UserSeen, key: u64) -> bool {
        self.reader(user).is_seen(key)
    }

    /// Marks messages read (`seen`) or unread for `user` only, durably,
    /// and returns the keys whose state changed.
    pub async fn set(
        &self,
        user: &UserSeen,
        keys: &[u64],
        seen: bool,
    ) -> Result<Vec<u64>, StoreError> {
        let _write = user.write.lock().await;
        let baseline = self
            .baseline
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut by_gen: HashMap<u32, Vec<u32>> = HashMap::new();
        for &k in keys {
            let (gen, uid) = split(k);
            by_gen.entry(gen).or_default().push(uid);
        }
        let mut rows: SeenRows = Vec::new();
        let mut changed = Vec::new();
        {
            let differs = user.differs.read().unwrap_or_else(|e| e.into_inner());
            let empty = UidRanges::default();
            for (gen, uids) in by_gen {
                let base = baseline
                    .as_ref()
                    .and_then(|b| b.get(&gen))
                    .unwrap_or(&empty);
                let old = differs.get(&gen).unwrap_or(&empty);
                // A UID differs from the baseline exactly when the wanted
                // state is not the baseline's.
                let (differ, agree): (Vec<u32>, Vec<u32>) =
                    uids.iter().partition(|&&u| base.contains(u) != seen);
                for &u in &uids {
                    if (base.contains(u) ^ old.contains(u)) != seen {
                        changed.push((u64::from(gen) << 32) | u64::from(u));
                    }
                }
                let new = old
                    .union(&UidRanges::from_uids(differ))
                    .subtract(&UidRanges::from_uids(agree));
                if &new != old {
                    rows.push((gen, new));
                }
            }
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        self.store.seen_save(&user.name, rows.clone()).await?;
        let mut differs = user.differs.write().unwrap_or_else(|e| e.into_inner());
        for (gen, new) in rows {
            if new.is_empty() {
                differs.remove(&gen);
            } else {
                differs.insert(gen, new);
            }
        }
        changed.sort_unstable();
        changed.dedup();
        Ok(changed)
    }
}

/// `ReadState::reader`: holds the user's set for reading.
pub struct SeenReader<'a> {
    baseline: Option<Arc<Sets>>,
    differs: std::sync::RwLockReadGuard<'a, Sets>,
}

impl SeenReader<'_> {
    pub fn is_seen(&self, key: u64) -> bool {
        let (gen, uid) = split(key);
        let base = self
            .baseline
            .as_ref()
            .and_then(|b| b.get(&gen))
            .is_some_and(|r| r.contains(uid));
        let differs = self.differs.get(&gen).is_some_and(|r| r.contains(uid));
        base ^ differs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(gen: u32, uid: u32) -> u64 {
        (u64::from(gen) << 32) | u64::from(uid)
    }

    #[tokio::test]
    async fn read_state_is_each_users_own_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        let rs = ReadState::load(store.clone()).unwrap();
        // The upstream had read UIDs 1 and 2 of generation 7 at the start.
        rs.take_baseline(vec![(7, vec![1, 2])]).await.unwrap();
        let alice = rs.user("alice", &[7]).await.unwrap();
        let bob = rs.user("bob", &[7]).await.unwrap();
        let alice2 = rs.user("alice", &[7]).await.unwrap();
        assert!(
            Arc::ptr_eq(&alice, &alice2),
            "one set per user, not per session"
        );
        assert_ne!(alice.id, bob.id);
        assert_eq!(rs.loaded_users(), 2);

        assert!(rs.is_seen(&alice, key(7, 1)) && !rs.is_seen(&alice, key(7, 3)));
        // alice reads 3 and marks 1 unread; bob is untouched.
        let changed = rs.set(&alice, &[key(7, 3), key(7, 2)], true).await.unwrap();
        assert_eq!(changed, vec![key(7, 3)], "2 was read already");
        assert_eq!(
            rs.set(&alice, &[key(7, 1)], false).await.unwrap(),
            vec![key(7, 1)]
        );
        let r = rs.reader(&alice);
        assert!(!r.is_seen(key(7, 1)) && r.is_seen(key(7, 2)) && r.is_seen(key(7, 3)));
        drop(r);
        let r = rs.reader(&bob);
        assert!(r.is_seen(key(7, 1)) && r.is_seen(key(7, 2)) && !r.is_seen(key(7, 3)));
        drop(r);
        // Back to the baseline costs nothing.
        rs.set(&alice, &[key(7, 1)], true).await.unwrap();

        drop((alice, alice2, bob));
        assert_eq!(rs.loaded_users(), 0, "the last session lets go of the set");
        drop(rs);
        store.close();
        drop(store);
        let store = Store::open(&path).unwrap();
        let rs = ReadState::load(store).unwrap();
        let alice = rs.user("alice", &[7]).await.unwrap();
        assert_eq!(alice.footprint().0, 1, "one run: UID 3");
        let r = rs.reader(&alice);
        assert!(r.is_seen(key(7, 1)) && r.is_seen(key(7, 2)) && r.is_seen(key(7, 3)));
        drop(r);
        // A generation that is gone (UIDVALIDITY changed) is forgotten.
        let alice_gone = {
            drop(alice);
            rs.user("alice", &[8]).await.unwrap()
        };
        assert!(!rs.is_seen(&alice_gone, key(7, 3)));
        assert_eq!(alice_gone.footprint().0, 0);
    }
}
