//! Bookkeeping of open GetMedia readers: how many follow each stream, for `/metrics` and
//! for tests that check a disconnected client frees its reader.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// Open readers per stream ARN (entries are removed when they reach 0).
static READERS: LazyLock<Mutex<HashMap<String, usize>>> = LazyLock::new(Default::default);

/// Number of GetMedia readers currently open on `stream_arn`.
pub fn live_readers(stream_arn: &str) -> usize {
    READERS.lock().map(|m| m.get(stream_arn).copied().unwrap_or(0)).unwrap_or(0)
}

/// Counts one open reader for as long as it lives (dropped with the response body).
#[derive(Debug)]
pub(crate) struct ReaderGuard {
    stream_arn: String,
}

impl ReaderGuard {
    /// Registers a reader of `stream_arn`.
    pub(crate) fn new(stream_arn: &str) -> Self {
        if let Ok(mut m) = READERS.lock() {
            *m.entry(stream_arn.to_string()).or_default() += 1;
        }
        metrics::gauge!("reel_get_media_readers").increment(1.0);
        Self { stream_arn: stream_arn.to_string() }
    }
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = READERS.lock()
            && let Some(n) = m.get_mut(&self.stream_arn)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.stream_arn);
            }
        }
        metrics::gauge!("reel_get_media_readers").decrement(1.0);
        tracing::debug!(stream = %self.stream_arn, "GetMedia reader closed");
    }
}
