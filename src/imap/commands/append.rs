//! APPEND to INBOX or a private folder, answered with APPENDUID.

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
