//! Live backup and restore of the whole store.
//!
//! A backup copies every table inside one read transaction (redb's readers
//! see one commit and never block the writer), into a new store file
//! written beside the target, synced, then renamed into place: the file at
//! the target is always either the old one or a complete backup. It is a
//! store like any other: `leadgate audit verify --store FILE` reads it.
//!
//! The copy commits, and so syncs, its file every 4 MiB ([`CHUNK`]) rather
//! than once at the end: on ext4 a sync of the store (every durable write)
//! waits for the data the journal's next commit covers, which included the
//! whole unsynced copy, and one such write waited up to half a second
//! while a 700 MiB store was backed up (BENCHMARKS.md).
//!
//! A restore (daemon stopped) checks the backup first (schema version, the
//! audit chain), keeps the current store as `<path>.bak`, and puts a synced
//! copy of the backup in place.

use std::{
    fs::File,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::Instant,
};

use redb::{
    Database, Key, MultimapTableDefinition, MultimapTableHandle, ReadTransaction,
    ReadableMultimapTable, ReadableTable, TableDefinition, TableError, TableHandle, Value,
    WriteTransaction,
};

use super::{
    audit,
    schema::{self, each_table, EachTable, META},
    Store, StoreError,
};

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    /// Rows copied, over all tables.
    pub rows: u64,
    pub bytes: u64,
    /// The audit chain's last sequence number and hash in the backup
    /// (`None` for a store without events).
    pub audit_head: Option<(u64, String)>,
    pub millis: u64,
}

impl std::fmt::Display for BackupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backup written to {}: {} rows, {} bytes in {} ms; audit head ",
            self.path.display(),
            self.rows,
            self.bytes,
            self.millis
        )?;
        match &self.audit_head {
            Some((seq, hash)) => write!(f, "seq {seq} hash {hash}"),
            None => f.write_str("empty"),
        }
    }
}

/// A copy's bytes between two commits (each synced) of the file it
/// writes: small, so that the copy never has much unsynced data. A sync of
/// the store's own file (every durable write) waits for the data of every
/// file whose new blocks the ext4 journal is about to commit, so a copy
/// that writes its whole file and syncs it at the end makes one durable
/// write wait for hundreds of megabytes; this way it waits for at most
/// one chunk (4 MiB, ~25 ms at 150 MB/s).
const CHUNK: u64 = 4 << 20;

/// The cache of a backup's database: it only writes, in key order.
const BACKUP_CACHE: usize = 16 << 20;

/// Copies every table of a snapshot into a new database, committing (and
/// so syncing) every [`CHUNK`] bytes; see [`copy_snapshot`].
struct Copier<'a> {
    from: &'a ReadTransaction,
    db: &'a Database,
    stop: &'a AtomicBool,
    txn: Option<WriteTransaction>,
    unsynced: u64,
    rows: u64,
    copied: Vec<String>,
}

fn open(txn: &Option<WriteTransaction>) -> Result<&WriteTransaction, StoreError> {
    txn.as_ref()
        .ok_or_else(|| StoreError::corrupt("copy", "no transaction open"))
}

impl Copier<'_> {
    /// Commits what was copied so far, durably, and opens the next
    /// transaction.
    fn commit_chunk(&mut self) -> Result<(), StoreError> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(StoreError::corrupt(
                "copy",
                "stopped (the store is closing)",
            ));
        }
        if let Some(txn) = self.txn.take() {
            txn.commit()?;
        }
        self.txn = Some(self.db.begin_write()?);
        self.unsynced = 0;
        Ok(())
    }
}

impl EachTable for Copier<'_> {
    fn table<K: Key + 'static, V: Value + 'static>(
        &mut self,
        def: TableDefinition<K, V>,
    ) -> Result<(), StoreError> {
        self.copied.push(def.name().to_owned());
        let src = match self.from.open_table(def) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut rows = src.iter()?;
        loop {
            let mut dst = open(&self.txn)?.open_table(def)?;
            let mut chunk = 0u64;
            let mut n = 0u64;
            let mut more = false;
            for row in rows.by_ref() {
                let (k, v) = row?;
                let (k, v) = (k.value(), v.value());
                chunk += (K::as_bytes(&k).as_ref().len() + V::as_bytes(&v).as_ref().len()) as u64;
                dst.insert(k, v)?;
                n += 1;
                if self.unsynced + chunk >= CHUNK {
                    more = true;
                    break;
                }
            }
            drop(dst);
            self.unsynced += chunk;
            self.rows += n;
            if !more {
                return Ok(());
            }
            self.commit_chunk()?;
        }
    }

    fn multimap<K: Key + 'static, V: Key + 'static>(
        &mut self,
        def: MultimapTableDefinition<K, V>,
    ) -> Result<(), StoreError> {
        self.copied.push(def.name().to_owned());
        let src = match self.from.open_multimap_table(def) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for row in src.iter()? {
            let (k, values) = row?;
            let mut dst = open(&self.txn)?.open_multimap_table(def)?;
            for v in values {
                let v = v?;
                let (k, v) = (k.value(), v.value());
                self.unsynced +=
                    (K::as_bytes(&k).as_ref().len() + V::as_bytes(&v).as_ref().len()) as u64;
                dst.insert(k, v)?;
                self.rows += 1;
            }
            drop(dst);
            if self.unsynced >= CHUNK {
                self.commit_chunk()?;
            }
        }
        Ok(())
    }
}

/// Copies the snapshot `from` into a new store file at `tmp`, lets `edit`
/// change the copy in its last transaction, commits it and syncs the file.
/// The copy commits every [`CHUNK`] as it goes, so its file never holds
/// much unsynced data; only the file as a whole, once renamed, is a
/// backup. Fails on a table this version does not know (a backup never
/// silently leaves data behind). Returns the copy, open with a cache of
/// `cache` bytes, and the rows copied; on an error `tmp` may be left
/// behind for the caller to remove.
pub(super) fn copy_snapshot(
    from: &ReadTransaction,
    tmp: &Path,
    cache: usize,
    stop: &AtomicBool,
    edit: impl FnOnce(&WriteTransaction) -> Result<(), StoreError>,
) -> Result<(Database, u64), StoreError> {
    let db = Database::builder()
        .set_cache_size(cache)
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .create(tmp)
        .map_err(|source| StoreError::Open {
            path: tmp.display().to_string(),
            source,
        })?;
    let mut copier = Copier {
        from,
        db: &db,
        stop,
        txn: Some(db.begin_write()?),
        unsynced: 0,
        rows: 0,
        copied: Vec::new(),
    };
    each_table(&mut copier)?;
    let unknown: Vec<String> = from
        .list_tables()?
        .map(|t| t.name().to_owned())
        .chain(from.list_multimap_tables()?.map(|t| t.name().to_owned()))
        .filter(|name| !copier.copied.contains(name))
        .collect();
    if !unknown.is_empty() {
        return Err(StoreError::corrupt(
            "backup",
            format!("tables this version does not know: {}", unknown.join(", ")),
        ));
    }
    let rows = copier.rows;
    let to = copier
        .txn
        .take()
        .ok_or_else(|| StoreError::corrupt("copy", "no transaction open"))?;
    drop(copier);
    edit(&to)?;
    to.commit()?;
    File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("sync", tmp, e))?;
    Ok((db, rows))
}

/// Syncs the directory that holds `path`, so a rename in it is durable.
pub(super) fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::corrupt(format!("{what} {}", path.display()), e)
}

/// A file beside `path` for writing before the rename.
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

impl Store {
    /// Writes a consistent snapshot of the whole store to `path` (see the
    /// module docs). Runs on the calling thread; the writer goes on.
    pub fn backup_to(&self, path: &Path) -> Result<BackupReport, StoreError> {
        let started = Instant::now();
        let tmp = temporary(path);
        let _ = std::fs::remove_file(&tmp);
        let result = (|| -> Result<(u64, Option<(u64, String)>), StoreError> {
            let (rows, head) =
                self.read(|from| {
                    let (db, rows) =
                        copy_snapshot(from, &tmp, BACKUP_CACHE, &AtomicBool::new(false), |_| {
                            Ok(())
                        })?;
                    drop(db);
                    Ok((rows, audit::head_in(from)?))
                })?;
            std::fs::rename(&tmp, path).map_err(|e| io("rename to", path, e))?;
            sync_dir(path).map_err(|e| io("sync the directory of", path, e))?;
            Ok((rows, head))
        })();
        let (rows, audit_head) = result.inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        Ok(BackupReport {
            path: path.to_owned(),
            rows,
            bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            audit_head,
            millis: started.elapsed().as_millis() as u64,
        })
    }

    /// The schema version written in the store.
    pub fn schema_version(&self) -> Result<Option<u64>, StoreError> {
        self.read(|txn| match txn.open_table(META) {
            Ok(meta) => schema::meta_u64(&meta, "schema_version"),
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        })
    }
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    pub events: u64,
    pub audit_head: Option<(u64, String)>,
    /// Where the store that was replaced is kept (`None`: there was none).
    pub kept: Option<PathBuf>,
}

/// Puts the backup `from` in place of the store at `target` (the daemon
/// must be stopped: the target is opened for writing first, which fails
/// while a daemon holds it). Checks the backup before touching anything.
pub fn restore(from: &Path, target: &Path) -> Result<RestoreReport, StoreError> {
    let backup = Store::open_read_only(from)?;
    match backup.schema_version()? {
        Some(schema::SCHEMA_VERSION) => {}
        other => {
            return Err(StoreError::corrupt(
                format!("backup {}", from.display()),
                format!(
                    "schema version {other:?}, this leadgate reads {}",
                    schema::SCHEMA_VERSION
                ),
            ))
        }
    }
    let report = backup.audit_verify()?;
    if let Some((seq, what)) = report.first_bad {
        return Err(StoreError::corrupt(
            format!("backup {}", from.display()),
            format!("audit log broken at seq {seq}: {what}"),
        ));
    }
    let audit_head = backup.read(audit::head_in)?;
    drop(backup);
    let kept = if target.exists() {
        // Fails while the daemon has it open.
        let current = Store::open(target)?;
        current.close();
        drop(current);
        let mut bak = target.as_os_str().to_owned();
        bak.push(".bak");
        let bak = PathBuf::from(bak);
        std::fs::rename(target, &bak).map_err(|e| io("rename", target, e))?;
        Some(bak)
    } else {
        None
    };
    let tmp = temporary(target);
    std::fs::copy(from, &tmp).map_err(|e| io("copy to", &tmp, e))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("sync", &tmp, e))?;
    std::fs::rename(&tmp, target).map_err(|e| io("rename to", target, e))?;
    sync_dir(target).map_err(|e| io("sync the directory of", target, e))?;
    Ok(RestoreReport {
        events: report.events,
        audit_head,
        kept,
    })
}
