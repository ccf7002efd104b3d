//! The storage media peer: `JoinStorageSession` → a server-side WebRTC peer (str0m) that
//! receives the master's H.264 + Opus and writes MKV fragments into the mapped stream.
//!
//! - [`join_storage_session`]: the API operation (checks, then starts a session).
//! - [`handoff`]: cluster mode: a channel's storage session and viewer sessions run on one
//!   node, whichever node gets the calls.
//! - [`session`]: one session's signaling with the master (offer, answer, candidates).
//! - [`hub`]: the sans-IO core: every session's `Rtc`, demux and deadlines, time passed in.
//! - [`io`]: the driver of a hub: one UDP socket, one thread with its own runtime.
//! - [`ingest`]: str0m frames → fragmenter → the per-session store writer task.
//! - [`sdp`]: offer touch-ups and answer validation (sans-IO).
//! - [`join_storage_session_as_viewer`]: the viewer API operation (checks, the viewer cap,
//!   then starts a viewer session on the channel's worker).
//! - [`viewer_session`]: one viewer session's signaling (offer, answer, candidates).
//! - [`fanout`]: forwarding the master's media to viewers and their requests back.
//! - [`viewer_quota`]: the per-channel viewer cap and its one-minute hold.
//! - `harness` (tests, feature `testkit`): the hub with in-memory str0m masters on fake time;
//!   `harness_viewer`: in-memory str0m viewers on the same harness.

pub mod fanout;
pub mod handoff;
#[cfg(any(test, feature = "testkit"))]
pub mod harness;
#[cfg(any(test, feature = "testkit"))]
pub mod harness_viewer;
pub mod hub;
pub mod ingest;
pub mod io;
pub mod join_storage_session;
pub mod join_storage_session_as_viewer;
pub mod lease_keeper;
pub mod list_storage_sessions;
pub mod media_rx;
pub mod recv;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod scenarios_drift;
#[cfg(test)]
mod scenarios_receive;
#[cfg(test)]
mod scenarios_viewers;
pub mod sdp;
pub mod send;
pub mod session;
pub mod viewer_quota;
pub mod viewer_session;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::FromRef;
use axum::routing::post;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::api::Core;
use crate::config::WebRtcSettings;
use crate::limits::StorageSessionLimits;
use crate::signaling::Signaling;

/// Signed routes (`POST /joinStorageSession`, `POST /joinStorageSessionAsViewer`; reel's own
/// `POST /listStorageSessions`).
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Core: FromRef<S>,
    Signaling: FromRef<S>,
    Peers: FromRef<S>,
{
    Router::new()
        .route("/joinStorageSession", post(join_storage_session::handle))
        .route("/joinStorageSessionAsViewer", post(join_storage_session_as_viewer::handle))
        .route("/listStorageSessions", post(list_storage_sessions::handle))
}

/// Handle to the running media peer: its I/O workers and the settings new sessions use.
#[derive(Clone, Debug)]
pub struct Peers {
    inner: Arc<Inner>,
}

/// One media worker: a UDP socket with its own thread, runtime and hub.
#[derive(Debug)]
struct Worker {
    io: mpsc::Sender<io::Command>,
    candidate: SocketAddr,
}

#[derive(Debug)]
struct Inner {
    workers: Vec<Worker>,
    settings: session::SessionSettings,
    next_id: AtomicU64,
    next_worker: AtomicUsize,
    /// The worker of each channel with a session or viewers: all of a channel's peers run
    /// on one worker, so forwarding to viewers never crosses threads.
    affinity: Mutex<HashMap<String, usize>>,
    /// The per-channel viewer cap.
    viewer_quota: Arc<Mutex<viewer_quota::ViewerQuota>>,
}

impl std::fmt::Debug for io::Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

/// Binds one non-blocking media socket with a receive buffer of (up to) `recv_buffer` bytes.
fn bind_media_socket(listen: SocketAddr, recv_buffer: usize) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(listen), Type::DGRAM, Some(Protocol::UDP))?;
    if recv_buffer > 0 {
        // Capped by net.core.rmem_max; the forced variant lifts the cap where permitted.
        let _ = socket.set_recv_buffer_size(recv_buffer);
        let forced = i32::try_from(recv_buffer).unwrap_or(i32::MAX) as usize;
        let _ = nix::sys::socket::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            nix::sys::socket::sockopt::RcvBufForce,
            &forced,
        );
        let got = socket.recv_buffer_size().unwrap_or(0);
        // Linux reports twice the requested size (bookkeeping overhead included).
        if got < recv_buffer {
            tracing::warn!(
                requested = recv_buffer,
                granted = got,
                "media socket receive buffer is smaller than asked; raise net.core.rmem_max"
            );
        }
    }
    socket.bind(&listen.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

impl Peers {
    /// Binds the workers' UDP sockets and starts their I/O loops (inside a tokio runtime).
    ///
    /// Worker k binds the `--webrtc-listen` port + k (any free port when that port is 0).
    pub fn start(
        webrtc: &WebRtcSettings,
        limits: &StorageSessionLimits,
        fallback_ip: Option<IpAddr>,
    ) -> std::io::Result<Self> {
        let mut workers = Vec::new();
        for k in 0..webrtc.workers.max(1) {
            let mut listen = webrtc.listen;
            if listen.port() != 0 {
                let port = u16::try_from(usize::from(listen.port()) + k)
                    .map_err(|_| std::io::Error::other("--webrtc-listen port + workers exceeds 65535"))?;
                listen.set_port(port);
            }
            let socket = bind_media_socket(listen, limits.recv_buffer_bytes)?;
            let local = socket.local_addr()?;
            let ip = webrtc
                .public_ip
                .or_else(|| (!local.ip().is_unspecified()).then_some(local.ip()))
                .or(fallback_ip.filter(|ip| !ip.is_unspecified()))
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            let candidate = SocketAddr::new(ip, local.port());
            tracing::info!(worker = k, %local, %candidate, "webrtc media socket bound");
            let io = io::spawn(k, socket, limits.clone())?;
            workers.push(Worker { io, candidate });
        }
        let candidate = workers.first().map(|w| w.candidate).unwrap_or(webrtc.listen);
        Ok(Self {
            inner: Arc::new(Inner {
                workers,
                settings: session::SessionSettings {
                    candidate,
                    log_sdp: webrtc.log_sdp,
                    bitrate_bps: limits.bitrate_bps,
                },
                next_id: AtomicU64::new(1),
                next_worker: AtomicUsize::new(0),
                affinity: Mutex::new(HashMap::new()),
                viewer_quota: Arc::new(Mutex::new(viewer_quota::ViewerQuota::new(
                    limits.max_viewers,
                    Duration::from_secs(limits.viewer_quota_hold_secs),
                ))),
            }),
        })
    }

    /// The host candidate of the first worker.
    pub fn candidate(&self) -> SocketAddr {
        self.inner.settings.candidate
    }

    /// The host candidates of all workers.
    pub fn candidates(&self) -> Vec<SocketAddr> {
        self.inner.workers.iter().map(|w| w.candidate).collect()
    }

    /// The worker for a new peer of `channel`: the channel's worker while it has viewers
    /// (or, for a viewer, whenever it has one), else the next one round-robin.
    fn worker_for(&self, channel: &str, viewer: bool) -> Option<&Worker> {
        let live_viewers = viewer || lock(&self.inner.viewer_quota).has_live(channel);
        let mut affinity = lock(&self.inner.affinity);
        let pinned = affinity.get(channel).copied().filter(|_| live_viewers);
        let k = pinned.unwrap_or_else(|| {
            self.inner.next_worker.fetch_add(1, Ordering::Relaxed) % self.inner.workers.len().max(1)
        });
        affinity.insert(channel.to_string(), k);
        self.inner.workers.get(k)
    }

    /// Starts a session on an attached storage peer (on the channel's worker if it has
    /// viewers, else the next worker, round-robin); it supersedes the channel's previous
    /// one. With `lease`, the session ends when the stream's writer lease is lost, and
    /// releases it when it ends.
    pub fn start_session(
        &self,
        handle: crate::signaling::registry::StoragePeerHandle,
        stream: reel_storage::Stream,
        lease: Option<lease_keeper::LeaseKeeper>,
    ) -> u64 {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let Some(worker) = self.worker_for(handle.channel_arn(), false) else { return id };
        let settings = session::SessionSettings { candidate: worker.candidate, ..self.inner.settings.clone() };
        tokio::spawn(session::run(id, handle, stream, settings, worker.io.clone(), lease));
        id
    }

    /// Takes a viewer seat of `channel` for `client_id` (see [`viewer_quota`]); returns the
    /// id of the viewer session to start with [`Peers::start_viewer`].
    pub fn take_viewer_seat(&self, channel: &str, client_id: &str) -> Result<u64, viewer_quota::ViewersFull> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.viewer_quota).take(channel, client_id, id, Instant::now())?;
        Ok(id)
    }

    /// Starts viewer session `id` (its seat taken) on an attached viewer, on the channel's
    /// worker; its seat is released (held for the rejoin window) when it ends.
    pub fn start_viewer(&self, id: u64, handle: crate::signaling::registry::StorageViewerHandle) {
        let channel = handle.channel_arn().to_string();
        let client_id = handle.client_id().to_string();
        let Some(worker) = self.worker_for(&channel, true) else {
            lock(&self.inner.viewer_quota).release(&channel, &client_id, id, Instant::now());
            return;
        };
        let settings = session::SessionSettings { candidate: worker.candidate, ..self.inner.settings.clone() };
        let io = worker.io.clone();
        let quota = self.inner.viewer_quota.clone();
        let span = tracing::info_span!("viewer_session", viewer = id, channel = %channel, client_id = %client_id);
        tokio::spawn(
            async move {
                viewer_session::run(id, handle, settings, io).await;
                lock(&quota).release(&channel, &client_id, id, Instant::now());
            }
            .instrument(span),
        );
    }

    /// The live sessions of every worker, oldest first.
    pub async fn summaries(&self) -> Vec<hub::SessionSummary> {
        let mut out = Vec::new();
        for w in &self.inner.workers {
            let (tx, rx) = oneshot::channel();
            if w.io.send(io::Command::Summaries(tx)).await.is_ok()
                && let Ok(mut list) = rx.await
            {
                out.append(&mut list);
            }
        }
        out.sort_by_key(|s| (s.started_unix_ms, s.id));
        out
    }

    /// Ends every session, flushing open fragments to the store.
    pub async fn shutdown(&self) {
        let mut acks = Vec::new();
        for w in &self.inner.workers {
            let (tx, rx) = oneshot::channel();
            if w.io.send(io::Command::Shutdown(tx)).await.is_ok() {
                acks.push(rx);
            }
        }
        for ack in acks {
            let _ = ack.await;
        }
    }
}

/// Locks `m`; a panic elsewhere while holding it leaves plain maps, still usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn workers_get_their_own_sockets() {
        let webrtc = WebRtcSettings {
            listen: "127.0.0.1:0".parse().expect("addr"),
            public_ip: None,
            log_sdp: false,
            workers: 3,
        };
        let peers = Peers::start(&webrtc, &StorageSessionLimits::default(), None).expect("peers");
        let mut ports: Vec<u16> = peers.candidates().iter().map(SocketAddr::port).collect();
        assert!(peers.candidates().iter().all(|c| c.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST)));
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|&p| p != 0));
        assert_eq!(peers.candidate(), peers.candidates()[0]);
        peers.shutdown().await;
    }
}
