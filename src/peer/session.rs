//! The control side of one storage session: signaling with the master (offer, answer,
//! trickled candidates) as a small async task feeding commands to the I/O loop.

use std::net::SocketAddr;

use reel_storage::Stream;
use serde::Deserialize;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, RtcConfig};
use tokio::sync::{mpsc, oneshot};

use super::hub::HubSession;
use super::io::{Command, EndReason, NewSession, WriterInput};
use super::{ingest, sdp};
use crate::signaling::message::{MessageKind, SignalingMessage};
use crate::signaling::registry::{StoragePeerEvent, StoragePeerHandle};

/// How often str0m reports peer and ingress stats (selected pair, RTT, NACKs, loss, jitter).
pub const STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

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
/// masters send) and recvonly Opus, no data channel.
pub fn build_rtc(candidate: SocketAddr) -> Result<Offerer, String> {
    build_rtc_at(candidate, std::time::Instant::now())
}

/// [`build_rtc`] with the peer connection's clock starting at `now` (sans-IO drivers).
pub fn build_rtc_at(candidate: SocketAddr, now: std::time::Instant) -> Result<Offerer, String> {
    let mut cfg = RtcConfig::new().clear_codecs().enable_opus(true, false).set_stats_interval(Some(STATS_INTERVAL));
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
    let mut rtc = cfg.build(now);
    let cand = Candidate::host(candidate, "udp").map_err(|e| e.to_string())?;
    rtc.add_local_candidate(cand);
    let mut api = rtc.sdp_api();
    let video = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let audio = api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().ok_or("no offer produced")?;
    Ok(Offerer { rtc, video, audio, offer_sdp: offer.to_sdp_string(), pending })
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
    mut handle: StoragePeerHandle,
    stream: Stream,
    settings: SessionSettings,
    io: mpsc::Sender<Command>,
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
    if settings.log_sdp {
        tracing::info!(session = id, channel = %channel, sdp = %offer_sdp, "storage session offer");
    }
    let (writer_tx, writer_rx) = mpsc::channel(ingest::WRITER_QUEUE);
    let (ended_tx, mut ended_rx) = oneshot::channel();
    let new = NewSession {
        session: HubSession { id, channel_arn: channel.clone(), rtc, pending, video, audio, writer_tx },
        writer: WriterInput { stream, events: writer_rx },
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
    if let Ok(c) = Candidate::host(settings.candidate, "udp") {
        let cand = serde_json::json!({ "candidate": c.to_sdp_string(), "sdpMid": "0", "sdpMLineIndex": 0 }).to_string();
        let _ = handle.send_to_master(SignalingMessage::from_payload_bytes(MessageKind::IceCandidate, cand.as_bytes()));
    }
    tracing::info!(session = id, channel = %channel, candidate = %settings.candidate, "storage offer sent");
    let reason = loop {
        tokio::select! {
            ended = &mut ended_rx => {
                tracing::debug!(session = id, reason = ?ended, "session ended by the media loop");
                return;
            }
            ev = handle.recv() => match ev {
                None => break EndReason::Closed("superseded by a newer session".into()),
                Some(StoragePeerEvent::MasterDisconnected) => break EndReason::Closed("master disconnected".into()),
                Some(StoragePeerEvent::Message(m)) => {
                    if let Err(reason) = on_message(id, &m, &settings, &io).await {
                        break EndReason::Closed(reason);
                    }
                }
            },
        }
    };
    tracing::info!(session = id, channel = %channel, ?reason, "ending storage session");
    close(reason).await;
}

/// One master message: the answer or a candidate. `Err` ends the session.
async fn on_message(
    id: u64,
    m: &SignalingMessage,
    settings: &SessionSettings,
    io: &mpsc::Sender<Command>,
) -> Result<(), String> {
    let bytes = m.payload_bytes().map_err(|e| format!("payload is not base64: {e}"))?;
    match m.kind {
        MessageKind::SdpAnswer => {
            let p: SdpPayload = serde_json::from_slice(&bytes).map_err(|e| format!("answer is not SDP JSON: {e}"))?;
            if settings.log_sdp {
                tracing::info!(session = id, sdp = %p.sdp, "storage session answer");
            }
            if p.kind != "answer" {
                return Err(format!("expected an answer, got {:?}", p.kind));
            }
            sdp::validate_answer(&p.sdp).map_err(|e| e.to_string())?;
            let answer = SdpAnswer::from_sdp_string(&p.sdp).map_err(|e| format!("unparsable answer: {e}"))?;
            let _ = io.send(Command::Answer { id, answer }).await;
        }
        MessageKind::IceCandidate => {
            let Ok(p) = serde_json::from_slice::<CandidatePayload>(&bytes) else {
                tracing::debug!(session = id, "ignoring unparsable candidate");
                return Ok(());
            };
            let text = p.candidate.trim().trim_start_matches("a=");
            if text.is_empty() {
                return Ok(());
            }
            match Candidate::from_sdp_string(text) {
                Ok(candidate) => {
                    let _ = io.send(Command::Candidate { id, candidate }).await;
                }
                Err(e) => tracing::debug!(session = id, error = %e, candidate = text, "ignoring candidate"),
            }
        }
        MessageKind::SdpOffer => tracing::debug!(session = id, "ignoring an offer from the master"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(sdp::count_lines(&sdp, "a=recvonly"), 2);
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
