//! Scenario: H.265 as an IP camera sends it through the KVS producer SDK
//! (`V_MPEGH/ISO/HEVC`, the hvcC record as codec private, 4-byte length-prefixed NAL units;
//! the ffmpeg-muxed fixture cut into stored fragments) packaged by reel's fMP4 writer and
//! judged by `ffprobe` and `ffmpeg` as players would: HEVC Main 320×240, every frame there,
//! decoding without a single error. MPEG-TS refuses it, as KVS does. A missing tool fails the
//! test with the command that installs it.

use std::path::Path;

use reel::testkit::{self, probe};
use reel_media::fixture::FixtureFragment;
use reel_media::source::{self, Codec, Parsed};
use reel_media::{fmp4, ts};

const T0_MS: u64 = 1_700_000_000_000;

fn fragments() -> Vec<FixtureFragment> {
    let frags = testkit::hevc_fixture_fragments(T0_MS).expect("H.265 fixture");
    assert_eq!(frags.len(), 2);
    frags
}

fn parse(f: &FixtureFragment) -> Parsed<'_> {
    source::parse(&f.header, f.chunks.iter().map(|(_, c)| &c[..]), f.producer_ts_ms, f.duration_ms).expect("parse")
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write");
    path.to_string_lossy().into_owned()
}

/// Asserts ffprobe sees HEVC Main 320×240 and ffmpeg decodes all of it without a word.
fn assert_plays(path: &str) {
    let summary = probe::stream_summary(path).expect("ffprobe");
    assert!(summary.contains("codec_name=hevc|profile=Main|width=320|height=240"), "{path}: {summary}");
    let errors = probe::decode_errors(path).expect("ffmpeg");
    assert_eq!(errors.trim(), "", "{path}: ffmpeg reported errors");
}

#[test]
fn the_fixture_is_a_playable_h265_layout() {
    let frags = fragments();
    let tracks = source::tracks(&frags[0].header).expect("tracks");
    assert_eq!(tracks.len(), 1);
    let Codec::Hevc(c) = &tracks[0].codec else { panic!("H.265 on track 1: {tracks:?}") };
    assert_eq!((c.width, c.height), (320, 240));
    assert_eq!(tracks[0].timescale(), 90_000);
    assert_eq!(tracks[0].codec_string(), "hvc1.1.6.L60.90");
    let parsed = parse(&frags[0]);
    assert!(parsed.samples[0][0].keyframe, "fragments start on a keyframe");
    assert_eq!(parsed.samples[0].iter().filter(|s| s.keyframe).count(), 2, "a keyframe a second");
}

#[test]
fn fmp4_init_and_segments_play_as_hevc() {
    probe::require(&["ffprobe", "ffmpeg"]);
    let frags = fragments();
    let tracks = source::tracks(&frags[0].header).expect("tracks");
    let dir = tempfile::tempdir().expect("tempdir");
    let init = fmp4::init_segment(&tracks, None);
    let mut file = init.clone();
    for (i, f) in frags.iter().enumerate() {
        let segment = fmp4::media_segment_bytes(&parse(f), None, i as u32 + 1, 0);
        // Each segment plays on its own behind the init segment, as HLS fetches them.
        let alone = write(dir.path(), &format!("segment-{i}.mp4"), &[&init[..], &segment[..]].concat());
        assert_plays(&alone);
        file.extend_from_slice(&segment);
    }
    let path = write(dir.path(), "hevc.mp4", &file);
    assert_plays(&path);
    let demuxed = probe::streams(&path).expect("ffprobe");
    assert_eq!(demuxed.codecs, ["hevc"]);
    let video = demuxed.of_stream(0);
    assert_eq!(video.len(), 120, "4 s at 30 fps");
    assert_eq!(video.iter().filter(|p| p.keyframe).count(), 4);
    assert!((video[0].pts - T0_MS as f64 / 1000.0).abs() < 0.001, "decode times count from the epoch");
}

#[test]
fn mpeg_ts_refuses_h265() {
    let frags = fragments();
    let tracks = source::tracks(&frags[0].header).expect("tracks");
    let e = ts::check(&tracks).expect_err("H.265 has no MPEG-TS form in KVS");
    assert_eq!(e, ts::TsError::UnsupportedVideo("H.265"));
    assert!(ts::segment(&parse(&frags[0])).is_err());
}
