//! Assembler scenarios: one behaviour per test, on packets built by the helpers below.

use super::*;

const SPS: &[u8] = &[0x67, 0x42, 0xe0, 0x1f, 0xd9, 0x00, 0xa0, 0x2f];
const PPS: &[u8] = &[0x68, 0xcb, 0x8c, 0xb2];
/// Frame spacing at 30 fps, 90 kHz.
const TICKS: u64 = 3_000;

/// One packet as sent.
#[derive(Debug, Clone)]
struct Pkt {
    seq: u64,
    ts: u64,
    marker: bool,
    payload: Vec<u8>,
}

fn push(a: &mut Assembler, p: &Pkt, arrival_us: i64) {
    a.push(RtpIn { seq: p.seq, rtp_time: p.ts, marker: p.marker, arrival_us, payload: &p.payload });
}

/// Pushes all packets, the n-th arriving at n ms.
fn push_all<'a>(a: &mut Assembler, pkts: impl IntoIterator<Item = &'a Pkt>) {
    for (i, p) in pkts.into_iter().enumerate() {
        push(a, p, i as i64 * 1_000);
    }
}

fn frames(a: &mut Assembler) -> Vec<RxFrame> {
    std::iter::from_fn(|| a.poll_frame()).collect()
}

fn video() -> Assembler {
    Assembler::new(RxCodec::H264, AssemblerConfig::video())
}

fn annexb(nals: &[&[u8]]) -> Vec<u8> {
    nals.iter().flat_map(|n| [&[0, 0, 0, 1][..], n].concat()).collect()
}

/// A NAL unit of `len` bytes with header `header` and a recognisable body.
fn nal(header: u8, len: usize, salt: u8) -> Vec<u8> {
    std::iter::once(header).chain((1..len).map(|i| (i as u8).wrapping_mul(31) ^ salt)).collect()
}

/// RFC 6184 packetization of one frame: NAL units up to `mtu` alone, larger ones as FU-A;
/// the last packet has the marker bit.
fn packetize(seq: &mut u64, ts: u64, nals: &[&[u8]], mtu: usize) -> Vec<Pkt> {
    let mut payloads = Vec::new();
    for n in nals {
        if n.len() <= mtu {
            payloads.push(n.to_vec());
            continue;
        }
        let chunks: Vec<&[u8]> = n[1..].chunks(mtu - 2).collect();
        for (i, c) in chunks.iter().enumerate() {
            let s = if i == 0 { 0x80 } else { 0 };
            let e = if i == chunks.len() - 1 { 0x40 } else { 0 };
            payloads.push([&[(n[0] & 0xe0) | 28, s | e | (n[0] & 0x1f)][..], c].concat());
        }
    }
    let last = payloads.len() - 1;
    payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| {
            *seq += 1;
            Pkt { seq: *seq - 1, ts, marker: i == last, payload }
        })
        .collect()
}

fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![0x78];
    for n in nals {
        out.extend_from_slice(&(n.len() as u16).to_be_bytes());
        out.extend_from_slice(n);
    }
    out
}

/// Three frames: A (one P slice), B (a P slice in 3 FU-A packets), C (one P slice), from seq 100.
fn three_frames() -> (Vec<Pkt>, [Vec<u8>; 3]) {
    let (a, b, c) = (nal(0x41, 50, 1), nal(0x41, 2_500, 2), nal(0x41, 60, 3));
    let mut seq = 100;
    let mut pkts = packetize(&mut seq, 0, &[&a], 1_000);
    pkts.extend(packetize(&mut seq, TICKS, &[&b], 1_000));
    pkts.extend(packetize(&mut seq, 2 * TICKS, &[&c], 1_000));
    assert_eq!(pkts.len(), 5);
    (pkts, [annexb(&[&a]), annexb(&[&b]), annexb(&[&c])])
}

/// A tiny deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `frames` frames of a 30 fps stream from seq 0: an IDR (SPS+PPS in a STAP-A, IDR slice in
/// FU-A) every 30 frames, P slices of varying size in between.
fn stream(frames: u64, rng: &mut Rng) -> Vec<Pkt> {
    let mut seq = 0;
    let mut pkts = Vec::new();
    for i in 0..frames {
        let ts = i * TICKS;
        if i % 30 == 0 {
            let idr = nal(0x65, 3_000 + rng.below(3_000) as usize, i as u8);
            let stap = stap_a(&[SPS, PPS]);
            pkts.extend(packetize(&mut seq, ts, &[&stap, &idr], 1_200));
        } else {
            let p = nal(0x41, 100 + rng.below(2_000) as usize, i as u8);
            pkts.extend(packetize(&mut seq, ts, &[&p], 1_200));
        }
    }
    pkts
}

#[test]
fn in_order_single_nal_frames_give_exact_annex_b() {
    let mut a = video();
    let idr = nal(0x65, 40, 7);
    let p = nal(0x41, 30, 8);
    push(&mut a, &Pkt { seq: 7, ts: 90_000, marker: true, payload: idr.clone() }, 5);
    push(&mut a, &Pkt { seq: 8, ts: 93_000, marker: true, payload: p.clone() }, 9);
    let out = frames(&mut a);
    assert_eq!(
        out,
        vec![
            RxFrame {
                rtp_time: 90_000,
                arrival_us: 5,
                contiguous: true,
                keyframe: true,
                data: annexb(&[&idr]),
                first_seq: 7,
                last_seq: 7
            },
            RxFrame {
                rtp_time: 93_000,
                arrival_us: 9,
                contiguous: true,
                keyframe: false,
                data: annexb(&[&p]),
                first_seq: 8,
                last_seq: 8
            },
        ]
    );
    assert_eq!(a.stats(), AssemblerStats { packets: 2, frames: 2, ..AssemblerStats::default() });
}

#[test]
fn in_order_stap_a_frame_gives_exact_annex_b() {
    let mut a = video();
    let idr = nal(0x65, 200, 1);
    push(&mut a, &Pkt { seq: 1, ts: 0, marker: false, payload: stap_a(&[SPS, PPS]) }, 0);
    push(&mut a, &Pkt { seq: 2, ts: 0, marker: true, payload: idr.clone() }, 1);
    let out = frames(&mut a);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].data, annexb(&[SPS, PPS, &idr]));
    assert!(out[0].keyframe && out[0].contiguous);
    assert_eq!((out[0].first_seq, out[0].last_seq, out[0].arrival_us), (1, 2, 0));
}

#[test]
fn in_order_fu_a_frame_gives_exact_annex_b() {
    let mut a = video();
    let idr = nal(0x65, 3_500, 2);
    let mut seq = 10;
    let pkts = packetize(&mut seq, 0, &[&idr], 1_000);
    assert_eq!(pkts.len(), 4);
    assert_eq!(pkts[0].payload[..2], [0x7c, 0x85]);
    assert_eq!(pkts[3].payload[..2], [0x7c, 0x45]);
    push_all(&mut a, &pkts[..3]);
    assert!(a.poll_frame().is_none(), "no frame before its marker");
    push(&mut a, &pkts[3], 3_000);
    let out = frames(&mut a);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].data, annexb(&[&idr]));
    assert!(out[0].keyframe);
    assert_eq!((out[0].first_seq, out[0].last_seq), (10, 13));
}

#[test]
fn reordering_within_hold_back_gives_the_same_frames_as_in_order() {
    let mut rng = Rng(7);
    let pkts = stream(90, &mut rng);
    let mut in_order = video();
    push_all(&mut in_order, &pkts);
    let expected = frames(&mut in_order);
    assert_eq!(expected.len(), 90);

    // Swap packets within windows of 8 (less than hold_back 30), all arriving at once.
    let mut shuffled = pkts.clone();
    for w in shuffled.chunks_mut(8) {
        for i in (1..w.len()).rev() {
            w.swap(i, rng.below(i as u64 + 1) as usize);
        }
    }
    // The stream starts at the first packet seen, so keep seq 0 first.
    let zero = shuffled.iter().position(|p| p.seq == 0).unwrap();
    shuffled.swap(0, zero);
    let mut a = video();
    for p in &shuffled {
        push(&mut a, p, 0);
    }
    let got = frames(&mut a);
    assert_eq!(got, expected.iter().map(|f| RxFrame { arrival_us: 0, ..f.clone() }).collect::<Vec<_>>());
    let s = a.stats();
    assert_eq!((s.gaps, s.late, s.dropped_packets, s.frames), (0, 0, 0, 90));
    assert_eq!(a.buffered(), 0);
}

#[test]
fn lost_middle_fu_a_packet_drops_the_frame_and_the_next_is_not_contiguous() {
    let (pkts, [fa, _, fc]) = three_frames();
    let mut a = video();
    push_all(&mut a, pkts.iter().filter(|p| p.seq != 102));
    assert_eq!(a.buffered(), 2, "waiting for 102");
    let deadline = a.poll_timeout().unwrap();
    a.handle_timeout(deadline);
    let out = frames(&mut a);
    assert_eq!(out.iter().map(|f| (&f.data, f.contiguous)).collect::<Vec<_>>(), vec![(&fa, true), (&fc, false)]);
    let s = a.stats();
    assert_eq!((s.gaps, s.dropped_packets, s.malformed, s.frames), (1, 2, 0, 2));
}

/// Runs the three frames of [`three_frames`] without the packets `lost` selects (hold-back
/// 0 or 1, so the gap is given up at once): only A and C come out, C not contiguous; returns
/// (gaps, dropped packets).
fn lose_from_frame_b(lost: impl Fn(u64) -> bool, hold_back: usize) -> (u64, u64) {
    let (pkts, [fa, _, fc]) = three_frames();
    let mut a = Assembler::new(RxCodec::H264, AssemblerConfig { hold_back, ..AssemblerConfig::video() });
    push_all(&mut a, pkts.iter().filter(|p| !lost(p.seq)));
    let out = frames(&mut a);
    assert_eq!(out.iter().map(|f| (&f.data, f.contiguous)).collect::<Vec<_>>(), vec![(&fa, true), (&fc, false)]);
    (a.stats().gaps, a.stats().dropped_packets)
}

#[test]
fn lost_first_packet_of_a_frame_drops_the_rest_of_it() {
    assert_eq!(lose_from_frame_b(|s| s == 101, 1), (1, 2), "B's FU-A middle and end");
}

#[test]
fn lost_marker_packet_drops_the_frame() {
    assert_eq!(lose_from_frame_b(|s| s == 103, 0), (1, 2), "B's FU-A start and middle");
}

#[test]
fn lost_whole_frame_marks_the_next_frame_not_contiguous() {
    assert_eq!(lose_from_frame_b(|s| (101..=103).contains(&s), 0), (1, 0));
}

#[test]
fn head_packet_after_a_gap_resumes_at_once_with_contiguous_false() {
    // B has two slices; its first is lost. The second is a frame head after a complete frame,
    // so nothing tells the loss belonged to B: B comes out (without the slice), not contiguous.
    let mut a = Assembler::new(RxCodec::H264, AssemblerConfig { hold_back: 0, ..AssemblerConfig::video() });
    let s2 = nal(0x41, 20, 2);
    push(&mut a, &Pkt { seq: 0, ts: 0, marker: true, payload: nal(0x41, 10, 0) }, 0);
    push(&mut a, &Pkt { seq: 2, ts: TICKS, marker: true, payload: s2.clone() }, 1);
    let out = frames(&mut a);
    assert_eq!(out.len(), 2);
    assert_eq!((out[1].data.clone(), out[1].contiguous), (annexb(&[&s2]), false));
}

/// Packet `seq` as a whole one-NAL frame of its own (RTP time `seq` frames in).
fn one_nal_frame(seq: u64) -> Pkt {
    Pkt { seq, ts: seq * TICKS, marker: true, payload: nal(0x41, 10, seq as u8) }
}

#[test]
fn gap_is_given_up_once_more_than_hold_back_packets_wait() {
    let mut a = Assembler::new(RxCodec::H264, AssemblerConfig { hold_back: 3, max_wait_us: i64::MAX });
    push(&mut a, &one_nal_frame(0), 0);
    for seq in 2..=4 {
        push(&mut a, &one_nal_frame(seq), 0);
    }
    assert_eq!((frames(&mut a).len(), a.buffered()), (1, 3), "3 waiting, hold back 3");
    push(&mut a, &one_nal_frame(5), 0);
    let out = frames(&mut a);
    assert_eq!(
        out.iter().map(|f| (f.first_seq, f.contiguous)).collect::<Vec<_>>(),
        vec![(2, false), (3, true), (4, true), (5, true)]
    );
    assert_eq!((a.buffered(), a.stats().gaps, a.poll_timeout()), (0, 1, None));
    push(&mut a, &one_nal_frame(1), 0);
    assert_eq!(a.stats().late, 1, "the given-up packet is late now");
}

#[test]
fn gap_is_given_up_after_max_wait_via_poll_timeout_and_handle_timeout() {
    let mut a = video();
    push(&mut a, &one_nal_frame(0), 1_000);
    assert_eq!(a.poll_timeout(), None);
    push(&mut a, &one_nal_frame(3), 2_000);
    push(&mut a, &one_nal_frame(2), 1_500);
    assert_eq!(a.poll_timeout(), Some(501_500), "the oldest waiting packet decides");
    a.handle_timeout(501_499);
    assert_eq!((frames(&mut a).len(), a.buffered()), (1, 2));
    a.handle_timeout(501_500);
    let out = frames(&mut a);
    assert_eq!(out.iter().map(|f| (f.first_seq, f.contiguous)).collect::<Vec<_>>(), vec![(2, false), (3, true)]);
    assert_eq!((a.poll_timeout(), a.stats().gaps), (None, 1));
}

#[test]
fn gap_is_given_up_in_push_once_the_new_arrival_is_max_wait_later() {
    let mut a = video();
    push(&mut a, &one_nal_frame(0), 0);
    push(&mut a, &one_nal_frame(2), 10_000);
    push(&mut a, &one_nal_frame(4), 509_999);
    assert_eq!(frames(&mut a).len(), 1);
    push(&mut a, &one_nal_frame(5), 510_000);
    let out = frames(&mut a);
    assert_eq!(out.iter().map(|f| f.first_seq).collect::<Vec<_>>(), vec![2], "4 waits for 3 (arrived 509 999)");
    assert_eq!((a.buffered(), a.stats().gaps, a.poll_timeout()), (2, 1, Some(1_009_999)));
}

#[test]
fn late_retransmission_fills_the_gap_before_give_up() {
    let (pkts, expected) = three_frames();
    let mut a = video();
    push_all(&mut a, pkts.iter().filter(|p| p.seq != 102));
    push(&mut a, &pkts[2], 400_000);
    let out = frames(&mut a);
    assert_eq!(out.iter().map(|f| f.data.clone()).collect::<Vec<_>>(), expected.to_vec());
    assert!(out.iter().all(|f| f.contiguous));
    assert_eq!((a.stats().gaps, a.buffered(), a.poll_timeout()), (0, 0, None));
}

#[test]
fn duplicates_and_late_packets_are_counted_and_ignored() {
    let mut a = video();
    push(&mut a, &one_nal_frame(10), 0);
    push(&mut a, &one_nal_frame(10), 0);
    push(&mut a, &one_nal_frame(9), 0);
    push(&mut a, &one_nal_frame(12), 0);
    push(&mut a, &one_nal_frame(12), 0);
    push(&mut a, &one_nal_frame(11), 0);
    push(&mut a, &one_nal_frame(11), 0);
    let out = frames(&mut a);
    assert_eq!(out.iter().map(|f| f.first_seq).collect::<Vec<_>>(), vec![10, 11, 12]);
    assert!(out.iter().all(|f| f.contiguous));
    let s = a.stats();
    assert_eq!((s.packets, s.duplicates, s.late, s.frames), (7, 1, 3, 3));
}

#[test]
fn sequence_jump_resets_the_buffer_and_restarts_not_contiguous() {
    let mut a = video();
    push(&mut a, &one_nal_frame(0), 0);
    push(&mut a, &one_nal_frame(2), 0);
    push(&mut a, &one_nal_frame(3), 0);
    push(&mut a, &one_nal_frame(1_024), 0);
    assert_eq!(a.buffered(), 3, "1024 is within reach of the next expected, 1");
    push(&mut a, &one_nal_frame(5_000), 0);
    let out = frames(&mut a);
    assert_eq!(out.iter().map(|f| (f.first_seq, f.contiguous)).collect::<Vec<_>>(), vec![(0, true), (5_000, false)]);
    let s = a.stats();
    assert_eq!((s.resets, s.dropped_packets, s.gaps), (1, 3, 0));
    assert_eq!((a.buffered(), a.poll_timeout()), (0, None));
    push(&mut a, &one_nal_frame(4_999), 0);
    push(&mut a, &one_nal_frame(5_001), 0);
    assert_eq!((a.stats().late, frames(&mut a)[0].contiguous), (1, true));
}

#[test]
fn missing_marker_frame_completes_when_the_next_rtp_time_starts() {
    let mut a = video();
    let (fa, fb) = (nal(0x41, 30, 1), nal(0x41, 30, 2));
    push(&mut a, &Pkt { seq: 0, ts: 0, marker: false, payload: fa.clone() }, 0);
    assert!(a.poll_frame().is_none(), "could continue");
    push(&mut a, &Pkt { seq: 1, ts: TICKS, marker: true, payload: fb.clone() }, 1);
    let out = frames(&mut a);
    assert_eq!(
        out.iter().map(|f| (&f.data, f.contiguous, f.last_seq)).collect::<Vec<_>>(),
        vec![(&annexb(&[&fa]), true, 0), (&annexb(&[&fb]), true, 1)]
    );
    assert_eq!(a.stats().malformed, 0);
}

#[test]
fn malformed_stap_a_frame_is_dropped_and_the_next_frame_is_not_contiguous() {
    let mut a = video();
    let good = |seq: u64| Pkt { seq, ts: seq * TICKS, marker: true, payload: nal(0x41, 10, seq as u8) };
    push(&mut a, &good(0), 0);
    push(&mut a, &Pkt { seq: 1, ts: TICKS, marker: false, payload: vec![0x78, 0, 9, 0x67, 1] }, 0);
    push(&mut a, &Pkt { seq: 2, ts: TICKS, marker: true, payload: nal(0x65, 10, 0) }, 0);
    push(&mut a, &good(3), 0);
    push(&mut a, &Pkt { seq: 4, ts: 4 * TICKS, marker: true, payload: vec![0x78, 0, 0] }, 0);
    push(&mut a, &good(5), 0);
    let out = frames(&mut a);
    assert_eq!(
        out.iter().map(|f| (f.first_seq, f.contiguous)).collect::<Vec<_>>(),
        vec![(0, true), (3, false), (5, false)]
    );
    let s = a.stats();
    assert_eq!((s.malformed, s.dropped_packets), (2, 3), "the IDR after the broken STAP-A is dropped too");
    assert_eq!(a.last_error(), Some(RxError::ZeroSizeStapA));
}

#[test]
fn malformed_fu_a_frames_are_dropped_with_their_remaining_packets() {
    let mut a = video();
    let good = |seq: u64| Pkt { seq, ts: seq * TICKS, marker: true, payload: nal(0x41, 10, seq as u8) };
    push(&mut a, &good(0), 0);
    // A frame whose FU-A is never ended (E missing, marker on a continuation).
    push(&mut a, &Pkt { seq: 1, ts: TICKS, marker: false, payload: vec![0x7c, 0x81, 1] }, 0);
    push(&mut a, &Pkt { seq: 2, ts: TICKS, marker: true, payload: vec![0x7c, 0x01, 2] }, 0);
    push(&mut a, &good(3), 0);
    assert_eq!(a.last_error(), Some(RxError::NalOpenAtEnd));
    // A frame with a reserved type first: its FU-A start (same RTP time) must not resume.
    push(&mut a, &Pkt { seq: 4, ts: 4 * TICKS, marker: false, payload: vec![0x7e, 1] }, 0);
    push(&mut a, &Pkt { seq: 5, ts: 4 * TICKS, marker: false, payload: vec![0x7c, 0x85, 1] }, 0);
    push(&mut a, &Pkt { seq: 6, ts: 4 * TICKS, marker: true, payload: vec![0x7c, 0x45, 2] }, 0);
    assert_eq!(a.last_error(), Some(RxError::UnsupportedType(30)));
    push(&mut a, &good(7), 0);
    // A FU-A continuation right after a complete frame.
    push(&mut a, &Pkt { seq: 8, ts: 8 * TICKS, marker: true, payload: vec![0x7c, 0x45, 1] }, 0);
    push(&mut a, &good(9), 0);
    let out = frames(&mut a);
    assert_eq!(
        out.iter().map(|f| (f.first_seq, f.contiguous)).collect::<Vec<_>>(),
        vec![(0, true), (3, false), (7, false), (9, false)]
    );
    let s = a.stats();
    assert_eq!((s.malformed, s.dropped_packets, s.frames), (3, 6, 4));
    assert_eq!(a.last_error(), Some(RxError::FuAWithoutStart));
}

#[test]
fn frame_larger_than_8_mib_is_dropped_as_malformed() {
    let mut a = video();
    let big = nal(0x65, MAX_FRAME_BYTES, 0);
    let mut seq = 0;
    let pkts = packetize(&mut seq, 0, &[&big], 1_200);
    push_all(&mut a, &pkts);
    let next = Pkt { seq, ts: TICKS, marker: true, payload: nal(0x41, 10, 1) };
    push(&mut a, &next, 0);
    let out = frames(&mut a);
    assert_eq!(out.iter().map(|f| (f.first_seq, f.contiguous)).collect::<Vec<_>>(), vec![(seq, false)]);
    assert_eq!((a.stats().malformed, a.last_error()), (1, Some(RxError::FrameTooLarge)));
    assert_eq!(a.stats().dropped_packets, pkts.len() as u64);
    assert!(a.au.is_empty() && a.frame.is_none());
}

#[test]
fn opus_packets_in_order_are_one_frame_each() {
    let mut a = Assembler::new(RxCodec::Opus, AssemblerConfig::audio());
    for i in 0..3u64 {
        a.push(RtpIn {
            seq: 50 + i,
            rtp_time: i * 960,
            marker: i == 0,
            arrival_us: i as i64 * 20_000,
            payload: &[0xfc, i as u8],
        });
    }
    let out = frames(&mut a);
    assert_eq!(out.len(), 3);
    for (i, f) in out.iter().enumerate() {
        let i = i as u64;
        assert_eq!(
            *f,
            RxFrame {
                rtp_time: i * 960,
                arrival_us: i as i64 * 20_000,
                contiguous: true,
                keyframe: true,
                data: vec![0xfc, i as u8],
                first_seq: 50 + i,
                last_seq: 50 + i,
            }
        );
    }
}

#[test]
fn opus_loss_marks_the_next_frame_not_contiguous() {
    let mut a = Assembler::new(RxCodec::Opus, AssemblerConfig::audio());
    let mut p = |seq: u64, at: i64| {
        a.push(RtpIn { seq, rtp_time: seq * 960, marker: false, arrival_us: at, payload: &[0xfc, seq as u8] })
    };
    p(0, 0);
    p(2, 20_000);
    p(3, 40_000);
    assert_eq!(a.poll_timeout(), Some(520_000));
    a.handle_timeout(520_000);
    let out = frames(&mut a);
    assert_eq!(
        out.iter().map(|f| (f.first_seq, f.contiguous)).collect::<Vec<_>>(),
        vec![(0, true), (2, false), (3, true)]
    );
    assert_eq!((a.stats().gaps, a.stats().dropped_packets), (1, 0));
}

#[test]
fn opus_empty_payload_is_dropped_as_malformed() {
    let mut a = Assembler::new(RxCodec::Opus, AssemblerConfig::audio());
    for (seq, payload) in [(0u64, &[0xfc][..]), (1, &[][..]), (2, &[0xfc][..])] {
        a.push(RtpIn { seq, rtp_time: seq * 960, marker: false, arrival_us: 0, payload });
    }
    let out = frames(&mut a);
    assert_eq!(out.iter().map(|f| (f.first_seq, f.contiguous)).collect::<Vec<_>>(), vec![(0, true), (2, false)]);
    assert_eq!((a.stats().malformed, a.stats().dropped_packets, a.last_error()), (1, 1, Some(RxError::EmptyPayload)));
}

#[test]
fn keyframe_flag_follows_idr_nal_units() {
    let mut a = video();
    let mut seq = 0;
    let mut pkts = packetize(&mut seq, 0, &[&stap_a(&[SPS, PPS]), &nal(0x65, 2_000, 0)], 1_200);
    pkts.extend(packetize(&mut seq, TICKS, &[&nal(0x41, 2_000, 1)], 1_200));
    pkts.extend(packetize(&mut seq, 2 * TICKS, &[&stap_a(&[&nal(0x06, 5, 0), &nal(0x65, 30, 2)])], 1_200));
    pkts.extend(packetize(&mut seq, 3 * TICKS, &[&stap_a(&[SPS, PPS]), &nal(0x41, 30, 3)], 1_200));
    push_all(&mut a, &pkts);
    let keyframes: Vec<bool> = frames(&mut a).iter().map(|f| f.keyframe).collect();
    assert_eq!(keyframes, vec![true, false, true, false]);
}

#[test]
fn padding_between_frames_keeps_contiguity_but_inside_a_frame_is_malformed() {
    let mut a = video();
    let good = |seq: u64| Pkt { seq, ts: seq * TICKS, marker: true, payload: nal(0x41, 10, seq as u8) };
    push(&mut a, &good(0), 0);
    push(&mut a, &Pkt { seq: 1, ts: 0, marker: false, payload: vec![] }, 0);
    push(&mut a, &Pkt { seq: 2, ts: 0, marker: false, payload: vec![] }, 0);
    push(&mut a, &good(3), 0);
    push(&mut a, &Pkt { seq: 4, ts: 4 * TICKS, marker: false, payload: nal(0x41, 10, 4) }, 0);
    push(&mut a, &Pkt { seq: 5, ts: 4 * TICKS, marker: true, payload: vec![] }, 0);
    push(&mut a, &good(6), 0);
    let out = frames(&mut a);
    assert_eq!(
        out.iter().map(|f| (f.first_seq, f.contiguous)).collect::<Vec<_>>(),
        vec![(0, true), (3, true), (6, false)]
    );
    let s = a.stats();
    assert_eq!((s.padding, s.malformed, s.dropped_packets), (2, 1, 2));
    assert_eq!(a.last_error(), Some(RxError::EmptyPayload));
}

#[test]
fn stream_starting_mid_frame_skips_to_the_first_frame_head() {
    let (pkts, [_, fb, fc]) = three_frames();
    let mut a = video();
    // Starts at B's FU-A middle packet: its end is skipped too; C is the first frame.
    push_all(&mut a, &pkts[2..]);
    let out = frames(&mut a);
    assert_eq!(out.iter().map(|f| (&f.data, f.contiguous)).collect::<Vec<_>>(), vec![(&fc, false)]);
    assert_eq!((a.stats().dropped_packets, a.stats().malformed), (2, 0));
    // Starting at a frame head loses nothing.
    let mut a = video();
    push_all(&mut a, &pkts[1..]);
    let out = frames(&mut a);
    assert_eq!(out.iter().map(|f| (&f.data, f.contiguous)).collect::<Vec<_>>(), vec![(&fb, true), (&fc, true)]);
}

#[test]
fn state_stays_bounded_over_an_hour_of_lossy_reordered_video() {
    let mut rng = Rng(0x5eed);
    let mut a = video();
    let (mut sent, mut emitted_packets, mut max_held) = (0u64, 0u64, 0usize);
    let mut now = 0i64;
    let mut seq0 = 0u64;
    let mut window: Vec<Pkt> = Vec::new();
    // One hour at 30 fps, generated a second at a time.
    for second in 0..3_600u64 {
        let mut pkts = stream(30, &mut rng);
        for p in &mut pkts {
            p.seq += seq0;
            p.ts += second * 30 * TICKS;
        }
        seq0 += pkts.len() as u64;
        for p in pkts {
            window.push(p);
            // Packets leave in a shuffled order, 2 % lost, 1 % duplicated.
            while window.len() > 4 {
                let p = window.swap_remove(rng.below(window.len() as u64) as usize);
                now += 300;
                match rng.below(100) {
                    0 | 1 => continue,
                    2 => {
                        push(&mut a, &p, now);
                        sent += 1;
                    }
                    _ => {}
                }
                push(&mut a, &p, now);
                sent += 1;
                max_held = max_held.max(a.buffered());
                if let Some(t) = a.poll_timeout().filter(|&t| t <= now) {
                    a.handle_timeout(t);
                }
                for f in frames(&mut a) {
                    emitted_packets += f.last_seq - f.first_seq + 1;
                }
            }
        }
        assert!(a.reorder.ring_len() <= MAX_BUFFERED_PACKETS);
        assert!(a.au.len() <= MAX_FRAME_BYTES);
        assert!(a.out.is_empty());
    }
    let s = a.stats();
    assert!(max_held <= 30, "held {max_held}");
    assert!(s.frames > 100_000 && s.gaps > 1_000 && s.duplicates > 100 && s.late > 100, "{s:?}");
    assert_eq!(s.packets, sent);
    let accounted = s.duplicates + s.late + s.padding + s.dropped_packets + emitted_packets + a.in_frame_packets();
    assert_eq!(s.packets, accounted + a.buffered() as u64, "{s:?}");
}

#[test]
fn hostile_numbers_never_panic() {
    let extremes = [0, 1, u64::MAX - 1, u64::MAX, 1 << 63];
    let times = [i64::MIN, -1, 0, i64::MAX];
    for cfg in [
        AssemblerConfig { hold_back: 0, max_wait_us: i64::MIN },
        AssemblerConfig { hold_back: usize::MAX, max_wait_us: i64::MAX },
        AssemblerConfig::video(),
    ] {
        for codec in [RxCodec::H264, RxCodec::Opus] {
            let mut a = Assembler::new(codec, cfg);
            for (i, &seq) in extremes.iter().chain(extremes.iter().rev()).enumerate() {
                for &t in &times {
                    let payload: &[u8] = if i % 2 == 0 { &[0x7c, 0x85, 1] } else { &[0x65] };
                    a.push(RtpIn { seq, rtp_time: extremes[i % 5], marker: i % 3 == 0, arrival_us: t, payload });
                    a.push(RtpIn { seq: seq.wrapping_add(2), rtp_time: 0, marker: true, arrival_us: t, payload });
                    let _ = a.poll_timeout();
                    a.handle_timeout(t);
                    while a.poll_frame().is_some() {}
                }
            }
            assert!(a.buffered() <= MAX_BUFFERED_PACKETS);
        }
    }
}

#[test]
fn random_inputs_hold_the_fuzz_driver_invariants() {
    let mut rng = Rng(42);
    let mut deep = AssemblerStats::default();
    for round in 0..3_000 {
        let mut data = vec![rng.below(256) as u8, rng.below(256) as u8, rng.below(256) as u8];
        for _ in 0..rng.below(40) {
            if round % 2 == 0 {
                // Raw bytes.
                data.extend((0..rng.below(24)).map(|_| rng.below(256) as u8));
                continue;
            }
            // A plausible record: mostly in order, with RTP time steps and packet shapes.
            let mut flags = rng.below(4) as u8;
            if rng.below(4) == 0 {
                flags |= 2;
            }
            if rng.below(20) == 0 {
                flags |= 0x1c;
            }
            let delta = match rng.below(10) {
                0 => rng.below(256) as u8,
                1 => 0xff,
                _ => 1,
            };
            let payload: Vec<u8> = match rng.below(8) {
                0 => vec![],
                1 => stap_a(&[SPS, &nal(0x65, 1 + rng.below(8) as usize, 0)]),
                2 => vec![0x7c, 0x85, 1, 2],
                3 => vec![0x7c, 0x05, 3],
                4 => vec![0x7c, 0x45, 4],
                5 => (0..rng.below(12)).map(|_| rng.below(256) as u8).collect(),
                _ => nal(0x41, 1 + rng.below(8) as usize, 1),
            };
            data.extend([flags, delta, rng.below(40) as u8, payload.len() as u8]);
            data.extend(payload);
        }
        if let Some(s) = fuzz::drive(&data) {
            deep.frames += s.frames;
            deep.gaps += s.gaps;
            deep.malformed += s.malformed;
            deep.resets += s.resets;
            deep.padding += s.padding;
        }
    }
    assert!(deep.frames > 1_000 && deep.gaps > 100 && deep.malformed > 100 && deep.resets > 10, "{deep:?}");
    assert!(deep.padding > 100, "{deep:?}");
}

#[test]
fn fuzz_seeds_reach_frames_loss_and_reordering() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/rtp_rx");
    let mut total = AssemblerStats::default();
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let s = fuzz::drive(&std::fs::read(&path).unwrap()).unwrap();
        assert!(s.frames > 0, "{}: {s:?}", path.display());
        total.gaps += s.gaps;
        total.resets += s.resets;
        total.malformed += s.malformed;
        n += 1;
    }
    assert!(n >= 3);
    assert!(total.gaps > 0 && total.resets > 0 && total.malformed > 0, "{total:?}");
}
