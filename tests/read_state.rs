//! Per-user read state: `\Seen` of shared mail is each person's own (as
//! Dovecot's private flags), the same in INBOX and in every lead folder,
//! told to that person's other sessions only, kept across restarts, and
//! never written to the upstream. Real Dovecot and Postfix, real IMAP.

mod common;

use std::time::Duration;

use common::*;

/// Acme is alice's account; everything else waits for manual triage.
const RULES: &str = r#"
[leads]
shared_address = "sales@example.com"

[[leads.assignment]]
rule = "existing-customer"
accounts = { "acme-corp.test" = "alice" }

[[leads.assignment]]
rule = "unassigned"
"#;

const ACME: &str = "Adding 15 more users";
const QUOTE: &str = "Quote request: 40 seats";
const DEMO: &str = "Demo request";

/// Three leads: acme (alice's), two unassigned; INBOX read-only for reps
/// (the default, and the strictest case).
fn setup() -> Setup {
    let s = Setup::new(GatewayOptions {
        lead_card: true,
        extra: RULES.into(),
        rep_inbox: "read-only",
        ..Default::default()
    });
    for (n, (from, subject, id)) in [
        ("tom@acme-corp.test", ACME, "a1@acme-corp.test"),
        ("dana@northwind.test", QUOTE, "q1@northwind.test"),
        ("raj@brightpath.test", DEMO, "d1@brightpath.test"),
    ]
    .into_iter()
    .enumerate()
    {
        s.deliver_and_wait(
            from,
            &message(&format!("<{from}>"), subject, id, "Hello."),
            n + 1,
        );
    }
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    // Each lead folder holds the leads' mail and one card per lead (a card
    // is read by default, so the UNSEEN counts below are the mail's).
    assert!(
        eventually(Duration::from_secs(20), || {
            alice
                .run("SELECT \"Leads/Unassigned\"")
                .text
                .contains("* 4 EXISTS")
                && alice
                    .run("SELECT \"Leads/Mine\"")
                    .text
                    .contains("* 2 EXISTS")
        }),
        "the leads should be filed"
    );
    s
}

fn uid_of(c: &mut Client, subject: &str) -> u32 {
    let r = c.run("UID FETCH 1:* (ENVELOPE)");
    let line = r
        .untagged()
        .into_iter()
        .find(|l| l.contains(subject))
        .unwrap_or_else(|| panic!("{subject} not in {}", r.text))
        .to_owned();
    line.split("UID ")
        .nth(1)
        .unwrap()
        .split([' ', ')'])
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Whether `subject` in the selected folder carries `\Seen` for this user.
fn seen(c: &mut Client, subject: &str) -> bool {
    let uid = uid_of(c, subject);
    let r = c.run(&format!("UID FETCH {uid} (FLAGS)"));
    assert!(r.ok(), "{}", r.text);
    r.text.contains("\\Seen")
}

/// STATUS UNSEEN of a folder, for the logged-in user.
fn unseen(c: &mut Client, folder: &str) -> usize {
    let r = c.run(&format!("STATUS \"{folder}\" (UNSEEN)"));
    assert!(r.ok(), "{}", r.text);
    r.text
        .split("UNSEEN ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no UNSEEN in {}", r.text))
}

/// The upstream's own flags of every INBOX message, asked of Dovecot.
fn upstream_flags(s: &Setup) -> String {
    let mut d = s.direct();
    d.run("EXAMINE INBOX");
    d.run("FETCH 1:* (FLAGS)")
}

#[test]
fn reading_in_inbox_or_a_lead_folder_is_each_users_own_and_survives_a_restart() {
    let mut s = setup();
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    let mut maria = s.gateway.login(MARIA.0, MARIA.1);

    // INBOX is read-only for reps, but their own read state may change.
    let r = alice.run("SELECT INBOX");
    assert!(r.ok(), "{}", r.text);
    assert!(r.text.contains("[PERMANENTFLAGS (\\Seen)]"), "{}", r.text);
    assert!(r.tagged.contains("[READ-WRITE]"), "{}", r.text);
    assert!(r.text.contains("[UNSEEN 1]"), "{}", r.text);

    // alice reads the acme message (a body fetch without PEEK).
    let acme = uid_of(&mut alice, ACME);
    let r = alice.run(&format!("UID FETCH {acme} (BODY[])"));
    assert!(r.ok() && r.text.contains("\\Seen"), "{}", r.text);
    assert!(seen(&mut alice, ACME));
    assert!(!seen(&mut alice, QUOTE));
    let r = alice.run("UID SEARCH SEEN");
    assert_eq!(r.search(), vec![acme], "{}", r.text);
    assert_eq!(alice.run("UID SEARCH UNSEEN").search().len(), 2);
    assert_eq!(unseen(&mut alice, "INBOX"), 2);
    // The same mail in her lead folder: one read state per message.
    assert_eq!(unseen(&mut alice, "Leads/Mine"), 0);
    alice.run("SELECT \"Leads/Mine\"");
    assert!(seen(&mut alice, ACME));

    // Unread for bob and maria, in INBOX and in maria's queues.
    let r = bob.run("SELECT INBOX");
    assert!(r.text.contains("[UNSEEN 1]"), "{}", r.text);
    assert!(!seen(&mut bob, ACME));
    assert_eq!(bob.run("SEARCH SEEN").search(), Vec::<u32>::new());
    assert_eq!(unseen(&mut bob, "INBOX"), 3);
    assert_eq!(unseen(&mut maria, "Team/alice"), 1);
    maria.run("SELECT \"Team/alice\"");
    assert!(!seen(&mut maria, ACME));

    // A lead folder whose leads are not hers (unassigned: she may not
    // flag them) still takes her \Seen, and only hers.
    alice.run("SELECT \"Leads/Unassigned\"");
    let quote = uid_of(&mut alice, QUOTE);
    let r = alice.run(&format!("UID STORE {quote} +FLAGS (\\Seen)"));
    assert!(r.ok() && r.text.contains("\\Seen"), "{}", r.text);
    let r = alice.run(&format!("UID STORE {quote} +FLAGS (\\Flagged)"));
    assert!(r.no() && r.tagged.contains("[NOPERM]"), "{}", r.text);
    let r = alice.run(&format!("UID STORE {quote} +FLAGS (\\Seen \\Flagged)"));
    assert!(
        r.no(),
        "a shared flag in the same STORE refuses it whole: {}",
        r.text
    );
    assert_eq!(unseen(&mut alice, "Leads/Unassigned"), 1);
    assert_eq!(unseen(&mut bob, "Leads/Unassigned"), 2);
    bob.run("SELECT INBOX");
    assert!(!seen(&mut bob, QUOTE));
    alice.run("SELECT INBOX");
    assert!(
        seen(&mut alice, QUOTE),
        "read in a lead folder is read in INBOX"
    );
    // In INBOX nothing but \Seen may change for a rep.
    let r = alice.run(&format!("UID STORE {acme} +FLAGS (\\Flagged)"));
    assert!(r.no(), "{}", r.text);
    let r = alice.run(&format!("UID STORE {acme} FLAGS (\\Seen)"));
    assert!(r.no(), "FLAGS (...) replaces shared flags too: {}", r.text);

    // -FLAGS \Seen: unread again, for her only.
    let demo = uid_of(&mut alice, DEMO);
    maria.run("SELECT INBOX");
    let r = maria.run(&format!("UID STORE {demo} +FLAGS (\\Seen)"));
    assert!(r.ok(), "{}", r.text);
    let r = alice.run(&format!("UID STORE {acme} -FLAGS (\\Seen)"));
    assert!(r.ok() && !r.text.contains("\\Seen"), "{}", r.text);
    assert!(!seen(&mut alice, ACME));
    assert_eq!(unseen(&mut alice, "Leads/Mine"), 1);
    assert!(!seen(&mut alice, DEMO), "maria's read is hers");

    // EXAMINE changes nothing, not even \Seen.
    alice.run("EXAMINE INBOX");
    alice.run(&format!("UID FETCH {demo} (BODY[TEXT])"));
    assert!(!seen(&mut alice, DEMO));
    let r = alice.run(&format!("UID STORE {demo} +FLAGS (\\Seen)"));
    assert!(r.no(), "{}", r.text);

    // The upstream's own \Seen was never set.
    let up = upstream_flags(&s);
    assert!(!up.contains("\\Seen"), "{up}");

    // After a restart every user's state is as they left it.
    drop((alice, bob, maria));
    s.gateway.stop();
    s.gateway.start();
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    let mut maria = s.gateway.login(MARIA.0, MARIA.1);
    alice.run("SELECT INBOX");
    assert!(!seen(&mut alice, ACME) && seen(&mut alice, QUOTE) && !seen(&mut alice, DEMO));
    bob.run("SELECT INBOX");
    assert_eq!(bob.run("SEARCH SEEN").search(), Vec::<u32>::new());
    maria.run("SELECT INBOX");
    assert!(seen(&mut maria, DEMO) && !seen(&mut maria, QUOTE));
    assert!(!upstream_flags(&s).contains("\\Seen"));
}

#[test]
fn a_read_reaches_the_readers_other_sessions_and_no_one_elses() {
    let s = setup();
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    let mut alice_phone = s.gateway.login(ALICE.0, ALICE.1);
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    let mut maria = s.gateway.login(MARIA.0, MARIA.1);

    // alice's phone idles in her lead folder, bob in INBOX; both fetched
    // the flags they show.
    assert!(alice_phone.run("SELECT \"Leads/Mine\"").ok());
    alice_phone.run("FETCH 1:* (FLAGS)");
    assert!(bob.run("SELECT INBOX").ok());
    bob.run("FETCH 1:* (FLAGS)");
    let phone_tag = alice_phone.idle();
    let bob_tag = bob.idle();

    // alice reads the acme message in INBOX on her laptop.
    alice.run("SELECT INBOX");
    let acme = uid_of(&mut alice, ACME);
    let r = alice.run(&format!("UID FETCH {acme} (RFC822)"));
    assert!(r.ok() && r.text.contains("\\Seen"), "{}", r.text);

    let got = alice_phone.wait_for(Duration::from_secs(15), |l| {
        l.contains("FETCH") && l.contains("\\Seen")
    });
    assert!(got.is_some(), "alice's other session was not told");
    let leaked = bob.wait_for(Duration::from_secs(4), |l| l.contains("FETCH"));
    assert!(leaked.is_none(), "bob heard of alice's read: {leaked:?}");

    // bob's IDLE is alive: a shared flag change still reaches him, and
    // without alice's \Seen.
    maria.run("SELECT INBOX");
    let r = maria.run(&format!("UID STORE {acme} +FLAGS (\\Flagged)"));
    assert!(r.ok(), "{}", r.text);
    let line = bob
        .wait_for(Duration::from_secs(15), |l| l.contains("\\Flagged"))
        .expect("bob hears of a shared flag change");
    assert!(!line.contains("\\Seen"), "{line}");
    assert!(alice_phone.done(&phone_tag).ok());
    assert!(bob.done(&bob_tag).ok());
    assert!(seen(&mut alice_phone, ACME));
    assert!(!seen(&mut bob, ACME));
}

#[test]
fn no_command_changes_another_users_read_state() {
    let s = setup();
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    let mut maria = s.gateway.login(MARIA.0, MARIA.1);
    alice.run("SELECT INBOX");
    let quote = uid_of(&mut alice, QUOTE);
    assert!(alice
        .run(&format!("UID STORE {quote} +FLAGS (\\Seen)"))
        .ok());

    // bob over every UID there could be, both ways, and by sequence.
    assert!(bob.run("SELECT INBOX").ok());
    for cmd in [
        "UID STORE 1:4294967295 +FLAGS.SILENT (\\Seen)",
        "UID STORE 1:4294967295 -FLAGS (\\Seen)",
        "STORE 1:* +FLAGS (\\Seen)",
        "UID FETCH 1:4294967295 (BODY[])",
    ] {
        let r = bob.run(cmd);
        assert!(r.ok(), "{cmd}: {}", r.text);
    }
    // A set over the element limit is refused before anything happens.
    let huge = vec!["1"; 20_000].join(",");
    let r = bob.run(&format!("STORE {huge} -FLAGS (\\Seen)"));
    assert!(r.no() && r.tagged.contains("[LIMIT]"), "{}", r.tagged);
    // Lead folders, and copies into his own folder.
    assert!(bob.run("SELECT \"Leads/Unassigned\"").ok());
    assert!(bob.run("STORE 1:* -FLAGS (\\Seen)").ok());
    let r = bob.run("COPY 1:* Drafts");
    assert!(r.ok(), "{}", r.text);
    // He cannot put mail into INBOX (read-only for reps), \Seen or not.
    let r = bob.append(
        "INBOX",
        "\\Seen",
        &message("<bob@example.com>", "x", "x1@x", "x"),
    );
    assert!(r.no(), "{}", r.text);

    assert_eq!(
        unseen(&mut bob, "INBOX"),
        2,
        "bob read everything, then unmarked the two unassigned leads"
    );
    alice.run("NOOP");
    assert!(seen(&mut alice, QUOTE), "alice's read stands");
    assert!(
        !seen(&mut alice, ACME) && !seen(&mut alice, DEMO),
        "and nothing else"
    );
    assert_eq!(unseen(&mut maria, "INBOX"), 3, "maria read nothing");

    // A manager's APPEND (\Seen) into INBOX: read for her, for no one else,
    // and the upstream copy carries no \Seen.
    let r = maria.append(
        "INBOX",
        "\\Seen",
        &message(
            "<maria@example.com>",
            "Team note",
            "n1@example.com",
            "Note.",
        ),
    );
    assert!(r.ok() && r.tagged.contains("APPENDUID"), "{}", r.text);
    maria.run("SELECT INBOX");
    assert!(seen(&mut maria, "Team note"));
    alice.run("SELECT INBOX");
    assert!(!seen(&mut alice, "Team note"));
    assert!(!upstream_flags(&s).contains("\\Seen"));
}

#[test]
fn mail_read_upstream_before_the_first_start_is_read_for_everyone() {
    // The shared mailbox was in use before leadgate: one message is read.
    let dir = tempfile::tempdir().unwrap();
    let dovecot = upstream(dir.path());
    let mut d = RawImap::login(dovecot.imap_port, SALES.0, SALES.1);
    let old = message(
        "<old@customer.test>",
        "Old thread",
        "o1@customer.test",
        "Old.",
    );
    let new = message(
        "<new@customer.test>",
        "New thread",
        "n1@customer.test",
        "New.",
    );
    assert!(d.append("INBOX", "\\Seen", &old).contains(" OK "));
    assert!(d.append("INBOX", "", &new).contains(" OK "));
    let mut gateway = Gateway::new(
        dir.path(),
        &dovecot,
        GatewayOptions {
            lead_card: true,
            rep_inbox: "read-only",
            ..Default::default()
        },
    );
    gateway.add_user(ALICE.0, "rep", ALICE.1);
    gateway.add_user(BOB.0, "rep", BOB.1);
    gateway.start();

    let mut alice = gateway.login(ALICE.0, ALICE.1);
    let mut bob = gateway.login(BOB.0, BOB.1);
    for c in [&mut alice, &mut bob] {
        let r = c.run("SELECT INBOX");
        assert!(r.text.contains("* 2 EXISTS"), "{}", r.text);
        assert!(seen(c, "Old thread") && !seen(c, "New thread"));
    }
    // Each may still mark it unread for themselves.
    let old_uid = uid_of(&mut bob, "Old thread");
    assert!(bob
        .run(&format!("UID STORE {old_uid} -FLAGS (\\Seen)"))
        .ok());
    assert!(!seen(&mut bob, "Old thread"));
    alice.run("NOOP");
    assert!(seen(&mut alice, "Old thread"));

    // Upstream \Seen changed later is not read state: the baseline is
    // taken once. (Someone reading on the upstream directly.)
    d.run("SELECT INBOX");
    d.run("STORE 2 +FLAGS (\\Seen)");
    d.run("STORE 1 -FLAGS (\\Seen)");
    let mut later = gateway.login(ALICE.0, ALICE.1);
    later.run("SELECT INBOX");
    std::thread::sleep(Duration::from_secs(3));
    later.run("NOOP");
    assert!(seen(&mut later, "Old thread") && !seen(&mut later, "New thread"));
    gateway.stop();
}

/// A manager copies mail from her own folder into INBOX: what she had read
/// stays read for her (her own `\Seen`), what she had not stays unread, and
/// for everyone else both are unread.
#[test]
fn a_copy_into_inbox_keeps_the_copiers_read_state() {
    let s = setup();
    let mut maria = s.gateway.login(MARIA.0, MARIA.1);
    assert!(maria.run("CREATE Filed").ok());
    let read = message("<maria@example.com>", "Copied read", "c1@example.com", "x");
    let unread = message(
        "<maria@example.com>",
        "Copied unread",
        "c2@example.com",
        "x",
    );
    assert!(maria.append("Filed", "\\Seen", &read).ok());
    assert!(maria.append("Filed", "", &unread).ok());
    assert!(maria.run("SELECT Filed").ok());
    let r = maria.run("COPY 1:2 INBOX");
    assert!(r.ok(), "{}", r.text);
    assert!(maria.run("SELECT INBOX").ok());
    assert!(seen(&mut maria, "Copied read"), "her read copy stays read");
    assert!(!seen(&mut maria, "Copied unread"));
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(alice.run("SELECT INBOX").ok());
    assert!(eventually(Duration::from_secs(10), || alice
        .run("UID FETCH 1:* (ENVELOPE)")
        .text
        .contains("Copied unread")));
    assert!(!seen(&mut alice, "Copied read"), "not alice's read");
    assert!(!seen(&mut alice, "Copied unread"));
}

/// A rep copies INBOX mail into her own folder: the copies are read as she
/// had read them, not as the upstream's shared copy was flagged.
#[test]
fn a_copy_out_of_inbox_takes_the_copiers_read_state() {
    let s = setup();
    // Someone reads ACME straight on the upstream: no one's read state.
    let mut d = s.direct();
    d.run("SELECT INBOX");
    d.run("STORE 1:* +FLAGS (\\Seen)");
    let mut d2 = s.direct();
    d2.run("SELECT INBOX");
    let r = d2.run("UID SEARCH SUBJECT \"Quote\"");
    let quote_up: String = r
        .lines()
        .find_map(|l| l.strip_prefix("* SEARCH "))
        .unwrap_or("")
        .trim()
        .to_owned();
    assert!(!quote_up.is_empty(), "{r}");
    d2.run(&format!("UID STORE {quote_up} -FLAGS (\\Seen)"));

    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(alice.run("SELECT INBOX").ok());
    let quote = uid_of(&mut alice, QUOTE);
    assert!(alice
        .run(&format!("UID STORE {quote} +FLAGS (\\Seen)"))
        .ok());
    assert!(!seen(&mut alice, ACME), "alice has not read ACME");
    assert!(alice.run("CREATE Kept").ok());
    let r = alice.run("COPY 1:* Kept");
    assert!(r.ok(), "{}", r.text);
    assert!(alice.run("SELECT Kept").ok());
    assert!(seen(&mut alice, QUOTE), "read by her: read in her folder");
    let flags = alice.run("FETCH 1:* (FLAGS ENVELOPE)").text;
    assert!(
        !seen(&mut alice, ACME),
        "read upstream only: unread in her folder: {flags}"
    );
}
