//! The SQLite backend of [`MetaStore`]: `<data_dir>/meta.db` through sqlx, WAL mode.
//!
//! - One writer connection: every write is a single transaction on it, so the
//!   check-then-write rules (quotas, version compare-and-set, mapping rules) are atomic.
//! - A small pool of query-only reader connections: WAL lets lookups (e.g. signaling's
//!   `channel_by_arn` on every connect) run while a write is in progress.
//! - `<data_dir>/meta.db.lock` is locked exclusively for the life of the store, so a
//!   second reel on the same data directory fails at startup instead of sharing the file.
//!
//! The SQL here is SQLite's; [`super::postgres`] holds the Postgres equivalent.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::common::{
    channel_cols, channel_row, check_version, db_err, is_unique_violation, list_limit, millis, page, stream_cols,
    stream_row, updated_record,
};
use super::lease::Lease;
use super::{ChannelRecord, DB_FILE, ListQuery, MetaError, MetaStore, Page, Quota, StreamRecord, StreamUpdate, Tags};

/// Reader connections kept for lookups.
const READERS: u32 = 4;
/// How long a statement waits for a lock held by another connection of this process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite primary result codes that mean "this file is not a (healthy) database".
const SQLITE_CORRUPT: &str = "11";
const SQLITE_NOTADB: &str = "26";

/// SQLite-backed [`MetaStore`].
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
        std::fs::create_dir_all(data_dir)
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

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, MetaError> {
        self.writer.begin().await.map_err(db_err)
    }
}

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

async fn insert_tags(tx: &mut Transaction<'static, Sqlite>, arn: &str, tags: &Tags) -> Result<(), MetaError> {
    for (k, v) in tags {
        sqlx::query("INSERT INTO tags (resource_arn, key, value) VALUES (?1, ?2, ?3) ON CONFLICT (resource_arn, key) DO UPDATE SET value = excluded.value")
            .bind(arn)
            .bind(k)
            .bind(v)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

async fn resource_exists(tx: &mut Transaction<'static, Sqlite>, arn: &str) -> Result<bool, MetaError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM channels WHERE arn = ?1) + (SELECT COUNT(*) FROM streams WHERE arn = ?1)",
    )
    .bind(arn)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(n > 0)
}

async fn count(tx: &mut Transaction<'static, Sqlite>, sql: &'static str) -> Result<u64, MetaError> {
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut **tx).await.map_err(db_err)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The current version of a row, or NotFound.
async fn current_version(
    tx: &mut Transaction<'static, Sqlite>,
    sql: &'static str,
    arn: &str,
    what: &str,
) -> Result<String, MetaError> {
    sqlx::query_scalar(sql)
        .bind(arn)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?
        .ok_or_else(|| MetaError::NotFound(format!("{what} {arn}")))
}

/// The rows of a `SELECT … WHERE name-prefix/after … LIMIT ?3` listing as one page in name order.
async fn list_page<T>(
    readers: &SqlitePool,
    sql: &'static str,
    q: &ListQuery,
    row: fn(&SqliteRow) -> Result<T, sqlx::Error>,
    name: fn(&T) -> &str,
) -> Result<Page<T>, MetaError> {
    let rows = sqlx::query(sql)
        .bind(q.name_prefix.as_deref())
        .bind(q.after.as_deref())
        .bind(list_limit(q))
        .fetch_all(readers)
        .await
        .map_err(db_err)?;
    let items = rows.iter().map(row).collect::<Result<Vec<_>, _>>().map_err(db_err)?;
    Ok(page(items, q.limit.max(1), name))
}

/// Delete a channel or stream row (`sql` binds its ARN as ?1) and its tags, then commit.
async fn delete_resource(mut tx: Transaction<'static, Sqlite>, sql: &'static str, arn: &str) -> Result<(), MetaError> {
    sqlx::query(sql).bind(arn).execute(&mut *tx).await.map_err(db_err)?;
    sqlx::query("DELETE FROM tags WHERE resource_arn = ?1").bind(arn).execute(&mut *tx).await.map_err(db_err)?;
    tx.commit().await.map_err(db_err)
}

/// The channel whose media this stream stores, if any.
async fn storage_holder(tx: &mut Transaction<'static, Sqlite>, stream_arn: &str) -> Result<Option<String>, MetaError> {
    sqlx::query_scalar("SELECT channel_arn FROM storage_mappings WHERE stream_arn = ?1")
        .bind(stream_arn)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)
}

impl SqliteStore {
    super::common::lease_methods!(begin, writer, sqlx::SqliteConnection);
}

#[async_trait::async_trait]
impl MetaStore for SqliteStore {
    async fn channel_by_arn(&self, arn: &str) -> Result<Option<ChannelRecord>, MetaError> {
        let row = sqlx::query(concat!("SELECT ", channel_cols!(), " FROM channels WHERE arn = ?1"))
            .bind(arn)
            .fetch_optional(&self.readers)
            .await
            .map_err(db_err)?;
        row.as_ref().map(channel_row).transpose().map_err(db_err)
    }

    async fn stream_by_arn(&self, arn: &str) -> Result<Option<StreamRecord>, MetaError> {
        let row = sqlx::query(concat!("SELECT ", stream_cols!(), " FROM streams WHERE arn = ?1"))
            .bind(arn)
            .fetch_optional(&self.readers)
            .await
            .map_err(db_err)?;
        row.as_ref().map(stream_row).transpose().map_err(db_err)
    }

    async fn stream_by_name(&self, name: &str) -> Result<Option<StreamRecord>, MetaError> {
        let row = sqlx::query(concat!("SELECT ", stream_cols!(), " FROM streams WHERE name = ?1"))
            .bind(name)
            .fetch_optional(&self.readers)
            .await
            .map_err(db_err)?;
        row.as_ref().map(stream_row).transpose().map_err(db_err)
    }

    async fn media_storage(&self, channel_arn: &str) -> Result<super::MediaStorageConfig, MetaError> {
        let row: Option<(i64, Option<String>)> = sqlx::query_as(
            "SELECT 1, m.stream_arn FROM channels c LEFT JOIN storage_mappings m ON m.channel_arn = c.arn WHERE c.arn = ?1",
        )
        .bind(channel_arn)
        .fetch_optional(&self.readers)
        .await
        .map_err(db_err)?;
        match row {
            None => Err(MetaError::NotFound(format!("channel {channel_arn}"))),
            Some((_, stream_arn)) => Ok(super::MediaStorageConfig { enabled: stream_arn.is_some(), stream_arn }),
        }
    }

    async fn channel_by_name(&self, name: &str) -> Result<Option<ChannelRecord>, MetaError> {
        let row = sqlx::query(concat!("SELECT ", channel_cols!(), " FROM channels WHERE name = ?1"))
            .bind(name)
            .fetch_optional(&self.readers)
            .await
            .map_err(db_err)?;
        row.as_ref().map(channel_row).transpose().map_err(db_err)
    }

    async fn create_channel(&self, c: &ChannelRecord, tags: &Tags, max_channels: u64) -> Result<(), MetaError> {
        let mut tx = self.begin().await?;
        if count(&mut tx, "SELECT COUNT(*) FROM channels").await? >= max_channels {
            return Err(MetaError::QuotaExceeded(Quota::Channels(max_channels)));
        }
        sqlx::query(
            "INSERT INTO channels (name, arn, channel_type, status, creation_millis, message_ttl_seconds, version) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(&c.name)
        .bind(&c.arn)
        .bind(&c.channel_type)
        .bind(&c.status)
        .bind(millis(c.creation_time))
        .bind(i64::from(c.message_ttl_seconds))
        .bind(&c.version)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) { MetaError::AlreadyExists(format!("channel {}", c.name)) } else { db_err(e) }
        })?;
        insert_tags(&mut tx, &c.arn, tags).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn list_channels(&self, q: &ListQuery) -> Result<Page<ChannelRecord>, MetaError> {
        const SQL: &str = concat!(
            "SELECT ",
            channel_cols!(),
            " FROM channels WHERE (?1 IS NULL OR substr(name, 1, length(?1)) = ?1) AND (?2 IS NULL OR name > ?2) \
             ORDER BY name LIMIT ?3"
        );
        list_page(&self.readers, SQL, q, channel_row, |c| &c.name).await
    }

    async fn update_channel(
        &self,
        arn: &str,
        expected_version: &str,
        message_ttl_seconds: Option<u32>,
        new_version: &str,
    ) -> Result<ChannelRecord, MetaError> {
        let mut tx = self.begin().await?;
        let current = current_version(&mut tx, "SELECT version FROM channels WHERE arn = ?1", arn, "channel").await?;
        check_version(&current, Some(expected_version), arn)?;
        let row = sqlx::query(concat!(
            "UPDATE channels SET message_ttl_seconds = COALESCE(?2, message_ttl_seconds), version = ?3 \
             WHERE arn = ?1 AND version = ?4 RETURNING ",
            channel_cols!()
        ))
        .bind(arn)
        .bind(message_ttl_seconds.map(i64::from))
        .bind(new_version)
        .bind(expected_version)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let record = updated_record(row, channel_row, arn, expected_version)?;
        tx.commit().await.map_err(db_err)?;
        Ok(record)
    }

    async fn delete_channel(&self, arn: &str, expected_version: Option<&str>) -> Result<(), MetaError> {
        let mut tx = self.begin().await?;
        let current = current_version(&mut tx, "SELECT version FROM channels WHERE arn = ?1", arn, "channel").await?;
        check_version(&current, expected_version, arn)?;
        // The storage mapping goes with the channel (ON DELETE CASCADE).
        delete_resource(tx, "DELETE FROM channels WHERE arn = ?1", arn).await
    }

    async fn create_stream(&self, s: &StreamRecord, tags: &Tags, max_streams: u64) -> Result<(), MetaError> {
        let mut tx = self.begin().await?;
        if count(&mut tx, "SELECT COUNT(*) FROM streams").await? >= max_streams {
            return Err(MetaError::QuotaExceeded(Quota::Streams(max_streams)));
        }
        sqlx::query(
            "INSERT INTO streams (name, arn, device_name, media_type, kms_key_id, status, creation_millis, \
             data_retention_in_hours, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .bind(&s.name)
        .bind(&s.arn)
        .bind(s.device_name.as_deref())
        .bind(s.media_type.as_deref())
        .bind(s.kms_key_id.as_deref())
        .bind(&s.status)
        .bind(millis(s.creation_time))
        .bind(i64::from(s.data_retention_in_hours))
        .bind(&s.version)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) { MetaError::AlreadyExists(format!("stream {}", s.name)) } else { db_err(e) }
        })?;
        insert_tags(&mut tx, &s.arn, tags).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn list_streams(&self, q: &ListQuery) -> Result<Page<StreamRecord>, MetaError> {
        const SQL: &str = concat!(
            "SELECT ",
            stream_cols!(),
            " FROM streams WHERE (?1 IS NULL OR substr(name, 1, length(?1)) = ?1) AND (?2 IS NULL OR name > ?2) \
             ORDER BY name LIMIT ?3"
        );
        list_page(&self.readers, SQL, q, stream_row, |s| &s.name).await
    }

    async fn update_stream(
        &self,
        arn: &str,
        expected_version: &str,
        update: &StreamUpdate,
        new_version: &str,
    ) -> Result<StreamRecord, MetaError> {
        let mut tx = self.begin().await?;
        let current = current_version(&mut tx, "SELECT version FROM streams WHERE arn = ?1", arn, "stream").await?;
        check_version(&current, Some(expected_version), arn)?;
        if update.data_retention_in_hours == Some(0)
            && let Some(channel) = storage_holder(&mut tx, arn).await?
        {
            return Err(MetaError::InUse(format!(
                "stream {arn} stores the media of channel {channel}; disable its media storage before removing retention"
            )));
        }
        let row = sqlx::query(concat!(
            "UPDATE streams SET device_name = COALESCE(?2, device_name), media_type = COALESCE(?3, media_type), \
             data_retention_in_hours = COALESCE(?4, data_retention_in_hours), version = ?5 \
             WHERE arn = ?1 AND version = ?6 RETURNING ",
            stream_cols!()
        ))
        .bind(arn)
        .bind(update.device_name.as_deref())
        .bind(update.media_type.as_deref())
        .bind(update.data_retention_in_hours.map(i64::from))
        .bind(new_version)
        .bind(expected_version)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let record = updated_record(row, stream_row, arn, expected_version)?;
        tx.commit().await.map_err(db_err)?;
        Ok(record)
    }

    async fn delete_stream(&self, arn: &str, expected_version: Option<&str>) -> Result<(), MetaError> {
        let mut tx = self.begin().await?;
        let current = current_version(&mut tx, "SELECT version FROM streams WHERE arn = ?1", arn, "stream").await?;
        check_version(&current, expected_version, arn)?;
        if let Some(channel) = storage_holder(&mut tx, arn).await? {
            return Err(MetaError::InUse(format!(
                "stream {arn} stores the media of channel {channel}; disable its media storage first"
            )));
        }
        delete_resource(tx, "DELETE FROM streams WHERE arn = ?1", arn).await
    }

    async fn set_media_storage(
        &self,
        channel_arn: &str,
        stream_arn: Option<&str>,
        max_enabled: u64,
    ) -> Result<(), MetaError> {
        let mut tx = self.begin().await?;
        current_version(&mut tx, "SELECT version FROM channels WHERE arn = ?1", channel_arn, "channel").await?;
        let Some(stream_arn) = stream_arn else {
            sqlx::query("DELETE FROM storage_mappings WHERE channel_arn = ?1")
                .bind(channel_arn)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            return tx.commit().await.map_err(db_err);
        };
        let retention: Option<i64> = sqlx::query_scalar("SELECT data_retention_in_hours FROM streams WHERE arn = ?1")
            .bind(stream_arn)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        match retention {
            None => return Err(MetaError::NotFound(format!("stream {stream_arn}"))),
            Some(0) => return Err(MetaError::NoDataRetention(stream_arn.into())),
            Some(_) => {}
        }
        match storage_holder(&mut tx, stream_arn).await? {
            Some(holder) if holder == channel_arn => return tx.commit().await.map_err(db_err),
            Some(holder) => {
                return Err(MetaError::InUse(format!(
                    "stream {stream_arn} already stores the media of channel {holder}"
                )));
            }
            None => {}
        }
        let enabled_elsewhere: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM storage_mappings WHERE channel_arn <> ?1")
                .bind(channel_arn)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
        if u64::try_from(enabled_elsewhere).unwrap_or(0) >= max_enabled {
            return Err(MetaError::QuotaExceeded(Quota::StorageEnabledChannels(max_enabled)));
        }
        sqlx::query(
            "INSERT INTO storage_mappings (channel_arn, stream_arn) VALUES (?1, ?2) \
             ON CONFLICT (channel_arn) DO UPDATE SET stream_arn = excluded.stream_arn",
        )
        .bind(channel_arn)
        .bind(stream_arn)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                MetaError::InUse(format!("stream {stream_arn} already stores the media of another channel"))
            } else {
                db_err(e)
            }
        })?;
        tx.commit().await.map_err(db_err)
    }

    async fn channel_for_stream(&self, stream_arn: &str) -> Result<Option<ChannelRecord>, MetaError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            channel_cols!(),
            " FROM channels WHERE arn = (SELECT channel_arn FROM storage_mappings WHERE stream_arn = ?1)"
        ))
        .bind(stream_arn)
        .fetch_optional(&self.readers)
        .await
        .map_err(db_err)?;
        row.as_ref().map(channel_row).transpose().map_err(db_err)
    }

    async fn tags(&self, arn: &str) -> Result<Tags, MetaError> {
        // One read transaction so the existence check and the tags agree.
        let mut tx = self.readers.begin().await.map_err(db_err)?;
        if !resource_exists(&mut tx, arn).await? {
            return Err(MetaError::NotFound(format!("resource {arn}")));
        }
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT key, value FROM tags WHERE resource_arn = ?1")
            .bind(arn)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(rows.into_iter().collect())
    }

    async fn tag(&self, arn: &str, tags: &Tags, max_tags: usize) -> Result<(), MetaError> {
        let mut tx = self.begin().await?;
        if !resource_exists(&mut tx, arn).await? {
            return Err(MetaError::NotFound(format!("resource {arn}")));
        }
        insert_tags(&mut tx, arn, tags).await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tags WHERE resource_arn = ?1")
            .bind(arn)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        if usize::try_from(n).unwrap_or(usize::MAX) > max_tags {
            // Dropping the transaction rolls the upserts back.
            return Err(MetaError::QuotaExceeded(Quota::Tags(max_tags)));
        }
        tx.commit().await.map_err(db_err)
    }

    async fn acquire_lease(
        &self,
        stream_arn: &str,
        node: &str,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<Lease, MetaError> {
        self.take_lease(stream_arn, node, now_ms, lease_ms).await
    }

    async fn renew_lease(
        &self,
        stream_arn: &str,
        node: &str,
        epoch: u64,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<Lease, MetaError> {
        self.extend_lease(stream_arn, node, epoch, now_ms, lease_ms).await
    }

    async fn release_lease(&self, stream_arn: &str, node: &str, epoch: u64) -> Result<(), MetaError> {
        self.give_up_lease(stream_arn, node, epoch).await
    }

    async fn lease(&self, stream_arn: &str) -> Result<Option<Lease>, MetaError> {
        self.stored_lease(stream_arn).await
    }

    async fn ping(&self) -> Result<(), MetaError> {
        sqlx::query("SELECT 1").execute(&self.readers).await.map(|_| ()).map_err(db_err)
    }

    async fn untag(&self, arn: &str, keys: &[String]) -> Result<(), MetaError> {
        let mut tx = self.begin().await?;
        if !resource_exists(&mut tx, arn).await? {
            return Err(MetaError::NotFound(format!("resource {arn}")));
        }
        for key in keys {
            sqlx::query("DELETE FROM tags WHERE resource_arn = ?1 AND key = ?2")
                .bind(arn)
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::suite::{self, channel};

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
