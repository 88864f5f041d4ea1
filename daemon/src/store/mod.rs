//! The durable store: one SQLite database in the state directory (WAL, `synchronous=FULL`),
//! with schema migrations.
//!
//! Writes go through one writer thread that commits them in groups: every write queued
//! while the previous commit was being fsynced joins the next transaction, each in its own
//! savepoint, so one fsync acknowledges many concurrent submissions and a failing write
//! rolls back alone. A write's future resolves only after its commit is durable. Reads use
//! a separate connection (WAL lets them proceed beside the writer). A *relaxed* write
//! ([`Store::write_relaxed`]), for a state the daemon re-derives after a power loss
//! anyway, skips the fsync when its whole group is relaxed: the next durable commit makes
//! it durable with itself.

pub mod offline;
pub mod queries;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::StoreMetrics;

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite reported an error (disk full, I/O error, corruption, constraint).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer Arbiter.
    #[error(
        "the database {path} has schema version {found}, newer than this arbiterd knows \
         ({known}); refusing to touch it"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A stored value does not decode (corruption or a bug).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The transaction holding this write could not be committed (nothing of it is stored).
    #[error("the database could not commit: {message}")]
    Commit {
        /// Whether the disk is full or the filesystem refuses writes.
        fault: Option<crate::storage::StorageFault>,
        /// SQLite's message.
        message: String,
    },
    /// The writer thread is gone.
    #[error("the store is shut down")]
    Closed,
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether the error is the disk being full.
    pub fn is_disk_full(&self) -> bool {
        self.storage_fault() == Some(crate::storage::StorageFault::Full)
    }

    /// Whether the error is the disk being full or the filesystem refusing writes.
    pub fn storage_fault(&self) -> Option<crate::storage::StorageFault> {
        use crate::storage::StorageFault;
        match self {
            Self::Sqlite(e) => StorageFault::of_sqlite(e),
            Self::Commit { fault, .. } => *fault,
            Self::Io { source, .. } => StorageFault::of_io(source),
            _ => None,
        }
    }
}

/// One queued write: the work (true when it succeeded) and whom to tell about the commit.
struct WriteJob {
    run: Box<dyn FnOnce(&Connection) -> bool + Send>,
    committed: oneshot::Sender<Result<(), StoreError>>,
    /// Whether the commit must reach the disk before the waiter is told.
    durable: bool,
}

/// What the writer thread is asked to do.
enum Job {
    /// Run a write in the next group transaction.
    Write(WriteJob),
    /// Commit what is queued before, checkpoint the WAL into the database, close the
    /// connection and stop; then say so.
    Close(oneshot::Sender<()>),
}

/// The handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    writes: mpsc::UnboundedSender<Job>,
    reader: Arc<Mutex<Option<Connection>>>,
    path: PathBuf,
    metrics: StoreMetrics,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Room for every query of `queries` (each is prepared once per connection).
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

impl Store {
    /// Opens (creating and migrating as needed) `arbiter.db` in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Io {
            what: format!("creating the state directory {}", state_dir.display()),
            source,
        })?;
        let path = state_dir.join("arbiter.db");
        let mut writer = connect(&path)?;
        schema::migrate(&mut writer, &path)?;
        let reader = connect(&path)?;
        let (writes, rx) = mpsc::unbounded_channel();
        let metrics = StoreMetrics::default();
        let observed = metrics.clone();
        thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(writer, rx, &observed))
            .map_err(|source| StoreError::Io {
                what: "starting the store writer".into(),
                source,
            })?;
        Ok(Self {
            writes,
            reader: Arc::new(Mutex::new(Some(reader))),
            path,
            metrics,
        })
    }

    /// The group commits' sizes and durations (shared by every clone).
    pub(crate) fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    /// Commits what is queued, checkpoints the WAL into the database file and closes both
    /// connections, before it returns: once a stopping daemon has closed its store, nothing
    /// of it touches the files any more (a copy taken then is whole). Later reads and
    /// writes fail with [`StoreError::Closed`].
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.writes.send(Job::Close(done)).is_ok() {
            let _ = closed.await;
        }
        let reader = Arc::clone(&self.reader);
        let _ = tokio::task::spawn_blocking(move || {
            reader
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take()
        })
        .await;
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in a savepoint of the next group transaction and resolves once that
    /// transaction is durably committed. If `f` fails, its savepoint alone is rolled back.
    pub async fn write<T, E>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.queue_write(f, true).await
    }

    /// Like [`Store::write`], but resolves once the transaction is committed, without
    /// waiting for the disk when every write of its group is relaxed (SQLite's
    /// `synchronous=NORMAL` for that commit): the write is seen by every read and survives
    /// the daemon's crash, but a power loss before the next durable commit (which writes
    /// the log it is in to the disk with its own) may undo it. Only for a state the daemon
    /// re-derives at start from what is durable, such as an automatic evaluation's move to
    /// `evaluating`, which a restart fires again from the durable inputs.
    pub async fn write_relaxed<T, E>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.queue_write(f, false).await
    }

    async fn queue_write<T, E>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        durable: bool,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, E>>();
        let (committed, committed_rx) = oneshot::channel();
        let run = Box::new(move |conn: &Connection| {
            let result = f(conn);
            let ok = result.is_ok();
            // The caller may have been cancelled; its write still commits or rolls back.
            let _ = tx.send(result);
            ok
        });
        self.writes
            .send(Job::Write(WriteJob {
                run,
                committed,
                durable,
            }))
            .map_err(|_| E::from(StoreError::Closed))?;
        committed_rx
            .await
            .map_err(|_| E::from(StoreError::Closed))?
            .map_err(E::from)?;
        rx.await.map_err(|_| E::from(StoreError::Closed))?
    }

    /// Runs a short read — a few rows found by key — on the read connection: right here
    /// when the connection is free, since such a read takes microseconds and the hop to a
    /// blocking thread and back costs more in thread wake-ups; on a blocking thread, as
    /// [`Store::read`] does, when another read holds the connection (a long one may).
    pub async fn read_small<T, E>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        if let Ok(conn) = self.reader.try_lock() {
            return match conn.as_ref() {
                Some(conn) => f(conn),
                None => Err(E::from(StoreError::Closed)),
            };
        }
        self.read(f).await
    }

    /// Runs `f` on the read connection (on a blocking thread).
    pub async fn read<T, E>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            let conn = reader
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match conn.as_ref() {
                Some(conn) => f(conn),
                None => Err(E::from(StoreError::Closed)),
            }
        })
        .await
        .map_err(|_| E::from(StoreError::Closed))?
    }
}

/// The writer: takes every queued job, runs each in a savepoint of one transaction,
/// commits once, then tells every waiter.
fn writer_loop(mut conn: Connection, mut rx: mpsc::UnboundedReceiver<Job>, metrics: &StoreMetrics) {
    let mut closing = None;
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Write(job) => jobs.push(job),
                Job::Close(done) => {
                    closing = Some(done);
                    break;
                }
            }
            next = rx.try_recv().ok();
        }
        if !jobs.is_empty() {
            let mut waiters = Vec::with_capacity(jobs.len());
            let started = Instant::now();
            let outcome = run_group(&mut conn, jobs, &mut waiters);
            metrics.committed(waiters.len(), started.elapsed());
            for waiter in waiters {
                let _ = waiter.send(match &outcome {
                    Ok(()) => Ok(()),
                    Err(e) => Err(StoreError::Commit {
                        fault: crate::storage::StorageFault::of_sqlite(e),
                        message: e.to_string(),
                    }),
                });
            }
        }
        if closing.is_some() {
            break;
        }
    }
    // Refuse what was queued after the close, then fold the WAL into the database.
    rx.close();
    while let Ok(job) = rx.try_recv() {
        match job {
            Job::Write(w) => {
                let _ = w.committed.send(Err(StoreError::Closed));
            }
            Job::Close(done) => {
                let _ = done.send(());
            }
        }
    }
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    drop(conn);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

fn run_group(
    conn: &mut Connection,
    jobs: Vec<WriteJob>,
    waiters: &mut Vec<oneshot::Sender<Result<(), StoreError>>>,
) -> Result<(), rusqlite::Error> {
    // Each group sets its own level (a flag of the connection, no I/O): a durable group
    // never commits at a level a relaxed one left behind, and is refused if it cannot be set.
    let relaxed = jobs.iter().all(|j| !j.durable);
    let level = if relaxed { "NORMAL" } else { "FULL" };
    if let Err(e) = conn.pragma_update(None, "synchronous", level) {
        waiters.extend(jobs.into_iter().map(|j| j.committed));
        return Err(e);
    }
    run_transaction(conn, jobs, waiters)
}

/// Runs `jobs` in one transaction, each in its own savepoint; commits it.
fn run_transaction(
    conn: &mut Connection,
    jobs: Vec<WriteJob>,
    waiters: &mut Vec<oneshot::Sender<Result<(), StoreError>>>,
) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction();
    let mut tx = match tx {
        Ok(tx) => tx,
        Err(e) => {
            waiters.extend(jobs.into_iter().map(|j| j.committed));
            return Err(e);
        }
    };
    let mut failure = None;
    for job in jobs {
        waiters.push(job.committed);
        if failure.is_some() {
            continue;
        }
        match tx.savepoint() {
            Ok(sp) => {
                // A failed job's savepoint rolls back when dropped.
                if (job.run)(&sp)
                    && let Err(e) = sp.commit()
                {
                    failure = Some(e);
                }
            }
            Err(e) => failure = Some(e),
        }
    }
    match failure {
        Some(e) => Err(e),
        None => tx.commit(),
    }
}

pub use schema::SCHEMA_VERSION;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    /// The `synchronous` level a write runs under (its group's commit uses it).
    fn level(c: &Connection) -> Result<i64, StoreError> {
        Ok(c.pragma_query_value(None, "synchronous", |r| r.get(0))?)
    }

    #[tokio::test]
    async fn relaxed_writes_skip_the_fsync_alone_and_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // 2 = FULL (an fsync per commit), 1 = NORMAL (none in WAL mode).
        assert_eq!(store.write(level).await.unwrap(), 2);
        let relaxed = store
            .write_relaxed(|c| {
                queries::put_tls_cert(c, b"relaxed", "2026-12-01T00:00:00Z")?;
                level(c)
            })
            .await
            .unwrap();
        assert_eq!(relaxed, 1);
        // Seen by reads at once, and the next durable write is synchronous again.
        assert_eq!(
            store.read(queries::tls_cert).await.unwrap(),
            Some(b"relaxed".to_vec())
        );
        assert_eq!(store.write(level).await.unwrap(), 2);
        store.close().await;
        let fresh = Connection::open(dir.path().join("arbiter.db")).unwrap();
        assert_eq!(
            queries::tls_cert(&fresh).unwrap(),
            Some(b"relaxed".to_vec())
        );
    }

    #[tokio::test]
    async fn close_commits_checkpoints_and_refuses_what_comes_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .write(|c| queries::put_tls_cert(c, b"cert", "2026-12-01T00:00:00Z"))
            .await
            .unwrap();
        store.close().await;
        // Everything is in the database file itself: the WAL is empty.
        let wal = dir.path().join("arbiter.db-wal");
        assert!(std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0);
        let fresh = Connection::open(dir.path().join("arbiter.db")).unwrap();
        assert_eq!(queries::tls_cert(&fresh).unwrap(), Some(b"cert".to_vec()));
        // The closed store refuses reads and writes.
        let write = store
            .write(|c| queries::put_tls_cert(c, b"other", "2026-12-01T00:00:01Z"))
            .await;
        assert!(matches!(write, Err(StoreError::Closed)), "{write:?}");
        let read = store.read(queries::tls_cert).await;
        assert!(matches!(read, Err(StoreError::Closed)), "{read:?}");
    }
}
