//! CONDSTORE and QRESYNC (RFC 7162) as Thunderbird, Apple Mail and iOS use
//! them, against real Dovecot: a client that reopens a folder learns only
//! what changed since its modseq (its own read state, another person's
//! flag, a lead that changed hands, new mail, expunges), conditional
//! STOREs refuse a message changed meanwhile, and modseqs survive a
//! restart without moving.

mod common;

use std::time::Duration;

use common::*;

/// The number in `[CODE n]` (or `CODE n` inside a STATUS list).
fn number_after(text: &str, code: &str) -> u64 {
    text.split(code)
        .nth(1)
        .and_then(|s| s.trim_start().split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {code} in {text}"))
}

/// UIDs of the untagged FETCH lines of a reply, with their MODSEQ.
fn fetched(r: &Reply) -> Vec<(u32, u64)> {
    r.untagged()
        .into_iter()
        .filter(|l| l.contains(" FETCH ("))
        .map(|l| {
            let uid = number_after(l, "UID ") as u32;
            let modseq = number_after(l, "MODSEQ (");
            (uid, modseq)
        })
        .collect()
}

fn uids(v: &[(u32, u64)]) -> Vec<u32> {
    let mut u: Vec<u32> = v.iter().map(|(u, _)| *u).collect();
    u.sort_unstable();
    u
}

fn vanished_earlier(r: &Reply) -> Option<String> {
    r.untagged()
        .into_iter()
        .find_map(|l| l.strip_prefix("* VANISHED (EARLIER) "))
        .map(str::to_owned)
}

fn plain(subject: &str) -> Vec<u8> {
    format!("From: alice@example.com\r\nSubject: {subject}\r\n\r\nbody\r\n").into_bytes()
}

/// The shared INBOX with five leads from five customers.
fn inbox_of_five() -> Setup {
    let s = Setup::new(GatewayOptions::default());
    for i in 1..=5 {
        s.deliver_and_wait(
            &format!("buyer{i}@firm{i}.test"),
            &message(
                &format!("Buyer {i} <buyer{i}@firm{i}.test>"),
                &format!("Quote request {i}"),
                &format!("q{i}@firm{i}.test"),
                "Please quote.",
            ),
            i,
        );
    }
    assert!(
        eventually(Duration::from_secs(20), || s.gateway.leads().len() == 5),
        "{}",
        s.gateway.log()
    );
    s
}

/// Thunderbird/Apple Mail reopening INBOX: after its own read on another
/// device, a manager's flag, a lead handed to it and new mail, QRESYNC
/// SELECT and FETCH CHANGEDSINCE name those four messages and nothing else.
#[test]
fn a_reopened_folder_gets_only_what_changed() {
    let s = inbox_of_five();
    let mut a = s.gateway.login(ALICE.0, ALICE.1);
    let r = a.run("ENABLE QRESYNC");
    assert!(r.ok() && r.text.contains("* ENABLED QRESYNC"), "{}", r.text);
    let r = a.run("SELECT INBOX (CONDSTORE)");
    assert!(r.ok(), "{}", r.text);
    let h1 = number_after(&r.text, "[HIGHESTMODSEQ ");
    let uv = number_after(&r.text, "[UIDVALIDITY ");
    let all = a.run("UID FETCH 1:* (FLAGS MODSEQ)");
    let before = fetched(&all);
    assert_eq!(before.len(), 5, "{}", all.text);
    assert!(before.iter().all(|(_, m)| *m <= h1), "{}", all.text);
    let uid_of = |n: usize| uids(&before)[n - 1];
    a.run("LOGOUT");

    // Elsewhere: alice reads message 2 on her phone (no CONDSTORE there),
    // maria flags message 3, a lead of someone else is handed to
    // alice, and a
    // sixth mail arrives.
    let mut phone = s.gateway.login(ALICE.0, ALICE.1);
    assert!(phone.run("SELECT INBOX").ok());
    assert!(phone.run("STORE 2 +FLAGS (\\Seen)").ok());
    let mut maria = s.gateway.login(MARIA.0, MARIA.1);
    assert!(maria.run("SELECT INBOX").ok());
    let r = maria.run("STORE 3 +FLAGS (\\Flagged)");
    assert!(r.ok(), "{}", r.text);
    // A lead alice does not own yet (round robin gave her some).
    let buyer = |l: &serde_json::Value| -> usize {
        l["contact_email"].as_str().unwrap()[5..6].parse().unwrap()
    };
    let other = s
        .gateway
        .leads()
        .into_iter()
        .find(|l| l["owner"] != "alice" && buyer(l) > 3)
        .expect("a lead not alice's");
    let n = buyer(&other);
    let id = other["id"].to_string();
    let out = s.gateway.cli(&["lead", "assign", &id, "alice"], None);
    assert!(out.status.success(), "{}", output_text(&out));
    s.deliver_and_wait(
        "buyer6@firm6.test",
        &message(
            "Buyer 6 <buyer6@firm6.test>",
            "Quote request 6",
            "q6@firm6.test",
            "Please quote.",
        ),
        6,
    );
    assert!(eventually(Duration::from_secs(20), || s
        .gateway
        .leads()
        .len()
        == 6));

    let mut b = s.gateway.login(ALICE.0, ALICE.1);
    assert!(b.run("ENABLE QRESYNC").ok());
    let r = b.run(&format!("SELECT INBOX (QRESYNC ({uv} {h1}))"));
    assert!(r.ok(), "{}", r.text);
    let h2 = number_after(&r.text, "[HIGHESTMODSEQ ");
    assert!(h2 > h1, "{}", r.text);
    let changed = fetched(&r);
    assert!(
        changed.iter().all(|(_, m)| *m > h1 && *m <= h2),
        "{}",
        r.text
    );
    let new_uid = *uids(&changed).last().unwrap();
    assert!(new_uid > uid_of(5), "{}", r.text);
    let mut expected = vec![uid_of(2), uid_of(3), uid_of(n), new_uid];
    expected.sort_unstable();
    assert_eq!(uids(&changed), expected, "{}", r.text);
    assert!(vanished_earlier(&r).is_none(), "{}", r.text);
    // Each line says what changed.
    let line = |uid: u32| {
        r.untagged()
            .into_iter()
            .find(|l| l.contains(&format!("UID {uid} ")))
            .unwrap()
            .to_owned()
    };
    assert!(line(uid_of(2)).contains("\\Seen"), "{}", r.text);
    assert!(line(uid_of(3)).contains("\\Flagged"), "{}", r.text);
    assert!(line(uid_of(n)).contains("$Lead_Mine"), "{}", r.text);

    // The same through FETCH CHANGEDSINCE (Thunderbird's way).
    let r = b.run(&format!("FETCH 1:* (UID FLAGS) (CHANGEDSINCE {h1})"));
    assert_eq!(uids(&fetched(&r)), uids(&changed), "{}", r.text);
    let r = b.run(&format!("FETCH 1:* (UID FLAGS) (CHANGEDSINCE {h2})"));
    assert!(fetched(&r).is_empty(), "{}", r.text);
    // SEARCH MODSEQ finds the same four, and says the highest modseq.
    let r = b.run(&format!("UID SEARCH MODSEQ {}", h1 + 1));
    assert_eq!(r.search(), uids(&changed), "{}", r.text);
    assert!(r.text.contains(&format!("(MODSEQ {h2})")), "{}", r.text);
    let r = b.run(&format!(
        "UID SEARCH MODSEQ \"/flags/\\\\Seen\" all {}",
        h1 + 1
    ));
    assert!(r.ok(), "{}", r.text);
    // Nothing changed since: STATUS from another session agrees.
    let mut c = s.gateway.login(ALICE.0, ALICE.1);
    let r = c.run("STATUS INBOX (HIGHESTMODSEQ MESSAGES)");
    assert_eq!(number_after(&r.text, "HIGHESTMODSEQ "), h2, "{}", r.text);
    // Another user asks for his own modseqs: answered from his own clock.
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    let r = bob.run("STATUS INBOX (HIGHESTMODSEQ)");
    assert!(r.ok(), "{}", r.text);
}

/// Apple Mail / iOS in a private folder: expunges reach a QRESYNC session
/// as VANISHED, and a client that was away learns them as VANISHED
/// (EARLIER), also through UID FETCH ... VANISHED.
#[test]
fn expunges_go_out_as_vanished() {
    let s = Setup::new(GatewayOptions::default());
    let mut a = s.gateway.login(ALICE.0, ALICE.1);
    assert!(a.run("CREATE Projects").ok());
    for i in 1..=5 {
        assert!(a.append("Projects", "", &plain(&format!("p{i}"))).ok());
    }
    assert!(a.run("ENABLE QRESYNC").ok());
    let r = a.run("SELECT Projects");
    let h1 = number_after(&r.text, "[HIGHESTMODSEQ ");
    let uv = number_after(&r.text, "[UIDVALIDITY ");

    let mut b = s.gateway.login(ALICE.0, ALICE.1);
    assert!(b.run("SELECT Projects").ok());
    assert!(b.run("STORE 2,4 +FLAGS.SILENT (\\Deleted)").ok());
    let r = b.run("EXPUNGE");
    assert!(r.ok() && r.text.contains("* 2 EXPUNGE"), "{}", r.text);

    assert!(eventually(Duration::from_secs(10), || {
        let r = a.run("NOOP");
        r.text.contains("* VANISHED 4")
    }));
    let r = a.run("NOOP");
    assert!(!r.text.contains("EXPUNGE"), "{}", r.text);
    assert_eq!(a.run("UID SEARCH ALL").search(), vec![1, 3, 5]);

    let mut c = s.gateway.login(ALICE.0, ALICE.1);
    assert!(c.run("ENABLE QRESYNC").ok());
    let r = c.run(&format!("SELECT Projects (QRESYNC ({uv} {h1} 1:5))"));
    assert!(r.ok(), "{}", r.text);
    assert_eq!(vanished_earlier(&r).as_deref(), Some("2,4"), "{}", r.text);
    assert!(number_after(&r.text, "[HIGHESTMODSEQ ") > h1, "{}", r.text);
    // seq-match-data is accepted (and not needed: the answer is the same).
    let mut f = s.gateway.login(ALICE.0, ALICE.1);
    assert!(f.run("ENABLE QRESYNC").ok());
    let r = f.run(&format!(
        "SELECT Projects (QRESYNC ({uv} {h1} 1:5 (1:3 1:3)))"
    ));
    assert!(r.ok(), "{}", r.text);
    assert_eq!(vanished_earlier(&r).as_deref(), Some("2,4"), "{}", r.text);
    let r = c.run(&format!(
        "UID FETCH 1:* (FLAGS) (CHANGEDSINCE {h1} VANISHED)"
    ));
    assert_eq!(vanished_earlier(&r).as_deref(), Some("2,4"), "{}", r.text);
    // A client's widest range is answered as compactly: only UIDs below
    // UIDNEXT are named.
    let r = c.run("UID FETCH 1:4294967295 (FLAGS) (CHANGEDSINCE 1 VANISHED)");
    assert_eq!(vanished_earlier(&r).as_deref(), Some("2,4"), "{}", r.text);
    // A stale UIDVALIDITY gets no VANISHED and no FETCH: the client
    // resyncs whole.
    let mut d = s.gateway.login(ALICE.0, ALICE.1);
    assert!(d.run("ENABLE QRESYNC").ok());
    let r = d.run(&format!("SELECT Projects (QRESYNC ({} {h1}))", uv + 1));
    assert!(
        r.ok() && vanished_earlier(&r).is_none() && fetched(&r).is_empty(),
        "{}",
        r.text
    );

    // What a client may not ask.
    let mut e = s.gateway.login(ALICE.0, ALICE.1);
    let r = e.run("SELECT Projects (QRESYNC (1 1))");
    assert!(r.bad(), "QRESYNC without ENABLE: {}", r.text);
    assert!(e.run("SELECT Projects").ok());
    let r = e.run("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)");
    assert!(r.bad(), "VANISHED without QRESYNC: {}", r.text);
    assert!(e.run("ENABLE QRESYNC").ok());
    let r = e.run("FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)");
    assert!(r.bad(), "VANISHED without UID: {}", r.text);
    assert!(e.run("NOOP").ok());

    // A folder deleted and made again starts above its old modseqs.
    drop((a, b, c, d, f));
    assert!(e.run("UNSELECT").ok());
    let r = e.run("STATUS Projects (HIGHESTMODSEQ)");
    let old = number_after(&r.text, "HIGHESTMODSEQ ");
    assert!(e.run("DELETE Projects").ok());
    assert!(e.run("CREATE Projects").ok());
    let r = e.run("SELECT Projects (CONDSTORE)");
    assert!(number_after(&r.text, "[HIGHESTMODSEQ ") > old, "{}", r.text);
}

/// A conditional STORE (UNCHANGEDSINCE) refuses a message another session
/// changed since the client's modseq; flag changes reach a selected
/// CONDSTORE session with their MODSEQ.
#[test]
fn unchangedsince_refuses_what_changed_meanwhile() {
    let s = Setup::new(GatewayOptions::default());
    let mut a = s.gateway.login(ALICE.0, ALICE.1);
    assert!(a.run("CREATE Projects").ok());
    for i in 1..=3 {
        assert!(a.append("Projects", "", &plain(&format!("p{i}"))).ok());
    }
    assert!(a.run("SELECT Projects").ok());
    // FETCH MODSEQ enables CONDSTORE: the client is told HIGHESTMODSEQ.
    let r = a.run("FETCH 1:3 (UID MODSEQ)");
    assert!(r.text.contains("[HIGHESTMODSEQ "), "{}", r.text);
    let m1 = fetched(&r)[0].1;

    let mut b = s.gateway.login(ALICE.0, ALICE.1);
    assert!(b.run("SELECT Projects").ok());
    assert!(b.run("STORE 1 +FLAGS (\\Flagged)").ok());
    let mut seen = String::new();
    assert!(eventually(Duration::from_secs(10), || {
        seen = a.run("NOOP").text;
        seen.contains("\\Flagged")
    }));
    let m2 = number_after(&seen, "MODSEQ (");
    assert!(m2 > m1, "{seen}");

    let r = a.run(&format!(
        "STORE 1,2 (UNCHANGEDSINCE {m1}) +FLAGS (\\Answered)"
    ));
    assert!(r.ok() && r.text.contains("[MODIFIED 1]"), "{}", r.text);
    let r = a.run("FETCH 1:2 (FLAGS)");
    let lines = r.untagged();
    assert!(
        !lines[0].contains("\\Answered") && lines[1].contains("\\Answered"),
        "{}",
        r.text
    );

    let r = a.run(&format!(
        "UID STORE 1 (UNCHANGEDSINCE {m2}) +FLAGS.SILENT (\\Answered)"
    ));
    assert!(r.ok() && !r.text.contains("MODIFIED"), "{}", r.text);
    let m3 = number_after(&r.text, "MODSEQ (");
    assert!(m3 > m2, "{}", r.text);
    assert!(
        !r.text.contains("FLAGS ("),
        ".SILENT sends no flags: {}",
        r.text
    );
    let r = a.run("UID STORE 3 (UNCHANGEDSINCE 0) +FLAGS (\\Answered)");
    assert!(r.text.contains("[MODIFIED 3]"), "{}", r.text);
}

/// Modseqs live in the store: after a restart a lead folder reports the
/// same HIGHESTMODSEQ and a QRESYNC reopen gets nothing; a lead leaving the
/// folder then shows as VANISHED (EARLIER).
#[test]
fn lead_folder_modseqs_survive_a_restart() {
    let mut s = inbox_of_five();
    let mut a = s.gateway.login(ALICE.0, ALICE.1);
    assert!(a.run("ENABLE QRESYNC").ok());
    let r = a.run("SELECT Leads/Mine");
    assert!(r.ok(), "{}", r.text);
    assert!(exists_in(&r) >= 1, "{}", r.text);
    let h1 = number_after(&r.text, "[HIGHESTMODSEQ ");
    let uv = number_after(&r.text, "[UIDVALIDITY ");
    drop(a);

    s.gateway.stop();
    s.gateway.start();
    let mut b = s.gateway.login(ALICE.0, ALICE.1);
    let r = b.run("STATUS Leads/Mine (HIGHESTMODSEQ)");
    assert_eq!(number_after(&r.text, "HIGHESTMODSEQ "), h1, "{}", r.text);
    assert!(b.run("ENABLE QRESYNC").ok());
    let r = b.run(&format!("SELECT Leads/Mine (QRESYNC ({uv} {h1}))"));
    assert!(r.ok(), "{}", r.text);
    assert!(
        fetched(&r).is_empty() && vanished_earlier(&r).is_none(),
        "{}",
        r.text
    );
    let before = b.run("UID SEARCH ALL").search();
    b.run("LOGOUT");

    let mine = s
        .gateway
        .leads()
        .into_iter()
        .find(|l| l["owner"] == "alice")
        .expect("round robin gave alice a lead");
    let id = mine["id"].to_string();
    let out = s.gateway.cli(&["lead", "assign", &id, "bob"], None);
    assert!(out.status.success(), "{}", output_text(&out));
    let mut watch = s.gateway.login(ALICE.0, ALICE.1);
    assert!(watch.run("SELECT Leads/Mine").ok());
    assert!(eventually(Duration::from_secs(10), || {
        watch.run("UID SEARCH ALL").search().len() < before.len()
    }));
    let mut c = s.gateway.login(ALICE.0, ALICE.1);
    let r = c.run("STATUS Leads/Mine (HIGHESTMODSEQ)");
    assert!(number_after(&r.text, "HIGHESTMODSEQ ") > h1, "{}", r.text);
    assert!(c.run("ENABLE QRESYNC").ok());
    let r = c.run(&format!("SELECT Leads/Mine (QRESYNC ({uv} {h1}))"));
    let gone = vanished_earlier(&r).unwrap_or_else(|| panic!("{}", r.text));
    let now = watch.run("UID SEARCH ALL").search();
    for uid in before.iter().filter(|u| !now.contains(u)) {
        assert!(
            gone.split(',').any(|p| match p.split_once(':') {
                Some((x, y)) => (x.parse::<u32>().unwrap()..=y.parse().unwrap()).contains(uid),
                None => p.parse::<u32>().unwrap() == *uid,
            }),
            "{uid} not in VANISHED {gone}"
        );
    }
}
