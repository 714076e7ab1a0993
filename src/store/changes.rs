//! The write transaction every write in the store goes through: redb's,
//! plus, when asked, a record of the rows it changed.
//!
//! The record is what lets `erase`'s rewrite of the file run beside the
//! writer instead of in its place: the rewrite copies a snapshot into a
//! fresh file while writes go on, and the writer notes, for every commit
//! after that snapshot, the key of each row inserted or removed, table by
//! table ([`Changes`]). At the end the writer brings just those rows over,
//! with their values as they are now (or their absence), which makes the
//! fresh file equal to the store: a row not noted is as it was in the
//! snapshot. So every change must be noted: tables are opened only
//! through [`WriteTxn`], whose [`Table`] and [`MultimapTable`] note each
//! insert and remove and read through redb's own (`Deref`). A table
//! deleted whole is noted as such, and a write that bypasses this record
//! (`Store::raw_write_blocking`, for tests) marks everything changed.

use std::{
    borrow::Borrow,
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
    ops::{Deref, RangeBounds},
};

use redb::{
    AccessGuard, Key, MultimapTableDefinition, MultimapTableHandle, Range, ReadableTable,
    ReadableTableMetadata, StorageError, TableDefinition, TableError, TableHandle, TableStats,
    Value,
};

/// What commits changed since a snapshot.
#[derive(Debug, Default)]
pub(super) struct Changes {
    /// Table name -> the keys (as redb encodes them) of rows inserted,
    /// replaced or removed; `None`: the whole table (deleted, or rows
    /// removed by range).
    pub(super) tables: BTreeMap<String, Option<BTreeSet<Vec<u8>>>>,
    /// A write went around the record: nothing can be trusted but a full
    /// copy.
    pub(super) everything: bool,
}

impl Changes {
    fn key(&mut self, table: &str, key: &[u8]) {
        if let Some(keys) = self
            .tables
            .entry(table.to_owned())
            .or_insert_with(|| Some(BTreeSet::new()))
        {
            keys.insert(key.to_vec());
        }
    }

    fn whole(&mut self, table: &str) {
        self.tables.insert(table.to_owned(), None);
    }

    /// Adds what a later commit changed.
    pub(super) fn merge(&mut self, later: Changes) {
        self.everything |= later.everything;
        for (table, keys) in later.tables {
            match (self.tables.get_mut(&table), keys) {
                (Some(Some(mine)), Some(keys)) => mine.extend(keys),
                (Some(mine @ Some(_)), None) => *mine = None,
                (Some(None), _) => {}
                (None, keys) => {
                    self.tables.insert(table, keys);
                }
            }
        }
    }
}

/// A redb write transaction that notes what it changes when asked to
/// (see the module docs).
pub struct WriteTxn {
    txn: redb::WriteTransaction,
    changes: Option<RefCell<Changes>>,
}

impl WriteTxn {
    /// `record`: note every change (a rewrite is under way).
    pub(super) fn new(txn: redb::WriteTransaction, record: bool) -> WriteTxn {
        WriteTxn {
            txn,
            changes: record.then(RefCell::default),
        }
    }

    /// The transaction itself, for the writer (durability, commit).
    pub(super) fn redb(&mut self) -> &mut redb::WriteTransaction {
        &mut self.txn
    }

    /// Commits; returns what was noted.
    pub(super) fn commit(self) -> Result<Option<Changes>, redb::CommitError> {
        self.txn.commit()?;
        Ok(self.changes.map(RefCell::into_inner))
    }

    pub(super) fn abort(self) -> Result<(), StorageError> {
        self.txn.abort()
    }

    /// For a write that went around the record.
    pub(super) fn untracked(&self) -> &redb::WriteTransaction {
        if let Some(c) = &self.changes {
            c.borrow_mut().everything = true;
        }
        &self.txn
    }

    pub fn open_table<K: Key + 'static, V: Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> Result<Table<'_, K, V>, TableError> {
        Ok(Table {
            table: self.txn.open_table(def)?,
            note: self.changes.as_ref().map(|c| (c, def.name().to_owned())),
        })
    }

    pub fn open_multimap_table<K: Key + 'static, V: Key + 'static>(
        &self,
        def: MultimapTableDefinition<K, V>,
    ) -> Result<MultimapTable<'_, K, V>, TableError> {
        Ok(MultimapTable {
            table: self.txn.open_multimap_table(def)?,
            note: self.changes.as_ref().map(|c| (c, def.name().to_owned())),
        })
    }

    pub fn delete_table(&self, def: impl TableHandle) -> Result<bool, TableError> {
        if let Some(c) = &self.changes {
            c.borrow_mut().whole(def.name());
        }
        self.txn.delete_table(def)
    }
}

/// Where a table notes its changes: the transaction's record and the
/// table's name (`None` when nothing is recorded).
type Note<'t> = Option<(&'t RefCell<Changes>, String)>;

fn note_key<K: Key + 'static>(note: &Note<'_>, key: &K::SelfType<'_>) {
    if let Some((changes, table)) = note {
        changes.borrow_mut().key(table, K::as_bytes(key).as_ref());
    }
}

/// redb's table, whose inserts and removes are noted; reads go straight
/// to redb's (`Deref`).
pub struct Table<'t, K: Key + 'static, V: Value + 'static> {
    table: redb::Table<'t, K, V>,
    note: Note<'t>,
}

impl<'t, K: Key + 'static, V: Value + 'static> Deref for Table<'t, K, V> {
    type Target = redb::Table<'t, K, V>;
    fn deref(&self) -> &Self::Target {
        &self.table
    }
}

impl<K: Key + 'static, V: Value + 'static> ReadableTableMetadata for Table<'_, K, V> {
    fn stats(&self) -> Result<TableStats, StorageError> {
        self.table.stats()
    }
    fn len(&self) -> Result<u64, StorageError> {
        self.table.len()
    }
}

impl<K: Key + 'static, V: Value + 'static> ReadableTable<K, V> for Table<'_, K, V> {
    fn get<'a>(
        &self,
        key: impl Borrow<K::SelfType<'a>>,
    ) -> Result<Option<AccessGuard<'_, V>>, StorageError> {
        self.table.get(key)
    }
    fn range<'a, KR>(
        &self,
        range: impl RangeBounds<KR> + 'a,
    ) -> Result<Range<'_, K, V>, StorageError>
    where
        KR: Borrow<K::SelfType<'a>> + 'a,
    {
        self.table.range(range)
    }
    #[allow(clippy::type_complexity)]
    fn first(&self) -> Result<Option<(AccessGuard<'_, K>, AccessGuard<'_, V>)>, StorageError> {
        self.table.first()
    }
    #[allow(clippy::type_complexity)]
    fn last(&self) -> Result<Option<(AccessGuard<'_, K>, AccessGuard<'_, V>)>, StorageError> {
        self.table.last()
    }
}

impl<K: Key + 'static, V: Value + 'static> Table<'_, K, V> {
    pub fn insert<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<Option<AccessGuard<'_, V>>, StorageError> {
        note_key::<K>(&self.note, key.borrow());
        self.table.insert(key, value)
    }

    pub fn remove<'a>(
        &mut self,
        key: impl Borrow<K::SelfType<'a>>,
    ) -> Result<Option<AccessGuard<'_, V>>, StorageError> {
        note_key::<K>(&self.note, key.borrow());
        self.table.remove(key)
    }

    /// Keeps the rows for which `keep` holds; the others are removed (and
    /// noted).
    pub fn retain<F: for<'f> FnMut(K::SelfType<'f>, V::SelfType<'f>) -> bool>(
        &mut self,
        mut keep: F,
    ) -> Result<(), StorageError> {
        let Self { table, note } = self;
        table.retain(|k, v| {
            let key = note.is_some().then(|| K::as_bytes(&k).as_ref().to_vec());
            let kept = keep(k, v);
            if let (false, Some(key), Some((changes, name))) = (kept, key, &note) {
                changes.borrow_mut().key(name, &key);
            }
            kept
        })
    }

    /// `retain` over the rows in `range`.
    pub fn retain_in<'a, KR, F: for<'f> FnMut(K::SelfType<'f>, V::SelfType<'f>) -> bool>(
        &mut self,
        range: impl RangeBounds<KR> + 'a,
        mut keep: F,
    ) -> Result<(), StorageError>
    where
        KR: Borrow<K::SelfType<'a>> + 'a,
    {
        let Self { table, note } = self;
        table.retain_in(range, |k, v| {
            let key = note.is_some().then(|| K::as_bytes(&k).as_ref().to_vec());
            let kept = keep(k, v);
            if let (false, Some(key), Some((changes, name))) = (kept, key, &note) {
                changes.borrow_mut().key(name, &key);
            }
            kept
        })
    }
}

/// A table rows can be put in: the store's (noting) or redb's own (raw
/// access, for tests and benches), for code both use (`audit::append_in`).
pub trait Insert<K: Key + 'static, V: Value + 'static>: ReadableTable<K, V> {
    fn put<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<Option<AccessGuard<'_, V>>, StorageError>;
}

impl<K: Key + 'static, V: Value + 'static> Insert<K, V> for Table<'_, K, V> {
    fn put<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<Option<AccessGuard<'_, V>>, StorageError> {
        self.insert(key, value)
    }
}

impl<K: Key + 'static, V: Value + 'static> Insert<K, V> for redb::Table<'_, K, V> {
    fn put<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<Option<AccessGuard<'_, V>>, StorageError> {
        self.insert(key, value)
    }
}

/// redb's multimap table, whose inserts and removes are noted (by key).
pub struct MultimapTable<'t, K: Key + 'static, V: Key + 'static> {
    table: redb::MultimapTable<'t, K, V>,
    note: Note<'t>,
}

impl<'t, K: Key + 'static, V: Key + 'static> Deref for MultimapTable<'t, K, V> {
    type Target = redb::MultimapTable<'t, K, V>;
    fn deref(&self) -> &Self::Target {
        &self.table
    }
}

impl<K: Key + 'static, V: Key + 'static> MultimapTable<'_, K, V> {
    pub fn insert<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<bool, StorageError> {
        note_key::<K>(&self.note, key.borrow());
        self.table.insert(key, value)
    }

    pub fn remove<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<bool, StorageError> {
        note_key::<K>(&self.note, key.borrow());
        self.table.remove(key, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_table_absorbs_its_keys_and_a_bypass_absorbs_everything() {
        let mut a = Changes::default();
        a.key("t", b"1");
        a.key("u", b"1");
        let mut b = Changes::default();
        b.key("t", b"2");
        b.whole("u");
        b.key("v", b"9");
        a.merge(b);
        assert_eq!(a.tables["t"].as_ref().map(|k| k.len()), Some(2));
        assert!(a.tables["u"].is_none(), "u is copied whole");
        let mut c = Changes::default();
        c.key("u", b"3");
        a.merge(c);
        assert!(
            a.tables["u"].is_none(),
            "a later key does not shrink it back"
        );
        assert_eq!(a.tables["v"].as_ref().map(|k| k.len()), Some(1));
        assert!(!a.everything);
        a.merge(Changes {
            everything: true,
            ..Default::default()
        });
        assert!(a.everything);
    }
}
