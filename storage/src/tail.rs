//! Live tail: a consumer handle on a stream that yields every fragment after a starting
//! point as soon as it is persisted.
//!
//! Readers pull: each [`TailReader::next`] finds the next fragment in the in-memory index and
//! reads it (from the page cache or disk, or S3), so a slow reader simply lags behind and
//! holds at most one fragment in memory. Waiting uses a `tokio::sync::watch` channel that
//! the writer bumps on every publish: no polling, no per-reader queue.

use std::sync::Arc;

use tokio::sync::watch;

use crate::error::{Result, StoreError};
use crate::fragment::{Fragment, TimestampKind};
use crate::number::FragmentNumber;
use crate::stream::{StreamInner, TailSignal};

/// Where a live reader starts (KVS GetMedia `StartSelector`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest retained fragment.
    Earliest,
    /// Only fragments persisted after subscribing.
    Now,
    /// Fragments after this number.
    AfterFragment(FragmentNumber),
    /// Resume after the fragment a previous reader last delivered (its number).
    ContinuationToken(FragmentNumber),
    /// The first fragment (in number order) whose producer time span reaches this ms
    /// timestamp, then everything after it.
    ProducerTimestamp(u64),
    /// As `ProducerTimestamp`, by server timestamp.
    ServerTimestamp(u64),
}

/// A live reader; see the module docs. Ends (`Ok(None)`) when the stream is deleted.
#[derive(Debug)]
pub struct TailReader {
    stream: Arc<StreamInner>,
    /// Counter of the last fragment delivered (or the position before the first one).
    cursor: u64,
    delivered_any: bool,
    signal: watch::Receiver<TailSignal>,
}

impl TailReader {
    pub(crate) fn new(stream: Arc<StreamInner>, start: StartPosition) -> Self {
        let signal = stream.tail.subscribe();
        let cursor = match start {
            StartPosition::Earliest => 0,
            StartPosition::Now => signal.borrow().last_counter,
            StartPosition::AfterFragment(n) | StartPosition::ContinuationToken(n) => n.counter(),
            StartPosition::ProducerTimestamp(t) => first_reaching(&stream, TimestampKind::Producer, t),
            StartPosition::ServerTimestamp(t) => first_reaching(&stream, TimestampKind::Server, t),
        };
        TailReader { stream, cursor, delivered_any: false, signal }
    }

    /// The number of the last fragment delivered: the continuation token to resume after it.
    pub fn last_delivered(&self) -> Option<FragmentNumber> {
        self.delivered_any.then(|| FragmentNumber::from_counter(self.cursor))
    }

    /// Waits for and returns the next fragment, or `Ok(None)` once the stream is deleted.
    ///
    /// A fragment that cannot be read (corrupt, S3 unavailable) is returned as an error and
    /// skipped, so the next call continues with the one after it.
    pub async fn next(&mut self) -> Result<Option<Fragment>> {
        loop {
            if self.signal.borrow_and_update().deleted {
                return Ok(None);
            }
            if let Some(entry) = self.stream.first_after(self.cursor) {
                self.cursor = entry.counter;
                self.delivered_any = true;
                match self.stream.read_entry(&entry).await {
                    Ok(f) => return Ok(Some(f)),
                    // Removed by retention between lookup and read: move on.
                    Err(StoreError::FragmentNotFound { .. }) => continue,
                    Err(StoreError::StreamDeleted { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
            if self.signal.changed().await.is_err() {
                return Ok(None);
            }
        }
    }
}

/// Cursor placing a reader just before the first fragment whose `[start, start+duration)`
/// reaches `t`; if none does yet, only future fragments are delivered.
fn first_reaching(stream: &StreamInner, kind: TimestampKind, t: u64) -> u64 {
    let idx = stream.read_index();
    match idx.entries.iter().find(|e| kind.of(e).saturating_add(e.duration_ms as u64) > t || kind.of(e) >= t) {
        Some(e) => e.counter - 1,
        None => idx.entries.last().map_or(0, |e| e.counter),
    }
}
