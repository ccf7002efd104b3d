//! The console's live flow end to end (issue: the console): headless Chromium with a fake
//! camera and microphone runs the console's Master page ("ingest and storage", the KVS JS
//! SDK embedded in reel) against reel over `wss://`; reel's storage peer joins and stores;
//! the Sessions dashboard shows the session; the viewer page plays it live (the `<video>`
//! advances), draws ≥ 3 stored fragments and downloads a clip that ffprobe reads back.
//!
//! Runs in a private network namespace (tests/common/netns.rs): Chromium gathers no ICE
//! candidates on loopback alone. Needs what tests/e2e/install.sh installs.

mod common;

use std::path::Path;
use std::process::Command;

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
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| {
        panic!("script output: {stdout}\n{}\nreel log:\n{}", String::from_utf8_lossy(&out.stderr), reel.log())
    });
    assert_eq!(report["ok"], true, "{report:#}\nreel log:\n{}", reel.log());
    assert_eq!(report["consoleErrors"], serde_json::json!([]), "browser console errors: {report:#}");
    assert!(report["liveAdvanced"].as_f64().is_some_and(|t| t >= 2.0), "{report:#}");
    assert!(report["timelineFragments"].as_u64().is_some_and(|n| n >= 3), "{report:#}");
    println!("console master: {report}");
    let clip_path = clip.display().to_string();
    reel::testkit::probe::require(&["ffprobe"]);
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name:format=duration", "-of", "json", &clip_path])
        .output()
        .expect("ffprobe (apt-get install -y ffmpeg)");
    let v: serde_json::Value = serde_json::from_slice(&probe.stdout).expect("ffprobe json");
    let codecs: Vec<&str> =
        v["streams"].as_array().into_iter().flatten().filter_map(|s| s["codec_name"].as_str()).collect();
    assert!(codecs.contains(&"h264"), "clip streams {codecs:?}: {v}");
    let duration: f64 = v["format"]["duration"].as_str().and_then(|d| d.parse().ok()).unwrap_or(0.0);
    assert!(duration >= 4.0, "clip of {duration} s");
    // The stored stream itself decodes (the same check as the other ingest tests).
    common::ingest::check_stored_media(&mut reel, &ch.stream_arn, "console_master").await;
}
