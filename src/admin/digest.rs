//! The managers' daily review: the brief's six queues (New and
//! unassigned, Waiting first response, Follow-ups due today, Overdue,
//! Blocked, High value idle) and the leads escalated to a manager as counts plus the top items of each.
//! `leadgate review` prints [`digest_text`]; [`run`] mails the same text to
//! every enabled manager with an email at `digest.time` on business days.
//!
//! # Never twice a day
//!
//! A sent digest is recorded per manager in META (`digest_sent:<user>` =
//! the local date, see `store::users`) in the same transaction as its
//! `digest.sent` audit event; a manager whose record already names today is
//! skipped, across restarts too. A send that fails is retried five minutes
//! later, until the day is over. (A crash between the relay's 250 and that
//! commit can repeat one mail; nothing can lose one.)

use std::{collections::HashMap, fmt::Write, future::Future, sync::Arc, time::Duration};

use chrono::{NaiveDate, TimeZone};
use tokio::sync::watch;

use super::report::{clip, time};
use crate::{
    config::Config,
    leads::queues::ViewsConfig,
    leads::queues::{EvalCtx, ViewKind},
    leads::{
        book::{LeadBook, SYSTEM},
        calendar::Calendar,
        header_safe_address, Lead,
    },
    smtp::relay::Outbound,
    store::{audit::AuditDraft, users::Role, Store, StoreError},
};

/// Items listed per queue; the rest is counted.
pub const TOP: usize = 10;

/// The brief's six review queues, in its order, and Escalated, with their
/// headings.
pub fn queues() -> [(ViewKind, &'static str); 7] {
    [
        (ViewKind::ReviewNew, "New and unassigned"),
        (ViewKind::ReviewWaitingFirst, "Waiting first response"),
        (ViewKind::ReviewDueToday, "Follow-ups due today"),
        (ViewKind::ReviewOverdue, "Overdue"),
        (ViewKind::ReviewBlocked, "Blocked (needs internal input)"),
        (ViewKind::ReviewHighValueIdle, "High value idle"),
        (ViewKind::ReviewEscalated, "Escalated"),
    ]
}

/// One queue: its heading and its leads, most pressing first.
#[derive(Debug, Clone)]
pub struct Queue {
    pub name: &'static str,
    pub leads: Vec<Arc<Lead>>,
}

/// The review at one moment.
#[derive(Debug, Clone)]
pub struct Digest {
    /// The local date (calendar time zone).
    pub date: NaiveDate,
    pub tz: chrono_tz::Tz,
    pub now: i64,
    pub queues: Vec<Queue>,
    /// Active sales leads without an owner.
    pub unassigned: usize,
}

impl Digest {
    /// Sorts leads into the queues (pure: leads, calendar, idle time, now).
    pub fn build(leads: &[Arc<Lead>], cal: &Calendar, idle_secs: i64, now: i64) -> Digest {
        let ctx = EvalCtx {
            now,
            cal,
            idle_secs,
        };
        let queues = queues()
            .into_iter()
            .map(|(kind, name)| {
                let mut leads: Vec<Arc<Lead>> = leads
                    .iter()
                    .filter(|l| kind.matches(l, "", &ctx))
                    .cloned()
                    .collect();
                // Earliest due first (undated last), then oldest.
                leads.sort_by_key(|l| (l.due.is_none(), l.due, l.created, l.id));
                Queue { name, leads }
            })
            .collect();
        let unassigned = leads
            .iter()
            .filter(|l| ViewKind::Unassigned.matches(l, "", &ctx))
            .count();
        Digest {
            date: cal.local_date(now),
            tz: cal.time_zone(),
            now,
            queues,
            unassigned,
        }
    }

    pub fn overdue(&self) -> usize {
        self.queues
            .iter()
            .find(|q| q.name == "Overdue")
            .map_or(0, |q| q.leads.len())
    }

    /// The subject of the mail.
    pub fn subject(&self) -> String {
        format!(
            "Sales inbox review for {}: {} overdue, {} unassigned",
            self.date.format("%Y-%m-%d"),
            self.overdue(),
            self.unassigned
        )
    }

    /// The text `leadgate review` prints and the mail carries.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Sales inbox review for {} ({})",
            self.date.format("%a %Y-%m-%d"),
            self.tz
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "  {:<32} {:>6}", "queue", "leads");
        for q in &self.queues {
            let _ = writeln!(out, "  {:<32} {:>6}", q.name, q.leads.len());
        }
        for q in &self.queues {
            let _ = writeln!(out);
            if q.leads.is_empty() {
                let _ = writeln!(out, "{}: none", q.name);
                continue;
            }
            let _ = writeln!(out, "{} ({}):", q.name, q.leads.len());
            let _ = writeln!(
                out,
                "  {:>5}  {:<12} {:<18} {:<32} subject",
                "id", "owner", "due", "contact"
            );
            for l in q.leads.iter().take(TOP) {
                let due = match l.due {
                    Some(d) if l.is_overdue(self.now) => format!("{} !", time(d, self.tz)),
                    Some(d) => time(d, self.tz),
                    None => "-".into(),
                };
                let _ = writeln!(
                    out,
                    "  {:>5}  {:<12} {:<18} {:<32} {}",
                    l.id,
                    clip(l.owner.as_deref().unwrap_or("-"), 12),
                    due,
                    clip(&l.contact_email, 32),
                    clip(&l.subject, 60)
                );
            }
            if q.leads.len() > TOP {
                let _ = writeln!(out, "  ... and {} more", q.leads.len() - TOP);
            }
        }
        out
    }
}

/// The review of the book's leads now.
pub fn digest(book: &LeadBook, views: &ViewsConfig, now: i64) -> Digest {
    let idle_secs = i64::from(views.high_value_idle_days) * 86_400;
    Digest::build(&book.all(), &book.calendar(), idle_secs, now)
}

/// What `leadgate review` prints.
pub fn digest_text(book: &LeadBook, views: &ViewsConfig, now: i64) -> String {
    digest(book, views, now).text()
}

/// The digest as an RFC 5322 message from the shared address (display name
/// "leadgate") to `to`: ASCII headers, a text/plain UTF-8 body in
/// quoted-printable (so any relay takes it, 8BITMIME or not).
pub fn digest_mail(d: &Digest, from: &str, to: &str, hostname: &str) -> Vec<u8> {
    let date =
        d.tz.timestamp_opt(d.now, 0)
            .single()
            .map(|t| t.to_rfc2822())
            .unwrap_or_default();
    let mut body = d.text();
    body.push_str("\n-- \nSent by leadgate on business days; `leadgate review` prints the same.\n");
    crate::compose::AutoMail {
        from,
        to: &[to.to_owned()],
        subject: &d.subject(),
        date: &date,
        id_prefix: &format!("digest.{}", d.date.format("%Y%m%d")),
        auto_submitted: "auto-generated",
        hostname,
        extra: &[],
        body: &body,
    }
    .render()
}

/// Sends the digests due at `now`: on a business day from `digest.time`
/// on, one to each enabled manager with a usable email who has not had
/// today's. `send` hands one message (from, recipients, body) to the
/// outbound side. Returns the managers it went to.
pub async fn send_due<F, Fut>(
    book: &LeadBook,
    store: &Store,
    config: &Config,
    now: i64,
    retry_after: &mut HashMap<String, i64>,
    send: F,
) -> Result<Vec<String>, StoreError>
where
    F: Fn(String, Vec<String>, Vec<u8>) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let cal = book.calendar();
    let today = cal.local_date(now);
    let local_time = cal
        .time_zone()
        .timestamp_opt(now, 0)
        .single()
        .map(|t| t.time());
    if !cal.is_business_day(today) || local_time.is_none_or(|t| t < config.digest.time) {
        return Ok(Vec::new());
    }
    let date = today.format("%Y-%m-%d").to_string();
    let from = book.config().shared_address.clone();
    let mut sent = Vec::new();
    for user in store.user_list()? {
        if !user.enabled || user.role != Role::Manager {
            continue;
        }
        let Some(email) = user.email.clone() else {
            continue;
        };
        if !header_safe_address(&email) {
            tracing::warn!(
                "digest: {}'s email {email:?} cannot go in a header; skipped",
                user.name
            );
            continue;
        }
        if store.digest_last_sent(&user.name)?.as_deref() == Some(date.as_str())
            || retry_after.get(&user.name).is_some_and(|&t| t > now)
        {
            continue;
        }
        let d = digest(book, &config.views, now);
        let mail = digest_mail(&d, &from, &email, &config.server.hostname);
        match send(from.clone(), vec![email.clone()], mail).await {
            Ok(()) => {
                retry_after.remove(&user.name);
                let event = AuditDraft {
                    at: now * 1000,
                    actor: SYSTEM.to_owned(),
                    action: "digest.sent".into(),
                    lead: None,
                    changes: Vec::new(),
                    reason: format!(
                        "to {} <{email}> for {date}: {} overdue, {} unassigned",
                        user.name,
                        d.overdue(),
                        d.unassigned
                    ),
                };
                store.digest_mark_sent(&user.name, &date, event).await?;
                tracing::info!("digest for {date} sent to {} <{email}>", user.name);
                sent.push(user.name);
            }
            Err(why) => {
                tracing::warn!(
                    "digest for {date} to {} <{email}> not sent, retrying in 5 minutes: {why}",
                    user.name
                );
                retry_after.insert(user.name, now + 300);
            }
        }
    }
    Ok(sent)
}

/// Mails the review now to every enabled manager with a usable email
/// (`leadgate review --send`), whatever the day and time. Each send is
/// audited as `digest.sent` with `actor`; the day's scheduled digest still
/// goes out. Returns one line per manager saying what became of it.
pub async fn send_now(
    book: &LeadBook,
    store: &Store,
    config: &Config,
    outbound: &Outbound,
    actor: &str,
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let from = book.config().shared_address.clone();
    let d = digest(book, &config.views, now);
    let mut lines = Vec::new();
    for user in store.user_list()? {
        if !user.enabled || user.role != Role::Manager {
            continue;
        }
        let Some(email) = user.email.clone().filter(|e| header_safe_address(e)) else {
            lines.push(format!("{}: no usable email, not sent", user.name));
            continue;
        };
        let mail = digest_mail(&d, &from, &email, &config.server.hostname);
        match outbound
            .send(&from, std::slice::from_ref(&email), &mail)
            .await
        {
            Ok(()) => {
                store
                    .audit(AuditDraft {
                        at: now * 1000,
                        actor: actor.to_owned(),
                        action: "digest.sent".into(),
                        lead: None,
                        changes: Vec::new(),
                        reason: format!(
                            "on demand to {} <{email}>: {} overdue, {} unassigned",
                            user.name,
                            d.overdue(),
                            d.unassigned
                        ),
                    })
                    .await?;
                lines.push(format!("{}: sent to <{email}>", user.name));
            }
            Err(r) => lines.push(format!(
                "{}: not sent to <{email}>: {} {}",
                user.name, r.code, r.text
            )),
        }
    }
    if lines.is_empty() {
        lines.push("no enabled manager to send the review to".into());
    }
    Ok(lines)
}

/// How often `run` looks whether a digest is due.
const CHECK_EVERY: Duration = Duration::from_secs(30);

/// Sends the daily digest through `outbound` until shutdown (returns at
/// once when `digest.enabled` is false). Spawn beside the SMTP side.
pub async fn run(
    book: Arc<LeadBook>,
    store: Store,
    outbound: Arc<Outbound>,
    config: Arc<Config>,
    mut shutdown: watch::Receiver<bool>,
) {
    if !config.digest.enabled {
        return;
    }
    let mut retry_after = HashMap::new();
    loop {
        let send = |from: String, rcpt: Vec<String>, body: Vec<u8>| {
            let outbound = outbound.clone();
            async move {
                outbound
                    .send(&from, &rcpt, &body)
                    .await
                    .map_err(|r| format!("{} {}", r.code, r.text))
            }
        };
        let now = book.now();
        if let Err(e) = send_due(&book, &store, &config, now, &mut retry_after, send).await {
            tracing::error!("digest: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leads::{calendar::CalendarConfig, Category, DueKind, Status};

    /// Monday 2026-11-23 10:00 UTC.
    const MONDAY_10: i64 = 1_795_428_000;

    fn lead(id: u64, owner: Option<&str>, status: Status) -> Arc<Lead> {
        Arc::new(Lead {
            id,
            created: MONDAY_10 - 3600,
            owner: owner.map(str::to_owned),
            status,
            category: Category::PricingQuote,
            contact_email: format!("c{id}@customer.test"),
            subject: format!("Quote {id}"),
            ..Lead::default()
        })
    }

    #[test]
    fn queues_count_and_list_the_briefs_six_and_the_escalated() {
        let cal = Calendar::from_config(&CalendarConfig::default()).unwrap();
        let mut overdue = (*lead(3, Some("alice"), Status::WaitingForReply)).clone();
        overdue.due = Some(MONDAY_10 - 60);
        overdue.due_kind = Some(DueKind::FollowUp);
        overdue.first_response_at = Some(MONDAY_10 - 1800);
        overdue.escalated = true;
        overdue.escalated_to = Some("maria".into());
        let mut blocked = (*lead(4, Some("bob"), Status::NeedsInternalInput)).clone();
        blocked.first_response_at = Some(MONDAY_10 - 1800);
        let leads = vec![
            lead(1, None, Status::New),
            lead(2, None, Status::New),
            Arc::new(overdue),
            Arc::new(blocked),
        ];
        let d = Digest::build(&leads, &cal, 3 * 86_400, MONDAY_10);
        let counts: Vec<_> = d.queues.iter().map(|q| (q.name, q.leads.len())).collect();
        assert_eq!(
            counts,
            [
                ("New and unassigned", 2),
                ("Waiting first response", 2),
                ("Follow-ups due today", 1),
                ("Overdue", 1),
                ("Blocked (needs internal input)", 1),
                ("High value idle", 0),
                ("Escalated", 1)
            ]
        );
        assert_eq!(d.unassigned, 2);
        assert_eq!(
            d.subject(),
            "Sales inbox review for 2026-11-23: 1 overdue, 2 unassigned"
        );
        let text = d.text();
        assert!(text.contains("Overdue (1):"), "{text}");
        assert!(
            text.contains("2026-11-23 09:59 !"),
            "due in the calendar's zone, marked overdue: {text}"
        );
        assert!(text.contains("High value idle: none"), "{text}");
    }

    #[test]
    fn only_the_top_ten_are_listed() {
        let cal = Calendar::default();
        let leads: Vec<_> = (1..=13).map(|i| lead(i, None, Status::New)).collect();
        let text = Digest::build(&leads, &cal, 86_400, MONDAY_10).text();
        assert!(text.contains("New and unassigned (13):"), "{text}");
        assert!(text.contains("... and 3 more"), "{text}");
    }

    #[test]
    fn the_mail_has_ascii_headers_and_a_quoted_printable_body() {
        let cal = Calendar::default();
        let mut l = (*lead(1, None, Status::New)).clone();
        l.subject = "Orçamento für 25 Nutzer — bitte".into();
        let d = Digest::build(&[Arc::new(l)], &cal, 86_400, MONDAY_10);
        let mail = digest_mail(&d, "sales@example.com", "maria@example.com", "gw.test");
        assert!(mail.is_ascii(), "the whole message is 7-bit");
        let text = String::from_utf8(mail.clone()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("From: leadgate <sales@example.com>\r\n"));
        assert!(head.contains("To: <maria@example.com>\r\n"));
        assert!(head
            .contains("Subject: Sales inbox review for 2026-11-23: 0 overdue, 1 unassigned\r\n"));
        assert!(head.contains("Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"));
        assert!(head.contains("@gw.test>\r\n"));
        assert!(body.lines().all(|l| l.len() <= 76));
        let parsed = mail_parser::MessageParser::default().parse(&mail).unwrap();
        let decoded = parsed.body_text(0).unwrap();
        assert!(decoded.contains("Orçamento für 25 Nutzer"), "{decoded}");
        assert!(decoded.contains("New and unassigned (1):"), "{decoded}");
    }

    fn config(dir: &std::path::Path) -> Config {
        Config::parse(&format!(
            r#"
[[imap.listener]]
addr = "127.0.0.1:1143"
tls = "plaintext"
[upstream.imap]
host = "127.0.0.1"
port = 143
tls = "none"
username = "sales"
password = "pw"
[store]
path = "{}/s.redb"
[digest]
time = "08:30"
"#,
            dir.display()
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn one_digest_per_manager_per_business_day_from_the_configured_time() {
        use crate::{leads::book::ManualClock, store::users::User};
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let store = Store::open(&config.store.path).unwrap();
        for (name, role, email) in [
            ("maria", Role::Manager, Some("maria@example.com")),
            ("mo", Role::Manager, None),
            ("alice", Role::Rep, Some("alice@example.com")),
        ] {
            let user = User {
                name: name.into(),
                role,
                enabled: true,
                password_hash: "x".into(),
                email: email.map(str::to_owned),
                display_name: None,
                created: 0,
                changed: 0,
            };
            store.user_add("t", user).await.unwrap().unwrap();
        }
        let clock = Arc::new(ManualClock::new(MONDAY_10 - 2 * 3600)); // 08:00
        let book =
            LeadBook::load(store.clone(), Arc::new(config.leads.clone()), clock.clone()).unwrap();
        let outbox = std::sync::Mutex::new(Vec::<(String, Vec<String>, Vec<u8>)>::new());
        let fail = std::sync::atomic::AtomicBool::new(true);
        let send = |from: String, rcpt: Vec<String>, body: Vec<u8>| {
            let failing = fail.load(std::sync::atomic::Ordering::SeqCst);
            if !failing {
                outbox.lock().unwrap().push((from, rcpt, body));
            }
            async move {
                if failing {
                    Err("451 try later".to_owned())
                } else {
                    Ok(())
                }
            }
        };
        let mut retry = HashMap::new();
        let at = |t: i64| {
            clock.set(t);
            t
        };
        // 08:00: too early.
        let now = at(MONDAY_10 - 2 * 3600);
        assert!(send_due(&book, &store, &config, now, &mut retry, send)
            .await
            .unwrap()
            .is_empty());
        // 08:30: due, but the relay refuses; retried five minutes later.
        let now = at(MONDAY_10 - 90 * 60);
        assert!(send_due(&book, &store, &config, now, &mut retry, send)
            .await
            .unwrap()
            .is_empty());
        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        let now = at(MONDAY_10 - 88 * 60);
        assert!(send_due(&book, &store, &config, now, &mut retry, send)
            .await
            .unwrap()
            .is_empty());
        let now = at(MONDAY_10 - 85 * 60);
        assert_eq!(
            send_due(&book, &store, &config, now, &mut retry, send)
                .await
                .unwrap(),
            ["maria"]
        );
        // Sent once: not again today, not after a restart either.
        let now = at(MONDAY_10 + 3600);
        assert!(
            send_due(&book, &store, &config, now, &mut HashMap::new(), send)
                .await
                .unwrap()
                .is_empty()
        );
        let mails = outbox.lock().unwrap().clone();
        assert_eq!(mails.len(), 1);
        let (from, rcpt, body) = &mails[0];
        assert_eq!(from, "sales@example.com");
        assert_eq!(rcpt, &["maria@example.com"]);
        assert!(String::from_utf8_lossy(body)
            .contains("Subject: Sales inbox review for 2026-11-23: 0 overdue, 0 unassigned"));
        // Saturday: no digest.
        let now = at(MONDAY_10 + 5 * 86_400);
        assert!(send_due(&book, &store, &config, now, &mut retry, send)
            .await
            .unwrap()
            .is_empty());
        // Tuesday: the next one.
        let now = at(MONDAY_10 + 86_400);
        assert_eq!(
            send_due(&book, &store, &config, now, &mut retry, send)
                .await
                .unwrap(),
            ["maria"]
        );
        let mut sent = Vec::new();
        store
            .audit_events(
                &crate::store::audit::AuditFilter {
                    action_prefix: Some("digest.".into()),
                    ..Default::default()
                },
                |e| {
                    sent.push(e.reason.clone());
                    true
                },
            )
            .unwrap();
        assert_eq!(
            sent,
            [
                "to maria <maria@example.com> for 2026-11-23: 0 overdue, 0 unassigned",
                "to maria <maria@example.com> for 2026-11-24: 0 overdue, 0 unassigned"
            ]
        );
    }

    #[test]
    fn a_digest_time_that_is_not_hh_mm_is_refused_showing_the_line() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            config(dir.path()).digest.time,
            chrono::NaiveTime::from_hms_opt(8, 30, 0).unwrap()
        );
        let text = format!(
            "[[imap.listener]]\naddr = \"127.0.0.1:1\"\ntls = \"plaintext\"\n\
             [upstream.imap]\nhost = \"127.0.0.1\"\nport = 1\ntls = \"none\"\n\
             username = \"s\"\npassword = \"p\"\n[store]\npath = \"{}/s\"\n\
             [digest]\ntime = \"8.30am\"\n",
            dir.path().display()
        );
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("time = ") && err.contains("HH:MM"), "{err}");
    }
}
