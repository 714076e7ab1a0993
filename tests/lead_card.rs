//! The lead card (issue 13): a message leadgate writes for each lead and
//! serves in the lead's folders, threaded into its conversation. It follows
//! the lead — a note, a status change, a handoff, by action folder and by
//! mail command — each time as a new message with a new UID, the old one
//! expunged first, never two at once; it is never in INBOX; what came from
//! mail is escaped on it; and a burst of changes swaps it at most once per
//! two seconds while other sessions keep being answered. Real Dovecot and
//! Postfix; mail submitted with Python's smtplib, the folder read with
//! Python's imaplib too.

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

const CONFIG: &str = r#"
[[smtp.listener]]
addr = "127.0.0.1:0"
tls = "plaintext"

[server]
hostname = "gw.leadgate.test"

[smtp]
notes_address = "notes@leadgate.local"

[smtp.relay]
host = "127.0.0.1"
port = {POSTFIX_PORT}
tls = "none"
timeout_secs = 10

[leads]
shared_address = "sales@example.com"

[leads.calendar]
time_zone = "UTC"
workdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
hours = "00:00-23:59"
holidays = []
"#;

fn setup() -> Setup {
    Setup::new(GatewayOptions {
        lead_card: true,
        listeners: vec!["plaintext"],
        extra: CONFIG.into(),
        rep_inbox: "read-only",
        ..Default::default()
    })
}

/// Mail to the notes address (a reply to the card), as `user`.
fn send(s: &Setup, user: (&str, &str), to: &str, body: &str) {
    let r = smtplib(
        s,
        user,
        &format!("{}@example.com", user.0),
        to,
        "Re: Lead card",
        "",
        body,
    );
    assert!(r.ok, "{} {}", r.code, r.message);
}

/// One message of a folder as fetched: UID, RFC822.SIZE, BODY[].
#[derive(Debug, Clone)]
struct Fetched {
    uid: u32,
    size: usize,
    raw: Vec<u8>,
}

impl Fetched {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
    fn header(&self) -> String {
        let t = self.text();
        t.split("\r\n\r\n").next().unwrap_or_default().to_owned()
    }
    fn is_card(&self) -> bool {
        self.header().contains("\r\nX-Leadgate-Card: ")
    }
    /// The decoded text part.
    fn body_text(&self) -> String {
        let m = mail_parser::MessageParser::default()
            .parse(&self.raw)
            .unwrap();
        m.body_text(0).unwrap_or_default().into_owned()
    }
    fn body_html(&self) -> String {
        let m = mail_parser::MessageParser::default()
            .parse(&self.raw)
            .unwrap();
        m.body_html(0).unwrap_or_default().into_owned()
    }
    fn subject(&self) -> String {
        let m = mail_parser::MessageParser::default()
            .parse(&self.raw)
            .unwrap();
        m.subject().unwrap_or_default().to_owned()
    }
}

fn number_after(text: &[u8], key: &[u8]) -> Option<usize> {
    let at = text.windows(key.len()).position(|w| w == key)? + key.len();
    let digits: Vec<u8> = text[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// Every message of the selected folder with its size and bytes.
fn fetch_all(c: &mut Client) -> Vec<Fetched> {
    let r = c.run("UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[])");
    assert!(r.ok(), "{}", r.tagged);
    let raw = &r.raw;
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(p) = raw[at..].windows(8).position(|w| w == b" FETCH (") {
        let start = at + p;
        let lit = b"BODY[] {";
        let Some(q) = raw[start..].windows(lit.len()).position(|w| w == lit) else {
            break;
        };
        let head = &raw[start..start + q];
        let n = number_after(&raw[start + q..], lit).unwrap();
        let body_start = start
            + q
            + raw[start + q..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .unwrap()
            + 2;
        out.push(Fetched {
            uid: number_after(head, b"UID ").unwrap() as u32,
            size: number_after(head, b"RFC822.SIZE ").unwrap(),
            raw: raw[body_start..body_start + n].to_vec(),
        });
        at = body_start + n;
    }
    out
}

fn cards(c: &mut Client) -> Vec<Fetched> {
    assert!(c.run("NOOP").ok());
    fetch_all(c).into_iter().filter(Fetched::is_card).collect()
}

/// Waits until the folder's one card satisfies `pred`; returns it.
fn card_where(c: &mut Client, what: &str, pred: impl Fn(&Fetched) -> bool) -> Fetched {
    let mut last = Vec::new();
    let ok = eventually(Duration::from_secs(15), || {
        last = cards(c);
        last.len() == 1 && pred(&last[0])
    });
    assert!(
        ok,
        "no card with {what}: {:#?}",
        last.iter().map(|f| f.body_text()).collect::<Vec<_>>()
    );
    last.remove(0)
}

/// What an IDLE session saw: messages it counted at most, EXPUNGEs.
struct IdleLog {
    max: usize,
    expunges: usize,
    exists: usize,
}

/// Reads an IDLE session's untagged lines for `secs`, counting.
fn follow_idle(c: &mut Client, start: usize, secs: u64, log: &mut IdleLog) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut count = start;
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(line) = c.wait_for(left, |l| {
            l.ends_with(" EXPUNGE\r\n") || l.ends_with(" EXISTS\r\n")
        }) else {
            break;
        };
        let n: usize = line[2..].split(' ').next().unwrap().parse().unwrap();
        if line.ends_with(" EXPUNGE\r\n") {
            count -= 1;
            log.expunges += 1;
        } else {
            count = n;
            log.exists += 1;
        }
        log.max = log.max.max(count);
    }
}

/// Waits for the card to satisfy `pred` and checks it is a new message:
/// a higher UID, the right size, the previous card gone.
fn check(
    alice: &mut Client,
    what: &str,
    pred: &dyn Fn(&Fetched) -> bool,
    uids: &mut Vec<u32>,
) -> Fetched {
    let c = card_where(alice, what, pred);
    let prev = *uids.last().unwrap();
    assert!(c.uid > prev, "{what}: a new UID ({} after {uids:?})", c.uid);
    assert_eq!(c.size, c.raw.len(), "{what}: RFC822.SIZE");
    let r = alice.run(&format!("UID FETCH {prev} (FLAGS)"));
    assert!(
        !r.text.contains("FETCH ("),
        "{what}: the old card is gone: {}",
        r.text
    );
    uids.push(c.uid);
    c
}

#[test]
fn lead_card_follows_notes_status_and_handoffs_with_a_new_uid_each_time_and_never_two_at_once() {
    let s = with_coras_lead("Please quote 25 seats, budget approved.");
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    let r = alice.run("SELECT \"Leads/Mine\"");
    assert!(r.ok(), "{}", r.tagged);
    assert_eq!(exists_in(&r), 2, "the lead's mail and its card");

    // The card: headers, threading, the stamp, size = bytes served.
    let card = card_where(&mut alice, "owner alice", |c| {
        c.body_text().contains("Owner:          alice")
    });
    let head = card.header();
    assert_eq!(
        card.size,
        card.raw.len(),
        "RFC822.SIZE is the length of BODY[]"
    );
    assert!(
        head.contains("\r\nFrom: \"leadgate\" <leadgate@gw.leadgate.test>\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nIn-Reply-To: <q1@customer.test>\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nReferences: <q1@customer.test>\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nReply-To: \"Lead 1 notes\" <notes+1@leadgate.local>\r\n"),
        "{head}"
    );
    assert!(head.starts_with("X-Lead-Id: 1 "), "stamped: {head}");
    assert!(head.contains("\r\nMessage-ID: <lead-1.card-"), "{head}");
    assert!(
        card.subject()
            .starts_with("Lead 1 · Cora Customer · Assigned · alice · follow-up "),
        "{}",
        card.subject()
    );
    let text = card.body_text();
    for want in [
        "Status:         Assigned",
        "Category:",
        "Contact:        Cora Customer <customer@customer.test>",
        "First response: not yet",
        "/status quote sent",
        "Recent activity",
    ] {
        assert!(text.contains(want), "{want:?} not in {text}");
    }
    let html = card.body_html();
    assert!(html.contains("<b>Owner</b></td><td>alice</td>"), "{html}");
    assert!(
        !html.contains("background") && !html.contains("color:"),
        "dark-mode safe"
    );
    // BODYSTRUCTURE and ENVELOPE agree with the bytes.
    let r = alice.run(&format!(
        "UID FETCH {} (BODYSTRUCTURE ENVELOPE BODY.PEEK[1] BODY.PEEK[2.MIME])",
        card.uid
    ));
    assert!(r.ok() && r.text.contains("\"ALTERNATIVE\""), "{}", r.text);
    assert!(
        r.text.contains("\"<q1@customer.test>\" \"<lead-1.card-"),
        "{}",
        r.text
    );
    assert!(r.text.contains("Content-Type: text/html"), "{}", r.text);

    // The same through Python's imaplib.
    let addr = s.gateway.addr("plaintext");
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/imaplib_card.py"
        ))
        .args([
            &addr.ip().to_string(),
            &addr.port().to_string(),
            ALICE.0,
            ALICE.1,
            "Leads/Mine",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{v}");
    for m in msgs {
        assert_eq!(m["size"], m["len"], "{m}");
    }
    let py = msgs
        .iter()
        .find(|m| m["from"].as_str().unwrap().contains("leadgate"))
        .unwrap();
    assert_eq!(py["in_reply_to"], "<q1@customer.test>");
    assert_eq!(py["x_lead_id"], "1");
    assert!(
        py["reply_to"]
            .as_str()
            .unwrap()
            .contains("notes+1@leadgate.local"),
        "{py}"
    );
    assert!(py["html"].as_str().unwrap().contains("alice"));

    // Never in INBOX, nor found by its SEARCH.
    let mut maria = s.gateway.login(MARIA.0, MARIA.1);
    let r = maria.run("SELECT INBOX");
    assert_eq!(exists_in(&r), 1, "INBOX holds the mail only");
    assert!(fetch_all(&mut maria).iter().all(|f| !f.is_card()));
    assert!(maria.run("SEARCH FROM leadgate").search().is_empty());
    assert_eq!(maria.run("SEARCH ALL").search(), vec![1]);
    // A card counts as no unread mail.
    let r = maria.run("STATUS \"Team/alice\" (MESSAGES UNSEEN)");
    assert!(r.text.contains("MESSAGES 2 UNSEEN 1"), "{}", r.text);

    // An IDLE session on the folder sees each swap as EXPUNGE then EXISTS.
    let mut idler = s.gateway.login(ALICE.0, ALICE.1);
    let r = idler.run("SELECT \"Leads/Mine\"");
    let idle_count = exists_in(&r);
    let idle_tag = idler.idle();
    let mut log = IdleLog {
        max: idle_count,
        expunges: 0,
        exists: 0,
    };

    let mut uids = vec![card.uid];

    // 1. A note, by mail to notes+1@ (a reply to the card).
    send(
        &s,
        ALICE,
        "notes+1@leadgate.local",
        "They want 40 seats now.",
    );
    let c = check(
        &mut alice,
        "the note",
        &|c| c.body_text().contains("They want 40 seats now."),
        &mut uids,
    );
    assert!(c.body_text().contains("Internal notes (newest first)"));

    // 2. A status change by action folder (moving the card acts on its lead).
    let r = alice.run(&format!(
        "UID COPY {} \"Update lead/Set status/Quote sent\"",
        c.uid
    ));
    assert!(r.ok(), "{}", r.tagged);
    check(
        &mut alice,
        "status by folder",
        &|c| c.body_text().contains("Status:         Quote sent"),
        &mut uids,
    );

    // 3. A status change and next step by mail command.
    send(
        &s,
        ALICE,
        "notes+1@leadgate.local",
        "/status needs internal input\n/next Ask finance about the discount",
    );
    check(
        &mut alice,
        "status by mail",
        &|c| {
            let t = c.body_text();
            t.contains("Status:         Needs internal input")
                && t.contains("Ask finance about the discount")
        },
        &mut uids,
    );

    // 4. A handoff by mail to bob: the card leaves alice's folder...
    send(
        &s,
        ALICE,
        "notes+1@leadgate.local",
        "/handoff bob he knows their CFO",
    );
    assert!(
        eventually(Duration::from_secs(15), || cards(&mut alice).is_empty()),
        "the card left alice's Leads/Mine"
    );
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    assert!(bob.run("SELECT \"Leads/Mine\"").ok());
    let c = card_where(&mut bob, "bob's card", |c| {
        c.body_text().contains("Owner:          bob")
            && c.body_text()
                .contains("alice → bob by alice: he knows their CFO")
    });
    assert_eq!(c.size, c.raw.len());

    // 5. ... and back by action folder: bob moves the card to alice.
    let r = bob.run(&format!(
        "UID MOVE {} \"Update lead/Assign to/alice\"",
        c.uid
    ));
    assert!(r.ok(), "{}", r.tagged);
    assert!(eventually(Duration::from_secs(15), || cards(&mut bob).is_empty()));
    check(
        &mut alice,
        "handoff back by folder",
        &|c| c.body_text().contains("Owner:          alice"),
        &mut uids,
    );

    // 6. A refused command shows on the card.
    send(&s, BOB, "notes+1@leadgate.local", "/close won");
    check(
        &mut alice,
        "the refusal",
        &|c| {
            let t = c.body_text();
            t.contains("Last refused:") && t.contains("bob")
        },
        &mut uids,
    );

    // A card cannot be copied into a real folder, nor appended to a lead folder.
    let last = *uids.last().unwrap();
    let r = alice.run(&format!("UID COPY {last} Drafts"));
    assert!(r.no() && r.tagged.contains("lead card"), "{}", r.tagged);
    // STORE on a card is the session's own; EXPUNGE removes nothing.
    assert!(alice
        .run(&format!("UID STORE {last} +FLAGS (\\Deleted \\Flagged)"))
        .ok());
    assert!(alice.run("EXPUNGE").ok());
    assert_eq!(cards(&mut alice).len(), 1);

    // The IDLE session: every swap an EXPUNGE, never two cards at once.
    follow_idle(&mut idler, idle_count, 3, &mut log);
    assert!(idler.done(&idle_tag).ok());
    assert!(
        log.max <= 2,
        "at most the mail and one card: saw {}",
        log.max
    );
    assert!(
        log.expunges >= 4,
        "swaps and the handoff were expunges: {}",
        log.expunges
    );
    // No card ever reached the upstream.
    let mut direct = s.direct();
    direct.run("SELECT INBOX");
    let r = direct.run("SEARCH HEADER X-Leadgate-Card \"\"");
    assert!(r.contains("* SEARCH\r\n"), "{r}");
    let (ok, verify) = s.gateway.audit_verify();
    assert!(ok, "{verify}");
}

#[test]
fn hostile_names_and_subjects_are_escaped_on_the_card_and_add_no_header() {
    let s = setup();
    // A display name and subject with markup, and CR LF smuggled in encoded
    // words (they decode to line breaks).
    let raw = "From: =?utf-8?q?Eve_<script>alert(1)</script>=0D=0ABcc:_victim@x.test?= <eve@evil.test>\r\n\
               To: sales@example.com\r\n\
               Subject: =?utf-8?q?Hi=0D=0AX-Injected:_yes=0D=0A=0D=0A<img_src=3Dx_onerror=3Dalert(1)>?=\r\n\
               Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\
               Message-ID: <evil1@evil.test>\r\n\
               MIME-Version: 1.0\r\n\
               Content-Type: text/plain; charset=utf-8\r\n\r\n\
               Please quote <b>now</b>.\r\n";
    s.deliver("eve@evil.test", raw.as_bytes());
    assert!(eventually(Duration::from_secs(20), || s.gateway.lead(1)
        ["owner"]
        == "alice"));
    send(
        &s,
        ALICE,
        "notes+1@leadgate.local",
        "</td></tr></table><script>steal()</script>\r\nContent-Type: text/html",
    );
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(alice.run("SELECT \"Leads/Mine\"").ok());
    let card = card_where(&mut alice, "the note", |c| {
        c.body_text().contains("steal()")
    });
    assert_eq!(card.size, card.raw.len());
    let head = card.header();
    let known = [
        "X-Lead-Id",
        "X-Lead-Owner",
        "X-Lead-Status",
        "X-Lead-Follow-Up",
        "X-Lead-Category",
        "X-Lead-Contact",
        "Message-ID",
        "From",
        "Subject",
        "Date",
        "In-Reply-To",
        "References",
        "Reply-To",
        "Auto-Submitted",
        "X-Leadgate-Card",
        "MIME-Version",
        "Content-Type",
    ];
    for line in head.split("\r\n") {
        let name = line.split(':').next().unwrap();
        assert!(
            known.contains(&name),
            "unexpected header line {line:?} in\n{head}"
        );
    }
    assert!(
        !head.contains("X-Injected") && !head.contains("Bcc:"),
        "{head}"
    );
    let html = card.body_html();
    assert!(
        !html.contains("<script>") && !html.contains("<img"),
        "{html}"
    );
    assert!(html.contains("&lt;script&gt;"), "{html}");
    let text = card.body_text();
    assert!(
        text.contains("<script"),
        "plain text shows it as text: {text}"
    );
}

#[test]
fn a_burst_of_changes_swaps_the_card_at_most_once_per_two_seconds_and_others_are_answered() {
    let s = setup();
    s.deliver(
        "customer@customer.test",
        &message(
            "Cora <customer@customer.test>",
            "Demo please",
            "d1@customer.test",
            "A demo?",
        ),
    );
    assert!(eventually(Duration::from_secs(20), || s.gateway.lead(1)
        ["owner"]
        == "alice"));
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(alice.run("SELECT \"Leads/Mine\"").ok());
    let first = card_where(&mut alice, "a card", |_| true);
    let mail_uid = fetch_all(&mut alice)
        .iter()
        .find(|f| !f.is_card())
        .unwrap()
        .uid;

    let mut idler = s.gateway.login(ALICE.0, ALICE.1);
    let start = exists_in(&idler.run("SELECT \"Leads/Mine\""));
    let idle_tag = idler.idle();

    // A canary keeps asking while the burst runs.
    let addr = s.gateway.addr("plaintext");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let canary = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut c = Client::connect(addr);
            assert!(c.run(&format!("LOGIN {} {}", MARIA.0, MARIA.1)).ok());
            let mut worst = Duration::ZERO;
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                assert!(c
                    .run("STATUS \"Review/New and unassigned\" (MESSAGES)")
                    .ok());
                assert!(c.run("NOOP").ok());
                worst = worst.max(t.elapsed());
                n += 1;
            }
            (worst, n)
        })
    };
    let started = Instant::now();
    for i in 0..200 {
        let folder = if i % 2 == 0 {
            "Needs internal input"
        } else {
            "Quote sent"
        };
        let r = alice.run(&format!(
            "UID COPY {mail_uid} \"Update lead/Set status/{folder}\""
        ));
        assert!(r.ok(), "{}", r.tagged);
        // Spread over several windows, as a busy team would.
        std::thread::sleep(Duration::from_millis(30));
    }
    let burst = started.elapsed();
    // The last change (Quote sent) shows once the window ends.
    let last = card_where(&mut alice, "the burst's end state", |c| {
        c.body_text().contains("Status:         Quote sent")
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (worst, asked) = canary.join().unwrap();
    let mut log = IdleLog {
        max: start,
        expunges: 0,
        exists: 0,
    };
    follow_idle(&mut idler, start, 3, &mut log);
    assert!(idler.done(&idle_tag).ok());
    let allowed = (burst.as_secs_f64() / 2.0).ceil() as usize + 2;
    eprintln!(
        "burst of 200 changes in {burst:?}: {} card swaps (allowed {allowed}), canary worst {worst:?} over {asked} rounds",
        log.expunges
    );
    assert!(last.uid > first.uid);
    assert!(log.expunges >= 2, "the card swapped more than once");
    assert!(
        log.expunges <= allowed,
        "coalesced: {} swaps for a {burst:?} burst",
        log.expunges
    );
    assert!(log.max <= 2, "never two cards at once: {}", log.max);
    assert!(worst < Duration::from_secs(2), "canary waited {worst:?}");
    assert!(asked > 0);
}

/// Cora's quote request (`body`), filed as lead 1 and given to alice.
fn with_coras_lead(body: &str) -> Setup {
    let s = setup();
    s.deliver(
        "customer@customer.test",
        &message(
            "Cora Customer <customer@customer.test>",
            "Quote for 25 seats",
            "q1@customer.test",
            body,
        ),
    );
    assert!(
        eventually(Duration::from_secs(20), || s.gateway.lead(1)["owner"]
            == "alice"),
        "{}",
        s.gateway.log()
    );
    s
}

/// mbsync (isync) mirrors Leads/Mine into a Maildir: the lead's mail and
/// its card; after the lead changes, the next sync replaces the card (the
/// old one expunged, the new one fetched), so the mirror holds one card,
/// the current one.
#[test]
fn mbsync_mirrors_a_lead_folder_and_keeps_one_current_card() {
    let s = with_coras_lead("Please quote 25 seats.");
    let dir = s.dir.path().join("mbsync");
    std::fs::create_dir_all(dir.join("mail")).unwrap();
    let addr = s.gateway.addr("plaintext");
    let rc = format!(
        "IMAPAccount leadgate\nHost 127.0.0.1\nPort {}\nUser {}\nPass {}\nSSLType None\nAuthMechs LOGIN\n\n\
         IMAPStore remote\nAccount leadgate\n\n\
         MaildirStore local\nPath {}/mail/\nInbox {}/mail/INBOX\n\n\
         Channel mine\nFar :remote:\"Leads/Mine\"\nNear :local:Mine\nCreate Near\nSync All\nExpunge Near\nSyncState *\n",
        addr.port(),
        ALICE.0,
        ALICE.1,
        dir.display(),
        dir.display()
    );
    std::fs::write(dir.join("mbsyncrc"), rc).unwrap();
    let run = || mbsync(&dir.join("mbsyncrc"));
    let mirrored = || -> Vec<String> {
        ["cur", "new"]
            .iter()
            .flat_map(|d| std::fs::read_dir(dir.join("mail/Mine").join(d)).unwrap())
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect()
    };
    let is_card = |t: &String| t.contains("From: \"leadgate\" <leadgate@gw.leadgate.test>");
    run();
    let first = mirrored();
    assert_eq!(first.len(), 2, "the mail and its card");
    let card: Vec<&String> = first.iter().filter(|t| is_card(t)).collect();
    assert_eq!(card.len(), 1);
    assert!(!card[0].contains("Call Cora"), "{}", card[0]);

    send(
        &s,
        ALICE,
        "notes+1@leadgate.local",
        "/next Call Cora on Monday",
    );
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(alice.run("SELECT \"Leads/Mine\"").ok());
    card_where(&mut alice, "the next action", |c| {
        c.body_text().contains("Call Cora on Monday")
    });
    run();
    let second = mirrored();
    let cards: Vec<&String> = second.iter().filter(|t| is_card(t)).collect();
    assert_eq!(second.len(), 2, "still the mail and one card");
    assert_eq!(cards.len(), 1, "the old card left the mirror");
    assert!(cards[0].contains("Call Cora on Monday"), "{}", cards[0]);
    assert!(second.iter().any(|t| t.contains("Please quote 25 seats.")));
}

/// "Reply all" to a card also names its sender, `leadgate@HOSTNAME`, which
/// is no mailbox: the mail is a note on the lead, nothing is relayed, and
/// the lead records no reply to the customer.
#[test]
fn a_reply_all_to_a_card_is_a_note_and_reaches_nobody() {
    let s = with_coras_lead("Please quote 25 seats.");
    send(
        &s,
        ALICE,
        "notes+1@leadgate.local, leadgate@gw.leadgate.test",
        "Cora prefers calls after 3pm.",
    );
    let lead = s.gateway.lead(1);
    assert!(
        lead.to_string().contains("Cora prefers calls after 3pm."),
        "{lead}"
    );
    assert!(
        lead["first_response_at"].is_null(),
        "no reply went out: {lead}"
    );
    assert_eq!(s.gateway.leads().len(), 1, "no outbound lead either");
    // Nothing went out: the relay records every message it took.
    let audit = s.gateway.cli(&["audit", "export"], None);
    let audit = String::from_utf8_lossy(&audit.stdout);
    for action in ["\"lead.reply\"", "\"lead.outbound\"", "\"reply."] {
        assert!(!audit.contains(action), "{action} in {audit}");
    }
    assert!(
        !s.gateway.log().contains("leadgate@gw.leadgate.test"),
        "the card's sender was taken for a recipient"
    );
}
