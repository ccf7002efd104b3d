//! Media path throughput: frames through the fragmenter into MKV chunks, and whole-fragment
//! MKV composition and parsing. Run with `cargo bench --bench media`; criterion prints the
//! figures (time per iteration and throughput).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use reel::media::fragmenter::{FragmentEvent, Fragmenter, FragmenterConfig, MediaFrame};
use reel::media::h264::{AccessUnit, write_sample};
use reel::media::mkv::{self, FragmentDocument, SimpleTag, tag};
use reel::media::timing::MediaKind;

const T0_US: i64 = 1_700_000_000_000_000;
const SPS: &[u8] = &[
    0x67, 0x42, 0xe0, 0x1f, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03,
    0x00, 0x3c, 0x0f, 0x18, 0x32, 0x48,
];
const PPS: &[u8] = &[0x68, 0xcb, 0x8c, 0xb2];
/// 1 Mbps video at 30 fps: the session quota.
const VIDEO_BPS: usize = 1_000_000;
const FPS: usize = 30;

/// Slice bytes that contain no start-code patterns.
fn slice(header: u8, len: usize, seed: usize) -> Vec<u8> {
    let mut v = vec![header];
    v.extend((0..len).map(|i| 0x10 + ((i * 31 + seed * 7) % 0xe0) as u8));
    v
}

/// `secs` of A/V as a WebRTC stack delivers it: 30 fps Annex-B access units averaging
/// 1 Mbps (IDR every 2 s, 8x a P frame, with SPS/PPS), 20 ms Opus packets of 120 bytes,
/// interleaved by arrival.
fn session_frames(secs: usize) -> Vec<MediaFrame> {
    let p_len = VIDEO_BPS / 8 / FPS * 60 / 67; // IDRs take 8 shares of 67 per 2 s
    let mut frames = vec![];
    let (mut v, mut a) = (0usize, 0usize);
    while v < secs * FPS {
        let v_us = (v * 1_000_000 / FPS) as i64;
        let a_us = (a * 20_000) as i64;
        if a_us <= v_us {
            let mut packet = vec![0xfc];
            packet.extend((0..119).map(|i| (i * 13 + a) as u8));
            frames.push(MediaFrame {
                kind: MediaKind::Audio,
                rtp_timestamp: (a * 960) as u32,
                arrival_unix_us: T0_US + a_us,
                contiguous: true,
                data: packet,
                sender_report: None,
            });
            a += 1;
            continue;
        }
        let mut au = vec![];
        let nals = if v % 60 == 0 {
            vec![SPS.to_vec(), PPS.to_vec(), slice(0x65, p_len * 8, v)]
        } else {
            vec![slice(0x41, p_len, v)]
        };
        for n in nals {
            au.extend_from_slice(&[0, 0, 0, 1]);
            au.extend_from_slice(&n);
        }
        frames.push(MediaFrame {
            kind: MediaKind::Video,
            rtp_timestamp: (v * 3_000) as u32,
            arrival_unix_us: T0_US + v_us,
            contiguous: true,
            data: au,
            sender_report: None,
        });
        v += 1;
    }
    frames
}

/// Runs frames through a fragmenter; returns (fragments, chunk bytes).
fn fragment(frames: Vec<MediaFrame>) -> (usize, usize) {
    let mut f = Fragmenter::new(FragmenterConfig::default(), T0_US).expect("default config is valid");
    let (mut frags, mut bytes) = (0, 0);
    let mut drain = |f: &mut Fragmenter| {
        while let Some(ev) = f.poll() {
            match ev {
                FragmentEvent::BeginFragment { .. } => frags += 1,
                FragmentEvent::Chunk { bytes: b, .. } => bytes += b.len(),
                _ => {}
            }
        }
    };
    for frame in frames {
        f.push(frame);
        drain(&mut f);
    }
    f.finish(T0_US + 3_600_000_000);
    drain(&mut f);
    (frags, bytes)
}

fn bench_fragmenter(c: &mut Criterion) {
    let frames = session_frames(10);
    let count = frames.len() as u64;
    let input: usize = frames.iter().map(|f| f.data.len()).sum();
    let mut g = c.benchmark_group("fragmenter");
    g.sample_size(50);
    g.throughput(Throughput::Elements(count));
    g.bench_function("10s_1mbps_30fps_av_frames", |b| {
        b.iter_batched(|| frames.clone(), |fr| black_box(fragment(fr)), criterion::BatchSize::LargeInput)
    });
    g.throughput(Throughput::Bytes(input as u64));
    g.bench_function("10s_1mbps_30fps_av_bytes", |b| {
        b.iter_batched(|| frames.clone(), |fr| black_box(fragment(fr)), criterion::BatchSize::LargeInput)
    });
    g.finish();

    let idr = &frames.iter().find(|f| f.kind == MediaKind::Video).expect("has video").data;
    let mut g = c.benchmark_group("h264");
    g.throughput(Throughput::Bytes(idr.len() as u64));
    g.bench_function("idr_access_unit_to_avcc_sample", |b| {
        let mut out = Vec::with_capacity(idr.len() + 16);
        b.iter(|| {
            out.clear();
            let au = AccessUnit::parse(black_box(idr)).expect("valid access unit");
            write_sample(&au, &mut out).expect("fits")
        })
    });
    g.finish();
}

fn bench_documents(c: &mut Criterion) {
    // The first 2 s fragment at 1 Mbps, as the store holds it.
    let mut f = Fragmenter::new(FragmenterConfig::default(), T0_US).expect("default config is valid");
    let mut frags: Vec<(u64, bytes::Bytes, Vec<Vec<u8>>)> = vec![];
    for frame in session_frames(3) {
        f.push(frame);
        while let Some(ev) = f.poll() {
            match ev {
                FragmentEvent::BeginFragment { header, producer_ts_ms, .. } => {
                    frags.push((producer_ts_ms, header, vec![]))
                }
                FragmentEvent::Chunk { bytes, .. } => {
                    if let Some(last) = frags.last_mut() {
                        last.2.push(bytes)
                    }
                }
                _ => {}
            }
        }
    }
    let (start_ms, header, chunks) = frags.swap_remove(0);
    let tags = [
        SimpleTag::new(tag::FRAGMENT_NUMBER, "91343852333181432392682062607743920146264157"),
        SimpleTag::new(tag::PRODUCER_TIMESTAMP, mkv::kvs_timestamp(start_ms)),
    ];
    let doc = FragmentDocument { header: &header, start_ms, tags: &tags, trailing_tags: &[] };
    let whole = doc.compose(chunks.iter().map(Vec::as_slice)).expect("header is a Tracks element");

    let mut g = c.benchmark_group("mkv");
    g.throughput(Throughput::Bytes(whole.len() as u64));
    g.bench_function("compose_2s_fragment", |b| {
        b.iter(|| doc.compose(chunks.iter().map(Vec::as_slice)).expect("valid header"))
    });
    g.bench_function("parse_2s_fragment_document", |b| {
        b.iter(|| mkv::parse_document(black_box(&whole)).expect("valid document").frames.len())
    });
    g.bench_function("parse_2s_stored_fragment", |b| {
        b.iter(|| {
            mkv::parse_stored(&header, chunks.iter().map(Vec::as_slice), start_ms as i64)
                .expect("valid fragment")
                .frames
                .len()
        })
    });
    g.finish();
    eprintln!("fragment: {} chunks, {} bytes as a GetMedia document", chunks.len(), whole.len());
}

criterion_group!(benches, bench_fragmenter, bench_documents);
criterion_main!(benches);
