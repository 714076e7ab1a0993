//! Support handoffs leave the sales queues and, with
//! `leads.support_forward_to` set, go on to support: the customer's message
//! is resent (RFC 5322 3.6.6: `Resent-*` fields on top, the message itself
//! untouched, so support sees the customer's own From and answers them
//! directly) from the shared address through the outgoing side.
//!
//! # Nothing lost
//!
//! The ingest transaction that creates the lead queues its message
//! (`SUPPORT_FORWARDS`); the entry leaves the queue in the transaction that
//! records `lead.forward`, after the relay said 250. A temporary failure is
//! retried every five minutes, across restarts; a permanent one (a 5xx, or
//! the message gone from the shared mailbox) is recorded as
//! `lead.forward.failed` with the reason and not retried. (A crash between
//! the relay's 250 and that commit can forward one message twice.)

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::sync::watch;

use super::relay::Outbound;
use crate::{
    index::Index,
    leads::book::{LeadBook, SYSTEM},
    store::{audit::AuditDraft, StoreError},
    upstream::pool::Pool,
};

/// How long a temporary failure waits before the next attempt.
const RETRY_SECS: i64 = 300;
/// How often the queue is looked at without a lead change to wake it.
const CHECK_EVERY: Duration = Duration::from_secs(60);

pub struct Forwarder {
    pub book: Arc<LeadBook>,
    pub index: Arc<Index>,
    pub pool: Arc<Pool>,
    pub outbound: Arc<Outbound>,
    /// Upstream folders that hold lead mail (where a message is fetched
    /// from when its body is not cached).
    pub folders: Vec<String>,
    /// For `Resent-Message-ID`.
    pub hostname: String,
}

/// What became of one attempt.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Sent,
    /// Try again later.
    Retry(String),
    /// Never going to work.
    Failed(String),
}

impl Forwarder {
    /// Forwards what is queued, after every lead change and every minute,
    /// until shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut updates = self.book.subscribe();
        let mut retry_after = HashMap::new();
        loop {
            if let Err(e) = self.forward_pending(&mut retry_after).await {
                tracing::error!("support forward: {e}");
            }
            tokio::select! {
                r = updates.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(CHECK_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One pass over the queue; returns how many messages were forwarded.
    pub async fn forward_pending(
        &self,
        retry_after: &mut HashMap<u64, i64>,
    ) -> Result<usize, StoreError> {
        let Some(to) = self.book.config().support_forward_to.clone() else {
            return Ok(0);
        };
        let store = self.index.store().clone();
        let pending = store.support_forwards_pending()?;
        let now = self.book.now();
        let mut sent = 0;
        for (key, lead) in pending {
            if retry_after.get(&key).is_some_and(|&t| t > now) {
                continue;
            }
            let (action, reason) = match self.forward(key, &to, now).await {
                Attempt::Sent => {
                    sent += 1;
                    tracing::info!("support handoff of lead {lead} forwarded to <{to}>");
                    ("lead.forward", format!("forwarded to <{to}>"))
                }
                Attempt::Failed(why) => {
                    tracing::warn!("support handoff of lead {lead} not forwarded: {why}");
                    ("lead.forward.failed", format!("to <{to}>: {why}"))
                }
                Attempt::Retry(why) => {
                    tracing::warn!(
                        "support handoff of lead {lead} not forwarded yet, retrying in 5 \
                         minutes: {why}"
                    );
                    retry_after.insert(key, now + RETRY_SECS);
                    continue;
                }
            };
            retry_after.remove(&key);
            let event = AuditDraft {
                at: now * 1000,
                actor: SYSTEM.to_owned(),
                action: action.into(),
                lead: Some(lead),
                changes: Vec::new(),
                reason,
            };
            store.support_forward_done(key, event).await?;
        }
        Ok(sent)
    }

    async fn forward(&self, key: u64, to: &str, now: i64) -> Attempt {
        let raw = match self.raw(key).await {
            Ok(Some(raw)) => raw,
            Ok(None) => {
                return Attempt::Failed("the message is gone from the shared mailbox".into())
            }
            Err(why) => return Attempt::Retry(why),
        };
        let from = self.book.config().shared_address.clone();
        let token: u64 = rand::random();
        let mail = resent(
            &raw,
            &from,
            to,
            now,
            &format!("{token:016x}"),
            &self.hostname,
        );
        match self.outbound.send(&from, &[to.to_owned()], &mail).await {
            Ok(()) => Attempt::Sent,
            Err(r) if r.code >= 500 => Attempt::Failed(format!("{} {}", r.code, r.text)),
            Err(r) => Attempt::Retry(format!("{} {}", r.code, r.text)),
        }
    }

    /// The whole message: from the body cache, else from the upstream.
    /// `Ok(None)` when the upstream no longer has it.
    async fn raw(&self, key: u64) -> Result<Option<Vec<u8>>, String> {
        let (gen, uid) = ((key >> 32) as u32, key as u32);
        let store = self.index.store().clone();
        let cached = tokio::task::spawn_blocking(move || store.message_bodies(gen, &[uid]))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if let Some((_, body)) = cached.into_iter().next() {
            return Ok(Some(body));
        }
        let Some((mailbox, uidvalidity)) = self.folders.iter().find_map(|name| {
            self.index
                .with_mailbox(name, |m| (m.rec.gen == gen).then_some(m.rec.uidvalidity))
                .flatten()
                .map(|v| (name.clone(), v))
        }) else {
            // The mailbox was re-created (UIDVALIDITY changed) since.
            return Ok(None);
        };
        let fetched = self
            .pool
            .fetch_bodies(&mailbox, uidvalidity, &[uid], true)
            .await
            .map_err(|e| e.to_string())?;
        Ok(fetched
            .into_iter()
            .find(|f| f.uid == Some(uid))
            .and_then(|f| f.body))
    }
}

/// `raw` resent from `from` to `to` (RFC 5322 3.6.6): the Resent-* block
/// on top of the message as it came.
pub fn resent(raw: &[u8], from: &str, to: &str, now: i64, token: &str, hostname: &str) -> Vec<u8> {
    let date = chrono::DateTime::from_timestamp(now, 0)
        .unwrap_or_default()
        .to_rfc2822();
    let host = if hostname.is_empty() {
        "leadgate"
    } else {
        hostname
    };
    let mut out = format!(
        "Resent-From: <{from}>\r\nResent-To: <{to}>\r\nResent-Date: {date}\r\n\
         Resent-Message-ID: <support.{token}@{host}>\r\n"
    )
    .into_bytes();
    out.extend_from_slice(raw);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resent_puts_the_resent_block_on_top_and_keeps_the_message() {
        let raw = b"From: Cora <cora@customer.test>\r\nSubject: Login broken\r\n\r\nHelp\r\n";
        let out = resent(
            raw,
            "sales@example.com",
            "support@example.com",
            1_795_428_000,
            "abc",
            "gw.example.com",
        );
        let text = String::from_utf8(out).unwrap();
        let (resent, rest) = text.split_at(text.find("From: Cora").unwrap());
        assert_eq!(rest.as_bytes(), raw);
        assert!(resent.starts_with("Resent-From: <sales@example.com>\r\n"));
        assert!(resent.contains("Resent-To: <support@example.com>\r\n"));
        assert!(resent.contains("Resent-Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"));
        assert!(resent.ends_with("Resent-Message-ID: <support.abc@gw.example.com>\r\n"));
        let parsed = mail_parser::MessageParser::default().parse(&text).unwrap();
        assert_eq!(parsed.subject(), Some("Login broken"));
    }
}
