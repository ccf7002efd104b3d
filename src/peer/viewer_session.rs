//! The control side of one viewer session (JoinStorageSessionAsViewer): the storage
//! session's offer to the viewer over the viewer's own signaling connection, its answer and
//! trickled candidates, as a small async task feeding commands to the channel's worker.
//!
//! # When a viewer session ends
//! The media loop ends it (see [`super::hub`] and [`super::fanout`]) on ICE disconnect, after
//! the idle timeout, at the 1 h cap, when no master session runs for
//! `viewer_no_master_secs`, or `viewer_master_gone_secs` after the master's session ended.
//! This task ends it when the viewer's signaling connection closes
//! ([`EndReason::SignalingClosed`]), when a newer JoinStorageSessionAsViewer with the same
//! ClientId replaces it ([`EndReason::Replaced`]), or when its answer is unusable.

use std::net::SocketAddr;

use str0m::Candidate;
use str0m::RtcConfig;
use str0m::media::{Direction, MediaKind};
use str0m::rtp::Extension;
use tokio::sync::{mpsc, oneshot};

use super::fanout::{HubViewer, VIEWER_AUDIO_SEND_BUFFER, VIEWER_VIDEO_SEND_BUFFER};
use super::io::{Command, EndReason, NewViewer};
use super::sdp;
use super::session::{MasterInput, Offerer, STATS_INTERVAL, SessionSettings, parse_peer_message};
use crate::signaling::message::{MessageKind, SignalingMessage};
use crate::signaling::registry::{StorageViewerEvent, StorageViewerHandle};

/// Builds a viewer's offerer `Rtc`: sendonly H.264 (the profiles KVS masters send, so the
/// master's packets match a negotiated payload type) and sendrecv Opus (talk-back), no data
/// channel; bounded retransmission buffers per track.
pub fn build_viewer_rtc_at(candidate: SocketAddr, now: std::time::Instant) -> Result<Offerer, String> {
    let mut cfg = RtcConfig::new()
        .clear_codecs()
        .enable_opus(true, false)
        .set_stats_interval(Some(STATS_INTERVAL))
        .set_send_buffer_video(VIEWER_VIDEO_SEND_BUFFER)
        .set_send_buffer_audio(VIEWER_AUDIO_SEND_BUFFER)
        // Forwarded packets keep the master's size (its path carried them): no warning
        // per packet above str0m's own packetizing target.
        .set_mtu(str0m::DATAGRAM_MTU_TARGET..=usize::MAX)
        // Only the extensions a forwarded packet carries, and the mid for demuxing. No
        // transport-wide congestion control: reel forwards the master's one layer as it
        // comes and adapts nothing to a viewer's bandwidth, so per-packet feedback (and
        // abs-send-time for REMB) would be work on both sides for nothing; loss still
        // shows in receiver reports and NACKs.
        .clear_extension_map()
        .set_extension(1, Extension::AudioLevel)
        .set_extension(4, Extension::RtpMid)
        .set_extension(13, Extension::VideoOrientation);
    super::session::add_h264(&mut cfg);
    let mut rtc = cfg.build(now);
    let cand = Candidate::host(candidate, "udp").map_err(|e| e.to_string())?;
    rtc.add_local_candidate(cand);
    let mut api = rtc.sdp_api();
    let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let audio = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().ok_or("no offer produced")?;
    Ok(Offerer { rtc, video, audio, offer_sdp: offer.to_sdp_string(), pending })
}

/// Runs one viewer session until it ends; `handle` is already attached to the viewer.
pub async fn run(id: u64, handle: StorageViewerHandle, settings: SessionSettings, io: mpsc::Sender<Command>) {
    let channel = handle.channel_arn().to_string();
    let client_id = handle.client_id().to_string();
    let Offerer { rtc, video, audio, offer_sdp, pending } =
        match build_viewer_rtc_at(settings.candidate, std::time::Instant::now()) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the viewer peer connection");
                return;
            }
        };
    let offer_sdp = sdp::finish_offer(&offer_sdp, settings.bitrate_bps);
    let first_mid = video.to_string();
    if settings.log_sdp {
        tracing::info!(viewer = id, sdp = %offer_sdp, "viewer offer");
    }
    let (ended_tx, ended_rx) = oneshot::channel();
    let viewer =
        HubViewer { id, channel_arn: channel.clone(), client_id: client_id.clone(), rtc, pending, video, audio };
    if io.send(Command::AddViewer(Box::new(NewViewer { viewer, ended: ended_tx }))).await.is_err() {
        return;
    }
    let offer_json = serde_json::json!({ "type": "offer", "sdp": offer_sdp }).to_string();
    if let Err(e) = handle.send(SignalingMessage::from_payload_bytes(MessageKind::SdpOffer, offer_json.as_bytes())) {
        tracing::warn!(viewer = id, error = %e, "cannot deliver the viewer offer");
        let reason = EndReason::Closed(format!("offer not delivered: {e}"));
        let _ = io.send(Command::CloseViewer { id, reason }).await;
        return;
    }
    if let Some(cand) = sdp::host_candidate_payload(settings.candidate, &first_mid) {
        let _ = handle.send(SignalingMessage::from_payload_bytes(MessageKind::IceCandidate, cand.as_bytes()));
    }
    tracing::info!(viewer = id, channel = %channel, client_id = %client_id, "viewer offer sent");
    if let Some(reason) = control(id, handle, &io, ended_rx).await {
        tracing::info!(viewer = id, channel = %channel, client_id = %client_id, ?reason, "ending viewer session");
        let _ = io.send(Command::CloseViewer { id, reason }).await;
    }
}

/// Forwards the viewer's answer and candidates to the worker until the session must end;
/// `None` when the media loop ended it.
async fn control(
    id: u64,
    mut handle: StorageViewerHandle,
    io: &mpsc::Sender<Command>,
    mut ended: oneshot::Receiver<EndReason>,
) -> Option<EndReason> {
    loop {
        tokio::select! {
            ended = &mut ended => {
                tracing::debug!(viewer = id, reason = ?ended, "viewer session ended by the media loop");
                return None;
            }
            ev = handle.recv() => match ev {
                Some(StorageViewerEvent::Replaced) => return Some(EndReason::Replaced),
                None => return Some(EndReason::Closed("viewer detached (channel deleted or shutdown)".into())),
                Some(StorageViewerEvent::Disconnected) => return Some(EndReason::SignalingClosed),
                Some(StorageViewerEvent::Message(m)) => match parse_peer_message(&m, sdp::validate_viewer_answer) {
                    Err(e) => return Some(EndReason::Closed(format!("viewer answer: {e}"))),
                    Ok(MasterInput::Answer(answer)) => {
                        let _ = io.send(Command::ViewerAnswer { id, answer: *answer }).await;
                    }
                    Ok(MasterInput::Candidate(candidate)) => {
                        let _ = io.send(Command::ViewerCandidate { id, candidate }).await;
                    }
                    Ok(MasterInput::Ignore) => {}
                },
            },
        }
    }
}
