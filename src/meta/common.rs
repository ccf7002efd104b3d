//! What both backends share besides their statements: the record columns and their
//! decoding, time units, listing pages, the version compare-and-set check, lease numbers and
//! the mapping of sqlx errors. The statements themselves are [`super::sql`]'s.

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::lease::Lease;
use super::{
    ChannelRecord, ImageGenerationConfig, ListQuery, MetaError, NotificationConfig, Page, StorageTier, StreamRecord,
};

/// The columns [`channel_row`] decodes, in its order.
macro_rules! channel_cols {
    () => {
        "name, arn, channel_type, status, creation_millis, message_ttl_seconds, version"
    };
}
/// The columns [`stream_row`] decodes, in its order.
macro_rules! stream_cols {
    () => {
        "name, arn, device_name, media_type, kms_key_id, status, creation_millis, data_retention_in_hours, version, \
         default_storage_tier"
    };
}
/// The columns [`image_generation_row`] decodes (of `image_generation_configs`, alias `c`), in its order.
macro_rules! image_generation_cols {
    () => {
        "c.status, c.image_selector_type, c.destination_uri, c.destination_region, c.sampling_interval_ms, c.format, \
         c.jpeg_quality, c.width_pixels, c.height_pixels"
    };
}
/// The columns [`notification_row`] decodes (of `notification_configs`, alias `c`), in its order.
macro_rules! notification_cols {
    () => {
        "c.status, c.destination_uri"
    };
}
/// `SELECT <cols> FROM streams s LEFT JOIN <table> c … WHERE s.arn = $1`: the columns of a
/// one-per-stream configuration table, one row per existing stream (all NULL without one).
macro_rules! stream_config_select {
    ($table:literal, $cols:expr) => {
        concat!("SELECT ", $cols, " FROM streams s LEFT JOIN ", $table, " c ON c.stream_arn = s.arn WHERE s.arn = $1")
    };
}
/// The columns [`super::catalog::FragmentRow`] decodes, after `stream_arn`.
macro_rules! fragment_cols {
    () => {
        "counter, producer_ts_ms, server_ts_ms, duration_ms, chunk_count, payload_bytes, header_bytes, truncated, object_bytes"
    };
}
pub(super) use {
    channel_cols, fragment_cols, image_generation_cols, notification_cols, stream_cols, stream_config_select,
};

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
        default_storage_tier: storage_tier(&row.try_get::<String, _>(9)?)?,
    })
}

/// A stored `default_storage_tier`; a decode error if it is not a tier.
fn storage_tier(name: &str) -> Result<StorageTier, sqlx::Error> {
    StorageTier::parse(name).ok_or_else(|| sqlx::Error::Decode(format!("unknown storage tier {name:?}").into()))
}

/// A stored `status` column: `true` for `ENABLED`.
pub(super) fn enabled(status: &str) -> bool {
    status == "ENABLED"
}

/// The stored `status` of a configuration.
pub(super) fn status(enabled: bool) -> &'static str {
    if enabled { "ENABLED" } else { "DISABLED" }
}

/// The image generation configuration of a row of [`image_generation_cols`] (from a
/// `LEFT JOIN`: all NULL when the stream has none).
pub(super) fn image_generation_row<R>(row: &R) -> Result<Option<ImageGenerationConfig>, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let Some(status) = row.try_get::<Option<String>, _>(0)? else { return Ok(None) };
    let optional = |i: usize, what: &str| -> Result<Option<u32>, sqlx::Error> {
        row.try_get::<Option<i64>, _>(i)?.map(|v| small(v, what)).transpose()
    };
    Ok(Some(ImageGenerationConfig {
        enabled: enabled(&status),
        image_selector_type: row.try_get(1)?,
        destination_uri: row.try_get(2)?,
        destination_region: row.try_get(3)?,
        sampling_interval_ms: small(row.try_get(4)?, "sampling_interval_ms")?,
        format: row.try_get(5)?,
        jpeg_quality: row.try_get(6)?,
        width_pixels: optional(7, "width_pixels")?,
        height_pixels: optional(8, "height_pixels")?,
    }))
}

/// The notification configuration of a row of [`notification_cols`] (from a `LEFT JOIN`:
/// both NULL when the stream has none).
pub(super) fn notification_row<R>(row: &R) -> Result<Option<NotificationConfig>, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let (status, uri) = (row.try_get::<Option<String>, _>(0)?, row.try_get::<Option<String>, _>(1)?);
    Ok(status.zip(uri).map(|(status, uri)| NotificationConfig { enabled: enabled(&status), destination_uri: uri }))
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
