//! A held reply nobody decides on expires (issue 11), with an injected
//! clock: the gateway's parts are assembled over real Dovecot and Postfix,
//! bob's reply on alice's lead is held, the clock moves past `hold_days`,
//! and one pass of the held desk expires it: it never reaches the customer,
//! its readable copy leaves the upstream folder, the audit log says
//! `reply.expired`, and bob is mailed — in his real Dovecot mailbox.

mod common;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use common::*;
use leadgate::{
    auth::{hash_password, AuthConfig, Principal},
    config::UpstreamImapConfig,
    index::{BodyCache, Index},
    leads::{
        book::{LeadAction, LeadBook, ManualClock},
        rules::LeadsConfig,
        threading::MessageFacts,
    },
    metrics::Metrics,
    model::Role,
    smtp::{
        config::SmtpConfig, gateway::Gateway, held::HeldSettings, notices::Notifier,
        relay::Outbound, Envelope, Submission, SubmissionHandler,
    },
    store::{audit::AuditFilter, users::User, Store},
    upstream::{pool::Pool, sync::Health, Upstream},
};

/// Monday 2026-11-23 10:00 UTC.
const MONDAY_10: i64 = 1_795_428_000;
const BOB_MAILBOX: (&str, &str) = ("bob", "bob-mailbox-pw");
const HELD_FOLDER: &str = "leadgate-users-held";

fn principal(name: &str) -> Principal {
    Principal {
        name: name.into(),
        role: Role::Rep,
        email: Some(format!("{name}@example.com")),
        display_name: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_reply_nobody_decides_on_expires_and_its_sender_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let dovecot = testbed::Dovecot::start(dir.path(), &[SALES, CUSTOMER, BOB_MAILBOX], None, false);
    let postfix = testbed::Postfix::start(
        dir.path(),
        dovecot.lmtp_port,
        &["example.com", "customer.test"],
        false,
    );

    // The store, the team and a lead of alice's.
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let cheap = AuthConfig {
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        ..Default::default()
    };
    for (name, role) in [("alice", Role::Rep), ("bob", Role::Rep)] {
        let user = User {
            name: name.into(),
            role,
            enabled: true,
            password_hash: hash_password("pw-pw-pw-pw", &cheap).unwrap(),
            email: Some(format!("{name}@example.com")),
            display_name: None,
            created: 0,
            changed: 0,
        };
        store.user_add("test", user).await.unwrap().unwrap();
    }
    let clock = Arc::new(ManualClock::new(MONDAY_10));
    let book = Arc::new(
        LeadBook::load(
            store.clone(),
            Arc::new(LeadsConfig::default()),
            clock.clone(),
        )
        .unwrap(),
    );
    book.ingest(
        1,
        MessageFacts {
            message_id: Some("<q1@customer.test>".into()),
            subject: "Quote for 25 seats".into(),
            from: "customer@customer.test".into(),
            to: vec!["sales@example.com".into()],
            date: MONDAY_10,
            ..MessageFacts::default()
        },
        MONDAY_10,
    )
    .await
    .unwrap();
    book.act(&principal("alice"), 1, LeadAction::AssignTo("alice".into()))
        .await
        .unwrap();

    // The upstream side, as `leadgate serve` assembles it.
    let imap: UpstreamImapConfig = toml::from_str(&format!(
        "host = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nusername = \"{}\"\npassword = \"{}\"\n",
        dovecot.imap_port, SALES.0, SALES.1
    ))
    .unwrap();
    let password = imap.resolve_password().unwrap();
    let tls = leadgate::net::tls::client_config(None).unwrap();
    let pool = Arc::new(Pool::new(
        Arc::new(Upstream::new(imap, password, tls)),
        Arc::new(Health::default()),
    ));
    let index = Arc::new(
        Index::load(
            store.clone(),
            BodyCache {
                budget: 1 << 24,
                max_message: 1 << 20,
            },
        )
        .unwrap(),
    );
    pool.folder_command("CREATE", &[HELD_FOLDER]).await.unwrap();
    pool.sync(&index, HELD_FOLDER).await.unwrap();
    let smtp: SmtpConfig = toml::from_str(&format!(
        "shared_address = \"sales@example.com\"\n[relay]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        postfix.smtp_port
    ))
    .unwrap();
    let outbound = Arc::new(Outbound::from_config(&smtp, &store, "gw.example.com").unwrap());
    let gateway = Arc::new(Gateway {
        book: book.clone(),
        index: index.clone(),
        pool: pool.clone(),
        outbound: outbound.clone(),
        metrics: Arc::new(Metrics::new()),
        hostname: "gw.example.com".into(),
        shared_address: "sales@example.com".into(),
        shared_sent: String::new(),
        notes_address: None,
        rewrite_from: true,
        new_outbound_creates_lead: true,
        in_flight: Default::default(),
        last_prune: Default::default(),
        filer: Default::default(),
        held: Some(HeldSettings {
            folder: HELD_FOLDER.into(),
            hold_days: 2,
        }),
        deciding: Default::default(),
    });

    // Bob answers alice's customer: held.
    let data = b"From: bob@example.com\r\nTo: customer@customer.test\r\nSubject: Re: Quote for 25 seats\r\nMessage-ID: <bob-late@example.com>\r\nIn-Reply-To: <q1@customer.test>\r\n\r\nCheaper!\r\n".to_vec();
    let reply = gateway
        .submit(Submission {
            user: principal("bob"),
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            envelope: Envelope {
                mail_from: "bob@example.com".into(),
                rcpt_to: vec!["customer@customer.test".into()],
                size_hint: None,
                body_8bit: false,
            },
            data,
        })
        .await;
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_eq!(store.held_all().unwrap().len(), 1);
    let held_copies = |dovecot: &testbed::Dovecot| {
        let mut c = RawImap::login(dovecot.imap_port, SALES.0, SALES.1);
        status_messages(&c.run(&format!("STATUS {HELD_FOLDER} (MESSAGES)")))
    };
    assert_eq!(held_copies(&dovecot), 1, "the readable copy is upstream");

    // A day later nothing happens; after hold_days it expires.
    clock.advance(86_400);
    gateway.held_pass(false).await;
    assert_eq!(store.held_all().unwrap().len(), 1);
    clock.advance(86_400);
    gateway.held_pass(false).await;
    assert!(store.held_all().unwrap().is_empty());
    assert_eq!(held_copies(&dovecot), 0, "the readable copy is gone");

    // Bob is told, by mail, in his own mailbox.
    let notifier = Notifier {
        book: book.clone(),
        store: store.clone(),
        outbound,
        hostname: "gw.example.com".into(),
    };
    assert_eq!(
        notifier
            .send_pending(&mut Default::default())
            .await
            .unwrap(),
        1
    );
    let port = dovecot.imap_port;
    let bobs = tokio::task::spawn_blocking(move || {
        let mut got = String::new();
        eventually(Duration::from_secs(20), || {
            let mut c = RawImap::login(port, BOB_MAILBOX.0, BOB_MAILBOX.1);
            c.run("SELECT INBOX");
            got = c.run("FETCH 1:* (BODY.PEEK[])");
            got.contains("bob-late@example.com")
        });
        got
    })
    .await
    .unwrap();
    assert!(
        bobs.contains("Subject: Not sent: your held message on lead 1 expired"),
        "{bobs}"
    );
    assert!(bobs.contains("Auto-Submitted: auto-generated"), "{bobs}");
    assert!(bobs.contains("NOT sent to the customer"), "{bobs}");

    // Never relayed to the customer; audited.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ids = mailbox_message_ids(&dovecot, CUSTOMER, "INBOX");
    assert!(!ids.iter().any(|i| i.contains("bob-late")), "{ids:?}");
    let mut actions = Vec::new();
    store
        .audit_events(
            &AuditFilter {
                action_prefix: Some("reply.".into()),
                ..Default::default()
            },
            |ev| {
                actions.push(ev.action.clone());
                true
            },
        )
        .unwrap();
    assert_eq!(
        actions,
        ["reply.held", "reply.expired", "reply.expired.mail"],
        "{actions:?}"
    );
}
