//! `leadgate serve`: bind every listener first (so a bad address fails
//! before anything starts), open the store, start the upstream watcher, the
//! lead ingester, scheduler and views, the accept loops and the metrics
//! endpoint; tell systemd READY after the first upstream sync; reload users
//! and rules on SIGHUP; drain on SIGTERM/SIGINT.

use std::{
    path::PathBuf,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use tokio::{
    net::TcpListener,
    signal::unix::{signal, SignalKind},
    sync::{watch, Notify},
};
use tokio_rustls::TlsAcceptor;

use crate::{
    auth::Authenticator,
    config::{Config, ListenerTls},
    imap::{
        self,
        views::{CardIdentity, ViewSet},
    },
    index::Index,
    leads::{
        book::{LeadBook, SystemClock},
        ingest::Ingester,
        scheduler,
    },
    metrics::{self, LeadCount, LeadSnapshot, Metrics, Proto, UpstreamSnapshot},
    net::{listener::ConnLimits, notify, sessions::SessionRegistry, tls},
    smtp::{gateway::Gateway, relay::Outbound, SmtpCtx},
    store::Store,
    upstream::{
        freshness::Checker,
        pool::Pool,
        sync::{Health, Watcher},
        Upstream,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Setting(#[from] crate::section::Invalid),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Leads(#[from] crate::leads::book::BookError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Announces each bound listener and runs its accept loop: every
/// connection is counted in the metrics and handed to `handle` with its
/// listener's TLS mode, the shared `ctx` and the shutdown signal.
#[allow(clippy::too_many_arguments)]
fn serve_listeners<C, F, Fut>(
    proto: Proto,
    sockets: Vec<(TcpListener, ListenerTls)>,
    limits: &Arc<ConnLimits>,
    shutdown_rx: &watch::Receiver<bool>,
    metrics: &Arc<Metrics>,
    ctx: Arc<C>,
    handle: F,
) where
    C: Send + Sync + 'static,
    F: Fn(
            Arc<C>,
            tokio::net::TcpStream,
            std::net::SocketAddr,
            ListenerTls,
            crate::net::listener::Admission,
            watch::Receiver<bool>,
        ) -> Fut
        + Copy
        + Send
        + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let name = proto.as_str();
    for (socket, mode) in sockets {
        if let Ok(addr) = socket.local_addr() {
            announce(&format!("{name} listening on {addr} ({})", mode_name(mode)));
            tracing::info!("{name} listening on {addr} ({})", mode_name(mode));
        }
        let ctx = ctx.clone();
        let shutdown = shutdown_rx.clone();
        let metrics = metrics.clone();
        tokio::spawn(crate::net::listener::accept_loop(
            socket,
            limits.clone(),
            shutdown_rx.clone(),
            move |stream, peer, admission, guard| {
                let counted = metrics.connection(proto);
                let served = handle(ctx.clone(), stream, peer, mode, admission, shutdown.clone());
                async move {
                    served.await;
                    drop((guard, counted));
                }
            },
        ));
    }
}

fn mode_name(mode: ListenerTls) -> &'static str {
    match mode {
        ListenerTls::Implicit => "implicit-tls",
        ListenerTls::Starttls => "starttls",
        ListenerTls::Plaintext => "plaintext",
    }
}

/// Prints a line scripts and tests read (they bind port 0).
fn announce(line: &str) {
    use std::io::Write;
    println!("leadgate: {line}");
    let _ = std::io::stdout().flush();
}

pub async fn serve(config: Config, config_path: PathBuf) -> Result<(), ServeError> {
    let config = Arc::new(config);
    let server_tls = match &config.tls {
        Some(t) => Some(TlsAcceptor::from(tls::server_config(
            &t.cert,
            &t.key_path()?,
        )?)),
        None => None,
    };
    let password = config.upstream.imap.resolve_password()?;
    let client_tls = tls::client_config(config.upstream.imap.ca_file.as_deref())?;
    let mut imap_listeners = Vec::new();
    for l in &config.imap.listeners {
        imap_listeners.push((bind(l.addr).await?, l.tls));
    }
    let mut smtp_listeners = Vec::new();
    for l in &config.smtp.listeners {
        smtp_listeners.push((bind(l.addr).await?, l.tls));
    }
    let metrics_listener = match &config.metrics {
        Some(m) => Some(bind(m.listen).await?),
        None => None,
    };

    let store = Store::open(&config.store.path)?;
    let metrics = Arc::new(Metrics::new());
    let sessions = Arc::new(SessionRegistry::default());
    let index = Arc::new(Index::load(
        store.clone(),
        crate::index::BodyCache::of(&config.store),
    )?);
    let health = Arc::new(Health::default());
    let upstream = Arc::new(Upstream::new(
        config.upstream.imap.clone(),
        password,
        client_tls,
    ));
    let pool = Arc::new(Pool::new(upstream.clone(), health.clone()));
    let auth = Arc::new(
        Authenticator::new(store.clone(), config.auth.clone()).with_metrics(metrics.clone()),
    );
    let book = Arc::new(LeadBook::load(
        store.clone(),
        Arc::new(config.leads.clone()),
        Arc::new(SystemClock),
    )?);
    book.set_metrics(metrics.clone());
    let shared_folders: Vec<String> = std::iter::once("INBOX".to_owned())
        .chain(Some(config.upstream.imap.shared_sent.clone()).filter(|s| !s.is_empty()))
        .collect();
    // Held replies' readable copies live in their own upstream folder,
    // synced with the shared ones and shown by views, never ingested.
    let held = (config.smtp.blocked_reply == crate::config::smtp::BlockedReply::Hold).then(|| {
        crate::smtp::held::HeldSettings {
            folder: format!("{}-held", config.upstream.imap.user_folder_prefix),
            hold_days: config.smtp.hold_days,
        }
    });
    let mut view_folders = shared_folders.clone();
    if let Some(h) = &held {
        view_folders.push(h.folder.clone());
        // Exists before the first sync; an error (it exists already, or
        // the upstream is down) is fine: the sync says what is wrong.
        let created = tokio::time::timeout(
            Duration::from_secs(10),
            pool.folder_command("CREATE", &[h.folder.as_str()]),
        )
        .await;
        tracing::debug!("CREATE {}: {created:?}", h.folder);
    }
    let views = Arc::new(ViewSet::load_with_cards(
        index.clone(),
        book.clone(),
        config.views.clone(),
        view_folders.clone(),
        CardIdentity {
            hostname: config.server.hostname.clone(),
            notes_address: config.smtp.notes_address.clone(),
        },
    )?);
    let ctx = Arc::new(imap::Ctx::new(
        config.clone(),
        index.clone(),
        pool.clone(),
        auth.clone(),
        health.clone(),
        server_tls.clone(),
        book.clone(),
        views.clone(),
        metrics.clone(),
        sessions.clone(),
    ));

    let h = health.clone();
    metrics.set_upstream_source(move || UpstreamSnapshot {
        up: h.connected.load(Ordering::Relaxed),
        last_confirmed_unix_ms: h.last_confirmed_ms.load(Ordering::Relaxed),
    });
    let b = book.clone();
    metrics.set_lead_source(move || lead_snapshot(&b));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = watch::channel(false);
    let poll_interval = Duration::from_secs(config.upstream.imap.poll_interval_secs);
    let nudge = Arc::new(Notify::new());
    let watcher = Watcher {
        index: index.clone(),
        health: health.clone(),
        upstream,
        poll_interval,
        also: view_folders[1..].to_vec(),
        ready: ready_tx,
        nudge: nudge.clone(),
    };
    let watcher_task = tokio::spawn(watcher.run(shutdown_rx.clone()));
    let checker = Checker {
        index: index.clone(),
        pool: pool.clone(),
        health: health.clone(),
        nudge,
        shared: shared_folders.clone(),
        interval: poll_interval,
    };
    tokio::spawn(checker.run(ready_rx.clone(), shutdown_rx.clone()));
    // Per-user read state starts from the upstream's \Seen of the shared
    // folders as first indexed (README, "Read state"): now, when the store
    // already holds an index, or else right after the first sync (below).
    if !index.seen.has_baseline()
        && shared_folders
            .iter()
            .any(|f| index.mailbox_record(f).is_some())
    {
        index.take_seen_baseline(&view_folders).await?;
    }
    let seen_index = index.clone();
    let ingester = Ingester {
        index,
        book: book.clone(),
        folders: shared_folders.clone(),
    };
    tokio::spawn(ingester.run(shutdown_rx.clone()));
    tokio::spawn(scheduler::run(book.clone(), shutdown_rx.clone()));
    {
        let clock = book.clone();
        tokio::spawn(crate::store::retention::run_daily(
            store.clone(),
            config.audit.clone(),
            move || clock.now() * 1000,
            crate::store::retention::Schedule::DAILY,
            shutdown_rx.clone(),
        ));
    }
    tokio::spawn(views.run(shutdown_rx.clone()));
    {
        // Rate-limited failed logins reach the audit log as one event per
        // source and minute.
        let (auth, mut stop) = (auth.clone(), shutdown_rx.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = every.tick() => auth.flush_failed_audit(false).await,
                    // The last minute's counts are written below, once the
                    // sessions are gone (so none is counted after it).
                    _ = stop.changed() => return,
                }
            }
        });
    }
    if let Some(listener) = metrics_listener {
        let addr = listener.local_addr().ok();
        let h = health.clone();
        tokio::spawn(metrics::serve(
            listener,
            metrics.clone(),
            Arc::new(move || h.connected.load(Ordering::Relaxed)),
            shutdown_rx.clone(),
        ));
        if let Some(addr) = addr {
            announce(&format!("metrics listening on {addr}"));
        }
    }

    let limits = ConnLimits::new(
        config.limits.max_connections,
        config.limits.max_connections_per_ip,
    );
    serve_listeners(
        Proto::Imap,
        imap_listeners,
        &limits,
        &shutdown_rx,
        &metrics,
        ctx.clone(),
        imap::session::run::<tokio::net::TcpStream>,
    );
    // Outgoing mail: replies through the SMTP listeners, and the digest.
    let sends_mail = !smtp_listeners.is_empty()
        || !config.smtp.relay.host.is_empty()
        || config.smtp.delivery == crate::smtp::config::Delivery::Direct;
    let outbound = match sends_mail {
        true => Some(Arc::new(Outbound::from_config(
            &config.smtp,
            &store,
            &config.server.hostname,
        )?)),
        false => None,
    };
    if let Some(queue) = outbound.as_ref().and_then(|o| o.queue()) {
        tokio::spawn(crate::smtp::queue::run(queue.clone(), shutdown_rx.clone()));
    }
    match &outbound {
        Some(out) if config.digest.enabled => {
            tokio::spawn(crate::admin::digest::run(
                book.clone(),
                store.clone(),
                out.clone(),
                config.clone(),
                shutdown_rx.clone(),
            ));
        }
        _ => tracing::info!("manager digest off (needs [digest] enabled and an outgoing relay)"),
    }
    match &outbound {
        Some(out) => {
            let notifier = crate::smtp::notices::Notifier {
                book: book.clone(),
                store: store.clone(),
                outbound: out.clone(),
                hostname: config.server.hostname.clone(),
            };
            tokio::spawn(notifier.run(shutdown_rx.clone()));
        }
        None => tracing::info!(
            "escalation and held-reply notices are queued but not mailed: no outgoing relay"
        ),
    }
    match (&outbound, &config.leads.support_forward_to) {
        (Some(out), Some(_)) => {
            let forwarder = crate::smtp::forward::Forwarder {
                book: book.clone(),
                index: ctx.index.clone(),
                pool: pool.clone(),
                outbound: out.clone(),
                folders: shared_folders,
                hostname: config.server.hostname.clone(),
            };
            tokio::spawn(forwarder.run(shutdown_rx.clone()));
        }
        (None, Some(to)) => tracing::warn!(
            "support handoffs are not forwarded to <{to}>: no outgoing relay ([smtp.relay] \
             or delivery = \"direct\"); they wait in the queue until one is configured"
        ),
        _ => {}
    }
    match crate::admin::socket::bind(&config.admin.socket) {
        Ok(listener) => {
            let admin = Arc::new(crate::admin::AdminCtx {
                store: store.clone(),
                book: book.clone(),
                sessions: sessions.clone(),
                auth_config: config.auth.clone(),
                config: config.clone(),
                outbound: outbound.clone(),
                index: Some(seen_index.clone()),
            });
            tokio::spawn(crate::admin::socket::serve(
                listener,
                admin,
                shutdown_rx.clone(),
            ));
        }
        Err(e) => tracing::warn!("{e}; user and lead changes from the CLI need leadgate stopped"),
    }
    if let (false, Some(outbound)) = (smtp_listeners.is_empty(), outbound) {
        let gateway = Gateway {
            book: book.clone(),
            index: ctx.index.clone(),
            pool,
            outbound,
            metrics: metrics.clone(),
            hostname: config.server.hostname.clone(),
            shared_address: config.smtp.shared_address.clone(),
            shared_sent: config.upstream.imap.shared_sent.clone(),
            notes_address: config.smtp.notes_address.clone(),
            rewrite_from: config.smtp.rewrite_from,
            new_outbound_creates_lead: config.smtp.new_outbound_creates_lead,
            in_flight: Default::default(),
            last_prune: Default::default(),
            filer: Default::default(),
            held,
            deciding: Default::default(),
        };
        let gateway = Arc::new(gateway);
        tokio::spawn(gateway.clone().run_sent_filer(shutdown_rx.clone()));
        if gateway.held.is_some() {
            let desk: Arc<dyn crate::leads::held::HeldDesk> = gateway.clone();
            let _ = ctx.held_desk.set(desk);
            tokio::spawn(gateway.clone().run_held_desk(shutdown_rx.clone()));
        }
        let smtp = Arc::new(SmtpCtx {
            hostname: config.server.hostname.clone(),
            config: Arc::new(config.smtp.clone()),
            auth: auth.clone(),
            tls: server_tls,
            handler: gateway,
            sessions: Some(sessions.clone()),
        });
        serve_listeners(
            Proto::Smtp,
            smtp_listeners,
            &limits,
            &shutdown_rx,
            &metrics,
            smtp,
            crate::smtp::run::<tokio::net::TcpStream>,
        );
    }
    tokio::spawn(async move {
        if ready_rx.wait_for(|r| *r).await.is_ok() {
            // First start: the read-state baseline is what the first sync
            // found (taken before READY, so READY means it is in force).
            if let Err(e) = seen_index.take_seen_baseline(&view_folders).await {
                tracing::error!("read-state baseline: {e}");
            }
            announce("upstream synced");
            tracing::info!("first upstream sync complete");
            if let Err(e) = notify::ready().and_then(|_| notify::status("serving")) {
                tracing::warn!("sd_notify READY failed: {e}");
            }
        }
    });

    run_signals(&config_path, &config, &book).await;
    tracing::info!("shutting down: {} open sessions", limits.active());
    let _ = notify::stopping();
    let _ = shutdown_tx.send(true);
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    if !limits.drained(grace).await {
        tracing::warn!(
            "grace period over with {} sessions still open",
            limits.active()
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), watcher_task).await;
    // Failed logins still counted for their minute, before the store closes.
    auth.flush_failed_audit(true).await;
    // Tasks still hold store handles: close it explicitly so the file is
    // left clean (a crash is repaired at the next start instead).
    tokio::task::spawn_blocking(move || store.close())
        .await
        .ok();
    Ok(())
}

/// Counts of leads by status and owner, for the metrics endpoint.
fn lead_snapshot(book: &LeadBook) -> LeadSnapshot {
    let now = book.now();
    let mut counts: std::collections::BTreeMap<(String, String), i64> = Default::default();
    let mut overdue = 0;
    for lead in book.all() {
        let owner = lead.owner.clone().unwrap_or_else(|| "-".into());
        *counts
            .entry((lead.status.slug().to_owned(), owner))
            .or_default() += 1;
        overdue += i64::from(lead.is_overdue(now));
    }
    LeadSnapshot {
        counts: counts
            .into_iter()
            .map(|((status, owner), count)| LeadCount {
                status,
                owner,
                count,
            })
            .collect(),
        overdue,
    }
}

/// Waits for SIGTERM/SIGINT; on SIGHUP re-reads the config and, when it is
/// valid, puts the new users and lead rules in force without dropping
/// sessions (an invalid file is refused and the old config kept).
async fn run_signals(path: &std::path::Path, running: &Config, book: &Arc<LeadBook>) {
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    let mut hup = signal(SignalKind::hangup()).expect("install SIGHUP handler");
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                let _ = notify::reloading();
                match Config::load(path) {
                    Ok(new) => {
                        let rules = Arc::new(new.leads.clone());
                        match book.set_config(rules) {
                            Ok(()) => {
                                if new.imap.listeners.len() != running.imap.listeners.len()
                                    || new.store.path != running.store.path
                                {
                                    tracing::warn!("config reloaded: users and lead rules are in force; listener and store changes need a restart");
                                } else {
                                    tracing::info!("config reloaded: users and lead rules are in force");
                                }
                            }
                            Err(e) => tracing::error!("config reload rejected, keeping the old one: {e}"),
                        }
                    }
                    Err(e) => tracing::error!("config reload rejected, keeping the old one: {e}"),
                }
                let _ = notify::ready();
            }
        }
    }
}
