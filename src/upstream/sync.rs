//! Keeps the message index equal to the upstream. One watcher connection
//! IDLEs on INBOX; other mailboxes are resynced on demand through the pool,
//! and every `poll_interval` the freshness check (`freshness`) compares
//! STATUS with the index in case a notification was lost.
//!
//! A resync (`sync_mailbox`) is incremental: SELECT; if EXISTS, UIDNEXT and
//! HIGHESTMODSEQ match the index, stop; else UID SEARCH ALL, remove vanished
//! UIDs, fetch changed flags (CHANGEDSINCE with CONDSTORE), fetch the
//! metadata of new UIDs. A UIDVALIDITY change starts a new generation.
//!
//! The watcher, per connection, repeats:
//!
//! 1. resync INBOX;
//! 2. resync the other shared folders (the shared Sent);
//! 3. settle: back on INBOX, resync again until what the server has
//!    reported of it equals the index. The connection keeps the SELECT
//!    answer current with every EXISTS, EXPUNGE, UIDNEXT and MODSEQ the
//!    server sends, also in the middle of the resync's own commands
//!    (`conn::SelectInfo`): Dovecot announces a change once, at the first
//!    command that follows it, and never again, so a change announced
//!    during a resync and dropped would stay invisible until some later
//!    change woke the watcher. Mark the upstream confirmed equal;
//! 4. IDLE. Changes made since step 3 the server reports as the IDLE
//!    starts (Dovecot: just after its continuation, from a sync it runs
//!    then; other servers before it). If it reported any before the
//!    continuation, or what it reported so far still differs from the
//!    index, end the IDLE and go to 1 at once. Otherwise wait for a change
//!    notification (including those), then for the rest of a burst (at
//!    most 250 ms), or for a nudge from the freshness check, or the renewal
//!    time, and go to 1.
//!
//! Without IDLE, step 4 is a sleep of `poll_interval` (or until a nudge).

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicBool, AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use imap_codec::imap_types::{
    fetch::{MessageDataItem, Section},
    flag::FlagFetch,
    response::{Data, Response},
};
use tokio::sync::{watch, Notify};

use super::{
    conn::{encode_fetch_item, Cmd, Conn, UpstreamError},
    freshness::MailboxState,
    Upstream,
};
use crate::{
    index::Index,
    store::messages::{MailboxRecord, MessageMeta, MessageRecord, MessageWrite},
};

/// Messages fetched per UID FETCH while indexing new mail.
const FETCH_CHUNK: usize = 250;

/// Upstream health, read by sessions (to answer `NO [UNAVAILABLE]`) and
/// metrics.
#[derive(Debug, Default)]
pub struct Health {
    pub connected: AtomicBool,
    /// Unix time in milliseconds when the shared folders (INBOX, the shared
    /// Sent) were last confirmed equal to the index: by the watcher after a
    /// resync settled, or by a freshness check. 0 before the first.
    pub last_confirmed_ms: AtomicI64,
}

impl Health {
    /// Records that the upstream was just confirmed equal to the index.
    pub fn confirm(&self) {
        self.last_confirmed_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }
}

/// Formats UIDs as a compact IMAP sequence set (`1:5,9,12:14`).
pub fn uid_set(uids: impl IntoIterator<Item = u32>) -> String {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for uid in uids {
        match runs.last_mut() {
            Some((_, b)) if u64::from(uid) == u64::from(*b) + 1 => *b = uid,
            _ => runs.push((uid, uid)),
        }
    }
    crate::imap_wire::sequence_set(&runs)
}

pub fn flag_strings(flags: &[FlagFetch<'_>]) -> Vec<Box<str>> {
    let mut out: Vec<Box<str>> = flags
        .iter()
        .filter_map(|f| match f {
            FlagFetch::Flag(f) => Some(f.to_string().into_boxed_str()),
            FlagFetch::Recent => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

pub fn imap_date(dt: &chrono::DateTime<chrono::FixedOffset>) -> String {
    dt.format("%d-%b-%Y %H:%M:%S %z").to_string()
}

/// The items of one FETCH response that the index cares about.
#[derive(Default, Debug)]
pub struct FetchedItems {
    pub uid: Option<u32>,
    pub flags: Option<Vec<Box<str>>>,
    pub modseq: Option<u64>,
    pub size: Option<u32>,
    pub internal_date: Option<String>,
    pub envelope: Option<Vec<u8>>,
    pub bodystructure: Option<Vec<u8>>,
    pub header: Option<Vec<u8>>,
    pub body: Option<Vec<u8>>,
}

pub fn fetched_items(resp: Response<'static>) -> Option<FetchedItems> {
    let Response::Data(Data::Fetch { items, .. }) = resp else {
        return None;
    };
    let mut out = FetchedItems::default();
    for item in items.into_inner() {
        match item {
            MessageDataItem::Uid(u) => out.uid = Some(u.get()),
            MessageDataItem::Flags(f) => out.flags = Some(flag_strings(&f)),
            MessageDataItem::ModSeq(m) => out.modseq = Some(m.get()),
            MessageDataItem::Rfc822Size(s) => out.size = Some(s),
            MessageDataItem::InternalDate(d) => out.internal_date = Some(imap_date(d.as_ref())),
            e @ MessageDataItem::Envelope(_) => out.envelope = Some(encode_fetch_item(e)),
            b @ MessageDataItem::BodyStructure(_) => out.bodystructure = Some(encode_fetch_item(b)),
            MessageDataItem::BodyExt {
                section: Some(Section::Header(None)),
                data,
                ..
            } => out.header = data.into_option().map(|c| c.into_owned()),
            MessageDataItem::BodyExt {
                section: None,
                data,
                ..
            } => out.body = data.into_option().map(|c| c.into_owned()),
            _ => {}
        }
    }
    Some(out)
}

/// Message-ID, In-Reply-To and References of one message.
pub type ThreadIds = (Option<Box<str>>, Option<Box<str>>, Box<[Box<str>]>);

/// Message-ID, In-Reply-To and References from a raw header block.
pub fn thread_headers(header: &[u8]) -> ThreadIds {
    let parsed = mail_parser::MessageParser::default().parse_headers(header);
    let Some(msg) = parsed else {
        return (None, None, Box::new([]));
    };
    let ids = |v: &mail_parser::HeaderValue| -> Vec<Box<str>> {
        match v {
            mail_parser::HeaderValue::Text(t) => vec![format!("<{t}>").into()],
            mail_parser::HeaderValue::TextList(l) => {
                l.iter().map(|t| format!("<{t}>").into()).collect()
            }
            _ => Vec::new(),
        }
    };
    let message_id = ids(msg.message_id_raw()).into_iter().next();
    let in_reply_to = ids(msg.in_reply_to()).into_iter().next();
    let references = ids(msg.references()).into_boxed_slice();
    (message_id, in_reply_to, references)
}

trait MessageIdRaw {
    fn message_id_raw(&self) -> &mail_parser::HeaderValue<'_>;
}

impl MessageIdRaw for mail_parser::Message<'_> {
    fn message_id_raw(&self) -> &mail_parser::HeaderValue<'_> {
        self.header(mail_parser::HeaderName::MessageId)
            .unwrap_or(&mail_parser::HeaderValue::Empty)
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SyncStats {
    pub added: usize,
    pub removed: usize,
    pub flag_changes: usize,
}

impl SyncStats {
    /// Whether the resync changed anything in the index.
    pub fn changed(&self) -> bool {
        self.added + self.removed + self.flag_changes > 0
    }
}

/// Brings the index of `name` up to date over `conn`.
pub async fn sync_mailbox(
    conn: &mut Conn,
    index: &Index,
    name: &str,
) -> Result<SyncStats, UpstreamError> {
    let store_err =
        |e: crate::store::StoreError| UpstreamError::Protocol(format!("index write failed: {e}"));
    let _guard = index.sync_guard(name).await;
    let info = conn.select(name, false).await?;
    let mut rec = match index.mailbox_record(name) {
        Some(r) if r.uidvalidity == info.uidvalidity => r,
        Some(old) => {
            tracing::warn!(
                "upstream {name} UIDVALIDITY changed {} -> {}: re-indexing",
                old.uidvalidity,
                info.uidvalidity
            );
            index
                .reset(name, info.uidvalidity)
                .await
                .map_err(store_err)?
        }
        None => index
            .reset(name, info.uidvalidity)
            .await
            .map_err(store_err)?,
    };
    // Messages `contact erase` took out count as known: they stay out.
    let mut known: BTreeSet<u32> = index
        .with_mailbox(name, |m| m.msgs.keys().copied().collect())
        .unwrap_or_default();
    known.extend(index.erased_uids(rec.gen));
    let condstore = info.highestmodseq.is_some();
    let unchanged = info.exists as usize == known.len()
        && info.uidnext == rec.uidnext
        && (!condstore || info.highestmodseq == Some(rec.highestmodseq));
    let mut stats = SyncStats::default();
    if unchanged {
        return Ok(stats);
    }

    // Which UIDs are new, and which are gone. New UIDs are at least the
    // recorded UIDNEXT; when they and the known ones add up to the count
    // the server gives, nothing was expunged and the whole list (10,000
    // UIDs for a big INBOX, on every new mail) is not needed.
    let mut fresh = Vec::new();
    // A new generation records UIDNEXT 0; UIDs start at 1.
    let from = rec.uidnext.max(1);
    if info.exists > 0 && info.uidnext > from {
        let done = conn
            .run(Cmd::new(&format!("UID SEARCH UID {from}:*")))
            .await?;
        for r in done.untagged {
            if let Response::Data(Data::Search(uids, ..)) = r {
                // `n:*` also matches the highest UID when it is below n.
                fresh.extend(uids.into_iter().map(|u| u.get()).filter(|u| *u >= from));
            }
        }
        fresh.sort_unstable();
        fresh.dedup();
    }
    let only_added = known.len() + fresh.len() == info.exists as usize
        && fresh.iter().all(|u| !known.contains(u));
    let mut server = BTreeSet::new();
    if !only_added && info.exists > 0 {
        let done = conn.run(Cmd::new("UID SEARCH ALL")).await?;
        for r in done.untagged {
            if let Response::Data(Data::Search(uids, ..)) = r {
                server.extend(uids.into_iter().map(|u| u.get()));
            }
        }
    }
    let (removed, new): (Vec<u32>, Vec<u32>) = if only_added {
        server = known.clone();
        server.extend(fresh.iter().copied());
        (Vec::new(), fresh)
    } else {
        (
            known.difference(&server).copied().collect(),
            server.difference(&known).copied().collect(),
        )
    };
    stats.removed = removed.len();
    if !removed.is_empty() {
        let writes = removed.iter().map(|&u| MessageWrite::Remove(u)).collect();
        index.apply(rec.clone(), writes).await.map_err(store_err)?;
    }

    // Flags of messages we already had.
    let still_known: Vec<u32> = known.intersection(&server).copied().collect();
    if let Some(&max_known) = still_known.last() {
        let mut cmd = Cmd::new(&format!("UID FETCH 1:{max_known} (UID FLAGS)"));
        if condstore && rec.highestmodseq > 0 {
            cmd = cmd.raw(&format!(" (CHANGEDSINCE {})", rec.highestmodseq));
        }
        let mut changes = Vec::new();
        conn.run_streaming(cmd, |r| {
            if let Some(f) = fetched_items(r) {
                if let (Some(uid), Some(flags)) = (f.uid, f.flags) {
                    changes.push((uid, flags, f.modseq.unwrap_or(0)));
                }
            }
        })
        .await?;
        let before = index.current_seq();
        index
            .update_flags(name, rec.gen, changes)
            .await
            .map_err(store_err)?;
        stats.flag_changes = (index.current_seq() - before) as usize;
    }

    // Metadata of new messages, in chunks so progress survives a restart.
    let modseq_item = if condstore { " MODSEQ" } else { "" };
    let chunks = new.chunks(FETCH_CHUNK).count();
    for (n, chunk) in new.chunks(FETCH_CHUNK).enumerate() {
        let cmd = Cmd::new(&format!(
            "UID FETCH {} (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER]{modseq_item})",
            uid_set(chunk.iter().copied())
        ));
        let mut writes = Vec::with_capacity(chunk.len() * 2);
        let mut cacheable = Vec::new();
        conn.run_streaming(cmd, |r| {
            if let Some(f) = fetched_items(r) {
                if let (Some(uid), Some(size)) = (f.uid, f.size) {
                    if index.cache.admits(size) {
                        cacheable.push((uid, size));
                    }
                }
                if let Some(w) = new_message(f) {
                    writes.push(w);
                }
            }
        })
        .await?;
        stats.added += writes.len();
        fetch_bodies_for_cache(conn, &cacheable, &mut writes).await?;
        let max_uid = chunk.last().copied().unwrap_or(0);
        rec.uidnext = rec.uidnext.max(max_uid + 1);
        if n + 1 == chunks {
            // The last write of this sync carries the mailbox's counters
            // too (flags were synced before): one commit, not two.
            rec.uidnext = rec.uidnext.max(info.uidnext);
            if let Some(m) = info.highestmodseq {
                rec.highestmodseq = m;
            }
        }
        index.apply(rec.clone(), writes).await.map_err(store_err)?;
    }
    rec.uidnext = rec.uidnext.max(info.uidnext);
    if let Some(m) = info.highestmodseq {
        rec.highestmodseq = m;
    }
    // Keep the latest flags-only state from the index, with the new counters.
    let current = index.mailbox_record(name).unwrap_or(rec.clone());
    let rec = MailboxRecord {
        uidnext: rec.uidnext,
        highestmodseq: rec.highestmodseq,
        ..current
    };
    index.apply(rec, Vec::new()).await.map_err(store_err)?;
    Ok(stats)
}

/// Bytes of bodies fetched per command while filling the cache.
const CACHE_FETCH_BYTES: u64 = 16 * 1024 * 1024;

/// Fetches the bodies of new messages small enough for the local cache.
async fn fetch_bodies_for_cache(
    conn: &mut Conn,
    cacheable: &[(u32, u32)],
    writes: &mut Vec<MessageWrite>,
) -> Result<(), UpstreamError> {
    let mut batch = Vec::new();
    let mut bytes = 0u64;
    let mut i = 0;
    while i <= cacheable.len() {
        let flush = i == cacheable.len()
            || (!batch.is_empty() && bytes + u64::from(cacheable[i].1) > CACHE_FETCH_BYTES);
        if flush && !batch.is_empty() {
            let cmd = Cmd::new(&format!(
                "UID FETCH {} (UID BODY.PEEK[])",
                uid_set(batch.iter().copied())
            ));
            conn.run_streaming(cmd, |r| {
                if let Some(f) = fetched_items(r) {
                    if let (Some(uid), Some(body)) = (f.uid, f.body) {
                        writes.push(MessageWrite::CacheBody { uid, body });
                    }
                }
            })
            .await?;
            batch.clear();
            bytes = 0;
        }
        if let Some(&(uid, size)) = cacheable.get(i) {
            batch.push(uid);
            bytes += u64::from(size);
        }
        i += 1;
    }
    Ok(())
}

fn new_message(f: FetchedItems) -> Option<MessageWrite> {
    let uid = f.uid?;
    let header = f.header.unwrap_or_default();
    let (message_id, in_reply_to, references) = thread_headers(&header);
    let meta = MessageMeta {
        size: f.size.unwrap_or(0),
        internal_date: f
            .internal_date
            .unwrap_or_else(|| "01-Jan-1970 00:00:00 +0000".into())
            .into(),
        envelope: f.envelope.unwrap_or_default().into(),
        bodystructure: f.bodystructure.unwrap_or_default().into(),
        message_id,
        in_reply_to,
        references,
    };
    Some(MessageWrite::Put {
        record: MessageRecord {
            uid,
            flags: f.flags.unwrap_or_default(),
            modseq: f.modseq.unwrap_or(0),
            meta: Arc::new(meta),
        },
        header: Some(header),
    })
}

/// Settings of the watcher task.
pub struct Watcher {
    pub index: Arc<Index>,
    pub health: Arc<Health>,
    pub upstream: Arc<Upstream>,
    pub poll_interval: Duration,
    /// Other shared folders (the shared Sent) synced along with INBOX.
    pub also: Vec<String>,
    /// Set to true after the first complete INBOX sync.
    pub ready: watch::Sender<bool>,
    /// Woken by the freshness check when it finds INBOX behind the upstream.
    pub nudge: Arc<Notify>,
}

/// Warn about a missing shared folder once per process, not every resync.
fn first_extra_warning(name: &str) -> bool {
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut w = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if w.iter().any(|n| n == name) {
        return false;
    }
    w.push(name.to_owned());
    true
}

/// How long one IDLE lasts before it is renewed (servers drop idle clients
/// after 30 minutes).
const IDLE_RENEW: Duration = Duration::from_secs(25 * 60);

/// After the first change notification, how long the watcher waits for the
/// rest of a burst: until the server is silent this long (Dovecot already
/// gathers changes for 500 ms before it tells an IDLE client, and sends
/// what it gathered in one write, so this only catches a split write), ...
const BURST_QUIET: Duration = Duration::from_millis(5);
/// ... but no longer than this in all, so a stream of notifications (a bulk
/// import) cannot keep it from resyncing.
const BURST_MAX: Duration = Duration::from_millis(250);

/// Resyncs in a row that change nothing in the index and still leave it
/// unequal to what the server reported, before the watcher gives up until
/// the next notification or freshness check (a server whose counts the
/// index can never match must not be hammered).
const MAX_FRUITLESS_RESYNCS: u32 = 3;

impl Watcher {
    /// Runs until `shutdown` fires: connect, sync INBOX, IDLE, resync on
    /// change; on any error reconnect with exponential backoff.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(250);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let result = tokio::select! {
                r = self.session() => r,
                _ = shutdown.changed() => return,
            };
            self.health.connected.store(false, Ordering::Relaxed);
            match result {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!("upstream watcher: {e}; reconnecting in {backoff:?}");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// One connection's life: the sequence in the module doc, repeated.
    async fn session(&self) -> Result<(), UpstreamError> {
        let mut conn = self.upstream.connect().await?;
        self.health.connected.store(true, Ordering::Relaxed);
        let idle = conn.has_capability("IDLE");
        tracing::info!("upstream watcher connected (IDLE: {idle})");
        let mut first = true;
        loop {
            // 1. INBOX.
            let stats = sync_mailbox(&mut conn, &self.index, "INBOX").await?;
            if first {
                tracing::info!(
                    "initial sync of INBOX: {} new, {} removed, {} flag changes",
                    stats.added,
                    stats.removed,
                    stats.flag_changes
                );
                first = false;
            } else if stats.changed() {
                tracing::debug!(?stats, "INBOX synced");
            }
            // 2. The other shared folders.
            for name in &self.also {
                match sync_mailbox(&mut conn, &self.index, name).await {
                    Ok(_) => {}
                    Err(UpstreamError::Refused { text, .. }) => {
                        if first_extra_warning(name) {
                            tracing::warn!("shared folder {name} cannot be synced: {text}");
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            // 3. Back on INBOX, resynced until the index holds what the
            //    server last reported.
            let settled = self.settle(&mut conn, !self.also.is_empty()).await?;
            if settled {
                self.health.confirm();
            }
            self.ready.send_replace(true);
            // 4. Wait for the next change.
            if idle {
                self.idle_until_change(&mut conn, settled).await?;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(self.poll_interval) => {}
                    _ = self.nudge.notified() => {}
                }
            }
        }
    }

    /// Resyncs INBOX on `conn` (at once when `resync`, else only if needed)
    /// until what the server reported of it, including changes it announced
    /// in the middle of the resync's own commands, is what the index holds.
    /// False when it gave up (see `MAX_FRUITLESS_RESYNCS`).
    async fn settle(&self, conn: &mut Conn, mut resync: bool) -> Result<bool, UpstreamError> {
        let mut fruitless = 0;
        loop {
            if resync {
                let stats = sync_mailbox(conn, &self.index, "INBOX").await?;
                if stats.changed() {
                    tracing::debug!(?stats, "INBOX resynced");
                    fruitless = 0;
                } else {
                    fruitless += 1;
                }
            }
            let Some(diff) = self.inbox_behind(conn) else {
                return Ok(true);
            };
            if fruitless >= MAX_FRUITLESS_RESYNCS {
                tracing::warn!(
                    "INBOX still differs from the upstream after {fruitless} resyncs ({diff}); \
                     trying again at the next change or freshness check"
                );
                return Ok(false);
            }
            tracing::debug!("INBOX changed during the resync ({diff}): resyncing again");
            resync = true;
        }
    }

    /// How the index falls short of what the server has reported of the
    /// INBOX selected on `conn`; `None` when equal.
    fn inbox_behind(&self, conn: &Conn) -> Option<String> {
        let reported = conn.selected.as_ref().filter(|s| s.name == "INBOX")?;
        MailboxState::of_select(reported).behind(MailboxState::of_index(&self.index, "INBOX"))
    }

    /// IDLEs until the upstream reports a change, the freshness check finds
    /// INBOX behind, or the IDLE is due for renewal; then ends the IDLE.
    /// `settled` says whether step 3 reached equality; if it gave up, a
    /// difference it already knows of is no reason to resync again.
    async fn idle_until_change(&self, conn: &mut Conn, settled: bool) -> Result<(), UpstreamError> {
        let (tag, changed) = conn.idle_start().await?;
        // What changed between the last resync and the IDLE, a server may
        // report before its continuation (Dovecot does just after it, and
        // the loop below hears it); what it reported during the resync's
        // commands is in `conn.selected`. Either way: resync now.
        if changed {
            tracing::debug!("INBOX changed before the IDLE began: resyncing");
            return conn.idle_done(&tag).await;
        }
        if let Some(diff) = self.inbox_behind(conn).filter(|_| settled) {
            tracing::debug!("INBOX differs from the index at IDLE ({diff}): resyncing");
            return conn.idle_done(&tag).await;
        }
        let deadline = tokio::time::Instant::now() + IDLE_RENEW.min(self.poll_interval * 10);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let response = tokio::select! {
                r = conn.read_response_within(left) => r?,
                _ = self.nudge.notified() => {
                    tracing::info!("freshness check found INBOX behind the upstream: resyncing");
                    break;
                }
            };
            match response {
                None => break,
                Some(Some(Response::Data(
                    Data::Exists(_) | Data::Expunge(_) | Data::Fetch { .. } | Data::Vanished { .. },
                ))) => {
                    tracing::debug!("IDLE: the upstream announced a change");
                    // Let a burst of deliveries arrive before resyncing once.
                    let burst_end = tokio::time::Instant::now() + BURST_MAX;
                    while tokio::time::Instant::now() < burst_end
                        && conn.read_response_within(BURST_QUIET).await?.is_some()
                    {
                    }
                    break;
                }
                Some(_) => continue,
            }
        }
        conn.idle_done(&tag).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set([1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set([4]), "4");
        assert_eq!(uid_set([]), "");
    }

    #[test]
    fn thread_headers_are_read() {
        let h = b"Message-ID: <a@x>\r\nIn-Reply-To: <b@x>\r\nReferences: <c@x> <b@x>\r\nSubject: hi\r\n\r\n";
        let (id, irt, refs) = thread_headers(h);
        assert_eq!(id.as_deref(), Some("<a@x>"));
        assert_eq!(irt.as_deref(), Some("<b@x>"));
        assert_eq!(refs.len(), 2);
    }
}
