//! The embedded TURN server's relay policy end to end: the real `reel` binary, credentials
//! from GetIceServerConfig (official SDK), and webrtc-rs's TURN client relaying to a UDP
//! socket on this host. Loopback peers are refused with 403 unless the config file's
//! `[limits.turn] allowed_peer_cidrs` lists them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

mod common;

use aws_sdk_kinesisvideo::types::ChannelProtocol;
use common::{Options, REGION, ROOT_KEY_ID, ROOT_SECRET, Reel};

/// (username, password, TURN UDP address) for a fresh channel.
async fn credentials(reel: &Reel, name: &str) -> (String, String, SocketAddr) {
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
    let mut endpoints = common::master_endpoints(&kvs, &arn, &[ChannelProtocol::Https]).await;
    let https = endpoints.remove(&ChannelProtocol::Https).expect("HTTPS endpoint");
    let signaling = aws_sdk_kinesisvideosignaling::Client::from_conf(
        aws_sdk_kinesisvideosignaling::Config::builder()
            .behavior_version(aws_sdk_kinesisvideosignaling::config::BehaviorVersion::latest())
            .region(aws_sdk_kinesisvideosignaling::config::Region::new(REGION))
            .endpoint_url(&https)
            .credentials_provider(aws_credential_types::Credentials::new(ROOT_KEY_ID, ROOT_SECRET, None, None, "t"))
            .http_client(reel.http_client())
            .build(),
    );
    let out = signaling.get_ice_server_config().channel_arn(&arn).send().await.expect("GetIceServerConfig");
    let server = out.ice_server_list().first().expect("one ICE server");
    let udp = server
        .uris()
        .iter()
        .find_map(|u| u.strip_prefix("turn:").and_then(|r| r.strip_suffix("?transport=udp")))
        .expect("a turn: UDP URI");
    (
        server.username().expect("username").into(),
        server.password().expect("password").into(),
        udp.parse().expect("host:port"),
    )
}

/// Allocates and relays one datagram to a UDP socket on 127.0.0.1: `Ok(received)` or the
/// relay's error (a refused CreatePermission).
async fn relay_to_loopback(reel: &Reel, name: &str) -> Result<bool, String> {
    let (user, pass, turn_addr) = credentials(reel, name).await;
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind peer");
    let conn = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    let client = turn::client::Client::new(turn::client::ClientConfig {
        stun_serv_addr: turn_addr.to_string(),
        turn_serv_addr: turn_addr.to_string(),
        username: user,
        password: pass,
        realm: "reel".into(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(conn),
        vnet: None,
    })
    .await
    .expect("client");
    client.listen().await.expect("listen");
    let relay = client.allocate().await.expect("allocation with issued credentials");
    use webrtc_util::Conn;
    let sent = relay.send_to(b"through the relay", peer.local_addr().expect("addr")).await;
    let mut buf = [0u8; 64];
    let got = tokio::time::timeout(Duration::from_secs(1), peer.recv_from(&mut buf)).await.is_ok();
    let _ = client.close().await;
    sent.map(|_| got).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_peers_are_refused_by_default() {
    let reel = Reel::start();
    let err = relay_to_loopback(&reel, "deny").await.expect_err("a relay to 127.0.0.1 is refused");
    assert!(err.contains("403"), "refused with 403 Forbidden: {err}");
    let metrics = reqwest::get(format!("{}/metrics", reel.url)).await.expect("metrics").text().await.expect("text");
    let refused = common::metric(&metrics, "reel_turn_refused_total", &[("reason", "peer_denied")]);
    assert!(refused.is_some_and(|n| n >= 1.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_listed_network_is_relayed_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_file(dir.path(), "reel.toml", "[limits.turn]\nallowed_peer_cidrs = [\"127.0.0.0/8\"]\n");
    let reel =
        Reel::start_with(Options { args: vec!["--config".into(), config.display().to_string()], ..Default::default() });
    assert_eq!(relay_to_loopback(&reel, "allow").await, Ok(true), "allow-listed loopback peer receives");
}
