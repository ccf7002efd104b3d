//! Real H.264/Opus fragments from the repository's fixture files, for tests and tools that
//! need a stream full of media without a WebRTC peer (playback, HLS/DASH, load tests).
//!
//! Pure: the caller reads `fixtures/test-h264-baseline.h264` and `fixtures/test-opus.packets`
//! (see fixtures/README.md) and passes the bytes in with a start time; [`fragments`] feeds
//! them through the real [`Fragmenter`] as a sender would (video at 30 fps, audio every
//! 20 ms, arriving on time) and returns the finished fragments, ready for
//! `reel_storage::Stream::begin_fragment` + `append_chunk` + `finish`. The 6 s fixtures give
//! three 2 s fragments, each starting at an IDR.

use bytes::Bytes;

use super::fragmenter::{ConfigError, FragmentEvent, Fragmenter, FragmenterConfig, MediaFrame};
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
}
