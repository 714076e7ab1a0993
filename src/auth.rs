//! Login checks shared by IMAP and SMTP: argon2id verification, per-user and
//! per-IP lockout, and a cache of recent successful verifications so a
//! client that reconnects every minute does not cost 20 ms of CPU each time.
//! Failed logins are logged as `auth failed: user=... ip=...` for fail2ban.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Algorithm, Argon2, Params, Version,
};
use sha2::{Digest, Sha256};

use crate::{
    config::AuthConfig,
    metrics::{Metrics, Proto},
    store::{
        audit::AuditDraft,
        users::{Role, User},
        Store,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("argon2 parameters: {0}")]
    Params(String),
}

/// Hashes a password with argon2id and the configured cost.
pub fn hash_password(password: &str, cfg: &AuthConfig) -> Result<String, HashError> {
    let params = Params::new(cfg.argon2_memory_kib, cfg.argon2_iterations, 1, None)
        .map_err(|e| HashError::Params(e.to_string()))?;
    let salt = SaltString::generate(&mut OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Params(e.to_string()))
}

fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Why a login was refused. The client sees `client_text`, the log the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    BadCredentials,
    Disabled,
    LockedOut,
    Internal,
}

impl AuthFailure {
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::BadCredentials => "bad-credentials",
            AuthFailure::Disabled => "disabled",
            AuthFailure::LockedOut => "locked-out",
            AuthFailure::Internal => "internal-error",
        }
    }

    pub fn client_text(self) -> &'static str {
        match self {
            AuthFailure::BadCredentials => "Authentication failed: wrong user name or password",
            AuthFailure::Disabled => {
                "Authentication failed: this account is disabled; ask your leadgate admin"
            }
            AuthFailure::LockedOut => {
                "Authentication failed: too many failed attempts, try again later"
            }
            AuthFailure::Internal => "Authentication temporarily unavailable, try again later",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub email: Option<String>,
    pub display_name: Option<String>,
}

impl From<&User> for Principal {
    fn from(u: &User) -> Self {
        Principal {
            name: u.name.clone(),
            role: u.role,
            email: u.email.clone(),
            display_name: u.display_name.clone(),
        }
    }
}

struct Window {
    count: u32,
    since: Instant,
}

const CACHE_TTL: Duration = Duration::from_secs(600);
const CACHE_MAX: usize = 100_000;

#[derive(Default)]
struct State {
    by_user: HashMap<String, Window>,
    by_ip: HashMap<IpAddr, Window>,
    verified: HashMap<[u8; 32], Instant>,
}

pub struct Authenticator {
    store: Store,
    cfg: AuthConfig,
    metrics: Option<Arc<Metrics>>,
    cache_key: [u8; 32],
    state: Mutex<State>,
}

impl Authenticator {
    pub fn new(store: Store, cfg: AuthConfig) -> Self {
        Self {
            store,
            cfg,
            metrics: None,
            cache_key: rand::random(),
            state: Mutex::new(State::default()),
        }
    }

    /// Counts logins in these metrics.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn locked(&self, state: &mut State, user: &str, ip: IpAddr) -> bool {
        let window = Duration::from_secs(self.cfg.lockout_secs);
        let max = self.cfg.max_failures;
        let over =
            |w: Option<&Window>| w.is_some_and(|w| w.count >= max && w.since.elapsed() < window);
        over(state.by_user.get(user)) || over(state.by_ip.get(&ip))
    }

    fn record_failure(&self, user: &str, ip: IpAddr) {
        let window = Duration::from_secs(self.cfg.lockout_secs);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let bump = |w: &mut Window| {
            if w.since.elapsed() >= window {
                w.count = 0;
                w.since = Instant::now();
            }
            w.count += 1;
        };
        bump(st.by_user.entry(user.to_owned()).or_insert(Window {
            count: 0,
            since: Instant::now(),
        }));
        bump(st.by_ip.entry(ip).or_insert(Window {
            count: 0,
            since: Instant::now(),
        }));
        if st.by_user.len() > CACHE_MAX || st.by_ip.len() > CACHE_MAX {
            st.by_user.retain(|_, w| w.since.elapsed() < window);
            st.by_ip.retain(|_, w| w.since.elapsed() < window);
        }
    }

    fn fingerprint(&self, user: &User, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.cache_key);
        h.update(user.name.as_bytes());
        h.update([0]);
        h.update(user.password_hash.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Checks a login. Logs every failure in the fail2ban format.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        ip: IpAddr,
        proto: &str,
    ) -> Result<Principal, AuthFailure> {
        let result = self.check(user, password, ip).await;
        let (action, reason) = match &result {
            Ok(_) => ("auth.login", format!("proto={proto} ip={ip}")),
            Err(f) => (
                "auth.failed",
                format!("proto={proto} ip={ip} reason={}", f.reason()),
            ),
        };
        let event = AuditDraft {
            at: chrono::Utc::now().timestamp_millis(),
            actor: sanitize_log(user),
            action: action.to_owned(),
            lead: None,
            changes: Vec::new(),
            reason,
        };
        if let Err(e) = self.store.audit(event).await {
            tracing::error!("audit of a login failed: {e}");
        }
        if let Some(m) = &self.metrics {
            let proto = if proto == "smtp" {
                Proto::Smtp
            } else {
                Proto::Imap
            };
            m.login(proto, result.is_ok());
        }
        match &result {
            Ok(_) => {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                st.by_user.remove(user);
                tracing::info!(target: "leadgate::auth", "auth ok: user={user} ip={ip} proto={proto}");
            }
            Err(f) => {
                if *f != AuthFailure::LockedOut && *f != AuthFailure::Internal {
                    self.record_failure(user, ip);
                }
                tracing::warn!(
                    target: "leadgate::auth",
                    "auth failed: user={} ip={ip} proto={proto} reason={}",
                    sanitize_log(user),
                    f.reason()
                );
            }
        }
        result
    }

    async fn check(
        &self,
        user: &str,
        password: &str,
        ip: IpAddr,
    ) -> Result<Principal, AuthFailure> {
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if self.locked(&mut st, user, ip) {
                return Err(AuthFailure::LockedOut);
            }
        }
        let stored = self.store.user_get(user).map_err(|e| {
            tracing::error!("user lookup failed: {e}");
            AuthFailure::Internal
        })?;
        let Some(stored) = stored else {
            // Spend the same time as a real check so names cannot be probed.
            let pw = password.to_owned();
            let _ = tokio::task::spawn_blocking(move || verify_password(&pw, DUMMY_HASH)).await;
            return Err(AuthFailure::BadCredentials);
        };
        let fp = self.fingerprint(&stored, password);
        let cached = {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.verified
                .get(&fp)
                .is_some_and(|t| t.elapsed() < CACHE_TTL)
        };
        if !cached {
            let pw = password.to_owned();
            let hash = stored.password_hash.clone();
            let ok = tokio::task::spawn_blocking(move || verify_password(&pw, &hash))
                .await
                .map_err(|_| AuthFailure::Internal)?;
            if !ok {
                return Err(AuthFailure::BadCredentials);
            }
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.verified.len() >= CACHE_MAX {
                st.verified.retain(|_, t| t.elapsed() < CACHE_TTL);
                if st.verified.len() >= CACHE_MAX {
                    st.verified.clear();
                }
            }
            st.verified.insert(fp, Instant::now());
        }
        if !stored.enabled {
            return Err(AuthFailure::Disabled);
        }
        Ok(Principal::from(&stored))
    }
}

/// A hash of a random password, verified against when the user is unknown.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2l0Ew1x6bW4Kq8w0Ap0XK5mQmSg1H3cSxV+3pEGTzqE";

/// User names in log lines come from the network: keep them on one line and
/// printable so a crafted name cannot forge a log entry.
pub fn sanitize_log(s: &str) -> String {
    s.chars()
        .take(128)
        .map(|c| if c.is_control() || c == ' ' { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> AuthConfig {
        AuthConfig {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            max_failures: 3,
            lockout_secs: 60,
        }
    }

    #[test]
    fn hash_verifies_only_the_right_password() {
        let h = hash_password("correct horse", &cheap()).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct hors", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn log_names_cannot_break_lines() {
        assert_eq!(sanitize_log("a\r\nauth ok: user=x"), "a??auth?ok:?user=x");
    }
}
