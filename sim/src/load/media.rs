//! Stored vs sent frames per track, and the A/V skew of the stored stream (no
//! silent media loss under sender clock drift). Sans-IO: the stored side comes from
//! [`super::mkv::StoredStream`], the sent side from the publishers' records.
//!
//! **Stored / sent**: blocks per track in the stream read back at the end of the run, vs
//! frames the publisher wrote to str0m (muted and dropped frames are not "sent"). A session
//! that ends mid-fragment leaves a *tail* no listed fragment holds: the frames sent from the
//! first video frame that was not stored on, when that frame is a keyframe (the start of the
//! fragment that never closed). **Missing** = sent − tail − stored: frames lost inside the
//! stored span. Audio frames within [`AUDIO_CUT_SLACK`] of the cut may land on either side
//! of it, so ±2 audio frames is boundary noise, not loss.
//!
//! **A/V skew**: for each stored video keyframe, the stored audio frame of the same fragment
//! whose timestamp is nearest is taken, and
//! `skew = (stored_audio_ts − stored_video_ts) − (sent_audio_instant − sent_video_instant)`:
//! how far the stored stream moved audio against video compared with when the frames were
//! sent (0 = the stored stream plays them as far apart as they were sent). Stored frames are
//! matched to sent frames *by order within their track*: the n-th stored video frame is the
//! n-th written, the m-th stored audio frame the m-th written. That is exact only when
//! nothing was lost; [`Pairing`] says whether it was, and a stored keyframe whose order
//! lands on a sent non-keyframe is left out (counted in [`SessionMedia::unpaired`]).

use serde::Serialize;

use super::mkv::{StoredFrame, StoredStream};
use super::stats::percentile;
use crate::publisher::{FrameSent, SenderProfile, StatsSnapshot};

/// Audio frames around the end of the stored span that may be stored on either side of it.
pub const AUDIO_CUT_SLACK: i64 = 2;

/// Sent and stored frames of one track.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TrackCount {
    /// Frames the publishers wrote.
    pub sent: u64,
    /// Frames in the stored stream.
    pub stored: u64,
    /// stored / sent, %.
    pub stored_pct: Option<f64>,
    /// Frames sent after the stored span (the fragment that never closed).
    pub tail: u64,
    /// sent − tail − stored: lost inside the stored span (negative: stored more).
    pub missing: i64,
}

impl TrackCount {
    /// From the counts.
    pub fn new(sent: u64, stored: u64, tail: u64) -> Self {
        Self {
            sent,
            stored,
            stored_pct: (sent > 0).then(|| stored as f64 * 100.0 / sent as f64),
            tail,
            missing: sent as i64 - tail as i64 - stored as i64,
        }
    }

    /// The sum of two counts.
    pub fn plus(self, other: Self) -> Self {
        Self::new(self.sent + other.sent, self.stored + other.stored, self.tail + other.tail)
    }

    /// `stored / sent (pct %), tail t, missing m` for the table.
    pub fn text(&self) -> String {
        let pct = self.stored_pct.map_or("n/a".into(), |p| format!("{p:.2} %"));
        format!("{} / {} ({pct}), tail {}, missing {}", self.stored, self.sent, self.tail, self.missing)
    }
}

/// How stored frames were matched with sent ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pairing {
    /// Nothing missing inside the stored span (video 0, audio within [`AUDIO_CUT_SLACK`]) and
    /// every stored keyframe is a sent one: the n-th stored frame is the n-th sent.
    Exact,
    /// Frames were lost (or added) inside the stored span: pairing by order may be off by up
    /// to the missing count.
    Approximate,
    /// Nothing to pair: the stream could not be read back, or sends were not recorded.
    Unavailable,
}

/// |skew| over the samples (ms), and the last sample with its sign.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SkewStats {
    /// Samples (video keyframes paired with an audio frame).
    pub n: usize,
    /// p95 of |skew|.
    pub p95_abs_ms: f64,
    /// max |skew|.
    pub max_abs_ms: f64,
    /// The last sample, signed (positive: stored audio later than sent, relative to video).
    pub last_ms: f64,
}

impl SkewStats {
    /// Over `samples` in ms (in stream order); `None` when empty.
    pub fn of(samples: &[f64]) -> Option<Self> {
        let mut abs: Vec<f64> = samples.iter().map(|s| s.abs()).filter(|s| s.is_finite()).collect();
        abs.sort_by(f64::total_cmp);
        Some(Self {
            n: abs.len(),
            p95_abs_ms: percentile(&abs, 95.0)?,
            max_abs_ms: *abs.last()?,
            last_ms: *samples.last()?,
        })
    }
}

/// What one session sent, as its publisher recorded it.
#[derive(Debug, Clone, Copy)]
pub struct SentLog<'a> {
    /// Video frames written.
    pub video_frames: u64,
    /// Opus packets written.
    pub audio_packets: u64,
    /// Video keyframes as sent (ordered by `seq`).
    pub keyframes: &'a [FrameSent],
    /// Send instant of every Opus packet written (µs since the epoch), in order.
    pub audio_sends_us: &'a [i64],
}

/// Stored vs sent of one session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionMedia {
    /// Session index.
    pub session: usize,
    /// Video frames.
    pub video: TrackCount,
    /// Audio frames.
    pub audio: TrackCount,
    /// How far the skew's frame pairing can be trusted.
    pub pairing: Pairing,
    /// Stored keyframes whose order did not land on a sent keyframe (left out of the skew).
    pub unpaired: usize,
    /// A/V skew of the stored stream.
    pub av_skew_ms: Option<SkewStats>,
    /// Fragments read back.
    pub fragments_read: usize,
    /// Why the stream could not be read back (or fragments the service failed to return).
    pub error: Option<String>,
}

/// Stored vs sent over every session of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaReport {
    /// The publishers' [`SenderProfile::describe`].
    pub sender: String,
    /// The profile itself.
    pub profile: SenderProfile,
    /// Video frames, all sessions.
    pub video: TrackCount,
    /// Audio frames, all sessions.
    pub audio: TrackCount,
    /// A/V skew over every session's samples.
    pub av_skew_ms: Option<SkewStats>,
    /// Sessions whose pairing was [`Pairing::Exact`].
    pub sessions_paired_exactly: usize,
    /// Video frames muted by the profile (not sent).
    pub video_frames_muted: u64,
    /// Opus packets muted by the profile (not sent).
    pub audio_packets_muted: u64,
    /// Writes whose SR wallclock had to be clamped (see [`crate::publisher::profile`]).
    pub sr_wallclock_clamped: u64,
    /// Per session.
    pub sessions: Vec<SessionMedia>,
}

impl MediaReport {
    /// From per-session results (with their skew samples) and the publishers' snapshots.
    pub fn new(profile: SenderProfile, sessions: Vec<(SessionMedia, Vec<f64>)>, snaps: &[StatsSnapshot]) -> Self {
        let samples: Vec<f64> = sessions.iter().flat_map(|(_, s)| s.iter().copied()).collect();
        let sessions: Vec<SessionMedia> = sessions.into_iter().map(|(m, _)| m).collect();
        let sum = |f: fn(&SessionMedia) -> TrackCount| {
            sessions.iter().map(f).fold(TrackCount::new(0, 0, 0), TrackCount::plus)
        };
        Self {
            sender: profile.describe(),
            profile,
            video: sum(|s| s.video),
            audio: sum(|s| s.audio),
            av_skew_ms: SkewStats::of(&samples),
            sessions_paired_exactly: sessions.iter().filter(|s| s.pairing == Pairing::Exact).count(),
            video_frames_muted: snaps.iter().map(|s| s.video_frames_muted).sum(),
            audio_packets_muted: snaps.iter().map(|s| s.audio_packets_muted).sum(),
            sr_wallclock_clamped: snaps.iter().map(|s| s.sr_wallclock_clamped).sum(),
            sessions,
        }
    }
}

/// Stored vs sent of session `session`, and its skew samples (ms, stream order).
pub fn session_media(
    session: usize,
    stored: Result<&StoredStream, String>,
    sent: &SentLog,
) -> (SessionMedia, Vec<f64>) {
    let stored = match stored {
        Ok(s) => s,
        Err(e) => {
            let media = SessionMedia {
                session,
                video: TrackCount::new(sent.video_frames, 0, 0),
                audio: TrackCount::new(sent.audio_packets, 0, 0),
                pairing: Pairing::Unavailable,
                unpaired: 0,
                av_skew_ms: None,
                fragments_read: 0,
                error: Some(e),
            };
            return (media, Vec::new());
        }
    };
    let (video_tail, audio_tail) = tails(stored, sent);
    let video = TrackCount::new(sent.video_frames, stored.video.len() as u64, video_tail);
    let audio = TrackCount::new(sent.audio_packets, stored.audio.len() as u64, audio_tail);
    let (samples, unpaired) = skew_samples(stored, sent.keyframes, sent.audio_sends_us);
    let pairing = if sent.audio_sends_us.is_empty() || sent.keyframes.is_empty() {
        Pairing::Unavailable
    } else if video.missing == 0 && audio.missing.abs() <= AUDIO_CUT_SLACK && unpaired == 0 {
        Pairing::Exact
    } else {
        Pairing::Approximate
    };
    let error = (!stored.fragment_errors.is_empty()).then(|| {
        let list: Vec<String> = stored.fragment_errors.iter().map(|(n, c)| format!("{n}: {c}")).collect();
        format!("fragments not returned: {}", list.join(", "))
    });
    let media = SessionMedia {
        session,
        video,
        audio,
        pairing,
        unpaired,
        av_skew_ms: SkewStats::of(&samples),
        fragments_read: stored.fragment_numbers.len(),
        error,
    };
    (media, samples)
}

/// (video, audio) frames sent after the stored span: from the first video frame not stored
/// on, when it is a keyframe; (0, 0) when it is not (or everything was stored).
fn tails(stored: &StoredStream, sent: &SentLog) -> (u64, u64) {
    let stored_video = stored.video.len() as u64;
    match keyframe_with_seq(sent.keyframes, stored_video) {
        Some(cut) if sent.video_frames > stored_video => {
            let audio = sent.audio_sends_us.iter().filter(|&&a| a >= cut.sent_unix_us).count();
            (sent.video_frames - stored_video, audio as u64)
        }
        _ => (0, 0),
    }
}

/// The skew sample (ms) of every stored video keyframe that pairs, and how many did not.
pub fn skew_samples(stored: &StoredStream, keyframes: &[FrameSent], audio_sends_us: &[i64]) -> (Vec<f64>, usize) {
    let (mut samples, mut unpaired) = (Vec::new(), 0);
    for (n, v) in stored.video.iter().enumerate().filter(|(_, v)| v.keyframe) {
        let Some(sent_v) = keyframe_with_seq(keyframes, n as u64) else {
            unpaired += 1;
            continue;
        };
        let Some(m) = nearest_audio(&stored.audio, v) else { continue };
        let Some(&sent_a) = audio_sends_us.get(m) else { continue };
        let stored_gap = stored.audio[m].ts_us - v.ts_us;
        let sent_gap = sent_a - sent_v.sent_unix_us;
        samples.push((stored_gap - sent_gap) as f64 / 1000.0);
    }
    (samples, unpaired)
}

/// The sent keyframe that was the `seq`-th video frame written, if that one was a keyframe.
fn keyframe_with_seq(keyframes: &[FrameSent], seq: u64) -> Option<&FrameSent> {
    let i = keyframes.binary_search_by_key(&seq, |f| f.seq).ok()?;
    keyframes.get(i).filter(|f| f.keyframe)
}

/// Index of the audio frame of `v`'s fragment whose timestamp is nearest to `v`'s.
fn nearest_audio(audio: &[StoredFrame], v: &StoredFrame) -> Option<usize> {
    let lo = audio.partition_point(|a| a.doc < v.doc);
    let hi = audio.partition_point(|a| a.doc <= v.doc);
    (lo..hi).min_by_key(|&i| audio[i].ts_us.abs_diff(v.ts_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000_000;

    fn frame(ts_us: i64, keyframe: bool, doc: usize) -> StoredFrame {
        StoredFrame { ts_us, keyframe, doc }
    }

    fn keyframe(seq: u64, sent_unix_us: i64) -> FrameSent {
        FrameSent { index: seq, seq, rtp_ticks: seq * 3000, keyframe: true, sent_unix_us }
    }

    /// Two fragments of 2 s: 60 video frames (IDR first) and 100 audio frames each, stored
    /// at their nominal times; audio sent `audio_late_us(m)` after its nominal time.
    fn synthetic(audio_late_us: impl Fn(usize) -> i64) -> (StoredStream, Vec<FrameSent>, Vec<i64>) {
        let mut s = StoredStream::default();
        for n in 0..120 {
            s.video.push(frame(T0 + n as i64 * 33_333, n % 60 == 0, n / 60));
        }
        for m in 0..200 {
            s.audio.push(frame(T0 + m as i64 * 20_000, true, m / 100));
        }
        s.fragment_numbers = vec![Some("1".into()), Some("2".into())];
        let keyframes = vec![keyframe(0, T0), keyframe(60, T0 + 60 * 33_333)];
        let sends = (0..200).map(|m| T0 + m as i64 * 20_000 + audio_late_us(m)).collect();
        (s, keyframes, sends)
    }

    #[test]
    fn no_drift_no_skew_and_exact_pairing() {
        let (s, kf, sends) = synthetic(|_| 0);
        let sent = SentLog { video_frames: 120, audio_packets: 200, keyframes: &kf, audio_sends_us: &sends };
        let (m, samples) = session_media(3, Ok(&s), &sent);
        assert_eq!(samples, vec![0.0, 0.0]);
        assert_eq!((m.pairing, m.unpaired, m.fragments_read), (Pairing::Exact, 0, 2));
        assert_eq!(m.audio, TrackCount { sent: 200, stored: 200, stored_pct: Some(100.0), tail: 0, missing: 0 });
        let skew = m.av_skew_ms.unwrap();
        assert_eq!((skew.n, skew.max_abs_ms), (2, 0.0));
    }

    #[test]
    fn audio_sent_ever_later_than_stored_shows_as_negative_skew() {
        // A −3 % sender whose stream was stored on the RTP (20 ms) grid: packet m went out
        // 0.62 ms × m late, so at the IDR of the second fragment (audio frame 100) the stored
        // stream has audio 61.9 ms earlier against video than it was sent.
        let (s, kf, sends) = synthetic(|m| m as i64 * 20_000 * 3 / 97);
        let (samples, unpaired) = skew_samples(&s, &kf, &sends);
        assert_eq!(unpaired, 0);
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0], 0.0);
        assert!((samples[1] - -61.855).abs() < 0.01, "{samples:?}");
        let stats = SkewStats::of(&samples).unwrap();
        assert!((stats.max_abs_ms - 61.855).abs() < 0.01 && stats.last_ms < 0.0, "{stats:?}");
    }

    #[test]
    fn lost_frames_make_the_pairing_approximate() {
        let (mut s, kf, sends) = synthetic(|_| 0);
        // 10 audio frames of the first fragment lost: later audio pairs with the wrong sends.
        s.audio.drain(10..20);
        // A video frame lost before the second IDR: stored IDR #59 is sent frame 59, no IDR.
        s.video.remove(30);
        let sent = SentLog { video_frames: 120, audio_packets: 200, keyframes: &kf, audio_sends_us: &sends };
        let (m, samples) = session_media(0, Ok(&s), &sent);
        assert_eq!((m.pairing, m.unpaired), (Pairing::Approximate, 1));
        assert_eq!(samples.len(), 1, "only the first IDR pairs");
        assert_eq!(m.audio.stored, 190);
        assert_eq!(m.audio.stored_pct, Some(95.0));
        assert_eq!((m.audio.missing, m.video.missing), (10, 1));
    }

    #[test]
    fn an_unclosed_last_fragment_is_a_tail_not_a_loss() {
        // Sent: 3 fragments' worth (180 video, 300 audio); stored: the first two.
        let (s, mut kf, mut sends) = synthetic(|_| 0);
        kf.push(keyframe(120, T0 + 120 * 33_333));
        sends.extend((200..300).map(|m| T0 + m * 20_000));
        let sent = SentLog { video_frames: 180, audio_packets: 300, keyframes: &kf, audio_sends_us: &sends };
        let (m, _) = session_media(0, Ok(&s), &sent);
        assert_eq!((m.video.tail, m.video.missing), (60, 0));
        // Audio frames sent from the cut (video frame 120 at 3.99996 s) on: 100 (frame 200 is at 4 s).
        assert_eq!((m.audio.tail, m.audio.missing), (100, 0));
        assert_eq!(m.pairing, Pairing::Exact);
        // Without the cut keyframe's record the shortfall counts as missing.
        kf.pop();
        let sent = SentLog { video_frames: 180, audio_packets: 300, keyframes: &kf, audio_sends_us: &sends };
        let (m, _) = session_media(0, Ok(&s), &sent);
        assert_eq!((m.video.tail, m.video.missing, m.pairing), (0, 60, Pairing::Approximate));
    }

    #[test]
    fn unreadable_streams_and_totals() {
        let sent = SentLog { video_frames: 10, audio_packets: 20, keyframes: &[], audio_sends_us: &[] };
        let (m, samples) = session_media(1, Err("GetMediaForFragmentList: boom".into()), &sent);
        assert_eq!((m.pairing, m.video.stored, samples.len()), (Pairing::Unavailable, 0, 0));
        let (s, kf, sends) = synthetic(|_| 0);
        let ok = SentLog { video_frames: 120, audio_packets: 200, keyframes: &kf, audio_sends_us: &sends };
        let snap = StatsSnapshot { audio_packets_muted: 4, ..Default::default() };
        let report =
            MediaReport::new(SenderProfile::default(), vec![session_media(0, Ok(&s), &ok), (m, samples)], &[snap]);
        assert_eq!(report.video, TrackCount::new(130, 120, 0));
        assert_eq!(report.audio, TrackCount::new(220, 200, 0));
        assert_eq!((report.sessions_paired_exactly, report.audio_packets_muted), (1, 4));
        assert_eq!(report.av_skew_ms.map(|s| s.n), Some(2));
    }
}
