//! The owner rule at SMTP, end to end: a customer mailbox on the same
//! Dovecot, delivered by Postfix; reps submit through leadgate with Python's
//! smtplib and swaks; leadgate relays through Postfix.

mod common;

use std::{process::Command, time::Duration};

use common::*;

const CONFIG: &str = r#"
[[smtp.listener]]
addr = "127.0.0.1:0"
tls = "plaintext"

[[smtp.listener]]
addr = "127.0.0.1:0"
tls = "starttls"

[smtp]
notes_address = "notes@leadgate.local"
max_message_bytes = 26214400

[smtp.relay]
host = "127.0.0.1"
port = {POSTFIX_PORT}
tls = "none"
timeout_secs = 10

[leads]
shared_address = "sales@example.com"
"#;

fn customer_inbox(s: &Setup) -> String {
    let mut c = RawImap::login(s.dovecot.imap_port, CUSTOMER.0, CUSTOMER.1);
    c.run("SELECT INBOX");
    c.run("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (FROM REPLY-TO SUBJECT X-LEAD-ID MESSAGE-ID)])")
}

fn customer_count(s: &Setup) -> usize {
    let mut c = RawImap::login(s.dovecot.imap_port, CUSTOMER.0, CUSTOMER.1);
    let r = c.run("STATUS INBOX (MESSAGES)");
    r.split("MESSAGES ")
        .nth(1)
        .and_then(|t| t.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn only_the_owner_replies_and_the_thread_stays_whole() {
    let mut s = Setup::new(GatewayOptions {
        listeners: vec!["plaintext"],
        extra: CONFIG.into(),
        ..Default::default()
    });
    // The customer asks for a quote; round-robin gives it to alice.
    testbed::smtp_send(
        s.postfix.smtp_port,
        "customer@customer.test",
        &["sales@example.com"],
        &message(
            "Cora Customer <customer@customer.test>",
            "Quote for 25 seats",
            "q1@customer.test",
            "Please quote 25 seats.",
        ),
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || s.gateway.lead(1)["owner"]
            == "alice"),
        "no lead for alice: {}",
        s.gateway.log()
    );

    // Bob's reply is refused with alice named; nothing reaches the customer.
    let bob = smtplib(
        &s,
        BOB,
        "bob@example.com",
        "customer@customer.test",
        "Re: Quote for 25 seats",
        "<q1@customer.test>",
        "I can help!",
    );
    assert!(
        !bob.ok && bob.code == 550 && bob.message.contains("alice"),
        "{}: {}",
        bob.code,
        bob.message
    );
    assert!(bob.message.contains("5.7.1"), "{}", bob.message);
    // The same with swaks.
    let addr = s.gateway.addr("smtp-plaintext");
    let swaks = Command::new("swaks")
        .args([
            "--server",
            &format!("{}:{}", addr.ip(), addr.port()),
            "--auth",
            "PLAIN",
            "--auth-user",
            BOB.0,
            "--auth-password",
            BOB.1,
        ])
        .args([
            "--from",
            "bob@example.com",
            "--to",
            "customer@customer.test",
            "--header",
            "In-Reply-To: <q1@customer.test>",
            "--header",
            "Subject: Re: quote",
        ])
        .output()
        .expect("run swaks");
    let text = String::from_utf8_lossy(&swaks.stdout);
    assert!(
        !swaks.status.success() && text.contains("550 5.7.1") && text.contains("alice"),
        "{text}"
    );
    let blocked = s
        .gateway
        .cli(&["audit", "export", "--action", "reply.blocked"], None);
    assert_eq!(
        String::from_utf8_lossy(&blocked.stdout).lines().count(),
        2,
        "both refusals are audited"
    );

    // Alice's reply goes out as the team, reaches the customer, and is filed.
    let alice = smtplib(
        &s,
        ALICE,
        "alice@example.com",
        "customer@customer.test",
        "Re: Quote for 25 seats",
        "<q1@customer.test>",
        "Here is your quote.",
    );
    assert!(alice.ok, "{}: {}", alice.code, alice.message);
    assert!(
        eventually(Duration::from_secs(20), || customer_count(&s) == 1),
        "the reply did not reach the customer"
    );
    let inbox = customer_inbox(&s);
    assert!(
        inbox.contains("From: \"alice\" <sales@example.com>")
            && inbox.contains("Reply-To: <sales@example.com>"),
        "{inbox}"
    );
    assert!(inbox.contains("X-Lead-Id: 1"), "{inbox}");
    // Filed in the background, right after the 250.
    let mut direct = s.direct();
    assert!(
        eventually(Duration::from_secs(20), || direct
            .run("STATUS Sent (MESSAGES)")
            .contains("MESSAGES 1")),
        "not filed in the shared Sent"
    );
    let l = s.gateway.lead(1);
    assert_eq!(l["status"], "waiting-for-reply");
    assert_eq!(l["due_kind"], "follow-up");
    assert!(l["first_response_at"].is_number());
    let due = l["due"].as_i64().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        due >= now + 2 * 86_400 - 3600 && due <= now + 5 * 86_400,
        "follow-up two business days out, got {due} (now {now})"
    );
    // The reply is in the lead's thread: the filed copy joined the lead.
    let show =
        String::from_utf8_lossy(&s.gateway.cli(&["lead", "show", "1"], None).stdout).to_string();
    assert!(show.contains("lead.reply"), "{show}");

    // The customer's answer cancels the follow-up: the owner owes a reply.
    let reply_id = inbox
        .split("Message-ID: ")
        .nth(1)
        .and_then(|t| t.split("\r\n").next())
        .unwrap()
        .trim()
        .to_owned();
    let mut answer = message(
        "Cora Customer <customer@customer.test>",
        "Re: Quote for 25 seats",
        "q2@customer.test",
        "Thanks, one question.",
    );
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    answer.splice(end..end, format!("\r\nIn-Reply-To: {reply_id}").bytes());
    testbed::smtp_send(
        s.postfix.smtp_port,
        "customer@customer.test",
        &["sales@example.com"],
        &answer,
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || {
            let l = s.gateway.lead(1);
            l["status"] == "assigned" && l["due_kind"] == "response"
        }),
        "the customer's answer did not put the lead back in alice's court: {}",
        s.gateway.lead(1)
    );

    // An internal note is kept on the lead and not sent.
    let note = smtplib(
        &s,
        BOB,
        "bob@example.com",
        "notes@leadgate.local",
        "note",
        "<q1@customer.test>",
        "Customer also asked about SSO.",
    );
    assert!(note.ok, "{}: {}", note.code, note.message);
    let show =
        String::from_utf8_lossy(&s.gateway.cli(&["lead", "show", "1"], None).stdout).to_string();
    assert!(show.contains("Customer also asked about SSO."), "{show}");
    assert_eq!(customer_count(&s), 1);

    // Postfix down: the client gets 451; its retry is delivered once.
    s.postfix.stop();
    let down = smtplib(
        &s,
        ALICE,
        "alice@example.com",
        "customer@customer.test",
        "Re: Quote for 25 seats",
        "<q2@customer.test>",
        "Answer.",
    );
    assert!(
        !down.ok && down.code == 451,
        "{}: {}",
        down.code,
        down.message
    );
    s.postfix.restart();
    let again = smtplib(
        &s,
        ALICE,
        "alice@example.com",
        "customer@customer.test",
        "Re: Quote for 25 seats",
        "<q2@customer.test>",
        "Answer.",
    );
    assert!(again.ok, "{}: {}", again.code, again.message);
    assert!(eventually(Duration::from_secs(30), || customer_count(&s) == 2));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(customer_count(&s), 2, "delivered exactly once");
}

#[test]
fn submission_limits_and_sender_checks() {
    let s = Setup::new(GatewayOptions {
        listeners: vec!["plaintext"],
        extra: CONFIG.into(),
        ..Default::default()
    });
    // AUTH before STARTTLS is refused on the STARTTLS listener: not
    // advertised, and refused when tried anyway.
    let addr = s.gateway.addr("smtp-starttls");
    let mut raw = std::net::TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut talk = |line: &str| -> String {
        use std::io::{Read, Write};
        if !line.is_empty() {
            raw.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        }
        let mut buf = vec![0u8; 4096];
        let mut got = String::new();
        while !got
            .lines()
            .last()
            .is_some_and(|l| l.len() >= 4 && &l[3..4] == " ")
        {
            let n = raw.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {got}");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        got
    };
    talk("");
    let ehlo = talk("EHLO client.test");
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    let auth = talk("AUTH PLAIN AGFsaWNlAGFsaWNlLXBhc3N3b3Jk");
    assert!(auth.starts_with("530 5.7.0"), "{auth}");

    // A spoofed sender is refused.
    let spoof = smtplib(
        &s,
        ALICE,
        "ceo@example.com",
        "customer@customer.test",
        "hi",
        "",
        "x",
    );
    assert!(
        !spoof.ok && spoof.code == 553 && spoof.message.contains("5.7.1"),
        "{}: {}",
        spoof.code,
        spoof.message
    );
    // A 30 MB message against a 25 MB limit is refused cleanly.
    let too_big = smtplib(
        &s,
        ALICE,
        "alice@example.com",
        "customer@customer.test",
        "big",
        "",
        &format!("@bytes:{}", 30 * 1024 * 1024),
    );
    assert!(
        !too_big.ok && too_big.code == 552,
        "{}: {}",
        too_big.code,
        too_big.message
    );
    assert_eq!(customer_count(&s), 0);
}

/// A mail client that resends a message it already sent (its 250 got lost
/// on the way back, or the rep pressed Send on a copy still in the Outbox)
/// must not reach the customer twice: leadgate remembers what it relayed
/// by user, recipients and Message-ID, answers the repeat 250 and says so.
#[test]
fn a_repeated_submission_reaches_the_customer_once() {
    let s = Setup::new(GatewayOptions {
        listeners: vec!["plaintext"],
        extra: CONFIG.into(),
        ..Default::default()
    });
    let addr = s.gateway.addr("smtp-plaintext");
    let message = |id: &str| {
        format!(
            "From: Alice <alice@example.com>\r\nTo: customer@customer.test\r\nSubject: Our offer\r\nMessage-ID: <{id}@example.com>\r\n\r\nHere it is.\r\n"
        )
        .into_bytes()
    };
    let mut c = SmtpClient::login(addr, ALICE.0, ALICE.1).unwrap();
    let first = c
        .send(
            "alice@example.com",
            &["customer@customer.test"],
            &message("offer-1"),
        )
        .unwrap();
    assert_eq!(first.code, 250, "{}", first.text);
    // The same message again, on a new connection, as a client's retry.
    let mut c = SmtpClient::login(addr, ALICE.0, ALICE.1).unwrap();
    let again = c
        .send(
            "alice@example.com",
            &["customer@customer.test"],
            &message("offer-1"),
        )
        .unwrap();
    assert_eq!(again.code, 250, "{}", again.text);
    assert!(again.text.contains("not sent again"), "{}", again.text);
    // Another message goes out as usual.
    let other = c
        .send(
            "alice@example.com",
            &["customer@customer.test"],
            &message("offer-2"),
        )
        .unwrap();
    assert_eq!(other.code, 250, "{}", other.text);
    assert!(!other.text.contains("not sent again"), "{}", other.text);

    assert!(eventually(Duration::from_secs(30), || customer_count(&s) >= 2));
    std::thread::sleep(Duration::from_secs(2));
    let ids = mailbox_message_ids(&s.dovecot, CUSTOMER, "INBOX");
    assert_eq!(
        ids,
        vec![
            "<offer-1@example.com>".to_owned(),
            "<offer-2@example.com>".to_owned()
        ]
    );
    let sent = mailbox_message_ids(&s.dovecot, SALES, "Sent");
    assert_eq!(
        sent.iter()
            .filter(|m| *m == "<offer-1@example.com>")
            .count(),
        1,
        "{sent:?}"
    );
    let audit = s.gateway.cli(&["audit", "export"], None);
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.contains("reply.repeat"), "{audit}");
}
