//! In-memory str0m viewers for the scenario harness ([`super::harness::Sim`]): each one
//! answers the hub's viewer offer ([`super::viewer_session::build_viewer_rtc_at`]) like a
//! browser running the KVS JS SDK would (recvonly video, sendrecv audio), records every
//! frame it receives, can talk back (Opus every 20 ms), and can stop reading (its
//! datagrams are lost) or lose chosen downlink packets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

use super::fanout::{HubViewer, ViewerEnded};
use super::harness::{Flight, NEXT_SESSION, RtpHeader, Sim, Verdict, answer_offer, fixture_media};
use super::{sdp, viewer_session};

/// What the network does with a datagram from the hub to viewer `index`.
pub type DownFilter = Box<dyn FnMut(usize, Option<RtpHeader>) -> Verdict>;

/// One frame a viewer received.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// When (fake time).
    pub at: Instant,
    /// An IDR access unit.
    pub keyframe: bool,
    /// All its packets arrived in order (no loss inside or before it).
    pub contiguous: bool,
}

/// One in-memory viewer and what it received.
pub struct ViewerPeer {
    /// Viewer session id on the hub.
    pub session: u64,
    /// Its ClientId.
    pub client_id: String,
    /// Its address.
    pub addr: SocketAddr,
    /// Its peer connection.
    pub rtc: Rtc,
    timeout: Instant,
    video_mid: Option<Mid>,
    audio_mid: Option<Mid>,
    /// When ICE+DTLS connected (viewer side).
    pub connected: Option<Instant>,
    /// False: the viewer is frozen (its app hangs): it reads nothing, sends nothing.
    pub reading: bool,
    /// Video frames received, in order.
    pub video: Vec<Received>,
    /// Audio frames received.
    pub audio: usize,
    /// Send Opus to the hub (talk-back) while true.
    pub talking: bool,
    /// Opus packets written.
    pub talk_sent: usize,
    next_talk: Option<Instant>,
    /// Ask for a keyframe (PLI) every 10 ms (a misbehaving viewer).
    pub pli_flood: bool,
    last_pli: Option<Instant>,
    /// NACKs it sent, per str0m's latest ingress stats.
    pub nacks: u64,
    /// How the hub ended its session.
    pub ended: Option<ViewerEnded>,
}

impl ViewerPeer {
    /// Video frames received before the first keyframe (undecodable; should be none).
    pub fn frames_before_keyframe(&self) -> usize {
        self.video.iter().take_while(|f| !f.keyframe).count()
    }

    /// When its first keyframe arrived.
    pub fn first_keyframe(&self) -> Option<Instant> {
        self.video.iter().find(|f| f.keyframe).map(|f| f.at)
    }

    fn event(&mut self, ev: Event, now: Instant) {
        match ev {
            Event::Connected => self.connected = Some(now),
            Event::MediaAdded(m) => match m.kind {
                MediaKind::Video => self.video_mid = Some(m.mid),
                MediaKind::Audio => self.audio_mid = Some(m.mid),
            },
            Event::MediaData(md) if Some(md.mid) == self.video_mid => {
                self.video.push(Received { at: now, keyframe: md.is_keyframe(), contiguous: md.contiguous });
            }
            Event::MediaData(md) if Some(md.mid) == self.audio_mid => self.audio += 1,
            Event::MediaIngressStats(s) if Some(s.mid) == self.video_mid => self.nacks = s.nacks,
            _ => {}
        }
    }

    /// Writes the talk-back packets due at `now`.
    fn talk(&mut self, now: Instant, audio: &[Vec<u8>]) {
        let (Some(am), Some(_)) = (self.audio_mid, self.connected) else { return };
        if !self.talking || audio.is_empty() {
            self.next_talk = None;
            return;
        }
        let due = *self.next_talk.get_or_insert(now);
        if due > now {
            return;
        }
        let i = self.talk_sent;
        if let Some(w) = self.rtc.writer(am) {
            let pt = w.payload_params().find(|p| p.spec().codec == Codec::Opus).map(|p| p.pt());
            let ticks = 7_000 + i as u64 * 960;
            if let Some(pt) = pt
                && w.write(pt, now, MediaTime::new(ticks, Frequency::FORTY_EIGHT_KHZ), audio[i % audio.len()].clone())
                    .is_ok()
            {
                self.talk_sent += 1;
            }
        }
        self.next_talk = Some(due + Duration::from_millis(20));
    }
}

/// A viewer's answer to the hub's viewer offer: recvonly video, sendrecv audio.
fn viewer_rtc(
    addr: SocketAddr,
    hub_addr: SocketAddr,
    offer_sdp: &str,
    now: Instant,
) -> Result<(Rtc, SdpAnswer), String> {
    let rtc = str0m::RtcConfig::new().set_stats_interval(Some(Duration::from_secs(1))).build(now);
    answer_offer(rtc, addr, hub_addr, offer_sdp, sdp::validate_viewer_answer)
}

impl Sim {
    /// Starts a viewer session of `channel_arn` for a new viewer `client_id`; returns the
    /// viewer index.
    pub fn add_viewer(&mut self, channel_arn: &str, client_id: &str) -> Result<usize, String> {
        let index = self.viewers.len();
        let id = NEXT_SESSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let addr = SocketAddr::from(([127, 0, 0, 2], 42000 + index as u16));
        let hub_addr = self.hub.local();
        let off = viewer_session::build_viewer_rtc_at(hub_addr, self.now)?;
        let offer_sdp = sdp::finish_offer(&off.offer_sdp, 1_000_000);
        self.hub.add_viewer(
            self.now,
            HubViewer {
                id,
                channel_arn: channel_arn.to_string(),
                client_id: client_id.to_string(),
                rtc: off.rtc,
                pending: off.pending,
                video: off.video,
                audio: off.audio,
            },
        );
        let (rtc, answer) = viewer_rtc(addr, hub_addr, &offer_sdp, self.now)?;
        self.hub.viewer_answer(id, answer, self.now);
        self.hub.viewer_candidate(id, Candidate::host(addr, "udp").map_err(|e| e.to_string())?, self.now);
        self.viewers.push(ViewerPeer {
            session: id,
            client_id: client_id.to_string(),
            addr,
            rtc,
            timeout: self.now,
            video_mid: None,
            audio_mid: None,
            connected: None,
            reading: true,
            video: Vec::new(),
            audio: 0,
            talking: false,
            talk_sent: 0,
            next_talk: None,
            pli_flood: false,
            last_pli: None,
            nacks: 0,
            ended: None,
        });
        Ok(index)
    }

    /// Hands `f` to the viewer it is addressed to (subject to `downlink` and its reading);
    /// false when no viewer has that address.
    pub(super) fn deliver_to_viewer(&mut self, now: Instant, f: &Flight) -> bool {
        let Some(i) = self.viewers.iter().position(|v| v.addr == f.to) else { return false };
        let verdict = match self.downlink.as_mut() {
            Some(filter) => filter(i, RtpHeader::parse(&f.data)),
            None => Verdict::Deliver,
        };
        let Some(v) = self.viewers.get_mut(i) else { return true };
        if !v.reading || verdict == Verdict::Drop || !v.rtc.is_alive() {
            return true;
        }
        if let Ok(contents) = f.data.as_slice().try_into() {
            let input =
                Input::Receive(now, Receive { proto: Protocol::Udp, source: f.from, destination: f.to, contents });
            let _ = v.rtc.handle_input(input);
        }
        true
    }

    /// Runs the viewers' timers and talk-back due at `now`.
    pub(super) fn step_viewers(&mut self, now: Instant) {
        let audio = &self.talk_audio;
        for v in &mut self.viewers {
            if v.rtc.is_alive() && v.reading {
                if v.timeout <= now {
                    let _ = v.rtc.handle_input(Input::Timeout(now));
                }
                v.talk(now, audio);
                if v.pli_flood
                    && v.last_pli.is_none_or(|t| now >= t + Duration::from_millis(10))
                    && let Some(vm) = v.video_mid
                    && let Some(mut w) = v.rtc.writer(vm)
                {
                    let _ = w.request_keyframe(None, str0m::media::KeyframeRequestKind::Pli);
                    v.last_pli = Some(now);
                }
            }
        }
    }

    /// Drains the viewers' outputs (datagrams to the hub, events) and the hub's ended viewers.
    pub(super) fn settle_viewers(&mut self) {
        let now = self.now;
        let mut outgoing = Vec::new();
        for v in &mut self.viewers {
            while v.rtc.is_alive() {
                match v.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => {
                        outgoing.push(Flight { from: v.addr, to: t.destination, data: t.contents.to_vec() })
                    }
                    Ok(Output::Timeout(t)) => {
                        v.timeout = t;
                        break;
                    }
                    Ok(Output::Event(ev)) => v.event(ev, now),
                    Err(_) => break,
                }
            }
        }
        for f in outgoing {
            self.schedule(now + self.latency, f);
        }
        while let Some(e) = self.hub.poll_viewer_ended() {
            if let Some(v) = self.viewers.iter_mut().find(|v| v.session == e.id) {
                v.ended = Some(e);
            }
        }
    }

    /// The viewers' next timer or talk-back packet.
    pub(super) fn viewers_next_event(&self) -> Instant {
        let mut next = self.now + Duration::from_secs(3600);
        for v in self.viewers.iter().filter(|v| v.rtc.is_alive() && v.reading) {
            next = next.min(v.timeout);
            if v.talking
                && let Some(t) = v.next_talk
            {
                next = next.min(t);
            }
            if v.pli_flood
                && let Some(t) = v.last_pli
            {
                next = next.min(t + Duration::from_millis(10));
            }
        }
        next
    }
}

/// The Opus packets viewers talk with.
pub fn talk_audio() -> Vec<Vec<u8>> {
    fixture_media().1
}
