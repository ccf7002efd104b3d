//! Stored fragments as players need them: the supported track layout (H.264 video on track
//! 1, optional Opus audio on track 2) and per-track samples with decode times and durations.
//!
//! Sans-IO: works on a stored fragment's bytes (its `Tracks` header and chunks of
//! SimpleBlocks) already read from the store.

use crate::h264::AvcConfig;
use crate::mkv::{self, TrackEntry, TrackType};
use crate::opus::{OpusHead, PacketInfo};

/// Matroska codec id of H.264 as KVS producers write it (and the doc's misspelling).
const CODEC_AVC: [&str; 2] = ["V_MPEG4/ISO/AVC", "V_MPEG/ISO/AVC"];
/// Matroska codec id of Opus.
const CODEC_OPUS: &str = "A_OPUS";
/// Video frame duration used when a fragment has a single video frame (30 fps).
const FALLBACK_VIDEO_MS: i64 = 33;

/// Why stored media cannot be served to a player (mapped to the modeled KVS errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Track 1 is not H.264 or a track uses a codec we cannot package.
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
    /// Opus with its identification header.
    Opus(OpusHead),
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
    /// Media timescale in ticks per second (90 kHz video, 48 kHz Opus).
    pub fn timescale(&self) -> u32 {
        match self.codec {
            Codec::Avc(_) => 90_000,
            Codec::Opus(_) => 48_000,
        }
    }

    /// RFC 6381 codec string (`avc1.42e01f`, `opus`).
    pub fn codec_string(&self) -> String {
        match &self.codec {
            Codec::Avc(c) => c.codec_string(),
            Codec::Opus(_) => "opus".into(),
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

/// Validates and converts parsed track entries: track 1 H.264 video, optional track 2 Opus.
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
            (TrackType::Audio, CODEC_OPUS) => {
                if e.codec_private.is_empty() {
                    return Err(SourceError::MissingCodecPrivate(e.number));
                }
                let head = OpusHead::parse(&e.codec_private)
                    .map_err(|err| SourceError::InvalidCodecPrivate { track: e.number, why: err.to_string() })?;
                out.push(Track { number: e.number, codec: Codec::Opus(head) });
            }
            (_, id) => return Err(SourceError::Unsupported(format!("track {} has codec {id}", e.number))),
        }
    }
    match out.first() {
        Some(Track { number: 1, codec: Codec::Avc(_) }) => Ok(out),
        _ => Err(SourceError::Unsupported("track 1 must be H.264 video (V_MPEG4/ISO/AVC)".into())),
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
    /// Sample bytes (length-prefixed NAL units / one Opus packet).
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
/// the same track, the Opus TOC, or the fragment's end.
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
        let mut out = Vec::with_capacity(frames.len());
        for (i, f) in frames.iter().enumerate() {
            let next = frames.get(i + 1).map(|n| n.timestamp_ms);
            let ticks = match (&t.codec, next) {
                (Codec::Opus(_), _) => {
                    PacketInfo::parse(f.data).map(|p| i64::from(p.duration_samples())).unwrap_or_else(|_| t.ticks(20))
                }
                (Codec::Avc(_), Some(n)) => t.ticks(n - f.timestamp_ms),
                (Codec::Avc(_), None) => {
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
