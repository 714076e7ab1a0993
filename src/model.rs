//! The shared nouns: leads and their ids, statuses, outcomes, categories,
//! due kinds, notes, handoffs, roles, and the thread lookup a store
//! answers. A leaf: it imports nothing of the crate, so every module can
//! use it without reaching up (`store` and `policy` name leads without
//! depending on the lead engine).
//!
//! Leads are stored as JSON, so every optional or later-added field carries
//! `#[serde(default)]`: an older record still reads.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

pub type LeadId = u64;

/// A name with a human label (as shown in folder names such as
/// `Set status/Waiting for reply`) and a stable slug (as stored in JSON and
/// written in the config file).
pub trait Named: Copy + 'static {
    /// What the values are called in error messages ("status").
    const KIND: &'static str;
    const ALL: &'static [Self];
    fn label(self) -> &'static str;
    fn slug(self) -> &'static str;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {input:?}; expected one of: {expected}")]
pub struct ParseNameError {
    pub kind: &'static str,
    pub input: String,
    pub expected: String,
}

/// Parses a label or a slug, ignoring case and punctuation:
/// "Waiting for reply", "waiting-for-reply" and "WAITING_FOR_REPLY" are the
/// same status.
pub fn parse_named<T: Named>(input: &str) -> Result<T, ParseNameError> {
    let wanted = slugify(input);
    T::ALL
        .iter()
        .copied()
        .find(|v| slugify(v.label()) == wanted || v.slug() == wanted)
        .ok_or_else(|| ParseNameError {
            kind: T::KIND,
            input: input.to_owned(),
            expected: T::ALL
                .iter()
                .map(|v| v.label())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Lower case, every run of non-alphanumeric characters one '-'.
fn slugify(s: &str) -> String {
    s.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Declares a [`Named`] enum: one line per variant gives its slug (also its
/// serde name) and its label.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident: $kind:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $slug:literal, $label:literal; )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $slug)] $variant, )+
        }

        impl Named for $name {
            const KIND: &'static str = $kind;
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn label(self) -> &'static str {
                match self { $($name::$variant => $label,)+ }
            }
            fn slug(self) -> &'static str {
                match self { $($name::$variant => $slug,)+ }
            }
        }

        impl $name {
            pub const ALL: &'static [Self] = <Self as Named>::ALL;
            pub fn label(self) -> &'static str {
                Named::label(self)
            }
            pub fn slug(self) -> &'static str {
                Named::slug(self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.label())
            }
        }

        impl FromStr for $name {
            type Err = ParseNameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_named(s)
            }
        }
    };
}

named_enum! {
    /// Where a lead is in the sales conversation.
    pub enum Status: "status" {
        /// Not yet reviewed, no owner.
        New => "new", "New";
        /// An owner is selected and owes the next step.
        Assigned => "assigned", "Assigned";
        /// The team has answered and waits for the customer.
        WaitingForReply => "waiting-for-reply", "Waiting for reply";
        /// The customer has not answered in time: the owner must chase.
        FollowUpDue => "follow-up-due", "Follow-up due";
        /// Blocked by another team member.
        NeedsInternalInput => "needs-internal-input", "Needs internal input";
        /// A proposal or price has been issued.
        QuoteSent => "quote-sent", "Quote sent";
        Won => "won", "Won";
        Lost => "lost", "Lost";
        /// No further action needed; the outcome says why.
        Closed => "closed", "Closed";
    }
}

impl Status {
    /// Won, Lost and Closed are final until someone reopens the lead.
    pub fn is_active(self) -> bool {
        !matches!(self, Status::Won | Status::Lost | Status::Closed)
    }
}

named_enum! {
    /// Why a lead was closed.
    pub enum Outcome: "outcome" {
        Won => "won", "Won";
        Lost => "lost", "Lost";
        Unqualified => "unqualified", "Unqualified";
        Duplicate => "duplicate", "Duplicate";
        Spam => "spam", "Spam";
        HandedToAnotherTeam => "handed-to-another-team", "Handed to another team";
        /// Closed by the follow-up rule: no answer after the last follow-up.
        NoResponse => "no-response", "No response";
    }
}

impl Outcome {
    /// The status a lead closed with this outcome gets.
    pub fn status(self) -> Status {
        match self {
            Outcome::Won => Status::Won,
            Outcome::Lost => Status::Lost,
            _ => Status::Closed,
        }
    }
}

named_enum! {
    /// What kind of message opened the lead.
    pub enum Category: "category" {
        NewInbound => "new-inbound", "New inbound lead";
        ExistingCustomerExpansion => "existing-customer-expansion", "Existing customer expansion";
        PartnerReferral => "partner-referral", "Partner or referral";
        PricingQuote => "pricing-quote", "Pricing or quote request";
        DemoRequest => "demo-request", "Demo request";
        VendorIrrelevant => "vendor-irrelevant", "Vendor or irrelevant";
        SupportHandoff => "support-handoff", "Support handoff";
    }
}

impl Category {
    /// Vendor pitches and support requests are not sales work: they are never
    /// assigned, carry no response deadline and stay out of the sales queues.
    pub fn in_sales_queues(self) -> bool {
        !matches!(self, Category::VendorIrrelevant | Category::SupportHandoff)
    }
}

/// What the date in [`Lead::due`] means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DueKind {
    /// The team owes the customer an answer by then.
    Response,
    /// The team waits for the customer and chases at that time.
    FollowUp,
}

impl DueKind {
    pub fn label(self) -> &'static str {
        match self {
            DueKind::Response => "response",
            DueKind::FollowUp => "follow-up",
        }
    }
}

/// An internal note, never sent to the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub at: i64,
    pub author: String,
    pub text: String,
}

/// One change of owner, with the context the new owner needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    pub at: i64,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    pub by: String,
    #[serde(default)]
    pub note: String,
}

/// One conversation with one customer, owned by at most one person. All
/// times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lead {
    pub id: LeadId,
    pub created: i64,
    pub updated: i64,
    pub status: Status,
    #[serde(default)]
    pub outcome: Option<Outcome>,
    #[serde(default)]
    pub owner: Option<String>,
    pub category: Category,
    #[serde(default)]
    pub contact_name: Option<String>,
    pub contact_email: String,
    #[serde(default)]
    pub company_domain: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub value_signals: Vec<String>,
    #[serde(default)]
    pub high_value: bool,
    #[serde(default)]
    pub urgent: bool,
    #[serde(default)]
    pub next_action: Option<String>,
    #[serde(default)]
    pub due: Option<i64>,
    #[serde(default)]
    pub due_kind: Option<DueKind>,
    #[serde(default)]
    pub followups_sent: u32,
    /// When the reply the customer has not answered yet went out: the
    /// follow-up steps count from here.
    #[serde(default)]
    pub waiting_since: Option<i64>,
    #[serde(default)]
    pub escalated: bool,
    #[serde(default)]
    pub escalated_to: Option<String>,
    pub first_inbound_at: i64,
    #[serde(default)]
    pub first_response_at: Option<i64>,
    #[serde(default)]
    pub last_inbound_at: Option<i64>,
    #[serde(default)]
    pub last_outbound_at: Option<i64>,
    #[serde(default)]
    pub notes: Vec<Note>,
    #[serde(default)]
    pub handoffs: Vec<Handoff>,
}

impl Default for Lead {
    /// An empty new lead (tests and fixtures fill in what they need).
    fn default() -> Self {
        Lead {
            id: 0,
            created: 0,
            updated: 0,
            status: Status::New,
            outcome: None,
            owner: None,
            category: Category::NewInbound,
            contact_name: None,
            contact_email: String::new(),
            company_domain: String::new(),
            source: String::new(),
            subject: String::new(),
            value_signals: Vec::new(),
            high_value: false,
            urgent: false,
            next_action: None,
            due: None,
            due_kind: None,
            followups_sent: 0,
            waiting_since: None,
            escalated: false,
            escalated_to: None,
            first_inbound_at: 0,
            first_response_at: None,
            last_inbound_at: None,
            last_outbound_at: None,
            notes: Vec::new(),
            handoffs: Vec::new(),
        }
    }
}

impl Lead {
    /// Active with a due date that has come: true exactly at the due time.
    pub fn is_overdue(&self, now: i64) -> bool {
        self.status.is_active() && self.due.is_some_and(|due| due <= now)
    }

    /// Seconds from the first customer message to the team's first answer
    /// (never negative, even if clocks disagree).
    pub fn first_response_secs(&self) -> Option<i64> {
        self.first_response_at
            .map(|at| at.saturating_sub(self.first_inbound_at).max(0))
    }
}

/// The index of known messages and leads, as threading needs it.
pub trait ThreadLookup {
    /// The lead a message (by normalized Message-ID) belongs to.
    fn lead_for_message_id(&self, id: &str) -> Option<LeadId>;
    /// Leads with this normalized subject and this counterpart address, with
    /// the unix time of each lead's last activity.
    fn leads_for_subject(&self, normalized_subject: &str, counterpart: &str) -> Vec<(LeadId, i64)>;
}

/// Who a user is to leadgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Rep,
    Manager,
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Rep => "rep",
            Role::Manager => "manager",
            Role::Admin => "admin",
        })
    }
}

/// What a reply to an unassigned lead does (`[leads] unassigned_reply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnassignedReply {
    /// The reply goes out and the sender becomes the owner.
    Claim,
    /// The reply is refused until someone claims the lead.
    Refuse,
}

/// A shared message that is not a person's: shown with a keyword, and
/// never counted as the customer's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageMark {
    /// Out of office, vacation, helpdesk acknowledgement, read receipt.
    AutoReply = 1,
    /// A delivery failure report.
    Bounced = 2,
}

impl MessageMark {
    pub fn from_u8(v: u8) -> Option<MessageMark> {
        match v {
            1 => Some(MessageMark::AutoReply),
            2 => Some(MessageMark::Bounced),
            _ => None,
        }
    }

    /// The IMAP keyword the message carries.
    pub fn keyword(self) -> &'static str {
        match self {
            MessageMark::AutoReply => "$Lead_AutoReply",
            MessageMark::Bounced => "$Lead_Bounced",
        }
    }
}

/// What the owner rule protects besides the thread (`[leads] owner_scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OwnerScope {
    /// The lead's contact address: nobody but the owner (or a manager)
    /// writes to that person, threaded or not.
    #[default]
    Contact,
    /// The lead's whole company domain (account-based teams); never a
    /// free-mail domain.
    Domain,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_lead() -> Lead {
        Lead {
            id: 42,
            created: 1_000,
            updated: 1_000,
            status: Status::Assigned,
            outcome: None,
            owner: Some("alice".into()),
            category: Category::NewInbound,
            contact_name: Some("Carla Customer".into()),
            contact_email: "carla@acme.test".into(),
            company_domain: "acme.test".into(),
            source: "email to sales@example.com".into(),
            subject: "Pricing for 40 seats".into(),
            value_signals: vec![],
            high_value: false,
            urgent: false,
            next_action: None,
            due: Some(5_000),
            due_kind: Some(DueKind::Response),
            followups_sent: 0,
            waiting_since: None,
            escalated: false,
            escalated_to: None,
            first_inbound_at: 1_000,
            first_response_at: None,
            last_inbound_at: Some(1_000),
            last_outbound_at: None,
            notes: vec![],
            handoffs: vec![],
        }
    }

    #[test]
    fn status_labels_and_slugs_parse_case_insensitively() {
        for &s in Status::ALL {
            assert_eq!(s.label().parse::<Status>(), Ok(s));
            assert_eq!(s.slug().parse::<Status>(), Ok(s));
            assert_eq!(s.label().to_uppercase().parse::<Status>(), Ok(s));
        }
        assert_eq!(
            "waiting-for-reply".parse::<Status>(),
            Ok(Status::WaitingForReply)
        );
        assert_eq!(
            "Waiting for reply".parse::<Status>(),
            Ok(Status::WaitingForReply)
        );
        assert_eq!(" follow_up_due ".parse::<Status>(), Ok(Status::FollowUpDue));
    }

    #[test]
    fn unknown_status_names_the_input_and_the_choices() {
        let err = "Snoozed".parse::<Status>().unwrap_err();
        let text = err.to_string();
        assert!(text.contains("\"Snoozed\""), "{text}");
        assert!(text.contains("Waiting for reply"), "{text}");
    }

    #[test]
    fn status_labels_are_the_briefs() {
        let labels: Vec<_> = Status::ALL.iter().map(|s| s.label()).collect();
        assert_eq!(
            labels,
            [
                "New",
                "Assigned",
                "Waiting for reply",
                "Follow-up due",
                "Needs internal input",
                "Quote sent",
                "Won",
                "Lost",
                "Closed"
            ]
        );
    }

    #[test]
    fn only_won_lost_and_closed_are_inactive() {
        let inactive: Vec<_> = Status::ALL
            .iter()
            .filter(|s| !s.is_active())
            .copied()
            .collect();
        assert_eq!(inactive, [Status::Won, Status::Lost, Status::Closed]);
    }

    #[test]
    fn outcomes_parse_and_map_to_closing_statuses() {
        for &o in Outcome::ALL {
            assert_eq!(o.label().parse::<Outcome>(), Ok(o));
            assert_eq!(o.slug().parse::<Outcome>(), Ok(o));
            assert!(!o.status().is_active());
        }
        assert_eq!(
            "handed to another team".parse::<Outcome>(),
            Ok(Outcome::HandedToAnotherTeam)
        );
        assert_eq!(Outcome::Won.status(), Status::Won);
        assert_eq!(Outcome::Lost.status(), Status::Lost);
        assert_eq!(Outcome::Spam.status(), Status::Closed);
    }

    #[test]
    fn categories_parse_and_non_sales_ones_stay_out_of_queues() {
        for &c in Category::ALL {
            assert_eq!(c.label().parse::<Category>(), Ok(c));
            assert_eq!(c.slug().parse::<Category>(), Ok(c));
        }
        let outside: Vec<_> = Category::ALL
            .iter()
            .filter(|c| !c.in_sales_queues())
            .copied()
            .collect();
        assert_eq!(
            outside,
            [Category::VendorIrrelevant, Category::SupportHandoff]
        );
    }

    #[test]
    fn serde_names_are_the_slugs() {
        for &s in Status::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.slug()));
        }
        assert_eq!(
            serde_json::to_string(&DueKind::FollowUp).unwrap(),
            "\"follow-up\""
        );
    }

    #[test]
    fn lead_round_trips_through_json() {
        let lead = sample_lead();
        let json = serde_json::to_string(&lead).unwrap();
        assert_eq!(serde_json::from_str::<Lead>(&json).unwrap(), lead);
    }

    #[test]
    fn lead_without_optional_fields_still_reads() {
        let json = r#"{"id":7,"created":1,"updated":2,"status":"new",
            "category":"new-inbound","contact_email":"a@b.test","first_inbound_at":1}"#;
        let lead: Lead = serde_json::from_str(json).unwrap();
        assert_eq!(lead.id, 7);
        assert_eq!(lead.owner, None);
        assert!(lead.notes.is_empty());
        assert_eq!(lead.followups_sent, 0);
    }

    #[test]
    fn overdue_is_true_exactly_at_the_due_time() {
        let lead = sample_lead();
        assert!(!lead.is_overdue(4_999));
        assert!(lead.is_overdue(5_000));
        assert!(lead.is_overdue(5_001));
    }

    #[test]
    fn closed_or_undated_leads_are_never_overdue() {
        let mut lead = sample_lead();
        lead.due = None;
        assert!(!lead.is_overdue(i64::MAX));
        let mut lead = sample_lead();
        lead.status = Status::Won;
        assert!(!lead.is_overdue(i64::MAX));
    }

    #[test]
    fn first_response_time_is_measured_from_first_inbound() {
        let mut lead = sample_lead();
        assert_eq!(lead.first_response_secs(), None);
        lead.first_response_at = Some(4_600);
        assert_eq!(lead.first_response_secs(), Some(3_600));
        lead.first_response_at = Some(10);
        assert_eq!(lead.first_response_secs(), Some(0));
    }
}
