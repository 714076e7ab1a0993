//! What kind of mail a message is, for the follow-up clock: a person's
//! answer, an automatic answer (out of office, helpdesk acknowledgement, read
//! receipt, delivery *delay* report...), or a delivery failure report.
//!
//! Pure: [`classify`] works on an already parsed [`mail_parser::Message`],
//! reads no clock, does no I/O and never panics (slices are taken with `get`,
//! text is cut on char boundaries, every scan is bounded). The formats it
//! knows are kept as real-shaped samples in `tests/corpus/` (its README says
//! which system and document each one follows).
//!
//! Order of the checks:
//! 1. delivery reports: RFC 3464 `message/delivery-status` parts (a bounce
//!    when a recipient has `Action: failed`; `delayed` is an automatic delay
//!    report, `delivered`/`relayed`/`expanded` an automatic success report);
//!    then RFC 8098 read receipts; then the older plain-text bounces (Exim,
//!    qmail, old Gmail...) recognised by their sender, subject or
//!    `X-Failed-Recipients` *and* a bounce body;
//! 2. RFC 3834 and vendor auto-reply headers;
//! 3. auto-reply subject prefixes, in many languages;
//! 4. everything else is [`MailKind::Ordinary`]. The body is never read for
//!    auto-reply words: a person writing "I was out of office" is a person.
//!
//! Signals deliberately not used:
//! - `List-Id`/`List-Unsubscribe`/`Feedback-ID`: a customer may answer from a
//!   list or marketing tool; they say how mail was sent, not who wrote it.
//! - `X-Mailer`: "Zendesk Mailer" is on agents' hand-written replies too.
//! - `X-Auto-Response-Suppress` without `All` (see the comment in `auto_reply_header`).
//! - `Return-Path: <>`: auto-replies use the null sender too, and one that
//!   attaches the original message must not turn into a bounce.
//! - A sender called postmaster/MAILER-DAEMON, a bounce-like subject or an
//!   `X-Failed-Recipients` header alone: a bounce also needs a bounce body
//!   (MTA boilerplate, a returned header block or `X-Failed-Recipients`).
//!
//! Known false positive, kept because RFC 3834 says so: helpdesks (Zendesk)
//! mark even their agents' hand-written replies `Auto-Submitted:
//! auto-generated`, so such a reply is an [`MailKind::AutoReply`].
//!
//! How mail-parser 0.11 hands a report over (what this code relies on):
//! - `message/delivery-status`, `message/global-delivery-status`,
//!   `message/disposition-notification` and `message/global-headers` are not
//!   text to it: they come out as `PartType::Binary` (decoded when they had a
//!   transfer encoding), so their fields are read from the part's bytes here.
//! - `text/rfc822-headers` comes out as `PartType::Text` (listed in
//!   `attachments`, not in `text_body`).
//! - `message/rfc822` and `message/global` come out as `PartType::Message`,
//!   a nested message parsed with its own headers; a nested message it cannot
//!   parse comes out as `Text`/`Binary` with `is_encoding_problem`, so the
//!   part's bytes are also scanned for a header block.
//! - all parts of the top-level message are in one flat `parts` list (the
//!   parts of a nested message are inside that nested message only), so a
//!   report forwarded as an attachment is not taken for a report.

use std::borrow::Cow;

use mail_parser::{HeaderValue, Message, MessagePart, MimeHeaders, PartType};

/// What kind of mail a message is, for the follow-up clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MailKind {
    /// A person wrote it.
    #[default]
    Ordinary,
    /// An automatic answer (out of office, vacation, helpdesk acknowledgement,
    /// read receipt, delivery *delay* report...). `why` names the signal, e.g.
    /// "Auto-Submitted: auto-replied" or "subject \"Automatic reply:\"".
    AutoReply { why: String },
    /// A delivery failure report.
    Bounce(BounceReport),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BounceReport {
    /// Message-IDs of the bounced message found in the report, each as
    /// `"<id>"` (angle brackets, as written; trimmed), first the most certain.
    pub original_message_ids: Vec<String>,
    /// Recipients that failed, lower case.
    pub failed_recipients: Vec<String>,
    /// A one-line reason for people, e.g. "550 5.1.1 <x@y>: user unknown" (<= 200 chars, no control chars); may be empty.
    pub diagnostic: String,
}

/// How much of one text part is read (bounce notices are a few KiB; the copy
/// of a returned message can be anything).
const MAX_TEXT: usize = 512 * 1024;
/// Longest [`BounceReport::diagnostic`], in chars.
const MAX_DIAGNOSTIC: usize = 200;
/// Most header lines read from one returned header block.
const MAX_BLOCK_LINES: usize = 1_000;

/// Classifies a parsed message. Pure: no clock, no I/O. Must never panic on any input.
pub fn classify(msg: &mail_parser::Message<'_>) -> MailKind {
    let Some(root) = msg.parts.first() else {
        return MailKind::Ordinary;
    };

    // 1. Delivery reports first: DSNs also carry `Auto-Submitted`.
    let dsn = delivery_status(msg, root);
    if dsn.rcpts.iter().any(DsnRcpt::failed) {
        return MailKind::Bounce(bounce_report(msg, root, Some(&dsn)));
    }
    if dsn.rcpts.iter().any(DsnRcpt::delayed) {
        return auto("delivery delay report");
    }
    if let Some(r) = dsn.rcpts.iter().find(|r| r.delivered()) {
        let action = r.action.as_deref().unwrap_or("delivered");
        return auto(&format!("delivery status report (Action: {action})"));
    }
    if is_read_receipt(msg, root) {
        return auto("read receipt (message/disposition-notification)");
    }
    if let Some(kind) = legacy_bounce(msg, root) {
        return kind;
    }

    // 2. Headers.
    if let Some(why) = auto_reply_header(msg, root) {
        return MailKind::AutoReply { why };
    }

    // 3. Subject prefix.
    let subject = subject(msg, root);
    if let Some((written, _)) = auto_reply_prefix(&subject) {
        return MailKind::AutoReply {
            why: format!("subject \"{written}\""),
        };
    }

    // Any other multipart/report (a DSN whose report part was unreadable, an
    // abuse feedback report...) is written by a program, not a person.
    if let Some(kind) = report_type(root) {
        return auto(&format!("multipart/report (report-type={kind})"));
    }
    MailKind::Ordinary
}

/// The subject without leading auto-reply prefixes ("Automatic reply: ",
/// "Abwesenheitsnotiz: ", "Out of Office: " ...), any number, any case; the
/// rest untouched (so "Automatic reply: Re: Pricing" -> "Re: Pricing").
pub fn strip_auto_reply_prefix(subject: &str) -> &str {
    let mut rest = subject;
    while let Some((_, after)) = auto_reply_prefix(rest) {
        rest = after;
    }
    rest
}

fn auto(why: &str) -> MailKind {
    MailKind::AutoReply {
        why: why.to_owned(),
    }
}

// ---------------------------------------------------------------------------
// Subject prefixes
// ---------------------------------------------------------------------------

/// Auto-reply subject prefixes, lower case; a space stands for any run of
/// whitespace. Each must be followed by optional whitespace and ':' (or the
/// full-width '：' of CJK clients); French puts a space before the colon.
/// Mostly the localised Outlook/Exchange "Automatic reply" strings, plus the
/// prefixes other clients and old Exchange versions write.
const AUTO_REPLY_PREFIXES: &[&str] = &[
    "automatic reply",
    "auto-reply",
    "autoreply",
    "auto reply",
    "auto response",
    "auto-response",
    "autoresponse",
    "out of office",
    "out of office autoreply",
    "out of office reply",
    "out of the office",
    "abwesenheitsnotiz",
    "automatische antwort",
    "réponse automatique",
    "respuesta automática",
    "risposta automatica",
    "automatisch antwoord",
    "resposta automática",
    "autosvar",
    "automatisk svar",
    "automatiskt svar",
    "automaattinen vastaus",
    "automatyczna odpowiedź",
    "automatická odpověď",
    "automatická odpoveď",
    "automatikus válasz",
    "răspuns automat",
    "automatski odgovor",
    "samodejni odgovor",
    "αυτόματη απάντηση",
    "автоматический ответ",
    "автоматична відповідь",
    "自动回复",
    "自動回覆",
    "自動応答",
    "자동 회신",
    "otomatik yanıt",
    "otomatik yanit",
];

/// If `s` starts (after optional whitespace) with an auto-reply prefix and
/// its colon: the prefix as written including the colon, and the rest after
/// the colon and the whitespace that follows it.
fn auto_reply_prefix(s: &str) -> Option<(&str, &str)> {
    let start = s.len() - s.trim_start().len();
    let body = s.get(start..)?;
    for pat in AUTO_REPLY_PREFIXES {
        let Some(n) = match_ci(body, pat) else {
            continue;
        };
        let after = body.get(n..)?;
        let gap = after.len() - after.trim_start().len();
        let Some(colon) = after.get(gap..).and_then(|a| a.chars().next()) else {
            continue;
        };
        if colon != ':' && colon != '：' {
            continue;
        }
        let end = n + gap + colon.len_utf8();
        let written = body.get(..end)?;
        let rest = body.get(end..)?.trim_start();
        return Some((written, rest));
    }
    None
}

/// Lower case of one char, when it is one char (it is for all but a few).
fn lower(c: char) -> char {
    let mut l = c.to_lowercase();
    match (l.next(), l.next()) {
        (Some(a), None) => a,
        _ => c,
    }
}

/// Byte length of the start of `s` that matches `pat` (lower case; a space
/// matches any run of whitespace), compared case-insensitively.
fn match_ci(s: &str, pat: &str) -> Option<usize> {
    let mut it = s.char_indices().peekable();
    for p in pat.chars() {
        if p == ' ' {
            let mut n = 0;
            while it.next_if(|&(_, c)| c.is_whitespace()).is_some() {
                n += 1;
            }
            if n == 0 {
                return None;
            }
        } else {
            let (_, c) = it.next()?;
            if lower(c) != p {
                return None;
            }
        }
    }
    Some(it.peek().map_or(s.len(), |&(i, _)| i))
}

// ---------------------------------------------------------------------------
// Header access
// ---------------------------------------------------------------------------

/// The values of header `name` of `part` (a part of `msg`), as written,
/// unfolded and trimmed.
fn header_values(msg: &Message<'_>, part: &MessagePart<'_>, name: &str) -> Vec<String> {
    part.headers
        .iter()
        .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .map(|h| {
            msg.raw_message
                .get(h.offset_start as usize..h.offset_end as usize)
                .map(|raw| unfold(&String::from_utf8_lossy(raw)))
                .unwrap_or_else(|| value_text(&h.value))
        })
        .collect()
}

fn has_header(part: &MessagePart<'_>, name: &str) -> bool {
    part.headers
        .iter()
        .any(|h| h.name.as_str().eq_ignore_ascii_case(name))
}

fn value_text(v: &HeaderValue<'_>) -> String {
    match v {
        HeaderValue::Text(t) => t.to_string(),
        HeaderValue::TextList(l) => l.join(" "),
        _ => String::new(),
    }
}

fn unfold(s: &str) -> String {
    s.split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The decoded (RFC 2047) subject.
fn subject(msg: &Message<'_>, root: &MessagePart<'_>) -> String {
    root.headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case("Subject"))
        .map(|h| match &h.value {
            HeaderValue::Text(t) => t.to_string(),
            HeaderValue::TextList(l) => l.first().map(|t| t.to_string()).unwrap_or_default(),
            _ => header_values(msg, root, "Subject")
                .into_iter()
                .next()
                .unwrap_or_default(),
        })
        .unwrap_or_default()
}

/// The first From address, lower case ("" when there is none).
fn from_address(msg: &Message<'_>, root: &MessagePart<'_>) -> String {
    let parsed = root
        .headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case("From"))
        .and_then(|h| h.value.as_address())
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .and_then(clean_address);
    parsed
        .or_else(|| {
            header_values(msg, root, "From")
                .iter()
                .flat_map(|v| v.split([' ', '<', '>', ',', '"', '(', ')']))
                .find_map(clean_address)
        })
        .unwrap_or_default()
}

/// The keyword of a header value: before any ';' parameter or '(' comment,
/// trimmed, lower case.
fn keyword(v: &str) -> String {
    v.split([';', '('])
        .next()
        .unwrap_or_default()
        .trim()
        .to_lowercase()
}

/// An e-mail address as lower case, when `s` (trimmed of brackets and quotes)
/// looks like one.
fn clean_address(s: &str) -> Option<String> {
    let s = s
        .trim()
        .trim_matches(|c: char| matches!(c, '<' | '>' | '"' | '\'' | ',' | ';' | ':' | '.'))
        .trim();
    let (local, domain) = s.rsplit_once('@')?;
    if local.is_empty() || domain.len() < 3 || !domain.contains('.') || s.len() > 254 {
        return None;
    }
    if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
        return None;
    }
    if s.chars().any(|c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(
                c,
                '<' | '>' | '(' | ')' | '[' | ']' | ',' | ';' | ':' | '"' | '\\' | '/'
            )
    }) {
        return None;
    }
    if domain.contains('@') {
        return None;
    }
    Some(s.to_lowercase())
}

/// Message-ID(s) in a header value, each as "<id>".
fn message_ids(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = v;
    while let Some(open) = rest.find('<') {
        let Some(tail) = rest.get(open..) else {
            break;
        };
        let Some(close) = tail.find('>') else {
            break;
        };
        let inner = tail.get(1..close).unwrap_or_default().trim();
        if !inner.is_empty() && inner.len() <= 998 && !inner.contains(char::is_whitespace) {
            out.push(format!("<{inner}>"));
        }
        rest = tail.get(close + 1..).unwrap_or_default();
    }
    if out.is_empty() {
        // Written without brackets (or parsed value): a bare id token.
        if let Some(tok) = v.split_whitespace().next() {
            if tok.contains('@') && tok.len() <= 998 && !tok.contains(['<', '>']) {
                out.push(format!("<{tok}>"));
            }
        }
    }
    out
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

// ---------------------------------------------------------------------------
// MIME structure
// ---------------------------------------------------------------------------

fn ctype_is(part: &MessagePart<'_>, ctype: &str, subtypes: &[&str]) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case(ctype)
            && ct
                .subtype()
                .is_some_and(|st| subtypes.iter().any(|s| st.eq_ignore_ascii_case(s)))
    })
}

/// `report-type` of a multipart/report root part, lower case.
fn report_type(root: &MessagePart<'_>) -> Option<String> {
    if !ctype_is(root, "multipart", &["report"]) {
        return None;
    }
    let ct = root.content_type()?;
    Some(
        ct.attribute("report-type")
            .map(|t| t.trim().to_ascii_lowercase())
            .unwrap_or_else(|| "unknown".to_owned()),
    )
}

/// The decoded bytes of a part's body. For a nested message: its bytes as
/// they stand in the enclosing message.
fn part_bytes<'a>(msg: &'a Message<'_>, part: &'a MessagePart<'_>) -> Cow<'a, [u8]> {
    match &part.body {
        PartType::Text(t) | PartType::Html(t) => Cow::Borrowed(t.as_bytes()),
        PartType::Binary(b) | PartType::InlineBinary(b) => Cow::Borrowed(b.as_ref()),
        PartType::Message(m) => m
            .parts
            .first()
            .and_then(|p| {
                m.raw_message
                    .get(p.offset_header as usize..p.offset_end as usize)
            })
            .filter(|b| !b.is_empty())
            .or_else(|| {
                msg.raw_message
                    .get(part.offset_body as usize..part.offset_end as usize)
            })
            .map(Cow::Borrowed)
            .unwrap_or_default(),
        PartType::Multipart(_) => Cow::Borrowed(&[]),
    }
}

/// Text of at most [`MAX_TEXT`] bytes, cut on a char boundary.
fn capped(t: &str) -> &str {
    if t.len() <= MAX_TEXT {
        return t;
    }
    let mut n = MAX_TEXT;
    while n > 0 && !t.is_char_boundary(n) {
        n -= 1;
    }
    t.get(..n).unwrap_or_default()
}

fn capped_bytes(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b.get(..MAX_TEXT.min(b.len())).unwrap_or_default())
}

/// The human-readable text parts of the top-level message (HTML as text).
fn body_texts<'a>(msg: &'a Message<'_>) -> Vec<Cow<'a, str>> {
    msg.parts
        .iter()
        .filter(|p| !is_returned_part(p))
        .filter_map(|p| match &p.body {
            PartType::Text(t) => Some(Cow::Borrowed(capped(t))),
            PartType::Html(h) => Some(Cow::Owned(mail_parser::decoders::html::html_to_text(
                capped(h),
            ))),
            _ => None,
        })
        .collect()
}

/// A part that returns the bounced message or its headers.
fn is_returned_part(part: &MessagePart<'_>) -> bool {
    matches!(part.body, PartType::Message(_))
        || ctype_is(
            part,
            "message",
            &["rfc822", "global", "global-headers", "rfc822-headers"],
        )
        || ctype_is(part, "text", &["rfc822-headers", "rfc822-header"])
}

// ---------------------------------------------------------------------------
// Header-style field blocks (DSN fields, returned headers)
// ---------------------------------------------------------------------------

/// `Name: value` of one header line, when it is one.
fn split_field(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once(':')?;
    let name = name.trim_end();
    let ok = !name.is_empty() && name.len() <= 76 && name.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some((name, value))
}

/// Blank-line separated groups of fields (name lower case, value unfolded).
fn field_groups(text: &str) -> Vec<Vec<(String, String)>> {
    let mut groups: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            if groups.last().is_some_and(|g| !g.is_empty()) {
                groups.push(Vec::new());
            }
            continue;
        }
        let Some(group) = groups.last_mut() else {
            break;
        };
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = group.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = split_field(line) {
            group.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    groups.retain(|g| !g.is_empty());
    groups
}

/// The header block at the start of `text` (after blank lines): fields up to
/// the first blank line or the first line that is not a header line.
fn header_block(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines().take(MAX_BLOCK_LINES) {
        if line.trim().is_empty() {
            if out.is_empty() {
                continue;
            }
            break;
        }
        if line.starts_with([' ', '\t']) {
            match out.last_mut() {
                Some((_, value)) => {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                None => break,
            }
        } else if let Some((name, value)) = split_field(line) {
            out.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        } else {
            break;
        }
    }
    out
}

fn block_ids(block: &[(String, String)]) -> Vec<String> {
    block
        .iter()
        .filter(|(n, _)| n == "message-id")
        .flat_map(|(_, v)| message_ids(v))
        .collect()
}

// ---------------------------------------------------------------------------
// RFC 3464 delivery status
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct DsnRcpt {
    original: Option<String>,
    final_rcpt: Option<String>,
    action: Option<String>,
    status: Option<String>,
    diagnostic: Option<String>,
    started: bool,
}

impl DsnRcpt {
    fn failed(&self) -> bool {
        match self.action.as_deref() {
            Some(a) => a.starts_with("fail"),
            None => self.status.as_deref().is_some_and(|s| s.starts_with('5')),
        }
    }

    fn delayed(&self) -> bool {
        match self.action.as_deref() {
            Some(a) => a.starts_with("delay"),
            None => self.status.as_deref().is_some_and(|s| s.starts_with('4')),
        }
    }

    fn delivered(&self) -> bool {
        matches!(
            self.action.as_deref(),
            Some("delivered" | "relayed" | "expanded")
        )
    }
}

#[derive(Debug, Default)]
struct Dsn {
    rcpts: Vec<DsnRcpt>,
    /// `X-Original-Message-ID` (Gmail) / `Original-Message-ID` fields.
    message_ids: Vec<String>,
}

/// The address of a DSN recipient field ("rfc822; dana@x.test").
fn dsn_address(v: &str) -> Option<String> {
    let addr = v.split_once(';').map_or(v, |(_, a)| a);
    clean_address(addr)
}

/// Reads the fields of one delivery-status body into `dsn`. Recipient blocks
/// are separated by blank lines (RFC 3464 section 2.1); when a generator
/// leaves the blank line out, a field seen twice starts the next recipient.
/// Field order inside a block varies (Postfix writes Final-Recipient before
/// Original-Recipient, Exim writes Action first).
fn parse_dsn(text: &str, dsn: &mut Dsn) {
    fn flush(cur: &mut DsnRcpt, dsn: &mut Dsn) {
        if cur.started {
            dsn.rcpts.push(std::mem::take(cur));
        }
    }
    let mut cur = DsnRcpt::default();
    for group in field_groups(text) {
        for (name, value) in group {
            let repeated = match name.as_str() {
                "original-recipient" => cur.original.is_some(),
                "final-recipient" => cur.final_rcpt.is_some(),
                "action" => cur.action.is_some(),
                "status" => cur.status.is_some(),
                _ => false,
            };
            if repeated {
                flush(&mut cur, dsn);
            }
            match name.as_str() {
                "original-recipient" => {
                    cur.original = dsn_address(&value);
                    cur.started = true;
                }
                "final-recipient" => {
                    cur.final_rcpt = dsn_address(&value);
                    cur.started = true;
                }
                "action" => {
                    cur.action = value
                        .split(|c: char| c.is_whitespace() || c == ';' || c == '(')
                        .next()
                        .map(str::to_ascii_lowercase);
                    cur.started = true;
                }
                "status" => {
                    cur.status = value.split_whitespace().next().map(str::to_owned);
                    cur.started = true;
                }
                "diagnostic-code" => cur.diagnostic = Some(value),
                "x-original-message-id" | "original-message-id" => {
                    for id in message_ids(&value) {
                        push_unique(&mut dsn.message_ids, id);
                    }
                }
                _ => {}
            }
        }
        flush(&mut cur, dsn);
    }
}

/// Reads every delivery-status part of the top-level message.
fn delivery_status(msg: &Message<'_>, root: &MessagePart<'_>) -> Dsn {
    let mut dsn = Dsn::default();
    let mut found = false;
    for part in &msg.parts {
        if ctype_is(
            part,
            "message",
            &["delivery-status", "global-delivery-status"],
        ) {
            found = true;
            parse_dsn(&capped_bytes(&part_bytes(msg, part)), &mut dsn);
        }
    }
    // A report whose second part is mislabelled (text/plain...): RFC 3464
    // puts the machine-readable part second.
    if !found && report_type(root).as_deref() == Some("delivery-status") {
        let second = root
            .sub_parts()
            .and_then(|ids| ids.get(1))
            .and_then(|&id| msg.parts.get(id as usize));
        if let Some(part) = second {
            if !is_returned_part(part) {
                parse_dsn(&capped_bytes(&part_bytes(msg, part)), &mut dsn);
            }
        }
    }
    dsn
}

fn is_read_receipt(msg: &Message<'_>, root: &MessagePart<'_>) -> bool {
    report_type(root).as_deref() == Some("disposition-notification")
        || msg.parts.iter().any(|p| {
            ctype_is(
                p,
                "message",
                &[
                    "disposition-notification",
                    "global-disposition-notification",
                ],
            )
        })
}

// ---------------------------------------------------------------------------
// Bounces
// ---------------------------------------------------------------------------

/// Subjects of failure (and delay) notices, lower case, at the start.
const BOUNCE_SUBJECTS: &[&str] = &[
    "undelivered mail returned to sender",
    "undelivered mail",
    "mail delivery failed",
    "mail delivery failure",
    "delivery status notification",
    "delivery failure",
    "delivery notification",
    "delayed mail",
    "delivery delayed",
    "undeliverable",
    "returned mail",
    "failure notice",
    "non remis",
    "unzustellbar",
    "onbestelbaar",
    "non recapitabile",
    "no se puede entregar",
    "warning: message",
];

/// Text every common MTA writes at the top of a failure or delay notice,
/// lower case.
const BOUNCE_TEXTS: &[&str] = &[
    "this message was created automatically by mail delivery software",
    "this is the qmail-send program",
    "this is the mail system at host",
    "i wasn't able to deliver your message",
    "could not be delivered to one or more recipients",
    "the following address(es) failed",
    "delivery to the following recipient failed permanently",
    "delivery to the following recipients failed",
    "delivery has failed to these recipients or groups",
    "your message did not reach some or all of the intended recipients",
    "the following addresses had permanent fatal errors",
    "wasn't delivered to",
    "couldn't be delivered",
    "message could not be delivered",
    "delivery to the following recipient has been delayed",
    "has not yet been delivered",
];

/// Subjects of delay warnings, lower case, at the start (the rest of such a
/// subject is often the delayed message's own subject, which may say
/// anything).
const DELAY_SUBJECTS: &[&str] = &[
    "delayed mail",
    "delivery delayed",
    "delivery delay",
    "delivery status notification (delay)",
    "warning: message",
];

/// Text of delay warnings (the MTA is still trying), lower case.
const DELAY_TEXTS: &[&str] = &[
    "this is a warning only",
    "this is a warning message only",
    "has not yet been delivered",
    "delivery incomplete",
    "has been delayed",
    "delivery is delayed",
    "will be retried until",
];

/// Lines after which MTAs copy the returned message (or its headers), lower
/// case.
const COPY_MARKERS: &[&str] = &[
    "this is a copy of the message, including all the headers",
    "this is a copy of the message's headers",
    "below this line is a copy of the message",
    "----- original message -----",
    "----- original message follows -----",
    "------ original message ------",
    "----- message header follows -----",
    "original message headers:",
];

/// A bounce notice split where the copy of the returned message starts:
/// (notice, copy). `copy` is empty when there is no marker.
fn split_at_copy(text: &str) -> (&str, &str) {
    let lower = text.to_ascii_lowercase();
    let hit = COPY_MARKERS.iter().filter_map(|m| lower.find(m)).min();
    let Some(at) = hit else {
        return (text, "");
    };
    // ASCII markers in an ASCII-lowercased copy: same byte offsets.
    let line_end = lower
        .get(at..)
        .and_then(|t| t.find('\n'))
        .map_or(text.len(), |n| at + n + 1);
    (
        text.get(..at).unwrap_or_default(),
        text.get(line_end..).unwrap_or_default(),
    )
}

fn contains_any(haystack_lower: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| haystack_lower.contains(n))
}

/// The bounce shape without a readable `message/delivery-status` part.
fn legacy_bounce(msg: &Message<'_>, root: &MessagePart<'_>) -> Option<MailKind> {
    let from = from_address(msg, root);
    let local = from.split('@').next().unwrap_or_default();
    let daemon_sender = matches!(
        local,
        "mailer-daemon" | "mailerdaemon" | "mailer_daemon" | "postmaster"
    );
    let subject = subject(msg, root).trim().to_lowercase();
    let bounce_subject = BOUNCE_SUBJECTS.iter().any(|s| subject.starts_with(s));
    let x_failed = has_header(root, "X-Failed-Recipients");
    let declared = has_header(root, "X-MS-Exchange-Message-Is-Ndr")
        || report_type(root).as_deref() == Some("delivery-status");
    if !(daemon_sender || bounce_subject || x_failed || declared) {
        return None;
    }

    let texts = body_texts(msg);
    let notices: Vec<String> = texts
        .iter()
        .map(|t| split_at_copy(t).0.to_lowercase())
        .collect();
    let boilerplate = notices.iter().any(|n| contains_any(n, BOUNCE_TEXTS));
    let delay_text = notices.iter().any(|n| contains_any(n, DELAY_TEXTS));
    let report = bounce_report(msg, root, None);
    if !(boilerplate || x_failed || !report.original_message_ids.is_empty()) {
        return None;
    }
    let delay_subject = DELAY_SUBJECTS.iter().any(|s| subject.starts_with(s));
    if !x_failed && (delay_text || delay_subject) {
        return Some(auto("delivery delay report"));
    }
    Some(MailKind::Bounce(report))
}

/// Everything a failure report says about the bounced message.
fn bounce_report(msg: &Message<'_>, root: &MessagePart<'_>, dsn: Option<&Dsn>) -> BounceReport {
    let own: Vec<String> = header_values(msg, root, "Message-ID")
        .iter()
        .flat_map(|v| message_ids(v))
        .collect();
    let texts = body_texts(msg);

    // Message-IDs, most certain first: the returned message/headers part, the
    // DSN's own field, a header block quoted in the notice, and last the
    // notice's own In-Reply-To/References (Exchange and Gmail point them at
    // the bounced message).
    let mut ids: Vec<String> = Vec::new();
    for id in returned_part_ids(msg) {
        push_unique(&mut ids, id);
    }
    if let Some(dsn) = dsn {
        for id in &dsn.message_ids {
            push_unique(&mut ids, id.clone());
        }
    }
    for text in &texts {
        let (_, copy) = split_at_copy(text);
        for id in block_ids(&header_block(copy)) {
            push_unique(&mut ids, id);
        }
    }
    ids.retain(|id| !own.contains(id));
    if ids.is_empty() {
        for text in &texts {
            for id in loose_header_block_ids(text) {
                push_unique(&mut ids, id);
            }
        }
        ids.retain(|id| !own.contains(id));
    }
    if ids.is_empty() {
        for id in header_values(msg, root, "In-Reply-To")
            .iter()
            .flat_map(|v| message_ids(v))
        {
            push_unique(&mut ids, id);
        }
        let mut refs: Vec<String> = header_values(msg, root, "References")
            .iter()
            .flat_map(|v| message_ids(v))
            .collect();
        refs.reverse();
        for id in refs {
            push_unique(&mut ids, id);
        }
        ids.retain(|id| !own.contains(id));
    }

    // Failed recipients: the DSN's, X-Failed-Recipients, then the notice text.
    let mut failed: Vec<String> = Vec::new();
    let mut diagnostic = String::new();
    if let Some(dsn) = dsn {
        for r in dsn.rcpts.iter().filter(|r| r.failed()) {
            for a in [&r.original, &r.final_rcpt].into_iter().flatten() {
                push_unique(&mut failed, a.clone());
            }
            if diagnostic.is_empty() {
                if let Some(d) = &r.diagnostic {
                    diagnostic = sanitize(strip_diagnostic_type(d));
                }
            }
        }
        if diagnostic.is_empty() {
            if let Some(s) = dsn
                .rcpts
                .iter()
                .filter(|r| r.failed())
                .find_map(|r| r.status.as_deref())
            {
                diagnostic = sanitize(s);
            }
        }
    }
    for v in header_values(msg, root, "X-Failed-Recipients") {
        for a in v.split([',', ' ']).filter_map(clean_address) {
            push_unique(&mut failed, a);
        }
    }
    let notices: Vec<&str> = texts.iter().map(|t| split_at_copy(t).0).collect();
    if failed.is_empty() {
        for notice in &notices {
            for a in notice_recipients(notice) {
                push_unique(&mut failed, a);
            }
        }
    }
    if diagnostic.is_empty() {
        if let Some(d) = notices.iter().find_map(|n| smtp_reply_line(n)) {
            diagnostic = sanitize(&d);
        }
    }

    BounceReport {
        original_message_ids: ids,
        failed_recipients: failed,
        diagnostic,
    }
}

/// Message-IDs of the parts that return the bounced message or its headers.
fn returned_part_ids(msg: &Message<'_>) -> Vec<String> {
    let mut ids = Vec::new();
    for part in msg.parts.iter().filter(|p| is_returned_part(p)) {
        let mut found: Vec<String> = Vec::new();
        if let PartType::Message(m) = &part.body {
            if let Some(nested_root) = m.parts.first() {
                found = header_values(m, nested_root, "Message-ID")
                    .iter()
                    .flat_map(|v| message_ids(v))
                    .collect();
            }
        }
        if found.is_empty() {
            found = block_ids(&header_block(&capped_bytes(&part_bytes(msg, part))));
        }
        if found.is_empty() {
            // A nested message mail-parser could not make sense of: its bytes
            // as they stand in the outer message.
            if let Some(raw) = msg
                .raw_message
                .get(part.offset_body as usize..part.offset_end as usize)
            {
                found = block_ids(&header_block(&capped_bytes(raw)));
            }
        }
        for id in found {
            push_unique(&mut ids, id);
        }
    }
    ids
}

/// Message-IDs of the first header-looking block (a `Message-ID:` line with
/// at least two other usual header fields around it) anywhere in `text`.
fn loose_header_block_ids(text: &str) -> Vec<String> {
    const USUAL: &[&str] = &[
        "from",
        "to",
        "subject",
        "date",
        "received",
        "return-path",
        "mime-version",
    ];
    let lines: Vec<&str> = text.lines().take(50_000).collect();
    let mut tries = 0;
    for (i, line) in lines.iter().enumerate() {
        let is_id_line =
            split_field(line).is_some_and(|(n, _)| n.eq_ignore_ascii_case("message-id"));
        if !is_id_line {
            continue;
        }
        tries += 1;
        if tries > 20 {
            break;
        }
        let before = lines.get(..i).unwrap_or_default();
        let start = before
            .iter()
            .rposition(|l| l.trim().is_empty())
            .map_or(0, |p| p + 1);
        let end = lines
            .get(i..)
            .and_then(|after| after.iter().position(|l| l.trim().is_empty()))
            .map_or(lines.len(), |p| i + p);
        let Some(block_lines) = lines.get(start..end) else {
            continue;
        };
        let block = header_block(&block_lines.join("\n"));
        let usual = block
            .iter()
            .filter(|(n, _)| USUAL.contains(&n.as_str()))
            .count();
        let ids = block_ids(&block);
        if usual >= 2 && !ids.is_empty() {
            return ids;
        }
    }
    Vec::new()
}

/// Recipients named in a notice: lines that start with an address
/// ("  dana@x.test", "<dana@x.test>:", "dana@x.test<mailto:dana@x.test>")
/// and "wasn't delivered to dana@x.test" sentences.
fn notice_recipients(notice: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in notice.lines().take(2_000) {
        let t = line.trim();
        let candidate = if let Some(inner) = t.strip_prefix('<') {
            inner
                .split_once('>')
                .filter(|(_, rest)| rest.trim().is_empty() || rest.trim_start().starts_with(':'))
                .map(|(addr, _)| addr)
        } else {
            let end = t
                .find(|c: char| c.is_whitespace() || matches!(c, '<' | '(' | ':'))
                .unwrap_or(t.len());
            let (addr, rest) = t.split_at(end);
            let rest = rest.trim_start();
            (rest.is_empty()
                || rest.starts_with("<mailto:")
                || rest.starts_with('(')
                || rest.starts_with(':'))
            .then_some(addr)
        };
        if let Some(a) = candidate.and_then(clean_address) {
            push_unique(&mut out, a);
        }
    }
    let lower = notice.to_ascii_lowercase();
    for phrase in ["delivered to ", "your message to "] {
        let mut from = 0;
        while let Some(at) = lower.get(from..).and_then(|t| t.find(phrase)) {
            let start = from + at + phrase.len();
            from = start;
            let word = notice
                .get(start..)
                .and_then(|t| t.split_whitespace().next())
                .unwrap_or_default();
            if let Some(a) = clean_address(word) {
                push_unique(&mut out, a);
            }
        }
    }
    out
}

/// The first SMTP reply quoted in a notice ("550 5.1.1 <x@y>: ..."), from
/// the reply code to the end of its line.
fn smtp_reply_line(notice: &str) -> Option<String> {
    for line in notice.lines().take(2_000) {
        let bytes = line.as_bytes();
        for (i, w) in bytes.windows(4).enumerate() {
            let code =
                matches!(w[0], b'4' | b'5') && w[1].is_ascii_digit() && w[2].is_ascii_digit();
            if !code || !matches!(w[3], b' ' | b'-') {
                continue;
            }
            let boundary = i == 0
                || matches!(
                    bytes.get(i - 1),
                    Some(b' ' | b'\t' | b':' | b'\'' | b'"' | b'(' | b'[' | b'=')
                );
            if !boundary {
                continue;
            }
            // Followed by an enhanced status code or by words, not digits
            // (a date or an IP address).
            let next = bytes.get(i + 4).copied().unwrap_or(b' ');
            if next.is_ascii_digit() && !matches!(bytes.get(i + 5), Some(b'.')) {
                continue;
            }
            let reply = line.get(i..)?.trim_end_matches(['\'', '"', ')', ' ']);
            return Some(reply.to_owned());
        }
    }
    None
}

/// A Diagnostic-Code without its type ("smtp; 550 ..." -> "550 ...").
fn strip_diagnostic_type(d: &str) -> &str {
    match d.split_once(';') {
        Some((kind, rest))
            if !kind.trim().is_empty() && !kind.trim().contains(' ') && kind.len() <= 20 =>
        {
            rest.trim()
        }
        _ => d.trim(),
    }
}

/// One line for people: no control chars, single spaces, at most
/// [`MAX_DIAGNOSTIC`] chars.
fn sanitize(s: &str) -> String {
    let words: Vec<&str> = s
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect();
    words.join(" ").chars().take(MAX_DIAGNOSTIC).collect()
}

// ---------------------------------------------------------------------------
// Auto-reply headers
// ---------------------------------------------------------------------------

/// The first auto-reply header signal, named.
fn auto_reply_header(msg: &Message<'_>, root: &MessagePart<'_>) -> Option<String> {
    let values = |name: &str| header_values(msg, root, name);

    // RFC 3834: any value but "no"; an empty header says nothing.
    for v in values("Auto-Submitted") {
        let k = keyword(&v);
        if !k.is_empty() && k != "no" {
            return Some(format!("Auto-Submitted: {k}"));
        }
    }
    // Presence conventions of vacation programs and autoresponders.
    for name in ["X-Autoreply", "X-Autorespond", "X-Autoresponder"] {
        for v in values(name) {
            let k = keyword(&v);
            if !k.is_empty() && !matches!(k.as_str(), "no" | "false" | "0" | "off") {
                return Some(format!("{name}: {k}"));
            }
        }
    }
    // "Reply" only: "Forward" and "Mirror" mark copies of a person's mail.
    for v in values("X-Autogenerated") {
        if keyword(&v).contains("reply") {
            return Some("X-Autogenerated: Reply".to_owned());
        }
    }
    for v in values("Precedence") {
        let k = keyword(&v);
        if matches!(
            k.as_str(),
            "auto_reply" | "auto-reply" | "bulk" | "junk" | "list"
        ) {
            return Some(format!("Precedence: {k}"));
        }
    }
    // Exchange stamps this on everything its inbox-rules agent sends (OOF
    // replies and rule replies) to break loops.
    if has_header(root, "X-MS-Exchange-Inbox-Rules-Loop") {
        return Some("X-MS-Exchange-Inbox-Rules-Loop".to_owned());
    }
    for v in values("X-MS-Exchange-Generated-Message-Source") {
        let l = v.to_lowercase();
        if l.contains("mailbox rules agent") || l.contains("auto") {
            return Some(format!("X-MS-Exchange-Generated-Message-Source: {v}"));
        }
    }
    // X-Auto-Response-Suppress ([MS-OXCMAIL] 2.2.3.2.20) asks the *recipient*
    // not to auto-answer; it says nothing by itself about who wrote the mail.
    // Exchange puts `All` on the mail it generates itself (OOF and inbox-rule
    // replies, next to X-MS-Exchange-Inbox-Rules-Loop) and helpdesks copy it
    // (Zendesk documents `Auto-Submitted: auto-generated` +
    // `X-Auto-Response-Suppress: All` on all its mail). Partial lists are on
    // mail people write: Outlook puts "RN, NRN, OOF"-style lists on meeting
    // requests and responses, and Exchange Online stamps
    // "DR, RN, NRN, OOF, AutoReply" on ordinary outbound mail of its users
    // (seen on plain Thunderbird, mutt and git-send-email mail relayed through
    // Microsoft 365). So only a value naming `All` is a signal; a list with
    // OOF/AutoReply is not.
    for v in values("X-Auto-Response-Suppress") {
        let all = v
            .split([',', ' ', ';'])
            .any(|t| t.trim().eq_ignore_ascii_case("all"));
        if all {
            return Some("X-Auto-Response-Suppress: All".to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    fn parse(raw: &[u8]) -> Message<'_> {
        MessageParser::default()
            .parse(raw)
            .expect("a parseable message")
    }

    fn kind_of(raw: &[u8]) -> MailKind {
        classify(&parse(raw))
    }

    /// A minimal message with the given extra header lines and subject.
    fn mail(extra: &str, subject: &str) -> String {
        format!(
            "From: Dana Whitfield <dana@northwind.test>\r\n\
             To: sales@example.com\r\n\
             Subject: {subject}\r\n\
             Date: Tue, 24 Nov 2026 11:02:00 +0000\r\n\
             Message-ID: <unit-1@northwind.test>\r\n\
             {extra}\
             \r\n\
             Hello.\r\n"
        )
    }

    fn why(kind: &MailKind) -> &str {
        match kind {
            MailKind::AutoReply { why } => why,
            other => panic!("expected an auto-reply, got {other:?}"),
        }
    }

    // -- the corpus ---------------------------------------------------------

    macro_rules! corpus {
        ($path:literal) => {
            (
                $path,
                include_bytes!(concat!("../../tests/corpus/", $path)) as &[u8],
            )
        };
    }

    const AUTOREPLIES: &[(&str, &[u8])] = &[
        corpus!("autoreply/exchange-oof.eml"),
        corpus!("autoreply/gmail-vacation.eml"),
        corpus!("autoreply/helpdesk-ack.eml"),
        corpus!("autoreply/subject-only-de.eml"),
        corpus!("autoreply/subject-only-fr.eml"),
        corpus!("autoreply/delay-dsn.eml"),
        corpus!("autoreply/read-receipt.eml"),
    ];

    const BOUNCES: &[(&str, &[u8])] = &[
        corpus!("bounce/postfix-dsn.eml"),
        corpus!("bounce/exim-bounce.eml"),
        corpus!("bounce/exchange-ndr.eml"),
        corpus!("bounce/gmail-bounce.eml"),
        corpus!("bounce/qmail-bounce.eml"),
    ];

    const ORDINARY: &[(&str, &[u8])] = &[
        corpus!("ordinary/customer-answer.eml"),
        corpus!("ordinary/mentions-out-of-office.eml"),
        corpus!("ordinary/non-english-answer.eml"),
        corpus!("ordinary/forwarded-thread.eml"),
        corpus!("ordinary/no-threading-headers.eml"),
        corpus!("ordinary/auto-submitted-no.eml"),
        corpus!("ordinary/outlook-meeting-like.eml"),
    ];

    fn all_corpus() -> impl Iterator<Item = &'static (&'static str, &'static [u8])> {
        AUTOREPLIES.iter().chain(BOUNCES).chain(ORDINARY)
    }

    #[test]
    fn corpus_files_are_crlf_with_unique_message_ids() {
        let mut seen = Vec::new();
        for (name, raw) in all_corpus() {
            for (i, &b) in raw.iter().enumerate() {
                if b == b'\n' {
                    assert!(i > 0 && raw[i - 1] == b'\r', "{name}: bare LF at byte {i}");
                }
            }
            let msg = parse(raw);
            let id = msg
                .message_id()
                .unwrap_or_else(|| panic!("{name}: no Message-ID"));
            assert!(
                !seen.contains(&id.to_owned()),
                "{name}: Message-ID {id} reused"
            );
            seen.push(id.to_owned());
        }
    }

    #[test]
    fn corpus_autoreplies_are_autoreplies() {
        for (name, raw) in AUTOREPLIES {
            match kind_of(raw) {
                MailKind::AutoReply { why } => assert!(!why.is_empty(), "{name}: empty why"),
                other => panic!("{name}: expected AutoReply, got {other:?}"),
            }
        }
    }

    #[test]
    fn corpus_autoreplies_give_the_expected_signal() {
        let expect = [
            ("autoreply/exchange-oof.eml", "Auto-Submitted: auto-replied"),
            (
                "autoreply/gmail-vacation.eml",
                "Auto-Submitted: auto-replied",
            ),
            (
                "autoreply/helpdesk-ack.eml",
                "Auto-Submitted: auto-generated",
            ),
            (
                "autoreply/subject-only-de.eml",
                "subject \"Abwesenheitsnotiz:\"",
            ),
            (
                "autoreply/subject-only-fr.eml",
                "subject \"Réponse automatique :\"",
            ),
            ("autoreply/delay-dsn.eml", "delivery delay report"),
            (
                "autoreply/read-receipt.eml",
                "read receipt (message/disposition-notification)",
            ),
        ];
        for (name, want) in expect {
            let (_, raw) = AUTOREPLIES
                .iter()
                .find(|(n, _)| *n == name)
                .expect("listed");
            assert_eq!(why(&kind_of(raw)), want, "{name}");
        }
    }

    #[test]
    fn corpus_bounces_name_the_bounced_message_and_recipient() {
        for (name, raw) in BOUNCES {
            let msg = parse(raw);
            let own = format!("<{}>", msg.message_id().expect("own id"));
            let MailKind::Bounce(report) = classify(&msg) else {
                panic!("{name}: expected Bounce, got {:?}", classify(&msg));
            };
            assert!(
                report
                    .original_message_ids
                    .contains(&"<alice-reply-1@example.com>".to_owned()),
                "{name}: ids {:?}",
                report.original_message_ids
            );
            assert_eq!(
                report.original_message_ids.first().map(String::as_str),
                Some("<alice-reply-1@example.com>"),
                "{name}: the bounced message's id comes first"
            );
            assert!(
                !report.original_message_ids.contains(&own),
                "{name}: own id {own} in {:?}",
                report.original_message_ids
            );
            assert!(
                report
                    .failed_recipients
                    .contains(&"dana@northwind.test".to_owned()),
                "{name}: recipients {:?}",
                report.failed_recipients
            );
            assert!(
                !report
                    .failed_recipients
                    .contains(&"sales@example.com".to_owned()),
                "{name}: the sender is not a failed recipient: {:?}",
                report.failed_recipients
            );
            assert!(report.diagnostic.chars().count() <= 200, "{name}");
            assert!(!report.diagnostic.chars().any(char::is_control), "{name}");
            assert!(
                report.diagnostic.contains("5.1.1") || report.diagnostic.contains("5.1.10"),
                "{name}: diagnostic {:?}",
                report.diagnostic
            );
        }
    }

    #[test]
    fn corpus_postfix_dsn_diagnostic_is_the_diagnostic_code_without_its_type() {
        let (_, raw) = BOUNCES[0];
        let MailKind::Bounce(report) = kind_of(raw) else {
            panic!("postfix-dsn is a bounce");
        };
        assert_eq!(
            report.diagnostic,
            "550 5.1.1 <dana@northwind.test>: Recipient address rejected: User unknown in virtual mailbox table"
        );
        assert_eq!(report.failed_recipients, vec!["dana@northwind.test"]);
    }

    #[test]
    fn corpus_ordinary_mail_is_ordinary() {
        for (name, raw) in ORDINARY {
            assert_eq!(kind_of(raw), MailKind::Ordinary, "{name}");
        }
    }

    #[test]
    fn classify_never_panics_on_truncated_or_garbled_corpus() {
        let parser = MessageParser::default();
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            // xorshift64*
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let mut parsed = 0usize;
        for (_, raw) in all_corpus() {
            // Every cut in the first KiB (headers, first boundaries), then
            // every 13th byte.
            let cuts = (0..raw.len().min(1024)).chain((1024..raw.len()).step_by(13));
            for cut in cuts {
                if let Some(msg) = parser.parse(&raw[..cut]) {
                    let _ = classify(&msg);
                    parsed += 1;
                }
            }
            // Garbled: random bytes overwritten, CRLFs and colons dropped in.
            for _ in 0..150 {
                let mut bytes = raw.to_vec();
                let edits = 1 + (next() % 24) as usize;
                for _ in 0..edits {
                    let at = (next() as usize) % bytes.len();
                    bytes[at] = match next() % 6 {
                        0 => b'\n',
                        1 => b':',
                        2 => b'-',
                        3 => b'<',
                        4 => 0xC3,
                        _ => (next() & 0xFF) as u8,
                    };
                }
                if let Some(msg) = parser.parse(&bytes) {
                    let _ = classify(&msg);
                    parsed += 1;
                }
            }
        }
        assert!(parsed > 1_000, "only {parsed} inputs parsed");
    }

    // -- headers -------------------------------------------------------------

    #[test]
    fn auto_submitted_values() {
        assert_eq!(
            kind_of(mail("Auto-Submitted: no\r\n", "Re: Pricing").as_bytes()),
            MailKind::Ordinary
        );
        assert_eq!(
            kind_of(mail("Auto-Submitted: No (a person)\r\n", "Re: Pricing").as_bytes()),
            MailKind::Ordinary
        );
        assert_eq!(
            why(&kind_of(
                mail("Auto-Submitted: auto-generated\r\n", "Re: Pricing").as_bytes()
            )),
            "Auto-Submitted: auto-generated"
        );
        assert_eq!(
            why(&kind_of(
                mail(
                    "Auto-Submitted: auto-replied; owner-email=\"dana@northwind.test\"\r\n",
                    "Re: Pricing"
                )
                .as_bytes()
            )),
            "Auto-Submitted: auto-replied"
        );
        assert_eq!(
            why(&kind_of(
                mail(
                    "auto-submitted:   Auto-Replied (vacation)\r\n",
                    "Re: Pricing"
                )
                .as_bytes()
            )),
            "Auto-Submitted: auto-replied"
        );
        assert_eq!(
            kind_of(mail("Auto-Submitted:\r\n", "Re: Pricing").as_bytes()),
            MailKind::Ordinary
        );
    }

    #[test]
    fn precedence_values() {
        for (value, signal) in [
            ("bulk", true),
            ("junk", true),
            ("list", true),
            ("auto_reply", true),
            ("Bulk", true),
            ("first-class", false),
            ("normal", false),
        ] {
            let kind = kind_of(mail(&format!("Precedence: {value}\r\n"), "Re: Pricing").as_bytes());
            if signal {
                assert_eq!(
                    why(&kind),
                    format!("Precedence: {}", value.to_lowercase()),
                    "{value}"
                );
            } else {
                assert_eq!(kind, MailKind::Ordinary, "{value}");
            }
        }
    }

    #[test]
    fn vendor_headers() {
        for (header, want) in [
            ("X-Autoreply: yes\r\n", Some("X-Autoreply: yes")),
            ("X-Autoreply: no\r\n", None),
            ("X-Autoreply: false\r\n", None),
            (
                "X-Autorespond: Autoresponder\r\n",
                Some("X-Autorespond: autoresponder"),
            ),
            ("X-Autogenerated: Reply\r\n", Some("X-Autogenerated: Reply")),
            ("X-Autogenerated: Forward\r\n", None),
            (
                "X-MS-Exchange-Inbox-Rules-Loop: dana@northwind.test\r\n",
                Some("X-MS-Exchange-Inbox-Rules-Loop"),
            ),
            (
                "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent\r\n",
                Some("X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent"),
            ),
            (
                "X-Auto-Response-Suppress: All\r\n",
                Some("X-Auto-Response-Suppress: All"),
            ),
            (
                "X-Auto-Response-Suppress: DR, RN, NRN, OOF, AutoReply\r\n",
                None,
            ),
            ("X-Auto-Response-Suppress: OOF\r\n", None),
            ("List-Id: <sales.northwind.test>\r\n", None),
        ] {
            let kind = kind_of(mail(header, "Re: Pricing").as_bytes());
            match want {
                Some(w) => assert_eq!(why(&kind), w, "{header}"),
                None => assert_eq!(kind, MailKind::Ordinary, "{header}"),
            }
        }
    }

    #[test]
    fn subject_prefixes_classify_and_body_words_do_not() {
        let k = kind_of(mail("", "Automatic reply: Re: Pricing").as_bytes());
        assert_eq!(why(&k), "subject \"Automatic reply:\"");
        let k = kind_of(mail("", "=?UTF-8?B?6Ieq5Yqo5Zue5aSN77yaUmU6IFByaWNpbmc=?=").as_bytes());
        assert_eq!(why(&k), "subject \"自动回复：\"");
        let body_only = "From: dana@northwind.test\r\nSubject: Re: Pricing\r\nMessage-ID: <b@n.test>\r\n\r\nAutomatic reply: I am out of office until Monday.\r\n";
        assert_eq!(kind_of(body_only.as_bytes()), MailKind::Ordinary);
        assert_eq!(
            kind_of(mail("", "Re: Automatic reply: Pricing").as_bytes()),
            MailKind::Ordinary
        );
    }

    #[test]
    fn strip_prefixes() {
        let cases = [
            ("Automatic reply: Re: Pricing", "Re: Pricing"),
            ("automatic REPLY:Re: Pricing", "Re: Pricing"),
            (
                "Abwesenheitsnotiz: Re: Pricing for 40 seats",
                "Re: Pricing for 40 seats",
            ),
            ("Réponse automatique : Re: Pricing", "Re: Pricing"),
            ("RÉPONSE AUTOMATIQUE: Offre", "Offre"),
            ("Respuesta automática: Re: Precio", "Re: Precio"),
            ("Risposta automatica: Re: Prezzo", "Re: Prezzo"),
            ("Automatisch antwoord: Re: Prijs", "Re: Prijs"),
            ("Автоматический ответ: Re: Цена", "Re: Цена"),
            ("自动回复: Re: Pricing", "Re: Pricing"),
            ("自動応答： Re: Pricing", "Re: Pricing"),
            ("자동 회신: Re: Pricing", "Re: Pricing"),
            ("Otomatik yanıt: Re: Fiyat", "Re: Fiyat"),
            ("Out of Office AutoReply: Pricing", "Pricing"),
            ("Out of  Office: Pricing", "Pricing"),
            ("  Auto-Reply: Pricing", "Pricing"),
            // Repeated, mixed.
            (
                "Automatic reply: Abwesenheitsnotiz: AutoReply: Re: Pricing",
                "Re: Pricing",
            ),
            // Untouched.
            ("Re: Pricing", "Re: Pricing"),
            (
                "Re: Automatic reply: Pricing",
                "Re: Automatic reply: Pricing",
            ),
            ("Automation reply times", "Automation reply times"),
            ("Auto Response Times: Q3", "Auto Response Times: Q3"),
            ("Automatic replyX: y", "Automatic replyX: y"),
            ("Out of office", "Out of office"),
            ("", ""),
            ("  ", "  "),
        ];
        for (input, want) in cases {
            assert_eq!(strip_auto_reply_prefix(input), want, "{input:?}");
        }
    }

    // -- reports ---------------------------------------------------------------

    fn dsn(action: &str, status: &str) -> String {
        format!(
            "From: MAILER-DAEMON@mx.northwind.test (Mail Delivery System)\r\n\
             To: sales@example.com\r\n\
             Subject: Mail status\r\n\
             Message-ID: <dsn-unit@mx.northwind.test>\r\n\
             Auto-Submitted: auto-replied\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\
             \r\n\
             --b\r\n\
             Content-Type: text/plain\r\n\
             \r\n\
             Report.\r\n\
             --b\r\n\
             Content-Type: message/delivery-status\r\n\
             \r\n\
             Reporting-MTA: dns; mx.northwind.test\r\n\
             \r\n\
             Final-Recipient: rfc822; Dana@Northwind.test\r\n\
             Action: {action}\r\n\
             Status: {status}\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 user\r\n\
             \x20unknown\r\n\
             \r\n\
             --b\r\n\
             Content-Type: text/rfc822-headers\r\n\
             \r\n\
             From: sales@example.com\r\n\
             To: dana@northwind.test\r\n\
             Message-ID:\r\n\
             \x20<alice-reply-1@example.com>\r\n\
             \r\n\
             --b--\r\n"
        )
    }

    #[test]
    fn dsn_actions() {
        let MailKind::Bounce(r) = kind_of(dsn("failed", "5.1.1").as_bytes()) else {
            panic!("failed is a bounce");
        };
        assert_eq!(r.original_message_ids, vec!["<alice-reply-1@example.com>"]);
        assert_eq!(r.failed_recipients, vec!["dana@northwind.test"]);
        assert_eq!(r.diagnostic, "550 5.1.1 user unknown");
        assert_eq!(
            why(&kind_of(dsn("delayed", "4.4.1").as_bytes())),
            "delivery delay report"
        );
        assert_eq!(
            why(&kind_of(dsn("delivered", "2.0.0").as_bytes())),
            "delivery status report (Action: delivered)"
        );
        assert_eq!(
            why(&kind_of(dsn("relayed", "2.0.0").as_bytes())),
            "delivery status report (Action: relayed)"
        );
    }

    /// `raw` with its returned `message/rfc822` part cut off (the report then
    /// has to be read from its other parts).
    fn without_returned_message(raw: &[u8]) -> String {
        let raw = String::from_utf8_lossy(raw).into_owned();
        let ct = raw
            .find("\r\nContent-Type: message/rfc822\r\n")
            .expect("a returned message part");
        let line_start = raw[..ct].rfind("\r\n").expect("a boundary line") + 2;
        let boundary = raw[line_start..ct].to_owned();
        format!("{}{boundary}--\r\n", &raw[..line_start])
    }

    #[test]
    fn gmail_id_comes_from_x_original_message_id_without_the_returned_message() {
        let raw = without_returned_message(BOUNCES[3].1);
        assert!(!raw.contains("Content-Type: message/rfc822"));
        let MailKind::Bounce(r) = kind_of(raw.as_bytes()) else {
            panic!("still a bounce");
        };
        assert_eq!(r.original_message_ids, vec!["<alice-reply-1@example.com>"]);
    }

    #[test]
    fn exchange_id_comes_from_the_quoted_headers_without_the_returned_message() {
        let raw = without_returned_message(BOUNCES[2].1);
        assert!(!raw.contains("Content-Type: message/rfc822"));
        let MailKind::Bounce(r) = kind_of(raw.as_bytes()) else {
            panic!("still a bounce");
        };
        assert_eq!(r.original_message_ids, vec!["<alice-reply-1@example.com>"]);
        assert_eq!(r.failed_recipients, vec!["dana@northwind.test"]);
    }

    #[test]
    fn dsn_blocks_in_any_order_and_without_blank_lines() {
        // Exim writes Action before Final-Recipient; a sloppy generator runs
        // two recipients together; only the failed one is reported.
        let raw = "From: Mail Delivery System <Mailer-Daemon@mx.northwind.test>\r\n\
                   To: sales@example.com\r\n\
                   Subject: Mail delivery failed: returning message to sender\r\n\
                   Message-ID: <E1exim-unit@mx.northwind.test>\r\n\
                   Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\
                   MIME-Version: 1.0\r\n\
                   \r\n\
                   --b\r\n\
                   Content-type: text/plain; charset=us-ascii\r\n\
                   \r\n\
                   This message was created automatically by mail delivery software.\r\n\
                   --b\r\n\
                   Content-type: message/delivery-status\r\n\
                   \r\n\
                   Reporting-MTA: dns; mx.northwind.test\r\n\
                   \r\n\
                   Action: failed\r\n\
                   Final-Recipient: rfc822;Dana@Northwind.test\r\n\
                   Status: 5.0.0\r\n\
                   Action: delayed\r\n\
                   Final-Recipient: rfc822;sam@northwind.test\r\n\
                   Status: 4.4.1\r\n\
                   \r\n\
                   --b\r\n\
                   Content-type: message/rfc822\r\n\
                   \r\n\
                   From: sales@example.com\r\n\
                   Message-ID: <alice-reply-1@example.com>\r\n\
                   \r\n\
                   Hi\r\n\
                   --b--\r\n";
        let MailKind::Bounce(r) = kind_of(raw.as_bytes()) else {
            panic!("a bounce");
        };
        assert_eq!(r.failed_recipients, vec!["dana@northwind.test"]);
        assert_eq!(r.original_message_ids, vec!["<alice-reply-1@example.com>"]);
        assert_eq!(r.diagnostic, "5.0.0");
    }

    #[test]
    fn forwarded_bounce_is_not_a_bounce() {
        let (_, bounce) = BOUNCES[0];
        let fwd = format!(
            "From: Dana Whitfield <dana@northwind.test>\r\n\
             To: sales@example.com\r\n\
             Subject: Fwd: Undelivered Mail Returned to Sender\r\n\
             Message-ID: <fwd-unit@northwind.test>\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
             \r\n\
             --outer\r\n\
             Content-Type: text/plain\r\n\
             \r\n\
             Our IT says this was a typo on our side, please resend.\r\n\
             --outer\r\n\
             Content-Type: message/rfc822\r\n\
             \r\n\
             {}\r\n\
             --outer--\r\n",
            String::from_utf8_lossy(bounce)
        );
        assert_eq!(kind_of(fwd.as_bytes()), MailKind::Ordinary);
    }

    #[test]
    fn bounced_subject_saying_delayed_is_still_a_bounce() {
        let (_, raw) = BOUNCES[1];
        // Without X-Failed-Recipients, so only the subject and text decide.
        let raw = String::from_utf8_lossy(raw)
            .replace(
                "Subject: Mail delivery failed: returning message to sender",
                "Subject: Mail delivery failed: Re: Delayed invoice",
            )
            .replace("X-Failed-Recipients: dana@northwind.test\r\n", "");
        assert!(raw.contains("Delayed invoice") && !raw.contains("X-Failed"));
        assert!(matches!(kind_of(raw.as_bytes()), MailKind::Bounce(_)));
    }

    #[test]
    fn postmaster_person_without_bounce_body_is_ordinary() {
        let raw = "From: Postmaster <postmaster@northwind.test>\r\nTo: sales@example.com\r\nSubject: Re: Pricing for 40 seats\r\nMessage-ID: <pm-1@northwind.test>\r\n\r\nWe fixed Dana's mailbox, please resend.\r\n";
        assert_eq!(kind_of(raw.as_bytes()), MailKind::Ordinary);
    }

    #[test]
    fn exim_delay_warning_is_an_autoreply() {
        let raw = "From: Mail Delivery System <Mailer-Daemon@mx.northwind.test>\r\n\
                   To: sales@example.com\r\n\
                   Subject: Warning: message 1kXyZa-000Abc-7Q delayed 24 hours\r\n\
                   Message-ID: <E1kXyZb-000Abd-8R@mx.northwind.test>\r\n\
                   \r\n\
                   This message was created automatically by mail delivery software.\r\n\
                   A message that you sent has not yet been delivered to one or more of its\r\n\
                   recipients after more than 24 hours on the queue on mx.northwind.test.\r\n\
                   \r\n\
                   ------ This is a copy of the message's headers. ------\r\n\
                   \r\n\
                   From: \"Alice Rep\" <sales@example.com>\r\n\
                   Message-ID: <alice-reply-1@example.com>\r\n";
        assert_eq!(why(&kind_of(raw.as_bytes())), "delivery delay report");
    }

    #[test]
    fn bounce_ids_exclude_the_bounce_itself() {
        // A bounce whose quoted copy carries the bounce's own id (broken MTA)
        // falls back to In-Reply-To.
        let raw = "From: MAILER-DAEMON@mx.northwind.test\r\n\
                   To: sales@example.com\r\n\
                   Subject: failure notice\r\n\
                   Message-ID: <self@mx.northwind.test>\r\n\
                   In-Reply-To: <alice-reply-1@example.com>\r\n\
                   \r\n\
                   Hi. This is the qmail-send program at mx.northwind.test.\r\n\
                   <dana@northwind.test>:\r\n\
                   Sorry, no mailbox here by that name. (#5.1.1)\r\n\
                   \r\n\
                   --- Below this line is a copy of the message.\r\n\
                   \r\n\
                   From: sales@example.com\r\n\
                   Message-ID: <self@mx.northwind.test>\r\n";
        let MailKind::Bounce(r) = kind_of(raw.as_bytes()) else {
            panic!("a qmail bounce");
        };
        assert_eq!(r.original_message_ids, vec!["<alice-reply-1@example.com>"]);
        assert_eq!(r.failed_recipients, vec!["dana@northwind.test"]);
    }

    #[test]
    fn sanitize_makes_one_short_line() {
        let long = format!("550\t5.1.1\r\n<x@y>:\x07 {}", "a".repeat(500));
        let s = sanitize(&long);
        assert!(s.starts_with("550 5.1.1 <x@y>: aaa"));
        assert_eq!(s.chars().count(), 200);
        assert!(!s.chars().any(char::is_control));
    }

    #[test]
    fn smtp_reply_is_found_and_dates_are_not() {
        assert_eq!(
            smtp_reply_line("host mx.northwind.test [203.0.113.25]: 550 5.1.1 <a@b.c>: no"),
            Some("550 5.1.1 <a@b.c>: no".to_owned())
        );
        assert_eq!(
            smtp_reply_line("Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound'"),
            Some("550 5.1.10 RESOLVER.ADR.RecipientNotFound".to_owned())
        );
        assert_eq!(
            smtp_reply_line("Arrival-Date: Tue, 24 Nov 2026 10:15:00 +0000"),
            None
        );
        assert_eq!(
            smtp_reply_line("it will be retried for 500 2026 hours"),
            None
        );
    }
}
