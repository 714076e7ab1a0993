//! Arbitrary bytes into an IMAP session's command path, after a real login,
//! with a selected-able INBOX in the index and an upstream that refuses
//! connections (so every upstream-bound command takes its error path).
//! The session must answer and end without panicking, whatever it is fed.
#![no_main]

#[path = "common/duplex.rs"]
mod duplex;

#[path = "common/imap.rs"]
mod imap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imap::run_session(
        [
            b"a LOGIN fuzz fuzzpass\r\nb SELECT INBOX\r\n".as_slice(),
            data,
            b"\r\nz LOGOUT\r\n",
        ]
        .concat(),
    );
});
