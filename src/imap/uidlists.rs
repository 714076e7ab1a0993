//! Shared UID lists of selected folders. Every session that has a folder
//! selected keeps the folder's UIDs by sequence number; with thousands of
//! sessions on a 10,000-message INBOX those lists would be most of the
//! daemon's memory, and they are nearly always identical. A list is
//! interned by (event scope, event sequence number) and content: sessions
//! that are at the same point of the same folder share one copy, and a
//! session whose list differs (an expunge it has not announced yet) keeps
//! its own.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

#[derive(Default)]
pub struct UidLists {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    lists: HashMap<(u32, u64), Weak<Vec<u32>>>,
    prune_at: usize,
}

impl UidLists {
    /// The shared copy of `list`, the UIDs of `scope` as of event `seq`.
    pub fn intern(&self, scope: u32, seq: u64, mut list: Vec<u32>) -> Arc<Vec<u32>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(shared) = inner.lists.get(&(scope, seq)).and_then(Weak::upgrade) {
            if *shared == list {
                return shared;
            }
        }
        list.shrink_to_fit();
        let shared = Arc::new(list);
        inner.lists.insert((scope, seq), Arc::downgrade(&shared));
        if inner.lists.len() > inner.prune_at {
            inner.lists.retain(|_, w| w.strong_count() > 0);
            inner.prune_at = (inner.lists.len() * 2).max(64);
        }
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_lists_at_the_same_point_share_one_copy() {
        let lists = UidLists::default();
        let a = lists.intern(1, 10, vec![1, 2, 3]);
        let b = lists.intern(1, 10, vec![1, 2, 3]);
        assert!(Arc::ptr_eq(&a, &b));
        // Other content at the same point (an unannounced expunge): its own.
        let c = lists.intern(1, 10, vec![1, 3]);
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(*c, vec![1, 3]);
        // Another point of the folder: its own.
        assert!(!Arc::ptr_eq(&a, &lists.intern(1, 11, vec![1, 2, 3])));
        // Once nobody holds a list, it is not handed out again.
        drop((a, b, c));
        let d = lists.intern(1, 10, vec![1, 2, 3]);
        assert_eq!(Arc::strong_count(&d), 1);
    }
}
