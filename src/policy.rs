//! Who may do what to a lead: `(actor, action, lead, rules) -> Verdict`.
//! Pure: no I/O, no clock. Sessions gather the facts, ask here, then act
//! through [`leads::engine`](crate::leads::engine), which checks that the
//! action makes sense for the lead (a closed lead cannot change status, a
//! handoff needs a note); this module only decides whether this person may
//! ask for it.
//!
//! # Rules
//!
//! - One owner controls the customer conversation. A rep acts (status,
//!   close, reopen, follow-up, reply, handoff or reassignment to someone)
//!   on their own leads only.
//! - Anyone may claim an unassigned lead for themselves (`Claim`, or
//!   `AssignTo` themselves). A rep may not assign an unassigned lead to
//!   somebody else, nor act on it before claiming it.
//! - Reassigning or handing off someone else's lead, or claiming it, is a
//!   manager's (or admin's) right; managers and admins may also change the
//!   status of, close, reopen and schedule any lead.
//! - A reply to someone else's lead is refused with a sentence that names
//!   the owner and says how to get a handoff, unless the sender is a manager
//!   or admin and `managers_may_reply_any` is set.
//! - A reply the owner rule held is released or discarded by whoever may
//!   change the lead: its owner or a manager (`DecideHeld`).
//! - A reply to an unassigned lead claims it (`AllowAndClaim`) when
//!   `unassigned_reply = "claim"`; with `"refuse"` a rep must claim first,
//!   while a manager allowed to reply anywhere still may (and claims it).
//! - The rule holds by person, not only by thread ([`submission`]): a
//!   message is refused when *any* lead it threads to is refused, and when
//!   any outside recipient is the contact (or, with `owner_scope =
//!   "domain"`, at the company) of an active lead someone else owns —
//!   writing fresh, or threading to one's own lead, does not get around it.

use crate::model::{Lead, LeadId, Outcome, Role, Status, UnassignedReply};

/// The settings of `[leads]` that decide replies (`LeadsConfig::reply_rules`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyRules {
    pub managers_may_reply_any: bool,
    pub unassigned_reply: UnassignedReply,
}

impl Default for ReplyRules {
    fn default() -> Self {
        ReplyRules {
            managers_may_reply_any: true,
            unassigned_reply: UnassignedReply::Claim,
        }
    }
}

/// The person asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub role: Role,
}

impl Actor<'_> {
    fn is_manager(&self) -> bool {
        matches!(self.role, Role::Manager | Role::Admin)
    }
}

/// What they ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Become the owner.
    Claim,
    /// Make this user the owner (themselves: a claim).
    AssignTo(&'a str),
    /// Pass the lead to this user with context.
    Handoff(&'a str),
    SetStatus(Status),
    Close(Outcome),
    Reopen,
    /// Set or move the follow-up date.
    FollowUp,
    /// Send a message to the customer.
    Reply,
    /// Give up ownership: the lead goes back to Unassigned.
    Release,
    /// Release or discard a reply the owner rule held.
    DecideHeld,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Allowed, and the actor becomes the owner (a reply to an unassigned
    /// lead).
    AllowAndClaim,
    /// Refused; the reason is a sentence for the person (it ends up in an
    /// SMTP or IMAP response).
    Deny {
        reason: String,
    },
}

impl Verdict {
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Verdict::Deny { .. })
    }

    fn deny(reason: String) -> Self {
        Verdict::Deny { reason }
    }
}

pub fn decide(actor: Actor<'_>, action: Action<'_>, lead: &Lead, cfg: &ReplyRules) -> Verdict {
    match action {
        Action::Claim => reassign(actor, actor.name, lead),
        Action::AssignTo(to) | Action::Handoff(to) => reassign(actor, to, lead),
        Action::SetStatus(_)
        | Action::Close(_)
        | Action::Reopen
        | Action::FollowUp
        | Action::Release
        | Action::DecideHeld => act_on(actor, lead),
        Action::Reply => reply(actor, lead, cfg),
    }
}

/// Claims, assignments and handoffs: making `to` the owner.
fn reassign(actor: Actor<'_>, to: &str, lead: &Lead) -> Verdict {
    let owner = lead.owner.as_deref();
    if actor.is_manager() || owner == Some(to) || owner == Some(actor.name) {
        return Verdict::Allow;
    }
    match owner {
        None if to == actor.name => Verdict::Allow,
        None => Verdict::deny(format!(
            "Lead {} is unassigned; you can claim it for yourself (move it to 'Assign to/{}'), \
             but only a manager can assign it to {to}.",
            lead.id, actor.name
        )),
        Some(owner) => owned_by_other(lead.id, owner, actor.name, "can pass it on"),
    }
}

/// Status changes, closing, reopening and follow-up dates.
fn act_on(actor: Actor<'_>, lead: &Lead) -> Verdict {
    match lead.owner.as_deref() {
        _ if actor.is_manager() => Verdict::Allow,
        Some(owner) if owner == actor.name => Verdict::Allow,
        Some(owner) => owned_by_other(lead.id, owner, actor.name, "can change it"),
        None => claim_first(lead, actor.name),
    }
}

fn reply(actor: Actor<'_>, lead: &Lead, cfg: &ReplyRules) -> Verdict {
    let manager_may = actor.is_manager() && cfg.managers_may_reply_any;
    match lead.owner.as_deref() {
        Some(owner) if owner == actor.name => Verdict::Allow,
        Some(_) if manager_may => Verdict::Allow,
        Some(owner) => owned_by_other(lead.id, owner, actor.name, "replies to this customer"),
        None if cfg.unassigned_reply == UnassignedReply::Claim || manager_may => {
            Verdict::AllowAndClaim
        }
        None => claim_first(lead, actor.name),
    }
}

/// How a submission touches a lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch<'a> {
    /// Its In-Reply-To, References or X-Lead-Id names the lead.
    Thread,
    /// This recipient is the lead's contact.
    Contact(&'a str),
    /// This recipient is at the lead's company domain (`owner_scope =
    /// "domain"`).
    Domain(&'a str),
}

/// What policy says about a message a user submits to outside recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmissionVerdict {
    /// Send it; record it on `lead` (claiming it first when `claim`), or
    /// open a new lead when `None`.
    Send { lead: Option<LeadId>, claim: bool },
    /// Refused; `lead` is the first lead that refused it and `owners` whom
    /// to ask. The reason names them and how to get a handoff.
    Deny {
        lead: LeadId,
        owners: Vec<String>,
        reason: String,
    },
}

/// The owner rule for a whole submission: every lead it touches, in the
/// order given (threads first, the nearest reference first). Refused when
/// any threaded lead refuses the reply, or when a recipient (other than
/// the contact of a threaded lead) belongs to an active lead someone else
/// owns. Otherwise it is recorded on the first threaded lead; unthreaded,
/// on the sender's own lead for that contact, else another owner's (a
/// manager writing), else an unassigned one (claimed), else a new lead.
pub fn submission(
    actor: Actor<'_>,
    touched: &[(&Lead, Touch<'_>)],
    cfg: &ReplyRules,
) -> SubmissionVerdict {
    let manager_may = actor.is_manager() && cfg.managers_may_reply_any;
    let mut denied: Vec<(&Lead, String)> = Vec::new();
    let mut threaded: Option<(LeadId, bool)> = None;
    // Unthreaded candidates, best first: own, another's, unassigned.
    let mut by_contact: [Option<(LeadId, bool)>; 3] = [None, None, None];
    let thread_contacts: Vec<&str> = touched
        .iter()
        .filter(|(_, t)| *t == Touch::Thread)
        .map(|(l, _)| l.contact_email.as_str())
        .collect();
    for &(lead, touch) in touched {
        let recipient = match touch {
            Touch::Thread => {
                match reply(actor, lead, cfg) {
                    Verdict::Allow => {
                        threaded.get_or_insert((lead.id, false));
                    }
                    Verdict::AllowAndClaim => {
                        threaded.get_or_insert((lead.id, true));
                    }
                    Verdict::Deny { reason } => denied.push((lead, reason)),
                }
                continue;
            }
            Touch::Contact(r) | Touch::Domain(r) => r,
        };
        if !lead.status.is_active()
            || thread_contacts
                .iter()
                .any(|c| c.eq_ignore_ascii_case(recipient))
        {
            continue;
        }
        let exact = matches!(touch, Touch::Contact(_));
        match lead.owner.as_deref() {
            // Their own, or a manager writing: allowed; an exact contact
            // is where the mail is recorded.
            Some(owner) if owner == actor.name || manager_may => {
                let best = if owner == actor.name { 0 } else { 1 };
                if exact {
                    by_contact[best].get_or_insert((lead.id, false));
                }
            }
            Some(owner) => {
                let what = match touch {
                    Touch::Domain(_) => format!(
                        "{recipient} is at {}, the company of lead {}",
                        lead.company_domain, lead.id
                    ),
                    _ => format!("{recipient} is the contact of lead {}", lead.id),
                };
                denied.push((
                    lead,
                    format!(
                        "{what}, owned by {owner}; only {owner} or a manager writes to them. Ask \
                         {owner} or a manager to hand it off to you (they move it to 'Assign \
                         to/{}').",
                        actor.name
                    ),
                ));
            }
            // An unassigned lead protects nobody; writing to its contact
            // is a reply to it (claimed, or refused until claimed).
            None if exact => match reply(actor, lead, cfg) {
                Verdict::Deny { reason } => denied.push((lead, reason)),
                v => {
                    by_contact[2].get_or_insert((lead.id, v == Verdict::AllowAndClaim));
                }
            },
            None => {}
        }
    }
    if let Some((first, reason)) = denied.first() {
        let mut owners: Vec<String> = Vec::new();
        for (lead, _) in &denied {
            if let Some(o) = &lead.owner {
                if !owners.contains(o) {
                    owners.push(o.clone());
                }
            }
        }
        let mut reason = reason.clone();
        let others: Vec<String> = denied[1..]
            .iter()
            .filter(|(l, _)| l.id != first.id)
            .map(|(l, _)| match &l.owner {
                Some(o) => format!("lead {} ({o})", l.id),
                None => format!("lead {} (unassigned)", l.id),
            })
            .collect();
        if !others.is_empty() {
            reason.push_str(&format!(" Also refused by {}.", others.join(", ")));
        }
        return SubmissionVerdict::Deny {
            lead: first.id,
            owners,
            reason,
        };
    }
    let (lead, claim) = threaded
        .or(by_contact[0])
        .or(by_contact[1])
        .or(by_contact[2])
        .map_or((None, false), |(id, claim)| (Some(id), claim));
    SubmissionVerdict::Send { lead, claim }
}

fn owned_by_other(lead: u64, owner: &str, actor: &str, what: &str) -> Verdict {
    Verdict::deny(format!(
        "Lead {lead} is owned by {owner}; only {owner} or a manager {what}. Ask {owner} or a \
         manager to hand it off to you (they move it to 'Assign to/{actor}')."
    ))
}

fn claim_first(lead: &Lead, actor: &str) -> Verdict {
    Verdict::deny(format!(
        "Lead {} is unassigned; claim it first (move it to 'Assign to/{actor}'), then try again.",
        lead.id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::sample_lead;

    const REP: Actor<'static> = Actor {
        name: "bob",
        role: Role::Rep,
    };
    const OWNER: Actor<'static> = Actor {
        name: "alice",
        role: Role::Rep,
    };
    const MANAGER: Actor<'static> = Actor {
        name: "maria",
        role: Role::Manager,
    };
    const ADMIN: Actor<'static> = Actor {
        name: "root",
        role: Role::Admin,
    };

    /// Lead 42, owned by alice.
    fn owned() -> Lead {
        sample_lead()
    }

    fn unassigned() -> Lead {
        Lead {
            owner: None,
            status: Status::New,
            ..sample_lead()
        }
    }

    fn cfg() -> ReplyRules {
        ReplyRules::default()
    }

    fn refusing_cfg() -> ReplyRules {
        ReplyRules {
            unassigned_reply: UnassignedReply::Refuse,
            ..ReplyRules::default()
        }
    }

    fn reason(v: Verdict) -> String {
        match v {
            Verdict::Deny { reason } => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    const OWNER_ACTIONS: [Action<'static>; 6] = [
        Action::SetStatus(Status::QuoteSent),
        Action::Close(Outcome::Won),
        Action::Reopen,
        Action::FollowUp,
        Action::Reply,
        Action::Handoff("carol"),
    ];

    // ---- claiming ----

    #[test]
    fn rep_may_claim_an_unassigned_lead() {
        assert_eq!(
            decide(REP, Action::Claim, &unassigned(), &cfg()),
            Verdict::Allow
        );
    }

    #[test]
    fn assigning_an_unassigned_lead_to_yourself_is_a_claim() {
        let v = decide(REP, Action::AssignTo("bob"), &unassigned(), &cfg());
        assert_eq!(v, Verdict::Allow);
    }

    #[test]
    fn claiming_your_own_lead_is_allowed() {
        assert_eq!(
            decide(OWNER, Action::Claim, &owned(), &cfg()),
            Verdict::Allow
        );
    }

    #[test]
    fn rep_claiming_someone_elses_lead_is_refused_with_owner_named() {
        let text = reason(decide(REP, Action::Claim, &owned(), &cfg()));
        assert!(text.starts_with("Lead 42 is owned by alice;"), "{text}");
        assert!(text.contains("'Assign to/bob'"), "{text}");
    }

    #[test]
    fn manager_may_claim_someone_elses_lead() {
        assert_eq!(
            decide(MANAGER, Action::Claim, &owned(), &cfg()),
            Verdict::Allow
        );
    }

    // ---- assigning and handing off ----

    #[test]
    fn rep_assigning_an_unassigned_lead_to_a_colleague_is_refused() {
        for action in [Action::AssignTo("carol"), Action::Handoff("carol")] {
            let text = reason(decide(REP, action, &unassigned(), &cfg()));
            assert!(text.contains("Lead 42 is unassigned"), "{text}");
            assert!(
                text.contains("only a manager can assign it to carol"),
                "{text}"
            );
            assert!(text.contains("'Assign to/bob'"), "{text}");
        }
    }

    #[test]
    fn rep_may_hand_off_or_reassign_their_own_lead() {
        for action in [Action::AssignTo("carol"), Action::Handoff("carol")] {
            assert_eq!(decide(OWNER, action, &owned(), &cfg()), Verdict::Allow);
        }
    }

    #[test]
    fn rep_may_not_reassign_or_hand_off_someone_elses_lead() {
        for action in [
            Action::AssignTo("carol"),
            Action::AssignTo("bob"),
            Action::Handoff("carol"),
        ] {
            let text = reason(decide(REP, action, &owned(), &cfg()));
            assert!(text.contains("owned by alice"), "{text}");
            assert!(
                text.contains("only alice or a manager can pass it on"),
                "{text}"
            );
        }
    }

    #[test]
    fn assigning_a_lead_to_its_current_owner_is_allowed() {
        let v = decide(REP, Action::AssignTo("alice"), &owned(), &cfg());
        assert_eq!(v, Verdict::Allow);
    }

    #[test]
    fn managers_and_admins_may_reassign_any_lead() {
        for actor in [MANAGER, ADMIN] {
            for lead in [owned(), unassigned()] {
                for action in [Action::AssignTo("carol"), Action::Handoff("carol")] {
                    assert_eq!(decide(actor, action, &lead, &cfg()), Verdict::Allow);
                }
            }
        }
    }

    // ---- status, close, reopen, follow-up ----

    #[test]
    fn owner_may_change_status_close_reopen_and_schedule() {
        for action in OWNER_ACTIONS {
            assert_eq!(
                decide(OWNER, action, &owned(), &cfg()),
                Verdict::Allow,
                "{action:?}"
            );
        }
    }

    #[test]
    fn rep_changing_someone_elses_lead_is_refused_with_owner_named() {
        for action in [
            Action::SetStatus(Status::QuoteSent),
            Action::Close(Outcome::Spam),
            Action::Reopen,
            Action::FollowUp,
        ] {
            let text = reason(decide(REP, action, &owned(), &cfg()));
            assert!(text.contains("owned by alice"), "{action:?}: {text}");
            assert!(
                text.contains("only alice or a manager can change it"),
                "{text}"
            );
            assert!(text.contains("'Assign to/bob'"), "{text}");
        }
    }

    #[test]
    fn rep_acting_on_an_unassigned_lead_must_claim_first() {
        for action in [
            Action::SetStatus(Status::NeedsInternalInput),
            Action::Close(Outcome::Spam),
            Action::FollowUp,
        ] {
            let text = reason(decide(REP, action, &unassigned(), &cfg()));
            assert!(
                text.contains("Lead 42 is unassigned; claim it first"),
                "{text}"
            );
            assert!(text.contains("'Assign to/bob'"), "{text}");
        }
    }

    #[test]
    fn managers_and_admins_may_change_any_lead() {
        for actor in [MANAGER, ADMIN] {
            for lead in [owned(), unassigned()] {
                for action in [
                    Action::SetStatus(Status::QuoteSent),
                    Action::Close(Outcome::Lost),
                    Action::Reopen,
                    Action::FollowUp,
                ] {
                    assert_eq!(decide(actor, action, &lead, &cfg()), Verdict::Allow);
                }
            }
        }
    }

    // ---- replies ----

    #[test]
    fn reply_by_the_owner_is_allowed() {
        assert_eq!(
            decide(OWNER, Action::Reply, &owned(), &cfg()),
            Verdict::Allow
        );
    }

    #[test]
    fn reply_from_non_owner_is_refused_with_owner_named() {
        let text = reason(decide(REP, Action::Reply, &owned(), &cfg()));
        assert_eq!(
            text,
            "Lead 42 is owned by alice; only alice or a manager replies to this customer. \
             Ask alice or a manager to hand it off to you (they move it to 'Assign to/bob')."
        );
    }

    #[test]
    fn reply_on_an_unassigned_lead_claims_it_when_configured() {
        let v = decide(REP, Action::Reply, &unassigned(), &cfg());
        assert_eq!(v, Verdict::AllowAndClaim);
        assert!(v.is_allowed());
    }

    #[test]
    fn reply_on_an_unassigned_lead_is_refused_when_claiming_is_off() {
        let text = reason(decide(REP, Action::Reply, &unassigned(), &refusing_cfg()));
        assert!(
            text.contains("claim it first (move it to 'Assign to/bob')"),
            "{text}"
        );
    }

    #[test]
    fn manager_may_reply_on_any_lead_when_configured() {
        for actor in [MANAGER, ADMIN] {
            assert_eq!(
                decide(actor, Action::Reply, &owned(), &cfg()),
                Verdict::Allow
            );
        }
    }

    #[test]
    fn manager_reply_on_an_unassigned_lead_claims_it_even_when_claiming_is_off() {
        let v = decide(MANAGER, Action::Reply, &unassigned(), &refusing_cfg());
        assert_eq!(v, Verdict::AllowAndClaim);
    }

    #[test]
    fn manager_reply_on_someone_elses_lead_is_refused_when_not_configured() {
        let cfg = ReplyRules {
            managers_may_reply_any: false,
            ..ReplyRules::default()
        };
        let text = reason(decide(MANAGER, Action::Reply, &owned(), &cfg));
        assert!(text.contains("owned by alice"), "{text}");
        assert!(text.contains("'Assign to/maria'"), "{text}");
    }

    #[test]
    fn manager_reply_on_an_unassigned_lead_is_refused_when_neither_rule_allows_it() {
        let cfg = ReplyRules {
            managers_may_reply_any: false,
            ..refusing_cfg()
        };
        let text = reason(decide(MANAGER, Action::Reply, &unassigned(), &cfg));
        assert!(text.contains("claim it first"), "{text}");
    }

    #[test]
    fn manager_reply_on_their_own_lead_needs_no_special_rule() {
        let cfg = ReplyRules {
            managers_may_reply_any: false,
            ..ReplyRules::default()
        };
        let lead = Lead {
            owner: Some("maria".into()),
            ..sample_lead()
        };
        assert_eq!(decide(MANAGER, Action::Reply, &lead, &cfg), Verdict::Allow);
    }

    // ---- submissions: the rule by person, not only by thread ----

    fn lead(id: LeadId, owner: Option<&str>, contact: &str) -> Lead {
        Lead {
            id,
            owner: owner.map(str::to_owned),
            status: if owner.is_some() {
                Status::WaitingForReply
            } else {
                Status::New
            },
            contact_email: contact.into(),
            company_domain: contact.rsplit('@').next().unwrap_or_default().into(),
            ..sample_lead()
        }
    }

    fn denied_by(v: SubmissionVerdict) -> (LeadId, Vec<String>, String) {
        match v {
            SubmissionVerdict::Deny {
                lead,
                owners,
                reason,
            } => (lead, owners, reason),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_fresh_mail_to_another_owners_contact_is_refused_naming_the_owner() {
        let alices = lead(7, Some("alice"), "dana@northwind.test");
        let v = submission(
            REP,
            &[(&alices, Touch::Contact("dana@northwind.test"))],
            &ReplyRules::default(),
        );
        let (id, owners, reason) = denied_by(v);
        assert_eq!((id, owners), (7, vec!["alice".to_owned()]));
        assert!(reason.contains("dana@northwind.test is the contact of lead 7, owned by alice"));
        assert!(reason.contains("'Assign to/bob'"), "{reason}");
    }

    #[test]
    fn threading_to_ones_own_lead_does_not_get_around_another_thread() {
        let bobs = lead(3, Some("bob"), "dana@northwind.test");
        let alices = lead(7, Some("alice"), "dana@northwind.test");
        let v = submission(
            REP,
            &[(&bobs, Touch::Thread), (&alices, Touch::Thread)],
            &ReplyRules::default(),
        );
        let (id, owners, _) = denied_by(v);
        assert_eq!((id, owners), (7, vec!["alice".to_owned()]));
    }

    #[test]
    fn a_cc_to_another_owners_contact_is_refused_even_on_ones_own_thread() {
        let bobs = lead(3, Some("bob"), "erin@other.test");
        let alices = lead(7, Some("alice"), "dana@northwind.test");
        let v = submission(
            REP,
            &[
                (&bobs, Touch::Thread),
                (&alices, Touch::Contact("dana@northwind.test")),
            ],
            &ReplyRules::default(),
        );
        assert_eq!(denied_by(v).0, 7);
    }

    #[test]
    fn the_threaded_leads_own_contact_is_covered_by_the_thread() {
        // Two leads for one person: the reply on bob's thread goes to the
        // contact they share.
        let bobs = lead(3, Some("bob"), "dana@northwind.test");
        let alices = lead(7, Some("alice"), "dana@northwind.test");
        let v = submission(
            REP,
            &[
                (&bobs, Touch::Thread),
                (&alices, Touch::Contact("dana@northwind.test")),
            ],
            &ReplyRules::default(),
        );
        assert_eq!(
            v,
            SubmissionVerdict::Send {
                lead: Some(3),
                claim: false
            }
        );
    }

    #[test]
    fn the_owners_fresh_mail_joins_their_lead_instead_of_opening_another() {
        let alices = lead(7, Some("alice"), "dana@northwind.test");
        let closed = Lead {
            status: Status::Closed,
            ..lead(2, Some("bob"), "dana@northwind.test")
        };
        let v = submission(
            OWNER,
            &[
                (&closed, Touch::Contact("dana@northwind.test")),
                (&alices, Touch::Contact("dana@northwind.test")),
            ],
            &ReplyRules::default(),
        );
        assert_eq!(
            v,
            SubmissionVerdict::Send {
                lead: Some(7),
                claim: false
            }
        );
    }

    #[test]
    fn a_closed_lead_protects_nobody() {
        let closed = Lead {
            status: Status::Closed,
            ..lead(2, Some("alice"), "dana@northwind.test")
        };
        let v = submission(
            REP,
            &[(&closed, Touch::Contact("dana@northwind.test"))],
            &ReplyRules::default(),
        );
        assert_eq!(
            v,
            SubmissionVerdict::Send {
                lead: None,
                claim: false
            }
        );
    }

    #[test]
    fn a_manager_may_write_to_any_contact_and_it_joins_the_lead() {
        let alices = lead(7, Some("alice"), "dana@northwind.test");
        let touched = [(&alices, Touch::Contact("dana@northwind.test"))];
        assert_eq!(
            submission(MANAGER, &touched, &ReplyRules::default()),
            SubmissionVerdict::Send {
                lead: Some(7),
                claim: false
            }
        );
        let strict = ReplyRules {
            managers_may_reply_any: false,
            ..ReplyRules::default()
        };
        assert_eq!(denied_by(submission(MANAGER, &touched, &strict)).0, 7);
    }

    #[test]
    fn a_fresh_mail_to_an_unassigned_contact_claims_that_lead_or_is_refused() {
        let open = lead(5, None, "dana@northwind.test");
        let touched = [(&open, Touch::Contact("dana@northwind.test"))];
        assert_eq!(
            submission(REP, &touched, &ReplyRules::default()),
            SubmissionVerdict::Send {
                lead: Some(5),
                claim: true
            }
        );
        let (_, owners, reason) = denied_by(submission(REP, &touched, &refusing_cfg()));
        assert!(owners.is_empty());
        assert!(reason.contains("claim it first"), "{reason}");
    }

    #[test]
    fn domain_scope_refuses_a_colleague_at_the_company_but_joins_nothing() {
        let alices = lead(7, Some("alice"), "dana@northwind.test");
        let v = submission(
            REP,
            &[(&alices, Touch::Domain("ceo@northwind.test"))],
            &ReplyRules::default(),
        );
        let (_, _, reason) = denied_by(v);
        assert!(
            reason.contains("ceo@northwind.test is at northwind.test, the company of lead 7"),
            "{reason}"
        );
        let own = submission(
            OWNER,
            &[(&alices, Touch::Domain("ceo@northwind.test"))],
            &ReplyRules::default(),
        );
        assert_eq!(
            own,
            SubmissionVerdict::Send {
                lead: None,
                claim: false
            }
        );
    }

    #[test]
    fn every_owner_in_the_way_is_named() {
        let a = lead(7, Some("alice"), "dana@northwind.test");
        let c = lead(9, Some("carol"), "erin@other.test");
        let (_, owners, reason) = denied_by(submission(
            REP,
            &[
                (&a, Touch::Contact("dana@northwind.test")),
                (&c, Touch::Contact("erin@other.test")),
            ],
            &ReplyRules::default(),
        ));
        assert_eq!(owners, vec!["alice".to_owned(), "carol".to_owned()]);
        assert!(
            reason.contains("Also refused by lead 9 (carol)"),
            "{reason}"
        );
    }
}
