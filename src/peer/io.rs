//! The driver of one media worker: one UDP socket, one [`Hub`], one thread.
//!
//! Each worker runs on its own OS thread with a single-threaded tokio runtime. Its
//! sessions' store writer tasks run on a second thread of the worker's own,
//! `reel-store-<index>` (see [`StoreThread`]), which writes chunks in place: the media loop
//! never blocks on the disk, and a chunk costs one queue hand-off instead of a hop to
//! tokio's blocking pool and back. All protocol state (sessions' str0m `Rtc`s, demux,
//! deadlines) lives in the sans-IO [`Hub`]; this loop only moves bytes and time. On socket
//! readiness it drains the socket with batched `recvmmsg` ([`super::recv`], which keeps each
//! datagram's kernel arrival time), sends what the hub wants sent (batched, [`super::send`]),
//! and then blocks its thread for `recv_coalesce_ms` before it reads again, so that one
//! wakeup serves a batch of datagrams from many sessions. Otherwise it sleeps until the
//! hub's next deadline or a session control [`Command`]. There is no task, timer or socket
//! per session on the media path.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::Candidate;
use str0m::change::SdpAnswer;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use super::hub::EndReason;
use super::hub::{Hub, HubSession};
use super::ingest::ClockAnchor;
use super::recv::Receiver;
use super::send::Sender;
use crate::limits::StorageSessionLimits;

/// Most datagrams read per wakeup before the loop sends, checks timers and commands.
pub const MAX_READ_PER_WAKEUP: usize = 1024;

/// A session handed to the loop by its control task: what the hub drives, plus what the
/// loop keeps beside it.
pub struct NewSession {
    /// The session for the hub.
    pub session: HubSession,
    /// What the session's store writer task (started on the worker's store thread) consumes.
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
/// single-threaded runtime, and its store thread `reel-store-<index>`); returns its
/// command queue.
pub fn spawn(
    index: usize,
    socket: std::net::UdpSocket,
    limits: StorageSessionLimits,
) -> std::io::Result<mpsc::Sender<Command>> {
    let (tx, rx) = mpsc::channel(1024);
    let store = StoreThread::spawn(index)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // The driver is built on its thread (its receive headers hold raw pointers and stay
    // there) inside the worker's runtime (the socket registers with its reactor); the
    // outcome comes back here so a failure is reported to the caller.
    let (built_tx, built_rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new().name(format!("reel-media-{index}")).spawn(move || {
        let driver = {
            let _inside = runtime.enter();
            Driver::new(socket, limits, store)
        };
        match driver {
            Ok(driver) => {
                let _ = built_tx.send(Ok(()));
                runtime.block_on(driver.run(rx));
            }
            Err(e) => {
                let _ = built_tx.send(Err(e));
            }
        }
    })?;
    built_rx.recv().map_err(|_| std::io::Error::other("media worker thread ended while starting"))??;
    Ok(tx)
}

/// The thread that runs one worker's store writer tasks on a single-threaded runtime of its
/// own. Its job is to block on the store: chunk appends are written in place
/// (`FragmentWriter::append_chunk_blocking`), while begins and finishes await the store as
/// usual, so one session waiting for its fragment's group commit never holds up the others'
/// chunks. It ends when the worker's driver (holding `_stop`) is dropped, after shutdown
/// awaited the writers.
struct StoreThread {
    handle: tokio::runtime::Handle,
    _stop: oneshot::Sender<()>,
}

impl StoreThread {
    fn spawn(index: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new().name(format!("reel-store-{index}")).spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })?;
        Ok(Self { handle, _stop: stop })
    }
}

/// What the driver keeps of a session besides the hub's state.
struct Control {
    writer_task: JoinHandle<()>,
    ended: oneshot::Sender<EndReason>,
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
    /// Where the sessions' store writers run.
    store: StoreThread,
    /// Batched (GSO) sends of the hub's datagrams.
    sender: Sender,
    /// The datagrams of one flush, reused.
    out: Vec<(std::net::SocketAddr, Vec<u8>)>,
}

impl Driver {
    /// Registers `socket` with the current (worker) runtime.
    fn new(socket: std::net::UdpSocket, limits: StorageSessionLimits, store: StoreThread) -> std::io::Result<Self> {
        let socket = UdpSocket::from_std(socket)?;
        let local = socket.local_addr()?;
        let recv = Receiver::new(&socket)?;
        let sender = Sender::new(&socket);
        Ok(Self {
            socket: Arc::new(socket),
            recv,
            coalesce: Duration::from_millis(limits.recv_coalesce_ms),
            hub: Hub::new(local, limits, ClockAnchor::now()),
            sessions: HashMap::new(),
            viewers: HashMap::new(),
            writers: Vec::new(),
            store,
            sender,
            out: Vec::new(),
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
            for i in 0..filled {
                for (arrived, source, data) in self.recv.datagrams(i) {
                    self.hub.receive(arrived, source, data);
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
                let writer_task = super::ingest::spawn_writer(
                    &self.store.handle,
                    session.id,
                    writer.stream,
                    writer.fence,
                    writer.events,
                );
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
            self.out.push((t.destination, t.contents));
        }
        if !self.out.is_empty() {
            super::send::group_streams(&mut self.out);
            self.sender.send_all(&*self.socket, &self.out);
            self.out.clear();
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
