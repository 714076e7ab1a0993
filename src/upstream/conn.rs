//! One IMAP client connection to the upstream server: framing with
//! imap-codec's Fragmentizer, decoding with its ResponseCodec, commands
//! written by a small builder that quotes (with `imap_wire`, as the
//! listener does) or sends literals as needed.
//! Every read has a timeout; a connection that errors is dropped by its owner.

use std::{sync::Arc, time::Duration};

use imap_codec::{
    decode::Decoder,
    encode::Encoder,
    imap_types::{
        core::Vec1,
        fetch::MessageDataItem,
        response::{Code, Data, Response, Status, StatusKind},
        IntoStatic,
    },
    GreetingCodec, ResponseCodec,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

use super::framer::Framer;
use crate::{
    net::stream::MaybeTls,
    secret::Secret,
    upstream::config::{UpstreamImapConfig, UpstreamTls},
};

pub type UpStream = MaybeTls<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;

/// Largest single response accepted from the upstream (a FETCH of a big
/// message body is one response).
const MAX_RESPONSE: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to upstream {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("upstream TLS: {0}")]
    Tls(String),
    #[error("upstream I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream closed the connection")]
    Closed,
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    #[error("upstream refused the shared account's login: {0}")]
    Login(String),
    #[error("upstream answered {kind:?} to {command}: {text}")]
    Refused {
        command: String,
        kind: StatusKind,
        code: Option<Code<'static>>,
        text: String,
    },
    #[error("upstream mailbox {0} changed UIDVALIDITY")]
    UidValidityChanged(String),
    #[error("upstream is unavailable")]
    Unavailable,
}

impl UpstreamError {
    /// Whether the connection can still be used after this error.
    pub fn connection_usable(&self) -> bool {
        matches!(
            self,
            UpstreamError::Refused { .. } | UpstreamError::UidValidityChanged(_)
        )
    }
}

/// A piece of a command line.
enum Part {
    Text(Vec<u8>),
    Literal(Vec<u8>),
}

/// Builds one command; `run` adds the tag and CRLF.
pub struct Cmd {
    parts: Vec<Part>,
    name: String,
}

impl Cmd {
    pub fn new(text: &str) -> Self {
        Cmd {
            parts: vec![Part::Text(text.as_bytes().to_vec())],
            name: text.split(' ').take(2).collect::<Vec<_>>().join(" "),
        }
    }

    pub fn raw(mut self, text: &str) -> Self {
        self.push_text(text.as_bytes());
        self
    }

    fn push_text(&mut self, b: &[u8]) {
        match self.parts.last_mut() {
            Some(Part::Text(t)) => t.extend_from_slice(b),
            _ => self.parts.push(Part::Text(b.to_vec())),
        }
    }

    /// A string argument: quoted when it can be, a literal otherwise (the
    /// literal's announcement is made by `run`, to suit the server).
    pub fn string(mut self, value: &[u8]) -> Self {
        match crate::imap_wire::quoted(value) {
            Some(q) => self.push_text(q.as_bytes()),
            None => self.parts.push(Part::Literal(value.to_vec())),
        }
        self
    }

    pub fn literal(mut self, value: Vec<u8>) -> Self {
        self.parts.push(Part::Literal(value));
        self
    }

    /// A command encoded by imap-codec, without its tag: literal
    /// announcements are dropped here and re-made by `run` to suit the
    /// server (LITERAL+ or synchronising).
    pub fn from_encoded(encoded: imap_codec::encode::Encoded, name: &str) -> Cmd {
        let mut parts = Vec::new();
        let mut first = true;
        for fragment in encoded {
            match fragment {
                imap_codec::encode::Fragment::Line { mut data } => {
                    if first {
                        let sp = data
                            .iter()
                            .position(|&b| b == b' ')
                            .map(|p| p + 1)
                            .unwrap_or(0);
                        data.drain(..sp);
                        first = false;
                    }
                    if data.ends_with(b"}\r\n") {
                        if let Some(open) = data.iter().rposition(|&b| b == b'{') {
                            data.truncate(open);
                        }
                    } else if data.ends_with(b"\r\n") {
                        data.truncate(data.len() - 2);
                    }
                    parts.push(Part::Text(data));
                }
                imap_codec::encode::Fragment::Literal { data, .. } => {
                    parts.push(Part::Literal(data))
                }
            }
        }
        Cmd {
            parts,
            name: name.to_owned(),
        }
    }
}

/// What a completed command returned.
#[derive(Debug)]
pub struct Done {
    pub untagged: Vec<Response<'static>>,
    pub code: Option<Code<'static>>,
    pub text: String,
}

/// The selected mailbox as the server described it: the SELECT answer,
/// then kept current from every untagged response read afterwards (EXISTS,
/// EXPUNGE, `OK [UIDNEXT]`, `OK [HIGHESTMODSEQ]`, a FETCH's MODSEQ), so a
/// change the server reports in the middle of another command is not lost.
#[derive(Debug, Clone)]
pub struct SelectInfo {
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub exists: u32,
    pub highestmodseq: Option<u64>,
    pub read_only: bool,
}

impl SelectInfo {
    /// Folds one untagged response into the description.
    fn observe(&mut self, resp: &Response<'_>) {
        match resp {
            Response::Data(Data::Exists(n)) => self.exists = *n,
            Response::Data(Data::Expunge(_)) => self.exists = self.exists.saturating_sub(1),
            Response::Data(Data::Fetch { items, .. }) => {
                for item in items.as_ref() {
                    if let MessageDataItem::ModSeq(m) = item {
                        self.raise_modseq(m.get());
                    }
                }
            }
            // VANISHED comes only after ENABLE QRESYNC, which leadgate
            // never sends.
            Response::Status(Status::Untagged(body)) => match &body.code {
                Some(Code::UidNext(n)) => self.uidnext = self.uidnext.max(n.get()),
                Some(Code::HighestModSeq(m)) => self.raise_modseq(m.get()),
                _ => {}
            },
            _ => {}
        }
    }

    fn raise_modseq(&mut self, m: u64) {
        if let Some(h) = &mut self.highestmodseq {
            *h = (*h).max(m);
        }
    }
}

pub struct Conn {
    stream: UpStream,
    framer: Framer,
    buf: Box<[u8]>,
    tag: u32,
    caps: Vec<String>,
    timeout: Duration,
    pub selected: Option<SelectInfo>,
    /// Hierarchy delimiter of the personal namespace.
    pub delimiter: Option<char>,
}

impl Conn {
    /// Connects, negotiates TLS as configured, and logs in with the shared
    /// account.
    pub async fn connect(
        cfg: &UpstreamImapConfig,
        password: &Secret<String>,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<Conn, UpstreamError> {
        let timeout = Duration::from_secs(cfg.timeout_secs);
        let addr = format!("{}:{}", cfg.host, cfg.port);
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(&addr))
            .await
            .map_err(|_| UpstreamError::Connect {
                addr: addr.clone(),
                reason: "timed out".into(),
            })?
            .map_err(|e| UpstreamError::Connect {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        let mut conn = Conn {
            stream: MaybeTls::Plain(tcp),
            framer: Framer::new(MAX_RESPONSE),
            buf: vec![0u8; 256 * 1024].into_boxed_slice(),
            tag: 0,
            caps: Vec::new(),
            timeout,
            selected: None,
            delimiter: None,
        };
        if cfg.tls == UpstreamTls::Implicit {
            conn.start_tls(&cfg.host, tls).await?;
        }
        conn.read_greeting().await?;
        if cfg.tls == UpstreamTls::Starttls {
            conn.run(Cmd::new("STARTTLS")).await?;
            conn.start_tls(&cfg.host, tls).await?;
            conn.caps.clear();
        }
        if conn.caps.is_empty() {
            conn.refresh_capabilities().await?;
        }
        let login = Cmd::new("LOGIN ")
            .string(cfg.username.as_bytes())
            .raw(" ")
            .string(password.expose().as_bytes());
        match conn.run(login).await {
            Ok(done) => {
                if let Some(Code::Capability(caps)) = &done.code {
                    conn.caps = caps
                        .as_ref()
                        .iter()
                        .map(|c| c.to_string().to_ascii_uppercase())
                        .collect();
                } else {
                    conn.refresh_capabilities().await?;
                }
            }
            Err(UpstreamError::Refused { text, .. }) => return Err(UpstreamError::Login(text)),
            Err(e) => return Err(e),
        }
        let done = conn.run(Cmd::new("LIST \"\" \"\"")).await?;
        for r in &done.untagged {
            if let Response::Data(Data::List { delimiter, .. }) = r {
                conn.delimiter = delimiter.as_ref().map(|d| d.inner());
            }
        }
        Ok(conn)
    }

    async fn start_tls(
        &mut self,
        host: &str,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<(), UpstreamError> {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| UpstreamError::Tls(format!("bad server name {host}: {e}")))?;
        let plain = self
            .stream
            .take_plain()
            .ok_or_else(|| UpstreamError::Tls("already TLS".into()))?;
        let tls = tokio::time::timeout(
            self.timeout,
            TlsConnector::from(tls.clone()).connect(name, plain),
        )
        .await
        .map_err(|_| UpstreamError::Timeout(self.timeout))?
        .map_err(|e| UpstreamError::Tls(e.to_string()))?;
        self.stream = MaybeTls::Tls(Box::new(tls));
        Ok(())
    }

    pub fn has_capability(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c == cap)
    }

    async fn refresh_capabilities(&mut self) -> Result<(), UpstreamError> {
        let done = self.run(Cmd::new("CAPABILITY")).await?;
        for r in &done.untagged {
            if let Response::Data(Data::Capability(caps)) = r {
                self.caps = caps
                    .as_ref()
                    .iter()
                    .map(|c| c.to_string().to_ascii_uppercase())
                    .collect();
            }
        }
        Ok(())
    }

    async fn fill(&mut self) -> Result<(), UpstreamError> {
        let n = tokio::time::timeout(self.timeout, self.stream.read(&mut self.buf))
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout))??;
        if n == 0 {
            return Err(UpstreamError::Closed);
        }
        self.framer.push(&self.buf[..n]);
        Ok(())
    }

    fn framed(&mut self) -> Result<Option<std::ops::Range<usize>>, UpstreamError> {
        self.framer.next_message().map_err(|_| {
            UpstreamError::Protocol(format!("response larger than {MAX_RESPONSE} bytes"))
        })
    }

    /// Reads until one whole message is framed.
    async fn next_message(&mut self) -> Result<std::ops::Range<usize>, UpstreamError> {
        loop {
            if let Some(r) = self.framed()? {
                return Ok(r);
            }
            self.fill().await?;
        }
    }

    fn decode(&self, range: std::ops::Range<usize>) -> Option<Response<'static>> {
        let bytes = self.framer.bytes(range);
        match ResponseCodec::default().decode(bytes) {
            Ok((b"", r)) => Some(r.into_static()),
            _ if is_status_line(bytes) && !bytes.is_ascii() => {
                // A status line whose human-readable text is not ASCII
                // (Dovecot echoes a folder name in UTF-8 in its NO): the
                // text is for people, so its non-ASCII bytes become '?'
                // rather than the answer being lost.
                let ascii: Vec<u8> = bytes
                    .iter()
                    .map(|&b| if b.is_ascii() { b } else { b'?' })
                    .collect();
                match ResponseCodec::default().decode(&ascii) {
                    Ok((b"", r)) => Some(r.into_static()),
                    _ => {
                        let shown = String::from_utf8_lossy(&ascii[..ascii.len().min(200)]);
                        tracing::warn!(
                            "skipping upstream status line imap-codec cannot decode: {shown:?}"
                        );
                        None
                    }
                }
            }
            _ => {
                let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
                tracing::warn!("skipping upstream response imap-codec cannot decode: {shown:?}");
                None
            }
        }
    }

    async fn read_greeting(&mut self) -> Result<(), UpstreamError> {
        let range = self.next_message().await?;
        let (_, greeting) = GreetingCodec::default()
            .decode(self.framer.bytes(range))
            .map_err(|e| UpstreamError::Protocol(format!("bad greeting: {e:?}")))?;
        if let Some(Code::Capability(caps)) = &greeting.code {
            self.caps = caps
                .as_ref()
                .iter()
                .map(|c| c.to_string().to_ascii_uppercase())
                .collect();
        }
        Ok(())
    }

    /// Reads one response. `None` means a response that imap-codec could not
    /// decode; it has been skipped whole (framing is intact).
    pub async fn read_response(&mut self) -> Result<Option<Response<'static>>, UpstreamError> {
        let range = self.next_message().await?;
        Ok(self.decode_observed(range))
    }

    /// Decodes one framed response and keeps `selected` current with it.
    fn decode_observed(&mut self, range: std::ops::Range<usize>) -> Option<Response<'static>> {
        let resp = self.decode(range);
        if let (Some(r), Some(sel)) = (&resp, &mut self.selected) {
            sel.observe(r);
        }
        resp
    }

    /// Like `read_response` with a deadline; `Ok(None)` on timeout. Used
    /// while idling, when silence is normal.
    pub async fn read_response_within(
        &mut self,
        wait: Duration,
    ) -> Result<Option<Option<Response<'static>>>, UpstreamError> {
        loop {
            if let Some(range) = self.framed()? {
                return Ok(Some(self.decode_observed(range)));
            }
            match tokio::time::timeout(wait, self.stream.read(&mut self.buf)).await {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => return Err(UpstreamError::Closed),
                Ok(Ok(n)) => self.framer.push(&self.buf[..n]),
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }

    fn next_tag(&mut self) -> String {
        self.tag = self.tag.wrapping_add(1);
        format!("U{}", self.tag)
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), UpstreamError> {
        tokio::time::timeout(self.timeout, self.stream.write_all(bytes))
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout))??;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), UpstreamError> {
        tokio::time::timeout(self.timeout, self.stream.flush())
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout))??;
        Ok(())
    }

    /// Sends a command and collects everything up to its completion.
    pub async fn run(&mut self, cmd: Cmd) -> Result<Done, UpstreamError> {
        let mut untagged = Vec::new();
        self.run_streaming(cmd, |r| untagged.push(r))
            .await
            .map(|(code, text)| Done {
                untagged,
                code,
                text,
            })
    }

    /// Sends a command, handing each untagged response to `on_data` as it
    /// arrives. Returns the completion's code and text.
    pub async fn run_streaming(
        &mut self,
        cmd: Cmd,
        mut on_data: impl FnMut(Response<'static>),
    ) -> Result<(Option<Code<'static>>, String), UpstreamError> {
        let tag = self.next_tag();
        let literal_plus = self.has_capability("LITERAL+");
        let mut line = format!("{tag} ").into_bytes();
        let parts = cmd.parts;
        for part in parts {
            match part {
                Part::Text(t) => line.extend_from_slice(&t),
                Part::Literal(data) => {
                    if literal_plus {
                        line.extend_from_slice(format!("{{{}+}}\r\n", data.len()).as_bytes());
                        line.extend_from_slice(&data);
                    } else {
                        line.extend_from_slice(format!("{{{}}}\r\n", data.len()).as_bytes());
                        self.write_all(&line).await?;
                        self.flush().await?;
                        line.clear();
                        self.await_continuation(&tag, &cmd.name, &mut on_data)
                            .await?;
                        line.extend_from_slice(&data);
                    }
                }
            }
        }
        line.extend_from_slice(b"\r\n");
        self.write_all(&line).await?;
        self.flush().await?;
        loop {
            let Some(resp) = self.read_response().await? else {
                continue;
            };
            match resp {
                Response::Status(Status::Tagged(t)) if t.tag.inner() == tag => {
                    let text = t.body.text.inner().to_owned();
                    return match t.body.kind {
                        StatusKind::Ok => Ok((t.body.code, text)),
                        kind => Err(UpstreamError::Refused {
                            command: cmd.name,
                            kind,
                            code: t.body.code,
                            text,
                        }),
                    };
                }
                Response::Status(Status::Bye(b)) => {
                    return Err(UpstreamError::Protocol(format!("BYE: {}", b.text.inner())));
                }
                Response::CommandContinuationRequest(_) => {
                    return Err(UpstreamError::Protocol(
                        "unexpected continuation request".into(),
                    ))
                }
                other => on_data(other),
            }
        }
    }

    async fn await_continuation(
        &mut self,
        tag: &str,
        name: &str,
        on_data: &mut impl FnMut(Response<'static>),
    ) -> Result<(), UpstreamError> {
        loop {
            let Some(resp) = self.read_response().await? else {
                continue;
            };
            match resp {
                Response::CommandContinuationRequest(_) => return Ok(()),
                Response::Status(Status::Tagged(t)) if t.tag.inner() == tag => {
                    return Err(UpstreamError::Refused {
                        command: name.to_owned(),
                        kind: t.body.kind,
                        code: t.body.code,
                        text: t.body.text.inner().to_owned(),
                    })
                }
                other => on_data(other),
            }
        }
    }

    /// SELECT (or EXAMINE) with CONDSTORE when the server has it.
    pub async fn select(
        &mut self,
        name: &str,
        read_only: bool,
    ) -> Result<SelectInfo, UpstreamError> {
        let verb = if read_only { "EXAMINE " } else { "SELECT " };
        let mut cmd = Cmd::new(verb).string(name.as_bytes());
        if self.has_capability("CONDSTORE") {
            cmd = cmd.raw(" (CONDSTORE)");
        }
        self.selected = None;
        let done = self.run(cmd).await?;
        let mut info = SelectInfo {
            name: name.to_owned(),
            uidvalidity: 0,
            uidnext: 0,
            exists: 0,
            highestmodseq: None,
            read_only,
        };
        for r in &done.untagged {
            match r {
                Response::Data(Data::Exists(n)) => info.exists = *n,
                Response::Status(Status::Untagged(body)) => match &body.code {
                    Some(Code::UidValidity(v)) => info.uidvalidity = v.get(),
                    Some(Code::UidNext(v)) => info.uidnext = v.get(),
                    Some(Code::HighestModSeq(v)) => info.highestmodseq = Some(v.get()),
                    _ => {}
                },
                _ => {}
            }
        }
        if info.uidvalidity == 0 {
            return Err(UpstreamError::Protocol(format!(
                "SELECT {name} gave no UIDVALIDITY"
            )));
        }
        self.selected = Some(info.clone());
        Ok(info)
    }

    /// Makes sure `name` is selected with the expected UIDVALIDITY.
    pub async fn ensure_selected(
        &mut self,
        name: &str,
        uidvalidity: u32,
        read_only: bool,
    ) -> Result<(), UpstreamError> {
        let current = self
            .selected
            .as_ref()
            .is_some_and(|s| s.name == name && (s.read_only == read_only || !s.read_only));
        if !current {
            self.select(name, read_only).await?;
        }
        match &self.selected {
            Some(s) if s.uidvalidity == uidvalidity => Ok(()),
            _ => Err(UpstreamError::UidValidityChanged(name.to_owned())),
        }
    }

    /// Starts IDLE. The flag says whether the server reported a change
    /// (EXISTS, EXPUNGE, FETCH) before it accepted the IDLE.
    pub async fn idle_start(&mut self) -> Result<(String, bool), UpstreamError> {
        let tag = self.next_tag();
        self.write_all(format!("{tag} IDLE\r\n").as_bytes()).await?;
        self.flush().await?;
        let mut changed = false;
        loop {
            match self.read_response().await? {
                Some(Response::CommandContinuationRequest(_)) => return Ok((tag, changed)),
                Some(Response::Data(
                    Data::Exists(_) | Data::Expunge(_) | Data::Fetch { .. } | Data::Vanished { .. },
                )) => changed = true,
                Some(Response::Status(Status::Tagged(t))) if t.tag.inner() == tag => {
                    return Err(UpstreamError::Refused {
                        command: "IDLE".into(),
                        kind: t.body.kind,
                        code: t.body.code,
                        text: t.body.text.inner().to_owned(),
                    })
                }
                _ => continue,
            }
        }
    }

    pub async fn idle_done(&mut self, tag: &str) -> Result<(), UpstreamError> {
        self.write_all(b"DONE\r\n").await?;
        self.flush().await?;
        loop {
            match self.read_response().await? {
                Some(Response::Status(Status::Tagged(t))) if t.tag.inner() == tag => return Ok(()),
                _ => continue,
            }
        }
    }
}

/// The wire form of one FETCH item as the codec encodes it, e.g. the
/// parenthesised ENVELOPE, so it can be stored and served verbatim.
pub fn encode_fetch_item(item: MessageDataItem<'static>) -> Vec<u8> {
    let name_len = match &item {
        MessageDataItem::Envelope(_) => "ENVELOPE ".len(),
        MessageDataItem::BodyStructure(_) => "BODYSTRUCTURE ".len(),
        MessageDataItem::Body(_) => "BODY ".len(),
        _ => 0,
    };
    let resp = Response::Data(Data::Fetch {
        seq: std::num::NonZeroU32::MIN,
        items: Vec1::from(item),
    });
    let bytes = ResponseCodec::default().encode(&resp).dump();
    // "* 1 FETCH (" + item + ")\r\n"
    let start = "* 1 FETCH (".len() + name_len;
    let end = bytes.len().saturating_sub(3);
    bytes
        .get(start..end)
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// A status response line (`tag OK|NO|BAD ...`, `* BYE ...`): one line,
/// no literal.
pub(crate) fn is_status_line(bytes: &[u8]) -> bool {
    let mut words = bytes.splitn(3, |&b| b == b' ');
    let (Some(tag), Some(kind)) = (words.next(), words.next()) else {
        return false;
    };
    !tag.is_empty()
        && tag != b"+"
        && [&b"OK"[..], b"NO", b"BAD", b"BYE", b"PREAUTH"]
            .iter()
            .any(|k| kind.eq_ignore_ascii_case(k))
        && !bytes.ends_with(b"}\r\n")
}

#[cfg(test)]
mod tests {
    use imap_codec::{decode::Decoder, imap_types::IntoStatic, ResponseCodec};

    use super::{is_status_line, SelectInfo};

    #[test]
    fn what_the_server_announces_mid_command_updates_the_selected_state() {
        let mut info = SelectInfo {
            name: "INBOX".into(),
            uidvalidity: 7,
            uidnext: 12_450,
            exists: 12_449,
            highestmodseq: Some(900),
            read_only: false,
        };
        for line in [
            &b"* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (905))\r\n"[..],
            b"* 20000 EXISTS\r\n",
            b"* 3 EXPUNGE\r\n",
            b"* OK [UIDNEXT 20001] Predicted next UID\r\n",
            b"* OK [HIGHESTMODSEQ 950] Highest\r\n",
            b"* OK Still here\r\n",
        ] {
            let (rest, resp) = ResponseCodec::default().decode(line).expect("decodes");
            assert!(rest.is_empty());
            info.observe(&resp.into_static());
        }
        assert_eq!(info.exists, 19_999);
        assert_eq!(info.uidnext, 20_001);
        assert_eq!(info.highestmodseq, Some(950));
    }

    #[test]
    fn status_lines_are_told_from_data() {
        assert!(is_status_line(
            b"U10 NO Mailbox doesn't exist: x/\xe2\x98\xba\r\n"
        ));
        assert!(is_status_line(b"* BYE bye\r\n"));
        assert!(!is_status_line(b"* LIST () \"/\" {3}\r\n"));
        assert!(!is_status_line(b"* 3 FETCH (FLAGS ())\r\n"));
        assert!(!is_status_line(b"+ go ahead\r\n"));
    }
}
