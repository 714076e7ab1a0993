//! Lead cards in the views: their keys, what the index would hold for them
//! (size, envelope, body structure), and the bytes of their parts.
//!
//! A card is a view member like a message, under a key no message can
//! have: bit 63 set, the lead id in bits 32..63, the card's version (a hash
//! of what it shows, `leads::card`) in the low 32 bits. Mailbox generations
//! are small counters, so nothing that resolves keys through the index
//! (threading, the digest, metrics, first response, INBOX) ever finds a
//! card; only the views and the sessions serving them know it.
//!
//! Per lead, memory holds one [`CardSlot`]: the lead as the card shows it
//! (an `Arc` shared with the lead book until the lead changes), where its
//! audit events end, its thread root, and its meta (size, envelope, body
//! structure, about 1 KiB). The body is rendered again when a client
//! fetches it (deterministic, so the size holds) and kept a short while.

use std::{sync::Arc, time::Instant};

use crate::{
    imap_wire,
    leads::{card::Card, Lead, LeadId},
    store::messages::MessageMeta,
};

const CARD_BIT: u64 = 1 << 63;

/// The key of version `version` of lead `lead`'s card (`None` for a lead
/// id beyond 31 bits, which gets no card).
pub fn card_key(lead: LeadId, version: u32) -> Option<u64> {
    (lead < (1 << 31)).then(|| CARD_BIT | (lead << 32) | u64::from(version))
}

/// The lead whose card `key` is, if it is a card's.
pub fn card_lead(key: u64) -> Option<LeadId> {
    (key & CARD_BIT != 0).then_some((key & !CARD_BIT) >> 32)
}

/// What a card's version was rendered from.
#[derive(Debug, Clone)]
pub struct CardSlot {
    pub key: u64,
    pub lead: Arc<Lead>,
    /// The audit events shown end here.
    pub upto: u64,
    /// Message key of the lead's first message (its Message-ID threads the
    /// card), 0 if none.
    pub root: u64,
    pub meta: Arc<MessageMeta>,
    /// The BODY (non-extensible) form.
    pub body: Arc<[u8]>,
    pub boundary: Arc<str>,
    /// When this version came in (none: at start).
    pub swapped: Option<Instant>,
}

fn addr(out: &mut Vec<u8>, a: &(String, String, String)) {
    out.extend_from_slice(b"((");
    imap_wire::nstring(out, (!a.0.is_empty()).then_some(a.0.as_bytes()));
    out.extend_from_slice(b" NIL ");
    imap_wire::string(out, a.1.as_bytes());
    out.push(b' ');
    imap_wire::string(out, a.2.as_bytes());
    out.extend_from_slice(b"))");
}

/// The card's ENVELOPE (RFC 3501 7.4.2).
pub fn envelope(card: &Card) -> Vec<u8> {
    let mut out = b"(".to_vec();
    imap_wire::string(&mut out, card.date.as_bytes());
    out.push(b' ');
    imap_wire::string(&mut out, card.subject.as_bytes());
    out.push(b' ');
    addr(&mut out, &card.from);
    out.push(b' ');
    addr(&mut out, &card.from);
    out.push(b' ');
    addr(&mut out, card.reply_to.as_ref().unwrap_or(&card.from));
    out.extend_from_slice(b" NIL NIL NIL ");
    imap_wire::nstring(&mut out, card.in_reply_to.as_deref().map(str::as_bytes));
    out.push(b' ');
    imap_wire::string(&mut out, card.message_id.as_bytes());
    out.push(b')');
    out
}

/// BODYSTRUCTURE (`extended`) or BODY of a card: multipart/alternative of
/// text/plain and text/html, both quoted-printable UTF-8.
pub fn structure(card: &Card, extended: bool) -> Vec<u8> {
    let mut out = b"(".to_vec();
    for (subtype, (size, lines)) in ["PLAIN", "HTML"].iter().zip(card.parts) {
        out.extend_from_slice(
            format!(
                "(\"TEXT\" \"{subtype}\" (\"CHARSET\" \"utf-8\") NIL NIL \"QUOTED-PRINTABLE\" {size} {lines}{})",
                if extended { " NIL NIL NIL NIL" } else { "" }
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b" \"ALTERNATIVE\"");
    if extended {
        out.extend_from_slice(b" (\"BOUNDARY\" ");
        imap_wire::string(&mut out, card.boundary.as_bytes());
        out.extend_from_slice(b") NIL NIL NIL");
    }
    out.push(b')');
    out
}

/// The index's view of a card: size, date, envelope, body structure.
pub fn meta(card: &Card, internal_date: String) -> MessageMeta {
    MessageMeta {
        size: card.bytes.len() as u32,
        internal_date: internal_date.into(),
        envelope: envelope(card).into(),
        bodystructure: structure(card, true).into(),
        message_id: Some(card.message_id.clone().into()),
        in_reply_to: card.in_reply_to.clone().map(Into::into),
        references: card
            .in_reply_to
            .clone()
            .into_iter()
            .map(Into::into)
            .collect(),
    }
}

/// A part of a card's message: `1` (text) or `2` (html), its body or
/// (`mime`) its header block. `None` for any other part.
pub fn part<'a>(bytes: &'a [u8], boundary: &str, n: u32, mime: bool) -> Option<&'a [u8]> {
    if !(1..=2).contains(&n) {
        return None;
    }
    let delim = format!("\r\n--{boundary}");
    let find = |from: usize| -> Option<usize> {
        bytes[from..]
            .windows(delim.len())
            .position(|w| w == delim.as_bytes())
            .map(|p| from + p)
    };
    // Skip to the n-th delimiter line, then its CRLF.
    let mut at = 0;
    for _ in 0..n {
        at = find(at)? + delim.len();
    }
    let start = at + 2;
    let end = find(start)?;
    let part = bytes.get(start..end)?;
    let head_end = part.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    Some(if mime {
        &part[..head_end]
    } else {
        &part[head_end..]
    })
}

/// IMAP INTERNALDATE text of a unix time.
pub fn internal_date(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .unwrap_or_default()
        .format("%d-%b-%Y %H:%M:%S +0000")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leads::card::{render, CardInput};

    #[test]
    fn card_keys_never_look_like_message_keys() {
        let k = card_key(42, 0xdead_beef).unwrap();
        assert_eq!(card_lead(k), Some(42));
        assert_eq!(k as u32, 0xdead_beef);
        assert_eq!(card_lead(crate::store::messages::message_key(7, 42)), None);
        assert_eq!(card_key(1 << 31, 1), None);
    }

    #[test]
    fn structure_and_parts_agree_with_the_bytes() {
        let lead = Lead {
            id: 5,
            contact_email: "a@b.test".into(),
            ..Lead::default()
        };
        let card = render(&CardInput {
            lead: &lead,
            thread_root: Some("<r@x>"),
            events: &[],
            hostname: "h.test",
            notes_address: Some("notes@h.test"),
            tz: chrono_tz::UTC,
        });
        let text = part(&card.bytes, &card.boundary, 1, false).unwrap();
        let html = part(&card.bytes, &card.boundary, 2, false).unwrap();
        assert_eq!(text.len() as u32, card.parts[0].0);
        assert_eq!(html.len() as u32, card.parts[1].0);
        assert!(part(&card.bytes, &card.boundary, 2, true)
            .unwrap()
            .starts_with(b"Content-Type: text/html"));
        assert!(part(&card.bytes, &card.boundary, 3, false).is_none());
        let env = String::from_utf8(envelope(&card)).unwrap();
        assert!(
            env.contains("((\"leadgate\" NIL \"leadgate\" \"h.test\"))"),
            "{env}"
        );
        assert!(env.contains("((\"Lead 5 notes\" NIL \"notes+5\" \"h.test\"))"));
        assert!(env.ends_with(&format!("\"<r@x>\" \"{}\")", card.message_id)));
        let bs = String::from_utf8(structure(&card, true)).unwrap();
        assert!(bs.ends_with("\"ALTERNATIVE\" (\"BOUNDARY\" \"=_lgcard_5\") NIL NIL NIL)"));
    }
}
