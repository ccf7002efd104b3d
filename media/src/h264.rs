//! H.264 access units: Annex-B in, AVCC (ISO/IEC 14496-15) out.
//!
//! WebRTC depacketizers hand over one access unit (all NAL units of one picture) as an
//! Annex-B byte stream (`00 00 00 01` start codes). Matroska `V_MPEG4/ISO/AVC` and MP4 want
//! the parameter sets (SPS/PPS) once, in the `AVCDecoderConfigurationRecord` ("avcC", the
//! track's codec private), and each sample as 4-byte length-prefixed NAL units.
//!
//! This module splits access units ([`AccessUnit::parse`]), tracks the parameter sets
//! ([`ParameterSets`]), parses the SPS far enough for profile/level and the cropped picture
//! size ([`Sps`]), builds and parses the record ([`AvcConfig`]) and its RFC 6381 codec string
//! (`avc1.PPCCLL`), and rewrites samples ([`write_sample`], [`sample_to_annex_b`]).
//! All input is untrusted: malformed bytes give an [`H264Error`], never a panic.

use std::collections::BTreeMap;

use super::bits::{BitReader, BitsError, rbsp};

/// NAL unit type codes used here (ITU-T H.264 Table 7-1).
pub mod nal_type {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// Coded slice of an IDR picture (a keyframe).
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
    /// Filler data.
    pub const FILLER: u8 = 12;
}

/// Largest picture side accepted from an SPS (H.264 level 6.2 tops out at 8192×4320).
pub const MAX_DIMENSION: u32 = 16_384;

/// Length of the NAL size prefix in the samples this module writes (and declares in avcC).
pub const NAL_LENGTH_SIZE: u8 = 4;

/// Why H.264 data was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum H264Error {
    /// The access unit does not begin with an Annex-B start code.
    #[error("access unit does not start with an Annex-B start code")]
    NoStartCode,
    /// The access unit contains no NAL units at all.
    #[error("access unit is empty")]
    Empty,
    /// A NAL unit header has its forbidden_zero_bit set.
    #[error("NAL unit has forbidden_zero_bit set")]
    ForbiddenBit,
    /// A bit-level field could not be read.
    #[error("bitstream: {0}")]
    Bits(#[from] BitsError),
    /// A NAL unit that should be an SPS (or PPS) is not one.
    #[error("expected NAL type {expected}, found {found}")]
    WrongNalType {
        /// The NAL type wanted.
        expected: u8,
        /// The NAL type found.
        found: u8,
    },
    /// An SPS/PPS field is outside the range the standard allows.
    #[error("invalid parameter set: {0}")]
    InvalidParameterSet(&'static str),
    /// No SPS or no PPS is known, so no decoder configuration can be built.
    #[error("missing SPS or PPS")]
    MissingParameterSets,
    /// A NAL unit is too large for its length field (2 bytes in avcC, 4 in samples).
    #[error("NAL unit of {0} bytes is too large")]
    NalTooLarge(usize),
    /// An `AVCDecoderConfigurationRecord` or length-prefixed sample is malformed.
    #[error("invalid AVC configuration or sample: {0}")]
    InvalidAvcc(&'static str),
}

/// The `nal_unit_type` of a NAL unit (its first byte's low 5 bits), if it has a header.
pub fn nal_type_of(nal: &[u8]) -> Option<u8> {
    nal.first().map(|h| h & 0x1f)
}

/// Iterator over the NAL units of an Annex-B byte stream (start codes and trailing zeros removed).
#[derive(Debug, Clone)]
pub struct AnnexBNals<'a> {
    data: &'a [u8],
    /// Where the next NAL unit's payload starts, if any is left.
    next: Option<usize>,
}

/// Finds the next `00 00 01` at or after `from`: returns (start code position, payload start).
/// Searches for the `01` byte with `memchr` (vectorised: compressed slice data rarely holds
/// one) and checks the two zeros before it.
fn find_start_code(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut at = from.checked_add(2)?;
    while at < data.len() {
        let one = at + memchr::memchr(1, data.get(at..)?)?;
        if data[one - 2] == 0 && data[one - 1] == 0 {
            return Some((one - 2, one + 1));
        }
        at = one + 1;
    }
    None
}

impl<'a> AnnexBNals<'a> {
    /// Starts iterating; `data` must begin with a start code (leading zero bytes allowed).
    pub fn new(data: &'a [u8]) -> Result<Self, H264Error> {
        let (sc, payload) = find_start_code(data, 0).ok_or(H264Error::NoStartCode)?;
        if data[..sc].iter().any(|&b| b != 0) {
            return Err(H264Error::NoStartCode);
        }
        Ok(Self { data, next: Some(payload) })
    }
}

impl<'a> Iterator for AnnexBNals<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let start = self.next?;
            let (end, next) = match find_start_code(self.data, start) {
                Some((sc, payload)) => (sc, Some(payload)),
                None => (self.data.len(), None),
            };
            self.next = next;
            let mut nal = self.data.get(start..end).unwrap_or(&[]);
            while let [rest @ .., 0] = nal {
                nal = rest;
            }
            if !nal.is_empty() {
                return Some(nal);
            }
        }
    }
}

/// One access unit split into its NAL units (borrowed from the input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit<'a> {
    /// The NAL units in stream order, each starting with its one-byte header.
    pub nals: Vec<&'a [u8]>,
}

impl<'a> AccessUnit<'a> {
    /// Splits an Annex-B access unit and checks every NAL header.
    pub fn parse(data: &'a [u8]) -> Result<Self, H264Error> {
        let nals: Vec<&[u8]> = AnnexBNals::new(data)?.collect();
        if nals.is_empty() {
            return Err(H264Error::Empty);
        }
        if nals.iter().any(|n| n.first().is_some_and(|h| h & 0x80 != 0)) {
            return Err(H264Error::ForbiddenBit);
        }
        Ok(Self { nals })
    }

    /// True when the access unit holds an IDR slice (a keyframe a decoder can start from).
    pub fn is_idr(&self) -> bool {
        self.of_type(nal_type::IDR).next().is_some()
    }

    /// True when the access unit holds at least one coded slice (types 1–5).
    pub fn has_slices(&self) -> bool {
        self.nals.iter().any(|n| matches!(nal_type_of(n), Some(1..=5)))
    }

    /// The NAL units of one type, in order.
    pub fn of_type(&self, t: u8) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.nals.iter().copied().filter(move |n| nal_type_of(n) == Some(t))
    }

    /// Length of the sample [`write_sample`] produces for this access unit.
    pub fn sample_len(&self) -> usize {
        self.nals.iter().filter(|n| keep_in_sample(n)).map(|n| n.len() + 4).sum()
    }
}

/// Whether a NAL unit belongs in sample data (parameter sets live in avcC; AUD and filler go).
fn keep_in_sample(nal: &[u8]) -> bool {
    !matches!(nal_type_of(nal), Some(nal_type::SPS | nal_type::PPS | nal_type::AUD | nal_type::FILLER) | None)
}

/// Appends the access unit as 4-byte length-prefixed NAL units without SPS, PPS, AUD or filler.
///
/// Returns the number of bytes written (0 when the access unit held only parameter sets).
pub fn write_sample(au: &AccessUnit<'_>, out: &mut Vec<u8>) -> Result<usize, H264Error> {
    let before = out.len();
    out.reserve(au.sample_len());
    for nal in au.nals.iter().filter(|n| keep_in_sample(n)) {
        let len = u32::try_from(nal.len()).map_err(|_| H264Error::NalTooLarge(nal.len()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(nal);
    }
    Ok(out.len() - before)
}

/// Iterator over the NAL units of a length-prefixed sample (as stored in MKV/MP4).
#[derive(Debug, Clone)]
pub struct LengthPrefixedNals<'a> {
    data: &'a [u8],
    length_size: usize,
}

impl<'a> LengthPrefixedNals<'a> {
    /// Reads `data` with `length_size`-byte big-endian prefixes (1, 2 or 4).
    pub fn new(data: &'a [u8], length_size: u8) -> Result<Self, H264Error> {
        if !matches!(length_size, 1 | 2 | 4) {
            return Err(H264Error::InvalidAvcc("NAL length size must be 1, 2 or 4"));
        }
        Ok(Self { data, length_size: usize::from(length_size) })
    }
}

impl<'a> Iterator for LengthPrefixedNals<'a> {
    type Item = Result<&'a [u8], H264Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        let Some((len_bytes, rest)) = self.data.split_at_checked(self.length_size) else {
            self.data = &[];
            return Some(Err(H264Error::InvalidAvcc("truncated NAL length")));
        };
        let len = len_bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let Some((nal, rest)) = rest.split_at_checked(len) else {
            self.data = &[];
            return Some(Err(H264Error::InvalidAvcc("NAL length exceeds sample")));
        };
        self.data = rest;
        Some(Ok(nal))
    }
}

/// Rewrites a length-prefixed sample as Annex-B (for MPEG-TS), optionally with the
/// configuration's SPS and PPS in front (needed before each keyframe in a TS segment).
pub fn sample_to_annex_b(
    sample: &[u8],
    length_size: u8,
    parameter_sets: Option<&AvcConfig>,
    out: &mut Vec<u8>,
) -> Result<(), H264Error> {
    const START: [u8; 4] = [0, 0, 0, 1];
    if let Some(cfg) = parameter_sets {
        for ps in cfg.sps.iter().chain(&cfg.pps) {
            out.extend_from_slice(&START);
            out.extend_from_slice(ps);
        }
    }
    for nal in LengthPrefixedNals::new(sample, length_size)? {
        out.extend_from_slice(&START);
        out.extend_from_slice(nal?);
    }
    Ok(())
}

/// The fields of a sequence parameter set that a muxer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sps {
    /// `profile_idc` (66 baseline, 77 main, 100 high, …).
    pub profile_idc: u8,
    /// The constraint_set0..5 flags byte as coded (second byte of `PPCCLL`).
    pub constraint_flags: u8,
    /// `level_idc` (31 = level 3.1).
    pub level_idc: u8,
    /// `seq_parameter_set_id` (0–31).
    pub id: u32,
    /// `chroma_format_idc` (1 = 4:2:0, the only value WebRTC uses).
    pub chroma_format_idc: u32,
    /// `bit_depth_luma_minus8 + 8`.
    pub bit_depth_luma: u8,
    /// `bit_depth_chroma_minus8 + 8`.
    pub bit_depth_chroma: u8,
    /// `frame_mbs_only_flag`: false means the stream may code fields (interlaced).
    pub frame_mbs_only: bool,
    /// Displayed width in pixels, after cropping.
    pub width: u32,
    /// Displayed height in pixels, after cropping.
    pub height: u32,
}

/// Profiles whose SPS carries chroma format and bit depth fields (H.264 7.3.2.1.1).
fn has_chroma_info(profile_idc: u8) -> bool {
    matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135)
}

/// Skips a `scaling_list()` of `size` coefficients.
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), H264Error> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            let delta = i64::from(r.se()?);
            next = (last + delta).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

impl Sps {
    /// Parses an SPS NAL unit (header byte included, emulation prevention still in place).
    pub fn parse(nal: &[u8]) -> Result<Self, H264Error> {
        let found = nal_type_of(nal).ok_or(H264Error::Empty)?;
        if found != nal_type::SPS {
            return Err(H264Error::WrongNalType { expected: nal_type::SPS, found });
        }
        let data = rbsp(nal.get(1..).unwrap_or(&[]));
        let mut r = BitReader::new(&data);
        let profile_idc = r.u8()?;
        let constraint_flags = r.u8()?;
        let level_idc = r.u8()?;
        let id = r.ue()?;
        if id > 31 {
            return Err(H264Error::InvalidParameterSet("seq_parameter_set_id > 31"));
        }
        let (mut chroma_format_idc, mut separate_colour_plane) = (1, false);
        let (mut bit_depth_luma, mut bit_depth_chroma) = (8, 8);
        if has_chroma_info(profile_idc) {
            chroma_format_idc = r.ue()?;
            if chroma_format_idc > 3 {
                return Err(H264Error::InvalidParameterSet("chroma_format_idc > 3"));
            }
            if chroma_format_idc == 3 {
                separate_colour_plane = r.bit()?;
            }
            let luma = r.ue()?;
            let chroma = r.ue()?;
            if luma > 6 || chroma > 6 {
                return Err(H264Error::InvalidParameterSet("bit depth above 14"));
            }
            bit_depth_luma = 8 + luma as u8;
            bit_depth_chroma = 8 + chroma as u8;
            r.skip(1)?; // qpprime_y_zero_transform_bypass_flag
            if r.bit()? {
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.bit()? {
                        skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }
        let _log2_max_frame_num_minus4 = r.ue()?;
        match r.ue()? {
            0 => {
                let _log2_max_poc_lsb_minus4 = r.ue()?;
            }
            1 => {
                r.skip(1)?; // delta_pic_order_always_zero_flag
                r.se()?; // offset_for_non_ref_pic
                r.se()?; // offset_for_top_to_bottom_field
                let cycle = r.ue()?;
                if cycle > 255 {
                    return Err(H264Error::InvalidParameterSet("POC cycle longer than 255"));
                }
                for _ in 0..cycle {
                    r.se()?;
                }
            }
            2 => {}
            _ => return Err(H264Error::InvalidParameterSet("pic_order_cnt_type > 2")),
        }
        let _max_num_ref_frames = r.ue()?;
        r.skip(1)?; // gaps_in_frame_num_value_allowed_flag
        let width_mbs = u64::from(r.ue()?) + 1;
        let height_map_units = u64::from(r.ue()?) + 1;
        let frame_mbs_only = r.bit()?;
        if !frame_mbs_only {
            r.skip(1)?; // mb_adaptive_frame_field_flag
        }
        r.skip(1)?; // direct_8x8_inference_flag
        let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0u64, 0u64, 0u64, 0u64);
        if r.bit()? {
            crop_l = r.ue()?.into();
            crop_r = r.ue()?.into();
            crop_t = r.ue()?.into();
            crop_b = r.ue()?.into();
        }
        // H.264 7.4.2.1.1: crop units depend on ChromaArrayType and field coding.
        let field_factor = if frame_mbs_only { 1 } else { 2 };
        let chroma_array_type = if separate_colour_plane { 0 } else { chroma_format_idc };
        let (crop_x, crop_y) = match chroma_array_type {
            0 => (1, field_factor),
            1 => (2, 2 * field_factor),
            2 => (2, field_factor),
            _ => (1, field_factor),
        };
        let coded_w = width_mbs * 16;
        let coded_h = height_map_units * 16 * field_factor;
        let width = coded_w
            .checked_sub((crop_l + crop_r) * crop_x)
            .filter(|w| (1..=u64::from(MAX_DIMENSION)).contains(w))
            .ok_or(H264Error::InvalidParameterSet("picture width out of range"))?;
        let height = coded_h
            .checked_sub((crop_t + crop_b) * crop_y)
            .filter(|h| (1..=u64::from(MAX_DIMENSION)).contains(h))
            .ok_or(H264Error::InvalidParameterSet("picture height out of range"))?;
        Ok(Self {
            profile_idc,
            constraint_flags,
            level_idc,
            id,
            chroma_format_idc,
            bit_depth_luma,
            bit_depth_chroma,
            frame_mbs_only,
            width: width as u32,
            height: height as u32,
        })
    }

    /// The RFC 6381 codec string for HLS/DASH, e.g. `avc1.42e01f`.
    pub fn codec_string(&self) -> String {
        format!("avc1.{:02x}{:02x}{:02x}", self.profile_idc, self.constraint_flags, self.level_idc)
    }
}

/// The ids a picture parameter set declares (its own and the SPS it refers to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pps {
    /// `pic_parameter_set_id` (0–255).
    pub id: u32,
    /// `seq_parameter_set_id` of the SPS it uses.
    pub sps_id: u32,
}

impl Pps {
    /// Parses the first two fields of a PPS NAL unit.
    pub fn parse(nal: &[u8]) -> Result<Self, H264Error> {
        let found = nal_type_of(nal).ok_or(H264Error::Empty)?;
        if found != nal_type::PPS {
            return Err(H264Error::WrongNalType { expected: nal_type::PPS, found });
        }
        let data = rbsp(nal.get(1..).unwrap_or(&[]));
        let mut r = BitReader::new(&data);
        let id = r.ue()?;
        let sps_id = r.ue()?;
        if id > 255 || sps_id > 31 {
            return Err(H264Error::InvalidParameterSet("PPS id out of range"));
        }
        Ok(Self { id, sps_id })
    }
}

/// The stream's current SPS/PPS, keyed by id, as seen in band.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParameterSets {
    sps: BTreeMap<u32, Vec<u8>>,
    pps: BTreeMap<u32, Vec<u8>>,
    /// Id of the SPS received last: it describes the picture size and profile.
    primary_sps: Option<u32>,
}

impl ParameterSets {
    /// Records every SPS and PPS of an access unit. Returns true when any of them is new or
    /// differs from the one stored under the same id.
    pub fn update(&mut self, au: &AccessUnit<'_>) -> Result<bool, H264Error> {
        let mut changed = false;
        for nal in au.of_type(nal_type::SPS) {
            let sps = Sps::parse(nal)?;
            self.primary_sps = Some(sps.id);
            if self.sps.get(&sps.id).map(Vec::as_slice) != Some(nal) {
                self.sps.insert(sps.id, nal.to_vec());
                changed = true;
            }
        }
        for nal in au.of_type(nal_type::PPS) {
            let pps = Pps::parse(nal)?;
            if self.pps.get(&pps.id).map(Vec::as_slice) != Some(nal) {
                self.pps.insert(pps.id, nal.to_vec());
                changed = true;
            }
        }
        Ok(changed)
    }

    /// True once at least one SPS and one PPS are known.
    pub fn is_complete(&self) -> bool {
        !self.sps.is_empty() && !self.pps.is_empty()
    }

    /// Builds the decoder configuration from the current parameter sets.
    pub fn config(&self) -> Result<AvcConfig, H264Error> {
        if !self.is_complete() {
            return Err(H264Error::MissingParameterSets);
        }
        // The primary SPS goes first: readers take profile and size from the first one.
        let primary = self.primary_sps.and_then(|id| self.sps.get(&id));
        let sps = primary
            .into_iter()
            .chain(self.sps.iter().filter(|(id, _)| Some(**id) != self.primary_sps).map(|(_, v)| v))
            .cloned()
            .collect();
        AvcConfig::new(sps, self.pps.values().cloned().collect())
    }
}

/// An `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §5.3.3.1): the avcC box payload and
/// the Matroska `CodecPrivate` of a `V_MPEG4/ISO/AVC` track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// SPS NAL units; the first one describes the stream.
    pub sps: Vec<Vec<u8>>,
    /// PPS NAL units.
    pub pps: Vec<Vec<u8>>,
    /// Size of the NAL length prefix in samples (4 for everything this module writes).
    pub nal_length_size: u8,
    /// The parsed first SPS.
    pub info: Sps,
}

impl AvcConfig {
    /// Builds a configuration for 4-byte length prefixes from parameter set NAL units.
    pub fn new(sps: Vec<Vec<u8>>, pps: Vec<Vec<u8>>) -> Result<Self, H264Error> {
        let first = sps.first().ok_or(H264Error::MissingParameterSets)?;
        if pps.is_empty() {
            return Err(H264Error::MissingParameterSets);
        }
        if sps.len() > 31 || pps.len() > 255 {
            return Err(H264Error::InvalidAvcc("too many parameter sets"));
        }
        for ps in sps.iter().chain(&pps) {
            if ps.len() > usize::from(u16::MAX) {
                return Err(H264Error::NalTooLarge(ps.len()));
            }
        }
        let info = Sps::parse(first)?;
        Ok(Self { sps, pps, nal_length_size: NAL_LENGTH_SIZE, info })
    }

    /// Picture width in pixels (from the first SPS).
    pub fn width(&self) -> u32 {
        self.info.width
    }

    /// Picture height in pixels (from the first SPS).
    pub fn height(&self) -> u32 {
        self.info.height
    }

    /// The RFC 6381 codec string, e.g. `avc1.42e01f` (taken from the SPS bytes as avcC does).
    pub fn codec_string(&self) -> String {
        self.info.codec_string()
    }

    /// Serializes the record.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(11 + self.sps.iter().chain(&self.pps).map(|p| p.len() + 2).sum::<usize>());
        out.push(1); // configurationVersion
        out.push(self.info.profile_idc);
        out.push(self.info.constraint_flags);
        out.push(self.info.level_idc);
        out.push(0xfc | (self.nal_length_size.saturating_sub(1) & 0x03));
        out.push(0xe0 | (self.sps.len() as u8 & 0x1f));
        for sps in &self.sps {
            out.extend_from_slice(&(sps.len() as u16).to_be_bytes());
            out.extend_from_slice(sps);
        }
        out.push(self.pps.len() as u8);
        for pps in &self.pps {
            out.extend_from_slice(&(pps.len() as u16).to_be_bytes());
            out.extend_from_slice(pps);
        }
        if matches!(self.info.profile_idc, 100 | 110 | 122 | 144) {
            out.push(0xfc | (self.info.chroma_format_idc as u8 & 0x03));
            out.push(0xf8 | (self.info.bit_depth_luma.saturating_sub(8) & 0x07));
            out.push(0xf8 | (self.info.bit_depth_chroma.saturating_sub(8) & 0x07));
            out.push(0); // numOfSequenceParameterSetExt
        }
        out
    }

    /// Parses a record (as found in MKV `CodecPrivate` or an MP4 avcC box).
    pub fn parse(data: &[u8]) -> Result<Self, H264Error> {
        fn take<'a>(d: &mut &'a [u8], n: usize) -> Result<&'a [u8], H264Error> {
            let (head, rest) = d.split_at_checked(n).ok_or(H264Error::InvalidAvcc("record truncated"))?;
            *d = rest;
            Ok(head)
        }
        fn sets(d: &mut &[u8], count: usize) -> Result<Vec<Vec<u8>>, H264Error> {
            let mut out = Vec::with_capacity(count);
            for _ in 0..count {
                let len = take(d, 2)?;
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                out.push(take(d, len)?.to_vec());
            }
            Ok(out)
        }
        let mut d = data;
        let head = take(&mut d, 6)?;
        if head[0] != 1 {
            return Err(H264Error::InvalidAvcc("configurationVersion is not 1"));
        }
        let nal_length_size = (head[4] & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(H264Error::InvalidAvcc("NAL length size 3"));
        }
        let sps = sets(&mut d, usize::from(head[5] & 0x1f))?;
        let pps_count = take(&mut d, 1)?[0];
        let pps = sets(&mut d, usize::from(pps_count))?;
        let mut cfg = Self::new(sps, pps)?;
        cfg.nal_length_size = nal_length_size;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPS of the 640x360 constrained-baseline fixture (42e01f, 368 coded lines cropped to 360).
    pub(crate) const SPS_640X360: &[u8] = &[
        0x67, 0x42, 0xe0, 0x1f, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00,
        0x03, 0x00, 0x3c, 0x0f, 0x18, 0x32, 0x48,
    ];
    /// The fixture's PPS.
    pub(crate) const PPS: &[u8] = &[0x68, 0xcb, 0x8c, 0xb2];

    #[test]
    fn splits_annex_b_with_3_and_4_byte_start_codes() {
        let data = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 0, 1, 0x65, 4, 0];
        let nals: Vec<_> = AnnexBNals::new(&data).unwrap().collect();
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4]]);
        assert_eq!(AnnexBNals::new(&[1, 0, 0, 1, 5]).err(), Some(H264Error::NoStartCode));
        assert_eq!(AnnexBNals::new(&[0x65, 1]).err(), Some(H264Error::NoStartCode));
        assert_eq!(AccessUnit::parse(&[0, 0, 1, 0, 0, 1]).err(), Some(H264Error::Empty));
        assert_eq!(AccessUnit::parse(&[0, 0, 1, 0xe5]).err(), Some(H264Error::ForbiddenBit));
    }

    #[test]
    fn start_code_search_matches_a_byte_by_byte_scan() {
        let naive = |data: &[u8], from: usize| {
            (from..data.len().saturating_sub(2)).find(|&i| data[i..i + 3] == [0, 0, 1]).map(|i| (i, i + 3))
        };
        // Bytes drawn mostly from {0, 1, 2} so start codes, near misses and runs of zeros abound.
        let mut x: u32 = 0x2545_f491;
        for len in 0..200 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    [0, 0, 0, 1, 2, 0x65][(x % 6) as usize]
                })
                .collect();
            for from in 0..=len + 1 {
                assert_eq!(find_start_code(&data, from), naive(&data, from), "{data:?} from {from}");
            }
        }
        assert_eq!(find_start_code(&[0, 0, 1], usize::MAX), None);
    }

    #[test]
    fn classifies_and_rewrites_an_idr_access_unit() {
        let mut au = vec![0, 0, 0, 1, 0x09, 0xf0];
        au.extend([0, 0, 0, 1]);
        au.extend(SPS_640X360);
        au.extend([0, 0, 0, 1]);
        au.extend(PPS);
        au.extend([0, 0, 1, 0x06, 5, 1, 0x80]);
        au.extend([0, 0, 1, 0x65, 0x88, 0x84]);
        let parsed = AccessUnit::parse(&au).unwrap();
        assert!(parsed.is_idr());
        assert!(parsed.has_slices());
        let mut out = vec![];
        let n = write_sample(&parsed, &mut out).unwrap();
        assert_eq!(n, out.len());
        assert_eq!(out, vec![0, 0, 0, 4, 0x06, 5, 1, 0x80, 0, 0, 0, 3, 0x65, 0x88, 0x84]);
        assert_eq!(parsed.sample_len(), out.len());
        let nals: Vec<_> = LengthPrefixedNals::new(&out, 4).unwrap().map(Result::unwrap).collect();
        assert_eq!(nals, vec![&[0x06, 5, 1, 0x80][..], &[0x65, 0x88, 0x84]]);
        let mut ps = ParameterSets::default();
        assert!(ps.update(&parsed).unwrap());
        assert!(!ps.update(&parsed).unwrap(), "same parameter sets again are not a change");
        let cfg = ps.config().unwrap();
        let mut annexb = vec![];
        sample_to_annex_b(&out, 4, Some(&cfg), &mut annexb).unwrap();
        let back = AccessUnit::parse(&annexb).unwrap();
        assert_eq!(back.nals, vec![SPS_640X360, PPS, &[0x06, 5, 1, 0x80], &[0x65, 0x88, 0x84]]);
    }

    #[test]
    fn parses_sps_with_cropping() {
        let sps = Sps::parse(SPS_640X360).unwrap();
        assert_eq!((sps.profile_idc, sps.constraint_flags, sps.level_idc), (66, 0xe0, 31));
        assert_eq!((sps.width, sps.height), (640, 360));
        assert!(sps.frame_mbs_only);
        assert_eq!(sps.codec_string(), "avc1.42e01f");
        assert!(matches!(Sps::parse(PPS), Err(H264Error::WrongNalType { .. })));
        // The fields reel needs end inside byte 10 (the VUI after them is not read).
        for cut in 0..SPS_640X360.len() {
            let parsed = Sps::parse(&SPS_640X360[..cut]);
            if cut < 10 {
                assert!(parsed.is_err(), "prefix of {cut} bytes");
            } else {
                assert_eq!(parsed.as_ref(), Ok(&sps), "prefix of {cut} bytes");
            }
        }
    }

    #[test]
    fn avcc_round_trips() {
        let cfg = AvcConfig::new(vec![SPS_640X360.to_vec()], vec![PPS.to_vec()]).unwrap();
        let bytes = cfg.to_bytes();
        assert_eq!(&bytes[..6], &[1, 0x42, 0xe0, 0x1f, 0xff, 0xe1]);
        assert_eq!(AvcConfig::parse(&bytes).unwrap(), cfg);
        assert_eq!(cfg.codec_string(), "avc1.42e01f");
        for cut in 0..bytes.len() {
            assert!(AvcConfig::parse(&bytes[..cut]).is_err());
        }
        assert_eq!(AvcConfig::new(vec![SPS_640X360.to_vec()], vec![]), Err(H264Error::MissingParameterSets));
    }

    #[test]
    fn parameter_set_change_is_detected() {
        let mut ps = ParameterSets::default();
        let au1 = [&[0, 0, 0, 1][..], SPS_640X360, &[0, 0, 0, 1], PPS].concat();
        assert!(ps.update(&AccessUnit::parse(&au1).unwrap()).unwrap());
        let mut pps2 = PPS.to_vec();
        pps2[3] ^= 0x10;
        let au2 = [&[0, 0, 0, 1][..], &pps2].concat();
        assert!(ps.update(&AccessUnit::parse(&au2).unwrap()).unwrap());
        assert_eq!(ps.config().unwrap().pps, vec![pps2]);
        assert_eq!(ParameterSets::default().config(), Err(H264Error::MissingParameterSets));
    }
}
