//! The write transaction as the rest of the crate sees it. Code outside
//! `store` never touches redb: it asks [`Store::change`] for a [`Tx`] and
//! calls these methods, which take and return domain values. Everything a
//! closure does through one `Tx` commits together (the lead engine records
//! a lead, its indexes, the audit event and the SMTP gateway's record of a
//! relayed reply in one commit).
//!
//! A closure given to `change` may run more than once (a failed batch is
//! retried job by job), so it must be idempotent.

use super::changes::WriteTxn;
use serde::{de::DeserializeOwned, Serialize};

use super::{
    audit::{self, AuditDraft, AuditEvent},
    held::{self, HeldReply},
    leads as db, notices,
    notices::Notice,
    outbox,
    sent::{self, Stage},
    Store, StoreError,
};
use crate::model::{Lead, LeadId, MessageMark, ThreadLookup};

/// One write transaction, lent to a closure by [`Store::change`].
pub struct Tx<'a> {
    txn: &'a WriteTxn,
}

impl<'a> Tx<'a> {
    pub(in crate::store) fn new(txn: &'a WriteTxn) -> Tx<'a> {
        Tx { txn }
    }

    // Leads and their indexes.

    pub fn lead(&self, id: LeadId) -> Result<Option<Lead>, StoreError> {
        db::get_lead(self.txn, id)
    }
    pub fn put_lead(&self, lead: &Lead) -> Result<(), StoreError> {
        db::put_lead(self.txn, lead)
    }
    /// Allocates the next lead id (never reused).
    pub fn next_lead_id(&self) -> Result<LeadId, StoreError> {
        db::next_lead_id(self.txn)
    }
    pub fn round_robin_cursor(&self) -> Result<u64, StoreError> {
        db::round_robin_cursor(self.txn)
    }
    pub fn set_round_robin_cursor(&self, cursor: u64) -> Result<(), StoreError> {
        db::set_round_robin_cursor(self.txn, cursor)
    }
    /// Bumps the lead revision (readers of the in-memory copy compare it).
    pub fn bump_revision(&self) -> Result<u64, StoreError> {
        db::bump_revision(self.txn)
    }
    pub fn message_lead(&self, key: u64) -> Result<Option<LeadId>, StoreError> {
        db::message_lead(self.txn, key)
    }
    pub fn set_message_lead(&self, key: u64, lead: LeadId) -> Result<(), StoreError> {
        db::set_message_lead(self.txn, key, lead)
    }
    pub fn set_message_mark(&self, key: u64, mark: MessageMark) -> Result<(), StoreError> {
        db::set_message_mark(self.txn, key, mark)
    }
    pub fn thread_lead(&self, message_id: &str) -> Result<Option<LeadId>, StoreError> {
        db::thread_lead(self.txn, message_id)
    }
    pub fn map_thread_id(&self, message_id: &str, lead: LeadId) -> Result<(), StoreError> {
        db::map_thread_id(self.txn, message_id, lead)
    }
    pub fn add_subject(
        &self,
        subject: &str,
        counterpart: &str,
        lead: LeadId,
    ) -> Result<(), StoreError> {
        db::add_subject(self.txn, subject, counterpart, lead)
    }
    pub fn domain_owner(&self, domain: &str) -> Result<Option<String>, StoreError> {
        db::domain_owner(self.txn, domain)
    }
    pub fn set_domain_owner(&self, domain: &str, owner: &str) -> Result<(), StoreError> {
        db::set_domain_owner(self.txn, domain, owner)
    }
    pub fn queue_support_forward(&self, key: u64, lead: LeadId) -> Result<(), StoreError> {
        db::queue_support_forward(self.txn, key, lead)
    }
    /// Threading lookups answered inside this transaction.
    pub fn threads(&self) -> impl ThreadLookup + '_ {
        db::TxnThreads { txn: self.txn }
    }

    // The audit log, notices, held replies.

    pub fn append_audit(&self, draft: &AuditDraft) -> Result<AuditEvent, StoreError> {
        audit::append(self.txn, draft)
    }
    pub fn queue_notice(&self, notice: &Notice) -> Result<u64, StoreError> {
        notices::queue(self.txn, notice)
    }
    pub fn hold(&self, reply: &HeldReply, data: &[u8]) -> Result<u64, StoreError> {
        held::hold(self.txn, reply, data)
    }
    /// Removes a held reply; `None` when it was decided on already.
    pub fn take_held(&self, id: u64) -> Result<Option<HeldReply>, StoreError> {
        held::take(self.txn, id)
    }

    // The record of relayed submissions and their Sent copies.

    pub fn sent_stage(&self, key: &[u8; 32], now_ms: i64) -> Result<Option<Stage>, StoreError> {
        sent::stage(self.txn, key, now_ms)
    }
    pub fn set_sent_stage(
        &self,
        key: &[u8; 32],
        stage: Stage,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sent::set(self.txn, key, stage, now_ms)
    }
    /// Forgets a submission (its relay failed: a retry must relay it).
    pub fn forget_sent(&self, key: &[u8; 32]) -> Result<(), StoreError> {
        sent::forget(self.txn, key)
    }
    /// Forgets submissions older than a week; how many.
    pub fn prune_sent(&self, now_ms: i64) -> Result<usize, StoreError> {
        sent::prune(self.txn, now_ms)
    }
    /// Takes a filed Sent copy off the queue.
    pub fn sent_copy_filed(&self, key: &[u8; 32]) -> Result<(), StoreError> {
        sent::copy_filed(self.txn, key)
    }
    /// Queues the Sent copy of a relayed submission.
    pub fn queue_sent_copy(
        &self,
        key: &[u8; 32],
        user: &str,
        lead: Option<LeadId>,
        data: &[u8],
    ) -> Result<(), StoreError> {
        sent::queue_copy(self.txn, key, user, lead, data)
    }

    // The outbox of `delivery = "direct"`.

    /// Queues an entry with its message; ids are never reused.
    pub fn outbox_insert<E: Serialize>(&self, entry: &E, body: &[u8]) -> Result<u64, StoreError> {
        outbox::insert(self.txn, entry, body)
    }
    pub fn outbox_entry<E: DeserializeOwned>(&self, id: u64) -> Result<Option<E>, StoreError> {
        outbox::load(self.txn, id)
    }
    /// Writes an entry back (`Some`), or removes it and its message.
    pub fn outbox_save<E: Serialize>(&self, id: u64, entry: Option<&E>) -> Result<(), StoreError> {
        outbox::save(self.txn, id, entry)
    }
}

impl Store {
    /// Runs `f` in a write transaction on the writer thread and resolves
    /// once it is durably committed.
    pub async fn change<R: Send + 'static>(
        &self,
        mut f: impl FnMut(&Tx<'_>) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.write(move |txn| f(&Tx::new(txn))).await
    }

    /// `change` without waiting for the disk: the change is visible at
    /// once and on disk with the next durable commit, or lost in a crash
    /// before it (see `write_lazy`).
    pub async fn change_lazy<R: Send + 'static>(
        &self,
        mut f: impl FnMut(&Tx<'_>) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.write_lazy(move |txn| f(&Tx::new(txn))).await
    }

    /// `change` for synchronous callers (the CLI, tests).
    pub fn change_blocking<R: Send + 'static>(
        &self,
        mut f: impl FnMut(&Tx<'_>) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.write_blocking(move |txn| f(&Tx::new(txn)))
    }
}
