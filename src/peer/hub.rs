//! The sans-IO core of the media peer: every storage session's str0m `Rtc`, the demux
//! tables of the shared UDP socket and all deadlines, driven with time passed in.
//!
//! The [`Hub`] owns no socket, clock or task. Its driver ([`super::io`] in production, the
//! scenario harness in tests) feeds it datagrams ([`Hub::receive`]), control calls
//! ([`Hub::add`], [`Hub::answer`], [`Hub::candidate`], [`Hub::close`]) and timer ticks
//! ([`Hub::timeout`] at [`Hub::next_deadline`]), then drains outgoing datagrams with
//! [`Hub::poll_transmit`] and ended sessions with [`Hub::poll_ended`]. Fragment events go
//! to each session's writer queue with `try_send`, never blocking.
//!
//! Demux: a datagram goes to the session that learned its source address (from its first
//! accepted packet), else to the first session whose `Rtc::accepts` it (STUN ufrag, viable
//! candidate pairs); anything else is counted as unknown.
//!
//! Writer queue overflow: if the store writer falls behind and its queue is full, the rest
//! of the current fragment is dropped consistently — nothing more of it is queued (the
//! writer finishes the shorter fragment at the end of its last complete chunk), the
//! fragmenter restarts at the next IDR (requested with a PLI), and queuing resumes with the
//! next `BeginFragment`. The store never sees a fragment with a hole inside.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{KeyframeRequestKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::mpsc;

use super::fanout::{Channel, HubViewer, Packet, TrackOut, Viewer, ViewerEnded, ViewerStats, Written};
use super::ingest::ClockAnchor;
use super::media_rx::MediaRx;
use crate::limits::StorageSessionLimits;
use crate::observe::metrics as obs;
use reel_media::fragmenter::{ChunkFrames, FragmentEvent, Fragmenter, FragmenterConfig, FragmenterStats};
use reel_media::rtp_rx::AssemblerStats;
use reel_media::timing::MediaKind as Track;

/// Why a session ended (logged, and told to its control task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// ICE disconnected or the peer closed.
    Disconnected,
    /// No media for the idle timeout.
    Idle,
    /// The session reached its maximum life.
    MaxLife,
    /// The control task ended it (superseded, never answered, bad answer).
    Closed(String),
    /// str0m reported an error.
    Rtc(String),
    /// The server is shutting down.
    Shutdown,
    /// Viewer: the master's session ended and no newer one came within
    /// `viewer_master_gone_secs`.
    MasterEnded,
    /// Viewer: no master session on the channel for `viewer_no_master_secs`.
    NoMaster,
    /// Viewer: a newer JoinStorageSessionAsViewer with the same ClientId replaced it.
    Replaced,
    /// Viewer: its signaling connection closed.
    SignalingClosed,
}

impl EndReason {
    /// A short label for metrics (`reason`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Disconnected => "disconnected",
            Self::Idle => "idle",
            Self::MaxLife => "max_life",
            Self::Closed(_) => "closed",
            Self::Rtc(_) => "rtc",
            Self::Shutdown => "shutdown",
            Self::MasterEnded => "master_ended",
            Self::NoMaster => "no_master",
            Self::Replaced => "replaced",
            Self::SignalingClosed => "signaling_closed",
        }
    }
}

/// A session handed to the hub: its peer connection with our offer applied locally.
pub struct HubSession {
    /// Session id (unique per hub).
    pub id: u64,
    /// Channel, for logs.
    pub channel_arn: String,
    /// The stream it writes (for the sessions dashboard).
    pub stream_arn: String,
    /// The peer connection, with our offer applied locally.
    pub rtc: Rtc,
    /// The offer waiting for the master's answer.
    pub pending: SdpPendingOffer,
    /// Mid of the recvonly H.264 section.
    pub video: Mid,
    /// Mid of the sendrecv Opus section (viewers' talk-back goes out on it).
    pub audio: Mid,
    /// Queue of the session's store writer.
    pub writer_tx: mpsc::Sender<FragmentEvent>,
}

/// One outgoing datagram (always sent from the hub's local address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// The datagram.
    pub contents: Vec<u8>,
}

/// Counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Datagrams routed to the session.
    pub packets: u64,
    /// Bytes of those datagrams.
    pub bytes: u64,
    /// PLIs sent.
    pub plis: u64,
    /// NACKs sent (as of str0m's latest stats report).
    pub nacks: u64,
    /// Fragment events not queued because the writer queue was full (or closed).
    pub dropped_events: u64,
    /// Fragments cut short because the writer queue was full.
    pub aborted_fragments: u64,
    /// Frames the fragmenter wrote whose chunks were dropped because the writer queue was
    /// full.
    pub queue_overflow: ChunkFrames,
    /// The fragmenter's counters.
    pub fragmenter: FragmenterStats,
    /// The reassemblers' counters (video, audio): gaps given up, malformed frames, ...
    pub rx: (AssemblerStats, AssemblerStats),
    /// Packets the reassemblers hold now (waiting behind a missing one).
    pub rx_held: usize,
    /// Entries str0m's receive bookkeeping holds now (TWCC receipts, pending feedback,
    /// queued RTP, sequence windows): bounded however long the session runs.
    pub rx_bookkeeping: usize,
}

impl SessionStats {
    /// Frames of `track` received but not handed to the store, whatever the reason.
    pub fn frames_dropped(&self, track: Track) -> u64 {
        match track {
            Track::Video => self.fragmenter.video_dropped.total() + u64::from(self.queue_overflow.video),
            Track::Audio => self.fragmenter.audio_dropped.total() + u64::from(self.queue_overflow.audio),
        }
    }

    /// Frames of `track` received (depacketized).
    pub fn frames_received(&self, track: Track) -> u64 {
        match track {
            Track::Video => self.fragmenter.video_in,
            Track::Audio => self.fragmenter.audio_in,
        }
    }
}

/// One live session as the sessions dashboard shows it (`POST /listStorageSessions`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionSummary {
    /// Session id (unique per node).
    pub id: u64,
    /// The channel whose master it serves.
    #[serde(rename = "ChannelARN")]
    pub channel_arn: String,
    /// The stream it writes.
    #[serde(rename = "StreamARN")]
    pub stream_arn: String,
    /// The master's address (the first one media came from), once known.
    pub master: Option<String>,
    /// When it started, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// How long it has run, ms.
    pub duration_ms: u64,
    /// Datagrams received.
    pub packets: u64,
    /// Bytes received (the dashboard derives the bitrate from two readings).
    pub bytes: u64,
    /// Fragments closed.
    pub fragments: u64,
    /// Video frames stored.
    pub video_frames: u64,
    /// Audio frames stored.
    pub audio_frames: u64,
    /// NACKs sent.
    pub nacks: u64,
    /// PLIs sent.
    pub plis: u64,
    /// Fraction of packets lost per the latest receive statistics (the worse track).
    pub loss: Option<f32>,
    /// Video interarrival jitter, ms.
    pub jitter_ms: Option<f64>,
    /// Live viewer sessions watching it (JoinStorageSessionAsViewer).
    pub viewers: usize,
}

/// A session the hub ended, for its driver.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    /// Session id.
    pub id: u64,
    /// Why it ended.
    pub reason: EndReason,
    /// Its final counters.
    pub stats: SessionStats,
}

/// Counters of the whole hub.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Datagrams no session accepted (strangers, garbage).
    pub unknown_datagrams: u64,
    /// Sessions added.
    pub sessions_added: u64,
    /// Sessions ended.
    pub sessions_ended: u64,
    /// Viewer sessions added.
    pub viewers_added: u64,
    /// Viewer sessions ended.
    pub viewers_ended: u64,
}

struct Session {
    id: u64,
    channel_arn: String,
    stream_arn: String,
    rtc: Rtc,
    pending: Option<SdpPendingOffer>,
    video: Mid,
    audio: Mid,
    fragmenter: Fragmenter,
    writer_tx: mpsc::Sender<FragmentEvent>,
    started: Instant,
    last_media: Instant,
    remotes: Vec<SocketAddr>,
    deadline: Option<Instant>,
    /// When str0m's own timers are next due (its latest `Output::Timeout`): a deadline
    /// that only the reassemblers, the fragmenter or the chunk flush set skips str0m's
    /// timeout pass, which walks every timer of the session.
    rtc_due: Instant,
    stats: SessionStats,
    /// The writer queue overflowed: drop events until the next `BeginFragment` is queued.
    dropping: bool,
    /// Chunks not yet handed to the writer (coalesced up to `chunk_flush_ms`).
    chunk: Option<PendingChunk>,
    /// The size of the last chunk handed over: the next one is allocated that large at
    /// once instead of growing (and copying) frame by frame.
    chunk_hint: usize,
    /// Last absolute NACK count per mid (to add deltas to the cross-session total).
    nacks_seen: HashMap<Mid, u64>,
    /// The latest receive statistics per mid (loss, jitter), for the sessions dashboard.
    ingress: HashMap<Mid, obs::IngressSample>,
    /// The last logged selected candidate pair.
    selected_pair: Option<String>,
    /// Frame counters already added to the process-wide metrics.
    exported: obs::FrameLedger,
    /// The channel has viewers: the master's packets are collected in `outbox` for them.
    forwarding: bool,
    /// The master's RTP packets for the channel's viewers, forwarded once per batch of
    /// input (see [`Hub::poll_transmit`]).
    outbox: Vec<Packet>,
    /// The session is in the hub's `forward_due` list.
    forward_queued: bool,
    /// The master's media from str0m's receive queue to frames.
    rx: MediaRx,
}

/// Fragment bytes collected for one hand-off to the store writer.
struct PendingChunk {
    bytes: Vec<u8>,
    media_end_ms: u32,
    frames: ChunkFrames,
    since: Instant,
}

/// The hub's lookup tables, hit several times per datagram: foldhash (seeded per process)
/// instead of SipHash, which was ≈ 1 % of reel's CPU at 50 sessions.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Coalesced chunks are handed over early once they reach this size.
const MAX_PENDING_CHUNK: usize = 256 * 1024;

/// All sessions of one UDP socket, their demux tables and deadlines (sans-IO).
pub struct Hub {
    local: SocketAddr,
    limits: StorageSessionLimits,
    anchor: ClockAnchor,
    fragmenter: FragmenterConfig,
    sessions: FastMap<u64, Session>,
    by_remote: FastMap<SocketAddr, u64>,
    deadlines: BTreeSet<(Instant, u64)>,
    transmits: VecDeque<Transmit>,
    ended: VecDeque<Ended>,
    stats: HubStats,
    /// Viewer sessions (ids shared with `sessions`: both come from one counter).
    viewers: FastMap<u64, Viewer>,
    /// Per channel with viewers: its master session, viewers, keyframe gate, talk floor.
    channels: FastMap<String, Channel>,
    viewers_ended: VecDeque<ViewerEnded>,
    /// Sessions whose `outbox` holds packets for their viewers.
    forward_due: Vec<u64>,
    /// Registered on first use: the exporter is installed after the hub starts.
    counters: Option<Counters>,
    /// The latest time handed to any session: inputs never go back in time (see
    /// [`Hub::monotonic`]).
    clock: Option<Instant>,
}

/// Per-datagram counters, registered once (a registry lookup per packet is measurable).
struct Counters {
    packets: metrics::Counter,
    bytes: metrics::Counter,
    unknown: metrics::Counter,
}

impl Counters {
    fn register() -> Self {
        Self {
            packets: metrics::counter!("reel_storage_session_packets_total"),
            bytes: metrics::counter!("reel_storage_session_bytes_total"),
            unknown: metrics::counter!("reel_webrtc_unknown_datagrams_total"),
        }
    }
}

impl Hub {
    /// A hub for the socket bound at `local`; `anchor` maps `Instant`s to Unix time.
    pub fn new(local: SocketAddr, limits: StorageSessionLimits, anchor: ClockAnchor) -> Self {
        Self {
            local,
            fragmenter: limits.fragmenter_config(),
            limits,
            anchor,
            sessions: FastMap::default(),
            by_remote: FastMap::default(),
            deadlines: BTreeSet::new(),
            transmits: VecDeque::new(),
            ended: VecDeque::new(),
            stats: HubStats::default(),
            viewers: FastMap::default(),
            channels: FastMap::default(),
            viewers_ended: VecDeque::new(),
            forward_due: Vec::new(),
            counters: None,
            clock: None,
        }
    }

    /// `now`, or the latest time already handed to a session if that is later. Datagrams
    /// carry their kernel arrival time, so one that waited in the socket while the loop
    /// drove timers can be older than the last timeout; str0m's state only moves forward.
    fn monotonic(&mut self, now: Instant) -> Instant {
        let t = self.clock.map_or(now, |c| c.max(now));
        self.clock = Some(t);
        t
    }

    /// Uses `cfg` for sessions added from now on (tests shorten fragments with it).
    pub fn set_fragmenter_config(&mut self, cfg: FragmenterConfig) {
        self.fragmenter = cfg;
    }

    /// The socket address the hub's sessions use.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when no session is live.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Ids of the live sessions.
    pub fn session_ids(&self) -> Vec<u64> {
        self.sessions.keys().copied().collect()
    }

    /// Hub-wide counters.
    pub fn stats(&self) -> HubStats {
        self.stats
    }

    /// What the sessions dashboard shows of every live session, at `now`.
    pub fn summaries(&self, now: Instant) -> Vec<SessionSummary> {
        self.sessions
            .values()
            .map(|s| {
                let video = s.ingress.get(&s.video);
                let loss = s.ingress.values().filter_map(|i| i.loss).reduce(f32::max);
                let f = s.fragmenter.stats();
                SessionSummary {
                    id: s.id,
                    channel_arn: s.channel_arn.clone(),
                    stream_arn: s.stream_arn.clone(),
                    master: s.remotes.first().map(ToString::to_string),
                    started_unix_ms: u64::try_from(self.anchor.unix_us(s.started) / 1000).unwrap_or(0),
                    duration_ms: now.saturating_duration_since(s.started).as_millis() as u64,
                    packets: s.stats.packets,
                    bytes: s.stats.bytes,
                    fragments: f.fragments,
                    video_frames: f.video_out,
                    audio_frames: f.audio_out,
                    nacks: s.stats.nacks,
                    plis: s.stats.plis,
                    loss,
                    jitter_ms: video.map(|v| v.jitter_ms),
                    viewers: if s.forwarding {
                        self.channels.get(&s.channel_arn).map_or(0, |c| c.viewers.len())
                    } else {
                        0
                    },
                }
            })
            .collect()
    }

    /// Counters of a live session.
    pub fn session_stats(&self, id: u64) -> Option<SessionStats> {
        self.sessions.get(&id).map(Session::stats)
    }

    /// Starts driving a session. If its fragmenter cannot be built it ends at once.
    pub fn add(&mut self, now: Instant, s: HubSession) {
        let now = self.monotonic(now);
        self.stats.sessions_added += 1;
        let fragmenter = match Fragmenter::new(self.fragmenter.clone(), self.anchor.unix_us(now)) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "fragmenter config");
                self.stats.sessions_ended += 1;
                let reason = EndReason::Rtc(e.to_string());
                self.ended.push_back(Ended { id: s.id, reason, stats: SessionStats::default() });
                return;
            }
        };
        metrics::gauge!("reel_storage_sessions_active").increment(1.0);
        let id = s.id;
        self.sessions.insert(
            id,
            Session {
                id,
                channel_arn: s.channel_arn,
                stream_arn: s.stream_arn,
                rtc: s.rtc,
                pending: Some(s.pending),
                video: s.video,
                audio: s.audio,
                fragmenter,
                writer_tx: s.writer_tx,
                started: now,
                last_media: now,
                remotes: Vec::new(),
                deadline: None,
                rtc_due: now,
                stats: SessionStats::default(),
                dropping: false,
                chunk: None,
                chunk_hint: 0,
                nacks_seen: HashMap::new(),
                ingress: HashMap::new(),
                selected_pair: None,
                exported: obs::FrameLedger::default(),
                forwarding: false,
                outbox: Vec::new(),
                forward_queued: false,
                rx: MediaRx::new(s.video, s.audio),
            },
        );
        self.master_arrived(id, now);
        self.drive(id, now);
    }

    /// Applies the master's (already validated) answer.
    pub fn answer(&mut self, id: u64, answer: SdpAnswer, now: Instant) {
        let now = self.monotonic(now);
        let Some(s) = self.sessions.get_mut(&id) else { return };
        match accept_answer(&mut s.rtc, &mut s.pending, answer) {
            Ok(()) => self.drive(id, now),
            Err(reason) => self.end(id, reason, now),
        }
    }

    /// Adds a trickled remote candidate.
    pub fn candidate(&mut self, id: u64, candidate: Candidate, now: Instant) {
        let now = self.monotonic(now);
        let Some(s) = self.sessions.get_mut(&id) else { return };
        s.rtc.add_remote_candidate(candidate);
        self.drive(id, now);
    }

    /// Ends a session, flushing its open fragment.
    pub fn close(&mut self, id: u64, reason: EndReason, now: Instant) {
        let now = self.monotonic(now);
        self.end(id, reason, now);
    }

    /// Ends every session (server shutdown).
    pub fn close_all(&mut self, reason: EndReason, now: Instant) {
        let now = self.monotonic(now);
        let viewers: Vec<u64> = self.viewers.keys().copied().collect();
        for id in viewers {
            self.end_viewer(id, reason.clone(), now);
        }
        for id in self.session_ids() {
            self.end(id, reason.clone(), now);
        }
    }

    /// Routes one datagram that arrived at `now` from `source` to the session it belongs to.
    pub fn receive(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        let now = self.monotonic(now);
        let Ok(contents) = data.try_into() else {
            self.unknown();
            return;
        };
        let input = Input::Receive(now, Receive { proto: Protocol::Udp, source, destination: self.local, contents });
        let accepts = |id: &u64| match self.sessions.get(id) {
            Some(s) => s.rtc.accepts(&input),
            None => self.viewers.get(id).is_some_and(|v| v.rtc.accepts(&input)),
        };
        let mapped = self.by_remote.get(&source).copied().filter(accepts);
        let target = mapped
            .or_else(|| self.sessions.values().find(|s| s.rtc.accepts(&input)).map(|s| s.id))
            .or_else(|| self.viewers.values().find(|v| v.rtc.accepts(&input)).map(|v| v.id));
        let Some(id) = target else {
            self.unknown();
            return;
        };
        let counters = self.counters.get_or_insert_with(Counters::register);
        counters.packets.increment(1);
        counters.bytes.increment(data.len() as u64);
        if let Some(v) = self.viewers.get_mut(&id) {
            if mapped.is_none() && !v.remotes.contains(&source) {
                v.remotes.push(source);
                self.by_remote.insert(source, id);
            }
            v.stats.packets += 1;
            v.last_recv = now;
            if let Err(e) = v.rtc.handle_input(input) {
                tracing::debug!(viewer = id, error = %e, "rtc input error");
            }
            self.drive_viewer(id, now);
            return;
        }
        let Some(s) = self.sessions.get_mut(&id) else { return };
        if mapped.is_none() && !s.remotes.contains(&source) {
            s.remotes.push(source);
            self.by_remote.insert(source, id);
        }
        s.stats.packets += 1;
        s.stats.bytes += data.len() as u64;
        if let Err(e) = s.rtc.handle_input(input) {
            tracing::debug!(session = id, error = %e, "rtc input error");
        }
        self.drive(id, now);
    }

    /// When [`Hub::timeout`] should next be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Drives every session whose deadline is at or before `now`.
    pub fn timeout(&mut self, now: Instant) {
        let now = self.monotonic(now);
        let max_life = Duration::from_secs(self.limits.max_session_secs);
        let idle = Duration::from_secs(self.limits.idle_timeout_secs);
        while let Some(&(t, id)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            if self.viewers.contains_key(&id) {
                self.viewer_timeout(id, now);
                continue;
            }
            let Some(s) = self.sessions.get_mut(&id) else { continue };
            s.deadline = None;
            if now.saturating_duration_since(s.started) >= max_life {
                self.end(id, EndReason::MaxLife, now);
                continue;
            }
            if now.saturating_duration_since(s.last_media) >= idle {
                self.end(id, EndReason::Idle, now);
                continue;
            }
            if now >= s.rtc_due
                && let Err(e) = s.rtc.handle_input(Input::Timeout(now))
            {
                self.end(id, EndReason::Rtc(e.to_string()), now);
                continue;
            }
            let unix = self.anchor.unix_us(now);
            if s.rx.poll_timeout().is_some_and(|t| t <= unix) {
                s.rx.handle_timeout(unix);
            }
            if s.fragmenter.poll_timeout().is_some_and(|t| t <= unix) {
                s.fragmenter.handle_timeout(unix);
            }
            self.drive(id, now);
        }
    }

    /// The next datagram to send. The first call after a batch of input forwards the
    /// masters' packets that batch collected to their viewers: each viewer's `Rtc` is then
    /// driven once per batch, not once per packet of its master.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if !self.forward_due.is_empty() {
            self.forward_all();
        }
        self.transmits.pop_front()
    }

    /// Forwards every session's collected packets to its channel's viewers.
    fn forward_all(&mut self) {
        let Some(now) = self.clock else { return };
        for id in std::mem::take(&mut self.forward_due) {
            let Some(s) = self.sessions.get_mut(&id) else { continue };
            s.forward_queued = false;
            let packets = std::mem::take(&mut s.outbox);
            if !s.forwarding {
                continue;
            }
            let channel = s.channel_arn.clone();
            self.forward(&channel, &packets, now);
            // Hand the buffer back: the next batch collects into it without growing one again.
            if let Some(s) = self.sessions.get_mut(&id) {
                let mut packets = packets;
                packets.clear();
                s.outbox = packets;
            }
        }
    }

    /// The next session the hub ended (its writer queue is already closed).
    pub fn poll_ended(&mut self) -> Option<Ended> {
        self.ended.pop_front()
    }

    fn unknown(&mut self) {
        self.stats.unknown_datagrams += 1;
        self.counters.get_or_insert_with(Counters::register).unknown.increment(1);
    }

    /// Polls the session's `Rtc` until it waits, queuing transmits, ingesting and rescheduling.
    fn drive(&mut self, id: u64, now: Instant) {
        let Some(s) = self.sessions.get_mut(&id) else { return };
        // Only a session with viewers has a keyframe gate to serve (no lookup otherwise).
        let channel =
            if s.forwarding { self.channels.get_mut(&s.channel_arn).filter(|c| c.master == Some(id)) } else { None };
        let mut gate_deadline = None;
        if let Some(c) = channel {
            if c.keyframes.poll(now) {
                request_pli(s);
                metrics::counter!(super::fanout::VIEWER_KEYFRAME_REQUESTS).increment(1);
            }
            gate_deadline = c.keyframes.deadline();
        }
        let mut end = None;
        let rtc_deadline = loop {
            let deadline = loop {
                match s.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => {
                        self.transmits.push_back(Transmit { destination: t.destination, contents: t.contents.into() })
                    }
                    Ok(Output::Timeout(t)) => break t,
                    Ok(Output::Event(ev)) => {
                        if let Some(reason) = handle_event(s, ev) {
                            end = Some(reason);
                        }
                    }
                    Err(e) => {
                        end = Some(EndReason::Rtc(e.to_string()));
                        break now;
                    }
                }
            };
            take_media(s, &self.anchor, now);
            let plis = s.stats.plis;
            drain_fragmenter(s, now);
            // A PLI requested while draining is sent right away: poll the `Rtc` again.
            if s.stats.plis == plis || end.is_some() {
                break deadline;
            }
        };
        s.rtc_due = rtc_deadline;
        if let Some(reason) = end {
            self.end(id, reason, now);
            return;
        }
        // Chunks are handed over on a grid shared by every session of the hub, so the store
        // thread wakes once per grid point for all of them, not once per session.
        let flush_at =
            |p: &PendingChunk| flush_point(p.since, self.anchor.instant_of_anchor(), self.limits.chunk_flush_ms);
        if s.chunk.as_ref().is_some_and(|p| now >= flush_at(p)) {
            flush_pending(s);
        }
        let mut next = rtc_deadline
            .min(s.started + Duration::from_secs(self.limits.max_session_secs))
            .min(s.last_media + Duration::from_secs(self.limits.idle_timeout_secs));
        if let Some(t) = s.fragmenter.poll_timeout() {
            next = next.min(self.anchor.instant(t));
        }
        if let Some(t) = s.rx.poll_timeout() {
            next = next.min(self.anchor.instant(t));
        }
        if let Some(p) = &s.chunk {
            next = next.min(flush_at(p));
        }
        if let Some(t) = gate_deadline {
            next = next.min(t);
        }
        let next = on_tick(next, self.anchor.instant_of_anchor(), self.limits.timer_tick_ms);
        refile(&mut self.deadlines, &mut s.deadline, id, next);
        if !s.outbox.is_empty() && !s.forward_queued {
            s.forward_queued = true;
            self.forward_due.push(id);
        }
    }

    /// Ends one session: flushes its fragment, closes its writer queue, reports it ended.
    fn end(&mut self, id: u64, reason: EndReason, now: Instant) {
        let Some(mut s) = self.sessions.remove(&id) else { return };
        if let Some(t) = s.deadline.take() {
            self.deadlines.remove(&(t, id));
        }
        for r in &s.remotes {
            if self.by_remote.get(r) == Some(&id) {
                self.by_remote.remove(r);
            }
        }
        s.rtc.disconnect();
        s.fragmenter.finish(self.anchor.unix_us(now));
        drain_fragmenter(&mut s, now);
        flush_pending(&mut s);
        let stats = s.stats();
        export_frames(&mut s);
        let f = &stats.fragmenter;
        tracing::info!(
            session = id, channel = %s.channel_arn, ?reason, packets = stats.packets, bytes = stats.bytes,
            plis = stats.plis, fragments = f.fragments,
            video_received = f.video_in, video_frames = f.video_out,
            video_dropped = stats.frames_dropped(Track::Video), video_drops = %f.video_dropped.summary(),
            audio_received = f.audio_in, audio_frames = f.audio_out,
            audio_dropped = stats.frames_dropped(Track::Audio), audio_drops = %f.audio_dropped.summary(),
            queue_overflow_video = stats.queue_overflow.video, queue_overflow_audio = stats.queue_overflow.audio,
            dropped_events = stats.dropped_events,
            video_correction_ms = f.timing.video_correction_us / 1_000,
            audio_correction_ms = f.timing.audio_correction_us / 1_000,
            timing_steps = f.timing.steps, sender_report_jumps = f.timing.sender_report_jumps,
            "storage session ended"
        );
        metrics::gauge!("reel_storage_sessions_active").decrement(1.0);
        obs::remove_session(id);
        self.master_left(&s.channel_arn, id, now);
        self.stats.sessions_ended += 1;
        self.ended.push_back(Ended { id, reason, stats });
        // Dropping the queue (with the session) lets the writer finish the open fragment.
    }
}

/// Viewer sessions (JoinStorageSessionAsViewer; see [`super::fanout`] for the forwarding).
impl Hub {
    /// Starts driving a viewer session of `v.channel_arn`. A live viewer of the channel with
    /// the same ClientId is replaced (ends with [`EndReason::Replaced`]).
    pub fn add_viewer(&mut self, now: Instant, v: HubViewer) {
        let now = self.monotonic(now);
        self.stats.viewers_added += 1;
        let interval = Duration::from_millis(self.limits.viewer_keyframe_interval_ms);
        if !self.channels.contains_key(&v.channel_arn) {
            // The channel's newest storage session on this hub, if any, is its master.
            let master = self
                .sessions
                .values()
                .filter(|s| s.channel_arn == v.channel_arn)
                .max_by_key(|s| (s.started, s.id))
                .map(|s| s.id);
            let mut ch = Channel::new(interval);
            ch.master = master;
            self.channels.insert(v.channel_arn.clone(), ch);
        }
        let Some(ch) = self.channels.get_mut(&v.channel_arn) else { return };
        let older: Vec<u64> = ch
            .viewers
            .iter()
            .copied()
            .filter(|o| self.viewers.get(o).is_some_and(|x| x.client_id == v.client_id))
            .collect();
        let master = ch.master;
        ch.viewers.push(v.id);
        for o in older {
            self.end_viewer(o, EndReason::Replaced, now);
        }
        metrics::gauge!(super::fanout::VIEWERS_ACTIVE).increment(1.0);
        tracing::info!(viewer = v.id, channel = %v.channel_arn, client_id = %v.client_id, master = ?master, "viewer session added");
        let id = v.id;
        self.viewers.insert(
            id,
            Viewer {
                id,
                channel_arn: v.channel_arn,
                client_id: v.client_id,
                rtc: v.rtc,
                pending: Some(v.pending),
                video: v.video,
                audio: v.audio,
                started: now,
                last_recv: now,
                connected: false,
                remotes: Vec::new(),
                deadline: None,
                awaiting_keyframe: true,
                out: [TrackOut::starting_at(rand::random()), TrackOut::starting_at(rand::random())],
                masterless_since: master.is_none().then_some(now),
                had_master: master.is_some(),
                stats: ViewerStats::default(),
            },
        );
        if let Some(m) = master
            && let Some(s) = self.sessions.get_mut(&m)
        {
            s.forwarding = true;
        }
        self.drive_viewer(id, now);
    }

    /// Applies a viewer's (already validated) answer.
    pub fn viewer_answer(&mut self, id: u64, answer: SdpAnswer, now: Instant) {
        let now = self.monotonic(now);
        let Some(v) = self.viewers.get_mut(&id) else { return };
        match accept_answer(&mut v.rtc, &mut v.pending, answer) {
            Ok(()) => self.drive_viewer(id, now),
            Err(reason) => self.end_viewer(id, reason, now),
        }
    }

    /// Adds a viewer's trickled candidate.
    pub fn viewer_candidate(&mut self, id: u64, candidate: Candidate, now: Instant) {
        let now = self.monotonic(now);
        let Some(v) = self.viewers.get_mut(&id) else { return };
        v.rtc.add_remote_candidate(candidate);
        self.drive_viewer(id, now);
    }

    /// Ends a viewer session.
    pub fn close_viewer(&mut self, id: u64, reason: EndReason, now: Instant) {
        let now = self.monotonic(now);
        self.end_viewer(id, reason, now);
    }

    /// The next viewer session the hub ended.
    pub fn poll_viewer_ended(&mut self) -> Option<ViewerEnded> {
        self.viewers_ended.pop_front()
    }

    /// Counters of a live viewer session.
    pub fn viewer_stats(&self, id: u64) -> Option<ViewerStats> {
        self.viewers.get(&id).map(|v| v.stats)
    }

    /// Ids of the live viewer sessions of `channel_arn`, oldest first.
    pub fn viewers_of(&self, channel_arn: &str) -> Vec<u64> {
        self.channels.get(channel_arn).map(|c| c.viewers.clone()).unwrap_or_default()
    }

    /// Session `id` is now its channel's master: its viewers stop waiting and get its media.
    fn master_arrived(&mut self, id: u64, now: Instant) {
        let Some(arn) = self.sessions.get(&id).map(|s| s.channel_arn.clone()) else { return };
        let Some(ch) = self.channels.get_mut(&arn) else { return };
        let older = ch.master.replace(id);
        let viewers = ch.viewers.clone();
        if let Some(s) = self.sessions.get_mut(&id) {
            s.forwarding = !viewers.is_empty();
        }
        // A superseded session still running until its close arrives forwards no more.
        if let Some(o) = older.filter(|o| *o != id)
            && let Some(o) = self.sessions.get_mut(&o)
        {
            o.forwarding = false;
            o.outbox.clear();
        }
        for v in &viewers {
            if let Some(v) = self.viewers.get_mut(v) {
                v.masterless_since = None;
                v.had_master = true;
                // Its video restarts at the new master's first keyframe.
                v.awaiting_keyframe = true;
            }
        }
        tracing::debug!(session = id, viewers = viewers.len(), "master session for viewers");
        for v in viewers {
            self.reschedule(v, now);
        }
    }

    /// Session `id` ended: if it was its channel's master, the viewers start waiting for
    /// the next one (`viewer_master_gone_secs`).
    fn master_left(&mut self, channel_arn: &str, id: u64, now: Instant) {
        let Some(ch) = self.channels.get_mut(channel_arn) else { return };
        if ch.master != Some(id) {
            return;
        }
        ch.master = None;
        let viewers = ch.viewers.clone();
        if viewers.is_empty() {
            self.channels.remove(channel_arn);
            return;
        }
        for v in &viewers {
            if let Some(v) = self.viewers.get_mut(v) {
                v.masterless_since = Some(now);
            }
        }
        for v in viewers {
            self.reschedule(v, now);
        }
    }

    /// Forwards the master's `packets` to every connected viewer of `channel_arn`.
    fn forward(&mut self, channel_arn: &str, packets: &[Packet], now: Instant) {
        let Some(ch) = self.channels.get(channel_arn) else { return };
        let ids = ch.viewers.clone();
        // Frames sent by track (video, audio): one metrics update per call.
        let mut sent = [0u64; 2];
        for id in ids {
            let Some(v) = self.viewers.get_mut(&id) else { continue };
            if !v.connected {
                continue;
            }
            let before = (v.stats.video_frames, v.stats.audio_frames);
            let mut any = false;
            for p in packets {
                any |= v.write(p) == Written::Sent;
            }
            sent[0] += v.stats.video_frames - before.0;
            sent[1] += v.stats.audio_frames - before.1;
            // The written packets leave in this pass, sealed straight from the viewer's send
            // streams: no pacer and no timeout pass per viewer and batch (vendor/README.md).
            if any {
                for mid in [v.video, v.audio] {
                    while let Some(t) = v.rtc.poll_stream_transmit(mid, now) {
                        self.transmits.push_back(Transmit { destination: t.destination, contents: t.contents.into() });
                    }
                }
            }
        }
        for (k, track) in ["video", "audio"].into_iter().enumerate() {
            if sent[k] > 0 {
                metrics::counter!(super::fanout::VIEWER_FRAMES, "track" => track).increment(sent[k]);
            }
        }
    }

    /// A viewer of `channel_arn` wants a keyframe: ask the master through the gate.
    fn ask_keyframe(&mut self, channel_arn: &str, now: Instant) {
        let Some(ch) = self.channels.get_mut(channel_arn) else { return };
        let Some(m) = ch.master else { return };
        let now_ok = ch.keyframes.request(now);
        let Some(s) = self.sessions.get_mut(&m) else { return };
        if now_ok {
            request_pli(s);
            metrics::counter!(super::fanout::VIEWER_KEYFRAME_REQUESTS).increment(1);
        }
        // The master is driven at once: it sends the PLI, or schedules the folded one.
        self.reschedule(m, now);
    }

    /// Viewer `id`'s audio frame: to the master if the viewer has the talk-back floor.
    fn talk_back(&mut self, channel_arn: &str, id: u64, md: &str0m::media::MediaData, now: Instant) {
        let Some(ch) = self.channels.get_mut(channel_arn) else { return };
        let admitted = ch.talk.admit(id, now);
        let master = ch.master.and_then(|m| self.sessions.get_mut(&m));
        let mut sent = false;
        if admitted && let Some(s) = master {
            if let Some(w) = s.rtc.writer(s.audio) {
                let pt = super::fanout::matching_pt(&w, md.params);
                sent = pt.is_some_and(|pt| w.write(pt, md.network_time, md.time, md.data.clone()).is_ok());
            }
            let m = s.id;
            self.reschedule(m, now);
        }
        if let Some(v) = self.viewers.get_mut(&id) {
            if sent {
                v.stats.talk_packets += 1;
                metrics::counter!(super::fanout::VIEWER_TALK_PACKETS).increment(1);
            } else {
                v.stats.talk_dropped += 1;
            }
        }
    }

    /// Makes `id` (a session or a viewer) due at `now`.
    fn reschedule(&mut self, id: u64, now: Instant) {
        let slot = match self.sessions.get_mut(&id) {
            Some(s) => &mut s.deadline,
            None => match self.viewers.get_mut(&id) {
                Some(v) => &mut v.deadline,
                None => return,
            },
        };
        refile(&mut self.deadlines, slot, id, now);
    }

    /// A viewer's deadline passed: its life limits, then its `Rtc`'s timers.
    fn viewer_timeout(&mut self, id: u64, now: Instant) {
        let Some(v) = self.viewers.get_mut(&id) else { return };
        v.deadline = None;
        if let Some(reason) = viewer_limit(v, &self.limits, now) {
            self.end_viewer(id, reason, now);
            return;
        }
        self.run_viewer_timers(id, now);
    }

    /// Runs a viewer's `Rtc` timers at `now` and drives it (or ends it on an error).
    fn run_viewer_timers(&mut self, id: u64, now: Instant) {
        let Some(v) = self.viewers.get_mut(&id) else { return };
        if let Err(e) = v.rtc.handle_input(Input::Timeout(now)) {
            self.end_viewer(id, EndReason::Rtc(e.to_string()), now);
            return;
        }
        self.drive_viewer(id, now);
    }

    /// Polls a viewer's `Rtc` until it waits: transmits, its keyframe requests and audio.
    fn drive_viewer(&mut self, id: u64, now: Instant) {
        let Some(v) = self.viewers.get_mut(&id) else { return };
        let mut end = None;
        let mut ask = false;
        let mut talk = Vec::new();
        let rtc_deadline = loop {
            match v.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    self.transmits.push_back(Transmit { destination: t.destination, contents: t.contents.into() })
                }
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Event(ev)) => match ev {
                    Event::Connected => {
                        tracing::info!(viewer = id, channel = %v.channel_arn, client_id = %v.client_id, remotes = ?v.remotes, "viewer connected");
                        v.connected = true;
                        v.awaiting_keyframe = true;
                        ask = true;
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        end = Some(EndReason::Disconnected);
                    }
                    Event::KeyframeRequest(_) => {
                        v.stats.keyframe_requests += 1;
                        ask = true;
                    }
                    Event::MediaData(md) if md.mid == v.audio => talk.push(md),
                    _ => {}
                },
                Err(e) => {
                    end = Some(EndReason::Rtc(e.to_string()));
                    break now;
                }
            }
        };
        if let Some(reason) = end {
            self.end_viewer(id, reason, now);
            return;
        }
        let next = viewer_next(v, &self.limits).min(rtc_deadline);
        let next = on_tick(next, self.anchor.instant_of_anchor(), self.limits.timer_tick_ms);
        refile(&mut self.deadlines, &mut v.deadline, id, next);
        if !ask && talk.is_empty() {
            return;
        }
        let channel = v.channel_arn.clone();
        if ask {
            self.ask_keyframe(&channel, now);
        }
        for md in &talk {
            self.talk_back(&channel, id, md, now);
        }
    }

    /// Ends one viewer session: logs and counts why, reports it to the driver.
    fn end_viewer(&mut self, id: u64, reason: EndReason, now: Instant) {
        let Some(mut v) = self.viewers.remove(&id) else { return };
        if let Some(t) = v.deadline.take() {
            self.deadlines.remove(&(t, id));
        }
        for r in &v.remotes {
            if self.by_remote.get(r) == Some(&id) {
                self.by_remote.remove(r);
            }
        }
        v.rtc.disconnect();
        if let Some(ch) = self.channels.get_mut(&v.channel_arn) {
            ch.viewers.retain(|x| *x != id);
            ch.talk.forget(id);
            let master = ch.master;
            if ch.viewers.is_empty() {
                if let Some(s) = master.and_then(|m| self.sessions.get_mut(&m)) {
                    s.forwarding = false;
                    s.outbox.clear();
                }
                if master.is_none() {
                    self.channels.remove(&v.channel_arn);
                }
            }
        }
        let st = v.stats;
        tracing::info!(
            viewer = id, channel = %v.channel_arn, client_id = %v.client_id, ?reason,
            secs = now.saturating_duration_since(v.started).as_secs(),
            video_frames = st.video_frames, audio_frames = st.audio_frames,
            skipped_frames = st.skipped_frames, keyframe_requests = st.keyframe_requests,
            talk_packets = st.talk_packets, "viewer session ended"
        );
        metrics::counter!(super::fanout::VIEWERS_ENDED, "reason" => reason.label()).increment(1);
        metrics::gauge!(super::fanout::VIEWERS_ACTIVE).decrement(1.0);
        self.stats.viewers_ended += 1;
        self.viewers_ended.push_back(ViewerEnded { id, reason, stats: st });
    }
}

/// Applies `answer` to `rtc`'s offer `pending` (nothing once applied); the end reason when
/// str0m rejects it.
fn accept_answer(rtc: &mut Rtc, pending: &mut Option<SdpPendingOffer>, answer: SdpAnswer) -> Result<(), EndReason> {
    match pending.take() {
        Some(p) => rtc.sdp_api().accept_answer(p, answer).map_err(|e| EndReason::Rtc(format!("answer rejected: {e}"))),
        None => Ok(()),
    }
}

/// Why a viewer must end at `now` by its life limits, if it must.
fn viewer_limit(v: &Viewer, limits: &StorageSessionLimits, now: Instant) -> Option<EndReason> {
    if now.saturating_duration_since(v.started) >= Duration::from_secs(limits.max_session_secs) {
        return Some(EndReason::MaxLife);
    }
    if now.saturating_duration_since(v.last_recv) >= Duration::from_secs(limits.idle_timeout_secs) {
        return Some(EndReason::Idle);
    }
    let since = v.masterless_since?;
    let (wait, reason) = if v.had_master {
        (limits.viewer_master_gone_secs, EndReason::MasterEnded)
    } else {
        (limits.viewer_no_master_secs, EndReason::NoMaster)
    };
    (now.saturating_duration_since(since) >= Duration::from_secs(wait)).then_some(reason)
}

/// The earliest of a viewer's life limits.
fn viewer_next(v: &Viewer, limits: &StorageSessionLimits) -> Instant {
    let mut next = (v.started + Duration::from_secs(limits.max_session_secs))
        .min(v.last_recv + Duration::from_secs(limits.idle_timeout_secs));
    if let Some(since) = v.masterless_since {
        let wait = if v.had_master { limits.viewer_master_gone_secs } else { limits.viewer_no_master_secs };
        next = next.min(since + Duration::from_secs(wait));
    }
    next
}

impl Session {
    fn stats(&self) -> SessionStats {
        SessionStats {
            fragmenter: self.fragmenter.stats(),
            rx: self.rx.stats(),
            rx_held: self.rx.buffered(),
            rx_bookkeeping: self.rtc.receive_state_len(),
            ..self.stats
        }
    }
}

/// Reacts to one str0m event; returns a reason when the session must end.
fn handle_event(s: &mut Session, ev: Event) -> Option<EndReason> {
    match ev {
        Event::Connected => {
            tracing::info!(session = s.id, channel = %s.channel_arn, remotes = ?s.remotes, "storage session connected");
            request_pli(s);
        }
        Event::IceConnectionStateChange(state) => {
            tracing::debug!(session = s.id, ?state, "ice state");
            if state == IceConnectionState::Disconnected {
                return Some(EndReason::Disconnected);
            }
        }
        Event::PeerStats(stats) => {
            export_frames(s);
            let pair = stats.selected_candidate_pair.as_ref().map(|p| format!("{:?} -> {:?}", p.local, p.remote));
            if pair != s.selected_pair {
                tracing::info!(session = s.id, pair = ?pair, rtt = ?stats.rtt, "selected candidate pair");
                s.selected_pair = pair;
            } else {
                tracing::debug!(session = s.id, rtt = ?stats.rtt, loss = ?stats.ingress_loss_fraction, "peer stats");
            }
        }
        Event::MediaIngressStats(m) => {
            let last = s.nacks_seen.insert(m.mid, m.nacks).unwrap_or(0);
            s.stats.nacks += m.nacks.saturating_sub(last);
            // Jitter comes in RTP ticks: 90 kHz for H.264, 48 kHz for Opus.
            let rate = if m.mid == s.video { 90.0 } else { 48.0 };
            let sample = obs::IngressSample {
                packets: m.packets,
                bytes: m.bytes,
                nacks: m.nacks,
                plis: m.plis,
                jitter_ms: f64::from(m.jitter) / rate,
                loss: m.loss,
            };
            s.ingress.insert(m.mid, sample);
            obs::record_ingress(s.id, &m.mid.to_string(), sample, m.nacks.saturating_sub(last));
        }
        _ => {}
    }
    None
}

/// Moves the master's queued RTP into its reassemblers (and, with viewers, the outbox),
/// and their frames into the fragmenter.
fn take_media(s: &mut Session, anchor: &ClockAnchor, now: Instant) {
    let forward = s.forwarding.then_some((&mut s.outbox, s.id));
    if s.rx.take(&mut s.rtc, anchor, forward) {
        s.last_media = now;
    }
    while let Some(f) = s.rx.poll_frame() {
        s.fragmenter.push(f.into_media_frame());
    }
}

/// Files `id` (a session or a viewer) under `next` in `deadlines`, where `slot` holds its
/// current entry. Most datagrams leave a deadline where it was (on the timer grid), so an
/// unchanged one is not re-filed.
fn refile(deadlines: &mut BTreeSet<(Instant, u64)>, slot: &mut Option<Instant>, id: u64, next: Instant) {
    if *slot == Some(next) {
        return;
    }
    if let Some(old) = slot.replace(next) {
        deadlines.remove(&(old, id));
    }
    deadlines.insert((next, id));
}

fn request_pli(s: &mut Session) {
    if let Some(mut w) = s.rtc.writer(s.video)
        && w.request_keyframe(None, KeyframeRequestKind::Pli).is_ok()
    {
        s.stats.plis += 1;
        metrics::counter!("reel_storage_session_plis_total").increment(1);
    }
}

/// Counts the frames of a chunk the writer queue could not take.
fn count_overflow(s: &mut Session, ev: &FragmentEvent) {
    if let FragmentEvent::Chunk { frames, .. } = ev {
        s.stats.queue_overflow.add(*frames);
    }
}

/// Adds what the session received and dropped since the last export to the process-wide
/// frame counters, and refreshes its per-session series.
fn export_frames(s: &mut Session) {
    let stats = s.stats();
    let now = obs::FrameLedger::of(&stats.fragmenter, stats.queue_overflow);
    obs::record_frames(s.id, &s.exported, &now);
    s.exported = now;
}

/// Rounds `t` up to the timer grid (`tick_ms` after `base`), so sessions due in the same
/// tick are served by one wakeup. Timers only ever fire late by less than a tick.
fn on_tick(t: Instant, base: Instant, tick_ms: u64) -> Instant {
    let Some(since) = t.checked_duration_since(base) else { return t };
    let tick = u128::from(tick_ms) * 1_000_000;
    if tick == 0 {
        return t;
    }
    let nanos = since.as_nanos().div_ceil(tick) * tick;
    base + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// When a chunk begun at `since` is handed to the writer: the first point of the
/// `flush_ms` grid (from `base`) after it, so every session of a hub hands over at the same
/// instants and no chunk waits longer than `flush_ms`.
fn flush_point(since: Instant, base: Instant, flush_ms: u64) -> Instant {
    on_tick(since + Duration::from_nanos(1), base, flush_ms)
}

/// Collects fragment events for the writer queue and turns keyframe requests into PLIs.
/// Chunks are coalesced in `pending` (handed over by `drive` at the next point of the hub's
/// `chunk_flush_ms` grid, or once large); fragment boundaries flush them and go to the writer
/// at once.
fn drain_fragmenter(s: &mut Session, now: Instant) {
    while let Some(ev) = s.fragmenter.poll() {
        match ev {
            FragmentEvent::RequestKeyframe { reason } => {
                tracing::debug!(session = s.id, ?reason, "keyframe requested");
                request_pli(s);
            }
            FragmentEvent::Chunk { bytes, media_end_ms, frames } if !s.dropping => {
                let p = match &mut s.chunk {
                    Some(p) => {
                        p.bytes.extend_from_slice(&bytes);
                        p
                    }
                    None => {
                        let mut first = bytes;
                        first.reserve(s.chunk_hint.saturating_sub(first.len()).min(MAX_PENDING_CHUNK));
                        s.chunk.insert(PendingChunk {
                            bytes: first,
                            media_end_ms,
                            frames: ChunkFrames::default(),
                            since: now,
                        })
                    }
                };
                p.media_end_ms = p.media_end_ms.max(media_end_ms);
                p.frames.add(frames);
                if p.bytes.len() >= MAX_PENDING_CHUNK {
                    flush_pending(s);
                }
            }
            ev => {
                flush_pending(s);
                queue(s, ev);
            }
        }
    }
}

/// Hands the coalesced chunk (if any) to the writer queue.
fn flush_pending(s: &mut Session) {
    if let Some(p) = s.chunk.take() {
        s.chunk_hint = p.bytes.len();
        queue(s, FragmentEvent::Chunk { bytes: p.bytes, media_end_ms: p.media_end_ms, frames: p.frames });
    }
}

/// Queues one event for the writer. On a full queue the rest of the fragment is dropped
/// (see the module docs).
fn queue(s: &mut Session, ev: FragmentEvent) {
    let begin = matches!(ev, FragmentEvent::BeginFragment { .. });
    if s.dropping && !begin {
        s.stats.dropped_events += 1;
        metrics::counter!("reel_storage_session_dropped_events_total").increment(1);
        count_overflow(s, &ev);
        return;
    }
    match s.writer_tx.try_send(ev) {
        Ok(()) => s.dropping = false,
        Err(e) => {
            let ev = match e {
                mpsc::error::TrySendError::Full(ev) | mpsc::error::TrySendError::Closed(ev) => ev,
            };
            count_overflow(s, &ev);
            s.stats.dropped_events += 1;
            metrics::counter!("reel_storage_session_dropped_events_total").increment(1);
            if s.dropping && begin {
                // Still full at the next fragment: try again at the IDR after it.
                s.fragmenter.restart_at_keyframe();
            }
            if !s.dropping {
                s.dropping = true;
                if let Some(p) = s.chunk.take() {
                    s.stats.queue_overflow.add(p.frames);
                }
                s.stats.aborted_fragments += 1;
                metrics::counter!("reel_storage_session_aborted_fragments_total").increment(1);
                tracing::warn!(session = s.id, "store writer queue full; dropping the rest of the fragment");
                // End it and start again at the next IDR (asked for with a PLI).
                s.fragmenter.restart_at_keyframe();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::session::build_rtc_at;

    fn hub(now: Instant) -> Hub {
        let local = SocketAddr::from(([127, 0, 0, 1], 40_000));
        Hub::new(local, StorageSessionLimits::default(), ClockAnchor::at(now, 1_800_000_000_000_000))
    }

    fn session(id: u64, now: Instant) -> (HubSession, mpsc::Receiver<FragmentEvent>) {
        let o = build_rtc_at(SocketAddr::from(([127, 0, 0, 1], 40_000)), now).expect("rtc");
        let (tx, rx) = mpsc::channel(8);
        let s = HubSession {
            id,
            channel_arn: "arn:test".into(),
            stream_arn: "arn:test:stream".into(),
            rtc: o.rtc,
            pending: o.pending,
            video: o.video,
            audio: o.audio,
            writer_tx: tx,
        };
        (s, rx)
    }

    #[test]
    fn an_empty_hub_counts_strangers_and_waits_for_nothing() {
        let now = Instant::now();
        let mut h = hub(now);
        assert_eq!(h.next_deadline(), None);
        h.receive(now, SocketAddr::from(([127, 0, 0, 1], 9)), &[0x80, 0x60, 0, 1]);
        h.receive(now, SocketAddr::from(([127, 0, 0, 1], 9)), &[]);
        assert_eq!(h.stats().unknown_datagrams, 2);
        assert!(h.poll_transmit().is_none() && h.poll_ended().is_none() && h.is_empty());
        // Calls for sessions that do not exist are no-ops.
        h.close(7, EndReason::Shutdown, now);
        h.timeout(now + Duration::from_secs(10));
        assert!(h.poll_ended().is_none());
    }

    #[test]
    fn close_ends_the_session_and_closes_its_writer_queue() {
        let now = Instant::now();
        let mut h = hub(now);
        let (s, mut rx) = session(1, now);
        h.add(now, s);
        assert_eq!(h.session_ids(), vec![1]);
        assert!(h.next_deadline().is_some_and(|t| t <= now + Duration::from_secs(180)));
        h.close(1, EndReason::Closed("superseded".into()), now + Duration::from_millis(5));
        let e = h.poll_ended().expect("ended");
        assert_eq!((e.id, e.reason), (1, EndReason::Closed("superseded".into())));
        assert!(h.is_empty() && h.next_deadline().is_none());
        assert!(matches!(rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
        assert_eq!(h.stats().sessions_ended, 1);
    }

    #[test]
    fn a_session_without_media_ends_idle_on_fake_time() {
        let now = Instant::now();
        let mut h = hub(now);
        let (s, _rx) = session(1, now);
        h.add(now, s);
        h.timeout(now + Duration::from_secs(179));
        assert!(h.poll_ended().is_none(), "not idle yet");
        h.timeout(now + Duration::from_secs(180));
        assert_eq!(h.poll_ended().map(|e| e.reason), Some(EndReason::Idle));
    }

    #[test]
    fn chunks_are_handed_over_on_one_grid_within_the_flush_interval() {
        let base = Instant::now();
        let ms = Duration::from_millis;
        // Chunks begun anywhere in one interval leave together at its end…
        for since in [ms(0), ms(1), ms(37), ms(99)] {
            assert_eq!(flush_point(base + since, base, 100), base + ms(100), "{since:?}");
        }
        // …and one begun on a grid point waits the whole interval, never more.
        assert_eq!(flush_point(base + ms(100), base, 100), base + ms(200));
        assert_eq!(flush_point(base + ms(250), base, 100), base + ms(300));
        // 0 hands every chunk over at the next drive.
        assert_eq!(flush_point(base + ms(5), base, 0), base + ms(5) + Duration::from_nanos(1));
    }

    #[test]
    fn a_bad_fragmenter_config_ends_the_session_at_once() {
        let now = Instant::now();
        let mut h = hub(now);
        h.set_fragmenter_config(FragmenterConfig { target_duration_ms: 0, ..FragmenterConfig::default() });
        let (s, _rx) = session(3, now);
        h.add(now, s);
        assert!(matches!(h.poll_ended(), Some(Ended { id: 3, reason: EndReason::Rtc(_), .. })));
        assert!(h.is_empty());
    }
}
