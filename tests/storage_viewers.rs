//! JoinStorageSessionAsViewer end to end on loopback, against an in-process reel: a str0m
//! master (`reel_sim::publisher`, as in tests/peer_ingest.rs) ingests the fixtures through
//! a storage session while str0m viewers over real UDP connect to signaling as VIEWER
//! (a real WebSocket), call the API with the official `aws-sdk-kinesisvideowebrtcstorage`,
//! answer the storage session's offer and receive H.264 frames and Opus. Plus the API's
//! errors: storage disabled, unknown channel, viewer not connected, the viewer cap (with the
//! message the KVS JS SDK checks) and a policy without the action.

#[path = "common/inproc.rs"]
mod inproc;
#[path = "common/signing.rs"]
mod signing;
#[path = "common/ws.rs"]
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesisvideowebrtcstorage::error::ProvideErrorMetadata;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use inproc::{InProcess, REGION, ROOT_KEY_ID, ROOT_SECRET};
use reel_sim::kvs::KvsClient;
use reel_sim::publisher::{MediaSource, PublisherConfig, PublisherStats, StorageChannel};
use reel_sim::sigv4::Signer;
use str0m::change::SdpOffer;
use str0m::media::{MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// May do everything on `cam-*` channels except JoinStorageSessionAsViewer.
const NO_VIEWER_KEY: &str = "AKIANOVIEWER00000001";
const SECRET: &str = "storage-viewers-test-secret-000000000000";

fn credentials() -> String {
    format!(
        r#"
[[key]]
access_key_id = "{NO_VIEWER_KEY}"
secret_access_key = "{SECRET}"
[[key.statement]]
effect = "Allow"
action = ["kinesisvideo:Describe*", "kinesisvideo:Get*", "kinesisvideo:ConnectAs*", "kinesisvideo:JoinStorageSession"]
resource = "*"
"#
    )
}

async fn reel() -> InProcess {
    InProcess::start_with(Some(&credentials()), |c| {
        c.webrtc.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        c.webrtc.workers = 2;
    })
    .await
}

/// The official `kinesis-video-webrtc-storage` client on the `WEBRTC` endpoint.
fn storage_client(webrtc: &str, key: (&str, &str)) -> aws_sdk_kinesisvideowebrtcstorage::Client {
    use aws_sdk_kinesisvideowebrtcstorage::config::{BehaviorVersion, Region};
    aws_sdk_kinesisvideowebrtcstorage::Client::from_conf(
        aws_sdk_kinesisvideowebrtcstorage::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(webrtc)
            .credentials_provider(aws_credential_types::Credentials::new(key.0, key.1, None, None, "test"))
            .build(),
    )
}

fn kvs_client(reel: &InProcess) -> KvsClient {
    KvsClient::new(&reel.url, Signer::new(ROOT_KEY_ID, ROOT_SECRET, REGION))
}

/// A channel named `name` mapped to a stream with storage enabled, and its endpoints.
async fn channel(reel: &InProcess, name: &str) -> StorageChannel {
    let client = kvs_client(reel);
    reel_sim::publisher::provision_storage_channel(&client, name, &format!("{name}-stream"), 24)
        .await
        .expect("storage channel")
}

/// A viewer's signaling WebSocket (ConnectAsViewer with `client_id`).
async fn connect_viewer(ch: &StorageChannel, client_id: &str) -> ws::Ws {
    let arn = signing::rfc3986(&ch.channel_arn);
    let base = ch.endpoints.wss.trim_end_matches('/');
    let url = format!("{base}/?X-Amz-ChannelARN={arn}&X-Amz-ClientId={client_id}");
    ws::connect(&signing::presign_url(&url, ROOT_KEY_ID, ROOT_SECRET)).await
}

/// What a viewer received.
#[derive(Debug, Default)]
struct Watched {
    connected: bool,
    video_frames: usize,
    keyframes: usize,
    first_is_keyframe: Option<bool>,
    audio_frames: usize,
}

/// Answers the storage session's offer on `ws` with a str0m viewer on real UDP and counts
/// what arrives for `run`.
async fn watch(mut ws: ws::Ws, run: Duration) -> Watched {
    let offer = loop {
        let ev = ws::recv_json(&mut ws).await;
        if ev["messageType"] == "SDP_OFFER" {
            assert!(ev.get("senderClientId").is_none_or(|s| s.is_null()), "the storage offer has no sender: {ev}");
            let payload = B64.decode(ev["messagePayload"].as_str().expect("payload")).expect("base64");
            let json: serde_json::Value = serde_json::from_slice(&payload).expect("offer json");
            break json["sdp"].as_str().expect("sdp").to_string();
        }
    };
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let local = socket.local_addr().expect("addr");
    let mut rtc = Rtc::new(Instant::now());
    let cand = Candidate::host(local, "udp").expect("candidate");
    rtc.add_local_candidate(cand.clone());
    let answer = rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(&offer).expect("offer")).expect("answer");
    let answer = serde_json::json!({ "type": "answer", "sdp": answer.to_sdp_string() }).to_string();
    ws::send(&mut ws, serde_json::json!({ "action": "SDP_ANSWER", "messagePayload": B64.encode(answer) })).await;
    let cand = serde_json::json!({ "candidate": cand.to_sdp_string(), "sdpMid": "0", "sdpMLineIndex": 0 }).to_string();
    ws::send(&mut ws, serde_json::json!({ "action": "ICE_CANDIDATE", "messagePayload": B64.encode(cand) })).await;
    let mut seen = Watched::default();
    let (mut video, mut audio): (Option<Mid>, Option<Mid>) = (None, None);
    let until = Instant::now() + run;
    let mut buf = vec![0u8; 2048];
    // The sending half stays open (dropping it would not close the socket, but keep it).
    let (_ws_tx, mut ws_rx) = futures::StreamExt::split(ws);
    loop {
        let timeout = loop {
            match rtc.poll_output().expect("viewer rtc") {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(Event::Connected) => seen.connected = true,
                Output::Event(Event::MediaAdded(m)) => match m.kind {
                    MediaKind::Video => video = Some(m.mid),
                    MediaKind::Audio => audio = Some(m.mid),
                },
                Output::Event(Event::MediaData(md)) if Some(md.mid) == video => {
                    seen.first_is_keyframe.get_or_insert(md.is_keyframe());
                    seen.video_frames += 1;
                    seen.keyframes += usize::from(md.is_keyframe());
                }
                Output::Event(Event::MediaData(md)) if Some(md.mid) == audio => seen.audio_frames += 1,
                Output::Event(_) => {}
            }
        };
        let now = Instant::now();
        if now >= until {
            return seen;
        }
        let wait = timeout.min(until).saturating_duration_since(now);
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let Ok((n, source)) = r else { continue };
                if let Ok(contents) = buf[..n].try_into() {
                    let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents });
                    let _ = rtc.handle_input(input);
                }
            }
            msg = futures::StreamExt::next(&mut ws_rx) => {
                // Trickled candidates of the storage session (its host candidate).
                if let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) = msg
                    && let Ok(ev) = serde_json::from_str::<serde_json::Value>(&t)
                    && ev["messageType"] == "ICE_CANDIDATE"
                    && let Some(p) = ev["messagePayload"].as_str().and_then(|p| B64.decode(p).ok())
                    && let Ok(c) = serde_json::from_slice::<serde_json::Value>(&p)
                    && let Some(Ok(c)) = c["candidate"].as_str().map(|s| Candidate::from_sdp_string(s.trim_start_matches("a=")))
                {
                    rtc.add_remote_candidate(c);
                }
            }
            () = tokio::time::sleep(wait) => {
                let _ = rtc.handle_input(Input::Timeout(Instant::now()));
            }
        }
    }
}

/// The error code and message of a failed JoinStorageSessionAsViewer.
async fn join_err(client: &aws_sdk_kinesisvideowebrtcstorage::Client, arn: &str, id: &str) -> (String, String) {
    let e = client.join_storage_session_as_viewer().channel_arn(arn).client_id(id).send().await.expect_err("refused");
    (e.code().unwrap_or_default().to_string(), e.message().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_viewers_watch_a_master_live() {
    let reel = reel().await;
    let ch = channel(&reel, "cam-live").await;
    let storage = storage_client(&ch.endpoints.webrtc, (ROOT_KEY_ID, ROOT_SECRET));
    // One viewer joins before the master.
    let early = connect_viewer(&ch, "early").await;
    storage
        .join_storage_session_as_viewer()
        .channel_arn(&ch.channel_arn)
        .client_id("early")
        .send()
        .await
        .expect("join");
    let early = tokio::spawn(watch(early, Duration::from_secs(12)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let source = Arc::new(MediaSource::new(reel_sim::publisher::DEFAULT_BITRATE_BPS).expect("fixtures"));
    let cfg = PublisherConfig::new(std::net::IpAddr::from([127, 0, 0, 1]), source);
    let stats = PublisherStats::new();
    let master = {
        let (client, ch, stats) = (kvs_client(&reel), ch.clone(), stats.clone());
        tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(12);
            reel_sim::publisher::publish_to_storage(&client, &ch, cfg, stats, until).await
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Two more join mid-stream (mid-GOP).
    let mut late = Vec::new();
    for id in ["late-1", "late-2"] {
        let ws = connect_viewer(&ch, id).await;
        storage.join_storage_session_as_viewer().channel_arn(&ch.channel_arn).client_id(id).send().await.expect("join");
        late.push(tokio::spawn(watch(ws, Duration::from_secs(6))));
    }
    // A fourth viewer is over the cap (after the per-channel rate quota of 2 calls/s refills).
    let _fourth = connect_viewer(&ch, "fourth").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (code, message) = join_err(&storage, &ch.channel_arn, "fourth").await;
    assert_eq!(code, "ClientLimitExceededException");
    assert!(message.to_lowercase().contains("maximum number of viewers connected to the session"), "{message}");
    let mut all = vec![early.await.expect("early viewer")];
    for l in late {
        all.push(l.await.expect("late viewer"));
    }
    let _ = master.await;
    let s = stats.snapshot();
    assert!(s.video_frames > 200, "the master published: {s:?}");
    for (i, w) in all.iter().enumerate() {
        assert!(w.connected, "viewer {i} connected: {w:?}");
        assert_eq!(w.first_is_keyframe, Some(true), "viewer {i} starts at a keyframe: {w:?}");
        assert!(w.video_frames >= 100, "viewer {i} got video: {w:?}");
        assert!(w.audio_frames >= 150, "viewer {i} got audio: {w:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_as_viewer_errors() {
    let reel = reel().await;
    let stored = channel(&reel, "cam-errors").await;
    // A channel without storage (its viewer connects on the same signaling endpoint).
    let plain_arn = kvs_client(&reel).create_signaling_channel("cam-plain").await.expect("channel");
    let plain =
        StorageChannel { channel_arn: plain_arn, stream_arn: String::new(), endpoints: stored.endpoints.clone() };
    let storage = storage_client(&stored.endpoints.webrtc, (ROOT_KEY_ID, ROOT_SECRET));
    // Storage disabled.
    let _v = connect_viewer(&plain, "v").await;
    let (code, message) = join_err(&storage, &plain.channel_arn, "v").await;
    assert_eq!(code, "InvalidArgumentException", "{message}");
    // Unknown channel.
    let unknown = stored.channel_arn.replace("cam-errors", "cam-nope");
    assert_eq!(join_err(&storage, &unknown, "v").await.0, "ResourceNotFoundException");
    // Not connected to signaling as that viewer.
    let (code, message) = join_err(&storage, &stored.channel_arn, "nobody").await;
    assert_eq!(code, "InvalidArgumentException");
    assert!(message.contains("nobody") && message.contains("connected"), "{message}");
    // Invalid client id.
    assert_eq!(join_err(&storage, &stored.channel_arn, "bad id").await.0, "InvalidArgumentException");
    // A policy without kinesisvideo:JoinStorageSessionAsViewer.
    let _w = connect_viewer(&stored, "w").await;
    let denied = storage_client(&stored.endpoints.webrtc, (NO_VIEWER_KEY, SECRET));
    let e = denied
        .join_storage_session_as_viewer()
        .channel_arn(&stored.channel_arn)
        .client_id("w")
        .send()
        .await
        .expect_err("denied");
    assert_eq!(e.code(), Some("AccessDeniedException"));
    let status = e.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(403));
    // The same viewer with the root key joins (no master yet: it waits).
    storage
        .join_storage_session_as_viewer()
        .channel_arn(&stored.channel_arn)
        .client_id("w")
        .send()
        .await
        .expect("join");
}
