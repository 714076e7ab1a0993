//! A person's requests on a lead (IMAP action folders, the CLI): policy
//! first, then the lead's own rules; both outcomes are audited.

use super::*;

impl LeadBook {
    /// A person's request: policy first, then the lead's own rules; both
    /// outcomes are audited.
    pub async fn act(
        &self,
        who: &Principal,
        id: LeadId,
        action: LeadAction,
    ) -> Result<Acted, BookError> {
        let now = self.now();
        let valid_owner = match &action {
            LeadAction::AssignTo(to) | LeadAction::Handoff { to, .. } => {
                let st = self.state.read().unwrap_or_else(|e| e.into_inner());
                if !st.users.iter().any(|u| u == to) {
                    return Ok(Acted::Refused(format!(
                        "There is no active user {to} to give lead {id} to"
                    )));
                }
                true
            }
            _ => true,
        };
        debug_assert!(valid_owner);
        let cfg = self.config();
        let cal = self.calendar();
        let actor_name = who.name.clone();
        let role = who.role;
        let Commit { out: outcome, rev } = self
            .store
            .change(move |tx| {
                let Some(lead) = tx.lead(id)? else {
                    return Ok(Commit::unchanged(Err(format!("There is no lead {id}"))));
                };
                let actor = Actor {
                    name: &actor_name,
                    role,
                };
                let policy_action = match &action {
                    LeadAction::AssignTo(to) => policy::Action::AssignTo(to),
                    LeadAction::Unassign { .. } => policy::Action::Release,
                    LeadAction::Handoff { to, .. } => policy::Action::Handoff(to),
                    LeadAction::SetStatus(s) => policy::Action::SetStatus(*s),
                    LeadAction::Close(o) => policy::Action::Close(*o),
                    LeadAction::Reopen => policy::Action::Reopen,
                    LeadAction::FollowUp(_) | LeadAction::NextAction(_) => policy::Action::FollowUp,
                    LeadAction::Note(_) => policy::Action::FollowUp,
                    LeadAction::Escalate { .. } => policy::Action::FollowUp,
                };
                // Notes are for anyone on the team: "others can comment".
                let verdict = match &action {
                    LeadAction::Note(_) => Verdict::Allow,
                    _ => policy::decide(actor, policy_action, &lead, &cfg.reply_rules()),
                };
                let refuse = |tx: &Tx<'_>,
                              reason: String|
                 -> Result<Commit<Result<Lead, String>>, StoreError> {
                    tx.append_audit(&AuditDraft {
                        at: now * 1000,
                        actor: actor_name.clone(),
                        action: format!("{}.refused", action.name()),
                        lead: Some(id),
                        changes: Vec::new(),
                        reason: format!("{}: {reason}", action.describe()),
                    })?;
                    Ok(Commit::unchanged(Err(reason)))
                };
                if let Verdict::Deny { reason } = verdict {
                    return refuse(tx, reason);
                }
                let transition = match &action {
                    LeadAction::AssignTo(to) => {
                        engine::assign_to(&lead, Some(to), &actor_name, "", now)
                    }
                    LeadAction::Unassign { note } => {
                        engine::assign_to(&lead, None, &actor_name, note, now)
                    }

                    LeadAction::Handoff { to, note } => {
                        engine::handoff(&lead, to, &actor_name, note, now)
                    }
                    LeadAction::SetStatus(s) => engine::set_status(&lead, *s, &cfg, &cal, now),
                    LeadAction::Close(o) => engine::close(&lead, *o, now),
                    LeadAction::Reopen => engine::reopen(&lead, now),
                    LeadAction::FollowUp(at) => engine::set_follow_up(&lead, *at, now),
                    LeadAction::NextAction(t) => Ok(engine::set_next_action(&lead, t, now)),
                    LeadAction::Note(t) => engine::add_note(&lead, &actor_name, t, now),
                    LeadAction::Escalate { note } => {
                        engine::escalate_now(&lead, &actor_name, note, &cfg, now)
                    }
                };
                let transition = match transition {
                    Ok(t) => t,
                    Err(refusal) => return refuse(tx, refusal.to_string()),
                };
                let was_escalated = lead.escalated;
                let lead = transition.lead;
                if transition.changes.is_empty() {
                    return Ok(Commit::unchanged(Ok(lead)));
                }
                tx.put_lead(&lead)?;
                if let Some(owner) = &lead.owner {
                    tx.set_domain_owner(&lead.company_domain, owner)?;
                }
                // Mail the change owes, committed with it (so owed once).
                if lead.escalated && !was_escalated {
                    tx.queue_notice(&Notice {
                        kind: NoticeKind::Escalation,
                        lead: id,
                        to: lead.escalated_to.clone().into_iter().collect(),
                        queued_at: now,
                        detail: format!("{actor_name} escalated it: {}", action.describe()),
                    })?;
                }
                if let (true, Some(owner)) = (cfg.notify_owner, &lead.owner) {
                    let given = matches!(
                        &action,
                        LeadAction::AssignTo(_) | LeadAction::Handoff { .. }
                    );
                    if given && *owner != actor_name {
                        let detail = match &action {
                            LeadAction::Handoff { note, .. } => {
                                format!("handed to you by {actor_name}: {}", note.trim())
                            }
                            _ => format!("assigned to you by {actor_name}"),
                        };
                        tx.queue_notice(&Notice {
                            kind: NoticeKind::Assigned,
                            lead: id,
                            to: vec![owner.clone()],
                            queued_at: now,
                            detail,
                        })?;
                    }
                }
                let rev = tx.bump_revision()?;
                tx.append_audit(&AuditDraft {
                    at: now * 1000,
                    actor: actor_name.clone(),
                    action: action.name().to_owned(),
                    lead: Some(id),
                    changes: audit_changes(&transition.changes),
                    reason: action.describe(),
                })?;
                Ok(Commit { out: Ok(lead), rev })
            })
            .await?;
        match outcome {
            Ok(lead) => {
                let arc = Arc::new(lead.clone());
                if rev > 0 {
                    self.publish(rev, vec![lead], &[]);
                }
                Ok(Acted::Done(arc))
            }
            Err(reason) => {
                // The refusal is on the lead's record (its card shows it).
                self.notify(vec![id]);
                Ok(Acted::Refused(reason))
            }
        }
    }

    /// Moves every active lead of `user` to `to` (a handoff with a note
    /// saying why), or back to Unassigned when `to` is `None`: for a user
    /// who is disabled or leaves. Each lead goes through `act` as `by` (an
    /// admin principal), so policy and the audit log see it like any other
    /// change; a lead refused on the way (closed meanwhile) is skipped.
    /// Returns the leads that moved, by id.
    pub async fn reassign_all_of(
        &self,
        user: &str,
        to: Option<&str>,
        by: &Principal,
    ) -> Result<Vec<LeadId>, BookError> {
        if let Some(to) = to {
            if !self.users().iter().any(|u| u == to) {
                return Err(BookError::NoSuchUser(to.to_owned()));
            }
        }
        let mut ids: Vec<LeadId> = {
            let st = self.state.read().unwrap_or_else(|e| e.into_inner());
            st.leads
                .values()
                .filter(|(_, l)| l.status.is_active() && l.owner.as_deref() == Some(user))
                .map(|(_, l)| l.id)
                .collect()
        };
        ids.sort_unstable();
        let mut moved = Vec::new();
        for id in ids {
            let action = match to {
                Some(to) if to == user => continue,
                Some(to) => LeadAction::Handoff {
                    to: to.to_owned(),
                    note: format!("{user} is no longer active"),
                },
                None => LeadAction::Unassign {
                    note: format!("{user} is no longer active"),
                },
            };
            match self.act(by, id, action).await? {
                Acted::Done(_) => moved.push(id),
                Acted::Refused(reason) => {
                    tracing::warn!("lead {id} of {user} not reassigned: {reason}")
                }
            }
        }
        Ok(moved)
    }
}
