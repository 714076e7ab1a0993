//! The lead book: the only writer of lead state. Each operation runs the
//! pure rules (`rules`, `engine`, `policy`) inside one store transaction
//! that also updates the threading indexes and appends the audit events,
//! so a lead change and its record commit together or not at all. A copy
//! of every lead is kept in memory for views and sessions; readers follow
//! changes through a version watch and a bounded change log.

mod actions;
mod ingest;
mod replies;
mod ticks;

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc, Mutex, RwLock,
    },
};

use tokio::sync::watch;

use super::{
    calendar::Calendar,
    classify::MailKind,
    engine::{self, Change, Transition},
    held::HeldMark,
    rules::{triage, AssignContext, LeadsConfig},
    threading::{counterpart, direction, find_thread, normalize_subject, Direction, MessageFacts},
    Category, Lead, LeadId, MessageMark, Outcome, Status,
};
use crate::{
    auth::Principal,
    policy::{self, Actor, Verdict},
    store::{
        audit::{AuditChange, AuditDraft},
        notices::{Notice, NoticeKind},
        users::Role,
        Store, StoreError, Tx,
    },
};

/// Where "now" comes from; tests inject their own.
pub trait Clock: Send + Sync + 'static {
    /// Unix seconds.
    fn now(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        chrono::Utc::now().timestamp()
    }
}

/// A clock that only moves when told to.
#[derive(Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(at: i64) -> Self {
        ManualClock(AtomicI64::new(at))
    }
    pub fn set(&self, at: i64) {
        self.0.store(at, Ordering::SeqCst);
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The actor recorded for what rules and timers do.
pub const SYSTEM: &str = "leadgate";

/// The most message ids of a References header that are looked up; a
/// submission with more is refused (RFC 5322 sets no limit, real threads
/// stay far below).
pub const MAX_REFERENCES: usize = 1000;

/// Lead id 0 marks a message that was ingested but belongs to no lead (a
/// team message that answers nothing).
pub const NO_LEAD: LeadId = 0;

#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no lead {0}")]
    NoLead(LeadId),
    #[error("no active user {0} to give the lead to")]
    NoSuchUser(String),
}

/// A person's request on a lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeadAction {
    /// Make this user the owner (the actor themself: a claim).
    AssignTo(String),
    /// Back to Unassigned (the owner gives it up, or a manager takes it
    /// away, e.g. when the owner leaves).
    Unassign {
        note: String,
    },
    Handoff {
        to: String,
        note: String,
    },
    SetStatus(Status),
    Close(Outcome),
    Reopen,
    /// Follow up at this unix time.
    FollowUp(i64),
    NextAction(String),
    Note(String),
    /// Escalate now, to `escalate_to` or the managers, who are mailed.
    Escalate {
        note: String,
    },
}

impl LeadAction {
    fn name(&self) -> &'static str {
        match self {
            LeadAction::AssignTo(_) => "lead.assign",
            LeadAction::Unassign { .. } => "lead.unassign",
            LeadAction::Handoff { .. } => "lead.handoff",
            LeadAction::SetStatus(_) => "lead.status",
            LeadAction::Close(_) => "lead.close",
            LeadAction::Reopen => "lead.reopen",
            LeadAction::FollowUp(_) => "lead.follow_up",
            LeadAction::NextAction(_) => "lead.next_action",
            LeadAction::Note(_) => "lead.note",
            LeadAction::Escalate { .. } => "lead.escalate",
        }
    }

    fn describe(&self) -> String {
        match self {
            LeadAction::AssignTo(to) => format!("assign to {to}"),
            LeadAction::Unassign { note } => format!("unassign: {note}"),
            LeadAction::Handoff { to, .. } => format!("hand off to {to}"),
            LeadAction::SetStatus(s) => format!("set status {}", s.label()),
            LeadAction::Close(o) => format!("close as {}", o.label()),
            LeadAction::Reopen => "reopen".into(),
            LeadAction::FollowUp(at) => format!("follow up at {}", rfc3339(*at)),
            LeadAction::NextAction(t) => format!("next action: {t}"),
            LeadAction::Note(_) => "add a note".into(),
            LeadAction::Escalate { note } if note.trim().is_empty() => "escalate".into(),
            LeadAction::Escalate { note } => format!("escalate: {}", note.trim()),
        }
    }
}

/// What happened to a request.
#[derive(Debug, Clone)]
pub enum Acted {
    Done(Arc<Lead>),
    /// Refused by policy or by the lead's state; the sentence is for the
    /// person (it names the owner where that is the reason).
    Refused(String),
}

/// More writes for the transaction that records a lead change, so both
/// commit together (the SMTP gateway records a relayed reply with it).
/// Must be idempotent: a transaction may be retried.
pub type AlsoInTxn = Box<dyn FnMut(&Tx<'_>) -> Result<(), StoreError> + Send + 'static>;

/// What a lead commit wrote: its outcome, and the lead revision it made
/// (0 when it changed no lead).
struct Commit<T> {
    out: T,
    rev: u64,
}

impl<T> Commit<T> {
    fn unchanged(out: T) -> Commit<T> {
        Commit { out, rev: 0 }
    }
}

/// What ingesting one message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// The message was ingested before (exactly once per message key).
    Already(LeadId),
    /// Another copy of a message already in a thread (same Message-ID).
    Copy(LeadId),
    Created(LeadId),
    Joined(LeadId),
    /// A team message that belongs to no lead.
    NoLead,
}

fn rfc3339(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Bounces and other reports from mail systems, not from a customer.
fn is_delivery_report(facts: &MessageFacts) -> bool {
    let local = facts.from.split('@').next().unwrap_or_default();
    ["mailer-daemon", "postmaster"]
        .iter()
        .any(|l| local.eq_ignore_ascii_case(l))
}

/// A message in an audit reason: its Message-ID and subject, one line.
fn describe(facts: &MessageFacts) -> String {
    let subject: String = facts
        .subject
        .chars()
        .take(120)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let id = facts.message_id.as_deref().unwrap_or("(no Message-ID)");
    format!("{id} \"{subject}\"")
}

fn audit_changes(changes: &[Change]) -> Vec<AuditChange> {
    changes
        .iter()
        .map(|c| AuditChange {
            field: c.field.to_owned(),
            before: c.before.clone(),
            after: c.after.clone(),
        })
        .collect()
}

#[derive(Default)]
struct BookState {
    leads: HashMap<LeadId, (u64, Arc<Lead>)>,
    by_message: HashMap<u64, LeadId>,
    /// The reverse: each lead's messages.
    by_lead: HashMap<LeadId, Vec<u64>>,
    /// Addresses of the team: the shared address and every user's own.
    team: Vec<String>,
    /// Enabled users with the rep role, sorted (round-robin candidates).
    reps: Vec<String>,
    /// Every enabled user name (valid owners).
    users: Vec<String>,
    managers: Vec<String>,
    /// User name by own address, to attribute outbound messages.
    user_by_address: HashMap<String, String>,
    /// Every lead by its contact address and by its company domain (lower
    /// case), for the owner rule by person.
    by_contact: HashMap<String, Vec<LeadId>>,
    by_domain: HashMap<String, Vec<LeadId>>,
    /// Shared messages that are auto-replies or bounces.
    marks: HashMap<u64, MessageMark>,
    /// Readable copies of held replies, by message key, and by lead.
    held: HashMap<u64, HeldMark>,
    held_by_lead: HashMap<LeadId, Vec<u64>>,
}

fn unlist(map: &mut HashMap<String, Vec<LeadId>>, key: &str, id: LeadId) {
    if let Some(ids) = map.get_mut(key) {
        ids.retain(|i| *i != id);
        if ids.is_empty() {
            map.remove(key);
        }
    }
}

fn list(map: &mut HashMap<String, Vec<LeadId>>, key: &str, id: LeadId) {
    if key.is_empty() {
        return;
    }
    let ids = map.entry(key.to_owned()).or_default();
    if !ids.contains(&id) {
        ids.push(id);
    }
}

impl BookState {
    /// Installs a lead, keeping the contact and domain lists current.
    fn put_lead(&mut self, rev: u64, lead: Lead) {
        let contact = lead.contact_email.to_lowercase();
        let domain = lead.company_domain.to_lowercase();
        if let Some((_, old)) = self.leads.get(&lead.id) {
            let (old_contact, old_domain) = (
                old.contact_email.to_lowercase(),
                old.company_domain.to_lowercase(),
            );
            if old_contact != contact {
                unlist(&mut self.by_contact, &old_contact, lead.id);
            }
            if old_domain != domain {
                unlist(&mut self.by_domain, &old_domain, lead.id);
            }
        }
        list(&mut self.by_contact, &contact, lead.id);
        list(&mut self.by_domain, &domain, lead.id);
        self.leads.insert(lead.id, (rev, Arc::new(lead)));
    }

    fn map_message(&mut self, key: u64, lead: LeadId) {
        if let Some(old) = self.by_message.insert(key, lead) {
            if old == lead {
                return;
            }
            if let Some(keys) = self.by_lead.get_mut(&old) {
                keys.retain(|k| *k != key);
            }
        }
        self.by_lead.entry(lead).or_default().push(key);
    }
}

const CHANGE_LOG_CAPACITY: usize = 100_000;

pub struct LeadBook {
    store: Store,
    rules: RwLock<(Arc<LeadsConfig>, Arc<Calendar>)>,
    clock: Arc<dyn Clock>,
    state: RwLock<BookState>,
    /// (sequence, lead) of every change, for followers.
    log: Mutex<(u64, VecDeque<(u64, LeadId)>)>,
    version: watch::Sender<u64>,
    /// Due times up to here have been handled by `tick`.
    ticked_until: AtomicI64,
    metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
}

impl LeadBook {
    /// Loads every lead and message mapping from the store.
    pub fn load(
        store: Store,
        cfg: Arc<LeadsConfig>,
        clock: Arc<dyn Clock>,
    ) -> Result<LeadBook, BookError> {
        let cal = Arc::new(
            cfg.calendar()
                .map_err(|e| StoreError::corrupt("leads.calendar", e))?,
        );
        let mut state = BookState::default();
        for lead in store.load_leads()? {
            state.put_lead(0, lead);
        }
        state.by_message = store.load_message_leads()?.into_iter().collect();
        for (&key, &lead) in &state.by_message {
            state.by_lead.entry(lead).or_default().push(key);
        }
        state.marks = store.load_message_marks()?.into_iter().collect();
        let book = LeadBook {
            store,
            rules: RwLock::new((cfg, cal)),
            clock,
            state: RwLock::new(state),
            log: Mutex::new((0, VecDeque::new())),
            version: watch::channel(0).0,
            ticked_until: AtomicI64::new(i64::MIN),
            metrics: std::sync::OnceLock::new(),
        };
        book.refresh_users()?;
        Ok(book)
    }

    /// Where time-to-first-response is reported.
    pub fn set_metrics(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// The rules in force (replaced as a whole on reload).
    pub fn config(&self) -> Arc<LeadsConfig> {
        self.rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    pub fn calendar(&self) -> Arc<Calendar> {
        self.rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// Puts new rules in force (SIGHUP). The caller validated them.
    pub fn set_config(&self, cfg: Arc<LeadsConfig>) -> Result<(), BookError> {
        let cal = Arc::new(
            cfg.calendar()
                .map_err(|e| StoreError::corrupt("leads.calendar", e))?,
        );
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = (cfg, cal);
        self.refresh_users()
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Re-reads users: who is on the team, who can be assigned.
    pub fn refresh_users(&self) -> Result<(), BookError> {
        let users = self.store.user_list()?;
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        st.team = vec![self.config().shared_address.to_lowercase()];
        st.user_by_address.clear();
        st.reps.clear();
        st.users.clear();
        st.managers.clear();
        for u in users.iter().filter(|u| u.enabled) {
            if let Some(email) = &u.email {
                st.team.push(email.to_lowercase());
                st.user_by_address
                    .insert(email.to_lowercase(), u.name.clone());
            }
            st.users.push(u.name.clone());
            match u.role {
                Role::Rep => st.reps.push(u.name.clone()),
                Role::Manager | Role::Admin => st.managers.push(u.name.clone()),
            }
        }
        st.reps.sort();
        st.users.sort();
        Ok(())
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    pub fn lead(&self, id: LeadId) -> Option<Arc<Lead>> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.leads.get(&id).map(|(_, l)| l.clone())
    }

    pub fn lead_for_message(&self, key: u64) -> Option<LeadId> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.by_message.get(&key).copied().filter(|&id| id != NO_LEAD)
    }

    /// The message keys filed under a lead.
    pub fn messages_of(&self, lead: LeadId) -> Vec<u64> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.by_lead.get(&lead).cloned().unwrap_or_default()
    }

    /// Records that message `key` is the readable copy of a held reply.
    pub fn set_held(&self, key: u64, mark: HeldMark) {
        let lead = mark.lead;
        {
            let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
            st.held.insert(key, mark);
            let keys = st.held_by_lead.entry(lead).or_default();
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        self.notify(vec![lead]);
    }

    /// Forgets a held reply's copy (released, discarded, expired).
    pub fn unset_held(&self, key: u64) {
        let lead = {
            let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
            let Some(mark) = st.held.remove(&key) else {
                return;
            };
            if let Some(keys) = st.held_by_lead.get_mut(&mark.lead) {
                keys.retain(|k| *k != key);
            }
            mark.lead
        };
        self.notify(vec![lead]);
    }

    pub fn held_at(&self, key: u64) -> Option<HeldMark> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.held.get(&key).cloned()
    }

    pub fn held_keys_of(&self, lead: LeadId) -> Vec<u64> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.held_by_lead.get(&lead).cloned().unwrap_or_default()
    }

    /// Whether `viewer` sees held copy `key`: in Leads/Held when they sent
    /// it (`review` false); in Review/Held when they own its lead or are a
    /// manager (`review` true).
    pub fn held_visible(&self, key: u64, viewer: &str, review: bool) -> bool {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        let Some(mark) = st.held.get(&key) else {
            return false;
        };
        if !review {
            return mark.sender == viewer;
        }
        st.managers.iter().any(|m| m == viewer)
            || st
                .leads
                .get(&mark.lead)
                .is_some_and(|(_, l)| l.owner.as_deref() == Some(viewer))
    }

    /// Whether a shared message is an auto-reply or a bounce.
    pub fn mark_of(&self, key: u64) -> Option<MessageMark> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.marks.get(&key).copied()
    }

    pub fn is_ingested(&self, key: u64) -> bool {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.by_message.contains_key(&key)
    }

    /// A snapshot of every lead.
    pub fn all(&self) -> Vec<Arc<Lead>> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.leads.values().map(|(_, l)| l.clone()).collect()
    }

    /// Enabled users with the rep role, sorted.
    pub fn reps(&self) -> Vec<String> {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .reps
            .clone()
    }

    pub fn users(&self) -> Vec<String> {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .users
            .clone()
    }

    /// Leads changed after `after`, and the newest sequence; `None` when
    /// the log no longer reaches back that far (re-read everything).
    pub fn changes_since(&self, after: u64) -> Option<(Vec<LeadId>, u64)> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let (newest, entries) = &*log;
        let oldest = entries.front().map(|e| e.0).unwrap_or(newest + 1);
        if after + 1 < oldest && after < *newest {
            return None;
        }
        Some((
            entries
                .iter()
                .filter(|(s, _)| *s > after)
                .map(|(_, l)| *l)
                .collect(),
            *newest,
        ))
    }

    /// Puts the leads `contact erase` changed in memory (they were
    /// written at `revision`), so lists, views and stamps show them erased.
    pub fn install_erased(&self, revision: u64, leads: Vec<Lead>) {
        self.publish(revision, leads, &[]);
    }

    /// Installs committed leads in memory (ignoring older revisions) and
    /// tells followers.
    fn publish(&self, rev: u64, leads: Vec<Lead>, messages: &[(u64, LeadId)]) {
        let ids: Vec<LeadId> = leads.iter().map(|l| l.id).collect();
        {
            let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
            for lead in leads {
                let newer = st.leads.get(&lead.id).is_none_or(|(r, _)| *r <= rev);
                if newer {
                    st.put_lead(rev, lead);
                }
            }
            for (key, lead) in messages {
                st.map_message(*key, *lead);
            }
        }
        self.notify(ids);
    }

    /// Records that these leads changed (or that time changed what they
    /// look like, e.g. became overdue) and wakes followers.
    pub fn notify(&self, ids: Vec<LeadId>) {
        let newest = {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            for id in ids {
                log.0 += 1;
                let seq = log.0;
                log.1.push_back((seq, id));
                if log.1.len() > CHANGE_LOG_CAPACITY {
                    log.1.pop_front();
                }
            }
            log.0
        };
        self.version.send_replace(newest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        auth::{hash_password, Principal},
        config::AuthConfig,
        leads::{threading::MessageFacts, DueKind},
        store::{audit::AuditFilter, users::User},
    };

    /// Monday 2026-11-23 10:00 UTC.
    const MONDAY_10: i64 = 1_795_428_000;

    async fn store_with_team(dir: &std::path::Path) -> Store {
        let store = Store::open(&dir.join("s.redb")).unwrap();
        let cfg = AuthConfig {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            ..Default::default()
        };
        for (name, role) in [
            ("alice", Role::Rep),
            ("bob", Role::Rep),
            ("maria", Role::Manager),
        ] {
            let user = User {
                name: name.into(),
                role,
                enabled: true,
                password_hash: hash_password("pw-pw-pw-pw", &cfg).unwrap(),
                email: Some(format!("{name}@example.com")),
                display_name: None,
                created: 0,
                changed: 0,
            };
            store.user_add("test", user).await.unwrap().unwrap();
        }
        store
    }

    fn inbound(id: &str, from: &str, subject: &str, reply_to: Option<&str>) -> MessageFacts {
        MessageFacts {
            message_id: Some(format!("<{id}>")),
            in_reply_to: reply_to.map(|r| format!("<{r}>")),
            references: reply_to.map(|r| vec![format!("<{r}>")]).unwrap_or_default(),
            subject: subject.into(),
            from: from.into(),
            to: vec!["sales@example.com".into()],
            date: MONDAY_10,
            body_text: "Could you send a quote for 40 seats?".into(),
            ..MessageFacts::default()
        }
    }

    fn book(store: &Store, clock: Arc<ManualClock>) -> LeadBook {
        LeadBook::load(store.clone(), Arc::new(LeadsConfig::default()), clock).unwrap()
    }

    #[tokio::test]
    async fn a_follow_up_falls_due_at_its_time_with_an_injected_clock() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_team(dir.path()).await;
        let clock = Arc::new(ManualClock::new(MONDAY_10));
        let book = book(&store, clock.clone());
        let created = book
            .ingest(
                1,
                inbound("q1@n.test", "dana@n.test", "Quote please", None),
                MONDAY_10,
            )
            .await
            .unwrap();
        let Ingested::Created(id) = created else {
            panic!("{created:?}")
        };
        let lead = book.lead(id).unwrap();
        assert_eq!(lead.owner.as_deref(), Some("alice"));
        assert_eq!(lead.due_kind, Some(DueKind::Response));

        // The owner answers: a follow-up is scheduled two business days out.
        let mut reply = inbound(
            "r1@example.com",
            "alice@example.com",
            "Re: Quote please",
            Some("q1@n.test"),
        );
        reply.to = vec!["dana@n.test".into()];
        clock.advance(3600);
        book.ingest(2, reply, clock.now()).await.unwrap();
        let lead = book.lead(id).unwrap();
        assert_eq!(lead.status, Status::WaitingForReply);
        assert_eq!(lead.due_kind, Some(DueKind::FollowUp));
        let due = lead.due.unwrap();
        assert_eq!(
            due,
            MONDAY_10 + 3600 + 2 * 86_400,
            "Monday 11:00 + 2 business days = Wednesday 11:00"
        );

        // Nothing happens until the due time; at it, the lead is overdue and
        // becomes Follow-up due without any mail arriving.
        clock.set(due - 1);
        assert_eq!(book.tick().await.unwrap(), Some(due));
        assert!(!book.lead(id).unwrap().is_overdue(clock.now()));
        let mut changes = book.subscribe();
        changes.mark_unchanged();
        clock.set(due);
        book.tick().await.unwrap();
        let lead = book.lead(id).unwrap();
        assert!(lead.is_overdue(clock.now()));
        assert_eq!(lead.status, Status::FollowUpDue);
        assert!(
            changes.has_changed().unwrap(),
            "followers are told at the due time"
        );
        let mut actions = Vec::new();
        store
            .audit_events(
                &AuditFilter {
                    lead: Some(id),
                    ..Default::default()
                },
                |e| {
                    actions.push((e.action.clone(), e.actor.clone()));
                    true
                },
            )
            .unwrap();
        assert_eq!(
            actions,
            vec![
                ("lead.create".into(), "leadgate".into()),
                ("lead.outbound".into(), "alice".into()),
                ("lead.due".into(), "leadgate".into())
            ]
        );
        assert!(store.audit_verify().unwrap().first_bad.is_none());
    }

    #[tokio::test]
    async fn a_reply_filed_late_does_not_undo_the_customers_answer() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_team(dir.path()).await;
        let clock = Arc::new(ManualClock::new(MONDAY_10 + 4 * 3600));
        let book = book(&store, clock);
        book.ingest(
            1,
            inbound("q1@n.test", "dana@n.test", "Quote", None),
            MONDAY_10,
        )
        .await
        .unwrap();
        // Her answer to our reply arrives (its References name the enquiry)...
        let mut answer = inbound(
            "q3@n.test",
            "dana@n.test",
            "Re: Quote",
            Some("r1@example.com"),
        );
        answer.references = vec!["<q1@n.test>".into(), "<r1@example.com>".into()];
        book.ingest(2, answer, MONDAY_10 + 2 * 3600).await.unwrap();
        // ...before the reply itself shows up in the shared Sent.
        let mut reply = inbound(
            "r1@example.com",
            "alice@example.com",
            "Re: Quote",
            Some("q1@n.test"),
        );
        reply.to = vec!["dana@n.test".into()];
        assert_eq!(
            book.ingest(3, reply, MONDAY_10 + 3600).await.unwrap(),
            Ingested::Joined(1)
        );
        let lead = book.lead(1).unwrap();
        assert_eq!(
            lead.status,
            Status::Assigned,
            "the customer spoke last: the team owes the answer"
        );
        assert_eq!(lead.due_kind, Some(DueKind::Response));
        assert_eq!(lead.first_response_at, Some(MONDAY_10 + 3600));
    }

    #[tokio::test]
    async fn a_bounce_that_answers_nothing_makes_no_lead_and_takes_no_turn() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_team(dir.path()).await;
        let book = book(&store, Arc::new(ManualClock::new(MONDAY_10)));
        for (key, from) in [(1, "MAILER-DAEMON@mx.n.test"), (2, "postmaster@n.test")] {
            let bounce = inbound(
                &format!("bounce{key}@mx.n.test"),
                from,
                "Undelivered Mail Returned to Sender",
                None,
            );
            assert_eq!(
                book.ingest(key, bounce, MONDAY_10).await.unwrap(),
                Ingested::NoLead
            );
        }
        assert!(book.all().is_empty());
        assert!(book.is_ingested(1) && book.is_ingested(2), "filed, once");
        book.ingest(
            3,
            inbound("m3@x", "c@three.test", "Pricing", None),
            MONDAY_10,
        )
        .await
        .unwrap();
        assert_eq!(
            book.lead(1).unwrap().owner.as_deref(),
            Some("alice"),
            "the first real lead is lead 1 and round-robin starts at alice"
        );
    }

    #[tokio::test]
    async fn round_robin_and_leads_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_team(dir.path()).await;
        let clock = Arc::new(ManualClock::new(MONDAY_10));
        let first = book(&store, clock.clone());
        for (key, from) in [(1, "a@one.test"), (2, "b@two.test")] {
            first
                .ingest(
                    key,
                    inbound(&format!("m{key}@x"), from, "Pricing", None),
                    MONDAY_10,
                )
                .await
                .unwrap();
        }
        let owners: Vec<_> = [1, 2]
            .iter()
            .map(|id| first.lead(*id).unwrap().owner.clone().unwrap())
            .collect();
        assert_eq!(owners, ["alice", "bob"]);
        drop(first);
        let again = book(&store, clock);
        assert_eq!(again.lead(2).unwrap().owner.as_deref(), Some("bob"));
        assert!(again.is_ingested(1) && again.is_ingested(2));
        assert_eq!(
            again
                .ingest(1, inbound("m1@x", "a@one.test", "Pricing", None), MONDAY_10)
                .await
                .unwrap(),
            Ingested::Already(1)
        );
        again
            .ingest(
                3,
                inbound("m3@x", "c@three.test", "Pricing", None),
                MONDAY_10,
            )
            .await
            .unwrap();
        assert_eq!(
            again.lead(3).unwrap().owner.as_deref(),
            Some("alice"),
            "the cursor continued where it stopped"
        );
    }

    #[tokio::test]
    async fn only_a_person_giving_a_lead_notifies_its_new_owner() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_team(dir.path()).await;
        let cfg = LeadsConfig {
            notify_owner: true,
            ..LeadsConfig::default()
        };
        let clock = Arc::new(ManualClock::new(MONDAY_10));
        let book = LeadBook::load(store.clone(), Arc::new(cfg), clock).unwrap();
        for (key, from) in [(1, "a@one.test"), (2, "b@two.test")] {
            book.ingest(
                key,
                inbound(&format!("m{key}@x"), from, "Pricing", None),
                MONDAY_10,
            )
            .await
            .unwrap();
        }
        assert_eq!(book.lead(2).unwrap().owner.as_deref(), Some("bob"));
        assert!(
            store.notices_pending().unwrap().is_empty(),
            "round-robin assignment mails nobody"
        );
        let maria = Principal {
            name: "maria".into(),
            role: Role::Manager,
            email: None,
            display_name: None,
        };
        book.act(&maria, 1, LeadAction::AssignTo("bob".into()))
            .await
            .unwrap();
        let pending = store.notices_pending().unwrap();
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(pending[0].1.to, vec!["bob".to_owned()]);
    }

    #[tokio::test]
    async fn a_refused_action_names_the_owner_and_is_audited() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_team(dir.path()).await;
        let clock = Arc::new(ManualClock::new(MONDAY_10));
        let book = book(&store, clock);
        book.ingest(1, inbound("m1@x", "a@one.test", "Pricing", None), MONDAY_10)
            .await
            .unwrap();
        let bob = Principal {
            name: "bob".into(),
            role: Role::Rep,
            email: None,
            display_name: None,
        };
        let maria = Principal {
            name: "maria".into(),
            role: Role::Manager,
            email: None,
            display_name: None,
        };
        match book
            .act(&bob, 1, LeadAction::AssignTo("bob".into()))
            .await
            .unwrap()
        {
            Acted::Refused(reason) => assert!(reason.contains("alice"), "{reason}"),
            Acted::Done(_) => panic!("a rep took another rep's lead"),
        }
        let Acted::Done(lead) = book
            .act(&maria, 1, LeadAction::AssignTo("bob".into()))
            .await
            .unwrap()
        else {
            panic!("a manager may reassign")
        };
        assert_eq!(lead.owner.as_deref(), Some("bob"));
        let mut actions = Vec::new();
        store
            .audit_events(
                &AuditFilter {
                    lead: Some(1),
                    ..Default::default()
                },
                |e| {
                    actions.push(format!("{} {}", e.actor, e.action));
                    true
                },
            )
            .unwrap();
        assert_eq!(
            actions,
            [
                "leadgate lead.create",
                "bob lead.assign.refused",
                "maria lead.assign"
            ]
        );
    }
}
