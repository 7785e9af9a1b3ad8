//! Storage for Epistle, on embedded SQLite (the default) or PostgreSQL.
//!
//! Both engines run the same SQL through sqlx's `Any` driver; the few places
//! where they differ (column types in migrations, `FOR UPDATE SKIP LOCKED`)
//! go through [`Dialect`]. Timestamps are Unix milliseconds (`BIGINT`) and
//! ids are text, so values mean the same on both engines.
//!
//! SQLite has one writer at a time. The store keeps a pool of one connection
//! for writes and a separate pool for reads, so writers queue in-process
//! instead of spinning on `SQLITE_BUSY`, while WAL lets reads go on.

mod business;
mod definitions;
mod direct;
mod domains;
mod feedback;
mod group_commit;
mod messages;
mod migrate;
mod queue;
mod records;
mod sql;
mod templates;
mod tenants;
mod webhooks;
mod workflows;

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

pub use business::{
    BusinessEvent, DeadLetter, Escalation, EventAccepted, EventOutcome, MessageEngagement, NewBusinessEvent,
    NewEscalation, ReplacedRun, RuleBatch, RuleRecord, RuleRun, RunOutput,
};
pub use definitions::Definition;
pub use domains::{DkimKeyRecord, DomainRecord, NewDkimKey};
pub use feedback::{Engagement, EventRow, FeedbackUpdate, RecipientRef, SuppressionFilter, UnsubscribeSubject};
pub use group_commit::{Committer, HandOff, Handed};
pub use messages::{InsertResult, ListFilter, NewMessage, NewRecipient};
pub use queue::{Claimed, CostStats, DeliveryMessage, Outcome, OutcomeKind, Suppression};
pub use records::*;
pub use templates::{NewTemplateVersion, TemplateRecord, TemplateVersion};
pub use webhooks::{WebhookDeliveryRecord, WebhookJob, WebhookRecord, WebhookResult};
pub use workflows::{NewWorkflowRun, RunAdvance, WorkflowRecord, WorkflowRun};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// From SQLite's own writer connection (see `direct`).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot start the database's writer thread: {0}")]
    Thread(std::io::Error),
    /// A job on SQLite's writer thread panicked: a bug, not a busy database.
    #[error("a database write failed unexpectedly (a bug; the log has the panic)")]
    Panicked,
    #[error("invalid database URL `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("could not create the database folder {path}: {source}")]
    Folder { path: String, source: std::io::Error },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is shutting down")]
    Closed,
    /// A concurrent change won (a unique key was taken meanwhile); retrying
    /// the request is safe.
    #[error("{0}")]
    Conflict(String),
}

/// Turns a unique-key violation into [`StoreError::Conflict`] with `what`.
pub(crate) fn unique_to_conflict(e: sqlx::Error, what: &str) -> StoreError {
    match e.as_database_error() {
        Some(d) if d.is_unique_violation() => StoreError::Conflict(what.to_string()),
        _ => StoreError::Db(e),
    }
}

impl StoreError {
    /// True when the database could not be reached or written just now (a
    /// pool timed out, the connection or the disk failed, the file was
    /// locked or full), rather than refusing what was asked: asking again
    /// later may work.
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            StoreError::Db(e) => matches!(
                e,
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::WorkerCrashed
            ),
            StoreError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(C::DatabaseBusy | C::DatabaseLocked | C::DiskFull | C::SystemIoFailure | C::CannotOpen)
            ),
            StoreError::Closed | StoreError::Thread(_) => true,
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// How SQLite commits: `full` fsyncs every commit (nothing acknowledged is
/// lost even on power failure), `normal` survives process crashes but may
/// lose the last commits on power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSync {
    #[default]
    Full,
    Normal,
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: String,
    /// Connections for PostgreSQL, and readers for SQLite.
    pub max_connections: u32,
    pub sqlite_sync: SqliteSync,
    pub acquire_timeout: Duration,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            sqlite_sync: SqliteSync::Full,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    read: AnyPool,
    write: AnyPool,
    dialect: Dialect,
    sqlite_sync: SqliteSync,
    /// The `synchronous` level SQLite's writer connection was last set to
    /// ([`SYNC_UNKNOWN`], [`SYNC_NORMAL`] or [`SYNC_FULL`]).
    writer_sync: Arc<AtomicU8>,
    /// SQLite (a file): the connection that checkpoints the WAL, see
    /// [`checkpoints`].
    checkpointer: Option<AnyPool>,
    /// SQLite (a file): the connection group commits run on, see
    /// [`direct`].
    direct: Option<Arc<direct::Direct>>,
}

/// A pool of SQLite connections that each run `pragmas` when opened. No
/// ping before each acquire: a file cannot go away as a server can, and on
/// the writer the ping was one more round trip to the connection's thread
/// per transaction.
fn sqlite_pool(max: u32, pragmas: &str) -> AnyPoolOptions {
    let pragmas = pragmas.to_string();
    AnyPoolOptions::new().max_connections(max).test_before_acquire(false).after_connect(move |conn, _| {
        let p = pragmas.clone();
        Box::pin(async move {
            conn.execute(p.as_str()).await?;
            Ok(())
        })
    })
}

/// WAL pages after which the writer checkpoints by itself: a backstop for
/// when the checkpointer falls behind (SQLite's default is 1,000).
const WRITER_CHECKPOINT_PAGES: u32 = 16_384;

/// Copies committed pages from SQLite's WAL into the database file, from a
/// connection of its own. Left to the writer (SQLite's default, every 1,000
/// pages), a checkpoint runs inside a commit: 4 MB copied and two fsyncs
/// while every accept waiting on that commit waits longer (measured: 10 %
/// of the SMTP path's rate). A passive checkpoint here runs beside the
/// writer and never blocks it; the writer starts the WAL over once it has
/// all been copied. Ends when the pool is closed.
async fn checkpoints(pool: AnyPool) {
    use sqlx::Row;
    loop {
        if pool.is_closed() {
            return;
        }
        let pause = match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&pool).await {
            // (busy, pages in the WAL, pages copied): all of it copied (the
            // WAL keeps its pages until the next write starts it over), so
            // nothing was written lately; look again later.
            Ok(row) if row.try_get::<i64, _>(2).unwrap_or(0) >= row.try_get::<i64, _>(1).unwrap_or(0) => {
                Duration::from_secs(1)
            }
            Ok(_) => Duration::from_millis(100),
            Err(_) if pool.is_closed() => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot checkpoint the database's write-ahead log; the writer will");
                Duration::from_secs(1)
            }
        };
        tokio::time::sleep(pause).await;
    }
}

const SYNC_UNKNOWN: u8 = 0;
const SYNC_NORMAL: u8 = 1;
const SYNC_FULL: u8 = 2;

/// How hard a write commits.
///
/// `Durable` writes (accepting and cancelling mail, keys, tenants) are on
/// disk before the commit returns. `Relaxed` writes (claims, lease
/// renewals, outcomes) skip their own sync: a crash of the process loses
/// nothing either way, and a power failure could at worst undo the last
/// of them, which means a resend, never a lost message. The next durable
/// commit makes them durable too (SQLite WAL is synced in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    Durable,
    Relaxed,
}

static DRIVERS: Once = Once::new();

impl Store {
    /// Connects (creating the SQLite file and its folder if needed). Does not
    /// migrate; call [`Store::migrate`].
    pub async fn connect(opts: &StoreOptions) -> Result<Self> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let url = opts.url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let co = AnyConnectOptions::from_str(url)
                .map_err(|e| StoreError::Url { url: redact(url), reason: e.to_string() })?
                .log_statements(tracing::log::LevelFilter::Trace);
            let pool = AnyPoolOptions::new()
                .max_connections(opts.max_connections.max(2))
                .acquire_timeout(opts.acquire_timeout)
                .connect_with(co)
                .await?;
            return Ok(Self {
                read: pool.clone(),
                write: pool,
                dialect: Dialect::Postgres,
                sqlite_sync: opts.sqlite_sync,
                writer_sync: Arc::new(AtomicU8::new(SYNC_UNKNOWN)),
                checkpointer: None,
                direct: None,
            });
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path_part = rest.trim_start_matches("//");
            let (path, query) = match path_part.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (path_part, None),
            };
            if path.is_empty() {
                return Err(StoreError::Url {
                    url: url.into(),
                    reason: "no file path; use e.g. sqlite://epistle-data/epistle.db".into(),
                });
            }
            if path != ":memory:"
                && let Some(parent) = Path::new(path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)
                    .map_err(|source| StoreError::Folder { path: parent.display().to_string(), source })?;
            }
            let full = match query {
                Some(q) if q.contains("mode=") => format!("sqlite://{path}?{q}"),
                Some(q) => format!("sqlite://{path}?{q}&mode=rwc"),
                None => format!("sqlite://{path}?mode=rwc"),
            };
            let co = AnyConnectOptions::from_str(&full)
                .map_err(|e| StoreError::Url { url: url.into(), reason: e.to_string() })?
                .log_statements(tracing::log::LevelFilter::Trace);
            let sync = match opts.sqlite_sync {
                SqliteSync::Full => "FULL",
                SqliteSync::Normal => "NORMAL",
            };
            let pragmas = format!(
                "PRAGMA busy_timeout = 15000; PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; \
                 PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY; \
                 PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES};"
            );
            let write =
                sqlite_pool(1, &pragmas).acquire_timeout(Duration::from_secs(60)).connect_with(co.clone()).await?;
            // Make sure WAL is on before readers open the file, and learn which file sqlx's
            // writer has open (after the URL's own decoding and options; empty in memory).
            let mut conn = write.acquire().await?;
            let row =
                sqlx::query("SELECT file FROM pragma_database_list WHERE name = 'main'").fetch_one(&mut *conn).await?;
            let file: String = sqlx::Row::try_get(&row, 0).unwrap_or_default();
            drop(conn);
            let read = sqlite_pool(opts.max_connections.clamp(1, 8), &pragmas)
                .acquire_timeout(opts.acquire_timeout)
                .connect_with(co.clone())
                .await?;
            let in_memory = path == ":memory:" || path.starts_with("file::memory:");
            let checkpointer = if in_memory {
                None
            } else {
                let pool = sqlite_pool(1, &pragmas).connect_with(co).await?;
                tokio::spawn(checkpoints(pool.clone()));
                Some(pool)
            };
            // A second connection must see the same file the same way: not for a read-only,
            // immutable or other-VFS opening.
            let special = query.is_some_and(|q| ["mode=ro", "immutable", "vfs="].iter().any(|o| q.contains(o)));
            let direct = if special || file.is_empty() {
                None
            } else {
                Some(Arc::new(direct::Direct::open(Path::new(&file), opts.sqlite_sync, WRITER_CHECKPOINT_PAGES)?))
            };
            return Ok(Self {
                read,
                write,
                dialect: Dialect::Sqlite,
                sqlite_sync: opts.sqlite_sync,
                writer_sync: Arc::new(AtomicU8::new(SYNC_UNKNOWN)),
                checkpointer,
                direct,
            });
        }
        Err(StoreError::Url { url: redact(url), reason: "use sqlite://PATH or postgres://USER@HOST/DB".into() })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The write connection, set up for `durability`. Every write goes
    /// through here: SQLite's writer is one shared connection, so each user
    /// sets the sync level it needs rather than inherit the last one's.
    ///
    /// The level is set only when it changes. SQLite has one writer
    /// connection, held by one user at a time, so the level it was last set
    /// to is known, with one exception: a connection opened anew (after an
    /// error) starts at the configured level, `FULL` by default. So the
    /// record is cleared before each change and written after it succeeds,
    /// and it can be wrong only by naming `NORMAL` for a connection that is
    /// at `FULL`: a relaxed write then syncs needlessly, never the other way.
    pub(crate) async fn writer(&self, durability: Durability) -> Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        let mut conn = self.write.acquire().await?;
        if self.dialect == Dialect::Sqlite && self.sqlite_sync == SqliteSync::Full {
            // With `sqlite_sync = normal` every write is NORMAL, as every
            // connection starts; nothing to set.
            let (want, pragma) = match durability {
                Durability::Durable => (SYNC_FULL, "PRAGMA synchronous = FULL"),
                Durability::Relaxed => (SYNC_NORMAL, "PRAGMA synchronous = NORMAL"),
            };
            if self.writer_sync.load(Ordering::Acquire) != want {
                self.writer_sync.store(SYNC_UNKNOWN, Ordering::Release);
                conn.execute(pragma).await?;
                self.writer_sync.store(want, Ordering::Release);
            }
        }
        Ok(conn)
    }

    /// Inside a transaction begun on [`Store::writer`]: PostgreSQL's
    /// counterpart of a relaxed write.
    pub(crate) async fn relax(&self, conn: &mut sqlx::AnyConnection) -> Result<()> {
        if self.dialect == Dialect::Postgres {
            conn.execute("SET LOCAL synchronous_commit = off").await?;
        }
        Ok(())
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(c) = &self.checkpointer {
            c.close().await;
        }
        self.read.close().await;
        self.write.close().await;
    }
}

/// Hides a password in a URL for error messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;

    #[test]
    fn unavailable_means_try_again_later() {
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
        let constraint =
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT), None);
        assert!(StoreError::Sqlite(busy).is_unavailable());
        assert!(StoreError::Db(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(StoreError::Closed.is_unavailable());
        assert!(!StoreError::Sqlite(constraint).is_unavailable());
        assert!(!StoreError::Conflict("taken".into()).is_unavailable());
    }

    async fn sync_level(store: &Store, d: Durability) -> i64 {
        let mut conn = store.writer(d).await.unwrap();
        sqlx::query("PRAGMA synchronous").fetch_one(&mut *conn).await.unwrap().get::<i64, _>(0)
    }

    #[tokio::test]
    async fn every_write_sets_its_own_sync_level() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let store = Store::connect(&StoreOptions::new(&url)).await.unwrap();
        // One writer connection is shared: a durable write after a relaxed
        // one must not inherit NORMAL (1); FULL is 2.
        assert_eq!(sync_level(&store, Durability::Relaxed).await, 1);
        assert_eq!(sync_level(&store, Durability::Durable).await, 2);
        assert_eq!(sync_level(&store, Durability::Relaxed).await, 1);
        assert_eq!(sync_level(&store, Durability::Durable).await, 2);

        // The level is set only when it changes: changed behind the
        // writer's back, it stays changed.
        sqlx::query("PRAGMA synchronous = OFF")
            .execute(&mut *store.writer(Durability::Durable).await.unwrap())
            .await
            .unwrap();
        assert_eq!(
            sync_level(&store, Durability::Durable).await,
            0,
            "a durable write after a durable one sets nothing"
        );
        assert_eq!(sync_level(&store, Durability::Relaxed).await, 1);
        // A connection opened anew starts at FULL: a durable write gets it
        // whatever came before, a relaxed one may get it too (the safe side).
        store.writer(Durability::Relaxed).await.unwrap().close_on_drop();
        assert_eq!(sync_level(&store, Durability::Relaxed).await, 2);
        assert_eq!(sync_level(&store, Durability::Durable).await, 2);
        store.writer(Durability::Durable).await.unwrap().close_on_drop();
        assert_eq!(sync_level(&store, Durability::Durable).await, 2);
        assert_eq!(sync_level(&store, Durability::Relaxed).await, 1);

        let mut opts = StoreOptions::new(&url);
        opts.sqlite_sync = SqliteSync::Normal;
        let normal = Store::connect(&opts).await.unwrap();
        assert_eq!(sync_level(&normal, Durability::Durable).await, 1, "sqlite_synchronous = normal is obeyed");
    }

    #[tokio::test]
    async fn the_wal_is_copied_into_the_database_file_beside_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.db");
        let store = Store::connect(&StoreOptions::new(format!("sqlite://{}", file.display()))).await.unwrap();
        let mut w = store.writer(Durability::Durable).await.unwrap();
        sqlx::query("CREATE TABLE blobs (b BLOB)").execute(&mut *w).await.unwrap();
        // 8 MB in 2,000 commits: about 2,000 pages, well under the writer's
        // own checkpoint threshold, so only the checkpointer moves them.
        for _ in 0..2000 {
            sqlx::query("INSERT INTO blobs VALUES (randomblob(4000))").execute(&mut *w).await.unwrap();
        }
        drop(w);
        let size = || std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        epistle_testkit::wait_for("the checkpointer to copy the WAL", Duration::from_secs(20), || async {
            (size() > 7_000_000).then_some(())
        })
        .await;
        store.close().await;
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
