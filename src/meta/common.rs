//! What both backends share: the record columns and their decoding, time units, listing
//! pages, the version compare-and-set check and the mapping of sqlx errors. No statements:
//! those differ per backend.

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::lease::Lease;
use super::{ChannelRecord, ListQuery, MetaError, Page, StreamRecord};

/// The columns [`channel_row`] decodes, in its order.
macro_rules! channel_cols {
    () => {
        "name, arn, channel_type, status, creation_millis, message_ttl_seconds, version"
    };
}
/// The columns [`stream_row`] decodes, in its order.
macro_rules! stream_cols {
    () => {
        "name, arn, device_name, media_type, kms_key_id, status, creation_millis, data_retention_in_hours, version"
    };
}
pub(super) use {channel_cols, stream_cols};

/// Any backend's failure as [`MetaError::Database`].
pub(super) fn db_err(e: sqlx::Error) -> MetaError {
    MetaError::Database(e.to_string())
}

/// Whether a statement failed on a UNIQUE or PRIMARY KEY constraint.
pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// A channel from a row of [`channel_cols`].
pub(super) fn channel_row<R>(row: &R) -> Result<ChannelRecord, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(ChannelRecord {
        name: row.try_get(0)?,
        arn: row.try_get(1)?,
        channel_type: row.try_get(2)?,
        status: row.try_get(3)?,
        creation_time: secs(row.try_get(4)?),
        message_ttl_seconds: small(row.try_get(5)?, "message_ttl_seconds")?,
        version: row.try_get(6)?,
    })
}

/// A stream from a row of [`stream_cols`].
pub(super) fn stream_row<R>(row: &R) -> Result<StreamRecord, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(StreamRecord {
        name: row.try_get(0)?,
        arn: row.try_get(1)?,
        device_name: row.try_get(2)?,
        media_type: row.try_get(3)?,
        kms_key_id: row.try_get(4)?,
        status: row.try_get(5)?,
        creation_time: secs(row.try_get(6)?),
        data_retention_in_hours: small(row.try_get(7)?, "data_retention_in_hours")?,
        version: row.try_get(8)?,
    })
}

/// The record an `UPDATE … WHERE version = expected RETURNING …` gave back; no row means
/// the version moved on in between ([`MetaError::VersionMismatch`]).
pub(super) fn updated_record<R, T>(
    row: Option<R>,
    parse: fn(&R) -> Result<T, sqlx::Error>,
    arn: &str,
    expected_version: &str,
) -> Result<T, MetaError> {
    row.as_ref()
        .map(parse)
        .transpose()
        .map_err(db_err)?
        .ok_or_else(|| MetaError::VersionMismatch { resource: arn.into(), given: expected_version.into() })
}

/// Epoch milliseconds (as stored) to the records' epoch seconds.
pub(super) fn secs(millis: i64) -> f64 {
    millis as f64 / 1000.0
}

/// The records' epoch seconds to epoch milliseconds (as stored).
pub(super) fn millis(secs: f64) -> i64 {
    (secs * 1000.0).round() as i64
}

/// A stored integer column that must fit a `u32` (a TTL, a retention); a decode error if not.
pub(super) fn small(v: i64, what: &str) -> Result<u32, sqlx::Error> {
    u32::try_from(v).map_err(|_| sqlx::Error::Decode(format!("{what} out of range: {v}").into()))
}

/// A page of at most `limit` items from `limit + 1` fetched rows (see [`list_limit`]).
pub(super) fn page<T>(mut items: Vec<T>, limit: usize, name: impl Fn(&T) -> &str) -> Page<T> {
    let more = items.len() > limit;
    items.truncate(limit);
    let next_after = if more { items.last().map(|t| name(t).to_string()) } else { None };
    Page { items, next_after }
}

/// The `LIMIT` of a listing query.
pub(super) fn list_limit(q: &ListQuery) -> i64 {
    // One extra row tells whether another page follows.
    i64::try_from(q.limit.max(1)).unwrap_or(i64::MAX - 1).saturating_add(1)
}

/// [`MetaError::VersionMismatch`] unless `expected` is absent or equals `current`.
pub(super) fn check_version(current: &str, expected: Option<&str>, arn: &str) -> Result<(), MetaError> {
    match expected {
        Some(given) if given != current => {
            Err(MetaError::VersionMismatch { resource: arn.to_string(), given: given.to_string() })
        }
        _ => Ok(()),
    }
}

/// A lease number (epoch or ms) as the databases' signed 64-bit integer.
pub(super) fn lease_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored lease row `(holder, epoch, expires_ms)` of `stream_arn`.
pub(super) fn lease_from_row(stream_arn: &str, (holder, epoch, expires_ms): (String, i64, i64)) -> Lease {
    Lease {
        stream_arn: stream_arn.to_string(),
        holder,
        epoch: u64::try_from(epoch).unwrap_or(0),
        expires_ms: u64::try_from(expires_ms).unwrap_or(0),
    }
}

/// The lease SQL, the same text for both backends (`$N` placeholders, which SQLite numbers
/// in order of appearance).
pub(super) const LEASE_STREAM_EXISTS: &str = "SELECT COUNT(*) FROM streams WHERE arn = $1";
pub(super) const LEASE_SELECT: &str = "SELECT holder, epoch, expires_ms FROM stream_leases WHERE stream_arn = $1";
pub(super) const LEASE_UPSERT: &str = "INSERT INTO stream_leases (stream_arn, holder, epoch, expires_ms) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (stream_arn) DO UPDATE SET holder = excluded.holder, \
     epoch = excluded.epoch, expires_ms = excluded.expires_ms";
pub(super) const LEASE_RELEASE: &str =
    "UPDATE stream_leases SET expires_ms = 0 WHERE stream_arn = $1 AND holder = $2 AND epoch = $3";

/// The lease operations of [`super::MetaStore`] as inherent methods, the same for both
/// backends (their trait methods delegate to them: `async_trait` cannot see methods a macro
/// makes): `$begin` opens the backend's write transaction, `$pool` is the pool plain
/// statements use, `$conn` its connection type. The decisions are [`super::lease`]'s.
macro_rules! lease_methods {
    ($begin:ident, $pool:ident, $conn:ty) => {
        async fn take_lease(
            &self,
            stream_arn: &str,
            node: &str,
            now_ms: u64,
            lease_ms: u64,
        ) -> Result<Lease, MetaError> {
            use super::common::{LEASE_STREAM_EXISTS, LEASE_UPSERT, db_err, lease_i64};
            let mut tx = self.$begin().await?;
            let streams: i64 =
                sqlx::query_scalar(LEASE_STREAM_EXISTS).bind(stream_arn).fetch_one(&mut *tx).await.map_err(db_err)?;
            if streams == 0 {
                return Err(MetaError::NotFound(format!("stream {stream_arn}")));
            }
            let current = Self::lease_row(&mut tx, stream_arn).await?;
            let next = super::lease::take(stream_arn, current.as_ref(), node, now_ms, lease_ms)?;
            sqlx::query(LEASE_UPSERT)
                .bind(&next.stream_arn)
                .bind(&next.holder)
                .bind(lease_i64(next.epoch))
                .bind(lease_i64(next.expires_ms))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            Ok(next)
        }

        async fn extend_lease(
            &self,
            stream_arn: &str,
            node: &str,
            epoch: u64,
            now_ms: u64,
            lease_ms: u64,
        ) -> Result<Lease, MetaError> {
            use super::common::{LEASE_UPSERT, db_err, lease_i64};
            let mut tx = self.$begin().await?;
            let current = Self::lease_row(&mut tx, stream_arn).await?;
            let next = super::lease::renew(current.as_ref(), stream_arn, node, epoch, now_ms, lease_ms)?;
            sqlx::query(LEASE_UPSERT)
                .bind(&next.stream_arn)
                .bind(&next.holder)
                .bind(lease_i64(next.epoch))
                .bind(lease_i64(next.expires_ms))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            Ok(next)
        }

        async fn give_up_lease(&self, stream_arn: &str, node: &str, epoch: u64) -> Result<(), MetaError> {
            use super::common::{LEASE_RELEASE, db_err, lease_i64};
            sqlx::query(LEASE_RELEASE)
                .bind(stream_arn)
                .bind(node)
                .bind(lease_i64(epoch))
                .execute(&self.$pool)
                .await
                .map(|_| ())
                .map_err(db_err)
        }

        async fn stored_lease(&self, stream_arn: &str) -> Result<Option<Lease>, MetaError> {
            let mut conn = self.$pool.acquire().await.map_err(super::common::db_err)?;
            Self::lease_row(&mut conn, stream_arn).await
        }

        async fn lease_row(conn: &mut $conn, stream_arn: &str) -> Result<Option<Lease>, MetaError> {
            let row: Option<(String, i64, i64)> = sqlx::query_as(super::common::LEASE_SELECT)
                .bind(stream_arn)
                .fetch_optional(&mut *conn)
                .await
                .map_err(super::common::db_err)?;
            Ok(row.map(|r| super::common::lease_from_row(stream_arn, r)))
        }
    };
}
pub(super) use lease_methods;
