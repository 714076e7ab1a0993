//! The durable queue for `delivery = "direct"`. `enqueue` resolves only
//! after the entry and its body are committed to redb: that is when the
//! gateway may say 250. The worker (`run`) wakes at the next attempt time
//! (or when something is queued), delivers per recipient domain through
//! `mx`, and records each domain's outcome in one transaction: delivered
//! recipients are removed, permanently refused ones are removed *and* their
//! bounce is queued in that same transaction, temporary failures stay with
//! their last error. After an attempt the entry is rescheduled along
//! `retry_schedule_secs` (the last delay repeats), never later than its
//! maximum age; an entry still pending at its maximum age is bounced.
//!
//! Bounces are ordinary entries with an empty sender, delivered through the
//! same MX path to the original sender's domain; a bounce that cannot be
//! delivered is dropped (logged), never bounced.
//!
//! Exactly once, as far as SMTP allows: a recipient is removed in the
//! transaction that records its delivery, right after the remote 250. A
//! crash (or shutdown) between that 250 and the commit leaves the recipient
//! queued and it is delivered again after restart — a duplicate, never a
//! loss. The window is one local commit per domain.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tokio::{
    sync::{watch, Notify},
    task::JoinSet,
};

use super::{
    config::DirectConfig,
    mx::{DeliveryFailure, MxClient, MxError, RcptOutcome},
};
use crate::store::{Store, StoreError, Tx};

/// Longest sleep of the worker (bounds the effect of clock jumps).
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// How long an entry whose attempt failed locally (store error) is left alone.
const LOCAL_ERROR_BACKOFF_MS: u64 = 30_000;
/// At most this much of the original header block goes into a bounce.
const MAX_BOUNCE_HEADERS: usize = 64 * 1024;

/// One queued message, stored as JSON in `OUTBOX` (the body is in
/// `OUTBOX_BODIES` under the same id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    /// Envelope sender; empty for a bounce.
    pub from: String,
    /// The recipients still to deliver. A delivered recipient is removed;
    /// a refused one is removed when its bounce is queued. So every one
    /// listed is pending, with the failure of its last attempt, if any.
    pub recipients: Vec<QueuedRecipient>,
    /// When it was queued, Unix milliseconds.
    pub created_ms: u64,
    /// Finished delivery attempts.
    pub attempts: u32,
    /// When the worker tries next, Unix milliseconds.
    pub next_attempt_ms: u64,
    /// The latest failure of any recipient, for `queue` listings.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedRecipient {
    pub address: String,
    pub last_error: Option<DeliveryFailure>,
}

impl QueueEntry {
    /// A new entry, due at once.
    pub fn new(from: &str, rcpts: &[String], now_ms: u64) -> QueueEntry {
        QueueEntry {
            from: from.to_owned(),
            recipients: rcpts
                .iter()
                .map(|r| QueuedRecipient {
                    address: r.clone(),
                    last_error: None,
                })
                .collect(),
            created_ms: now_ms,
            attempts: 0,
            next_attempt_ms: now_ms,
            last_error: None,
        }
    }

    pub fn is_bounce(&self) -> bool {
        self.from.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a queued message needs at least one recipient")]
    NoRecipients,
}

/// The worker's settings, from `[smtp.direct]` (tests shorten them).
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// `server.hostname`: bounces come from `MAILER-DAEMON@<hostname>`.
    pub hostname: String,
    pub max_age: Duration,
    /// Delay after the 1st, 2nd, ... failed attempt; the last repeats.
    pub retry_schedule: Vec<Duration>,
    /// Entries delivered at the same time.
    pub max_parallel: usize,
}

impl QueueConfig {
    pub fn from_direct(direct: &DirectConfig, hostname: &str) -> QueueConfig {
        QueueConfig {
            hostname: hostname.to_owned(),
            max_age: Duration::from_secs(direct.max_age_hours.saturating_mul(3600)),
            retry_schedule: direct
                .retry_schedule_secs
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            max_parallel: 8,
        }
    }

    /// The wait after `attempts` failed attempts (1-based).
    fn retry_delay(&self, attempts: u32) -> Duration {
        let i = (attempts.max(1) as usize - 1).min(self.retry_schedule.len().saturating_sub(1));
        self.retry_schedule
            .get(i)
            .copied()
            .unwrap_or(Duration::from_secs(300))
    }
}

pub struct Queue {
    store: Store,
    mx: MxClient,
    config: QueueConfig,
    wake: Notify,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("mx", &self.mx)
            .field("config", &self.config)
            .finish()
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Queue {
    pub fn new(store: Store, direct: &DirectConfig, hostname: &str) -> Result<Queue, MxError> {
        let mx = MxClient::new(direct, hostname)?;
        Ok(Queue::with_parts(
            store,
            mx,
            QueueConfig::from_direct(direct, hostname),
        ))
    }

    pub fn with_parts(store: Store, mx: MxClient, config: QueueConfig) -> Queue {
        Queue {
            store,
            mx,
            config,
            wake: Notify::new(),
        }
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Queues a message and resolves once it is durably committed; then
    /// wakes the worker. The id is the entry's key.
    pub async fn enqueue(
        &self,
        from: &str,
        rcpts: &[String],
        body: &[u8],
    ) -> Result<u64, QueueError> {
        if rcpts.is_empty() {
            return Err(QueueError::NoRecipients);
        }
        let id = enqueue(&self.store, QueueEntry::new(from, rcpts, now_ms()), body).await?;
        tracing::info!(
            "queue: queued id={id} from=<{from}> rcpts={} bytes={}",
            rcpts.len(),
            body.len()
        );
        self.wake.notify_one();
        Ok(id)
    }

    /// Every queued entry, by id.
    pub async fn entries(&self) -> Result<Vec<(u64, QueueEntry)>, StoreError> {
        self.store.outbox_entries().await
    }

    /// Makes the worker look at the queue now (e.g. after an operator
    /// fixed something and wants no wait).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Entries due at `now` (not in `skip`), oldest due first, and the
    /// earliest future attempt time among the others.
    async fn due(
        &self,
        now: u64,
        skip: HashSet<u64>,
    ) -> Result<(Vec<u64>, Option<u64>), StoreError> {
        let mut due = Vec::new();
        let mut next: Option<u64> = None;
        for (id, e) in self.store.outbox_entries::<QueueEntry>().await? {
            if skip.contains(&id) {
                continue;
            }
            if e.next_attempt_ms <= now {
                due.push((e.next_attempt_ms, id));
            } else {
                next = Some(next.map_or(e.next_attempt_ms, |n| n.min(e.next_attempt_ms)));
            }
        }
        due.sort_unstable();
        Ok((due.into_iter().map(|(_, id)| id).collect(), next))
    }

    /// One delivery attempt of one entry: each recipient domain in turn,
    /// its outcome committed before the next domain is tried.
    async fn attempt(&self, id: u64) -> Result<(), StoreError> {
        let loaded = self.store.outbox_get::<QueueEntry>(id).await?;
        let Some((entry, body)) = loaded else {
            return Ok(());
        };
        let headers: Arc<[u8]> = header_block(&body).into();
        let mut domains: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut no_domain = Vec::new();
        for r in &entry.recipients {
            match r.address.rsplit_once('@') {
                Some((_, d)) if !d.is_empty() => domains
                    .entry(d.to_ascii_lowercase())
                    .or_default()
                    .push(r.address.clone()),
                _ => no_domain.push(r.address.clone()),
            }
        }
        if !no_domain.is_empty() {
            let failure = DeliveryFailure::permanent((5, 1, 3), "recipient address has no domain");
            let outcomes = no_domain
                .into_iter()
                .map(|a| (a, RcptOutcome::Failed(failure.clone())))
                .collect();
            self.record(id, outcomes, headers.clone()).await?;
        }
        for (domain, rcpts) in domains {
            let outcomes = self.mx.deliver(&domain, &entry.from, &rcpts, &body).await;
            for (rcpt, outcome) in rcpts.iter().zip(&outcomes) {
                match outcome {
                    RcptOutcome::Delivered { host } => tracing::info!(
                        "queue: delivered id={id} from=<{}> to=<{rcpt}> via {host}",
                        entry.from
                    ),
                    RcptOutcome::Failed(f) => tracing::warn!(
                        "queue: not delivered id={id} from=<{}> to=<{rcpt}>: {f}",
                        entry.from
                    ),
                }
            }
            self.record(
                id,
                rcpts.into_iter().zip(outcomes).collect(),
                headers.clone(),
            )
            .await?;
        }
        self.finish(id, headers).await
    }

    /// Commits one domain's outcomes: delivered recipients leave the entry,
    /// refused ones leave it into a bounce queued in the same transaction,
    /// temporary failures are noted.
    async fn record(
        &self,
        id: u64,
        outcomes: Vec<(String, RcptOutcome)>,
        headers: Arc<[u8]>,
    ) -> Result<(), StoreError> {
        let hostname = self.config.hostname.clone();
        let bounced = self
            .store
            .change(move |tx| {
                let Some(mut entry) = tx.outbox_entry::<QueueEntry>(id)? else {
                    return Ok(None);
                };
                let mut failed = Vec::new();
                for (addr, outcome) in &outcomes {
                    match outcome {
                        RcptOutcome::Delivered { .. } => {
                            entry.recipients.retain(|r| r.address != *addr)
                        }
                        RcptOutcome::Failed(f) if f.is_permanent() => {
                            entry.recipients.retain(|r| r.address != *addr);
                            failed.push((addr.clone(), f.clone()));
                        }
                        RcptOutcome::Failed(f) => {
                            for r in entry.recipients.iter_mut().filter(|r| r.address == *addr) {
                                r.last_error = Some(f.clone());
                            }
                            entry.last_error = Some(format!("<{addr}>: {f}"));
                        }
                    }
                }
                let bounce = if failed.is_empty() {
                    None
                } else {
                    bounce(tx, &hostname, id, &entry, &failed, &headers, false)?
                };
                save(tx, id, &entry)?;
                Ok(bounce)
            })
            .await?;
        if let Some(b) = bounced {
            tracing::warn!("queue: bounce id={b} queued for entry {id}");
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Ends an attempt: reschedules what is left, or bounces it once the
    /// maximum age is reached.
    async fn finish(&self, id: u64, headers: Arc<[u8]>) -> Result<(), StoreError> {
        let hostname = self.config.hostname.clone();
        let config = self.config.clone();
        let now = now_ms();
        let bounced = self
            .store
            .change(move |tx| {
                let Some(mut entry) = tx.outbox_entry::<QueueEntry>(id)? else {
                    return Ok(None);
                };
                entry.attempts += 1;
                let deadline = entry.created_ms.saturating_add(ms(config.max_age));
                if now < deadline {
                    let next = now.saturating_add(ms(config.retry_delay(entry.attempts)));
                    entry.next_attempt_ms = next.min(deadline);
                    save(tx, id, &entry)?;
                    return Ok(None);
                }
                let failed: Vec<(String, DeliveryFailure)> = entry
                    .recipients
                    .drain(..)
                    .map(|r| {
                        let f = r.last_error.unwrap_or_else(|| {
                            DeliveryFailure::temporary((4, 4, 7), "no delivery attempt succeeded")
                        });
                        (r.address, f)
                    })
                    .collect();
                let b = bounce(tx, &hostname, id, &entry, &failed, &headers, true)?;
                save(tx, id, &entry)?;
                Ok(b)
            })
            .await?;
        if let Some(b) = bounced {
            tracing::warn!("queue: entry {id} expired; bounce id={b} queued");
            self.wake.notify_one();
        }
        Ok(())
    }
}

/// Queues `entry` with `body` and resolves once both are durably
/// committed. Ids come from META `outbox_next_id` and are never reused.
pub async fn enqueue(store: &Store, entry: QueueEntry, body: &[u8]) -> Result<u64, StoreError> {
    let body = body.to_vec();
    store
        .change(move |tx| tx.outbox_insert(&entry, &body))
        .await
}

/// Writes the entry back, or removes it (and its body) when no recipient
/// is left.
fn save(tx: &Tx<'_>, id: u64, entry: &QueueEntry) -> Result<(), StoreError> {
    tx.outbox_save(id, (!entry.recipients.is_empty()).then_some(entry))
}

/// Queues the bounce for `failed` recipients of `entry`, unless the entry
/// is itself a bounce. Returns the bounce's id.
fn bounce(
    tx: &Tx<'_>,
    hostname: &str,
    id: u64,
    entry: &QueueEntry,
    failed: &[(String, DeliveryFailure)],
    headers: &[u8],
    expired: bool,
) -> Result<Option<u64>, StoreError> {
    if entry.is_bounce() {
        for (rcpt, f) in failed {
            tracing::warn!("queue: dropping undeliverable bounce id={id} to=<{rcpt}>: {f}");
        }
        return Ok(None);
    }
    let now = now_ms();
    let message = bounce_message(hostname, id, entry, failed, headers, expired, now);
    let b = QueueEntry::new("", std::slice::from_ref(&entry.from), now);
    tx.outbox_insert(&b, &message).map(Some)
}

/// The header block of a message (up to the blank line), capped.
fn header_block(body: &[u8]) -> Vec<u8> {
    let end = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .or_else(|| body.windows(2).position(|w| w == b"\n\n").map(|p| p + 1))
        .unwrap_or(body.len());
    body[..end.min(MAX_BOUNCE_HEADERS)].to_vec()
}

fn rfc2822(ms: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc2822()
}

/// A delivery status notification (RFC 3464): a plain-text explanation,
/// the machine-readable status per recipient, and the original headers.
fn bounce_message(
    hostname: &str,
    id: u64,
    entry: &QueueEntry,
    failed: &[(String, DeliveryFailure)],
    headers: &[u8],
    expired: bool,
    now: u64,
) -> Vec<u8> {
    let boundary = format!("=_leadgate_bounce_{id}_{now}");
    let mut text = String::new();
    text.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n\
         To: <{}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: {}\r\n\
         Message-ID: <bounce.{id}.{now}@{hostname}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n \
         boundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n",
        entry.from,
        rfc2822(now),
    ));
    text.push_str(&format!(
        "This is the mail system at {hostname}.\r\n\r\n\
         Your message of {} could not be delivered to the recipients below.\r\n",
        rfc2822(entry.created_ms),
    ));
    if expired {
        text.push_str(&format!(
            "Delivery was tried {} times; the message has been given up on.\r\n",
            entry.attempts
        ));
    }
    text.push_str("\r\n");
    for (rcpt, f) in failed {
        text.push_str(&format!("<{rcpt}>: {}\r\n", one_line(&f.text)));
    }
    text.push_str(&format!(
        "\r\n--{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {hostname}\r\n\
         Arrival-Date: {}\r\n",
        rfc2822(entry.created_ms)
    ));
    for (rcpt, f) in failed {
        let (c, s, d) = f.status;
        text.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {c}.{s}.{d}\r\n"
        ));
        match &f.reply {
            Some(reply) => {
                text.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", one_line(reply)))
            }
            None => text.push_str(&format!(
                "Diagnostic-Code: x-leadgate; {}\r\n",
                one_line(&f.text)
            )),
        }
    }
    text.push_str(&format!(
        "\r\n--{boundary}\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n"
    ));
    let mut out = text.into_bytes();
    out.extend_from_slice(headers);
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The worker: delivers due entries (up to `max_parallel` at once), sleeps
/// until the next attempt time or a wake-up, and stops on shutdown. An
/// attempt cut short by shutdown is simply made again after restart.
pub async fn run(queue: Arc<Queue>, mut shutdown: watch::Receiver<bool>) {
    let mut tasks: JoinSet<(u64, bool)> = JoinSet::new();
    let mut running: HashMap<tokio::task::Id, u64> = HashMap::new();
    // Entries whose attempt failed locally, left alone until the time given.
    let mut held: HashMap<u64, u64> = HashMap::new();
    let max_parallel = queue.config.max_parallel.max(1);
    loop {
        if *shutdown.borrow() {
            break;
        }
        let now = now_ms();
        held.retain(|_, until| *until > now);
        let skip: HashSet<u64> = running.values().chain(held.keys()).copied().collect();
        let mut wait = MAX_SLEEP;
        match queue.due(now, skip).await {
            Ok((due, next)) => {
                let free = max_parallel.saturating_sub(tasks.len());
                let waiting = due.len() > free;
                for id in due.into_iter().take(free) {
                    let q = queue.clone();
                    let handle = tasks.spawn(async move {
                        match q.attempt(id).await {
                            Ok(()) => (id, true),
                            Err(e) => {
                                tracing::error!("queue: entry {id}: {e}");
                                (id, false)
                            }
                        }
                    });
                    running.insert(handle.id(), id);
                }
                // With due entries left over, the next finished task wakes us.
                if !waiting {
                    if let Some(next) = next {
                        wait = Duration::from_millis(next.saturating_sub(now));
                    }
                }
                if let Some(until) = held.values().min() {
                    wait = wait.min(Duration::from_millis(until.saturating_sub(now)));
                }
            }
            Err(e) => {
                tracing::error!("queue: cannot read the queue: {e}");
                wait = Duration::from_secs(5);
            }
        }
        let wait = wait.min(MAX_SLEEP);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = queue.wake.notified() => {}
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                match done {
                    Ok((task, (id, ok))) => {
                        running.remove(&task);
                        if !ok {
                            held.insert(id, now_ms() + LOCAL_ERROR_BACKOFF_MS);
                        }
                    }
                    Err(e) => {
                        if let Some(id) = running.remove(&e.id()) {
                            tracing::error!("queue: attempt of entry {id} failed: {e}");
                            held.insert(id, now_ms() + LOCAL_ERROR_BACKOFF_MS);
                        }
                    }
                }
            }
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { break },
        }
    }
    tasks.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> QueueConfig {
        QueueConfig {
            hostname: "leadgate.test".into(),
            max_age: Duration::from_secs(3600),
            retry_schedule: vec![Duration::from_secs(60), Duration::from_secs(300)],
            max_parallel: 1,
        }
    }

    #[test]
    fn retry_delay_follows_the_schedule_and_repeats_the_last() {
        let c = config();
        assert_eq!(c.retry_delay(1), Duration::from_secs(60));
        assert_eq!(c.retry_delay(2), Duration::from_secs(300));
        assert_eq!(c.retry_delay(9), Duration::from_secs(300));
    }

    #[tokio::test]
    async fn enqueue_commits_entry_and_body_with_fresh_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let rcpts = vec!["bob@customer.test".to_string()];
        let a = enqueue(
            &store,
            QueueEntry::new("alice@example.com", &rcpts, 5),
            b"A",
        )
        .await
        .unwrap();
        let b = enqueue(
            &store,
            QueueEntry::new("alice@example.com", &rcpts, 6),
            b"B",
        )
        .await
        .unwrap();
        assert_ne!(a, b);
        let (entry, body) = store.outbox_get::<QueueEntry>(b).await.unwrap().unwrap();
        assert_eq!(entry.recipients[0].address, "bob@customer.test");
        assert_eq!(entry.next_attempt_ms, 6);
        assert_eq!(body, b"B");
    }

    #[test]
    fn bounce_names_the_recipient_and_the_error_and_keeps_the_headers() {
        let entry = QueueEntry::new("alice@example.com", &["bob@dead.test".to_string()], 0);
        let failed = vec![(
            "bob@dead.test".to_string(),
            DeliveryFailure::temporary((4, 4, 1), "cannot connect to mx.dead.test[127.0.0.2]:25"),
        )];
        let headers = header_block(b"Subject: Offer\r\nFrom: alice@example.com\r\n\r\nbody\r\n");
        assert_eq!(headers, b"Subject: Offer\r\nFrom: alice@example.com\r\n");
        let msg = bounce_message("leadgate.test", 7, &entry, &failed, &headers, true, 1000);
        let text = String::from_utf8(msg).unwrap();
        assert!(text.contains("From: Mail Delivery System <MAILER-DAEMON@leadgate.test>"));
        assert!(text.contains("To: <alice@example.com>"));
        assert!(text.contains("<bob@dead.test>: cannot connect to mx.dead.test"));
        assert!(text
            .contains("Final-Recipient: rfc822; bob@dead.test\r\nAction: failed\r\nStatus: 4.4.1"));
        assert!(text.contains("Subject: Offer"));
        let parsed = mail_parser::MessageParser::default()
            .parse(text.as_bytes())
            .unwrap();
        assert_eq!(
            parsed.subject(),
            Some("Undelivered Mail Returned to Sender")
        );
        assert!(parsed.parts.len() >= 4, "multipart report with three parts");
    }

    #[test]
    fn a_bounce_is_never_bounced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let entry = QueueEntry::new("", &["alice@example.com".to_string()], 0);
        let failed = vec![(
            "alice@example.com".to_string(),
            DeliveryFailure::permanent((5, 1, 1), "no such user"),
        )];
        let r = store
            .change_blocking(move |tx| bounce(tx, "leadgate.test", 1, &entry, &failed, b"", false))
            .unwrap();
        assert_eq!(r, None);
        let n = store.outbox_len().unwrap();
        assert_eq!(n, 0);
    }
}
