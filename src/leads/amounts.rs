//! Money amounts and seat counts in mail text, for the value signals.
//!
//! A number is digits with optional separators. A space, no-break space or
//! `'` separates thousands only (followed by exactly three digits); `.` or
//! `,` before exactly three digits separates thousands too, otherwise the
//! last one is the decimal point. So "50.000" and "50,000" are fifty
//! thousand, "1.5" and "1,5" one and a half, "1,234.56" and "1.234,56" the
//! same amount.
//!
//! - An *amount* is a number with a currency symbol (`$ € £ ¥`) or code
//!   (`USD`, `EUR`, ...) before or after it, and an optional multiplier
//!   (`k`, `m`, `mio`, `million`, `bn`, ...): "$120,000", "EUR 50.000",
//!   "1.5m €". A bare number with `k` or `thousand` is an amount too
//!   ("120k").
//! - A *seat count* is a number followed by users, seats or licenses:
//!   "500 users", "40 seats", "2k+ seats".
//!
//! Anything else (years, phone numbers, order numbers) is ignored.

/// Text beyond this many characters is not scanned.
const MAX_SCAN_CHARS: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mention {
    Amount { value: u64, text: String },
    Seats { count: u64, text: String },
}

pub(crate) fn scan(text: &str) -> Vec<Mention> {
    let chars: Vec<char> = text.chars().take(MAX_SCAN_CHARS).collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match Number::at(&chars, i) {
            Some(number) => {
                found.extend(number.mention(&chars));
                i = number.end;
            }
            None => i += 1,
        }
    }
    found
}

const SYMBOLS: [char; 4] = ['$', '€', '£', '¥'];

const CODES: [&str; 17] = [
    "usd", "eur", "gbp", "chf", "aud", "cad", "nzd", "sek", "nok", "dkk", "jpy", "inr", "dollars",
    "dollar", "euros", "euro", "pounds",
];

/// Longest first, so "mm" is not read as "m".
const MULTIPLIERS: [(&str, u128); 9] = [
    ("thousand", 1_000),
    ("billion", 1_000_000_000),
    ("million", 1_000_000),
    ("mio", 1_000_000),
    ("bn", 1_000_000_000),
    ("mm", 1_000_000),
    ("mn", 1_000_000),
    ("k", 1_000),
    ("m", 1_000_000),
];

const SEAT_WORDS: [&str; 8] = [
    "users", "user", "seats", "seat", "licenses", "license", "licences", "licence",
];

/// Separators that only ever separate thousands.
fn is_group_space(c: char) -> bool {
    matches!(c, ' ' | '\u{a0}' | '\u{202f}' | '\'')
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\u{a0}' | '\u{202f}')
}

struct Number {
    start: usize,
    /// One past the last digit.
    end: usize,
    /// The digits as an integer, scaled by `10^scale`.
    mantissa: u128,
    scale: u32,
}

impl Number {
    fn at(chars: &[char], start: usize) -> Option<Number> {
        if !chars.get(start)?.is_ascii_digit() || !starts_number(chars, start) {
            return None;
        }
        let mut groups: Vec<(char, &[char])> = vec![(' ', digits(chars, start))];
        let mut end = start + groups[0].1.len();
        while let Some(&sep) = chars.get(end) {
            let group = digits(chars, end + 1);
            let usable = if is_group_space(sep) {
                group.len() == 3
            } else {
                matches!(sep, '.' | ',') && !group.is_empty()
            };
            if !usable {
                break;
            }
            groups.push((sep, group));
            end += 1 + group.len();
        }
        let (last_sep, last) = groups[groups.len() - 1];
        let decimal = groups.len() > 1 && matches!(last_sep, '.' | ',') && last.len() != 3;
        let (int_groups, frac) = if decimal {
            (&groups[..groups.len() - 1], last)
        } else {
            (&groups[..], &[][..])
        };
        let frac = &frac[..frac.len().min(6)];
        let all_digits = int_groups.iter().flat_map(|(_, g)| g.iter()).chain(frac);
        let mantissa = all_digits.fold(0u128, |acc, d| {
            acc.saturating_mul(10)
                .saturating_add(u128::from(d.to_digit(10).unwrap_or(0)))
        });
        Some(Number {
            start,
            end,
            mantissa,
            scale: frac.len() as u32,
        })
    }

    fn value(&self, multiplier: u128) -> u64 {
        let scaled = self.mantissa.saturating_mul(multiplier) / 10u128.pow(self.scale);
        u64::try_from(scaled).unwrap_or(u64::MAX)
    }

    /// What this number is, judged by the words around it.
    fn mention(&self, chars: &[char]) -> Option<Mention> {
        let (multiplier, after_multiplier) = multiplier_after(chars, self.end);
        let before = currency_before(chars, self.start);
        let after = currency_after(chars, after_multiplier);
        let snippet = |from: usize, to: usize| chars[from..to].iter().collect::<String>();
        if before.is_some() || after.is_some() {
            let from = before.unwrap_or(self.start);
            let to = after.unwrap_or(after_multiplier);
            return Some(Mention::Amount {
                value: self.value(multiplier.unwrap_or(1)),
                text: snippet(from, to),
            });
        }
        if let Some(to) = seat_word_after(chars, after_multiplier) {
            return Some(Mention::Seats {
                count: self.value(multiplier.unwrap_or(1)),
                text: snippet(self.start, to),
            });
        }
        (multiplier == Some(1_000)).then(|| Mention::Amount {
            value: self.value(1_000),
            text: snippet(self.start, after_multiplier),
        })
    }
}

fn digits(chars: &[char], from: usize) -> &[char] {
    let rest = chars.get(from..).unwrap_or(&[]);
    let len = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    &rest[..len]
}

/// A digit starts a number unless it continues one or is part of a word
/// (a currency code written against it, as in "usd120k", is fine).
fn starts_number(chars: &[char], i: usize) -> bool {
    let Some(prev) = i.checked_sub(1).map(|p| chars[p]) else {
        return true;
    };
    match prev {
        c if c.is_ascii_digit() => false,
        '.' | ',' => !(i >= 2 && chars[i - 2].is_ascii_digit()),
        c if c.is_alphanumeric() => code_ending_at(chars, i).is_some(),
        _ => true,
    }
}

/// Whether a word matches at `at` (ASCII case-insensitive) and is not
/// followed by a letter or digit; returns the index after it.
fn word_at(chars: &[char], at: usize, word: &str) -> Option<usize> {
    let len = word.chars().count();
    let candidate = chars.get(at..at + len)?;
    let same = candidate
        .iter()
        .zip(word.chars())
        .all(|(c, w)| c.to_ascii_lowercase() == w);
    let bounded = chars.get(at + len).is_none_or(|c| !c.is_alphanumeric());
    (same && bounded).then_some(at + len)
}

/// Skips one space at `at`, if there is one.
fn skip_space(chars: &[char], at: usize) -> usize {
    if chars.get(at).is_some_and(|&c| is_space(c)) {
        at + 1
    } else {
        at
    }
}

/// The multiplier after a number and the index after it (or the number's
/// end when there is none).
fn multiplier_after(chars: &[char], end: usize) -> (Option<u128>, usize) {
    let at = skip_space(chars, end);
    MULTIPLIERS
        .iter()
        .find_map(|&(word, factor)| word_at(chars, at, word).map(|next| (Some(factor), next)))
        .unwrap_or((None, end))
}

/// The start of a currency symbol or code right before the number at
/// `start` (one space between them allowed).
fn currency_before(chars: &[char], start: usize) -> Option<usize> {
    code_ending_at(chars, start).or_else(|| {
        let at = match start.checked_sub(1) {
            Some(p) if is_space(chars[p]) => p,
            _ => start,
        };
        let symbol = at.checked_sub(1)?;
        if SYMBOLS.contains(&chars[symbol]) {
            return Some(symbol);
        }
        code_ending_at(chars, at).filter(|_| at != start)
    })
}

/// The start of a currency code that ends exactly at `end` and starts a
/// word.
fn code_ending_at(chars: &[char], end: usize) -> Option<usize> {
    let letters = chars[..end]
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_alphabetic())
        .count();
    let start = end - letters;
    let word: String = chars[start..end]
        .iter()
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (letters > 0 && CODES.contains(&word.as_str())).then_some(start)
}

/// The index after a currency symbol or code following `end`.
fn currency_after(chars: &[char], end: usize) -> Option<usize> {
    let at = skip_space(chars, end);
    if chars.get(at).is_some_and(|c| SYMBOLS.contains(c)) {
        return Some(at + 1);
    }
    CODES.iter().find_map(|code| word_at(chars, at, code))
}

/// The index after a seat word following `end` (with an optional `+`).
fn seat_word_after(chars: &[char], end: usize) -> Option<usize> {
    let end = if chars.get(end) == Some(&'+') {
        end + 1
    } else {
        end
    };
    let at = skip_space(chars, end);
    SEAT_WORDS.iter().find_map(|word| word_at(chars, at, word))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn amounts(text: &str) -> Vec<(u64, String)> {
        scan(text)
            .into_iter()
            .filter_map(|m| match m {
                Mention::Amount { value, text } => Some((value, text)),
                Mention::Seats { .. } => None,
            })
            .collect()
    }

    fn seats(text: &str) -> Vec<(u64, String)> {
        scan(text)
            .into_iter()
            .filter_map(|m| match m {
                Mention::Seats { count, text } => Some((count, text)),
                Mention::Amount { .. } => None,
            })
            .collect()
    }

    fn one_amount(text: &str) -> u64 {
        let found = amounts(text);
        assert_eq!(found.len(), 1, "{text}: {found:?}");
        found[0].0
    }

    #[test]
    fn currency_amounts_in_common_spellings() {
        assert_eq!(one_amount("budget is $120,000 this year"), 120_000);
        assert_eq!(one_amount("EUR 50.000 max"), 50_000);
        assert_eq!(one_amount("around 50.000€"), 50_000);
        assert_eq!(one_amount("50 000 € budget"), 50_000);
        assert_eq!(one_amount("£5k"), 5_000);
        assert_eq!(one_amount("$1.5m deal"), 1_500_000);
        assert_eq!(one_amount("1,5 Mio EUR"), 1_500_000);
        assert_eq!(one_amount("usd120k"), 120_000);
        assert_eq!(one_amount("US$ 2,500.50 per month"), 2_500);
        assert_eq!(one_amount("1.234,56 EUR"), 1_234);
        assert_eq!(one_amount("3 million dollars"), 3_000_000);
        assert_eq!(one_amount("CHF 1'200'000"), 1_200_000);
    }

    #[test]
    fn the_matched_text_is_reported_as_written() {
        assert_eq!(amounts("about EUR 50.000.")[0].1, "EUR 50.000");
        assert_eq!(amounts("about $120,000, ok")[0].1, "$120,000");
        assert_eq!(amounts("roughly 120k for this")[0].1, "120k");
        assert_eq!(seats("we need 500 users.")[0].1, "500 users");
    }

    #[test]
    fn a_bare_thousands_multiplier_is_an_amount() {
        assert_eq!(one_amount("we have 120k to spend"), 120_000);
        assert_eq!(one_amount("120 thousand"), 120_000);
    }

    #[test]
    fn seat_counts_are_found() {
        assert_eq!(seats("for 500 users"), [(500, "500 users".into())]);
        assert_eq!(seats("40 seats please"), [(40, "40 seats".into())]);
        assert_eq!(seats("1,000 licenses"), [(1_000, "1,000 licenses".into())]);
        assert_eq!(seats("2k+ seats"), [(2_000, "2k+ seats".into())]);
    }

    #[test]
    fn plain_numbers_are_not_signals() {
        for text in [
            "call +49 170 1234567",
            "order A1234 from 2024",
            "version 2.5.1",
            "5m away",
            "5ms latency",
            "we are 40 people",
            "ticket #12000",
        ] {
            assert_eq!(scan(text), [], "{text}");
        }
    }

    #[test]
    fn huge_numbers_saturate() {
        assert_eq!(
            one_amount("$999999999999999999999999999999999999999999"),
            u64::MAX
        );
        assert_eq!(one_amount("$99999999999999999 bn"), u64::MAX);
    }

    proptest! {
        #[test]
        fn scanning_never_panics(text in ".{0,200}") {
            let _ = scan(&text);
        }

        #[test]
        fn scanning_digit_soup_never_panics(text in "[0-9$€.,' kKmM+a-z]{0,80}") {
            let _ = scan(&text);
        }
    }
}
