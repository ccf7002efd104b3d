//! The Rust KVS master of the peer tests: a thin adapter over `reel_sim::publisher` (the
//! simulated camera the load generator and `reel demo` use), keeping the step-by-step API
//! the tests drive (connect, join, wait for the offer, answer in a chosen way, publish) and
//! the answer manglings that exercise reel's validation.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reel_sim::kvs::{ApiError, KvsClient};
use reel_sim::publisher::{MediaSource, Publisher, PublisherConfig, PublisherError, PublisherStats, RunEnd, Signal};
use reel_sim::signaling::{MasterConnection, SignalingEvent};
use reel_sim::sigv4::Signer;
use tokio::sync::{mpsc, oneshot};

/// How the master answers (to exercise reel's answer validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerMode {
    /// A normal answer.
    Normal,
    /// The audio codec renamed so the answer carries no Opus.
    WithoutOpus,
    /// A normal answer, then no media at all (idle sessions).
    Silent,
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct MasterReport {
    /// SDP offers received (the answered one plus any during the run).
    pub offers: usize,
    /// The answered offer's SDP.
    pub last_offer: String,
    /// Whether ICE+DTLS connected.
    pub connected: bool,
    /// Video frames and audio packets written.
    pub video_frames: usize,
    pub audio_packets: usize,
    /// Why the publisher stopped early, if it did.
    pub failure: Option<String>,
}

/// `POST <webrtc>/joinStorageSession {"channelArn"}`, SigV4 header-signed; returns
/// (status, "<error code> <message>" or "").
pub async fn join_storage_session(webrtc: &str, arn: &str, region: &str, key: (&str, &str)) -> (u16, String) {
    let client = KvsClient::new(webrtc, Signer::new(key.0, key.1, region));
    match client.join_storage_session(webrtc, arn).await {
        Ok(()) => (200, String::new()),
        Err(ApiError::Service { status, code, message, .. }) => (status, format!("{code} {message}")),
        Err(e) => panic!("JoinStorageSession request: {e}"),
    }
}

/// A connected master.
pub struct Master {
    /// The signaling connection (`None` only while it is being replaced).
    conn: Option<MasterConnection>,
    client: KvsClient,
    pub arn: String,
    wss: String,
    webrtc: String,
}

impl Master {
    /// ConnectAsMaster.
    pub async fn connect(wss: &str, webrtc: &str, arn: &str, region: &str, key: (&str, &str)) -> Self {
        let signer = Signer::new(key.0, key.1, region);
        let conn = MasterConnection::connect(&signer, wss, arn).await.expect("ConnectAsMaster");
        let client = KvsClient::new(webrtc, signer);
        Self { conn: Some(conn), client, arn: arn.into(), wss: wss.into(), webrtc: webrtc.into() }
    }

    fn conn(&mut self) -> &mut MasterConnection {
        self.conn.as_mut().expect("the master's signaling connection")
    }

    /// Calls JoinStorageSession for this master's channel.
    pub async fn join(&self) -> (u16, String) {
        join_storage_session(
            &self.webrtc,
            &self.arn,
            &self.client.signer.region,
            (&self.client.signer.access_key_id, &self.client.signer.secret_access_key),
        )
        .await
    }

    /// Waits up to `wait` for the next SDP_OFFER; returns its SDP.
    pub async fn next_offer(&mut self, wait: Duration) -> Option<String> {
        self.conn().next_offer(wait).await.ok().map(|(sdp, _)| sdp)
    }

    /// Answers `offer` and publishes the fixtures for `duration` (media starts once connected).
    pub async fn answer_and_publish(&mut self, offer: &str, mode: AnswerMode, duration: Duration) -> MasterReport {
        let (mut publisher, stats) = self.answer(offer, mode, duration).await;
        let end = publisher.run(self.conn(), Instant::now() + duration).await;
        publisher.disconnect();
        report(offer, &stats, end)
    }

    /// Like [`Master::answer_and_publish`] (normal answer), but `reconnect_at` after the
    /// answer the master closes its signaling WebSocket and, `gap` later, connects as master
    /// again on a new one, where it trickles its host candidate once more (recipient-less:
    /// for the storage session). The peer connection and its media carry on untouched.
    pub async fn answer_and_publish_reconnecting(
        &mut self,
        offer: &str,
        duration: Duration,
        reconnect_at: Duration,
        gap: Duration,
    ) -> MasterReport {
        let (mut publisher, stats) = self.answer(offer, AnswerMode::Normal, duration).await;
        let candidate = publisher.local_candidate();
        let (signals, mut signals_rx) = mpsc::unbounded_channel();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let publish = async {
            let end = publisher.run(&mut signals_rx, Instant::now() + duration).await.map_err(|e| stats.fail(e));
            let _ = stop.send(());
            end
        };
        let signaling = async {
            let mut conn = self.conn.take().expect("the master's signaling connection");
            forward_signals(&mut conn, &signals, tokio::time::sleep(reconnect_at)).await;
            conn.close().await;
            tokio::time::sleep(gap).await;
            let mut conn = MasterConnection::connect(&self.client.signer, &self.wss, &self.arn)
                .await
                .expect("ConnectAsMaster again");
            conn.send_candidate(&candidate, None).await.expect("send ICE_CANDIDATE on the new connection");
            forward_signals(&mut conn, &signals, async { _ = (&mut stopped).await }).await;
            self.conn = Some(conn);
        };
        let (end, ()) = tokio::join!(publish, signaling);
        publisher.disconnect();
        report(offer, &stats, end)
    }

    /// A publisher that answered `offer` over signaling (answer, then its host candidate).
    async fn answer(&mut self, offer: &str, mode: AnswerMode, duration: Duration) -> (Publisher, Arc<PublisherStats>) {
        let ip: IpAddr = reel_sim::publisher::endpoint_ip(&self.webrtc);
        let source = Arc::new(MediaSource::new(reel_sim::publisher::DEFAULT_BITRATE_BPS).expect("fixtures"));
        let mut cfg = PublisherConfig::new(ip, source);
        cfg.send_media = mode != AnswerMode::Silent;
        cfg.connect_timeout = duration;
        let stats = PublisherStats::new();
        let mut publisher = Publisher::bind(cfg, stats.clone()).await.expect("bind the publisher");
        let mut sdp = publisher.accept_offer(offer).expect("accept offer");
        if mode == AnswerMode::WithoutOpus {
            sdp = sdp.replace("opus/48000/2", "PCMU/8000");
        }
        let conn = self.conn();
        conn.send_answer(&sdp, None).await.expect("send SDP_ANSWER");
        conn.send_candidate(&publisher.local_candidate(), None).await.expect("send ICE_CANDIDATE");
        (publisher, stats)
    }

    /// Closes the WebSocket (reel sees the master disconnect).
    pub async fn close(mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
    }
}

/// Passes `conn`'s candidates and offers on to a running publisher until `until` resolves.
async fn forward_signals(
    conn: &mut MasterConnection,
    signals: &mpsc::UnboundedSender<Signal>,
    until: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(until);
    loop {
        tokio::select! {
            () = &mut until => return,
            ev = conn.next_event() => match ev {
                Ok(SignalingEvent::Candidate { candidate, .. }) => _ = signals.send(Signal::RemoteCandidate(candidate)),
                Ok(SignalingEvent::Offer { .. }) => _ = signals.send(Signal::Offer),
                Ok(SignalingEvent::Other(_)) => {}
                Err(_) => return until.await,
            },
        }
    }
}

fn report(offer: &str, stats: &PublisherStats, end: Result<RunEnd, PublisherError>) -> MasterReport {
    let s = stats.snapshot();
    MasterReport {
        offers: 1 + s.offers_while_running as usize,
        last_offer: offer.to_string(),
        connected: s.connected_us.is_some(),
        video_frames: s.video_frames as usize,
        audio_packets: s.audio_packets as usize,
        failure: end.err().map(|e| e.to_string()),
    }
}
