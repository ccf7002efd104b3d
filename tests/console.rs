//! The console (`/`) in headless Chromium (tests/viewer/console.mjs, playwright-core with the
//! Debian chromium): sign in, create a channel and a stream through the forms, enable media
//! storage, the sessions dashboard, delete both, and a key whose policy denies CreateStream
//! sees the refusal (KVS's NotAuthorizedException) in the form while nothing is created. Any browser console error fails
//! it. Screenshots of each page (1280×800) go to docs/console/, so the README's stay true.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Options, REGION, ROOT_KEY_ID, ROOT_SECRET, Reel};

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

/// Runs the console script and returns its JSON report.
fn run_console(url: &str) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests").join("viewer");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(
        node && Path::new(&chromium).exists(),
        "the console test needs `node` and Chromium ({chromium}): apt-get install nodejs npm chromium (or run .ci/run)"
    );
    if !dir.join("node_modules/playwright-core/package.json").is_file() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "npm ci in tests/viewer failed (run .ci/run)");
    }
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
        .env("CHROMIUM", chromium)
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .unwrap_or_else(|_| panic!("console script output: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_runs_the_setup_flows_in_chromium() {
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = common::write_file(dir.path(), "credentials.toml", &credentials());
    let reel = Reel::start_with(Options {
        args: vec!["--credentials-file".into(), creds.display().to_string()],
        ..Default::default()
    });
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
        move || run_console(&url)
    })
    .await
    .expect("console script");
    assert_eq!(report["ok"], true, "{report:#}\n{}", reel.log());
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
    let kvs = reel.kvs();
    let channels = kvs.list_signaling_channels().send().await.expect("list channels");
    assert!(channels.channel_info_list().is_empty(), "{channels:?}");
    let streams = kvs.list_streams().send().await.expect("list streams");
    assert!(streams.stream_info_list().is_empty(), "{streams:?}");
    // Render times are reported, not asserted (speed is a benchmark's job, not a test's).
    println!("console render times (ms, route → rendered): {}", report["timings"]);
}
