//! STORE and UID STORE: written through to the upstream first, then the
//! index takes the flags the upstream reports back.

use imap_codec::imap_types::{
    flag::{Flag, StoreResponse, StoreType},
    sequence::SequenceSet,
};

use super::resolve_set;
use crate::{
    imap::session::{Io, Session},
    upstream::pool::FlagOp,
};

impl<S: Io> Session<S> {
    pub(crate) async fn store(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: Vec<Flag<'static>>,
        by_uid: bool,
    ) {
        let Some(sel) = self.selected() else { return };
        if sel.read_only {
            self.no(
                tag,
                Some("CANNOT"),
                "STORE failed: the folder is open read-only",
            );
            return;
        }
        if flags.iter().any(|f| matches!(f, Flag::Extension(_))) {
            self.bad(
                tag,
                "Only \\Answered \\Flagged \\Deleted \\Seen \\Draft and keywords can be stored",
            );
            return;
        }
        let targets = match resolve_set(set, &sel.uids, by_uid) {
            Ok(t) => t,
            Err(e) => {
                self.bad(tag, e);
                return;
            }
        };
        let (name, uidvalidity, gen) = (sel.folder.upstream().to_owned(), sel.uidvalidity, sel.gen);
        if targets.is_empty() {
            self.ok(tag, None, "STORE completed (no messages)");
            return;
        }
        let op = match kind {
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
            StoreType::Replace => FlagOp::Replace,
        };
        let uids: Vec<u32> = targets.iter().map(|(_, u)| *u).collect();
        let changes = match self
            .ctx
            .pool
            .store_flags(&name, uidvalidity, &uids, op, &flags)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                self.upstream_no(tag, "STORE", &e);
                return;
            }
        };
        if let Err(e) = self
            .ctx
            .index
            .update_flags(&name, gen, changes.clone())
            .await
        {
            tracing::error!("index flag update after STORE: {e}");
        }
        for (seq, uid) in &targets {
            if let Some((_, flags, _)) = changes.iter().find(|(u, _, _)| u == uid) {
                let flags = flags.join(" ");
                if response == StoreResponse::Answer {
                    self.untagged(&format!("{seq} FETCH (UID {uid} FLAGS ({flags}))"));
                }
                if let Some(sel) = self.selected_mut() {
                    sel.reported.insert(*uid, flags);
                }
            }
        }
        self.ok(
            tag,
            None,
            if by_uid {
                "UID STORE completed"
            } else {
                "STORE completed"
            },
        );
    }
}
