use super::*;
use crate::h264::AvcConfig;
use crate::opus::OpusHead;

const SPS: &[u8] = &[
    0x67, 0x42, 0xe0, 0x1f, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03,
    0x00, 0x3c, 0x0f, 0x18, 0x32, 0x48,
];
const PPS: &[u8] = &[0x68, 0xcb, 0x8c, 0xb2];

fn tracks() -> Vec<TrackEntry> {
    let avc = AvcConfig::new(vec![SPS.to_vec()], vec![PPS.to_vec()]).unwrap();
    vec![TrackEntry::h264(VIDEO_TRACK, &avc), TrackEntry::opus(AUDIO_TRACK, &OpusHead::default())]
}

fn chunks() -> Vec<Vec<u8>> {
    let mut a = Vec::new();
    write_simple_block(&mut a, AUDIO_TRACK, 0, true, &[0xfc, 1, 2, 3]);
    write_simple_block(&mut a, VIDEO_TRACK, 0, true, &[0, 0, 0, 2, 0x65, 0x88]);
    let mut b = Vec::new();
    write_simple_block(&mut b, AUDIO_TRACK, 20, true, &[0xfc, 4]);
    write_simple_block(&mut b, VIDEO_TRACK, 33, false, &[0, 0, 0, 2, 0x41, 0x9a]);
    vec![a, b]
}

#[test]
fn tracks_header_round_trips() {
    let header = write_tracks(&tracks());
    assert_eq!(&header[..4], &[0x16, 0x54, 0xae, 0x6b]);
    let back = parse_tracks(&header).unwrap();
    assert_eq!(back, tracks());
    assert_eq!(back[0].video, Some(VideoSettings { width: 640, height: 360 }));
    assert_eq!(back[1].codec_delay_ns, 6_500_000);
    assert_eq!(back[1].seek_pre_roll_ns, 80_000_000);
    assert_eq!(AvcConfig::parse(&back[0].codec_private).unwrap().width(), 640);
    assert!(matches!(parse_tracks(&chunks()[0]), Err(MkvError::UnexpectedElement { .. })));
    // A header is exactly one Tracks element: trailing bytes would corrupt served documents.
    let mut junk = header.clone();
    junk.push(0x80);
    assert!(parse_tracks(&junk).is_err());
    let doc = FragmentDocument { header: &junk, start_ms: 0, tags: &[], trailing_tags: &[] };
    assert!(doc.compose([]).is_err());
}

#[test]
fn blocks_round_trip_with_relative_timecodes() {
    let cs = chunks();
    assert_eq!(cs[0].len(), simple_block_len(2, 4) + simple_block_len(1, 6));
    let stored = parse_stored(&write_tracks(&tracks()), cs.iter().map(Vec::as_slice), 1_000).unwrap();
    let summary: Vec<_> = stored.frames.iter().map(|f| (f.track, f.timestamp_ms, f.keyframe, f.data.len())).collect();
    assert_eq!(summary, vec![(2, 1_000, true, 4), (1, 1_000, true, 6), (2, 1_020, true, 2), (1, 1_033, false, 6)]);
    let mut neg = Vec::new();
    write_simple_block(&mut neg, 1, -5, false, &[1]);
    let mut out = vec![];
    parse_blocks(&neg, 100, &mut out).unwrap();
    assert_eq!(out[0].timestamp_ms, 95);
    let mut laced = neg.clone();
    let flags_at = laced.len() - 2;
    laced[flags_at] |= 0x02;
    assert_eq!(parse_blocks(&laced, 0, &mut out), Err(MkvError::LacingUnsupported));
    // Chunks hold blocks only: a Timecode in a chunk would move its cluster.
    let mut timecode = vec![];
    ebml::write_uint(&mut timecode, id::TIMECODE, 5);
    assert!(matches!(parse_blocks(&timecode, 0, &mut out), Err(MkvError::BadBlock(_))));
}

#[test]
fn composed_fragment_parses_back_with_tags() {
    let header = write_tracks(&tracks());
    let cs = chunks();
    let tags = [
        SimpleTag::new(tag::FRAGMENT_NUMBER, "91343852333181432392682062607743920146264157"),
        SimpleTag::new(tag::PRODUCER_TIMESTAMP, kvs_timestamp(1_700_000_000_123)),
    ];
    let trailing = [SimpleTag::new(tag::MILLIS_BEHIND_NOW, "40")];
    let doc = FragmentDocument { header: &header, start_ms: 1_700_000_000_123, tags: &tags, trailing_tags: &trailing };
    let whole = doc.compose(cs.iter().map(Vec::as_slice)).unwrap();

    // The streaming form (unknown-size cluster) reads the same.
    let mut streamed = Vec::new();
    doc.write_prelude(None, &mut streamed).unwrap();
    cs.iter().for_each(|c| streamed.extend_from_slice(c));
    doc.write_trailer(&mut streamed);

    for bytes in [&whole, &streamed] {
        let parsed = parse_document(bytes).unwrap();
        assert_eq!(parsed.tracks, tracks());
        assert_eq!(parsed.timecode_scale_ns, 1_000_000);
        assert_eq!(parsed.tags.len(), 3);
        assert_eq!(parsed.tags[1].value, "1700000000.123");
        assert_eq!(parsed.tags[2].name, tag::MILLIS_BEHIND_NOW);
        assert_eq!(parsed.clusters.len(), 1);
        assert_eq!(parsed.clusters[0].timecode_ms, 1_700_000_000_123);
        assert_eq!(parsed.frames.len(), 4);
        assert_eq!(parsed.frames[3].timestamp_ms, 1_700_000_000_156);
        assert_eq!(parsed.frames[3].data, &[0, 0, 0, 2, 0x41, 0x9a]);
    }

    // A GetMedia stream is documents back to back.
    let two = [whole.clone(), streamed.clone()].concat();
    let parsed = parse_document(&two).unwrap();
    assert_eq!(parsed.clusters.len(), 2);
    assert_eq!(parsed.frames.len(), 8);
    assert_eq!(parsed.tags.len(), 6);

    // Every truncation either errors or yields fewer frames; none panics.
    for cut in 0..whole.len() {
        if let Ok(d) = parse_document(&whole[..cut]) {
            assert!(d.frames.len() <= 4);
        }
    }
    assert!(matches!(FragmentDocument { header: &cs[0], ..doc }.compose([]), Err(MkvError::UnexpectedElement { .. })));
}

#[test]
fn kvs_timestamps_have_millisecond_fractions() {
    assert_eq!(kvs_timestamp(1_531_248_932_123), "1531248932.123");
    assert_eq!(kvs_timestamp(5), "0.005");
}

#[test]
fn reads_an_ffmpeg_written_file() {
    let data = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/ffmpeg-h264-opus.mkv")).unwrap();
    let doc = parse_document(&data).unwrap();
    let video = doc.tracks.iter().find(|t| t.codec_id == CODEC_H264).unwrap();
    let audio = doc.tracks.iter().find(|t| t.codec_id == CODEC_OPUS).unwrap();
    let avc = AvcConfig::parse(&video.codec_private).unwrap();
    assert_eq!((avc.width(), avc.height()), (640, 360));
    assert_eq!(avc.codec_string(), "avc1.42e01f");
    assert_eq!(OpusHead::parse(&audio.codec_private).unwrap().channels, 2);
    let vframes: Vec<_> = doc.frames.iter().filter(|f| f.track == video.number).collect();
    assert_eq!(vframes.len(), 60, "2 s at 30 fps");
    assert!(vframes[0].keyframe && vframes[30].keyframe && !vframes[1].keyframe);
    assert!(vframes.windows(2).all(|w| w[0].timestamp_ms < w[1].timestamp_ms));
    for f in &vframes {
        let nals: Result<Vec<_>, _> =
            crate::h264::LengthPrefixedNals::new(f.data, avc.nal_length_size).unwrap().collect();
        assert!(!nals.unwrap().is_empty());
    }
    let aframes = doc.frames.iter().filter(|f| f.track == audio.number).count();
    assert!((99..=102).contains(&aframes), "about 2 s of 20 ms packets, got {aframes}");
}
