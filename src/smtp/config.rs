//! `[smtp]`: the submission listeners and their limits. Embedded in the main
//! config; the greeting's host name comes from `server.hostname`. Errors
//! name the key, as the rest of the config does.

use serde::Deserialize;

use crate::config::{ConfigError, ListenerConfig, ListenerTls};

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

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
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
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, l) in self.listeners.iter().enumerate() {
            if l.tls == ListenerTls::Plaintext && !l.addr.ip().is_loopback() {
                return Err(invalid(
                    format!("smtp.listener[{i}].tls"),
                    format!(
                        "\"plaintext\" is only allowed on loopback addresses, not {}; use \"starttls\" or \"implicit\"",
                        l.addr
                    ),
                ));
            }
        }
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
        Ok(())
    }

    /// TLS listeners need the main config's `[tls]` section.
    pub fn check_tls_available(&self, tls_configured: bool) -> Result<(), ConfigError> {
        if tls_configured {
            return Ok(());
        }
        match self
            .listeners
            .iter()
            .position(|l| l.tls != ListenerTls::Plaintext)
        {
            Some(i) => Err(invalid(
                format!("smtp.listener[{i}].tls"),
                "a TLS listener needs a [tls] section with cert and key",
            )),
            None => Ok(()),
        }
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
