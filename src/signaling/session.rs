//! One WebSocket connection after the upgrade: read client messages, apply the
//! per-connection quotas, route through the bus, write events, and enforce the idle
//! timeout and the maximum connection life (with `GO_AWAY` before it).
//!
//! The loop is generic over a frame stream/sink so it runs under paused tokio time in
//! tests; [`super::ws`] adapts axum's WebSocket to it.

use std::sync::Arc;
use std::time::Duration;

use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::{Instant, sleep_until};

use super::message::{MessageLimits, ServiceEvent, parse_client_message};
use super::quota::ConnectionQuota;
use super::registry::{CloseReason, Connection, Outbound, SignalingBus};
use crate::limits::SignalingLimits;
use crate::observe::metrics;

/// A frame received from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InFrame {
    /// A text frame (a signaling message).
    Text(String),
    /// Binary, ping or pong: activity, not a message (pongs are answered by the WebSocket layer).
    Other,
    /// The client closed.
    Close,
    /// The client sent a frame or message over the size limit; it was not buffered.
    TooLarge,
}

/// A frame to send to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutFrame {
    /// A JSON event.
    Text(String),
    /// Close with a status code and reason.
    Close(u16, String),
}

/// WebSocket close code for a normal close (replaced connection).
pub const CLOSE_NORMAL: u16 = 1000;
/// WebSocket close code "going away" (idle timeout, maximum life, shutdown).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// WebSocket close code "message too big" (RFC 6455 §7.4.1).
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Prometheus counter: WebSocket frames refused for their size, before being buffered.
pub const OVERSIZED_FRAMES: &str = "reel_signaling_oversized_frames_total";

/// The timing and quota settings of one session.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Close when nothing arrives from the client for this long.
    pub idle_timeout: Duration,
    /// Close after this long in any case.
    pub max_life: Duration,
    /// Send `GO_AWAY` this long before `max_life`.
    pub go_away_before: Duration,
    /// SDP offers/answers per second.
    pub sdp_tps: f64,
    /// ICE candidates per second.
    pub ice_tps: f64,
    /// Parser limits.
    pub message: MessageLimits,
    /// Largest WebSocket frame or message read, enforced before buffering (see
    /// [`max_ws_message_bytes`]).
    pub max_frame_bytes: usize,
}

/// Room for the JSON envelope around a `messagePayload`: `action`, `recipientClientId` and
/// `correlationId` (≤ 256 characters each), field names and JSON escapes.
pub const WS_ENVELOPE_BYTES: usize = 2048;

/// Largest WebSocket message (and frame) a client may send: twice the payload limit plus
/// [`WS_ENVELOPE_BYTES`]. A payload up to twice the limit is still read and answered like
/// KVS does (`InvalidArgumentException` status response, which SDKs rely on); anything
/// larger is refused from its frame header, unread, and the connection closes (1009).
pub fn max_ws_message_bytes(l: &SignalingLimits) -> usize {
    l.max_message_payload_bytes.saturating_mul(2).saturating_add(WS_ENVELOPE_BYTES)
}

impl From<&SignalingLimits> for SessionLimits {
    fn from(l: &SignalingLimits) -> Self {
        Self {
            idle_timeout: Duration::from_secs(l.idle_timeout_secs),
            max_life: Duration::from_secs(l.max_connection_secs),
            go_away_before: Duration::from_secs(l.go_away_before_close_secs),
            sdp_tps: l.sdp_tps_per_connection,
            ice_tps: l.ice_tps_per_connection,
            message: MessageLimits { max_payload_bytes: l.max_message_payload_bytes },
            max_frame_bytes: max_ws_message_bytes(l),
        }
    }
}

/// Why a session ended (logged, and returned for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The client closed or the socket failed.
    ClientClosed,
    /// The client sent a frame or message over the size limit.
    TooLarge,
    /// No frame from the client within the idle timeout.
    Idle,
    /// The maximum connection life was reached.
    MaxLife,
    /// A newer connection took this one's role.
    Replaced,
    /// Server shutdown.
    Shutdown,
}

/// Run one registered connection until it ends; always unregisters it.
pub async fn run<S>(
    mut socket: S,
    mut conn: Connection,
    bus: Arc<dyn SignalingBus>,
    limits: SessionLimits,
) -> SessionEnd
where
    S: Stream<Item = InFrame> + Sink<OutFrame> + Unpin,
{
    let started = Instant::now();
    let max_deadline = started + limits.max_life;
    let go_away_at = max_deadline.checked_sub(limits.go_away_before).unwrap_or(started).max(started);
    let mut go_away_sent = false;
    let mut idle_deadline = started + limits.idle_timeout;
    let mut quota = ConnectionQuota::new(limits.sdp_tps, limits.ice_tps, started.into_std());

    let end = loop {
        tokio::select! {
            frame = socket.next() => match frame {
                Some(InFrame::Text(text)) => {
                    idle_deadline = Instant::now() + limits.idle_timeout;
                    if let Some(reply) = handle_text(&text, &conn, bus.as_ref(), &mut quota, &limits)
                        && socket.send(OutFrame::Text(reply.to_json())).await.is_err()
                    {
                        break SessionEnd::ClientClosed;
                    }
                }
                Some(InFrame::Other) => idle_deadline = Instant::now() + limits.idle_timeout,
                Some(InFrame::Close) | None => break SessionEnd::ClientClosed,
                Some(InFrame::TooLarge) => {
                    ::metrics::counter!(OVERSIZED_FRAMES).increment(1);
                    let reason = format!("message exceeds {} bytes", limits.max_frame_bytes);
                    let _ = socket.send(OutFrame::Close(CLOSE_TOO_BIG, reason)).await;
                    break SessionEnd::TooLarge;
                }
            },
            out = conn.outbound.recv() => match out {
                Some(Outbound::Event(event)) => {
                    if socket.send(OutFrame::Text(event.to_json())).await.is_err() {
                        break SessionEnd::ClientClosed;
                    }
                }
                Some(Outbound::Close(CloseReason::Replaced)) => {
                    let _ = socket.send(OutFrame::Close(CLOSE_NORMAL, "replaced by a newer connection".into())).await;
                    break SessionEnd::Replaced;
                }
                Some(Outbound::Close(CloseReason::Shutdown)) | None => {
                    let _ = socket.send(OutFrame::Close(CLOSE_GOING_AWAY, "server shutting down".into())).await;
                    break SessionEnd::Shutdown;
                }
            },
            _ = sleep_until(go_away_at), if !go_away_sent => {
                go_away_sent = true;
                if socket.send(OutFrame::Text(ServiceEvent::go_away().to_json())).await.is_err() {
                    break SessionEnd::ClientClosed;
                }
            }
            _ = sleep_until(max_deadline) => {
                let _ = socket.send(OutFrame::Close(CLOSE_GOING_AWAY, "maximum connection duration reached".into())).await;
                break SessionEnd::MaxLife;
            }
            _ = sleep_until(idle_deadline) => {
                let _ = socket.send(OutFrame::Close(CLOSE_GOING_AWAY, "idle timeout".into())).await;
                break SessionEnd::Idle;
            }
        }
    };
    let closing = std::time::Instant::now();
    bus.disconnect(&conn.endpoint);
    let _ = socket.close().await;
    metrics::record_call("Disconnect", None, closing.elapsed());
    tracing::info!(reason = ?end, lasted_secs = started.elapsed().as_secs(), "signaling connection ended");
    end
}

/// Parse, rate-limit and route one text frame; returns the `STATUS_RESPONSE` to send, if any.
fn handle_text(
    text: &str,
    conn: &Connection,
    bus: &dyn SignalingBus,
    quota: &mut ConnectionQuota,
    limits: &SessionLimits,
) -> Option<ServiceEvent> {
    let received = std::time::Instant::now();
    let now = Instant::now().into_std();
    let msg = match parse_client_message(text, limits.message) {
        Ok(m) => m,
        Err(failure) => {
            tracing::debug!(error = %failure.error, "refused signaling message");
            return failure
                .correlation_id
                .map(|c| ServiceEvent::status(c, "InvalidArgumentException", 400, failure.error.to_string()));
        }
    };
    let operation = msg.message.kind.operation();
    let correlation_id = msg.correlation_id.clone();
    let result: Result<(), (&'static str, String)> = if !quota.admit(msg.message.kind, now) {
        let rate = if msg.message.kind.is_sdp() { limits.sdp_tps } else { limits.ice_tps };
        Err((
            "ClientLimitExceededException",
            format!("{operation} rate exceeded: limit is {rate} per second per connection"),
        ))
    } else {
        bus.route(&conn.endpoint, msg, now).map_err(|e| (e.error_type(), e.to_string()))
    };
    metrics::record_call(operation, result.as_ref().err().map(|e| e.0), received.elapsed());
    match result {
        Ok(()) => None,
        Err((error_type, description)) => {
            tracing::debug!(operation, error_type, %description, "signaling message failed");
            correlation_id.map(|c| ServiceEvent::status(c, error_type, 400, description))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::pending::Party;
    use crate::signaling::registry::{ChannelInfo, LocalBus};
    use futures::channel::mpsc as fmpsc;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    const ARN: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/c/1";

    /// An in-memory socket: the test pushes client frames and reads server frames.
    struct TestSocket {
        inbound: fmpsc::UnboundedReceiver<InFrame>,
        outbound: fmpsc::UnboundedSender<OutFrame>,
    }

    impl Stream for TestSocket {
        type Item = InFrame;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<InFrame>> {
            Pin::new(&mut self.inbound).poll_next(cx)
        }
    }

    impl Sink<OutFrame> for TestSocket {
        type Error = fmpsc::SendError;
        fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.outbound).poll_ready(cx)
        }
        fn start_send(mut self: Pin<&mut Self>, item: OutFrame) -> Result<(), Self::Error> {
            Pin::new(&mut self.outbound).start_send(item)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.outbound).poll_flush(cx)
        }
        fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.outbound).poll_close(cx)
        }
    }

    struct Client {
        to_server: fmpsc::UnboundedSender<InFrame>,
        from_server: fmpsc::UnboundedReceiver<OutFrame>,
        task: tokio::task::JoinHandle<SessionEnd>,
    }

    fn limits() -> SessionLimits {
        SessionLimits::from(&SignalingLimits::default())
    }

    fn start(bus: &Arc<LocalBus>, role: Party, limits: SessionLimits) -> Client {
        let channel = ChannelInfo { arn: ARN.into(), message_ttl: Duration::from_secs(60) };
        let conn = bus.connect(&channel, role, Instant::now().into_std()).expect("connect");
        let (to_server, inbound) = fmpsc::unbounded();
        let (outbound, from_server) = fmpsc::unbounded();
        let bus_dyn: Arc<dyn SignalingBus> = bus.clone();
        let task = tokio::spawn(run(TestSocket { inbound, outbound }, conn, bus_dyn, limits));
        Client { to_server, from_server, task }
    }

    async fn next_text(c: &mut Client) -> serde_json::Value {
        match c.from_server.next().await {
            Some(OutFrame::Text(t)) => serde_json::from_str(&t).expect("json"),
            other => panic!("expected text, got {other:?}"),
        }
    }

    fn bus() -> Arc<LocalBus> {
        Arc::new(LocalBus::new(SignalingLimits { connect_tps_per_channel: 100.0, ..SignalingLimits::default() }))
    }

    #[tokio::test(start_paused = true)]
    async fn go_away_a_minute_before_the_maximum_life_then_close() {
        let bus = bus();
        let mut c = start(&bus, Party::Master, limits());
        // Stay active so the idle timeout never fires.
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_secs(9 * 60)).await;
            c.to_server.unbounded_send(InFrame::Other).expect("send");
            tokio::task::yield_now().await;
        }
        // 54 min elapsed; GO_AWAY at 59 min.
        tokio::time::sleep(Duration::from_secs(4 * 60)).await;
        c.to_server.unbounded_send(InFrame::Other).expect("send");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(next_text(&mut c).await["messageType"], "GO_AWAY");
        c.to_server.unbounded_send(InFrame::Other).expect("send");
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(
            c.from_server.next().await,
            Some(OutFrame::Close(CLOSE_GOING_AWAY, "maximum connection duration reached".into()))
        );
        assert_eq!(c.task.await.expect("join"), SessionEnd::MaxLife);
        assert_eq!(bus.counts().masters, 0, "unregistered");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_closes_and_activity_defers_it() {
        let bus = bus();
        let mut c = start(&bus, Party::Viewer("v".into()), limits());
        tokio::time::sleep(Duration::from_secs(9 * 60)).await;
        c.to_server.unbounded_send(InFrame::Other).expect("ping counts as activity");
        tokio::time::sleep(Duration::from_secs(9 * 60)).await;
        assert!(!c.task.is_finished());
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(c.from_server.next().await, Some(OutFrame::Close(CLOSE_GOING_AWAY, "idle timeout".into())));
        assert_eq!(c.task.await.expect("join"), SessionEnd::Idle);
        assert_eq!(bus.counts().viewers, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn status_response_only_with_correlation_id_and_quota() {
        let bus = bus();
        let mut master = start(&bus, Party::Master, limits());
        let mut viewer = start(&bus, Party::Viewer("v1".into()), limits());
        // Master without recipient and no storage peer: routing error.
        master
            .to_server
            .unbounded_send(InFrame::Text(
                r#"{"action":"SDP_ANSWER","messagePayload":"YQ==","correlationId":"c1"}"#.into(),
            ))
            .expect("send");
        let r = next_text(&mut master).await;
        assert_eq!(r["messageType"], "STATUS_RESPONSE");
        assert_eq!(r["statusResponse"]["correlationId"], "c1");
        assert_eq!(r["statusResponse"]["errorType"], "InvalidArgumentException");
        assert_eq!(r["statusResponse"]["statusCode"], "400");
        // Same failure without correlationId: silence (the next frame seen is the viewer's offer).
        master
            .to_server
            .unbounded_send(InFrame::Text(r#"{"action":"SDP_ANSWER","messagePayload":"YQ=="}"#.into()))
            .expect("send");
        master.to_server.unbounded_send(InFrame::Text("garbage".into())).expect("send");
        // Viewer: 5 SDP per second pass, the 6th is throttled.
        for i in 0..6 {
            viewer
                .to_server
                .unbounded_send(InFrame::Text(format!(
                    r#"{{"action":"SDP_OFFER","messagePayload":"b2Zm","correlationId":"o{i}"}}"#
                )))
                .expect("send");
        }
        let r = next_text(&mut viewer).await;
        assert_eq!(r["statusResponse"]["correlationId"], "o5");
        assert_eq!(r["statusResponse"]["errorType"], "ClientLimitExceededException");
        // The offers reached the master, each from v1; pending replaced nothing (master online).
        for _ in 0..5 {
            let e = next_text(&mut master).await;
            assert_eq!((e["messageType"].as_str(), e["senderClientId"].as_str()), (Some("SDP_OFFER"), Some("v1")));
        }
        // After a second the budget is back.
        tokio::time::sleep(Duration::from_secs(1)).await;
        viewer
            .to_server
            .unbounded_send(InFrame::Text(
                r#"{"action":"SDP_OFFER","messagePayload":"b2Zm","correlationId":"o6"}"#.into(),
            ))
            .expect("send");
        assert_eq!(next_text(&mut master).await["messageType"], "SDP_OFFER");
        // Bad message with correlationId.
        viewer
            .to_server
            .unbounded_send(InFrame::Text(
                r#"{"action":"BOGUS","messagePayload":"b2Zm","correlationId":"bad-1"}"#.into(),
            ))
            .expect("send");
        let r = next_text(&mut viewer).await;
        assert_eq!(
            (r["statusResponse"]["correlationId"].as_str(), r["statusResponse"]["errorType"].as_str()),
            (Some("bad-1"), Some("InvalidArgumentException"))
        );
        viewer.to_server.unbounded_send(InFrame::Close).expect("close");
        assert_eq!(viewer.task.await.expect("join"), SessionEnd::ClientClosed);
    }

    #[tokio::test(start_paused = true)]
    async fn replaced_and_shutdown_close_the_socket() {
        let bus = bus();
        let mut first = start(&bus, Party::Master, limits());
        let mut second = start(&bus, Party::Master, limits());
        assert_eq!(
            first.from_server.next().await,
            Some(OutFrame::Close(CLOSE_NORMAL, "replaced by a newer connection".into()))
        );
        assert_eq!(first.task.await.expect("join"), SessionEnd::Replaced);
        assert_eq!(bus.counts().masters, 1, "the stale disconnect left the new master registered");
        bus.broadcast(ServiceEvent::go_away());
        assert_eq!(next_text(&mut second).await["messageType"], "GO_AWAY");
        bus.close_all();
        assert_eq!(
            second.from_server.next().await,
            Some(OutFrame::Close(CLOSE_GOING_AWAY, "server shutting down".into()))
        );
        assert_eq!(second.task.await.expect("join"), SessionEnd::Shutdown);
    }
}
