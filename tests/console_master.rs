//! The console's live flow end to end (issue: the console): headless Chromium with a fake
//! camera and microphone runs the console's Master page ("ingest and storage", the KVS JS
//! SDK embedded in reel) against reel over `wss://`; reel's storage peer joins and stores;
//! the Sessions dashboard shows the session (and, later, its live viewer); the viewer page
//! plays it live over HLS and over WebRTC ("Live (WebRTC)": JoinStorageSessionAsViewer; the
//! `<video>` advances each time; so does the standalone `/viewer` page's Live (WebRTC)
//! mode), draws ≥ 3 stored fragments and downloads a clip that ffprobe reads back.
//!
//! Runs in a private network namespace (tests/common/netns.rs): Chromium gathers no ICE
//! candidates on loopback alone. Needs what tests/e2e/install.sh installs.

mod common;

use std::path::Path;

use common::netns::{self, Netns};
use common::{Options, REGION, ROOT_KEY_ID, ROOT_SECRET};

#[test]
fn netns_console_master_ingests_and_the_viewer_plays_it_live() {
    netns::run("netns_console_master_ingests_and_the_viewer_plays_it_live", |ns| {
        tokio::runtime::Runtime::new().expect("runtime").block_on(run(ns));
    });
}

async fn run(ns: Netns) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (dir, chromium) = common::browser::playwright();
    let mut reel = netns::start_reel(&ns, Options { args: vec!["--tls-self-signed".into()], ..Default::default() });
    let ch = common::ingest::storage_channel(&reel, "console").await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let clip = tmp.path().join("clip.mp4");
    let shots = root.join("docs").join("console");
    std::fs::create_dir_all(&shots).expect("docs/console");
    let out = tokio::process::Command::new("node")
        .arg(dir.join("console_master.mjs"))
        .env("CONSOLE_URL", &reel.url)
        .env("KEY_ID", ROOT_KEY_ID)
        .env("SECRET", ROOT_SECRET)
        .env("REGION", REGION)
        .env("CHANNEL", "console-channel")
        .env("STREAM", "console-stream")
        .env("CLIP_PATH", &clip)
        .env("SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(std::time::Duration::from_secs(180), out).await.expect("script timed out").expect("node");
    let report = common::browser::report(&out, &format!("reel log:\n{}", reel.log()));
    assert_eq!(report["ok"], true, "{report:#}\nreel log:\n{}", reel.log());
    assert_eq!(report["consoleErrors"], serde_json::json!([]), "browser console errors: {report:#}");
    assert!(report["liveAdvanced"].as_f64().is_some_and(|t| t >= 2.0), "{report:#}");
    assert!(report["webrtcAdvanced"].as_f64().is_some_and(|t| t >= 2.0), "live WebRTC playback: {report:#}");
    assert!(report["dashboardViewers"].as_u64().is_some_and(|n| n >= 1), "the dashboard counts the viewer: {report:#}");
    assert!(
        report["viewerPageAdvanced"].as_f64().is_some_and(|t| t >= 2.0),
        "/viewer live WebRTC playback: {report:#}"
    );
    assert_eq!(report["viewerPageErrors"], serde_json::json!([]), "/viewer console errors: {report:#}");
    assert!(report["timelineFragments"].as_u64().is_some_and(|n| n >= 3), "{report:#}");
    println!("console master: {report}");
    reel::testkit::probe::require(&["ffprobe"]);
    let codecs = reel::testkit::probe::streams(&clip).expect("ffprobe streams").codecs;
    assert!(codecs.iter().any(|c| c == "h264"), "clip streams {codecs:?}");
    let duration = reel::testkit::probe::duration(&clip).expect("ffprobe duration");
    assert!(duration >= 4.0, "clip of {duration} s");
    // The stored stream itself decodes (the same check as the other ingest tests).
    common::ingest::check_stored_media(&mut reel, &ch.stream_arn, "console_master").await;
}
