//! Signaling through the real binary driven by the official KVS WebRTC JS SDK
//! (`amazon-kinesis-video-streams-webrtc`, pinned in tests/js/package.json) over `wss://`
//! with reel's self-signed certificate, trusted through `NODE_EXTRA_CA_CERTS`.
//!
//! Each test starts reel, creates its channel with the official Rust SDK, asks
//! GetSignalingChannelEndpoint for the WSS endpoint and runs one script of tests/js/ with
//! `node`; the script prints one JSON result line that the test asserts on. Needs `node` (20+)
//! and `npm` on PATH; `npm ci` runs once per test process when tests/js/node_modules is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_kinesisvideo::types::ChannelProtocol;
use common::{Options, REGION, ROOT_KEY_ID, ROOT_SECRET, Reel};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// Longest a script may run before the test gives up on it (the scripts time out sooner).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("js")
}

/// Make sure `node` runs and tests/js/node_modules is installed (`npm ci`, once per process).
fn ensure_node_modules() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let node = std::process::Command::new("node").arg("--version").output();
        match node {
            Ok(out) if out.status.success() => {}
            _ => return Err("`node` (Node.js 20 or newer) must be on PATH to run tests/signaling_js.rs".into()),
        }
        let dir = js_dir();
        let installed = ["amazon-kinesis-video-streams-webrtc", "ws"]
            .iter()
            .all(|pkg| dir.join("node_modules").join(pkg).join("package.json").is_file());
        if installed {
            return Ok(());
        }
        let out = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("`npm` must be on PATH to install tests/js (npm ci): {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`npm ci` in {} failed ({}):\n{}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    });
    if let Err(e) = ready {
        panic!("{e}");
    }
}

/// A TLS reel (self-signed, CA in `<data-dir>/tls/ca.pem`) with extra `reel serve` flags.
fn start_reel(extra: &[String]) -> Reel {
    let mut args = vec!["--tls-self-signed".to_string()];
    args.extend_from_slice(extra);
    let reel = Reel::start_with(Options { args, ..Default::default() });
    assert!(reel.url.starts_with("https://"), "reel serves TLS: {}", reel.url);
    reel
}

/// Create a channel with the official SDK; returns (ARN, WSS endpoint).
async fn channel(reel: &Reel, name: &str) -> (String, String) {
    let kvs = reel.kvs();
    let arn = kvs
        .create_signaling_channel()
        .channel_name(name)
        .send()
        .await
        .expect("CreateSignalingChannel")
        .channel_arn()
        .expect("ChannelARN")
        .to_string();
    let wss = common::master_endpoints(&kvs, &arn, &[ChannelProtocol::Wss])
        .await
        .remove(&ChannelProtocol::Wss)
        .expect("a WSS endpoint");
    assert!(wss.starts_with("wss://"), "the JS SDK signer needs a wss:// endpoint, got {wss}");
    (arn, wss)
}

/// `node tests/js/<script>` configured for `arn` on `wss`.
fn node(script: &str, reel: &Reel, arn: &str, wss: &str) -> tokio::process::Command {
    ensure_node_modules();
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(js_dir().join(script))
        .current_dir(js_dir())
        .env("REEL_WSS_ENDPOINT", wss)
        .env("REEL_CHANNEL_ARN", arn)
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", ROOT_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", ROOT_SECRET)
        .env("NODE_EXTRA_CA_CERTS", reel.ca_path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// The script's last stdout line, which must be `{"ok":true,...}` with exit status 0.
fn result_line(script: &str, success: bool, stdout: &str, stderr: &str, reel_log: &str) -> Value {
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    let result: Value = serde_json::from_str(last).unwrap_or(Value::Null);
    if !success || result["ok"] != true {
        panic!("{script} failed (exit ok: {success})\nstdout:\n{stdout}\nstderr:\n{stderr}\nreel log:\n{reel_log}");
    }
    result
}

/// Run a scenario script to completion and return its result line.
async fn run_script(script: &str, reel: &Reel, arn: &str, wss: &str) -> Value {
    let out = tokio::time::timeout(SCRIPT_TIMEOUT, node(script, reel, arn, wss).output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not exit within {SCRIPT_TIMEOUT:?}\nreel log:\n{}", reel.log()))
        .expect("spawn node");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    result_line(script, out.status.success(), &stdout, &stderr, &reel.log())
}

/// The SDP-like payload the scripts send (`sdp()` in tests/js/lib.mjs).
fn sdp(kind: &str, label: &str) -> Value {
    json!({"type": kind, "sdp": format!("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns={label}\r\nt=0 0\r\n")})
}

/// The ICE candidate payload the scripts send (`candidate()` in tests/js/lib.mjs).
fn candidate(label: &str) -> Value {
    let line = if label.is_empty() {
        String::new()
    } else {
        format!("candidate:{label} 1 udp 2122260223 192.0.2.1 50000 typ host")
    };
    json!({"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0})
}

/// One event as a script records it: `{type, sender, payload}`.
fn event(kind: &str, sender: Option<&str>, payload: Value) -> Value {
    json!({"type": kind, "sender": sender, "payload": payload})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_sdk_master_and_two_viewers_exchange_offers_answers_and_candidates() {
    let reel = start_reel(&[]);
    let (arn, wss) = channel(&reel, "js-exchange").await;
    let r = run_script("exchange.mjs", &reel, &arn, &wss).await;

    let master = &r["master"];
    for v in ["v1", "v2"] {
        let from_v: Vec<&Value> =
            master["events"].as_array().expect("events").iter().filter(|e| e["sender"] == v).collect();
        let expected = [
            event("SDP_OFFER", Some(v), sdp("offer", &format!("offer-from-{v}"))),
            event("ICE_CANDIDATE", Some(v), candidate(&format!("{v}a"))),
            event("ICE_CANDIDATE", Some(v), candidate(&format!("{v}b"))),
            event("ICE_CANDIDATE", Some(v), candidate("")),
        ];
        assert_eq!(from_v, expected.iter().collect::<Vec<_>>(), "what the master got from {v}: {master}");

        // The master's answers and candidates reach only the viewer they name, with no sender.
        let expected = json!([
            event("SDP_ANSWER", None, sdp("answer", &format!("answer-for-{v}"))),
            event("ICE_CANDIDATE", None, candidate(&format!("masterfor{v}"))),
            event("ICE_CANDIDATE", None, candidate("")),
        ]);
        assert_eq!(r[v]["events"], expected, "what {v} got");
        assert_eq!(r[v]["statusResponses"], json!([]), "no STATUS_RESPONSE for delivered messages");
        assert_eq!(r[v]["errors"], json!([]));
    }
    assert_eq!(master["events"].as_array().map(Vec::len), Some(8), "nothing else reached the master: {master}");
    assert_eq!(master["statusResponses"], json!([]), "no STATUS_RESPONSE for delivered correlated answers");
    assert_eq!(master["errors"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_sdk_gets_status_response_only_for_correlated_refusals() {
    let reel = start_reel(&[]);
    let (arn, wss) = channel(&reel, "js-status").await;
    let r = run_script("status_response.mjs", &reel, &arn, &wss).await;

    let status = |s: &Value| {
        (
            s["correlationId"].as_str().map(str::to_owned),
            s["errorType"].as_str().map(str::to_owned),
            s["statusCode"].as_str().map(str::to_owned),
            s["description"].as_str().is_some_and(|d| !d.is_empty()),
        )
    };
    let v1: Vec<_> = r["v1"]["statusResponses"].as_array().expect("list").iter().map(status).collect();
    assert_eq!(
        v1,
        [(Some("offer-too-big".into()), Some("InvalidArgumentException".into()), Some("400".into()), true)],
        "only the correlated oversized offer is answered: {}",
        r["v1"]
    );
    let master: Vec<_> = r["master"]["statusResponses"].as_array().expect("list").iter().map(status).collect();
    assert_eq!(
        master,
        [
            (Some("answer-no-recipient".into()), Some("InvalidArgumentException".into()), Some("400".into()), true),
            (Some("ice-no-recipient".into()), Some("InvalidArgumentException".into()), Some("400".into()), true),
        ],
        "only the correlated recipient-less messages are answered: {}",
        r["master"]
    );
    // Refused messages are not relayed; the delivered ones are.
    assert_eq!(
        r["master"]["events"],
        json!([
            event("SDP_OFFER", Some("v1"), sdp("offer", "fine")),
            event("ICE_CANDIDATE", Some("v1"), candidate(""))
        ])
    );
    assert_eq!(
        r["v1"]["events"],
        json!([event("SDP_ANSWER", None, sdp("answer", "for-v1")), event("ICE_CANDIDATE", None, candidate(""))])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_sdk_eleventh_viewer_is_refused() {
    // Connects are limited to 3 per second per channel; lift that here so the ten viewers can
    // connect at once and the only limit in play is the viewer count.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_file(dir.path(), "reel.toml", "[limits.signaling]\nconnect_tps_per_channel = 100.0\n");
    let reel = start_reel(&["--config".into(), config.display().to_string()]);
    let (arn, wss) = channel(&reel, "js-limit").await;
    let r = run_script("viewer_limit.mjs", &reel, &arn, &wss).await;

    assert_eq!(r["opened"], 10, "{r}");
    let eleventh = &r["eleventh"];
    assert_eq!((eleventh["opened"].as_bool(), eleventh["closed"].as_bool()), (Some(false), Some(true)), "{r}");
    let errors = eleventh["errors"].as_array().expect("errors");
    assert!(
        errors.iter().any(|e| e.as_str().is_some_and(|e| e.contains("400"))),
        "the SDK reports the refused upgrade as an error: {r}"
    );
    let refusal = &r["raw"]["refusal"];
    assert_eq!(refusal["status"], 400, "{r}");
    assert_eq!(refusal["body"]["__type"], "ClientLimitExceededException", "{r}");
    assert!(
        refusal["body"]["message"].as_str().is_some_and(|m| m.contains("10 viewers")),
        "refused for the viewer count, not the connect rate: {r}"
    );
    assert_eq!(r["rejoin"], json!({"opened": true, "replacedClosed": true}), "a known clientId may reconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_sdk_newest_master_wins() {
    let reel = start_reel(&[]);
    let (arn, wss) = channel(&reel, "js-masters").await;
    let r = run_script("newest_master.mjs", &reel, &arn, &wss).await;

    assert_eq!(r["first"]["closed"], true, "{r}");
    assert_eq!(r["first"]["events"], json!([]), "the replaced master gets nothing: {r}");
    assert_eq!(r["second"]["events"], json!([event("SDP_OFFER", Some("v1"), sdp("offer", "to-newest"))]));
    assert_eq!(r["viewer"]["events"], json!([event("SDP_ANSWER", None, sdp("answer", "from-second"))]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_clients_get_go_away_then_close_on_shutdown() {
    let reel = start_reel(&[]);
    let (arn, wss) = channel(&reel, "js-go-away").await;
    let mut child = node("go_away.mjs", &reel, &arn, &wss).spawn().expect("spawn node");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut stderr = child.stderr.take().expect("stderr");

    // Wait for the script's `{"ready":true}` line: every client is connected.
    let mut seen = String::new();
    let ready = tokio::time::timeout(SCRIPT_TIMEOUT, async {
        let mut line = String::new();
        loop {
            line.clear();
            if stdout.read_line(&mut line).await.expect("read stdout") == 0 {
                return false;
            }
            seen.push_str(&line);
            if serde_json::from_str::<Value>(&line).is_ok_and(|v| v["ready"] == true) {
                return true;
            }
        }
    })
    .await;
    if ready != Ok(true) {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err).await;
        panic!("go_away.mjs never got ready\nstdout:\n{seen}\nstderr:\n{err}\nreel log:\n{}", reel.log());
    }

    let stopped = tokio::task::spawn_blocking(move || {
        let mut reel = reel;
        (reel.sigterm(), reel)
    });
    let (mut rest, mut err) = (String::new(), String::new());
    let status = tokio::time::timeout(SCRIPT_TIMEOUT, async {
        let _ = tokio::join!(stdout.read_to_string(&mut rest), stderr.read_to_string(&mut err));
        child.wait().await.expect("wait node")
    })
    .await
    .expect("go_away.mjs exits after reel shuts down");
    let (clean_exit, reel) = stopped.await.expect("join");
    let reel_log = reel.log();
    let r = result_line("go_away.mjs", status.success(), &format!("{seen}{rest}"), &err, &reel_log);
    assert!(clean_exit, "reel exits 0 on SIGTERM");

    for who in ["master", "viewer"] {
        assert_eq!(r[who]["frames"], json!([{"messageType": "GO_AWAY"}]), "{who} gets GO_AWAY first: {r}");
        assert_eq!(r[who]["close"]["code"], 1001, "{who} then gets a going-away close: {r}");
    }
    assert_eq!(r["sdkViewer"]["closed"], true, "{r}");
}
