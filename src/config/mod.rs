//! The one TOML file: typed with serde, defaults for everything that has a
//! sane one, and `validate()` run before any port is bound. Errors name the
//! key so an admin can find the line.

pub mod smtp;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error(transparent)]
    Leads(#[from] crate::leads::rules::RulesError),
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// Bodies of the shared mailbox kept locally (MiB), so downloads,
    /// stamping and lead triage do not wait for the upstream. 0 disables.
    #[serde(default = "d_body_cache_mib")]
    pub body_cache_mib: u64,
    /// Messages larger than this (KiB) are always fetched from the upstream.
    #[serde(default = "d_body_cache_max_kib")]
    pub body_cache_max_message_kib: u64,
}

impl StoreConfig {
    /// The body cache's limits.
    pub fn body_cache(&self) -> crate::index::BodyCache {
        crate::index::BodyCache {
            budget: self.body_cache_mib * 1024 * 1024,
            max_message: self.body_cache_max_message_kib * 1024,
        }
    }
}

fn d_body_cache_mib() -> u64 {
    2048
}
fn d_body_cache_max_kib() -> u64 {
    1024
}

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

pub use crate::auth::AuthConfig;

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
        for (i, l) in self.imap.listeners.iter().enumerate() {
            let key = format!("imap.listener[{i}]");
            match l.tls {
                ListenerTls::Plaintext if !l.addr.ip().is_loopback() => {
                    return Err(invalid(
                        format!("{key}.tls"),
                        format!(
                            "\"plaintext\" is only allowed on loopback addresses, not {}; use \"starttls\" or \"implicit\"",
                            l.addr
                        ),
                    ))
                }
                ListenerTls::Implicit | ListenerTls::Starttls if self.tls.is_none() => {
                    return Err(invalid(
                        format!("{key}.tls"),
                        "a TLS listener needs a [tls] section with cert and key",
                    ))
                }
                _ => {}
            }
        }
        if let Some(tls) = &self.tls {
            match (&tls.key, &tls.key_credential) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "tls.key",
                        "set either key or key_credential, not both",
                    ))
                }
                (None, None) => return Err(invalid("tls.key", "missing (or set key_credential)")),
                _ => {}
            }
        }
        let up = &self.upstream.imap;
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
        let sources = [
            up.password.is_some(),
            up.password_file.is_some(),
            up.password_credential.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if sources != 1 {
            return Err(invalid(
                "upstream.imap.password",
                "set exactly one of password, password_file, password_credential",
            ));
        }
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
        let l = &self.limits;
        if l.max_connections == 0 {
            return Err(invalid("limits.max_connections", "must be at least 1"));
        }
        if l.max_connections_per_ip == 0 {
            return Err(invalid(
                "limits.max_connections_per_ip",
                "must be at least 1",
            ));
        }
        if l.max_line_bytes < 1024 {
            return Err(invalid("limits.max_line_bytes", "must be at least 1024"));
        }
        if l.max_literal_bytes < 1024 {
            return Err(invalid("limits.max_literal_bytes", "must be at least 1024"));
        }
        if l.idle_timeout_secs < 60 || l.auth_timeout_secs == 0 {
            return Err(invalid(
                "limits.idle_timeout_secs",
                "idle timeout must be at least 60 seconds and the auth timeout at least 1",
            ));
        }
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

fn host_is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Reads a secret from a file or from `$CREDENTIALS_DIRECTORY/<name>`, with
/// the trailing newline removed.
pub fn read_secret(
    file: Option<&Path>,
    credential: Option<&str>,
    key: &str,
) -> Result<Secret<String>, ConfigError> {
    let path = match (file, credential) {
        (Some(p), _) => p.to_owned(),
        (None, Some(name)) => {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                invalid(key, "names a credential but $CREDENTIALS_DIRECTORY is not set (is the service started with LoadCredential?)")
            })?;
            PathBuf::from(dir).join(name)
        }
        (None, None) => return Err(invalid(key, "no source given")),
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?;
    Ok(Secret::new(text.trim_end_matches(['\r', '\n']).to_owned()))
}

impl UpstreamImapConfig {
    pub fn resolve_password(&self) -> Result<Secret<String>, ConfigError> {
        if let Some(p) = &self.password {
            return Ok(p.clone());
        }
        read_secret(
            self.password_file.as_deref(),
            self.password_credential.as_deref(),
            "upstream.imap.password_file",
        )
    }
}

impl TlsConfig {
    /// Path of the key: the configured file or the systemd credential.
    pub fn key_path(&self) -> Result<PathBuf, ConfigError> {
        if let Some(k) = &self.key {
            return Ok(k.clone());
        }
        let name = self.key_credential.as_deref().unwrap_or_default();
        let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
            .ok_or_else(|| invalid("tls.key_credential", "$CREDENTIALS_DIRECTORY is not set"))?;
        Ok(PathBuf::from(dir).join(name))
    }
}

/// `[views]`: how the lead folders are shown.
/// How reps see the shared INBOX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InboxAccess {
    ReadWrite,
    ReadOnly,
    Hidden,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ViewsConfig {
    /// INBOX for reps; managers and admins always get it read-write.
    pub rep_inbox: InboxAccess,
    /// Lead folders reps do not get (e.g. "Leads/Closed").
    pub hidden_for_reps: Vec<String>,
    /// A high-value lead with no activity for this long is "idle".
    pub high_value_idle_days: u32,
}

impl Default for ViewsConfig {
    fn default() -> Self {
        ViewsConfig {
            rep_inbox: InboxAccess::ReadOnly,
            hidden_for_reps: Vec::new(),
            high_value_idle_days: 3,
        }
    }
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
