//! Caps on the arguments that make the server work, checked in one place
//! before a command runs: a command over a cap is answered `NO [LIMIT]`
//! and does nothing. The line (`limits.max_line_bytes`) and literal caps
//! bound the bytes; these bound the work those bytes can ask for.
//!
//! | argument | cap | why |
//! |---|---|---|
//! | LIST/LSUB reference + pattern | 1,024 bytes, 32 wildcards | matched against every folder name |
//! | sequence-set elements (FETCH, STORE, COPY, MOVE, UID EXPUNGE) | 16,384 | resolved per element |
//! | SEARCH keys | 1,000 keys, 1,000 set elements, 16 distinct text keys | each text key is one upstream search per mailbox |
//! | HEADER.FIELDS names | 128 per section | compared with every field served |
//! | FETCH items | 64 | each is work per message |

use imap_codec::imap_types::{
    command::CommandBody,
    fetch::{MacroOrMessageDataItemNames, MessageDataItemName, Section},
    mailbox::ListMailbox,
    search::SearchKey,
    sequence::SequenceSet,
};

pub const MAX_LIST_PATTERN: usize = 1024;
pub const MAX_LIST_WILDCARDS: usize = 32;
pub const MAX_SET_ELEMENTS: usize = 16_384;
pub const MAX_SEARCH_KEYS: usize = 1000;
pub const MAX_SEARCH_SET_ELEMENTS: usize = 1000;
pub const MAX_SEARCH_TEXT_KEYS: usize = 16;
pub const MAX_HEADER_FIELDS: usize = 128;
pub const MAX_FETCH_ITEMS: usize = 64;

fn set_len(set: &SequenceSet) -> usize {
    set.0.as_ref().len()
}

#[derive(Default)]
struct SearchCount {
    keys: usize,
    set_elements: usize,
    text: usize,
}

fn count_search(key: &SearchKey<'_>, c: &mut SearchCount) {
    c.keys += 1;
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().for_each(|k| count_search(k, c)),
        SearchKey::Not(k) => count_search(k, c),
        SearchKey::Or(a, b) => {
            count_search(a, c);
            count_search(b, c);
        }
        SearchKey::SequenceSet(s) | SearchKey::Uid(s) => c.set_elements += set_len(s),
        k if is_text_key(k) => c.text += 1,
        _ => {}
    }
}

/// A key the index cannot answer: asked of the upstream as a UID SEARCH.
pub(crate) fn is_text_key(key: &SearchKey<'_>) -> bool {
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

fn list_text<'a>(m: &'a ListMailbox<'_>) -> &'a [u8] {
    match m {
        ListMailbox::Token(t) => t.as_ref(),
        ListMailbox::String(s) => s.as_ref(),
    }
}

/// Why `body` is over a cap, if it is.
pub fn over_limit(body: &CommandBody<'_>) -> Option<String> {
    let set_cap = |set: &SequenceSet| {
        (set_len(set) > MAX_SET_ELEMENTS).then(|| {
            format!(
                "a sequence set of {} elements; at most {MAX_SET_ELEMENTS}",
                set_len(set)
            )
        })
    };
    match body {
        CommandBody::List {
            reference,
            mailbox_wildcard,
        }
        | CommandBody::Lsub {
            reference,
            mailbox_wildcard,
        } => {
            let reference: &[u8] = match reference {
                imap_codec::imap_types::mailbox::Mailbox::Inbox => b"INBOX",
                imap_codec::imap_types::mailbox::Mailbox::Other(o) => o.inner().as_ref(),
            };
            let pattern = list_text(mailbox_wildcard);
            let len = reference.len() + pattern.len();
            let wildcards = reference
                .iter()
                .chain(pattern)
                .filter(|b| matches!(b, b'*' | b'%'))
                .count();
            if len > MAX_LIST_PATTERN {
                return Some(format!(
                    "a LIST pattern of {len} bytes; at most {MAX_LIST_PATTERN}"
                ));
            }
            (wildcards > MAX_LIST_WILDCARDS).then(|| {
                format!("a LIST pattern with {wildcards} wildcards; at most {MAX_LIST_WILDCARDS}")
            })
        }
        CommandBody::Fetch {
            sequence_set,
            macro_or_item_names,
            ..
        } => {
            if let Some(why) = set_cap(sequence_set) {
                return Some(why);
            }
            let MacroOrMessageDataItemNames::MessageDataItemNames(items) = macro_or_item_names
            else {
                return None;
            };
            if items.len() > MAX_FETCH_ITEMS {
                return Some(format!(
                    "{} FETCH items; at most {MAX_FETCH_ITEMS}",
                    items.len()
                ));
            }
            items.iter().find_map(|i| match i {
                MessageDataItemName::BodyExt {
                    section:
                        Some(Section::HeaderFields(_, names) | Section::HeaderFieldsNot(_, names)),
                    ..
                } if names.as_ref().len() > MAX_HEADER_FIELDS => Some(format!(
                    "HEADER.FIELDS with {} names; at most {MAX_HEADER_FIELDS}",
                    names.as_ref().len()
                )),
                _ => None,
            })
        }
        CommandBody::Store { sequence_set, .. }
        | CommandBody::Copy { sequence_set, .. }
        | CommandBody::Move { sequence_set, .. }
        | CommandBody::ExpungeUid { sequence_set } => set_cap(sequence_set),
        CommandBody::Search { criteria, .. } => {
            let mut c = SearchCount::default();
            criteria
                .as_ref()
                .iter()
                .for_each(|k| count_search(k, &mut c));
            if c.keys > MAX_SEARCH_KEYS {
                Some(format!("{} SEARCH keys; at most {MAX_SEARCH_KEYS}", c.keys))
            } else if c.set_elements > MAX_SEARCH_SET_ELEMENTS {
                Some(format!(
                    "{} sequence-set elements in SEARCH; at most {MAX_SEARCH_SET_ELEMENTS}",
                    c.set_elements
                ))
            } else if c.text > MAX_SEARCH_TEXT_KEYS {
                Some(format!(
                    "{} text keys in SEARCH; at most {MAX_SEARCH_TEXT_KEYS}",
                    c.text
                ))
            } else {
                None
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::{decode::Decoder, CommandCodec};

    fn check(line: &str) -> Option<String> {
        let line = format!("{line}\r\n");
        let (_, cmd) = CommandCodec::default()
            .decode(line.as_bytes())
            .expect("valid command");
        over_limit(&cmd.body)
    }

    #[test]
    fn ordinary_commands_pass() {
        assert_eq!(check("a LIST \"\" *"), None);
        assert_eq!(
            check("a UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To Subject)])"),
            None
        );
        assert_eq!(check("a UID SEARCH OR FROM x SUBJECT y UID 1:*"), None);
        assert_eq!(check("a UID STORE 1,3,5:9 +FLAGS (\\Seen)"), None);
    }

    #[test]
    fn work_is_capped() {
        let stars = "*".repeat(33);
        assert!(check(&format!("a LIST \"\" \"{stars}\""))
            .unwrap()
            .contains("wildcards"));
        let long = "x".repeat(2000);
        assert!(check(&format!("a LIST \"\" \"{long}\""))
            .unwrap()
            .contains("bytes"));
        let set = vec!["1"; MAX_SET_ELEMENTS + 1].join(",");
        assert!(check(&format!("a UID FETCH {set} FLAGS")).is_some());
        assert!(check(&format!("a UID COPY {set} Trash")).is_some());
        let names = vec!["X-A"; MAX_HEADER_FIELDS + 1].join(" ");
        assert!(
            check(&format!("a FETCH 1 BODY.PEEK[HEADER.FIELDS ({names})]"))
                .unwrap()
                .contains("HEADER.FIELDS")
        );
        let texts = (0..17)
            .map(|i| format!("SUBJECT s{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(check(&format!("a SEARCH {texts}"))
            .unwrap()
            .contains("text keys"));
        let many = vec!["SEEN"; MAX_SEARCH_KEYS + 1].join(" ");
        assert!(check(&format!("a SEARCH {many}"))
            .unwrap()
            .contains("SEARCH keys"));
    }
}
