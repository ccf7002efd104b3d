//! Durable metadata: channels, streams, tags and media-storage mappings.
//!
//! INTERFACE SKELETON — the control-plane helper implements this module (SQLite via sqlx)
//! and may add methods/fields; the record types and methods below are what other
//! modules (signaling, media peer, playback) rely on: keep them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

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
    pub name: String,
    pub arn: String,
    pub device_name: Option<String>,
    pub media_type: Option<String>,
    pub kms_key_id: Option<String>,
    pub status: String,
    pub creation_time: f64,
    /// Hours of retention; 0 = no persistence.
    pub data_retention_in_hours: u32,
    pub version: String,
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

/// Metadata store operations; SQLite now, Postgres later; handlers see only this trait.
#[async_trait::async_trait]
pub trait MetaStore: Send + Sync + std::fmt::Debug {
    /// The channel with this ARN, if it exists.
    async fn channel_by_arn(&self, arn: &str) -> Result<Option<ChannelRecord>, MetaError>;
    /// The stream with this ARN, if it exists.
    async fn stream_by_arn(&self, arn: &str) -> Result<Option<StreamRecord>, MetaError>;
    /// The stream with this name, if it exists.
    async fn stream_by_name(&self, name: &str) -> Result<Option<StreamRecord>, MetaError>;
    /// The channel's media storage configuration (DISABLED with no stream if never set).
    async fn media_storage(&self, channel_arn: &str) -> Result<MediaStorageConfig, MetaError>;
}

/// Metadata failures.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("database: {0}")]
    Database(String),
}

/// Open (creating if missing) the embedded metadata database in `data_dir`.
pub async fn open(_data_dir: &Path) -> Result<Arc<dyn MetaStore>, MetaError> {
    Err(MetaError::Database("metadata store not implemented yet".into()))
}
