//! Third-party clients against leadgate: Python's imaplib, mbsync (isync)
//! and curl, each doing what its users do.

mod common;

use std::{process::Command, time::Duration};

use common::*;

fn seeded() -> Setup {
    let s = Setup::new(GatewayOptions {
        listeners: vec!["plaintext", "starttls"],
        ..Default::default()
    });
    s.deliver_and_wait(
        "dana@northwind.test",
        &message(
            "Dana <dana@northwind.test>",
            "Quote request: 40 seats",
            "c1@northwind.test",
            "Please quote.",
        ),
        1,
    );
    s.deliver_and_wait(
        "raj@brightpath.test",
        &message(
            "Raj <raj@brightpath.test>",
            "Demo request",
            "c2@brightpath.test",
            "Demo next week?",
        ),
        2,
    );
    let mut probe = s.gateway.login(ALICE.0, ALICE.1);
    assert!(eventually(Duration::from_secs(10), || probe
        .run("STATUS INBOX (MESSAGES)")
        .text
        .contains("MESSAGES 2")));
    s
}

#[test]
fn python_imaplib_reads_flags_searches_and_appends() {
    let s = seeded();
    let addr = s.gateway.addr("plaintext");
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/imaplib_session.py"
        ))
        .args([
            addr.ip().to_string(),
            addr.port().to_string(),
            ALICE.0.into(),
            ALICE.1.into(),
        ])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "imaplib session failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["login"], "OK");
    assert_eq!(v["exists"], 2);
    let subjects: Vec<&str> = v["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert_eq!(subjects, ["Quote request: 40 seats", "Demo request"]);
    assert!(v["first_body"].as_str().unwrap().contains("Please quote."));
    assert_eq!(v["store"], "OK");
    assert_eq!(v["flagged"], serde_json::json!([1]));
    assert_eq!(v["from_dana"], serde_json::json!([1]));
    assert_eq!(v["append"], "OK");
    assert!(
        v["append_code"].as_str().unwrap().contains("APPENDUID"),
        "{}",
        v["append_code"]
    );
    assert!(v["drafts_status"].as_str().unwrap().contains("MESSAGES 1"));
    let folders = v["folders"].to_string();
    assert!(
        folders.contains("\\\\Drafts")
            && folders.contains("\\\\Sent")
            && folders.contains("\\\\Trash"),
        "{folders}"
    );
}

#[test]
fn mbsync_mirrors_the_inbox_and_pushes_flags_back() {
    let s = seeded();
    let dir = s.dir.path().join("mbsync");
    std::fs::create_dir_all(dir.join("mail")).unwrap();
    let cert = s.gateway.dir.join("cert.pem");
    let addr = s.gateway.addr("starttls");
    let rc = format!(
        "IMAPAccount leadgate\nHost 127.0.0.1\nPort {}\nUser {}\nPass {}\nSSLType STARTTLS\nCertificateFile {}\nAuthMechs LOGIN PLAIN\n\n\
         IMAPStore remote\nAccount leadgate\n\n\
         MaildirStore local\nPath {}/mail/\nInbox {}/mail/INBOX\n\n\
         Channel inbox\nFar :remote:INBOX\nNear :local:INBOX\nCreate Near\nSync All\nSyncState *\n",
        addr.port(),
        ALICE.0,
        ALICE.1,
        cert.display(),
        dir.display(),
        dir.display()
    );
    std::fs::write(dir.join("mbsyncrc"), rc).unwrap();
    let run = || mbsync(&dir.join("mbsyncrc"));
    run();
    let files: Vec<_> = std::fs::read_dir(dir.join("mail/INBOX/cur"))
        .unwrap()
        .chain(std::fs::read_dir(dir.join("mail/INBOX/new")).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "mbsync should mirror both messages");
    let texts: Vec<String> = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(texts.iter().any(|t| t.contains("Quote request: 40 seats")));

    // Flag one message locally; the next sync writes it through leadgate.
    let target = files
        .iter()
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains("Quote request")
        })
        .unwrap();
    let name = target.file_name().unwrap().to_string_lossy().to_string();
    let base = name.split(":2,").next().unwrap().to_owned();
    let flagged = dir.join("mail/INBOX/cur").join(format!("{base}:2,FS"));
    std::fs::rename(target, &flagged).unwrap();
    run();
    let mut direct = s.direct();
    direct.run("SELECT INBOX");
    let r = direct.run("UID SEARCH FLAGGED");
    assert!(
        r.contains("* SEARCH 1"),
        "flag from mbsync did not reach the upstream: {r}"
    );
}

#[test]
fn curl_lists_searches_and_fetches() {
    let s = seeded();
    let addr = s.gateway.addr("plaintext");
    let curl = |url: &str, extra: &[&str]| {
        let out = Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "20",
                "--user",
                &format!("{}:{}", ALICE.0, ALICE.1),
            ])
            .args(extra)
            .arg(url)
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "curl {url} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let base = format!("imap://{}:{}", addr.ip(), addr.port());
    let list = curl(&format!("{base}/"), &[]);
    assert!(list.contains("INBOX") && list.contains("Drafts"), "{list}");
    let search = curl(&format!("{base}/INBOX?SUBJECT%20demo"), &[]);
    assert!(search.contains("SEARCH 2"), "{search}");
    let body = curl(&format!("{base}/INBOX/;UID=1"), &[]);
    assert!(
        body.contains("Subject: Quote request: 40 seats") && body.contains("Please quote."),
        "{body}"
    );
}
