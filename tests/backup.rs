//! Live backup and restore (issue 16, first part): a backup taken while
//! clients read and act verifies on its own, and a restore brings back the
//! leads, owners, view UIDs and the audit head as they were.

mod common;

use std::time::Duration;

use common::*;

/// UIDs of Leads/Unassigned as alice sees them.
fn unassigned_uids(s: &Setup) -> (String, Vec<u32>) {
    let mut c = s.gateway.login(ALICE.0, ALICE.1);
    let r = c.run("SELECT \"Leads/Unassigned\"");
    assert!(r.ok(), "{}", r.text);
    let validity = r
        .text
        .split("UIDVALIDITY ")
        .nth(1)
        .and_then(|t| t.split(']').next())
        .unwrap_or_default()
        .to_owned();
    (validity, c.run("UID SEARCH ALL").search())
}

#[test]
fn a_live_backup_verifies_and_a_restore_brings_the_store_back() {
    let mut s = Setup::new(GatewayOptions {
        extra: "[leads]\nshared_address = \"sales@example.com\"\n".into(),
        ..Default::default()
    });
    for i in 0..6 {
        s.deliver(
            "customer@customer.test",
            &message(
                "Cora Customer <customer@customer.test>",
                &format!("Question number {i}"),
                &format!("q{i}@customer.test"),
                "Please tell me more.",
            ),
        );
    }
    assert!(
        eventually(Duration::from_secs(30), || s.gateway.leads().len() == 6),
        "{:?}",
        s.gateway.leads()
    );
    let out = s.gateway.cli(
        &["lead", "unassign", "1", "--note", "back to the pool"],
        None,
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let owners = |s: &Setup| -> Vec<serde_json::Value> {
        s.gateway
            .leads()
            .iter()
            .map(|l| l["owner"].clone())
            .collect()
    };
    let at_backup = owners(&s);
    let views_at_backup = unassigned_uids(&s);
    assert_eq!(views_at_backup.1.len(), 1, "{views_at_backup:?}");

    // A canary reads all along; a second client acts during the backup.
    let canary = Canary::start(&s);
    let backup = s.dir.path().join("nightly.redb");
    let out = s.gateway.cli(&["backup", backup.to_str().unwrap()], None);
    let said = output_text(&out);
    assert!(out.status.success(), "backup: {said}");
    let head = said
        .split("hash ")
        .nth(1)
        .map(|h| h.trim().to_owned())
        .expect("the backup names the audit head");
    let out = s.gateway.cli(&["lead", "assign", "1", "bob"], None);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(canary.finish() > 0);

    // The backup is a store of its own: it verifies without any config,
    // and it holds the head it printed.
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_leadgate"))
        .args([
            "--config",
            "/nonexistent.toml",
            "audit",
            "verify",
            "--store",
        ])
        .arg(&backup)
        .output()
        .unwrap();
    assert!(
        verify.status.success() && output_text(&verify).contains("audit log ok"),
        "{}",
        output_text(&verify)
    );
    let export = std::process::Command::new(env!("CARGO_BIN_EXE_leadgate"))
        .args(["audit", "export", "--store"])
        .arg(&backup)
        .output()
        .unwrap();
    let last = String::from_utf8_lossy(&export.stdout)
        .lines()
        .last()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .expect("events in the backup");
    assert_eq!(last["hash"].as_str(), Some(head.as_str()));

    // A restore refuses while the daemon runs and changes nothing.
    let out = s.gateway.cli(&["restore", backup.to_str().unwrap()], None);
    assert!(!out.status.success(), "restore beside a running daemon");
    assert_eq!(s.gateway.leads()[0]["owner"], "bob");

    s.gateway.stop();
    let out = s.gateway.cli(&["restore", backup.to_str().unwrap()], None);
    assert!(out.status.success(), "restore: {}", output_text(&out));
    assert!(output_text(&out).contains(&head), "{}", output_text(&out));
    assert!(s.gateway.dir.join("leadgate.redb.bak").exists());
    s.gateway.start();
    assert_eq!(owners(&s), at_backup, "the owners at backup time");
    assert!(at_backup[0].is_null(), "the later assignment is gone");
    let (ok, said) = s.gateway.audit_verify();
    assert!(ok, "{said}");
    // The view kept its UIDVALIDITY, and lead 1 is back in Unassigned
    // under the UID it had at backup time.
    assert_eq!(unassigned_uids(&s), views_at_backup);

    // A damaged backup is refused before anything is touched.
    let broken = s.dir.path().join("broken.redb");
    std::fs::write(&broken, b"not a store").unwrap();
    s.gateway.stop();
    let out = s.gateway.cli(&["restore", broken.to_str().unwrap()], None);
    assert!(!out.status.success());
    s.gateway.start();
    assert_eq!(s.gateway.leads().len(), 6);
}
