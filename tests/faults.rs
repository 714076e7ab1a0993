//! Upstream faults: Dovecot and Postfix stopped and restarted while clients
//! are connected, and the upstream INBOX's UIDVALIDITY changed under
//! selected lead folders. Clients get `NO [UNAVAILABLE]` (IMAP) or `451`
//! (SMTP) for what needs the upstream, never a hang or wrong data; leadgate
//! recovers by itself, and re-indexing shows no stale message and makes no
//! duplicate lead.

mod common;

use std::{collections::BTreeSet, process::Command, time::Duration};

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

[[leads.assignment]]
rule = "unassigned"
"#;

fn setup() -> Setup {
    let s = Setup::new(GatewayOptions {
        extra: CONFIG.into(),
        ..Default::default()
    });
    for (i, (from, subject)) in [
        ("dana@northwind.test", "Quote request: 40 seats"),
        ("raj@brightpath.test", "Demo request"),
        ("tom@acme-corp.test", "Adding 15 more users"),
    ]
    .iter()
    .enumerate()
    {
        s.deliver_and_wait(
            from,
            &message(
                &format!("Customer <{from}>"),
                subject,
                &format!("m{i}@faults.test"),
                "Hello, please get back to us.",
            ),
            i + 1,
        );
    }
    assert!(
        eventually(Duration::from_secs(30), || s.gateway.leads().len() >= 3),
        "the three leads were not filed"
    );
    s
}

/// Waits until `folder` shows `n` messages to `c` (a fresh SELECT each try).
fn wait_exists(c: &mut Client, folder: &str, n: usize) -> bool {
    eventually(Duration::from_secs(30), || {
        exists_in(&c.run(&format!("SELECT \"{folder}\""))) == n
    })
}

/// The response with tags removed, to compare two runs of one command.
fn untagged_text(r: &Reply) -> String {
    r.untagged().join("\r\n")
}

fn unavailable(r: &Reply) -> bool {
    r.no() && r.tagged.contains("[UNAVAILABLE]")
}

#[test]
fn dovecot_outage_answers_unavailable_and_idle_resumes_after_restart() {
    let mut s = setup();
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(wait_exists(&mut alice, "INBOX", 3));
    let meta = alice.run("FETCH 1:* (UID FLAGS ENVELOPE RFC822.SIZE INTERNALDATE)");
    let body = alice.run("FETCH 1 (BODY.PEEK[])");
    assert!(meta.ok() && body.ok());
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    assert!(wait_exists(&mut bob, "Leads/Unassigned", 3));
    let mut maria = s.gateway.login(MARIA.0, MARIA.1);
    assert!(maria.run("SELECT INBOX").ok());
    let mut smtp = SmtpClient::login(s.gateway.addr("smtp-plaintext"), ALICE.0, ALICE.1).unwrap();
    // Shared flags of unassigned leads are a manager's to change.
    let mut manager = s.gateway.login(MARIA.0, MARIA.1);
    assert!(manager.run("SELECT INBOX").ok());

    for round in 0..2 {
        let bob_idle = bob.idle();
        let maria_idle = maria.idle();
        s.dovecot.stop();

        // What needs the upstream is refused at once, never left hanging
        // (every read below times out after 30 s).
        let r = manager.run("STORE 1 +FLAGS (\\Flagged)");
        assert!(unavailable(&r), "STORE during the outage: {}", r.text);
        let r = alice.append("Drafts", "\\Seen", b"Subject: draft\r\n\r\nbody\r\n");
        assert!(unavailable(&r), "APPEND during the outage: {}", r.text);
        let r = alice.run("SEARCH TEXT \"please\"");
        assert!(unavailable(&r), "SEARCH TEXT during the outage: {}", r.text);
        let r = alice.run(&format!("CREATE \"Projects {round}\""));
        assert!(unavailable(&r), "CREATE during the outage: {}", r.text);

        // What the index holds is served, and it is the same as before.
        let r = alice.run("FETCH 1:* (UID FLAGS ENVELOPE RFC822.SIZE INTERNALDATE)");
        assert!(r.ok(), "{}", r.text);
        if round == 0 {
            assert_eq!(
                untagged_text(&r),
                untagged_text(&meta),
                "metadata changed in the outage"
            );
        }
        let r = alice.run("FETCH 1 (BODY.PEEK[])");
        assert!(
            (r.ok() && untagged_text(&r) == untagged_text(&body)) || unavailable(&r),
            "a body during the outage is either the right one or UNAVAILABLE: {}",
            r.text
        );
        assert!(alice.run("NOOP").ok());
        // Logging in works (users are leadgate's own); so does a folder the
        // index serves.
        let mut late = s.gateway.login(ALICE.0, ALICE.1);
        let r = late.run("SELECT \"Leads/Unassigned\"");
        assert!(r.ok() || unavailable(&r), "{}", r.text);
        let r = late.run("LIST \"\" \"*\"");
        assert!(r.ok() || unavailable(&r), "{}", r.text);

        // A reply still goes out through Postfix (the upstream relay);
        // only the copy for the shared Sent cannot be filed.
        let reply = format!(
            "From: Alice <alice@example.com>\r\nTo: customer@customer.test\r\nSubject: Re: Demo request\r\nIn-Reply-To: <m1@faults.test>\r\nMessage-ID: <outage{round}@faults.test>\r\n\r\nTuesday works.\r\n"
        );
        let r = smtp
            .send(
                "alice@example.com",
                &["customer@customer.test"],
                reply.as_bytes(),
            )
            .unwrap();
        assert_eq!(r.code, 250, "{}", r.text);

        s.dovecot.restart();
        // leadgate reconnects by itself: new mail reaches idle clients.
        let from = format!("after{round}@restart.test");
        s.deliver(
            &from,
            &message(
                &format!("After <{from}>"),
                &format!("Pricing question {round}"),
                &format!("after{round}@faults.test"),
                "How much?",
            ),
        );
        let seen = bob.wait_for(Duration::from_secs(60), |l| {
            l.trim_end().ends_with("EXISTS")
        });
        assert!(
            seen.is_some(),
            "round {round}: bob, idle on Leads/Unassigned, heard nothing after the restart"
        );
        let seen = maria.wait_for(Duration::from_secs(60), |l| {
            l.trim_end().ends_with("EXISTS")
        });
        assert!(
            seen.is_some(),
            "round {round}: maria, idle on INBOX, heard nothing after the restart"
        );
        assert!(bob.done(&bob_idle).ok());
        assert!(maria.done(&maria_idle).ok());
        // Writes go through again once the pool has reconnected.
        assert!(
            eventually(Duration::from_secs(30), || manager
                .run("STORE 1 +FLAGS (\\Flagged)")
                .ok()),
            "round {round}: STORE still fails after the restart"
        );
        let r = alice.append("Drafts", "\\Seen", b"Subject: draft\r\n\r\nbody\r\n");
        assert!(r.ok(), "{}", r.text);
    }

    // Postfix held the replies while Dovecot was down; they arrive once.
    assert!(
        eventually(Duration::from_secs(60), || mailbox_message_ids(
            &s.dovecot, CUSTOMER, "INBOX"
        )
        .len()
            == 2),
        "the replies sent during the outages did not arrive"
    );
    let unfiled = s
        .gateway
        .cli(&["audit", "export", "--action", "reply.unfiled"], None);
    assert_eq!(
        String::from_utf8_lossy(&unfiled.stdout).lines().count(),
        2,
        "the unfiled copies are audited"
    );
    let (ok, text) = s.gateway.audit_verify();
    assert!(ok, "{text}");
    assert!(!s.gateway.log().contains("panicked"));
}

fn reply(id: &str, in_reply_to: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.com>\r\nTo: customer@customer.test\r\nSubject: Re: Quote for 25 seats\r\nIn-Reply-To: <{in_reply_to}>\r\nMessage-ID: <{id}>\r\n\r\nHere is the quote.\r\n"
    )
    .into_bytes()
}

#[test]
fn postfix_outage_answers_451_and_recovers_without_duplicates() {
    let mut s = setup();
    s.deliver_and_wait(
        "customer@customer.test",
        &message(
            "Cora <customer@customer.test>",
            "Quote for 25 seats",
            "q1@faults.test",
            "Quote please.",
        ),
        4,
    );
    assert!(eventually(Duration::from_secs(30), || s
        .gateway
        .leads()
        .len()
        >= 4));
    let addr = s.gateway.addr("smtp-plaintext");
    let mut smtp = SmtpClient::login(addr, ALICE.0, ALICE.1).unwrap();
    let r = smtp
        .send(
            "alice@example.com",
            &["customer@customer.test"],
            &reply("r1@faults.test", "q1@faults.test"),
        )
        .unwrap();
    assert_eq!(r.code, 250, "{}", r.text);
    let mut imap = s.gateway.login(ALICE.0, ALICE.1);

    s.postfix.stop();
    // The open session gets a temporary failure and stays usable.
    let r = smtp
        .send(
            "alice@example.com",
            &["customer@customer.test"],
            &reply("r2@faults.test", "q1@faults.test"),
        )
        .unwrap();
    assert_eq!(r.code, 451, "{}", r.text);
    assert!(r.text.starts_with("451 4."), "{}", r.text);
    assert_eq!(smtp.command("RSET").unwrap().code, 250);
    assert_eq!(smtp.command("NOOP").unwrap().code, 250);
    // So does a new one.
    let mut fresh = SmtpClient::login(addr, ALICE.0, ALICE.1).unwrap();
    let r = fresh
        .send(
            "alice@example.com",
            &["customer@customer.test"],
            &reply("r3@faults.test", "q1@faults.test"),
        )
        .unwrap();
    assert_eq!(r.code, 451, "{}", r.text);
    // IMAP does not care.
    assert!(imap.run("SELECT INBOX").ok());
    assert!(imap.run("NOOP").ok());

    s.postfix.restart();
    // The same session, retried: delivered, once each.
    for (session, id) in [
        (&mut smtp, "r2@faults.test"),
        (&mut fresh, "r3@faults.test"),
    ] {
        let r = session
            .send(
                "alice@example.com",
                &["customer@customer.test"],
                &reply(id, "q1@faults.test"),
            )
            .unwrap();
        assert_eq!(r.code, 250, "{}", r.text);
    }
    assert!(
        eventually(Duration::from_secs(30), || mailbox_message_ids(
            &s.dovecot, CUSTOMER, "INBOX"
        )
        .len()
            >= 3),
        "the retried replies did not arrive"
    );
    std::thread::sleep(Duration::from_secs(2));
    let ids: BTreeSet<String> = mailbox_message_ids(&s.dovecot, CUSTOMER, "INBOX")
        .into_iter()
        .collect();
    assert_eq!(
        mailbox_message_ids(&s.dovecot, CUSTOMER, "INBOX").len(),
        3,
        "each reply exactly once: {ids:?}"
    );
    for id in ["<r1@faults.test>", "<r2@faults.test>", "<r3@faults.test>"] {
        assert!(ids.contains(id), "{id} missing: {ids:?}");
    }
    let failed = s
        .gateway
        .cli(&["audit", "export", "--action", "reply.failed"], None);
    assert_eq!(
        String::from_utf8_lossy(&failed.stdout).lines().count(),
        2,
        "both 451s are audited"
    );
    let (ok, text) = s.gateway.audit_verify();
    assert!(ok, "{text}");
}

/// Message-ID -> stamped X-Lead-Id of every message in `folder`, and the
/// count the SELECT reported.
fn view(c: &mut Client, folder: &str) -> (usize, Vec<(String, String)>) {
    let sel = c.run(&format!("SELECT \"{folder}\""));
    assert!(sel.ok(), "{}", sel.text);
    let n = exists_in(&sel);
    if n == 0 {
        return (0, Vec::new());
    }
    let r = c.run("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID X-LEAD-ID)])");
    assert!(r.ok(), "{}", r.text);
    let out = r
        .text
        .split("* ")
        .skip(1)
        .filter_map(|part| {
            Some((
                header_values(part, "Message-ID").first()?.clone(),
                header_values(part, "X-Lead-Id").first()?.clone(),
            ))
        })
        .collect();
    (n, out)
}

fn leads_by_id(s: &Setup) -> std::collections::BTreeMap<u64, Value> {
    s.gateway
        .leads()
        .into_iter()
        .map(|l| (l["id"].as_u64().unwrap(), l))
        .collect()
}

#[test]
fn uidvalidity_change_under_selected_lead_folders_shows_no_stale_mail_and_duplicates_no_lead() {
    let s = setup();
    // Dana writes again in her thread: 4 messages, 3 leads.
    let mut again = message(
        "Customer <dana@northwind.test>",
        "Re: Quote request: 40 seats",
        "m0b@faults.test",
        "Any news?",
    );
    let end = again.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    again.splice(
        end..end,
        b"\r\nIn-Reply-To: <m0@faults.test>".iter().copied(),
    );
    s.deliver_and_wait("dana@northwind.test", &again, 4);

    // Alice claims Tom's lead.
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(wait_exists(&mut alice, "Leads/Unassigned", 4));
    let (_, unassigned) = view(&mut alice, "Leads/Unassigned");
    let uid_search = alice.run("UID SEARCH HEADER MESSAGE-ID \"m2@faults.test\"");
    let uid = uid_search.search().first().copied().unwrap_or_else(|| {
        panic!(
            "Tom's message not found: {} / {unassigned:?}",
            uid_search.text
        )
    });
    let r = alice.run(&format!("UID MOVE {uid} \"Assign to/alice\""));
    assert!(r.ok(), "{}", r.text);
    assert!(wait_exists(&mut alice, "Leads/Mine", 1));
    assert!(wait_exists(&mut alice, "Leads/Unassigned", 3));
    let before = leads_by_id(&s);

    // Clients sit in lead folders.
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    let (n, bob_before) = view(&mut bob, "Leads/Unassigned");
    assert_eq!(n, 3, "{bob_before:?}");
    let bob_idle = bob.idle();
    let mut maria = s.gateway.login(MARIA.0, MARIA.1);
    assert!(maria.run("SELECT \"Review/New and unassigned\"").ok());
    let maria_idle = maria.idle();
    assert!(alice.run("SELECT \"Leads/Mine\"").ok());

    let status = Command::new("doveadm")
        .arg("-c")
        .arg(s.dovecot.dir.join("dovecot.conf"))
        .args([
            "mailbox",
            "update",
            "-u",
            SALES.0,
            "--uid-validity",
            "4242",
            "INBOX",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    // New mail makes the watcher look (and re-index).
    s.deliver_and_wait(
        "eve@newco.test",
        &message(
            "Eve <eve@newco.test>",
            "Pricing for 5 seats",
            "m4@faults.test",
            "Price?",
        ),
        5,
    );

    // Fresh sessions see each message once, in the right folder.
    let want_unassigned: BTreeSet<String> = [
        "<m0@faults.test>",
        "<m0b@faults.test>",
        "<m1@faults.test>",
        "<m4@faults.test>",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut fresh = s.gateway.login(BOB.0, BOB.1);
    // Once the new mail shows, the re-index is done: the mail of the
    // existing leads must be there with it.
    let mut first = Vec::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            first = view(&mut fresh, "Leads/Unassigned").1;
            first.iter().any(|(m, _)| m == "<m4@faults.test>")
        }),
        "the new mail never reached Leads/Unassigned: {first:?}"
    );
    let first: BTreeSet<String> = first.into_iter().map(|(m, _)| m).collect();

    // No lead duplicated or lost; owners kept; one new lead for Eve.
    let after = leads_by_id(&s);
    for (id, l) in &before {
        let now = after
            .get(id)
            .unwrap_or_else(|| panic!("lead {id} lost: {l}"));
        assert_eq!(now["owner"], l["owner"], "lead {id}: {now}");
        assert_eq!(now["contact_email"], l["contact_email"]);
    }
    assert_eq!(
        after.len(),
        before.len() + 1,
        "{:#?}",
        after
            .values()
            .map(|l| (&l["id"], &l["contact_email"], &l["subject"]))
            .collect::<Vec<_>>()
    );
    let contacts: BTreeSet<&str> = after
        .values()
        .filter_map(|l| l["contact_email"].as_str())
        .collect();
    assert_eq!(contacts.len(), after.len(), "a contact got a second lead");

    let mut last = Vec::new();
    let settled = eventually(Duration::from_secs(90), || {
        let (n, msgs) = view(&mut fresh, "Leads/Unassigned");
        let ids: BTreeSet<String> = msgs.iter().map(|(m, _)| m.clone()).collect();
        last = msgs;
        n == 4 && ids == want_unassigned
    });
    assert!(
        settled,
        "Leads/Unassigned after the UIDVALIDITY change: {last:?}"
    );
    let mut alice2 = s.gateway.login(ALICE.0, ALICE.1);
    let (n, mine) = view(&mut alice2, "Leads/Mine");
    assert_eq!(n, 1, "{mine:?}");
    assert_eq!(mine[0].0, "<m2@faults.test>");

    // Bodies in the views are the messages they claim to be (no stale map
    // to the old upstream UIDs).
    fresh.run("SELECT \"Leads/Unassigned\"");
    for seq in 1..=4 {
        let r = fresh.run(&format!(
            "FETCH {seq} (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)] BODY.PEEK[])"
        ));
        assert!(r.ok(), "{}", r.text);
        let id = header_values(&r.text, "Message-ID");
        assert!(
            id.len() >= 2 && id[0] == id[1],
            "message {seq}: the body is another message's: {id:?}"
        );
    }

    // The sessions that sat in the folders: either told to reconnect (BYE),
    // or brought up to date in place; never left showing stale messages.
    for (c, tag, folder) in [
        (&mut bob, bob_idle, "Leads/Unassigned"),
        (&mut maria, maria_idle, "Review/New and unassigned"),
    ] {
        if c.wait_for(Duration::from_secs(3), |l| l.contains("* BYE"))
            .is_some()
        {
            eprintln!("{folder}: the selected session was told to reconnect");
            continue;
        }
        let r = c.done(&tag);
        assert!(r.ok(), "{}", r.text);
        let r = c.run("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])");
        assert!(r.ok(), "{folder}: {}", r.text);
        let ids = header_values(&r.text, "Message-ID");
        let set: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(
            set.len(),
            ids.len(),
            "{folder} shows a message twice: {ids:?}"
        );
        assert_eq!(
            set, want_unassigned,
            "{folder} in the session that stayed selected"
        );
    }
    assert_eq!(
        first, want_unassigned,
        "right after the re-index, Leads/Unassigned lacked the existing leads' mail (it only came back later)"
    );
    let (ok, text) = s.gateway.audit_verify();
    assert!(ok, "{text}");
}
