//! The per-channel viewer cap of storage sessions (sans-IO, time passed in).
//!
//! KVS allows `max_viewers` (3) viewers per storage session. A viewer's seat is taken by
//! JoinStorageSessionAsViewer and stays taken for `hold` (1 min) after its session ends;
//! a call with the same ClientId — a rejoin within that minute, or a newer call replacing
//! a live viewer session — reuses the seat and takes no more quota.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The cap was reached (answered `ClientLimitExceededException`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the maximum number of viewers connected to the session ({0}) has been reached")]
pub struct ViewersFull(pub usize);

#[derive(Debug, Clone, Copy)]
struct Seat {
    /// The viewer session holding it, while it runs.
    live: Option<u64>,
    /// When its last session ended.
    released: Option<Instant>,
}

/// Seats per channel and ClientId.
#[derive(Debug)]
pub struct ViewerQuota {
    max: usize,
    hold: Duration,
    channels: HashMap<String, HashMap<String, Seat>>,
}

impl ViewerQuota {
    /// `max` seats per channel, each held `hold` after its session ends.
    pub fn new(max: usize, hold: Duration) -> Self {
        Self { max, hold, channels: HashMap::new() }
    }

    /// Takes (or reuses) `client_id`'s seat for viewer session `session`.
    pub fn take(&mut self, channel: &str, client_id: &str, session: u64, now: Instant) -> Result<(), ViewersFull> {
        self.prune(now);
        let seats = self.channels.entry(channel.to_string()).or_default();
        if let Some(seat) = seats.get_mut(client_id) {
            *seat = Seat { live: Some(session), released: None };
            return Ok(());
        }
        if seats.len() >= self.max {
            if seats.is_empty() {
                self.channels.remove(channel);
            }
            return Err(ViewersFull(self.max));
        }
        seats.insert(client_id.to_string(), Seat { live: Some(session), released: None });
        Ok(())
    }

    /// Viewer session `session` ended: its seat is held for the rejoin window (no-op if a
    /// newer session took the seat).
    pub fn release(&mut self, channel: &str, client_id: &str, session: u64, now: Instant) {
        if let Some(seat) = self.channels.get_mut(channel).and_then(|s| s.get_mut(client_id))
            && seat.live == Some(session)
        {
            *seat = Seat { live: None, released: Some(now) };
        }
    }

    /// Whether any viewer session of `channel` is live.
    pub fn has_live(&self, channel: &str) -> bool {
        self.channels.get(channel).is_some_and(|s| s.values().any(|seat| seat.live.is_some()))
    }

    /// Seats taken on `channel` at `now` (live or held).
    pub fn taken(&mut self, channel: &str, now: Instant) -> usize {
        self.prune(now);
        self.channels.get(channel).map_or(0, HashMap::len)
    }

    fn prune(&mut self, now: Instant) {
        let hold = self.hold;
        self.channels.retain(|_, seats| {
            seats
                .retain(|_, s| s.live.is_some() || s.released.is_some_and(|r| now.saturating_duration_since(r) < hold));
            !seats.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_seats_held_a_minute_and_reused_by_the_same_client() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut q = ViewerQuota::new(3, s(60));
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            q.take("ch", id, i as u64, t0).expect("seat");
        }
        assert_eq!(q.take("ch", "d", 9, t0), Err(ViewersFull(3)));
        assert!(q.take("other", "d", 9, t0).is_ok(), "per channel");
        // A newer call with the same client id replaces its session on the same seat.
        q.take("ch", "a", 10, t0).expect("same client");
        q.release("ch", "a", 0, t0); // the replaced session's end changes nothing
        assert_eq!(q.take("ch", "d", 11, t0 + s(1)), Err(ViewersFull(3)));
        // "b" leaves: its seat stays taken for a minute, and "b" may come back on it.
        q.release("ch", "b", 1, t0 + s(10));
        assert_eq!(q.take("ch", "d", 12, t0 + s(69)), Err(ViewersFull(3)));
        q.take("ch", "b", 13, t0 + s(20)).expect("rejoin within the minute");
        q.release("ch", "b", 13, t0 + s(30));
        assert_eq!(q.taken("ch", t0 + s(89)), 3);
        assert_eq!(q.taken("ch", t0 + s(90)), 2);
        q.take("ch", "d", 14, t0 + s(90)).expect("seat free after the hold");
        assert!(q.has_live("ch"));
    }
}
