//! The one UDP socket and event loop shared by every storage session.
//!
//! All sessions' str0m `Rtc`s live here. Datagrams are demultiplexed to sessions by remote
//! address (learned from the first accepted packet) and otherwise by `Rtc::accepts` (STUN
//! ufrag, viable candidate pairs). Timers of all sessions sit in one ordered set of
//! deadlines, so there is no task, timer or socket per session on the media path. Session
//! control tasks talk to the loop through [`Command`]s.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{KeyframeRequestKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::ingest::{self, ClockAnchor};
use crate::limits::StorageSessionLimits;
use crate::media::fragmenter::{FragmentEvent, Fragmenter, FragmenterConfig};

/// Why a session ended (logged, and told to its control task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// ICE disconnected or the peer closed.
    Disconnected,
    /// No media for the idle timeout.
    Idle,
    /// The session reached its maximum life.
    MaxLife,
    /// The control task ended it (superseded, master left, bad answer).
    Closed(String),
    /// str0m reported an error.
    Rtc(String),
    /// The server is shutting down.
    Shutdown,
}

/// A session handed to the loop by its control task.
pub struct NewSession {
    /// Session id (unique per process).
    pub id: u64,
    /// Channel, for logs.
    pub channel_arn: String,
    /// The peer connection, with our offer applied locally.
    pub rtc: Rtc,
    /// The offer waiting for the master's answer.
    pub pending: SdpPendingOffer,
    /// Mid of the recvonly H.264 section.
    pub video: Mid,
    /// Mid of the recvonly Opus section.
    pub audio: Mid,
    /// Queue of the session's store writer task.
    pub writer_tx: mpsc::Sender<FragmentEvent>,
    /// The writer task (awaited on shutdown so open fragments are flushed).
    pub writer_task: JoinHandle<()>,
    /// Told when the loop ends the session.
    pub ended: oneshot::Sender<EndReason>,
}

/// Requests from session control tasks and the server.
pub enum Command {
    /// Start driving a session.
    Add(Box<NewSession>),
    /// The master's answer (already validated).
    Answer { id: u64, answer: SdpAnswer },
    /// A trickled remote candidate.
    Candidate { id: u64, candidate: Candidate },
    /// End a session, flushing its open fragment.
    Close { id: u64, reason: EndReason },
    /// End every session, wait for their writers, then acknowledge.
    Shutdown(oneshot::Sender<()>),
}

struct Session {
    id: u64,
    channel_arn: String,
    rtc: Rtc,
    pending: Option<SdpPendingOffer>,
    video: Mid,
    audio: Mid,
    fragmenter: Fragmenter,
    writer_tx: mpsc::Sender<FragmentEvent>,
    writer_task: JoinHandle<()>,
    ended: Option<oneshot::Sender<EndReason>>,
    started: Instant,
    last_media: Instant,
    remotes: Vec<SocketAddr>,
    deadline: Option<Instant>,
    packets: u64,
    bytes: u64,
    plis: u64,
    /// The last logged selected candidate pair.
    selected_pair: Option<String>,
}

/// The loop's state: sessions, demux tables and the deadline set.
struct Loop {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    limits: StorageSessionLimits,
    anchor: ClockAnchor,
    sessions: HashMap<u64, Session>,
    by_remote: HashMap<SocketAddr, u64>,
    deadlines: BTreeSet<(Instant, u64)>,
}

/// Spawns the loop on `socket`; returns its command queue.
pub fn spawn(socket: UdpSocket, limits: StorageSessionLimits) -> std::io::Result<mpsc::Sender<Command>> {
    let local = socket.local_addr()?;
    let (tx, rx) = mpsc::channel(1024);
    let lp = Loop {
        socket: Arc::new(socket),
        local,
        limits,
        anchor: ClockAnchor::now(),
        sessions: HashMap::new(),
        by_remote: HashMap::new(),
        deadlines: BTreeSet::new(),
    };
    tokio::spawn(lp.run(rx));
    Ok(tx)
}

impl Loop {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; 2000];
        let socket = self.socket.clone();
        loop {
            let next = self.deadlines.first().map(|(t, _)| *t);
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Shutdown(ack)) => {
                        self.shutdown().await;
                        let _ = ack.send(());
                        return;
                    }
                    Some(cmd) => self.command(cmd),
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
                res = socket.recv_from(&mut buf) => match res {
                    Ok((n, source)) => self.datagram(source, buf.get(..n).unwrap_or_default()),
                    Err(e) => tracing::debug!(error = %e, "webrtc socket receive error"),
                },
                () = sleep => self.timeouts(),
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Add(s) => self.add(*s),
            Command::Answer { id, answer } => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    let result = match s.pending.take() {
                        Some(p) => s.rtc.sdp_api().accept_answer(p, answer),
                        None => Ok(()),
                    };
                    if let Err(e) = result {
                        self.end(id, EndReason::Rtc(format!("answer rejected: {e}")));
                        return;
                    }
                    self.drive(id, Instant::now());
                }
            }
            Command::Candidate { id, candidate } => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.rtc.add_remote_candidate(candidate);
                    self.drive(id, Instant::now());
                }
            }
            Command::Close { id, reason } => self.end(id, reason),
            Command::Shutdown(_) => {}
        }
    }

    fn add(&mut self, s: NewSession) {
        let now = Instant::now();
        let fragmenter = match Fragmenter::new(FragmenterConfig::default(), self.anchor.unix_us(now)) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "fragmenter config");
                let _ = s.ended.send(EndReason::Rtc(e.to_string()));
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
                rtc: s.rtc,
                pending: Some(s.pending),
                video: s.video,
                audio: s.audio,
                fragmenter,
                writer_tx: s.writer_tx,
                writer_task: s.writer_task,
                ended: Some(s.ended),
                started: now,
                last_media: now,
                remotes: Vec::new(),
                deadline: None,
                packets: 0,
                bytes: 0,
                plis: 0,
                selected_pair: None,
            },
        );
        self.drive(id, now);
    }

    /// Routes one datagram to the session it belongs to.
    fn datagram(&mut self, source: SocketAddr, data: &[u8]) {
        let now = Instant::now();
        let Ok(contents) = data.try_into() else {
            metrics::counter!("reel_webrtc_unknown_datagrams_total").increment(1);
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
            metrics::counter!("reel_webrtc_unknown_datagrams_total").increment(1);
            return;
        };
        let Some(s) = self.sessions.get_mut(&id) else { return };
        if mapped.is_none() && !s.remotes.contains(&source) {
            s.remotes.push(source);
            self.by_remote.insert(source, id);
        }
        s.packets += 1;
        s.bytes += data.len() as u64;
        metrics::counter!("reel_storage_session_packets_total").increment(1);
        metrics::counter!("reel_storage_session_bytes_total").increment(data.len() as u64);
        if let Err(e) = s.rtc.handle_input(input) {
            tracing::debug!(session = id, error = %e, "rtc input error");
        }
        self.drive(id, now);
    }

    /// Drives every session whose deadline has passed.
    fn timeouts(&mut self) {
        let now = Instant::now();
        while let Some(&(t, id)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(s) = self.sessions.get_mut(&id) {
                s.deadline = None;
                if now.duration_since(s.started) >= Duration::from_secs(self.limits.max_session_secs) {
                    self.end(id, EndReason::MaxLife);
                    continue;
                }
                if now.duration_since(s.last_media) >= Duration::from_secs(self.limits.idle_timeout_secs) {
                    self.end(id, EndReason::Idle);
                    continue;
                }
                if let Err(e) = s.rtc.handle_input(Input::Timeout(now)) {
                    self.end(id, EndReason::Rtc(e.to_string()));
                    continue;
                }
                let unix = self.anchor.unix_us(now);
                if s.fragmenter.poll_timeout().is_some_and(|t| t <= unix) {
                    s.fragmenter.handle_timeout(unix);
                }
                self.drive(id, now);
            }
        }
    }

    /// Polls the session's `Rtc` until it waits, sending, ingesting and rescheduling.
    fn drive(&mut self, id: u64, now: Instant) {
        let Some(s) = self.sessions.get_mut(&id) else { return };
        let mut end = None;
        let rtc_deadline = loop {
            match s.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    if let Err(e) = self.socket.try_send_to(&t.contents, t.destination) {
                        tracing::debug!(session = id, error = %e, "webrtc send dropped");
                    }
                }
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Event(ev)) => {
                    if let Some(reason) = handle_event(s, ev, &self.anchor) {
                        end = Some(reason);
                    }
                }
                Err(e) => {
                    end = Some(EndReason::Rtc(e.to_string()));
                    break now;
                }
            }
        };
        drain_fragmenter(s);
        if let Some(reason) = end {
            self.end(id, reason);
            return;
        }
        let mut next = rtc_deadline
            .min(s.started + Duration::from_secs(self.limits.max_session_secs))
            .min(s.last_media + Duration::from_secs(self.limits.idle_timeout_secs));
        if let Some(t) = s.fragmenter.poll_timeout() {
            next = next.min(self.anchor.instant(t));
        }
        if let Some(old) = s.deadline.replace(next) {
            self.deadlines.remove(&(old, id));
        }
        self.deadlines.insert((next, id));
    }

    /// Ends one session: flushes its fragment, closes its writer queue, tells its control task.
    fn end(&mut self, id: u64, reason: EndReason) {
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
        s.fragmenter.finish(self.anchor.unix_us(Instant::now()));
        drain_fragmenter(&mut s);
        let stats = s.fragmenter.stats();
        tracing::info!(
            session = id, channel = %s.channel_arn, ?reason, packets = s.packets, bytes = s.bytes,
            plis = s.plis, fragments = stats.fragments, video_frames = stats.video_out,
            audio_frames = stats.audio_out, "storage session ended"
        );
        metrics::gauge!("reel_storage_sessions_active").decrement(1.0);
        if let Some(tx) = s.ended.take() {
            let _ = tx.send(reason);
        }
        // Dropping the queue lets the writer task finish the open fragment and exit.
        drop(s.writer_tx);
    }

    async fn shutdown(&mut self) {
        let ids: Vec<u64> = self.sessions.keys().copied().collect();
        let mut writers = Vec::new();
        for id in ids {
            if let Some(s) = self.sessions.get_mut(&id) {
                writers.push(std::mem::replace(&mut s.writer_task, tokio::spawn(async {})));
            }
            self.end(id, EndReason::Shutdown);
        }
        for w in writers {
            let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
        }
    }
}

/// Reacts to one str0m event; returns a reason when the session must end.
fn handle_event(s: &mut Session, ev: Event, anchor: &ClockAnchor) -> Option<EndReason> {
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
            s.last_media = Instant::now();
            if let Some(frame) = ingest::media_frame(&md, s.video, s.audio, anchor) {
                s.fragmenter.push(frame);
            }
        }
        Event::PeerStats(stats) => {
            let pair = stats.selected_candidate_pair.as_ref().map(|p| format!("{:?} -> {:?}", p.local, p.remote));
            if pair != s.selected_pair {
                tracing::info!(session = s.id, pair = ?pair, rtt = ?stats.rtt, "selected candidate pair");
                s.selected_pair = pair;
            } else {
                tracing::debug!(session = s.id, rtt = ?stats.rtt, loss = ?stats.ingress_loss_fraction, "peer stats");
            }
        }
        Event::MediaIngressStats(m) => {
            let labels = [("session", s.id.to_string()), ("mid", m.mid.to_string())];
            metrics::counter!("reel_storage_session_rx_packets", &labels).absolute(m.packets);
            metrics::counter!("reel_storage_session_rx_bytes", &labels).absolute(m.bytes);
            metrics::counter!("reel_storage_session_nacks", &labels).absolute(m.nacks);
            metrics::counter!("reel_storage_session_plis", &labels).absolute(m.plis);
            metrics::gauge!("reel_storage_session_jitter", &labels).set(f64::from(m.jitter));
            if let Some(loss) = m.loss {
                metrics::gauge!("reel_storage_session_loss_fraction", &labels).set(f64::from(loss));
            }
        }
        _ => {}
    }
    None
}

fn request_pli(s: &mut Session) {
    if let Some(mut w) = s.rtc.writer(s.video)
        && w.request_keyframe(None, KeyframeRequestKind::Pli).is_ok()
    {
        s.plis += 1;
        metrics::counter!("reel_storage_session_plis_total").increment(1);
    }
}

/// Hands fragment events to the writer queue and turns keyframe requests into PLIs.
fn drain_fragmenter(s: &mut Session) {
    while let Some(ev) = s.fragmenter.poll() {
        match ev {
            FragmentEvent::RequestKeyframe { reason } => {
                tracing::debug!(session = s.id, ?reason, "keyframe requested");
                request_pli(s);
            }
            ev => {
                if s.writer_tx.try_send(ev).is_err() {
                    tracing::warn!(session = s.id, "store writer queue full; fragment data dropped");
                    metrics::counter!("reel_storage_session_dropped_events_total").increment(1);
                }
            }
        }
    }
}
