//! The redb store. Every table is defined in `schema` and created at open;
//! all writes go through one writer thread that batches jobs into a single
//! transaction per commit. A batch whose job fails is rolled back and its
//! jobs are retried one by one, so one bad job never takes others with it.
//!
//! The daemon opens the file as its one writer (`ConcurrencyMode::SingleWriter`);
//! any number of other processes (the `audit` and `user list` commands) may
//! open it at the same time with `Store::open_read_only` and see its commits.

pub mod audit;
pub mod backup;
mod changes;
pub mod codec;
pub mod config;
pub mod erase;
pub mod held;
pub mod leads;
pub mod messages;
pub mod modseq;
pub mod notices;
pub mod outbox;
pub mod retention;
pub mod schema;
pub mod seen;
pub mod sent;
pub mod subscriptions;
mod tx;
pub mod users;
pub mod views;

pub use changes::WriteTxn;
pub use tx::Tx;

use std::{path::Path, sync::Arc};

use redb::{
    ConcurrencyMode, Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase,
    WriteTransaction,
};
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open store {path}: {source}")]
    Open {
        path: String,
        source: redb::DatabaseError,
    },
    #[error("store transaction: {0}")]
    Transaction(#[from] redb::TransactionError),
    #[error("store table: {0}")]
    Table(#[from] redb::TableError),
    #[error("store I/O: {0}")]
    Storage(#[from] redb::StorageError),
    #[error("store commit: {0}")]
    Commit(#[from] redb::CommitError),
    #[error("store record {what} is corrupt: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("store writer has stopped")]
    WriterGone,
    #[error(
        "store {path} is open read-only: changes go through the process that opened it for writing"
    )]
    ReadOnly { path: String },
}

impl StoreError {
    pub fn corrupt(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        StoreError::Corrupt {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

/// A write job: `run` may be called twice (batched, then alone after a
/// rollback); `finish` delivers the outcome once the commit is known.
trait WriteJob: Send {
    fn run(&mut self, txn: &WriteTxn) -> Result<(), StoreError>;
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
    /// Whether the job needs its commit on disk before it hears back
    /// (a batch of only jobs that do not is committed without an fsync).
    fn durable(&self) -> bool;
}

struct TypedJob<F, R> {
    f: F,
    out: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
    durable: bool,
}

impl<F, R> WriteJob for TypedJob<F, R>
where
    F: FnMut(&WriteTxn) -> Result<R, StoreError> + Send,
    R: Send,
{
    fn run(&mut self, txn: &WriteTxn) -> Result<(), StoreError> {
        match (self.f)(txn) {
            Ok(r) => {
                self.out = Some(Ok(r));
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                self.out = Some(Err(e));
                Err(StoreError::corrupt("job", msg))
            }
        }
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let result = match (commit, self.out) {
            (Ok(()), Some(out)) => out,
            (Err(e), _) => Err(e),
            (Ok(()), None) => Err(StoreError::WriterGone),
        };
        let _ = self.reply.send(result);
    }

    fn durable(&self) -> bool {
        self.durable
    }
}

/// The page cache of the open store.
const CACHE_SIZE: usize = 256 << 20;

/// How many queued jobs one commit may carry.
const MAX_BATCH: usize = 4096;

/// Who waits for a rewrite of the file.
type RewriteReply = oneshot::Sender<Result<erase::RewriteReport, StoreError>>;

/// What the writer thread receives.
enum Msg {
    Job(Box<dyn WriteJob>),
    /// Put a fresh copy of the live data in place of the store, taken
    /// after the jobs queued before (`erase::Rewrite`); `back` is where the
    /// copy, which runs beside the writer, says it is done.
    Rewrite {
        reply: RewriteReply,
        back: std::sync::mpsc::Sender<Msg>,
    },
    /// The copy of a rewrite is done (or failed).
    Copied(Result<Database, StoreError>),
    /// Finish what is queued, then let go of the database.
    Close,
}

/// The writable database, shared by the handles (for reads) and the
/// writer thread; replaced as a whole when the file is rewritten.
type DbSlot = Arc<std::sync::RwLock<Option<Arc<Database>>>>;

/// The open file: the one writable handle (with the writer thread), or a
/// read-only handle beside it.
enum Db {
    Writable {
        /// `None` once closed; taken so the database is dropped (and the
        /// file closed cleanly) exactly when `close` says.
        db: DbSlot,
        thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    },
    ReadOnly(ReadOnlyDatabase),
}

impl Db {
    fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        match self {
            Db::Writable { db, .. } => match &*db.read().unwrap_or_else(|e| e.into_inner()) {
                Some(db) => Ok(db.begin_read()?),
                None => Err(StoreError::WriterGone),
            },
            Db::ReadOnly(db) => Ok(db.begin_read()?),
        }
    }
}

impl Drop for Db {
    /// The last handle is gone: wait for the writer thread to finish its
    /// queue (its channel is closed by now) so the file closes cleanly.
    fn drop(&mut self) {
        if let Db::Writable { thread, .. } = self {
            if let Some(t) = thread.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = t.join();
            }
        }
    }
}

#[derive(Clone)]
pub struct Store {
    /// `None` for a read-only store. Declared before `db` so that the last
    /// handle closes the channel before `Db::drop` waits for the thread.
    writer: Option<std::sync::mpsc::Sender<Msg>>,
    db: Arc<Db>,
    path: Arc<str>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (or creates) the store, creates every table, and starts the
    /// writer thread. Fails if another process has it open for writing;
    /// read-only processes (`open_read_only`) may share it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                let _ = std::fs::create_dir_all(dir);
            }
        }
        let db = Database::builder()
            .set_cache_size(CACHE_SIZE)
            .set_concurrency_mode(ConcurrencyMode::SingleWriter)
            .create(path)
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        let txn = WriteTxn::new(db.begin_write()?, false);
        schema::create_all(&txn)?;
        let indexed = audit::index_by_lead(&txn)?;
        txn.commit()?;
        if indexed > 0 {
            tracing::info!(events = indexed, "audit: indexed by lead");
        }
        let slot: DbSlot = Arc::new(std::sync::RwLock::new(Some(Arc::new(db))));
        // An erasure whose rewrite did not happen (the process stopped in
        // between) is finished before anything else.
        let pending = {
            let guard = slot.read().unwrap_or_else(|e| e.into_inner());
            guard.as_deref().map(erase::rewrite_pending).transpose()?
        };
        if pending == Some(true) {
            erase::rewrite_now(&slot, path)?;
        }
        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        let wslot = slot.clone();
        let wpath = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(wslot, wpath, rx))
            .expect("spawn store writer thread");
        Ok(Store {
            db: Arc::new(Db::Writable {
                db: slot,
                thread: std::sync::Mutex::new(Some(thread)),
            }),
            writer: Some(tx),
            path: path.display().to_string().into(),
        })
    }

    /// Commits what is queued, stops the writer and closes the file
    /// cleanly; later reads and writes fail. For the end of `serve`, where
    /// tasks still hold handles when the process exits.
    pub fn close(&self) {
        let Db::Writable { db, thread } = &*self.db else {
            return;
        };
        if let Some(w) = &self.writer {
            let _ = w.send(Msg::Close);
        }
        if let Some(t) = thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
        db.write().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Opens an existing store for reading only, beside the process that
    /// may have it open for writing (the running daemon); every read sees
    /// that writer's latest commit. Writes fail with `StoreError::ReadOnly`.
    /// Tables the file does not have yet (a store last opened by an older
    /// version) make reads of them fail with `TableDoesNotExist`.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let db = Database::builder()
            .set_cache_size(64 * 1024 * 1024)
            .set_concurrency_mode(ConcurrencyMode::SingleWriter)
            .open_read_only(path)
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Store {
            db: Arc::new(Db::ReadOnly(db)),
            writer: None,
            path: path.display().to_string().into(),
        })
    }

    /// Whether this handle can write (false after `open_read_only`).
    pub fn is_writable(&self) -> bool {
        self.writer.is_some()
    }

    /// A read in the calling thread. Async callers with more than a few
    /// lookups to do should use `read_async`.
    pub(in crate::store) fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_read()?;
        f(&txn)
    }

    pub(in crate::store) async fn read_async<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read(f))
            .await
            .map_err(|_| StoreError::WriterGone)?
    }

    fn submit<R: Send + 'static>(
        &self,
        f: impl FnMut(&WriteTxn) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<oneshot::Receiver<Result<R, StoreError>>, StoreError> {
        self.submit_as(f, true)
    }

    fn submit_as<R: Send + 'static>(
        &self,
        f: impl FnMut(&WriteTxn) -> Result<R, StoreError> + Send + 'static,
        durable: bool,
    ) -> Result<oneshot::Receiver<Result<R, StoreError>>, StoreError> {
        let writer = self.writer.as_ref().ok_or_else(|| StoreError::ReadOnly {
            path: self.path.to_string(),
        })?;
        let (reply, rx) = oneshot::channel();
        let job = TypedJob {
            f,
            out: None,
            reply,
            durable,
        };
        writer
            .send(Msg::Job(Box::new(job)))
            .map_err(|_| StoreError::WriterGone)?;
        Ok(rx)
    }

    /// Runs `f` in a write transaction on the writer thread and resolves
    /// once that transaction is durably committed.
    pub(in crate::store) async fn write<R: Send + 'static>(
        &self,
        f: impl FnMut(&WriteTxn) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.submit(f)?.await.map_err(|_| StoreError::WriterGone)?
    }

    /// `write`, resolved once committed but before the commit is on disk:
    /// a crash may lose it, and the next durable commit keeps it (redb's
    /// `Durability::None`). For marks whose loss changes no outcome.
    pub(in crate::store) async fn write_lazy<R: Send + 'static>(
        &self,
        f: impl FnMut(&WriteTxn) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.submit_as(f, false)?
            .await
            .map_err(|_| StoreError::WriterGone)?
    }

    /// Has the writer thread put a fresh copy of the live data in place of
    /// the file, after every write queued before (see `erase::Rewrite`);
    /// writes go on meanwhile but for a short catch-up at the end.
    pub(in crate::store) async fn rewrite_file(&self) -> Result<erase::RewriteReport, StoreError> {
        let writer = self.writer.as_ref().ok_or_else(|| StoreError::ReadOnly {
            path: self.path.to_string(),
        })?;
        let (reply, rx) = oneshot::channel();
        writer
            .send(Msg::Rewrite {
                reply,
                back: writer.clone(),
            })
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// `write` for synchronous callers (the CLI).
    pub(in crate::store) fn write_blocking<R: Send + 'static>(
        &self,
        f: impl FnMut(&WriteTxn) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.submit(f)?
            .blocking_recv()
            .map_err(|_| StoreError::WriterGone)?
    }
}

impl Store {
    /// Raw write access for integration tests that play someone editing
    /// the file under the chain. `scripts/check-layout` forbids it in src/.
    /// Its changes are not noted (see `changes`): a rewrite under way
    /// copies the whole store again at its end.
    #[doc(hidden)]
    pub fn raw_write_blocking<R: Send + 'static>(
        &self,
        mut f: impl FnMut(&WriteTransaction) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.write_blocking(move |txn| f(txn.untracked()))
    }

    /// Raw read access for the same tests.
    #[doc(hidden)]
    pub fn raw_read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.read(f)
    }
}

/// The rewrite the writer thread is running, and who waits for it and
/// for the next one.
#[derive(Default)]
struct Rewrites {
    running: Option<(erase::Rewrite, Vec<RewriteReply>)>,
    /// Asked for while one ran: they need a snapshot after their own
    /// erasure, so they get the next rewrite.
    next: Vec<RewriteReply>,
    /// Where the copy of the next rewrite reports.
    back: Option<std::sync::mpsc::Sender<Msg>>,
}

impl Rewrites {
    fn start(&mut self, slot: &DbSlot, path: &std::path::Path, replies: Vec<RewriteReply>) {
        let Some(back) = self.back.clone() else {
            return;
        };
        let done = move |copied| {
            let _ = back.send(Msg::Copied(copied));
        };
        match erase::Rewrite::start(slot, path, done) {
            Ok(r) => self.running = Some((r, replies)),
            Err(e) => {
                let msg = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::corrupt("rewrite", &msg)));
                }
            }
        }
    }

    fn ask(
        &mut self,
        slot: &DbSlot,
        path: &std::path::Path,
        reply: RewriteReply,
        back: std::sync::mpsc::Sender<Msg>,
    ) {
        self.back = Some(back);
        if self.running.is_some() {
            self.next.push(reply);
        } else {
            self.start(slot, path, vec![reply]);
        }
    }

    fn copied(
        &mut self,
        slot: &DbSlot,
        path: &std::path::Path,
        copied: Result<Database, StoreError>,
    ) {
        let Some((rewrite, replies)) = self.running.take() else {
            return;
        };
        let result = rewrite.finish(copied, slot, path);
        for reply in replies {
            let _ = reply.send(match &result {
                Ok(r) => Ok(r.clone()),
                Err(e) => Err(StoreError::corrupt("rewrite", e)),
            });
        }
        if self.next.is_empty() {
            // Lets the channel close once the store's handles are gone.
            self.back = None;
        } else {
            let next = std::mem::take(&mut self.next);
            self.start(slot, path, next);
        }
    }

    /// The rewrite under way, which must hear of every commit.
    fn noting(&mut self) -> Option<&mut erase::Rewrite> {
        self.running.as_mut().map(|(r, _)| r)
    }

    fn abandon(&mut self) {
        if let Some((rewrite, _)) = self.running.take() {
            rewrite.abandon();
        }
    }
}

fn writer_loop(slot: DbSlot, path: std::path::PathBuf, rx: std::sync::mpsc::Receiver<Msg>) {
    let mut rewrites = Rewrites::default();
    let mut closing = false;
    let mut next = None;
    while !closing {
        let first = match next.take().map_or_else(|| rx.recv().ok(), Some) {
            Some(Msg::Job(job)) => job,
            Some(Msg::Rewrite { reply, back }) => {
                rewrites.ask(&slot, &path, reply, back);
                continue;
            }
            Some(Msg::Copied(copied)) => {
                rewrites.copied(&slot, &path, copied);
                continue;
            }
            Some(Msg::Close) | None => break,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Job(job)) => batch.push(job),
                Ok(Msg::Close) => {
                    closing = true;
                    break;
                }
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        let Some(db) = slot.read().unwrap_or_else(|e| e.into_inner()).clone() else {
            for job in batch {
                job.finish(Err(StoreError::WriterGone));
            }
            continue;
        };
        let db = &*db;
        let mut noting = rewrites.noting();
        if let Err(batch) = commit_batch(db, batch, &mut noting) {
            // One job failed: roll back and give each job its own transaction.
            for job in batch {
                if let Err(mut jobs) = commit_batch(db, vec![job], &mut noting) {
                    if let Some(job) = jobs.pop() {
                        job.finish(Ok(()));
                    }
                }
            }
        }
    }
    rewrites.abandon();
}

/// Commits all jobs in one transaction. On a job error nothing is committed
/// and the jobs come back for a retry; other failures are reported to them.
/// What the commit changed goes to the rewrite under way, if any.
fn commit_batch(
    db: &Database,
    mut batch: Vec<Box<dyn WriteJob>>,
    rewrite: &mut Option<&mut erase::Rewrite>,
) -> Result<(), Vec<Box<dyn WriteJob>>> {
    let mut txn = match db.begin_write() {
        Ok(t) => WriteTxn::new(t, rewrite.is_some()),
        Err(e) => {
            let msg = e.to_string();
            for job in batch {
                job.finish(Err(StoreError::corrupt("transaction", &msg)));
            }
            return Ok(());
        }
    };
    if batch.iter().all(|j| !j.durable()) {
        // Nothing in the batch asked for disk; a failure to relax only
        // costs the fsync.
        let _ = txn.redb().set_durability(redb::Durability::None);
    }
    for job in batch.iter_mut() {
        if job.run(&txn).is_err() {
            let _ = txn.abort();
            return Err(batch);
        }
    }
    match txn.commit() {
        Ok(changes) => {
            if let (Some(rewrite), Some(changes)) = (rewrite.as_deref_mut(), changes) {
                rewrite.note(changes);
            }
            for job in batch {
                job.finish(Ok(()));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for job in batch {
                job.finish(Err(StoreError::corrupt("commit", &msg)));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lazy_write_is_read_at_once_and_kept_by_the_next_durable_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        let put = |key: &'static str| {
            move |txn: &WriteTxn| {
                let mut t = txn.open_table(schema::META)?;
                t.insert(key, [1u8].as_slice())?;
                Ok(())
            }
        };
        store.write_lazy(put("lazy")).await.unwrap();
        let seen = store
            .read(|txn| Ok(txn.open_table(schema::META)?.get("lazy")?.is_some()))
            .unwrap();
        assert!(seen, "visible before any fsync");
        store.write(put("durable")).await.unwrap();
        store.close();
        drop(store);
        let again = Store::open(&path).unwrap();
        let kept = again
            .read(|txn| {
                let t = txn.open_table(schema::META)?;
                Ok(t.get("lazy")?.is_some() && t.get("durable")?.is_some())
            })
            .unwrap();
        assert!(kept, "the durable commit carried the lazy one to disk");
    }

    #[tokio::test]
    async fn a_failing_job_does_not_take_its_batch_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let mut handles = Vec::new();
        for i in 0..50u64 {
            let s = store.clone();
            handles.push(tokio::spawn(async move {
                s.write(move |txn| {
                    if i == 25 {
                        return Err(StoreError::corrupt("test", "refused"));
                    }
                    let mut t = txn.open_table(schema::META)?;
                    t.insert(format!("k{i}").as_str(), i.to_le_bytes().as_slice())?;
                    Ok(i)
                })
                .await
            }));
        }
        let mut ok = 0;
        for (i, h) in handles.into_iter().enumerate() {
            match h.await.unwrap() {
                Ok(v) => {
                    assert_eq!(v, i as u64);
                    ok += 1
                }
                Err(_) => assert_eq!(i, 25),
            }
        }
        assert_eq!(ok, 49);
        let (k24, k25) = store
            .read(|txn| {
                let t = txn.open_table(schema::META)?;
                Ok((t.get("k24")?.is_some(), t.get("k25")?.is_some()))
            })
            .unwrap();
        assert!(
            k24 && !k25,
            "the refused job wrote nothing, the others all landed"
        );
    }
}
