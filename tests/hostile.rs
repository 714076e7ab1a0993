//! Malformed and hostile input on both protocols, against leadgate in front
//! of real Dovecot and Postfix. Every input is deterministic: a table of
//! hand-written cases plus seeded mutations of valid commands (the seed is
//! printed; `LEADGATE_HOSTILE_SEED` repeats a run, `LEADGATE_LONG_TESTS=1`
//! runs five times as many mutations).
//!
//! For each input the server must answer clearly (IMAP: tagged OK/NO/BAD,
//! untagged BAD, or BYE before it closes; SMTP: a well-formed reply code,
//! 421 before it closes), never hang (every read has a deadline, and a
//! server left waiting for the rest of a literal or a message must close
//! when the client goes away), never panic (the log has no "panicked"),
//! stay up, keep its limits, and keep serving a session that runs next to
//! the hostile ones.

mod common;

use std::{
    io::{Read, Write},
    net::{IpAddr, Shutdown, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use base64::Engine;
use common::*;

const CONFIG: &str = r#"
[[smtp.listener]]
addr = "127.0.0.1:0"
tls = "plaintext"

[smtp]
max_message_bytes = 1048576
max_errors = 20

[smtp.relay]
host = "127.0.0.1"
port = {POSTFIX_PORT}
tls = "none"
timeout_secs = 10

[limits]
max_connections_per_ip = 20
max_literal_bytes = 1048576
auth_timeout_secs = 20

[leads]
shared_address = "sales@example.com"

[[leads.assignment]]
rule = "unassigned"
"#;

/// The IMAP line limit (leadgate's default `limits.max_line_bytes`).
const MAX_LINE: usize = 65536;
/// Quiet time after which a client that got no answer assumes the server
/// waits for more input (then it closes its side and expects the server to
/// close too).
const QUIET: Duration = Duration::from_secs(3);
/// Time a server gets to close after the client closed its side.
const CLOSE_GRACE: Duration = Duration::from_secs(20);

fn setup() -> Setup {
    let s = Setup::new(GatewayOptions {
        extra: CONFIG.into(),
        rep_inbox: "read-only",
        ..Default::default()
    });
    for (i, (from, subject)) in [
        ("dana@northwind.test", "Quote request: 40 seats"),
        ("raj@brightpath.test", "Demo request"),
        ("tom@acme-corp.test", "Adding 15 more users"),
    ]
    .iter()
    .enumerate()
    {
        s.deliver_and_wait(
            from,
            &message(
                &format!("Customer <{from}>"),
                subject,
                &format!("seed{i}@hostile.test"),
                "Hello, please get back to us.",
            ),
            i + 1,
        );
    }
    s
}

fn seed_rng() -> XorShift {
    XorShift::from_env("LEADGATE_HOSTILE_SEED")
}

fn mutation_count(default: usize) -> usize {
    if long_tests() {
        default * 5
    } else {
        default
    }
}

// ------------------------------------------------------------- the wire

/// What one read brought.
enum Got {
    Line(String),
    Eof { reset: bool },
    Quiet,
}

/// A socket with a line reader that never waits past a deadline. For IMAP
/// the literals announced at line ends are read and inlined.
struct Wire {
    s: TcpStream,
    buf: Vec<u8>,
    imap: bool,
}

impl Wire {
    fn new(s: TcpStream, imap: bool) -> Wire {
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        Wire {
            s,
            buf: Vec::new(),
            imap,
        }
    }

    /// Reads more; Ok(false) on a quiet period.
    fn fill(&mut self, until: Instant) -> Result<bool, bool> {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        self.s.set_read_timeout(Some(left)).unwrap();
        let mut tmp = [0u8; 65536];
        loop {
            match self.s.read(&mut tmp) {
                Ok(0) => return Err(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(false)
                }
                Err(_) => return Err(true),
            }
        }
    }

    fn line(&mut self, until: Instant) -> Got {
        let mut text = Vec::new();
        loop {
            let pos = loop {
                if let Some(p) = self.buf.iter().position(|&b| b == b'\n') {
                    break p;
                }
                match self.fill(until) {
                    Ok(true) => {}
                    Ok(false) => return Got::Quiet,
                    Err(reset) => return Got::Eof { reset },
                }
            };
            let line: Vec<u8> = self.buf.drain(..pos + 1).collect();
            text.extend_from_slice(&line);
            let literal = self
                .imap
                .then(|| literal_announced(&line))
                .flatten()
                .map(|(n, _)| n);
            match literal {
                Some(n) => {
                    while self.buf.len() < n {
                        match self.fill(until) {
                            Ok(true) => {}
                            Ok(false) => return Got::Quiet,
                            Err(reset) => return Got::Eof { reset },
                        }
                    }
                    text.extend(self.buf.drain(..n));
                }
                None => return Got::Line(String::from_utf8_lossy(&text).into_owned()),
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) -> bool {
        self.s.write_all(bytes).is_ok()
    }
}

/// `{n}` / `{n+}` / `~{n}` at the end of a line: (n, non-synchronising).
fn literal_announced(line: &[u8]) -> Option<(usize, bool)> {
    let body = line.strip_suffix(b"\n")?;
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let body = body.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let inner = &body[open + 1..];
    let (digits, plus) = match inner.strip_suffix(b"+") {
        Some(d) => (d, true),
        None => (inner, false),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits)
        .ok()?
        .parse()
        .ok()
        .map(|n| (n, plus))
}

/// Bytes still owed to a literal (IMAP) or a BDAT chunk (SMTP) at the end
/// of `bytes`, as a server that accepts every announcement would see it.
fn owed(bytes: &[u8], imap: bool) -> usize {
    let mut i = 0;
    while i < bytes.len() {
        let Some(nl) = bytes[i..].iter().position(|&b| b == b'\n') else {
            return 0;
        };
        let line = &bytes[i..i + nl + 1];
        i += nl + 1;
        let skip = if imap {
            literal_announced(line).map(|(n, _)| n)
        } else {
            bdat_announced(line)
        };
        if let Some(n) = skip {
            if i.saturating_add(n) > bytes.len() {
                return i + n - bytes.len();
            }
            i += n;
        }
    }
    0
}

fn bdat_announced(line: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(line).ok()?.trim();
    let mut words = text.split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("BDAT") {
        return None;
    }
    words.next()?.parse().ok()
}

/// Completes every literal (or chunk) the input leaves open, so the
/// sentinel that follows is read as a command (up to 1 MiB of filler: a
/// larger literal is over leadgate's limit and refused before it is read).
fn complete(mut bytes: Vec<u8>, imap: bool) -> Vec<u8> {
    for _ in 0..4 {
        let n = owed(&bytes, imap);
        if n == 0 || n > 1024 * 1024 {
            break;
        }
        bytes.extend(std::iter::repeat_n(b'x', n));
        bytes.extend_from_slice(b"\r\n");
    }
    bytes
}

/// How a case ended.
#[derive(Debug)]
enum End {
    /// The sentinel command after the input was answered.
    Alive,
    /// The server closed the connection by itself.
    Closed { reset: bool },
    /// The server waited for more input and closed once the client did.
    ClosedAfterClient,
}

/// Everything the server said, and how it ended.
struct Transcript {
    lines: Vec<String>,
    end: End,
}

impl Transcript {
    fn text(&self) -> String {
        let mut t = self.lines.join("");
        if t.len() > 2000 {
            let mut cut = 2000;
            while !t.is_char_boundary(cut) {
                cut -= 1;
            }
            t.truncate(cut);
            t.push_str("...");
        }
        t
    }
}

/// Sends the input, then the sentinel; reads until the sentinel's answer,
/// the server's close, or a quiet period (then closes the client side and
/// requires the server to close within `CLOSE_GRACE`).
fn exchange(
    w: &mut Wire,
    input: &[u8],
    sentinel: Option<&[u8]>,
    mut answered: impl FnMut(&str) -> bool,
) -> Result<Transcript, String> {
    let sent = w.send(input) && sentinel.is_none_or(|s| w.send(s));
    let mut lines = Vec::new();
    let mut quiet_until = Instant::now() + QUIET;
    loop {
        match w.line(quiet_until) {
            Got::Line(l) => {
                quiet_until = Instant::now() + QUIET;
                let done = sentinel.is_some() && answered(&l);
                lines.push(l);
                if done {
                    return Ok(Transcript {
                        lines,
                        end: End::Alive,
                    });
                }
            }
            Got::Eof { reset } => {
                return Ok(Transcript {
                    lines,
                    end: End::Closed {
                        reset: reset || !sent,
                    },
                })
            }
            Got::Quiet => break,
        }
    }
    // The server is waiting for more: go away and see that it notices.
    let _ = w.s.shutdown(Shutdown::Write);
    let until = Instant::now() + CLOSE_GRACE;
    loop {
        match w.line(until) {
            Got::Line(l) => lines.push(l),
            Got::Eof { .. } => {
                return Ok(Transcript {
                    lines,
                    end: End::ClosedAfterClient,
                })
            }
            Got::Quiet => {
                return Err(format!(
                    "server neither answered nor closed {}s after the client closed; said: {}",
                    CLOSE_GRACE.as_secs(),
                    lines.join("")
                ))
            }
        }
    }
}

// ----------------------------------------------------------------- IMAP

#[derive(Debug, Clone, Copy, PartialEq)]
enum Imap {
    Fresh,
    Authed,
    Selected,
}

#[derive(Debug, Clone)]
enum ImapWant {
    /// Any clear answer.
    Any,
    /// The case's tag `h` completes with one of these, and the text (if
    /// given) appears in the completion.
    Tagged(&'static [&'static str], &'static str),
    /// `* BYE` containing the text, then the server closes. With
    /// `reset_ok`, a reset connection also passes (the server closed with
    /// our unread input in its buffer, so the BYE may be lost in transit).
    Bye(&'static str, bool),
    /// The input stops inside a literal: the server must wait, and close
    /// when the client goes away.
    Unterminated,
    /// BAD, tagged `h` or untagged (when no tag could be read).
    Bad,
    /// Refused with a BAD or a BYE that says this (a line over the limit:
    /// one that arrives whole within a read gets BAD, a longer one BYE).
    Refused(&'static str),
}

struct ImapCase {
    name: String,
    state: Imap,
    input: Vec<u8>,
    want: ImapWant,
}

fn case(name: &str, state: Imap, input: impl AsRef<[u8]>, want: ImapWant) -> ImapCase {
    ImapCase {
        name: name.to_owned(),
        state,
        input: input.as_ref().to_vec(),
        want,
    }
}

fn imap_line_is_clear(l: &str) -> bool {
    if l.starts_with("* ") || l.starts_with('+') {
        return true;
    }
    let mut words = l.splitn(3, ' ');
    let tag = words.next().unwrap_or("");
    !tag.is_empty() && matches!(words.next(), Some("OK" | "NO" | "BAD"))
}

/// Inputs that hit the known LIST-pattern bug (see
/// `list_with_many_wildcards_does_not_stall_the_server`): LIST or LSUB with
/// eight or more wildcards. Only skipped with
/// `LEADGATE_HOSTILE_SKIP_KNOWN_BUGS=1`, to check everything else while
/// that bug is open.
fn stalls_list(input: &[u8]) -> bool {
    let text = String::from_utf8_lossy(input).to_ascii_uppercase();
    (text.contains("LIST") || text.contains("LSUB"))
        && input.iter().filter(|&&b| b == b'*' || b == b'%').count() >= 8
}

fn run_imap_case(addr: SocketAddr, ip: IpAddr, c: &ImapCase) -> Result<(), String> {
    let tcp = connect_from(addr, ip).map_err(|e| format!("connect: {e}"))?;
    let mut w = Wire::new(tcp, true);
    let greeting_by = Instant::now() + Duration::from_secs(20);
    match w.line(greeting_by) {
        Got::Line(l) if l.starts_with("* OK") => {}
        Got::Line(l) => return Err(format!("greeting: {l}")),
        _ => return Err("no greeting".into()),
    }
    let pre: &[&str] = match c.state {
        Imap::Fresh => &[],
        Imap::Authed => &["p1 LOGIN bob bob-password"],
        Imap::Selected => &["p1 LOGIN bob bob-password", "p2 SELECT INBOX"],
    };
    for cmd in pre {
        let tag = cmd.split(' ').next().unwrap();
        w.send(format!("{cmd}\r\n").as_bytes());
        loop {
            match w.line(Instant::now() + Duration::from_secs(20)) {
                Got::Line(l) if l.starts_with(&format!("{tag} OK")) => break,
                Got::Line(l) if l.starts_with(&format!("{tag} ")) => {
                    return Err(format!("{cmd}: {l}"))
                }
                Got::Line(_) => {}
                _ => return Err(format!("no answer to {cmd}")),
            }
        }
    }
    let (input, sentinel): (Vec<u8>, Option<&[u8]>) = match c.want {
        ImapWant::Unterminated => (c.input.clone(), None),
        _ => {
            let mut input = c.input.clone();
            input.extend_from_slice(b"\r\n");
            (complete(input, true), Some(b"ZZZ NOOP\r\n"))
        }
    };
    let t = exchange(&mut w, &input, sentinel, |l| l.starts_with("ZZZ "))?;
    if let Some(bad) = t.lines.iter().find(|l| !imap_line_is_clear(l)) {
        return Err(format!("unclear line {bad:?} in {}", t.text()));
    }
    let bye = t.lines.iter().any(|l| l.starts_with("* BYE"));
    if let End::Closed { reset } = t.end {
        if !bye && !reset {
            return Err(format!("closed without BYE: {}", t.text()));
        }
    }
    let tagged = t
        .lines
        .iter()
        .find(|l| l.starts_with("h "))
        .map(|l| l.trim_end().to_owned());
    match &c.want {
        ImapWant::Any => {}
        ImapWant::Tagged(statuses, text) => {
            let Some(line) = &tagged else {
                return Err(format!("no tagged answer: {}", t.text()));
            };
            let status = line.split(' ').nth(1).unwrap_or("");
            if !statuses.contains(&status) || !line.contains(text) {
                return Err(format!(
                    "wanted {statuses:?} with {text:?}, got {line:?} in {}",
                    t.text()
                ));
            }
        }
        ImapWant::Bye(text, reset_ok) => {
            let saw = t
                .lines
                .iter()
                .any(|l| l.starts_with("* BYE") && l.contains(text));
            let closed = matches!(t.end, End::Closed { .. });
            let reset = matches!(t.end, End::Closed { reset: true });
            if !closed || !(saw || (*reset_ok && reset)) {
                return Err(format!(
                    "wanted BYE {text:?} and a close, got {:?}: {}",
                    t.end,
                    t.text()
                ));
            }
        }
        ImapWant::Bad => {
            let bad = tagged.as_deref().is_some_and(|l| l.starts_with("h BAD"))
                || t.lines.iter().any(|l| l.starts_with("* BAD"));
            if !bad {
                return Err(format!("wanted BAD: {}", t.text()));
            }
        }
        ImapWant::Refused(text) => {
            let refused = t.lines.iter().any(|l| {
                (l.starts_with("* BYE") || l.starts_with("* BAD") || l.starts_with("h BAD"))
                    && l.contains(text)
            });
            let reset = matches!(t.end, End::Closed { reset: true });
            if !refused && !reset {
                return Err(format!("wanted a refusal {text:?}: {}", t.text()));
            }
        }
        ImapWant::Unterminated => {
            if !matches!(t.end, End::ClosedAfterClient) {
                return Err(format!(
                    "wanted the server to wait for the literal, got {:?}: {}",
                    t.end,
                    t.text()
                ));
            }
        }
    }
    Ok(())
}

fn imap_table() -> Vec<ImapCase> {
    use Imap::*;
    use ImapWant::*;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let mut v = vec![
        case("empty line", Fresh, "", Any),
        case("hundred empty lines", Fresh, "\r\n".repeat(100), Any),
        case("tag only", Fresh, "h", Bad),
        case("tag and space", Fresh, "h ", Tagged(&["BAD"], "")),
        case("unknown command", Fresh, "h FOOBAR", Tagged(&["BAD"], "")),
        case("star tag", Fresh, "* NOOP", Bad),
        case("plus tag", Fresh, "+ NOOP", Bad),
        case("NOOP with arguments", Fresh, "h NOOP extra args", Tagged(&["BAD"], "")),
        case("LOGIN without arguments", Fresh, "h LOGIN", Tagged(&["BAD"], "")),
        case("LOGIN without password", Fresh, "h LOGIN alice", Tagged(&["BAD"], "")),
        case("LOGIN unterminated quote", Fresh, "h LOGIN \"alice\" \"pass", Tagged(&["BAD"], "")),
        case("LOGIN wrong password", Fresh, "h LOGIN alice wrong-password", Tagged(&["NO"], "AUTHENTICATIONFAILED")),
        case("LOGIN unknown user", Fresh, "h LOGIN nobody whatever", Tagged(&["NO"], "")),
        case("LOGIN invalid UTF-8", Fresh, b"h LOGIN \xff\xfe \xc3\x28".as_slice(), Tagged(&["BAD", "NO"], "")),
        case("LOGIN quoted invalid UTF-8", Fresh, b"h LOGIN \"\xed\xa0\x80\" \"\xf8\x88\x80\x80\x80\"".as_slice(), Tagged(&["BAD", "NO"], "")),
        case("LOGIN NUL in quoted", Fresh, b"h LOGIN \"al\0ice\" \"x\"".as_slice(), Tagged(&["BAD", "NO"], "")),
        case("LOGIN with literals", Fresh, "h LOGIN {3}\r\nbob {12}\r\nbob-password", Tagged(&["OK"], "")),
        case("pre-auth literal over 32 KiB", Fresh, format!("h LOGIN {{33000}}\r\n{}", "x".repeat(33000)), Tagged(&["NO"], "TOOBIG")),
        case("pre-auth non-sync literal over 32 KiB", Fresh, "h LOGIN {33000+}\r\n", Bye("TOOBIG", true)),
        case("pre-auth unterminated literal", Fresh, "h LOGIN {100}\r\nonly a little", Unterminated),
        case("AUTHENTICATE bad base64", Fresh, "h AUTHENTICATE PLAIN\r\n!!!not-base64!!!", Tagged(&["BAD", "NO"], "")),
        case("AUTHENTICATE cancelled", Fresh, "h AUTHENTICATE PLAIN\r\n*", Tagged(&["BAD", "NO"], "")),
        case("AUTHENTICATE three NULs", Fresh, "h AUTHENTICATE PLAIN AAAA", Tagged(&["NO", "BAD"], "")),
        case("AUTHENTICATE empty", Fresh, "h AUTHENTICATE PLAIN =", Tagged(&["NO", "BAD"], "")),
        case("AUTHENTICATE long", Fresh, format!("h AUTHENTICATE PLAIN {}", b64(&format!("\0alice\0{}", "x".repeat(20_000)))), Tagged(&["NO", "BAD"], "")),
        case("AUTHENTICATE other user", Fresh, format!("h AUTHENTICATE PLAIN {}", b64("alice\0bob\0bob-password")), Tagged(&["NO", "BAD"], "")),
        case("AUTHENTICATE unknown mechanism", Fresh, "h AUTHENTICATE CRAM-MD5", Tagged(&["NO", "BAD"], "")),
        case("SELECT before login", Fresh, "h SELECT INBOX", Tagged(&["BAD", "NO"], "")),
        case("STARTTLS on a plaintext listener", Fresh, "h STARTTLS", Tagged(&["BAD", "NO"], "")),
        case("pipelined CAPABILITY flood", Fresh, "h CAPABILITY\r\n".repeat(1000), Tagged(&["OK"], "")),
        case("100k line", Fresh, format!("h NOOP {}", "A".repeat(100_000)), Refused("Line too long")),
        case("line one byte over the limit", Fresh, "A".repeat(MAX_LINE + 1), Refused("Line too long")),
        case("70k quoted string", Fresh, format!("h LOGIN \"{}\" x", "a".repeat(70_000)), Refused("Line too long")),
        case("NUL in a command", Fresh, b"h NO\0OP".as_slice(), Tagged(&["BAD"], "")),
        case("bare LF", Fresh, "h NOOP\n", Any),
        case("bare CR", Fresh, "h NOOP\rg NOOP", Any),
        case("duplicate ID fields", Fresh, format!("h ID ({})", "\"name\" \"x\" ".repeat(1000)), Tagged(&["OK", "BAD"], "")),
        case("deeply nested ID", Fresh, format!("h ID {}{}", "(".repeat(5000), ")".repeat(5000)), Tagged(&["BAD"], "")),
        case("TLS ClientHello", Fresh, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xaa\xbb".as_slice(), Any),
        case("HTTP request", Fresh, "GET / HTTP/1.1\r\nHost: leadgate\r\nUser-Agent: x\r\n", Any),
        case("SMTP on the IMAP port", Fresh, "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA", Any),
        case("random binary", Fresh, (0..=255u8).cycle().take(2000).collect::<Vec<u8>>(), Any),
        case("LOGOUT", Fresh, "h LOGOUT", Bye("", false)),
        // Logged in.
        case("SELECT without a name", Authed, "h SELECT", Tagged(&["BAD"], "")),
        case("SELECT invalid UTF-8", Authed, b"h SELECT \"\xff\xfe\"".as_slice(), Tagged(&["BAD", "NO"], "")),
        case("SELECT modified UTF-7", Authed, "h SELECT \"&Jjo-\"", Tagged(&["NO", "BAD"], "")),
        case("SELECT broken modified UTF-7", Authed, "h SELECT \"&Jjo\"", Tagged(&["NO", "BAD"], "")),
        case("SELECT path traversal", Authed, "h SELECT \"../../etc/passwd\"", Tagged(&["NO", "BAD"], "")),
        case("SELECT another user's private folder", Authed, "h SELECT \"leadgate-users/alice/Drafts\"", Tagged(&["NO", "BAD"], "")),
        case("SELECT the upstream prefix", Authed, "h SELECT \"leadgate-users\"", Tagged(&["NO", "BAD"], "")),
        case("CREATE path traversal", Authed, "h CREATE \"INBOX/../../x\"", Tagged(&["NO", "BAD", "OK"], "")),
        case("CREATE inside a lead folder", Authed, "h CREATE \"Leads/Mine/evil\"", Tagged(&["NO", "BAD"], "")),
        case("DELETE INBOX", Authed, "h DELETE INBOX", Tagged(&["NO", "BAD"], "")),
        case("DELETE a lead folder", Authed, "h DELETE \"Leads/Unassigned\"", Tagged(&["NO", "BAD"], "")),
        case("RENAME INBOX", Authed, "h RENAME INBOX Leads", Tagged(&["NO", "BAD"], "")),
        case("APPEND literal over the limit", Authed, "h APPEND Drafts {2000000}", Tagged(&["NO"], "TOOBIG")),
        case("APPEND non-sync literal over the limit", Authed, "h APPEND Drafts {2000000+}\r\nxxxx", Bye("TOOBIG", true)),
        case("APPEND 4 GiB literal", Authed, "h APPEND Drafts {4294967295}", Tagged(&["NO", "BAD"], "")),
        case("APPEND 20-digit literal", Authed, "h APPEND Drafts {99999999999999999999}", Any),
        case("APPEND unterminated literal", Authed, "h APPEND Drafts {100}\r\nFrom: a@b\r\n\r\nhalf", Unterminated),
        case("APPEND bad date", Authed, "h APPEND Drafts (\\Seen) \"31-Feb-2026 99:99:99 +9999\" {5}\r\nhello", Tagged(&["BAD", "NO"], "")),
        case("APPEND empty message", Authed, "h APPEND Drafts {0}\r\n", Tagged(&["BAD", "NO", "OK"], "")),
        case("APPEND literal8", Authed, b"h APPEND Drafts ~{5}\r\nhe\0lo".as_slice(), Tagged(&["BAD", "NO", "OK"], "")),
        case("APPEND to a lead folder", Authed, "h APPEND \"Leads/Unassigned\" {5}\r\nhello", Tagged(&["NO", "BAD"], "")),
        case("FETCH without a folder", Authed, "h FETCH 1 BODY[]", Tagged(&["BAD"], "")),
        case("LIST star explosion", Authed, format!("h LIST \"\" \"{}\"", "*%".repeat(1000)), Tagged(&["NO"], "[LIMIT]")),
        case("LIST backtracking pattern", Authed, format!("h LIST \"\" \"{}x\"", "*".repeat(60)), Tagged(&["NO"], "[LIMIT]")),
        case("STATUS with no items", Authed, "h STATUS INBOX ()", Tagged(&["OK", "BAD"], "")),
        case("STATUS every item of a view", Authed, "h STATUS \"Leads/Unassigned\" (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT)", Tagged(&["OK", "BAD"], "")),
        case("ENABLE unknown", Authed, "h ENABLE UTF8=ACCEPT QRESYNC X-UNKNOWN", Tagged(&["OK", "BAD"], "")),
        case("IDLE ended by garbage", Authed, "h IDLE\r\nNOT-DONE", Tagged(&["BAD"], "")),
        case("IDLE ended by DONE", Authed, "h IDLE\r\nDONE", Tagged(&["OK"], "")),
        case("nested LOGIN", Authed, "h LOGIN bob bob-password", Tagged(&["BAD"], "")),
        // A folder selected.
        case("FETCH sequence 0", Selected, "h FETCH 0 FLAGS", Tagged(&["BAD"], "")),
        case("FETCH huge sequence number", Selected, "h FETCH 4294967295 FLAGS", Tagged(&["BAD", "NO", "OK"], "")),
        case("FETCH overflowing sequence number", Selected, "h FETCH 4294967296 FLAGS", Tagged(&["BAD"], "")),
        case("FETCH whole range", Selected, "h FETCH 1:4294967295 (FLAGS)", Tagged(&["OK", "BAD", "NO"], "")),
        case("FETCH huge partial", Selected, "h FETCH *:1 (BODY.PEEK[]<4294967295.4294967295>)", Tagged(&["OK", "BAD"], "")),
        case("FETCH deep section", Selected, format!("h FETCH 1 (BODY.PEEK[{}1])", "1.".repeat(200)), Tagged(&["OK", "NO", "BAD"], "")),
        case("FETCH empty field list", Selected, "h FETCH 1 (BODY.PEEK[HEADER.FIELDS ()])", Tagged(&["BAD", "OK"], "")),
        case("FETCH many items", Selected, format!("h FETCH 1 ({}UID)", "FLAGS ".repeat(9000)), Tagged(&["NO"], "[LIMIT]")),
        case("UID FETCH long set", Selected, format!("h UID FETCH {} (FLAGS)", (1..9000).map(|i| i.to_string()).collect::<Vec<_>>().join(",")), Tagged(&["OK", "BAD"], "")),
        case("SEARCH deep NOT", Selected, format!("h SEARCH {}ALL", "NOT ".repeat(10_000)), Tagged(&["OK", "BAD", "NO"], "")),
        case("SEARCH deep parentheses", Selected, format!("h SEARCH {}ALL{}", "(".repeat(5000), ")".repeat(5000)), Tagged(&["OK", "BAD", "NO"], "")),
        case("SEARCH unknown charset", Selected, "h SEARCH CHARSET X-UNKNOWN TEXT foo", Tagged(&["NO", "BAD"], "")),
        case("SEARCH with a literal", Selected, "h SEARCH TEXT {5}\r\nquote", Tagged(&["OK", "NO"], "")),
        case("STORE on a read-only INBOX", Selected, "h STORE 1 +FLAGS (\\Deleted)", Tagged(&["NO"], "")),
        case("STORE thousands of keywords", Selected, format!("h STORE 1 +FLAGS ({})", (0..3000).map(|i| format!("$kw{i}")).collect::<Vec<_>>().join(" ")), Tagged(&["NO", "BAD"], "")),
        case("COPY to an unknown rep", Selected, "h COPY 1 \"Assign to/nobody\"", Tagged(&["NO", "BAD"], "")),
        case("COPY to an action folder with invalid UTF-8", Selected, b"h COPY 1 \"Assign to/\xff\"".as_slice(), Tagged(&["NO", "BAD"], "")),
        case("COPY to a folder name with CR LF", Selected, "h COPY 1 \"Set status/Won\r\nh2 NOOP\"", Any),
        case("MOVE out of a read-only INBOX", Selected, "h MOVE 1:* Trash", Tagged(&["NO"], "")),
        case("EXPUNGE a read-only INBOX", Selected, "h EXPUNGE", Tagged(&["NO"], "")),
        case("UID EXPUNGE a read-only INBOX", Selected, "h UID EXPUNGE 1:*", Tagged(&["NO"], "")),
        case("CLOSE then FETCH", Selected, "g CLOSE\r\nh FETCH 1 FLAGS", Tagged(&["BAD"], "")),
        case("SELECT flood", Selected, "h SELECT INBOX\r\n".repeat(200), Tagged(&["OK"], "")),
    ];
    // Invalid UTF-8 and control bytes in every argument position.
    for (i, junk) in [
        b"\xc3\x28".as_slice(),
        b"\xa0\xa1",
        b"\xe2\x28\xa1",
        b"\xf0\x28\x8c\xbc",
        b"\xed\xa0\x80",
        b"\xef\xbb\xbf",
        b"\x1b[31m",
        b"\x7f\x08",
    ]
    .iter()
    .enumerate()
    {
        let with = |pre: &str, post: &str| {
            let mut b = pre.as_bytes().to_vec();
            b.extend_from_slice(junk);
            b.extend_from_slice(post.as_bytes());
            b
        };
        v.push(case(
            &format!("junk {i} in a quoted folder"),
            Selected,
            with("h SELECT \"", "\""),
            Any,
        ));
        v.push(case(
            &format!("junk {i} in SEARCH"),
            Selected,
            with("h SEARCH SUBJECT \"", "\""),
            Any,
        ));
        v.push(case(
            &format!("junk {i} in a flag"),
            Selected,
            with("h STORE 1 +FLAGS ($", ")"),
            Any,
        ));
        v.push(case(
            &format!("junk {i} in a tag"),
            Fresh,
            with("h", " NOOP"),
            Any,
        ));
    }
    v
}

/// Valid commands the mutations start from, with the state they need.
const IMAP_SEEDS: &[(Imap, &str)] = &[
    (Imap::Fresh, "a1 CAPABILITY"),
    (Imap::Fresh, "a2 LOGIN alice alice-password"),
    (
        Imap::Fresh,
        "a3 AUTHENTICATE PLAIN AGFsaWNlAGFsaWNlLXBhc3N3b3Jk",
    ),
    (
        Imap::Fresh,
        "a4 ID (\"name\" \"Thunderbird\" \"version\" \"115.0\")",
    ),
    (Imap::Fresh, "a5 LOGIN {5}\r\nalice {14}\r\nalice-password"),
    (Imap::Authed, "b1 SELECT INBOX"),
    (Imap::Authed, "b2 EXAMINE \"Leads/Unassigned\""),
    (Imap::Authed, "b3 LIST \"\" \"*\""),
    (
        Imap::Authed,
        "b4 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)",
    ),
    (
        Imap::Authed,
        "b5 APPEND Drafts (\\Seen) {11}\r\nhello world",
    ),
    (Imap::Authed, "b6 APPEND Drafts {5+}\r\nhello"),
    (Imap::Authed, "b7 CREATE \"Projects/2026\""),
    (Imap::Authed, "b8 LSUB \"\" \"%\""),
    (Imap::Authed, "b9 NAMESPACE"),
    (Imap::Authed, "b10 ENABLE CONDSTORE"),
    (Imap::Authed, "b11 SELECT \"Review/New and unassigned\""),
    (
        Imap::Selected,
        "c1 FETCH 1:* (FLAGS ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])",
    ),
    (
        Imap::Selected,
        "c2 UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[]<0.200>)",
    ),
    (
        Imap::Selected,
        "c3 SEARCH OR FROM dana SUBJECT quote SINCE 1-Jan-2020",
    ),
    (Imap::Selected, "c4 UID SEARCH UID 1:5 NOT DELETED"),
    (Imap::Selected, "c5 STORE 1 +FLAGS (\\Flagged)"),
    (Imap::Selected, "c6 UID COPY 1 \"Assign to/bob\""),
    (
        Imap::Selected,
        "c7 UID MOVE 2 \"Set status/Waiting for reply\"",
    ),
    (
        Imap::Selected,
        "c8 FETCH 1 (BODYSTRUCTURE BODY.PEEK[1]<0.10>)",
    ),
    (Imap::Selected, "c9 IDLE\r\nDONE"),
    (Imap::Selected, "c10 SEARCH TEXT {5}\r\nquote"),
    (Imap::Selected, "c11 UID FETCH 1,2,3 (FLAGS INTERNALDATE)"),
    (Imap::Selected, "c12 COPY 1:2 Trash"),
    (
        Imap::Selected,
        "c13 SEARCH CHARSET UTF-8 SUBJECT \"caf\u{e9}\"",
    ),
    (
        Imap::Selected,
        "c14 FETCH 1 (BODY.PEEK[HEADER] RFC822.SIZE X-GM-LABELS)",
    ),
];

const INTERESTING: &[u8] = b"\0\r\n{}\"\\()*%[]<>\xff\xc3 +~0123456789-:.,$";
const NUMBERS: &[&str] = &[
    "0",
    "4294967295",
    "4294967296",
    "18446744073709551616",
    "99999999999999999999999",
    "-1",
    "1.5",
    "007",
    "*",
];
const BAD_UTF8: &[&[u8]] = &[
    b"\xc3\x28",
    b"\xe2\x82",
    b"\xf0\x9f\x92",
    b"\xff",
    b"\xed\xb2\x80",
    b"\xc0\xaf",
];

/// One to three random edits of `seed` (bounded growth: at most ~60 KB).
fn mutate(rng: &mut XorShift, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        let len = b.len();
        let at = rng.below(len as u64 + 1) as usize;
        match rng.below(12) {
            0 if len > 0 => {
                let i = rng.below(len as u64) as usize;
                b[i] = rng.next_u64() as u8;
            }
            1 => {
                let n = 1 + rng.below(8) as usize;
                let ins: Vec<u8> = (0..n)
                    .map(|_| INTERESTING[rng.below(INTERESTING.len() as u64) as usize])
                    .collect();
                b.splice(at..at, ins);
            }
            2 => {
                let end = (at + 1 + rng.below(8) as usize).min(len);
                b.drain(at.min(end)..end);
            }
            3 if len > 0 => {
                let from = rng.below(len as u64) as usize;
                let to = (from + 1 + rng.below(16) as usize).min(len);
                let piece = b[from..to].to_vec();
                let times = 1 + rng.below(50) as usize;
                let ins: Vec<u8> = piece.repeat(times).into_iter().take(40_000).collect();
                b.splice(to..to, ins);
            }
            4 => b.truncate(at),
            5 => {
                // Replace a run of digits with an awkward number.
                if let Some(start) = b.iter().skip(at).position(u8::is_ascii_digit) {
                    let start = at + start;
                    let end = b[start..]
                        .iter()
                        .position(|c| !c.is_ascii_digit())
                        .map_or(b.len(), |e| start + e);
                    let n = NUMBERS[rng.below(NUMBERS.len() as u64) as usize];
                    b.splice(start..end, n.bytes());
                }
            }
            6 => {
                b.splice(at..at, b"\r\n".iter().copied());
            }
            7 => {
                // Change a literal's announced size or kind.
                if let Some(open) = b.iter().position(|&c| c == b'{') {
                    if let Some(close) = b[open..].iter().position(|&c| c == b'}') {
                        let close = open + close;
                        let old: usize = std::str::from_utf8(&b[open + 1..close])
                            .ok()
                            .and_then(|t| t.trim_end_matches('+').parse().ok())
                            .unwrap_or(5);
                        let new = match rng.below(8) {
                            0 => "0".to_owned(),
                            1 => (old + 1).to_string(),
                            2 => old.saturating_sub(1).to_string(),
                            3 => (old * 1000).to_string(),
                            4 => "1048577".to_owned(),
                            5 => "4294967295".to_owned(),
                            6 => format!("{old}+"),
                            _ => format!("{}", old * 3),
                        };
                        b.splice(open + 1..close, new.bytes());
                    }
                }
            }
            8 => {
                let junk = BAD_UTF8[rng.below(BAD_UTF8.len() as u64) as usize];
                b.splice(at..at, junk.iter().copied());
            }
            9 => {
                let n = 1 + rng.below(2000) as usize;
                let open = if rng.below(2) == 0 { b'(' } else { b'[' };
                b.splice(at..at, std::iter::repeat_n(open, n));
            }
            10 if len > 1 => {
                let i = rng.below(len as u64 - 1) as usize;
                b.swap(i, i + 1);
                b[i] = b[i].to_ascii_lowercase();
            }
            _ => {
                let n = 1000 + rng.below(20_000) as usize;
                b.splice(at..at, std::iter::repeat_n(b'A', n));
            }
        }
    }
    b
}

/// One IMAP session next to the hostile ones, checked between batches.
struct Canary {
    c: Client,
    checks: usize,
}

impl Canary {
    /// Maria with INBOX selected, once leadgate has indexed its mail.
    fn imap(s: &Setup) -> Canary {
        let mut c = s.gateway.login(MARIA.0, MARIA.1);
        assert!(
            eventually(Duration::from_secs(20), || !c
                .run("SELECT INBOX")
                .text
                .contains("* 0 EXISTS")),
            "INBOX stays empty"
        );
        Canary { c, checks: 0 }
    }

    /// NOOP and a FETCH on the canary session; an error if either is not
    /// answered OK (the client's reads time out after 30 s).
    fn try_check(&mut self) -> Result<(), String> {
        for cmd in ["NOOP", "FETCH 1 (FLAGS)"] {
            let tag = self.c.next_tag();
            self.c.send_raw(format!("{tag} {cmd}\r\n").as_bytes());
            loop {
                match self.c.read_line_with_literals() {
                    Ok((l, _)) if l.starts_with(&format!("{tag} OK")) => break,
                    Ok((l, _)) if l.starts_with(&format!("{tag} ")) => {
                        return Err(format!("{cmd}: {l}"))
                    }
                    Ok(_) => {}
                    Err(e) => return Err(format!("{cmd}: no answer ({e})")),
                }
            }
        }
        self.checks += 1;
        Ok(())
    }

    fn check(&mut self) {
        if let Err(e) = self.try_check() {
            panic!("the concurrent session stopped working: {e}");
        }
    }
}

/// Sends `bytes` one at a time, ~50 ms apart.
fn drip(s: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    for b in bytes {
        s.write_all(std::slice::from_ref(b))?;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A client that sends its commands a byte at a time must be served in
/// full; one that drips and never finishes its line before login is
/// dropped at the auth timeout. Neither holds up anyone else.
fn imap_slow_clients(addr: SocketAddr) -> Result<(), String> {
    let tcp = connect_from(addr, loopback_ip(9, 1)).map_err(|e| e.to_string())?;
    let mut w = Wire::new(tcp.try_clone().unwrap(), true);
    let mut writer = tcp;
    let until = Instant::now() + Duration::from_secs(20);
    if !matches!(w.line(until), Got::Line(l) if l.starts_with("* OK")) {
        return Err("drip: no greeting".into());
    }
    let script =
        b"d1 LOGIN bob bob-password\r\nd2 SELECT INBOX\r\nd3 FETCH 1:* (FLAGS)\r\nd4 LOGOUT\r\n";
    drip(&mut writer, script).map_err(|e| format!("drip write: {e}"))?;
    let mut seen = Vec::new();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        match w.line(until) {
            Got::Line(l) => {
                let done = l.starts_with("d4 ");
                seen.push(l);
                if done {
                    break;
                }
            }
            _ => return Err(format!("drip: no end: {seen:?}")),
        }
    }
    for tag in ["d1", "d2", "d3", "d4"] {
        if !seen.iter().any(|l| l.starts_with(&format!("{tag} OK"))) {
            return Err(format!("drip: {tag} not OK: {seen:?}"));
        }
    }

    // Slow-loris before login: a few bytes, then nothing.
    let tcp = connect_from(addr, loopback_ip(9, 2)).map_err(|e| e.to_string())?;
    let mut w = Wire::new(tcp.try_clone().unwrap(), true);
    let mut writer = tcp;
    let _ = w.line(Instant::now() + Duration::from_secs(20));
    drip(&mut writer, b"s1 LOGIN b").map_err(|e| format!("loris write: {e}"))?;
    let until = Instant::now() + Duration::from_secs(60);
    let mut said = Vec::new();
    loop {
        match w.line(until) {
            Got::Line(l) => said.push(l),
            Got::Eof { .. } => break,
            Got::Quiet => return Err(format!("slow loris was not dropped: {said:?}")),
        }
    }
    if !said.iter().any(|l| l.starts_with("* BYE")) {
        return Err(format!("slow loris dropped without BYE: {said:?}"));
    }
    Ok(())
}

fn assert_no_panic(s: &Setup) {
    let log = s.gateway.log();
    assert!(
        !log.contains("panicked"),
        "leadgate panicked:\n{}",
        log.lines()
            .filter(|l| l.contains("panicked"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn imap_malformed_and_hostile_input_gets_bad_no_or_bye_and_the_server_stays_up() {
    let mut s = setup();
    let addr = s.gateway.addr("plaintext");
    let mut rng = seed_rng();
    let slow = std::thread::spawn(move || imap_slow_clients(addr));
    let mut canary = Canary::imap(&s);

    let mut cases = imap_table();
    let table_len = cases.len();
    for i in 0..mutation_count(600) {
        let (state, seed) = IMAP_SEEDS[rng.below(IMAP_SEEDS.len() as u64) as usize];
        cases.push(ImapCase {
            name: format!("mutation {i} of {seed:?}"),
            state,
            input: mutate(&mut rng, seed.as_bytes()),
            want: ImapWant::Any,
        });
    }
    let before = cases.len();
    if std::env::var("LEADGATE_HOSTILE_SKIP_KNOWN_BUGS").is_ok_and(|v| v == "1") {
        cases.retain(|c| !stalls_list(&c.input));
    }
    let skipped = before - cases.len();
    let trace = std::env::var("LEADGATE_HOSTILE_TRACE").is_ok();
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let started = Instant::now();
        let result = run_imap_case(addr, loopback_ip(1, i as u32), c);
        if trace {
            eprintln!(
                "case {i} {:?} {:?}: {:.1?}",
                c.name,
                c.state,
                started.elapsed()
            );
        }
        let failed = result.is_err();
        if let Err(why) = result {
            failures.push(format!(
                "{} ({:?}, input {:?}): {why}",
                c.name,
                c.state,
                String::from_utf8_lossy(&c.input[..c.input.len().min(200)])
            ));
        }
        // Between batches, and right after a failure (to stop early when
        // the server no longer serves anyone).
        if failed || i % 25 == 24 || i + 1 == cases.len() {
            let first = i - i % 25;
            let batch: Vec<String> = cases[first..=i]
                .iter()
                .map(|c| {
                    format!(
                        "{} ({:?}): {:?}",
                        c.name,
                        c.state,
                        String::from_utf8_lossy(&c.input[..c.input.len().min(120)])
                    )
                })
                .collect();
            assert!(
                s.gateway.is_running(),
                "leadgate died during cases {first}..={i}:\n{}",
                batch.join("\n")
            );
            if let Err(e) = canary.try_check() {
                panic!(
                    "leadgate stopped serving a concurrent session ({e}) during cases {first}..={i}:\n{}\nfailures so far:\n{}",
                    batch.join("\n"),
                    failures.join("\n")
                );
            }
        }
    }
    eprintln!(
        "{} IMAP inputs ({table_len} hand-written, {skipped} known-bug inputs skipped), {} canary checks",
        cases.len(),
        canary.checks
    );

    // The per-IP limit holds: 20 connections from one address, not 21.
    let ip = loopback_ip(8, 1);
    let mut held = Vec::new();
    for _ in 0..20 {
        let c = Client::over_tcp(connect_from(addr, ip).unwrap());
        assert!(c.greeting.starts_with("* OK"), "{}", c.greeting);
        held.push(c);
    }
    let extra = Client::over_tcp(connect_from(addr, ip).unwrap());
    assert!(
        extra.greeting.starts_with("* BYE") && extra.greeting.contains("Too many connections"),
        "{}",
        extra.greeting
    );
    drop(held);

    match slow.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failures.push(format!("slow clients: {e}")),
        Err(_) => failures.push("slow clients: thread panicked".into()),
    }
    canary.check();
    assert!(s.gateway.is_running(), "leadgate is not running");
    assert!(s.gateway.login(BOB.0, BOB.1).run("SELECT INBOX").ok());
    assert_no_panic(&s);
    assert!(
        failures.is_empty(),
        "{} of {} IMAP inputs were not handled cleanly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ----------------------------------------------------------------- SMTP

#[derive(Debug, Clone, Copy, PartialEq)]
enum Smtp {
    Fresh,
    Greeted,
    Authed,
    /// MAIL and RCPT given.
    InTransaction,
}

#[derive(Debug, Clone)]
enum SmtpWant {
    Any,
    /// These reply codes appear (in order, among others).
    Codes(&'static [u16]),
    /// One of these codes appears.
    OneOf(&'static [u16]),
    /// 421, then the server closes.
    Closes421,
    /// The input stops inside a message or chunk: the server waits, and
    /// closes when the client goes away.
    Unterminated,
    /// Exactly `n` replies with this code (e.g. a single 354: no command
    /// smuggled out of the message data).
    Count(u16, usize),
}

struct SmtpCase {
    name: String,
    state: Smtp,
    input: Vec<u8>,
    want: SmtpWant,
}

fn scase(name: &str, state: Smtp, input: impl AsRef<[u8]>, want: SmtpWant) -> SmtpCase {
    SmtpCase {
        name: name.to_owned(),
        state,
        input: input.as_ref().to_vec(),
        want,
    }
}

fn smtp_line_is_clear(l: &str) -> bool {
    let b = l.as_bytes();
    b.len() >= 4
        && (b'2'..=b'5').contains(&b[0])
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && (b[3] == b' ' || b[3] == b'-')
        && l.ends_with("\r\n")
}

fn codes(lines: &[String]) -> Vec<u16> {
    lines
        .iter()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .filter_map(|l| l.get(..3).and_then(|c| c.parse().ok()))
        .collect()
}

fn run_smtp_case(addr: SocketAddr, ip: IpAddr, n: usize, c: &SmtpCase) -> Result<(), String> {
    let tcp = connect_from(addr, ip).map_err(|e| format!("connect: {e}"))?;
    let mut w = Wire::new(tcp, false);
    let until = Instant::now() + Duration::from_secs(20);
    match w.line(until) {
        Got::Line(l) if l.starts_with("220 ") => {}
        Got::Line(l) => return Err(format!("greeting: {l}")),
        _ => return Err("no greeting".into()),
    }
    let token = base64::engine::general_purpose::STANDARD.encode(b"\0bob\0bob-password");
    let auth = format!("AUTH PLAIN {token}");
    let pre: Vec<(&str, u16)> = match c.state {
        Smtp::Fresh => vec![],
        Smtp::Greeted => vec![("EHLO hostile.test", 250)],
        Smtp::Authed => vec![("EHLO hostile.test", 250), (auth.as_str(), 235)],
        Smtp::InTransaction => vec![
            ("EHLO hostile.test", 250),
            (auth.as_str(), 235),
            ("MAIL FROM:<bob@example.com>", 250),
            ("RCPT TO:<customer@customer.test>", 250),
        ],
    };
    for (cmd, want) in pre {
        w.send(format!("{cmd}\r\n").as_bytes());
        loop {
            match w.line(Instant::now() + Duration::from_secs(20)) {
                Got::Line(l) if l.as_bytes().get(3) == Some(&b'-') => {}
                Got::Line(l) if l.starts_with(&want.to_string()) => break,
                Got::Line(l) => return Err(format!("{cmd}: {l}")),
                _ => return Err(format!("no answer to {cmd}")),
            }
        }
    }
    let sentinel_host = format!("zz{n}.sentinel");
    let sentinel = format!("\r\n.\r\nEHLO {sentinel_host}\r\n");
    let (input, sentinel) = match c.want {
        SmtpWant::Unterminated => (c.input.clone(), None),
        _ => {
            let mut input = c.input.clone();
            input.extend_from_slice(b"\r\n");
            (complete(input, false), Some(sentinel.as_bytes()))
        }
    };
    // The sentinel's EHLO answer ends with its last line ("250 ...").
    let mut in_sentinel = false;
    let t = exchange(&mut w, &input, sentinel, |l| {
        if l.contains(&sentinel_host) {
            in_sentinel = true;
        }
        in_sentinel && l.starts_with("250 ")
    })?;
    if let Some(bad) = t.lines.iter().find(|l| !smtp_line_is_clear(l)) {
        return Err(format!("unclear reply line {bad:?} in {}", t.text()));
    }
    let got = codes(&t.lines);
    if let End::Closed { reset } = t.end {
        if !got.iter().any(|&c| c == 421 || c == 221) && !reset {
            return Err(format!("closed without 421/221: {}", t.text()));
        }
    }
    match &c.want {
        SmtpWant::Any => {}
        SmtpWant::Codes(want) => {
            let mut it = got.iter();
            for code in *want {
                if !it.any(|c| c == code) {
                    return Err(format!(
                        "wanted codes {want:?} in order, got {got:?}: {}",
                        t.text()
                    ));
                }
            }
        }
        SmtpWant::OneOf(want) => {
            if !got.iter().any(|c| want.contains(c)) {
                return Err(format!("wanted one of {want:?}, got {got:?}: {}", t.text()));
            }
        }
        SmtpWant::Closes421 => {
            if !got.contains(&421) || !matches!(t.end, End::Closed { .. }) {
                return Err(format!(
                    "wanted 421 and a close, got {got:?} {:?}: {}",
                    t.end,
                    t.text()
                ));
            }
        }
        SmtpWant::Unterminated => {
            if !matches!(t.end, End::ClosedAfterClient) {
                return Err(format!(
                    "wanted the server to wait, got {:?}: {}",
                    t.end,
                    t.text()
                ));
            }
        }
        SmtpWant::Count(code, n) => {
            let k = got.iter().filter(|c| *c == code).count();
            if k != *n {
                return Err(format!("wanted {n} x {code}, got {got:?}: {}", t.text()));
            }
        }
    }
    Ok(())
}

fn smtp_table() -> Vec<SmtpCase> {
    use Smtp::*;
    use SmtpWant::*;
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let msg =
        "Subject: hostile\r\nFrom: bob@example.com\r\nTo: customer@customer.test\r\n\r\nhello\r\n";
    vec![
        scase("empty line", Fresh, "", Codes(&[500])),
        scase("unknown command", Fresh, "FOO bar", Codes(&[500])),
        scase("MAIL before EHLO", Fresh, "MAIL FROM:<bob@example.com>", Codes(&[503])),
        scase("DATA before EHLO", Fresh, "DATA", Codes(&[503])),
        scase("EHLO without a name", Fresh, "EHLO", OneOf(&[501, 500])),
        scase("EHLO 5000 bytes", Fresh, format!("EHLO {}", "a".repeat(5000)), Codes(&[500])),
        scase("100k line", Fresh, "A".repeat(100_000), OneOf(&[500, 421])),
        scase("100k line then a command", Fresh, format!("{}\r\nNOOP", "B".repeat(100_000)), OneOf(&[500, 421])),
        scase("NUL bytes", Fresh, b"\0\0\0NOOP\0".as_slice(), Any),
        scase("invalid UTF-8 EHLO", Fresh, b"EHLO \xff\xfe\xc3\x28".as_slice(), OneOf(&[250, 501, 500])),
        scase("HTTP request", Fresh, "GET / HTTP/1.1\r\nHost: leadgate", Codes(&[500])),
        scase("IMAP on the SMTP port", Fresh, "a1 LOGIN alice alice-password\r\na2 SELECT INBOX", Codes(&[500])),
        scase("TLS ClientHello", Fresh, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".as_slice(), Any),
        scase("random binary", Fresh, (0..=255u8).cycle().take(3000).collect::<Vec<u8>>(), Any),
        scase("too many errors", Fresh, "BOGUS\r\n".repeat(30), Closes421),
        scase("NOOP flood", Fresh, "NOOP\r\n".repeat(500), Codes(&[250])),
        scase("RSET flood", Greeted, "RSET\r\n".repeat(500), Codes(&[250])),
        scase("AUTH bad base64", Greeted, "AUTH PLAIN\r\n!!!not-base64!!!", Codes(&[334, 501])),
        scase("AUTH cancelled", Greeted, "AUTH PLAIN\r\n*", Codes(&[334, 501])),
        scase("AUTH wrong password", Greeted, format!("AUTH PLAIN {}", b64(b"\0alice\0wrong")), Codes(&[535])),
        scase("AUTH LOGIN wrong password", Greeted, format!("AUTH LOGIN\r\n{}\r\n{}", b64(b"alice"), b64(b"wrong")), Codes(&[334, 334, 535])),
        scase("AUTH unknown mechanism", Greeted, "AUTH CRAM-MD5", Codes(&[504])),
        scase("AUTH as someone else", Greeted, format!("AUTH PLAIN {}", b64(b"alice\0bob\0bob-password")), Codes(&[535])),
        scase("AUTH empty", Greeted, "AUTH PLAIN =", OneOf(&[501, 535])),
        scase("AUTH 20k", Greeted, format!("AUTH PLAIN {}", b64(&[b'x'; 20_000])), OneOf(&[500, 501, 535])),
        scase("three failed AUTHs close the session", Greeted, format!("AUTH PLAIN {t}\r\nAUTH PLAIN {t}\r\nAUTH PLAIN {t}", t = b64(b"\0nobody\0x")), Closes421),
        scase("MAIL without AUTH", Greeted, "MAIL FROM:<bob@example.com>", Codes(&[530])),
        scase("STARTTLS on a plaintext listener", Greeted, "STARTTLS", OneOf(&[502, 454])),
        scase("VRFY EXPN HELP", Greeted, "VRFY root\r\nEXPN all\r\nHELP", Codes(&[252, 502, 214])),
        scase("AUTH twice", Authed, format!("AUTH PLAIN {}", b64(b"\0bob\0bob-password")), Codes(&[503])),
        scase("spoofed sender", Authed, "MAIL FROM:<ceo@example.com>", Codes(&[553])),
        scase("huge SIZE", Authed, "MAIL FROM:<bob@example.com> SIZE=999999999999", OneOf(&[552, 501])),
        scase("SMTPUTF8", Authed, "MAIL FROM:<bob@example.com> SMTPUTF8", OneOf(&[555, 501])),
        scase("BINARYMIME", Authed, "MAIL FROM:<bob@example.com> BODY=BINARYMIME", OneOf(&[555, 501])),
        scase("unknown MAIL parameter", Authed, "MAIL FROM:<bob@example.com> FOO=BAR", OneOf(&[555, 501])),
        scase("MAIL twice", Authed, "MAIL FROM:<bob@example.com>\r\nMAIL FROM:<bob@example.com>", Codes(&[250, 503])),
        scase("RCPT without MAIL", Authed, "RCPT TO:<customer@customer.test>", Codes(&[503])),
        scase("DATA without RCPT", Authed, "MAIL FROM:<bob@example.com>\r\nDATA", Codes(&[250, 503])),
        scase("null recipient", Authed, "MAIL FROM:<bob@example.com>\r\nRCPT TO:<>", Codes(&[250, 501])),
        scase("recipient with CR LF", Authed, "MAIL FROM:<bob@example.com>\r\nRCPT TO:<a@b\r\nBcc: x@y>", OneOf(&[501, 500])),
        scase("RCPT NOTIFY", Authed, "MAIL FROM:<bob@example.com>\r\nRCPT TO:<a@customer.test> NOTIFY=NEVER", OneOf(&[555, 501])),
        scase("101 recipients", Authed, format!("MAIL FROM:<bob@example.com>\r\n{}", (0..101).map(|i| format!("RCPT TO:<r{i}@customer.test>\r\n")).collect::<String>()), Codes(&[250, 452])),
        scase("message over the size limit", InTransaction, format!("DATA\r\n{msg}{}.", format!("{}\r\n", "y".repeat(78)).repeat(15_000)), Codes(&[354, 552])),
        scase("BDAT over the size limit", InTransaction, format!("BDAT 2000000 LAST\r\n{}", "z".repeat(2_000_000)), Codes(&[552])),
        scase("BDAT 20-digit size", InTransaction, "BDAT 99999999999999999999 LAST", OneOf(&[501, 552, 500])),
        scase("BDAT unterminated", InTransaction, "BDAT 100 LAST\r\nonly a little", Unterminated),
        scase("DATA unterminated", InTransaction, format!("DATA\r\n{msg}no end of data"), Unterminated),
        scase("DATA then BDAT", InTransaction, "BDAT 5\r\nhelloDATA", Codes(&[250, 503])),
        scase("bare LF dot does not end DATA", InTransaction, format!("DATA\r\n{msg}smuggle\n.\r\nMAIL FROM:<bob@example.com>\r\nRCPT TO:<customer@customer.test>\r\nDATA\r\nsmuggled\r\n"), Count(354, 1)),
        scase("LF dot LF does not end DATA", InTransaction, format!("DATA\r\n{msg}smuggle\n.\nMAIL FROM:<bob@example.com>\r\nRCPT TO:<customer@customer.test>\r\nDATA\r\nsmuggled\r\n"), Count(354, 1)),
        scase("CR dot CR does not end DATA", InTransaction, format!("DATA\r\n{msg}smuggle\r.\rMAIL FROM:<bob@example.com>\r\nRCPT TO:<customer@customer.test>\r\nDATA\r\nsmuggled\r\n"), Count(354, 1)),
        scase("header injection in DATA", InTransaction, "DATA\r\nSubject: =?utf-8?q?hi=0D=0ABcc:_evil@evil.test?=\r\nX-Lead-Owner: mallory\r\nX-Lead-Id: 999999\r\n\r\nbody\r\n.", Codes(&[354])),
        scase("NUL in DATA", InTransaction, b"DATA\r\nSubject: nul\r\n\r\nbo\0dy\r\n.".as_slice(), Codes(&[354])),
        scase("long body line", InTransaction, format!("DATA\r\nSubject: long\r\n\r\n{}\r\n.", "w".repeat(200_000)), Codes(&[354])),
        scase("pipelined transaction", Authed, format!("MAIL FROM:<bob@example.com>\r\nRCPT TO:<customer@customer.test>\r\nDATA\r\n{msg}.\r\nQUIT"), Codes(&[250, 250, 354, 221])),
        scase("QUIT", Fresh, "QUIT", Codes(&[221])),
    ]
}

const SMTP_SEEDS: &[(Smtp, &str)] = &[
    (Smtp::Fresh, "EHLO client.example.com"),
    (Smtp::Fresh, "HELO client.example.com"),
    (Smtp::Greeted, "AUTH PLAIN AGFsaWNlAGFsaWNlLXBhc3N3b3Jk"),
    (Smtp::Greeted, "AUTH LOGIN\r\nYWxpY2U=\r\nYWxpY2UtcGFzc3dvcmQ="),
    (Smtp::Authed, "MAIL FROM:<bob@example.com> SIZE=100 BODY=8BITMIME"),
    (Smtp::Authed, "MAIL FROM:<bob@example.com>\r\nRCPT TO:<customer@customer.test>\r\nRCPT TO:<other@customer.test>"),
    (Smtp::InTransaction, "DATA\r\nSubject: hi\r\nFrom: <bob@example.com>\r\n\r\nbody line\r\n.."),
    (Smtp::InTransaction, "BDAT 5 LAST\r\nhello"),
    (Smtp::InTransaction, "BDAT 3\r\nabcBDAT 0 LAST"),
    (Smtp::Greeted, "RSET\r\nNOOP\r\nVRFY bob\r\nHELP"),
    (Smtp::Fresh, "QUIT"),
    (Smtp::Greeted, "STARTTLS"),
];

/// The SMTP canary: an authenticated session kept open next to the
/// hostile ones.
fn smtp_canary_check(c: &mut SmtpClient) {
    let r = c.command("RSET").expect("canary RSET");
    assert_eq!(r.code, 250, "{}", r.text);
    let r = c.command("NOOP").expect("canary NOOP");
    assert_eq!(r.code, 250, "{}", r.text);
}

fn smtp_slow_client(addr: SocketAddr) -> Result<(), String> {
    let tcp = connect_from(addr, loopback_ip(9, 3)).map_err(|e| e.to_string())?;
    let mut w = Wire::new(tcp.try_clone().unwrap(), false);
    let mut writer = tcp;
    if !matches!(w.line(Instant::now() + Duration::from_secs(20)), Got::Line(l) if l.starts_with("220"))
    {
        return Err("drip: no greeting".into());
    }
    let token = base64::engine::general_purpose::STANDARD.encode(b"\0bob\0bob-password");
    let script = format!("EHLO drip.test\r\nAUTH PLAIN {token}\r\nNOOP\r\nQUIT\r\n");
    drip(&mut writer, script.as_bytes()).map_err(|e| format!("drip write: {e}"))?;
    let mut lines = Vec::new();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        match w.line(until) {
            Got::Line(l) => {
                let done = l.starts_with("221");
                lines.push(l);
                if done {
                    break;
                }
            }
            _ => return Err(format!("drip: no 221: {lines:?}")),
        }
    }
    if codes(&lines) != [250, 235, 250, 221] {
        return Err(format!("drip: {lines:?}"));
    }
    Ok(())
}

#[test]
fn smtp_malformed_and_hostile_input_gets_4xx_5xx_or_421_and_the_server_stays_up() {
    let mut s = setup();
    let addr = s.gateway.addr("smtp-plaintext");
    let mut rng = seed_rng();
    let slow = std::thread::spawn(move || smtp_slow_client(addr));
    let mut canary = SmtpClient::login(addr, MARIA.0, MARIA.1).expect("canary login");
    let mut imap = Canary::imap(&s);

    let mut cases = smtp_table();
    let table_len = cases.len();
    for i in 0..mutation_count(500) {
        let (state, seed) = SMTP_SEEDS[rng.below(SMTP_SEEDS.len() as u64) as usize];
        cases.push(SmtpCase {
            name: format!("mutation {i} of {seed:?}"),
            state,
            input: mutate(&mut rng, seed.as_bytes()),
            want: SmtpWant::Any,
        });
    }
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        if let Err(why) = run_smtp_case(addr, loopback_ip(2, i as u32), i, c) {
            failures.push(format!(
                "{} ({:?}, input {:?}): {why}",
                c.name,
                c.state,
                String::from_utf8_lossy(&c.input[..c.input.len().min(200)])
            ));
        }
        if i % 25 == 24 {
            smtp_canary_check(&mut canary);
            imap.check();
            assert!(
                s.gateway.is_running(),
                "leadgate died at case {i}: {}",
                c.name
            );
        }
    }
    eprintln!("{} SMTP inputs ({table_len} hand-written)", cases.len());
    match slow.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failures.push(format!("slow client: {e}")),
        Err(_) => failures.push("slow client: thread panicked".into()),
    }
    // The canary still submits for real.
    smtp_canary_check(&mut canary);
    let r = canary
        .send(
            "maria@example.com",
            &["customer@customer.test"],
            &message(
                "Maria <maria@example.com>",
                "After the storm",
                "canary@hostile.test",
                "Still here.",
            ),
        )
        .expect("canary submission");
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(s.gateway.is_running(), "leadgate is not running");
    assert_no_panic(&s);
    assert!(
        failures.is_empty(),
        "{} of {} SMTP inputs were not handled cleanly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ------------------------------------------------- stamped header fields

/// Messages whose display names and subjects try to add header lines when
/// decoded (encoded CR/LF/NUL, folding, long names), and ones that carry
/// X-Lead-* fields of their own.
fn injection_messages() -> Vec<(String, Vec<u8>)> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let froms = [
        "=?utf-8?q?Mallory=0D=0AX-Lead-Owner:_mallory?= <m1@evil1.test>".to_owned(),
        format!(
            "=?utf-8?b?{}?= <m2@evil2.test>",
            b64("Eve\r\nX-Lead-Status: Won\r\nX-Lead-Id: 1")
        ),
        "=?utf-8?q?Eve=0AX-Lead-Category:_vip?= <m3@evil3.test>".to_owned(),
        "=?utf-8?q?N=00ul=0DX-Lead-Follow-Up:_never?= <m4@evil4.test>".to_owned(),
        "\"Mallory\r\n X-Lead-Owner: folded\" <m5@evil5.test>".to_owned(),
        format!(
            "=?utf-8?q?{}?= <m6@evil6.test>",
            "A=0D=0AX-Lead-Owner:_x_".repeat(300)
        ),
        "=?iso-8859-1?q?Ren=E9=0D=0AX-Lead-Contact:_spoof?= <m7@evil7.test>".to_owned(),
        "Plain Name <m8@evil8.test>".to_owned(),
        "=?utf-8?q?=E2=80=AE_RTL_=0D=0A=0D=0Abody?= <m9@evil9.test>".to_owned(),
        "=?utf-8?b?!!!broken?= <m10@evil10.test>".to_owned(),
        "<m11@evil11.test>".to_owned(),
        "=?utf-8?q?x?= =?utf-8?q?=0D=0AX-Lead-Owner:_split?= <m12@evil12.test>".to_owned(),
    ];
    let subjects = [
        "=?utf-8?q?Hi=0D=0AX-Lead-Status:_Won?=".to_owned(),
        format!(
            "=?utf-8?b?{}?=",
            b64("Quote\r\nX-Lead-Owner: mallory\r\n\r\nfake body")
        ),
        "Hello\r\n =?utf-8?q?=0D=0AX-Lead-Id:_99?=".to_owned(),
        "=?utf-8?q?=0D=0A=0D=0A?=".to_owned(),
        "Normal subject".to_owned(),
        "=?utf-8?q?tab=09and=0Bvertical?=".to_owned(),
        "=?utf-8?q?Caf=C3=A9_=0D=0AX-Lead-Category:_x?=".to_owned(),
        "Re: quote".to_owned(),
        "=?utf-8?q?=00=01=02=1B[31m?=".to_owned(),
        "x".repeat(3000),
        "=?utf-8?b?=?=".to_owned(),
        "=?utf-8?q?a?=\r\n\t=?utf-8?q?=0AX-Lead-Follow-Up:_now?=".to_owned(),
    ];
    let mut out = Vec::new();
    for (i, (from, subject)) in froms.iter().zip(subjects.iter()).enumerate() {
        let own_fields = "";
        let sender = from
            .rsplit('<')
            .next()
            .unwrap()
            .trim_end_matches('>')
            .to_owned();
        let raw = format!(
            "From: {from}\r\nTo: sales@example.com\r\nSubject: {subject}\r\n{own_fields}Message-ID: <inject{i}@hostile.test>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease quote.\r\n"
        );
        out.push((sender, raw.into_bytes()));
    }
    out
}

const LEAD_FIELDS: [&str; 6] = [
    "X-Lead-Id",
    "X-Lead-Owner",
    "X-Lead-Status",
    "X-Lead-Follow-Up",
    "X-Lead-Category",
    "X-Lead-Contact",
];

/// The header block of a `BODY[HEADER]` FETCH response.
fn fetched_header(text: &str) -> String {
    text.split_once("}\r\n")
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn header_injection_in_stamped_fields_adds_no_lead_header() {
    let s = setup();
    let messages = injection_messages();
    let base = s.upstream_count();
    for (i, (sender, raw)) in messages.iter().enumerate() {
        s.deliver_and_wait(sender, raw, base + i + 1);
    }
    let total = base + messages.len();
    assert!(
        eventually(Duration::from_secs(30), || s.gateway.leads().len() >= total),
        "not every message became a lead: {} leads",
        s.gateway.leads().len()
    );
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    let mut problems = Vec::new();
    for folder in ["INBOX", "Leads/Unassigned"] {
        let sel = bob.run(&format!("SELECT \"{folder}\""));
        assert!(sel.ok(), "{}", sel.text);
        let exists = sel
            .untagged()
            .iter()
            .find_map(|l| {
                l.strip_prefix("* ")?
                    .strip_suffix(" EXISTS")?
                    .parse::<usize>()
                    .ok()
            })
            .unwrap_or(0);
        assert!(exists > 0, "{folder}: {}", sel.text);
        for seq in 1..=exists {
            let r = bob.run(&format!("FETCH {seq} (BODY.PEEK[HEADER])"));
            assert!(r.ok(), "{}", r.text);
            let header = fetched_header(&r.text);
            let lines: Vec<&str> = header.split("\r\n").collect();
            for field in LEAD_FIELDS {
                let prefix = format!("{}:", field.to_ascii_lowercase());
                let n = lines
                    .iter()
                    .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
                    .count();
                if n != 1 {
                    problems.push(format!(
                        "{folder} message {seq}: {n} x {field}:\n{}",
                        lines
                            .iter()
                            .filter(|l| l.to_ascii_lowercase().starts_with("x-lead"))
                            .copied()
                            .collect::<Vec<_>>()
                            .join("\n")
                    ));
                }
            }
            // The stamp lines are one line of printable ASCII each.
            for l in lines.iter().take(LEAD_FIELDS.len()) {
                if !l.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                    problems.push(format!("{folder} message {seq}: stamp line {l:?}"));
                }
            }
            let owner = lines
                .iter()
                .find(|l| l.starts_with("X-Lead-Owner:"))
                .map(|l| l.trim_end().to_owned())
                .unwrap_or_default();
            if owner != "X-Lead-Owner: unassigned" {
                problems.push(format!("{folder} message {seq}: {owner:?}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "stamped headers are not one of each:\n{}",
        problems.join("\n")
    );

    // A rep's reply that carries its own X-Lead-* fields and an encoded
    // CR LF reaches the customer with exactly one X-Lead-Id.
    bob.run("SELECT INBOX");
    let reply = b"From: Bob <bob@example.com>\r\nTo: customer@customer.test\r\nSubject: =?utf-8?q?Re:_quote=0D=0AX-Lead-Owner:_mallory?=\r\nIn-Reply-To: <seed0@hostile.test>\r\nX-Lead-Id: 999999\r\nX-Lead-Owner: mallory\r\nX-Lead-Status: Won\r\nMessage-ID: <reply-inject@hostile.test>\r\n\r\nHere you go.\r\n";
    let mut smtp = SmtpClient::login(s.gateway.addr("smtp-plaintext"), BOB.0, BOB.1).unwrap();
    let r = smtp
        .send("bob@example.com", &["customer@customer.test"], reply)
        .unwrap();
    assert_eq!(r.code, 250, "{}", r.text);
    let mut header = String::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            let mut c = RawImap::login(s.dovecot.imap_port, CUSTOMER.0, CUSTOMER.1);
            let sel = c.run("SELECT INBOX");
            if sel.contains("* 0 EXISTS") {
                return false;
            }
            header = c.run("FETCH 1 (BODY.PEEK[HEADER])");
            true
        }),
        "the reply did not reach the customer"
    );
    let lead_lines: Vec<&str> = header
        .split("\r\n")
        .filter(|l| l.to_ascii_lowercase().starts_with("x-lead"))
        .collect();
    assert_eq!(lead_lines.len(), 1, "{header}");
    assert!(lead_lines[0].starts_with("X-Lead-Id: "), "{header}");
    assert_ne!(lead_lines[0].trim(), "X-Lead-Id: 999999", "{header}");
    assert_no_panic(&s);
}

// ------------------------------------------------------------ AUTH floods

fn imap_login_from(addr: SocketAddr, ip: IpAddr, user: &str, password: &str) -> Reply {
    let mut c = Client::over_tcp(connect_from(addr, ip).expect("connect"));
    c.run(&format!("LOGIN {user} {password}"))
}

fn smtp_auth_from(addr: SocketAddr, ip: IpAddr, user: &str, password: &str) -> SmtpReply {
    let mut c = SmtpClient::over(connect_from(addr, ip).expect("connect")).expect("greeting");
    c.command("EHLO flood.test").unwrap();
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    c.command(&format!("AUTH PLAIN {token}")).unwrap()
}

#[test]
fn auth_floods_lock_the_guessing_address_not_the_user_and_are_logged() {
    let s = setup();
    let imap = s.gateway.addr("plaintext");
    let smtp = s.gateway.addr("smtp-plaintext");
    // Sessions opened before the flood keep working through it.
    let mut alice_before = s.gateway.login(ALICE.0, ALICE.1);
    assert!(alice_before.run("SELECT INBOX").ok());
    let mut canary = Canary::imap(&s);
    let (a, b) = (loopback_ip(3, 1), loopback_ip(3, 2));
    // alice works from b.
    assert!(imap_login_from(imap, b, ALICE.0, ALICE.1).ok());

    // Five wrong passwords for alice from one address (the configured
    // max_failures): refused; then that address may not try alice again,
    // right password or not.
    for i in 0..5 {
        let r = imap_login_from(imap, a, ALICE.0, &format!("wrong-{i}"));
        assert!(
            r.no() && r.tagged.contains("AUTHENTICATIONFAILED"),
            "{}",
            r.tagged
        );
    }
    let r = imap_login_from(imap, a, ALICE.0, ALICE.1);
    assert!(
        r.no(),
        "a guessing address logged in as alice: {}",
        r.tagged
    );
    // alice herself is not locked out: not from where she works, not over
    // SMTP from a new address.
    let r = imap_login_from(imap, b, ALICE.0, ALICE.1);
    assert!(r.ok(), "a stranger locked alice out: {}", r.tagged);
    let r = smtp_auth_from(smtp, loopback_ip(3, 3), ALICE.0, ALICE.1);
    assert_eq!(r.code, 235, "{}", r.text);

    // An address that failed max_failures_per_source (20) times, spread
    // over users, is refused for a user who never logged in from it.
    let e = loopback_ip(3, 8);
    let guesses: Vec<_> = (0..20)
        .map(|i| {
            std::thread::spawn(move || imap_login_from(imap, e, &format!("user{}", i % 5), "guess"))
        })
        .collect();
    for g in guesses {
        let r = g.join().unwrap();
        assert!(r.no(), "{}", r.tagged);
    }
    let r = imap_login_from(imap, e, BOB.0, BOB.1);
    assert!(r.no(), "a flooding address logged in as bob: {}", r.tagged);
    let r = imap_login_from(imap, b, BOB.0, BOB.1);
    assert!(r.ok(), "bob from a clean address: {}", r.tagged);

    // SMTP: three failures end the session (421); two more and that
    // address is done with maria, who still logs in from elsewhere.
    let d = loopback_ip(3, 4);
    let mut c = SmtpClient::over(connect_from(smtp, d).unwrap()).unwrap();
    c.command("EHLO flood.test").unwrap();
    let bad = base64::engine::general_purpose::STANDARD.encode("\0maria\0wrong");
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(c.command(&format!("AUTH PLAIN {bad}")).unwrap().code);
    }
    assert_eq!(codes, [535, 535, 535]);
    let closing = c.reply().unwrap();
    assert_eq!(closing.code, 421, "{}", closing.text);
    assert!(c.command("NOOP").is_err(), "the session should be closed");
    for _ in 0..2 {
        assert_eq!(smtp_auth_from(smtp, d, MARIA.0, "wrong").code, 535);
    }
    let r = smtp_auth_from(smtp, d, MARIA.0, MARIA.1);
    assert_eq!(
        r.code, 454,
        "the guessing address is done with maria: {}",
        r.text
    );
    let r = smtp_auth_from(smtp, loopback_ip(3, 5), MARIA.0, MARIA.1);
    assert_eq!(r.code, 235, "maria from elsewhere: {}", r.text);

    // A flood from many addresses (four tries each, under the per-address
    // limits) at an unknown user and at alice: every one refused, nothing
    // hangs, the daemon and the sessions stay. The hundred failures for
    // alice reach max_failures_per_user: a new address meets the account
    // lock, the one she works from does not.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut refused = 0;
                for k in 0..50u32 {
                    let ip = loopback_ip(4, t * 1000 + k / 4);
                    let user = if k % 2 == 0 { "nobody" } else { "alice" };
                    let r = imap_login_from(imap, ip, user, &format!("guess-{k}"));
                    refused += usize::from(r.no());
                }
                refused
            })
        })
        .collect();
    let refused: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(refused, 200, "every guess must be refused");
    canary.check();
    assert!(
        alice_before.run("NOOP").ok(),
        "an open session was dropped by the lockout"
    );
    assert!(imap_login_from(imap, loopback_ip(3, 7), BOB.0, BOB.1).ok());
    let fresh = loopback_ip(3, 9);
    assert!(imap_login_from(imap, fresh, ALICE.0, ALICE.1).no());
    assert!(imap_login_from(imap, b, ALICE.0, ALICE.1).ok());

    // Logged for fail2ban, with the reason.
    let log = s.gateway.log();
    for (user, ip, proto) in [
        ("alice", a, "imap"),
        ("bob", e, "imap"),
        ("maria", d, "smtp"),
        ("alice", fresh, "imap"),
    ] {
        let want = format!("auth failed: user={user} ip={ip} proto={proto} reason=locked-out");
        assert!(
            log.contains(&want),
            "missing log line {want:?}; auth lines:\n{}",
            log.lines()
                .filter(|l| l.contains("auth failed"))
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(log.contains(&format!(
        "auth failed: user=alice ip={a} proto=imap reason=bad-credentials"
    )));
    assert_no_panic(&s);
}

/// The X-Lead-* lines of every message in `folder`, seen by `c`, that are
/// not exactly one of each stamped field.
fn stamp_problems(c: &mut Client, folder: &str) -> Vec<String> {
    let sel = c.run(&format!("SELECT \"{folder}\""));
    assert!(sel.ok(), "{}", sel.text);
    let exists = sel
        .untagged()
        .iter()
        .find_map(|l| {
            l.strip_prefix("* ")?
                .strip_suffix(" EXISTS")?
                .parse::<usize>()
                .ok()
        })
        .unwrap_or(0);
    let mut problems = Vec::new();
    for seq in 1..=exists {
        let r = c.run(&format!("FETCH {seq} (BODY.PEEK[HEADER])"));
        assert!(r.ok(), "{}", r.text);
        let header = fetched_header(&r.text);
        let lead_lines: Vec<&str> = header
            .split("\r\n")
            .filter(|l| l.to_ascii_lowercase().starts_with("x-lead"))
            .collect();
        for field in LEAD_FIELDS {
            let prefix = format!("{}:", field.to_ascii_lowercase());
            let n = lead_lines
                .iter()
                .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
                .count();
            if n != 1 {
                problems.push(format!(
                    "{folder} message {seq}: {n} x {field}:\n  {}",
                    lead_lines.join("\n  ")
                ));
            }
        }
    }
    problems
}

/// A customer's mail that carries X-Lead-* fields of its own (a forged
/// `X-Lead-Owner: mallory`, say) must not be served with them beside the
/// stamp: a mail client's filter or a reader cannot tell which is real.
///
/// leadgate renames a shared message's own X-Lead-* fields to X-Orig-*
/// (same length, so RFC822.SIZE holds).
#[test]
fn x_lead_fields_in_incoming_mail_are_not_served_beside_the_stamp() {
    let s = setup();
    let base = s.upstream_count();
    let forged = b"From: Mallory <m@forged.test>\r\nTo: sales@example.com\r\nSubject: Quote please\r\nX-Lead-Owner: mallory\r\nX-Lead-Status: Won\r\nx-lead-id: 1\r\nX-Lead-Category: VIP\r\nMessage-ID: <forged@hostile.test>\r\n\r\nPlease quote.\r\n";
    s.deliver_and_wait("m@forged.test", forged, base + 1);
    assert!(
        eventually(Duration::from_secs(30), || s.gateway.leads().len() > base),
        "the message did not become a lead"
    );
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    let mut problems = stamp_problems(&mut bob, "INBOX");
    problems.extend(stamp_problems(&mut bob, "Leads/Unassigned"));
    assert!(
        problems.is_empty(),
        "a message's own X-Lead-* fields are served next to the stamp:\n{}",
        problems.join("\n")
    );
}

/// `LIST "" "<many *>x"` is matched by plain recursion over the wildcards,
/// which is exponential in their number. The match must not stall the
/// server for everyone else.
///
/// (Found by this test: `imap::folders::list_match` used to backtrack
/// exponentially on the async runtime; it now matches in linear time.)
#[test]
fn list_with_many_wildcards_does_not_stall_the_server() {
    let s = setup();
    let mut other = s.gateway.login(MARIA.0, MARIA.1);
    assert!(other.run("SELECT INBOX").ok());
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    let tag = bob.next_tag();
    bob.send_raw(format!("{tag} LIST \"\" \"{}x\"\r\n", "*".repeat(30)).as_bytes());
    std::thread::sleep(Duration::from_millis(500));
    // Another user's session must still be served (30 s read timeout).
    let mut canary = Canary {
        c: other,
        checks: 0,
    };
    let served = canary.try_check();
    assert!(
        served.is_ok(),
        "a LIST pattern with 30 wildcards stalled the server: {}",
        served.unwrap_err()
    );
    let r = bob.read_reply(&tag);
    assert!(r.ok() || r.bad(), "{}", r.text);
    assert_no_panic(&s);
}

/// SELECT of a folder that does not exist, named with non-ASCII
/// characters (modified UTF-7), is answered from the upstream's NO.
///
/// Dovecot's NO echoes the folder name in UTF-8, which imap-codec cannot
/// decode; leadgate used to skip the line and wait for a tagged answer that
/// never came. It now reads a status line's non-ASCII text as '?'.
#[test]
fn select_of_a_missing_non_ascii_folder_gets_the_upstreams_answer() {
    let s = setup();
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    let r = bob.run("SELECT \"&Jjo-\"");
    assert!(r.no(), "{}", r.text);
    assert!(
        !r.tagged.contains("UNAVAILABLE"),
        "the upstream answered, but leadgate says it is unavailable: {}",
        r.tagged
    );
    let log = s.gateway.log();
    assert!(
        !log.contains("imap-codec cannot decode"),
        "an upstream answer was dropped:\n{}",
        log.lines()
            .filter(|l| l.contains("cannot decode") || l.contains("did not answer"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// SMTP smuggling through the relay: a message whose body holds a bare-LF
/// end-of-data (`\n.\n`, `\n.\r\n`, `\r\n.\n`) followed by a second
/// transaction must reach the customer as one message, never as a second,
/// spoofed one (Postfix, like many servers, takes a bare LF as a line end).
#[test]
fn smtp_smuggling_through_the_relay_delivers_no_second_message() {
    let s = setup();
    let addr = s.gateway.addr("smtp-plaintext");
    let mut accepted = 0;
    for (i, eod) in ["\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n"]
        .iter()
        .enumerate()
    {
        let raw = format!(
            "From: Bob <bob@example.com>\r\nTo: customer@customer.test\r\nSubject: innocent {i}\r\nMessage-ID: <innocent{i}@hostile.test>\r\n\r\nHello{eod}MAIL FROM:<ceo@example.com>\r\nRCPT TO:<customer@customer.test>\r\nDATA\r\nFrom: CEO <ceo@example.com>\r\nSubject: smuggled {i}\r\n\r\nPay the invoice.\r\n"
        );
        let mut c = SmtpClient::login(addr, BOB.0, BOB.1).unwrap();
        let r = c
            .send(
                "bob@example.com",
                &["customer@customer.test"],
                raw.as_bytes(),
            )
            .unwrap();
        assert!(r.code == 250 || r.code >= 500, "{}", r.text);
        accepted += usize::from(r.code == 250);
    }
    // Let Postfix deliver whatever it was given.
    assert!(
        eventually(Duration::from_secs(30), || {
            mailbox_message_ids(&s.dovecot, CUSTOMER, "INBOX").len() >= accepted
        }),
        "accepted replies did not arrive"
    );
    std::thread::sleep(Duration::from_secs(3));
    let mut c = RawImap::login(s.dovecot.imap_port, CUSTOMER.0, CUSTOMER.1);
    c.run("SELECT INBOX");
    let subjects = c.run("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])");
    assert!(
        !subjects.contains("smuggled"),
        "a smuggled second message was delivered:\n{subjects}"
    );
    assert_eq!(
        mailbox_message_ids(&s.dovecot, CUSTOMER, "INBOX").len(),
        accepted,
        "{subjects}"
    );
}
