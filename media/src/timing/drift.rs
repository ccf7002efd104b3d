//! Per-track drift correction: keeps a track's stored timeline locked to its arrival
//! timeline when the sender's media clock runs slow or fast, without stepping backwards.
//!
//! The sample is the track's *lag*: arrival time since the track's first packet minus media
//! time since that packet. Network delay only ever adds to it, so the minimum over a short
//! window of arrival time ([`BLOCKS`] × [`BLOCK_US`]) is the clock difference without the
//! jitter. The first [`BASELINE_US`] of arrival set the baseline (the lag of an on-time
//! sender); afterwards the wanted correction is `window minimum − baseline` (plus any
//! lip-sync offset the caller asks for). The applied correction moves towards it:
//! - not at all while within [`DEADBAND_US`] (a well-behaved sender is never touched);
//! - slewed at most 1/[`SLEW_DIVISOR`] of the media time between two frames (10 %), so
//!   consecutive frames never swap places and a 3 % drift is followed closely;
//! - stepped at once when the gap reaches [`STEP_US`] (a sender clock that jumped, a track
//!   that resumed after a pause without advancing its RTP clock), but never so far back that
//!   a frame lands at or before the previous one of its track.
//!
//! A decrease of the lag shows at once (the minimum takes it); an increase only once the
//! window has forgotten the older samples. After an arrival pause longer than the window
//! (DTX, a network stall, a muted track) the estimate is held for one more block, so the
//! burst that ends a stall — late frames arriving faster than real time — is judged by the
//! frames that follow it, not by its first, most delayed frame. Media time that goes back
//! further than the window (a sender that restarted its clock) restarts the window.

use std::collections::VecDeque;

/// Arrival time over which the baseline lag is measured, µs.
pub const BASELINE_US: i64 = 500_000;
/// Arrival time per window block, µs.
pub const BLOCK_US: i64 = 250_000;
/// Blocks in the window (it spans 3 to 4 blocks of arrival time).
pub const BLOCKS: i64 = 4;
/// Differences up to this between wanted and applied correction are left alone, µs.
pub const DEADBAND_US: i64 = 20_000;
/// Differences of this or more are stepped instead of slewed, µs.
pub const STEP_US: i64 = 250_000;
/// The correction changes by at most 1/`SLEW_DIVISOR` of the media time between frames.
pub const SLEW_DIVISOR: i64 = 10;
/// Arrival pauses longer than this hold the estimate for one block, µs.
const PAUSE_US: i64 = (BLOCKS - 1) * BLOCK_US;
/// Smallest step between two frames of a track that a correction may leave, µs.
const MIN_FRAME_STEP_US: i64 = 1_000;

/// How a correction changed at one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjustment {
    /// Unchanged.
    None,
    /// Moved by at most the slew limit.
    Slewed,
    /// Moved at once (the gap reached [`STEP_US`], or the track had no frame placed yet).
    Stepped,
}

/// The drift state of one track.
#[derive(Debug, Clone, Default)]
pub struct DriftCorrector {
    /// Minimum lag over the first [`BASELINE_US`] of arrival, µs.
    baseline: Option<i64>,
    /// The baseline is final.
    baseline_done: bool,
    /// (arrival block index, minimum lag) of recent blocks, oldest first.
    window: VecDeque<(i64, i64)>,
    /// After an arrival pause: the estimate to use until this arrival time, µs.
    hold: Option<(i64, i64)>,
    /// Media and arrival time of the previous frame, µs since the track's first packet.
    last: Option<(i64, i64)>,
    /// Applied correction, µs.
    correction: i64,
    /// Moving towards the wanted correction (left once it is reached).
    slewing: bool,
}

impl DriftCorrector {
    /// The applied correction, µs: add it to the track's media time.
    pub fn correction_us(&self) -> i64 {
        self.correction
    }

    /// The wanted correction without lip sync (window minimum − baseline), µs; 0 while the
    /// baseline is being measured.
    pub fn drift_us(&self) -> i64 {
        if let Some((_, held)) = self.hold {
            return held;
        }
        self.window_drift()
    }

    fn window_drift(&self) -> i64 {
        match (self.baseline_done, self.baseline, self.window.iter().map(|&(_, m)| m).min()) {
            (true, Some(base), Some(min)) => min - base,
            _ => 0,
        }
    }

    /// Takes one frame: media time and arrival time since the track's first packet (µs), and
    /// an extra wanted offset (lip sync). Updates and returns the correction change.
    pub fn observe(&mut self, media_us: i64, arrival_us: i64, extra_us: i64) -> Adjustment {
        let previous = self.last.replace((media_us, arrival_us));
        self.sample(media_us, arrival_us, previous);
        let target = self.drift_us() + extra_us;
        let gap = target - self.correction;
        let Some((prev_media, _)) = previous else {
            // Nothing placed yet: start where wanted.
            let changed = gap != 0;
            self.correction = target;
            return if changed { Adjustment::Stepped } else { Adjustment::None };
        };
        let media_step = media_us - prev_media;
        // Never move this frame to or before the previous one of the track.
        let floor = (self.correction - media_step.max(0) + MIN_FRAME_STEP_US).min(self.correction);
        if gap.abs() >= STEP_US {
            let next = target.max(floor);
            self.slewing = next != target;
            return self.apply(next, Adjustment::Stepped);
        }
        if !self.slewing && gap.abs() <= DEADBAND_US {
            return Adjustment::None;
        }
        let limit = media_step.max(0) / SLEW_DIVISOR;
        let next = (self.correction + gap.clamp(-limit, limit)).max(floor);
        self.slewing = next != target;
        self.apply(next, Adjustment::Slewed)
    }

    fn apply(&mut self, next: i64, kind: Adjustment) -> Adjustment {
        if next == self.correction {
            return Adjustment::None;
        }
        self.correction = next;
        kind
    }

    /// Adds a lag sample to the baseline or the window.
    fn sample(&mut self, media_us: i64, arrival_us: i64, previous: Option<(i64, i64)>) {
        let lag = arrival_us - media_us;
        if !self.baseline_done {
            self.baseline = Some(self.baseline.map_or(lag, |b| b.min(lag)));
            self.baseline_done = arrival_us >= BASELINE_US;
        }
        if let Some((prev_media, prev_arrival)) = previous {
            if media_us < prev_media - BLOCKS * BLOCK_US {
                self.window.clear();
            }
            if arrival_us - prev_arrival > PAUSE_US {
                self.hold = Some((arrival_us + BLOCK_US, self.drift_us()));
            }
        }
        if self.hold.is_some_and(|(until, _)| arrival_us >= until) {
            self.hold = None;
        }
        let block = arrival_us.div_euclid(BLOCK_US);
        match self.window.back_mut() {
            Some((b, m)) if *b >= block => *m = (*m).min(lag),
            _ => self.window.push_back((block, lag)),
        }
        while self.window.front().is_some_and(|&(b, _)| b <= block - BLOCKS) {
            self.window.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `n` frames of `step_us` media each, arriving at `rate` × media pace plus a fixed
    /// jitter pattern; returns the worst |correction − true drift| after the baseline.
    fn run(c: &mut DriftCorrector, n: i64, step_us: i64, rate: f64) -> (i64, Vec<i64>) {
        let mut worst = 0;
        let mut placed = Vec::new();
        for i in 0..n {
            let media = i * step_us;
            let jitter = [0, 3_000, 11_000, 1_000, 7_000][(i % 5) as usize];
            let arrival = (media as f64 / rate) as i64 + jitter;
            c.observe(media, arrival, 0);
            placed.push(media + c.correction_us());
            if media > BASELINE_US + 2_000_000 {
                let truth = arrival - jitter - media;
                worst = worst.max((c.correction_us() - truth).abs());
            }
        }
        (worst, placed)
    }

    fn strictly_increasing(v: &[i64]) -> bool {
        v.windows(2).all(|w| w[1] > w[0])
    }

    #[test]
    fn an_on_time_sender_is_never_corrected() {
        let mut c = DriftCorrector::default();
        let (worst, placed) = run(&mut c, 50 * 600, 20_000, 1.0);
        assert_eq!(c.correction_us(), 0);
        assert_eq!(worst, 0);
        assert!(strictly_increasing(&placed));
    }

    #[test]
    fn slow_and_fast_clocks_are_followed_within_bounds() {
        for rate in [0.97, 1.03, 0.99, 1.01] {
            let mut c = DriftCorrector::default();
            let (worst, placed) = run(&mut c, 50 * 3_600, 20_000, rate);
            // Window staleness (≤ 1 s × 3 %) + deadband + jitter of the minimum.
            assert!(worst <= 70_000, "rate {rate}: worst {worst} µs");
            assert!(strictly_increasing(&placed), "rate {rate}");
        }
    }

    #[test]
    fn a_stall_followed_by_a_burst_does_not_move_the_correction() {
        let mut c = DriftCorrector::default();
        for i in 0..1_000i64 {
            let media = i * 20_000;
            // Frames 500..650 (3 s) are held back and arrive in a burst at the end.
            let arrival = if (500..650).contains(&i) { 650 * 20_000 - 15_000 + (i - 500) * 100 } else { media };
            c.observe(media, arrival, 0);
        }
        assert_eq!(c.correction_us(), 0);
    }

    #[test]
    fn a_clock_jump_is_stepped_without_going_backwards() {
        let mut c = DriftCorrector::default();
        let mut placed = Vec::new();
        for i in 0..500i64 {
            // Media time jumps 5 s ahead of arrival at frame 200 (the sender's clock stepped).
            let media = i * 20_000 + if i >= 200 { 5_000_000 } else { 0 };
            let arrival = i * 20_000;
            assert_ne!(c.observe(media, arrival, 0), Adjustment::Slewed, "frame {i}");
            placed.push(media + c.correction_us());
        }
        assert_eq!(c.correction_us(), -5_000_000);
        assert!(strictly_increasing(&placed));
        assert_eq!(placed[200] - placed[199], 20_000, "continuous across the jump");
    }

    #[test]
    fn a_track_that_resumes_without_advancing_its_clock_is_stepped_forward() {
        let mut c = DriftCorrector::default();
        for i in 0..500i64 {
            // 2 minutes of silence between frames 299 and 300, media time continues as if none.
            let arrival = i * 20_000 + if i >= 300 { 120_000_000 } else { 0 };
            c.observe(i * 20_000, arrival, 0);
        }
        assert_eq!(c.correction_us(), 120_000_000);
    }

    #[test]
    fn dtx_with_advancing_media_time_needs_nothing() {
        let mut c = DriftCorrector::default();
        for i in 0..500i64 {
            let t = i * 20_000 + if i >= 300 { 120_000_000 } else { 0 };
            c.observe(t, t + 5_000, 0);
        }
        assert_eq!(c.correction_us(), 0);
    }

    #[test]
    fn an_extra_offset_is_slewed_in_once_frames_were_placed() {
        let mut c = DriftCorrector::default();
        assert_eq!(c.observe(0, 0, -100_000), Adjustment::Stepped, "first frame: at once");
        assert_eq!(c.correction_us(), -100_000);
        let mut c = DriftCorrector::default();
        c.observe(0, 0, 0);
        let mut placed = vec![0];
        for i in 1..100i64 {
            c.observe(i * 20_000, i * 20_000, -100_000);
            placed.push(i * 20_000 + c.correction_us());
        }
        assert_eq!(c.correction_us(), -100_000);
        assert!(strictly_increasing(&placed));
        assert!(placed.windows(2).all(|w| w[1] - w[0] >= 18_000), "{placed:?}");
    }
}
