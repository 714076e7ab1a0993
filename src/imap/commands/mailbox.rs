//! SELECT/EXAMINE, STATUS, LIST/LSUB and the folder commands CREATE,
//! DELETE, RENAME (private folders only).

use std::collections::BTreeSet;

use imap_codec::imap_types::{
    mailbox::{ListMailbox, Mailbox},
    status::StatusDataItemName,
};

use crate::{
    imap::{
        folders::{list_match, Folder, FolderMap, DEFAULT_FOLDERS, DELIM},
        session::{Io, Selected, Session},
        wire,
    },
    upstream::{conn::UpstreamError, pool::mailbox_name},
};

const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

impl<S: Io> Session<S> {
    /// The user's folder map, retrying the upstream if it was unreachable at
    /// login.
    pub(crate) async fn folder_map(&mut self) -> Option<FolderMap> {
        let user = self.authed()?.user.name.clone();
        if let Some(m) = self.authed().and_then(|a| a.folders.clone()) {
            return Some(m);
        }
        let map = self.ctx.folder_map(&user).await?;
        if let Some(a) = self.authed_mut() {
            a.folders = Some(map.clone());
        }
        Some(map)
    }

    /// Resolves a client folder name, answering NO itself on failure.
    pub(crate) async fn resolve(&mut self, tag: &str, mailbox: &Mailbox<'_>) -> Option<Folder> {
        let name = mailbox_name(mailbox);
        if name.eq_ignore_ascii_case("INBOX") {
            return Some(Folder::Inbox);
        }
        let Some(map) = self.folder_map().await else {
            self.no(
                tag,
                Some("UNAVAILABLE"),
                "Your folders are unavailable: the upstream mail server cannot be reached",
            );
            return None;
        };
        match map.resolve(&name) {
            Ok(f) => Some(f),
            Err(e) => {
                self.no(tag, Some("CANNOT"), &e.to_string());
                None
            }
        }
    }

    /// Makes sure the index has `folder`, syncing private folders (the IDLE
    /// watcher keeps INBOX current). Answers NO itself on failure.
    pub(crate) async fn freshen(&mut self, tag: &str, folder: &Folder, what: &str) -> bool {
        let name = folder.upstream().to_owned();
        let known = self.ctx.index.mailbox_record(&name).is_some();
        if matches!(folder, Folder::Inbox) && known {
            return true;
        }
        match self.ctx.pool.sync(&self.ctx.index, &name).await {
            Ok(_) => true,
            Err(UpstreamError::Refused { .. }) => {
                self.no(
                    tag,
                    Some("NONEXISTENT"),
                    &format!("{what} failed: no folder {}", folder.client_name()),
                );
                false
            }
            Err(e) if known => {
                tracing::warn!("serving {name} from the index; upstream sync failed: {e}");
                true
            }
            Err(e) => {
                self.upstream_no(tag, what, &e);
                false
            }
        }
    }

    pub(crate) async fn select(&mut self, tag: &str, mailbox: &Mailbox<'_>, read_only: bool) {
        if let Some(a) = self.authed_mut() {
            a.selected = None;
        }
        let what = if read_only { "EXAMINE" } else { "SELECT" };
        let Some(folder) = self.resolve(tag, mailbox).await else {
            return;
        };
        if !self.freshen(tag, &folder, what).await {
            return;
        }
        // A sync in progress (say a re-index) finishes before we look.
        let _settled = self.ctx.index.sync_guard(folder.upstream()).await;
        let last_seq = self.ctx.index.current_seq();
        let snapshot = self.ctx.index.with_mailbox(folder.upstream(), |m| {
            let uids: Vec<u32> = m.msgs.keys().copied().collect();
            let mut keywords = BTreeSet::new();
            let mut first_unseen = None;
            for (i, msg) in m.msgs.values().enumerate() {
                for f in &msg.flags {
                    if !f.starts_with('\\') {
                        keywords.insert(f.clone());
                    }
                }
                if first_unseen.is_none() && !msg.has_flag("\\Seen") {
                    first_unseen = Some(i + 1);
                }
            }
            (m.rec.clone(), uids, keywords, first_unseen)
        });
        let Some((rec, uids, keywords, first_unseen)) = snapshot else {
            self.no(
                tag,
                Some("NONEXISTENT"),
                &format!("{what} failed: no folder {}", folder.client_name()),
            );
            return;
        };
        let kw: Vec<&str> = keywords.iter().map(|k| &**k).collect();
        let kw = if kw.is_empty() {
            String::new()
        } else {
            format!(" {}", kw.join(" "))
        };
        self.untagged(&format!("FLAGS ({SYSTEM_FLAGS}{kw})"));
        if read_only {
            self.untagged("OK [PERMANENTFLAGS ()] Read-only folder");
        } else {
            self.untagged(&format!(
                "OK [PERMANENTFLAGS ({SYSTEM_FLAGS}{kw} \\*)] Flags permitted"
            ));
        }
        self.untagged(&format!("{} EXISTS", uids.len()));
        self.untagged("0 RECENT");
        if let Some(n) = first_unseen {
            self.untagged(&format!("OK [UNSEEN {n}] First unseen"));
        }
        self.untagged(&format!("OK [UIDVALIDITY {}] UIDs valid", rec.uidvalidity));
        self.untagged(&format!(
            "OK [UIDNEXT {}] Predicted next UID",
            rec.uidnext.max(1)
        ));
        let code = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        if let Some(a) = self.authed_mut() {
            a.selected = Some(Selected {
                folder,
                gen: rec.gen,
                uidvalidity: rec.uidvalidity,
                read_only,
                uids,
                last_seq,
                reported: Default::default(),
            });
        }
        self.ok(tag, Some(code), &format!("{what} completed"));
    }

    pub(crate) async fn status(
        &mut self,
        tag: &str,
        mailbox: &Mailbox<'_>,
        items: &[StatusDataItemName],
    ) {
        let Some(folder) = self.resolve(tag, mailbox).await else {
            return;
        };
        if self.ctx.index.mailbox_record(folder.upstream()).is_none()
            && !self.freshen(tag, &folder, "STATUS").await
        {
            return;
        }
        let counts = self.ctx.index.with_mailbox(folder.upstream(), |m| {
            let unseen = m
                .msgs
                .values()
                .filter(|msg| !msg.has_flag("\\Seen"))
                .count();
            let deleted = m
                .msgs
                .values()
                .filter(|msg| msg.has_flag("\\Deleted"))
                .count();
            (
                m.msgs.len(),
                unseen,
                deleted,
                m.rec.uidnext.max(1),
                m.rec.uidvalidity,
            )
        });
        let Some((messages, unseen, deleted, uidnext, uidvalidity)) = counts else {
            self.no(
                tag,
                Some("NONEXISTENT"),
                &format!("STATUS failed: no folder {}", folder.client_name()),
            );
            return;
        };
        let mut parts = Vec::new();
        for item in items {
            match item {
                StatusDataItemName::Messages => parts.push(format!("MESSAGES {messages}")),
                StatusDataItemName::Recent => parts.push("RECENT 0".into()),
                StatusDataItemName::UidNext => parts.push(format!("UIDNEXT {uidnext}")),
                StatusDataItemName::UidValidity => parts.push(format!("UIDVALIDITY {uidvalidity}")),
                StatusDataItemName::Unseen => parts.push(format!("UNSEEN {unseen}")),
                StatusDataItemName::Deleted => parts.push(format!("DELETED {deleted}")),
                _ => {}
            }
        }
        let mut line = b"STATUS ".to_vec();
        wire::astring(&mut line, folder.client_name().as_bytes());
        line.extend_from_slice(format!(" ({})", parts.join(" ")).as_bytes());
        self.untagged(&String::from_utf8_lossy(&line));
        self.ok(tag, None, "STATUS completed");
    }

    pub(crate) async fn list(
        &mut self,
        tag: &str,
        reference: &Mailbox<'_>,
        wildcard: &ListMailbox<'_>,
        lsub: bool,
    ) {
        let verb = if lsub { "LSUB" } else { "LIST" };
        let reference = match reference {
            Mailbox::Inbox => "INBOX".to_owned(),
            other => mailbox_name(other),
        };
        let pattern = match wildcard {
            ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
            ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
        };
        if pattern.is_empty() {
            if !lsub {
                self.untagged(&format!("LIST (\\Noselect) \"{DELIM}\" \"\""));
            }
            self.ok(tag, None, &format!("{verb} completed"));
            return;
        }
        let pattern = format!("{reference}{pattern}");
        let Some(map) = self.folder_map().await else {
            self.no(
                tag,
                Some("UNAVAILABLE"),
                "LIST failed: the upstream mail server cannot be reached",
            );
            return;
        };
        let root = map.root().to_owned();
        let delim = self.ctx.upstream_delimiter().await.unwrap_or(DELIM);
        let entries = match self.ctx.pool.list(&format!("{root}{delim}*")).await {
            Ok((e, _)) => e,
            Err(e) => {
                self.upstream_no(tag, verb, &e);
                return;
            }
        };
        let mut folders: Vec<(String, Vec<String>)> =
            vec![("INBOX".into(), vec!["\\HasNoChildren".into()])];
        for entry in entries {
            let Some(client) = map.client_name(&entry.name) else {
                continue;
            };
            let mut attrs: Vec<String> = entry
                .attributes
                .into_iter()
                .filter(|a| {
                    let a = a.to_ascii_lowercase();
                    [
                        "\\haschildren",
                        "\\hasnochildren",
                        "\\noselect",
                        "\\noinferiors",
                        "\\nonexistent",
                    ]
                    .contains(&a.as_str())
                })
                .collect();
            if let Some((_, special)) = DEFAULT_FOLDERS.iter().find(|(n, _)| *n == client) {
                attrs.push((*special).to_owned());
            }
            folders.push((client, attrs));
        }
        for (name, attrs) in folders {
            if !list_match(&pattern, &name) {
                continue;
            }
            let mut line = format!("{verb} ({}) \"{DELIM}\" ", attrs.join(" ")).into_bytes();
            wire::astring(&mut line, name.as_bytes());
            self.out.extend_from_slice(b"* ");
            self.out.extend_from_slice(&line);
            self.out.extend_from_slice(b"\r\n");
        }
        self.ok(tag, None, &format!("{verb} completed"));
    }

    async fn private_folder(
        &mut self,
        tag: &str,
        mailbox: &Mailbox<'_>,
        verb: &str,
    ) -> Option<String> {
        match self.resolve(tag, mailbox).await? {
            Folder::Inbox => {
                self.no(
                    tag,
                    Some("CANNOT"),
                    &format!("{verb} is not allowed on INBOX"),
                );
                None
            }
            Folder::Private { upstream, .. } => Some(upstream),
        }
    }

    pub(crate) async fn create(&mut self, tag: &str, mailbox: &Mailbox<'_>) {
        let Some(upstream) = self.private_folder(tag, mailbox, "CREATE").await else {
            return;
        };
        match self.ctx.pool.folder_command("CREATE", &[&upstream]).await {
            Ok(()) => self.ok(tag, None, "CREATE completed"),
            Err(e) => self.upstream_no(tag, "CREATE", &e),
        }
    }

    pub(crate) async fn delete(&mut self, tag: &str, mailbox: &Mailbox<'_>) {
        let Some(upstream) = self.private_folder(tag, mailbox, "DELETE").await else {
            return;
        };
        if self
            .selected()
            .is_some_and(|s| s.folder.upstream() == upstream)
        {
            self.no(
                tag,
                Some("INUSE"),
                "DELETE failed: unselect the folder first",
            );
            return;
        }
        match self.ctx.pool.folder_command("DELETE", &[&upstream]).await {
            Ok(()) => {
                if let Err(e) = self.ctx.index.forget(&upstream).await {
                    tracing::error!("index forget {upstream}: {e}");
                }
                self.ok(tag, None, "DELETE completed")
            }
            Err(e) => self.upstream_no(tag, "DELETE", &e),
        }
    }

    pub(crate) async fn rename(&mut self, tag: &str, from: &Mailbox<'_>, to: &Mailbox<'_>) {
        let Some(old) = self.private_folder(tag, from, "RENAME").await else {
            return;
        };
        let Some(new) = self.private_folder(tag, to, "RENAME").await else {
            return;
        };
        match self.ctx.pool.folder_command("RENAME", &[&old, &new]).await {
            Ok(()) => {
                if let Err(e) = self.ctx.index.forget(&old).await {
                    tracing::error!("index forget {old}: {e}");
                }
                self.ok(tag, None, "RENAME completed")
            }
            Err(e) => self.upstream_no(tag, "RENAME", &e),
        }
    }
}
