//! The sockets' sections: `[[imap.listener]]` and `[[smtp.listener]]`
//! entries, `[tls]` (the listeners' certificate) and `[limits]`.

use std::{net::SocketAddr, path::PathBuf};

use serde::Deserialize;

use crate::section::{credential_path, invalid, Invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    pub tls: ListenerTls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerTls {
    /// TLS from the first byte (port 993 style).
    Implicit,
    /// Plain text until STARTTLS; no login before it.
    Starttls,
    /// No TLS at all and login allowed: only accepted on loopback addresses
    /// (tests, the demo).
    Plaintext,
}

/// Plain text is for loopback only: `section` is `imap` or `smtp`, as the
/// key an admin must fix is named.
pub fn check_plaintext_on_loopback(
    section: &str,
    listeners: &[ListenerConfig],
) -> Result<(), Invalid> {
    for (i, l) in listeners.iter().enumerate() {
        if l.tls == ListenerTls::Plaintext && !l.addr.ip().is_loopback() {
            return Err(invalid(
                format!("{section}.listener[{i}].tls"),
                format!(
                    "\"plaintext\" is only allowed on loopback addresses, not {}; use \"starttls\" or \"implicit\"",
                    l.addr
                ),
            ));
        }
    }
    Ok(())
}

/// TLS listeners need the `[tls]` section.
pub fn check_tls_available(
    section: &str,
    listeners: &[ListenerConfig],
    tls_configured: bool,
) -> Result<(), Invalid> {
    if tls_configured {
        return Ok(());
    }
    match listeners
        .iter()
        .position(|l| l.tls != ListenerTls::Plaintext)
    {
        Some(i) => Err(invalid(
            format!("{section}.listener[{i}].tls"),
            "a TLS listener needs a [tls] section with cert and key",
        )),
        None => Ok(()),
    }
}

/// `[tls]`: the listeners' certificate and key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key; or use `key_credential` for systemd's LoadCredential.
    #[serde(default)]
    pub key: Option<PathBuf>,
    #[serde(default)]
    pub key_credential: Option<String>,
}

impl TlsConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        match (&self.key, &self.key_credential) {
            (Some(_), Some(_)) => Err(invalid(
                "tls.key",
                "set either key or key_credential, not both",
            )),
            (None, None) => Err(invalid("tls.key", "missing (or set key_credential)")),
            _ => Ok(()),
        }
    }

    /// Path of the key: the configured file or the systemd credential.
    pub fn key_path(&self) -> Result<PathBuf, Invalid> {
        if let Some(k) = &self.key {
            return Ok(k.clone());
        }
        let name = self.key_credential.as_deref().unwrap_or_default();
        credential_path(name, "tls.key_credential")
    }
}

/// `[limits]`: connections, timeouts and sizes for the IMAP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default = "d_max_conn")]
    pub max_connections: usize,
    #[serde(default = "d_max_conn_ip")]
    pub max_connections_per_ip: usize,
    #[serde(default = "d_auth_timeout")]
    pub auth_timeout_secs: u64,
    /// RFC 9051 asks for at least 30 minutes; clients re-IDLE every 29.
    #[serde(default = "d_idle_timeout")]
    pub idle_timeout_secs: u64,
    #[serde(default = "d_max_line")]
    pub max_line_bytes: usize,
    #[serde(default = "d_max_literal")]
    pub max_literal_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: d_max_conn(),
            max_connections_per_ip: d_max_conn_ip(),
            auth_timeout_secs: d_auth_timeout(),
            idle_timeout_secs: d_idle_timeout(),
            max_line_bytes: d_max_line(),
            max_literal_bytes: d_max_literal(),
        }
    }
}

impl Limits {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.max_connections == 0 {
            return Err(invalid("limits.max_connections", "must be at least 1"));
        }
        if self.max_connections_per_ip == 0 {
            return Err(invalid(
                "limits.max_connections_per_ip",
                "must be at least 1",
            ));
        }
        if self.max_line_bytes < 1024 {
            return Err(invalid("limits.max_line_bytes", "must be at least 1024"));
        }
        if self.max_literal_bytes < 1024 {
            return Err(invalid("limits.max_literal_bytes", "must be at least 1024"));
        }
        if self.idle_timeout_secs < 60 || self.auth_timeout_secs == 0 {
            return Err(invalid(
                "limits.idle_timeout_secs",
                "idle timeout must be at least 60 seconds and the auth timeout at least 1",
            ));
        }
        Ok(())
    }
}

fn d_max_conn() -> usize {
    20_000
}
fn d_max_conn_ip() -> usize {
    100
}
fn d_auth_timeout() -> u64 {
    60
}
fn d_idle_timeout() -> u64 {
    1860
}
fn d_max_line() -> usize {
    64 * 1024
}
fn d_max_literal() -> u32 {
    50 * 1024 * 1024
}
