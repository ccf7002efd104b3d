//! PutMedia through libcurl over TLS to the real `reel` binary, as the KVS C producer sends
//! it: curl (the C producer's HTTP client) streams the PIC's Matroska chunked, with its own
//! `Expect: 100-continue`, the C signer's headers and an empty-body payload hash, to a reel
//! serving HTTPS with its self-signed CA; the acknowledgements curl prints are the
//! producer's view, and the official SDK then lists what was stored.

mod common;

use common::producer::{Request, Signer, pic_stream, request_headers};
use common::{Options, REGION, ROOT_KEY_ID, ROOT_SECRET, Reel};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcurl_uploads_over_tls_to_the_real_server() {
    reel::testkit::probe::require(&["curl"]);
    let reel = Reel::start_with(Options { args: vec!["--tls-self-signed".into()], ..Default::default() });
    assert!(reel.url.starts_with("https://"), "{}", reel.url);
    reel.kvs().create_stream().stream_name("tls-cam").data_retention_in_hours(24).send().await.expect("CreateStream");

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
    let start = now - 20_000;
    let frags = reel::testkit::fixture_fragments(start as i64 * 1_000).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let body = dir.path().join("body.mkv");
    std::fs::write(&body, pic_stream(&frags, |f| f.producer_ts_ms)).expect("body");

    let start_header = format!("{}.{}", start / 1000, start % 1000);
    let request = Request {
        stream_name: "tls-cam",
        timecode_type: "ABSOLUTE",
        start: &start_header,
        signer: Signer::C,
        key_id: ROOT_KEY_ID,
        secret: ROOT_SECRET,
        region: REGION,
        acks: true,
    };
    let mut curl = std::process::Command::new("curl");
    curl.args(["-sS", "--http1.1", "-X", "POST", "--cacert"])
        .arg(reel.ca_path())
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .args(["-w", "\nstatus %{http_code}\n"]);
    for (name, value) in request_headers(&reel.url, &request) {
        curl.arg("-H").arg(format!("{name}: {value}"));
    }
    let out = curl.arg(format!("{}/putMedia", reel.url)).output().expect("curl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "curl: {}\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr), reel.log());
    assert!(stdout.contains("status 200"), "{stdout}");
    let acks: Vec<Value> =
        stdout.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).expect("ack")).collect();
    let persisted: Vec<u64> = acks
        .iter()
        .filter(|a| a["EventType"] == "PERSISTED")
        .map(|a| a["FragmentTimecode"].as_u64().expect("timecode"))
        .collect();
    assert_eq!(persisted, frags.iter().map(|f| f.producer_ts_ms).collect::<Vec<_>>(), "{acks:?}");

    let listed = reel.archived().list_fragments().stream_name("tls-cam").send().await.expect("ListFragments");
    assert_eq!(listed.fragments().len(), 3, "{:?}", listed.fragments());

    // The upload is counted.
    let metrics = std::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(reel.ca_path())
        .arg(format!("{}/metrics", reel.url))
        .output()
        .expect("curl /metrics");
    let text = String::from_utf8_lossy(&metrics.stdout);
    assert_eq!(
        common::metric(&text, "reel_put_media_fragments_total", &[("outcome", "persisted")]),
        Some(3.0),
        "{text}"
    );
    assert_eq!(common::metric(&text, "reel_put_media_connections_total", &[("reason", "finished")]), Some(1.0));
    assert_eq!(common::metric(&text, "reel_put_media_connections_active", &[]), Some(0.0));
}
