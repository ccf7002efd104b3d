//! Durable metadata: channels, streams, tags, media-storage mappings and the per-stream
//! configurations (storage tier, image generation, notifications).
//!
//! Handlers and the other modules see only the [`MetaStore`] trait and the record types
//! here; the backends are the only places that know SQL:
//!
//! - [`sqlite`]: an embedded database in the data directory, for a single reel (the default);
//! - [`postgres`]: a shared Postgres, for cluster mode (several reel nodes on one database).
//!
//! [`open_url`] picks one from the metadata URL. Both pass the same test suite.
//!
//! Integrity rules live in the store, where they are atomic: unique names, one stream
//! mapped to at most one storage-enabled channel, compare-and-set on versions, and the
//! per-account counts (channels, streams, storage-enabled channels, tags per resource).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::Rng;

pub use lease::Lease;

pub mod catalog;
mod common;
pub mod lease;
pub mod postgres;
mod sql;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod suite;

/// File name of the metadata database inside the data directory.
pub const DB_FILE: &str = "meta.db";

/// Length of the opaque versions reel issues (KVS versions look like 20 alphanumerics).
pub const VERSION_LEN: usize = 20;
/// Leases one [`MetaStore::renew_leases`] statement renews at most (its bound parameters
/// stay far below SQLite's and Postgres's limits).
pub const RENEWALS_PER_STATEMENT: usize = 500;

/// A signaling channel as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRecord {
    /// `ChannelName`.
    pub name: String,
    /// `ChannelARN`: `arn:aws:kinesisvideo:<region>:<account>:channel/<name>/<millis>`.
    pub arn: String,
    /// `SINGLE_MASTER` (or `FULL_MESH`).
    pub channel_type: String,
    /// `ACTIVE` etc.
    pub status: String,
    /// Creation time, epoch seconds.
    pub creation_time: f64,
    /// `SingleMasterConfiguration.MessageTtlSeconds` (5–120, default 60).
    pub message_ttl_seconds: u32,
    /// Opaque version, changed on every mutation.
    pub version: String,
}

/// A stream as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    /// `StreamName`.
    pub name: String,
    /// `StreamARN`: `arn:aws:kinesisvideo:<region>:<account>:stream/<name>/<millis>`.
    pub arn: String,
    /// `DeviceName`, if the producer gave one.
    pub device_name: Option<String>,
    /// `MediaType`, e.g. `video/h264`.
    pub media_type: Option<String>,
    /// `KmsKeyId`, if given (reel stores media unencrypted; kept for round-tripping).
    pub kms_key_id: Option<String>,
    /// `ACTIVE` etc.
    pub status: String,
    /// Creation time, epoch seconds.
    pub creation_time: f64,
    /// Hours of retention; 0 = no persistence.
    pub data_retention_in_hours: u32,
    /// `StreamStorageConfiguration.DefaultStorageTier` (HOT unless set).
    pub default_storage_tier: StorageTier,
    /// Opaque version, changed on every mutation.
    pub version: String,
}

/// A stream's `DefaultStorageTier`. reel keeps all media in one store whatever the tier;
/// the tier is recorded so clients read back what they configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StorageTier {
    /// `HOT`: KVS's standard tier, the default.
    #[default]
    Hot,
    /// `WARM`: KVS's cheaper tier for long retention.
    Warm,
}

impl StorageTier {
    /// The wire (and stored) names, in model order.
    pub const NAMES: &'static [&'static str] = &["HOT", "WARM"];

    /// The wire (and stored) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hot => "HOT",
            Self::Warm => "WARM",
        }
    }

    /// The tier a wire name stands for (case-sensitive), if any.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "HOT" => Some(Self::Hot),
            "WARM" => Some(Self::Warm),
            _ => None,
        }
    }
}

/// A stream's image generation configuration (`UpdateImageGenerationConfiguration`), as
/// validated by the API layer. Stored and described only: reel generates no images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageGenerationConfig {
    /// `true` when `Status` is `ENABLED`.
    pub enabled: bool,
    /// `ImageSelectorType`: `SERVER_TIMESTAMP` or `PRODUCER_TIMESTAMP`.
    pub image_selector_type: String,
    /// `DestinationConfig.Uri` (an S3 URI in KVS).
    pub destination_uri: String,
    /// `DestinationConfig.DestinationRegion`.
    pub destination_region: String,
    /// `SamplingInterval`, in milliseconds.
    pub sampling_interval_ms: u32,
    /// `Format`: `JPEG` or `PNG`.
    pub format: String,
    /// `FormatConfig["JPEGQuality"]`, the map's only possible key.
    pub jpeg_quality: Option<String>,
    /// `WidthPixels`.
    pub width_pixels: Option<u32>,
    /// `HeightPixels`.
    pub height_pixels: Option<u32>,
}

/// A stream's notification configuration (`UpdateNotificationConfiguration`). Stored and
/// described only: reel publishes no SNS notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationConfig {
    /// `true` when `Status` is `ENABLED`.
    pub enabled: bool,
    /// `DestinationConfig.Uri` (an SNS topic ARN in KVS).
    pub destination_uri: String,
}

/// A channel's media storage configuration (`UpdateMediaStorageConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaStorageConfig {
    /// The mapped stream, if any.
    pub stream_arn: Option<String>,
    /// `true` when `Status` is `ENABLED`.
    pub enabled: bool,
}

/// Resource tags (`Key` → `Value`).
pub type Tags = BTreeMap<String, String>;

/// One page request of a name-ordered listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only names starting with this (`BEGINS_WITH`).
    pub name_prefix: Option<String>,
    /// Resume after this name (exclusive), from a previous page's [`Page::next_after`].
    pub after: Option<String>,
    /// Most items to return (at least 1).
    pub limit: usize,
}

/// One page of a listing, in name order.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Where the next page starts, or `None` when this is the last page.
    pub next_after: Option<String>,
}

/// Changes `UpdateStream` / `UpdateDataRetention` / `UpdateStreamStorageConfiguration`
/// apply; `None` leaves a field as is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamUpdate {
    /// New `DeviceName`.
    pub device_name: Option<String>,
    /// New `MediaType`.
    pub media_type: Option<String>,
    /// New `DataRetentionInHours` (absolute, already computed by the caller).
    pub data_retention_in_hours: Option<u32>,
    /// New `DefaultStorageTier`.
    pub default_storage_tier: Option<StorageTier>,
}

/// Which per-account or per-resource quota a write would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// Signaling channels per account.
    Channels(u64),
    /// Streams per account.
    Streams(u64),
    /// Channels with media storage enabled per account.
    StorageEnabledChannels(u64),
    /// Tags per resource.
    Tags(usize),
}

/// Metadata store operations, implemented by the SQLite and Postgres backends; handlers see
/// only this trait.
///
/// Lookups return `Ok(None)` for a missing resource; writes return
/// [`MetaError::NotFound`]. Writes that take an `expected_version` are compare-and-set:
/// they fail with [`MetaError::VersionMismatch`] unless it equals the stored version.
#[async_trait::async_trait]
pub trait MetaStore: Send + Sync + std::fmt::Debug {
    /// The channel with this ARN, if it exists.
    async fn channel_by_arn(&self, arn: &str) -> Result<Option<ChannelRecord>, MetaError>;
    /// The stream with this ARN, if it exists.
    async fn stream_by_arn(&self, arn: &str) -> Result<Option<StreamRecord>, MetaError>;
    /// The stream with this name, if it exists.
    async fn stream_by_name(&self, name: &str) -> Result<Option<StreamRecord>, MetaError>;
    /// The channel's media storage configuration (DISABLED with no stream if never set);
    /// [`MetaError::NotFound`] if the channel does not exist.
    async fn media_storage(&self, channel_arn: &str) -> Result<MediaStorageConfig, MetaError>;

    /// The channel with this name, if it exists.
    async fn channel_by_name(&self, name: &str) -> Result<Option<ChannelRecord>, MetaError>;
    /// Insert a channel with its tags. Fails with [`MetaError::AlreadyExists`] if the name
    /// (or ARN) is taken and [`MetaError::QuotaExceeded`] if the account already has
    /// `max_channels` channels.
    async fn create_channel(&self, channel: &ChannelRecord, tags: &Tags, max_channels: u64) -> Result<(), MetaError>;
    /// One page of channels in name order.
    async fn list_channels(&self, query: &ListQuery) -> Result<Page<ChannelRecord>, MetaError>;
    /// Set the message TTL and a new version (compare-and-set on `expected_version`).
    async fn update_channel(
        &self,
        arn: &str,
        expected_version: &str,
        message_ttl_seconds: Option<u32>,
        new_version: &str,
    ) -> Result<ChannelRecord, MetaError>;
    /// Delete a channel with its tags and storage mapping; with `expected_version`, only
    /// if it is still current.
    async fn delete_channel(&self, arn: &str, expected_version: Option<&str>) -> Result<(), MetaError>;

    /// Insert a stream with its tags ([`MetaError::AlreadyExists`], or
    /// [`MetaError::QuotaExceeded`] beyond `max_streams`).
    async fn create_stream(&self, stream: &StreamRecord, tags: &Tags, max_streams: u64) -> Result<(), MetaError>;
    /// One page of streams in name order.
    async fn list_streams(&self, query: &ListQuery) -> Result<Page<StreamRecord>, MetaError>;
    /// Apply `update` and a new version (compare-and-set). Setting retention to 0 on a
    /// stream a storage-enabled channel writes to fails with [`MetaError::InUse`].
    async fn update_stream(
        &self,
        arn: &str,
        expected_version: &str,
        update: &StreamUpdate,
        new_version: &str,
    ) -> Result<StreamRecord, MetaError>;
    /// Delete a stream with its tags and configurations ([`MetaError::InUse`] while a
    /// storage-enabled channel writes to it).
    async fn delete_stream(&self, arn: &str, expected_version: Option<&str>) -> Result<(), MetaError>;

    /// The stream's image generation configuration, `None` if it has none;
    /// [`MetaError::NotFound`] if the stream does not exist.
    async fn image_generation_config(&self, stream_arn: &str) -> Result<Option<ImageGenerationConfig>, MetaError>;
    /// Replace the stream's image generation configuration, or remove it (`None`). Checks,
    /// atomically: the stream exists ([`MetaError::NotFound`]) and, for an enabled
    /// configuration, keeps data ([`MetaError::NoDataRetention`]). The stream's version
    /// does not change (the operation takes none).
    async fn set_image_generation_config(
        &self,
        stream_arn: &str,
        config: Option<&ImageGenerationConfig>,
    ) -> Result<(), MetaError>;
    /// The stream's notification configuration, `None` if it has none;
    /// [`MetaError::NotFound`] if the stream does not exist.
    async fn notification_config(&self, stream_arn: &str) -> Result<Option<NotificationConfig>, MetaError>;
    /// Replace the stream's notification configuration, or remove it (`None`), with the
    /// checks of [`MetaStore::set_image_generation_config`].
    async fn set_notification_config(
        &self,
        stream_arn: &str,
        config: Option<&NotificationConfig>,
    ) -> Result<(), MetaError>;

    /// Enable storage of `channel_arn` into `stream_arn`, or disable it (`None`).
    /// Enabling checks, atomically: the stream exists ([`MetaError::NotFound`]) and has
    /// retention ([`MetaError::NoDataRetention`]), no other channel writes to it
    /// ([`MetaError::InUse`]), and at most `max_enabled` channels are enabled
    /// ([`MetaError::QuotaExceeded`]).
    async fn set_media_storage(
        &self,
        channel_arn: &str,
        stream_arn: Option<&str>,
        max_enabled: u64,
    ) -> Result<(), MetaError>;
    /// The channel whose media storage is enabled into this stream, if any.
    async fn channel_for_stream(&self, stream_arn: &str) -> Result<Option<ChannelRecord>, MetaError>;

    /// Tags of the channel or stream with this ARN ([`MetaError::NotFound`] if neither).
    async fn tags(&self, arn: &str) -> Result<Tags, MetaError>;
    /// Add or overwrite tags; the resource may end up with at most `max_tags`.
    async fn tag(&self, arn: &str, tags: &Tags, max_tags: usize) -> Result<(), MetaError>;
    /// Remove these tag keys (absent keys are ignored).
    async fn untag(&self, arn: &str, keys: &[String]) -> Result<(), MetaError>;

    /// One trivial query: whether the database answers now (readiness checks).
    async fn ping(&self) -> Result<(), MetaError>;

    /// Take the writer lease of `stream_arn` for `node` ([`lease::take`]): a new epoch from
    /// the cluster-wide counter, valid `lease_ms` from `now_ms`, fencing any previous holder;
    /// [`MetaError::NotFound`] without the stream.
    async fn acquire_lease(&self, stream_arn: &str, node: &str, now_ms: u64, lease_ms: u64)
    -> Result<Lease, MetaError>;
    /// Extend `node`'s lease at `epoch` ([`lease::renew`]); [`MetaError::LeaseLost`] when it
    /// moved on: the writer must stop. Tests' shorthand for [`MetaStore::renew_leases`] of
    /// one lease (the server renews a node's leases together).
    #[cfg(test)]
    async fn renew_lease(
        &self,
        stream_arn: &str,
        node: &str,
        epoch: u64,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<Lease, MetaError> {
        let held = [(stream_arn.to_string(), epoch)];
        let renewed = self.renew_leases(node, &held, now_ms, lease_ms).await?;
        renewed.into_iter().next().ok_or_else(|| MetaError::LeaseLost { stream: stream_arn.into(), epoch })
    }
    /// Extend each of `node`'s leases in `held` (stream, epoch) at once ([`lease::renew`]
    /// for each): the renewed ones are returned, in no particular order; a lease left out
    /// moved on (taken over or released) and its writer must stop. One statement per
    /// [`RENEWALS_PER_STATEMENT`] leases, so a node's renewals cost the database one round
    /// trip per period however many streams it writes.
    async fn renew_leases(
        &self,
        node: &str,
        held: &[(String, u64)],
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<Vec<Lease>, MetaError>;
    /// Give up `node`'s lease at `epoch` (no-op if it already moved on).
    async fn release_lease(&self, stream_arn: &str, node: &str, epoch: u64) -> Result<(), MetaError>;
    /// The stream's lease as stored, if it ever had one.
    async fn lease(&self, stream_arn: &str) -> Result<Option<Lease>, MetaError>;

    /// Fragment catalog (cluster mode, see [`catalog`]): index `entry` of `stream_arn` if
    /// `node` still holds the stream's lease at `epoch` ([`MetaError::LeaseLost`] if not);
    /// an already indexed fragment is accepted again.
    async fn insert_fragment(
        &self,
        stream_arn: &str,
        entry: &reel_storage::CatalogEntry,
        node: &str,
        epoch: u64,
    ) -> Result<(), MetaError>;
    /// Up to `limit` indexed fragments of `stream_arn` after counter `after`, in order.
    async fn fragments_after(
        &self,
        stream_arn: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<reel_storage::CatalogEntry>, MetaError>;
    /// For each (stream, counter) of `after`: up to `limit` (in all) indexed fragments of
    /// that stream after that counter, as (stream, entry), in counter order per stream.
    async fn fragments_after_each(
        &self,
        after: &[(String, u64)],
        limit: usize,
    ) -> Result<Vec<(String, reel_storage::CatalogEntry)>, MetaError>;
    /// The smallest indexed counter of each of `stream_arns` that has fragments.
    async fn fragment_floors(&self, stream_arns: &[String]) -> Result<Vec<(String, u64)>, MetaError>;
    /// Removes (up to `limit`) fragments past their stream's retention at `now_ms`, or of
    /// streams that no longer exist, returning (stream, counter) of each.
    async fn expire_fragments(&self, now_ms: u64, limit: usize) -> Result<Vec<(String, u64)>, MetaError>;
    /// Removes every indexed fragment of `stream_arn`, returning their counters.
    async fn remove_fragments(&self, stream_arn: &str) -> Result<Vec<u64>, MetaError>;
}

/// Metadata failures.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The named resource does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A resource with this name (or ARN) already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// `expected_version` is not the resource's current version.
    #[error("version {given} is not the current version of {resource}")]
    VersionMismatch { resource: String, given: String },
    /// The resource is used by another (e.g. a stream a storage-enabled channel writes to).
    #[error("{0}")]
    InUse(String),
    /// Storage was requested into a stream that keeps no data.
    #[error("stream {0} has no data retention")]
    NoDataRetention(String),
    /// A quota would be exceeded.
    #[error("quota exceeded: {0:?}")]
    QuotaExceeded(Quota),
    /// Another process holds the database.
    #[error(
        "{} is locked: another reel process is using this data directory (lock file {})",
        db.display(),
        lock.display()
    )]
    Locked { db: PathBuf, lock: PathBuf },
    /// The database file is not a usable SQLite database.
    #[error("{} is corrupt or not a reel database ({detail}); move it away or restore a backup", path.display())]
    Corrupt { path: PathBuf, detail: String },
    /// The database could not be opened or migrated, or (Postgres) connected to; `path` is
    /// then the URL with its password replaced by `***`.
    #[error("cannot open {}: {detail}", path.display())]
    Open { path: PathBuf, detail: String },
    /// The writer lease at `epoch` was taken over or released: stop writing.
    #[error("the writer lease of stream {stream} at epoch {epoch} was lost")]
    LeaseLost { stream: String, epoch: u64 },
    /// Any other database failure.
    #[error("database: {0}")]
    Database(String),
}

/// Open (creating if missing) the embedded metadata database in `data_dir`.
///
/// Takes an exclusive lock for the life of the process: a second reel on the same data
/// directory gets [`MetaError::Locked`]; a damaged file gets [`MetaError::Corrupt`].
pub async fn open(data_dir: &Path) -> Result<Arc<dyn MetaStore>, MetaError> {
    let store = sqlite::SqliteStore::open(data_dir).await?;
    Ok(Arc::new(store))
}

/// Open the metadata store a metadata URL names:
///
/// - `None` or a `sqlite:` URL: the embedded SQLite database in `data_dir`, as [`open`]
///   does (its file is always `<data_dir>/meta.db`; a path in the URL is ignored);
/// - `postgres://…` or `postgresql://…`: a shared Postgres database
///   ([`postgres::PostgresStore::connect`]);
/// - anything else: [`MetaError::Open`] naming the (password-redacted) URL.
pub async fn open_url(metadata_url: Option<&str>, data_dir: &Path) -> Result<Arc<dyn MetaStore>, MetaError> {
    let Some(url) = metadata_url else { return open(data_dir).await };
    let (scheme, rest) = url.split_once(':').unwrap_or(("", url));
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => {
            if !rest.trim_start_matches('/').is_empty() {
                tracing::warn!(
                    url = %redact_url(url),
                    "the SQLite metadata database is always {}; the path in the URL is ignored",
                    data_dir.join(DB_FILE).display()
                );
            }
            open(data_dir).await
        }
        "postgres" | "postgresql" if rest.starts_with("//") => {
            Ok(Arc::new(postgres::PostgresStore::connect(url).await?))
        }
        _ => Err(MetaError::Open {
            path: PathBuf::from(redact_url(url)),
            detail: "unsupported metadata URL: use sqlite: (the database in the data directory) or \
                     postgres://user:password@host:port/database"
                .into(),
        }),
    }
}

/// `url` with the password (of the user info and of any `password=` parameter) replaced
/// by `***`, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let mut shown = url.to_string();
    // The user info ends at the last '@' (a password may hold '/', '?' or '#' unescaped).
    if let (Some(start), Some(at)) = (shown.find("://").map(|i| i + 3), shown.rfind('@'))
        && start < at
        && let Some(colon) = shown[start..at].find(':')
    {
        shown.replace_range(start + colon + 1..at, "***");
    }
    if let Some((base, query)) = shown.split_once('?') {
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        shown = format!("{base}?{}", query.join("&"));
    }
    shown
}

/// A fresh opaque version: [`VERSION_LEN`] random ASCII alphanumerics.
pub fn new_version() -> String {
    rand::rng().sample_iter(rand::distr::Alphanumeric).take(VERSION_LEN).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_fresh_alphanumerics() {
        let a = new_version();
        let b = new_version();
        assert_eq!(a.len(), VERSION_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn urls_are_redacted() {
        for (url, shown) in [
            ("postgres://reel:secret@db:5432/reel", "postgres://reel:***@db:5432/reel"),
            ("postgresql://reel:p/a?s#s@db/reel?sslmode=require", "postgresql://reel:***@db/reel?sslmode=require"),
            (
                "postgres://reel@db/reel?password=secret&sslmode=disable",
                "postgres://reel@db/reel?password=***&sslmode=disable",
            ),
            ("postgres://db/reel", "postgres://db/reel"),
            ("sqlite:", "sqlite:"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[tokio::test]
    async fn open_url_picks_the_backend() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_url(None, dir.path()).await.expect("default is sqlite");
        drop(store);
        assert!(dir.path().join(DB_FILE).exists());
        let store = open_url(Some("sqlite:"), dir.path()).await.expect("sqlite:");
        drop(store);
        let store = open_url(Some("SQLite://"), dir.path()).await.expect("sqlite://");
        drop(store);
        for bad in ["mysql://u:secret@db/reel", "secret", "postgres:secret", ""] {
            match open_url(Some(bad), dir.path()).await {
                Err(e @ MetaError::Open { .. }) => {
                    let shown = e.to_string();
                    assert!(shown.contains("unsupported metadata URL"), "{shown}");
                    assert!(!shown.contains("u:secret"), "{shown}");
                }
                other => panic!("{bad}: expected Open, got {other:?}"),
            }
        }
    }
}
