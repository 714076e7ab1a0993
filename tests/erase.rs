//! Erasing a contact (issue 16): with the daemon running and a client
//! reading all along, `contact erase` leaves no trace of the address in
//! `audit export`, `lead list`, `lead show` or the bytes of the store file;
//! the audit chain still verifies and still names an edit; the mail stays
//! on the upstream.

mod common;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use common::*;
use leadgate::store::{
    audit::{AuditEvent, HEAD_KEY},
    schema::{AUDIT, META},
    Store, StoreError,
};
use redb::ReadableTable;

const CAROL: &str = "carol@zebra.test";

fn store_path(s: &Setup) -> PathBuf {
    s.gateway.dir.join("leadgate.redb")
}

/// Everything an admin would look at, lower case: `audit export`,
/// `lead list --all --json` and `lead show` of every lead.
fn everything_shown(s: &Setup) -> String {
    let mut all = String::new();
    for args in [
        vec!["audit", "export"],
        vec!["lead", "list", "--all", "--json"],
    ] {
        let out = s.gateway.cli(&args, None);
        assert!(out.status.success(), "{args:?}: {}", output_text(&out));
        all.push_str(&output_text(&out));
    }
    for lead in s.gateway.leads() {
        let id = lead["id"].to_string();
        let out = s.gateway.cli(&["lead", "show", &id], None);
        assert!(
            out.status.success(),
            "lead show {id}: {}",
            output_text(&out)
        );
        all.push_str(&output_text(&out));
    }
    all.to_lowercase()
}

fn file_holds(path: &Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap().to_ascii_lowercase();
    memchr::memmem::find(&bytes, needle.to_ascii_lowercase().as_bytes()).is_some()
}

fn events_of(path: &Path) -> Vec<AuditEvent> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leadgate"))
        .args(["audit", "export", "--store"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A gateway with three contacts' mail filed as leads: Carol (two
/// messages), Dan at a subdomain of her company, Erin elsewhere.
fn setup() -> Setup {
    let s = Setup::new(GatewayOptions {
        extra: "[leads]\nshared_address = \"sales@example.com\"\n".into(),
        ..Default::default()
    });
    let mail = [
        (CAROL, "Carol Zebra", "Pricing for Zebra Works", "z1"),
        (CAROL, "Carol Zebra", "Re: Pricing for Zebra Works", "z2"),
        ("dan@eu.zebra.test", "Dan Okapi", "Demo request Okapi", "o1"),
        ("erin@other.test", "Erin Other", "Quote please", "e1"),
    ];
    for (from, name, subject, id) in mail {
        let mut msg = message(
            &format!("{name} <{from}>"),
            subject,
            &format!("{id}@mail.test"),
            "We need 40 seats. Call me at +1 555 0100.",
        );
        if id == "z2" {
            let text = String::from_utf8(msg).unwrap().replace(
                "MIME-Version",
                "In-Reply-To: <z1@mail.test>\r\nMIME-Version",
            );
            msg = text.into_bytes();
        }
        s.deliver(from, &msg);
    }
    assert!(
        eventually(Duration::from_secs(30), || s.gateway.leads().len() == 3),
        "{:?}",
        s.gateway.leads()
    );
    s
}

#[test]
fn erase_with_a_live_daemon_leaves_no_trace_and_the_chain_still_names_an_edit() {
    let mut s = setup();
    let store = store_path(&s);
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    let r = alice.run("SELECT INBOX");
    assert!(r.ok(), "{}", r.text);
    assert_eq!(alice.run("UID SEARCH ALL").search().len(), 4);
    assert!(everything_shown(&s).contains(CAROL));
    assert!(file_holds(&store, CAROL));

    // A canary reads all along.
    let canary = Canary::start(&s);
    canary.wait_more(3);
    let backup = s.dir.path().join("before-erase.redb");
    let out = s.gateway.cli(&["backup", backup.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = s
        .gateway
        .cli(&["contact", "erase", "Carol@Zebra.test"], None);
    let said = output_text(&out);
    assert!(out.status.success(), "erase: {said}");
    assert!(said.contains("1 lead of the contact"), "{said}");
    assert!(said.contains("2 indexed messages"), "{said}");
    assert!(said.contains("upstream"), "{said}");
    canary.wait_more(3);
    canary.finish();

    // No trace where an admin looks, nor in the file's bytes.
    let shown = everything_shown(&s);
    for gone in [CAROL, "carol zebra", "pricing for zebra"] {
        assert!(!shown.contains(gone), "{gone} is still shown");
        assert!(
            !file_holds(&store, gone),
            "{gone} is still in the store file"
        );
    }
    assert!(shown.contains("dan@eu.zebra.test") && shown.contains("erin@other.test"));
    assert!(shown.contains("contact.erase"));
    let (ok, said) = s.gateway.audit_verify();
    assert!(ok, "{said}");

    // A backup made before still holds her; erasing in it (no config
    // needed) takes her out there too.
    assert!(file_holds(&backup, CAROL));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leadgate"))
        .args([
            "--config",
            "/nonexistent.toml",
            "contact",
            "erase",
            CAROL,
            "--store",
        ])
        .arg(&backup)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(!file_holds(&backup, CAROL));
    assert!(verify_store_file(&backup).0);

    // Her messages left leadgate's view of INBOX (a selected client hears
    // the expunges), and they are still on the upstream.
    let r = alice.run("NOOP");
    assert!(r.ok(), "{}", r.text);
    assert_eq!(alice.run("UID SEARCH ALL").search().len(), 2);
    let r = alice.run("FETCH 1:* (BODY.PEEK[HEADER])");
    assert!(!r.text.to_lowercase().contains(CAROL), "{}", r.text);
    assert_eq!(s.upstream_count(), 4, "the upstream mail is untouched");

    // A restart resyncs with the upstream and keeps her out.
    s.gateway.stop();
    s.gateway.start();
    let mut alice = s.gateway.login(ALICE.0, ALICE.1);
    assert!(alice.run("SELECT INBOX").ok());
    assert_eq!(alice.run("UID SEARCH ALL").search().len(), 2);
    assert!(!file_holds(&store, CAROL));
    assert_eq!(s.gateway.leads().len(), 3, "no new lead from the old mail");

    // Editing any other event in a copy is still named by verify.
    s.gateway.stop();
    let copy = s.dir.path().join("copy.redb");
    std::fs::copy(&store, &copy).unwrap();
    let events = events_of(&copy);
    let erased: Vec<u64> = events.iter().filter(|e| e.erased).map(|e| e.seq).collect();
    assert!(!erased.is_empty());
    let kept = events
        .iter()
        .find(|e| !e.erased && e.reason.to_lowercase().contains("okapi"))
        .map(|e| e.seq)
        .or_else(|| events.iter().find(|e| !e.erased).map(|e| e.seq))
        .unwrap();
    for (seq, edit) in [
        (kept, "reason"),
        (erased[0], "actor"),
        (erased[0], "personal data put back"),
    ] {
        std::fs::copy(&store, &copy).unwrap();
        edit_event(&copy, seq, move |ev| match edit {
            "reason" => ev.reason.push_str(" (edited)"),
            "actor" => ev.actor = "mallory".into(),
            _ => ev.reason = CAROL.into(),
        });
        let (ok, said) = verify_store_file(&copy);
        assert!(!ok, "{edit} of seq {seq}: {said}");
        assert!(
            said.contains(&format!("broken at seq {seq}")),
            "{edit}: {said}"
        );
    }
    std::fs::copy(&store, &copy).unwrap();
    assert!(verify_store_file(&copy).0);
}

/// Rewrites one stored event of a stopped store, bypassing the chain.
fn edit_event(path: &Path, seq: u64, edit: impl Fn(&mut AuditEvent) + Send + 'static) {
    let store = Store::open(path).unwrap();
    store
        .raw_write_blocking(move |txn| {
            let mut t = txn.open_table(AUDIT)?;
            let bytes = t.get(seq)?.unwrap().value().to_vec();
            let mut ev: AuditEvent = serde_json::from_slice(&bytes).unwrap();
            edit(&mut ev);
            t.insert(seq, serde_json::to_vec(&ev).unwrap().as_slice())?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
    store.close();
}

#[test]
fn erasing_a_domain_takes_its_subdomains_and_nothing_else() {
    let s = setup();
    let out = s
        .gateway
        .cli(&["contact", "erase", "--domain", "zebra.test"], None);
    let said = output_text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("2 leads of the contact"), "{said}");
    let shown = everything_shown(&s);
    for gone in ["zebra.test", "okapi", "carol zebra"] {
        assert!(!shown.contains(gone), "{gone} is still shown");
        assert!(!file_holds(&store_path(&s), gone), "{gone} in the file");
    }
    assert!(shown.contains("erin@other.test"));
    assert!(s.gateway.audit_verify().0);
}

#[test]
fn erase_input_is_checked_and_bad_input_changes_nothing() {
    let s = setup();
    let before = everything_shown(&s);
    let huge = format!("{}@zebra.test", "c".repeat(100_000));
    for (args, says) in [
        (vec!["contact", "erase", ""], "give the address"),
        (vec!["contact", "erase", "carol"], "no @"),
        (
            vec!["contact", "erase", "carol@zebra..test"],
            "domain label",
        ),
        (vec!["contact", "erase", huge.as_str()], "longer than 254"),
        (vec!["contact", "erase", "--domain", "test"], "top-level"),
        (vec!["contact", "erase", "--domain", CAROL], "holds an @"),
    ] {
        let out = s.gateway.cli(&args, None);
        let said = output_text(&out);
        assert!(!out.status.success(), "{args:?}");
        assert!(said.contains(says), "{args:?}: {said}");
        let line = said.lines().find(|l| l.contains(says)).unwrap_or_default();
        assert!(line.len() < 400, "the error stays short: {}", line.len());
        assert!(!said.contains("panicked"), "{said}");
    }
    let out = s.gateway.cli(&["contact", "erase"], None);
    assert!(!out.status.success());
    assert_eq!(everything_shown(&s), before, "nothing changed");
}

#[test]
fn erase_refuses_when_a_version_one_event_mentions_the_address() {
    let mut s = setup();
    s.gateway.stop();
    let store = store_path(&s);
    // Turn the last event into a version 1 event naming Carol, as an
    // older leadgate wrote them (chain and head kept valid).
    let last = events_of(&store).pop().unwrap();
    let seq = last.seq;
    {
        let db = Store::open(&store).unwrap();
        db.raw_write_blocking(move |txn| {
            let mut ev = last.clone();
            ev.v = 1;
            ev.pd = None;
            ev.reason = format!("old note about {CAROL}");
            ev.hash = ev.computed_hash().unwrap();
            txn.open_table(AUDIT)?
                .insert(seq, serde_json::to_vec(&ev).unwrap().as_slice())?;
            let mut head = seq.to_le_bytes().to_vec();
            head.extend(hex::decode(&ev.hash).unwrap());
            txn.open_table(META)?.insert(HEAD_KEY, head.as_slice())?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
        db.close();
    }
    assert!(verify_store_file(&store).0);
    s.gateway.start();
    let before = everything_shown(&s);
    let out = s.gateway.cli(&["contact", "erase", CAROL], None);
    let said = output_text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("version 2"), "{said}");
    assert!(said.contains(&format!("seq {seq}")), "{said}");
    assert!(said.contains("audit compact"), "says what to do: {said}");
    assert_eq!(everything_shown(&s), before, "nothing changed");

    // What the refusal says to do: compact the old events away (with an
    // export kept off the store), then erase.
    let year_on = (chrono::Utc::now() + chrono::Duration::days(365)).to_rfc3339();
    let archive = s.dir.path().join("old-audit.jsonl");
    let out = s.gateway.cli(
        &[
            "audit",
            "compact",
            "--retain-days",
            "30",
            "--export",
            archive.to_str().unwrap(),
            "--now",
            &year_on,
        ],
        None,
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let out = s.gateway.cli(&["contact", "erase", CAROL], None);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(!everything_shown(&s).contains(CAROL));
    assert!(!file_holds(&store, CAROL));
    assert!(s.gateway.audit_verify().0);
}
