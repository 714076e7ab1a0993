//! Arbitrary leads into the header stamp served at the top of every message.
//!
//! The stamp must always be exactly `STAMP_LEN` bytes in six CRLF-ended
//! lines of printable ASCII, one per X-Lead-* header in a fixed order, and a
//! mail parser must read exactly those six headers back: no value, however
//! hostile, may end its line early, add a header or change the size. Where a
//! value fits its field it must also read back unchanged (round trip through
//! mail-parser, encoded words included).
#![no_main]

use std::str::FromStr;

use chrono_tz::{Tz, TZ_VARIANTS};
use leadgate::{
    imap::stamp::{header_safe, stamp, STAMP_LEN},
    leads::{Category, Lead, Outcome, Status},
};
use libfuzzer_sys::fuzz_target;
use mail_parser::{HeaderName, MessageParser};

/// (header name, value width), as documented in `src/imap/stamp.rs`.
const FIELDS: [(&str, usize); 6] = [
    ("X-Lead-Id", 12),
    ("X-Lead-Owner", 64),
    ("X-Lead-Status", 40),
    ("X-Lead-Follow-Up", 26),
    ("X-Lead-Category", 32),
    ("X-Lead-Contact", 160),
];

/// The input is a readable block of `key: value` lines, so the seeds are
/// leads a person can read and edit:
///
/// ```text
/// id: 42
/// owner: alice
/// status: waiting-for-reply
/// category: pricing-quote
/// contact-name: Dana Whitfield
/// contact-email: dana@northwind.test
/// due: 1795428000
/// tz: Europe/Berlin
/// ```
///
/// A line starting with a space or tab continues the value before it after
/// an LF, so values can hold any byte. A missing key is `None` (or the
/// default); `status`, `outcome` and `category` take a label or a slug (an
/// unknown one picks a variant by its length); `tz` takes an IANA name or an
/// index into the database. `none` alone (as the whole input) is a message
/// with no lead yet.
fn lead(data: &[u8]) -> (Option<Lead>, Tz) {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        match (line.strip_prefix([' ', '\t']), fields.last_mut()) {
            (Some(more), Some((_, value))) => {
                value.push('\n');
                value.push_str(more);
            }
            _ => {
                let (key, value) = line.split_once(':').unwrap_or((&line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                fields.push((key.trim().to_ascii_lowercase(), value.to_owned()));
            }
        }
    }
    let get = |key: &str| {
        fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    fn named<T: FromStr + Copy>(value: &str, all: &[T]) -> T {
        value.parse().unwrap_or(all[value.len() % all.len()])
    }
    let tz = get("tz")
        .map(|t| {
            t.parse::<Tz>()
                .ok()
                .or_else(|| {
                    t.trim()
                        .parse::<usize>()
                        .ok()
                        .map(|i| TZ_VARIANTS[i % TZ_VARIANTS.len()])
                })
                .unwrap_or(Tz::UTC)
        })
        .unwrap_or(Tz::UTC);
    if data == b"none" {
        return (None, tz);
    }
    let lead = Lead {
        id: get("id")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_default(),
        owner: get("owner"),
        status: get("status").map_or(Status::New, |v| named(&v, Status::ALL)),
        outcome: get("outcome").map(|v| named(&v, Outcome::ALL)),
        category: get("category").map_or(Category::NewInbound, |v| named(&v, Category::ALL)),
        contact_name: get("contact-name"),
        contact_email: get("contact-email").unwrap_or_default(),
        due: get("due").and_then(|v| v.trim().parse().ok()),
        ..Lead::default()
    };
    (Some(lead), tz)
}

/// What `header_safe` promises before encoding: controls become spaces,
/// runs of spaces one space, no whitespace at either end.
fn flatten(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_owned()
}

fn expected_values(lead: &Lead) -> [Option<String>; 6] {
    [
        Some(lead.id.to_string()),
        Some(lead.owner.clone().unwrap_or_else(|| "unassigned".into())),
        Some(match lead.outcome {
            Some(o) => format!("{} ({})", lead.status.label(), o.label()),
            None => lead.status.label().to_owned(),
        }),
        None, // depends on the time zone database; checked for shape only
        Some(lead.category.label().to_owned()),
        Some(match &lead.contact_name {
            Some(n) => format!("{n} <{}>", lead.contact_email),
            None => format!("<{}>", lead.contact_email),
        }),
    ]
}

fuzz_target!(|data: &[u8]| {
    let (lead, tz) = lead(data);
    let s = stamp(lead.as_ref(), tz);

    assert_eq!(s.len(), STAMP_LEN, "stamp length");
    assert!(
        s.iter()
            .all(|&b| (0x20..0x7f).contains(&b) || b == b'\r' || b == b'\n'),
        "a byte outside printable ASCII: {:?}",
        String::from_utf8_lossy(&s)
    );
    let text = std::str::from_utf8(&s).unwrap();
    assert!(text.ends_with("\r\n"));
    let lines: Vec<&str> = text[..text.len() - 2].split("\r\n").collect();
    assert_eq!(lines.len(), 6, "{text:?}");
    for ((line, (name, width)), expected) in lines
        .iter()
        .zip(FIELDS)
        .zip(expected_values(&lead.clone().unwrap_or_default()))
    {
        assert!(!line.contains(['\r', '\n']), "bare CR or LF in {line:?}");
        let value = line
            .strip_prefix(name)
            .and_then(|l| l.strip_prefix(": "))
            .unwrap_or_else(|| panic!("{line:?} is not {name}"));
        assert_eq!(value.len(), width, "{name} width");
        // Round trip: a value that fits comes back as it was, once flattened.
        if let (Some(expected), Some(_)) = (expected, &lead) {
            let safe = header_safe(&expected);
            if safe.len() <= width && !expected.contains("=?") {
                assert_eq!(value.trim_end(), safe, "{name}");
                let one = format!("{line}\r\n\r\n");
                // Unknown headers are raw to mail-parser unless asked: read
                // this one as unstructured text, as a mail client shows it.
                let parsed = MessageParser::new()
                    .header_text(HeaderName::Other(name.into()))
                    .parse(one.as_bytes())
                    .unwrap();
                let back = parsed
                    .header(name)
                    .and_then(|v| v.as_text())
                    .unwrap_or_default();
                assert_eq!(
                    back.trim(),
                    flatten(&expected),
                    "{name} read back by mail-parser"
                );
            }
        }
    }

    let mut message = s.clone();
    message.extend_from_slice(b"\r\n");
    let parsed = MessageParser::default()
        .parse(&message)
        .expect("mail-parser reads the stamp");
    let headers = parsed.headers();
    let names: Vec<&str> = headers.iter().map(|h| h.name()).collect();
    assert_eq!(names.len(), 6, "headers read back: {names:?}");
    for (got, (want, _)) in names.iter().zip(FIELDS) {
        assert!(
            got.eq_ignore_ascii_case(want),
            "headers read back: {names:?}"
        );
    }
});
