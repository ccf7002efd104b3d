//! `reel demo`: one command starts reel and a simulated camera, and prints a `/viewer` URL
//! whose HLS session really plays the camera's live stream.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Kills the demo when the test ends, whatever happens.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `reel demo` on `data_dir` (with `extra` flags); returns it (killed on drop), the
/// `/viewer#…` line and the lines printed before it.
fn start_demo(data_dir: &std::path::Path, extra: &[&std::ffi::OsStr]) -> (KillOnDrop, String, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reel"))
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn reel demo");
    let stdout = child.stdout.take().expect("stdout");
    let guard = KillOnDrop(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let viewer = loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("no viewer URL; saw {lines:#?}"));
        if line.contains("/viewer#") {
            break line;
        }
        lines.push(line);
    };
    (guard, viewer, lines)
}

#[tokio::test]
async fn demo_prints_a_viewer_url_that_plays_the_live_camera() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_guard, viewer, lines) = start_demo(dir.path(), &[]);
    assert!(lines.iter().any(|l| l.starts_with("reel listening on http://127.0.0.1:")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.starts_with("export AWS_ACCESS_KEY_ID=AKIA")), "{lines:#?}");

    // The page is served, and its #fragment is a LIVE HLS session URL on this server.
    let (page, fragment) = viewer.split_once('#').expect("fragment");
    let http = reqwest::Client::new();
    let html = http.get(page).send().await.expect("viewer page").text().await.expect("text");
    assert!(html.contains("hls"), "viewer page: {html:.200}");
    let session = percent_encoding::percent_decode_str(fragment).decode_utf8().expect("utf8").to_string();
    assert!(session.starts_with(page.trim_end_matches("/viewer")), "{session}");
    let master = http.get(&session).send().await.expect("master playlist").text().await.expect("text");
    let media_uri = master.lines().find(|l| !l.starts_with('#') && !l.is_empty()).expect("media playlist URI");
    let media_url = join(&session, media_uri);

    // The live playlist lists segments and keeps growing while the camera publishes.
    let first = segments(&http, &media_url).await;
    assert!(!first.is_empty(), "no segments in the live playlist");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = segments(&http, &media_url).await;
        if now.last() != first.last() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the live playlist did not advance: {now:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let segment = http.get(join(&media_url, &first[0])).send().await.expect("segment");
    assert!(segment.status().is_success(), "segment: {}", segment.status());
    assert!(segment.bytes().await.expect("bytes").len() > 10_000, "segment too small");
}

/// A second `reel demo` on the same data directory reuses the channel, whose stream already
/// holds the first run's fragments: it waits for its own camera's first fragment instead of
/// opening the LIVE session too early ("No fragments found … for the last N seconds"). The
/// LIVE window is cut to 5 s so the first run's fragments age out of it quickly.
#[tokio::test]
async fn demo_on_a_reused_channel_waits_for_a_fresh_fragment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("demo.toml");
    std::fs::write(&config, "[limits.streaming]\nlive_window_ms = 5000\n").expect("config");
    let data = dir.path().join("data");
    let flags = [std::ffi::OsStr::new("--config"), config.as_os_str()];
    let (first, _, _) = start_demo(&data, &flags);
    drop(first);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (_second, viewer, lines) = start_demo(&data, &flags);
    let (page, fragment) = viewer.split_once('#').expect("fragment");
    let session = percent_encoding::percent_decode_str(fragment).decode_utf8().expect("utf8").to_string();
    let http = reqwest::Client::new();
    let master = http.get(&session).send().await.expect("master playlist");
    assert!(master.status().is_success(), "LIVE session of the second run: {} ({lines:#?})", master.status());
    assert!(session.starts_with(page.trim_end_matches("/viewer")), "{session}");
}

/// The media segment URIs of a playlist.
async fn segments(http: &reqwest::Client, url: &str) -> Vec<String> {
    let text = http.get(url).send().await.expect("media playlist").text().await.expect("text");
    text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).map(str::to_owned).collect()
}

/// Resolves a playlist URI against the playlist's URL.
fn join(base: &str, uri: &str) -> String {
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return uri.to_string();
    }
    let without_query = base.split('?').next().unwrap_or(base);
    let dir = without_query.rsplit_once('/').map_or(without_query, |(d, _)| d);
    format!("{dir}/{uri}")
}
