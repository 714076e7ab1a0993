//! SEARCH and UID SEARCH. Keys the index can answer (flags, sizes, dates,
//! sequence and UID sets, NOT/OR/AND) are evaluated locally; each distinct
//! text key (FROM, SUBJECT, BODY, HEADER, ...) is asked of the upstream as
//! a UID SEARCH once, and its UID set is then used in the local evaluation.

use std::collections::{HashMap, HashSet};

use imap_codec::{
    encode::Encoder,
    imap_types::{
        command::{Command, CommandBody},
        core::{Charset, Vec1},
        search::SearchKey,
        sequence::{SeqOrUid, Sequence, SequenceSet},
    },
    CommandCodec,
};

use crate::{
    imap::session::{Io, Session},
    index::Msg,
    upstream::conn::Cmd,
};

fn is_text_key(key: &SearchKey<'_>) -> bool {
    matches!(
        key,
        SearchKey::Bcc(_)
            | SearchKey::Body(_)
            | SearchKey::Cc(_)
            | SearchKey::From(_)
            | SearchKey::Header(..)
            | SearchKey::Subject(_)
            | SearchKey::Text(_)
            | SearchKey::To(_)
            | SearchKey::SentBefore(_)
            | SearchKey::SentOn(_)
            | SearchKey::SentSince(_)
    )
}

fn collect_text_keys(key: &SearchKey<'static>, out: &mut Vec<SearchKey<'static>>) {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().for_each(|k| collect_text_keys(k, out)),
        SearchKey::Not(k) => collect_text_keys(k, out),
        SearchKey::Or(a, b) => {
            collect_text_keys(a, out);
            collect_text_keys(b, out);
        }
        k if is_text_key(k) && !out.contains(k) => out.push(k.clone()),
        _ => {}
    }
}

fn in_set(set: &SequenceSet, n: u32, largest: u32) -> bool {
    let value = |s: &SeqOrUid| match s {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => largest,
    };
    set.0.as_ref().iter().any(|seq| match seq {
        Sequence::Single(s) => value(s) == n,
        Sequence::Range(a, b) => {
            let (a, b) = (value(a), value(b));
            (a.min(b)..=a.max(b)).contains(&n)
        }
    })
}

/// Everything a key needs besides the message itself.
struct Scope<'a> {
    count: u32,
    max_uid: u32,
    text: &'a HashMap<SearchKey<'static>, HashSet<u32>>,
}

fn internal_day(msg: &Msg) -> Option<chrono::NaiveDate> {
    chrono::DateTime::parse_from_str(&msg.meta.internal_date, "%d-%b-%Y %H:%M:%S %z")
        .ok()
        .map(|d| d.date_naive())
}

fn matches(key: &SearchKey<'static>, seq: u32, msg: &Msg, scope: &Scope<'_>) -> bool {
    let flag = |f: &str| msg.has_flag(f);
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().all(|k| matches(k, seq, msg, scope)),
        SearchKey::Or(a, b) => matches(a, seq, msg, scope) || matches(b, seq, msg, scope),
        SearchKey::Not(k) => !matches(k, seq, msg, scope),
        SearchKey::All | SearchKey::Old => true,
        SearchKey::New | SearchKey::Recent => false,
        SearchKey::SequenceSet(set) => in_set(set, seq, scope.count),
        SearchKey::Uid(set) => in_set(set, msg.uid, scope.max_uid),
        SearchKey::Answered => flag("\\Answered"),
        SearchKey::Unanswered => !flag("\\Answered"),
        SearchKey::Deleted => flag("\\Deleted"),
        SearchKey::Undeleted => !flag("\\Deleted"),
        SearchKey::Draft => flag("\\Draft"),
        SearchKey::Undraft => !flag("\\Draft"),
        SearchKey::Flagged => flag("\\Flagged"),
        SearchKey::Unflagged => !flag("\\Flagged"),
        SearchKey::Seen => flag("\\Seen"),
        SearchKey::Unseen => !flag("\\Seen"),
        SearchKey::Keyword(k) => flag(k.inner()),
        SearchKey::Unkeyword(k) => !flag(k.inner()),
        SearchKey::Larger(n) => msg.meta.size > *n,
        SearchKey::Smaller(n) => msg.meta.size < *n,
        SearchKey::Before(d) => internal_day(msg).is_some_and(|day| day < *d.as_ref()),
        SearchKey::On(d) => internal_day(msg).is_some_and(|day| day == *d.as_ref()),
        SearchKey::Since(d) => internal_day(msg).is_some_and(|day| day >= *d.as_ref()),
        k if is_text_key(k) => scope
            .text
            .get(k)
            .is_some_and(|uids| uids.contains(&msg.uid)),
        _ => false,
    }
}

impl<S: Io> Session<S> {
    pub(crate) async fn search(
        &mut self,
        tag: &str,
        charset: Option<Charset<'static>>,
        criteria: Vec1<SearchKey<'static>>,
        by_uid: bool,
    ) {
        let Some(sel) = self.selected() else { return };
        let (name, uidvalidity) = (sel.folder.upstream().to_owned(), sel.uidvalidity);
        let uids = sel.uids.clone();
        let key = match criteria.as_ref() {
            [one] => one.clone(),
            _ => SearchKey::And(criteria),
        };
        let mut text_keys = Vec::new();
        collect_text_keys(&key, &mut text_keys);
        let mut text = HashMap::new();
        for k in text_keys {
            let body = CommandBody::Search {
                charset: charset.clone(),
                criteria: Vec1::from(k.clone()),
                uid: true,
            };
            let Ok(command) = Command::new("T", body) else {
                self.bad(tag, "Invalid search criteria");
                return;
            };
            let make = || Cmd::from_encoded(CommandCodec::default().encode(&command), "UID SEARCH");
            match self.ctx.pool.search(&name, uidvalidity, make).await {
                Ok(found) => {
                    text.insert(k, found.into_iter().collect::<HashSet<u32>>());
                }
                Err(crate::upstream::conn::UpstreamError::Refused { text, .. }) => {
                    self.no(tag, Some("BADCHARSET"), &format!("SEARCH failed: {text}"));
                    return;
                }
                Err(e) => {
                    self.upstream_no(tag, "SEARCH", &e);
                    return;
                }
            }
        }
        let found: Vec<u32> = self
            .ctx
            .index
            .with_mailbox(&name, |m| {
                let scope = Scope {
                    count: uids.len() as u32,
                    max_uid: uids.last().copied().unwrap_or(0),
                    text: &text,
                };
                uids.iter()
                    .enumerate()
                    .filter_map(|(i, uid)| {
                        let msg = m.msgs.get(uid)?;
                        let seq = i as u32 + 1;
                        matches(&key, seq, msg, &scope).then_some(if by_uid { *uid } else { seq })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut line = String::from("SEARCH");
        for n in found {
            line.push(' ');
            line.push_str(&n.to_string());
        }
        self.untagged(&line);
        self.ok(
            tag,
            None,
            if by_uid {
                "UID SEARCH completed"
            } else {
                "SEARCH completed"
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_with_star() {
        let s = SequenceSet::try_from("2:*").unwrap();
        assert!(in_set(&s, 5, 5));
        assert!(!in_set(&s, 1, 5));
        let s = SequenceSet::try_from("7:3").unwrap();
        assert!(in_set(&s, 4, 10));
    }
}
