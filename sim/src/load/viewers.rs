//! Live viewers through the storage session (`reel-load --viewers-per-session K`, issue 16):
//! what K simulated viewers per session ([`crate::viewer`]) received, how late, and what
//! forwarding to them cost reel.
//!
//! # Glass-to-glass latency: pairing frames by RTP time
//! The publisher records every frame's send instant with its RTP time
//! ([`crate::publisher::FrameSent`] for video with `record_all_frames`,
//! [`crate::publisher::PublisherStats::audio_send_ticks`] for Opus). reel's storage session
//! forwards each frame to its viewers in str0m's frame mode with **the master's RTP time**
//! (`src/peer/fanout.rs`: `Writer::write(pt, network_time, f.time, data)`); str0m writes
//! that media time on the wire unchanged (new SSRC and sequence numbers, same timestamp),
//! so the viewer sees the RTP timestamp the publisher wrote. Frames are therefore paired
//! by `(track, RTP time mod 2³²)` — exact, and immune to frames dropped or skipped for one
//! viewer (pairing by order after the first keyframe would shift by every lost frame).
//! A publisher's RTP times are unique within a run (`i × 3000`, `j × 960`, starting at 0),
//! so the 32-bit value does not collide within the 13 h (video) / 24 h (audio) before it
//! wraps. Should a future reel rebase the viewers' RTP time, nothing would pair and the
//! report says so (`unpaired`), rather than pairing wrongly.
//!
//! Both ends run in the same `reel-load` process: the send instant and the arrival (str0m's
//! `network_time` of the frame's last packet, mapped to the same Unix clock) come from one
//! clock, so latency = arrival − send, with no clock offset to estimate.
//!
//! # Received / forwarded
//! Per viewer and track, *expected* are the frames the master sent from the first frame the
//! viewer received (video starts at a keyframe: reel skips to one at join) until
//! [`TAIL_MARGIN`] before the viewer stopped (frames in flight at the end are not losses);
//! *received* are those of them that arrived.
//!
//! # CPU per forwarded viewer-second
//! `(reel CPU ms/s with K viewers − reel CPU ms/s without viewers, same sessions) / viewers`,
//! from two runs in one `reel-load` invocation (K = 0 first, then K): see
//! [`cpu_per_viewer_second_ms`].

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::report::{Steady, opt, pct_row};
use super::stats::{Percentiles, prometheus_sum};
use crate::kvs::KvsClient;
use crate::publisher::{FrameSent, PublisherStats, StorageChannel};
use crate::viewer::{FrameReceived, Track, ViewerConfig, ViewerStats, watch_storage_session};

/// reel's counter of frames handed to viewers.
pub const METRIC_VIEWER_FRAMES: &str = "reel_storage_viewer_frames_total";
/// reel's counter of datagrams its media sockets could not send (a viewer's, when the
/// socket buffer was full).
pub const METRIC_SEND_DROPPED: &str = "reel_webrtc_send_dropped_total";
/// reel's counters of datagrams sent and of the `sendmsg` calls that carried them.
pub const METRIC_SENT_DATAGRAMS: &str = "reel_webrtc_sent_datagrams_total";
/// See [`METRIC_SENT_DATAGRAMS`].
pub const METRIC_SEND_CALLS: &str = "reel_webrtc_send_calls_total";
/// Viewers of one session join this far apart: JoinStorageSessionAsViewer has a per-channel
/// call rate (2/s, as KVS), and a throttled call costs a backoff.
pub const JOIN_SPACING: Duration = Duration::from_millis(600);

/// With `--viewers-first`, a session's master starts this long after its first viewer
/// joins, plus [`JOIN_SPACING`] per further viewer: every viewer waits for the master.
pub const VIEWERS_FIRST_LEAD: Duration = Duration::from_secs(2);

/// How much later than its first viewer a master starts with `--viewers-first`.
pub fn viewers_first_lead(per_session: usize) -> Duration {
    VIEWERS_FIRST_LEAD + JOIN_SPACING * per_session.saturating_sub(1) as u32
}

/// When the viewers of a session join.
#[derive(Debug, Clone)]
pub enum Join {
    /// Once the session's master has connected (viewers of a running session).
    OnceConnected,
    /// At these instants, one per session, before the master starts (viewers that wait).
    At(Vec<Instant>),
}

/// What the viewers of every session do.
#[derive(Debug, Clone)]
pub struct ViewerPlan {
    /// Local address the viewers bind.
    pub bind_ip: IpAddr,
    /// Viewers per session.
    pub per_session: usize,
    /// When they join.
    pub join: Join,
    /// When they stop watching.
    pub until: Instant,
}

/// Starts `plan.per_session` viewers on every session (each joins when `plan.join` says,
/// [`JOIN_SPACING`] after the previous one) watching until `plan.until`; their tasks go into
/// `tasks`. Returns (session index, stats) per viewer.
pub fn spawn_viewers(
    client: &Arc<KvsClient>,
    channels: &[StorageChannel],
    sessions: &[Arc<PublisherStats>],
    plan: &ViewerPlan,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Vec<(usize, Arc<ViewerStats>)> {
    let until = plan.until;
    let mut out = Vec::new();
    for (i, (channel, session)) in channels.iter().zip(sessions).enumerate() {
        for k in 0..plan.per_session {
            let stats = ViewerStats::new();
            out.push((i, stats.clone()));
            let (c, ch, session) = (client.clone(), channel.clone(), session.clone());
            let cfg = ViewerConfig::new(plan.bind_ip, &format!("load-viewer-{k}"));
            let first_at = match &plan.join {
                Join::OnceConnected => None,
                Join::At(times) => times.get(i).copied(),
            };
            tasks.push(tokio::spawn(async move {
                if let Some(at) = first_at {
                    // Before the master: the viewer waits for the session to start.
                    tokio::time::sleep_until((at + JOIN_SPACING * k as u32).into()).await;
                    let _ = watch_storage_session(&c, &ch, cfg, stats, until).await;
                    return;
                }
                // After the master's session connected: viewers of a running session.
                loop {
                    if Instant::now() >= until {
                        stats.fail(crate::viewer::ViewerError::ConnectTimeout(Duration::ZERO));
                        return;
                    }
                    if session.times.connected.get().is_some() {
                        break;
                    }
                    if session.failure_kind.lock().map(|f| f.is_some()).unwrap_or(true) {
                        stats.fail(crate::viewer::ViewerError::Sdp("its session failed".into()));
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(JOIN_SPACING * k as u32).await;
                let _ = watch_storage_session(&c, &ch, cfg, stats, until).await;
            }));
        }
    }
    out
}

/// The `viewers` section from the publishers' and viewers' records.
pub fn report(
    per_session: usize,
    sessions: &[Arc<PublisherStats>],
    viewers: &[(usize, Arc<ViewerStats>)],
) -> ViewersReport {
    let sent: Vec<SentIndex> = sessions
        .iter()
        .map(|s| {
            let video = s.frames.lock().map(|f| f.clone()).unwrap_or_default();
            let sends = s.audio_sends.lock().map(|a| a.clone()).unwrap_or_default();
            let ticks = s.audio_send_ticks.lock().map(|a| a.clone()).unwrap_or_default();
            SentIndex::new(&video, ticks.into_iter().zip(sends))
        })
        .collect();
    let runs: Vec<ViewerRun> = viewers
        .iter()
        .map(|(i, v)| ViewerRun {
            session: *i,
            frames: v.frames(),
            join_ok_us: v.times.join_ok.get().copied(),
            ended_us: v.times.ended.get().copied(),
            connected: v.times.connected.get().is_some(),
            failure: v.failure_kind().map(|k| (k, v.failure.lock().ok().and_then(|f| f.clone()).unwrap_or_default())),
        })
        .collect();
    ViewersReport::new(per_session, &runs, &sent)
}

/// Frames sent this close to a viewer's stop are not expected to have arrived.
pub const TAIL_MARGIN_US: i64 = 1_000_000;
/// [`TAIL_MARGIN_US`] in words, for the docs.
pub const TAIL_MARGIN: &str = "1 s";

/// What one publisher sent, indexed by RTP time (low 32 bits) per track.
#[derive(Debug, Clone, Default)]
pub struct SentIndex {
    /// Video: RTP time → send instant (µs since the Unix epoch).
    video: HashMap<u32, i64>,
    /// Audio: RTP time → send instant.
    audio: HashMap<u32, i64>,
    /// Send instants per track, sorted (for the expected counts).
    video_sends: Vec<i64>,
    audio_sends: Vec<i64>,
}

impl SentIndex {
    /// From the publisher's video frames and its Opus (RTP ticks, send µs) pairs.
    pub fn new(video: &[FrameSent], audio: impl IntoIterator<Item = (u64, i64)>) -> Self {
        let mut s = Self::default();
        for f in video {
            s.video.insert(f.rtp_ticks as u32, f.sent_unix_us);
            s.video_sends.push(f.sent_unix_us);
        }
        for (ticks, us) in audio {
            s.audio.insert(ticks as u32, us);
            s.audio_sends.push(us);
        }
        s.video_sends.sort_unstable();
        s.audio_sends.sort_unstable();
        s
    }

    fn map(&self, track: Track) -> &HashMap<u32, i64> {
        match track {
            Track::Video => &self.video,
            Track::Audio => &self.audio,
        }
    }

    fn sends(&self, track: Track) -> &[i64] {
        match track {
            Track::Video => &self.video_sends,
            Track::Audio => &self.audio_sends,
        }
    }

    /// Frames of `track` sent in `[from, to]` (µs).
    fn sent_between(&self, track: Track, from: i64, to: i64) -> u64 {
        let s = self.sends(track);
        let lo = s.partition_point(|&t| t < from);
        let hi = s.partition_point(|&t| t <= to);
        hi.saturating_sub(lo) as u64
    }
}

/// One viewer's frames of one track against what its master sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TrackTally {
    /// Frames received.
    pub received: u64,
    /// Received frames paired with a sent one by RTP time.
    pub paired: u64,
    /// Received frames with no sent frame of that RTP time.
    pub unpaired: u64,
    /// Frames the master sent from the viewer's first paired frame until
    /// [`TAIL_MARGIN_US`] before the viewer stopped.
    pub expected: u64,
    /// Of those, how many arrived.
    pub received_of_expected: u64,
    /// arrival − send of every paired frame, ms.
    #[serde(skip)]
    pub latencies_ms: Vec<f64>,
}

/// Pairs one viewer's frames of `track` with `sent`; `end_us` is when the viewer stopped.
pub fn tally(sent: &SentIndex, received: &[FrameReceived], track: Track, end_us: i64) -> TrackTally {
    let map = sent.map(track);
    let mut t = TrackTally::default();
    let mut first_sent: Option<i64> = None;
    let mut paired_sends = Vec::new();
    for f in received.iter().filter(|f| f.track == track) {
        t.received += 1;
        match map.get(&f.rtp) {
            Some(&sent_us) => {
                t.paired += 1;
                t.latencies_ms.push((f.arrival_unix_us - sent_us) as f64 / 1000.0);
                first_sent = Some(first_sent.map_or(sent_us, |s: i64| s.min(sent_us)));
                paired_sends.push(sent_us);
            }
            None => t.unpaired += 1,
        }
    }
    if let Some(from) = first_sent {
        let to = end_us - TAIL_MARGIN_US;
        t.expected = sent.sent_between(track, from, to);
        t.received_of_expected = paired_sends.iter().filter(|&&s| s >= from && s <= to).count() as u64;
    }
    t
}

/// Per-track totals over all viewers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrackSummary {
    /// Frames the viewers received.
    pub received: u64,
    /// Received frames not paired with a sent frame (should be 0).
    pub unpaired: u64,
    /// Σ expected frames (see [`TrackTally::expected`]).
    pub expected: u64,
    /// Σ received of expected.
    pub received_of_expected: u64,
    /// received_of_expected / expected, %.
    pub received_pct: Option<f64>,
    /// Lowest per-viewer received %, over viewers that expected something.
    pub worst_viewer_pct: Option<f64>,
    /// Frames received per viewer (mean).
    pub per_viewer: f64,
    /// Glass-to-glass latency (publisher write → viewer frame complete), ms.
    pub latency_ms: Option<Percentiles>,
}

impl TrackSummary {
    fn of(tallies: &[&TrackTally], viewers: usize) -> Self {
        let sum = |f: fn(&TrackTally) -> u64| tallies.iter().map(|t| f(t)).sum::<u64>();
        let (expected, got) = (sum(|t| t.expected), sum(|t| t.received_of_expected));
        let lat: Vec<f64> = tallies.iter().flat_map(|t| t.latencies_ms.iter().copied()).collect();
        let worst = tallies
            .iter()
            .filter(|t| t.expected > 0)
            .map(|t| t.received_of_expected as f64 * 100.0 / t.expected as f64)
            .min_by(f64::total_cmp);
        Self {
            received: sum(|t| t.received),
            unpaired: sum(|t| t.unpaired),
            expected,
            received_of_expected: got,
            received_pct: (expected > 0).then(|| got as f64 * 100.0 / expected as f64),
            worst_viewer_pct: worst,
            per_viewer: if viewers > 0 { sum(|t| t.received) as f64 / viewers as f64 } else { 0.0 },
            latency_ms: Percentiles::of(&lat),
        }
    }
}

/// The `viewers` section of a report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ViewersReport {
    /// Viewers started per session.
    pub per_session: usize,
    /// Viewers that connected (ICE + DTLS).
    pub connected: usize,
    /// Viewers that failed.
    pub failed: usize,
    /// Failure kind → count.
    pub failures: BTreeMap<String, usize>,
    /// The first few failure messages.
    pub failure_examples: Vec<String>,
    /// Viewers connected and not failed at the end of the steady window.
    pub active_in_steady_window: usize,
    /// Viewers that did not fail yet received no video frame at all (their expected frames
    /// count from the first one received, so the percentages below cannot show them).
    pub without_video: usize,
    /// JoinStorageSessionAsViewer sent → first video frame received, ms.
    pub join_to_first_video_ms: Option<Percentiles>,
    /// Video (H.264).
    pub video: TrackSummary,
    /// Audio (Opus).
    pub audio: TrackSummary,
    /// Δ `reel_storage_viewer_frames_total`: frames reel handed to viewers.
    pub reel_frames_forwarded: Option<u64>,
    /// Δ `reel_webrtc_send_dropped_total`: datagrams reel could not send.
    pub reel_send_dropped: Option<u64>,
    /// Δ `reel_webrtc_sent_datagrams_total`: datagrams reel sent (viewers' and masters').
    pub reel_datagrams_sent: Option<u64>,
    /// Δ `reel_webrtc_send_calls_total`: the `sendmsg` calls that carried them.
    pub reel_send_calls: Option<u64>,
    /// The run without viewers this one is compared with: its reel CPU ms/s over the steady
    /// window and its active sessions (filled in by the caller that ran it).
    pub baseline_cpu_ms_per_s: Option<f64>,
    /// Active sessions of the baseline run.
    pub baseline_active_sessions: Option<usize>,
    /// (reel CPU ms/s with viewers − baseline, scaled to the same sessions) / viewers.
    pub cpu_ms_per_viewer_s: Option<f64>,
}

/// One viewer's data, for [`ViewersReport::new`].
#[derive(Debug, Clone)]
pub struct ViewerRun {
    /// Index of the session (publisher) it watched.
    pub session: usize,
    /// What it received.
    pub frames: Vec<FrameReceived>,
    /// JoinStorageSessionAsViewer answered (µs), if it was.
    pub join_ok_us: Option<i64>,
    /// When it stopped (µs).
    pub ended_us: Option<i64>,
    /// Connected (ICE + DTLS).
    pub connected: bool,
    /// Failure kind and message, if it failed.
    pub failure: Option<(String, String)>,
}

impl ViewersReport {
    /// From every viewer's run and the index of what each session's publisher sent.
    pub fn new(per_session: usize, viewers: &[ViewerRun], sent: &[SentIndex]) -> Self {
        let mut r = Self { per_session, ..Default::default() };
        let (mut video, mut audio, mut first_video) = (Vec::new(), Vec::new(), Vec::new());
        for v in viewers {
            r.connected += usize::from(v.connected);
            if let Some((kind, msg)) = &v.failure {
                r.failed += 1;
                *r.failures.entry(kind.clone()).or_default() += 1;
                if r.failure_examples.len() < 5 {
                    r.failure_examples.push(msg.clone());
                }
            }
            let Some(index) = sent.get(v.session) else { continue };
            let end = v.ended_us.unwrap_or(i64::MAX);
            video.push(tally(index, &v.frames, Track::Video, end));
            audio.push(tally(index, &v.frames, Track::Audio, end));
            let first = v.frames.iter().find(|f| f.track == Track::Video);
            if let (Some(join), Some(f)) = (v.join_ok_us, first) {
                first_video.push((f.arrival_unix_us - join) as f64 / 1000.0);
            }
            r.without_video += usize::from(first.is_none() && v.failure.is_none());
        }
        r.video = TrackSummary::of(&video.iter().collect::<Vec<_>>(), viewers.len());
        r.audio = TrackSummary::of(&audio.iter().collect::<Vec<_>>(), viewers.len());
        r.join_to_first_video_ms = Percentiles::of(&first_video);
        r
    }

    /// reel's forwarding counters from two `/metrics` scrapes (before and after the run).
    pub fn add_metrics(&mut self, before: Option<&str>, after: Option<&str>) {
        let delta = |name: &str| {
            let (b, a) = (before?, after?);
            Some((prometheus_sum(a, name) - prometheus_sum(b, name)).max(0.0) as u64)
        };
        self.reel_frames_forwarded = delta(METRIC_VIEWER_FRAMES);
        self.reel_send_dropped = delta(METRIC_SEND_DROPPED);
        self.reel_datagrams_sent = delta(METRIC_SENT_DATAGRAMS);
        self.reel_send_calls = delta(METRIC_SEND_CALLS);
    }

    /// The report table's rows.
    pub fn table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "  live viewers connected / failed              {} / {}   ({} per session; {} active in the steady window)",
            self.connected, self.failed, self.per_session, self.active_in_steady_window
        );
        let _ = writeln!(o, "  live viewers that got no video frame         {}", self.without_video);
        for (k, n) in &self.failures {
            let _ = writeln!(o, "    failed: {k} × {n}");
        }
        for e in &self.failure_examples {
            let _ = writeln!(o, "      e.g. {e}");
        }
        pct_row(&mut o, "viewer join → first video frame (ms)", &self.join_to_first_video_ms);
        for (name, t) in [("video", &self.video), ("audio", &self.audio)] {
            let _ = writeln!(
                o,
                "  viewer {name} frames received / expected        {} / {} = {} % (worst viewer {} %; {:.0} per viewer; unpaired {})",
                t.received_of_expected,
                t.expected,
                opt(t.received_pct, 2),
                opt(t.worst_viewer_pct, 2),
                t.per_viewer,
                t.unpaired
            );
            pct_row(&mut o, &format!("glass-to-glass {name}, master → viewer (ms)"), &t.latency_ms);
        }
        let _ = writeln!(
            o,
            "  reel frames forwarded / datagrams dropped    {} / {}",
            self.reel_frames_forwarded.map_or("n/a".into(), |v| v.to_string()),
            self.reel_send_dropped.map_or("n/a".into(), |v| v.to_string())
        );
        let per_call = self.reel_datagrams_sent.zip(self.reel_send_calls).filter(|&(_, c)| c > 0);
        let _ = writeln!(
            o,
            "  reel datagrams sent / sendmsg calls          {} / {}   ({} per call)",
            self.reel_datagrams_sent.map_or("n/a".into(), |v| v.to_string()),
            self.reel_send_calls.map_or("n/a".into(), |v| v.to_string()),
            opt(per_call.map(|(d, c)| d as f64 / c as f64), 2)
        );
        let _ = writeln!(
            o,
            "  reel CPU per forwarded viewer-second         {} ms   (baseline without viewers {} ms/s over {} sessions)",
            opt(self.cpu_ms_per_viewer_s, 4),
            opt(self.baseline_cpu_ms_per_s, 1),
            self.baseline_active_sessions.map_or("n/a".into(), |v| v.to_string())
        );
        o
    }

    /// Fills in the CPU comparison with `baseline`, the same load without viewers.
    pub fn compare(&mut self, with: Option<&Steady>, baseline: Option<&Steady>) {
        self.baseline_cpu_ms_per_s = baseline.and_then(cpu_rate);
        self.baseline_active_sessions = baseline.map(|b| b.active_sessions);
        self.cpu_ms_per_viewer_s = cpu_per_viewer_second_ms(with, baseline, self.active_in_steady_window);
    }
}

/// A steady window's reel CPU, ms per second.
fn cpu_rate(s: &Steady) -> Option<f64> {
    s.recorder_cpu_ms.filter(|_| s.seconds > 0.0).map(|ms| ms / s.seconds)
}

/// CPU per forwarded viewer-second, ms: the reel CPU rate of the run with `viewers` viewers
/// minus the baseline run's (scaled by active sessions, should one of the runs have lost a
/// session), over the viewers. `None` without both CPU figures or without viewers.
pub fn cpu_per_viewer_second_ms(with: Option<&Steady>, baseline: Option<&Steady>, viewers: usize) -> Option<f64> {
    let (w, b) = (with?, baseline?);
    if viewers == 0 || b.active_sessions == 0 {
        return None;
    }
    let base = cpu_rate(b)? * w.active_sessions as f64 / b.active_sessions as f64;
    Some((cpu_rate(w)? - base) / viewers as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video_sent(n: u64, t0: i64) -> Vec<FrameSent> {
        (0..n)
            .map(|i| FrameSent {
                index: i,
                seq: i,
                rtp_ticks: i * 3000,
                keyframe: i % 60 == 0,
                sent_unix_us: t0 + (i as i64) * 33_333,
            })
            .collect()
    }

    fn rx(track: Track, rtp: u64, keyframe: bool, at: i64) -> FrameReceived {
        FrameReceived { track, rtp: rtp as u32, keyframe, arrival_unix_us: at }
    }

    #[test]
    fn pairs_by_rtp_time_through_losses_and_skips() {
        let t0 = 1_700_000_000_000_000;
        let sent = SentIndex::new(&video_sent(300, t0), (0..500u64).map(|j| (j * 960, t0 + j as i64 * 20_000)));
        // The viewer joined mid-GOP: video starts at the keyframe 60, frame 100 is lost,
        // every frame arrives 40 ms after it was sent; audio from packet 90, 10 ms late.
        let mut got = Vec::new();
        for i in (60..300u64).filter(|&i| i != 100) {
            got.push(rx(Track::Video, i * 3000, i % 60 == 0, t0 + i as i64 * 33_333 + 40_000));
        }
        for j in 90..500u64 {
            got.push(rx(Track::Audio, j * 960, false, t0 + j as i64 * 20_000 + 10_000));
        }
        got.push(rx(Track::Video, 7, false, t0)); // a timestamp the master never sent
        let end = t0 + 300 * 33_333 + 1_000_000; // stopped 1 s after the last frame
        let v = tally(&sent, &got, Track::Video, end);
        assert_eq!((v.received, v.paired, v.unpaired), (240, 239, 1));
        assert_eq!(v.expected, 240, "frames 60..300 fall in the window");
        assert_eq!(v.received_of_expected, 239, "frame 100 is missing");
        assert!(v.latencies_ms.iter().all(|&l| (l - 40.0).abs() < 1e-9), "{:?}", &v.latencies_ms[..3]);
        let a = tally(&sent, &got, Track::Audio, end);
        assert_eq!((a.paired, a.unpaired), (410, 0));
        // Audio sent up to end − 1 s is expected (here: all of it, from packet 90 on).
        let last_expected = (0..500i64).filter(|j| t0 + j * 20_000 <= end - TAIL_MARGIN_US).max().unwrap();
        assert_eq!(a.expected, (last_expected - 90 + 1) as u64);
        assert_eq!(a.received_of_expected, a.expected);
    }

    #[test]
    fn rebased_rtp_times_pair_with_nothing() {
        let t0 = 1_000_000;
        let sent = SentIndex::new(&video_sent(10, t0), []);
        let got: Vec<_> = (0..10u64).map(|i| rx(Track::Video, 1_234_567 + i * 3000, i == 0, t0)).collect();
        let v = tally(&sent, &got, Track::Video, t0 + 10_000_000);
        assert_eq!((v.paired, v.unpaired, v.expected), (0, 10, 0));
    }

    #[test]
    fn report_sums_viewers_and_takes_percentiles() {
        let t0 = 1_700_000_000_000_000;
        let sent = vec![SentIndex::new(&video_sent(60, t0), [])];
        let frames: Vec<_> = (0..60u64)
            .map(|i| rx(Track::Video, i * 3000, i == 0, t0 + i as i64 * 33_333 + 20_000 + i as i64 * 1000))
            .collect();
        let ok = ViewerRun {
            session: 0,
            frames,
            join_ok_us: Some(t0 - 500_000),
            ended_us: Some(t0 + 3_000_000),
            connected: true,
            failure: None,
        };
        let failed = ViewerRun {
            session: 0,
            frames: Vec::new(),
            join_ok_us: None,
            ended_us: Some(t0),
            connected: false,
            failure: Some(("no_offer".into(), "no SDP_OFFER within 30s".into())),
        };
        let starved = ViewerRun {
            session: 0,
            frames: Vec::new(),
            join_ok_us: Some(t0),
            ended_us: Some(t0 + 3_000_000),
            connected: true,
            failure: None,
        };
        let r = ViewersReport::new(2, &[ok, failed, starved], &sent);
        assert_eq!((r.connected, r.failed, r.without_video), (2, 1, 1));
        assert_eq!(r.failures.get("no_offer"), Some(&1));
        let lat = r.video.latency_ms.unwrap();
        assert_eq!(lat.n, 60);
        assert!((lat.p50 - 49.0).abs() < 1e-9 && (lat.max - 79.0).abs() < 1e-9, "{lat:?}");
        assert_eq!(r.video.received_pct, Some(100.0));
        assert_eq!(r.join_to_first_video_ms.map(|p| p.p50), Some(520.0));
    }

    #[test]
    fn cpu_per_viewer_second_subtracts_the_baseline_rate() {
        let base = Steady::new(10.0, 10, Some(2_000.0), None); // 200 ms/s for 10 sessions
        let with = Steady::new(20.0, 10, Some(4_600.0), None); // 230 ms/s
        let v = cpu_per_viewer_second_ms(Some(&with), Some(&base), 30).unwrap();
        assert!((v - 1.0).abs() < 1e-9, "{v}");
        // A session lost in the run with viewers: the baseline is scaled to 9 sessions.
        let with9 = Steady::new(20.0, 9, Some(4_600.0), None);
        let v9 = cpu_per_viewer_second_ms(Some(&with9), Some(&base), 27).unwrap();
        assert!((v9 - (230.0 - 180.0) / 27.0).abs() < 1e-9, "{v9}");
        assert_eq!(cpu_per_viewer_second_ms(Some(&with), None, 30), None);
        assert_eq!(cpu_per_viewer_second_ms(Some(&with), Some(&base), 0), None);
    }
}
