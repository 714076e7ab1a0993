//! The brief's follow-up schedule with an injected clock (issue 11): reply,
//! chase after 2 business days, chase again 5 after the reply, then close
//! as No response 2 business days after the last chase — or, for a high
//! value lead, escalate instead: the manager is mailed at once through a
//! real Postfix into her real Dovecot mailbox, exactly once, and the digest
//! lists the lead under Escalated.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use leadgate::{
    auth::{hash_password, AuthConfig, Principal},
    leads::{
        book::{LeadBook, ManualClock},
        calendar::Calendar,
        rules::LeadsConfig,
        threading::MessageFacts,
        Outcome, Status,
    },
    model::Role,
    smtp::{config::SmtpConfig, notices::Notifier, relay::Outbound},
    store::{audit::AuditFilter, users::User, Store},
};

/// Monday 2026-11-23 10:00 UTC.
const MONDAY_10: i64 = 1_795_428_000;
const HOUR: i64 = 3600;

async fn team_store(dir: &std::path::Path) -> Store {
    let store = Store::open(&dir.join("s.redb")).unwrap();
    let cfg = AuthConfig {
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        ..Default::default()
    };
    for (name, role) in [("alice", Role::Rep), ("maria", Role::Manager)] {
        let user = User {
            name: name.into(),
            role,
            enabled: true,
            password_hash: hash_password("pw-pw-pw-pw", &cfg).unwrap(),
            email: Some(format!("{name}@example.com")),
            display_name: None,
            created: 0,
            changed: 0,
        };
        store.user_add("test", user).await.unwrap().unwrap();
    }
    store
}

fn customer_mail(id: &str, subject: &str, body: &str, at: i64) -> MessageFacts {
    MessageFacts {
        message_id: Some(format!("<{id}>")),
        subject: subject.into(),
        from: "dana@northwind.test".into(),
        from_name: Some("Dana Whitfield".into()),
        to: vec!["sales@example.com".into()],
        date: at,
        body_text: body.into(),
        ..MessageFacts::default()
    }
}

fn reply(id: &str, at: i64) -> MessageFacts {
    MessageFacts {
        message_id: Some(format!("<{id}>")),
        subject: "Re: Pricing".into(),
        from: "sales@example.com".into(),
        to: vec!["dana@northwind.test".into()],
        date: at,
        ..MessageFacts::default()
    }
}

struct Bed {
    book: Arc<LeadBook>,
    clock: Arc<ManualClock>,
    cal: Calendar,
    alice: Principal,
}

impl Bed {
    fn new(store: &Store, escalate_to: Option<&str>) -> Bed {
        let mut cfg = LeadsConfig::default();
        cfg.follow_up.escalate_to = escalate_to.map(str::to_owned);
        cfg.high_value.keywords = vec!["enterprise".into()];
        let cal = cfg.calendar().unwrap();
        let clock = Arc::new(ManualClock::new(MONDAY_10));
        let book = Arc::new(LeadBook::load(store.clone(), Arc::new(cfg), clock.clone()).unwrap());
        Bed {
            book,
            clock,
            cal,
            alice: Principal {
                name: "alice".into(),
                role: Role::Rep,
                email: Some("alice@example.com".into()),
                display_name: None,
            },
        }
    }

    fn lead(&self, id: u64) -> leadgate::leads::Lead {
        (*self.book.lead(id).unwrap()).clone()
    }

    /// Moves the clock to `at` and lets time do its work.
    async fn tick_at(&self, at: i64) {
        self.clock.set(at);
        self.book.tick().await.unwrap();
    }

    /// The owner sends message `id` on lead `lead` at `at`.
    async fn send(&self, lead: u64, id: &str, at: i64) {
        self.clock.set(at);
        self.book
            .reply_sent(&self.alice, lead, reply(id, at), at, None)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_briefs_schedule_chases_twice_then_closes_as_no_response() {
    let dir = tempfile::tempdir().unwrap();
    let store = team_store(dir.path()).await;
    let bed = Bed::new(&store, None);
    bed.book
        .ingest(
            1,
            customer_mail("q@n", "Pricing", "40 seats?", MONDAY_10),
            MONDAY_10,
        )
        .await
        .unwrap();
    bed.book
        .act(
            &bed.alice,
            1,
            leadgate::leads::book::LeadAction::AssignTo("alice".into()),
        )
        .await
        .unwrap();
    let replied = MONDAY_10 + HOUR;
    bed.send(1, "r1@x", replied).await;
    let day = |n: u32| bed.cal.add_business_days(replied, n);

    // Nothing before +2; Follow-up due at +2.
    bed.tick_at(day(2) - 60).await;
    assert_eq!(bed.lead(1).status, Status::WaitingForReply);
    bed.tick_at(day(2)).await;
    assert_eq!(bed.lead(1).status, Status::FollowUpDue);

    // The chase; the next is due at +5 from the reply.
    bed.send(1, "c1@x", day(2) + HOUR).await;
    assert_eq!(bed.lead(1).due, Some(day(5)));
    bed.tick_at(day(5)).await;
    assert_eq!(bed.lead(1).status, Status::FollowUpDue);

    // The second chase; 2 more business days, then No response.
    let chased = day(5) + HOUR;
    bed.send(1, "c2@x", chased).await;
    let close_at = bed.cal.add_business_days(chased, 2);
    bed.tick_at(close_at - 60).await;
    assert_eq!(bed.lead(1).status, Status::WaitingForReply);
    bed.tick_at(close_at).await;
    let l = bed.lead(1);
    assert_eq!(
        (l.status, l.outcome),
        (Status::Closed, Some(Outcome::NoResponse))
    );
    assert_eq!(l.followups_sent, 2);
    // A plain lead is never escalated: nobody is mailed.
    assert!(store.notices_pending().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_value_lead_is_escalated_and_the_manager_is_mailed_once() {
    let dir = tempfile::tempdir().unwrap();
    let dovecot = upstream(dir.path());
    let postfix = testbed::Postfix::start(
        dir.path(),
        dovecot.lmtp_port,
        &["example.com", "northwind.test"],
        false,
    );
    let store = team_store(dir.path()).await;
    let bed = Bed::new(&store, Some("maria"));
    bed.book
        .ingest(
            1,
            customer_mail(
                "q@n",
                "Enterprise pricing",
                "enterprise plan for 400 seats",
                MONDAY_10,
            ),
            MONDAY_10,
        )
        .await
        .unwrap();
    bed.book
        .act(
            &bed.alice,
            1,
            leadgate::leads::book::LeadAction::AssignTo("alice".into()),
        )
        .await
        .unwrap();
    assert!(bed.lead(1).high_value);
    let replied = MONDAY_10 + HOUR;
    bed.send(1, "r1@x", replied).await;
    let mut at = replied;
    for n in 1..=2 {
        let due = bed.lead(1).due.unwrap();
        bed.tick_at(due).await;
        assert_eq!(bed.lead(1).status, Status::FollowUpDue, "chase {n}");
        at = due + HOUR;
        bed.send(1, &format!("c{n}@x"), at).await;
    }
    let last = bed.lead(1).due.unwrap();
    assert_eq!(last, bed.cal.add_business_days(at, 2));
    bed.tick_at(last).await;
    let l = bed.lead(1);
    assert!(l.escalated, "{l:?}");
    assert_eq!(l.status, Status::FollowUpDue);
    assert_eq!(l.escalated_to.as_deref(), Some("maria"));
    // Ticking again escalates nothing twice.
    bed.tick_at(last + HOUR).await;
    assert_eq!(store.notices_pending().unwrap().len(), 1);

    // The digest has it under Escalated.
    let digest = leadgate::admin::digest::Digest::build(&bed.book.all(), &bed.cal, 86_400, last);
    let text = digest.text();
    assert!(text.contains("Escalated (1):"), "{text}");

    // The notice goes through Postfix into maria's own mailbox, once.
    let smtp: SmtpConfig = toml::from_str(&format!(
        "[relay]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        postfix.smtp_port
    ))
    .unwrap();
    let outbound = Arc::new(Outbound::from_config(&smtp, &store, "gw.example.com").unwrap());
    let notifier = Notifier {
        book: bed.book.clone(),
        store: store.clone(),
        outbound,
        hostname: "gw.example.com".into(),
    };
    let mut retry = Default::default();
    assert_eq!(notifier.send_pending(&mut retry).await.unwrap(), 1);
    assert_eq!(notifier.send_pending(&mut retry).await.unwrap(), 0);
    let fetched = tokio::task::spawn_blocking(move || {
        let mut got = String::new();
        eventually(Duration::from_secs(20), || {
            let mut c = RawImap::login(dovecot.imap_port, MARIA_MAILBOX.0, MARIA_MAILBOX.1);
            c.run("SELECT INBOX");
            got = c.run("FETCH 1:* (BODY.PEEK[])");
            got.contains("X-Lead-Id: 1")
        });
        got
    })
    .await
    .unwrap();
    // One mail; its subject decoded as a client shows it.
    assert_eq!(fetched.matches("* 1 FETCH").count(), 1, "{fetched}");
    assert!(!fetched.contains("* 2 FETCH"), "mailed twice: {fetched}");
    let raw = fetched.split_once("}\r\n").map_or("", |(_, m)| m);
    let mail = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .unwrap();
    assert_eq!(
        mail.subject(),
        Some("Escalated: lead 1 · Dana Whitfield <dana@northwind.test> · owner alice")
    );
    assert!(
        fetched.contains("Auto-Submitted: auto-generated"),
        "{fetched}"
    );
    let body = mail.body_text(0).unwrap();
    assert!(body.contains("no answer after 2 follow-up(s)"), "{body}");
    assert!(body.contains("Review/Escalated"), "{body}");
    let mut mailed = Vec::new();
    store
        .audit_events(
            &AuditFilter {
                lead: Some(1),
                action_prefix: Some("lead.escalation.mail".into()),
                ..Default::default()
            },
            |ev| {
                mailed.push(ev.reason.clone());
                true
            },
        )
        .unwrap();
    assert_eq!(mailed, vec!["mailed maria@example.com".to_owned()]);
}
