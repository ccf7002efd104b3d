//! The timing model of the storage peer: one set of rules for every timestamp reel stores.
//!
//! Three clocks meet here:
//!
//! 1. **Media time** — each track's RTP timestamp (90 kHz video, 48 kHz audio). RTP carries
//!    only its low 32 bits, which wrap (every 13 h of video, 25 h of audio, or at any point
//!    since the start value is random). [`RtpExtender`] extends them to 64 bits by picking
//!    the value nearest to the highest one seen, so late (reordered) packets just before or
//!    after a wrap land on the right side of it. The first value is placed one full cycle up,
//!    so even a packet reordered before the very first one stays representable.
//!
//! 2. **Session time** — one timeline in µs shared by both tracks, used to order and
//!    offset frames inside a fragment. Session time 0 is the first video packet. Each track's
//!    session time is its media time since its first packet, plus the track's *correction*:
//!    - **Drift.** Senders' media clocks are not reel's clock: a cheap device's audio thread
//!      that sleeps 20 ms per 20 ms frame sends 3 % less media than real time, and its RTCP
//!      sender reports map RTP time to the wall clock, so by them every frame is later than
//!      the last. Each track is therefore kept locked to its *arrival* timeline by a
//!      [`drift::DriftCorrector`]: the minimum of (arrival − media time) over the last second
//!      of arrivals, against the same minimum over the track's first 0.5 s, is the drift; the
//!      correction follows it, untouched within ±20 ms, slewed at most 10 % of media time
//!      (never reordering frames), stepped at 250 ms or more (a clock that jumped, a track
//!      that resumed without advancing its RTP clock) but never backwards past the track's
//!      previous frame. A sender on time is never corrected, so its timestamps are its RTP
//!      timestamps exactly.
//!    - **Alignment.** Audio starts at the difference of the two tracks' first arrival times.
//!      Once both tracks have a trusted sender report, the first such pair says which RTP
//!      times the sender captured at the same instant; the difference to the arrival-based
//!      alignment (lip sync as the sender meant it, e.g. a video encoder's delay) is added to
//!      audio's wanted correction, once, if it is within a bound (1 s by default; the
//!      fragmenter uses its interleave window less 100 ms) — else it is ignored and counted.
//!
//!    Later sender reports do not move the timeline: drift is already followed on arrival,
//!    and reports that jump (a sender whose NTP clock stepped) are only counted. Bounds: with
//!    a steady drift of d (3 % = 0.03) a track's stored time stays within 20 ms + d × 1 s +
//!    the arrival jitter's minimum spread of its arrival time; so A/V stay within what a
//!    live viewer hears.
//!
//! 3. **Producer time** — wall-clock µs since the Unix epoch as the *sender* saw it:
//!    session time plus an epoch. The epoch is the arrival time of the first video packet
//!    until the first trusted sender report (video's, else audio's), then the capture time
//!    that report gives the track's first packet, and it never moves again (so fragments stay
//!    contiguous whatever later reports say). A report is trusted when the NTP time it
//!    implies for the track's first packet is within `max_producer_skew` of that packet's
//!    arrival; senders with unset or broken clocks (NTP 0, 1900) are thereby ignored and
//!    counted.
//!
//! **Server time** is simply the arrival time the caller passes in with each frame (its own
//! wall clock when the first packet of the frame arrived). Nothing here reads a clock.

pub mod drift;

use drift::{Adjustment, DriftCorrector};

/// RTP clock rate of H.264 video.
pub const VIDEO_CLOCK_RATE: u32 = 90_000;
/// RTP clock rate of Opus audio.
pub const AUDIO_CLOCK_RATE: u32 = 48_000;
/// Default largest believable distance between a sender's NTP clock and reel's arrival
/// clock, in µs (10 minutes): reports beyond it are ignored.
pub const DEFAULT_MAX_PRODUCER_SKEW_US: i64 = 10 * 60 * 1_000_000;

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;
/// One wrap of a 32-bit RTP timestamp.
const CYCLE: u64 = 1 << 32;

/// Which of the two media tracks a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// H.264 video.
    Video,
    /// Opus audio.
    Audio,
}

/// Extends 32-bit RTP timestamps to a monotonic-ish 64-bit media time.
#[derive(Debug, Clone, Default)]
pub struct RtpExtender {
    highest: Option<u64>,
}

impl RtpExtender {
    /// A fresh extender.
    pub fn new() -> Self {
        Self::default()
    }

    /// The extended value of `ts` without recording it.
    pub fn peek(&self, ts: u32) -> u64 {
        let Some(highest) = self.highest else {
            return CYCLE + u64::from(ts);
        };
        let candidate = (highest & !(CYCLE - 1)) | u64::from(ts);
        [candidate.checked_sub(CYCLE), Some(candidate), candidate.checked_add(CYCLE)]
            .into_iter()
            .flatten()
            .min_by_key(|c| c.abs_diff(highest))
            .unwrap_or(candidate)
    }

    /// Extends `ts` and records it.
    pub fn extend(&mut self, ts: u32) -> u64 {
        let v = self.peek(ts);
        self.highest = Some(self.highest.map_or(v, |h| h.max(v)));
        v
    }
}

/// Converts a tick count at `rate` Hz to µs (floor).
pub fn ticks_to_us(ticks: i64, rate: u32) -> i64 {
    let us = (i128::from(ticks) * 1_000_000).div_euclid(i128::from(rate.max(1)));
    us.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Converts µs to ms (floor, also for negative values).
pub fn us_to_ms(us: i64) -> i64 {
    us.div_euclid(1_000)
}

/// The NTP↔RTP pair of an RTCP sender report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    /// The report's NTP timestamp as µs since the Unix epoch.
    pub ntp_unix_us: i64,
    /// The RTP timestamp (low 32 bits) that corresponds to the same instant.
    pub rtp_timestamp: u32,
}

impl SenderReport {
    /// From the raw 64-bit NTP timestamp (32.32 fixed point since 1900) of the report.
    pub fn from_ntp(ntp: u64, rtp_timestamp: u32) -> Self {
        let secs = (ntp >> 32) as i64 - NTP_UNIX_OFFSET_SECS as i64;
        let frac_us = ((ntp & 0xffff_ffff) * 1_000_000) >> 32;
        Self { ntp_unix_us: secs * 1_000_000 + frac_us as i64, rtp_timestamp }
    }
}

/// A frame's times as the model sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTime {
    /// Extended RTP timestamp (media time in ticks of the track's clock).
    pub media_ticks: u64,
    /// Position on the shared session timeline, µs.
    pub session_us: i64,
    /// Arrival (server) time, µs since the Unix epoch.
    pub arrival_unix_us: i64,
}

/// Counters of the timing model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimingStats {
    /// Trusted sender reports seen.
    pub sender_reports: u64,
    /// Sender reports ignored because their clock was implausible.
    pub untrusted_sender_reports: u64,
    /// Trusted sender reports whose mapping jumped more than 1 s from the previous one.
    pub sender_report_jumps: u64,
    /// Sender-report lip sync beyond its bound (default 1 s) from arrival alignment, ignored.
    pub lip_sync_rejected: u64,
    /// Frames whose track correction was slewed.
    pub slewed_frames: u64,
    /// Track corrections stepped at once.
    pub steps: u64,
    /// The video track's correction now, µs (+ = media clock slow).
    pub video_correction_us: i64,
    /// The audio track's correction now, µs (drift and lip sync).
    pub audio_correction_us: i64,
}

/// Default largest sender-report lip-sync offset applied, µs.
pub const DEFAULT_MAX_LIP_SYNC_US: i64 = 1_000_000;
/// A trusted report whose first-packet capture time moves more than this is a jump, µs.
const REPORT_JUMP_US: i64 = 1_000_000;

/// Timing state of one track.
#[derive(Debug, Clone)]
struct TrackClock {
    rate: u32,
    extender: RtpExtender,
    /// Media time and arrival of the track's first packet.
    first: Option<(u64, i64)>,
    /// Capture time of the first packet by the first trusted sender report.
    epoch: Option<i64>,
    /// The same by the latest trusted report (to notice jumps).
    last_epoch: Option<i64>,
    /// A report received before the first packet, applied once that arrives.
    pending: Option<SenderReport>,
    /// Last report seen (reports repeat on every frame; each is applied once).
    last_report: Option<SenderReport>,
    drift: DriftCorrector,
}

impl TrackClock {
    fn new(rate: u32) -> Self {
        Self {
            rate,
            extender: RtpExtender::new(),
            first: None,
            epoch: None,
            last_epoch: None,
            pending: None,
            last_report: None,
            drift: DriftCorrector::default(),
        }
    }

    /// µs of media time from the first packet to `ticks`.
    fn since_first_us(&self, ticks: u64) -> Option<i64> {
        let (first, _) = self.first?;
        Some(ticks_to_us(ticks as i64 - first as i64, self.rate))
    }
}

/// The per-session timing model described in the module docs.
#[derive(Debug, Clone)]
pub struct TimingModel {
    video: TrackClock,
    audio: TrackClock,
    max_skew_us: i64,
    /// Largest lip-sync offset applied, µs.
    max_lip_sync_us: i64,
    /// Sender-report lip sync added to audio, once decided.
    lip_sync_us: Option<i64>,
    /// Producer time of session time 0, once a trusted report fixed it.
    epoch: Option<i64>,
    stats: TimingStats,
}

impl Default for TimingModel {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PRODUCER_SKEW_US)
    }
}

impl TimingModel {
    /// A model for H.264 at 90 kHz and Opus at 48 kHz that trusts sender clocks within
    /// `max_producer_skew_us` of arrival time.
    pub fn new(max_producer_skew_us: i64) -> Self {
        Self {
            video: TrackClock::new(VIDEO_CLOCK_RATE),
            audio: TrackClock::new(AUDIO_CLOCK_RATE),
            max_skew_us: max_producer_skew_us,
            max_lip_sync_us: DEFAULT_MAX_LIP_SYNC_US,
            lip_sync_us: None,
            epoch: None,
            stats: TimingStats::default(),
        }
    }

    /// Bounds the sender-report lip sync to ±`us` (a fragmenter that interleaves tracks
    /// within a window cannot hold one track back by more than that window).
    pub fn with_max_lip_sync(mut self, us: i64) -> Self {
        self.max_lip_sync_us = us.max(0);
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> TimingStats {
        TimingStats {
            video_correction_us: self.video.drift.correction_us(),
            audio_correction_us: self.audio.drift.correction_us(),
            ..self.stats
        }
    }

    fn track(&mut self, kind: MediaKind) -> &mut TrackClock {
        match kind {
            MediaKind::Video => &mut self.video,
            MediaKind::Audio => &mut self.audio,
        }
    }

    /// Takes note of a sender report for `kind` (repeats of the last one are ignored).
    pub fn sender_report(&mut self, kind: MediaKind, report: SenderReport) {
        let track = self.track(kind);
        if track.last_report == Some(report) {
            return;
        }
        track.last_report = Some(report);
        if track.first.is_none() {
            track.pending = Some(report);
            return;
        }
        self.apply_report(kind, report);
    }

    fn apply_report(&mut self, kind: MediaKind, report: SenderReport) {
        let max_skew = self.max_skew_us;
        let track = self.track(kind);
        let ticks = track.extender.peek(report.rtp_timestamp);
        let (Some(since), Some((_, arrival))) = (track.since_first_us(ticks), track.first) else { return };
        let epoch = report.ntp_unix_us - since;
        if (epoch - arrival).abs() > max_skew {
            self.stats.untrusted_sender_reports += 1;
            return;
        }
        track.epoch.get_or_insert(epoch);
        let jumped = track.last_epoch.replace(epoch).is_some_and(|prev| (epoch - prev).abs() > REPORT_JUMP_US);
        if jumped {
            self.stats.sender_report_jumps += 1;
        } else {
            self.stats.sender_reports += 1;
        }
        self.settle();
    }

    /// Fixes the lip sync and the producer epoch as soon as what they need is known.
    fn settle(&mut self) {
        if self.lip_sync_us.is_none()
            && let (Some(v), Some(a), Some(arrival_offset)) =
                (self.video.epoch, self.audio.epoch, self.audio_offset_us())
        {
            let lip_sync = (a - v) - arrival_offset;
            if lip_sync.abs() <= self.max_lip_sync_us {
                self.lip_sync_us = Some(lip_sync);
            } else {
                self.lip_sync_us = Some(0);
                self.stats.lip_sync_rejected += 1;
            }
        }
        if self.epoch.is_none() {
            self.epoch = match (self.video.epoch, self.audio.epoch, self.audio_offset_us()) {
                (Some(v), _, _) => Some(v),
                (None, Some(a), Some(offset)) => Some(a - offset),
                _ => None,
            };
        }
    }

    /// Places one frame (its RTP timestamp's low 32 bits and its arrival time) on the
    /// timelines. Returns `None` for audio that arrives before any video: the session
    /// timeline starts with the first video packet.
    pub fn observe(&mut self, kind: MediaKind, rtp_timestamp: u32, arrival_unix_us: i64) -> Option<FrameTime> {
        let media_ticks = self.observe_ticks(kind, rtp_timestamp, arrival_unix_us);
        let session_us = self.session_us(kind, media_ticks)?;
        Some(FrameTime { media_ticks, session_us, arrival_unix_us })
    }

    /// Session time of an extended media time on `kind` with the track's current
    /// correction; `None` for audio while no video has been seen (callers may keep such
    /// audio and ask again later).
    pub fn session_us(&self, kind: MediaKind, media_ticks: u64) -> Option<i64> {
        match kind {
            MediaKind::Video => Some(self.video.since_first_us(media_ticks)? + self.video.drift.correction_us()),
            MediaKind::Audio => Some(
                self.audio.since_first_us(media_ticks)? + self.audio_offset_us()? + self.audio.drift.correction_us(),
            ),
        }
    }

    /// Extends and records an RTP timestamp like [`TimingModel::observe`], updating the
    /// track's drift correction, and returns only the extended media time (for frames that
    /// may have no session time yet).
    pub fn observe_ticks(&mut self, kind: MediaKind, rtp_timestamp: u32, arrival_unix_us: i64) -> u64 {
        let track = self.track(kind);
        let media_ticks = track.extender.extend(rtp_timestamp);
        if track.first.is_none() {
            track.first = Some((media_ticks, arrival_unix_us));
            if let Some(report) = track.pending.take() {
                self.apply_report(kind, report);
            }
            self.settle();
        }
        let extra = match kind {
            MediaKind::Video => 0,
            MediaKind::Audio => self.lip_sync_us.unwrap_or(0),
        };
        let track = self.track(kind);
        let (Some(media_us), Some((_, first_arrival))) = (track.since_first_us(media_ticks), track.first) else {
            return media_ticks;
        };
        match track.drift.observe(media_us, arrival_unix_us - first_arrival, extra) {
            Adjustment::None => {}
            Adjustment::Slewed => self.stats.slewed_frames += 1,
            Adjustment::Stepped => self.stats.steps += 1,
        }
        media_ticks
    }

    /// Session time of the first audio packet before corrections: the difference of the two
    /// tracks' first arrivals.
    pub fn audio_offset_us(&self) -> Option<i64> {
        let (_, v_arrival) = self.video.first?;
        let (_, a_arrival) = self.audio.first?;
        Some(a_arrival - v_arrival)
    }

    /// The lip sync taken from the first pair of trusted sender reports, once decided.
    pub fn lip_sync_us(&self) -> Option<i64> {
        self.lip_sync_us
    }

    /// Wall-clock time (µs since the Unix epoch) of session time 0, as the sender's clock
    /// has it; `None` before the first video packet.
    pub fn producer_epoch_us(&self) -> Option<i64> {
        let (_, v_arrival) = self.video.first?;
        Some(self.epoch.unwrap_or(v_arrival))
    }

    /// Producer time (µs since the Unix epoch) of a session time.
    pub fn producer_unix_us(&self, session_us: i64) -> Option<i64> {
        Some(self.producer_epoch_us()?.saturating_add(session_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000_000; // µs since the Unix epoch

    #[test]
    fn extends_across_wraps_and_reordering() {
        let mut x = RtpExtender::new();
        let base = x.extend(u32::MAX - 10);
        assert_eq!(base, CYCLE + u64::from(u32::MAX - 10));
        assert_eq!(x.extend(5), base + 16, "forward across the wrap");
        assert_eq!(x.extend(u32::MAX - 2), base + 8, "late packet from before the wrap");
        assert_eq!(x.extend(100), base + 111);
        assert_eq!(x.peek(u32::MAX - 20), base - 10, "older than the first packet");
        // A long run across several wraps stays monotonic.
        let mut y = RtpExtender::new();
        let mut prev = y.extend(0);
        for i in 1..20_000u64 {
            let ts = (i * 900_000) as u32; // 10 s of 90 kHz per step
            let v = y.extend(ts);
            assert_eq!(v - prev, 900_000);
            prev = v;
        }
    }

    #[test]
    fn converts_clock_rates() {
        assert_eq!(ticks_to_us(90_000, VIDEO_CLOCK_RATE), 1_000_000);
        assert_eq!(ticks_to_us(3_000, VIDEO_CLOCK_RATE), 33_333);
        assert_eq!(ticks_to_us(960, AUDIO_CLOCK_RATE), 20_000);
        assert_eq!(ticks_to_us(-1, VIDEO_CLOCK_RATE), -12);
        assert_eq!(us_to_ms(-1), -1);
        assert_eq!(us_to_ms(1_999), 1);
    }

    #[test]
    fn ntp_converts_to_unix_time() {
        let ntp = ((NTP_UNIX_OFFSET_SECS + 1_700_000_000) << 32) | (1 << 31);
        let sr = SenderReport::from_ntp(ntp, 7);
        assert_eq!(sr.ntp_unix_us, 1_700_000_000_500_000);
    }

    #[test]
    fn before_reports_time_is_anchored_to_arrival() {
        let mut m = TimingModel::default();
        assert_eq!(m.observe(MediaKind::Audio, 1_000, T0), None, "no video yet");
        let v = m.observe(MediaKind::Video, 50_000, T0 + 10_000).unwrap();
        assert_eq!(v.session_us, 0);
        // Audio's first packet arrived 10 ms before video's: offset -10 ms.
        assert_eq!(m.audio_offset_us(), Some(-10_000));
        let a = m.observe(MediaKind::Audio, 1_000 + 4_800, T0 + 110_000).unwrap();
        assert_eq!(a.session_us, 90_000);
        let v = m.observe(MediaKind::Video, 50_000 + 9_000, T0 + 110_000).unwrap();
        assert_eq!(v.session_us, 100_000);
        assert_eq!(m.producer_unix_us(v.session_us), Some(T0 + 110_000));
    }

    #[test]
    fn sender_reports_align_tracks_and_anchor_producer_time() {
        let mut m = TimingModel::default();
        let sender = T0 - 2_000_000; // the sender's clock runs 2 s behind reel's
        // Video RTP 10_000 and audio RTP 70_000 were both captured at `sender`.
        m.observe(MediaKind::Video, 10_000, T0 + 50_000).unwrap();
        m.observe(MediaKind::Audio, 70_000, T0 + 20_000).unwrap();
        assert_eq!(m.audio_offset_us(), Some(-30_000), "arrival-based");
        m.sender_report(MediaKind::Video, SenderReport { ntp_unix_us: sender + 1_000_000, rtp_timestamp: 100_000 });
        m.sender_report(MediaKind::Audio, SenderReport { ntp_unix_us: sender + 1_000_000, rtp_timestamp: 118_000 });
        m.sender_report(MediaKind::Audio, SenderReport { ntp_unix_us: sender + 1_000_000, rtp_timestamp: 118_000 });
        assert_eq!(m.stats().sender_reports, 2, "a repeated report counts once");
        assert_eq!(m.lip_sync_us(), Some(30_000), "captured together: undo the 30 ms arrival difference");
        assert_eq!(m.producer_epoch_us(), Some(sender));
        // Audio captured 500 ms after the start sits at session 500 ms.
        let a = m.observe(MediaKind::Audio, 70_000 + 24_000, T0 + 540_000).unwrap();
        assert_eq!(a.session_us, 500_000);
        assert_eq!(m.producer_unix_us(a.session_us), Some(sender + 500_000));
    }

    #[test]
    fn implausible_sender_clocks_are_ignored() {
        let mut m = TimingModel::default();
        m.observe(MediaKind::Video, 0, T0).unwrap();
        m.sender_report(MediaKind::Video, SenderReport::from_ntp(0, 0));
        assert_eq!(m.stats().untrusted_sender_reports, 1);
        assert_eq!(m.producer_epoch_us(), Some(T0));
        // A report that arrives before the track's first packet is applied with it.
        m.sender_report(MediaKind::Audio, SenderReport { ntp_unix_us: T0 - 5_000, rtp_timestamp: 480 });
        m.observe(MediaKind::Audio, 480, T0 + 1_000).unwrap();
        assert_eq!(m.stats().sender_reports, 1);
        assert_eq!(m.producer_epoch_us(), Some(T0 - 5_000 - 1_000), "audio report, arrival offset");
    }

    #[test]
    fn video_timeline_survives_rtp_wrap() {
        let mut m = TimingModel::default();
        let start = u32::MAX - 45_000; // wraps after half a second
        let mut last = -1;
        for i in 0..90u32 {
            let t = m.observe(MediaKind::Video, start.wrapping_add(i * 3_000), T0 + i64::from(i) * 33_333).unwrap();
            assert!(t.session_us > last);
            assert_eq!(t.session_us, ticks_to_us(i64::from(i) * 3_000, VIDEO_CLOCK_RATE));
            last = t.session_us;
        }
    }
}
