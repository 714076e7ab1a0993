use std::sync::Arc;

use super::*;
use crate::{
    model::Note,
    store::{
        audit::HEAD_KEY,
        messages::{MessageMeta, MessageWrite},
    },
};

#[test]
fn an_address_target_is_checked_and_lower_cased() {
    assert_eq!(
        EraseTarget::address(" Carol@Example.COM ").unwrap(),
        EraseTarget::Address("carol@example.com".into())
    );
    for (input, says) in [
        ("", "give the address"),
        ("   ", "give the address"),
        ("carol", "no @"),
        ("@example.com", "1 to 64"),
        ("carol@", "domain is empty"),
        ("ca rol@example.com", "characters"),
        ("carol@exa mple.com", "domain label"),
        ("carol@exa..com", "domain label"),
        ("carol@-example.com", "domain label"),
    ] {
        let err = EraseTarget::address(input).unwrap_err().to_string();
        assert!(err.contains(says), "{input:?}: {err}");
    }
    let huge = format!("{}@example.com", "a".repeat(100_000));
    let err = EraseTarget::address(&huge).unwrap_err().to_string();
    assert!(err.contains("longer than 254"), "{err}");
    assert!(
        err.len() < 300,
        "the error does not echo huge input: {}",
        err.len()
    );
}

#[test]
fn a_domain_target_needs_two_labels_and_no_at() {
    assert_eq!(
        EraseTarget::domain("@Example.com.").unwrap(),
        EraseTarget::Domain("example.com".into())
    );
    for (input, says) in [
        ("", "give the domain"),
        ("com", "top-level"),
        ("carol@example.com", "holds an @"),
        ("exa_mple.com", "domain label"),
    ] {
        let err = EraseTarget::domain(input).unwrap_err().to_string();
        assert!(err.contains(says), "{input:?}: {err}");
    }
}

#[test]
fn an_address_is_found_on_its_own_and_without_case() {
    let t = EraseTarget::address("carol@example.com").unwrap();
    for yes in [
        "carol@example.com",
        "From: Carol <CAROL@Example.Com>",
        "write to carol@example.com.",
        "\"carol@example.com\"",
    ] {
        assert!(t.mentioned_in(yes.as_bytes()), "{yes}");
    }
    for no in [
        "jimcarol@example.com",
        "carol@example.community",
        "carol@example.com-mail.org",
        "carol@example.com.evil.org",
        "carol at example.com",
    ] {
        assert!(!t.mentioned_in(no.as_bytes()), "{no}");
    }
    assert!(t.matches_address("Carol@EXAMPLE.com"));
    assert!(!t.matches_address("carol@example.org"));
}

#[test]
fn a_domain_takes_its_subdomains_and_not_its_lookalikes() {
    let t = EraseTarget::domain("example.com").unwrap();
    assert!(t.matches_address("carol@example.com"));
    assert!(t.matches_address("dan@EU.Example.com"));
    assert!(!t.matches_address("eve@notexample.com"));
    assert!(!t.matches_address("eve@example.com.au"));
    assert!(t.mentioned_in(b"Cc: dan@eu.example.com, x@y.org"));
    assert!(t.mentioned_in(b"<abc123@example.com>"));
    assert!(!t.mentioned_in(b"see example.com or eve@notexample.com"));
}

fn lead(id: u64, email: &str, name: &str, subject: &str) -> Lead {
    Lead {
        id,
        contact_email: email.into(),
        contact_name: Some(name.into()),
        company_domain: email.rsplit('@').next().unwrap().into(),
        subject: subject.into(),
        value_signals: vec![format!("{name} budget 40k")],
        next_action: Some(format!("call {name}")),
        notes: vec![Note {
            at: 1,
            author: "alice".into(),
            text: format!("{name} wants a demo"),
        }],
        ..Default::default()
    }
}

fn envelope(from: &str, subject: &str) -> Vec<u8> {
    format!(
        "(\"Mon, 1 Jan 2026\" \"{subject}\" ((NIL NIL \"{}\" \"{}\")) NIL NIL NIL NIL NIL NIL NIL)",
        from.split('@').next().unwrap(),
        from.split('@').nth(1).unwrap()
    )
    .into_bytes()
}

fn record(uid: u32, from: &str, subject: &str) -> MessageWrite {
    MessageWrite::Put {
        record: MessageRecord {
            uid,
            flags: vec![],
            modseq: 1,
            meta: Arc::new(MessageMeta {
                size: 100,
                internal_date: "01-Jan-2026 10:00:00 +0000".into(),
                envelope: envelope(from, subject).into(),
                bodystructure: b"(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 10 1)"
                    .as_slice()
                    .into(),
                message_id: Some(format!("<m{uid}@mail.test>").into()),
                in_reply_to: None,
                references: Box::new([]),
            }),
        },
        header: Some(format!("From: {from}\r\nSubject: {subject}\r\n\r\n").into_bytes()),
    }
}

/// A store with Carol's lead (1), Dan's lead at a subdomain (2), Erin's
/// lead at another domain (3) whose note mentions Carol, their messages and
/// audit events.
async fn fixture() -> (tempfile::TempDir, Store, u32) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let mbox = store.mailbox_reset("INBOX", 7).await.unwrap();
    let gen = mbox.gen;
    store
        .mailbox_apply(
            mbox.clone(),
            vec![
                record(1, "carol@example.com", "Pricing for Zebra Works"),
                record(2, "dan@eu.example.com", "Demo request Okapi"),
                record(3, "erin@other.org", "Quote please"),
                MessageWrite::CacheBody {
                    uid: 1,
                    body: b"From: carol@example.com\r\n\r\nWe need 40 seats".to_vec(),
                },
            ],
            1 << 20,
        )
        .await
        .unwrap();
    store
        .write(move |txn| {
            let mut erin = lead(3, "erin@other.org", "Erin", "Quote please");
            erin.notes.push(Note {
                at: 2,
                author: "bob".into(),
                text: "ask carol@example.com for a reference".into(),
            });
            for l in [
                lead(
                    1,
                    "Carol@Example.com",
                    "Carol Zebra",
                    "Pricing for Zebra Works",
                ),
                lead(2, "dan@eu.example.com", "Dan Okapi", "Demo request Okapi"),
                erin,
            ] {
                db::put_lead(txn, &l)?;
                db::set_message_lead(txn, messages_key(gen, l.id as u32), l.id)?;
                db::map_thread_id(txn, &format!("<m{}@mail.test>", l.id), l.id)?;
                db::add_subject(txn, &l.subject.to_lowercase(), &l.contact_email, l.id)?;
                audit::append(
                    txn,
                    &AuditDraft {
                        at: 1_000 + l.id as i64,
                        actor: "ingest".into(),
                        action: "lead.create".into(),
                        lead: Some(l.id),
                        changes: vec![AuditChange {
                            field: "contact".into(),
                            before: String::new(),
                            after: format!(
                                "{} <{}>",
                                l.contact_name.clone().unwrap(),
                                l.contact_email
                            ),
                        }],
                        reason: format!("new mail: {}", l.subject),
                    },
                )?;
            }
            // An event of no lead that mentions Carol.
            audit::append(
                txn,
                &AuditDraft {
                    at: 2_000,
                    actor: "alice".into(),
                    action: "reply.blocked".into(),
                    lead: None,
                    changes: vec![],
                    reason: "reply to carol@example.com held".into(),
                },
            )?;
            db::set_domain_owner(txn, "example.com", "alice")?;
            Ok(())
        })
        .await
        .unwrap();
    (dir, store, gen)
}

fn messages_key(gen: u32, uid: u32) -> u64 {
    super::super::messages::message_key(gen, uid)
}

fn file_has(store: &Store, text: &str) -> bool {
    let bytes = std::fs::read(&*store.path).unwrap().to_ascii_lowercase();
    memchr::memmem::find(&bytes, text.to_ascii_lowercase().as_bytes()).is_some()
}

#[tokio::test]
async fn erasing_an_address_leaves_no_trace_in_the_file_and_the_chain_verifies() {
    let (_d, store, gen) = fixture().await;
    assert!(
        file_has(&store, "carol@example.com"),
        "the fixture holds her"
    );
    assert!(file_has(&store, "Zebra"));
    let target = EraseTarget::address("CAROL@example.com").unwrap();
    let r = store
        .erase_contact(target.clone(), "cli:root", 5_000)
        .await
        .unwrap();
    let o = &r.outcome;
    assert_eq!(o.leads.iter().map(|l| l.id).collect::<Vec<_>>(), [1]);
    assert_eq!(o.other_leads.iter().map(|l| l.id).collect::<Vec<_>>(), [3]);
    assert_eq!(o.messages, [messages_key(gen, 1)]);
    assert_eq!(o.events, 2, "her lead.create and the blocked reply");

    for needle in ["carol@example.com", "Zebra", "40 seats"] {
        assert!(!file_has(&store, needle), "{needle} is still in the file");
    }
    // Dan and Erin are untouched, except Erin's note that quoted Carol.
    assert!(file_has(&store, "dan@eu.example.com"));
    assert!(file_has(&store, "Okapi"));
    let erin = store.lead(3).unwrap().unwrap();
    assert_eq!(erin.notes[0].text, "Erin wants a demo");
    assert_eq!(erin.notes[1].text, ERASED);
    let carol = store.lead(1).unwrap().unwrap();
    assert_eq!(carol.contact_email, ERASED);
    assert_eq!(carol.contact_name, None);
    assert_eq!(carol.subject, ERASED);
    assert_eq!(
        carol.company_domain, "Example.com",
        "an address erase keeps the company"
    );

    let report = store.audit_verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    let all = store.all_audit_events();
    let last = all.last().unwrap();
    assert_eq!(last.action, "contact.erase");
    assert_eq!(last.actor, "cli:root");
    let salt = store
        .read(|txn| {
            Ok(txn
                .open_table(META)?
                .get(SALT_KEY)?
                .unwrap()
                .value()
                .to_vec())
        })
        .unwrap();
    assert_eq!(salt.len(), 32);
    assert_eq!(last.changes[0].after, target_hash(&salt, &target));
    assert_ne!(
        last.changes[0].after,
        target_hash(b"another store", &target),
        "the hash depends on the store's salt"
    );
    assert!(all.iter().filter(|e| e.erased).count() == 2);

    // The sync cannot bring her message back.
    let mbox = store.load_index().unwrap()[0].0.clone();
    store
        .mailbox_apply(
            mbox,
            vec![record(1, "carol@example.com", "Pricing for Zebra Works")],
            1 << 20,
        )
        .await
        .unwrap();
    assert!(
        !file_has(&store, "Pricing for Zebra"),
        "an erased message is not indexed again"
    );
    assert!(store
        .erased_messages()
        .unwrap()
        .contains(&messages_key(gen, 1)));
}

#[tokio::test]
async fn erasing_a_domain_takes_its_subdomains_and_its_owner_entry() {
    let (_d, store, _gen) = fixture().await;
    let r = store
        .erase_contact(
            EraseTarget::domain("example.com").unwrap(),
            "cli:root",
            5_000,
        )
        .await
        .unwrap();
    let mut ids: Vec<_> = r.outcome.leads.iter().map(|l| l.id).collect();
    ids.sort();
    assert_eq!(ids, [1, 2]);
    for needle in ["@example.com", "eu.example.com", "Okapi", "Zebra"] {
        assert!(!file_has(&store, needle), "{needle} is still in the file");
    }
    assert_eq!(store.lead(2).unwrap().unwrap().company_domain, ERASED);
    assert!(file_has(&store, "erin@other.org"));
    assert!(store.audit_verify().unwrap().is_ok());
}

#[tokio::test]
async fn a_version_one_event_refuses_the_erasure_and_nothing_changes() {
    let (_d, store, _gen) = fixture().await;
    // Make the last event a version 1 one (as written before version 2).
    let mut last = store.all_audit_events().pop().unwrap();
    last.v = 1;
    last.pd = None;
    last.hash = last.computed_hash().unwrap();
    let seq = last.seq;
    let mut head = seq.to_le_bytes().to_vec();
    head.extend(hex::decode(&last.hash).unwrap());
    let bytes = serde_json::to_vec(&last).unwrap();
    store
        .write(move |txn| {
            txn.open_table(AUDIT)?.insert(seq, bytes.as_slice())?;
            txn.open_table(META)?.insert(HEAD_KEY, head.as_slice())?;
            Ok(())
        })
        .await
        .unwrap();
    assert!(store.audit_verify().unwrap().is_ok());
    let before = store.all_audit_events();
    let err = store
        .erase_contact(
            EraseTarget::address("carol@example.com").unwrap(),
            "cli:root",
            5_000,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("version 2") && err.contains(&format!("seq {seq}")),
        "{err}"
    );
    assert!(err.contains("audit compact"), "says what to do: {err}");
    assert_eq!(
        store.all_audit_events(),
        before,
        "no event changed or added"
    );
    assert_eq!(
        store.lead(1).unwrap().unwrap().contact_email,
        "Carol@Example.com"
    );
}

#[tokio::test]
async fn a_team_members_address_is_not_a_contact() {
    let (_d, store, _gen) = fixture().await;
    let user = User {
        name: "carol".into(),
        role: crate::store::users::Role::Rep,
        enabled: true,
        password_hash: "x".into(),
        email: Some("carol@example.com".into()),
        display_name: None,
        created: 0,
        changed: 0,
    };
    store.user_add("test", user).await.unwrap().unwrap();
    let n = store.all_audit_events().len();
    let err = store
        .erase_contact(
            EraseTarget::address("carol@example.com").unwrap(),
            "cli:root",
            5_000,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("leadgate user carol"), "{err}");
    assert_eq!(store.all_audit_events().len(), n);
}

#[tokio::test]
async fn an_erasure_cut_off_before_its_rewrite_is_finished_at_the_next_open() {
    let (dir, store, _gen) = fixture().await;
    let target = EraseTarget::address("carol@example.com").unwrap();
    // The erasure commits, then the process "dies" before the rewrite.
    let t = target.clone();
    store
        .write(move |txn| erase_in(txn, &t, "cli:root", 5_000))
        .await
        .unwrap()
        .unwrap();
    store.close();
    drop(store);
    let path = dir.path().join("s.redb");
    assert!(
        file_mentions(&path, &target).unwrap(),
        "freed pages still hold her (why the rewrite exists)"
    );
    let store = Store::open(&path).unwrap();
    assert!(!file_mentions(&path, &target).unwrap());
    assert!(store.audit_verify().unwrap().is_ok());
    let pending = store
        .read(|txn| Ok(txn.open_table(META)?.get(REWRITE_PENDING_KEY)?.is_some()))
        .unwrap();
    assert!(!pending);
}

/// Fills the fixture with ~40 MB of cached bodies, so that the rewrite's
/// copy takes long enough for writes to happen during it.
async fn bulk(store: &Store) {
    let mbox = store.load_index().unwrap()[0].0.clone();
    for batch in 0..4u32 {
        let writes = (0..5_000u32)
            .map(|i| MessageWrite::CacheBody {
                uid: 10 + batch * 5_000 + i,
                body: vec![b'x'; 2_000],
            })
            .collect();
        store
            .mailbox_apply(mbox.clone(), writes, 1 << 40)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_made_while_the_file_is_rewritten_are_kept() {
    let (dir, store, _gen) = fixture().await;
    bulk(&store).await;
    // Rows that writes during the rewrite will remove.
    store
        .write(|txn| {
            let mut meta = txn.open_table(META)?;
            for i in 0..1_000u32 {
                meta.insert(format!("old{i}").as_str(), [1u8].as_slice())?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            // Acknowledged writes: a row added, a row removed, a
            // threading entry (a multimap) added, each one its own commit.
            let mut done = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && done < 1_000 {
                let i = done;
                store
                    .write(move |txn| {
                        txn.open_table(META)?
                            .insert(format!("new{i}").as_str(), [2u8].as_slice())?;
                        txn.open_table(META)?.remove(format!("old{i}").as_str())?;
                        db::add_subject(txn, &format!("subject {i}"), "x@y.org", 2)?;
                        Ok(())
                    })
                    .await
                    .unwrap();
                done += 1;
            }
            done
        })
    };
    // Let the writer get going, then erase while it writes.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let target = EraseTarget::address("carol@example.com").unwrap();
    let r = store
        .erase_contact(target.clone(), "cli:root", 5_000)
        .await
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let done = writer.await.unwrap();
    assert!(
        r.rewrite.caught_up > 0,
        "writes landed during the copy and were brought over after it: {:?}",
        r.rewrite
    );

    let check = |store: &Store| {
        store
            .read(move |txn| {
                let meta = txn.open_table(META)?;
                let subjects = txn.open_multimap_table(THREAD_SUBJECTS)?;
                for i in 0..1_000u32 {
                    let new = meta.get(format!("new{i}").as_str())?.is_some();
                    let old = meta.get(format!("old{i}").as_str())?.is_some();
                    let subject = subjects
                        .get(format!("subject {i}\0x@y.org").as_str())?
                        .next()
                        .is_some();
                    assert_eq!(
                        (new, old, subject),
                        (i < done, i >= done, i < done),
                        "row {i} of {done} acknowledged writes"
                    );
                }
                Ok(())
            })
            .unwrap()
    };
    check(&store);
    assert!(!file_mentions(&dir.path().join("s.redb"), &target).unwrap());
    assert!(store.audit_verify().unwrap().is_ok());
    // And they are in the file, not only in memory.
    store.close();
    drop(store);
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    check(&store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_closed_during_its_rewrite_rewrites_at_the_next_open() {
    let (dir, store, _gen) = fixture().await;
    bulk(&store).await;
    let target = EraseTarget::address("carol@example.com").unwrap();
    let t = target.clone();
    store
        .write(move |txn| erase_in(txn, &t, "cli:root", 5_000))
        .await
        .unwrap()
        .unwrap();
    // The rewrite starts; the store closes before its copy is done.
    let asked = {
        let store = store.clone();
        tokio::spawn(async move { store.rewrite_file().await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    store.close();
    let _ = asked.await.unwrap();
    drop(store);
    let path = dir.path().join("s.redb");
    let strays: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".rewrite-"))
        .collect();
    assert!(strays.is_empty(), "the copy's file is removed: {strays:?}");
    let store = Store::open(&path).unwrap();
    assert!(!file_mentions(&path, &target).unwrap());
    assert!(store.audit_verify().unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_write_during_the_rewrite_is_kept_by_a_full_catch_up() {
    let (dir, store, _gen) = fixture().await;
    bulk(&store).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Raw writes (tests' access around the record) until the erase ends.
    let raw = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::task::spawn_blocking(move || {
            let mut done = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && done < 1_000 {
                let i = done;
                store
                    .raw_write_blocking(move |txn| {
                        txn.open_table(META)?
                            .insert(format!("raw{i}").as_str(), [3u8].as_slice())?;
                        Ok(())
                    })
                    .unwrap();
                done += 1;
            }
            done
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let target = EraseTarget::address("carol@example.com").unwrap();
    let r = store
        .erase_contact(target.clone(), "cli:root", 5_000)
        .await
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let done = raw.await.unwrap();
    assert!(r.rewrite.caught_up > 0, "{:?}", r.rewrite);
    store.close();
    drop(store);
    let path = dir.path().join("s.redb");
    assert!(!file_mentions(&path, &target).unwrap());
    let store = Store::open(&path).unwrap();
    let kept = store
        .read(move |txn| {
            let meta = txn.open_table(META)?;
            let mut n = 0;
            for i in 0..done {
                n += u32::from(meta.get(format!("raw{i}").as_str())?.is_some());
            }
            Ok(n)
        })
        .unwrap();
    assert_eq!(kept, done, "every raw write is in the rewritten file");
}
