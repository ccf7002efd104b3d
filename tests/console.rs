//! The console (`/`) in headless Chromium (tests/viewer/console.mjs, playwright-core with the
//! Debian chromium): sign in, create a channel and a stream through the forms, enable media
//! storage, the sessions dashboard, delete both, and a key whose policy denies CreateStream
//! sees the refusal (KVS's NotAuthorizedException) in the form while nothing is created.
//! The viewer page plays stored media on demand, draws its fragments on the timeline and
//! stills of them (GetImages), plays from a clicked fragment and downloads a GetClip MP4 that
//! ffprobe reads back; its Live
//! (WebRTC) mode names the missing channel for a stream no channel stores into (live WebRTC
//! playback needs a network namespace: tests/console_master.rs). Any browser console error fails
//! it. Screenshots of each page (1280×800) go to docs/console/, so the README's stay true.

#[path = "common/browser.rs"]
mod browser;
#[path = "common/inproc.rs"]
mod inproc;

use std::path::Path;
use std::process::Command;

use inproc::{InProcess, REGION, ROOT_KEY_ID, ROOT_SECRET};

const LIMITED_KEY: &str = "AKIACONSOLELIMITED01";
const LIMITED_SECRET: &str = "console-limited-secret-00000000000000000";

/// May list and describe everything, and do anything but create streams.
fn credentials() -> String {
    format!(
        r#"
[[key]]
access_key_id = "{LIMITED_KEY}"
secret_access_key = "{LIMITED_SECRET}"
[[key.statement]]
effect = "Allow"
action = "kinesisvideo:*"
resource = "*"
[[key.statement]]
effect = "Deny"
action = "kinesisvideo:CreateStream"
resource = "*"
"#
    )
}

/// What the viewer part of the script plays: a stream name, its producer time range, and
/// where the clip goes.
struct Play {
    stream: String,
    range: (u64, u64),
    clip: std::path::PathBuf,
}

/// Runs the console script and returns its JSON report.
fn run_console(url: &str, play: &Play) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (dir, chromium) = browser::playwright();
    let shots = root.join("docs").join("console");
    std::fs::create_dir_all(&shots).expect("docs/console");
    let out = Command::new("node")
        .arg(dir.join("console.mjs"))
        .env("CONSOLE_URL", url)
        .env("KEY_ID", ROOT_KEY_ID)
        .env("SECRET", ROOT_SECRET)
        .env("LIMITED_KEY_ID", LIMITED_KEY)
        .env("LIMITED_SECRET", LIMITED_SECRET)
        .env("REGION", REGION)
        .env("SHOTS", &shots)
        .env("PLAY_STREAM", &play.stream)
        .env("PLAY_START_MS", play.range.0.to_string())
        .env("PLAY_END_MS", play.range.1.to_string())
        .env("CLIP_PATH", &play.clip)
        .env("CHROMIUM", chromium)
        .output()
        .expect("node");
    browser::report(&out, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_runs_the_setup_flows_in_chromium() {
    // Creating 1,000 channels and 1,000 streams needs more than KVS's create rates.
    let reel = InProcess::start_with(Some(&credentials()), |c| {
        for op in ["CreateSignalingChannel", "CreateStream"] {
            if let Some(l) = c.limits.control_plane_tps.get_mut(op) {
                l.account = 100_000.0;
            }
        }
    })
    .await;
    // Pages list 50 at a time: a long account must not slow them down.
    let kvs = reel.kvs();
    for batch in 0..20 {
        futures::future::join_all((batch * 50..batch * 50 + 50).map(|i| {
            let kvs = kvs.clone();
            async move {
                kvs.create_signaling_channel().channel_name(format!("bulk-{i:04}")).send().await.expect("channel");
                kvs.create_stream()
                    .stream_name(format!("bulk-{i:04}"))
                    .data_retention_in_hours(1)
                    .send()
                    .await
                    .expect("stream");
            }
        }))
        .await;
    }
    // A stream with stored media for the viewer page: the fixture clip, ending now.
    let arn = reel.create_stream("played", 24).await;
    let fragments = inproc::fixture_fragments(inproc::now_ms() - 12_000);
    let stream = reel.stream(&arn);
    for f in &fragments {
        inproc::append(&stream, f).await;
    }
    let last = fragments.last().expect("fixture fragments");
    let dir = tempfile::tempdir().expect("tempdir");
    let play = Play {
        stream: "played".into(),
        range: (fragments[0].producer_ts_ms, last.producer_ts_ms + u64::from(last.duration_ms)),
        clip: dir.path().join("clip.mp4"),
    };
    // `/` is the console for a browser, and still the signaling endpoint for a WebSocket.
    let page = reqwest::get(format!("{}/", reel.url)).await.expect("GET /");
    assert!(page.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/html"));
    assert!(page.text().await.expect("body").contains("/console/app.js"));
    let signaling = reqwest::get(format!("{}/?X-Amz-ChannelARN=nope", reel.url)).await.expect("GET /?…");
    assert!(
        signaling.status().is_client_error() && signaling.headers().contains_key("x-amzn-ErrorType"),
        "a signaling request gets the signaling endpoint's KVS error, not the console: {signaling:?}"
    );

    let report = tokio::task::spawn_blocking({
        let url = reel.url.clone();
        let play = Play { stream: play.stream.clone(), range: play.range, clip: play.clip.clone() };
        move || run_console(&url, &play)
    })
    .await
    .expect("console script");
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["consoleErrors"], serde_json::json!([]), "browser console errors: {report:#}");
    assert!(report["channelArn"].as_str().is_some_and(|a| a.contains(":channel/console-cam/")), "{report:#}");
    assert_eq!(report["storage"], "Saved: ENABLED", "{report:#}");
    assert!(report["sessionsNode"].as_str().is_some_and(|s| s.starts_with("Node ")), "{report:#}");
    let denied = report["deniedMessage"].as_str().unwrap_or_default();
    // KVS's control plane answers a policy refusal with NotAuthorizedException (401).
    assert!(
        denied.starts_with("NotAuthorizedException: ")
            && denied.contains("not authorized to perform: kinesisvideo:CreateStream"),
        "{report:#}"
    );

    // What the browser did, as the SDK sees it: both deleted, the denied stream never made.
    let channels = kvs.list_signaling_channels().channel_name_condition(
        aws_sdk_kinesisvideo::types::ChannelNameCondition::builder()
            .comparison_operator(aws_sdk_kinesisvideo::types::ComparisonOperator::BeginsWith)
            .comparison_value("console-")
            .build(),
    );
    let channels = channels.send().await.expect("list channels");
    assert!(channels.channel_info_list().is_empty(), "{channels:?}");
    for name in ["console-stream", "denied-stream"] {
        let gone = kvs.describe_stream().stream_name(name).send().await;
        assert!(gone.is_err(), "{name} exists: {gone:?}");
    }
    assert!(kvs.describe_stream().stream_name("played").send().await.is_ok());
    assert_eq!(report["channelsListed"], 50, "the first page of 1,001 channels: {report:#}");

    // The viewer page played the stored media, drew its fragments, played from a clicked
    // fragment and downloaded a clip that ffprobe reads as H.264 video of the clip's length.
    assert!(report["timelineFragments"].as_u64().is_some_and(|n| n >= 3), "{report:#}");
    // Stills of the range (GetImages): several, each a decodable JPEG 160 px wide.
    assert!(report["stills"].as_u64().is_some_and(|n| n >= 4), "{report:#}");
    let widths = report["stillWidths"].as_array().cloned().unwrap_or_default();
    assert!(!widths.is_empty() && widths.iter().all(|w| w == 160), "{report:#}");
    assert!(report["playedOnDemand"].as_f64().is_some_and(|t| t >= 2.0), "{report:#}");
    assert!(report["clipName"].as_str().is_some_and(|n| n.starts_with("played-") && n.ends_with(".mp4")), "{report:#}");
    // Live (WebRTC) on a stream no channel stores into says so (console_master.rs plays one).
    assert!(
        report["webrtcUnmapped"].as_str().is_some_and(|m| m.contains("No signaling channel stores into played")),
        "{report:#}"
    );
    let clip = play.clip.clone();
    let (codecs, duration) = tokio::task::spawn_blocking(move || {
        reel::testkit::probe::require(&["ffprobe"]);
        let streams = reel::testkit::probe::streams(&clip).expect("ffprobe streams");
        (streams.codecs, reel::testkit::probe::duration(&clip).expect("ffprobe duration"))
    })
    .await
    .expect("ffprobe");
    let expected = (play.range.1 - play.range.0) as f64 / 1000.0;
    assert_eq!(codecs.first().map(String::as_str), Some("h264"), "clip streams {codecs:?}");
    assert!((duration - expected).abs() < 1.0, "clip of {duration} s, stored {expected} s");
    // Render times (with 1,000 channels and 1,000 streams) are reported, not asserted:
    // speed is a benchmark's job, not a test's.
    println!("console render times with 1,000 channels and streams (ms): {}", report["timings"]);
}
