//! Subscriptions, per user: only the user's own choices are kept (a
//! folder they subscribed or unsubscribed); what they never touched is
//! subscribed or not by default, which IMAP decides (leadgate's computed
//! folders and the standard folders are, since Outlook lists only
//! subscribed folders; a folder a user created is not until they
//! subscribe it, as on Dovecot).

use std::collections::HashMap;

use redb::{ReadableTable, TableError};

use super::{schema::UNSUBSCRIBED, Store, StoreError};

/// Longest folder name kept (bytes); longer names are refused by IMAP
/// before they get here.
pub const MAX_NAME: usize = 1024;
/// Choices kept per user, so a client cannot grow the store without bound.
pub const MAX_PER_USER: usize = 1000;

/// The row value of a subscribed folder; an unsubscribed one has an empty
/// value (the only kind stores before version 0.x kept).
const SUBSCRIBED: &[u8] = &[1];

fn key(user: &str, folder: &str) -> String {
    format!("{user}\0{folder}")
}

impl Store {
    /// The folders `user` subscribed (`true`) or unsubscribed (`false`).
    pub fn subscriptions(&self, user: &str) -> Result<HashMap<String, bool>, StoreError> {
        self.read(|txn| {
            let t = match txn.open_table(UNSUBSCRIBED) {
                Ok(t) => t,
                // A store from before subscriptions, opened read-only.
                Err(TableError::TableDoesNotExist(_)) => return Ok(HashMap::new()),
                Err(e) => return Err(e.into()),
            };
            let (from, to) = (format!("{user}\0"), format!("{user}\u{1}"));
            let mut out = HashMap::new();
            for row in t.range(from.as_str()..to.as_str())? {
                let (k, v) = row?;
                if let Some((_, folder)) = k.value().split_once('\0') {
                    out.insert(folder.to_owned(), v.value() == SUBSCRIBED);
                }
            }
            Ok(out)
        })
    }

    /// Records that `user` subscribed (`true`) or unsubscribed `folder`.
    /// `Ok(false)` when the user already has `MAX_PER_USER` choices kept.
    pub async fn set_subscribed(
        &self,
        user: &str,
        folder: &str,
        subscribed: bool,
    ) -> Result<bool, StoreError> {
        let (user, k) = (user.to_owned(), key(user, folder));
        self.write(move |txn| {
            let mut t = txn.open_table(UNSUBSCRIBED)?;
            let value: &[u8] = if subscribed { SUBSCRIBED } else { &[] };
            if t.get(k.as_str())?.is_none() {
                let (from, to) = (format!("{user}\0"), format!("{user}\u{1}"));
                if t.range(from.as_str()..to.as_str())?.count() >= MAX_PER_USER {
                    return Ok(false);
                }
            }
            t.insert(k.as_str(), value)?;
            Ok(true)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn choices_are_per_user_and_the_last_one_counts() {
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
            .set_subscribed("alice", "Projects", true)
            .await
            .unwrap());
        assert!(store
            .set_subscribed("alicex", "Leads/Mine", false)
            .await
            .unwrap());
        let a = store.subscriptions("alice").unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a.get("Update lead"), Some(&false));
        assert_eq!(a.get("Projects"), Some(&true));
        assert!(store.subscriptions("bob").unwrap().is_empty());
        store
            .set_subscribed("alice", "Leads/Closed", true)
            .await
            .unwrap();
        assert_eq!(
            store.subscriptions("alice").unwrap().get("Leads/Closed"),
            Some(&true)
        );
    }

    #[tokio::test]
    async fn a_user_cannot_keep_more_than_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        for n in 0..MAX_PER_USER {
            assert!(store
                .set_subscribed("alice", &format!("f{n}"), n % 2 == 0)
                .await
                .unwrap());
        }
        assert!(!store
            .set_subscribed("alice", "one more", true)
            .await
            .unwrap());
        // Changing a kept choice is still allowed.
        assert!(store.set_subscribed("alice", "f1", true).await.unwrap());
        assert!(store.set_subscribed("bob", "f1", true).await.unwrap());
        assert_eq!(store.subscriptions("alice").unwrap().len(), MAX_PER_USER);
    }
}
