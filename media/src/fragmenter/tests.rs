//! Scenario tests on fake time: one scenario per test, on the harness below.

use super::*;
use crate::h264::AvcConfig;
use crate::mkv::{Frame, parse_stored, parse_tracks};

/// Session start, µs since the Unix epoch.
const T0: i64 = 1_700_000_000_000_000;
const SPS: &[u8] = &[
    0x67, 0x42, 0xe0, 0x1f, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03,
    0x00, 0x3c, 0x0f, 0x18, 0x32, 0x48,
];
const PPS: &[u8] = &[0x68, 0xcb, 0x8c, 0xb2];
/// An SPS for 1280x720 (42e01f), for parameter-set changes.
const SPS_720P: &[u8] = &[0x67, 0x42, 0xe0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe4];

fn annexb(nals: &[&[u8]]) -> Vec<u8> {
    nals.iter().flat_map(|n| [&[0, 0, 0, 1][..], n].concat()).collect()
}

fn idr_au(sps: &[u8], n: u32) -> Vec<u8> {
    annexb(&[sps, PPS, &[0x65, 0x88, (n & 0xff) as u8, 0x10]])
}

fn p_au(n: u32) -> Vec<u8> {
    annexb(&[&[0x41, 0x9a, (n & 0xff) as u8, 0x20]])
}

/// A completed (or still open) fragment reconstructed from events.
#[derive(Debug, Default)]
struct Frag {
    producer_ms: u64,
    server_ms: u64,
    header: Vec<u8>,
    chunks: Vec<Vec<u8>>,
    media_end_ms: Vec<u32>,
    duration_ms: Option<u32>,
}

impl Frag {
    fn frames(&self) -> Vec<Frame<'_>> {
        parse_stored(&self.header, self.chunks.iter().map(Vec::as_slice), self.producer_ms as i64).unwrap().frames
    }
    fn video(&self) -> Vec<Frame<'_>> {
        self.frames().into_iter().filter(|f| f.track == 1).collect()
    }
    fn audio(&self) -> Vec<Frame<'_>> {
        self.frames().into_iter().filter(|f| f.track == 2).collect()
    }
}

/// Drives a fragmenter with synthetic 30 fps video and 20 ms audio on a fake clock.
struct Harness {
    f: Fragmenter,
    frags: Vec<Frag>,
    requests: Vec<(i64, KeyframeReason)>,
    now: i64,
}

impl Harness {
    fn new(cfg: FragmenterConfig) -> Self {
        let mut h = Self { f: Fragmenter::new(cfg, T0).unwrap(), frags: vec![], requests: vec![], now: T0 };
        h.drain();
        h
    }

    fn drain(&mut self) {
        while let Some(ev) = self.f.poll() {
            match ev {
                FragmentEvent::BeginFragment { producer_ts_ms, server_ts_ms, header } => {
                    if let Some(last) = self.frags.last() {
                        assert!(last.duration_ms.is_some(), "Begin while a fragment is open");
                    }
                    self.frags.push(Frag {
                        producer_ms: producer_ts_ms,
                        server_ms: server_ts_ms,
                        header: header.to_vec(),
                        ..Frag::default()
                    })
                }
                FragmentEvent::Chunk { bytes, media_end_ms, .. } => {
                    let f = self.frags.last_mut().expect("chunk outside a fragment");
                    assert!(f.duration_ms.is_none(), "chunk after EndFragment");
                    f.chunks.push(bytes);
                    f.media_end_ms.push(media_end_ms);
                }
                FragmentEvent::EndFragment { duration_ms } => {
                    let f = self.frags.last_mut().expect("end outside a fragment");
                    assert!(f.duration_ms.is_none(), "double EndFragment");
                    f.duration_ms = Some(duration_ms);
                }
                FragmentEvent::RequestKeyframe { reason } => self.requests.push((self.now, reason)),
            }
        }
    }

    fn push(
        &mut self,
        kind: MediaKind,
        ts: u32,
        arrival: i64,
        contiguous: bool,
        data: Vec<u8>,
        sr: Option<SenderReport>,
    ) {
        self.now = self.now.max(arrival);
        self.f.push(MediaFrame {
            kind,
            rtp_timestamp: ts,
            arrival_unix_us: arrival,
            contiguous,
            data,
            sender_report: sr,
        });
        self.drain();
    }

    fn video(&mut self, ts: u32, arrival: i64, data: Vec<u8>) {
        self.push(MediaKind::Video, ts, arrival, true, data, None);
    }

    fn audio(&mut self, ts: u32, arrival: i64) {
        self.push(MediaKind::Audio, ts, arrival, true, vec![0xfc, 0xff, 0xfe], None);
    }

    fn finish(&mut self) {
        self.f.finish(self.now);
        self.drain();
    }

    /// Pushes `secs` of A/V: video frame i at 30 fps (IDR when `is_idr(i)`), audio every 20 ms,
    /// both arriving on time, audio interleaved before the video frame that follows it.
    fn run(&mut self, frames: u32, v_ts0: u32, a_ts0: u32, is_idr: impl Fn(u32) -> bool) {
        let mut next_audio = 0u32;
        for i in 0..frames {
            let t_us = i64::from(i) * 1_000_000 / 30;
            while i64::from(next_audio) * 20_000 <= t_us {
                let at = T0 + i64::from(next_audio) * 20_000;
                self.audio(a_ts0.wrapping_add(next_audio * 960), at);
                next_audio += 1;
            }
            let data = if is_idr(i) { idr_au(SPS, i) } else { p_au(i) };
            self.video(v_ts0.wrapping_add(i * 3_000), T0 + t_us, data);
        }
    }
}

fn cfg() -> FragmenterConfig {
    FragmenterConfig::default()
}

#[test]
fn config_is_validated() {
    assert_eq!(cfg().validate(), Ok(()));
    let bad = |f: fn(&mut FragmenterConfig)| {
        let mut c = cfg();
        f(&mut c);
        Fragmenter::new(c, T0).err()
    };
    assert_eq!(bad(|c| c.target_duration_ms = 0), Some(ConfigError::Target));
    assert_eq!(bad(|c| c.target_duration_ms = 10_001), Some(ConfigError::Target));
    assert_eq!(bad(|c| c.max_duration_ms = 1_000), Some(ConfigError::Max));
    assert_eq!(bad(|c| c.max_duration_ms = 30_001), Some(ConfigError::Max));
    assert_eq!(bad(|c| c.interleave_window_ms = 0), Some(ConfigError::Zero));
}

#[test]
fn waits_for_the_first_idr_and_asks_for_it() {
    let mut h = Harness::new(cfg());
    assert_eq!(h.requests, vec![(T0, KeyframeReason::Start)]);
    // 2 s of P frames only: nothing stored, keyframe requested again every second.
    for i in 0..60u32 {
        h.video(i * 3_000, T0 + i64::from(i) * 33_333, p_au(i));
        h.audio(i * 960, T0 + i64::from(i) * 20_000);
    }
    assert!(h.frags.is_empty());
    let waiting = h.requests.iter().filter(|r| r.1 == KeyframeReason::Waiting).count();
    assert_eq!(waiting, 1, "one repeat within 2 s at 1 s spacing (second falls at 2 s): {:?}", h.requests);
    h.video(60 * 3_000, T0 + 2_000_000, idr_au(SPS, 60));
    h.finish();
    assert_eq!(h.frags.len(), 1);
    let s = h.f.stats();
    assert_eq!(s.dropped.waiting_for_keyframe, 60);
    assert!(s.dropped.no_fragment > 0);
    assert_eq!(s.video_out, 1);
    let v = h.frags[0].video();
    assert!(v[0].keyframe);
    assert_eq!(h.frags[0].producer_ms, (T0 as u64 / 1_000) + 2_000);
    assert_eq!(h.frags[0].server_ms, (T0 as u64 / 1_000) + 2_000);
}

#[test]
fn cuts_at_keyframes_once_the_target_is_reached() {
    let mut h = Harness::new(cfg());
    // 6 s, IDR every second: cuts at 2 s and 4 s only.
    h.run(180, 1_000, 5_000, |i| i % 30 == 0);
    h.finish();
    assert_eq!(h.frags.len(), 3);
    let t0_ms = T0 as u64 / 1_000;
    for (n, f) in h.frags.iter().enumerate() {
        assert_eq!(f.producer_ms, t0_ms + 2_000 * n as u64, "fragments are contiguous");
        assert_eq!(f.duration_ms, Some(2_000));
        let v = f.video();
        assert_eq!(v.len(), 60);
        assert!(v[0].keyframe && v[0].timestamp_ms == f.producer_ms as i64, "starts with its IDR");
        assert_eq!(v.iter().filter(|f| f.keyframe).count(), 2, "the IDR at 1 s stays inside");
        let a = f.audio();
        assert!(a.iter().all(|x| x.timestamp_ms >= f.producer_ms as i64));
        assert!(a.iter().all(|x| x.timestamp_ms < (f.producer_ms + 2_000) as i64));
        assert!(f.media_end_ms.windows(2).all(|w| w[0] <= w[1]));
    }
    let audio_total: usize = h.frags.iter().map(|f| f.audio().len()).sum();
    assert_eq!(audio_total, 299, "every audio frame pushed (0 ms ..= 5.96 s) lands in exactly one fragment");
    let s = h.f.stats();
    assert_eq!((s.video_in, s.video_out, s.fragments), (180, 180, 3));
    assert_eq!(s.dropped, DropCounts::default());
    let header = parse_tracks(&h.frags[0].header).unwrap();
    assert_eq!(header.len(), 2);
    let avc = AvcConfig::parse(&header[0].codec_private).unwrap();
    assert_eq!((avc.width(), avc.height(), avc.codec_string().as_str()), (640, 360, "avc1.42e01f"));
}

#[test]
fn long_gop_gets_keyframe_requests_and_a_hard_cap() {
    let mut h = Harness::new(cfg());
    // IDR every 14 s: PLIs from 2 s on, the fragment ends at the 12 s cap, video waits for 14 s.
    h.run(30 * 16, 0, 0, |i| i % 420 == 0);
    h.finish();
    let long_gop: Vec<_> = h.requests.iter().filter(|r| r.1 == KeyframeReason::LongGop).map(|r| r.0).collect();
    assert!(long_gop.first().is_some_and(|t| (T0 + 2_000_000..T0 + 2_100_000).contains(t)), "{long_gop:?}");
    // Repeated once per second until the hard cap at 12 s forces one more.
    let before_cap: Vec<_> = long_gop.iter().filter(|&&t| t < T0 + 11_950_000).collect();
    assert!(before_cap.windows(2).all(|w| w[1] - w[0] >= 1_000_000), "{long_gop:?}");
    assert!(before_cap.len() >= 9, "{long_gop:?}");
    assert_eq!(h.frags.len(), 2);
    assert!(h.frags[0].duration_ms.unwrap() <= 12_000);
    assert!(h.frags[0].duration_ms.unwrap() >= 11_900);
    assert_eq!(h.frags[1].producer_ms, T0 as u64 / 1_000 + 14_000);
    let s = h.f.stats();
    assert!(s.dropped.too_long > 0);
    assert!(s.dropped.waiting_for_keyframe > 0);
}

#[test]
fn loss_ends_the_fragment_and_waits_for_the_next_idr() {
    let mut h = Harness::new(cfg());
    h.run(45, 0, 0, |i| i == 0);
    // Frame 45 arrives after a gap the jitter buffer gave up on.
    h.push(MediaKind::Video, 45 * 3_000, T0 + 1_500_000, false, p_au(45), None);
    assert!(h.requests.iter().any(|r| r.1 == KeyframeReason::Loss));
    for i in 46..80u32 {
        h.video(i * 3_000, T0 + i64::from(i) * 33_333, p_au(i));
    }
    h.video(80 * 3_000, T0 + 80 * 33_333 + 1, idr_au(SPS, 80));
    h.finish();
    assert_eq!(h.frags.len(), 2);
    let first = &h.frags[0];
    assert_eq!(first.video().len(), 45);
    assert_eq!(first.duration_ms, Some(1_500), "ends after its last frame");
    assert_eq!(h.frags[1].video().len(), 1);
    assert!(h.frags[1].video()[0].keyframe);
    let s = h.f.stats();
    assert_eq!(s.dropped.loss, 1);
    assert_eq!(s.dropped.waiting_for_keyframe, 34);
    // A gap in producer time is kept (the lost span is not papered over).
    assert_eq!(h.frags[1].producer_ms, T0 as u64 / 1_000 + 2_666);
}

#[test]
fn a_non_contiguous_idr_just_starts_a_new_fragment() {
    let mut h = Harness::new(cfg());
    h.run(20, 0, 0, |i| i == 0);
    h.push(MediaKind::Video, 25 * 3_000, T0 + 833_333, false, idr_au(SPS, 25), None);
    h.video(26 * 3_000, T0 + 866_666, p_au(26));
    h.finish();
    assert_eq!(h.frags.len(), 2);
    assert_eq!(h.frags[1].video().len(), 2);
    assert_eq!(h.f.stats().dropped.loss, 0);
}

#[test]
fn parameter_set_change_starts_a_fragment_with_new_codec_private() {
    let mut h = Harness::new(cfg());
    h.run(15, 0, 0, |i| i == 0);
    // A resolution change 0.5 s in: new SPS/PPS with an IDR cuts at once.
    h.video(15 * 3_000, T0 + 500_000, idr_au(SPS_720P, 15));
    h.video(16 * 3_000, T0 + 533_333, p_au(16));
    // The same parameter sets repeated with the next IDR are no change.
    h.video(17 * 3_000, T0 + 566_666, idr_au(SPS_720P, 17));
    h.finish();
    assert_eq!(h.frags.len(), 2);
    assert_eq!(h.frags[0].duration_ms, Some(500));
    let size = |f: &Frag| {
        let t = parse_tracks(&f.header).unwrap();
        t[0].video.map(|v| (v.width, v.height))
    };
    assert_eq!(size(&h.frags[0]), Some((640, 360)));
    assert_eq!(size(&h.frags[1]), Some((1280, 720)));
    assert_eq!(h.frags[1].video().len(), 3);
    assert_eq!(h.f.stats().codec_changes, 2);
    // A changed SPS on a non-IDR frame: handled like loss.
    h.video(18 * 3_000, T0 + 600_000, annexb(&[SPS, PPS, &[0x41, 0x9a, 1, 2]]));
    h.drain();
    assert!(h.requests.iter().any(|r| r.1 == KeyframeReason::ParameterSetChange));
    assert_eq!(h.f.stats().dropped.parameter_set_change, 1);
}

#[test]
fn audio_goes_to_the_fragment_its_timestamp_belongs_to() {
    let mut h = Harness::new(cfg());
    // Audio arrives 100 ms later than video captured at the same time (a deeper jitter
    // buffer). Sender reports say both RTP clocks started at the same NTP instant, so audio
    // is aligned by them, and interleaving puts the audio before each cut into the earlier
    // fragment although it arrives after the cutting IDR.
    let v_sr = SenderReport { ntp_unix_us: T0 - 10_000, rtp_timestamp: 0 };
    let a_sr = SenderReport { ntp_unix_us: T0 - 10_000, rtp_timestamp: 0 };
    let mut next_audio = 0u32;
    for i in 0..150u32 {
        let t_us = i64::from(i) * 1_000_000 / 30;
        while i64::from(next_audio) * 20_000 + 100_000 <= t_us {
            let arrival = T0 + i64::from(next_audio) * 20_000 + 100_000;
            h.push(MediaKind::Audio, next_audio * 960, arrival, true, vec![0xfc, 1], Some(a_sr));
            next_audio += 1;
        }
        let data = if i % 30 == 0 { idr_au(SPS, i) } else { p_au(i) };
        h.push(MediaKind::Video, i * 3_000, T0 + t_us, true, data, Some(v_sr));
    }
    h.finish();
    assert_eq!(h.frags.len(), 3);
    for f in &h.frags {
        let start = f.producer_ms as i64;
        let end = start + i64::from(f.duration_ms.unwrap());
        assert!(f.audio().iter().all(|a| a.timestamp_ms >= start && a.timestamp_ms < end), "{start}..{end}");
    }
    assert_eq!(h.frags[0].audio().len(), 100, "all 2 s of audio in the first fragment");
    assert_eq!(h.f.stats().dropped.late, 0);
}

#[test]
fn dtx_pauses_are_not_errors() {
    let mut h = Harness::new(cfg());
    let mut audio_sent = 0;
    for i in 0..150u32 {
        let t_us = i64::from(i) * 1_000_000 / 30;
        // Audio only in the first and last second: 3 s of silence suppressed in between.
        if !(1_000_000..4_000_000).contains(&t_us) && i % 3 == 0 {
            h.audio(i * 1_600, T0 + t_us);
            audio_sent += 1;
        }
        let data = if i % 30 == 0 { idr_au(SPS, i) } else { p_au(i) };
        h.video(i * 3_000, T0 + t_us, data);
    }
    h.finish();
    let s = h.f.stats();
    assert_eq!(s.dropped, DropCounts::default());
    assert_eq!(s.audio_out, audio_sent);
    assert_eq!(s.video_out, 150);
    // While audio is silent, video is not held back beyond the interleave window.
    assert!(h.frags.iter().all(|f| f.duration_ms.is_some()));
}

#[test]
fn rtp_timestamps_wrap_without_a_seam() {
    let mut h = Harness::new(cfg());
    h.run(180, u32::MAX - 200_000, u32::MAX - 50_000, |i| i % 30 == 0);
    h.finish();
    assert_eq!(h.frags.len(), 3);
    let t0_ms = T0 as u64 / 1_000;
    for (n, f) in h.frags.iter().enumerate() {
        assert_eq!(f.producer_ms, t0_ms + 2_000 * n as u64);
        assert_eq!(f.video().len(), 60);
    }
    assert_eq!(h.f.stats().dropped, DropCounts::default());
}

#[test]
fn reordered_audio_is_clamped_or_dropped() {
    let mut h = Harness::new(cfg());
    h.video(0, T0, idr_au(SPS, 0));
    h.audio(960 * 2, T0 + 40_000);
    h.audio(960, T0 + 41_000); // 20 ms older than the previous packet: clamped
    h.video(3_000, T0 + 33_333, p_au(1));
    h.video(6_000, T0 + 66_666, p_au(2));
    h.finish();
    let s = h.f.stats();
    // The interleaver sorted them? No: each queue keeps arrival order, so the older
    // packet is behind the newer one and must be clamped.
    assert_eq!(s.audio_clamped, 1);
    let a = h.frags[0].audio();
    assert_eq!(a.len(), 2);
    // Strictly increasing: players reject equal audio DTS.
    assert!(a[0].timestamp_ms < a[1].timestamp_ms, "{:?} then {:?}", a[0].timestamp_ms, a[1].timestamp_ms);
}

#[test]
fn sender_reports_set_producer_time_and_drift_is_smoothed() {
    let mut h = Harness::new(cfg());
    let sender = T0 - 3_000_000; // the sender's clock is 3 s behind
    let mut drift = 0i64;
    for i in 0..240u32 {
        let t_us = i64::from(i) * 1_000_000 / 30;
        // A report every second; the sender's RTP clock runs 1 ms/s slow against its NTP.
        if i % 30 == 0 {
            drift += 1_000;
        }
        let sr = SenderReport { ntp_unix_us: sender + t_us + drift, rtp_timestamp: i * 3_000 };
        let data = if i % 30 == 0 { idr_au(SPS, i) } else { p_au(i) };
        h.push(MediaKind::Video, i * 3_000, T0 + t_us + 20_000, true, data, Some(sr));
    }
    h.finish();
    assert_eq!(h.frags.len(), 4);
    let sender_ms = (sender / 1_000) as u64;
    assert!(h.frags[0].producer_ms.abs_diff(sender_ms) <= 2, "{} vs {sender_ms}", h.frags[0].producer_ms);
    for w in h.frags.windows(2) {
        assert_eq!(w[1].producer_ms, w[0].producer_ms + u64::from(w[0].duration_ms.unwrap()), "contiguous");
    }
    assert!(h.frags[0].server_ms >= T0 as u64 / 1_000);
    assert_eq!(h.f.stats().timing.untrusted_sender_reports, 0);
}

#[test]
fn a_new_session_never_starts_before_the_previous_one_ended() {
    let mut h = Harness::new(cfg());
    let previous_end_ms = T0 as u64 / 1_000 + 5_000; // the last session's clock ran ahead
    h.f.set_previous_end(previous_end_ms);
    h.run(90, 0, 0, |i| i % 30 == 0);
    h.finish();
    assert_eq!(h.frags[0].producer_ms, previous_end_ms);
    assert_eq!(h.frags[1].producer_ms, previous_end_ms + 2_000);
    assert_eq!(h.f.stats().clock_backwards, 2, "both fragments of this session were moved");
}

#[test]
fn video_only_sessions_need_no_audio() {
    let mut h = Harness::new(FragmenterConfig { audio: None, ..cfg() });
    h.run(90, 0, 0, |i| i % 30 == 0);
    // Video is written at once: nothing waits for audio to interleave.
    assert_eq!(h.frags.len(), 2);
    assert_eq!(h.frags[1].video().len(), 30);
    h.finish();
    assert_eq!(parse_tracks(&h.frags[0].header).unwrap().len(), 1);
    assert!(h.frags.iter().all(|f| f.audio().is_empty()));
}

#[test]
fn malformed_input_is_counted_and_the_session_survives() {
    let mut h = Harness::new(cfg());
    h.run(10, 0, 0, |i| i == 0);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..2_000u32 {
        let len = (rnd() % 40) as usize;
        let mut data: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        if i % 3 == 0 && data.len() > 4 {
            data[..4].copy_from_slice(&[0, 0, 0, 1]);
        }
        let kind = if i % 2 == 0 { MediaKind::Video } else { MediaKind::Audio };
        let ts = rnd() as u32;
        let arrival = T0 + 400_000 + i64::from(i) * 100;
        h.push(kind, ts, arrival, rnd() % 2 == 0, data, None);
    }
    let before = h.frags.len();
    h.run(60, 5_000_000, 9_000_000, |i| i == 0);
    h.finish();
    assert!(h.frags.len() > before, "a clean IDR after the flood starts a fragment");
    assert!(h.f.stats().dropped.malformed > 0);
    for f in &h.frags {
        let v = f.video();
        if let Some(first) = v.first() {
            assert!(first.keyframe, "every fragment starts with a keyframe");
        }
        assert!(f.frames().iter().all(|x| x.timestamp_ms >= f.producer_ms as i64));
    }
}

#[test]
fn idle_streams_are_released_by_timeout() {
    let mut h = Harness::new(cfg());
    h.video(0, T0, idr_au(SPS, 0));
    assert!(h.frags.is_empty(), "held for interleaving with audio");
    let due = h.f.poll_timeout().unwrap();
    assert!(due <= T0 + 500_000);
    h.now = due;
    h.f.handle_timeout(due);
    h.drain();
    assert_eq!(h.frags.len(), 1);
    assert_eq!(h.frags[0].video().len(), 1);
}

#[test]
fn fragments_the_fixture_files() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");
    let video = std::fs::read(format!("{dir}/test-h264-baseline.h264")).unwrap();
    let audio = std::fs::read(format!("{dir}/test-opus.packets")).unwrap();
    let aus = fixture::access_units(&video);
    let packets = fixture::length_prefixed(&audio);
    assert_eq!(aus.len(), 180);
    assert!(packets.len() >= 299);
    let mut h = Harness::new(cfg());
    let (mut vi, mut ai) = (0usize, 0usize);
    while vi < aus.len() || ai < packets.len() {
        let v_us = vi as i64 * 1_000_000 / 30;
        let a_us = ai as i64 * 20_000;
        if ai < packets.len() && (vi >= aus.len() || a_us <= v_us) {
            h.push(MediaKind::Audio, 7_777 + ai as u32 * 960, T0 + a_us, true, packets[ai].to_vec(), None);
            ai += 1;
        } else {
            h.push(MediaKind::Video, 12_345 + vi as u32 * 3_000, T0 + v_us, true, aus[vi].to_vec(), None);
            vi += 1;
        }
    }
    h.finish();
    assert_eq!(h.frags.len(), 3);
    for (n, f) in h.frags.iter().enumerate() {
        // The last fragment runs to the end of the audio, which outlasts the video by 20 ms.
        assert_eq!(f.duration_ms, Some(if n == 2 { 2_020 } else { 2_000 }));
        let v = f.video();
        assert_eq!(v.len(), 60);
        assert!(v[0].keyframe);
        assert_eq!(v.iter().filter(|x| x.keyframe).count(), 2);
    }
    let s = h.f.stats();
    assert_eq!(s.video_out, 180);
    assert_eq!(s.audio_out as usize, packets.len());
    assert_eq!(s.dropped, DropCounts::default());
}

/// Readers for the fixture formats (see fixtures/README.md).
pub(crate) mod fixture {
    /// Splits an Annex-B file written with access unit delimiters into access units.
    pub fn access_units(data: &[u8]) -> Vec<&[u8]> {
        let mut starts = vec![];
        let mut i = 0;
        while i + 4 < data.len() {
            if data[i..i + 4] == [0, 0, 0, 1] && data[i + 4] & 0x1f == 9 {
                starts.push(i);
            }
            i += 1;
        }
        starts.iter().enumerate().map(|(n, &s)| &data[s..*starts.get(n + 1).unwrap_or(&data.len())]).collect()
    }

    /// Splits a file of 4-byte big-endian length-prefixed packets.
    pub fn length_prefixed(mut data: &[u8]) -> Vec<&[u8]> {
        let mut out = vec![];
        while data.len() >= 4 {
            let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
            out.push(&data[4..4 + len]);
            data = &data[4 + len..];
        }
        out
    }
}

#[test]
fn late_but_recovered_video_loses_nothing() {
    // Frame 10 is lost and recovered by NACK 300 ms later: frames 10..=19 are released by
    // the jitter buffer together, all contiguous, while audio kept flowing on time.
    let mut h = Harness::new(cfg());
    let mut next_audio = 0u32;
    for i in 0..60u32 {
        let t_us = i64::from(i) * 1_000_000 / 30;
        while i64::from(next_audio) * 20_000 <= t_us {
            h.audio(next_audio * 960, T0 + i64::from(next_audio) * 20_000);
            next_audio += 1;
        }
        if (10..20).contains(&i) {
            continue;
        }
        if i == 20 {
            for late in 10..20u32 {
                h.video(late * 3_000, T0 + i64::from(late) * 33_333 + 300_000, p_au(late));
            }
        }
        let data = if i == 0 { idr_au(SPS, i) } else { p_au(i) };
        h.video(i * 3_000, T0 + t_us, data);
    }
    h.finish();
    let s = h.f.stats();
    assert_eq!(s.dropped, DropCounts::default());
    assert_eq!(s.video_out, 60);
    assert_eq!(h.frags.len(), 1);
    let v = h.frags[0].video();
    assert!(v.windows(2).all(|w| w[0].timestamp_ms < w[1].timestamp_ms));
    let a = h.frags[0].audio();
    assert!(a.windows(2).all(|w| w[0].timestamp_ms < w[1].timestamp_ms));
}

#[test]
fn a_fragment_cut_after_a_video_pause_is_not_stretched_across_it() {
    let mut h = Harness::new(cfg());
    // 2.5 s of video (IDR every second), 60 s of nothing, then an IDR.
    for i in 0..75u32 {
        let data = if i % 30 == 0 { idr_au(SPS, i) } else { p_au(i) };
        h.video(i * 3_000, T0 + i64::from(i) * 33_333, data);
    }
    let i = 75 + 60 * 30;
    h.video(i * 3_000, T0 + i64::from(i) * 33_333, idr_au(SPS, i));
    h.finish();
    assert_eq!(h.frags.len(), 3, "{:?}", h.frags.iter().map(|f| f.duration_ms).collect::<Vec<_>>());
    // The second fragment (2 s .. 2.5 s) ends with its last frame, not 60 s later.
    let d = h.frags[1].duration_ms.expect("ended");
    assert!((490..=540).contains(&d), "second fragment lasts {d} ms");
    assert!(h.frags[2].producer_ms >= h.frags[1].producer_ms + u64::from(d));
}

#[test]
fn restart_at_keyframe_ends_the_fragment_and_starts_at_the_next_idr() {
    let mut h = Harness::new(cfg());
    // 0.5 s of video (IDR at 0), then the owner abandons the fragment.
    for i in 0..15u32 {
        let data = if i % 30 == 0 { idr_au(SPS, i) } else { p_au(i) };
        h.video(i * 3_000, T0 + i64::from(i) * 33_333, data);
    }
    h.f.restart_at_keyframe();
    h.drain();
    assert!(h.requests.iter().any(|r| r.1 == KeyframeReason::Restart), "{:?}", h.requests);
    // P frames until the next IDR are dropped; the IDR at 1 s starts a new fragment even
    // though the 2 s target is not reached.
    for i in 15..45u32 {
        let data = if i % 30 == 0 { idr_au(SPS, i) } else { p_au(i) };
        h.video(i * 3_000, T0 + i64::from(i) * 33_333, data);
    }
    h.finish();
    assert_eq!(h.frags.len(), 2);
    assert_eq!(h.frags[0].video().len(), 15);
    assert!(h.frags[0].duration_ms.is_some_and(|d| d <= 520), "{:?}", h.frags[0].duration_ms);
    assert_eq!(h.frags[1].video().len(), 15);
    assert!(h.frags[1].video()[0].keyframe);
    assert_eq!(h.frags[1].producer_ms, T0 as u64 / 1_000 + 1_000);
    assert_eq!(h.f.stats().dropped.waiting_for_keyframe, 15);
}

/// A sender like the KVS C SDK samples: each track's frames carry nominal RTP steps (3000
/// per video frame, 960 per 20 ms of audio) but are sent at `rate` × real time, and its
/// sender reports map RTP time to the wall clock. Arrival = send + 30 ms + up to 15 ms jitter.
struct Drifting {
    secs: i64,
    video_rate: f64,
    audio_rate: f64,
    /// From this send time on, the sender's NTP clock reads `jump` µs later.
    sr_jump: Option<(i64, i64)>,
    /// No audio sent in this window of send time (RTP time goes on, as with DTX).
    audio_mute: Option<(i64, i64)>,
    /// Video frames per GOP (the sender ignores keyframe requests).
    gop: u32,
}

impl Drifting {
    fn new(secs: i64) -> Self {
        Self { secs, video_rate: 1.0, audio_rate: 1.0, sr_jump: None, audio_mute: None, gop: 30 }
    }

    /// Runs it; returns the harness (finished) and the send times of the frames sent.
    fn run(&self) -> (Harness, Vec<i64>, Vec<i64>) {
        let mut h = Harness::new(cfg());
        let end = self.secs * 1_000_000;
        let sender_clock = T0 - 2_000_000;
        let (mut vi, mut ai) = (0u32, 0u32);
        let (mut v_sent, mut a_sent) = (Vec::new(), Vec::new());
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        loop {
            let v_at = (f64::from(vi) * 1_000_000.0 / 30.0 / self.video_rate) as i64;
            let a_at = (f64::from(ai) * 20_000.0 / self.audio_rate) as i64;
            let at = v_at.min(a_at);
            if at >= end {
                break;
            }
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let arrival = T0 + at + 30_000 + (rng % 15_000) as i64;
            let ntp = sender_clock + at + self.sr_jump.filter(|&(t, _)| at >= t).map_or(0, |(_, j)| j);
            let kind = if v_at <= a_at { MediaKind::Video } else { MediaKind::Audio };
            let (rate, ticks) = if kind == MediaKind::Video { (90_000, vi * 3_000) } else { (48_000, ai * 960) };
            let sr = SenderReport { ntp_unix_us: ntp, rtp_timestamp: (at as i128 * rate / 1_000_000) as u32 };
            if kind == MediaKind::Video {
                let data = if vi % self.gop == 0 { idr_au(SPS, vi) } else { p_au(vi) };
                h.push(kind, ticks, arrival, true, data, Some(sr));
                v_sent.push(at);
                vi += 1;
            } else {
                if !self.audio_mute.is_some_and(|(a, b)| (a..b).contains(&at)) {
                    h.push(kind, ticks, arrival, true, vec![0xfc, 0xff, 0xfe], Some(sr));
                    a_sent.push(at);
                }
                ai += 1;
            }
        }
        h.finish();
        (h, v_sent, a_sent)
    }
}

/// Checks a drifting run: every frame stored, per-track timestamps strictly increasing,
/// stored audio as continuous as sent, A/V skew ≤ 100 ms at every fragment.
fn judge_drift(h: &Harness, v_sent: &[i64], a_sent: &[i64]) -> i64 {
    let s = h.f.stats();
    assert_eq!(s.video_out as usize, v_sent.len(), "{s:?}");
    assert_eq!(s.audio_out as usize, a_sent.len(), "{s:?}");
    assert_eq!((s.unaccounted(MediaKind::Video), s.unaccounted(MediaKind::Audio)), (0, 0));
    let video: Vec<i64> = h.frags.iter().flat_map(|f| f.video()).map(|f| f.timestamp_ms).collect();
    let audio: Vec<i64> = h.frags.iter().flat_map(|f| f.audio()).map(|f| f.timestamp_ms).collect();
    assert!(video.windows(2).all(|w| w[1] > w[0]), "video timestamps must increase");
    assert!(audio.windows(2).all(|w| w[1] > w[0]), "audio timestamps must increase");
    for (n, w) in audio.windows(2).enumerate() {
        let sent_gap = (a_sent[n + 1] - a_sent[n]) / 1_000;
        assert!((w[1] - w[0] - sent_gap).abs() <= 50, "audio frame {n}: stored gap {} vs sent {sent_gap}", w[1] - w[0]);
    }
    let mut worst = 0;
    let mut first_video = 0;
    for f in &h.frags {
        let (vs, vt) = (f.video()[0].timestamp_ms, v_sent[first_video] / 1_000);
        first_video += f.video().len();
        let Some(j) = (0..a_sent.len()).min_by_key(|&j| (a_sent[j] / 1_000 - vt).abs()) else { continue };
        if (a_sent[j] / 1_000 - vt).abs() > 100 {
            continue; // no audio sent around here (mute)
        }
        let skew = (audio[j] - vs) - (a_sent[j] / 1_000 - vt);
        assert!(skew.abs() <= 100, "fragment at {vs}: A/V skew {skew} ms");
        worst = worst.max(skew.abs());
    }
    worst
}

#[test]
fn audio_three_percent_slow_with_wall_clock_reports_is_stored_whole_and_in_sync() {
    let (h, v, a) = Drifting { audio_rate: 0.97, ..Drifting::new(600) }.run();
    let worst = judge_drift(&h, &v, &a);
    assert!(h.f.stats().timing.audio_correction_us > 17_000_000, "{:?}", h.f.stats().timing);
    assert!(worst <= 100);
}

#[test]
fn audio_three_percent_fast_is_stored_whole_and_in_sync() {
    let (h, v, a) = Drifting { audio_rate: 1.03, ..Drifting::new(600) }.run();
    judge_drift(&h, &v, &a);
    assert!(h.f.stats().timing.audio_correction_us < -17_000_000, "{:?}", h.f.stats().timing);
}

#[test]
fn video_one_percent_slow_keeps_producer_time_on_the_wall_clock() {
    let (h, v, a) = Drifting { video_rate: 0.99, ..Drifting::new(600) }.run();
    judge_drift(&h, &v, &a);
    // Fragments stay contiguous and their producer time follows the sender's wall clock.
    let last = h.frags.last().expect("fragments");
    let sender_end_ms = (T0 - 2_000_000 + 600_000_000) / 1_000;
    assert!((last.producer_ms as i64 + i64::from(last.duration_ms.unwrap_or(0)) - sender_end_ms).abs() < 500);
}

#[test]
fn a_two_minute_audio_mute_leaves_exactly_that_gap() {
    let (h, v, a) = Drifting { audio_mute: Some((200_000_000, 320_000_000)), ..Drifting::new(600) }.run();
    judge_drift(&h, &v, &a);
    assert_eq!(h.f.stats().dropped, DropCounts::default());
}

#[test]
fn a_sender_report_jump_is_counted_and_moves_nothing() {
    let (h, v, a) = Drifting { sr_jump: Some((180_000_000, 5_000_000)), ..Drifting::new(600) }.run();
    judge_drift(&h, &v, &a);
    let t = h.f.stats().timing;
    assert!(t.sender_report_jumps >= 2, "{t:?}");
    for w in h.frags.windows(2) {
        assert_eq!(w[1].producer_ms, w[0].producer_ms + u64::from(w[0].duration_ms.unwrap_or(0)), "contiguous");
    }
}

#[test]
fn ten_second_gops_make_ten_second_fragments_even_on_a_slow_clock() {
    let (h, v, a) = Drifting { gop: 300, video_rate: 0.99, ..Drifting::new(120) }.run();
    judge_drift(&h, &v, &a);
    assert_eq!(h.f.stats().dropped, DropCounts::default());
    let durations: Vec<u32> = h.frags.iter().filter_map(|f| f.duration_ms).collect();
    assert!(durations[..durations.len() - 1].iter().all(|&d| (9_900..=10_200).contains(&d)), "{durations:?}");
}
