//! FETCH and UID FETCH. Flags, sizes, dates, envelopes and body structures
//! come from the index; header sections from the stored header block;
//! whole bodies and TEXT through the pool (batched per chunk of messages);
//! sub-part sections (BODY[1.2], BODY[2.MIME], ...) are passed through from
//! the upstream as they are.

use std::{collections::HashMap, io::Write};

use imap_codec::imap_types::{
    command::FetchModifier,
    fetch::{MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Part, Section},
    flag::Flag,
    response::{Data, Response},
    sequence::{SeqOrUid, Sequence, SequenceSet},
};

use crate::{
    imap::{
        access::{group, Ref},
        session::{Io, Session},
    },
    imap_wire, rfc5322 as message,
    upstream::{conn::encode_fetch_item, pool::FlagOp, sync::uid_set},
};

/// Messages per upstream round trip when bodies are needed.
const BODY_CHUNK: usize = 50;
/// Upper bound on body bytes fetched per round trip.
const BODY_CHUNK_BYTES: u64 = 16 * 1024 * 1024;

/// Expands a sequence set against the selected folder's UIDs, giving
/// (sequence number, UID) pairs in ascending order. Sequence numbers out of
/// range are an error; UIDs that do not exist are skipped.
pub(crate) fn resolve_set(
    set: &SequenceSet,
    uids: &[u32],
    by_uid: bool,
) -> Result<Vec<(u32, u32)>, &'static str> {
    let largest = if by_uid {
        uids.last().copied().unwrap_or(0)
    } else {
        uids.len() as u32
    };
    let value = |s: &SeqOrUid| match s {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => largest,
    };
    // Each element as a range of positions [start, end); then sorted and
    // merged, so the cost is O(k log k + n) whatever the ranges overlap
    // (`1:*,1:*,...` sixteen thousand times costs one pass).
    let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(set.0.as_ref().len());
    for seq in set.0.as_ref() {
        let (a, b) = match seq {
            Sequence::Single(s) => (value(s), value(s)),
            Sequence::Range(x, y) => {
                let (x, y) = (value(x), value(y));
                (x.min(y), x.max(y))
            }
        };
        if by_uid {
            let start = uids.partition_point(|&u| u < a);
            let end = uids.partition_point(|&u| u <= b);
            if start < end {
                ranges.push((start, end));
            }
        } else {
            if a == 0 || b as usize > uids.len() {
                return Err("Invalid message sequence number");
            }
            ranges.push((a as usize - 1, b as usize));
        }
    }
    ranges.sort_unstable();
    let mut out = Vec::new();
    let mut next = 0;
    for (start, end) in ranges {
        let from = start.max(next);
        if from < end {
            out.extend(
                uids[from..end]
                    .iter()
                    .enumerate()
                    .map(|(k, &u)| ((from + k) as u32 + 1, u)),
            );
        }
        next = next.max(end);
    }
    Ok(out)
}

/// How the bytes of a BODY[...] item are obtained.
enum Source {
    Full,
    Header,
    Fields(Vec<Vec<u8>>, bool),
    Text,
    /// Asked from the upstream as is.
    Upstream,
}

fn classify(section: &Option<Section<'_>>) -> Source {
    match section {
        None => Source::Full,
        Some(Section::Header(None)) => Source::Header,
        Some(Section::HeaderFields(None, names)) => Source::Fields(
            names.as_ref().iter().map(|n| n.as_ref().to_vec()).collect(),
            false,
        ),
        Some(Section::HeaderFieldsNot(None, names)) => Source::Fields(
            names.as_ref().iter().map(|n| n.as_ref().to_vec()).collect(),
            true,
        ),
        Some(Section::Text(None)) => Source::Text,
        _ => Source::Upstream,
    }
}

fn part_text(p: &Part) -> String {
    p.0.as_ref()
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// The section spec as it appears between the brackets.
pub(crate) fn section_spec(section: &Option<Section<'_>>) -> Vec<u8> {
    let with_part = |p: &Option<Part>, s: &str| match p {
        Some(p) => format!("{}.{s}", part_text(p)),
        None => s.to_owned(),
    };
    let fields = |names: &[imap_codec::imap_types::core::AString<'_>]| {
        let mut out = Vec::new();
        for (i, n) in names.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            imap_wire::astring(&mut out, n.as_ref());
        }
        out
    };
    match section {
        None => Vec::new(),
        Some(Section::Part(p)) => part_text(p).into_bytes(),
        Some(Section::Header(p)) => with_part(p, "HEADER").into_bytes(),
        Some(Section::HeaderFields(p, names)) => {
            let mut v = with_part(p, "HEADER.FIELDS (").into_bytes();
            v.extend(fields(names.as_ref()));
            v.push(b')');
            v
        }
        Some(Section::HeaderFieldsNot(p, names)) => {
            let mut v = with_part(p, "HEADER.FIELDS.NOT (").into_bytes();
            v.extend(fields(names.as_ref()));
            v.push(b')');
            v
        }
        Some(Section::Text(p)) => with_part(p, "TEXT").into_bytes(),
        Some(Section::Mime(p)) => format!("{}.MIME", part_text(p)).into_bytes(),
    }
}

/// Whether the upstream's answer is for the section the client asked:
/// header field names come back in the server's own case
/// (`HEADER.FIELDS (FROM SUBJECT)` for `(from subject)`).
fn same_section(a: &Option<Section<'_>>, b: &Option<Section<'_>>) -> bool {
    a == b || section_spec(a).eq_ignore_ascii_case(&section_spec(b))
}

fn partial_slice(data: &[u8], partial: Option<(u32, std::num::NonZeroU32)>) -> &[u8] {
    match partial {
        None => data,
        Some((origin, count)) => {
            let start = (origin as usize).min(data.len());
            let end = start.saturating_add(count.get() as usize).min(data.len());
            &data[start..end]
        }
    }
}

/// What the requested items need beyond the index.
#[derive(Default)]
struct Needs {
    body: bool,
    header: bool,
    /// Upstream FETCH item texts for passthrough items.
    upstream: Vec<String>,
    /// Sets \Seen (a non-PEEK body item).
    seen: bool,
}

/// Per-message data gathered for one chunk.
struct Gathered {
    /// MODSEQ by UID, when it is sent.
    modseq: HashMap<u32, u64>,
    body: HashMap<u32, Vec<u8>>,
    header: HashMap<u32, Vec<u8>>,
    upstream: HashMap<u32, Vec<MessageDataItem<'static>>>,
}

impl<S: Io> Session<S> {
    pub(crate) async fn fetch(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        items: MacroOrMessageDataItemNames<'static>,
        by_uid: bool,
        modifiers: &[FetchModifier],
    ) -> std::io::Result<()> {
        let mut changed_since = None;
        let mut vanished = false;
        for m in modifiers {
            match m {
                FetchModifier::ChangedSince(v) => changed_since = Some(v.get()),
                FetchModifier::Vanished => vanished = true,
            }
        }
        if vanished && !(by_uid && changed_since.is_some() && self.qresync()) {
            self.bad(
                tag,
                "VANISHED needs UID FETCH with CHANGEDSINCE, and QRESYNC enabled",
            );
            return Ok(());
        }
        let Some(sel) = self.selected() else {
            return Ok(());
        };
        let targets = match resolve_set(set, &sel.uids, by_uid) {
            Ok(t) => t,
            Err(e) => {
                self.bad(tag, e);
                return Ok(());
            }
        };
        let read_only = sel.read_only;
        let mut items = match items {
            MacroOrMessageDataItemNames::Macro(m) => m
                .expand()
                .into_iter()
                .map(|i| i.into_static_item())
                .collect(),
            MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
        };
        if by_uid && !items.iter().any(|i| matches!(i, MessageDataItemName::Uid)) {
            items.insert(0, MessageDataItemName::Uid);
        }
        let mut needs = Needs::default();
        for item in &items {
            match item {
                MessageDataItemName::BodyExt {
                    section,
                    partial,
                    peek,
                } => {
                    needs.seen |= !peek;
                    match classify(section) {
                        Source::Full | Source::Text => needs.body = true,
                        Source::Header | Source::Fields(..) => needs.header = true,
                        Source::Upstream => {
                            let mut spec = b"BODY.PEEK[".to_vec();
                            spec.extend(section_spec(section));
                            spec.push(b']');
                            if let Some((o, c)) = partial {
                                let _ = write!(spec, "<{o}.{c}>");
                            }
                            needs
                                .upstream
                                .push(String::from_utf8_lossy(&spec).into_owned());
                        }
                    }
                }
                MessageDataItemName::Rfc822 | MessageDataItemName::Rfc822Text => {
                    needs.body = true;
                    needs.seen = true;
                }
                MessageDataItemName::Rfc822Header => needs.header = true,
                MessageDataItemName::Body => needs.upstream.push("BODY".into()),
                MessageDataItemName::Binary { .. } | MessageDataItemName::BinarySize { .. } => {
                    self.bad(tag, "BINARY is not supported");
                    return Ok(());
                }
                MessageDataItemName::ModSeq => {}
                _ => {}
            }
        }
        if read_only {
            needs.seen = false;
        }
        // MODSEQ is sent when asked for, with CHANGEDSINCE, and with the
        // flags a read changed once CONDSTORE is on (RFC 7162 3.1.4).
        let asks_modseq = changed_since.is_some() || items.contains(&MessageDataItemName::ModSeq);
        if asks_modseq {
            if !items.contains(&MessageDataItemName::ModSeq) {
                items.push(MessageDataItemName::ModSeq);
            }
            self.enable_condstore().await;
        }
        let wants_modseq = asks_modseq || (needs.seen && self.condstore());
        let mut refs = self.refs(&targets);
        if vanished {
            let largest = self
                .selected()
                .and_then(|s| s.uids.last().copied())
                .unwrap_or(0);
            self.vanished_earlier(&crate::imap::modseq::ranges_of(set, largest));
        }
        // Modseqs known so far, by UID: CHANGEDSINCE sweeps the whole set
        // once; a chunk is swept again only when a read changed its flags.
        let mut known: HashMap<u32, u64> = HashMap::new();
        if let Some(since) = changed_since {
            let Some(sweep) = self.sweep_or_refuse(tag, "FETCH", &refs, false).await else {
                return Ok(());
            };
            known = refs.iter().map(|r| r.uid).zip(sweep.modseqs).collect();
            refs.retain(|r| known.get(&r.uid).is_some_and(|m| *m > since));
        }
        // Chunk so that bodies are fetched in bounded batches.
        let mut start = 0;
        while start < refs.len() {
            let mut end = start;
            let mut bytes = 0u64;
            let limit = if needs.body || !needs.upstream.is_empty() {
                BODY_CHUNK
            } else {
                2000
            };
            while end < refs.len() && end - start < limit {
                let size = u64::from(refs[end].msg.meta.size);
                if needs.body && end > start && bytes + size > BODY_CHUNK_BYTES {
                    break;
                }
                bytes += size;
                end += 1;
            }
            let chunk = &refs[start..end];
            start = end;
            let gathered = match self.gather(chunk, &needs).await {
                Ok(g) => g,
                Err(e) => {
                    self.upstream_no(tag, "FETCH", &e);
                    return Ok(());
                }
            };
            // Looked up again only when reading changed their flags.
            let reread: Vec<Ref>;
            let read_now = needs.seen && chunk.iter().any(|r| !self.is_seen(r));
            let chunk: &[Ref] = if read_now {
                self.mark_seen(chunk).await;
                let cards: Vec<u32> = chunk
                    .iter()
                    .filter(|r| r.card.is_some())
                    .map(|r| r.uid)
                    .collect();
                self.set_card_seen(&cards, true);
                let pairs: Vec<(u32, u32)> = chunk.iter().map(|r| (r.seq, r.uid)).collect();
                reread = self.refs(&pairs);
                &reread
            } else {
                chunk
            };
            let mut gathered = gathered;
            if wants_modseq {
                if read_now || chunk.iter().any(|r| !known.contains_key(&r.uid)) {
                    let Some(sweep) = self.sweep_or_refuse(tag, "FETCH", chunk, false).await else {
                        return Ok(());
                    };
                    known.extend(chunk.iter().map(|r| r.uid).zip(sweep.modseqs));
                }
                gathered.modseq = chunk
                    .iter()
                    .filter_map(|r| known.get(&r.uid).map(|m| (r.uid, *m)))
                    .collect();
            }
            let emit_flags = needs.seen
                && !items
                    .iter()
                    .any(|i| matches!(i, MessageDataItemName::Flags));
            for r in chunk {
                self.write_fetch(r, &items, &gathered, emit_flags);
                if self.out.len() >= 256 * 1024 {
                    self.flush().await?;
                }
            }
        }
        self.ok(
            tag,
            None,
            if by_uid {
                "UID FETCH completed"
            } else {
                "FETCH completed"
            },
        );
        Ok(())
    }

    /// Marks what a non-PEEK fetch read as read: shared mail for this user
    /// only (wherever the folder is read-only for them, EXAMINE aside),
    /// private mail upstream.
    async fn mark_seen(&self, refs: &[Ref]) {
        let shared: Vec<&Ref> = refs
            .iter()
            .filter(|r| r.shared && !self.is_seen(r))
            .collect();
        if !shared.is_empty() {
            if let Err(e) = self.set_seen(&shared, true).await {
                tracing::error!(user = self.user_name(), "saving read state: {e}");
            }
        }
        for ((name, uidvalidity, gen), group) in group(refs) {
            let unseen: Vec<u32> = group
                .iter()
                .filter(|r| !r.shared && !r.msg.has_flag("\\Seen"))
                .map(|r| r.up_uid)
                .collect();
            if unseen.is_empty() {
                continue;
            }
            match self
                .ctx
                .pool
                .store_flags(&name, uidvalidity, &unseen, FlagOp::Add, &[Flag::Seen])
                .await
            {
                Ok(changes) => {
                    if let Err(e) = self.ctx.index.update_flags(&name, gen, changes).await {
                        tracing::error!("index flag update: {e}");
                    }
                }
                Err(e) => tracing::warn!("setting \\Seen upstream failed: {e}"),
            }
        }
    }

    /// Bodies, header blocks and passthrough items for a chunk, keyed by
    /// the client's UID.
    async fn gather(
        &self,
        chunk: &[Ref],
        needs: &Needs,
    ) -> Result<Gathered, crate::upstream::conn::UpstreamError> {
        let mut g = Gathered {
            modseq: HashMap::new(),
            body: HashMap::new(),
            header: HashMap::new(),
            upstream: HashMap::new(),
        };
        // Lead cards are rendered here (nothing upstream holds them).
        let cards: Vec<(u32, u64)> = chunk
            .iter()
            .filter(|r| r.card.is_some())
            .map(|r| (r.uid, r.key()))
            .collect();
        if !cards.is_empty() && (needs.body || needs.header || !needs.upstream.is_empty()) {
            let views = self.ctx.views.clone();
            let bodies = tokio::task::spawn_blocking(move || {
                cards
                    .into_iter()
                    .filter_map(|(uid, key)| views.card_bytes(key).map(|b| (uid, b.to_vec())))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            g.body.extend(bodies);
        }
        for ((name, uidvalidity, gen), group) in group(chunk) {
            let client: HashMap<u32, u32> = group.iter().map(|r| (r.up_uid, r.uid)).collect();
            let uids: Vec<u32> = group.iter().map(|r| r.up_uid).collect();
            let mut body: HashMap<u32, Vec<u8>> = HashMap::new();
            if needs.body || needs.header {
                let store = self.ctx.index.store().clone();
                let wanted = uids.clone();
                let only_headers = !needs.body;
                let (cached, headers) = tokio::task::spawn_blocking(move || {
                    if only_headers {
                        let h: Vec<(u32, Vec<u8>)> = wanted
                            .iter()
                            .filter_map(|&uid| {
                                store
                                    .message_header(gen, uid)
                                    .ok()
                                    .flatten()
                                    .map(|h| (uid, h))
                            })
                            .collect();
                        (Vec::new(), h)
                    } else {
                        (
                            store.message_bodies(gen, &wanted).unwrap_or_default(),
                            Vec::new(),
                        )
                    }
                })
                .await
                .unwrap_or_default();
                body.extend(cached);
                for (uid, h) in headers {
                    if let Some(c) = client.get(&uid) {
                        g.header.insert(*c, h);
                    }
                }
                // What the cache does not have comes from the upstream.
                let missing: Vec<u32> = uids
                    .iter()
                    .copied()
                    .filter(|u| {
                        !body.contains_key(u)
                            && (needs.body
                                || client.get(u).is_none_or(|c| !g.header.contains_key(c)))
                    })
                    .collect();
                if !missing.is_empty() {
                    for f in self
                        .ctx
                        .pool
                        .fetch_bodies(&name, uidvalidity, &missing, true)
                        .await?
                    {
                        if let (Some(uid), Some(b)) = (f.uid, f.body) {
                            body.insert(uid, b);
                        }
                    }
                }
            }
            for (uid, b) in body {
                if let Some(c) = client.get(&uid) {
                    g.body.insert(*c, b);
                }
            }
            if !needs.upstream.is_empty() {
                let cmd = format!(
                    "UID FETCH {} (UID {})",
                    uid_set(uids.iter().copied()),
                    needs.upstream.join(" ")
                );
                for r in self.ctx.pool.fetch_raw(&name, uidvalidity, &cmd).await? {
                    if let Response::Data(Data::Fetch { items, .. }) = r {
                        let items = items.into_inner();
                        let uid = items.iter().find_map(|i| match i {
                            MessageDataItem::Uid(u) => Some(u.get()),
                            _ => None,
                        });
                        if let Some(c) = uid.and_then(|u| client.get(&u)) {
                            g.upstream.entry(*c).or_default().extend(items);
                        }
                    }
                }
            }
        }
        Ok(g)
    }

    fn write_fetch(
        &mut self,
        r: &Ref,
        items: &[MessageDataItemName<'static>],
        g: &Gathered,
        emit_flags: bool,
    ) {
        // The stamp only matters when header or body bytes are served.
        let stamp = if g.body.contains_key(&r.uid) || g.header.contains_key(&r.uid) {
            self.stamp_for(r)
        } else {
            Vec::new()
        };
        let flag_list = self.flag_text(r);
        if emit_flags || items.contains(&MessageDataItemName::Flags) {
            self.announce_keywords(&flag_list);
        }
        let size = self.served_size(r);
        let mut out = std::mem::take(&mut self.out);
        let _ = write!(out, "* {} FETCH (", r.seq);
        let mut first = true;
        let mut sep = |out: &mut Vec<u8>| {
            if !first {
                out.push(b' ');
            }
            first = false;
        };
        // A shared message's own X-Lead-* fields are renamed: only the
        // stamp may speak for the lead.
        fn disarm(shared: bool, b: &[u8]) -> std::borrow::Cow<'_, [u8]> {
            if shared {
                message::disarm_lead_fields(b)
            } else {
                std::borrow::Cow::Borrowed(b)
            }
        }
        let raw_bytes = g.body.get(&r.uid).map(|b| disarm(r.shared, b));
        let raw = raw_bytes.as_deref();
        // What the client gets: the stamp on top of the upstream's bytes.
        let full: Option<Vec<u8>> = raw.map(|b| [stamp.as_slice(), b].concat());
        let header: Option<Vec<u8>> = match raw {
            Some(b) => Some([stamp.as_slice(), &b[..message::header_len(b)]].concat()),
            None => g
                .header
                .get(&r.uid)
                .map(|h| [stamp.as_slice(), &disarm(r.shared, h)].concat()),
        };
        let text = raw.map(|b| &b[message::header_len(b)..]);
        let mut flags_sent = false;
        if emit_flags {
            sep(&mut out);
            let _ = write!(out, "FLAGS ({flag_list})");
            flags_sent = true;
            // A read changed the flags: CONDSTORE clients get the modseq.
            if let (Some(m), false) = (
                g.modseq.get(&r.uid),
                items.contains(&MessageDataItemName::ModSeq),
            ) {
                let _ = write!(out, " MODSEQ ({m})");
            }
        }
        for item in items {
            match item {
                MessageDataItemName::Uid => {
                    sep(&mut out);
                    let _ = write!(out, "UID {}", r.uid);
                }
                MessageDataItemName::Flags => {
                    sep(&mut out);
                    let _ = write!(out, "FLAGS ({flag_list})");
                    flags_sent = true;
                }
                MessageDataItemName::ModSeq => {
                    if let Some(m) = g.modseq.get(&r.uid) {
                        sep(&mut out);
                        let _ = write!(out, "MODSEQ ({m})");
                    }
                }
                MessageDataItemName::InternalDate => {
                    sep(&mut out);
                    let _ = write!(out, "INTERNALDATE \"{}\"", r.msg.meta.internal_date);
                }
                MessageDataItemName::Rfc822Size => {
                    sep(&mut out);
                    let _ = write!(out, "RFC822.SIZE {size}");
                }
                MessageDataItemName::Envelope => {
                    sep(&mut out);
                    out.extend_from_slice(b"ENVELOPE ");
                    out.extend_from_slice(&r.msg.meta.envelope);
                }
                MessageDataItemName::BodyStructure => {
                    sep(&mut out);
                    out.extend_from_slice(b"BODYSTRUCTURE ");
                    out.extend_from_slice(&r.msg.meta.bodystructure);
                }
                MessageDataItemName::Body if r.card.is_some() => {
                    if let Some(slot) = &r.card {
                        sep(&mut out);
                        out.extend_from_slice(b"BODY ");
                        out.extend_from_slice(&slot.body);
                    }
                }
                MessageDataItemName::Body => {
                    if let Some(b) = g.upstream.get(&r.uid).and_then(|items| {
                        items
                            .iter()
                            .find(|i| matches!(i, MessageDataItem::Body(_)))
                            .cloned()
                    }) {
                        sep(&mut out);
                        out.extend_from_slice(b"BODY ");
                        out.extend(encode_fetch_item(b));
                    }
                }
                MessageDataItemName::BodyExt {
                    section, partial, ..
                } => {
                    let data: Option<Vec<u8>> = match classify(section) {
                        Source::Full => full.clone(),
                        Source::Header => header.clone(),
                        Source::Fields(names, not) => {
                            let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
                            header
                                .as_deref()
                                .map(|h| message::select_fields(h, &names, not))
                        }
                        Source::Text => text.map(<[u8]>::to_vec),
                        Source::Upstream if r.card.is_some() => card_section(r, raw, section),
                        // A sub-part (`BODY[1.HEADER]`, `BODY[2]` of an
                        // attached message) carries header blocks too.
                        Source::Upstream => g.upstream.get(&r.uid).and_then(|items| {
                            items.iter().find_map(|i| match i {
                                MessageDataItem::BodyExt {
                                    section: s, data, ..
                                } if same_section(s, section) => Some(
                                    disarm(
                                        r.shared,
                                        &data
                                            .clone()
                                            .into_option()
                                            .map(|c| c.into_owned())
                                            .unwrap_or_default(),
                                    )
                                    .into_owned(),
                                ),
                                _ => None,
                            })
                        }),
                    };
                    let Some(data) = data else { continue };
                    sep(&mut out);
                    out.extend_from_slice(b"BODY[");
                    out.extend(section_spec(section));
                    out.push(b']');
                    let sliced = match classify(section) {
                        // The upstream already applied the partial range.
                        Source::Upstream if r.card.is_none() => &data[..],
                        _ => partial_slice(&data, *partial),
                    };
                    if let Some((origin, _)) = partial {
                        let _ = write!(out, "<{origin}>");
                    }
                    out.push(b' ');
                    imap_wire::literal(&mut out, sliced);
                }
                MessageDataItemName::Rfc822 => {
                    if let Some(b) = &full {
                        sep(&mut out);
                        out.extend_from_slice(b"RFC822 ");
                        imap_wire::literal(&mut out, b);
                    }
                }
                MessageDataItemName::Rfc822Header => {
                    if let Some(h) = &header {
                        sep(&mut out);
                        out.extend_from_slice(b"RFC822.HEADER ");
                        imap_wire::literal(&mut out, h);
                    }
                }
                MessageDataItemName::Rfc822Text => {
                    if let Some(t) = text {
                        sep(&mut out);
                        out.extend_from_slice(b"RFC822.TEXT ");
                        imap_wire::literal(&mut out, t);
                    }
                }
                _ => {}
            }
        }
        out.extend_from_slice(b")\r\n");
        self.out = out;
        if flags_sent {
            if let Some(sel) = self.selected_mut() {
                sel.reported
                    .insert(r.uid, crate::imap::session::flags_digest(&flag_list));
            }
        }
    }
}

/// A sub-part of a lead card: `1` and `2` (text and HTML) and their
/// `.MIME` headers; nothing deeper exists.
fn card_section(r: &Ref, raw: Option<&[u8]>, section: &Option<Section<'_>>) -> Option<Vec<u8>> {
    let (slot, raw) = (r.card.as_ref()?, raw?);
    let (part, mime) = match section {
        Some(Section::Part(p)) => (p, false),
        Some(Section::Mime(p)) => (p, true),
        _ => return None,
    };
    let [n] = p_numbers(part)[..] else {
        return None;
    };
    crate::imap::views::card::part(raw, &slot.boundary, n, mime).map(<[u8]>::to_vec)
}

fn p_numbers(p: &Part) -> Vec<u32> {
    p.0.as_ref().iter().map(|n| n.get()).collect()
}

/// `Macro::expand` borrows; the session keeps owned items.
trait IntoStaticItem {
    fn into_static_item(self) -> MessageDataItemName<'static>;
}

impl IntoStaticItem for MessageDataItemName<'_> {
    fn into_static_item(self) -> MessageDataItemName<'static> {
        use imap_codec::imap_types::IntoStatic;
        self.into_static()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> SequenceSet {
        SequenceSet::try_from(s).unwrap()
    }

    #[test]
    fn sequence_sets_resolve_against_the_view() {
        let uids = [3, 5, 9, 10];
        assert_eq!(resolve_set(&set("1:*"), &uids, false).unwrap().len(), 4);
        assert_eq!(
            resolve_set(&set("2,4"), &uids, false).unwrap(),
            vec![(2, 5), (4, 10)]
        );
        assert!(resolve_set(&set("5"), &uids, false).is_err());
        assert_eq!(
            resolve_set(&set("4:9"), &uids, true).unwrap(),
            vec![(2, 5), (3, 9)]
        );
        assert_eq!(
            resolve_set(&set("11:*"), &uids, true).unwrap(),
            vec![(4, 10)]
        );
        assert_eq!(
            resolve_set(&set("1:4294967295"), &uids, true)
                .unwrap()
                .len(),
            4
        );
        assert!(resolve_set(&set("1:*"), &[], true).unwrap().is_empty());
    }

    #[test]
    fn partial_ranges_clamp() {
        let nz = |n| std::num::NonZeroU32::new(n).unwrap();
        assert_eq!(partial_slice(b"hello", Some((1, nz(3)))), b"ell");
        assert_eq!(partial_slice(b"hello", Some((4, nz(10)))), b"o");
        assert_eq!(partial_slice(b"hello", Some((9, nz(1)))), b"");
    }
}
