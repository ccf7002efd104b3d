//! Stream writer leases (cluster mode): which node may append to a stream, sans-IO.
//!
//! Each stream has at most one writer at a time. A node takes the stream's lease before its
//! storage session writes and renews it well before it expires; every take issues a new
//! **epoch** (the fencing token) from one cluster-wide counter, so epochs are unique across
//! streams and grow per stream. The newest take wins: a writer that lost its lease — paused,
//! partitioned, or replaced by a newer JoinStorageSession — is refused at its next renewal and
//! at its next fragment insert (the fragment catalog checks the epoch), even if its lease row
//! still names its node. Releasing keeps the epoch (setting the expiry to 0).
//!
//! Times are wall-clock ms passed in by the caller (the backends store them); nodes need
//! clocks synchronized well within the lease length (NTP), and a writer also stops on its
//! own monotonic deadline ([`Lease::expires_ms`] minus a margin) when it cannot renew.

use super::MetaError;

/// A stream's lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The stream.
    pub stream_arn: String,
    /// The node that holds (or last held) it.
    pub holder: String,
    /// Fencing epoch: strictly increases with every take.
    pub epoch: u64,
    /// When it lapses unless renewed (0 after a release), ms since the Unix epoch.
    pub expires_ms: u64,
}

impl Lease {
    /// Whether `node` holds it at `now_ms`.
    pub fn held_by(&self, node: &str, now_ms: u64) -> bool {
        self.holder == node && self.expires_ms > now_ms
    }
}

/// The lease `node` gets when it takes the stream at `now_ms` with `epoch`, the next value
/// of the cluster-wide epoch counter (never below the stored lease's epoch + 1). The newest
/// take always wins, as KVS's newest JoinStorageSession does: the previous holder, on any
/// node, is fenced — its renewals and its fragment inserts are refused from now on.
pub fn take(stream_arn: &str, current: Option<&Lease>, node: &str, now_ms: u64, lease_ms: u64, epoch: u64) -> Lease {
    Lease {
        stream_arn: stream_arn.into(),
        holder: node.into(),
        epoch: epoch.max(current.map_or(1, |l| l.epoch.saturating_add(1))),
        expires_ms: now_ms.saturating_add(lease_ms),
    }
}

/// The renewed lease of `node` at `epoch`, or [`MetaError::LeaseLost`] when the stored lease
/// moved on (another take happened, by any node) — the writer must stop.
pub fn renew(
    current: Option<&Lease>,
    stream_arn: &str,
    node: &str,
    epoch: u64,
    now_ms: u64,
    lease_ms: u64,
) -> Result<Lease, MetaError> {
    match current {
        // The same epoch means nobody took the stream since: renewing is safe even if it lapsed.
        Some(l) if l.holder == node && l.epoch == epoch && l.expires_ms > 0 => {
            Ok(Lease { expires_ms: now_ms.saturating_add(lease_ms), ..l.clone() })
        }
        _ => Err(MetaError::LeaseLost { stream: stream_arn.into(), epoch }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "arn:s";
    const LEASE: u64 = 10_000;

    #[test]
    fn the_newest_take_wins_and_fences_the_older_writer() {
        let a = take(S, None, "a", 1_000, LEASE, 7);
        assert_eq!((a.epoch, a.expires_ms), (7, 11_000));
        let b = take(S, Some(&a), "b", 2_000, LEASE, 9);
        assert_eq!((b.holder.as_str(), b.epoch), ("b", 9));
        // The stale writer is refused at its next renewal.
        assert!(matches!(renew(Some(&b), S, "a", 7, 2_500, LEASE), Err(MetaError::LeaseLost { epoch: 7, .. })));
        assert_eq!(renew(Some(&b), S, "b", 9, 3_000, LEASE).expect("renew").expires_ms, 13_000);
        // An epoch counter behind the stored lease still moves the epoch forward.
        assert_eq!(take(S, Some(&b), "a", 4_000, LEASE, 3).epoch, 10);
    }

    #[test]
    fn a_new_take_on_the_same_node_fences_the_older_session() {
        let first = take(S, None, "a", 0, LEASE, 1);
        let second = take(S, Some(&first), "a", 5, LEASE, 2);
        assert_eq!(second.epoch, 2);
        assert!(renew(Some(&second), S, "a", 1, 6, LEASE).is_err(), "the older session's epoch is dead");
    }

    #[test]
    fn release_frees_without_going_back_in_epoch() {
        let a = take(S, None, "a", 0, LEASE, 1);
        let released = Lease { expires_ms: 0, ..a };
        assert!(renew(Some(&released), S, "a", 1, 1, LEASE).is_err(), "a released lease cannot be renewed");
        let b = take(S, Some(&released), "b", 1, LEASE, 1);
        assert_eq!(b.epoch, 2);
        assert!(!b.held_by("a", 2) && b.held_by("b", 2) && !b.held_by("b", 10_001));
    }
}
