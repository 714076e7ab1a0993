//! STORE and UID STORE: written through to the upstream first (in every
//! upstream mailbox the selection spans), then the index takes the flags
//! the upstream reports back. Lead keywords are computed, never stored.

use imap_codec::imap_types::{
    flag::{Flag, StoreResponse, StoreType},
    sequence::SequenceSet,
};

use super::resolve_set;
use crate::{
    imap::{
        access::group,
        folders::Folder,
        session::{Io, Session},
        views::defs::is_lead_keyword,
    },
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
        let in_view = matches!(sel.folder, Folder::View { .. });
        let targets = match resolve_set(set, &sel.uids, by_uid) {
            Ok(t) => t,
            Err(e) => {
                self.bad(tag, e);
                return;
            }
        };
        // \Deleted in a lead folder is the session's own (see
        // `Selected::deleted_here`); it never reaches the upstream.
        let local_deleted = in_view.then(|| flags.contains(&Flag::Deleted));
        let flags: Vec<Flag<'static>> = flags
            .into_iter()
            .filter(|f| !is_lead_keyword(&f.to_string()))
            .filter(|f| !(in_view && *f == Flag::Deleted))
            .collect();
        let refs = self.refs(&targets);
        let op = match kind {
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
            StoreType::Replace => FlagOp::Replace,
        };
        // Nothing to write upstream (only lead keywords, or only the
        // session's own \Deleted): nothing to ask permission for either.
        let upstream = !(flags.is_empty() && op != FlagOp::Replace);
        // Shared flags are the owner's and the managers': one message that
        // is not this user's to change refuses the whole STORE, unchanged.
        if let Some(d) = upstream.then(|| self.first_flag_denial(&refs)).flatten() {
            self.deny(tag, if by_uid { "UID STORE" } else { "STORE" }, d);
            return;
        }
        if upstream {
            for ((name, uidvalidity, gen), group) in group(&refs) {
                let uids: Vec<u32> = group.iter().map(|r| r.up_uid).collect();
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
                if let Err(e) = self.ctx.index.update_flags(&name, gen, changes).await {
                    tracing::error!("index flag update after STORE: {e}");
                }
            }
        }
        if let (Some(deleted), Some(sel)) = (local_deleted, self.selected_mut()) {
            for (_, uid) in &targets {
                let mark = match kind {
                    StoreType::Add => deleted || sel.deleted_here.contains(uid),
                    StoreType::Remove => !deleted && sel.deleted_here.contains(uid),
                    StoreType::Replace => deleted,
                };
                if mark {
                    sel.deleted_here.insert(*uid);
                } else {
                    sel.deleted_here.remove(uid);
                }
            }
        }
        for r in self.refs(&targets) {
            let flags = self.flag_text(&r);
            if response == StoreResponse::Answer {
                self.untagged(&format!("{} FETCH (UID {} FLAGS ({flags}))", r.seq, r.uid));
            }
            if let Some(sel) = self.selected_mut() {
                sel.reported
                    .insert(r.uid, crate::imap::session::flags_digest(&flags));
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
