//! What time does to leads: follow-ups falling due, escalations, closing
//! unanswered leads.

use super::*;

impl LeadBook {
    /// Applies what time does: follow-ups falling due, escalations,
    /// closing unanswered leads. Returns when the next due time is.
    pub async fn tick(&self) -> Result<Option<i64>, BookError> {
        let now = self.now();
        let since = self.ticked_until.swap(now, Ordering::SeqCst);
        let due: Vec<LeadId> = {
            let st = self.state.read().unwrap_or_else(|e| e.into_inner());
            st.leads
                .values()
                .filter(|(_, l)| {
                    l.status.is_active() && l.due.is_some_and(|d| d <= now && d > since)
                })
                .map(|(_, l)| l.id)
                .collect()
        };
        let mut touched = Vec::new();
        for id in due {
            let cfg = self.config();
            let Commit { out: lead, rev } = self
                .store
                .change(move |tx| {
                    let Some(lead) = tx.lead(id)? else {
                        return Ok(Commit::unchanged(None));
                    };
                    if lead.due.is_none_or(|d| d > now) {
                        return Ok(Commit::unchanged(None));
                    }
                    let t = engine::on_due(&lead, &cfg, now);
                    if t.changes.is_empty() {
                        return Ok(Commit::unchanged(None));
                    }
                    let action = if t.lead.escalated && !lead.escalated {
                        "lead.escalate"
                    } else if !t.lead.status.is_active() {
                        "lead.close"
                    } else {
                        "lead.due"
                    };
                    tx.put_lead(&t.lead)?;
                    if action == "lead.escalate" {
                        // The escalation target learns of it at once (once:
                        // the notice commits with the escalation).
                        tx.queue_notice(&Notice {
                            kind: NoticeKind::Escalation,
                            lead: id,
                            to: t.lead.escalated_to.clone().into_iter().collect(),
                            queued_at: now,
                            detail: format!(
                                "no answer after {} follow-up(s); the last one went out {}",
                                lead.followups_sent,
                                lead.last_outbound_at.map_or_else(|| "-".into(), rfc3339)
                            ),
                        })?;
                    }
                    let rev = tx.bump_revision()?;
                    tx.append_audit(&AuditDraft {
                        at: now * 1000,
                        actor: SYSTEM.to_owned(),
                        action: action.to_owned(),
                        lead: Some(id),
                        changes: audit_changes(&t.changes),
                        reason: "follow-up date reached".into(),
                    })?;
                    Ok(Commit {
                        out: Some(t.lead),
                        rev,
                    })
                })
                .await?;
            if let Some(lead) = lead {
                self.publish(rev, vec![lead], &[]);
            }
            touched.push(id);
        }
        // Overdue is a matter of time alone: followers must look again.
        if !touched.is_empty() {
            self.notify(touched);
        }
        Ok(self.next_due(now))
    }

    /// The earliest due time after `now` among active leads.
    pub fn next_due(&self, now: i64) -> Option<i64> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.leads
            .values()
            .filter(|(_, l)| l.status.is_active())
            .filter_map(|(_, l)| l.due)
            .filter(|&d| d > now)
            .min()
    }
}
