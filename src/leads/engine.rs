//! State transitions on a [`Lead`]. Each takes the lead as it is and returns
//! a [`Transition`]: the new lead and the [`Change`]s to write to the audit
//! log (empty when nothing changed; `updated` moves only then). Actions a
//! person asks for can be refused with a [`Refusal`] that says why.
//!
//! Who may do what is [`policy`](crate::policy)'s business; this module only
//! knows what makes sense for the lead.
//!
//! # Response deadlines
//!
//! A customer message puts the lead in the owner's court: status `Assigned`
//! (`New` without an owner), a [`DueKind::Response`] deadline
//! `response_due_business_hours` later, any pending follow-up cancelled and
//! the follow-up count reset. A second message before the team answered
//! keeps the earlier deadline. Vendor and support leads get no deadline.
//! A response deadline that passes changes nothing: the lead is simply
//! overdue ([`Lead::is_overdue`]).
//!
//! A customer message on a closed lead reopens it when it was won, lost or
//! closed for lack of response (the customer is talking again); leads
//! closed as spam, duplicate, unqualified or handed to another team stay
//! closed and only record the message.
//!
//! # The follow-up cycle
//!
//! With `steps_business_days = [s0, s1, ..., sN]` (growing) and
//! `close_after_business_days = c`, counted from the reply the customer has
//! not answered (`waiting_since`):
//!
//! 1. A reply to the customer sets `Waiting for reply` (or keeps
//!    `Quote sent`), `waiting_since` to now and a [`DueKind::FollowUp`]
//!    date `s0` business days later; the follow-up count is 0.
//! 2. When a follow-up date passes ([`on_due`]) with chases still to go,
//!    the lead becomes `Follow-up due`: the owner must chase. It stays so
//!    (and overdue) until they do.
//! 3. A message to the customer while `Follow-up due` is a chase: the count
//!    goes up by one and the next chase is due `s[count]` business days
//!    after the reply (or, when this chase came more than a business day
//!    late, `s[count] - s[count-1]` after it), status `Waiting for reply`.
//! 4. After the last chase (`count == N + 1`) the customer has `c` business
//!    days. When they pass unanswered, a high-value or urgent lead that was
//!    not escalated yet is escalated to `escalate_to` (who is mailed), stays
//!    `Follow-up due` with a note and waits for a manager; any other lead
//!    is closed with outcome `No response`. An escalated lead closes after
//!    one more unanswered chase.
//!
//! So the default `[2, 5]` with `c = 2` is the brief's schedule: reply,
//! chase after 2 business days, chase again 5 after the reply, close (or
//! escalate) 2 business days after that last chase. A follow-up date on a
//! lead that is not waiting for the customer (`New`, `Assigned`, `Needs
//! internal input`) is a reminder: it makes the lead `Follow-up due` and
//! never closes it.
//!
//! Auto-replies and internal mail never move this clock (the book records
//! them on the timeline only); a bounce stops it: the owner must find the
//! right address ([`on_bounce`]).

use chrono::{DateTime, SecondsFormat};

use super::{
    calendar::Calendar,
    rules::{value_signals, LeadsConfig, Triage},
    threading::{domain_of, MessageFacts},
    DueKind, Handoff, Lead, LeadId, Note, Outcome, Status,
};

/// The author of notes the engine writes itself.
pub const SYSTEM_AUTHOR: &str = "leadgate";

/// One field of a lead that changed, formatted for people (labels, RFC 3339
/// times, empty for none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub field: &'static str,
    pub before: String,
    pub after: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub lead: Lead,
    pub changes: Vec<Change>,
}

impl Transition {
    pub fn is_noop(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Why an action on a lead was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("lead {lead} is {status}; reopen it before changing it")]
    Inactive { lead: LeadId, status: Status },
    #[error("lead {lead} is still open; only won, lost or closed leads can be reopened")]
    NotClosed { lead: LeadId },
    #[error("lead {lead} cannot be set to {status} directly; close it with an outcome (move it to 'Close as/...')")]
    NeedsOutcome { lead: LeadId, status: Status },
    #[error("lead {lead} is owned by {owner}, so it cannot be New; unassign it first")]
    NewWithOwner { lead: LeadId, owner: String },
    #[error("lead {lead} has no owner, so it cannot be Assigned; assign it to someone")]
    AssignedWithoutOwner { lead: LeadId },
    #[error("a handoff of lead {lead} needs a note with the context for the new owner")]
    HandoffNeedsNote { lead: LeadId },
    #[error("lead {lead} is already owned by {owner}")]
    AlreadyOwner { lead: LeadId, owner: String },
    #[error("lead {lead} cannot be assigned to an empty user name")]
    EmptyOwner { lead: LeadId },
    #[error("a note on lead {lead} needs some text")]
    EmptyNote { lead: LeadId },
    #[error("a follow-up for lead {lead} must be in the future")]
    FollowUpNotInFuture { lead: LeadId },
}

/// A lead opened by an inbound message: `Assigned` when the assignment found
/// an owner, `New` otherwise, with a response deadline if it is sales work.
pub fn new_lead(
    id: LeadId,
    facts: &MessageFacts,
    triage: &Triage,
    cfg: &LeadsConfig,
    cal: &Calendar,
    now: i64,
) -> Lead {
    let owner = triage.assignment.owner.clone();
    let contact_email = facts.from.trim().to_lowercase();
    let mut lead = Lead {
        id,
        created: now,
        updated: now,
        status: if owner.is_some() {
            Status::Assigned
        } else {
            Status::New
        },
        outcome: None,
        owner,
        category: triage.category,
        contact_name: facts.from_name.clone().filter(|n| !n.trim().is_empty()),
        company_domain: domain_of(&contact_email),
        contact_email,
        source: source(facts, cfg),
        subject: facts.subject.trim().to_owned(),
        value_signals: triage.signals.signals.clone(),
        high_value: triage.signals.high_value,
        urgent: triage.signals.urgent,
        next_action: None,
        due: None,
        due_kind: None,
        followups_sent: 0,
        waiting_since: None,
        escalated: false,
        escalated_to: None,
        first_inbound_at: now,
        first_response_at: None,
        last_inbound_at: Some(now),
        last_outbound_at: None,
        notes: Vec::new(),
        handoffs: Vec::new(),
    };
    if lead.category.in_sales_queues() {
        owe_response(&mut lead, cfg, cal, now);
    }
    lead
}

/// "email to <address>": the first recipient in the shared address's domain
/// (sales@, hello@, info@), else the shared address.
fn source(facts: &MessageFacts, cfg: &LeadsConfig) -> String {
    let ours = domain_of(&cfg.shared_address);
    let address = facts
        .to
        .iter()
        .chain(&facts.cc)
        .find(|a| !ours.is_empty() && domain_of(a) == ours)
        .unwrap_or(&cfg.shared_address);
    format!("email to {}", address.trim().to_lowercase())
}

/// A customer message (see the module docs).
pub fn on_inbound(
    lead: &Lead,
    facts: &MessageFacts,
    cfg: &LeadsConfig,
    cal: &Calendar,
    now: i64,
) -> Transition {
    let mut next = lead.clone();
    next.last_inbound_at = Some(now);
    if next.contact_name.is_none() && facts.from.trim().eq_ignore_ascii_case(&lead.contact_email) {
        next.contact_name = facts.from_name.clone().filter(|n| !n.trim().is_empty());
    }
    let signals = value_signals(cfg, facts);
    for signal in signals.signals {
        if !next.value_signals.contains(&signal) {
            next.value_signals.push(signal);
        }
    }
    next.high_value |= signals.high_value;
    next.urgent |= signals.urgent;

    if !lead.status.is_active() {
        if !reopens_on_customer_message(lead.outcome) {
            return finish(lead, next, now);
        }
        next.outcome = None;
    }
    next.status = unowned_or_assigned(&next);
    next.followups_sent = 0;
    next.waiting_since = None;
    next.escalated = false;
    next.escalated_to = None;
    if lead.category.in_sales_queues() {
        let already_owed = lead.status.is_active() && lead.due_kind == Some(DueKind::Response);
        if !already_owed || lead.due.is_none() {
            owe_response(&mut next, cfg, cal, now);
        }
    } else {
        clear_due(&mut next);
    }
    finish(lead, next, now)
}

fn reopens_on_customer_message(outcome: Option<Outcome>) -> bool {
    matches!(
        outcome,
        None | Some(Outcome::Won | Outcome::Lost | Outcome::NoResponse)
    )
}

/// A message from the team to the customer (see the module docs). `by` is
/// the sender when known; a reply by a known user to an unowned lead makes
/// them the owner (whoever answers is accountable for the follow-up).
/// Replies on closed leads are recorded and change nothing else.
pub fn on_outbound_reply(
    lead: &Lead,
    by: Option<&str>,
    cfg: &LeadsConfig,
    cal: &Calendar,
    now: i64,
) -> Transition {
    let mut next = lead.clone();
    next.last_outbound_at = Some(now);
    next.first_response_at.get_or_insert(now);
    if !lead.status.is_active() {
        return finish(lead, next, now);
    }
    if let (None, Some(by)) = (&lead.owner, by.filter(|b| !b.trim().is_empty())) {
        set_owner(&mut next, Some(by), by, "claimed by replying", now);
    }
    let chase = lead.status == Status::FollowUpDue;
    next.followups_sent = if chase {
        lead.followups_sent.saturating_add(1)
    } else {
        0
    };
    next.waiting_since = if chase {
        lead.waiting_since.or(lead.last_outbound_at).or(Some(now))
    } else {
        Some(now)
    };
    next.status = if lead.status == Status::QuoteSent {
        Status::QuoteSent
    } else {
        Status::WaitingForReply
    };
    if lead.category.in_sales_queues() {
        schedule_follow_up(&mut next, cfg, cal, now);
    } else {
        clear_due(&mut next);
    }
    finish(lead, next, now)
}

/// A delivery failure report for a message of this lead: the customer did
/// not get it, so nobody is waiting for their answer. An active lead goes
/// to `Needs internal input` (Review/Blocked) with a note naming the failed
/// address and why; the owner owes the next step (a response deadline) —
/// finding the right address. A closed lead only records it.
pub fn on_bounce(
    lead: &Lead,
    failed: &[String],
    diagnostic: &str,
    cfg: &LeadsConfig,
    cal: &Calendar,
    now: i64,
) -> Transition {
    let mut next = lead.clone();
    if !lead.status.is_active() {
        return finish(lead, next, now);
    }
    next.status = Status::NeedsInternalInput;
    next.waiting_since = None;
    owe_response(&mut next, cfg, cal, now);
    let to = if failed.is_empty() {
        lead.contact_email.clone()
    } else {
        failed.join(", ")
    };
    let why = if diagnostic.is_empty() {
        String::new()
    } else {
        format!(" ({diagnostic})")
    };
    add_system_note(
        &mut next,
        now,
        format!("delivery to {to} failed{why}: the customer did not get our mail; find the right address"),
    );
    finish(lead, next, now)
}

/// A follow-up date that has come (see the module docs). Does nothing
/// before the date, for response deadlines, and for leads already
/// `Follow-up due`, so calling it again is harmless.
pub fn on_due(lead: &Lead, cfg: &LeadsConfig, now: i64) -> Transition {
    let mut next = lead.clone();
    let follow_up_passed = lead.status.is_active()
        && lead.due_kind == Some(DueKind::FollowUp)
        && lead.due.is_some_and(|due| due <= now);
    if !follow_up_passed {
        return finish(lead, next, now);
    }
    let steps = cfg.follow_up.steps_business_days.len();
    let last_step = lead.followups_sent as usize >= steps;
    match lead.status {
        Status::FollowUpDue => {}
        Status::WaitingForReply | Status::QuoteSent if last_step => {
            if (lead.high_value || lead.urgent) && !lead.escalated {
                escalate(&mut next, cfg, now);
            } else {
                close_unanswered(&mut next, now);
            }
        }
        _ => next.status = Status::FollowUpDue,
    }
    finish(lead, next, now)
}

fn escalate(lead: &mut Lead, cfg: &LeadsConfig, now: i64) {
    let to = cfg.follow_up.escalate_to.clone();
    let whom = to.as_deref().unwrap_or("the managers");
    lead.escalated = true;
    lead.escalated_to = to.clone();
    lead.status = Status::FollowUpDue;
    add_system_note(
        lead,
        now,
        format!(
            "escalated to {whom}: no answer after {} follow-up(s); a manager decides before it is closed",
            lead.followups_sent
        ),
    );
}

/// A person escalates an active lead now (`/escalate`): to `escalate_to`,
/// else every manager; the note says who asked and why. An escalated lead
/// stays as it is.
pub fn escalate_now(
    lead: &Lead,
    by: &str,
    why: &str,
    cfg: &LeadsConfig,
    now: i64,
) -> Result<Transition, Refusal> {
    ensure_active(lead)?;
    let mut next = lead.clone();
    if !lead.escalated {
        let to = cfg.follow_up.escalate_to.clone();
        let whom = to.as_deref().unwrap_or("the managers");
        next.escalated = true;
        next.escalated_to = to.clone();
        let why = why.trim();
        add_system_note(
            &mut next,
            now,
            if why.is_empty() {
                format!("escalated to {whom} by {by}")
            } else {
                format!("escalated to {whom} by {by}: {why}")
            },
        );
    }
    Ok(finish(lead, next, now))
}

fn close_unanswered(lead: &mut Lead, now: i64) {
    lead.status = Status::Closed;
    lead.outcome = Some(Outcome::NoResponse);
    clear_due(lead);
    add_system_note(
        lead,
        now,
        format!(
            "closed: no answer after {} follow-up(s)",
            lead.followups_sent
        ),
    );
}

/// Gives the lead to `to` (or nobody), recording the handoff. `New` becomes
/// `Assigned` with an owner and back without one; other statuses stay.
/// Assigning to the current owner changes nothing.
pub fn assign_to(
    lead: &Lead,
    to: Option<&str>,
    by: &str,
    note: &str,
    now: i64,
) -> Result<Transition, Refusal> {
    if to.is_some_and(|t| t.trim().is_empty()) {
        return Err(Refusal::EmptyOwner { lead: lead.id });
    }
    let mut next = lead.clone();
    if lead.owner.as_deref() != to {
        set_owner(&mut next, to, by, note, now);
    }
    Ok(finish(lead, next, now))
}

/// An owner change with context: the note is required.
pub fn handoff(
    lead: &Lead,
    to: &str,
    by: &str,
    note: &str,
    now: i64,
) -> Result<Transition, Refusal> {
    if note.trim().is_empty() {
        return Err(Refusal::HandoffNeedsNote { lead: lead.id });
    }
    if lead.owner.as_deref() == Some(to) {
        return Err(Refusal::AlreadyOwner {
            lead: lead.id,
            owner: to.to_owned(),
        });
    }
    assign_to(lead, Some(to), by, note, now)
}

fn set_owner(lead: &mut Lead, to: Option<&str>, by: &str, note: &str, now: i64) {
    lead.handoffs.push(Handoff {
        at: now,
        from: lead.owner.clone(),
        to: to.map(str::to_owned),
        by: by.to_owned(),
        note: note.trim().to_owned(),
    });
    lead.owner = to.map(str::to_owned);
    if matches!(lead.status, Status::New | Status::Assigned) {
        lead.status = unowned_or_assigned(lead);
    }
}

/// A status chosen by a person. Won, Lost and Closed come only from
/// [`close`]; a closed lead moves only through [`reopen`]; `New` is for
/// leads without an owner and `Assigned` for leads with one. Entering
/// `Waiting for reply` or `Quote sent` without a pending follow-up schedules
/// one (as a reply would); entering `Follow-up due` makes a follow-up due
/// now (or keeps an earlier date that has already passed).
pub fn set_status(
    lead: &Lead,
    status: Status,
    cfg: &LeadsConfig,
    cal: &Calendar,
    now: i64,
) -> Result<Transition, Refusal> {
    ensure_active(lead)?;
    match (status, &lead.owner) {
        (s, _) if !s.is_active() => {
            return Err(Refusal::NeedsOutcome {
                lead: lead.id,
                status,
            })
        }
        (Status::New, Some(owner)) => {
            return Err(Refusal::NewWithOwner {
                lead: lead.id,
                owner: owner.clone(),
            })
        }
        (Status::Assigned, None) => return Err(Refusal::AssignedWithoutOwner { lead: lead.id }),
        _ => {}
    }
    let mut next = lead.clone();
    next.status = status;
    let follow_up_pending =
        lead.due_kind == Some(DueKind::FollowUp) && lead.due.is_some_and(|due| due > now);
    match status {
        Status::WaitingForReply | Status::QuoteSent if !follow_up_pending => {
            if !matches!(
                lead.status,
                Status::WaitingForReply | Status::QuoteSent | Status::FollowUpDue
            ) || next.waiting_since.is_none()
            {
                next.waiting_since = Some(now);
            }
            schedule_follow_up(&mut next, cfg, cal, now)
        }
        Status::FollowUpDue => {
            next.due = Some(lead.due.map_or(now, |due| due.min(now)));
            next.due_kind = Some(DueKind::FollowUp);
        }
        _ => {}
    }
    Ok(finish(lead, next, now))
}

/// Closes an open lead with an outcome: Won and Lost set those statuses,
/// every other outcome `Closed`. Clears the due date.
pub fn close(lead: &Lead, outcome: Outcome, now: i64) -> Result<Transition, Refusal> {
    ensure_active(lead)?;
    let mut next = lead.clone();
    next.status = outcome.status();
    next.outcome = Some(outcome);
    clear_due(&mut next);
    Ok(finish(lead, next, now))
}

/// Opens a won, lost or closed lead again: `Assigned` (`New` without an
/// owner), no outcome, follow-up count and escalation reset, no due date
/// (the owner sets the next one).
pub fn reopen(lead: &Lead, now: i64) -> Result<Transition, Refusal> {
    if lead.status.is_active() {
        return Err(Refusal::NotClosed { lead: lead.id });
    }
    let mut next = lead.clone();
    next.status = unowned_or_assigned(&next);
    next.outcome = None;
    next.followups_sent = 0;
    next.escalated = false;
    next.escalated_to = None;
    clear_due(&mut next);
    Ok(finish(lead, next, now))
}

/// A follow-up date chosen by a person (the customer asked for time, a call
/// is planned). A lead that was `Follow-up due` goes back to `Waiting for
/// reply`; the follow-up count stays.
pub fn set_follow_up(lead: &Lead, at: i64, now: i64) -> Result<Transition, Refusal> {
    ensure_active(lead)?;
    if at <= now {
        return Err(Refusal::FollowUpNotInFuture { lead: lead.id });
    }
    let mut next = lead.clone();
    next.due = Some(at);
    next.due_kind = Some(DueKind::FollowUp);
    if lead.status == Status::FollowUpDue {
        next.status = Status::WaitingForReply;
    }
    Ok(finish(lead, next, now))
}

/// The next step in words; blank text clears it.
pub fn set_next_action(lead: &Lead, text: &str, now: i64) -> Transition {
    let mut next = lead.clone();
    next.next_action = Some(text.trim().to_owned()).filter(|t| !t.is_empty());
    finish(lead, next, now)
}

/// An internal note.
pub fn add_note(lead: &Lead, author: &str, text: &str, now: i64) -> Result<Transition, Refusal> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Refusal::EmptyNote { lead: lead.id });
    }
    let mut next = lead.clone();
    next.notes.push(Note {
        at: now,
        author: author.trim().to_owned(),
        text: text.to_owned(),
    });
    Ok(finish(lead, next, now))
}

fn ensure_active(lead: &Lead) -> Result<(), Refusal> {
    if lead.status.is_active() {
        Ok(())
    } else {
        Err(Refusal::Inactive {
            lead: lead.id,
            status: lead.status,
        })
    }
}

fn unowned_or_assigned(lead: &Lead) -> Status {
    if lead.owner.is_some() {
        Status::Assigned
    } else {
        Status::New
    }
}

fn owe_response(lead: &mut Lead, cfg: &LeadsConfig, cal: &Calendar, now: i64) {
    lead.due = Some(cal.add_business_hours(now, cfg.follow_up.response_due_business_hours));
    lead.due_kind = Some(DueKind::Response);
}

/// The next follow-up date of a lead waiting for the customer (see the
/// module docs): chase `followups_sent` is due `steps[followups_sent]`
/// business days after `waiting_since`, keeping at least the configured
/// gap after a late chase; after the last chase the customer gets
/// `close_after_business_days`.
fn schedule_follow_up(lead: &mut Lead, cfg: &LeadsConfig, cal: &Calendar, now: i64) {
    let steps = &cfg.follow_up.steps_business_days;
    if steps.is_empty() {
        return clear_due(lead);
    }
    let n = lead.followups_sent as usize;
    let since = lead.waiting_since.unwrap_or(now).min(now);
    let due = match steps.get(n) {
        Some(&days) => {
            let gap = match n.checked_sub(1) {
                Some(prev) => days.saturating_sub(steps[prev]).max(1),
                None => days,
            };
            let on_schedule = cal.add_business_days(since, days);
            // `lead.due` is still the date this chase was due.
            let late = lead.due.is_some_and(|d| now > cal.add_business_days(d, 1));
            if late || on_schedule <= now {
                on_schedule.max(cal.add_business_days(now, gap))
            } else {
                on_schedule
            }
        }
        None => cal.add_business_days(now, cfg.follow_up.close_after_business_days.max(1)),
    };
    lead.due = Some(due);
    lead.due_kind = Some(DueKind::FollowUp);
}

fn clear_due(lead: &mut Lead) {
    lead.due = None;
    lead.due_kind = None;
}

fn add_system_note(lead: &mut Lead, now: i64, text: String) {
    lead.notes.push(Note {
        at: now,
        author: SYSTEM_AUTHOR.into(),
        text,
    });
}

/// The transition from `before` to `after`; `updated` moves only if
/// something changed.
/// A message found late: older than the other side's latest message (a
/// reply filed in the shared Sent after the customer already answered it).
/// Messages act in time order, so it only fills in history — first
/// response, last contact times — and leaves status and due dates alone.
pub fn late_message(lead: &Lead, outbound: bool, at: i64, now: i64) -> Transition {
    let mut next = lead.clone();
    if outbound {
        next.first_response_at = Some(next.first_response_at.map_or(at, |t| t.min(at)));
        next.last_outbound_at = Some(next.last_outbound_at.map_or(at, |t| t.max(at)));
    } else {
        next.last_inbound_at = Some(next.last_inbound_at.map_or(at, |t| t.max(at)));
    }
    finish(lead, next, now)
}

/// Whether a message at `at` is older than the other side's latest one.
pub fn is_late(lead: &Lead, outbound: bool, at: i64) -> bool {
    let other = if outbound {
        lead.last_inbound_at
    } else {
        lead.last_outbound_at
    };
    other.is_some_and(|t| t > at)
}

fn finish(before: &Lead, mut after: Lead, now: i64) -> Transition {
    let changes = diff(before, &after);
    if !changes.is_empty() {
        after.updated = now;
    }
    Transition {
        lead: after,
        changes,
    }
}

/// Every field that differs, plus each appended note and handoff.
pub fn diff(before: &Lead, after: &Lead) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut field = |field: &'static str, b: String, a: String| {
        if b != a {
            changes.push(Change {
                field,
                before: b,
                after: a,
            });
        }
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let time = |v: Option<i64>| v.map(format_time).unwrap_or_default();
    let outcome = |v: Option<Outcome>| v.map(|o| o.label().to_owned()).unwrap_or_default();
    let due_kind = |v: Option<DueKind>| v.map(|k| k.label().to_owned()).unwrap_or_default();

    field(
        "status",
        before.status.label().into(),
        after.status.label().into(),
    );
    field("outcome", outcome(before.outcome), outcome(after.outcome));
    field("owner", text(&before.owner), text(&after.owner));
    field(
        "category",
        before.category.label().into(),
        after.category.label().into(),
    );
    field(
        "contact_name",
        text(&before.contact_name),
        text(&after.contact_name),
    );
    field(
        "contact_email",
        before.contact_email.clone(),
        after.contact_email.clone(),
    );
    field(
        "company_domain",
        before.company_domain.clone(),
        after.company_domain.clone(),
    );
    field("source", before.source.clone(), after.source.clone());
    field("subject", before.subject.clone(), after.subject.clone());
    field(
        "value_signals",
        before.value_signals.join("; "),
        after.value_signals.join("; "),
    );
    field(
        "high_value",
        before.high_value.to_string(),
        after.high_value.to_string(),
    );
    field(
        "urgent",
        before.urgent.to_string(),
        after.urgent.to_string(),
    );
    field(
        "next_action",
        text(&before.next_action),
        text(&after.next_action),
    );
    field("due", time(before.due), time(after.due));
    field(
        "due_kind",
        due_kind(before.due_kind),
        due_kind(after.due_kind),
    );
    field(
        "followups_sent",
        before.followups_sent.to_string(),
        after.followups_sent.to_string(),
    );
    field(
        "escalated",
        before.escalated.to_string(),
        after.escalated.to_string(),
    );
    field(
        "escalated_to",
        text(&before.escalated_to),
        text(&after.escalated_to),
    );
    field(
        "first_inbound_at",
        format_time(before.first_inbound_at),
        format_time(after.first_inbound_at),
    );
    field(
        "first_response_at",
        time(before.first_response_at),
        time(after.first_response_at),
    );
    field(
        "last_inbound_at",
        time(before.last_inbound_at),
        time(after.last_inbound_at),
    );
    field(
        "last_outbound_at",
        time(before.last_outbound_at),
        time(after.last_outbound_at),
    );
    for note in after.notes.iter().skip(before.notes.len()) {
        field(
            "note",
            String::new(),
            format!("{}: {}", note.author, note.text),
        );
    }
    for h in after.handoffs.iter().skip(before.handoffs.len()) {
        let who = |v: &Option<String>| v.clone().unwrap_or_else(|| "(nobody)".into());
        let mut text = format!("{} -> {} by {}", who(&h.from), who(&h.to), h.by);
        if !h.note.is_empty() {
            text = format!("{text}: {}", h.note);
        }
        field("handoff", String::new(), text);
    }
    changes
}

/// RFC 3339 in UTC, or the raw number if out of chrono's range.
fn format_time(at: i64) -> String {
    DateTime::from_timestamp(at, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| at.to_string())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::leads::{
        rules::{Assignment, ValueSignals},
        Category,
    };

    // Friday 2025-03-14 10:00 UTC; the default calendar is UTC Mon-Fri 9-17.
    const FRI_10: i64 = 1_741_946_400;
    const HOUR: i64 = 3_600;
    const DAY: i64 = 86_400;

    fn cfg() -> LeadsConfig {
        LeadsConfig::default()
    }

    fn cal() -> Calendar {
        Calendar::default()
    }

    fn inbound(subject: &str, body: &str) -> MessageFacts {
        MessageFacts {
            message_id: Some("<1@acme.test>".into()),
            from: "carla@acme.test".into(),
            from_name: Some("Carla Customer".into()),
            to: vec!["Sales@Example.com".into()],
            subject: subject.into(),
            body_text: body.into(),
            date: FRI_10,
            ..MessageFacts::default()
        }
    }

    fn triage_for(owner: Option<&str>, category: Category) -> Triage {
        Triage {
            category,
            signals: ValueSignals::default(),
            assignment: Assignment {
                owner: owner.map(str::to_owned),
                rule: "test".into(),
                next_cursor: 0,
            },
        }
    }

    fn owned_lead() -> Lead {
        new_lead(
            42,
            &inbound("Quote for 40 seats", ""),
            &triage_for(Some("alice"), Category::PricingQuote),
            &cfg(),
            &cal(),
            FRI_10,
        )
    }

    /// Replied to at `at`: waiting for the customer.
    fn waiting_lead(at: i64) -> Lead {
        on_outbound_reply(&owned_lead(), Some("alice"), &cfg(), &cal(), at).lead
    }

    fn due(lead: &Lead) -> i64 {
        lead.due.expect("a due date")
    }

    fn change<'a>(t: &'a Transition, field: &str) -> Option<&'a Change> {
        t.changes.iter().find(|c| c.field == field)
    }

    // ---- new leads ----

    #[test]
    fn new_lead_with_owner_is_assigned_and_owes_a_response() {
        let lead = owned_lead();
        assert_eq!(lead.status, Status::Assigned);
        assert_eq!(lead.owner.as_deref(), Some("alice"));
        assert_eq!(lead.due_kind, Some(DueKind::Response));
        assert_eq!(due(&lead), FRI_10 + 4 * HOUR);
        assert_eq!(lead.contact_email, "carla@acme.test");
        assert_eq!(lead.company_domain, "acme.test");
        assert_eq!(lead.contact_name.as_deref(), Some("Carla Customer"));
        assert_eq!(lead.source, "email to sales@example.com");
        assert_eq!(lead.first_inbound_at, FRI_10);
        assert_eq!(lead.last_inbound_at, Some(FRI_10));
    }

    #[test]
    fn new_lead_without_owner_is_new() {
        let lead = new_lead(
            1,
            &inbound("Hi", ""),
            &triage_for(None, Category::NewInbound),
            &cfg(),
            &cal(),
            FRI_10,
        );
        assert_eq!(lead.status, Status::New);
        assert_eq!(lead.owner, None);
        assert_eq!(lead.due_kind, Some(DueKind::Response));
    }

    #[test]
    fn new_vendor_and_support_leads_have_no_deadline() {
        for category in [Category::VendorIrrelevant, Category::SupportHandoff] {
            let lead = new_lead(
                1,
                &inbound("Hi", ""),
                &triage_for(None, category),
                &cfg(),
                &cal(),
                FRI_10,
            );
            assert_eq!((lead.due, lead.due_kind), (None, None));
        }
    }

    #[test]
    fn new_lead_carries_the_value_signals() {
        let mut t = triage_for(None, Category::NewInbound);
        t.signals = ValueSignals {
            signals: vec!["seats: 500 users".into()],
            high_value: true,
            urgent: true,
        };
        let lead = new_lead(1, &inbound("Hi", ""), &t, &cfg(), &cal(), FRI_10);
        assert!(lead.high_value && lead.urgent);
        assert_eq!(lead.value_signals, ["seats: 500 users"]);
    }

    // ---- customer messages ----

    #[test]
    fn customer_answer_cancels_follow_up_and_puts_lead_back_with_owner() {
        let waiting = waiting_lead(FRI_10 + HOUR);
        assert_eq!(waiting.due_kind, Some(DueKind::FollowUp));
        let now = FRI_10 + 2 * DAY;
        let t = on_inbound(&waiting, &inbound("Re: Quote", ""), &cfg(), &cal(), now);
        assert_eq!(t.lead.status, Status::Assigned);
        assert_eq!(t.lead.due_kind, Some(DueKind::Response));
        assert_eq!(due(&t.lead), cal().add_business_hours(now, 4));
        assert_eq!(t.lead.followups_sent, 0);
        assert_eq!(t.lead.last_inbound_at, Some(now));
        assert_eq!(t.lead.updated, now);
        let status = change(&t, "status").unwrap();
        assert_eq!(
            (status.before.as_str(), status.after.as_str()),
            ("Waiting for reply", "Assigned")
        );
    }

    #[test]
    fn customer_answer_resets_follow_ups_and_escalation() {
        let mut lead = waiting_lead(FRI_10);
        lead.status = Status::FollowUpDue;
        lead.followups_sent = 1;
        lead.escalated = true;
        lead.escalated_to = Some("maria".into());
        let t = on_inbound(
            &lead,
            &inbound("Re: Quote", ""),
            &cfg(),
            &cal(),
            FRI_10 + 9 * DAY,
        );
        assert_eq!(t.lead.followups_sent, 0);
        assert!(!t.lead.escalated);
        assert_eq!(t.lead.escalated_to, None);
    }

    #[test]
    fn second_customer_message_keeps_the_earlier_response_deadline() {
        let lead = owned_lead();
        let t = on_inbound(
            &lead,
            &inbound("Re: Quote", "any news?"),
            &cfg(),
            &cal(),
            FRI_10 + HOUR,
        );
        assert_eq!(t.lead.due, lead.due);
    }

    #[test]
    fn customer_answer_on_an_unowned_lead_makes_it_new() {
        let lead = new_lead(
            1,
            &inbound("Hi", ""),
            &triage_for(None, Category::NewInbound),
            &cfg(),
            &cal(),
            FRI_10,
        );
        let waiting = on_outbound_reply(&lead, None, &cfg(), &cal(), FRI_10 + HOUR).lead;
        assert_eq!(waiting.owner, None);
        let t = on_inbound(
            &waiting,
            &inbound("Re: Hi", ""),
            &cfg(),
            &cal(),
            FRI_10 + DAY,
        );
        assert_eq!(t.lead.status, Status::New);
    }

    #[test]
    fn customer_answer_adds_new_value_signals() {
        let lead = owned_lead();
        let t = on_inbound(
            &lead,
            &inbound("Re: Quote", "make it 500 users, urgent"),
            &cfg(),
            &cal(),
            FRI_10 + HOUR,
        );
        assert!(t.lead.high_value && t.lead.urgent);
        assert_eq!(t.lead.value_signals, ["seats: 500 users", "urgent: urgent"]);
    }

    #[test]
    fn customer_answer_reopens_a_lead_closed_for_no_response() {
        let closed = close(&waiting_lead(FRI_10), Outcome::NoResponse, FRI_10 + DAY)
            .unwrap()
            .lead;
        let now = FRI_10 + 10 * DAY;
        let t = on_inbound(
            &closed,
            &inbound("Re: Quote", "sorry, was away"),
            &cfg(),
            &cal(),
            now,
        );
        assert_eq!(t.lead.status, Status::Assigned);
        assert_eq!(t.lead.outcome, None);
        assert_eq!(t.lead.due_kind, Some(DueKind::Response));
        assert!(t.lead.due.is_some_and(|d| d > now));
    }

    #[test]
    fn customer_answer_on_spam_stays_closed_and_is_recorded() {
        let closed = close(&owned_lead(), Outcome::Spam, FRI_10 + HOUR)
            .unwrap()
            .lead;
        let now = FRI_10 + DAY;
        let t = on_inbound(&closed, &inbound("Re: buy now", ""), &cfg(), &cal(), now);
        assert_eq!(t.lead.status, Status::Closed);
        assert_eq!(t.lead.outcome, Some(Outcome::Spam));
        assert_eq!(t.lead.due, None);
        assert_eq!(t.lead.last_inbound_at, Some(now));
    }

    #[test]
    fn customer_answer_on_a_support_lead_sets_no_deadline() {
        let lead = new_lead(
            1,
            &inbound("Hi", ""),
            &triage_for(None, Category::SupportHandoff),
            &cfg(),
            &cal(),
            FRI_10,
        );
        let t = on_inbound(&lead, &inbound("Re: Hi", ""), &cfg(), &cal(), FRI_10 + DAY);
        assert_eq!(t.lead.due, None);
    }

    // ---- replies ----

    #[test]
    fn owner_reply_waits_for_customer_and_schedules_first_follow_up() {
        let now = FRI_10 + HOUR;
        let t = on_outbound_reply(&owned_lead(), Some("alice"), &cfg(), &cal(), now);
        assert_eq!(t.lead.status, Status::WaitingForReply);
        assert_eq!(t.lead.due_kind, Some(DueKind::FollowUp));
        // Friday 11:00 + 2 business days = Tuesday 11:00.
        assert_eq!(due(&t.lead), now + 4 * DAY);
        assert_eq!(t.lead.first_response_at, Some(now));
        assert_eq!(t.lead.first_response_secs(), Some(HOUR));
        assert_eq!(t.lead.last_outbound_at, Some(now));
    }

    #[test]
    fn later_replies_keep_the_first_response_time() {
        let lead = waiting_lead(FRI_10 + HOUR);
        let t = on_outbound_reply(&lead, Some("alice"), &cfg(), &cal(), FRI_10 + DAY);
        assert_eq!(t.lead.first_response_at, Some(FRI_10 + HOUR));
        assert_eq!(t.lead.followups_sent, 0);
    }

    #[test]
    fn reply_keeps_quote_sent() {
        let mut lead = owned_lead();
        lead.status = Status::QuoteSent;
        let t = on_outbound_reply(&lead, Some("alice"), &cfg(), &cal(), FRI_10 + HOUR);
        assert_eq!(t.lead.status, Status::QuoteSent);
        assert_eq!(t.lead.due_kind, Some(DueKind::FollowUp));
    }

    #[test]
    fn reply_to_an_unowned_lead_claims_it_for_the_sender() {
        let lead = new_lead(
            1,
            &inbound("Hi", ""),
            &triage_for(None, Category::NewInbound),
            &cfg(),
            &cal(),
            FRI_10,
        );
        let t = on_outbound_reply(&lead, Some("bob"), &cfg(), &cal(), FRI_10 + HOUR);
        assert_eq!(t.lead.owner.as_deref(), Some("bob"));
        assert_eq!(t.lead.handoffs.len(), 1);
        assert_eq!(t.lead.handoffs[0].note, "claimed by replying");
        assert_eq!(
            change(&t, "handoff").unwrap().after,
            "(nobody) -> bob by bob: claimed by replying"
        );
    }

    #[test]
    fn unattributed_reply_to_an_unowned_lead_claims_nothing() {
        let lead = new_lead(
            1,
            &inbound("Hi", ""),
            &triage_for(None, Category::NewInbound),
            &cfg(),
            &cal(),
            FRI_10,
        );
        let t = on_outbound_reply(&lead, None, &cfg(), &cal(), FRI_10 + HOUR);
        assert_eq!(t.lead.owner, None);
        assert_eq!(t.lead.status, Status::WaitingForReply);
    }

    #[test]
    fn reply_on_a_closed_lead_is_recorded_only() {
        let closed = close(&owned_lead(), Outcome::Won, FRI_10 + HOUR)
            .unwrap()
            .lead;
        let t = on_outbound_reply(&closed, Some("alice"), &cfg(), &cal(), FRI_10 + DAY);
        assert_eq!(t.lead.status, Status::Won);
        assert_eq!(t.lead.due, None);
        assert_eq!(t.lead.last_outbound_at, Some(FRI_10 + DAY));
    }

    // ---- the follow-up cycle ----

    #[test]
    fn on_due_before_the_date_changes_nothing() {
        let lead = waiting_lead(FRI_10);
        let t = on_due(&lead, &cfg(), due(&lead) - 1);
        assert!(t.is_noop());
        assert_eq!(t.lead, lead);
    }

    #[test]
    fn response_deadline_passing_changes_no_state() {
        let lead = owned_lead();
        let t = on_due(&lead, &cfg(), due(&lead) + DAY);
        assert!(t.is_noop());
        assert!(t.lead.is_overdue(due(&lead) + DAY));
    }

    #[test]
    fn follow_up_date_makes_the_lead_follow_up_due_once() {
        let lead = waiting_lead(FRI_10);
        let at = due(&lead);
        let t = on_due(&lead, &cfg(), at);
        assert_eq!(t.lead.status, Status::FollowUpDue);
        assert!(t.lead.is_overdue(at));
        assert!(on_due(&t.lead, &cfg(), at + DAY).is_noop());
    }

    /// Waits for the follow-up date, then chases an hour later.
    fn chase(lead: Lead, c: &LeadsConfig) -> Lead {
        let at = due(&lead);
        let lead = on_due(&lead, c, at).lead;
        assert_eq!(lead.status, Status::FollowUpDue, "{lead:?}");
        on_outbound_reply(&lead, Some("alice"), c, &cal(), at + HOUR).lead
    }

    #[test]
    fn the_briefs_schedule_chases_at_2_and_5_days_after_the_reply_then_closes() {
        let c = cfg();
        let replied = FRI_10;
        let lead = waiting_lead(replied);
        assert_eq!(lead.waiting_since, Some(replied));
        assert_eq!(due(&lead), cal().add_business_days(replied, 2));

        // First chase (+2): the next is due 5 business days after the reply.
        let lead = chase(lead, &c);
        assert_eq!(lead.followups_sent, 1);
        assert_eq!(lead.status, Status::WaitingForReply);
        assert_eq!(lead.waiting_since, Some(replied));
        assert_eq!(due(&lead), cal().add_business_days(replied, 5));

        // Second chase (+5): the customer gets 2 more business days.
        let lead = chase(lead, &c);
        assert_eq!(lead.followups_sent, 2);
        let chased = cal().add_business_days(replied, 5) + HOUR;
        assert_eq!(due(&lead), cal().add_business_days(chased, 2));

        // Then it closes as No response.
        let t = on_due(&lead, &c, due(&lead));
        assert_eq!(t.lead.status, Status::Closed);
        assert_eq!(t.lead.outcome, Some(Outcome::NoResponse));
        assert_eq!(t.lead.due, None);
        assert!(t
            .lead
            .notes
            .last()
            .unwrap()
            .text
            .contains("no answer after 2"));
        assert_eq!(change(&t, "outcome").unwrap().after, "No response");
    }

    #[test]
    fn a_late_chase_keeps_the_gap_to_the_next_one() {
        let c = cfg();
        let lead = waiting_lead(FRI_10);
        // The owner chases only 4 business days after the reply.
        let at = cal().add_business_days(FRI_10, 4);
        let lead = on_due(&lead, &c, due(&lead)).lead;
        let lead = on_outbound_reply(&lead, Some("alice"), &c, &cal(), at).lead;
        // Not 1 day later (5 after the reply), but the 3-day gap of the
        // schedule after this chase.
        assert_eq!(due(&lead), cal().add_business_days(at, 3));
    }

    #[test]
    fn longer_step_lists_chase_once_per_step() {
        let mut c = cfg();
        c.follow_up.steps_business_days = vec![1, 2, 3];
        let mut lead = on_outbound_reply(&owned_lead(), Some("alice"), &c, &cal(), FRI_10).lead;
        for n in 1..=3 {
            lead = chase(lead, &c);
            assert_eq!(lead.followups_sent, n);
        }
        let t = on_due(&lead, &c, due(&lead));
        assert_eq!(t.lead.outcome, Some(Outcome::NoResponse));
    }

    #[test]
    fn high_value_lead_is_escalated_before_closing() {
        let mut c = cfg();
        c.follow_up.escalate_to = Some("maria".into());
        let mut lead = waiting_lead(FRI_10);
        lead.high_value = true;
        let lead = chase(chase(lead, &c), &c);

        let last = due(&lead);
        let t = on_due(&lead, &c, last);
        assert_eq!(t.lead.status, Status::FollowUpDue);
        assert!(t.lead.escalated);
        assert_eq!(t.lead.escalated_to.as_deref(), Some("maria"));
        assert!(t.lead.is_overdue(last));
        assert!(t
            .lead
            .notes
            .last()
            .unwrap()
            .text
            .starts_with("escalated to maria"));
        assert!(on_due(&t.lead, &c, last + DAY).is_noop());
    }

    #[test]
    fn escalated_lead_closes_after_another_unanswered_chase() {
        let mut lead = waiting_lead(FRI_10);
        lead.urgent = true;
        let mut lead = chase(chase(lead, &cfg()), &cfg());
        lead = on_due(&lead, &cfg(), due(&lead)).lead;
        assert!(lead.escalated);
        assert_eq!(lead.escalated_to, None);

        let chase_at = due(&lead) + DAY;
        lead = on_outbound_reply(&lead, Some("maria"), &cfg(), &cal(), chase_at).lead;
        assert_eq!(lead.followups_sent, 3);
        assert_eq!(due(&lead), cal().add_business_days(chase_at, 2));
        let t = on_due(&lead, &cfg(), due(&lead));
        assert_eq!(t.lead.outcome, Some(Outcome::NoResponse));
    }

    #[test]
    fn a_reminder_on_an_assigned_lead_never_closes_it() {
        let mut c = cfg();
        c.follow_up.steps_business_days = vec![3];
        let lead = set_follow_up(&owned_lead(), FRI_10 + DAY, FRI_10)
            .unwrap()
            .lead;
        let t = on_due(&lead, &c, FRI_10 + DAY);
        assert_eq!(t.lead.status, Status::FollowUpDue);
        assert_eq!(t.lead.outcome, None);
    }

    #[test]
    fn with_a_single_step_one_chase_then_close() {
        let mut c = cfg();
        c.follow_up.steps_business_days = vec![3];
        let lead = on_outbound_reply(&owned_lead(), Some("alice"), &c, &cal(), FRI_10).lead;
        let lead = chase(lead, &c);
        let t = on_due(&lead, &c, due(&lead));
        assert_eq!(t.lead.outcome, Some(Outcome::NoResponse));
    }

    #[test]
    fn a_customer_answer_stops_the_clock_and_the_next_reply_starts_it_again() {
        let c = cfg();
        let lead = chase(waiting_lead(FRI_10), &c);
        let answered = due(&lead) - HOUR;
        let lead = on_inbound(&lead, &inbound("Re: Quote", "yes"), &c, &cal(), answered).lead;
        assert_eq!(lead.waiting_since, None);
        assert_eq!(lead.followups_sent, 0);
        let lead = on_outbound_reply(&lead, Some("alice"), &c, &cal(), answered + HOUR).lead;
        assert_eq!(lead.waiting_since, Some(answered + HOUR));
        assert_eq!(due(&lead), cal().add_business_days(answered + HOUR, 2));
    }

    #[test]
    fn a_bounce_stops_the_wait_and_asks_the_owner_for_the_right_address() {
        let c = cfg();
        let lead = waiting_lead(FRI_10);
        let at = FRI_10 + HOUR;
        let t = on_bounce(
            &lead,
            &["carla@acme.test".into()],
            "550 5.1.1 user unknown",
            &c,
            &cal(),
            at,
        );
        assert_eq!(t.lead.status, Status::NeedsInternalInput);
        assert_eq!(t.lead.due_kind, Some(DueKind::Response));
        assert_eq!(t.lead.waiting_since, None);
        let note = &t.lead.notes.last().unwrap().text;
        assert!(
            note.starts_with("delivery to carla@acme.test failed (550 5.1.1 user unknown)"),
            "{note}"
        );
        assert_eq!(change(&t, "status").unwrap().after, "Needs internal input");
        // A closed lead only records it.
        let closed = close(&lead, Outcome::Won, at).unwrap().lead;
        assert!(on_bounce(&closed, &[], "", &c, &cal(), at + HOUR).is_noop());
    }

    // ---- assignment and handoff ----

    #[test]
    fn assigning_records_the_handoff_and_moves_new_to_assigned() {
        let lead = new_lead(
            1,
            &inbound("Hi", ""),
            &triage_for(None, Category::NewInbound),
            &cfg(),
            &cal(),
            FRI_10,
        );
        let t = assign_to(&lead, Some("bob"), "maria", "", FRI_10 + HOUR).unwrap();
        assert_eq!(t.lead.status, Status::Assigned);
        assert_eq!(t.lead.owner.as_deref(), Some("bob"));
        assert_eq!(
            t.lead.handoffs,
            [Handoff {
                at: FRI_10 + HOUR,
                from: None,
                to: Some("bob".into()),
                by: "maria".into(),
                note: String::new()
            }]
        );
        assert_eq!(change(&t, "owner").unwrap().after, "bob");
    }

    #[test]
    fn unassigning_makes_an_assigned_lead_new_again() {
        let t = assign_to(
            &owned_lead(),
            None,
            "maria",
            "back to triage",
            FRI_10 + HOUR,
        )
        .unwrap();
        assert_eq!(t.lead.status, Status::New);
        assert_eq!(t.lead.owner, None);
    }

    #[test]
    fn reassigning_keeps_a_working_status() {
        let t = assign_to(
            &waiting_lead(FRI_10),
            Some("bob"),
            "maria",
            "",
            FRI_10 + HOUR,
        )
        .unwrap();
        assert_eq!(t.lead.status, Status::WaitingForReply);
    }

    #[test]
    fn assigning_to_the_current_owner_changes_nothing() {
        let lead = owned_lead();
        let t = assign_to(&lead, Some("alice"), "maria", "", FRI_10 + HOUR).unwrap();
        assert!(t.is_noop());
        assert_eq!(t.lead.updated, lead.updated);
    }

    #[test]
    fn assigning_to_an_empty_name_is_refused() {
        let err = assign_to(&owned_lead(), Some(" "), "maria", "", FRI_10).unwrap_err();
        assert_eq!(err, Refusal::EmptyOwner { lead: 42 });
    }

    #[test]
    fn handoff_requires_a_note() {
        let err = handoff(&owned_lead(), "bob", "alice", "  ", FRI_10).unwrap_err();
        assert_eq!(err, Refusal::HandoffNeedsNote { lead: 42 });
        assert!(err.to_string().contains("needs a note"));
    }

    #[test]
    fn handoff_to_the_current_owner_is_refused() {
        let err = handoff(&owned_lead(), "alice", "maria", "context", FRI_10).unwrap_err();
        assert!(err.to_string().contains("already owned by alice"));
    }

    #[test]
    fn handoff_records_who_from_whom_and_why() {
        let t = handoff(
            &owned_lead(),
            "bob",
            "alice",
            "Bob knows their CTO",
            FRI_10 + HOUR,
        )
        .unwrap();
        assert_eq!(t.lead.owner.as_deref(), Some("bob"));
        assert_eq!(
            change(&t, "handoff").unwrap().after,
            "alice -> bob by alice: Bob knows their CTO"
        );
    }

    // ---- status, close, reopen ----

    #[test]
    fn set_status_refuses_closing_statuses() {
        for status in [Status::Won, Status::Lost, Status::Closed] {
            let err = set_status(&owned_lead(), status, &cfg(), &cal(), FRI_10).unwrap_err();
            assert_eq!(err, Refusal::NeedsOutcome { lead: 42, status });
            assert!(err.to_string().contains("Close as/"));
        }
    }

    #[test]
    fn set_status_refuses_to_move_a_closed_lead() {
        let closed = close(&owned_lead(), Outcome::Lost, FRI_10).unwrap().lead;
        let err = set_status(&closed, Status::Assigned, &cfg(), &cal(), FRI_10).unwrap_err();
        assert_eq!(
            err,
            Refusal::Inactive {
                lead: 42,
                status: Status::Lost
            }
        );
        assert!(err.to_string().contains("reopen"));
    }

    #[test]
    fn set_status_keeps_new_and_assigned_consistent_with_the_owner() {
        let err = set_status(&owned_lead(), Status::New, &cfg(), &cal(), FRI_10).unwrap_err();
        assert!(err.to_string().contains("owned by alice"));
        let unowned = assign_to(&owned_lead(), None, "maria", "", FRI_10)
            .unwrap()
            .lead;
        let err = set_status(&unowned, Status::Assigned, &cfg(), &cal(), FRI_10).unwrap_err();
        assert_eq!(err, Refusal::AssignedWithoutOwner { lead: 42 });
    }

    #[test]
    fn set_status_needs_internal_input_keeps_the_deadline() {
        let lead = owned_lead();
        let t = set_status(
            &lead,
            Status::NeedsInternalInput,
            &cfg(),
            &cal(),
            FRI_10 + HOUR,
        )
        .unwrap();
        assert_eq!(t.lead.status, Status::NeedsInternalInput);
        assert_eq!(t.lead.due, lead.due);
        assert_eq!(t.changes.len(), 1);
    }

    #[test]
    fn set_status_waiting_schedules_a_follow_up_when_none_is_pending() {
        let now = FRI_10 + HOUR;
        let t = set_status(&owned_lead(), Status::WaitingForReply, &cfg(), &cal(), now).unwrap();
        assert_eq!(t.lead.due_kind, Some(DueKind::FollowUp));
        assert_eq!(due(&t.lead), cal().add_business_days(now, 2));
    }

    #[test]
    fn set_status_quote_sent_keeps_a_pending_follow_up() {
        let lead = waiting_lead(FRI_10);
        let t = set_status(&lead, Status::QuoteSent, &cfg(), &cal(), FRI_10 + HOUR).unwrap();
        assert_eq!(t.lead.status, Status::QuoteSent);
        assert_eq!(t.lead.due, lead.due);
    }

    #[test]
    fn set_status_follow_up_due_makes_it_due_now() {
        let lead = waiting_lead(FRI_10);
        let now = FRI_10 + HOUR;
        let t = set_status(&lead, Status::FollowUpDue, &cfg(), &cal(), now).unwrap();
        assert_eq!(t.lead.due, Some(now));
        assert!(t.lead.is_overdue(now));
    }

    #[test]
    fn set_status_follow_up_due_keeps_an_earlier_passed_date() {
        let lead = owned_lead();
        let now = due(&lead) + DAY;
        let t = set_status(&lead, Status::FollowUpDue, &cfg(), &cal(), now).unwrap();
        assert_eq!(t.lead.due, lead.due);
        assert_eq!(t.lead.due_kind, Some(DueKind::FollowUp));
    }

    #[test]
    fn set_status_to_the_same_status_changes_nothing() {
        let t = set_status(
            &owned_lead(),
            Status::Assigned,
            &cfg(),
            &cal(),
            FRI_10 + HOUR,
        )
        .unwrap();
        assert!(t.is_noop());
    }

    #[test]
    fn close_records_the_outcome_and_clears_the_due_date() {
        let cases = [
            (Outcome::Won, Status::Won),
            (Outcome::Lost, Status::Lost),
            (Outcome::Duplicate, Status::Closed),
            (Outcome::HandedToAnotherTeam, Status::Closed),
        ];
        for (outcome, status) in cases {
            let t = close(&waiting_lead(FRI_10), outcome, FRI_10 + DAY).unwrap();
            assert_eq!(t.lead.status, status);
            assert_eq!(t.lead.outcome, Some(outcome));
            assert_eq!((t.lead.due, t.lead.due_kind), (None, None));
            assert!(!t.lead.is_overdue(i64::MAX));
        }
    }

    #[test]
    fn closing_a_closed_lead_is_refused() {
        let closed = close(&owned_lead(), Outcome::Won, FRI_10).unwrap().lead;
        let err = close(&closed, Outcome::Lost, FRI_10).unwrap_err();
        assert_eq!(
            err,
            Refusal::Inactive {
                lead: 42,
                status: Status::Won
            }
        );
    }

    #[test]
    fn reopen_brings_a_closed_lead_back_to_its_owner() {
        let mut lead = waiting_lead(FRI_10);
        lead.followups_sent = 1;
        lead.escalated = true;
        let closed = close(&lead, Outcome::NoResponse, FRI_10 + DAY)
            .unwrap()
            .lead;
        let t = reopen(&closed, FRI_10 + 2 * DAY).unwrap();
        assert_eq!(t.lead.status, Status::Assigned);
        assert_eq!(t.lead.outcome, None);
        assert_eq!(t.lead.followups_sent, 0);
        assert!(!t.lead.escalated);
    }

    #[test]
    fn reopen_of_an_open_lead_is_refused() {
        assert_eq!(
            reopen(&owned_lead(), FRI_10),
            Err(Refusal::NotClosed { lead: 42 })
        );
    }

    // ---- follow-up dates, next action, notes ----

    #[test]
    fn set_follow_up_postpones_a_due_follow_up() {
        let mut lead = waiting_lead(FRI_10);
        lead = on_due(&lead, &cfg(), due(&lead)).lead;
        let now = due(&lead) + HOUR;
        let t = set_follow_up(&lead, now + 7 * DAY, now).unwrap();
        assert_eq!(t.lead.status, Status::WaitingForReply);
        assert_eq!(t.lead.due, Some(now + 7 * DAY));
        assert!(!t.lead.is_overdue(now));
    }

    #[test]
    fn set_follow_up_in_the_past_is_refused() {
        let err = set_follow_up(&owned_lead(), FRI_10, FRI_10).unwrap_err();
        assert_eq!(err, Refusal::FollowUpNotInFuture { lead: 42 });
    }

    #[test]
    fn set_follow_up_on_a_closed_lead_is_refused() {
        let closed = close(&owned_lead(), Outcome::Spam, FRI_10).unwrap().lead;
        assert!(set_follow_up(&closed, FRI_10 + DAY, FRI_10).is_err());
    }

    #[test]
    fn next_action_is_trimmed_and_blank_clears_it() {
        let t = set_next_action(&owned_lead(), "  Send revised quote ", FRI_10);
        assert_eq!(t.lead.next_action.as_deref(), Some("Send revised quote"));
        let t = set_next_action(&t.lead, "   ", FRI_10 + 1);
        assert_eq!(t.lead.next_action, None);
        assert_eq!(
            change(&t, "next_action").unwrap().before,
            "Send revised quote"
        );
    }

    #[test]
    fn notes_are_appended_and_empty_ones_refused() {
        let t = add_note(&owned_lead(), "bob", " Their CFO signs off ", FRI_10).unwrap();
        assert_eq!(t.lead.notes[0].text, "Their CFO signs off");
        assert_eq!(
            change(&t, "note").unwrap().after,
            "bob: Their CFO signs off"
        );
        assert_eq!(
            add_note(&owned_lead(), "bob", " ", FRI_10),
            Err(Refusal::EmptyNote { lead: 42 })
        );
    }

    #[test]
    fn changes_show_times_in_rfc3339() {
        let t = on_outbound_reply(&owned_lead(), Some("alice"), &cfg(), &cal(), FRI_10 + HOUR);
        let due = change(&t, "due").unwrap();
        assert_eq!(due.before, "2025-03-14T14:00:00Z");
        assert_eq!(due.after, "2025-03-18T11:00:00Z");
        assert_eq!(change(&t, "due_kind").unwrap().after, "follow-up");
    }

    #[test]
    fn format_time_never_fails() {
        assert_eq!(format_time(i64::MAX), i64::MAX.to_string());
    }

    // ---- invariants over any sequence of events ----

    #[derive(Debug, Clone)]
    enum Event {
        Inbound(String),
        Reply(Option<&'static str>),
        Due,
        Assign(Option<&'static str>),
        Handoff(&'static str, &'static str),
        SetStatus(Status),
        Close(Outcome),
        Reopen,
        FollowUp(i64),
        NextAction(String),
        Note(String),
    }

    fn event() -> impl Strategy<Value = Event> {
        let who = prop::sample::select(vec![None, Some("alice"), Some("bob"), Some("")]);
        let name = prop::sample::select(vec!["alice", "bob", ""]);
        prop_oneof![
            ".{0,30}".prop_map(Event::Inbound),
            who.clone().prop_map(Event::Reply),
            Just(Event::Due),
            Just(Event::Due),
            who.prop_map(Event::Assign),
            (name, prop::sample::select(vec!["", "context"]))
                .prop_map(|(n, t)| Event::Handoff(n, t)),
            prop::sample::select(Status::ALL.to_vec()).prop_map(Event::SetStatus),
            prop::sample::select(Outcome::ALL.to_vec()).prop_map(Event::Close),
            Just(Event::Reopen),
            (-DAY..30 * DAY).prop_map(Event::FollowUp),
            ".{0,10}".prop_map(Event::NextAction),
            ".{0,10}".prop_map(Event::Note),
        ]
    }

    fn apply(lead: &Lead, e: &Event, c: &LeadsConfig, now: i64) -> Result<Transition, Refusal> {
        let cal = cal();
        match e {
            Event::Inbound(body) => Ok(on_inbound(lead, &inbound("Re: x", body), c, &cal, now)),
            Event::Reply(by) => Ok(on_outbound_reply(lead, *by, c, &cal, now)),
            Event::Due => Ok(on_due(lead, c, now)),
            Event::Assign(to) => assign_to(lead, *to, "maria", "", now),
            Event::Handoff(to, note) => handoff(lead, to, "maria", note, now),
            Event::SetStatus(s) => set_status(lead, *s, c, &cal, now),
            Event::Close(o) => close(lead, *o, now),
            Event::Reopen => reopen(lead, now),
            Event::FollowUp(offset) => set_follow_up(lead, now + offset, now),
            Event::NextAction(text) => Ok(set_next_action(lead, text, now)),
            Event::Note(text) => add_note(lead, "bob", text, now),
        }
    }

    fn check_invariants(lead: &Lead) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            lead.status.is_active(),
            lead.outcome.is_none(),
            "{:?}",
            lead
        );
        prop_assert_eq!(lead.due.is_some(), lead.due_kind.is_some(), "{:?}", lead);
        if !lead.status.is_active() {
            prop_assert_eq!(lead.due, None);
        }
        if lead.owner.is_none() {
            prop_assert_ne!(lead.status, Status::Assigned);
        } else {
            prop_assert_ne!(lead.status, Status::New);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_event_sequence_keeps_the_lead_consistent(
            events in prop::collection::vec((event(), 0i64..3 * DAY), 0..40),
            steps in prop::collection::vec(1u32..6, 0..4),
        ) {
            let mut c = cfg();
            c.follow_up.steps_business_days = steps;
            let mut lead = owned_lead();
            let mut now = FRI_10;
            for (e, wait) in &events {
                now += wait;
                if let Ok(t) = apply(&lead, e, &c, now) {
                    prop_assert_eq!(t.is_noop(), t.lead == lead, "{:?}", e);
                    prop_assert_eq!(t.lead.updated, if t.is_noop() { lead.updated } else { now });
                    lead = t.lead;
                }
                check_invariants(&lead)?;
            }
        }
    }
}
