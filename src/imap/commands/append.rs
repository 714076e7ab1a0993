//! APPEND to INBOX or a private folder, answered with APPENDUID. A
//! `\Seen` given for INBOX is the appending user's own read state.

use imap_codec::imap_types::{
    datetime::DateTime, extensions::binary::LiteralOrLiteral8, flag::Flag, mailbox::Mailbox,
};

use super::copy::refused_code;
use crate::{
    imap::{
        authz::Write,
        folders::Folder,
        session::{Io, Session},
        views::defs::is_lead_keyword,
    },
    upstream::sync::imap_date,
};

impl<S: Io> Session<S> {
    pub(crate) async fn append(
        &mut self,
        tag: &str,
        mailbox: &Mailbox<'_>,
        flags: Vec<Flag<'static>>,
        date: Option<DateTime>,
        message: LiteralOrLiteral8<'static>,
    ) {
        let LiteralOrLiteral8::Literal(literal) = message else {
            self.no(
                tag,
                Some("CANNOT"),
                "APPEND failed: BINARY literals are not supported",
            );
            return;
        };
        let data = literal.data().to_vec();
        if data.is_empty() {
            self.no(tag, Some("CANNOT"), "APPEND failed: the message is empty");
            return;
        }
        if flags.iter().any(|f| matches!(f, Flag::Extension(_))) {
            self.bad(
                tag,
                "Only \\Answered \\Flagged \\Deleted \\Seen \\Draft and keywords can be set",
            );
            return;
        }
        let flags: Vec<Flag<'static>> = flags
            .into_iter()
            .filter(|f| !is_lead_keyword(&f.to_string()))
            .collect();
        let Some(folder) = self.resolve(tag, mailbox).await else {
            return;
        };
        if let Err(d) = self.may(Write::Into(&folder)) {
            self.deny(tag, "APPEND", d);
            return;
        }
        let upstream = match &folder {
            f @ (Folder::Inbox | Folder::Private { .. }) => {
                f.upstream().unwrap_or_default().to_owned()
            }
            other => {
                self.no(
                    tag,
                    Some("CANNOT"),
                    &format!(
                        "APPEND failed: {} is a lead folder and fills itself",
                        other.client_name()
                    ),
                );
                return;
            }
        };
        // \Seen on shared mail is the appending user's own, never the
        // upstream's: it is kept back and set for them alone.
        let mut flags = flags;
        let seen_by_me = matches!(folder, Folder::Inbox) && flags.contains(&Flag::Seen);
        if matches!(folder, Folder::Inbox) {
            flags.retain(|f| *f != Flag::Seen);
        }
        let date = date.map(|d| imap_date(d.as_ref()));
        let appended = self
            .ctx
            .pool
            .append(&upstream, &flags, date.as_deref(), data)
            .await;
        match appended {
            Ok(uid) => {
                if let Err(e) = self.ctx.pool.sync(&self.ctx.index, &upstream).await {
                    tracing::warn!("resync of {upstream} after APPEND failed: {e}");
                }
                if let (true, Some((uv, uid))) = (seen_by_me, uid) {
                    self.mark_appended_seen(&upstream, uv, uid).await;
                }
                let code = uid.map(|(uv, uid)| format!("APPENDUID {uv} {uid}"));
                self.ok(tag, code.as_deref(), "APPEND completed");
            }
            Err(e) => match refused_code(&e) {
                Some(code) => self.no(
                    tag,
                    Some(code),
                    &format!(
                        "APPEND failed: folder {} does not exist",
                        folder.client_name()
                    ),
                ),
                None => self.upstream_no(tag, "APPEND", &e),
            },
        }
    }
}

impl<S: Io> Session<S> {
    /// Sets the appending user's own \Seen on a message they put into a
    /// shared folder (found by its APPENDUID once the index has it).
    async fn mark_appended_seen(&self, upstream: &str, uidvalidity: u32, uid: u32) {
        let Some(user) = self.authed().map(|a| a.seen.clone()) else {
            return;
        };
        let Some(rec) = self.ctx.index.mailbox_record(upstream) else {
            return;
        };
        if rec.uidvalidity != uidvalidity {
            return;
        }
        let key = crate::store::messages::message_key(rec.gen, uid);
        match self.ctx.index.seen.set(&user, &[key], true).await {
            Ok(changed) if !changed.is_empty() => {
                self.ctx.views.publish_read_state(&changed, user.id)
            }
            Ok(_) => {}
            Err(e) => tracing::error!(user = self.user_name(), "saving read state: {e}"),
        }
    }
}
