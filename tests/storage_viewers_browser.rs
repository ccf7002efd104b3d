//! Live viewers of a storage session (issue 16): a master ingests into reel's storage session
//! (the KVS JS SDK in headless Chromium, tests/e2e/browser/run.mjs, or the GStreamer master,
//! tests/e2e/gst_master.py) while three viewers in headless Chromium (the KVS JS SDK's
//! `SignalingClient` as VIEWER + `JoinStorageSessionAsViewer` from
//! `@aws-sdk/client-kinesis-video-webrtc-storage`; tests/e2e/browser/viewers.mjs and
//! viewer.js) watch it through reel:
//!
//! - viewer A joins before the master (and sends talk-back audio);
//! - viewer B joins mid-GOP (shortly after A decoded a keyframe);
//! - viewer C leaves and rejoins with the same client id;
//! - a fourth viewer is refused with KVS's ClientLimitExceededException ("maximum number of
//!   viewers connected to the session");
//! - A, B and the rejoined C then each decode advancing video frames (`getStats()`
//!   framesDecoded), with no freeze longer than 1 s, and receive audio;
//! - afterwards the stored stream still decodes without errors, every fragment starting with a
//!   keyframe ([`common::ingest::check_stored_media`]).
//!
//! Runs in a private network namespace (tests/common/netns.rs): Chromium gathers no ICE
//! candidates on loopback alone. Needs what tests/e2e/install.sh installs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use common::ingest::{self, StorageChannel};
use common::netns::{self, Netns};
use common::{Options, REGION, ROOT_KEY_ID, ROOT_SECRET, Reel};

/// How long the master streams once connected: long enough for every step below.
const STREAM_SECONDS: u64 = 45;
/// How long the three viewers are watched together at the end.
const WATCH: Duration = Duration::from_secs(8);
/// Longest freeze a viewer may see (issue 16: "no freezes longer than 1 s").
const MAX_FREEZE_MS: f64 = 1000.0;
/// What KVS says when a storage session already has its maximum of viewers.
const VIEWER_CAP_MESSAGE: &str = "maximum number of viewers connected to the session";
/// Deadline for each step that waits on the network or the browser (not a speed check: a
/// step that has not happened by then is not going to).
const STEP: Duration = Duration::from_secs(60);

/// Which master ingests.
#[derive(Debug, Clone, Copy)]
enum MasterKind {
    /// The KVS JS SDK in headless Chromium (tests/e2e/browser/run.mjs + page.js).
    Browser,
    /// GStreamer webrtcbin (tests/e2e/gst_master.py).
    Gstreamer,
}

/// The two tests run one at a time: each runs two browsers (or a browser and GStreamer)
/// and reel, and a freeze check needs the CPU a real viewer would have.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn netns_three_browser_viewers_watch_a_browser_master() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    netns::run("netns_three_browser_viewers_watch_a_browser_master", |ns| {
        tokio::runtime::Runtime::new().expect("runtime").block_on(run(ns, MasterKind::Browser));
    });
}

#[test]
fn netns_three_browser_viewers_watch_a_gstreamer_master() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    netns::run("netns_three_browser_viewers_watch_a_gstreamer_master", |ns| {
        tokio::runtime::Runtime::new().expect("runtime").block_on(run(ns, MasterKind::Gstreamer));
    });
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/browser")
}

/// A child process printing one JSON event per stdout line, read as they come (each line is
/// echoed as `[name] …`).
struct Proc {
    name: &'static str,
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    /// Spawns `cmd` with piped stdio.
    fn spawn(name: &'static str, mut cmd: tokio::process::Command) -> Self {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let events = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let sink = events.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                println!("[{name}] {line}");
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().expect("events").push(v);
                }
            }
        });
        let mut err = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err.next_line().await {
                let mut s = sink.lock().expect("stderr");
                s.push_str(&line);
                s.push('\n');
            }
        });
        let stdin = child.stdin.take();
        Self { name, child, stdin, events, stderr }
    }

    /// Events so far.
    fn events(&self) -> Vec<Value> {
        self.events.lock().expect("events").clone()
    }

    /// Number of events so far (a starting point for [`Proc::wait_for`]).
    fn len(&self) -> usize {
        self.events.lock().expect("events").len()
    }

    /// The first event from index `from` on that satisfies `pred`, waiting up to `timeout`.
    async fn wait_for(&self, from: usize, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.events.lock().expect("events").iter().skip(from).find(|v| pred(v)) {
                return Some(v.clone());
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Writes one JSON command line to its stdin.
    async fn send(&mut self, cmd: &Value) {
        let stdin = self.stdin.as_mut().unwrap_or_else(|| panic!("{}'s stdin is closed", self.name));
        stdin.write_all(format!("{cmd}\n").as_bytes()).await.expect("write a command");
        stdin.flush().await.expect("flush a command");
    }

    /// Its stderr so far.
    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }
}

/// The running test: reel, its channel, the master and the viewers' browser.
struct Run {
    reel: Reel,
    ch: StorageChannel,
    kind: MasterKind,
    master: Option<Proc>,
    viewers: Proc,
}

impl Run {
    /// Everything that happened, for failure messages: both processes' events and stderr,
    /// and the end of reel's log.
    fn summary(&self) -> String {
        let log = self.reel.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(300)..].join("\n");
        let master = self.master.as_ref().map_or_else(
            || "(not started)".to_string(),
            |m| format!("{:#?}\nmaster stderr:\n{}", m.events(), m.stderr()),
        );
        format!(
            "master ({:?}) events: {master}\nviewer events: {:#?}\nviewers.mjs stderr:\n{}\nreel log (last 300 lines):\n{tail}",
            self.kind,
            self.viewers.events(),
            self.viewers.stderr()
        )
    }

    /// Sends a command to viewers.mjs and waits for its acknowledgement.
    async fn command(&mut self, cmd: Value) {
        let from = self.viewers.len();
        self.viewers.send(&cmd).await;
        let name = cmd["cmd"].clone();
        let viewer = cmd["viewer"].clone();
        let done = self
            .viewers
            .wait_for(from, STEP, |v| {
                (v["event"] == "ack" && v["cmd"] == name && v["viewer"] == viewer)
                    || (v["event"] == "command_failed"
                        && v["command"].as_str().is_some_and(|c| c.contains(&cmd.to_string())))
            })
            .await;
        match done {
            Some(v) if v["event"] == "ack" => {}
            other => panic!("viewers.mjs command {cmd} → {other:?}\n{}", self.summary()),
        }
    }

    /// Opens viewer tab `viewer` with `client_id`.
    async fn join(&mut self, viewer: &str, client_id: &str, send_audio: bool) {
        self.command(json!({"cmd": "join", "viewer": viewer, "clientId": client_id, "sendAudio": send_audio})).await;
    }

    /// The statistics of viewer tab `viewer` now (viewer.js `reelReport`).
    async fn report(&mut self, viewer: &str) -> Value {
        let from = self.viewers.len();
        self.command(json!({"cmd": "report", "viewer": viewer})).await;
        self.viewers
            .wait_for(from, STEP, |v| v["event"] == "report" && v["viewer"] == viewer)
            .await
            .unwrap_or_else(|| panic!("no report from viewer {viewer}\n{}", self.summary()))
    }

    /// Waits for viewer tab `viewer`'s event `event` (from index `from`); fails the test
    /// with `what` and the run's summary if it does not come, or if the viewer reports an
    /// error or a refused join first.
    async fn viewer_event(&self, from: usize, viewer: &str, event: &str, what: &str) -> Value {
        self.viewer_event_where(from, viewer, event, what, |_| true).await
    }

    /// Like [`Run::viewer_event`], for an event `event` that also satisfies `pred`.
    async fn viewer_event_where(
        &self,
        from: usize,
        viewer: &str,
        event: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let got = self
            .viewers
            .wait_for(from, STEP, |v| {
                v["viewer"] == viewer
                    && ((v["event"] == event && pred(v)) || v["event"] == "error" || v["event"] == "join_refused")
            })
            .await;
        match got {
            Some(v) if v["event"] == event => v,
            Some(v) => panic!("{what}: viewer {viewer} reported {v}\n{}", self.summary()),
            None => panic!("{what}: no `{event}` from viewer {viewer} within {STEP:?}\n{}", self.summary()),
        }
    }

    /// Waits for viewer `viewer`'s JoinStorageSessionAsViewer to answer 200 (from index
    /// `from`; the page retries a 400 every few seconds, as the SDK's master sample does).
    async fn joined(&self, from: usize, viewer: &str) {
        let what = "JoinStorageSessionAsViewer answers 200 (reel serves POST /joinStorageSessionAsViewer on the WEBRTC endpoint)";
        self.viewer_event_where(from, viewer, "join_storage_session_as_viewer", what, |v| v["status"] == 200).await;
    }
}

/// Starts the master; it streams [`STREAM_SECONDS`] once connected.
fn start_master(kind: MasterKind, reel: &Reel, ch: &StorageChannel, channel_name: &str) -> Proc {
    match kind {
        MasterKind::Browser => {
            let dir = browser_dir();
            let mut cmd = tokio::process::Command::new("node");
            cmd.arg(dir.join("run.mjs"))
                .current_dir(&dir)
                .env("REEL_ENDPOINT", &reel.url)
                .env("REEL_CHANNEL_NAME", channel_name)
                .env("AWS_REGION", REGION)
                .env("AWS_ACCESS_KEY_ID", ROOT_KEY_ID)
                .env("AWS_SECRET_ACCESS_KEY", ROOT_SECRET)
                .env("REEL_STREAM_SECONDS", STREAM_SECONDS.to_string())
                .env("REEL_OFFER_TIMEOUT_MS", "60000");
            Proc::spawn("master", cmd)
        }
        MasterKind::Gstreamer => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/gst_master.py");
            let mut cmd = tokio::process::Command::new("/usr/bin/python3");
            cmd.arg(&script)
                .args(["--wss-endpoint", &ch.wss, "--webrtc-endpoint", &ch.webrtc, "--channel-arn", &ch.channel_arn])
                .args(["--region", REGION, "--access-key-id", ROOT_KEY_ID, "--secret-access-key", ROOT_SECRET])
                .args(["--seconds", &STREAM_SECONDS.to_string(), "--timeout", &(STREAM_SECONDS + 90).to_string()])
                .arg("--ca-file")
                .arg(reel.ca_path())
                .env("GST_DEBUG", "*:1,webrtcbin:2");
            Proc::spawn("master", cmd)
        }
    }
}

async fn run(ns: Netns, kind: MasterKind) {
    let dir = browser_dir();
    for dep in [
        "amazon-kinesis-video-streams-webrtc",
        "@aws-sdk/client-kinesis-video-webrtc-storage",
        "esbuild",
        "playwright-core",
    ] {
        assert!(
            dir.join("node_modules").join(dep).join("package.json").is_file(),
            "{dep} is not installed in {}: run bash tests/e2e/install.sh",
            dir.display()
        );
    }
    reel::testkit::probe::require(&["node"]);
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).is_file(), "{chromium} is missing: run bash tests/e2e/install.sh");

    // The JS SDK's signaling client only accepts wss://.
    let reel = netns::start_reel(&ns, Options { args: vec!["--tls-self-signed".into()], ..Default::default() });
    let name = match kind {
        MasterKind::Browser => "viewed",
        MasterKind::Gstreamer => "viewed-gst",
    };
    let ch = ingest::storage_channel(&reel, name).await;
    let channel_name = format!("{name}-channel");
    println!("channel {} → stream {}; endpoints wss={} webrtc={}", ch.channel_arn, ch.stream_arn, ch.wss, ch.webrtc);

    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join("viewers.mjs"))
        .current_dir(&dir)
        .env("REEL_ENDPOINT", &reel.url)
        .env("REEL_CHANNEL_NAME", &channel_name)
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", ROOT_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", ROOT_SECRET)
        .env("CHROMIUM", &chromium);
    let viewers = Proc::spawn("viewers", cmd);
    let mut t = Run { reel, ch, kind, master: None, viewers };
    if t.viewers.wait_for(0, STEP, |v| v["event"] == "ready").await.is_none() {
        panic!("viewers.mjs did not start Chromium\n{}", t.summary());
    }

    // Viewer A joins before the master, and talks back.
    let from = t.viewers.len();
    t.join("a", "viewer-a", true).await;
    t.viewer_event(from, "a", "signaling_connected", "viewer A connects to signaling as VIEWER").await;
    t.joined(from, "a").await;

    // The master arrives.
    t.master = Some(start_master(kind, &t.reel, &t.ch, &channel_name));
    let master = t.master.as_ref().expect("master");
    let connected = master
        .wait_for(0, STEP, |v| (v["event"] == "connection_state" && v["state"] == "connected") || v["event"] == "error")
        .await;
    if !connected.as_ref().is_some_and(|v| v["event"] == "connection_state") {
        panic!("the master did not connect to the storage session: {connected:?}\n{}", t.summary());
    }
    let first_a = t.viewer_event(from, "a", "first_frame", "viewer A (joined before the master) decodes video").await;
    println!("viewer A: first frame {first_a}");

    // Viewer B joins mid-GOP: a moment after A decoded a keyframe, so B's first picture
    // needs a fresh keyframe from the master (reel forwards B's keyframe request).
    let keyframes = t.report("a").await["keyFramesDecoded"].as_u64().unwrap_or(0);
    let deadline = Instant::now() + STEP;
    loop {
        let now = t.report("a").await["keyFramesDecoded"].as_u64().unwrap_or(0);
        if now > keyframes {
            break;
        }
        assert!(Instant::now() < deadline, "viewer A decoded no new keyframe within {STEP:?}\n{}", t.summary());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let from = t.viewers.len();
    t.join("b", "viewer-b", false).await;
    t.joined(from, "b").await;
    let first_b = t.viewer_event(from, "b", "first_frame", "viewer B (joined mid-GOP) decodes video").await;
    println!("viewer B: first frame {first_b}");

    // Viewer C joins, leaves, and rejoins with the same client id.
    let from = t.viewers.len();
    t.join("c", "viewer-c", false).await;
    t.joined(from, "c").await;
    t.viewer_event(from, "c", "first_frame", "viewer C decodes video").await;
    t.command(json!({"cmd": "leave", "viewer": "c"})).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let from = t.viewers.len();
    t.join("c2", "viewer-c", false).await;
    t.joined(from, "c2").await;
    let first_c =
        t.viewer_event(from, "c2", "first_frame", "viewer C, rejoined with the same client id, decodes video").await;
    println!("viewer C (rejoined): first frame {first_c}");

    // A fourth viewer is one too many.
    let from = t.viewers.len();
    t.join("d", "viewer-d", false).await;
    let refused = t.viewer_event(from, "d", "join_refused", "a fourth viewer is refused").await;
    assert_eq!(refused["name"], "ClientLimitExceededException", "{refused}\n{}", t.summary());
    assert_eq!(refused["status"], 400, "{refused}");
    assert!(
        refused["message"].as_str().is_some_and(|m| m.contains(VIEWER_CAP_MESSAGE)),
        "the refusal says \"{VIEWER_CAP_MESSAGE}\": {refused}"
    );

    // The three viewers watch together.
    let viewers = ["a", "b", "c2"];
    let mut before = Vec::new();
    for v in viewers {
        before.push(t.report(v).await);
    }
    tokio::time::sleep(WATCH).await;
    for (v, start) in viewers.iter().zip(&before) {
        let end = t.report(v).await;
        println!("viewer {v}: {end}");
        let n = |r: &Value, k: &str| r[k].as_f64().unwrap_or(0.0);
        assert!(
            n(&end, "framesDecoded") > n(start, "framesDecoded"),
            "viewer {v}: frames decoded advance over {WATCH:?} ({} → {})\n{}",
            start["framesDecoded"],
            end["framesDecoded"],
            t.summary()
        );
        // Chromium's own freeze statistics bound the longest freeze by their sum; the
        // page's sampled stall (100 ms getStats polls) is the fallback when the sum is
        // larger (it also counts a late timer as a stall, so it is never smaller). The
        // message tells a starved browser (late timers, frames received on time but not
        // decoded) from media that stopped arriving.
        let freezes = n(&end, "totalFreezesDuration") * 1000.0;
        let stall = n(&end, "longestFreezeMs");
        assert!(
            freezes <= MAX_FREEZE_MS || stall <= MAX_FREEZE_MS,
            "viewer {v}: a freeze longer than {MAX_FREEZE_MS} ms (freezes {} totalling {freezes} ms; longest sampled \
             decode stall {stall} ms; longest gap in frames received from the network {} ms; the page's 100 ms samples \
             came up to {} ms apart; frames dropped before decoding {})\n{}",
            end["freezeCount"],
            end["longestReceiveStallMs"],
            end["maxSampleGapMs"],
            end["framesDropped"],
            t.summary()
        );
        assert!(
            n(&end, "audioPacketsReceived") > n(start, "audioPacketsReceived"),
            "viewer {v}: audio packets keep arriving ({} → {})\n{}",
            start["audioPacketsReceived"],
            end["audioPacketsReceived"],
            t.summary()
        );
    }
    let a = t.report("a").await;
    assert!(a["talkbackPacketsSent"].as_u64().is_some_and(|p| p > 0), "viewer A sends talk-back audio: {a}");

    // Done watching; the master finishes its stream.
    t.command(json!({"cmd": "quit"})).await;
    let master = t.master.as_ref().expect("master");
    let end = master
        .wait_for(0, Duration::from_secs(STREAM_SECONDS + 60), |v| v["event"] == "done" || v["event"] == "error")
        .await;
    if !end.as_ref().is_some_and(|v| v["event"] == "done") {
        panic!("the master did not finish streaming: {end:?}\n{}", t.summary());
    }
    let status = t.master.as_mut().expect("master").child.wait().await.expect("wait for the master");
    assert!(status.success(), "master exit status {status}\n{}", t.summary());
    let done = end.expect("done");
    let streamed = done["streamed_s"].as_f64().unwrap_or(0.0);
    // reel forwards viewer A's talk-back audio to the master.
    let talkback = match kind {
        MasterKind::Browser => done["inbound"]
            .as_array()
            .and_then(|rtp| rtp.iter().find(|r| r["kind"] == "audio"))
            .and_then(|r| r["packetsReceived"].as_u64()),
        MasterKind::Gstreamer => done["incoming_buffers"].as_u64(),
    };
    assert!(talkback.is_some_and(|n| n > 0), "the master received viewer A's talk-back audio: {done}\n{}", t.summary());

    // The stored stream is the master's, untouched by the viewers.
    let stream_arn = t.ch.stream_arn.clone();
    let probe = ingest::check_stored_media(&mut t.reel, &stream_arn, &format!("storage_viewers_{name}")).await;
    let video = probe.codec_duration("h264").expect("video duration");
    assert!(
        video >= streamed * 0.75,
        "stored video lasts {video:.3} s of the {streamed:.3} s the master streamed\n{}",
        t.summary()
    );
}
