//! The SQLite backend of [`MetaStore`](super::MetaStore): `<data_dir>/meta.db` through sqlx, WAL mode.
//!
//! - One writer connection: every write is a single transaction on it, so the
//!   check-then-write rules (quotas, version compare-and-set, mapping rules) are atomic.
//! - A small pool of query-only reader connections: WAL lets lookups (e.g. signaling's
//!   `channel_by_arn` on every connect) run while a write is in progress.
//! - `<data_dir>/meta.db.lock` is locked exclusively for the life of the store, so a
//!   second reel on the same data directory fails at startup instead of sharing the file.
//!
//! The statements and the rules around them are shared with [`super::postgres`]
//! (`sql::sql_store!`); this file holds what is SQLite's own: opening, locking,
//! checking and migrating the file, and how transactions begin.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};

use super::common::db_err;
use super::{DB_FILE, MetaError};

/// Reader connections kept for lookups.
const READERS: u32 = 4;
/// How long a statement waits for a lock held by another connection of this process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite primary result codes that mean "this file is not a (healthy) database".
const SQLITE_CORRUPT: &str = "11";
const SQLITE_NOTADB: &str = "26";

/// SQLite-backed [`MetaStore`](super::MetaStore).
#[derive(Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
    /// Held (locked) for as long as the store lives; dropping it releases the lock.
    _lock: File,
}

impl SqliteStore {
    /// Open or create `<data_dir>/meta.db`, lock it, apply migrations and check it.
    pub async fn open(data_dir: &Path) -> Result<Self, MetaError> {
        let db = data_dir.join(DB_FILE);
        let open_err = |detail: String| MetaError::Open { path: db.clone(), detail };
        crate::private_fs::create_private_dir(data_dir)
            .map_err(|e| open_err(format!("cannot create {}: {e}", data_dir.display())))?;

        let lock_path = data_dir.join(format!("{DB_FILE}.lock"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| open_err(format!("cannot open lock file {}: {e}", lock_path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(MetaError::Locked { db, lock: lock_path }),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(open_err(format!("cannot lock {}: {e}", lock_path.display())));
            }
        }

        let base = SqliteConnectOptions::new()
            .filename(&db)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(base.clone().create_if_missing(true))
            .await
            .map_err(|e| classify_open_error(&db, e))?;
        sqlx::migrate!("src/meta/migrations/sqlite").run(&writer).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => classify_open_error(&db, e),
            other => open_err(format!("schema migration failed: {other}")),
        })?;
        let check: Vec<String> = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_all(&writer)
            .await
            .map_err(|e| classify_open_error(&db, e))?;
        if check.first().map(String::as_str) != Some("ok") {
            return Err(MetaError::Corrupt { path: db, detail: format!("integrity check: {}", check.join("; ")) });
        }
        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(base.pragma("query_only", "ON"))
            .await
            .map_err(|e| classify_open_error(&db, e))?;
        tracing::info!(path = %db.display(), "metadata database open");
        Ok(Self { writer, readers, _lock: lock })
    }

    /// Begin a write transaction on the one writer connection (so writes run one at a time).
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, MetaError> {
        self.writer.begin().await.map_err(db_err)
    }

    /// Begin a read transaction on a reader connection (one WAL snapshot).
    async fn begin_read(&self) -> Result<Transaction<'static, Sqlite>, MetaError> {
        self.readers.begin().await.map_err(db_err)
    }
}

super::sql::sql_store!(
    SqliteStore,
    db: Sqlite,
    reads: readers,
    leases: writer,
    name_filter: "($1 IS NULL OR substr(name, 1, length($1)) = $1) AND ($2 IS NULL OR name > $2)",
    now_ms: "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    lease_share_lock: "",
);

/// Map a failure while opening to `Corrupt` (not a database / damaged) or `Open`.
fn classify_open_error(path: &Path, e: sqlx::Error) -> MetaError {
    if let sqlx::Error::Database(d) = &e {
        let code = d.code();
        if code.as_deref().is_some_and(|c| primary_code(c) == SQLITE_NOTADB || primary_code(c) == SQLITE_CORRUPT) {
            return MetaError::Corrupt { path: PathBuf::from(path), detail: d.message().to_string() };
        }
    }
    MetaError::Open { path: PathBuf::from(path), detail: e.to_string() }
}

/// SQLite extended result codes carry the primary code in their low byte.
fn primary_code(code: &str) -> String {
    match i64::from_str(code) {
        Ok(n) => (n & 0xff).to_string(),
        Err(_) => code.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::suite::{self, channel};
    use crate::meta::{MetaStore, Tags};

    /// A fresh store in its own temporary data directory (the guard).
    async fn fresh() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        (store, dir)
    }

    suite::backend_tests!(fresh);

    #[tokio::test]
    async fn second_open_is_locked_and_garbage_is_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = SqliteStore::open(dir.path()).await.expect("open");
        match SqliteStore::open(dir.path()).await {
            Err(e @ MetaError::Locked { .. }) => assert!(e.to_string().contains("meta.db"), "{e}"),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);

        let bad = tempfile::tempdir().expect("tempdir");
        std::fs::write(bad.path().join(DB_FILE), vec![0x5a_u8; 8192]).expect("garbage");
        match SqliteStore::open(bad.path()).await {
            Err(e @ MetaError::Corrupt { .. }) => assert!(e.to_string().contains("meta.db"), "{e}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn data_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = channel("keep", 5);
        {
            let store = SqliteStore::open(dir.path()).await.expect("open");
            let tags: Tags = [("k".to_string(), "v".to_string())].into();
            store.create_channel(&c, &tags, 10).await.expect("create");
            store.writer.close().await;
            store.readers.close().await;
        }
        let store = SqliteStore::open(dir.path()).await.expect("reopen");
        assert_eq!(store.channel_by_arn(&c.arn).await.expect("get"), Some(c.clone()));
        assert_eq!(store.tags(&c.arn).await.expect("tags").get("k").map(String::as_str), Some("v"));
    }
}
