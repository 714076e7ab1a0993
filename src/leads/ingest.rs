//! Feeds the lead book from the message index: every message of the shared
//! folders (INBOX, and the shared Sent where replies are filed) is ingested
//! once, oldest first, from its cached body (or its header block when the
//! body is too large to cache). Runs on start (catching up on anything
//! indexed while leadgate was down) and after every index change.

use std::sync::Arc;

use tokio::sync::watch;

use super::{book::LeadBook, parse};
use crate::{index::Index, store::messages::message_key};

pub struct Ingester {
    pub index: Arc<Index>,
    pub book: Arc<LeadBook>,
    /// Upstream folders whose messages are lead mail.
    pub folders: Vec<String>,
}

/// INTERNALDATE text to unix seconds.
fn arrival(date: &str) -> Option<i64> {
    chrono::DateTime::parse_from_str(date, "%d-%b-%Y %H:%M:%S %z")
        .ok()
        .map(|d| d.timestamp())
}

impl Ingester {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut updates = self.index.subscribe();
        loop {
            self.catch_up().await;
            tokio::select! {
                r = updates.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Ingests every indexed message of the shared folders not yet filed.
    pub async fn catch_up(&self) -> usize {
        let mut pending: Vec<(i64, u32, u32)> = Vec::new();
        for name in &self.folders {
            let found = self.index.with_mailbox(name, |m| {
                let gen = m.rec.gen;
                m.msgs
                    .values()
                    .filter(|msg| !self.book.is_ingested(message_key(gen, msg.uid)))
                    .map(|msg| (arrival(&msg.meta.internal_date).unwrap_or(0), gen, msg.uid))
                    .collect::<Vec<_>>()
            });
            pending.extend(found.unwrap_or_default());
        }
        pending.sort_unstable();
        let mut done = 0;
        for (arrived, gen, uid) in pending {
            let store = self.index.store().clone();
            let raw =
                tokio::task::spawn_blocking(move || match store.message_bodies(gen, &[uid]) {
                    Ok(mut b) if !b.is_empty() => Some(b.remove(0).1),
                    _ => store.message_header(gen, uid).ok().flatten(),
                })
                .await
                .ok()
                .flatten();
            let Some(raw) = raw else { continue };
            let facts = parse::facts(&raw, arrived);
            match self
                .book
                .ingest(message_key(gen, uid), facts, arrived)
                .await
            {
                Ok(outcome) => {
                    tracing::debug!(gen, uid, ?outcome, "ingested");
                    done += 1;
                }
                Err(e) => {
                    tracing::error!(gen, uid, "lead ingest failed: {e}");
                    break;
                }
            }
        }
        done
    }
}
