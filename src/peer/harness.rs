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
//! Drifting senders: a plan can produce a track slower or faster than real time
//! while its RTP time advances nominally ([`MediaPlan::audio_rate`], [`MediaPlan::video_rate`]),
//! map RTP time to the wall clock in its sender reports like the KVS C SDK
//! ([`MediaPlan::sr_wall_clock`]), step its clock ([`MediaPlan::sr_jump`]) and mute either
//! track. Every frame's send instant is kept ([`Peer::video_sent_at`], [`Peer::audio_sent_at`])
//! so stored frame n can be compared with sent frame n ([`Paired`]): A/V skew per fragment
//! ([`av_skew`]), stored vs sent spacing ([`gap_mismatch`]), whole-stream monotonicity
//! ([`strictly_increasing`]).
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
use reel_media::fixture;
use reel_media::fragmenter::FragmentEvent;
use reel_media::mkv::{parse_stored, parse_tracks};

/// The hub's address in the simulation (nothing is ever sent on a real socket).
pub const HUB_ADDR: &str = "127.0.0.1:40000";
/// One-way network latency by default.
pub const LATENCY: Duration = Duration::from_millis(10);

pub(super) static NEXT_SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

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
            let Ok(nals) = reel_media::h264::AnnexBNals::new(au) else { return au.clone() };
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
    /// No video in this window (relative to the media start): a muted camera sends nothing.
    pub video_pause: Option<(Duration, Duration)>,
    /// Only send media in these windows (relative to the media start); all the time if empty.
    pub active: Vec<(Duration, Duration)>,
    /// Audio production speed relative to real time (1.0 = real time, 0.97 = 3 % slow):
    /// packets are *sent* every 20 ms / `audio_rate` while each one's RTP time still
    /// advances by its nominal 960 ticks, like the KVS C SDK's audio thread that sleeps a
    /// fixed 20 ms per frame on top of its own work. (`rtp_rate` scales the ticks instead.)
    pub audio_rate: f64,
    /// Video production speed relative to real time, like `audio_rate` (frames sent every
    /// 33.3 ms / `video_rate`, each advancing 3000 ticks).
    pub video_rate: f64,
    /// Map RTP time to the wall clock in the sender reports, like the KVS C SDK (SR rtp =
    /// base + (now − first frame's wall clock) × rate, ntp = now) instead of following the
    /// packets. str0m computes an SR as rtp = last written rtp + (now − its wallclock) ×
    /// rate with ntp = now, so the harness passes each frame's `wallclock` as the media
    /// start plus its RTP time since the base (minus [`MediaPlan::sr_headroom`]).
    pub sr_wall_clock: bool,
    /// `(at, jump)`: frames sent from `at` (relative to the media start) on are written with
    /// their wallclock shifted by `+jump`, so the sender's SR mapping steps: an RTP time
    /// maps to an NTP time `jump` later than before (the sender's clock stepped). Both tracks.
    pub sr_jump: Option<(Duration, Duration)>,
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
            video_pause: None,
            active: Vec::new(),
            audio_rate: 1.0,
            video_rate: 1.0,
            sr_wall_clock: false,
            sr_jump: None,
        }
    }

    fn is_active(&self, at: Duration) -> bool {
        at < self.duration && (self.active.is_empty() || self.active.iter().any(|(a, b)| (*a..*b).contains(&at)))
    }

    /// How far every `wallclock` handed to str0m is moved into the past (zero unless needed).
    ///
    /// str0m only extrapolates its SR from a wallclock at or before `now`; a wallclock in
    /// the future makes it report RTP time 0 (a bogus mapping). A fast sender with
    /// `sr_wall_clock` (RTP time running ahead of the send time) or a forward `sr_jump`
    /// would write such wallclocks, so the whole mapping is moved back by the largest lead
    /// the plan can reach (plus 1 ms for rounding). The SR then maps RTP time to "wall clock
    /// − headroom", as if the first frame had been captured `headroom` before it was sent: a
    /// constant sender clock offset, the same on both tracks, so A/V sync by sender reports
    /// is unchanged and the offset stays far under reel's 10 min trust bound.
    pub fn sr_headroom(&self) -> Duration {
        let jump = self.sr_jump.map_or(Duration::ZERO, |(_, j)| j);
        let lead = |rate: f64| {
            if self.sr_wall_clock { self.duration.as_secs_f64() * (rate * self.rtp_rate - 1.0).max(0.0) } else { 0.0 }
        };
        let lead = lead(self.audio_rate).max(lead(self.video_rate));
        let rounding = self.sr_wall_clock && self.rtp_rate != 1.0;
        if lead <= 0.0 && jump.is_zero() && !rounding {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(lead) + jump + Duration::from_millis(1)
    }
}

/// Send instant (since the media start) of frame slot `i` of a track with a frame every
/// `num / den` µs, produced at `rate` × real time.
fn slot_at(i: usize, num: u64, den: u64, rate: f64) -> Duration {
    if rate == 1.0 || rate.is_nan() || rate <= 0.0 {
        return Duration::from_micros(i as u64 * num / den);
    }
    Duration::from_nanos((i as f64 * (num * 1_000) as f64 / den as f64 / rate) as u64)
}

/// Whether `at` lies in the half-open window `w`.
fn within(w: Option<(Duration, Duration)>, at: Duration) -> bool {
    w.is_some_and(|(a, b)| (a..b).contains(&at))
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
    /// Send instant (since the media start) of every video frame written, in order.
    pub video_sent_at: Vec<Duration>,
    /// Send instant (since the media start) of every audio packet written, in order.
    pub audio_sent_at: Vec<Duration>,
    /// Frames written with a wallclock after their send instant. str0m would then put RTP
    /// time 0 in its next sender report; [`MediaPlan::sr_headroom`] keeps this at 0.
    pub future_wallclocks: usize,
    /// [`MediaPlan::sr_headroom`] of `plan`, computed once.
    sr_headroom: Duration,
    /// Index of the next video frame slot (sent or skipped).
    video_slot: usize,
    /// Index of the next audio packet slot (sent or skipped).
    audio_slot: usize,
    /// Keyframe requests (PLI/FIR) the master received.
    pub keyframe_requests: usize,
    /// Audio frames the master received from the storage session (viewers' talk-back).
    pub talk_received: usize,
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

/// The channel ARN of the session of master `index`.
pub fn channel_of(index: usize) -> String {
    format!("arn:test:channel/{index}")
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
    /// In-memory viewers (see [`super::harness_viewer`]).
    pub viewers: Vec<super::harness_viewer::ViewerPeer>,
    /// Policy for hub → viewer datagrams (`None`: deliver all).
    pub downlink: Option<super::harness_viewer::DownFilter>,
    /// The Opus packets viewers talk back with.
    pub(super) talk_audio: Vec<Vec<u8>>,
}

/// One datagram in flight on the simulated network.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Flight {
    pub(super) from: SocketAddr,
    pub(super) to: SocketAddr,
    pub(super) data: Vec<u8>,
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
            viewers: Vec::new(),
            downlink: None,
            talk_audio: super::harness_viewer::talk_audio(),
        }
    }

    /// Fake time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Starts a session for a new master publishing `plan`; returns the peer index.
    pub fn add_master(&mut self, plan: MediaPlan) -> Result<usize, String> {
        self.add_master_on(&channel_of(self.peers.len()), plan)
    }

    /// [`Sim::add_master`] for a session of `channel` (a newer session of a channel).
    pub fn add_master_on(&mut self, channel: &str, plan: MediaPlan) -> Result<usize, String> {
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
                channel_arn: channel.to_string(),
                stream_arn: format!("arn:test:stream/{index}"),
                rtc: offerer.rtc,
                pending: offerer.pending,
                video: offerer.video,
                audio: offerer.audio,
                writer_tx: tx,
            },
        );
        let (rtc, answer) = master_rtc(addr, hub_addr, &offer_sdp, self.now)?;
        self.hub.answer(id, answer, self.now);
        let remote = Candidate::host(addr, "udp").map_err(|e| e.to_string())?;
        self.hub.candidate(id, remote, self.now);
        self.peers.push(Peer::new(id, addr, rtc, self.now, plan, rx));
        self.settle();
        Ok(index)
    }

    /// Sends `data` to the hub from `from` (arrives after the latency, bypassing the filter).
    pub fn inject(&mut self, from: SocketAddr, data: Vec<u8>) {
        let to = self.hub.local();
        self.schedule(self.now + self.latency, Flight { from, to, data });
    }

    pub(super) fn schedule(&mut self, at: Instant, f: Flight) {
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
        next.min(self.viewers_next_event())
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
            } else if !self.deliver_to_viewer(now, &f) {
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
        self.step_viewers(now);
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
        self.settle_viewers();
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

/// A master's peer connection answering `offer_sdp` (from the storage peer at `hub_addr`)
/// with sendonly H.264 + Opus, and its validated answer.
fn master_rtc(
    addr: SocketAddr,
    hub_addr: SocketAddr,
    offer_sdp: &str,
    now: Instant,
) -> Result<(Rtc, SdpAnswer), String> {
    answer_offer(Rtc::new(now), addr, hub_addr, offer_sdp, sdp::validate_answer)
}

/// `rtc` (at `addr`) answers `offer_sdp` from the hub at `hub_addr`; the answer must pass
/// `validate`. Returns the peer connection, with the hub's candidate, and the answer.
pub(super) fn answer_offer(
    mut rtc: Rtc,
    addr: SocketAddr,
    hub_addr: SocketAddr,
    offer_sdp: &str,
    validate: fn(&str) -> Result<(), sdp::AnswerError>,
) -> Result<(Rtc, SdpAnswer), String> {
    let cand = Candidate::host(addr, "udp").map_err(|e| e.to_string())?;
    rtc.add_local_candidate(cand);
    let offer = SdpOffer::from_sdp_string(offer_sdp).map_err(|e| e.to_string())?;
    let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| e.to_string())?;
    let answer_sdp = answer.to_sdp_string();
    validate(&answer_sdp).map_err(|e| e.to_string())?;
    let answer = SdpAnswer::from_sdp_string(&answer_sdp).map_err(|e| e.to_string())?;
    rtc.add_remote_candidate(Candidate::host(hub_addr, "udp").map_err(|e| e.to_string())?);
    Ok((rtc, answer))
}

impl Peer {
    fn new(
        session: u64,
        addr: SocketAddr,
        rtc: Rtc,
        now: Instant,
        plan: MediaPlan,
        rx: mpsc::Receiver<FragmentEvent>,
    ) -> Self {
        let sr_headroom = plan.sr_headroom();
        Self {
            session,
            addr,
            rtc,
            timeout: now,
            video_mid: None,
            audio_mid: None,
            video_pt: None,
            video_rtx_pt: None,
            connected: None,
            plan,
            video_sent: 0,
            audio_sent: 0,
            video_sent_at: Vec::new(),
            audio_sent_at: Vec::new(),
            future_wallclocks: 0,
            sr_headroom,
            video_slot: 0,
            audio_slot: 0,
            keyframe_requests: 0,
            talk_received: 0,
            rx,
            writer_paused: false,
            events: Vec::new(),
            ended: None,
            ended_at: None,
        }
    }

    fn event(&mut self, ev: Event, now: Instant) {
        match ev {
            Event::Connected => self.connected = Some(now),
            Event::MediaAdded(m) => match m.kind {
                MediaKind::Video => self.video_mid = Some(m.mid),
                MediaKind::Audio => self.audio_mid = Some(m.mid),
            },
            Event::KeyframeRequest(_) => self.keyframe_requests += 1,
            Event::MediaData(md) if Some(md.mid) == self.audio_mid => self.talk_received += 1,
            _ => {}
        }
    }

    /// When the master starts publishing (the origin of `video_sent_at` / `audio_sent_at`).
    pub fn media_start(&self) -> Option<Instant> {
        self.connected.map(|c| c + self.plan.start_after_connect)
    }

    fn video_at(&self, i: usize) -> Duration {
        slot_at(i, 1_000_000, 30, self.plan.video_rate)
    }

    fn audio_at(&self, i: usize) -> Duration {
        slot_at(i, 20_000, 1, self.plan.audio_rate)
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

    /// The `wallclock` to hand str0m for a frame sent at `at` (since `t0`, the media start)
    /// whose RTP time is `ticks` past the track's base at `rate` Hz (see [`MediaPlan`]).
    fn wallclock(&mut self, t0: Instant, now: Instant, at: Duration, ticks: u64, rate: u64) -> Instant {
        let mut w = if self.plan.sr_wall_clock {
            t0 + Duration::from_micros((u128::from(ticks) * 1_000_000 / u128::from(rate.max(1))) as u64)
        } else {
            now
        };
        if let Some((when, jump)) = self.plan.sr_jump
            && at >= when
        {
            w += jump;
        }
        let w = w.checked_sub(self.sr_headroom).unwrap_or(w);
        if w > now {
            self.future_wallclocks += 1;
        }
        w
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
            if within(self.plan.video_pause, at) || !self.plan.is_active(at) {
                continue;
            }
            let since_base = (i as f64 * 3000.0 * self.plan.rtp_rate).round() as u64;
            let ticks = self.plan.video_rtp_base + since_base;
            let wallclock = self.wallclock(t0, now, at, since_base, 90_000);
            let data = self.plan.video[i % self.plan.video.len()].clone();
            if let Some(w) = self.rtc.writer(vm) {
                let param = w.payload_params().find(|p| p.spec().codec == Codec::H264).copied();
                if let Some(p) = param {
                    self.video_pt = Some(*p.pt());
                    self.video_rtx_pt = p.resend().map(|r| *r);
                    if w.write(p.pt(), wallclock, MediaTime::new(ticks, Frequency::NINETY_KHZ), data).is_ok() {
                        self.video_sent += 1;
                        self.video_sent_at.push(elapsed);
                    }
                }
            }
        }
        while self.audio_at(self.audio_slot) <= elapsed && !self.plan.audio.is_empty() {
            let i = self.audio_slot;
            self.audio_slot += 1;
            let at = self.audio_at(i);
            if within(self.plan.audio_pause, at) || !self.plan.is_active(at) {
                continue;
            }
            let since_base = (i as f64 * 960.0 * self.plan.rtp_rate).round() as u64;
            let ticks = self.plan.audio_rtp_base + since_base;
            let wallclock = self.wallclock(t0, now, at, since_base, 48_000);
            let data = self.plan.audio[i % self.plan.audio.len()].clone();
            if let Some(w) = self.rtc.writer(am) {
                let pt = w.payload_params().find(|p| p.spec().codec == Codec::Opus).map(|p| p.pt());
                if let Some(pt) = pt
                    && w.write(pt, wallclock, MediaTime::new(ticks, Frequency::FORTY_EIGHT_KHZ), data).is_ok()
                {
                    self.audio_sent += 1;
                    self.audio_sent_at.push(elapsed);
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
            FragmentEvent::Chunk { bytes, media_end_ms, .. } => {
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
    /// Index in `video_ts_ms` of each fragment's first video frame (its keyframe).
    pub fragment_first_video: Vec<usize>,
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
        v.fragment_first_video.push(v.video_ts_ms.len());
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

/// One track's stored frames paired with the frames its master sent: stored frame n is sent
/// frame n. That only holds when nothing was lost, so [`Paired::new`] insists on equal counts.
#[derive(Debug, Clone, Copy)]
pub struct Paired<'a> {
    /// Producer time of every stored frame, ms (a track of [`Verdicts`]).
    pub stored_ms: &'a [i64],
    /// Send instant of every frame written, in order (a track of [`Peer`]).
    pub sent_at: &'a [Duration],
}

impl<'a> Paired<'a> {
    /// Pairs `stored_ms` with `sent_at`; `Err` (naming `track`) when the counts differ.
    pub fn new(track: &str, stored_ms: &'a [i64], sent_at: &'a [Duration]) -> Result<Self, String> {
        if stored_ms.len() != sent_at.len() {
            return Err(format!("{track}: {} frames stored, {} sent", stored_ms.len(), sent_at.len()));
        }
        Ok(Self { stored_ms, sent_at })
    }

    /// The stored video of `v` paired with what `p` sent.
    pub fn video(v: &'a Verdicts, p: &'a Peer) -> Result<Self, String> {
        Self::new("video", &v.video_ts_ms, &p.video_sent_at)
    }

    /// The stored audio of `v` paired with what `p` sent.
    pub fn audio(v: &'a Verdicts, p: &'a Peer) -> Result<Self, String> {
        Self::new("audio", &v.audio_ts_ms, &p.audio_sent_at)
    }
}

/// Signed µs → ms, rounded to nearest.
fn round_ms(us: i64) -> i64 {
    (us as f64 / 1_000.0).round() as i64
}

/// Signed µs of `a − b`.
fn diff_us(a: Duration, b: Duration) -> i64 {
    a.as_micros() as i64 - b.as_micros() as i64
}

/// [`av_skew`] skips a fragment when no audio was sent this close to its first video frame.
pub const SKEW_AUDIO_WINDOW: Duration = Duration::from_millis(100);

/// A/V skew of the stored stream at each fragment start, from [`av_skew`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skew {
    /// `(fragment, skew in ms)` of every fragment checked, in order.
    pub at: Vec<(usize, i64)>,
    /// Fragments skipped: no audio sent within [`SKEW_AUDIO_WINDOW`] of their first video frame.
    pub skipped: usize,
}

impl Skew {
    /// The checked fragment with the largest |skew|, as `(fragment, skew ms)`.
    pub fn worst(&self) -> Option<(usize, i64)> {
        self.at.iter().copied().max_by_key(|(_, s)| s.abs())
    }

    /// The largest |skew| in ms (0 when nothing was checked).
    pub fn max_abs_ms(&self) -> i64 {
        self.worst().map_or(0, |(_, s)| s.abs())
    }

    /// The first fragment whose |skew| exceeds `limit_ms`.
    pub fn first_over(&self, limit_ms: i64) -> Option<(usize, i64)> {
        self.at.iter().copied().find(|(_, s)| s.abs() > limit_ms)
    }
}

/// A/V skew of the stored stream at every fragment: for the fragment's first video frame
/// (stored at Vs, sent at Vt) and the audio frame sent nearest to Vt (stored at As, sent at
/// At), skew = (As − Vs) − (At − Vt): how much further apart the store put them than the
/// sender captured them. Fragments without audio sent within [`SKEW_AUDIO_WINDOW`] of Vt
/// (a mute) are skipped. Needs every frame of both tracks stored (`Err` otherwise, see
/// [`Paired::new`]); `audio_sent_at` must be in send order.
pub fn av_skew(v: &Verdicts, video_sent_at: &[Duration], audio_sent_at: &[Duration]) -> Result<Skew, String> {
    let video = Paired::new("video", &v.video_ts_ms, video_sent_at)?;
    let audio = Paired::new("audio", &v.audio_ts_ms, audio_sent_at)?;
    let mut out = Skew::default();
    for (n, &vi) in v.fragment_first_video.iter().enumerate() {
        let (Some(&vs), Some(&vt)) = (video.stored_ms.get(vi), video.sent_at.get(vi)) else {
            return Err(format!("fragment {n}: no video frame {vi}"));
        };
        let after = audio.sent_at.partition_point(|&t| t < vt);
        let nearest = [after.checked_sub(1), Some(after)]
            .into_iter()
            .flatten()
            .filter(|&i| i < audio.sent_at.len())
            .min_by_key(|&i| diff_us(audio.sent_at[i], vt).abs());
        let Some(ai) = nearest.filter(|&i| diff_us(audio.sent_at[i], vt).unsigned_abs() <= 100_000) else {
            out.skipped += 1;
            continue;
        };
        let (as_, at) = (audio.stored_ms[ai], audio.sent_at[ai]);
        out.at.push((n, round_ms((as_ - vs) * 1_000 - diff_us(at, vt))));
    }
    Ok(out)
}

/// How one track's stored spacing compares with its send spacing, from [`gap_mismatch`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gaps {
    /// Stored gap minus send gap (ms) of the consecutive pair where it is largest in size.
    pub worst_ms: i64,
    /// Index n of that pair (frames n and n + 1).
    pub worst_at: usize,
    /// Pairs whose mismatch exceeds the tolerance.
    pub over: usize,
}

/// For consecutive stored frames n, n + 1 of `track`: (stored gap) − (send gap). A hole the
/// store made where the sender sent media shows up as a large positive value, a mute (no
/// media sent) does not, since its send gap is as long as its stored gap.
pub fn gap_mismatch(track: Paired<'_>, tolerance_ms: i64) -> Gaps {
    let mut g = Gaps::default();
    for n in 0..track.stored_ms.len().saturating_sub(1) {
        let stored_us = (track.stored_ms[n + 1] - track.stored_ms[n]) * 1_000;
        let d = round_ms(stored_us - diff_us(track.sent_at[n + 1], track.sent_at[n]));
        if d.abs() > tolerance_ms {
            g.over += 1;
        }
        if d.abs() > g.worst_ms.abs() {
            g.worst_ms = d;
            g.worst_at = n;
        }
    }
    g
}

/// `Err` naming `track`, the first offending frame and the number of offences unless `ts`
/// strictly increases over the whole stream (across fragments too, unlike [`judge`]).
pub fn strictly_increasing(track: &str, ts: &[i64]) -> Result<(), String> {
    let bad: Vec<usize> = (1..ts.len()).filter(|&i| ts[i] <= ts[i - 1]).collect();
    match bad.first() {
        None => Ok(()),
        Some(&i) => Err(format!(
            "{track}: frame {i} at {} ms after {} ms ({} non-increasing steps)",
            ts[i],
            ts[i - 1],
            bad.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::time::UNIX_EPOCH;

    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// A sender report as the receiving side saw it (`RtpPacket::last_sender_info`).
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct SeenSr {
        kind: MediaKind,
        rtp: u32,
        ntp_unix_us: i64,
    }

    /// Runs a master publishing `plan` for `run` against a bare str0m receiver built like a
    /// storage session (the hub's offer; no hub, no fragmenter) and collects every distinct
    /// sender report the receiver attached to its media. Returns the master, the Unix time
    /// of its media start and the reports.
    fn probe_sender_reports(plan: MediaPlan, run: Duration) -> (Peer, i64, Vec<SeenSr>) {
        let anchor = ClockAnchor::now();
        let start = anchor.instant_of_anchor();
        let mut now = start;
        let hub_addr: SocketAddr = HUB_ADDR.parse().expect("hub addr");
        let addr = SocketAddr::from(([127, 0, 0, 1], 41_000));
        let off = session::build_rtc_at(hub_addr, now).expect("offerer");
        let offer_sdp = sdp::finish_offer(&off.offer_sdp, 1_000_000);
        let (rtc, answer) = master_rtc(addr, hub_addr, &offer_sdp, now).expect("master");
        let mut rx = off.rtc;
        rx.sdp_api().accept_answer(off.pending, answer).expect("answer");
        rx.add_remote_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let (_tx, queue) = mpsc::channel(1);
        let mut peer = Peer::new(1, addr, rtc, now, plan, queue);
        let mut rx_timeout = now;
        // Constant latency both ways: a FIFO is time-ordered. (deliver at, to the master?, data)
        let mut net: VecDeque<(Instant, bool, Vec<u8>)> = VecDeque::new();
        let mut seen: Vec<SeenSr> = Vec::new();
        let until = start + run;
        let mut stuck = 0u32;
        while now < until {
            while let Ok(out) = rx.poll_output() {
                match out {
                    Output::Transmit(t) => net.push_back((now + LATENCY, true, t.contents.to_vec())),
                    Output::Timeout(t) => {
                        rx_timeout = t;
                        break;
                    }
                    Output::Event(_) => {}
                }
            }
            // The storage session's `Rtc` queues received RTP (receive-queue mode).
            while let Some(r) = rx.poll_received_rtp() {
                let kind = if r.mid == off.video { MediaKind::Video } else { MediaKind::Audio };
                if let Some(sr) = r.packet.last_sender_info {
                    let ntp = sr.ntp_time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
                    let s = SeenSr { kind, rtp: sr.rtp_time.numer() as u32, ntp_unix_us: ntp };
                    if !seen.iter().rev().filter(|x| x.kind == kind).take(1).any(|x| *x == s) {
                        seen.push(s);
                    }
                }
            }
            while peer.rtc.is_alive() {
                match peer.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => net.push_back((now + LATENCY, false, t.contents.to_vec())),
                    Ok(Output::Timeout(t)) => {
                        peer.timeout = t;
                        break;
                    }
                    Ok(Output::Event(ev)) => peer.event(ev, now),
                    Err(_) => break,
                }
            }
            let mut next = rx_timeout.min(peer.timeout).min(until);
            if let Some((t, _, _)) = net.front() {
                next = next.min(*t);
            }
            if let Some(t) = peer.next_media(now) {
                next = next.min(t);
            }
            if next > now {
                now = next;
                stuck = 0;
            } else {
                stuck += 1;
                if stuck > 1_000 {
                    now += MS(1);
                    stuck = 0;
                }
            }
            while net.front().is_some_and(|(t, _, _)| *t <= now) {
                let Some((_, to_master, data)) = net.pop_front() else { break };
                let (source, destination) = if to_master { (hub_addr, addr) } else { (addr, hub_addr) };
                let Ok(contents) = data.as_slice().try_into() else { continue };
                let input = Input::Receive(now, Receive { proto: Protocol::Udp, source, destination, contents });
                let _ = if to_master { peer.rtc.handle_input(input) } else { rx.handle_input(input) };
            }
            if rx_timeout <= now {
                let _ = rx.handle_input(Input::Timeout(now));
            }
            if peer.timeout <= now {
                let _ = peer.rtc.handle_input(Input::Timeout(now));
            }
            peer.publish(now);
        }
        let t0 = peer.media_start().expect("the master connected");
        let t0_unix = anchor.unix_us(t0);
        (peer, t0_unix, seen)
    }

    /// RTP time in µs (since the base) minus NTP time since the media start, per report:
    /// constant when the reports map RTP time to the wall clock.
    fn offsets_us(seen: &[SeenSr], kind: MediaKind, t0_unix: i64) -> Vec<(i64, i64)> {
        let rate = if kind == MediaKind::Video { 90_000 } else { 48_000 };
        seen.iter()
            .filter(|s| s.kind == kind && s.ntp_unix_us > t0_unix)
            .map(|s| {
                let rtp_us = i64::from(s.rtp) * 1_000_000 / rate;
                (s.ntp_unix_us - t0_unix, rtp_us - (s.ntp_unix_us - t0_unix))
            })
            .collect()
    }

    /// Checks every report maps RTP time to "wall clock − `headroom`" (RTP time 0 at the
    /// media start − headroom, so RTP time runs `headroom` ahead of the time since the media
    /// start): the offset is +headroom, within 1 ms between reports (one clock) and 20 ms
    /// absolute (str0m pairs `Instant` and NTP with its own real-time epoch).
    fn assert_wall_clock_mapping(offsets: &[(i64, i64)], headroom: Duration, what: &str) {
        // str0m reports every 5 s on audio, every second on video.
        assert!(offsets.len() >= 5, "{what}: only {} reports", offsets.len());
        let first = offsets[0].1;
        let want = headroom.as_micros() as i64;
        assert!((first - want).abs() <= 20_000, "{what}: offset {first} µs, want {want} µs");
        for &(at, o) in offsets {
            assert!((o - first).abs() <= 1_000, "{what}: report at {at} µs: offset {o} µs, first {first} µs");
        }
    }

    #[test]
    fn sender_reports_map_rtp_time_to_the_wall_clock() {
        // 3 % slow audio: the packets' RTP time falls 1.8 s behind in 60 s; the reports don't.
        let mut plan = MediaPlan::fixture(S(60));
        plan.audio_rate = 0.97;
        plan.sr_wall_clock = true;
        assert_eq!(plan.sr_headroom(), Duration::ZERO);
        let (peer, t0, seen) = probe_sender_reports(plan, S(61));
        assert_eq!(peer.future_wallclocks, 0);
        let audio_sent = peer.audio_sent_at.len();
        assert!((2_905..=2_915).contains(&audio_sent), "{audio_sent} audio packets in 60 s at 97 %");
        let last = peer.audio_sent_at.last().copied().unwrap_or_default();
        assert!(last > MS(59_900), "last audio sent at {last:?}");
        assert_wall_clock_mapping(&offsets_us(&seen, MediaKind::Audio, t0), Duration::ZERO, "audio");
        assert_wall_clock_mapping(&offsets_us(&seen, MediaKind::Video, t0), Duration::ZERO, "video");

        // Control: without the knob the audio reports follow the packets and drift 3 %.
        let mut plan = MediaPlan::fixture(S(60));
        plan.audio_rate = 0.97;
        let (_, t0, seen) = probe_sender_reports(plan, S(61));
        let offsets = offsets_us(&seen, MediaKind::Audio, t0);
        let (first, last) = (offsets.first().expect("reports"), offsets.last().expect("reports"));
        let drift = (first.1 - last.1) as f64 / (last.0 - first.0) as f64;
        assert!((0.025..0.035).contains(&drift), "audio reports drift {drift} (offsets {offsets:?})");
    }

    #[test]
    fn fast_sender_reports_stay_on_the_wall_clock_with_headroom() {
        // 3 % fast audio would write wallclocks in the future, for which str0m reports RTP
        // time 0; the headroom moves the whole mapping back instead.
        let mut plan = MediaPlan::fixture(S(60));
        plan.audio_rate = 1.03;
        plan.sr_wall_clock = true;
        let headroom = plan.sr_headroom();
        assert_eq!(headroom, MS(1_801));
        let (peer, t0, seen) = probe_sender_reports(plan, S(61));
        assert_eq!(peer.future_wallclocks, 0);
        assert!((3_085..=3_095).contains(&peer.audio_sent), "{} audio packets", peer.audio_sent);
        assert_wall_clock_mapping(&offsets_us(&seen, MediaKind::Audio, t0), headroom, "audio");
        assert_wall_clock_mapping(&offsets_us(&seen, MediaKind::Video, t0), headroom, "video");
    }

    #[test]
    fn sender_report_jump_steps_the_mapping() {
        let mut plan = MediaPlan::fixture(S(60));
        plan.sr_wall_clock = true;
        plan.sr_jump = Some((S(30), S(5)));
        let headroom = plan.sr_headroom();
        assert_eq!(headroom, S(5) + MS(1));
        let (peer, t0, seen) = probe_sender_reports(plan, S(61));
        assert_eq!(peer.future_wallclocks, 0);
        for kind in [MediaKind::Audio, MediaKind::Video] {
            let offsets = offsets_us(&seen, kind, t0);
            let before: Vec<_> = offsets.iter().copied().filter(|(at, _)| *at < 29_950_000).collect();
            let after: Vec<_> = offsets.iter().copied().filter(|(at, _)| *at > 30_050_000).collect();
            assert_wall_clock_mapping(&before, headroom, &format!("{kind:?} before"));
            // After the step an RTP time maps to an NTP time 5 s later.
            assert_wall_clock_mapping(&after, headroom - S(5), &format!("{kind:?} after"));
        }
    }

    #[test]
    fn send_instants_follow_the_production_rate() {
        assert_eq!(slot_at(3, 1_000_000, 30, 1.0), Duration::from_micros(100_000));
        assert_eq!(slot_at(100, 20_000, 1, 0.5), S(4));
        let mut plan = MediaPlan::fixture(S(60));
        assert_eq!(plan.sr_headroom(), Duration::ZERO, "default plans pass `now` as wallclock");
        plan.sr_jump = Some((S(1), S(2)));
        assert_eq!(plan.sr_headroom(), S(2) + MS(1));
    }

    fn verdicts(video: Vec<i64>, audio: Vec<i64>, firsts: Vec<usize>) -> Verdicts {
        Verdicts { video_ts_ms: video, audio_ts_ms: audio, fragment_first_video: firsts, ..Verdicts::default() }
    }

    fn at_ms(ms: &[u64]) -> Vec<Duration> {
        ms.iter().map(|&m| MS(m)).collect()
    }

    #[test]
    fn paired_tracks_need_equal_counts() {
        let sent = at_ms(&[0, 20]);
        assert!(Paired::new("audio", &[1, 2], &sent).is_ok());
        let e = Paired::new("audio", &[1], &sent).expect_err("counts differ");
        assert_eq!(e, "audio: 1 frames stored, 2 sent");
    }

    #[test]
    fn av_skew_compares_stored_and_sent_offsets() {
        // Video at 0 and 1000 ms (fragment starts), audio every 20 ms from 10 ms.
        let video_sent = at_ms(&[0, 1_000]);
        let audio_sent: Vec<Duration> = (0..60).map(|i| MS(10 + 20 * i)).collect();
        // Stored: the second fragment's audio is stored 150 ms later than sent.
        let mut audio_ts: Vec<i64> = (0..60).map(|i| 5_010 + 20 * i).collect();
        for t in &mut audio_ts[45..] {
            *t += 150;
        }
        let v = verdicts(vec![5_000, 6_000], audio_ts, vec![0, 1]);
        let skew = av_skew(&v, &video_sent, &audio_sent).expect("paired");
        // Fragment 0: nearest audio sent at 10 ms (stored 5010): skew 0.
        // Fragment 1: nearest audio sent at 990 (stored 6140): (140) − (−10) = 150.
        assert_eq!(skew.at, vec![(0, 0), (1, 150)]);
        assert_eq!(skew.max_abs_ms(), 150);
        assert_eq!(skew.first_over(100), Some((1, 150)));
        assert_eq!(skew.skipped, 0);
        // No audio within 100 ms of a fragment start: skipped.
        let v = verdicts(vec![5_000, 8_000], (0..60).map(|i| 5_010 + 20 * i).collect(), vec![0, 1]);
        let skew = av_skew(&v, &at_ms(&[0, 3_000]), &audio_sent).expect("paired");
        assert_eq!((skew.at.len(), skew.skipped), (1, 1));
        // Lost audio: no pairing.
        let v = verdicts(vec![5_000, 6_000], vec![5_010], vec![0, 1]);
        assert!(av_skew(&v, &video_sent, &audio_sent).is_err());
    }

    #[test]
    fn gap_mismatch_finds_holes_but_not_mutes() {
        // Sent every 20 ms with a 2 s mute after frame 2; stored likewise.
        let sent = at_ms(&[0, 20, 40, 2_040, 2_060]);
        let stored = [100, 120, 140, 2_140, 2_160];
        let g = gap_mismatch(Paired::new("audio", &stored, &sent).expect("paired"), 50);
        assert_eq!(g, Gaps { worst_ms: 0, worst_at: 0, over: 0 });
        // A 20.6 ms send spacing stored at 20 ms: tiny mismatches only.
        let sent: Vec<Duration> = (0..5).map(|i| Duration::from_micros(20_600 * i)).collect();
        let g = gap_mismatch(Paired::new("audio", &[0, 20, 40, 60, 80], &sent).expect("paired"), 50);
        assert_eq!((g.worst_ms, g.over), (-1, 0));
        // A hole the store made (sent continuously, stored 300 ms apart).
        let sent = at_ms(&[0, 20, 40, 60]);
        let g = gap_mismatch(Paired::new("audio", &[0, 20, 320, 340], &sent).expect("paired"), 50);
        assert_eq!(g, Gaps { worst_ms: 280, worst_at: 1, over: 1 });
    }

    #[test]
    fn strictly_increasing_spans_fragments() {
        assert!(strictly_increasing("video", &[1, 2, 3]).is_ok());
        assert!(strictly_increasing("video", &[]).is_ok());
        let e = strictly_increasing("audio", &[1, 2, 2, 5, 4]).expect_err("repeats");
        assert_eq!(e, "audio: frame 2 at 2 ms after 2 ms (2 non-increasing steps)");
    }
}
