//! AAC: the MPEG-4 `AudioSpecificConfig` (ISO/IEC 14496-3 §1.6.2.1) and ADTS headers
//! (§1.A.2.2).
//!
//! KVS producers (the producer SDK's `kvssink`) store AAC as Matroska `A_AAC` with the
//! `AudioSpecificConfig` as `CodecPrivate` and raw access units (no ADTS) as frames. Players
//! need that config three ways: passed through whole in an MP4 `esds` box, as the RFC 6381
//! codec string `mp4a.40.<object type>`, and rebuilt as a 7-byte ADTS header before every
//! access unit in MPEG-TS. [`AacConfig::parse`] reads just enough of it for those jobs and
//! refuses what reel cannot package; it never panics, whatever the bytes.
//!
//! Accepted: the general-audio object types AAC Main, LC, SSR and LTP (1–4), also wrapped in
//! explicit HE-AAC signalling (object type 5, SBR, or 29, PS, around a core of 1–4); a
//! standard or explicit 24-bit sampling frequency; channel configurations 1–7; frames of 1024
//! or 960 samples. Refused: other object types (ER, scalable, USAC…), channel configuration
//! 0 (a program config element), reserved values. Bytes after the `GASpecificConfig` (such as
//! the backward-compatible SBR sync extension ffmpeg writes) are kept for the decoder but not
//! read: the core rate they leave in place times every access unit correctly.

use crate::bits::{BitReader, BitsError};

/// The sampling frequencies of `samplingFrequencyIndex` 0–12 (13 and 14 are reserved, 15
/// means an explicit 24-bit frequency follows).
pub const FREQUENCIES: [u32; 13] =
    [96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000, 7_350];

/// Highest sampling frequency accepted (the highest standard one): an explicit frequency
/// can say up to 16.7 MHz, which no AAC encoder produces and which would overflow the
/// media timescale arithmetic of epoch-based decode times.
pub const MAX_FREQUENCY: u32 = 96_000;

/// Samples per access unit with `frameLengthFlag` 0 (the usual AAC frame).
pub const FRAME_SAMPLES: u32 = 1024;
/// Samples per access unit with `frameLengthFlag` 1 (the 960-sample variant, e.g. DAB+).
pub const SHORT_FRAME_SAMPLES: u32 = 960;
/// Length of an ADTS header without CRC (`protection_absent` = 1).
pub const ADTS_HEADER_LEN: usize = 7;
/// Largest ADTS frame (the 13-bit `aac_frame_length`, header included).
pub const MAX_ADTS_FRAME: usize = (1 << 13) - 1;
/// Longest `AudioSpecificConfig` accepted. Real ones are 2–7 bytes (a few dozen with
/// extensions); the bound keeps the `esds` descriptor sizes small.
pub const MAX_CONFIG_LEN: usize = 1024;

/// Object type of SBR (explicit HE-AAC signalling).
const AOT_SBR: u8 = 5;
/// Object type of parametric stereo (explicit HE-AAC v2 signalling).
const AOT_PS: u8 = 29;
/// The escape value of the 5-bit `audioObjectType` (6 more bits follow).
const AOT_ESCAPE: u8 = 31;
/// The `samplingFrequencyIndex` that announces an explicit 24-bit frequency.
const EXPLICIT_FREQUENCY: u8 = 0xf;

/// Why an `AudioSpecificConfig` was rejected: malformed ([`AacError::is_malformed`]) or
/// well-formed but not something reel can package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AacError {
    /// The config ended before a field did.
    #[error("AudioSpecificConfig truncated")]
    Truncated,
    /// The config is longer than [`MAX_CONFIG_LEN`].
    #[error("AudioSpecificConfig of {0} bytes is too long")]
    TooLong(usize),
    /// `samplingFrequencyIndex` 13 or 14, which the standard reserves.
    #[error("reserved AAC sampling frequency index {0}")]
    ReservedFrequencyIndex(u8),
    /// An explicit sampling frequency of 0 Hz.
    #[error("AAC sampling frequency of 0 Hz")]
    ZeroFrequency,
    /// An explicit sampling frequency above [`MAX_FREQUENCY`].
    #[error("AAC sampling frequency {0} Hz is above 96 kHz")]
    UnsupportedFrequency(u32),
    /// An audio object type other than AAC Main/LC/SSR/LTP (plain or under SBR/PS).
    #[error("unsupported AAC audio object type {0} (reel packages AAC Main, LC, SSR and LTP, also as HE-AAC)")]
    UnsupportedObjectType(u8),
    /// Channel configuration 0 (channels in a program config element) or a reserved one.
    #[error("unsupported AAC channel configuration {0} (reel packages configurations 1 to 7)")]
    UnsupportedChannelConfiguration(u8),
}

impl AacError {
    /// Whether the config is malformed (as opposed to valid but unsupported).
    pub fn is_malformed(&self) -> bool {
        matches!(self, Self::Truncated | Self::TooLong(_) | Self::ReservedFrequencyIndex(_) | Self::ZeroFrequency)
    }
}

impl From<BitsError> for AacError {
    fn from(_: BitsError) -> Self {
        Self::Truncated
    }
}

/// Why AAC cannot be carried in ADTS (MPEG-TS stream type 0x0F).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdtsError {
    /// ADTS' 2-bit profile names only object types 1–4; explicit HE-AAC has no ADTS form.
    #[error("AAC object type {0} has no ADTS form (only object types 1 to 4 do)")]
    ObjectType(u8),
    /// ADTS names the rate by index only, and this rate has none.
    #[error("AAC sampling frequency {0} Hz has no ADTS frequency index")]
    Frequency(u32),
    /// ADTS frames always hold 1024 samples.
    #[error("960-sample AAC frames have no ADTS form")]
    ShortFrames,
    /// The access unit is longer than the 13-bit ADTS frame length allows.
    #[error("AAC access unit of {0} bytes is too long for an ADTS frame")]
    FrameTooLong(usize),
}

/// What reel reads of an `AudioSpecificConfig`, plus the config bytes themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacConfig {
    /// The object type signalled first, which names the codec (`mp4a.40.<this>`): 1–4, or 5
    /// (SBR) / 29 (PS) for explicitly signalled HE-AAC.
    pub object_type: u8,
    /// The AAC core's object type (1–4); equal to `object_type` unless HE-AAC.
    pub core_object_type: u8,
    /// The core sampling frequency in Hz: the rate of the samples each access unit codes.
    pub sample_rate: u32,
    /// The SBR output frequency of explicit HE-AAC, in Hz.
    pub sbr_sample_rate: Option<u32>,
    /// `channelConfiguration`, 1–7.
    pub channel_configuration: u8,
    /// Samples (at [`Self::sample_rate`]) per access unit: 1024 or 960.
    pub frame_length: u32,
    /// The `AudioSpecificConfig` as stored, the decoder-specific info of the MP4 `esds`.
    pub config: Vec<u8>,
}

/// `GetAudioObjectType()`: 5 bits, or 32 + 6 more bits after the escape value 31.
fn object_type(r: &mut BitReader<'_>) -> Result<u8, AacError> {
    let aot = r.bits(5)? as u8;
    if aot == AOT_ESCAPE { Ok(32 + r.bits(6)? as u8) } else { Ok(aot) }
}

/// `samplingFrequencyIndex` and, for index 15, the explicit 24-bit frequency.
fn frequency(r: &mut BitReader<'_>) -> Result<u32, AacError> {
    let index = r.bits(4)? as u8;
    let hz = match index {
        EXPLICIT_FREQUENCY => r.bits(24)?,
        i => *FREQUENCIES.get(usize::from(i)).ok_or(AacError::ReservedFrequencyIndex(i))?,
    };
    match hz {
        0 => Err(AacError::ZeroFrequency),
        hz if hz > MAX_FREQUENCY => Err(AacError::UnsupportedFrequency(hz)),
        hz => Ok(hz),
    }
}

impl AacConfig {
    /// Parses an `AudioSpecificConfig` (the `A_AAC` Matroska `CodecPrivate`).
    pub fn parse(data: &[u8]) -> Result<Self, AacError> {
        if data.len() > MAX_CONFIG_LEN {
            return Err(AacError::TooLong(data.len()));
        }
        let mut r = BitReader::new(data);
        let first = object_type(&mut r)?;
        let sample_rate = frequency(&mut r)?;
        let channel_configuration = r.bits(4)? as u8;
        let (core, sbr_sample_rate) = if matches!(first, AOT_SBR | AOT_PS) {
            // Explicit hierarchical signalling: the SBR output rate, then the core object type;
            // the first frequency was the core's.
            let sbr = frequency(&mut r)?;
            (object_type(&mut r)?, Some(sbr))
        } else {
            (first, None)
        };
        if !(1..=4).contains(&core) {
            return Err(AacError::UnsupportedObjectType(core));
        }
        if !(1..=7).contains(&channel_configuration) {
            return Err(AacError::UnsupportedChannelConfiguration(channel_configuration));
        }
        // GASpecificConfig (§4.4.1): frameLengthFlag, dependsOnCoreCoder (+ coreCoderDelay),
        // extensionFlag (0 for object types 1–4, nothing follows it for them).
        let frame_length = if r.bit()? { SHORT_FRAME_SAMPLES } else { FRAME_SAMPLES };
        if r.bit()? {
            r.bits(14)?;
        }
        r.bit()?;
        Ok(Self {
            object_type: first,
            core_object_type: core,
            sample_rate,
            sbr_sample_rate,
            channel_configuration,
            frame_length,
            config: data.to_vec(),
        })
    }

    /// Output channels: channel configurations 1–6 are that many channels, 7 is 7.1 (8);
    /// parametric stereo turns mono into stereo.
    pub fn channels(&self) -> u16 {
        match self.channel_configuration {
            7 => 8,
            1 if self.object_type == AOT_PS => 2,
            c => u16::from(c),
        }
    }

    /// The decoder's output sampling frequency: the SBR rate for HE-AAC, else the core rate.
    pub fn output_sample_rate(&self) -> u32 {
        self.sbr_sample_rate.unwrap_or(self.sample_rate)
    }

    /// RFC 6381 codec string: `mp4a.40.` and the object type (`mp4a.40.2` for AAC LC).
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// The standard `samplingFrequencyIndex` of the core rate, if it has one (an explicitly
    /// coded 44100 Hz does).
    pub fn frequency_index(&self) -> Option<u8> {
        FREQUENCIES.iter().position(|&f| f == self.sample_rate).and_then(|i| u8::try_from(i).ok())
    }

    /// Whether this AAC can be carried in ADTS, and the frequency index it would use: object
    /// types 1–4 without SBR/PS signalling, 1024-sample frames, a standard frequency.
    pub fn adts_frequency_index(&self) -> Result<u8, AdtsError> {
        if self.object_type != self.core_object_type || !(1..=4).contains(&self.object_type) {
            return Err(AdtsError::ObjectType(self.object_type));
        }
        if self.frame_length != FRAME_SAMPLES {
            return Err(AdtsError::ShortFrames);
        }
        self.frequency_index().ok_or(AdtsError::Frequency(self.sample_rate))
    }

    /// The 7-byte ADTS header (MPEG-4, no CRC, VBR fullness) of one raw access unit of
    /// `payload_len` bytes.
    pub fn adts_header(&self, payload_len: usize) -> Result<[u8; ADTS_HEADER_LEN], AdtsError> {
        let index = self.adts_frequency_index()?;
        let len = payload_len + ADTS_HEADER_LEN;
        if len > MAX_ADTS_FRAME {
            return Err(AdtsError::FrameTooLong(payload_len));
        }
        let profile = self.object_type - 1;
        let channels = self.channel_configuration & 0x7;
        let len = len as u16;
        Ok([
            0xff,
            0xf1, // syncword end, ID 0 (MPEG-4), layer 0, protection_absent 1
            (profile << 6) | (index << 2) | (channels >> 2),
            ((channels & 0x3) << 6) | ((len >> 11) as u8 & 0x3),
            (len >> 3) as u8,
            (((len & 0x7) as u8) << 5) | 0x1f, // buffer fullness 0x7FF (VBR), high 5 bits
            0xfc,                              // fullness low 6 bits, one raw data block
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lc_stereo_44100_as_ffmpeg_writes_it() {
        // ffmpeg's encoder: AAC LC, index 4, stereo, then the SBR sync extension (0x2b7,
        // object type 5, sbrPresentFlag 0), which is kept but not read.
        let asc = [0x12, 0x10, 0x56, 0xe5, 0x00];
        let c = AacConfig::parse(&asc).unwrap();
        assert_eq!((c.object_type, c.core_object_type), (2, 2));
        assert_eq!((c.sample_rate, c.output_sample_rate(), c.sbr_sample_rate), (44_100, 44_100, None));
        assert_eq!((c.channel_configuration, c.channels(), c.frame_length), (2, 2, 1024));
        assert_eq!(c.codec_string(), "mp4a.40.2");
        assert_eq!(c.config, asc);
        assert_eq!(c.frequency_index(), Some(4));
    }

    #[test]
    fn common_configs() {
        // LC 48 kHz mono; Main 8 kHz 5.1; LTP 22050 Hz 7.1.
        let c = AacConfig::parse(&[0x11, 0x88]).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels()), (2, 48_000, 1));
        let c = AacConfig::parse(&[0x0d, 0xb0]).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels()), (1, 8_000, 6));
        let c = AacConfig::parse(&[0x23, 0xb8]).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels(), c.codec_string()), (4, 22_050, 8, "mp4a.40.4".into()));
    }

    #[test]
    fn explicit_frequency() {
        // LC, index 15 + 24-bit 44100 (0x00ac44), stereo, GASpecificConfig zeros.
        // 00010 1111 000000001010110001000100 0010 000 → 0x17 0x80 0x56 0x22 0x10 0x00
        let c = AacConfig::parse(&[0x17, 0x80, 0x56, 0x22, 0x10, 0x00]).unwrap();
        assert_eq!((c.sample_rate, c.channels(), c.frequency_index()), (44_100, 2, Some(4)));
        assert_eq!(c.adts_frequency_index(), Ok(4));
        // 12345 Hz has no index: fine for MP4, not for ADTS.
        // 00010 1111 000000000011000000111001 0001 000
        let c = AacConfig::parse(&[0x17, 0x80, 0x18, 0x1c, 0x88, 0x00]).unwrap();
        assert_eq!((c.sample_rate, c.channels()), (12_345, 1));
        assert_eq!(c.adts_header(10), Err(AdtsError::Frequency(12_345)));
        // Explicit 0 Hz; explicit 96001 Hz (0x017701) and 2^24 - 1 Hz.
        assert_eq!(AacConfig::parse(&[0x17, 0x80, 0x00, 0x00, 0x10, 0x00]), Err(AacError::ZeroFrequency));
        // 00010 1111 000000010111011100000001 0010 000
        assert_eq!(
            AacConfig::parse(&[0x17, 0x80, 0xbb, 0x80, 0x90, 0x00]),
            Err(AacError::UnsupportedFrequency(96_001))
        );
        assert_eq!(
            AacConfig::parse(&[0x17, 0xff, 0xff, 0xff, 0x90, 0x00]),
            Err(AacError::UnsupportedFrequency(0xff_ffff))
        );
        assert!(!AacError::UnsupportedFrequency(96_001).is_malformed());
    }

    #[test]
    fn escaped_object_types_are_read_and_refused() {
        // 31 then 6 bits 10 → object type 42 (USAC).
        // 11111 001010 0100 0010 … → 0xf9 0x48 0x40
        assert_eq!(AacConfig::parse(&[0xf9, 0x48, 0x40]), Err(AacError::UnsupportedObjectType(42)));
        // 31 then 0 → 32 (Layer-1).
        assert_eq!(AacConfig::parse(&[0xf8, 0x12, 0x00]), Err(AacError::UnsupportedObjectType(32)));
        // Escape with its 6 bits cut off.
        assert_eq!(AacConfig::parse(&[0xf8]), Err(AacError::Truncated));
        // Null object type 0, ER AAC LD 23.
        assert_eq!(AacConfig::parse(&[0x02, 0x10]), Err(AacError::UnsupportedObjectType(0)));
        assert_eq!(AacConfig::parse(&[0xba, 0x10]), Err(AacError::UnsupportedObjectType(23)));
    }

    #[test]
    fn explicit_he_aac() {
        // SBR (5), core 24 kHz (index 6), stereo, SBR 48 kHz (index 3), core LC (2), GA zeros.
        // 00101 0110 0010 0011 00010 000 → 0x2b 0x11 0x88 0x00 (+ padding)
        let c = AacConfig::parse(&[0x2b, 0x11, 0x88, 0x00]).unwrap();
        assert_eq!((c.object_type, c.core_object_type), (5, 2));
        assert_eq!((c.sample_rate, c.sbr_sample_rate, c.output_sample_rate()), (24_000, Some(48_000), 48_000));
        assert_eq!(c.codec_string(), "mp4a.40.5");
        assert_eq!(c.adts_header(100), Err(AdtsError::ObjectType(5)));
        // PS (29) over mono: stereo output.
        // 11101 0110 0001 0011 00010 000 → 0xeb 0x09 0x88 0x00
        let c = AacConfig::parse(&[0xeb, 0x09, 0x88, 0x00]).unwrap();
        assert_eq!((c.object_type, c.channels(), c.codec_string()), (29, 2, "mp4a.40.29".into()));
        // SBR around a core that is not AAC 1–4 (here 23) is refused by the core's type.
        // 00101 0110 0010 0011 10111 000
        assert_eq!(AacConfig::parse(&[0x2b, 0x11, 0xdc, 0x00]), Err(AacError::UnsupportedObjectType(23)));
    }

    #[test]
    fn refused_values() {
        // Reserved frequency index 13; channel configuration 0 (PCE) and 8.
        assert_eq!(AacConfig::parse(&[0x16, 0x90]), Err(AacError::ReservedFrequencyIndex(13)));
        assert_eq!(AacConfig::parse(&[0x12, 0x00]), Err(AacError::UnsupportedChannelConfiguration(0)));
        assert_eq!(AacConfig::parse(&[0x12, 0x40]), Err(AacError::UnsupportedChannelConfiguration(8)));
        assert!(AacError::Truncated.is_malformed() && AacError::ZeroFrequency.is_malformed());
        assert!(!AacError::UnsupportedObjectType(42).is_malformed());
        assert!(!AacError::UnsupportedChannelConfiguration(0).is_malformed());
    }

    #[test]
    fn frame_length_flag() {
        // LC 48 kHz stereo with frameLengthFlag 1 and dependsOnCoreCoder 1 + 14-bit delay.
        // 00010 0011 0010 1 1 00000000000000 0 → 0x11 0x96 0x00 0x00
        let c = AacConfig::parse(&[0x11, 0x96, 0x00, 0x00]).unwrap();
        assert_eq!(c.frame_length, 960);
        assert_eq!(c.adts_header(10), Err(AdtsError::ShortFrames));
        // The core coder delay cut off.
        assert_eq!(AacConfig::parse(&[0x11, 0x96]), Err(AacError::Truncated));
    }

    #[test]
    fn adts_header_bytes() {
        let c = AacConfig::parse(&[0x12, 0x10]).unwrap();
        // LC (profile 1), index 4, stereo, frame length 7 + 371 = 378 (0x17a).
        assert_eq!(c.adts_header(371).unwrap(), [0xff, 0xf1, 0x50, 0x80, 0x2f, 0x5f, 0xfc]);
        // Field by field, as ISO/IEC 14496-3 Table 1.A.5 and 1.A.6 lay them out.
        let h = c.adts_header(371).unwrap();
        let bits = u64::from_be_bytes([0, h[0], h[1], h[2], h[3], h[4], h[5], h[6]]);
        let field = |shift: u32, width: u32| (bits >> shift) & ((1 << width) - 1);
        assert_eq!(field(44, 12), 0xfff, "syncword");
        assert_eq!(field(43, 1), 0, "MPEG-4");
        assert_eq!(field(40, 1), 1, "no CRC");
        assert_eq!(field(38, 2), 1, "profile LC");
        assert_eq!(field(34, 4), 4, "44.1 kHz");
        assert_eq!(field(30, 3), 2, "stereo");
        assert_eq!(field(13, 13), 378, "frame length");
        assert_eq!(field(2, 11), 0x7ff, "VBR");
        assert_eq!(field(0, 2), 0, "one raw data block");
        // 7.1 (configuration 7) splits its three bits over two bytes; Main 96 kHz.
        let c = AacConfig::parse(&[0x08, 0x38]).unwrap();
        assert_eq!(c.adts_header(0).unwrap()[2..4], [0x01, 0xc0]);
        assert_eq!(c.adts_header(MAX_ADTS_FRAME - ADTS_HEADER_LEN).map(|h| h[3] & 3), Ok(3));
        assert_eq!(c.adts_header(MAX_ADTS_FRAME), Err(AdtsError::FrameTooLong(MAX_ADTS_FRAME)));
    }

    #[test]
    fn truncated_and_garbage_configs_never_panic() {
        let good = [0x12, 0x10, 0x56, 0xe5, 0x00];
        for cut in 0..2 {
            assert_eq!(AacConfig::parse(&good[..cut]), Err(AacError::Truncated), "cut at {cut}");
        }
        let mut long = good.to_vec();
        long.resize(MAX_CONFIG_LEN, 0);
        assert!(AacConfig::parse(&long).is_ok(), "trailing bytes are the decoder's business");
        long.push(0);
        assert_eq!(AacConfig::parse(&long), Err(AacError::TooLong(MAX_CONFIG_LEN + 1)));
        // Every 1- and 2-byte input, and pseudo-random longer ones: an answer, never a panic,
        // and every accepted config is self-consistent.
        let check = |data: &[u8]| {
            if let Ok(c) = AacConfig::parse(data) {
                assert!((1..=4).contains(&c.core_object_type));
                assert!((1..=7).contains(&c.channel_configuration));
                assert!(c.sample_rate > 0 && c.output_sample_rate() <= MAX_FREQUENCY && c.channels() > 0);
                assert!(matches!(c.frame_length, 960 | 1024));
                assert!(c.codec_string().starts_with("mp4a.40."));
                if let Ok(h) = c.adts_header(data.len()) {
                    assert_eq!(h[0], 0xff);
                }
            }
        };
        for a in 0..=255u8 {
            check(&[a]);
            for b in 0..=255u8 {
                check(&[a, b]);
            }
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..2000usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let data: Vec<u8> = (0..len % 12).map(|i| (x >> (i * 5)) as u8).collect();
            check(&data);
        }
    }
}
