//! `[upstream.imap]`: the server that holds the shared mailbox, and the one
//! login only leadgate knows.

use std::path::PathBuf;

use serde::Deserialize;

use crate::{
    secret::Secret,
    section::{host_is_loopback, invalid, read_secret, Invalid},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamTls {
    Implicit,
    Starttls,
    /// Plain IMAP: only accepted when the upstream host is a loopback address.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub imap: UpstreamImapConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamImapConfig {
    pub host: String,
    pub port: u16,
    pub tls: UpstreamTls,
    /// Extra CA certificate (PEM) trusted for the upstream, e.g. a self-signed one.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The shared mailbox's login. Only leadgate knows it.
    pub username: String,
    /// Exactly one of `password`, `password_file`, `password_credential`.
    #[serde(default)]
    pub password: Option<Secret<String>>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Name of a file in `$CREDENTIALS_DIRECTORY` (systemd LoadCredential).
    #[serde(default)]
    pub password_credential: Option<String>,
    /// Connections used for body fetches and flag writes.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Private per-user folders live upstream under `<prefix><delim><user>`.
    #[serde(default = "default_user_prefix")]
    pub user_folder_prefix: String,
    /// Seconds between freshness checks (STATUS of INBOX, the shared Sent and
    /// the private folders sessions have selected, compared with the index):
    /// the longest a change on the upstream can go unseen if IDLE never tells
    /// of it. Also the poll interval when the upstream has no IDLE.
    #[serde(default = "default_poll")]
    pub poll_interval_secs: u64,
    /// Seconds an upstream command may take before the connection is dropped.
    #[serde(default = "default_upstream_timeout")]
    pub timeout_secs: u64,
    /// The shared mailbox's folder of sent replies ("" for none): indexed
    /// with INBOX so replies join their leads.
    #[serde(default = "default_shared_sent")]
    pub shared_sent: String,
}

fn default_shared_sent() -> String {
    "Sent".into()
}
fn default_pool_size() -> usize {
    4
}
fn default_user_prefix() -> String {
    "leadgate-users".into()
}
fn default_poll() -> u64 {
    30
}
fn default_upstream_timeout() -> u64 {
    60
}

impl UpstreamImapConfig {
    pub fn resolve_password(&self) -> Result<Secret<String>, Invalid> {
        if let Some(p) = &self.password {
            return Ok(p.clone());
        }
        read_secret(
            self.password_file.as_deref(),
            self.password_credential.as_deref(),
            "upstream.imap.password_file",
        )
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        let up = self;
        if up.host.is_empty() {
            return Err(invalid("upstream.imap.host", "must not be empty"));
        }
        if up.port == 0 {
            return Err(invalid("upstream.imap.port", "must not be 0"));
        }
        if up.tls == UpstreamTls::None && !host_is_loopback(&up.host) {
            return Err(invalid(
                "upstream.imap.tls",
                format!(
                    "\"none\" sends the shared mailbox password in clear; only allowed for a loopback host, not {}",
                    up.host
                ),
            ));
        }
        if up.username.is_empty() {
            return Err(invalid("upstream.imap.username", "must not be empty"));
        }
        crate::section::one_secret(
            "upstream.imap.password",
            [
                up.password.is_some(),
                up.password_file.is_some(),
                up.password_credential.is_some(),
            ],
        )?;
        if !(1..=64).contains(&up.pool_size) {
            return Err(invalid(
                "upstream.imap.pool_size",
                "must be between 1 and 64",
            ));
        }
        if up.user_folder_prefix.is_empty()
            || up.user_folder_prefix.eq_ignore_ascii_case("INBOX")
            || !up
                .user_folder_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                "upstream.imap.user_folder_prefix",
                "must be a non-empty name of letters, digits, '-' or '_' (and not INBOX)",
            ));
        }
        if up.poll_interval_secs == 0 {
            return Err(invalid(
                "upstream.imap.poll_interval_secs",
                "must be at least 1",
            ));
        }
        if up.timeout_secs == 0 {
            return Err(invalid("upstream.imap.timeout_secs", "must be at least 1"));
        }
        Ok(())
    }
}
