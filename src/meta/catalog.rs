//! The fragment catalog of cluster mode: [`reel_storage::Catalog`] over the metadata
//! database, so every node's media store indexes and finds fragments in one place (the
//! `fragments` table) and every insert is fenced by the stream's writer lease
//! ([`super::lease`]) in the same transaction.

use std::sync::Arc;

use reel_storage::{Catalog, CatalogEntry, CatalogError, Fence, FragmentInfo, FragmentNumber};

use super::{MetaError, MetaStore};

/// Rows removed per retention statement (a sweep repeats until fewer come back).
const EXPIRE_BATCH: usize = 5_000;
/// Streams asked about in one statement of a poll (well inside both databases' limits on
/// bound parameters).
const STREAMS_PER_STATEMENT: usize = 200;
/// Rows one poll statement returns at most; a stream cut short continues at the next poll
/// (it asks for what follows its newest fragment).
const POLL_LIMIT: usize = 10_000;

/// A `fragments` row as selected by the catalog queries.
#[derive(Debug, sqlx::FromRow)]
pub struct FragmentRow {
    stream_arn: String,
    counter: i64,
    producer_ts_ms: i64,
    server_ts_ms: i64,
    duration_ms: i64,
    chunk_count: i64,
    payload_bytes: i64,
    header_bytes: i64,
    truncated: bool,
    object_bytes: i64,
}

impl FragmentRow {
    /// The row as (stream, catalog entry); out-of-range values (never written by reel) clamp.
    pub fn entry(self) -> (String, CatalogEntry) {
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        let small = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
        let info = FragmentInfo {
            number: FragmentNumber::from_counter(u(self.counter)),
            producer_ts_ms: u(self.producer_ts_ms),
            server_ts_ms: u(self.server_ts_ms),
            duration_ms: small(self.duration_ms),
            chunk_count: small(self.chunk_count),
            payload_bytes: u(self.payload_bytes),
            header_bytes: small(self.header_bytes),
            truncated: self.truncated,
        };
        (self.stream_arn, CatalogEntry { info, object_bytes: u(self.object_bytes) })
    }
}

/// [`Catalog`] on a [`MetaStore`] (Postgres in a cluster; SQLite works the same for tests).
#[derive(Debug, Clone)]
pub struct MetaCatalog {
    meta: Arc<dyn MetaStore>,
}

impl MetaCatalog {
    /// The catalog of `meta`'s database.
    pub fn new(meta: Arc<dyn MetaStore>) -> Self {
        MetaCatalog { meta }
    }
}

fn unavailable(e: MetaError) -> CatalogError {
    CatalogError::Unavailable(e.to_string())
}

#[async_trait::async_trait]
impl Catalog for MetaCatalog {
    async fn insert(&self, stream: &str, entry: &CatalogEntry, fence: &Fence) -> Result<(), CatalogError> {
        match self.meta.insert_fragment(stream, entry, &fence.holder, fence.epoch).await {
            Ok(()) => Ok(()),
            Err(MetaError::LeaseLost { stream, epoch }) => Err(CatalogError::Fenced { stream, epoch }),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn list_after(
        &self,
        stream: &str,
        after_counter: u64,
        limit: usize,
    ) -> Result<Vec<CatalogEntry>, CatalogError> {
        self.meta.fragments_after(stream, after_counter, limit).await.map_err(unavailable)
    }

    async fn after_each(&self, after: &[(String, u64)]) -> Result<Vec<(String, CatalogEntry)>, CatalogError> {
        let mut out = Vec::new();
        for part in after.chunks(STREAMS_PER_STATEMENT) {
            out.extend(self.meta.fragments_after_each(part, POLL_LIMIT).await.map_err(unavailable)?);
        }
        Ok(out)
    }

    async fn floors(&self, streams: &[String]) -> Result<Vec<(String, u64)>, CatalogError> {
        let mut out = Vec::with_capacity(streams.len());
        for part in streams.chunks(STREAMS_PER_STATEMENT) {
            out.extend(self.meta.fragment_floors(part).await.map_err(unavailable)?);
        }
        Ok(out)
    }

    async fn expire(&self, now_ms: u64) -> Result<Vec<(String, u64)>, CatalogError> {
        let mut all = Vec::new();
        loop {
            let batch = self.meta.expire_fragments(now_ms, EXPIRE_BATCH).await.map_err(unavailable)?;
            let done = batch.len() < EXPIRE_BATCH;
            all.extend(batch);
            if done {
                return Ok(all);
            }
        }
    }

    async fn remove_stream(&self, stream: &str) -> Result<Vec<u64>, CatalogError> {
        self.meta.remove_fragments(stream).await.map_err(unavailable)
    }
}
