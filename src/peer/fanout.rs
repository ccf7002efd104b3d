//! Live viewers of a storage session (`JoinStorageSessionAsViewer`): the forwarding state
//! the [`super::hub::Hub`] keeps per channel and per viewer, and the sans-IO rules it applies.
//!
//! # How media reaches a viewer: the master's RTP packets, rewritten per viewer
//! A viewer is a second str0m `Rtc` in the same hub (the same worker, socket and thread) as
//! the channel's master session. Each RTP packet of the master, as str0m's receive queue
//! hands it over ([`super::media_rx`]), goes to the store's reassembler and — shared, not
//! copied — to every connected viewer's send stream for that track
//! ([`str0m::rtp::StreamTx::write_rtp`]): the viewer's own SSRC, a sequence number in the
//! viewer's own space (the master's, shifted so each viewer's run starts where its
//! previous one ended), the payload type the viewer negotiated for the codec, the master's
//! RTP timestamp, marker and payload, and the header extensions a player uses (audio
//! level, voice activity, video orientation). Nothing is transcoded or packetized again,
//! and packets leave as they arrive rather than once a whole frame is reassembled
//! (packetizing each frame again per viewer was ≈ 10 % of reel's CPU with three viewers a
//! session; BENCHMARKS.md, issue 16).
//! str0m keeps each viewer's RTCP, sender reports and retransmission buffer:
//!
//! - **NACKs** from a viewer are answered by its own `Rtc` from its send buffer of
//!   [`VIEWER_VIDEO_SEND_BUFFER`] / [`VIEWER_AUDIO_SEND_BUFFER`] packets (bounded, per
//!   track), never by the master. A packet the master never delivered stays missing for the
//!   viewer too, until reel's own NACK to the master brings it (then it is forwarded late).
//! - **Keyframe requests** (PLI/FIR) from all viewers of a channel go through one
//!   [`KeyframeGate`]: at most one request to the master per
//!   `viewer_keyframe_interval_ms`, later ones are folded into one request when the interval
//!   is over. A viewer that connects (joins mid-GOP) asks once, and its video starts at the
//!   next packet a decoder can start at (an SPS or IDR,
//!   [`reel_media::rtp_rx::h264::is_decoder_entry`]): packets before it are skipped, not
//!   sent undecodable. A new master session restarts every viewer's video the same way.
//! - **Isolation**: forwarding never blocks and never waits for a viewer. Each viewer's
//!   packets are sealed and handed to the worker's non-blocking send within the same hub
//!   pass (after a batch's writes its send streams are drained at once through
//!   `Rtc::poll_stream_transmit`, a vendored str0m patch, so they hold no packets between
//!   passes); a viewer that stops reading only loses its own datagrams (counted in
//!   `reel_webrtc_send_dropped_total`) and ends when ICE consent fails.
//! - **Talk-back**: a viewer's Opus goes to the master's (sendrecv) audio track, never to
//!   the store. With several viewers talking, the [`TalkFloor`] forwards the most recently
//!   active one: the viewer that most recently *started* talking (after at least
//!   [`TALK_SILENCE`] of silence) has the floor while it keeps talking; the others are
//!   dropped until it pauses. Switching talkers jumps the RTP time of the master's
//!   incoming audio, which receivers' jitter buffers treat as a new talk spurt.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::Rtc;
use str0m::change::SdpPendingOffer;
use str0m::format::PayloadParams;
use str0m::media::{Mid, Pt};
use str0m::rtp::{ExtensionValues, RtpWrite};

use reel_media::timing::MediaKind as Track;

/// Video packets each viewer keeps for retransmission (answers its NACKs).
pub const VIEWER_VIDEO_SEND_BUFFER: usize = 1000;
/// Audio packets each viewer keeps for retransmission.
pub const VIEWER_AUDIO_SEND_BUFFER: usize = 50;
/// A talker silent this long loses the talk-back floor.
pub const TALK_SILENCE: Duration = Duration::from_millis(1000);

/// Prometheus counter: viewer sessions ended, by `reason`.
pub const VIEWERS_ENDED: &str = "reel_storage_viewers_ended_total";
/// Prometheus gauge: viewer sessions live.
pub const VIEWERS_ACTIVE: &str = "reel_storage_viewers_active";
/// Prometheus counter: frames forwarded to viewers (video: packets with the marker bit;
/// audio: packets), by `track`.
pub const VIEWER_FRAMES: &str = "reel_storage_viewer_frames_total";
/// Prometheus counter: keyframe requests sent to masters on behalf of viewers.
pub const VIEWER_KEYFRAME_REQUESTS: &str = "reel_storage_viewer_keyframe_requests_total";
/// Prometheus counter: viewer audio packets forwarded to masters (talk-back).
pub const VIEWER_TALK_PACKETS: &str = "reel_storage_viewer_talk_packets_total";

/// A viewer session handed to the hub: its peer connection with our offer applied.
pub struct HubViewer {
    /// Viewer session id (unique per hub, shared with storage session ids).
    pub id: u64,
    /// The channel whose master it watches.
    pub channel_arn: String,
    /// The viewer's signaling ClientId (a newer viewer with the same id replaces it).
    pub client_id: String,
    /// The peer connection, with our offer applied locally.
    pub rtc: Rtc,
    /// The offer waiting for the viewer's answer.
    pub pending: SdpPendingOffer,
    /// Mid of the sendonly H.264 section.
    pub video: Mid,
    /// Mid of the sendrecv Opus section.
    pub audio: Mid,
}

/// Counters of one viewer session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ViewerStats {
    /// Video frames handed to the viewer's peer connection (their last packets).
    pub video_frames: u64,
    /// Audio frames (packets) handed to it.
    pub audio_frames: u64,
    /// Video frames skipped while waiting for a keyframe (join, new master).
    pub skipped_frames: u64,
    /// Keyframe requests (PLI/FIR) it sent.
    pub keyframe_requests: u64,
    /// Its audio packets forwarded to the master.
    pub talk_packets: u64,
    /// Its audio packets not forwarded (another viewer had the floor, or no master).
    pub talk_dropped: u64,
    /// Datagrams received from it.
    pub packets: u64,
}

/// A viewer session the hub ended, for its driver.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewerEnded {
    /// Viewer session id.
    pub id: u64,
    /// Why it ended.
    pub reason: super::hub::EndReason,
    /// Its final counters.
    pub stats: ViewerStats,
}

/// One RTP packet of the master, shared by every viewer it is forwarded to.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Video or audio.
    pub track: Track,
    /// The master session it came from (a new master restarts each viewer's run).
    pub source: u64,
    /// The master's extended sequence number.
    pub seq: u64,
    /// The master's RTP timestamp (same codec, so the same clock rate for the viewers).
    pub rtp_time: u32,
    /// The RTP marker bit (video: the last packet of a frame).
    pub marker: bool,
    /// The RTP payload, shared by every viewer.
    pub payload: Arc<[u8]>,
    /// When it arrived (the wallclock of the viewers' sender reports).
    pub arrival: Instant,
    /// The master's payload parameters (matched against each viewer's).
    pub params: PayloadParams,
    /// A video packet a decoder can start at (an SPS or IDR).
    pub entry: bool,
    /// The header extension values passed on (audio level, voice activity, orientation).
    pub ext: ExtensionValues,
}

/// One track of one viewer: where its current run of the master's packets started.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TrackOut {
    /// (master session, its sequence number, the viewer's) at the run's first packet.
    base: Option<(u64, u64, u64)>,
    /// The highest master sequence number forwarded in this run.
    highest: u64,
    /// The viewer's next unused sequence number.
    next_seq: u64,
    /// The last payload type mapping (master's, viewer's).
    pt: Option<(Pt, Pt)>,
}

/// A master sequence number this far from the run's highest (either way) is a renumbered
/// stream (a new SSRC), not loss or reordering: the run restarts.
pub const SEQUENCE_JUMP: u64 = 3000;

impl TrackOut {
    /// A track whose sequence numbers start at `first` (below 2¹⁵: no SRTP rollover to
    /// signal, and room before the 16-bit wrap).
    pub fn starting_at(first: u16) -> Self {
        Self { base: None, highest: 0, next_seq: u64::from(first & 0x7fff), pt: None }
    }

    /// Whether `seq` belongs to another numbering than this run's.
    fn jumped(&self, seq: u64) -> bool {
        self.base.is_some() && (seq.saturating_add(SEQUENCE_JUMP) < self.highest || seq > self.highest + SEQUENCE_JUMP)
    }
}

/// One live viewer session in the hub.
pub(crate) struct Viewer {
    pub id: u64,
    pub channel_arn: String,
    pub client_id: String,
    pub rtc: Rtc,
    pub pending: Option<SdpPendingOffer>,
    pub video: Mid,
    pub audio: Mid,
    pub started: Instant,
    /// Last datagram from the viewer (idle timeout).
    pub last_recv: Instant,
    pub connected: bool,
    pub remotes: Vec<SocketAddr>,
    pub deadline: Option<Instant>,
    /// Video is skipped until a decoder entry point (set at connect and for a new master).
    pub awaiting_keyframe: bool,
    /// Per track (video, audio): the viewer's run of the master's packets.
    pub out: [TrackOut; 2],
    /// Since when the channel has had no master session (`None` while one runs).
    pub masterless_since: Option<Instant>,
    /// A master session ran for this viewer before (its end is `MasterEnded`, not `NoMaster`).
    pub had_master: bool,
    pub stats: ViewerStats,
}

/// What became of one packet forwarded to one viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Handed to the viewer's send stream.
    Sent,
    /// Skipped: the viewer is not connected yet, waits for a keyframe, or has no send
    /// stream or payload type for it.
    Skipped,
}

impl Viewer {
    /// Forwards `p` to this viewer (never blocks; see the module docs).
    pub fn write(&mut self, p: &Packet) -> Written {
        if !self.connected {
            return Written::Skipped;
        }
        let video = p.track == Track::Video;
        let (out, mid) = if video { (&mut self.out[0], self.video) } else { (&mut self.out[1], self.audio) };
        let new_source = out.base.is_none_or(|(source, _, _)| source != p.source);
        if new_source || out.jumped(p.seq) {
            // Video waits for a decoder entry point of the new numbering.
            out.base = None;
            self.awaiting_keyframe |= video;
        }
        if out.base.is_none() || (video && self.awaiting_keyframe) {
            if video && !p.entry {
                self.stats.skipped_frames += u64::from(p.marker);
                return Written::Skipped;
            }
            out.base = Some((p.source, p.seq, out.next_seq));
            out.highest = p.seq;
            self.awaiting_keyframe &= !video;
        }
        let Some((_, first, start)) = out.base else { return Written::Skipped };
        // Late packets from before this run started are not the viewer's.
        let Some(offset) = p.seq.checked_sub(first) else { return Written::Skipped };
        let seq = start + offset;
        out.next_seq = out.next_seq.max(seq + 1);
        out.highest = out.highest.max(p.seq);
        let pt = match out.pt {
            Some((master, viewer)) if master == p.params.pt() => viewer,
            _ => {
                let Some(pt) = self.rtc.writer(mid).and_then(|w| matching_pt(&w, p.params)) else {
                    return Written::Skipped;
                };
                out.pt = Some((p.params.pt(), pt));
                pt
            }
        };
        let mut api = self.rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(mid, None) else { return Written::Skipped };
        let write = RtpWrite::new(pt, seq.into(), p.rtp_time, p.arrival, p.payload.clone())
            .marker(p.marker)
            .ext_vals(p.ext.clone())
            .nackable(true);
        stream.write_rtp(write);
        match p.track {
            Track::Video => self.stats.video_frames += u64::from(p.marker),
            Track::Audio => self.stats.audio_frames += 1,
        }
        Written::Sent
    }
}

/// The payload type `w` sends media described by `params` with: the one negotiated for
/// exactly those parameters, else the first of the same codec (another H.264 profile or
/// packetization the peer accepted).
pub fn matching_pt(w: &str0m::media::Writer<'_>, params: PayloadParams) -> Option<Pt> {
    let codec = params.spec().codec;
    w.match_params(params).or_else(|| w.payload_params().find(|q| q.spec().codec == codec).map(|q| q.pt()))
}

/// The viewers of one channel and what they share.
#[derive(Debug)]
pub(crate) struct Channel {
    /// The channel's current storage session (the master), if one runs on this hub.
    pub master: Option<u64>,
    /// Its viewer sessions, oldest first.
    pub viewers: Vec<u64>,
    /// Viewers' keyframe requests to the master.
    pub keyframes: KeyframeGate,
    /// Which viewer's audio goes to the master.
    pub talk: TalkFloor,
}

impl Channel {
    pub fn new(keyframe_interval: Duration) -> Self {
        Self {
            master: None,
            viewers: Vec::new(),
            keyframes: KeyframeGate::new(keyframe_interval),
            talk: TalkFloor::default(),
        }
    }
}

/// Aggregates keyframe requests: at most one per `interval` reaches the master; requests
/// within the interval are remembered and sent as one when it is over.
#[derive(Debug, Clone)]
pub struct KeyframeGate {
    interval: Duration,
    last: Option<Instant>,
    pending: bool,
}

impl KeyframeGate {
    /// A gate letting one request through per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self { interval, last: None, pending: false }
    }

    /// A viewer asks for a keyframe at `now`: true when the master is to be asked now.
    pub fn request(&mut self, now: Instant) -> bool {
        if self.last.is_none_or(|l| now >= l + self.interval) {
            self.last = Some(now);
            self.pending = false;
            true
        } else {
            self.pending = true;
            false
        }
    }

    /// True (once) when a folded request is due at `now`.
    pub fn poll(&mut self, now: Instant) -> bool {
        if self.pending && self.deadline().is_some_and(|t| t <= now) {
            self.pending = false;
            self.last = Some(now);
            return true;
        }
        false
    }

    /// When a folded request falls due.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.pending, self.last) {
            (true, Some(l)) => Some(l + self.interval),
            _ => None,
        }
    }
}

/// The talk-back floor (see the module docs): the viewer that most recently started talking.
#[derive(Debug, Default)]
pub struct TalkFloor {
    /// Per viewer: (when its current talk spurt started, its last packet).
    talkers: HashMap<u64, (Instant, Instant)>,
}

impl TalkFloor {
    /// Viewer `id` sent audio at `now`: true when it is to be forwarded to the master.
    pub fn admit(&mut self, id: u64, now: Instant) -> bool {
        let e = self.talkers.entry(id).or_insert((now, now));
        if now.saturating_duration_since(e.1) >= TALK_SILENCE {
            e.0 = now;
        }
        e.1 = now;
        self.talkers.retain(|_, (_, last)| now.saturating_duration_since(*last) < TALK_SILENCE);
        let holder = self.talkers.iter().max_by_key(|(id, (started, _))| (*started, **id)).map(|(id, _)| *id);
        holder == Some(id)
    }

    /// Forgets a viewer that ended.
    pub fn forget(&mut self, id: u64) {
        self.talkers.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_lets_one_request_through_per_interval_and_folds_the_rest() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut g = KeyframeGate::new(ms(500));
        assert!(g.request(t0));
        assert_eq!(g.deadline(), None);
        // A flood within the interval folds into one request at its end.
        for i in 1..100 {
            assert!(!g.request(t0 + ms(i)));
        }
        assert_eq!(g.deadline(), Some(t0 + ms(500)));
        assert!(!g.poll(t0 + ms(499)));
        assert!(g.poll(t0 + ms(500)));
        assert!(!g.poll(t0 + ms(501)), "once");
        assert!(!g.request(t0 + ms(900)));
        assert!(g.poll(t0 + ms(1000)));
        assert!(g.request(t0 + ms(1600)));
    }

    #[test]
    fn a_renumbered_master_stream_is_a_jump_and_loss_or_reordering_is_not() {
        let mut t = TrackOut::starting_at(0xffff);
        assert_eq!(t.next_seq, 0x7fff, "starts below 2^15");
        assert!(!t.jumped(5), "no run yet");
        t.base = Some((1, 70_000, 0x7fff));
        t.highest = 70_500;
        for seq in [70_000, 70_400, 70_501, 73_000, 67_600] {
            assert!(!t.jumped(seq), "{seq}");
        }
        for seq in [1, 67_400, 73_600, u64::from(u32::MAX)] {
            assert!(t.jumped(seq), "{seq}");
        }
    }

    #[test]
    fn the_floor_goes_to_the_most_recent_talker_and_back_after_its_silence() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut f = TalkFloor::default();
        assert!(f.admit(1, t0));
        assert!(f.admit(1, t0 + ms(20)));
        // Viewer 2 starts talking: it takes the floor while both talk.
        assert!(f.admit(2, t0 + ms(40)));
        assert!(!f.admit(1, t0 + ms(40)));
        assert!(f.admit(2, t0 + ms(60)));
        assert!(!f.admit(1, t0 + ms(60)));
        // Viewer 2 goes quiet: viewer 1 has it back once 2's silence is long enough.
        assert!(!f.admit(1, t0 + ms(500)));
        assert!(f.admit(1, t0 + ms(1100)));
        f.forget(1);
        assert!(f.admit(2, t0 + ms(1200)), "a new spurt");
    }
}
