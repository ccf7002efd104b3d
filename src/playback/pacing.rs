//! The GetMedia per-session rate cap (KVS: 25 MB/s): the shared sans-IO [`TokenBucket`]
//! (time passed in) as a pacer over a response body. [`paced`] takes its time from
//! `tokio::time`, so tests run it on paused time.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::time::Instant;

use crate::rate::TokenBucket;

/// A full bucket of one second's worth of bytes, refilling at `bytes_per_sec`.
fn full_bucket(bytes_per_sec: u64, now: Instant) -> TokenBucket {
    let rate = bytes_per_sec as f64;
    TokenBucket::new(rate, rate, now.into_std())
}

/// `body` sent no faster than `bytes_per_sec` (0 = unpaced): each document waits until the
/// bucket covers it.
pub fn paced<S>(body: S, bytes_per_sec: u64) -> impl Stream<Item = Bytes> + Send
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    let bucket = (bytes_per_sec > 0).then(|| full_bucket(bytes_per_sec, Instant::now()));
    body.scan(bucket, |bucket, doc| {
        let wait =
            bucket.as_mut().map_or(Duration::ZERO, |b| b.take_paced(doc.len() as f64, Instant::now().into_std()));
        async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            Some(doc)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: usize = 1_000_000;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = full_bucket(2 * MB as u64, t0);
        let take = |b: &mut TokenBucket, n: usize, at: Instant| b.take_paced(n as f64, at.into_std());
        assert_eq!(take(&mut b, 2 * MB, t0), Duration::ZERO, "one second's worth goes at once");
        assert_eq!(take(&mut b, MB, t0), Duration::from_millis(500), "then 1 MB waits 0.5 s at 2 MB/s");
        // After waiting it off, the next 1 MB waits another 0.5 s.
        assert_eq!(take(&mut b, MB, t0 + Duration::from_millis(500)), Duration::from_millis(500));
        // Idle time refills the bucket, but never beyond one second's worth.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(take(&mut b, 2 * MB, later), Duration::ZERO);
        assert!(take(&mut b, 1, later) > Duration::ZERO);
    }

    /// Virtual seconds `paced` takes to pass `docs` documents of `size` bytes at `rate`.
    async fn paced_secs(docs: usize, size: usize, rate: u64) -> f64 {
        let start = Instant::now();
        let body = futures::stream::iter((0..docs).map(move |_| Bytes::from(vec![0u8; size])));
        let sent: usize = paced(body, rate).map(|d| d.len()).collect::<Vec<_>>().await.iter().sum();
        assert_eq!(sent, docs * size, "pacing delays documents, never drops them");
        start.elapsed().as_secs_f64()
    }

    #[tokio::test(start_paused = true)]
    async fn body_is_paced_to_the_cap() {
        // 30 documents of 1 MB at 5 MB/s: 5 MB burst, the other 25 MB take 5 s.
        let secs = paced_secs(30, MB, 5 * MB as u64).await;
        assert!((secs - 5.0).abs() < 0.01, "took {secs} virtual s");
        // The KVS cap: 100 MB of 250 kB fragments at 25 MB/s, a 25 MB burst, then 3 s.
        let secs = paced_secs(400, 250_000, crate::limits::GET_MEDIA_MAX_BYTES_PER_SEC).await;
        assert!((secs - 3.0).abs() < 0.01, "took {secs} virtual s");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_means_unpaced() {
        assert_eq!(paced_secs(100, MB, 0).await, 0.0);
    }
}
