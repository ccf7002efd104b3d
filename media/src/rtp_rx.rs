//! Received RTP packets → frames (sans-IO): the reorder buffer and depacketizers that turn
//! str0m's authenticated, decrypted, RTX-unwrapped packets into the frames the
//! [`crate::fragmenter`] stores.
//!
//! Feed every packet of one stream (one SSRC, one codec) to [`Assembler::push`], call
//! [`Assembler::handle_timeout`] when [`Assembler::poll_timeout`] says so, and drain
//! [`Assembler::poll_frame`] after each call. Rules:
//! - Packets are consumed strictly in sequence order from the first one seen. Older ones
//!   (already consumed or skipped) are `late`, repeats of buffered ones `duplicates`; one
//!   [`MAX_BUFFERED_PACKETS`] or more ahead (or one that would overflow the buffer) means the
//!   sender jumped: everything buffered is dropped and the stream restarts there (`resets`).
//! - A missing packet is waited for (retransmissions come late) until more than
//!   [`AssemblerConfig::hold_back`] packets wait behind it or the oldest of them arrived
//!   [`AssemblerConfig::max_wait_us`] ago; then it is given up (`gaps`).
//! - H.264 ([`h264`], RFC 6184 packetization-mode 1): a frame is the run of consecutive
//!   packets with one RTP time, ended by the marker bit or by the next packet's new RTP time.
//!   Opus: one packet, one frame.
//! - No frame is ever emitted with a packet missing. After a loss, a reset or a dropped
//!   (`malformed`) frame, the rest of the broken frame is discarded, assembly resumes at the
//!   next frame head with a new RTP time, and that frame has `contiguous: false`. A stream
//!   starts that way too (its first packets may be the middle of a frame): its first frame
//!   is contiguous unless packets were skipped before it.
//! - An empty H.264 payload between frames is padding (a padding-only packet on the media
//!   stream): it is skipped and breaks nothing. Inside a frame, and for Opus, it is malformed.
//! - State is bounded: at most [`MAX_BUFFERED_PACKETS`] packets and [`MAX_BUFFERED_BYTES`]
//!   of payload wait in the reorder buffer, and a frame holds at most [`MAX_FRAME_BYTES`].
//!
//! Every packet pushed is accounted for exactly once (see [`AssemblerStats`]).

mod fuzz;
pub mod h264;
mod reorder;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

#[doc(hidden)]
pub use fuzz::fuzz_drive;
use reorder::{Insert, Reorder, Slot};

/// Most packets the reorder buffer holds (a packet this far ahead of the next expected one
/// resets the stream).
pub const MAX_BUFFERED_PACKETS: usize = 1024;
/// Most payload bytes the reorder buffer holds (8 MiB).
pub const MAX_BUFFERED_BYTES: usize = 8 << 20;
/// Largest frame (Annex-B bytes for H.264, the payload for Opus) emitted (8 MiB); larger
/// frames are dropped as malformed.
pub const MAX_FRAME_BYTES: usize = 8 << 20;

/// One received RTP packet: authenticated, decrypted, RTX-unwrapped, padding removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpIn<'a> {
    /// Extended sequence number (never wraps).
    pub seq: u64,
    /// Extended RTP timestamp in clock ticks (90 kHz H.264, 48 kHz Opus).
    pub rtp_time: u64,
    /// The RTP marker bit (H.264: last packet of a frame).
    pub marker: bool,
    /// Receive time, µs on the caller's clock (monotonic, may repeat).
    pub arrival_us: i64,
    /// The RTP payload.
    pub payload: &'a [u8],
}

/// The payload format of an [`Assembler`]'s stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxCodec {
    /// H.264, RFC 6184 packetization-mode 1 (single NAL, STAP-A, FU-A).
    H264,
    /// Opus, RFC 7587 (one packet per frame).
    Opus,
}

/// How long an [`Assembler`] waits for a missing packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssemblerConfig {
    /// A missing packet is given up once more than this many packets wait behind it.
    pub hold_back: usize,
    /// A missing packet is given up once the oldest packet waiting behind it arrived this
    /// many µs ago.
    pub max_wait_us: i64,
}

impl AssemblerConfig {
    /// Video: 30 packets, 500 ms (a keyframe spans many packets; NACK round trips are slow).
    pub fn video() -> Self {
        Self { hold_back: 30, max_wait_us: 500_000 }
    }

    /// Audio: 15 packets, 500 ms.
    pub fn audio() -> Self {
        Self { hold_back: 15, max_wait_us: 500_000 }
    }
}

/// One depacketized frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxFrame {
    /// Extended RTP timestamp of the frame.
    pub rtp_time: u64,
    /// Arrival of the frame's first packet (by sequence number), µs on the caller's clock.
    pub arrival_us: i64,
    /// False when anything (a packet, a frame) was lost or dropped since the previous frame
    /// this assembler emitted (or since it started, for the first frame).
    pub contiguous: bool,
    /// H.264: the frame contains an IDR NAL unit (type 5). Opus: always true.
    pub keyframe: bool,
    /// H.264: Annex B, every NAL unit prefixed with `00 00 00 01`. Opus: the payload.
    pub data: Vec<u8>,
    /// Sequence number of the frame's first packet.
    pub first_seq: u64,
    /// Sequence number of the frame's last packet (all packets in between are in the frame).
    pub last_seq: u64,
}

/// Counters of an [`Assembler`].
///
/// Every pushed packet is counted once: `packets = duplicates + late + padding +
/// dropped_packets + (packets of emitted frames) + buffered() + (packets of the frame being
/// assembled)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AssemblerStats {
    /// Packets pushed.
    pub packets: u64,
    /// Frames emitted.
    pub frames: u64,
    /// Packets dropped because the same sequence number was already buffered.
    pub duplicates: u64,
    /// Packets dropped because their sequence number was already consumed or given up.
    pub late: u64,
    /// Missing runs of sequence numbers given up (by count or by time).
    pub gaps: u64,
    /// Received packets discarded without being emitted: buffered ones dropped by a reset,
    /// those of frames dropped for loss or as malformed, and those skipped while resyncing.
    pub dropped_packets: u64,
    /// Frames dropped as malformed (see [`RxError`]).
    pub malformed: u64,
    /// Sequence number jumps that reset the reorder buffer.
    pub resets: u64,
    /// H.264 packets with an empty payload between frames (padding-only packets on the
    /// media stream): consumed, carrying nothing, breaking nothing.
    pub padding: u64,
}

/// Why a frame was dropped as malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RxError {
    /// A packet of the frame has an empty payload.
    #[error("empty RTP payload")]
    EmptyPayload,
    /// The payload's NAL unit type is not one of single NAL (1–23), STAP-A (24), FU-A (28).
    #[error("unsupported H.264 payload type {0}")]
    UnsupportedType(u8),
    /// A STAP-A holds no NAL unit at all.
    #[error("STAP-A without NAL units")]
    EmptyStapA,
    /// A STAP-A entry's size or data runs past the payload.
    #[error("truncated STAP-A entry")]
    TruncatedStapA,
    /// A STAP-A entry has size 0.
    #[error("zero-size STAP-A entry")]
    ZeroSizeStapA,
    /// A FU-A payload has no FU header.
    #[error("FU-A without FU header")]
    ShortFuA,
    /// A FU-A continues a NAL unit that was never started (no S bit seen).
    #[error("FU-A fragment without a start")]
    FuAWithoutStart,
    /// A packet starts a NAL unit while a fragmented one is still open.
    #[error("fragmented NAL unit interrupted")]
    NalInterrupted,
    /// The frame ends while a fragmented NAL unit is still open (no E bit seen).
    #[error("fragmented NAL unit open at frame end")]
    NalOpenAtEnd,
    /// The frame holds no NAL unit.
    #[error("frame without NAL units")]
    NoNalUnits,
    /// The frame exceeds [`MAX_FRAME_BYTES`].
    #[error("frame larger than {MAX_FRAME_BYTES} bytes")]
    FrameTooLarge,
}

/// A frame being assembled (or dropped).
#[derive(Debug)]
struct Building {
    rtp_time: u64,
    arrival_us: i64,
    first_seq: u64,
    last_seq: u64,
    /// Packets consumed into it so far.
    packets: u64,
}

/// Whether consumption is in step with the sender's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
    /// The next packet continues the current frame or starts a new one.
    InSync,
    /// Something was lost or dropped: skip packets until a frame head with an RTP time
    /// other than `broken_time` (the RTP time of the broken frame, when known).
    Resync { broken_time: Option<u64> },
}

/// Reorders one stream's packets and depacketizes them into frames (see the module docs).
#[derive(Debug)]
pub struct Assembler {
    codec: RxCodec,
    cfg: AssemblerConfig,
    reorder: Reorder,
    frame: Option<Building>,
    au: h264::AccessUnitBuilder,
    sync: Sync,
    /// Something was lost or dropped since the last emitted frame.
    broken: bool,
    out: VecDeque<RxFrame>,
    stats: AssemblerStats,
    last_error: Option<RxError>,
}

impl Assembler {
    /// An assembler for one stream of `codec`, waiting for missing packets as `cfg` says.
    pub fn new(codec: RxCodec, cfg: AssemblerConfig) -> Self {
        Self {
            codec,
            cfg,
            reorder: Reorder::default(),
            frame: None,
            au: h264::AccessUnitBuilder::default(),
            // The stream may start mid-frame (its first packets lost or reordered away).
            sync: Sync::Resync { broken_time: None },
            broken: false,
            out: VecDeque::new(),
            stats: AssemblerStats::default(),
            last_error: None,
        }
    }

    /// Takes one received packet. Never panics, whatever the bytes and numbers; drain
    /// [`Self::poll_frame`] afterwards (frames queue there until polled).
    pub fn push(&mut self, p: RtpIn<'_>) {
        self.stats.packets += 1;
        match self.reorder.insert(&p) {
            Insert::Next => {
                self.consume(&p);
                self.drain();
            }
            Insert::Buffered => self.drain(),
            Insert::Late => self.stats.late += 1,
            Insert::Duplicate => self.stats.duplicates += 1,
            Insert::Reset { dropped } => {
                self.stats.resets += 1;
                self.stats.dropped_packets += dropped;
                self.lost();
                self.consume(&p);
            }
        }
        self.give_up_expired(p.arrival_us);
    }

    /// The next frame, in sequence-number order.
    pub fn poll_frame(&mut self) -> Option<RxFrame> {
        self.out.pop_front()
    }

    /// When [`Self::handle_timeout`] must run (µs, caller's clock): the moment a missing
    /// packet has been waited for `max_wait_us`. `None` while nothing waits.
    pub fn poll_timeout(&self) -> Option<i64> {
        self.reorder.deadline(self.cfg.max_wait_us)
    }

    /// Gives up missing packets that have been waited for long enough at `now_us`.
    pub fn handle_timeout(&mut self, now_us: i64) {
        self.give_up_expired(now_us);
    }

    /// Packets held in the reorder buffer (waiting behind a missing one).
    pub fn buffered(&self) -> usize {
        self.reorder.held()
    }

    /// The counters so far.
    pub fn stats(&self) -> AssemblerStats {
        self.stats
    }

    /// Why the most recent malformed frame was dropped, if any was.
    pub fn last_error(&self) -> Option<RxError> {
        self.last_error
    }

    /// Packets consumed into the frame being assembled (for the accounting identity).
    fn in_frame_packets(&self) -> u64 {
        self.frame.as_ref().map_or(0, |f| f.packets)
    }

    /// Consumes buffered packets that are next in sequence.
    fn drain(&mut self) {
        while let Some(slot) = self.reorder.pop_ready() {
            self.consume(&slot.as_rtp());
            self.reorder.recycle(slot);
        }
    }

    /// Gives up missing runs while more than `hold_back` packets or a too-old one wait.
    fn give_up_expired(&mut self, now_us: i64) {
        while self.reorder.gap_expired(now_us, self.cfg.hold_back, self.cfg.max_wait_us) {
            self.reorder.skip_gap();
            self.stats.gaps += 1;
            self.lost();
            self.drain();
        }
    }

    /// Packets were lost (given up or reset): the frame being assembled is broken.
    fn lost(&mut self) {
        self.broken = true;
        if let Some(f) = self.frame.take() {
            self.au.reset();
            self.stats.dropped_packets += f.packets;
            self.sync = Sync::Resync { broken_time: Some(f.rtp_time) };
        } else if self.sync == Sync::InSync {
            self.sync = Sync::Resync { broken_time: None };
        }
    }

    /// Consumes the next packet in sequence order.
    fn consume(&mut self, p: &RtpIn<'_>) {
        match self.codec {
            RxCodec::H264 => self.consume_h264(p),
            RxCodec::Opus => self.consume_opus(p),
        }
    }

    /// Resync check: true when `p` may be used (and resync ends), false when it is skipped.
    fn resynced(&mut self, p: &RtpIn<'_>, head: bool) -> bool {
        let Sync::Resync { broken_time } = self.sync else { return true };
        if head && broken_time != Some(p.rtp_time) {
            self.sync = Sync::InSync;
            true
        } else {
            self.sync = Sync::Resync { broken_time: Some(p.rtp_time) };
            self.stats.dropped_packets += 1;
            self.broken = true;
            false
        }
    }

    fn consume_h264(&mut self, p: &RtpIn<'_>) {
        if self.frame.as_ref().is_some_and(|f| f.rtp_time != p.rtp_time) {
            // A new RTP time right after the frame: its marker was missing, it is complete.
            self.finish_frame();
        }
        if p.payload.is_empty() && self.frame.is_none() {
            self.stats.padding += 1;
            return;
        }
        if !self.resynced(p, h264::is_frame_head(p.payload)) {
            return;
        }
        let f = self.frame.get_or_insert(Building {
            rtp_time: p.rtp_time,
            arrival_us: p.arrival_us,
            first_seq: p.seq,
            last_seq: p.seq,
            packets: 0,
        });
        f.last_seq = p.seq;
        f.packets += 1;
        if let Err(e) = self.au.push(p.payload) {
            if let Some(f) = self.frame.take() {
                self.drop_frame(f, e);
            }
        } else if p.marker {
            self.finish_frame();
        }
    }

    fn consume_opus(&mut self, p: &RtpIn<'_>) {
        if !self.resynced(p, true) {
            return;
        }
        let f =
            Building { rtp_time: p.rtp_time, arrival_us: p.arrival_us, first_seq: p.seq, last_seq: p.seq, packets: 1 };
        if p.payload.is_empty() {
            self.drop_frame(f, RxError::EmptyPayload);
        } else if p.payload.len() > MAX_FRAME_BYTES {
            self.drop_frame(f, RxError::FrameTooLarge);
        } else {
            self.emit(f, p.payload.to_vec(), true);
        }
    }

    /// Ends the frame being assembled: emitted if well-formed, else dropped.
    fn finish_frame(&mut self) {
        let Some(f) = self.frame.take() else { return };
        match self.au.finish() {
            Ok((data, keyframe)) => self.emit(f, data, keyframe),
            Err(e) => self.drop_frame(f, e),
        }
    }

    /// Drops frame `f` as malformed; the rest of it is skipped.
    fn drop_frame(&mut self, f: Building, e: RxError) {
        self.au.reset();
        self.broken = true;
        self.stats.malformed += 1;
        self.stats.dropped_packets += f.packets;
        self.last_error = Some(e);
        self.sync = Sync::Resync { broken_time: Some(f.rtp_time) };
    }

    fn emit(&mut self, f: Building, data: Vec<u8>, keyframe: bool) {
        self.stats.frames += 1;
        self.out.push_back(RxFrame {
            rtp_time: f.rtp_time,
            arrival_us: f.arrival_us,
            contiguous: !self.broken,
            keyframe,
            data,
            first_seq: f.first_seq,
            last_seq: f.last_seq,
        });
        self.broken = false;
    }
}

impl Slot {
    /// The buffered packet as an [`RtpIn`].
    fn as_rtp(&self) -> RtpIn<'_> {
        RtpIn {
            seq: self.seq,
            rtp_time: self.rtp_time,
            marker: self.marker,
            arrival_us: self.arrival_us,
            payload: &self.payload,
        }
    }
}
