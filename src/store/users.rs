//! leadgate's own user accounts (not the upstream's): name, role, argon2id
//! hash, enabled flag, and per-device app passwords.
//!
//! # Stored form
//!
//! `USERS` maps the login name to one JSON object per user: the fields of
//! [`User`] plus `app_passwords` (absent when there are none, so records
//! written before app passwords existed read unchanged, and older readers
//! ignore the key). [`UserRecord`] is that whole object; [`User`] is what
//! most callers need and never carries app password hashes.
//!
//! # Digest bookkeeping
//!
//! META key `digest_sent:<user>` holds the local date (`YYYY-MM-DD`) of the
//! last daily digest sent to that manager; it is written in the same
//! transaction as the `digest.sent` audit event, so a digest is recorded
//! exactly when its record is.

use super::changes::WriteTxn;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::{
    audit::{self, AuditChange, AuditDraft},
    schema::{META, USERS},
    Store, StoreError,
};

pub use crate::model::Role;

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
    #[error("user name {0:?} is not valid: use 1-64 of a-z, 0-9, '-', '_', starting with a letter or digit")]
    BadName(String),
    #[error("user {0} already exists")]
    Exists(String),
    #[error("no user {0}")]
    NotFound(String),
    #[error("app password label {0:?} is not valid: use 1-32 of A-Z, a-z, 0-9, '.', '-', '_'")]
    BadLabel(String),
    #[error("user {user} already has an app password labelled {label}")]
    LabelExists { user: String, label: String },
    #[error("user {user} has no app password labelled {label}")]
    NoSuchLabel { user: String, label: String },
    #[error("user {0} already has {MAX_APP_PASSWORDS} app passwords; revoke one first")]
    TooManyAppPasswords(String),
}

/// A per-device password (a phone, a second laptop): its own argon2id hash,
/// revocable on its own. The generated secret itself is shown once and
/// never stored.
#[derive(Clone, Serialize, Deserialize)]
pub struct AppPassword {
    pub label: String,
    /// PHC string of an argon2id hash.
    pub hash: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds of the last login with it (updated at most hourly).
    #[serde(default)]
    pub last_used: Option<i64>,
}

impl std::fmt::Debug for AppPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppPassword")
            .field("label", &self.label)
            .field("hash", &"***")
            .field("created", &self.created)
            .field("last_used", &self.last_used)
            .finish()
    }
}

/// How many app passwords one user may hold (each costs a hash check on a
/// login that looks like one).
pub const MAX_APP_PASSWORDS: usize = 20;

/// A user's whole stored record: the user and their app passwords.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    #[serde(flatten)]
    pub user: User,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_passwords: Vec<AppPassword>,
}

/// App password labels name a device: `iphone`, `laptop-2`, `Work.Mac`.
pub fn valid_app_password_label(label: &str) -> bool {
    (1..=32).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// User names are what people type as their login: lower-case, short, safe
/// to embed in upstream folder names and log lines. A name is one path
/// segment: no `.` (Dovecot's Maildir++ hierarchy delimiter, so `bob.x`
/// would name a folder of `bob`), no `/`, no control characters.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b))
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

fn decode(name: &str, bytes: &[u8]) -> Result<UserRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(format!("user {name}"), e))
}

fn put(txn: &WriteTxn, record: &UserRecord) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(record).map_err(|e| StoreError::corrupt("user", e))?;
    txn.open_table(USERS)?
        .insert(record.user.name.as_str(), bytes.as_slice())?;
    Ok(())
}

/// The stored record of `name`, read inside a write transaction.
fn get_in(txn: &WriteTxn, name: &str) -> Result<Option<UserRecord>, StoreError> {
    let t = txn.open_table(USERS)?;
    let v = t.get(name)?;
    v.map(|v| decode(name, v.value())).transpose()
}

fn digest_key(user: &str) -> String {
    format!("digest_sent:{user}")
}

impl Store {
    pub fn user_get(&self, name: &str) -> Result<Option<User>, StoreError> {
        Ok(self.user_record(name)?.map(|r| r.user))
    }

    /// A user with their app passwords (for login checks and listings).
    pub fn user_record(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
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
                out.push(decode(k.value(), v.value())?.user);
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
            put(
                txn,
                &UserRecord {
                    user: user.clone(),
                    app_passwords: Vec::new(),
                },
            )?;
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
            let Some(mut record) = get_in(txn, &name)? else {
                return Ok(Err(UserError::NotFound(name.clone())));
            };
            let current = record.user.clone();
            let mut user = current.clone();
            change(&mut user);
            user.name = current.name.clone();
            user.changed = chrono::Utc::now().timestamp();
            record.user = user.clone();
            put(txn, &record)?;
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

impl Store {
    /// Adds an app password (its hash) to a user; refuses a bad or taken
    /// label. Audited as `user.app_password.add` (never the hash).
    pub async fn app_password_add(
        &self,
        by: &str,
        name: &str,
        app: AppPassword,
    ) -> Result<Result<(), UserError>, StoreError> {
        if !valid_app_password_label(&app.label) {
            return Ok(Err(UserError::BadLabel(app.label)));
        }
        let (by, name) = (by.to_owned(), name.to_owned());
        self.write(move |txn| {
            let Some(mut record) = get_in(txn, &name)? else {
                return Ok(Err(UserError::NotFound(name.clone())));
            };
            if record.app_passwords.iter().any(|a| a.label == app.label) {
                return Ok(Err(UserError::LabelExists {
                    user: name.clone(),
                    label: app.label.clone(),
                }));
            }
            if record.app_passwords.len() >= MAX_APP_PASSWORDS {
                return Ok(Err(UserError::TooManyAppPasswords(name.clone())));
            }
            record.app_passwords.push(app.clone());
            put(txn, &record)?;
            let change = AuditChange {
                field: "app_password".into(),
                before: String::new(),
                after: app.label.clone(),
            };
            audit::append(
                txn,
                &user_event(
                    &by,
                    "user.app_password.add",
                    &name,
                    vec![change],
                    app.created,
                ),
            )?;
            Ok(Ok(()))
        })
        .await
    }

    /// Removes an app password; logins with it fail from now on. Audited as
    /// `user.app_password.revoke`.
    pub async fn app_password_revoke(
        &self,
        by: &str,
        name: &str,
        label: &str,
    ) -> Result<Result<(), UserError>, StoreError> {
        let (by, name, label) = (by.to_owned(), name.to_owned(), label.to_owned());
        self.write(move |txn| {
            let Some(mut record) = get_in(txn, &name)? else {
                return Ok(Err(UserError::NotFound(name.clone())));
            };
            let before = record.app_passwords.len();
            record.app_passwords.retain(|a| a.label != label);
            if record.app_passwords.len() == before {
                return Ok(Err(UserError::NoSuchLabel {
                    user: name.clone(),
                    label: label.clone(),
                }));
            }
            put(txn, &record)?;
            let change = AuditChange {
                field: "app_password".into(),
                before: label.clone(),
                after: String::new(),
            };
            audit::append(
                txn,
                &user_event(
                    &by,
                    "user.app_password.revoke",
                    &name,
                    vec![change],
                    chrono::Utc::now().timestamp(),
                ),
            )?;
            Ok(Ok(()))
        })
        .await
    }

    /// Notes a login with an app password (`last_used`). Not audited: the
    /// `auth.login` event of that login already names the app password.
    /// A label revoked meanwhile is left alone.
    pub async fn app_password_used(
        &self,
        name: &str,
        label: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        let (name, label) = (name.to_owned(), label.to_owned());
        self.write(move |txn| {
            let Some(mut record) = get_in(txn, &name)? else {
                return Ok(());
            };
            let Some(app) = record.app_passwords.iter_mut().find(|a| a.label == label) else {
                return Ok(());
            };
            if app.last_used.is_some_and(|t| t >= at) {
                return Ok(());
            }
            app.last_used = Some(at);
            put(txn, &record)
        })
        .await
    }

    /// The local date (`YYYY-MM-DD`) of the last digest sent to `user`.
    pub fn digest_last_sent(&self, user: &str) -> Result<Option<String>, StoreError> {
        let key = digest_key(user);
        self.read(|txn| {
            let t = txn.open_table(META)?;
            let v = t.get(key.as_str())?;
            Ok(v.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
        })
    }

    /// Records that `user`'s digest for `date` went out, with its audit
    /// event, in one transaction.
    pub async fn digest_mark_sent(
        &self,
        user: &str,
        date: &str,
        event: AuditDraft,
    ) -> Result<(), StoreError> {
        let (key, date) = (digest_key(user), date.to_owned());
        self.write(move |txn| {
            txn.open_table(META)?
                .insert(key.as_str(), date.as_bytes())?;
            audit::append(txn, &event)?;
            Ok(())
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
        assert!(valid_user_name("a-b_1"));
        // One path segment: a dot would reach into another user's folders
        // on a `.`-delimited upstream.
        assert!(!valid_user_name("bob.x"));
        assert!(!valid_user_name(".."));
        assert!(!valid_user_name(""));
        assert!(!valid_user_name("Alice"));
        assert!(!valid_user_name("-x"));
        assert!(!valid_user_name("a/b"));
        assert!(!valid_user_name("a b"));
        assert!(!valid_user_name(&"a".repeat(65)));
    }

    #[test]
    fn app_password_labels() {
        assert!(valid_app_password_label("iphone"));
        assert!(valid_app_password_label("Work.Mac_2-b"));
        assert!(!valid_app_password_label(""));
        assert!(!valid_app_password_label("my phone"));
        assert!(!valid_app_password_label("a/b"));
        assert!(!valid_app_password_label(&"a".repeat(33)));
    }

    fn user(name: &str) -> User {
        User {
            name: name.into(),
            role: Role::Rep,
            enabled: true,
            password_hash: "$argon2id$x".into(),
            email: None,
            display_name: None,
            created: 0,
            changed: 0,
        }
    }

    fn app(label: &str) -> AppPassword {
        AppPassword {
            label: label.into(),
            hash: "$argon2id$secret-hash".into(),
            created: 5,
            last_used: None,
        }
    }

    #[test]
    fn a_record_written_before_app_passwords_still_reads() {
        let old = br#"{"name":"bob","role":"rep","enabled":true,"password_hash":"$argon2id$h","created":1,"changed":2}"#;
        let r = decode("bob", old).unwrap();
        assert_eq!(r.user.name, "bob");
        assert!(r.app_passwords.is_empty());
        // ... and a record without app passwords is written the old way.
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("app_passwords"), "{json}");
        let with = UserRecord {
            user: r.user.clone(),
            app_passwords: vec![app("iphone")],
        };
        let json = serde_json::to_vec(&with).unwrap();
        let plain: User = serde_json::from_slice(&json).unwrap();
        assert_eq!(plain.name, "bob", "older readers ignore the new key");
        assert!(!format!("{with:?}").contains("secret-hash"));
    }

    #[tokio::test]
    async fn app_passwords_are_added_revoked_and_audited_without_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        store.user_add("t", user("alice")).await.unwrap().unwrap();
        store
            .app_password_add("cli:root", "alice", app("iphone"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store
                .app_password_add("cli:root", "alice", app("iphone"))
                .await
                .unwrap(),
            Err(UserError::LabelExists {
                user: "alice".into(),
                label: "iphone".into()
            })
        );
        assert_eq!(
            store
                .app_password_add("cli:root", "alice", app("bad label"))
                .await
                .unwrap(),
            Err(UserError::BadLabel("bad label".into()))
        );
        assert_eq!(
            store
                .app_password_add("cli:root", "nobody", app("x"))
                .await
                .unwrap(),
            Err(UserError::NotFound("nobody".into()))
        );
        // A user update keeps the app passwords.
        store
            .user_update("t", "alice", |u| u.email = Some("a@x.test".into()))
            .await
            .unwrap()
            .unwrap();
        store
            .app_password_used("alice", "iphone", 77)
            .await
            .unwrap();
        let r = store.user_record("alice").unwrap().unwrap();
        assert_eq!(r.app_passwords.len(), 1);
        assert_eq!(r.app_passwords[0].last_used, Some(77));
        store
            .app_password_revoke("cli:root", "alice", "iphone")
            .await
            .unwrap()
            .unwrap();
        assert!(store
            .user_record("alice")
            .unwrap()
            .unwrap()
            .app_passwords
            .is_empty());
        assert!(matches!(
            store
                .app_password_revoke("cli:root", "alice", "iphone")
                .await
                .unwrap(),
            Err(UserError::NoSuchLabel { .. })
        ));
        let mut events = Vec::new();
        store
            .audit_events(&Default::default(), |e| {
                events.push(serde_json::to_string(e).unwrap());
                true
            })
            .unwrap();
        let all = events.join("\n");
        assert!(all.contains("user.app_password.add"), "{all}");
        assert!(all.contains("user.app_password.revoke"), "{all}");
        assert!(!all.contains("secret-hash"), "{all}");
    }

    #[tokio::test]
    async fn the_last_digest_date_is_kept_per_manager() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        assert_eq!(store.digest_last_sent("maria").unwrap(), None);
        let event = AuditDraft {
            at: 1,
            actor: "leadgate".into(),
            action: "digest.sent".into(),
            lead: None,
            changes: Vec::new(),
            reason: "to maria".into(),
        };
        store
            .digest_mark_sent("maria", "2026-11-23", event)
            .await
            .unwrap();
        assert_eq!(
            store.digest_last_sent("maria").unwrap().as_deref(),
            Some("2026-11-23")
        );
        assert_eq!(store.digest_last_sent("bob").unwrap(), None);
        assert!(store.audit_verify().unwrap().is_ok());
    }
}
