//! The one TOML file: typed with serde, defaults for everything that has a
//! sane one, and `validate()` run before any port is bound. Errors name the
//! key so an admin can find the line.
//!
//! Each section belongs to the module that uses it and is composed here:
//! `[upstream]` (upstream), `[store]` (store), `[tls]`, `[limits]` and the
//! listener entries (net), `[auth]` (auth), `[leads]` and `[views]`
//! (leads), `[smtp]` (smtp). The few sections that only the modules above
//! this one read — `[server]`, `[imap]`'s listener list, `[metrics]`,
//! `[admin]`, `[digest]` — are defined here, since those modules take the
//! composed `Config` (defining them in imap or admin would make a cycle).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;

pub use crate::{
    auth::AuthConfig,
    leads::queues::{InboxAccess, ViewsConfig},
    net::config::{Limits, ListenerConfig, ListenerTls, TlsConfig},
    section::{read_secret, Invalid},
    smtp::config as smtp,
    store::config::{AuditConfig, StoreConfig},
    upstream::config::{UpstreamConfig, UpstreamImapConfig, UpstreamTls},
};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Leads(#[from] crate::leads::rules::RulesError),
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    crate::section::invalid(key, reason).into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub imap: ImapConfig,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    pub upstream: UpstreamConfig,
    pub store: StoreConfig,
    /// Audit retention (`[audit] retain_days`, `export_dir`).
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub leads: crate::leads::rules::LeadsConfig,
    #[serde(default)]
    pub smtp: smtp::SmtpConfig,
    #[serde(default)]
    pub views: ViewsConfig,
    /// Prometheus /metrics and /healthz over plain HTTP (no auth: keep it
    /// on loopback or a private network). Absent: not served.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// The local admin socket of the running daemon (`leadgate user ...`,
    /// `leadgate lead assign ...` talk to it).
    #[serde(default)]
    pub admin: AdminConfig,
    /// The managers' daily review mail.
    #[serde(default)]
    pub digest: DigestConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Name used in greetings and generated addresses.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// Seconds a shutdown waits for sessions to finish before closing them.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            hostname: default_hostname(),
            shutdown_grace_secs: default_grace(),
        }
    }
}

fn default_hostname() -> String {
    "leadgate".into()
}
fn default_grace() -> u64 {
    10
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
}

impl Config {
    /// Reads, parses and validates. Nothing is bound or opened here.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        // One shared address: `[leads] shared_address` unless SMTP says.
        if config.smtp.shared_address.is_empty() {
            config.smtp.shared_address = config.leads.shared_address.clone();
        }

        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.hostname.is_empty() {
            return Err(invalid("server.hostname", "must not be empty"));
        }
        if self.imap.listeners.is_empty() {
            return Err(invalid(
                "imap.listener",
                "at least one [[imap.listener]] is needed",
            ));
        }
        crate::net::config::check_plaintext_on_loopback("imap", &self.imap.listeners)?;
        crate::net::config::check_tls_available("imap", &self.imap.listeners, self.tls.is_some())?;
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        self.upstream.imap.validate()?;
        self.limits.validate()?;
        self.audit.validate()?;
        self.leads.validate()?;
        self.smtp.validate()?;
        self.smtp.check_tls_available(self.tls.is_some())?;
        if !self.smtp.listeners.is_empty() {
            self.smtp.check_delivery()?;
        }
        if self.auth.max_failures == 0 {
            return Err(invalid("auth.max_failures", "must be at least 1"));
        }
        if self.auth.max_failures_per_source < self.auth.max_failures {
            return Err(invalid(
                "auth.max_failures_per_source",
                "must be at least auth.max_failures",
            ));
        }
        if self.auth.max_failures_per_user < self.auth.max_failures {
            return Err(invalid(
                "auth.max_failures_per_user",
                "must be at least auth.max_failures",
            ));
        }
        if self.auth.argon2_memory_kib < 8 || self.auth.argon2_iterations == 0 {
            return Err(invalid(
                "auth.argon2_memory_kib",
                "argon2 needs at least 8 KiB and 1 iteration",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Unix socket of the running daemon, created mode 0600 (only the
    /// daemon's user, and root, may connect). Its directory must exist:
    /// the systemd unit's `RuntimeDirectory=leadgate` makes /run/leadgate.
    #[serde(default = "d_admin_socket")]
    pub socket: PathBuf,
    /// Who gets the active leads of a user who is disabled; absent: they go
    /// back to Unassigned.
    #[serde(default)]
    pub disabled_leads_to: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            socket: d_admin_socket(),
            disabled_leads_to: None,
        }
    }
}

fn d_admin_socket() -> PathBuf {
    PathBuf::from("/run/leadgate/admin.sock")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestConfig {
    /// Send each enabled manager with an email the review queues once per
    /// business day.
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// Local time ("HH:MM", in `leads.calendar.time_zone`) of the digest.
    #[serde(default = "d_digest_time", deserialize_with = "de_hh_mm")]
    pub time: chrono::NaiveTime,
}

impl Default for DigestConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            time: d_digest_time(),
        }
    }
}

fn d_true() -> bool {
    true
}

fn d_digest_time() -> chrono::NaiveTime {
    chrono::NaiveTime::from_hms_opt(8, 30, 0).unwrap_or(chrono::NaiveTime::MIN)
}

fn de_hh_mm<'de, D: serde::Deserializer<'de>>(d: D) -> Result<chrono::NaiveTime, D::Error> {
    let text = String::deserialize(d)?;
    chrono::NaiveTime::parse_from_str(text.trim(), "%H:%M").map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not a time of day \"HH:MM\", such as \"08:30\""
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[imap.listener]]
addr = "127.0.0.1:1143"
tls = "plaintext"

[upstream.imap]
host = "127.0.0.1"
port = 143
tls = "none"
username = "sales"
password = "pw"

[store]
path = "/tmp/x.redb"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.limits.max_line_bytes, 64 * 1024);
        assert_eq!(c.upstream.imap.pool_size, 4);
    }

    #[test]
    fn example_config_parses_and_validates() {
        let text = include_str!("../../config/leadgate.example.toml");
        let c = Config::parse(text).expect("example config must be valid");
        assert!(c.tls.is_some());
        assert!(c
            .imap
            .listeners
            .iter()
            .all(|l| l.tls != ListenerTls::Plaintext));
    }

    #[test]
    fn plaintext_listener_off_loopback_is_refused_naming_the_key() {
        let text = MINIMAL.replace("127.0.0.1:1143", "0.0.0.0:1143");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("imap.listener[0].tls"), "{err}");
    }

    #[test]
    fn clear_upstream_to_remote_host_is_refused() {
        let text = MINIMAL.replace("host = \"127.0.0.1\"", "host = \"mail.example.com\"");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("upstream.imap.tls"), "{err}");
    }

    #[test]
    fn two_password_sources_are_refused() {
        let text = MINIMAL.replace(
            "password = \"pw\"",
            "password = \"pw\"\npassword_file = \"/x\"",
        );
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("upstream.imap.password"), "{err}");
    }

    #[test]
    fn unknown_key_is_reported() {
        let text = format!("{MINIMAL}\n[limits]\nmax_conections = 3\n");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("max_conections"), "{err}");
    }

    #[test]
    fn password_is_not_printed_by_debug() {
        let c = Config::parse(MINIMAL).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("\"pw\""), "{dbg}");
    }
}
