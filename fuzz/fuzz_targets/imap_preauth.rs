//! Arbitrary bytes into an IMAP session before login: what a stranger on
//! the network can send (LOGIN and AUTHENTICATE with any literals, STARTTLS
//! on a plaintext listener, any command in the wrong state, a trickle of
//! half-commands). The session must answer and end without panicking or hanging.
#![no_main]

#[path = "common/duplex.rs"]
mod duplex;

#[path = "common/imap.rs"]
mod imap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imap::run_session([data, b"\r\nz LOGOUT\r\n".as_slice()].concat());
});
