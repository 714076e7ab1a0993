//! leadgate's own user accounts (not the upstream's): name, role, argon2id
//! hash, enabled flag.

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{
    audit::{self, AuditChange, AuditDraft},
    schema::USERS,
    Store, StoreError,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Rep,
    Manager,
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Rep => "rep",
            Role::Manager => "manager",
            Role::Admin => "admin",
        })
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub enabled: bool,
    /// PHC string of an argon2id hash.
    pub password_hash: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    pub created: i64,
    pub changed: i64,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("enabled", &self.enabled)
            .field("password_hash", &"***")
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("user name {0:?} is not valid: use 1-64 of a-z, 0-9, '.', '-', '_', starting with a letter or digit")]
    BadName(String),
    #[error("user {0} already exists")]
    Exists(String),
    #[error("no user {0}")]
    NotFound(String),
}

/// User names are what people type as their login: lower-case, short, safe
/// to embed in upstream folder names and log lines.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// What changed about a user, for the audit log (never the hash itself).
fn user_changes(before: Option<&User>, after: &User) -> Vec<AuditChange> {
    let mut out = Vec::new();
    let mut field = |name: &str, b: String, a: String| {
        if b != a {
            out.push(AuditChange {
                field: name.to_owned(),
                before: b,
                after: a,
            });
        }
    };
    field(
        "role",
        before.map(|u| u.role.to_string()).unwrap_or_default(),
        after.role.to_string(),
    );
    let state = |u: &User| if u.enabled { "enabled" } else { "disabled" }.to_owned();
    field("state", before.map(state).unwrap_or_default(), state(after));
    field(
        "email",
        before.and_then(|u| u.email.clone()).unwrap_or_default(),
        after.email.clone().unwrap_or_default(),
    );
    if before.is_some_and(|u| u.password_hash != after.password_hash) {
        field("password", "***".into(), "changed".into());
    }
    out
}

fn user_event(
    by: &str,
    action: &str,
    name: &str,
    changes: Vec<AuditChange>,
    at: i64,
) -> AuditDraft {
    AuditDraft {
        at: at * 1000,
        actor: by.to_owned(),
        action: action.to_owned(),
        lead: None,
        changes,
        reason: format!("user {name}"),
    }
}

fn decode(name: &str, bytes: &[u8]) -> Result<User, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(format!("user {name}"), e))
}

fn put(txn: &WriteTransaction, user: &User) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(user).map_err(|e| StoreError::corrupt("user", e))?;
    txn.open_table(USERS)?
        .insert(user.name.as_str(), bytes.as_slice())?;
    Ok(())
}

impl Store {
    pub fn user_get(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(USERS)?;
            let v = t.get(name)?;
            v.map(|v| decode(name, v.value())).transpose()
        })
    }

    pub fn user_list(&self) -> Result<Vec<User>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(USERS)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.push(decode(k.value(), v.value())?);
            }
            Ok(out)
        })
    }

    /// Inserts a new user; refuses an existing name. `by` is recorded in
    /// the audit log with the change.
    pub async fn user_add(
        &self,
        by: &str,
        user: User,
    ) -> Result<Result<(), UserError>, StoreError> {
        if !valid_user_name(&user.name) {
            return Ok(Err(UserError::BadName(user.name)));
        }
        let by = by.to_owned();
        self.write(move |txn| {
            if txn.open_table(USERS)?.get(user.name.as_str())?.is_some() {
                return Ok(Err(UserError::Exists(user.name.clone())));
            }
            put(txn, &user)?;
            let changes = user_changes(None, &user);
            audit::append(
                txn,
                &user_event(&by, "user.add", &user.name, changes, user.changed),
            )?;
            Ok(Ok(()))
        })
        .await
    }

    /// Applies `change` to a stored user and returns the new record.
    pub async fn user_update(
        &self,
        by: &str,
        name: &str,
        change: impl Fn(&mut User) + Send + 'static,
    ) -> Result<Result<User, UserError>, StoreError> {
        let name = name.to_owned();
        let by = by.to_owned();
        self.write(move |txn| {
            let current = {
                let t = txn.open_table(USERS)?;
                let v = t.get(name.as_str())?;
                match v {
                    Some(v) => decode(&name, v.value())?,
                    None => return Ok(Err(UserError::NotFound(name.clone()))),
                }
            };
            let mut user = current.clone();
            change(&mut user);
            user.changed = chrono::Utc::now().timestamp();
            put(txn, &user)?;
            let changes = user_changes(Some(&current), &user);
            audit::append(
                txn,
                &user_event(&by, "user.update", &user.name, changes, user.changed),
            )?;
            Ok(Ok(user))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        assert!(valid_user_name("alice"));
        assert!(valid_user_name("a.b-c_1"));
        assert!(!valid_user_name(""));
        assert!(!valid_user_name("Alice"));
        assert!(!valid_user_name("-x"));
        assert!(!valid_user_name("a/b"));
        assert!(!valid_user_name("a b"));
        assert!(!valid_user_name(&"a".repeat(65)));
    }
}
