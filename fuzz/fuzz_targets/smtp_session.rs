//! Arbitrary bytes into an SMTP submission session after `EHLO` and a valid
//! `AUTH PLAIN`, so the transaction states (MAIL, RCPT, DATA with
//! dot-unstuffing, BDAT chunks, size and recipient limits, RSET) are
//! reached. Plaintext (loopback-style) listener; logins checked by the real
//! Authenticator over a store in a temporary directory; a handler that
//! accepts every message (see `common/smtp.rs`).
//!
//! The session must end without panicking or hanging, every reply line must
//! be well formed (three digits, then space or dash, CRLF, at most 512
//! octets), and every submission handed over must keep the envelope promises
//! of `leadgate::smtp::Envelope` (the user's own or the shared sender, 1 to
//! `max_recipients` distinct recipients, none refused, data within the
//! size limit).
//!
//! The login itself, and everything before it, is the `smtp_login` target.
#![no_main]

#[path = "common/duplex.rs"]
mod duplex;

#[path = "common/smtp.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::run(data, true));
