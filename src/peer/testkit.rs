//! A deterministic harness for the media peer: the real [`Hub`] and real str0m masters in
//! memory, a fake clock advanced by hand, and a simulated network between them that can
//! drop, delay (reorder), duplicate and inject datagrams.
//!
//! Each master answers the hub's offer from [`session::build_rtc_at`] with sendonly H.264 +
//! Opus (like `tests/common/webrtc_master.rs` does over UDP) and publishes a [`MediaPlan`]
//! on fake time. The harness collects what each session queued for its store writer and
//! [`judge`] checks it the way the store and a player would (each fragment starts with a
//! keyframe, bounded durations, monotonic timestamps, no holes).
//!
//! Time is simulated event by event: [`Sim::run_for`] jumps to the next due event (a
//! str0m timeout, a datagram delivery, a media frame), so an hour of session is cheap.
//!
//! Benches (feature `testkit`): run a [`Sim`] with some masters, then divide
//! [`Sim::hub_busy`] (real time spent inside the hub only) by the frames stored
//! ([`Peer::judged`]) or by [`Sim::hub_datagrams`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::sync::mpsc;

use super::hub::{Ended, Hub, HubSession};
use super::ingest::ClockAnchor;
use super::{sdp, session};
use crate::limits::StorageSessionLimits;
use crate::media::fixture;
use crate::media::fragmenter::FragmentEvent;
use crate::media::mkv::{parse_stored, parse_tracks};

/// The hub's address in the simulation (nothing is ever sent on a real socket).
pub const HUB_ADDR: &str = "127.0.0.1:40000";
/// One-way network latency by default.
pub const LATENCY: Duration = Duration::from_millis(10);

static NEXT_SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The fixture clip: H.264 access units and Opus packets.
pub fn fixture_media() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
    let video = std::fs::read(format!("{dir}/test-h264-baseline.h264")).unwrap_or_default();
    let audio = std::fs::read(format!("{dir}/test-opus.packets")).unwrap_or_default();
    let v = fixture::access_units(&video).into_iter().map(<[u8]>::to_vec).collect();
    let a = fixture::length_prefixed(&audio).into_iter().map(<[u8]>::to_vec).collect();
    (v, a)
}

/// `aus` with every SPS replaced by `sps` (a parameter-set change for the same slices).
pub fn with_sps(aus: &[Vec<u8>], sps: &[u8]) -> Vec<Vec<u8>> {
    aus.iter()
        .map(|au| {
            let Ok(nals) = crate::media::h264::AnnexBNals::new(au) else { return au.clone() };
            nals.flat_map(|n| {
                let nal = if n.first().is_some_and(|h| h & 0x1f == 7) { sps } else { n };
                [&[0u8, 0, 0, 1][..], nal].concat()
            })
            .collect()
        })
        .collect()
}

/// A tiny deterministic PRNG (xorshift64*) for floods and loss patterns.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (a zero seed is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// What a master publishes once connected.
#[derive(Debug, Clone)]
pub struct MediaPlan {
    /// Access units, sent at 30 fps and looped.
    pub video: Vec<Vec<u8>>,
    /// Opus packets, one every 20 ms, looped.
    pub audio: Vec<Vec<u8>>,
    /// RTP time of the first video frame (90 kHz; values past 2^32 wrap on the wire).
    pub video_rtp_base: u64,
    /// RTP time of the first audio packet (48 kHz).
    pub audio_rtp_base: u64,
    /// RTP clock speed relative to the fake clock (1.005 = 0.5 % fast).
    pub rtp_rate: f64,
    /// Media starts this long after the master is connected.
    pub start_after_connect: Duration,
    /// Publishing stops after this long.
    pub duration: Duration,
    /// No audio in this window (relative to the media start): DTX.
    pub audio_pause: Option<(Duration, Duration)>,
    /// Only send media in these windows (relative to the media start); all the time if empty.
    pub active: Vec<(Duration, Duration)>,
}

impl MediaPlan {
    /// The fixture clip for `duration`, RTP times from 0, real-time clock.
    pub fn fixture(duration: Duration) -> Self {
        let (video, audio) = fixture_media();
        Self {
            video,
            audio,
            video_rtp_base: 0,
            audio_rtp_base: 0,
            rtp_rate: 1.0,
            start_after_connect: Duration::ZERO,
            duration,
            audio_pause: None,
            active: Vec::new(),
        }
    }

    fn is_active(&self, at: Duration) -> bool {
        at < self.duration && (self.active.is_empty() || self.active.iter().any(|(a, b)| (*a..*b).contains(&at)))
    }
}

/// An RTP packet's cleartext header fields (SRTP leaves the header in the clear).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Payload type.
    pub pt: u8,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// SSRC.
    pub ssrc: u32,
}

impl RtpHeader {
    /// The header of an RTP (not RTCP) datagram.
    pub fn parse(d: &[u8]) -> Option<Self> {
        let b0 = *d.first()?;
        let b1 = *d.get(1)?;
        if b0 >> 6 != 2 || (192..=223).contains(&b1) || d.len() < 12 {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
        Some(Self { pt: b1 & 0x7f, seq: u16::from_be_bytes([d[2], d[3]]), timestamp: u32_at(4), ssrc: u32_at(8) })
    }
}

/// A datagram from a master to the hub, as the network filter sees it.
#[derive(Debug, Clone, Copy)]
pub struct Uplink<'a> {
    /// Index of the sending master.
    pub master: usize,
    /// Fake time since the simulation started.
    pub at: Duration,
    /// The datagram.
    pub data: &'a [u8],
    /// Its RTP header, if it is RTP.
    pub rtp: Option<RtpHeader>,
    /// The master's H.264 payload type.
    pub video_pt: Option<u8>,
    /// The master's H.264 retransmission (RTX) payload type.
    pub video_rtx_pt: Option<u8>,
}

impl Uplink<'_> {
    /// True for an original (not retransmitted) video RTP packet.
    pub fn is_video(&self) -> bool {
        self.rtp.is_some_and(|r| Some(r.pt) == self.video_pt)
    }

    /// True for a video retransmission.
    pub fn is_video_rtx(&self) -> bool {
        self.rtp.is_some_and(|r| Some(r.pt) == self.video_rtx_pt)
    }
}

/// What the network does with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver after the normal latency.
    Deliver,
    /// Lose it.
    Drop,
    /// Deliver it twice.
    Duplicate,
    /// Deliver it this much later than normal (reordering).
    Delay(Duration),
}

/// The network's policy for master → hub datagrams.
pub type Filter = Box<dyn FnMut(&Uplink<'_>) -> Verdict>;

/// One master, its session on the hub and what the session queued for its writer.
pub struct Peer {
    /// Session id on the hub.
    pub session: u64,
    /// The master's address.
    pub addr: SocketAddr,
    /// The master's peer connection.
    pub rtc: Rtc,
    timeout: Instant,
    video_mid: Option<Mid>,
    audio_mid: Option<Mid>,
    video_pt: Option<u8>,
    video_rtx_pt: Option<u8>,
    /// When ICE+DTLS connected (master side).
    pub connected: Option<Instant>,
    /// What to publish.
    pub plan: MediaPlan,
    /// Video frames written.
    pub video_sent: usize,
    /// Audio packets written.
    pub audio_sent: usize,
    /// Index of the next video frame slot (sent or skipped).
    video_slot: usize,
    /// Index of the next audio packet slot (sent or skipped).
    audio_slot: usize,
    /// Keyframe requests (PLI/FIR) the master received.
    pub keyframe_requests: usize,
    /// The writer queue's receiving end.
    rx: mpsc::Receiver<FragmentEvent>,
    /// Stop draining the writer queue (to overflow it).
    pub writer_paused: bool,
    /// Everything the session queued for its store writer, in order.
    pub events: Vec<FragmentEvent>,
    /// How the hub ended the session.
    pub ended: Option<Ended>,
    /// When (since the simulation start) the hub ended it.
    pub ended_at: Option<Duration>,
}

/// The simulation: fake clock, network, hub and masters.
pub struct Sim {
    /// Fake now.
    pub now: Instant,
    /// When the simulation started.
    pub start: Instant,
    /// The hub under test.
    pub hub: Hub,
    /// The masters.
    pub peers: Vec<Peer>,
    /// Policy for master → hub datagrams.
    pub uplink: Filter,
    /// One-way latency.
    pub latency: Duration,
    net: BinaryHeap<Reverse<(Instant, u64, Flight)>>,
    net_seq: u64,
    /// Writer queue capacity for new sessions.
    pub writer_queue: usize,
    /// Datagrams the hub sent that reached no master.
    pub undeliverable: u64,
    /// Datagrams handed to [`Hub::receive`].
    pub hub_datagrams: u64,
    /// Real (wall-clock) time spent inside the hub's `receive` and `timeout`: the cost of
    /// "encrypted datagram → fragment events" without the masters' side, for benches.
    pub hub_busy: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Flight {
    from: SocketAddr,
    to: SocketAddr,
    data: Vec<u8>,
}

impl Sim {
    /// A hub with `limits` at [`HUB_ADDR`] and no masters.
    pub fn new(limits: StorageSessionLimits) -> Self {
        // The fake clock starts at the real now: str0m maps `Instant`s to NTP time for
        // sender reports with its own real-time epoch, and the timing model only trusts
        // reports close to arrival time.
        let anchor = ClockAnchor::now();
        let now = anchor.instant_of_anchor();
        let local = HUB_ADDR.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 40000)));
        Self {
            now,
            start: now,
            hub: Hub::new(local, limits, anchor),
            peers: Vec::new(),
            uplink: Box::new(|_| Verdict::Deliver),
            latency: LATENCY,
            net: BinaryHeap::new(),
            net_seq: 0,
            writer_queue: super::ingest::WRITER_QUEUE,
            undeliverable: 0,
            hub_datagrams: 0,
            hub_busy: Duration::ZERO,
        }
    }

    /// Fake time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Starts a session for a new master publishing `plan`; returns the peer index.
    pub fn add_master(&mut self, plan: MediaPlan) -> Result<usize, String> {
        let index = self.peers.len();
        // Unique across the process: per-session metric series are global.
        let id = NEXT_SESSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let addr = SocketAddr::from(([127, 0, 0, 1], 41000 + index as u16));
        let hub_addr = self.hub.local();
        let offerer = session::build_rtc_at(hub_addr, self.now)?;
        let offer_sdp = sdp::finish_offer(&offerer.offer_sdp, 1_000_000);
        let (tx, rx) = mpsc::channel(self.writer_queue);
        self.hub.add(
            self.now,
            HubSession {
                id,
                channel_arn: format!("arn:test:channel/{index}"),
                rtc: offerer.rtc,
                pending: offerer.pending,
                video: offerer.video,
                audio: offerer.audio,
                writer_tx: tx,
            },
        );
        let mut rtc = Rtc::new(self.now);
        let cand = Candidate::host(addr, "udp").map_err(|e| e.to_string())?;
        rtc.add_local_candidate(cand);
        let offer = SdpOffer::from_sdp_string(&offer_sdp).map_err(|e| e.to_string())?;
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| e.to_string())?;
        let answer_sdp = answer.to_sdp_string();
        sdp::validate_answer(&answer_sdp).map_err(|e| e.to_string())?;
        let answer = SdpAnswer::from_sdp_string(&answer_sdp).map_err(|e| e.to_string())?;
        self.hub.answer(id, answer, self.now);
        let remote = Candidate::host(addr, "udp").map_err(|e| e.to_string())?;
        self.hub.candidate(id, remote, self.now);
        rtc.add_remote_candidate(Candidate::host(hub_addr, "udp").map_err(|e| e.to_string())?);
        self.peers.push(Peer {
            session: id,
            addr,
            rtc,
            timeout: self.now,
            video_mid: None,
            audio_mid: None,
            video_pt: None,
            video_rtx_pt: None,
            connected: None,
            plan,
            video_sent: 0,
            audio_sent: 0,
            video_slot: 0,
            audio_slot: 0,
            keyframe_requests: 0,
            rx,
            writer_paused: false,
            events: Vec::new(),
            ended: None,
            ended_at: None,
        });
        self.settle();
        Ok(index)
    }

    /// Sends `data` to the hub from `from` (arrives after the latency, bypassing the filter).
    pub fn inject(&mut self, from: SocketAddr, data: Vec<u8>) {
        let to = self.hub.local();
        self.schedule(self.now + self.latency, Flight { from, to, data });
    }

    fn schedule(&mut self, at: Instant, f: Flight) {
        self.net_seq += 1;
        self.net.push(Reverse((at, self.net_seq, f)));
    }

    /// Runs the simulation for `d` of fake time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        let mut stuck = 0u32;
        loop {
            self.settle();
            let next = self.next_event().min(until);
            if next >= until && self.now >= until {
                break;
            }
            if next <= self.now {
                stuck += 1;
                if stuck > 1_000 {
                    // Something keeps asking for "now": let time move on.
                    self.now += Duration::from_millis(1);
                    stuck = 0;
                }
            } else {
                self.now = next;
                stuck = 0;
            }
            self.step();
            if self.now >= until {
                self.settle();
                break;
            }
        }
    }

    fn next_event(&self) -> Instant {
        let mut next = self.now + Duration::from_secs(3600);
        if let Some(Reverse((t, _, _))) = self.net.peek() {
            next = next.min(*t);
        }
        if let Some(t) = self.hub.next_deadline() {
            next = next.min(t);
        }
        for p in &self.peers {
            if p.rtc.is_alive() {
                next = next.min(p.timeout);
                if let Some(t) = p.next_media(self.now) {
                    next = next.min(t);
                }
            }
        }
        next
    }

    /// Handles everything due at `now`.
    fn step(&mut self) {
        let now = self.now;
        while self.net.peek().is_some_and(|Reverse((t, _, _))| *t <= now) {
            let Some(Reverse((_, _, f))) = self.net.pop() else { break };
            if f.to == self.hub.local() {
                let started = Instant::now();
                self.hub.receive(now, f.from, &f.data);
                self.hub_busy += started.elapsed();
                self.hub_datagrams += 1;
            } else if let Some(p) = self.peers.iter_mut().find(|p| p.addr == f.to && p.rtc.is_alive()) {
                if let Ok(contents) = f.data.as_slice().try_into() {
                    let input = Input::Receive(
                        now,
                        Receive { proto: Protocol::Udp, source: f.from, destination: f.to, contents },
                    );
                    let _ = p.rtc.handle_input(input);
                }
            } else {
                self.undeliverable += 1;
            }
        }
        if self.hub.next_deadline().is_some_and(|t| t <= now) {
            let started = Instant::now();
            self.hub.timeout(now);
            self.hub_busy += started.elapsed();
        }
        for p in &mut self.peers {
            if p.rtc.is_alive() {
                if p.timeout <= now {
                    let _ = p.rtc.handle_input(Input::Timeout(now));
                }
                p.publish(now);
            }
        }
    }

    /// Drains every output: hub datagrams, master datagrams and events, writer queues.
    fn settle(&mut self) {
        let now = self.now;
        while let Some(t) = self.hub.poll_transmit() {
            let from = self.hub.local();
            self.schedule(now + self.latency, Flight { from, to: t.destination, data: t.contents });
        }
        let mut outgoing = Vec::new();
        for (index, p) in self.peers.iter_mut().enumerate() {
            while p.rtc.is_alive() {
                match p.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => outgoing.push((index, t.destination, t.contents.to_vec())),
                    Ok(Output::Timeout(t)) => {
                        p.timeout = t;
                        break;
                    }
                    Ok(Output::Event(ev)) => p.event(ev, now),
                    Err(_) => break,
                }
            }
        }
        for (index, to, data) in outgoing {
            let Some(p) = self.peers.get(index) else { continue };
            let up = Uplink {
                master: index,
                at: now - self.start,
                data: &data,
                rtp: RtpHeader::parse(&data),
                video_pt: p.video_pt,
                video_rtx_pt: p.video_rtx_pt,
            };
            let verdict = (self.uplink)(&up);
            let from = p.addr;
            let at = now + self.latency;
            match verdict {
                Verdict::Deliver => self.schedule(at, Flight { from, to, data }),
                Verdict::Drop => {}
                Verdict::Duplicate => {
                    self.schedule(at, Flight { from, to, data: data.clone() });
                    self.schedule(at, Flight { from, to, data });
                }
                Verdict::Delay(d) => self.schedule(at + d, Flight { from, to, data }),
            }
        }
        while let Some(e) = self.hub.poll_ended() {
            if let Some(p) = self.peers.iter_mut().find(|p| p.session == e.id) {
                p.ended = Some(e);
                p.ended_at = Some(now - self.start);
            }
        }
        for p in &mut self.peers {
            if !p.writer_paused {
                while let Ok(ev) = p.rx.try_recv() {
                    p.events.push(ev);
                }
            }
        }
    }
}

impl Peer {
    fn event(&mut self, ev: Event, now: Instant) {
        match ev {
            Event::Connected => self.connected = Some(now),
            Event::MediaAdded(m) => match m.kind {
                MediaKind::Video => self.video_mid = Some(m.mid),
                MediaKind::Audio => self.audio_mid = Some(m.mid),
            },
            Event::KeyframeRequest(_) => self.keyframe_requests += 1,
            _ => {}
        }
    }

    fn media_start(&self) -> Option<Instant> {
        self.connected.map(|c| c + self.plan.start_after_connect)
    }

    fn video_at(&self, i: usize) -> Duration {
        Duration::from_micros(i as u64 * 1_000_000 / 30)
    }

    fn audio_at(&self, i: usize) -> Duration {
        Duration::from_millis(i as u64 * 20)
    }

    /// When the next frame is due.
    fn next_media(&self, now: Instant) -> Option<Instant> {
        let t0 = self.media_start()?;
        if now.saturating_duration_since(t0) >= self.plan.duration {
            return None;
        }
        let v = t0 + self.video_at(self.video_slot);
        let a = t0 + self.audio_at(self.audio_slot);
        Some(v.min(a))
    }

    /// Writes every frame due at `now`.
    fn publish(&mut self, now: Instant) {
        let (Some(t0), Some(vm), Some(am)) = (self.media_start(), self.video_mid, self.audio_mid) else { return };
        if now < t0 {
            return;
        }
        let elapsed = now - t0;
        while self.video_at(self.video_slot) <= elapsed && !self.plan.video.is_empty() {
            let i = self.video_slot;
            self.video_slot += 1;
            let at = self.video_at(i);
            if !self.plan.is_active(at) {
                continue;
            }
            let ticks = self.plan.video_rtp_base + (i as f64 * 3000.0 * self.plan.rtp_rate).round() as u64;
            let data = self.plan.video[i % self.plan.video.len()].clone();
            if let Some(w) = self.rtc.writer(vm) {
                let param = w.payload_params().find(|p| p.spec().codec == Codec::H264).copied();
                if let Some(p) = param {
                    self.video_pt = Some(*p.pt());
                    self.video_rtx_pt = p.resend().map(|r| *r);
                    if w.write(p.pt(), now, MediaTime::new(ticks, Frequency::NINETY_KHZ), data).is_ok() {
                        self.video_sent += 1;
                    }
                }
            }
        }
        while self.audio_at(self.audio_slot) <= elapsed && !self.plan.audio.is_empty() {
            let i = self.audio_slot;
            self.audio_slot += 1;
            let at = self.audio_at(i);
            let paused = self.plan.audio_pause.is_some_and(|(a, b)| (a..b).contains(&at));
            if paused || !self.plan.is_active(at) {
                continue;
            }
            let ticks = self.plan.audio_rtp_base + (i as f64 * 960.0 * self.plan.rtp_rate).round() as u64;
            let data = self.plan.audio[i % self.plan.audio.len()].clone();
            if let Some(w) = self.rtc.writer(am) {
                let pt = w.payload_params().find(|p| p.spec().codec == Codec::Opus).map(|p| p.pt());
                if let Some(pt) = pt
                    && w.write(pt, now, MediaTime::new(ticks, Frequency::FORTY_EIGHT_KHZ), data).is_ok()
                {
                    self.audio_sent += 1;
                }
            }
        }
    }
}

/// One stored fragment, as the store writer would see it.
#[derive(Debug, Clone)]
pub struct StoredFrag {
    /// Producer timestamp of its start, ms.
    pub producer_ts_ms: u64,
    /// Server (arrival) timestamp of its start, ms.
    pub server_ts_ms: u64,
    /// The `Tracks` header.
    pub header: Bytes,
    /// Chunks in order.
    pub chunks: Vec<Vec<u8>>,
    /// Duration the writer stores (from `EndFragment`, else the last chunk's end).
    pub duration_ms: u32,
    /// Whether an `EndFragment` closed it (rather than the next begin or the queue end).
    pub ended: bool,
}

/// Rebuilds fragments from writer-queue events with the writer's rules (see
/// `ingest::spawn_writer`): a begin finishes an open fragment at its last chunk's end.
pub fn assemble(events: &[FragmentEvent]) -> Vec<StoredFrag> {
    let mut out: Vec<StoredFrag> = Vec::new();
    let mut open = false;
    for ev in events {
        match ev {
            FragmentEvent::BeginFragment { producer_ts_ms, server_ts_ms, header } => {
                out.push(StoredFrag {
                    producer_ts_ms: *producer_ts_ms,
                    server_ts_ms: *server_ts_ms,
                    header: header.clone(),
                    chunks: Vec::new(),
                    duration_ms: 0,
                    ended: false,
                });
                open = true;
            }
            FragmentEvent::Chunk { bytes, media_end_ms } => {
                if let (true, Some(f)) = (open, out.last_mut()) {
                    f.chunks.push(bytes.clone());
                    f.duration_ms = f.duration_ms.max(*media_end_ms);
                }
            }
            FragmentEvent::EndFragment { duration_ms } => {
                if let (true, Some(f)) = (open, out.last_mut()) {
                    f.duration_ms = *duration_ms;
                    f.ended = true;
                }
                open = false;
            }
            FragmentEvent::RequestKeyframe { .. } => {}
        }
    }
    out
}

/// What [`judge`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdicts {
    /// Fragments.
    pub fragments: usize,
    /// Video frames stored.
    pub video_frames: usize,
    /// Audio frames stored.
    pub audio_frames: usize,
    /// Picture size of each fragment's codec private data.
    pub sizes: Vec<(u32, u32)>,
    /// Each fragment's duration, ms.
    pub durations_ms: Vec<u32>,
    /// Each fragment's producer start, ms.
    pub starts_ms: Vec<u64>,
    /// Largest gap between consecutive video frames inside a fragment, ms.
    pub max_video_gap_ms: i64,
    /// Largest gap between consecutive audio frames inside a fragment, ms.
    pub max_audio_gap_ms: i64,
    /// Producer time of every stored video frame, ms since the Unix epoch.
    pub video_ts_ms: Vec<i64>,
    /// Producer time of every stored audio frame, ms since the Unix epoch.
    pub audio_ts_ms: Vec<i64>,
    /// Producer minus server timestamp of each fragment's start, ms.
    pub skews_ms: Vec<i64>,
}

/// Checks stored fragments the way the store and a player rely on them; `Err` says what broke.
///
/// Every fragment parses, starts with a video keyframe, lasts at most `max_duration_ms`,
/// holds its frames within its duration with per-track monotonic timestamps (video strictly
/// increasing), no video hole longer than `max_video_gap_ms`, and starts at or after the
/// previous fragment's end.
pub fn judge(frags: &[StoredFrag], max_duration_ms: u32, max_video_gap_ms: i64) -> Result<Verdicts, String> {
    let mut v = Verdicts::default();
    let mut prev_end: Option<u64> = None;
    for (n, f) in frags.iter().enumerate() {
        let tracks = parse_tracks(&f.header).map_err(|e| format!("fragment {n}: tracks: {e}"))?;
        let size = tracks.iter().find_map(|t| t.video).map(|s| (s.width, s.height)).unwrap_or((0, 0));
        let parsed = parse_stored(&f.header, f.chunks.iter().map(Vec::as_slice), f.producer_ts_ms as i64)
            .map_err(|e| format!("fragment {n}: blocks: {e}"))?;
        let frames = parsed.frames;
        let first = frames.first().ok_or(format!("fragment {n} is empty"))?;
        if first.track != 1 || !first.keyframe {
            return Err(format!("fragment {n} starts with track {} keyframe={}", first.track, first.keyframe));
        }
        if f.duration_ms == 0 || f.duration_ms > max_duration_ms {
            return Err(format!("fragment {n} lasts {} ms", f.duration_ms));
        }
        if let Some(end) = prev_end
            && f.producer_ts_ms < end
        {
            return Err(format!("fragment {n} starts at {} before the previous end {end}", f.producer_ts_ms));
        }
        prev_end = Some(f.producer_ts_ms + u64::from(f.duration_ms));
        let start = f.producer_ts_ms as i64;
        for track in [1u64, 2] {
            let ts: Vec<i64> = frames.iter().filter(|fr| fr.track == track).map(|fr| fr.timestamp_ms - start).collect();
            for w in ts.windows(2) {
                let ok = if track == 1 { w[1] > w[0] } else { w[1] >= w[0] };
                if !ok {
                    return Err(format!("fragment {n} track {track}: timestamps {} then {}", w[0], w[1]));
                }
                let gap = w[1] - w[0];
                if track == 1 {
                    v.max_video_gap_ms = v.max_video_gap_ms.max(gap);
                } else {
                    v.max_audio_gap_ms = v.max_audio_gap_ms.max(gap);
                }
            }
            if let (Some(a), Some(b)) = (ts.first(), ts.last())
                && (*a < 0 || *b > i64::from(f.duration_ms))
            {
                return Err(format!("fragment {n} track {track}: frames at {a}..{b} ms outside 0..{}", f.duration_ms));
            }
        }
        if v.max_video_gap_ms > max_video_gap_ms {
            return Err(format!("fragment {n}: a {} ms hole in the video", v.max_video_gap_ms));
        }
        v.fragments += 1;
        v.video_frames += frames.iter().filter(|fr| fr.track == 1).count();
        v.audio_frames += frames.iter().filter(|fr| fr.track == 2).count();
        v.video_ts_ms.extend(frames.iter().filter(|fr| fr.track == 1).map(|fr| fr.timestamp_ms));
        v.audio_ts_ms.extend(frames.iter().filter(|fr| fr.track == 2).map(|fr| fr.timestamp_ms));
        v.skews_ms.push(f.producer_ts_ms as i64 - f.server_ts_ms as i64);
        v.sizes.push(size);
        v.durations_ms.push(f.duration_ms);
        v.starts_ms.push(f.producer_ts_ms);
    }
    Ok(v)
}

impl Peer {
    /// The fragments the session queued so far, rebuilt and judged with default bounds
    /// (10 s fragments, no video hole over 100 ms).
    pub fn judged(&self) -> Result<Verdicts, String> {
        judge(&assemble(&self.events), 10_000, 100)
    }
}
