//! COPY, MOVE and their UID forms between the folders a user can see.

use imap_codec::imap_types::{
    extensions::uidplus::{UidElement, UidSet},
    mailbox::Mailbox,
    response::Code,
    sequence::SequenceSet,
};

use super::resolve_set;
use crate::{
    imap::session::{Io, Session},
    upstream::conn::UpstreamError,
};

pub(crate) fn uid_set_text(set: &UidSet) -> String {
    set.0
        .as_ref()
        .iter()
        .map(|e| match e {
            UidElement::Single(u) => u.to_string(),
            UidElement::Range(a, b) => format!("{a}:{b}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A refusal from the upstream, keeping TRYCREATE so clients offer to
/// create the folder.
pub(crate) fn refused_code(err: &UpstreamError) -> Option<&'static str> {
    match err {
        UpstreamError::Refused {
            code: Some(Code::TryCreate),
            ..
        } => Some("TRYCREATE"),
        _ => None,
    }
}

impl<S: Io> Session<S> {
    pub(crate) async fn copy(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        mailbox: &Mailbox<'_>,
        by_uid: bool,
        is_move: bool,
    ) {
        let verb = match (by_uid, is_move) {
            (false, false) => "COPY",
            (true, false) => "UID COPY",
            (false, true) => "MOVE",
            (true, true) => "UID MOVE",
        };
        let Some(sel) = self.selected() else { return };
        if is_move && sel.read_only {
            self.no(
                tag,
                Some("CANNOT"),
                &format!("{verb} failed: the folder is open read-only"),
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
        let (source, uidvalidity) = (sel.folder.clone(), sel.uidvalidity);
        let Some(dest) = self.resolve(tag, mailbox).await else {
            return;
        };
        if is_move && dest == source {
            self.no(
                tag,
                Some("CANNOT"),
                &format!("{verb} failed: source and destination are the same folder"),
            );
            return;
        }
        if targets.is_empty() {
            self.ok(tag, None, &format!("{verb} completed (no messages)"));
            return;
        }
        let uids: Vec<u32> = targets.iter().map(|(_, u)| *u).collect();
        let code = match self
            .ctx
            .pool
            .copy(
                source.upstream(),
                uidvalidity,
                &uids,
                dest.upstream(),
                is_move,
            )
            .await
        {
            Ok(code) => code,
            Err(e) => {
                if let Some(code) = refused_code(&e) {
                    self.no(
                        tag,
                        Some(code),
                        &format!(
                            "{verb} failed: folder {} does not exist",
                            dest.client_name()
                        ),
                    );
                } else {
                    self.upstream_no(tag, verb, &e);
                }
                return;
            }
        };
        // Index both sides now, so the EXPUNGEs of a MOVE go out before OK.
        for folder in [&dest, &source] {
            if folder == &source && !is_move {
                continue;
            }
            if let Err(e) = self.ctx.pool.sync(&self.ctx.index, folder.upstream()).await {
                tracing::warn!("resync of {} after {verb} failed: {e}", folder.upstream());
            }
        }
        let copyuid = match code {
            Some(Code::CopyUid {
                uid_validity,
                source,
                destination,
            }) => Some(format!(
                "COPYUID {uid_validity} {} {}",
                uid_set_text(&source),
                uid_set_text(&destination)
            )),
            _ => None,
        };
        if is_move {
            if let Some(c) = &copyuid {
                self.untagged(&format!("OK [{c}] Moved"));
            }
            self.ok(tag, None, &format!("{verb} completed"));
        } else {
            self.ok(tag, copyuid.as_deref(), &format!("{verb} completed"));
        }
    }
}
