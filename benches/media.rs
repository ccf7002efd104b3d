//! Media path throughput: frames through the fragmenter into MKV chunks, whole-fragment MKV
//! composition and parsing, fMP4 media segments (HLS/DASH/GetClip) from a stored fragment,
//! the GetMedia read path (stored fragments read back from a media store on disk and
//! composed into response documents), GetImages' decode, scale and encode, and a PutMedia
//! body read and cut into fragments (the streaming Matroska reader and the assembler). Run with
//! `cargo bench --bench media`; criterion prints the figures (time per iteration and
//! throughput).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use reel::testkit;
use reel_media::fragmenter::{FragmentEvent, Fragmenter, FragmenterConfig, MediaFrame};
use reel_media::h264::{AccessUnit, write_sample};
use reel_media::mkv::{self, FragmentDocument, SimpleTag, tag};
use reel_media::timing::MediaKind;
use reel_media::{fmp4, source};

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

/// Fixture media (H.264 640x360 + Opus) written to a fresh media store in a temp dir:
/// `repeats` × 6 s, i.e. 3 × `repeats` fragments of 2 s, segments sealed so reads go to disk.
fn fixture_store(rt: &tokio::runtime::Runtime, repeats: usize) -> (tempfile::TempDir, reel_storage::Stream) {
    const ARN: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:stream/bench/1700000000000";
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = rt.block_on(async {
        let store = reel_storage::Store::open(reel_storage::StoreConfig::new(dir.path().join("media")))
            .await
            .expect("open store");
        let stream = store.create_stream(ARN, 24).await.expect("create stream");
        for k in 0..repeats {
            for f in testkit::fixture_fragments(T0_US + k as i64 * 6_000_000).expect("fixture files") {
                testkit::append(&stream, &f).await.expect("append");
            }
        }
        store.seal_all().await;
        stream
    });
    (dir, stream)
}

fn bench_fmp4(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (_dir, stream) = fixture_store(&rt, 1);
    let first = stream.latest_fragments(3).into_iter().min_by_key(|f| f.number).expect("stored fragments");
    let fragment = rt.block_on(stream.read_fragment(first.number)).expect("read fragment");
    let stored = fragment.payload().len();
    let segment = fmp4::media_segment_bytes(&reel::streaming::parse_fragment(&fragment).expect("parse"), None, 1, 0);
    eprintln!(
        "fMP4: 2 s fixture fragment, {stored} stored bytes -> {} byte moof+mdat ({} ms)",
        segment.len(),
        first.duration_ms
    );

    let mut g = c.benchmark_group("fmp4");
    g.throughput(Throughput::Bytes(stored as u64));
    g.bench_function("media_segment_2s_fixture_fragment", |b| {
        b.iter(|| {
            let parsed = reel::streaming::parse_fragment(black_box(&fragment)).expect("parse");
            fmp4::media_segment_bytes(&parsed, None, 1, 0).len()
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("init_segment", |b| {
        let tracks = source::tracks(&fragment.header).expect("tracks");
        b.iter(|| fmp4::init_segment(black_box(&tracks), None).len())
    });
    g.finish();
}

/// Reads `n` fragments from the start of `stream` the way a GetMedia response does (a tail
/// reader from EARLIEST) and composes each into its response document; returns the bytes.
async fn get_media_read(stream: &reel_storage::Stream, n: usize) -> usize {
    let mut reader = stream.subscribe(reel_storage::StartPosition::Earliest).expect("subscribe");
    let mut sent = 0;
    for _ in 0..n {
        let f = reader.next().await.expect("read").expect("stream alive");
        let number = f.info.number.to_string();
        let tags = [
            SimpleTag::new(tag::FRAGMENT_NUMBER, number.clone()),
            SimpleTag::new(tag::SERVER_TIMESTAMP, mkv::kvs_timestamp(f.info.server_ts_ms)),
            SimpleTag::new(tag::PRODUCER_TIMESTAMP, mkv::kvs_timestamp(f.info.producer_ts_ms)),
        ];
        let trailing = [SimpleTag::new(tag::CONTINUATION_TOKEN, number), SimpleTag::new(tag::MILLIS_BEHIND_NOW, "0")];
        let doc = FragmentDocument {
            header: &f.header,
            start_ms: f.info.producer_ts_ms,
            tags: &tags,
            trailing_tags: &trailing,
        };
        sent += doc.compose(f.chunks.iter().map(|c| c.data.as_ref())).expect("valid header").len();
    }
    sent
}

fn bench_get_media_read(c: &mut Criterion) {
    const REPEATS: usize = 20;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (_dir, stream) = fixture_store(&rt, REPEATS);
    let n = REPEATS * 3;
    let bytes = rt.block_on(get_media_read(&stream, n));
    eprintln!("GetMedia read: {n} stored fragments (2 s each) -> {bytes} response bytes");

    let mut g = c.benchmark_group("get_media");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function(format!("read_and_compose_{n}_fragments"), |b| b.iter(|| rt.block_on(get_media_read(&stream, n))));
    g.finish();
}

/// GetImages' per-image work on the fixture (640x360 baseline H.264, 30 fps, a keyframe a
/// second): decoding a keyframe alone and a whole 1 s GOP (the worst case: the frame before
/// the next keyframe), scaling to 320x180, and encoding JPEG (quality 80) and PNG.
fn bench_images(c: &mut Criterion) {
    use reel::streaming::images::picture;
    use reel::streaming::images::request::{Format, Size};
    let frags = testkit::fixture_fragments(T0_US).expect("fixture");
    let f = &frags[0];
    let parsed =
        source::parse(&f.header, f.chunks.iter().map(|(_, c)| &c[..]), f.producer_ts_ms, f.duration_ms).expect("parse");
    let source::Codec::Avc(config) = &parsed.tracks[0].codec else { panic!("video first") };
    let video = &parsed.samples[0];
    let mut g = c.benchmark_group("get_images");
    g.sample_size(20);
    g.bench_function("decode keyframe", |b| b.iter(|| black_box(picture::decode(config, video, &[0]))));
    g.bench_function("decode 30-frame GOP", |b| b.iter(|| black_box(picture::decode(config, video, &[29]))));
    let frame = picture::decode(config, video, &[0]).remove(0).expect("picture");
    g.bench_function("scale 640x360 to 320x180", |b| b.iter(|| black_box(picture::resize(&frame, Size::Width(320)))));
    g.bench_function("encode JPEG q80 640x360", |b| {
        b.iter(|| black_box(picture::encode(&frame, Format::Jpeg(80)).expect("jpeg")))
    });
    g.bench_function("encode PNG 640x360", |b| {
        b.iter(|| black_box(picture::encode(&frame, Format::Png).expect("png")))
    });
    g.finish();
}

/// A PutMedia body as the KVS PIC writes it (unknown-size Segment and Clusters, one cluster
/// per stored fragment) for `secs` of 1 Mbps A/V.
fn put_media_body(secs: usize) -> Vec<u8> {
    use mkv::ebml;
    let mut f = Fragmenter::new(FragmenterConfig::default(), T0_US).expect("default config is valid");
    let mut out = Vec::new();
    ebml::write_master(&mut out, mkv::id::EBML, |o| ebml::write_str(o, mkv::id::DOC_TYPE, "matroska"));
    ebml::write_id(&mut out, mkv::id::SEGMENT);
    out.push(0xFF);
    let mut tracks_written = false;
    for frame in session_frames(secs) {
        f.push(frame);
        while let Some(ev) = f.poll() {
            match ev {
                FragmentEvent::BeginFragment { header, producer_ts_ms, .. } => {
                    if !tracks_written {
                        out.extend_from_slice(&header);
                        tracks_written = true;
                    }
                    ebml::write_id(&mut out, mkv::id::CLUSTER);
                    out.push(0xFF);
                    ebml::write_uint(&mut out, mkv::id::TIMECODE, producer_ts_ms);
                }
                FragmentEvent::Chunk { bytes, .. } => out.extend_from_slice(&bytes),
                _ => {}
            }
        }
    }
    out
}

fn bench_put_media(c: &mut Criterion) {
    use reel::put_media::assemble::{Assembler, FragmentLimits, Step};
    use reel::put_media::request::TimecodeType;
    let body = put_media_body(10);
    let limits = FragmentLimits { max_fragment_bytes: 50_000_000, max_fragment_duration_ms: 10_000, max_tracks: 3 };
    let mut g = c.benchmark_group("put_media");
    g.throughput(Throughput::Bytes(body.len() as u64));
    // 10 s of 1 Mbps A/V in 16 KiB pieces: the reader's and the assembler's CPU per
    // camera-second is this time / 10.
    g.bench_function("read_and_assemble_10s_1mbps", |b| {
        b.iter(|| {
            let mut reader = mkv::StreamReader::new(50_000_000);
            let mut assembler = Assembler::new(limits, TimecodeType::Absolute, 0);
            let mut fragments = 0;
            for piece in body.chunks(16 * 1024) {
                reader.push(piece);
                while let Some(ev) = reader.next_event().expect("valid body") {
                    if let Some(Step::Complete(f)) = assembler.apply(ev).expect("valid fragment") {
                        fragments += 1;
                        black_box(f);
                    }
                }
            }
            for ev in reader.finish().expect("complete body") {
                if let Some(Step::Complete(f)) = assembler.apply(ev).expect("valid fragment") {
                    fragments += 1;
                    black_box(f);
                }
            }
            assert!(fragments >= 4, "{fragments} fragments");
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_fragmenter,
    bench_documents,
    bench_fmp4,
    bench_get_media_read,
    bench_images,
    bench_put_media
);
criterion_main!(benches);
