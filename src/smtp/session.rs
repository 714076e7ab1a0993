//! One submission connection, run by `net::driver` (implicit TLS, the
//! session loop, STARTTLS, flushing). Received bytes go to the smtp-proto
//! receiver for the current phase: `RequestReceiver` for
//! commands, `LineReceiver` for AUTH responses, `DataReceiver` (which
//! undoes dot-stuffing) for DATA, `BdatReceiver` for CHUNKING, and the
//! dummy receivers to skip the rest of an over-long line or of a message
//! that is already refused. Replies queue in `out` and are flushed before
//! every read, so pipelined commands are answered in order.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use base64::{engine::general_purpose::STANDARD, Engine};
use smtp_proto::{
    request::receiver::{
        BdatReceiver, DataReceiver, DummyDataReceiver, DummyLineReceiver, LineReceiver,
        RequestReceiver,
    },
    Error as ParseError, MailFrom, RcptTo, Request, AUTH_LOGIN, AUTH_PLAIN, MAIL_BODY_7BIT,
    MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_SMTPUTF8,
};
use tokio::sync::watch;
use tracing::Instrument;

use super::{clean_line, Envelope, Reply, SmtpCtx, Submission};
use crate::{
    auth::{sanitize_log, AuthFailure, Principal},
    net::config::ListenerTls,
    net::{
        driver::{self, Conn, Flow, Io, Protocol},
        listener::Admission,
    },
};

/// Time allowed for a TLS handshake (implicit TLS or after STARTTLS).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Output is flushed once this much is queued, even mid-pipeline.
const FLUSH_AT: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;
/// Failed AUTH attempts in one session before it is closed.
const MAX_AUTH_FAILURES: u32 = 3;
/// Steps that consume nothing before the session gives up (a receiver bug
/// must not become a busy loop).
const MAX_STALLS: u32 = 3;

/// RFC 4954 challenges for AUTH LOGIN: "Username:" and "Password:".
const LOGIN_USER_PROMPT: &[u8] = b"334 VXNlcm5hbWU6\r\n";
const LOGIN_PASSWORD_PROMPT: &[u8] = b"334 UGFzc3dvcmQ6\r\n";

enum AuthStep {
    Plain,
    LoginUser,
    LoginPassword { user: String },
}

/// Which receiver the next bytes belong to.
enum Input {
    Command,
    /// The rest of a refused line, up to its LF.
    SkipLine(DummyLineReceiver),
    AuthResponse {
        step: AuthStep,
        line: LineReceiver<()>,
    },
    Data(DataReceiver),
    /// Over the size limit: read to the final dot, keep nothing.
    DataDiscard(DummyDataReceiver),
    Bdat {
        rx: BdatReceiver,
        size: usize,
    },
    /// A chunk that is refused once it has been read (RFC 3030 §2: the
    /// chunk is always consumed).
    BdatDiscard {
        rx: DummyDataReceiver,
        is_last: bool,
        reply: Reply,
    },
}

impl Input {
    fn is_message_data(&self) -> bool {
        matches!(
            self,
            Input::Data(_) | Input::DataDiscard(_) | Input::Bdat { .. } | Input::BdatDiscard { .. }
        )
    }
}

struct Txn {
    envelope: Envelope,
    /// BDAT was used: DATA and RCPT are out of sequence now.
    chunking: bool,
    /// A chunk went over the size limit; the rest is discarded.
    too_big: bool,
}

struct Session<S: Io> {
    ctx: Arc<SmtpCtx>,
    conn: Conn<S>,
    peer: SocketAddr,
    mode: ListenerTls,
    shutdown: watch::Receiver<bool>,
    /// The shutdown sender is gone: nobody can ask us to stop any more.
    shutdown_gone: bool,
    span: tracing::Span,
    rbuf: Vec<u8>,
    /// Bytes at the start of `rbuf` read and not yet consumed.
    received: usize,
    out: Vec<u8>,
    input: Input,
    requests: RequestReceiver,
    /// Bytes of an unfinished command line the RequestReceiver holds.
    partial_line: usize,
    /// HELO or EHLO was given (again required after STARTTLS).
    greeted: bool,
    user: Option<Principal>,
    txn: Option<Txn>,
    body: Vec<u8>,
    errors: u32,
    auth_failures: u32,
    /// A 421 is queued; nothing more is read.
    closing: bool,
    /// Registered at login; an admin can end the session through it.
    ticket: Option<crate::net::sessions::SessionTicket>,
}

/// Serves one connection over any byte stream (TCP, or a duplex pipe in
/// tests and fuzzing).
pub async fn run<S: Io>(
    ctx: Arc<SmtpCtx>,
    stream: S,
    peer: SocketAddr,
    mode: ListenerTls,
    admission: Admission,
    shutdown: watch::Receiver<bool>,
) {
    let span = tracing::info_span!("smtp", %peer, user = tracing::field::Empty);
    let mut session = Session {
        conn: Conn::new(stream, peer, ctx.tls.clone(), HANDSHAKE_TIMEOUT),
        ctx,
        peer,
        mode,
        shutdown,
        shutdown_gone: false,
        span: span.clone(),
        rbuf: vec![0; READ_CHUNK],
        received: 0,
        out: Vec::with_capacity(1024),
        input: Input::Command,
        requests: RequestReceiver::default(),
        partial_line: 0,
        greeted: false,
        user: None,
        txn: None,
        body: Vec::new(),
        errors: 0,
        auth_failures: 0,
        closing: false,
        ticket: None,
    };
    async move {
        let implicit = mode == ListenerTls::Implicit;
        if let Err(e) = driver::drive(&mut session, implicit, admission).await {
            tracing::debug!("smtp session ended: {e}");
        }
    }
    .instrument(span)
    .await
}

impl<S: Io> Session<S> {
    /// Waits for input. `None` ends the session: end of stream, a timeout
    /// or shutdown (the 421 for the last two is queued).
    async fn read_more(&mut self) -> io::Result<Option<usize>> {
        let cfg = &self.ctx.config;
        let secs = if self.input.is_message_data() {
            cfg.data_timeout_secs
        } else {
            cfg.command_timeout_secs
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            tokio::select! {
                r = tokio::time::timeout_at(deadline, self.conn.read(&mut self.rbuf)) => {
                    return match r {
                        Err(_) => {
                            tracing::info!("client idle for {secs} s, closing");
                            self.reply(Reply::new(
                                421,
                                (4, 4, 2),
                                "Timeout waiting for input, closing connection",
                            ));
                            Ok(None)
                        }
                        Ok(Ok(0)) => {
                            if self.input.is_message_data() {
                                tracing::info!("connection closed in the middle of a message");
                            }
                            Ok(None)
                        }
                        Ok(Ok(n)) => Ok(Some(n)),
                        Ok(Err(e)) => Err(e),
                    };
                }
                _ = crate::net::sessions::kicked(&mut self.ticket) => {
                    self.reply(Reply::new(421, (4, 7, 0), "Your access was withdrawn by an administrator"));
                    return Ok(None);
                }
                changed = self.shutdown.changed(), if !self.shutdown_gone => {
                    match changed {
                        Ok(()) if *self.shutdown.borrow_and_update() => {
                            self.reply(Reply::new(421, (4, 3, 2), "Service shutting down"));
                            return Ok(None);
                        }
                        Ok(()) => {}
                        Err(_) => self.shutdown_gone = true,
                    }
                }
            }
        }
    }

    /// Feeds received bytes through the current receiver until they are
    /// used up or the session changes course.
    async fn consume(&mut self, mut bytes: &[u8]) -> io::Result<Flow> {
        let mut stalls = 0;
        while !bytes.is_empty() {
            let (used, flow) = self.step(bytes).await?;
            bytes = bytes.get(used..).unwrap_or_default();
            if self.closing {
                return Ok(Flow::Close);
            }
            match flow {
                Flow::Continue => {}
                Flow::StartTls => {
                    if !bytes.is_empty() {
                        tracing::info!(
                            "discarding {} bytes sent in clear after STARTTLS",
                            bytes.len()
                        );
                    }
                    return Ok(Flow::StartTls);
                }
                Flow::Close => return Ok(Flow::Close),
            }
            if used == 0 {
                stalls += 1;
                if stalls >= MAX_STALLS {
                    tracing::error!("smtp input made no progress; closing");
                    self.reply(Reply::new(
                        421,
                        (4, 3, 0),
                        "Internal error, closing connection",
                    ));
                    return Ok(Flow::Close);
                }
            } else {
                stalls = 0;
            }
            if self.out.len() >= FLUSH_AT {
                self.flush().await?;
            }
        }
        Ok(Flow::Continue)
    }

    /// One receiver call. Returns how many bytes it used.
    async fn step(&mut self, bytes: &[u8]) -> io::Result<(usize, Flow)> {
        let mut it = bytes.iter();
        match &mut self.input {
            Input::Command => return self.command_bytes(bytes).await,
            Input::SkipLine(rx) => {
                if rx.ingest(&mut it) {
                    self.input = Input::Command;
                }
            }
            Input::AuthResponse { line, .. } => {
                if line.ingest(&mut it) {
                    if let Input::AuthResponse { step, line } =
                        std::mem::replace(&mut self.input, Input::Command)
                    {
                        self.auth_response(step, &line.buf).await;
                    }
                }
            }
            Input::Data(rx) => {
                if rx.ingest(&mut it, &mut self.body) {
                    self.input = Input::Command;
                    self.message_complete().await;
                } else if self.body.len() > self.ctx.config.max_message_bytes {
                    let rest = DummyDataReceiver::new_data(rx);
                    self.input = Input::DataDiscard(rest);
                    self.message_too_big();
                }
            }
            Input::DataDiscard(rx) => {
                if rx.ingest(&mut it) {
                    self.input = Input::Command;
                    self.message_complete().await;
                }
            }
            Input::Bdat { rx, size } => {
                if rx.ingest(&mut it, &mut self.body) {
                    let (size, is_last) = (*size, rx.is_last);
                    self.input = Input::Command;
                    self.chunk_complete(size, is_last).await;
                }
            }
            Input::BdatDiscard { rx, .. } => {
                if rx.ingest(&mut it) {
                    if let Input::BdatDiscard { is_last, reply, .. } =
                        std::mem::replace(&mut self.input, Input::Command)
                    {
                        self.chunk_refused(reply, is_last);
                    }
                }
            }
        }
        Ok((bytes.len() - it.len(), Flow::Continue))
    }

    /// Command bytes go to smtp-proto's RequestReceiver, which buffers a
    /// line that arrives in pieces. The line limit is checked here, on the
    /// received bytes, because the receiver only caps lines that arrive
    /// split (and at a fixed 4096).
    async fn command_bytes(&mut self, bytes: &[u8]) -> io::Result<(usize, Flow)> {
        let max_line = self.ctx.config.max_line_bytes;
        let held = self.partial_line;
        let mut it = bytes.iter();
        let parsed = self.requests.ingest(&mut it).map(Request::into_owned);
        let used = bytes.len() - it.len();
        match parsed {
            Err(ParseError::NeedsMoreData { .. }) => {
                // The receiver keeps everything it was given.
                self.partial_line = held + bytes.len();
                if self.partial_line > max_line {
                    self.line_too_long();
                }
                return Ok((bytes.len(), Flow::Continue));
            }
            Err(ParseError::ResponseTooLong) => {
                self.line_too_long();
                return Ok((used, Flow::Continue));
            }
            _ => {}
        }
        self.partial_line = 0;
        // A line assembled from earlier pieces always ends at its LF; one
        // parsed in place may have been refused before its end.
        let line_ended = held > 0 || bytes[..used].last() == Some(&b'\n');
        if !line_ended {
            self.input = Input::SkipLine(DummyLineReceiver::default());
        }
        if held + used > max_line {
            self.error(Reply::new(500, (5, 5, 2), "Line too long"));
            return Ok((used, Flow::Continue));
        }
        let flow = match parsed {
            Ok(_) if !line_ended => {
                self.error(Reply::new(501, (5, 5, 2), "Syntax error"));
                Flow::Continue
            }
            Ok(request) => self.on_request(request).await?,
            Err(e) => {
                self.parse_error(e);
                Flow::Continue
            }
        };
        Ok((used, flow))
    }

    fn line_too_long(&mut self) {
        self.requests = RequestReceiver::default();
        self.partial_line = 0;
        self.input = Input::SkipLine(DummyLineReceiver::default());
        self.error(Reply::new(500, (5, 5, 2), "Line too long"));
    }

    fn parse_error(&mut self, e: ParseError) {
        let reply = match e {
            ParseError::UnknownCommand => Reply::new(500, (5, 5, 1), "Command unrecognized"),
            ParseError::InvalidRecipientAddress => {
                Reply::new(501, (5, 1, 3), "Bad recipient address syntax")
            }
            ParseError::InvalidSenderAddress => {
                Reply::new(501, (5, 1, 7), "Bad sender address syntax")
            }
            ParseError::SyntaxError { syntax } => {
                Reply::new(501, (5, 5, 2), format!("Syntax: {syntax}"))
            }
            ParseError::InvalidParameter { param } => {
                Reply::new(501, (5, 5, 4), format!("Invalid {param} parameter"))
            }
            ParseError::UnsupportedParameter { param } => Reply::new(
                555,
                (5, 5, 4),
                format!("Parameter {param} is not supported"),
            ),
            ParseError::ResponseTooLong => Reply::new(500, (5, 5, 2), "Line too long"),
            ParseError::NeedsMoreData { .. } | ParseError::InvalidResponse { .. } => {
                Reply::new(500, (5, 5, 1), "Command unrecognized")
            }
        };
        self.error(reply);
    }

    async fn on_request(&mut self, request: Request<String>) -> io::Result<Flow> {
        match request {
            Request::Ehlo { host } => self.hello(&host, true),
            Request::Helo { host } => self.hello(&host, false),
            Request::StartTls => return Ok(self.starttls()),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, &initial_response).await,
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => self.rcpt(to).await,
            Request::Data => self.data(),
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size, is_last).await,
            Request::Rset => {
                self.reset_txn();
                self.reply(Reply::ok("Reset OK"));
            }
            Request::Noop { .. } => self.reply(Reply::ok("OK")),
            Request::Quit => {
                self.reply(Reply::new(221, (2, 0, 0), "Bye"));
                return Ok(Flow::Close);
            }
            Request::Vrfy { .. } => self.reply(Reply::new(
                252,
                (2, 5, 2),
                "Cannot VRFY user; send the message and it will be tried",
            )),
            Request::Help { .. } => self.reply(Reply::new(
                214,
                (2, 0, 0),
                "leadgate submission: EHLO HELO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP",
            )),
            Request::Lhlo { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => {
                self.error(Reply::new(502, (5, 5, 1), "Command not implemented"))
            }
        }
        Ok(Flow::Continue)
    }

    /// Extensions offered right now: only what this session implements,
    /// and AUTH only where a password may be sent.
    fn capabilities(&self) -> Vec<String> {
        let mut caps = vec![
            "PIPELINING".to_owned(),
            format!("SIZE {}", self.ctx.config.max_message_bytes),
            "8BITMIME".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
            "CHUNKING".to_owned(),
        ];
        if self.starttls_offered() {
            caps.push("STARTTLS".to_owned());
        }
        if self.user.is_none() && self.login_allowed() {
            caps.push("AUTH PLAIN LOGIN".to_owned());
        }
        caps
    }

    fn starttls_offered(&self) -> bool {
        self.mode == ListenerTls::Starttls && !self.conn.is_tls() && self.ctx.tls.is_some()
    }

    /// Passwords only travel over TLS, or on a loopback plaintext listener.
    fn login_allowed(&self) -> bool {
        self.conn.is_tls() || self.mode == ListenerTls::Plaintext
    }

    fn hello(&mut self, client: &str, extended: bool) {
        self.reset_txn();
        self.greeted = true;
        let first = format!("{} Hello {}", self.ctx.hostname, client);
        let mut lines = vec![first];
        if extended {
            lines.extend(self.capabilities());
        }
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            self.out
                .extend_from_slice(format!("250{sep}{}\r\n", clean_line(line)).as_bytes());
        }
    }

    fn starttls(&mut self) -> Flow {
        if self.conn.is_tls() {
            self.error(Reply::new(503, (5, 5, 1), "TLS is already active"));
            Flow::Continue
        } else if !self.starttls_offered() {
            self.error(Reply::new(
                502,
                (5, 5, 1),
                "STARTTLS is not offered on this port",
            ));
            Flow::Continue
        } else {
            self.reply(Reply::new(220, (2, 0, 0), "Ready to start TLS"));
            Flow::StartTls
        }
    }

    /// RFC 3207 §4.2: after the handshake the session starts over; nothing
    /// learned in clear carries across.
    fn reset_after_tls(&mut self) {
        self.input = Input::Command;
        self.requests = RequestReceiver::default();
        self.partial_line = 0;
        self.greeted = false;
        self.user = None;
        self.reset_txn();
    }

    async fn auth(&mut self, mechanism: u64, initial: &str) {
        if self.user.is_some() {
            return self.error(Reply::new(503, (5, 5, 1), "Already authenticated"));
        }
        if !self.greeted {
            return self.error(Reply::new(503, (5, 5, 1), "Send EHLO first"));
        }
        if self.txn.is_some() {
            return self.error(Reply::new(
                503,
                (5, 5, 1),
                "AUTH is not allowed during a mail transaction",
            ));
        }
        if !self.login_allowed() {
            tracing::warn!(
                target: "leadgate::auth",
                "auth failed: user=- ip={} proto=smtp reason=cleartext-login-refused",
                self.peer.ip()
            );
            return self.error(Reply::new(
                530,
                (5, 7, 0),
                "Must issue a STARTTLS command first",
            ));
        }
        match mechanism {
            AUTH_PLAIN if initial.is_empty() => {
                self.out.extend_from_slice(b"334 \r\n");
                self.input = Input::AuthResponse {
                    step: AuthStep::Plain,
                    line: LineReceiver::new(()),
                };
            }
            AUTH_PLAIN => match decode_sasl(initial) {
                Some(data) => self.plain_credentials(&data).await,
                None => self.error(Reply::new(501, (5, 5, 2), "Invalid base64 data")),
            },
            AUTH_LOGIN if initial.is_empty() => {
                self.out.extend_from_slice(LOGIN_USER_PROMPT);
                self.input = Input::AuthResponse {
                    step: AuthStep::LoginUser,
                    line: LineReceiver::new(()),
                };
            }
            AUTH_LOGIN => match decode_sasl(initial) {
                Some(user) => self.ask_password(user),
                None => self.error(Reply::new(501, (5, 5, 2), "Invalid base64 data")),
            },
            _ => self.error(Reply::new(
                504,
                (5, 5, 4),
                "Unrecognized authentication type; use PLAIN or LOGIN",
            )),
        }
    }

    fn ask_password(&mut self, user: Vec<u8>) {
        self.out.extend_from_slice(LOGIN_PASSWORD_PROMPT);
        self.input = Input::AuthResponse {
            step: AuthStep::LoginPassword {
                user: String::from_utf8_lossy(&user).into_owned(),
            },
            line: LineReceiver::new(()),
        };
    }

    async fn auth_response(&mut self, step: AuthStep, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text == "*" {
            return self.error(Reply::new(501, (5, 0, 0), "Authentication cancelled"));
        }
        let Some(data) = decode_sasl(text) else {
            return self.error(Reply::new(501, (5, 5, 2), "Invalid base64 data"));
        };
        match step {
            AuthStep::Plain => self.plain_credentials(&data).await,
            AuthStep::LoginUser => self.ask_password(data),
            AuthStep::LoginPassword { user } => {
                let password = String::from_utf8_lossy(&data).into_owned();
                self.login(&user, &password).await;
            }
        }
    }

    /// SASL PLAIN: authzid NUL authcid NUL password. An authzid other than
    /// the user themself is refused (no proxy logins).
    async fn plain_credentials(&mut self, data: &[u8]) {
        let mut parts = data.split(|&b| b == 0);
        let (Some(authz), Some(user), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self.error(Reply::new(501, (5, 5, 2), "Malformed PLAIN credentials"));
        };
        if !authz.is_empty() && authz != user {
            self.auth_failures += 1;
            self.error(Reply::new(
                535,
                (5, 7, 8),
                "Logging in as another user is not allowed",
            ));
            return self.check_auth_failures();
        }
        let user = String::from_utf8_lossy(user).into_owned();
        let pass = String::from_utf8_lossy(pass).into_owned();
        self.login(&user, &pass).await;
    }

    async fn login(&mut self, user: &str, password: &str) {
        match self
            .ctx
            .auth
            .login(user, password, self.peer.ip(), "smtp")
            .await
        {
            Ok(principal) => {
                self.span.record("user", principal.name.as_str());
                if let Some(registry) = &self.ctx.sessions {
                    self.ticket = Some(registry.register(&principal.name));
                }
                self.user = Some(principal);
                self.reply(Reply::new(235, (2, 7, 0), "Authentication successful"));
            }
            Err(failure) => {
                let reply = match failure {
                    AuthFailure::BadCredentials => {
                        Reply::new(535, (5, 7, 8), "Authentication credentials invalid")
                    }
                    AuthFailure::Disabled => Reply::new(535, (5, 7, 8), failure.client_text()),
                    AuthFailure::LockedOut | AuthFailure::Internal => {
                        Reply::new(454, (4, 7, 0), failure.client_text())
                    }
                };
                self.auth_failures += 1;
                self.error(reply);
                self.check_auth_failures();
            }
        }
    }

    fn check_auth_failures(&mut self) {
        if self.auth_failures >= MAX_AUTH_FAILURES && !self.closing {
            self.reply(Reply::new(
                421,
                (4, 7, 0),
                "Too many failed authentication attempts, closing connection",
            ));
            self.closing = true;
        }
    }

    /// The checks every transaction command shares. Some(user) if it may go on.
    fn require_user(&mut self) -> Option<Principal> {
        if !self.greeted {
            self.error(Reply::new(503, (5, 5, 1), "Send EHLO first"));
            return None;
        }
        match &self.user {
            Some(user) => Some(user.clone()),
            None => {
                self.error(Reply::new(530, (5, 7, 0), "Authentication required"));
                None
            }
        }
    }

    fn mail(&mut self, from: MailFrom<String>) {
        let Some(user) = self.require_user() else {
            return;
        };
        if self.txn.is_some() {
            return self.error(Reply::new(
                503,
                (5, 5, 1),
                "Sender already given; send RSET first",
            ));
        }
        if let Some(param) = unsupported_mail_parameter(&from) {
            return self.error(Reply::new(
                555,
                (5, 5, 4),
                format!("{param} is not supported"),
            ));
        }
        let max = self.ctx.config.max_message_bytes;
        if from.size > max {
            return self.error(Reply::new(
                552,
                (5, 3, 4),
                format!("Message size exceeds fixed maximum message size (limit {max} bytes)"),
            ));
        }
        let addr = from.address;
        let shared = self.ctx.config.shared_address.as_str();
        let own = user.email.as_deref().filter(|e| !e.is_empty());
        let allowed = own.is_some_and(|o| o.eq_ignore_ascii_case(&addr))
            || (!shared.is_empty() && shared.eq_ignore_ascii_case(&addr));
        if !allowed {
            tracing::info!("sender refused: from={}", sanitize_log(&addr));
            let choices: Vec<String> = own
                .into_iter()
                .chain((!shared.is_empty()).then_some(shared))
                .map(|a| format!("<{a}>"))
                .collect();
            let hint = match choices.as_slice() {
                [] => "ask your leadgate admin to set your address".to_owned(),
                _ => format!("use {}", choices.join(" or ")),
            };
            return self.error(Reply::new(
                553,
                (5, 7, 1),
                format!("Sender address <{addr}> is not yours; {hint}"),
            ));
        }
        let reply = Reply::new(250, (2, 1, 0), format!("Sender <{addr}> OK"));
        self.txn = Some(Txn {
            envelope: Envelope {
                mail_from: addr,
                rcpt_to: Vec::new(),
                size_hint: (from.size > 0).then_some(from.size),
                body_8bit: from.flags & MAIL_BODY_8BITMIME != 0,
            },
            chunking: false,
            too_big: false,
        });
        self.body = Vec::new();
        self.reply(reply);
    }

    async fn rcpt(&mut self, to: RcptTo<String>) {
        let Some(user) = self.require_user() else {
            return;
        };
        let max = self.ctx.config.max_recipients;
        let Some(txn) = &self.txn else {
            return self.error(Reply::new(503, (5, 5, 1), "Need MAIL command first"));
        };
        if txn.chunking {
            return self.error(Reply::new(503, (5, 5, 1), "RCPT is not allowed after BDAT"));
        }
        if to.orcpt.is_some() || to.flags != 0 || to.rrvs != 0 {
            return self.error(Reply::new(
                555,
                (5, 5, 4),
                "RCPT parameters are not supported",
            ));
        }
        let addr = to.address;
        // smtp-proto gives "" for <> and for a bare <postmaster>.
        if addr.is_empty() {
            return self.error(Reply::new(501, (5, 1, 3), "Bad recipient address syntax"));
        }
        let ok = Reply::new(250, (2, 1, 5), format!("Recipient <{addr}> OK"));
        let rcpts = &txn.envelope.rcpt_to;
        if rcpts.iter().any(|r| r.eq_ignore_ascii_case(&addr)) {
            return self.reply(ok);
        }
        if rcpts.len() >= max {
            // A limit, not a client mistake: not counted as an error.
            return self.reply(Reply::new(452, (4, 5, 3), "Too many recipients"));
        }
        let handler = self.ctx.handler.clone();
        match handler.check_recipient(&user, &addr).await {
            Ok(()) => {
                if let Some(txn) = &mut self.txn {
                    txn.envelope.rcpt_to.push(addr);
                }
                self.reply(ok);
            }
            Err(reply) => {
                tracing::info!(
                    "recipient refused: to={} code={}",
                    sanitize_log(&addr),
                    reply.code
                );
                self.reply(reply);
            }
        }
    }

    /// Some(reply) if the transaction cannot take message data now.
    fn message_refusal(&self) -> Option<Reply> {
        if !self.greeted {
            return Some(Reply::new(503, (5, 5, 1), "Send EHLO first"));
        }
        if self.user.is_none() {
            return Some(Reply::new(530, (5, 7, 0), "Authentication required"));
        }
        match &self.txn {
            None => Some(Reply::new(503, (5, 5, 1), "Need MAIL command first")),
            Some(t) if t.envelope.rcpt_to.is_empty() => {
                Some(Reply::new(503, (5, 5, 1), "Need RCPT command first"))
            }
            Some(_) => None,
        }
    }

    fn data(&mut self) {
        if let Some(reply) = self.message_refusal() {
            return self.error(reply);
        }
        if self.txn.as_ref().is_some_and(|t| t.chunking) {
            return self.error(Reply::new(503, (5, 5, 1), "DATA is not allowed after BDAT"));
        }
        self.body = Vec::new();
        self.out
            .extend_from_slice(b"354 Start mail input; end with <CRLF>.<CRLF>\r\n");
        self.input = Input::Data(DataReceiver::new());
    }

    async fn bdat(&mut self, size: usize, is_last: bool) {
        if let Some(reply) = self.message_refusal() {
            return self.discard_chunk(size, is_last, reply);
        }
        let max = self.ctx.config.max_message_bytes;
        let fits = self.body.len().saturating_add(size) <= max;
        let Some(txn) = &mut self.txn else {
            return;
        };
        txn.chunking = true;
        if txn.too_big || !fits {
            if !txn.too_big {
                txn.too_big = true;
                self.message_too_big();
            }
            let reply = too_big_reply(max);
            return self.discard_chunk(size, is_last, reply);
        }
        if size == 0 {
            return self.chunk_complete(0, is_last).await;
        }
        self.input = Input::Bdat {
            rx: BdatReceiver::new(size, is_last),
            size,
        };
    }

    fn discard_chunk(&mut self, size: usize, is_last: bool, reply: Reply) {
        if size == 0 {
            self.chunk_refused(reply, is_last);
        } else {
            self.input = Input::BdatDiscard {
                rx: DummyDataReceiver::new_bdat(size),
                is_last,
                reply,
            };
        }
    }

    fn chunk_refused(&mut self, reply: Reply, is_last: bool) {
        if is_last && self.txn.as_ref().is_some_and(|t| t.too_big) {
            self.reset_txn();
        }
        self.error(reply);
    }

    async fn chunk_complete(&mut self, size: usize, is_last: bool) {
        if is_last {
            self.message_complete().await;
        } else {
            self.reply(Reply::ok(format!("{size} bytes received")));
        }
    }

    /// Stops buffering: the rest of the message is read and dropped.
    fn message_too_big(&mut self) {
        tracing::info!(
            "message over the size limit of {} bytes; discarding the rest",
            self.ctx.config.max_message_bytes
        );
        if let Some(txn) = &mut self.txn {
            txn.too_big = true;
        }
        self.body = Vec::new();
    }

    /// The end of DATA or the last BDAT chunk: hand the message over.
    async fn message_complete(&mut self) {
        let txn = self.txn.take();
        let body = std::mem::take(&mut self.body);
        let max = self.ctx.config.max_message_bytes;
        let (Some(txn), Some(user)) = (txn, self.user.clone()) else {
            return self.error(Reply::new(503, (5, 5, 1), "No mail transaction"));
        };
        if txn.too_big || body.len() > max {
            return self.error(too_big_reply(max));
        }
        let from = sanitize_log(&txn.envelope.mail_from);
        let rcpts = txn.envelope.rcpt_to.len();
        let size = body.len();
        let submission = Submission {
            user,
            peer: self.peer,
            envelope: txn.envelope,
            data: body,
        };
        let handler = self.ctx.handler.clone();
        let reply = handler.submit(submission).await;
        tracing::info!(
            "message submitted: from={from} rcpts={rcpts} size={size} reply={}",
            reply.code
        );
        self.reply(reply);
    }

    fn reset_txn(&mut self) {
        self.txn = None;
        self.body = Vec::new();
    }

    fn reply(&mut self, reply: Reply) {
        reply.write_to(&mut self.out);
    }

    /// A refused command: counts toward `max_errors`.
    fn error(&mut self, reply: Reply) {
        self.reply(reply);
        self.errors += 1;
        if self.errors >= self.ctx.config.max_errors && !self.closing {
            tracing::info!("{} errors, closing", self.errors);
            self.reply(Reply::new(
                421,
                (4, 7, 0),
                "Too many errors, closing connection",
            ));
            self.closing = true;
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.conn.flush(&mut self.out).await
    }
}

impl<S: Io> Protocol for Session<S> {
    type Stream = S;

    fn io(&mut self) -> (&mut Conn<S>, &mut Vec<u8>) {
        (&mut self.conn, &mut self.out)
    }

    fn greet(&mut self, admission: Admission) -> Flow {
        if admission == Admission::TooManyFromIp {
            tracing::info!("refused: too many connections from this address");
            self.reply(Reply::new(
                421,
                (4, 7, 0),
                "Too many connections from your address, try again later",
            ));
            return Flow::Close;
        }
        if *self.shutdown.borrow() {
            self.reply(Reply::new(421, (4, 3, 2), "Service shutting down"));
            return Flow::Close;
        }
        let greeting = format!("220 {} ESMTP leadgate\r\n", clean_line(&self.ctx.hostname));
        self.out.extend_from_slice(greeting.as_bytes());
        Flow::Continue
    }

    async fn advance(&mut self) -> io::Result<Flow> {
        let n = std::mem::take(&mut self.received);
        if n == 0 {
            return Ok(Flow::Continue);
        }
        let buf = std::mem::take(&mut self.rbuf);
        let flow = self.consume(&buf[..n]).await;
        self.rbuf = buf;
        flow
    }

    async fn wait(&mut self) -> io::Result<Flow> {
        Ok(match self.read_more().await? {
            Some(n) => {
                self.received = n;
                Flow::Continue
            }
            None => Flow::Close,
        })
    }

    fn tls_started(&mut self) {
        self.reset_after_tls();
    }
}

fn too_big_reply(max: usize) -> Reply {
    Reply::new(
        552,
        (5, 3, 4),
        format!("Message too big (limit {max} bytes)"),
    )
}

/// A SASL response: base64, where a lone "=" is the empty response.
fn decode_sasl(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text == "=" {
        return Some(Vec::new());
    }
    STANDARD.decode(text).ok()
}

/// MAIL parameters of extensions that are not advertised.
fn unsupported_mail_parameter(from: &MailFrom<String>) -> Option<&'static str> {
    let known_body = MAIL_BODY_7BIT | MAIL_BODY_8BITMIME;
    if from.flags & MAIL_SMTPUTF8 != 0 {
        Some("SMTPUTF8")
    } else if from.flags & MAIL_BODY_BINARYMIME != 0 {
        Some("BODY=BINARYMIME")
    } else if from.flags & !known_body != 0
        || from.env_id.is_some()
        || from.trans_id.is_some()
        || from.solicit.is_some()
        || from.mtrk.is_some()
        || from.by != 0
        || from.hold_for != 0
        || from.hold_until != 0
        || from.mt_priority != 0
    {
        Some("A MAIL parameter of an extension not offered here")
    } else {
        None
    }
}
