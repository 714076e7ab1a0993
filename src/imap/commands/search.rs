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
    imap::{
        access::{group, Ref},
        limits::is_text_key,
        session::{Io, Session},
    },
    index::Msg,
    store::messages::message_key,
    upstream::conn::Cmd,
};

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
    /// Text key -> message keys the upstream found.
    text: &'a HashMap<SearchKey<'static>, HashSet<u64>>,
}

/// One message as SEARCH sees it: where it is, its flags with the lead
/// keywords, and what the index knows.
struct Candidate<'a> {
    r: &'a Ref,
    flags: Vec<String>,
    /// Its modseq, when the search names MODSEQ (0 otherwise).
    modseq: u64,
}

/// Whether a key asks for modseqs (RFC 7162 3.1.5).
fn uses_modseq(key: &SearchKey<'static>) -> bool {
    match key {
        SearchKey::ModSequence { .. } => true,
        SearchKey::And(keys) => keys.as_ref().iter().any(uses_modseq),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::Not(k) => uses_modseq(k),
        _ => false,
    }
}

impl Candidate<'_> {
    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }
}

fn internal_day(msg: &Msg) -> Option<chrono::NaiveDate> {
    chrono::DateTime::parse_from_str(&msg.meta.internal_date, "%d-%b-%Y %H:%M:%S %z")
        .ok()
        .map(|d| d.date_naive())
}

fn matches(key: &SearchKey<'static>, c: &Candidate<'_>, scope: &Scope<'_>) -> bool {
    let msg = &c.r.msg;
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().all(|k| matches(k, c, scope)),
        SearchKey::Or(a, b) => matches(a, c, scope) || matches(b, c, scope),
        SearchKey::Not(k) => !matches(k, c, scope),
        SearchKey::All => true,
        SearchKey::Recent => c.has("\\Recent"),
        SearchKey::Old => !c.has("\\Recent"),
        SearchKey::New => c.has("\\Recent") && !c.has("\\Seen"),
        SearchKey::SequenceSet(set) => in_set(set, c.r.seq, scope.count),
        SearchKey::Uid(set) => in_set(set, c.r.uid, scope.max_uid),
        SearchKey::Answered => c.has("\\Answered"),
        SearchKey::Unanswered => !c.has("\\Answered"),
        SearchKey::Deleted => c.has("\\Deleted"),
        SearchKey::Undeleted => !c.has("\\Deleted"),
        SearchKey::Draft => c.has("\\Draft"),
        SearchKey::Undraft => !c.has("\\Draft"),
        SearchKey::Flagged => c.has("\\Flagged"),
        SearchKey::Unflagged => !c.has("\\Flagged"),
        SearchKey::Seen => c.has("\\Seen"),
        SearchKey::Unseen => !c.has("\\Seen"),
        SearchKey::Keyword(k) => c.has(k.inner()),
        SearchKey::Unkeyword(k) => !c.has(k.inner()),
        SearchKey::Larger(n) => msg.meta.size > *n,
        SearchKey::Smaller(n) => msg.meta.size < *n,
        SearchKey::Before(d) => internal_day(msg).is_some_and(|day| day < *d.as_ref()),
        SearchKey::On(d) => internal_day(msg).is_some_and(|day| day == *d.as_ref()),
        SearchKey::Since(d) => internal_day(msg).is_some_and(|day| day >= *d.as_ref()),
        // Per-flag entries are not kept apart: the message's modseq counts.
        SearchKey::ModSequence { modseq, .. } => c.modseq >= *modseq,
        k if is_text_key(k) => scope
            .text
            .get(k)
            .is_some_and(|keys| keys.contains(&c.r.key())),
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
        let refs = self.all_refs();
        let Some(sel) = self.selected() else { return };
        let (count, max_uid) = (sel.uids.len() as u32, sel.uids.last().copied().unwrap_or(0));
        let key = match criteria.as_ref() {
            [one] => one.clone(),
            _ => SearchKey::And(criteria),
        };
        let mut text_keys = Vec::new();
        collect_text_keys(&key, &mut text_keys);
        let mut text: HashMap<SearchKey<'static>, HashSet<u64>> = HashMap::new();
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
            // Ask each upstream mailbox the selection spans.
            let mut found = HashSet::new();
            for ((name, uidvalidity, gen), _) in group(&refs) {
                match self.ctx.pool.search(&name, uidvalidity, make).await {
                    Ok(uids) => found.extend(uids.into_iter().map(|u| message_key(gen, u))),
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
            text.insert(k, found);
        }
        let scope = Scope {
            count,
            max_uid,
            text: &text,
        };
        let with_modseq = uses_modseq(&key);
        let mut modseqs = Vec::new();
        if with_modseq {
            self.enable_condstore().await;
            let Some(sweep) = self.sweep_or_refuse(tag, "SEARCH", &refs, true).await else {
                return;
            };
            modseqs = sweep.modseqs;
        }
        let mut line = String::from("SEARCH");
        let mut highest = 0;
        for (i, r) in refs.iter().enumerate() {
            let c = Candidate {
                r,
                flags: self.flags_of(r),
                modseq: modseqs.get(i).copied().unwrap_or(0),
            };
            if matches(&key, &c, &scope) {
                line.push(' ');
                line.push_str(&(if by_uid { r.uid } else { r.seq }).to_string());
                highest = highest.max(c.modseq);
            }
        }
        // The highest modseq of what was found (RFC 7162 3.1.5).
        if with_modseq && highest > 0 {
            line.push_str(&format!(" (MODSEQ {highest})"));
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
