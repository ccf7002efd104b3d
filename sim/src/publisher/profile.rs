//! How a simulated sender's clocks misbehave, the way real camera masters do.
//!
//! The KVS C SDK's sample master sleeps a fixed frame duration after each frame without
//! subtracting its own work, so its audio thread sends ≈ 48.5 Opus packets per second while
//! each packet's RTP timestamp still advances 960 ticks (20 ms). Its RTCP sender reports
//! (SR) map RTP time to the wall clock (`rtp = base + (now − first frame) × rate`), so by
//! the SR mapping every audio packet arrives a little later than the one before.
//!
//! A [`SenderProfile`] reproduces that on the str0m publisher:
//! - **rates** ([`SenderProfile::audio_rate`], [`SenderProfile::video_rate`]): frame `i` is
//!   *sent* at `t0 + i × duration / rate` while its RTP timestamp stays `i × ticks` (960 for a
//!   20 ms Opus packet, 3000 for a 30 fps frame). `rate < 1` is a slow sender.
//! - **SR mapping** ([`SenderProfile::sr_wall_clock`]): str0m computes an SR's RTP time as
//!   `last written rtp + (now − wallclock of that write) × clock rate`, from the `wallclock`
//!   argument of `Writer::write` (str0m 0.25 `streams/send.rs`, `current_rtp_time`). Passing
//!   the send instant makes SRs follow the packets; passing `t0 + rtp offset / clock rate`
//!   (the instant the RTP time "should" have been captured) makes them follow the wall
//!   clock like the C SDK. See [`SenderProfile::str0m_wallclock`].
//! - **SR jump** ([`SrJump`]): from a moment on, the wallclock handed to str0m is shifted,
//!   as if the sender's NTP clock stepped.
//! - **mute windows** ([`MuteWindow`]): nothing is sent on a track inside the window; RTP
//!   time keeps advancing across it. Video resumes on the next keyframe.
//!
//! str0m drops the RTP time of an SR (it sends 0) when the last write's wallclock is later
//! than the SR instant, so a wallclock ahead of the write instant is clamped to it and counted
//! ([`crate::publisher::PublisherStats::sr_wallclock_clamped`]). That happens for senders
//! *ahead* of their SR mapping: a fast sender with `sr_wall_clock`, or a forward jump larger
//! than the slowness accumulated so far. Those SRs then follow the packets.
//!
//! All times are offsets from `t0`, the instant the publisher connected (media time zero).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::source::{AUDIO_PACKET, FPS};

/// Why a profile is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileError {
    /// A drift outside (−50 %, +50 %) (or not a number).
    #[error("{track} drift of {pct} % is outside −50 … +50 %")]
    Drift {
        /// `audio` or `video`.
        track: &'static str,
        /// The rejected percentage.
        pct: f64,
    },
}

/// A window (offsets from `t0`) in which a track sends nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MuteWindow {
    /// Start of the window after `t0`.
    pub at: Duration,
    /// Its length.
    pub len: Duration,
}

impl MuteWindow {
    /// Whether the send slot `offset` (after `t0`) falls inside `[at, at + len)`.
    pub fn contains(&self, offset: Duration) -> bool {
        offset >= self.at && offset < self.at.saturating_add(self.len)
    }
}

/// A step of the sender's NTP clock: from `at` (after `t0`) on, every wallclock handed to
/// str0m is `shift_ms` later (negative: earlier), on both tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SrJump {
    /// When the clock steps, after `t0`.
    pub at: Duration,
    /// The step, ms (positive: the clock jumps forward, SR RTP times fall behind).
    pub shift_ms: i64,
}

/// The clock behaviour of one simulated sender (default: a perfect one).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SenderProfile {
    /// Audio production rate relative to real time (1.0 nominal, 0.97 = 3 % slow).
    pub audio_rate: f64,
    /// Video production rate relative to real time.
    pub video_rate: f64,
    /// SRs map RTP time to the wall clock (C SDK) instead of following the packets.
    pub sr_wall_clock: bool,
    /// An NTP clock step, if any.
    pub sr_jump: Option<SrJump>,
    /// Audio sends nothing inside this window.
    pub audio_mute: Option<MuteWindow>,
    /// Video sends nothing inside this window (and resumes on the next keyframe).
    pub video_mute: Option<MuteWindow>,
}

impl Default for SenderProfile {
    fn default() -> Self {
        Self {
            audio_rate: 1.0,
            video_rate: 1.0,
            sr_wall_clock: false,
            sr_jump: None,
            audio_mute: None,
            video_mute: None,
        }
    }
}

/// The rate of a drift in percent (−3 → 0.97), rejected outside (−50 %, +50 %).
pub fn rate_from_drift_pct(track: &'static str, pct: f64) -> Result<f64, ProfileError> {
    if !(pct > -50.0 && pct < 50.0) {
        return Err(ProfileError::Drift { track, pct });
    }
    Ok(1.0 + pct / 100.0)
}

/// Media time of video frame `i` (`i × 3000` ticks of 90 kHz) as a duration.
pub fn video_media_offset(i: u64) -> Duration {
    Duration::from_micros(i.saturating_mul(1_000_000) / FPS)
}

/// Media time of Opus packet `j` (`j × 960` ticks of 48 kHz) as a duration.
pub fn audio_media_offset(j: u64) -> Duration {
    Duration::from_micros(j.saturating_mul(AUDIO_PACKET.as_micros() as u64))
}

/// `nominal / rate`, exact when the rate is 1.
fn scaled(nominal: Duration, rate: f64) -> Duration {
    if rate == 1.0 { nominal } else { nominal.div_f64(rate) }
}

/// `at` moved by `ms` (either way); `at` itself if that is not representable.
fn shift(at: Instant, ms: i64) -> Instant {
    let d = Duration::from_millis(ms.unsigned_abs());
    let moved = if ms >= 0 { at.checked_add(d) } else { at.checked_sub(d) };
    moved.unwrap_or(at)
}

impl SenderProfile {
    /// Whether anything differs from a perfect sender.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// When video frame `i` is sent, after `t0`.
    pub fn video_send_offset(&self, i: u64) -> Duration {
        scaled(video_media_offset(i), self.video_rate)
    }

    /// When Opus packet `j` is sent, after `t0`.
    pub fn audio_send_offset(&self, j: u64) -> Duration {
        scaled(audio_media_offset(j), self.audio_rate)
    }

    /// The `wallclock` for `Writer::write` of a frame whose media time is `media_offset`,
    /// scheduled `send_offset` after `t0` and written at `now`; `true` when it had to be
    /// clamped to `now` (see the module docs).
    pub fn str0m_wallclock(
        &self,
        t0: Instant,
        media_offset: Duration,
        send_offset: Duration,
        now: Instant,
    ) -> (Instant, bool) {
        let base = if self.sr_wall_clock { t0 + media_offset } else { t0 + send_offset };
        let wallclock = match self.sr_jump {
            Some(j) if send_offset >= j.at => shift(base, j.shift_ms),
            _ => base,
        };
        if wallclock > now { (now, true) } else { (wallclock, false) }
    }

    /// Whether an audio packet scheduled `send_offset` after `t0` is muted.
    pub fn audio_muted(&self, send_offset: Duration) -> bool {
        self.audio_mute.is_some_and(|w| w.contains(send_offset))
    }

    /// Whether a video frame scheduled `send_offset` after `t0` is muted.
    pub fn video_muted(&self, send_offset: Duration) -> bool {
        self.video_mute.is_some_and(|w| w.contains(send_offset))
    }

    /// A one-line description (`audio −3.0 %, SR wall clock, …`), `perfect` by default.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let pct = |r: f64| (r - 1.0) * 100.0;
        if self.audio_rate != 1.0 {
            parts.push(format!("audio {:+.2} %", pct(self.audio_rate)));
        }
        if self.video_rate != 1.0 {
            parts.push(format!("video {:+.2} %", pct(self.video_rate)));
        }
        parts.push(if self.sr_wall_clock { "SRs follow the wall clock" } else { "SRs follow the packets" }.into());
        if let Some(j) = self.sr_jump {
            parts.push(format!("SR clock steps {:+} ms at {:.1} s", j.shift_ms, j.at.as_secs_f64()));
        }
        let window = |w: MuteWindow| format!("{:.1}–{:.1} s", w.at.as_secs_f64(), (w.at + w.len).as_secs_f64());
        if let Some(w) = self.audio_mute {
            parts.push(format!("audio muted {}", window(w)));
        }
        if let Some(w) = self.video_mute {
            parts.push(format!("video muted {}", window(w)));
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn drift_percent_to_rate() {
        assert_eq!(rate_from_drift_pct("audio", -3.0), Ok(0.97));
        assert_eq!(rate_from_drift_pct("video", 0.0), Ok(1.0));
        assert!(rate_from_drift_pct("audio", -50.0).is_err());
        assert!(rate_from_drift_pct("audio", f64::NAN).is_err());
    }

    #[test]
    fn slow_audio_is_sent_every_20_6_ms_while_media_time_advances_20_ms() {
        let p = SenderProfile { audio_rate: 0.97, ..Default::default() };
        // Media time: exactly 20 ms (960 ticks) per packet.
        assert_eq!(audio_media_offset(1), 20 * MS);
        assert_eq!(audio_media_offset(100), Duration::from_secs(2));
        // Sent every 20 ms / 0.97 = 20.619 ms: 100 packets take 2.062 s instead of 2.
        let spacing = p.audio_send_offset(1);
        assert!((spacing.as_secs_f64() - 0.020_618_5).abs() < 1e-6, "{spacing:?}");
        let hundred = p.audio_send_offset(100).as_secs_f64();
        assert!((hundred - 2.0 / 0.97).abs() < 1e-6, "{hundred}");
        // Video untouched; a perfect sender keeps the exact 30 fps / 20 ms grid.
        assert_eq!(p.video_send_offset(30), Duration::from_secs(1));
        let perfect = SenderProfile::default();
        assert_eq!(perfect.audio_send_offset(50), Duration::from_secs(1));
        assert_eq!(perfect.video_send_offset(1), Duration::from_micros(33_333));
        assert!(perfect.is_default() && !p.is_default());
    }

    #[test]
    fn sr_wallclock_follows_the_packets_or_the_wall_clock() {
        let t0 = Instant::now();
        let slow = SenderProfile { audio_rate: 0.97, ..Default::default() };
        let j = 500;
        let (media, send) = (audio_media_offset(j), slow.audio_send_offset(j));
        let now = t0 + send + MS;
        // Default: the send slot (SRs follow the packets).
        assert_eq!(slow.str0m_wallclock(t0, media, send, now), (t0 + send, false));
        // C SDK: t0 + rtp offset / clock rate, 309 ms before the packet is sent.
        let c_sdk = SenderProfile { sr_wall_clock: true, ..slow };
        let (w, clamped) = c_sdk.str0m_wallclock(t0, media, send, now);
        assert_eq!((w, clamped), (t0 + Duration::from_secs(10), false));
        assert!((send - media).as_millis() == 309, "{:?}", send - media);
    }

    #[test]
    fn sr_jump_shifts_the_wallclock_from_its_moment_on_and_future_wallclocks_are_clamped() {
        let t0 = Instant::now();
        let jump = SrJump { at: Duration::from_secs(10), shift_ms: -250 };
        let p = SenderProfile { sr_jump: Some(jump), ..Default::default() };
        let before = Duration::from_secs(9);
        assert_eq!(p.str0m_wallclock(t0, before, before, t0 + before), (t0 + before, false));
        let after = Duration::from_secs(11);
        assert_eq!(p.str0m_wallclock(t0, after, after, t0 + after), (t0 + after - 250 * MS, false));
        // A forward step puts the wallclock ahead of the write: clamped to the write instant.
        let fwd = SenderProfile { sr_jump: Some(SrJump { shift_ms: 250, ..jump }), ..Default::default() };
        assert_eq!(fwd.str0m_wallclock(t0, after, after, t0 + after), (t0 + after, true));
        // A slow sender with wall-clock SRs has slack for it: 60 s at −3 % is ≈ 1.86 s behind.
        let slow = SenderProfile {
            audio_rate: 0.97,
            sr_wall_clock: true,
            sr_jump: Some(SrJump { shift_ms: 250, ..jump }),
            ..Default::default()
        };
        let (media, send) = (audio_media_offset(3000), slow.audio_send_offset(3000));
        assert_eq!(slow.str0m_wallclock(t0, media, send, t0 + send), (t0 + media + 250 * MS, false));
    }

    #[test]
    fn mute_windows_are_half_open() {
        let w = MuteWindow { at: Duration::from_secs(5), len: Duration::from_secs(2) };
        let p = SenderProfile { audio_mute: Some(w), ..Default::default() };
        assert!(!p.audio_muted(Duration::from_millis(4_999)));
        assert!(p.audio_muted(Duration::from_secs(5)));
        assert!(p.audio_muted(Duration::from_millis(6_999)));
        assert!(!p.audio_muted(Duration::from_secs(7)));
        assert!(!p.video_muted(Duration::from_secs(6)), "only the audio track is muted");
    }

    #[test]
    fn describes_itself() {
        assert_eq!(SenderProfile::default().describe(), "SRs follow the packets");
        let p = SenderProfile { audio_rate: 0.97, sr_wall_clock: true, ..Default::default() };
        assert_eq!(p.describe(), "audio -3.00 %, SRs follow the wall clock");
    }
}
