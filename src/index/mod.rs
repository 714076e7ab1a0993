//! The message index: what leadgate knows of each upstream mailbox, kept in
//! memory for serving and in redb for restarts. The sync side writes
//! (`reset`, `apply`); sessions read (`with_mailbox`) and follow changes
//! through a bounded event log plus a version watch, so 10,000 idle clients
//! cost a `watch::Receiver` each and no upstream connection. `seen` holds
//! each user's own `\Seen` of shared messages.

pub mod seen;

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex, RwLock},
};

use tokio::sync::watch;

use crate::store::{
    messages::{MailboxRecord, MessageMeta, MessageRecord, MessageWrite},
    Store, StoreError,
};

/// One message as the index knows it.
#[derive(Debug, Clone)]
pub struct Msg {
    pub uid: u32,
    pub flags: Vec<Box<str>>,
    pub modseq: u64,
    pub meta: Arc<MessageMeta>,
}

impl Msg {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }
}

#[derive(Debug, Clone)]
pub struct Mailbox {
    pub rec: MailboxRecord,
    pub msgs: BTreeMap<u32, Msg>,
}

/// Mailboxes by generation (see `Index::with_gens`).
pub struct Gens<'a>(HashMap<u32, &'a Mailbox>);

impl<'a> Gens<'a> {
    pub fn get(&self, gen: u32) -> Option<&'a Mailbox> {
        self.0.get(&gen).copied()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    Flags,
    /// The mailbox's generation ended (UIDVALIDITY change or deletion).
    Reset,
    /// Flags changed for one user only (their read state): the user's
    /// `UserSeen::id`. Other users' sessions ignore it.
    Private(u32),
}

#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub seq: u64,
    pub gen: u32,
    pub uid: u32,
    pub change: Change,
}

/// The session fell behind the event log and must compare whole state.
#[derive(Debug)]
pub struct Lagged;

const EVENT_LOG_CAPACITY: usize = 200_000;

struct EventLog {
    events: VecDeque<Event>,
    next_seq: u64,
}

/// Limits of the local body cache.
#[derive(Debug, Clone, Copy)]
pub struct BodyCache {
    /// Total bytes kept; 0 disables the cache.
    pub budget: u64,
    /// Larger messages are never cached.
    pub max_message: u64,
}

impl BodyCache {
    /// The limits `[store]` sets.
    pub fn of(config: &crate::store::config::StoreConfig) -> BodyCache {
        BodyCache {
            budget: config.body_cache_mib * 1024 * 1024,
            max_message: config.body_cache_max_message_kib * 1024,
        }
    }

    /// Whether a message of `size` bytes goes into the cache.
    pub fn admits(&self, size: u32) -> bool {
        self.budget > 0 && u64::from(size) <= self.max_message.min(self.budget)
    }
}

pub struct Index {
    store: Store,
    pub cache: BodyCache,
    /// Each user's `\Seen` of shared messages.
    pub seen: seen::ReadState,
    mailboxes: RwLock<HashMap<String, Mailbox>>,
    log: Mutex<EventLog>,
    version: watch::Sender<u64>,
    /// One sync at a time per mailbox; readers that need a settled state
    /// (SELECT) wait on the same lock.
    sync_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Mailboxes sessions have selected, with how many sessions, for the
    /// freshness check (private folders have no IDLE watcher).
    selected: Arc<Mutex<HashMap<String, usize>>>,
    /// `\Recent` (RFC 3501 2.3.2): per mailbox generation, the lowest UID
    /// no session has claimed yet. Kept in memory: after a restart only
    /// mail that arrives later is recent.
    recent: Mutex<HashMap<u32, u32>>,
    /// Message keys `contact erase` took out: never indexed again.
    erased: RwLock<HashSet<u64>>,
}

/// A session's hold on a selected mailbox (see `Index::hold_selected`);
/// dropping it lets go.
#[derive(Debug)]
pub struct SelectedHold {
    name: String,
    selected: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for SelectedHold {
    fn drop(&mut self) {
        let mut selected = self.selected.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = selected.get_mut(&self.name) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                selected.remove(&self.name);
            }
        }
    }
}

impl Index {
    /// Rebuilds the in-memory index from the store.
    pub fn load(store: Store, cache: BodyCache) -> Result<Index, StoreError> {
        let mut mailboxes = HashMap::new();
        let mut recent = HashMap::new();
        for (rec, records) in store.load_index()? {
            let next = records.iter().map(|r| r.uid).max().map_or(1, |u| u + 1);
            recent.insert(rec.gen, next);
            let msgs = records
                .into_iter()
                .map(|r| {
                    (
                        r.uid,
                        Msg {
                            uid: r.uid,
                            flags: r.flags,
                            modseq: r.modseq,
                            meta: r.meta,
                        },
                    )
                })
                .collect();
            mailboxes.insert(rec.name.clone(), Mailbox { rec, msgs });
        }
        let erased = RwLock::new(store.erased_messages()?);
        Ok(Index {
            seen: seen::ReadState::load(store.clone())?,
            store,
            cache,
            mailboxes: RwLock::new(mailboxes),
            log: Mutex::new(EventLog {
                events: VecDeque::new(),
                next_seq: 1,
            }),
            version: watch::channel(0).0,
            sync_locks: Mutex::new(HashMap::new()),
            selected: Arc::default(),
            recent: Mutex::new(recent),
            erased,
        })
    }

    /// Claims `\Recent` for one session: UIDs below `upto` that no session
    /// has claimed are this session's. Returns the lowest such UID (`upto`
    /// when there is none).
    pub fn claim_recent(&self, gen: u32, upto: u32) -> u32 {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let floor = recent.entry(gen).or_insert(upto);
        let from = (*floor).min(upto);
        *floor = (*floor).max(upto);
        from
    }

    /// The lowest unclaimed UID of a generation: what EXAMINE and STATUS
    /// report as recent without claiming it.
    pub fn recent_floor(&self, gen: u32) -> u32 {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.get(&gen).copied().unwrap_or(u32::MAX)
    }

    /// Marks `name` as selected by a session for as long as the hold
    /// lives, so the freshness check keeps it current.
    pub fn hold_selected(&self, name: &str) -> SelectedHold {
        let mut selected = self.selected.lock().unwrap_or_else(|e| e.into_inner());
        *selected.entry(name.to_owned()).or_default() += 1;
        SelectedHold {
            name: name.to_owned(),
            selected: self.selected.clone(),
        }
    }

    /// Mailboxes some session holds selected, in name order.
    pub fn selected_folders(&self) -> Vec<String> {
        let selected = self.selected.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = selected.keys().cloned().collect();
        names.sort();
        names
    }

    /// Held while a mailbox is being synced; take it to wait for a sync
    /// (e.g. a re-index after UIDVALIDITY changed) to finish.
    pub async fn sync_guard(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.sync_locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(name.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// `user`'s read state, loaded on first use and shared by their
    /// sessions.
    pub async fn user_seen(&self, user: &str) -> Result<Arc<seen::UserSeen>, StoreError> {
        let live: Vec<u32> = {
            let guard = self.mailboxes.read().unwrap_or_else(|e| e.into_inner());
            guard.values().map(|m| m.rec.gen).collect()
        };
        self.seen.user(user, &live).await
    }

    /// Takes the read-state baseline once in the store's life: the
    /// upstream `\Seen` of the messages of `folders` (the shared ones) as
    /// indexed now. Later calls change nothing.
    pub async fn take_seen_baseline(&self, folders: &[String]) -> Result<(), StoreError> {
        if self.seen.has_baseline() {
            return Ok(());
        }
        let seen: Vec<(u32, Vec<u32>)> = folders
            .iter()
            .filter_map(|name| {
                self.with_mailbox(name, |m| {
                    let uids = m
                        .msgs
                        .values()
                        .filter(|msg| msg.has_flag("\\Seen"))
                        .map(|msg| msg.uid)
                        .collect();
                    (m.rec.gen, uids)
                })
            })
            .collect();
        self.seen.take_baseline(seen).await
    }

    /// Runs `f` on a mailbox under the read lock. Keep `f` short: copy out
    /// what you need and do the slow work after.
    pub fn with_mailbox<R>(&self, name: &str, f: impl FnOnce(&Mailbox) -> R) -> Option<R> {
        let guard = self.mailboxes.read().unwrap_or_else(|e| e.into_inner());
        guard.get(name).map(f)
    }

    pub fn mailbox_record(&self, name: &str) -> Option<MailboxRecord> {
        self.with_mailbox(name, |m| m.rec.clone())
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The sequence number of the newest event (0 when none yet).
    pub fn current_seq(&self) -> u64 {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.next_seq - 1
    }

    /// Events of one generation newer than `after`.
    pub fn events_since(&self, after: u64, gen: u32) -> Result<(Vec<Event>, u64), Lagged> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let newest = log.next_seq - 1;
        let oldest = log.events.front().map(|e| e.seq).unwrap_or(log.next_seq);
        if after + 1 < oldest {
            return Err(Lagged);
        }
        let skip = (after + 1).saturating_sub(oldest) as usize;
        let events = log
            .events
            .iter()
            .skip(skip)
            .filter(|e| e.gen == gen)
            .copied()
            .collect();
        Ok((events, newest))
    }

    /// Runs `f` with a lookup of mailboxes by generation, under one lock
    /// (for resolving many message keys at once).
    pub fn with_gens<R>(&self, f: impl FnOnce(&Gens<'_>) -> R) -> R {
        let guard = self.mailboxes.read().unwrap_or_else(|e| e.into_inner());
        f(&Gens(guard.values().map(|m| (m.rec.gen, m)).collect()))
    }

    /// Publishes events of other scopes (virtual folders share the log, with
    /// ids from the same number space as generations).
    pub fn publish(&self, events: impl IntoIterator<Item = (u32, u32, Change)>) {
        let newest = {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            for (gen, uid, change) in events {
                let seq = log.next_seq;
                log.next_seq += 1;
                log.events.push_back(Event {
                    seq,
                    gen,
                    uid,
                    change,
                });
                if log.events.len() > EVENT_LOG_CAPACITY {
                    log.events.pop_front();
                }
            }
            log.next_seq - 1
        };
        self.version.send_replace(newest);
    }

    /// Starts a new generation for `name` (first sight, or UIDVALIDITY
    /// changed): the old messages are gone for every session.
    pub async fn reset(&self, name: &str, uidvalidity: u32) -> Result<MailboxRecord, StoreError> {
        let rec = self.store.mailbox_reset(name, uidvalidity).await?;
        // Every message of a new generation is new to every session.
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rec.gen, 1);
        let old = {
            let mut guard = self.mailboxes.write().unwrap_or_else(|e| e.into_inner());
            guard.insert(
                name.to_owned(),
                Mailbox {
                    rec: rec.clone(),
                    msgs: BTreeMap::new(),
                },
            )
        };
        if let Some(old) = old {
            self.publish([(old.rec.gen, 0, Change::Reset)]);
        }
        Ok(rec)
    }

    /// Drops a mailbox that is gone upstream.
    pub async fn forget(&self, name: &str) -> Result<(), StoreError> {
        self.store.mailbox_forget(name).await?;
        let old = {
            let mut guard = self.mailboxes.write().unwrap_or_else(|e| e.into_inner());
            guard.remove(name)
        };
        if let Some(old) = old {
            self.publish([(old.rec.gen, 0, Change::Reset)]);
        }
        Ok(())
    }

    /// Persists and applies changes to one mailbox. `rec` carries the
    /// mailbox's new UIDNEXT/HIGHESTMODSEQ; its generation must be current.
    pub async fn apply(
        &self,
        rec: MailboxRecord,
        writes: Vec<MessageWrite>,
    ) -> Result<(), StoreError> {
        let current = self.mailbox_record(&rec.name);
        if current.as_ref().map(|c| c.gen) != Some(rec.gen) {
            // A reset raced with this batch: the writes belong to a dead
            // generation and must not resurrect it.
            return Ok(());
        }
        if writes.is_empty() && current.as_ref() == Some(&rec) {
            return Ok(());
        }
        self.store
            .mailbox_apply(rec.clone(), writes.clone(), self.cache.budget)
            .await?;
        let mut events = Vec::with_capacity(writes.len());
        {
            let mut guard = self.mailboxes.write().unwrap_or_else(|e| e.into_inner());
            let Some(mbox) = guard.get_mut(&rec.name) else {
                return Ok(());
            };
            if mbox.rec.gen != rec.gen {
                return Ok(());
            }
            let gen = rec.gen;
            mbox.rec = rec;
            let erased = self.erased.read().unwrap_or_else(|e| e.into_inner());
            for w in writes {
                match w {
                    MessageWrite::Put { record, .. }
                        if erased
                            .contains(&crate::store::messages::message_key(gen, record.uid)) => {}
                    MessageWrite::Put { record, .. } => {
                        let MessageRecord {
                            uid,
                            flags,
                            modseq,
                            meta,
                        } = record;
                        let msg = Msg {
                            uid,
                            flags,
                            modseq,
                            meta,
                        };
                        match mbox.msgs.insert(uid, msg) {
                            None => events.push((gen, uid, Change::Added)),
                            Some(old) => {
                                let new_flags = &mbox.msgs[&uid].flags;
                                if &old.flags != new_flags {
                                    events.push((gen, uid, Change::Flags));
                                }
                            }
                        }
                    }
                    MessageWrite::Remove(uid) => {
                        if mbox.msgs.remove(&uid).is_some() {
                            events.push((gen, uid, Change::Removed));
                        }
                    }
                    MessageWrite::CacheBody { .. } => {}
                }
            }
        }
        if !events.is_empty() {
            self.publish(events);
        }
        Ok(())
    }

    /// The UIDs of generation `gen` that `contact erase` took out.
    pub fn erased_uids(&self, gen: u32) -> Vec<u32> {
        let erased = self.erased.read().unwrap_or_else(|e| e.into_inner());
        erased
            .iter()
            .filter(|k| *k >> 32 == u64::from(gen))
            .map(|k| *k as u32)
            .collect()
    }

    /// Takes messages out that `contact erase` removed from the store:
    /// sessions see them expunged, and no later sync puts them back.
    pub fn forget_erased(&self, keys: &[u64]) {
        self.erased
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(keys.iter().copied());
        let mut events = Vec::new();
        {
            let mut guard = self.mailboxes.write().unwrap_or_else(|e| e.into_inner());
            for mbox in guard.values_mut() {
                let gen = mbox.rec.gen;
                for &key in keys {
                    if key >> 32 == u64::from(gen) && mbox.msgs.remove(&(key as u32)).is_some() {
                        events.push((gen, key as u32, Change::Removed));
                    }
                }
            }
        }
        if !events.is_empty() {
            self.publish(events);
        }
    }

    /// Applies new flags for messages that are already indexed (after a
    /// STORE through the pool), keeping everything else.
    pub async fn update_flags(
        &self,
        name: &str,
        gen: u32,
        changes: Vec<(u32, Vec<Box<str>>, u64)>,
    ) -> Result<(), StoreError> {
        let (rec, writes) = {
            let guard = self.mailboxes.read().unwrap_or_else(|e| e.into_inner());
            let Some(mbox) = guard.get(name) else {
                return Ok(());
            };
            if mbox.rec.gen != gen {
                return Ok(());
            }
            // HIGHESTMODSEQ stays: only a sync proves all lower changes seen.
            let rec = mbox.rec.clone();
            let writes: Vec<MessageWrite> = changes
                .into_iter()
                .filter_map(|(uid, flags, modseq)| {
                    let msg = mbox.msgs.get(&uid)?;
                    (msg.flags != flags || msg.modseq != modseq).then(|| MessageWrite::Put {
                        record: MessageRecord {
                            uid,
                            flags,
                            modseq: modseq.max(msg.modseq),
                            meta: msg.meta.clone(),
                        },
                        header: None,
                    })
                })
                .collect();
            (rec, writes)
        };
        self.apply(rec, writes).await
    }
}
