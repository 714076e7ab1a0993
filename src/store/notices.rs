//! Mail leadgate owes people: an escalation to the manager, a held reply
//! that expired to its sender. A notice is queued in the transaction that
//! decides it (so it is owed exactly when the decision stands) and leaves
//! the queue in the transaction that records its audit event, once the
//! relay took the mail (`smtp::notices` sends them). A crash between the
//! relay's 250 and that commit can send one notice twice; none is lost.

use super::changes::WriteTxn;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::{
    audit::{self, AuditDraft},
    schema::{meta_u64, META, NOTICES},
    Store, StoreError,
};
use crate::model::LeadId;

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoticeKind {
    /// A lead was escalated: the target (or every manager) is told.
    Escalation,
    /// A held reply expired unreleased: its sender is told.
    HeldExpired,
    /// A lead was assigned or handed to someone by another person
    /// (`[leads] notify_owner`): the new owner is told.
    Assigned,
    /// Commands mailed to the notes address were refused: their sender is
    /// told what was done and what was not (`detail`).
    CommandsRefused,
}

/// One owed mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub kind: NoticeKind,
    pub lead: LeadId,
    /// User names to mail (empty: every enabled manager).
    pub to: Vec<String>,
    /// Unix seconds.
    pub queued_at: i64,
    /// What the mail says beyond the lead (the reason, the held subject).
    pub detail: String,
}

/// Queues a notice inside the caller's transaction.
pub fn queue(txn: &WriteTxn, notice: &Notice) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META)?;
    let id = meta_u64(&meta, "notice_next_id")?.unwrap_or(1);
    meta.insert("notice_next_id", (id + 1).to_le_bytes().as_slice())?;
    drop(meta);
    let json =
        serde_json::to_vec(notice).map_err(|e| StoreError::corrupt("notice", e.to_string()))?;
    txn.open_table(NOTICES)?.insert(id, json.as_slice())?;
    Ok(id)
}

impl Store {
    /// Notices not sent yet, oldest first.
    pub fn notices_pending(&self) -> Result<Vec<(u64, Notice)>, StoreError> {
        self.read(|txn| {
            let t = match txn.open_table(NOTICES) {
                Ok(t) => t,
                // A store from before notices, opened read-only.
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                match serde_json::from_slice(v.value()) {
                    Ok(n) => out.push((k.value(), n)),
                    Err(e) => tracing::error!("notice {} unreadable: {e}", k.value()),
                }
            }
            Ok(out)
        })
    }

    /// Settles a notice (sent, or given up on) with its audit event.
    pub async fn notice_done(&self, id: u64, event: AuditDraft) -> Result<(), StoreError> {
        self.write(move |txn| {
            txn.open_table(NOTICES)?.remove(id)?;
            audit::append(txn, &event)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_queued_notice_stays_until_it_is_settled_with_its_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let notice = Notice {
            kind: NoticeKind::Escalation,
            lead: 7,
            to: vec!["maria".into()],
            queued_at: 100,
            detail: "no answer".into(),
        };
        let n = notice.clone();
        let (a, b) = store
            .write(move |txn| Ok((queue(txn, &n)?, queue(txn, &n)?)))
            .await
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(store.notices_pending().unwrap().len(), 2);
        store
            .notice_done(
                a,
                AuditDraft {
                    at: 1,
                    actor: "leadgate".into(),
                    action: "lead.escalation.mailed".into(),
                    lead: Some(7),
                    changes: Vec::new(),
                    reason: "mailed".into(),
                },
            )
            .await
            .unwrap();
        assert_eq!(store.notices_pending().unwrap(), vec![(b, notice)]);
    }
}
