//! COPY, MOVE and their UID forms. Into a real folder they copy (or move)
//! upstream; into an action folder (`Assign to/bob`, `Set status/...`,
//! `Follow up/...`, `Close as/...`) they change the messages' leads and
//! leave the messages where they are.

use std::collections::HashSet;

use imap_codec::imap_types::{
    extensions::uidplus::{UidElement, UidSet},
    flag::Flag,
    mailbox::Mailbox,
    response::Code,
    sequence::SequenceSet,
};

use super::resolve_set;
use crate::{
    imap::{
        access::{group, Ref},
        authz::Write,
        folders::Folder,
        session::{Io, Session},
        views::defs::ActionFolder,
    },
    leads::book::{Acted, LeadAction},
    upstream::{conn::UpstreamError, pool::FlagOp},
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
        let targets = match resolve_set(set, &sel.uids, by_uid) {
            Ok(t) => t,
            Err(e) => {
                self.bad(tag, e);
                return;
            }
        };
        let (source, read_only) = (sel.folder.clone(), sel.read_only);
        let Some(dest) = self.resolve(tag, mailbox).await else {
            return;
        };
        let refs = self.refs(&targets);
        // One check for where the messages go, and for a MOVE where they
        // leave, message by message.
        if let Err(d) = self.may(Write::Into(&dest)) {
            self.deny(tag, verb, d);
            return;
        }
        match dest {
            Folder::Action {
                action: action @ (ActionFolder::ReleaseHeld | ActionFolder::DiscardHeld),
                name,
            } => self.decide_held(tag, verb, &refs, action, &name).await,
            Folder::Action { action, name } => {
                self.act_on_leads(tag, verb, &refs, action, &name).await
            }
            Folder::View { .. } => {}
            // Cards are made by leadgate and live in no real folder: a COPY
            // of a selection leaves them out; of cards alone it is refused.
            _ if !refs.is_empty() && refs.iter().all(|r| r.card.is_some()) => self.no(
                tag,
                Some("CANNOT"),
                &format!(
                    "{verb} failed: a lead card is written by leadgate and cannot be copied; \
                     move it into an Update lead/ folder to change its lead, or reply to it"
                ),
            ),
            dest => {
                let refs: Vec<Ref> = refs.into_iter().filter(|r| r.card.is_none()).collect();
                if is_move {
                    if let Some(d) = self
                        .may(Write::OutOf(&source))
                        .err()
                        .or_else(|| self.first_flag_denial(&refs))
                    {
                        self.deny(tag, verb, d);
                        return;
                    }
                }
                if is_move && read_only {
                    self.no(
                        tag,
                        Some("CANNOT"),
                        &format!("{verb} failed: the folder is open read-only"),
                    );
                    return;
                }
                // Within one private folder a MOVE renumbers, as Dovecot
                // does; in the shared INBOX it would re-file every lead.
                if is_move && dest == source && matches!(dest, Folder::Inbox) {
                    self.no(
                        tag,
                        Some("CANNOT"),
                        &format!("{verb} failed: source and destination are the same folder"),
                    );
                    return;
                }
                self.copy_upstream(tag, verb, &refs, &source, &dest, is_move)
                    .await;
            }
        }
    }

    async fn copy_upstream(
        &mut self,
        tag: &str,
        verb: &str,
        refs: &[Ref],
        source: &Folder,
        dest: &Folder,
        is_move: bool,
    ) {
        let Some(dest_name) = dest.upstream().map(str::to_owned) else {
            return;
        };
        if refs.is_empty() {
            self.ok(tag, None, &format!("{verb} completed (no messages)"));
            return;
        }
        let mut copyuid = None;
        let mut codes = Vec::new();
        let mut sources = Vec::new();
        for ((name, uidvalidity, _), group) in group(refs) {
            let uids: Vec<u32> = group.iter().map(|r| r.up_uid).collect();
            match self
                .ctx
                .pool
                .copy(&name, uidvalidity, &uids, &dest_name, is_move)
                .await
            {
                Ok(code) => {
                    codes.extend(code.clone());
                    copyuid = copyuid.or(code);
                }
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
            }
            sources.push(name);
        }
        // Read state follows the copy: into a shared folder as the copier's
        // own `\Seen`, into a private one as the upstream's `\Seen`.
        if dest.is_shared() != source.is_shared() {
            self.carry_seen(refs, &codes, dest.is_shared(), &dest_name)
                .await;
        }
        // Index both sides now, so the EXPUNGEs of a MOVE go out before OK.
        let resync =
            std::iter::once(dest_name.clone()).chain(sources.into_iter().filter(|_| is_move));
        for name in resync {
            if let Err(e) = self.ctx.pool.sync(&self.ctx.index, &name).await {
                tracing::warn!("resync of {name} after {verb} failed: {e}");
            }
        }

        // COPYUID names the client's UIDs: only meaningful from a real folder.
        let copyuid = match (copyuid, source.upstream().is_some()) {
            (
                Some(Code::CopyUid {
                    uid_validity,
                    source,
                    destination,
                }),
                true,
            ) => Some(format!(
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

    /// Carries this user's read state to the copies in `dest` (from a
    /// private folder into a shared one, or the other way), matched through
    /// the upstream's COPYUID (source and destination UIDs in the same
    /// order, RFC 4315): into a shared folder, what they had read becomes
    /// read for them alone; into a private folder, the copy's upstream
    /// `\Seen` becomes what they had, not what the shared copy had.
    async fn carry_seen(&self, refs: &[Ref], codes: &[Code<'_>], to_shared: bool, dest: &str) {
        // No more UIDs than messages copied, whatever the upstream says.
        let expand = |set: &UidSet| -> Vec<u32> {
            let mut out = Vec::new();
            for e in set.0.as_ref() {
                let (a, b) = match e {
                    UidElement::Single(u) => (u.get(), u.get()),
                    UidElement::Range(a, b) => (a.get().min(b.get()), a.get().max(b.get())),
                };
                out.extend((a..=b).take(refs.len().saturating_sub(out.len())));
            }
            out
        };
        let by_uid: std::collections::HashMap<u32, &Ref> =
            refs.iter().map(|r| (r.up_uid, r)).collect();
        // (destination UID, read by this user) of each copy.
        let mut copies = Vec::new();
        let mut validity = 0;
        for code in codes {
            if let Code::CopyUid {
                uid_validity,
                source,
                destination,
            } = code
            {
                validity = uid_validity.get();
                for (from, to) in expand(source).into_iter().zip(expand(destination)) {
                    if let Some(r) = by_uid.get(&from) {
                        copies.push((to, self.is_seen(r)));
                    }
                }
            }
        }
        if to_shared {
            let Some(gen) = self.ctx.index.with_mailbox(dest, |m| m.rec.gen) else {
                return;
            };
            let keys: Vec<u64> = copies
                .iter()
                .filter(|(_, read)| *read)
                .map(|(to, _)| crate::store::messages::message_key(gen, *to))
                .collect();
            let Some(user) = self.authed().map(|a| a.seen.clone()) else {
                return;
            };
            if keys.is_empty() {
                return;
            }
            match self.ctx.index.seen.set(&user, &keys, true).await {
                Ok(changed) if !changed.is_empty() => {
                    self.ctx.views.publish_read_state(&changed, user.id)
                }
                Ok(_) => {}
                Err(e) => tracing::error!(user = self.user_name(), "saving read state: {e}"),
            }
            return;
        }
        for (op, read) in [(FlagOp::Add, true), (FlagOp::Remove, false)] {
            let uids: Vec<u32> = copies
                .iter()
                // Whatever the index last heard of the upstream's flags:
                // the copy is set both ways.
                .filter(|(_, mine)| *mine == read)
                .map(|(to, _)| *to)
                .collect();
            if uids.is_empty() {
                continue;
            }
            if let Err(e) = self
                .ctx
                .pool
                .store_flags(dest, validity, &uids, op, &[Flag::Seen])
                .await
            {
                tracing::warn!("setting \\Seen on copies in {dest}: {e}");
            }
        }
    }

    /// Folders as commands: the leads of the messages change; nothing moves.
    async fn act_on_leads(
        &mut self,
        tag: &str,
        verb: &str,
        refs: &[Ref],
        action: ActionFolder,
        folder: &str,
    ) {
        let leads: Vec<u64> = {
            let mut seen = HashSet::new();
            refs.iter()
                .filter(|r| r.shared)
                .filter_map(|r| match &r.card {
                    // A card stands for its lead, like the lead's mail.
                    Some(slot) => Some(slot.lead.id),
                    None => self.ctx.book.lead_for_message(r.key()),
                })
                .filter(|id| seen.insert(*id))
                .collect()
        };
        if leads.is_empty() {
            self.no(
                tag,
                Some("CANNOT"),
                &format!("{verb} to {folder} failed: these messages belong to no lead"),
            );
            return;
        }
        let Some(user) = self.authed().map(|a| a.user.clone()) else {
            return;
        };
        let now = self.ctx.book.now();
        let request = match action {
            ActionFolder::AssignTo(u) => LeadAction::AssignTo(u),
            ActionFolder::SetStatus(s) => LeadAction::SetStatus(s),
            ActionFolder::FollowUp(when) => {
                LeadAction::FollowUp(when.at(&self.ctx.book.calendar(), now))
            }
            ActionFolder::CloseAs(o) => LeadAction::Close(o),
            ActionFolder::ReleaseHeld | ActionFolder::DiscardHeld => return,
        };
        let mut refused = Vec::new();
        let mut changed = Vec::new();
        for id in leads {
            match self.ctx.book.act(&user, id, request.clone()).await {
                Ok(Acted::Done(_)) => changed.push(id),
                Ok(Acted::Refused(reason)) => refused.push(reason),
                Err(e) => {
                    tracing::error!("lead {id}: {e}");
                    refused.push(format!("lead {id} could not be changed (store error)"));
                }
            }
        }
        // Folders reflect the change before the client hears OK, so a MOVE
        // out of Leads/Unassigned shows its EXPUNGE at once.
        if !changed.is_empty() {
            if let Err(e) = self.ctx.views.refresh_leads(&changed).await {
                tracing::error!("view refresh after {verb}: {e}");
            }
        }
        match refused.first() {
            None => self.ok(tag, None, &format!("{verb} completed: {folder}")),
            Some(reason) => self.no(tag, Some("NOPERM"), reason),
        }
    }

    /// A move into `Held/Release` or `Held/Discard`: the owner (or a
    /// manager) decides on held replies; the desk checks who may and does
    /// it once.
    async fn decide_held(
        &mut self,
        tag: &str,
        verb: &str,
        refs: &[Ref],
        action: ActionFolder,
        folder: &str,
    ) {
        let marks: Vec<_> = refs
            .iter()
            .filter_map(|r| self.ctx.book.held_at(r.key()))
            .collect();
        if marks.is_empty() || marks.len() < refs.len() {
            self.no(
                tag,
                Some("CANNOT"),
                &format!("{verb} to {folder} failed: only held replies (Review/Held) go there"),
            );
            return;
        }
        let Some(desk) = self.ctx.held_desk.get().cloned() else {
            self.no(
                tag,
                Some("CANNOT"),
                &format!("{verb} to {folder} failed: held replies are off here"),
            );
            return;
        };
        let Some(user) = self.authed().map(|a| a.user.clone()) else {
            return;
        };
        let mut refused = Vec::new();
        let mut leads = Vec::new();
        for mark in marks {
            let done = match action {
                ActionFolder::ReleaseHeld => desk.release(mark.id, &user).await,
                _ => desk.discard(mark.id, &user).await,
            };
            match done {
                Ok(_) => leads.push(mark.lead),
                Err(why) => refused.push(why),
            }
        }
        if !leads.is_empty() {
            if let Err(e) = self.ctx.views.refresh_leads(&leads).await {
                tracing::error!("view refresh after {verb}: {e}");
            }
        }
        match refused.first() {
            None => self.ok(tag, None, &format!("{verb} completed: {folder}")),
            Some(reason) => self.no(tag, Some("NOPERM"), reason),
        }
    }
}
