//! Track descriptions (`TrackEntry`) and the `Tracks` element that is a fragment's header.

use super::ebml::{self, write_bytes, write_float, write_master, write_str, write_uint};
use super::{CODEC_H264, CODEC_OPUS, MkvError, id};
use crate::h264::AvcConfig;
use crate::opus::{self, OpusHead};

/// Matroska `TrackType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackType {
    /// 1: video.
    Video,
    /// 2: audio.
    Audio,
    /// Any other type (subtitles, metadata…), kept as coded.
    Other(u64),
}

impl TrackType {
    fn code(self) -> u64 {
        match self {
            Self::Video => 1,
            Self::Audio => 2,
            Self::Other(c) => c,
        }
    }

    fn from_code(c: u64) -> Self {
        match c {
            1 => Self::Video,
            2 => Self::Audio,
            c => Self::Other(c),
        }
    }
}

/// The `Video` settings of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoSettings {
    /// `PixelWidth`.
    pub width: u32,
    /// `PixelHeight`.
    pub height: u32,
}

/// The `Audio` settings of a track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioSettings {
    /// `SamplingFrequency` in Hz.
    pub sampling_frequency: f64,
    /// `Channels`.
    pub channels: u32,
    /// `BitDepth`, when given.
    pub bit_depth: Option<u32>,
}

/// One Matroska `TrackEntry`, as written by reel and as read back from any producer.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackEntry {
    /// `TrackNumber`, used by blocks to name their track.
    pub number: u64,
    /// `TrackUID`.
    pub uid: u64,
    /// `TrackType`.
    pub track_type: TrackType,
    /// `CodecID`, e.g. `V_MPEG4/ISO/AVC`.
    pub codec_id: String,
    /// `CodecPrivate` (avcC for H.264, OpusHead for Opus, AudioSpecificConfig for AAC).
    pub codec_private: Vec<u8>,
    /// `Name`, when given.
    pub name: Option<String>,
    /// `DefaultDuration` in ns, when given.
    pub default_duration_ns: Option<u64>,
    /// `CodecDelay` in ns (0 when absent).
    pub codec_delay_ns: u64,
    /// `SeekPreRoll` in ns (0 when absent).
    pub seek_pre_roll_ns: u64,
    /// Picture size for video tracks.
    pub video: Option<VideoSettings>,
    /// Sample format for audio tracks.
    pub audio: Option<AudioSettings>,
}

impl TrackEntry {
    /// An H.264 video track whose codec private is the avcC record of `config`.
    pub fn h264(number: u64, config: &AvcConfig) -> Self {
        Self {
            number,
            uid: number,
            track_type: TrackType::Video,
            codec_id: CODEC_H264.to_owned(),
            codec_private: config.to_bytes(),
            name: Some("video".to_owned()),
            default_duration_ns: None,
            codec_delay_ns: 0,
            seek_pre_roll_ns: 0,
            video: Some(VideoSettings { width: config.width(), height: config.height() }),
            audio: None,
        }
    }

    /// An Opus audio track at 48 kHz with `head` as codec private.
    pub fn opus(number: u64, head: &OpusHead) -> Self {
        Self {
            number,
            uid: number,
            track_type: TrackType::Audio,
            codec_id: CODEC_OPUS.to_owned(),
            codec_private: head.to_bytes().to_vec(),
            name: Some("audio".to_owned()),
            default_duration_ns: None,
            codec_delay_ns: head.codec_delay_ns(),
            seek_pre_roll_ns: opus::SEEK_PRE_ROLL_NS,
            video: None,
            audio: Some(AudioSettings {
                sampling_frequency: f64::from(opus::SAMPLE_RATE),
                channels: u32::from(head.channels),
                bit_depth: None,
            }),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        write_master(out, id::TRACK_ENTRY, |o| {
            write_uint(o, id::TRACK_NUMBER, self.number);
            write_uint(o, id::TRACK_UID, self.uid);
            write_uint(o, id::TRACK_TYPE, self.track_type.code());
            write_uint(o, id::FLAG_LACING, 0);
            if let Some(name) = &self.name {
                write_str(o, id::NAME, name);
            }
            write_str(o, id::CODEC_ID, &self.codec_id);
            if !self.codec_private.is_empty() {
                write_bytes(o, id::CODEC_PRIVATE, &self.codec_private);
            }
            if let Some(d) = self.default_duration_ns {
                write_uint(o, id::DEFAULT_DURATION, d);
            }
            if self.codec_delay_ns > 0 {
                write_uint(o, id::CODEC_DELAY, self.codec_delay_ns);
            }
            if self.seek_pre_roll_ns > 0 {
                write_uint(o, id::SEEK_PRE_ROLL, self.seek_pre_roll_ns);
            }
            if let Some(v) = self.video {
                write_master(o, id::VIDEO, |o| {
                    write_uint(o, id::PIXEL_WIDTH, v.width.into());
                    write_uint(o, id::PIXEL_HEIGHT, v.height.into());
                });
            }
            if let Some(a) = self.audio {
                write_master(o, id::AUDIO, |o| {
                    write_float(o, id::SAMPLING_FREQUENCY, a.sampling_frequency);
                    write_uint(o, id::CHANNELS, a.channels.into());
                    if let Some(b) = a.bit_depth {
                        write_uint(o, id::BIT_DEPTH, b.into());
                    }
                });
            }
        });
    }

    /// A track with only its number, type and codec id set (the rest empty or absent).
    pub fn bare(number: u64, track_type: TrackType, codec_id: &str) -> Self {
        Self {
            number,
            uid: number,
            track_type,
            codec_id: codec_id.to_owned(),
            codec_private: Vec::new(),
            name: None,
            default_duration_ns: None,
            codec_delay_ns: 0,
            seek_pre_roll_ns: 0,
            video: None,
            audio: None,
        }
    }

    /// Parses the payload of a `TrackEntry` element.
    pub(super) fn parse(payload: &[u8]) -> Result<Self, MkvError> {
        let mut t = Self::bare(0, TrackType::Other(0), "");
        for child in ebml::children(payload) {
            let (cid, v) = child?;
            match cid {
                id::TRACK_NUMBER => t.number = ebml::read_uint(v)?,
                id::TRACK_UID => t.uid = ebml::read_uint(v)?,
                id::TRACK_TYPE => t.track_type = TrackType::from_code(ebml::read_uint(v)?),
                id::NAME => t.name = Some(ebml::read_str(v)?),
                id::CODEC_ID => t.codec_id = ebml::read_str(v)?,
                id::CODEC_PRIVATE => t.codec_private = v.to_vec(),
                id::DEFAULT_DURATION => t.default_duration_ns = Some(ebml::read_uint(v)?),
                id::CODEC_DELAY => t.codec_delay_ns = ebml::read_uint(v)?,
                id::SEEK_PRE_ROLL => t.seek_pre_roll_ns = ebml::read_uint(v)?,
                id::VIDEO => {
                    let mut s = VideoSettings { width: 0, height: 0 };
                    for c in ebml::children(v) {
                        let (cid, v) = c?;
                        let n = || -> Result<u32, MkvError> {
                            u32::try_from(ebml::read_uint(v)?).map_err(|_| MkvError::BadValue("pixel size too large"))
                        };
                        match cid {
                            id::PIXEL_WIDTH => s.width = n()?,
                            id::PIXEL_HEIGHT => s.height = n()?,
                            _ => {}
                        }
                    }
                    t.video = Some(s);
                }
                id::AUDIO => {
                    let mut s = AudioSettings { sampling_frequency: 8000.0, channels: 1, bit_depth: None };
                    for c in ebml::children(v) {
                        let (cid, v) = c?;
                        let n = || -> Result<u32, MkvError> {
                            u32::try_from(ebml::read_uint(v)?).map_err(|_| MkvError::BadValue("audio field too large"))
                        };
                        match cid {
                            id::SAMPLING_FREQUENCY => s.sampling_frequency = ebml::read_float(v)?,
                            id::CHANNELS => s.channels = n()?,
                            id::BIT_DEPTH => s.bit_depth = Some(n()?),
                            _ => {}
                        }
                    }
                    t.audio = Some(s);
                }
                _ => {}
            }
        }
        if t.number == 0 {
            return Err(MkvError::Missing("TrackNumber"));
        }
        if t.codec_id.is_empty() {
            return Err(MkvError::Missing("CodecID"));
        }
        Ok(t)
    }
}

/// Serializes a complete `Tracks` element: the header blob of a stored fragment.
pub fn write_tracks(tracks: &[TrackEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    write_master(&mut out, id::TRACKS, |o| {
        for t in tracks {
            t.write(o);
        }
    });
    out
}
