//! STORE and UID STORE: written through to the upstream first (in every
//! upstream mailbox the selection spans), then the index takes the flags
//! the upstream reports back. Lead keywords are computed, never stored.
//! `\Seen` of shared mail is the user's own (`index::seen`): it never goes
//! upstream, needs no right over the lead, and is the one flag a folder
//! read-only for the user (a rep's INBOX) still takes.

use imap_codec::imap_types::{
    flag::{Flag, StoreResponse, StoreType},
    sequence::SequenceSet,
};

use super::resolve_set;
use crate::{
    imap::{
        access::{group, Ref},
        folders::Folder,
        session::{Io, Session},
        views::defs::is_lead_keyword,
    },
    upstream::{pool::FlagOp, sync::uid_set},
};

/// A STORE or UID STORE as the client sent it.
pub(crate) struct StoreRequest {
    pub set: SequenceSet,
    pub kind: StoreType,
    pub response: StoreResponse,
    pub flags: Vec<Flag<'static>>,
    pub by_uid: bool,
    /// The UNCHANGEDSINCE modifier (RFC 7162 3.1.3).
    pub unchanged_since: Option<u64>,
}

impl<S: Io> Session<S> {
    pub(crate) async fn store(&mut self, tag: &str, req: StoreRequest) {
        let StoreRequest {
            set,
            kind,
            response,
            flags,
            by_uid,
            unchanged_since,
        } = req;
        let set = &set;
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
        let (shared, seen_only) = (sel.folder.is_shared(), sel.seen_only);
        let mut targets = match resolve_set(set, &sel.uids, by_uid) {
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
        let op = match kind {
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
            StoreType::Replace => FlagOp::Replace,
        };
        // On shared mail \Seen is each user's own: it never goes upstream.
        let (seen, flags) = if shared {
            let has_seen = flags.contains(&Flag::Seen);
            let seen = match op {
                FlagOp::Add => has_seen.then_some(true),
                FlagOp::Remove => has_seen.then_some(false),
                FlagOp::Replace => Some(has_seen),
            };
            let rest: Vec<Flag<'static>> = flags.into_iter().filter(|f| *f != Flag::Seen).collect();
            (seen, rest)
        } else {
            (None, flags)
        };
        // Nothing to write upstream (only lead keywords, the session's own
        // \Deleted in a lead folder, or \Seen): nothing to ask permission for.
        let writes_shared = !(flags.is_empty() && op != FlagOp::Replace);
        if writes_shared && seen_only {
            self.no(
                tag,
                Some("CANNOT"),
                "STORE failed: this folder is read-only for you; only \\Seen (your own read state) can change",
            );
            return;
        }
        // UNCHANGEDSINCE (RFC 7162 3.1.3): a message changed since the
        // client's modseq is left alone and named in MODIFIED.
        let mut modified = Vec::new();
        if let Some(since) = unchanged_since {
            self.enable_condstore().await;
            let refs = self.refs(&targets);
            let Some(sweep) = self.sweep_or_refuse(tag, "STORE", &refs, false).await else {
                return;
            };
            let stale: std::collections::HashSet<u32> = refs
                .iter()
                .zip(&sweep.modseqs)
                .filter(|(_, m)| **m > since)
                .map(|(r, _)| r.uid)
                .collect();
            modified = targets
                .iter()
                .filter(|(_, u)| stale.contains(u))
                .map(|&(seq, uid)| if by_uid { uid } else { seq })
                .collect();
            targets.retain(|(_, u)| !stale.contains(u));
        }
        let refs = self.refs(&targets);
        // Shared flags are the owner's and the managers': one message that
        // is not this user's to change refuses the whole STORE, unchanged.
        if writes_shared {
            if let Some(d) = self.first_flag_denial(&refs) {
                self.deny(tag, if by_uid { "UID STORE" } else { "STORE" }, d);
                return;
            }
        }
        if writes_shared {
            for ((name, uidvalidity, gen), group) in group(&refs) {
                // FLAGS (...) on shared mail keeps the upstream's own \Seen.
                let (kept, plain): (Vec<&Ref>, Vec<&Ref>) =
                    group.into_iter().partition(|r: &&Ref| {
                        shared && op == FlagOp::Replace && r.msg.has_flag("\\Seen")
                    });
                let with_seen: Vec<Flag<'static>> =
                    flags.iter().cloned().chain([Flag::Seen]).collect();
                for (refs, flags) in [(plain, &flags), (kept, &with_seen)] {
                    if refs.is_empty() {
                        continue;
                    }
                    let uids: Vec<u32> = refs.iter().map(|r| r.up_uid).collect();
                    let changes = match self
                        .ctx
                        .pool
                        .store_flags(&name, uidvalidity, &uids, op, flags)
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
        if let Some(seen) = seen {
            let cards: Vec<u32> = refs
                .iter()
                .filter(|r| r.card.is_some())
                .map(|r| r.uid)
                .collect();
            self.set_card_seen(&cards, seen);
            let refs: Vec<&Ref> = refs.iter().collect();
            if let Err(e) = self.set_seen(&refs, seen).await {
                tracing::error!(user = self.user_name(), "saving read state: {e}");
                self.no(
                    tag,
                    Some("SERVERBUG"),
                    "STORE failed: your read state could not be saved",
                );
                return;
            }
        }
        let after = self.refs(&targets);
        // CONDSTORE clients get the new modseq, also after .SILENT.
        let modseqs = match self.condstore() {
            true => self.sweep(&after, false).await.map(|s| s.modseqs),
            false => None,
        };
        for (i, r) in after.iter().enumerate() {
            let flags = self.flag_text(r);
            let modseq = modseqs
                .as_ref()
                .and_then(|m| m.get(i))
                .map(|m| format!(" MODSEQ ({m})"))
                .unwrap_or_default();
            if response == StoreResponse::Answer {
                self.announce_keywords(&flags);
                self.untagged(&format!(
                    "{} FETCH (UID {} FLAGS ({flags}){modseq})",
                    r.seq, r.uid
                ));
                if let Some(sel) = self.selected_mut() {
                    sel.reported
                        .insert(r.uid, crate::imap::session::flags_digest(&flags));
                }
            } else {
                if !modseq.is_empty() {
                    self.untagged(&format!("{} FETCH (UID {}{modseq})", r.seq, r.uid));
                }
                // The client knows what it stored: not announced again.
                self.announce_keywords(&flags);
                if let Some(sel) = self.selected_mut() {
                    sel.reported
                        .insert(r.uid, crate::imap::session::flags_digest(&flags));
                }
            }
        }
        let done = if by_uid {
            "UID STORE completed"
        } else {
            "STORE completed"
        };
        if modified.is_empty() {
            self.ok(tag, None, done);
        } else {
            modified.sort_unstable();
            let code = format!("MODIFIED {}", uid_set(modified));
            self.ok(
                tag,
                Some(&code),
                "Conditional STORE failed for messages changed since",
            );
        }
    }
}
