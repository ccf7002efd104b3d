//! Stored fragments as players need them: the supported track layout (H.264 or H.265 video
//! on track 1, optional Opus or AAC audio on track 2) and per-track samples with decode times and
//! durations.
//!
//! Sans-IO: works on a stored fragment's bytes (its `Tracks` header and chunks of
//! SimpleBlocks) already read from the store.

use crate::aac::AacConfig;
use crate::h264::AvcConfig;
use crate::hevc::HevcConfig;
use crate::mkv::{self, CODEC_AAC, TrackEntry, TrackType};
use crate::opus::{OpusHead, PacketInfo};

/// Matroska codec id of H.264 as KVS producers write it (and the doc's misspelling).
const CODEC_AVC: [&str; 2] = ["V_MPEG4/ISO/AVC", "V_MPEG/ISO/AVC"];
/// Matroska codec id of H.265 (and the misspelling of the KVS docs).
pub const CODEC_HEVC: [&str; 2] = ["V_MPEGH/ISO/HEVC", "V_MPEG/ISO/HEVC"];
/// Matroska codec id of Opus.
const CODEC_OPUS: &str = "A_OPUS";
/// Video frame duration used when a fragment has a single video frame (30 fps).
const FALLBACK_VIDEO_MS: i64 = 33;

/// Why stored media cannot be served to a player (mapped to the modeled KVS errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Track 1 is not H.264/H.265 or a track uses a codec we cannot package.
    #[error("unsupported stream media type: {0}")]
    Unsupported(String),
    /// The video track carries no codec private data.
    #[error("track {0} has no codec private data")]
    MissingCodecPrivate(u64),
    /// The codec private data does not parse.
    #[error("invalid codec private data on track {track}: {why}")]
    InvalidCodecPrivate {
        /// Track number.
        track: u64,
        /// Parser message.
        why: String,
    },
    /// The stored fragment does not parse.
    #[error("stored fragment is unreadable: {0}")]
    Corrupt(String),
}

/// The codec of one output track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Codec {
    /// H.264 with its decoder configuration.
    Avc(AvcConfig),
    /// H.265 with its hvcC record (Matroska `V_MPEGH/ISO/HEVC`, as KVS producers send it).
    Hevc(HevcConfig),
    /// Opus with its identification header.
    Opus(OpusHead),
    /// AAC with its `AudioSpecificConfig` (Matroska `A_AAC`, as KVS producers send it).
    Aac(AacConfig),
}

impl Codec {
    /// Whether this is an audio codec (packaged as a sound track).
    pub fn is_audio(&self) -> bool {
        match self {
            Self::Avc(_) | Self::Hevc(_) => false,
            Self::Opus(_) | Self::Aac(_) => true,
        }
    }
}

/// One output track (ids are the stored Matroska track numbers: 1 video, 2 audio).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// Track number (1 or 2), also the MP4 track id.
    pub number: u64,
    /// Codec and configuration.
    pub codec: Codec,
}

impl Track {
    /// Media timescale in ticks per second: 90 kHz video, 48 kHz Opus, and the AAC core
    /// sampling rate (one access unit is then exactly its 1024 or 960 ticks).
    pub fn timescale(&self) -> u32 {
        match &self.codec {
            Codec::Avc(_) | Codec::Hevc(_) => 90_000,
            Codec::Opus(_) => 48_000,
            Codec::Aac(c) => c.sample_rate,
        }
    }

    /// RFC 6381 codec string (`avc1.42e01f`, `hvc1.1.6.L93.B0`, `opus`, `mp4a.40.2`).
    pub fn codec_string(&self) -> String {
        match &self.codec {
            Codec::Avc(c) => c.codec_string(),
            Codec::Hevc(c) => c.codec_string(),
            Codec::Opus(_) => "opus".into(),
            Codec::Aac(c) => c.codec_string(),
        }
    }

    /// Ticks of `ms` milliseconds in this track's timescale.
    pub fn ticks(&self, ms: i64) -> i64 {
        ms.saturating_mul(i64::from(self.timescale())) / 1000
    }
}

/// The supported track layout of a stored fragment header.
pub fn tracks(header: &[u8]) -> Result<Vec<Track>, SourceError> {
    let entries = mkv::parse_tracks(header).map_err(|e| SourceError::Corrupt(e.to_string()))?;
    layout(&entries)
}

/// Validates and converts parsed track entries: track 1 H.264 or H.265 video, optional
/// track 2 Opus or AAC. A malformed codec private is `InvalidCodecPrivate`; a well-formed one of a
/// variant reel cannot package (say AAC with a program config element) is `Unsupported`.
pub fn layout(entries: &[TrackEntry]) -> Result<Vec<Track>, SourceError> {
    let mut out = Vec::new();
    for e in entries {
        match (e.track_type, e.codec_id.as_str()) {
            (TrackType::Video, id) if CODEC_AVC.contains(&id) => {
                if e.codec_private.is_empty() {
                    return Err(SourceError::MissingCodecPrivate(e.number));
                }
                let cfg = AvcConfig::parse(&e.codec_private)
                    .map_err(|err| SourceError::InvalidCodecPrivate { track: e.number, why: err.to_string() })?;
                out.push(Track { number: e.number, codec: Codec::Avc(cfg) });
            }
            (TrackType::Video, id) if CODEC_HEVC.contains(&id) => {
                if e.codec_private.is_empty() {
                    return Err(SourceError::MissingCodecPrivate(e.number));
                }
                let mut cfg = HevcConfig::parse(&e.codec_private)
                    .map_err(|err| SourceError::InvalidCodecPrivate { track: e.number, why: err.to_string() })?;
                if let (0, Some(v)) = (cfg.width, e.video) {
                    (cfg.width, cfg.height) = (v.width, v.height);
                }
                out.push(Track { number: e.number, codec: Codec::Hevc(cfg) });
            }
            (TrackType::Audio, CODEC_OPUS) => {
                if e.codec_private.is_empty() {
                    return Err(SourceError::MissingCodecPrivate(e.number));
                }
                let head = OpusHead::parse(&e.codec_private)
                    .map_err(|err| SourceError::InvalidCodecPrivate { track: e.number, why: err.to_string() })?;
                out.push(Track { number: e.number, codec: Codec::Opus(head) });
            }
            (TrackType::Audio, CODEC_AAC) => {
                if e.codec_private.is_empty() {
                    return Err(SourceError::MissingCodecPrivate(e.number));
                }
                let config = AacConfig::parse(&e.codec_private).map_err(|err| {
                    if err.is_malformed() {
                        SourceError::InvalidCodecPrivate { track: e.number, why: err.to_string() }
                    } else {
                        SourceError::Unsupported(format!("track {}: {err}", e.number))
                    }
                })?;
                out.push(Track { number: e.number, codec: Codec::Aac(config) });
            }
            (_, id) => return Err(SourceError::Unsupported(format!("track {} has codec {id}", e.number))),
        }
    }
    match out.first() {
        Some(Track { number: 1, codec: Codec::Avc(_) | Codec::Hevc(_) }) => Ok(out),
        _ => Err(SourceError::Unsupported(
            "track 1 must be H.264 (V_MPEG4/ISO/AVC) or H.265 (V_MPEGH/ISO/HEVC) video".into(),
        )),
    }
}

/// One sample of one track, times in ms since the Unix epoch (producer timeline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample<'a> {
    /// Decode (= presentation) time in ms.
    pub time_ms: i64,
    /// Duration in the track's timescale ticks.
    pub duration: u32,
    /// Sync sample.
    pub keyframe: bool,
    /// Sample bytes (length-prefixed H.264/H.265 NAL units / one Opus packet / one raw AAC access unit).
    pub data: &'a [u8],
}

/// A parsed fragment: its tracks and their samples.
#[derive(Debug, Clone)]
pub struct Parsed<'a> {
    /// Output tracks.
    pub tracks: Vec<Track>,
    /// Samples per track, parallel to `tracks`.
    pub samples: Vec<Vec<Sample<'a>>>,
    /// Start (producer timestamp) in ms.
    pub start_ms: i64,
}

/// Parses a stored fragment into per-track samples. Durations come from the next sample of
/// the same track, the Opus TOC, the AAC frame length (see [`aac_durations`]), or the
/// fragment's end.
pub fn parse<'a>(
    header: &'a [u8],
    chunks: impl IntoIterator<Item = &'a [u8]>,
    producer_ts_ms: u64,
    duration_ms: u32,
) -> Result<Parsed<'a>, SourceError> {
    let start_ms = i64::try_from(producer_ts_ms).unwrap_or(i64::MAX);
    let end_ms = start_ms.saturating_add(i64::from(duration_ms));
    let stored = mkv::parse_stored(header, chunks, start_ms).map_err(|e| SourceError::Corrupt(e.to_string()))?;
    let tracks = layout(&stored.tracks)?;
    let mut samples = Vec::with_capacity(tracks.len());
    for t in &tracks {
        let frames: Vec<_> = stored.frames.iter().filter(|f| f.track == t.number).collect();
        let aac = match &t.codec {
            Codec::Aac(c) => {
                let times: Vec<i64> = frames.iter().map(|f| f.timestamp_ms).collect();
                aac_durations(&times, t, i64::from(c.frame_length))
            }
            _ => Vec::new(),
        };
        let mut out = Vec::with_capacity(frames.len());
        for (i, f) in frames.iter().enumerate() {
            let next = frames.get(i + 1).map(|n| n.timestamp_ms);
            let ticks = match (&t.codec, next) {
                (Codec::Aac(c), _) => aac.get(i).copied().unwrap_or(i64::from(c.frame_length)),
                (Codec::Opus(_), _) => {
                    PacketInfo::parse(f.data).map(|p| i64::from(p.duration_samples())).unwrap_or_else(|_| t.ticks(20))
                }
                (Codec::Avc(_) | Codec::Hevc(_), Some(n)) => t.ticks(n - f.timestamp_ms),
                (Codec::Avc(_) | Codec::Hevc(_), None) => {
                    let rest = end_ms - f.timestamp_ms;
                    let prev = i.checked_sub(1).and_then(|p| frames.get(p)).map(|p| f.timestamp_ms - p.timestamp_ms);
                    t.ticks(if rest > 0 { rest } else { prev.filter(|d| *d > 0).unwrap_or(FALLBACK_VIDEO_MS) })
                }
            };
            out.push(Sample {
                time_ms: f.timestamp_ms,
                duration: u32::try_from(ticks.max(1)).unwrap_or(u32::MAX),
                keyframe: f.keyframe,
                data: f.data,
            });
        }
        samples.push(out);
    }
    Ok(Parsed { tracks, samples, start_ms })
}

/// Durations in ticks of AAC access units stored at `times_ms`: `frame` ticks each (an
/// access unit codes exactly that many samples, and the timescale is the sample rate), except
/// where the stored timestamps put the next unit more than half a frame away from where
/// those durations would (a gap in the audio, a clock step): that unit's duration then lands
/// the next one on its stored time. Millisecond rounding of the stored times never does.
pub fn aac_durations(times_ms: &[i64], track: &Track, frame: i64) -> Vec<i64> {
    let Some(&first) = times_ms.first() else { return Vec::new() };
    let mut at = 0i64;
    let mut out = Vec::with_capacity(times_ms.len());
    for i in 0..times_ms.len() {
        let d = match times_ms.get(i + 1) {
            Some(&next) => {
                let target = track.ticks(next.saturating_sub(first));
                if target.saturating_sub(at.saturating_add(frame)).unsigned_abs() <= (frame / 2).unsigned_abs() {
                    frame
                } else {
                    target.saturating_sub(at).max(1)
                }
            }
            None => frame,
        };
        at = at.saturating_add(d);
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mkv::{AudioSettings, write_simple_block, write_tracks};

    const SPS: &[u8] = &[
        0x67, 0x42, 0xe0, 0x1f, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00,
        0x03, 0x00, 0x3c, 0x0f, 0x18, 0x32, 0x48,
    ];
    const PPS: &[u8] = &[0x68, 0xcb, 0x8c, 0xb2];
    /// AAC LC, 44.1 kHz, stereo, as ffmpeg writes it (with the SBR sync extension).
    const ASC: &[u8] = &[0x12, 0x10, 0x56, 0xe5, 0x00];

    /// An `A_AAC` track entry as a KVS producer writes it.
    fn aac_entry(number: u64, codec_private: &[u8]) -> TrackEntry {
        TrackEntry {
            number,
            uid: number,
            track_type: TrackType::Audio,
            codec_id: CODEC_AAC.into(),
            codec_private: codec_private.to_vec(),
            name: None,
            default_duration_ns: None,
            codec_delay_ns: 0,
            seek_pre_roll_ns: 0,
            video: None,
            audio: Some(AudioSettings { sampling_frequency: 44_100.0, channels: 2, bit_depth: None }),
        }
    }

    fn h264_aac(codec_private: &[u8]) -> Vec<TrackEntry> {
        let avc = AvcConfig::new(vec![SPS.to_vec()], vec![PPS.to_vec()]).unwrap();
        vec![TrackEntry::h264(1, &avc), aac_entry(2, codec_private)]
    }

    #[test]
    fn h264_with_aac_is_a_playable_layout() {
        let tracks = tracks(&write_tracks(&h264_aac(ASC))).unwrap();
        assert_eq!(tracks.len(), 2);
        let Codec::Aac(c) = &tracks[1].codec else { panic!("AAC on track 2: {tracks:?}") };
        assert_eq!((c.sample_rate, c.channels()), (44_100, 2));
        assert!(tracks[1].codec.is_audio() && !tracks[0].codec.is_audio());
        assert_eq!(tracks[1].timescale(), 44_100);
        assert_eq!(tracks[1].codec_string(), "mp4a.40.2");
    }

    #[test]
    fn bad_aac_codec_private_gives_the_kvs_shaped_errors() {
        assert_eq!(layout(&h264_aac(&[])), Err(SourceError::MissingCodecPrivate(2)));
        assert!(matches!(layout(&h264_aac(&[0x12])), Err(SourceError::InvalidCodecPrivate { track: 2, .. })));
        assert!(matches!(layout(&h264_aac(&[0x16, 0x90])), Err(SourceError::InvalidCodecPrivate { track: 2, .. })));
        // Well-formed but not packageable: a program config element, USAC.
        assert!(matches!(layout(&h264_aac(&[0x12, 0x00])), Err(SourceError::Unsupported(_))));
        assert!(matches!(layout(&h264_aac(&[0xf9, 0x48, 0x40])), Err(SourceError::Unsupported(_))));
        // AAC alone is not a KVS playback layout: track 1 must be H.264.
        assert!(matches!(layout(&[aac_entry(1, ASC)]), Err(SourceError::Unsupported(_))));
    }

    #[test]
    fn aac_samples_last_one_frame_unless_the_timestamps_jump() {
        let mut chunk = Vec::new();
        write_simple_block(&mut chunk, 1, 0, true, &[0, 0, 0, 2, 0x65, 0x88]);
        // 44.1 kHz: 1024 samples are 23.22 ms, so stored ms times step by 23 or 24; then a
        // 200 ms gap, and a unit stored 1 ms before its predecessor.
        let times: [i16; 7] = [0, 23, 46, 70, 93, 300, 299];
        for t in times {
            write_simple_block(&mut chunk, 2, t, true, &[0x21, 0x00]);
        }
        let header = write_tracks(&h264_aac(ASC));
        let parsed = parse(&header, [&chunk[..]], 1_000, 400).unwrap();
        let durations: Vec<u32> = parsed.samples[1].iter().map(|s| s.duration).collect();
        // 300 ms is tick 13230; the units before it sum to 4 × 1024 = 4096.
        assert_eq!(durations, [1024, 1024, 1024, 1024, 13_230 - 4096, 1, 1024]);
        assert_eq!(parsed.samples[1][0].time_ms, 1_000);
    }

    #[test]
    fn aac_durations_survive_hostile_times() {
        let t = Track { number: 2, codec: Codec::Aac(AacConfig::parse(ASC).unwrap()) };
        assert!(aac_durations(&[], &t, 1024).is_empty());
        let d = aac_durations(&[i64::MAX, i64::MIN, 0, i64::MAX, -1], &t, 1024);
        assert_eq!(d.len(), 5);
        assert!(d.iter().all(|&x| x >= 1));
    }

    /// A video track with `codec_id` and `codec_private` (and `PixelWidth`/`PixelHeight`).
    fn video_entry(codec_id: &str, codec_private: &[u8], size: Option<(u32, u32)>) -> TrackEntry {
        TrackEntry {
            number: 1,
            uid: 1,
            track_type: TrackType::Video,
            codec_id: codec_id.into(),
            codec_private: codec_private.to_vec(),
            name: None,
            default_duration_ns: None,
            codec_delay_ns: 0,
            seek_pre_roll_ns: 0,
            video: size.map(|(width, height)| crate::mkv::VideoSettings { width, height }),
            audio: None,
        }
    }

    /// An hvcC record (Main, level 3.1) whose SPS is too short to give the picture size.
    const HVCC: &[u8] = &[
        1, 0x01, 0x60, 0, 0, 0, 0xb0, 0, 0, 0, 0, 0, 93, 0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0, 0x0f, 1, 0xa1, 0, 1, 0,
        2, 0x42, 0x01,
    ];

    #[test]
    fn h265_is_a_playable_layout_under_both_codec_ids() {
        for id in CODEC_HEVC {
            let tracks = layout(&[video_entry(id, HVCC, Some((1280, 720))), aac_entry(2, ASC)]).unwrap();
            let Codec::Hevc(c) = &tracks[0].codec else { panic!("H.265 on track 1: {tracks:?}") };
            assert_eq!((c.width, c.height), (1280, 720), "the Matroska size when the SPS gives none");
            assert_eq!(tracks[0].timescale(), 90_000);
            assert_eq!(tracks[0].codec_string(), "hvc1.1.6.L93.B0");
            assert!(!tracks[0].codec.is_audio());
        }
        let tracks = layout(&[video_entry(CODEC_HEVC[0], HVCC, None)]).unwrap();
        assert_eq!(tracks[0].codec_string(), "hvc1.1.6.L93.B0");
        assert_eq!(layout(&[video_entry(CODEC_HEVC[0], &[], None)]), Err(SourceError::MissingCodecPrivate(1)));
        assert!(matches!(
            layout(&[video_entry(CODEC_HEVC[0], &HVCC[..20], None)]),
            Err(SourceError::InvalidCodecPrivate { track: 1, .. })
        ));
    }

    #[test]
    fn h265_keyframes_and_durations_are_as_for_h264() {
        let mut chunk = Vec::new();
        for (t, key) in [(0i16, true), (33, false), (66, false)] {
            write_simple_block(&mut chunk, 1, t, key, &[0, 0, 0, 3, 0x26, 0x01, 0xaf]);
        }
        let header = write_tracks(&[video_entry(CODEC_HEVC[0], HVCC, Some((320, 240)))]);
        let parsed = parse(&header, [&chunk[..]], 5_000, 100).unwrap();
        let keys: Vec<bool> = parsed.samples[0].iter().map(|s| s.keyframe).collect();
        assert_eq!(keys, [true, false, false]);
        let durations: Vec<u32> = parsed.samples[0].iter().map(|s| s.duration).collect();
        assert_eq!(durations, [2970, 2970, 3060]);
    }
}
