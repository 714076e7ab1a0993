//! One client connection, run by `net::driver` (implicit TLS, the session
//! loop, STARTTLS, flushing). Received bytes go into imap-codec's
//! Fragmentizer (line and literal framing with size caps); the session
//! answers literal announcements, decodes each complete message and
//! dispatches it. Between commands, and continuously while IDLE, changes to
//! the selected folder arrive from the index's event log and go out as
//! EXISTS / EXPUNGE / FETCH.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use imap_codec::{
    fragmentizer::{FragmentInfo, Fragmentizer},
    imap_types::{
        auth::{AuthMechanism, AuthenticateData},
        command::{Command, CommandBody, StoreModifier},
        core::LiteralMode,
        IntoStatic,
    },
    AuthenticateDataCodec, CommandCodec, IdleDoneCodec,
};
use tokio::sync::watch;

use super::{
    folders::Folder,
    folders::FolderMap,
    modseq::{expunged_line, fetch_flags_line},
    Ctx,
};
use crate::{
    auth::Principal,
    config::ListenerTls,
    index::{Change, Lagged},
    net::{
        driver::{self, Conn, Flow, Protocol},
        listener::Admission,
    },
    upstream::conn::UpstreamError,
};

pub use crate::net::driver::Io;

/// Whether a command being received is an APPEND (`tag APPEND ...`).
fn is_append(message: &[u8]) -> bool {
    let mut words = message.splitn(3, |&b| b == b' ');
    words.next();
    words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case(b"APPEND"))
}

/// Largest command accepted before login, its literals included: a login
/// needs a few hundred bytes, and the largest ID a client may send (RFC
/// 2971: 30 fields of 30 octets with values of 1024) about 31.8 KiB, so a
/// stranger cannot make a session hold more.
const MAX_COMMAND_UNAUTHENTICATED: usize = 32 * 1024;
/// Before login, a connection is closed after this many failed logins or
/// this many commands answered BAD.
const MAX_FAILED_LOGINS_PER_CONNECTION: u32 = 3;
const MAX_BAD_UNAUTHENTICATED: u32 = 10;
/// Output is flushed once this much is buffered.
const FLUSH_AT: usize = 256 * 1024;
/// The read buffer of a quiet session, and of one sending in bulk (an
/// APPEND): it grows when a read fills it and shrinks on a short read.
const READ_SMALL: usize = 2 * 1024;
const READ_LARGE: usize = 64 * 1024;

pub(crate) struct Selected {
    pub folder: Folder,
    /// Event scope: the mailbox generation, or the view id.
    pub scope: u32,
    pub uidvalidity: u32,
    /// EXAMINE (or an action folder): nothing may change, not even `\Seen`.
    pub read_only: bool,
    /// A shared folder read-only for this user (a rep's INBOX): only their
    /// own `\Seen` may change.
    pub seen_only: bool,
    /// UIDs by sequence number (index 0 is message 1); shared with other
    /// sessions at the same point of the same folder (`uidlists`), so
    /// changed through `Arc::make_mut` and interned again afterwards.
    pub uids: Arc<Vec<u32>>,
    /// Newest index event this session has applied.
    pub last_seq: u64,
    /// Flags last sent per UID (as a digest: a FETCH 1:* FLAGS of a big
    /// folder records every message), so a change the client already saw
    /// (its own STORE, a fetch after the change) is not announced twice.
    pub reported: std::collections::HashMap<u32, u64>,
    /// Keeps a private folder on the freshness check's list while selected.
    pub _hold: Option<crate::index::SelectedHold>,
    /// UIDs of a lead folder marked \Deleted by this session: a flag of the
    /// session only (not in PERMANENTFLAGS), so a client that moves by COPY,
    /// STORE \Deleted, EXPUNGE (classic Outlook, mutt) sees no error and
    /// nothing in the shared mailbox is deleted; EXPUNGE leaves them (the
    /// message leaves the folder when its lead does).
    pub deleted_here: std::collections::HashSet<u32>,
    /// Lead cards this session marked unread. A card is read (`\Seen`) by
    /// default and never counts as unread mail; its flags are the
    /// session's own (a new version of the card starts read again).
    pub card_unseen: std::collections::HashSet<u32>,
    /// Keywords the client was told of in FLAGS (besides the lead
    /// keywords every shared folder lists): a new one is announced before
    /// the first FETCH that carries it (RFC 3501 7.2.6).
    pub keywords: std::collections::BTreeSet<Box<str>>,
    /// UIDs that are `\Recent` for this session, ascending.
    pub recent: Vec<u32>,
    /// UIDNEXT at SELECT: UIDs below it that are not in `uids` are gone
    /// (VANISHED (EARLIER)).
    pub uidnext: u32,
}

/// The flags every folder lists.
pub(crate) const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

/// The untagged FLAGS line's list: the system flags, the folder's keywords
/// and, in a shared folder, the keywords leadgate computes.
pub(crate) fn flags_list(keywords: &std::collections::BTreeSet<Box<str>>, shared: bool) -> String {
    let mut kw: String = SYSTEM_FLAGS.to_owned();
    for k in keywords {
        kw.push(' ');
        kw.push_str(k);
    }
    if shared {
        for (k, _, _) in crate::imap::views::defs::LEAD_TAGS {
            kw.push(' ');
            kw.push_str(k);
        }
    }
    kw
}

impl Selected {
    /// New messages (UIDs above `before`) this session is the first to see
    /// become `\Recent` for it (EXAMINE only looks); the RECENT line that
    /// goes with the EXISTS.
    pub(crate) fn take_recent(&mut self, index: &crate::index::Index, before: u32) -> String {
        if self.folder.upstream().is_some() {
            let upto = self.uids.last().map_or(1, |u| u + 1);
            let from = if self.read_only {
                index.recent_floor(self.scope)
            } else {
                index.claim_recent(self.scope, upto)
            };
            let floor = from.max(before.saturating_add(1));
            let new = self.uids.iter().copied().filter(|u| *u >= floor);
            self.recent.extend(new);
        }
        let uids = &self.uids;
        self.recent.retain(|u| uids.binary_search(u).is_ok());
        format!("* {} RECENT\r\n", self.recent.len())
    }

    /// Records the keywords of a flag list about to be sent; when one is new
    /// to the client, the FLAGS line that must go out first.
    pub(crate) fn announce(&mut self, flags: &str) -> Option<String> {
        let shared = self.folder.is_shared();
        let mut new = false;
        for f in flags.split_ascii_whitespace() {
            if f.starts_with('\\')
                || (shared
                    && crate::imap::views::defs::LEAD_TAGS
                        .iter()
                        .any(|(k, _, _)| *k == f))
                || self.keywords.contains(f)
            {
                continue;
            }
            self.keywords.insert(f.into());
            new = true;
        }
        new.then(|| format!("* FLAGS ({})\r\n", flags_list(&self.keywords, shared)))
    }
}

/// The digest of a flag list, for `Selected::reported`.
pub(crate) fn flags_digest(flags: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    flags.hash(&mut h);
    h.finish()
}

pub(crate) struct Authed {
    pub user: Principal,
    /// The user's own `\Seen` of shared messages (one set per user,
    /// shared by their sessions).
    pub seen: Arc<crate::index::seen::UserSeen>,
    pub folders: Option<FolderMap>,
    pub selected: Option<Selected>,
    /// CONDSTORE / QRESYNC enabled on this connection (RFC 7162): FETCH
    /// answers with flags carry MODSEQ; with QRESYNC, expunges go out as
    /// VANISHED.
    pub condstore: bool,
    pub qresync: bool,
}

pub(crate) enum State {
    NotAuthenticated,
    Authenticated(Box<Authed>),
}

/// What the next complete message is expected to be.
enum Pending {
    Command,
    Idle { tag: String },
    AuthPlain { tag: String },
}

pub struct Session<S: Io> {
    pub(crate) ctx: Arc<Ctx>,
    conn: Conn<S>,
    frag: Fragmentizer,
    pub(crate) out: Vec<u8>,
    pub(crate) peer: SocketAddr,
    mode: ListenerTls,
    pub(crate) state: State,
    pending: Pending,
    updates: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    /// Where the line being received starts in the message buffer.
    line_start: usize,
    in_literal: bool,
    /// Read buffer: small while the client is quiet (thousands of idle
    /// sessions), grown while it sends in bulk (see `READ_*`).
    rbuf: Vec<u8>,
    /// Registered at login; an admin can end the session through it.
    pub(crate) ticket: Option<crate::net::sessions::SessionTicket>,
    /// Login must succeed within `limits.auth_timeout_secs` of this, however
    /// the client trickles its bytes.
    connected_at: tokio::time::Instant,
    /// Failed logins and BAD answers on this connection before login.
    pub(crate) failed_logins: u32,
    bad_unauthenticated: u32,
}

use crate::net::sessions::kicked;

/// Entry point for a TCP connection.
pub async fn run<S: Io>(
    ctx: Arc<Ctx>,
    stream: S,
    peer: SocketAddr,
    mode: ListenerTls,
    admission: Admission,
    shutdown: watch::Receiver<bool>,
) {
    let mut session = Session::new(ctx, stream, peer, mode, shutdown);
    let implicit = mode == ListenerTls::Implicit;
    if let Err(e) = driver::drive(&mut session, implicit, admission).await {
        tracing::debug!(peer = %peer, "imap session ended: {e}");
    }
}

impl<S: Io> Session<S> {
    pub fn new(
        ctx: Arc<Ctx>,
        stream: S,
        peer: SocketAddr,
        mode: ListenerTls,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let updates = ctx.index.subscribe();
        // The handshake gets as long as a login.
        let handshake = Duration::from_secs(ctx.config.limits.auth_timeout_secs);
        let conn = Conn::new(stream, peer, ctx.tls.clone(), handshake);
        let mut session = Session {
            ctx,
            conn,
            frag: Fragmentizer::without_max_message_size(),
            out: Vec::with_capacity(4096),
            peer,
            mode,
            state: State::NotAuthenticated,
            pending: Pending::Command,
            updates,
            shutdown,
            line_start: 0,
            in_literal: false,
            rbuf: vec![0u8; READ_SMALL],
            ticket: None,
            connected_at: tokio::time::Instant::now(),
            failed_logins: 0,
            bad_unauthenticated: 0,
        };
        session.frag = session.new_fragmentizer();
        session
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.conn.is_tls()
    }

    /// Whether LOGIN/AUTHENTICATE are allowed on this connection now.
    pub(crate) fn login_allowed(&self) -> bool {
        self.is_tls() || self.mode == ListenerTls::Plaintext
    }

    pub(crate) fn user_name(&self) -> &str {
        match &self.state {
            State::Authenticated(a) => &a.user.name,
            State::NotAuthenticated => "-",
        }
    }

    /// The greeting, with the capabilities of this connection.
    fn greeting(&mut self) {
        let host = self.ctx.config.server.hostname.clone();
        let caps = self.capabilities().join(" ");
        self.out.extend_from_slice(
            format!("* OK [CAPABILITY {caps}] {host} leadgate ready\r\n").as_bytes(),
        );
    }

    /// Handles every fragment received so far; `Continue` when more input
    /// is needed.
    async fn on_input(&mut self) -> std::io::Result<Flow> {
        loop {
            match self.frag.progress() {
                Some(fragment) => match self.on_fragment(fragment).await? {
                    Flow::Continue => {}
                    flow => return Ok(flow),
                },
                None => {
                    // Guard the line being received, before it is complete.
                    if !self.in_literal {
                        let received = self
                            .frag
                            .message_bytes()
                            .len()
                            .saturating_sub(self.line_start);
                        if received > self.line_limit() {
                            self.out
                                .extend_from_slice(b"* BYE Line too long, closing connection\r\n");
                            return Ok(Flow::Close);
                        }
                    }
                    return Ok(Flow::Continue);
                }
            }
        }
    }

    /// The longest line accepted now: a few KiB before login.
    fn line_limit(&self) -> usize {
        match self.state {
            State::NotAuthenticated => MAX_COMMAND_UNAUTHENTICATED,
            State::Authenticated(_) => self.ctx.config.limits.max_line_bytes,
        }
    }

    /// Waits for input, for index changes while idling, and for shutdown.
    async fn read_more(&mut self) -> std::io::Result<Flow> {
        let limits = &self.ctx.config.limits;
        // Before login the deadline counts from the connection, not from
        // the last byte: a trickle cannot keep a stranger's session alive.
        let deadline = match self.state {
            State::NotAuthenticated => {
                self.connected_at + Duration::from_secs(limits.auth_timeout_secs)
            }
            State::Authenticated(_) => {
                tokio::time::Instant::now() + Duration::from_secs(limits.idle_timeout_secs)
            }
        };
        let idling = matches!(self.pending, Pending::Idle { .. });
        loop {
            tokio::select! {
                r = tokio::time::timeout_at(deadline, self.conn.read(&mut self.rbuf)) => {
                    return match r {
                        Err(_) => {
                            self.out.extend_from_slice(b"* BYE Autologout; idle for too long\r\n");
                            Ok(Flow::Close)
                        }
                        Ok(Ok(0)) => Ok(Flow::Close),
                        Ok(Ok(n)) => {
                            self.frag.enqueue_bytes(&self.rbuf[..n]);
                            if n == self.rbuf.len() && n < READ_LARGE {
                                self.rbuf = vec![0u8; READ_LARGE];
                            } else if n < READ_SMALL && self.rbuf.len() > READ_SMALL {
                                self.rbuf = vec![0u8; READ_SMALL];
                            }
                            Ok(Flow::Continue)
                        }
                        Ok(Err(e)) => Err(e),
                    };
                }
                changed = self.updates.changed(), if idling => {
                    if changed.is_err() {
                        return Ok(Flow::Close);
                    }
                    if let Flow::Close = Box::pin(self.deliver_updates()).await {
                        return Ok(Flow::Close);
                    }
                    self.flush().await?;
                }
                _ = self.shutdown.changed() => {
                    self.out.extend_from_slice(b"* BYE Server shutting down\r\n");
                    return Ok(Flow::Close);
                }
                _ = kicked(&mut self.ticket) => {
                    self.out.extend_from_slice(b"* BYE [UNAVAILABLE] Your access was withdrawn by an administrator\r\n");
                    return Ok(Flow::Close);
                }
            }
        }
    }

    async fn on_fragment(&mut self, fragment: FragmentInfo) -> std::io::Result<Flow> {
        match fragment {
            FragmentInfo::Line {
                start,
                end,
                announcement,
                ..
            } => {
                self.in_literal = false;
                if end - start > self.line_limit() {
                    self.frag.poison_message();
                }
                if let Some(ann) = announcement {
                    let limit = match self.state {
                        // What is left of the whole command's allowance.
                        State::NotAuthenticated => {
                            MAX_COMMAND_UNAUTHENTICATED.saturating_sub(end) as u32
                        }
                        // Only APPEND carries a message; any other
                        // argument (a LIST pattern, a SEARCH string) is
                        // held to the line limit, before it is read.
                        State::Authenticated(_) if is_append(self.frag.message_bytes()) => {
                            self.ctx.config.limits.max_literal_bytes
                        }
                        State::Authenticated(_) => {
                            u32::try_from(self.ctx.config.limits.max_line_bytes).unwrap_or(u32::MAX)
                        }
                    };
                    let tag = self.frag.decode_tag().map(|t| t.inner().to_owned());
                    if ann.length > limit {
                        if matches!(self.state, State::NotAuthenticated) {
                            self.bad_unauthenticated += 1;
                        }
                        match ann.mode {
                            LiteralMode::Sync => {
                                // The client waits for "+", so skipping is safe.
                                let tag = tag.unwrap_or_else(|| "*".into());
                                self.out.extend_from_slice(
                                    format!("{tag} NO [TOOBIG] Literal of {} bytes exceeds the limit of {limit}\r\n", ann.length)
                                        .as_bytes(),
                                );
                                self.frag.skip_message();
                                self.line_start = 0;
                                return Ok(Flow::Continue);
                            }
                            LiteralMode::NonSync => {
                                self.out.extend_from_slice(
                                    format!("* BYE [TOOBIG] Literal of {} bytes exceeds the limit of {limit}\r\n", ann.length)
                                        .as_bytes(),
                                );
                                return Ok(Flow::Close);
                            }
                        }
                    }
                    self.in_literal = true;
                    if ann.mode == LiteralMode::Sync {
                        self.out.extend_from_slice(b"+ Ready for literal data\r\n");
                        self.flush().await?;
                    }
                }
            }
            FragmentInfo::Literal { end, .. } => {
                self.in_literal = false;
                self.line_start = end;
            }
        }
        if !self.frag.is_message_complete() {
            if let FragmentInfo::Line { end, .. } = fragment {
                self.line_start = end;
            }
            return Ok(Flow::Continue);
        }
        self.line_start = 0;
        self.in_literal = false;
        let flow = self.on_message().await?;
        if matches!(self.state, State::NotAuthenticated)
            && (self.failed_logins >= MAX_FAILED_LOGINS_PER_CONNECTION
                || self.bad_unauthenticated >= MAX_BAD_UNAUTHENTICATED)
        {
            self.out
                .extend_from_slice(b"* BYE Too many errors before login, closing connection\r\n");
            return Ok(Flow::Close);
        }
        if self.out.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(flow)
    }

    async fn on_message(&mut self) -> std::io::Result<Flow> {
        match std::mem::replace(&mut self.pending, Pending::Command) {
            Pending::Command => {}
            Pending::Idle { tag } => {
                if self.frag.decode_message(&IdleDoneCodec::default()).is_ok() {
                    Box::pin(self.deliver_updates()).await;
                    self.ok(&tag, None, "IDLE terminated");
                } else {
                    self.bad(&tag, "Expected DONE to end IDLE");
                }
                return Ok(Flow::Continue);
            }
            Pending::AuthPlain { tag } => {
                let decoded = self
                    .frag
                    .decode_message(&AuthenticateDataCodec::default())
                    .map(|d| d.into_static());
                return match decoded {
                    Ok(AuthenticateData::Continue(data)) => {
                        Box::pin(self.auth_plain(&tag, data.declassify().to_vec())).await;
                        Ok(Flow::Continue)
                    }
                    Ok(AuthenticateData::Cancel) => {
                        self.bad(&tag, "AUTHENTICATE cancelled");
                        Ok(Flow::Continue)
                    }
                    Err(_) => {
                        self.bad(&tag, "Invalid base64 in AUTHENTICATE response");
                        Ok(Flow::Continue)
                    }
                };
            }
        }
        let decoded = self
            .frag
            .decode_message(&CommandCodec::default())
            .map(|c| c.into_static());
        match decoded {
            // Boxed: a command's future is large (the biggest handler's),
            // and inline it would be part of every idle session's task.
            Ok(cmd) => Box::pin(self.dispatch(cmd)).await,
            Err(err) => {
                let tag = self.frag.decode_tag().map(|t| t.inner().to_owned());
                let why = match err {
                    imap_codec::fragmentizer::DecodeMessageError::MessageTooLong { .. } => {
                        "Command exceeds the size limit"
                    }
                    imap_codec::fragmentizer::DecodeMessageError::MessagePoisoned { .. } => {
                        "Line too long"
                    }
                    _ => "Unknown command or invalid syntax",
                };
                match tag {
                    Some(tag) => self.bad(&tag, why),
                    None => {
                        if matches!(self.state, State::NotAuthenticated) {
                            self.bad_unauthenticated += 1;
                        }
                        self.out
                            .extend_from_slice(format!("* BAD {why}\r\n").as_bytes())
                    }
                }
                Ok(Flow::Continue)
            }
        }
    }

    async fn dispatch(&mut self, cmd: Command<'static>) -> std::io::Result<Flow> {
        let tag = cmd.tag.inner().to_owned();
        self.ctx
            .metrics
            .command(crate::metrics::Proto::Imap, cmd.name());
        let authed = matches!(self.state, State::Authenticated(_));
        let selected = matches!(&self.state, State::Authenticated(a) if a.selected.is_some());
        if authed {
            if let Some(why) = super::limits::over_limit(&cmd.body) {
                self.no(&tag, Some("LIMIT"), &format!("Command refused: {why}"));
                return Ok(Flow::Continue);
            }
        }
        // Non-UID FETCH, STORE and SEARCH must not see EXPUNGEs (RFC 3501 7.4.1).
        let mut deliver = true;
        match cmd.body {
            CommandBody::Capability => {
                let caps = self.capabilities().join(" ");
                self.untagged(&format!("CAPABILITY {caps}"));
                self.ok(&tag, None, "CAPABILITY completed");
            }
            CommandBody::Noop => self.ok(&tag, None, "NOOP completed"),
            CommandBody::Logout => {
                self.out.extend_from_slice(b"* BYE Logging out\r\n");
                self.ok(&tag, None, "LOGOUT completed");
                return Ok(Flow::Close);
            }
            CommandBody::Id { .. } => {
                self.untagged(&format!(
                    "ID (\"name\" \"leadgate\" \"version\" \"{}\")",
                    env!("CARGO_PKG_VERSION")
                ));
                self.ok(&tag, None, "ID completed");
            }
            CommandBody::StartTLS => {
                if authed || self.is_tls() || self.mode != ListenerTls::Starttls {
                    self.bad(&tag, "STARTTLS is not available now");
                    deliver = false;
                } else {
                    self.ok(&tag, None, "Begin TLS negotiation now");
                    return Ok(Flow::StartTls);
                }
            }
            CommandBody::Login { username, password } if !authed => {
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let pass = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                self.login(&tag, &user, &pass).await;
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } if !authed => match mechanism {
                AuthMechanism::Plain => match initial_response {
                    Some(ir) => Box::pin(self.auth_plain(&tag, ir.declassify().to_vec())).await,
                    None if !self.login_allowed() => self.refuse_cleartext_login(&tag),
                    None => {
                        self.out.extend_from_slice(b"+ \r\n");
                        self.pending = Pending::AuthPlain { tag };
                    }
                },
                _ => self.no(
                    &tag,
                    None,
                    "Unsupported authentication mechanism; use PLAIN",
                ),
            },
            CommandBody::Login { .. } | CommandBody::Authenticate { .. } => {
                self.bad(&tag, "Already authenticated");
            }
            _ if !authed => self.bad(&tag, "Log in first (LOGIN or AUTHENTICATE PLAIN)"),
            CommandBody::Namespace => {
                self.untagged("NAMESPACE ((\"\" \"/\")) NIL NIL");
                self.ok(&tag, None, "NAMESPACE completed");
            }
            CommandBody::Enable { capabilities } => {
                let mut enabled = Vec::new();
                for c in capabilities.as_ref() {
                    let name = c.to_string().to_ascii_uppercase();
                    if name == "CONDSTORE" || name == "QRESYNC" {
                        enabled.push(name);
                    }
                }
                let qresync = enabled.iter().any(|n| n == "QRESYNC");
                self.untagged(format!("ENABLED {}", enabled.join(" ")).trim_end());
                if !enabled.is_empty() {
                    if qresync {
                        if let Some(a) = self.authed_mut() {
                            a.qresync = true;
                        }
                    }
                    self.enable_condstore().await;
                }
                self.ok(&tag, None, "ENABLE completed");
            }
            CommandBody::Idle => {
                self.deliver_updates().await;
                self.out.extend_from_slice(b"+ idling\r\n");
                self.pending = Pending::Idle { tag };
                return Ok(Flow::Continue);
            }
            CommandBody::Select {
                mailbox,
                parameters,
            } => self.select(&tag, &mailbox, false, &parameters).await,
            CommandBody::Examine {
                mailbox,
                parameters,
            } => self.select(&tag, &mailbox, true, &parameters).await,
            CommandBody::Create { mailbox } => self.create(&tag, &mailbox).await,
            CommandBody::Delete { mailbox } => self.delete(&tag, &mailbox).await,
            CommandBody::Rename { from, to } => self.rename(&tag, &from, &to).await,
            CommandBody::Subscribe { mailbox } => self.subscribe(&tag, &mailbox, true).await,
            CommandBody::Unsubscribe { mailbox } => self.subscribe(&tag, &mailbox, false).await,
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => self.list(&tag, &reference, &mailbox_wildcard, false).await,
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => self.list(&tag, &reference, &mailbox_wildcard, true).await,
            CommandBody::Status {
                mailbox,
                item_names,
            } => self.status(&tag, &mailbox, &item_names).await,
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => self.append(&tag, &mailbox, flags, date, message).await,
            _ if !selected => self.bad(&tag, "Select a folder first"),
            CommandBody::Check => self.ok(&tag, None, "CHECK completed"),
            CommandBody::Close => self.close(&tag, true).await,
            CommandBody::Unselect => self.close(&tag, false).await,
            CommandBody::Expunge => self.expunge(&tag, None).await,
            CommandBody::ExpungeUid { sequence_set } => {
                self.expunge(&tag, Some(sequence_set)).await
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => {
                deliver = uid;
                self.fetch(&tag, &sequence_set, macro_or_item_names, uid, &modifiers)
                    .await?;
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => {
                deliver = uid;
                let mut unchanged_since = modifiers.iter().map(|m| match m {
                    StoreModifier::UnchangedSince(v) => *v,
                });
                let req = super::commands::StoreRequest {
                    set: sequence_set,
                    kind,
                    response,
                    flags,
                    by_uid: uid,
                    unchanged_since: unchanged_since.next_back(),
                };
                self.store(&tag, req).await;
            }
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => {
                deliver = uid;
                self.search(&tag, charset, criteria, uid).await;
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(&tag, &sequence_set, &mailbox, uid, false).await,
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(&tag, &sequence_set, &mailbox, uid, true).await,
            _ => self.bad(&tag, "Command not supported by leadgate"),
        }
        if deliver && selected {
            // Updates go before the tagged response that is already queued.
            let tagged_at = self.last_line_start();
            let tail = self.out.split_off(tagged_at);
            let flow = self.deliver_updates().await;
            self.out.extend_from_slice(&tail);
            if let Flow::Close = flow {
                return Ok(Flow::Close);
            }
        }
        Ok(Flow::Continue)
    }

    fn new_fragmentizer(&self) -> Fragmentizer {
        let limits = &self.ctx.config.limits;
        let max_line = u32::try_from(limits.max_line_bytes).unwrap_or(u32::MAX);
        Fragmentizer::new(
            limits
                .max_literal_bytes
                .saturating_add(max_line.saturating_mul(2)),
        )
    }

    /// Start of the last line in the output buffer (the tagged response).
    fn last_line_start(&self) -> usize {
        let body = &self.out[..self.out.len().saturating_sub(2)];
        body.iter()
            .rposition(|&b| b == b'\n')
            .map(|p| p + 1)
            .unwrap_or(0)
    }

    pub(crate) fn capabilities(&self) -> Vec<&'static str> {
        let mut caps = vec![
            "IMAP4rev1",
            "LITERAL+",
            "SASL-IR",
            "ID",
            "ENABLE",
            "IDLE",
            "NAMESPACE",
            "UIDPLUS",
            "MOVE",
            "UNSELECT",
            "SPECIAL-USE",
            "CHILDREN",
            "CONDSTORE",
            "QRESYNC",
        ];
        if let State::NotAuthenticated = self.state {
            if self.mode == ListenerTls::Starttls && !self.is_tls() {
                caps.push("STARTTLS");
            }
            if self.login_allowed() {
                caps.push("AUTH=PLAIN");
            } else {
                caps.push("LOGINDISABLED");
            }
        }
        caps
    }

    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        self.conn.flush(&mut self.out).await
    }

    pub(crate) fn untagged(&mut self, line: &str) {
        self.out.extend_from_slice(b"* ");
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn tagged(&mut self, tag: &str, kind: &str, code: Option<&str>, text: &str) {
        self.out.extend_from_slice(tag.as_bytes());
        self.out.push(b' ');
        self.out.extend_from_slice(kind.as_bytes());
        self.out.push(b' ');
        if let Some(code) = code {
            self.out.push(b'[');
            self.out.extend_from_slice(code.as_bytes());
            self.out.extend_from_slice(b"] ");
        }
        self.out
            .extend_from_slice(crate::imap_wire::text(text).as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    pub(crate) fn ok(&mut self, tag: &str, code: Option<&str>, text: &str) {
        self.tagged(tag, "OK", code, text);
    }

    pub(crate) fn no(&mut self, tag: &str, code: Option<&str>, text: &str) {
        self.tagged(tag, "NO", code, text);
    }

    pub(crate) fn bad(&mut self, tag: &str, text: &str) {
        if matches!(self.state, State::NotAuthenticated) {
            self.bad_unauthenticated += 1;
        }
        self.tagged(tag, "BAD", None, text);
    }

    /// Answers a failed upstream operation without leaking internals.
    pub(crate) fn upstream_no(&mut self, tag: &str, what: &str, err: &UpstreamError) {
        tracing::warn!(user = self.user_name(), "{what} failed upstream: {err}");
        match err {
            UpstreamError::Refused { text, .. } => self.no(
                tag,
                None,
                &format!("{what} failed: {}", crate::imap_wire::text(text)),
            ),
            UpstreamError::UidValidityChanged(_) => self.no(
                tag,
                Some("UNAVAILABLE"),
                &format!("{what} failed: the folder is being resynchronised, try again"),
            ),
            _ => self.no(
                tag,
                Some("UNAVAILABLE"),
                &format!("{what} failed: the upstream mail server is unavailable, try again later"),
            ),
        }
    }

    pub(crate) fn authed(&self) -> Option<&Authed> {
        match &self.state {
            State::Authenticated(a) => Some(a),
            State::NotAuthenticated => None,
        }
    }

    pub(crate) fn authed_mut(&mut self) -> Option<&mut Authed> {
        match &mut self.state {
            State::Authenticated(a) => Some(a),
            State::NotAuthenticated => None,
        }
    }

    pub(crate) fn selected(&self) -> Option<&Selected> {
        self.authed().and_then(|a| a.selected.as_ref())
    }

    pub(crate) fn selected_mut(&mut self) -> Option<&mut Selected> {
        self.authed_mut().and_then(|a| a.selected.as_mut())
    }

    /// Before a FETCH that sends `flags`: the FLAGS line, when one of them
    /// is a keyword the client has not been told of (see `Selected::announce`).
    pub(crate) fn announce_keywords(&mut self, flags: &str) {
        if let Some(line) = self.selected_mut().and_then(|s| s.announce(flags)) {
            self.out.extend_from_slice(line.as_bytes());
        }
    }

    /// Sends what changed in the selected folder since the last delivery:
    /// EXPUNGE for messages gone, FETCH FLAGS for flag (and lead keyword)
    /// changes, EXISTS for new mail. Closes the session if the folder was
    /// reset upstream.
    pub(crate) async fn deliver_updates(&mut self) -> Flow {
        let ctx = self.ctx.clone();
        let qresync = self.qresync();
        let index = ctx.index.clone();
        let Some(sel) = self.selected() else {
            return Flow::Continue;
        };
        let (scope, last_seq) = (sel.scope, sel.last_seq);
        // This user's id in read-state events (`Change::Private`).
        let me = self.authed().map_or(0, |a| a.seen.id);
        let mut out = Vec::new();
        match index.events_since(last_seq, scope) {
            Ok((events, newest)) => {
                let mut flag_uids = Vec::new();
                let Some(sel) = self.selected_mut() else {
                    return Flow::Continue;
                };
                let mut announced = sel.uids.len();
                let before = sel.uids.last().copied().unwrap_or(0);
                let mut changed = false;
                for e in events {
                    match e.change {
                        Change::Added => {
                            if sel.uids.last().is_none_or(|&last| e.uid > last) {
                                Arc::make_mut(&mut sel.uids).push(e.uid);
                                changed = true;
                            }
                        }
                        Change::Removed => {
                            if let Ok(pos) = sel.uids.binary_search(&e.uid) {
                                Arc::make_mut(&mut sel.uids).remove(pos);
                                changed = true;
                                sel.reported.remove(&e.uid);
                                if pos < announced {
                                    announced -= 1;
                                    out.extend_from_slice(
                                        expunged_line(qresync, pos as u32 + 1, e.uid).as_bytes(),
                                    );
                                }
                            }
                        }
                        Change::Private(id) if id != me => {}
                        Change::Flags | Change::Private(_) => {
                            if let Ok(pos) = sel.uids.binary_search(&e.uid) {
                                if pos < announced && !flag_uids.iter().any(|(_, u)| *u == e.uid) {
                                    flag_uids.push((pos as u32 + 1, e.uid));
                                }
                            }
                        }
                        Change::Reset => {
                            self.out.extend_from_slice(
                                b"* BYE [UNAVAILABLE] This folder was reset on the mail server; please reconnect\r\n",
                            );
                            return Flow::Close;
                        }
                    }
                }
                sel.last_seq = newest;
                if changed {
                    let own = std::mem::take(Arc::make_mut(&mut sel.uids));
                    sel.uids = ctx.uid_lists.intern(scope, newest, own);
                }
                let exists = (sel.uids.len() != announced).then_some(sel.uids.len());
                // Positions may have moved since: look them up again.
                let pairs: Vec<(u32, u32)> = {
                    let uids = &sel.uids;
                    flag_uids
                        .iter()
                        .filter_map(|(_, uid)| {
                            uids.binary_search(uid).ok().map(|p| (p as u32 + 1, *uid))
                        })
                        .collect()
                };
                let refs = self.refs(&pairs);
                let modseqs = self.modseqs_to_send(&refs).await;
                for (i, r) in refs.iter().enumerate() {
                    let flags = self.flag_text(r);
                    let Some(sel) = self.selected_mut() else {
                        break;
                    };
                    let digest = flags_digest(&flags);
                    if sel.reported.get(&r.uid) != Some(&digest) {
                        if let Some(line) = sel.announce(&flags) {
                            out.extend_from_slice(line.as_bytes());
                        }
                        out.extend_from_slice(
                            fetch_flags_line(r, &flags, modseqs.as_ref().map(|m| m[i])).as_bytes(),
                        );
                        sel.reported.insert(r.uid, digest);
                    }
                }
                if let Some(n) = exists {
                    out.extend_from_slice(format!("* {n} EXISTS\r\n").as_bytes());
                    if let Some(sel) = self.selected_mut() {
                        out.extend_from_slice(sel.take_recent(&index, before).as_bytes());
                    }
                }
            }
            Err(Lagged) => {
                // Too far behind for the log: compare whole state instead.
                let now = index.current_seq();
                let live: Option<Vec<u32>> = match &self.selected().map(|s| s.folder.clone()) {
                    Some(Folder::View { id, .. }) => self.ctx.views.snapshot(*id).map(|v| v.uids),
                    Some(f) => f
                        .upstream()
                        .and_then(|name| {
                            index.with_mailbox(name, |m| {
                                (m.rec.gen == scope).then(|| m.msgs.keys().copied().collect())
                            })
                        })
                        .flatten(),
                    None => None,
                };
                let Some(live) = live else {
                    self.out.extend_from_slice(
                        b"* BYE [UNAVAILABLE] This folder was reset; please reconnect\r\n",
                    );
                    return Flow::Close;
                };
                let live_set: std::collections::HashSet<u32> = live.iter().copied().collect();
                let Some(sel) = self.selected_mut() else {
                    return Flow::Continue;
                };
                let mut announced = sel.uids.len();
                let before = sel.uids.last().copied().unwrap_or(0);
                let mut own = std::mem::take(Arc::make_mut(&mut sel.uids));
                for pos in (0..own.len()).rev() {
                    if !live_set.contains(&own[pos]) {
                        let uid = own.remove(pos);
                        announced -= 1;
                        out.extend_from_slice(
                            expunged_line(qresync, pos as u32 + 1, uid).as_bytes(),
                        );
                    }
                }
                for uid in live {
                    if own.last().is_none_or(|l| uid > *l) {
                        own.push(uid);
                    }
                }
                sel.uids = ctx.uid_lists.intern(scope, now, own);
                sel.last_seq = now;
                sel.reported.clear();
                let exists = (sel.uids.len() != announced).then_some(sel.uids.len());
                let pairs: Vec<(u32, u32)> = sel
                    .uids
                    .iter()
                    .take(announced)
                    .enumerate()
                    .map(|(i, u)| (i as u32 + 1, *u))
                    .collect();
                let refs = self.refs(&pairs);
                let modseqs = self.modseqs_to_send(&refs).await;
                for (i, r) in refs.iter().enumerate() {
                    let flags = self.flag_text(r);
                    if let Some(line) = self.selected_mut().and_then(|s| s.announce(&flags)) {
                        out.extend_from_slice(line.as_bytes());
                    }
                    out.extend_from_slice(
                        fetch_flags_line(r, &flags, modseqs.as_ref().map(|m| m[i])).as_bytes(),
                    );
                }
                if let Some(n) = exists {
                    out.extend_from_slice(format!("* {n} EXISTS\r\n").as_bytes());
                    if let Some(sel) = self.selected_mut() {
                        out.extend_from_slice(sel.take_recent(&index, before).as_bytes());
                    }
                }
            }
        }
        self.out.extend_from_slice(&out);
        Flow::Continue
    }
}

impl<S: Io> Protocol for Session<S> {
    type Stream = S;

    fn io(&mut self) -> (&mut Conn<S>, &mut Vec<u8>) {
        (&mut self.conn, &mut self.out)
    }

    fn greet(&mut self, admission: Admission) -> Flow {
        if admission == Admission::TooManyFromIp {
            self.out
                .extend_from_slice(b"* BYE Too many connections from your address\r\n");
            return Flow::Close;
        }
        self.greeting();
        Flow::Continue
    }

    async fn advance(&mut self) -> std::io::Result<Flow> {
        self.on_input().await
    }

    async fn wait(&mut self) -> std::io::Result<Flow> {
        self.read_more().await
    }

    /// Anything pipelined in clear after STARTTLS is dropped, never read
    /// as if it had come over TLS.
    fn tls_started(&mut self) {
        self.frag = self.new_fragmentizer();
    }
}
