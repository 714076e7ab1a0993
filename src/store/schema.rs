//! Every redb table, in one place. A schema change is a new table name
//! (`_v2`) plus a copy at open, never an in-place reinterpretation.

use super::changes::WriteTxn;
use redb::{Key, MultimapTableDefinition, ReadableTable, TableDefinition, Value};

use super::StoreError;

/// Small named values: counters, the schema version.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Users by login name; value is a JSON `users::User`.
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users_v1");

/// Upstream mailboxes by name; value is a JSON `messages::MailboxRecord`.
pub const MAILBOXES: TableDefinition<&str, &[u8]> = TableDefinition::new("mailboxes_v1");

/// Message index: key `(generation << 32) | upstream uid`, value a binary
/// `messages::MessageRecord`. The generation changes with UIDVALIDITY.
pub const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages_v1");

/// Raw header block of each indexed message, same key as MESSAGES. Read on
/// demand (HEADER fetches, lead ingest), never loaded whole.
pub const HEADERS: TableDefinition<u64, &[u8]> = TableDefinition::new("headers_v1");

/// Cached message bodies, same key as MESSAGES; bounded by the configured
/// budget (META `body_cache_bytes` holds the total), oldest evicted first.
pub const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("bodies_v1");

/// Leads by id; value is a JSON `leads::Lead`.
pub const LEADS: TableDefinition<u64, &[u8]> = TableDefinition::new("leads_v1");

/// Message-ID (with angle brackets) -> the lead whose thread it is in.
pub const THREAD_IDS: TableDefinition<&str, u64> = TableDefinition::new("thread_ids_v1");

/// `normalized subject \0 counterpart address` -> leads, for the subject
/// fallback of threading.
pub const THREAD_SUBJECTS: MultimapTableDefinition<&str, u64> =
    MultimapTableDefinition::new("thread_subjects_v1");

/// Message key (as in MESSAGES) -> its lead. A message with an entry has
/// been ingested; ingest is exactly once per key.
pub const MESSAGE_LEADS: TableDefinition<u64, u64> = TableDefinition::new("message_leads_v1");

/// Company domain -> the owner of its most recent owned lead.
pub const DOMAIN_OWNERS: TableDefinition<&str, &str> = TableDefinition::new("domain_owners_v1");

/// The audit chain: sequence number (from 1, no gaps) -> JSON
/// `audit::AuditEvent`. Append-only; META `audit_head` holds the last
/// sequence number and hash (see `audit`).
pub const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_v1");

/// Virtual folders by key (`*:Leads/Unassigned`, `alice:Leads/Mine`);
/// value is a JSON `views::ViewRecord` (id, UIDVALIDITY, next UID).
pub const VIEWS: TableDefinition<&str, &[u8]> = TableDefinition::new("views_v1");

/// Virtual folder membership: `(view id << 32) | view UID` -> message key.
/// UIDs are allocated once and never reused.
pub const VIEW_UIDS: TableDefinition<u64, u64> = TableDefinition::new("view_uids_v1");

/// Support-handoff messages waiting to be forwarded to
/// `leads.support_forward_to`: message key -> lead. Written with the lead,
/// removed with the `lead.forward` audit event once the relay took it.
pub const SUPPORT_FORWARDS: TableDefinition<u64, u64> = TableDefinition::new("support_forwards_v1");

/// Submissions relayed recently (`store::sent`): SHA-256 of user,
/// recipients and Message-ID -> 8 bytes LE unix ms + 1 byte stage.
pub const SENT_SUBMISSIONS: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("sent_submissions_v1");

/// Copies of relayed submissions waiting to be filed in the shared Sent
/// (`store::sent`): same key as SENT_SUBMISSIONS -> 8 bytes LE lead id
/// (0: none), 2 bytes LE user length, user, message.
pub const SENT_COPIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sent_copies_v1");

/// Mail leadgate owes people (`store::notices`): id -> JSON `Notice`.
/// Written in the transaction that decides it (an escalation), removed
/// with its audit event once the relay took it. META `notice_next_id`.
pub const NOTICES: TableDefinition<u64, &[u8]> = TableDefinition::new("notices_v1");

/// What kind of mail a shared message is, when it is not a person's
/// (`store::leads`): message key -> 1 auto-reply, 2 bounce.
pub const MESSAGE_MARKS: TableDefinition<u64, u8> = TableDefinition::new("message_marks_v1");

/// Replies the owner rule held (`store::held`): id -> JSON `HeldReply`;
/// their messages, ready to relay, in HELD_BODIES under the same id.
/// META `held_next_id`.
pub const HELD: TableDefinition<u64, &[u8]> = TableDefinition::new("held_v1");
pub const HELD_BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("held_bodies_v1");

/// Folders a user unsubscribed (`store::subscriptions`): key
/// `user \0 folder`, empty value. Everything else is subscribed.
pub const UNSUBSCRIBED: TableDefinition<&str, &[u8]> = TableDefinition::new("unsubscribed_v1");
/// Per-user read state (`store::seen`): `(user, mailbox generation)` ->
/// the UIDs whose `\Seen` differs from the baseline, as runs (8 bytes
/// each: first, last UID, LE). The user `*` holds the baseline itself;
/// META `seen_baseline` says it was taken.
pub const SEEN: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("seen_v1");

/// Messages of the shared mailbox that `contact erase` took out of the
/// index (`store::erase`): message key -> unix ms of the erasure. The sync
/// never indexes them again (the mail stays on the upstream).
pub const ERASED_MESSAGES: TableDefinition<u64, i64> = TableDefinition::new("erased_messages_v1");

/// CONDSTORE modseqs (`store::modseq`): (user, folder) -> (UIDVALIDITY,
/// HIGHESTMODSEQ) ...
pub const MODSEQ_HEADS: TableDefinition<(&str, &str), (u32, u64)> =
    TableDefinition::new("modseq_heads_v1");
/// ... and (user, folder, UID) -> (digest of the flags last shown, modseq).
pub const MODSEQ_ROWS: TableDefinition<(&str, &str, u32), (u64, u64)> =
    TableDefinition::new("modseq_rows_v1");

pub const SCHEMA_VERSION: u64 = 1;

/// Something done to every table in turn, with each table's own types (a
/// backup's copy, the catch-up of a rewritten file).
pub trait EachTable {
    fn table<K: Key + 'static, V: Value + 'static>(
        &mut self,
        def: TableDefinition<K, V>,
    ) -> Result<(), StoreError>;
    fn multimap<K: Key + 'static, V: Key + 'static>(
        &mut self,
        def: MultimapTableDefinition<K, V>,
    ) -> Result<(), StoreError>;
}

/// Runs `each` over every table above; the names it was given are
/// [`TABLE_COUNT`] long. A new table goes here too, or a backup refuses
/// the store that has it.
pub fn each_table(each: &mut impl EachTable) -> Result<(), StoreError> {
    each.table(META)?;
    each.table(USERS)?;
    each.table(MAILBOXES)?;
    each.table(MESSAGES)?;
    each.table(HEADERS)?;
    each.table(BODIES)?;
    each.table(LEADS)?;
    each.table(THREAD_IDS)?;
    each.multimap(THREAD_SUBJECTS)?;
    each.table(MESSAGE_LEADS)?;
    each.table(DOMAIN_OWNERS)?;
    each.table(AUDIT)?;
    each.table(AUDIT_BY_LEAD)?;
    each.table(VIEWS)?;
    each.table(VIEW_UIDS)?;
    each.table(SUPPORT_FORWARDS)?;
    each.table(SENT_SUBMISSIONS)?;
    each.table(SENT_COPIES)?;
    each.table(NOTICES)?;
    each.table(MESSAGE_MARKS)?;
    each.table(HELD)?;
    each.table(HELD_BODIES)?;
    each.table(SEEN)?;
    each.table(OUTBOX)?;
    each.table(OUTBOX_BODIES)?;
    each.table(UNSUBSCRIBED)?;
    each.table(ERASED_MESSAGES)?;
    each.table(MODSEQ_HEADS)?;
    each.table(MODSEQ_ROWS)?;
    Ok(())
}

pub fn create_all(txn: &WriteTxn) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    if meta.get("schema_version")?.is_none() {
        meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
    }
    drop(meta);
    txn.open_table(USERS)?;
    txn.open_table(MAILBOXES)?;
    txn.open_table(MESSAGES)?;
    txn.open_table(HEADERS)?;
    txn.open_table(BODIES)?;
    txn.open_table(LEADS)?;
    txn.open_table(THREAD_IDS)?;
    txn.open_multimap_table(THREAD_SUBJECTS)?;
    txn.open_table(MESSAGE_LEADS)?;
    txn.open_table(DOMAIN_OWNERS)?;
    txn.open_table(AUDIT)?;
    txn.open_table(AUDIT_BY_LEAD)?;
    txn.open_table(VIEWS)?;
    txn.open_table(VIEW_UIDS)?;
    txn.open_table(SUPPORT_FORWARDS)?;
    txn.open_table(SENT_SUBMISSIONS)?;
    txn.open_table(SENT_COPIES)?;
    txn.open_table(NOTICES)?;
    txn.open_table(MESSAGE_MARKS)?;
    txn.open_table(HELD)?;
    txn.open_table(HELD_BODIES)?;
    txn.open_table(UNSUBSCRIBED)?;
    txn.open_table(SEEN)?;
    txn.open_table(ERASED_MESSAGES)?;
    txn.open_table(MODSEQ_HEADS)?;
    txn.open_table(MODSEQ_ROWS)?;

    txn.open_table(OUTBOX)?;
    txn.open_table(OUTBOX_BODIES)?;
    Ok(())
}

/// Reads a little-endian u64 counter from META.
pub fn meta_u64(
    table: &impl redb::ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<u64>, StoreError> {
    Ok(match table.get(key)? {
        Some(v) => {
            let b: [u8; 8] = v
                .value()
                .try_into()
                .map_err(|_| StoreError::corrupt(format!("meta.{key}"), "not 8 bytes"))?;
            Some(u64::from_le_bytes(b))
        }
        None => None,
    })
}

/// The audit log by lead (`store::audit`): (lead id, seq) of every event
/// that names a lead, so a lead's recent events (its card) are a range
/// read, not a walk over the whole log. META `audit_by_lead_upto` holds the
/// sequence number up to which it is complete; events written by an older
/// version are indexed at open.
pub const AUDIT_BY_LEAD: TableDefinition<(u64, u64), ()> = TableDefinition::new("audit_by_lead_v1");

/// The direct-delivery queue (`smtp::queue`): entry id -> JSON
/// `queue::QueueEntry` (envelope, pending recipients, attempts, next
/// attempt). META `outbox_next_id` holds the next id; ids are never reused.
pub const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox_v1");

/// Queued message bodies, same key as OUTBOX; written and removed with
/// their entry, so a reschedule never rewrites the body.
pub const OUTBOX_BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox_bodies_v1");
