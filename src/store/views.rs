//! Persistence of virtual folders: each view's id, UIDVALIDITY and next
//! UID, and its UID -> message map. UIDs are allocated here and never
//! reused: a message that leaves a view and comes back gets a new one.

use super::changes::WriteTxn;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::{
    schema::{meta_u64, META, VIEWS, VIEW_UIDS},
    Store, StoreError,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewRecord {
    /// Shares its number space with mailbox generations (events use both).
    pub id: u32,
    pub uidvalidity: u32,
    pub next_uid: u32,
}

/// A view as stored: its key, record and (view UID, message key) pairs.
pub type StoredView = (String, ViewRecord, Vec<(u32, u64)>);

fn uid_key(id: u32, uid: u32) -> u64 {
    (u64::from(id) << 32) | u64::from(uid)
}

fn put(txn: &WriteTxn, key: &str, rec: &ViewRecord) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(rec).map_err(|e| StoreError::corrupt("view", e))?;
    txn.open_table(VIEWS)?.insert(key, bytes.as_slice())?;
    Ok(())
}

impl Store {
    /// Every view with its members (view UID, message key).
    pub fn load_views(&self) -> Result<Vec<StoredView>, StoreError> {
        self.read(|txn| {
            let views = txn.open_table(VIEWS)?;
            let uids = txn.open_table(VIEW_UIDS)?;
            let mut out = Vec::new();
            for row in views.iter()? {
                let (k, v) = row?;
                let rec: ViewRecord = serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::corrupt(format!("view {}", k.value()), e))?;
                let mut members = Vec::new();
                for row in uids.range(uid_key(rec.id, 0)..=uid_key(rec.id, u32::MAX))? {
                    let (k, v) = row?;
                    members.push(((k.value() & 0xffff_ffff) as u32, v.value()));
                }
                out.push((k.value().to_owned(), rec, members));
            }
            Ok(out)
        })
    }

    /// Creates a view (or returns the existing one).
    pub async fn view_create(&self, key: &str, uidvalidity: u32) -> Result<ViewRecord, StoreError> {
        let key = key.to_owned();
        self.write(move |txn| {
            if let Some(v) = txn.open_table(VIEWS)?.get(key.as_str())? {
                return serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::corrupt("view", e));
            }
            let id = {
                let mut meta = txn.open_table(META)?;
                let id = meta_u64(&meta, "next_gen")?.unwrap_or(1);
                meta.insert("next_gen", (id + 1).to_le_bytes().as_slice())?;
                u32::try_from(id).map_err(|_| StoreError::corrupt("meta.next_gen", "overflow"))?
            };
            let rec = ViewRecord {
                id,
                uidvalidity,
                next_uid: 1,
            };
            put(txn, &key, &rec)?;
            Ok(rec)
        })
        .await
    }

    /// Records membership changes of one view with its new next UID.
    pub async fn view_apply(
        &self,
        key: &str,
        rec: ViewRecord,
        added: Vec<(u32, u64)>,
        removed: Vec<u32>,
    ) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write(move |txn| {
            let mut uids = txn.open_table(VIEW_UIDS)?;
            for (uid, msg) in &added {
                uids.insert(uid_key(rec.id, *uid), *msg)?;
            }
            for uid in &removed {
                uids.remove(uid_key(rec.id, *uid))?;
            }
            drop(uids);
            put(txn, &key, &rec)
        })
        .await
    }
}
