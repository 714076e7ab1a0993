//! Message bytes (a header block, or a whole message when the body is
//! cached) to the `MessageFacts` the rules look at.

use mail_parser::{Address, HeaderValue, MessageParser};

use super::threading::MessageFacts;

/// How much body text the rules get to read.
const BODY_TEXT_LIMIT: usize = 8 * 1024;

fn addresses(a: Option<&Address<'_>>) -> Vec<String> {
    a.map(|a| {
        a.iter()
            .filter_map(|addr| addr.address())
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => vec![format!("<{t}>")],
        HeaderValue::TextList(l) => l.iter().map(|t| format!("<{t}>")).collect(),
        _ => Vec::new(),
    }
}

/// Facts of a message; `fallback_date` (unix seconds) is used when the Date
/// header is missing or unreadable.
pub fn facts(raw: &[u8], fallback_date: i64) -> MessageFacts {
    let parser = MessageParser::default();
    let Some(msg) = parser.parse(raw) else {
        return MessageFacts {
            date: fallback_date,
            ..MessageFacts::default()
        };
    };
    let from = msg.from().and_then(|a| a.first());
    let mut body_text: String = msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
    if body_text.len() > BODY_TEXT_LIMIT {
        let mut cut = BODY_TEXT_LIMIT;
        while !body_text.is_char_boundary(cut) {
            cut -= 1;
        }
        body_text.truncate(cut);
    }
    MessageFacts {
        message_id: msg.message_id().map(|id| format!("<{id}>")),
        in_reply_to: ids(msg.in_reply_to()).into_iter().next(),
        references: ids(msg.references()),
        subject: msg.subject().unwrap_or_default().to_owned(),
        from: from
            .and_then(|a| a.address())
            .map(|a| a.trim().to_lowercase())
            .unwrap_or_default(),
        from_name: from.and_then(|a| a.name()).map(str::to_owned),
        to: addresses(msg.to()),
        cc: addresses(msg.cc()),
        date: msg
            .date()
            .map(|d| d.to_timestamp())
            .unwrap_or(fallback_date),
        body_text,
        kind: super::classify::classify(&msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_of_a_reply() {
        let raw = b"From: \"Dana W\" <Dana@Northwind.test>\r\nTo: sales@example.com, Bob <bob@example.com>\r\nCc: x@y.test\r\nSubject: Re: Quote\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <b@n>\r\nIn-Reply-To: <a@n>\r\nReferences: <z@n> <a@n>\r\n\r\nPlease include onboarding.\r\n";
        let f = facts(raw, 0);
        assert_eq!(f.from, "dana@northwind.test");
        assert_eq!(f.from_name.as_deref(), Some("Dana W"));
        assert_eq!(f.to, vec!["sales@example.com", "bob@example.com"]);
        assert_eq!(f.cc, vec!["x@y.test"]);
        assert_eq!(f.message_id.as_deref(), Some("<b@n>"));
        assert_eq!(f.in_reply_to.as_deref(), Some("<a@n>"));
        assert_eq!(f.references, vec!["<z@n>", "<a@n>"]);
        assert_eq!(f.date, 1_795_687_200);
        assert!(f.body_text.contains("onboarding"));
    }

    #[test]
    fn garbage_gives_empty_facts_with_the_fallback_date() {
        let f = facts(b"\x00\xff", 42);
        assert_eq!(f.date, 42);
        assert!(f.from.is_empty());
    }
}
