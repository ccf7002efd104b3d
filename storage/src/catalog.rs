//! Shared mode's contract with the outside: the [`Catalog`] that indexes every stream's
//! fragments for all nodes (in reel: a Postgres table), and the [`Fence`] that makes a
//! writer's inserts conditional on still holding the stream.
//!
//! The store stays codec- and database-agnostic: it hands the catalog fragment metadata and
//! the writer's fence, and the catalog answers with rows, a clock and typed failures.

use std::fmt::Debug;

use crate::fragment::FragmentInfo;

/// Writer identity and fencing token of a stream in shared mode: the cluster lease the
/// writer took. Every catalog insert is accepted only while this lease is still the
/// stream's current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The node holding the lease.
    pub holder: String,
    /// The lease's epoch: unique across all streams and increasing per stream, so fragment
    /// numbers derived from it are too.
    pub epoch: u64,
}

/// One fragment as the catalog indexes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// Its metadata (number, timestamps, sizes).
    pub info: FragmentInfo,
    /// Byte length of its S3 object.
    pub object_bytes: u64,
}

/// Why a catalog call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The writer's fence is no longer the stream's lease: another writer took over.
    #[error("writer fence at epoch {epoch} of stream {stream} is no longer current")]
    Fenced {
        /// The stream.
        stream: String,
        /// The stale epoch.
        epoch: u64,
    },
    /// The catalog could not be reached or failed; retry later.
    #[error("fragment catalog unavailable: {0}")]
    Unavailable(String),
}

/// What a poll of the catalog returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogChanges {
    /// Fragments indexed at or after the poll's `since_ms`, as (stream id, entry).
    pub entries: Vec<(String, CatalogEntry)>,
    /// The catalog's own clock when it answered, ms since the Unix epoch: the next poll's base.
    pub now_ms: u64,
}

/// The shared fragment index of a cluster. Implementations must make [`Catalog::insert`]
/// atomic with its fence check and must keep each stream's rows in insertion order equal to
/// fragment-number order (one fenced writer per stream guarantees it).
#[async_trait::async_trait]
pub trait Catalog: Send + Sync + Debug {
    /// Indexes one fragment of `stream` whose object is already in S3, if `fence` is still
    /// the stream's current lease; [`CatalogError::Fenced`] otherwise. Inserting a fragment
    /// that is already indexed succeeds (retries are idempotent).
    async fn insert(&self, stream: &str, entry: &CatalogEntry, fence: &Fence) -> Result<(), CatalogError>;

    /// Up to `limit` fragments of `stream` with a counter above `after_counter`, in order.
    async fn list_after(
        &self,
        stream: &str,
        after_counter: u64,
        limit: usize,
    ) -> Result<Vec<CatalogEntry>, CatalogError>;

    /// Fragments of `streams` indexed at or after `since_ms` on the catalog's clock.
    async fn changes(&self, streams: &[String], since_ms: u64) -> Result<CatalogChanges, CatalogError>;

    /// The smallest fragment counter still indexed per stream of `streams`; a stream with no
    /// fragments (expired, deleted, or never written) is absent.
    async fn floors(&self, streams: &[String]) -> Result<Vec<(String, u64)>, CatalogError>;

    /// Removes every fragment past its stream's retention at `now_ms` (cluster-wide, each
    /// row once even when several nodes call concurrently) and returns what it removed, so
    /// the caller deletes their objects.
    async fn expire(&self, now_ms: u64) -> Result<Vec<(String, u64)>, CatalogError>;

    /// Removes every fragment of `stream` and returns their counters.
    async fn remove_stream(&self, stream: &str) -> Result<Vec<u64>, CatalogError>;
}
