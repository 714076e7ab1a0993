//! The `leadgate` command: run the gateway, check a config, manage users,
//! verify and export the audit log.

use std::{
    io::{BufRead, IsTerminal, Write},
    path::PathBuf,
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use leadgate::{
    auth::hash_password,
    config::Config,
    store::{
        audit::AuditFilter,
        users::{Role, User},
        Store,
    },
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
    /// Check or export the tamper-evident audit log (works while the
    /// gateway runs).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Look at leads (works while the gateway runs).
    #[command(subcommand)]
    Lead(LeadCommand),
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
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the whole hash chain; exits 1 naming the first bad sequence
    /// number.
    Verify,
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
    },
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
    /// Stop a user from logging in.
    Disable { name: String },
    /// Allow a disabled user to log in again.
    Enable { name: String },
    /// Set a user's password (prompted for, or read from stdin).
    Passwd { name: String },
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
        Command::User(cmd) => user_command(&config, cmd),
        Command::Audit(cmd) => {
            if !audit_command(&config, cmd)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Lead(cmd) => lead_command(&config, cmd),
    }
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
fn audit_command(config: &Config, cmd: AuditCommand) -> Result<bool> {
    let store = open_store_read_only(config)?;
    match cmd {
        AuditCommand::Verify => {
            let report = store.audit_verify()?;
            match report.first_bad {
                None => println!("audit log ok: {} events", report.events),
                Some((seq, what)) => {
                    println!("audit log broken at seq {seq}: {what}");
                    return Ok(false);
                }
            }
        }
        AuditCommand::Export {
            since,
            lead,
            actor,
            action,
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

fn lead_command(config: &Config, cmd: LeadCommand) -> Result<()> {
    use leadgate::admin::report;
    let store = open_store_read_only(config)?;
    let tz = config.leads.calendar()?.time_zone();
    let now = chrono::Utc::now().timestamp();
    match cmd {
        LeadCommand::List {
            status,
            owner,
            overdue,
            all,
            json,
        } => {
            let filter = report::LeadFilter {
                status: status.map(|s| s.parse()).transpose()?,
                owner,
                overdue,
                all,
            };
            let mut leads = store.load_leads()?;
            leads.retain(|l| filter.matches(l, now));
            leads.sort_by_key(|l| l.id);
            if json {
                for l in &leads {
                    let mut v = serde_json::to_value(l)?;
                    v["overdue"] = serde_json::Value::Bool(l.is_overdue(now));
                    println!("{v}");
                }
            } else {
                print!(
                    "{}",
                    report::lead_table(&leads.iter().collect::<Vec<_>>(), now, tz)
                );
            }
        }
        LeadCommand::Show { id } => {
            let lead = store.lead(id)?.with_context(|| format!("no lead {id}"))?;
            let mut events = Vec::new();
            let filter = leadgate::store::audit::AuditFilter {
                lead: Some(id),
                ..Default::default()
            };
            store.audit_events(&filter, |e| {
                events.push(e.clone());
                true
            })?;
            print!("{}", report::lead_detail(&lead, &events, now, tz));
        }
    }
    Ok(())
}

/// Who ran the CLI, for the audit log: `cli:<unix user>`.
fn cli_actor() -> String {
    let who = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{who}")
}

fn open_store(config: &Config) -> Result<Store> {
    Store::open(&config.store.path).with_context(|| {
        "is leadgate running? Stop it first: user commands open the store directly (live admin over a socket is not built yet)"
    })
}

/// Reads a new password: prompted twice on a terminal, one line from stdin
/// otherwise.
fn read_password() -> Result<String> {
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
    if password.len() < 8 {
        bail!("a password needs at least 8 characters");
    }
    Ok(password)
}

fn user_command(config: &Config, cmd: UserCommand) -> Result<()> {
    if matches!(cmd, UserCommand::List) && config.store.path.exists() {
        return user_list(&open_store_read_only(config)?);
    }
    let store = open_store(config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cmd {
        UserCommand::Add {
            name,
            role,
            email,
            display_name,
        } => {
            let password = read_password()?;
            let now = chrono::Utc::now().timestamp();
            let user = User {
                name: name.clone(),
                role,
                enabled: true,
                password_hash: hash_password(&password, &config.auth)?,
                email,
                display_name,
                created: now,
                changed: now,
            };
            rt.block_on(store.user_add(&cli_actor(), user))??;
            println!("user {name} added ({role})");
        }
        UserCommand::List => user_list(&store)?,
        UserCommand::Disable { name } => {
            rt.block_on(store.user_update(&cli_actor(), &name, |u| u.enabled = false))??;
            println!("user {name} disabled");
        }
        UserCommand::Enable { name } => {
            rt.block_on(store.user_update(&cli_actor(), &name, |u| u.enabled = true))??;
            println!("user {name} enabled");
        }
        UserCommand::Passwd { name } => {
            if store.user_get(&name)?.is_none() {
                bail!("no user {name}");
            }
            let hash = hash_password(&read_password()?, &config.auth)?;
            rt.block_on(
                store.user_update(&cli_actor(), &name, move |u| u.password_hash = hash.clone()),
            )??;
            println!("password of {name} changed");
        }
    }
    Ok(())
}

fn user_list(store: &Store) -> Result<()> {
    println!("{:<24} {:<8} {:<9} email", "name", "role", "state");
    for u in store.user_list()? {
        let state = if u.enabled { "enabled" } else { "disabled" };
        println!(
            "{:<24} {:<8} {:<9} {}",
            u.name,
            u.role.to_string(),
            state,
            u.email.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}
