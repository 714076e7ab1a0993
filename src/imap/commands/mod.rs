//! IMAP commands, one family per file, as methods on `Session`.

mod append;
mod auth;
mod copy;
mod expunge;
mod fetch;
mod mailbox;
mod search;
mod store;

pub(crate) use fetch::resolve_set;
pub(crate) use store::StoreRequest;
