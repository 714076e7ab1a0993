//! EXPUNGE, UID EXPUNGE, CLOSE and UNSELECT. Only messages marked \Deleted
//! in the selected real folder are removed, and only on the user's explicit
//! request; lead folders never expunge (they show the shared mailbox): there
//! EXPUNGE answers OK and removes nothing.

use imap_codec::imap_types::sequence::SequenceSet;

use super::resolve_set;
use crate::imap::{
    authz::Write,
    folders::Folder,
    session::{Io, Session},
};

impl<S: Io> Session<S> {
    /// UIDs in the selected folder marked \Deleted (within `set` if given).
    fn deleted_uids(&self, set: Option<&SequenceSet>) -> Result<Vec<u32>, &'static str> {
        let Some(sel) = self.selected() else {
            return Ok(Vec::new());
        };
        let pairs: Vec<(u32, u32)> = match set {
            Some(set) => resolve_set(set, &sel.uids, true)?,
            None => sel.uids.iter().map(|u| (0, *u)).collect(),
        };
        // Only messages this user may change go: a colleague's lead marked
        // \Deleted by its owner is theirs (or a manager's) to expunge.
        Ok(self
            .refs(&pairs)
            .into_iter()
            .filter(|r| r.msg.has_flag("\\Deleted") && self.may_flag(r).is_ok())
            .map(|r| r.up_uid)
            .collect())
    }

    async fn expunge_deleted(
        &mut self,
        uids: &[u32],
    ) -> Result<(), crate::upstream::conn::UpstreamError> {
        let Some(sel) = self.selected() else {
            return Ok(());
        };
        let Some(name) = sel.folder.upstream().map(str::to_owned) else {
            return Ok(());
        };
        let uidvalidity = sel.uidvalidity;
        self.ctx.pool.expunge(&name, uidvalidity, uids).await?;
        self.ctx.pool.sync(&self.ctx.index, &name).await?;
        Ok(())
    }

    pub(crate) async fn expunge(&mut self, tag: &str, set: Option<SequenceSet>) {
        let source = self.selected().map(|s| s.folder.clone());
        // A lead folder answers OK and removes nothing: its \Deleted is the
        // session's own, and a message leaves when its lead does (clients
        // that move by COPY + \Deleted + EXPUNGE must not see an error).
        if let Some(Folder::View { .. }) = &source {
            if self.selected().is_some_and(|s| !s.read_only) {
                self.ok(
                    tag,
                    None,
                    "EXPUNGE completed; lead folders keep their messages (one leaves when its lead does)",
                );
                return;
            }
        }
        if let Some(d) = source.and_then(|f| self.may(Write::OutOf(&f)).err()) {
            self.deny(tag, "EXPUNGE", d);
            return;
        }
        match self.selected() {
            Some(s) if s.read_only => {
                self.no(
                    tag,
                    Some("CANNOT"),
                    "EXPUNGE failed: the folder is open read-only",
                );
                return;
            }
            _ => {}
        }
        let uids = match self.deleted_uids(set.as_ref()) {
            Ok(u) => u,
            Err(e) => {
                self.bad(tag, e);
                return;
            }
        };
        match self.expunge_deleted(&uids).await {
            Ok(()) => self.ok(tag, None, "EXPUNGE completed"),
            Err(e) => self.upstream_no(tag, "EXPUNGE", &e),
        }
    }

    pub(crate) async fn close(&mut self, tag: &str, expunge: bool) {
        let real_rw = self.selected().is_some_and(|s| {
            !s.read_only
                && s.folder.upstream().is_some()
                && self.may(Write::OutOf(&s.folder)).is_ok()
        });
        if expunge && real_rw {
            if let Ok(uids) = self.deleted_uids(None) {
                if !uids.is_empty() {
                    if let Err(e) = self.expunge_deleted(&uids).await {
                        self.upstream_no(tag, "CLOSE", &e);
                        return;
                    }
                }
            }
        }
        if let Some(a) = self.authed_mut() {
            a.selected = None;
        }
        self.ok(
            tag,
            None,
            if expunge {
                "CLOSE completed"
            } else {
                "UNSELECT completed"
            },
        );
    }
}
