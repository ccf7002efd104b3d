//! Opus: the `OpusHead` codec private (RFC 7845 §5.1) and packet durations (RFC 6716 §3.1).
//!
//! WebRTC negotiates Opus as `48000/2`; packets carry no container framing, so the Matroska
//! `A_OPUS` track needs an `OpusHead` as `CodecPrivate`, a `CodecDelay` equal to the pre-skip
//! and a `SeekPreRoll` of 80 ms (the Matroska Opus mapping). Packet durations come from the
//! TOC byte; the fragmenter uses them for fragment ends and DTX gaps.

/// Opus always runs at 48 kHz internally; RTP timestamps and pre-skip count in these samples.
pub const SAMPLE_RATE: u32 = 48_000;

/// Encoder delay libopus adds at 48 kHz (its lookahead), in samples: the usual `pre_skip`.
pub const DEFAULT_PRE_SKIP: u16 = 312;

/// Decoder pre-roll after a seek recommended for Opus in Matroska (`SeekPreRoll`), in ns.
pub const SEEK_PRE_ROLL_NS: u64 = 80_000_000;

/// Longest legal Opus packet, in 48 kHz samples (120 ms).
pub const MAX_PACKET_SAMPLES: u32 = 5_760;

/// Why Opus data was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpusError {
    /// The packet has no TOC byte.
    #[error("empty Opus packet")]
    Empty,
    /// A code-3 packet lacks its frame-count byte, or declares zero frames.
    #[error("invalid Opus frame count")]
    BadFrameCount,
    /// The packet would last longer than 120 ms.
    #[error("Opus packet longer than 120 ms")]
    TooLong,
    /// An `OpusHead` is malformed or uses an unsupported channel mapping.
    #[error("invalid OpusHead: {0}")]
    BadHead(&'static str),
}

/// Identification header of an Opus stream (RFC 7845 §5.1), channel mapping family 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusHead {
    /// Output channels: 1 or 2.
    pub channels: u8,
    /// Samples (at 48 kHz) to discard from the decoder output at the start.
    pub pre_skip: u16,
    /// Sample rate of the original input, informational only.
    pub input_sample_rate: u32,
    /// Output gain in Q7.8 dB.
    pub output_gain: i16,
}

impl Default for OpusHead {
    /// What WebRTC negotiates: 48 kHz stereo, libopus' usual pre-skip.
    fn default() -> Self {
        Self { channels: 2, pre_skip: DEFAULT_PRE_SKIP, input_sample_rate: SAMPLE_RATE, output_gain: 0 }
    }
}

impl OpusHead {
    /// Serialized length with channel mapping family 0.
    pub const LEN: usize = 19;

    /// Serializes the 19-byte header (`OpusHead`, version 1, little-endian fields, family 0).
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..8].copy_from_slice(b"OpusHead");
        out[8] = 1;
        out[9] = self.channels;
        out[10..12].copy_from_slice(&self.pre_skip.to_le_bytes());
        out[12..16].copy_from_slice(&self.input_sample_rate.to_le_bytes());
        out[16..18].copy_from_slice(&self.output_gain.to_le_bytes());
        out[18] = 0;
        out
    }

    /// Parses an `OpusHead` with channel mapping family 0 (mono/stereo).
    pub fn parse(data: &[u8]) -> Result<Self, OpusError> {
        let head: &[u8; Self::LEN] =
            data.get(..Self::LEN).and_then(|d| d.try_into().ok()).ok_or(OpusError::BadHead("shorter than 19 bytes"))?;
        if &head[..8] != b"OpusHead" {
            return Err(OpusError::BadHead("missing OpusHead magic"));
        }
        if head[8] >> 4 != 0 {
            return Err(OpusError::BadHead("unsupported major version"));
        }
        if head[18] != 0 {
            return Err(OpusError::BadHead("channel mapping family is not 0"));
        }
        let channels = head[9];
        if !matches!(channels, 1 | 2) {
            return Err(OpusError::BadHead("family 0 needs 1 or 2 channels"));
        }
        Ok(Self {
            channels,
            pre_skip: u16::from_le_bytes([head[10], head[11]]),
            input_sample_rate: u32::from_le_bytes([head[12], head[13], head[14], head[15]]),
            output_gain: i16::from_le_bytes([head[16], head[17]]),
        })
    }

    /// Matroska `CodecDelay`: the pre-skip in nanoseconds.
    pub fn codec_delay_ns(&self) -> u64 {
        u64::from(self.pre_skip) * 1_000_000_000 / u64::from(SAMPLE_RATE)
    }
}

/// What the TOC byte (and frame count byte) of an Opus packet say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// Configuration number 0–31 (mode, bandwidth and frame size).
    pub config: u8,
    /// Whether the packet codes stereo.
    pub stereo: bool,
    /// Frames in the packet.
    pub frames: u8,
    /// Samples per frame at 48 kHz (120 for 2.5 ms … 2880 for 60 ms).
    pub frame_samples: u32,
}

impl PacketInfo {
    /// Parses the TOC byte and, for code 3 packets, the frame count byte.
    pub fn parse(packet: &[u8]) -> Result<Self, OpusError> {
        let toc = *packet.first().ok_or(OpusError::Empty)?;
        let config = toc >> 3;
        let frame_samples = match config {
            // SILK-only: 10, 20, 40, 60 ms.
            0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
            // Hybrid: 10, 20 ms.
            12..=15 => [480, 960][usize::from(config % 2)],
            // CELT-only: 2.5, 5, 10, 20 ms.
            _ => [120, 240, 480, 960][usize::from(config % 4)],
        };
        let frames = match toc & 0x03 {
            0 => 1,
            1 | 2 => 2,
            _ => {
                let count = packet.get(1).ok_or(OpusError::BadFrameCount)? & 0x3f;
                if count == 0 {
                    return Err(OpusError::BadFrameCount);
                }
                count
            }
        };
        if u32::from(frames) * frame_samples > MAX_PACKET_SAMPLES {
            return Err(OpusError::TooLong);
        }
        Ok(Self { config, stereo: toc & 0x04 != 0, frames, frame_samples })
    }

    /// Packet duration in 48 kHz samples.
    pub fn duration_samples(&self) -> u32 {
        u32::from(self.frames) * self.frame_samples
    }

    /// Packet duration in microseconds.
    pub fn duration_us(&self) -> u64 {
        u64::from(self.duration_samples()) * 1_000_000 / u64::from(SAMPLE_RATE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_head_is_rfc7845_family_0() {
        let head = OpusHead::default();
        let bytes = head.to_bytes();
        assert_eq!(
            bytes,
            [b'O', b'p', b'u', b's', b'H', b'e', b'a', b'd', 1, 2, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0]
        );
        assert_eq!(OpusHead::parse(&bytes), Ok(head));
        assert_eq!(head.codec_delay_ns(), 6_500_000);
        let mut bad = bytes;
        bad[18] = 1;
        assert!(OpusHead::parse(&bad).is_err());
        bad[18] = 0;
        bad[9] = 3;
        assert!(OpusHead::parse(&bad).is_err());
        assert!(OpusHead::parse(&bytes[..18]).is_err());
    }

    #[test]
    fn toc_gives_durations() {
        // config 31 (CELT 20 ms), stereo, code 0 — what libopus sends for music at 20 ms.
        let p = PacketInfo::parse(&[0xfc, 1, 2]).unwrap();
        assert_eq!((p.config, p.stereo, p.frames, p.duration_us()), (31, true, 1, 20_000));
        // config 1 (SILK 20 ms) code 1: two frames, 40 ms.
        assert_eq!(PacketInfo::parse(&[0x09]).unwrap().duration_us(), 40_000);
        // config 16 (CELT 2.5 ms) code 3 with 3 frames: 7.5 ms.
        assert_eq!(PacketInfo::parse(&[0x83, 3]).unwrap().duration_samples(), 360);
        // config 3 (SILK 60 ms) code 3 with 3 frames: 180 ms is illegal.
        assert_eq!(PacketInfo::parse(&[0x1b, 3]), Err(OpusError::TooLong));
        assert_eq!(PacketInfo::parse(&[0x1b, 0]), Err(OpusError::BadFrameCount));
        assert_eq!(PacketInfo::parse(&[0x1b]), Err(OpusError::BadFrameCount));
        assert_eq!(PacketInfo::parse(&[]), Err(OpusError::Empty));
        // A DTX comfort packet is just a TOC byte: still a valid 20 ms packet.
        assert_eq!(PacketInfo::parse(&[0x08]).unwrap().duration_us(), 20_000);
    }
}
