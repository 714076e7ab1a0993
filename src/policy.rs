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
//! - A reply to an unassigned lead claims it (`AllowAndClaim`) when
//!   `unassigned_reply = "claim"`; with `"refuse"` a rep must claim first,
//!   while a manager allowed to reply anywhere still may (and claims it).

use crate::model::{Lead, Outcome, Role, Status, UnassignedReply};

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
        | Action::Release => act_on(actor, lead),
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
}
