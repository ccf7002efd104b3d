//! Open GetMedia responses per stream: the per-stream connection cap
//! (`ConnectionLimitExceededException`), `/metrics`, and tests that check a disconnected
//! client frees its reader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Counts the GetMedia readers open on each stream; one per server, in
/// [`crate::server::AppState`], cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Readers {
    /// Open readers per stream ARN (entries are removed when they reach 0).
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// A stream already has its maximum number of GetMedia readers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream {stream_arn} already has {max} GetMedia connections")]
pub struct ConnectionLimitExceeded {
    /// The stream.
    pub stream_arn: String,
    /// The cap that was reached.
    pub max: usize,
}

impl Readers {
    /// Number of GetMedia readers currently open on `stream_arn`.
    pub fn live(&self, stream_arn: &str) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).get(stream_arn).copied().unwrap_or(0)
    }

    /// Registers one more reader of `stream_arn` unless `max` are open already; the reader
    /// counts for as long as the returned guard lives (it is dropped with the response body).
    pub(crate) fn open(&self, stream_arn: &str, max: usize) -> Result<ReaderGuard, ConnectionLimitExceeded> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(stream_arn.to_string()).or_default();
        if *n >= max {
            if *n == 0 {
                open.remove(stream_arn);
            }
            return Err(ConnectionLimitExceeded { stream_arn: stream_arn.to_string(), max });
        }
        *n += 1;
        metrics::gauge!("reel_get_media_readers").increment(1.0);
        Ok(ReaderGuard { readers: self.clone(), stream_arn: stream_arn.to_string() })
    }
}

/// One open GetMedia reader; frees its slot on drop.
#[derive(Debug)]
pub(crate) struct ReaderGuard {
    readers: Readers,
    stream_arn: String,
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        let mut open = self.readers.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.stream_arn) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.stream_arn);
            }
        }
        metrics::gauge!("reel_get_media_readers").decrement(1.0);
        tracing::debug!(stream = %self.stream_arn, "GetMedia reader closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_per_stream_and_a_dropped_reader_frees_its_slot() {
        let readers = Readers::default();
        let a1 = readers.open("a", 2).expect("first");
        let _a2 = readers.open("a", 2).expect("second");
        let refused = readers.open("a", 2).expect_err("third");
        assert_eq!(refused, ConnectionLimitExceeded { stream_arn: "a".into(), max: 2 });
        let _b = readers.open("b", 2).expect("another stream has its own slots");
        assert_eq!((readers.live("a"), readers.live("b")), (2, 1));
        drop(a1);
        assert_eq!(readers.live("a"), 1);
        let _a3 = readers.open("a", 2).expect("the freed slot");
        assert!(readers.open("c", 0).is_err(), "a cap of 0 refuses every reader");
        assert_eq!(readers.live("c"), 0);
    }
}
