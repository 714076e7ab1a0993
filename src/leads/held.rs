//! Held replies as the rest of the gateway sees them: which upstream
//! message (the readable copy) is which held reply (`HeldMark`, kept by the
//! lead book for views), and the desk that decides on them (`HeldDesk`,
//! implemented by the SMTP side, which relays; asked by IMAP when the owner
//! or a manager moves a held message into `Held/Release` or
//! `Held/Discard`).

use std::{future::Future, pin::Pin};

use crate::{auth::Principal, model::LeadId};

/// A held reply's readable copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldMark {
    pub id: u64,
    pub sender: String,
    pub lead: LeadId,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Decisions on held replies. `Ok` carries a sentence for the person,
/// `Err` why nothing happened.
pub trait HeldDesk: Send + Sync {
    /// Relays the held reply (once), records it on its lead and files it in
    /// the shared Sent.
    fn release<'a>(&'a self, id: u64, by: &'a Principal) -> BoxFuture<'a, Result<String, String>>;
    /// Drops the held reply without sending it.
    fn discard<'a>(&'a self, id: u64, by: &'a Principal) -> BoxFuture<'a, Result<String, String>>;
}
