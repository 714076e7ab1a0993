//! Sockets: the accept loop with connection limits, TLS configs, and the
//! plain-or-TLS stream type.

pub mod listener;
pub mod notify;
pub mod sessions;
pub mod stream;
pub mod tls;
