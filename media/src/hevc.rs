//! H.265/HEVC: the `HEVCDecoderConfigurationRecord` (hvcC, ISO/IEC 14496-15 §8.3.3) that
//! KVS producers store as the Matroska `CodecPrivate` of `V_MPEGH/ISO/HEVC` tracks.
//!
//! Players need three things from it: the record whole (an MP4 `hvcC` box is its bytes
//! verbatim), the RFC 6381 codec string (`hvc1.1.6.L93.B0`, ISO/IEC 14496-15 Annex E) for
//! HLS `CODECS` and DASH `codecs`, and the picture size for the `hvc1` sample entry and
//! `tkhd`, read cheaply from the SPS (`pic_width_in_luma_samples`, right after
//! `profile_tier_level`). [`HevcConfig::parse`] never panics, whatever the bytes: a record
//! that ends early or says nonsense is a typed [`HevcError`]; an SPS it cannot read only
//! leaves the size at 0 (the caller may use the Matroska `PixelWidth`/`PixelHeight`).

use crate::bits::{BitReader, BitsError, rbsp};

/// Length of the fixed part of the record, before the NAL unit arrays.
const FIXED_LEN: usize = 23;
/// NAL unit type of a video parameter set.
pub const NAL_VPS: u8 = 32;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 33;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 34;
/// Largest picture dimension believed from an SPS (the level 6.2 limit is 16 888; larger is
/// nonsense and would not fit the 16-bit sample entry fields).
const MAX_DIMENSION: u32 = 16_888;

/// Why an hvcC record was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HevcError {
    /// The record ended before a field or NAL unit did.
    #[error("HEVCDecoderConfigurationRecord truncated")]
    Truncated,
    /// `configurationVersion` is not 1.
    #[error("unsupported hvcC configurationVersion {0}")]
    Version(u8),
    /// `lengthSizeMinusOne` is 2 (3-byte lengths are not allowed).
    #[error("invalid hvcC NAL length size {0}")]
    LengthSize(u8),
    /// The record carries no SPS: no decoder can start from it.
    #[error("hvcC has no sequence parameter set")]
    NoSps,
}

/// One NAL unit array of the record: its type and units (each with its 2-byte header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NalArray {
    /// `array_completeness`: all units of this type are here (none in the samples).
    pub complete: bool,
    /// `NAL_unit_type` (32 VPS, 33 SPS, 34 PPS, 39/40 SEI).
    pub nal_type: u8,
    /// The NAL units.
    pub units: Vec<Vec<u8>>,
}

/// A parsed hvcC record; the original bytes are kept for the MP4 `hvcC` box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HevcConfig {
    /// `configurationVersion` (always 1).
    pub version: u8,
    /// `general_profile_space` (0–3).
    pub profile_space: u8,
    /// `general_tier_flag` (false Main, true High).
    pub tier: bool,
    /// `general_profile_idc` (1 Main, 2 Main 10, 3 Main Still Picture, 4 RExt…).
    pub profile_idc: u8,
    /// `general_profile_compatibility_flags` (bit 31 is flag 0).
    pub compatibility_flags: u32,
    /// `general_constraint_indicator_flags`, the 48 bits as six bytes.
    pub constraint_flags: [u8; 6],
    /// `general_level_idc` (30 × the level: 93 is level 3.1).
    pub level_idc: u8,
    /// Bytes of each NAL unit length prefix in samples (1, 2 or 4).
    pub length_size: u8,
    /// The NAL unit arrays (VPS, SPS, PPS, SEI).
    pub arrays: Vec<NalArray>,
    /// Luma width from the first SPS (after the conformance window), 0 if unreadable.
    pub width: u32,
    /// Luma height from the first SPS (after the conformance window), 0 if unreadable.
    pub height: u32,
    /// The record as stored.
    bytes: Vec<u8>,
}

/// A byte cursor that fails with [`HevcError::Truncated`].
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HevcError> {
        if self.0.len() < n {
            return Err(HevcError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, HevcError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, HevcError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
}

impl HevcConfig {
    /// Parses an hvcC record. Fails on a truncated record, a version other than 1, a
    /// 3-byte length size or a record without SPS; the picture size is 0 when the SPS does
    /// not parse.
    pub fn parse(data: &[u8]) -> Result<Self, HevcError> {
        let mut r = Bytes(data);
        let fixed = r.take(FIXED_LEN)?;
        let version = fixed[0];
        if version != 1 {
            return Err(HevcError::Version(version));
        }
        let length_size = (fixed[21] & 0x03) + 1;
        if length_size == 3 {
            return Err(HevcError::LengthSize(length_size));
        }
        let mut constraint_flags = [0u8; 6];
        constraint_flags.copy_from_slice(&fixed[6..12]);
        let count = fixed[22];
        let mut arrays = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let head = r.u8()?;
            let n = r.u16()?;
            let mut units = Vec::new();
            for _ in 0..n {
                let len = usize::from(r.u16()?);
                units.push(r.take(len)?.to_vec());
            }
            arrays.push(NalArray { complete: head & 0x80 != 0, nal_type: head & 0x3f, units });
        }
        let sps = arrays.iter().filter(|a| a.nal_type == NAL_SPS).flat_map(|a| a.units.iter()).next();
        let Some(sps) = sps else { return Err(HevcError::NoSps) };
        let (width, height) = sps_size(sps).unwrap_or((0, 0));
        Ok(Self {
            version,
            profile_space: fixed[1] >> 6,
            tier: fixed[1] & 0x20 != 0,
            profile_idc: fixed[1] & 0x1f,
            compatibility_flags: u32::from_be_bytes([fixed[2], fixed[3], fixed[4], fixed[5]]),
            constraint_flags,
            level_idc: fixed[12],
            length_size,
            arrays,
            width,
            height,
            bytes: data.to_vec(),
        })
    }

    /// The record as stored (the body of an MP4 `hvcC` box).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The NAL units of type `nal_type` in the record.
    pub fn units(&self, nal_type: u8) -> impl Iterator<Item = &[u8]> + '_ {
        self.arrays.iter().filter(move |a| a.nal_type == nal_type).flat_map(|a| a.units.iter().map(Vec::as_slice))
    }

    /// RFC 6381 codec string for an `hvc1` sample entry (ISO/IEC 14496-15 Annex E):
    /// `hvc1.` + profile space letter (none, A, B, C) and profile idc, the compatibility
    /// flags bit-reversed in hex, `L` or `H` (tier) and the level idc, then the constraint
    /// bytes in hex with trailing zero bytes dropped. E.g. `hvc1.1.6.L93.B0`.
    pub fn codec_string(&self) -> String {
        let space = ["", "A", "B", "C"].get(usize::from(self.profile_space)).copied().unwrap_or("");
        let mut s = format!(
            "hvc1.{space}{}.{:X}.{}{}",
            self.profile_idc,
            self.compatibility_flags.reverse_bits(),
            if self.tier { 'H' } else { 'L' },
            self.level_idc
        );
        let used = self.constraint_flags.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        for b in &self.constraint_flags[..used] {
            s.push_str(&format!(".{b:X}"));
        }
        s
    }
}

/// Reads the cropped luma picture size of an SPS NAL unit (2-byte header included).
fn sps_size(nal: &[u8]) -> Result<(u32, u32), BitsError> {
    let data = rbsp(nal.get(2..).ok_or(BitsError::Truncated)?);
    let mut r = BitReader::new(&data);
    r.bits(4)?; // sps_video_parameter_set_id
    let sub_layers = r.bits(3)?; // sps_max_sub_layers_minus1
    r.bit()?; // sps_temporal_id_nesting_flag
    // profile_tier_level(1, sps_max_sub_layers_minus1), ITU-T H.265 §7.3.3.
    r.skip(96)?;
    let mut present = Vec::with_capacity(sub_layers as usize);
    for _ in 0..sub_layers {
        present.push((r.bit()?, r.bit()?));
    }
    if sub_layers > 0 {
        r.skip(2 * (8 - sub_layers as usize))?;
    }
    for (profile, level) in present {
        if profile {
            r.skip(88)?;
        }
        if level {
            r.skip(8)?;
        }
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma = r.ue()?;
    if chroma == 3 {
        r.bit()?; // separate_colour_plane_flag
    }
    let width = r.ue()?;
    let height = r.ue()?;
    let (mut w, mut h) = (width, height);
    if r.bit()? {
        // conformance_window_flag: offsets in chroma units (§7.4.3.2.1, Table 6-1).
        let (sub_w, sub_h) = match chroma {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        let cut_w = left.saturating_add(right).saturating_mul(sub_w);
        let cut_h = top.saturating_add(bottom).saturating_mul(sub_h);
        w = width.saturating_sub(cut_w);
        h = height.saturating_sub(cut_h);
    }
    if w > MAX_DIMENSION || h > MAX_DIMENSION {
        return Ok((0, 0));
    }
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record with one array per (type, unit) and the given fixed fields.
    fn record(profile_byte: u8, compat: u32, constraints: [u8; 6], level: u8, nals: &[(u8, &[u8])]) -> Vec<u8> {
        let mut v = vec![1, profile_byte];
        v.extend_from_slice(&compat.to_be_bytes());
        v.extend_from_slice(&constraints);
        v.push(level);
        v.extend_from_slice(&[0xf0, 0x00, 0xfc, 0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f]);
        v.push(nals.len() as u8);
        for (t, nal) in nals {
            v.push(0x80 | t);
            v.extend_from_slice(&1u16.to_be_bytes());
            v.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            v.extend_from_slice(nal);
        }
        v
    }

    /// The hvcC of `fixtures/ffmpeg-h265.mkv` (libx265, Main, level 2, 320×240).
    fn fixture_hvcc() -> Vec<u8> {
        let data = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/ffmpeg-h265.mkv")).unwrap();
        let doc = crate::mkv::parse_document(&data).unwrap();
        assert_eq!(doc.tracks[0].codec_id, "V_MPEGH/ISO/HEVC");
        doc.tracks[0].codec_private.clone()
    }

    #[test]
    fn the_fixture_record_parses_as_ffprobe_reads_it() {
        let bytes = fixture_hvcc();
        let c = HevcConfig::parse(&bytes).unwrap();
        // ffprobe: profile Main, level 60, 320x240. By hand: Main (profile_idc 1) sets
        // compatibility flags 1 and 2 (0x6000_0000, reversed 0x6); x265 marks the stream
        // progressive, non-packed, frame-only (constraint byte 0xB0); level 2 is idc 60.
        assert_eq!((c.version, c.profile_space, c.tier, c.profile_idc, c.level_idc), (1, 0, false, 1, 60));
        assert_eq!(c.length_size, 4);
        assert_eq!((c.width, c.height), (320, 240));
        assert_eq!(c.codec_string(), "hvc1.1.6.L60.90");
        assert_eq!(c.as_bytes(), &bytes[..]);
        for t in [NAL_VPS, NAL_SPS, NAL_PPS] {
            assert_eq!(c.units(t).count(), 1, "NAL type {t}");
            assert!(c.units(t).all(|u| (u[0] >> 1) & 0x3f == t));
        }
        // Every truncation of the real record fails cleanly.
        for n in 0..bytes.len() {
            assert!(HevcConfig::parse(&bytes[..n]).is_err(), "{n} bytes");
        }
    }

    #[test]
    fn the_codec_string_follows_annex_e() {
        // Main, compatibility flags 1 and 2, Main tier level 3.1, progressive_source (0xB0).
        let sps = [0x42, 0x01];
        let c = HevcConfig::parse(&record(0x01, 0x6000_0000, [0xb0, 0, 0, 0, 0, 0], 93, &[(33, &sps)])).unwrap();
        assert_eq!(c.codec_string(), "hvc1.1.6.L93.B0");
        // High tier, profile space 1, Main 10, constraint bytes with an inner zero kept.
        let c = HevcConfig::parse(&record(0x62, 0x2000_0000, [0x90, 0, 0x01, 0, 0, 0], 120, &[(33, &sps)])).unwrap();
        assert_eq!(c.codec_string(), "hvc1.A2.4.H120.90.0.1");
        assert_eq!((c.profile_space, c.tier, c.profile_idc, c.level_idc), (1, true, 2, 120));
        // No constraint flags at all: nothing after the level.
        let c = HevcConfig::parse(&record(0x01, 0x4000_0000, [0; 6], 60, &[(33, &sps)])).unwrap();
        assert_eq!(c.codec_string(), "hvc1.1.2.L60");
        assert_eq!((c.width, c.height), (0, 0), "an SPS too short leaves the size unknown");
    }

    #[test]
    fn bad_records_are_typed_errors() {
        let sps = [0x42, 0x01];
        let good = record(0x01, 0x6000_0000, [0xb0, 0, 0, 0, 0, 0], 93, &[(33, &sps)]);
        for n in 0..good.len() {
            assert_eq!(HevcConfig::parse(&good[..n]), Err(HevcError::Truncated), "{n} bytes");
        }
        let mut v = good.clone();
        v[0] = 0;
        assert_eq!(HevcConfig::parse(&v), Err(HevcError::Version(0)));
        let mut v = good.clone();
        v[21] = 0xfe;
        assert_eq!(HevcConfig::parse(&v), Err(HevcError::LengthSize(3)));
        let pps = [0x44, 0x01];
        assert_eq!(HevcConfig::parse(&record(1, 0, [0; 6], 93, &[(34, &pps)])), Err(HevcError::NoSps));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..400 {
            let mut v: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = HevcConfig::parse(&v);
            if v.len() > 23 {
                v[0] = 1;
                v[21] |= 0x03;
                let _ = HevcConfig::parse(&v);
            }
            let _ = sps_size(&v);
        }
    }
}
