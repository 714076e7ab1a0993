//! The owner rule by person, not only by thread (issue 11): over real
//! Postfix and Dovecot, a rep cannot reach another owner's customer by
//! writing fresh, by mixing references, or by adding the customer in Cc;
//! the owner's and a manager's fresh mail goes out and joins the lead;
//! mail to teammates only is no reply; `owner_scope = "domain"` protects a
//! company domain and never a free-mail one.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const CONFIG: &str = r#"
[[smtp.listener]]
addr = "127.0.0.1:0"
tls = "plaintext"

[smtp]
notes_address = "notes@leadgate.local"

[smtp.relay]
host = "127.0.0.1"
port = {POSTFIX_PORT}
tls = "none"
timeout_secs = 10

[leads]
shared_address = "sales@example.com"
"#;

fn setup(extra_leads: &str) -> Setup {
    let config = CONFIG.replace(
        "shared_address = \"sales@example.com\"\n",
        &format!("shared_address = \"sales@example.com\"\n{extra_leads}\n"),
    );
    Setup::new(GatewayOptions {
        extra: config,
        ..Default::default()
    })
}

/// Message-IDs in the customer's own mailbox, asked of Dovecot.
fn customer_ids(s: &Setup) -> Vec<String> {
    mailbox_message_ids(&s.dovecot, CUSTOMER, "INBOX")
}

/// A message a rep writes, with whatever threading headers it has.
fn mail(from: &str, to: &str, cc: &str, subject: &str, id: &str, threading: &str) -> Vec<u8> {
    let cc = if cc.is_empty() {
        String::new()
    } else {
        format!("Cc: {cc}\r\n")
    };
    format!(
        "From: {from}\r\nTo: {to}\r\n{cc}Subject: {subject}\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{id}>\r\n{threading}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello from the team.\r\n"
    )
    .into_bytes()
}

fn submit(s: &Setup, user: (&str, &str), to: &[&str], message: &[u8]) -> SmtpReply {
    let mut c = SmtpClient::login(s.gateway.addr("smtp-plaintext"), user.0, user.1).unwrap();
    let from = format!("{}@example.com", user.0);
    c.send(&from, to, message).unwrap()
}

fn audit_actions(s: &Setup, lead: u64) -> Vec<String> {
    let out = s
        .gateway
        .cli(&["audit", "export", "--lead", &lead.to_string()], None);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A customer writes in; round-robin gives the lead to alice, then bob.
fn new_lead(s: &Setup, from: &str, id: &str) -> (u64, String) {
    let before = s.gateway.leads().len();
    s.deliver(
        from,
        &message(
            &format!("Cora Customer <{from}>"),
            "Quote for 25 seats",
            id,
            "Please quote 25 seats.",
        ),
    );
    let mut found = (0, String::new());
    assert!(
        eventually(Duration::from_secs(20), || {
            let leads = s.gateway.leads();
            let Some(l) = leads.iter().find(|l| l["contact_email"] == from) else {
                return false;
            };
            found = (
                l["id"].as_u64().unwrap(),
                l["owner"].as_str().unwrap_or_default().to_owned(),
            );
            leads.len() > before && !found.1.is_empty()
        }),
        "no owned lead for {from}: {}",
        s.gateway.log()
    );
    found
}

#[test]
fn nobody_walks_around_the_owner_by_writing_fresh_or_mixing_references() {
    let s = setup("");
    let customer = "customer@customer.test";
    let (id, owner) = new_lead(&s, customer, "q1@customer.test");
    assert_eq!(owner, "alice");

    // 1. Bob writes fresh ("Re: <same subject>", no threading headers).
    let r = submit(
        &s,
        BOB,
        &[customer],
        &mail(
            "bob@example.com",
            customer,
            "",
            "Re: Quote for 25 seats",
            "bob-fresh@example.com",
            "",
        ),
    );
    assert_eq!(r.code, 550, "{}", r.text);
    assert!(
        r.text.contains("5.7.1") && r.text.contains("owned by alice") && r.text.contains(customer),
        "{}",
        r.text
    );

    // 2. Bob opens his own lead with a colleague of the customer's, then
    // threads to it while References names alice's thread.
    let r = submit(
        &s,
        BOB,
        &["cfo@customer.test"],
        &mail(
            "bob@example.com",
            "cfo@customer.test",
            "",
            "Budget question",
            "bob-own@example.com",
            "",
        ),
    );
    assert_eq!(r.code, 250, "bob's own fresh mail: {}", r.text);
    let r = submit(
        &s,
        BOB,
        &[customer],
        &mail(
            "bob@example.com",
            customer,
            "",
            "Re: Budget question",
            "bob-mixed@example.com",
            "In-Reply-To: <bob-own@example.com>\r\nReferences: <q1@customer.test> <bob-own@example.com>\r\n",
        ),
    );
    assert_eq!(r.code, 550, "{}", r.text);
    assert!(r.text.contains("owned by alice"), "{}", r.text);

    // 3. Bob answers his own thread and puts alice's customer in Cc (an
    // envelope recipient, as Bcc would be).
    let r = submit(
        &s,
        BOB,
        &["cfo@customer.test", customer],
        &mail(
            "bob@example.com",
            "cfo@customer.test",
            customer,
            "Re: Budget question",
            "bob-cc@example.com",
            "In-Reply-To: <bob-own@example.com>\r\nReferences: <bob-own@example.com>\r\n",
        ),
    );
    assert_eq!(r.code, 550, "{}", r.text);

    // Nothing of bob's refused mail reached the customer's mailbox (the
    // cfo address has no mailbox; Postfix bounces it, which is fine).
    let ids = customer_ids(&s);
    for refused in [
        "bob-fresh@example.com",
        "bob-mixed@example.com",
        "bob-cc@example.com",
    ] {
        assert!(
            !ids.iter().any(|i| i.contains(refused)),
            "{refused} reached the customer: {ids:?}"
        );
    }
    let blocked = audit_actions(&s, id)
        .iter()
        .filter(|a| *a == "reply.blocked")
        .count();
    assert_eq!(blocked, 3, "{:?}", audit_actions(&s, id));
    // (Two more refusals follow below, in 3b.)

    // 3b. Alice's thread buried deep in a long References list, to
    // somebody else entirely: every reference counts.
    let mut refs: Vec<String> = (0..900).map(|i| format!("<noise-{i}@x.test>")).collect();
    refs.insert(17, "<q1@customer.test>".into());
    let r = submit(
        &s,
        BOB,
        &["stranger@other.test"],
        &mail(
            "bob@example.com",
            "stranger@other.test",
            "",
            "Re: Quote for 25 seats",
            "bob-buried@example.com",
            &format!("References: {}\r\n", refs.join(" ")),
        ),
    );
    assert_eq!(r.code, 550, "{}", r.text);
    assert!(r.text.contains("owned by alice"), "{}", r.text);
    // An absurd list is refused outright, not cut short.
    let refs: Vec<String> = (0..1001).map(|i| format!("<noise-{i}@x.test>")).collect();
    let r = submit(
        &s,
        BOB,
        &["stranger@other.test"],
        &mail(
            "bob@example.com",
            "stranger@other.test",
            "",
            "Hello",
            "bob-absurd@example.com",
            &format!("References: {}\r\n", refs.join(" ")),
        ),
    );
    assert_eq!(r.code, 554, "{}", r.text);
    assert!(r.text.contains("at most 1000"), "{}", r.text);

    // 4. Alice writes to her colleague bob only, in the customer's thread:
    // internal, no reply — the lead still owes the customer a first answer.
    let r = submit(
        &s,
        ALICE,
        &["bob@example.com"],
        &mail(
            "alice@example.com",
            "bob@example.com",
            "",
            "Re: Quote for 25 seats",
            "alice-internal@example.com",
            "In-Reply-To: <q1@customer.test>\r\nReferences: <q1@customer.test>\r\n",
        ),
    );
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(r.text.contains("internal"), "{}", r.text);
    // Its copy in the shared Sent is ingested as internal, too.
    assert!(
        eventually(Duration::from_secs(20), || audit_actions(&s, id)
            .contains(&"lead.internal".to_owned())),
        "{:?}",
        audit_actions(&s, id)
    );
    let l = s.gateway.lead(id);
    assert_eq!(l["status"], "assigned", "{l}");
    assert!(l["first_response_at"].is_null(), "{l}");

    // 5. Alice's own fresh mail goes out and joins her lead (no second
    // lead for the same customer).
    let leads_before = s.gateway.leads().len();
    let r = submit(
        &s,
        ALICE,
        &[customer],
        &mail(
            "alice@example.com",
            customer,
            "",
            "Following up on your quote",
            "alice-fresh@example.com",
            "",
        ),
    );
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(r.text.contains(&format!("lead {id}")), "{}", r.text);
    assert_eq!(s.gateway.leads().len(), leads_before);
    let l = s.gateway.lead(id);
    assert_eq!(l["status"], "waiting-for-reply", "{l}");

    // 6. A manager may write to any customer.
    let r = submit(
        &s,
        MARIA,
        &[customer],
        &mail(
            "maria@example.com",
            customer,
            "",
            "A word from the sales manager",
            "maria-fresh@example.com",
            "",
        ),
    );
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(
        eventually(Duration::from_secs(20), || {
            let ids = customer_ids(&s);
            ids.iter().any(|i| i.contains("alice-fresh@example.com"))
                && ids.iter().any(|i| i.contains("maria-fresh@example.com"))
        }),
        "{:?}",
        customer_ids(&s)
    );
}

#[test]
fn domain_scope_protects_a_company_and_never_a_free_mail_domain() {
    let s = setup("owner_scope = \"domain\"");
    let (_, owner) = new_lead(&s, "customer@customer.test", "d1@customer.test");
    assert_eq!(owner, "alice");
    let (_, owner) = new_lead(&s, "someone@gmail.com", "d2@gmail.test");
    assert_eq!(owner, "bob", "round-robin gives the second lead to bob");

    // Another person at the company is protected too ...
    let r = submit(
        &s,
        BOB,
        &["boss@customer.test"],
        &mail(
            "bob@example.com",
            "boss@customer.test",
            "",
            "Introduction",
            "bob-boss@example.com",
            "",
        ),
    );
    assert_eq!(r.code, 550, "{}", r.text);
    assert!(
        r.text.contains("boss@customer.test is at customer.test")
            && r.text.contains("owned by alice"),
        "{}",
        r.text
    );

    // ... and so is anyone at one of its subdomains.
    let r = submit(
        &s,
        BOB,
        &["cto@eu.customer.test"],
        &mail(
            "bob@example.com",
            "cto@eu.customer.test",
            "",
            "Introduction",
            "bob-eu@example.com",
            "",
        ),
    );
    assert_eq!(r.code, 550, "{}", r.text);
    assert!(r.text.contains("the company of lead"), "{}", r.text);

    // ... but gmail.com is nobody's account: alice may write to another
    // gmail user, while bob's contact there stays his.
    let r = submit(
        &s,
        ALICE,
        &["other@gmail.com"],
        &mail(
            "alice@example.com",
            "other@gmail.com",
            "",
            "Introduction",
            "alice-gmail@example.com",
            "",
        ),
    );
    assert_eq!(r.code, 250, "{}", r.text);
    let r = submit(
        &s,
        ALICE,
        &["someone@gmail.com"],
        &mail(
            "alice@example.com",
            "someone@gmail.com",
            "",
            "Introduction",
            "alice-gmail2@example.com",
            "",
        ),
    );
    assert_eq!(r.code, 550, "{}", r.text);
    assert!(r.text.contains("owned by bob"), "{}", r.text);

    // Alice herself writes to anyone at her customer's company.
    let r = submit(
        &s,
        ALICE,
        &["boss@customer.test"],
        &mail(
            "alice@example.com",
            "boss@customer.test",
            "",
            "Introduction",
            "alice-boss@example.com",
            "",
        ),
    );
    assert_eq!(r.code, 250, "{}", r.text);
}
