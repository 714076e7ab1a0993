//! The outbound side of the submission server. With `delivery = "relay"`
//! every accepted message goes to the upstream submission server while the
//! client waits: leadgate says 250 only after the upstream said 250, an
//! upstream 4xx, timeout or connection failure becomes `451 4.4.x`, and an
//! upstream 5xx to the message is passed through with the upstream's code
//! and text. With `delivery = "direct"` the message is queued durably
//! (`queue`) and delivered to the recipients' MX hosts (`mx`).
//!
//! mail-send's `SmtpClient` does the protocol: greeting, EHLO, STARTTLS or
//! implicit TLS, AUTH (PLAIN/LOGIN), MAIL and RCPT. The steps are called
//! here rather than through `SmtpClientBuilder::connect`, which keeps the
//! EHLO answer to itself: leadgate needs it for `SIZE=` and
//! `BODY=8BITMIME`. The DATA phase is written here too (`send_data`), so
//! line endings are normalised and the message does not gain a blank line
//! (mail-send's `data` always appends CRLF before the final dot).
//!
//! TLS uses `net::tls::client_config` (ring, web PKI roots plus the
//! optional `ca_file`) as the `TlsConnector` mail-send's `start_tls` /
//! `into_tls` take; mail-send's own default (the platform verifier) is
//! never built.

use std::{sync::Arc, time::Duration};

use mail_send::{
    smtp::{message::Parameters, AssertReply},
    Credentials, SmtpClient,
};
use smtp_proto::{EhloResponse, Response, EXT_8BIT_MIME, EXT_SIZE, EXT_START_TLS};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{client::TlsStream, TlsConnector};

use super::{
    config::{Delivery, RelayConfig, RelayTls, SmtpConfig},
    queue::Queue,
    Reply,
};
use crate::{
    section::{invalid, Invalid},
    store::Store,
};

/// Why the upstream did not take a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// Try again later: an upstream 4xx, a timeout, a refused or broken
    /// connection, a TLS or login failure (a 5xx before the transaction,
    /// e.g. to AUTH, is about leadgate's connection, not the message, and
    /// lands here too). The gateway answers `451` with `status`.
    #[error("upstream relay, temporary failure: {text}")]
    Temporary {
        /// The upstream's reply code, when it answered at all.
        code: Option<u16>,
        /// The enhanced status leadgate gives: 4.4.1 (no connection),
        /// 4.4.2 (timeout or broken connection, TLS failure) or 4.4.0
        /// (the upstream's 4xx, a failed login, anything else).
        status: (u8, u16, u16),
        /// What happened, naming the upstream and quoting its reply.
        text: String,
    },
    /// The upstream refused the message (5xx to MAIL, RCPT or DATA): the
    /// gateway passes `code`, `enhanced` and `text` to the client.
    #[error("upstream relay refused the message: {code} {text}")]
    Permanent {
        code: u16,
        /// The upstream's enhanced status code, if it gave one.
        enhanced: Option<(u8, u16, u16)>,
        /// The upstream's reply text, unchanged (lines separated by `\n`).
        text: String,
    },
}

impl RelayError {
    pub fn is_temporary(&self) -> bool {
        matches!(self, RelayError::Temporary { .. })
    }

    /// The reply for the submitting client: `451 4.4.x` for a temporary
    /// failure, the upstream's own code, enhanced code and text for a
    /// permanent one.
    pub fn to_reply(&self) -> Reply {
        match self {
            RelayError::Temporary { status, text, .. } => {
                Reply::new(451, *status, format!("Not sent, try again later: {text}"))
            }
            RelayError::Permanent {
                code,
                enhanced,
                text,
            } => Reply::new(*code, enhanced.unwrap_or((5, 0, 0)), text.clone()),
        }
    }
}

/// Where in the session a failure happened: a 5xx before MAIL is about the
/// connection (temporary for the message), from MAIL on it is the answer
/// about the message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connect,
    Transaction,
}

/// The upstream submission server.
pub struct Relay {
    /// Host name or address, without brackets.
    host: String,
    port: u16,
    tls: RelayTls,
    connector: TlsConnector,
    credentials: Option<Credentials<String>>,
    /// `host:port`, for messages and logs.
    target: String,
    helo: String,
    timeout: Duration,
    /// Connections whose last transaction succeeded, kept for the next
    /// message (newest last): a reply need not pay for TCP, TLS, greeting,
    /// EHLO and AUTH every time.
    idle: std::sync::Mutex<Vec<(Conn, std::time::Instant)>>,
}

/// A connected, greeted (and logged-in) relay connection.
enum Conn {
    Plain(SmtpClient<TcpStream>, EhloResponse<String>),
    Tls(Box<SmtpClient<TlsStream<TcpStream>>>, EhloResponse<String>),
}

impl Conn {
    /// Closes politely in the background.
    fn quit(self) {
        tokio::spawn(async move {
            let limit = Duration::from_secs(5);
            match self {
                Conn::Plain(c, _) => drop(tokio::time::timeout(limit, c.quit()).await),
                Conn::Tls(c, _) => drop(tokio::time::timeout(limit, c.quit()).await),
            }
        });
    }
}

/// An idle relay connection is reused for this long (Postfix drops idle
/// clients after `smtpd_timeout`, 300 s by default).
const IDLE_REUSE: Duration = Duration::from_secs(30);
/// At most this many idle relay connections are kept.
const MAX_IDLE: usize = 4;

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("target", &self.target)
            .field("tls", &self.tls)
            .field("auth", &self.credentials.is_some())
            .finish()
    }
}

impl Relay {
    /// Reads the password (file or credential) and the CA file now, so a
    /// missing one stops the start-up rather than the first message.
    /// `hostname` is the name leadgate gives in EHLO (`server.hostname`).
    pub fn new(config: &RelayConfig, hostname: &str) -> Result<Relay, Invalid> {
        let host = config
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(invalid(
                "smtp.relay.host",
                "must name the upstream submission server",
            ));
        }
        if config.timeout_secs == 0 {
            return Err(invalid("smtp.relay.timeout_secs", "must be at least 1"));
        }
        let tls = crate::net::tls::client_config(config.ca_file.as_deref())
            .map_err(|e| invalid("smtp.relay.ca_file", e.to_string()))?;
        let credentials = match (&config.username, config.resolve_password()?) {
            (Some(user), Some(password)) => {
                Some(Credentials::new(user.clone(), password.expose().clone()))
            }
            _ => None,
        };
        Ok(Relay {
            target: format!("{}:{}", config.host, config.port),
            host,
            port: config.port,
            tls: config.tls,
            connector: TlsConnector::from(tls),
            credentials,
            helo: hostname.to_owned(),
            timeout: Duration::from_secs(config.timeout_secs),
            idle: Default::default(),
        })
    }

    /// Hands one message to the upstream. `Ok` means the upstream answered
    /// 250 to the data; any recipient it refuses fails the whole message
    /// (nothing is sent then), so the client's one reply stays true.
    pub async fn send(&self, from: &str, rcpt: &[String], body: &[u8]) -> Result<(), RelayError> {
        if rcpt.is_empty() {
            return Err(RelayError::Permanent {
                code: 554,
                enhanced: Some((5, 5, 1)),
                text: "No valid recipients".into(),
            });
        }
        // An idle connection first; if the relay dropped it meanwhile (the
        // MAIL command finds it closed, before anything was sent), once
        // more on a new one.
        let mut result = Err(RelayError::Temporary {
            code: None,
            status: (4, 4, 0),
            text: "not attempted".into(),
        });
        for reuse in [true, false] {
            let conn = match reuse.then(|| self.take_idle()).flatten() {
                Some(conn) => conn,
                None if reuse => continue,
                None => match self.connect().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        result = Err(self.error(e, Stage::Connect));
                        break;
                    }
                },
            };
            let (conn, outcome) = self.transact(conn, from, rcpt, body).await;
            match outcome {
                Ok(reply) => {
                    self.put_idle(conn);
                    result = Ok(reply);
                    break;
                }
                Err((e, Stage::Connect)) if reuse => {
                    tracing::debug!("relay: idle connection to {} was closed: {e}", self.target);
                    conn.quit();
                }
                Err((e, stage)) => {
                    conn.quit();
                    result = Err(self.error(e, stage));
                    break;
                }
            }
        }
        match &result {
            Ok(reply) => tracing::info!(
                "relay: sent from=<{from}> rcpts={} bytes={} via {}: {reply}",
                rcpt.len(),
                body.len(),
                self.target
            ),
            Err(e) => tracing::warn!("relay: not sent from=<{from}> rcpts={}: {e}", rcpt.len()),
        }
        result.map(|_| ())
    }

    /// The whole connection phase (TCP, TLS, greeting, EHLO, AUTH) gets
    /// one timeout; each later command gets its own.
    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = mail_send::Result<T>>,
    ) -> mail_send::Result<T> {
        tokio::time::timeout(self.timeout, f)
            .await
            .map_err(|_| mail_send::Error::Timeout)?
    }

    async fn tcp(&self) -> mail_send::Result<SmtpClient<TcpStream>> {
        let stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
        let _ = stream.set_nodelay(true);
        Ok(SmtpClient {
            stream,
            timeout: self.timeout,
        })
    }

    async fn login<T: AsyncRead + AsyncWrite + Unpin>(
        &self,
        client: &mut SmtpClient<T>,
        ehlo: &EhloResponse<String>,
    ) -> mail_send::Result<()> {
        if let Some(credentials) = &self.credentials {
            client.authenticate(credentials, ehlo).await?;
        }
        Ok(())
    }

    async fn connect_plain(
        &self,
    ) -> mail_send::Result<(SmtpClient<TcpStream>, EhloResponse<String>)> {
        let mut client = self.tcp().await?;
        client.read().await?.assert_positive_completion()?;
        let ehlo = client.ehlo(&self.helo).await?;
        self.login(&mut client, &ehlo).await?;
        Ok((client, ehlo))
    }

    async fn connect_starttls(
        &self,
    ) -> mail_send::Result<(SmtpClient<TlsStream<TcpStream>>, EhloResponse<String>)> {
        let mut client = self.tcp().await?;
        client.read().await?.assert_positive_completion()?;
        if !client.ehlo(&self.helo).await?.has_capability(EXT_START_TLS) {
            return Err(mail_send::Error::MissingStartTls);
        }
        let mut client = client.start_tls(&self.connector, &self.host).await?;
        let ehlo = client.ehlo(&self.helo).await?;
        self.login(&mut client, &ehlo).await?;
        Ok((client, ehlo))
    }

    async fn connect_implicit(
        &self,
    ) -> mail_send::Result<(SmtpClient<TlsStream<TcpStream>>, EhloResponse<String>)> {
        let client = self.tcp().await?;
        let mut client = client.into_tls(&self.connector, &self.host).await?;
        client.read().await?.assert_positive_completion()?;
        let ehlo = client.ehlo(&self.helo).await?;
        self.login(&mut client, &ehlo).await?;
        Ok((client, ehlo))
    }

    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < IDLE_REUSE {
                return Some(conn);
            }
            conn.quit();
        }
        None
    }

    fn put_idle(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.push((conn, std::time::Instant::now()));
        if idle.len() > MAX_IDLE {
            idle.remove(0).0.quit();
        }
    }

    async fn connect(&self) -> mail_send::Result<Conn> {
        Ok(match self.tls {
            RelayTls::None => {
                let (c, ehlo) = self.bounded(self.connect_plain()).await?;
                Conn::Plain(c, ehlo)
            }
            RelayTls::Starttls => {
                let (c, ehlo) = self.bounded(self.connect_starttls()).await?;
                Conn::Tls(Box::new(c), ehlo)
            }
            RelayTls::Implicit => {
                let (c, ehlo) = self.bounded(self.connect_implicit()).await?;
                Conn::Tls(Box::new(c), ehlo)
            }
        })
    }

    /// MAIL, RCPT, DATA on a connection; the upstream's final reply text
    /// on success. A failure of the MAIL command on the connection itself
    /// (not a reply) is reported as `Stage::Connect`: nothing was sent.
    async fn transact(
        &self,
        mut conn: Conn,
        from: &str,
        rcpt: &[String],
        body: &[u8],
    ) -> (Conn, Result<String, (mail_send::Error, Stage)>) {
        let result = match &mut conn {
            Conn::Plain(c, ehlo) => transaction(c, ehlo, from, rcpt, body).await,
            Conn::Tls(c, ehlo) => transaction(c.as_mut(), ehlo, from, rcpt, body).await,
        };
        (conn, result.map(|reply| reply.message))
    }

    fn error(&self, e: mail_send::Error, stage: Stage) -> RelayError {
        use mail_send::Error as E;
        let target = &self.target;
        let temp = |status, code, text| RelayError::Temporary { code, status, text };
        match e {
            E::UnexpectedReply(r)
                if stage == Stage::Transaction && (500..600).contains(&r.code) =>
            {
                RelayError::Permanent {
                    code: r.code,
                    enhanced: enhanced(&r),
                    text: r.message,
                }
            }
            E::UnexpectedReply(r) => temp(
                (4, 4, 0),
                Some(r.code),
                format!("{target} said: {}", reply_text(&r)),
            ),
            E::AuthenticationFailed(r) => temp(
                (4, 4, 0),
                Some(r.code),
                format!("{target} refused leadgate's login: {}", reply_text(&r)),
            ),
            E::Auth(e) => temp((4, 4, 0), None, format!("login at {target} failed: {e}")),
            E::UnsupportedAuthMechanism => temp(
                (4, 4, 0),
                None,
                format!("{target} offers no login method leadgate supports (PLAIN, LOGIN)"),
            ),
            E::MissingCredentials => temp((4, 4, 0), None, format!("{target}: no credentials")),
            E::Timeout => temp(
                if stage == Stage::Connect {
                    (4, 4, 1)
                } else {
                    (4, 4, 2)
                },
                None,
                format!("no answer from {target} within {}s", self.timeout.as_secs()),
            ),
            E::Io(e) if stage == Stage::Connect => {
                temp((4, 4, 1), None, format!("cannot connect to {target}: {e}"))
            }
            E::Io(e) => temp(
                (4, 4, 2),
                None,
                format!("connection to {target} failed: {e}"),
            ),
            E::UnparseableReply => temp(
                (4, 4, 2),
                None,
                format!("{target} closed the connection or sent an unreadable reply"),
            ),
            E::Tls(e) => temp((4, 4, 2), None, format!("TLS with {target} failed: {e}")),
            E::InvalidTLSName => temp(
                (4, 4, 0),
                None,
                format!("{target}: smtp.relay.host is not a valid TLS server name"),
            ),
            E::MissingStartTls => temp(
                (4, 4, 0),
                None,
                format!("{target} does not offer STARTTLS (smtp.relay.tls = \"starttls\")"),
            ),
            other => temp((4, 4, 0), None, format!("{target}: {other}")),
        }
    }
}

/// The upstream's enhanced status code, when its reply had one.
pub(crate) fn enhanced(r: &Response<String>) -> Option<(u8, u16, u16)> {
    match r.esc {
        [c @ (2 | 4 | 5), s, d] => Some((c, s as u16, d as u16)),
        _ => None,
    }
}

/// `550 5.1.1 text` as one string, lines joined with " / ".
pub(crate) fn reply_text(r: &Response<String>) -> String {
    let msg = r.message.trim().replace("\r\n", " / ").replace('\n', " / ");
    match enhanced(r) {
        Some((c, s, d)) => format!("{} {c}.{s}.{d} {msg}", r.code),
        None => format!("{} {msg}", r.code),
    }
}

pub(crate) fn is_8bit(body: &[u8]) -> bool {
    body.iter().any(|b| *b >= 0x80)
}

/// MAIL FROM parameters the server understands: `SIZE=` so an oversized
/// message is refused before its data is sent, `BODY=8BITMIME` for 8-bit
/// content.
pub(crate) fn mail_params(ehlo: &EhloResponse<String>, body: &[u8]) -> Parameters<'static> {
    let mut params = Parameters::new();
    if ehlo.has_capability(EXT_SIZE) {
        params.add(("SIZE".to_string(), body.len().to_string()));
    }
    if is_8bit(body) && ehlo.has_capability(EXT_8BIT_MIME) {
        params.add(("BODY", "8BITMIME"));
    }
    params
}

/// The message as it goes on the wire after DATA: every line ending
/// (CRLF, bare LF, bare CR) becomes CRLF, a leading dot is doubled, the last
/// line is ended, and the final `.` line is appended. Normalising bare CR
/// and LF means no upstream can read an end of data (SMTP smuggling) that
/// leadgate did not write.
pub(crate) fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64 + 8);
    let mut at_line_start = true;
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        match b {
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                if b == b'\r' && body.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                at_line_start = true;
            }
            _ => {
                if at_line_start && b == b'.' {
                    out.push(b'.');
                }
                out.push(b);
                at_line_start = false;
            }
        }
        i += 1;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// One mail transaction on a connected client.
async fn transaction<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<T>,
    ehlo: &EhloResponse<String>,
    from: &str,
    rcpt: &[String],
    body: &[u8],
) -> Result<Response<String>, (mail_send::Error, Stage)> {
    let params = mail_params(ehlo, body);
    match client.mail_from(from, &params).await {
        Ok(()) => {}
        // The connection is gone (or going: Postfix says 421 as it drops
        // an idle client): nothing was sent.
        Err(e @ (mail_send::Error::Io(_) | mail_send::Error::UnparseableReply)) => {
            return Err((e, Stage::Connect))
        }
        Err(mail_send::Error::UnexpectedReply(r)) if r.code == 421 => {
            return Err((mail_send::Error::UnexpectedReply(r), Stage::Connect))
        }
        Err(e) => return Err((e, Stage::Transaction)),
    }
    async {
        for r in rcpt {
            client.rcpt_to(r, &Parameters::new()).await?;
        }
        send_data(client, body).await
    }
    .await
    .map_err(|e| (e, Stage::Transaction))
}

/// DATA, the message, and the final reply, which must be 2xx. The data
/// gets the client's timeout plus one second per 64 KiB.
pub(crate) async fn send_data<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<T>,
    body: &[u8],
) -> mail_send::Result<Response<String>> {
    client.cmd(b"DATA\r\n").await?.assert_code(354)?;
    let wire = dot_stuff(body);
    let limit = client.timeout + Duration::from_secs(wire.len() as u64 / 65536);
    tokio::time::timeout(limit, async {
        client.stream.write_all(&wire).await?;
        client.stream.flush().await?;
        client.read().await
    })
    .await
    .map_err(|_| mail_send::Error::Timeout)??
    .into_positive_completion()
}

/// What the submission handler hands accepted mail to: the relay, or the
/// durable queue for direct delivery.
pub enum Outbound {
    Relay(Arc<Relay>),
    /// Spawn `queue::run(queue.clone(), shutdown)` beside it.
    Direct(Arc<Queue>),
}

impl Outbound {
    /// Builds what `smtp.delivery` asks for. Call before the SMTP listeners
    /// are bound: a missing relay host, password file or CA file, or no
    /// usable nameserver, is a config error here.
    pub fn from_config(
        config: &SmtpConfig,
        store: &Store,
        hostname: &str,
    ) -> Result<Outbound, Invalid> {
        config.check_delivery()?;
        match config.delivery {
            Delivery::Relay => Ok(Outbound::Relay(Arc::new(Relay::new(
                &config.relay,
                hostname,
            )?))),
            Delivery::Direct => {
                let queue = Queue::new(store.clone(), &config.direct, hostname)
                    .map_err(|e| invalid("smtp.direct.nameservers", e.to_string()))?;
                Ok(Outbound::Direct(Arc::new(queue)))
            }
        }
    }

    /// Relays or queues one message. `Ok` is when the client may be told
    /// 250; `Err` is the reply to give instead.
    pub async fn send(&self, from: &str, rcpt: &[String], body: &[u8]) -> Result<(), Reply> {
        match self {
            Outbound::Relay(relay) => relay.send(from, rcpt, body).await.map_err(|e| e.to_reply()),
            Outbound::Direct(queue) => match queue.enqueue(from, rcpt, body).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    tracing::error!("queue: cannot queue a message from <{from}>: {e}");
                    Err(Reply::new(
                        451,
                        (4, 3, 0),
                        "Not queued (local storage failure), try again later",
                    ))
                }
            },
        }
    }

    /// The queue whose worker must run, with `delivery = "direct"`.
    pub fn queue(&self) -> Option<&Arc<Queue>> {
        match self {
            Outbound::Direct(q) => Some(q),
            Outbound::Relay(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::config::SmtpConfig;

    fn parse(text: &str) -> Result<SmtpConfig, String> {
        let c: SmtpConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        c.check_delivery().map_err(|e| e.to_string())?;
        Ok(c)
    }

    const LISTENER: &str = r#"
shared_address = "sales@example.com"

[[listener]]
addr = "127.0.0.1:1587"
tls = "plaintext"
"#;

    #[test]
    fn smtp_relay_defaults_are_filled_in() {
        let c = parse(&format!(
            "{LISTENER}\n[relay]\nhost = \"smtp.example.com\"\n"
        ))
        .unwrap();
        assert_eq!(c.delivery, Delivery::Relay);
        assert_eq!(c.relay.port, 587);
        assert_eq!(c.relay.tls, RelayTls::Starttls);
        assert_eq!(c.relay.timeout_secs, 60);
        assert_eq!(c.direct.max_age_hours, 120);
        assert_eq!(c.direct.retry_schedule_secs, vec![60, 300, 900, 3600]);
        assert_eq!(c.direct.port, 25);
        assert!(!c.direct.require_tls);
        assert!(c.direct.nameservers.is_empty());
    }

    #[test]
    fn smtp_relay_without_host_is_refused_when_listeners_need_it() {
        let err = parse(LISTENER).unwrap_err();
        assert!(err.contains("smtp.relay.host"), "{err}");
        // Direct delivery needs no relay.
        parse(&format!("delivery = \"direct\"\n{LISTENER}")).unwrap();
    }

    #[test]
    fn smtp_relay_clear_text_to_a_remote_host_is_refused() {
        let err = parse(&format!(
            "{LISTENER}\n[relay]\nhost = \"smtp.example.com\"\ntls = \"none\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("smtp.relay.tls"), "{err}");
        parse(&format!(
            "{LISTENER}\n[relay]\nhost = \"127.0.0.1\"\nport = 25\ntls = \"none\"\n"
        ))
        .unwrap();
    }

    #[test]
    fn smtp_relay_login_needs_exactly_one_password_source() {
        let base =
            format!("{LISTENER}\n[relay]\nhost = \"smtp.example.com\"\nusername = \"sales\"\n");
        let err = parse(&base).unwrap_err();
        assert!(err.contains("smtp.relay.password"), "{err}");
        let err = parse(&format!("{base}password = \"a\"\npassword_file = \"/x\"\n")).unwrap_err();
        assert!(err.contains("smtp.relay.password"), "{err}");
        parse(&format!("{base}password = \"a\"\n")).unwrap();
        let err = parse(&format!(
            "{LISTENER}\n[relay]\nhost = \"smtp.example.com\"\npassword = \"a\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("smtp.relay.password"), "{err}");
    }

    #[test]
    fn smtp_direct_settings_are_checked_by_key() {
        let err = parse("[direct]\nretry_schedule_secs = []\n").unwrap_err();
        assert!(err.contains("smtp.direct.retry_schedule_secs"), "{err}");
        let err = parse("[direct]\nmax_age_hours = 0\n").unwrap_err();
        assert!(err.contains("smtp.direct.max_age_hours"), "{err}");
        let err = parse("[direct]\nnameservers = [\"127.0.0.1:0\"]\n").unwrap_err();
        assert!(err.contains("smtp.direct.nameservers[0]"), "{err}");
        let err = parse("[relay]\nhost = \"h\"\nport = 0\n").unwrap_err();
        assert!(err.contains("smtp.relay.port"), "{err}");
        let c = parse(
            "delivery = \"direct\"\n[direct]\nnameservers = [\"127.0.0.1:5353\"]\nport = 2525\nretry_schedule_secs = [1]\n",
        )
        .unwrap();
        assert_eq!(c.direct.nameservers[0].port(), 5353);
    }

    #[test]
    fn smtp_relay_password_file_is_read_at_construction() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        let text = format!(
            "{LISTENER}\n[relay]\nhost = \"127.0.0.1\"\ntls = \"none\"\nusername = \"u\"\npassword_file = \"{}\"\n",
            file.display()
        );
        let c = parse(&text).unwrap();
        let err = Relay::new(&c.relay, "leadgate.test")
            .unwrap_err()
            .to_string();
        assert!(err.contains("smtp.relay.password_file"), "{err}");
        std::fs::write(&file, "secret\n").unwrap();
        let relay = Relay::new(&c.relay, "leadgate.test").unwrap();
        assert!(!format!("{relay:?}").contains("secret"));
    }

    #[test]
    fn smtp_relay_missing_ca_file_is_a_config_error() {
        let c = parse(&format!(
            "{LISTENER}\n[relay]\nhost = \"smtp.example.com\"\nca_file = \"/nonexistent/ca.pem\"\n"
        ))
        .unwrap();
        let err = Relay::new(&c.relay, "leadgate.test")
            .unwrap_err()
            .to_string();
        assert!(err.contains("smtp.relay.ca_file"), "{err}");
    }

    #[tokio::test]
    async fn outbound_follows_the_delivery_setting() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let c = parse(LISTENER).err().unwrap();
        assert!(c.contains("smtp.relay.host"), "{c}");
        let c: SmtpConfig = toml::from_str(LISTENER).unwrap();
        let err = Outbound::from_config(&c, &store, "leadgate.test")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("smtp.relay.host"), "{err}");
        let c = parse(&format!(
            "{LISTENER}\n[relay]\nhost = \"127.0.0.1\"\ntls = \"none\"\n"
        ))
        .unwrap();
        let out = Outbound::from_config(&c, &store, "leadgate.test").unwrap();
        assert!(matches!(out, Outbound::Relay(_)) && out.queue().is_none());
        let c = parse(&format!(
            "delivery = \"direct\"\n{LISTENER}\n[direct]\nnameservers = [\"127.0.0.1:5353\"]\n"
        ))
        .unwrap();
        let out = Outbound::from_config(&c, &store, "leadgate.test").unwrap();
        let queue = out.queue().expect("direct delivery has a queue");
        assert_eq!(queue.config().max_age, Duration::from_secs(120 * 3600));
        // Queued means committed: the entry is there when `send` returns.
        out.send(
            "alice@example.com",
            &["bob@customer.test".to_string()],
            b"Subject: x\r\n\r\nx\r\n",
        )
        .await
        .unwrap();
        assert_eq!(queue.entries().await.unwrap().len(), 1);
    }

    #[test]
    fn dot_stuffing_doubles_leading_dots_and_normalises_line_ends() {
        assert_eq!(dot_stuff(b"A: b\r\n\r\nx\r\n"), b"A: b\r\n\r\nx\r\n.\r\n");
        assert_eq!(dot_stuff(b".a\r\n..b\r\n"), b"..a\r\n...b\r\n.\r\n");
        assert_eq!(
            dot_stuff(b"a\r\n.\r\nMAIL FROM:<x>"),
            b"a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n"
        );
        // Bare LF and bare CR cannot end the data early.
        assert_eq!(dot_stuff(b"a\n.\nb"), b"a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\r.\rb\r\n"), b"a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
    }

    fn response(code: u16, esc: [u8; 3], text: &str) -> Response<String> {
        Response {
            code,
            esc,
            message: text.into(),
        }
    }

    fn relay() -> Relay {
        let c: SmtpConfig =
            toml::from_str("[relay]\nhost = \"127.0.0.1\"\nport = 2525\ntls = \"none\"\n").unwrap();
        Relay::new(&c.relay, "leadgate.test").unwrap()
    }

    #[test]
    fn upstream_5xx_to_the_message_passes_through() {
        let r = relay();
        let e = r.error(
            mail_send::Error::UnexpectedReply(response(554, [5, 7, 1], "Relay access denied")),
            Stage::Transaction,
        );
        assert_eq!(
            e,
            RelayError::Permanent {
                code: 554,
                enhanced: Some((5, 7, 1)),
                text: "Relay access denied".into()
            }
        );
        assert_eq!(
            e.to_reply(),
            Reply::new(554, (5, 7, 1), "Relay access denied")
        );
        // Without an enhanced code the class still follows the code.
        let e = r.error(
            mail_send::Error::UnexpectedReply(response(550, [0, 0, 0], "No")),
            Stage::Transaction,
        );
        assert_eq!(e.to_reply(), Reply::new(550, (5, 0, 0), "No"));
    }

    #[test]
    fn upstream_4xx_timeouts_and_refusals_become_451() {
        let r = relay();
        let cases = [
            (
                mail_send::Error::UnexpectedReply(response(421, [4, 3, 2], "Shutting down")),
                Stage::Transaction,
                (4, 4, 0),
            ),
            (mail_send::Error::Timeout, Stage::Transaction, (4, 4, 2)),
            (mail_send::Error::Timeout, Stage::Connect, (4, 4, 1)),
            (
                mail_send::Error::Io(std::io::ErrorKind::ConnectionRefused.into()),
                Stage::Connect,
                (4, 4, 1),
            ),
            (
                mail_send::Error::UnparseableReply,
                Stage::Transaction,
                (4, 4, 2),
            ),
            // A 5xx before the transaction (greeting, AUTH) is not about the
            // message.
            (
                mail_send::Error::UnexpectedReply(response(554, [5, 0, 0], "No service")),
                Stage::Connect,
                (4, 4, 0),
            ),
        ];
        for (err, stage, status) in cases {
            let e = r.error(err, stage);
            assert!(e.is_temporary(), "{e:?}");
            let reply = e.to_reply();
            assert_eq!((reply.code, reply.status), (451, status), "{e:?}");
            assert!(reply.text.contains("127.0.0.1:2525"), "{}", reply.text);
        }
    }
}
