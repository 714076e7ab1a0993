//! Client setup files for one user (`leadgate client-config USER`): a
//! Thunderbird autoconfig file (config-v1.1), an Outlook Autodiscover (POX)
//! response, an Apple configuration profile (.mobileconfig), plain text
//! settings, and Thunderbird tag definitions for the `$Lead_*` keywords.
//! Pure: the caller reads the config and the user; no password is ever
//! written. XML text is escaped, so a display name cannot break a file.

use std::fmt::Write;

use sha2::{Digest, Sha256};

/// How a listener secures its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (993, 465).
    Implicit,
    /// STARTTLS (143, 587).
    Starttls,
    /// None: loopback only (demo, tests).
    Plain,
}

/// One port a client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub port: u16,
    pub security: Security,
}

/// What the files describe.
#[derive(Debug, Clone)]
pub struct ClientSetup {
    /// The host name clients connect to.
    pub host: String,
    /// IMAP and SMTP ports, best first (see [`ClientSetup::sorted`]).
    pub imap: Vec<Endpoint>,
    pub smtp: Vec<Endpoint>,
    /// The user's login name (leadgate's, not the shared mailbox's).
    pub login: String,
    /// Their address (for the account's identity); the login when unknown.
    pub email: String,
    pub display_name: String,
}

pub use crate::imap::views::defs::LEAD_TAGS;

fn rank(s: Security) -> u8 {
    match s {
        Security::Implicit => 0,
        Security::Starttls => 1,
        Security::Plain => 2,
    }
}

use crate::compose::escape_markup;

/// A stable UUID for a payload: the same user and host get the same one,
/// so installing a new profile replaces the old instead of adding one.
fn payload_uuid(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let b = h.finalize();
    let hex: String = b[..16].iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

impl ClientSetup {
    /// Ports best first: implicit TLS, then STARTTLS, then plain text.
    pub fn sorted(mut self) -> Self {
        self.imap.sort_by_key(|e| rank(e.security));
        self.smtp.sort_by_key(|e| rank(e.security));
        self
    }

    fn domain(&self) -> &str {
        self.email
            .rsplit_once('@')
            .map_or(self.host.as_str(), |(_, d)| d)
    }

    /// Thunderbird's autoconfig file (config-v1.1).
    pub fn thunderbird(&self) -> String {
        let e = escape_markup;
        let mut out = String::new();
        let _ = writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        let _ = writeln!(out, "<clientConfig version=\"1.1\">");
        let _ = writeln!(out, "  <emailProvider id=\"{}\">", e(&self.host));
        let _ = writeln!(out, "    <domain>{}</domain>", e(self.domain()));
        let _ = writeln!(
            out,
            "    <displayName>leadgate ({})</displayName>",
            e(&self.host)
        );
        let _ = writeln!(out, "    <displayShortName>leadgate</displayShortName>");
        let socket = |s: Security| match s {
            Security::Implicit => "SSL",
            Security::Starttls => "STARTTLS",
            Security::Plain => "plain",
        };
        for (kind, tag, list) in [
            ("imap", "incomingServer", &self.imap),
            ("smtp", "outgoingServer", &self.smtp),
        ] {
            for ep in list {
                let _ = writeln!(out, "    <{tag} type=\"{kind}\">");
                let _ = writeln!(out, "      <hostname>{}</hostname>", e(&self.host));
                let _ = writeln!(out, "      <port>{}</port>", ep.port);
                let _ = writeln!(
                    out,
                    "      <socketType>{}</socketType>",
                    socket(ep.security)
                );
                let _ = writeln!(
                    out,
                    "      <authentication>password-cleartext</authentication>"
                );
                let _ = writeln!(out, "      <username>{}</username>", e(&self.login));
                let _ = writeln!(out, "    </{tag}>");
            }
        }
        let _ = writeln!(out, "  </emailProvider>");
        let _ = writeln!(out, "</clientConfig>");
        out
    }

    /// An Autodiscover response in the POX schema classic Outlook asks for.
    pub fn outlook(&self) -> String {
        let e = escape_markup;
        let mut out = String::new();
        let _ = writeln!(out, "<?xml version=\"1.0\" encoding=\"utf-8\"?>");
        let _ = writeln!(
            out,
            "<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">"
        );
        let _ = writeln!(
            out,
            "  <Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\">"
        );
        let _ = writeln!(
            out,
            "    <User><DisplayName>{}</DisplayName></User>",
            e(&self.display_name)
        );
        let _ = writeln!(out, "    <Account>");
        let _ = writeln!(out, "      <AccountType>email</AccountType>");
        let _ = writeln!(out, "      <Action>settings</Action>");
        for (kind, ep) in [("IMAP", self.imap.first()), ("SMTP", self.smtp.first())] {
            let Some(ep) = ep else { continue };
            let (ssl, enc) = match ep.security {
                Security::Implicit => ("on", "SSL"),
                Security::Starttls => ("on", "TLS"),
                Security::Plain => ("off", "None"),
            };
            let _ = writeln!(out, "      <Protocol>");
            let _ = writeln!(out, "        <Type>{kind}</Type>");
            let _ = writeln!(out, "        <Server>{}</Server>", e(&self.host));
            let _ = writeln!(out, "        <Port>{}</Port>", ep.port);
            let _ = writeln!(out, "        <DomainRequired>off</DomainRequired>");
            let _ = writeln!(out, "        <LoginName>{}</LoginName>", e(&self.login));
            let _ = writeln!(out, "        <SPA>off</SPA>");
            let _ = writeln!(out, "        <SSL>{ssl}</SSL>");
            let _ = writeln!(out, "        <Encryption>{enc}</Encryption>");
            let _ = writeln!(out, "        <AuthRequired>on</AuthRequired>");
            let _ = writeln!(out, "      </Protocol>");
        }
        let _ = writeln!(out, "    </Account>");
        let _ = writeln!(out, "  </Response>");
        let _ = writeln!(out, "</Autodiscover>");
        out
    }

    /// An Apple configuration profile with one IMAP account (Mail on
    /// macOS, iOS and iPadOS). Unsigned: devices show it as unverified.
    pub fn apple(&self) -> String {
        let e = escape_markup;
        let string = |k: &str, v: &str| format!("<key>{k}</key><string>{}</string>", e(v));
        let int = |k: &str, v: u16| format!("<key>{k}</key><integer>{v}</integer>");
        let boolean =
            |k: &str, v: bool| format!("<key>{k}</key><{}/>", if v { "true" } else { "false" });
        let mut account = vec![
            string(
                "EmailAccountDescription",
                &format!("leadgate ({})", self.host),
            ),
            string("EmailAccountName", &self.display_name),
            string("EmailAccountType", "EmailTypeIMAP"),
            string("EmailAddress", &self.email),
        ];
        if let Some(ep) = self.imap.first() {
            account.extend([
                string("IncomingMailServerAuthentication", "EmailAuthPassword"),
                string("IncomingMailServerHostName", &self.host),
                int("IncomingMailServerPortNumber", ep.port),
                boolean("IncomingMailServerUseSSL", ep.security != Security::Plain),
                string("IncomingMailServerUsername", &self.login),
            ]);
        }
        if let Some(ep) = self.smtp.first() {
            account.extend([
                string("OutgoingMailServerAuthentication", "EmailAuthPassword"),
                string("OutgoingMailServerHostName", &self.host),
                int("OutgoingMailServerPortNumber", ep.port),
                boolean("OutgoingMailServerUseSSL", ep.security != Security::Plain),
                string("OutgoingMailServerUsername", &self.login),
                boolean("OutgoingPasswordSameAsIncomingPassword", true),
            ]);
        }
        let id = format!("leadgate.{}.{}", self.host, self.login);
        account.extend([
            string("PayloadDescription", "The team mailbox through leadgate"),
            string(
                "PayloadDisplayName",
                &format!("leadgate mail ({})", self.login),
            ),
            string("PayloadIdentifier", &format!("{id}.mail")),
            string("PayloadType", "com.apple.mail.managed"),
            string(
                "PayloadUUID",
                &payload_uuid(&["mail", &self.host, &self.login]),
            ),
            int("PayloadVersion", 1),
        ]);
        let mut out = String::new();
        let _ = writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        let _ = writeln!(
            out,
            "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">"
        );
        let _ = writeln!(out, "<plist version=\"1.0\">\n<dict>");
        let _ = writeln!(out, "  <key>PayloadContent</key>\n  <array>\n    <dict>");
        for line in account {
            let _ = writeln!(out, "      {line}");
        }
        let _ = writeln!(out, "    </dict>\n  </array>");
        for line in [
            string(
                "PayloadDisplayName",
                &format!("leadgate mail ({})", self.login),
            ),
            string("PayloadIdentifier", &id),
            string("PayloadType", "Configuration"),
            string(
                "PayloadUUID",
                &payload_uuid(&["profile", &self.host, &self.login]),
            ),
            int("PayloadVersion", 1),
        ] {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(out, "</dict>\n</plist>");
        out
    }

    /// Settings to type in by hand.
    pub fn text(&self) -> String {
        let name = |s: Security| match s {
            Security::Implicit => "SSL/TLS",
            Security::Starttls => "STARTTLS",
            Security::Plain => "none (this machine only)",
        };
        let mut out = String::new();
        let _ = writeln!(out, "Account for {} <{}>", self.display_name, self.email);
        let _ = writeln!(
            out,
            "  Username   {} (your leadgate login and password)",
            self.login
        );
        for (kind, list) in [("IMAP", &self.imap), ("SMTP", &self.smtp)] {
            for (i, ep) in list.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  {:<10} {}  port {}  security {}  password: normal",
                    if i == 0 { kind } else { "" },
                    self.host,
                    ep.port,
                    name(ep.security)
                );
            }
        }
        out
    }
}

/// Thunderbird tag definitions (user.js lines) that show the `$Lead_*`
/// keywords as named, coloured tags. Thunderbird keys tags by the keyword
/// in lower case.
pub fn thunderbird_tags() -> String {
    let mut out = String::from(
        "// leadgate: the lead keywords as Thunderbird tags. Put these lines in\n// the profile's user.js (Thunderbird closed).\n",
    );
    for (i, (kw, label, color)) in LEAD_TAGS.iter().enumerate() {
        let key = kw.to_lowercase();
        let _ = writeln!(out, "user_pref(\"mailnews.tags.{key}.tag\", \"{label}\");");
        let _ = writeln!(
            out,
            "user_pref(\"mailnews.tags.{key}.color\", \"{color}\");"
        );
        let _ = writeln!(
            out,
            "user_pref(\"mailnews.tags.{key}.ordinal\", \"lead{i:02}\");"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(name: &str) -> ClientSetup {
        ClientSetup {
            host: "mail.example.com".into(),
            imap: vec![
                Endpoint {
                    port: 143,
                    security: Security::Starttls,
                },
                Endpoint {
                    port: 993,
                    security: Security::Implicit,
                },
            ],
            smtp: vec![Endpoint {
                port: 587,
                security: Security::Starttls,
            }],
            login: "alice".into(),
            email: "alice@example.com".into(),
            display_name: name.into(),
        }
        .sorted()
    }

    fn child_text<'a>(n: roxmltree::Node<'a, 'a>, tag: &str) -> Option<&'a str> {
        n.children()
            .find(|c| c.has_tag_name(tag))
            .and_then(|c| c.text())
    }

    #[test]
    fn thunderbird_autoconfig_lists_tls_first_and_no_password() {
        let xml = setup("Alice").thunderbird();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let incoming: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("incomingServer"))
            .collect();
        assert_eq!(incoming.len(), 2);
        assert_eq!(incoming[0].attribute("type"), Some("imap"));
        assert_eq!(child_text(incoming[0], "port"), Some("993"));
        assert_eq!(child_text(incoming[0], "socketType"), Some("SSL"));
        assert_eq!(child_text(incoming[1], "socketType"), Some("STARTTLS"));
        assert_eq!(child_text(incoming[0], "username"), Some("alice"));
        let out = doc
            .descendants()
            .find(|n| n.has_tag_name("outgoingServer"))
            .unwrap();
        assert_eq!(child_text(out, "port"), Some("587"));
        assert!(!xml.to_lowercase().contains("password>"));
    }

    #[test]
    fn hostile_names_are_escaped_in_every_xml_file() {
        let name = "Eve </DisplayName><x a=\"1\"> & 'co' \u{1}";
        let s = setup(name);
        for xml in [s.thunderbird(), s.outlook(), s.apple()] {
            let doc = roxmltree::Document::parse_with_options(
                &xml,
                roxmltree::ParsingOptions {
                    allow_dtd: true,
                    ..Default::default()
                },
            )
            .unwrap_or_else(|e| panic!("{e}: {xml}"));
            assert!(!doc.descendants().any(|n| n.has_tag_name("x")));
        }
        let outlook = s.outlook();
        let doc = roxmltree::Document::parse(&outlook).unwrap();
        let shown = doc
            .descendants()
            .find(|n| n.has_tag_name("DisplayName"))
            .and_then(|n| n.text())
            .unwrap();
        assert_eq!(shown, "Eve </DisplayName><x a=\"1\"> & 'co' ");
    }

    #[test]
    fn outlook_autodiscover_says_imap_and_smtp_with_their_encryption() {
        let xml = setup("Alice").outlook();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let protocols: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("Protocol"))
            .collect();
        assert_eq!(protocols.len(), 2);
        assert_eq!(child_text(protocols[0], "Type"), Some("IMAP"));
        assert_eq!(child_text(protocols[0], "Port"), Some("993"));
        assert_eq!(child_text(protocols[0], "Encryption"), Some("SSL"));
        assert_eq!(child_text(protocols[1], "Type"), Some("SMTP"));
        assert_eq!(child_text(protocols[1], "Encryption"), Some("TLS"));
        assert_eq!(child_text(protocols[1], "LoginName"), Some("alice"));
    }

    #[test]
    fn apple_profile_is_a_plist_with_a_stable_uuid() {
        let s = setup("Alice");
        let xml = s.apple();
        let doc = roxmltree::Document::parse_with_options(
            &xml,
            roxmltree::ParsingOptions {
                allow_dtd: true,
                ..Default::default()
            },
        )
        .unwrap();
        let value_of = |key: &str| {
            let k = doc
                .descendants()
                .find(|n| n.has_tag_name("key") && n.text() == Some(key))
                .unwrap_or_else(|| panic!("{key}"));
            let v = k.next_sibling_element().unwrap();
            (
                v.tag_name().name().to_owned(),
                v.text().unwrap_or("").to_owned(),
            )
        };
        assert_eq!(
            value_of("IncomingMailServerPortNumber"),
            ("integer".into(), "993".into())
        );
        assert_eq!(value_of("IncomingMailServerUseSSL").0, "true");
        assert_eq!(value_of("OutgoingMailServerPortNumber").1, "587");
        assert_eq!(value_of("EmailAddress").1, "alice@example.com");
        assert_eq!(xml, s.apple(), "same input, same profile");
        let uuid = value_of("PayloadUUID").1;
        assert_eq!(uuid.len(), 36, "{uuid}");
        assert!(!xml.contains("Password</key><string>"));
    }

    #[test]
    fn thunderbird_tags_name_every_lead_keyword() {
        let tags = thunderbird_tags();
        for (kw, label, _) in LEAD_TAGS {
            let key = kw.to_lowercase();
            assert!(
                tags.contains(&format!("\"mailnews.tags.{key}.tag\", \"{label}\"")),
                "{tags}"
            );
        }
    }
}
