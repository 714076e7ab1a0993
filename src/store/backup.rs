//! Live backup and restore of the whole store.
//!
//! A backup copies every table inside one read transaction (redb's readers
//! see one commit and never block the writer), into a new store file
//! written beside the target, synced, then renamed into place: the file at
//! the target is always either the old one or a complete backup. It is a
//! store like any other: `leadgate audit verify --store FILE` reads it.
//!
//! A restore (daemon stopped) checks the backup first (schema version, the
//! audit chain), keeps the current store as `<path>.bak`, and puts a synced
//! copy of the backup in place.

use std::{
    fs::File,
    path::{Path, PathBuf},
    time::Instant,
};

use redb::{
    Database, Key, MultimapTableDefinition, MultimapTableHandle, ReadTransaction,
    ReadableMultimapTable, ReadableTable, TableDefinition, TableError, TableHandle, Value,
    WriteTransaction,
};

use super::{
    audit,
    schema::{self, *},
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

fn copy_table<K: Key + 'static, V: Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    def: TableDefinition<K, V>,
    copied: &mut Vec<String>,
) -> Result<u64, StoreError> {
    copied.push(def.name().to_owned());
    let src = match from.open_table(def) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut dst = to.open_table(def)?;
    let mut n = 0;
    for row in src.iter()? {
        let (k, v) = row?;
        dst.insert(k.value(), v.value())?;
        n += 1;
    }
    Ok(n)
}

fn copy_multimap<K: Key + 'static, V: Key + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    def: MultimapTableDefinition<K, V>,
    copied: &mut Vec<String>,
) -> Result<u64, StoreError> {
    copied.push(def.name().to_owned());
    let src = match from.open_multimap_table(def) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut dst = to.open_multimap_table(def)?;
    let mut n = 0;
    for row in src.iter()? {
        let (k, values) = row?;
        for v in values {
            dst.insert(k.value(), v?.value())?;
            n += 1;
        }
    }
    Ok(n)
}

/// Copies every table of `from` into `to`; fails on a table it does not
/// know (a backup never silently leaves data behind).
pub(super) fn copy_all(from: &ReadTransaction, to: &WriteTransaction) -> Result<u64, StoreError> {
    let mut c = Vec::new();
    let mut rows = 0;
    rows += copy_table(from, to, META, &mut c)?;
    rows += copy_table(from, to, USERS, &mut c)?;
    rows += copy_table(from, to, MAILBOXES, &mut c)?;
    rows += copy_table(from, to, MESSAGES, &mut c)?;
    rows += copy_table(from, to, HEADERS, &mut c)?;
    rows += copy_table(from, to, BODIES, &mut c)?;
    rows += copy_table(from, to, LEADS, &mut c)?;
    rows += copy_table(from, to, THREAD_IDS, &mut c)?;
    rows += copy_multimap(from, to, THREAD_SUBJECTS, &mut c)?;
    rows += copy_table(from, to, MESSAGE_LEADS, &mut c)?;
    rows += copy_table(from, to, DOMAIN_OWNERS, &mut c)?;
    rows += copy_table(from, to, AUDIT, &mut c)?;
    rows += copy_table(from, to, AUDIT_BY_LEAD, &mut c)?;
    rows += copy_table(from, to, VIEWS, &mut c)?;
    rows += copy_table(from, to, VIEW_UIDS, &mut c)?;
    rows += copy_table(from, to, SUPPORT_FORWARDS, &mut c)?;
    rows += copy_table(from, to, SENT_SUBMISSIONS, &mut c)?;
    rows += copy_table(from, to, SENT_COPIES, &mut c)?;
    rows += copy_table(from, to, NOTICES, &mut c)?;
    rows += copy_table(from, to, MESSAGE_MARKS, &mut c)?;
    rows += copy_table(from, to, HELD, &mut c)?;
    rows += copy_table(from, to, HELD_BODIES, &mut c)?;
    rows += copy_table(from, to, SEEN, &mut c)?;
    rows += copy_table(from, to, OUTBOX, &mut c)?;
    rows += copy_table(from, to, OUTBOX_BODIES, &mut c)?;
    rows += copy_table(from, to, UNSUBSCRIBED, &mut c)?;
    rows += copy_table(from, to, ERASED_MESSAGES, &mut c)?;
    rows += copy_table(from, to, MODSEQ_HEADS, &mut c)?;
    rows += copy_table(from, to, MODSEQ_ROWS, &mut c)?;
    let unknown: Vec<String> = from
        .list_tables()?
        .map(|t| t.name().to_owned())
        .chain(from.list_multimap_tables()?.map(|t| t.name().to_owned()))
        .filter(|name| !c.contains(name))
        .collect();
    if !unknown.is_empty() {
        return Err(StoreError::corrupt(
            "backup",
            format!("tables this version does not know: {}", unknown.join(", ")),
        ));
    }
    Ok(rows)
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
            let db = Database::create(&tmp).map_err(|source| StoreError::Open {
                path: tmp.display().to_string(),
                source,
            })?;
            let (rows, head) = self.read(|from| {
                let to = db.begin_write()?;
                let rows = copy_all(from, &to)?;
                to.commit()?;
                let head = audit::head_in(from)?;
                Ok((rows, head))
            })?;
            drop(db);
            File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| io("sync", &tmp, e))?;
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
