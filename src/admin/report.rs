//! Text for people: `leadgate lead list`, `leadgate lead show`,
//! `leadgate user list` and `leadgate app-password list`. Pure functions
//! over leads, users and audit events, so the CLI (in its own process or
//! through the daemon) and the digest mail print the same thing.

use std::fmt::Write;

use crate::{
    leads::{Lead, Status},
    store::{
        audit::AuditEvent,
        users::{AppPassword, User},
    },
};

/// Which leads `lead list` shows.
#[derive(Debug, Default, Clone)]
pub struct LeadFilter {
    pub status: Option<Status>,
    /// An owner's name, or "-" for unassigned.
    pub owner: Option<String>,
    pub overdue: bool,
    /// Include closed, won and lost leads.
    pub all: bool,
}

impl LeadFilter {
    pub fn matches(&self, lead: &Lead, now: i64) -> bool {
        if !self.all && self.status.is_none() && !lead.status.is_active() {
            return false;
        }
        if self.status.is_some_and(|s| s != lead.status) {
            return false;
        }
        match self.owner.as_deref() {
            Some("-") if lead.owner.is_some() => return false,
            Some(o) if o != "-" && lead.owner.as_deref() != Some(o) => return false,
            _ => {}
        }
        !self.overdue || lead.is_overdue(now)
    }
}

pub fn time(at: i64, tz: chrono_tz::Tz) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|d| d.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".into())
}

/// One line of at most `width` characters (control characters become
/// spaces; a cut ends in '…').
pub fn clip(s: &str, width: usize) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= width {
        one_line
    } else {
        let mut cut: String = one_line.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// The `user list` table (never a hash).
pub fn user_table(users: &[User]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<24} {:<8} {:<9} email", "name", "role", "state");
    for u in users {
        let state = if u.enabled { "enabled" } else { "disabled" };
        let _ = writeln!(
            out,
            "{:<24} {:<8} {:<9} {}",
            u.name,
            u.role.to_string(),
            state,
            clip(u.email.as_deref().unwrap_or("-"), 80)
        );
    }
    out
}

/// The `app-password list` table: labels and dates, never the hash.
pub fn app_password_table(apps: &[AppPassword], tz: chrono_tz::Tz) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<32} {:<16} last used", "label", "created");
    for a in apps {
        let _ = writeln!(
            out,
            "{:<32} {:<16} {}",
            a.label,
            time(a.created, tz),
            a.last_used
                .map(|t| time(t, tz))
                .unwrap_or_else(|| "never".into())
        );
    }
    out
}

/// The `lead list` table.
pub fn lead_table(leads: &[&Lead], now: i64, tz: chrono_tz::Tz) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>5}  {:<20} {:<10} {:<26} {:<17} {:<30} subject",
        "id", "status", "owner", "category", "due", "contact"
    );
    for l in leads {
        let due = match l.due {
            Some(d) if l.is_overdue(now) => format!("{} !", time(d, tz)),
            Some(d) => time(d, tz),
            None => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:>5}  {:<20} {:<10} {:<26} {:<17} {:<30} {}",
            l.id,
            l.status.label(),
            l.owner.as_deref().unwrap_or("-"),
            l.category.label(),
            due,
            clip(&l.contact_email, 30),
            clip(&l.subject, 60)
        );
    }
    out
}

/// Held replies of a lead waiting for a decision (empty text for none).
pub fn held_list(held: &[crate::store::held::HeldReply], tz: chrono_tz::Tz) -> String {
    let mut out = String::new();
    if held.is_empty() {
        return out;
    }
    let _ = writeln!(out, "Held replies (Review/Held; release or discard):");
    for h in held {
        let _ = writeln!(
            out,
            "  {} from {} to {}: {} {} (expires {})",
            time(h.held_at, tz),
            h.sender,
            clip(&h.rcpts.join(", "), 60),
            h.message_id,
            clip(&h.subject, 60),
            time(h.expires_at, tz)
        );
    }
    out
}

/// The `lead show` text: the lead's context, then its timeline.
pub fn lead_detail(lead: &Lead, events: &[AuditEvent], now: i64, tz: chrono_tz::Tz) -> String {
    let mut out = String::new();
    let opt = |v: Option<i64>| v.map(|t| time(t, tz)).unwrap_or_else(|| "-".into());
    let _ = writeln!(out, "Lead {}: {}", lead.id, clip(&lead.subject, 200));
    let status = match lead.outcome {
        Some(o) => format!("{} ({})", lead.status.label(), o.label()),
        None => lead.status.label().to_owned(),
    };
    let _ = writeln!(
        out,
        "  status        {status}{}",
        if lead.is_overdue(now) {
            "  [OVERDUE]"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "  owner         {}",
        lead.owner.as_deref().unwrap_or("(unassigned)")
    );
    let _ = writeln!(out, "  category      {}", lead.category.label());
    let contact = match &lead.contact_name {
        Some(n) => format!("{} <{}>", clip(n, 60), lead.contact_email),
        None => lead.contact_email.clone(),
    };
    let _ = writeln!(out, "  contact       {contact}");
    let _ = writeln!(out, "  company       {}", lead.company_domain);
    let _ = writeln!(out, "  source        {}", lead.source);
    let due = match (lead.due, lead.due_kind) {
        (Some(d), Some(k)) => format!("{} ({})", time(d, tz), k.label()),
        (Some(d), None) => time(d, tz),
        _ => "-".into(),
    };
    let _ = writeln!(out, "  due           {due}");
    let _ = writeln!(
        out,
        "  next action   {}",
        lead.next_action.as_deref().unwrap_or("-")
    );
    let signals = if lead.value_signals.is_empty() {
        "-".to_owned()
    } else {
        lead.value_signals.join(", ")
    };
    let flags = [
        (lead.high_value, "high value"),
        (lead.urgent, "urgent"),
        (lead.escalated, "escalated"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| *name)
    .collect::<Vec<_>>()
    .join(", ");
    let _ = writeln!(
        out,
        "  value         {signals}{}",
        if flags.is_empty() {
            String::new()
        } else {
            format!(" [{flags}]")
        }
    );
    let _ = writeln!(out, "  first inbound {}", time(lead.first_inbound_at, tz));
    let first_response = match lead.first_response_secs() {
        Some(s) => format!(
            "{} (after {}h{:02}m)",
            opt(lead.first_response_at),
            s / 3600,
            (s % 3600) / 60
        ),
        None => "-".into(),
    };
    let _ = writeln!(out, "  first reply   {first_response}");
    if !lead.notes.is_empty() {
        let _ = writeln!(out, "Notes:");
        for n in &lead.notes {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                time(n.at, tz),
                n.author,
                clip(&n.text, 300)
            );
        }
    }
    if !lead.handoffs.is_empty() {
        let _ = writeln!(out, "Handoffs:");
        for h in &lead.handoffs {
            let _ = writeln!(
                out,
                "  {} {} -> {} by {}: {}",
                time(h.at, tz),
                h.from.as_deref().unwrap_or("-"),
                h.to.as_deref().unwrap_or("-"),
                h.by,
                clip(&h.note, 300)
            );
        }
    }
    let _ = writeln!(out, "Timeline:");
    for e in events {
        let changes = e
            .changes
            .iter()
            .map(|c| {
                format!(
                    "{}: {} -> {}",
                    c.field,
                    if c.before.is_empty() { "-" } else { &c.before },
                    if c.after.is_empty() { "-" } else { &c.after }
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let _ = writeln!(
            out,
            "  #{:<6} {} {:<22} {:<10} {}{}",
            e.seq,
            time(e.at / 1000, tz),
            e.action,
            clip(&e.actor, 10),
            clip(&e.reason, 120),
            if changes.is_empty() {
                String::new()
            } else {
                format!(" [{changes}]")
            }
        );
    }
    out
}
