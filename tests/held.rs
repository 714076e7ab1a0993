//! Held replies end to end (issue 11, `[smtp] blocked_reply = "hold"`):
//! over real Postfix and Dovecot, a rep's reply on a colleague's lead is
//! answered 250 "held" and reaches nobody; it shows in the sender's
//! Leads/Held and in Review/Held for the owner and the managers; the
//! sender cannot release it himself; the owner's move into Held/Release
//! sends it exactly once and files it in the shared Sent; a manager's move
//! into Held/Discard drops it. (Expiry: tests/held_expiry.rs.)

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const CONFIG: &str = r#"
[[smtp.listener]]
addr = "127.0.0.1:0"
tls = "plaintext"

[smtp]
blocked_reply = "hold"
hold_days = 2

[smtp.relay]
host = "127.0.0.1"
port = {POSTFIX_PORT}
tls = "none"
timeout_secs = 10

[leads]
shared_address = "sales@example.com"
"#;

fn bobs_reply(n: u32) -> Vec<u8> {
    format!(
        "From: bob@example.com\r\nTo: customer@customer.test\r\nSubject: Re: Quote for 25 seats\r\nMessage-ID: <bob-held-{n}@example.com>\r\nIn-Reply-To: <q1@customer.test>\r\nReferences: <q1@customer.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nI can do it cheaper, number {n}.\r\n"
    )
    .into_bytes()
}

fn submit(s: &Setup, user: (&str, &str), message: &[u8]) -> SmtpReply {
    let mut c = SmtpClient::login(s.gateway.addr("smtp-plaintext"), user.0, user.1).unwrap();
    c.send(
        &format!("{}@example.com", user.0),
        &["customer@customer.test"],
        message,
    )
    .unwrap()
}

fn messages(c: &mut Client, folder: &str) -> usize {
    let r = c.run(&format!("STATUS \"{folder}\" (MESSAGES)"));
    assert!(r.ok(), "STATUS {folder}: {}", r.tagged);
    status_messages(&r.text)
}

fn customer_ids(s: &Setup) -> Vec<String> {
    mailbox_message_ids(&s.dovecot, CUSTOMER, "INBOX")
}

fn actions(s: &Setup) -> Vec<String> {
    let out = s
        .gateway
        .cli(&["audit", "export", "--action", "reply."], None);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|e| {
            format!(
                "{} {}",
                e["actor"].as_str().unwrap(),
                e["action"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn a_held_reply_waits_for_the_owner_and_goes_out_once_when_released() {
    let s = Setup::new(GatewayOptions {
        extra: CONFIG.into(),
        ..Default::default()
    });
    s.deliver(
        "customer@customer.test",
        &message(
            "Cora Customer <customer@customer.test>",
            "Quote for 25 seats",
            "q1@customer.test",
            "Please quote 25 seats.",
        ),
    );
    assert!(
        eventually(Duration::from_secs(20), || s
            .gateway
            .leads()
            .first()
            .is_some_and(|l| l["owner"] == "alice")),
        "{}",
        s.gateway.log()
    );

    // Bob's reply is held: 250, saying so; nothing reaches the customer.
    let r = submit(&s, BOB, &bobs_reply(1));
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(
        r.text.contains("Held, not sent") && r.text.contains("owned by alice"),
        "{}",
        r.text
    );
    // The lead's context says so.
    let show = s.gateway.cli(&["lead", "show", "1"], None);
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.contains("Held replies") && show.contains("<bob-held-1@example.com>"),
        "{show}"
    );
    // A client's retry of the same message is not held twice.
    let again = submit(&s, BOB, &bobs_reply(1));
    assert!(again.text.contains("held before"), "{}", again.text);

    let mut bob = s.gateway.login(BOB.0, BOB.1);
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    let mut maria = s.gateway.login(MARIA.0, MARIA.1);
    assert!(
        eventually(Duration::from_secs(10), || messages(&mut bob, "Leads/Held")
            == 1),
        "not in bob's Leads/Held: {}",
        s.gateway.log()
    );
    assert_eq!(messages(&mut alice, "Review/Held"), 1);
    assert_eq!(messages(&mut maria, "Review/Held"), 1);
    assert_eq!(messages(&mut bob, "Review/Held"), 0, "bob owns no lead");
    assert_eq!(messages(&mut alice, "Leads/Held"), 0, "alice sent nothing");
    let list = alice.run("LIST \"\" \"Update lead/Held/*\"");
    assert!(list.text.contains("Held/Release") && list.text.contains("Held/Discard"));

    // The sender cannot release his own held reply.
    let r = bob.run("SELECT \"Leads/Held\"");
    assert!(r.ok(), "{}", r.tagged);
    let fetched = bob.run("FETCH 1 (BODY.PEEK[TEXT])");
    assert!(
        fetched.text.contains("cheaper, number 1"),
        "{}",
        fetched.text
    );
    let r = bob.run("MOVE 1 \"Held/Release\"");
    assert!(r.no() && r.tagged.contains("alice"), "{}", r.tagged);

    // The owner releases it: sent once, filed in the shared Sent.
    let r = alice.run("SELECT \"Review/Held\"");
    assert!(r.ok(), "{}", r.tagged);
    let r = alice.run("UID MOVE 1:* \"Held/Release\"");
    assert!(r.ok(), "{}", r.tagged);
    assert!(
        eventually(Duration::from_secs(20), || customer_ids(&s)
            .iter()
            .any(|i| i.contains("bob-held-1@example.com"))),
        "the released reply never arrived: {:?}",
        customer_ids(&s)
    );
    assert!(
        eventually(Duration::from_secs(20), || mailbox_message_ids(
            &s.dovecot, SALES, "Sent"
        )
        .iter()
        .any(|i| i.contains("bob-held-1@example.com"))),
        "not filed in the shared Sent"
    );
    assert!(
        eventually(Duration::from_secs(10), || messages(
            &mut alice,
            "Review/Held"
        ) == 0
            && messages(&mut bob, "Leads/Held") == 0),
        "the held copy stayed"
    );
    // A second release of the same message finds nothing to send.
    std::thread::sleep(Duration::from_secs(1));
    let delivered = customer_ids(&s)
        .iter()
        .filter(|i| i.contains("bob-held-1@example.com"))
        .count();
    assert_eq!(delivered, 1);
    let lead = &s.gateway.leads()[0];
    assert_eq!(
        lead["owner"], "alice",
        "a released reply does not move the lead"
    );
    assert_eq!(lead["status"], "waiting-for-reply", "{lead}");

    // A manager discards the next one: it never goes out.
    let r = submit(&s, BOB, &bobs_reply(2));
    assert!(r.text.contains("Held, not sent"), "{}", r.text);
    assert!(eventually(Duration::from_secs(10), || messages(
        &mut maria,
        "Review/Held"
    ) == 1));
    assert!(maria.run("SELECT \"Review/Held\"").ok());
    let r = maria.run("MOVE 1 \"Held/Discard\"");
    assert!(r.ok(), "{}", r.tagged);
    assert!(eventually(Duration::from_secs(10), || messages(
        &mut bob,
        "Leads/Held"
    ) == 0));
    std::thread::sleep(Duration::from_secs(2));
    assert!(!customer_ids(&s)
        .iter()
        .any(|i| i.contains("bob-held-2@example.com")));

    let log = actions(&s);
    for want in [
        "bob reply.held",
        "bob reply.release.refused",
        "alice reply.released",
        "maria reply.discarded",
    ] {
        assert!(log.iter().any(|a| a == want), "{want} missing from {log:?}");
    }
    assert_eq!(log.iter().filter(|a| *a == "bob reply.held").count(), 2);
}
