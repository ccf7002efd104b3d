//! MPEG-TS segments (ISO/IEC 13818-1) for HLS `MPEG_TS` sessions, sans-IO.
//!
//! One program: H.264 (stream type 0x1B, PID 0x100, also the PCR PID) as Annex-B PES with
//! SPS/PPS before every keyframe, and Opus (private stream type 0x06, PID 0x101) mapped as
//! ETSI TS 102 366-style Opus-in-TS, the way ffmpeg reads and writes it: a registration
//! descriptor `Opus`, an extension descriptor (0x7F, tag 0x80) with the channel
//! configuration, and each packet prefixed by the `0x7FE0` control header and its size.
//! AAC goes on the same audio PID as ADTS (stream type 0x0F, stream id 0xC0): each stored
//! raw access unit behind a 7-byte ADTS header built from the track's `AudioSpecificConfig`.
//! ADTS cannot express every AAC that MP4 can ([`check`] says which), so a stream with such
//! audio is refused for MPEG-TS before a session starts. So is H.265 video: KVS plays H.265
//! over HLS only as fragmented MP4, and refuses `MPEG_TS` sessions of it.

use crate::aac::AdtsError;
use crate::h264::{self, H264Error};
use crate::source::{Codec, Parsed, Track};

/// TS packet length.
const PACKET: usize = 188;
const PID_PMT: u16 = 0x1000;
const PID_VIDEO: u16 = 0x100;
const PID_AUDIO: u16 = 0x101;
/// 2^33: PTS/PCR wrap.
const PTS_WRAP: u64 = 1 << 33;
/// PMT stream type of H.264.
const STREAM_TYPE_H264: u8 = 0x1b;
/// PMT stream type of H.265 (named for the PMT's completeness; [`check`] refuses H.265).
const STREAM_TYPE_H265: u8 = 0x24;
/// PMT stream type of private PES data (Opus, with its registration descriptor).
const STREAM_TYPE_PRIVATE: u8 = 0x06;
/// PMT stream type of AAC in ADTS (ISO/IEC 13818-7 audio with ADTS transport syntax).
const STREAM_TYPE_ADTS: u8 = 0x0f;
/// PES stream id of the video stream.
const STREAM_ID_VIDEO: u8 = 0xe0;
/// PES stream id of private stream 1 (Opus).
const STREAM_ID_PRIVATE: u8 = 0xbd;
/// PES stream id of the first MPEG audio stream (AAC).
const STREAM_ID_AUDIO: u8 = 0xc0;

/// Why a fragment cannot be written as an MPEG-TS segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsError {
    /// A stored video sample is not valid length-prefixed H.264.
    #[error("invalid H.264 sample: {0}")]
    Video(H264Error),
    /// The video codec is not one KVS carries in MPEG-TS (H.265, see [`check`]).
    #[error("{0} video cannot be carried in MPEG-TS (use FRAGMENTED_MP4)")]
    UnsupportedVideo(&'static str),
    /// The audio codec configuration has no MPEG-TS form (see [`check`]).
    #[error("the audio cannot be carried in MPEG-TS: {0}")]
    UnsupportedAudio(AdtsError),
    /// A stored AAC access unit does not fit an ADTS frame.
    #[error("invalid AAC access unit: {0}")]
    Audio(AdtsError),
}

/// Whether `tracks` can be written as MPEG-TS: H.264, Opus, and AAC whose configuration
/// ADTS can express (object types 1–4 without explicit SBR/PS signalling, 1024-sample
/// frames, a standard sampling frequency). H.265 is refused, as KVS refuses it.
pub fn check(tracks: &[Track]) -> Result<(), TsError> {
    for t in tracks {
        match &t.codec {
            Codec::Aac(c) => {
                c.adts_frequency_index().map_err(TsError::UnsupportedAudio)?;
            }
            Codec::Hevc(_) => return Err(TsError::UnsupportedVideo("H.265")),
            Codec::Avc(_) | Codec::Opus(_) => {}
        }
    }
    Ok(())
}

/// MPEG-2 CRC-32 of PSI sections.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04c1_1db7 } else { crc << 1 };
        }
    }
    crc
}

/// A PSI section in its own packet (pointer field 0, 0xFF filler).
fn psi_packet(out: &mut Vec<u8>, pid: u16, section: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0x47, 0x40 | (pid >> 8) as u8, pid as u8, 0x10, 0x00]);
    out.extend_from_slice(section);
    out.extend_from_slice(&crc32(section).to_be_bytes());
    out.resize(start + PACKET, 0xff);
}

fn pat() -> Vec<u8> {
    let mut s = vec![0x00, 0xb0, 13, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01];
    s.extend_from_slice(&[0xe0 | (PID_PMT >> 8) as u8, PID_PMT as u8]);
    s
}

fn pmt(parsed: &Parsed<'_>) -> Vec<u8> {
    let mut streams = Vec::new();
    for t in &parsed.tracks {
        let (kind, pid, desc): (u8, u16, Vec<u8>) = match &t.codec {
            Codec::Avc(_) => (STREAM_TYPE_H264, PID_VIDEO, vec![]),
            // Never written: [`check`] refuses H.265 before a segment starts.
            Codec::Hevc(_) => (STREAM_TYPE_H265, PID_VIDEO, vec![]),
            Codec::Opus(h) => {
                (STREAM_TYPE_PRIVATE, PID_AUDIO, vec![0x05, 4, b'O', b'p', b'u', b's', 0x7f, 2, 0x80, h.channels])
            }
            Codec::Aac(_) => (STREAM_TYPE_ADTS, PID_AUDIO, vec![]),
        };
        streams.extend_from_slice(&[kind, 0xe0 | (pid >> 8) as u8, pid as u8, 0xf0, desc.len() as u8]);
        streams.extend_from_slice(&desc);
    }
    let len = 9 + streams.len() + 4;
    let mut s = vec![0x02, 0xb0 | (len >> 8) as u8, len as u8, 0x00, 0x01, 0xc1, 0x00, 0x00];
    s.extend_from_slice(&[0xe0 | (PID_VIDEO >> 8) as u8, PID_VIDEO as u8, 0xf0, 0x00]);
    s.extend_from_slice(&streams);
    s
}

fn pts_bytes(marker: u8, pts: u64) -> [u8; 5] {
    [
        (marker << 4) | (((pts >> 30) as u8 & 0x07) << 1) | 1,
        (pts >> 22) as u8,
        (((pts >> 15) as u8) << 1) | 1,
        (pts >> 7) as u8,
        ((pts as u8) << 1) | 1,
    ]
}

/// Splits one PES into TS packets on `pid`; the first may carry a PCR and the random
/// access flag, the last is padded with adaptation-field stuffing.
fn write_pes(out: &mut Vec<u8>, pid: u16, cc: &mut u8, pes: &[u8], pcr: Option<u64>, random_access: bool) {
    let mut rest = pes;
    let mut first = true;
    while first || !rest.is_empty() {
        let mut af: Option<Vec<u8>> = None;
        if first && (pcr.is_some() || random_access) {
            let mut a = vec![(if random_access { 0x40 } else { 0 }) | (if pcr.is_some() { 0x10 } else { 0 })];
            if let Some(p) = pcr {
                a.extend_from_slice(&[(p >> 25) as u8, (p >> 17) as u8, (p >> 9) as u8, (p >> 1) as u8]);
                a.extend_from_slice(&[(((p & 1) as u8) << 7) | 0x7e, 0x00]);
            }
            af = Some(a);
        }
        let room = 184 - af.as_ref().map_or(0, |a| 1 + a.len());
        let n = rest.len().min(room);
        if n < room {
            let mut a = af.take().unwrap_or_default();
            let content = 184 - n - 1;
            if content > 0 && a.is_empty() {
                a.push(0x00);
            }
            a.resize(content, 0xff);
            af = Some(a);
        }
        out.push(0x47);
        out.push((if first { 0x40 } else { 0 }) | (pid >> 8) as u8);
        out.push(pid as u8);
        out.push((if af.is_some() { 0x30 } else { 0x10 }) | (*cc & 0x0f));
        *cc = cc.wrapping_add(1);
        if let Some(a) = af {
            out.push(a.len() as u8);
            out.extend_from_slice(&a);
        }
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        first = false;
    }
}

fn pes_header(stream_id: u8, payload_len: usize, pts: u64) -> Vec<u8> {
    let len = payload_len + 8;
    let len_field = if len > 0xffff { 0 } else { len as u16 };
    let mut h = vec![0, 0, 1, stream_id];
    h.extend_from_slice(&len_field.to_be_bytes());
    h.extend_from_slice(&[0x80, 0x80, 5]);
    h.extend_from_slice(&pts_bytes(0x2, pts));
    h
}

/// One TS segment with every track of a parsed fragment (samples interleaved by time).
pub fn segment(parsed: &Parsed<'_>) -> Result<Vec<u8>, TsError> {
    check(&parsed.tracks)?;
    let mut out = Vec::new();
    psi_packet(&mut out, 0, &pat());
    psi_packet(&mut out, PID_PMT, &pmt(parsed));
    let mut order: Vec<(i64, usize, usize)> = Vec::new();
    for (ti, samples) in parsed.samples.iter().enumerate() {
        for (si, s) in samples.iter().enumerate() {
            order.push((s.time_ms, ti, si));
        }
    }
    order.sort_by_key(|&(t, ti, _)| (t, ti));
    let (mut cc_v, mut cc_a) = (0u8, 0u8);
    let mut payload = Vec::new();
    for (_, ti, si) in order {
        let (track, sample) = (&parsed.tracks[ti], &parsed.samples[ti][si]);
        let pts = (sample.time_ms.max(0) as u64 * 90) % PTS_WRAP;
        payload.clear();
        match &track.codec {
            Codec::Avc(cfg) => {
                // Our own access unit delimiter, SPS/PPS before keyframes, then the stored
                // NAL units except stored delimiters and parameter sets.
                payload.extend_from_slice(&[0, 0, 0, 1, 0x09, 0xf0]);
                if sample.keyframe {
                    for ps in cfg.sps.iter().chain(&cfg.pps) {
                        payload.extend_from_slice(&[0, 0, 0, 1]);
                        payload.extend_from_slice(ps);
                    }
                }
                for nal in h264::LengthPrefixedNals::new(sample.data, cfg.nal_length_size).map_err(TsError::Video)? {
                    let nal = nal.map_err(TsError::Video)?;
                    if matches!(h264::nal_type_of(nal), Some(7..=9)) && sample.keyframe
                        || h264::nal_type_of(nal) == Some(9)
                    {
                        continue;
                    }
                    payload.extend_from_slice(&[0, 0, 0, 1]);
                    payload.extend_from_slice(nal);
                }
                let mut pes = pes_header(STREAM_ID_VIDEO, payload.len(), pts);
                pes.extend_from_slice(&payload);
                let pcr = sample.keyframe.then_some(pts);
                write_pes(&mut out, PID_VIDEO, &mut cc_v, &pes, pcr, sample.keyframe);
            }
            Codec::Hevc(_) => return Err(TsError::UnsupportedVideo("H.265")),
            Codec::Opus(_) => {
                payload.extend_from_slice(&[0x7f, 0xe0]);
                let mut n = sample.data.len();
                while n >= 255 {
                    payload.push(0xff);
                    n -= 255;
                }
                payload.push(n as u8);
                payload.extend_from_slice(sample.data);
                let mut pes = pes_header(STREAM_ID_PRIVATE, payload.len(), pts);
                pes.extend_from_slice(&payload);
                write_pes(&mut out, PID_AUDIO, &mut cc_a, &pes, None, true);
            }
            Codec::Aac(cfg) => {
                payload.extend_from_slice(&cfg.adts_header(sample.data.len()).map_err(TsError::Audio)?);
                payload.extend_from_slice(sample.data);
                let mut pes = pes_header(STREAM_ID_AUDIO, payload.len(), pts);
                pes.extend_from_slice(&payload);
                write_pes(&mut out, PID_AUDIO, &mut cc_a, &pes, None, true);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_a_known_pat() {
        // PAT of ffmpeg's mpegts muxer (tsid 1, program 1 → PMT 0x1000).
        assert_eq!(crc32(&pat()), 0x2ab1_04b2);
    }

    #[test]
    fn pes_packets_are_188_bytes() {
        for len in [1usize, 100, 175, 176, 183, 184, 185, 1000] {
            let mut out = Vec::new();
            let mut cc = 0;
            write_pes(&mut out, PID_VIDEO, &mut cc, &vec![7u8; len], Some(90_000), true);
            assert_eq!(out.len() % PACKET, 0, "len {len}");
            assert_eq!(out.iter().step_by(PACKET).filter(|&&b| b == 0x47).count(), out.len() / PACKET);
        }
    }
}

#[cfg(test)]
mod aac_tests {
    use super::*;
    use crate::aac::AacConfig;
    use crate::source::Sample;

    fn aac_track(asc: &[u8]) -> Track {
        Track { number: 2, codec: Codec::Aac(AacConfig::parse(asc).unwrap()) }
    }

    /// The payload bytes of the TS packets on `pid` (adaptation fields dropped).
    fn pid_payload(ts: &[u8], pid: u16) -> Vec<u8> {
        let mut out = Vec::new();
        for p in ts.chunks(PACKET) {
            if (u16::from(p[1] & 0x1f) << 8 | u16::from(p[2])) != pid {
                continue;
            }
            let start = if p[3] & 0x20 != 0 { 5 + usize::from(p[4]) } else { 4 };
            out.extend_from_slice(&p[start..]);
        }
        out
    }

    #[test]
    fn aac_goes_out_as_adts_in_pes_with_stream_type_0x0f() {
        let units = [vec![0x21u8; 300], vec![0x22u8; 10]];
        let samples: Vec<Sample<'_>> = units
            .iter()
            .enumerate()
            .map(|(i, d)| Sample { time_ms: 1_000 + 23 * i as i64, duration: 1024, keyframe: true, data: d })
            .collect();
        let parsed = Parsed { tracks: vec![aac_track(&[0x12, 0x10])], samples: vec![samples], start_ms: 1_000 };
        let ts = segment(&parsed).unwrap();
        assert_eq!(ts.len() % PACKET, 0);
        let pmt = &ts[PACKET..2 * PACKET];
        // After the program info: stream type 0x0F on PID 0x101, no descriptors.
        assert_eq!(pmt[5 + 12..5 + 17], [STREAM_TYPE_ADTS, 0xe1, 0x01, 0xf0, 0x00]);
        let pes = pid_payload(&ts, PID_AUDIO);
        // PES: start code, stream id 0xC0, length, PTS flags, PTS of 1 s (90000).
        assert_eq!(pes[..4], [0, 0, 1, STREAM_ID_AUDIO]);
        assert_eq!(u16::from_be_bytes([pes[4], pes[5]]) as usize, 8 + 7 + 300);
        assert_eq!(pes[9..14], pts_bytes(0x2, 90_000));
        let adts = &pes[14..21];
        assert_eq!(adts, AacConfig::parse(&[0x12, 0x10]).unwrap().adts_header(300).unwrap());
        assert_eq!(pes[21..321], units[0][..]);
        // The second access unit follows in its own PES, 23 ms later.
        let second = &pes[321..];
        assert_eq!(second[..4], [0, 0, 1, STREAM_ID_AUDIO]);
        assert_eq!(second[9..14], pts_bytes(0x2, 90_000 + 23 * 90));
        assert_eq!(second[14..16], [0xff, 0xf1]);
    }

    #[test]
    fn aac_without_an_adts_form_is_refused_for_ts() {
        // Explicit HE-AAC; 960-sample frames; a non-standard rate (12345 Hz).
        for asc in [&[0x2b, 0x11, 0x88, 0x00][..], &[0x11, 0x96, 0x00, 0x00], &[0x17, 0x80, 0x18, 0x1c, 0x88, 0x00]] {
            let tracks = vec![aac_track(asc)];
            assert!(matches!(check(&tracks), Err(TsError::UnsupportedAudio(_))), "{asc:02x?}");
            let parsed = Parsed { tracks, samples: vec![vec![]], start_ms: 0 };
            assert!(matches!(segment(&parsed), Err(TsError::UnsupportedAudio(_))));
        }
        assert_eq!(check(&[aac_track(&[0x12, 0x10])]), Ok(()));
        // An access unit too long for ADTS' 13-bit frame length.
        let big = vec![0u8; 9_000];
        let sample = Sample { time_ms: 0, duration: 1024, keyframe: true, data: &big };
        let parsed = Parsed { tracks: vec![aac_track(&[0x12, 0x10])], samples: vec![vec![sample]], start_ms: 0 };
        assert!(matches!(segment(&parsed), Err(TsError::Audio(AdtsError::FrameTooLong(9_000)))));
    }
}
