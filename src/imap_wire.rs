//! IMAP string syntax, the one place that quotes: the listener writes its
//! responses with it and the upstream client its commands. A string is
//! quoted when it can be and sent as a literal otherwise, so no value can
//! break the framing. A leaf: imports nothing of the crate.
//!
//! imap-codec encodes whole commands and responses only; the hand-built
//! lines (LIST, STATUS and stamped FETCH answers, upstream commands) need
//! the pieces, so the choice quoted-or-literal is made here, with
//! imap-types' character classes and escaping.

use std::io::Write;

use imap_codec::imap_types::utils::{escape_quoted, indicators::is_atom_char};

/// Longest string sent quoted; longer ones go as literals.
const MAX_QUOTED: usize = 1024;

/// `{n}\r\n` followed by the bytes.
pub fn literal(out: &mut Vec<u8>, data: &[u8]) {
    let _ = write!(out, "{{{}}}\r\n", data.len());
    out.extend_from_slice(data);
}

/// The quoted form of `data` (`"..."` with `"` and `\` escaped), or `None`
/// when it must go as a literal: longer than 1 KiB, or not all printable
/// ASCII.
pub fn quoted(data: &[u8]) -> Option<String> {
    if data.len() > MAX_QUOTED || !data.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    let text = std::str::from_utf8(data).ok()?;
    Some(format!("\"{}\"", escape_quoted(text)))
}

/// Inclusive ranges as an IMAP sequence set: `1:3,7,9:12`.
pub fn sequence_set(ranges: &[(u32, u32)]) -> String {
    let mut out = String::new();
    for &(a, b) in ranges {
        if !out.is_empty() {
            out.push(',');
        }
        if a == b {
            out.push_str(&a.to_string());
        } else {
            out.push_str(&format!("{a}:{b}"));
        }
    }
    out
}

/// An IMAP string: quoted if safe, literal otherwise.
pub fn string(out: &mut Vec<u8>, data: &[u8]) {
    match quoted(data) {
        Some(q) => out.extend_from_slice(q.as_bytes()),
        None => literal(out, data),
    }
}

pub fn nstring(out: &mut Vec<u8>, data: Option<&[u8]>) {
    match data {
        Some(d) => string(out, d),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// An astring: a bare atom when every byte allows it.
pub fn astring(out: &mut Vec<u8>, data: &[u8]) {
    if !data.is_empty() && data.iter().all(|&b| is_atom_char(b)) {
        out.extend_from_slice(data);
    } else {
        string(out, data);
    }
}

/// Response text must be one line of printable text.
pub fn text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl Fn(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn strings_never_break_framing() {
        assert_eq!(s(|o| string(o, b"a \"q\" \\")), r#""a \"q\" \\""#);
        assert_eq!(s(|o| string(o, b"a\r\nb")), "{4}\r\na\r\nb");
        assert_eq!(s(|o| string(o, "é".as_bytes())), "{2}\r\né");
        assert_eq!(s(|o| string(o, b"a\x7f")), "{2}\r\na\x7f");
        assert_eq!(s(|o| astring(o, b"Sent")), "Sent");
        assert_eq!(s(|o| astring(o, b"Follow up")), "\"Follow up\"");
        assert_eq!(s(|o| astring(o, b"a]b")), "\"a]b\"");
        assert_eq!(s(|o| astring(o, b"a%")), "\"a%\"");
        assert_eq!(s(|o| astring(o, b"")), "\"\"");
        assert_eq!(s(|o| nstring(o, None)), "NIL");
        assert_eq!(text("a\r\nb"), "a  b");
    }

    #[test]
    fn long_strings_go_as_literals() {
        let at_cap = vec![b'x'; MAX_QUOTED];
        assert_eq!(quoted(&at_cap).map(|q| q.len()), Some(MAX_QUOTED + 2));
        assert_eq!(quoted(&vec![b'x'; MAX_QUOTED + 1]), None);
    }
}
