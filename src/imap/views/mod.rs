//! Virtual folders at run time. A view is a rule (`defs::ViewKind`) plus a
//! UID map over the messages of the shared folders: a message entering a
//! view gets the view's next UID (persisted before anyone hears of it, so
//! a UID is never reused), a message leaving it is an EXPUNGE. Changes are
//! published on the index's event log under the view's id, so sessions
//! follow views exactly as they follow real folders.
//!
//! Membership is recomputed for the leads the lead book says changed, for
//! messages the index removed, and in full every minute (for rules that
//! depend on the date, such as "due today").
//!
//! Each lead's card (`card`, `leads::card`) is a member of the lead's
//! views (not the held folders) like its messages. When the lead changes,
//! the card is rendered again; a new version is a new key, so the old card
//! leaves (EXPUNGE) and the new one enters (EXISTS, a new UID) in the same
//! published batch. A lead swaps its card at most once per
//! [`CARD_COALESCE`]: changes inside that window wait for its end and are
//! shown together.

pub mod card;
pub mod defs;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use tokio::sync::watch;

use crate::{
    index::{Change, Index},
    leads::{
        book::LeadBook,
        card::{render, Card, CardInput, READ_EVENTS},
        Lead, LeadId,
    },
    store::{messages::message_key, views::ViewRecord, StoreError},
};
use card::{card_key, card_lead, CardSlot};
use defs::{EvalCtx, ViewKind, ViewsConfig};

/// A lead swaps its card at most once in this time.
pub const CARD_COALESCE: Duration = Duration::from_secs(2);

/// Rendered card bodies kept for repeated fetches (bytes).
const CARD_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Who the cards say they are from and where replies go.
#[derive(Debug, Clone, Default)]
pub struct CardIdentity {
    /// `server.hostname`: `leadgate@HOST`, and the Message-IDs.
    pub hostname: String,
    /// `smtp.notes_address`: replies go to `notes+<id>@...`.
    pub notes_address: Option<String>,
}

/// The cards of every lead (when `[views] lead_card` is on).
#[derive(Default)]
struct Cards {
    identity: CardIdentity,
    slots: RwLock<HashMap<LeadId, Arc<CardSlot>>>,
    /// Leads whose change waits for the end of their window.
    pending: Mutex<HashMap<LeadId, Instant>>,
    /// Recently rendered bodies by card key, oldest first.
    cache: Mutex<std::collections::VecDeque<(u64, Arc<[u8]>)>>,
    /// Swaps so far (for tests and measurements).
    swaps: std::sync::atomic::AtomicU64,
}

pub struct View {
    pub id: u32,
    pub key: String,
    pub kind: ViewKind,
    /// Whose view this is ("*" for shared views).
    pub viewer: String,
    pub uidvalidity: u32,
    pub next_uid: u32,
    pub members: BTreeMap<u32, u64>,
    pub by_key: HashMap<u64, u32>,
}

/// A session's copy of a view at SELECT time.
pub struct ViewSnapshot {
    pub id: u32,
    pub uidvalidity: u32,
    pub next_uid: u32,
    pub uids: Vec<u32>,
}

#[derive(Default)]
struct State {
    views: HashMap<String, View>,
    by_id: HashMap<u32, String>,
}

pub struct ViewSet {
    index: Arc<Index>,
    book: Arc<LeadBook>,
    cfg: ViewsConfig,
    /// Upstream folders whose messages can be in views.
    folders: Vec<String>,
    state: RwLock<State>,
    /// One membership update at a time (keeps UID allocation in order).
    update: tokio::sync::Mutex<()>,
    cards: Cards,
}

/// Parses a view key back into its rule and viewer.
fn parse_key(key: &str) -> Option<(String, ViewKind)> {
    let (viewer, folder) = key.split_once(':')?;
    let kind = match folder {
        "Leads/Unassigned" => ViewKind::Unassigned,
        "Leads/Mine" => ViewKind::Mine,
        "Leads/Overdue" => ViewKind::MyOverdue,
        "Leads/Waiting" => ViewKind::MyWaiting,
        "Leads/Follow-up due" => ViewKind::MyFollowUpDue,
        "Leads/Needs input" => ViewKind::MyNeedsInput,
        "Leads/Quote sent" => ViewKind::MyQuoteSent,
        "Leads/Closed" => ViewKind::MyClosed,
        "Review/New and unassigned" => ViewKind::ReviewNew,
        "Review/Waiting first response" => ViewKind::ReviewWaitingFirst,
        "Review/Follow-ups due today" => ViewKind::ReviewDueToday,
        "Review/Overdue" => ViewKind::ReviewOverdue,
        "Review/Blocked" => ViewKind::ReviewBlocked,
        "Review/High value idle" => ViewKind::ReviewHighValueIdle,
        "Review/Escalated" => ViewKind::ReviewEscalated,
        "Review/Held" => ViewKind::ReviewHeld,
        "Leads/Held" => ViewKind::Held,
        other => ViewKind::Team(other.strip_prefix("Team/")?.to_owned()),
    };
    Some((viewer.to_owned(), kind))
}

impl ViewSet {
    /// Loads every persisted view.
    pub fn load(
        index: Arc<Index>,
        book: Arc<LeadBook>,
        cfg: ViewsConfig,
        folders: Vec<String>,
    ) -> Result<ViewSet, StoreError> {
        Self::load_with_cards(index, book, cfg, folders, CardIdentity::default())
    }

    /// Loads every persisted view and renders every lead's card (with
    /// `[views] lead_card`), so a card that reads as before keeps its key
    /// and its UIDs across a restart.
    pub fn load_with_cards(
        index: Arc<Index>,
        book: Arc<LeadBook>,
        cfg: ViewsConfig,
        folders: Vec<String>,
        identity: CardIdentity,
    ) -> Result<ViewSet, StoreError> {
        let mut state = State::default();
        for (key, rec, members) in index.store().load_views()? {
            let Some((viewer, kind)) = parse_key(&key) else {
                continue;
            };
            let by_key = members.iter().map(|(uid, k)| (*k, *uid)).collect();
            state.by_id.insert(rec.id, key.clone());
            state.views.insert(
                key.clone(),
                View {
                    id: rec.id,
                    key,
                    kind,
                    viewer,
                    uidvalidity: rec.uidvalidity,
                    next_uid: rec.next_uid,
                    members: members.into_iter().collect(),
                    by_key,
                },
            );
        }
        let set = ViewSet {
            index,
            book,
            cfg,
            folders,
            state: RwLock::new(state),
            update: tokio::sync::Mutex::new(()),
            cards: Cards {
                identity,
                ..Cards::default()
            },
        };
        if set.cfg.lead_card {
            let started = Instant::now();
            let ids: Vec<LeadId> = set.book.all().iter().map(|l| l.id).collect();
            set.update_cards(&ids, None);
            let (cards, bytes) = set.card_footprint();
            tracing::info!(
                leads = ids.len(),
                cards,
                bytes,
                ms = started.elapsed().as_millis() as u64,
                "views: lead cards rendered"
            );
        }
        Ok(set)
    }

    /// The lead's first message (its Message-ID threads the card): the
    /// first filed that has one.
    fn thread_root(&self, lead: LeadId) -> (u64, Option<String>) {
        let keys = self.book.messages_of(lead);
        self.index.with_gens(|gens| {
            keys.iter()
                .filter_map(|&k| {
                    let m = gens.get((k >> 32) as u32)?;
                    let msg = m.msgs.get(&(k as u32))?;
                    Some((k, msg.meta.message_id.as_deref()?.to_owned()))
                })
                .min_by(|a, b| a.0.cmp(&b.0))
                .map_or((0, None), |(k, id)| (k, Some(id)))
        })
    }

    fn root_id(&self, key: u64) -> Option<String> {
        self.index.with_gens(|gens| {
            let m = gens.get((key >> 32) as u32)?;
            let msg = m.msgs.get(&(key as u32))?;
            msg.meta.message_id.as_deref().map(str::to_owned)
        })
    }

    /// Renders a card from what its slot records (reads the lead's audit
    /// events up to `upto`).
    fn render_card(&self, lead: &Lead, root: Option<&str>, upto: u64) -> Card {
        let events = self
            .index
            .store()
            .audit_of_lead(lead.id, upto, READ_EVENTS)
            .unwrap_or_else(|e| {
                tracing::error!(lead = lead.id, "reading the lead's audit events: {e}");
                Vec::new()
            });
        render(&CardInput {
            lead,
            thread_root: root,
            events: &events,
            hostname: &self.cards.identity.hostname,
            notes_address: self.cards.identity.notes_address.as_deref(),
            tz: self.book.calendar().time_zone(),
        })
    }

    /// Renders these leads' cards again; a lead whose card changed gets the
    /// new version unless it swapped less than [`CARD_COALESCE`] ago (then
    /// it is pending until the window ends). `now`: `None` at start (no
    /// window). Returns the leads whose card changed or went.
    fn update_cards(&self, ids: &[LeadId], now: Option<Instant>) -> Vec<LeadId> {
        let mut changed = Vec::new();
        for &id in ids {
            let Some(lead) = self.book.lead(id) else {
                let gone = self
                    .cards
                    .slots
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                if let Some(slot) = gone {
                    self.cards
                        .cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .retain(|(k, _)| *k != slot.key);
                    changed.push(id);
                }
                continue;
            };
            let last = self
                .cards
                .slots
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .map(|s| (s.key, s.swapped));
            if let (Some(now), Some((_, Some(at)))) = (now, last) {
                if now < at + CARD_COALESCE {
                    self.cards
                        .pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id, at + CARD_COALESCE);
                    continue;
                }
            }
            let (root, root_id) = self.thread_root(id);
            let upto = match self.index.store().audit_lead_head(id) {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(lead = id, "reading the lead's audit head: {e}");
                    continue;
                }
            };
            let card = self.render_card(&lead, root_id.as_deref(), upto);
            let Some(key) = card_key(id, card.version) else {
                continue;
            };
            if last.is_some_and(|(k, _)| k == key) {
                continue;
            }
            // The old version's bytes are no longer served (nor kept: an
            // erased contact must not linger in the cache).
            if let Some((old, _)) = last {
                self.cards
                    .cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|(k, _)| *k != old);
            }
            let date = card::internal_date(lead.updated.max(lead.created));
            let slot = CardSlot {
                key,
                lead,
                upto,
                root,
                meta: Arc::new(card::meta(&card, date)),
                body: card::structure(&card, false).into(),
                boundary: card.boundary.clone().into(),
                swapped: now,
            };
            self.cache_body(key, card.bytes.into());
            self.cards
                .slots
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, Arc::new(slot));
            if now.is_some() && last.is_some() {
                self.cards
                    .swaps
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            changed.push(id);
        }
        changed
    }

    /// Leads whose window has ended, taken off the pending list.
    fn due_cards(&self, now: Instant) -> Vec<LeadId> {
        let mut pending = self.cards.pending.lock().unwrap_or_else(|e| e.into_inner());
        let due: Vec<LeadId> = pending
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &due {
            pending.remove(id);
        }
        due
    }

    fn next_pending(&self) -> Option<Instant> {
        self.cards
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .min()
            .copied()
    }

    fn cache_body(&self, key: u64, body: Arc<[u8]>) {
        let mut cache = self.cards.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.iter().any(|(k, _)| *k == key) {
            return;
        }
        cache.push_back((key, body));
        let mut total: usize = cache.iter().map(|(_, b)| b.len()).sum();
        while total > CARD_CACHE_BYTES {
            match cache.pop_front() {
                Some((_, b)) => total -= b.len(),
                None => break,
            }
        }
    }

    /// The card behind `key` while it is current: its slot.
    pub fn card(&self, key: u64) -> Option<Arc<CardSlot>> {
        let lead = card_lead(key)?;
        self.cards
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&lead)
            .filter(|s| s.key == key)
            .cloned()
    }

    /// The bytes of a card (without the stamp), rendered again from its
    /// slot unless recently rendered; `None` when the card is gone.
    pub fn card_bytes(&self, key: u64) -> Option<Arc<[u8]>> {
        {
            let cache = self.cards.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, b)) = cache.iter().rev().find(|(k, _)| *k == key) {
                return Some(b.clone());
            }
        }
        let slot = self.card(key)?;
        let root = (slot.root != 0).then(|| self.root_id(slot.root)).flatten();
        let card = self.render_card(&slot.lead, root.as_deref(), slot.upto);
        if card_key(slot.lead.id, card.version) != Some(key) {
            // Cannot happen unless the store changed under the card (an
            // erased audit event): serve it, and let the lead swap.
            tracing::warn!(lead = slot.lead.id, "card rendered differently; swapping");
            self.book.notify(vec![slot.lead.id]);
        }
        let bytes: Arc<[u8]> = card.bytes.into();
        self.cache_body(key, bytes.clone());
        Some(bytes)
    }

    /// Card swaps since start (a new version replacing an old one; not the
    /// first card of a lead).
    pub fn card_swaps(&self) -> u64 {
        self.cards.swaps.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Cards held in memory and their approximate bytes (slots and meta).
    pub fn card_footprint(&self) -> (usize, usize) {
        let slots = self.cards.slots.read().unwrap_or_else(|e| e.into_inner());
        let bytes = slots
            .values()
            .map(|s| {
                std::mem::size_of::<CardSlot>()
                    + std::mem::size_of::<LeadId>()
                    + std::mem::size_of::<Arc<CardSlot>>()
                    + 32
                    + std::mem::size_of::<crate::store::messages::MessageMeta>()
                    + s.meta.envelope.len()
                    + s.meta.bodystructure.len()
                    + s.meta.internal_date.len()
                    + s.meta.message_id.as_deref().map_or(0, str::len) * 2
                    + s.meta.in_reply_to.as_deref().map_or(0, str::len) * 2
                    + s.body.len()
                    + s.boundary.len()
            })
            .sum();
        (slots.len(), bytes)
    }

    pub fn config(&self) -> &ViewsConfig {
        &self.cfg
    }

    fn ctx(&self) -> (i64, i64) {
        (
            self.book.now(),
            i64::from(self.cfg.high_value_idle_days) * 86_400,
        )
    }

    /// The view for `kind` as `viewer` sees it, created (and filled) on
    /// first use. Returns its id.
    pub async fn ensure(&self, kind: &ViewKind, viewer: &str) -> Result<u32, StoreError> {
        let key = kind.key(viewer);
        if let Some(v) = self
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .views
            .get(&key)
        {
            return Ok(v.id);
        }
        let _update = self.update.lock().await;
        if let Some(v) = self
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .views
            .get(&key)
        {
            return Ok(v.id);
        }
        let uidvalidity = u32::try_from(chrono::Utc::now().timestamp())
            .unwrap_or(1)
            .max(1);
        let rec = self.index.store().view_create(&key, uidvalidity).await?;
        let view = View {
            id: rec.id,
            key: key.clone(),
            kind: kind.clone(),
            viewer: if kind.per_user() {
                viewer.to_owned()
            } else {
                "*".into()
            },
            uidvalidity: rec.uidvalidity,
            next_uid: rec.next_uid,
            members: BTreeMap::new(),
            by_key: HashMap::new(),
        };
        {
            let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
            st.by_id.insert(view.id, key.clone());
            st.views.insert(key.clone(), view);
        }
        self.refresh_views(Some(&[key]), None).await?;
        Ok(rec.id)
    }

    pub fn snapshot(&self, id: u32) -> Option<ViewSnapshot> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        let v = st.views.get(st.by_id.get(&id)?)?;
        Some(ViewSnapshot {
            id,
            uidvalidity: v.uidvalidity,
            next_uid: v.next_uid,
            uids: v.members.keys().copied().collect(),
        })
    }

    /// Message keys behind view UIDs (absent when no longer in the view).
    pub fn resolve(&self, id: u32, uids: &[u32]) -> Vec<(u32, u64)> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        let Some(v) = st.by_id.get(&id).and_then(|k| st.views.get(k)) else {
            return Vec::new();
        };
        uids.iter()
            .filter_map(|u| v.members.get(u).map(|k| (*u, *k)))
            .collect()
    }

    /// Every (message key -> view UID) of a view.
    pub fn keys_to_uids(&self, id: u32) -> HashMap<u64, u32> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.by_id
            .get(&id)
            .and_then(|k| st.views.get(k))
            .map(|v| v.by_key.clone())
            .unwrap_or_default()
    }

    /// The message keys of the shared folders, with their arrival order.
    fn universe(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for name in &self.folders {
            self.index.with_mailbox(name, |m| {
                let gen = m.rec.gen;
                out.extend(m.msgs.values().map(|msg| {
                    (
                        msg.meta.internal_date.to_string(),
                        message_key(gen, msg.uid),
                    )
                }));
            });
        }
        out
    }

    fn exists(&self, key: u64) -> bool {
        if let Some(lead) = card_lead(key) {
            return self
                .cards
                .slots
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&lead)
                .is_some_and(|s| s.key == key);
        }
        let (gen, uid) = ((key >> 32) as u32, (key & 0xffff_ffff) as u32);
        self.folders.iter().any(|name| {
            self.index
                .with_mailbox(name, |m| m.rec.gen == gen && m.msgs.contains_key(&uid))
                .unwrap_or(false)
        })
    }

    /// Recomputes membership. `views`: only these views (all when None);
    /// `leads`: only messages of these leads (all messages when None).
    /// Persists additions and removals, then publishes them.
    pub async fn refresh_views(
        &self,
        views: Option<&[String]>,
        leads: Option<&HashSet<LeadId>>,
    ) -> Result<(), StoreError> {
        let (now, idle_secs) = self.ctx();
        let cal = self.book.calendar();
        let ctx = EvalCtx {
            now,
            cal: &cal,
            idle_secs,
        };
        // Candidate messages, oldest first so new UIDs follow arrival.
        let mut candidates: Vec<(String, u64)> = match leads {
            None => self.universe(),
            Some(ids) => ids
                .iter()
                .flat_map(|id| {
                    let mut keys = self.book.messages_of(*id);
                    keys.extend(self.book.held_keys_of(*id));
                    keys
                })
                .filter(|k| self.exists(*k))
                .map(|k| (String::new(), k))
                .collect(),
        };
        // Cards come after the messages (their keys sort last), so a card
        // gets a higher UID than the mail of its lead entering with it.
        {
            let slots = self.cards.slots.read().unwrap_or_else(|e| e.into_inner());
            match leads {
                None => candidates.extend(slots.values().map(|s| ("~".to_owned(), s.key))),
                Some(ids) => candidates.extend(
                    ids.iter()
                        .filter_map(|id| slots.get(id))
                        .map(|s| ("~".to_owned(), s.key)),
                ),
            }
        }
        // Whether a view wants a message: held folders by the book's held
        // marks, every other one by its rule on the message's lead.
        let wants = |view: &View, k: u64| -> bool {
            if view.kind.is_held() {
                return card_lead(k).is_none()
                    && self
                        .book
                        .held_visible(k, &view.viewer, view.kind == ViewKind::ReviewHeld);
            }
            card_lead(k)
                .or_else(|| self.book.lead_for_message(k))
                .and_then(|id| self.book.lead(id))
                .is_some_and(|l| view.kind.matches(&l, &view.viewer, &ctx))
        };
        candidates.sort();
        let candidate_keys: HashSet<u64> = candidates.iter().map(|(_, k)| *k).collect();
        let keys: Vec<String> = {
            let st = self.state.read().unwrap_or_else(|e| e.into_inner());
            match views {
                Some(v) => v.to_vec(),
                None => st.views.keys().cloned().collect(),
            }
        };
        let mut events = Vec::new();
        for key in keys {
            let plan = {
                let st = self.state.read().unwrap_or_else(|e| e.into_inner());
                let Some(view) = st.views.get(&key) else {
                    continue;
                };
                let mut add = Vec::new();
                for (_, k) in &candidates {
                    if !view.by_key.contains_key(k) && wants(view, *k) {
                        add.push(*k);
                    }
                }
                let remove: Vec<u32> = view
                    .by_key
                    .iter()
                    .filter(|(k, _)| {
                        // A card is in scope when its lead is (an old
                        // version is then gone); no lookup for the others.
                        let in_scope = match (leads, card_lead(**k)) {
                            (None, _) => true,
                            (Some(ids), Some(lead)) => ids.contains(&lead),
                            (Some(_), None) => candidate_keys.contains(k) || !self.exists(**k),
                        };
                        in_scope && (!self.exists(**k) || !wants(view, **k))
                    })
                    .map(|(_, uid)| *uid)
                    .collect();
                (view.id, view.uidvalidity, view.next_uid, add, remove)
            };
            let (id, uidvalidity, next_uid, add, mut remove) = plan;
            if add.is_empty() && remove.is_empty() {
                continue;
            }
            remove.sort_unstable();
            let added: Vec<(u32, u64)> = add
                .iter()
                .enumerate()
                .map(|(i, k)| (next_uid + i as u32, *k))
                .collect();
            let rec = ViewRecord {
                id,
                uidvalidity,
                next_uid: next_uid + added.len() as u32,
            };
            self.index
                .store()
                .view_apply(&key, rec.clone(), added.clone(), remove.clone())
                .await?;
            let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
            if let Some(view) = st.views.get_mut(&key) {
                for uid in &remove {
                    if let Some(k) = view.members.remove(uid) {
                        view.by_key.remove(&k);
                    }
                    events.push((id, *uid, Change::Removed));
                }
                for (uid, k) in &added {
                    view.members.insert(*uid, *k);
                    view.by_key.insert(*k, *uid);
                    events.push((id, *uid, Change::Added));
                }
                view.next_uid = rec.next_uid;
            }
        }
        if !events.is_empty() {
            tracing::debug!(events = events.len(), "views: membership published");
            self.index.publish(events);
        }
        Ok(())
    }

    /// Brings views up to date for these leads now (after a person changed
    /// them), instead of waiting for the background task.
    pub async fn refresh_leads(&self, leads: &[LeadId]) -> Result<(), StoreError> {
        let _update = self.update.lock().await;
        if self.cfg.lead_card {
            self.update_cards(leads, Some(Instant::now()));
        }
        let ids: HashSet<LeadId> = leads.iter().copied().collect();
        self.refresh_views(None, Some(&ids)).await?;
        let keys = self.keys_with_cards(ids.iter().copied());
        self.publish_flag_changes(&keys);
        Ok(())
    }

    /// The messages of these leads and their cards (whose keywords follow
    /// the lead).
    fn keys_with_cards(&self, ids: impl Iterator<Item = LeadId>) -> Vec<u64> {
        let slots = self.cards.slots.read().unwrap_or_else(|e| e.into_inner());
        ids.flat_map(|id| {
            let mut keys = self.book.messages_of(id);
            keys.extend(slots.get(&id).map(|s| s.key));
            keys
        })
        .collect()
    }

    /// Tells sessions that these messages' flags (keywords) may differ now:
    /// in the real folders and in every view holding them.
    fn publish_flag_changes(&self, keys: &[u64]) {
        self.publish_flags(keys, Change::Flags);
    }

    /// Tells one user's sessions that their read state of these messages
    /// changed, wherever the messages are shown; the other users' sessions
    /// skip the events (`Change::Private`).
    pub fn publish_read_state(&self, keys: &[u64], user: u32) {
        self.publish_flags(keys, Change::Private(user));
    }

    fn publish_flags(&self, keys: &[u64], change: Change) {
        let mut events = Vec::new();
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        for &k in keys {
            if card_lead(k).is_none() {
                events.push(((k >> 32) as u32, (k & 0xffff_ffff) as u32, change));
            }
            for v in st.views.values() {
                if let Some(uid) = v.by_key.get(&k) {
                    events.push((v.id, *uid, change));
                }
            }
        }
        drop(st);
        if !events.is_empty() {
            self.index.publish(events);
        }
    }

    /// Keeps views current: follows lead changes, index changes and the
    /// clock until shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut book_changes = self.book.subscribe();
        let mut index_changes = self.index.subscribe();
        let mut book_seq = 0u64;
        let mut index_seq = self.index.current_seq();
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let gens = |s: &Self| -> Vec<u32> {
            s.folders
                .iter()
                .filter_map(|n| s.index.mailbox_record(n).map(|r| r.gen))
                .collect()
        };
        loop {
            let _update = self.update.lock().await;
            // Lead changes: membership of their messages, and keywords.
            let leads = match self.book.changes_since(book_seq) {
                Some((ids, newest)) => {
                    book_seq = newest;
                    Some(ids.into_iter().collect::<HashSet<_>>())
                }
                None => None,
            };
            if self.cfg.lead_card {
                let now = Instant::now();
                match &leads {
                    Some(ids) => {
                        let ids: Vec<LeadId> = ids.iter().copied().collect();
                        self.update_cards(&ids, Some(now));
                    }
                    None => {
                        let ids: Vec<LeadId> = self.book.all().iter().map(|l| l.id).collect();
                        self.update_cards(&ids, Some(now));
                    }
                }
            }
            let result = match &leads {
                Some(ids) if ids.is_empty() => Ok(()),
                Some(ids) => self.refresh_views(None, Some(ids)).await,
                None => self.refresh_views(None, None).await,
            };
            if let Err(e) = result {
                tracing::error!("view refresh: {e}");
            }
            if let Some(ids) = &leads {
                let keys = self.keys_with_cards(ids.iter().copied());
                self.publish_flag_changes(&keys);
            }
            // Index changes: messages gone or with new flags.
            let mut gone = Vec::new();
            let mut flagged = Vec::new();
            for gen in gens(&self) {
                if let Ok((events, _)) = self.index.events_since(index_seq, gen) {
                    for e in events {
                        let k = message_key(gen, e.uid);
                        match e.change {
                            Change::Removed => gone.push(k),
                            Change::Flags => flagged.push(k),
                            _ => {}
                        }
                    }
                }
            }
            index_seq = self.index.current_seq();
            if !gone.is_empty() {
                let _ = self.refresh_views(None, Some(&HashSet::new())).await;
            }
            if !flagged.is_empty() {
                let st = self.state.read().unwrap_or_else(|e| e.into_inner());
                let mut events = Vec::new();
                for k in flagged {
                    for v in st.views.values() {
                        if let Some(uid) = v.by_key.get(&k) {
                            events.push((v.id, *uid, Change::Flags));
                        }
                    }
                }
                drop(st);
                if !events.is_empty() {
                    self.index.publish(events);
                }
            }
            drop(_update);
            // The end of the earliest pending card window, if any.
            let pending = self.next_pending();
            let card_due = async move {
                match pending {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = book_changes.changed() => if r.is_err() { return },
                r = index_changes.changed() => if r.is_err() { return },
                _ = card_due => {
                    let _update = self.update.lock().await;
                    let now = Instant::now();
                    let due = self.due_cards(now);
                    let swapped = self.update_cards(&due, Some(now));
                    if !swapped.is_empty() {
                        let ids: HashSet<LeadId> = swapped.into_iter().collect();
                        if let Err(e) = self.refresh_views(None, Some(&ids)).await {
                            tracing::error!("view refresh: {e}");
                        }
                    }
                }
                _ = tick.tick() => {
                    let _update = self.update.lock().await;
                    if let Err(e) = self.refresh_views(None, None).await {
                        tracing::error!("view refresh: {e}");
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        auth::Principal,
        index::{BodyCache, Index},
        leads::{
            book::{LeadAction, ManualClock},
            ingest::Ingester,
            rules::LeadsConfig,
        },
        store::{
            messages::{MessageMeta, MessageRecord, MessageWrite},
            users::{Role, User},
            Store,
        },
    };

    /// Monday 2026-11-23 10:00 UTC.
    const MONDAY_10: i64 = 1_795_428_000;

    async fn world(
        dir: &std::path::Path,
        clock: Arc<ManualClock>,
    ) -> (Arc<Index>, Arc<LeadBook>, Arc<ViewSet>) {
        world_with(dir, clock, false).await
    }

    async fn world_with(
        dir: &std::path::Path,
        clock: Arc<ManualClock>,
        lead_card: bool,
    ) -> (Arc<Index>, Arc<LeadBook>, Arc<ViewSet>) {
        let store = Store::open(&dir.join("s.redb")).unwrap();
        for (name, role) in [("alice", Role::Rep), ("maria", Role::Manager)] {
            let user = User {
                name: name.into(),
                role,
                enabled: true,
                password_hash: String::new(),
                email: Some(format!("{name}@example.com")),
                display_name: None,
                created: 0,
                changed: 0,
            };
            store.user_add("test", user).await.unwrap().unwrap();
        }
        let index = Arc::new(
            Index::load(
                store.clone(),
                BodyCache {
                    budget: 1 << 20,
                    max_message: 1 << 16,
                },
            )
            .unwrap(),
        );
        let mut rec = index.reset("INBOX", 7).await.unwrap();
        let mut writes = Vec::new();
        for uid in 1..=2u32 {
            let raw = format!(
                "From: c{uid}@customer{uid}.test\r\nTo: sales@example.com\r\nSubject: Quote {uid}\r\nMessage-ID: <q{uid}@x>\r\n\r\nPlease quote 10 seats.\r\n"
            );
            writes.push(MessageWrite::Put {
                record: MessageRecord {
                    uid,
                    flags: Vec::new(),
                    modseq: 1,
                    meta: Arc::new(MessageMeta {
                        size: raw.len() as u32,
                        internal_date: "23-Nov-2026 09:00:00 +0000".into(),
                        envelope: Box::new([]),
                        bodystructure: Box::new([]),
                        message_id: Some(format!("<q{uid}@x>").into()),
                        in_reply_to: None,
                        references: Box::new([]),
                    }),
                },
                header: Some(raw.clone().into_bytes()),
            });
            writes.push(MessageWrite::CacheBody {
                uid,
                body: raw.into_bytes(),
            });
        }
        rec.uidnext = 3;
        index.apply(rec, writes).await.unwrap();
        let book =
            Arc::new(LeadBook::load(store, Arc::new(LeadsConfig::default()), clock).unwrap());
        let folders = vec!["INBOX".to_owned()];
        Ingester {
            index: index.clone(),
            book: book.clone(),
            folders: folders.clone(),
        }
        .catch_up()
        .await;
        // The first tests count messages; the cards have their own below.
        let cfg = ViewsConfig {
            lead_card,
            ..ViewsConfig::default()
        };
        let identity = CardIdentity {
            hostname: "gw.example.com".into(),
            notes_address: Some("notes@example.com".into()),
        };
        let views = Arc::new(
            ViewSet::load_with_cards(index.clone(), book.clone(), cfg, folders, identity).unwrap(),
        );
        (index, book, views)
    }

    #[tokio::test]
    async fn a_lead_enters_overdue_folders_at_its_due_time_with_an_injected_clock() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(MONDAY_10));
        let (index, book, views) = world(dir.path(), clock.clone()).await;
        let overdue = views.ensure(&ViewKind::MyOverdue, "alice").await.unwrap();
        let review = views
            .ensure(&ViewKind::ReviewOverdue, "maria")
            .await
            .unwrap();
        assert!(views.snapshot(overdue).unwrap().uids.is_empty());
        // Round-robin gave both leads to alice (the only rep); each owes a
        // response within 4 business hours of its arrival at 09:00: 13:00.
        let due = book.lead(1).unwrap().due.unwrap();
        assert_eq!(due, MONDAY_10 + 3 * 3600);

        clock.set(due - 1);
        book.tick().await.unwrap();
        views.refresh_views(None, None).await.unwrap();
        assert!(
            views.snapshot(overdue).unwrap().uids.is_empty(),
            "not before the due time"
        );
        let seq = index.current_seq();
        clock.set(due);
        book.tick().await.unwrap();
        let (changed, _) = book.changes_since(0).unwrap();
        views
            .refresh_views(None, Some(&changed.into_iter().collect()))
            .await
            .unwrap();
        let mine = views.snapshot(overdue).unwrap();
        let all = views.snapshot(review).unwrap();
        assert_eq!(
            mine.uids.len(),
            2,
            "both leads are overdue at their due time"
        );
        assert_eq!(all.uids.len(), 2);
        let (events, _) = index.events_since(seq, overdue).unwrap();
        assert_eq!(
            events.iter().filter(|e| e.change == Change::Added).count(),
            2,
            "sessions are told"
        );
    }

    #[tokio::test]
    async fn a_message_that_returns_to_a_view_gets_a_new_uid() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(MONDAY_10));
        let (_index, book, views) = world(dir.path(), clock).await;
        let waiting = views.ensure(&ViewKind::MyWaiting, "alice").await.unwrap();
        let before = views.snapshot(waiting).unwrap();
        let alice = Principal {
            name: "alice".into(),
            role: Role::Rep,
            email: None,
            display_name: None,
        };
        let set = |s| LeadAction::SetStatus(s);
        for status in [
            crate::leads::Status::WaitingForReply,
            crate::leads::Status::NeedsInternalInput,
            crate::leads::Status::WaitingForReply,
        ] {
            book.act(&alice, 1, set(status)).await.unwrap();
            views.refresh_leads(&[1]).await.unwrap();
        }
        let after = views.snapshot(waiting).unwrap();
        assert_eq!(
            after.uidvalidity, before.uidvalidity,
            "UIDVALIDITY is fixed for the view's life"
        );
        assert_eq!(
            after.uids,
            vec![2],
            "UID 1 was used once and is never given out again"
        );
        assert_eq!(after.next_uid, 3);
        // The same holds after a restart: the map is persisted.
        drop(views);
        let cfg = ViewsConfig {
            lead_card: false,
            ..ViewsConfig::default()
        };
        let reloaded = ViewSet::load(_index, book, cfg, vec!["INBOX".into()]).unwrap();
        let again = reloaded.snapshot(waiting).unwrap();
        assert_eq!((again.uids, again.next_uid), (vec![2], 3));
    }

    fn cards_of(views: &ViewSet, id: u32) -> Vec<(u32, u64)> {
        let snap = views.snapshot(id).unwrap();
        views
            .resolve(id, &snap.uids)
            .into_iter()
            .filter(|(_, k)| card_lead(*k).is_some())
            .collect()
    }

    #[tokio::test]
    async fn a_lead_change_swaps_its_card_for_a_new_uid_at_most_once_per_window() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(MONDAY_10));
        let (index, book, views) = world_with(dir.path(), clock, true).await;
        let mine = views.ensure(&ViewKind::Mine, "alice").await.unwrap();
        let cards = cards_of(&views, mine);
        assert_eq!(cards.len(), 2, "one card per lead");
        assert_eq!(
            views.snapshot(mine).unwrap().uids.len(),
            4,
            "two mails, two cards"
        );
        let card1 = cards
            .iter()
            .find(|(_, k)| card_lead(*k) == Some(1))
            .unwrap();
        let slot = views.card(card1.1).unwrap();
        assert!(
            slot.meta.in_reply_to.as_deref() == Some("<q1@x>"),
            "threads to the lead's first message"
        );
        let body = views.card_bytes(card1.1).unwrap();
        assert_eq!(
            body.len() as u32,
            slot.meta.size,
            "size is the rendered length"
        );
        let held = views.ensure(&ViewKind::Held, "alice").await.unwrap();
        assert!(views.snapshot(held).unwrap().uids.is_empty());

        let alice = Principal {
            name: "alice".into(),
            role: Role::Rep,
            email: None,
            display_name: None,
        };
        let seq = index.current_seq();
        book.act(&alice, 1, LeadAction::NextAction("Call Dana".into()))
            .await
            .unwrap();
        views.refresh_leads(&[1]).await.unwrap();
        let after = cards_of(&views, mine);
        assert_eq!(after.len(), 2, "still one card per lead");
        let new1 = after
            .iter()
            .find(|(_, k)| card_lead(*k) == Some(1))
            .unwrap();
        assert!(new1.0 > card1.0 && new1.1 != card1.1, "a new UID and key");
        let (events, _) = index.events_since(seq, mine).unwrap();
        let kinds: Vec<(u32, Change)> = events
            .iter()
            .filter(|e| e.change != Change::Flags)
            .map(|e| (e.uid, e.change))
            .collect();
        assert_eq!(
            kinds,
            vec![(card1.0, Change::Removed), (new1.0, Change::Added)],
            "the old card leaves before the new one enters"
        );
        assert_eq!(views.card_swaps(), 1);

        // A burst inside the window waits for its end and swaps once.
        for i in 0..5 {
            book.act(&alice, 1, LeadAction::NextAction(format!("step {i}")))
                .await
                .unwrap();
            views.refresh_leads(&[1]).await.unwrap();
        }
        assert_eq!(views.card_swaps(), 1, "coalesced");
        assert_eq!(cards_of(&views, mine), after);
        let later = Instant::now() + CARD_COALESCE;
        let due = views.due_cards(later);
        assert_eq!(due, vec![1]);
        let swapped = views.update_cards(&due, Some(later));
        views
            .refresh_views(None, Some(&swapped.into_iter().collect()))
            .await
            .unwrap();
        assert_eq!(views.card_swaps(), 2);
        let last = cards_of(&views, mine);
        let slot = views.card(
            last.iter()
                .find(|(_, k)| card_lead(*k) == Some(1))
                .unwrap()
                .1,
        );
        assert_eq!(
            slot.unwrap().lead.next_action.as_deref(),
            Some("step 4"),
            "the swap shows the burst's end state"
        );

        // A restart renders the same cards: same keys, same UIDs.
        drop(views);
        let identity = CardIdentity {
            hostname: "gw.example.com".into(),
            notes_address: Some("notes@example.com".into()),
        };
        let reloaded = ViewSet::load_with_cards(
            index,
            book,
            ViewsConfig::default(),
            vec!["INBOX".into()],
            identity,
        )
        .unwrap();
        reloaded.refresh_views(None, None).await.unwrap();
        assert_eq!(cards_of(&reloaded, mine), last);
    }
}
