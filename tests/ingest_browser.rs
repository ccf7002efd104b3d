//! WebRTC ingestion from a browser: headless Chromium (fake camera and microphone) loads a
//! test page built on the official KVS JS SDK and `@aws-sdk/client-kinesis-video*`
//! (tests/e2e/browser/, bundled with esbuild, driven by playwright-core) in master role,
//! connects over `wss://`, calls JoinStorageSession, answers the storage peer and streams
//! 10 s; the stream must then hold ≥ 8 s of decodable H.264 + Opus whose fragments each start
//! with a keyframe.
//!
//! Runs in a private network namespace (tests/common/netns.rs); needs the packages from
//! tests/e2e/install.sh (Chromium, node + the page's npm packages, ffmpeg).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::ingest::{self, MasterRun};
use common::netns::{self, Netns};
use common::{Options, REGION, ROOT_KEY_ID, ROOT_SECRET};

/// How long the page streams after its PeerConnection is connected.
const STREAM_SECONDS: u64 = 10;
/// Least stored media duration accepted for that.
const MIN_STORED_S: f64 = 8.0;
/// Longest the page may take in total (bundling, browser start, offer wait, streaming).
const PAGE_TIMEOUT: Duration = Duration::from_secs(150);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/browser")
}

#[test]
fn netns_browser_master_ingests_h264_and_opus() {
    netns::run("netns_browser_master_ingests_h264_and_opus", |ns| {
        tokio::runtime::Runtime::new().expect("runtime").block_on(run(ns));
    });
}

async fn run(ns: Netns) {
    let dir = browser_dir();
    for dep in ["amazon-kinesis-video-streams-webrtc", "esbuild", "playwright-core"] {
        assert!(
            dir.join("node_modules").join(dep).join("package.json").is_file(),
            "{dep} is not installed in {}: run tests/e2e/install.sh",
            dir.display()
        );
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).is_file(), "{chromium} is missing: run tests/e2e/install.sh");

    let mut reel = netns::start_reel(&ns, Options { args: vec!["--tls-self-signed".into()], ..Default::default() });
    assert!(reel.url.starts_with("https://"), "reel serves TLS: {}", reel.url);
    let ch = ingest::storage_channel(&reel, "browser").await;
    assert!(ch.wss.starts_with("wss://"), "the JS SDK needs a wss:// endpoint: {}", ch.wss);
    println!("channel {} → stream {}; endpoints wss={} webrtc={}", ch.channel_arn, ch.stream_arn, ch.wss, ch.webrtc);

    let child = tokio::process::Command::new("node")
        .arg(dir.join("run.mjs"))
        .current_dir(&dir)
        .env("REEL_ENDPOINT", &reel.url)
        .env("REEL_CHANNEL_NAME", "browser-channel")
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", ROOT_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", ROOT_SECRET)
        .env("REEL_STREAM_SECONDS", STREAM_SECONDS.to_string())
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node tests/e2e/browser/run.mjs");
    let MasterRun { events, status, stderr } = ingest::run_master(child, "browser", PAGE_TIMEOUT).await;
    let has = |e: &str| events.iter().any(|v| v["event"] == e);
    let summary = || format!("page events: {events:#?}\nrun.mjs stderr:\n{stderr}\nreel log:\n{}", reel.log());

    assert!(has("media_storage"), "the page read the media storage configuration\n{}", summary());
    assert!(has("local_media"), "getUserMedia gave fake camera + microphone\n{}", summary());
    let done = ingest::check_master_events(&events, "the page", &summary);
    assert!(status.success(), "run.mjs exit status {}\n{}", status, summary());
    println!("streamed {} s", done["streamed_s"]);

    let probe = ingest::check_stored_media(&mut reel, &ch.stream_arn, "ingest_browser").await;
    for codec in ["h264", "opus"] {
        let d = probe.codec_duration(codec).expect("duration");
        assert!(
            d >= MIN_STORED_S,
            "stored {codec} lasts {d:.3} s, want ≥ {MIN_STORED_S} s of a {STREAM_SECONDS} s stream"
        );
    }
}
