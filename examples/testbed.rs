//! `cargo run --example testbed -- up --dir DIR` starts a real upstream for
//! the demo (and for benchmarks run by hand): Dovecot and Postfix as
//! daemons under DIR, the shared mailbox seeded with sample sales threads
//! delivered through Postfix, and a leadgate config pointing at it.
//! `down --dir DIR` stops them. Same setup code as the integration tests.

#[path = "../tests/common/seed.rs"]
mod seed;
#[path = "../tests/common/testbed.rs"]
mod testbed;

use std::{path::PathBuf, time::Duration};

const SHARED_PASSWORD: &str = "demo-shared-mailbox-secret";

fn usage() -> ! {
    eprintln!(
        "usage: testbed up --dir DIR [--imap-port N] [--imaps-port N] | testbed down --dir DIR"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verb = args.first().map(String::as_str).unwrap_or_else(|| usage());
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let dir = PathBuf::from(flag("--dir").unwrap_or_else(|| usage()));
    match verb {
        "up" => up(
            &dir,
            flag("--imap-port"),
            flag("--imaps-port"),
            flag("--smtp-port"),
        ),
        "down" => down(&dir),
        _ => usage(),
    }
}

fn down(dir: &std::path::Path) {
    if !dir.join("dovecot/dovecot.conf").exists() {
        return;
    }
    let _ = std::process::Command::new("doveadm")
        .arg("-c")
        .arg(dir.join("dovecot/dovecot.conf"))
        .arg("stop")
        .status();
    let _ = std::process::Command::new("postfix")
        .arg("-c")
        .arg(dir.join("postfix/etc"))
        .arg("stop")
        .status();
}

fn up(
    dir: &std::path::Path,
    imap_port: Option<String>,
    imaps_port: Option<String>,
    smtp_port: Option<String>,
) {
    std::fs::create_dir_all(dir).expect("create demo dir");
    let dir = dir.canonicalize().expect("demo dir");
    down(&dir);
    // The shared mailbox, and each team member's own mailbox (where the
    // manager's daily digest lands).
    let accounts = [
        ("sales", SHARED_PASSWORD),
        ("alice", "alice-mailbox-pw"),
        ("bob", "bob-mailbox-pw"),
        ("maria", "maria-mailbox-pw"),
    ];
    let dovecot = testbed::Dovecot::start(&dir, &accounts, None, true);
    let postfix = testbed::Postfix::start(&dir, dovecot.lmtp_port, &["example.com"], true);

    let mut imap = testbed::RawImap::login(dovecot.imap_port, "sales", SHARED_PASSWORD);
    let existing = imap.run("STATUS INBOX (MESSAGES)");
    if existing.contains("(MESSAGES 0)") {
        // One message at a time, each in its own second: leadgate files
        // messages in arrival order (INTERNALDATE), so a thread's reply
        // must arrive after the enquiry and before the customer's answer.
        let mut inbound = 0;
        let wait_for = |imap: &mut testbed::RawImap, n: usize| {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !imap
                .run("STATUS INBOX (MESSAGES)")
                .contains(&format!("(MESSAGES {n})"))
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        let mut previous_was_thread = false;
        for step in seed::steps() {
            match step {
                seed::SeedStep::Inbound { from, message } => {
                    let is_answer = message.windows(12).any(|w| w == b"In-Reply-To:");
                    if is_answer {
                        std::thread::sleep(Duration::from_millis(1100));
                    }
                    testbed::smtp_send(postfix.smtp_port, from, &[seed::SHARED], &message)
                        .expect("deliver seed mail");
                    inbound += 1;
                    wait_for(&mut imap, inbound);
                    previous_was_thread = false;
                }
                seed::SeedStep::Sent { message } => {
                    if !previous_was_thread {
                        std::thread::sleep(Duration::from_millis(1100));
                    }
                    let r = imap.append("Sent", "\\Seen", &message);
                    assert!(r.contains(" OK "), "append to Sent failed: {r}");
                    previous_was_thread = true;
                }
            }
        }
        // A few enquiries that have waited for days: the Overdue queue.
        for (date, message) in seed::waiting_since(chrono::Utc::now()) {
            let r = imap.append_at("INBOX", "", Some(&date), &message);
            assert!(r.contains(" OK "), "append to INBOX failed: {r}");
        }
    }

    let imap_port = imap_port.unwrap_or_else(|| "1143".into());
    let imaps_port = imaps_port.unwrap_or_else(|| "1993".into());
    let smtp_port = smtp_port.unwrap_or_else(|| "1587".into());
    let d = dir.display();
    std::fs::write(
        dir.join("upstream-password"),
        format!("{SHARED_PASSWORD}\n"),
    )
    .expect("write password");
    let config = format!(
        r#"# Written by scripts/demo: leadgate in front of the demo Dovecot.
[server]
hostname = "leadgate.demo"

[[imap.listener]]
addr = "127.0.0.1:{imap_port}"
tls = "starttls"

[[imap.listener]]
addr = "127.0.0.1:{imaps_port}"
tls = "implicit"

[tls]
cert = "{d}/cert.pem"
key = "{d}/key.pem"

[upstream.imap]
host = "127.0.0.1"
port = {}
tls = "none"
username = "sales"
password_file = "{d}/upstream-password"

[store]
path = "{d}/leadgate.redb"

[[smtp.listener]]
addr = "127.0.0.1:{smtp_port}"
tls = "starttls"

[smtp]
notes_address = "notes@leadgate.demo"

[smtp.relay]
host = "127.0.0.1"
port = {postfix_port}
tls = "none"

[leads]
shared_address = "sales@example.com"

[leads.follow_up]
escalate_to = "maria"

[[leads.assignment]]
rule = "existing-customer"
accounts = {{ "acme-corp.test" = "alice" }}

[[leads.assignment]]
rule = "round-robin"

[metrics]
listen = "127.0.0.1:19187"

[admin]
socket = "{d}/admin.sock"

# The managers' review, mailed to maria@example.com (her own mailbox on
# the demo Dovecot) at 08:30 on business days.
[digest]
enabled = true
time = "08:30"
"#,
        dovecot.imap_port,
        postfix_port = postfix.smtp_port,
    );
    std::fs::write(dir.join("leadgate.toml"), config).expect("write leadgate.toml");
    println!("DOVECOT_IMAP_PORT={}", dovecot.imap_port);
    println!("POSTFIX_SMTP_PORT={}", postfix.smtp_port);
    println!("LEADGATE_SMTP_PORT={smtp_port}");
    println!("LEADGATE_CONFIG={d}/leadgate.toml");
}
