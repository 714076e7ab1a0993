//! The outbox of `delivery = "direct"` (see `smtp::queue`): entries as JSON
//! in `OUTBOX`, their messages in `OUTBOX_BODIES` under the same id. The
//! entry's shape belongs to the SMTP queue; the store keeps it opaque.

use super::changes::WriteTxn;
use redb::ReadableTable;
use serde::{de::DeserializeOwned, Serialize};

use super::{
    schema::{self, META, OUTBOX, OUTBOX_BODIES},
    Store, StoreError,
};

const NEXT_ID_KEY: &str = "outbox_next_id";

fn decode<E: DeserializeOwned>(id: u64, bytes: &[u8]) -> Result<E, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(format!("outbox entry {id}"), e))
}

fn encode<E: Serialize>(entry: &E) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(entry).map_err(|e| StoreError::corrupt("queue entry", e))
}

/// Ids come from META `outbox_next_id` and are never reused.
pub(super) fn insert<E: Serialize>(
    txn: &WriteTxn,
    entry: &E,
    body: &[u8],
) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META)?;
    let id = schema::meta_u64(&meta, NEXT_ID_KEY)?.unwrap_or(1);
    meta.insert(NEXT_ID_KEY, (id + 1).to_le_bytes().as_slice())?;
    drop(meta);
    txn.open_table(OUTBOX)?
        .insert(id, encode(entry)?.as_slice())?;
    txn.open_table(OUTBOX_BODIES)?.insert(id, body)?;
    Ok(id)
}

pub(super) fn load<E: DeserializeOwned>(txn: &WriteTxn, id: u64) -> Result<Option<E>, StoreError> {
    let t = txn.open_table(OUTBOX)?;
    let v = t.get(id)?;
    v.map(|v| decode(id, v.value())).transpose()
}

pub(super) fn save<E: Serialize>(
    txn: &WriteTxn,
    id: u64,
    entry: Option<&E>,
) -> Result<(), StoreError> {
    let mut t = txn.open_table(OUTBOX)?;
    match entry {
        Some(e) => {
            t.insert(id, encode(e)?.as_slice())?;
        }
        None => {
            t.remove(id)?;
            drop(t);
            txn.open_table(OUTBOX_BODIES)?.remove(id)?;
        }
    }
    Ok(())
}

impl Store {
    /// Every queued entry, by id.
    pub async fn outbox_entries<E: DeserializeOwned + Send + 'static>(
        &self,
    ) -> Result<Vec<(u64, E)>, StoreError> {
        self.read_async(|txn| {
            let t = txn.open_table(OUTBOX)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.push((k.value(), decode(k.value(), v.value())?));
            }
            Ok(out)
        })
        .await
    }

    /// One entry and its message (empty when the message is missing).
    pub async fn outbox_get<E: DeserializeOwned + Send + 'static>(
        &self,
        id: u64,
    ) -> Result<Option<(E, Vec<u8>)>, StoreError> {
        self.read_async(move |txn| {
            let t = txn.open_table(OUTBOX)?;
            let Some(v) = t.get(id)? else {
                return Ok(None);
            };
            let entry = decode(id, v.value())?;
            let b = txn.open_table(OUTBOX_BODIES)?;
            let body = b.get(id)?.map(|v| v.value().to_vec()).unwrap_or_default();
            Ok(Some((entry, body)))
        })
        .await
    }

    /// How many entries are queued.
    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        self.read(|txn| Ok(redb::ReadableTableMetadata::len(&txn.open_table(OUTBOX)?)?))
    }
}
