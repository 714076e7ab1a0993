//! Pure functions over raw RFC 5322 messages: where the header ends, and
//! which header fields a HEADER.FIELDS fetch returns, the stamp's field
//! prefix. Read by the IMAP listener and the SMTP gateway; a leaf that
//! imports nothing of the crate.

/// Length of the header block including the blank line that ends it (the
/// whole message when there is no blank line).
pub fn header_len(msg: &[u8]) -> usize {
    let mut i = 0;
    while i < msg.len() {
        // At the start of a line: an empty line ends the header.
        if msg[i..].starts_with(b"\r\n") {
            return i + 2;
        }
        if msg[i] == b'\n' {
            return i + 1;
        }
        match memchr_nl(&msg[i..]) {
            Some(p) => i += p + 1,
            None => return msg.len(),
        }
    }
    msg.len()
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// The prefix of the fields leadgate stamps, and what a message's own
/// fields of that name are renamed to: the same length, so the served size
/// does not change.
const LEAD_PREFIX: &[u8] = b"x-lead-";
const DISARMED_PREFIX: &[u8] = b"X-Orig-";

/// `msg` (a whole message, its header, or a body part) with its own
/// `X-Lead-*` fields renamed to `X-Orig-*`, so a forged `X-Lead-Owner` in
/// incoming mail is never served beside the real stamp. Every header block
/// counts — the message's, each MIME part's, an attached message's — so a
/// line anywhere that *is* such a field (`X-Lead-<name>:`) is renamed. A
/// line starts after LF, after CRLF, and after a bare CR too (some clients
/// break lines there, so a field hidden behind one must not survive).
/// Borrowed when there is nothing to rename.
pub fn disarm_lead_fields(msg: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let is_field_at = |i: usize| {
        let rest = &msg[i..];
        if rest.len() < LEAD_PREFIX.len()
            || !rest[..LEAD_PREFIX.len()].eq_ignore_ascii_case(LEAD_PREFIX)
        {
            return false;
        }
        // A field name (printable, no space) up to the colon.
        rest[LEAD_PREFIX.len()..]
            .iter()
            .position(|&b| !(0x21..=0x7e).contains(&b) || b == b':')
            .is_some_and(|p| p > 0 && rest[LEAD_PREFIX.len() + p] == b':')
    };
    let mut starts = Vec::new();
    if is_field_at(0) {
        starts.push(0);
    }
    for p in memchr::memchr2_iter(b'\n', b'\r', msg) {
        if p + 1 < msg.len() && is_field_at(p + 1) {
            starts.push(p + 1);
        }
    }
    if starts.is_empty() {
        return std::borrow::Cow::Borrowed(msg);
    }
    let mut out = msg.to_vec();
    for s in starts {
        out[s..s + DISARMED_PREFIX.len()].copy_from_slice(DISARMED_PREFIX);
    }
    std::borrow::Cow::Owned(out)
}

/// Splits a header block into whole fields (each with its folded
/// continuation lines and line ending).
pub fn header_fields(header: &[u8]) -> Vec<&[u8]> {
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < header.len() {
        let end = memchr_nl(&header[i..])
            .map(|p| i + p + 1)
            .unwrap_or(header.len());
        let line = &header[i..end];
        let is_blank = line == b"\r\n" || line == b"\n";
        let continues = matches!(line.first(), Some(b' ' | b'\t'));
        if (!continues || is_blank) && i > start {
            fields.push(&header[start..i]);
            start = i;
        }
        if is_blank {
            return fields;
        }
        i = end;
    }
    if start < header.len() {
        fields.push(&header[start..]);
    }
    fields
}

pub fn field_name(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == b':').unwrap_or(field.len());
    let name = &field[..end];
    let trimmed = name
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map(|p| p + 1)
        .unwrap_or(0);
    &name[..trimmed]
}

/// The fields whose names are (or, with `not`, are not) in `names`,
/// followed by the blank line, as HEADER.FIELDS answers.
pub fn select_fields(header: &[u8], names: &[&[u8]], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for f in header_fields(header) {
        let name = field_name(f);
        let listed = names.iter().any(|n| n.eq_ignore_ascii_case(name));
        if listed != not {
            out.extend_from_slice(f);
            if !f.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: a@x\r\nSubject: hello\r\n  world\r\nTo: b@y\r\n\r\nbody\r\n";

    #[test]
    fn own_lead_fields_are_renamed_in_every_header_block() {
        let msg = b"From: a@x\r\nx-lead-owner: mallory\r\nSubject: X-Lead-Id: 1\r\nX-LEAD-Status: Won\r\n\r\nX-Lead-Id: body\r\nX-Lead-Id is prose\r\n";
        let out = disarm_lead_fields(msg);
        assert_eq!(out.len(), msg.len());
        assert_eq!(
            &out[..],
            b"From: a@x\r\nX-Orig-owner: mallory\r\nSubject: X-Lead-Id: 1\r\nX-Orig-Status: Won\r\n\r\nX-Orig-Id: body\r\nX-Lead-Id is prose\r\n"
        );
        assert!(matches!(
            disarm_lead_fields(MSG),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_lead_field_behind_a_bare_cr_is_renamed_too() {
        let msg = b"Subject: hi\rX-Lead-Owner: mallory\r\nX-Mailer: y\rx-lead-id: 9\n\r\nbody";
        let out = disarm_lead_fields(msg);
        assert_eq!(
            &out[..],
            b"Subject: hi\rX-Orig-Owner: mallory\r\nX-Mailer: y\rX-Orig-id: 9\n\r\nbody"
        );
    }

    #[test]
    fn header_ends_at_blank_line() {
        let n = header_len(MSG);
        assert_eq!(&MSG[n..], b"body\r\n");
        assert_eq!(header_len(b"From: a\r\n"), 9);
        assert_eq!(header_len(b"\r\nbody"), 2);
    }

    #[test]
    fn folded_fields_stay_whole() {
        let h = &MSG[..header_len(MSG)];
        let f = header_fields(h);
        assert_eq!(f.len(), 3);
        assert_eq!(f[1], b"Subject: hello\r\n  world\r\n");
        assert_eq!(field_name(f[1]), b"Subject");
    }

    #[test]
    fn header_fields_selection() {
        let h = &MSG[..header_len(MSG)];
        assert_eq!(
            select_fields(h, &[b"subject".as_slice()], false),
            b"Subject: hello\r\n  world\r\n\r\n"
        );
        assert_eq!(
            select_fields(h, &[b"subject".as_slice()], true),
            b"From: a@x\r\nTo: b@y\r\n\r\n"
        );
        assert_eq!(select_fields(h, &[b"x-none".as_slice()], false), b"\r\n");
    }
}
