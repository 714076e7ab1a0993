//! Who may write what, decided in one place. Every IMAP write path asks
//! [`check`] before it acts, with the folder it writes *into* and the
//! folder it takes *out of*, so a new command (or an old one by another
//! name: COPY for APPEND, MOVE for COPY + EXPUNGE) cannot walk around a
//! rule:
//!
//! 1. `Into(folder)` — APPEND, COPY, MOVE: INBOX only where INBOX is
//!    read-write for the user (reps: `[views] rep_inbox`); never a lead
//!    folder (it fills itself); action folders ask lead policy per lead.
//! 2. `OutOf(folder)` — MOVE, EXPUNGE: never a lead or action folder
//!    (they never delete from the shared mailbox); INBOX only where it is
//!    read-write for the user, and each message as in 3.
//! 3. `Flags(lead)` — STORE of shared flags on a shared message (its
//!    `\Seen` is each user's own, `index::seen`, and asks nothing here):
//!    managers and admins on any; a rep on the
//!    leads they own, and on mail of no lead only where INBOX is read-write
//!    for them. An unassigned lead is claimed first (move it to
//!    `Assign to/<you>`); another rep's lead is theirs. Reading never
//!    writes shared state: a rep who reads a colleague's lead marks it read
//!    for themselves only.
//!
//! Pure: no I/O, no clock, so each rule has its unit test below.

use super::{folders::Folder, views::defs::InboxAccess};
use crate::{leads::Lead, store::users::Role};

/// One write, described by where it goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Write<'a> {
    Into(&'a Folder),
    OutOf(&'a Folder),
    Flags(Option<&'a Lead>),
}

/// A refusal: the response code and the text the user reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denied {
    pub code: &'static str,
    pub text: String,
}

fn denied(code: &'static str, text: impl Into<String>) -> Result<(), Denied> {
    Err(Denied {
        code,
        text: text.into(),
    })
}

/// The writer: who they are and how INBOX is open to them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writer<'a> {
    pub user: &'a str,
    pub role: Role,
    pub inbox: InboxAccess,
}

pub(crate) fn check(w: Writer<'_>, write: Write<'_>) -> Result<(), Denied> {
    let manager = matches!(w.role, Role::Manager | Role::Admin);
    match write {
        Write::Into(Folder::Inbox) | Write::OutOf(Folder::Inbox)
            if w.inbox != InboxAccess::ReadWrite =>
        {
            denied(
                "NOPERM",
                "INBOX is read-only for you: reply through SMTP, and change leads through the action folders",
            )
        }
        Write::Into(Folder::View { name, .. }) => denied(
            "CANNOT",
            format!("{name} fills itself from lead state; move messages to an action folder (Assign to/..., Set status/...) instead"),
        ),
        Write::OutOf(Folder::View { .. } | Folder::Action { .. }) => denied(
            "CANNOT",
            "lead folders never delete from the shared mailbox; use COPY, or close the lead",
        ),
        Write::Into(_) | Write::OutOf(_) => Ok(()),
        Write::Flags(_) if manager => Ok(()),
        Write::Flags(Some(lead)) => match lead.owner.as_deref() {
            Some(owner) if owner == w.user => Ok(()),
            Some(owner) => denied(
                "NOPERM",
                format!(
                    "lead {} belongs to {owner}: only the owner or a manager changes its flags; ask {owner} or a manager for a handoff",
                    lead.id
                ),
            ),
            None => denied(
                "NOPERM",
                format!(
                    "lead {} is unassigned: claim it first (move it to Assign to/{})",
                    lead.id, w.user
                ),
            ),
        },
        Write::Flags(None) if w.inbox == InboxAccess::ReadWrite => Ok(()),
        Write::Flags(None) => denied(
            "NOPERM",
            "this shared message belongs to no lead, and INBOX is read-only for you",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(inbox: InboxAccess) -> Writer<'static> {
        Writer {
            user: "bob",
            role: Role::Rep,
            inbox,
        }
    }

    fn lead(owner: Option<&str>) -> Lead {
        Lead {
            id: 7,
            owner: owner.map(str::to_owned),
            ..Lead::default()
        }
    }

    #[test]
    fn a_read_only_inbox_takes_no_mail_by_any_command() {
        let w = rep(InboxAccess::ReadOnly);
        let d = check(w, Write::Into(&Folder::Inbox)).unwrap_err();
        assert_eq!(d.code, "NOPERM");
        assert!(check(w, Write::OutOf(&Folder::Inbox)).is_err());
        assert!(check(rep(InboxAccess::ReadWrite), Write::Into(&Folder::Inbox)).is_ok());
        let private = Folder::Private {
            client: "Drafts".into(),
            upstream: "u/bob/Drafts".into(),
        };
        assert!(check(w, Write::Into(&private)).is_ok());
        assert!(check(w, Write::OutOf(&private)).is_ok());
    }

    #[test]
    fn lead_folders_take_nothing_and_lose_nothing() {
        let view = Folder::View {
            id: 1,
            name: "Leads/Mine".into(),
        };
        for role in [Role::Rep, Role::Manager, Role::Admin] {
            let w = Writer {
                user: "maria",
                role,
                inbox: InboxAccess::ReadWrite,
            };
            assert_eq!(check(w, Write::Into(&view)).unwrap_err().code, "CANNOT");
            assert_eq!(check(w, Write::OutOf(&view)).unwrap_err().code, "CANNOT");
        }
    }

    #[test]
    fn shared_flags_belong_to_the_owner_and_managers() {
        let w = rep(InboxAccess::ReadWrite);
        assert!(check(w, Write::Flags(Some(&lead(Some("bob"))))).is_ok());
        let d = check(w, Write::Flags(Some(&lead(Some("alice"))))).unwrap_err();
        assert!(d.text.contains("belongs to alice"), "{}", d.text);
        let d = check(w, Write::Flags(Some(&lead(None)))).unwrap_err();
        assert!(d.text.contains("Assign to/bob"), "{}", d.text);
        assert!(check(w, Write::Flags(None)).is_ok());
        assert!(check(rep(InboxAccess::ReadOnly), Write::Flags(None)).is_err());
        let maria = Writer {
            user: "maria",
            role: Role::Manager,
            inbox: InboxAccess::ReadWrite,
        };
        assert!(check(maria, Write::Flags(Some(&lead(Some("alice"))))).is_ok());
        assert!(check(maria, Write::Flags(Some(&lead(None)))).is_ok());
    }
}
