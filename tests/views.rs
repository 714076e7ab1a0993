//! The lead workflow in the mail client: virtual folders, folders as
//! commands, stamped headers and lead keywords, over real IMAP against
//! leadgate in front of real Postfix and Dovecot.

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

fn setup() -> Setup {
    // These tests count a lead folder's mail exactly (EXISTS, sequence
    // numbers, UIDs); the lead cards that join it in leadgate's default
    // config are tested, with their EXISTS and EXPUNGE, in
    // tests/lead_card.rs.
    let s = Setup::new(GatewayOptions {
        extra: RULES.into(),
        rep_inbox: "read-only",
        lead_card: false,
        ..Default::default()
    });
    s.deliver_and_wait(
        "tom@acme-corp.test",
        &message(
            "Tom <tom@acme-corp.test>",
            "Adding 15 more users",
            "a1@acme-corp.test",
            "Expand our plan.",
        ),
        1,
    );
    s.deliver_and_wait(
        "dana@northwind.test",
        &message(
            "Dana <dana@northwind.test>",
            "Quote request: 40 seats",
            "q1@northwind.test",
            "Please quote.",
        ),
        2,
    );
    s.deliver_and_wait(
        "raj@brightpath.test",
        &message(
            "Raj <raj@brightpath.test>",
            "Demo request",
            "d1@brightpath.test",
            "Book a demo?",
        ),
        3,
    );
    s
}

fn exists(c: &mut Client, folder: &str) -> usize {
    let r = c.run(&format!("SELECT \"{folder}\""));
    assert!(r.ok(), "SELECT {folder}: {}", r.text);
    r.untagged()
        .iter()
        .find_map(|l| {
            l.strip_suffix(" EXISTS")
                .and_then(|n| n.strip_prefix("* "))
                .and_then(|n| n.parse().ok())
        })
        .unwrap()
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

#[test]
fn claiming_a_lead_moves_it_between_folders_and_idle_teammates_see_it() {
    let s = setup();
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    let mut maria = s.gateway.login(MARIA.0, MARIA.1);
    assert!(
        eventually(Duration::from_secs(20), || exists(
            &mut alice,
            "Leads/Unassigned"
        ) == 2),
        "the two new leads should wait in Leads/Unassigned"
    );

    // Folders by role.
    let alice_list = alice.run("LIST \"\" \"*\"").text;
    for f in [
        "Leads/Unassigned",
        "Leads/Mine",
        "Leads/Overdue",
        "Update lead/Assign to\"",
        "Update lead/Assign to/bob",
        "Update lead/Set status/Quote sent",
        "Update lead/Follow up/Tomorrow",
        "Update lead/Close as/Won",
    ] {
        assert!(
            alice_list.contains(f),
            "{f} missing for a rep:\n{alice_list}"
        );
    }
    assert!(
        alice_list
            .lines()
            .any(|l| l.trim_end().ends_with(" \"Update lead\"")),
        "{alice_list}"
    );
    // The action folders hang under one parent: nothing else at the top
    // but INBOX, the private folders and the lead folders' parents.
    for line in alice_list.lines().filter(|l| l.starts_with("* LIST")) {
        let name = line
            .rsplit(" \"/\" ")
            .next()
            .unwrap_or_default()
            .trim_matches('"');
        let top = name.split('/').next().unwrap_or_default();
        assert!(
            ["INBOX", "Drafts", "Sent", "Trash", "Leads", "Update lead"].contains(&top),
            "{line}"
        );
    }
    assert!(
        !alice_list.contains("Review/"),
        "reps do not get the review queues"
    );
    let maria_list = maria.run("LIST \"\" \"*\"").text;
    for f in [
        "Review/New and unassigned",
        "Review/Overdue",
        "Review/Escalated",
        "Team/alice",
        "Team/bob",
    ] {
        assert!(
            maria_list.contains(f),
            "{f} missing for a manager:\n{maria_list}"
        );
    }
    // INBOX is there for context, read-only for reps: only their own
    // read state (\Seen) may change.
    let r = alice.run("SELECT INBOX");
    assert!(r.text.contains("[PERMANENTFLAGS (\\Seen)]"), "{}", r.text);
    assert!(alice.run("STORE 1 +FLAGS (\\Flagged)").no());

    assert_eq!(
        exists(&mut alice, "Leads/Mine"),
        1,
        "the acme lead is alice's"
    );

    // Bob waits in IDLE on Leads/Unassigned.
    assert_eq!(exists(&mut bob, "Leads/Unassigned"), 2);
    let bob_tag = bob.idle();

    // Alice claims the quote request by moving it to "Assign to/alice".
    assert_eq!(exists(&mut alice, "Leads/Unassigned"), 2);
    let uid = uid_of(&mut alice, "Quote request: 40 seats");
    let r = alice.run(&format!("UID MOVE {uid} \"Assign to/alice\""));
    assert!(r.ok(), "{}", r.text);
    assert!(
        r.text.contains(" EXPUNGE"),
        "the claimed lead leaves Unassigned at once: {}",
        r.text
    );
    let seen = bob.wait_for(Duration::from_secs(10), |l| {
        l.trim_end().ends_with("EXPUNGE")
    });
    assert!(
        seen.is_some(),
        "bob, idle on Leads/Unassigned, was not told"
    );
    assert!(bob.done(&bob_tag).ok());
    assert_eq!(
        exists(&mut alice, "Leads/Mine"),
        2,
        "the claimed lead is now in alice's Mine"
    );
    assert_eq!(exists(&mut alice, "Leads/Unassigned"), 1);

    // The message did not leave the shared mailbox.
    assert_eq!(s.upstream_count(), 3);

    // Bob may not take alice's lead; the refusal names her and is audited.
    assert!(bob.run("SELECT INBOX").ok());
    let uid = uid_of(&mut bob, "Quote request: 40 seats");
    let r = bob.run(&format!("UID COPY {uid} \"Assign to/bob\""));
    assert!(
        r.no() && r.tagged.contains("[NOPERM]") && r.tagged.contains("alice"),
        "{}",
        r.tagged
    );
    let audit = s.gateway.cli(
        &[
            "audit",
            "export",
            "--actor",
            "bob",
            "--action",
            "lead.assign.refused",
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&audit.stdout).contains("lead.assign.refused"));

    // Maria, a manager, may reassign it.
    assert!(maria.run("SELECT INBOX").ok());
    let uid = uid_of(&mut maria, "Quote request: 40 seats");
    let r = maria.run(&format!("UID MOVE {uid} \"Assign to/bob\""));
    assert!(r.ok(), "{}", r.text);
    assert_eq!(
        exists(&mut maria, "INBOX"),
        3,
        "a MOVE into an action folder deletes nothing"
    );
    assert_eq!(exists(&mut bob, "Leads/Mine"), 1);
    assert_eq!(exists(&mut maria, "Team/bob"), 1);
}

#[test]
fn fetched_messages_carry_stamped_headers_and_live_keywords() {
    let s = setup();
    // A display name crafted to inject a header when decoded.
    let evil = b"From: =?utf-8?q?Mallory=0D=0AX-Lead-Owner:_mallory?= <m@evil.test>\r\nTo: sales@example.com\r\nSubject: =?utf-8?q?Hi=0D=0AX-Lead-Status:_Won?=\r\nMessage-ID: <e1@evil.test>\r\n\r\nhello\r\n";
    s.deliver_and_wait("m@evil.test", evil, 4);
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    // The upstream holds the fourth message before leadgate has filed it:
    // wait until it is a lead (Unassigned: the three that are not alice's).
    assert!(eventually(Duration::from_secs(20), || exists(
        &mut alice,
        "Leads/Unassigned"
    ) == 3));
    assert_eq!(exists(&mut alice, "Leads/Mine"), 1);
    let r = alice.run("FETCH 1 (FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (X-Lead-Owner X-Lead-Status X-Lead-Category)] BODY.PEEK[])");
    assert!(r.text.contains("X-Lead-Owner: alice"), "{}", r.text);
    assert!(r.text.contains("X-Lead-Status: Assigned"), "{}", r.text);
    assert!(r.text.contains("$Lead_Mine"), "{}", r.text);
    let size: usize = r
        .text
        .split("RFC822.SIZE ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let body_len: usize = r
        .text
        .split("BODY[] {")
        .nth(1)
        .unwrap()
        .split('}')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(size, body_len, "RFC822.SIZE equals the length of BODY[]");

    // Bob sees the same message without $Lead_Mine: keywords are per viewer.
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    bob.run("SELECT INBOX");
    let flags = bob.run("FETCH 1:* (FLAGS ENVELOPE)").text;
    assert!(
        !flags.contains("$Lead_Mine") && flags.contains("$Lead_Unassigned"),
        "{flags}"
    );
    assert_eq!(
        bob.run("SEARCH KEYWORD $Lead_Unassigned").search().len(),
        3,
        "lead keywords are searchable"
    );

    // The injected name and subject add no header line.
    let h = bob.run("UID FETCH 4 (BODY.PEEK[HEADER])").text;
    let header = h
        .split_once("}\r\n")
        .unwrap()
        .1
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_owned();
    assert!(header.contains("Mallory"), "{header}");
    assert_eq!(
        header
            .lines()
            .filter(|l| l.starts_with("X-Lead-Owner:"))
            .count(),
        1,
        "{header}"
    );
    assert_eq!(
        header
            .lines()
            .filter(|l| l.starts_with("X-Lead-Status:"))
            .count(),
        1,
        "{header}"
    );
    assert!(
        header
            .lines()
            .all(|l| !l.starts_with("X-Lead-Owner: mallory")),
        "{header}"
    );

    // A keyword change reaches an idle client when the lead changes.
    bob.run("SELECT \"Leads/Unassigned\"");
    let tag = bob.idle();
    let mut maria = s.gateway.login(MARIA.0, MARIA.1);
    maria.run("SELECT \"Leads/Unassigned\"");
    assert!(maria.run("UID COPY 1 \"Assign to/bob\"").ok());
    let seen = bob.wait_for(Duration::from_secs(10), |l| {
        l.contains("EXPUNGE") || l.contains("$Lead_Mine")
    });
    assert!(
        seen.is_some(),
        "bob was not told his new lead left Unassigned"
    );
    bob.done(&tag);
}

#[test]
fn a_status_folder_and_view_uids_behave_like_imap_folders() {
    let s = setup();
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(eventually(Duration::from_secs(20), || exists(
        &mut alice,
        "Leads/Mine"
    ) == 1));
    let waiting = alice.run("SELECT \"Leads/Waiting\"");
    let validity = waiting
        .untagged()
        .into_iter()
        .find(|l| l.contains("UIDVALIDITY"))
        .unwrap()
        .to_owned();
    alice.run("SELECT \"Leads/Mine\"");
    for status in [
        "Waiting for reply",
        "Needs internal input",
        "Waiting for reply",
    ] {
        let r = alice.run(&format!("COPY 1 \"Set status/{status}\""));
        assert!(r.ok(), "{}", r.text);
    }
    let r = alice.run("SELECT \"Leads/Waiting\"");
    assert!(
        r.text.contains(&validity),
        "UIDVALIDITY changed: {}",
        r.text
    );
    assert_eq!(
        alice.run("UID SEARCH ALL").search(),
        vec![2],
        "UID 1 is never reused"
    );
    // Lead folders never delete shared mail: \Deleted is the session's
    // own and EXPUNGE removes nothing; MOVE out is refused.
    let r = alice.run("STORE 1 +FLAGS (\\Deleted)");
    assert!(r.ok() && r.text.contains("\\Deleted"), "{}", r.text);
    assert!(alice.run("EXPUNGE").ok());
    assert_eq!(alice.run("UID SEARCH ALL").search(), vec![2]);
    assert!(alice.run("MOVE 1 Trash").no());
    let r = alice.run("STORE 1 -FLAGS (\\Deleted)");
    assert!(r.ok() && !r.text.contains("\\Deleted"), "{}", r.text);
    assert!(
        alice.run("COPY 1 Trash").ok(),
        "a copy to a private folder is fine"
    );
    // Closing takes it off the active queues.
    assert!(alice.run("COPY 1 \"Close as/Won\"").ok());
    assert_eq!(exists(&mut alice, "Leads/Mine"), 0);
    assert_eq!(exists(&mut alice, "Leads/Closed"), 1);
}

/// The exact command sequences mail clients use to move a message, replayed
/// into action folders: classic Outlook and mutt have no MOVE (COPY, then
/// STORE \Deleted, then EXPUNGE); Apple Mail and Thunderbird use UID MOVE.
/// Each works with no error, the lead changes, and nothing is deleted from
/// the shared mailbox.
#[test]
fn outlook_mutt_apple_and_thunderbird_moves_into_action_folders_show_no_error() {
    let s = setup();
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(
        eventually(Duration::from_secs(20), || exists(
            &mut alice,
            "Leads/Unassigned"
        ) == 2),
        "two unassigned leads"
    );
    let mine = exists(&mut alice, "Leads/Mine");
    // Classic Outlook: UID COPY, UID STORE +FLAGS.SILENT (\Deleted), EXPUNGE.
    alice.run("SELECT \"Leads/Unassigned\"");
    let uid = uid_of(&mut alice, "Quote request");
    for cmd in [
        format!("UID COPY {uid} \"Assign to/alice\""),
        format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"),
        "EXPUNGE".to_owned(),
    ] {
        let r = alice.run(&cmd);
        assert!(r.ok(), "Outlook: {cmd}: {}", r.text);
    }
    assert!(eventually(Duration::from_secs(10), || exists(
        &mut alice,
        "Leads/Mine"
    ) == mine + 1));
    // mutt: COPY, STORE +FLAGS (\Deleted), then CLOSE on leaving the folder.
    alice.run("SELECT \"Leads/Mine\"");
    for cmd in [
        "COPY 1 \"Set status/Quote sent\"",
        "STORE 1 +FLAGS (\\Deleted)",
        "CLOSE",
    ] {
        let r = alice.run(cmd);
        assert!(r.ok(), "mutt: {cmd}: {}", r.text);
    }
    // Apple Mail / Thunderbird: UID MOVE into an action folder.
    alice.run("SELECT \"Leads/Unassigned\"");
    let uid = uid_of(&mut alice, "Demo request");
    let r = alice.run(&format!("UID MOVE {uid} \"Assign to/alice\""));
    assert!(r.ok(), "UID MOVE: {}", r.text);
    assert!(eventually(Duration::from_secs(10), || exists(
        &mut alice,
        "Leads/Mine"
    ) == mine + 2));
    assert_eq!(exists(&mut alice, "Leads/Quote sent"), 1);
    // The shared mailbox still has all three messages, none \Deleted.
    let mut d = s.direct();
    let r = d.run("SELECT INBOX");
    assert!(r.contains("* 3 EXISTS"), "{r}");
    let r = d.run("SEARCH DELETED");
    assert!(r.contains("* SEARCH\r\n"), "nothing deleted upstream: {r}");
}

/// Outlook lists only subscribed folders (LSUB): leadgate's folders are
/// subscribed from the start, and UNSUBSCRIBE/SUBSCRIBE are kept per user.
#[test]
fn computed_folders_are_subscribed_and_subscriptions_are_per_user() {
    let s = setup();
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    let lsub = |c: &mut Client| c.run("LSUB \"\" \"*\"").text;
    let first = lsub(&mut alice);
    for f in [
        "INBOX",
        "Leads/Mine",
        "Leads/Closed",
        "Update lead/Assign to/bob",
    ] {
        assert!(first.contains(f), "{f} not subscribed:\n{first}");
    }
    assert!(alice.run("UNSUBSCRIBE \"Leads/Closed\"").ok());
    assert!(alice.run("UNSUBSCRIBE \"Update lead/Close as/Spam\"").ok());
    let after = lsub(&mut alice);
    assert!(!after.contains("Leads/Closed"), "{after}");
    assert!(!after.contains("Close as/Spam"), "{after}");
    assert!(after.contains("Leads/Mine"), "{after}");
    // LIST still shows everything; bob's subscriptions are his own.
    assert!(alice.run("LIST \"\" \"*\"").text.contains("Leads/Closed"));
    assert!(lsub(&mut bob).contains("Leads/Closed"));
    // A new session of alice sees her choice; SUBSCRIBE undoes it.
    let mut again = s.gateway.login(ALICE.0, ALICE.1);
    assert!(!lsub(&mut again).contains("Leads/Closed"));
    assert!(again.run("SUBSCRIBE \"Leads/Closed\"").ok());
    assert!(lsub(&mut alice).contains("Leads/Closed"));
    // Junk names get a protocol error and change nothing.
    assert!(alice.run("UNSUBSCRIBE \"\"").bad());
}
