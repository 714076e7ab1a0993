//! `[smtp]`: the submission listeners and their limits, delivery, held
//! replies. Composed into the main config; the greeting's host name comes from `server.hostname`. Errors
//! name the key, as the rest of the config does.

use std::{net::SocketAddr, path::PathBuf};

use serde::Deserialize;

use crate::{
    net::config::{check_plaintext_on_loopback, check_tls_available, ListenerConfig},
    secret::Secret,
    section::{host_is_loopback, invalid, read_secret, Invalid},
};

/// smtp-proto's RequestReceiver buffers at most this much of a command line
/// that arrives in pieces, so a larger limit could not be honoured.
pub const MAX_COMMAND_LINE: usize = smtp_proto::request::receiver::MAX_LINE_LENGTH;
/// RFC 5321 §4.5.3.1.4: servers must accept command lines of 512 octets.
pub const MIN_COMMAND_LINE: usize = 512;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Submission listeners; none means SMTP is off.
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// The shared mailbox's address (e.g. `sales@example.com`): besides
    /// their own address, the one envelope sender every user may use.
    #[serde(default)]
    pub shared_address: String,
    /// Largest message accepted, in bytes (advertised as `SIZE`).
    #[serde(default = "d_max_message")]
    pub max_message_bytes: usize,
    /// Recipients per message.
    #[serde(default = "d_max_recipients")]
    pub max_recipients: usize,
    /// Longest command line, CRLF included (512 to 4096).
    #[serde(default = "d_max_line")]
    pub max_line_bytes: usize,
    /// Seconds to wait for the next command.
    #[serde(default = "d_command_timeout")]
    pub command_timeout_secs: u64,
    /// Seconds to wait for more message data during DATA or BDAT.
    #[serde(default = "d_data_timeout")]
    pub data_timeout_secs: u64,
    /// Refused commands per session before it is closed with 421.
    #[serde(default = "d_max_errors")]
    pub max_errors: u32,
    /// Where accepted mail goes: the upstream submission server
    /// (`"relay"`, the default) or the recipients' MX hosts through a
    /// durable local queue (`"direct"`).
    #[serde(default)]
    pub delivery: Delivery,
    /// `[smtp.relay]`: the upstream submission server.
    #[serde(default)]
    pub relay: RelayConfig,
    /// `[smtp.direct]`: MX delivery and its queue.
    #[serde(default)]
    pub direct: DirectConfig,
    /// Mail to this address (e.g. `notes@leadgate.local`) that answers a
    /// lead becomes an internal note on it and is not relayed.
    #[serde(default)]
    pub notes_address: Option<String>,
    /// Send replies as `"<rep's name>" <shared address>` with Reply-To the
    /// shared address, so customers keep writing to the team.
    #[serde(default = "yes")]
    pub rewrite_from: bool,
    /// A first message to a customer (not a reply) opens a lead owned by
    /// its sender.
    #[serde(default = "yes")]
    pub new_outbound_creates_lead: bool,
    /// What happens to a message the owner rule blocks: `"refuse"` (550
    /// naming the owner) or `"hold"` (250 "held"; the owner or a manager
    /// releases or discards it from Review/Held).
    #[serde(default)]
    pub blocked_reply: BlockedReply,
    /// Days a held message waits for a decision before it expires (its
    /// sender is told by mail).
    #[serde(default = "d_hold_days")]
    pub hold_days: u32,
}

fn yes() -> bool {
    true
}

fn d_hold_days() -> u32 {
    3
}

/// `[smtp] blocked_reply`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockedReply {
    #[default]
    Refuse,
    Hold,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// Hand every message to `[smtp.relay]` while the client waits; 250
    /// only once the upstream said 250.
    #[default]
    Relay,
    /// Queue durably, answer 250, deliver to the recipients' MX hosts.
    Direct,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayTls {
    /// TLS from the first byte (port 465).
    Implicit,
    /// Plain text, then STARTTLS, which the upstream must offer (port 587).
    #[default]
    Starttls,
    /// No TLS: only accepted for a loopback host.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    pub host: String,
    #[serde(default = "d_relay_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: RelayTls,
    /// Login at the upstream; none means the upstream accepts leadgate
    /// without one (e.g. by its address).
    #[serde(default)]
    pub username: Option<String>,
    /// With `username`, exactly one of `password`, `password_file`,
    /// `password_credential` (a file in `$CREDENTIALS_DIRECTORY`).
    #[serde(default)]
    pub password: Option<Secret<String>>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password_credential: Option<String>,
    /// Extra CA certificate (PEM) trusted for the upstream, besides the
    /// public web PKI roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds for the connection (TLS and login included) and for each
    /// command; the message data gets this plus one second per 64 KiB.
    #[serde(default = "d_relay_timeout")]
    pub timeout_secs: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: d_relay_port(),
            tls: RelayTls::default(),
            username: None,
            password: None,
            password_file: None,
            password_credential: None,
            ca_file: None,
            timeout_secs: d_relay_timeout(),
        }
    }
}

impl RelayConfig {
    /// The upstream password, from whichever source is configured; `None`
    /// without a username.
    pub fn resolve_password(&self) -> Result<Option<Secret<String>>, Invalid> {
        if self.username.is_none() {
            return Ok(None);
        }
        if let Some(p) = &self.password {
            return Ok(Some(p.clone()));
        }
        read_secret(
            self.password_file.as_deref(),
            self.password_credential.as_deref(),
            "smtp.relay.password_file",
        )
        .map(Some)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectConfig {
    /// DNS servers for MX lookups (`"192.0.2.53:53"`); empty means the
    /// ones in /etc/resolv.conf.
    #[serde(default)]
    pub nameservers: Vec<SocketAddr>,
    /// Hours a message may wait for a recipient before it is bounced.
    #[serde(default = "d_max_age_hours")]
    pub max_age_hours: u64,
    /// Seconds between delivery attempts; the last one repeats.
    #[serde(default = "d_retry_schedule")]
    pub retry_schedule_secs: Vec<u64>,
    /// Name in EHLO; `server.hostname` when unset.
    #[serde(default)]
    pub helo_name: Option<String>,
    /// Port on the MX hosts (25; another one only for tests).
    #[serde(default = "d_direct_port")]
    pub port: u16,
    /// Refuse to deliver without STARTTLS and a certificate valid for the
    /// MX host name. When false, STARTTLS is used whenever it is offered,
    /// without checking the certificate (as Postfix's "may" level).
    #[serde(default)]
    pub require_tls: bool,
    /// Seconds for a connection and for each command.
    #[serde(default = "d_direct_timeout")]
    pub timeout_secs: u64,
}

impl Default for DirectConfig {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            max_age_hours: d_max_age_hours(),
            retry_schedule_secs: d_retry_schedule(),
            helo_name: None,
            port: d_direct_port(),
            require_tls: false,
            timeout_secs: d_direct_timeout(),
        }
    }
}

fn d_relay_port() -> u16 {
    587
}
fn d_relay_timeout() -> u64 {
    60
}
fn d_max_age_hours() -> u64 {
    120
}
fn d_retry_schedule() -> Vec<u64> {
    vec![60, 300, 900, 3600]
}
fn d_direct_port() -> u16 {
    25
}
fn d_direct_timeout() -> u64 {
    300
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            listeners: Vec::new(),
            shared_address: String::new(),
            max_message_bytes: d_max_message(),
            max_recipients: d_max_recipients(),
            max_line_bytes: d_max_line(),
            command_timeout_secs: d_command_timeout(),
            data_timeout_secs: d_data_timeout(),
            max_errors: d_max_errors(),
            delivery: Delivery::default(),
            relay: RelayConfig::default(),
            direct: DirectConfig::default(),
            notes_address: None,
            rewrite_from: true,
            new_outbound_creates_lead: true,
            blocked_reply: BlockedReply::Refuse,
            hold_days: d_hold_days(),
        }
    }
}

fn d_max_message() -> usize {
    25 * 1024 * 1024
}
fn d_max_recipients() -> usize {
    100
}
fn d_max_line() -> usize {
    4096
}
fn d_command_timeout() -> u64 {
    300
}
fn d_data_timeout() -> u64 {
    600
}
fn d_max_errors() -> u32 {
    10
}

/// `local@domain` with both parts present and nothing that cannot appear in
/// an envelope address.
fn looks_like_address(s: &str) -> bool {
    match s.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && s.len() <= 254
                && s.chars()
                    .all(|c| !c.is_control() && !c.is_whitespace() && c != '<' && c != '>')
        }
        None => false,
    }
}

impl SmtpConfig {
    /// Checks everything that does not depend on other sections. With TLS
    /// listeners, also call [`SmtpConfig::check_tls_available`].
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(1..=60).contains(&self.hold_days) {
            return Err(invalid(
                "smtp.hold_days",
                format!("{} is not between 1 and 60 days", self.hold_days),
            ));
        }
        check_plaintext_on_loopback("smtp", &self.listeners)?;
        if !self.listeners.is_empty() && !looks_like_address(&self.shared_address) {
            return Err(invalid(
                "smtp.shared_address",
                format!(
                    "must be the shared mailbox's address, like \"sales@example.com\" (got {:?})",
                    self.shared_address
                ),
            ));
        }
        if self.max_message_bytes < 1024 {
            return Err(invalid("smtp.max_message_bytes", "must be at least 1024"));
        }
        if self.max_recipients == 0 {
            return Err(invalid("smtp.max_recipients", "must be at least 1"));
        }
        if !(MIN_COMMAND_LINE..=MAX_COMMAND_LINE).contains(&self.max_line_bytes) {
            return Err(invalid(
                "smtp.max_line_bytes",
                format!("must be between {MIN_COMMAND_LINE} and {MAX_COMMAND_LINE}"),
            ));
        }
        if self.command_timeout_secs == 0 {
            return Err(invalid("smtp.command_timeout_secs", "must be at least 1"));
        }
        if self.data_timeout_secs == 0 {
            return Err(invalid("smtp.data_timeout_secs", "must be at least 1"));
        }
        if self.max_errors == 0 {
            return Err(invalid("smtp.max_errors", "must be at least 1"));
        }
        // A missing relay host is reported by `check_delivery`, so configs
        // written before `[smtp.relay]` existed still validate.
        if !self.relay.host.is_empty() {
            self.validate_relay()?;
        }
        self.validate_direct()
    }

    /// With listeners and `delivery = "relay"`, `[smtp.relay]` must name a
    /// host. Call before binding the SMTP listeners (`Outbound::from_config`
    /// does).
    pub fn check_delivery(&self) -> Result<(), Invalid> {
        if self.delivery == Delivery::Relay && !self.listeners.is_empty() {
            if self.relay.host.is_empty() {
                return Err(invalid(
                    "smtp.relay.host",
                    "must name the upstream submission server (or set smtp.delivery = \"direct\")",
                ));
            }
            self.validate_relay()?;
        }
        Ok(())
    }

    fn validate_relay(&self) -> Result<(), Invalid> {
        let r = &self.relay;
        if r.port == 0 {
            return Err(invalid("smtp.relay.port", "must not be 0"));
        }
        if r.tls == RelayTls::None && !host_is_loopback(&r.host) {
            return Err(invalid(
                "smtp.relay.tls",
                format!(
                    "\"none\" sends mail (and any password) in clear; only allowed for a loopback host, not {}",
                    r.host
                ),
            ));
        }
        if r.tls == RelayTls::None && r.ca_file.is_some() {
            return Err(invalid(
                "smtp.relay.ca_file",
                "has no use with tls = \"none\"",
            ));
        }
        let sources = [
            r.password.is_some(),
            r.password_file.is_some(),
            r.password_credential.is_some(),
        ];
        match &r.username {
            Some(u) if u.is_empty() => {
                return Err(invalid("smtp.relay.username", "must not be empty"))
            }
            Some(_) => crate::section::one_secret("smtp.relay.password", sources)?,
            None if sources.contains(&true) => {
                return Err(invalid(
                    "smtp.relay.password",
                    "a password needs smtp.relay.username",
                ))
            }
            _ => {}
        }
        if r.timeout_secs == 0 {
            return Err(invalid("smtp.relay.timeout_secs", "must be at least 1"));
        }
        Ok(())
    }

    fn validate_direct(&self) -> Result<(), Invalid> {
        let d = &self.direct;
        if let Some(i) = d.nameservers.iter().position(|a| a.port() == 0) {
            return Err(invalid(
                format!("smtp.direct.nameservers[{i}]"),
                "needs a port (usually 53)",
            ));
        }
        if d.max_age_hours == 0 {
            return Err(invalid("smtp.direct.max_age_hours", "must be at least 1"));
        }
        if d.retry_schedule_secs.is_empty() || d.retry_schedule_secs.contains(&0) {
            return Err(invalid(
                "smtp.direct.retry_schedule_secs",
                "must list at least one delay, each at least 1 second",
            ));
        }
        if let Some(h) = &d.helo_name {
            if h.is_empty() || !h.chars().all(|c| c.is_ascii_graphic()) {
                return Err(invalid(
                    "smtp.direct.helo_name",
                    "must be a host name (printable ASCII, no spaces)",
                ));
            }
        }
        if d.port == 0 {
            return Err(invalid("smtp.direct.port", "must not be 0"));
        }
        if d.timeout_secs == 0 {
            return Err(invalid("smtp.direct.timeout_secs", "must be at least 1"));
        }
        Ok(())
    }

    /// TLS listeners need the main config's `[tls]` section.
    pub fn check_tls_available(&self, tls_configured: bool) -> Result<(), Invalid> {
        check_tls_available("smtp", &self.listeners, tls_configured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SmtpConfig, String> {
        toml::from_str::<SmtpConfig>(text).map_err(|e| e.to_string())
    }

    const LOOPBACK: &str = r#"
shared_address = "sales@example.com"

[[listener]]
addr = "127.0.0.1:1587"
tls = "plaintext"
"#;

    #[test]
    fn smtp_defaults_are_filled_in() {
        let c = parse(LOOPBACK).unwrap();
        c.validate().unwrap();
        assert_eq!(c.max_message_bytes, 25 * 1024 * 1024);
        assert_eq!(c.max_recipients, 100);
        assert_eq!(c.max_line_bytes, 4096);
        assert_eq!(c.command_timeout_secs, 300);
        assert_eq!(c.data_timeout_secs, 600);
        assert_eq!(c.max_errors, 10);
        assert_eq!(c.listeners.len(), 1);
    }

    #[test]
    fn smtp_plaintext_listener_off_loopback_is_refused_naming_the_key() {
        let c = parse(&LOOPBACK.replace("127.0.0.1:1587", "0.0.0.0:587")).unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("smtp.listener[0].tls"), "{err}");
    }

    #[test]
    fn smtp_unknown_key_is_reported() {
        let err = parse(&format!("max_recipents = 3\n{LOOPBACK}")).unwrap_err();
        assert!(err.contains("max_recipents"), "{err}");
    }

    #[test]
    fn smtp_listener_needs_a_shared_address() {
        let c = parse(&LOOPBACK.replace("sales@example.com", "sales")).unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("smtp.shared_address"), "{err}");
        // No listeners: SMTP is off and nothing else is required.
        SmtpConfig::default().validate().unwrap();
    }

    #[test]
    fn smtp_line_limit_must_fit_the_parser() {
        let c = parse(&format!("max_line_bytes = 8192\n{LOOPBACK}")).unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("smtp.max_line_bytes"), "{err}");
    }

    #[test]
    fn smtp_tls_listener_without_tls_section_is_refused() {
        let c = parse(&LOOPBACK.replace("plaintext", "starttls")).unwrap();
        c.validate().unwrap();
        let err = c.check_tls_available(false).unwrap_err().to_string();
        assert!(err.contains("smtp.listener[0].tls"), "{err}");
        c.check_tls_available(true).unwrap();
    }
}
