//! The `[leads]` section of the config file and the decisions it drives for
//! a new lead: its category, its value signals and its owner.
//!
//! Every key has a default, so an empty (or missing) section works, and an
//! unknown key is an error naming it.
//!
//! # Categories
//!
//! `[[leads.categories]]` rules are tried in order and the first that
//! matches wins; without a match a message is a new inbound lead. A rule
//! matches when every criterion it lists matches (`sender_domains`: the
//! sender's domain or a subdomain, `.tld` for a suffix; `keywords`: a
//! word-ish, case-insensitive match in subject or body; `recipients`: an
//! address in To or Cc); a rule without criteria never matches. A known
//! customer (see [`categorize`]) makes the lead an existing customer
//! expansion, unless the message is a support request.
//!
//! # Assignment
//!
//! `[[leads.assignment]]` rules are tried in order; the first that picks an
//! active rep (or explicitly leaves the lead unassigned) wins. A rule whose
//! rep is not active is skipped. Vendor and support messages are never
//! assigned. Round-robin takes `candidates[cursor % len]` and returns
//! `cursor + 1`; the caller persists the cursor, so the rotation stays fair
//! across restarts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    amounts::{self, Mention},
    calendar::{Calendar, CalendarConfig, CalendarError},
    text::{domain_matches, specificity, subject_and_body, Haystack},
    threading::{domain_of, MessageFacts},
    Category,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeadsConfig {
    /// The shared mailbox's address (sales@, hello@, info@).
    pub shared_address: String,
    /// How long after a lead's last activity a message with the same subject
    /// and counterpart still joins it when its headers do not say.
    pub thread_window_days: u32,
    pub calendar: CalendarConfig,
    pub follow_up: FollowUpConfig,
    pub categories: Vec<CategoryRule>,
    pub assignment: Vec<AssignmentRule>,
    pub high_value: HighValueConfig,
    /// Words that mark a lead urgent.
    pub urgent_keywords: Vec<String>,
    /// What a reply to an unassigned lead does.
    pub unassigned_reply: UnassignedReply,
    /// Managers (and admins) may answer customers on any lead.
    pub managers_may_reply_any: bool,
    /// Where support requests are forwarded (resent from the shared
    /// address through the outgoing relay); unset: they stay in the inbox.
    pub support_forward_to: Option<String>,
    /// What the owner rule protects besides the thread: the lead's contact
    /// address, or its whole company domain.
    pub owner_scope: OwnerScope,
    /// Domains anyone can get an address at: `owner_scope = "domain"`
    /// never protects them (a gmail.com customer does not make gmail.com
    /// anyone's account). Subdomains match too.
    pub free_mail_domains: Vec<String>,
    /// Mail a short notice to the new owner (their user email) when a lead
    /// is assigned or handed to them by someone else.
    pub notify_owner: bool,
}

/// Free-mail providers (`[leads] free_mail_domains`): large consumer
/// services whose domain says nothing about a customer's company.
pub const FREE_MAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "hotmail.co.uk",
    "live.com",
    "msn.com",
    "yahoo.com",
    "yahoo.co.uk",
    "ymail.com",
    "aol.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "proton.me",
    "protonmail.com",
    "pm.me",
    "gmx.de",
    "gmx.net",
    "gmx.at",
    "gmx.ch",
    "gmx.com",
    "web.de",
    "t-online.de",
    "freenet.de",
    "posteo.de",
    "mailbox.org",
    "orange.fr",
    "free.fr",
    "laposte.net",
    "libero.it",
    "mail.ru",
    "yandex.ru",
    "yandex.com",
    "qq.com",
    "163.com",
    "126.com",
    "naver.com",
    "zoho.com",
    "fastmail.com",
    "tutanota.com",
    "seznam.cz",
    "wp.pl",
    "o2.pl",
];

impl LeadsConfig {
    /// What policy needs of this section to decide a reply.
    pub fn reply_rules(&self) -> crate::policy::ReplyRules {
        crate::policy::ReplyRules {
            managers_may_reply_any: self.managers_may_reply_any,
            unassigned_reply: self.unassigned_reply,
        }
    }

    /// Whether the owner rule protects this company domain: only with
    /// `owner_scope = "domain"`, never a free-mail domain (or one of its
    /// subdomains), never an empty one.
    pub fn protects_domain(&self, domain: &str) -> bool {
        self.owner_scope == OwnerScope::Domain
            && !domain.is_empty()
            && !self.free_mail_domains.iter().any(|f| {
                let f = f.trim().trim_start_matches('.');
                domain.eq_ignore_ascii_case(f)
                    || domain.len().checked_sub(f.len() + 1).is_some_and(|cut| {
                        domain.as_bytes()[cut] == b'.' && domain[cut + 1..].eq_ignore_ascii_case(f)
                    })
            })
    }
}

impl Default for LeadsConfig {
    fn default() -> Self {
        Self {
            shared_address: "sales@example.com".into(),
            thread_window_days: 30,
            calendar: CalendarConfig::default(),
            follow_up: FollowUpConfig::default(),
            categories: default_category_rules(),
            assignment: default_assignment_rules(),
            high_value: HighValueConfig::default(),
            urgent_keywords: strings(&["urgent", "asap", "today"]),
            unassigned_reply: UnassignedReply::Claim,
            managers_may_reply_any: true,
            support_forward_to: None,
            owner_scope: OwnerScope::Contact,
            free_mail_domains: strings(FREE_MAIL_DOMAINS),
            notify_owner: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FollowUpConfig {
    /// Business days after a reply to the customer at which each chase is
    /// due, counted from that reply: `[2, 5]` is a chase 2 business days
    /// after it and a second one 5 after it. Strictly increasing. When the
    /// last chase went out and `close_after_business_days` more pass
    /// unanswered, the lead is closed as No response, or escalated first
    /// when high value or urgent (see [`engine`](super::engine)).
    pub steps_business_days: Vec<u32>,
    /// Business days the customer has to answer the last chase.
    pub close_after_business_days: u32,
    /// Business hours the team has to answer a customer's message.
    pub response_due_business_hours: u32,
    /// The manager (user name) high-value and urgent leads escalate to
    /// (mailed at once); unset: every manager.
    pub escalate_to: Option<String>,
}

impl Default for FollowUpConfig {
    fn default() -> Self {
        Self {
            steps_business_days: vec![2, 5],
            close_after_business_days: 2,
            response_due_business_hours: 4,
            escalate_to: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HighValueConfig {
    /// Words that mark a lead high value ("enterprise", "rfp").
    pub keywords: Vec<String>,
    /// Sender domains that are always high value.
    pub domains: Vec<String>,
    /// An amount at least this large marks a lead high value.
    pub amount_threshold: u64,
    /// A seat count at least this large marks a lead high value.
    pub seats_threshold: u64,
}

impl Default for HighValueConfig {
    fn default() -> Self {
        Self {
            keywords: Vec::new(),
            domains: Vec::new(),
            amount_threshold: 10_000,
            seats_threshold: 100,
        }
    }
}

pub use crate::model::{OwnerScope, UnassignedReply};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryRule {
    pub category: Category,
    #[serde(default)]
    pub sender_domains: Vec<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub recipients: Vec<String>,
}

impl CategoryRule {
    fn by_keywords(category: Category, keywords: &[&str]) -> Self {
        Self {
            category,
            sender_domains: Vec::new(),
            keywords: strings(keywords),
            recipients: Vec::new(),
        }
    }

    fn has_criteria(&self) -> bool {
        !(self.sender_domains.is_empty() && self.keywords.is_empty() && self.recipients.is_empty())
    }

    /// Every listed criterion matches (and there is at least one).
    fn matches(&self, facts: &MessageFacts, haystack: &Haystack) -> bool {
        let domain = domain_of(&facts.from);
        let sender = || {
            self.sender_domains
                .iter()
                .any(|p| domain_matches(p, &domain))
        };
        let keyword = || self.keywords.iter().any(|k| haystack.contains(k));
        let recipient = || {
            facts.to.iter().chain(&facts.cc).any(|address| {
                self.recipients
                    .iter()
                    .any(|r| r.trim().eq_ignore_ascii_case(address.trim()))
            })
        };
        self.has_criteria()
            && (self.sender_domains.is_empty() || sender())
            && (self.keywords.is_empty() || keyword())
            && (self.recipients.is_empty() || recipient())
    }
}

fn default_category_rules() -> Vec<CategoryRule> {
    use Category::*;
    vec![
        CategoryRule::by_keywords(PricingQuote, &["quote", "pricing", "proposal", "price"]),
        CategoryRule::by_keywords(DemoRequest, &["demo", "walkthrough", "trial"]),
        CategoryRule::by_keywords(
            PartnerReferral,
            &["partner", "referral", "reseller", "referred"],
        ),
        CategoryRule::by_keywords(
            VendorIrrelevant,
            &[
                "unsubscribe",
                "lead list",
                "seo",
                "rank #1",
                "catalogue",
                "guaranteed",
            ],
        ),
        CategoryRule::by_keywords(
            SupportHandoff,
            &[
                "password reset",
                "can't log in",
                "login problem",
                "bug",
                "export my data",
                "error",
            ],
        ),
    ]
}

/// How a new lead finds its owner; tried in order (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AssignmentRule {
    /// Known customers go to their account owner: the `accounts` list first,
    /// then (if `use_previous_owner`) the owner of the domain's last lead.
    ExistingCustomer {
        #[serde(default)]
        accounts: BTreeMap<String, String>,
        #[serde(default = "yes")]
        use_previous_owner: bool,
    },
    /// High-value leads rotate among these (senior) reps; empty: skipped.
    HighValue {
        #[serde(default)]
        reps: Vec<String>,
    },
    /// By the sender's domain (`acme.test`) or suffix (`.de`); the most
    /// specific match wins.
    Territory {
        #[serde(default)]
        domains: BTreeMap<String, String>,
    },
    /// By product keyword in subject or body; the earliest mention wins.
    Product {
        #[serde(default)]
        keywords: BTreeMap<String, String>,
    },
    /// Rotation among these reps; empty: among all active reps.
    RoundRobin {
        #[serde(default)]
        reps: Vec<String>,
    },
    /// Leave leads of these categories (all, when empty) for manual triage.
    Unassigned {
        #[serde(default)]
        categories: Vec<Category>,
    },
}

fn yes() -> bool {
    true
}

fn default_assignment_rules() -> Vec<AssignmentRule> {
    vec![
        AssignmentRule::ExistingCustomer {
            accounts: BTreeMap::new(),
            use_previous_owner: true,
        },
        AssignmentRule::HighValue { reps: Vec::new() },
        AssignmentRule::RoundRobin { reps: Vec::new() },
    ]
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error("config key `leads.calendar`: {0}")]
    Calendar(#[from] CalendarError),
    #[error("config key `leads.{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

/// Longest follow-up step, in business days.
const MAX_STEP_DAYS: u32 = 366;
/// Longest response deadline, in business hours.
const MAX_RESPONSE_HOURS: u32 = 2_000;

impl LeadsConfig {
    /// Checks what serde cannot: the calendar, sane numbers, rules that can
    /// match. Run before the daemon starts.
    pub fn validate(&self) -> Result<(), RulesError> {
        self.calendar()?;
        let invalid = |key: &str, reason: String| {
            Err(RulesError::Invalid {
                key: key.into(),
                reason,
            })
        };
        if !self.shared_address.contains('@') {
            return invalid(
                "shared_address",
                format!("{:?} is not a mail address", self.shared_address),
            );
        }
        if let Some(to) = &self.support_forward_to {
            if !super::header_safe_address(to) {
                return invalid(
                    "support_forward_to",
                    format!("{to:?} is not a plain mail address such as \"support@example.com\""),
                );
            }
        }
        let steps = &self.follow_up.steps_business_days;
        if steps.is_empty() {
            return invalid(
                "follow_up.steps_business_days",
                "needs at least one step (such as [2, 5])".into(),
            );
        }
        if let Some(bad) = steps.iter().find(|&&s| s == 0 || s > MAX_STEP_DAYS) {
            return invalid(
                "follow_up.steps_business_days",
                format!("step {bad} is not between 1 and {MAX_STEP_DAYS} business days"),
            );
        }
        if let Some(w) = steps.windows(2).find(|w| w[1] <= w[0]) {
            return invalid(
                "follow_up.steps_business_days",
                format!(
                    "steps count from the reply, so they must grow: {} comes after {} (for a \
                     chase 2 and another 5 business days after the reply, write [2, 5])",
                    w[1], w[0]
                ),
            );
        }
        let close = self.follow_up.close_after_business_days;
        if close == 0 || close > MAX_STEP_DAYS {
            return invalid(
                "follow_up.close_after_business_days",
                format!("{close} is not between 1 and {MAX_STEP_DAYS} business days"),
            );
        }
        if self.follow_up.response_due_business_hours > MAX_RESPONSE_HOURS {
            return invalid(
                "follow_up.response_due_business_hours",
                format!(
                    "{} is more than {MAX_RESPONSE_HOURS}",
                    self.follow_up.response_due_business_hours
                ),
            );
        }
        for (i, rule) in self.categories.iter().enumerate() {
            if !rule.has_criteria() {
                return invalid(
                    &format!("categories[{i}]"),
                    format!(
                        "the rule for {:?} lists no sender_domains, keywords or recipients",
                        rule.category.slug()
                    ),
                );
            }
        }
        let words = self
            .categories
            .iter()
            .flat_map(|r| &r.keywords)
            .chain(&self.high_value.keywords)
            .chain(&self.urgent_keywords);
        if words.into_iter().any(|w| w.trim().is_empty()) {
            return invalid("keywords", "a keyword is empty".into());
        }
        Ok(())
    }

    /// The business calendar described by `[leads.calendar]`.
    pub fn calendar(&self) -> Result<Calendar, CalendarError> {
        Calendar::from_config(&self.calendar)
    }

    pub fn thread_window_secs(&self) -> u64 {
        u64::from(self.thread_window_days) * 86_400
    }

    /// The account owner listed for a domain in an existing-customer rule.
    pub fn account_owner(&self, domain: &str) -> Option<&str> {
        self.assignment.iter().find_map(|rule| match rule {
            AssignmentRule::ExistingCustomer { accounts, .. } => {
                most_specific(accounts, domain).map(|(_, owner)| owner)
            }
            _ => None,
        })
    }
}

/// The value of the most specific domain pattern that matches.
fn most_specific<'a>(
    patterns: &'a BTreeMap<String, String>,
    domain: &str,
) -> Option<(&'a str, &'a str)> {
    patterns
        .iter()
        .filter(|(pattern, _)| domain_matches(pattern, domain))
        .max_by_key(|(pattern, _)| specificity(pattern))
        .map(|(pattern, value)| (pattern.as_str(), value.as_str()))
}

/// The category of the message that opens a lead. `is_existing_customer` is
/// the caller's knowledge: the domain is in an account list
/// ([`LeadsConfig::account_owner`]) or an earlier lead from it was won.
pub fn categorize(cfg: &LeadsConfig, facts: &MessageFacts, is_existing_customer: bool) -> Category {
    let haystack = Haystack::of(facts);
    let matched = cfg
        .categories
        .iter()
        .find(|rule| rule.matches(facts, &haystack))
        .map(|rule| rule.category);
    match matched {
        Some(Category::SupportHandoff) => Category::SupportHandoff,
        _ if is_existing_customer => Category::ExistingCustomerExpansion,
        Some(category) => category,
        None => Category::NewInbound,
    }
}

/// What a message says about a lead's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValueSignals {
    /// Human-readable findings: "amount: $120,000", "seats: 500 users",
    /// "keyword: rfp", "domain: bigcorp.test", "urgent: asap".
    pub signals: Vec<String>,
    /// An amount or seat count at the threshold, a high-value keyword or
    /// domain.
    pub high_value: bool,
    pub urgent: bool,
}

impl ValueSignals {
    fn note(&mut self, signal: String) {
        if !self.signals.contains(&signal) {
            self.signals.push(signal);
        }
    }
}

/// Amounts, seat counts, high-value keywords and domains, urgent words.
pub fn value_signals(cfg: &LeadsConfig, facts: &MessageFacts) -> ValueSignals {
    let hv = &cfg.high_value;
    let mut out = ValueSignals::default();
    for mention in amounts::scan(&subject_and_body(facts)) {
        match mention {
            Mention::Amount { value, text } => {
                out.high_value |= value >= hv.amount_threshold;
                out.note(format!("amount: {text}"));
            }
            Mention::Seats { count, text } => {
                out.high_value |= count >= hv.seats_threshold;
                out.note(format!("seats: {text}"));
            }
        }
    }
    let haystack = Haystack::of(facts);
    for keyword in hv.keywords.iter().filter(|k| haystack.contains(k)) {
        out.high_value = true;
        out.note(format!("keyword: {}", keyword.trim()));
    }
    let domain = domain_of(&facts.from);
    if hv.domains.iter().any(|d| domain_matches(d, &domain)) {
        out.high_value = true;
        out.note(format!("domain: {domain}"));
    }
    for keyword in cfg.urgent_keywords.iter().filter(|k| haystack.contains(k)) {
        out.urgent = true;
        out.note(format!("urgent: {}", keyword.trim()));
    }
    out
}

/// What the caller knows about the team when a lead is assigned.
#[derive(Debug, Clone, Copy)]
pub struct AssignContext<'a> {
    /// Enabled users with the rep role, sorted.
    pub active_reps: &'a [String],
    /// The owner of the last lead from the sender's domain, if any.
    pub previous_owner_for_domain: Option<&'a str>,
    /// The persisted round-robin position.
    pub round_robin_cursor: u64,
}

impl AssignContext<'_> {
    fn is_active(&self, rep: &str) -> bool {
        self.active_reps.iter().any(|r| r == rep)
    }
}

/// Who a new lead goes to, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub owner: Option<String>,
    /// Human-readable: "round-robin", "existing customer acme.test -> tom".
    pub rule: String,
    /// The round-robin cursor to persist.
    pub next_cursor: u64,
}

/// The owner of a new lead from `facts` (the inbound message that opens it;
/// rules look at the sender's domain). See the module docs.
pub fn assign(
    cfg: &LeadsConfig,
    facts: &MessageFacts,
    category: Category,
    high_value: bool,
    ctx: &AssignContext<'_>,
) -> Assignment {
    let unassigned = |rule: String| Assignment {
        owner: None,
        rule,
        next_cursor: ctx.round_robin_cursor,
    };
    match category {
        Category::VendorIrrelevant => {
            return unassigned("vendor or irrelevant: never assigned".into())
        }
        Category::SupportHandoff => {
            return unassigned(match &cfg.support_forward_to {
                Some(to) => format!("support handoff: never assigned (forward to {to})"),
                None => "support handoff: never assigned".into(),
            })
        }
        _ => {}
    }
    let domain = domain_of(&facts.from);
    let input = RuleInput {
        facts,
        domain: &domain,
        category,
        high_value,
        ctx,
    };
    cfg.assignment
        .iter()
        .find_map(|rule| rule.apply(&input))
        .unwrap_or_else(|| unassigned("no assignment rule matched: left for triage".into()))
}

struct RuleInput<'a> {
    facts: &'a MessageFacts,
    domain: &'a str,
    category: Category,
    high_value: bool,
    ctx: &'a AssignContext<'a>,
}

impl RuleInput<'_> {
    /// An assignment to `rep`, if the rep is active.
    fn to(&self, rep: &str, rule: String) -> Option<Assignment> {
        self.ctx.is_active(rep).then(|| Assignment {
            owner: Some(rep.to_owned()),
            rule,
            next_cursor: self.ctx.round_robin_cursor,
        })
    }

    /// The next of `candidates` (after dropping inactive ones) in rotation.
    fn rotate(&self, candidates: &[String], rule: &str) -> Option<Assignment> {
        let active: Vec<&String> = if candidates.is_empty() {
            self.ctx.active_reps.iter().collect()
        } else {
            candidates
                .iter()
                .filter(|r| self.ctx.is_active(r))
                .collect()
        };
        let len = u64::try_from(active.len()).ok().filter(|&n| n > 0)?;
        let index = usize::try_from(self.ctx.round_robin_cursor % len).ok()?;
        let rep = active.get(index)?;
        Some(Assignment {
            owner: Some(rep.to_string()),
            rule: format!("{rule} -> {rep}"),
            next_cursor: self.ctx.round_robin_cursor.wrapping_add(1),
        })
    }
}

impl AssignmentRule {
    /// The assignment this rule makes, or `None` to try the next rule.
    fn apply(&self, input: &RuleInput<'_>) -> Option<Assignment> {
        let domain = input.domain;
        match self {
            AssignmentRule::ExistingCustomer {
                accounts,
                use_previous_owner,
            } => {
                let listed = most_specific(accounts, domain).and_then(|(_, owner)| {
                    input.to(owner, format!("existing customer {domain} -> {owner}"))
                });
                let previous = || {
                    let owner = input
                        .ctx
                        .previous_owner_for_domain
                        .filter(|_| *use_previous_owner)?;
                    input.to(owner, format!("previous owner for {domain} -> {owner}"))
                };
                listed.or_else(previous)
            }
            AssignmentRule::HighValue { reps } if input.high_value && !reps.is_empty() => {
                input.rotate(reps, "high value")
            }
            AssignmentRule::HighValue { .. } => None,
            AssignmentRule::Territory { domains } => {
                let (pattern, rep) = most_specific(domains, domain)?;
                input.to(rep, format!("territory {pattern} -> {rep}"))
            }
            AssignmentRule::Product { keywords } => {
                let haystack = Haystack::of(input.facts);
                let (keyword, rep) = keywords
                    .iter()
                    .filter_map(|(k, rep)| haystack.find(k).map(|pos| (pos, k, rep)))
                    .min_by_key(|&(pos, _, _)| pos)
                    .map(|(_, k, rep)| (k, rep))?;
                input.to(rep, format!("product keyword {keyword:?} -> {rep}"))
            }
            AssignmentRule::RoundRobin { reps } => input.rotate(reps, "round-robin"),
            AssignmentRule::Unassigned { categories }
                if categories.is_empty() || categories.contains(&input.category) =>
            {
                Some(Assignment {
                    owner: None,
                    rule: format!("{}: left for triage", input.category.label()),
                    next_cursor: input.ctx.round_robin_cursor,
                })
            }
            AssignmentRule::Unassigned { .. } => None,
        }
    }
}

/// Category, value signals and owner of a new lead, decided together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triage {
    pub category: Category,
    pub signals: ValueSignals,
    pub assignment: Assignment,
}

/// [`categorize`], [`value_signals`] and [`assign`] for the message that
/// opens a lead.
pub fn triage(
    cfg: &LeadsConfig,
    facts: &MessageFacts,
    is_existing_customer: bool,
    ctx: &AssignContext<'_>,
) -> Triage {
    let category = categorize(cfg, facts, is_existing_customer);
    let signals = value_signals(cfg, facts);
    let assignment = assign(cfg, facts, category, signals.high_value, ctx);
    Triage {
        category,
        signals,
        assignment,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(from: &str, subject: &str, body: &str) -> MessageFacts {
        MessageFacts {
            from: from.into(),
            to: vec!["sales@example.com".into()],
            subject: subject.into(),
            body_text: body.into(),
            ..MessageFacts::default()
        }
    }

    fn reps(names: &[&str]) -> Vec<String> {
        strings(names)
    }

    fn ctx(active: &[String], cursor: u64) -> AssignContext<'_> {
        AssignContext {
            active_reps: active,
            previous_owner_for_domain: None,
            round_robin_cursor: cursor,
        }
    }

    fn with_rules(rules: Vec<AssignmentRule>) -> LeadsConfig {
        LeadsConfig {
            assignment: rules,
            ..LeadsConfig::default()
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // ---- config ----

    #[test]
    fn an_empty_leads_section_gives_the_defaults() {
        let cfg: LeadsConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, LeadsConfig::default());
        assert_eq!(cfg.follow_up.steps_business_days, [2, 5]);
        assert_eq!(cfg.follow_up.response_due_business_hours, 4);
        assert_eq!(cfg.thread_window_days, 30);
        assert_eq!(cfg.unassigned_reply, UnassignedReply::Claim);
        assert!(cfg.managers_may_reply_any);
        assert_eq!(cfg.validate(), Ok(()));
    }

    #[test]
    fn a_full_leads_section_parses() {
        let cfg: LeadsConfig = toml::from_str(
            r#"
            shared_address = "hello@firma.test"
            unassigned_reply = "refuse"
            urgent_keywords = ["dringend"]

            [calendar]
            time_zone = "Europe/Berlin"
            holidays = [2025-12-25]

            [follow_up]
            steps_business_days = [2, 5, 10]
            escalate_to = "maria"

            [high_value]
            domains = ["bigcorp.test"]
            amount_threshold = 50000

            [[categories]]
            category = "partner-referral"
            recipients = ["partners@firma.test"]

            [[assignment]]
            rule = "existing-customer"
            accounts = { "acme.test" = "tom" }

            [[assignment]]
            rule = "territory"
            domains = { ".de" = "hans", ".fr" = "chloe" }

            [[assignment]]
            rule = "product"
            keywords = { crm = "ana" }

            [[assignment]]
            rule = "unassigned"
            categories = ["demo-request"]

            [[assignment]]
            rule = "round-robin"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.validate(), Ok(()));
        assert_eq!(cfg.unassigned_reply, UnassignedReply::Refuse);
        assert_eq!(cfg.follow_up.escalate_to.as_deref(), Some("maria"));
        assert_eq!(cfg.assignment.len(), 5);
        assert_eq!(
            cfg.assignment[0],
            AssignmentRule::ExistingCustomer {
                accounts: map(&[("acme.test", "tom")]),
                use_previous_owner: true
            }
        );
        assert_eq!(cfg.account_owner("eu.acme.test"), Some("tom"));
        assert_eq!(cfg.categories.len(), 1);
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        for text in [
            "shared_adress = \"x@y\"",
            "[follow_up]\nsteps = [1]",
            "[[assignment]]\nrule = \"round-robin\"\nrepz = []",
            "[[assignment]]\nrule = \"coin-flip\"",
        ] {
            let err = toml::from_str::<LeadsConfig>(text).unwrap_err().to_string();
            let key = ["shared_adress", "steps", "repz", "coin-flip"]
                .into_iter()
                .find(|k| text.contains(k))
                .unwrap();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn validation_names_the_bad_key() {
        let check = |cfg: LeadsConfig, key: &str| {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        };
        let mut cfg = LeadsConfig::default();
        cfg.follow_up.steps_business_days = vec![];
        check(cfg, "steps_business_days");
        let mut cfg = LeadsConfig::default();
        cfg.follow_up.steps_business_days = vec![2, 0];
        check(cfg, "steps_business_days");
        let mut cfg = LeadsConfig::default();
        cfg.follow_up.steps_business_days = vec![5, 2];
        check(cfg, "must grow: 2 comes after 5");
        let mut cfg = LeadsConfig::default();
        cfg.follow_up.close_after_business_days = 0;
        check(cfg, "close_after_business_days");
        let mut cfg = LeadsConfig::default();
        cfg.follow_up.response_due_business_hours = 1_000_000;
        check(cfg, "response_due_business_hours");
        let cfg = LeadsConfig {
            shared_address: "sales".into(),
            ..LeadsConfig::default()
        };
        check(cfg, "shared_address");
        let mut cfg = LeadsConfig::default();
        cfg.calendar.time_zone = "Nowhere/Town".into();
        check(cfg, "Nowhere/Town");
        let mut cfg = LeadsConfig::default();
        cfg.categories
            .push(CategoryRule::by_keywords(Category::DemoRequest, &[]));
        check(cfg, "categories[5]");
        let mut cfg = LeadsConfig::default();
        cfg.urgent_keywords.push(" ".into());
        check(cfg, "keyword");
    }

    // ---- categories ----

    #[test]
    fn default_rules_sort_the_seed_categories() {
        let cfg = LeadsConfig::default();
        let cases = [
            ("Quote for 40 seats", "", Category::PricingQuote),
            ("Question", "What is your pricing?", Category::PricingQuote),
            ("Can we get a demo?", "", Category::DemoRequest),
            (
                "Hello",
                "Jane referred me to you",
                Category::PartnerReferral,
            ),
            ("Reseller enquiry", "", Category::PartnerReferral),
            (
                "Rank #1 on Google guaranteed",
                "",
                Category::VendorIrrelevant,
            ),
            ("Buy our lead list", "", Category::VendorIrrelevant),
            ("Password reset", "", Category::SupportHandoff),
            (
                "Help",
                "I can’t log in since Monday",
                Category::SupportHandoff,
            ),
            ("Hello", "We would like to know more.", Category::NewInbound),
        ];
        for (subject, body, want) in cases {
            let got = categorize(&cfg, &mail("x@y.test", subject, body), false);
            assert_eq!(got, want, "{subject} / {body}");
        }
    }

    #[test]
    fn existing_customers_are_expansion_unless_they_need_support() {
        let cfg = LeadsConfig::default();
        let quote = mail("tom@acme.test", "Quote for 20 more seats", "");
        assert_eq!(
            categorize(&cfg, &quote, true),
            Category::ExistingCustomerExpansion
        );
        let support = mail("tom@acme.test", "Error when exporting", "");
        assert_eq!(categorize(&cfg, &support, true), Category::SupportHandoff);
    }

    #[test]
    fn a_rule_needs_every_criterion_it_lists() {
        let rule = CategoryRule {
            category: Category::PartnerReferral,
            sender_domains: vec!["partner.test".into()],
            keywords: vec!["deal".into()],
            recipients: vec![],
        };
        let cfg = LeadsConfig {
            categories: vec![rule],
            ..LeadsConfig::default()
        };
        let both = mail("a@eu.partner.test", "New deal", "");
        assert_eq!(categorize(&cfg, &both, false), Category::PartnerReferral);
        let domain_only = mail("a@partner.test", "Hello", "");
        assert_eq!(categorize(&cfg, &domain_only, false), Category::NewInbound);
    }

    #[test]
    fn recipient_rules_match_to_and_cc() {
        let cfg = LeadsConfig {
            categories: vec![CategoryRule {
                category: Category::PartnerReferral,
                sender_domains: vec![],
                keywords: vec![],
                recipients: vec!["Partners@Example.com".into()],
            }],
            ..LeadsConfig::default()
        };
        let mut m = mail("a@b.test", "Hi", "");
        m.cc = vec!["partners@example.com".into()];
        assert_eq!(categorize(&cfg, &m, false), Category::PartnerReferral);
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let cfg = LeadsConfig::default();
        let m = mail("x@y.test", "Demo and pricing", "");
        assert_eq!(categorize(&cfg, &m, false), Category::PricingQuote);
    }

    // ---- value signals ----

    #[test]
    fn amounts_over_the_threshold_are_high_value() {
        let cfg = LeadsConfig::default();
        let s = value_signals(
            &cfg,
            &mail("a@b.test", "Budget", "We have $120,000 for this."),
        );
        assert!(s.high_value);
        assert_eq!(s.signals, ["amount: $120,000"]);
        let s = value_signals(&cfg, &mail("a@b.test", "Budget", "Around EUR 5.000"));
        assert!(!s.high_value);
        assert_eq!(s.signals, ["amount: EUR 5.000"]);
    }

    #[test]
    fn seat_counts_of_a_hundred_or_more_are_high_value() {
        let cfg = LeadsConfig::default();
        let s = value_signals(&cfg, &mail("a@b.test", "500 users", ""));
        assert!(s.high_value);
        assert_eq!(s.signals, ["seats: 500 users"]);
        let s = value_signals(&cfg, &mail("a@b.test", "40 seats", ""));
        assert!(!s.high_value);
        assert_eq!(s.signals, ["seats: 40 seats"]);
    }

    #[test]
    fn high_value_keywords_and_domains_count() {
        let mut cfg = LeadsConfig::default();
        cfg.high_value.keywords = vec!["RFP".into()];
        cfg.high_value.domains = vec!["bigcorp.test".into()];
        let s = value_signals(&cfg, &mail("a@b.test", "Our rfp", ""));
        assert!(s.high_value);
        assert_eq!(s.signals, ["keyword: RFP"]);
        let s = value_signals(&cfg, &mail("cio@eu.bigcorp.test", "Hi", ""));
        assert!(s.high_value);
        assert_eq!(s.signals, ["domain: eu.bigcorp.test"]);
    }

    #[test]
    fn urgent_words_mark_a_lead_urgent() {
        let cfg = LeadsConfig::default();
        let s = value_signals(&cfg, &mail("a@b.test", "Need this ASAP", "call me today"));
        assert!(s.urgent);
        assert!(!s.high_value);
        assert_eq!(s.signals, ["urgent: asap", "urgent: today"]);
        let calm = value_signals(&cfg, &mail("a@b.test", "Hello", "next month is fine"));
        assert_eq!(calm, ValueSignals::default());
    }

    #[test]
    fn repeated_findings_are_reported_once() {
        let cfg = LeadsConfig::default();
        let s = value_signals(
            &cfg,
            &mail("a@b.test", "urgent", "urgent: 500 users, 500 users"),
        );
        assert_eq!(s.signals, ["seats: 500 users", "urgent: urgent"]);
    }

    // ---- assignment ----

    #[test]
    fn round_robin_rotates_over_active_reps_and_advances_the_cursor() {
        let cfg = LeadsConfig::default();
        let active = reps(&["ana", "bob", "cy"]);
        let owners: Vec<_> = (0..4)
            .map(|cursor| {
                let a = assign(
                    &cfg,
                    &mail("x@y.test", "Hi", ""),
                    Category::NewInbound,
                    false,
                    &ctx(&active, cursor),
                );
                assert_eq!(a.next_cursor, cursor + 1);
                a.owner.unwrap()
            })
            .collect();
        assert_eq!(owners, ["ana", "bob", "cy", "ana"]);
    }

    #[test]
    fn round_robin_with_listed_reps_skips_inactive_ones() {
        let cfg = with_rules(vec![AssignmentRule::RoundRobin {
            reps: reps(&["zed", "bob", "ana"]),
        }]);
        let active = reps(&["ana", "bob"]);
        let a = assign(
            &cfg,
            &mail("x@y.test", "Hi", ""),
            Category::NewInbound,
            false,
            &ctx(&active, 0),
        );
        assert_eq!(a.owner.as_deref(), Some("bob"));
        assert_eq!(a.rule, "round-robin -> bob");
    }

    #[test]
    fn round_robin_without_active_reps_leaves_the_lead_for_triage() {
        let cfg = LeadsConfig::default();
        let a = assign(
            &cfg,
            &mail("x@y.test", "Hi", ""),
            Category::NewInbound,
            false,
            &ctx(&[], 7),
        );
        assert_eq!(a.owner, None);
        assert_eq!(a.next_cursor, 7);
        assert!(a.rule.contains("no assignment rule matched"), "{}", a.rule);
    }

    #[test]
    fn round_robin_survives_a_huge_cursor() {
        let cfg = LeadsConfig::default();
        let active = reps(&["ana", "bob"]);
        let a = assign(
            &cfg,
            &mail("x@y.test", "Hi", ""),
            Category::NewInbound,
            false,
            &ctx(&active, u64::MAX),
        );
        assert_eq!(a.owner.as_deref(), Some("bob"));
        assert_eq!(a.next_cursor, 0);
    }

    #[test]
    fn existing_customers_go_to_their_account_owner() {
        let cfg = with_rules(vec![
            AssignmentRule::ExistingCustomer {
                accounts: map(&[("acme.test", "tom")]),
                use_previous_owner: true,
            },
            AssignmentRule::RoundRobin { reps: vec![] },
        ]);
        let active = reps(&["ana", "tom"]);
        let a = assign(
            &cfg,
            &mail("carla@eu.acme.test", "More seats", ""),
            Category::ExistingCustomerExpansion,
            false,
            &ctx(&active, 0),
        );
        assert_eq!(a.owner.as_deref(), Some("tom"));
        assert_eq!(a.rule, "existing customer eu.acme.test -> tom");
        assert_eq!(a.next_cursor, 0);
    }

    #[test]
    fn an_inactive_account_owner_falls_back_to_the_previous_owner_then_the_next_rule() {
        let cfg = with_rules(vec![
            AssignmentRule::ExistingCustomer {
                accounts: map(&[("acme.test", "tom")]),
                use_previous_owner: true,
            },
            AssignmentRule::RoundRobin { reps: vec![] },
        ]);
        let active = reps(&["ana", "bob"]);
        let m = mail("carla@acme.test", "Hi", "");
        let mut c = ctx(&active, 0);
        c.previous_owner_for_domain = Some("bob");
        let a = assign(&cfg, &m, Category::NewInbound, false, &c);
        assert_eq!(a.owner.as_deref(), Some("bob"));
        assert_eq!(a.rule, "previous owner for acme.test -> bob");

        c.previous_owner_for_domain = Some("gone");
        let a = assign(&cfg, &m, Category::NewInbound, false, &c);
        assert_eq!(a.rule, "round-robin -> ana");
    }

    #[test]
    fn previous_owner_is_ignored_when_disabled() {
        let cfg = with_rules(vec![AssignmentRule::ExistingCustomer {
            accounts: BTreeMap::new(),
            use_previous_owner: false,
        }]);
        let active = reps(&["bob"]);
        let mut c = ctx(&active, 0);
        c.previous_owner_for_domain = Some("bob");
        let a = assign(
            &cfg,
            &mail("carla@acme.test", "Hi", ""),
            Category::NewInbound,
            false,
            &c,
        );
        assert_eq!(a.owner, None);
    }

    #[test]
    fn high_value_leads_go_to_senior_reps() {
        let cfg = with_rules(vec![
            AssignmentRule::HighValue {
                reps: reps(&["sam"]),
            },
            AssignmentRule::RoundRobin { reps: vec![] },
        ]);
        let active = reps(&["ana", "sam"]);
        let m = mail("x@y.test", "Hi", "");
        let a = assign(&cfg, &m, Category::NewInbound, true, &ctx(&active, 0));
        assert_eq!(a.rule, "high value -> sam");
        assert_eq!(a.next_cursor, 1);
        let a = assign(&cfg, &m, Category::NewInbound, false, &ctx(&active, 0));
        assert_eq!(a.rule, "round-robin -> ana");
    }

    #[test]
    fn territory_prefers_the_most_specific_domain() {
        let cfg = with_rules(vec![AssignmentRule::Territory {
            domains: map(&[(".de", "hans"), ("big.de", "greta")]),
        }]);
        let active = reps(&["greta", "hans"]);
        let a = assign(
            &cfg,
            &mail("x@big.de", "Hi", ""),
            Category::NewInbound,
            false,
            &ctx(&active, 0),
        );
        assert_eq!(a.rule, "territory big.de -> greta");
        let a = assign(
            &cfg,
            &mail("x@small.de", "Hi", ""),
            Category::NewInbound,
            false,
            &ctx(&active, 0),
        );
        assert_eq!(a.rule, "territory .de -> hans");
        let a = assign(
            &cfg,
            &mail("x@small.fr", "Hi", ""),
            Category::NewInbound,
            false,
            &ctx(&active, 0),
        );
        assert_eq!(a.owner, None);
    }

    #[test]
    fn territory_with_an_inactive_rep_is_skipped() {
        let cfg = with_rules(vec![
            AssignmentRule::Territory {
                domains: map(&[(".de", "hans")]),
            },
            AssignmentRule::RoundRobin { reps: vec![] },
        ]);
        let active = reps(&["ana"]);
        let a = assign(
            &cfg,
            &mail("x@big.de", "Hi", ""),
            Category::NewInbound,
            false,
            &ctx(&active, 0),
        );
        assert_eq!(a.rule, "round-robin -> ana");
    }

    #[test]
    fn product_keywords_pick_the_earliest_mention() {
        let cfg = with_rules(vec![AssignmentRule::Product {
            keywords: map(&[("billing", "bea"), ("crm", "carl")]),
        }]);
        let active = reps(&["bea", "carl"]);
        let m = mail("x@y.test", "CRM question", "and billing too");
        let a = assign(&cfg, &m, Category::NewInbound, false, &ctx(&active, 0));
        assert_eq!(a.rule, "product keyword \"crm\" -> carl");
    }

    #[test]
    fn unassigned_rule_leaves_listed_categories_for_triage() {
        let cfg = with_rules(vec![
            AssignmentRule::Unassigned {
                categories: vec![Category::PartnerReferral],
            },
            AssignmentRule::RoundRobin { reps: vec![] },
        ]);
        let active = reps(&["ana"]);
        let m = mail("x@y.test", "Hi", "");
        let a = assign(&cfg, &m, Category::PartnerReferral, false, &ctx(&active, 3));
        assert_eq!(a.owner, None);
        assert_eq!(a.next_cursor, 3);
        assert!(a.rule.contains("left for triage"), "{}", a.rule);
        let a = assign(&cfg, &m, Category::DemoRequest, false, &ctx(&active, 3));
        assert_eq!(a.owner.as_deref(), Some("ana"));
    }

    #[test]
    fn vendor_and_support_mail_is_never_assigned() {
        let cfg = LeadsConfig {
            support_forward_to: Some("support@example.com".into()),
            ..LeadsConfig::default()
        };
        let active = reps(&["ana"]);
        let m = mail("x@y.test", "Hi", "");
        let a = assign(&cfg, &m, Category::VendorIrrelevant, true, &ctx(&active, 0));
        assert_eq!(a.owner, None);
        assert!(a.rule.contains("vendor"), "{}", a.rule);
        let a = assign(&cfg, &m, Category::SupportHandoff, true, &ctx(&active, 0));
        assert_eq!(a.owner, None);
        assert!(a.rule.contains("support@example.com"), "{}", a.rule);
        assert_eq!(a.next_cursor, 0);
    }

    #[test]
    fn triage_combines_category_signals_and_owner() {
        let cfg = LeadsConfig::default();
        let active = reps(&["ana"]);
        let t = triage(
            &cfg,
            &mail("x@y.test", "Quote for 500 users", "asap"),
            false,
            &ctx(&active, 0),
        );
        assert_eq!(t.category, Category::PricingQuote);
        assert!(t.signals.high_value && t.signals.urgent);
        assert_eq!(t.assignment.owner.as_deref(), Some("ana"));
    }
}
