//! Replies the owner rule held instead of refusing (`[smtp] blocked_reply =
//! "hold"`). A held reply is kept here, whole and ready to relay, from the
//! moment its sender is told 250 until the owner or a manager releases or
//! discards it, or it expires; each of those removes it in the transaction
//! that records the decision, so it happens once. A copy for people to
//! read is kept in an upstream folder (`upstream`), shown as Leads/Held and
//! Review/Held; this record, not that copy, is what gets relayed.

use super::changes::WriteTxn;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::{
    audit::{self, AuditDraft},
    notices::{self, Notice},
    schema::{meta_u64, HELD, HELD_BODIES, META},
    Store, StoreError,
};
use crate::model::LeadId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldReply {
    pub id: u64,
    /// The user who sent it.
    pub sender: String,
    pub lead: LeadId,
    /// Why it was held (the owner rule's sentence).
    pub reason: String,
    pub envelope_from: String,
    pub rcpts: Vec<String>,
    pub message_id: String,
    pub subject: String,
    /// Unix seconds.
    pub held_at: i64,
    pub expires_at: i64,
    /// Where the readable copy is upstream: (UIDVALIDITY, UID).
    #[serde(default)]
    pub upstream: Option<(u32, u32)>,
}

fn encode(h: &HeldReply) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(h).map_err(|e| StoreError::corrupt("held reply", e.to_string()))
}

/// Keeps a held reply and its message inside the caller's transaction;
/// returns its id (`held.id` is ignored).
pub fn hold(txn: &WriteTxn, held: &HeldReply, data: &[u8]) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META)?;
    let id = meta_u64(&meta, "held_next_id")?.unwrap_or(1);
    meta.insert("held_next_id", (id + 1).to_le_bytes().as_slice())?;
    drop(meta);
    let held = HeldReply { id, ..held.clone() };
    txn.open_table(HELD)?
        .insert(id, encode(&held)?.as_slice())?;
    txn.open_table(HELD_BODIES)?.insert(id, data)?;
    Ok(id)
}

/// Removes a held reply inside the caller's transaction; `None` when it was
/// gone already (released, discarded or expired meanwhile).
pub fn take(txn: &WriteTxn, id: u64) -> Result<Option<HeldReply>, StoreError> {
    let held = txn
        .open_table(HELD)?
        .remove(id)?
        .map(|v| serde_json::from_slice::<HeldReply>(v.value()))
        .transpose()
        .map_err(|e| StoreError::corrupt("held reply", e.to_string()))?;
    txn.open_table(HELD_BODIES)?.remove(id)?;
    Ok(held)
}

impl Store {
    /// Every held reply, oldest first.
    pub fn held_all(&self) -> Result<Vec<HeldReply>, StoreError> {
        self.read(|txn| {
            let t = match txn.open_table(HELD) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for row in t.iter()? {
                let (_, v) = row?;
                out.push(
                    serde_json::from_slice(v.value())
                        .map_err(|e| StoreError::corrupt("held reply", e.to_string()))?,
                );
            }
            Ok(out)
        })
    }

    /// A held reply's message, as it would be relayed.
    pub fn held_body(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|txn| {
            let t = match txn.open_table(HELD_BODIES) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            Ok(t.get(id)?.map(|v| v.value().to_vec()))
        })
    }

    /// Records where the readable copy landed upstream.
    pub async fn held_set_upstream(
        &self,
        id: u64,
        uidvalidity: u32,
        uid: u32,
    ) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut t = txn.open_table(HELD)?;
            let held = t
                .get(id)?
                .map(|v| serde_json::from_slice::<HeldReply>(v.value()))
                .transpose()
                .map_err(|e| StoreError::corrupt("held reply", e.to_string()))?;
            if let Some(mut held) = held {
                held.upstream = Some((uidvalidity, uid));
                t.insert(id, encode(&held)?.as_slice())?;
            }
            Ok(())
        })
        .await
    }

    /// Removes a held reply with the audit event of the decision (and a
    /// notice owed because of it), in one commit; `None` when it was gone
    /// already.
    pub async fn held_settle(
        &self,
        id: u64,
        event: AuditDraft,
        notice: Option<Notice>,
    ) -> Result<Option<HeldReply>, StoreError> {
        self.write(move |txn| {
            let held = take(txn, id)?;
            if held.is_some() {
                audit::append(txn, &event)?;
                if let Some(n) = &notice {
                    notices::queue(txn, n)?;
                }
            }
            Ok(held)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HeldReply {
        HeldReply {
            id: 0,
            sender: "bob".into(),
            lead: 7,
            reason: "owned by alice".into(),
            envelope_from: "sales@example.com".into(),
            rcpts: vec!["dana@northwind.test".into()],
            message_id: "<b@x>".into(),
            subject: "Re: Pricing".into(),
            held_at: 10,
            expires_at: 20,
            upstream: None,
        }
    }

    #[tokio::test]
    async fn a_held_reply_is_kept_until_one_decision_takes_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let id = store
            .write(|txn| hold(txn, &sample(), b"the message"))
            .await
            .unwrap();
        store.held_set_upstream(id, 5, 9).await.unwrap();
        let all = store.held_all().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].id, all[0].upstream), (id, Some((5, 9))));
        assert_eq!(store.held_body(id).unwrap().unwrap(), b"the message");
        let event = AuditDraft {
            at: 1,
            actor: "alice".into(),
            action: "reply.released".into(),
            lead: Some(7),
            changes: Vec::new(),
            reason: "released".into(),
        };
        assert!(store
            .held_settle(id, event.clone(), None)
            .await
            .unwrap()
            .is_some());
        // A second decision (an expiry racing a release) finds nothing.
        assert!(store.held_settle(id, event, None).await.unwrap().is_none());
        assert!(store.held_all().unwrap().is_empty());
        assert!(store.held_body(id).unwrap().is_none());
    }
}
