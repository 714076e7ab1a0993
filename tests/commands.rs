//! Commands by mail (issue 13): reps and managers write to the notes
//! address about a lead — answering its mail, or to notes+<id>@ — with
//! command lines at the top; leadgate applies them with the action
//! folders' permissions, mails back what it refused, and tells a new owner.
//! Real Dovecot and Postfix; mail submitted with Python's smtplib.

mod common;

use std::{process::Command, time::Duration};

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
notify_owner = true

[leads.calendar]
time_zone = "UTC"
workdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
hours = "00:00-23:59"
holidays = []
"#;

fn send(s: &Setup, user: (&str, &str), to: &str, in_reply_to: &str, body: &str) -> (bool, u64) {
    let r = smtplib(
        s,
        user,
        &format!("{}@example.com", user.0),
        to,
        "Re: Quote for 25 seats",
        in_reply_to,
        body,
    );
    (r.ok, r.code)
}

fn lead(s: &Setup, id: u64) -> Value {
    let out = s.gateway.cli(&["lead", "list", "--all", "--json"], None);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["id"] == id)
        .unwrap_or(Value::Null)
}

fn show(s: &Setup, id: u64) -> String {
    String::from_utf8_lossy(
        &s.gateway
            .cli(&["lead", "show", &id.to_string()], None)
            .stdout,
    )
    .to_string()
}

/// Maria's own mailbox, in order: each mail as its subject, then its raw
/// header block and its decoded text.
fn maria_mail(s: &Setup) -> Vec<String> {
    let mut c = RawImap::login(s.dovecot.imap_port, MARIA_MAILBOX.0, MARIA_MAILBOX.1);
    let r = c.run("SELECT INBOX");
    let count: usize = r
        .lines()
        .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (1..=count)
        .map(|i| {
            let fetched = c.run(&format!("FETCH {i} BODY.PEEK[]"));
            let raw = fetched.split_once("}\r\n").map_or("", |(_, m)| m);
            let mail = mail_parser::MessageParser::default()
                .parse(raw.as_bytes())
                .unwrap();
            let header = raw.split("\r\n\r\n").next().unwrap_or_default();
            format!(
                "Subject: {}\n{header}\n{}",
                mail.subject().unwrap_or_default(),
                mail.body_text(0).unwrap_or_default()
            )
        })
        .collect()
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

fn audit(s: &Setup) -> String {
    String::from_utf8_lossy(&s.gateway.cli(&["audit", "export"], None).stdout).to_string()
}

#[test]
fn commands_by_mail_change_the_lead_and_refusals_come_back_by_mail() {
    let s = Setup::new(GatewayOptions {
        lead_card: true,
        listeners: vec!["plaintext"],
        extra: CONFIG.into(),
        ..Default::default()
    });
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
        eventually(Duration::from_secs(20), || lead(&s, 1)["owner"] == "alice"),
        "no lead for alice: {}",
        s.gateway.log()
    );

    // The owner, by notes+<id>@: status, next step, follow-up, and a note.
    let (ok, code) = send(
        &s,
        ALICE,
        "notes+1@leadgate.local",
        "",
        "/status Quote SENT\n/next Send the revised quote\n/follow-up in 3 business days\n\nThey want 40 seats, not 25.\n-- \nAlice",
    );
    assert!(ok, "{code}");
    let l = lead(&s, 1);
    assert_eq!(l["status"], "quote-sent", "{l}");
    assert_eq!(l["due_kind"], "follow-up", "{l}");
    let text = show(&s, 1);
    assert!(text.contains("Send the revised quote"), "{text}");
    assert!(text.contains("They want 40 seats, not 25."), "{text}");
    assert!(
        !text.contains("Alice\n"),
        "the signature is not part of the note: {text}"
    );

    // A rep who does not own it, answering its mail: the close is refused
    // (policy), an unknown command is refused (syntax), the note is kept
    // (anyone may comment). The lead stays open.
    let (ok, code) = send(
        &s,
        BOB,
        "notes@leadgate.local",
        "<q1@customer.test>",
        "/close won\n/frobnicate\nI met them at the fair.",
    );
    assert!(ok, "{code}");
    assert_eq!(lead(&s, 1)["status"], "quote-sent");
    assert!(show(&s, 1).contains("I met them at the fair."));
    let log = audit(&s);
    assert!(
        log.lines()
            .any(|l| l.contains("\"lead.close.refused\"") && l.contains("\"bob\"")),
        "{log}"
    );

    // The owner hands it to maria in one line: the lead moves and maria is
    // told by mail (notify_owner), with the note.
    let (ok, code) = send(
        &s,
        ALICE,
        "notes+1@leadgate.local",
        "",
        "/handoff maria taking over the pricing talk",
    );
    assert!(ok, "{code}");
    assert_eq!(lead(&s, 1)["owner"], "maria");

    // Maria, a manager: an assignment to nobody and a status that is an
    // outcome are refused and mailed back; the escalation goes through.
    let (ok, code) = send(
        &s,
        MARIA,
        "notes+1@leadgate.local",
        "",
        "/assign nobody\n/status won\n/escalate needs a discount decision",
    );
    assert!(ok, "{code}");
    assert!(
        eventually(Duration::from_secs(10), || lead(&s, 1)["escalated"] == true),
        "{}",
        lead(&s, 1)
    );

    let mut mail = Vec::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            mail = maria_mail(&s);
            mail.len() >= 3
        }),
        "maria got {} mails: {mail:#?}\n{}",
        mail.len(),
        s.gateway.log()
    );
    let find = |subject: &str| {
        mail.iter()
            .find(|m| m.contains(subject))
            .unwrap_or_else(|| panic!("no mail {subject:?} in {mail:#?}"))
            .clone()
    };
    let yours = find("Subject: Yours: lead 1");
    assert!(
        yours.contains("handed to you by alice: taking over the pricing talk"),
        "{yours}"
    );
    assert!(yours.contains("Auto-Submitted: auto-generated"), "{yours}");
    let refused = find("Subject: Not done: your commands on lead 1");
    assert!(
        refused.contains("Auto-Submitted: auto-replied"),
        "{refused}"
    );
    assert!(refused.contains("/assign nobody"), "{refused}");
    assert!(refused.contains("/status won"), "{refused}");
    assert!(refused.contains("use /close won"), "{refused}");
    assert!(
        refused.contains("/escalate needs a discount decision"),
        "done part: {refused}"
    );
    let escalated = find("Subject: Escalated: lead 1");
    assert!(
        escalated.contains("needs a discount decision"),
        "{escalated}"
    );

    // Bob's refusal was mailed to bob (who has no mailbox here): the
    // attempt is in the audit log all the same.
    assert!(
        eventually(Duration::from_secs(10), || audit(&s)
            .contains("lead.command.refused.mail")),
        "{}",
        audit(&s)
    );
    // Nothing reached the customer.
    assert_eq!(customer_count(&s), 0);
    let (ok, verify) = s.gateway.audit_verify();
    assert!(ok, "{verify}");
}

#[test]
fn notes_mail_that_names_no_lead_or_is_auto_submitted_changes_nothing() {
    let s = Setup::new(GatewayOptions {
        lead_card: true,
        listeners: vec!["plaintext"],
        extra: CONFIG.into(),
        ..Default::default()
    });
    // No lead named: refused at SMTP, as before.
    let (ok, code) = send(&s, ALICE, "notes@leadgate.local", "", "/close won");
    assert!(!ok && code == 550, "{code}");
    // A tag that is no lead: the lead book says so.
    let (ok, code) = send(&s, ALICE, "notes+999@leadgate.local", "", "just a note");
    assert!(!ok && code == 550, "{code}");

    // An out-of-office answer to a notes mail is not read for commands:
    // no loop, nothing changes.
    testbed::smtp_send(
        s.postfix.smtp_port,
        "customer@customer.test",
        &["sales@example.com"],
        &message(
            "Cora Customer <customer@customer.test>",
            "Quote",
            "q9@customer.test",
            "Please quote.",
        ),
    )
    .unwrap();
    assert!(eventually(Duration::from_secs(20), || lead(&s, 1)["owner"] == "alice"));
    let addr = s.gateway.addr("smtp-plaintext");
    let out = Command::new("swaks")
        .args(["--server", &format!("{}:{}", addr.ip(), addr.port())])
        .args([
            "--auth",
            "PLAIN",
            "--auth-user",
            ALICE.0,
            "--auth-password",
            ALICE.1,
        ])
        .args([
            "--from",
            "alice@example.com",
            "--to",
            "notes+1@leadgate.local",
        ])
        .args(["--header", "Auto-Submitted: auto-replied"])
        .args(["--header", "Subject: Out of office"])
        .args(["--body", "/close lost\nI am away until Monday."])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let l = lead(&s, 1);
    assert_eq!(l["status"], "assigned", "{l}");
    assert!(!show(&s, 1).contains("I am away"));
}
