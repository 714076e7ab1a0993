//! The lead card: a message leadgate writes for each lead and serves in the
//! lead's folders, threaded into its conversation (never stored upstream).
//! Pure: the same [`CardInput`] always gives the same bytes, so a card can
//! be rendered again whenever a client fetches it and its size stays what
//! the client was told.
//!
//! The steps of [`render`]:
//!
//! 1. Text and HTML bodies from the lead (owner, status, next action,
//!    follow-up, context, value signals, handoffs, notes newest first, the
//!    last audit events, the last refused command) and a help block for the
//!    reply commands. Everything that came from mail is one-lined in
//!    headers (`header_safe`: no CR/LF, so no header can be added) and
//!    HTML-escaped in the HTML part.
//! 2. Both parts quoted-printable, in a `multipart/alternative` whose
//!    boundary (`=_lgcard...`) cannot occur in quoted-printable text.
//! 3. Headers: `From: "leadgate" <leadgate@HOST>`, the subject
//!    `Lead 42 · Dana Smith · Quote sent · alice · follow-up 2026-12-10`,
//!    `Date` (the lead's last change), `In-Reply-To`/`References` (the
//!    lead's first message, so clients thread the card into it) and
//!    `Reply-To: notes+42@...` (a reply is a note and commands).
//! 4. The card's version is a hash of all that; `Message-ID:
//!    <lead-42.card-<version>@HOST>` is added last. A lead whose card reads
//!    the same keeps its version (and its place in the folders).
//!
//! Plain layout, no colours: readable in Outlook and Thunderbird, in light
//! and dark mode alike (the HTML sets no background and no text colour).

use std::fmt::Write;

use chrono_tz::Tz;
use sha2::{Digest, Sha256};

use crate::{
    compose::{escape_markup, header_safe, quoted_printable},
    leads::Lead,
    store::audit::AuditEvent,
};

/// Audit events read for a card (the newest); the card lists
/// [`SHOWN_EVENTS`] of them and looks for the last refusal in all.
pub const READ_EVENTS: usize = 25;
const SHOWN_EVENTS: usize = 8;
const SHOWN_NOTES: usize = 20;
const SHOWN_HANDOFFS: usize = 10;
/// Longest text of one note or handoff note on the card (characters).
const MAX_NOTE: usize = 2_000;
/// Longest one-line value (contact, next action, ...) on the card.
const MAX_FIELD: usize = 200;

/// Everything a card shows.
pub struct CardInput<'a> {
    pub lead: &'a Lead,
    /// Message-ID of the lead's first message, with angle brackets.
    pub thread_root: Option<&'a str>,
    /// The lead's newest audit events, newest first.
    pub events: &'a [AuditEvent],
    pub hostname: &'a str,
    /// The notes address (`notes@example.com`); replies go to
    /// `notes+<id>@example.com`. `None`: no Reply-To, no command help.
    pub notes_address: Option<&'a str>,
    pub tz: Tz,
}

/// A rendered card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// The whole message (header block and body).
    pub bytes: Vec<u8>,
    /// Nonzero; changes whenever anything on the card changes.
    pub version: u32,
    /// What the envelope needs (header values as in the message).
    pub date: String,
    pub subject: String,
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub from: (String, String, String),
    pub reply_to: Option<(String, String, String)>,
    /// The two parts' encoded (size, lines): text, html.
    pub parts: [(u32, u32); 2],
    pub boundary: String,
}

/// The address a reply to lead `id`'s card goes to.
pub fn notes_address_of(notes: &str, id: u64) -> Option<String> {
    let (local, domain) = notes.rsplit_once('@')?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
    };
    (ok(local) && ok(domain)).then(|| format!("{local}+{id}@{domain}"))
}

fn host_of(hostname: &str) -> String {
    let host: String = hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
        .collect();
    if host.is_empty() {
        "leadgate".into()
    } else {
        host
    }
}

/// One line, at most `max` characters, no control characters.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.split_whitespace().collect::<Vec<_>>().join(" ");
    shorten(&flat, max)
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Multi-line text from mail: no control characters but line ends.
fn block(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .filter(|c| *c != '\r')
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect();
    shorten(clean.trim(), max)
}

fn when(at: i64, tz: Tz) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|d| d.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "?".into())
}

fn day(at: i64, tz: Tz) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|d| d.with_timezone(&tz).format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "?".into())
}

fn duration(secs: i64) -> String {
    let m = secs / 60;
    match m {
        0 => "under a minute".into(),
        m if m < 60 => format!("{m} min"),
        m if m < 48 * 60 => format!("{} h {} min", m / 60, m % 60),
        m => format!("{} days {} h", m / 1440, (m % 1440) / 60),
    }
}

/// The status as people say it: "Closed (No response)".
fn status_text(lead: &Lead) -> String {
    match lead.outcome {
        Some(o) if !lead.status.is_active() && o.label() != lead.status.label() => {
            format!("{} ({})", lead.status.label(), o.label())
        }
        _ => lead.status.label().to_owned(),
    }
}

fn contact_or_company(lead: &Lead) -> String {
    let name = lead.contact_name.as_deref().unwrap_or("").trim();
    if !name.is_empty() {
        return one_line(name, 60);
    }
    if !lead.company_domain.is_empty() {
        return one_line(&lead.company_domain, 60);
    }
    one_line(&lead.contact_email, 60)
}

/// An audit event as one line: "2026-12-03 10:00 maria lead.handoff: ...".
fn event_line(ev: &AuditEvent, tz: Tz) -> String {
    let mut what = String::new();
    for c in &ev.changes {
        if !what.is_empty() {
            what.push_str("; ");
        }
        let before = if c.before.is_empty() { "-" } else { &c.before };
        let after = if c.after.is_empty() { "-" } else { &c.after };
        let _ = write!(what, "{} {before} → {after}", c.field);
    }
    if what.is_empty() {
        what = ev.reason.clone();
    }
    one_line(
        &format!(
            "{} {} {}: {what}",
            when(ev.at.div_euclid(1000), tz),
            ev.actor,
            ev.action
        ),
        MAX_FIELD,
    )
}

/// The card's body as (label, value) rows and lists, shared by both parts.
struct Content {
    title: String,
    rows: Vec<(&'static str, String)>,
    refused: Option<String>,
    handoffs: Vec<String>,
    notes: Vec<(String, String)>,
    events: Vec<String>,
    help: Option<String>,
}

fn content(input: &CardInput<'_>, reply_to: Option<&str>) -> Content {
    let lead = input.lead;
    let tz = input.tz;
    let contact = match lead.contact_name.as_deref().map(str::trim) {
        Some(n) if !n.is_empty() => format!("{n} <{}>", lead.contact_email),
        _ => lead.contact_email.clone(),
    };
    let follow_up = match (lead.due, lead.due_kind) {
        (Some(at), Some(kind)) => format!("{} ({})", when(at, tz), kind.label()),
        (Some(at), None) => when(at, tz),
        (None, _) => "none".into(),
    };
    let mut value = lead.value_signals.join(", ");
    for (flag, label) in [(lead.high_value, "high value"), (lead.urgent, "urgent")] {
        if flag {
            if !value.is_empty() {
                value.push_str("; ");
            }
            value.push_str(label);
        }
    }
    let first_response = match lead.first_response_secs() {
        Some(s) => duration(s),
        None if lead.category.in_sales_queues() => "not yet".into(),
        None => "not needed".into(),
    };
    let mut rows = vec![
        (
            "Owner",
            lead.owner.clone().unwrap_or_else(|| "unassigned".into()),
        ),
        ("Status", status_text(lead)),
        (
            "Next action",
            lead.next_action.clone().unwrap_or_else(|| "none".into()),
        ),
        ("Follow-up", follow_up),
        ("Category", lead.category.label().to_owned()),
        ("Source", lead.source.clone()),
        ("Contact", contact),
        ("Company", lead.company_domain.clone()),
        ("Subject", lead.subject.clone()),
        (
            "Value signals",
            if value.is_empty() {
                "none".into()
            } else {
                value
            },
        ),
        ("First response", first_response),
    ];
    if lead.escalated {
        rows.push((
            "Escalated",
            lead.escalated_to
                .clone()
                .map_or_else(|| "yes".into(), |m| format!("to {m}")),
        ));
    }
    for row in &mut rows {
        row.1 = one_line(&row.1, MAX_FIELD);
    }
    let refused = input
        .events
        .iter()
        .find(|e| e.action.ends_with(".refused"))
        .map(|e| {
            one_line(
                &format!(
                    "{} {}: {}",
                    when(e.at.div_euclid(1000), tz),
                    e.actor,
                    e.reason
                ),
                MAX_FIELD,
            )
        });
    let handoffs = lead
        .handoffs
        .iter()
        .rev()
        .take(SHOWN_HANDOFFS)
        .map(|h| {
            let from = h.from.as_deref().unwrap_or("unassigned");
            let to = h.to.as_deref().unwrap_or("unassigned");
            let mut line = format!("{} {from} → {to} by {}", when(h.at, tz), h.by);
            if !h.note.trim().is_empty() {
                line.push_str(": ");
                line.push_str(&block(&h.note, MAX_NOTE));
            }
            line
        })
        .collect();
    let mut notes: Vec<&crate::model::Note> = lead.notes.iter().collect();
    notes.sort_by_key(|n| std::cmp::Reverse(n.at));
    let notes = notes
        .into_iter()
        .take(SHOWN_NOTES)
        .map(|n| {
            (
                format!("{} {}", when(n.at, tz), one_line(&n.author, 64)),
                block(&n.text, MAX_NOTE),
            )
        })
        .collect();
    let events = input
        .events
        .iter()
        .take(SHOWN_EVENTS)
        .map(|e| event_line(e, tz))
        .collect();
    let help = reply_to.map(|addr| {
        format!(
            "Reply to this message (it goes to {addr}, never to the customer) to act on lead {}. \
             Lines at the top of your reply are commands:\n\
             /status quote sent    /follow-up next week    /next <the next action>\n\
             /handoff bob <note>   /assign bob             /close won    /reopen    /escalate\n\
             The rest of your reply is added as an internal note.",
            lead.id
        )
    });
    Content {
        title: one_line(
            &format!("Lead {} · {}", lead.id, contact_or_company(lead)),
            MAX_FIELD,
        ),
        rows,
        refused,
        handoffs,
        notes,
        events,
        help,
    }
}

fn text_part(c: &Content) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}\n", c.title);
    for (label, value) in &c.rows {
        let _ = writeln!(out, "{:<16}{value}", format!("{label}:"));
    }
    if let Some(r) = &c.refused {
        let _ = writeln!(out, "{:<16}{r}", "Last refused:");
    }
    let list = |out: &mut String, title: &str, items: &[String]| {
        if items.is_empty() {
            return;
        }
        let _ = writeln!(out, "\n{title}");
        for i in items {
            let _ = writeln!(out, "- {}", i.replace('\n', "\n  "));
        }
    };
    list(&mut out, "Handoffs (newest first)", &c.handoffs);
    let notes: Vec<String> = c
        .notes
        .iter()
        .map(|(head, text)| format!("{head}:\n{text}"))
        .collect();
    list(&mut out, "Internal notes (newest first)", &notes);
    list(&mut out, "Recent activity", &c.events);
    if let Some(help) = &c.help {
        let _ = writeln!(out, "\n-- \n{help}");
    }
    out
}

fn html_part(c: &Content) -> String {
    let e = escape_markup;
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\n\
         <body style=\"font-family: sans-serif; font-size: 14px;\">\n",
    );
    let _ = writeln!(out, "<p><b>{}</b></p>", e(&c.title));
    out.push_str("<table cellpadding=\"2\" cellspacing=\"0\" border=\"0\">\n");
    let row = |out: &mut String, label: &str, value: &str| {
        let _ = writeln!(
            out,
            "<tr><td valign=\"top\"><b>{}</b></td><td>{}</td></tr>",
            e(label),
            e(value)
        );
    };
    for (label, value) in &c.rows {
        row(&mut out, label, value);
    }
    if let Some(r) = &c.refused {
        row(&mut out, "Last refused", r);
    }
    out.push_str("</table>\n");
    let list = |out: &mut String, title: &str, items: &mut dyn Iterator<Item = String>| {
        let items: Vec<String> = items.collect();
        if items.is_empty() {
            return;
        }
        let _ = writeln!(out, "<p><b>{}</b></p>\n<ul>", e(title));
        for i in items {
            let _ = writeln!(out, "<li>{i}</li>");
        }
        out.push_str("</ul>\n");
    };
    let multiline = |t: &str| e(t).replace('\n', "<br>\n");
    list(
        &mut out,
        "Handoffs (newest first)",
        &mut c.handoffs.iter().map(|h| multiline(h)),
    );
    list(
        &mut out,
        "Internal notes (newest first)",
        &mut c
            .notes
            .iter()
            .map(|(head, text)| format!("<i>{}</i><br>\n{}", e(head), multiline(text))),
    );
    list(
        &mut out,
        "Recent activity",
        &mut c.events.iter().map(|l| e(l)),
    );
    if let Some(help) = &c.help {
        let _ = writeln!(
            out,
            "<hr>\n<p style=\"font-size: 12px;\">{}</p>",
            // The command columns keep their spacing.
            multiline(help).replace("  ", " &nbsp;")
        );
    }
    out.push_str("</body></html>\n");
    out
}

fn lines(encoded: &str) -> u32 {
    encoded.matches("\r\n").count() as u32
}

/// Renders the card (see the module docs for the steps).
pub fn render(input: &CardInput<'_>) -> Card {
    let lead = input.lead;
    let host = host_of(input.hostname);
    let reply_to = input
        .notes_address
        .and_then(|n| notes_address_of(n, lead.id));
    // 1. Bodies.
    let c = content(input, reply_to.as_deref());
    let text = quoted_printable(&text_part(&c));
    let html = quoted_printable(&html_part(&c));
    let boundary = format!("=_lgcard_{}", lead.id);
    // 2. The multipart body.
    let mut body = String::new();
    let _ = write!(
        body,
        "This is a lead card from leadgate.\r\n\r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n\
         {text}\r\n\
         --{boundary}\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n\
         {html}\r\n\
         --{boundary}--\r\n"
    );
    // 3. Headers.
    let follow_up = lead
        .due
        .map_or_else(|| "none".into(), |at| day(at, input.tz));
    let subject = header_safe(&format!(
        "Lead {} · {} · {} · {} · follow-up {follow_up}",
        lead.id,
        contact_or_company(lead),
        status_text(lead),
        one_line(lead.owner.as_deref().unwrap_or("unassigned"), 64),
    ));
    let changed = input
        .events
        .iter()
        .map(|e| e.at.div_euclid(1000))
        .chain([lead.updated, lead.created])
        .max()
        .unwrap_or(0);
    let date = chrono::DateTime::from_timestamp(changed, 0)
        .unwrap_or_default()
        .with_timezone(&input.tz)
        .to_rfc2822();
    // A Message-ID from mail, as it is used in threading: `<...>`, one token.
    let root = input
        .thread_root
        .map(|r| r.trim())
        .filter(|r| {
            r.len() <= 250
                && r.starts_with('<')
                && r.ends_with('>')
                && r.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(str::to_owned);
    let mut head = String::new();
    let _ = write!(
        head,
        "From: \"leadgate\" <leadgate@{host}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n"
    );
    if let Some(r) = &root {
        let _ = write!(head, "In-Reply-To: {r}\r\nReferences: {r}\r\n");
    }
    if let Some(addr) = &reply_to {
        let _ = write!(head, "Reply-To: \"Lead {} notes\" <{addr}>\r\n", lead.id);
    }
    let _ = write!(
        head,
        "Auto-Submitted: auto-generated\r\n\
         X-Leadgate-Card: {}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\
         \r\n",
        lead.id
    );
    // 4. The version covers everything; the Message-ID names it.
    let digest = Sha256::new()
        .chain_update(head.as_bytes())
        .chain_update(body.as_bytes())
        .finalize();
    let version = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]).max(1);
    let message_id = format!("<lead-{}.card-{version:08x}@{host}>", lead.id);
    let mut bytes = Vec::with_capacity(head.len() + body.len() + 64);
    bytes.extend_from_slice(format!("Message-ID: {message_id}\r\n").as_bytes());
    bytes.extend_from_slice(head.as_bytes());
    bytes.extend_from_slice(body.as_bytes());
    let split = |addr: &str| -> (String, String, String) {
        let (l, d) = addr.rsplit_once('@').unwrap_or((addr, ""));
        (String::new(), l.to_owned(), d.to_owned())
    };
    Card {
        bytes,
        version,
        date,
        subject,
        message_id,
        in_reply_to: root,
        from: ("leadgate".into(), "leadgate".into(), host.clone()),
        reply_to: reply_to.as_deref().map(|a| {
            let (_, l, d) = split(a);
            (format!("Lead {} notes", lead.id), l, d)
        }),
        parts: [
            (text.len() as u32, lines(&text)),
            (html.len() as u32, lines(&html)),
        ],
        boundary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Handoff, Note, Status};

    fn lead() -> Lead {
        Lead {
            id: 42,
            created: 1_795_000_000,
            updated: 1_795_100_000,
            status: Status::QuoteSent,
            owner: Some("alice".into()),
            contact_name: Some("Dana Smith".into()),
            contact_email: "dana@northwind.test".into(),
            company_domain: "northwind.test".into(),
            source: "sales@example.com".into(),
            subject: "Quote for 50 seats".into(),
            value_signals: vec!["50 seats".into()],
            due: Some(1_795_500_000),
            due_kind: Some(crate::model::DueKind::FollowUp),
            first_inbound_at: 1_795_000_000,
            first_response_at: Some(1_795_007_800),
            notes: vec![
                Note {
                    at: 1_795_050_000,
                    author: "bob".into(),
                    text: "older note".into(),
                },
                Note {
                    at: 1_795_060_000,
                    author: "alice".into(),
                    text: "newer note".into(),
                },
            ],
            handoffs: vec![Handoff {
                at: 1_795_040_000,
                from: Some("bob".into()),
                to: Some("alice".into()),
                by: "maria".into(),
                note: "Wants the annual plan".into(),
            }],
            ..Lead::default()
        }
    }

    fn input(lead: &Lead) -> CardInput<'_> {
        CardInput {
            lead,
            thread_root: Some("<q1@customer.test>"),
            events: &[],
            hostname: "gw.example.com",
            notes_address: Some("notes@example.com"),
            tz: chrono_tz::UTC,
        }
    }

    fn text(card: &Card) -> String {
        String::from_utf8(card.bytes.clone()).unwrap()
    }

    /// Quoted-printable undone (enough for the tests: soft breaks and =XX).
    fn decoded(card: &Card) -> String {
        let t = text(card);
        let body = &t[t.find("\r\n\r\n").unwrap()..];
        let raw = body.replace("=\r\n", "");
        let bytes = raw.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' && i + 2 < bytes.len() {
                if let Ok(b) = u8::from_str_radix(&raw[i + 1..i + 3], 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn card_threads_into_the_lead_and_replies_go_to_its_notes_address() {
        let l = lead();
        let card = render(&input(&l));
        let t = text(&card);
        assert!(t.starts_with("Message-ID: <lead-42.card-"));
        assert!(t.contains("\r\nFrom: \"leadgate\" <leadgate@gw.example.com>\r\n"));
        assert!(
            t.contains("\r\nIn-Reply-To: <q1@customer.test>\r\nReferences: <q1@customer.test>\r\n")
        );
        assert!(t.contains("\r\nReply-To: \"Lead 42 notes\" <notes+42@example.com>\r\n"));
        assert_eq!(
            card.subject,
            header_safe("Lead 42 · Dana Smith · Quote sent · alice · follow-up 2026-11-24")
        );
        let d = decoded(&card);
        assert!(d.contains("Owner:          alice"), "{d}");
        assert!(d.contains("First response: 2 h 10 min"));
        let newer = d.find("newer note").unwrap();
        let older = d.find("older note").unwrap();
        assert!(newer < older, "notes newest first");
        assert!(d.contains("bob → alice by maria: Wants the annual plan"));
        assert!(d.contains("/status quote sent"));
    }

    #[test]
    fn card_is_deterministic_and_its_version_follows_its_content() {
        let l = lead();
        let a = render(&input(&l));
        assert_eq!(a, render(&input(&l)));
        let mut changed = l.clone();
        changed.next_action = Some("Call Dana".into());
        let b = render(&input(&changed));
        assert_ne!(a.version, b.version);
        assert_ne!(a.message_id, b.message_id);
        let size: usize = a.bytes.len();
        assert!(size < 16 * 1024, "a small lead has a small card: {size}");
    }

    #[test]
    fn hostile_text_from_mail_is_escaped_and_adds_no_header() {
        let mut l = lead();
        l.contact_name = Some("Eve <script>alert(1)</script>\r\nBcc: victim@x.test".into());
        l.subject = "Hi\r\nX-Injected: yes\r\n\r\n<img src=x onerror=alert(1)>".into();
        l.notes.push(Note {
            at: 1_795_070_000,
            author: "eve".into(),
            text: "</td></tr></table><script>steal()</script>\r\nContent-Type: text/html".into(),
        });
        let card = render(&input(&l));
        let t = text(&card);
        let head = &t[..t.find("\r\n\r\n").unwrap()];
        for line in head.split("\r\n") {
            let name = line.split(':').next().unwrap();
            assert!(
                [
                    "Message-ID",
                    "From",
                    "Subject",
                    "Date",
                    "In-Reply-To",
                    "References",
                    "Reply-To",
                    "Auto-Submitted",
                    "X-Leadgate-Card",
                    "MIME-Version",
                    "Content-Type"
                ]
                .contains(&name),
                "unexpected header line {line:?}"
            );
        }
        let d = decoded(&card);
        let html = &d[d.find("<!DOCTYPE html>").unwrap()..];
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("style=\"background") && !html.contains("color:"));
    }

    #[test]
    fn last_refused_command_shows_on_the_card() {
        let l = lead();
        let ev = AuditEvent {
            seq: 9,
            at: 1_795_200_000_000,
            actor: "bob".into(),
            action: "lead.status.refused".into(),
            lead: Some(42),
            changes: Vec::new(),
            reason: "set status to Won: bob does not own lead 42".into(),
            prev: String::new(),
            hash: String::new(),
            v: 2,
            pd: None,
            erased: false,
        };
        let events = [ev];
        let card = render(&CardInput {
            events: &events,
            ..input(&l)
        });
        let d = decoded(&card);
        assert!(d.contains("Last refused:   2026-11-20 18:40 bob"), "{d}");
        assert!(d.contains("bob does not own lead 42"));
        assert!(card.date.contains("2026"), "date follows the newest event");
    }

    #[test]
    fn the_notes_address_names_the_lead() {
        assert_eq!(
            notes_address_of("notes@example.com", 7).as_deref(),
            Some("notes+7@example.com")
        );
        assert_eq!(notes_address_of("bad address", 7), None);
    }
}
