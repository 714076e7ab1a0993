//! IMAP behaviours Dovecot's imaptest checks and leadgate once got wrong,
//! replayed command by command against real Dovecot (imaptest itself cannot
//! be fetched on a CI machine): `\Recent`, keywords announced in FLAGS,
//! MOVE within a folder, header fields of MIME parts and attached
//! messages, the largest ID of RFC 2971 before login, and LSUB's
//! `\Noselect` parents.

mod common;

use common::*;

const ATTACHED: &[u8] = b"From: Dana <dana@northwind.test>\r\nTo: alice@example.com\r\nSubject: fwd\r\nMessage-ID: <fwd1@northwind.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\nX-Foo: part one\r\n\r\nsee attached\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\nFrom: Tom <tom@acme-corp.test>\r\nSubject: inner subject\r\nX-Foo: inner\r\nX-Bar: not asked\r\n\r\ninner body\r\n--b1--\r\n";

fn plain(subject: &str) -> Vec<u8> {
    format!("From: alice@example.com\r\nSubject: {subject}\r\n\r\nbody\r\n").into_bytes()
}

fn line_with<'a>(r: &'a Reply, needle: &str) -> Option<&'a str> {
    r.untagged().into_iter().find(|l| l.contains(needle))
}

#[test]
fn recent_belongs_to_the_first_session_that_sees_a_message() {
    let s = Setup::new(GatewayOptions::default());
    let mut a = s.gateway.login(ALICE.0, ALICE.1);
    assert!(a.run("CREATE Projects").ok());
    assert!(a.append("Projects", "", &plain("one")).ok());
    assert!(a.append("Projects", "", &plain("two")).ok());

    // EXAMINE looks without taking them; STATUS agrees.
    let r = a.run("EXAMINE Projects");
    assert!(line_with(&r, "2 RECENT").is_some(), "{}", r.text);
    assert!(a.run("CLOSE").ok());
    let r = a.run("STATUS Projects (MESSAGES RECENT)");
    assert!(r.text.contains("(MESSAGES 2 RECENT 2)"), "{}", r.text);

    // SELECT takes them: this session sees \Recent, the next one does not.
    let r = a.run("SELECT Projects");
    assert!(line_with(&r, "2 RECENT").is_some(), "{}", r.text);
    let r = a.run("FETCH 1:2 (FLAGS)");
    assert_eq!(r.text.matches("\\Recent").count(), 2, "{}", r.text);
    assert_eq!(a.run("SEARCH RECENT").search(), vec![1, 2]);
    assert_eq!(a.run("SEARCH NEW").search(), vec![1, 2]);
    assert!(a.run("SEARCH OLD").search().is_empty());
    let r = a.run("STATUS Projects (RECENT)");
    assert!(r.text.contains("(RECENT 0)"), "{}", r.text);
    let mut b = s.gateway.login(ALICE.0, ALICE.1);
    let r = b.run("SELECT Projects");
    assert!(line_with(&r, "0 RECENT").is_some(), "{}", r.text);
    assert!(!b.run("FETCH 1:* (FLAGS)").text.contains("\\Recent"));

    // Mail that arrives while both are selected is recent for whichever
    // session hears of it first, and for that one only.
    let mut c = s.gateway.login(ALICE.0, ALICE.1);
    assert!(c.append("Projects", "", &plain("three")).ok());
    let r = b.run("NOOP");
    assert!(
        line_with(&r, "3 EXISTS").is_some() && line_with(&r, "1 RECENT").is_some(),
        "{}",
        r.text
    );
    assert!(b.run("FETCH 3 (FLAGS)").text.contains("\\Recent"));
    let r = a.run("NOOP");
    assert!(line_with(&r, "3 EXISTS").is_some(), "{}", r.text);
    assert!(!a.run("FETCH 3 (FLAGS)").text.contains("\\Recent"));
    assert_eq!(a.run("SEARCH RECENT").search(), vec![1, 2]);
    // Reading takes a message out of NEW (recent and unseen), not out of
    // RECENT.
    let r = a.run("STORE 1 +FLAGS (\\Seen)");
    assert!(r.ok(), "{}", r.text);
    assert_eq!(a.run("SEARCH NEW").search(), vec![2]);
    assert_eq!(a.run("SEARCH RECENT").search(), vec![1, 2]);
    drop((a, b, c));

    // Kept in memory: after a restart nothing indexed before is recent,
    // and mail that arrives later is.
    let mut s = s;
    s.gateway.stop();
    s.gateway.start();
    let mut d = s.gateway.login(ALICE.0, ALICE.1);
    let r = d.run("STATUS Projects (MESSAGES RECENT)");
    assert!(r.text.contains("(MESSAGES 3 RECENT 0)"), "{}", r.text);
    assert!(d.append("Projects", "", &plain("four")).ok());
    let r = d.run("SELECT Projects");
    assert!(line_with(&r, "1 RECENT").is_some(), "{}", r.text);
    assert_eq!(d.run("SEARCH RECENT").search(), vec![4]);
}

#[test]
fn a_new_keyword_is_announced_in_flags_before_it_is_used() {
    let s = Setup::new(GatewayOptions::default());
    let mut a = s.gateway.login(ALICE.0, ALICE.1);
    assert!(a.run("CREATE Projects").ok());
    assert!(a.append("Projects", "", &plain("one")).ok());
    let r = a.run("SELECT Projects");
    assert!(!r.text.contains("$hello"), "{}", r.text);
    let r = a.run("STORE 1 +FLAGS ($hello)");
    let flags = r.text.find("* FLAGS (").expect("FLAGS announced");
    let fetch = r.text.find("FETCH (").expect("the FETCH");
    assert!(flags < fetch, "FLAGS must come first: {}", r.text);
    assert!(line_with(&r, "* FLAGS (").unwrap().contains("$hello"));

    // Another session hears of it the same way, and only once.
    let mut b = s.gateway.login(ALICE.0, ALICE.1);
    assert!(b.run("SELECT Projects").text.contains("$hello"));
    let r = a.run("STORE 1 +FLAGS ($world)");
    assert!(line_with(&r, "* FLAGS (").unwrap().contains("$world"));
    let r = b.run("NOOP");
    let flags = r.text.find("* FLAGS (").expect("announced by NOOP");
    assert!(flags < r.text.find("FETCH (").unwrap(), "{}", r.text);
    let r = b.run("FETCH 1 (FLAGS)");
    assert!(!r.text.contains("* FLAGS"), "announced twice: {}", r.text);
}

#[test]
fn move_within_a_private_folder_renumbers_and_inbox_refuses() {
    let s = Setup::new(GatewayOptions::default());
    s.deliver_and_wait(
        "dana@northwind.test",
        &message(
            "Dana <dana@northwind.test>",
            "Quote",
            "q1@northwind.test",
            "hi",
        ),
        1,
    );
    let mut a = s.gateway.login(ALICE.0, ALICE.1);
    assert!(a.run("CREATE Projects").ok());
    assert!(a.append("Projects", "", &plain("one")).ok());
    assert!(a.run("SELECT Projects").ok());
    let r = a.run("MOVE 1 Projects");
    assert!(r.ok(), "{}", r.text);
    assert!(r.text.contains("COPYUID"), "{}", r.text);
    assert!(line_with(&r, "1 EXPUNGE").is_some(), "{}", r.text);
    let r = a.run("UID FETCH 1:* (UID)");
    assert!(r.text.contains("UID 2"), "{}", r.text);
    assert_eq!(r.untagged().len(), 1, "{}", r.text);

    // The shared INBOX keeps its messages where they are.
    let mut m = s.gateway.login(MARIA.0, MARIA.1);
    // leadgate hears of the delivery from Dovecot's IDLE, half a second on.
    assert!(eventually(std::time::Duration::from_secs(20), || {
        exists_in(&m.run("SELECT INBOX")) == 1
    }));
    let r = m.run("MOVE 1 INBOX");
    assert!(r.no() && r.tagged.contains("[CANNOT]"), "{}", r.text);
    assert_eq!(s.upstream_count(), 1);
}

#[test]
fn header_fields_of_parts_and_attached_messages_are_served() {
    let s = Setup::new(GatewayOptions::default());
    let mut a = s.gateway.login(ALICE.0, ALICE.1);
    assert!(a.run("CREATE Projects").ok());
    assert!(a.append("Projects", "", ATTACHED).ok());
    assert!(a.run("SELECT Projects").ok());
    let r = a.run("FETCH 1 (BODY.PEEK[2.HEADER.FIELDS (from subject x-foo)])");
    assert!(r.ok(), "{}", r.text);
    assert!(
        r.text.contains("Subject: inner subject") && r.text.contains("X-Foo: inner"),
        "{}",
        r.text
    );
    assert!(!r.text.contains("X-Bar"), "{}", r.text);
    let r = a.run("FETCH 1 (BODY.PEEK[2.HEADER.FIELDS.NOT (from subject x-foo)])");
    assert!(
        r.text.contains("X-Bar: not asked") && !r.text.contains("inner subject"),
        "{}",
        r.text
    );
    let r = a.run("FETCH 1 (BODY.PEEK[1.MIME])");
    assert!(r.text.contains("X-Foo: part one"), "{}", r.text);
}

#[test]
fn the_largest_id_of_rfc_2971_is_answered_before_login() {
    let s = Setup::new(GatewayOptions::default());
    let mut c = s.gateway.client();
    let pairs: Vec<String> = (0..30)
        .map(|n| format!("\"{n:0>30}\" \"{}\"", "v".repeat(1024)))
        .collect();
    let r = c.run(&format!("ID ({})", pairs.join(" ")));
    assert!(r.ok(), "{}", r.tagged);
    // Beyond that, a stranger is still held to the limit.
    let r = c.run(&format!("ID (\"a\" \"{}\")", "v".repeat(40 * 1024)));
    assert!(!r.ok(), "{}", r.tagged);
}

#[test]
fn lsub_lists_choices_and_unsubscribed_parents_as_noselect() {
    let s = Setup::new(GatewayOptions::default());
    let mut a = s.gateway.login(ALICE.0, ALICE.1);
    for f in ["box/test", "box/test2/test", "box/test3/test3", "box/test3"] {
        assert!(a.run(&format!("CREATE {f}")).ok(), "{f}");
    }
    for f in ["box/test", "box/test2/test", "box/test3/test3"] {
        assert!(a.run(&format!("SUBSCRIBE {f}")).ok(), "{f}");
    }
    let r = a.run("LSUB \"\" box/%");
    let names: Vec<&str> = r.untagged();
    let find = |n: &str| {
        names
            .iter()
            .find(|l| l.ends_with(&format!(" {n}")))
            .copied()
    };
    assert!(
        find("box/test").is_some_and(|l| !l.contains("Noselect")),
        "{}",
        r.text
    );
    assert!(
        find("box/test2").is_some_and(|l| l.contains("\\Noselect")),
        "{}",
        r.text
    );
    assert!(
        find("box/test3").is_some_and(|l| l.contains("\\Noselect")),
        "{}",
        r.text
    );
    assert!(find("box/test2/test").is_none(), "{}", r.text);
    // Leadgate's own folders are subscribed from the start (Outlook lists
    // only subscribed folders); a folder the user made is not.
    let r = a.run("LSUB \"\" *");
    assert!(
        r.text.contains("Leads/Mine") && r.text.contains("INBOX"),
        "{}",
        r.text
    );
    assert!(
        !r.untagged().iter().any(|l| l.ends_with(" box/test3")),
        "{}",
        r.text
    );
    // A subscribed name that does not exist (yet) is listed too.
    assert!(a.run("SUBSCRIBE Later/Plans").ok());
    let r = a.run("LSUB \"\" Later/*");
    assert!(
        r.untagged().iter().any(|l| l.ends_with(" Later/Plans")),
        "{}",
        r.text
    );
    assert!(a.run("UNSUBSCRIBE box/test").ok());
    let r = a.run("LSUB \"\" box/%");
    assert!(
        !r.untagged().iter().any(|l| l.ends_with(" box/test")),
        "{}",
        r.text
    );
}
