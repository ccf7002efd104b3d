//! The master's received media, from str0m's queued RTP packets to frames: the storage
//! session's `Rtc` runs in receive-queue mode (`RtcConfig::set_rtp_receive_queue`, a
//! vendored-str0m patch), so str0m keeps ICE, DTLS, SRTP and the NACK/TWCC/receiver-report
//! bookkeeping while reel reorders and depacketizes ([`reel_media::rtp_rx`]). An established
//! session's packet then costs no walk of str0m's event and timer trees (issue 18).

use str0m::Rtc;
use str0m::format::PayloadParams;
use str0m::media::Mid;
use str0m::rtp::ExtensionValues;
use str0m::rtp::rtcp::SenderInfo;

use super::fanout::Packet;
use super::ingest::{self, ClockAnchor};
use reel_media::fragmenter::MediaFrame;
use reel_media::rtp_rx::{Assembler, AssemblerConfig, AssemblerStats, RtpIn, RxCodec, RxFrame};
use reel_media::timing::MediaKind as Track;

/// One track's reassembler and what its frames need from str0m.
struct TrackRx {
    track: Track,
    mid: Mid,
    assembler: Assembler,
    /// The master's payload parameters of this track (learnt from its first packet), which
    /// forwarded packets carry to the viewers' send streams.
    params: Option<PayloadParams>,
    /// The latest RTCP sender report of the track's stream (lip sync, producer time).
    sender_info: Option<SenderInfo>,
}

impl TrackRx {
    fn new(track: Track, mid: Mid, codec: RxCodec, cfg: AssemblerConfig) -> Self {
        Self { track, mid, assembler: Assembler::new(codec, cfg), params: None, sender_info: None }
    }
}

/// A depacketized frame of the master with what the fragmenter and the viewers need.
pub struct ReceivedFrame {
    /// Video or audio.
    pub track: Track,
    /// The frame.
    pub frame: RxFrame,
    /// The stream's latest sender report when the frame came out.
    pub sender_info: Option<SenderInfo>,
    /// The track's payload parameters (None until str0m mapped the payload type).
    pub params: Option<PayloadParams>,
}

/// The master's video and audio reassemblers.
pub struct MediaRx {
    video: TrackRx,
    audio: TrackRx,
}

impl MediaRx {
    /// Reassemblers for the master's `video` (H.264) and `audio` (Opus) mids.
    pub fn new(video: Mid, audio: Mid) -> Self {
        Self {
            video: TrackRx::new(Track::Video, video, RxCodec::H264, AssemblerConfig::video()),
            audio: TrackRx::new(Track::Audio, audio, RxCodec::Opus, AssemblerConfig::audio()),
        }
    }

    /// Moves every packet str0m queued into its track's reassembler; true if there was any.
    /// With `forward` (the channel has live viewers), each packet is also queued there for
    /// them, tagged with `source` (this master session's id), as it arrives: viewers get
    /// the master's packets, not frames reassembled and packetized again.
    pub fn take(&mut self, rtc: &mut Rtc, anchor: &ClockAnchor, mut forward: Option<(&mut Vec<Packet>, u64)>) -> bool {
        let mut any = false;
        while let Some(mut r) = rtc.poll_received_rtp() {
            let t = if r.mid == self.video.mid {
                &mut self.video
            } else if r.mid == self.audio.mid {
                &mut self.audio
            } else {
                continue;
            };
            any = true;
            let p = &r.packet;
            if t.params.is_none_or(|q| q.pt() != p.header.payload_type) {
                t.params = rtc.codec_config().params().iter().find(|q| q.pt() == p.header.payload_type).copied();
            }
            if p.last_sender_info.is_some() {
                t.sender_info = p.last_sender_info;
            }
            t.assembler.push(RtpIn {
                seq: *p.seq_no,
                rtp_time: p.time.numer(),
                marker: p.header.marker,
                arrival_us: anchor.unix_us(p.timestamp),
                payload: &p.payload,
            });
            let Some((out, source)) = forward.as_mut() else { continue };
            let Some(params) = t.params.filter(|_| !p.payload.is_empty()) else { continue };
            let ext = &p.header.ext_vals;
            let kept = ExtensionValues {
                audio_level: ext.audio_level,
                voice_activity: ext.voice_activity,
                video_orientation: ext.video_orientation,
                ..Default::default()
            };
            let entry = t.track == Track::Video && reel_media::rtp_rx::h264::is_decoder_entry(&p.payload);
            let (seq, rtp_time, marker, arrival) = (*p.seq_no, p.header.timestamp, p.header.marker, p.timestamp);
            out.push(Packet {
                track: t.track,
                source: *source,
                seq,
                rtp_time,
                marker,
                payload: std::mem::take(&mut r.packet.payload),
                arrival,
                params,
                entry,
                ext: kept,
            });
        }
        any
    }

    /// The next complete frame, video first.
    pub fn poll_frame(&mut self) -> Option<ReceivedFrame> {
        for (track, t) in [(Track::Video, &mut self.video), (Track::Audio, &mut self.audio)] {
            if let Some(frame) = t.assembler.poll_frame() {
                return Some(ReceivedFrame { track, frame, sender_info: t.sender_info, params: t.params });
            }
        }
        None
    }

    /// When [`MediaRx::handle_timeout`] must run (Unix µs): a gap waited long enough.
    pub fn poll_timeout(&self) -> Option<i64> {
        match (self.video.assembler.poll_timeout(), self.audio.assembler.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Gives up on gaps that waited long enough at `now_us` (Unix µs).
    pub fn handle_timeout(&mut self, now_us: i64) {
        self.video.assembler.handle_timeout(now_us);
        self.audio.assembler.handle_timeout(now_us);
    }

    /// Packets held by both reassemblers.
    pub fn buffered(&self) -> usize {
        self.video.assembler.buffered() + self.audio.assembler.buffered()
    }

    /// The video and audio reassemblers' counters.
    pub fn stats(&self) -> (AssemblerStats, AssemblerStats) {
        (self.video.assembler.stats(), self.audio.assembler.stats())
    }
}

impl ReceivedFrame {
    /// The fragmenter's input for this frame (consumes the data: no copy).
    pub fn into_media_frame(self) -> MediaFrame {
        ingest::received_media_frame(self.track, self.frame, self.sender_info)
    }
}
