//! Signaling end to end through the real binary: channels made with the official
//! `aws-sdk-kinesisvideo`, WebSocket connects presigned like the JS SDK (SigV4 query,
//! service `kinesisvideo`, `X-Amz-Expires=299`, built with `aws-sigv4`), GetIceServerConfig
//! through the official `aws-sdk-kinesisvideosignaling`, and TURN allocations with the
//! `turn` crate's client.
//!
//! These need the control plane and the metadata store (CreateSignalingChannel)
//! (they run against the merged control plane and metadata store).

mod common;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesisvideo::types::ChannelProtocol;
use common::signing::{presign_url, rfc3986};
use common::ws::{self, Ws, assert_closed, assert_silent, recv_json, send, try_connect};
use common::{Options, REGION, ROOT_KEY_ID, ROOT_SECRET, Reel};

/// Create a channel and return (ARN, WSS endpoint, HTTPS endpoint).
async fn channel(reel: &Reel, name: &str) -> (String, String, String) {
    let kvs = reel.kvs();
    let arn = kvs
        .create_signaling_channel()
        .channel_name(name)
        .send()
        .await
        .expect("CreateSignalingChannel")
        .channel_arn()
        .expect("ChannelARN")
        .to_string();
    let mut endpoints = common::master_endpoints(&kvs, &arn, &[ChannelProtocol::Wss, ChannelProtocol::Https]).await;
    let mut take = |p: ChannelProtocol| endpoints.remove(&p).unwrap_or_else(|| panic!("no {p:?} endpoint"));
    let (wss, https) = (take(ChannelProtocol::Wss), take(ChannelProtocol::Https));
    (arn, wss, https)
}

/// A presigned ConnectAsMaster/ConnectAsViewer URL, as the JS SDK builds it.
fn presign(wss_endpoint: &str, arn: &str, client_id: Option<&str>, key: (&str, &str)) -> String {
    let base = if wss_endpoint.ends_with('/') { wss_endpoint.to_string() } else { format!("{wss_endpoint}/") };
    let mut url = format!("{base}?X-Amz-ChannelARN={}", rfc3986(arn));
    if let Some(id) = client_id {
        url.push_str(&format!("&X-Amz-ClientId={}", rfc3986(id)));
    }
    presign_url(&url, key.0, key.1)
}

async fn connect(wss: &str, arn: &str, client_id: Option<&str>) -> Ws {
    ws::connect(&presign(wss, arn, client_id, (ROOT_KEY_ID, ROOT_SECRET))).await
}

/// Status and error type of a refused connect.
async fn refused(url: &str) -> (u16, String) {
    let (status, body) = ws::refused(url).await;
    (status, body["__type"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_and_viewers_exchange_offers_answers_and_candidates() {
    let reel = Reel::start();
    let (arn, wss, _) = channel(&reel, "exchange").await;
    let (mut master, res) =
        try_connect(&presign(&wss, &arn, None, (ROOT_KEY_ID, ROOT_SECRET)), true).await.expect("master");
    assert_eq!(res.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()), Some("wss"));
    let mut v1 = connect(&wss, &arn, Some("viewer-1")).await;
    let mut v2 = connect(&wss, &arn, Some("viewer-2")).await;

    // JS-style viewer offer; naming another viewer does not reach it.
    send(&mut v1, serde_json::json!({"action":"SDP_OFFER","recipientClientId":"viewer-2","messagePayload":"b2ZmZXI=","correlationId":"o1"})).await;
    assert_eq!(
        recv_json(&mut master).await,
        serde_json::json!({"senderClientId":"viewer-1","messageType":"SDP_OFFER","messagePayload":"b2ZmZXI="})
    );
    assert_silent(&mut v2).await;

    // C SDK-style master answer and candidates (PascalCase keys).
    send(&mut master, serde_json::json!({"action":"SDP_ANSWER","RecipientClientId":"viewer-1","MessagePayload":"YW5zd2Vy","CorrelationId":"a1"})).await;
    assert_eq!(recv_json(&mut v1).await, serde_json::json!({"messageType":"SDP_ANSWER","messagePayload":"YW5zd2Vy"}));
    send(&mut master, serde_json::json!({"action":"ICE_CANDIDATE","RecipientClientId":"viewer-1","MessagePayload":"bWFzdGVyLWNhbmQ="})).await;
    assert_eq!(recv_json(&mut v1).await["messagePayload"], "bWFzdGVyLWNhbmQ=");
    send(
        &mut v1,
        serde_json::json!({"action":"ICE_CANDIDATE","RecipientClientId":"","MessagePayload":"dmlld2VyLWNhbmQ="}),
    )
    .await;
    let e = recv_json(&mut master).await;
    assert_eq!((e["senderClientId"].as_str(), e["messageType"].as_str()), (Some("viewer-1"), Some("ICE_CANDIDATE")));
    send(&mut v2, serde_json::json!({"action":"ICE_CANDIDATE","messagePayload":"djI="})).await;
    assert_eq!(recv_json(&mut master).await["senderClientId"], "viewer-2");
    assert_silent(&mut v1).await;

    // STATUS_RESPONSE for a bad message only when it carries a correlationId.
    send(&mut v1, serde_json::json!({"action":"SDP_OFFER","messagePayload":"not base64!","correlationId":"bad-1"}))
        .await;
    let e = recv_json(&mut v1).await;
    assert_eq!(e["messageType"], "STATUS_RESPONSE");
    assert_eq!(e["statusResponse"]["correlationId"], "bad-1");
    assert_eq!(e["statusResponse"]["errorType"], "InvalidArgumentException");
    send(&mut v1, serde_json::json!({"action":"SDP_OFFER","messagePayload":"not base64!"})).await;
    assert_silent(&mut v1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refusals_viewer_limit_and_master_replacement() {
    let reel = Reel::start();
    let (arn, wss, _) = channel(&reel, "limits").await;
    let bad_arn = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/no-version";
    assert_eq!(
        refused(&presign(&wss, bad_arn, None, (ROOT_KEY_ID, ROOT_SECRET))).await,
        (400, "InvalidArgumentException".into())
    );
    assert_eq!(
        refused(&presign(&wss, &arn, Some("AWS_x"), (ROOT_KEY_ID, ROOT_SECRET))).await,
        (400, "InvalidArgumentException".into())
    );
    assert_eq!(
        refused(&presign(&wss, &arn, Some("no spaces"), (ROOT_KEY_ID, ROOT_SECRET))).await,
        (400, "InvalidArgumentException".into())
    );
    let unknown = format!("{}9", arn);
    assert_eq!(
        refused(&presign(&wss, &unknown, None, (ROOT_KEY_ID, ROOT_SECRET))).await,
        (404, "ResourceNotFoundException".into())
    );
    assert_eq!(refused(&presign(&wss, &arn, None, (ROOT_KEY_ID, "wrong-secret"))).await.0, 403, "bad signature");

    // Ten viewers connect (3 per second per channel), the 11th is refused.
    let mut viewers = Vec::new();
    for i in 0..10 {
        if i > 0 && i % 3 == 0 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        viewers.push(connect(&wss, &arn, Some(&format!("viewer-{i}"))).await);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        refused(&presign(&wss, &arn, Some("viewer-10"), (ROOT_KEY_ID, ROOT_SECRET))).await,
        (400, "ClientLimitExceededException".into())
    );

    // The newest master wins; the older socket is closed.
    let mut m1 = connect(&wss, &arn, None).await;
    let mut m2 = connect(&wss, &arn, None).await;
    assert_closed(&mut m1).await;
    send(&mut viewers[0], serde_json::json!({"action":"SDP_OFFER","messagePayload":"b2ZmZXI="})).await;
    assert_eq!(recv_json(&mut m2).await["senderClientId"], "viewer-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_message_delivered_on_late_connect_and_go_away_on_shutdown() {
    let reel = Reel::start();
    let (arn, wss, _) = channel(&reel, "held").await;
    let mut viewer = connect(&wss, &arn, Some("early")).await;
    send(&mut viewer, serde_json::json!({"action":"SDP_OFFER","messagePayload":"aGVsZA=="})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut master = connect(&wss, &arn, None).await;
    let e = recv_json(&mut master).await;
    assert_eq!((e["senderClientId"].as_str(), e["messagePayload"].as_str()), (Some("early"), Some("aGVsZA==")));

    let stopped = tokio::task::spawn_blocking(move || reel.stop());
    assert_eq!(recv_json(&mut master).await["messageType"], "GO_AWAY");
    assert_eq!(recv_json(&mut viewer).await["messageType"], "GO_AWAY");
    assert_closed(&mut master).await;
    assert_closed(&mut viewer).await;
    assert!(stopped.await.expect("join"), "reel exits 0 after closing signaling");
}

fn signaling_client(reel: &Reel, https: &str) -> aws_sdk_kinesisvideosignaling::Client {
    aws_sdk_kinesisvideosignaling::Client::from_conf(
        aws_sdk_kinesisvideosignaling::Config::builder()
            .behavior_version(aws_sdk_kinesisvideosignaling::config::BehaviorVersion::latest())
            .region(aws_sdk_kinesisvideosignaling::config::Region::new(REGION))
            .endpoint_url(https)
            .credentials_provider(aws_credential_types::Credentials::new(
                ROOT_KEY_ID,
                ROOT_SECRET,
                None,
                None,
                "reel-test",
            ))
            .http_client(reel.http_client())
            .build(),
    )
}

/// (username, password, first turn: UDP address) of a GetIceServerConfig answer.
async fn ice_config(reel: &Reel, arn: &str, https: &str) -> (String, String, std::net::SocketAddr, i32) {
    let out = signaling_client(reel, https)
        .get_ice_server_config()
        .channel_arn(arn)
        .client_id("ProducerMaster")
        .service(aws_sdk_kinesisvideosignaling::types::Service::Turn)
        .send()
        .await
        .expect("GetIceServerConfig");
    let server = out.ice_server_list().first().expect("one ICE server");
    assert!(server.uris().len() <= 4 && out.ice_server_list().len() <= 5);
    let udp = server
        .uris()
        .iter()
        .find_map(|u| u.strip_prefix("turn:").and_then(|r| r.strip_suffix("?transport=udp")))
        .expect("a turn: UDP URI");
    assert!(server.uris().iter().any(|u| u.starts_with("turn:") && u.ends_with("?transport=tcp")));
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    let (user, pass) = (server.username().expect("username"), server.password().expect("password"));
    assert!(ok(user) && ok(pass), "credentials stay in the model's alphabet");
    (user.into(), pass.into(), udp.parse().expect("host:port"), server.ttl().expect("Ttl"))
}

async fn allocate(server: std::net::SocketAddr, user: &str, pass: &str) -> Result<(), turn::Error> {
    let conn = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let client = turn::client::Client::new(turn::client::ClientConfig {
        stun_serv_addr: server.to_string(),
        turn_serv_addr: server.to_string(),
        username: user.into(),
        password: pass.into(),
        realm: "reel".into(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(conn),
        vnet: None,
    })
    .await?;
    client.listen().await?;
    let result = client.allocate().await.map(|_| ());
    let _ = client.close().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_ice_server_config_and_turn_allocations() {
    let reel = Reel::start();
    let (arn, _, https) = channel(&reel, "ice").await;
    let (user, pass, turn_addr, ttl) = ice_config(&reel, &arn, &https).await;
    assert_eq!(ttl, 300);
    allocate(turn_addr, &user, &pass).await.expect("issued credentials allocate");
    assert!(allocate(turn_addr, &user, "bogus-password").await.is_err(), "wrong password refused");
    assert!(
        allocate(turn_addr, "1700000000.0123456789abcdef.00000000", "x").await.is_err(),
        "foreign username refused"
    );

    // Unknown channel.
    let err = signaling_client(&reel, &https)
        .get_ice_server_config()
        .channel_arn(format!("{arn}9"))
        .send()
        .await
        .expect_err("404");
    assert_eq!(err.into_service_error().meta().code(), Some("ResourceNotFoundException"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_turn_credentials_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_file(dir.path(), "reel.toml", "[limits.signaling]\nturn_credential_ttl_secs = 2\n");
    let reel =
        Reel::start_with(Options { args: vec!["--config".into(), config.display().to_string()], ..Default::default() });
    let (arn, _, https) = channel(&reel, "expiry").await;
    let (user, pass, turn_addr, ttl) = ice_config(&reel, &arn, &https).await;
    assert_eq!(ttl, 2);
    // Wait out the configured 2 s lifetime (a correctness wait, not a timing assertion).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(allocate(turn_addr, &user, &pass).await.is_err(), "expired credentials refused");
}
