//! The floor receiver: one UDP socket, batched `recvmmsg`, SRTP decrypt, append to a file
//! per session. It runs on a thread of its own so its CPU time is exactly the floor's.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::thread::JoinHandleExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::SessionKeys;
use super::srtp::{ReplayState, SrtpAead, SrtpError, rtp_seq, rtp_ssrc};

/// Datagrams taken per `recvmmsg` call at most.
pub const BATCH: usize = 64;
/// Largest datagram accepted (bigger ones are truncated by the kernel and dropped).
pub const MAX_DATAGRAM: usize = 2048;
/// Socket receive buffer requested, so short scheduling gaps do not drop packets.
pub const RECV_BUFFER_BYTES: usize = 8 << 20;
/// Buffered bytes per session file before a write(2).
pub const FILE_BUFFER_BYTES: usize = 64 << 10;
/// How long one blocking receive waits before the thread checks for stop/new sessions.
const POLL: Duration = Duration::from_millis(50);

/// What the floor receiver did, over its whole run or (via [`FloorReport::since`]) a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FloorReport {
    /// Packets authenticated, decrypted and appended.
    pub packets: u64,
    /// UDP payload bytes of those packets (the SRTP packets as received).
    pub bytes: u64,
    /// Decrypted media payload bytes appended to the session files.
    pub payload_bytes: u64,
    /// Packets whose GCM tag did not verify.
    pub auth_failures: u64,
    /// Datagrams dropped before decryption: not RTP, unknown SSRC, truncated, or replays.
    pub dropped: u64,
    /// `recvmmsg` calls that returned at least one datagram.
    pub batches: u64,
    /// CPU time (user + system) of the receiver thread, in milliseconds.
    pub cpu_ms: f64,
    /// Sum over sessions of the time each was registered, in seconds.
    pub session_seconds: f64,
    /// Wall time covered, in seconds.
    pub wall_seconds: f64,
}

impl FloorReport {
    /// Receiver CPU milliseconds per session-second: the floor's headline figure.
    pub fn cpu_ms_per_session_second(&self) -> Option<f64> {
        (self.session_seconds > 0.0).then(|| self.cpu_ms / self.session_seconds)
    }

    /// The difference `self - earlier` (both snapshots of one receiver), e.g. the
    /// steady-state window between two [`RunningReceiver::snapshot`]s.
    pub fn since(&self, earlier: &FloorReport) -> FloorReport {
        FloorReport {
            packets: self.packets.saturating_sub(earlier.packets),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            payload_bytes: self.payload_bytes.saturating_sub(earlier.payload_bytes),
            auth_failures: self.auth_failures.saturating_sub(earlier.auth_failures),
            dropped: self.dropped.saturating_sub(earlier.dropped),
            batches: self.batches.saturating_sub(earlier.batches),
            cpu_ms: self.cpu_ms - earlier.cpu_ms,
            session_seconds: self.session_seconds - earlier.session_seconds,
            wall_seconds: self.wall_seconds - earlier.wall_seconds,
        }
    }
}

/// A bound floor receiver, not yet running. Register sessions, then [`Receiver::spawn`]
/// (or [`Receiver::run_for`]).
pub struct Receiver {
    socket: UdpSocket,
    out_dir: PathBuf,
    pending: Vec<Session>,
}

/// A floor receiver running on its own thread.
pub struct RunningReceiver {
    local_addr: SocketAddr,
    out_dir: PathBuf,
    add: mpsc::Sender<Session>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    started: Instant,
    added: Vec<Instant>,
    /// `Some` until [`RunningReceiver::stop`] joins it.
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// One session's receive side: its key, per-SSRC replay state and output file.
struct Session {
    keys: SessionKeys,
    aead: SrtpAead,
    video: ReplayState,
    audio: ReplayState,
    file: BufWriter<File>,
}

/// Counters the receiver thread publishes after every batch.
#[derive(Default)]
struct Counters {
    packets: AtomicU64,
    bytes: AtomicU64,
    payload_bytes: AtomicU64,
    auth_failures: AtomicU64,
    dropped: AtomicU64,
    batches: AtomicU64,
}

/// Where a session's decrypted payload goes inside `out_dir`.
pub fn session_path(out_dir: &Path, keys: &SessionKeys) -> PathBuf {
    out_dir.join(format!("session-{:08x}.bin", keys.video_ssrc))
}

impl Session {
    fn create(out_dir: &Path, keys: SessionKeys) -> io::Result<(Session, PathBuf)> {
        let path = session_path(out_dir, &keys);
        let file = BufWriter::with_capacity(FILE_BUFFER_BYTES, File::create(&path)?);
        let aead = SrtpAead::new(keys.suite, &keys.key, &keys.salt)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok((Session { keys, aead, video: ReplayState::default(), audio: ReplayState::default(), file }, path))
    }
}

impl Receiver {
    /// Bind the UDP socket (use port 0 for any) and remember where session files go.
    pub fn bind(addr: SocketAddr, out_dir: impl AsRef<Path>) -> io::Result<Receiver> {
        let socket = UdpSocket::bind(addr)?;
        set_recv_buffer(&socket, RECV_BUFFER_BYTES);
        socket.set_read_timeout(Some(POLL))?;
        std::fs::create_dir_all(out_dir.as_ref())?;
        Ok(Receiver { socket, out_dir: out_dir.as_ref().to_path_buf(), pending: Vec::new() })
    }

    /// The bound address (the target for [`super::Sender`]).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Register a session before starting; returns the file its payload goes to.
    pub fn add_session(&mut self, keys: SessionKeys) -> io::Result<PathBuf> {
        let (session, path) = Session::create(&self.out_dir, keys)?;
        self.pending.push(session);
        Ok(path)
    }

    /// Start receiving on a thread of its own.
    pub fn spawn(self) -> io::Result<RunningReceiver> {
        let local_addr = self.socket.local_addr()?;
        let (add, added_rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let started = Instant::now();
        let added = vec![started; self.pending.len()];
        let (socket, pending) = (self.socket, self.pending);
        let (t_stop, t_counters) = (stop.clone(), counters.clone());
        let thread = std::thread::Builder::new()
            .name("floor-recv".into())
            .spawn(move || receive_loop(&socket, pending, &added_rx, &t_stop, &t_counters))?;
        Ok(RunningReceiver {
            local_addr,
            out_dir: self.out_dir,
            add,
            stop,
            counters,
            started,
            added,
            thread: Some(thread),
        })
    }

    /// Receive for `duration` and return the report (blocks the caller).
    pub fn run_for(self, duration: Duration) -> io::Result<FloorReport> {
        let running = self.spawn()?;
        std::thread::sleep(duration);
        running.stop()
    }
}

impl RunningReceiver {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Register another session while running; returns the file its payload goes to.
    pub fn add_session(&mut self, keys: SessionKeys) -> io::Result<PathBuf> {
        let (session, path) = Session::create(&self.out_dir, keys)?;
        self.add.send(session).map_err(|_| io::Error::other("floor receiver thread has exited"))?;
        self.added.push(Instant::now());
        Ok(path)
    }

    /// Counters and CPU so far (files not flushed); diff two with [`FloorReport::since`].
    pub fn snapshot(&self) -> FloorReport {
        let now = Instant::now();
        let c = &self.counters;
        FloorReport {
            packets: c.packets.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            payload_bytes: c.payload_bytes.load(Ordering::Relaxed),
            auth_failures: c.auth_failures.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            cpu_ms: self.thread.as_ref().map_or(0.0, thread_cpu_ms),
            session_seconds: self.added.iter().map(|t| now.duration_since(*t).as_secs_f64()).sum(),
            wall_seconds: now.duration_since(self.started).as_secs_f64(),
        }
    }

    /// Stop, flush every session file and return the whole-run report.
    pub fn stop(mut self) -> io::Result<FloorReport> {
        // Measure before the thread exits (its CPU clock goes with it); the final flush
        // is the only work after this point.
        let report = self.snapshot();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(result) => result?,
                Err(_) => return Err(io::Error::other("floor receiver thread panicked")),
            }
        }
        let c = &self.counters;
        Ok(FloorReport {
            packets: c.packets.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            payload_bytes: c.payload_bytes.load(Ordering::Relaxed),
            auth_failures: c.auth_failures.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            ..report
        })
    }
}

impl Drop for RunningReceiver {
    /// Dropped without [`RunningReceiver::stop`]: tell the thread to flush and exit.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The receiver thread: batches in, decrypt, append; until `stop`.
fn receive_loop(
    socket: &UdpSocket,
    pending: Vec<Session>,
    added: &mpsc::Receiver<Session>,
    stop: &AtomicBool,
    counters: &Counters,
) -> io::Result<()> {
    let mut sessions: Vec<Session> = Vec::new();
    let mut by_ssrc: HashMap<u32, (usize, bool)> = HashMap::new();
    fn register(s: Session, sessions: &mut Vec<Session>, by_ssrc: &mut HashMap<u32, (usize, bool)>) {
        by_ssrc.insert(s.keys.video_ssrc, (sessions.len(), true));
        by_ssrc.insert(s.keys.audio_ssrc, (sessions.len(), false));
        sessions.push(s);
    }
    for s in pending {
        register(s, &mut sessions, &mut by_ssrc);
    }
    let mut batch = RecvBatch::new();
    let mut c = LocalCounters::default();
    while !stop.load(Ordering::Relaxed) {
        while let Ok(s) = added.try_recv() {
            register(s, &mut sessions, &mut by_ssrc);
        }
        let n = match batch.recv(socket) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        c.batches += 1;
        for i in 0..n {
            let Some(packet) = batch.datagram(i) else {
                c.dropped += 1;
                continue;
            };
            let wire_len = packet.len() as u64;
            let Some(&(idx, is_video)) = rtp_ssrc(packet).and_then(|ssrc| by_ssrc.get(&ssrc)) else {
                c.dropped += 1;
                continue;
            };
            let Some(session) = sessions.get_mut(idx) else { continue };
            match decrypt_and_append(session, is_video, packet) {
                Ok(payload_len) => {
                    c.packets += 1;
                    c.bytes += wire_len;
                    c.payload_bytes += payload_len as u64;
                }
                Err(SrtpError::AuthFailed) => c.auth_failures += 1,
                Err(_) => c.dropped += 1,
            }
        }
        c.publish(counters);
    }
    for s in &mut sessions {
        s.file.flush()?;
    }
    Ok(())
}

/// Unprotect one packet and append its payload to the session file.
fn decrypt_and_append(session: &mut Session, is_video: bool, packet: &mut [u8]) -> Result<usize, SrtpError> {
    let seq = rtp_seq(packet).ok_or(SrtpError::Malformed)?;
    let state = if is_video { &mut session.video } else { &mut session.audio };
    let (roc, index) = state.estimate(seq)?;
    let payload = session.aead.unprotect(roc, packet)?;
    state.accept(index);
    // A write error here would be a full disk; counted as a drop rather than ending the run.
    session.file.write_all(payload).map_err(|_| SrtpError::Malformed)?;
    Ok(payload.len())
}

/// The thread's running totals, published to the shared atomics once per batch.
#[derive(Default)]
struct LocalCounters {
    packets: u64,
    bytes: u64,
    payload_bytes: u64,
    auth_failures: u64,
    dropped: u64,
    batches: u64,
}

impl LocalCounters {
    fn publish(&self, to: &Counters) {
        to.packets.store(self.packets, Ordering::Relaxed);
        to.bytes.store(self.bytes, Ordering::Relaxed);
        to.payload_bytes.store(self.payload_bytes, Ordering::Relaxed);
        to.auth_failures.store(self.auth_failures, Ordering::Relaxed);
        to.dropped.store(self.dropped, Ordering::Relaxed);
        to.batches.store(self.batches, Ordering::Relaxed);
    }
}

/// Buffers for one `recvmmsg(2)` call of up to [`BATCH`] datagrams, built once per
/// receiver thread and reused (no allocation per batch).
struct RecvBatch {
    /// Datagram buffers; heap storage that never moves or resizes after `new`.
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    /// One iovec per buffer, pointing into `bufs`; never resized after `new`.
    iovs: Vec<libc::iovec>,
    /// One header per iovec; the kernel fills in `msg_len` and `msg_hdr.msg_flags`.
    msgs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    fn new() -> Self {
        let mut bufs = vec![[0u8; MAX_DATAGRAM]; BATCH];
        let mut iovs: Vec<libc::iovec> =
            bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: MAX_DATAGRAM }).collect();
        // SAFETY: mmsghdr is a plain C struct for which all-zero bytes are a valid value
        // (null name/control pointers, zero lengths).
        let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
        for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        RecvBatch { bufs, iovs, msgs }
    }

    /// Block (up to the socket's read timeout) for one datagram, then take whatever else
    /// is already queued, up to [`BATCH`]. Returns how many were received.
    fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        debug_assert_eq!(self.iovs.len(), BATCH);
        // SAFETY: `msgs` holds BATCH headers, each pointing at one iovec in `iovs` that
        // describes a live MAX_DATAGRAM-byte buffer in `bufs`; all three vectors are owned
        // by `self`, never resized, and outlive the call.
        // MSG_WAITFORONE: block for the first datagram only (SO_RCVTIMEO bounds the wait).
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Datagram `i` of the last batch (`None` if the kernel truncated it).
    fn datagram(&mut self, i: usize) -> Option<&mut [u8]> {
        let m = self.msgs.get(i)?;
        if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let len = (m.msg_len as usize).min(MAX_DATAGRAM);
        Some(&mut self.bufs.get_mut(i)?[..len])
    }
}

/// Ask for a bigger socket receive buffer (best effort; the kernel caps it at rmem_max).
fn set_recv_buffer(socket: &UdpSocket, bytes: usize) {
    let val = bytes as libc::c_int;
    // SAFETY: SO_RCVBUF takes a c_int; we pass a pointer to one and its exact size.
    let _ = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// CPU time (user + system) consumed so far by a running thread, in ms (0 if unavailable).
fn thread_cpu_ms<T>(thread: &JoinHandle<T>) -> f64 {
    let mut clock: libc::clockid_t = 0;
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: the pthread_t comes from a JoinHandle that is not yet joined, so the thread
    // (and its CPU-time clock) still exists; both out-pointers are valid locals.
    let ok = unsafe {
        libc::pthread_getcpuclockid(thread.as_pthread_t(), &mut clock) == 0 && libc::clock_gettime(clock, &mut ts) == 0
    };
    if !ok {
        return 0.0;
    }
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}
