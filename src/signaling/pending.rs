//! Messages held for a recipient that is not connected, sans-IO (time passed in).
//!
//! KVS keeps an undelivered message for the channel's `MessageTtlSeconds` and delivers it
//! if the recipient connects in time; a newer offer or answer from the same sender to the
//! same recipient replaces the pending one (docs/kvs-wire.md §3.3). reel also drops the candidates
//! that sender queued before the replaced SDP: they belong to the superseded negotiation.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::message::SignalingMessage;

/// One end of a channel: the master or a viewer (a connection's role, a message's recipient).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Party {
    /// The channel's master.
    Master,
    /// The viewer with this ClientId.
    Viewer(String),
}

/// One held message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The sending viewer's ClientId; `None` when the master sent it.
    pub sender: Option<String>,
    /// The message.
    pub message: SignalingMessage,
    /// When it stops being deliverable.
    pub expires: Instant,
}

/// Held messages of one channel, by recipient, in arrival order.
#[derive(Debug, Default)]
pub struct PendingQueue {
    by_recipient: HashMap<Party, VecDeque<Held>>,
}

impl PendingQueue {
    /// Hold `held` for `recipient`, keeping at most `cap` messages for it (oldest dropped).
    pub fn push(&mut self, recipient: Party, held: Held, cap: usize, now: Instant) {
        let queue = self.by_recipient.entry(recipient).or_default();
        queue.retain(|h| h.expires > now);
        if held.message.kind.is_sdp() {
            // The new offer/answer supersedes everything this sender queued before.
            queue.retain(|h| h.sender != held.sender);
        }
        queue.push_back(held);
        while queue.len() > cap.max(1) {
            queue.pop_front();
        }
    }

    /// Remove and return the still-valid messages for `recipient`, oldest first.
    pub fn take(&mut self, recipient: &Party, now: Instant) -> Vec<Held> {
        self.by_recipient
            .remove(recipient)
            .map(|q| q.into_iter().filter(|h| h.expires > now).collect())
            .unwrap_or_default()
    }

    /// Forget expired messages.
    pub fn sweep(&mut self, now: Instant) {
        self.by_recipient.retain(|_, q| {
            q.retain(|h| h.expires > now);
            !q.is_empty()
        });
    }

    /// No message held.
    pub fn is_empty(&self) -> bool {
        self.by_recipient.is_empty()
    }

    /// Number of held messages (all recipients).
    pub fn len(&self) -> usize {
        self.by_recipient.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::message::MessageKind;
    use std::time::Duration;

    fn held(sender: Option<&str>, kind: MessageKind, payload: &str, expires: Instant) -> Held {
        Held {
            sender: sender.map(str::to_string),
            message: SignalingMessage { kind, payload: payload.into() },
            expires,
        }
    }

    #[test]
    fn delivers_in_order_until_ttl() {
        let t0 = Instant::now();
        let ttl = t0 + Duration::from_secs(60);
        let mut q = PendingQueue::default();
        let v1 = Party::Viewer("v1".into());
        q.push(v1.clone(), held(None, MessageKind::SdpOffer, "o", ttl), 64, t0);
        q.push(v1.clone(), held(None, MessageKind::IceCandidate, "c", ttl), 64, t0);
        assert_eq!(q.len(), 2);
        let got = q.take(&v1, t0 + Duration::from_secs(59));
        assert_eq!(got.iter().map(|h| h.message.payload.as_str()).collect::<Vec<_>>(), ["o", "c"]);
        assert!(q.is_empty());

        q.push(v1.clone(), held(None, MessageKind::SdpOffer, "o", ttl), 64, t0);
        assert!(q.take(&v1, t0 + Duration::from_secs(60)).is_empty(), "expired at the TTL");
    }

    #[test]
    fn newer_sdp_from_the_same_sender_replaces_the_pending_one() {
        let t0 = Instant::now();
        let ttl = t0 + Duration::from_secs(60);
        let mut q = PendingQueue::default();
        q.push(Party::Master, held(Some("a"), MessageKind::SdpOffer, "a1", ttl), 64, t0);
        q.push(Party::Master, held(Some("a"), MessageKind::IceCandidate, "a1c", ttl), 64, t0);
        q.push(Party::Master, held(Some("b"), MessageKind::SdpOffer, "b1", ttl), 64, t0);
        q.push(Party::Master, held(Some("a"), MessageKind::SdpOffer, "a2", ttl), 64, t0);
        q.push(Party::Master, held(Some("a"), MessageKind::IceCandidate, "a2c", ttl), 64, t0);
        let got = q.take(&Party::Master, t0);
        assert_eq!(got.iter().map(|h| h.message.payload.as_str()).collect::<Vec<_>>(), ["b1", "a2", "a2c"]);
    }

    #[test]
    fn cap_drops_the_oldest_and_sweep_frees_expired() {
        let t0 = Instant::now();
        let mut q = PendingQueue::default();
        let v = Party::Viewer("v".into());
        for i in 0..5 {
            q.push(
                v.clone(),
                held(None, MessageKind::IceCandidate, &i.to_string(), t0 + Duration::from_secs(10)),
                3,
                t0,
            );
        }
        q.push(Party::Master, held(Some("v"), MessageKind::IceCandidate, "m", t0 + Duration::from_secs(5)), 3, t0);
        q.sweep(t0 + Duration::from_secs(5));
        assert_eq!(q.len(), 3);
        let got = q.take(&v, t0);
        assert_eq!(got.iter().map(|h| h.message.payload.as_str()).collect::<Vec<_>>(), ["2", "3", "4"]);
        q.sweep(t0 + Duration::from_secs(10));
        assert!(q.is_empty());
    }
}
