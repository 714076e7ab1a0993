//! Erasing a contact: `leadgate contact erase ADDRESS` (or `--domain
//! DOMAIN`) removes what leadgate holds about a person, so that no trace of
//! the address is left in the store file, while the audit chain still
//! verifies. The mail on the upstream server is not touched.
//!
//! # The steps
//!
//! 1. **Check the target** ([`EraseTarget`]): one address (matched without
//!    ASCII case), or a domain with at least two labels, which matches the
//!    addresses at that domain *and at its subdomains* (`example.com` takes
//!    `carol@example.com` and `dan@eu.example.com`, not
//!    `eve@notexample.com`). A text mentions the target where the address
//!    stands on its own (`jimcarol@example.com` is not `carol@example.com`).
//! 2. **Refuse before changing anything** when the address is a leadgate
//!    user's own, when an audit event names it outside its personal-data
//!    fields (actor, action, field names are covered by the chain), or when
//!    a chain version 1 event mentions it or belongs to one of its leads
//!    (version 1 covers personal data directly; see `audit`).
//! 3. **In one write transaction**: the contact's leads (those whose contact
//!    address is the target) lose the contact's address, name, the
//!    subject, value signals, next action and the text of their notes and
//!    handoff notes (`[erased]`); other leads lose notes or next actions
//!    that mention the target. Every audit event of those leads or
//!    mentioning the target has its personal data erased
//!    (`audit::erase_personal_data_where`, the chain still verifies). The
//!    message index drops the leads' messages and any message whose
//!    envelope, header or cached body mentions the target (recorded in
//!    `ERASED_MESSAGES` so the sync never indexes them again), with their
//!    threading entries; held replies, queued Sent copies, notices,
//!    support forwards and queued outgoing mail of those leads or
//!    mentioning the target are dropped. A `contact.erase` event records
//!    the erasure, naming the target only by a salted hash.
//! 4. **Rewrite the file** (`rewrite`): redb keeps freed pages with
//!    their old bytes, so deleted records would still be readable in the
//!    file. A snapshot taken after the erasure is copied into a fresh file
//!    while writes go on; the rows written meanwhile are then brought over
//!    and the fresh file renamed over the store, which is all the writer
//!    waits for (see `rewrite`). Readers that began before the swap finish
//!    on the old file, which the system frees once the last of them ends.
//!    The erasure sets META `rewrite_pending`, which the fresh file does
//!    not carry: a process that stops in between leaves it set, and the
//!    next `Store::open` rewrites the file before anything else.
//! 5. **Check the bytes**: the new file is searched for the target
//!    ([`file_mentions`]); any hit is reported as an error.

use super::changes::WriteTxn;
use std::{
    collections::{BTreeSet, HashSet},
    fs::File,
    io::Read,
    path::{Path, PathBuf},
};

use redb::{Database, ReadableDatabase, ReadableMultimapTable, ReadableTable};
use sha2::{Digest, Sha256};

use super::{
    audit::{self, AuditChange, AuditDraft, AuditEvent, EraseError, ERASED},
    leads as db,
    messages::MessageRecord,
    schema::*,
    users::User,
    Store, StoreError,
};
use crate::model::{Lead, LeadId};

/// The longest address accepted (RFC 5321's path limit).
const MAX_ADDRESS: usize = 254;
/// The longest domain accepted.
const MAX_DOMAIN: usize = 253;

/// Whom to erase: one address or a whole domain, lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EraseTarget {
    Address(String),
    Domain(String),
}

/// Why a target was not accepted; the sentence is for the admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadTarget(pub String);

fn valid_domain(d: &str) -> Result<(), String> {
    if d.is_empty() {
        return Err("the domain is empty".into());
    }
    if d.len() > MAX_DOMAIN {
        return Err(format!("the domain is longer than {MAX_DOMAIN} characters"));
    }
    for label in d.split('.') {
        let ok = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(
                "a domain label holds other than letters, digits and inner hyphens, or is \
                 empty or longer than 63 (international domains go in their xn-- form)"
                    .into(),
            );
        }
    }
    Ok(())
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~-.".contains(&b)
}

fn is_domain_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

impl EraseTarget {
    /// One address, e.g. `Carol@Example.com` (stored lower case).
    pub fn address(input: &str) -> Result<EraseTarget, BadTarget> {
        let a = input.trim();
        // Errors never repeat the input: they end up in the daemon's log.
        let bad = |why: String| BadTarget(format!("not an address to erase: {why}"));
        if a.is_empty() {
            return Err(BadTarget(
                "give the address to erase, e.g. carol@example.com".into(),
            ));
        }
        if a.len() > MAX_ADDRESS {
            return Err(bad(format!("longer than {MAX_ADDRESS} characters")));
        }
        let Some((local, domain)) = a.rsplit_once('@') else {
            return Err(bad("it has no @ (for a whole domain, use --domain)".into()));
        };
        if local.is_empty() || local.len() > 64 {
            return Err(bad(
                "the part before the @ must have 1 to 64 characters".into()
            ));
        }
        if !local.bytes().all(is_atext) || local.starts_with('.') || local.ends_with('.') {
            return Err(bad(
                "the part before the @ holds characters an address does not have \
                 (quoted local parts are not supported)"
                    .into(),
            ));
        }
        valid_domain(domain).map_err(bad)?;
        Ok(EraseTarget::Address(a.to_ascii_lowercase()))
    }

    /// A domain and its subdomains, e.g. `example.com`.
    pub fn domain(input: &str) -> Result<EraseTarget, BadTarget> {
        let d = input.trim().trim_start_matches('@').trim_end_matches('.');
        if d.is_empty() {
            return Err(BadTarget(
                "give the domain to erase, e.g. --domain example.com".into(),
            ));
        }
        let bad = |why: String| BadTarget(format!("not a domain to erase: {why}"));
        if d.contains('@') {
            return Err(bad(
                "it holds an @ (for one address, leave out --domain)".into()
            ));
        }
        valid_domain(d).map_err(bad)?;
        if !d.contains('.') {
            return Err(bad(
                "a top-level domain alone would erase every contact under it".into(),
            ));
        }
        Ok(EraseTarget::Domain(d.to_ascii_lowercase()))
    }

    /// `address` or `domain`, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            EraseTarget::Address(_) => "address",
            EraseTarget::Domain(_) => "domain",
        }
    }

    fn text(&self) -> &str {
        match self {
            EraseTarget::Address(a) | EraseTarget::Domain(a) => a,
        }
    }

    fn domain_matches(&self, domain: &[u8]) -> bool {
        let EraseTarget::Domain(d) = self else {
            return false;
        };
        let d = d.as_bytes();
        domain.eq_ignore_ascii_case(d)
            || (domain.len() > d.len()
                && domain[domain.len() - d.len() - 1] == b'.'
                && domain[domain.len() - d.len()..].eq_ignore_ascii_case(d))
    }

    /// Whether `addr` (a whole address) is the target or at its domain.
    pub fn matches_address(&self, addr: &str) -> bool {
        let addr = addr.trim();
        match self {
            EraseTarget::Address(a) => addr.eq_ignore_ascii_case(a),
            EraseTarget::Domain(_) => addr
                .rsplit_once('@')
                .is_some_and(|(_, d)| self.domain_matches(d.trim_end_matches('.').as_bytes())),
        }
    }

    /// Whether `text` mentions the target: the address on its own (not
    /// inside a longer one), or an address at the domain or a subdomain.
    pub fn mentioned_in(&self, text: &[u8]) -> bool {
        match self {
            EraseTarget::Address(a) => address_in(text, a.as_bytes()),
            EraseTarget::Domain(_) => memchr::memchr_iter(b'@', text).any(|at| {
                let rest = &text[at + 1..];
                let end = rest
                    .iter()
                    .position(|&b| !is_domain_char(b))
                    .unwrap_or(rest.len());
                let mut dom = &rest[..end];
                while let [head @ .., b'.'] = dom {
                    dom = head;
                }
                self.domain_matches(dom)
            }),
        }
    }

    fn mentioned_in_str(&self, text: &str) -> bool {
        self.mentioned_in(text.as_bytes())
    }
}

/// `needle` (lower case) in `hay` without ASCII case, standing on its own.
/// An address has one `@`, and most text none: the search looks for `@`
/// (quick over a million audit events) and compares around it.
fn address_in(hay: &[u8], needle: &[u8]) -> bool {
    let Some(at) = memchr::memchr(b'@', needle) else {
        return false;
    };
    let n = needle.len();
    for a in memchr::memchr_iter(b'@', hay) {
        let Some(i) = a.checked_sub(at) else {
            continue;
        };
        if i + n > hay.len() {
            break;
        }
        if !hay[i..i + n].eq_ignore_ascii_case(needle) {
            continue;
        }
        let before_ok = i == 0 || !is_atext(hay[i - 1]);
        let after = &hay[i + n..];
        let after_ok = match after {
            [] => true,
            [b, ..] if b.is_ascii_alphanumeric() || *b == b'-' => false,
            [b'.', c, ..] if c.is_ascii_alphanumeric() => false,
            _ => true,
        };
        if before_ok && after_ok {
            return true;
        }
    }
    false
}

/// Why an erasure did not run; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ContactEraseError {
    #[error(transparent)]
    Target(#[from] BadTarget),
    #[error("the {kind} is (or holds) the address of leadgate user {user}; `contact erase` is for contacts (disable the user instead); nothing was changed")]
    TeamMember { kind: &'static str, user: String },
    #[error(
        "not erased: {} audit event(s) that mention the {kind} or belong to its leads were \
         recorded before audit chain version 2 (seq {}), whose hash covers personal data \
         directly, so erasing them would break the chain. Nothing was changed. Once they are \
         older than [audit] retain_days, `leadgate audit compact` moves them into a checkpoint \
         (export them first with --export if they must be kept, and handle that file \
         yourself); then run the erase again",
        seqs.len(), seq_list(seqs)
    )]
    VersionOne { kind: &'static str, seqs: Vec<u64> },
    #[error("not erased: audit event {seq} names the {kind} in its {field}, which the chain covers and erasure cannot replace; nothing was changed")]
    OutsidePersonalData {
        kind: &'static str,
        seq: u64,
        field: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn seq_list(seqs: &[u64]) -> String {
    let mut out: Vec<String> = seqs.iter().take(10).map(|s| s.to_string()).collect();
    if seqs.len() > 10 {
        out.push(format!("and {} more", seqs.len() - 10));
    }
    out.join(", ")
}

/// What an erasure changed.
#[derive(Debug, Clone, Default)]
pub struct EraseOutcome {
    /// The contact's leads, as they are now (for the in-memory lead book).
    pub leads: Vec<Lead>,
    /// Other leads whose notes or next action mentioned the target.
    pub other_leads: Vec<Lead>,
    /// The lead revision the changed leads carry.
    pub revision: u64,
    /// Message keys taken out of the index.
    pub messages: Vec<u64>,
    /// Audit events whose personal data was erased.
    pub events: u64,
    /// Held replies, Sent copies, notices, support forwards and queued
    /// outgoing mail dropped.
    pub queued: u64,
    /// Threading and domain-owner entries dropped.
    pub index_entries: u64,
    /// The `contact.erase` event.
    pub event: Option<AuditEvent>,
}

/// What a rewrite of the store file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteReport {
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Rows (or keys, of a multimap) written during the copy and brought
    /// over after it.
    pub caught_up: u64,
    pub millis: u64,
    /// How long writes waited for it (the catch-up and the swap).
    pub writer_millis: u64,
}

/// META key of the per-store secret that salts the hash naming an erased
/// contact.
const SALT_KEY: &str = "erase_salt";

/// META key set by an erasure and cleared in the rewritten file: if the
/// process dies between the two, `Store::open` rewrites the file first.
pub(super) const REWRITE_PENDING_KEY: &str = "rewrite_pending";

/// The hash that names an erased target in the audit log. Salted with a
/// random secret kept in the store: an unsalted hash of an address can be
/// reversed by hashing candidate addresses (every address of a leaked list,
/// every first.last@company), which would leave the person identifiable in
/// the log; with the salt, checking a guess needs the store itself, and
/// hashes from two stores cannot be matched. It is pseudonymous, not
/// anonymous: whoever holds the store can test whether an address was
/// erased, which is what an admin answering "did you erase me?" needs.
pub fn target_hash(salt: &[u8], target: &EraseTarget) -> String {
    let mut h = Sha256::new();
    h.update(b"leadgate-erase-v1\0");
    h.update((salt.len() as u64).to_be_bytes());
    h.update(salt);
    h.update(target.kind().as_bytes());
    h.update([0u8]);
    h.update(target.text().as_bytes());
    hex::encode(h.finalize())
}

fn salt(txn: &WriteTxn) -> Result<Vec<u8>, StoreError> {
    let mut meta = txn.open_table(META)?;
    if let Some(v) = meta.get(SALT_KEY)? {
        return Ok(v.value().to_vec());
    }
    let fresh: [u8; 32] = rand::random();
    meta.insert(SALT_KEY, fresh.as_slice())?;
    Ok(fresh.to_vec())
}

/// Replaces every piece of the contact's data in their own lead.
fn scrub_own_lead(lead: &mut Lead, target: &EraseTarget) {
    lead.contact_name = None;
    lead.contact_email = ERASED.to_owned();
    lead.subject = ERASED.to_owned();
    lead.value_signals.clear();
    if lead.next_action.is_some() {
        lead.next_action = Some(ERASED.to_owned());
    }
    if matches!(target, EraseTarget::Domain(_)) || target.mentioned_in_str(&lead.company_domain) {
        lead.company_domain = ERASED.to_owned();
    }
    if target.mentioned_in_str(&lead.source) {
        lead.source = ERASED.to_owned();
    }
    for n in &mut lead.notes {
        n.text = ERASED.to_owned();
    }
    for h in &mut lead.handoffs {
        if !h.note.is_empty() {
            h.note = ERASED.to_owned();
        }
    }
}

/// Replaces the free text of another lead that mentions the target.
/// Returns whether anything changed.
fn scrub_mentions(lead: &mut Lead, target: &EraseTarget) -> bool {
    let mut changed = false;
    let mut fix = |s: &mut String| {
        if target.mentioned_in_str(s) {
            *s = ERASED.to_owned();
            changed = true;
        }
    };
    fix(&mut lead.subject);
    fix(&mut lead.source);
    if let Some(n) = &mut lead.next_action {
        fix(n);
    }
    if let Some(n) = &mut lead.contact_name {
        fix(n);
    }
    for n in &mut lead.notes {
        fix(&mut n.text);
    }
    for h in &mut lead.handoffs {
        fix(&mut h.note);
    }
    for s in &mut lead.value_signals {
        fix(s);
    }
    changed
}

/// Steps 2 and 3 of the module docs, in the caller's write transaction.
/// `Ok(Err(_))` is a refusal: nothing was written.
fn erase_in(
    txn: &WriteTxn,
    target: &EraseTarget,
    actor: &str,
    at_ms: i64,
) -> Result<Result<EraseOutcome, ContactEraseError>, StoreError> {
    let mut out = EraseOutcome::default();
    fn refuse(e: ContactEraseError) -> Result<Result<EraseOutcome, ContactEraseError>, StoreError> {
        Ok(Err(e))
    }

    // A leadgate user's own address is not a contact.
    for row in txn.open_table(USERS)?.iter()? {
        let (k, v) = row?;
        let user: User = serde_json::from_slice(v.value())
            .map_err(|e| StoreError::corrupt(format!("user {}", k.value()), e))?;
        if user
            .email
            .as_deref()
            .is_some_and(|e| target.matches_address(e))
        {
            return refuse(ContactEraseError::TeamMember {
                kind: target.kind(),
                user: user.name,
            });
        }
    }

    // The contact's leads, and other leads that mention them.
    let mut own: BTreeSet<LeadId> = BTreeSet::new();
    let mut changed_leads = Vec::new();
    for row in txn.open_table(LEADS)?.iter()? {
        let (k, v) = row?;
        // Either is only so when the stored bytes mention the target
        // (addresses need no JSON escape): most leads are not decoded.
        if !target.mentioned_in(v.value()) {
            continue;
        }
        let mut lead: Lead = serde_json::from_slice(v.value())
            .map_err(|e| StoreError::corrupt(format!("lead {}", k.value()), e))?;
        if target.matches_address(&lead.contact_email) {
            own.insert(lead.id);
            scrub_own_lead(&mut lead, target);
            changed_leads.push((true, lead));
        } else if scrub_mentions(&mut lead, target) {
            changed_leads.push((false, lead));
        }
    }

    // The audit log: refusals first, then the erased events.
    let mut events = Vec::new();
    let mut v1 = Vec::new();
    let (own_seqs, indexed_upto) = audit::seqs_of_leads(txn, &own)?;
    for row in txn.open_table(AUDIT)?.iter()? {
        let (k, v) = row?;
        let seq = k.value();
        let of_own_lead = if seq <= indexed_upto {
            own_seqs.contains(&seq)
        } else {
            !own.is_empty() && json_lead(v.value()).is_some_and(|l| own.contains(&l))
        };
        if !of_own_lead && !target.mentioned_in(v.value()) {
            continue;
        }
        let mut ev: AuditEvent = serde_json::from_slice(v.value())
            .map_err(|e| StoreError::corrupt(format!("audit {seq}"), e))?;
        let outside = if target.mentioned_in_str(&ev.actor) {
            Some("actor")
        } else if target.mentioned_in_str(&ev.action) {
            Some("action")
        } else if ev.changes.iter().any(|c| target.mentioned_in_str(&c.field)) {
            Some("field names")
        } else {
            None
        };
        if let Some(field) = outside {
            return refuse(ContactEraseError::OutsidePersonalData {
                kind: target.kind(),
                seq,
                field,
            });
        }
        let whole = ev.lead.is_some_and(|l| own.contains(&l));
        match audit::erase_personal_data_where(&mut ev, |s| whole || target.mentioned_in_str(s)) {
            Ok(true) => events.push(ev),
            Ok(false) => {}
            Err(EraseError::VersionOne { seq }) => v1.push(seq),
            Err(e @ EraseError::UnknownVersion { .. }) => {
                return Err(StoreError::corrupt(format!("audit {seq}"), e))
            }
        }
    }
    if !v1.is_empty() {
        return refuse(ContactEraseError::VersionOne {
            kind: target.kind(),
            seqs: v1,
        });
    }

    // Nothing refused: write.
    {
        let mut t = txn.open_table(AUDIT)?;
        for ev in &events {
            let bytes = serde_json::to_vec(ev)
                .map_err(|e| StoreError::corrupt(format!("audit {}", ev.seq), e))?;
            t.insert(ev.seq, bytes.as_slice())?;
        }
    }
    out.events = events.len() as u64;
    out.revision = db::bump_revision(txn)?;
    for (is_own, lead) in changed_leads {
        db::put_lead(txn, &lead)?;
        if is_own {
            out.leads.push(lead);
        } else {
            out.other_leads.push(lead);
        }
    }

    // The message index.
    let mut keys: BTreeSet<u64> = BTreeSet::new();
    for row in txn.open_table(MESSAGE_LEADS)?.iter()? {
        let (k, v) = row?;
        if own.contains(&v.value()) {
            keys.insert(k.value());
        }
    }
    for row in txn.open_table(MESSAGES)?.iter()? {
        let (k, v) = row?;
        let rec = MessageRecord::decode(v.value())?;
        let m = &rec.meta;
        let hit = target.mentioned_in(&m.envelope)
            || [&m.message_id, &m.in_reply_to]
                .into_iter()
                .flatten()
                .any(|s| target.mentioned_in_str(s))
            || m.references.iter().any(|s| target.mentioned_in_str(s));
        if hit {
            keys.insert(k.value());
        }
    }
    for table in [HEADERS, BODIES] {
        for row in txn.open_table(table)?.iter()? {
            let (k, v) = row?;
            if target.mentioned_in(v.value()) {
                keys.insert(k.value());
            }
        }
    }
    {
        let mut msgs = txn.open_table(MESSAGES)?;
        let mut headers = txn.open_table(HEADERS)?;
        let mut bodies = txn.open_table(BODIES)?;
        let mut erased = txn.open_table(ERASED_MESSAGES)?;
        let mut freed = 0u64;
        for &key in &keys {
            msgs.remove(key)?;
            headers.remove(key)?;
            if let Some(b) = bodies.remove(key)? {
                freed += b.value().len() as u64;
            }
            erased.insert(key, at_ms)?;
        }
        drop((msgs, headers, bodies, erased));
        super::messages::cache_freed(txn, freed)?;
    }
    out.messages = keys.iter().copied().collect();

    // Threading and owner indexes.
    {
        let mut t = txn.open_table(THREAD_IDS)?;
        let mut gone = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            if own.contains(&v.value()) || target.mentioned_in_str(k.value()) {
                gone.push(k.value().to_owned());
            }
        }
        for k in &gone {
            t.remove(k.as_str())?;
        }
        out.index_entries += gone.len() as u64;
    }
    {
        let mut t = txn.open_multimap_table(THREAD_SUBJECTS)?;
        let mut gone = Vec::new();
        for row in t.iter()? {
            let (k, values) = row?;
            let key = k.value().to_owned();
            let mentions = target.mentioned_in_str(&key);
            for v in values {
                let lead = v?.value();
                if mentions || own.contains(&lead) {
                    gone.push((key.clone(), lead));
                }
            }
        }
        for (k, v) in &gone {
            t.remove(k.as_str(), *v)?;
        }
        out.index_entries += gone.len() as u64;
    }
    if matches!(target, EraseTarget::Domain(_)) {
        let mut t = txn.open_table(DOMAIN_OWNERS)?;
        let mut gone = Vec::new();
        for row in t.iter()? {
            let (k, _) = row?;
            if target.domain_matches(k.value().as_bytes()) {
                gone.push(k.value().to_owned());
            }
        }
        for k in &gone {
            t.remove(k.as_str())?;
        }
        out.index_entries += gone.len() as u64;
    }

    // Mail waiting to go somewhere, about these leads or mentioning them.
    {
        let mut t = txn.open_table(SUPPORT_FORWARDS)?;
        let mut gone = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            if own.contains(&v.value()) {
                gone.push(k.value());
            }
        }
        for &k in &gone {
            t.remove(k)?;
        }
        out.queued += gone.len() as u64;
    }
    {
        let mut t = txn.open_table(SENT_COPIES)?;
        let mut gone = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let v = v.value();
            let lead = v.get(..8).map(u64_from).unwrap_or(0);
            if own.contains(&lead) || target.mentioned_in(v) {
                gone.push(k.value().to_vec());
            }
        }
        for k in &gone {
            t.remove(k.as_slice())?;
        }
        out.queued += gone.len() as u64;
    }
    out.queued += drop_rows(txn, NOTICES, None, |_, v| {
        json_lead(v).is_some_and(|l| own.contains(&l)) || target.mentioned_in(v)
    })?;
    let held_bodies = txn.open_table(HELD_BODIES)?;
    let mut held_hit = HashSet::new();
    for row in held_bodies.iter()? {
        let (k, v) = row?;
        if target.mentioned_in(v.value()) {
            held_hit.insert(k.value());
        }
    }
    drop(held_bodies);
    out.queued += drop_rows(txn, HELD, Some(HELD_BODIES), |id, v| {
        held_hit.contains(&id)
            || json_lead(v).is_some_and(|l| own.contains(&l))
            || target.mentioned_in(v)
    })?;
    let outbox_bodies = txn.open_table(OUTBOX_BODIES)?;
    let mut outbox_hit = HashSet::new();
    for row in outbox_bodies.iter()? {
        let (k, v) = row?;
        if target.mentioned_in(v.value()) {
            outbox_hit.insert(k.value());
        }
    }
    drop(outbox_bodies);
    out.queued += drop_rows(txn, OUTBOX, Some(OUTBOX_BODIES), |id, v| {
        outbox_hit.contains(&id) || target.mentioned_in(v)
    })?;

    txn.open_table(META)?
        .insert(REWRITE_PENDING_KEY, [1u8].as_slice())?;

    // The record of the erasure, naming the target by its salted hash.
    let salt = salt(txn)?;
    let draft = AuditDraft {
        at: at_ms,
        actor: actor.to_owned(),
        action: "contact.erase".into(),
        lead: None,
        changes: vec![AuditChange {
            field: format!("{}_hash", target.kind()),
            before: String::new(),
            after: target_hash(&salt, target),
        }],
        reason: format!(
            "erased {} lead(s) of the contact, notes in {} other lead(s), {} indexed message(s), \
             personal data of {} audit event(s), {} queued item(s)",
            out.leads.len(),
            out.other_leads.len(),
            out.messages.len(),
            out.events,
            out.queued
        ),
    };
    out.event = Some(audit::append(txn, &draft)?);
    Ok(Ok(out))
}

fn u64_from(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    a[..n].copy_from_slice(&b[..n]);
    u64::from_le_bytes(a)
}

/// The `lead` of a JSON record, if it has one.
fn json_lead(bytes: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct L {
        lead: Option<u64>,
    }
    serde_json::from_slice::<L>(bytes).ok()?.lead
}

/// Removes the rows of `table` (and the same keys of `companion`) for
/// which `hit(key, value)` holds; returns how many.
fn drop_rows(
    txn: &WriteTxn,
    table: redb::TableDefinition<u64, &'static [u8]>,
    companion: Option<redb::TableDefinition<u64, &'static [u8]>>,
    mut hit: impl FnMut(u64, &[u8]) -> bool,
) -> Result<u64, StoreError> {
    let mut t = txn.open_table(table)?;
    let mut gone = Vec::new();
    for row in t.iter()? {
        let (k, v) = row?;
        if hit(k.value(), v.value()) {
            gone.push(k.value());
        }
    }
    for &k in &gone {
        t.remove(k)?;
    }
    if let Some(c) = companion {
        let mut c = txn.open_table(c)?;
        for &k in &gone {
            c.remove(k)?;
        }
    }
    Ok(gone.len() as u64)
}

/// Whether an erasure's rewrite of the file is still owed (the process
/// stopped between the two).
pub(super) fn rewrite_pending(db: &Database) -> Result<bool, StoreError> {
    let txn = db.begin_read()?;
    let meta = txn.open_table(META)?;
    let pending = meta.get(REWRITE_PENDING_KEY)?.is_some();
    Ok(pending)
}

/// Whether the file at `path` holds the target anywhere in its bytes (read
/// in chunks that overlap by more than an address, so no match is split).
pub fn file_mentions(path: &Path, target: &EraseTarget) -> std::io::Result<bool> {
    const CHUNK: usize = 8 << 20;
    const OVERLAP: usize = 1024;
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; CHUNK + OVERLAP];
    let mut kept = 0usize;
    loop {
        let n = f.read(&mut buf[kept..])?;
        if n == 0 {
            return Ok(false);
        }
        let len = kept + n;
        if target.mentioned_in(&buf[..len]) {
            return Ok(true);
        }
        kept = OVERLAP.min(len);
        buf.copy_within(len - kept..len, 0);
    }
}

/// What `Store::erase_contact` reports.
#[derive(Debug, Clone)]
pub struct EraseReport {
    pub outcome: EraseOutcome,
    pub rewrite: RewriteReport,
}

impl Store {
    /// Erases a contact (see the module docs): the write, the rewrite of
    /// the file, the check of its bytes. The caller updates what it keeps
    /// in memory from the outcome.
    pub async fn erase_contact(
        &self,
        target: EraseTarget,
        actor: &str,
        at_ms: i64,
    ) -> Result<EraseReport, ContactEraseError> {
        let actor = actor.to_owned();
        let t = target.clone();
        let outcome = self
            .write(move |txn| erase_in(txn, &t, &actor, at_ms))
            .await??;
        let rewrite = self.rewrite_file().await?;
        let path = PathBuf::from(&*self.path);
        let t = target.clone();
        let left = tokio::task::spawn_blocking(move || file_mentions(&path, &t))
            .await
            .map_err(|_| StoreError::WriterGone)?
            .map_err(|e| StoreError::corrupt(format!("read {}", self.path), e))?;
        if left {
            return Err(StoreError::corrupt(
                format!("store {}", self.path),
                format!(
                    "the erasure was made, but the rewritten file still holds the {}: \
                     either mail from it arrived while the file was rewritten (a new \
                     lead: erase again) or this is a bug to report",
                    target.kind()
                ),
            )
            .into());
        }
        Ok(EraseReport { outcome, rewrite })
    }

    /// Message keys `contact erase` took out of the index.
    pub fn erased_messages(&self) -> Result<HashSet<u64>, StoreError> {
        self.read(|txn| {
            let t = match txn.open_table(ERASED_MESSAGES) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(HashSet::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = HashSet::new();
            for row in t.iter()? {
                out.insert(row?.0.value());
            }
            Ok(out)
        })
    }
}

mod rewrite;
pub(super) use rewrite::{rewrite_now, Rewrite};

#[cfg(test)]
mod tests;
