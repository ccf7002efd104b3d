//! The storage media peer end to end on loopback: a Rust str0m master (tests/common/
//! webrtc_master.rs over `reel_sim::publisher`) connects, calls JoinStorageSession, answers
//! reel's offer and streams the fixtures; the stream then holds keyframe-aligned fragments
//! that compose into an MKV ffprobe/ffmpeg accept. Plus JoinStorageSession's errors,
//! superseding, a bad answer, a recording that outlives the master's signaling connection,
//! and a two-session `reel-load` run in a network namespace.

mod common;
#[path = "common/webrtc_master.rs"]
mod webrtc_master_mod;

use std::process::Command;
use std::time::Duration;

use aws_sdk_kinesisvideo::types::{ChannelProtocol, MediaStorageConfiguration, MediaStorageConfigurationStatus};
use common::{REGION, ROOT_KEY_ID, ROOT_SECRET, Reel};
use webrtc_master_mod::{AnswerMode, Master, join_storage_session};

const KEY: (&str, &str) = (ROOT_KEY_ID, ROOT_SECRET);

/// Creates a channel (and, when `storage`, a stream mapped to it); returns (channel ARN,
/// stream ARN, WSS endpoint, WEBRTC endpoint).
async fn setup(reel: &Reel, name: &str, storage: bool) -> (String, String, String, String) {
    let kvs = reel.kvs();
    let arn = kvs
        .create_signaling_channel()
        .channel_name(name)
        .send()
        .await
        .expect("channel")
        .channel_arn()
        .expect("arn")
        .to_string();
    let stream = kvs
        .create_stream()
        .stream_name(format!("{name}-stream"))
        .data_retention_in_hours(24)
        .send()
        .await
        .expect("stream")
        .stream_arn()
        .expect("stream arn")
        .to_string();
    if storage {
        kvs.update_media_storage_configuration()
            .channel_arn(&arn)
            .media_storage_configuration(
                MediaStorageConfiguration::builder()
                    .stream_arn(&stream)
                    .status(MediaStorageConfigurationStatus::Enabled)
                    .build()
                    .expect("config"),
            )
            .send()
            .await
            .expect("UpdateMediaStorageConfiguration");
    }
    let mut protocols = vec![ChannelProtocol::Wss, ChannelProtocol::Https];
    if storage {
        protocols.push(ChannelProtocol::Webrtc);
    }
    let mut endpoints = common::master_endpoints(&kvs, &arn, &protocols).await;
    let wss = endpoints.remove(&ChannelProtocol::Wss).expect("wss");
    let webrtc = endpoints.remove(&ChannelProtocol::Webrtc).unwrap_or_else(|| reel.url.clone());
    (arn, stream, wss, webrtc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_streams_into_keyframe_aligned_fragments() {
    let mut reel = Reel::start();
    let (arn, stream_arn, wss, webrtc) = setup(&reel, "peer-ingest", true).await;
    let mut master = Master::connect(&wss, &webrtc, &arn, REGION, KEY).await;
    let (status, body) = master.join().await;
    assert_eq!(status, 200, "JoinStorageSession: {body}");
    let offer = master.next_offer(Duration::from_secs(6)).await.expect("storage offer within 6 s");
    assert_eq!(offer.lines().filter(|l| l.starts_with("a=fingerprint:")).count(), 1, "{offer}");
    assert!(offer.contains("a=ice-options:trickle"));
    let report = master.answer_and_publish(&offer, AnswerMode::Normal, Duration::from_secs(6)).await;
    assert!(report.connected, "ICE/DTLS never connected; reel log:\n{}", reel.log());
    assert!(report.video_frames > 100, "{report:?}");
    master.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(reel.sigterm(), "reel did not stop cleanly:\n{}", reel.log());

    let store =
        reel_storage::Store::open(reel_storage::StoreConfig::new(reel.data_dir.join("media"))).await.expect("store");
    let stream = store.stream(&stream_arn).expect("stream exists in the store");
    let infos = stream.latest_fragments(100);
    assert!(infos.len() >= 2, "expected ≥ 2 fragments, got {infos:?}\n{}", reel.log());
    let mut clip = Vec::new();
    let mut total_ms = 0u64;
    for (i, info) in infos.iter().enumerate() {
        let f = stream.read_fragment(info.number).await.expect("read fragment");
        let payload = f.payload();
        let mut frames = Vec::new();
        reel_media::mkv::parse_blocks(&payload, 0, &mut frames).expect("blocks parse");
        let first_video = frames.iter().find(|fr| fr.track == 1).expect("video in fragment");
        assert!(first_video.keyframe, "fragment {i} does not start with a keyframe");
        if i == 0 {
            reel_media::mkv::write_segment_start(&f.header, &[], &mut clip).expect("segment start");
        }
        reel_media::mkv::write_cluster_start(info.producer_ts_ms, Some(payload.len() as u64), &mut clip);
        clip.extend_from_slice(&payload);
        total_ms += u64::from(info.duration_ms);
    }
    assert!((4_000..=7_000).contains(&total_ms), "stored {total_ms} ms");
    reel::testkit::probe::require(&["ffprobe", "ffmpeg"]);
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("ingest.mkv");
    std::fs::write(&path, &clip).expect("write mkv");
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name:packet=pts_time", "-of", "json"])
        .arg(&path)
        .output()
        .expect("ffprobe");
    let v: serde_json::Value = serde_json::from_slice(&probe.stdout).expect("ffprobe json");
    let codecs: Vec<&str> =
        v["streams"].as_array().expect("streams").iter().filter_map(|s| s["codec_name"].as_str()).collect();
    assert!(codecs.contains(&"h264") && codecs.contains(&"opus"), "{codecs:?}");
    // The composed file is a live-style MKV without Info/Duration: measure the packets.
    let pts: Vec<f64> = v["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .filter_map(|p| p["pts_time"].as_str().and_then(|t| t.parse().ok()))
        .collect();
    let span = pts.iter().cloned().fold(f64::MIN, f64::max) - pts.iter().cloned().fold(f64::MAX, f64::min);
    assert!((span - total_ms as f64 / 1000.0).abs() <= 0.5, "ffprobe packets span {span} s vs stored {total_ms} ms");
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    assert!(decode.stderr.is_empty(), "ffmpeg errors: {}", String::from_utf8_lossy(&decode.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_errors_supersede_and_bad_answer() {
    let reel = Reel::start();
    // Unknown channel → 404.
    let missing = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/nope/1700000000000";
    let (status, body) = join_storage_session(&reel.url, missing, REGION, KEY).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("ResourceNotFoundException"), "{body}");
    // Malformed ARN → 400 InvalidArgument.
    let (status, body) = join_storage_session(&reel.url, "bad", REGION, KEY).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("InvalidArgumentException"));
    // Storage disabled → 400 InvalidArgument.
    let (plain, _, _, _) = setup(&reel, "peer-plain", false).await;
    let (status, body) = join_storage_session(&reel.url, &plain, REGION, KEY).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("InvalidArgumentException"), "{body}");
    // Storage enabled but no master → 400 InvalidArgument.
    let (arn, _, wss, webrtc) = setup(&reel, "peer-join", true).await;
    let (status, body) = join_storage_session(&webrtc, &arn, REGION, KEY).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no master"), "{body}");

    let mut master = Master::connect(&wss, &webrtc, &arn, REGION, KEY).await;
    // A second JoinStorageSession supersedes the first with a new offer.
    assert_eq!(master.join().await.0, 200);
    let first = master.next_offer(Duration::from_secs(6)).await.expect("first offer");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(master.join().await.0, 200);
    let second = master.next_offer(Duration::from_secs(6)).await.expect("second offer");
    assert_ne!(first, second, "each JoinStorageSession makes a new offer");
    // An answer without Opus fails the session; the next join still works.
    let report = master.answer_and_publish(&second, AnswerMode::WithoutOpus, Duration::from_secs(2)).await;
    assert!(!report.connected, "a session without Opus must not connect");
    assert!(reel.log().contains("no accepted Opus"), "reel log lacks the reason:\n{}", reel.log());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(master.join().await.0, 200);
    let third = master.next_offer(Duration::from_secs(6)).await.expect("offer after a failed session");
    let report = master.answer_and_publish(&third, AnswerMode::Normal, Duration::from_secs(3)).await;
    assert!(report.connected, "session after a failed one did not connect:\n{}", reel.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_without_media_ends_at_the_idle_timeout() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = common::write_file(dir.path(), "reel.toml", "[limits.storage_session]\nidle_timeout_secs = 2\n");
    let reel = Reel::start_with(common::Options {
        args: vec!["--config".into(), cfg.display().to_string(), "--log-sdp".into()],
        ..Default::default()
    });
    let (arn, _, wss, webrtc) = setup(&reel, "peer-idle", true).await;
    let mut master = Master::connect(&wss, &webrtc, &arn, REGION, KEY).await;
    assert_eq!(master.join().await.0, 200);
    let offer = master.next_offer(Duration::from_secs(6)).await.expect("offer");
    let report = master.answer_and_publish(&offer, AnswerMode::Silent, Duration::from_secs(4)).await;
    assert!(report.connected);
    let log = reel.log();
    assert!(log.contains("storage session ended") && log.contains("Idle"), "session did not end as idle:\n{log}");
    assert!(log.contains("storage session offer") && log.contains("storage session answer"), "--log-sdp logs both");
}

/// A recording outlives its signaling connection: 4 s into a 10 s session the master closes
/// its signaling WebSocket, connects as master again 0.5 s later on a new one (trickling its
/// candidate there, for the storage session) and keeps publishing on the same peer
/// connection. reel keeps the one session and stores the whole run: every frame sent (but
/// the last in flight), no hole around the reconnect, fragments back to back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_outlives_the_masters_signaling_connection() {
    let mut reel = Reel::start();
    let (arn, stream_arn, wss, webrtc) = setup(&reel, "peer-reconnect", true).await;
    let mut master = Master::connect(&wss, &webrtc, &arn, REGION, KEY).await;
    assert_eq!(master.join().await.0, 200);
    let offer = master.next_offer(Duration::from_secs(6)).await.expect("storage offer");
    let report = master
        .answer_and_publish_reconnecting(
            &offer,
            Duration::from_secs(10),
            Duration::from_secs(4),
            Duration::from_millis(500),
        )
        .await;
    println!(
        "master: connected {}, {} video frames, {} Opus packets, {} offers, failure {:?}",
        report.connected, report.video_frames, report.audio_packets, report.offers, report.failure
    );
    assert!(report.connected, "ICE/DTLS never connected; reel log:\n{}", reel.log());
    assert_eq!(report.failure, None, "the publisher failed; reel log:\n{}", reel.log());
    assert_eq!(report.offers, 1, "reel made no new offer (the session was not restarted)");
    assert!(report.video_frames >= 250, "published about 10 s of video: {report:?}");

    // What reel logged and counted while the session ran (checked after the media).
    let log = reel.log();
    let metrics = reqwest::get(format!("{}/metrics", reel.url)).await.expect("GET /metrics");
    let metrics = metrics.text().await.expect("metrics text");

    master.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(reel.sigterm(), "reel did not stop cleanly:\n{}", reel.log());
    let mkv = common::ingest::artifact_dir().join("peer-reconnect.mkv");
    let stored = common::ingest::assemble_mkv(&reel.data_dir, &stream_arn, &mkv).await;
    println!(
        "stored: {} fragments, {} video / {} audio frames, {:.2} s, max video gap {} ms, fragment gaps {:?}",
        stored.fragments,
        stored.video_frames(),
        stored.audio_frames,
        stored.stored_duration_s,
        stored.max_video_gap_ms(),
        stored.fragment_gaps_ms()
    );
    assert!(stored.starts_with_keyframe.iter().all(|k| *k), "every fragment starts with a keyframe: {stored:?}");
    // Nothing lost: at most a few frames in flight when the publisher stopped.
    let sent = report.video_frames;
    assert!(
        stored.video_frames() <= sent && stored.video_frames() + 6 >= sent,
        "stored {} of {sent} video frames\n{}",
        stored.video_frames(),
        reel.log()
    );
    assert!(
        stored.audio_frames + 10 >= report.audio_packets,
        "stored {} of {} Opus packets",
        stored.audio_frames,
        report.audio_packets
    );
    assert!(stored.video_increases(), "video timestamps increase over the whole stream");
    assert!(stored.max_video_gap_ms() <= 100, "a hole in the recording: {} ms", stored.max_video_gap_ms());
    assert!(
        stored.fragment_gaps_ms().iter().all(|g| (-1..=40).contains(g)),
        "fragments are back to back: {:?}",
        stored.fragment_gaps_ms()
    );
    assert!((9.0..=10.5).contains(&stored.stored_duration_s), "stored {} s of a 10 s run", stored.stored_duration_s);

    assert!(log.contains("master signaling closed; media continues"), "no disconnect event:\n{log}");
    assert!(log.contains("master signaling reconnected"), "no reconnect event:\n{log}");
    assert!(!log.contains("ending storage session"), "reel ended the session itself:\n{log}");
    assert_eq!(log.matches("storage session connected").count(), 1, "one session, connected once:\n{log}");
    let disconnects =
        common::metric(&metrics, "reel_storage_session_signaling_disconnects_total", &[("state", "answered")]);
    assert_eq!(disconnects, Some(1.0), "answered-session disconnects:\n{metrics}");
    let reconnects = common::metric(&metrics, "reel_storage_session_signaling_reconnects_total", &[]);
    assert_eq!(reconnects, Some(1.0), "reconnects:\n{metrics}");
}

/// `reel-load` (its library entry, the same code path as the binary) drives two simulated
/// cameras for 5 s against this build's reel inside a private network namespace: both
/// sessions connect, none fails, and each stream holds fragments.
#[test]
fn netns_load_generator_runs_two_sessions() {
    common::netns::run("netns_load_generator_runs_two_sessions", load_generator_runs_two_sessions);
}

fn load_generator_runs_two_sessions(ns: common::netns::Netns) {
    let bin = std::env::var_os(common::netns::BIN_ENV).unwrap_or_else(|| env!("CARGO_BIN_EXE_reel").into());
    let cfg = reel_sim::load::LoadConfig {
        sessions: 2,
        ramp_per_sec: 2.0,
        duration: Duration::from_secs(5),
        bitrate_bps: 1_000_000,
        target: reel_sim::load::Target::Reel,
        reel: reel_sim::load::ReelProcess::Spawn {
            bin: bin.into(),
            listen_ip: ns.reel_ip.parse().expect("ip"),
            extra_config: String::new(),
        },
        bind_ip: ns.master_ip.parse().expect("ip"),
        recorder_ip: ns.reel_ip.parse().expect("ip"),
        access_key_id: ROOT_KEY_ID.into(),
        secret_access_key: ROOT_SECRET.into(),
        region: REGION.into(),
        probe_streams: 1,
        name_prefix: "it-load".into(),
        cluster_node_threads: None,
        cluster_nodes: reel_sim::load::CLUSTER_NODES,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let report = rt.block_on(reel_sim::load::run(cfg)).expect("load run");
    println!("{}", report.table());
    assert_eq!(report.sessions_failed, 0, "{:?}", report.failure_examples);
    assert_eq!(report.sessions_connected, 2);
    assert!(report.storage.fragments >= 4, "expected ≥ 2 fragments per stream: {:?}", report.storage);
    assert!(report.packets.reel_session_packets.is_some_and(|p| p > 0), "{:?}", report.packets);
    assert!(report.join_to_first_fragment_closed_ms.is_some_and(|p| p.n == 2), "both first fragments were listed");
    assert!(report.steady.as_ref().is_some_and(|s| s.recorder_cpu_ms.is_some()), "CPU was sampled from /proc");
}
