//! The floor's sender: N sessions, each one UDP socket with its own SSRCs and SRTP keys,
//! sending the packet pattern reel receives from a WebRTC camera (H.264 RTP packets of at
//! most [`MAX_PACKET`] bytes at the chosen bitrate and [`FPS`], Opus every 20 ms), paced
//! in real time from one thread.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::SessionKeys;
use super::srtp::{SrtpAead, SrtpSuite, TAG_LEN};

/// Largest SRTP packet sent (RTP header + payload + tag), like WebRTC senders' ~1200-byte MTU budget.
pub const MAX_PACKET: usize = 1200;
/// RTP fixed header bytes (no CSRCs, no extension).
const RTP_HEADER: usize = 12;
/// Largest media payload per packet.
pub const MAX_PAYLOAD: usize = MAX_PACKET - RTP_HEADER - TAG_LEN;
/// Video frames per second.
pub const FPS: u32 = 30;
/// Opus packet interval.
pub const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// Opus payload bytes per packet (~40 kbps, what a WebRTC camera's Opus encoder sends).
pub const AUDIO_PAYLOAD: usize = 100;
/// RTP payload types used (as in a typical SDP: H.264 96, Opus 111).
const PT_VIDEO: u8 = 96;
const PT_AUDIO: u8 = 111;

/// What the sender sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SenderReport {
    /// SRTP packets sent.
    pub packets: u64,
    /// UDP payload bytes sent (SRTP packets).
    pub bytes: u64,
    /// Plain media payload bytes sent, all sessions.
    pub payload_bytes: u64,
    /// Plain media payload bytes per session, in [`Sender::keys`] order.
    pub session_payload_bytes: Vec<u64>,
    /// `send` calls that failed (e.g. nobody listening: ECONNREFUSED).
    pub send_errors: u64,
    /// The latest any packet left after its scheduled time (pacing health).
    pub max_lateness: Duration,
}

/// N paced SRTP sessions toward one receiver address.
pub struct Sender {
    sessions: Vec<SendSession>,
    bitrate_bps: u64,
    frame_sizes: Vec<usize>,
}

/// One session's send side.
struct SendSession {
    keys: SessionKeys,
    socket: UdpSocket,
    aead: SrtpAead,
    video: RtpStream,
    audio: RtpStream,
    /// Offset of the next payload byte in this session's stream (see [`payload_byte`]).
    offset: u64,
    payload_bytes: u64,
}

/// Per-SSRC RTP counters.
struct RtpStream {
    ssrc: u32,
    pt: u8,
    seq: u16,
    roc: u32,
    ts_base: u32,
    count: u64,
}

/// Byte `offset` of session `session`'s plain payload stream (video and audio payloads in
/// send order). Deterministic, so a test can check the receiver's files byte for byte.
pub fn payload_byte(session: usize, offset: u64) -> u8 {
    (offset ^ (offset >> 8) ^ (offset >> 16)) as u8 ^ (session as u8).wrapping_mul(37)
}

impl Sender {
    /// `sessions` sessions sending to `target`, video payload at `bitrate_bps` in
    /// constant-size frames (see [`Sender::with_frame_sizes`]), encrypted with
    /// [`SrtpSuite::DEFAULT`]. Binds one ephemeral UDP socket per session and draws fresh
    /// SSRCs and session keys.
    pub fn new(target: SocketAddr, sessions: usize, bitrate_bps: u64) -> io::Result<Sender> {
        Sender::new_with_suite(target, sessions, bitrate_bps, SrtpSuite::DEFAULT)
    }

    /// Like [`Sender::new`], with an explicit SRTP suite.
    pub fn new_with_suite(
        target: SocketAddr,
        sessions: usize,
        bitrate_bps: u64,
        suite: SrtpSuite,
    ) -> io::Result<Sender> {
        let bind: SocketAddr = if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let mut ssrcs = HashSet::new();
        let mut out = Vec::with_capacity(sessions);
        for _ in 0..sessions {
            let keys = SessionKeys::random(suite, &mut ssrcs)?;
            let socket = UdpSocket::bind(bind)?;
            socket.connect(target)?;
            let mut r = [0u8; 12];
            super::fill_random(&mut r)?;
            let aead = SrtpAead::new(suite, &keys.key, &keys.salt)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let video = RtpStream::new(keys.video_ssrc, PT_VIDEO, &r[0..6]);
            let audio = RtpStream::new(keys.audio_ssrc, PT_AUDIO, &r[6..12]);
            out.push(SendSession { keys, socket, aead, video, audio, offset: 0, payload_bytes: 0 });
        }
        let frame = (bitrate_bps / 8 / u64::from(FPS)).max(1) as usize;
        Ok(Sender { sessions: out, bitrate_bps, frame_sizes: vec![frame] })
    }

    /// Use this frame-size pattern (e.g. [`super::fixture_frame_sizes`]), cycled and scaled
    /// so the mean video payload rate stays at the configured bitrate (keeps the I/P ratio).
    pub fn with_frame_sizes(mut self, sizes: &[usize]) -> Sender {
        let total: usize = sizes.iter().sum();
        if total == 0 {
            return self;
        }
        let target_mean = self.bitrate_bps as f64 / 8.0 / f64::from(FPS);
        let scale = target_mean / (total as f64 / sizes.len() as f64);
        self.frame_sizes = sizes.iter().map(|&s| ((s as f64 * scale).round() as usize).max(1)).collect();
        self
    }

    /// Each session's SSRCs and SRTP session keys, handed to the receiver directly (the
    /// floor skips DTLS, a one-time cost per session).
    pub fn keys(&self) -> Vec<SessionKeys> {
        self.sessions.iter().map(|s| s.keys.clone()).collect()
    }

    /// Send in real time for `duration` (session starts staggered across one frame
    /// interval), then return what was sent. May be called again to continue the streams.
    pub fn run_for(&mut self, duration: Duration) -> io::Result<SenderReport> {
        let frame_interval = Duration::from_secs(1) / FPS;
        let n = self.sessions.len().max(1) as u32;
        let start = Instant::now();
        let end = start + duration;
        // (due, session, is_video)
        let mut queue = BinaryHeap::new();
        for i in 0..self.sessions.len() {
            let first = start + frame_interval * i as u32 / n;
            queue.push(Reverse((first, i, true)));
            queue.push(Reverse((first, i, false)));
        }
        let mut report = SenderReport::default();
        let mut packet = Vec::with_capacity(MAX_PACKET + 64);
        while let Some(Reverse((due, i, is_video))) = queue.pop() {
            if due >= end {
                break;
            }
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            } else {
                report.max_lateness = report.max_lateness.max(now - due);
            }
            let Some(s) = self.sessions.get_mut(i) else { continue };
            if is_video {
                let size = self.frame_sizes[(s.video.count as usize) % self.frame_sizes.len()];
                s.send_video_frame(size, i, &mut packet, &mut report);
                queue.push(Reverse((due + frame_interval, i, true)));
            } else {
                s.send_audio(i, &mut packet, &mut report);
                queue.push(Reverse((due + AUDIO_INTERVAL, i, false)));
            }
        }
        report.session_payload_bytes = self.sessions.iter().map(|s| s.payload_bytes).collect();
        report.payload_bytes = report.session_payload_bytes.iter().sum();
        Ok(report)
    }
}

impl RtpStream {
    fn new(ssrc: u32, pt: u8, random: &[u8]) -> RtpStream {
        let seq = u16::from_be_bytes([random[0], random[1]]);
        let ts_base = u32::from_be_bytes([random[2], random[3], random[4], random[5]]);
        RtpStream { ssrc, pt, seq, roc: 0, ts_base, count: 0 }
    }

    /// Write the 12-byte header for the next packet into `out` and advance seq/ROC.
    /// Returns the ROC the packet must be protected with.
    fn header(&mut self, out: &mut Vec<u8>, timestamp: u32, marker: bool) -> u32 {
        out.clear();
        out.push(0x80);
        out.push(self.pt | if marker { 0x80 } else { 0 });
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        let roc = self.roc;
        self.seq = self.seq.wrapping_add(1);
        if self.seq == 0 {
            self.roc = self.roc.wrapping_add(1);
        }
        roc
    }
}

impl SendSession {
    /// Packetize one frame of `size` payload bytes into near-equal packets (marker on the last).
    fn send_video_frame(&mut self, size: usize, index: usize, packet: &mut Vec<u8>, report: &mut SenderReport) {
        let timestamp = self.video.ts_base.wrapping_add((self.video.count as u32).wrapping_mul(90_000 / FPS));
        self.video.count += 1;
        let parts = size.div_ceil(MAX_PAYLOAD).max(1);
        let mut left = size;
        for p in 0..parts {
            let len = left / (parts - p);
            left -= len;
            let roc = self.video.header(packet, timestamp, p + 1 == parts);
            self.finish(roc, len, index, packet, report);
        }
    }

    /// One Opus packet.
    fn send_audio(&mut self, index: usize, packet: &mut Vec<u8>, report: &mut SenderReport) {
        let timestamp = self.audio.ts_base.wrapping_add((self.audio.count as u32).wrapping_mul(960));
        self.audio.count += 1;
        let roc = self.audio.header(packet, timestamp, false);
        self.finish(roc, AUDIO_PAYLOAD, index, packet, report);
    }

    /// Append `len` pattern payload bytes to the header in `packet`, protect, send.
    fn finish(&mut self, roc: u32, len: usize, index: usize, packet: &mut Vec<u8>, report: &mut SenderReport) {
        let offset = self.offset;
        packet.extend((0..len as u64).map(|k| payload_byte(index, offset + k)));
        if self.aead.protect(roc, packet).is_err() {
            report.send_errors += 1;
            return;
        }
        match self.socket.send(packet) {
            Ok(_) => {
                self.offset += len as u64;
                self.payload_bytes += len as u64;
                report.packets += 1;
                report.bytes += packet.len() as u64;
            }
            Err(_) => report.send_errors += 1,
        }
    }
}
