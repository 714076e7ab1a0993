//! Real-world mail never moves the follow-up clock (issue 11): every file of
//! the corpus under tests/corpus (modelled on the RFCs and on what
//! Exchange, Gmail, Zendesk, Postfix, Exim and qmail really send) is
//! delivered through Postfix into Dovecot while leadgate watches, and the
//! lead is checked as a rep would: auto-replies join the lead with
//! `$Lead_AutoReply` and change nothing; bounces join it with
//! `$Lead_Bounced` and put it in Review/Blocked (Needs internal input);
//! ordinary answers — one even says "out of office" — count as the
//! customer's. Last, a genuine bounce from Postfix itself.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const CONFIG: &str = r#"
[[smtp.listener]]
addr = "127.0.0.1:0"
tls = "plaintext"

[smtp.relay]
host = "127.0.0.1"
port = {POSTFIX_PORT}
tls = "none"
timeout_secs = 10

[leads]
shared_address = "sales@example.com"
"#;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");

fn corpus(path: &str) -> Vec<u8> {
    std::fs::read(format!("{CORPUS}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn files(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("{CORPUS}/{dir}"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    names.sort();
    names.into_iter().map(|n| format!("{dir}/{n}")).collect()
}

/// The message's own Message-ID (the first in its header block).
fn message_id(raw: &[u8]) -> String {
    let msg = mail_parser::MessageParser::default().parse(raw).unwrap();
    format!("<{}>", msg.message_id().unwrap())
}

fn audit(s: &Setup) -> Vec<Value> {
    let out = s.gateway.cli(&["audit", "export"], None);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The audit event that ingested the message with this Message-ID.
fn ingest_event(s: &Setup, id: &str) -> Option<Value> {
    audit(s)
        .into_iter()
        .find(|e| e["reason"].as_str().is_some_and(|r| r.contains(id)))
}

/// Flags of the shared message with this Message-ID, through leadgate's
/// INBOX as alice sees it.
fn flags_of(s: &Setup, id: &str) -> Option<String> {
    let mut c = s.gateway.login(ALICE.0, ALICE.1);
    c.run("SELECT INBOX");
    let r = c.run("FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])");
    r.text.split("\r\n* ").find_map(|chunk| {
        let lower = chunk.to_ascii_lowercase();
        if !lower.contains(&id.to_ascii_lowercase()) {
            return None;
        }
        let start = chunk.find("FLAGS (")? + 7;
        let end = start + chunk[start..].find(')')?;
        Some(chunk[start..end].to_owned())
    })
}

/// Waits until the message shows in INBOX with `keyword` (ingest runs
/// just after the index has the message); its flags.
fn wait_flags(s: &Setup, id: &str, keyword: &str) -> String {
    let mut flags = None;
    let found = eventually(Duration::from_secs(20), || {
        flags = flags_of(s, id);
        flags.as_deref().is_some_and(|f| f.contains(keyword))
    });
    assert!(found, "{id} never showed with {keyword}: {flags:?}");
    flags.unwrap()
}

/// Alice answers lead 1 again through leadgate (it waits for the customer).
fn alice_replies(s: &Setup, n: u32) {
    let raw = format!(
        "From: alice@example.com\r\nTo: Dana Whitfield <dana@northwind.test>\r\nSubject: Re: Pricing for 40 seats\r\nDate: Mon, 23 Nov 2026 11:00:00 +0000\r\nMessage-ID: <alice-reply-{n}@example.com>\r\nIn-Reply-To: <dana-1@northwind.test>\r\nReferences: <dana-1@northwind.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHere is our quote.\r\n"
    );
    let mut c = SmtpClient::login(s.gateway.addr("smtp-plaintext"), ALICE.0, ALICE.1).unwrap();
    let r = c
        .send(
            "alice@example.com",
            &["dana@northwind.test"],
            raw.as_bytes(),
        )
        .unwrap();
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(r.text.contains("lead 1"), "{}", r.text);
    assert_eq!(s.gateway.lead(1)["status"], "waiting-for-reply");
}

#[test]
fn real_world_auto_replies_bounces_and_answers_drive_the_lead_as_they_should() {
    // Dana has a real mailbox, so alice's replies are delivered (and not
    // bounced for an unknown domain).
    let s = Setup::with_customers(
        GatewayOptions {
            extra: CONFIG.into(),
            ..Default::default()
        },
        &[("dana", "dana-mailbox-pw")],
        &["northwind.test"],
    );
    // Dana asks; round-robin gives the lead to alice; alice answers with
    // the Message-ID every corpus file refers to.
    s.deliver(
        "dana@northwind.test",
        &message(
            "Dana Whitfield <dana@northwind.test>",
            "Pricing for 40 seats",
            "dana-1@northwind.test",
            "What would 40 seats cost?",
        ),
    );
    assert!(
        eventually(Duration::from_secs(20), || s.gateway.lead(1)["owner"]
            == "alice"),
        "{}",
        s.gateway.log()
    );
    alice_replies(&s, 1);
    let waiting = s.gateway.lead(1);
    let lead_count = s.gateway.leads().len();

    // 1. Auto-replies: recognised, joined where they thread, nothing moves.
    for file in files("autoreply") {
        let raw = corpus(&file);
        let id = message_id(&raw);
        let envelope = if file.contains("dsn") {
            ""
        } else {
            "dana@northwind.test"
        };
        s.deliver(envelope, &raw);
        wait_flags(&s, &id, "$Lead_AutoReply");
        let now = s.gateway.lead(1);
        for field in ["status", "due", "first_response_at", "followups_sent"] {
            assert_eq!(now[field], waiting[field], "{file} moved {field}");
        }
        assert_eq!(s.gateway.leads().len(), lead_count, "{file} opened a lead");
        // Those a mail client threads are on the lead's timeline.
        if !file.contains("dsn") && !file.contains("receipt") {
            let ev = ingest_event(&s, &id).unwrap_or_else(|| panic!("{file}: not on lead 1"));
            assert_eq!(ev["action"], "lead.auto_reply", "{file}: {ev}");
            assert_eq!(ev["lead"], 1, "{file}: {ev}");
        }
    }

    // 2. Bounces: each one stops the wait and asks the owner for the right
    // address (Review/Blocked); the lead is found by the Message-ID inside.
    let mut maria = s.gateway.login(MARIA.0, MARIA.1);
    for (n, file) in files("bounce").into_iter().enumerate() {
        let raw = corpus(&file);
        let id = message_id(&raw);
        s.deliver("", &raw);
        wait_flags(&s, &id, "$Lead_Bounced");
        assert!(
            eventually(Duration::from_secs(10), || s.gateway.lead(1)["status"]
                == "needs-internal-input"),
            "{file}: {}",
            s.gateway.lead(1)
        );
        let ev = ingest_event(&s, &id).unwrap();
        assert_eq!(
            (ev["action"].as_str(), ev["lead"].as_u64()),
            (Some("lead.bounce"), Some(1))
        );
        assert!(
            ev["reason"]
                .as_str()
                .unwrap()
                .contains("dana@northwind.test"),
            "{file}: {ev}"
        );
        let blocked = maria.run("STATUS \"Review/Blocked\" (MESSAGES)");
        assert!(
            status_messages(&blocked.text) >= 1,
            "{file}: {}",
            blocked.text
        );
        let note = s.gateway.lead(1)["notes"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["text"]
            .clone();
        assert!(
            note.as_str().unwrap().contains("find the right address"),
            "{file}: {note}"
        );
        assert_eq!(s.gateway.leads().len(), lead_count, "{file} opened a lead");
        alice_replies(&s, 10 + n as u32);
    }

    // 3. Ordinary mail is the customer's: never marked, always counted.
    for (n, file) in files("ordinary").into_iter().enumerate() {
        let raw = corpus(&file);
        let id = message_id(&raw);
        s.deliver("dana@northwind.test", &raw);
        let mut ev = None;
        assert!(
            eventually(Duration::from_secs(20), || {
                ev = ingest_event(&s, &id);
                ev.is_some()
            }),
            "{file} not ingested"
        );
        let ev = ev.unwrap();
        let flags = flags_of(&s, &id).unwrap();
        assert!(
            !flags.contains("$Lead_AutoReply") && !flags.contains("$Lead_Bounced"),
            "{file}: {flags}"
        );
        assert!(
            ev["action"] == "lead.inbound" || ev["action"] == "lead.create",
            "{file}: {ev}"
        );
        if ev["lead"] == 1 {
            assert_eq!(s.gateway.lead(1)["status"], "assigned", "{file}");
            alice_replies(&s, 100 + n as u32);
        }
    }

    // 4. A genuine bounce: alice writes to an address Dovecot does not
    // have; Postfix returns a DSN to the shared mailbox.
    let raw = b"From: alice@example.com\r\nTo: <nobody@customer.test>\r\nSubject: Our offer\r\nMessage-ID: <alice-offer@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHello!\r\n";
    let mut c = SmtpClient::login(s.gateway.addr("smtp-plaintext"), ALICE.0, ALICE.1).unwrap();
    let r = c
        .send("alice@example.com", &["nobody@customer.test"], raw)
        .unwrap();
    assert_eq!(r.code, 250, "{}", r.text);
    let offer = s
        .gateway
        .leads()
        .into_iter()
        .find(|l| l["contact_email"] == "nobody@customer.test")
        .expect("a lead for alice's fresh mail");
    assert!(
        eventually(Duration::from_secs(30), || s
            .gateway
            .lead(offer["id"].as_u64().unwrap())["status"]
            == "needs-internal-input"),
        "Postfix's bounce did not reach the lead: {}",
        s.gateway.lead(offer["id"].as_u64().unwrap())
    );
}
