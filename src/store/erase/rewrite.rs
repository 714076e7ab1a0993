//! Step 4 of an erasure: the store file rewritten, so that freed pages no
//! longer hold what was erased. While the daemon runs, this happens beside
//! the writer, which goes on taking writes:
//!
//! 1. **Snapshot** ([`Rewrite::start`], on the writer thread, after the
//!    erasure's commit): a read transaction sees every commit so far; from
//!    now on the writer notes the rows each commit changes
//!    (`changes::Changes`).
//! 2. **Copy**, on a thread of its own: the snapshot's live data goes into a
//!    fresh file beside the store, in synced chunks (`backup::copy_snapshot`),
//!    without the erasure's `rewrite_pending` mark. Writes go on meanwhile.
//! 3. **Catch up** ([`Rewrite::finish`], on the writer thread, so nothing
//!    is written meanwhile): every row noted since the snapshot is copied
//!    into the fresh file as it is now (or removed there, if it is gone),
//!    in one synced commit; the fresh file now equals the store. It is
//!    renamed over the store, the directory synced, and the fresh database
//!    put in the slot the store reads and writes through. Only this step
//!    holds the writer: its time grows with the writes made during the
//!    copy, not with the store.
//!
//! Nothing the copy or the catch-up writes can hold what was erased: the
//! snapshot is taken after the erasure, and the catch-up copies rows as
//! they are after it. Reads that began before the swap finish on the old
//! file. If the process stops before the rename, the old file still has
//! `rewrite_pending` set and the next `Store::open` rewrites it
//! ([`rewrite_now`]) before anything else; the half-written copy is a
//! stray `.rewrite-PID` file, overwritten by the next rewrite of that
//! process id or left for the admin.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Instant,
};

use redb::{
    Database, Key, MultimapTableDefinition, MultimapTableHandle, ReadTransaction, ReadableDatabase,
    ReadableMultimapTable, ReadableTable, TableDefinition, TableError, TableHandle, Value,
    WriteTransaction,
};

use super::{RewriteReport, REWRITE_PENDING_KEY};
use crate::store::{
    backup,
    changes::Changes,
    schema::{each_table, EachTable, META},
    DbSlot, StoreError, CACHE_SIZE,
};

fn current(slot: &DbSlot) -> Result<Arc<Database>, StoreError> {
    slot.read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or(StoreError::WriterGone)
}

/// The file a rewrite writes beside `path` before its rename.
fn fresh_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".rewrite-{}", std::process::id()));
    path.with_file_name(name)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Copies the snapshot into the fresh file (step 2), without the
/// erasure's mark.
fn copy(from: &ReadTransaction, fresh: &Path, stop: &AtomicBool) -> Result<Database, StoreError> {
    let (db, _) = backup::copy_snapshot(from, fresh, CACHE_SIZE, stop, |to| {
        to.open_table(META)?.remove(REWRITE_PENDING_KEY)?;
        Ok(())
    })?;
    Ok(db)
}

/// Renames the fresh file over the store and serves from it.
fn swap(slot: &DbSlot, fresh: Database, fresh_path: &Path, path: &Path) -> Result<(), StoreError> {
    std::fs::rename(fresh_path, path)
        .map_err(|e| StoreError::corrupt(format!("rename to {}", path.display()), e))?;
    backup::sync_dir(path)
        .map_err(|e| StoreError::corrupt(format!("sync the directory of {}", path.display()), e))?;
    // The fresh database keeps its handle on the renamed file.
    let old = slot
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .replace(Arc::new(fresh));
    // Closing the old database writes its allocator state (into the old
    // file, now unlinked) and syncs it: ~150 ms at 1 GiB, which the
    // writer need not wait for.
    let _ = std::thread::Builder::new()
        .name("store-close-old".into())
        .spawn(move || drop(old));
    Ok(())
}

/// The whole rewrite at once, for `Store::open` (no writer runs yet):
/// copy, swap.
pub(in crate::store) fn rewrite_now(
    slot: &DbSlot,
    path: &Path,
) -> Result<RewriteReport, StoreError> {
    let started = Instant::now();
    let old = current(slot)?;
    let bytes_before = file_len(path);
    let fresh_path = fresh_path(path);
    let _ = std::fs::remove_file(&fresh_path);
    let result = (|| {
        let fresh = copy(&old.begin_read()?, &fresh_path, &AtomicBool::new(false))?;
        swap(slot, fresh, &fresh_path, path)
    })();
    result.inspect_err(|_| {
        let _ = std::fs::remove_file(&fresh_path);
    })?;
    Ok(RewriteReport {
        bytes_before,
        bytes_after: file_len(path),
        caught_up: 0,
        millis: started.elapsed().as_millis() as u64,
        writer_millis: started.elapsed().as_millis() as u64,
    })
}

/// A rewrite under way beside the writer (see the module docs).
pub(in crate::store) struct Rewrite {
    changes: Changes,
    copier: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    fresh_path: PathBuf,
    started: Instant,
    bytes_before: u64,
}

impl Rewrite {
    /// Step 1 (on the writer thread): takes the snapshot and starts the
    /// copy, which hands the fresh database to `done` when it ends.
    pub(in crate::store) fn start(
        slot: &DbSlot,
        path: &Path,
        done: impl FnOnce(Result<Database, StoreError>) + Send + 'static,
    ) -> Result<Rewrite, StoreError> {
        let started = Instant::now();
        let from = current(slot)?.begin_read()?;
        let fresh_path = fresh_path(path);
        let _ = std::fs::remove_file(&fresh_path);
        let stop = Arc::new(AtomicBool::new(false));
        let copier = {
            let (fresh_path, stop) = (fresh_path.clone(), stop.clone());
            std::thread::Builder::new()
                .name("store-rewrite".into())
                .spawn(move || {
                    let result = copy(&from, &fresh_path, &stop);
                    drop(from);
                    if result.is_err() {
                        let _ = std::fs::remove_file(&fresh_path);
                    }
                    done(result);
                })
                .map_err(|e| StoreError::corrupt("rewrite", e))?
        };
        Ok(Rewrite {
            changes: Changes::default(),
            copier: Some(copier),
            stop,
            fresh_path,
            started,
            bytes_before: file_len(path),
        })
    }

    /// What a commit after the snapshot changed.
    pub(in crate::store) fn note(&mut self, changes: Changes) {
        self.changes.merge(changes);
    }

    /// Step 3 (on the writer thread), once the copy is done: the rows
    /// changed since the snapshot, then the swap.
    pub(in crate::store) fn finish(
        mut self,
        copied: Result<Database, StoreError>,
        slot: &DbSlot,
        path: &Path,
    ) -> Result<RewriteReport, StoreError> {
        if let Some(t) = self.copier.take() {
            let _ = t.join();
        }
        let held = Instant::now();
        let result = copied.and_then(|fresh| {
            let rows = catch_up(&current(slot)?.begin_read()?, &fresh, &self.changes)?;
            swap(slot, fresh, &self.fresh_path, path)?;
            Ok(rows)
        });
        let caught_up = result.inspect_err(|_| {
            let _ = std::fs::remove_file(&self.fresh_path);
        })?;
        Ok(RewriteReport {
            bytes_before: self.bytes_before,
            bytes_after: file_len(path),
            caught_up,
            millis: self.started.elapsed().as_millis() as u64,
            writer_millis: held.elapsed().as_millis() as u64,
        })
    }

    /// Stops the copy and removes its file (the store is closing; the
    /// erasure's mark stays, so the next open rewrites the file).
    pub(in crate::store) fn abandon(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.copier.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.fresh_path);
    }
}

/// Copies the rows noted in `changes` from `from` (the store now) into
/// `fresh`, in one durable commit; returns how many rows it wrote.
fn catch_up(
    from: &ReadTransaction,
    fresh: &Database,
    changes: &Changes,
) -> Result<u64, StoreError> {
    let to = fresh.begin_write()?;
    let mut each = CatchUp {
        from,
        to: &to,
        changes,
        rows: 0,
    };
    each_table(&mut each)?;
    let rows = each.rows;
    to.commit()?;
    Ok(rows)
}

struct CatchUp<'a> {
    from: &'a ReadTransaction,
    to: &'a WriteTransaction,
    changes: &'a Changes,
    rows: u64,
}

/// What to bring over of one table: nothing, the noted keys, or all of it
/// (`Some(None)`).
type Noted<'a> = Option<Option<&'a std::collections::BTreeSet<Vec<u8>>>>;

impl<'a> CatchUp<'a> {
    fn noted(&self, name: &str) -> Noted<'a> {
        if self.changes.everything {
            return Some(None);
        }
        self.changes.tables.get(name).map(Option::as_ref)
    }
}

impl EachTable for CatchUp<'_> {
    fn table<K: Key + 'static, V: Value + 'static>(
        &mut self,
        def: TableDefinition<K, V>,
    ) -> Result<(), StoreError> {
        let Some(keys) = self.noted(def.name()) else {
            return Ok(());
        };
        let src = match self.from.open_table(def) {
            Ok(t) => Some(t),
            Err(TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let Some(keys) = keys else {
            self.to.delete_table(def)?;
            let mut dst = self.to.open_table(def)?;
            if let Some(src) = src {
                for row in src.iter()? {
                    let (k, v) = row?;
                    dst.insert(k.value(), v.value())?;
                    self.rows += 1;
                }
            }
            return Ok(());
        };
        let mut dst = self.to.open_table(def)?;
        for key in keys {
            let now = match &src {
                Some(src) => src.get(K::from_bytes(key))?,
                None => None,
            };
            match now {
                Some(v) => dst.insert(K::from_bytes(key), v.value())?,
                None => dst.remove(K::from_bytes(key))?,
            };
            self.rows += 1;
        }
        Ok(())
    }

    fn multimap<K: Key + 'static, V: Key + 'static>(
        &mut self,
        def: MultimapTableDefinition<K, V>,
    ) -> Result<(), StoreError> {
        let Some(keys) = self.noted(def.name()) else {
            return Ok(());
        };
        let src = match self.from.open_multimap_table(def) {
            Ok(t) => Some(t),
            Err(TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let Some(keys) = keys else {
            self.to.delete_multimap_table(def)?;
            let mut dst = self.to.open_multimap_table(def)?;
            if let Some(src) = src {
                for row in src.iter()? {
                    let (k, values) = row?;
                    for v in values {
                        dst.insert(k.value(), v?.value())?;
                        self.rows += 1;
                    }
                }
            }
            return Ok(());
        };
        let mut dst = self.to.open_multimap_table(def)?;
        for key in keys {
            dst.remove_all(K::from_bytes(key))?;
            self.rows += 1;
            if let Some(src) = &src {
                for v in src.get(K::from_bytes(key))? {
                    dst.insert(K::from_bytes(key), v?.value())?;
                }
            }
        }
        Ok(())
    }
}
