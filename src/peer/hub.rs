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

use super::ingest::{self, ClockAnchor};
use crate::limits::StorageSessionLimits;
use crate::observe::metrics as obs;
use reel_media::fragmenter::{ChunkFrames, FragmentEvent, Fragmenter, FragmenterConfig, FragmenterStats};
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
    /// Mid of the recvonly Opus section.
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
    stats: SessionStats,
    /// The writer queue overflowed: drop events until the next `BeginFragment` is queued.
    dropping: bool,
    /// Chunks not yet handed to the writer (coalesced up to `chunk_flush_ms`).
    chunk: Option<PendingChunk>,
    /// Last absolute NACK count per mid (to add deltas to the cross-session total).
    nacks_seen: HashMap<Mid, u64>,
    /// The latest receive statistics per mid (loss, jitter), for the sessions dashboard.
    ingress: HashMap<Mid, obs::IngressSample>,
    /// The last logged selected candidate pair.
    selected_pair: Option<String>,
    /// Frame counters already added to the process-wide metrics.
    exported: obs::FrameLedger,
}

/// Fragment bytes collected for one hand-off to the store writer.
struct PendingChunk {
    bytes: Vec<u8>,
    media_end_ms: u32,
    frames: ChunkFrames,
    since: Instant,
}

/// Coalesced chunks are handed over early once they reach this size.
const MAX_PENDING_CHUNK: usize = 256 * 1024;

/// All sessions of one UDP socket, their demux tables and deadlines (sans-IO).
pub struct Hub {
    local: SocketAddr,
    limits: StorageSessionLimits,
    anchor: ClockAnchor,
    fragmenter: FragmenterConfig,
    sessions: HashMap<u64, Session>,
    by_remote: HashMap<SocketAddr, u64>,
    deadlines: BTreeSet<(Instant, u64)>,
    transmits: VecDeque<Transmit>,
    ended: VecDeque<Ended>,
    stats: HubStats,
    /// Registered on first use: the exporter is installed after the hub starts.
    counters: Option<Counters>,
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
            sessions: HashMap::new(),
            by_remote: HashMap::new(),
            deadlines: BTreeSet::new(),
            transmits: VecDeque::new(),
            ended: VecDeque::new(),
            stats: HubStats::default(),
            counters: None,
        }
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
                stats: SessionStats::default(),
                dropping: false,
                chunk: None,
                nacks_seen: HashMap::new(),
                ingress: HashMap::new(),
                selected_pair: None,
                exported: obs::FrameLedger::default(),
            },
        );
        self.drive(id, now);
    }

    /// Applies the master's (already validated) answer.
    pub fn answer(&mut self, id: u64, answer: SdpAnswer, now: Instant) {
        let Some(s) = self.sessions.get_mut(&id) else { return };
        let result = match s.pending.take() {
            Some(p) => s.rtc.sdp_api().accept_answer(p, answer),
            None => Ok(()),
        };
        if let Err(e) = result {
            self.end(id, EndReason::Rtc(format!("answer rejected: {e}")), now);
            return;
        }
        self.drive(id, now);
    }

    /// Adds a trickled remote candidate.
    pub fn candidate(&mut self, id: u64, candidate: Candidate, now: Instant) {
        let Some(s) = self.sessions.get_mut(&id) else { return };
        s.rtc.add_remote_candidate(candidate);
        self.drive(id, now);
    }

    /// Ends a session, flushing its open fragment.
    pub fn close(&mut self, id: u64, reason: EndReason, now: Instant) {
        self.end(id, reason, now);
    }

    /// Ends every session (server shutdown).
    pub fn close_all(&mut self, reason: EndReason, now: Instant) {
        for id in self.session_ids() {
            self.end(id, reason.clone(), now);
        }
    }

    /// Routes one datagram that arrived at `now` from `source` to the session it belongs to.
    pub fn receive(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        let Ok(contents) = data.try_into() else {
            self.unknown();
            return;
        };
        let input = Input::Receive(now, Receive { proto: Protocol::Udp, source, destination: self.local, contents });
        let mapped = self
            .by_remote
            .get(&source)
            .copied()
            .filter(|id| self.sessions.get(id).is_some_and(|s| s.rtc.accepts(&input)));
        let target = mapped.or_else(|| self.sessions.values().find(|s| s.rtc.accepts(&input)).map(|s| s.id));
        let Some(id) = target else {
            self.unknown();
            return;
        };
        let counters = self.counters.get_or_insert_with(Counters::register);
        counters.packets.increment(1);
        counters.bytes.increment(data.len() as u64);
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
        let max_life = Duration::from_secs(self.limits.max_session_secs);
        let idle = Duration::from_secs(self.limits.idle_timeout_secs);
        while let Some(&(t, id)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
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
            if let Err(e) = s.rtc.handle_input(Input::Timeout(now)) {
                self.end(id, EndReason::Rtc(e.to_string()), now);
                continue;
            }
            let unix = self.anchor.unix_us(now);
            if s.fragmenter.poll_timeout().is_some_and(|t| t <= unix) {
                s.fragmenter.handle_timeout(unix);
            }
            self.drive(id, now);
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
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
        let mut end = None;
        let rtc_deadline = loop {
            let deadline = loop {
                match s.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => {
                        self.transmits.push_back(Transmit { destination: t.destination, contents: t.contents.to_vec() })
                    }
                    Ok(Output::Timeout(t)) => break t,
                    Ok(Output::Event(ev)) => {
                        if let Some(reason) = handle_event(s, ev, &self.anchor, now) {
                            end = Some(reason);
                        }
                    }
                    Err(e) => {
                        end = Some(EndReason::Rtc(e.to_string()));
                        break now;
                    }
                }
            };
            let plis = s.stats.plis;
            drain_fragmenter(s, now);
            // A PLI requested while draining is sent right away: poll the `Rtc` again.
            if s.stats.plis == plis || end.is_some() {
                break deadline;
            }
        };
        if let Some(reason) = end {
            self.end(id, reason, now);
            return;
        }
        let flush_after = Duration::from_millis(self.limits.chunk_flush_ms);
        if s.chunk.as_ref().is_some_and(|p| now.saturating_duration_since(p.since) >= flush_after) {
            flush_pending(s);
        }
        let mut next = rtc_deadline
            .min(s.started + Duration::from_secs(self.limits.max_session_secs))
            .min(s.last_media + Duration::from_secs(self.limits.idle_timeout_secs));
        if let Some(t) = s.fragmenter.poll_timeout() {
            next = next.min(self.anchor.instant(t));
        }
        if let Some(p) = &s.chunk {
            next = next.min(p.since + flush_after);
        }
        let next = on_tick(next, self.anchor.instant_of_anchor(), self.limits.timer_tick_ms);
        if let Some(old) = s.deadline.replace(next) {
            self.deadlines.remove(&(old, id));
        }
        self.deadlines.insert((next, id));
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
        self.stats.sessions_ended += 1;
        self.ended.push_back(Ended { id, reason, stats });
        // Dropping the queue (with the session) lets the writer finish the open fragment.
    }
}

impl Session {
    fn stats(&self) -> SessionStats {
        SessionStats { fragmenter: self.fragmenter.stats(), ..self.stats }
    }
}

/// Reacts to one str0m event; returns a reason when the session must end.
fn handle_event(s: &mut Session, ev: Event, anchor: &ClockAnchor, now: Instant) -> Option<EndReason> {
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
        Event::MediaData(md) => {
            s.last_media = now;
            if let Some(frame) = ingest::media_frame(&md, s.video, s.audio, anchor) {
                s.fragmenter.push(frame);
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

/// Collects fragment events for the writer queue and turns keyframe requests into PLIs.
/// Chunks are coalesced in `pending` (handed over by `drive` once `chunk_flush_ms` old or
/// large); fragment boundaries flush them and go to the writer at once.
fn drain_fragmenter(s: &mut Session, now: Instant) {
    while let Some(ev) = s.fragmenter.poll() {
        match ev {
            FragmentEvent::RequestKeyframe { reason } => {
                tracing::debug!(session = s.id, ?reason, "keyframe requested");
                request_pli(s);
            }
            FragmentEvent::Chunk { bytes, media_end_ms, frames } if !s.dropping => {
                let p = s.chunk.get_or_insert_with(|| PendingChunk {
                    bytes: Vec::new(),
                    media_end_ms,
                    frames: ChunkFrames::default(),
                    since: now,
                });
                if p.bytes.is_empty() {
                    p.bytes = bytes;
                } else {
                    p.bytes.extend_from_slice(&bytes);
                }
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
