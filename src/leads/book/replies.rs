//! Replies through the SMTP gateway: which lead a submission touches, the
//! owner rule by thread and by person, and recording what went out.

use super::*;

impl LeadBook {
    /// The lead a message answers, from its In-Reply-To and References
    /// (newest first) or an `X-Lead-Id` header.
    pub fn lead_for_reply(
        &self,
        facts: &MessageFacts,
        x_lead_id: Option<LeadId>,
    ) -> Option<LeadId> {
        self.leads_referenced(facts, x_lead_id).into_iter().next()
    }

    /// Every lead a message's headers name, nearest first: In-Reply-To,
    /// then References from the newest, then `X-Lead-Id`; each once. A
    /// mixed message (In-Reply-To one lead, References another) names both.
    pub fn leads_referenced(&self, facts: &MessageFacts, x_lead_id: Option<LeadId>) -> Vec<LeadId> {
        let ids: Vec<String> = facts
            .in_reply_to
            .iter()
            .chain(facts.references.iter().rev())
            // The gateway refuses longer lists (MAX_REFERENCES).
            .take(MAX_REFERENCES + 1)
            .map(|id| crate::leads::threading::normalize_message_id(id))
            .collect();
        let mut found = Vec::new();
        for lead in self.store.leads_by_message_ids(&ids).unwrap_or_default() {
            if lead != NO_LEAD && !found.contains(&lead) {
                found.push(lead);
            }
        }
        if let Some(id) = x_lead_id.filter(|id| self.lead(*id).is_some()) {
            if !found.contains(&id) {
                found.push(id);
            }
        }
        found
    }

    /// The owner rule for a message `who` submits to `recipients` (outside
    /// addresses, lower case): every lead its headers name, and every
    /// active lead whose contact — or, with `owner_scope = "domain"`,
    /// company — is a recipient, asked of [`policy::submission`] at once.
    /// `None` when a named lead is not loaded yet (try again).
    pub fn check_submission(
        &self,
        who: &Principal,
        facts: &MessageFacts,
        x_lead_id: Option<LeadId>,
        recipients: &[String],
    ) -> Option<policy::SubmissionVerdict> {
        let cfg = self.config();
        let threaded = self.leads_referenced(facts, x_lead_id);
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        let mut leads: Vec<(Arc<Lead>, usize, bool)> = Vec::new();
        for id in &threaded {
            leads.push((st.leads.get(id)?.1.clone(), usize::MAX, false));
        }
        for (i, r) in recipients.iter().enumerate() {
            let r = r.trim().to_lowercase();
            for id in st.by_contact.get(&r).into_iter().flatten() {
                if let Some((_, l)) = st.leads.get(id) {
                    leads.push((l.clone(), i, false));
                }
            }
            // The company domain and its parents (eu.acme.example is
            // acme.example's), never a bare top-level domain.
            let domain = crate::leads::threading::domain_of(&r);
            let mut d = domain.as_str();
            while d.contains('.') {
                if cfg.protects_domain(d) {
                    for id in st.by_domain.get(d).into_iter().flatten() {
                        if let Some((_, l)) = st.leads.get(id) {
                            if !l.contact_email.eq_ignore_ascii_case(&r) {
                                leads.push((l.clone(), i, true));
                            }
                        }
                    }
                }
                d = d.split_once('.').map_or("", |(_, rest)| rest);
            }
        }
        drop(st);
        let touched: Vec<(&Lead, policy::Touch<'_>)> = leads
            .iter()
            .map(|(l, i, domain)| {
                let touch = match (recipients.get(*i), domain) {
                    (None, _) => policy::Touch::Thread,
                    (Some(r), false) => policy::Touch::Contact(r.as_str()),
                    (Some(r), true) => policy::Touch::Domain(r.as_str()),
                };
                (l.as_ref(), touch)
            })
            .collect();
        Some(policy::submission(
            Actor {
                name: &who.name,
                role: who.role,
            },
            &touched,
            &cfg.reply_rules(),
        ))
    }

    /// Whether an address is the team's own: the shared address or an
    /// active user's. Mail only to such addresses is internal.
    pub fn is_team_address(&self, address: &str) -> bool {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.team
            .iter()
            .any(|t| t.trim().eq_ignore_ascii_case(address.trim()))
    }

    /// Records a reply a user sent through leadgate (attributed to them,
    /// unlike the copy later found in the shared Sent, which is then
    /// recognised by its Message-ID and only mapped).
    pub async fn reply_sent(
        &self,
        who: &Principal,
        id: LeadId,
        facts: MessageFacts,
        at: i64,
        mut also: Option<AlsoInTxn>,
    ) -> Result<Arc<Lead>, BookError> {
        let cfg = self.config();
        let cal = self.calendar();
        let by = who.name.clone();
        let Commit { out: lead, rev } = self
            .store
            .change(move |tx| {
                if let Some(f) = also.as_mut() {
                    f(tx)?;
                }
                let Some(lead) = tx.lead(id)? else {
                    return Ok(Commit::unchanged(None));
                };
                let t = engine::on_outbound_reply(&lead, Some(&by), &cfg, &cal, at);
                let lead = t.lead;
                tx.put_lead(&lead)?;
                if let Some(mid) = &facts.message_id {
                    tx.map_thread_id(mid, id)?;
                }
                if let Some(owner) = &lead.owner {
                    tx.set_domain_owner(&lead.company_domain, owner)?;
                }
                let rev = tx.bump_revision()?;
                tx.append_audit(&AuditDraft {
                    at: at * 1000,
                    actor: by.clone(),
                    action: "lead.reply".into(),
                    lead: Some(id),
                    changes: audit_changes(&t.changes),
                    reason: format!("reply sent {}", describe(&facts)),
                })?;
                Ok(Commit {
                    out: Some(lead),
                    rev,
                })
            })
            .await?;
        let lead = lead.ok_or(BookError::NoLead(id))?;
        self.observe_first_response(&lead);
        let arc = Arc::new(lead.clone());
        self.publish(rev, vec![lead], &[]);
        Ok(arc)
    }

    /// Opens a lead for a first message a user sends to a customer (not a
    /// reply), owned by the sender and waiting for the customer's answer.
    pub async fn open_outbound(
        &self,
        who: &Principal,
        facts: MessageFacts,
        at: i64,
        mut also: Option<AlsoInTxn>,
    ) -> Result<Option<Arc<Lead>>, BookError> {
        let team = self
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .team
            .clone();
        let customer = counterpart(&facts, Direction::Outbound, &team);
        if customer.is_empty() {
            return Ok(None);
        }
        let cfg = self.config();
        let cal = self.calendar();
        let by = who.name.clone();
        let Commit { out: lead, rev } = self
            .store
            .change(move |tx| {
                if let Some(f) = also.as_mut() {
                    f(tx)?;
                }
                let id = tx.next_lead_id()?;
                // The customer's view of the conversation: as if they wrote.
                let as_inbound = MessageFacts {
                    from: customer.clone(),
                    from_name: None,
                    ..facts.clone()
                };
                let reps = [by.clone()];
                let ctx = AssignContext {
                    active_reps: &reps,
                    previous_owner_for_domain: Some(&by),
                    round_robin_cursor: 0,
                };
                let mut tri = triage(&cfg, &as_inbound, false, &ctx);
                tri.assignment.owner = Some(by.clone());
                tri.assignment.rule = format!("opened by {by}'s outbound message");
                let opened = engine::new_lead(id, &as_inbound, &tri, &cfg, &cal, at);
                let t = engine::on_outbound_reply(&opened, Some(&by), &cfg, &cal, at);
                let lead = t.lead;
                tx.put_lead(&lead)?;
                if let Some(mid) = &facts.message_id {
                    tx.map_thread_id(mid, id)?;
                }
                tx.add_subject(&normalize_subject(&facts.subject), &customer, id)?;
                let rev = tx.bump_revision()?;
                tx.append_audit(&AuditDraft {
                    at: at * 1000,
                    actor: by.clone(),
                    action: "lead.create".into(),
                    lead: Some(id),
                    changes: vec![
                        AuditChange {
                            field: "status".into(),
                            before: String::new(),
                            after: lead.status.label().into(),
                        },
                        AuditChange {
                            field: "owner".into(),
                            before: String::new(),
                            after: by.clone(),
                        },
                    ],
                    reason: format!("outbound message to {customer} {}", describe(&facts)),
                })?;
                Ok(Commit { out: lead, rev })
            })
            .await?;
        let arc = Arc::new(lead.clone());
        self.publish(rev, vec![lead], &[]);
        Ok(Some(arc))
    }

    /// Whether `who` may release or discard a held reply to lead `id`: its
    /// owner or a manager.
    pub fn may_decide_held(&self, who: &Principal, id: LeadId) -> Result<(), String> {
        let Some(lead) = self.lead(id) else {
            return Err(format!("There is no lead {id}"));
        };
        let actor = Actor {
            name: &who.name,
            role: who.role,
        };
        match policy::decide(
            actor,
            policy::Action::DecideHeld,
            &lead,
            &self.config().reply_rules(),
        ) {
            Verdict::Deny { reason } => Err(reason),
            _ => Ok(()),
        }
    }
}
