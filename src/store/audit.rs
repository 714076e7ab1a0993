//! The audit log: an append-only, hash-chained record of every action
//! (logins, failed logins, lead changes, replies blocked, user changes).
//!
//! # The chain
//!
//! Events live in the `AUDIT` table keyed by sequence number, 1, 2, 3, ...
//! with no gaps. Each event holds `prev`, the hash of the event before it
//! (64 zeros for seq 1), and `hash`, the SHA-256 of its own canonical
//! encoding (below), which covers `prev`. META key `audit_head` holds the
//! last sequence number and its hash (8 bytes little-endian seq, then the 32
//! hash bytes), so removing events from the end is detected as well.
//!
//! `append` runs inside the caller's write transaction: a lead change and
//! the event recording it commit together or not at all. It reads the head,
//! so the same transaction state always gives the same event (the writer
//! may re-run a job after a rollback).
//!
//! `Store::audit_verify` walks seq 1..=head in one read transaction and stops
//! at the first event that is missing, stored under another key, linked to
//! the wrong predecessor, or whose content does not match its hash, or at a
//! head that does not match the last event. What the chain cannot show on its
//! own is a rewrite of the whole tail together with the head by someone who
//! can write the file; note the head hash elsewhere to catch that.
//!
//! # Canonical encoding (version 1)
//!
//! `hash = lowercase hex of SHA-256(encoding)`, where the encoding is the
//! concatenation of, in this order:
//!
//! | part      | bytes                                                     |
//! |-----------|-----------------------------------------------------------|
//! | tag       | ASCII `leadgate-audit-v1` then one `0x00` (18 bytes)      |
//! | `seq`     | u64, 8 bytes big-endian                                   |
//! | `at`      | i64 (unix milliseconds), 8 bytes big-endian two's complement |
//! | `prev`    | the 32 bytes of the previous hash (not its hex text)      |
//! | `actor`   | string                                                    |
//! | `action`  | string                                                    |
//! | `lead`    | `0x00` if none, else `0x01` then u64 8 bytes big-endian    |
//! | `changes` | count as u64 8 bytes big-endian, then for each change its `field`, `before`, `after` as strings |
//! | `reason`  | string                                                    |
//!
//! A string is its UTF-8 byte length as u64 (8 bytes big-endian) followed by
//! those bytes. Every field except `hash` is covered; no field can run into
//! the next. The stored form is JSON (field order and whitespace do not
//! matter: the hash is computed from the decoded values, and JSON strings
//! and integers round-trip exactly), with unknown fields refused.
//!
//! # Canonical encoding (version 2): personal data behind a digest
//!
//! New events are version 2 (stored with `"v":2`); events stored without
//! `v` are version 1 and keep verifying with the encoding above. In version
//! 2 the personal-data fields (every change's `before` and `after`, and
//! `reason`: they hold addresses, names, subjects and snippets) are not fed
//! to the chain hash directly. Instead
//!
//! `pd = SHA-256(ASCII "leadgate-audit-pd-v2" 0x00, count as u64 BE, then
//! each change's before, after as strings, then reason as a string)`
//!
//! is stored in the event (`pd`, hex) and the chain hash covers, in order:
//! tag `leadgate-audit-v2` 0x00, `seq`, `at`, `prev`, `actor`, `action`,
//! `lead`, the change count and each change's `field`, then the 32 `pd`
//! bytes. Verify recomputes `pd` from the stored values and names an event
//! whose personal data no longer matches it.
//!
//! Erasure (`erase_personal_data`) replaces *all* personal-data fields of an
//! event that mentions the erased text with `[erased]` and sets
//! `"erased":true`; the stored `pd` is kept, so the chain still verifies.
//! An erased event must hold exactly `[erased]` in every personal field;
//! everything else (seq, time, actor, action, lead, field names, `pd`,
//! `prev`) stays covered by the hash. The one thing the chain cannot tell
//! after an erasure is what the erased data was, which is the point.
//! Version 1 events cover their personal data directly and cannot be
//! erased without breaking the chain: erasure refuses when a v1 event
//! mentions the address (to be lifted by a compaction checkpoint, not yet
//! built).

use super::changes::{Insert, WriteTxn};
use std::borrow::Cow;

use redb::{ReadTransaction, ReadableTable, TableError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    retention,
    schema::{AUDIT, AUDIT_BY_LEAD, META},
    Store, StoreError,
};

/// `prev` of the first event.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// META key of the chain head.
pub const HEAD_KEY: &str = "audit_head";

/// META key: `AUDIT_BY_LEAD` holds every event up to this sequence number.
pub const BY_LEAD_KEY: &str = "audit_by_lead_upto";

const TAG: &[u8] = b"leadgate-audit-v1\0";
const TAG_V2: &[u8] = b"leadgate-audit-v2\0";
const TAG_PD: &[u8] = b"leadgate-audit-pd-v2\0";

/// What erasure puts in place of a personal-data field.
pub const ERASED: &str = "[erased]";

/// The chain version new events are written with.
pub const CURRENT_VERSION: u8 = 2;

fn version_one() -> u8 {
    1
}

fn is_version_one(v: &u8) -> bool {
    *v == 1
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One field a change touched, with its value before and after (as text;
/// empty when there was none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditChange {
    pub field: String,
    pub before: String,
    pub after: String,
}

/// What a caller wants recorded.
#[derive(Debug, Clone)]
pub struct AuditDraft {
    /// Unix milliseconds.
    pub at: i64,
    /// The user (or `system`, `ingest`, ...) who did it.
    pub actor: String,
    /// e.g. `lead.create`, `lead.assign`, `auth.login`, `auth.failed`,
    /// `user.disable`, `reply.blocked`.
    pub action: String,
    pub lead: Option<u64>,
    pub changes: Vec<AuditChange>,
    pub reason: String,
}

/// A recorded event, as stored and exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    pub seq: u64,
    /// Unix milliseconds.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub lead: Option<u64>,
    pub changes: Vec<AuditChange>,
    pub reason: String,
    /// Hex SHA-256 of the previous event; `GENESIS_PREV` for seq 1.
    pub prev: String,
    /// Hex SHA-256 of this event's canonical encoding.
    pub hash: String,
    /// Chain version of this event (1 when absent; see the module docs).
    #[serde(default = "version_one", skip_serializing_if = "is_version_one")]
    pub v: u8,
    /// Version 2: hex SHA-256 of the personal-data fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pd: Option<String>,
    /// Version 2: the personal-data fields were erased.
    #[serde(default, skip_serializing_if = "is_false")]
    pub erased: bool,
}

impl AuditEvent {
    /// The hash this event's content calls for (compare with `hash`).
    /// `None` if `prev` is not 64 lowercase hex digits.
    /// For a version 2 event that is not erased, `pd` is recomputed from the
    /// content; for an erased one the stored `pd` is used.
    pub fn computed_hash(&self) -> Option<String> {
        let prev = parse_hash(&self.prev)?;
        let fields = Fields {
            seq: self.seq,
            at: self.at,
            actor: &self.actor,
            action: &self.action,
            lead: self.lead,
            reason: &self.reason,
        };
        match self.v {
            1 => Some(hex::encode(chain_hash(&fields, &self.changes, &prev))),
            2 => {
                let pd = if self.erased {
                    parse_hash(self.pd.as_deref()?)?
                } else {
                    pd_digest(&self.changes, &self.reason)
                };
                Some(hex::encode(chain_hash_v2(
                    &fields,
                    &self.changes,
                    &pd,
                    &prev,
                )))
            }
            _ => None,
        }
    }

    /// Whether any personal-data field mentions `needle` (compared without
    /// ASCII case; `needle` should be lowercase).
    pub fn mentions(&self, needle: &str) -> bool {
        let hit = |s: &str| s.to_ascii_lowercase().contains(needle);
        hit(&self.reason) || self.changes.iter().any(|c| hit(&c.before) || hit(&c.after))
    }
}

/// Why an event's personal data cannot be erased.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EraseError {
    #[error("audit event {seq} is chain version 1, which covers personal data directly; erasing it would break the chain")]
    VersionOne { seq: u64 },
    #[error("audit event {seq} has chain version {v}, which this build does not know")]
    UnknownVersion { seq: u64, v: u8 },
}

/// Replaces every personal-data field of `ev` with `ERASED` if any of them
/// mentions `needle` (lowercase, compared without ASCII case), keeping `pd`
/// so the chain still verifies. Returns whether the event changed.
pub fn erase_personal_data(ev: &mut AuditEvent, needle: &str) -> Result<bool, EraseError> {
    erase_personal_data_where(ev, |s| s.to_ascii_lowercase().contains(needle))
}

/// `erase_personal_data` with the test given as a function: the event is
/// erased when `hit` is true for any of its personal-data fields (a
/// `hit` that is always true erases the event whatever it holds).
pub fn erase_personal_data_where(
    ev: &mut AuditEvent,
    hit: impl Fn(&str) -> bool,
) -> Result<bool, EraseError> {
    let mentioned = hit(&ev.reason) || ev.changes.iter().any(|c| hit(&c.before) || hit(&c.after));
    if ev.erased || !mentioned {
        return Ok(false);
    }
    match ev.v {
        2 => {}
        1 => return Err(EraseError::VersionOne { seq: ev.seq }),
        v => return Err(EraseError::UnknownVersion { seq: ev.seq, v }),
    }
    if ev.pd.is_none() {
        ev.pd = Some(hex::encode(pd_digest(&ev.changes, &ev.reason)));
    }
    for c in &mut ev.changes {
        c.before = ERASED.to_owned();
        c.after = ERASED.to_owned();
    }
    ev.reason = ERASED.to_owned();
    ev.erased = true;
    Ok(true)
}

/// Which events `Store::audit_events` yields; every given condition must hold.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Events at or after this time (unix milliseconds).
    pub since_ms: Option<i64>,
    pub lead: Option<u64>,
    pub actor: Option<String>,
    /// e.g. `lead.` or `auth.failed`.
    pub action_prefix: Option<String>,
}

/// The outcome of `Store::audit_verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events checked and found good: the whole log when `first_bad` is
    /// `None`, else those before the bad one.
    pub events: u64,
    /// The first sequence number where the chain breaks, and what is wrong.
    pub first_bad: Option<(u64, String)>,
    /// The checkpoint the chain starts from, when older events were
    /// compacted (`retention`).
    pub checkpoint: Option<retention::Checkpoint>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

type Hash = [u8; 32];

/// The scalar fields of an event, borrowed from wherever they live.
struct Fields<'a> {
    seq: u64,
    at: i64,
    actor: &'a str,
    action: &'a str,
    lead: Option<u64>,
    reason: &'a str,
}

trait ChangeParts {
    fn parts(&self) -> [&str; 3];
}

impl ChangeParts for AuditChange {
    fn parts(&self) -> [&str; 3] {
        [&self.field, &self.before, &self.after]
    }
}

/// The part both encodings share: tag, seq, at, prev, actor, action, lead.
fn hash_head(tag: &[u8], f: &Fields<'_>, prev: &Hash) -> Sha256 {
    let mut h = Sha256::new();
    h.update(tag);
    h.update(f.seq.to_be_bytes());
    h.update(f.at.to_be_bytes());
    h.update(prev);
    hash_str(&mut h, f.actor);
    hash_str(&mut h, f.action);
    match f.lead {
        None => h.update([0u8]),
        Some(id) => {
            h.update([1u8]);
            h.update(id.to_be_bytes());
        }
    }
    h
}

/// The canonical encoding (see the module docs), fed straight to SHA-256.
fn chain_hash<C: ChangeParts>(f: &Fields<'_>, changes: &[C], prev: &Hash) -> Hash {
    let mut h = hash_head(TAG, f, prev);
    h.update((changes.len() as u64).to_be_bytes());
    for c in changes {
        for part in c.parts() {
            hash_str(&mut h, part);
        }
    }
    hash_str(&mut h, f.reason);
    h.finalize().into()
}

fn hash_str(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_be_bytes());
    h.update(s.as_bytes());
}

/// The digest of a version 2 event's personal-data fields.
fn pd_digest<C: ChangeParts>(changes: &[C], reason: &str) -> Hash {
    let mut h = Sha256::new();
    h.update(TAG_PD);
    h.update((changes.len() as u64).to_be_bytes());
    for c in changes {
        let [_, before, after] = c.parts();
        hash_str(&mut h, before);
        hash_str(&mut h, after);
    }
    hash_str(&mut h, reason);
    h.finalize().into()
}

/// The version 2 canonical encoding (see the module docs).
fn chain_hash_v2<C: ChangeParts>(f: &Fields<'_>, changes: &[C], pd: &Hash, prev: &Hash) -> Hash {
    let mut h = hash_head(TAG_V2, f, prev);
    h.update((changes.len() as u64).to_be_bytes());
    for c in changes {
        hash_str(&mut h, c.parts()[0]);
    }
    h.update(pd);
    h.finalize().into()
}

/// The hash a stored event calls for, or what is wrong with it.
fn stored_event_hash<C: ChangeParts>(
    v: u8,
    f: &Fields<'_>,
    changes: &[C],
    pd: Option<&str>,
    erased: bool,
    prev: &Hash,
) -> Result<Hash, String> {
    match v {
        1 if pd.is_none() && !erased => Ok(chain_hash(f, changes, prev)),
        1 => Err("a version 1 event carries version 2 fields (pd or erased)".to_owned()),
        2 => {
            let stored = pd
                .and_then(parse_hash)
                .ok_or_else(|| "personal-data digest (pd) is missing or malformed".to_owned())?;
            if erased {
                let clean = f.reason == ERASED
                    && changes.iter().all(|c| {
                        let [_, b, a] = c.parts();
                        b == ERASED && a == ERASED
                    });
                if !clean {
                    return Err("an erased event carries personal data (edited)".to_owned());
                }
            } else if pd_digest(changes, f.reason) != stored {
                return Err(
                    "personal data does not match its digest (the event was edited)".to_owned(),
                );
            }
            Ok(chain_hash_v2(f, changes, &stored, prev))
        }
        v => Err(format!("unknown chain version {v}")),
    }
}

/// 64 lowercase hex digits -> bytes.
fn parse_hash(text: &str) -> Option<Hash> {
    if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

fn hex64(hash: &Hash) -> [u8; 64] {
    let mut out = [0u8; 64];
    // Cannot fail: the output is exactly twice the input.
    let _ = hex::encode_to_slice(hash, &mut out);
    out
}

/// The chain head: last sequence number and its hash.
fn read_head(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<(u64, Hash)>, String> {
    let Some(v) = meta.get(HEAD_KEY).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let bytes = v.value();
    if bytes.len() != 40 {
        return Err(format!("{} bytes, expected 40", bytes.len()));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[..8]);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&bytes[8..]);
    Ok(Some((u64::from_le_bytes(seq), hash)))
}

fn head_bytes(seq: u64, hash: &Hash) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..8].copy_from_slice(&seq.to_le_bytes());
    out[8..].copy_from_slice(hash);
    out
}

/// Appends `draft` as the next event inside the caller's write transaction,
/// so the change and its record commit together. Deterministic given the
/// transaction's state. The caller must not hold `AUDIT` or `META` open
/// across the call (redb refuses a second open); use `append_in` then.
pub fn append(txn: &WriteTxn, draft: &AuditDraft) -> Result<AuditEvent, StoreError> {
    let mut audit = txn.open_table(AUDIT)?;
    let mut meta = txn.open_table(META)?;
    let event = append_in(&mut audit, &mut meta, draft)?;
    // The by-lead index follows the log when it was complete before
    // (`append_in` did it for an event of no lead).
    if let Some(lead) = event.lead {
        if super::schema::meta_u64(&meta, BY_LEAD_KEY)? == Some(event.seq - 1) {
            txn.open_table(AUDIT_BY_LEAD)?
                .insert((lead, event.seq), ())?;
            meta.insert(BY_LEAD_KEY, event.seq.to_le_bytes().as_slice())?;
        }
    }
    Ok(event)
}

/// Brings `AUDIT_BY_LEAD` up to the head of the log (events written by a
/// version without it, or a store restored from such a backup). Run at
/// open, inside its write transaction.
pub fn index_by_lead(txn: &WriteTxn) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META)?;
    let marked = super::schema::meta_u64(&meta, BY_LEAD_KEY)?;
    let upto = marked.unwrap_or(0);
    let head = read_head(&meta)
        .map_err(|e| StoreError::corrupt(format!("meta.{HEAD_KEY}"), e))?
        .map_or(0, |(seq, _)| seq);
    if marked == Some(head) {
        return Ok(0);
    }
    let audit = txn.open_table(AUDIT)?;
    let mut index = txn.open_table(AUDIT_BY_LEAD)?;
    let mut n = 0;
    for row in audit.range((upto + 1)..)? {
        let (k, v) = row?;
        let ev: EventView<'_> = serde_json::from_slice(v.value())
            .map_err(|e| StoreError::corrupt(format!("audit {}", k.value()), e))?;
        if let Some(lead) = ev.lead {
            index.insert((lead, k.value()), ())?;
            n += 1;
        }
    }
    meta.insert(BY_LEAD_KEY, head.to_le_bytes().as_slice())?;
    Ok(n)
}

/// The sequence numbers of the events of `leads`, from the by-lead index,
/// and the sequence number up to which the index is complete (events
/// after it are to be read). May name events compaction dropped.
pub(super) fn seqs_of_leads(
    txn: &WriteTxn,
    leads: &std::collections::BTreeSet<u64>,
) -> Result<(std::collections::BTreeSet<u64>, u64), StoreError> {
    let upto = super::schema::meta_u64(&txn.open_table(META)?, BY_LEAD_KEY)?.unwrap_or(0);
    let index = txn.open_table(AUDIT_BY_LEAD)?;
    let mut seqs = std::collections::BTreeSet::new();
    for &lead in leads {
        for row in index.range((lead, 0)..=(lead, u64::MAX))? {
            seqs.insert(row?.0.value().1);
        }
    }
    Ok((seqs, upto))
}

/// `append` for a caller that already has the two tables open.
pub fn append_in(
    audit: &mut impl Insert<u64, &'static [u8]>,
    meta: &mut impl Insert<&'static str, &'static [u8]>,
    draft: &AuditDraft,
) -> Result<AuditEvent, StoreError> {
    let (last, prev) = read_head(meta)
        .map_err(|e| StoreError::corrupt(format!("meta.{HEAD_KEY}"), e))?
        .unwrap_or((0, [0u8; 32]));
    let seq = last
        .checked_add(1)
        .ok_or_else(|| StoreError::corrupt(format!("meta.{HEAD_KEY}"), "sequence overflow"))?;
    let pd = pd_digest(&draft.changes, &draft.reason);
    let hash = chain_hash_v2(
        &Fields {
            seq,
            at: draft.at,
            actor: &draft.actor,
            action: &draft.action,
            lead: draft.lead,
            reason: &draft.reason,
        },
        &draft.changes,
        &pd,
        &prev,
    );
    let event = AuditEvent {
        seq,
        at: draft.at,
        actor: draft.actor.clone(),
        action: draft.action.clone(),
        lead: draft.lead,
        changes: draft.changes.clone(),
        reason: draft.reason.clone(),
        prev: hex::encode(prev),
        hash: hex::encode(hash),
        v: CURRENT_VERSION,
        pd: Some(hex::encode(pd)),
        erased: false,
    };
    let bytes =
        serde_json::to_vec(&event).map_err(|e| StoreError::corrupt(format!("audit {seq}"), e))?;
    if audit.put(seq, bytes.as_slice())?.is_some() {
        // The head is behind the log: never overwrite a recorded event.
        return Err(StoreError::corrupt(
            format!("audit {seq}"),
            format!("already exists but the chain head says the log ends at {last}"),
        ));
    }
    meta.put(HEAD_KEY, head_bytes(seq, &hash).as_slice())?;
    // An event of no lead keeps the by-lead index complete as it is; one
    // of a lead is indexed by `append` (which has the transaction), else
    // at the next open.
    if event.lead.is_none() && super::schema::meta_u64(meta, BY_LEAD_KEY)? == Some(seq - 1) {
        meta.put(BY_LEAD_KEY, seq.to_le_bytes().as_slice())?;
    }
    Ok(event)
}

/// An event decoded in place: strings borrow from the stored bytes unless
/// they contain escapes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventView<'a> {
    seq: u64,
    at: i64,
    #[serde(borrow)]
    actor: Cow<'a, str>,
    #[serde(borrow)]
    action: Cow<'a, str>,
    lead: Option<u64>,
    #[serde(borrow)]
    changes: Vec<ChangeView<'a>>,
    #[serde(borrow)]
    reason: Cow<'a, str>,
    #[serde(borrow)]
    prev: Cow<'a, str>,
    #[serde(borrow)]
    hash: Cow<'a, str>,
    #[serde(default = "version_one")]
    v: u8,
    #[serde(default, borrow)]
    pd: Option<Cow<'a, str>>,
    #[serde(default)]
    erased: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeView<'a> {
    #[serde(borrow)]
    field: Cow<'a, str>,
    #[serde(borrow)]
    before: Cow<'a, str>,
    #[serde(borrow)]
    after: Cow<'a, str>,
}

impl ChangeParts for ChangeView<'_> {
    fn parts(&self) -> [&str; 3] {
        [&self.field, &self.before, &self.after]
    }
}

impl EventView<'_> {
    fn fields(&self) -> Fields<'_> {
        Fields {
            seq: self.seq,
            at: self.at,
            actor: &self.actor,
            action: &self.action,
            lead: self.lead,
            reason: &self.reason,
        }
    }

    fn matches(&self, f: &AuditFilter) -> bool {
        f.since_ms.is_none_or(|t| self.at >= t)
            && f.lead.is_none_or(|l| self.lead == Some(l))
            && f.actor.as_deref().is_none_or(|a| self.actor == a)
            && f.action_prefix
                .as_deref()
                .is_none_or(|p| self.action.starts_with(p))
    }

    fn to_owned_event(&self) -> AuditEvent {
        AuditEvent {
            seq: self.seq,
            at: self.at,
            actor: self.actor.to_string(),
            action: self.action.to_string(),
            lead: self.lead,
            changes: self
                .changes
                .iter()
                .map(|c| AuditChange {
                    field: c.field.to_string(),
                    before: c.before.to_string(),
                    after: c.after.to_string(),
                })
                .collect(),
            reason: self.reason.to_string(),
            prev: self.prev.to_string(),
            hash: self.hash.to_string(),
            v: self.v,
            pd: self.pd.as_ref().map(|p| p.to_string()),
            erased: self.erased,
        }
    }
}

/// The AUDIT table, or `None` in a store that has never had one (opened
/// read-only and last written by a version without the audit log).
fn audit_table(
    txn: &ReadTransaction,
) -> Result<Option<redb::ReadOnlyTable<u64, &'static [u8]>>, StoreError> {
    match txn.open_table(AUDIT) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The chain head as stored: last sequence number and its hex hash.
pub fn head_in(txn: &ReadTransaction) -> Result<Option<(u64, String)>, StoreError> {
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let head = read_head(&meta).map_err(|e| StoreError::corrupt(format!("meta.{HEAD_KEY}"), e))?;
    Ok(head.map(|(seq, hash)| (seq, hex::encode(hash))))
}

/// Walks the whole chain in `txn`; see `Store::audit_verify`.
pub(super) fn verify_in(txn: &ReadTransaction) -> Result<VerifyReport, StoreError> {
    let meta = txn.open_table(META)?;
    let head = read_head(&meta);
    let checkpoint = match retention::read_checkpoint(&meta) {
        Ok(cp) => cp,
        Err(what) => {
            return Ok(VerifyReport {
                events: 0,
                first_bad: Some((1, format!("checkpoint is unreadable: {what}"))),
                checkpoint: None,
            })
        }
    };
    drop(meta);
    // A checkpoint stands for the events before it: the chain resumes
    // after its seq, linked to its hash.
    let base = checkpoint.as_ref().map_or(0, |c| c.seq);
    let mut good = base; // the last sequence number verified
    let mut prev = [0u8; 32];
    if let Some(cp) = &checkpoint {
        match parse_hash(&cp.hash) {
            Some(h) => prev = h,
            None => {
                return Ok(VerifyReport {
                    events: 0,
                    first_bad: Some((base + 1, "checkpoint hash is malformed".to_owned())),
                    checkpoint,
                })
            }
        }
    }
    let mut prev_hex = hex64(&prev);
    // The newest audit.compact event and the checkpoint digest it names.
    let mut last_compact: Option<(u64, String)> = None;
    let broken = |seq: u64, good: u64, what: String| VerifyReport {
        events: good.saturating_sub(base),
        first_bad: Some((seq, what)),
        checkpoint: checkpoint.clone(),
    };
    if let Some(audit) = audit_table(txn)? {
        for row in audit.iter()? {
            let (k, v) = row?;
            let seq = k.value();
            let expected = good + 1;
            if seq != expected {
                let what = if seq < expected {
                    "record outside the chain (sequence numbers start at 1)".to_owned()
                } else {
                    format!("record is missing (the next one stored is seq {seq})")
                };
                return Ok(broken(seq.min(expected), good, what));
            }
            let ev: EventView<'_> = match serde_json::from_slice(v.value()) {
                Ok(ev) => ev,
                Err(e) => {
                    return Ok(broken(
                        seq,
                        good,
                        format!("record is not a valid event: {e}"),
                    ))
                }
            };
            if ev.seq != seq {
                return Ok(broken(
                    seq,
                    good,
                    format!(
                        "record stored as seq {seq} says it is seq {} (records moved)",
                        ev.seq
                    ),
                ));
            }
            if ev.prev.as_bytes() != prev_hex.as_slice() {
                let what = if seq == 1 {
                    "prev of the first event is not all zeros".to_owned()
                } else if seq == base + 1 {
                    format!("prev is not the hash the checkpoint at seq {base} records")
                } else {
                    format!(
                        "prev is not the hash of seq {} (an event before it was removed, reordered or rewritten)",
                        seq - 1
                    )
                };
                return Ok(broken(seq, good, what));
            }
            let hash = match stored_event_hash(
                ev.v,
                &ev.fields(),
                &ev.changes,
                ev.pd.as_deref(),
                ev.erased,
                &prev,
            ) {
                Ok(h) => h,
                Err(what) => return Ok(broken(seq, good, what)),
            };
            let hash_hex = hex64(&hash);
            if ev.hash.as_bytes() != hash_hex.as_slice() {
                return Ok(broken(
                    seq,
                    good,
                    "content does not match its hash (the event was edited)".to_owned(),
                ));
            }
            if ev.action == retention::COMPACT_ACTION {
                let named = ev
                    .changes
                    .iter()
                    .find(|c| c.field == "checkpoint")
                    .map(|c| c.after.to_string())
                    .unwrap_or_default();
                last_compact = Some((seq, named));
            }
            prev = hash;
            prev_hex = hash_hex;
            good = seq;
        }
    }
    if let Some(cp) = &checkpoint {
        match &last_compact {
            Some((_, named)) if *named == cp.digest() => {}
            Some((seq, _)) => {
                return Ok(broken(
                    *seq,
                    seq - 1,
                    format!(
                        "the checkpoint (meta {}) is not the one this audit.compact event records (edited)",
                        retention::CHECKPOINT_KEY
                    ),
                ))
            }
            None => {
                return Ok(broken(
                    base + 1,
                    base,
                    "there is a checkpoint but no audit.compact event records it".to_owned(),
                ))
            }
        }
    }
    match head {
        Err(e) => Ok(broken(
            good + 1,
            good,
            format!("chain head (meta {HEAD_KEY}) is unreadable: {e}"),
        )),
        Ok(None) if good == 0 => Ok(VerifyReport {
            events: 0,
            first_bad: None,
            checkpoint: None,
        }),
        Ok(None) => Ok(broken(
            1,
            0,
            format!("the log has {good} events but no chain head (meta {HEAD_KEY})"),
        )),
        Ok(Some((last, _))) if last > good => Ok(broken(
            good + 1,
            good,
            format!("record is missing (the chain head says the log ends at seq {last})"),
        )),
        Ok(Some((last, _))) if last < good => Ok(broken(
            last + 1,
            last,
            format!("record is beyond the chain head (which says the log ends at seq {last})"),
        )),
        Ok(Some((_, hash))) if hash != prev => Ok(broken(
            good.max(1),
            good.saturating_sub(1),
            "hash does not match the chain head (the last event was replaced)".to_owned(),
        )),
        Ok(Some(_)) => Ok(VerifyReport {
            events: good - base,
            first_bad: None,
            checkpoint,
        }),
    }
}

impl Store {
    /// Records a standalone event (a login, a failed login, a blocked
    /// reply) in its own transaction; resolves once it is durable.
    pub async fn audit(&self, draft: AuditDraft) -> Result<AuditEvent, StoreError> {
        let event = self.write(move |txn| append(txn, &draft)).await?;
        tracing::info!(
            seq = event.seq,
            actor = %event.actor,
            action = %event.action,
            lead = ?event.lead,
            reason = %event.reason,
            "audit"
        );
        Ok(event)
    }

    /// Checks the whole chain in one read transaction (see the module docs);
    /// stops at the first bad sequence number. A broken chain is a report,
    /// not an error; errors are failures to read the store.
    pub fn audit_verify(&self) -> Result<VerifyReport, StoreError> {
        self.read(verify_in)
    }

    /// Calls `f` with each event matching `filter`, in sequence order, until
    /// `f` returns false. Does not verify the chain.
    pub fn audit_events(
        &self,
        filter: &AuditFilter,
        mut f: impl FnMut(&AuditEvent) -> bool,
    ) -> Result<(), StoreError> {
        self.read(|txn| {
            let Some(audit) = audit_table(txn)? else {
                return Ok(());
            };
            for row in audit.iter()? {
                let (k, v) = row?;
                let ev: EventView<'_> = serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::corrupt(format!("audit {}", k.value()), e))?;
                if ev.matches(filter) && !f(&ev.to_owned_event()) {
                    break;
                }
            }
            Ok(())
        })
    }
}

impl Store {
    /// The newest `limit` events of `lead` with a sequence number up to
    /// `upto`, newest first: a range read of the by-lead index.
    pub fn audit_of_lead(
        &self,
        lead: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.read(|txn| {
            let Some(audit) = audit_table(txn)? else {
                return Ok(Vec::new());
            };
            let index = match txn.open_table(AUDIT_BY_LEAD) {
                Ok(t) => t,
                Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for row in index.range((lead, 0)..=(lead, upto))?.rev() {
                if out.len() >= limit {
                    break;
                }
                let (k, _) = row?;
                let seq = k.value().1;
                let Some(v) = audit.get(seq)? else { continue };
                let ev: EventView<'_> = serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::corrupt(format!("audit {seq}"), e))?;
                out.push(ev.to_owned_event());
            }
            Ok(out)
        })
    }

    /// The sequence number of the newest event naming `lead` (0 if none).
    pub fn audit_lead_head(&self, lead: u64) -> Result<u64, StoreError> {
        self.read(|txn| {
            let index = match txn.open_table(AUDIT_BY_LEAD) {
                Ok(t) => t,
                Err(TableError::TableDoesNotExist(_)) => return Ok(0),
                Err(e) => return Err(e.into()),
            };
            let last = index.range((lead, 0)..=(lead, u64::MAX))?.next_back();
            Ok(match last {
                Some(row) => row?.0.value().1,
                None => 0,
            })
        })
    }
}

#[cfg(test)]
impl Store {
    /// Every event of the log, oldest first (for tests).
    pub(crate) fn all_audit_events(&self) -> Vec<AuditEvent> {
        let mut out = Vec::new();
        self.audit_events(&AuditFilter::default(), |e| {
            out.push(e.clone());
            true
        })
        .unwrap();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(i: u64) -> AuditDraft {
        AuditDraft {
            at: 1_780_000_000_000 + i as i64,
            actor: if i.is_multiple_of(2) { "alice" } else { "bob" }.into(),
            action: "lead.assign".into(),
            lead: Some(i),
            changes: vec![AuditChange {
                field: "owner".into(),
                before: String::new(),
                after: "alice".into(),
            }],
            reason: "round robin \"EMEA\" \u{e9}".into(),
        }
    }

    fn sample() -> AuditEvent {
        let prev = [0xabu8; 32];
        let d = draft(3);
        let hash = chain_hash(
            &Fields {
                seq: 3,
                at: d.at,
                actor: &d.actor,
                action: &d.action,
                lead: d.lead,
                reason: &d.reason,
            },
            &d.changes,
            &prev,
        );
        AuditEvent {
            seq: 3,
            at: d.at,
            actor: d.actor,
            action: d.action,
            lead: d.lead,
            changes: d.changes,
            reason: d.reason,
            prev: hex::encode(prev),
            hash: hex::encode(hash),
            v: 1,
            pd: None,
            erased: false,
        }
    }

    async fn put(store: &Store, seq: u64, e: &AuditEvent) {
        let bytes = serde_json::to_vec(e).unwrap();
        store
            .write(move |txn| {
                txn.open_table(AUDIT)?.insert(seq, bytes.as_slice())?;
                Ok(())
            })
            .await
            .unwrap();
    }

    async fn v2_store_with_mail_events() -> (tempfile::TempDir, Store) {
        let (dir, store) = store();
        store
            .write(|txn| {
                for i in 0..4u64 {
                    let mut d = draft(i);
                    if i == 1 {
                        d.reason = "Reply from Carol@Example.com: Price list".into();
                    }
                    append(txn, &d)?;
                }
                Ok(())
            })
            .await
            .unwrap();
        (dir, store)
    }

    #[test]
    fn audit_hash_does_not_change_when_the_event_is_reserialized() {
        let ev = sample();
        assert_eq!(ev.computed_hash().as_deref(), Some(ev.hash.as_str()));
        let compact = serde_json::to_string(&ev).unwrap();
        let pretty = serde_json::to_string_pretty(&ev).unwrap();
        // Same values, other field order, escapes where none were needed.
        let reordered = format!(
            r#"{{"hash":"{}","prev":"{}","reason":"round robin \"EMEA\" \u00e9","changes":[{{"after":"alice","before":"","field":"owner"}}],"lead":3,"action":"lead.assign","actor":"bob","at":{},"seq":3}}"#,
            ev.hash, ev.prev, ev.at
        );
        for text in [compact, pretty, reordered] {
            let back: AuditEvent = serde_json::from_str(&text).unwrap();
            assert_eq!(back, ev);
            assert_eq!(back.computed_hash().as_deref(), Some(ev.hash.as_str()));
            let view: EventView<'_> = serde_json::from_str(&text).unwrap();
            let prev = parse_hash(&view.prev).unwrap();
            assert_eq!(
                hex::encode(chain_hash(&view.fields(), &view.changes, &prev)),
                ev.hash
            );
        }
    }

    #[test]
    fn audit_canonical_encoding_is_pinned() {
        // A change here breaks every stored chain: make it a new version.
        // (The value was checked against an independent Python encoder.)
        let mut expected = Vec::new();
        expected.extend_from_slice(b"leadgate-audit-v1\0");
        expected.extend_from_slice(&3u64.to_be_bytes());
        expected.extend_from_slice(&1_780_000_000_003i64.to_be_bytes());
        expected.extend_from_slice(&[0xabu8; 32]);
        for s in ["bob", "lead.assign"] {
            expected.extend_from_slice(&(s.len() as u64).to_be_bytes());
            expected.extend_from_slice(s.as_bytes());
        }
        expected.push(1);
        expected.extend_from_slice(&3u64.to_be_bytes());
        expected.extend_from_slice(&1u64.to_be_bytes());
        for s in ["owner", "", "alice", "round robin \"EMEA\" \u{e9}"] {
            expected.extend_from_slice(&(s.len() as u64).to_be_bytes());
            expected.extend_from_slice(s.as_bytes());
        }
        assert_eq!(sample().hash, hex::encode(Sha256::digest(&expected)));
        assert_eq!(
            sample().hash,
            "653fb0f4e7ce23b574cae31bc2add73b6b12bc9623c3dbb9193e1f591bf743b1"
        );
    }

    #[test]
    fn audit_hash_covers_every_field_and_their_boundaries() {
        let base = sample();
        let mut variants = Vec::new();
        let mut v = base.clone();
        v.seq += 1;
        variants.push(v);
        let mut v = base.clone();
        v.at += 1;
        variants.push(v);
        let mut v = base.clone();
        v.actor = "bo".into();
        v.action = "blead.assign".into();
        variants.push(v);
        let mut v = base.clone();
        v.lead = None;
        variants.push(v);
        let mut v = base.clone();
        v.changes[0].before = "x".into();
        variants.push(v);
        let mut v = base.clone();
        v.changes.clear();
        variants.push(v);
        let mut v = base.clone();
        v.reason.push('.');
        variants.push(v);
        let mut v = base.clone();
        v.prev = GENESIS_PREV.into();
        variants.push(v);
        for v in variants {
            assert_ne!(v.computed_hash().unwrap(), base.hash, "{v:?}");
        }
        let mut v = base.clone();
        v.prev = v.prev.to_uppercase();
        assert_eq!(v.computed_hash(), None, "prev must be lowercase hex");
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_leads_recent_events_come_from_the_by_lead_index_also_for_old_stores() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        for i in 1..=10 {
            store.audit(draft(i % 3)).await.unwrap();
        }
        // Seqs 3, 6, 9 name lead 0; 1, 4, 7, 10 lead 1; 2, 5, 8 lead 2.
        let seqs = |store: &Store, lead, upto, limit| -> Vec<u64> {
            store
                .audit_of_lead(lead, upto, limit)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect()
        };
        assert_eq!(seqs(&store, 1, u64::MAX, 10), [10, 7, 4, 1], "newest first");
        assert_eq!(
            seqs(&store, 1, 8, 2),
            [7, 4],
            "up to a seq, at most a limit"
        );
        assert_eq!(store.audit_lead_head(2).unwrap(), 8);
        assert_eq!(store.audit_lead_head(99).unwrap(), 0);
        // A store written before the index (the table emptied, the mark
        // gone) is indexed again at open.
        store
            .write(|txn| {
                txn.delete_table(AUDIT_BY_LEAD)?;
                txn.open_table(META)?.remove(BY_LEAD_KEY)?;
                Ok(())
            })
            .await
            .unwrap();
        store.close();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(seqs(&store, 1, u64::MAX, 10), [10, 7, 4, 1]);
        store.audit(draft(1)).await.unwrap();
        assert_eq!(store.audit_lead_head(1).unwrap(), 11, "and kept up after");
        // Events of no lead (a login, a compaction) keep it complete.
        store
            .audit(AuditDraft {
                lead: None,
                ..draft(5)
            })
            .await
            .unwrap();
        store.audit(draft(1)).await.unwrap();
        assert_eq!(store.audit_lead_head(1).unwrap(), 13);
    }

    #[tokio::test]
    async fn audit_events_chain_and_verify() {
        let (_dir, store) = store();
        assert_eq!(
            store.audit_verify().unwrap(),
            VerifyReport {
                events: 0,
                first_bad: None,
                checkpoint: None,
            }
        );
        let mut last = GENESIS_PREV.to_owned();
        for i in 1..=20 {
            let ev = store.audit(draft(i)).await.unwrap();
            assert_eq!(ev.seq, i);
            assert_eq!(ev.prev, last);
            assert_eq!(ev.computed_hash().as_deref(), Some(ev.hash.as_str()));
            last = ev.hash;
        }
        let report = store.audit_verify().unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.events, 20);
    }

    #[tokio::test]
    async fn audit_event_commits_with_the_change_it_records_or_not_at_all() {
        let (_dir, store) = store();
        store.audit(draft(1)).await.unwrap();
        let refused = store
            .write(|txn| {
                append(txn, &draft(2))?;
                txn.open_table(META)?.insert("lead_x", b"1".as_slice())?;
                Err::<(), _>(StoreError::corrupt("test", "the change failed"))
            })
            .await;
        assert!(refused.is_err());
        let ev = store
            .write(|txn| {
                txn.open_table(META)?.insert("lead_y", b"1".as_slice())?;
                append(txn, &draft(3))
            })
            .await
            .unwrap();
        assert_eq!(ev.seq, 2, "the rolled-back event left no gap");
        let mut seen = Vec::new();
        store
            .audit_events(&AuditFilter::default(), |e| {
                seen.push(e.lead);
                true
            })
            .unwrap();
        assert_eq!(seen, [Some(1), Some(3)]);
        assert!(store.audit_verify().unwrap().is_ok());
    }

    #[tokio::test]
    async fn audit_concurrent_appends_form_one_chain() {
        let (_dir, store) = store();
        let tasks: Vec<_> = (1..=300)
            .map(|i| {
                let s = store.clone();
                tokio::spawn(async move { s.audit(draft(i)).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let report = store.audit_verify().unwrap();
        assert_eq!(report.events, 300);
        assert!(report.is_ok(), "{report:?}");
    }

    #[tokio::test]
    async fn audit_filter_selects_by_time_lead_actor_and_action() {
        let (_dir, store) = store();
        for i in 1..=10 {
            store.audit(draft(i)).await.unwrap();
        }
        let collect = |filter: AuditFilter| {
            let mut out = Vec::new();
            store
                .audit_events(&filter, |e| {
                    out.push(e.seq);
                    true
                })
                .unwrap();
            out
        };
        assert_eq!(
            collect(AuditFilter {
                actor: Some("bob".into()),
                ..Default::default()
            }),
            [1, 3, 5, 7, 9]
        );
        assert_eq!(
            collect(AuditFilter {
                lead: Some(4),
                ..Default::default()
            }),
            [4]
        );
        assert_eq!(
            collect(AuditFilter {
                since_ms: Some(1_780_000_000_008),
                actor: Some("alice".into()),
                ..Default::default()
            }),
            [8, 10]
        );
        assert_eq!(
            collect(AuditFilter {
                action_prefix: Some("auth.".into()),
                ..Default::default()
            }),
            Vec::<u64>::new()
        );
        let mut first_two = Vec::new();
        store
            .audit_events(&AuditFilter::default(), |e| {
                first_two.push(e.seq);
                first_two.len() < 2
            })
            .unwrap();
        assert_eq!(first_two, [1, 2]);
    }

    /// Rewrites the stored bytes of one event, bypassing the chain.
    async fn tamper(
        store: &Store,
        f: impl FnMut(&WriteTxn) -> Result<(), StoreError> + Send + 'static,
    ) {
        store.write(f).await.unwrap();
    }

    #[tokio::test]
    async fn a_corrupt_audit_record_is_reported_not_a_panic() {
        let (_dir, store) = store();
        for i in 1..=5 {
            store.audit(draft(i)).await.unwrap();
        }
        tamper(&store, |txn| {
            txn.open_table(AUDIT)?
                .insert(3, b"\xff{not json".as_slice())?;
            Ok(())
        })
        .await;
        let report = store.audit_verify().unwrap();
        assert_eq!(report.events, 2);
        let (seq, what) = report.first_bad.unwrap();
        assert_eq!(seq, 3);
        assert!(what.contains("not a valid event"), "{what}");
        let err = store
            .audit_events(&AuditFilter::default(), |_| true)
            .unwrap_err();
        assert!(err.to_string().contains("audit 3"), "{err}");
    }

    #[tokio::test]
    async fn audit_head_problems_are_named() {
        let (_dir, store) = store();
        for i in 1..=4 {
            store.audit(draft(i)).await.unwrap();
        }
        // An extra record past the head.
        let extra = store
            .read(|txn| {
                let t = txn.open_table(AUDIT)?;
                let v = t.get(4)?.unwrap();
                Ok(v.value().to_vec())
            })
            .unwrap();
        tamper(&store, move |txn| {
            txn.open_table(AUDIT)?.insert(5, extra.as_slice())?;
            Ok(())
        })
        .await;
        let (seq, what) = store.audit_verify().unwrap().first_bad.unwrap();
        assert_eq!(seq, 5, "{what}");
        // Appending now refuses rather than overwrite seq 5.
        assert!(store.audit(draft(9)).await.is_err());
        tamper(&store, |txn| {
            txn.open_table(AUDIT)?.remove(5)?;
            txn.open_table(META)?.remove(HEAD_KEY)?;
            Ok(())
        })
        .await;
        let (seq, what) = store.audit_verify().unwrap().first_bad.unwrap();
        assert_eq!(seq, 1);
        assert!(what.contains("no chain head"), "{what}");
    }

    #[tokio::test]
    async fn a_read_only_store_reads_and_refuses_writes() {
        let (dir, store) = store();
        store.audit(draft(1)).await.unwrap();
        let ro = Store::open_read_only(&dir.path().join("s.redb")).unwrap();
        assert!(!ro.is_writable());
        assert_eq!(ro.audit_verify().unwrap().events, 1);
        store.audit(draft(2)).await.unwrap();
        assert_eq!(
            ro.audit_verify().unwrap().events,
            2,
            "a read-only handle follows the writer's commits"
        );
        let err = ro.audit(draft(3)).await.unwrap_err();
        assert!(matches!(err, StoreError::ReadOnly { .. }), "{err}");
        assert!(err.to_string().contains("read-only"), "{err}");
    }

    #[tokio::test]
    async fn new_events_are_version_two_and_their_hash_recomputes() {
        let (_d, store) = v2_store_with_mail_events().await;
        let mut all = Vec::new();
        store
            .audit_events(&AuditFilter::default(), |e| {
                all.push(e.clone());
                true
            })
            .unwrap();
        assert_eq!(all.len(), 4);
        for e in &all {
            assert_eq!(e.v, 2);
            assert!(e.pd.is_some());
            assert_eq!(e.computed_hash().as_deref(), Some(e.hash.as_str()));
        }
        assert!(store.audit_verify().unwrap().is_ok());
    }

    #[tokio::test]
    async fn erasing_keeps_the_chain_and_editing_anything_else_is_named() {
        let (_d, store) = v2_store_with_mail_events().await;
        let mut ev = None;
        store
            .audit_events(&AuditFilter::default(), |e| {
                if e.seq == 2 {
                    ev = Some(e.clone());
                }
                true
            })
            .unwrap();
        let mut ev = ev.unwrap();
        assert!(erase_personal_data(&mut ev, "carol@example.com").unwrap());
        assert_eq!(ev.reason, ERASED);
        assert!(!serde_json::to_string(&ev)
            .unwrap()
            .to_lowercase()
            .contains("carol"));
        // An erased event still gives its stored hash.
        assert_eq!(ev.computed_hash().as_deref(), Some(ev.hash.as_str()));
        put(&store, 2, &ev).await;
        assert!(store.audit_verify().unwrap().is_ok());

        // The erased event's action is still covered.
        let mut bad = ev.clone();
        bad.action = "lead.delete".into();
        put(&store, 2, &bad).await;
        let r = store.audit_verify().unwrap();
        assert_eq!(r.first_bad.as_ref().map(|b| b.0), Some(2), "{r:?}");
        assert!(r.first_bad.unwrap().1.contains("edited"));

        // Personal data put back into an erased event is named.
        let mut bad = ev.clone();
        bad.reason = "something else".into();
        put(&store, 2, &bad).await;
        let r = store.audit_verify().unwrap();
        assert_eq!(r.first_bad.as_ref().map(|b| b.0), Some(2), "{r:?}");

        // Un-erased personal data that no longer matches its digest is named.
        put(&store, 2, &ev).await;
        let mut other = None;
        store
            .audit_events(&AuditFilter::default(), |e| {
                if e.seq == 3 {
                    other = Some(e.clone());
                }
                true
            })
            .unwrap();
        let mut other = other.unwrap();
        other.reason = "rewritten".into();
        put(&store, 3, &other).await;
        let r = store.audit_verify().unwrap();
        let (seq, what) = r.first_bad.unwrap();
        assert_eq!(seq, 3);
        assert!(what.contains("digest"), "{what}");
    }

    #[test]
    fn a_version_one_event_mentioning_the_address_refuses_erasure() {
        let mut ev = sample();
        ev.reason = "from carol@example.com".into();
        assert_eq!(
            erase_personal_data(&mut ev, "carol@example.com"),
            Err(EraseError::VersionOne { seq: 3 })
        );
        // Not mentioned: nothing to do, no refusal.
        assert_eq!(erase_personal_data(&mut ev, "dave@example.com"), Ok(false));
    }
}
