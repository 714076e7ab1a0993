//! The pure core of the lead engine: the lead model and the rules that move
//! it. Nothing in here reads a clock, a socket or the store: time is always a
//! parameter (unix seconds), and every decision is a function of its inputs.
//!
//! - [`calendar`]: business days, business hours, time zones and holidays.
//! - [`threading`]: which lead a message belongs to.
//! - [`rules`]: the `[leads]` config section: categories, value signals,
//!   assignment.
//! - [`engine`]: state transitions on a [`Lead`], each returning the new lead
//!   and the [`engine::Change`]s for the audit log.
//!
//! The lead model itself lives in [`crate::model`] (a leaf every module may
//! use); it is re-exported here.

pub mod book;
pub mod calendar;
pub mod card;
pub mod classify;
pub mod commands;
pub mod engine;
pub mod held;
pub mod ingest;
pub mod parse;
pub mod queues;
pub mod rules;
pub mod scheduler;
pub mod threading;

mod amounts;
mod text;

pub use crate::model::*;
pub use text::header_safe_address;
