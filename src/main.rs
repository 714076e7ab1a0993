//! The `leadgate` command: run the gateway, check a config, manage users
//! and app passwords, look at and change leads, print the daily review,
//! verify and export the audit log.
//!
//! User, app password, lead and review commands go to the running daemon
//! over its admin socket when it answers, and run in this process over the
//! store otherwise; `leadgate::admin` holds the one implementation both
//! use. Audit commands always read the store directly (read-only).

use std::{
    io::{BufRead, IsTerminal, Write},
    path::PathBuf,
    sync::Arc,
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use leadgate::{
    admin::{
        self,
        client::{self, Reach},
        AdminCtx, Password, Request, WireRequest,
    },
    config::Config,
    store::{audit::AuditFilter, users::Role, Store},
};

#[derive(Parser)]
#[command(
    name = "leadgate",
    version,
    about = "IMAP/SMTP gateway for a shared sales mailbox"
)]
struct Cli {
    /// Configuration file.
    #[arg(
        short,
        long,
        env = "LEADGATE_CONFIG",
        default_value = "/etc/leadgate/leadgate.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Validate the configuration file without binding any port.
    CheckConfig,
    /// Manage leadgate's users (each person's own login).
    #[command(subcommand)]
    User(UserCommand),
    /// Per-device passwords of a user (same as `user app-password`).
    #[command(subcommand)]
    AppPassword(AppPasswordCommand),
    /// Check or export the tamper-evident audit log (works while the
    /// gateway runs).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Look at and change leads.
    #[command(subcommand)]
    Lead(LeadCommand),
    /// The people leads are about.
    #[command(subcommand)]
    Contact(ContactCommand),
    /// Write a consistent snapshot of the whole store to FILE while the
    /// gateway runs (through its admin socket) or when it is stopped;
    /// prints the audit head hash it contains.
    Backup { file: PathBuf },
    /// Put a backup in place of the store (gateway stopped): checks its
    /// schema version and audit chain, keeps the current store as .bak.
    Restore { file: PathBuf },
    /// Setup for a user's mail client: a Thunderbird autoconfig file,
    /// an Outlook Autodiscover response, an Apple .mobileconfig profile,
    /// plain settings, or Thunderbird tags for the lead keywords. Never
    /// contains a password.
    ClientConfig {
        user: String,
        #[arg(long, value_enum, default_value = "text")]
        format: ClientFormat,
        /// The host name clients connect to (default: server.hostname).
        #[arg(long)]
        host: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The managers' daily review queues, as the digest mail shows them.
    Review {
        /// Mail it to every manager now (through the running daemon's
        /// outgoing relay) instead of printing it.
        #[arg(long)]
        send: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ClientFormat {
    Thunderbird,
    Outlook,
    Apple,
    Text,
    ThunderbirdTags,
}

#[derive(Subcommand)]
enum LeadCommand {
    /// Active leads as a table (add --all for closed ones).
    List {
        /// Only this status, e.g. "waiting-for-reply" or "Quote sent".
        #[arg(long)]
        status: Option<String>,
        /// Only this owner's leads ("-" for unassigned).
        #[arg(long)]
        owner: Option<String>,
        /// Only leads past their due time.
        #[arg(long)]
        overdue: bool,
        /// Include closed, won and lost leads.
        #[arg(long)]
        all: bool,
        /// One JSON object per lead instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One lead: context and timeline.
    Show { id: u64 },
    /// Make a user the owner of a lead.
    Assign { id: u64, user: String },
    /// Pass a lead to another user, with the context they need.
    Handoff {
        id: u64,
        user: String,
        /// What the new owner needs to know.
        #[arg(long)]
        note: String,
    },
    /// Close a lead with an outcome: won, lost, unqualified, duplicate,
    /// spam, handed-to-another-team.
    Close { id: u64, outcome: String },
    /// Put a lead back in Unassigned.
    Unassign {
        id: u64,
        /// Why (kept in the lead's handoff history).
        #[arg(long)]
        note: String,
    },
}

#[derive(Subcommand)]
enum ContactCommand {
    /// Erase what leadgate holds about a contact: address, name, the
    /// subjects and text of their leads, their messages in the index,
    /// the personal data of their audit events. The audit chain still
    /// verifies; the mail on the upstream server is not touched.
    Erase {
        /// The contact's address (matched without case).
        #[arg(required_unless_present = "domain", conflicts_with = "domain")]
        address: Option<String>,
        /// Every contact at this domain and its subdomains instead.
        #[arg(long)]
        domain: Option<String>,
        /// Erase in this store file (a backup, a copy) instead of the
        /// config's; the daemon must not hold it.
        #[arg(long)]
        store: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AppPasswordCommand {
    /// Generate an app password for one device; it is printed once.
    Add {
        user: String,
        /// The device, e.g. "iphone" (1-32 of A-Z a-z 0-9 . _ -).
        label: String,
    },
    /// Revoke an app password; the user's open sessions end.
    Revoke { user: String, label: String },
    /// A user's app passwords: labels, created, last used.
    List { user: String },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the whole hash chain; exits 1 naming the first bad sequence
    /// number.
    Verify {
        /// Any store file (a backup, a copy), instead of the config's.
        #[arg(long)]
        store: Option<PathBuf>,
    },
    /// Print events as JSON lines, oldest first.
    Export {
        /// Only events at or after this time: RFC 3339
        /// (2026-05-01T09:00:00+02:00) or a date (2026-05-01, midnight UTC).
        #[arg(long, value_parser = parse_since)]
        since: Option<i64>,
        /// Only events about this lead.
        #[arg(long)]
        lead: Option<u64>,
        /// Only events by this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Only actions starting with this, e.g. `lead.` or `auth.failed`.
        #[arg(long)]
        action: Option<String>,
        /// Any store file (a backup, a copy), instead of the config's.
        #[arg(long)]
        store: Option<PathBuf>,
    },
    /// Compact events older than the retention ([audit] retain_days) into
    /// a checkpoint the chain verifies from; the daemon does it daily.
    Compact {
        /// Write the dropped events to this file first, one JSON object
        /// per line (atomically); if that fails nothing is dropped.
        /// Default: a new file in [audit] export_dir, when set.
        #[arg(long)]
        export: Option<PathBuf>,
        /// Keep this many days instead of [audit] retain_days.
        #[arg(long)]
        retain_days: Option<u32>,
        /// Take this time as now (tests age the log with it).
        #[arg(long, hide = true, value_parser = parse_since)]
        now: Option<i64>,
    },
}

impl AuditCommand {
    /// The store file given with `--store`, if any.
    fn store(&self) -> Option<PathBuf> {
        match self {
            AuditCommand::Verify { store } | AuditCommand::Export { store, .. } => store.clone(),
            AuditCommand::Compact { .. } => None,
        }
    }
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is prompted for, or read from stdin.
    Add {
        name: String,
        #[arg(long, value_enum, default_value_t = Role::Rep)]
        role: Role,
        /// The user's own address (used for their replies).
        #[arg(long)]
        email: Option<String>,
        /// Display name.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List users.
    List,
    /// Stop a user from logging in: their open sessions end and their
    /// active leads go back to Unassigned (or to `admin.disabled_leads_to`).
    Disable { name: String },
    /// Allow a disabled user to log in again.
    Enable { name: String },
    /// Set a user's password (prompted for, or read from stdin).
    Passwd { name: String },
    /// Per-device passwords.
    #[command(subcommand)]
    AppPassword(AppPasswordCommand),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Audit commands on a given store file need no configuration.
    if let Command::Audit(cmd) = &cli.command {
        if let Some(path) = cmd.store() {
            let store = open_path_read_only(&path)?;
            let Command::Audit(cmd) = cli.command else {
                unreachable!()
            };
            if !audit_command(&store, cmd)? {
                std::process::exit(1);
            }
            return Ok(());
        }
    }
    // An erase on a given store file needs no configuration either.
    if let Command::Contact(ContactCommand::Erase {
        address,
        domain,
        store: Some(path),
    }) = &cli.command
    {
        return erase_in_file(address.as_deref(), domain.as_deref(), path);
    }
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::CheckConfig => {
            if let Some(tls) = &config.tls {
                leadgate::net::tls::server_config(&tls.cert, &tls.key_path()?)?;
            }
            config.upstream.imap.resolve_password()?;
            println!("{}: ok", cli.config.display());
            Ok(())
        }
        Command::Serve => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("start runtime")?;
            rt.block_on(leadgate::serve::serve(config, cli.config.clone()))?;
            Ok(())
        }
        Command::User(cmd) => run_admin(config, user_request(cmd)?),
        Command::AppPassword(cmd) => run_admin(config, app_password_request(cmd)),
        Command::Lead(cmd) => run_admin(config, lead_request(cmd)),
        Command::Contact(ContactCommand::Erase {
            address, domain, ..
        }) => {
            let (target, is_domain) = erase_args(address.as_deref(), domain.as_deref())?;
            run_admin(
                config,
                Request::ContactErase {
                    target,
                    domain: is_domain,
                },
            )
        }
        Command::Review { send: false } => run_admin(config, Request::Review),
        Command::Review { send: true } => run_admin(config, Request::ReviewSend),
        Command::Backup { file } => {
            let path = std::path::absolute(&file).context("the backup path")?;
            run_admin(config, Request::Backup { path })
        }
        Command::Restore { file } => {
            let r = leadgate::store::backup::restore(&file, &config.store.path)?;
            if let Some(kept) = &r.kept {
                println!("kept the replaced store as {}", kept.display());
            }
            let head = r.audit_head.map_or_else(
                || "empty".to_owned(),
                |(seq, h)| format!("seq {seq} hash {h}"),
            );
            println!(
                "restored {} to {}: audit log ok ({} events), head {head}",
                file.display(),
                config.store.path.display(),
                r.events
            );
            Ok(())
        }
        Command::Audit(AuditCommand::Compact {
            export,
            retain_days,
            now,
        }) => {
            let export = export
                .map(|p| std::path::absolute(&p).context("the export path"))
                .transpose()?;
            run_admin(
                config,
                Request::AuditCompact {
                    export,
                    retain_days,
                    now_ms: now,
                },
            )
        }
        Command::Audit(cmd) => {
            let store = open_store_read_only(&config)?;
            if !audit_command(&store, cmd)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::ClientConfig {
            user,
            format,
            host,
            out,
        } => client_config(&config, &user, format, host, out),
    }
}

/// `leadgate client-config`: the user must exist; ports come from the
/// IMAP and SMTP listeners, best first.
fn client_config(
    config: &Config,
    user: &str,
    format: ClientFormat,
    host: Option<String>,
    out: Option<PathBuf>,
) -> Result<()> {
    use leadgate::{
        admin::clientcfg::{thunderbird_tags, ClientSetup, Endpoint, Security},
        config::{ListenerConfig, ListenerTls},
    };
    let text = if let ClientFormat::ThunderbirdTags = format {
        thunderbird_tags()
    } else {
        let store = open_store_read_only(config)?;
        let Some(record) = store.user_record(user)? else {
            bail!("no user {user:?} (see `leadgate user list`)");
        };
        let u = record.user;
        let endpoints = |ls: &[ListenerConfig]| -> Vec<Endpoint> {
            ls.iter()
                .filter(|l| {
                    // Port 0 is picked by the system at each start: no client
                    // can be told it.
                    if l.addr.port() == 0 {
                        eprintln!(
                            "leadgate: warning: listener {} left out (port 0 is chosen at start)",
                            l.addr
                        );
                    }
                    l.addr.port() != 0
                })
                .map(|l| Endpoint {
                    port: l.addr.port(),
                    security: match l.tls {
                        ListenerTls::Implicit => Security::Implicit,
                        ListenerTls::Starttls => Security::Starttls,
                        ListenerTls::Plaintext => Security::Plain,
                    },
                })
                .collect()
        };
        let setup = ClientSetup {
            host: host.unwrap_or_else(|| config.server.hostname.clone()),
            imap: endpoints(&config.imap.listeners),
            smtp: endpoints(&config.smtp.listeners),
            login: u.name.clone(),
            email: u.email.clone().unwrap_or_else(|| u.name.clone()),
            display_name: u.display_name.clone().unwrap_or_else(|| u.name.clone()),
        }
        .sorted();
        if setup.imap.is_empty() || setup.smtp.is_empty() {
            bail!("no IMAP or no SMTP listener with a fixed port in the configuration");
        }
        match format {
            ClientFormat::Thunderbird => setup.thunderbird(),
            ClientFormat::Outlook => setup.outlook(),
            ClientFormat::Apple => setup.apple(),
            ClientFormat::Text | ClientFormat::ThunderbirdTags => setup.text(),
        }
    };
    match out {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// The target of `contact erase`, checked here first so bad input never
/// reaches the daemon.
fn erase_args(address: Option<&str>, domain: Option<&str>) -> Result<(String, bool)> {
    let (target, is_domain) = match (address, domain) {
        (_, Some(d)) => (d, true),
        (Some(a), None) => (a, false),
        (None, None) => bail!("give the address to erase, or --domain DOMAIN"),
    };
    admin::erase_target(target, is_domain)?;
    Ok((target.to_owned(), is_domain))
}

/// `contact erase --store FILE`: the erasure over any store file.
fn erase_in_file(
    address: Option<&str>,
    domain: Option<&str>,
    path: &std::path::Path,
) -> Result<()> {
    let (target, is_domain) = erase_args(address, domain)?;
    let target = admin::erase_target(&target, is_domain)?;
    if !path.exists() {
        bail!("no store at {}", path.display());
    }
    let store = Store::open(path).context("open the store (is a leadgate using it?)")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(store.erase_contact(
        target.clone(),
        &admin::local_actor(),
        chrono::Utc::now().timestamp_millis(),
    ));
    store.close();
    print!("{}", admin::erase_summary(&target, &result?));
    Ok(())
}

/// Opens the store beside a running gateway, for commands that only read.
fn open_store_read_only(config: &Config) -> Result<Store> {
    let path = &config.store.path;
    if !path.exists() {
        bail!(
            "no store at {} (check [store] path; leadgate creates it on first start)",
            path.display()
        );
    }
    open_path_read_only(path)
}

/// Opens any store file read-only (beside a running gateway too).
fn open_path_read_only(path: &std::path::Path) -> Result<Store> {
    if !path.exists() {
        bail!("no store at {}", path.display());
    }
    Store::open_read_only(path)
        .context("open the store read-only (beside a running leadgate, it must be this version)")
}

/// `--since`: RFC 3339, or a date taken as midnight UTC; unix milliseconds.
fn parse_since(text: &str) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| {
            format!("{text:?} is neither RFC 3339 (2026-05-01T09:00:00Z) nor a date (2026-05-01)")
        })
}

/// Runs an audit command; false when `verify` found the chain broken.
fn audit_command(store: &Store, cmd: AuditCommand) -> Result<bool> {
    match cmd {
        AuditCommand::Verify { .. } => {
            let report = store.audit_verify()?;
            match report.first_bad {
                None => match &report.checkpoint {
                    None => println!("audit log ok: {} events", report.events),
                    Some(cp) => println!(
                        "audit log ok: {} events, verified from the {cp}",
                        report.events
                    ),
                },
                Some((seq, what)) => {
                    println!("audit log broken at seq {seq}: {what}");
                    return Ok(false);
                }
            }
        }
        AuditCommand::Compact { .. } => bail!("audit compact goes through the admin request"),
        AuditCommand::Export {
            since,
            lead,
            actor,
            action,
            ..
        } => {
            let filter = AuditFilter {
                since_ms: since,
                lead,
                actor,
                action_prefix: action,
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut failed = None;
            store.audit_events(&filter, |ev| {
                let line = serde_json::to_writer(&mut out, ev)
                    .map_err(std::io::Error::from)
                    .and_then(|()| out.write_all(b"\n"));
                match line {
                    Ok(()) => true,
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                }
            })?;
            match failed.map_or_else(|| out.flush(), Err) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other.context("write to stdout")?,
            }
        }
    }
    Ok(true)
}

fn lead_request(cmd: LeadCommand) -> Request {
    match cmd {
        LeadCommand::List {
            status,
            owner,
            overdue,
            all,
            json,
        } => Request::LeadList {
            status,
            owner,
            overdue,
            all,
            json,
        },
        LeadCommand::Show { id } => Request::LeadShow { id },
        LeadCommand::Assign { id, user } => Request::LeadAssign { id, to: user },
        LeadCommand::Handoff { id, user, note } => Request::LeadHandoff { id, to: user, note },
        LeadCommand::Close { id, outcome } => Request::LeadClose { id, outcome },
        LeadCommand::Unassign { id, note } => Request::LeadUnassign { id, note },
    }
}

fn app_password_request(cmd: AppPasswordCommand) -> Request {
    match cmd {
        AppPasswordCommand::Add { user, label } => Request::AppPasswordAdd { user, label },
        AppPasswordCommand::Revoke { user, label } => Request::AppPasswordRevoke { user, label },
        AppPasswordCommand::List { user } => Request::AppPasswordList { user },
    }
}

/// Builds the request; asks for a password where one is needed.
fn user_request(cmd: UserCommand) -> Result<Request> {
    Ok(match cmd {
        UserCommand::Add {
            name,
            role,
            email,
            display_name,
        } => Request::UserAdd {
            name,
            role,
            email,
            display_name,
            password: read_password()?,
        },
        UserCommand::List => Request::UserList,
        UserCommand::Disable { name } => Request::UserDisable { name },
        UserCommand::Enable { name } => Request::UserEnable { name },
        UserCommand::Passwd { name } => Request::UserPasswd {
            name,
            password: read_password()?,
        },
        UserCommand::AppPassword(cmd) => app_password_request(cmd),
    })
}

/// Runs an admin command: through the daemon's admin socket when it
/// answers, else in this process over the store; prints what it says.
fn run_admin(config: Config, request: Request) -> Result<()> {
    let config = Arc::new(config);
    let socket = config.admin.socket.clone();
    let wire = WireRequest {
        store: Some(config.store.path.clone()),
        sudo_user: std::env::var("SUDO_USER").ok(),
        request,
    };
    let output = match client::call(&socket, &wire) {
        Reach::Answered(r) if r.ok => r.output.unwrap_or_default(),
        Reach::Answered(r) => bail!("{}", r.error.unwrap_or_else(|| "failed".into())),
        Reach::Broken(why) => bail!(
            "the running leadgate did not answer completely ({why}); \
             `leadgate audit export` shows whether the change was made"
        ),
        Reach::NotThere(_) => in_process(config, wire.request, None)?,
        Reach::Unreachable(why) => in_process(config, wire.request, Some(why))?,
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(output.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("write to stdout"),
    }
}

/// The command run here, over the store opened directly (read-only for
/// commands that only look, so those work beside a running daemon).
fn in_process(
    config: Arc<Config>,
    request: Request,
    socket_problem: Option<String>,
) -> Result<String> {
    let read_only = request.is_read_only();
    if read_only && !config.store.path.exists() {
        bail!(
            "no store at {} (check [store] path; leadgate creates it on first start)",
            config.store.path.display()
        );
    }
    let ctx =
        AdminCtx::open_local(config.clone(), read_only).with_context(|| match &socket_problem {
            Some(why) => format!(
                "leadgate seems to be running, and its admin socket cannot be used ({why}); \
                 run this as the daemon's user or root"
            ),
            None => format!(
                "is leadgate running without its admin socket {}? \
                 (check [admin] socket and the daemon's log)",
                config.admin.socket.display()
            ),
        })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(admin::execute(&ctx, &admin::local_actor(), request));
    // Commit what is queued and close the file cleanly before exiting.
    ctx.store.close();
    Ok(result?)
}

/// Reads a new password: prompted twice on a terminal, one line from stdin
/// otherwise.
fn read_password() -> Result<Password> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let a = rpassword::prompt_password("New password: ")?;
        let b = rpassword::prompt_password("Repeat password: ")?;
        if a != b {
            bail!("the passwords differ");
        }
        a
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.chars().count() < admin::MIN_PASSWORD_LEN {
        bail!(
            "a password needs at least {} characters",
            admin::MIN_PASSWORD_LEN
        );
    }
    Ok(Password(password))
}
