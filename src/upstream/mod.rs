//! Everything that talks to the upstream IMAP server: the client connection,
//! the sync watcher, the freshness check and the pool used by sessions.

pub mod config;
pub mod conn;
pub mod framer;
pub mod freshness;
pub mod pool;
pub mod sync;

use std::sync::Arc;

use crate::{secret::Secret, upstream::config::UpstreamImapConfig};
use conn::{Conn, UpstreamError};

/// How to reach and log in to the upstream with the shared account.
pub struct Upstream {
    pub cfg: UpstreamImapConfig,
    password: Secret<String>,
    tls: Arc<rustls::ClientConfig>,
}

impl Upstream {
    pub fn new(
        cfg: UpstreamImapConfig,
        password: Secret<String>,
        tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        Upstream { cfg, password, tls }
    }

    pub async fn connect(&self) -> Result<Conn, UpstreamError> {
        Conn::connect(&self.cfg, &self.password, &self.tls).await
    }
}
