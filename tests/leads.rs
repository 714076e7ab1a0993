//! The lead engine over real mail: Postfix delivers to Dovecot, leadgate
//! indexes and files each message into a lead; the CLI reads the result
//! from the store while the daemon runs.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const RULES: &str = r#"
[leads]
shared_address = "sales@example.com"

[[leads.assignment]]
rule = "existing-customer"
accounts = { "acme-corp.test" = "bob" }

[[leads.assignment]]
rule = "round-robin"
"#;

fn leads(s: &Setup) -> Vec<Value> {
    let out = s.gateway.cli(&["lead", "list", "--all", "--json"], None);
    assert!(
        out.status.success(),
        "lead list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn wait_leads(s: &Setup, n: usize) -> Vec<Value> {
    let mut last = Vec::new();
    let ok = eventually(Duration::from_secs(20), || {
        last = leads(s);
        last.len() >= n
    });
    assert!(
        ok,
        "expected {n} leads, have {}: {last:?}\n{}",
        last.len(),
        s.gateway.log()
    );
    last
}

fn audit(s: &Setup, args: &[&str]) -> Vec<Value> {
    let mut argv = vec!["audit", "export"];
    argv.extend_from_slice(args);
    let out = s.gateway.cli(&argv, None);
    assert!(
        out.status.success(),
        "audit export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn inbound_mail_becomes_owned_categorised_audited_leads() {
    let mut s = Setup::new(GatewayOptions {
        extra: RULES.into(),
        ..Default::default()
    });
    // A quote request from a new company: categorised, assigned round-robin.
    s.deliver(
        "dana@northwind.test",
        &message(
            "Dana Whitfield <dana@northwind.test>",
            "Quote request: 40 seats, annual plan",
            "q1@northwind.test",
            "Could you send a quote for 40 seats? Budget approved.",
        ),
    );
    let all = wait_leads(&s, 1);
    let quote = &all[0];
    assert_eq!(quote["category"], "pricing-quote");
    assert_eq!(
        quote["owner"], "alice",
        "round-robin starts with the first rep"
    );
    assert_eq!(quote["status"], "assigned");
    assert_eq!(quote["contact_email"], "dana@northwind.test");
    let id = quote["id"].as_u64().unwrap();

    // Her second mail (a reply in the thread) joins the same lead.
    let mut followup = message(
        "Dana Whitfield <dana@northwind.test>",
        "Re: Quote request: 40 seats, annual plan",
        "q2@northwind.test",
        "Can you include onboarding?",
    );
    let header_end = followup.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    followup.splice(
        header_end..header_end,
        b"\r\nIn-Reply-To: <q1@northwind.test>".iter().copied(),
    );
    s.deliver("dana@northwind.test", &followup);

    // A mail from an existing customer's domain goes to the account owner.
    s.deliver(
        "tom@acme-corp.test",
        &message(
            "Tom <tom@acme-corp.test>",
            "Adding 15 more users",
            "a1@acme-corp.test",
            "We want to expand our plan by 15 users.",
        ),
    );
    // A vendor pitch stays out of the sales queues.
    s.deliver(
        "outreach@growthhackers.test",
        &message(
            "Growth Hackers <outreach@growthhackers.test>",
            "10x your pipeline with our lead lists",
            "v1@growthhackers.test",
            "We sell verified B2B lead lists. SEO guaranteed.",
        ),
    );
    let all = wait_leads(&s, 3);
    assert!(
        eventually(Duration::from_secs(20), || {
            audit(&s, &["--lead", &id.to_string()])
                .iter()
                .any(|e| e["action"] == "lead.inbound")
        }),
        "the follow-up did not join lead {id}"
    );
    let all_now = leads(&s);
    assert_eq!(
        all_now.len(),
        3,
        "the follow-up must not open a lead of its own: {all_now:?}"
    );
    let by_contact = |c: &str| {
        all.iter()
            .find(|l| l["contact_email"] == c)
            .unwrap()
            .clone()
    };
    let acme = by_contact("tom@acme-corp.test");
    assert_eq!(acme["owner"], "bob");
    assert_eq!(acme["category"], "existing-customer-expansion");
    let vendor = by_contact("outreach@growthhackers.test");
    assert_eq!(vendor["category"], "vendor-irrelevant");
    assert!(vendor["owner"].is_null());
    assert!(
        vendor["due"].is_null(),
        "no response is owed to a vendor pitch"
    );

    // Every step is in the audit log, attributed, and the chain verifies.
    let events = audit(&s, &["--lead", &id.to_string()]);
    let create = events
        .iter()
        .find(|e| e["action"] == "lead.create")
        .unwrap();
    assert!(
        create["reason"].as_str().unwrap().contains("round-robin"),
        "{create}"
    );
    let verify = s.gateway.cli(&["audit", "verify"], None);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    // `lead show` prints the context and the timeline.
    let show = s.gateway.cli(&["lead", "show", &id.to_string()], None);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("Pricing or quote request") && text.contains("lead.inbound"),
        "{text}"
    );

    // A restart keeps every lead and the round-robin position.
    s.gateway.stop();
    s.gateway.start();
    assert_eq!(leads(&s).len(), 3);
    s.deliver(
        "priya@quantumleaf.test",
        &message(
            "Priya <priya@quantumleaf.test>",
            "Pricing for the enterprise tier",
            "e1@quantumleaf.test",
            "What does it cost?",
        ),
    );
    let all = wait_leads(&s, 4);
    let priya = all
        .iter()
        .find(|l| l["contact_email"] == "priya@quantumleaf.test")
        .unwrap();
    assert_eq!(
        priya["owner"], "bob",
        "round-robin continued after the restart"
    );
}

#[test]
fn logins_and_user_changes_are_in_the_audit_log() {
    let mut s = Setup::new(GatewayOptions::default());
    let mut c = s.gateway.client();
    assert!(c.run("LOGIN alice wrong-password").no());
    drop(s.gateway.login(ALICE.0, ALICE.1));
    s.gateway.stop();
    assert!(s
        .gateway
        .cli(&["user", "disable", BOB.0], None)
        .status
        .success());
    let events = audit(&s, &[]);
    let has = |action: &str, actor: &str| {
        events
            .iter()
            .any(|e| e["action"] == action && e["actor"] == actor)
    };
    assert!(has("user.add", "cli:root") || events.iter().any(|e| e["action"] == "user.add"));
    assert!(has("auth.failed", "alice") && has("auth.login", "alice"));
    let disable = events
        .iter()
        .find(|e| e["action"] == "user.update")
        .unwrap();
    assert_eq!(disable["changes"][0]["after"], "disabled");
}

/// Support's own mailbox on the upstream: the full text of each message.
fn support_mail(s: &Setup) -> Vec<String> {
    let mut c = RawImap::login(s.dovecot.imap_port, SUPPORT_MAILBOX.0, SUPPORT_MAILBOX.1);
    let r = c.run("SELECT INBOX");
    let n: usize = r
        .lines()
        .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (1..=n)
        .map(|i| c.run(&format!("FETCH {i} BODY.PEEK[]")))
        .collect()
}

#[test]
fn support_requests_are_forwarded_to_support_once_and_stay_out_of_sales() {
    let mut s = Setup::new(GatewayOptions {
        extra: RULES.replace(
            "[leads]\n",
            "[leads]\nsupport_forward_to = \"support@example.com\"\n",
        ) + "\n[smtp.relay]\nhost = \"127.0.0.1\"\nport = {POSTFIX_PORT}\ntls = \"none\"\n",
        ..Default::default()
    });
    s.deliver(
        "cora@customer.test",
        &message(
            "Cora Customer <cora@customer.test>",
            "Login problem since this morning",
            "help1@customer.test",
            "I get an error when I sign in. Can you help?",
        ),
    );
    s.deliver(
        "dana@d.test",
        &message(
            "Dana <dana@d.test>",
            "Quote for 10 seats",
            "q1@d.test",
            "Please send a quote.",
        ),
    );
    let all = wait_leads(&s, 2);
    let support = all
        .iter()
        .find(|l| l["subject"] == "Login problem since this morning")
        .expect("a lead for the support request");
    assert_eq!(support["category"], "support-handoff", "{support}");
    assert!(support["owner"].is_null(), "{support}");

    let mut got = Vec::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            got = support_mail(&s);
            !got.is_empty()
        }),
        "nothing reached support:\n{}",
        s.gateway.log()
    );
    let mail = &got[0];
    // Resent from the shared address, the customer's message untouched.
    assert!(mail.contains("Resent-From: <sales@example.com>"), "{mail}");
    assert!(mail.contains("Resent-To: <support@example.com>"), "{mail}");
    assert!(
        mail.contains("From: Cora Customer <cora@customer.test>"),
        "{mail}"
    );
    assert!(mail.contains("Message-ID: <help1@customer.test>"), "{mail}");
    assert!(mail.contains("I get an error when I sign in."), "{mail}");
    let forwarded = audit(&s, &["--action", "lead.forward"]);
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    assert_eq!(forwarded[0]["lead"], support["id"]);

    // A restart forwards nothing again; the quote request never went.
    s.gateway.stop();
    s.gateway.start();
    std::thread::sleep(Duration::from_secs(3));
    let again = support_mail(&s);
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(!again[0].contains("Quote for 10 seats"));
    assert_eq!(audit(&s, &["--action", "lead.forward"]).len(), 1);
}
