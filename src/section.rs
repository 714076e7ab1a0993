//! What every config section shares, wherever it lives: the error that names
//! the key an admin must fix, and reading a secret from a file or a systemd
//! credential. Each section belongs to the module that uses it (`[smtp]` in
//! smtp, `[upstream]` in upstream, listeners and limits in net, ...);
//! `config` composes them. A leaf: imports only `secret`.

use std::path::{Path, PathBuf};

use crate::secret::Secret;

/// A config value that cannot work, with the key that holds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {reason}")]
pub struct Invalid {
    pub key: String,
    pub reason: String,
}

/// `Invalid` for `key`.
pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Checks that a section gives its secret exactly one way (`password`,
/// `password_file`, `password_credential`: which are set); `key` names the
/// section's password key in the error.
pub fn one_secret(key: &str, set: [bool; 3]) -> Result<(), Invalid> {
    match set.iter().filter(|s| **s).count() {
        1 => Ok(()),
        _ => Err(invalid(
            key,
            "set exactly one of password, password_file, password_credential",
        )),
    }
}

/// Reads a secret from a file or from `$CREDENTIALS_DIRECTORY/<name>`, with
/// the trailing newline removed.
pub fn read_secret(
    file: Option<&Path>,
    credential: Option<&str>,
    key: &str,
) -> Result<Secret<String>, Invalid> {
    let path = match (file, credential) {
        (Some(p), _) => p.to_owned(),
        (None, Some(name)) => credential_path(name, key)?,
        (None, None) => return Err(invalid(key, "no source given")),
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?;
    Ok(Secret::new(text.trim_end_matches(['\r', '\n']).to_owned()))
}

/// `$CREDENTIALS_DIRECTORY/<name>`: a file systemd's LoadCredential put there.
pub fn credential_path(name: &str, key: &str) -> Result<PathBuf, Invalid> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
        invalid(
            key,
            "names a credential but $CREDENTIALS_DIRECTORY is not set (is the service started with LoadCredential?)",
        )
    })?;
    Ok(PathBuf::from(dir).join(name))
}

/// Whether `host` (a name or an address, IPv6 possibly in brackets) is
/// loopback: where plain text may be allowed.
pub fn host_is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}
