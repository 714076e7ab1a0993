//! Crash safety: leadgate is killed with SIGKILL at random points (a seeded
//! xorshift; the seed is printed and `LEADGATE_CRASH_SEED` repeats a run)
//! while it ingests a burst of deliveries, while reps claim leads by moving
//! mail to `Assign to/...`, and while it relays replies. After each restart:
//! every upstream message is indexed exactly once, no lead is lost or
//! duplicated, every acknowledged change is still there, the audit chain
//! verifies, and no reply is lost after its 250 or relayed twice (except
//! when killed between the relay's 250 and recording it, which leadgate
//! cannot tell from a failed relay: then it relays the retry and reports
//! a possible duplicate, and only such a reported duplicate is allowed).
//!
//! A few kill points by default; `LEADGATE_LONG_TESTS=1` runs many more.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use common::*;
use serde_json::Value;

const CONFIG: &str = r#"
[[smtp.listener]]
addr = "127.0.0.1:0"
tls = "plaintext"

[smtp.relay]
host = "127.0.0.1"
port = {POSTFIX_PORT}
tls = "none"
timeout_secs = 10

[leads]
shared_address = "sales@example.com"

[[leads.assignment]]
rule = "unassigned"
"#;

fn setup() -> Setup {
    Setup::new(GatewayOptions {
        extra: CONFIG.into(),
        rep_inbox: "read-only",
        ..Default::default()
    })
}

fn iterations() -> usize {
    if long_tests() {
        15
    } else {
        3
    }
}

fn rng() -> XorShift {
    XorShift::from_env("LEADGATE_CRASH_SEED")
}

/// A customer's enquiry; `reply_to` makes it the next message of a thread.
fn enquiry(from: &str, subject: &str, id: &str, reply_to: Option<&str>) -> Vec<u8> {
    let threading = reply_to
        .map(|r| format!("In-Reply-To: <{r}>\r\nReferences: <{r}>\r\n"))
        .unwrap_or_default();
    format!(
        "From: Customer <{from}>\r\nTo: sales@example.com\r\nSubject: {subject}\r\n{threading}Message-ID: <{id}>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\nPlease send a quote.\r\n"
    )
    .into_bytes()
}

/// Message-ID -> (lead id, owner) of every INBOX message, read through
/// leadgate's stamped headers. Panics on a duplicate Message-ID.
fn inbox_through_leadgate(c: &mut Client) -> BTreeMap<String, (String, String)> {
    let sel = c.run("SELECT INBOX");
    assert!(sel.ok(), "{}", sel.text);
    if sel.text.contains("* 0 EXISTS") {
        return BTreeMap::new();
    }
    let r = c.run("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID X-LEAD-ID X-LEAD-OWNER)])");
    assert!(r.ok(), "{}", r.text);
    let mut out = BTreeMap::new();
    for part in r.text.split("* ").skip(1) {
        let ids = header_values(part, "Message-ID");
        let lead = header_values(part, "X-Lead-Id");
        let owner = header_values(part, "X-Lead-Owner");
        let (Some(id), Some(lead), Some(owner)) = (ids.first(), lead.first(), owner.first()) else {
            continue;
        };
        let prev = out.insert(id.clone(), (lead.clone(), owner.clone()));
        assert!(prev.is_none(), "{id} is in INBOX twice through leadgate");
    }
    out
}

/// Message-IDs in a folder through leadgate; panics on duplicates.
fn folder_ids(c: &mut Client, folder: &str) -> BTreeSet<String> {
    let sel = c.run(&format!("SELECT \"{folder}\""));
    assert!(sel.ok(), "{}", sel.text);
    if sel.text.contains("* 0 EXISTS") {
        return BTreeSet::new();
    }
    let r = c.run("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])");
    assert!(r.ok(), "{}", r.text);
    let ids = header_values(&r.text, "Message-ID");
    let set: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(
        set.len(),
        ids.len(),
        "{folder} shows a message twice: {ids:?}"
    );
    set
}

fn lead_map(s: &Setup) -> BTreeMap<u64, Value> {
    s.gateway
        .leads()
        .into_iter()
        .map(|l| (l["id"].as_u64().expect("lead id"), l))
        .collect()
}

/// After a restart: waits until leadgate's INBOX matches Dovecot's and
/// `leads_ready` holds, then checks what must hold after any crash.
fn settle_and_check(
    s: &Setup,
    before: &BTreeMap<u64, Value>,
    leads_ready: impl Fn(&BTreeMap<u64, Value>) -> bool,
) {
    let upstream = mailbox_message_ids(&s.dovecot, SALES, "INBOX");
    let mut maria = s.gateway.login(MARIA.0, MARIA.1);
    let settled = eventually(Duration::from_secs(60), || {
        status_messages(&maria.run("STATUS INBOX (MESSAGES)").text) == upstream.len()
            && leads_ready(&lead_map(s))
            && inbox_through_leadgate(&mut maria)
                .values()
                .all(|(lead, _)| lead.parse::<u64>().is_ok())
    });
    let leads = lead_map(s);
    assert!(
        settled,
        "not settled after restart: leadgate INBOX {} vs Dovecot {}; {} leads",
        status_messages(&maria.run("STATUS INBOX (MESSAGES)").text),
        upstream.len(),
        leads.len()
    );

    // Every upstream message once, and nothing else.
    let inbox = inbox_through_leadgate(&mut maria);
    let want: BTreeSet<String> = upstream.iter().cloned().collect();
    assert_eq!(want.len(), upstream.len(), "Dovecot holds a message twice");
    let got: BTreeSet<String> = inbox.keys().cloned().collect();
    assert_eq!(got, want, "leadgate's INBOX differs from Dovecot's");

    // No lead lost; none duplicated (one lead per contact and subject).
    for (id, lead) in before {
        assert!(
            leads.contains_key(id),
            "lead {id} ({}) was lost in the crash",
            lead["subject"]
        );
    }
    let mut seen = BTreeMap::new();
    for (id, l) in &leads {
        let key = (
            l["contact_email"].as_str().unwrap_or("").to_owned(),
            l["subject"].as_str().unwrap_or("").to_owned(),
        );
        if let Some(other) = seen.insert(key.clone(), *id) {
            panic!("leads {other} and {id} are the same thread: {key:?}");
        }
    }
    // Every message's stamp names an existing lead.
    for (msg, (lead, _)) in &inbox {
        let id: u64 = lead.parse().unwrap_or(0);
        assert!(
            leads.contains_key(&id),
            "{msg} is stamped with lead {lead}, which does not exist"
        );
    }

    // The unassigned queue shows exactly the messages of unassigned leads.
    let want_unassigned: BTreeSet<String> = inbox
        .iter()
        .filter(|(_, (_, owner))| owner == "unassigned")
        .map(|(id, _)| id.clone())
        .collect();
    let mut bob = s.gateway.login(BOB.0, BOB.1);
    assert_eq!(
        folder_ids(&mut bob, "Leads/Unassigned"),
        want_unassigned,
        "Leads/Unassigned is stale after the restart"
    );

    let (ok, text) = s.gateway.audit_verify();
    assert!(ok, "audit verify after the crash: {text}");
}

#[test]
fn sigkill_during_an_ingest_burst_loses_and_duplicates_nothing() {
    let mut s = setup();
    let mut rng = rng();
    for k in 0..iterations() {
        let before = lead_map(&s);
        let base = s.upstream_count();
        let port = s.postfix.smtp_port;
        // 20 new threads, 30 messages: 10 of the customers write twice.
        let burst = std::thread::spawn(move || {
            for j in 0..30 {
                let who = j % 20;
                let from = format!("c{who}@k{k}.crash.test");
                let subject = format!("Quote for {} seats", 10 + who);
                let id = format!("k{k}-{j}@crash.test");
                let first = format!("k{k}-{who}@crash.test");
                let reply_to = (j >= 20).then_some(first.as_str());
                let subject = if j >= 20 {
                    format!("Re: {subject}")
                } else {
                    subject
                };
                testbed::smtp_send(
                    port,
                    &from,
                    &["sales@example.com"],
                    &enquiry(&from, &subject, &id, reply_to),
                )
                .expect("deliver through postfix");
            }
        });
        let wait = rng.below(1000);
        std::thread::sleep(Duration::from_millis(wait));
        let seen = lead_map(&s);
        s.gateway.kill9();
        eprintln!(
            "ingest burst {k}: killed after {wait} ms with {} leads",
            seen.len()
        );
        burst.join().expect("burst");
        assert!(
            eventually(Duration::from_secs(30), || s.upstream_count() >= base + 30),
            "postfix did not deliver the burst"
        );
        s.gateway.start();
        let domain = format!("@k{k}.crash.test");
        settle_and_check(&s, &seen, |leads| {
            leads
                .values()
                .filter(|l| {
                    l["contact_email"]
                        .as_str()
                        .is_some_and(|e| e.ends_with(&domain))
                })
                .count()
                == 20
        });
        // And the leads of the burst: one per customer, its messages in it.
        let leads = lead_map(&s);
        let burst_leads: Vec<&Value> = leads
            .values()
            .filter(|l| {
                l["contact_email"]
                    .as_str()
                    .is_some_and(|e| e.ends_with(&domain))
            })
            .collect();
        assert_eq!(burst_leads.len(), 20, "{burst_leads:#?}");
        assert!(before.keys().all(|id| leads.contains_key(id)));
    }
}

/// A rep that claims one unassigned lead after the other; records the
/// claims leadgate acknowledged with OK. Stops when the connection breaks.
fn claimer(
    addr: std::net::SocketAddr,
    user: (&'static str, &'static str),
    newest_first: bool,
    acked: Arc<Mutex<Vec<(u64, &'static str)>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(tcp) = std::net::TcpStream::connect(addr) else {
            return;
        };
        let mut c = Client::over_tcp(tcp);
        if !c
            .try_run(&format!("LOGIN {} {}", user.0, user.1))
            .is_ok_and(|r| r.ok())
        {
            return;
        }
        if !c
            .try_run("SELECT \"Leads/Unassigned\"")
            .is_ok_and(|r| r.ok())
        {
            return;
        }
        while !stop.load(Ordering::Relaxed) {
            let Ok(r) = c.try_run("UID SEARCH ALL") else {
                return;
            };
            let uids = r.search();
            let Some(&uid) = (if newest_first {
                uids.last()
            } else {
                uids.first()
            }) else {
                return;
            };
            let Ok(r) = c.try_run(&format!(
                "UID FETCH {uid} (BODY.PEEK[HEADER.FIELDS (X-LEAD-ID)])"
            )) else {
                return;
            };
            let Some(lead) = header_values(&r.text, "X-Lead-Id")
                .first()
                .and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            match c.try_run(&format!("UID MOVE {uid} \"Assign to/{}\"", user.0)) {
                Ok(r) if r.ok() => acked.lock().unwrap().push((lead, user.0)),
                Ok(_) => {}
                Err(_) => return,
            }
        }
    })
}

#[test]
fn sigkill_during_claims_keeps_every_acknowledged_claim() {
    let mut s = setup();
    let mut rng = rng();
    for k in 0..iterations() {
        let base = s.upstream_count();
        // Fresh unassigned leads to fight over.
        for j in 0..30 {
            let from = format!("lead{j}@claim{k}.crash.test");
            s.deliver(
                &from,
                &enquiry(
                    &from,
                    &format!("Demo request {j}"),
                    &format!("claim{k}-{j}@crash.test"),
                    None,
                ),
            );
        }
        assert!(
            eventually(Duration::from_secs(30), || s.upstream_count() >= base + 30),
            "postfix did not deliver"
        );
        let domain = format!("@claim{k}.crash.test");
        assert!(
            eventually(Duration::from_secs(30), || {
                let mut bob = s.gateway.login(BOB.0, BOB.1);
                status_messages(&bob.run("STATUS \"Leads/Unassigned\" (MESSAGES)").text) >= 30
            }),
            "the new leads did not reach Leads/Unassigned"
        );
        // The listener's port changes with every restart.
        let addr_now = s.gateway.addr("plaintext");
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let a = claimer(addr_now, ALICE, false, acked.clone(), stop.clone());
        let b = claimer(addr_now, BOB, true, acked.clone(), stop.clone());
        let wait = rng.below(400);
        std::thread::sleep(Duration::from_millis(wait));
        let seen = lead_map(&s);
        s.gateway.kill9();
        stop.store(true, Ordering::Relaxed);
        let _ = a.join();
        let _ = b.join();
        let acked = acked.lock().unwrap().clone();
        eprintln!(
            "claims {k}: killed after {wait} ms, {} claims acknowledged",
            acked.len()
        );
        s.gateway.start();
        settle_and_check(&s, &seen, |leads| {
            leads
                .values()
                .filter(|l| {
                    l["contact_email"]
                        .as_str()
                        .is_some_and(|e| e.ends_with(&domain))
                })
                .count()
                == 30
        });
        let leads = lead_map(&s);
        for (lead, user) in &acked {
            assert_eq!(
                leads[lead]["owner"].as_str(),
                Some(*user),
                "lead {lead}: the claim by {user} was acknowledged but lost: {}",
                leads[lead]
            );
            let out = s.gateway.cli(
                &[
                    "audit",
                    "export",
                    "--lead",
                    &lead.to_string(),
                    "--action",
                    "lead.assign",
                ],
                None,
            );
            assert!(
                String::from_utf8_lossy(&out.stdout).contains(user),
                "lead {lead}: no audited assignment to {user}"
            );
        }
        // Every lead is either unassigned or owned by one of the claimers.
        for l in leads.values() {
            if l["contact_email"]
                .as_str()
                .is_some_and(|e| e.ends_with(&domain))
            {
                let owner = l["owner"].as_str();
                assert!(
                    owner.is_none() || owner == Some("alice") || owner == Some("bob"),
                    "{l}"
                );
            }
        }
    }
}

/// How one submission ended.
#[derive(Debug, Clone, PartialEq)]
enum Sent {
    Accepted,
    Refused(u16),
    /// The connection broke before the answer: the message may or may not
    /// have gone out.
    InFlight,
}

fn reply(k: usize, i: usize, lead_msg: &str) -> (String, Vec<u8>) {
    let id = format!("reply-{k}-{i}@crash.test");
    let raw = format!(
        "From: Alice <alice@example.com>\r\nTo: customer@customer.test\r\nSubject: Re: Quote {k} (answer {i})\r\nIn-Reply-To: <{lead_msg}>\r\nReferences: <{lead_msg}>\r\nMessage-ID: <{id}>\r\n\r\nHere is answer {i}.\r\n"
    );
    (format!("<{id}>"), raw.into_bytes())
}

#[test]
fn sigkill_during_smtp_replies_never_relays_twice_or_loses_a_250() {
    let mut s = setup();
    let mut rng = rng();
    let mut outcomes: BTreeMap<String, Sent> = BTreeMap::new();
    for k in 0..iterations() {
        let lead_msg = format!("quote{k}@customer.test");
        let n = s.upstream_count();
        s.deliver_and_wait(
            "customer@customer.test",
            &enquiry(
                "customer@customer.test",
                &format!("Quote {k}"),
                &lead_msg,
                None,
            ),
            n + 1,
        );
        assert!(
            eventually(Duration::from_secs(30), || s
                .gateway
                .leads()
                .iter()
                .any(|l| l["subject"].as_str() == Some(&format!("Quote {k}")))),
            "no lead for Quote {k}"
        );
        let addr = s.gateway.addr("smtp-plaintext");
        let lead = lead_msg.clone();
        let sender = std::thread::spawn(move || {
            let mut results = Vec::new();
            let Ok(mut c) = SmtpClient::login(addr, ALICE.0, ALICE.1) else {
                return results;
            };
            for i in 0.. {
                let (id, raw) = reply(k, i, &lead);
                match c.send("alice@example.com", &["customer@customer.test"], &raw) {
                    Ok(r) if r.code == 250 => results.push((id, raw, Sent::Accepted)),
                    Ok(r) => results.push((id, raw, Sent::Refused(r.code))),
                    Err(_) => {
                        results.push((id, raw, Sent::InFlight));
                        return results;
                    }
                }
            }
            results
        });
        let wait = 200 + rng.below(1500);
        std::thread::sleep(Duration::from_millis(wait));
        let seen = lead_map(&s);
        s.gateway.kill9();
        let results = sender.join().expect("sender");
        s.gateway.start();
        // A mail client retries what got no answer; so does this one.
        let mut retried = 0;
        for (id, raw, how) in &results {
            let how = if *how == Sent::InFlight {
                retried += 1;
                let mut c = SmtpClient::login(s.gateway.addr("smtp-plaintext"), ALICE.0, ALICE.1)
                    .expect("login after restart");
                let r = c
                    .send("alice@example.com", &["customer@customer.test"], raw)
                    .expect("retry");
                if r.code == 250 {
                    Sent::Accepted
                } else {
                    Sent::Refused(r.code)
                }
            } else {
                how.clone()
            };
            outcomes.insert(id.clone(), how);
        }
        let accepted = outcomes.values().filter(|o| **o == Sent::Accepted).count();
        eprintln!(
            "replies {k}: killed after {wait} ms; {} submissions, {retried} retried; {accepted} accepted so far",
            results.len()
        );
        assert!(
            results
                .iter()
                .all(|(_, _, h)| !matches!(h, Sent::Refused(_))),
            "a reply was refused: {results:?}",
            results = results.iter().map(|(id, _, h)| (id, h)).collect::<Vec<_>>()
        );

        // Everything that got a 250 reaches the customer exactly once, and
        // nothing else does.
        let settled = eventually(Duration::from_secs(60), || {
            mailbox_message_ids(&s.dovecot, CUSTOMER, "INBOX").len() >= accepted
        });
        std::thread::sleep(Duration::from_secs(2));
        let delivered = mailbox_message_ids(&s.dovecot, CUSTOMER, "INBOX");
        assert!(
            settled,
            "only {} of {accepted} accepted replies arrived",
            delivered.len()
        );
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for id in &delivered {
            *count.entry(id.as_str()).or_default() += 1;
        }
        let sent = mailbox_message_ids(&s.dovecot, SALES, "Sent");
        // Nothing lost after its 250: at the customer, and filed in the
        // shared Sent; nothing refused went out.
        for (id, how) in &outcomes {
            let n = count.get(id.as_str()).copied().unwrap_or(0);
            let filed = sent.iter().filter(|s| *s == id).count();
            match how {
                Sent::Accepted => {
                    assert!(n >= 1, "{id} got 250 but never reached the customer");
                    assert!(
                        filed >= 1,
                        "{id} got 250 but is not filed in the shared Sent"
                    );
                }
                _ => assert_eq!(n, 0, "{id} got no 250 but reached the customer"),
            }
        }
        settle_and_check(&s, &seen, |_| true);
        // Nothing relayed twice: the customer's copies are exactly the
        // replies that got 250, once each (a retry of a reply whose answer
        // was lost in the crash must not go out again).
        // The one exception leadgate cannot avoid (SMTP has no two-phase
        // commit): killed between the relay's 250 and recording it, it
        // cannot know the relay took the message, relays the retry again
        // and says so in its log (and audit). Only such a reported
        // duplicate is allowed, and only once.
        let log = s.gateway.log();
        let reported =
            |id: &str| log.contains(&format!("{id}: leadgate stopped while relaying it"));
        let twice: Vec<_> = count
            .iter()
            .filter(|(id, n)| **n > 2 || (**n == 2 && !reported(id)))
            .collect();
        assert!(
            twice.is_empty(),
            "relayed twice after a crash and the client's retry: {twice:?} (iteration {k}, seed above)"
        );
        let reported_twice = count.iter().filter(|(_, n)| **n == 2).count();
        if reported_twice > 0 {
            eprintln!("replies {k}: {reported_twice} reported duplicate(s) (killed mid-relay)");
        }
        assert_eq!(delivered.len(), accepted + reported_twice);
        for (id, how) in &outcomes {
            if *how == Sent::Accepted {
                let n = sent.iter().filter(|s| *s == id).count();
                assert_eq!(n, 1, "{id} is filed {n} times in the shared Sent");
            }
        }
        let leads = lead_map(&s);
        let lead = leads
            .values()
            .find(|l| l["subject"].as_str() == Some(&format!("Quote {k}")))
            .expect("the lead");
        assert_eq!(lead["owner"].as_str(), Some("alice"), "{lead}");
    }
}

/// Stops (SIGSTOP) or resumes (SIGCONT) every Dovecot process: the test
/// instance runs in its own process group, led by the master.
fn freeze_dovecot(dovecot: &Dovecot, frozen: bool) {
    let pid = std::fs::read_to_string(dovecot.dir.join("run/master.pid")).expect("master.pid");
    let status = std::process::Command::new("kill")
        .args(["-s", if frozen { "STOP" } else { "CONT" }, "--"])
        .arg(format!("-{}", pid.trim()))
        .status()
        .unwrap();
    assert!(status.success());
}

/// A reply accepted while the upstream IMAP server hangs: its copy for the
/// shared Sent is queued durably before the 250 and filed in the
/// background, so the client is not kept waiting; killed before it could
/// file it, leadgate files it after restart — once. The mail client, not
/// sure it was sent (it is killed too, say), sends it again: recognised,
/// answered 250 and not relayed a second time.
#[test]
fn a_reply_accepted_while_dovecot_hangs_is_filed_after_a_crash_and_not_relayed_again() {
    let mut s = setup();
    s.deliver_and_wait(
        "customer@customer.test",
        &enquiry(
            "customer@customer.test",
            "Quote 99",
            "quote99@customer.test",
            None,
        ),
        1,
    );
    assert!(eventually(Duration::from_secs(30), || !s
        .gateway
        .leads()
        .is_empty()));
    let addr = s.gateway.addr("smtp-plaintext");
    let mut c = SmtpClient::login(addr, ALICE.0, ALICE.1).unwrap();
    let (_, first) = reply(99, 0, "quote99@customer.test");
    let r = c
        .send("alice@example.com", &["customer@customer.test"], &first)
        .unwrap();
    assert_eq!(r.code, 250, "{}", r.text);

    freeze_dovecot(&s.dovecot, true);
    let (id, raw) = reply(99, 1, "quote99@customer.test");
    let answer = c.send("alice@example.com", &["customer@customer.test"], &raw);
    s.gateway.kill9();
    freeze_dovecot(&s.dovecot, false);
    let answer = answer.expect("an answer while Dovecot hangs");
    assert_eq!(answer.code, 250, "{}", answer.text);

    s.gateway.start();
    let filed = eventually(Duration::from_secs(60), || {
        mailbox_message_ids(&s.dovecot, SALES, "Sent").contains(&id)
    });
    assert!(filed, "{id} was never filed in the shared Sent");
    let mut c = SmtpClient::login(s.gateway.addr("smtp-plaintext"), ALICE.0, ALICE.1).unwrap();
    let r = c
        .send("alice@example.com", &["customer@customer.test"], &raw)
        .unwrap();
    assert!(
        r.code == 250 && r.text.contains("not sent again"),
        "the resend: {}",
        r.text
    );
    assert!(eventually(Duration::from_secs(60), || {
        mailbox_message_ids(&s.dovecot, CUSTOMER, "INBOX").contains(&id)
    }));
    std::thread::sleep(Duration::from_secs(3));
    let copies = mailbox_message_ids(&s.dovecot, CUSTOMER, "INBOX")
        .iter()
        .filter(|m| **m == id)
        .count();
    assert_eq!(copies, 1, "{id}: the customer got the reply {copies} times");
    let sent = mailbox_message_ids(&s.dovecot, SALES, "Sent")
        .iter()
        .filter(|m| **m == id)
        .count();
    assert_eq!(sent, 1, "{id} is filed {sent} times in the shared Sent");
}
