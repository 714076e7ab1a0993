//! Arbitrary bytes as a raw RFC 5322 message through everything the lead
//! engine derives from mail: the parsed facts, the normalized subject, the
//! direction and counterpart, the category and the value signals, under the
//! default `[leads]` rules or (for inputs of odd length) a set with
//! high-value keywords and domains added.
//!
//! Nothing may panic, `normalize_subject` must be idempotent (normalizing a
//! normalized subject changes nothing), and the facts and signals must keep
//! the shapes the rest of the engine relies on.
#![no_main]

use std::sync::OnceLock;

use leadgate::leads::{
    parse::facts,
    rules::{categorize, value_signals, LeadsConfig},
    threading::{counterpart, direction, normalize_subject, Direction},
};
use libfuzzer_sys::fuzz_target;

/// `parse::BODY_TEXT_LIMIT`.
const BODY_TEXT_LIMIT: usize = 8 * 1024;

fn configs() -> &'static [LeadsConfig; 2] {
    static CONFIGS: OnceLock<[LeadsConfig; 2]> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let mut rich = LeadsConfig::default();
        rich.high_value.keywords = ["enterprise", "rfp", "multi-year", "  Fortune 500 "]
            .map(String::from)
            .to_vec();
        rich.high_value.domains = ["bigcorp.test", ".gov", "example.org."]
            .map(String::from)
            .to_vec();
        rich.urgent_keywords.push("end of quarter".into());
        rich.validate().expect("the fuzz config is valid");
        [LeadsConfig::default(), rich]
    })
}

fn team() -> &'static [String] {
    static TEAM: OnceLock<Vec<String>> = OnceLock::new();
    TEAM.get_or_init(|| {
        [
            "sales@example.com",
            "alice@example.com",
            " Bob@Example.com ",
        ]
        .map(String::from)
        .to_vec()
    })
}

fuzz_target!(|raw: &[u8]| {
    let f = facts(raw, 0);

    // The shapes the engine relies on.
    assert!(
        f.body_text.len() <= BODY_TEXT_LIMIT,
        "body text of {} bytes",
        f.body_text.len()
    );
    assert_eq!(f.from, f.from.trim(), "sender not trimmed");
    for a in f.to.iter().chain(&f.cc) {
        assert!(!a.is_empty(), "empty recipient in {f:?}");
        assert_eq!(a, a.trim(), "recipient not trimmed");
    }
    for id in f
        .message_id
        .iter()
        .chain(&f.in_reply_to)
        .chain(&f.references)
    {
        assert!(
            id.starts_with('<') && id.ends_with('>') && id.len() >= 2,
            "id {id:?}"
        );
    }

    // Idempotence: a normalized subject is its own normal form.
    let subject = normalize_subject(&f.subject);
    assert_eq!(
        normalize_subject(&subject),
        subject,
        "subject {:?}",
        f.subject
    );

    let team = team();
    let dir = direction(&f, team);
    let who = counterpart(&f, dir, team);
    assert_eq!(who, who.trim(), "counterpart not trimmed");
    match dir {
        Direction::Inbound => assert_eq!(who, f.from.trim().to_lowercase()),
        Direction::Outbound => assert!(
            !team.iter().any(|t| t.trim().eq_ignore_ascii_case(&who)),
            "counterpart {who:?} is a team address"
        ),
    }

    // One rule set per input (the length picks it, so both get explored
    // without paying for both on every run).
    let cfg = &configs()[raw.len() & 1];
    let _ = categorize(cfg, &f, raw.len() & 2 != 0);
    let v = value_signals(cfg, &f);
    for (i, s) in v.signals.iter().enumerate() {
        assert!(!v.signals[..i].contains(s), "duplicate signal {s:?}");
    }
    assert_eq!(
        v.urgent,
        v.signals.iter().any(|s| s.starts_with("urgent: ")),
        "{v:?}"
    );
    if v.signals
        .iter()
        .any(|s| s.starts_with("keyword: ") || s.starts_with("domain: "))
    {
        assert!(v.high_value, "{v:?}");
    }
});
