//! Persistence of leads and of the indexes threading needs. Functions take
//! the caller's transaction so the lead engine can change a lead, its
//! indexes and the audit log in one commit.

use super::changes::WriteTxn;
use redb::{ReadableMultimapTable, ReadableTable};

use super::{
    audit::{self, AuditDraft},
    schema::{
        meta_u64, DOMAIN_OWNERS, LEADS, MESSAGE_LEADS, MESSAGE_MARKS, META, SUPPORT_FORWARDS,
        THREAD_IDS, THREAD_SUBJECTS,
    },
    Store, StoreError,
};
use crate::model::{Lead, LeadId, MessageMark, ThreadLookup};

fn decode(id: u64, bytes: &[u8]) -> Result<Lead, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(format!("lead {id}"), e))
}

pub fn get_lead(txn: &WriteTxn, id: LeadId) -> Result<Option<Lead>, StoreError> {
    let t = txn.open_table(LEADS)?;
    let v = t.get(id)?;
    v.map(|v| decode(id, v.value())).transpose()
}

pub fn put_lead(txn: &WriteTxn, lead: &Lead) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(lead).map_err(|e| StoreError::corrupt("lead", e))?;
    txn.open_table(LEADS)?.insert(lead.id, bytes.as_slice())?;
    Ok(())
}

fn counter(txn: &WriteTxn, key: &str) -> Result<u64, StoreError> {
    Ok(meta_u64(&txn.open_table(META)?, key)?.unwrap_or(0))
}

fn set_counter(txn: &WriteTxn, key: &str, value: u64) -> Result<(), StoreError> {
    txn.open_table(META)?
        .insert(key, value.to_le_bytes().as_slice())?;
    Ok(())
}

/// Allocates the next lead id (ids start at 1 and are never reused).
pub fn next_lead_id(txn: &WriteTxn) -> Result<LeadId, StoreError> {
    let id = counter(txn, "next_lead_id")?.max(1);
    set_counter(txn, "next_lead_id", id + 1)?;
    Ok(id)
}

/// The persisted round-robin position, so assignment stays fair across
/// restarts.
pub fn round_robin_cursor(txn: &WriteTxn) -> Result<u64, StoreError> {
    counter(txn, "round_robin_cursor")
}

pub fn set_round_robin_cursor(txn: &WriteTxn, cursor: u64) -> Result<(), StoreError> {
    set_counter(txn, "round_robin_cursor", cursor)
}

/// A revision number bumped by every commit that changes leads, so readers
/// of the in-memory copy can tell newer from older.
pub fn bump_revision(txn: &WriteTxn) -> Result<u64, StoreError> {
    let rev = counter(txn, "lead_revision")? + 1;
    set_counter(txn, "lead_revision", rev)?;
    Ok(rev)
}

pub fn message_lead(txn: &WriteTxn, key: u64) -> Result<Option<LeadId>, StoreError> {
    Ok(txn.open_table(MESSAGE_LEADS)?.get(key)?.map(|v| v.value()))
}

pub fn set_message_lead(txn: &WriteTxn, key: u64, lead: LeadId) -> Result<(), StoreError> {
    txn.open_table(MESSAGE_LEADS)?.insert(key, lead)?;
    Ok(())
}

pub fn thread_lead(txn: &WriteTxn, message_id: &str) -> Result<Option<LeadId>, StoreError> {
    Ok(txn
        .open_table(THREAD_IDS)?
        .get(message_id)?
        .map(|v| v.value()))
}

pub fn map_thread_id(txn: &WriteTxn, message_id: &str, lead: LeadId) -> Result<(), StoreError> {
    if !message_id.is_empty() {
        txn.open_table(THREAD_IDS)?.insert(message_id, lead)?;
    }
    Ok(())
}

fn subject_key(subject: &str, counterpart: &str) -> String {
    format!("{subject}\0{counterpart}")
}

pub fn add_subject(
    txn: &WriteTxn,
    subject: &str,
    counterpart: &str,
    lead: LeadId,
) -> Result<(), StoreError> {
    if !subject.is_empty() && !counterpart.is_empty() {
        txn.open_multimap_table(THREAD_SUBJECTS)?
            .insert(subject_key(subject, counterpart).as_str(), lead)?;
    }
    Ok(())
}

pub fn domain_owner(txn: &WriteTxn, domain: &str) -> Result<Option<String>, StoreError> {
    Ok(txn
        .open_table(DOMAIN_OWNERS)?
        .get(domain)?
        .map(|v| v.value().to_owned()))
}

pub fn set_domain_owner(txn: &WriteTxn, domain: &str, owner: &str) -> Result<(), StoreError> {
    if !domain.is_empty() {
        txn.open_table(DOMAIN_OWNERS)?.insert(domain, owner)?;
    }
    Ok(())
}

/// Marks a shared message as an auto-reply or a bounce.
pub fn set_message_mark(txn: &WriteTxn, key: u64, mark: MessageMark) -> Result<(), StoreError> {
    txn.open_table(MESSAGE_MARKS)?.insert(key, mark as u8)?;
    Ok(())
}

/// Queues message `key` of lead `lead` for forwarding to support.
pub fn queue_support_forward(txn: &WriteTxn, key: u64, lead: LeadId) -> Result<(), StoreError> {
    txn.open_table(SUPPORT_FORWARDS)?.insert(key, lead)?;
    Ok(())
}

/// Threading lookups answered from inside a write transaction. Lookup
/// errors read as "not found": threading then opens a new lead rather
/// than failing the ingest (and the store error resurfaces on write).
pub struct TxnThreads<'a> {
    pub txn: &'a WriteTxn,
}

impl ThreadLookup for TxnThreads<'_> {
    fn lead_for_message_id(&self, id: &str) -> Option<LeadId> {
        thread_lead(self.txn, id).ok().flatten()
    }

    fn leads_for_subject(&self, normalized_subject: &str, counterpart: &str) -> Vec<(LeadId, i64)> {
        let Ok(t) = self.txn.open_multimap_table(THREAD_SUBJECTS) else {
            return Vec::new();
        };
        let Ok(values) = t.get(subject_key(normalized_subject, counterpart).as_str()) else {
            return Vec::new();
        };
        values
            .filter_map(|v| v.ok().map(|v| v.value()))
            .filter_map(|id| {
                let lead = get_lead(self.txn, id).ok().flatten()?;
                let last = lead
                    .last_inbound_at
                    .into_iter()
                    .chain(lead.last_outbound_at)
                    .max()
                    .unwrap_or(lead.created);
                Some((id, last))
            })
            .collect()
    }
}

impl Store {
    /// Every lead, for the engine's in-memory copy.
    pub fn load_leads(&self) -> Result<Vec<Lead>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(LEADS)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.push(decode(k.value(), v.value())?);
            }
            Ok(out)
        })
    }

    /// Message key -> lead, for every ingested message.
    pub fn load_message_leads(&self) -> Result<Vec<(u64, LeadId)>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(MESSAGE_LEADS)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.push((k.value(), v.value()));
            }
            Ok(out)
        })
    }

    pub fn lead(&self, id: LeadId) -> Result<Option<Lead>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(LEADS)?;
            let v = t.get(id)?;
            v.map(|v| decode(id, v.value())).transpose()
        })
    }

    /// The lead a Message-ID is filed under, if any.
    pub fn lead_by_message_id(&self, message_id: &str) -> Result<Option<LeadId>, StoreError> {
        self.read(|txn| {
            Ok(txn
                .open_table(THREAD_IDS)?
                .get(message_id)?
                .map(|v| v.value()))
        })
    }

    /// The leads these Message-IDs are filed under, in one read.
    pub fn leads_by_message_ids(&self, message_ids: &[String]) -> Result<Vec<LeadId>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(THREAD_IDS)?;
            let mut found = Vec::new();
            for id in message_ids {
                if let Some(v) = t.get(id.as_str())? {
                    found.push(v.value());
                }
            }
            Ok(found)
        })
    }

    /// Every marked message (auto-replies, bounces).
    pub fn load_message_marks(&self) -> Result<Vec<(u64, MessageMark)>, StoreError> {
        self.read(|txn| {
            let t = match txn.open_table(MESSAGE_MARKS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                if let Some(m) = MessageMark::from_u8(v.value()) {
                    out.push((k.value(), m));
                }
            }
            Ok(out)
        })
    }

    /// Support-handoff messages not yet forwarded: (message key, lead).
    pub fn support_forwards_pending(&self) -> Result<Vec<(u64, LeadId)>, StoreError> {
        self.read(|txn| {
            let t = match txn.open_table(SUPPORT_FORWARDS) {
                Ok(t) => t,
                // A store written before forwarding existed, opened read-only.
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.push((k.value(), v.value()));
            }
            Ok(out)
        })
    }

    /// Settles one queued forward (sent, or given up on) with its audit
    /// event, in one transaction.
    pub async fn support_forward_done(
        &self,
        key: u64,
        event: AuditDraft,
    ) -> Result<(), StoreError> {
        self.write(move |txn| {
            txn.open_table(SUPPORT_FORWARDS)?.remove(key)?;
            audit::append(txn, &event)?;
            Ok(())
        })
        .await
    }

    /// The round-robin position (read-only view, for reports and tests).
    pub fn round_robin_position(&self) -> Result<u64, StoreError> {
        self.read(|txn| Ok(meta_u64(&txn.open_table(META)?, "round_robin_cursor")?.unwrap_or(0)))
    }
}
