//! Cluster mode, failures: three reel nodes behind HAProxy on a real Postgres, nats-server
//! and S3 server (s3s-fs), all inside a private network namespace (`common::cluster`).
//! Clients go through the load balancer with the official AWS SDK and real WebSockets.
//!
//! - `netns_node_loss_behind_haproxy`: a node killed with SIGKILL drops out of the load balancer
//!   within seconds without failing API calls, the others stay ready, signaling works again
//!   after the clients reconnect, and the node restarted on its id and port rejoins.
//! - `netns_postgres_outage_behind_haproxy`: while Postgres is down for 5 s, API calls fail
//!   promptly with a KVS-shaped 5xx; afterwards they succeed again without restarting nodes,
//!   and a camera ingesting throughout loses nothing (its fragments cover the outage).
//! - `netns_ingest_survives_the_writer_node_behind_haproxy`: the node writing a camera's stream is
//!   killed with SIGKILL; the camera reconnects through the load balancer, ingest resumes on
//!   a survivor within 15 s, every fragment listed before is listed and decodes on every
//!   survivor, and the restarted node takes new sessions. A live viewer entering through the
//!   load balancer is sent to the storage session's node and watches there, before the
//!   kill and after it.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_kinesisvideo::error::SdkError;
use aws_sdk_kinesisvideo::types::{MediaStorageConfiguration, MediaStorageConfigurationStatus};
use common::cluster::{Cluster, ClusterOptions, run_in_netns};
use common::signing::{presign_url, rfc3986};
use common::ws::{self, Ws, assert_closed, recv_json, send};
use common::{ROOT_KEY_ID, ROOT_SECRET};

/// A presigned signaling WebSocket URL through the load balancer.
fn lb_ws_url(cluster: &Cluster, arn: &str, client_id: Option<&str>) -> String {
    let mut url = format!("ws://{}/?X-Amz-ChannelARN={}", cluster.lb.addr, rfc3986(arn));
    if let Some(id) = client_id {
        url.push_str(&format!("&X-Amz-ClientId={}", rfc3986(id)));
    }
    presign_url(&url, ROOT_KEY_ID, ROOT_SECRET)
}

/// Which running node holds `role`'s connection (`master`/`viewer`), from each node's
/// `reel_signaling_connected_clients` gauge.
async fn holder(cluster: &Cluster, role: &str) -> usize {
    for k in cluster.running() {
        let text = cluster.metrics(k).await;
        if common::metric(&text, "reel_signaling_connected_clients", &[("role", role)]).unwrap_or(0.0) >= 1.0 {
            return k;
        }
    }
    panic!("no node holds a {role} connection")
}

/// The viewer's offer reaches the master and the master's answer reaches the viewer.
async fn exchange_sdp(master: &mut Ws, viewer: &mut Ws, viewer_id: &str, round: &str) {
    use base64::Engine as _;
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    let offer = b64(format!("offer-{round}"));
    send(viewer, serde_json::json!({"action":"SDP_OFFER","messagePayload": offer})).await;
    let got = recv_json(master).await;
    assert_eq!(
        (got["messageType"].as_str(), got["senderClientId"].as_str(), got["messagePayload"].as_str()),
        (Some("SDP_OFFER"), Some(viewer_id), Some(offer.as_str())),
        "{got}"
    );
    let answer = b64(format!("answer-{round}"));
    send(master, serde_json::json!({"action":"SDP_ANSWER","recipientClientId": viewer_id,"messagePayload": answer}))
        .await;
    let got = recv_json(viewer).await;
    assert_eq!(
        (got["messageType"].as_str(), got["messagePayload"].as_str()),
        (Some("SDP_ANSWER"), Some(answer.as_str()))
    );
}

/// `reel_requests_total{operation, outcome="ok"}` on node `k` (0 before the first).
async fn requests(cluster: &Cluster, k: usize, operation: &str) -> f64 {
    let text = cluster.metrics(k).await;
    common::metric(&text, "reel_requests_total", &[("operation", operation), ("outcome", "ok")]).unwrap_or(0.0)
}

#[test]
fn netns_node_loss_behind_haproxy() {
    run_in_netns("netns_node_loss_behind_haproxy", node_loss);
}

async fn node_loss() {
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    for k in 0..3 {
        let (status, body) = cluster.readyz(k).await;
        assert_eq!(
            (status, &body["s3"], &body["bus"], &body["metadata"]),
            (200, &"ok".into(), &"ok".into(), &"ok".into())
        );
    }

    // Through the load balancer: channel, stream, storage configuration.
    let kvs = cluster.kvs();
    let arn = kvs.create_signaling_channel().channel_name("cam-1").send().await.expect("create channel");
    let arn = arn.channel_arn().expect("channel ARN").to_string();
    let stream = kvs.create_stream().stream_name("cam-1-stream").data_retention_in_hours(1).send().await;
    let stream_arn = stream.expect("create stream").stream_arn().expect("stream ARN").to_string();
    let storage = MediaStorageConfiguration::builder()
        .stream_arn(&stream_arn)
        .status(MediaStorageConfigurationStatus::Enabled)
        .build()
        .expect("storage configuration");
    kvs.update_media_storage_configuration()
        .channel_arn(&arn)
        .media_storage_configuration(storage)
        .send()
        .await
        .expect("UpdateMediaStorageConfiguration");

    // Every node describes them at once.
    for k in 0..3 {
        let node = cluster.kvs_at(k);
        let ch = node.describe_signaling_channel().channel_arn(&arn).send().await.expect("describe channel");
        assert_eq!(ch.channel_info().and_then(|i| i.channel_name()), Some("cam-1"));
        let st = node.describe_stream().stream_arn(&stream_arn).send().await.expect("describe stream");
        assert_eq!(st.stream_info().and_then(|i| i.stream_name()), Some("cam-1-stream"));
        let ms = node.describe_media_storage_configuration().channel_arn(&arn).send().await.expect("describe storage");
        let ms = ms.media_storage_configuration().expect("storage configuration");
        assert_eq!(
            (ms.stream_arn(), ms.status()),
            (Some(stream_arn.as_str()), &MediaStorageConfigurationStatus::Enabled)
        );
    }
    // The signaling endpoint the load balancer hands out names one node (its --public-url).
    let endpoints = common::master_endpoints(&kvs, &arn, &[aws_sdk_kinesisvideo::types::ChannelProtocol::Wss]).await;
    let wss = endpoints.values().next().expect("WSS endpoint").trim_end_matches('/').to_string();
    assert!((0..3).any(|k| wss == cluster.node_url(k).replace("http://", "ws://")), "{wss} is a node's own URL");

    // A master and a viewer, both through the load balancer, exchange SDP.
    let mut master = ws::connect(&lb_ws_url(&cluster, &arn, None)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut viewer = ws::connect(&lb_ws_url(&cluster, &arn, Some("viewer-1"))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    exchange_sdp(&mut master, &mut viewer, "viewer-1", "1").await;

    // Kill -9 the node holding the master's connection.
    let (victim, viewer_node) = (holder(&cluster, "master").await, holder(&cluster, "viewer").await);
    let victim_id = cluster.node_id(victim).to_string();
    println!("killing {victim_id} (master there; viewer on {})", cluster.node_id(viewer_node));
    cluster.kill(victim);
    let killed = Instant::now();
    assert_closed(&mut master).await;

    // 20 consecutive API calls through the load balancer all succeed, within a few seconds.
    for i in 0..20 {
        let res = kvs.describe_signaling_channel().channel_arn(&arn).send().await;
        res.unwrap_or_else(|e| panic!("call {i} through the LB after the kill: {e:?}\n{}", cluster.logs()));
    }
    let down = cluster.lb.wait_status(&victim_id, "DOWN", Duration::from_secs(5)).await;
    println!("20 calls ok and {victim_id} DOWN in haproxy {:?} after the kill (+{down:?} waiting)", killed.elapsed());
    assert!(killed.elapsed() < Duration::from_secs(5), "took {:?}", killed.elapsed());
    for k in cluster.running() {
        assert_eq!(cluster.readyz(k).await.0, 200, "{} stays ready", cluster.node_id(k));
    }

    // The clients reconnect through the load balancer and signaling works again.
    let mut master = ws::connect(&lb_ws_url(&cluster, &arn, None)).await;
    if viewer_node == victim {
        assert_closed(&mut viewer).await;
        viewer = ws::connect(&lb_ws_url(&cluster, &arn, Some("viewer-1"))).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    exchange_sdp(&mut master, &mut viewer, "viewer-1", "2").await;
    println!("signaling through the LB works again {:?} after the kill", killed.elapsed());

    // The node restarted on its id and port rejoins: ready, back in rotation, serving.
    cluster.restart(victim);
    let ready = cluster.wait_ready(victim, Duration::from_secs(15)).await;
    let up = cluster.lb.wait_status(&victim_id, "UP", Duration::from_secs(5)).await;
    println!("{victim_id} restarted: ready after {ready:?}, UP in haproxy {up:?} later");
    let before = requests(&cluster, victim, "DescribeSignalingChannel").await;
    for _ in 0..9 {
        kvs.describe_signaling_channel().channel_arn(&arn).send().await.expect("describe through the LB");
    }
    let after = requests(&cluster, victim, "DescribeSignalingChannel").await;
    assert!(after >= before + 1.0, "the LB routes to the restarted {victim_id} again ({before} → {after})");
    // Its signaling is on the bus again: a viewer connected straight to it reaches the master.
    let direct =
        format!("ws://{}/?X-Amz-ChannelARN={}&X-Amz-ClientId=viewer-2", cluster.nodes[victim].addr, rfc3986(&arn));
    let mut viewer2 = ws::connect(&presign_url(&direct, ROOT_KEY_ID, ROOT_SECRET)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    exchange_sdp(&mut master, &mut viewer2, "viewer-2", "3").await;
    drop((master, viewer, viewer2));
    println!("node loss scenario done in {:?} after the kill", killed.elapsed());
}

#[test]
fn netns_postgres_outage_behind_haproxy() {
    run_in_netns("netns_postgres_outage_behind_haproxy", postgres_outage);
}

/// The HTTP status and `x-amzn-ErrorType` of a failed SDK call (panics on a success or a
/// transport failure: a hang ends in the client's timeout, which also fails here).
fn service_failure<E: std::fmt::Debug, R: std::fmt::Debug>(
    res: Result<R, SdkError<E, aws_smithy_runtime_api::http::Response>>,
) -> (u16, String) {
    match res {
        Err(SdkError::ServiceError(e)) => {
            let raw = e.raw();
            (raw.status().as_u16(), raw.headers().get("x-amzn-ErrorType").unwrap_or_default().to_string())
        }
        other => panic!("expected a service error, got {other:?}"),
    }
}

async fn postgres_outage() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use reel_sim::kvs::KvsClient;
    use reel_sim::publisher::{MediaSource, provision_storage_channel};
    use reel_sim::sigv4::Signer;

    // The default 10 s writer lease: a 5 s outage must not stop a storage session.
    let config = "[limits.cluster]\nheartbeat_ms = 200\nnode_timeout_ms = 1000\nlease_ms = 10000\n";
    let mut cluster = Cluster::start(ClusterOptions { config_toml: config.into(), ..Default::default() }).await;
    let kvs = cluster.kvs();
    let arn = kvs.create_signaling_channel().channel_name("cam-1").send().await.expect("create channel");
    let arn = arn.channel_arn().expect("channel ARN").to_string();

    // A camera ingests throughout.
    let lb = KvsClient::new(cluster.lb_url(), Signer::new(ROOT_KEY_ID, ROOT_SECRET, common::REGION));
    let channel = provision_storage_channel(&lb, "outage", "outage-stream", 1).await.expect("provision");
    let source = Arc::new(MediaSource::new(500_000).expect("media"));
    let (stats, publisher) = start_camera(&cluster, &lb, &channel, &source, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let writer_url = lb.data_endpoint(&channel.stream_arn, "LIST_FRAGMENTS").await.expect("GetDataEndpoint");
    let unix_ms =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let outage_start_ms = unix_ms();

    cluster.pg.stop();
    let stopped = Instant::now();
    // Straight to a node, a read and a write fail promptly with reel's KVS 5xx (not a
    // hang); meanwhile every node fails /readyz, HAProxy takes them all out of rotation and
    // answers its KVS-shaped 503.
    let node = cluster.kvs_at(0);
    let (read, write, via_lb) = tokio::join!(
        node.describe_signaling_channel().channel_arn(&arn).send(),
        node.create_signaling_channel().channel_name("cam-2").send(),
        async {
            for k in 0..3 {
                cluster.lb.wait_status(cluster.node_id(k), "DOWN", Duration::from_secs(4)).await;
            }
            println!("every node DOWN in haproxy {:?} into the outage", stopped.elapsed());
            kvs.describe_signaling_channel().channel_arn(&arn).send().await
        },
    );
    println!("the outage's calls answered within {:?}", stopped.elapsed());
    for (what, (status, code)) in
        [("read", service_failure(read)), ("write", service_failure(write)), ("LB read", service_failure(via_lb))]
    {
        println!("{what} during the outage: {status} {code}");
        assert!(status >= 500 && !code.is_empty(), "{what} during the outage: {status} {code:?}");
    }
    assert!(stopped.elapsed() < Duration::from_secs(8), "calls answered promptly: {:?}", stopped.elapsed());

    if let Some(rest) = Duration::from_secs(5).checked_sub(stopped.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    cluster.pg.restart();
    let restarted = Instant::now();

    // API calls through the load balancer succeed again, the nodes untouched.
    loop {
        match kvs.describe_signaling_channel().channel_arn(&arn).send().await {
            Ok(_) => break,
            Err(e) => assert!(
                restarted.elapsed() < Duration::from_secs(20),
                "no recovery 20 s after Postgres returned: {e:?}\n{}",
                cluster.logs()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("LB calls recover {:?} after Postgres returned", restarted.elapsed());
    for k in 0..3 {
        cluster.wait_ready(k, Duration::from_secs(10)).await;
        cluster.lb.wait_status(cluster.node_id(k), "UP", Duration::from_secs(5)).await;
        let node = cluster.kvs_at(k);
        node.describe_signaling_channel().channel_arn(&arn).send().await.expect("read after the outage");
    }
    kvs.create_signaling_channel().channel_name("cam-2").send().await.expect("write after the outage");

    // Media that flowed through the outage is not lost: the session kept running (one
    // connection, no reconnect), and once the catalog is back the fragments cover the
    // outage without a hole.
    let outage_end_ms = unix_ms();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let snap = stats.snapshot();
    assert_eq!((stats.connections.load(Ordering::Relaxed), snap.reconnects), (1, 0), "{snap:?}\n{}", cluster.logs());
    let listed = lb.list_fragments(&writer_url, &channel.stream_arn).await.expect("ListFragments");
    // (start, end) of each fragment near the outage; together they must cover it.
    let around: Vec<(u64, u64)> = listed
        .iter()
        .map(|f| (f.server_ms, f.server_ms + f.length_ms))
        .filter(|(t, _)| *t + 4_000 >= outage_start_ms && *t <= outage_end_ms + 2_000)
        .collect();
    let widest = around.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap_or(u64::MAX);
    assert!(
        around.first().is_some_and(|(t, _)| *t <= outage_start_ms)
            && around.last().is_some_and(|(_, end)| *end >= outage_end_ms),
        "fragments (start, end) around the outage {outage_start_ms}..{outage_end_ms}: {around:?}"
    );
    assert!(widest <= 3_000, "a hole of {widest} ms in the fragments across the outage: {around:?}");
    publisher.abort();
}

#[test]
fn netns_ingest_survives_the_writer_node_behind_haproxy() {
    run_in_netns("netns_ingest_survives_the_writer_node_behind_haproxy", ingest_failover);
}

/// A simulated camera (reel-sim's publisher with the C SDK's reconnect) publishing to
/// `channel` for `run_for`, through `client`'s endpoint; returns once it is connected.
async fn start_camera(
    cluster: &Cluster,
    client: &reel_sim::kvs::KvsClient,
    channel: &reel_sim::publisher::StorageChannel,
    source: &std::sync::Arc<reel_sim::publisher::MediaSource>,
    run_for: Duration,
) -> (std::sync::Arc<reel_sim::publisher::PublisherStats>, tokio::task::JoinHandle<()>) {
    use reel_sim::publisher::{PublisherConfig, PublisherStats, ReconnectPolicy, publish_with_reconnect};
    let stats = PublisherStats::new();
    let task = {
        let (client, channel, stats) = (client.clone(), channel.clone(), stats.clone());
        let cfg = PublisherConfig::new("127.0.0.1".parse().expect("ip"), source.clone());
        let until = Instant::now() + run_for;
        tokio::spawn(async move {
            let _ = publish_with_reconnect(&client, &channel, cfg, stats, until, ReconnectPolicy::default()).await;
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats.connections.load(std::sync::atomic::Ordering::Relaxed) < 1 {
        assert!(Instant::now() < deadline, "never connected: {:?}\n{}", stats.snapshot(), cluster.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (stats, task)
}

/// A reel-sim viewer (VIEWER endpoints, ConnectAsViewer, JoinStorageSessionAsViewer) watches
/// `channel` live for 8 s and receives video, keyframe first, and audio.
async fn watch_live(
    client: &reel_sim::kvs::KvsClient,
    channel: &reel_sim::publisher::StorageChannel,
    client_id: &str,
    cluster: &Cluster,
) {
    use reel_sim::viewer::{ViewerConfig, ViewerStats, watch_storage_session};
    let stats = ViewerStats::new();
    let cfg = ViewerConfig::new("127.0.0.1".parse().expect("ip"), client_id);
    let until = Instant::now() + Duration::from_secs(8);
    let watched = watch_storage_session(client, channel, cfg, stats.clone(), until).await;
    common::assert_watched_live(client_id, &watched, &stats, cluster.logs());
}

/// The node whose URL `url` is.
fn node_of(cluster: &Cluster, url: &str) -> usize {
    (0..3).find(|k| url.trim_end_matches('/') == cluster.node_url(*k).trim_end_matches('/')).unwrap_or_else(|| {
        panic!("{url} is none of the nodes: {:?}", (0..3).map(|k| cluster.node_url(k)).collect::<Vec<_>>())
    })
}

async fn ingest_failover() {
    use std::sync::Arc;

    use reel_sim::kvs::KvsClient;
    use reel_sim::publisher::{MediaSource, provision_storage_channel};
    use reel_sim::sigv4::Signer;

    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    let lb = KvsClient::new(cluster.lb_url(), Signer::new(ROOT_KEY_ID, ROOT_SECRET, common::REGION));
    let channel = provision_storage_channel(&lb, "failover", "failover-stream", 1).await.expect("provision");
    let source = Arc::new(MediaSource::new(500_000).expect("media"));
    let (stats, publisher) = start_camera(&cluster, &lb, &channel, &source, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_secs(6)).await;

    // GetDataEndpoint (through the LB) names the writer; every node lists the same fragments.
    let writer_url = lb.data_endpoint(&channel.stream_arn, "LIST_FRAGMENTS").await.expect("GetDataEndpoint");
    let writer = node_of(&cluster, &writer_url);
    let before = lb.list_fragments(cluster.lb_url(), &channel.stream_arn).await.expect("ListFragments");
    assert!(before.len() >= 2, "fragments before the kill: {before:?}\n{}", cluster.logs());
    for k in 0..3 {
        let here = lb.list_fragments(&cluster.node_url(k), &channel.stream_arn).await.expect("ListFragments");
        let numbers: Vec<&String> = here.iter().map(|f| &f.number).collect();
        for f in &before {
            assert!(numbers.contains(&&f.number), "node {k} misses {} listed before", f.number);
        }
    }

    // Live reads on a node that does not write the stream are served, not empty: GetMedia
    // NOW delivers the next fragment, and an HLS LIVE playlist lists stored segments.
    let reader = (0..3).find(|k| *k != writer).expect("a non-writer");
    let mut live = lb.get_media(&cluster.node_url(reader), &channel.stream_arn, "NOW").await.expect("GetMedia NOW");
    let first = tokio::time::timeout(Duration::from_secs(10), live.chunk()).await;
    let first = first.expect("GetMedia NOW on a non-writer delivered nothing within 10 s").expect("GetMedia body");
    assert!(first.is_some_and(|c| !c.is_empty()), "GetMedia NOW on node {reader} ended empty");
    drop(live);
    let hls = lb.hls_live_url(&cluster.node_url(reader), &channel.stream_arn).await.expect("HLS LIVE session");
    let playlist = lb.get_text(&hls).await.expect("master playlist");
    let media = playlist.lines().find(|l| !l.starts_with('#') && !l.is_empty()).expect("a media playlist").to_string();
    let media_url =
        if media.starts_with("http") { media } else { format!("{}/{media}", hls.rsplit_once('/').map_or("", |x| x.0)) };
    let segments = lb.get_text(&media_url).await.expect("media playlist");
    assert!(segments.contains("#EXTINF"), "HLS LIVE on node {reader} lists no segments:\n{segments}");

    // A live viewer enters through the load balancer like the KVS JS SDK's storage viewer:
    // its VIEWER endpoints name the writer, which runs the storage session that serves live
    // viewers, and it watches the camera there.
    let endpoints = lb.viewer_endpoints(&channel.channel_arn).await.expect("VIEWER endpoints");
    assert_eq!(node_of(&cluster, &endpoints.webrtc), writer, "WEBRTC endpoint for a viewer: {endpoints:?}");
    assert_eq!(
        endpoints.wss.replacen("ws", "http", 1),
        endpoints.webrtc,
        "a viewer's WSS and WEBRTC endpoints are one node"
    );
    watch_live(&lb, &channel, "cluster-viewer", &cluster).await;

    // The writer announces every fragment it indexes over NATS; the reader, which has the
    // stream open, lists new fragments from those notices.
    let notices = |text: String, outcome: &str| {
        common::metric(&text, "reel_cluster_index_notices_total", &[("outcome", outcome)]).unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while notices(cluster.metrics(reader).await, "applied") < 1.0 {
        assert!(Instant::now() < deadline, "node {reader} applied no index notice:\n{}", cluster.metrics(reader).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(notices(cluster.metrics(writer).await, "sent") >= 1.0, "the writer sent no index notice");

    // SIGKILL the writer: the publisher reconnects through the LB, JoinStorageSession lands on
    // a survivor, and new fragments are listed within 15 s of the kill.
    let killed_at = Instant::now();
    let kill_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    cluster.kill(writer);
    let survivor = (0..3).find(|k| *k != writer).expect("a survivor");
    let resumed = loop {
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "ingest did not resume within 15 s of the kill: {:?}\n{}",
            stats.snapshot(),
            cluster.logs()
        );
        let listed = lb.list_fragments(&cluster.node_url(survivor), &channel.stream_arn).await.unwrap_or_default();
        if listed.iter().any(|f| u128::from(f.server_ms) > kill_ms) {
            break killed_at.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("ingest resumed {resumed:?} after the kill");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let new_writer =
        node_of(&cluster, &lb.data_endpoint(&channel.stream_arn, "LIST_FRAGMENTS").await.expect("GetDataEndpoint"));
    assert_ne!(new_writer, writer, "a survivor writes now");
    // Viewers follow the storage session to the survivor.
    let endpoints = lb.viewer_endpoints(&channel.channel_arn).await.expect("VIEWER endpoints");
    assert_eq!(node_of(&cluster, &endpoints.webrtc), new_writer, "after the kill: {endpoints:?}");
    watch_live(&lb, &channel, "viewer-after-kill", &cluster).await;

    // Every fragment listed before the kill is still listed by every survivor, and what they
    // serve decodes without a single ffmpeg error.
    for k in cluster.running() {
        let listed = lb.list_fragments(&cluster.node_url(k), &channel.stream_arn).await.expect("ListFragments");
        let numbers: Vec<String> = listed.iter().map(|f| f.number.clone()).collect();
        for f in &before {
            assert!(numbers.contains(&f.number), "node {k} lost {} after the kill", f.number);
        }
        let after = listed.iter().filter(|f| u128::from(f.server_ms) > kill_ms).count();
        assert!(after >= 2, "node {k} lists {after} fragments written after the kill");
        // One MKV document per fragment (as KVS serves them); ffmpeg judges each.
        reel::testkit::probe::require(&["ffmpeg"]);
        for n in &numbers {
            let mkv = lb
                .get_media_for_fragment_list(&cluster.node_url(k), &channel.stream_arn, std::slice::from_ref(n))
                .await
                .expect("GetMediaForFragmentList");
            assert!(mkv.len() > 10_000, "node {k} served {} bytes for {n}", mkv.len());
            let file = tempfile::NamedTempFile::new().expect("temp file");
            std::fs::write(file.path(), &mkv).expect("write the fragment");
            let errors = reel::testkit::probe::decode_errors(file.path()).expect("ffmpeg");
            assert!(errors.trim().is_empty(), "ffmpeg on node {k}'s fragment {n}: {errors}");
        }
    }

    // The killed node comes back on its id and port and takes new sessions: a second camera
    // whose signaling and JoinStorageSession go to it directly is stored and listed elsewhere.
    cluster.restart(writer);
    cluster.wait_ready(writer, Duration::from_secs(20)).await;
    let direct = KvsClient::new(&cluster.node_url(writer), Signer::new(ROOT_KEY_ID, ROOT_SECRET, common::REGION));
    let second = provision_storage_channel(&direct, "rejoined", "rejoined-stream", 1).await.expect("provision");
    let (stats2, second_publisher) = start_camera(&cluster, &direct, &second, &source, Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = lb.list_fragments(&cluster.node_url(survivor), &second.stream_arn).await.unwrap_or_default();
        if listed.len() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted node stores nothing: {:?}\n{}",
            stats2.snapshot(),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let second_writer =
        node_of(&cluster, &lb.data_endpoint(&second.stream_arn, "LIST_FRAGMENTS").await.expect("GetDataEndpoint"));
    assert_eq!(second_writer, writer, "the restarted node writes the new session");
    second_publisher.abort();
    publisher.abort();
}
