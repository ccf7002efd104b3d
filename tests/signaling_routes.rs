//! In-process tests of the signaling routes through the real router, over real sockets:
//! a WebSocket client (tokio-tungstenite), plain HTTP (reqwest) and a TURN client.
//! The metadata store is the real SQLite store in a temp dir; requests are signed with
//! the official `aws-sigv4` crate (presigned WebSocket URLs, header-signed POSTs).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

mod common;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use common::signing::{presign_url, rfc3986, signed_post_headers};
use common::ws::{Ws, assert_closed, recv_json, refused, send, try_connect};
use reel::config::Config;
use reel::meta::ChannelRecord;
use reel::signaling::Signaling;

const KEY_ID: &str = "AKIAREELUNITTEST0001";
const SECRET: &str = "secret";
const CHANNEL: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/chan/1700000000000";

fn channel_record(arn: &str, ttl: u32) -> ChannelRecord {
    ChannelRecord {
        name: "chan".into(),
        arn: arn.into(),
        channel_type: "SINGLE_MASTER".into(),
        status: "ACTIVE".into(),
        creation_time: 1_700_000_000.0,
        message_ttl_seconds: ttl,
        version: "1".into(),
    }
}

struct Harness {
    addr: SocketAddr,
    signaling: Signaling,
    _dir: tempfile::TempDir,
}

async fn harness(tweak: impl FnOnce(&mut Config)) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = reel::testkit::loopback_config(dir.path()).expect("config");
    config.root_key = Some((KEY_ID.into(), SECRET.into()));
    config.limits.signaling.connect_tps_per_channel = 1000.0;
    tweak(&mut config);
    let (addr, state) = reel::server::spawn(config).await.expect("in-process server");
    state.core.meta.create_channel(&channel_record(CHANNEL, 60), &Default::default(), 5000).await.expect("channel");
    Harness { addr, signaling: state.signaling, _dir: dir }
}

fn ws_url(h: &Harness, arn: &str, client_id: Option<&str>) -> String {
    let url = match client_id {
        Some(id) => format!("ws://{}/?X-Amz-ChannelARN={}&X-Amz-ClientId={}", h.addr, rfc3986(arn), rfc3986(id)),
        None => format!("ws://{}/?X-Amz-ChannelARN={}", h.addr, rfc3986(arn)),
    };
    presign_url(&url, KEY_ID, SECRET)
}

/// A signed JSON POST to `path`.
async fn signed_post(addr: SocketAddr, path: &str, body: serde_json::Value) -> reqwest::Result<reqwest::Response> {
    let url = format!("http://{addr}{path}");
    let bytes = serde_json::to_vec(&body).expect("json");
    let mut req = reqwest::Client::new().post(&url).body(bytes.clone());
    for (name, value) in signed_post_headers(&url, &bytes, KEY_ID, SECRET) {
        req = req.header(name, value);
    }
    req.send().await
}

#[tokio::test]
async fn master_and_viewers_exchange_with_both_key_casings() {
    let h = harness(|_| {}).await;
    let (mut master, res) = try_connect(&ws_url(&h, CHANNEL, None), true).await.expect("master");
    assert_eq!(res.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap_or_default()), Some("wss"));
    let mut v1 = connect(&h, Some("viewer-1")).await;
    let mut v2 = connect(&h, Some("viewer-2")).await;

    // JS viewer offer (lowerCamel; its recipientClientId is ignored: viewers reach only the master).
    send(&mut v1, serde_json::json!({"action":"SDP_OFFER","recipientClientId":"viewer-2","messagePayload":"b2ZmZXI="}))
        .await;
    let e = recv_json(&mut master).await;
    assert_eq!(
        e,
        serde_json::json!({"senderClientId":"viewer-1","messageType":"SDP_OFFER","messagePayload":"b2ZmZXI="})
    );

    // C SDK master answer (PascalCase) to viewer-1 only.
    send(&mut master, serde_json::json!({"action":"SDP_ANSWER","RecipientClientId":"viewer-1","MessagePayload":"YW5zd2Vy","CorrelationId":"1"})).await;
    let e = recv_json(&mut v1).await;
    assert_eq!(e, serde_json::json!({"messageType":"SDP_ANSWER","messagePayload":"YW5zd2Vy"}));

    // Candidates both ways.
    send(
        &mut master,
        serde_json::json!({"action":"ICE_CANDIDATE","recipientClientId":"viewer-1","messagePayload":"Y2FuZA=="}),
    )
    .await;
    assert_eq!(recv_json(&mut v1).await["messageType"], "ICE_CANDIDATE");
    send(&mut v2, serde_json::json!({"action":"ICE_CANDIDATE","RecipientClientId":"","MessagePayload":"djJj"})).await;
    let e = recv_json(&mut master).await;
    assert_eq!((e["senderClientId"].as_str(), e["messagePayload"].as_str()), (Some("viewer-2"), Some("djJj")));

    // Nothing leaked to viewer-2 from viewer-1: its next frame is the one the master addresses to it.
    send(
        &mut master,
        serde_json::json!({"action":"ICE_CANDIDATE","recipientClientId":"viewer-2","messagePayload":"Zm9y"}),
    )
    .await;
    assert_eq!(recv_json(&mut v2).await["messagePayload"], "Zm9y");

    // A correlated failure gets a STATUS_RESPONSE.
    send(
        &mut master,
        serde_json::json!({"action":"SDP_ANSWER","messagePayload":"YQ==","correlationId":"no-recipient"}),
    )
    .await;
    let e = recv_json(&mut master).await;
    assert_eq!(e["messageType"], "STATUS_RESPONSE");
    assert_eq!(e["statusResponse"]["correlationId"], "no-recipient");
    assert_eq!(e["statusResponse"]["statusCode"], "400");

    // Pings are answered.
    master.send(Message::Ping(b"hi".to_vec().into())).await.expect("ping");
    let pong = tokio::time::timeout(Duration::from_secs(5), master.next())
        .await
        .expect("timely")
        .expect("open")
        .expect("frame");
    assert_eq!(pong, Message::Pong(b"hi".to_vec().into()));
}

#[tokio::test]
async fn refusals_before_the_upgrade_in_the_kvs_error_shape() {
    let h = harness(|c| c.limits.signaling.max_viewers_per_channel = 2).await;
    let (status, body) = refused(&ws_url(&h, "arn:aws:kinesisvideo:us-west-2:123:channel/x", None)).await;
    assert_eq!((status, body["__type"].as_str()), (400, Some("InvalidArgumentException")));
    let (status, body) = refused(&presign_url(&format!("ws://{}/", h.addr), KEY_ID, SECRET)).await;
    assert_eq!((status, body["__type"].as_str()), (400, Some("InvalidArgumentException")));
    let (status, body) = refused(&ws_url(&h, CHANNEL, Some("AWS_reserved"))).await;
    assert_eq!((status, body["__type"].as_str()), (400, Some("InvalidArgumentException")));
    let (status, _) = refused(&ws_url(&h, CHANNEL, Some("bad id"))).await;
    assert_eq!(status, 400);
    let unknown = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/nope/1";
    let (status, body) = refused(&ws_url(&h, unknown, None)).await;
    assert_eq!((status, body["__type"].as_str()), (404, Some("ResourceNotFoundException")));

    let _a = connect(&h, Some("a")).await;
    let _b = connect(&h, Some("b")).await;
    let (status, body) = refused(&ws_url(&h, CHANNEL, Some("c"))).await;
    assert_eq!((status, body["__type"].as_str()), (400, Some("ClientLimitExceededException")));
    // Same ClientId replaces instead of counting.
    let _b2 = connect(&h, Some("b")).await;
}

#[tokio::test]
async fn newer_master_replaces_and_held_messages_arrive_late() {
    let h = harness(|_| {}).await;
    let mut viewer = connect(&h, Some("early")).await;
    send(&mut viewer, serde_json::json!({"action":"SDP_OFFER","messagePayload":"aGVsZA=="})).await;
    let mut m1 = connect(&h, None).await;
    assert_eq!(recv_json(&mut m1).await["messagePayload"], "aGVsZA==", "held offer delivered on connect");
    let mut m2 = connect(&h, None).await;
    assert_closed(&mut m1).await;
    send(&mut viewer, serde_json::json!({"action":"ICE_CANDIDATE","messagePayload":"bmV3"})).await;
    assert_eq!(recv_json(&mut m2).await["messagePayload"], "bmV3");
    // Master → absent viewer: held, delivered when it connects.
    send(&mut m2, serde_json::json!({"action":"SDP_ANSWER","recipientClientId":"late","messagePayload":"bGF0ZQ=="}))
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut late = connect(&h, Some("late")).await;
    assert_eq!(recv_json(&mut late).await["messagePayload"], "bGF0ZQ==");
}

#[tokio::test]
async fn ice_config_turn_allocation_rotation_and_shutdown() {
    let h = harness(|_| {}).await;
    let post = |path: &'static str, body: serde_json::Value| signed_post(h.addr, path, body);
    let res = post(
        "/v1/get-ice-server-config",
        serde_json::json!({"ChannelARN": CHANNEL, "ClientId": "ProducerMaster", "Service": "TURN"}),
    )
    .await
    .expect("post");
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.expect("json");
    let server = &body["IceServerList"][0];
    assert_eq!(server["Ttl"], 300);
    let uris: Vec<&str> = server["Uris"].as_array().expect("uris").iter().filter_map(|u| u.as_str()).collect();
    let (udp, tcp) = h.signaling.turn_addrs().expect("turn on");
    assert_eq!(
        uris,
        [
            format!("stun:127.0.0.1:{}", udp.port()),
            format!("turn:127.0.0.1:{}?transport=udp", udp.port()),
            format!("turn:127.0.0.1:{}?transport=tcp", tcp.port())
        ]
    );
    let username = server["Username"].as_str().expect("username");
    let password = server["Password"].as_str().expect("password");

    let conn = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let client = turn::client::Client::new(turn::client::ClientConfig {
        stun_serv_addr: udp.to_string(),
        turn_serv_addr: udp.to_string(),
        username: username.into(),
        password: password.into(),
        realm: reel::signaling::turn::REALM.into(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(conn),
        vnet: None,
    })
    .await
    .expect("turn client");
    client.listen().await.expect("listen");
    let _relay = client.allocate().await.expect("allocation with issued credentials");

    // Unknown channel and bad input.
    let res = post(
        "/v1/get-ice-server-config",
        serde_json::json!({"ChannelARN": "arn:aws:kinesisvideo:us-west-2:123456789012:channel/no/1"}),
    )
    .await
    .expect("post");
    assert_eq!(res.status(), 404);
    let res = post("/v1/get-ice-server-config", serde_json::json!({"ChannelARN": CHANNEL, "Service": "STUN"}))
        .await
        .expect("post");
    assert_eq!(res.status(), 400);

    // 5 TPS per channel (the first call above used one token): a burst of 10 gets at most
    // the 4 remaining tokens plus what refills while the burst is in flight.
    let burst = (0..10).map(|_| post("/v1/get-ice-server-config", serde_json::json!({"ChannelARN": CHANNEL})));
    let statuses: Vec<u16> =
        futures::future::join_all(burst).await.into_iter().map(|r| r.expect("post").status().as_u16()).collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let throttled = statuses.iter().filter(|s| **s == 400).count();
    assert!((4..=5).contains(&ok) && ok + throttled == 10, "{statuses:?}");

    // Rotation tells connected clients to reconnect their relay.
    let mut master = connect(&h, None).await;
    let mut viewer = connect(&h, Some("v")).await;
    assert_eq!(h.signaling.rotate_turn_secret().expect("rotate"), 2);
    assert_eq!(recv_json(&mut master).await["messageType"], "RECONNECT_ICE_SERVER");
    assert_eq!(recv_json(&mut viewer).await["messageType"], "RECONNECT_ICE_SERVER");

    // Shutdown: GO_AWAY, then the close.
    let sig = h.signaling.clone();
    let shutdown = tokio::spawn(async move { sig.shutdown().await });
    assert_eq!(recv_json(&mut master).await["messageType"], "GO_AWAY");
    assert_eq!(recv_json(&mut viewer).await["messageType"], "GO_AWAY");
    assert_closed(&mut master).await;
    assert_closed(&mut viewer).await;
    shutdown.await.expect("shutdown");
    let _ = client.close().await;
}

#[tokio::test]
async fn alexa_offer_is_answered_by_the_master() {
    let h = harness(|_| {}).await;
    let mut master = connect(&h, None).await;
    let addr = h.addr;
    let call = tokio::spawn(async move {
        signed_post(
            addr,
            "/v1/send-alexa-offer-to-master",
            serde_json::json!({"ChannelARN": CHANNEL, "SenderClientId": "alexa", "MessagePayload": "b2ZmZXI="}),
        )
        .await
    });
    let offer = recv_json(&mut master).await;
    assert_eq!((offer["senderClientId"].as_str(), offer["messageType"].as_str()), (Some("alexa"), Some("SDP_OFFER")));
    send(
        &mut master,
        serde_json::json!({"action":"SDP_ANSWER","recipientClientId":"alexa","messagePayload":"YW5zd2Vy"}),
    )
    .await;
    let res = call.await.expect("join").expect("response");
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<serde_json::Value>().await.expect("json"), serde_json::json!({"Answer": "YW5zd2Vy"}));
}

async fn connect(h: &Harness, client_id: Option<&str>) -> Ws {
    common::ws::connect(&ws_url(h, CHANNEL, client_id)).await
}
