//! From what a client names (sequence numbers, UIDs of the selected folder)
//! to the upstream messages behind them. In a real folder a UID is the
//! upstream's; in a virtual folder it maps to a message of INBOX or the
//! shared Sent. Commands work on `Ref`s and group them by upstream mailbox
//! for upstream operations.

use std::{collections::BTreeMap, sync::Arc};

use super::{
    authz::{self, Denied, Write, Writer},
    folders::Folder,
    session::{Io, Selected, Session},
    stamp::{self, STAMP_LEN},
    views::{card::CardSlot, defs},
};
use crate::{index::Msg, leads::Lead};

/// One selected message and where it lives upstream.
#[derive(Debug, Clone)]
pub(crate) struct Ref {
    pub seq: u32,
    /// The UID the client sees.
    pub uid: u32,
    pub mailbox: String,
    pub gen: u32,
    pub uidvalidity: u32,
    /// The UID in the upstream mailbox.
    pub up_uid: u32,
    pub msg: Msg,
    /// A shared-mailbox message: stamped, with lead keywords.
    pub shared: bool,
    /// A lead card (`views::card`): made by leadgate, nothing upstream.
    /// `gen`/`up_uid` then hold the card's key.
    pub card: Option<Arc<CardSlot>>,
}

impl Ref {
    pub fn key(&self) -> u64 {
        crate::store::messages::message_key(self.gen, self.up_uid)
    }
}

/// Refs grouped by upstream mailbox: (mailbox, uidvalidity, gen) -> refs.
pub(crate) type Groups<'a> = BTreeMap<(String, u32, u32), Vec<&'a Ref>>;

/// Cards are left out: nothing upstream holds them.
pub(crate) fn group(refs: &[Ref]) -> Groups<'_> {
    let mut out: Groups<'_> = BTreeMap::new();
    for r in refs.iter().filter(|r| r.card.is_none()) {
        out.entry((r.mailbox.clone(), r.uidvalidity, r.gen))
            .or_default()
            .push(r);
    }
    out
}

impl<S: Io> Session<S> {
    /// The logged-in user's name.
    pub(crate) fn viewer(&self) -> String {
        self.authed()
            .map(|a| a.user.name.clone())
            .unwrap_or_default()
    }

    /// Resolves (sequence, UID) pairs of the selected folder. Messages gone
    /// meanwhile are left out.
    pub(crate) fn refs(&self, pairs: &[(u32, u32)]) -> Vec<Ref> {
        let Some(sel) = self.selected() else {
            return Vec::new();
        };
        self.refs_in(&sel.folder, sel.scope, sel.uidvalidity, pairs)
    }

    /// `refs` in any folder (`scope` and `uidvalidity` as `Selected` holds
    /// them), selected or not.
    pub(crate) fn refs_in(
        &self,
        folder: &Folder,
        scope: u32,
        uidvalidity: u32,
        pairs: &[(u32, u32)],
    ) -> Vec<Ref> {
        let index = &self.ctx.index;
        match folder {
            Folder::View { id, .. } => {
                let uids: Vec<u32> = pairs.iter().map(|(_, u)| *u).collect();
                let keys: std::collections::HashMap<u32, u64> =
                    self.ctx.views.resolve(*id, &uids).into_iter().collect();
                let mut out = Vec::with_capacity(pairs.len());
                index.with_gens(|gens| {
                    for &(seq, uid) in pairs {
                        let Some(&key) = keys.get(&uid) else { continue };
                        let (gen, up_uid) = ((key >> 32) as u32, (key & 0xffff_ffff) as u32);
                        if let Some(slot) = self.ctx.views.card(key) {
                            out.push(Ref {
                                seq,
                                uid,
                                mailbox: String::new(),
                                gen,
                                uidvalidity: 0,
                                up_uid,
                                msg: Msg {
                                    uid,
                                    flags: Vec::new(),
                                    modseq: 0,
                                    meta: slot.meta.clone(),
                                },
                                shared: true,
                                card: Some(slot),
                            });
                            continue;
                        }
                        let Some(m) = gens.get(gen) else { continue };
                        if let Some(msg) = m.msgs.get(&up_uid) {
                            out.push(Ref {
                                seq,
                                uid,
                                mailbox: m.rec.name.clone(),
                                gen,
                                uidvalidity: m.rec.uidvalidity,
                                up_uid,
                                msg: msg.clone(),
                                shared: true,
                                card: None,
                            });
                        }
                    }
                });
                out
            }
            folder => {
                let Some(name) = folder.upstream() else {
                    return Vec::new();
                };
                let shared = folder.is_shared();
                index
                    .with_mailbox(name, |m| {
                        pairs
                            .iter()
                            .filter_map(|&(seq, uid)| {
                                m.msgs.get(&uid).map(|msg| Ref {
                                    seq,
                                    uid,
                                    mailbox: name.to_owned(),
                                    gen: scope,
                                    uidvalidity,
                                    up_uid: uid,
                                    msg: msg.clone(),
                                    shared,
                                    card: None,
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            }
        }
    }

    /// Refs for every message of the selected folder.
    pub(crate) fn all_refs(&self) -> Vec<Ref> {
        let Some(sel) = self.selected() else {
            return Vec::new();
        };
        let pairs: Vec<(u32, u32)> = sel
            .uids
            .iter()
            .enumerate()
            .map(|(i, u)| (i as u32 + 1, *u))
            .collect();
        self.refs(&pairs)
    }

    /// The logged-in user as a writer, for [`authz::check`].
    pub(crate) fn writer(&self) -> Writer<'_> {
        Writer {
            user: self.authed().map_or("", |a| a.user.name.as_str()),
            role: self.role(),
            inbox: self.inbox_access(),
        }
    }

    /// Asks the one authorisation check.
    pub(crate) fn may(&self, write: Write<'_>) -> Result<(), Denied> {
        authz::check(self.writer(), write)
    }

    /// Whether this user may change the shared flags of `r` (a private
    /// message is theirs).
    pub(crate) fn may_flag(&self, r: &Ref) -> Result<(), Denied> {
        // A card's flags are the session's own.
        if !r.shared || r.card.is_some() {
            return Ok(());
        }
        let lead = self.lead_of(r);
        self.may(Write::Flags(lead.as_deref()))
    }

    /// The first message of `refs` whose shared flags this user may not
    /// change, with why.
    pub(crate) fn first_flag_denial(&self, refs: &[Ref]) -> Option<Denied> {
        refs.iter().find_map(|r| self.may_flag(r).err())
    }

    /// Answers a refusal.
    pub(crate) fn deny(&mut self, tag: &str, verb: &str, d: Denied) {
        self.no(tag, Some(d.code), &format!("{verb} failed: {}", d.text));
    }

    pub(crate) fn lead_of(&self, r: &Ref) -> Option<Arc<Lead>> {
        if !r.shared {
            return None;
        }
        if let Some(slot) = &r.card {
            return self.ctx.book.lead(slot.lead.id);
        }
        self.ctx
            .book
            .lead_for_message(r.key())
            .and_then(|id| self.ctx.book.lead(id))
    }

    /// Whether this user has read `r`: on shared mail their own `\Seen`
    /// (`index::seen`), on their private mail the upstream's.
    pub(crate) fn is_seen(&self, r: &Ref) -> bool {
        self.is_seen_in(r, self.selected())
    }

    /// `is_seen` with the session state of `sel` (`None`: none, as any of
    /// the user's sessions would see it).
    fn is_seen_in(&self, r: &Ref, sel: Option<&Selected>) -> bool {
        if r.card.is_some() {
            return !sel.is_some_and(|s| s.card_unseen.contains(&r.uid));
        }
        match (r.shared, self.authed()) {
            (true, Some(a)) => self.ctx.index.seen.is_seen(&a.seen, r.key()),
            (true, None) => false,
            (false, _) => r.msg.has_flag("\\Seen"),
        }
    }

    /// Marks shared messages read or unread for this user only, and tells
    /// their other sessions. The upstream's `\Seen` is never touched.
    pub(crate) async fn set_seen(
        &self,
        refs: &[&Ref],
        seen: bool,
    ) -> Result<(), crate::store::StoreError> {
        let Some(user) = self.authed().map(|a| a.seen.clone()) else {
            return Ok(());
        };
        let keys: Vec<u64> = refs
            .iter()
            .filter(|r| r.shared && r.card.is_none())
            .map(|r| r.key())
            .collect();
        let changed = self.ctx.index.seen.set(&user, &keys, seen).await?;
        if !changed.is_empty() {
            self.ctx.views.publish_read_state(&changed, user.id);
        }
        Ok(())
    }

    /// Marks lead cards read or unread for this session (their flags are
    /// the session's own).
    pub(crate) fn set_card_seen(&mut self, uids: &[u32], seen: bool) {
        if let Some(sel) = self.selected_mut() {
            for uid in uids {
                if seen {
                    sel.card_unseen.remove(uid);
                } else {
                    sel.card_unseen.insert(*uid);
                }
            }
        }
    }

    /// Flags as this user sees them: the upstream's (with the user's own
    /// `\Seen` on shared mail) plus live lead keywords.
    pub(crate) fn flags_of(&self, r: &Ref) -> Vec<String> {
        self.flags_in(r, self.selected())
    }

    /// `flags_of` with the session-only flags of `sel` (`\Recent`, a lead
    /// folder's `\Deleted`, a card marked unread); `None` leaves them out:
    /// the flags every session of the user sees, which modseqs follow.
    pub(crate) fn flags_in(&self, r: &Ref, sel: Option<&Selected>) -> Vec<String> {
        let mut flags: Vec<String> = r
            .msg
            .flags
            .iter()
            .filter(|f| !r.shared || !f.eq_ignore_ascii_case("\\Seen"))
            .map(|f| f.to_string())
            .collect();
        if r.shared && self.is_seen_in(r, sel) {
            flags.insert(0, "\\Seen".to_owned());
        }
        if sel.is_some_and(|s| s.recent.binary_search(&r.uid).is_ok()) {
            flags.insert(0, "\\Recent".to_owned());
        }
        let mark = (r.shared && r.card.is_none())
            .then(|| self.ctx.book.mark_of(r.key()))
            .flatten();
        if let Some(mark) = mark {
            flags.push(mark.keyword().to_owned());
        }
        if sel.is_some_and(|s| s.deleted_here.contains(&r.uid)) {
            flags.push("\\Deleted".to_owned());
        }
        if let Some(lead) = self.lead_of(r) {
            let viewer = self.authed().map_or("", |a| a.user.name.as_str());
            flags.extend(
                defs::keywords(&lead, viewer, self.ctx.book.now())
                    .into_iter()
                    .map(str::to_owned),
            );
        }
        flags
    }

    pub(crate) fn flag_text(&self, r: &Ref) -> String {
        self.flags_of(r).join(" ")
    }

    /// The size the client is told: the stamp counts for shared messages.
    pub(crate) fn served_size(&self, r: &Ref) -> usize {
        r.msg.meta.size as usize + if r.shared { STAMP_LEN } else { 0 }
    }

    /// The stamp block for a shared message (empty otherwise).
    pub(crate) fn stamp_for(&self, r: &Ref) -> Vec<u8> {
        if !r.shared {
            return Vec::new();
        }
        let lead = self.lead_of(r);
        stamp::stamp(lead.as_deref(), self.ctx.book.calendar().time_zone())
    }
}
