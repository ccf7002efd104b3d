//! What a simulated camera sends: the embedded fixture clip (H.264 constrained baseline
//! 42e01f, 640x360, 30 fps, an IDR every 2 s, plus 20 ms Opus packets), looped without end
//! and padded to a target bitrate with H.264 filler-data NAL units (type 12).
//!
//! Filler keeps the load honest: the bytes cross the network, get SRTP-protected,
//! depacketized and parsed like any slice data, and decoders (and reel's sample writer,
//! which drops type 12 like AUDs) ignore them. Padding is spread so the cumulative video
//! bytes follow the budget: an IDR stays large and the P-frames after it get less filler.
//!
//! The clip is 180 frames with IDRs at 0, 60 and 120, so the loop point is an IDR and RTP
//! timestamps simply keep counting (frame `i` is at `i * 3000` ticks of 90 kHz, audio packet
//! `j` at `j * 960` ticks of 48 kHz).

use std::sync::Arc;
use std::time::Duration;

use str0m::unversioned::{H264Packetizer, Packetizer};

/// The H.264 fixture (see fixtures/README.md, `test-h264-gop2s.h264`).
static H264_FIXTURE: &[u8] = include_bytes!("../../../fixtures/test-h264-gop2s.h264");
/// The Opus fixture (`test-opus.packets`: u32-BE length + packet, 20 ms each).
static OPUS_FIXTURE: &[u8] = include_bytes!("../../../fixtures/test-opus.packets");

/// Video frame rate of the fixture.
pub const FPS: u64 = 30;
/// RTP ticks (90 kHz) per video frame.
pub const VIDEO_TICKS_PER_FRAME: u64 = 3_000;
/// Duration of one Opus packet.
pub const AUDIO_PACKET: Duration = Duration::from_millis(20);
/// RTP ticks (48 kHz) per Opus packet.
pub const AUDIO_TICKS_PER_PACKET: u64 = 960;
/// Default target bitrate of a camera (video + audio payload), bits per second.
pub const DEFAULT_BITRATE_BPS: u64 = 1_000_000;
/// The smallest filler NAL unit: start code (4), header (1), trailing bits (1).
pub const MIN_FILLER: usize = 6;

/// H.264 NAL unit types this module cares about.
pub mod nal {
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
    /// Filler data.
    pub const FILLER: u8 = 12;
}

/// Why the embedded media could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The H.264 fixture has no access units.
    #[error("the H.264 fixture holds no access units")]
    NoVideo,
    /// The Opus fixture is malformed.
    #[error("the Opus fixture is truncated at byte {0}")]
    BadOpus(usize),
    /// The first access unit is not an IDR (the loop must start on one).
    #[error("the H.264 fixture does not start with an IDR")]
    NoLeadingIdr,
    /// str0m's packetizer refused a frame.
    #[error("packetizing the H.264 fixture: {0}")]
    Packetize(String),
}

/// One video access unit ready to send.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    /// Annex-B bytes (4-byte start codes, no AUD), filler NAL last when padded.
    pub data: Arc<[u8]>,
    /// Whether it is an IDR.
    pub keyframe: bool,
    /// Bytes a recorder keeps: the NAL units other than SPS/PPS/AUD/filler, without start codes.
    pub sample_bytes: usize,
    /// Bytes of the filler NAL unit (with its start code), 0 when unpadded.
    pub filler_bytes: usize,
    /// The frame's RTP payloads, in order (the last one carries the marker): what str0m's
    /// own H.264 packetizer makes of `data` at its default MTU, computed once for every
    /// publisher and every loop (see [`rtp_payloads`]).
    pub rtp_payloads: Vec<Arc<[u8]>>,
}

/// The looped media of one camera (shared by every publisher of a run).
#[derive(Debug)]
pub struct MediaSource {
    video: Vec<VideoFrame>,
    audio: Vec<Arc<[u8]>>,
    bitrate_bps: u64,
}

impl MediaSource {
    /// The fixture clip padded to `bitrate_bps` of payload (video + audio). Below the clip's
    /// own rate nothing is padded (the clip's rate is what gets sent).
    pub fn new(bitrate_bps: u64) -> Result<Self, SourceError> {
        let aus = access_units(H264_FIXTURE);
        if aus.is_empty() {
            return Err(SourceError::NoVideo);
        }
        let audio = opus_packets(OPUS_FIXTURE)?;
        let loop_secs = aus.len() as f64 / FPS as f64;
        let audio_bytes: usize = audio.iter().map(|p| p.len()).sum();
        // Audio loops on its own period; its byte rate is what counts against the budget.
        let audio_bps = audio_bytes as f64 * 8.0 / (audio.len() as f64 * AUDIO_PACKET.as_secs_f64());
        let video_budget = ((bitrate_bps as f64 - audio_bps).max(0.0) * loop_secs / 8.0) as usize;
        let n = aus.len();
        let (mut sent, mut video) = (0usize, Vec::with_capacity(n));
        let mut packetizer = H264Packetizer::default();
        for (i, nals) in aus.iter().enumerate() {
            let mut data = Vec::new();
            let (mut keyframe, mut sample_bytes) = (false, 0);
            for nal in nals {
                let t = nal_type(nal);
                if t == Some(nal::AUD) {
                    continue;
                }
                keyframe |= t == Some(nal::IDR);
                if !matches!(t, Some(nal::SPS | nal::PPS | nal::FILLER)) {
                    sample_bytes += nal.len();
                }
                data.extend_from_slice(&[0, 0, 0, 1]);
                data.extend_from_slice(nal);
            }
            let due = video_budget * (i + 1) / n;
            let want = due.saturating_sub(sent + data.len());
            let filler_bytes = if want >= MIN_FILLER { want } else { 0 };
            if filler_bytes > 0 {
                append_filler(&mut data, filler_bytes);
            }
            sent += data.len();
            let rtp_payloads = rtp_payloads(&mut packetizer, &data)?;
            video.push(VideoFrame { data: data.into(), keyframe, sample_bytes, filler_bytes, rtp_payloads });
        }
        if !video.first().is_some_and(|f| f.keyframe) {
            return Err(SourceError::NoLeadingIdr);
        }
        Ok(Self { video, audio, bitrate_bps })
    }

    /// Video frame `i` of the endless loop.
    pub fn video_frame(&self, i: u64) -> &VideoFrame {
        &self.video[(i % self.video.len() as u64) as usize]
    }

    /// Opus packet `j` of the endless loop.
    pub fn audio_packet(&self, j: u64) -> &[u8] {
        self.audio_payload(j)
    }

    /// Opus packet `j` of the endless loop, shareable (it is its own RTP payload).
    pub fn audio_payload(&self, j: u64) -> &Arc<[u8]> {
        &self.audio[(j % self.audio.len() as u64) as usize]
    }

    /// Frames in one loop of the clip.
    pub fn video_len(&self) -> usize {
        self.video.len()
    }

    /// The bitrate this source was built for.
    pub fn bitrate_bps(&self) -> u64 {
        self.bitrate_bps
    }

    /// Bytes per second actually handed to the RTP packetizers (video Annex-B + Opus).
    pub fn sent_bytes_per_sec(&self) -> f64 {
        let v: usize = self.video.iter().map(|f| f.data.len()).sum();
        let a: usize = self.audio.iter().map(|p| p.len()).sum();
        v as f64 * FPS as f64 / self.video.len() as f64
            + a as f64 / (self.audio.len() as f64 * AUDIO_PACKET.as_secs_f64())
    }

    /// Bytes per second a recorder has to keep (video samples without parameter sets,
    /// AUDs or filler, plus Opus): the denominator of "stored bytes / payload".
    pub fn sample_bytes_per_sec(&self) -> f64 {
        let v: usize = self.video.iter().map(|f| f.sample_bytes).sum();
        let a: usize = self.audio.iter().map(|p| p.len()).sum();
        v as f64 * FPS as f64 / self.video.len() as f64
            + a as f64 / (self.audio.len() as f64 * AUDIO_PACKET.as_secs_f64())
    }
}

/// Largest RTP payload str0m's frame writer packetizes to: its default MTU less the SRTP
/// tag (16 bytes), rounded down to the SRTP block size (16), as `Media::do_payload` does.
pub fn rtp_payload_mtu() -> usize {
    let rtp_size = str0m::DATAGRAM_MTU_TARGET - 16;
    rtp_size - rtp_size % 16
}

/// An Annex-B access unit as the RTP payloads str0m's frame writer would send for it
/// (`packetizer` keeps str0m's state across frames: SPS and PPS go out aggregated with the
/// next NAL unit). Publishers then write these packets directly, so the byte-by-byte
/// start-code scan runs once per clip instead of once per frame per session.
pub fn rtp_payloads(packetizer: &mut H264Packetizer, data: &[u8]) -> Result<Vec<Arc<[u8]>>, SourceError> {
    let payloads = packetizer.packetize(rtp_payload_mtu(), data).map_err(|e| SourceError::Packetize(e.to_string()))?;
    Ok(payloads.into_iter().map(Arc::from).collect())
}

/// Appends one filler-data NAL unit of exactly `total` bytes (start code included):
/// `00 00 00 01 0C FF … FF 80` (nal_ref_idc 0, type 12, 0xFF payload, rbsp trailing bits).
pub fn append_filler(out: &mut Vec<u8>, total: usize) {
    let total = total.max(MIN_FILLER);
    out.extend_from_slice(&[0, 0, 0, 1, nal::FILLER]);
    out.extend(std::iter::repeat_n(0xFF, total - MIN_FILLER));
    out.push(0x80);
}

/// The NAL unit type of a NAL unit (first byte's low 5 bits).
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1F)
}

/// The NAL units of an Annex-B byte stream (without start codes; trailing zero bytes of a
/// NAL unit, which belong to the next start code, are dropped).
pub fn split_annex_b(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(data.len(), |&next| next - 3);
        while end > s && data[end - 1] == 0 {
            end -= 1;
        }
        if end > s {
            nals.push(&data[s..end]);
        }
    }
    nals
}

/// The access units of an Annex-B stream that has an AUD before every access unit.
fn access_units(data: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut aus: Vec<Vec<&[u8]>> = Vec::new();
    for nal in split_annex_b(data) {
        if nal_type(nal) == Some(nal::AUD) || aus.is_empty() {
            aus.push(Vec::new());
        }
        if let Some(au) = aus.last_mut() {
            au.push(nal);
        }
    }
    aus.retain(|au| au.iter().any(|n| matches!(nal_type(n), Some(1..=5))));
    aus
}

/// The Opus packets of the `.packets` fixture.
fn opus_packets(data: &[u8]) -> Result<Vec<Arc<[u8]>>, SourceError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let len_bytes: [u8; 4] = data.get(i..i + 4).and_then(|b| b.try_into().ok()).ok_or(SourceError::BadOpus(i))?;
        let n = u32::from_be_bytes(len_bytes) as usize;
        let packet = data.get(i + 4..i + 4 + n).ok_or(SourceError::BadOpus(i))?;
        out.push(packet.into());
        i += 4 + n;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_is_six_seconds_with_an_idr_every_two() {
        let s = MediaSource::new(0).unwrap();
        assert_eq!(s.video_len(), 180);
        let idrs: Vec<usize> = (0..180).filter(|&i| s.video_frame(i as u64).keyframe).collect();
        assert_eq!(idrs, vec![0, 60, 120]);
        assert!((300..=301).contains(&s.audio.len()), "{}", s.audio.len());
        // Below the clip's own rate nothing is padded.
        assert!((0..180).all(|i| s.video_frame(i).filler_bytes == 0));
        // The loop wraps onto the IDR.
        assert!(s.video_frame(180).keyframe);
    }

    #[test]
    fn padding_reaches_the_target_bitrate() {
        for bps in [500_000u64, 1_000_000, 4_000_000] {
            let s = MediaSource::new(bps).unwrap();
            let got = s.sent_bytes_per_sec() * 8.0;
            assert!((got - bps as f64).abs() / (bps as f64) < 0.01, "{bps}: got {got}");
            // The samples a recorder keeps are what the clip holds, whatever the padding.
            let plain = MediaSource::new(0).unwrap();
            assert_eq!(s.sample_bytes_per_sec(), plain.sample_bytes_per_sec());
        }
    }

    #[test]
    fn rtp_payloads_fit_the_mtu_and_carry_every_nal_unit() {
        let source = MediaSource::new(1_000_000).unwrap();
        for i in 0..source.video_len() as u64 {
            let frame = source.video_frame(i);
            assert!(!frame.rtp_payloads.is_empty(), "frame {i}");
            assert!(frame.rtp_payloads.iter().all(|p| p.len() <= rtp_payload_mtu()), "frame {i}");
            // Every NAL unit byte but the start codes is in the payloads (FU-A drops one
            // header byte per fragmented unit and adds two per fragment; STAP-A adds sizes).
            let nal_bytes: usize = split_annex_b(&frame.data).iter().map(|n| n.len()).sum();
            let payload_bytes: usize = frame.rtp_payloads.iter().map(|p| p.len()).sum();
            assert!(payload_bytes >= nal_bytes, "frame {i}: {payload_bytes} < {nal_bytes}");
            assert!(payload_bytes < nal_bytes + 3 * frame.rtp_payloads.len() + 8, "frame {i}");
        }
        // An IDR starts with SPS + PPS aggregated (STAP-A, type 24), as str0m sends them.
        assert_eq!(source.video_frame(0).rtp_payloads[0][0] & 0x1F, 24);
    }

    #[test]
    fn padded_access_units_parse_back_to_the_same_slices_plus_one_filler() {
        let plain = MediaSource::new(0).unwrap();
        let padded = MediaSource::new(1_000_000).unwrap();
        let mut padded_frames = 0;
        for i in 0..180 {
            let a = split_annex_b(&plain.video_frame(i).data);
            let b = split_annex_b(&padded.video_frame(i).data);
            let f = padded.video_frame(i);
            if f.filler_bytes == 0 {
                assert_eq!(a, b);
                continue;
            }
            padded_frames += 1;
            assert_eq!(b.len(), a.len() + 1, "frame {i}");
            assert_eq!(&b[..a.len()], &a[..], "frame {i}: slices changed");
            let filler = b[a.len()];
            assert_eq!(nal_type(filler), Some(nal::FILLER));
            assert_eq!(filler[0] >> 5 & 0x3, 0, "filler has nal_ref_idc 0");
            assert_eq!(filler.last(), Some(&0x80), "rbsp trailing bits");
            assert!(filler[1..filler.len() - 1].iter().all(|&x| x == 0xFF));
            assert_eq!(filler.len() + 4, f.filler_bytes);
            // No AUD is sent; parameter sets ride with each IDR.
            assert!(b.iter().all(|n| nal_type(n) != Some(nal::AUD)));
        }
        assert!(padded_frames > 150, "only {padded_frames} frames padded");
        for i in [0u64, 60, 120] {
            let types: Vec<u8> =
                split_annex_b(&padded.video_frame(i).data).iter().filter_map(|n| nal_type(n)).collect();
            assert_eq!(&types[..2], &[nal::SPS, nal::PPS], "IDR {i}: {types:?}");
        }
    }

    #[test]
    fn filler_has_the_exact_size_and_no_start_code_emulation() {
        for total in [MIN_FILLER, 7, 100, 5000] {
            let mut v = Vec::new();
            append_filler(&mut v, total);
            assert_eq!(v.len(), total);
            assert_eq!(split_annex_b(&v).len(), 1);
        }
    }

    #[test]
    fn annex_b_split_handles_3_and_4_byte_start_codes() {
        let data = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4];
        let nals = split_annex_b(&data);
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4][..]]);
        assert!(split_annex_b(&[1, 2, 3]).is_empty());
    }
}
