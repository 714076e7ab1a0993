//! Arbitrary bytes into a fresh SMTP submission session, from the first
//! byte: greeting, HELO/EHLO, AUTH PLAIN and LOGIN with initial responses
//! and continuation lines, SASL decoding, `*` cancels, failed-login limits,
//! and every command refused before a login. Same world and checks as
//! `smtp_session` (see `common/smtp.rs`); a login that succeeds goes on into
//! the transaction states.
//!
//! Slow by construction: a login for a user that does not exist verifies a
//! fixed argon2id hash (19 MiB, t=2, `DUMMY_HASH` in src/auth.rs) so that
//! unknown names cost as much as known ones, and the fuzzer makes up names
//! all the time. Kept apart from `smtp_session` so those runs stay fast.
#![no_main]

#[path = "common/duplex.rs"]
mod duplex;

#[path = "common/smtp.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::run(data, false));
