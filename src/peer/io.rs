//! The driver of one media worker: one UDP socket, one [`Hub`], one thread.
//!
//! Each worker runs on its own OS thread with a single-threaded tokio runtime that also
//! hosts its sessions' store writer tasks, so the hub hands media to a writer without
//! waking another thread. All protocol state (sessions' str0m `Rtc`s, demux, deadlines)
//! lives in the sans-IO [`Hub`]; this loop only moves bytes and time. On socket readiness it drains the socket
//! with batched `recvmmsg` ([`quinn_udp`]), sends what the hub wants sent, and then blocks
//! its thread for `recv_coalesce_ms` before it reads again, so that one wakeup serves a
//! batch of datagrams from many sessions. Otherwise it sleeps until the hub's next deadline or a session
//! control [`Command`]. There is no task, timer or socket per session on the media path.

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn_udp::{RecvMeta, UdpSocketState};
use str0m::Candidate;
use str0m::change::SdpAnswer;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use super::hub::EndReason;
use super::hub::{Hub, HubSession};
use super::ingest::ClockAnchor;
use crate::limits::StorageSessionLimits;

/// Most datagrams read per wakeup before the loop sends, checks timers and commands.
pub const MAX_READ_PER_WAKEUP: usize = 1024;
/// Largest UDP payload a receive slot holds without GRO.
const MAX_DATAGRAM: usize = 2048;
/// Largest batch the kernel coalesces with GRO (its 64 KiB cap on one aggregated datagram).
const MAX_GRO_BATCH: usize = 64 * 1024;

/// A session handed to the loop by its control task: what the hub drives, plus what the
/// loop keeps beside it.
pub struct NewSession {
    /// The session for the hub.
    pub session: HubSession,
    /// What the session's store writer task (started on the worker's runtime) consumes.
    pub writer: WriterInput,
    /// Told when the loop ends the session.
    pub ended: oneshot::Sender<EndReason>,
}

/// The store writer of one session: the stream it writes and the hub's events for it.
pub struct WriterInput {
    /// The stream mapped to the channel.
    pub stream: reel_storage::Stream,
    /// Cluster mode: the writer lease the fragments are written under (see
    /// `reel_storage::Stream::begin_fenced_fragment`).
    pub fence: Option<reel_storage::Fence>,
    /// Fragment events from the hub (the other end is `HubSession::writer_tx`).
    pub events: mpsc::Receiver<reel_media::fragmenter::FragmentEvent>,
}

/// A viewer session handed to the loop by its control task.
pub struct NewViewer {
    /// The viewer for the hub.
    pub viewer: super::fanout::HubViewer,
    /// Told when the loop ends the viewer session.
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
    /// Start driving a viewer session (JoinStorageSessionAsViewer).
    AddViewer(Box<NewViewer>),
    /// A viewer's answer (already validated).
    ViewerAnswer { id: u64, answer: SdpAnswer },
    /// A viewer's trickled candidate.
    ViewerCandidate { id: u64, candidate: Candidate },
    /// End a viewer session.
    CloseViewer { id: u64, reason: EndReason },
    /// End every session, wait for their writers, then acknowledge.
    Shutdown(oneshot::Sender<()>),
    /// Report the live sessions (the sessions dashboard).
    Summaries(oneshot::Sender<Vec<super::hub::SessionSummary>>),
}

/// Starts worker `index` on `socket` (a thread named `reel-media-<index>` with its own
/// single-threaded runtime); returns its command queue.
pub fn spawn(
    index: usize,
    socket: std::net::UdpSocket,
    limits: StorageSessionLimits,
) -> std::io::Result<mpsc::Sender<Command>> {
    let (tx, rx) = mpsc::channel(1024);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // The socket registers with the worker's reactor, so build the driver inside it.
    let driver = {
        let _inside = runtime.enter();
        Driver::new(socket, limits)?
    };
    std::thread::Builder::new().name(format!("reel-media-{index}")).spawn(move || runtime.block_on(driver.run(rx)))?;
    Ok(tx)
}

/// What the driver keeps of a session besides the hub's state.
struct Control {
    writer_task: JoinHandle<()>,
    ended: oneshot::Sender<EndReason>,
}

/// Batched receive: `recvmmsg` into a fixed set of slots (each big enough for a GRO batch).
struct Receiver {
    state: UdpSocketState,
    /// `quinn_udp::BATCH_SIZE` slots of `slot` bytes each.
    bufs: Vec<u8>,
    slot: usize,
    meta: Vec<RecvMeta>,
}

impl Receiver {
    fn new(socket: &UdpSocket) -> std::io::Result<Self> {
        let state = UdpSocketState::new(socket.into())?;
        let slot = (MAX_DATAGRAM * state.gro_segments().max(1)).clamp(MAX_DATAGRAM, MAX_GRO_BATCH);
        let slots = quinn_udp::BATCH_SIZE.max(1);
        Ok(Self { state, bufs: vec![0; slot * slots], slot, meta: vec![RecvMeta::default(); slots] })
    }

    /// One `recvmmsg` without waiting: the number of slots filled.
    fn recv(&mut self, socket: &UdpSocket) -> std::io::Result<usize> {
        let mut slices: Vec<IoSliceMut<'_>> = self.bufs.chunks_mut(self.slot).map(IoSliceMut::new).collect();
        let (state, meta) = (&self.state, &mut self.meta);
        socket.try_io(Interest::READABLE, || state.recv(socket.into(), &mut slices, meta))
    }

    /// The datagrams of slot `i` (several when the kernel coalesced them with GRO).
    fn datagrams(&self, i: usize) -> impl Iterator<Item = (std::net::SocketAddr, &[u8])> {
        let meta = self.meta.get(i).copied().unwrap_or_default();
        let data = self.bufs.get(i * self.slot..).and_then(|b| b.get(..meta.len.min(self.slot))).unwrap_or_default();
        data.chunks(meta.stride.max(1)).map(move |d| (meta.addr, d))
    }
}

struct Driver {
    socket: Arc<UdpSocket>,
    recv: Receiver,
    /// Wait after a wakeup that read datagrams (`recv_coalesce_ms`).
    coalesce: Duration,
    hub: Hub,
    sessions: HashMap<u64, Control>,
    /// Viewer sessions' control tasks, told when the hub ends them.
    viewers: HashMap<u64, oneshot::Sender<EndReason>>,
    /// Writers of sessions ended during shutdown, awaited so open fragments are flushed.
    writers: Vec<JoinHandle<()>>,
}

impl Driver {
    /// Registers `socket` with the current (worker) runtime.
    fn new(socket: std::net::UdpSocket, limits: StorageSessionLimits) -> std::io::Result<Self> {
        let socket = UdpSocket::from_std(socket)?;
        let local = socket.local_addr()?;
        let recv = Receiver::new(&socket)?;
        Ok(Self {
            socket: Arc::new(socket),
            recv,
            coalesce: Duration::from_millis(limits.recv_coalesce_ms),
            hub: Hub::new(local, limits, ClockAnchor::now()),
            sessions: HashMap::new(),
            viewers: HashMap::new(),
            writers: Vec::new(),
        })
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let socket = self.socket.clone();
        loop {
            let next = self.hub.next_deadline();
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            let mut read = 0;
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
                res = socket.readable() => match res {
                    Ok(()) => read = self.read_batch(),
                    Err(e) => tracing::debug!(error = %e, "webrtc socket readiness error"),
                },
                () = sleep => self.hub.timeout(Instant::now()),
            }
            if read > 0 {
                // Timers that fell due while reading run before the loop rests.
                self.hub.timeout(Instant::now());
            }
            self.flush();
            if read > 0 && !self.coalesce.is_zero() {
                // Rest with the thread blocked, not parked in the reactor: a parked runtime
                // wakes on the socket's next datagram (edge-triggered readiness) long
                // before the rest is over, so an async rest cost two or three wakeups
                // (≈ 20 µs each here) instead of one. The writer tasks run right after.
                std::thread::sleep(self.coalesce);
                tokio::task::yield_now().await;
            }
        }
    }

    /// Reads what the socket holds (up to [`MAX_READ_PER_WAKEUP`] datagrams) without
    /// waiting; returns how many datagrams it read.
    fn read_batch(&mut self) -> usize {
        let mut read = 0;
        while read < MAX_READ_PER_WAKEUP {
            let filled = match self.recv.recv(&self.socket) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "webrtc socket receive error");
                    break;
                }
            };
            // One clock read per batch: every datagram in it was waiting in the socket.
            let now = Instant::now();
            for i in 0..filled {
                for (source, data) in self.recv.datagrams(i) {
                    self.hub.receive(now, source, data);
                    read += 1;
                }
            }
            if filled == 0 {
                break;
            }
        }
        read
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Add(s) => {
                let NewSession { session, writer, ended } = *s;
                let writer_task = super::ingest::spawn_writer(session.id, writer.stream, writer.fence, writer.events);
                self.sessions.insert(session.id, Control { writer_task, ended });
                self.hub.add(now, session);
            }
            Command::Answer { id, answer } => self.hub.answer(id, answer, now),
            Command::Candidate { id, candidate } => self.hub.candidate(id, candidate, now),
            Command::Close { id, reason } => self.hub.close(id, reason, now),
            Command::AddViewer(v) => {
                let NewViewer { viewer, ended } = *v;
                self.viewers.insert(viewer.id, ended);
                self.hub.add_viewer(now, viewer);
            }
            Command::ViewerAnswer { id, answer } => self.hub.viewer_answer(id, answer, now),
            Command::ViewerCandidate { id, candidate } => self.hub.viewer_candidate(id, candidate, now),
            Command::CloseViewer { id, reason } => self.hub.close_viewer(id, reason, now),
            Command::Summaries(reply) => {
                let _ = reply.send(self.hub.summaries(now));
            }
            Command::Shutdown(_) => {}
        }
    }

    /// Sends the hub's datagrams and tells control tasks about ended sessions.
    fn flush(&mut self) {
        while let Some(t) = self.hub.poll_transmit() {
            if let Err(e) = self.socket.try_send_to(&t.contents, t.destination) {
                tracing::debug!(error = %e, "webrtc send dropped");
            }
        }
        while let Some(e) = self.hub.poll_ended() {
            if let Some(c) = self.sessions.remove(&e.id) {
                let _ = c.ended.send(e.reason);
                self.writers.push(c.writer_task);
            }
        }
        while let Some(e) = self.hub.poll_viewer_ended() {
            if let Some(ended) = self.viewers.remove(&e.id) {
                let _ = ended.send(e.reason);
            }
        }
        // Writers of sessions ended in normal operation run on by themselves.
        self.writers.retain(|w| !w.is_finished());
    }

    async fn shutdown(&mut self) {
        self.hub.close_all(EndReason::Shutdown, Instant::now());
        self.flush();
        for w in std::mem::take(&mut self.writers) {
            let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batched_reads_return_every_datagram_with_its_source() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let to = socket.local_addr().expect("addr");
        let mut recv = Receiver::new(&socket).expect("receiver");
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind b");
        // More than one recvmmsg batch, from two sources, same-size runs (GRO candidates)
        // and odd sizes.
        let mut sent = Vec::new();
        for i in 0..(2 * quinn_udp::BATCH_SIZE as u8 + 5) {
            let (from, len) = if i % 3 == 0 { (&b, 100 + usize::from(i)) } else { (&a, 1200) };
            let data = vec![i; len];
            from.send_to(&data, to).expect("send");
            sent.push((from.local_addr().expect("addr"), data));
        }
        let mut got = Vec::new();
        let read_all = async {
            while got.len() < sent.len() {
                socket.readable().await.expect("readable");
                match recv.recv(&socket) {
                    Ok(filled) => {
                        for i in 0..filled {
                            got.extend(recv.datagrams(i).map(|(src, d)| (src, d.to_vec())));
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("recv: {e}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), read_all).await.expect("every datagram arrives");
        got.sort();
        sent.sort();
        assert_eq!(got, sent);
    }
}
