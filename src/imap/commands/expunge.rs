//! EXPUNGE, UID EXPUNGE, CLOSE and UNSELECT. Only messages marked \Deleted
//! in the selected folder are removed, and only on the user's explicit
//! request.

use imap_codec::imap_types::sequence::SequenceSet;

use super::resolve_set;
use crate::imap::session::{Io, Session};

impl<S: Io> Session<S> {
    /// UIDs in the selected folder marked \Deleted (within `set` if given).
    fn deleted_uids(&self, set: Option<&SequenceSet>) -> Result<Vec<u32>, &'static str> {
        let Some(sel) = self.selected() else {
            return Ok(Vec::new());
        };
        let candidates: Vec<u32> = match set {
            Some(set) => resolve_set(set, &sel.uids, true)?
                .into_iter()
                .map(|(_, u)| u)
                .collect(),
            None => sel.uids.clone(),
        };
        Ok(self
            .ctx
            .index
            .with_mailbox(sel.folder.upstream(), |m| {
                candidates
                    .into_iter()
                    .filter(|u| m.msgs.get(u).is_some_and(|msg| msg.has_flag("\\Deleted")))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn expunge_deleted(
        &mut self,
        uids: &[u32],
    ) -> Result<(), crate::upstream::conn::UpstreamError> {
        let Some(sel) = self.selected() else {
            return Ok(());
        };
        let (name, uidvalidity) = (sel.folder.upstream().to_owned(), sel.uidvalidity);
        self.ctx.pool.expunge(&name, uidvalidity, uids).await?;
        self.ctx.pool.sync(&self.ctx.index, &name).await?;
        Ok(())
    }

    pub(crate) async fn expunge(&mut self, tag: &str, set: Option<SequenceSet>) {
        if self.selected().is_some_and(|s| s.read_only) {
            self.no(
                tag,
                Some("CANNOT"),
                "EXPUNGE failed: the folder is open read-only",
            );
            return;
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
        let read_only = self.selected().is_none_or(|s| s.read_only);
        if expunge && !read_only {
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
