//! Persistence of the message index: one record per upstream mailbox and per
//! message. The store treats envelope and body-structure bytes as opaque.

use super::changes::WriteTxn;
use std::sync::Arc;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::{
    codec::{Reader, Truncated, Writer},
    schema::{meta_u64, BODIES, ERASED_MESSAGES, HEADERS, MAILBOXES, MESSAGES, META},
    Store, StoreError,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxRecord {
    pub name: String,
    /// leadgate's id for (name, uidvalidity); part of every message key.
    pub gen: u32,
    pub uidvalidity: u32,
    pub uidnext: u32,
    #[serde(default)]
    pub highestmodseq: u64,
}

/// The parts of a message that never change for a given upstream UID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub size: u32,
    /// IMAP date-time text, e.g. `27-Nov-2026 21:33:58 +0000`.
    pub internal_date: Box<str>,
    /// Wire form of the ENVELOPE as the upstream sent it.
    pub envelope: Box<[u8]>,
    /// Wire form of the BODYSTRUCTURE as the upstream sent it.
    pub bodystructure: Box<[u8]>,
    pub message_id: Option<Box<str>>,
    pub in_reply_to: Option<Box<str>>,
    pub references: Box<[Box<str>]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub uid: u32,
    pub flags: Vec<Box<str>>,
    pub modseq: u64,
    pub meta: Arc<MessageMeta>,
}

pub fn message_key(gen: u32, uid: u32) -> u64 {
    (u64::from(gen) << 32) | u64::from(uid)
}

const RECORD_VERSION: u8 = 1;

impl MessageRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(RECORD_VERSION).u32(self.uid).u64(self.modseq);
        w.u32(self.flags.len() as u32);
        for f in &self.flags {
            w.bytes(f.as_bytes());
        }
        let m = &self.meta;
        w.u32(m.size)
            .bytes(m.internal_date.as_bytes())
            .bytes(&m.envelope)
            .bytes(&m.bodystructure)
            .opt(m.message_id.as_deref().map(str::as_bytes))
            .opt(m.in_reply_to.as_deref().map(str::as_bytes));
        w.u32(m.references.len() as u32);
        for r in m.references.iter() {
            w.bytes(r.as_bytes());
        }
        w.0
    }

    pub fn decode(bytes: &[u8]) -> Result<MessageRecord, StoreError> {
        Self::decode_inner(bytes).map_err(|_| StoreError::corrupt("message record", "truncated"))
    }

    fn decode_inner(bytes: &[u8]) -> Result<MessageRecord, Truncated> {
        let text = |b: &[u8]| -> Box<str> { String::from_utf8_lossy(b).into() };
        let mut r = Reader::new(bytes);
        if r.u8()? != RECORD_VERSION {
            return Err(Truncated);
        }
        let uid = r.u32()?;
        let modseq = r.u64()?;
        let n = r.u32()? as usize;
        let mut flags = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            flags.push(text(r.bytes()?));
        }
        let size = r.u32()?;
        let internal_date = text(r.bytes()?);
        let envelope = r.bytes()?.into();
        let bodystructure = r.bytes()?.into();
        let message_id = r.opt()?.map(text);
        let in_reply_to = r.opt()?.map(text);
        let n = r.u32()? as usize;
        let mut references = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            references.push(text(r.bytes()?));
        }
        Ok(MessageRecord {
            uid,
            flags,
            modseq,
            meta: Arc::new(MessageMeta {
                size,
                internal_date,
                envelope,
                bodystructure,
                message_id,
                in_reply_to,
                references: references.into(),
            }),
        })
    }
}

/// One change to the index of a mailbox, applied in one transaction with
/// the mailbox's new state.
#[derive(Debug, Clone)]
pub enum MessageWrite {
    Put {
        record: MessageRecord,
        /// Raw header block; only given when the message is new.
        header: Option<Vec<u8>>,
    },
    Remove(u32),
    /// Keeps a copy of the message body in the local cache.
    CacheBody {
        uid: u32,
        body: Vec<u8>,
    },
}

impl Store {
    /// Everything needed to rebuild the in-memory index at start.
    pub fn load_index(&self) -> Result<Vec<(MailboxRecord, Vec<MessageRecord>)>, StoreError> {
        self.read(|txn| {
            let mboxes = txn.open_table(MAILBOXES)?;
            let msgs = txn.open_table(MESSAGES)?;
            let mut out = Vec::new();
            for row in mboxes.iter()? {
                let (k, v) = row?;
                let rec: MailboxRecord = serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::corrupt(format!("mailbox {}", k.value()), e))?;
                let mut list = Vec::new();
                for row in msgs.range(message_key(rec.gen, 0)..=message_key(rec.gen, u32::MAX))? {
                    let (_, v) = row?;
                    list.push(MessageRecord::decode(v.value())?);
                }
                out.push((rec, list));
            }
            Ok(out)
        })
    }

    /// The raw header block of a message, if the index has it.
    pub fn message_header(&self, gen: u32, uid: u32) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(HEADERS)?;
            let v = t.get(message_key(gen, uid))?;
            Ok(v.map(|v| v.value().to_vec()))
        })
    }

    /// Cached bodies of the given messages (those not cached are absent).
    pub fn message_bodies(
        &self,
        gen: u32,
        uids: &[u32],
    ) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(BODIES)?;
            let mut out = Vec::new();
            for &uid in uids {
                if let Some(v) = t.get(message_key(gen, uid))? {
                    out.push((uid, v.value().to_vec()));
                }
            }
            Ok(out)
        })
    }

    /// Total bytes in the body cache.
    pub fn body_cache_bytes(&self) -> Result<u64, StoreError> {
        self.read(|txn| Ok(meta_u64(&txn.open_table(META)?, "body_cache_bytes")?.unwrap_or(0)))
    }

    /// Allocates a new generation for a mailbox whose UIDVALIDITY is new,
    /// deleting the records of the old generation.
    pub async fn mailbox_reset(
        &self,
        name: &str,
        uidvalidity: u32,
    ) -> Result<MailboxRecord, StoreError> {
        let name = name.to_owned();
        self.write(move |txn| {
            let gen = {
                let mut meta = txn.open_table(META)?;
                let gen = meta_u64(&meta, "next_gen")?.unwrap_or(1);
                meta.insert("next_gen", (gen + 1).to_le_bytes().as_slice())?;
                u32::try_from(gen).map_err(|_| StoreError::corrupt("meta.next_gen", "overflow"))?
            };
            let old = {
                let t = txn.open_table(MAILBOXES)?;
                let v = t.get(name.as_str())?;
                v.and_then(|v| serde_json::from_slice::<MailboxRecord>(v.value()).ok())
            };
            if let Some(old) = old {
                delete_generation(txn, old.gen)?;
            }
            let rec = MailboxRecord {
                name: name.clone(),
                gen,
                uidvalidity,
                uidnext: 1,
                highestmodseq: 0,
            };
            put_mailbox(txn, &rec)?;
            Ok(rec)
        })
        .await
    }

    /// Forgets a mailbox that no longer exists upstream.
    pub async fn mailbox_forget(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(move |txn| {
            let old = {
                let t = txn.open_table(MAILBOXES)?;
                let v = t.get(name.as_str())?;
                v.and_then(|v| serde_json::from_slice::<MailboxRecord>(v.value()).ok())
            };
            if let Some(old) = old {
                delete_generation(txn, old.gen)?;
                txn.open_table(MAILBOXES)?.remove(name.as_str())?;
            }
            Ok(())
        })
        .await
    }

    /// Writes message changes and the mailbox's new state in one commit,
    /// keeping the body cache within `body_budget` bytes.
    pub async fn mailbox_apply(
        &self,
        mailbox: MailboxRecord,
        writes: Vec<MessageWrite>,
        body_budget: u64,
    ) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut msgs = txn.open_table(MESSAGES)?;
            let mut headers = txn.open_table(HEADERS)?;
            let mut bodies = txn.open_table(BODIES)?;
            let mut meta = txn.open_table(META)?;
            let erased = txn.open_table(ERASED_MESSAGES)?;
            let mut cached = meta_u64(&meta, "body_cache_bytes")?.unwrap_or(0);
            for w in &writes {
                match w {
                    MessageWrite::Put { record, header } => {
                        let key = message_key(mailbox.gen, record.uid);
                        if erased.get(key)?.is_some() {
                            // `contact erase` took it out; it stays out.
                            continue;
                        }
                        msgs.insert(key, record.encode().as_slice())?;
                        if let Some(h) = header {
                            headers.insert(key, h.as_slice())?;
                        }
                    }
                    MessageWrite::Remove(uid) => {
                        let key = message_key(mailbox.gen, *uid);
                        msgs.remove(key)?;
                        headers.remove(key)?;
                        if let Some(old) = bodies.remove(key)? {
                            cached = cached.saturating_sub(old.value().len() as u64);
                        }
                    }
                    MessageWrite::CacheBody { uid, body } => {
                        let key = message_key(mailbox.gen, *uid);
                        if erased.get(key)?.is_some() {
                            continue;
                        }
                        if let Some(old) = bodies.insert(key, body.as_slice())? {
                            cached = cached.saturating_sub(old.value().len() as u64);
                        }
                        cached += body.len() as u64;
                    }
                }
            }
            if cached > body_budget {
                // Oldest first: lowest generation, then lowest UID.
                let mut evict = Vec::new();
                let mut over = cached - body_budget;
                for row in bodies.iter()? {
                    let (k, v) = row?;
                    if over == 0 {
                        break;
                    }
                    let len = v.value().len() as u64;
                    over = over.saturating_sub(len);
                    evict.push((k.value(), len));
                }
                for (k, len) in evict {
                    bodies.remove(k)?;
                    cached = cached.saturating_sub(len);
                }
            }
            meta.insert("body_cache_bytes", cached.to_le_bytes().as_slice())?;
            drop((msgs, headers, bodies, meta, erased));
            put_mailbox(txn, &mailbox)?;
            Ok(())
        })
        .await
    }
}

fn put_mailbox(txn: &WriteTxn, rec: &MailboxRecord) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(rec).map_err(|e| StoreError::corrupt("mailbox", e))?;
    txn.open_table(MAILBOXES)?
        .insert(rec.name.as_str(), bytes.as_slice())?;
    Ok(())
}

fn delete_generation(txn: &WriteTxn, gen: u32) -> Result<(), StoreError> {
    let range = message_key(gen, 0)..=message_key(gen, u32::MAX);
    txn.open_table(MESSAGES)?
        .retain_in(range.clone(), |_, _| false)?;
    txn.open_table(HEADERS)?
        .retain_in(range.clone(), |_, _| false)?;
    let mut bodies = txn.open_table(BODIES)?;
    let mut freed = 0u64;
    for row in bodies.range(range.clone())? {
        freed += row?.1.value().len() as u64;
    }
    bodies.retain_in(range, |_, _| false)?;
    drop(bodies);
    cache_freed(txn, freed)
}

/// Takes `freed` bytes of removed bodies off the cache's running total.
pub(in crate::store) fn cache_freed(txn: &WriteTxn, freed: u64) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    let cached = meta_u64(&meta, "body_cache_bytes")?.unwrap_or(0);
    meta.insert(
        "body_cache_bytes",
        cached.saturating_sub(freed).to_le_bytes().as_slice(),
    )?;
    Ok(())
}

impl Store {
    /// The upstream's hierarchy delimiter, once learned.
    pub fn upstream_delimiter(&self) -> Result<Option<char>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(META)?;
            let v = t.get("upstream_delimiter")?;
            Ok(v.and_then(|v| {
                std::str::from_utf8(v.value())
                    .ok()
                    .and_then(|s| s.chars().next())
            }))
        })
    }

    pub async fn set_upstream_delimiter(&self, d: char) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut buf = [0u8; 4];
            txn.open_table(META)?
                .insert("upstream_delimiter", d.encode_utf8(&mut buf).as_bytes())?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_record_round_trips() {
        let r = MessageRecord {
            uid: 42,
            flags: vec!["\\Seen".into(), "$Forwarded".into()],
            modseq: 7,
            meta: Arc::new(MessageMeta {
                size: 1234,
                internal_date: "27-Nov-2026 21:33:58 +0000".into(),
                envelope: b"(NIL \"hi\" NIL NIL NIL NIL NIL NIL NIL NIL)"
                    .as_slice()
                    .into(),
                bodystructure: b"(\"text\" \"plain\" NIL NIL NIL \"7bit\" 3 1)"
                    .as_slice()
                    .into(),
                message_id: Some("<a@b>".into()),
                in_reply_to: None,
                references: vec!["<x@y>".into(), "<z@w>".into()].into(),
            }),
        };
        assert_eq!(MessageRecord::decode(&r.encode()).unwrap(), r);
        assert!(MessageRecord::decode(&r.encode()[..20]).is_err());
    }
}
