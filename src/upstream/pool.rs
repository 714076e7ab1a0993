//! A small pool of upstream connections for what sessions need live: body
//! fetches, flag writes, text searches, appends, copies and folder
//! operations. Sessions never own a connection; they borrow one per
//! operation. A connection that failed is dropped; an idempotent operation
//! that failed on a reused (possibly stale) connection is retried once on a
//! fresh one.

use std::{
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use imap_codec::imap_types::{
    flag::{Flag, FlagNameAttribute},
    response::{Code, Data, Response},
    status::StatusDataItem,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    conn::{Cmd, Conn, UpstreamError},
    freshness::MailboxState,
    sync::{fetched_items, sync_mailbox, uid_set, FetchedItems, Health, SyncStats},
    Upstream,
};
use crate::index::Index;

/// How long a session waits for a free pool connection.
const CHECKOUT_WAIT: Duration = Duration::from_secs(30);

/// Runs `$body` with `$c` bound to a pooled connection. Connection-level
/// failures drop the connection; idempotent operations are retried once
/// when the failed connection was a reused (possibly stale) one.
macro_rules! with_conn {
    ($pool:expr, $idempotent:expr, |$c:ident| $body:expr) => {{
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut checkout = $pool.checkout().await?;
            let reused = checkout.reused;
            let result: Result<_, UpstreamError> = match checkout.conn.as_mut() {
                Some($c) => async { $body }.await,
                None => Err(UpstreamError::Unavailable),
            };
            match result {
                Ok(r) => break Ok(r),
                Err(e) if e.connection_usable() => break Err(e),
                Err(e) => {
                    checkout.conn = None;
                    if $idempotent && reused && attempt == 1 {
                        tracing::debug!(
                            "pooled upstream connection failed ({e}); retrying on a new one"
                        );
                        continue;
                    }
                    break Err(e);
                }
            }
        }
    }};
}

pub struct Pool {
    upstream: Arc<Upstream>,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
    health: Arc<Health>,
}

struct Checkout<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    reused: bool,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
        }
    }
}

/// One entry of an upstream LIST.
#[derive(Debug, Clone)]
pub struct ListEntry {
    pub name: String,
    pub attributes: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct StatusCounts {
    pub messages: u32,
    pub unseen: u32,
    pub uidnext: u32,
    pub uidvalidity: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    Add,
    Remove,
    Replace,
}

impl Pool {
    pub fn new(upstream: Arc<Upstream>, health: Arc<Health>) -> Pool {
        let size = upstream.cfg.pool_size;
        Pool {
            upstream,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size)),
            health,
        }
    }

    /// Upstream connections currently open and idle in the pool.
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn delimiter(&self) -> Option<char> {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first()
            .and_then(|c| c.delimiter)
    }

    async fn checkout(&self) -> Result<Checkout<'_>, UpstreamError> {
        let permit = tokio::time::timeout(CHECKOUT_WAIT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| UpstreamError::Unavailable)?
            .map_err(|_| UpstreamError::Unavailable)?;
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let (conn, reused) = match idle {
            Some(c) => (c, true),
            None => match self.upstream.connect().await {
                Ok(c) => (c, false),
                Err(e) => {
                    self.health.connected.store(false, Ordering::Relaxed);
                    return Err(e);
                }
            },
        };
        Ok(Checkout {
            pool: self,
            conn: Some(conn),
            reused,
            _permit: permit,
        })
    }

    /// Resyncs one mailbox into the index.
    pub async fn sync(&self, index: &Index, mailbox: &str) -> Result<SyncStats, UpstreamError> {
        with_conn!(self, true, |c| sync_mailbox(c, index, mailbox).await)
    }

    /// Full message bodies, in UID order of the answer. Without `peek` the
    /// upstream sets \Seen and the new flags come back too.
    pub async fn fetch_bodies(
        &self,
        mailbox: &str,
        uidvalidity: u32,
        uids: &[u32],
        peek: bool,
    ) -> Result<Vec<FetchedItems>, UpstreamError> {
        let item = if peek { "BODY.PEEK[]" } else { "FLAGS BODY[]" };
        let text = format!("UID FETCH {} (UID {item})", uid_set(uids.iter().copied()));
        self.fetch_items(mailbox, uidvalidity, &text).await
    }

    /// Any UID FETCH, answered as parsed items.
    pub async fn fetch_items(
        &self,
        mailbox: &str,
        uidvalidity: u32,
        command: &str,
    ) -> Result<Vec<FetchedItems>, UpstreamError> {
        with_conn!(self, true, |c| {
            c.ensure_selected(mailbox, uidvalidity, false).await?;
            let mut out = Vec::new();
            c.run_streaming(Cmd::new(command), |r| {
                if let Some(f) = fetched_items(r) {
                    out.push(f);
                }
            })
            .await?;
            Ok(out)
        })
    }

    /// A UID FETCH whose responses are returned undigested (for sections
    /// leadgate passes through, such as BODY[1.2]).
    pub async fn fetch_raw(
        &self,
        mailbox: &str,
        uidvalidity: u32,
        command: &str,
    ) -> Result<Vec<Response<'static>>, UpstreamError> {
        with_conn!(self, true, |c| {
            c.ensure_selected(mailbox, uidvalidity, false).await?;
            Ok(c.run(Cmd::new(command)).await?.untagged)
        })
    }

    /// UID STORE; returns the new flags (and modseq) per UID.
    pub async fn store_flags(
        &self,
        mailbox: &str,
        uidvalidity: u32,
        uids: &[u32],
        op: FlagOp,
        flags: &[Flag<'static>],
    ) -> Result<Vec<(u32, Vec<Box<str>>, u64)>, UpstreamError> {
        let verb = match op {
            FlagOp::Add => "+FLAGS",
            FlagOp::Remove => "-FLAGS",
            FlagOp::Replace => "FLAGS",
        };
        let list = flags
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        let text = format!(
            "UID STORE {} {verb} ({list})",
            uid_set(uids.iter().copied())
        );
        with_conn!(self, true, |c| {
            c.ensure_selected(mailbox, uidvalidity, false).await?;
            let mut out = Vec::new();
            c.run_streaming(Cmd::new(&text), |r| {
                if let Some(f) = fetched_items(r) {
                    if let (Some(uid), Some(flags)) = (f.uid, f.flags) {
                        out.push((uid, flags, f.modseq.unwrap_or(0)));
                    }
                }
            })
            .await?;
            Ok(out)
        })
    }

    /// UID SEARCH with criteria already in wire form (see `imap::search`).
    pub async fn search(
        &self,
        mailbox: &str,
        uidvalidity: u32,
        criteria: impl Fn() -> Cmd,
    ) -> Result<Vec<u32>, UpstreamError> {
        with_conn!(self, true, |c| {
            c.ensure_selected(mailbox, uidvalidity, false).await?;
            let mut out = Vec::new();
            c.run_streaming(criteria(), |r| {
                if let Response::Data(Data::Search(uids, ..)) = r {
                    out.extend(uids.into_iter().map(|u| u.get()));
                }
            })
            .await?;
            Ok(out)
        })
    }

    /// APPEND; returns (UIDVALIDITY, UID) from APPENDUID when the upstream
    /// has UIDPLUS. Never retried: a retry could store the message twice.
    pub async fn append(
        &self,
        mailbox: &str,
        flags: &[Flag<'static>],
        date: Option<&str>,
        message: Vec<u8>,
    ) -> Result<Option<(u32, u32)>, UpstreamError> {
        with_conn!(self, false, |c| {
            let mut cmd = Cmd::new("APPEND ").string(mailbox.as_bytes());
            let list = flags
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(" ");
            cmd = cmd.raw(&format!(" ({list})"));
            if let Some(d) = date {
                cmd = cmd.raw(" ").string(d.as_bytes());
            }
            let done = c.run(cmd.raw(" ").literal(message.clone())).await?;
            Ok(match done.code {
                Some(Code::AppendUid { uid_validity, uid }) => {
                    Some((uid_validity.get(), uid.get()))
                }
                _ => None,
            })
        })
    }

    /// UID COPY or UID MOVE to another upstream mailbox. Not retried.
    pub async fn copy(
        &self,
        mailbox: &str,
        uidvalidity: u32,
        uids: &[u32],
        dest: &str,
        is_move: bool,
    ) -> Result<Option<Code<'static>>, UpstreamError> {
        with_conn!(self, false, |c| {
            c.ensure_selected(mailbox, uidvalidity, false).await?;
            let verb = if is_move && c.has_capability("MOVE") {
                "UID MOVE"
            } else {
                "UID COPY"
            };
            let cmd = Cmd::new(&format!("{verb} {} ", uid_set(uids.iter().copied())))
                .string(dest.as_bytes());
            let mut copyuid = None;
            let (code, _) = c
                .run_streaming(cmd, |r| {
                    // UID MOVE reports COPYUID in an untagged OK.
                    if let Response::Status(imap_codec::imap_types::response::Status::Untagged(b)) =
                        r
                    {
                        if let Some(code @ Code::CopyUid { .. }) = b.code {
                            copyuid = Some(code);
                        }
                    }
                })
                .await?;
            if is_move && !c.has_capability("MOVE") {
                c.run(Cmd::new(&format!(
                    "UID STORE {} +FLAGS.SILENT (\\Deleted)",
                    uid_set(uids.iter().copied())
                )))
                .await?;
                c.run(Cmd::new(&format!(
                    "UID EXPUNGE {}",
                    uid_set(uids.iter().copied())
                )))
                .await?;
            }
            Ok(code.or(copyuid))
        })
    }

    /// UID EXPUNGE of the given UIDs (only those marked \Deleted go).
    pub async fn expunge(
        &self,
        mailbox: &str,
        uidvalidity: u32,
        uids: &[u32],
    ) -> Result<(), UpstreamError> {
        if uids.is_empty() {
            return Ok(());
        }
        with_conn!(self, true, |c| {
            c.ensure_selected(mailbox, uidvalidity, false).await?;
            c.run(Cmd::new(&format!(
                "UID EXPUNGE {}",
                uid_set(uids.iter().copied())
            )))
            .await?;
            Ok(())
        })
    }

    /// Runs a simple folder command (CREATE, DELETE, RENAME, SUBSCRIBE).
    pub async fn folder_command(&self, verb: &str, args: &[&str]) -> Result<(), UpstreamError> {
        with_conn!(self, false, |c| {
            let mut cmd = Cmd::new(verb);
            for a in args {
                cmd = cmd.raw(" ").string(a.as_bytes());
            }
            // Renaming or deleting the selected mailbox would leave stale state.
            c.selected = None;
            c.run(Cmd::new("UNSELECT")).await.ok();
            c.run(cmd).await.map(|_| ())
        })
    }

    /// LIST of upstream folders matching `pattern`.
    pub async fn list(
        &self,
        pattern: &str,
    ) -> Result<(Vec<ListEntry>, Option<char>), UpstreamError> {
        with_conn!(self, true, |c| {
            let cmd = Cmd::new("LIST \"\" ").string(pattern.as_bytes());
            let done = c.run(cmd).await?;
            let mut out = Vec::new();
            for r in done.untagged {
                if let Response::Data(Data::List { items, mailbox, .. }) = r {
                    let name = mailbox_name(&mailbox);
                    let attributes = items
                        .iter()
                        .map(|a: &FlagNameAttribute| a.to_string())
                        .collect();
                    out.push(ListEntry { name, attributes });
                }
            }
            Ok((out, c.delimiter))
        })
    }

    /// STATUS of each mailbox, fresh: a mailbox this connection has
    /// selected is UNSELECTed first, since Dovecot answers STATUS on the
    /// selected mailbox from the session's own (lagging) view. `None` for
    /// a mailbox the upstream refuses (it does not exist).
    pub async fn states(
        &self,
        names: &[String],
    ) -> Result<Vec<(String, Option<MailboxState>)>, UpstreamError> {
        with_conn!(self, true, |c| {
            let selected_here = c.selected.as_ref().is_some_and(|s| names.contains(&s.name));
            if selected_here && c.has_capability("UNSELECT") {
                c.run(Cmd::new("UNSELECT")).await?;
                c.selected = None;
            }
            let condstore = c.has_capability("CONDSTORE");
            let items = if condstore {
                " (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)"
            } else {
                " (MESSAGES UIDNEXT UIDVALIDITY)"
            };
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                let cmd = Cmd::new("STATUS ").string(name.as_bytes()).raw(items);
                let done = match c.run(cmd).await {
                    Ok(done) => done,
                    Err(UpstreamError::Refused { .. }) => {
                        out.push((name.clone(), None));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let mut state = MailboxState {
                    uidvalidity: 0,
                    messages: 0,
                    uidnext: 0,
                    highestmodseq: condstore.then_some(0),
                };
                for r in done.untagged {
                    if let Response::Data(Data::Status { items, .. }) = r {
                        for i in items.iter() {
                            match i {
                                StatusDataItem::Messages(n) => state.messages = *n,
                                StatusDataItem::UidNext(n) => state.uidnext = n.get(),
                                StatusDataItem::UidValidity(n) => state.uidvalidity = n.get(),
                                StatusDataItem::HighestModSeq(n) => state.highestmodseq = Some(*n),
                                _ => {}
                            }
                        }
                    }
                }
                out.push((name.clone(), Some(state)));
            }
            Ok(out)
        })
    }

    pub async fn status(&self, mailbox: &str) -> Result<StatusCounts, UpstreamError> {
        with_conn!(self, true, |c| {
            let cmd = Cmd::new("STATUS ")
                .string(mailbox.as_bytes())
                .raw(" (MESSAGES UNSEEN UIDNEXT UIDVALIDITY)");
            let done = c.run(cmd).await?;
            let mut out = StatusCounts::default();
            for r in done.untagged {
                if let Response::Data(Data::Status { items, .. }) = r {
                    for i in items.iter() {
                        match i {
                            StatusDataItem::Messages(n) => out.messages = *n,
                            StatusDataItem::Unseen(n) => out.unseen = *n,
                            StatusDataItem::UidNext(n) => out.uidnext = n.get(),
                            StatusDataItem::UidValidity(n) => out.uidvalidity = n.get(),
                            _ => {}
                        }
                    }
                }
            }
            Ok(out)
        })
    }
}

/// The wire name of a mailbox as text (modified UTF-7 is kept as is).
pub fn mailbox_name(m: &imap_codec::imap_types::mailbox::Mailbox<'_>) -> String {
    use imap_codec::imap_types::mailbox::Mailbox;
    match m {
        Mailbox::Inbox => "INBOX".into(),
        Mailbox::Other(o) => String::from_utf8_lossy(o.inner().as_ref()).into_owned(),
    }
}
