//! Administration: the commands behind `leadgate user ...`, `leadgate
//! app-password ...`, `leadgate lead ...` and `leadgate review`, the local
//! admin socket of a running daemon, and the managers' digest.
//!
//! There is one implementation of every command, [`execute`], over an
//! [`AdminCtx`]. The running daemon holds the store as its one writer, so
//! the CLI sends the command over the admin socket ([`socket`], spoken by
//! [`client`]) and the daemon runs it with its own store, lead book and
//! session registry; with the daemon stopped the CLI builds an `AdminCtx`
//! over the store itself ([`AdminCtx::open_local`]) and runs the very same
//! function in-process.
//!
//! Every change is made as an admin principal named after the person at
//! the keyboard, `cli:<unix user>`, so policy lets it through and the audit
//! log says who did it.

pub mod client;
pub mod clientcfg;
pub mod digest;
pub mod report;
pub mod socket;

use std::{path::PathBuf, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::{
    auth::{generate_app_password, hash_password, HashError, Principal},
    config::{AuthConfig, Config},
    index::Index,
    leads::{
        book::{Acted, BookError, LeadAction, LeadBook, SystemClock},
        LeadId, Outcome, Status,
    },
    net::sessions::SessionRegistry,
    smtp::relay::Outbound,
    store::{
        audit::AuditFilter,
        config::AuditConfig,
        erase::{BadTarget, ContactEraseError, EraseReport, EraseTarget},
        retention::ExportTo,
        users::{AppPassword, Role, User, UserError},
        Store, StoreError,
    },
};

/// What an admin command needs: the daemon's own handles, or ones opened
/// by the CLI over a stopped daemon's store.
pub struct AdminCtx {
    pub store: Store,
    pub book: Arc<LeadBook>,
    pub sessions: Arc<SessionRegistry>,
    pub auth_config: AuthConfig,
    pub config: Arc<Config>,
    /// For sending mail on demand; `None` in the CLI's own process.
    pub outbound: Option<Arc<Outbound>>,
    /// The daemon's message index (`None` in the CLI's own process).
    pub index: Option<Arc<Index>>,
}

impl AdminCtx {
    /// The CLI's context with the daemon stopped (or its socket out of
    /// reach): the store opened directly, a lead book loaded from it, no
    /// sessions. `read_only` opens the store beside a possibly running
    /// daemon, for commands that only look.
    pub fn open_local(config: Arc<Config>, read_only: bool) -> Result<AdminCtx, AdminError> {
        let path = &config.store.path;
        let store = if read_only && path.exists() {
            Store::open_read_only(path)?
        } else {
            Store::open(path)?
        };
        let book = Arc::new(LeadBook::load(
            store.clone(),
            Arc::new(config.leads.clone()),
            Arc::new(SystemClock),
        )?);
        Ok(AdminCtx {
            store,
            book,
            sessions: Arc::new(SessionRegistry::default()),
            auth_config: config.auth.clone(),
            config,
            outbound: None,
            index: None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Book(#[from] BookError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Erase(#[from] ContactEraseError),
    /// The lead book or policy said no; the sentence is for the person.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Invalid(String),
}

/// A password on its way to be hashed: never printed by `Debug`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// One admin command, as the CLI parsed it (and as it travels over the
/// socket, tagged by `cmd`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    UserAdd {
        name: String,
        role: Role,
        #[serde(default)]
        email: Option<String>,
        #[serde(default)]
        display_name: Option<String>,
        password: Password,
    },
    UserList,
    UserDisable {
        name: String,
    },
    UserEnable {
        name: String,
    },
    UserPasswd {
        name: String,
        password: Password,
    },
    AppPasswordAdd {
        user: String,
        label: String,
    },
    AppPasswordRevoke {
        user: String,
        label: String,
    },
    AppPasswordList {
        user: String,
    },
    LeadList {
        #[serde(default)]
        status: Option<String>,
        #[serde(default)]
        owner: Option<String>,
        #[serde(default)]
        overdue: bool,
        #[serde(default)]
        all: bool,
        #[serde(default)]
        json: bool,
    },
    LeadShow {
        id: LeadId,
    },
    /// A consistent snapshot of the whole store, written atomically to
    /// `path` (absolute; written by the daemon's user).
    Backup {
        path: std::path::PathBuf,
    },
    LeadAssign {
        id: LeadId,
        to: String,
    },
    LeadHandoff {
        id: LeadId,
        to: String,
        note: String,
    },
    LeadClose {
        id: LeadId,
        outcome: String,
    },
    LeadUnassign {
        id: LeadId,
        note: String,
    },
    Review,
    /// Mail the review to the managers now.
    ReviewSend,
    /// Erase what leadgate holds about a contact (`store::erase`):
    /// `target` is an address, or a domain when `domain` is set.
    ContactErase {
        target: String,
        #[serde(default)]
        domain: bool,
    },
    /// Compact audit events older than the retention into the checkpoint
    /// (`store::retention`).
    AuditCompact {
        /// Write the dropped events here first (absolute path).
        #[serde(default)]
        export: Option<std::path::PathBuf>,
        /// Instead of `[audit] retain_days`.
        #[serde(default)]
        retain_days: Option<u32>,
        /// "Now" in unix ms, for tests that age the log.
        #[serde(default)]
        now_ms: Option<i64>,
    },
}

impl Request {
    /// Commands that only look: beside a running daemon whose socket is out
    /// of reach they still work on the store opened read-only.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Request::UserList
                | Request::AppPasswordList { .. }
                | Request::LeadList { .. }
                | Request::LeadShow { .. }
                | Request::Review
                | Request::Backup { .. }
        )
    }

    /// The command's name, for logs (never its arguments: passwords).
    pub fn name(&self) -> &'static str {
        match self {
            Request::UserAdd { .. } => "user add",
            Request::UserList => "user list",
            Request::UserDisable { .. } => "user disable",
            Request::UserEnable { .. } => "user enable",
            Request::UserPasswd { .. } => "user passwd",
            Request::AppPasswordAdd { .. } => "app-password add",
            Request::AppPasswordRevoke { .. } => "app-password revoke",
            Request::AppPasswordList { .. } => "app-password list",
            Request::LeadList { .. } => "lead list",
            Request::LeadShow { .. } => "lead show",
            Request::Backup { .. } => "backup",
            Request::LeadAssign { .. } => "lead assign",
            Request::LeadHandoff { .. } => "lead handoff",
            Request::LeadClose { .. } => "lead close",
            Request::LeadUnassign { .. } => "lead unassign",
            Request::Review => "review",
            Request::ReviewSend => "review --send",
            Request::ContactErase { .. } => "contact erase",
            Request::AuditCompact { .. } => "audit compact",
        }
    }
}

/// Who runs the CLI in its own process, for the audit log:
/// `cli:<unix user>` (the user behind sudo when there is one).
pub fn local_actor() -> String {
    let who = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{}", crate::auth::sanitize_log(&who))
}

/// The principal admin commands act as: an admin, named after the actor.
pub fn admin_principal(actor: &str) -> Principal {
    Principal {
        name: actor.to_owned(),
        role: Role::Admin,
        email: None,
        display_name: None,
    }
}

/// New passwords need some length; the rest is the person's business.
pub const MIN_PASSWORD_LEN: usize = 8;

fn check_password(p: &Password) -> Result<(), AdminError> {
    if p.0.chars().count() < MIN_PASSWORD_LEN {
        return Err(AdminError::Invalid(format!(
            "a password needs at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

async fn hash(password: String, cfg: &AuthConfig) -> Result<String, AdminError> {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || hash_password(&password, &cfg))
        .await
        .map_err(|e| AdminError::Invalid(format!("hashing failed: {e}")))?
        .map_err(AdminError::from)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Runs one command as `actor` and returns what to print.
pub async fn execute(ctx: &AdminCtx, actor: &str, request: Request) -> Result<String, AdminError> {
    let now = ctx.book.now();
    let tz = ctx.book.calendar().time_zone();
    match request {
        Request::UserAdd {
            name,
            role,
            email,
            display_name,
            password,
        } => {
            check_password(&password)?;
            let now = chrono::Utc::now().timestamp();
            let user = User {
                name: name.clone(),
                role,
                enabled: true,
                password_hash: hash(password.0, &ctx.auth_config).await?,
                email,
                display_name,
                created: now,
                changed: now,
            };
            ctx.store.user_add(actor, user).await??;
            ctx.book.refresh_users()?;
            Ok(format!("user {name} added ({role})\n"))
        }
        Request::UserList => Ok(report::user_table(&ctx.store.user_list()?)),
        Request::UserDisable { name } => disable(ctx, actor, &name).await,
        Request::UserEnable { name } => {
            ctx.store
                .user_update(actor, &name, |u| u.enabled = true)
                .await??;
            ctx.book.refresh_users()?;
            Ok(format!("user {name} enabled\n"))
        }
        Request::UserPasswd { name, password } => {
            check_password(&password)?;
            if ctx.store.user_get(&name)?.is_none() {
                return Err(UserError::NotFound(name).into());
            }
            let hash = hash(password.0, &ctx.auth_config).await?;
            ctx.store
                .user_update(actor, &name, move |u| u.password_hash = hash.clone())
                .await??;
            Ok(format!("password of {name} changed\n"))
        }
        Request::AppPasswordAdd { user, label } => {
            if ctx.store.user_get(&user)?.is_none() {
                return Err(UserError::NotFound(user).into());
            }
            let secret = generate_app_password();
            let app = AppPassword {
                label: label.clone(),
                hash: hash(secret.clone(), &ctx.auth_config).await?,
                created: chrono::Utc::now().timestamp(),
                last_used: None,
            };
            ctx.store.app_password_add(actor, &user, app).await??;
            Ok(format!(
                "app password {label} of {user} added. Enter it as the password on that \
                 device; it is shown only now:\n{secret}\n"
            ))
        }
        Request::AppPasswordRevoke { user, label } => {
            ctx.store
                .app_password_revoke(actor, &user, &label)
                .await??;
            // Sessions do not record which credential opened them, so all
            // of the user's sessions end; their clients log in again with
            // what they still hold.
            let ended = ctx.sessions.kick(&user);
            Ok(format!(
                "app password {label} of {user} revoked; {} of {user} ended\n",
                plural(ended, "open session", "open sessions")
            ))
        }
        Request::AppPasswordList { user } => {
            let record = ctx
                .store
                .user_record(&user)?
                .ok_or_else(|| UserError::NotFound(user.clone()))?;
            Ok(report::app_password_table(&record.app_passwords, tz))
        }
        Request::LeadList {
            status,
            owner,
            overdue,
            all,
            json,
        } => {
            let filter = report::LeadFilter {
                status: status
                    .map(|s| s.parse::<Status>())
                    .transpose()
                    .map_err(|e| AdminError::Invalid(e.to_string()))?,
                owner,
                overdue,
                all,
            };
            let mut leads = ctx.book.all();
            leads.retain(|l| filter.matches(l, now));
            leads.sort_by_key(|l| l.id);
            if json {
                let mut out = String::new();
                for l in &leads {
                    let mut v = serde_json::to_value(&**l)
                        .map_err(|e| AdminError::Invalid(e.to_string()))?;
                    v["overdue"] = serde_json::Value::Bool(l.is_overdue(now));
                    out.push_str(&v.to_string());
                    out.push('\n');
                }
                Ok(out)
            } else {
                let refs: Vec<&crate::leads::Lead> = leads.iter().map(|l| &**l).collect();
                Ok(report::lead_table(&refs, now, tz))
            }
        }
        Request::Backup { path } => {
            let store = ctx.store.clone();
            let path = path.clone();
            let report = tokio::task::spawn_blocking(move || store.backup_to(&path))
                .await
                .map_err(|_| StoreError::WriterGone)??;
            Ok(format!("{report}\n"))
        }
        Request::LeadShow { id } => {
            let lead = ctx
                .book
                .lead(id)
                .ok_or(AdminError::Book(BookError::NoLead(id)))?;
            let store = ctx.store.clone();
            let events = tokio::task::spawn_blocking(move || {
                let mut events = Vec::new();
                let filter = AuditFilter {
                    lead: Some(id),
                    ..Default::default()
                };
                store
                    .audit_events(&filter, |e| {
                        events.push(e.clone());
                        true
                    })
                    .map(|_| events)
            })
            .await
            .map_err(|_| StoreError::WriterGone)??;
            let held: Vec<_> = ctx
                .store
                .held_all()?
                .into_iter()
                .filter(|h| h.lead == id)
                .collect();
            let mut out = report::lead_detail(&lead, &events, now, tz);
            out.push_str(&report::held_list(&held, tz));
            Ok(out)
        }
        Request::LeadAssign { id, to } => {
            act(ctx, actor, id, LeadAction::AssignTo(to.clone())).await?;
            Ok(format!("lead {id} assigned to {to}\n"))
        }
        Request::LeadHandoff { id, to, note } => {
            act(
                ctx,
                actor,
                id,
                LeadAction::Handoff {
                    to: to.clone(),
                    note,
                },
            )
            .await?;
            Ok(format!("lead {id} handed off to {to}\n"))
        }
        Request::LeadClose { id, outcome } => {
            let outcome: Outcome = outcome
                .parse()
                .map_err(|e: crate::leads::ParseNameError| AdminError::Invalid(e.to_string()))?;
            act(ctx, actor, id, LeadAction::Close(outcome)).await?;
            Ok(format!("lead {id} closed as {}\n", outcome.label()))
        }
        Request::LeadUnassign { id, note } => {
            act(ctx, actor, id, LeadAction::Unassign { note }).await?;
            Ok(format!("lead {id} is unassigned\n"))
        }
        Request::Review => Ok(digest::digest_text(&ctx.book, &ctx.config.views, now)),
        Request::ContactErase { target, domain } => {
            erase_contact(ctx, actor, &target, domain).await
        }
        Request::AuditCompact {
            export,
            retain_days,
            now_ms,
        } => {
            let days = retain_days
                .or(ctx.config.audit.retain_days)
                .ok_or_else(|| {
                    AdminError::Invalid(
                        "no retention: set [audit] retain_days, or give --retain-days".into(),
                    )
                })?;
            if days == 0 {
                return Err(AdminError::Invalid(
                    "--retain-days must be at least 1".into(),
                ));
            }
            let export = export
                .map(ExportTo::File)
                .or_else(|| ctx.config.audit.export_dir.clone().map(ExportTo::Dir));
            let now_ms = now_ms.unwrap_or(now * 1000);
            let r = ctx
                .store
                .audit_compact(AuditConfig::cutoff(days, now_ms), export, actor, now_ms)
                .await
                .map_err(|e| AdminError::Invalid(e.to_string()))?;
            Ok(format!("{r}\n"))
        }
        Request::ReviewSend => {
            let Some(outbound) = &ctx.outbound else {
                return Err(AdminError::Invalid(
                    "sending the review needs the running daemon and an outgoing relay \
                     ([smtp.relay] or delivery = \"direct\")"
                        .into(),
                ));
            };
            let lines =
                digest::send_now(&ctx.book, &ctx.store, &ctx.config, outbound, actor, now).await?;
            Ok(lines.join("\n") + "\n")
        }
    }
}

/// Parses what `contact erase` was given.
pub fn erase_target(target: &str, domain: bool) -> Result<EraseTarget, BadTarget> {
    if domain {
        EraseTarget::domain(target)
    } else {
        EraseTarget::address(target)
    }
}

/// `contact erase`: the store's erasure, then what this process keeps in
/// memory (the lead book; the daemon's message index, whose sessions see
/// the messages expunged).
async fn erase_contact(
    ctx: &AdminCtx,
    actor: &str,
    target: &str,
    domain: bool,
) -> Result<String, AdminError> {
    let target = erase_target(target, domain).map_err(ContactEraseError::from)?;
    let at_ms = ctx.book.now() * 1000;
    let r = ctx
        .store
        .erase_contact(target.clone(), actor, at_ms)
        .await?;
    let o = &r.outcome;
    let mut changed = o.leads.clone();
    changed.extend(o.other_leads.iter().cloned());
    ctx.book.install_erased(o.revision, changed);
    if let Some(index) = &ctx.index {
        index.forget_erased(&o.messages);
    }
    Ok(erase_summary(&target, &r))
}

/// What `contact erase` prints.
pub fn erase_summary(target: &EraseTarget, r: &EraseReport) -> String {
    let o = &r.outcome;
    let mut out = format!(
        "erased the {}: {} of the contact, notes in {}, {}, personal data of {}, {}\n",
        target.kind(),
        plural(o.leads.len(), "lead", "leads"),
        plural(o.other_leads.len(), "other lead", "other leads"),
        plural(o.messages.len(), "indexed message", "indexed messages"),
        plural(o.events as usize, "audit event", "audit events"),
        plural(o.queued as usize, "queued item", "queued items"),
    );
    if let Some(ev) = &o.event {
        let hash = ev.changes.first().map_or("", |c| c.after.as_str());
        out.push_str(&format!(
            "recorded as audit event {} (contact.erase, {}_hash {hash})\n",
            ev.seq,
            target.kind()
        ));
    }
    out.push_str(&format!(
        "store file rewritten ({} -> {} bytes in {} ms); its bytes hold no trace of the {}\n\
         the mail itself is still on the upstream server: deleting it there is the mail server's job; \
         backups made before now still hold the {}\n",
        r.rewrite.bytes_before,
        r.rewrite.bytes_after,
        r.rewrite.millis,
        target.kind(),
        target.kind()
    ));
    out
}

async fn act(
    ctx: &AdminCtx,
    actor: &str,
    id: LeadId,
    action: LeadAction,
) -> Result<(), AdminError> {
    match ctx.book.act(&admin_principal(actor), id, action).await? {
        Acted::Done(_) => Ok(()),
        Acted::Refused(reason) => Err(AdminError::Refused(reason)),
    }
}

/// Disables a user: no more logins, their open sessions end at once, the
/// round-robin stops picking them, and their active leads go to
/// `admin.disabled_leads_to` (when that is an active user) or back to
/// Unassigned, each change audited.
async fn disable(ctx: &AdminCtx, actor: &str, name: &str) -> Result<String, AdminError> {
    ctx.store
        .user_update(actor, name, |u| u.enabled = false)
        .await??;
    let ended = ctx.sessions.kick(name);
    ctx.book.refresh_users()?;
    let mut out = format!(
        "user {name} disabled; {} ended\n",
        plural(ended, "open session", "open sessions")
    );
    let target = ctx
        .config
        .admin
        .disabled_leads_to
        .as_deref()
        .filter(|t| *t != name);
    let target = match target {
        Some(t) if ctx.book.users().iter().any(|u| u == t) => Some(t),
        Some(t) => {
            out.push_str(&format!(
                "admin.disabled_leads_to names {t}, who is not an active user: leads go to Unassigned\n"
            ));
            None
        }
        None => None,
    };
    let moved = ctx
        .book
        .reassign_all_of(name, target, &admin_principal(actor))
        .await?;
    let ids = moved
        .iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let leads = plural(moved.len(), "active lead", "active leads");
    match (target, moved.is_empty()) {
        (_, true) => out.push_str(&format!("{name} had no active leads\n")),
        (Some(t), false) => out.push_str(&format!("{leads} handed to {t}: {ids}\n")),
        (None, false) => out.push_str(&format!("{leads} back in Unassigned: {ids}\n")),
    }
    Ok(out)
}

/// One request line on the admin socket: the command, plus what lets the
/// daemon check it is the one the CLI means and name the person.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireRequest {
    /// The store the CLI's config names. A daemon serving another store
    /// answers `wrong-store` (two instances on one machine, a socket path
    /// shared by mistake) and the CLI does not use it.
    #[serde(default)]
    pub store: Option<PathBuf>,
    /// `$SUDO_USER` of the CLI; believed only when the peer is root (who
    /// could claim anything anyway), so the audit log names the person.
    #[serde(default)]
    pub sudo_user: Option<String>,
    pub request: Request,
}

/// One response line: `{"ok":true,"output":"..."}` or
/// `{"ok":false,"error":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set to `wrong-store` when the daemon serves another store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl Response {
    pub fn ok(output: String) -> Response {
        Response {
            ok: true,
            output: Some(output),
            error: None,
            kind: None,
        }
    }

    pub fn error(error: impl Into<String>) -> Response {
        Response {
            ok: false,
            output: None,
            error: Some(error.into()),
            kind: None,
        }
    }
}

/// Whether two store paths name the same file (canonical when they exist).
pub fn same_store(a: &std::path::Path, b: &std::path::Path) -> bool {
    let canon = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    a == b || canon(a) == canon(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        leads::{
            book::{Ingested, ManualClock},
            threading::MessageFacts,
        },
        store::audit::AuditFilter,
    };

    /// Monday 2026-11-23 10:00 UTC.
    const MONDAY_10: i64 = 1_795_428_000;

    fn config(dir: &std::path::Path, extra: &str) -> Arc<Config> {
        let text = format!(
            r#"
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
path = "{}/s.redb"

[auth]
argon2_memory_kib = 64
argon2_iterations = 1

[admin]
socket = "{}/admin.sock"
{extra}
"#,
            dir.display(),
            dir.display()
        );
        Arc::new(Config::parse(&text).unwrap())
    }

    /// A context over a fresh store with alice and bob (reps) and maria
    /// (manager), and `n` leads assigned round-robin (alice first).
    async fn ctx(dir: &std::path::Path, extra: &str, n: u64) -> AdminCtx {
        let config = config(dir, extra);
        let store = Store::open(&config.store.path).unwrap();
        for (name, role) in [
            ("alice", Role::Rep),
            ("bob", Role::Rep),
            ("maria", Role::Manager),
        ] {
            let user = User {
                name: name.into(),
                role,
                enabled: true,
                password_hash: hash_password("pw-pw-pw-pw", &config.auth).unwrap(),
                email: Some(format!("{name}@example.com")),
                display_name: None,
                created: 0,
                changed: 0,
            };
            store.user_add("test", user).await.unwrap().unwrap();
        }
        let book = Arc::new(
            LeadBook::load(
                store.clone(),
                Arc::new(config.leads.clone()),
                Arc::new(ManualClock::new(MONDAY_10)),
            )
            .unwrap(),
        );
        for key in 1..=n {
            let facts = MessageFacts {
                message_id: Some(format!("<m{key}@c{key}.test>")),
                subject: format!("Quote request {key}"),
                from: format!("buyer@c{key}.test"),
                to: vec!["sales@example.com".into()],
                date: MONDAY_10,
                body_text: "Could you send a quote for 40 seats?".into(),
                ..MessageFacts::default()
            };
            let got = book.ingest(key, facts, MONDAY_10).await.unwrap();
            assert!(matches!(got, Ingested::Created(_)), "{got:?}");
        }
        AdminCtx {
            store,
            book,
            sessions: Arc::new(SessionRegistry::default()),
            auth_config: config.auth.clone(),
            config,
            outbound: None,
            index: None,
        }
    }

    fn timeline(store: &Store, lead: LeadId) -> Vec<String> {
        let mut out = Vec::new();
        store
            .audit_events(
                &AuditFilter {
                    lead: Some(lead),
                    ..Default::default()
                },
                |e| {
                    out.push(format!("{} {}", e.actor, e.action));
                    true
                },
            )
            .unwrap();
        out
    }

    /// What `lead list --all --json`, `lead show 2` and `audit export`
    /// print, lower case.
    async fn all(ctx: &AdminCtx) -> String {
        let list = execute(
            ctx,
            "cli:root",
            Request::LeadList {
                status: None,
                owner: None,
                overdue: false,
                all: true,
                json: true,
            },
        )
        .await
        .unwrap();
        let show = execute(ctx, "cli:root", Request::LeadShow { id: 2 })
            .await
            .unwrap();
        let mut export = String::new();
        ctx.store
            .audit_events(&AuditFilter::default(), |e| {
                export.push_str(&serde_json::to_string(e).unwrap());
                true
            })
            .unwrap();
        (list + &show + &export).to_lowercase()
    }

    #[tokio::test]
    async fn contact_erase_leaves_no_trace_in_lead_list_lead_show_or_audit_export() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx(dir.path(), "", 3).await;
        let before = all(&ctx).await;
        assert!(before.contains("buyer@c2.test") && before.contains("quote request 2"));

        for bad in ["", "buyer", "buyer@c2..test"] {
            let err = execute(
                &ctx,
                "cli:root",
                Request::ContactErase {
                    target: bad.into(),
                    domain: false,
                },
            )
            .await
            .unwrap_err();
            assert!(err.to_string().contains("address"), "{bad:?}: {err}");
        }
        assert_eq!(all(&ctx).await, before, "bad input changed nothing");

        let out = execute(
            &ctx,
            "cli:root",
            Request::ContactErase {
                target: "Buyer@C2.test".into(),
                domain: false,
            },
        )
        .await
        .unwrap();
        assert!(out.contains("1 lead of the contact"), "{out}");
        assert!(out.contains("upstream"), "{out}");
        let after = all(&ctx).await;
        for gone in ["buyer@c2.test", "quote request 2"] {
            assert!(!after.contains(gone), "{gone} still shown:\n{after}");
        }
        assert!(after.contains("buyer@c1.test") && after.contains("quote request 3"));
        assert!(after.contains("contact.erase"));
        assert!(ctx.store.audit_verify().unwrap().is_ok());
        let bytes = std::fs::read(&ctx.config.store.path).unwrap();
        assert!(memchr::memmem::find(&bytes, b"buyer@c2.test").is_none());
    }

    #[tokio::test]
    async fn disabling_a_user_ends_their_sessions_and_returns_their_leads() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx(dir.path(), "", 3).await;
        assert_eq!(ctx.book.lead(1).unwrap().owner.as_deref(), Some("alice"));
        assert_eq!(ctx.book.lead(3).unwrap().owner.as_deref(), Some("alice"));
        let ticket = ctx.sessions.register("alice");
        let bobs = ctx.sessions.register("bob");

        let out = execute(
            &ctx,
            "cli:tester",
            Request::UserDisable {
                name: "alice".into(),
            },
        )
        .await
        .unwrap();
        assert!(out.contains("1 open session ended"), "{out}");
        assert!(
            out.contains("2 active leads back in Unassigned: 1, 3"),
            "{out}"
        );
        assert!(*ticket.kicked.borrow(), "alice's session was told to end");
        assert!(!*bobs.kicked.borrow());
        assert_eq!(ctx.book.lead(1).unwrap().owner, None);
        assert_eq!(ctx.book.lead(2).unwrap().owner.as_deref(), Some("bob"));
        assert_eq!(ctx.book.reps(), ["bob"], "round-robin skips alice now");
        assert!(!ctx.store.user_get("alice").unwrap().unwrap().enabled);
        assert_eq!(
            timeline(&ctx.store, 1),
            ["leadgate lead.create", "cli:tester lead.unassign"]
        );
        let unassigned = execute(
            &ctx,
            "cli:tester",
            Request::LeadList {
                status: None,
                owner: Some("-".into()),
                overdue: false,
                all: false,
                json: true,
            },
        )
        .await
        .unwrap();
        assert_eq!(unassigned.lines().count(), 2, "{unassigned}");
    }

    #[tokio::test]
    async fn a_disabled_users_leads_can_go_to_a_manager() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx(dir.path(), "disabled_leads_to = \"maria\"", 2).await;
        let out = execute(
            &ctx,
            "cli:tester",
            Request::UserDisable { name: "bob".into() },
        )
        .await
        .unwrap();
        assert!(out.contains("1 active lead handed to maria: 2"), "{out}");
        let lead = ctx.book.lead(2).unwrap();
        assert_eq!(lead.owner.as_deref(), Some("maria"));
        assert!(lead
            .handoffs
            .last()
            .unwrap()
            .note
            .contains("no longer active"));
        assert_eq!(
            timeline(&ctx.store, 2),
            ["leadgate lead.create", "cli:tester lead.handoff"]
        );
    }

    #[tokio::test]
    async fn lead_commands_act_as_an_admin_and_refusals_come_back_as_errors() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx(dir.path(), "", 1).await;
        let run = |r| execute(&ctx, "cli:tester", r);
        assert_eq!(
            run(Request::LeadAssign {
                id: 1,
                to: "bob".into()
            })
            .await
            .unwrap(),
            "lead 1 assigned to bob\n"
        );
        run(Request::LeadHandoff {
            id: 1,
            to: "maria".into(),
            note: "CFO is her contact".into(),
        })
        .await
        .unwrap();
        run(Request::LeadUnassign {
            id: 1,
            note: "triage again".into(),
        })
        .await
        .unwrap();
        let err = run(Request::LeadAssign {
            id: 1,
            to: "mallory".into(),
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("no active user mallory"), "{err}");
        let err = run(Request::LeadClose {
            id: 1,
            outcome: "maybe".into(),
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("unknown outcome"), "{err}");
        assert_eq!(
            run(Request::LeadClose {
                id: 1,
                outcome: "won".into()
            })
            .await
            .unwrap(),
            "lead 1 closed as Won\n"
        );
        let shown = run(Request::LeadShow { id: 1 }).await.unwrap();
        assert!(shown.contains("Won"), "{shown}");
        assert!(shown.contains("cli:tester"), "{shown}");
        assert!(run(Request::LeadShow { id: 99 }).await.is_err());
        assert_eq!(
            timeline(&ctx.store, 1),
            [
                "leadgate lead.create",
                "cli:tester lead.assign",
                "cli:tester lead.handoff",
                "cli:tester lead.unassign",
                "cli:tester lead.close"
            ]
        );
        let review = run(Request::Review).await.unwrap();
        assert!(
            review.starts_with("Sales inbox review for Mon 2026-11-23"),
            "{review}"
        );
    }

    #[tokio::test]
    async fn app_passwords_are_shown_once_listed_without_hashes_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx(dir.path(), "", 0).await;
        let run = |r| execute(&ctx, "cli:tester", r);
        let out = run(Request::AppPasswordAdd {
            user: "alice".into(),
            label: "iphone".into(),
        })
        .await
        .unwrap();
        let secret = out.lines().last().unwrap().to_owned();
        assert_eq!(secret.len(), crate::auth::APP_PASSWORD_LEN, "{out}");
        let auth = crate::auth::Authenticator::new(ctx.store.clone(), ctx.auth_config.clone());
        let ip = "127.0.0.1".parse().unwrap();
        auth.login("alice", &secret, ip, "imap").await.unwrap();
        let list = run(Request::AppPasswordList {
            user: "alice".into(),
        })
        .await
        .unwrap();
        assert!(list.contains("iphone"), "{list}");
        assert!(!list.contains("argon2"), "{list}");
        let session = ctx.sessions.register("alice");
        let out = run(Request::AppPasswordRevoke {
            user: "alice".into(),
            label: "iphone".into(),
        })
        .await
        .unwrap();
        assert!(out.contains("1 open session of alice ended"), "{out}");
        assert!(*session.kicked.borrow());
        assert!(auth.login("alice", &secret, ip, "imap").await.is_err());
        let err = run(Request::AppPasswordAdd {
            user: "alice".into(),
            label: "my phone".into(),
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("label"), "{err}");
    }

    #[tokio::test]
    async fn user_commands_check_passwords_and_refresh_the_team() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx(dir.path(), "", 0).await;
        let run = |r| execute(&ctx, "cli:tester", r);
        let err = run(Request::UserAdd {
            name: "carol".into(),
            role: Role::Rep,
            email: None,
            display_name: None,
            password: Password("short".into()),
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("at least 8"), "{err}");
        run(Request::UserAdd {
            name: "carol".into(),
            role: Role::Rep,
            email: None,
            display_name: None,
            password: Password("carol-password".into()),
        })
        .await
        .unwrap();
        assert_eq!(ctx.book.reps(), ["alice", "bob", "carol"]);
        let list = run(Request::UserList).await.unwrap();
        assert!(list.starts_with("name"), "{list}");
        assert!(list.contains("carol"), "{list}");
        let err = run(Request::UserPasswd {
            name: "nobody".into(),
            password: Password("long-enough".into()),
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("no user nobody"), "{err}");
    }

    #[test]
    fn requests_travel_as_tagged_json_and_hide_passwords() {
        let r: WireRequest =
            serde_json::from_str(r#"{"request":{"cmd":"user-disable","name":"bob"}}"#).unwrap();
        assert!(matches!(r.request, Request::UserDisable { ref name } if name == "bob"));
        assert!(serde_json::from_str::<WireRequest>(
            r#"{"request":{"cmd":"user-disable","name":"bob","x":1}}"#
        )
        .is_err());
        let add = Request::UserAdd {
            name: "c".into(),
            role: Role::Rep,
            email: None,
            display_name: None,
            password: Password("hunter2-hunter2".into()),
        };
        assert!(!format!("{add:?}").contains("hunter2"));
        assert_eq!(
            serde_json::to_string(&Response::ok("hi\n".into())).unwrap(),
            r#"{"ok":true,"output":"hi\n"}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::error("no")).unwrap(),
            r#"{"ok":false,"error":"no"}"#
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_socket_answers_its_own_store_only_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ctx = Arc::new(ctx(dir.path(), "", 0).await);
        let path = ctx.config.admin.socket.clone();
        // A socket file left by a dead daemon is replaced.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let listener = socket::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(
            socket::bind(&path),
            Err(socket::SocketError::InUse { .. })
        ));
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(socket::serve(listener, ctx.clone(), shutdown));

        let call = |store: PathBuf, sudo: Option<&str>, request: Request| {
            let path = path.clone();
            let wire = WireRequest {
                store: Some(store),
                sudo_user: sudo.map(str::to_owned),
                request,
            };
            tokio::task::spawn_blocking(move || client::call(&path, &wire))
        };
        let store = ctx.config.store.path.clone();
        match call(store.clone(), None, Request::UserList).await.unwrap() {
            client::Reach::Answered(r) => {
                assert!(r.ok, "{r:?}");
                assert!(r.output.unwrap().starts_with("name"));
            }
            other => panic!("{other:?}"),
        }
        match call(dir.path().join("other.redb"), None, Request::UserList)
            .await
            .unwrap()
        {
            client::Reach::NotThere(why) => assert!(why.contains("serves the store"), "{why}"),
            other => panic!("{other:?}"),
        }
        match call(
            store.clone(),
            Some("alice"),
            Request::UserEnable {
                name: "nobody".into(),
            },
        )
        .await
        .unwrap()
        {
            client::Reach::Answered(r) => {
                assert!(!r.ok);
                assert_eq!(r.error.as_deref(), Some("no user nobody"));
            }
            other => panic!("{other:?}"),
        }
        match call(
            store.clone(),
            Some("alice"),
            Request::UserEnable { name: "bob".into() },
        )
        .await
        .unwrap()
        {
            client::Reach::Answered(r) => assert!(r.ok, "{r:?}"),
            other => panic!("{other:?}"),
        }
        let mut actors = Vec::new();
        ctx.store
            .audit_events(
                &AuditFilter {
                    action_prefix: Some("user.update".into()),
                    ..Default::default()
                },
                |e| {
                    actors.push(e.actor.clone());
                    true
                },
            )
            .unwrap();
        let uid = std::fs::metadata("/proc/self").ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid()
        });
        let expected = if uid == Some(0) {
            "cli:alice".to_owned()
        } else {
            socket::peer_actor(uid, None)
        };
        assert_eq!(actors, [expected]);

        // A request that is too long, or garbage, gets an error line.
        let p = path.clone();
        let answer = tokio::task::spawn_blocking(move || {
            use std::io::{BufRead, Write};
            let mut s = std::os::unix::net::UnixStream::connect(&p).unwrap();
            let _ = s.write_all(&vec![b'x'; socket::MAX_REQUEST + 100]);
            let mut line = String::new();
            std::io::BufReader::new(s).read_line(&mut line).unwrap();
            line
        })
        .await
        .unwrap();
        let r: Response = serde_json::from_str(&answer).unwrap();
        assert!(!r.ok && r.error.unwrap().contains("larger than"));

        stop.send(true).unwrap();
        server.await.unwrap();
        assert!(!path.exists(), "the socket is removed at shutdown");
        match call(store, None, Request::UserList).await.unwrap() {
            client::Reach::NotThere(_) => {}
            other => panic!("{other:?}"),
        }
    }
}
