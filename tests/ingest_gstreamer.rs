//! WebRTC ingestion from a real second WebRTC stack: a GStreamer `webrtcbin` master
//! (tests/e2e/gst_master.py, system `/usr/bin/python3` with python3-gi) sends
//! videotestsrc/audiotestsrc as H.264 constrained baseline + Opus through reel's signaling
//! and JoinStorageSession. The stored fragments, concatenated behind the track header, must
//! form an MKV that ffprobe reports as H.264 + Opus of the streamed duration (±0.5 s), that
//! ffmpeg decodes without errors, and whose fragments each start with a keyframe.
//!
//! Runs in a private network namespace (tests/common/netns.rs); needs the packages from
//! tests/e2e/install.sh.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::ingest::{self, MasterRun};
use common::netns::{self, Netns};
use common::{Options, REGION, ROOT_KEY_ID, ROOT_SECRET};
use serde_json::Value;

/// How long the master streams after its peer connection reports `connected`.
const STREAM_SECONDS: f64 = 10.0;
/// Allowed difference between the streamed and the stored duration.
const DURATION_TOLERANCE_S: f64 = 0.5;
/// Longest the master may run in total (signaling, offer wait, streaming).
const MASTER_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn netns_gstreamer_master_ingests_h264_and_opus() {
    netns::run("netns_gstreamer_master_ingests_h264_and_opus", |ns| {
        tokio::runtime::Runtime::new().expect("runtime").block_on(run(ns));
    });
}

async fn run(ns: Netns) {
    let mut reel = netns::start_reel(&ns, Options::default());
    assert!(reel.url.contains(ns.reel_ip), "reel listens on the veth address: {}", reel.url);
    let ch = ingest::storage_channel(&reel, "gst").await;
    println!("channel {} → stream {}; endpoints wss={} webrtc={}", ch.channel_arn, ch.stream_arn, ch.wss, ch.webrtc);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/gst_master.py");
    let mut cmd = tokio::process::Command::new("/usr/bin/python3");
    cmd.arg(&script)
        .args(["--wss-endpoint", &ch.wss, "--webrtc-endpoint", &ch.webrtc, "--channel-arn", &ch.channel_arn])
        .args(["--region", REGION, "--access-key-id", ROOT_KEY_ID, "--secret-access-key", ROOT_SECRET])
        .args(["--seconds", &STREAM_SECONDS.to_string(), "--timeout", &MASTER_TIMEOUT.as_secs().to_string()])
        .arg("--log-sdp")
        .env("GST_DEBUG", "*:1,webrtcbin:2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if reel.url.starts_with("https://") {
        cmd.arg("--ca-file").arg(reel.ca_path());
    }
    let child = cmd.spawn().expect("spawn /usr/bin/python3 tests/e2e/gst_master.py");
    let MasterRun { events, status, stderr } =
        ingest::run_master(child, "gst_master", MASTER_TIMEOUT + Duration::from_secs(10)).await;
    let summary = || format!("master events: {events:#?}\nmaster stderr:\n{stderr}\nreel log:\n{}", reel.log());

    // Everything up to the offer: signaling connect and JoinStorageSession accepted.
    let done = ingest::check_master_events(&events, "the master", &summary);
    assert!(status.success(), "gst_master exit status {}\n{}", status, summary());
    let streamed = done["streamed_s"].as_f64().expect("streamed_s");

    let probe = ingest::check_stored_media(&mut reel, &ch.stream_arn, "ingest_gstreamer").await;
    let video = probe.codec_duration("h264").expect("video duration");
    assert!(
        (video - streamed).abs() <= DURATION_TOLERANCE_S,
        "stored video lasts {video:.3} s, the master streamed {streamed:.3} s (±{DURATION_TOLERANCE_S} s)"
    );
    let audio = probe.codec_duration("opus").expect("audio duration");
    assert!(
        (audio - streamed).abs() <= DURATION_TOLERANCE_S,
        "stored audio lasts {audio:.3} s, the master streamed {streamed:.3} s (±{DURATION_TOLERANCE_S} s)"
    );
}

/// The harness itself, independent of reel's media peer: gst_master.py's WebRTC half answers
/// a stand-in storage peer (a second webrtcbin offering recvonly H.264 + Opus, wired
/// in-process by tests/e2e/selftest_gst_master.py) inside a namespace, and RTP of both kinds
/// flows. When this passes and the test above fails after the offer, look at reel.
#[test]
fn netns_gst_master_answers_a_recvonly_offer() {
    netns::run("netns_gst_master_answers_a_recvonly_offer", |_| selftest_gst_master());
}

fn selftest_gst_master() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/selftest_gst_master.py");
    let out = std::process::Command::new("/usr/bin/python3").arg(&script).output().expect("run selftest_gst_master.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    let last: Value = stdout.lines().rev().find_map(|l| serde_json::from_str(l).ok()).unwrap_or(Value::Null);
    assert!(
        out.status.success() && last["ok"] == true,
        "gst_master.py streams to a recvonly webrtcbin: {last}\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in ["video", "audio"] {
        assert!(last["rtp_buffers"][kind].as_u64().unwrap_or(0) > 10, "{kind} RTP reached the peer: {last}");
    }
}
