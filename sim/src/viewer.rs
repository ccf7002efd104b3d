//! One simulated live viewer of a storage session (`JoinStorageSessionAsViewer`, issue 16):
//! a receive-only str0m peer that watches a channel's master through reel's storage session.
//!
//! The flow is the KVS JS SDK's storage-viewer example: ConnectAsViewer on the `WSS`
//! endpoint with a ClientId, JoinStorageSessionAsViewer on the `WEBRTC` endpoint, then
//! *answer* the SDP offer the storage session sends (it comes with no `senderClientId`,
//! like the offer a storage master gets), trickle the host candidate, and receive the
//! master's H.264 and Opus.
//!
//! Every frame str0m hands up ([`str0m::Event::MediaData`]) is recorded in [`ViewerStats`]
//! with its RTP time and the arrival of its last packet, so that `reel-load` can pair it
//! with the publisher's send instant (see [`crate::load::viewers`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use str0m::change::SdpOffer;
use str0m::media::{MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcError};

use crate::kvs::{ApiError, KvsClient};
use crate::publisher::{StorageChannel, unix_us};
use crate::signaling::{MasterConnection, SignalingError, SignalingEvent};

/// How long ICE + DTLS may take after the SDP exchange.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait for the storage session's offer after JoinStorageSessionAsViewer (the
/// master may not have joined yet: the viewer then waits for it).
pub const DEFAULT_OFFER_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest idle wait of the run loop.
const MAX_IDLE_WAIT: Duration = Duration::from_millis(100);
/// Largest UDP datagram read.
const RECV_BUF: usize = 2_048;

/// Why a viewer stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ViewerError {
    /// Socket failure.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The storage session's offer was unusable.
    #[error("SDP: {0}")]
    Sdp(String),
    /// str0m failed.
    #[error("rtc: {0}")]
    Rtc(#[from] RtcError),
    /// ICE/DTLS did not connect in time.
    #[error("ICE/DTLS not connected within {0:?}")]
    ConnectTimeout(Duration),
    /// The connection died after connecting (ICE disconnected, DTLS closed).
    #[error("connection lost after {0:?}")]
    Disconnected(Duration),
    /// The signaling connection closed while watching.
    #[error("signaling connection lost while watching")]
    SignalingLost,
    /// A signaling failure.
    #[error(transparent)]
    Signaling(#[from] SignalingError),
    /// A KVS API call failed.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl ViewerError {
    /// A short, stable category for tallying failures (`connect_timeout`, `api:Code`, …).
    pub fn kind(&self) -> String {
        match self {
            ViewerError::Io(_) => "io".into(),
            ViewerError::Sdp(_) => "sdp".into(),
            ViewerError::Rtc(_) => "rtc".into(),
            ViewerError::ConnectTimeout(_) => "connect_timeout".into(),
            ViewerError::Disconnected(_) => "disconnected".into(),
            ViewerError::SignalingLost => "signaling_lost".into(),
            ViewerError::Signaling(SignalingError::NoOffer(_)) => "no_offer".into(),
            ViewerError::Signaling(_) => "signaling".into(),
            ViewerError::Api(e) => format!("api:{}", e.code().unwrap_or("transport")),
        }
    }
}

/// Which track a received frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Track {
    /// H.264 access units (90 kHz RTP clock).
    Video,
    /// Opus packets (48 kHz RTP clock).
    Audio,
}

/// One frame as the viewer's str0m delivered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FrameReceived {
    /// Video or audio.
    pub track: Track,
    /// Its RTP time in the track's clock, as the 32-bit wire value (what the storage
    /// session wrote: the master's RTP time, see [`crate::load::viewers`]).
    pub rtp: u32,
    /// An IDR access unit (video).
    pub keyframe: bool,
    /// When its last packet arrived, µs since the Unix epoch (the publisher's clock).
    pub arrival_unix_us: i64,
}

/// Milestones of a viewer, each µs since the Unix epoch, set once.
#[derive(Debug, Default)]
pub struct ViewerMilestones {
    /// ConnectAsViewer opened.
    pub ws_open: OnceLock<i64>,
    /// JoinStorageSessionAsViewer answered 200.
    pub join_ok: OnceLock<i64>,
    /// The storage session's offer arrived.
    pub offer: OnceLock<i64>,
    /// ICE + DTLS connected.
    pub connected: OnceLock<i64>,
    /// First video frame received.
    pub first_video: OnceLock<i64>,
    /// Watching stopped.
    pub ended: OnceLock<i64>,
}

/// Live counters of one viewer (shared; readable while it runs).
#[derive(Debug, Default)]
pub struct ViewerStats {
    /// UDP datagrams sent (str0m transmit outputs: STUN, DTLS, SRTCP feedback).
    pub packets_sent: AtomicU64,
    /// UDP datagrams received.
    pub packets_received: AtomicU64,
    /// Bytes of those datagrams.
    pub bytes_received: AtomicU64,
    /// Milestones.
    pub times: ViewerMilestones,
    /// Every frame received, in arrival order.
    pub frames: Mutex<Vec<FrameReceived>>,
    /// Why it failed, once it has.
    pub failure: Mutex<Option<String>>,
    /// [`ViewerError::kind`] of the failure.
    pub failure_kind: Mutex<Option<String>>,
}

impl ViewerStats {
    /// A fresh, shareable set of counters.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records the failure (first one wins) and returns the error.
    pub fn fail(&self, e: ViewerError) -> ViewerError {
        crate::publisher::record_first_failure(&self.failure, &self.failure_kind, || (e.to_string(), e.kind()));
        e
    }

    /// Connected or failed (no longer starting up).
    pub fn settled(&self) -> bool {
        self.times.connected.get().is_some() || self.failure_kind().is_some()
    }

    /// Connected and not failed.
    pub fn active(&self) -> bool {
        self.times.connected.get().is_some() && self.failure_kind().is_none()
    }

    /// The failure's kind, if it failed.
    pub fn failure_kind(&self) -> Option<String> {
        self.failure_kind.lock().ok().and_then(|k| k.clone())
    }

    /// A copy of the received frames.
    pub fn frames(&self) -> Vec<FrameReceived> {
        self.frames.lock().map(|f| f.clone()).unwrap_or_default()
    }

    fn mark(slot: &OnceLock<i64>) {
        let _ = slot.set(unix_us());
    }
}

/// Settings of one viewer.
#[derive(Debug, Clone)]
pub struct ViewerConfig {
    /// Address to bind the UDP socket to (its host candidate).
    pub bind_ip: IpAddr,
    /// Its signaling ClientId (unique per channel; a newer viewer with the same id
    /// replaces the older one).
    pub client_id: String,
    /// ICE + DTLS deadline after the SDP exchange.
    pub connect_timeout: Duration,
    /// Wait for the storage session's offer after the join.
    pub offer_timeout: Duration,
    /// Connect and join on the client's own endpoint instead of the endpoints
    /// GetSignalingChannelEndpoint names (a client that does not follow them, e.g. one
    /// configured with a load balancer's URL).
    pub direct: bool,
}

impl ViewerConfig {
    /// Defaults: [`DEFAULT_CONNECT_TIMEOUT`], [`DEFAULT_OFFER_TIMEOUT`].
    pub fn new(bind_ip: IpAddr, client_id: &str) -> Self {
        Self {
            bind_ip,
            client_id: client_id.to_string(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            offer_timeout: DEFAULT_OFFER_TIMEOUT,
            direct: false,
        }
    }
}

/// Watches `channel`'s storage session live until `until`: GetSignalingChannelEndpoint as
/// VIEWER, ConnectAsViewer, JoinStorageSessionAsViewer, answer, trickle, receive. Reaching
/// `until` is success; milestones, frames and the failure reason land in `stats`.
///
/// The viewer asks for its own endpoints as the KVS JS SDK's storage viewer does: in a reel
/// cluster they name the node that runs the channel's storage session.
pub async fn watch_storage_session(
    client: &KvsClient,
    channel: &StorageChannel,
    cfg: ViewerConfig,
    stats: Arc<ViewerStats>,
    until: Instant,
) -> Result<(), ViewerError> {
    let r = watch(client, channel, &cfg, &stats, until).await;
    ViewerStats::mark(&stats.times.ended);
    r.map_err(|e| {
        tracing::debug!(client_id = %cfg.client_id, error = %e, "viewer failed");
        stats.fail(e)
    })
}

async fn watch(
    client: &KvsClient,
    channel: &StorageChannel,
    cfg: &ViewerConfig,
    stats: &ViewerStats,
    until: Instant,
) -> Result<(), ViewerError> {
    let mut endpoints = client.viewer_endpoints(&channel.channel_arn).await?;
    if cfg.direct {
        endpoints.wss = client.endpoint.replacen("http", "ws", 1);
        endpoints.webrtc.clone_from(&client.endpoint);
    }
    let mut conn =
        MasterConnection::connect_as_viewer(&client.signer, &endpoints.wss, &channel.channel_arn, &cfg.client_id)
            .await?;
    ViewerStats::mark(&stats.times.ws_open);
    client.join_storage_session_as_viewer(&endpoints.webrtc, &channel.channel_arn, &cfg.client_id).await?;
    ViewerStats::mark(&stats.times.join_ok);
    let (offer, _sender) = conn.next_offer(cfg.offer_timeout).await?;
    ViewerStats::mark(&stats.times.offer);
    let socket = tokio::net::UdpSocket::bind(SocketAddr::new(cfg.bind_ip, 0)).await?;
    let local = socket.local_addr()?;
    let mut rtc = Rtc::builder().clear_codecs().enable_h264(true).enable_opus(true, false).build(Instant::now());
    let candidate = Candidate::host(local, "udp").map_err(|e| ViewerError::Sdp(e.to_string()))?;
    rtc.add_local_candidate(candidate.clone());
    let offer = SdpOffer::from_sdp_string(&offer).map_err(|e| ViewerError::Sdp(e.to_string()))?;
    let answer = rtc.sdp_api().accept_offer(offer)?;
    // The storage session's offer has no sender: the answer and candidate go back without
    // a recipient, as the KVS JS SDK's storage viewer sends them.
    conn.send_answer(&answer.to_sdp_string(), None).await?;
    conn.send_candidate(&candidate.to_sdp_string(), None).await?;
    let result = receive(&mut rtc, &socket, local, &mut conn, cfg, stats, until).await;
    rtc.disconnect();
    conn.close().await;
    result
}

/// Maps str0m's receive instants to the Unix clock the publisher records sends in.
#[derive(Debug, Clone, Copy)]
struct Clock {
    at: Instant,
    unix_us: i64,
}

impl Clock {
    fn now() -> Self {
        Self { at: Instant::now(), unix_us: unix_us() }
    }

    fn unix_us(&self, t: Instant) -> i64 {
        match t.checked_duration_since(self.at) {
            Some(d) => self.unix_us + d.as_micros() as i64,
            None => self.unix_us - self.at.duration_since(t).as_micros() as i64,
        }
    }
}

/// The receive loop: ICE/DTLS, then frames until `until`.
async fn receive(
    rtc: &mut Rtc,
    socket: &tokio::net::UdpSocket,
    local: SocketAddr,
    conn: &mut MasterConnection,
    cfg: &ViewerConfig,
    stats: &ViewerStats,
    until: Instant,
) -> Result<(), ViewerError> {
    let clock = Clock::now();
    let connect_deadline = Instant::now() + cfg.connect_timeout;
    let (mut video, mut audio): (Option<Mid>, Option<Mid>) = (None, None);
    let mut connected_at: Option<Instant> = None;
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let rtc_timeout = loop {
            match rtc.poll_output()? {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    // A refused datagram is lost like on a network.
                    if socket.send_to(&t.contents, t.destination).await.is_ok() {
                        stats.packets_sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Output::Event(ev) => match ev {
                    Event::Connected if connected_at.is_none() => {
                        connected_at = Some(Instant::now());
                        ViewerStats::mark(&stats.times.connected);
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        if let Some(t) = connected_at {
                            return Err(ViewerError::Disconnected(t.elapsed()));
                        }
                    }
                    Event::MediaAdded(m) => match m.kind {
                        MediaKind::Video => video = Some(m.mid),
                        MediaKind::Audio => audio = Some(m.mid),
                    },
                    Event::MediaData(d) => {
                        let track = if Some(d.mid) == video {
                            Track::Video
                        } else if Some(d.mid) == audio {
                            Track::Audio
                        } else {
                            continue;
                        };
                        if track == Track::Video && stats.times.first_video.get().is_none() {
                            ViewerStats::mark(&stats.times.first_video);
                        }
                        let frame = FrameReceived {
                            track,
                            // The wire value: the low 32 bits of str0m's extended RTP time.
                            rtp: d.time.numer() as u32,
                            keyframe: d.is_keyframe(),
                            arrival_unix_us: clock.unix_us(d.network_time),
                        };
                        if let Ok(mut f) = stats.frames.lock() {
                            f.push(frame);
                        }
                    }
                    _ => {}
                },
            }
        };
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        if !rtc.is_alive() {
            return Err(match connected_at {
                Some(t) => ViewerError::Disconnected(t.elapsed()),
                None => ViewerError::ConnectTimeout(cfg.connect_timeout),
            });
        }
        if connected_at.is_none() && now >= connect_deadline {
            return Err(ViewerError::ConnectTimeout(cfg.connect_timeout));
        }
        let mut wake = rtc_timeout.min(until).min(now + MAX_IDLE_WAIT);
        if connected_at.is_none() {
            wake = wake.min(connect_deadline);
        }
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, source) = r?;
                stats.packets_received.fetch_add(1, Ordering::Relaxed);
                stats.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                if let Ok(contents) = buf[..n].try_into() {
                    let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents });
                    // A datagram str0m rejects (stray, late) is not fatal.
                    let _ = rtc.handle_input(input);
                }
            }
            ev = conn.next_event() => match ev {
                Ok(SignalingEvent::Candidate { candidate, .. }) => {
                    if let Ok(c) = Candidate::from_sdp_string(candidate.trim().trim_start_matches("a=")) {
                        rtc.add_remote_candidate(c);
                    }
                }
                Ok(_) => {}
                // reel ends a viewer session with its signaling connection.
                Err(SignalingError::Closed) => return Err(ViewerError::SignalingLost),
                Err(e) => return Err(e.into()),
            },
            () = tokio::time::sleep_until(wake.into()) => {
                rtc.handle_input(Input::Timeout(Instant::now()))?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_maps_instants_both_ways() {
        let c = Clock { at: Instant::now(), unix_us: 1_000_000_000 };
        assert_eq!(c.unix_us(c.at + Duration::from_millis(5)), 1_000_005_000);
        assert_eq!(c.unix_us(c.at - Duration::from_millis(5)), 999_995_000);
    }

    #[test]
    fn failure_kinds_are_stable_and_the_first_wins() {
        let s = ViewerStats::new();
        s.fail(ViewerError::ConnectTimeout(Duration::from_secs(1)));
        s.fail(ViewerError::SignalingLost);
        assert_eq!(s.failure_kind().as_deref(), Some("connect_timeout"));
        assert!(s.settled() && !s.active());
    }
}
