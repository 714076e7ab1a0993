//! Subscriptions: every folder a user sees is subscribed unless they
//! unsubscribed it (Outlook lists only subscribed folders, so leadgate's
//! computed folders must be subscribed from the start). Only the
//! exceptions are kept, per user.

use std::collections::HashSet;

use redb::{ReadableTable, TableError};

use super::{schema::UNSUBSCRIBED, Store, StoreError};

/// Longest folder name kept (bytes); longer names are refused by IMAP
/// before they get here.
pub const MAX_NAME: usize = 1024;
/// Unsubscribed folders kept per user, so a client cannot grow the store
/// without bound.
pub const MAX_PER_USER: usize = 1000;

fn key(user: &str, folder: &str) -> String {
    format!("{user}\0{folder}")
}

impl Store {
    /// The folders `user` unsubscribed.
    pub fn unsubscribed(&self, user: &str) -> Result<HashSet<String>, StoreError> {
        self.read(|txn| {
            let t = match txn.open_table(UNSUBSCRIBED) {
                Ok(t) => t,
                // A store from before subscriptions, opened read-only.
                Err(TableError::TableDoesNotExist(_)) => return Ok(HashSet::new()),
                Err(e) => return Err(e.into()),
            };
            let (from, to) = (format!("{user}\0"), format!("{user}\u{1}"));
            let mut out = HashSet::new();
            for row in t.range(from.as_str()..to.as_str())? {
                let (k, _) = row?;
                if let Some((_, folder)) = k.value().split_once('\0') {
                    out.insert(folder.to_owned());
                }
            }
            Ok(out)
        })
    }

    /// Subscribes (`true`) or unsubscribes `folder` for `user`. `Ok(false)`
    /// when the user already has `MAX_PER_USER` folders unsubscribed.
    pub async fn set_subscribed(
        &self,
        user: &str,
        folder: &str,
        subscribed: bool,
    ) -> Result<bool, StoreError> {
        let (user, k) = (user.to_owned(), key(user, folder));
        self.write(move |txn| {
            let mut t = txn.open_table(UNSUBSCRIBED)?;
            if subscribed {
                t.remove(k.as_str())?;
                return Ok(true);
            }
            if t.get(k.as_str())?.is_some() {
                return Ok(true);
            }
            let (from, to) = (format!("{user}\0"), format!("{user}\u{1}"));
            if t.range(from.as_str()..to.as_str())?.count() >= MAX_PER_USER {
                return Ok(false);
            }
            t.insert(k.as_str(), [].as_slice())?;
            Ok(true)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unsubscribing_is_per_user_and_subscribing_undoes_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        assert!(store
            .set_subscribed("alice", "Update lead", false)
            .await
            .unwrap());
        assert!(store
            .set_subscribed("alice", "Leads/Closed", false)
            .await
            .unwrap());
        assert!(store
            .set_subscribed("alicex", "Leads/Mine", false)
            .await
            .unwrap());
        let a = store.unsubscribed("alice").unwrap();
        assert_eq!(a.len(), 2);
        assert!(a.contains("Update lead") && a.contains("Leads/Closed"));
        assert!(store.unsubscribed("bob").unwrap().is_empty());
        store
            .set_subscribed("alice", "Leads/Closed", true)
            .await
            .unwrap();
        assert_eq!(store.unsubscribed("alice").unwrap().len(), 1);
    }
}
