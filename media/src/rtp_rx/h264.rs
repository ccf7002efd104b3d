//! H.264 depacketization (RFC 6184, packetization-mode 1): the payloads of one frame, in
//! sequence order, → one Annex-B access unit.
//!
//! Single NAL unit packets (types 1–23), STAP-A (24) and FU-A (28) are accepted; every NAL
//! unit is written with a 4-byte start code. Anything that cannot be reassembled exactly
//! (STAP-B, MTAP, FU-B, reserved types, truncated or empty aggregates, fragments without
//! their start or end) is an [`RxError`]: the caller drops the frame.

use super::{MAX_FRAME_BYTES, RxError};
use crate::h264::nal_type;

/// Annex-B start code written before every NAL unit.
pub const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// Payload type of a single-time aggregation packet (STAP-A).
pub const STAP_A: u8 = 24;
/// Payload type of a fragmentation unit (FU-A).
pub const FU_A: u8 = 28;

/// FU header start bit.
const FU_START: u8 = 0x80;
/// FU header end bit.
const FU_END: u8 = 0x40;
/// The F and NRI bits of a NAL unit header (or FU indicator).
const F_NRI: u8 = 0xe0;

/// Whether a payload can begin a frame: a single NAL unit, a STAP-A, or a FU-A with the
/// S bit (resynchronisation after a loss only restarts at such a packet).
pub fn is_frame_head(payload: &[u8]) -> bool {
    match payload {
        [h, fu, ..] if h & 0x1f == FU_A => fu & FU_START != 0,
        [h, ..] => matches!(h & 0x1f, 1..=23 | STAP_A),
        [] => false,
    }
}

/// Whether a payload is where a decoder can start: a parameter set (SPS, 7) or an IDR slice
/// (5) as a single NAL unit, a STAP-A whose first NAL unit is one, or the start of a FU-A
/// of an IDR slice. A forwarder starts a new receiver at such a packet (the SPS comes first
/// when the sender repeats its parameter sets before each IDR, as KVS masters do).
pub fn is_decoder_entry(payload: &[u8]) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    match payload {
        [h, fu, ..] if h & 0x1f == FU_A => fu & FU_START != 0 && fu & 0x1f == IDR,
        [h, _, _, first, ..] if h & 0x1f == STAP_A => matches!(first & 0x1f, IDR | SPS),
        [h, ..] => matches!(h & 0x1f, IDR | SPS),
        [] => false,
    }
}

/// Builds one access unit from its payloads (see the module docs).
#[derive(Debug, Default)]
pub struct AccessUnitBuilder {
    data: Vec<u8>,
    /// A FU-A NAL unit has started (S) and not ended (E).
    open: bool,
    keyframe: bool,
}

impl AccessUnitBuilder {
    /// Appends the NAL units of one payload. After an error the builder holds a partial
    /// frame: [`Self::reset`] it.
    pub fn push(&mut self, payload: &[u8]) -> Result<(), RxError> {
        let (&header, body) = payload.split_first().ok_or(RxError::EmptyPayload)?;
        match header & 0x1f {
            t @ 1..=23 => {
                self.not_open()?;
                self.append(&[&START_CODE, payload])?;
                self.keyframe |= t == nal_type::IDR;
            }
            STAP_A => {
                self.not_open()?;
                if body.is_empty() {
                    return Err(RxError::EmptyStapA);
                }
                let mut rest = body;
                while !rest.is_empty() {
                    let (size, tail) = rest.split_first_chunk::<2>().ok_or(RxError::TruncatedStapA)?;
                    let size = usize::from(u16::from_be_bytes(*size));
                    if size == 0 {
                        return Err(RxError::ZeroSizeStapA);
                    }
                    let (nal, tail) = tail.split_at_checked(size).ok_or(RxError::TruncatedStapA)?;
                    self.append(&[&START_CODE, nal])?;
                    self.keyframe |= crate::h264::nal_type_of(nal) == Some(nal_type::IDR);
                    rest = tail;
                }
            }
            FU_A => {
                let (&fu, fragment) = body.split_first().ok_or(RxError::ShortFuA)?;
                if fu & FU_START != 0 {
                    self.not_open()?;
                    let t = fu & 0x1f;
                    self.append(&[&START_CODE, &[(header & F_NRI) | t]])?;
                    self.open = true;
                    self.keyframe |= t == nal_type::IDR;
                } else if !self.open {
                    return Err(RxError::FuAWithoutStart);
                }
                self.append(&[fragment])?;
                if fu & FU_END != 0 {
                    self.open = false;
                }
            }
            t => return Err(RxError::UnsupportedType(t)),
        }
        Ok(())
    }

    /// The finished access unit and whether it holds an IDR; the builder is empty again.
    pub fn finish(&mut self) -> Result<(Vec<u8>, bool), RxError> {
        if self.open {
            return Err(RxError::NalOpenAtEnd);
        }
        if self.data.is_empty() {
            return Err(RxError::NoNalUnits);
        }
        let keyframe = std::mem::take(&mut self.keyframe);
        Ok((std::mem::take(&mut self.data), keyframe))
    }

    /// Discards the partial frame (its memory too).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Bytes of the access unit so far.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether nothing has been appended yet.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// A new NAL unit may not start while a fragmented one is open.
    fn not_open(&self) -> Result<(), RxError> {
        if self.open { Err(RxError::NalInterrupted) } else { Ok(()) }
    }

    /// Appends `parts` unless the frame would exceed [`MAX_FRAME_BYTES`].
    fn append(&mut self, parts: &[&[u8]]) -> Result<(), RxError> {
        let add: usize = parts.iter().map(|p| p.len()).sum();
        if self.data.len().saturating_add(add) > MAX_FRAME_BYTES {
            return Err(RxError::FrameTooLarge);
        }
        for part in parts {
            self.data.extend_from_slice(part);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(payloads: &[&[u8]]) -> Result<(Vec<u8>, bool), RxError> {
        let mut b = AccessUnitBuilder::default();
        for p in payloads {
            b.push(p)?;
        }
        b.finish()
    }

    #[test]
    fn single_nal_packets_each_get_a_start_code() {
        let (data, keyframe) = build(&[&[0x41, 1, 2], &[0x01, 3]]).unwrap();
        assert_eq!(data, vec![0, 0, 0, 1, 0x41, 1, 2, 0, 0, 0, 1, 0x01, 3]);
        assert!(!keyframe);
    }

    #[test]
    fn stap_a_emits_each_aggregated_nal_with_its_own_start_code() {
        let stap = [0x78, 0, 3, 0x67, 1, 2, 0, 2, 0x68, 3, 0, 2, 0x65, 4];
        let (data, keyframe) = build(&[&stap]).unwrap();
        assert_eq!(data, vec![0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4]);
        assert!(keyframe);
    }

    #[test]
    fn fu_a_rebuilds_the_nal_header_from_indicator_f_nri_and_fu_type() {
        // Indicator F=1 NRI=3, FU type 5 (IDR): header 0xe5; then S, middle, E fragments.
        let (data, keyframe) = build(&[&[0xfc, 0x85, 1, 2], &[0xfc, 0x05, 3], &[0xfc, 0x45, 4, 5]]).unwrap();
        assert_eq!(data, vec![0, 0, 0, 1, 0xe5, 1, 2, 3, 4, 5]);
        assert!(keyframe);
        // NRI=2, type 1, start and end in one packet, empty fragments allowed (RFC 6184 5.8).
        assert_eq!(build(&[&[0x5c, 0x81], &[0x5c, 0x41]]).unwrap().0, vec![0, 0, 0, 1, 0x41]);
        assert_eq!(build(&[&[0x5c, 0xc1, 9]]).unwrap().0, vec![0, 0, 0, 1, 0x41, 9]);
    }

    #[test]
    fn idr_is_detected_in_single_stap_a_and_fu_a_packets_only() {
        assert!(build(&[&[0x65, 1]]).unwrap().1);
        assert!(build(&[&[0x78, 0, 1, 0x65]]).unwrap().1);
        assert!(build(&[&[0x7c, 0xc5, 1]]).unwrap().1);
        assert!(!build(&[&[0x61, 1], &[0x78, 0, 2, 0x67, 0x65], &[0x7c, 0xc1, 0x65]]).unwrap().1);
    }

    #[test]
    fn truncated_empty_or_zero_size_stap_a_is_malformed() {
        assert_eq!(build(&[&[0x78]]), Err(RxError::EmptyStapA));
        assert_eq!(build(&[&[0x78, 0, 3, 0x67, 1]]), Err(RxError::TruncatedStapA));
        assert_eq!(build(&[&[0x78, 0, 1, 0x67, 0]]), Err(RxError::TruncatedStapA), "a lone size byte");
        assert_eq!(build(&[&[0x78, 0, 0, 0, 1, 0x67]]), Err(RxError::ZeroSizeStapA));
    }

    #[test]
    fn fu_a_without_start_unfinished_or_interrupted_is_malformed() {
        assert_eq!(build(&[&[0x7c, 0x45, 1]]), Err(RxError::FuAWithoutStart));
        assert_eq!(build(&[&[0x7c, 0x05, 1]]), Err(RxError::FuAWithoutStart));
        assert_eq!(build(&[&[0x7c, 0x85, 1], &[0x7c, 0x05, 2]]), Err(RxError::NalOpenAtEnd));
        assert_eq!(build(&[&[0x7c]]), Err(RxError::ShortFuA));
        assert_eq!(build(&[&[0x7c, 0x85, 1], &[0x41, 2]]), Err(RxError::NalInterrupted));
        assert_eq!(build(&[&[0x7c, 0x85, 1], &[0x78, 0, 1, 0x41]]), Err(RxError::NalInterrupted));
        assert_eq!(build(&[&[0x7c, 0x85, 1], &[0x7c, 0x85, 2]]), Err(RxError::NalInterrupted));
    }

    #[test]
    fn empty_and_unsupported_payload_types_are_malformed() {
        assert_eq!(build(&[&[]]), Err(RxError::EmptyPayload));
        for t in [0u8, 25, 26, 27, 29, 30, 31] {
            assert_eq!(build(&[&[0x60 | t, 1, 2, 3]]), Err(RxError::UnsupportedType(t)), "type {t}");
        }
        assert_eq!(build(&[]), Err(RxError::NoNalUnits));
    }

    #[test]
    fn frame_heads_are_single_nal_stap_a_and_fu_a_start_packets() {
        assert!(is_frame_head(&[0x41]));
        assert!(is_frame_head(&[0x78, 0, 1, 0x41]));
        assert!(is_frame_head(&[0x7c, 0x85]));
        assert!(!is_frame_head(&[0x7c, 0x05]));
        assert!(!is_frame_head(&[0x7c, 0x45]));
        assert!(!is_frame_head(&[0x7c]));
        assert!(!is_frame_head(&[]));
        assert!(!is_frame_head(&[0x60]));
        assert!(!is_frame_head(&[0x7d, 0x85]), "FU-B");
    }

    #[test]
    fn decoders_start_at_sps_or_idr_packets_only() {
        assert!(is_decoder_entry(&[0x67, 0x42]), "SPS");
        assert!(is_decoder_entry(&[0x65, 0x88]), "IDR");
        assert!(is_decoder_entry(&[0x78, 0, 10, 0x67, 0x42]), "STAP-A starting with the SPS");
        assert!(is_decoder_entry(&[0x7c, 0x85, 1]), "FU-A start of an IDR");
        assert!(!is_decoder_entry(&[0x7c, 0x45, 1]), "FU-A end of an IDR");
        assert!(!is_decoder_entry(&[0x7c, 0x81, 1]), "FU-A start of a non-IDR slice");
        assert!(!is_decoder_entry(&[0x68, 0xce]), "PPS alone");
        assert!(!is_decoder_entry(&[0x41, 0x9a]), "non-IDR slice");
        assert!(!is_decoder_entry(&[0x78, 0, 10, 0x41]), "STAP-A of slices");
        assert!(!is_decoder_entry(&[0x78, 0]), "truncated STAP-A");
        assert!(!is_decoder_entry(&[]));
    }

    #[test]
    fn builder_is_reusable_after_finish_and_reset() {
        let mut b = AccessUnitBuilder::default();
        b.push(&[0x65, 1]).unwrap();
        assert_eq!(b.finish().unwrap(), (vec![0, 0, 0, 1, 0x65, 1], true));
        assert!(b.is_empty());
        b.push(&[0x7c, 0x85, 1]).unwrap();
        b.reset();
        b.push(&[0x41, 2]).unwrap();
        assert_eq!(b.len(), 6);
        assert_eq!(b.finish().unwrap(), (vec![0, 0, 0, 1, 0x41, 2], false));
    }
}
