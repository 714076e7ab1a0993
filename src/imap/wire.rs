//! Writing IMAP response syntax. Strings are quoted when they can be and
//! sent as literals otherwise, so no value can break the framing.

use std::io::Write;

/// `{n}\r\n` followed by the bytes.
pub fn literal(out: &mut Vec<u8>, data: &[u8]) {
    let _ = write!(out, "{{{}}}\r\n", data.len());
    out.extend_from_slice(data);
}

fn quotable(data: &[u8]) -> bool {
    data.len() <= 1024 && data.iter().all(|&b| (0x20..0x7f).contains(&b))
}

/// An IMAP string: quoted if safe, literal otherwise.
pub fn string(out: &mut Vec<u8>, data: &[u8]) {
    if quotable(data) {
        out.push(b'"');
        for &b in data {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, data);
    }
}

pub fn nstring(out: &mut Vec<u8>, data: Option<&[u8]>) {
    match data {
        Some(d) => string(out, d),
        None => out.extend_from_slice(b"NIL"),
    }
}

fn atom_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !b"(){%*\"\\]".contains(&b)
}

/// An astring: a bare atom when every byte allows it.
pub fn astring(out: &mut Vec<u8>, data: &[u8]) {
    if !data.is_empty() && data.iter().all(|&b| atom_char(b)) {
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
        assert_eq!(s(|o| astring(o, b"Sent")), "Sent");
        assert_eq!(s(|o| astring(o, b"Follow up")), "\"Follow up\"");
        assert_eq!(s(|o| astring(o, b"")), "\"\"");
        assert_eq!(text("a\r\nb"), "a  b");
    }
}
