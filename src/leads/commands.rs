//! Commands by mail: a person writes to the notes address about a lead
//! (answering one of its messages, or to `notes+<id>@...`) and starts the
//! body with command lines; the rest of the body is a note.
//!
//! ```text
//! /assign bob
//! /handoff bob Customer wants a German speaker
//! /status quote sent            any status label, any case
//! /close won                    any outcome
//! /follow-up 2026-12-10         or: tomorrow | next week | in 3 business days
//! /next Send the revised quote
//! /escalate [why]
//! /reopen
//! /unassign [why]
//! ```
//!
//! Blank lines before and between commands are skipped; the first other
//! line starts the note, which ends where the quoted mail begins (a `>`
//! line, "On ... wrote:", Outlook's "-----Original Message-----" or
//! "From: " block, or the `-- ` signature mark). Pure: parsing only; the
//! gateway turns each command into a [`LeadAction`] and asks the lead book,
//! so policy and audit are those of the action folders.

use chrono::NaiveDate;

use super::{book::LeadAction, calendar::Calendar, Outcome, Status};
use crate::model::parse_named;

/// Commands read from one mail at most; more are refused, not cut silently.
pub const MAX_COMMANDS: usize = 20;
/// `in N business days` at most (a year of business days).
const MAX_BUSINESS_DAYS: u32 = 260;

/// One command line, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Assign(String),
    Handoff { to: String, note: String },
    Unassign(String),
    Status(Status),
    Close(Outcome),
    FollowUp(When),
    Next(String),
    Escalate(String),
    Reopen,
}

/// `/follow-up` dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Date(NaiveDate),
    Tomorrow,
    NextWeek,
    BusinessDays(u32),
}

/// A mail's commands, each understood or refused with a sentence, in order,
/// with the line they came from; and the note.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub commands: Vec<(String, Result<Command, String>)>,
    pub note: String,
}

/// Reads the command lines at the start of `body` and the note after them.
pub fn parse(body: &str) -> Parsed {
    let mut out = Parsed::default();
    let mut lines = body.lines().peekable();
    while let Some(line) = lines.peek() {
        let t = line.trim();
        if t.is_empty() {
            lines.next();
            continue;
        }
        if !t.starts_with('/') {
            break;
        }
        lines.next();
        if out.commands.len() == MAX_COMMANDS {
            out.commands.push((
                t.to_owned(),
                Err(format!(
                    "at most {MAX_COMMANDS} commands per mail; this one and the rest were not read"
                )),
            ));
            while lines.peek().is_some_and(|l| l.trim().starts_with('/')) {
                lines.next();
            }
            break;
        }
        out.commands.push((t.to_owned(), command(t)));
    }
    let mut note = Vec::new();
    for line in lines {
        if ends_note(line) {
            break;
        }
        note.push(line.trim_end());
    }
    out.note = note.join("\n").trim().to_owned();
    out
}

/// Where the quoted mail or the signature starts.
fn ends_note(line: &str) -> bool {
    let t = line.trim();
    t.starts_with('>')
        || line.trim_end_matches('\r') == "-- "
        || t == "--"
        || t.starts_with("-----Original Message-----")
        || t.starts_with("________________")
        || (t.starts_with("On ") && t.ends_with("wrote:"))
        || (t.starts_with("Am ") && t.ends_with("schrieb:"))
        || (t.starts_with("Le ") && t.ends_with("a écrit :"))
}

fn command(line: &str) -> Result<Command, String> {
    let line = line.trim_start_matches('/');
    let (verb, rest) = match line.split_once(char::is_whitespace) {
        Some((v, r)) => (v, r.trim()),
        None => (line, ""),
    };
    let word = |what: &str| -> Result<String, String> {
        let w = rest.split_whitespace().next().unwrap_or_default();
        if w.is_empty() {
            return Err(format!("/{verb} needs {what}"));
        }
        Ok(w.to_lowercase())
    };
    match verb.to_lowercase().as_str() {
        "assign" => Ok(Command::Assign(word("a user name")?)),
        "handoff" | "hand-off" => {
            let to = word("a user name, then a note")?;
            let note = rest
                .split_once(char::is_whitespace)
                .map(|(_, n)| n.trim().to_owned())
                .unwrap_or_default();
            Ok(Command::Handoff { to, note })
        }
        "unassign" => Ok(Command::Unassign(rest.to_owned())),
        "status" => {
            if rest.is_empty() {
                return Err("/status needs a status, such as \"quote sent\"".into());
            }
            let s: Status = parse_named(rest).map_err(|e| e.to_string())?;
            if !s.is_active() {
                return Err(format!(
                    "\"{}\" is an outcome: use /close {}",
                    s.label(),
                    s.label().to_lowercase()
                ));
            }
            Ok(Command::Status(s))
        }
        "close" => {
            if rest.is_empty() {
                return Err("/close needs an outcome, such as \"won\"".into());
            }
            let o: Outcome = parse_named(rest).map_err(|e| e.to_string())?;
            Ok(Command::Close(o))
        }
        "follow-up" | "followup" | "follow" => {
            let rest = if verb.eq_ignore_ascii_case("follow") {
                rest.strip_prefix("up").map_or(rest, str::trim)
            } else {
                rest
            };
            when(rest).map(Command::FollowUp)
        }
        "next" => {
            if rest.is_empty() {
                return Err("/next needs the next step in words".into());
            }
            Ok(Command::Next(rest.to_owned()))
        }
        "escalate" => Ok(Command::Escalate(rest.to_owned())),
        "reopen" => Ok(Command::Reopen),
        other => Err(format!(
            "unknown command /{other}; known: /assign, /handoff, /unassign, /status, /close, /follow-up, /next, /escalate, /reopen"
        )),
    }
}

fn when(text: &str) -> Result<When, String> {
    let t = text.trim().to_lowercase();
    let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
    match t.as_str() {
        "tomorrow" => return Ok(When::Tomorrow),
        "next week" => return Ok(When::NextWeek),
        _ => {}
    }
    if let Ok(d) = NaiveDate::parse_from_str(&t, "%Y-%m-%d") {
        return Ok(When::Date(d));
    }
    let n = t
        .strip_prefix("in ")
        .and_then(|r| {
            r.strip_suffix(" business days")
                .or_else(|| r.strip_suffix(" business day"))
        })
        .and_then(|n| n.trim().parse::<u32>().ok());
    match n {
        Some(n) if (1..=MAX_BUSINESS_DAYS).contains(&n) => Ok(When::BusinessDays(n)),
        Some(_) => Err(format!(
            "/follow-up: between 1 and {MAX_BUSINESS_DAYS} business days"
        )),
        None => Err(format!(
            "/follow-up needs a date (2026-12-10), \"tomorrow\", \"next week\" or \"in 3 business days\", not {text:?}"
        )),
    }
}

impl When {
    /// The follow-up time (unix seconds): a date's opening hour (the next
    /// business day's when it is none), or so many business days from now
    /// at the same time of day.
    pub fn at(self, cal: &Calendar, now: i64) -> i64 {
        match self {
            When::Date(d) => cal.open_on(d),
            When::Tomorrow => cal.add_business_days(now, 1),
            When::NextWeek => cal.add_business_days(now, 5),
            When::BusinessDays(n) => cal.add_business_days(now, n),
        }
    }
}

impl Command {
    /// The lead action this command asks for. `note` is the mail's note:
    /// a handoff without a note on its line takes it (and consumes it).
    pub fn into_action(self, cal: &Calendar, now: i64, note: &mut String) -> LeadAction {
        match self {
            Command::Assign(to) => LeadAction::AssignTo(to),
            Command::Handoff { to, note: line } => {
                let note = if line.is_empty() {
                    std::mem::take(note)
                } else {
                    line
                };
                LeadAction::Handoff { to, note }
            }
            Command::Unassign(why) => LeadAction::Unassign { note: why },
            Command::Status(s) => LeadAction::SetStatus(s),
            Command::Close(o) => LeadAction::Close(o),
            Command::FollowUp(w) => LeadAction::FollowUp(w.at(cal, now)),
            Command::Next(t) => LeadAction::NextAction(t),
            Command::Escalate(why) => LeadAction::Escalate { note: why },
            Command::Reopen => LeadAction::Reopen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Vec<Command> {
        parse(body)
            .commands
            .into_iter()
            .map(|(_, c)| c.unwrap())
            .collect()
    }

    #[test]
    fn every_command_is_read_in_order_and_the_rest_is_the_note() {
        let p = parse(
            "\n/assign Bob\n/status Quote SENT\n\n/follow-up in 3 business days\n/next Send the revised quote\n/escalate\n/reopen\n/close won\n/handoff maria over to you\nThey want 40 seats.\nCall Friday.\n\nOn Mon, 1 Dec 2026 at 10:00, Dana wrote:\n> old text\n",
        );
        let cmds: Vec<Command> = p.commands.into_iter().map(|(_, c)| c.unwrap()).collect();
        assert_eq!(
            cmds,
            vec![
                Command::Assign("bob".into()),
                Command::Status(Status::QuoteSent),
                Command::FollowUp(When::BusinessDays(3)),
                Command::Next("Send the revised quote".into()),
                Command::Escalate(String::new()),
                Command::Reopen,
                Command::Close(Outcome::Won),
                Command::Handoff {
                    to: "maria".into(),
                    note: "over to you".into()
                },
            ]
        );
        assert_eq!(p.note, "They want 40 seats.\nCall Friday.");
    }

    #[test]
    fn dates_and_words_for_follow_ups() {
        assert_eq!(
            ok("/follow-up 2026-12-10"),
            vec![Command::FollowUp(When::Date(
                NaiveDate::from_ymd_opt(2026, 12, 10).unwrap()
            ))]
        );
        assert_eq!(
            ok("/follow-up tomorrow\n/follow up next week\n/followup in 1 business day"),
            vec![
                Command::FollowUp(When::Tomorrow),
                Command::FollowUp(When::NextWeek),
                Command::FollowUp(When::BusinessDays(1)),
            ]
        );
        for bad in [
            "/follow-up",
            "/follow-up someday",
            "/follow-up 2026-13-40",
            "/follow-up in 0 business days",
            "/follow-up in 9999999999 business days",
        ] {
            let p = parse(bad);
            assert!(p.commands[0].1.is_err(), "{bad}");
        }
    }

    #[test]
    fn wrong_commands_are_refused_with_a_sentence_and_do_not_stop_the_others() {
        let p = parse("/frobnicate\n/status won\n/status\n/close maybe\n/assign\n/reopen\nnote");
        let errs: Vec<&str> = p
            .commands
            .iter()
            .filter_map(|(_, c)| c.as_ref().err().map(String::as_str))
            .collect();
        assert_eq!(errs.len(), 5, "{errs:?}");
        assert!(errs[0].contains("unknown command /frobnicate"));
        assert!(errs[1].contains("use /close won"));
        assert!(errs[3].contains("maybe"));
        assert_eq!(p.commands[5].1, Ok(Command::Reopen));
        assert_eq!(p.note, "note");
    }

    #[test]
    fn a_plain_note_has_no_commands_and_quotes_are_cut() {
        let p = parse("Customer asked about SSO.\n-- \nAlice\n");
        assert!(p.commands.is_empty());
        assert_eq!(p.note, "Customer asked about SSO.");
        let p = parse("Thanks\n\n-----Original Message-----\nFrom: x\n");
        assert_eq!(p.note, "Thanks");
        // A slash later in the body is text, not a command.
        let p = parse("See the /pricing page\n/close won\n");
        assert!(p.commands.is_empty());
    }

    #[test]
    fn a_flood_of_commands_is_cut_with_a_refusal() {
        let body = "/reopen\n".repeat(1000) + "the note";
        let p = parse(&body);
        assert_eq!(p.commands.len(), MAX_COMMANDS + 1);
        assert!(p.commands[MAX_COMMANDS].1.is_err());
        assert_eq!(p.note, "the note");
    }

    #[test]
    fn a_handoff_without_a_note_on_its_line_takes_the_mails_note() {
        let cal = Calendar::from_config(&Default::default()).unwrap();
        let mut note = "Customer wants a German speaker".to_owned();
        let a = Command::Handoff {
            to: "bob".into(),
            note: String::new(),
        }
        .into_action(&cal, 0, &mut note);
        assert!(
            matches!(&a, LeadAction::Handoff { to, note } if to == "bob" && note == "Customer wants a German speaker")
        );
        assert!(note.is_empty());
    }
}
