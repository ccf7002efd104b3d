//! The storage media peer: `JoinStorageSession` → a server-side WebRTC peer (str0m) that
//! receives the master's H.264 + Opus and writes MKV fragments into the mapped stream.
//!
//! - [`join_storage_session`]: the API operation (checks, then starts a session).
//! - [`session`]: one session's signaling with the master (offer, answer, candidates).
//! - [`hub`]: the sans-IO core: every session's `Rtc`, demux and deadlines, time passed in.
//! - [`io`]: the tokio driver of the hub: one UDP socket, one task.
//! - [`ingest`]: str0m frames → fragmenter → the per-session store writer task.
//! - [`sdp`]: offer touch-ups and answer validation (sans-IO).

pub mod ingest;
pub mod hub;
pub mod io;
pub mod join_storage_session;
pub mod sdp;
pub mod session;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
pub mod testkit;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::post;
use tokio::sync::{mpsc, oneshot};

use crate::config::WebRtcSettings;
use crate::limits::StorageSessionLimits;
use crate::state::AppState;

/// Signed routes (`POST /joinStorageSession`).
pub fn router() -> Router<AppState> {
    Router::new().route("/joinStorageSession", post(join_storage_session::handle))
}

/// Handle to the running media peer: its I/O loop and the settings new sessions use.
#[derive(Clone, Debug)]
pub struct Peers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    io: mpsc::Sender<io::Command>,
    settings: session::SessionSettings,
    next_id: AtomicU64,
}

impl std::fmt::Debug for io::Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl Peers {
    /// Binds the shared UDP socket and starts the I/O loop (inside a tokio runtime).
    pub fn start(
        webrtc: &WebRtcSettings,
        limits: &StorageSessionLimits,
        fallback_ip: Option<IpAddr>,
    ) -> std::io::Result<Self> {
        let std_socket = std::net::UdpSocket::bind(webrtc.listen)?;
        std_socket.set_nonblocking(true)?;
        let socket = tokio::net::UdpSocket::from_std(std_socket)?;
        let local = socket.local_addr()?;
        let ip = webrtc
            .public_ip
            .or_else(|| (!local.ip().is_unspecified()).then_some(local.ip()))
            .or(fallback_ip.filter(|ip| !ip.is_unspecified()))
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let candidate = SocketAddr::new(ip, local.port());
        tracing::info!(%local, %candidate, "webrtc media socket bound");
        let io = io::spawn(socket, limits.clone())?;
        Ok(Self {
            inner: Arc::new(Inner {
                io,
                settings: session::SessionSettings {
                    candidate,
                    log_sdp: webrtc.log_sdp,
                    bitrate_bps: limits.bitrate_bps,
                },
                next_id: AtomicU64::new(1),
            }),
        })
    }

    /// The host candidate sessions advertise.
    pub fn candidate(&self) -> SocketAddr {
        self.inner.settings.candidate
    }

    /// Starts a session on an attached storage peer; it supersedes the channel's previous one.
    pub fn start_session(
        &self,
        handle: crate::signaling::registry::StoragePeerHandle,
        stream: reel_storage::Stream,
    ) -> u64 {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(session::run(id, handle, stream, self.inner.settings.clone(), self.inner.io.clone()));
        id
    }

    /// Ends every session, flushing open fragments to the store.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.io.send(io::Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}
