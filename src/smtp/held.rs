//! Held replies (`[smtp] blocked_reply = "hold"`): a message the owner rule
//! blocks is answered `250` with a text that says it is held, kept whole
//! in the store (`store::held`, committed before the 250, with the
//! submission's record so a client's retry is not held twice) and not
//! relayed. A readable copy goes to an upstream folder of the shared
//! account (`<user_folder_prefix>-held`, hidden from LIST), shown to the
//! sender in `Leads/Held` and to the lead's owner and the managers in
//! `Review/Held`. The owner or a manager moves it into `Held/Release`
//! (relayed once, recorded on the lead, filed in the shared Sent) or
//! `Held/Discard`; after `hold_days` it expires and its sender is mailed.
//! Every step is audited: `reply.held`, `reply.released`,
//! `reply.discarded`, `reply.expired`.

use std::{sync::Arc, time::Duration};

use imap_codec::imap_types::flag::Flag;
use tokio::sync::watch;

use super::{gateway::Gateway, Reply};
use crate::{
    auth::Principal,
    leads::{
        book::SYSTEM,
        held::{BoxFuture, HeldDesk, HeldMark},
        parse,
    },
    model::{LeadId, Role},
    store::{
        audit::AuditDraft,
        held::HeldReply,
        messages::message_key,
        notices::{Notice, NoticeKind},
        sent::{self, Stage},
        Tx,
    },
    upstream::pool::FlagOp,
};

/// How often expiries and missing readable copies are looked after.
const CHECK_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct HeldSettings {
    /// The upstream folder with the readable copies.
    pub folder: String,
    pub hold_days: u32,
}

/// The message being held, as it would have been relayed.
pub struct HoldOf<'a> {
    pub envelope_from: &'a str,
    pub rcpts: &'a [String],
    pub message_id: &'a str,
    pub subject: &'a str,
    pub data: &'a [u8],
}

fn reply(code: u16, status: (u8, u16, u16), text: impl Into<String>) -> Reply {
    Reply::new(code, status, text)
}

fn event(actor: &str, action: &str, lead: LeadId, reason: String) -> AuditDraft {
    AuditDraft {
        at: chrono::Utc::now().timestamp_millis(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        lead: Some(lead),
        changes: Vec::new(),
        reason,
    }
}

impl Gateway {
    fn settings(&self) -> Option<&HeldSettings> {
        self.held.as_ref()
    }

    /// Holds a blocked submission: kept before the 250, shown afterwards.
    pub(crate) async fn hold(
        &self,
        user: &Principal,
        lead: LeadId,
        owners: &[String],
        reason: String,
        key: [u8; 32],
        msg: HoldOf<'_>,
    ) -> Reply {
        let Some(settings) = self.settings().cloned() else {
            return reply(451, (4, 3, 0), "Holding is off; try again");
        };
        let now = self.book.now();
        let held = HeldReply {
            id: 0,
            sender: user.name.clone(),
            lead,
            reason: reason.clone(),
            envelope_from: msg.envelope_from.to_owned(),
            rcpts: msg.rcpts.to_vec(),
            message_id: msg.message_id.to_owned(),
            subject: msg.subject.to_owned(),
            held_at: now,
            expires_at: now + i64::from(settings.hold_days) * 86_400,
            upstream: None,
        };
        let data = msg.data.to_vec();
        let record = held.clone();
        let audit = event(
            &user.name,
            "reply.held",
            lead,
            format!("{} held: {reason}", msg.message_id),
        );
        let kept = self
            .index
            .store()
            .change(move |tx| {
                let now_ms = chrono::Utc::now().timestamp_millis();
                if tx.sent_stage(&key, now_ms)? == Some(Stage::Held) {
                    return Ok(None);
                }
                let id = tx.hold(&record, &data)?;
                tx.set_sent_stage(&key, Stage::Held, now_ms)?;
                tx.append_audit(&audit)?;
                Ok(Some(id))
            })
            .await;
        let id = match kept {
            Ok(Some(id)) => id,
            Ok(None) => {
                return reply(
                    250,
                    (2, 0, 0),
                    format!(
                        "{} was held before; it waits for the owner's decision",
                        msg.message_id
                    ),
                )
            }
            Err(e) => {
                tracing::error!("holding a reply: {e}");
                return reply(451, (4, 3, 0), "The message could not be held; try again");
            }
        };
        self.metrics
            .reply_blocked(owners.first().map_or("-", String::as_str));
        tracing::info!(user = %user.name, lead, "reply held: {reason}");
        self.show_copy(HeldReply { id, ..held }, msg.data.to_vec())
            .await;
        let whom = if owners.is_empty() {
            "a manager".to_owned()
        } else {
            format!("{} or a manager", owners.join(" or "))
        };
        reply(
            250,
            (2, 0, 0),
            format!(
                "Held, not sent: {reason} {whom} can release it (it is in your Leads/Held); \
                 it expires in {} days",
                settings.hold_days
            ),
        )
    }

    /// Puts the readable copy upstream and tells the views where it is.
    async fn show_copy(&self, held: HeldReply, data: Vec<u8>) {
        let Some(settings) = self.settings() else {
            return;
        };
        let appended = self
            .pool
            .append(&settings.folder, &[Flag::Seen], None, data)
            .await;
        match appended {
            Ok(Some((uidvalidity, uid))) => {
                if let Err(e) = self
                    .index
                    .store()
                    .held_set_upstream(held.id, uidvalidity, uid)
                    .await
                {
                    tracing::warn!("held reply {}: {e}", held.id);
                }
                self.mark_copy(&held, uidvalidity, uid).await;
            }
            Ok(None) => tracing::warn!(
                "held reply {}: the upstream gave no APPENDUID (UIDPLUS); it is kept but not shown",
                held.id
            ),
            Err(e) => tracing::warn!(
                "held reply {}: its copy could not be shown yet ({e}); retrying in a minute",
                held.id
            ),
        }
    }

    /// Syncs the held folder and marks the copy, so views show it.
    async fn mark_copy(&self, held: &HeldReply, uidvalidity: u32, uid: u32) {
        let Some(settings) = self.settings() else {
            return;
        };
        if let Err(e) = self.pool.sync(&self.index, &settings.folder).await {
            tracing::warn!("syncing {}: {e}", settings.folder);
        }
        let Some(rec) = self.index.mailbox_record(&settings.folder) else {
            return;
        };
        if rec.uidvalidity != uidvalidity {
            return;
        }
        self.book.set_held(
            message_key(rec.gen, uid),
            HeldMark {
                id: held.id,
                sender: held.sender.clone(),
                lead: held.lead,
            },
        );
    }

    /// Takes the readable copy away (after a decision).
    async fn remove_copy(&self, held: &HeldReply) {
        let (Some(settings), Some((uidvalidity, uid))) = (self.settings(), held.upstream) else {
            return;
        };
        if let Some(rec) = self.index.mailbox_record(&settings.folder) {
            self.book.unset_held(message_key(rec.gen, uid));
        }
        let gone = async {
            self.pool
                .store_flags(
                    &settings.folder,
                    uidvalidity,
                    &[uid],
                    FlagOp::Add,
                    &[Flag::Deleted],
                )
                .await?;
            self.pool
                .expunge(&settings.folder, uidvalidity, &[uid])
                .await
        };
        if let Err(e) = gone.await {
            tracing::warn!("removing the copy of held reply {}: {e}", held.id);
        }
        let _ = self.pool.sync(&self.index, &settings.folder).await;
    }

    /// Who may decide: the lead's owner or a manager (the book asks policy).
    fn may_decide(&self, held: &HeldReply, by: &Principal) -> Result<(), String> {
        self.book.may_decide_held(by, held.lead)
    }

    fn find(&self, id: u64) -> Result<HeldReply, String> {
        self.index
            .store()
            .held_all()
            .map_err(|e| format!("The held reply could not be read ({e})"))?
            .into_iter()
            .find(|h| h.id == id)
            .ok_or_else(|| "That reply was decided on already".to_owned())
    }

    /// One decision per held reply at a time.
    fn begin_decision(&self, id: u64) -> Result<DecisionGuard<'_>, String> {
        let mut set = self.deciding.lock().unwrap_or_else(|e| e.into_inner());
        if !set.insert(id) {
            return Err("Someone is deciding on that reply right now".into());
        }
        Ok(DecisionGuard { gw: self, id })
    }

    pub(crate) async fn release_held(&self, id: u64, by: &Principal) -> Result<String, String> {
        let _guard = self.begin_decision(id)?;
        let held = self.find(id)?;
        if let Err(why) = self.may_decide(&held, by) {
            self.audit_refusal(by, &held, "reply.release.refused", &why)
                .await;
            return Err(why);
        }
        let data = self
            .index
            .store()
            .held_body(id)
            .map_err(|e| e.to_string())?
            .ok_or("That reply was decided on already")?;
        // Relayed first: if the relay refuses, the reply stays held.
        if let Err(r) = self
            .outbound
            .send(&held.envelope_from, &held.rcpts, &data)
            .await
        {
            return Err(format!(
                "The relay did not take the reply ({} {}); it stays held",
                r.code, r.text
            ));
        }
        // Recorded on the lead in one commit with its removal, the audit
        // event, the record that it went out and its queued Sent copy.
        let key = sent::key(
            &held.sender,
            &held.rcpts,
            Some(held.message_id.as_str()),
            &data,
        );
        let copy = (!self.shared_sent.is_empty()).then(|| data.clone());
        let (sender, lead, message_id) = (held.sender.clone(), held.lead, held.message_id.clone());
        let by_name = by.name.clone();
        let record = move |tx: &Tx<'_>| {
            let now_ms = chrono::Utc::now().timestamp_millis();
            if tx.take_held(id)?.is_some() {
                tx.append_audit(&event(
                    &by_name,
                    "reply.released",
                    lead,
                    format!("{message_id} from {sender} released and sent"),
                ))?;
            }
            tx.set_sent_stage(&key, Stage::Done, now_ms)?;
            if let Some(data) = &copy {
                tx.queue_sent_copy(&key, &sender, Some(lead), data)?;
            }
            Ok(())
        };
        let sender = Principal {
            name: held.sender.clone(),
            role: Role::Rep,
            email: None,
            display_name: None,
        };
        let now = self.book.now();
        let mut facts = parse::facts(&data, now);
        facts.message_id = Some(held.message_id.clone());
        if let Err(e) = self
            .book
            .reply_sent(&sender, held.lead, facts, now, Some(Box::new(record)))
            .await
        {
            tracing::error!("recording released reply {id}: {e}");
        }
        self.filer.notify_one();
        self.remove_copy(&held).await;
        Ok(format!("Released and sent {}", held.message_id))
    }

    pub(crate) async fn discard_held(&self, id: u64, by: &Principal) -> Result<String, String> {
        let _guard = self.begin_decision(id)?;
        let held = self.find(id)?;
        if let Err(why) = self.may_decide(&held, by) {
            self.audit_refusal(by, &held, "reply.discard.refused", &why)
                .await;
            return Err(why);
        }
        let settled = self
            .index
            .store()
            .held_settle(
                id,
                event(
                    &by.name,
                    "reply.discarded",
                    held.lead,
                    format!("{} from {} discarded unsent", held.message_id, held.sender),
                ),
                None,
            )
            .await
            .map_err(|e| e.to_string())?;
        if settled.is_none() {
            return Err("That reply was decided on already".into());
        }
        self.remove_copy(&held).await;
        Ok(format!("Discarded {}", held.message_id))
    }

    async fn audit_refusal(&self, by: &Principal, held: &HeldReply, action: &str, why: &str) {
        if let Err(e) = self
            .index
            .store()
            .audit(event(
                &by.name,
                action,
                held.lead,
                format!("{}: {why}", held.message_id),
            ))
            .await
        {
            tracing::error!("audit: {e}");
        }
    }

    /// Runs [`Gateway::held_pass`] every minute until shutdown.
    pub async fn run_held_desk(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if self.settings().is_none() {
            return;
        }
        let mut first = true;
        loop {
            self.held_pass(first).await;
            first = false;
            tokio::select! {
                _ = tokio::time::sleep(CHECK_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Expires held replies whose time is up (their senders are mailed)
    /// and shows copies that could not be shown before; `first` (after a
    /// start) marks the copies already shown.
    pub async fn held_pass(&self, first: bool) {
        let Some(settings) = self.settings().cloned() else {
            return;
        };
        let all = self.index.store().held_all().unwrap_or_else(|e| {
            tracing::error!("held replies: {e}");
            Vec::new()
        });
        let now = self.book.now();
        let rec = self.index.mailbox_record(&settings.folder);
        for held in all {
            if held.expires_at <= now {
                self.expire(held).await;
                continue;
            }
            match (held.upstream, &rec) {
                (Some((uv, uid)), Some(rec)) if rec.uidvalidity == uv => {
                    if first {
                        self.mark_copy(&held, uv, uid).await;
                    }
                }
                _ => {
                    if let Ok(Some(data)) = self.index.store().held_body(held.id) {
                        self.show_copy(held, data).await;
                    }
                }
            }
        }
    }

    async fn expire(&self, held: HeldReply) {
        let Ok(_guard) = self.begin_decision(held.id) else {
            return;
        };
        let notice = Notice {
            kind: NoticeKind::HeldExpired,
            lead: held.lead,
            to: vec![held.sender.clone()],
            queued_at: self.book.now(),
            detail: format!("{} \"{}\"", held.message_id, held.subject),
        };
        let settled = self
            .index
            .store()
            .held_settle(
                held.id,
                event(
                    SYSTEM,
                    "reply.expired",
                    held.lead,
                    format!(
                        "{} from {} expired unsent after {} days",
                        held.message_id,
                        held.sender,
                        self.settings().map_or(0, |s| s.hold_days)
                    ),
                ),
                Some(notice),
            )
            .await;
        match settled {
            Ok(Some(_)) => {
                tracing::info!("held reply {} expired unsent", held.id);
                // The notice goes out with the next lead change or minute.
                self.book.notify(vec![held.lead]);
                self.remove_copy(&held).await;
            }
            Ok(None) => {}
            Err(e) => tracing::error!("expiring held reply {}: {e}", held.id),
        }
    }
}

struct DecisionGuard<'a> {
    gw: &'a Gateway,
    id: u64,
}

impl Drop for DecisionGuard<'_> {
    fn drop(&mut self) {
        self.gw
            .deciding
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl HeldDesk for Gateway {
    fn release<'a>(&'a self, id: u64, by: &'a Principal) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(self.release_held(id, by))
    }

    fn discard<'a>(&'a self, id: u64, by: &'a Principal) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(self.discard_held(id, by))
    }
}
