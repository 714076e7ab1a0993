//! `leadgate serve`: open the store, bind every listener (so a bad address
//! fails before anything starts), start the upstream watcher and the accept
//! loops, and drain on SIGTERM/SIGINT.

use std::{sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::watch};
use tokio_rustls::TlsAcceptor;

use crate::{
    auth::Authenticator,
    config::{Config, ListenerTls},
    imap,
    index::{BodyCache, Index},
    leads::{
        book::{LeadBook, SystemClock},
        ingest::Ingester,
        scheduler,
    },
    net::{listener::ConnLimits, tls},
    store::Store,
    upstream::{
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
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Leads(#[from] crate::leads::book::BookError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

pub async fn serve(config: Config) -> Result<(), ServeError> {
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
    let mut listeners = Vec::new();
    for l in &config.imap.listeners {
        let socket = TcpListener::bind(l.addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: l.addr,
                source,
            })?;
        listeners.push((socket, l.tls));
    }
    let store = Store::open(&config.store.path)?;
    let index = Arc::new(Index::load(
        store.clone(),
        BodyCache::from_config(&config.store),
    )?);
    let health = Arc::new(Health::default());
    let upstream = Arc::new(Upstream::new(
        config.upstream.imap.clone(),
        password,
        client_tls,
    ));
    let pool = Arc::new(Pool::new(upstream.clone(), health.clone()));
    let auth = Arc::new(Authenticator::new(store.clone(), config.auth.clone()));
    let ctx = Arc::new(imap::Ctx::new(
        config.clone(),
        index.clone(),
        pool,
        auth,
        health.clone(),
        server_tls,
    ));

    let book = Arc::new(LeadBook::load(
        store.clone(),
        Arc::new(config.leads.clone()),
        Arc::new(SystemClock),
    )?);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = watch::channel(false);
    let shared_folders: Vec<String> = std::iter::once("INBOX".to_owned())
        .chain(Some(config.upstream.imap.shared_sent.clone()).filter(|s| !s.is_empty()))
        .collect();
    let watcher = Watcher {
        index: index.clone(),
        health,
        upstream,
        poll_interval: Duration::from_secs(config.upstream.imap.poll_interval_secs),
        also: shared_folders[1..].to_vec(),
        ready: ready_tx,
    };
    let watcher_task = tokio::spawn(watcher.run(shutdown_rx.clone()));
    let ingester = Ingester {
        index,
        book: book.clone(),
        folders: shared_folders,
    };
    tokio::spawn(ingester.run(shutdown_rx.clone()));
    tokio::spawn(scheduler::run(book, shutdown_rx.clone()));

    let limits = ConnLimits::new(
        config.limits.max_connections,
        config.limits.max_connections_per_ip,
    );
    for (socket, mode) in listeners {
        let addr = socket.local_addr().map_err(|source| ServeError::Bind {
            addr: "0.0.0.0:0".parse().expect("valid"),
            source,
        })?;
        let mode_name = match mode {
            ListenerTls::Implicit => "implicit-tls",
            ListenerTls::Starttls => "starttls",
            ListenerTls::Plaintext => "plaintext",
        };
        // Machine-readable for scripts and tests that bind port 0.
        println!("leadgate: imap listening on {addr} ({mode_name})");
        tracing::info!("imap listening on {addr} ({mode_name})");
        let ctx = ctx.clone();
        let shutdown = shutdown_rx.clone();
        tokio::spawn(crate::net::listener::accept_loop(
            socket,
            limits.clone(),
            shutdown_rx.clone(),
            move |stream, peer, admission, guard| {
                let ctx = ctx.clone();
                let shutdown = shutdown.clone();
                async move {
                    imap::handle_connection(ctx, stream, peer, mode, admission, shutdown).await;
                    drop(guard);
                }
            },
        ));
    }
    {
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    tokio::spawn(async move {
        if ready_rx.wait_for(|r| *r).await.is_ok() {
            println!("leadgate: upstream synced");
            use std::io::Write;
            let _ = std::io::stdout().flush();
            tracing::info!("first upstream sync complete");
        }
    });

    wait_for_signal().await;
    tracing::info!("shutting down: {} open sessions", limits.active());
    let _ = shutdown_tx.send(true);
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    if !limits.drained(grace).await {
        tracing::warn!(
            "grace period over with {} sessions still open",
            limits.active()
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), watcher_task).await;
    // Tasks still hold store handles: close it explicitly so the file is
    // left clean (a crash is repaired at the next start instead).
    tokio::task::spawn_blocking(move || store.close())
        .await
        .ok();

    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
