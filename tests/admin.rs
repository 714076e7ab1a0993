//! Administration of a live daemon: the CLI talks to `leadgate serve` over
//! its admin socket (user changes, app passwords, lead changes), falls
//! back to the store itself when the daemon is stopped, and prints the
//! managers' review queues for the live data.
//!
//! Tests marked "needs the admin socket" only pass once `serve` binds
//! `[admin] socket` and runs `admin::socket::serve`; `admin_socket` below
//! says so plainly when it is missing.

mod common;

use std::{path::PathBuf, time::Duration};

use common::*;
use serde_json::Value;

/// A daemon whose admin socket lives in `sock_dir` (kept alive by the
/// caller: the setup's own directory is not known before it starts).
fn setup(sock_dir: &tempfile::TempDir) -> (Setup, PathBuf) {
    let socket = sock_dir.path().join("admin.sock");
    let s = Setup::new(GatewayOptions {
        extra: format!(
            "[leads]\nshared_address = \"sales@example.com\"\n\n[admin]\nsocket = \"{}\"\n",
            socket.display()
        ),
        ..Default::default()
    });
    (s, socket)
}

/// Checks the daemon serves its admin socket.
fn admin_socket(socket: &std::path::Path) {
    assert!(
        eventually(Duration::from_secs(5), || socket.exists()),
        "the daemon serves no admin socket at {}: serve.rs must bind [admin] socket and \
         spawn leadgate::admin::socket::serve",
        socket.display()
    );
}

fn cli_ok(s: &Setup, args: &[&str], stdin: Option<&str>) -> String {
    let out = s.gateway.cli(args, stdin);
    assert!(
        out.status.success(),
        "leadgate {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn audit(s: &Setup, args: &[&str]) -> Vec<Value> {
    let mut argv = vec!["audit", "export"];
    argv.extend_from_slice(args);
    json_lines(&cli_ok(s, &argv, None))
}

fn leads(s: &Setup, args: &[&str]) -> Vec<Value> {
    let mut argv = vec!["lead", "list", "--json"];
    argv.extend_from_slice(args);
    json_lines(&cli_ok(s, &argv, None))
}

/// Delivers quote requests from `n` companies and waits for their leads.
fn deliver_leads(s: &Setup, n: usize) -> Vec<Value> {
    for i in 0..n {
        s.deliver(
            &format!("buyer{i}@company{i}.test"),
            &message(
                &format!("Buyer {i} <buyer{i}@company{i}.test>"),
                &format!("Quote request {i}: 40 seats"),
                &format!("q{i}@company{i}.test"),
                "Could you send a quote for 40 seats?",
            ),
        );
    }
    let mut all = Vec::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            all = leads(s, &["--all"]);
            all.len() >= n
        }),
        "expected {n} leads, have {all:?}"
    );
    all
}

/// The secret printed by `app-password add` (its last line).
fn secret_of(output: &str) -> String {
    output.lines().last().unwrap_or_default().trim().to_owned()
}

// Needs the admin socket.
#[test]
fn user_add_on_a_running_daemon_works_and_the_new_user_can_log_in() {
    let sock = tempfile::tempdir().unwrap();
    let (s, socket) = setup(&sock);
    admin_socket(&socket);
    let out = cli_ok(
        &s,
        &[
            "user",
            "add",
            "carol",
            "--role",
            "rep",
            "--email",
            "carol@example.com",
        ],
        Some("carol-password\n"),
    );
    assert_eq!(out, "user carol added (rep)\n");
    let mut c = s.gateway.login("carol", "carol-password");
    assert!(c.run("LOGOUT").ok());
    let added = audit(&s, &["--action", "user.add"]);
    let carol = added
        .iter()
        .find(|e| e["reason"] == "user carol")
        .expect("user.add of carol audited");
    assert!(
        carol["actor"].as_str().unwrap().starts_with("cli:"),
        "{carol}"
    );
    // The daemon's own user list is the source: it shows carol too.
    assert!(cli_ok(&s, &["user", "list"], None).contains("carol"));
}

// Needs the admin socket.
#[test]
fn disabling_a_user_ends_her_idle_session_and_returns_her_leads_to_unassigned() {
    let sock = tempfile::tempdir().unwrap();
    let (s, socket) = setup(&sock);
    admin_socket(&socket);
    let all = deliver_leads(&s, 1);
    assert_eq!(all[0]["owner"], "alice", "round-robin starts with alice");
    let id = all[0]["id"].as_u64().unwrap();

    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(alice.run("SELECT INBOX").ok());
    let _tag = alice.idle();
    let out = cli_ok(&s, &["user", "disable", "alice"], None);
    assert!(out.contains("1 open session ended"), "{out}");
    assert!(
        out.contains(&format!("1 active lead back in Unassigned: {id}")),
        "{out}"
    );
    let bye = alice.wait_for(Duration::from_secs(1), |l| l.starts_with("* BYE"));
    assert!(bye.is_some(), "no BYE within a second of the disable");

    let unassigned = leads(&s, &["--owner", "-"]);
    assert!(
        unassigned.iter().any(|l| l["id"].as_u64() == Some(id)),
        "{unassigned:?}"
    );
    let events = audit(&s, &["--lead", &id.to_string()]);
    let unassign = events
        .iter()
        .find(|e| e["action"] == "lead.unassign")
        .expect("the move is audited");
    assert!(unassign["actor"].as_str().unwrap().starts_with("cli:"));
    let disabled = audit(&s, &["--action", "user.update"]);
    assert!(disabled
        .iter()
        .any(|e| e["reason"] == "user alice" && e["changes"].to_string().contains("disabled")));

    let mut again = s.gateway.client();
    let r = again.run(&format!("LOGIN {} {}", ALICE.0, ALICE.1));
    assert!(r.no(), "a disabled user cannot log in: {}", r.text);
}

/// Reads one SMTP reply (all its lines); "" when the server closed.
fn smtp_reply(r: &mut impl std::io::BufRead) -> String {
    let mut out = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return out;
        }
        out.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return out;
        }
    }
}

// Needs the admin socket.
#[test]
fn disabling_a_user_ends_his_smtp_session_too() {
    use base64::Engine;
    use std::io::{BufReader, Write};

    let s = Setup::new(GatewayOptions {
        extra: "[[smtp.listener]]\naddr = \"127.0.0.1:0\"\ntls = \"plaintext\"\n\n\
                [smtp.relay]\nhost = \"127.0.0.1\"\nport = {POSTFIX_PORT}\ntls = \"none\"\n"
            .into(),
        ..Default::default()
    });
    let tcp = std::net::TcpStream::connect(s.gateway.addr("smtp-plaintext")).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = tcp.try_clone().unwrap();
    let mut r = BufReader::new(tcp);
    assert!(smtp_reply(&mut r).starts_with("220 "));
    w.write_all(b"EHLO laptop.example.com\r\n").unwrap();
    assert!(smtp_reply(&mut r).starts_with("250"));
    let token = base64::engine::general_purpose::STANDARD.encode(b"\0bob\0bob-password");
    w.write_all(format!("AUTH PLAIN {token}\r\n").as_bytes())
        .unwrap();
    assert!(smtp_reply(&mut r).starts_with("235 "));
    w.write_all(b"MAIL FROM:<bob@example.com>\r\n").unwrap();
    assert!(smtp_reply(&mut r).starts_with("250 "));

    let out = cli_ok(&s, &["user", "disable", "bob"], None);
    assert!(out.contains("1 open session ended"), "{out}");
    let bye = smtp_reply(&mut r);
    assert!(bye.starts_with("421 4.7.0"), "{bye:?}");
    assert_eq!(
        smtp_reply(&mut r),
        "",
        "the connection is closed after the 421"
    );
}

// Needs the admin socket.
#[test]
fn an_app_password_logs_in_is_audited_and_revoking_it_ends_its_session() {
    let sock = tempfile::tempdir().unwrap();
    let (s, socket) = setup(&sock);
    admin_socket(&socket);
    let out = cli_ok(
        &s,
        &["user", "app-password", "add", "alice", "iphone"],
        None,
    );
    let secret = secret_of(&out);
    assert_eq!(secret.len(), 24, "{out}");

    let mut phone = s.gateway.login(ALICE.0, &secret);
    assert!(phone.run("SELECT INBOX").ok());
    let logins = audit(&s, &["--action", "auth.login", "--actor", "alice"]);
    assert!(
        logins.iter().any(|e| e["reason"]
            .as_str()
            .unwrap()
            .ends_with("via=app-password:iphone")),
        "{logins:?}"
    );
    let listed = cli_ok(&s, &["app-password", "list", "alice"], None);
    assert!(listed.contains("iphone"), "{listed}");
    assert!(!listed.contains(&secret) && !listed.contains("argon2"));

    let _tag = phone.idle();
    let out = cli_ok(&s, &["app-password", "revoke", "alice", "iphone"], None);
    assert!(out.contains("revoked"), "{out}");
    assert!(
        phone
            .wait_for(Duration::from_secs(1), |l| l.starts_with("* BYE"))
            .is_some(),
        "the session opened with the revoked app password ended"
    );
    let mut c = s.gateway.client();
    assert!(c.run(&format!("LOGIN alice {secret}")).no());
    // The main password is untouched.
    let mut c = s.gateway.login(ALICE.0, ALICE.1);
    assert!(c.run("LOGOUT").ok());
    let revoked = audit(&s, &["--action", "user.app_password.revoke"]);
    assert_eq!(revoked.len(), 1, "{revoked:?}");
}

// Needs the admin socket.
#[test]
fn lead_commands_on_a_running_daemon_assign_hand_off_and_close() {
    let sock = tempfile::tempdir().unwrap();
    let (s, socket) = setup(&sock);
    admin_socket(&socket);
    let all = deliver_leads(&s, 1);
    let id = all[0]["id"].as_u64().unwrap().to_string();
    assert_eq!(
        cli_ok(&s, &["lead", "assign", &id, "bob"], None),
        format!("lead {id} assigned to bob\n")
    );
    cli_ok(
        &s,
        &[
            "lead",
            "handoff",
            &id,
            "maria",
            "--note",
            "CFO wants a call",
        ],
        None,
    );
    let out = s.gateway.cli(&["lead", "assign", &id, "mallory"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mallory"));
    cli_ok(&s, &["lead", "close", &id, "won"], None);
    let shown = cli_ok(&s, &["lead", "show", &id], None);
    assert!(shown.contains("CFO wants a call"), "{shown}");
    let actions: Vec<String> = audit(&s, &["--lead", &id])
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        ["lead.create", "lead.assign", "lead.handoff", "lead.close"]
    );
}

// Works with or without the admin socket (read-only beside the daemon).
#[test]
fn review_prints_the_six_queues_for_the_live_data() {
    let sock = tempfile::tempdir().unwrap();
    let (s, _socket) = setup(&sock);
    deliver_leads(&s, 2);
    let out = cli_ok(&s, &["review"], None);
    for queue in [
        "New and unassigned",
        "Waiting first response",
        "Follow-ups due today",
        "Overdue",
        "Blocked (needs internal input)",
        "High value idle",
    ] {
        assert!(out.contains(queue), "{queue} missing:\n{out}");
    }
    let waiting = out
        .lines()
        .find(|l| l.trim_start().starts_with("Waiting first response"))
        .unwrap();
    assert!(waiting.trim_end().ends_with(" 2"), "{out}");
    assert!(out.contains("buyer0@company0.test"), "{out}");
    assert!(out.contains("Quote request 1: 40 seats"), "{out}");
}

// Works without the admin socket: the daemon is stopped.
#[test]
fn with_the_daemon_stopped_the_cli_changes_the_store_itself() {
    let sock = tempfile::tempdir().unwrap();
    let (mut s, _socket) = setup(&sock);
    s.gateway.stop();
    let out = cli_ok(&s, &["app-password", "add", "bob", "laptop"], None);
    let secret = secret_of(&out);
    cli_ok(&s, &["user", "disable", "maria"], None);
    s.gateway.start();
    let mut c = s.gateway.login(BOB.0, &secret);
    assert!(c.run("LOGOUT").ok());
    let mut c = s.gateway.client();
    assert!(c.run(&format!("LOGIN {} {}", MARIA.0, MARIA.1)).no());
    let logins = audit(&s, &["--action", "auth.login", "--actor", "bob"]);
    assert!(logins.iter().any(|e| e["reason"]
        .as_str()
        .unwrap()
        .ends_with("via=app-password:laptop")));
}

/// `leadgate client-config`: setup files for a real user of a running
/// gateway, with the ports of its listeners; Python's plistlib and
/// xml.etree read them as the clients' parsers would.
#[test]
fn client_config_writes_setup_files_with_the_listeners_ports() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (smtp_port, imap_port) = (free(), free());
    let s = Setup::new(GatewayOptions {
        extra: format!(
            "[[imap.listener]]\naddr = \"127.0.0.1:{imap_port}\"\ntls = \"plaintext\"\n\n\
             [[smtp.listener]]\naddr = \"127.0.0.1:{smtp_port}\"\ntls = \"plaintext\"\n\n\
             [smtp.relay]\nhost = \"127.0.0.1\"\nport = {{POSTFIX_PORT}}\ntls = \"none\"\n\n\
             [leads]\nshared_address = \"sales@example.com\"\n"
        ),
        ..Default::default()
    });
    let run = |args: &[&str]| {
        let out = s.gateway.cli(args, None);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, xml, err) = run(&[
        "client-config",
        "alice",
        "--format",
        "thunderbird",
        "--host",
        "mail.example.com",
    ]);
    assert!(ok, "{err}");
    assert!(xml.contains(&format!("<port>{smtp_port}</port>")), "{xml}");
    assert!(xml.contains(&format!("<port>{imap_port}</port>")), "{xml}");
    // The test's own listener on port 0 cannot be told to a client.
    assert!(
        xml.matches("<port>").count() == 2 && err.contains("left out (port 0"),
        "{xml}{err}"
    );
    assert!(xml.contains("<username>alice</username>"), "{xml}");
    assert!(
        xml.contains("<hostname>mail.example.com</hostname>"),
        "{xml}"
    );
    for (format, check) in [
        ("thunderbird", "import sys, xml.etree.ElementTree as E; r = E.fromstring(sys.stdin.read()); print(r.find('emailProvider/outgoingServer/port').text)"),
        ("outlook", "import sys, xml.etree.ElementTree as E; r = E.fromstring(sys.stdin.read()); print([p.text for p in r.iter() if p.tag.endswith('Port')][-1])"),
        ("apple", "import sys, plistlib; p = plistlib.loads(sys.stdin.buffer.read()); print(p['PayloadContent'][0]['OutgoingMailServerPortNumber'])"),
    ] {
        let (ok, text, err) = run(&["client-config", "alice", "--format", format]);
        assert!(ok, "{format}: {err}");
        let mut py = std::process::Command::new("python3")
            .args(["-c", check])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        py.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = py.wait_with_output().unwrap();
        assert!(out.status.success(), "{format} does not parse: {text}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            smtp_port.to_string(),
            "{format}"
        );
    }
    let (ok, _, err) = run(&["client-config", "nobody", "--format", "text"]);
    assert!(!ok && err.contains("no user \"nobody\""), "{err}");
    let (ok, tags, _) = run(&["client-config", "alice", "--format", "thunderbird-tags"]);
    assert!(
        ok && tags.contains("mailnews.tags.$lead_mine.tag"),
        "{tags}"
    );
}
