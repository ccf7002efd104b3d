//! Live viewers of a storage session (`JoinStorageSessionAsViewer`): the forwarding state
//! the [`super::hub::Hub`] keeps per channel and per viewer, and the sans-IO rules it applies.
//!
//! # How media reaches a viewer: frame mode through str0m's `Writer`
//! A viewer is a second str0m `Rtc` in the same hub (the same worker, socket and thread) as
//! the channel's master session. The master's media is already reassembled into frames for
//! the store ([`super::media_rx`]); the hub hands the same frame — its bytes,
//! untouched, plus the master's RTP time and payload parameters — to each connected
//! viewer's [`str0m::media::Writer::write`], which packetizes it again for that viewer's
//! SSRC, sequence numbers and negotiated payload type ([`str0m::media::Writer::match_params`]).
//! Nothing is transcoded. This is chosen over str0m's RTP mode because the store needs whole
//! frames anyway, and frame mode gives each
//! viewer its own sequence space, RTCP, NACK handling and retransmission buffer for free:
//!
//! - **NACKs** from a viewer are answered by its own `Rtc` from its send buffer of
//!   [`VIEWER_VIDEO_SEND_BUFFER`] / [`VIEWER_AUDIO_SEND_BUFFER`] packets (bounded, per
//!   track), never by the master.
//! - **Keyframe requests** (PLI/FIR) from all viewers of a channel go through one
//!   [`KeyframeGate`]: at most one request to the master per
//!   `viewer_keyframe_interval_ms`, later ones are folded into one request when the interval
//!   is over. A viewer that connects (joins mid-GOP) asks once, and its video starts at the
//!   next keyframe: frames before it are skipped, not sent undecodable.
//! - **Isolation**: a write never blocks. str0m keeps a bounded queue of frames per track
//!   that are not packetized yet; when a viewer's queue is full the frame is dropped for that
//!   viewer only (counted in `reel_storage_viewer_dropped_frames_total`) and its video waits
//!   for the next keyframe. Datagrams go out with the worker's non-blocking send, so a
//!   viewer that stops reading only loses its own packets; it ends when ICE consent fails.
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
use str0m::media::{MediaTime, Mid};

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
/// Prometheus counter: frames forwarded to viewers, by `track`.
pub const VIEWER_FRAMES: &str = "reel_storage_viewer_frames_total";
/// Prometheus counter: frames dropped for one viewer (its queue was full), by `track`.
pub const VIEWER_DROPPED_FRAMES: &str = "reel_storage_viewer_dropped_frames_total";
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
    /// Video frames handed to the viewer's peer connection.
    pub video_frames: u64,
    /// Audio frames handed to it.
    pub audio_frames: u64,
    /// Frames dropped because its queue was full.
    pub dropped_frames: u64,
    /// Video frames skipped while waiting for a keyframe (join, after a drop).
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

/// One frame of the master, shared by every viewer it is written to.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Video or audio.
    pub track: Track,
    /// The depacketized frame (Annex B access unit or Opus packet), shared by every viewer.
    pub data: Arc<[u8]>,
    /// The master's RTP time.
    pub time: MediaTime,
    /// When its last packet arrived (the wallclock of the viewers' sender reports).
    pub network_time: Instant,
    /// The master's payload parameters (matched against each viewer's).
    pub params: PayloadParams,
    /// An IDR access unit.
    pub keyframe: bool,
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
    /// Video is skipped until a keyframe (set at connect and after a drop).
    pub awaiting_keyframe: bool,
    /// Since when the channel has had no master session (`None` while one runs).
    pub masterless_since: Option<Instant>,
    /// A master session ran for this viewer before (its end is `MasterEnded`, not `NoMaster`).
    pub had_master: bool,
    pub stats: ViewerStats,
}

/// What became of one frame written to one viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Handed to the viewer's peer connection.
    Sent,
    /// Skipped: the viewer is not connected yet or waits for a keyframe.
    Skipped,
    /// Dropped: the viewer's queue was full (video now waits for a keyframe).
    Dropped,
}

impl Viewer {
    /// Writes `f` to this viewer (never blocks; see the module docs).
    pub fn write(&mut self, f: &Frame) -> Written {
        if !self.connected {
            return Written::Skipped;
        }
        let mid = match f.track {
            Track::Video => {
                if self.awaiting_keyframe && !f.keyframe {
                    self.stats.skipped_frames += 1;
                    return Written::Skipped;
                }
                self.video
            }
            Track::Audio => self.audio,
        };
        let Some(w) = self.rtc.writer(mid) else { return Written::Skipped };
        let pt = w.match_params(f.params).or_else(|| {
            let codec = f.params.spec().codec;
            w.payload_params().find(|p| p.spec().codec == codec).map(|p| p.pt())
        });
        let Some(pt) = pt else { return Written::Skipped };
        match w.write(pt, f.network_time, f.time, f.data.clone()) {
            Ok(()) => {
                match f.track {
                    Track::Video => {
                        self.awaiting_keyframe = false;
                        self.stats.video_frames += 1;
                    }
                    Track::Audio => self.stats.audio_frames += 1,
                }
                Written::Sent
            }
            Err(e) => {
                tracing::debug!(viewer = self.id, error = %e, "frame dropped for a viewer");
                self.stats.dropped_frames += 1;
                if f.track == Track::Video {
                    self.awaiting_keyframe = true;
                }
                Written::Dropped
            }
        }
    }
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
