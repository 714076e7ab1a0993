//! SELECT/EXAMINE, STATUS, LIST/LSUB and the folder commands CREATE,
//! DELETE, RENAME (private folders only). Lead folders and action folders
//! are resolved here before private names.

use std::collections::{BTreeSet, HashSet};

use imap_codec::imap_types::{
    command::SelectParameter,
    mailbox::{ListMailbox, Mailbox},
    status::StatusDataItemName,
};

use crate::{
    imap::{
        folders::{
            is_reserved_root, list_match, normalize, Folder, FolderMap, DEFAULT_FOLDERS, DELIM,
        },
        session::{flags_list, Io, Selected, Session, SYSTEM_FLAGS},
        views::defs::{
            action_folders, parse_action, visible_views, ActionFolder, InboxAccess, ViewKind,
            ACTIONS, ACTION_GROUPS, VIEW_ROOTS,
        },
    },
    imap_wire,
    store::{messages::message_key, users::Role},
    upstream::{conn::UpstreamError, pool::mailbox_name},
};

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

    pub(crate) fn role(&self) -> Role {
        self.authed().map(|a| a.user.role).unwrap_or(Role::Rep)
    }

    /// How this user may use INBOX.
    pub(crate) fn inbox_access(&self) -> InboxAccess {
        match self.role() {
            Role::Rep => self.ctx.views.config().rep_inbox,
            Role::Manager | Role::Admin => InboxAccess::ReadWrite,
        }
    }

    /// The lead folders this user gets.
    pub(crate) fn my_views(&self) -> Vec<ViewKind> {
        let mut views = visible_views(self.role(), &self.ctx.book.reps(), self.ctx.views.config());
        if self.holds_replies() {
            views.extend([ViewKind::Held, ViewKind::ReviewHeld]);
        }
        views
    }

    /// Whether blocked replies are held (`[smtp] blocked_reply = "hold"`).
    pub(crate) fn holds_replies(&self) -> bool {
        self.ctx.config.smtp.blocked_reply == crate::config::smtp::BlockedReply::Hold
    }

    /// Resolves a client folder name, answering NO itself on failure.
    pub(crate) async fn resolve(&mut self, tag: &str, mailbox: &Mailbox<'_>) -> Option<Folder> {
        // Normalised once, here, before any decision (`INBOX/` is INBOX).
        let name = match normalize(&mailbox_name(mailbox)) {
            Ok(n) => n,
            Err(e) => {
                self.no(tag, Some("CANNOT"), &e.to_string());
                return None;
            }
        };
        if name == "INBOX" {
            if self.inbox_access() == InboxAccess::Hidden {
                self.no(
                    tag,
                    Some("NONEXISTENT"),
                    "INBOX is not available to reps here; use the Leads folders",
                );
                return None;
            }
            return Some(Folder::Inbox);
        }
        if let Some(kind) = self
            .my_views()
            .into_iter()
            .find(|v| v.folder().eq_ignore_ascii_case(&name))
        {
            return match self.ctx.views.ensure(&kind, &self.viewer()).await {
                Ok(id) => Some(Folder::View {
                    id,
                    name: kind.folder(),
                }),
                Err(e) => {
                    tracing::error!("view {}: {e}", kind.folder());
                    self.no(
                        tag,
                        Some("SERVERBUG"),
                        "The lead folder could not be prepared",
                    );
                    None
                }
            };
        }
        if let Some(action) = parse_action(&name, &self.ctx.book.users()) {
            return Some(Folder::Action { name, action });
        }
        if is_reserved_root(&name) {
            self.no(tag, Some("NONEXISTENT"), &format!("No folder {name}"));
            return None;
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

    /// Makes sure the index has a real folder, syncing private folders
    /// (the IDLE watcher keeps INBOX current). Answers NO itself on failure.
    pub(crate) async fn freshen(&mut self, tag: &str, folder: &Folder, what: &str) -> bool {
        let Some(name) = folder.upstream().map(str::to_owned) else {
            return true;
        };
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

    pub(crate) async fn select(
        &mut self,
        tag: &str,
        mailbox: &Mailbox<'_>,
        read_only: bool,
        params: &[SelectParameter],
    ) {
        if let Some(a) = self.authed_mut() {
            a.selected = None;
        }
        let what = if read_only { "EXAMINE" } else { "SELECT" };
        let mut qresync = None;
        for p in params {
            match p {
                SelectParameter::CondStore => self.enable_condstore().await,
                SelectParameter::QResync {
                    uid_validity,
                    mod_sequence_value,
                    known_uids,
                    ..
                } => {
                    if !self.qresync() {
                        self.bad(tag, "QRESYNC is not enabled; send ENABLE QRESYNC first");
                        return;
                    }
                    qresync = Some((
                        uid_validity.get(),
                        mod_sequence_value.get(),
                        known_uids.clone(),
                    ));
                }
            }
        }
        let Some(folder) = self.resolve(tag, mailbox).await else {
            return;
        };
        if !self.freshen(tag, &folder, what).await {
            return;
        }
        let read_only = read_only || matches!(folder, Folder::Action { .. });
        // Read state is the user's own: a shared folder that is read-only
        // for them still takes their \Seen (as Dovecot's ACL right `s`).
        let seen_only = !read_only
            && matches!(folder, Folder::Inbox)
            && self.inbox_access() == InboxAccess::ReadOnly;
        let last_seq;
        let (scope, uidvalidity, uidnext, uids) = match &folder {
            Folder::View { id, .. } => {
                last_seq = self.ctx.index.current_seq();
                let Some(v) = self.ctx.views.snapshot(*id) else {
                    self.no(
                        tag,
                        Some("NONEXISTENT"),
                        &format!("{what} failed: no folder {}", folder.client_name()),
                    );
                    return;
                };
                (v.id, v.uidvalidity, v.next_uid, v.uids)
            }
            // Always empty: messages moved here change their lead and stay
            // where they were.
            Folder::Action { .. } => {
                last_seq = self.ctx.index.current_seq();
                (u32::MAX, 1, 1, Vec::new())
            }
            Folder::Inbox | Folder::Private { .. } => {
                let name = folder.upstream().unwrap_or_default().to_owned();
                // A sync in progress (say a re-index) finishes before we look.
                let _settled = self.ctx.index.sync_guard(&name).await;
                last_seq = self.ctx.index.current_seq();
                let Some(found) = self.ctx.index.with_mailbox(&name, |m| {
                    (
                        m.rec.gen,
                        m.rec.uidvalidity,
                        m.rec.uidnext.max(1),
                        m.msgs.keys().copied().collect::<Vec<_>>(),
                    )
                }) else {
                    self.no(
                        tag,
                        Some("NONEXISTENT"),
                        &format!("{what} failed: no folder {}", folder.client_name()),
                    );
                    return;
                };
                found
            }
        };
        let shared = folder.is_shared();
        // INBOX has the IDLE watcher; a private folder is checked for
        // changes made elsewhere every poll interval while it is selected.
        let hold = match &folder {
            Folder::Private { upstream, .. } => Some(self.ctx.index.hold_selected(upstream)),
            _ => None,
        };
        let uids = self.ctx.uid_lists.intern(scope, last_seq, uids);
        if let Some(a) = self.authed_mut() {
            a.selected = Some(Selected {
                folder,
                scope,
                uidvalidity,
                read_only,
                seen_only,
                uids: uids.clone(),
                last_seq,
                reported: Default::default(),
                _hold: hold,
                deleted_here: Default::default(),
                card_unseen: Default::default(),
                keywords: Default::default(),
                recent: Vec::new(),
                uidnext,
            });
        }
        let refs = self.all_refs();
        let mut keywords: BTreeSet<Box<str>> = BTreeSet::new();
        let mut first_unseen = None;
        for r in &refs {
            for f in &r.msg.flags {
                if !f.starts_with('\\') {
                    keywords.insert(f.as_ref().into());
                }
            }
            if first_unseen.is_none() && !self.is_seen(r) {
                first_unseen = Some(r.seq);
            }
        }
        let flags = flags_list(&keywords, shared);
        // The keywords without the system flags, for PERMANENTFLAGS.
        let kw = flags[SYSTEM_FLAGS.len()..].to_owned();
        if let Some(sel) = self.selected_mut() {
            sel.keywords = keywords;
        }
        self.untagged(&format!("FLAGS ({flags})"));
        if read_only {
            self.untagged("OK [PERMANENTFLAGS ()] Read-only folder");
        } else if seen_only {
            self.untagged("OK [PERMANENTFLAGS (\\Seen)] Only your own read state can change");
        } else {
            // In a lead folder \Deleted lasts only for the session.
            let system = if matches!(
                self.selected().map(|s| &s.folder),
                Some(Folder::View { .. })
            ) {
                SYSTEM_FLAGS.replace(" \\Deleted", "")
            } else {
                SYSTEM_FLAGS.to_owned()
            };
            self.untagged(&format!(
                "OK [PERMANENTFLAGS ({system}{kw} \\*)] Flags permitted"
            ));
        }
        self.untagged(&format!("{} EXISTS", uids.len()));
        // Every message is new to this session: it takes what no session
        // has taken yet (EXAMINE only looks).
        let index = self.ctx.index.clone();
        if let Some(line) = self.selected_mut().map(|s| s.take_recent(&index, 0)) {
            self.out.extend_from_slice(line.as_bytes());
        }
        if let Some(n) = first_unseen {
            self.untagged(&format!("OK [UNSEEN {n}] First unseen"));
        }
        self.untagged(&format!("OK [UIDVALIDITY {uidvalidity}] UIDs valid"));
        self.untagged(&format!("OK [UIDNEXT {uidnext}] Predicted next UID"));
        if self.condstore() {
            let refs = self.all_refs();
            let Some(sweep) = self.sweep_or_refuse(tag, what, &refs, true).await else {
                if let Some(a) = self.authed_mut() {
                    a.selected = None;
                }
                return;
            };
            self.untagged(&format!(
                "OK [HIGHESTMODSEQ {}] Highest modseq",
                sweep.highest
            ));
            if let Some((validity, modseq, known)) = qresync {
                if validity == uidvalidity {
                    self.qresync_select(&refs, &sweep, modseq, known.as_ref());
                }
            }
        }
        let code = if read_only { "READ-ONLY" } else { "READ-WRITE" };
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
        let counts = match &folder {
            Folder::View { id, .. } => self.ctx.views.snapshot(*id).map(|v| {
                let pairs: Vec<(u32, u32)> = v.uids.iter().map(|u| (0, *u)).collect();
                let (unseen, deleted) = self.count_flags(*id, &pairs);
                (v.uids.len(), 0, unseen, deleted, v.next_uid, v.uidvalidity)
            }),
            Folder::Action { .. } => Some((0, 0, 0, 0, 1, 1)),
            Folder::Inbox | Folder::Private { .. } => {
                let name = folder.upstream().unwrap_or_default().to_owned();
                if self.ctx.index.mailbox_record(&name).is_none()
                    && !self.freshen(tag, &folder, "STATUS").await
                {
                    return;
                }
                let Some(user) = self.authed().map(|a| a.seen.clone()) else {
                    return;
                };
                let reader = self.ctx.index.seen.reader(&user);
                let shared = folder.is_shared();
                self.ctx.index.with_mailbox(&name, |m| {
                    let gen = m.rec.gen;
                    let unseen = m
                        .msgs
                        .values()
                        .filter(|msg| match shared {
                            true => !reader.is_seen(message_key(gen, msg.uid)),
                            false => !msg.has_flag("\\Seen"),
                        })
                        .count();
                    let deleted = m
                        .msgs
                        .values()
                        .filter(|msg| msg.has_flag("\\Deleted"))
                        .count();
                    let recent = m.msgs.range(self.ctx.index.recent_floor(gen)..).count();
                    (
                        m.msgs.len(),
                        recent,
                        unseen,
                        deleted,
                        m.rec.uidnext.max(1),
                        m.rec.uidvalidity,
                    )
                })
            }
        };
        let Some((messages, recent, unseen, deleted, uidnext, uidvalidity)) = counts else {
            self.no(
                tag,
                Some("NONEXISTENT"),
                &format!("STATUS failed: no folder {}", folder.client_name()),
            );
            return;
        };
        let mut highest = None;
        if items.contains(&StatusDataItemName::HighestModSeq) {
            self.enable_condstore().await;
            let found = match &folder {
                Folder::View { id, .. } => self
                    .ctx
                    .views
                    .snapshot(*id)
                    .map(|v| (v.id, v.uidvalidity, v.uids)),
                Folder::Action { .. } => Some((u32::MAX, 1, Vec::new())),
                Folder::Inbox | Folder::Private { .. } => {
                    let name = folder.upstream().unwrap_or_default();
                    self.ctx.index.with_mailbox(name, |m| {
                        (
                            m.rec.gen,
                            m.rec.uidvalidity,
                            m.msgs.keys().copied().collect::<Vec<_>>(),
                        )
                    })
                }
            };
            if let Some((scope, validity, uids)) = found {
                highest = self.highest_modseq(&folder, scope, validity, &uids).await;
            }
            if highest.is_none() {
                self.no(tag, Some("SERVERBUG"), "STATUS failed: modseqs unavailable");
                return;
            }
        }
        let mut parts = Vec::new();
        for item in items {
            match item {
                StatusDataItemName::Messages => parts.push(format!("MESSAGES {messages}")),
                StatusDataItemName::Recent => parts.push(format!("RECENT {recent}")),
                StatusDataItemName::UidNext => parts.push(format!("UIDNEXT {uidnext}")),
                StatusDataItemName::UidValidity => parts.push(format!("UIDVALIDITY {uidvalidity}")),
                StatusDataItemName::Unseen => parts.push(format!("UNSEEN {unseen}")),
                StatusDataItemName::Deleted => parts.push(format!("DELETED {deleted}")),
                StatusDataItemName::HighestModSeq => {
                    parts.push(format!("HIGHESTMODSEQ {}", highest.unwrap_or(0)))
                }
                _ => {}
            }
        }
        let mut line = b"STATUS ".to_vec();
        imap_wire::astring(&mut line, folder.client_name().as_bytes());
        line.extend_from_slice(format!(" ({})", parts.join(" ")).as_bytes());
        self.untagged(&String::from_utf8_lossy(&line));
        self.ok(tag, None, "STATUS completed");
    }

    /// (unseen, deleted) among a view's messages.
    fn count_flags(&self, view: u32, pairs: &[(u32, u32)]) -> (usize, usize) {
        let uids: Vec<u32> = pairs.iter().map(|(_, u)| *u).collect();
        let mut unseen = 0;
        let mut deleted = 0;
        let keys = self.ctx.views.resolve(view, &uids);
        let Some(user) = self.authed().map(|a| a.seen.clone()) else {
            return (0, 0);
        };
        let reader = self.ctx.index.seen.reader(&user);
        self.ctx.index.with_gens(|gens| {
            for (_, key) in keys {
                let (gen, uid) = ((key >> 32) as u32, (key & 0xffff_ffff) as u32);
                if let Some(msg) = gens.get(gen).and_then(|m| m.msgs.get(&uid)) {
                    unseen += usize::from(!reader.is_seen(key));
                    deleted += usize::from(msg.has_flag("\\Deleted"));
                }
            }
        });
        (unseen, deleted)
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
        let mut folders: Vec<(String, Vec<String>)> = Vec::new();
        // Folders the user made: not subscribed until they say so.
        let mut own: HashSet<String> = HashSet::new();
        if self.inbox_access() != InboxAccess::Hidden {
            folders.push(("INBOX".into(), vec!["\\HasNoChildren".into()]));
        }
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
            } else {
                own.insert(client.clone());
            }
            folders.push((client, attrs));
        }
        // Lead folders and action folders under their parents.
        let views: Vec<String> = self.my_views().iter().map(|v| v.folder()).collect();
        let holds = self.holds_replies();
        let actions: Vec<String> = action_folders(&self.ctx.book.users())
            .into_iter()
            .filter(|(_, a)| {
                holds || !matches!(a, ActionFolder::ReleaseHeld | ActionFolder::DiscardHeld)
            })
            .map(|(n, _)| n)
            .collect();
        let parent_attrs = || vec!["\\Noselect".to_owned(), "\\HasChildren".to_owned()];
        for parent in VIEW_ROOTS {
            let children: Vec<&String> = views
                .iter()
                .filter(|n| n.split(DELIM).next() == Some(parent))
                .collect();
            if children.is_empty() {
                continue;
            }
            folders.push((parent.to_owned(), parent_attrs()));
            for child in children {
                folders.push((child.clone(), vec!["\\HasNoChildren".into()]));
            }
        }
        folders.push((ACTIONS.to_owned(), parent_attrs()));
        for group in ACTION_GROUPS {
            let prefix = format!("{ACTIONS}{DELIM}{group}{DELIM}");
            let children: Vec<&String> =
                actions.iter().filter(|n| n.starts_with(&prefix)).collect();
            if children.is_empty() {
                continue;
            }
            folders.push((format!("{ACTIONS}{DELIM}{group}"), parent_attrs()));
            for child in children {
                folders.push((child.clone(), vec!["\\HasNoChildren".into()]));
            }
        }
        if lsub {
            folders = self.subscribed(&pattern, folders, &own);
        }
        for (name, attrs) in folders {
            if !list_match(&pattern, &name) {
                continue;
            }
            let mut line = format!("{verb} ({}) \"{DELIM}\" ", attrs.join(" ")).into_bytes();
            imap_wire::astring(&mut line, name.as_bytes());
            self.out.extend_from_slice(b"* ");
            self.out.extend_from_slice(&line);
            self.out.extend_from_slice(b"\r\n");
        }
        self.ok(tag, None, &format!("{verb} completed"));
    }

    /// What LSUB lists: the subscribed folders (those the user never chose
    /// about are subscribed unless they made them, `own`), subscribed names
    /// that do not exist (yet), and, for a `%` that stops above a
    /// subscribed folder, its unsubscribed parent as `\Noselect` (RFC 3501
    /// 6.3.9).
    fn subscribed(
        &self,
        pattern: &str,
        folders: Vec<(String, Vec<String>)>,
        own: &HashSet<String>,
    ) -> Vec<(String, Vec<String>)> {
        let user = self
            .authed()
            .map(|a| a.user.name.clone())
            .unwrap_or_default();
        let choices = self
            .ctx
            .index
            .store()
            .subscriptions(&user)
            .unwrap_or_else(|e| {
                tracing::error!("subscriptions of {user}: {e}");
                Default::default()
            });
        let mut out: Vec<(String, Vec<String>)> = folders
            .into_iter()
            .filter(|(name, _)| choices.get(name).copied().unwrap_or(!own.contains(name)))
            .collect();
        let mut listed: HashSet<String> = out.iter().map(|(n, _)| n.clone()).collect();
        let mut gone: Vec<&String> = choices
            .iter()
            .filter(|(name, on)| **on && !listed.contains(*name))
            .map(|(name, _)| name)
            .collect();
        gone.sort();
        for name in gone {
            listed.insert(name.clone());
            out.push((name.clone(), Vec::new()));
        }
        let mut parents = Vec::new();
        for (name, _) in &out {
            if list_match(pattern, name) {
                continue;
            }
            let mut end = 0;
            while let Some(i) = name[end..].find(DELIM) {
                end += i;
                let parent = &name[..end];
                if list_match(pattern, parent) && !listed.contains(parent) {
                    listed.insert(parent.to_owned());
                    parents.push((parent.to_owned(), vec!["\\Noselect".to_owned()]));
                }
                end += DELIM.len_utf8();
            }
        }
        out.extend(parents);
        out
    }

    async fn private_folder(
        &mut self,
        tag: &str,
        mailbox: &Mailbox<'_>,
        verb: &str,
    ) -> Option<(String, String)> {
        match self.resolve(tag, mailbox).await? {
            f @ Folder::Private { .. } => {
                let name = f.client_name().to_owned();
                let Folder::Private { upstream, .. } = f else {
                    return None;
                };
                Some((upstream, name))
            }
            other => {
                self.no(
                    tag,
                    Some("CANNOT"),
                    &format!("{verb} is not allowed on {}", other.client_name()),
                );
                None
            }
        }
    }

    /// SUBSCRIBE and UNSUBSCRIBE, kept per user in the store: every folder
    /// is subscribed until its user unsubscribes it (Outlook lists only
    /// subscribed folders), and LSUB leaves out what they unsubscribed.
    pub(crate) async fn subscribe(&mut self, tag: &str, mailbox: &Mailbox<'_>, on: bool) {
        let verb = if on { "SUBSCRIBE" } else { "UNSUBSCRIBE" };
        let Ok(name) = normalize(&mailbox_name(mailbox)) else {
            self.bad(tag, &format!("{verb}: not a valid folder name"));
            return;
        };
        if name.is_empty() || name.len() > crate::store::subscriptions::MAX_NAME {
            self.bad(tag, &format!("{verb}: folder name empty or too long"));
            return;
        }
        let Some(user) = self.authed().map(|a| a.user.name.clone()) else {
            return;
        };
        match self
            .ctx
            .index
            .store()
            .set_subscribed(&user, &name, on)
            .await
        {
            Ok(true) => self.ok(tag, None, &format!("{verb} completed")),
            Ok(false) => self.no(
                tag,
                Some("LIMIT"),
                &format!(
                    "{verb} failed: at most {} subscription choices are kept per user",
                    crate::store::subscriptions::MAX_PER_USER
                ),
            ),
            Err(e) => {
                tracing::error!("{verb} {name}: {e}");
                self.no(tag, Some("SERVERBUG"), &format!("{verb} failed; try again"));
            }
        }
    }

    pub(crate) async fn create(&mut self, tag: &str, mailbox: &Mailbox<'_>) {
        let name = normalize(&mailbox_name(mailbox)).unwrap_or_default();
        if is_reserved_root(&name) || name == "INBOX" {
            self.no(
                tag,
                Some("ALREADYEXISTS"),
                &format!("{name} is a leadgate folder"),
            );
            return;
        }
        let Some((upstream, _)) = self.private_folder(tag, mailbox, "CREATE").await else {
            return;
        };
        match self.ctx.pool.folder_command("CREATE", &[&upstream]).await {
            Ok(()) => self.ok(tag, None, "CREATE completed"),
            Err(e) => self.upstream_no(tag, "CREATE", &e),
        }
    }

    pub(crate) async fn delete(&mut self, tag: &str, mailbox: &Mailbox<'_>) {
        let Some((upstream, name)) = self.private_folder(tag, mailbox, "DELETE").await else {
            return;
        };
        if self
            .selected()
            .is_some_and(|s| s.folder.upstream() == Some(upstream.as_str()))
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
                self.forget_modseqs(&name).await;
                self.ok(tag, None, "DELETE completed")
            }
            Err(e) => self.upstream_no(tag, "DELETE", &e),
        }
    }

    pub(crate) async fn rename(&mut self, tag: &str, from: &Mailbox<'_>, to: &Mailbox<'_>) {
        let Some((old, old_name)) = self.private_folder(tag, from, "RENAME").await else {
            return;
        };
        let Some((new, _)) = self.private_folder(tag, to, "RENAME").await else {
            return;
        };
        match self.ctx.pool.folder_command("RENAME", &[&old, &new]).await {
            Ok(()) => {
                if let Err(e) = self.ctx.index.forget(&old).await {
                    tracing::error!("index forget {old}: {e}");
                }
                self.forget_modseqs(&old_name).await;
                self.ok(tag, None, "RENAME completed")
            }
            Err(e) => self.upstream_no(tag, "RENAME", &e),
        }
    }
}
