//! Submissions already relayed, so that a mail client's retry of a message
//! whose 250 was lost (leadgate was killed, or the connection dropped while
//! the copy was being filed in Sent) is answered 250 without relaying it to
//! the customer a second time.
//!
//! A submission is keyed by the user, its recipients and its Message-ID
//! (or its bytes, when it has none) — what a client's retry repeats. Each
//! key moves through two [`Stage`]s, each committed before the step it
//! guards: `Relaying` before the relay; `Done` right after the relay's 250,
//! in the same transaction as the lead's record of the reply and the copy
//! queued for the shared Sent folder (`SENT_COPIES`, filed by a background
//! task after the 250, so the client does not wait for the upstream
//! APPEND). After a crash:
//!
//! - `Done`: the retry gets 250 and nothing happens again;
//! - `Relaying`: the crash came during the relay itself (or in the few
//!   milliseconds before its record), and whether the relay took the
//!   message is unknown. It is relayed again (a possible duplicate, never
//!   a loss), and that is logged and audited.
//!
//! Entries are kept for [`KEEP_MS`], then pruned.

use super::changes::WriteTxn;
use redb::ReadableTable;
use sha2::{Digest, Sha256};

use super::{
    schema::{SENT_COPIES, SENT_SUBMISSIONS},
    Store, StoreError,
};

/// How long a submission is remembered: longer than any client retries.
pub const KEEP_MS: i64 = 7 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Relaying = 1,
    Done = 3,
    /// Held by the owner rule (`store::held`): a retry is not held twice.
    Held = 4,
}

impl Stage {
    fn from_byte(b: u8) -> Option<Stage> {
        match b {
            1 => Some(Stage::Relaying),
            3 => Some(Stage::Done),
            4 => Some(Stage::Held),
            _ => None,
        }
    }
}

/// The key of a submission: user, recipients (in any order, any case) and
/// Message-ID, or the message bytes when it has no Message-ID.
pub fn key(user: &str, rcpts: &[String], message_id: Option<&str>, data: &[u8]) -> [u8; 32] {
    let mut rcpts: Vec<String> = rcpts.iter().map(|r| r.to_ascii_lowercase()).collect();
    rcpts.sort();
    rcpts.dedup();
    let mut h = Sha256::new();
    h.update(user.as_bytes());
    h.update([0]);
    for r in &rcpts {
        h.update(r.as_bytes());
        h.update([0]);
    }
    match message_id {
        Some(id) => {
            h.update(b"id\0");
            h.update(id.as_bytes());
        }
        None => {
            h.update(b"data\0");
            h.update(data);
        }
    }
    h.finalize().into()
}

/// The stage of `key` if it is remembered and younger than [`KEEP_MS`].
pub fn stage(txn: &WriteTxn, key: &[u8; 32], now_ms: i64) -> Result<Option<Stage>, StoreError> {
    let table = txn.open_table(SENT_SUBMISSIONS)?;
    let Some(v) = table.get(key.as_slice())? else {
        return Ok(None);
    };
    Ok(decode(v.value()).and_then(|(at, stage)| (now_ms - at < KEEP_MS).then_some(stage)))
}

pub fn set(txn: &WriteTxn, key: &[u8; 32], stage: Stage, now_ms: i64) -> Result<(), StoreError> {
    let mut value = [0u8; 9];
    value[..8].copy_from_slice(&now_ms.to_le_bytes());
    value[8] = stage as u8;
    txn.open_table(SENT_SUBMISSIONS)?
        .insert(key.as_slice(), value.as_slice())?;
    Ok(())
}

/// Forgets a submission (its relay failed: a retry must relay it).
pub fn forget(txn: &WriteTxn, key: &[u8; 32]) -> Result<(), StoreError> {
    txn.open_table(SENT_SUBMISSIONS)?.remove(key.as_slice())?;
    Ok(())
}

/// Removes entries older than [`KEEP_MS`]; returns how many.
pub fn prune(txn: &WriteTxn, now_ms: i64) -> Result<usize, StoreError> {
    let mut table = txn.open_table(SENT_SUBMISSIONS)?;
    let mut removed = 0;
    table.retain(|_, v| {
        let keep = decode(v).is_some_and(|(at, _)| now_ms - at < KEEP_MS);
        removed += usize::from(!keep);
        keep
    })?;
    Ok(removed)
}

/// A copy waiting to be filed in the shared Sent folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedCopy {
    pub key: [u8; 32],
    pub user: String,
    pub lead: Option<u64>,
    pub data: Vec<u8>,
}

/// Queues the Sent copy of a relayed submission (same transaction as its
/// `Done` stage).
pub fn queue_copy(
    txn: &WriteTxn,
    key: &[u8; 32],
    user: &str,
    lead: Option<u64>,
    data: &[u8],
) -> Result<(), StoreError> {
    let user = &user.as_bytes()[..user.len().min(u16::MAX as usize)];
    let mut value = Vec::with_capacity(10 + user.len() + data.len());
    value.extend_from_slice(&lead.unwrap_or(0).to_le_bytes());
    value.extend_from_slice(&(user.len() as u16).to_le_bytes());
    value.extend_from_slice(user);
    value.extend_from_slice(data);
    txn.open_table(SENT_COPIES)?
        .insert(key.as_slice(), value.as_slice())?;
    Ok(())
}

/// Every copy still to be filed.
pub fn queued_copies(store: &Store) -> Result<Vec<QueuedCopy>, StoreError> {
    store.read(|txn| {
        let table = match txn.open_table(SENT_COPIES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let (Ok(key), Some(copy)) = (<[u8; 32]>::try_from(k.value()), decode_copy(v.value()))
            else {
                return Err(StoreError::corrupt("sent_copies", "bad entry"));
            };
            let (user, lead, data) = copy;
            out.push(QueuedCopy {
                key,
                user,
                lead,
                data,
            });
        }
        Ok(out)
    })
}

/// The copy is filed: off the queue.
pub fn copy_filed(txn: &WriteTxn, key: &[u8; 32]) -> Result<(), StoreError> {
    txn.open_table(SENT_COPIES)?.remove(key.as_slice())?;
    Ok(())
}

fn decode_copy(v: &[u8]) -> Option<(String, Option<u64>, Vec<u8>)> {
    let lead = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    let n = u16::from_le_bytes(v.get(8..10)?.try_into().ok()?) as usize;
    let user = String::from_utf8(v.get(10..10 + n)?.to_vec()).ok()?;
    let data = v.get(10 + n..)?.to_vec();
    Some((user, (lead != 0).then_some(lead), data))
}

fn decode(v: &[u8]) -> Option<(i64, Stage)> {
    let at = i64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    Some((at, Stage::from_byte(*v.get(8)?)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_copy_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let key = [7u8; 32];
        store
            .write_blocking(move |txn| {
                queue_copy(txn, &key, "alice", Some(42), b"Subject: x\r\n\r\nbody")?;
                queue_copy(txn, &[8u8; 32], "bob", None, b"")
            })
            .unwrap();
        let copies = queued_copies(&store).unwrap();
        assert_eq!(
            copies[0],
            QueuedCopy {
                key,
                user: "alice".into(),
                lead: Some(42),
                data: b"Subject: x\r\n\r\nbody".to_vec()
            }
        );
        assert_eq!(copies[1].lead, None);
        store
            .write_blocking(move |txn| copy_filed(txn, &key))
            .unwrap();
        assert_eq!(queued_copies(&store).unwrap().len(), 1);
    }

    #[test]
    fn a_retry_has_the_same_key_and_another_message_does_not() {
        let a = key(
            "alice",
            &["B@x.test".into(), "a@x.test".into()],
            Some("<1@x>"),
            b"one",
        );
        let retry = key(
            "alice",
            &["a@x.test".into(), "b@x.test".into()],
            Some("<1@x>"),
            b"other date",
        );
        assert_eq!(a, retry);
        assert_ne!(
            a,
            key(
                "bob",
                &["a@x.test".into(), "b@x.test".into()],
                Some("<1@x>"),
                b"one"
            )
        );
        assert_ne!(a, key("alice", &["a@x.test".into()], Some("<1@x>"), b"one"));
        assert_ne!(
            a,
            key(
                "alice",
                &["a@x.test".into(), "b@x.test".into()],
                Some("<2@x>"),
                b"one"
            )
        );
        assert_ne!(
            key("alice", &["a@x.test".into()], None, b"one"),
            key("alice", &["a@x.test".into()], None, b"two")
        );
    }
}
