//! The message quotas of one signaling WebSocket connection (SDP and ICE, per second).

use std::time::Instant;

use crate::rate::TokenBucket;

use super::message::MessageKind;

/// The message quotas of one WebSocket connection: SDP offers/answers and ICE candidates.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionQuota {
    sdp: TokenBucket,
    ice: TokenBucket,
}

impl ConnectionQuota {
    /// Buckets for `sdp_tps` and `ice_tps`, full at `now`.
    pub fn new(sdp_tps: f64, ice_tps: f64, now: Instant) -> Self {
        Self { sdp: TokenBucket::per_second(sdp_tps, now), ice: TokenBucket::per_second(ice_tps, now) }
    }

    /// Take one message of `kind`; `false` = throttled.
    pub fn admit(&mut self, kind: MessageKind, now: Instant) -> bool {
        let bucket = if kind.is_sdp() { &mut self.sdp } else { &mut self.ice };
        bucket.try_take(1.0, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sdp_and_ice_have_separate_budgets() {
        let t0 = Instant::now();
        let mut q = ConnectionQuota::new(5.0, 20.0, t0);
        for _ in 0..5 {
            assert!(q.admit(MessageKind::SdpOffer, t0));
        }
        assert!(!q.admit(MessageKind::SdpAnswer, t0));
        for _ in 0..20 {
            assert!(q.admit(MessageKind::IceCandidate, t0));
        }
        assert!(!q.admit(MessageKind::IceCandidate, t0));
        let t1 = t0 + Duration::from_millis(200);
        assert!(q.admit(MessageKind::SdpOffer, t1), "one SDP token refills in 200 ms");
        assert!(!q.admit(MessageKind::SdpOffer, t1));
        assert!(q.admit(MessageKind::IceCandidate, t1));
        assert!(q.admit(MessageKind::IceCandidate, t1));
        assert!(q.admit(MessageKind::IceCandidate, t1));
        assert!(q.admit(MessageKind::IceCandidate, t1));
        assert!(!q.admit(MessageKind::IceCandidate, t1));
    }
}
