//! Sample sales threads for the demo and the tests, covering the brief's
//! categories: quote requests, demo requests, partner referrals, existing
//! customers, a vendor pitch, support handoffs, some already answered.
#![allow(dead_code)]

pub struct Thread {
    pub from_name: &'static str,
    pub from: &'static str,
    pub subject: &'static str,
    pub body: &'static str,
    /// Text of the team's reply (filed in the shared Sent), if answered.
    pub reply: Option<&'static str>,
    /// Text of the customer's answer to that reply.
    pub followup: Option<&'static str>,
}

pub const THREADS: &[Thread] = &[
    Thread { from_name: "Dana Whitfield", from: "dana@northwind-logistics.test", subject: "Quote request: 40 seats, annual plan", body: "Hi,\n\nWe are evaluating tools for our dispatch team. Could you send a quote for 40 seats on an annual plan? Budget is approved for Q1.\n\nThanks,\nDana", reply: Some("Hi Dana,\n\nThanks for reaching out. A quote for 40 annual seats is attached; happy to walk you through it.\n\nBest"), followup: Some("Thanks! Can you include onboarding in the quote?") },
    Thread { from_name: "Raj Patel", from: "raj@brightpath.test", subject: "Demo request for our ops team", body: "Hello,\n\nCould we book a 30 minute demo next week? Our operations lead and CFO will join.\n\nRaj", reply: None, followup: None },
    Thread { from_name: "Lena Schulz", from: "lena.schulz@hanse-partner.test", subject: "Partner introduction: Hanse Consulting", body: "Hi team,\n\nWe implement CRM tooling for mid-size logistics firms in Germany and would like to discuss a referral partnership.\n\nBeste Grüße,\nLena", reply: Some("Hi Lena,\n\nGreat to hear from you. Let's set up a call with our partnerships lead."), followup: None },
    Thread { from_name: "Tom Becker", from: "tom@acme-corp.test", subject: "Adding 15 more users to our account", body: "Hi,\n\nWe're an existing customer (Acme Corp) and want to expand our plan by 15 users. What are the next steps?\n\nTom", reply: None, followup: None },
    Thread { from_name: "Priya Nair", from: "priya@quantumleaf.test", subject: "Pricing for enterprise tier?", body: "Hello,\n\nWhat does the enterprise tier cost for ~200 users with SSO and audit logs? We need a proposal by Friday.\n\nPriya", reply: Some("Hi Priya,\n\nEnterprise pricing for 200 users is in the attached proposal, including SSO and audit logs."), followup: Some("Received, thank you. Our procurement will review.") },
    Thread { from_name: "Marco Rossi", from: "marco@rossi-imports.test", subject: "Do you ship to Italy?", body: "Buongiorno,\n\nWe import office equipment and are interested in a bulk order. Do you deliver to Milan?\n\nMarco", reply: None, followup: None },
    Thread { from_name: "Growth Hackers Inc", from: "outreach@growthhackers-leads.test", subject: "10x your pipeline with our lead lists", body: "Hi there,\n\nWe sell verified B2B lead lists. 50% off this week only! Reply to get a sample.\n\nCheers", reply: None, followup: None },
    Thread { from_name: "Sam Ortega", from: "sam@ortega-dental.test", subject: "Login problem after password reset", body: "Hello,\n\nI reset my password and now I can't log in to the app. Can support help?\n\nSam", reply: None, followup: None },
    Thread { from_name: "Hannah Lee", from: "hannah@lee-architects.test", subject: "Request for a quote - 8 licences", body: "Hi,\n\nSmall architecture studio here. Could you quote 8 licences, monthly billing?\n\nHannah", reply: Some("Hi Hannah,\n\nHere is the quote for 8 monthly licences."), followup: None },
    Thread { from_name: "Oliver Grant", from: "oliver.grant@summit-health.test", subject: "URGENT: need a proposal before board meeting", body: "Hello,\n\nOur board meets Tuesday. We need a proposal for 500 users (est. budget $120,000) by Monday. Who can help?\n\nOliver", reply: None, followup: None },
    Thread { from_name: "Aisha Mensah", from: "aisha@kumasi-tech.test", subject: "Referral from Lena at Hanse Consulting", body: "Hi,\n\nLena Schulz suggested we talk. We run 3 warehouses and want to see your routing module.\n\nAisha", reply: None, followup: None },
    Thread { from_name: "Ben Carter", from: "ben@carter-legal.test", subject: "Demo of the reporting features", body: "Hi,\n\nCan you show us the reporting dashboard? Thursday afternoon works for us.\n\nBen", reply: Some("Hi Ben,\n\nThursday 3pm works. Invite sent."), followup: Some("Great, see you then.") },
    Thread { from_name: "Yuki Tanaka", from: "yuki@sakura-retail.test", subject: "Question about volume discounts", body: "Hello,\n\nDo you offer volume discounts above 100 seats? We might roll out to all stores.\n\nYuki", reply: None, followup: None },
    Thread { from_name: "Carlos Mendes", from: "carlos@mendes-agro.test", subject: "Quote for annual contract renewal + upgrade", body: "Hi,\n\nOur contract renews next month. Please quote the renewal and an upgrade to the Pro tier.\n\nCarlos", reply: None, followup: None },
    Thread { from_name: "Emma Wilson", from: "emma@wilson-events.test", subject: "Trial extension?", body: "Hi,\n\nOur trial ends tomorrow but our team needs another week to evaluate. Is an extension possible?\n\nEmma", reply: Some("Hi Emma,\n\nExtended your trial by 7 days."), followup: None },
    Thread { from_name: "Nikolai Petrov", from: "nikolai@baltic-freight.test", subject: "Integration with our ERP", body: "Hello,\n\nBefore we buy: does your product integrate with SAP Business One? We'd need that for 60 users.\n\nNikolai", reply: None, followup: None },
    Thread { from_name: "Fatima Zahra", from: "fatima@atlas-textiles.test", subject: "Request for pricing sheet", body: "Hi,\n\nCould you send your current pricing sheet and payment terms?\n\nFatima", reply: None, followup: None },
    Thread { from_name: "George Hall", from: "george@acme-corp.test", subject: "Acme: invoice question and seat count", body: "Hi,\n\nAcme Corp again. Our invoice shows 45 seats but we have 50 users now. Can we add 5?\n\nGeorge", reply: None, followup: None },
    Thread { from_name: "Isabel Cruz", from: "isabel@cruz-foods.test", subject: "Demo request - food distribution", body: "Hello,\n\nWe distribute fresh produce to 200 restaurants. Could we get a demo focused on route planning?\n\nIsabel", reply: Some("Hi Isabel,\n\nHappy to. How about Monday 10am?"), followup: Some("Monday 10am is perfect.") },
    Thread { from_name: "SEO Masters", from: "promo@seo-masters.test", subject: "Rank #1 on Google guaranteed", body: "Dear business owner,\n\nWe guarantee first page rankings. Limited offer.\n\nSEO Masters", reply: None, followup: None },
    Thread { from_name: "Peter Novak", from: "peter@novak-print.test", subject: "How do I export my data?", body: "Hi,\n\nI need to export all our customer records to CSV. Where is that in the app?\n\nPeter", reply: None, followup: None },
    Thread { from_name: "Grace O'Neil", from: "grace@oneil-partners.test", subject: "Partnership: reseller program", body: "Hi,\n\nWe're an IT reseller in Ireland. Do you have a reseller programme with margins?\n\nGrace", reply: None, followup: None },
    Thread { from_name: "Victor Hugo Lima", from: "victor@lima-construcoes.test", subject: "Orçamento / quote for 25 users", body: "Olá,\n\nWe need a quote for 25 users, paid yearly, with Portuguese support if possible.\n\nVictor", reply: None, followup: None },
    Thread { from_name: "Sofia Andersson", from: "sofia@nordic-clinics.test", subject: "Security questionnaire before purchase", body: "Hi,\n\nOur procurement requires a security questionnaire (SOC 2, data residency). Can you fill it in? Deal size around 80 seats.\n\nSofia", reply: Some("Hi Sofia,\n\nWe'll return the questionnaire by Wednesday."), followup: None },
    Thread { from_name: "Daniel Kim", from: "daniel@kim-robotics.test", subject: "Pilot for our engineering team", body: "Hello,\n\nWe'd like to run a 30-day pilot with 10 engineers. What would that cost?\n\nDaniel", reply: None, followup: None },
    Thread { from_name: "Laura Martin", from: "laura@martin-hotels.test", subject: "Quote: 12 hotels, 150 users", body: "Hi,\n\nWe manage 12 hotels and would roll out to 150 staff. Please send a quote and case studies from hospitality.\n\nLaura", reply: None, followup: None },
    Thread { from_name: "Ahmed Hassan", from: "ahmed@nile-trading.test", subject: "Demo in Arabic?", body: "Hello,\n\nIs it possible to have the demo in Arabic for our Cairo office?\n\nAhmed", reply: None, followup: None },
    Thread { from_name: "Chloe Dubois", from: "chloe@dubois-design.test", subject: "Upgrade from Basic to Pro", body: "Bonjour,\n\nWe're on Basic and want Pro for the whole team of 9. How does billing work mid-cycle?\n\nChloé", reply: None, followup: None },
    Thread { from_name: "Office Supplies Co", from: "sales@office-supplies-co.test", subject: "Your office supply order catalogue", body: "Hello,\n\nPlease find our new catalogue of office supplies attached.\n\nRegards", reply: None, followup: None },
    Thread { from_name: "Martin Svoboda", from: "martin@svoboda-auto.test", subject: "Follow-up on last week's call", body: "Hi,\n\nFollowing up on our call last week - did you get a chance to prepare the quote for 35 seats?\n\nMartin", reply: None, followup: None },
];

/// The address of the shared mailbox in the seed data.
pub const SHARED: &str = "sales@example.com";

#[allow(clippy::too_many_arguments)]
fn rfc822(
    from_name: &str,
    from: &str,
    to: &str,
    subject: &str,
    id: &str,
    reply_to_ids: &[String],
    date: &str,
    body: &str,
) -> Vec<u8> {
    let mut h = format!("From: {from_name} <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <{id}>\r\n");
    if let Some(parent) = reply_to_ids.last() {
        h.push_str(&format!(
            "In-Reply-To: <{parent}>\r\nReferences: {}\r\n",
            reply_to_ids
                .iter()
                .map(|i| format!("<{i}>"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    h.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
    h.push_str(&body.replace('\n', "\r\n"));
    h.push_str("\r\n");
    h.into_bytes()
}

/// What seeding does for one thread.
pub enum SeedStep {
    /// Deliver through Postfix to the shared mailbox.
    Inbound {
        from: &'static str,
        message: Vec<u8>,
    },
    /// File in the shared mailbox's Sent folder.
    Sent { message: Vec<u8> },
}

/// All seed messages in delivery order.
pub fn steps() -> Vec<SeedStep> {
    let mut out = Vec::new();
    let base =
        chrono::DateTime::parse_from_rfc3339("2026-11-09T08:00:00+00:00").expect("valid date");
    let date = |hours: i64| (base + chrono::Duration::hours(hours)).to_rfc2822();
    for (i, t) in THREADS.iter().enumerate() {
        let at = (i as i64) * 9;
        let first_id = format!("seed-{i}-1@{}", t.from.split('@').nth(1).unwrap_or("x"));
        out.push(SeedStep::Inbound {
            from: t.from,
            message: rfc822(
                t.from_name,
                t.from,
                SHARED,
                t.subject,
                &first_id,
                &[],
                &date(at),
                t.body,
            ),
        });
        if let Some(reply) = t.reply {
            let reply_id = format!("seed-{i}-2@example.com");
            out.push(SeedStep::Sent {
                message: rfc822(
                    "Sales Team",
                    SHARED,
                    t.from,
                    &format!("Re: {}", t.subject),
                    &reply_id,
                    std::slice::from_ref(&first_id),
                    &date(at + 3),
                    reply,
                ),
            });
            if let Some(followup) = t.followup {
                let id = format!("seed-{i}-3@{}", t.from.split('@').nth(1).unwrap_or("x"));
                out.push(SeedStep::Inbound {
                    from: t.from,
                    message: rfc822(
                        t.from_name,
                        t.from,
                        SHARED,
                        &format!("Re: {}", t.subject),
                        &id,
                        &[first_id.clone(), reply_id],
                        &date(at + 26),
                        followup,
                    ),
                });
            }
        }
    }
    out
}

/// Number of messages seeding puts in the shared INBOX.
pub fn inbound_count() -> usize {
    steps()
        .iter()
        .filter(|s| matches!(s, SeedStep::Inbound { .. }))
        .count()
}

/// Enquiries nobody answered for days: appended straight to the shared
/// INBOX with an old INTERNALDATE (the demo's Overdue queue, and what the
/// digest test reads). Each is (days ago, thread).
pub const WAITING_SINCE: &[(i64, Thread)] = &[
    (5, Thread { from_name: "Ines Duarte", from: "ines@duarte-pharma.test", subject: "Quote for 60 seats, needed this month", body: "Hello,\n\nWe asked last week already: could you quote 60 seats? We want to sign this month.\n\nInes", reply: None, followup: None }),
    (6, Thread { from_name: "Kofi Boateng", from: "kofi@accra-logistics.test", subject: "Demo for our dispatch office", body: "Hi,\n\nCan we get a demo for our dispatch office? Any day next week.\n\nKofi", reply: None, followup: None }),
    (8, Thread { from_name: "Mia Jensen", from: "mia@jensen-bikes.test", subject: "Pricing for 3 shops", body: "Hej,\n\nWhat would it cost for our 3 shops, about 20 users?\n\nMia", reply: None, followup: None }),
];

/// The messages of [`WAITING_SINCE`], each with the INTERNALDATE to append
/// it with ("23-Nov-2026 10:00:00 +0000"), relative to `now`.
pub fn waiting_since(now: chrono::DateTime<chrono::Utc>) -> Vec<(String, Vec<u8>)> {
    WAITING_SINCE
        .iter()
        .enumerate()
        .map(|(i, (days, t))| {
            let at = now - chrono::Duration::days(*days);
            let id = format!("waiting-{i}@{}", t.from.split('@').nth(1).unwrap_or("x"));
            let message = rfc822(
                t.from_name,
                t.from,
                SHARED,
                t.subject,
                &id,
                &[],
                &at.to_rfc2822(),
                t.body,
            );
            (at.format("%d-%b-%Y %H:%M:%S +0000").to_string(), message)
        })
        .collect()
}
