//! The tokio driver of the media peer: one UDP socket, one [`Hub`], one task.
//!
//! All protocol state (sessions' str0m `Rtc`s, demux, deadlines) lives in the sans-IO
//! [`Hub`]; this loop only moves bytes and time: on socket readiness it drains up to
//! [`RECV_BATCH`] datagrams with `try_recv_from` before sending what the hub wants sent,
//! sleeps until the hub's next deadline, and relays session control [`Command`]s. There is
//! no task, timer or socket per session on the media path.

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
use crate::limits::StorageSessionLimits;

/// Datagrams read per socket wakeup before the loop sends and checks timers.
pub const RECV_BATCH: usize = 64;

/// A session handed to the loop by its control task: what the hub drives, plus what the
/// loop keeps beside it.
pub struct NewSession {
    /// The session for the hub.
    pub session: HubSession,
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

/// Spawns the loop on `socket`; returns its command queue.
pub fn spawn(socket: UdpSocket, limits: StorageSessionLimits) -> std::io::Result<mpsc::Sender<Command>> {
    let local = socket.local_addr()?;
    let (tx, rx) = mpsc::channel(1024);
    let driver = Driver {
        socket: Arc::new(socket),
        hub: Hub::new(local, limits, ClockAnchor::now()),
        sessions: HashMap::new(),
        writers: Vec::new(),
    };
    tokio::spawn(driver.run(rx));
    Ok(tx)
}

/// What the driver keeps of a session besides the hub's state.
struct Control {
    writer_task: JoinHandle<()>,
    ended: oneshot::Sender<EndReason>,
}

struct Driver {
    socket: Arc<UdpSocket>,
    hub: Hub,
    sessions: HashMap<u64, Control>,
    /// Writers of sessions ended during shutdown, awaited so open fragments are flushed.
    writers: Vec<JoinHandle<()>>,
}

impl Driver {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; 2000];
        let socket = self.socket.clone();
        loop {
            let next = self.hub.next_deadline();
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
                res = socket.readable() => match res {
                    Ok(()) => self.read_batch(&mut buf),
                    Err(e) => tracing::debug!(error = %e, "webrtc socket readiness error"),
                },
                () = sleep => self.hub.timeout(Instant::now()),
            }
            self.flush();
        }
    }

    /// Reads up to [`RECV_BATCH`] datagrams without waiting.
    fn read_batch(&mut self, buf: &mut [u8]) {
        for _ in 0..RECV_BATCH {
            match self.socket.try_recv_from(buf) {
                Ok((n, source)) => self.hub.receive(Instant::now(), source, buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "webrtc socket receive error");
                    break;
                }
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Add(s) => {
                let NewSession { session, writer_task, ended } = *s;
                self.sessions.insert(session.id, Control { writer_task, ended });
                self.hub.add(now, session);
            }
            Command::Answer { id, answer } => self.hub.answer(id, answer, now),
            Command::Candidate { id, candidate } => self.hub.candidate(id, candidate, now),
            Command::Close { id, reason } => self.hub.close(id, reason, now),
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
