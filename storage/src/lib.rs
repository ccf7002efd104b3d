//! reel's retained-stream store: durable, media-agnostic fragments with an index, range
//! listings, a live tail, retention, and an optional S3 backend.
//!
//! The store knows nothing of codecs or MKV. A *fragment* is an opaque `header` blob plus
//! an ordered list of opaque *chunks*, stamped with a producer and a server timestamp and
//! identified by a KVS-style [`FragmentNumber`].
//!
//! # Using it
//! ```no_run
//! # async fn demo() -> Result<(), reel_storage::StoreError> {
//! use reel_storage::*;
//! let store = Store::open(StoreConfig::new("/var/lib/reel/media")).await?;
//! let stream = store.open_or_create_stream("arn:aws:kinesisvideo:…:stream/cam/1", 24).await?;
//! // Writer (media peer / PutMedia): one fragment at a time, chunk by chunk.
//! let mut w = stream.begin_fragment(FragmentStart { producer_ts_ms: 1, server_ts_ms: 2, header: "tracks".into() }).await?;
//! w.append_chunk(40, "frame 1".into()).await?;       // durable within the commit interval
//! let info = w.finish(2000).await?;                   // resolves once on disk: PERSISTED
//! // Readers (GetMedia, ListFragments, HLS…).
//! let f = stream.read_fragment(info.number).await?;
//! let page = stream.list_fragments(TimestampRange { kind: TimestampKind::Server, start_ms: 0, end_ms: 9 }, 100)?;
//! let mut live = stream.subscribe(StartPosition::Now)?;
//! while let Some(fragment) = live.next().await? { /* … */ }
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//! - Fragment numbers increase strictly per stream and are unique across the store's
//!   streams, also across restarts and deleted streams.
//! - `finish` resolves only after the fragment is fsynced (group commit across streams);
//!   appended chunks are fsynced within [`StoreConfig::commit_interval`] (RPO ≤ 1 s).
//! - After a crash, a fragment that was never finished keeps its complete, checksummed
//!   chunks as a shorter fragment ([`FragmentInfo::truncated`]); one with no complete chunk
//!   is dropped. Every record is CRC32C-checked on recovery and again on every read: a
//!   corrupt fragment is reported ([`StoreError::Corrupt`], naming the file), never served.
//! - One writer per stream: `begin_fragment` while a [`FragmentWriter`] is alive fails with
//!   [`StoreError::FragmentInProgress`].
//! - Retention deletes whole sealed segments whose newest fragment ended more than the
//!   stream's retention before [`Clock::now_ms`]; retention 0 keeps nothing past a sweep.
//!
//! # Module map
//! - [`store`](Store): configuration, recovery, stream registry, deletion, retention, S3 uploads.
//! - `stream`: [`Stream`] handle, [`FragmentWriter`], reads and listings.
//! - `tail`: [`TailReader`] live consumer and [`StartPosition`].
//! - `fragment`: value types ([`Fragment`], [`FragmentInfo`], [`PageToken`], …).
//! - `number`: [`FragmentNumber`] format and the persisted store-wide counter.
//! - `record` / `segment`: sans-IO on-disk format (checksummed records, scan, sidecar index).
//! - `commit`: the group-commit fsync thread.
//! - `remote`: the S3 backend ([`S3Config`]).
//! - `catalog` / `shared`: shared mode, several nodes serving the same streams through one
//!   [`Catalog`] and S3 bucket, each writer fenced by its lease ([`Fence`]).
//! - `clock`: [`Clock`], [`SystemClock`], [`ManualClock`].
//! - `fault`: [`FaultInjector`] for failure tests.
//! - `error`: [`StoreError`].

#![forbid(unsafe_code)]

mod catalog;
mod clock;
mod commit;
mod error;
mod fault;
mod fragment;
mod number;
mod record;
mod remote;
mod segment;
mod shared;
mod store;
mod stream;
mod tail;

pub use catalog::{Catalog, CatalogEntry, CatalogError, Fence, IndexNotices, NoticeOutcome};
pub use clock::{Clock, ManualClock, SystemClock};
pub use commit::CommitStats;
pub use error::{Result, StoreError};
pub use fault::{Fault, FaultInjector};
pub use fragment::{
    Chunk, Fragment, FragmentInfo, FragmentPage, FragmentStart, PageToken, TimestampKind, TimestampRange,
};
pub use number::{COUNTER_DIGITS, FRAGMENT_NUMBER_PREFIX, FragmentNumber};
pub use remote::S3Config;
pub use shared::{MAX_EPOCH, SEQ_BITS};
pub use store::{RecoveryReport, RetentionReport, Store, StoreConfig};
pub use stream::{FragmentWriter, Stream};
pub use tail::{StartPosition, TailReader};
