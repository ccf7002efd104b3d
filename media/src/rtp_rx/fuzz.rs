//! The `rtp_rx` fuzz target's driver (`fuzz/fuzz_targets/rtp_rx.rs`, and on stable Rust
//! `reel::fuzz_api::TARGETS` with the seeds in `fuzz/seeds/rtp_rx/`).

use std::collections::BTreeMap;

use super::{Assembler, AssemblerConfig, AssemblerStats, MAX_BUFFERED_PACKETS, RtpIn, RxCodec, RxFrame};

/// `hold_back` values the config byte selects from (2000 exceeds the buffer capacity).
const HOLD_BACKS: [usize; 8] = [0, 1, 2, 4, 8, 15, 30, 2_000];

/// A packet the assembler accepted (neither late nor a duplicate), by sequence number.
struct Accepted {
    rtp_time: u64,
    marker: bool,
    arrival_us: i64,
    payload: Vec<u8>,
}

/// Drives an [`Assembler`] with packets read from fuzzer bytes and asserts its invariants.
///
/// Input: byte 0 selects the codec (bit 0: Opus, else H.264), `hold_back` (bits 1–3, index
/// into 0, 1, 2, 4, 8, 15, 30, 2000) and `max_wait_us` (bit 4: 20 ms, else 500 ms); bytes 1–2
/// are the first sequence number (big-endian). Then records until the input ends: `flags`
/// (bit 0 marker; bit 1 next RTP time, +3000 video / +960 audio; bit 2 previous RTP time;
/// bit 3 sequence delta ×64; bit 4 run `handle_timeout` at `poll_timeout` first), `delta`
/// (i8, added to the sequence number), `arrival` (arrival += value × 2 ms), `len` and `len`
/// payload bytes.
///
/// Checks: no panic; `buffered()` ≤ `hold_back` and ≤ 1024 after every call, and a timeout
/// is pending exactly while packets wait, never in the past; frames come out in sequence
/// order and consist of exactly the accepted packets `first_seq..=last_seq`, all with the
/// frame's RTP time; `contiguous` is true exactly when nothing but padding lies between a
/// frame and the previous one; H.264 frames end at a marker or a new RTP time and their data
/// equals an independent depacketization (00 00 00 01-prefixed non-empty NAL units, same
/// keyframe flag); Opus frames are their packet; once every gap has timed out nothing is held
/// and every packet is accounted for in the stats.
pub fn fuzz_drive(data: &[u8]) {
    let _ = drive(data);
}

/// [`fuzz_drive`], returning the final stats (`None` when the input is too short to start).
pub(super) fn drive(data: &[u8]) -> Option<AssemblerStats> {
    let (&[config, s0, s1], mut rest) = data.split_first_chunk::<3>()?;
    let codec = if config & 1 == 1 { RxCodec::Opus } else { RxCodec::H264 };
    let hold_back = HOLD_BACKS[usize::from(config >> 1) & 7];
    let max_wait_us = if config & 0x10 != 0 { 20_000 } else { 500_000 };
    let mut a = Assembler::new(codec, AssemblerConfig { hold_back, max_wait_us });
    let step = if codec == RxCodec::Opus { 960 } else { 3_000 };
    let mut seq = u64::from(u16::from_be_bytes([s0, s1]));
    let mut rtp_time = 1u64 << 32;
    let mut now = 1_000_000i64;
    let mut check =
        Checker { codec, start: None, prev_last: None, accepted: BTreeMap::new(), frames: 0, frame_packets: 0 };

    while let Some((&[flags, delta, arrival, len], tail)) = rest.split_first_chunk::<4>() {
        let (payload, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        if flags & 0x10 != 0
            && let Some(t) = a.poll_timeout()
        {
            now = now.max(t);
            a.handle_timeout(now);
            check.after_call(&mut a, hold_back, now);
        }
        let delta = i64::from(delta as i8) * if flags & 8 != 0 { 64 } else { 1 };
        seq = seq.saturating_add_signed(delta);
        if flags & 2 != 0 {
            rtp_time = rtp_time.saturating_add(step);
        }
        if flags & 4 != 0 {
            rtp_time = rtp_time.saturating_sub(step);
        }
        now += i64::from(arrival) * 2_000;
        let p = RtpIn { seq, rtp_time, marker: flags & 1 != 0, arrival_us: now, payload };
        check.start.get_or_insert(seq);
        let before = a.stats();
        a.push(p);
        let after = a.stats();
        if after.late == before.late && after.duplicates == before.duplicates {
            let first = Accepted { rtp_time, marker: p.marker, arrival_us: now, payload: payload.to_vec() };
            assert!(check.accepted.insert(seq, first).is_none(), "sequence number {seq} accepted twice");
        }
        check.after_call(&mut a, hold_back, now);
    }

    // Long after every arrival, every gap has been given up.
    now += 10_000_000;
    a.handle_timeout(now);
    check.after_call(&mut a, hold_back, now);
    assert_eq!(a.buffered(), 0);
    assert_eq!(a.poll_timeout(), None);
    let s = a.stats();
    assert_eq!(s.frames, check.frames);
    let accounted = s.duplicates + s.late + s.padding + s.dropped_packets + check.frame_packets + a.in_frame_packets();
    assert_eq!(s.packets, accounted, "packets not accounted for: {s:?}");
    Some(s)
}

/// What the driver knows about the stream, to check frames against.
struct Checker {
    codec: RxCodec,
    /// Sequence number of the first packet pushed (where the stream starts).
    start: Option<u64>,
    /// `last_seq` of the previous frame.
    prev_last: Option<u64>,
    accepted: BTreeMap<u64, Accepted>,
    frames: u64,
    /// Packets in the frames emitted so far.
    frame_packets: u64,
}

impl Checker {
    fn after_call(&mut self, a: &mut Assembler, hold_back: usize, now: i64) {
        assert!(a.buffered() <= hold_back.min(MAX_BUFFERED_PACKETS), "{} packets held", a.buffered());
        match a.poll_timeout() {
            Some(t) => assert!(a.buffered() > 0 && t > now, "timeout {t} at {now}"),
            None => assert_eq!(a.buffered(), 0),
        }
        while let Some(f) = a.poll_frame() {
            self.frame(&f);
        }
    }

    fn frame(&mut self, f: &RxFrame) {
        let expected = self.prev_last.map_or(self.start.unwrap_or(0), |l| l.saturating_add(1));
        assert!(
            f.first_seq >= expected && f.first_seq <= f.last_seq,
            "frame {}..={} after {expected}",
            f.first_seq,
            f.last_seq
        );
        let only_padding_skipped = (expected..f.first_seq)
            .all(|s| self.codec == RxCodec::H264 && self.accepted.get(&s).is_some_and(|p| p.payload.is_empty()));
        assert_eq!(f.contiguous, only_padding_skipped, "contiguity of frame at {}", f.first_seq);
        let mut payloads = Vec::new();
        for s in f.first_seq..=f.last_seq {
            let p = self.accepted.get(&s).unwrap_or_else(|| panic!("frame holds {s}, never accepted"));
            assert_eq!(p.rtp_time, f.rtp_time, "packet {s} of another frame");
            assert!(s == f.last_seq || !p.marker, "marker inside a frame at {s}");
            payloads.push(p.payload.as_slice());
        }
        let first = self.accepted.get(&f.first_seq).map(|p| p.arrival_us);
        assert_eq!(Some(f.arrival_us), first);
        match self.codec {
            RxCodec::Opus => {
                assert_eq!(f.first_seq, f.last_seq);
                assert!(f.keyframe && !f.data.is_empty());
                assert_eq!(payloads, [f.data.as_slice()]);
            }
            RxCodec::H264 => {
                let ended = self.accepted.get(&f.last_seq).is_some_and(|p| p.marker)
                    || self.accepted.get(&f.last_seq.saturating_add(1)).is_some_and(|p| p.rtp_time != f.rtp_time);
                assert!(ended, "frame at {} ended without marker or new RTP time", f.first_seq);
                let (data, keyframe) = depacketize(&payloads).expect("an emitted frame depacketizes");
                assert_eq!(f.data, data);
                assert_eq!(f.keyframe, keyframe);
            }
        }
        self.prev_last = Some(f.last_seq);
        self.frames += 1;
        self.frame_packets += f.last_seq - f.first_seq + 1;
    }
}

/// An independent RFC 6184 depacketizer: the NAL units of a frame, each start-code prefixed,
/// and whether one is an IDR; `None` when the payloads do not form whole NAL units.
fn depacketize(payloads: &[&[u8]]) -> Option<(Vec<u8>, bool)> {
    let mut nals: Vec<Vec<u8>> = Vec::new();
    let mut open: Option<Vec<u8>> = None;
    for p in payloads {
        let (&h, rest) = p.split_first()?;
        match (h & 0x1f, open.is_some()) {
            (1..=23, false) => nals.push(p.to_vec()),
            (24, false) if !rest.is_empty() => {
                let mut r = rest;
                while let Some((&[hi, lo], tail)) = r.split_first_chunk::<2>() {
                    let n = usize::from(u16::from_be_bytes([hi, lo]));
                    let nal = tail.get(..n).filter(|n| !n.is_empty())?;
                    nals.push(nal.to_vec());
                    r = &tail[n..];
                }
                if !r.is_empty() {
                    return None;
                }
            }
            (28, _) => {
                let (&fu, fragment) = rest.split_first()?;
                if fu & 0x80 != 0 {
                    if open.is_some() {
                        return None;
                    }
                    open = Some(vec![(h & 0xe0) | (fu & 0x1f)]);
                }
                open.as_mut()?.extend_from_slice(fragment);
                if fu & 0x40 != 0 {
                    nals.extend(open.take());
                }
            }
            _ => return None,
        }
    }
    if open.is_some() || nals.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    for nal in &nals {
        assert!(!nal.is_empty(), "empty NAL unit");
        data.extend_from_slice(&[0, 0, 0, 1]);
        data.extend_from_slice(nal);
    }
    let keyframe = nals.iter().any(|n| n.first().is_some_and(|h| h & 0x1f == 5));
    Some((data, keyframe))
}
