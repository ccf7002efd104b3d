//! Keeps this node's storage sessions' stream writer leases (see [`crate::meta::lease`])
//! while they run. One [`LeaseRenewer`] per node renews every lease the node holds in one
//! metadata statement ([`MetaStore::renew_leases`]) every quarter of the lease length
//! (sooner after a failure), so the database sees one renewal per node and period however
//! many streams the node writes. A session's [`LeaseKeeper`] reports its lease **lost** when
//! a renewal leaves it out (another session took the stream: a newer JoinStorageSession, or
//! another node after this one stalled) or when no renewal succeeded before the local
//! deadline — the lease's length minus a margin, measured on this node's monotonic clock
//! from the last successful renewal's start — so a paused or partitioned writer stops
//! before another node could take the stream over. Dropping a keeper releases its lease.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::lock;
use crate::meta::{Lease, MetaError, MetaStore};

/// Part of the lease this node never uses: it stops this much before the lease could lapse
/// in the database, covering clock-rate differences and the renewal's own latency.
const SAFETY_MARGIN_FRACTION: u32 = 5;
/// Renewals per lease length: a database outage of up to lease × (1 − 1/5 − 1/4) — 5.5 s of
/// the default 10 s lease — never stops a writer.
const RENEWALS_PER_LEASE: u64 = 4;
/// After a failed renewal, the next attempt comes this soon (until the local deadline).
const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(200);
/// Lease renewals by outcome, per lease: `renewed`, `taken_over` (another session holds the
/// stream now), `expired` (no renewal before the local deadline) and `failed` (the
/// statement failed or timed out; retried).
pub const LEASE_RENEWALS: &str = "reel_cluster_lease_renewals_total";

/// This node's writer leases and their one renewal task (running while any is held).
#[derive(Clone, Debug)]
pub struct LeaseRenewer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    meta: Arc<dyn MetaStore>,
    node: String,
    lease_ms: u64,
    state: Mutex<Held>,
}

/// The leases held, by (stream, epoch), and whether the renewal task runs.
#[derive(Debug, Default)]
struct Held {
    leases: HashMap<(String, u64), Keeping>,
    renewing: bool,
}

/// One held lease: until when it is surely still ours, and its session's loss signal.
#[derive(Debug)]
struct Keeping {
    valid_until: Instant,
    lost: watch::Sender<bool>,
}

impl LeaseRenewer {
    /// The renewer of `node`'s leases, each `lease_ms` long.
    pub fn new(meta: Arc<dyn MetaStore>, node: &str, lease_ms: u64) -> Self {
        Self { shared: Arc::new(Shared { meta, node: node.into(), lease_ms, state: Mutex::default() }) }
    }

    /// Takes the lease of `stream_arn` for this node now; it is renewed with the node's
    /// others until the returned keeper is dropped or reports it lost.
    pub async fn acquire(&self, stream_arn: &str) -> Result<(LeaseKeeper, Lease), MetaError> {
        let sh = &self.shared;
        let started = Instant::now();
        let lease =
            sh.meta.acquire_lease(stream_arn, &sh.node, crate::signaling::cluster::now_ms(), sh.lease_ms).await?;
        let (tx, lost) = watch::channel(false);
        let start_task = {
            let mut held = lock(&sh.state);
            let keeping = Keeping { valid_until: deadline(started, sh.lease_ms), lost: tx };
            held.leases.insert((stream_arn.into(), lease.epoch), keeping);
            !std::mem::replace(&mut held.renewing, true)
        };
        if start_task {
            tokio::spawn(renew_loop(sh.clone()));
        }
        let release = Release { shared: sh.clone(), stream_arn: stream_arn.into(), epoch: lease.epoch };
        Ok((LeaseKeeper { lost, release: Some(release) }, lease))
    }
}

/// A storage session's held lease; dropping it releases the lease.
#[derive(Debug)]
pub struct LeaseKeeper {
    lost: watch::Receiver<bool>,
    release: Option<Release>,
}

#[derive(Debug)]
struct Release {
    shared: Arc<Shared>,
    stream_arn: String,
    epoch: u64,
}

impl LeaseKeeper {
    /// The media store's fence for this lease: the node and epoch its fragments are
    /// written and indexed under.
    pub fn fence(&self) -> Option<reel_storage::Fence> {
        self.release.as_ref().map(|r| reel_storage::Fence { holder: r.shared.node.clone(), epoch: r.epoch })
    }

    /// Resolves once the lease is lost (never while it is held).
    pub async fn lost(&mut self) {
        // An error means the renewer dropped the lease, which it does only after reporting loss.
        let _ = self.lost.wait_for(|lost| *lost).await;
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        let Some(r) = self.release.take() else { return };
        lock(&r.shared.state).leases.remove(&(r.stream_arn.clone(), r.epoch));
        // Released even when reported lost: a no-op once another epoch took the stream,
        // and a lapsed lease of ours frees the stream at once instead of at its expiry.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = r.shared.meta.release_lease(&r.stream_arn, &r.shared.node, r.epoch).await {
                    tracing::warn!(stream = %r.stream_arn, error = %e, "cannot release the writer lease; it lapses on its own");
                }
            });
        }
    }
}

impl Keeping {
    /// Tells the session its lease is lost (`outcome`: `expired` or `taken_over`), logged
    /// and counted; the caller drops the lease from the held set.
    fn report_lost(&self, stream: &str, epoch: u64, outcome: &'static str) {
        tracing::warn!(%stream, epoch, outcome, "writer lease lost; stopping the writer");
        metrics::counter!(LEASE_RENEWALS, "outcome" => outcome).increment(1);
        let _ = self.lost.send(true);
    }
}

/// The local deadline of a lease renewed at `renewed` (monotonic).
fn deadline(renewed: Instant, lease_ms: u64) -> Instant {
    let lease = Duration::from_millis(lease_ms);
    renewed + lease - lease / SAFETY_MARGIN_FRACTION
}

/// Renews the node's leases every period until none is held, reporting the ones lost.
async fn renew_loop(sh: Arc<Shared>) {
    let every = Duration::from_millis((sh.lease_ms / RENEWALS_PER_LEASE).max(1));
    let mut next = Instant::now() + every;
    loop {
        let (batch, soonest) = {
            let mut held = lock(&sh.state);
            let now = Instant::now();
            held.leases.retain(|(stream, epoch), k| {
                let keep = k.valid_until > now;
                if !keep {
                    k.report_lost(stream, *epoch, "expired");
                }
                keep
            });
            let Some(soonest) = held.leases.values().map(|k| k.valid_until).min() else {
                held.renewing = false;
                return;
            };
            if now < next { (None, soonest) } else { (Some(held.leases.keys().cloned().collect::<Vec<_>>()), soonest) }
        };
        let Some(batch) = batch else {
            tokio::time::sleep_until(next.min(soonest)).await;
            continue;
        };
        let attempt = Instant::now();
        let renewal = sh.meta.renew_leases(&sh.node, &batch, crate::signaling::cluster::now_ms(), sh.lease_ms);
        match tokio::time::timeout_at(soonest, renewal).await {
            Ok(Ok(renewed)) => {
                let renewed: HashSet<(&str, u64)> = renewed.iter().map(|l| (l.stream_arn.as_str(), l.epoch)).collect();
                metrics::counter!(LEASE_RENEWALS, "outcome" => "renewed").increment(renewed.len() as u64);
                let mut held = lock(&sh.state);
                for key in batch {
                    if renewed.contains(&(key.0.as_str(), key.1)) {
                        if let Some(k) = held.leases.get_mut(&key) {
                            k.valid_until = deadline(attempt, sh.lease_ms);
                        }
                    } else if let Some(k) = held.leases.remove(&key) {
                        k.report_lost(&key.0, key.1, "taken_over");
                    }
                }
                next = attempt + every;
            }
            // The database is unreachable: keep trying until each lease's local deadline.
            outcome => {
                if let Ok(Err(e)) = outcome {
                    tracing::warn!(error = %e, leases = batch.len(), "writer lease renewal failed; retrying");
                }
                metrics::counter!(LEASE_RENEWALS, "outcome" => "failed").increment(batch.len() as u64);
                next = Instant::now() + RETRY_AFTER_FAILURE;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Tags;

    async fn store_with_streams(names: &[&str]) -> (Arc<dyn MetaStore>, Vec<String>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = crate::meta::open(dir.path()).await.expect("meta");
        let mut arns = Vec::new();
        for name in names {
            let s = crate::meta::suite::stream(name, 24);
            meta.create_stream(&s, &Tags::new(), 10).await.expect("stream");
            arns.push(s.arn);
        }
        (meta, arns, dir)
    }

    fn held_by_a(l: Option<Lease>) -> bool {
        l.is_some_and(|l| l.held_by("a", crate::signaling::cluster::now_ms()))
    }

    #[tokio::test]
    async fn renewals_keep_them_and_a_takeover_is_reported_lost() {
        let (meta, arns, _dir) = store_with_streams(&["kept", "taken"]).await;
        let renewer = LeaseRenewer::new(meta.clone(), "a", 300);
        let (mut kept, lease) = renewer.acquire(&arns[0]).await.expect("acquire");
        assert_eq!(lease.epoch, 1);
        let (mut taken, _) = renewer.acquire(&arns[1]).await.expect("acquire");
        // Three renewal periods later both are still held (renewed, not lapsed).
        tokio::time::sleep(Duration::from_millis(450)).await;
        for arn in &arns {
            assert!(held_by_a(meta.lease(arn).await.expect("lease")), "{arn} renewed");
        }
        assert!(tokio::time::timeout(Duration::from_millis(10), kept.lost()).await.is_err(), "not lost");
        // A newer session (here: on the same node) takes one stream: only its keeper
        // reports loss; the other lease is renewed on.
        let newer = meta.acquire_lease(&arns[1], "a", crate::signaling::cluster::now_ms(), 300).await.expect("take");
        assert_eq!(newer.epoch, 3);
        tokio::time::timeout(Duration::from_secs(2), taken.lost()).await.expect("loss reported");
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert!(held_by_a(meta.lease(&arns[0]).await.expect("lease")), "the other lease renewed on");
        assert!(tokio::time::timeout(Duration::from_millis(10), kept.lost()).await.is_err(), "not lost");
        // Dropping the old keeper does not release the newer lease.
        drop(taken);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(meta.lease(&arns[1]).await.expect("lease"), Some(newer));
    }

    #[tokio::test]
    async fn dropping_releases_and_the_renewer_stops_with_the_last_lease() {
        let (meta, arns, _dir) = store_with_streams(&["kept"]).await;
        let renewer = LeaseRenewer::new(meta.clone(), "a", 10_000);
        let (keeper, _) = renewer.acquire(&arns[0]).await.expect("acquire");
        assert!(lock(&renewer.shared.state).renewing);
        drop(keeper);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(meta.lease(&arns[0]).await.expect("lease").map(|l| l.expires_ms), Some(0));
        let other = meta.acquire_lease(&arns[0], "b", crate::signaling::cluster::now_ms(), 10_000).await.expect("free");
        assert_eq!(other.epoch, 2);
        // The renewal task ends at its next period (nothing held), and a new lease starts it again.
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(3)).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(!lock(&renewer.shared.state).renewing);
    }
}
