//! The Rust KVS master of the peer tests: a thin adapter over `reel_sim::publisher` (the
//! simulated camera the load generator and `reel demo` use), keeping the step-by-step API
//! the tests drive (connect, join, wait for the offer, answer in a chosen way, publish) and
//! the answer manglings that exercise reel's validation.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reel_sim::kvs::{ApiError, KvsClient};
use reel_sim::publisher::{MediaSource, Publisher, PublisherConfig, PublisherStats};
use reel_sim::signaling::MasterConnection;
use reel_sim::sigv4::Signer;

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
    conn: MasterConnection,
    client: KvsClient,
    pub arn: String,
    webrtc: String,
}

impl Master {
    /// ConnectAsMaster.
    pub async fn connect(wss: &str, webrtc: &str, arn: &str, region: &str, key: (&str, &str)) -> Self {
        let signer = Signer::new(key.0, key.1, region);
        let conn = MasterConnection::connect(&signer, wss, arn).await.expect("ConnectAsMaster");
        Self { conn, client: KvsClient::new(webrtc, signer), arn: arn.into(), webrtc: webrtc.into() }
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
        self.conn.next_offer(wait).await.ok().map(|(sdp, _)| sdp)
    }

    /// Answers `offer` and publishes the fixtures for `duration` (media starts once connected).
    pub async fn answer_and_publish(&mut self, offer: &str, mode: AnswerMode, duration: Duration) -> MasterReport {
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
        self.conn.send_answer(&sdp, None).await.expect("send SDP_ANSWER");
        self.conn.send_candidate(&publisher.local_candidate(), None).await.expect("send ICE_CANDIDATE");
        let end = publisher.run(&mut self.conn, Instant::now() + duration).await;
        publisher.disconnect();
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

    /// Closes the WebSocket (reel sees the master disconnect).
    pub async fn close(self) {
        self.conn.close().await;
    }
}
