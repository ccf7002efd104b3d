//! The reorder buffer: a ring indexed by sequence number offset from the next expected packet.
//!
//! In the common case (the next expected packet, nothing waiting) a packet is handed straight
//! back to be consumed without a copy. Packets ahead of a missing one are copied into the ring
//! (payload buffers are recycled) until the gap fills or is given up. Ring slot 0 is always the
//! missing packet while anything waits, so a gap never needs a search.

use std::collections::VecDeque;

use super::{MAX_BUFFERED_BYTES, MAX_BUFFERED_PACKETS, RtpIn};

/// Spare payload buffers kept for reuse.
const MAX_SPARE: usize = 64;
/// Largest spare buffer kept (bigger ones are freed).
const MAX_SPARE_CAPACITY: usize = 4096;

/// A packet waiting in the ring.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) seq: u64,
    pub(super) rtp_time: u64,
    pub(super) marker: bool,
    pub(super) arrival_us: i64,
    pub(super) payload: Vec<u8>,
}

/// What [`Reorder::insert`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Insert {
    /// It is the next expected packet: consume it now, then drain.
    Next,
    /// It waits in the ring (drain: it may have been the missing one).
    Buffered,
    /// Its sequence number was already consumed or given up.
    Late,
    /// The same sequence number is already waiting.
    Duplicate,
    /// The sender jumped: `dropped` waiting packets were discarded, the stream restarts at
    /// this packet, which is to be consumed now.
    Reset { dropped: u64 },
}

/// Sequence-order reassembly of one stream.
#[derive(Debug, Default)]
pub(super) struct Reorder {
    /// The first packet has been seen (`next` is meaningful).
    started: bool,
    /// Sequence number of the next packet to consume (ring slot 0).
    next: u64,
    /// Slot `i` holds sequence number `next + i`; slot 0 is `None` whenever the ring is not empty.
    ring: VecDeque<Option<Slot>>,
    /// Packets in the ring.
    held: usize,
    /// Payload bytes in the ring.
    bytes: usize,
    /// Earliest arrival among the packets in the ring.
    oldest: Option<i64>,
    /// `oldest` may be too early (its packet left the ring); recomputed when a drain ends.
    oldest_stale: bool,
    spare: Vec<Vec<u8>>,
}

impl Reorder {
    /// Places a packet (see [`Insert`]).
    pub(super) fn insert(&mut self, p: &RtpIn<'_>) -> Insert {
        if !self.started {
            self.started = true;
            self.next = p.seq;
        }
        let Some(offset) = p.seq.checked_sub(self.next) else { return Insert::Late };
        if offset == 0 {
            self.ring.pop_front();
            self.next = self.next.saturating_add(1);
            return Insert::Next;
        }
        let Ok(offset) = usize::try_from(offset) else { return self.reset(p.seq) };
        if offset >= MAX_BUFFERED_PACKETS {
            return self.reset(p.seq);
        }
        if self.ring.get(offset).is_some_and(Option::is_some) {
            return Insert::Duplicate;
        }
        if self.bytes.saturating_add(p.payload.len()) > MAX_BUFFERED_BYTES {
            return self.reset(p.seq);
        }
        if self.ring.len() <= offset {
            self.ring.resize_with(offset + 1, || None);
        }
        let mut payload = self.spare.pop().unwrap_or_default();
        payload.extend_from_slice(p.payload);
        if let Some(slot) = self.ring.get_mut(offset) {
            *slot =
                Some(Slot { seq: p.seq, rtp_time: p.rtp_time, marker: p.marker, arrival_us: p.arrival_us, payload });
        }
        self.held += 1;
        self.bytes += p.payload.len();
        self.oldest = Some(self.oldest.map_or(p.arrival_us, |o| o.min(p.arrival_us)));
        Insert::Buffered
    }

    /// Discards everything waiting and restarts after `seq` (which is consumed by the caller).
    fn reset(&mut self, seq: u64) -> Insert {
        let dropped = self.held as u64;
        while let Some(slot) = self.ring.pop_front() {
            if let Some(s) = slot {
                self.recycle(s);
            }
        }
        self.held = 0;
        self.bytes = 0;
        self.oldest = None;
        self.oldest_stale = false;
        self.next = seq.saturating_add(1);
        Insert::Reset { dropped }
    }

    /// The next packet in sequence, if it is waiting.
    pub(super) fn pop_ready(&mut self) -> Option<Slot> {
        if !self.ring.front().is_some_and(Option::is_some) {
            if self.oldest_stale {
                self.oldest_stale = false;
                self.oldest = self.ring.iter().flatten().map(|s| s.arrival_us).min();
            }
            return None;
        }
        let slot = self.ring.pop_front().flatten()?;
        self.next = self.next.saturating_add(1);
        self.held -= 1;
        self.bytes -= slot.payload.len();
        if self.held == 0 {
            self.oldest = None;
            self.oldest_stale = false;
        } else if self.oldest.is_some_and(|o| slot.arrival_us <= o) {
            self.oldest_stale = true;
        }
        Some(slot)
    }

    /// Returns a consumed slot's payload buffer for reuse.
    pub(super) fn recycle(&mut self, slot: Slot) {
        let mut payload = slot.payload;
        if self.spare.len() < MAX_SPARE && payload.capacity() <= MAX_SPARE_CAPACITY {
            payload.clear();
            self.spare.push(payload);
        }
    }

    /// Whether the missing packet at the front must be given up at `now_us`.
    pub(super) fn gap_expired(&self, now_us: i64, hold_back: usize, max_wait_us: i64) -> bool {
        self.held > 0 && (self.held > hold_back || self.oldest.is_some_and(|o| now_us.saturating_sub(o) >= max_wait_us))
    }

    /// Skips the missing run at the front; returns how many sequence numbers it spanned.
    pub(super) fn skip_gap(&mut self) -> u64 {
        let mut skipped = 0;
        while self.ring.front().is_some_and(Option::is_none) {
            self.ring.pop_front();
            self.next = self.next.saturating_add(1);
            skipped += 1;
        }
        skipped
    }

    /// When the oldest waiting packet will have waited `max_wait_us`.
    pub(super) fn deadline(&self, max_wait_us: i64) -> Option<i64> {
        self.oldest.map(|o| o.saturating_add(max_wait_us))
    }

    /// Packets waiting.
    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// Slots in the ring (waiting packets and the gaps between them).
    #[cfg(test)]
    pub(super) fn ring_len(&self) -> usize {
        self.ring.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(seq: u64, arrival_us: i64) -> RtpIn<'static> {
        RtpIn { seq, rtp_time: 0, marker: false, arrival_us, payload: &[1, 2, 3] }
    }

    #[test]
    fn in_order_packets_pass_straight_through_without_buffering() {
        let mut r = Reorder::default();
        for seq in 100..110 {
            assert_eq!(r.insert(&pkt(seq, 0)), Insert::Next);
        }
        assert_eq!((r.held(), r.ring.len(), r.deadline(10)), (0, 0, None));
    }

    #[test]
    fn waiting_packets_drain_in_order_once_the_gap_fills() {
        let mut r = Reorder::default();
        assert_eq!(r.insert(&pkt(10, 0)), Insert::Next);
        assert_eq!(r.insert(&pkt(13, 5)), Insert::Buffered);
        assert_eq!(r.insert(&pkt(12, 7)), Insert::Buffered);
        assert_eq!(r.insert(&pkt(12, 8)), Insert::Duplicate);
        assert!(r.pop_ready().is_none(), "11 is missing");
        assert_eq!((r.held(), r.deadline(100)), (2, Some(105)));
        assert_eq!(r.insert(&pkt(11, 9)), Insert::Next);
        let drained: Vec<u64> = std::iter::from_fn(|| r.pop_ready()).map(|s| s.seq).collect();
        assert_eq!(drained, vec![12, 13]);
        assert_eq!((r.held(), r.bytes, r.deadline(100)), (0, 0, None));
        assert_eq!(r.insert(&pkt(12, 9)), Insert::Late);
        assert_eq!(r.insert(&pkt(14, 9)), Insert::Next);
    }

    #[test]
    fn skipping_a_gap_moves_to_the_next_waiting_packet_and_recomputes_the_oldest_arrival() {
        let mut r = Reorder::default();
        r.insert(&pkt(0, 0));
        r.insert(&pkt(3, 50));
        r.insert(&pkt(2, 40));
        r.insert(&pkt(6, 30));
        assert_eq!(r.deadline(0), Some(30));
        assert!(r.gap_expired(0, 2, 1_000), "3 waiting > hold back 2");
        assert!(!r.gap_expired(1_029, 3, 1_000));
        assert!(r.gap_expired(1_030, 3, 1_000));
        assert_eq!(r.skip_gap(), 1);
        let drained: Vec<u64> = std::iter::from_fn(|| r.pop_ready()).map(|s| s.seq).collect();
        assert_eq!(drained, vec![2, 3]);
        assert_eq!((r.held(), r.deadline(0)), (1, Some(30)));
        assert_eq!(r.skip_gap(), 2);
        assert_eq!(r.pop_ready().map(|s| s.seq), Some(6));
        assert_eq!(r.insert(&pkt(7, 0)), Insert::Next);
    }

    #[test]
    fn a_jump_of_the_buffer_capacity_resets() {
        let mut r = Reorder::default();
        r.insert(&pkt(0, 0));
        r.insert(&pkt(5, 0));
        r.insert(&pkt(1023, 0));
        assert_eq!(r.held(), 2);
        assert_eq!(r.insert(&pkt(1025, 0)), Insert::Reset { dropped: 2 });
        assert_eq!((r.held(), r.bytes, r.ring.len()), (0, 0, 0));
        assert_eq!(r.insert(&pkt(1026, 0)), Insert::Next);
        assert_eq!(r.insert(&pkt(u64::MAX, 0)), Insert::Reset { dropped: 0 });
        assert_eq!(r.insert(&pkt(5, 0)), Insert::Late);
    }
}
