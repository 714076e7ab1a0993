//! The lead headers stamped at the top of every shared-mailbox message a
//! client fetches: `X-Lead-Id`, `-Owner`, `-Status`, `-Follow-Up`,
//! `-Category`, `-Contact` — a snapshot at fetch time.
//!
//! The block always has the same length ([`STAMP_LEN`]): values are padded
//! to fixed widths. A message's RFC822.SIZE must not change while a client
//! has it cached, and a lead's state does change; a fixed-size stamp keeps
//! the size stable (and equal to the bytes served) whatever the lead
//! becomes. Values taken from mail (the contact's name) are reduced to one
//! line of printable ASCII — non-ASCII as RFC 2047 encoded words — so no
//! value can end its header line or start another.

use chrono_tz::Tz;

use crate::leads::Lead;

/// (header name, value width)
const FIELDS: [(&str, usize); 6] = [
    ("X-Lead-Id", 12),
    ("X-Lead-Owner", 64),
    ("X-Lead-Status", 40),
    ("X-Lead-Follow-Up", 26),
    ("X-Lead-Category", 32),
    ("X-Lead-Contact", 160),
];

const fn stamp_len() -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < FIELDS.len() {
        // "Name: " + value + CRLF
        n += FIELDS[i].0.len() + 2 + FIELDS[i].1 + 2;
        i += 1;
    }
    n
}

/// Bytes every stamp adds to a message.
pub const STAMP_LEN: usize = stamp_len();

pub use crate::compose::header_safe;

/// `value` made header-safe and fitted to exactly `width` bytes: shortened
/// (on a character boundary, before encoding) when too long, padded with
/// spaces when short.
fn fit(value: &str, width: usize) -> String {
    let mut source: Vec<char> = value.chars().collect();
    loop {
        let text: String = source.iter().collect();
        let safe = header_safe(&text);
        if safe.len() <= width {
            return format!("{safe:<width$}");
        }
        let over = safe.len() - width;
        // Drop at least one character; more when far over.
        let drop = (over / 4).max(1).min(source.len());
        source.truncate(source.len() - drop);
    }
}

fn follow_up(lead: &Lead, tz: Tz) -> String {
    match lead.due {
        Some(at) => chrono::DateTime::from_timestamp(at, 0)
            .map(|d| {
                d.with_timezone(&tz)
                    .format("%Y-%m-%d %H:%M %:z")
                    .to_string()
            })
            .unwrap_or_else(|| "none".into()),
        None => "none".into(),
    }
}

/// The stamp for a message of `lead` (or of no lead yet), exactly
/// [`STAMP_LEN`] bytes, each line ending in CRLF.
pub fn stamp(lead: Option<&Lead>, tz: Tz) -> Vec<u8> {
    let values: [String; 6] = match lead {
        Some(l) => [
            l.id.to_string(),
            l.owner.clone().unwrap_or_else(|| "unassigned".into()),
            match l.outcome {
                Some(o) => format!("{} ({})", l.status.label(), o.label()),
                None => l.status.label().to_owned(),
            },
            follow_up(l, tz),
            l.category.label().to_owned(),
            match &l.contact_name {
                Some(n) => format!("{n} <{}>", l.contact_email),
                None => format!("<{}>", l.contact_email),
            },
        ],
        None => ["none", "unassigned", "none", "none", "none", "none"].map(String::from),
    };
    let mut out = Vec::with_capacity(STAMP_LEN);
    for ((name, width), value) in FIELDS.iter().zip(values.iter()) {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(fit(value, *width).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    debug_assert_eq!(out.len(), STAMP_LEN);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leads::{Category, Status};

    fn lead() -> Lead {
        Lead {
            id: 42,
            owner: Some("alice".into()),
            status: Status::WaitingForReply,
            category: Category::PricingQuote,
            contact_name: Some("Dana Whitfield".into()),
            contact_email: "dana@northwind.test".into(),
            due: Some(1_795_428_000),
            ..Lead::default()
        }
    }

    fn header_lines(stamp: &[u8]) -> Vec<String> {
        String::from_utf8(stamp.to_vec())
            .unwrap()
            .split_terminator("\r\n")
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_stamp_has_the_same_length() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let mut l = lead();
        let a = stamp(Some(&l), tz);
        l.owner = None;
        l.status = Status::Closed;
        l.outcome = Some(crate::leads::Outcome::HandedToAnotherTeam);
        l.contact_name = Some("Ünïcödé Ñame ".repeat(40));
        l.due = None;
        let b = stamp(Some(&l), tz);
        let c = stamp(None, tz);
        assert_eq!(a.len(), STAMP_LEN);
        assert_eq!(b.len(), STAMP_LEN);
        assert_eq!(c.len(), STAMP_LEN);
        let lines = header_lines(&a);
        assert_eq!(lines[0].trim_end(), "X-Lead-Id: 42");
        assert_eq!(lines[1].trim_end(), "X-Lead-Owner: alice");
        assert_eq!(lines[2].trim_end(), "X-Lead-Status: Waiting for reply");
        assert_eq!(
            lines[3].trim_end(),
            "X-Lead-Follow-Up: 2026-11-23 11:00 +01:00"
        );
        assert_eq!(
            lines[5].trim_end(),
            "X-Lead-Contact: Dana Whitfield <dana@northwind.test>"
        );
    }

    #[test]
    fn a_name_from_mail_cannot_add_a_header() {
        let mut l = lead();
        l.contact_name = Some("Mallory\r\nX-Lead-Owner: mallory\nBcc: x@y".into());
        let s = stamp(Some(&l), Tz::UTC);
        let lines = header_lines(&s);
        assert_eq!(lines.len(), 6);
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("X-Lead-Owner:"))
                .count(),
            1
        );
        assert!(lines
            .iter()
            .all(|l| l.bytes().all(|b| (0x20..0x7f).contains(&b))));
        assert!(lines[5].contains("Mallory X-Lead-Owner: mallory Bcc: x@y"));
    }

    #[test]
    fn non_ascii_becomes_an_encoded_word_that_decodes_back() {
        let safe = header_safe("Chloé Dubois");
        assert!(safe.is_ascii() && safe.starts_with("=?utf-8?b?"));
        let raw = format!("Subject: {safe}\r\n\r\n");
        let parsed = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .unwrap();

        assert_eq!(parsed.subject(), Some("Chloé Dubois"));
    }
}
