//! The control side of one storage session: signaling with the master (offer, answer,
//! trickled candidates) as a small async task feeding commands to the I/O loop.
//!
//! # When a session ends
//! A recording outlives the signaling connection that negotiated it. The media loop ends a
//! session on ICE disconnect or consent failure, after `idle_timeout_secs` without media
//! (also counted from the start, so a session that never connects ends too), and at
//! `max_session_secs` (see [`super::hub`]). This task ends it only when
//! - a newer JoinStorageSession for the channel superseded it (the handle is detached, and
//!   so are the sessions of a deleted channel and all sessions at shutdown);
//! - the master's answer is unusable;
//! - the master's signaling connection closed before its answer arrived and no answer came
//!   within [`MASTER_RECONNECT_GRACE`] (over a new connection of the channel's master).
//!
//! The master's signaling connection closing — the 10-minute idle timeout, `GO_AWAY` and
//! the connection cap, a network blip — does not end a session that has its answer: the
//! peer connection is negotiated, ICE needs no more signaling (the master's checks reach
//! our host candidate, which was in the offer), and media goes on. It is logged as
//! "master signaling closed; media continues" and counted in [`SIGNALING_DISCONNECTS`].
//! When the master connects again (or a newer master connection replaces the old one),
//! the handle routes over the new connection, its recipient-less answer and candidates come
//! to this session, and [`SIGNALING_RECONNECTS`] counts it. A session without an answer
//! has nothing to keep yet, so it waits at most the grace for the answer; a master that
//! lost the offer with its connection calls JoinStorageSession again, which supersedes it.

use std::net::SocketAddr;
use std::time::Duration;

use reel_storage::Stream;
use serde::Deserialize;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, RtcConfig};
use tokio::sync::{mpsc, oneshot};

use super::hub::HubSession;
use super::io::{Command, EndReason, NewSession, WriterInput};
use super::lease_keeper::LeaseKeeper;
use super::{ingest, sdp};
use crate::signaling::message::{MessageKind, SignalingMessage};
use crate::signaling::registry::{StoragePeerEvent, StoragePeerHandle};

/// How often str0m reports peer and ingress stats (selected pair, RTT, NACKs, loss, jitter).
pub const STATS_INTERVAL: Duration = Duration::from_secs(5);

/// How long a session still waiting for the master's answer survives the master's
/// signaling connection closing (or being replaced): the answer may come over the master's
/// next connection. Answered sessions do not depend on signaling at all.
pub const MASTER_RECONNECT_GRACE: Duration = Duration::from_secs(30);

/// Prometheus counter: the master's signaling connection closed while a storage session of
/// the channel was running, by `state`: `answered` (media continues) or `unanswered` (the
/// session waits [`MASTER_RECONNECT_GRACE`] for the answer).
pub const SIGNALING_DISCONNECTS: &str = "reel_storage_session_signaling_disconnects_total";
/// Prometheus counter: a master connected to the channel again (after a close, or replacing
/// its older connection) while a storage session of the channel was running.
pub const SIGNALING_RECONNECTS: &str = "reel_storage_session_signaling_reconnects_total";

/// What a session needs besides its channel and stream.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Host candidate advertised to the master.
    pub candidate: SocketAddr,
    /// Log offers and answers.
    pub log_sdp: bool,
    /// Bitrate advertised with `b=AS`, bits per second.
    pub bitrate_bps: u64,
}

#[derive(Deserialize)]
struct SdpPayload {
    #[serde(rename = "type")]
    kind: String,
    sdp: String,
}

#[derive(Deserialize)]
struct CandidatePayload {
    candidate: String,
}

/// Builds the offerer `Rtc`: recvonly H.264 (packetization-mode 1, the profiles KVS
/// masters send) and sendrecv Opus, no data channel. Audio is sendrecv, as KVS's storage
/// session offers it, so viewers' talk-back can reach the master (see [`super::fanout`]);
/// masters answer sendonly or sendrecv, and only what they send is stored.
pub fn build_rtc(candidate: SocketAddr) -> Result<Offerer, String> {
    build_rtc_at(candidate, std::time::Instant::now())
}

/// [`build_rtc`] with the peer connection's clock starting at `now` (sans-IO drivers).
pub fn build_rtc_at(candidate: SocketAddr, now: std::time::Instant) -> Result<Offerer, String> {
    // Received RTP is queued for reel's own reassembler (`media_rx`), not depacketized
    // by str0m (vendor/README.md, issue 18).
    let mut cfg = RtcConfig::new()
        .clear_codecs()
        .enable_opus(true, false)
        .set_stats_interval(Some(STATS_INTERVAL))
        .set_rtp_receive_queue(true);
    add_h264(&mut cfg);
    let mut rtc = cfg.build(now);
    let cand = Candidate::host(candidate, "udp").map_err(|e| e.to_string())?;
    rtc.add_local_candidate(cand);
    let mut api = rtc.sdp_api();
    let video = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let audio = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().ok_or("no offer produced")?;
    Ok(Offerer { rtc, video, audio, offer_sdp: offer.to_sdp_string(), pending })
}

/// Adds H.264 (packetization-mode 1, with RTX) in the profiles KVS masters send.
pub fn add_h264(cfg: &mut RtcConfig) {
    let codecs = cfg.codec_config();
    for (pt, rtx, profile) in [
        (108u8, 109u8, 0x42e01f_u32),
        (127, 121, 0x42001f),
        (123, 119, 0x4d001f),
        (112, 113, 0x640c1f),
        (114, 115, 0x64001f),
    ] {
        codecs.add_h264(pt.into(), Some(rtx.into()), true, profile);
    }
}

/// A fresh offerer peer connection and its offer.
pub struct Offerer {
    /// The peer connection.
    pub rtc: str0m::Rtc,
    /// Mid of the video section.
    pub video: str0m::media::Mid,
    /// Mid of the audio section.
    pub audio: str0m::media::Mid,
    /// The offer as str0m wrote it.
    pub offer_sdp: String,
    /// The offer awaiting its answer.
    pub pending: str0m::change::SdpPendingOffer,
}

/// Runs one session until it ends; `handle` is already attached to the channel.
pub async fn run(
    id: u64,
    handle: StoragePeerHandle,
    stream: Stream,
    settings: SessionSettings,
    io: mpsc::Sender<Command>,
    mut lease: Option<LeaseKeeper>,
) {
    let channel = handle.channel_arn().to_string();
    let Offerer { rtc, video, audio, offer_sdp, pending } = match build_rtc(settings.candidate) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(session = id, error = %e, "cannot build peer connection");
            return;
        }
    };
    let offer_sdp = sdp::finish_offer(&offer_sdp, settings.bitrate_bps);
    let first_mid = video.to_string();
    if settings.log_sdp {
        tracing::info!(session = id, channel = %channel, sdp = %offer_sdp, "storage session offer");
    }
    let (writer_tx, writer_rx) = mpsc::channel(ingest::WRITER_QUEUE);
    let (ended_tx, ended_rx) = oneshot::channel();
    let new = NewSession {
        session: HubSession {
            id,
            channel_arn: channel.clone(),
            stream_arn: stream.id().to_string(),
            rtc,
            pending,
            video,
            audio,
            writer_tx,
        },
        writer: WriterInput { stream, fence: lease.as_ref().and_then(LeaseKeeper::fence), events: writer_rx },
        ended: ended_tx,
    };
    if io.send(Command::Add(Box::new(new))).await.is_err() {
        return;
    }
    let close = |reason: EndReason| {
        let io = io.clone();
        async move {
            let _ = io.send(Command::Close { id, reason }).await;
        }
    };
    let offer_json = serde_json::json!({ "type": "offer", "sdp": offer_sdp }).to_string();
    if let Err(e) =
        handle.send_to_master(SignalingMessage::from_payload_bytes(MessageKind::SdpOffer, offer_json.as_bytes()))
    {
        tracing::warn!(session = id, error = %e, "cannot deliver the storage offer");
        close(EndReason::Closed(format!("offer not delivered: {e}"))).await;
        return;
    }
    if let Some(cand) = sdp::host_candidate_payload(settings.candidate, &first_mid) {
        let _ = handle.send_to_master(SignalingMessage::from_payload_bytes(MessageKind::IceCandidate, cand.as_bytes()));
    }
    tracing::info!(session = id, channel = %channel, candidate = %settings.candidate, "storage offer sent");
    if let Some(reason) = control(id, handle, &settings, &io, ended_rx, lease.as_mut()).await {
        tracing::info!(session = id, channel = %channel, ?reason, "ending storage session");
        close(reason).await;
    }
}

/// The session's signaling after its offer went out (see the module docs for the rules):
/// forwards the master's answer and candidates to the I/O loop until the session must end.
/// Returns why this task ends it, or `None` when the media loop ended it (`ended`).
async fn control(
    id: u64,
    mut handle: StoragePeerHandle,
    settings: &SessionSettings,
    io: &mpsc::Sender<Command>,
    mut ended: oneshot::Receiver<EndReason>,
    mut lease: Option<&mut LeaseKeeper>,
) -> Option<EndReason> {
    let channel = handle.channel_arn().to_string();
    let mut answered = false;
    // While unanswered and the master's connection that got the offer is gone: the latest
    // moment the answer may arrive.
    let mut grace: Option<tokio::time::Instant> = None;
    let start_grace = |grace: &mut Option<tokio::time::Instant>| {
        grace.get_or_insert_with(|| tokio::time::Instant::now() + MASTER_RECONNECT_GRACE);
    };
    loop {
        let grace_over = async {
            match grace {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let lease_lost = async {
            match lease.as_deref_mut() {
                Some(keeper) => keeper.lost().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = lease_lost => {
                return Some(EndReason::Closed("the stream's writer lease was lost (taken over or not renewed)".into()));
            }
            ended = &mut ended => {
                tracing::debug!(session = id, reason = ?ended, "session ended by the media loop");
                return None;
            }
            () = grace_over => {
                return Some(EndReason::Closed(format!(
                    "master signaling closed before answering; no answer within {}s",
                    MASTER_RECONNECT_GRACE.as_secs()
                )));
            }
            ev = handle.recv() => match ev {
                None => return Some(EndReason::Closed("superseded by a newer session".into())),
                Some(StoragePeerEvent::MasterDisconnected) => {
                    let state = if answered { "answered" } else { "unanswered" };
                    metrics::counter!(SIGNALING_DISCONNECTS, "state" => state).increment(1);
                    if answered {
                        tracing::info!(session = id, channel = %channel, "master signaling closed; media continues");
                    } else {
                        start_grace(&mut grace);
                        tracing::info!(
                            session = id, channel = %channel, grace_secs = MASTER_RECONNECT_GRACE.as_secs(),
                            "master signaling closed before its answer; waiting for it to reconnect"
                        );
                    }
                }
                Some(StoragePeerEvent::MasterConnected) => {
                    metrics::counter!(SIGNALING_RECONNECTS).increment(1);
                    if !answered {
                        // The connection that got the offer is gone (closed or replaced).
                        start_grace(&mut grace);
                    }
                    tracing::info!(session = id, channel = %channel, answered, "master signaling reconnected");
                }
                Some(StoragePeerEvent::Message(m)) => {
                    if let Err(reason) = on_message(id, &m, settings, io).await {
                        return Some(EndReason::Closed(reason));
                    }
                    if m.kind == MessageKind::SdpAnswer {
                        answered = true;
                        grace = None;
                    }
                }
            },
        }
    }
}

/// What a master's message asks of the session.
#[derive(Debug)]
pub enum MasterInput {
    /// A validated answer.
    Answer(Box<SdpAnswer>),
    /// A trickled candidate.
    Candidate(Candidate),
    /// Nothing (an offer, an empty or unparsable candidate).
    Ignore,
}

/// Why a master's message ends the session.
#[derive(Debug, thiserror::Error)]
pub enum MasterMessageError {
    #[error("payload is not base64: {0}")]
    NotBase64(#[from] base64::DecodeError),
    #[error("answer is not SDP JSON: {0}")]
    NotSdpJson(#[from] serde_json::Error),
    #[error("expected an answer, got {0:?}")]
    NotAnAnswer(String),
    #[error(transparent)]
    Answer(#[from] sdp::AnswerError),
    #[error("unparsable answer: {0}")]
    Unparsable(String),
}

/// Parses one master message (sans-IO): the answer must be JSON `{"type":"answer","sdp"}`
/// whose SDP [`sdp::validate_answer`] and str0m accept; candidates that do not parse are
/// ignored (logged at debug).
pub fn parse_master_message(m: &SignalingMessage) -> Result<MasterInput, MasterMessageError> {
    parse_peer_message(m, sdp::validate_answer)
}

/// [`parse_master_message`] with another answer check (a viewer's answer receives video).
pub fn parse_peer_message(
    m: &SignalingMessage,
    validate: fn(&str) -> Result<(), sdp::AnswerError>,
) -> Result<MasterInput, MasterMessageError> {
    let bytes = m.payload_bytes()?;
    match m.kind {
        MessageKind::SdpAnswer => {
            let p: SdpPayload = serde_json::from_slice(&bytes)?;
            if p.kind != "answer" {
                return Err(MasterMessageError::NotAnAnswer(p.kind));
            }
            validate(&p.sdp)?;
            let answer =
                SdpAnswer::from_sdp_string(&p.sdp).map_err(|e| MasterMessageError::Unparsable(e.to_string()))?;
            Ok(MasterInput::Answer(Box::new(answer)))
        }
        MessageKind::IceCandidate => {
            let Ok(p) = serde_json::from_slice::<CandidatePayload>(&bytes) else {
                tracing::debug!("ignoring unparsable candidate");
                return Ok(MasterInput::Ignore);
            };
            let text = p.candidate.trim().trim_start_matches("a=");
            if text.is_empty() {
                return Ok(MasterInput::Ignore);
            }
            match Candidate::from_sdp_string(text) {
                Ok(candidate) => Ok(MasterInput::Candidate(candidate)),
                Err(e) => {
                    tracing::debug!(error = %e, candidate = text, "ignoring candidate");
                    Ok(MasterInput::Ignore)
                }
            }
        }
        MessageKind::SdpOffer => {
            tracing::debug!("ignoring an offer from the master");
            Ok(MasterInput::Ignore)
        }
    }
}

/// One master message: the answer or a candidate. `Err` ends the session.
async fn on_message(
    id: u64,
    m: &SignalingMessage,
    settings: &SessionSettings,
    io: &mpsc::Sender<Command>,
) -> Result<(), String> {
    if settings.log_sdp
        && m.kind == MessageKind::SdpAnswer
        && let Ok(json) = m.payload_bytes()
    {
        tracing::info!(session = id, answer = %String::from_utf8_lossy(&json), "storage session answer");
    }
    match parse_master_message(m).map_err(|e| e.to_string())? {
        MasterInput::Answer(answer) => {
            let _ = io.send(Command::Answer { id, answer: *answer }).await;
        }
        MasterInput::Candidate(candidate) => {
            let _ = io.send(Command::Candidate { id, candidate }).await;
        }
        MasterInput::Ignore => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::task::JoinHandle;

    use super::*;
    use crate::limits::SignalingLimits;
    use crate::signaling::message::ClientMessage;
    use crate::signaling::pending::Party;
    use crate::signaling::registry::{ChannelInfo, Connection, Registry};

    const ARN: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/c/1";

    /// A channel with a master connection and a session's control task running on a
    /// storage peer handle, with a fake I/O loop (its command queue) and media loop (`ended`).
    struct Harness {
        registry: Registry,
        master: Connection,
        io: mpsc::Receiver<Command>,
        ended: Option<oneshot::Sender<EndReason>>,
        task: JoinHandle<Option<EndReason>>,
        offer: String,
    }

    impl Harness {
        fn start() -> Self {
            let limits = SignalingLimits { connect_tps_per_channel: 1000.0, ..SignalingLimits::default() };
            let registry = Registry::local(limits);
            let master = Self::connect_master(&registry);
            let handle = registry.attach_storage_peer(ARN);
            let candidate: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
            let offerer = build_rtc(candidate).expect("rtc");
            let offer = sdp::finish_offer(&offerer.offer_sdp, 1_000_000);
            let settings = SessionSettings { candidate, log_sdp: false, bitrate_bps: 1_000_000 };
            let (io_tx, io) = mpsc::channel(16);
            let (ended_tx, ended) = oneshot::channel();
            let task = tokio::spawn(async move { control(1, handle, &settings, &io_tx, ended, None).await });
            Self { registry, master, io, ended: Some(ended_tx), task, offer }
        }

        fn connect_master(registry: &Registry) -> Connection {
            let channel = ChannelInfo { arn: ARN.into(), message_ttl: Duration::from_secs(60) };
            registry.bus().connect(&channel, Party::Master, Instant::now()).expect("ConnectAsMaster")
        }

        /// The master sends `message` without recipient (for the storage peer).
        fn master_sends(&self, kind: MessageKind, payload: &[u8]) {
            let message = ClientMessage {
                message: SignalingMessage::from_payload_bytes(kind, payload),
                recipient: None,
                correlation_id: None,
            };
            self.registry.bus().route(&self.master.endpoint, message, Instant::now()).expect("routed to storage");
        }

        /// A str0m master's answer to the session's offer.
        fn answer(&self) {
            let mut rtc = str0m::Rtc::new(Instant::now());
            rtc.add_local_candidate(Candidate::host("127.0.0.1:6000".parse().expect("addr"), "udp").expect("cand"));
            let offer = str0m::change::SdpOffer::from_sdp_string(&self.offer).expect("offer parses");
            let answer = rtc.sdp_api().accept_offer(offer).expect("answer").to_sdp_string();
            let json = serde_json::json!({ "type": "answer", "sdp": answer }).to_string();
            self.master_sends(MessageKind::SdpAnswer, json.as_bytes());
        }

        fn candidate(&self) {
            let json = serde_json::json!({ "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 6001 typ host" });
            self.master_sends(MessageKind::IceCandidate, json.to_string().as_bytes());
        }

        /// The next command the control task sent to the I/O loop.
        async fn next_command(&mut self) -> Command {
            tokio::time::timeout(Duration::from_secs(1), self.io.recv()).await.expect("a command").expect("io open")
        }

        /// Lets the control task run; asserts it is still going.
        async fn still_running_after(&mut self, d: Duration) {
            tokio::time::sleep(d).await;
            assert!(!self.task.is_finished(), "the session ended: {:?}", (&mut self.task).await);
            assert!(self.io.try_recv().is_err(), "no command while nothing happens");
        }

        async fn end_reason(self) -> Option<EndReason> {
            tokio::time::timeout(Duration::from_secs(1), self.task).await.expect("the task ends").expect("no panic")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_answered_session_outlives_the_masters_signaling_connection() {
        let mut h = Harness::start();
        h.answer();
        assert!(matches!(h.next_command().await, Command::Answer { id: 1, .. }));
        // The master's WebSocket closes (idle timeout, GO_AWAY, a blip…): media continues.
        h.registry.bus().disconnect(&h.master.endpoint);
        h.still_running_after(MASTER_RECONNECT_GRACE * 20).await;
        // It connects again: its recipient-less candidates reach this session.
        h.master = Harness::connect_master(&h.registry);
        h.candidate();
        assert!(matches!(h.next_command().await, Command::Candidate { id: 1, .. }));
        // A newer master connection replacing that one changes nothing either.
        h.master = Harness::connect_master(&h.registry);
        h.still_running_after(MASTER_RECONNECT_GRACE * 2).await;
        // A newer JoinStorageSession supersedes it.
        let _newer = h.registry.attach_storage_peer(ARN);
        assert_eq!(h.end_reason().await, Some(EndReason::Closed("superseded by a newer session".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_session_ends_after_the_grace_when_its_master_left() {
        let mut h = Harness::start();
        h.still_running_after(MASTER_RECONNECT_GRACE * 2).await;
        h.candidate(); // candidates alone do not make it answered
        assert!(matches!(h.next_command().await, Command::Candidate { .. }));
        h.registry.bus().disconnect(&h.master.endpoint);
        h.still_running_after(MASTER_RECONNECT_GRACE - Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            matches!(h.end_reason().await, Some(EndReason::Closed(r)) if r.contains("before answering")),
            "ends once the grace is over"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_over_the_masters_next_connection_within_the_grace_keeps_the_session() {
        let mut h = Harness::start();
        h.registry.bus().disconnect(&h.master.endpoint);
        tokio::time::sleep(MASTER_RECONNECT_GRACE / 2).await;
        h.master = Harness::connect_master(&h.registry);
        h.answer();
        assert!(matches!(h.next_command().await, Command::Answer { id: 1, .. }));
        h.still_running_after(MASTER_RECONNECT_GRACE * 4).await;
        // The media loop ends it (ICE disconnect, idle, max life): nothing more to close.
        if let Some(ended) = h.ended.take() {
            let _ = ended.send(EndReason::Idle);
        }
        assert_eq!(h.end_reason().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_session_whose_master_connection_was_replaced_waits_the_grace() {
        let mut h = Harness::start();
        h.master = Harness::connect_master(&h.registry); // newest master wins; the offer went to the old one
        h.still_running_after(MASTER_RECONNECT_GRACE - Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(matches!(h.end_reason().await, Some(EndReason::Closed(r)) if r.contains("before answering")));
    }

    #[test]
    fn offer_meets_kvs_master_needs() {
        let o = build_rtc("127.0.0.1:5000".parse().expect("addr")).expect("rtc");
        let sdp = sdp::finish_offer(&o.offer_sdp, 1_000_000);
        assert_eq!(sdp::count_lines(&sdp, "a=fingerprint:"), 1, "{sdp}");
        assert_eq!(sdp::count_lines(&sdp, "a=fingerprint:sha-256 "), 1);
        assert!(sdp.lines().take_while(|l| !l.starts_with("m=")).any(|l| l == "a=ice-options:trickle"), "{sdp}");
        assert_eq!(sdp::count_lines(&sdp, "m=video"), 1);
        assert_eq!(sdp::count_lines(&sdp, "m=audio"), 1);
        assert_eq!(sdp::count_lines(&sdp, "m=application"), 0);
        assert_eq!(sdp::count_lines(&sdp, "a=recvonly"), 1, "video");
        assert_eq!(sdp::count_lines(&sdp, "a=sendrecv"), 1, "audio, for viewers' talk-back");
        assert!(sdp.contains("a=setup:actpass"));
        assert!(sdp.contains("opus/48000/2"));
        for profile in ["42e01f", "42001f", "4d001f", "640c1f", "64001f"] {
            assert!(
                sdp.lines().any(|l| l.starts_with("a=fmtp:")
                    && l.contains(&format!("profile-level-id={profile}"))
                    && l.contains("packetization-mode=1")),
                "{profile} missing: {sdp}"
            );
        }
        assert!(sdp.contains("nack pli") || sdp.contains("a=rtcp-fb:108 nack pli"), "{sdp}");
        assert!(sdp.contains("candidate:") && sdp.contains("127.0.0.1 5000 typ host"), "{sdp}");
        assert!(sdp.contains("b=AS:1000"));
    }
}
