//! The lead queues: which leads each virtual folder and each review queue
//! holds, as pure functions of (lead, viewer, now). The IMAP views and the
//! manager digest both read them here.

use serde::Deserialize;

use super::{calendar::Calendar, Lead, Status};

/// One virtual folder's rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ViewKind {
    Unassigned,
    Mine,
    MyOverdue,
    MyWaiting,
    MyFollowUpDue,
    MyNeedsInput,
    MyQuoteSent,
    MyClosed,
    ReviewNew,
    ReviewWaitingFirst,
    ReviewDueToday,
    ReviewOverdue,
    ReviewBlocked,
    ReviewHighValueIdle,
    ReviewEscalated,
    /// Replies the owner rule held: the sender's (`Leads/Held`) ...
    Held,
    /// ... and those on the viewer's leads, or all for managers
    /// (`Review/Held`). Membership is the lead book's held marks, not a
    /// rule on leads.
    ReviewHeld,
    Team(String),
}

/// The rep's own queues, every user's.
pub const LEAD_VIEWS: [ViewKind; 8] = [
    ViewKind::Unassigned,
    ViewKind::Mine,
    ViewKind::MyOverdue,
    ViewKind::MyWaiting,
    ViewKind::MyFollowUpDue,
    ViewKind::MyNeedsInput,
    ViewKind::MyQuoteSent,
    ViewKind::MyClosed,
];

/// The manager's daily review queues (from the brief).
pub const REVIEW_VIEWS: [ViewKind; 7] = [
    ViewKind::ReviewNew,
    ViewKind::ReviewWaitingFirst,
    ViewKind::ReviewDueToday,
    ViewKind::ReviewOverdue,
    ViewKind::ReviewBlocked,
    ViewKind::ReviewHighValueIdle,
    ViewKind::ReviewEscalated,
];

/// What time-dependent rules need besides the lead.
pub struct EvalCtx<'a> {
    pub now: i64,
    pub cal: &'a Calendar,
    pub idle_secs: i64,
}

fn last_activity(l: &Lead) -> i64 {
    [Some(l.created), l.last_inbound_at, l.last_outbound_at]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0)
}

impl ViewKind {
    pub fn folder(&self) -> String {
        match self {
            ViewKind::Unassigned => "Leads/Unassigned".into(),
            ViewKind::Mine => "Leads/Mine".into(),
            ViewKind::MyOverdue => "Leads/Overdue".into(),
            ViewKind::MyWaiting => "Leads/Waiting".into(),
            ViewKind::MyFollowUpDue => "Leads/Follow-up due".into(),
            ViewKind::MyNeedsInput => "Leads/Needs input".into(),
            ViewKind::MyQuoteSent => "Leads/Quote sent".into(),
            ViewKind::MyClosed => "Leads/Closed".into(),
            ViewKind::ReviewNew => "Review/New and unassigned".into(),
            ViewKind::ReviewWaitingFirst => "Review/Waiting first response".into(),
            ViewKind::ReviewDueToday => "Review/Follow-ups due today".into(),
            ViewKind::ReviewOverdue => "Review/Overdue".into(),
            ViewKind::ReviewBlocked => "Review/Blocked".into(),
            ViewKind::ReviewHighValueIdle => "Review/High value idle".into(),
            ViewKind::ReviewEscalated => "Review/Escalated".into(),
            ViewKind::Held => "Leads/Held".into(),
            ViewKind::ReviewHeld => "Review/Held".into(),
            ViewKind::Team(rep) => format!("Team/{rep}"),
        }
    }

    /// Whether the content depends on who looks (then each user has their
    /// own copy, with their own UIDs).
    pub fn per_user(&self) -> bool {
        matches!(
            self,
            ViewKind::Mine
                | ViewKind::MyOverdue
                | ViewKind::MyWaiting
                | ViewKind::MyFollowUpDue
                | ViewKind::MyNeedsInput
                | ViewKind::MyQuoteSent
                | ViewKind::MyClosed
                | ViewKind::Held
                | ViewKind::ReviewHeld
        )
    }

    /// Held-reply folders: filled from held marks, not from lead rules.
    pub fn is_held(&self) -> bool {
        matches!(self, ViewKind::Held | ViewKind::ReviewHeld)
    }

    /// The view's storage key: `*:<folder>` for shared ones,
    /// `<user>:<folder>` for per-user ones.
    pub fn key(&self, viewer: &str) -> String {
        if self.per_user() {
            format!("{viewer}:{}", self.folder())
        } else {
            format!("*:{}", self.folder())
        }
    }

    pub fn matches(&self, l: &Lead, viewer: &str, ctx: &EvalCtx<'_>) -> bool {
        let mine = l.owner.as_deref() == Some(viewer);
        let active = l.status.is_active();
        let queued = l.category.in_sales_queues();
        match self {
            ViewKind::Unassigned => l.owner.is_none() && active && queued,
            ViewKind::Mine => mine && active,
            ViewKind::MyOverdue => mine && l.is_overdue(ctx.now),
            ViewKind::MyWaiting => mine && l.status == Status::WaitingForReply,
            ViewKind::MyFollowUpDue => mine && l.status == Status::FollowUpDue,
            ViewKind::MyNeedsInput => mine && l.status == Status::NeedsInternalInput,
            ViewKind::MyQuoteSent => mine && l.status == Status::QuoteSent,
            ViewKind::MyClosed => mine && !active,
            ViewKind::ReviewNew => {
                active && queued && (l.owner.is_none() || l.status == Status::New)
            }
            ViewKind::ReviewWaitingFirst => active && queued && l.first_response_at.is_none(),
            ViewKind::ReviewDueToday => {
                active
                    && l.due
                        .is_some_and(|d| ctx.cal.local_date(d) == ctx.cal.local_date(ctx.now))
                    && l.due_kind == Some(super::DueKind::FollowUp)
            }
            ViewKind::ReviewOverdue => queued && l.is_overdue(ctx.now),
            ViewKind::ReviewBlocked => l.status == Status::NeedsInternalInput,
            ViewKind::ReviewHighValueIdle => {
                l.high_value && active && ctx.now - last_activity(l) >= ctx.idle_secs
            }
            ViewKind::ReviewEscalated => l.escalated && active,
            ViewKind::Held | ViewKind::ReviewHeld => false,
            ViewKind::Team(rep) => l.owner.as_deref() == Some(rep.as_str()) && active,
        }
    }
}

/// `[views] rep_inbox`: how reps see the shared INBOX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InboxAccess {
    ReadWrite,
    ReadOnly,
    Hidden,
}

/// `[views]`: how the lead folders are shown (read by the IMAP views and
/// the digest alike).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ViewsConfig {
    /// INBOX for reps; managers and admins always get it read-write.
    pub rep_inbox: InboxAccess,
    /// Lead folders reps do not get (e.g. "Leads/Closed").
    pub hidden_for_reps: Vec<String>,
    /// A high-value lead with no activity for this long is "idle".
    pub high_value_idle_days: u32,
    /// Each lead's card (a message leadgate writes with the lead's state,
    /// threaded into its conversation) in the lead's folders.
    pub lead_card: bool,
}

impl Default for ViewsConfig {
    fn default() -> Self {
        ViewsConfig {
            rep_inbox: InboxAccess::ReadOnly,
            hidden_for_reps: Vec::new(),
            high_value_idle_days: 3,
            lead_card: true,
        }
    }
}
