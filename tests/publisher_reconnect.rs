//! A simulated KVS master (reel-sim's publisher with its C-SDK-like reconnect) survives a
//! reel restart: the storage session is lost when reel stops, the publisher backs off,
//! reconnects when reel is back on the same address, calls JoinStorageSession again and
//! publishes on; the stream holds fragments from before and after the restart.

mod common;

use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{REGION, ROOT_KEY_ID, ROOT_SECRET, Reel};
use reel_sim::kvs::KvsClient;
use reel_sim::publisher::{
    MediaSource, PublisherConfig, PublisherStats, ReconnectPolicy, provision_storage_channel, publish_with_reconnect,
};
use reel_sim::sigv4::Signer;

/// `reel serve` on a fixed address and data dir, so a restart comes back where it was.
fn start(listen: &str, data_dir: &std::path::Path) -> Reel {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reel"));
    cmd.args(["serve", "--listen", listen, "--turn-listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir).args([
        "--access-key-id",
        ROOT_KEY_ID,
        "--secret-access-key",
        ROOT_SECRET,
    ]);
    Reel::launch(cmd, data_dir.to_path_buf(), None)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_reconnects_after_a_reel_restart_and_both_sessions_are_stored() {
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let listen = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut reel = start(&listen, dir.path());

    let client = KvsClient::new(&reel.url, Signer::new(ROOT_KEY_ID, ROOT_SECRET, REGION));
    let channel =
        provision_storage_channel(&client, "reconnecting", "reconnecting-stream", 1).await.expect("provision");
    let source = Arc::new(MediaSource::new(500_000).expect("media"));
    let stats = PublisherStats::new();
    let until = Instant::now() + Duration::from_secs(40);
    let publisher = {
        let (client, channel, stats) = (client.clone(), channel.clone(), stats.clone());
        let cfg = PublisherConfig::new("127.0.0.1".parse().expect("ip"), source);
        tokio::spawn(async move {
            publish_with_reconnect(&client, &channel, cfg, stats, until, ReconnectPolicy::default()).await
        })
    };

    // First session: connected and publishing for a few seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats.connections.load(Ordering::Relaxed) < 1 {
        assert!(Instant::now() < deadline, "first session never connected: {:?}\n{}", stats.snapshot(), reel.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The console's sessions dashboard lists the live session with its counters.
    let listed = client.call(&reel.url, "/listStorageSessions", serde_json::json!({})).await.expect("sessions");
    let sessions = listed["Sessions"].as_array().cloned().unwrap_or_default();
    assert_eq!(sessions.len(), 1, "{listed}");
    let s = &sessions[0];
    assert_eq!(s["ChannelARN"], channel.channel_arn.as_str(), "{listed}");
    assert_eq!(s["StreamARN"], channel.stream_arn.as_str(), "{listed}");
    assert!(
        s["Fragments"].as_u64().is_some_and(|n| n >= 1) && s["Bytes"].as_u64().is_some_and(|b| b > 100_000),
        "{listed}"
    );
    assert!(s["Master"].as_str().is_some_and(|m| m.starts_with("127.0.0.1:")), "{listed}");
    assert!(s["DurationMs"].as_u64().is_some_and(|d| d >= 4_000), "{listed}");
    assert!(reel.sigterm(), "reel stops cleanly");
    let restart_ms = now_ms();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reel = start(&listen, dir.path());

    // The publisher notices, backs off, reconnects and publishes again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats.connections.load(Ordering::Relaxed) < 2 {
        assert!(Instant::now() < deadline, "no reconnect: {:?}\n{}", stats.snapshot(), reel.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    publisher.abort();
    let snap = stats.snapshot();
    assert!(snap.reconnects >= 1, "{snap:?}");
    assert_eq!(snap.resume_gaps_us.len(), 1, "one loss, one resume: {snap:?}");
    assert!(snap.failure.is_none(), "a recovered session is not a failure: {snap:?}");

    // Fragments from both sessions are listed.
    let fragments = client.list_fragments(&reel.url, &channel.stream_arn).await.expect("ListFragments");
    let before = fragments.iter().filter(|f| f.server_ms < restart_ms).count();
    let after = fragments.iter().filter(|f| f.server_ms > restart_ms).count();
    assert!(before >= 2 && after >= 2, "before {before}, after {after}: {fragments:?}");
}
