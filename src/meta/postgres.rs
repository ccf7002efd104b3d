//! The Postgres backend of [`MetaStore`], for cluster mode: several reel nodes share one
//! database through sqlx, each with its own [`PostgresStore`] (a connection pool).
//!
//! - Every write is one transaction whose first statement takes one cluster-wide advisory
//!   lock (`WRITE_LOCK_KEY`), so writes from all nodes run one at a time and the
//!   check-then-write rules (quotas, version compare-and-set, mapping rules) stay atomic
//!   across the cluster; see `PostgresStore::begin_write`.
//! - Reads take no lock. Each is one statement (one snapshot), except [`MetaStore::tags`],
//!   which reads in one `REPEATABLE READ` transaction so existence and tags agree.
//! - Everything is bounded so a lost database fails calls instead of hanging them: connect
//!   (`CONNECT_TIMEOUT`), pool acquire (`ACQUIRE_TIMEOUT`), and per-session server
//!   timeouts (`SESSION_SETTINGS`), the last also ensuring a node that vanishes
//!   mid-transaction cannot hold the write lock for ever.
//! - The schema is `migrations/postgres`, applied at connect. sqlx's migrator holds its own
//!   session advisory lock while migrating, so nodes starting together migrate once.
//!
//! The SQL here is Postgres'; [`super::sqlite`] holds the SQLite equivalent.

use std::path::PathBuf;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Transaction};

use super::common::{
    channel_cols, channel_row, check_version, db_err, is_unique_violation, list_limit, millis, page, stream_cols,
    stream_row, updated_record,
};
use super::lease::Lease;
use super::{
    ChannelRecord, ListQuery, MediaStorageConfig, MetaError, MetaStore, Page, Quota, StreamRecord, StreamUpdate, Tags,
    redact_url,
};

/// How long connecting (TCP, TLS, authentication) may take at startup.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long applying the schema may take at startup (it may wait for another node's
/// migration to finish).
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a call waits for a pooled connection (including opening a new one) before it
/// fails with [`MetaError::Database`].
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per node. Writes run one at a time cluster-wide anyway; the rest serve
/// lookups (e.g. signaling's `channel_by_arn` on every connect) while a write runs.
const MAX_CONNECTIONS: u32 = 8;
/// Server-side limits set on every pooled session:
/// - `lock_timeout`: a write waiting longer than this for [`WRITE_LOCK_KEY`] fails rather
///   than queueing without bound behind a stuck writer;
/// - `statement_timeout`: no statement runs longer than this;
/// - `idle_in_transaction_session_timeout`: the server ends a session that sits inside a
///   transaction this long (a node that crashed or was partitioned away mid-write),
///   releasing the write lock it held.
const SESSION_SETTINGS: [(&str, &str); 3] =
    [("lock_timeout", "5s"), ("statement_timeout", "15s"), ("idle_in_transaction_session_timeout", "15s")];
/// Key of the transaction-scoped advisory lock every write takes first: "reelmeta" in
/// ASCII. Advisory keys are per database; nothing else reel runs there uses this one
/// (sqlx's migrator derives its key from the database name and a different multiplier).
const WRITE_LOCK_KEY: i64 = 0x7265_656c_6d65_7461;

/// Postgres-backed [`MetaStore`]: one node's pool on the cluster's shared database.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connect to the database at `url` (`postgres://` or `postgresql://`, any option
    /// sqlx's `PgConnectOptions` accepts) and apply the schema migrations.
    ///
    /// Fails with [`MetaError::Open`] naming the URL with its password replaced by `***`
    /// when the server is unreachable (within 10 s), refuses the login, or the schema
    /// cannot be applied (e.g. a newer reel already migrated this database).
    pub async fn connect(url: &str) -> Result<Self, MetaError> {
        let shown = redact_url(url);
        let secrets = url_secrets(url);
        let fail = |detail: String| MetaError::Open { path: PathBuf::from(&shown), detail: scrub(detail, &secrets) };
        let options: PgConnectOptions = url.parse().map_err(|e| fail(format!("not a usable Postgres URL: {e}")))?;

        // Migrate over a dedicated one-connection pool without the session limits: waiting
        // for another node's migration must not trip `lock_timeout`. (A pool rather than a
        // bare connection: `Migrator::run` on `&mut PgConnection` makes this future
        // non-`Send` for the compiler.)
        let migrate_pool = PgPoolOptions::new().max_connections(1).acquire_timeout(CONNECT_TIMEOUT);
        let migrate_pool = match tokio::time::timeout(CONNECT_TIMEOUT, migrate_pool.connect_with(options.clone())).await
        {
            Ok(Ok(pool)) => pool,
            Ok(Err(e)) => return Err(fail(format!("cannot connect: {e}"))),
            Err(_) => return Err(fail(format!("cannot connect: no answer within {} s", CONNECT_TIMEOUT.as_secs()))),
        };
        let migrator = sqlx::migrate!("src/meta/migrations/postgres");
        match tokio::time::timeout(MIGRATE_TIMEOUT, migrator.run(&migrate_pool)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(fail(format!("schema migration failed: {e}"))),
            Err(_) => {
                return Err(fail(format!("schema migration did not finish within {} s", MIGRATE_TIMEOUT.as_secs())));
            }
        }
        migrate_pool.close().await;

        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.options(SESSION_SETTINGS));
        // Open one pooled connection now, so a rejected session setting fails startup.
        pool.acquire().await.map_err(|e| fail(format!("cannot open a pooled connection: {e}")))?;
        tracing::info!(url = %shown, "metadata database open (postgres)");
        Ok(Self { pool })
    }

    /// Begin a write transaction holding the cluster-wide write lock.
    ///
    /// Why a lock: the quotas are "count the rows, then insert", which no constraint can
    /// express. Under `READ COMMITTED` two nodes could both count N-1 and both insert; even
    /// `SERIALIZABLE` would need a retry loop around every write. One transaction-scoped
    /// advisory lock serializes all writes of all nodes instead: metadata writes are rare
    /// and short, and the lock is released by commit, rollback, or the session ending.
    ///
    /// It must be the first statement: under `READ COMMITTED` every later statement takes
    /// its snapshot after the lock is granted, so it sees everything the previous holders
    /// committed.
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, MetaError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITE_LOCK_KEY).execute(&mut *tx).await.map_err(db_err)?;
        Ok(tx)
    }
}

/// The password of a URL (as written and percent-decoded, from the user info and any
/// `password=` parameter), to keep out of error messages.
fn url_secrets(url: &str) -> Vec<String> {
    let mut raw = Vec::new();
    if let (Some(start), Some(at)) = (url.find("://").map(|i| i + 3), url.rfind('@'))
        && start < at
        && let Some((_, password)) = url[start..at].split_once(':')
    {
        raw.push(password.to_string());
    }
    if let Some((_, query)) = url.split_once('?') {
        raw.extend(
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .filter(|(k, _)| k.eq_ignore_ascii_case("password"))
                .map(|(_, v)| v.to_string()),
        );
    }
    let decoded: Vec<String> = raw.iter().map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned()).collect();
    raw.into_iter().chain(decoded).filter(|s| !s.is_empty()).collect()
}

/// `detail` with every secret replaced by `***`.
fn scrub(mut detail: String, secrets: &[String]) -> String {
    for secret in secrets {
        detail = detail.replace(secret.as_str(), "***");
    }
    detail
}

async fn insert_tags(tx: &mut Transaction<'static, Postgres>, arn: &str, tags: &Tags) -> Result<(), MetaError> {
    for (k, v) in tags {
        sqlx::query(
            "INSERT INTO tags (resource_arn, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (resource_arn, key) DO UPDATE SET value = excluded.value",
        )
        .bind(arn)
        .bind(k)
        .bind(v)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

async fn resource_exists(tx: &mut Transaction<'static, Postgres>, arn: &str) -> Result<bool, MetaError> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM channels WHERE arn = $1) OR EXISTS (SELECT 1 FROM streams WHERE arn = $1)",
    )
    .bind(arn)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_err)
}

async fn count(tx: &mut Transaction<'static, Postgres>, sql: &'static str) -> Result<u64, MetaError> {
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut **tx).await.map_err(db_err)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The current version of a row, or NotFound.
async fn current_version(
    tx: &mut Transaction<'static, Postgres>,
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

/// The rows of a `SELECT … WHERE name-prefix/after … LIMIT $3` listing as one page in name order.
async fn list_page<T>(
    pool: &PgPool,
    sql: &'static str,
    q: &ListQuery,
    row: fn(&PgRow) -> Result<T, sqlx::Error>,
    name: fn(&T) -> &str,
) -> Result<Page<T>, MetaError> {
    let rows = sqlx::query(sql)
        .bind(q.name_prefix.as_deref())
        .bind(q.after.as_deref())
        .bind(list_limit(q))
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    let items = rows.iter().map(row).collect::<Result<Vec<_>, _>>().map_err(db_err)?;
    Ok(page(items, q.limit.max(1), name))
}

/// Delete a channel or stream row (`sql` binds its ARN as $1) and its tags, then commit.
async fn delete_resource(
    mut tx: Transaction<'static, Postgres>,
    sql: &'static str,
    arn: &str,
) -> Result<(), MetaError> {
    sqlx::query(sql).bind(arn).execute(&mut *tx).await.map_err(db_err)?;
    sqlx::query("DELETE FROM tags WHERE resource_arn = $1").bind(arn).execute(&mut *tx).await.map_err(db_err)?;
    tx.commit().await.map_err(db_err)
}

/// The channel whose media this stream stores, if any.
async fn storage_holder(
    tx: &mut Transaction<'static, Postgres>,
    stream_arn: &str,
) -> Result<Option<String>, MetaError> {
    sqlx::query_scalar("SELECT channel_arn FROM storage_mappings WHERE stream_arn = $1")
        .bind(stream_arn)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)
}

impl PostgresStore {
    super::common::lease_methods!(begin_write, pool, sqlx::PgConnection);
}

#[async_trait::async_trait]
impl MetaStore for PostgresStore {
    async fn channel_by_arn(&self, arn: &str) -> Result<Option<ChannelRecord>, MetaError> {
        let row = sqlx::query(concat!("SELECT ", channel_cols!(), " FROM channels WHERE arn = $1"))
            .bind(arn)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(channel_row).transpose().map_err(db_err)
    }

    async fn stream_by_arn(&self, arn: &str) -> Result<Option<StreamRecord>, MetaError> {
        let row = sqlx::query(concat!("SELECT ", stream_cols!(), " FROM streams WHERE arn = $1"))
            .bind(arn)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(stream_row).transpose().map_err(db_err)
    }

    async fn stream_by_name(&self, name: &str) -> Result<Option<StreamRecord>, MetaError> {
        let row = sqlx::query(concat!("SELECT ", stream_cols!(), " FROM streams WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(stream_row).transpose().map_err(db_err)
    }

    async fn media_storage(&self, channel_arn: &str) -> Result<MediaStorageConfig, MetaError> {
        // One row per existing channel; its stream is NULL while storage is disabled.
        let row: Option<Option<String>> = sqlx::query_scalar(
            "SELECT m.stream_arn FROM channels c LEFT JOIN storage_mappings m ON m.channel_arn = c.arn WHERE c.arn = $1",
        )
        .bind(channel_arn)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        match row {
            None => Err(MetaError::NotFound(format!("channel {channel_arn}"))),
            Some(stream_arn) => Ok(MediaStorageConfig { enabled: stream_arn.is_some(), stream_arn }),
        }
    }

    async fn channel_by_name(&self, name: &str) -> Result<Option<ChannelRecord>, MetaError> {
        let row = sqlx::query(concat!("SELECT ", channel_cols!(), " FROM channels WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(channel_row).transpose().map_err(db_err)
    }

    async fn create_channel(&self, c: &ChannelRecord, tags: &Tags, max_channels: u64) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        if count(&mut tx, "SELECT COUNT(*) FROM channels").await? >= max_channels {
            return Err(MetaError::QuotaExceeded(Quota::Channels(max_channels)));
        }
        sqlx::query(
            "INSERT INTO channels (name, arn, channel_type, status, creation_millis, message_ttl_seconds, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
            " FROM channels WHERE ($1::text IS NULL OR starts_with(name, $1)) AND ($2::text IS NULL OR name > $2) \
             ORDER BY name LIMIT $3"
        );
        list_page(&self.pool, SQL, q, channel_row, |c| &c.name).await
    }

    async fn update_channel(
        &self,
        arn: &str,
        expected_version: &str,
        message_ttl_seconds: Option<u32>,
        new_version: &str,
    ) -> Result<ChannelRecord, MetaError> {
        let mut tx = self.begin_write().await?;
        let current = current_version(&mut tx, "SELECT version FROM channels WHERE arn = $1", arn, "channel").await?;
        check_version(&current, Some(expected_version), arn)?;
        let row = sqlx::query(concat!(
            "UPDATE channels SET message_ttl_seconds = COALESCE($2, message_ttl_seconds), version = $3 \
             WHERE arn = $1 AND version = $4 RETURNING ",
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
        let mut tx = self.begin_write().await?;
        let current = current_version(&mut tx, "SELECT version FROM channels WHERE arn = $1", arn, "channel").await?;
        check_version(&current, expected_version, arn)?;
        // The storage mapping goes with the channel (ON DELETE CASCADE).
        delete_resource(tx, "DELETE FROM channels WHERE arn = $1", arn).await
    }

    async fn create_stream(&self, s: &StreamRecord, tags: &Tags, max_streams: u64) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        if count(&mut tx, "SELECT COUNT(*) FROM streams").await? >= max_streams {
            return Err(MetaError::QuotaExceeded(Quota::Streams(max_streams)));
        }
        sqlx::query(
            "INSERT INTO streams (name, arn, device_name, media_type, kms_key_id, status, creation_millis, \
             data_retention_in_hours, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
            " FROM streams WHERE ($1::text IS NULL OR starts_with(name, $1)) AND ($2::text IS NULL OR name > $2) \
             ORDER BY name LIMIT $3"
        );
        list_page(&self.pool, SQL, q, stream_row, |s| &s.name).await
    }

    async fn update_stream(
        &self,
        arn: &str,
        expected_version: &str,
        update: &StreamUpdate,
        new_version: &str,
    ) -> Result<StreamRecord, MetaError> {
        let mut tx = self.begin_write().await?;
        let current = current_version(&mut tx, "SELECT version FROM streams WHERE arn = $1", arn, "stream").await?;
        check_version(&current, Some(expected_version), arn)?;
        if update.data_retention_in_hours == Some(0)
            && let Some(channel) = storage_holder(&mut tx, arn).await?
        {
            return Err(MetaError::InUse(format!(
                "stream {arn} stores the media of channel {channel}; disable its media storage before removing retention"
            )));
        }
        let row = sqlx::query(concat!(
            "UPDATE streams SET device_name = COALESCE($2, device_name), media_type = COALESCE($3, media_type), \
             data_retention_in_hours = COALESCE($4, data_retention_in_hours), version = $5 \
             WHERE arn = $1 AND version = $6 RETURNING ",
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
        let mut tx = self.begin_write().await?;
        let current = current_version(&mut tx, "SELECT version FROM streams WHERE arn = $1", arn, "stream").await?;
        check_version(&current, expected_version, arn)?;
        if let Some(channel) = storage_holder(&mut tx, arn).await? {
            return Err(MetaError::InUse(format!(
                "stream {arn} stores the media of channel {channel}; disable its media storage first"
            )));
        }
        delete_resource(tx, "DELETE FROM streams WHERE arn = $1", arn).await
    }

    async fn set_media_storage(
        &self,
        channel_arn: &str,
        stream_arn: Option<&str>,
        max_enabled: u64,
    ) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        current_version(&mut tx, "SELECT version FROM channels WHERE arn = $1", channel_arn, "channel").await?;
        let Some(stream_arn) = stream_arn else {
            sqlx::query("DELETE FROM storage_mappings WHERE channel_arn = $1")
                .bind(channel_arn)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            return tx.commit().await.map_err(db_err);
        };
        let retention: Option<i64> = sqlx::query_scalar("SELECT data_retention_in_hours FROM streams WHERE arn = $1")
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
            sqlx::query_scalar("SELECT COUNT(*) FROM storage_mappings WHERE channel_arn <> $1")
                .bind(channel_arn)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
        if u64::try_from(enabled_elsewhere).unwrap_or(0) >= max_enabled {
            return Err(MetaError::QuotaExceeded(Quota::StorageEnabledChannels(max_enabled)));
        }
        sqlx::query(
            "INSERT INTO storage_mappings (channel_arn, stream_arn) VALUES ($1, $2) \
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
            " FROM channels WHERE arn = (SELECT channel_arn FROM storage_mappings WHERE stream_arn = $1)"
        ))
        .bind(stream_arn)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(channel_row).transpose().map_err(db_err)
    }

    async fn tags(&self, arn: &str) -> Result<Tags, MetaError> {
        // One snapshot for the existence check and the tags, so they agree.
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await.map_err(db_err)?;
        if !resource_exists(&mut tx, arn).await? {
            return Err(MetaError::NotFound(format!("resource {arn}")));
        }
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT key, value FROM tags WHERE resource_arn = $1")
            .bind(arn)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(rows.into_iter().collect())
    }

    async fn tag(&self, arn: &str, tags: &Tags, max_tags: usize) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        if !resource_exists(&mut tx, arn).await? {
            return Err(MetaError::NotFound(format!("resource {arn}")));
        }
        insert_tags(&mut tx, arn, tags).await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tags WHERE resource_arn = $1")
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
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ()).map_err(db_err)
    }

    async fn untag(&self, arn: &str, keys: &[String]) -> Result<(), MetaError> {
        let mut tx = self.begin_write().await?;
        if !resource_exists(&mut tx, arn).await? {
            return Err(MetaError::NotFound(format!("resource {arn}")));
        }
        sqlx::query("DELETE FROM tags WHERE resource_arn = $1 AND key = ANY($2)")
            .bind(arn)
            .bind(keys)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::suite;
    use crate::testkit::postgres as pg_test_server;

    /// A fresh store on its own database of the shared test server.
    async fn fresh() -> (PostgresStore, ()) {
        let url = pg_test_server::fresh_database().await;
        (PostgresStore::connect(&url).await.expect("connect"), ())
    }

    suite::backend_tests!(fresh);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quotas_hold_across_nodes() {
        let url = pg_test_server::fresh_database().await;
        // Two pools on one database: two reel nodes.
        let (a, b) = tokio::join!(PostgresStore::connect(&url), PostgresStore::connect(&url));
        let (a, b) = (a.expect("node a"), b.expect("node b"));
        suite::quotas_hold_across_nodes(&a, &b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_writer_lease_across_nodes() {
        let url = pg_test_server::fresh_database().await;
        let (a, b) = tokio::join!(PostgresStore::connect(&url), PostgresStore::connect(&url));
        let (a, b) = (a.expect("node a"), b.expect("node b"));
        let s = suite::stream("contended", 24);
        a.create_stream(&s, &Tags::new(), 10).await.expect("stream");
        for round in 0..20u64 {
            // Both nodes race for the lapsed lease; exactly one wins each round.
            let now = 1_000_000 + round * 20_000;
            let (x, y) =
                tokio::join!(a.acquire_lease(&s.arn, "a", now, 10_000), b.acquire_lease(&s.arn, "b", now, 10_000));
            assert_eq!(u8::from(x.is_ok()) + u8::from(y.is_ok()), 1, "round {round}: {x:?} {y:?}");
            let winner = x.or(y).expect("one won");
            assert_eq!(winner.epoch, round + 1, "epochs grow by one per take");
        }
    }

    #[tokio::test]
    async fn reconnect_keeps_data_and_migrations_are_idempotent() {
        let url = pg_test_server::fresh_database().await;
        let c = suite::channel("keep", 5);
        {
            let store = PostgresStore::connect(&url).await.expect("connect");
            store.create_channel(&c, &[("k".to_string(), "v".to_string())].into(), 10).await.expect("create");
            store.pool.close().await;
        }
        let store = PostgresStore::connect(&url).await.expect("reconnect");
        assert_eq!(store.channel_by_arn(&c.arn).await.expect("get"), Some(c.clone()));
        assert_eq!(store.tags(&c.arn).await.expect("tags").get("k").map(String::as_str), Some("v"));
    }

    #[tokio::test]
    async fn open_url_connects_to_postgres() {
        let url = pg_test_server::fresh_database().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let url = url.replacen("postgres://", "postgresql://", 1);
        let store = crate::meta::open_url(Some(&url), dir.path()).await.expect("open_url");
        store.create_channel(&suite::channel("via-url", 1), &Tags::new(), 1).await.expect("create");
        assert!(!dir.path().join(crate::meta::DB_FILE).exists(), "no SQLite file with a Postgres URL");
    }

    #[tokio::test]
    async fn unreachable_server_is_a_clear_error_without_the_password() {
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let url = format!("postgres://reel:s3cr%65t@127.0.0.1:{port}/reel?sslmode=disable&password=other");
        let started = std::time::Instant::now();
        let e = PostgresStore::connect(&url).await.expect_err("nothing listens");
        assert!(started.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(1), "fails within the connect timeout");
        assert!(matches!(e, MetaError::Open { .. }), "{e:?}");
        let shown = e.to_string();
        assert!(shown.contains(&format!("127.0.0.1:{port}/reel")), "{shown}");
        assert!(shown.contains("cannot connect"), "{shown}");
        for secret in ["s3cr%65t", "s3cret", "other"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[tokio::test]
    async fn lost_database_fails_calls_fast() {
        // A server of its own, to stop under the store.
        let server = pg_test_server::PgTestServer::start();
        let store = PostgresStore::connect(&server.create_database().await).await.expect("connect");
        store.create_channel(&suite::channel("x", 1), &Tags::new(), 10).await.expect("create while up");
        drop(server);
        let started = std::time::Instant::now();
        let (y, no_tags) = (suite::channel("y", 2), Tags::new());
        let (read, write) = tokio::join!(store.channel_by_name("x"), store.create_channel(&y, &no_tags, 10));
        assert!(matches!(read, Err(MetaError::Database(_))), "{read:?}");
        assert!(matches!(write, Err(MetaError::Database(_))), "{write:?}");
        let bound = ACQUIRE_TIMEOUT + Duration::from_secs(2);
        assert!(started.elapsed() < bound, "calls fail within the acquire timeout, took {:?}", started.elapsed());
    }

    #[test]
    fn secrets_are_found_for_scrubbing() {
        assert_eq!(url_secrets("postgres://u:p%40ss@h/db"), ["p%40ss", "p@ss"]);
        assert_eq!(url_secrets("postgres://u@h/db?password=x"), ["x", "x"]);
        assert!(url_secrets("postgres://u@h/db").is_empty());
        assert_eq!(scrub("bad p@ss and p%40ss".into(), &url_secrets("postgres://u:p%40ss@h/db")), "bad *** and ***");
    }
}
