//! SQLite's group commits on a connection of their own, without sqlx.
//!
//! Over sqlx, each statement is a message to the connection's thread and a
//! message back, and a statement whose text changes with its row count is
//! parsed anew each time. A group commit is one transaction of several such
//! statements while every accept of the group waits. Here the whole
//! transaction is one job for a thread that owns a `rusqlite` connection:
//! one hand-over each way per group, and every statement prepared once per
//! connection (rows are inserted one by one with the same statement).
//!
//! The job runs while its caller holds sqlx's writer connection (see
//! [`Store::commit_group`](crate::Store)), so the two writers of the file
//! never meet and SQLite's busy handler never has to wait. Only a SQLite
//! file has one: an in-memory database is private to its connection.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::mpsc;

use crate::{Result, SqliteSync, StoreError};

/// The connection a job gets, with the `synchronous` level it was last set
/// to.
pub(crate) struct Writer {
    pub(crate) conn: rusqlite::Connection,
    configured: SqliteSync,
    durable_now: Option<bool>,
}

impl Writer {
    /// Sets the level a transaction needs: `FULL` for one that accepts mail
    /// (unless the store is configured `normal`), `NORMAL` otherwise.
    pub(crate) fn durable(&mut self, durable: bool) -> rusqlite::Result<()> {
        let durable = durable && self.configured == SqliteSync::Full;
        if self.durable_now != Some(durable) {
            self.durable_now = None;
            self.conn.execute_batch(if durable {
                "PRAGMA synchronous = FULL"
            } else {
                "PRAGMA synchronous = NORMAL"
            })?;
            self.durable_now = Some(durable);
        }
        Ok(())
    }
}

type Job = Box<dyn FnOnce(&mut Writer) + Send>;

/// A handle to the writer thread; the thread ends with the last handle.
pub(crate) struct Direct {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Direct")
    }
}

impl Direct {
    /// Opens the database file (already in WAL mode) and starts the thread.
    pub(crate) fn open(path: &Path, sync: SqliteSync, checkpoint_pages: u32) -> Result<Self> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.execute_batch(&format!(
            "PRAGMA busy_timeout = 15000; PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY; \
             PRAGMA wal_autocheckpoint = {checkpoint_pages};"
        ))?;
        conn.set_prepared_statement_cache_capacity(64);
        let mut writer = Writer { conn, configured: sync, durable_now: None };
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                for job in rx {
                    // A job that panics loses its answer, not the thread;
                    // and whatever it left, no transaction stays open.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut writer)));
                    if !writer.conn.is_autocommit() {
                        let _ = writer.conn.execute_batch("ROLLBACK");
                    }
                }
            })
            .map_err(StoreError::Thread)?;
        Ok(Self { tx })
    }

    /// Runs `f` on the writer thread and returns what it returns, with
    /// `hold` (sqlx's writer connection) back for the caller to keep or let
    /// go. `hold` is kept until `f` has run, even if the caller stops
    /// waiting, and is then released in the caller's runtime; so it is if
    /// `f` panics, before the caller hears back.
    pub(crate) async fn run<H, R>(
        &self,
        hold: H,
        f: impl FnOnce(&mut Writer) -> R + Send + 'static,
    ) -> (Result<R>, Option<H>)
    where
        H: Send + 'static,
        R: Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Handle::current();
        let sent = self.tx.send(Box::new(move |w: &mut Writer| {
            // Entered first, so that `hold` is dropped in the runtime.
            let _runtime = runtime.enter();
            let out = std::panic::catch_unwind(AssertUnwindSafe(|| f(w)));
            let back = match out {
                Ok(out) => Ok((out, hold)),
                Err(_) => {
                    drop(hold);
                    Err(())
                }
            };
            // Should the caller have stopped waiting, what it held is
            // dropped here.
            let _ = reply.send(back);
        }));
        if sent.is_err() {
            return (Err(StoreError::Closed), None);
        }
        match rx.await {
            Ok(Ok((out, hold))) => (Ok(out), Some(hold)),
            Ok(Err(())) => (Err(StoreError::Panicked), None),
            Err(_) => (Err(StoreError::Closed), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(w: &mut Writer) -> i64 {
        w.conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap()
    }

    fn database() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER)").unwrap();
        (dir, path)
    }

    #[tokio::test]
    async fn transactions_sync_as_durable_as_they_need() {
        let (_dir, path) = database();
        let full = Direct::open(&path, SqliteSync::Full, 1000).unwrap();
        let levels = full
            .run((), |w| {
                w.durable(true).unwrap();
                let durable = level(w);
                w.durable(false).unwrap();
                (durable, level(w))
            })
            .await
            .0
            .unwrap();
        assert_eq!(levels, (2, 1), "FULL for accepts, NORMAL for the rest");
        let normal = Direct::open(&path, SqliteSync::Normal, 1000).unwrap();
        let durable = normal
            .run((), |w| {
                w.durable(true).unwrap();
                level(w)
            })
            .await
            .0
            .unwrap();
        assert_eq!(durable, 1, "sqlite_sync = normal is obeyed");
    }

    #[tokio::test]
    async fn a_job_that_panics_loses_its_answer_not_the_writer() {
        let (_dir, path) = database();
        let direct = Direct::open(&path, SqliteSync::Full, 1000).unwrap();
        let held = std::sync::Arc::new(());
        let lost = direct
            .run(held.clone(), |w| -> i64 {
                w.conn.execute_batch("BEGIN").unwrap();
                panic!("a bug in a job")
            })
            .await
            .0;
        assert!(matches!(lost, Err(StoreError::Panicked)), "{lost:?}");
        assert_eq!(std::sync::Arc::strong_count(&held), 1, "what the job held was let go");
        let (ok, back) = direct.run(held.clone(), |_| ()).await;
        assert!(ok.is_ok());
        assert!(back.is_some_and(|h| std::sync::Arc::ptr_eq(&h, &held)), "a job that ends gives back what it held");
        let n = direct
            .run((), |w| {
                assert!(w.conn.is_autocommit(), "the transaction it left was rolled back");
                w.conn.execute("INSERT INTO t (x) VALUES (1)", []).unwrap();
                w.conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0)).unwrap()
            })
            .await
            .0
            .unwrap();
        assert_eq!(n, 1);
    }
}
