//! Durable metadata: channels, streams, tags and media-storage mappings.
//!
//! INTERFACE SKELETON — the control-plane helper replaces this module.

use std::path::Path;
use std::sync::Arc;

/// Metadata store operations; SQLite now, Postgres later, handlers see only this trait.
#[async_trait::async_trait]
pub trait MetaStore: Send + Sync + std::fmt::Debug {}

/// Metadata failures.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("database: {0}")]
    Database(String),
}

/// Open (creating if missing) the embedded metadata database in `data_dir`.
pub async fn open(_data_dir: &Path) -> Result<Arc<dyn MetaStore>, MetaError> {
    #[derive(Debug)]
    struct Empty;
    #[async_trait::async_trait]
    impl MetaStore for Empty {}
    Ok(Arc::new(Empty))
}
