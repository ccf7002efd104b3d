//! MPEG-TS segments (ISO/IEC 13818-1) for HLS `MPEG_TS` sessions, sans-IO.
//!
//! One program: H.264 (stream type 0x1B, PID 0x100, also the PCR PID) as Annex-B PES with
//! SPS/PPS before every keyframe, and Opus (private stream type 0x06, PID 0x101) mapped as
//! ETSI TS 102 366-style Opus-in-TS, the way ffmpeg reads and writes it: a registration
//! descriptor `Opus`, an extension descriptor (0x7F, tag 0x80) with the channel
//! configuration, and each packet prefixed by the `0x7FE0` control header and its size.

use crate::h264;
use crate::source::{Codec, Parsed};

/// TS packet length.
const PACKET: usize = 188;
const PID_PMT: u16 = 0x1000;
const PID_VIDEO: u16 = 0x100;
const PID_AUDIO: u16 = 0x101;
/// 2^33: PTS/PCR wrap.
const PTS_WRAP: u64 = 1 << 33;

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
            Codec::Avc(_) => (0x1b, PID_VIDEO, vec![]),
            Codec::Opus(h) => (0x06, PID_AUDIO, vec![0x05, 4, b'O', b'p', b'u', b's', 0x7f, 2, 0x80, h.channels]),
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
pub fn segment(parsed: &Parsed<'_>) -> Result<Vec<u8>, String> {
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
                for nal in h264::LengthPrefixedNals::new(sample.data, cfg.nal_length_size).map_err(|e| e.to_string())? {
                    let nal = nal.map_err(|e| e.to_string())?;
                    if matches!(h264::nal_type_of(nal), Some(7..=9)) && sample.keyframe
                        || h264::nal_type_of(nal) == Some(9)
                    {
                        continue;
                    }
                    payload.extend_from_slice(&[0, 0, 0, 1]);
                    payload.extend_from_slice(nal);
                }
                let mut pes = pes_header(0xe0, payload.len(), pts);
                pes.extend_from_slice(&payload);
                let pcr = sample.keyframe.then_some(pts);
                write_pes(&mut out, PID_VIDEO, &mut cc_v, &pes, pcr, sample.keyframe);
            }
            Codec::Opus(_) => {
                payload.extend_from_slice(&[0x7f, 0xe0]);
                let mut n = sample.data.len();
                while n >= 255 {
                    payload.push(0xff);
                    n -= 255;
                }
                payload.push(n as u8);
                payload.extend_from_slice(sample.data);
                let mut pes = pes_header(0xbd, payload.len(), pts);
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
