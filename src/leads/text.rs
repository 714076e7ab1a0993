//! Matching configured words and domains against mail text.
//!
//! A keyword matches "word-ish": case-insensitively, any run of whitespace in
//! the keyword matches any run in the text, a typographic apostrophe (’)
//! matches a plain one, and where the keyword starts or ends with a letter or
//! digit the text must not continue with one, except for one plural `s`.
//! So `demo` matches "Demo?" and "demos" but not "demonstrate", and
//! `can't log in` matches "I CAN’T  log in".

use super::threading::MessageFacts;

/// How much of a body is searched: the caller already cuts bodies to a few
/// KB; this bounds the work whatever it passes.
pub(crate) const MAX_TEXT_BYTES: usize = 32 * 1024;

/// Subject and body of one message, prepared for keyword search.
#[derive(Debug, Clone)]
pub(crate) struct Haystack(String);

impl Haystack {
    pub(crate) fn of(facts: &MessageFacts) -> Self {
        Haystack(normalize(&subject_and_body(facts)))
    }

    /// Byte position of the first word-ish match of `keyword`, if any.
    pub(crate) fn find(&self, keyword: &str) -> Option<usize> {
        find_word(&self.0, &normalize(keyword))
    }

    pub(crate) fn contains(&self, keyword: &str) -> bool {
        self.find(keyword).is_some()
    }
}

/// Subject, a line break, then the body cut to [`MAX_TEXT_BYTES`].
pub(crate) fn subject_and_body(facts: &MessageFacts) -> String {
    format!("{}\n{}", facts.subject, truncate(&facts.body_text))
}

fn truncate(s: &str) -> &str {
    if s.len() <= MAX_TEXT_BYTES {
        return s;
    }
    let mut end = MAX_TEXT_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Lower case, one space for every whitespace run, ’ as '.
fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
        .replace('\u{2019}', "'")
}

fn find_word(haystack: &str, needle: &str) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    let word_start = needle.starts_with(char::is_alphanumeric);
    let word_end = needle.ends_with(char::is_alphanumeric);
    haystack
        .match_indices(needle)
        .map(|(pos, _)| pos)
        .find(|&pos| {
            let before = haystack[..pos].chars().next_back();
            let after = &haystack[pos + needle.len()..];
            (!word_start || before.is_none_or(|c| !c.is_alphanumeric()))
                && (!word_end || ends_word(after))
        })
}

/// The text after a match does not continue the word (one plural `s` is
/// allowed).
fn ends_word(after: &str) -> bool {
    let mut rest = after.chars();
    match rest.next() {
        None => true,
        Some('s') => rest.next().is_none_or(|c| !c.is_alphanumeric()),
        Some(c) => !c.is_alphanumeric(),
    }
}

/// A domain pattern from the config: `acme.test` matches that domain and its
/// subdomains (`eu.acme.test`); `.de` matches every domain ending in `.de`.
pub(crate) fn domain_matches(pattern: &str, domain: &str) -> bool {
    let pattern = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if pattern.is_empty() || pattern == "." || domain.is_empty() {
        return false;
    }
    if pattern.starts_with('.') {
        return domain.ends_with(&pattern);
    }
    domain == pattern || domain.ends_with(&format!(".{pattern}"))
}

/// How specific a domain pattern is, to prefer `eu.acme.test` over `.test`.
pub(crate) fn specificity(pattern: &str) -> usize {
    pattern.trim().trim_matches('.').split('.').count()
}

/// Whether an address can go into a header as it is: printable ASCII, one
/// `@`, nothing that would need quoting.
pub fn header_safe_address(address: &str) -> bool {
    let ok_byte = |b: u8| b.is_ascii_graphic() && !b"<>()[],;:\"\\".contains(&b);
    address.len() <= 254
        && address.bytes().filter(|&b| b == b'@').count() == 1
        && !address.starts_with('@')
        && !address.ends_with('@')
        && address.bytes().all(ok_byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hay(subject: &str, body: &str) -> Haystack {
        Haystack::of(&MessageFacts {
            subject: subject.into(),
            body_text: body.into(),
            ..MessageFacts::default()
        })
    }

    #[test]
    fn keywords_match_whole_words_case_insensitively() {
        let h = hay("Request a DEMO", "");
        assert!(h.contains("demo"));
        assert!(!hay("we demonstrate", "").contains("demo"));
        assert!(!hay("pseudodemo", "").contains("demo"));
    }

    #[test]
    fn keywords_allow_a_plural_s() {
        assert!(hay("", "two demos please").contains("demo"));
        assert!(!hay("", "demoss").contains("demo"));
    }

    #[test]
    fn multi_word_keywords_match_any_whitespace_and_curly_apostrophes() {
        let h = hay("help", "I can’t \n  log in since Monday");
        assert!(h.contains("can't log in"));
        assert!(hay("", "your LEAD  LIST offer").contains("lead list"));
    }

    #[test]
    fn keywords_with_symbols_match_at_symbol_edges() {
        assert!(hay("Rank #1 on Google", "").contains("rank #1"));
        assert!(!hay("Rank #10 on Google", "").contains("rank #1"));
        assert!(hay("price: $5", "").contains("$"));
    }

    #[test]
    fn empty_keywords_never_match() {
        assert!(!hay("anything", "at all").contains(""));
        assert!(!hay("anything", "at all").contains("   "));
    }

    #[test]
    fn find_returns_the_earliest_position() {
        let h = hay("crm question", "about billing");
        assert!(h.find("crm") < h.find("billing"));
    }

    #[test]
    fn huge_bodies_are_cut_on_a_char_boundary() {
        let body = "é".repeat(MAX_TEXT_BYTES);
        let h = hay("s", &body);
        assert!(!h.contains("x"));
    }

    #[test]
    fn domain_patterns_match_subdomains_and_suffixes() {
        assert!(domain_matches("acme.test", "acme.test"));
        assert!(domain_matches("ACME.test", "eu.acme.TEST"));
        assert!(!domain_matches("acme.test", "notacme.test"));
        assert!(domain_matches(".de", "firma.de"));
        assert!(!domain_matches(".de", "firma.dk"));
        assert!(!domain_matches("", "firma.de"));
        assert!(!domain_matches(".", "firma.de"));
        assert!(!domain_matches("acme.test", ""));
    }

    #[test]
    fn longer_patterns_are_more_specific() {
        assert!(specificity("eu.acme.test") > specificity("acme.test"));
        assert!(specificity("acme.test") > specificity(".test"));
    }

    #[test]
    fn header_safe_addresses() {
        assert!(header_safe_address("maria@example.com"));
        assert!(!header_safe_address("maria@example.com\r\nBcc: x@y"));
        assert!(!header_safe_address("märia@example.com"));
        assert!(!header_safe_address("a b@example.com"));
        assert!(!header_safe_address("no-at-sign"));
    }
}
