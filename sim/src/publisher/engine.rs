//! The threads that drive publishers: one per core, each a poll loop over the sockets and
//! timers of the sessions it was given. A wakeup serves every session that is due (they
//! share the pacing grid, see [`super::pacing`]), with no async task, waker or timer entry
//! per session; the async side ([`super::Publisher::run`]) only relays signaling and
//! waits for the run's end.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use tokio::sync::oneshot;

use super::peer::{PeerCore, Step};
use super::{PublisherError, RunEnd};

/// Largest UDP datagram read.
const RECV_BUF: usize = 2_048;
/// How long after connecting a session's datagrams are still handled on arrival.
const SETTLE: Duration = Duration::from_secs(1);
/// The token of each thread's waker (session tokens are their ids, from 1).
const WAKER: Token = Token(0);

/// What a finished run hands back: the peer (to disconnect or inspect) and how it ended.
pub type Finished = (Box<PeerCore>, Result<RunEnd, PublisherError>);

/// A message to an engine thread.
enum Command {
    /// Drive this peer (already started) until its run ends, then send it back.
    Start(u64, Box<PeerCore>, oneshot::Sender<Finished>),
    /// A trickled remote candidate for a session.
    Candidate(u64, String),
    /// End a session's run now ([`RunEnd::Stopped`]).
    Stop(u64),
}

/// One engine thread's mailbox.
#[derive(Clone)]
struct Mailbox {
    commands: Arc<Mutex<Vec<Command>>>,
    /// Wakes the thread out of its poll.
    waker: Arc<Waker>,
    /// Wakes the thread out of a tick's sleep (`park_timeout`).
    thread: std::thread::Thread,
}

impl Mailbox {
    fn post(&self, command: Command) {
        if let Ok(mut q) = self.commands.lock() {
            q.push(command);
        }
        // A failed wake leaves the command for the thread's next wakeup (at most a tick).
        let _ = self.waker.wake();
        self.thread.unpark();
    }
}

/// A run in progress on an engine thread.
pub struct RunHandle {
    id: u64,
    mailbox: Mailbox,
}

impl RunHandle {
    /// Passes a trickled remote candidate to the peer.
    pub fn add_remote_candidate(&self, candidate: String) {
        self.mailbox.post(Command::Candidate(self.id, candidate));
    }

    /// Ends the run ([`RunEnd::Stopped`]); the finished peer still comes back.
    pub fn stop(&self) {
        self.mailbox.post(Command::Stop(self.id));
    }
}

/// The engine threads of the process.
struct Engine {
    threads: Vec<Mailbox>,
    next: AtomicUsize,
}

/// The process's engine, started on first use (one thread per core).
fn engine() -> io::Result<&'static Engine> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (0..n).map(spawn_thread).collect::<io::Result<Vec<_>>>().map_err(|e| e.to_string())?;
        Ok(Engine { threads, next: AtomicUsize::new(0) })
    });
    engine.as_ref().map_err(|e| io::Error::other(format!("publisher engine: {e}")))
}

/// Hands a started peer to an engine thread (round robin); `done` gets it back at the end.
pub fn start(core: Box<PeerCore>) -> io::Result<(RunHandle, oneshot::Receiver<Finished>)> {
    static IDS: AtomicU64 = AtomicU64::new(1);
    let engine = engine()?;
    let i = engine.next.fetch_add(1, Ordering::Relaxed) % engine.threads.len();
    let mailbox = engine.threads[i].clone();
    let id = IDS.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    mailbox.post(Command::Start(id, core, tx));
    Ok((RunHandle { id, mailbox }, rx))
}

fn spawn_thread(index: usize) -> io::Result<Mailbox> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let commands = Arc::new(Mutex::new(Vec::new()));
    let queue = commands.clone();
    let handle =
        std::thread::Builder::new().name(format!("reel-pub-{index}")).spawn(move || Thread::new(poll, queue).run())?;
    Ok(Mailbox { commands, waker, thread: handle.thread().clone() })
}

/// A session on a thread.
struct Session {
    core: Box<PeerCore>,
    /// When its last step asked to run again.
    wake: Instant,
    /// Run it now (readable socket, command).
    ready: bool,
    done: oneshot::Sender<Finished>,
}

/// One engine thread's state.
struct Thread {
    poll: Poll,
    commands: Arc<Mutex<Vec<Command>>>,
    sessions: HashMap<u64, Session>,
}

impl Thread {
    fn new(poll: Poll, commands: Arc<Mutex<Vec<Command>>>) -> Self {
        Self { poll, commands, sessions: HashMap::new() }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; RECV_BUF];
        let mut finished = Vec::new();
        loop {
            let next = self.sessions.values().map(|s| s.wake).min();
            let timeout = next.map(|t| t.saturating_duration_since(Instant::now()));
            // Once every session is connected, datagrams (RTCP, NACKs, consent checks) wait
            // for the next tick instead of waking the thread each: it sleeps through to the
            // tick (or a command), then collects whatever became readable. Sessions that are
            // connecting or connected less than [`SETTLE`] ago (ICE, DTLS, the remote's
            // last checks) get every datagram at once, and so does an idle thread.
            let settled = Instant::now().checked_sub(SETTLE);
            let batch_reads = !self.sessions.is_empty()
                && self.sessions.values().all(|s| s.core.connected_at().zip(settled).is_some_and(|(c, t)| c <= t));
            let timeout = match timeout {
                Some(t) if batch_reads => {
                    std::thread::park_timeout(t);
                    Some(Duration::ZERO)
                }
                other => other,
            };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                // Dropping the sessions tells their runs (their `done` closes).
                tracing::error!(error = %e, "publisher engine thread stopped");
                return;
            }
            for event in events.iter() {
                if event.token() != WAKER
                    && let Some(s) = self.sessions.get_mut(&(event.token().0 as u64))
                {
                    s.core.receive(&mut buf);
                    s.ready = true;
                }
            }
            self.take_commands();
            let now = Instant::now();
            for (&id, s) in &mut self.sessions {
                if s.done.is_closed() {
                    // The run was cancelled (its future dropped): nobody wants the peer back.
                    finished.push((id, None));
                    continue;
                }
                let due = s.wake <= now;
                if !(due || s.ready) {
                    continue;
                }
                s.ready = false;
                if due {
                    s.core.fire();
                }
                match s.core.step() {
                    Step::Wait(t) => s.wake = t,
                    Step::Done(result) => finished.push((id, Some(result))),
                }
            }
            for (id, result) in finished.drain(..) {
                if let Some(mut s) = self.sessions.remove(&id) {
                    let _ = self.poll.registry().deregister(s.core.socket.source());
                    if let Some(result) = result {
                        let _ = s.done.send((s.core, result));
                    }
                }
            }
        }
    }

    /// Applies the commands posted since the last wakeup.
    fn take_commands(&mut self) {
        let commands = match self.commands.lock() {
            Ok(mut q) => std::mem::take(&mut *q),
            Err(_) => return,
        };
        for command in commands {
            match command {
                Command::Start(id, mut core, done) => {
                    let token = Token(id as usize);
                    if let Err(e) = self.poll.registry().register(core.socket.source(), token, Interest::READABLE) {
                        let _ = done.send((core, Err(e.into())));
                        continue;
                    }
                    let session = Session { core, wake: Instant::now(), ready: true, done };
                    self.sessions.insert(id, session);
                }
                Command::Candidate(id, candidate) => {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.core.add_remote_candidate(&candidate);
                        s.ready = true;
                    }
                }
                Command::Stop(id) => {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.core.stop();
                        s.ready = true;
                    }
                }
            }
        }
    }
}
