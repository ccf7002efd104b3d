//! Cluster mode, signaling and metadata: three reel nodes sharing a real Postgres
//! (`--metadata-url`) and a real `nats-server` (`--bus-url`), driven by the official AWS SDK
//! and real WebSocket clients. What one node creates, the others describe at once; a master
//! on one node and a viewer on another exchange offer, answer and candidates; the newest
//! master wins cluster-wide; the viewer limit counts every node; a node killed with
//! SIGKILL drops out of the others' view after the node timeout.

mod common;

use std::time::Duration;

use aws_sdk_kinesisvideo::types::ChannelProtocol;
use common::nats::NatsServer;
use common::s3::S3Server;
use common::signing::{presign_url, rfc3986};
use common::ws::{self, Ws, assert_closed, recv_json, send};
use common::{Options, ROOT_KEY_ID, ROOT_SECRET, Reel};

/// Fast liveness so the node-loss check takes about a second.
const CLUSTER_CONFIG: &str =
    "[limits.cluster]\nheartbeat_ms = 200\nnode_timeout_ms = 1000\n\n[limits.signaling]\nmax_viewers_per_channel = 2\n";

/// What the nodes of one test share: NATS, an S3 server, a fresh Postgres database and the
/// config file.
struct Services {
    nats: NatsServer,
    s3: S3Server,
    metadata_url: String,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Services {
    async fn start(config: &str) -> Self {
        let nats = NatsServer::start();
        let s3 = S3Server::start("127.0.0.1:0".parse().expect("addr"));
        let metadata_url = reel::testkit::postgres::fresh_database().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let config = common::write_file(dir.path(), "cluster.toml", config);
        Self { nats, s3, metadata_url, config, _dir: dir }
    }

    /// Starts node `id` on the shared services.
    fn node(&self, id: &str) -> Reel {
        start_node(id, &self.metadata_url, &self.nats.url, &self.config, &self.s3)
    }
}

/// reel-sim's KVS client signed with the root key, on `node`.
fn sim(node: &Reel) -> reel_sim::kvs::KvsClient {
    reel_sim::kvs::KvsClient::new(&node.url, reel_sim::sigv4::Signer::new(ROOT_KEY_ID, ROOT_SECRET, common::REGION))
}

fn start_node(id: &str, metadata_url: &str, bus_url: &str, config: &std::path::Path, s3: &S3Server) -> Reel {
    let mut args: Vec<String> = vec![
        "--node-id".into(),
        id.into(),
        "--metadata-url".into(),
        metadata_url.into(),
        "--bus-url".into(),
        bus_url.into(),
        "--config".into(),
        config.display().to_string(),
    ];
    args.extend(s3.reel_args("reel/"));
    Reel::start_with(Options { args, ..Default::default() })
}

/// The node's presigned ConnectAsMaster/ConnectAsViewer URL for `arn`.
async fn presigned(node: &Reel, arn: &str, client_id: Option<&str>) -> String {
    let endpoints = common::master_endpoints(&node.kvs(), arn, &[ChannelProtocol::Wss]).await;
    let wss = endpoints.get(&ChannelProtocol::Wss).expect("WSS endpoint");
    let mut url = format!("{}/?X-Amz-ChannelARN={}", wss.trim_end_matches('/'), rfc3986(arn));
    if let Some(id) = client_id {
        url.push_str(&format!("&X-Amz-ClientId={}", rfc3986(id)));
    }
    presign_url(&url, ROOT_KEY_ID, ROOT_SECRET)
}

async fn connect(node: &Reel, arn: &str, client_id: Option<&str>) -> Ws {
    ws::connect(&presigned(node, arn, client_id).await).await
}

fn payload(ev: &serde_json::Value) -> &str {
    ev["messagePayload"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_metadata_and_signaling() {
    let services = Services::start(CLUSTER_CONFIG).await;
    let a = services.node("node-a");
    let b = services.node("node-b");
    let mut c = services.node("node-c");

    // Every node is ready: its metadata database, the bus and S3 answer.
    for (node, id) in [(&a, "node-a"), (&b, "node-b"), (&c, "node-c")] {
        let res = reqwest::get(format!("{}/readyz", node.url)).await.expect("readyz");
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = res.json().await.expect("json");
        assert_eq!(body, serde_json::json!({"ready": true, "node": id, "metadata": "ok", "bus": "ok", "s3": "ok"}));
    }

    // Metadata: created on A, described on B and C at once, names unique cluster-wide.
    let arn = a.kvs().create_signaling_channel().channel_name("cam-1").send().await.expect("create on A");
    let arn = arn.channel_arn().expect("ARN").to_string();
    for node in [&b, &c] {
        let info = node.kvs().describe_signaling_channel().channel_name("cam-1").send().await.expect("describe");
        assert_eq!(info.channel_info().and_then(|i| i.channel_arn()), Some(arn.as_str()));
    }
    let again = c.kvs().create_signaling_channel().channel_name("cam-1").send().await;
    let err = again.expect_err("duplicate name on another node");
    assert_eq!(err.into_service_error().meta().code(), Some("ResourceInUseException"));

    // Signaling: master on A, viewer on C.
    let mut master = connect(&a, &arn, None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut viewer = connect(&c, &arn, Some("viewer-1")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&mut viewer, serde_json::json!({"action":"SDP_OFFER","messagePayload":"b2ZmZXI="})).await;
    let offer = recv_json(&mut master).await;
    assert_eq!(
        (offer["messageType"].as_str(), offer["senderClientId"].as_str()),
        (Some("SDP_OFFER"), Some("viewer-1"))
    );
    assert_eq!(payload(&offer), "b2ZmZXI=");
    send(
        &mut master,
        serde_json::json!({"action":"SDP_ANSWER","recipientClientId":"viewer-1","messagePayload":"YW5zd2Vy"}),
    )
    .await;
    send(
        &mut master,
        serde_json::json!({"action":"ICE_CANDIDATE","recipientClientId":"viewer-1","messagePayload":"Y2FuZA=="}),
    )
    .await;
    let answer = recv_json(&mut viewer).await;
    assert_eq!((answer["messageType"].as_str(), payload(&answer)), (Some("SDP_ANSWER"), "YW5zd2Vy"));
    assert!(answer.get("senderClientId").is_none(), "the master's messages carry no sender: {answer}");
    assert_eq!(recv_json(&mut viewer).await["messageType"], "ICE_CANDIDATE");

    // The viewer limit (2 here) counts viewers on every node.
    let _second = connect(&b, &arn, Some("viewer-2")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = ws::refused(&presigned(&a, &arn, Some("viewer-3")).await).await;
    assert_eq!((status, body["__type"].as_str()), (400, Some("ClientLimitExceededException")), "{body}");

    // Newest master wins cluster-wide: a master on B replaces the one on A.
    let mut master_b = connect(&b, &arn, None).await;
    assert_closed(&mut master).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&mut viewer, serde_json::json!({"action":"ICE_CANDIDATE","messagePayload":"djE="})).await;
    let candidate = recv_json(&mut master_b).await;
    assert_eq!((candidate["senderClientId"].as_str(), payload(&candidate)), (Some("viewer-1"), "djE="));

    // Storage: JoinStorageSession served by A runs the storage peer there; it reaches the
    // master on B through the bus (an SDP offer without senderClientId), A takes the stream's
    // writer lease, and GetDataEndpoint on any node answers A's URL.
    let stream_arn = a.kvs().create_stream().stream_name("cam-1-stream").data_retention_in_hours(1).send().await;
    let stream_arn = stream_arn.expect("create stream").stream_arn().expect("ARN").to_string();
    sim(&a).enable_media_storage(&arn, &stream_arn).await.expect("enable storage");
    sim(&a).join_storage_session(&a.url, &arn).await.expect("JoinStorageSession on A");
    let offer = recv_json(&mut master_b).await;
    assert_eq!(offer["messageType"], "SDP_OFFER", "{offer}");
    assert!(offer.get("senderClientId").is_none(), "the storage peer's offer has no sender: {offer}");
    for node in [&a, &b, &c] {
        let endpoint = sim(node).data_endpoint(&stream_arn, "GET_MEDIA").await.expect("GetDataEndpoint");
        assert_eq!(endpoint.trim_end_matches('/'), a.url.trim_end_matches('/'), "the writer's URL");
    }

    // A node killed with SIGKILL leaves the others' view after the node timeout: viewer-1
    // (on C) no longer counts, so a third viewer fits again.
    c.kill();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let _third = connect(&a, &arn, Some("viewer-3")).await;
    drop(viewer);
}

/// Heartbeats far apart, so a node can only know another's URL from the Hello exchange.
const SLOW_HEARTBEAT_CONFIG: &str = "[limits.cluster]\nheartbeat_ms = 30000\nnode_timeout_ms = 60000\n";

/// A node that joins learns the URLs of the nodes already running at once (they answer its
/// Hello), not at their next heartbeat: GetDataEndpoint and a VIEWER's
/// GetSignalingChannelEndpoint on it name the node running the channel's storage session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_routes_to_the_others_at_once() {
    let services = Services::start(SLOW_HEARTBEAT_CONFIG).await;
    let a = services.node("node-a");
    // A's first heartbeat went out before B existed; the next is 30 s away.
    let b = services.node("node-b");
    let arn = a.kvs().create_signaling_channel().channel_name("cam-2").send().await.expect("create channel");
    let arn = arn.channel_arn().expect("ARN").to_string();
    let stream_arn = a.kvs().create_stream().stream_name("cam-2-stream").data_retention_in_hours(1).send().await;
    let stream_arn = stream_arn.expect("create stream").stream_arn().expect("ARN").to_string();
    sim(&a).enable_media_storage(&arn, &stream_arn).await.expect("enable storage");
    let _master = connect(&a, &arn, None).await;
    sim(&a).join_storage_session(&a.url, &arn).await.expect("JoinStorageSession on A");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let same = |u: &str| u.trim_end_matches('/') == a.url.trim_end_matches('/');
    loop {
        let data = sim(&b).data_endpoint(&stream_arn, "GET_MEDIA").await.expect("GetDataEndpoint on B");
        let viewer = sim(&b).viewer_endpoints(&arn).await.expect("VIEWER endpoints on B");
        if same(&data) && same(&viewer.webrtc) && same(&viewer.https) {
            assert_eq!(viewer.wss.replacen("ws", "http", 1).trim_end_matches('/'), a.url.trim_end_matches('/'));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B still routes to {data} / {viewer:?}, not A ({}), 5 s after A's storage session started",
            a.url
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a simulated viewer entering through `entry`: it follows the VIEWER endpoints
/// `entry` names, or (`direct`) connects and joins on `entry` itself.
fn spawn_viewer(
    entry: &Reel,
    channel: &reel_sim::publisher::StorageChannel,
    client_id: &str,
    direct: bool,
    until: std::time::Instant,
) -> (std::sync::Arc<reel_sim::viewer::ViewerStats>, tokio::task::JoinHandle<Result<(), String>>) {
    use reel_sim::viewer::{ViewerConfig, ViewerStats, watch_storage_session};
    let stats = ViewerStats::new();
    let (client, channel, watching) = (sim(entry), channel.clone(), stats.clone());
    let cfg = ViewerConfig { direct, ..ViewerConfig::new("127.0.0.1".parse().expect("ip"), client_id) };
    let task = tokio::spawn(async move {
        watch_storage_session(&client, &channel, cfg, watching, until).await.map_err(|e| e.to_string())
    });
    (stats, task)
}

/// A stored channel's viewer sessions run on the node of its storage session, wherever the
/// viewers and the master enter. Before any session, every node names the channel's home
/// node as the VIEWER endpoint. A viewer that ignores it (its WebSocket and
/// JoinStorageSessionAsViewer on another node) still gets its session there, through the
/// bus. The master's signaling and JoinStorageSession go to the third node, which starts
/// the session where the viewers wait; both viewers get the camera. Afterwards a node that
/// does not write the stream serves GetImages stills of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_get_the_session_wherever_they_and_the_master_enter() {
    use reel_sim::publisher::{
        MediaSource, PublisherConfig, PublisherStats, ReconnectPolicy, StorageChannel, provision_storage_channel,
        publish_with_reconnect,
    };
    let services = Services::start(CLUSTER_CONFIG).await;
    let (a, b, c) = (services.node("node-a"), services.node("node-b"), services.node("node-c"));
    let logs = || format!("A:\n{}\nB:\n{}\nC:\n{}", a.log(), b.log(), c.log());
    let channel = provision_storage_channel(&sim(&a), "early", "early-stream", 1).await.expect("provision");
    let same = |u: &str, node: &Reel| u.trim_end_matches('/') == node.url.trim_end_matches('/');

    // No session, no viewers: every node sends VIEWERs to the same node, the channel's home.
    let mut named = Vec::new();
    for node in [&a, &b, &c] {
        let endpoints = sim(node).viewer_endpoints(&channel.channel_arn).await.expect("VIEWER endpoints");
        assert!(same(&endpoints.wss.replacen("ws", "http", 1), node_named(&endpoints.webrtc, [&a, &b, &c])));
        named.push(endpoints.webrtc);
    }
    assert!(named.iter().all(|n| n == &named[0]), "the nodes disagree on the VIEWER endpoint: {named:?}");
    let home = node_named(&named[0], [&a, &b, &c]);
    let others: Vec<&Reel> = [&a, &b, &c].into_iter().filter(|n| n.url != home.url).collect();
    let (direct, entry) = (others[0], others[1]);

    // The first viewer ignores the endpoints: its WebSocket and its join are on `direct`,
    // which asks the home node to run its session.
    let until = std::time::Instant::now() + Duration::from_secs(16);
    let first = spawn_viewer(direct, &channel, "early-1", true, until);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics =
            reqwest::get(format!("{}/metrics", direct.url)).await.expect("metrics").text().await.expect("body");
        if common::metric(&metrics, "reel_storage_viewer_handoffs_total", &[("outcome", "joined")]) == Some(1.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the direct viewer's join was not handed to the home node\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The second follows the endpoints `entry` names: the home node, where the first waits.
    let second = spawn_viewer(entry, &channel, "early-2", false, until);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The camera's signaling and JoinStorageSession go to `entry` too.
    let endpoints = sim(entry).master_endpoints(&channel.channel_arn).await.expect("MASTER endpoints");
    assert!(same(&endpoints.webrtc, entry), "{endpoints:?}");
    let published = PublisherStats::new();
    let camera = {
        let channel = StorageChannel { endpoints, ..channel.clone() };
        let (client, stats) = (sim(entry), published.clone());
        let cfg = PublisherConfig::new(
            "127.0.0.1".parse().expect("ip"),
            std::sync::Arc::new(MediaSource::new(500_000).expect("media")),
        );
        tokio::spawn(async move {
            let _ = publish_with_reconnect(&client, &channel, cfg, stats, until, ReconnectPolicy::default()).await;
        })
    };
    for (id, (stats, task)) in [("early-1", first), ("early-2", second)] {
        let watched = task.await.expect("viewer task");
        common::assert_watched_live(id, &watched, &stats, format!("camera {:?}\n{}", published.snapshot(), logs()));
    }
    camera.abort();
    // The home node runs the session and writes the stream; `entry` handed it over once.
    let writer = sim(&a).data_endpoint(&channel.stream_arn, "GET_MEDIA").await.expect("GetDataEndpoint");
    assert!(same(&writer, home), "the writer is {writer}, not the home node ({})", home.url);
    let metrics = reqwest::get(format!("{}/metrics", entry.url)).await.expect("metrics").text().await.expect("body");
    let started = common::metric(&metrics, "reel_storage_session_handoffs_total", &[("outcome", "started")]);
    assert_eq!(started, Some(1.0), "hand-offs of the master's node:\n{metrics}");

    // Stills of what was stored, from a node that does not write the stream (GetImages
    // reads the shared store): the official archived-media SDK gets JPEGs of the camera.
    let archived = archived_client(&direct.url);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    let at = |ms: u128| aws_sdk_kinesisvideoarchivedmedia::primitives::DateTime::from_millis(ms as i64);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let stills = loop {
        let out = archived
            .get_images()
            .stream_arn(&channel.stream_arn)
            .image_selector_type(aws_sdk_kinesisvideoarchivedmedia::types::ImageSelectorType::ServerTimestamp)
            .start_timestamp(at(now_ms - 30_000))
            .end_timestamp(at(now_ms))
            .sampling_interval(2_000)
            .format(aws_sdk_kinesisvideoarchivedmedia::types::Format::Jpeg)
            .send()
            .await
            .expect("GetImages on a node that does not write the stream");
        let stills: Vec<String> = out.images().iter().filter_map(|i| i.image_content().map(str::to_string)).collect();
        if stills.len() >= 4 || std::time::Instant::now() > deadline {
            break stills;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(stills.len() >= 4, "{} stills of ~16 s of camera\n{}", stills.len(), logs());
    use base64::Engine;
    for still in &stills {
        let jpeg = base64::engine::general_purpose::STANDARD.decode(still).expect("base64");
        assert_eq!(&jpeg[..3], &[0xFF, 0xD8, 0xFF], "a JPEG");
    }
}

/// An archived-media client of the root key for `url`.
fn archived_client(url: &str) -> aws_sdk_kinesisvideoarchivedmedia::Client {
    use aws_sdk_kinesisvideoarchivedmedia::config::{BehaviorVersion, Region};
    aws_sdk_kinesisvideoarchivedmedia::Client::from_conf(
        aws_sdk_kinesisvideoarchivedmedia::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(common::REGION))
            .endpoint_url(url)
            .credentials_provider(aws_credential_types::Credentials::new(ROOT_KEY_ID, ROOT_SECRET, None, None, "test"))
            .build(),
    )
}

/// The node among `nodes` whose URL is `url`.
fn node_named<'a>(url: &str, nodes: [&'a Reel; 3]) -> &'a Reel {
    let url = url.trim_end_matches('/');
    match nodes.into_iter().find(|n| n.url.trim_end_matches('/') == url) {
        Some(node) => node,
        None => panic!("{url} is none of the nodes"),
    }
}

/// PutMedia in a cluster: a producer on one node writes under the stream's writer lease,
/// another node lists and serves what it stored, and a newer PutMedia on that other node
/// takes the stream over (the older connection ends with an ERROR, as its lease is lost).
#[tokio::test]
async fn put_media_on_one_node_is_read_on_another_and_the_newest_connection_wins() {
    use common::producer::{Request, Signer, Upload, pic_stream};
    let services = Services::start(CLUSTER_CONFIG).await;
    let (a, b) = (services.node("node-a"), services.node("node-b"));
    let logs = || format!("A:\n{}\nB:\n{}", a.log(), b.log());
    a.kvs().create_stream().stream_name("producer-cam").data_retention_in_hours(24).send().await.expect("CreateStream");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
    let frags = reel::testkit::fixture_fragments((now as i64 - 20_000) * 1_000).expect("fixture");
    let request = Request {
        stream_name: "producer-cam",
        timecode_type: "ABSOLUTE",
        start: "1700000000.000",
        signer: Signer::C,
        key_id: ROOT_KEY_ID,
        secret: ROOT_SECRET,
        region: common::REGION,
        acks: true,
    };

    // On B: two fragments stored, the producer then keeps sending nothing (its third
    // cluster is open).
    let body = pic_stream(&frags, |f| f.producer_ts_ms);
    let third = body.windows(4).rposition(|w| w == [0x1F, 0x43, 0xB6, 0x75]).expect("third cluster");
    let mut older = Upload::open(&b.url, &request).await;
    older.send(&body[..third + 100], 4096).await;
    assert_eq!(older.status().await.0, 200, "{}", logs());
    let acks = older.acks_until_persisted(2).await;
    let numbers: Vec<String> = acks
        .iter()
        .filter(|a| a["EventType"] == "PERSISTED")
        .map(|a| a["FragmentNumber"].as_str().expect("number").to_string())
        .collect();

    // A, which does not write the stream, lists and serves them.
    let archived = archived_client(&a.url);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = archived.list_fragments().stream_name("producer-cam").send().await.expect("ListFragments");
        let mut got: Vec<String> =
            listed.fragments().iter().filter_map(|f| f.fragment_number().map(str::to_string)).collect();
        got.sort();
        if got == numbers {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "A lists {got:?}, B stored {numbers:?}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let media = archived
        .get_media_for_fragment_list()
        .stream_name("producer-cam")
        .fragments(&numbers[0])
        .send()
        .await
        .expect("GetMediaForFragmentList on A")
        .payload
        .collect()
        .await
        .expect("body")
        .into_bytes();
    let doc = reel_media::mkv::parse_document(&media).expect("an MKV document");
    assert!(doc.frames.len() > 60, "{} frames in a 2 s fragment", doc.frames.len());

    // A newer PutMedia on A takes the stream: B's connection ends with an ERROR (its lease
    // is gone), and the fragments A receives are stored.
    let newer_body = pic_stream(&frags[2..], |f| f.producer_ts_ms);
    let mut newer = Upload::open(&a.url, &request).await;
    newer.send(&newer_body, 4096).await;
    assert_eq!(newer.status().await.0, 200);
    newer.acks_until_persisted(1).await;
    newer.end().await;
    let mut ended_with = Vec::new();
    while let Some(ack) = older.ack().await {
        ended_with.push(ack);
    }
    assert!(
        ended_with.iter().any(|a| a["EventType"] == "ERROR" && a["ErrorId"] == 5000),
        "B's connection ended with {ended_with:?}\n{}",
        logs()
    );
    let listed = archived.list_fragments().stream_name("producer-cam").send().await.expect("ListFragments");
    assert_eq!(listed.fragments().len(), 3, "two from B, one from A\n{}", logs());
}
