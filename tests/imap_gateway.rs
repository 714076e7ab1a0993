//! The foundation, end to end: real Postfix and Dovecot on loopback,
//! leadgate as a process, clients speaking IMAP over the wire.

mod common;

use std::time::Duration;

use common::*;
use leadgate::imap::stamp::STAMP_LEN;

fn fetch_subjects(c: &mut Client) -> String {
    let r = c.run("FETCH 1:* (ENVELOPE)");
    assert!(r.ok(), "{}", r.text);
    r.text
}

#[test]
fn rep_reads_the_shared_inbox_with_their_own_login() {
    let s = Setup::new(GatewayOptions::default());
    s.deliver_and_wait(
        "dana@northwind.test",
        &message(
            "Dana <dana@northwind.test>",
            "Quote request: 40 seats",
            "q1@northwind.test",
            "Please quote 40 seats.",
        ),
        1,
    );
    s.deliver_and_wait(
        "raj@brightpath.test",
        &message(
            "Raj <raj@brightpath.test>",
            "Demo request",
            "d1@brightpath.test",
            "Can we book a demo?",
        ),
        2,
    );

    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(
        eventually(Duration::from_secs(10), || alice
            .run("STATUS INBOX (MESSAGES)")
            .text
            .contains("MESSAGES 2")),
        "leadgate did not index both messages"
    );
    let sel = alice.run("SELECT INBOX");
    assert!(sel.ok() && sel.text.contains("* 2 EXISTS"), "{}", sel.text);
    assert!(sel.text.contains("[UIDVALIDITY "));
    let env = fetch_subjects(&mut alice);
    assert!(
        env.contains("Quote request: 40 seats") && env.contains("Demo request"),
        "{env}"
    );

    // The body served through leadgate is the upstream's, byte for byte,
    // under the lead stamp.
    let through = alice.run("UID FETCH 1 (BODY.PEEK[])");
    let mut direct = s.direct();
    direct.run("SELECT INBOX");
    let upstream = direct.run("UID FETCH 1 (BODY.PEEK[])");
    // The literal, by its announced length (an unsolicited FETCH FLAGS may
    // follow it: the lead's keywords arrive when the lead is filed).
    let body = |t: &str| {
        let (head, rest) = t.split_once("}\r\n")?;
        let n: usize = head.rsplit_once('{')?.1.parse().ok()?;
        rest.get(..n).map(str::to_owned)
    };
    assert!(through.text.contains("Please quote 40 seats."));
    let (ours, theirs) = (body(&through.text).unwrap(), body(&upstream).unwrap());
    assert!(ours.starts_with("X-Lead-Id: "), "{ours}");
    assert_eq!(ours.len(), theirs.len() + STAMP_LEN);
    assert_eq!(&ours[STAMP_LEN..], theirs, "BODY[] differs from Dovecot's");

    // The shared account's password never reaches the client side.
    assert!(!alice.greeting.contains(SALES.1));
    assert!(!sel.text.contains(SALES.1) && !through.text.contains(SALES.1));
}

#[test]
fn wrong_password_disabled_user_and_cleartext_login_are_refused_and_logged() {
    let mut s = Setup::new(GatewayOptions {
        listeners: vec!["plaintext", "starttls"],
        ..Default::default()
    });
    let mut c = s.gateway.client();
    let r = c.run("LOGIN alice not-her-password");
    assert!(
        r.no() && r.tagged.contains("AUTHENTICATIONFAILED"),
        "{}",
        r.tagged
    );

    // On the STARTTLS listener, login before TLS is refused and advertised so.
    let mut plain = Client::connect(s.gateway.addr("starttls"));
    assert!(
        plain.greeting.contains("LOGINDISABLED") && plain.greeting.contains("STARTTLS"),
        "{}",
        plain.greeting
    );
    let r = plain.run(&format!("LOGIN {} {}", ALICE.0, ALICE.1));
    assert!(
        r.no() && r.tagged.contains("PRIVACYREQUIRED"),
        "{}",
        r.tagged
    );
    let r = plain.run("AUTHENTICATE PLAIN AGFsaWNlAGFsaWNlLXBhc3N3b3Jk");
    assert!(r.no(), "{}", r.tagged);

    // A disabled user cannot log in (the CLI works on the stopped daemon).
    s.gateway.stop();
    let out = s.gateway.cli(&["user", "disable", BOB.0], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.gateway.start();
    let mut c = s.gateway.client();
    let r = c.run(&format!("LOGIN {} {}", BOB.0, BOB.1));
    assert!(r.no() && r.tagged.contains("disabled"), "{}", r.tagged);

    let log = s.gateway.log();
    assert!(
        log.contains("auth failed: user=alice ip=127.0.0.1 proto=imap reason=bad-credentials"),
        "{log}"
    );
    assert!(
        log.contains(
            "auth failed: user=alice ip=127.0.0.1 proto=imap reason=cleartext-login-refused"
        ),
        "{log}"
    );
    assert!(
        log.contains("auth failed: user=bob ip=127.0.0.1 proto=imap reason=disabled"),
        "{log}"
    );
}

#[test]
fn starttls_and_implicit_tls_logins_work() {
    let s = Setup::new(GatewayOptions {
        listeners: vec!["plaintext", "starttls", "implicit"],
        ..Default::default()
    });
    let mut c = Client::connect(s.gateway.addr("starttls"));
    let r = c.starttls(&s.gateway.cert_pem);
    assert!(r.ok(), "{}", r.tagged);
    let caps = c.run("CAPABILITY");
    assert!(
        caps.text.contains("AUTH=PLAIN") && !caps.text.contains("LOGINDISABLED"),
        "{}",
        caps.text
    );
    let r = c.run(&format!("LOGIN {} {}", ALICE.0, ALICE.1));
    assert!(r.ok(), "{}", r.tagged);

    let mut t = Client::connect_tls(s.gateway.addr("implicit-tls"), &s.gateway.cert_pem);
    assert!(t.greeting.contains("AUTH=PLAIN"), "{}", t.greeting);
    let r = t.run("AUTHENTICATE PLAIN AG1hcmlhAG1hcmlhLXBhc3N3b3Jk");
    assert!(r.ok(), "{}", r.tagged);
    assert!(t.run("SELECT INBOX").ok());
}

#[test]
fn idle_client_sees_new_mail_without_doing_anything() {
    let s = Setup::new(GatewayOptions::default());
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(alice.run("SELECT INBOX").text.contains("* 0 EXISTS"));
    let tag = alice.idle();
    s.deliver(
        "lena@hanse.test",
        &message(
            "Lena <lena@hanse.test>",
            "Partner introduction",
            "p1@hanse.test",
            "Referral partnership?",
        ),
    );
    let seen = alice.wait_for(Duration::from_secs(20), |l| l.contains("EXISTS"));
    assert_eq!(seen.as_deref().map(str::trim_end), Some("* 1 EXISTS"));
    let r = alice.done(&tag);
    assert!(r.ok(), "{}", r.tagged);
    assert!(fetch_subjects(&mut alice).contains("Partner introduction"));
}

#[test]
fn flags_are_shared_with_the_upstream_both_ways() {
    let s = Setup::new(GatewayOptions::default());
    s.deliver_and_wait(
        "tom@acme.test",
        &message(
            "Tom <tom@acme.test>",
            "Add 15 users",
            "a1@acme.test",
            "Expansion.",
        ),
        1,
    );
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(eventually(Duration::from_secs(10), || alice
        .run("SELECT INBOX")
        .text
        .contains("* 1 EXISTS")));
    let r = alice.run("STORE 1 +FLAGS (\\Flagged $Quoted)");
    assert!(
        r.ok() && r.text.contains("\\Flagged") && r.text.contains("$Quoted"),
        "{}",
        r.text
    );

    let mut direct = s.direct();
    direct.run("SELECT INBOX");
    let flags = direct.run("FETCH 1 (FLAGS)");
    assert!(
        flags.contains("\\Flagged") && flags.contains("$Quoted"),
        "{flags}"
    );

    // A change made on Dovecot directly reaches an IDLE client.
    let tag = alice.idle();
    direct.run("STORE 1 +FLAGS (\\Answered)");
    let seen = alice.wait_for(Duration::from_secs(20), |l| {
        l.contains("FETCH") && l.contains("\\Answered")
    });
    assert!(
        seen.is_some(),
        "flag change from the upstream did not arrive"
    );
    alice.done(&tag);

    // Fetching the body without PEEK marks it \Seen for alice only: the
    // upstream's own \Seen is left alone (read state is per user).
    let r = alice.run("FETCH 1 (BODY[TEXT])");
    assert!(r.ok() && r.text.contains("\\Seen"), "{}", r.text);
    assert!(alice.run("FETCH 1 (FLAGS)").text.contains("\\Seen"));
    assert!(!direct.run("FETCH 1 (FLAGS)").contains("\\Seen"));
}

#[test]
fn restarting_keeps_the_index_and_does_not_refetch_the_mailbox() {
    let mut s = Setup::new(GatewayOptions::default());
    for i in 0..3 {
        s.deliver_and_wait(
            "x@y.test",
            &message(
                "X <x@y.test>",
                &format!("Lead {i}"),
                &format!("m{i}@y.test"),
                "hi",
            ),
            i + 1,
        );
    }
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(eventually(Duration::from_secs(10), || alice
        .run("STATUS INBOX (MESSAGES)")
        .text
        .contains("MESSAGES 3")));
    alice.run("SELECT INBOX");
    let before = alice.run("UID SEARCH ALL").search();
    assert_eq!(before.len(), 3);
    let uidvalidity = alice.run("STATUS INBOX (UIDVALIDITY)");
    drop(alice);
    let status = s.gateway.stop();
    assert!(
        status.is_some_and(|st| st.success()),
        "leadgate did not exit cleanly on SIGTERM"
    );
    s.gateway.start();
    let log = s.gateway.log();
    let last_start = log.rsplit("imap listening on").next().unwrap();
    assert!(
        last_start.contains("initial sync of INBOX: 0 new, 0 removed"),
        "restart re-fetched: {last_start}"
    );
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    alice.run("SELECT INBOX");
    assert_eq!(alice.run("UID SEARCH ALL").search(), before);
    // Only the STATUS line: a flag update of the selected INBOX (a lead
    // keyword arriving as ingest finishes) may ride along with either answer.
    let status_line = |r: &common::Reply| -> Vec<String> {
        r.untagged()
            .into_iter()
            .filter(|l| l.starts_with("* STATUS"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        status_line(&alice.run("STATUS INBOX (UIDVALIDITY)")),
        status_line(&uidvalidity)
    );
    assert!(fetch_subjects(&mut alice).contains("Lead 2"));
}

#[test]
fn private_folders_append_copy_move_and_expunge() {
    let s = Setup::new(GatewayOptions::default());
    s.deliver_and_wait(
        "c@d.test",
        &message("C <c@d.test>", "Pricing", "p@d.test", "price?"),
        1,
    );
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(eventually(Duration::from_secs(10), || alice
        .run("STATUS INBOX (MESSAGES)")
        .text
        .contains("MESSAGES 1")));
    let list = alice.run("LIST \"\" \"*\"");
    for (name, attr) in [
        ("Drafts", "\\Drafts"),
        ("Sent", "\\Sent"),
        ("Trash", "\\Trash"),
    ] {
        assert!(
            list.untagged()
                .iter()
                .any(|l| l.ends_with(name) && l.contains(attr)),
            "{name} missing: {}",
            list.text
        );
    }
    assert!(list.text.contains("INBOX"));

    let draft = message(
        "alice@example.com",
        "Draft reply",
        "draft1@example.com",
        "Dear customer",
    );
    let r = alice.append("Drafts", "\\Draft", &draft);
    assert!(r.ok() && r.tagged.contains("[APPENDUID "), "{}", r.tagged);
    let sel = alice.run("SELECT Drafts");
    assert!(sel.text.contains("* 1 EXISTS"), "{}", sel.text);

    // Bob neither sees nor can reach alice's folders.
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    let bob_drafts = bob.run("SELECT Drafts");
    assert!(
        bob_drafts.text.contains("* 0 EXISTS"),
        "{}",
        bob_drafts.text
    );
    assert!(bob.run("SELECT ../alice/Drafts").no());

    // The draft is stored upstream under alice's prefix.
    let mut direct = s.direct();
    let status = direct.run("STATUS \"leadgate-users/alice/Drafts\" (MESSAGES)");
    assert!(status.contains("MESSAGES 1"), "{status}");

    // COPY from the shared INBOX keeps the original; MOVE takes it away.
    alice.run("SELECT INBOX");
    let r = alice.run("COPY 1 Trash");
    assert!(r.ok() && r.tagged.contains("COPYUID"), "{}", r.tagged);
    alice.run("SELECT Trash");
    let r = alice.run("UID MOVE 1:* Sent");
    assert!(r.ok() && r.text.contains("* 1 EXPUNGE"), "{}", r.text);
    assert!(alice
        .run("STATUS Sent (MESSAGES)")
        .text
        .contains("MESSAGES 1"));
    assert!(alice
        .run("STATUS INBOX (MESSAGES)")
        .text
        .contains("MESSAGES 1"));

    // EXPUNGE removes only what is marked \Deleted.
    alice.run("SELECT Sent");
    alice.run("STORE 1 +FLAGS (\\Deleted)");
    let r = alice.run("EXPUNGE");
    assert!(r.ok() && r.text.contains("* 1 EXPUNGE"), "{}", r.text);
    let status = direct.run("STATUS \"leadgate-users/alice/Sent\" (MESSAGES)");
    assert!(status.contains("MESSAGES 0"), "{status}");

    // CREATE/RENAME/DELETE stay inside the user's own space.
    assert!(alice.run("CREATE Archive/2026").ok());
    assert!(alice.run("RENAME Archive/2026 Archive/Old").ok());
    assert!(alice
        .run("LIST \"\" \"Archive/*\"")
        .text
        .contains("Archive/Old"));
    assert!(alice.run("DELETE Archive/Old").ok());
    assert!(alice.run("DELETE INBOX").no());
}

#[test]
fn search_answers_flags_locally_and_text_through_the_upstream() {
    let s = Setup::new(GatewayOptions::default());
    s.deliver_and_wait(
        "dana@northwind.test",
        &message(
            "Dana <dana@northwind.test>",
            "Quote request",
            "s1@northwind.test",
            "Budget approved for Q1.",
        ),
        1,
    );
    s.deliver_and_wait(
        "raj@brightpath.test",
        &message(
            "Raj <raj@brightpath.test>",
            "Demo please",
            "s2@brightpath.test",
            "Next week?",
        ),
        2,
    );
    // A manager: shared flags of leads are the owner's and the managers'.
    let mut maria = s.gateway.login(MARIA.0, MARIA.1);
    assert!(eventually(Duration::from_secs(10), || maria
        .run("SELECT INBOX")
        .text
        .contains("* 2 EXISTS")));
    maria.run("STORE 2 +FLAGS (\\Flagged)");
    assert_eq!(maria.run("SEARCH FLAGGED").search(), vec![2]);
    assert_eq!(maria.run("SEARCH UNFLAGGED").search(), vec![1]);
    assert_eq!(maria.run("SEARCH FROM dana").search(), vec![1]);
    assert_eq!(
        maria.run("SEARCH BODY \"budget approved\"").search(),
        vec![1]
    );
    assert_eq!(
        maria.run("SEARCH OR SUBJECT demo FLAGGED").search(),
        vec![2]
    );
    assert_eq!(
        maria.run("SEARCH NOT FROM dana LARGER 10").search(),
        vec![2]
    );
    let uids = maria.run("UID SEARCH ALL").search();
    assert_eq!(
        maria.run("UID SEARCH SUBJECT quote").search(),
        vec![uids[0]]
    );
    assert!(
        maria.run("SEARCH 3").text.contains("* SEARCH\r\n")
            || maria.run("SEARCH 3").search().is_empty()
    );
}

#[test]
fn fetch_sections_match_dovecot() {
    let s = Setup::new(GatewayOptions::default());
    let mime = b"From: Priya <priya@quantumleaf.test>\r\nTo: sales@example.com\r\nSubject: Enterprise pricing\r\nMessage-ID: <mp1@quantumleaf.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b1\r\nContent-Type: text/csv; name=\"seats.csv\"\r\nContent-Disposition: attachment; filename=\"seats.csv\"\r\n\r\nteam,seats\r\nops,200\r\n--b1--\r\n";
    s.deliver_and_wait("priya@quantumleaf.test", mime, 1);
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(eventually(Duration::from_secs(10), || alice
        .run("SELECT INBOX")
        .text
        .contains("* 1 EXISTS")));
    // Let the message be filed into its lead first (its keywords change).
    assert!(eventually(Duration::from_secs(10), || alice
        .run("FETCH 1 (FLAGS)")
        .text
        .contains("$Lead_")));
    alice.run("NOOP");
    let mut direct = s.direct();
    direct.run("SELECT INBOX");
    // Items the stamp does not touch are Dovecot's exactly.

    for items in [
        "BODYSTRUCTURE",
        "ENVELOPE",
        "INTERNALDATE",
        "BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]",
        "BODY.PEEK[TEXT]",
        "BODY.PEEK[2]",
        "BODY.PEEK[2.MIME]",
        "BODY.PEEK[1]<2.5>",
    ] {
        let ours = alice.run(&format!("UID FETCH 1 ({items})"));
        let theirs = direct.run(&format!("UID FETCH 1 ({items})"));
        let strip = |t: &str| {
            let line = t.lines().next().unwrap_or_default().to_owned();
            let rest: String = t
                .split_once("\r\n")
                .map(|(_, r)| r.to_owned())
                .unwrap_or_default();
            let data = rest
                .rsplit_once(")\r\n")
                .map(|(d, _)| d.to_owned())
                .unwrap_or_default();
            // Item order may differ (UID first or last): compare without it.
            (line.replace("UID 1 ", "").replace(" UID 1", ""), data)
        };
        assert!(ours.ok(), "{items}: {}", ours.text);
        // imap-codec writes media types upper-case; IMAP compares them
        // case-insensitively.
        let (a, b) = (strip(&ours.text), strip(&theirs));
        assert_eq!(a.0.to_lowercase(), b.0.to_lowercase(), "{items} differs");
        assert_eq!(a.1, b.1, "{items} differs");
    }
    // The header carries the stamp on top; sizes count it.
    let literal = |c: &mut Client, d: &mut RawImap, item: &str| {
        let ours = c.run(&format!("UID FETCH 1 ({item})")).text;
        let theirs = d.run(&format!("UID FETCH 1 ({item})"));
        let data = |t: &str| {
            t.split_once("}\r\n")
                .and_then(|(_, b)| b.rsplit_once(")\r\n").map(|(b, _)| b.to_owned()))
                .unwrap()
        };
        (data(&ours), data(&theirs))
    };
    for item in ["BODY.PEEK[HEADER]", "RFC822.HEADER", "BODY.PEEK[]"] {
        let (ours, theirs) = literal(&mut alice, &mut direct, item);
        assert!(ours.starts_with("X-Lead-Id: "), "{item}: {ours}");
        assert_eq!(&ours[STAMP_LEN..], theirs, "{item} differs under the stamp");
    }
    let (ours, theirs) = literal(
        &mut alice,
        &mut direct,
        "BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)]",
    );
    assert!(
        ours.contains("X-Lead-Owner: ") && ours.ends_with(&theirs),
        "{ours}"
    );
    let full = literal(&mut alice, &mut direct, "BODY.PEEK[]").0;
    let (partial, _) = literal(&mut alice, &mut direct, "BODY.PEEK[]<0.20>");
    assert_eq!(partial, full[..20]);
    let size = |t: &str| -> usize {
        t.split("RFC822.SIZE ")
            .nth(1)
            .unwrap()
            .split([' ', ')'])
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let ours = size(&alice.run("UID FETCH 1 (RFC822.SIZE)").text);
    assert_eq!(
        ours,
        size(&direct.run("UID FETCH 1 (RFC822.SIZE)")) + STAMP_LEN
    );
    assert_eq!(ours, full.len(), "RFC822.SIZE equals the bytes of BODY[]");
}

#[test]
fn hostile_input_gets_protocol_errors_and_the_session_survives() {
    let s = Setup::new(GatewayOptions::default());
    let mut c = s.gateway.client();
    assert!(c.run("FROBNICATE").bad());
    assert!(
        c.run("SELECT INBOX").bad(),
        "SELECT before login must be BAD"
    );
    c.send_raw(b"\xff\xfe garbage\r\n");
    let (line, _) = c.read_line_with_literals().unwrap();
    assert!(line.contains("BAD"), "{line}");
    // A literal over the unauthenticated limit is refused without reading it.
    c.send_raw(b"a1 LOGIN {999999}\r\n");
    let (line, _) = c.read_line_with_literals().unwrap();
    assert!(line.starts_with("a1 NO [TOOBIG]"), "{line}");
    let r = c.run(&format!("LOGIN {} {}", ALICE.0, ALICE.1));
    assert!(r.ok(), "session unusable after bad input: {}", r.tagged);
    assert!(
        c.run("FETCH 1 (FLAGS)").bad(),
        "FETCH without a selected folder"
    );
    c.run("SELECT INBOX");
    assert!(c.run("FETCH 99 (FLAGS)").bad());
    assert!(c.run("FETCH 1:* (BINARY[1])").bad());
    assert!(c.run("STORE 1 +FLAGS (\\Recent)").bad());
    assert!(c.run("THREAD REFERENCES UTF-8 ALL").bad());

    // An endless line is cut off with BYE; other sessions are unaffected.
    let mut other = s.gateway.login(BOB.0, BOB.1);
    let mut attacker = s.gateway.client();
    attacker.send_raw(&vec![b'A'; 200 * 1024]);
    let bye = attacker.wait_for(Duration::from_secs(10), |l| l.contains("BYE"));
    assert!(bye.is_some_and(|l| l.contains("too long")));
    assert!(other.run("NOOP").ok());
}

#[test]
fn upstream_reached_over_tls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    let dovecot = Dovecot::start(dir.path(), &[SALES], Some((&cert, &key)), false);
    let ca = dovecot.tls_cert.clone().unwrap();
    let mut raw = RawImap::login(dovecot.imap_port, SALES.0, SALES.1);
    raw.append(
        "INBOX",
        "",
        &message("a@b.test", "Over TLS", "tls1@b.test", "hello"),
    );
    let mut gw = Gateway::new(
        dir.path(),
        &dovecot,
        GatewayOptions {
            upstream_tls: Some(ca),
            ..Default::default()
        },
    );
    gw.add_user(ALICE.0, "rep", ALICE.1);
    gw.start();
    let mut alice = gw.login(ALICE.0, ALICE.1);
    assert!(alice.run("SELECT INBOX").text.contains("* 1 EXISTS"));
    assert!(alice.run("FETCH 1 (BODY.PEEK[])").text.contains("hello"));
}

#[test]
fn cached_bodies_are_served_while_the_upstream_is_down() {
    let mut s = Setup::new(GatewayOptions::default());
    s.deliver_and_wait(
        "g@h.test",
        &message(
            "G <g@h.test>",
            "Renewal quote",
            "r1@h.test",
            "Renewal for 35 seats.",
        ),
        1,
    );
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(eventually(Duration::from_secs(10), || alice
        .run("SELECT INBOX")
        .text
        .contains("* 1 EXISTS")));
    s.dovecot.stop();
    let r = alice.run("FETCH 1 (BODY.PEEK[])");
    assert!(
        r.ok() && r.text.contains("Renewal for 35 seats."),
        "{}",
        r.text
    );
    // What only the upstream can answer fails cleanly, without a hang.
    // (A connection Dovecot has not torn down yet may still answer once.)
    assert!(
        eventually(Duration::from_secs(20), || {
            let r = alice.run("SEARCH BODY renewal");
            r.no() && r.tagged.contains("[UNAVAILABLE]")
        }),
        "SEARCH did not fail cleanly with the upstream down"
    );
    s.dovecot.restart();
    assert!(eventually(Duration::from_secs(20), || alice
        .run("SEARCH BODY renewal")
        .ok()));
}

#[test]
fn upstream_uidvalidity_change_is_survived() {
    let s = Setup::new(GatewayOptions::default());
    s.deliver_and_wait(
        "k@l.test",
        &message("K <k@l.test>", "Pilot", "v1@l.test", "30-day pilot?"),
        1,
    );
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(eventually(Duration::from_secs(10), || alice
        .run("SELECT INBOX")
        .text
        .contains("* 1 EXISTS")));
    let before = alice.run("STATUS INBOX (UIDVALIDITY)").untagged().join("");
    let tag = alice.idle();
    let status = std::process::Command::new("doveadm")
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
    // Nudge the mailbox so IDLE notices, as new mail would.
    s.deliver_and_wait(
        "k@l.test",
        &message("K <k@l.test>", "Pilot (2)", "v2@l.test", "again"),
        2,
    );
    let bye = alice.wait_for(Duration::from_secs(30), |l| l.contains("BYE"));
    assert!(
        bye.is_some(),
        "selected client was not told the folder was reset"
    );
    let _ = tag;
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    let sel = alice.run("SELECT INBOX");
    assert!(
        sel.text.contains("[UIDVALIDITY 4242]") && sel.text.contains("* 2 EXISTS"),
        "{}",
        sel.text
    );
    assert_ne!(
        before,
        alice.run("STATUS INBOX (UIDVALIDITY)").untagged().join("")
    );
    assert!(alice.run("FETCH 1:2 (ENVELOPE)").text.contains("Pilot (2)"));
}

#[test]
fn limits_per_ip_auth_timeout_and_shutdown_bye() {
    let mut s = Setup::new(GatewayOptions {
        extra: "[limits]\nmax_connections_per_ip = 3\nauth_timeout_secs = 2\n".into(),
        ..Default::default()
    });
    let mut logged_in = s.gateway.login(ALICE.0, ALICE.1);
    let mut idle = s.gateway.client();
    let _third = s.gateway.client();
    let fourth = s.gateway.client();
    assert!(
        fourth.greeting.contains("BYE") && fourth.greeting.contains("Too many connections"),
        "{}",
        fourth.greeting
    );

    // An unauthenticated connection that says nothing is dropped.
    let bye = idle.wait_for(Duration::from_secs(10), |l| l.contains("BYE"));
    assert!(bye.is_some(), "no autologout before authentication");

    // SIGTERM: connected clients hear BYE, and the process exits cleanly.
    assert!(logged_in.run("SELECT INBOX").ok());
    let tag = logged_in.idle();
    let status = s.gateway.stop();
    let bye = logged_in.wait_for(Duration::from_secs(10), |l| l.contains("BYE"));
    assert!(bye.is_some_and(|l| l.contains("shutting down")));
    let _ = tag;
    assert!(status.is_some_and(|st| st.success()));
}
