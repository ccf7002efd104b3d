//! Scenario: the fixture clip (H.264 + Opus) fragmented by reel and checked by real tools.
//!
//! The fragments the store would hold are (1) concatenated behind one track header into a
//! continuous MKV and (2) composed one by one into the documents GetMedia serves; `ffprobe`,
//! `ffmpeg` and `mkvinfo` must read them as H.264 640x360 + Opus 48 kHz stereo with the
//! right durations, keyframe-aligned fragments and KVS tags. A missing tool fails the test
//! with the command that installs it; `.ci/run` installs them.

use reel::testkit::{self, probe};
use reel_media::fixture::FixtureFragment;
use reel_media::mkv::{self, FragmentDocument, SimpleTag, tag};

const T0_US: i64 = 1_700_000_000_000_000;

/// The fixture clip (30 fps video, 20 ms audio, real-time arrival) through the fragmenter.
fn fragment_fixtures() -> Vec<FixtureFragment> {
    testkit::fixture_fragments(T0_US).expect("fixture files")
}

/// Bytes of a fragment's chunks, one slice each.
fn chunks(f: &FixtureFragment) -> impl Iterator<Item = &[u8]> + Clone {
    f.chunks.iter().map(|(_, c)| c.as_ref())
}

#[test]
fn fragments_concatenated_behind_the_header_are_a_valid_mkv() {
    let frags = fragment_fixtures();
    assert_eq!(frags.len(), 3);
    probe::require(&["ffprobe", "ffmpeg", "mkvinfo"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mkv");
    let mut clip = vec![];
    mkv::write_segment_start(&frags[0].header, &[], &mut clip).unwrap();
    for f in &frags {
        assert_eq!(f.header, frags[0].header, "one codec configuration throughout");
        let len: usize = chunks(f).map(<[u8]>::len).sum();
        mkv::write_cluster_start(f.producer_ts_ms, Some(len as u64), &mut clip);
        chunks(f).for_each(|c| clip.extend_from_slice(c));
    }
    std::fs::write(&path, &clip).unwrap();

    let streams = probe::stream_summary(&path).unwrap();
    assert!(
        streams.contains("codec_name=h264") && streams.contains("width=640") && streams.contains("height=360"),
        "{streams}"
    );
    assert!(streams.contains("profile=Constrained Baseline"), "{streams}");
    assert!(
        streams.contains("codec_name=opus") && streams.contains("sample_rate=48000") && streams.contains("channels=2"),
        "{streams}"
    );

    let demuxed = probe::streams(&path).unwrap();
    let (video, audio) = (demuxed.of_stream(0), demuxed.of_stream(1));
    assert_eq!(video.len(), 180);
    assert!(audio.len() >= 299, "{}", audio.len());
    let start = video[0].pts;
    let span = video.last().unwrap().pts - start + 1.0 / 30.0;
    assert!((span - 6.0).abs() < 0.05, "video lasts {span} s");
    let audio_span = audio.last().unwrap().pts - audio[0].pts + 0.02;
    assert!((audio_span - 6.0).abs() < 0.1, "audio lasts {audio_span} s");
    // Fragments start every 2 s, each with a keyframe.
    for f in &frags {
        let t = (f.producer_ts_ms - frags[0].producer_ts_ms) as f64 / 1_000.0 + start;
        let first = video.iter().find(|p| (p.pts - t).abs() < 0.0015).unwrap_or_else(|| panic!("no frame at {t}"));
        assert!(first.keyframe, "fragment at {t} s starts with a keyframe");
    }

    let errors = probe::decode_errors(&path).unwrap();
    assert_eq!(errors.trim(), "", "decoding reported errors");

    let info = probe::mkvinfo(&path, false).unwrap();
    assert!(info.contains("V_MPEG4/ISO/AVC") && info.contains("A_OPUS"), "{info}");
}

#[test]
fn each_fragment_as_a_getmedia_document_stands_alone() {
    let frags = fragment_fixtures();
    for (n, f) in frags.iter().enumerate() {
        let tags = [
            SimpleTag::new(tag::FRAGMENT_NUMBER, format!("9134385233318143239268206260774392014626415{n}")),
            SimpleTag::new(tag::SERVER_TIMESTAMP, mkv::kvs_timestamp(f.server_ts_ms)),
            SimpleTag::new(tag::PRODUCER_TIMESTAMP, mkv::kvs_timestamp(f.producer_ts_ms)),
        ];
        let trailing = [SimpleTag::new(tag::MILLIS_BEHIND_NOW, "0"), SimpleTag::new(tag::CONTINUATION_TOKEN, "x")];
        let doc =
            FragmentDocument { header: &f.header, start_ms: f.producer_ts_ms, tags: &tags, trailing_tags: &trailing }
                .compose(chunks(f))
                .unwrap();
        let parsed = mkv::parse_document(&doc).unwrap();
        assert_eq!(parsed.clusters.len(), 1);
        assert_eq!(parsed.clusters[0].timecode_ms, f.producer_ts_ms as i64);
        assert!(parsed.frames[0].keyframe && parsed.frames.iter().any(|x| x.track == 2));
        assert_eq!(
            parsed.tags.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            [
                tag::FRAGMENT_NUMBER,
                tag::SERVER_TIMESTAMP,
                tag::PRODUCER_TIMESTAMP,
                tag::MILLIS_BEHIND_NOW,
                tag::CONTINUATION_TOKEN
            ]
        );
        assert!(f.duration_ms >= 2_000);

        probe::require(&["ffprobe", "mkvinfo"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("fragment-{n}.mkv"));
        std::fs::write(&path, &doc).unwrap();
        let demuxed = probe::streams(&path).unwrap();
        assert_eq!(demuxed.codecs, ["h264", "opus"]);
        let video = demuxed.of_stream(0);
        assert_eq!(video.len(), 60);
        assert!(video[0].keyframe, "starts with a keyframe");
        // -v: mkvinfo stops at the first Cluster unless asked to read on.
        let info = probe::mkvinfo(&path, true).unwrap();
        assert!(info.contains(tag::FRAGMENT_NUMBER) && info.contains(tag::CONTINUATION_TOKEN), "{info}");
    }
}
