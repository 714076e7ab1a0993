//! Ingest: a message of the shared mailbox joins, opens or is kept out of
//! a lead, in one commit with its indexes and its audit event.

use super::*;

impl LeadBook {
    /// Files one message of the shared mailbox into its lead: joins the
    /// thread it belongs to or opens a new lead. Exactly once per message
    /// key; a second copy of a known Message-ID only gets mapped.
    /// `arrived` is the upstream's INTERNALDATE (unix seconds).
    pub async fn ingest(
        &self,
        key: u64,
        facts: MessageFacts,
        arrived: i64,
    ) -> Result<Ingested, BookError> {
        if let Some(id) = {
            let st = self.state.read().unwrap_or_else(|e| e.into_inner());
            st.by_message.get(&key).copied()
        } {
            return Ok(Ingested::Already(id));
        }
        let at = arrived.min(self.now());
        let (team, reps, user_by_address) = {
            let st = self.state.read().unwrap_or_else(|e| e.into_inner());
            (st.team.clone(), st.reps.clone(), st.user_by_address.clone())
        };
        let mark = match &facts.kind {
            MailKind::Ordinary => None,
            MailKind::AutoReply { .. } => Some(MessageMark::AutoReply),
            MailKind::Bounce(_) => Some(MessageMark::Bounced),
        };
        let env = IngestEnv {
            team,
            reps,
            user_by_address,
            cfg: self.config(),
            cal: self.calendar(),
            at,
        };
        let IngestCommit { result, rev, lead } = self
            .store
            .change(move |tx| commit(tx, key, &facts, mark, &env))
            .await?;
        if let (Some(mark), false) = (mark, matches!(result, Ingested::Already(_))) {
            let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
            st.marks.insert(key, mark);
        }
        match (&result, lead) {
            (_, Some(lead)) => {
                let id = lead.id;
                self.observe_first_response(&lead);
                self.publish(rev, vec![lead], &[(key, id)]);
            }
            (Ingested::Already(id), None) => {
                let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
                st.map_message(key, *id);
            }
            (Ingested::Copy(id), None) => {
                {
                    let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
                    st.map_message(key, *id);
                }
                // The lead gained a message (a copy, or the same mail under
                // new UIDs after a UIDVALIDITY change): its views must show
                // it now, not at the lead's next change.
                self.notify(vec![*id]);
            }
            (_, None) => {
                let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
                st.map_message(key, NO_LEAD);
            }
        }
        Ok(result)
    }

    /// Reports a lead's first response once, when it happens.
    pub(super) fn observe_first_response(&self, lead: &Lead) {
        let (Some(metrics), Some(secs)) = (self.metrics.get(), lead.first_response_secs()) else {
            return;
        };
        let fresh = lead.first_response_at == lead.last_outbound_at && lead.followups_sent == 0;
        let known = self
            .lead(lead.id)
            .is_some_and(|l| l.first_response_at.is_some());
        if fresh && !known {
            let owner = lead.owner.as_deref().unwrap_or("-");
            metrics.first_response(
                owner,
                std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0)),
            );
        }
    }
}

/// What ingest reads besides the message: the team as it is now, the
/// configuration and when the message arrived.
struct IngestEnv {
    team: Vec<String>,
    reps: Vec<String>,
    user_by_address: HashMap<String, String>,
    cfg: Arc<LeadsConfig>,
    cal: Arc<Calendar>,
    at: i64,
}

/// What one ingest commit did: the answer, the lead revision it made (0
/// for none) and the lead as written.
struct IngestCommit {
    result: Ingested,
    rev: u64,
    lead: Option<Lead>,
}

impl IngestCommit {
    /// A commit that changed no lead.
    fn only(result: Ingested) -> IngestCommit {
        IngestCommit {
            result,
            rev: 0,
            lead: None,
        }
    }
}

/// The actor of an event caused by mail from outside the team. The
/// sender's address goes in the reason, which is personal data (erasable,
/// see `store::erase`); the actor is covered by the chain as it is.
pub const CONTACT: &str = "contact";

/// What a message does to a lead, before it is written.
struct Step {
    result: Ingested,
    transition: Transition,
    /// The audit action (`lead.create`, `lead.inbound`, ...).
    action: &'static str,
    actor: String,
    reason: String,
}

/// The ingest of message `key`, inside one transaction: it joins, opens or
/// is kept out of a lead, with its indexes and its audit event.
fn commit(
    tx: &Tx<'_>,
    key: u64,
    facts: &MessageFacts,
    mark: Option<MessageMark>,
    env: &IngestEnv,
) -> Result<IngestCommit, StoreError> {
    let IngestEnv {
        team,
        reps,
        user_by_address,
        cfg,
        cal,
        at,
    } = env;
    let at = *at;
    if let Some(id) = tx.message_lead(key)? {
        return Ok(IngestCommit::only(Ingested::Already(id)));
    }
    let copy = facts
        .message_id
        .as_deref()
        .map(|id| tx.thread_lead(id))
        .transpose()?
        .flatten();
    if let Some(mark) = mark {
        tx.set_message_mark(key, mark)?;
    }
    if let Some(id) = copy {
        tx.set_message_lead(key, id)?;
        return Ok(IngestCommit::only(Ingested::Copy(id)));
    }
    let dir = direction(facts, team);
    let found = find_thread(facts, dir, team, &tx.threads(), cfg.thread_window_secs());
    let subject = normalize_subject(&facts.subject);
    let party = counterpart(facts, dir, team);
    // Mail from machines: joins its lead (a bounce by the
    // Message-ID it returns) and never counts as an answer.
    let machine = match &facts.kind {
        MailKind::Ordinary => None,
        MailKind::AutoReply { why } => {
            found
                .map(|id| tx.lead(id))
                .transpose()?
                .flatten()
                .map(|lead| Step {
                    result: Ingested::Joined(lead.id),
                    transition: Transition {
                        lead,
                        changes: Vec::new(),
                    },
                    action: "lead.auto_reply",
                    actor: CONTACT.to_owned(),
                    reason: format!("auto-reply ({why}) from {} {}", facts.from, describe(facts)),
                })
        }
        MailKind::Bounce(report) => {
            let mut bounced = None;
            for id in &report.original_message_ids {
                let id = crate::leads::threading::normalize_message_id(id);
                if let Some(lead) = tx.thread_lead(&id)?.filter(|&l| l != NO_LEAD) {
                    bounced = Some(lead);
                    break;
                }
            }
            bounced
                .or(found)
                .map(|id| tx.lead(id))
                .transpose()?
                .flatten()
                .map(|lead| {
                    let t = engine::on_bounce(
                        &lead,
                        &report.failed_recipients,
                        &report.diagnostic,
                        cfg,
                        cal,
                        at,
                    );
                    Step {
                        result: Ingested::Joined(t.lead.id),
                        transition: t,
                        action: "lead.bounce",
                        actor: CONTACT.to_owned(),
                        reason: format!(
                            "delivery failure report from {} {} for {}: {}",
                            facts.from,
                            describe(facts),
                            report.failed_recipients.join(", "),
                            report.diagnostic
                        ),
                    }
                })
        }
    };
    let step = match (found, dir) {
        _ if !matches!(facts.kind, MailKind::Ordinary) => {
            let Some(step) = machine else {
                // An auto-reply or bounce that answers nothing
                // of ours: no lead, no round-robin turn.
                tx.set_message_lead(key, NO_LEAD)?;
                return Ok(IngestCommit::only(Ingested::NoLead));
            };
            step
        }
        // Team mail that answers nothing, and delivery reports
        // (bounces) leadgate could not read: no lead of their
        // own.
        (None, Direction::Outbound) => {
            tx.set_message_lead(key, NO_LEAD)?;
            return Ok(IngestCommit::only(Ingested::NoLead));
        }
        (None, Direction::Inbound) if is_delivery_report(facts) => {
            tx.set_message_lead(key, NO_LEAD)?;
            return Ok(IngestCommit::only(Ingested::NoLead));
        }
        (Some(id), dir) => {
            let Some(lead) = tx.lead(id)? else {
                tx.set_message_lead(key, NO_LEAD)?;
                return Ok(IngestCommit::only(Ingested::NoLead));
            };
            if dir == Direction::Inbound {
                let t = if engine::is_late(&lead, false, at) {
                    engine::late_message(&lead, false, at, at)
                } else {
                    engine::on_inbound(&lead, facts, cfg, cal, at)
                };
                Step {
                    result: Ingested::Joined(id),
                    transition: t,
                    action: "lead.inbound",
                    actor: CONTACT.to_owned(),
                    reason: format!("customer message from {party} {}", describe(facts)),
                }
            } else if party.is_empty() {
                // Team mail in a customer's thread (to
                // colleagues only): on the timeline, but no
                // reply — the customer still waits.
                let by = user_by_address.get(&facts.from).map(String::as_str);
                Step {
                    result: Ingested::Joined(id),
                    transition: Transition {
                        lead,
                        changes: Vec::new(),
                    },
                    action: "lead.internal",
                    actor: by.unwrap_or(facts.from.as_str()).to_owned(),
                    reason: format!("internal message {}", describe(facts)),
                }
            } else {
                let by = user_by_address.get(&facts.from).map(String::as_str);
                let t = if engine::is_late(&lead, true, at) {
                    engine::late_message(&lead, true, at, at)
                } else {
                    engine::on_outbound_reply(&lead, by, cfg, cal, at)
                };
                Step {
                    result: Ingested::Joined(id),
                    transition: t,
                    action: "lead.outbound",
                    actor: by.unwrap_or(facts.from.as_str()).to_owned(),
                    reason: format!("team message {}", describe(facts)),
                }
            }
        }
        (None, Direction::Inbound) => {
            let id = tx.next_lead_id()?;
            let domain = crate::leads::threading::domain_of(&facts.from);
            let previous = tx.domain_owner(&domain)?;
            let existing = cfg.account_owner(&domain).is_some() || previous.is_some();
            let ctx = AssignContext {
                active_reps: reps,
                previous_owner_for_domain: previous.as_deref(),
                round_robin_cursor: tx.round_robin_cursor()?,
            };
            let tri = triage(cfg, facts, existing, &ctx);
            tx.set_round_robin_cursor(tri.assignment.next_cursor)?;
            let lead = engine::new_lead(id, facts, &tri, cfg, cal, at);
            let empty = Lead {
                id,
                owner: None,
                ..lead.clone()
            };
            let mut changes = engine::diff(&empty, &lead);
            changes.retain(|c| c.field == "owner");
            changes.insert(
                0,
                Change {
                    field: "category",
                    before: String::new(),
                    after: lead.category.label().to_owned(),
                },
            );
            changes.insert(
                0,
                Change {
                    field: "status",
                    before: String::new(),
                    after: lead.status.label().to_owned(),
                },
            );
            let reason = format!(
                "new lead from {}: {}; message {}",
                facts.from,
                tri.assignment.rule,
                describe(facts)
            );
            Step {
                result: Ingested::Created(id),
                transition: Transition { lead, changes },
                action: "lead.create",
                actor: SYSTEM.to_owned(),
                reason,
            }
        }
    };
    record(tx, key, facts, &subject, &party, env, step)
}

/// Writes what a message did to its lead: the lead, its thread and
/// subject indexes, the message's lead, a support forward, the domain's
/// owner, and the audit event.
fn record(
    tx: &Tx<'_>,
    key: u64,
    facts: &MessageFacts,
    subject: &str,
    party: &str,
    env: &IngestEnv,
    step: Step,
) -> Result<IngestCommit, StoreError> {
    let (cfg, at) = (&env.cfg, env.at);
    let Step {
        result,
        transition,
        action,
        actor,
        reason,
    } = step;
    let lead = transition.lead;
    tx.put_lead(&lead)?;
    if let Some(mid) = &facts.message_id {
        tx.map_thread_id(mid, lead.id)?;
    }
    tx.add_subject(subject, party, lead.id)?;
    tx.set_message_lead(key, lead.id)?;
    if matches!(result, Ingested::Created(_))
        && lead.category == Category::SupportHandoff
        && cfg.support_forward_to.is_some()
    {
        tx.queue_support_forward(key, lead.id)?;
    }
    if let Some(owner) = &lead.owner {
        tx.set_domain_owner(&lead.company_domain, owner)?;
    }
    let rev = tx.bump_revision()?;
    // Every message that joins a lead is on its timeline, even
    // when it changes nothing about the lead.
    tx.append_audit(&AuditDraft {
        at: at * 1000,
        actor,
        action: action.to_owned(),
        lead: Some(lead.id),
        changes: audit_changes(&transition.changes),
        reason,
    })?;
    Ok(IngestCommit {
        result,
        rev,
        lead: Some(lead),
    })
}
