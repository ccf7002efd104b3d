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
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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

/// Shared mode's fast path between nodes: the writer tells every other node at once that it
/// indexed a fragment (in reel: a NATS message), so their reads need not ask the catalog.
/// Best effort by design: a node that misses a notice sees the gap at the next one (its
/// `previous` is not the node's newest fragment) or stops trusting notices
/// [`crate::StoreConfig::notice_trust`] after the last one, and asks the catalog again.
pub trait IndexNotices: Send + Sync + Debug {
    /// `entry` of `stream` is indexed; `previous` is the counter of the stream's fragment
    /// the writer indexed before it (0 for none). Must not block.
    fn indexed(&self, stream: &str, entry: &CatalogEntry, previous: u64);
}

/// What a node did with an [`IndexNotices`] message from another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeOutcome {
    /// The fragment followed this node's newest one: now listed, readers woken.
    Applied,
    /// Already listed here (a catch-up got it first).
    Known,
    /// A notice was missed: the next read of the stream asks the catalog.
    Gap,
    /// The stream is not open on this node (it is loaded whole when opened).
    NotOpen,
}

/// The shared fragment index of a cluster. Implementations must make [`Catalog::insert`]
/// atomic with its fence check (an insert under a fence either becomes visible before the
/// next writer's lease is taken or is refused) and must keep each stream's rows visible in
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

    /// For each (stream, counter) of `after`: the stream's fragments with a counter above
    /// it, as (stream id, entry), in counter order per stream — many streams' catch-up in one
    /// request. Per stream, fragments become visible in counter order (one fenced writer at a
    /// time), so asking for what follows the last one known misses none.
    async fn after_each(&self, after: &[(String, u64)]) -> Result<Vec<(String, CatalogEntry)>, CatalogError>;

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
