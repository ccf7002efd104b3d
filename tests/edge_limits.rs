//! The listener under hostile clients, over real sockets against an in-process reel:
//! slowloris headers and bodies (raw TCP), connection caps, refusals audited without their
//! body, oversized WebSocket frames (tokio-tungstenite), and who may read `/metrics`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod common;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use common::signing::{presign_url, rfc3986, signed_post_headers};
use reel::config::{Config, MetricsAccess, MetricsToken};
use reel::meta::ChannelRecord;
use reel::server::AppState;

const KEY_ID: &str = "AKIAREELEDGETEST0001";
const SECRET: &str = "edge-secret";
const CHANNEL: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/edge/1700000000000";

struct Server {
    addr: SocketAddr,
    state: AppState,
    _dir: tempfile::TempDir,
}

async fn server(tweak: impl FnOnce(&mut Config)) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = reel::testkit::loopback_config(dir.path()).expect("config");
    config.root_key = Some((KEY_ID.into(), SECRET.into()));
    config.turn.enabled = false;
    tweak(&mut config);
    let (addr, state) = reel::server::spawn(config).await.expect("in-process server");
    let channel = ChannelRecord {
        name: "edge".into(),
        arn: CHANNEL.into(),
        channel_type: "SINGLE_MASTER".into(),
        status: "ACTIVE".into(),
        creation_time: 1_700_000_000.0,
        message_ttl_seconds: 60,
        version: "1".into(),
    };
    state.core.meta.create_channel(&channel, &Default::default(), 5000).await.expect("channel");
    Server { addr, state, _dir: dir }
}

/// Reads until EOF or error; returns what arrived and how long the server took to close.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<(String, Duration)> {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(within.saturating_sub(started.elapsed()), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((String::from_utf8_lossy(&out).into_owned(), started.elapsed())),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

async fn metrics_text(addr: SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics")).await.expect("GET /metrics").text().await.expect("text")
}

#[tokio::test]
async fn slowloris_headers_and_silent_connections_are_closed() {
    let s = server(|c| c.limits.http.header_read_timeout_ms = 500).await;
    // Connects and never sends a byte.
    let mut silent = TcpStream::connect(s.addr).await.expect("connect");
    // Sends half a request's headers and stalls.
    let mut slow = TcpStream::connect(s.addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: reel\r\nX-Slow: ").await.expect("write");
    for (name, stream) in [("silent", &mut silent), ("slow headers", &mut slow)] {
        let closed = read_until_closed(stream, Duration::from_secs(5)).await;
        assert!(closed.is_some(), "{name}: connection still open after 5 s (header timeout 500 ms)");
    }
    // A normal client is unaffected.
    assert!(reqwest::get(format!("http://{}/healthz", s.addr)).await.expect("healthz").status().is_success());
}

#[tokio::test]
async fn a_slow_body_times_out_with_a_kvs_error() {
    let s = server(|c| c.limits.http.body_read_timeout_ms = 500).await;
    let url = format!("http://{}/describeSignalingChannel", s.addr);
    let body = format!(r#"{{"ChannelName":"edge","Padding":"{}"}}"#, "x".repeat(200));
    let mut head = format!("POST /describeSignalingChannel HTTP/1.1\r\nHost: {}\r\n", s.addr);
    for (k, v) in signed_post_headers(&url, body.as_bytes(), KEY_ID, SECRET) {
        if !k.eq_ignore_ascii_case("host") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    let mut stream = TcpStream::connect(s.addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(&body.as_bytes()[..10]).await.expect("first bytes");
    let (res, took) = read_until_closed(&mut stream, Duration::from_secs(5)).await.expect("answered within 5 s");
    assert!(res.starts_with("HTTP/1.1 408"), "{res}");
    assert!(res.contains("RequestTimeoutException"), "{res}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let m = metrics_text(s.addr).await;
    let n = common::metric(
        &m,
        "reel_requests_total",
        &[("operation", "DescribeSignalingChannel"), ("outcome", "RequestTimeoutException")],
    );
    assert!(n.is_some_and(|n| n >= 1.0), "{m}");
}

#[tokio::test]
async fn connections_are_capped_per_source_ip() {
    let s = server(|c| c.limits.http.max_connections_per_ip = 2).await;
    let _a = TcpStream::connect(s.addr).await.expect("a");
    let _b = TcpStream::connect(s.addr).await.expect("b");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = TcpStream::connect(s.addr).await.expect("c");
    let (res, _) = read_until_closed(&mut c, Duration::from_secs(3)).await.expect("third closed at once");
    assert!(res.starts_with("HTTP/1.1 503"), "{res:?}");
    assert!(res.contains(r#""__type":"ClientLimitExceededException""#), "{res}");
    drop((_a, _b));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let m = metrics_text(s.addr).await;
    let n = common::metric(&m, "reel_http_connections_refused_total", &[("reason", "per_ip")]);
    assert!(n.is_some_and(|n| n >= 1.0), "{m}");
}

#[tokio::test]
async fn unauthenticated_requests_are_refused_before_their_body_and_audited_without_it() {
    let s = server(|_| {}).await;
    // An unknown key announcing a 500 KB body it never sends: refused at once.
    let url = format!("http://{}/createSignalingChannel", s.addr);
    let mut head = format!("POST /createSignalingChannel HTTP/1.1\r\nHost: {}\r\n", s.addr);
    for (k, v) in signed_post_headers(&url, b"{}", "AKIAUNKNOWNKEY000001", "x") {
        if !k.eq_ignore_ascii_case("host") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("Content-Length: 500000\r\nConnection: close\r\n\r\n{\"ChannelName\":\"MARKER-IN-BODY\"");
    let mut stream = TcpStream::connect(s.addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    let (res, took) = read_until_closed(&mut stream, Duration::from_secs(5)).await.expect("answered without the body");
    assert!(res.starts_with("HTTP/1.1 403"), "{res}");
    assert!(res.contains("UnrecognizedClientException"), "{res}");
    assert!(took < Duration::from_secs(2), "{took:?}");

    // The audit line: operation, source, outcome and reason; no parameters.
    let path = s.state.core.audit.path().to_path_buf();
    let mut line = None;
    for _ in 0..50 {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains("UnrecognizedClientException")) {
            line = Some(l.to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line = line.expect("refusal audited");
    assert!(!line.contains("MARKER-IN-BODY"), "{line}");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert_eq!(v["operation"], "CreateSignalingChannel");
    assert_eq!(v["source_ip"], "127.0.0.1");
    assert_eq!(v["request_parameters"], serde_json::Value::Null);
    assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty() && r.chars().count() <= 257), "{line}");
}

fn ws_url(addr: SocketAddr, client_id: Option<&str>) -> String {
    let url = match client_id {
        Some(id) => format!("ws://{addr}/?X-Amz-ChannelARN={}&X-Amz-ClientId={id}", rfc3986(CHANNEL)),
        None => format!("ws://{addr}/?X-Amz-ChannelARN={}", rfc3986(CHANNEL)),
    };
    presign_url(&url, KEY_ID, SECRET)
}

async fn close_code(ws: &mut common::ws::Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("closed within 5 s") {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => panic!("expected a close, got {other:?}"),
            None | Some(Err(_)) => return None,
        }
    }
}

#[tokio::test]
async fn oversized_websocket_frames_are_refused_from_their_header() {
    let s = server(|_| {}).await;
    let limit = s.state.core.config.limits.signaling.max_message_payload_bytes;

    // A payload half as long again as the KVS limit still gets the KVS status response (the
    // SDKs rely on it), and a viewer's message is routed.
    let mut master = common::ws::connect(&ws_url(s.addr, None)).await;
    let mut viewer = common::ws::connect(&ws_url(s.addr, Some("v1"))).await;
    let big = "A".repeat(limit * 3 / 2);
    common::ws::send(
        &mut master,
        serde_json::json!({"action":"SDP_ANSWER","recipientClientId":"v1","messagePayload":big,"correlationId":"c1"}),
    )
    .await;
    let status = common::ws::recv_json(&mut master).await;
    assert_eq!(status["statusResponse"]["errorType"], "InvalidArgumentException", "{status}");
    common::ws::send(&mut viewer, serde_json::json!({"action":"SDP_OFFER","messagePayload":"b2ZmZXI="})).await;
    assert_eq!(common::ws::recv_json(&mut master).await["messageType"], "SDP_OFFER");

    // A frame header announcing 1 GiB, and no payload: closed with 1009 at once.
    let raw = master.get_mut();
    let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = raw else { panic!("plain ws") };
    let mut header = vec![0x81u8, 0xFF];
    header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    tcp.write_all(&header).await.expect("header");
    let started = Instant::now();
    assert_eq!(close_code(&mut master).await, Some(1009));
    assert!(started.elapsed() < Duration::from_secs(2));

    // A whole frame over the cap from the viewer: the same.
    let _ = viewer.send(Message::Text("x".repeat(limit + 64 * 1024).into())).await;
    assert_eq!(close_code(&mut viewer).await, Some(1009));

    let m = metrics_text(s.addr).await;
    let n = common::metric(&m, "reel_signaling_oversized_frames_total", &[]);
    assert!(n.is_some_and(|n| n >= 2.0), "{m}");
    // Channel names stay out of labels unless the operator opts in.
    assert!(m.contains("reel_signaling_messages_transferred_total"), "{m}");
    assert!(!m.contains(CHANNEL), "channel ARN in /metrics:\n{m}");
}

#[tokio::test]
async fn metrics_access_modes() {
    let token = "metrics-token-0123456789";
    let guarded = server(|c| {
        c.metrics.access = MetricsAccess::Auth;
        c.metrics.token = Some(MetricsToken(token.into()));
    })
    .await;
    let url = format!("http://{}/metrics", guarded.addr);
    let client = reqwest::Client::new();

    let res = client.get(&url).send().await.expect("unsigned");
    assert_eq!(res.status(), 403);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["__type"], "MissingAuthenticationTokenException");

    let res = client.get(&url).bearer_auth("wrong-token-000000000").send().await.expect("wrong token");
    assert_eq!(res.status(), 403);
    let res = client.get(&url).bearer_auth(token).send().await.expect("token");
    assert_eq!(res.status(), 200);
    let text = res.text().await.expect("text");
    // The refusals above were counted.
    let refused = common::metric(
        &text,
        "reel_requests_total",
        &[("operation", "GetMetrics"), ("outcome", "MissingAuthenticationTokenException")],
    );
    assert!(refused.is_some_and(|n| n >= 1.0), "{text}");

    let res = client.get(presign_url(&url, KEY_ID, SECRET)).send().await.expect("presigned");
    assert_eq!(res.status(), 200, "root's signed request");

    let off = server(|c| c.metrics.access = MetricsAccess::Off).await;
    let res = client.get(format!("http://{}/metrics", off.addr)).send().await.expect("off");
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["__type"], "UnknownOperationException");
}
