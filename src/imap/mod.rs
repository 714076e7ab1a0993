//! The IMAP server the team's mail clients talk to. Sessions answer from
//! the message index and borrow pooled upstream connections for bodies and
//! writes; they never hold an upstream connection of their own.

pub mod access;
pub mod authz;
pub mod commands;
pub mod folders;
pub mod limits;
pub mod modseq;
pub mod session;
pub mod stamp;
pub mod uidlists;
pub mod views;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use tokio_rustls::TlsAcceptor;

use crate::{
    auth::Authenticator,
    config::Config,
    index::Index,
    leads::book::LeadBook,
    upstream::{pool::Pool, sync::Health},
};
use folders::{FolderMap, DEFAULT_FOLDERS};
use views::ViewSet;

/// What every session shares.
pub struct Ctx {
    pub config: Arc<Config>,
    pub index: Arc<Index>,
    pub pool: Arc<Pool>,
    pub auth: Arc<Authenticator>,
    pub health: Arc<Health>,
    pub tls: Option<TlsAcceptor>,
    pub book: Arc<LeadBook>,
    pub views: Arc<ViewSet>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub sessions: Arc<crate::net::sessions::SessionRegistry>,
    /// Users whose default private folders are known to exist upstream.
    ensured: Mutex<HashSet<String>>,
    /// UID lists shared by sessions with the same folder selected.
    pub uid_lists: uidlists::UidLists,
    delimiter: Mutex<Option<char>>,
    /// Decides on held replies (set when `[smtp] blocked_reply = "hold"`).
    pub held_desk: std::sync::OnceLock<Arc<dyn crate::leads::held::HeldDesk>>,
}

impl Ctx {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        index: Arc<Index>,
        pool: Arc<Pool>,
        auth: Arc<Authenticator>,
        health: Arc<Health>,
        tls: Option<TlsAcceptor>,
        book: Arc<LeadBook>,
        views: Arc<ViewSet>,
        metrics: Arc<crate::metrics::Metrics>,
        sessions: Arc<crate::net::sessions::SessionRegistry>,
    ) -> Ctx {
        let delimiter = index.store().upstream_delimiter().ok().flatten();
        Ctx {
            config,
            index,
            pool,
            auth,
            health,
            tls,
            book,
            views,
            metrics,
            sessions,
            ensured: Mutex::new(HashSet::new()),
            uid_lists: Default::default(),
            delimiter: Mutex::new(delimiter),
            held_desk: std::sync::OnceLock::new(),
        }
    }

    /// The upstream hierarchy delimiter, learned once and remembered.
    pub async fn upstream_delimiter(&self) -> Option<char> {
        if let Some(d) = *self.delimiter.lock().unwrap_or_else(|e| e.into_inner()) {
            return Some(d);
        }
        let (_, d) = self.pool.list("").await.ok()?;
        let d = d?;
        *self.delimiter.lock().unwrap_or_else(|e| e.into_inner()) = Some(d);
        let _ = self.index.store().set_upstream_delimiter(d).await;
        Some(d)
    }

    /// The user's folder map; creates their default folders upstream the
    /// first time.
    pub async fn folder_map(&self, user: &str) -> Option<FolderMap> {
        let delim = self.upstream_delimiter().await?;
        let map = match FolderMap::new(&self.config.upstream.imap.user_folder_prefix, user, delim) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!("private folders of {user}: {e}");
                return None;
            }
        };
        let known = self
            .ensured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(user);
        if !known {
            let mut all_ok = true;
            for (name, _) in DEFAULT_FOLDERS {
                let Some(upstream) = map
                    .resolve(name)
                    .ok()
                    .and_then(|f| f.upstream().map(str::to_owned))
                else {
                    continue;
                };
                match self.pool.folder_command("CREATE", &[&upstream]).await {
                    Ok(()) => {}
                    // Already there is the usual answer.
                    Err(crate::upstream::conn::UpstreamError::Refused { .. }) => {}
                    Err(e) => {
                        tracing::warn!("cannot create {upstream} for {user}: {e}");
                        all_ok = false;
                    }
                }
            }
            if all_ok {
                self.ensured
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(user.to_owned());
            }
        }
        Some(map)
    }
}
