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

#[tokio::test]
async fn demo_prints_a_viewer_url_that_plays_the_live_camera() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_reel"))
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn reel demo");
    let stdout = child.stdout.take().expect("stdout");
    let _guard = KillOnDrop(child);
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
