//! Scenario: H.264 + AAC as a KVS producer sends it (`A_AAC`, raw access units, the
//! `AudioSpecificConfig` as codec private; the ffmpeg-muxed fixture cut into stored
//! fragments) packaged by reel's fMP4 and MPEG-TS writers, and judged by `ffprobe` and
//! `ffmpeg` as players would: AAC LC at 44.1 kHz stereo, decoding without a single error,
//! lasting as long as the stored media. Explicitly signalled HE-AAC gets through fMP4 and is
//! refused for MPEG-TS. A missing tool fails the test with the command that installs it.

use std::path::Path;

use reel::testkit::{self, probe};
use reel_media::fixture::FixtureFragment;
use reel_media::mkv;
use reel_media::source::{self, Codec, Parsed};
use reel_media::{fmp4, ts};

const T0_MS: u64 = 1_700_000_000_000;

fn fragments() -> Vec<FixtureFragment> {
    let frags = testkit::aac_fixture_fragments(T0_MS).expect("AAC fixture");
    assert_eq!(frags.len(), 2);
    frags
}

fn parse(f: &FixtureFragment) -> Parsed<'_> {
    source::parse(&f.header, f.chunks.iter().map(|(_, c)| &c[..]), f.producer_ts_ms, f.duration_ms).expect("parse")
}

/// Total stored duration, s.
fn seconds(frags: &[FixtureFragment]) -> f64 {
    frags.iter().map(|f| f64::from(f.duration_ms)).sum::<f64>() / 1000.0
}

/// The init segment and every media segment (decode times from the Unix epoch, as HLS and
/// DASH serve them) of `frags`, back to back; `only` picks one track as DASH does.
fn fmp4_file(frags: &[FixtureFragment], only: Option<u64>) -> Vec<u8> {
    let mut tracks = source::tracks(&frags[0].header).expect("tracks");
    tracks.retain(|t| only.is_none_or(|n| t.number == n));
    let mut file = fmp4::init_segment(&tracks, None);
    for (i, f) in frags.iter().enumerate() {
        file.extend_from_slice(&fmp4::media_segment_bytes(&parse(f), only, i as u32 + 1, 0));
    }
    file
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write");
    path.to_string_lossy().into_owned()
}

/// Asserts ffprobe sees AAC at `rate` Hz with 2 channels (and H.264 640x360 when `video`),
/// and ffmpeg decodes all of it without a word.
fn assert_plays(path: &str, rate: u32, video: bool) {
    let summary = probe::stream_summary(path).expect("ffprobe");
    assert!(
        summary.contains("codec_name=aac")
            && summary.contains(&format!("sample_rate={rate}"))
            && summary.contains("channels=2"),
        "{path}: {summary}"
    );
    assert_eq!(
        summary.contains("codec_name=h264|profile=Constrained Baseline|width=640|height=360"),
        video,
        "{summary}"
    );
    let errors = probe::decode_errors(path).expect("ffmpeg");
    assert_eq!(errors.trim(), "", "{path}: ffmpeg reported errors");
}

#[test]
fn fmp4_init_and_segments_play_as_h264_and_aac() {
    probe::require(&["ffprobe", "ffmpeg"]);
    let frags = fragments();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "aac.mp4", &fmp4_file(&frags, None));
    assert_plays(&path, 44_100, true);

    let demuxed = probe::streams(&path).expect("ffprobe");
    assert_eq!(demuxed.codecs, ["h264", "aac"]);
    let (video, audio) = (demuxed.of_stream(0), demuxed.of_stream(1));
    assert_eq!(video.len(), 120);
    let expected = seconds(&frags);
    let audio_span = demuxed.codec_duration("aac").expect("aac");
    assert!((audio_span - expected).abs() < 0.05, "audio lasts {audio_span} s of {expected}");
    // Every access unit is one 1024-sample frame (ffprobe gives the first one no duration in
    // any fragmented MP4, ffmpeg's own too), and audio starts with the video.
    assert!(audio[1..].iter().all(|p| (p.duration - 1024.0 / 44_100.0).abs() < 1e-6), "{:?}", &audio[..3]);
    assert!((audio[0].pts - video[0].pts).abs() < 0.024, "audio {} vs video {}", audio[0].pts, video[0].pts);
    assert!((audio[0].pts - T0_MS as f64 / 1000.0).abs() < 0.024, "decode times count from the epoch");
    // The access units are the producer's, byte for byte: all but the one before the first
    // video frame, which the fragments leave out.
    let ours = probe::audio_packet_hashes(&path).expect("ffprobe");
    let theirs = probe::audio_packet_hashes(testkit::fixture_path(testkit::AAC_FIXTURE)).expect("ffprobe");
    assert_eq!(ours.len(), audio.len());
    assert!(ours.len() + 2 >= theirs.len() && theirs.ends_with(&ours), "{} of {} units", ours.len(), theirs.len());

    // The audio track alone, as a DASH audio Representation serves it.
    let path = write(dir.path(), "aac-only.mp4", &fmp4_file(&frags, Some(2)));
    assert_plays(&path, 44_100, false);
    assert_eq!(probe::streams(&path).expect("ffprobe").codecs, ["aac"]);
}

#[test]
fn ts_segments_play_as_h264_and_adts_aac() {
    probe::require(&["ffprobe", "ffmpeg"]);
    let frags = fragments();
    let dir = tempfile::tempdir().expect("tempdir");
    for (n, f) in frags.iter().enumerate() {
        let segment = ts::segment(&parse(f)).expect("TS segment");
        let path = write(dir.path(), &format!("segment-{n}.ts"), &segment);
        assert_plays(&path, 44_100, true);
        let demuxed = probe::streams(&path).expect("ffprobe");
        assert_eq!(demuxed.codecs, ["h264", "aac"]);
        let audio = demuxed.of_stream(1);
        let stored = parse(f).samples[1].len();
        assert_eq!(audio.len(), stored, "one ADTS frame per stored access unit");
        let video = demuxed.of_stream(0);
        assert!(video[0].keyframe && video.len() == 60);
        assert!((audio[0].pts - video[0].pts).abs() < 0.024, "audio {} vs video {}", audio[0].pts, video[0].pts);
    }
}

/// The fixture with its `AudioSpecificConfig` replaced by explicit HE-AAC signalling (SBR,
/// core AAC LC 44.1 kHz stereo, SBR at 88.2 kHz). The LC frames carry no SBR data, which
/// decoders accept: they only upsample.
fn he_aac_fragments() -> Vec<FixtureFragment> {
    let mut frags = fragments();
    let mut entries = mkv::parse_tracks(&frags[0].header).expect("tracks");
    // 00101 0100 0010 0001 00010 000: object type 5, 44.1 kHz, stereo, 88.2 kHz, core 2.
    entries[1].codec_private = vec![0x2a, 0x10, 0x88, 0x00];
    let header = bytes::Bytes::from(mkv::write_tracks(&entries));
    for f in &mut frags {
        f.header = header.clone();
    }
    frags
}

#[test]
fn explicit_he_aac_plays_in_fmp4_and_is_refused_for_ts() {
    probe::require(&["ffprobe", "ffmpeg"]);
    let frags = he_aac_fragments();
    let tracks = source::tracks(&frags[0].header).expect("tracks");
    let Codec::Aac(config) = &tracks[1].codec else { panic!("AAC: {tracks:?}") };
    assert_eq!((config.codec_string().as_str(), config.output_sample_rate()), ("mp4a.40.5", 88_200));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "he-aac.mp4", &fmp4_file(&frags, None));
    assert_plays(&path, 88_200, true);
    let span = probe::streams(&path).expect("ffprobe").codec_duration("aac").expect("aac");
    assert!((span - seconds(&frags)).abs() < 0.05, "HE-AAC lasts {span} s");

    assert!(matches!(ts::check(&tracks), Err(ts::TsError::UnsupportedAudio(_))));
    assert!(matches!(ts::segment(&parse(&frags[0])), Err(ts::TsError::UnsupportedAudio(_))));
}
