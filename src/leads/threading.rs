//! Which lead a message belongs to.
//!
//! [`find_thread`] asks, in this order, and stops at the first lead found:
//!
//! 1. `In-Reply-To`: the message answers one we know.
//! 2. `References`, last to first: the nearest ancestor we know.
//! 3. The message's own `Message-ID`: a second delivery of a known message.
//! 4. The subject, only as a fallback for clients that drop the headers
//!    above: the normalized subject must be non-empty, the counterpart
//!    (the customer's address) must be the lead's, and the lead's last
//!    activity must be within the window of the message's date. A subject
//!    alone never merges two conversations, and two customers never share a
//!    lead.
//!
//! Message-IDs are compared in the form the message index stores them:
//! trimmed, in angle brackets ([`normalize_message_id`]).

use super::LeadId;
pub use crate::model::ThreadLookup;

/// What the engine needs to know about one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFacts {
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub subject: String,
    /// The sender's address, lower case.
    pub from: String,
    pub from_name: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    /// The Date header, unix seconds.
    pub date: i64,
    /// The start of the plain-text body (the first few KB).
    pub body_text: String,
    /// A person's mail, an auto-reply or a bounce.
    pub kind: super::classify::MailKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From a customer (or anyone outside the team).
    Inbound,
    /// From the shared address or a team member.
    Outbound,
}

/// Strips reply and forward prefixes (`Re:`, `RE[2]:`, `Fwd:`, `Fw:`,
/// `AW:`, `WG:`, `SV:`, `VS:`, `Antw:`, `Réf:`, `TR:`, in any case and any
/// number) and bracket tags such as `[EXT]` from the start, collapses
/// whitespace and lower-cases the rest.
pub fn normalize_subject(subject: &str) -> String {
    let collapsed = subject
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    let mut rest = collapsed.as_str();
    loop {
        // "Automatic reply: Re: Pricing" threads with "Re: Pricing".
        let after_auto = super::classify::strip_auto_reply_prefix(rest).trim_start();
        match strip_prefix_token(after_auto) {
            Some(next) => rest = next.trim_start(),
            None => {
                rest = after_auto;
                break;
            }
        }
    }
    rest.to_owned()
}

const REPLY_PREFIXES: [&str; 11] = [
    "re", "fwd", "fw", "aw", "wg", "sv", "vs", "antw", "réf", "ref", "tr",
];

/// Bracket tags longer than this are part of the subject, not a tag.
const MAX_TAG_CHARS: usize = 40;

/// The text after one leading prefix (`re:`, `re[2]:`, `re (3) :`) or bracket
/// tag (`[ext]`), if `s` starts with one. `s` is lower case with single
/// spaces.
fn strip_prefix_token(s: &str) -> Option<&str> {
    if let Some(inner) = s.strip_prefix('[') {
        let end = inner.find(']')?;
        return (inner[..end].chars().count() <= MAX_TAG_CHARS).then(|| &inner[end + 1..]);
    }
    let word_end = s.find(|c: char| !c.is_alphabetic()).unwrap_or(s.len());
    if !REPLY_PREFIXES.contains(&&s[..word_end]) {
        return None;
    }
    let rest = strip_counter(s[word_end..].trim_start_matches(' ')).trim_start_matches(' ');
    rest.strip_prefix(':').or_else(|| rest.strip_prefix('：'))
}

/// Drops a reply counter such as `[2]` or `(2)`.
fn strip_counter(s: &str) -> &str {
    for (open, close) in [('[', ']'), ('(', ')')] {
        if let Some(inner) = s.strip_prefix(open) {
            if let Some(end) = inner.find(close) {
                if end > 0 && inner[..end].bytes().all(|b| b.is_ascii_digit()) {
                    return &inner[end + 1..];
                }
            }
        }
    }
    s
}

/// A Message-ID in the index's form: trimmed, in angle brackets. Empty for
/// an empty id.
pub fn normalize_message_id(id: &str) -> String {
    let bare = id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    if bare.is_empty() {
        String::new()
    } else {
        format!("<{bare}>")
    }
}

/// The domain of an address, lower case; empty without an `@`.
pub fn domain_of(address: &str) -> String {
    address
        .trim()
        .rsplit_once('@')
        .map(|(_, domain)| domain.trim_end_matches('>').to_ascii_lowercase())
        .unwrap_or_default()
}

fn is_team(address: &str, team: &[String]) -> bool {
    let address = address.trim();
    team.iter().any(|t| t.trim().eq_ignore_ascii_case(address))
}

/// Outbound when the sender is one of the team's addresses (the shared
/// address or a user's own).
pub fn direction(facts: &MessageFacts, team_addresses: &[String]) -> Direction {
    if is_team(&facts.from, team_addresses) {
        Direction::Outbound
    } else {
        Direction::Inbound
    }
}

/// The customer's address, lower case: the sender of an inbound message, the
/// first recipient (To, then Cc) outside the team of an outbound one. Empty
/// when an outbound message went to the team only.
pub fn counterpart(facts: &MessageFacts, direction: Direction, team: &[String]) -> String {
    let address = match direction {
        Direction::Inbound => Some(&facts.from),
        Direction::Outbound => facts
            .to
            .iter()
            .chain(&facts.cc)
            .find(|a| !a.trim().is_empty() && !is_team(a, team)),
    };
    address.map(|a| a.trim().to_lowercase()).unwrap_or_default()
}

/// The lead this message belongs to, if any (see the module docs).
pub fn find_thread(
    facts: &MessageFacts,
    direction: Direction,
    team: &[String],
    lookup: &impl ThreadLookup,
    window_secs: u64,
) -> Option<LeadId> {
    let ids = facts
        .in_reply_to
        .iter()
        .chain(facts.references.iter().rev())
        .chain(facts.message_id.iter());
    ids.map(|id| normalize_message_id(id))
        .filter(|id| !id.is_empty())
        .find_map(|id| lookup.lead_for_message_id(&id))
        .or_else(|| by_subject(facts, direction, team, lookup, window_secs))
}

fn by_subject(
    facts: &MessageFacts,
    direction: Direction,
    team: &[String],
    lookup: &impl ThreadLookup,
    window_secs: u64,
) -> Option<LeadId> {
    let subject = normalize_subject(&facts.subject);
    let counterpart = counterpart(facts, direction, team);
    if subject.is_empty() || counterpart.is_empty() {
        return None;
    }
    lookup
        .leads_for_subject(&subject, &counterpart)
        .into_iter()
        .filter(|&(_, last)| facts.date.abs_diff(last) <= window_secs)
        .max_by_key(|&(id, last)| (last, id))
        .map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn reply_and_forward_prefixes_are_stripped_in_any_language_and_number() {
        let cases = [
            ("Re: Quote", "quote"),
            ("RE: re: Re: Quote", "quote"),
            ("RE[2]: Quote", "quote"),
            ("Re(3): Quote", "quote"),
            ("Fwd: FW: Quote", "quote"),
            ("AW: WG: Angebot", "angebot"),
            ("SV: VS: Tarjous", "tarjous"),
            ("Antw: Offerte", "offerte"),
            ("Réf : TR : Devis", "devis"),
            ("RÉF: Devis", "devis"),
            ("Re：報價", "報價"),
            ("Automatic reply: Re: Quote", "quote"),
            ("Abwesenheitsnotiz: AW: Angebot", "angebot"),
            ("Réponse automatique : Re: Devis", "devis"),
        ];
        for (subject, want) in cases {
            assert_eq!(normalize_subject(subject), want, "{subject}");
        }
    }

    #[test]
    fn bracket_tags_at_the_start_are_stripped() {
        assert_eq!(normalize_subject("[EXT] Re: Pricing"), "pricing");
        assert_eq!(
            normalize_subject("Re: [External] [SPAM?] Pricing"),
            "pricing"
        );
        assert_eq!(normalize_subject("Pricing [EXT]"), "pricing [ext]");
    }

    #[test]
    fn whitespace_collapses_and_case_folds() {
        assert_eq!(
            normalize_subject("  Re:\tDemo   for  ACME\r\n"),
            "demo for acme"
        );
    }

    #[test]
    fn words_that_merely_start_like_prefixes_are_kept() {
        assert_eq!(normalize_subject("Return policy"), "return policy");
        assert_eq!(normalize_subject("Travel: quote"), "travel: quote");
        assert_eq!(normalize_subject("Re 40 seats"), "re 40 seats");
        assert_eq!(normalize_subject("[unterminated tag"), "[unterminated tag");
    }

    #[test]
    fn subjects_of_only_prefixes_normalize_to_empty() {
        assert_eq!(normalize_subject("Re: Fwd: "), "");
        assert_eq!(normalize_subject("[EXT]"), "");
        assert_eq!(normalize_subject(""), "");
    }

    #[test]
    fn message_ids_get_angle_brackets() {
        assert_eq!(normalize_message_id(" a@x "), "<a@x>");
        assert_eq!(normalize_message_id("<a@x>"), "<a@x>");
        assert_eq!(normalize_message_id(" <> "), "");
    }

    #[test]
    fn domains_are_lower_case() {
        assert_eq!(domain_of("Carla@ACME.test"), "acme.test");
        assert_eq!(domain_of("no-at-sign"), "");
    }

    fn team() -> Vec<String> {
        vec!["sales@example.com".into(), "Alice@Example.com".into()]
    }

    fn facts(from: &str, to: &[&str], subject: &str) -> MessageFacts {
        MessageFacts {
            from: from.into(),
            to: to.iter().map(|s| s.to_string()).collect(),
            subject: subject.into(),
            date: 1_000_000,
            ..MessageFacts::default()
        }
    }

    #[test]
    fn mail_from_a_team_address_is_outbound_case_insensitively() {
        let f = facts("alice@example.com", &["carla@acme.test"], "x");
        assert_eq!(direction(&f, &team()), Direction::Outbound);
        let f = facts("carla@acme.test", &["sales@example.com"], "x");
        assert_eq!(direction(&f, &team()), Direction::Inbound);
    }

    #[test]
    fn counterpart_is_the_sender_of_inbound_and_first_outside_recipient_of_outbound() {
        let f = facts("carla@acme.test", &["sales@example.com"], "x");
        assert_eq!(
            counterpart(&f, Direction::Inbound, &team()),
            "carla@acme.test"
        );
        let mut f = facts("sales@example.com", &["ALICE@example.com"], "x");
        f.cc = vec!["Carla@Acme.test".into()];
        assert_eq!(
            counterpart(&f, Direction::Outbound, &team()),
            "carla@acme.test"
        );
        let f = facts("sales@example.com", &["alice@example.com"], "x");
        assert_eq!(counterpart(&f, Direction::Outbound, &team()), "");
    }

    /// A fake index: message ids to leads, and leads with their subject,
    /// counterpart and last activity.
    #[derive(Default)]
    struct Index {
        ids: HashMap<String, LeadId>,
        leads: Vec<(LeadId, String, String, i64)>,
    }

    impl Index {
        fn add_message(&mut self, id: &str, lead: LeadId) {
            self.ids.insert(normalize_message_id(id), lead);
        }
        fn add_lead(&mut self, lead: LeadId, subject: &str, counterpart: &str, last: i64) {
            self.leads
                .push((lead, normalize_subject(subject), counterpart.into(), last));
        }
    }

    impl ThreadLookup for Index {
        fn lead_for_message_id(&self, id: &str) -> Option<LeadId> {
            self.ids.get(id).copied()
        }
        fn leads_for_subject(&self, subject: &str, counterpart: &str) -> Vec<(LeadId, i64)> {
            self.leads
                .iter()
                .filter(|(_, s, c, _)| s == subject && c == counterpart)
                .map(|&(id, _, _, last)| (id, last))
                .collect()
        }
    }

    const WINDOW: u64 = 30 * 86_400;

    #[test]
    fn in_reply_to_wins_over_references_and_subject() {
        let mut index = Index::default();
        index.add_message("<parent@x>", 1);
        index.add_message("<other@x>", 2);
        index.add_lead(3, "Quote", "carla@acme.test", 1_000_000);
        let mut f = facts("carla@acme.test", &["sales@example.com"], "Re: Quote");
        f.in_reply_to = Some("parent@x".into());
        f.references = vec!["<other@x>".into()];
        assert_eq!(
            find_thread(&f, Direction::Inbound, &team(), &index, WINDOW),
            Some(1)
        );
    }

    #[test]
    fn references_are_searched_from_the_nearest_ancestor() {
        let mut index = Index::default();
        index.add_message("<root@x>", 1);
        index.add_message("<middle@x>", 2);
        let mut f = facts("carla@acme.test", &[], "Re: Quote");
        f.in_reply_to = Some("<unknown@x>".into());
        f.references = vec!["<root@x>".into(), "<middle@x>".into(), "<gone@x>".into()];
        assert_eq!(
            find_thread(&f, Direction::Inbound, &team(), &index, WINDOW),
            Some(2)
        );
    }

    #[test]
    fn a_duplicate_delivery_finds_its_own_message_id() {
        let mut index = Index::default();
        index.add_message("<same@x>", 7);
        let mut f = facts("carla@acme.test", &[], "Quote");
        f.message_id = Some("<same@x>".into());
        assert_eq!(
            find_thread(&f, Direction::Inbound, &team(), &index, WINDOW),
            Some(7)
        );
    }

    #[test]
    fn subject_fallback_needs_same_counterpart_and_recent_activity() {
        let mut index = Index::default();
        index.add_lead(
            1,
            "Quote for 40 seats",
            "carla@acme.test",
            1_000_000 - 86_400,
        );
        let f = facts("carla@acme.test", &[], "RE: quote for 40  seats");
        assert_eq!(
            find_thread(&f, Direction::Inbound, &team(), &index, WINDOW),
            Some(1)
        );

        let other = facts("dan@other.test", &[], "RE: quote for 40 seats");
        assert_eq!(
            find_thread(&other, Direction::Inbound, &team(), &index, WINDOW),
            None
        );

        let mut late = f.clone();
        late.date += 2 * WINDOW as i64;
        assert_eq!(
            find_thread(&late, Direction::Inbound, &team(), &index, WINDOW),
            None
        );
    }

    #[test]
    fn subject_fallback_prefers_the_most_recent_lead() {
        let mut index = Index::default();
        index.add_lead(1, "Quote", "carla@acme.test", 900_000);
        index.add_lead(2, "Quote", "carla@acme.test", 990_000);
        let f = facts("carla@acme.test", &[], "Re: Quote");
        assert_eq!(
            find_thread(&f, Direction::Inbound, &team(), &index, WINDOW),
            Some(2)
        );
    }

    #[test]
    fn outbound_mail_threads_by_its_recipient() {
        let mut index = Index::default();
        index.add_lead(1, "Quote", "carla@acme.test", 1_000_000);
        let f = facts("alice@example.com", &["carla@acme.test"], "Re: Quote");
        assert_eq!(
            find_thread(&f, Direction::Outbound, &team(), &index, WINDOW),
            Some(1)
        );
    }

    #[test]
    fn empty_subjects_never_merge() {
        let mut index = Index::default();
        index.add_lead(1, "Re:", "carla@acme.test", 1_000_000);
        let f = facts("carla@acme.test", &[], "Fwd:");
        assert_eq!(
            find_thread(&f, Direction::Inbound, &team(), &index, WINDOW),
            None
        );
    }

    fn message_id() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,8}@[a-z]{1,5}".prop_map(|s| format!("<{s}>"))
    }

    proptest! {
        #[test]
        fn a_reply_always_joins_its_parents_lead(
            parent in message_id(),
            parent_lead in 1u64..100,
            others in prop::collection::vec((message_id(), 100u64..200), 0..8),
            subject in ".{0,40}",
            from in "[a-z]{1,6}@[a-z]{1,6}\\.test",
            refs in prop::collection::vec(prop::sample::Index::arbitrary(), 0..4),
            date in 0i64..2_000_000_000,
        ) {
            let mut index = Index::default();
            for (id, lead) in &others {
                if *id != parent {
                    index.add_message(id, *lead);
                }
            }
            index.add_message(&parent, parent_lead);
            index.add_lead(500, &subject, &from, date);
            let references = refs
                .iter()
                .filter(|_| !others.is_empty())
                .map(|i| others[i.index(others.len())].0.clone())
                .collect();
            let f = MessageFacts {
                in_reply_to: Some(parent.trim_matches(['<', '>']).to_string()),
                references,
                subject,
                from,
                date,
                ..MessageFacts::default()
            };
            prop_assert_eq!(
                find_thread(&f, Direction::Inbound, &team(), &index, WINDOW),
                Some(parent_lead)
            );
        }

        #[test]
        fn different_counterparts_with_the_same_subject_never_merge(
            subject in ".{0,40}",
            a in "[a-z]{1,6}@[a-z]{1,6}\\.test",
            b in "[a-z]{1,6}@[a-z]{1,6}\\.test",
            last in 0i64..2_000_000_000,
            date in 0i64..2_000_000_000,
            outbound in any::<bool>(),
        ) {
            prop_assume!(a != b);
            let mut index = Index::default();
            index.add_lead(1, &subject, &a, last);
            let f = if outbound {
                facts("sales@example.com", &[b.as_str()], &subject)
            } else {
                facts(&b, &["sales@example.com"], &subject)
            };
            let f = MessageFacts { date, ..f };
            let dir = direction(&f, &team());
            prop_assert_eq!(find_thread(&f, dir, &team(), &index, u64::MAX), None);
        }

        #[test]
        fn normalizing_twice_changes_nothing(subject in ".{0,60}") {
            let once = normalize_subject(&subject);
            prop_assert_eq!(normalize_subject(&once), once);
        }
    }
}
