//! The master side of KVS WebRTC signaling: `ConnectAsMaster` over a presigned WebSocket
//! (docs/kvs-wire.md §3), sending `SDP_ANSWER`/`ICE_CANDIDATE` and reading service events.
//! Plain `ws://` endpoints only.
//!
//! Like the KVS C SDK, the connection sends a WebSocket ping every [`PING_INTERVAL`]: the
//! service (and reel) closes signaling connections that stay idle for 10 minutes, and a
//! camera that only publishes media never sends a text frame. Pings go out while
//! [`MasterConnection::next_event`] (or [`MasterConnection::next_offer`]) is being awaited,
//! which a publishing camera does all the time; a ping interrupted by cancellation stays
//! queued in the socket and is flushed by the next send.

use std::time::{Duration, SystemTime};

use tokio::time::{Interval, MissedTickBehavior};

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::sigv4::{SignError, Signer};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How often a master pings the service (the KVS C SDK's keep-alive).
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Bytes tungstenite readies (and zeroes) for each socket read. Its 128 KiB default made
/// every poll of an idle connection memset 128 KiB, and a publishing camera polls its
/// signaling on every wakeup; service messages (SDP, candidates) are a few KiB, and a
/// larger frame still arrives whole (tungstenite reserves its full length).
const READ_BUFFER: usize = 4 * 1024;

/// Opens the WebSocket at `url` with a [`READ_BUFFER`]-sized read buffer.
async fn open(url: String) -> Result<Ws, SignalingError> {
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false).await?;
    Ok(ws)
}

/// Why signaling failed.
#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    /// The URL could not be presigned.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The WebSocket could not be opened or used.
    #[error("signaling WebSocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The service closed the WebSocket.
    #[error("signaling WebSocket closed")]
    Closed,
    /// No SDP offer came in time.
    #[error("no SDP_OFFER within {0:?}")]
    NoOffer(Duration),
}

/// A service → master event (payload decoded).
#[derive(Debug, Clone, PartialEq)]
pub enum SignalingEvent {
    /// `SDP_OFFER` (from a viewer or the storage peer).
    Offer {
        /// The SDP.
        sdp: String,
        /// `senderClientId`, if any.
        sender: Option<String>,
    },
    /// `ICE_CANDIDATE`: an `a=candidate` value (`candidate:…`).
    Candidate {
        /// The candidate line.
        candidate: String,
        /// `senderClientId`, if any.
        sender: Option<String>,
    },
    /// `GO_AWAY`, `RECONNECT_ICE_SERVER`, `STATUS_RESPONSE` or anything else, by type.
    Other(String),
}

/// An open `ConnectAsMaster` WebSocket.
pub struct MasterConnection {
    ws: Ws,
    /// Keep-alive ping schedule.
    ping: Interval,
    /// Pings sent so far.
    pings_sent: u64,
    /// The channel it is master of.
    pub channel_arn: String,
}

impl MasterConnection {
    /// Opens `ConnectAsMaster` on the `WSS` endpoint (pinging every [`PING_INTERVAL`]).
    pub async fn connect(signer: &Signer, wss: &str, channel_arn: &str) -> Result<Self, SignalingError> {
        Self::connect_with_ping(signer, wss, channel_arn, PING_INTERVAL).await
    }

    /// [`MasterConnection::connect`] with another ping interval (tests; must not be zero).
    pub async fn connect_with_ping(
        signer: &Signer,
        wss: &str,
        channel_arn: &str,
        ping_every: Duration,
    ) -> Result<Self, SignalingError> {
        let url = signer.presign_connect_as_master(wss, channel_arn, SystemTime::now())?;
        let ws = open(url).await?;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(Self { ws, ping, pings_sent: 0, channel_arn: channel_arn.to_string() })
    }

    /// Opens `ConnectAsViewer` with `client_id` on the `WSS` endpoint (pinging every
    /// [`PING_INTERVAL`]). The same connection type serves both roles: a storage viewer,
    /// like a master, answers an offer and trickles candidates without a recipient.
    pub async fn connect_as_viewer(
        signer: &Signer,
        wss: &str,
        channel_arn: &str,
        client_id: &str,
    ) -> Result<Self, SignalingError> {
        let url = signer.presign_connect_as_viewer(wss, channel_arn, client_id, SystemTime::now())?;
        let ws = open(url).await?;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(Self { ws, ping, pings_sent: 0, channel_arn: channel_arn.to_string() })
    }

    /// Keep-alive pings sent so far.
    pub fn pings_sent(&self) -> u64 {
        self.pings_sent
    }

    /// Sends `{action, messagePayload: base64(payload)}` (and `recipientClientId`).
    pub async fn send(&mut self, action: &str, payload: &Value, recipient: Option<&str>) -> Result<(), SignalingError> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(payload.to_string());
        let mut msg = json!({ "action": action, "messagePayload": b64 });
        if let Some(r) = recipient {
            msg["recipientClientId"] = json!(r);
        }
        self.ws.send(Message::text(msg.to_string())).await?;
        Ok(())
    }

    /// Sends an `SDP_ANSWER`.
    pub async fn send_answer(&mut self, sdp: &str, recipient: Option<&str>) -> Result<(), SignalingError> {
        self.send("SDP_ANSWER", &json!({ "type": "answer", "sdp": sdp }), recipient).await
    }

    /// Sends an `ICE_CANDIDATE` (`candidate:…` line, for m-line 0).
    pub async fn send_candidate(&mut self, candidate: &str, recipient: Option<&str>) -> Result<(), SignalingError> {
        let payload = json!({ "candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0 });
        self.send("ICE_CANDIDATE", &payload, recipient).await
    }

    /// The next service event; `Err(Closed)` once the socket is gone. Sends the keep-alive
    /// pings while it waits. Cancel-safe.
    pub async fn next_event(&mut self) -> Result<SignalingEvent, SignalingError> {
        loop {
            let next = tokio::select! {
                next = self.ws.next() => next,
                _ = self.ping.tick() => {
                    self.ws.send(Message::Ping(Default::default())).await?;
                    self.pings_sent += 1;
                    continue;
                }
            };
            let msg = match next {
                None => return Err(SignalingError::Closed),
                Some(msg) => msg?,
            };
            match msg {
                Message::Close(_) => return Err(SignalingError::Closed),
                Message::Text(_) => {
                    if let Some(ev) = parse_event(msg.to_text().unwrap_or_default()) {
                        return Ok(ev);
                    }
                }
                _ => {}
            }
        }
    }

    /// Waits up to `wait` for the next `SDP_OFFER`, skipping other events.
    pub async fn next_offer(&mut self, wait: Duration) -> Result<(String, Option<String>), SignalingError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.next_event()).await {
                Err(_) => return Err(SignalingError::NoOffer(wait)),
                Ok(Ok(SignalingEvent::Offer { sdp, sender })) => return Ok((sdp, sender)),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// Closes the WebSocket (the service sees the master leave).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// A service event from a text frame: `{messageType, messagePayload: base64(JSON), senderClientId?}`.
pub fn parse_event(text: &str) -> Option<SignalingEvent> {
    let v: Value = serde_json::from_str(text).ok()?;
    let kind = v["messageType"].as_str()?;
    let sender = v["senderClientId"].as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    let payload = || -> Option<Value> {
        let raw = base64::engine::general_purpose::STANDARD.decode(v["messagePayload"].as_str()?).ok()?;
        serde_json::from_slice(&raw).ok()
    };
    Some(match kind {
        "SDP_OFFER" => SignalingEvent::Offer { sdp: payload()?["sdp"].as_str()?.to_string(), sender },
        "ICE_CANDIDATE" => {
            SignalingEvent::Candidate { candidate: payload()?["candidate"].as_str()?.to_string(), sender }
        }
        other => SignalingEvent::Other(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, payload: &Value) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(payload.to_string());
        json!({ "messageType": kind, "messagePayload": b64, "senderClientId": "peer" }).to_string()
    }

    #[test]
    fn parses_offers_candidates_and_others() {
        let offer = event("SDP_OFFER", &json!({ "type": "offer", "sdp": "v=0" }));
        assert_eq!(parse_event(&offer), Some(SignalingEvent::Offer { sdp: "v=0".into(), sender: Some("peer".into()) }));
        let cand = event("ICE_CANDIDATE", &json!({ "candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host" }));
        assert!(matches!(parse_event(&cand), Some(SignalingEvent::Candidate { .. })));
        let status = json!({ "messageType": "STATUS_RESPONSE", "statusResponse": {} }).to_string();
        assert_eq!(parse_event(&status), Some(SignalingEvent::Other("STATUS_RESPONSE".into())));
        assert_eq!(parse_event("not json"), None);
    }

    /// A local WebSocket server that counts the pings it gets and, after `want`, sends an
    /// SDP offer; returns its `ws://` URL and the task yielding the count.
    async fn ping_counting_server(want: u64) -> (String, tokio::task::JoinHandle<u64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let mut pings = 0;
            while let Some(Ok(msg)) = ws.next().await {
                match msg {
                    Message::Ping(_) => {
                        pings += 1;
                        if pings == want {
                            let offer = event("SDP_OFFER", &json!({ "type": "offer", "sdp": "v=0" }));
                            ws.send(Message::text(offer)).await.unwrap();
                        }
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            pings
        });
        (url, task)
    }

    #[tokio::test]
    async fn pings_the_service_while_waiting_for_events() {
        let (url, server) = ping_counting_server(3).await;
        let signer = Signer::new("AKIDEXAMPLE", "secret", "us-west-2");
        let arn = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/c/1";
        let every = Duration::from_millis(40);
        let mut conn = MasterConnection::connect_with_ping(&signer, &url, arn, every).await.unwrap();
        let started = std::time::Instant::now();
        // The server answers the third ping with an offer: waiting for it needs the pings.
        let (sdp, _) = conn.next_offer(Duration::from_secs(5)).await.unwrap();
        assert_eq!(sdp, "v=0");
        assert!(started.elapsed() >= 3 * every, "pings came too early: {:?}", started.elapsed());
        assert_eq!(conn.pings_sent(), 3);
        conn.close().await;
        assert_eq!(server.await.unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn pings_every_ten_seconds_like_the_c_sdk() {
        let (url, server) = ping_counting_server(u64::MAX).await;
        let signer = Signer::new("AKIDEXAMPLE", "secret", "us-west-2");
        let arn = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/c/1";
        let mut conn = MasterConnection::connect(&signer, &url, arn).await.unwrap();
        // 25 s (of paused, auto-advancing time) without a single event: pings at 10 and 20 s.
        let waited = tokio::time::timeout(Duration::from_secs(25), conn.next_event()).await;
        assert!(waited.is_err(), "no event expected: {waited:?}");
        assert_eq!(conn.pings_sent(), 2);
        conn.close().await;
        assert_eq!(server.await.unwrap(), 2, "the server got both");
    }
}
