//! Real H.264/Opus fragments from the repository's fixture files, for tests and tools that
//! need a stream full of media without a WebRTC peer (playback, HLS/DASH, load tests).
//!
//! Pure: the caller reads `fixtures/test-h264-baseline.h264` and `fixtures/test-opus.packets`
//! (see fixtures/README.md) and passes the bytes in with a start time; [`fragments`] feeds
//! them through the real [`Fragmenter`] as a sender would (video at 30 fps, audio every
//! 20 ms, arriving on time) and returns the finished fragments, ready for
//! `reel_storage::Stream::begin_fragment` + `append_chunk` + `finish`. The 6 s fixtures give
//! three 2 s fragments, each starting at an IDR.
//!
//! [`from_document`] does the same for a Matroska file another muxer wrote (ffmpeg's H.264 +
//! AAC fixture, what a KVS producer would send): its tracks as they are, its frames cut into
//! keyframe-aligned fragments of at least [`DOCUMENT_FRAGMENT_MS`].

use bytes::Bytes;

use super::fragmenter::{ConfigError, FragmentEvent, Fragmenter, FragmenterConfig, MediaFrame};
use super::mkv::{self, Frame, MkvError, TrackType};
use super::timing::MediaKind;

/// Video frame rate of the fixture (`test-h264-baseline.h264`).
pub const VIDEO_FPS: i64 = 30;
/// Duration of one fixture Opus packet, µs.
pub const AUDIO_PACKET_US: i64 = 20_000;

/// One fragment as the fragmenter produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureFragment {
    /// Producer timestamp of its start, ms since the Unix epoch.
    pub producer_ts_ms: u64,
    /// Server (arrival) timestamp of its start, ms since the Unix epoch.
    pub server_ts_ms: u64,
    /// The MKV `Tracks` header.
    pub header: Bytes,
    /// Chunks (complete SimpleBlocks) with their media end offset in ms.
    pub chunks: Vec<(u32, Bytes)>,
    /// Duration in ms.
    pub duration_ms: u32,
}

/// Splits an Annex-B file written with access unit delimiters into access units.
pub fn access_units(data: &[u8]) -> Vec<&[u8]> {
    let starts: Vec<usize> = data
        .windows(5)
        .enumerate()
        .filter(|(_, w)| w[..4] == [0, 0, 0, 1] && w[4] & 0x1f == 9)
        .map(|(i, _)| i)
        .collect();
    starts
        .iter()
        .enumerate()
        .filter_map(|(n, &s)| data.get(s..starts.get(n + 1).copied().unwrap_or(data.len())))
        .collect()
}

/// Splits a file of 4-byte big-endian length-prefixed packets (a truncated tail is ignored).
pub fn length_prefixed(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = vec![];
    while let Some((len, rest)) = data.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len) as usize;
        let Some(packet) = rest.get(..len) else { break };
        out.push(packet);
        data = &rest[len..];
    }
    out
}

/// Runs the fixture media (Annex-B `video`, length-prefixed Opus `audio`) through a default
/// [`Fragmenter`] as if the first frame arrived at `start_unix_us`, and returns the fragments.
pub fn fragments(video: &[u8], audio: &[u8], start_unix_us: i64) -> Result<Vec<FixtureFragment>, ConfigError> {
    let aus = access_units(video);
    let packets = length_prefixed(audio);
    let mut f = Fragmenter::new(FragmenterConfig::default(), start_unix_us)?;
    let mut out: Vec<FixtureFragment> = Vec::new();
    let (mut vi, mut ai) = (0usize, 0usize);
    let mut now = start_unix_us;
    while vi < aus.len() || ai < packets.len() {
        let v_us = vi as i64 * 1_000_000 / VIDEO_FPS;
        let a_us = ai as i64 * AUDIO_PACKET_US;
        let (kind, ts, at, data) = if ai < packets.len() && (vi >= aus.len() || a_us <= v_us) {
            ai += 1;
            (MediaKind::Audio, (ai as u32 - 1) * 960, a_us, packets[ai - 1])
        } else {
            vi += 1;
            (MediaKind::Video, (vi as u32 - 1) * 3_000, v_us, aus[vi - 1])
        };
        now = start_unix_us + at;
        f.push(MediaFrame {
            kind,
            rtp_timestamp: ts,
            arrival_unix_us: now,
            contiguous: true,
            data: data.to_vec(),
            sender_report: None,
        });
        drain(&mut f, &mut out);
    }
    f.finish(now);
    drain(&mut f, &mut out);
    Ok(out)
}

/// Shortest fragment [`from_document`] cuts: a new one starts at the first video keyframe at
/// least this long after the current one's start.
pub const DOCUMENT_FRAGMENT_MS: i64 = 2_000;

/// Cuts a whole Matroska file into stored fragments: header = its `Tracks` (re-serialized,
/// codec privates untouched), chunks = one SimpleBlock per frame in timestamp order (video
/// first on ties), a new fragment at each video keyframe [`DOCUMENT_FRAGMENT_MS`] or more
/// after the last start. Frames before the first video keyframe are left out; the file's
/// first keyframe lands at `start_unix_ms`. Each chunk's end offset and the last fragment's
/// duration count a frame as lasting until the next frame of its track (the last one: as
/// long as the one before it).
pub fn from_document(data: &[u8], start_unix_ms: u64) -> Result<Vec<FixtureFragment>, MkvError> {
    let doc = mkv::parse_document(data)?;
    let video = doc.tracks.iter().find(|t| t.track_type == TrackType::Video).map(|t| t.number);
    let header = Bytes::from(mkv::write_tracks(&doc.tracks));
    let mut frames: Vec<&Frame<'_>> = doc.frames.iter().collect();
    frames.sort_by_key(|f| (f.timestamp_ms, Some(f.track) != video));
    let mut ends = Vec::with_capacity(frames.len());
    for (i, f) in frames.iter().enumerate() {
        let same = |g: &&&Frame<'_>| g.track == f.track;
        let next = frames[i + 1..].iter().find(same).map(|n| n.timestamp_ms - f.timestamp_ms);
        let prev = frames[..i].iter().rev().find(same).map(|p| f.timestamp_ms - p.timestamp_ms);
        ends.push(f.timestamp_ms + next.or(prev).unwrap_or(0));
    }
    let Some(origin) = frames.iter().find(|f| Some(f.track) == video && f.keyframe).map(|f| f.timestamp_ms) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<FixtureFragment> = Vec::new();
    let mut start = origin;
    let mut last_end = origin;
    for (f, end) in frames.iter().zip(ends) {
        if f.timestamp_ms < origin {
            continue;
        }
        let cut =
            Some(f.track) == video && f.keyframe && (out.is_empty() || f.timestamp_ms - start >= DOCUMENT_FRAGMENT_MS);
        if cut {
            if let Some(prev) = out.last_mut() {
                prev.duration_ms = u32::try_from(f.timestamp_ms - start).unwrap_or(u32::MAX);
            }
            start = f.timestamp_ms;
            let ts = start_unix_ms.saturating_add(u64::try_from(start - origin).unwrap_or(0));
            out.push(FixtureFragment {
                producer_ts_ms: ts,
                server_ts_ms: ts,
                header: header.clone(),
                chunks: Vec::new(),
                duration_ms: 0,
            });
            last_end = start;
        }
        let Some(frag) = out.last_mut() else { continue };
        let rel = i16::try_from(f.timestamp_ms - start).map_err(|_| MkvError::BadValue("fragment longer than 32 s"))?;
        let mut block = Vec::new();
        mkv::write_simple_block(&mut block, f.track, rel, f.keyframe, f.data);
        last_end = last_end.max(end);
        frag.chunks.push((u32::try_from(last_end - start).unwrap_or(0), Bytes::from(block)));
    }
    if let Some(frag) = out.last_mut() {
        frag.duration_ms = u32::try_from(last_end - start).unwrap_or(0);
    }
    Ok(out)
}

fn drain(f: &mut Fragmenter, out: &mut Vec<FixtureFragment>) {
    while let Some(ev) = f.poll() {
        match ev {
            FragmentEvent::BeginFragment { producer_ts_ms, server_ts_ms, header } => {
                out.push(FixtureFragment { producer_ts_ms, server_ts_ms, header, chunks: Vec::new(), duration_ms: 0 })
            }
            FragmentEvent::Chunk { bytes, media_end_ms, .. } => {
                if let Some(frag) = out.last_mut() {
                    frag.chunks.push((media_end_ms, Bytes::from(bytes)));
                }
            }
            FragmentEvent::EndFragment { duration_ms } => {
                if let Some(frag) = out.last_mut() {
                    frag.duration_ms = duration_ms;
                }
            }
            FragmentEvent::RequestKeyframe { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_files_make_three_keyframe_fragments() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");
        let video = std::fs::read(format!("{dir}/test-h264-baseline.h264")).expect("video");
        let audio = std::fs::read(format!("{dir}/test-opus.packets")).expect("audio");
        let t0 = 1_700_000_000_000_000;
        let frags = fragments(&video, &audio, t0).expect("fragments");
        assert_eq!(frags.len(), 3);
        for (n, f) in frags.iter().enumerate() {
            assert_eq!(f.server_ts_ms, 1_700_000_000_000 + 2_000 * n as u64);
            assert!(f.duration_ms >= 2_000);
            let blocks: Vec<u8> = f.chunks.iter().flat_map(|(_, c)| c.iter().copied()).collect();
            let mut frames = Vec::new();
            crate::mkv::parse_blocks(&blocks, 0, &mut frames).expect("blocks");
            assert!(frames.first().is_some_and(|fr| fr.keyframe && fr.track == 1));
        }
    }

    #[test]
    fn the_aac_fixture_makes_two_keyframe_fragments_with_aac_on_track_2() {
        let data = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/ffmpeg-h264-aac.mkv")).expect("mkv");
        let frags = from_document(&data, 1_700_000_000_000).expect("fragments");
        assert_eq!(frags.len(), 2, "4 s with an IDR every second, cut every 2 s");
        assert_eq!(frags[1].producer_ts_ms - frags[0].producer_ts_ms, 2_000);
        assert_eq!(frags[0].duration_ms, 2_000);
        assert!((1_990..=2_050).contains(&frags[1].duration_ms), "{}", frags[1].duration_ms);
        for f in &frags {
            let tracks = crate::source::tracks(&f.header).expect("a playable layout");
            let crate::source::Codec::Aac(aac) = &tracks[1].codec else { panic!("AAC on track 2: {tracks:?}") };
            assert_eq!((aac.sample_rate, aac.channels(), aac.codec_string().as_str()), (44_100, 2, "mp4a.40.2"));
            let parsed =
                crate::source::parse(&f.header, f.chunks.iter().map(|(_, c)| &c[..]), f.producer_ts_ms, f.duration_ms)
                    .expect("parse");
            assert_eq!(parsed.samples[0].len(), 60);
            assert!(parsed.samples[0][0].keyframe);
            // 2 s of 1024-sample units at 44.1 kHz: about 86, each lasting exactly one frame.
            let audio = &parsed.samples[1];
            assert!((85..=88).contains(&audio.len()), "{}", audio.len());
            assert!(audio.iter().all(|s| s.duration == 1024), "no gaps in ffmpeg's audio");
            assert!(f.chunks.windows(2).all(|w| w[0].0 <= w[1].0), "chunk ends only grow");
        }
    }
}
