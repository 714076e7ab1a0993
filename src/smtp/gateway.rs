//! What happens to a message a user submits: the owner rule of the brief
//! ("once a lead is assigned ... the owner controls the customer reply"),
//! then the relay, then the lead. In order:
//!
//! 1. Mail to the notes address that answers a lead becomes an internal
//!    note on it and is not relayed.
//! 2. The owner rule, by thread and by person (`LeadBook::check_submission`):
//!    every lead the headers name (In-Reply-To, all of References,
//!    X-Lead-Id) and every active lead whose contact (or company, with
//!    `owner_scope = "domain"`) is an outside recipient (the envelope:
//!    To, Cc and Bcc). The owner may write; a reply to an unassigned lead
//!    claims it (or is refused, by config); anyone else is refused with
//!    `550 5.7.1` naming the owner(s) — audited and counted. A fresh mail
//!    to a contact joins the sender's lead for them instead of opening a
//!    second one. Mail only to the team (users, the shared address) is
//!    internal: no owner needed, and it leaves the lead as it is.
//! 3. From becomes the shared address with the rep's name, Reply-To the
//!    shared address, and the lead id is added (configurable).
//! 4. The message is relayed (or durably queued); 250 only after that.
//!    A retry of a message already relayed (its 250 was lost) is not
//!    relayed again (`store::sent`).
//! 5. The lead records the reply (Waiting for reply, follow-up scheduled,
//!    first response time), in one commit with the record that the message
//!    went out and a queued copy for the shared Sent, so the thread stays
//!    whole for the team. The copy is filed in the background
//!    (`run_sent_filer`): the client does not wait for the upstream APPEND,
//!    and a crash does not lose the copy.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc, Mutex,
    },
};

use super::{held::HoldOf, relay::Outbound, BoxFuture, Reply, Submission, SubmissionHandler};
use crate::{
    auth::Principal,
    compose::header_safe,
    index::Index,
    leads::{
        book::{Acted, LeadAction, LeadBook, MAX_REFERENCES},
        commands, parse, LeadId,
    },
    metrics::Metrics,
    policy::SubmissionVerdict,
    rfc5322 as message,
    store::{
        audit::AuditDraft,
        notices::{Notice, NoticeKind},
        sent::{self, Stage},
        Tx,
    },
    upstream::pool::Pool,
};

pub struct Gateway {
    pub book: Arc<LeadBook>,
    pub index: Arc<Index>,
    pub pool: Arc<Pool>,
    pub outbound: Arc<Outbound>,
    pub metrics: Arc<Metrics>,
    pub hostname: String,
    pub shared_address: String,
    /// The shared mailbox's Sent folder ("" for none).
    pub shared_sent: String,
    pub notes_address: Option<String>,
    pub rewrite_from: bool,
    pub new_outbound_creates_lead: bool,
    /// Submission keys being relayed right now (`store::sent`): a second
    /// copy arriving meanwhile is told to retry, not relayed twice.
    pub in_flight: Mutex<HashSet<[u8; 32]>>,
    /// When `store::sent` was last pruned (unix ms).
    pub last_prune: AtomicI64,
    /// Wakes the task that files queued copies in the shared Sent.
    pub filer: tokio::sync::Notify,
    /// `[smtp] blocked_reply = "hold"`: where held replies are shown and
    /// how long they wait; `None` refuses blocked replies instead.
    pub held: Option<super::held::HeldSettings>,
    /// Held replies being decided right now (one decision each).
    pub deciding: Mutex<HashSet<u64>>,
}

/// How often the Sent filer retries copies the upstream did not take.
const FILE_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// How often old `store::sent` entries are pruned.
const PRUNE_EVERY_MS: i64 = 3600 * 1000;

/// Removes a submission key from the in-flight set when the handling of
/// that submission ends, however it ends.
struct InFlight<'a> {
    set: &'a Mutex<HashSet<[u8; 32]>>,
    key: [u8; 32],
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

/// The first value of a header field, unfolded.
pub fn header_value(raw: &[u8], name: &str) -> Option<String> {
    let header = &raw[..message::header_len(raw)];
    message::header_fields(header).into_iter().find_map(|f| {
        let field_name = message::field_name(f);
        if !field_name.eq_ignore_ascii_case(name.as_bytes()) {
            return None;
        }
        let value = &f[field_name.len()..];
        let value = value.strip_prefix(b":").unwrap_or(value);
        // Unfolding removes the line break and keeps the whitespace after it.
        let text: String = String::from_utf8_lossy(value)
            .replace("\r\n", "")
            .replace(['\r', '\n'], " ");
        Some(text.trim().to_owned())
    })
}

/// The message with the `remove`d fields dropped and `add` lines put on
/// top; the body is untouched.
pub fn rewrite_headers(raw: &[u8], add: &[String], remove: &[&str]) -> Vec<u8> {
    let split = message::header_len(raw);
    let (header, body) = raw.split_at(split);
    let mut out = Vec::with_capacity(raw.len() + 256);
    for line in add {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for f in message::header_fields(header) {
        let name = message::field_name(f);
        if remove
            .iter()
            .any(|r| r.as_bytes().eq_ignore_ascii_case(name))
        {
            continue;
        }
        out.extend_from_slice(f);
        if !f.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// `"Name" <address>` with the name made header-safe.
pub fn mailbox(name: &str, address: &str) -> String {
    let safe = header_safe(name);
    if safe.is_empty() {
        format!("<{address}>")
    } else if safe.starts_with("=?") {
        format!("{safe} <{address}>")
    } else {
        format!(
            "\"{}\" <{address}>",
            safe.replace('\\', "\\\\").replace('"', "\\\"")
        )
    }
}

/// Where the owner rule sends a submission.
struct Route {
    /// The lead it answers (or that its sender just claimed).
    lead: Option<LeadId>,
    /// Only teammates among the recipients: no reply, no lead change.
    internal: bool,
    claimed: bool,
    /// Held instead of refused: the owners and the reason.
    hold: Option<(Vec<String>, String)>,
}

/// The message as it is relayed.
struct Outgoing {
    message_id: String,
    data: Vec<u8>,
    envelope_from: String,
}

fn reply(code: u16, status: (u8, u16, u16), text: impl Into<String>) -> Reply {
    Reply::new(code, status, text)
}

impl Gateway {
    async fn audit(&self, actor: &str, action: &str, lead: Option<LeadId>, reason: String) {
        let draft = AuditDraft {
            at: chrono::Utc::now().timestamp_millis(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            lead,
            changes: Vec::new(),
            reason,
        };
        if let Err(e) = self.index.store().audit(draft).await {
            tracing::error!("audit: {e}");
        }
    }

    /// Whether `rcpt` is the notes address (`Some`), and the lead its
    /// `+<id>` tag names, if any (`notes+12@...`).
    fn notes_target(&self, rcpt: &str) -> Option<Option<LeadId>> {
        let notes = self.notes_address.as_deref()?;
        // A lead card's sender (`leadgate@HOSTNAME`) is no mailbox: a
        // "Reply all" to a card names it beside the card's notes+<id>
        // address, and it is part of the note, never relayed.
        let card_sender = format!("leadgate@{}", self.hostname);
        if notes.eq_ignore_ascii_case(rcpt) || card_sender.eq_ignore_ascii_case(rcpt) {
            return Some(None);
        }
        let (n_local, n_domain) = notes.rsplit_once('@')?;
        let (local, domain) = rcpt.rsplit_once('@')?;
        let (base, tag) = local.split_once('+')?;
        (base.eq_ignore_ascii_case(n_local) && domain.eq_ignore_ascii_case(n_domain))
            .then(|| tag.parse::<LeadId>().ok())
    }

    /// A mail to the notes address: its command lines, then its note, each
    /// through the lead book (policy and audit as the action folders). A
    /// mail with no command keeps the old answer: 550 when the note is
    /// refused. With commands it is 250 for what was done, and whatever was
    /// refused goes back to the sender by mail (`Auto-Submitted:
    /// auto-replied`). Mail that is itself auto-submitted is not read.
    async fn notes_and_commands(
        &self,
        user: &Principal,
        id: LeadId,
        data: &[u8],
        facts: &crate::leads::threading::MessageFacts,
    ) -> Result<String, Reply> {
        if header_value(data, "Auto-Submitted")
            .is_some_and(|v| !v.trim().eq_ignore_ascii_case("no"))
        {
            return Ok(format!(
                "Auto-submitted mail to the notes address is not read; lead {id} unchanged"
            ));
        }
        let parsed = commands::parse(&facts.body_text);
        let had_commands = !parsed.commands.is_empty();
        let mut note = parsed.note;
        if !had_commands && note.is_empty() {
            note = facts.subject.trim().to_owned();
        }
        let (cal, now) = (self.book.calendar(), self.book.now());
        let mut done = Vec::new();
        let mut refused = Vec::new();
        for (line, cmd) in parsed.commands {
            let action = match cmd {
                Ok(c) => c.into_action(&cal, now, &mut note),
                Err(why) => {
                    // On the lead's record like a refused action (the card
                    // shows the last one).
                    self.audit(
                        &user.name,
                        "lead.command.refused",
                        Some(id),
                        format!("{line}: {why}"),
                    )
                    .await;
                    refused.push(format!("{line}\n    {why}"));
                    continue;
                }
            };
            match self.book.act(user, id, action).await {
                Ok(Acted::Done(_)) => done.push(line),
                Ok(Acted::Refused(why)) => refused.push(format!("{line}\n    {why}")),
                Err(e) => {
                    tracing::error!("command on lead {id}: {e}");
                    refused.push(format!("{line}\n    could not be saved; try again"));
                }
            }
        }
        if !note.is_empty() {
            match self.book.act(user, id, LeadAction::Note(note)).await {
                Ok(Acted::Done(_)) => done.push("(note added)".to_owned()),
                Ok(Acted::Refused(why)) if !had_commands => return Err(reply(550, (5, 7, 1), why)),
                Ok(Acted::Refused(why)) => refused.push(format!("(the note)\n    {why}")),
                Err(e) if !had_commands => {
                    tracing::error!("note on lead {id}: {e}");
                    return Err(reply(
                        451,
                        (4, 3, 0),
                        "The note could not be saved; try again",
                    ));
                }
                Err(e) => {
                    tracing::error!("note on lead {id}: {e}");
                    refused.push("(the note)\n    could not be saved; try again".to_owned());
                }
            }
        }
        if !had_commands {
            return Ok(format!("Note added to lead {id}; not sent to anyone"));
        }
        if !refused.is_empty() {
            let mut detail = format!("Not done:\n\n  {}\n", refused.join("\n  "));
            if !done.is_empty() {
                detail.push_str(&format!("\nDone:\n\n  {}\n", done.join("\n  ")));
            }
            let notice = Notice {
                kind: NoticeKind::CommandsRefused,
                lead: id,
                to: vec![user.name.clone()],
                queued_at: now,
                detail,
            };
            match self
                .index
                .store()
                .change(move |tx| tx.queue_notice(&notice))
                .await
            {
                // Wakes the notifier (and the views, which find nothing new).
                Ok(_) => self.book.notify(vec![id]),
                Err(e) => tracing::error!("queueing the refusal mail on lead {id}: {e}"),
            }
        }
        Ok(format!(
            "Lead {id}: {} done, {} refused{}; not sent to anyone",
            done.len(),
            refused.len(),
            if refused.is_empty() {
                ""
            } else {
                " (the reasons come by mail)"
            }
        ))
    }

    async fn handle(&self, sub: Submission) -> Reply {
        let started = std::time::Instant::now();
        let now = self.book.now();
        let user = sub.user.clone();
        let facts = parse::facts(&sub.data, now);
        // Every reference is checked against the owner rule, so none may
        // be left out: an absurd list is refused, not cut.
        if facts.references.len() > MAX_REFERENCES {
            return reply(
                554,
                (5, 6, 0),
                format!(
                    "The References header lists {} message ids; at most {MAX_REFERENCES} are accepted",
                    facts.references.len()
                ),
            );
        }
        let x_lead = header_value(&sub.data, "X-Lead-Id").and_then(|v| v.parse::<LeadId>().ok());
        let lead_id = self.book.lead_for_reply(&facts, x_lead);
        tracing::debug!(
            user = %user.name,
            in_reply_to = ?facts.in_reply_to,
            references = ?facts.references,
            lead = ?lead_id,
            "submission matched"
        );

        // 1. Internal notes and commands (notes+<id>@ names the lead).
        let (notes, customers): (Vec<String>, Vec<String>) = sub
            .envelope
            .rcpt_to
            .iter()
            .cloned()
            .partition(|r| self.notes_target(r).is_some());
        if !notes.is_empty() {
            let tagged = notes.iter().find_map(|r| self.notes_target(r).flatten());
            let Some(id) = tagged.or(lead_id) else {
                return reply(
                    550,
                    (5, 1, 1),
                    "A note must answer a lead's message (reply to it, write to notes+<lead id>@, or add an X-Lead-Id header)",
                );
            };
            let done = match self.notes_and_commands(&user, id, &sub.data, &facts).await {
                Ok(done) => done,
                Err(r) => return r,
            };
            if customers.is_empty() {
                return reply(250, (2, 0, 0), done);
            }
        }

        // 2. The owner rule, by thread and by person.
        let route = match self
            .owner_rule(&user, &facts, x_lead, lead_id, &customers)
            .await
        {
            Ok(route) => route,
            Err(r) => return r,
        };
        let Route {
            lead: lead_id,
            internal,
            claimed,
            hold,
        } = route;

        // 3. Headers the customer and the thread need.
        let Outgoing {
            message_id,
            data,
            envelope_from,
        } = self.outgoing(&user, &facts, lead_id, &sub.data, &sub.envelope.mail_from);

        // 4. Relay; 250 only once the upstream (or the queue) has it, and
        // only once: a retry of a message already relayed is recognised.
        let key = sent::key(
            &user.name,
            &customers,
            facts.message_id.as_deref(),
            &sub.data,
        );
        let _in_flight = {
            let mut set = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if !set.insert(key) {
                return reply(
                    451,
                    (4, 3, 0),
                    format!("{message_id} is being sent right now; try again in a minute"),
                );
            }
            InFlight {
                set: &self.in_flight,
                key,
            }
        };
        let t_policy = started.elapsed();
        if let (Some((owners, reason)), Some(lead)) = (hold, lead_id) {
            let subject = facts.subject.clone();
            return self
                .hold(
                    &user,
                    lead,
                    &owners,
                    reason,
                    key,
                    HoldOf {
                        envelope_from: &envelope_from,
                        rcpts: &customers,
                        message_id: &message_id,
                        subject: &subject,
                        data: &data,
                    },
                )
                .await;
        }
        if let Err(r) = self.not_sent_before(&user, lead_id, key, &message_id).await {
            return r;
        }
        if let Some(r) = self
            .relay(
                &user,
                lead_id,
                &message_id,
                key,
                &envelope_from,
                &customers,
                &data,
            )
            .await
        {
            return r;
        }

        let t_relay = started.elapsed();

        // 5. The lead and the thread, with the record that it went out.
        let mut facts = facts;
        facts.message_id = Some(message_id.clone());
        let lead_text = self
            .record_sent(&user, (lead_id, internal, claimed), facts, now, key, &data)
            .await;
        let t_lead = started.elapsed();
        // The Sent copy is queued; the filer takes it from here.
        self.filer.notify_one();
        tracing::debug!(
            "submission {message_id}: policy {:?}, relayed {:?}, lead {:?}, done {:?}",
            t_policy,
            t_relay,
            t_lead,
            started.elapsed()
        );
        reply(250, (2, 0, 0), format!("Sent {message_id} ({lead_text})"))
    }

    /// The owner rule, by thread and by person. Mail only to the team is
    /// internal: nothing reaches a customer, so it needs no owner and is no
    /// reply (the lead is left as it is). A reply to an unassigned lead
    /// claims it when the rules say so; a blocked one is refused (`Err`)
    /// or, with held replies on, marked to be held.
    async fn owner_rule(
        &self,
        user: &Principal,
        facts: &crate::leads::threading::MessageFacts,
        x_lead: Option<LeadId>,
        lead_id: Option<LeadId>,
        customers: &[String],
    ) -> Result<Route, Reply> {
        let external: Vec<String> = customers
            .iter()
            .filter(|r| !self.book.is_team_address(r))
            .map(|r| r.trim().to_lowercase())
            .collect();
        let internal = external.is_empty();
        let mut claimed = false;
        let mut hold = None;
        let lead_id = if internal {
            lead_id
        } else {
            let Some(verdict) = self.book.check_submission(user, facts, x_lead, &external) else {
                return Err(reply(
                    451,
                    (4, 3, 0),
                    "The lead is being updated; try again",
                ));
            };
            match verdict {
                SubmissionVerdict::Deny {
                    lead,
                    owners,
                    reason,
                } => {
                    if self.held.is_none() {
                        return Err(self.blocked(user, lead, &owners, reason).await);
                    }
                    // Held instead of refused: kept, not relayed (below,
                    // once the message is what would be relayed).
                    hold = Some((owners, reason));
                    Some(lead)
                }
                SubmissionVerdict::Send { lead: None, .. } => None,
                SubmissionVerdict::Send {
                    lead: Some(id),
                    claim,
                } => {
                    if claim {
                        match self
                            .book
                            .act(user, id, LeadAction::AssignTo(user.name.clone()))
                            .await
                        {
                            Ok(Acted::Done(_)) => claimed = true,
                            Ok(Acted::Refused(why)) => {
                                let owners: Vec<String> = self
                                    .book
                                    .lead(id)
                                    .and_then(|l| l.owner.clone())
                                    .into_iter()
                                    .collect();
                                return Err(self.blocked(user, id, &owners, why).await);
                            }
                            Err(e) => {
                                tracing::error!("claim of lead {id}: {e}");
                                return Err(reply(
                                    451,
                                    (4, 3, 0),
                                    "The lead could not be claimed; try again",
                                ));
                            }
                        }
                    }
                    Some(id)
                }
            }
        };
        Ok(Route {
            lead: lead_id,
            internal,
            claimed,
            hold,
        })
    }

    /// The message as it goes out: a Message-ID if it had none, the
    /// sender rewritten to the shared address (`rewrite_from`), the lead's
    /// id, and no `X-Lead-*` or `Bcc` of the client's.
    fn outgoing(
        &self,
        user: &Principal,
        facts: &crate::leads::threading::MessageFacts,
        lead_id: Option<LeadId>,
        raw: &[u8],
        mail_from: &str,
    ) -> Outgoing {
        let message_id = match facts.message_id.clone() {
            Some(id) => id,
            None => format!("<{:032x}@{}>", rand::random::<u128>(), self.hostname),
        };
        let mut add = Vec::new();
        let mut remove: Vec<&str> = vec![
            "X-Lead-Id",
            "X-Lead-Owner",
            "X-Lead-Status",
            "X-Lead-Follow-Up",
            "X-Lead-Category",
            "X-Lead-Contact",
            "Bcc",
        ];
        if facts.message_id.is_none() {
            add.push(format!("Message-ID: {message_id}"));
        }
        if self.rewrite_from {
            let name = user
                .display_name
                .clone()
                .unwrap_or_else(|| user.name.clone());
            add.push(format!("From: {}", mailbox(&name, &self.shared_address)));
            add.push(format!("Reply-To: <{}>", self.shared_address));
            remove.extend(["From", "Reply-To", "Sender"]);
        }
        if let Some(id) = lead_id {
            add.push(format!("X-Lead-Id: {id}"));
        }
        let data = rewrite_headers(raw, &add, &remove);
        let envelope_from = if self.rewrite_from {
            self.shared_address.clone()
        } else {
            mail_from.to_owned()
        };
        Outgoing {
            message_id,
            data,
            envelope_from,
        }
    }

    /// Records that the relay of `key` starts, unless it went out (or was
    /// held) before: then the answer is given here (`Err`) and nothing is
    /// sent again. A relay cut short by a stop is retried and audited as a
    /// possible duplicate.
    async fn not_sent_before(
        &self,
        user: &Principal,
        lead_id: Option<LeadId>,
        key: [u8; 32],
        message_id: &str,
    ) -> Result<(), Reply> {
        let prior = match self.begin_relay(key).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("recording a submission: {e}");
                return Err(reply(
                    451,
                    (4, 3, 0),
                    "The message could not be recorded; try again",
                ));
            }
        };
        if prior == Some(Stage::Held) {
            return Err(reply(
                250,
                (2, 0, 0),
                format!("{message_id} was held before; it waits for the owner's decision"),
            ));
        }
        if prior == Some(Stage::Done) {
            tracing::info!(user = %user.name, "{message_id} was sent before; not sent again");
            self.audit(
                &user.name,
                "reply.repeat",
                lead_id,
                format!("{message_id} was already sent; the retry was not relayed"),
            )
            .await;
            return Err(reply(
                250,
                (2, 0, 0),
                format!("Sent {message_id} before; not sent again"),
            ));
        }
        if prior == Some(Stage::Relaying) {
            tracing::warn!(
                user = %user.name,
                "{message_id}: leadgate stopped while relaying it; relaying it again (the customer may get it twice)"
            );
            self.audit(
                &user.name,
                "reply.resend",
                lead_id,
                format!("{message_id}: interrupted relay retried; possible duplicate"),
            )
            .await;
        }
        Ok(())
    }

    /// Records a relayed message: on its lead (a reply) or a new lead (a
    /// first message), in one commit with the record that it went out
    /// (`Done`) and its queued Sent copy; on its own when no lead
    /// transaction took them. Returns what the 250 says of the lead.
    async fn record_sent(
        &self,
        user: &Principal,
        (lead_id, internal, claimed): (Option<LeadId>, bool, bool),
        facts: crate::leads::threading::MessageFacts,
        now: i64,
        key: [u8; 32],
        data: &[u8],
    ) -> String {
        let message_id = facts.message_id.clone().unwrap_or_default();
        let record = {
            let copy = (!self.shared_sent.is_empty()).then(|| (user.name.clone(), data.to_vec()));
            let now_ms = chrono::Utc::now().timestamp_millis();
            move |tx: &Tx<'_>| {
                tx.set_sent_stage(&key, Stage::Done, now_ms)?;
                if let Some((user, data)) = &copy {
                    tx.queue_sent_copy(&key, user, lead_id, data)?;
                }
                Ok(())
            }
        };
        let (lead_text, recorded) = match lead_id {
            _ if internal => ("internal; no lead changed".to_owned(), false),
            Some(id) => match self
                .book
                .reply_sent(user, id, facts, now, Some(Box::new(record.clone())))
                .await
            {
                Ok(_) => (
                    format!("lead {id}{}", if claimed { " (claimed)" } else { "" }),
                    true,
                ),
                Err(e) => {
                    tracing::error!("recording the reply on lead {id}: {e}");
                    (format!("lead {id}"), false)
                }
            },
            None if self.new_outbound_creates_lead => {
                match self
                    .book
                    .open_outbound(user, facts, now, Some(Box::new(record.clone())))
                    .await
                {
                    Ok(Some(lead)) => (format!("new lead {}", lead.id), true),
                    // No customer to open a lead for: no transaction ran.
                    Ok(None) => ("no lead".into(), false),
                    Err(e) => {
                        tracing::error!("opening an outbound lead: {e}");
                        ("no lead".into(), false)
                    }
                }
            }
            None => ("no lead".into(), false),
        };
        // No lead transaction took the record (no lead, or it failed): on
        // its own, then.
        if !recorded {
            if let Err(e) = self.index.store().change(record).await {
                // The message went out; without the record a resend would go
                // out again and the Sent copy is not queued.
                tracing::error!("recording that {message_id} was relayed: {e}");
            }
        }
        lead_text
    }

    /// Looks up a submission and, unless it was relayed already, records
    /// that its relay starts. Prunes old entries now and then.
    async fn begin_relay(&self, key: [u8; 32]) -> Result<Option<Stage>, crate::store::StoreError> {
        let now = chrono::Utc::now().timestamp_millis();
        let prune = now - self.last_prune.load(Ordering::Relaxed) >= PRUNE_EVERY_MS;
        if prune {
            self.last_prune.store(now, Ordering::Relaxed);
        }
        // Not waited to disk: the Relaying mark only tells a retry after a
        // crash in the middle of the relay that the customer may get the
        // mail twice (it is relayed again either way); the Done record
        // after the relay, which stops a second relay, is durable and
        // carries this mark to disk with it.
        self.index
            .store()
            .change_lazy(move |tx| {
                if prune {
                    let n = tx.prune_sent(now)?;
                    if n > 0 {
                        tracing::debug!("forgot {n} submissions older than a week");
                    }
                }
                let prior = tx.sent_stage(&key, now)?;
                if matches!(prior, None | Some(Stage::Relaying)) {
                    tx.set_sent_stage(&key, Stage::Relaying, now)?;
                }
                Ok(prior)
            })
            .await
    }

    /// Relays the message; `None` when the relay took it, else the reply
    /// for the client (and the submission is forgotten, so a retry relays).
    #[allow(clippy::too_many_arguments)]
    async fn relay(
        &self,
        user: &Principal,
        lead_id: Option<LeadId>,
        message_id: &str,
        key: [u8; 32],
        envelope_from: &str,
        customers: &[String],
        data: &[u8],
    ) -> Option<Reply> {
        let started = std::time::Instant::now();
        let sent = self.outbound.send(envelope_from, customers, data).await;
        let result = match &sent {
            Ok(()) => crate::metrics::RelayResult::Ok,
            Err(r) if r.code < 500 => crate::metrics::RelayResult::TempFail,
            Err(_) => crate::metrics::RelayResult::PermFail,
        };
        self.metrics.relay(result, started.elapsed());
        if let Err(r) = sent {
            // Not relayed: a retry must relay it.
            if let Err(e) = self
                .index
                .store()
                .change(move |tx| tx.forget_sent(&key))
                .await
            {
                tracing::warn!("forgetting the failed submission {message_id}: {e}");
            }
            self.audit(
                &user.name,
                "reply.failed",
                lead_id,
                format!("{} {}: {}", r.code, message_id, r.text),
            )
            .await;
            return Some(r);
        }
        None
    }

    async fn blocked(
        &self,
        user: &Principal,
        id: LeadId,
        owners: &[String],
        reason: String,
    ) -> Reply {
        self.metrics
            .reply_blocked(owners.first().map_or("-", String::as_str));
        self.audit(&user.name, "reply.blocked", Some(id), reason.clone())
            .await;
        tracing::info!(user = %user.name, lead = id, "reply blocked: {reason}");
        reply(550, (5, 7, 1), reason)
    }

    /// Files the queued Sent copies (`store::sent`), when woken after a
    /// submission and every [`FILE_RETRY`], until shutdown. The first pass
    /// after a start skips copies the Sent folder already has (filed before
    /// a crash that came ahead of taking them off the queue).
    pub async fn run_sent_filer(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        if self.shared_sent.is_empty() {
            return;
        }
        let mut first = true;
        let mut reported = HashSet::new();
        loop {
            self.file_queued(first, &mut reported).await;
            first = false;
            tokio::select! {
                _ = self.filer.notified() => {}
                _ = tokio::time::sleep(FILE_RETRY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One pass over the queue.
    async fn file_queued(&self, after_start: bool, reported: &mut HashSet<[u8; 32]>) {
        let copies = match sent::queued_copies(self.index.store()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reading the Sent queue: {e}");
                return;
            }
        };
        if copies.is_empty() {
            return;
        }
        if after_start {
            if let Err(e) = self.pool.sync(&self.index, &self.shared_sent).await {
                tracing::warn!("resync of {}: {e}", self.shared_sent);
            }
        }
        let mut filed = 0;
        // Set when the upstream failed this pass: the rest waits for the
        // next one (each copy is still reported once).
        let mut failed: Option<String> = None;
        for copy in copies {
            let message_id = header_value(&copy.data, "Message-ID");
            let there = after_start
                && message_id.as_deref().is_some_and(|id| {
                    self.index
                        .with_mailbox(&self.shared_sent, |m| {
                            m.msgs
                                .values()
                                .any(|msg| msg.meta.message_id.as_deref() == Some(id))
                        })
                        .unwrap_or(false)
                });
            if !there {
                let date = crate::upstream::sync::imap_date(&chrono::Utc::now().fixed_offset());
                let flags = [imap_codec::imap_types::flag::Flag::Seen];
                let appended = match &failed {
                    Some(e) => Err(e.clone()),
                    None => self
                        .pool
                        .append(&self.shared_sent, &flags, Some(&date), copy.data.clone())
                        .await
                        .map_err(|e| e.to_string()),
                };
                if let Err(e) = appended {
                    if failed.is_none() {
                        tracing::error!(
                            "filing the sent copy in {} failed (retrying every minute): {e}",
                            self.shared_sent
                        );
                    }
                    if reported.insert(copy.key) {
                        self.audit(
                            &copy.user,
                            "reply.unfiled",
                            copy.lead,
                            format!(
                                "copy of {} not filed in {} yet: {e}",
                                message_id.as_deref().unwrap_or("a reply"),
                                self.shared_sent
                            ),
                        )
                        .await;
                    }
                    failed = Some(e);
                    continue;
                }
                filed += 1;
            }
            let key = copy.key;
            if let Err(e) = self
                .index
                .store()
                .change(move |tx| tx.sent_copy_filed(&key))
                .await
            {
                tracing::error!("taking a filed copy off the Sent queue: {e}");
            }
            reported.remove(&copy.key);
        }
        if filed > 0 {
            if let Err(e) = self.pool.sync(&self.index, &self.shared_sent).await {
                tracing::warn!("resync of {} after filing replies: {e}", self.shared_sent);
            }
        }
    }
}

impl SubmissionHandler for Gateway {
    fn submit<'a>(&'a self, sub: Submission) -> BoxFuture<'a, Reply> {
        Box::pin(self.handle(sub))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: Alice <alice@example.com>\r\nTo: dana@northwind.test\r\nBcc: boss@example.com\r\nSubject: Re: quote\r\nX-Lead-Owner: bob\r\n\r\nBody\r\n.dot\r\n";

    #[test]
    fn headers_are_replaced_and_the_body_kept() {
        let out = rewrite_headers(
            MSG,
            &[
                "From: \"Alice\" <sales@example.com>".into(),
                "X-Lead-Id: 7".into(),
            ],
            &["From", "Bcc", "X-Lead-Owner"],
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("From: \"Alice\" <sales@example.com>\r\nX-Lead-Id: 7\r\nTo: dana@northwind.test\r\nSubject: Re: quote\r\n\r\nBody\r\n.dot\r\n"), "{text}");
        assert!(!text.contains("Bcc") && !text.contains("bob"));
    }

    #[test]
    fn header_values_unfold() {
        let raw = b"Subject: a\r\n b\r\nX-Lead-Id:  42 \r\n\r\n";
        assert_eq!(header_value(raw, "subject").as_deref(), Some("a b"));

        assert_eq!(header_value(raw, "X-Lead-Id").as_deref(), Some("42"));
        assert_eq!(header_value(raw, "From"), None);
    }

    #[test]
    fn display_names_are_quoted_or_encoded() {
        assert_eq!(mailbox("Alice Smith", "s@x"), "\"Alice Smith\" <s@x>");
        assert_eq!(mailbox("A \"B\"", "s@x"), "\"A \\\"B\\\"\" <s@x>");
        assert!(mailbox("Chloé", "s@x").starts_with("=?utf-8?b?"));
        assert_eq!(mailbox("Evil\r\nBcc: x", "s@x"), "\"Evil Bcc: x\" <s@x>");
    }
}
