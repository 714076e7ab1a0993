//! Which virtual folders exist, who sees them, and which leads each one
//! holds — pure functions of (lead, viewer, now). Also the action folders
//! (folders as commands) and the live lead keywords.

pub use crate::leads::queues::{EvalCtx, ViewKind};
use crate::{
    leads::{
        calendar::Calendar,
        queues::{LEAD_VIEWS, REVIEW_VIEWS},
        Lead, Outcome, Status,
    },
    store::users::Role,
};

pub use crate::leads::queues::{InboxAccess, ViewsConfig};

/// The virtual folders a user gets.
pub fn visible_views(role: Role, reps: &[String], cfg: &ViewsConfig) -> Vec<ViewKind> {
    let mut out: Vec<ViewKind> = LEAD_VIEWS
        .iter()
        .filter(|v| role != Role::Rep || !cfg.hidden_for_reps.iter().any(|h| h == &v.folder()))
        .cloned()
        .collect();
    if role != Role::Rep {
        out.extend(REVIEW_VIEWS.iter().cloned());
        out.extend(reps.iter().map(|r| ViewKind::Team(r.clone())));
    }
    out
}

/// Folders as commands: moving a message into one changes its lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionFolder {
    AssignTo(String),
    SetStatus(Status),
    FollowUp(FollowUpIn),
    CloseAs(Outcome),
    /// Send a held reply after all (owner or manager).
    ReleaseHeld,
    /// Drop a held reply unsent (owner or manager).
    DiscardHeld,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUpIn {
    Tomorrow,
    TwoBusinessDays,
    NextWeek,
}

impl FollowUpIn {
    const ALL: [FollowUpIn; 3] = [
        FollowUpIn::Tomorrow,
        FollowUpIn::TwoBusinessDays,
        FollowUpIn::NextWeek,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FollowUpIn::Tomorrow => "Tomorrow",
            FollowUpIn::TwoBusinessDays => "In 2 business days",
            FollowUpIn::NextWeek => "Next week",
        }
    }

    /// The follow-up time this choice means, counted in business days.
    pub fn at(self, cal: &Calendar, now: i64) -> i64 {
        let days = match self {
            FollowUpIn::Tomorrow => 1,
            FollowUpIn::TwoBusinessDays => 2,
            FollowUpIn::NextWeek => 5,
        };
        cal.add_business_days(now, days)
    }
}

/// Statuses a person may set by folder (closing goes through "Close as").
const SETTABLE: [Status; 5] = [
    Status::Assigned,
    Status::WaitingForReply,
    Status::FollowUpDue,
    Status::NeedsInternalInput,
    Status::QuoteSent,
];

/// The one parent of every action folder, so they take one line of the
/// folder tree; its name sorts after Leads, Review and Team, so clients
/// that sort folders by name show the lead folders first.
pub const ACTIONS: &str = "Update lead";

/// The groups under `Update lead/`, in the order LIST gives them.
pub const ACTION_GROUPS: [&str; 5] = ["Assign to", "Set status", "Follow up", "Close as", "Held"];

/// Top-level names reserved for action folders: `Update lead`, and the groups
/// themselves, which were top-level folders before and still work there
/// (a client or filter that remembers `Assign to/bob` keeps working; LIST
/// shows only `Update lead/...`).
pub const ACTION_ROOTS: [&str; 6] = [
    ACTIONS,
    "Assign to",
    "Set status",
    "Follow up",
    "Close as",
    "Held",
];

/// The held-reply action folders (listed only with `blocked_reply =
/// "hold"`).
pub const HELD_ACTIONS: [(&str, ActionFolder); 2] = [
    ("Update lead/Held/Release", ActionFolder::ReleaseHeld),
    ("Update lead/Held/Discard", ActionFolder::DiscardHeld),
];

/// Every action folder, given the users a lead can be assigned to.
pub fn action_folders(users: &[String]) -> Vec<(String, ActionFolder)> {
    let mut out = Vec::new();
    for u in users {
        out.push((
            format!("{ACTIONS}/Assign to/{u}"),
            ActionFolder::AssignTo(u.clone()),
        ));
    }
    for s in SETTABLE {
        out.push((
            format!("{ACTIONS}/Set status/{}", s.label()),
            ActionFolder::SetStatus(s),
        ));
    }
    for f in FollowUpIn::ALL {
        out.push((
            format!("{ACTIONS}/Follow up/{}", f.label()),
            ActionFolder::FollowUp(f),
        ));
    }
    for &o in Outcome::ALL {
        out.push((
            format!("{ACTIONS}/Close as/{}", o.label()),
            ActionFolder::CloseAs(o),
        ));
    }
    for (name, action) in HELD_ACTIONS {
        out.push((name.to_owned(), action));
    }
    out
}

/// The action a folder name stands for (names compare case-insensitively
/// except the user name).
pub fn parse_action(name: &str, users: &[String]) -> Option<ActionFolder> {
    // The names from before `Update lead/` (e.g. `Assign to/bob`) still work.
    let prefixed;
    let name = if name
        .get(..ACTIONS.len() + 1)
        .is_some_and(|p| p.eq_ignore_ascii_case(&format!("{ACTIONS}/")))
    {
        name
    } else {
        prefixed = format!("{ACTIONS}/{name}");
        &prefixed
    };
    action_folders(users)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, a)| a)
}

/// The names under which lead folders hang, for LIST.
pub const VIEW_ROOTS: [&str; 3] = ["Leads", "Review", "Team"];

/// The keywords leadgate computes (see [`keywords`] and the message
/// marks), with a readable label and a colour for clients that show tags
/// (`leadgate client-config --format thunderbird-tags`).
pub const LEAD_TAGS: [(&str, &str, &str); 12] = [
    ("$Lead_Mine", "Lead: mine", "#1a73e8"),
    ("$Lead_Unassigned", "Lead: unassigned", "#e37400"),
    ("$Lead_Overdue", "Lead: overdue", "#d93025"),
    ("$Lead_Waiting", "Lead: waiting for reply", "#5f6368"),
    ("$Lead_FollowUp", "Lead: follow-up due", "#f29900"),
    ("$Lead_NeedsInput", "Lead: needs internal input", "#a142f4"),
    ("$Lead_QuoteSent", "Lead: quote sent", "#188038"),
    ("$Lead_Closed", "Lead: closed", "#80868b"),
    ("$Lead_HighValue", "Lead: high value", "#b31412"),
    ("$Lead_Escalated", "Lead: escalated", "#c5221f"),
    ("$Lead_AutoReply", "Auto-reply", "#9aa0a6"),
    ("$Lead_Bounced", "Bounced", "#ea4335"),
];

/// Live lead keywords for a viewer: what Thunderbird tags and searches on.
pub fn keywords(l: &Lead, viewer: &str, now: i64) -> Vec<&'static str> {
    let mut out = Vec::new();
    let active = l.status.is_active();
    if l.owner.as_deref() == Some(viewer) {
        out.push("$Lead_Mine");
    }
    if l.owner.is_none() && active && l.category.in_sales_queues() {
        out.push("$Lead_Unassigned");
    }
    if l.is_overdue(now) {
        out.push("$Lead_Overdue");
    }
    match l.status {
        Status::WaitingForReply => out.push("$Lead_Waiting"),
        Status::FollowUpDue => out.push("$Lead_FollowUp"),
        Status::NeedsInternalInput => out.push("$Lead_NeedsInput"),
        Status::QuoteSent => out.push("$Lead_QuoteSent"),
        _ if !active => out.push("$Lead_Closed"),
        _ => {}
    }
    if l.high_value {
        out.push("$Lead_HighValue");
    }
    if l.escalated && active {
        out.push("$Lead_Escalated");
    }
    out
}

/// Keywords leadgate computes; clients cannot store them.
pub fn is_lead_keyword(flag: &str) -> bool {
    flag.len() > 6 && flag[..6].eq_ignore_ascii_case("$Lead_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leads::{calendar::CalendarConfig, Category, DueKind};

    fn cal() -> Calendar {
        Calendar::from_config(&CalendarConfig::default()).unwrap()
    }

    fn lead(owner: Option<&str>, status: Status) -> Lead {
        Lead {
            id: 1,
            owner: owner.map(str::to_owned),
            status,
            category: Category::PricingQuote,
            ..Lead::default()
        }
    }

    #[test]
    fn every_computed_keyword_is_announced_and_labelled() {
        let known: Vec<&str> = LEAD_TAGS.iter().map(|(k, _, _)| *k).collect();
        let mut l = lead(Some("alice"), Status::QuoteSent);
        l.high_value = true;
        l.escalated = true;
        l.due = Some(1);
        for (owner, status) in [
            (Some("alice"), Status::QuoteSent),
            (None, Status::New),
            (Some("alice"), Status::WaitingForReply),
            (Some("alice"), Status::FollowUpDue),
            (Some("alice"), Status::NeedsInternalInput),
            (Some("alice"), Status::Won),
        ] {
            l.owner = owner.map(str::to_owned);
            l.status = status;
            for k in keywords(&l, "alice", 1_000_000) {
                assert!(known.contains(&k), "{k} missing from LEAD_TAGS");
            }
        }
        for mark in [
            crate::model::MessageMark::AutoReply,
            crate::model::MessageMark::Bounced,
        ] {
            assert!(known.contains(&mark.keyword()), "{}", mark.keyword());
        }
    }

    #[test]
    fn queues_follow_owner_status_and_time() {
        let cal = cal();
        let ctx = EvalCtx {
            now: 1_000_000,
            cal: &cal,
            idle_secs: 3 * 86_400,
        };
        let unowned = lead(None, Status::New);
        assert!(ViewKind::Unassigned.matches(&unowned, "alice", &ctx));
        assert!(ViewKind::ReviewNew.matches(&unowned, "maria", &ctx));
        let mut mine = lead(Some("alice"), Status::WaitingForReply);
        assert!(ViewKind::Mine.matches(&mine, "alice", &ctx));
        assert!(!ViewKind::Mine.matches(&mine, "bob", &ctx));
        assert!(ViewKind::MyWaiting.matches(&mine, "alice", &ctx));
        assert!(ViewKind::Team("alice".into()).matches(&mine, "maria", &ctx));
        mine.due = Some(ctx.now);
        mine.due_kind = Some(DueKind::FollowUp);
        assert!(
            ViewKind::MyOverdue.matches(&mine, "alice", &ctx),
            "overdue at the due time itself"
        );
        assert!(ViewKind::ReviewOverdue.matches(&mine, "maria", &ctx));
        mine.due = Some(ctx.now + 1);
        assert!(!ViewKind::MyOverdue.matches(&mine, "alice", &ctx));
        let mut vendor = lead(None, Status::New);
        vendor.category = Category::VendorIrrelevant;
        assert!(
            !ViewKind::Unassigned.matches(&vendor, "alice", &ctx),
            "vendor mail stays out of the queues"
        );
        let closed = lead(Some("alice"), Status::Closed);
        assert!(
            ViewKind::MyClosed.matches(&closed, "alice", &ctx)
                && !ViewKind::Mine.matches(&closed, "alice", &ctx)
        );
    }

    #[test]
    fn reps_get_lead_folders_and_managers_review_folders_too() {
        let reps = vec!["alice".to_owned(), "bob".to_owned()];
        let rep = visible_views(Role::Rep, &reps, &ViewsConfig::default());
        assert!(rep.iter().all(|v| v.folder().starts_with("Leads/")));
        let manager = visible_views(Role::Manager, &reps, &ViewsConfig::default());
        assert!(manager.iter().any(|v| v.folder() == "Review/Overdue"));
        assert!(manager.iter().any(|v| v.folder() == "Team/bob"));
        let cfg = ViewsConfig {
            hidden_for_reps: vec!["Leads/Closed".into()],
            ..Default::default()
        };
        assert!(!visible_views(Role::Rep, &reps, &cfg)
            .iter()
            .any(|v| v.folder() == "Leads/Closed"));
    }

    #[test]
    fn action_folder_names_parse_back() {
        let users = vec!["alice".to_owned()];
        assert_eq!(
            parse_action("Assign to/alice", &users),
            Some(ActionFolder::AssignTo("alice".into()))
        );
        assert_eq!(
            parse_action("set status/quote sent", &users),
            Some(ActionFolder::SetStatus(Status::QuoteSent))
        );
        assert_eq!(
            parse_action("Follow up/Next week", &users),
            Some(ActionFolder::FollowUp(FollowUpIn::NextWeek))
        );
        assert_eq!(
            parse_action("Close as/Won", &users),
            Some(ActionFolder::CloseAs(Outcome::Won))
        );
        assert_eq!(parse_action("Assign to/mallory", &users), None);
    }

    #[test]
    fn keywords_are_live_and_per_viewer() {
        let mut l = lead(Some("alice"), Status::WaitingForReply);
        assert_eq!(keywords(&l, "alice", 0), ["$Lead_Mine", "$Lead_Waiting"]);
        assert_eq!(keywords(&l, "bob", 0), ["$Lead_Waiting"]);
        l.due = Some(10);
        l.due_kind = Some(DueKind::FollowUp);
        assert!(keywords(&l, "bob", 10).contains(&"$Lead_Overdue"));
        assert!(is_lead_keyword("$lead_mine") && !is_lead_keyword("$Label1"));
    }
}
