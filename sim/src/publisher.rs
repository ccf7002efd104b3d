//! One simulated camera: a str0m peer publishing the embedded H.264 + Opus clip in real time
//! (looped, padded to a target bitrate; see [`source`]).
//!
//! Two ways to drive it:
//! - **KVS storage master** ([`publish_to_storage`], or [`run_camera`] which also creates the
//!   channel and stream): ConnectAsMaster, JoinStorageSession, *answer* the storage peer's
//!   offer, trickle the host candidate, publish.
//! - **Offerer** (recorders such as Janus VideoRoom): [`Publisher::create_offer`], hand the
//!   SDP to the recorder, [`Publisher::accept_answer`], then [`Publisher::run`].
//!
//! Every publisher counts what it does in a shared [`PublisherStats`] (packets/bytes sent as
//! str0m's transmit outputs, frames written per track with their send instants, connect
//! time, failure reason), readable while it runs.
//!
//! A [`SenderProfile`] (see [`profile`]) makes it misbehave like real masters: drifting
//! send rates, RTCP sender reports that follow the wall clock, NTP steps, muted tracks.

pub mod engine;
pub mod pacing;
pub mod peer;
pub mod profile;
pub mod source;
pub mod udp;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc, RtcError};

use crate::kvs::{ApiError, ChannelEndpoints, KvsClient};
use crate::signaling::{MasterConnection, SignalingError, SignalingEvent};
use crate::sigv4::Signer;
use peer::PeerCore;
pub use profile::{MuteWindow, ProfileError, SenderProfile, SrJump};
pub use source::{DEFAULT_BITRATE_BPS, MediaSource, SourceError};
use udp::PeerSocket;

/// How long ICE + DTLS may take after the SDP exchange.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait for the storage peer's offer after JoinStorageSession.
pub const DEFAULT_OFFER_TIMEOUT: Duration = Duration::from_secs(15);
/// Retention of streams [`run_camera`] creates (hours).
pub const DEFAULT_RETENTION_HOURS: u32 = 24;

/// Why a publisher stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    /// Socket failure.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The embedded media is unusable.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The remote SDP was rejected.
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
    /// The signaling connection closed while publishing.
    #[error("signaling connection lost while publishing")]
    SignalingLost,
    /// The answer accepted no H.264 or no Opus.
    #[error("the negotiated session has no {0} sender")]
    MissingMedia(&'static str),
    /// A signaling failure.
    #[error(transparent)]
    Signaling(#[from] SignalingError),
    /// A KVS API call failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A baseline recorder (Janus) refused or failed the publish.
    #[error("recorder: {0}")]
    Recorder(String),
    /// The peer is gone: a cancelled run took it, or its engine thread stopped.
    #[error("the peer is gone (a cancelled run or a stopped engine thread)")]
    PeerGone,
}

impl PublisherError {
    /// A short, stable category for tallying failures (`connect_timeout`, `api:Code`, …).
    pub fn kind(&self) -> String {
        match self {
            PublisherError::Io(_) => "io".into(),
            PublisherError::Source(_) => "source".into(),
            PublisherError::Sdp(_) => "sdp".into(),
            PublisherError::Rtc(_) => "rtc".into(),
            PublisherError::ConnectTimeout(_) => "connect_timeout".into(),
            PublisherError::Disconnected(_) => "disconnected".into(),
            PublisherError::SignalingLost => "signaling_lost".into(),
            PublisherError::MissingMedia(m) => format!("missing_{m}"),
            PublisherError::Signaling(SignalingError::NoOffer(_)) => "no_offer".into(),
            PublisherError::Signaling(_) => "signaling".into(),
            PublisherError::Api(e) => format!("api:{}", e.code().unwrap_or("transport")),
            PublisherError::Recorder(_) => "recorder".into(),
            PublisherError::PeerGone => "peer_gone".into(),
        }
    }
}

/// Settings of one publisher.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Address to bind the UDP socket to (its host candidate).
    pub bind_ip: IpAddr,
    /// The media to loop (share one across publishers).
    pub source: Arc<MediaSource>,
    /// Send no media at all after connecting (idle-session tests).
    pub send_media: bool,
    /// Record every video frame's send instant, not only keyframes.
    pub record_all_frames: bool,
    /// ICE + DTLS deadline after the SDP exchange.
    pub connect_timeout: Duration,
    /// Wait for the storage peer's offer after JoinStorageSession.
    pub offer_timeout: Duration,
    /// Clock behaviour (drift, SR mapping, mutes); default: a perfect sender.
    pub profile: SenderProfile,
    /// Record every Opus packet's send instant in [`PublisherStats::audio_sends`] (grows by
    /// 50 entries a second: for bounded runs such as reel-load's).
    pub record_audio_sends: bool,
    /// Send a frame's packets with GSO (one send per run of datagrams, see
    /// [`udp::PeerSocket`]); off: one send per packet, as cameras send.
    pub gso: bool,
}

impl PublisherConfig {
    /// Defaults: media on, keyframes recorded, [`DEFAULT_CONNECT_TIMEOUT`], [`DEFAULT_OFFER_TIMEOUT`].
    pub fn new(bind_ip: IpAddr, source: Arc<MediaSource>) -> Self {
        Self {
            bind_ip,
            source,
            send_media: true,
            record_all_frames: false,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            offer_timeout: DEFAULT_OFFER_TIMEOUT,
            profile: SenderProfile::default(),
            record_audio_sends: false,
            gso: true,
        }
    }
}

/// A video frame as written to str0m.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FrameSent {
    /// Frame index since the start (0 = first IDR); muted and dropped frames count too.
    pub index: u64,
    /// Frames of the track written before this one: the n-th frame a recorder stores.
    pub seq: u64,
    /// RTP media time, 90 kHz ticks (`index * 3000`).
    pub rtp_ticks: u64,
    /// Whether it was an IDR.
    pub keyframe: bool,
    /// Wall clock when it was written, µs since the Unix epoch.
    pub sent_unix_us: i64,
}

/// Live counters of one publisher (shared; every field readable while it runs).
#[derive(Debug, Default)]
pub struct PublisherStats {
    /// UDP datagrams sent (str0m transmit outputs: STUN, DTLS, SRTP, SRTCP).
    pub packets_sent: AtomicU64,
    /// Bytes of those datagrams.
    pub bytes_sent: AtomicU64,
    /// Datagrams the socket refused (not counted as sent).
    pub send_errors: AtomicU64,
    /// Frames and packets not sent because the track had no send stream. (A starved engine
    /// thread does not drop: it sends overdue frames at once when it catches up.)
    pub frames_dropped: AtomicU64,
    /// UDP datagrams received.
    pub packets_received: AtomicU64,
    /// Video frames written.
    pub video_frames: AtomicU64,
    /// Opus packets written.
    pub audio_packets: AtomicU64,
    /// Video frames not sent because the track was muted (or waited for a keyframe after).
    pub video_frames_muted: AtomicU64,
    /// Opus packets not sent because the track was muted.
    pub audio_packets_muted: AtomicU64,
    /// Writes whose wallclock would have been ahead of the write and was clamped (their SRs
    /// follow the packets; see [`profile`]).
    pub sr_wallclock_clamped: AtomicU64,
    /// Media bytes handed to the packetizers (video Annex-B incl. filler, plus Opus).
    pub media_bytes: AtomicU64,
    /// Bytes a recorder must keep of those (video samples without SPS/PPS/AUD/filler, plus Opus).
    pub sample_bytes: AtomicU64,
    /// Keyframe requests (PLI/FIR) received.
    pub keyframe_requests: AtomicU64,
    /// SDP offers seen on the signaling channel while publishing.
    pub offers_while_running: AtomicU64,
    /// Most a media write ran behind its schedule, µs.
    pub max_lateness_us: AtomicU64,
    /// Milestones, µs since the Unix epoch.
    pub times: Milestones,
    /// Keyframes (or every frame with [`PublisherConfig::record_all_frames`]) as sent.
    pub frames: Mutex<Vec<FrameSent>>,
    /// With [`PublisherConfig::record_audio_sends`]: send instant (µs since the Unix epoch)
    /// of every Opus packet written, in order (entry n is the n-th packet written).
    pub audio_sends: Mutex<Vec<i64>>,
    /// With [`PublisherConfig::record_audio_sends`]: the RTP time (48 kHz ticks) of each
    /// entry of [`PublisherStats::audio_sends`] (live viewers pair frames by RTP time).
    pub audio_send_ticks: Mutex<Vec<u64>>,
    /// Sessions lost and started again ([`publish_with_reconnect`]).
    pub reconnects: AtomicU64,
    /// For each reconnect that got media flowing again: µs from the moment the loss was
    /// detected (ICE consent failure, a refused call) to the new session's ICE + DTLS
    /// connection.
    pub resume_gaps_us: Mutex<Vec<i64>>,
    /// Connections established (ICE + DTLS), first session and reconnects alike.
    pub connections: AtomicU64,
    /// When the session in progress was lost (µs since the Unix epoch), until the next
    /// connection turns it into a resume gap.
    lost_at_us: Mutex<Option<i64>>,
    /// Why it failed, once it has.
    pub failure: Mutex<Option<String>>,
    /// [`PublisherError::kind`] of the failure.
    pub failure_kind: Mutex<Option<String>>,
}

/// Milestones of a session, each µs since the Unix epoch, set once.
#[derive(Debug, Default)]
pub struct Milestones {
    /// ConnectAsMaster opened.
    pub ws_open: OnceLock<i64>,
    /// JoinStorageSession sent.
    pub join_sent: OnceLock<i64>,
    /// JoinStorageSession answered 200.
    pub join_ok: OnceLock<i64>,
    /// SDP offer received (or, as offerer, answer accepted).
    pub sdp_done: OnceLock<i64>,
    /// ICE + DTLS connected.
    pub connected: OnceLock<i64>,
    /// First video frame written.
    pub first_frame: OnceLock<i64>,
    /// Publishing stopped.
    pub ended: OnceLock<i64>,
}

/// Records a failure's message and kind unless one is already recorded (the first failure
/// is the cause; what follows is its fallout). Shared by publishers and viewers.
pub fn record_first_failure(
    failure: &Mutex<Option<String>>,
    failure_kind: &Mutex<Option<String>>,
    describe: impl FnOnce() -> (String, String),
) {
    if let Ok(mut f) = failure.lock()
        && f.is_none()
    {
        let (message, kind) = describe();
        *f = Some(message);
        if let Ok(mut k) = failure_kind.lock() {
            *k = Some(kind);
        }
    }
}

/// Wall clock now, µs since the Unix epoch.
pub fn unix_us() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

impl PublisherStats {
    /// A fresh, shareable set of counters.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records the failure (first one wins) and returns the error.
    pub fn fail(&self, e: PublisherError) -> PublisherError {
        record_first_failure(&self.failure, &self.failure_kind, || (e.to_string(), e.kind()));
        e
    }

    /// A plain copy of the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let t = |o: &OnceLock<i64>| o.get().copied();
        StatsSnapshot {
            packets_sent: ld(&self.packets_sent),
            bytes_sent: ld(&self.bytes_sent),
            send_errors: ld(&self.send_errors),
            frames_dropped: ld(&self.frames_dropped),
            packets_received: ld(&self.packets_received),
            video_frames: ld(&self.video_frames),
            audio_packets: ld(&self.audio_packets),
            video_frames_muted: ld(&self.video_frames_muted),
            audio_packets_muted: ld(&self.audio_packets_muted),
            sr_wallclock_clamped: ld(&self.sr_wallclock_clamped),
            media_bytes: ld(&self.media_bytes),
            sample_bytes: ld(&self.sample_bytes),
            keyframe_requests: ld(&self.keyframe_requests),
            offers_while_running: ld(&self.offers_while_running),
            max_lateness_us: ld(&self.max_lateness_us),
            reconnects: ld(&self.reconnects),
            resume_gaps_us: self.resume_gaps_us.lock().map(|g| g.clone()).unwrap_or_default(),
            ws_open_us: t(&self.times.ws_open),
            join_sent_us: t(&self.times.join_sent),
            join_ok_us: t(&self.times.join_ok),
            sdp_done_us: t(&self.times.sdp_done),
            connected_us: t(&self.times.connected),
            first_frame_us: t(&self.times.first_frame),
            ended_us: t(&self.times.ended),
            failure: self.failure.lock().ok().and_then(|f| f.clone()),
            failure_kind: self.failure_kind.lock().ok().and_then(|f| f.clone()),
        }
    }

    fn mark(slot: &OnceLock<i64>) {
        let _ = slot.set(unix_us());
    }
}

/// A copy of [`PublisherStats`] at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatsSnapshot {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub send_errors: u64,
    pub frames_dropped: u64,
    pub packets_received: u64,
    pub video_frames: u64,
    pub audio_packets: u64,
    pub video_frames_muted: u64,
    pub audio_packets_muted: u64,
    pub sr_wallclock_clamped: u64,
    pub media_bytes: u64,
    pub sample_bytes: u64,
    pub keyframe_requests: u64,
    pub offers_while_running: u64,
    pub max_lateness_us: u64,
    pub reconnects: u64,
    pub resume_gaps_us: Vec<i64>,
    pub ws_open_us: Option<i64>,
    pub join_sent_us: Option<i64>,
    pub join_ok_us: Option<i64>,
    pub sdp_done_us: Option<i64>,
    pub connected_us: Option<i64>,
    pub first_frame_us: Option<i64>,
    pub ended_us: Option<i64>,
    pub failure: Option<String>,
    pub failure_kind: Option<String>,
}

/// What the run loop hears from signaling while publishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// A trickled remote candidate (`candidate:…`).
    RemoteCandidate(String),
    /// Another SDP offer arrived (counted, otherwise ignored).
    Offer,
    /// Stop publishing now (a clean end).
    Stop,
    /// The signaling connection closed: the session is over (its storage peer is gone with
    /// the node that held it), and a master reconnects and joins again, as the KVS C SDK does.
    Lost,
}

/// A source of [`Signal`]s for [`Publisher::run`]; `None` means "no more" (not an error).
pub trait Signals {
    /// The next signal. Must be cancel-safe (it is polled inside `select!`).
    fn next_signal(&mut self) -> impl std::future::Future<Output = Option<Signal>> + Send;
}

/// No signals at all (candidates came in the SDP).
#[derive(Debug, Default)]
pub struct NoSignals;

impl Signals for NoSignals {
    async fn next_signal(&mut self) -> Option<Signal> {
        None
    }
}

impl Signals for tokio::sync::mpsc::UnboundedReceiver<Signal> {
    async fn next_signal(&mut self) -> Option<Signal> {
        self.recv().await
    }
}

impl Signals for MasterConnection {
    async fn next_signal(&mut self) -> Option<Signal> {
        loop {
            match self.next_event().await {
                Ok(SignalingEvent::Candidate { candidate, .. }) => return Some(Signal::RemoteCandidate(candidate)),
                Ok(SignalingEvent::Offer { .. }) => return Some(Signal::Offer),
                Ok(SignalingEvent::Other(_)) => {}
                Err(_) => return Some(Signal::Lost),
            }
        }
    }
}

/// How [`Publisher::run`] ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The `until` instant passed.
    Deadline,
    /// [`Signal::Stop`].
    Stopped,
}

/// One str0m peer that sends the looped media once connected.
pub struct Publisher {
    /// The peer; away on an engine thread while [`Publisher::run`] runs, and gone for good
    /// if a run was cancelled.
    core: Option<Box<PeerCore>>,
    local: SocketAddr,
    candidate: Candidate,
    stats: Arc<PublisherStats>,
    pending: Option<SdpPendingOffer>,
}

impl Publisher {
    /// Binds a UDP socket on `cfg.bind_ip` (port 0) and creates the peer with its host candidate.
    pub async fn bind(cfg: PublisherConfig, stats: Arc<PublisherStats>) -> Result<Self, PublisherError> {
        let socket = PeerSocket::bind(cfg.bind_ip, cfg.gso)?;
        let local = socket.local_addr();
        let mut rtc = Rtc::builder().clear_codecs().enable_h264(true).enable_opus(true, false).build(Instant::now());
        let candidate = Candidate::host(local, "udp").map_err(|e| PublisherError::Sdp(e.to_string()))?;
        rtc.add_local_candidate(candidate.clone());
        let core = Box::new(PeerCore::new(rtc, socket, cfg, stats.clone()));
        Ok(Self { core: Some(core), local, candidate, stats, pending: None })
    }

    /// The shared counters.
    pub fn stats(&self) -> Arc<PublisherStats> {
        self.stats.clone()
    }

    /// The host candidate as an `a=candidate` value (`candidate:…`), for trickling.
    pub fn local_candidate(&self) -> String {
        self.candidate.to_sdp_string()
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The peer, unless a cancelled run took it.
    fn core(&mut self) -> Result<&mut PeerCore, PublisherError> {
        self.core.as_deref_mut().ok_or(PublisherError::PeerGone)
    }

    /// Answer role: accepts the remote offer and returns the SDP answer.
    pub fn accept_offer(&mut self, offer: &str) -> Result<String, PublisherError> {
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| PublisherError::Sdp(e.to_string()))?;
        let answer = self.core()?.rtc.sdp_api().accept_offer(offer)?;
        StatsMark::sdp_done(&self.stats);
        Ok(answer.to_sdp_string())
    }

    /// Offer role: a sendonly H.264 + Opus offer (with the host candidate in it).
    pub fn create_offer(&mut self) -> Result<String, PublisherError> {
        let core = self.core()?;
        let mut api = core.rtc.sdp_api();
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().ok_or_else(|| PublisherError::Sdp("no changes to offer".into()))?;
        // str0m reports MediaAdded only for media the remote side adds.
        core.offered = Some((video, audio));
        self.pending = Some(pending);
        Ok(offer.to_sdp_string())
    }

    /// Offer role: accepts the remote answer to [`Publisher::create_offer`].
    pub fn accept_answer(&mut self, answer: &str) -> Result<(), PublisherError> {
        let pending = self.pending.take().ok_or_else(|| PublisherError::Sdp("no offer is pending".into()))?;
        let answer = SdpAnswer::from_sdp_string(answer).map_err(|e| PublisherError::Sdp(e.to_string()))?;
        self.core()?.rtc.sdp_api().accept_answer(pending, answer)?;
        StatsMark::sdp_done(&self.stats);
        Ok(())
    }

    /// Adds a trickled remote candidate (`candidate:…` or `a=candidate:…`); bad ones are ignored.
    pub fn add_remote_candidate(&mut self, candidate: &str) {
        if let Some(core) = self.core.as_deref_mut() {
            core.add_remote_candidate(candidate);
        }
    }

    /// Runs the peer until `until`, a [`Signal::Stop`] or an error: connects, then writes video
    /// frame `i` at `t0 + i/30 s` (RTP `i * 3000`) and Opus packet `j` at `t0 + j * 20 ms`
    /// (RTP `j * 960`) where `t0` is the moment it connected — send times divided by the
    /// profile's rates, mute windows skipped (see [`profile`]), each on the first tick of the
    /// shared pacing grid at or after its time (see [`pacing`]). Falling behind (a starved
    /// engine thread) sends the overdue frames at once. The peer runs on an engine thread
    /// (see [`engine`]); this future relays `signals` to it. Dropping the future ends the run
    /// and loses the peer. The caller records errors in the stats.
    pub async fn run<S: Signals>(&mut self, signals: &mut S, until: Instant) -> Result<RunEnd, PublisherError> {
        let result = self.run_inner(signals, until).await;
        StatsMark::ended(&self.stats);
        // The caller records a failure ([`PublisherStats::fail`]): a master that reconnects
        // does not fail when one session ends.
        result
    }

    async fn run_inner<S: Signals>(&mut self, signals: &mut S, until: Instant) -> Result<RunEnd, PublisherError> {
        let mut core = self.core.take().ok_or(PublisherError::PeerGone)?;
        core.start(until);
        let (handle, mut done) = engine::start(core)?;
        let mut signals_open = true;
        // Set when signaling ended the run; the engine's own outcome is then superseded.
        let mut lost = false;
        let (core, result) = loop {
            tokio::select! {
                finished = &mut done => break finished.map_err(|_| PublisherError::PeerGone)?,
                s = signals.next_signal(), if signals_open => match s {
                    Some(Signal::RemoteCandidate(c)) => handle.add_remote_candidate(c),
                    Some(Signal::Offer) => {
                        self.stats.offers_while_running.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Signal::Stop) => {
                        handle.stop();
                        signals_open = false;
                    }
                    Some(Signal::Lost) => {
                        handle.stop();
                        lost = true;
                        signals_open = false;
                    }
                    None => signals_open = false,
                },
            }
        };
        self.core = Some(core);
        match result {
            Ok(RunEnd::Stopped) if lost => Err(PublisherError::SignalingLost),
            other => other,
        }
    }

    /// Ends the DTLS/ICE session (the remote sees the peer leave).
    pub fn disconnect(&mut self) {
        if let Some(core) = self.core.as_deref_mut() {
            core.rtc.disconnect();
        }
    }
}

/// Milestone setters.
struct StatsMark;

impl StatsMark {
    fn sdp_done(s: &PublisherStats) {
        PublisherStats::mark(&s.times.sdp_done);
    }
    fn connected(s: &PublisherStats) {
        s.connections.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut lost) = s.lost_at_us.lock()
            && let Some(at) = lost.take()
            && let Ok(mut gaps) = s.resume_gaps_us.lock()
        {
            gaps.push(unix_us() - at);
        }
        PublisherStats::mark(&s.times.connected);
    }
    fn ended(s: &PublisherStats) {
        PublisherStats::mark(&s.times.ended);
    }
}

/// A signaling channel with media storage enabled, and its master endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageChannel {
    /// ChannelARN.
    pub channel_arn: String,
    /// StreamARN of the mapped stream.
    pub stream_arn: String,
    /// GetSignalingChannelEndpoint (MASTER) answer.
    pub endpoints: ChannelEndpoints,
}

/// The ingestion set-up (docs/kvs-wire.md "Ingestion flow" 1–3): CreateSignalingChannel
/// `channel_name`, CreateStream `stream_name` (retention `retention_hours`),
/// UpdateMediaStorageConfiguration ENABLED, GetSignalingChannelEndpoint (WSS, HTTPS, WEBRTC;
/// MASTER). Existing channel/stream names are reused.
pub async fn provision_storage_channel(
    client: &KvsClient,
    channel_name: &str,
    stream_name: &str,
    retention_hours: u32,
) -> Result<StorageChannel, ApiError> {
    let channel_arn = client.create_signaling_channel(channel_name).await?;
    let stream_arn = client.create_stream(stream_name, retention_hours).await?;
    client.enable_media_storage(&channel_arn, &stream_arn).await?;
    let endpoints = client.master_endpoints(&channel_arn).await?;
    Ok(StorageChannel { channel_arn, stream_arn, endpoints })
}

/// One storage session as a KVS master does it: ConnectAsMaster, JoinStorageSession, answer
/// the storage peer's offer, trickle the host candidate, then publish until `until`.
/// Milestones and the failure reason land in `stats`.
pub async fn publish_to_storage(
    client: &KvsClient,
    channel: &StorageChannel,
    cfg: PublisherConfig,
    stats: Arc<PublisherStats>,
    until: Instant,
) -> Result<RunEnd, PublisherError> {
    storage_session(client, channel, cfg, stats.clone(), until).await.map_err(|e| stats.fail(e))
}

/// How a master recovers from a lost storage session. The KVS C SDK reconnects its
/// signaling client with exponential backoff and, in storage mode, calls JoinStorageSession
/// again once connected; the KVS JS sample does the same on its reconnect path. A load
/// balancer may send the new connection to another node, which then runs the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// First wait after a loss.
    pub initial_backoff: Duration,
    /// Longest wait between attempts (the backoff doubles up to it, with jitter).
    pub max_backoff: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self { initial_backoff: Duration::from_millis(200), max_backoff: Duration::from_secs(5) }
    }
}

impl ReconnectPolicy {
    /// The wait before attempt `n` (0-based): `initial × 2ⁿ`, capped, minus up to 25 %
    /// jitter drawn from `unit` (0..1), so a fleet that lost one node does not return in step.
    pub fn backoff(&self, n: u32, unit: f64) -> Duration {
        let full = self.initial_backoff.saturating_mul(1u32 << n.min(16)).min(self.max_backoff);
        full.mul_f64(1.0 - 0.25 * unit.clamp(0.0, 1.0))
    }
}

/// [`publish_to_storage`] that starts over after a lost session (signaling closed, media
/// disconnected, JoinStorageSession refused while another node's session lapses), as a
/// KVS master does: fresh endpoints, a new connection, JoinStorageSession again, a new
/// peer connection; until `until`. Reconnects and the time media took to resume land in
/// `stats`; it fails only when an attempt fails and no time is left for another.
pub async fn publish_with_reconnect(
    client: &KvsClient,
    channel: &StorageChannel,
    cfg: PublisherConfig,
    stats: Arc<PublisherStats>,
    until: Instant,
    policy: ReconnectPolicy,
) -> Result<RunEnd, PublisherError> {
    let mut channel = channel.clone();
    let mut attempt = 0u32;
    loop {
        let connections_before = stats.connections.load(Ordering::Relaxed);
        let result = storage_session(client, &channel, cfg.clone(), stats.clone(), until).await;
        match result {
            Ok(end) => return Ok(end),
            Err(e) => {
                if stats.connections.load(Ordering::Relaxed) > connections_before {
                    attempt = 0; // it had recovered: start the backoff over
                }
                let wait = policy.backoff(attempt, rand_unit());
                if Instant::now() + wait >= until {
                    return Err(stats.fail(e));
                }
                attempt = attempt.saturating_add(1);
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::info!(channel = %channel.channel_arn, error = %e, wait_ms = wait.as_millis() as u64, "storage session lost; reconnecting");
                if let Ok(mut lost) = stats.lost_at_us.lock() {
                    // A failed reconnect keeps the first loss: the gap runs from it.
                    lost.get_or_insert_with(unix_us);
                }
                tokio::time::sleep(wait).await;
                // The endpoints may now lead elsewhere (another node behind the balancer).
                if let Ok(endpoints) = client.master_endpoints(&channel.channel_arn).await {
                    channel.endpoints = endpoints;
                }
            }
        }
    }
}

/// A number in 0..1 for backoff jitter (no RNG dependency: the clock's sub-µs noise).
fn rand_unit() -> f64 {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}

/// One storage session, without recording its failure (see [`publish_to_storage`]).
async fn storage_session(
    client: &KvsClient,
    channel: &StorageChannel,
    cfg: PublisherConfig,
    stats: Arc<PublisherStats>,
    until: Instant,
) -> Result<RunEnd, PublisherError> {
    let mut conn = MasterConnection::connect(&client.signer, &channel.endpoints.wss, &channel.channel_arn).await?;
    PublisherStats::mark(&stats.times.ws_open);
    PublisherStats::mark(&stats.times.join_sent);
    client.join_storage_session(&channel.endpoints.webrtc, &channel.channel_arn).await?;
    PublisherStats::mark(&stats.times.join_ok);
    let offer_timeout = cfg.offer_timeout;
    let (offer, sender) = conn.next_offer(offer_timeout).await?;
    let mut publisher = Publisher::bind(cfg, stats.clone()).await?;
    let answer = publisher.accept_offer(&offer)?;
    conn.send_answer(&answer, sender.as_deref()).await?;
    conn.send_candidate(&publisher.local_candidate(), sender.as_deref()).await?;
    let end = publisher.run(&mut conn, until).await;
    publisher.disconnect();
    conn.close().await;
    end
}

/// A simulated camera for `reel demo` and friends.
#[derive(Debug, Clone)]
pub struct CameraConfig {
    /// reel's base URL (control plane), e.g. `http://127.0.0.1:8080`.
    pub endpoint: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Region reel runs as.
    pub region: String,
    /// Signaling channel name (created if missing).
    pub channel_name: String,
    /// Stream name (created if missing) that storage writes to.
    pub stream_name: String,
    /// Payload bitrate, bits/s.
    pub bitrate_bps: u64,
    /// UDP bind address; `None`: the endpoint's IP (loopback for host names).
    pub bind_ip: Option<IpAddr>,
    /// Publish for this long; `None`: until the task is dropped.
    pub duration: Option<Duration>,
    /// Clock behaviour of the camera (drift, SR mapping, mutes); default: a perfect one.
    pub profile: SenderProfile,
}

impl CameraConfig {
    /// A camera publishing 1 Mbps into `channel_name` (stream `<channel_name>-stream`) on reel at
    /// `endpoint`, us-west-2, forever.
    pub fn new(endpoint: &str, access_key_id: &str, secret_access_key: &str, channel_name: &str) -> Self {
        Self {
            endpoint: endpoint.to_string(),
            access_key_id: access_key_id.to_string(),
            secret_access_key: secret_access_key.to_string(),
            region: "us-west-2".into(),
            channel_name: channel_name.to_string(),
            stream_name: format!("{channel_name}-stream"),
            bitrate_bps: DEFAULT_BITRATE_BPS,
            bind_ip: None,
            duration: None,
            profile: SenderProfile::default(),
        }
    }
}

/// What a camera run did.
#[derive(Debug, Clone)]
pub struct CameraReport {
    /// The channel and stream it published into.
    pub channel: StorageChannel,
    /// Its counters at the end.
    pub stats: StatsSnapshot,
}

/// The one-call simulated camera: provisions a storage-enabled channel (see
/// [`provision_storage_channel`]) and publishes into it (see [`publish_to_storage`]) for
/// `cfg.duration` (or until the future is dropped). `on_ready` is called with the channel
/// once it exists (e.g. to print a viewer URL).
pub async fn run_camera(
    cfg: CameraConfig,
    on_ready: impl FnOnce(&StorageChannel),
) -> Result<CameraReport, PublisherError> {
    let signer = Signer::new(&cfg.access_key_id, &cfg.secret_access_key, &cfg.region);
    let client = KvsClient::new(&cfg.endpoint, signer);
    let channel =
        provision_storage_channel(&client, &cfg.channel_name, &cfg.stream_name, DEFAULT_RETENTION_HOURS).await?;
    on_ready(&channel);
    let bind_ip = cfg.bind_ip.unwrap_or_else(|| endpoint_ip(&cfg.endpoint));
    let source = Arc::new(MediaSource::new(cfg.bitrate_bps)?);
    let stats = PublisherStats::new();
    // "Forever" is a century: Instant arithmetic needs an end.
    let until = Instant::now() + cfg.duration.unwrap_or(Duration::from_secs(100 * 365 * 86_400));
    let mut pcfg = PublisherConfig::new(bind_ip, source);
    pcfg.profile = cfg.profile;
    publish_to_storage(&client, &channel, pcfg, stats.clone(), until).await?;
    Ok(CameraReport { channel, stats: stats.snapshot() })
}

/// The IP of an endpoint URL's host, or loopback when it is a name.
pub fn endpoint_ip(url: &str) -> IpAddr {
    let host = crate::sigv4::host_of(url).unwrap_or("127.0.0.1");
    let bare = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    bare.trim_start_matches('[').trim_end_matches(']').parse().unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::net::{Protocol, Receive};
    use str0m::{Event, Input, Output};

    /// Largest UDP datagram the test recorder reads.
    const RECV_BUF: usize = 2_048;

    #[test]
    fn endpoint_ips() {
        assert_eq!(endpoint_ip("http://198.18.0.1:4000"), "198.18.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(endpoint_ip("http://localhost:4000/"), "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(endpoint_ip("http://[::1]:4000"), "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn reconnect_backoff_doubles_caps_and_jitters_down() {
        let p = ReconnectPolicy::default();
        assert_eq!(p.backoff(0, 0.0), Duration::from_millis(200));
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(400));
        assert_eq!(p.backoff(10, 0.0), Duration::from_secs(5), "capped");
        assert_eq!(p.backoff(40, 0.0), Duration::from_secs(5), "no overflow");
        assert_eq!(p.backoff(0, 1.0), Duration::from_millis(150), "at most 25 % jitter");
    }

    #[test]
    fn a_connection_after_a_loss_records_the_resume_gap() {
        let s = PublisherStats::new();
        StatsMark::connected(&s);
        assert!(s.snapshot().resume_gaps_us.is_empty(), "the first connection is no resume");
        *s.lost_at_us.lock().unwrap() = Some(unix_us() - 1_500_000);
        StatsMark::connected(&s);
        let gaps = s.snapshot().resume_gaps_us;
        assert_eq!(gaps.len(), 1);
        assert!((1_500_000..2_500_000).contains(&gaps[0]), "{gaps:?}");
        assert_eq!(s.connections.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn failure_kinds_are_stable() {
        let s = PublisherStats::new();
        s.fail(PublisherError::ConnectTimeout(Duration::from_secs(1)));
        s.fail(PublisherError::MissingMedia("Opus"));
        let snap = s.snapshot();
        assert_eq!(snap.failure_kind.as_deref(), Some("connect_timeout"), "the first failure wins");
    }

    #[tokio::test]
    async fn two_publishers_connect_offer_to_answer_and_send_media() {
        let source = Arc::new(MediaSource::new(500_000).unwrap());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let (sa, sb) = (PublisherStats::new(), PublisherStats::new());
        let mut a = Publisher::bind(PublisherConfig::new(ip, source.clone()), sa.clone()).await.unwrap();
        let mut b_cfg = PublisherConfig::new(ip, source);
        b_cfg.send_media = false;
        let mut b = Publisher::bind(b_cfg, sb.clone()).await.unwrap();
        let offer = a.create_offer().unwrap();
        assert!(offer.contains("H264") && offer.contains("opus"), "{offer}");
        let answer = b.accept_offer(&offer).unwrap();
        a.accept_answer(&answer).unwrap();
        let until = Instant::now() + Duration::from_millis(1500);
        let (mut na, mut nb) = (NoSignals, NoSignals);
        let (ra, rb) = tokio::join!(a.run(&mut na, until), b.run(&mut nb, until));
        assert_eq!(ra.unwrap(), RunEnd::Deadline);
        assert_eq!(rb.unwrap(), RunEnd::Deadline);
        let s = sa.snapshot();
        assert!(s.connected_us.is_some(), "{s:?}");
        assert!(s.video_frames >= 20, "{s:?}");
        assert!(s.packets_sent > s.video_frames, "{s:?}");
        assert!(sb.snapshot().packets_received > s.video_frames, "the answerer got the media");
        let frames = sa.frames.lock().unwrap();
        assert_eq!(frames.first().map(|f| (f.index, f.keyframe)), Some((0, true)));
    }

    /// What a bare str0m answerer saw of a publisher's media.
    #[derive(Debug, Default)]
    struct Received {
        /// (kind, RTP ticks, arrival) per frame.
        frames: Vec<(MediaKind, u64, Instant)>,
        /// (kind, SR NTP time, SR RTP ticks) per sender report.
        reports: Vec<(MediaKind, SystemTime, u64)>,
    }

    impl Received {
        fn frames(&self, kind: MediaKind) -> Vec<(u64, Instant)> {
            self.frames.iter().filter(|f| f.0 == kind).map(|f| (f.1, f.2)).collect()
        }

        /// RTP seconds per NTP second between the first and last SR carrying an RTP time.
        fn sr_slope(&self, kind: MediaKind, clock_rate: f64) -> f64 {
            let srs: Vec<_> = self.reports.iter().filter(|r| r.0 == kind && r.2 > 0).collect();
            let (a, b) = (srs.first().expect("an SR"), srs.last().expect("an SR"));
            let ntp = b.1.duration_since(a.1).expect("NTP moves forward").as_secs_f64();
            assert!(ntp >= 1.5, "SRs span only {ntp} s: {srs:?}");
            (b.2 - a.2) as f64 / clock_rate / ntp
        }
    }

    /// Answers `offer` with a receive-only str0m peer and records what arrives until `until`.
    async fn record_media(offer: &str, until: Instant) -> (String, tokio::task::JoinHandle<Received>) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        let mut rtc = Rtc::builder().clear_codecs().enable_h264(true).enable_opus(true, false).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let answer = rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(offer).unwrap()).unwrap();
        let task = tokio::spawn(async move {
            let (mut got, mut kinds, mut buf) = (Received::default(), Vec::new(), vec![0u8; RECV_BUF]);
            loop {
                let timeout = loop {
                    match rtc.poll_output().unwrap() {
                        Output::Timeout(t) => break t,
                        Output::Transmit(t) => {
                            let _ = socket.send_to(&t.contents, t.destination).await;
                        }
                        Output::Event(Event::MediaAdded(m)) => kinds.push((m.mid, m.kind)),
                        Output::Event(Event::MediaData(d)) => {
                            let kind = kinds.iter().find(|k| k.0 == d.mid).unwrap().1;
                            got.frames.push((kind, d.time.numer(), d.network_time));
                        }
                        Output::Event(Event::SenderFeedback(f)) => {
                            let kind = kinds.iter().find(|k| k.0 == f.mid).unwrap().1;
                            got.reports.push((kind, f.sender_info.ntp_time, f.sender_info.rtp_time.numer()));
                        }
                        Output::Event(_) => {}
                    }
                };
                if Instant::now() >= until {
                    return got;
                }
                tokio::select! {
                    r = socket.recv_from(&mut buf) => {
                        let (n, source) = r.unwrap();
                        let receive = Receive { proto: Protocol::Udp, source, destination: local, contents: buf[..n].try_into().unwrap() };
                        let _ = rtc.handle_input(Input::Receive(Instant::now(), receive));
                    }
                    () = tokio::time::sleep_until(timeout.min(until).into()) => {
                        rtc.handle_input(Input::Timeout(Instant::now())).unwrap();
                    }
                }
            }
        });
        (answer.to_sdp_string(), task)
    }

    /// Publishes with `profile` for `secs` into a recording answerer.
    async fn publish_into_recorder(profile: SenderProfile, secs: f64) -> (Received, StatsSnapshot, Vec<i64>) {
        let source = Arc::new(MediaSource::new(300_000).unwrap());
        let mut cfg = PublisherConfig::new("127.0.0.1".parse().unwrap(), source);
        (cfg.profile, cfg.record_audio_sends) = (profile, true);
        let stats = PublisherStats::new();
        let mut publisher = Publisher::bind(cfg, stats.clone()).await.unwrap();
        let until = Instant::now() + Duration::from_secs_f64(secs);
        let (answer, recorder) = record_media(&publisher.create_offer().unwrap(), until).await;
        publisher.accept_answer(&answer).unwrap();
        assert_eq!(publisher.run(&mut NoSignals, until).await.unwrap(), RunEnd::Deadline);
        let sends = stats.audio_sends.lock().unwrap().clone();
        (recorder.await.unwrap(), stats.snapshot(), sends)
    }

    /// Mean spacing of `instants`, ms.
    fn mean_spacing_ms(instants: &[Instant]) -> f64 {
        let span = instants.last().unwrap().duration_since(instants[0]).as_secs_f64() * 1000.0;
        span / (instants.len() - 1) as f64
    }

    #[tokio::test]
    async fn slow_audio_keeps_960_ticks_per_packet_sent_every_20_6_ms_and_srs_follow_the_wall_clock() {
        let profile = SenderProfile { audio_rate: 0.97, video_rate: 0.97, sr_wall_clock: true, ..Default::default() };
        let (got, snap, sends) = publish_into_recorder(profile, 4.0).await;
        let audio = got.frames(MediaKind::Audio);
        assert!(audio.len() > 100, "{} audio frames", audio.len());
        assert!(audio.windows(2).all(|w| w[1].0 - w[0].0 == 960), "RTP advances 960 ticks per packet");
        let arrivals: Vec<Instant> = audio.iter().map(|a| a.1).collect();
        let spacing = mean_spacing_ms(&arrivals);
        assert!((spacing - 20.62).abs() < 0.25, "audio arrives every {spacing:.3} ms");
        let video = got.frames(MediaKind::Video);
        assert!(video.windows(2).all(|w| w[1].0 - w[0].0 == 3000), "RTP advances 3000 ticks per frame");
        // The publisher's own record agrees: one send instant per packet written, 20.6 ms apart.
        assert_eq!(sends.len() as u64, snap.audio_packets);
        let sent_ms = (sends[sends.len() - 1] - sends[0]) as f64 / 1000.0 / (sends.len() - 1) as f64;
        assert!((sent_ms - 20.62).abs() < 0.25, "sent every {sent_ms:.3} ms");
        // Video SRs (1 s apart): RTP time advances with the wall clock, not with the packets.
        let slope = got.sr_slope(MediaKind::Video, 90_000.0);
        assert!((slope - 1.0).abs() < 0.004, "SR RTP/NTP slope {slope}");
        assert_eq!(snap.sr_wallclock_clamped, 0);
    }

    #[tokio::test]
    async fn by_default_srs_of_a_slow_sender_follow_its_packets() {
        let profile = SenderProfile { video_rate: 0.97, ..Default::default() };
        let (got, _, _) = publish_into_recorder(profile, 4.0).await;
        let slope = got.sr_slope(MediaKind::Video, 90_000.0);
        assert!((slope - 0.97).abs() < 0.004, "SR RTP/NTP slope {slope}");
    }

    #[tokio::test]
    async fn muted_audio_sends_nothing_in_its_window_and_resumes_with_rtp_time_advanced() {
        let mute = MuteWindow { at: Duration::from_millis(500), len: Duration::from_millis(1000) };
        let video_mute = MuteWindow { at: Duration::from_millis(200), len: Duration::from_millis(300) };
        let profile = SenderProfile { audio_mute: Some(mute), video_mute: Some(video_mute), ..Default::default() };
        let (got, snap, _) = publish_into_recorder(profile, 2.5).await;
        let audio = got.frames(MediaKind::Audio);
        let gap = audio.windows(2).find(|w| w[1].0 - w[0].0 > 960).expect("a gap in the audio");
        // 50 packets (1 s) were not sent: RTP jumps by 51 packets across the window.
        assert_eq!(gap[1].0 - gap[0].0, 51 * 960);
        assert_eq!(snap.audio_packets_muted, 50);
        // Video: 9 frames muted (200–500 ms), then held until the IDR at frame 60 (2 s).
        let video = got.frames(MediaKind::Video);
        let vgap = video.windows(2).find(|w| w[1].0 - w[0].0 > 3000).expect("a gap in the video");
        assert_eq!((vgap[0].0 - video[0].0, vgap[1].0 - video[0].0), (5 * 3000, 60 * 3000));
        assert_eq!(snap.video_frames_muted, 54);
    }
}
