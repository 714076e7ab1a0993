//! Mail leadgate writes itself (the digest, escalation notices, held-reply
//! notices) and the header sanitising every outgoing or served header
//! uses. A leaf: it imports nothing of the crate.
//!
//! Every such mail is `Auto-Submitted: auto-generated` (RFC 3834), so
//! vacation responders and leadgate itself never answer it, with ASCII
//! headers and a text/plain UTF-8 body in quoted-printable (any relay
//! takes it, 8BITMIME or not).

use std::fmt::Write;

use base64::Engine;

/// Text for HTML or XML content and attribute values: the five markup
/// characters escaped (`'` as `&#39;`, which both read), control
/// characters XML 1.0 forbids left out.
pub fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// One line of printable ASCII: controls become spaces, runs of spaces
/// collapse, non-ASCII text becomes an RFC 2047 encoded word.
pub fn header_safe(value: &str) -> String {
    let mut flat = String::with_capacity(value.len());
    let mut last_space = false;
    for c in value.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c == ' ' {
            if !last_space {
                flat.push(' ');
            }
            last_space = true;
        } else {
            flat.push(c);
            last_space = false;
        }
    }
    let flat = flat.trim().to_owned();
    if flat.is_ascii() {
        flat
    } else {
        format!(
            "=?utf-8?b?{}?=",
            base64::engine::general_purpose::STANDARD.encode(flat.as_bytes())
        )
    }
}

/// Quoted-printable (RFC 2045 6.7) with CRLF line ends and soft breaks
/// before 76 characters.
pub fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.lines() {
        let bytes = line.as_bytes();
        let mut width = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            let plain = (b.is_ascii_graphic() && b != b'=') || (b == b' ' && !last);
            let piece = if plain {
                (b as char).to_string()
            } else {
                format!("={b:02X}")
            };
            if width + piece.len() > 75 {
                out.push_str("=\r\n");
                width = 0;
            }
            width += piece.len();
            out.push_str(&piece);
        }
        out.push_str("\r\n");
    }
    out
}

/// A mail leadgate sends on its own.
pub struct AutoMail<'a> {
    /// The sender's address (the shared address); the display name is
    /// always "leadgate".
    pub from: &'a str,
    /// Recipient addresses (already checked header-safe by the caller).
    pub to: &'a [String],
    pub subject: &'a str,
    /// RFC 2822 date text.
    pub date: &'a str,
    /// `Message-ID: <{id_prefix}.{random}@{hostname}>`.
    pub id_prefix: &'a str,
    /// `Auto-Submitted:` (RFC 3834): `auto-generated` for notices and
    /// digests, `auto-replied` for answers to a person's mail.
    pub auto_submitted: &'a str,
    pub hostname: &'a str,
    /// More header lines, without CRLF (e.g. `X-Lead-Id: 7`).
    pub extra: &'a [String],
    pub body: &'a str,
}

impl AutoMail<'_> {
    pub fn render(&self) -> Vec<u8> {
        let host: String = self
            .hostname
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
            .collect();
        let host = if host.is_empty() {
            "leadgate".into()
        } else {
            host
        };
        let prefix: String = self
            .id_prefix
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
            .collect();
        let to: Vec<String> = self.to.iter().map(|a| format!("<{a}>")).collect();
        let token: u64 = rand::random();
        let mut out = String::new();
        let _ = write!(
            out,
            "From: leadgate <{}>\r\n\
             To: {}\r\n\
             Subject: {}\r\n\
             Date: {}\r\n\
             Message-ID: <{prefix}.{token:016x}@{host}>\r\n\
             Auto-Submitted: {}\r\n",
            self.from,
            to.join(", "),
            header_safe(self.subject),
            self.date,
            header_safe(self.auto_submitted),
        );
        for line in self.extra {
            out.push_str(&header_safe(line));
            out.push_str("\r\n");
        }
        out.push_str(
            "MIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\
             \r\n",
        );
        out.push_str(&quoted_printable(self.body));
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_safe_flattens_and_encodes() {
        assert_eq!(header_safe(" a\r\nBcc:  x "), "a Bcc: x");
        assert_eq!(header_safe("Jürgen"), "=?utf-8?b?SsO8cmdlbg==?=");
    }

    #[test]
    fn an_auto_mail_is_auto_generated_ascii_and_parses_back() {
        let mail = AutoMail {
            from: "sales@example.com",
            to: &["maria@example.com".into()],
            subject: "Escalated: lead 7 · Jürgen",
            date: "Mon, 30 Nov 2026 10:00:00 +0000",
            id_prefix: "escalation.7",
            auto_submitted: "auto-generated",
            hostname: "gw.example.com\r\nBcc: x",
            extra: &["X-Lead-Id: 7".into()],
            body: "Lead 7 is overdue.\nÜberfällig = late",
        }
        .render();
        assert!(mail.is_ascii());
        let text = String::from_utf8(mail.clone()).unwrap();
        assert!(text.contains("\r\nAuto-Submitted: auto-generated\r\n"));
        assert!(!text.contains("\r\nBcc"));
        assert!(text.contains("@gw.example.comBccx>"));
        let parsed = mail_parser::MessageParser::default().parse(&mail).unwrap();
        assert_eq!(parsed.subject(), Some("Escalated: lead 7 · Jürgen"));
        assert_eq!(
            parsed.body_text(0).unwrap().trim_end(),
            "Lead 7 is overdue.\nÜberfällig = late".replace('\n', "\r\n")
        );
        assert_eq!(
            parsed.header("X-Lead-Id").and_then(|h| h.as_text()),
            Some("7")
        );
    }
}
