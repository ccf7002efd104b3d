//! Keeps a storage session's stream writer lease (see [`crate::meta::lease`]) while the
//! session runs: renews it every quarter of the lease length (sooner after a failure), and reports the lease **lost**
//! when a renewal is refused (another session took the stream: a newer JoinStorageSession,
//! or another node after this one stalled) or when no renewal succeeded before the local
//! deadline — the lease's length minus a margin, measured on this node's monotonic clock
//! from the last successful renewal's start — so a paused or partitioned writer stops
//! before another node could take the stream over. Dropping the keeper releases the lease.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::meta::{Lease, MetaError, MetaStore};

/// Part of the lease this node never uses: it stops this much before the lease could lapse
/// in the database, covering clock-rate differences and the renewal's own latency.
const SAFETY_MARGIN_FRACTION: u32 = 5;
/// Renewals per lease length: a database outage of up to lease × (1 − 1/5 − 1/4) — 5.5 s of
/// the default 10 s lease — never stops a writer.
const RENEWALS_PER_LEASE: u64 = 4;
/// After a failed renewal, the next attempt comes this soon (until the local deadline).
const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(200);

/// A held lease and its renewal task; dropping it releases the lease.
#[derive(Debug)]
pub struct LeaseKeeper {
    lost: watch::Receiver<bool>,
    release: Option<Release>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Release {
    meta: Arc<dyn MetaStore>,
    stream_arn: String,
    node: String,
    epoch: u64,
}

impl LeaseKeeper {
    /// Takes the lease of `stream_arn` for `node` now and starts renewing it.
    pub async fn acquire(
        meta: Arc<dyn MetaStore>,
        stream_arn: &str,
        node: &str,
        lease_ms: u64,
    ) -> Result<(Self, Lease), MetaError> {
        let started = Instant::now();
        let lease = meta.acquire_lease(stream_arn, node, crate::signaling::cluster::now_ms(), lease_ms).await?;
        let (tx, lost) = watch::channel(false);
        let task = tokio::spawn(renew_loop(meta.clone(), lease.clone(), lease_ms, started, tx));
        let release = Release { meta, stream_arn: stream_arn.into(), node: node.into(), epoch: lease.epoch };
        Ok((Self { lost, release: Some(release), task }, lease))
    }

    /// The media store's fence for this lease: the node and epoch its fragments are
    /// written and indexed under.
    pub fn fence(&self) -> Option<reel_storage::Fence> {
        self.release.as_ref().map(|r| reel_storage::Fence { holder: r.node.clone(), epoch: r.epoch })
    }

    /// Resolves once the lease is lost (never while it is held).
    pub async fn lost(&mut self) {
        // An error means the renewal task ended, which it does only after reporting loss.
        let _ = self.lost.wait_for(|lost| *lost).await;
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(r) = self.release.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                if let Err(e) = r.meta.release_lease(&r.stream_arn, &r.node, r.epoch).await {
                    tracing::warn!(stream = %r.stream_arn, error = %e, "cannot release the writer lease; it lapses on its own");
                }
            });
        }
    }
}

/// The local deadline of a lease renewed at `renewed` (monotonic).
fn deadline(renewed: Instant, lease_ms: u64) -> Instant {
    let lease = Duration::from_millis(lease_ms);
    renewed + lease - lease / SAFETY_MARGIN_FRACTION
}

async fn renew_loop(
    meta: Arc<dyn MetaStore>,
    lease: Lease,
    lease_ms: u64,
    acquired: Instant,
    lost: watch::Sender<bool>,
) {
    let every = Duration::from_millis((lease_ms / RENEWALS_PER_LEASE).max(1));
    let mut valid_until = deadline(acquired, lease_ms);
    let mut wait = every;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = tokio::time::sleep_until(valid_until) => {
                tracing::warn!(stream = %lease.stream_arn, epoch = lease.epoch, "writer lease not renewed in time; stopping the writer");
                let _ = lost.send(true);
                return;
            }
        }
        let attempt = Instant::now();
        let renewal = meta.renew_lease(
            &lease.stream_arn,
            &lease.holder,
            lease.epoch,
            crate::signaling::cluster::now_ms(),
            lease_ms,
        );
        let outcome = tokio::time::timeout_at(valid_until, renewal).await;
        match outcome {
            Ok(Ok(_)) => {
                valid_until = deadline(attempt, lease_ms);
                wait = every;
            }
            Ok(Err(MetaError::LeaseLost { .. })) => {
                tracing::warn!(stream = %lease.stream_arn, epoch = lease.epoch, "writer lease taken over; stopping the writer");
                let _ = lost.send(true);
                return;
            }
            // The database is unreachable: keep trying until the local deadline.
            Ok(Err(e)) => {
                tracing::warn!(stream = %lease.stream_arn, error = %e, "writer lease renewal failed; retrying");
                wait = RETRY_AFTER_FAILURE;
            }
            Err(_) => wait = RETRY_AFTER_FAILURE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Tags;

    async fn store_with_stream() -> (Arc<dyn MetaStore>, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = crate::meta::open(dir.path()).await.expect("meta");
        let s = crate::meta::suite::stream("kept", 24);
        meta.create_stream(&s, &Tags::new(), 10).await.expect("stream");
        (meta, s.arn, dir)
    }

    #[tokio::test]
    async fn renewals_keep_it_and_a_takeover_is_reported_lost() {
        let (meta, arn, _dir) = store_with_stream().await;
        let (mut keeper, lease) = LeaseKeeper::acquire(meta.clone(), &arn, "a", 300).await.expect("acquire");
        assert_eq!(lease.epoch, 1);
        // Three renewal periods later it is still held (renewed, not lapsed).
        tokio::time::sleep(Duration::from_millis(450)).await;
        let stored = meta.lease(&arn).await.expect("lease").expect("row");
        assert!(stored.held_by("a", crate::signaling::cluster::now_ms()), "{stored:?}");
        assert!(tokio::time::timeout(Duration::from_millis(10), keeper.lost()).await.is_err(), "not lost");
        // A newer session (here: on the same node) takes the stream: the keeper reports loss.
        let newer = meta.acquire_lease(&arn, "a", crate::signaling::cluster::now_ms(), 300).await.expect("take");
        assert_eq!(newer.epoch, 2);
        tokio::time::timeout(Duration::from_secs(2), keeper.lost()).await.expect("loss reported");
        // Dropping the old keeper does not release the newer lease.
        drop(keeper);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(meta.lease(&arn).await.expect("lease"), Some(newer));
    }

    #[tokio::test]
    async fn dropping_releases() {
        let (meta, arn, _dir) = store_with_stream().await;
        let (keeper, _) = LeaseKeeper::acquire(meta.clone(), &arn, "a", 10_000).await.expect("acquire");
        drop(keeper);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(meta.lease(&arn).await.expect("lease").map(|l| l.expires_ms), Some(0));
        let other = meta.acquire_lease(&arn, "b", crate::signaling::cluster::now_ms(), 10_000).await.expect("free");
        assert_eq!(other.epoch, 2);
    }
}
