//! What an admin watches, from a running daemon: the Prometheus endpoint
//! scraped over HTTP while reps log in, replies are refused and leads go
//! overdue and get answered; and the managers' daily digest, relayed
//! through Postfix into the manager's own Dovecot mailbox.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use common::*;
use serde_json::Value;

/// A calendar where every hour of every day is business time, so "overdue"
/// does not depend on when the test runs.
const ALWAYS_OPEN: &str = r#"
[leads]
shared_address = "sales@example.com"

[leads.calendar]
time_zone = "UTC"
workdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
hours = "00:00-23:59"
holidays = []

[smtp.relay]
host = "127.0.0.1"
port = {POSTFIX_PORT}
tls = "none"
timeout_secs = 10
"#;

/// GET /metrics, the way Prometheus does.
fn scrape(s: &Setup) -> String {
    let mut tcp = TcpStream::connect(s.gateway.addr("metrics")).expect("connect to /metrics");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// The value of one sample (`name{labels}` exactly as exposed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until the scraped `series` has `value`; panics with the page.
fn wait_sample(s: &Setup, series: &str, value: f64) {
    let mut last = String::new();
    let ok = eventually(Duration::from_secs(20), || {
        last = scrape(s);
        sample(&last, series) == Some(value)
    });
    assert!(ok, "{series} never became {value}; last scrape:\n{last}");
}

fn leads(s: &Setup) -> Vec<Value> {
    let out = s.gateway.cli(&["lead", "list", "--all", "--json"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Puts a customer's mail in the shared INBOX with an arrival time
/// `days_ago` days back, as if it had sat unanswered since.
fn old_mail(s: &Setup, days_ago: i64, from: &str, subject: &str, id: &str) {
    let at = chrono::Utc::now() - chrono::Duration::days(days_ago);
    let date = at.format("%d-%b-%Y %H:%M:%S +0000").to_string();
    let r = s.direct().append_at(
        "INBOX",
        "",
        Some(&date),
        &message(from, subject, id, "Could you send a quote?"),
    );
    assert!(r.contains(" OK "), "append: {r}");
}

fn wait_leads(s: &Setup, n: usize) -> Vec<Value> {
    let mut last = Vec::new();
    let ok = eventually(Duration::from_secs(20), || {
        last = leads(s);
        last.len() == n && last.iter().all(|l| l["owner"].is_string())
    });
    assert!(
        ok,
        "expected {n} assigned leads: {last:?}\n{}",
        s.gateway.log()
    );
    last
}

/// A reply submitted through leadgate's SMTP listener with Python's smtplib:
/// (accepted, reply code).
fn reply(s: &Setup, user: (&str, &str), subject: &str, in_reply_to: &str) -> (bool, u64) {
    let r = smtplib(
        s,
        user,
        &format!("{}@example.com", user.0),
        "customer@customer.test",
        subject,
        in_reply_to,
        "Here is our offer.",
    );
    (r.ok, r.code)
}

fn user(name: &str) -> (&'static str, &'static str) {
    match name {
        "alice" => ALICE,
        "bob" => BOB,
        other => panic!("no password for {other}"),
    }
}

#[test]
fn metrics_follow_logins_refusals_and_overdue_leads() {
    let s = Setup::new(GatewayOptions {
        listeners: vec!["plaintext"],
        extra: format!(
            "{ALWAYS_OPEN}\n[[smtp.listener]]\naddr = \"127.0.0.1:0\"\ntls = \"plaintext\"\n\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n"
        ),
        ..Default::default()
    });
    let page = scrape(&s);
    assert_eq!(sample(&page, "leadgate_upstream_up"), Some(1.0), "{page}");
    assert_eq!(sample(&page, "leadgate_leads_overdue"), Some(0.0), "{page}");

    // One good login, one wrong password.
    let _alice = s.gateway.login(ALICE.0, ALICE.1);
    let mut c = s.gateway.client();
    assert!(c.run("LOGIN bob not-his-password").no());
    let page = scrape(&s);
    assert_eq!(
        sample(&page, "leadgate_logins_total{proto=\"imap\",result=\"ok\"}"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "leadgate_logins_total{proto=\"imap\",result=\"failed\"}"
        ),
        Some(1.0),
        "{page}"
    );

    // A quote request that has waited three days unanswered is overdue.
    old_mail(
        &s,
        3,
        "Cora Customer <customer@customer.test>",
        "Quote for 25 seats",
        "q1@customer.test",
    );
    let lead = wait_leads(&s, 1).remove(0);
    let owner = lead["owner"].as_str().unwrap().to_owned();
    let other = if owner == "alice" { "bob" } else { "alice" };
    wait_sample(&s, "leadgate_leads_overdue", 1.0);
    let page = scrape(&s);
    let status = lead["status"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .replace(' ', "_");
    assert_eq!(
        sample(
            &page,
            &format!("leadgate_leads{{owner=\"{owner}\",status=\"{status}\"}}")
        ),
        Some(1.0),
        "{page}"
    );

    // The other rep's reply is refused and counted against the owner.
    let (ok, code) = reply(
        &s,
        user(other),
        "Re: Quote for 25 seats",
        "<q1@customer.test>",
    );
    assert!(!ok && code == 550, "{code}");
    wait_sample(
        &s,
        &format!("leadgate_replies_blocked_total{{owner=\"{owner}\"}}"),
        1.0,
    );

    // The owner answers: the lead is no longer overdue, the first response
    // time is recorded and the relay counted.
    let (ok, code) = reply(
        &s,
        user(&owner),
        "Re: Quote for 25 seats",
        "<q1@customer.test>",
    );
    assert!(ok, "{code}");
    wait_sample(&s, "leadgate_leads_overdue", 0.0);
    let page = scrape(&s);
    assert_eq!(
        sample(
            &page,
            &format!("leadgate_first_response_seconds_count{{owner=\"{owner}\"}}")
        ),
        Some(1.0),
        "{page}"
    );
    // Three days late: above the two-day bucket, within the three-day one.
    assert_eq!(
        sample(
            &page,
            &format!("leadgate_first_response_seconds_bucket{{owner=\"{owner}\",le=\"172800\"}}")
        ),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, "leadgate_relay_total{result=\"ok\"}"),
        Some(1.0),
        "{page}"
    );
}

/// Decodes the quoted-printable body of the digest.
fn unquote(body: &str) -> String {
    let joined = body.replace("=\r\n", "");
    let mut out = Vec::new();
    let bytes = joined.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

/// The manager's own mailbox: (message count, text of the first message).
fn manager_mail(s: &Setup) -> (usize, String) {
    let mut c = RawImap::login(s.dovecot.imap_port, MARIA_MAILBOX.0, MARIA_MAILBOX.1);
    let r = c.run("SELECT INBOX");
    let count = r
        .lines()
        .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if count == 0 {
        return (0, String::new());
    }
    (count, c.run("FETCH 1 BODY.PEEK[]"))
}

#[test]
fn the_daily_digest_reaches_the_managers_mailbox_once() {
    let mut s = Setup::new(GatewayOptions {
        extra: format!("{ALWAYS_OPEN}\n[digest]\nenabled = false\ntime = \"00:00\"\n"),
        ..Default::default()
    });
    // The demo's enquiries that have waited for days, and a fresh one.
    for (date, message) in seed::waiting_since(chrono::Utc::now()) {
        let r = s.direct().append_at("INBOX", "", Some(&date), &message);
        assert!(r.contains(" OK "), "append: {r}");
    }
    s.deliver(
        "gus@gamma.test",
        &message(
            "Gus <gus@gamma.test>",
            "Gamma asks about pricing",
            "g1@gamma.test",
            "What does it cost?",
        ),
    );
    wait_leads(&s, 4);

    // The digest goes out at "00:00" on every business day: turn it on.
    s.gateway.stop();
    let config = std::fs::read_to_string(&s.gateway.config).unwrap();
    let on = config.replace("[digest]\nenabled = false", "[digest]\nenabled = true");
    assert_ne!(config, on);
    std::fs::write(&s.gateway.config, on).unwrap();
    s.gateway.start();

    let mut mail = (0, String::new());
    let arrived = eventually(Duration::from_secs(30), || {
        mail = manager_mail(&s);
        mail.0 > 0
    });
    assert!(
        arrived,
        "no digest in maria's mailbox:\n{}",
        s.gateway.log()
    );
    let (count, raw) = mail;
    assert_eq!(count, 1, "{raw}");
    let (head, body) = raw.split_once("\r\n\r\n").expect("header and body");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(
        head.contains(&format!(
            "Subject: Sales inbox review for {today}: 3 overdue, 0 unassigned"
        )),
        "{head}"
    );
    assert!(head.contains("Auto-Submitted: auto-generated"), "{head}");
    assert!(
        head.contains("From: leadgate <sales@example.com>"),
        "{head}"
    );

    let text = unquote(body);
    let overdue = text
        .split("\n\n")
        .find(|p| p.starts_with("Overdue ("))
        .unwrap_or_else(|| panic!("no Overdue section:\n{text}"));
    assert!(overdue.starts_with("Overdue (3):"), "{overdue}");
    for (_, t) in seed::WAITING_SINCE {
        assert!(overdue.contains(t.subject), "{overdue}");
        assert!(overdue.contains(t.from), "{overdue}");
    }
    assert!(!overdue.contains("Gamma"), "{overdue}");
    assert!(text.contains("Gamma asks about pricing"), "{text}");

    // Sent once and audited; a restart the same day sends nothing more.
    let sent = |s: &Setup| {
        let out = s
            .gateway
            .cli(&["audit", "export", "--action", "digest.sent"], None);
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(sent(&s), 1);
    s.gateway.stop();
    s.gateway.start();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sent(&s), 1);
    assert_eq!(manager_mail(&s).0, 1);

    // On demand it goes out again, audited with who asked.
    let out = s.gateway.cli(&["review", "--send"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "maria: sent to <maria@example.com>\n"
    );
    assert!(eventually(Duration::from_secs(30), || manager_mail(&s).0 == 2));
    assert_eq!(sent(&s), 2);
}
