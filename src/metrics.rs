//! Prometheus metrics and the small HTTP endpoint that serves them.
//!
//! [`Metrics`] owns its own registry. Hot paths hold clones of the metric
//! handles (or call the helpers below, which only touch atomics after a
//! label lookup); numbers that are really *state* — upstream health, sync
//! lag, lead counts — are read at scrape time from sources the daemon
//! installs with [`Metrics::set_upstream_source`] and
//! [`Metrics::set_lead_source`].
//!
//! [`serve`] answers `GET /metrics` and `GET /healthz` over plain HTTP/1.1
//! (hyper), one request per connection, with a size cap and a timeout on
//! every request; anything else gets 400, 404, 405, 408 or 431 and the
//! connection is closed.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{
    Encoder as _, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

use crate::net::listener::{accept_loop, ConnLimits};

/// Buckets of `leadgate_first_response_seconds`: 5 minutes to 3 days.
pub const FIRST_RESPONSE_BUCKETS: &[f64] = &[
    300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 172800.0, 259200.0,
];

/// Buckets of `leadgate_relay_seconds`: 50 ms to 2 minutes.
pub const RELAY_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// The protocol a client speaks, as a bounded label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Imap,
    Smtp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Imap => "imap",
            Proto::Smtp => "smtp",
        }
    }
}

/// How a relay attempt ended (`leadgate_relay_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayResult {
    /// The upstream accepted the message.
    Ok,
    /// A temporary failure (4xx, timeout, connection lost): queued or retried.
    TempFail,
    /// A permanent refusal (5xx).
    PermFail,
}

impl RelayResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RelayResult::Ok => "ok",
            RelayResult::TempFail => "tempfail",
            RelayResult::PermFail => "permfail",
        }
    }
}

/// Upstream state read at scrape time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamSnapshot {
    /// The watcher connection is logged in.
    pub up: bool,
    /// Unix time (milliseconds) when the upstream's shared folders were last
    /// confirmed equal to the index; 0 if never yet.
    pub last_confirmed_unix_ms: i64,
}

/// One `leadgate_leads{status, owner}` sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadCount {
    pub status: String,
    /// The owner's user name, or `-` for unassigned leads.
    pub owner: String,
    pub count: i64,
}

/// Lead state read at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeadSnapshot {
    pub counts: Vec<LeadCount>,
    /// Active leads past their due time.
    pub overdue: i64,
}

type UpstreamSource = Box<dyn Fn() -> UpstreamSnapshot + Send + Sync>;
type LeadSource = Box<dyn Fn() -> LeadSnapshot + Send + Sync>;

/// Every metric leadgate exports. The handles are public and cheap to clone
/// (they share their storage), for code that wants to pre-resolve labels.
pub struct Metrics {
    registry: Registry,
    started_unix: i64,
    pub connections_total: IntCounterVec,
    pub connections_active: IntGaugeVec,
    pub logins_total: IntCounterVec,
    pub commands_total: IntCounterVec,
    pub upstream_up: IntGauge,
    upstream_sync_lag_seconds: Gauge,
    leads: IntGaugeVec,
    leads_overdue: IntGauge,
    pub first_response_seconds: HistogramVec,
    pub replies_blocked_total: IntCounterVec,
    pub relay_seconds: Histogram,
    pub relay_total: IntCounterVec,
    upstream_source: RwLock<Option<UpstreamSource>>,
    lead_source: RwLock<Option<LeadSource>>,
    /// Serialises scrapes: a lead refresh resets the gauge vector before it
    /// sets it, and two of them must not interleave.
    scrape: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `metric`; the names are constants, so a failure is a bug here.
fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("leadgate metric names are valid and unique");
    metric
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter"),
    )
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge"),
    )
}

fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        Metrics {
            connections_total: counter_vec(
                &r,
                "leadgate_connections_total",
                "Client connections accepted.",
                &["proto"],
            ),
            connections_active: gauge_vec(
                &r,
                "leadgate_connections_active",
                "Client connections open now.",
                &["proto"],
            ),
            logins_total: counter_vec(
                &r,
                "leadgate_logins_total",
                "Login attempts by result (ok or failed).",
                &["proto", "result"],
            ),
            commands_total: counter_vec(
                &r,
                "leadgate_commands_total",
                "Client commands received.",
                &["proto", "command"],
            ),
            upstream_up: register(
                &r,
                IntGauge::new(
                    "leadgate_upstream_up",
                    "1 when the upstream watcher connection is logged in.",
                )
                .expect("valid gauge"),
            ),
            upstream_sync_lag_seconds: register(
                &r,
                Gauge::new(
                    "leadgate_upstream_sync_lag_seconds",
                    "Seconds since the upstream was last confirmed equal to the index (checked every poll interval; since start if never yet).",
                )
                .expect("valid gauge"),
            ),
            leads: gauge_vec(
                &r,
                "leadgate_leads",
                "Leads by status and owner (\"-\" for unassigned).",
                &["status", "owner"],
            ),
            leads_overdue: register(
                &r,
                IntGauge::new(
                    "leadgate_leads_overdue",
                    "Active leads past their due time.",
                )
                .expect("valid gauge"),
            ),
            first_response_seconds: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "leadgate_first_response_seconds",
                        "Time from a lead's first customer message to the team's first reply.",
                    )
                    .buckets(FIRST_RESPONSE_BUCKETS.to_vec()),
                    &["owner"],
                )
                .expect("valid histogram"),
            ),
            replies_blocked_total: counter_vec(
                &r,
                "leadgate_replies_blocked_total",
                "Replies refused because another user owns the lead, by owner.",
                &["owner"],
            ),
            relay_seconds: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "leadgate_relay_seconds",
                        "Time to hand a submitted message to the upstream relay.",
                    )
                    .buckets(RELAY_BUCKETS.to_vec()),
                )
                .expect("valid histogram"),
            ),
            relay_total: counter_vec(
                &r,
                "leadgate_relay_total",
                "Relay attempts by result (ok, tempfail, permfail).",
                &["result"],
            ),
            registry: r,
            started_unix: unix_now(),
            upstream_source: RwLock::new(None),
            lead_source: RwLock::new(None),
            scrape: Mutex::new(()),
        }
    }

    /// A connection was accepted: counts it and keeps it in
    /// `connections_active` until the guard is dropped.
    pub fn connection(&self, proto: Proto) -> ConnectionGuard {
        self.connections_total
            .with_label_values(&[proto.as_str()])
            .inc();
        let active = self.connections_active.with_label_values(&[proto.as_str()]);
        active.inc();
        ConnectionGuard { active }
    }

    pub fn login(&self, proto: Proto, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.logins_total
            .with_label_values(&[proto.as_str(), result])
            .inc();
    }

    /// Counts a client command. Names outside the protocol's known set are
    /// counted as `OTHER`, so a client cannot create label values.
    pub fn command(&self, proto: Proto, name: &str) {
        self.commands_total
            .with_label_values(&[proto.as_str(), command_label(proto, name)])
            .inc();
    }

    pub fn set_upstream_up(&self, up: bool) {
        self.upstream_up.set(i64::from(up));
    }

    /// `owner` is the user who sent the first reply.
    pub fn first_response(&self, owner: &str, elapsed: Duration) {
        self.first_response_seconds
            .with_label_values(&[owner])
            .observe(elapsed.as_secs_f64());
    }

    /// A reply was refused; `owner` is the lead's owner.
    pub fn reply_blocked(&self, owner: &str) {
        self.replies_blocked_total.with_label_values(&[owner]).inc();
    }

    pub fn relay(&self, result: RelayResult, elapsed: Duration) {
        self.relay_total.with_label_values(&[result.as_str()]).inc();
        self.relay_seconds.observe(elapsed.as_secs_f64());
    }

    /// Read at every scrape for `leadgate_upstream_up` and
    /// `leadgate_upstream_sync_lag_seconds`.
    pub fn set_upstream_source(&self, f: impl Fn() -> UpstreamSnapshot + Send + Sync + 'static) {
        *self
            .upstream_source
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
    }

    /// Read at every scrape for `leadgate_leads` and `leadgate_leads_overdue`.
    /// Runs on a blocking thread, so it may read the store.
    pub fn set_lead_source(&self, f: impl Fn() -> LeadSnapshot + Send + Sync + 'static) {
        *self.lead_source.write().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
    }

    /// Refreshes the scrape-time gauges and renders every metric in the
    /// Prometheus text format (0.0.4).
    pub fn encode(&self) -> String {
        let _scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        let upstream = self
            .upstream_source
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|f| f());
        let last_confirmed_ms = match upstream {
            Some(s) => {
                self.set_upstream_up(s.up);
                s.last_confirmed_unix_ms
            }
            None => 0,
        };
        let since_ms = if last_confirmed_ms > 0 {
            last_confirmed_ms
        } else {
            self.started_unix.saturating_mul(1000)
        };
        let now_ms = unix_now_ms();
        self.upstream_sync_lag_seconds
            .set(now_ms.saturating_sub(since_ms).max(0) as f64 / 1000.0);

        let leads = self
            .lead_source
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|f| f());
        if let Some(snapshot) = leads {
            // Reset first so a status/owner pair that emptied disappears.
            self.leads.reset();
            for c in &snapshot.counts {
                self.leads
                    .with_label_values(&[c.status.as_str(), c.owner.as_str()])
                    .set(c.count);
            }
            self.leads_overdue.set(snapshot.overdue);
        }

        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!("encoding metrics failed: {e}");
        }
        String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }
}

/// Keeps a connection in `leadgate_connections_active` while alive.
#[derive(Debug)]
pub struct ConnectionGuard {
    active: IntGauge,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.active.dec();
    }
}

const IMAP_COMMANDS: &[&str] = &[
    "APPEND",
    "AUTHENTICATE",
    "CAPABILITY",
    "CHECK",
    "CLOSE",
    "COPY",
    "CREATE",
    "DELETE",
    "ENABLE",
    "EXAMINE",
    "EXPUNGE",
    "FETCH",
    "GETQUOTA",
    "GETQUOTAROOT",
    "ID",
    "IDLE",
    "LIST",
    "LOGIN",
    "LOGOUT",
    "LSUB",
    "MOVE",
    "NAMESPACE",
    "NOOP",
    "RENAME",
    "SEARCH",
    "SELECT",
    "STARTTLS",
    "STATUS",
    "STORE",
    "SUBSCRIBE",
    "UID COPY",
    "UID EXPUNGE",
    "UID FETCH",
    "UID MOVE",
    "UID SEARCH",
    "UID STORE",
    "UNSELECT",
    "UNSUBSCRIBE",
];

const SMTP_COMMANDS: &[&str] = &[
    "AUTH", "BDAT", "DATA", "EHLO", "EXPN", "HELO", "HELP", "LHLO", "MAIL", "NOOP", "QUIT", "RCPT",
    "RSET", "STARTTLS", "VRFY",
];

/// The label for a command name: the canonical upper-case name when known,
/// `OTHER` otherwise.
pub fn command_label(proto: Proto, name: &str) -> &'static str {
    let known = match proto {
        Proto::Imap => IMAP_COMMANDS,
        Proto::Smtp => SMTP_COMMANDS,
    };
    let name = name.trim();
    known
        .iter()
        .find(|k| k.eq_ignore_ascii_case(name))
        .copied()
        .unwrap_or("OTHER")
}

/// Limits of the HTTP endpoint.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Largest request head (request line and headers) read. hyper's read
    /// buffer is never smaller than 8 KiB, so less counts as 8 KiB.
    pub max_request_bytes: usize,
    /// Time a client has to send its request head, and to take the answer.
    pub timeout: Duration,
    /// Connections served at once; more wait before `accept()`.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_request_bytes: MIN_HEAD_BUFFER,
            timeout: Duration::from_secs(5),
            max_connections: 32,
        }
    }
}

/// hyper's smallest allowed read buffer (`http1::Builder::max_buf_size`).
const MIN_HEAD_BUFFER: usize = 8 * 1024;

/// Health check used by `/healthz`: true when leadgate can serve.
pub type HealthCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown` turns
/// true (or its sender is dropped).
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: HealthCheck,
    shutdown: watch::Receiver<bool>,
) {
    serve_with(listener, metrics, health, shutdown, HttpLimits::default()).await
}

/// [`serve`] with explicit limits.
pub async fn serve_with(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: HealthCheck,
    shutdown: watch::Receiver<bool>,
    limits: HttpLimits,
) {
    // One cap on connections and none per address: a scraper is one host.
    let max = limits.max_connections.max(1);
    accept_loop(
        listener,
        ConnLimits::new(max, max),
        shutdown,
        move |stream, peer, _admission, slot| {
            let (metrics, health) = (metrics.clone(), health.clone());
            async move {
                handle(stream, peer, metrics, health, limits).await;
                drop(slot);
            }
        },
    )
    .await
}

type Body = Full<Bytes>;

/// A response with the headers every answer carries.
fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    reply(status, "text/plain; charset=utf-8", format!("{body}\n"))
}

async fn route(
    method: &Method,
    path: &str,
    metrics: &Arc<Metrics>,
    health: &HealthCheck,
) -> Response<Body> {
    if path != "/metrics" && path != "/healthz" {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    if method != Method::GET {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    if path == "/healthz" {
        let health = health.clone();
        // The check is the daemon's code: keep a panic in it from taking
        // the endpoint down.
        return match tokio::task::spawn_blocking(move || health()).await {
            Ok(true) => text(StatusCode::OK, "ok"),
            Ok(false) => text(StatusCode::SERVICE_UNAVAILABLE, "upstream unavailable"),
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "health check failed"),
        };
    }
    let m = metrics.clone();
    // Lead sources may read the store: off the async workers.
    match tokio::task::spawn_blocking(move || m.encode()).await {
        Ok(body) => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            body,
        ),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable"),
    }
}

/// Serves one connection, one request: hyper reads the head within the
/// limits and answers what it cannot parse (400, 431); a head that never
/// came whole (too slow, or cut off) gets 408 or 400 here, and a client
/// that does not take the answer in time is dropped.
async fn handle(
    mut stream: TcpStream,
    peer: SocketAddr,
    metrics: Arc<Metrics>,
    health: HealthCheck,
    limits: HttpLimits,
) {
    let (answered_tx, mut answered) = watch::channel(false);
    let answered_tx = Arc::new(answered_tx);
    let service = service_fn(move |req: Request<Incoming>| {
        let (metrics, health, answered) = (metrics.clone(), health.clone(), answered_tx.clone());
        async move {
            let r = route(req.method(), req.uri().path(), &metrics, &health).await;
            answered.send_replace(true);
            Ok::<_, Infallible>(r)
        }
    });
    let mut http = http1::Builder::new();
    http.keep_alive(false)
        .title_case_headers(true)
        .max_buf_size(limits.max_request_bytes.max(MIN_HEAD_BUFFER))
        .timer(TokioTimer::new())
        .header_read_timeout(limits.timeout);
    let served = tokio::select! {
        biased;
        r = http.serve_connection(TokioIo::new(&mut stream), service) => r,
        _ = async {
            let _ = answered.wait_for(|a| *a).await;
            tokio::time::sleep(limits.timeout).await;
        } => {
            tracing::debug!("metrics: {peer} did not take the answer in time");
            return;
        }
    };
    let unanswered = match served {
        Ok(()) => None,
        Err(e) if e.is_timeout() => Some(StatusCode::REQUEST_TIMEOUT),
        Err(e) if e.is_incomplete_message() && !*answered.borrow() => Some(StatusCode::BAD_REQUEST),
        Err(e) => {
            tracing::debug!("metrics: connection from {peer}: {e}");
            None
        }
    };
    if let Some(status) = unanswered {
        let _ = tokio::time::timeout(limits.timeout, async {
            stream.write_all(&bare_reply(status)).await?;
            stream.shutdown().await
        })
        .await;
    }
    // Read what the client still sends (a body, the rest of an oversized
    // head) for a moment: closing with unread input resets the connection,
    // which can destroy the answer before the client has read it.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut sink = [0u8; 4096];
        let mut left = 64 * 1024usize;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// An error answer written without hyper: hyper closes in silence when a
/// head is not finished in time or is cut off, and this endpoint says why.
fn bare_reply(status: StatusCode) -> Vec<u8> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!("{}\n", reason.to_ascii_lowercase());
    format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        status.as_u16(),
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touched() -> Metrics {
        let m = Metrics::new();
        let _c = m.connection(Proto::Imap);
        m.login(Proto::Imap, true);
        m.login(Proto::Smtp, false);
        m.command(Proto::Imap, "uid fetch");
        m.command(Proto::Imap, "XYZZY");
        m.set_upstream_up(true);
        m.first_response("alice", Duration::from_secs(600));
        m.reply_blocked("bob");
        m.relay(RelayResult::Ok, Duration::from_millis(120));
        m.set_lead_source(|| LeadSnapshot {
            counts: vec![LeadCount {
                status: "New".into(),
                owner: "-".into(),
                count: 3,
            }],
            overdue: 1,
        });
        m
    }

    /// The value of the sample line that starts with `prefix`.
    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn encode_names_every_metric_after_updates() {
        let m = touched();
        let text = m.encode();
        for name in [
            "leadgate_connections_total",
            "leadgate_connections_active",
            "leadgate_logins_total",
            "leadgate_commands_total",
            "leadgate_upstream_up",
            "leadgate_upstream_sync_lag_seconds",
            "leadgate_leads",
            "leadgate_leads_overdue",
            "leadgate_first_response_seconds_bucket",
            "leadgate_replies_blocked_total",
            "leadgate_relay_seconds_bucket",
            "leadgate_relay_total",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "{name} missing from:\n{text}"
            );
        }
        assert_eq!(
            sample(
                &text,
                "leadgate_logins_total{proto=\"smtp\",result=\"failed\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "leadgate_commands_total{command=\"UID FETCH\",proto=\"imap\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "leadgate_commands_total{command=\"OTHER\",proto=\"imap\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "leadgate_leads{owner=\"-\",status=\"New\"}"),
            Some(3.0)
        );
        assert_eq!(sample(&text, "leadgate_leads_overdue"), Some(1.0));
        assert!(text
            .contains("leadgate_first_response_seconds_bucket{owner=\"alice\",le=\"259200\"} 1"));
    }

    #[test]
    fn connection_guard_tracks_active_connections() {
        let m = Metrics::new();
        let a = m.connection(Proto::Smtp);
        let b = m.connection(Proto::Smtp);
        let active = "leadgate_connections_active{proto=\"smtp\"}";
        assert_eq!(sample(&m.encode(), active), Some(2.0));
        drop(a);
        drop(b);
        assert_eq!(sample(&m.encode(), active), Some(0.0));
        assert_eq!(
            sample(&m.encode(), "leadgate_connections_total{proto=\"smtp\"}"),
            Some(2.0)
        );
    }

    #[test]
    fn scrape_time_sources_set_upstream_state_and_drop_stale_leads() {
        let m = Metrics::new();
        let confirmed = (unix_now() - 42) * 1000;
        m.set_upstream_source(move || UpstreamSnapshot {
            up: false,
            last_confirmed_unix_ms: confirmed,
        });
        let round = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let r = round.clone();
        m.set_lead_source(move || {
            let owner = if r.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                "alice"
            } else {
                "bob"
            };
            LeadSnapshot {
                counts: vec![LeadCount {
                    status: "Assigned".into(),
                    owner: owner.into(),
                    count: 2,
                }],
                overdue: 0,
            }
        });
        let first = m.encode();
        assert_eq!(sample(&first, "leadgate_upstream_up"), Some(0.0));
        let lag = sample(&first, "leadgate_upstream_sync_lag_seconds").unwrap();
        assert!((42.0..50.0).contains(&lag), "lag {lag}");
        assert!(first.contains("owner=\"alice\""));
        let second = m.encode();
        assert!(!second.contains("owner=\"alice\""), "{second}");
        assert!(second.contains("owner=\"bob\""));
    }

    #[test]
    fn command_labels_are_bounded() {
        assert_eq!(command_label(Proto::Imap, "fetch"), "FETCH");
        assert_eq!(command_label(Proto::Smtp, " ehlo "), "EHLO");
        assert_eq!(command_label(Proto::Smtp, "FETCH"), "OTHER");
        assert_eq!(command_label(Proto::Imap, "\u{0}\u{ff}"), "OTHER");
    }

    struct Server {
        addr: std::net::SocketAddr,
        healthy: Arc<std::sync::atomic::AtomicBool>,
        shutdown: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(limits: HttpLimits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let h = healthy.clone();
        let health: HealthCheck = Arc::new(move || h.load(std::sync::atomic::Ordering::SeqCst));
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(serve_with(
            listener,
            Arc::new(touched()),
            health,
            rx,
            limits,
        ));
        Server {
            addr,
            healthy,
            shutdown,
            task,
        }
    }

    /// Sends `request` and reads the whole answer (the server closes).
    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        tokio::time::timeout(Duration::from_secs(10), async {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(request).await.unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            String::from_utf8_lossy(&out).into_owned()
        })
        .await
        .expect("answer within 10 s")
    }

    /// The status code of an HTTP/1.x answer.
    fn status(answer: &str) -> u16 {
        answer
            .strip_prefix("HTTP/1.")
            .and_then(|r| r.get(2..5))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
    }

    #[tokio::test]
    async fn requests_are_routed_and_garbage_is_refused_with_400() {
        let server = start(HttpLimits::default()).await;
        for (request, want) in [
            (&b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"[..], 200),
            (b"GET /healthz HTTP/1.0\n\n", 200),
            (b"POST /healthz HTTP/1.0\n\n", 405),
            (b"HEAD /metrics HTTP/1.1\r\n\r\n", 405),
            (b"GET /metrics/ HTTP/1.1\r\n\r\n", 404),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
            (b"GET /metrics\r\n\r\n", 400),
            (b"GET  /metrics HTTP/1.1\r\n\r\n", 400),
            (b"GET /metrics HTTP/2\r\n\r\n", 400),
            (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", 400),
            (b"GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
            (b"HELLO\r\n\r\n", 400),
        ] {
            let answer = exchange(server.addr, request).await;
            assert_eq!(
                status(&answer),
                want,
                "{:?} got {answer:?}",
                String::from_utf8_lossy(request)
            );
            // HTTP/1.0 closes by default; 1.1 is told.
            if answer.starts_with("HTTP/1.1") {
                assert!(answer.contains("Connection: close\r\n"), "{answer}");
            }
        }
        let _ = server.shutdown.send(true);
    }

    #[tokio::test]
    async fn http_endpoint_answers_metrics_health_and_errors() {
        let server = start(HttpLimits::default()).await;
        let addr = server.addr;

        let r = exchange(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
        assert!(r.contains("Cache-Control: no-store\r\n"), "{r}");
        assert!(r.contains("Connection: close\r\n"), "{r}");
        assert!(r.contains("leadgate_logins_total"), "{r}");
        let body_len = r.split_once("\r\n\r\n").unwrap().1.len();
        assert!(
            r.contains(&format!("Content-Length: {body_len}\r\n")),
            "{r}"
        );

        let r = exchange(addr, b"GET /healthz HTTP/1.0\r\n\r\n").await;
        assert_eq!(status(&r), 200, "{r}");
        assert!(
            r.contains("Content-Type: text/plain; charset=utf-8\r\n"),
            "{r}"
        );
        assert!(r.ends_with("\r\n\r\nok\n"), "{r}");

        server
            .healthy
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let r = exchange(addr, b"GET /healthz HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
        assert!(r.ends_with("upstream unavailable\n"), "{r}");

        let r = exchange(addr, b"GET /admin HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");

        let r = exchange(
            addr,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
        assert!(r.contains("Allow: GET\r\n"), "{r}");

        let r = exchange(addr, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n\n").await;
        assert!(r.starts_with("HTTP/1.1 400 "), "{r}");

        let _ = server.shutdown.send(true);
        tokio::time::timeout(Duration::from_secs(5), server.task)
            .await
            .expect("serve returns on shutdown")
            .unwrap();
    }

    #[tokio::test]
    async fn http_endpoint_survives_oversized_and_slow_requests() {
        let server = start(HttpLimits {
            timeout: Duration::from_millis(500),
            ..HttpLimits::default()
        })
        .await;
        let addr = server.addr;

        // 64 KiB of header without an end: refused at the 8 KiB cap.
        let mut big = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 64 * 1024));
        let r = exchange(addr, &big).await;
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");

        // A client that starts a request and stalls gets 408 after the
        // timeout, and does not hold up others meanwhile.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /metr").await.unwrap();
        let r = exchange(addr, b"GET /healthz HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut out))
            .await
            .expect("slow client is cut off")
            .unwrap();
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
        assert!(out.ends_with("\r\n\r\nrequest timeout\n"), "{out}");

        // A client that connects and closes silently is no error.
        drop(TcpStream::connect(addr).await.unwrap());
        // Truncated request.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        s.shutdown().await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 400 "));

        let r = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
        let _ = server.shutdown.send(true);
    }

    #[tokio::test]
    async fn connections_over_the_cap_wait_for_a_free_slot() {
        let server = start(HttpLimits {
            timeout: Duration::from_millis(500),
            max_connections: 1,
            ..HttpLimits::default()
        })
        .await;
        // The only slot is held by a client that sends nothing; the next
        // one is served once the first has been timed out.
        let mut hog = TcpStream::connect(server.addr).await.unwrap();
        let started = tokio::time::Instant::now();
        let r = exchange(server.addr, b"GET /healthz HTTP/1.1\r\n\r\n").await;
        assert_eq!(status(&r), 200, "{r}");
        assert!(started.elapsed() >= Duration::from_millis(400));
        let mut out = Vec::new();
        hog.read_to_end(&mut out).await.unwrap();
        assert_eq!(status(&String::from_utf8_lossy(&out)), 408);
        let _ = server.shutdown.send(true);
    }
}
