//! Sends the mail leadgate owes people (`store::notices`): escalations to
//! the manager the lead was escalated to (or every manager), held replies
//! that expired to their sender. Through the outgoing relay, from the
//! shared address, `Auto-Submitted: auto-generated`; each sent (or given
//! up) notice is audited in the transaction that takes it off the queue.
//! A temporary failure is retried every five minutes, across restarts.

use std::{collections::HashMap, fmt::Write, sync::Arc, time::Duration};

use tokio::sync::watch;

use super::relay::Outbound;
use crate::{
    compose::AutoMail,
    leads::{
        book::{LeadBook, SYSTEM},
        header_safe_address, Lead,
    },
    model::Role,
    store::{
        audit::AuditDraft,
        notices::{Notice, NoticeKind},
        Store, StoreError,
    },
};

/// How long a temporary failure waits before the next attempt.
const RETRY_SECS: i64 = 300;
/// How often the queue is looked at without a lead change to wake it.
const CHECK_EVERY: Duration = Duration::from_secs(60);

pub struct Notifier {
    pub book: Arc<LeadBook>,
    pub store: Store,
    pub outbound: Arc<Outbound>,
    pub hostname: String,
}

fn time(at: i64, tz: chrono_tz::Tz) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|t| t.with_timezone(&tz).format("%a %Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".into())
}

/// The subject and body of a notice about `lead`.
pub fn render(notice: &Notice, lead: Option<&Lead>, tz: chrono_tz::Tz) -> (String, String) {
    let id = notice.lead;
    let who = lead.map_or_else(String::new, |l| {
        l.contact_name.as_deref().map_or_else(
            || l.contact_email.clone(),
            |n| format!("{n} <{}>", l.contact_email),
        )
    });
    let mut body = String::new();
    let subject = match notice.kind {
        NoticeKind::Escalation => {
            let owner = lead.and_then(|l| l.owner.as_deref()).unwrap_or("nobody");
            let _ = writeln!(
                body,
                "Lead {id} was escalated to you: a manager decides what happens next."
            );
            let _ = writeln!(body, "\nWhy: {}", notice.detail);
            format!("Escalated: lead {id} · {who} · owner {owner}")
        }
        NoticeKind::HeldExpired => {
            let _ = writeln!(
                body,
                "Your held message on lead {id} was neither released nor discarded in time \
                 and has expired: it was NOT sent to the customer."
            );
            let _ = writeln!(body, "\nMessage: {}", notice.detail);
            let _ = writeln!(
                body,
                "Ask the lead's owner or a manager for a handoff, then write again."
            );
            format!("Not sent: your held message on lead {id} expired")
        }
        NoticeKind::Assigned => {
            let _ = writeln!(body, "Lead {id} is yours now: {}.", notice.detail);
            let status = lead.map_or("-", |l| l.status.label());
            format!("Yours: lead {id} · {who} · {status}")
        }
        NoticeKind::CommandsRefused => {
            let _ = writeln!(
                body,
                "Not everything you mailed about lead {id} was done:\n\n{}",
                notice.detail
            );
            format!("Not done: your commands on lead {id}")
        }
    };
    if let Some(l) = lead {
        let _ = writeln!(body, "\nLead {}: {}", l.id, l.subject);
        let _ = writeln!(body, "  contact     {who}");
        let _ = writeln!(body, "  owner       {}", l.owner.as_deref().unwrap_or("-"));
        let _ = writeln!(body, "  status      {}", l.status.label());
        if let Some(due) = l.due {
            let _ = writeln!(body, "  due         {}", time(due, tz));
        }
        let _ = writeln!(body, "  follow-ups  {} sent", l.followups_sent);
        if let Some(at) = l.last_outbound_at {
            let _ = writeln!(body, "  last reply  {}", time(at, tz));
        }
        if let Some(at) = l.last_inbound_at {
            let _ = writeln!(body, "  customer    last wrote {}", time(at, tz));
        }
        if l.high_value {
            let _ = writeln!(body, "  high value  {}", l.value_signals.join(", "));
        }
        if l.urgent {
            let _ = writeln!(body, "  urgent      yes");
        }
        if notice.kind == NoticeKind::Escalation {
            let _ = writeln!(
                body,
                "\nThe lead is in Review/Escalated in your mail client. Chase the customer, \
                 hand it to someone, or close it."
            );
        }
    }
    body.push_str("\n-- \nSent by leadgate.\n");
    (subject, body)
}

/// What became of one attempt.
enum Attempt {
    Sent(String),
    Retry(String),
    Failed(String),
}

impl Notifier {
    /// Sends what is queued, after every lead change and every minute,
    /// until shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut updates = self.book.subscribe();
        let mut retry_after = HashMap::new();
        loop {
            if let Err(e) = self.send_pending(&mut retry_after).await {
                tracing::error!("notices: {e}");
            }
            tokio::select! {
                r = updates.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(CHECK_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One pass over the queue; returns how many notices went out.
    pub async fn send_pending(
        &self,
        retry_after: &mut HashMap<u64, i64>,
    ) -> Result<usize, StoreError> {
        let pending = self.store.notices_pending()?;
        if pending.is_empty() {
            return Ok(0);
        }
        let users = self.store.user_list()?;
        let now = self.book.now();
        let mut sent = 0;
        for (id, notice) in pending {
            if retry_after.get(&id).is_some_and(|&t| t > now) {
                continue;
            }
            // The named users, else every enabled manager; each with a
            // usable address.
            let named: Vec<&crate::store::users::User> = users
                .iter()
                .filter(|u| u.enabled)
                .filter(|u| {
                    if notice.to.is_empty() {
                        matches!(u.role, Role::Manager | Role::Admin)
                    } else {
                        notice.to.contains(&u.name)
                    }
                })
                .collect();
            let to: Vec<String> = named
                .iter()
                .filter_map(|u| u.email.clone())
                .filter(|e| header_safe_address(e))
                .collect();
            let names: Vec<&str> = named.iter().map(|u| u.name.as_str()).collect();
            let attempt = if to.is_empty() {
                Attempt::Failed(format!(
                    "nobody to tell: {} has no usable email address",
                    if names.is_empty() {
                        "no enabled manager".to_owned()
                    } else {
                        names.join(", ")
                    }
                ))
            } else {
                self.send(&notice, &to, now).await
            };
            let (action, reason) = match attempt {
                Attempt::Sent(what) => {
                    sent += 1;
                    ("sent", what)
                }
                Attempt::Failed(why) => {
                    tracing::warn!("notice {id} on lead {} not sent: {why}", notice.lead);
                    ("failed", why)
                }
                Attempt::Retry(why) => {
                    tracing::warn!(
                        "notice {id} on lead {} not sent yet, retrying in 5 minutes: {why}",
                        notice.lead
                    );
                    retry_after.insert(id, now + RETRY_SECS);
                    continue;
                }
            };
            retry_after.remove(&id);
            let kind = match notice.kind {
                NoticeKind::Escalation => "lead.escalation.mail",
                NoticeKind::HeldExpired => "reply.expired.mail",
                NoticeKind::Assigned => "lead.owner.mail",
                NoticeKind::CommandsRefused => "lead.command.refused.mail",
            };
            self.store
                .notice_done(
                    id,
                    AuditDraft {
                        at: now * 1000,
                        actor: SYSTEM.to_owned(),
                        action: if action == "sent" {
                            kind.to_owned()
                        } else {
                            format!("{kind}.failed")
                        },
                        lead: Some(notice.lead),
                        changes: Vec::new(),
                        reason,
                    },
                )
                .await?;
        }
        Ok(sent)
    }

    async fn send(&self, notice: &Notice, to: &[String], now: i64) -> Attempt {
        let lead = self.book.lead(notice.lead);
        let tz = self.book.calendar().time_zone();
        let (subject, body) = render(notice, lead.as_deref(), tz);
        let from = self.book.config().shared_address.clone();
        let date = chrono::DateTime::from_timestamp(now, 0)
            .unwrap_or_default()
            .to_rfc2822();
        let prefix = match notice.kind {
            NoticeKind::Escalation => format!("escalation.{}", notice.lead),
            NoticeKind::HeldExpired => format!("held-expired.{}", notice.lead),
            NoticeKind::Assigned => format!("assigned.{}", notice.lead),
            NoticeKind::CommandsRefused => format!("refused.{}", notice.lead),
        };
        let mail = AutoMail {
            from: &from,
            to,
            subject: &subject,
            date: &date,
            id_prefix: &prefix,
            auto_submitted: match notice.kind {
                NoticeKind::CommandsRefused => "auto-replied",
                _ => "auto-generated",
            },
            hostname: &self.hostname,
            extra: &[format!("X-Lead-Id: {}", notice.lead)],
            body: &body,
        }
        .render();
        match self.outbound.send(&from, to, &mail).await {
            Ok(()) => Attempt::Sent(format!("mailed {}", to.join(", "))),
            Err(r) if r.code >= 500 => Attempt::Failed(format!("{} {}", r.code, r.text)),
            Err(r) => Attempt::Retry(format!("{} {}", r.code, r.text)),
        }
    }
}
