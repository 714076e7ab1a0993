//! The security model, driven as an attacker would: a logged-in rep who
//! tries another command, another folder name or another header to get
//! around a rule, and a stranger on the network who tries to stall the
//! server, hold its memory or lock a colleague out. Each runs against real
//! Dovecot and Postfix, beside a *canary* session (maria, polling STATUS)
//! that must keep getting answers; its worst wait is printed, and only a
//! generous hang guard is asserted.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::*;

/// A hang is a wait longer than this; anything shorter is only reported.
const HANG: Duration = Duration::from_secs(30);

struct Canary {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(Duration, usize)>,
}

/// Maria polls STATUS INBOX every 50 ms until stopped.
fn canary(s: &Setup) -> Canary {
    let mut c = s.gateway.login(MARIA.0, MARIA.1);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut worst = Duration::ZERO;
        let mut answers = 0;
        while !flag.load(Ordering::Relaxed) {
            let t = Instant::now();
            let r = c
                .try_run("STATUS INBOX (MESSAGES)")
                .expect("the canary session keeps its connection");
            assert!(r.ok(), "canary: {}", r.text);
            worst = worst.max(t.elapsed());
            answers += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        (worst, answers)
    });
    Canary { stop, handle }
}

impl Canary {
    fn finish(self, what: &str) {
        self.stop.store(true, Ordering::Relaxed);
        let (worst, answers) = self.handle.join().expect("canary thread");
        println!("canary beside {what}: {answers} answers, worst wait {worst:?}");
        assert!(answers > 0, "the canary got no answer beside {what}");
        assert!(worst < HANG, "the canary waited {worst:?} beside {what}");
    }
}

fn setup(rep_inbox: &'static str) -> Setup {
    Setup::new(GatewayOptions {
        rep_inbox,
        extra: "[leads]\nshared_address = \"sales@example.com\"\n\n[[leads.assignment]]\nrule = \"unassigned\"\n".into(),
        ..Default::default()
    })
}

fn wait_exists(c: &mut Client, folder: &str, n: usize) -> bool {
    eventually(Duration::from_secs(30), || {
        exists_in(&c.run(&format!("EXAMINE \"{folder}\""))) == n
    })
}

/// The client UID of the message with this Message-ID in the selected
/// folder.
fn uid_of(c: &mut Client, message_id: &str) -> u32 {
    let r = c.run(&format!("UID SEARCH HEADER MESSAGE-ID \"{message_id}\""));
    *r.search()
        .first()
        .unwrap_or_else(|| panic!("{message_id} not found: {}", r.text))
}

/// Flags of the message with this Message-ID, asked of Dovecot directly.
fn upstream_flags(s: &Setup, message_id: &str) -> String {
    let mut d = s.direct();
    d.run("SELECT INBOX");
    let found = d.run(&format!("UID SEARCH HEADER MESSAGE-ID \"{message_id}\""));
    let uid = found
        .lines()
        .find_map(|l| l.strip_prefix("* SEARCH "))
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| panic!("{message_id} not upstream: {found}"));
    d.run(&format!("UID FETCH {uid} FLAGS"))
}

/// Two enquiries: dana's (claimed by alice) and raj's (left unassigned).
fn two_leads(s: &Setup) {
    s.deliver_and_wait(
        "dana@northwind.test",
        &message(
            "Dana <dana@northwind.test>",
            "Quote request: 40 seats",
            "dana1@northwind.test",
            "Could you send a quote?",
        ),
        1,
    );
    s.deliver_and_wait(
        "raj@brightpath.test",
        &message(
            "Raj <raj@brightpath.test>",
            "Demo request",
            "raj1@brightpath.test",
            "Can we see a demo?",
        ),
        2,
    );
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(wait_exists(&mut alice, "Leads/Unassigned", 2));
    assert!(alice.run("SELECT \"Leads/Unassigned\"").ok());
    let uid = uid_of(&mut alice, "dana1@northwind.test");
    let r = alice.run(&format!("UID MOVE {uid} \"Assign to/alice\""));
    assert!(r.ok(), "{}", r.text);
    assert!(wait_exists(&mut alice, "Leads/Mine", 1));
}

fn lead_of(s: &Setup, contact: &str) -> serde_json::Value {
    s.gateway
        .leads()
        .into_iter()
        .find(|l| l["contact_email"] == contact)
        .unwrap_or_else(|| panic!("no lead for {contact}"))
}

#[test]
fn a_rep_cannot_put_mail_into_a_read_only_inbox_by_any_command() {
    let s = setup("read-only");
    two_leads(&s);
    let before = lead_of(&s, "dana@northwind.test");
    let canary = canary(&s);

    // bob writes "a reply from dana" into his Drafts, threaded to her lead.
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    let forged = b"From: Dana <dana@northwind.test>\r\nTo: sales@example.com\r\nSubject: Re: Quote request: 40 seats\r\nMessage-ID: <forged@bob.test>\r\nIn-Reply-To: <dana1@northwind.test>\r\n\r\nWe accept, cancel the follow-up.\r\n";
    let r = bob.append("Drafts", "", forged);
    assert!(r.ok(), "{}", r.text);
    assert!(bob.run("SELECT Drafts").ok());
    for cmd in [
        "UID COPY 1:* INBOX",
        "UID MOVE 1:* INBOX",
        "COPY 1 \"inbox/\"",
        "MOVE 1 \"InBoX\"",
    ] {
        let r = bob.run(cmd);
        assert!(r.no() && r.tagged.contains("[NOPERM]"), "{cmd}: {}", r.text);
        assert!(r.tagged.contains("read-only"), "{cmd}: {}", r.text);
    }
    let r = bob.append("INBOX/", "", forged);
    assert!(r.no(), "{}", r.text);

    // Nothing reached the shared mailbox, and the lead did not move.
    assert_eq!(s.upstream_count(), 2);
    let after = lead_of(&s, "dana@northwind.test");
    assert_eq!(after["status"], before["status"]);
    assert_eq!(after["owner"], "alice");
    assert_eq!(after["due"], before["due"]);
    // His draft is still his.
    assert_eq!(exists_in(&bob.run("SELECT Drafts")), 1);
    canary.finish("writes into a read-only INBOX");
}

#[test]
fn shared_flags_belong_to_the_lead_owner_and_managers() {
    // INBOX read-write for reps: the most permissive setting.
    let s = setup("read-write");
    two_leads(&s);
    let canary = canary(&s);
    let dana_flags = upstream_flags(&s, "dana1@northwind.test");

    let mut bob = s.gateway.login(BOB.0, BOB.1);
    assert!(bob.run("SELECT INBOX").ok());
    let dana = uid_of(&mut bob, "dana1@northwind.test");
    for cmd in [
        format!("UID STORE {dana} +FLAGS (\\Flagged)"),
        format!("UID STORE {dana} FLAGS ()"),
        format!("UID STORE {dana} +FLAGS.SILENT (\\Deleted)"),
        "STORE 1:* +FLAGS (\\Answered)".to_owned(),
    ] {
        let r = bob.run(&cmd);
        assert!(r.no() && r.tagged.contains("[NOPERM]"), "{cmd}: {}", r.text);
    }
    let r = bob.run(&format!("UID STORE {dana} +FLAGS (\\Flagged)"));
    assert!(r.tagged.contains("belongs to alice"), "{}", r.text);
    // Moving her lead's mail out of the shared INBOX is a write too.
    let r = bob.run(&format!("UID MOVE {dana} Trash"));
    assert!(r.no() && r.tagged.contains("alice"), "{}", r.text);
    // Reading is not writing: bob reads her lead without marking it read.
    let r = bob.run(&format!("UID FETCH {dana} BODY[]"));
    assert!(r.ok(), "{}", r.text);
    assert_eq!(upstream_flags(&s, "dana1@northwind.test"), dana_flags);
    assert_eq!(s.upstream_count(), 2);

    // An unassigned lead is claimed first.
    assert!(bob.run("SELECT \"Leads/Unassigned\"").ok());
    let raj = uid_of(&mut bob, "raj1@brightpath.test");
    let r = bob.run(&format!("UID STORE {raj} +FLAGS (\\Flagged)"));
    assert!(r.no() && r.tagged.contains("claim it first"), "{}", r.text);

    // The owner may, and so may a manager.
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(alice.run("SELECT \"Leads/Mine\"").ok());
    let r = alice.run("STORE 1 +FLAGS (\\Flagged)");
    assert!(r.ok(), "{}", r.text);
    assert!(upstream_flags(&s, "dana1@northwind.test").contains("\\Flagged"));
    let mut maria = s.gateway.login(MARIA.0, MARIA.1);
    assert!(maria.run("SELECT INBOX").ok());
    let raj = uid_of(&mut maria, "raj1@brightpath.test");
    let r = maria.run(&format!("UID STORE {raj} +FLAGS (\\Flagged)"));
    assert!(r.ok(), "{}", r.text);
    assert!(upstream_flags(&s, "raj1@brightpath.test").contains("\\Flagged"));
    canary.finish("flag writes on other people's leads");
}

#[test]
fn a_hidden_inbox_stays_hidden_under_every_spelling() {
    let s = setup("hidden");
    two_leads(&s);
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    for name in ["INBOX", "inbox", "INBOX/", "InBoX//", "&AEk-NBOX"] {
        for verb in ["SELECT", "EXAMINE"] {
            let r = bob.run(&format!("{verb} \"{name}\""));
            assert!(r.no(), "{verb} {name}: {}", r.text);
        }
        let r = bob.run(&format!("STATUS \"{name}\" (MESSAGES)"));
        assert!(r.no(), "STATUS {name}: {}", r.text);
    }
    let r = bob.append("INBOX/", "", b"Subject: x\r\n\r\ny\r\n");
    assert!(r.no(), "{}", r.text);
    assert_eq!(s.upstream_count(), 2);
    // A manager still opens it, trailing delimiter or not.
    let mut maria = s.gateway.login(MARIA.0, MARIA.1);
    let r = maria.run("SELECT \"INBOX/\"");
    assert!(r.ok() && exists_in(&r) == 2, "{}", r.text);
}

#[test]
fn a_user_name_cannot_reach_into_another_users_folders() {
    let s = setup("read-only");
    for name in ["bob.x", "bob/x", "..", "bob.sent"] {
        let out = s
            .gateway
            .cli(&["user", "add", name, "--role", "rep"], Some("pw-123456\n"));
        assert!(!out.status.success(), "user add {name} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not valid"), "{name}: {err}");
    }
    // bob's own folder named like the other user's root stays bob's.
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    assert!(bob.run("CREATE x").ok());
    assert!(bob.run("CREATE \"x/Sent\"").ok());
    let r = bob.run("LIST \"\" \"x/*\"");
    assert!(
        r.untagged()
            .iter()
            .any(|l| l.trim_end_matches('"').ends_with("x/Sent")),
        "{}",
        r.text
    );
    // Upstream it lives under bob's own root, nowhere else.
    let mut d = s.direct();
    let listed = d.run("LIST \"\" \"*\"");
    let upstream: Vec<&str> = listed
        .lines()
        .filter(|l| l.contains("x") && l.contains("Sent") && l.contains("leadgate-users"))
        .collect();
    assert_eq!(upstream.len(), 1, "{listed}");
    assert!(
        ["leadgate-users/bob/x/Sent", "leadgate-users.bob.x.Sent"]
            .iter()
            .any(|p| upstream[0].contains(p)),
        "{listed}"
    );
}

#[test]
fn heavy_arguments_are_refused_while_a_canary_keeps_getting_answers() {
    let s = setup("read-only");
    two_leads(&s);
    let canary = canary(&s);
    // Four sessions, each a LIST whose pattern is a 16 MiB literal of '*':
    // refused before a byte of it is read (only APPEND carries big
    // literals); pushed without waiting (LITERAL+), the session ends.
    let workers: Vec<_> = (0..4)
        .map(|n| {
            let mut c = s.gateway.login(BOB.0, BOB.1);
            std::thread::spawn(move || {
                let t = Instant::now();
                let len = 16 * 1024 * 1024;
                if n % 2 == 0 {
                    c.send_raw(format!("L1 LIST \"\" {{{len}}}\r\n").as_bytes());
                    let r = c.read_reply("L1");
                    (r.tagged, t.elapsed())
                } else {
                    c.send_raw(format!("L1 LIST \"\" {{{len}+}}\r\n").as_bytes());
                    c.send_raw(&vec![b'*'; 64 * 1024]);
                    let said = c
                        .read_line_with_literals()
                        .map(|(l, _)| l)
                        .unwrap_or_default();
                    (said, t.elapsed())
                }
            })
        })
        .collect();
    for w in workers {
        let (said, took) = w.join().unwrap();
        assert!(
            said.contains("[TOOBIG]") && (said.starts_with("L1 NO") || said.starts_with("* BYE")),
            "16 MiB LIST pattern: {said}"
        );
        println!(
            "16 MiB LIST pattern refused after {took:?}: {}",
            said.trim_end()
        );
    }
    // Within the line limit, the pattern cap answers.
    let mut c = s.gateway.login(BOB.0, BOB.1);
    let pattern = "*".repeat(60_000);
    c.send_raw(format!("L2 LIST \"\" {{{}}}\r\n", pattern.len()).as_bytes());
    let (cont, _) = c.read_line_with_literals().unwrap();
    assert!(cont.starts_with('+'), "{cont}");
    c.send_raw(pattern.as_bytes());
    c.send_raw(b"\r\n");
    let r = c.read_reply("L2");
    assert!(r.no() && r.tagged.contains("[LIMIT]"), "{}", r.tagged);
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    assert!(bob.run("SELECT \"Leads/Unassigned\"").ok());
    let texts = (0..17)
        .map(|i| format!("SUBJECT s{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let big_set = vec!["1"; 20_000].join(",");
    let fields = (0..200)
        .map(|i| format!("X-F{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    for cmd in [
        format!("SEARCH {texts}"),
        format!("UID FETCH {big_set} FLAGS"),
        format!("FETCH 1 BODY.PEEK[HEADER.FIELDS ({fields})]"),
        format!("LIST \"\" \"{}\"", "%".repeat(40)),
    ] {
        let r = bob.run(&cmd);
        assert!(
            r.no() && r.tagged.contains("[LIMIT]"),
            "{}: {}",
            &cmd[..40.min(cmd.len())],
            r.tagged
        );
    }
    // Overlapping ranges cost one pass, and are answered.
    let overlapping = vec!["1:*"; 16_000].join(",");
    let r = bob.run(&format!("UID FETCH {overlapping} (UID FLAGS)"));
    assert!(r.ok(), "{}", r.tagged);
    assert_eq!(r.untagged().len(), 1, "{}", r.text);
    canary.finish("16 MiB LIST patterns and capped arguments");
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Reads until the peer closes, or `limit` passes; true if it closed.
fn closes_within((mut tcp, read): (TcpStream, Vec<u8>), limit: Duration) -> (bool, String) {
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut seen = read;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match tcp.read(&mut buf) {
            Ok(0) => return (true, String::from_utf8_lossy(&seen).into_owned()),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (true, String::from_utf8_lossy(&seen).into_owned()),
        }
    }
    (false, String::from_utf8_lossy(&seen).into_owned())
}

#[test]
fn a_stranger_cannot_hold_memory_or_a_session_before_login() {
    let s = Setup::new(GatewayOptions {
        rep_inbox: "read-only",
        extra: "[limits]\nauth_timeout_secs = 4\n".into(),
        ..Default::default()
    });
    let canary = canary(&s);
    let pid = s.gateway.pid().expect("leadgate runs");
    let before = rss_kib(pid);
    // Four strangers chain 30 KB literals into one command (the limit before
    // login is 32 KiB), over and over.
    let strangers: Vec<_> = (0..4)
        .map(|n| {
            let addr = s.gateway.addr("plaintext");
            std::thread::spawn(move || {
                let tcp = connect_from(addr, loopback_ip(61, n)).unwrap();
                let mut c = Client::over_tcp(tcp);
                let mut toobig = 0;
                for _ in 0..20 {
                    c.send_raw(b"a LOGIN {30000}\r\n");
                    let Ok((line, _)) = c.read_line_with_literals() else {
                        break;
                    };
                    if !line.starts_with('+') {
                        break;
                    }
                    c.send_raw(&vec![b'x'; 30000]);
                    c.send_raw(b" {30000}\r\n");
                    let Ok((line, _)) = c.read_line_with_literals() else {
                        break;
                    };
                    if line.contains("[TOOBIG]") {
                        toobig += 1;
                    } else {
                        break;
                    }
                }
                toobig
            })
        })
        .collect();
    for t in strangers {
        let toobig = t.join().unwrap();
        assert!(toobig >= 1, "the second literal was not refused");
    }
    let after = rss_kib(pid);
    println!(
        "RSS before {before} KiB, after four strangers chaining literals {after} KiB (+{} KiB)",
        after.saturating_sub(before)
    );
    assert!(
        after.saturating_sub(before) < 64 * 1024,
        "the daemon grew by {} KiB",
        after - before
    );

    // A trickle does not keep a session alive past the login deadline.
    let t = Instant::now();
    let trickle = connect_from(s.gateway.addr("plaintext"), loopback_ip(62, 1)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let dripper = {
        let mut w = trickle.try_clone().unwrap();
        let stop = stop.clone();
        std::thread::spawn(move || {
            for b in b"a LOGIN alice ".iter().cycle() {
                if stop.load(Ordering::Relaxed) || w.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let _ = trickle.set_nodelay(true);
    let (closed, said) = closes_within((trickle, Vec::new()), HANG);
    stop.store(true, Ordering::Relaxed);
    let _ = dripper.join();
    println!(
        "trickling stranger closed after {:?}: {said:?}",
        t.elapsed()
    );
    assert!(closed && said.contains("BYE"), "{said}");

    // Ten BADs, or three failed logins, end a connection before login.
    let tcp = connect_from(s.gateway.addr("plaintext"), loopback_ip(63, 1)).unwrap();
    let mut c = Client::over_tcp(tcp);
    for i in 0..10 {
        c.send_raw(format!("b{i} FROB\r\n").as_bytes());
    }
    let (closed, said) = closes_within(c.into_tcp(), HANG);
    assert!(closed && said.contains("BYE Too many errors"), "{said}");
    let tcp = connect_from(s.gateway.addr("plaintext"), loopback_ip(63, 2)).unwrap();
    let mut c = Client::over_tcp(tcp);
    for i in 0..3 {
        let r = c.run(&format!("LOGIN user{i} wrong"));
        assert!(r.no(), "{}", r.text);
    }
    let (closed, said) = closes_within(c.into_tcp(), HANG);
    assert!(closed && said.contains("BYE"), "{said}");
    canary.finish("strangers before login");
}

fn auth_failures(log: &str, user: &str, ip: &str, reason: &str) -> usize {
    let needle = format!("auth failed: user={user} ip={ip} proto=imap reason={reason}");
    log.lines().filter(|l| l.contains(&needle)).count()
}

#[test]
fn a_stranger_cannot_lock_a_colleague_out() {
    let s = setup("read-only");
    let canary = canary(&s);
    let addr = s.gateway.addr("plaintext");
    // Ten wrong passwords for maria from a stranger's address.
    let stranger = loopback_ip(71, 1);
    for _ in 0..4 {
        let mut c = Client::over_tcp(connect_from(addr, stranger).unwrap());
        for _ in 0..3 {
            match c.try_run("LOGIN maria not-her-password") {
                Ok(r) => assert!(r.no(), "{}", r.text),
                Err(_) => break,
            }
        }
    }
    // maria, from where she works, gets in.
    let mut own = Client::over_tcp(connect_from(addr, loopback_ip(72, 1)).unwrap());
    let r = own.run(&format!("LOGIN {} {}", MARIA.0, MARIA.1));
    assert!(r.ok(), "maria locked out by a stranger: {}", r.text);

    // Thirty parallel guesses for alice from one address: only five are
    // checked against her hash (max_failures = 5); the rest are refused
    // before hashing.
    let guesser = loopback_ip(73, 1);
    let tries: Vec<_> = (0..30)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::over_tcp(connect_from(addr, guesser).unwrap());
                let r = c.run(&format!("LOGIN alice guess-{i}"));
                assert!(r.no(), "{}", r.text);
            })
        })
        .collect();
    for t in tries {
        t.join().unwrap();
    }
    let log = s.gateway.log();
    let ip = guesser.to_string();
    let checked = auth_failures(&log, "alice", &ip, "bad-credentials");
    let locked = auth_failures(&log, "alice", &ip, "locked-out");
    println!("30 parallel guesses: {checked} checked against the hash, {locked} refused before");
    assert_eq!((checked, locked), (5, 25));
    // That address is done with alice; alice is not.
    let mut c = Client::over_tcp(connect_from(addr, guesser).unwrap());
    assert!(c.run(&format!("LOGIN {} {}", ALICE.0, ALICE.1)).no());
    let mut c = Client::over_tcp(connect_from(addr, loopback_ip(74, 1)).unwrap());
    let r = c.run(&format!("LOGIN {} {}", ALICE.0, ALICE.1));
    assert!(r.ok(), "{}", r.text);
    canary.finish("lockout attempts");
}

#[test]
fn a_login_flood_is_a_few_audit_events_not_one_per_attempt() {
    let mut s = setup("read-only");
    let addr = s.gateway.addr("plaintext");
    let flooder = loopback_ip(81, 1);
    let canary = canary(&s);
    let conns: Vec<_> = (0..40)
        .map(|n| {
            std::thread::spawn(move || {
                let mut c = Client::over_tcp(connect_from(addr, flooder).unwrap());
                let mut failed = 0;
                for i in 0..3 {
                    match c.try_run(&format!("LOGIN user{n}x{i} wrong")) {
                        Ok(r) if r.no() => failed += 1,
                        _ => break,
                    }
                }
                failed
            })
        })
        .collect();
    let attempts: usize = conns.into_iter().map(|t| t.join().unwrap()).sum();
    canary.finish("a login flood");
    assert_eq!(attempts, 120);
    // Every attempt is in the log for fail2ban...
    let ip = flooder.to_string();
    let logged = s
        .gateway
        .log()
        .lines()
        .filter(|l| l.contains("auth failed:") && l.contains(&format!("ip={ip} ")))
        .count();
    assert_eq!(logged, 120);
    // ...while the audit log has the first one, then the minute's count
    // (written at the latest when the daemon stops).
    s.gateway.stop();
    let out = s.gateway.cli(&["audit", "export"], None);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let events: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("auth.failed") && l.contains(&format!("ip={ip} ")))
        .collect();
    println!(
        "{attempts} failed logins from one address: {} audit events",
        events.len()
    );
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(events[1].contains("failures=119"), "{}", events[1]);
    let (ok, verify) = s.gateway.audit_verify();
    assert!(ok, "{verify}");
}

#[test]
fn forged_lead_fields_behind_a_bare_cr_or_in_a_part_are_renamed() {
    let s = setup("read-write");
    let forged = b"From: Mallory <mallory@evil.test>\r\nTo: sales@example.com\r\nSubject: hello\rX-Lead-Owner: mallory\r\nMessage-ID: <forged1@evil.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@y.test\r\nX-Lead-Owner: mallory\r\nx-lead-status: Won\r\nSubject: inner\r\n\r\ninner body\r\n--b1--\r\n";
    let mut d = Client::over_tcp(TcpStream::connect(("127.0.0.1", s.dovecot.imap_port)).unwrap());
    assert!(d.run(&format!("LOGIN {} {}", SALES.0, SALES.1)).ok());
    let r = d.append("INBOX", "", forged);
    assert!(r.ok(), "{}", r.text);
    let mut c = s.gateway.login(MARIA.0, MARIA.1);
    assert!(wait_exists(&mut c, "INBOX", 1));
    assert!(c.run("SELECT INBOX").ok());
    for item in [
        "BODY.PEEK[]",
        "BODY.PEEK[HEADER]",
        "RFC822.HEADER",
        "BODY.PEEK[2]",
        "BODY.PEEK[2.HEADER]",
        "BODY.PEEK[2.HEADER.FIELDS (X-Lead-Owner X-Lead-Status)]",
        "BODY.PEEK[2.TEXT]",
    ] {
        let r = c.run(&format!("FETCH 1 ({item})"));
        assert!(r.ok(), "{item}: {}", r.text);
        let lower = r.text.to_ascii_lowercase();
        assert!(
            !lower.contains("x-lead-owner: mallory") && !lower.contains("x-lead-status: won"),
            "{item} serves a forged lead field: {}",
            r.text
        );
    }
    let r = c.run("FETCH 1 (BODY.PEEK[HEADER])");
    assert_eq!(
        r.text.matches("X-Lead-Owner:").count(),
        1,
        "only the stamp speaks: {}",
        r.text
    );
}

#[test]
fn the_admin_socket_serves_only_root_and_the_service_user() {
    use std::os::unix::{fs::PermissionsExt, process::CommandExt};
    let s = setup("read-only");
    let sock = s.gateway.dir.join("admin.sock");
    // Loosened by hand: every directory on the way and the socket itself.
    for p in [s.dir.path(), s.gateway.dir.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
    let script = format!(
        "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect({:?})\ntry:\n    s.sendall(b'{{\"request\":{{\"UserList\":null}}}}\\n')\nexcept BrokenPipeError:\n    pass\nprint(s.recv(65536).decode())\n",
        sock.display().to_string()
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run python3 as nobody");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("permission denied"),
        "nobody was served: {said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Root still is.
    let out = s.gateway.cli(&["user", "list"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
