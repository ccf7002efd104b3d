//! Shared steps of the WebRTC ingestion tests (tests/ingest_*.rs): the storage-enabled
//! channel set up with the official Rust SDK, and the checks on what reel stored — read
//! straight from the media store, written out as one MKV (the track header followed by every
//! fragment as a Cluster) and judged by `ffprobe`/`ffmpeg` ([`reel::testkit::probe`]).

use std::path::{Path, PathBuf};

use aws_sdk_kinesisvideo::types::{ChannelProtocol, MediaStorageConfiguration, MediaStorageConfigurationStatus};
use reel::testkit::probe;
use reel_media::mkv;
use serde_json::Value;

use super::Reel;

/// A channel mapped to a stream with media storage enabled, and its master endpoints.
#[derive(Debug, Clone)]
pub struct StorageChannel {
    pub channel_arn: String,
    pub stream_arn: String,
    /// `WSS` endpoint (ConnectAsMaster).
    pub wss: String,
    /// `HTTPS` endpoint (GetIceServerConfig).
    pub https: String,
    /// `WEBRTC` endpoint (JoinStorageSession).
    pub webrtc: String,
}

/// docs/kvs-wire.md "Ingestion flow" steps 1–3: CreateSignalingChannel, CreateStream (retention
/// 24 h), UpdateMediaStorageConfiguration(ENABLED), then GetSignalingChannelEndpoint for
/// WSS/HTTPS/WEBRTC as MASTER.
pub async fn storage_channel(reel: &Reel, name: &str) -> StorageChannel {
    let kvs = reel.kvs();
    let channel_arn = kvs
        .create_signaling_channel()
        .channel_name(format!("{name}-channel"))
        .send()
        .await
        .expect("CreateSignalingChannel")
        .channel_arn()
        .expect("ChannelARN")
        .to_string();
    let stream_arn = kvs
        .create_stream()
        .stream_name(format!("{name}-stream"))
        .data_retention_in_hours(24)
        .send()
        .await
        .expect("CreateStream")
        .stream_arn()
        .expect("StreamARN")
        .to_string();
    kvs.update_media_storage_configuration()
        .channel_arn(&channel_arn)
        .media_storage_configuration(
            MediaStorageConfiguration::builder()
                .stream_arn(&stream_arn)
                .status(MediaStorageConfigurationStatus::Enabled)
                .build()
                .expect("MediaStorageConfiguration"),
        )
        .send()
        .await
        .expect("UpdateMediaStorageConfiguration");
    let protocols = [ChannelProtocol::Wss, ChannelProtocol::Https, ChannelProtocol::Webrtc];
    let endpoints = super::master_endpoints(&kvs, &channel_arn, &protocols).await;
    let endpoint =
        |p: ChannelProtocol| endpoints.get(&p).cloned().unwrap_or_else(|| panic!("no {p:?} endpoint in {endpoints:?}"));
    StorageChannel {
        wss: endpoint(ChannelProtocol::Wss),
        https: endpoint(ChannelProtocol::Https),
        webrtc: endpoint(ChannelProtocol::Webrtc),
        channel_arn,
        stream_arn,
    }
}

/// `target/e2e/<name>` (created), where the tests leave the MKV and logs for inspection.
pub fn artifact_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("e2e");
    std::fs::create_dir_all(&dir).expect("create target/e2e");
    dir
}

/// What was read from the store for one stream.
#[derive(Debug)]
pub struct StoredMedia {
    /// Where the assembled MKV was written.
    pub mkv: PathBuf,
    /// Number of fragments.
    pub fragments: usize,
    /// Per fragment: whether its first video block is a keyframe.
    pub starts_with_keyframe: Vec<bool>,
    /// Sum of the fragments' durations as the store recorded them, in seconds.
    pub stored_duration_s: f64,
    /// Per fragment: (producer start, duration), ms, as the store recorded them.
    pub spans_ms: Vec<(u64, u32)>,
    /// Producer timestamp of every stored video frame, in stream order, ms.
    pub video_ts_ms: Vec<i64>,
    /// Audio frames stored.
    pub audio_frames: usize,
}

impl StoredMedia {
    /// Video frames stored.
    pub fn video_frames(&self) -> usize {
        self.video_ts_ms.len()
    }

    /// Largest step between consecutive stored video frames over the whole stream (across
    /// fragment boundaries), ms: a hole in the recording shows here.
    pub fn max_video_gap_ms(&self) -> i64 {
        self.video_ts_ms.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
    }

    /// Whether video timestamps strictly increase over the whole stream.
    pub fn video_increases(&self) -> bool {
        self.video_ts_ms.windows(2).all(|w| w[1] > w[0])
    }

    /// Per fragment after the first: its start minus the previous fragment's end, ms
    /// (0 = contiguous, > 0 = a hole, < 0 = an overlap).
    pub fn fragment_gaps_ms(&self) -> Vec<i64> {
        self.spans_ms.windows(2).map(|w| w[1].0 as i64 - (w[0].0 as i64 + i64::from(w[0].1))).collect()
    }
}

/// Open reel's media store under `data_dir` (reel must have exited), read every fragment of
/// `stream_arn` and write them to `out` as one MKV with `reel_media::mkv`: EBML header,
/// Segment, Info, the track header (all fragments must share it), then one Cluster per
/// fragment (Timecode = the fragment's producer timestamp).
pub async fn assemble_mkv(data_dir: &Path, stream_arn: &str, out: &Path) -> StoredMedia {
    use reel_storage::{Store, StoreConfig, TimestampKind, TimestampRange};
    let store = Store::open(StoreConfig::new(data_dir.join("media"))).await.expect("open the media store");
    let stream = store.stream(stream_arn).expect("the stream exists in the store");
    let mut infos = Vec::new();
    let mut page = stream
        .list_fragments(TimestampRange { kind: TimestampKind::Server, start_ms: 0, end_ms: u64::MAX }, 1000)
        .expect("list_fragments");
    loop {
        infos.extend(page.fragments.iter().copied());
        match &page.next_token {
            Some(t) => page = stream.list_fragments_after(t, 1000).expect("list_fragments_after"),
            None => break,
        }
    }
    let mut doc = Vec::new();
    let mut header: Option<bytes::Bytes> = None;
    let mut starts_with_keyframe = Vec::new();
    let mut stored_ms = 0u64;
    let mut video_ts_ms = Vec::new();
    let mut audio_frames = 0;
    for info in &infos {
        let frag = stream.read_fragment(info.number).await.expect("read_fragment");
        match &header {
            None => {
                mkv::write_segment_start(&frag.header, &[], &mut doc).expect("the stored header is a Tracks element");
                header = Some(frag.header.clone());
            }
            Some(h) => assert_eq!(
                h, &frag.header,
                "fragment {:?} has a different track header (codec change); cannot concatenate",
                info.number
            ),
        }
        let payload = frag.payload();
        let parsed = mkv::parse_stored(&frag.header, [payload.as_ref()], info.producer_ts_ms as i64)
            .unwrap_or_else(|e| panic!("fragment {:?} does not parse: {e}", info.number));
        let first_video = parsed.frames.iter().find(|f| f.track == mkv::VIDEO_TRACK);
        starts_with_keyframe.push(first_video.is_some_and(|f| f.keyframe));
        video_ts_ms.extend(parsed.frames.iter().filter(|f| f.track == mkv::VIDEO_TRACK).map(|f| f.timestamp_ms));
        audio_frames += parsed.frames.iter().filter(|f| f.track == mkv::AUDIO_TRACK).count();
        mkv::write_cluster_start(info.producer_ts_ms, Some(payload.len() as u64), &mut doc);
        doc.extend_from_slice(&payload);
        stored_ms += u64::from(info.duration_ms);
    }
    std::fs::write(out, &doc).expect("write the assembled MKV");
    StoredMedia {
        mkv: out.to_path_buf(),
        fragments: infos.len(),
        starts_with_keyframe,
        stored_duration_s: stored_ms as f64 / 1000.0,
        spans_ms: infos.iter().map(|i| (i.producer_ts_ms, i.duration_ms)).collect(),
        video_ts_ms,
        audio_frames,
    }
}

/// What a master process (gst_master.py, the browser's run.mjs) reported and how it ended.
#[derive(Debug)]
pub struct MasterRun {
    /// Every stdout line that parsed as JSON, in order (`{"event": …}`).
    pub events: Vec<Value>,
    /// Its exit status.
    pub status: std::process::ExitStatus,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

/// Waits for a spawned master (stdout and stderr piped) to finish within `timeout`, echoing
/// its stdout as `[name] …` and collecting the JSON event lines.
pub async fn run_master(mut child: tokio::process::Child, name: &str, timeout: std::time::Duration) -> MasterRun {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let stdout = child.stdout.take().expect("the master's stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let mut events: Vec<Value> = Vec::new();
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            println!("[{name}] {line}");
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                events.push(v);
            }
        }
    };
    tokio::time::timeout(timeout, read).await.unwrap_or_else(|_| panic!("{name} finished within {timeout:?}"));
    let out = child.wait_with_output().await.unwrap_or_else(|e| panic!("wait for {name}: {e}"));
    MasterRun { events, status: out.status, stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}

/// The checks every ingest test makes on its master's JSON event lines: it connected to
/// signaling, called JoinStorageSession and got 200 every time, received the storage peer's
/// SDP offer (which carries no senderClientId) and finished streaming. `who` names the
/// master in messages ("the page"); `summary` describes the run for failure messages.
/// Returns the `done` event.
pub fn check_master_events<'a>(events: &'a [Value], who: &str, summary: &dyn Fn() -> String) -> &'a Value {
    let has = |e: &str| events.iter().any(|v| v["event"] == e);
    assert!(has("signaling_connected"), "{who} connected to signaling as master\n{}", summary());
    let joins: Vec<&Value> = events.iter().filter(|v| v["event"] == "join_storage_session").collect();
    assert!(!joins.is_empty(), "{who} called JoinStorageSession\n{}", summary());
    assert!(joins.iter().all(|j| j["status"] == 200), "JoinStorageSession returned 200 every time\n{}", summary());
    let offer = events.iter().find(|v| v["event"] == "sdp_offer");
    let offer = offer.unwrap_or_else(|| panic!("no SDP_OFFER received from the storage peer\n{}", summary()));
    assert!(offer["sender"].is_null(), "the storage offer carries no senderClientId: {offer}");
    let done = events.iter().find(|v| v["event"] == "done");
    done.unwrap_or_else(|| panic!("{who} did not finish streaming\n{}", summary()))
}

/// Stops `reel` (it must exit cleanly), writes what it stored for `stream_arn` to
/// `target/e2e/<name>.mkv` (its log beside it) and checks it: at least one fragment, each
/// starting with a keyframe; ffprobe sees H.264 and Opus; ffmpeg decodes it without errors.
/// Returns what ffprobe demuxed, for the caller's duration checks.
pub async fn check_stored_media(reel: &mut Reel, stream_arn: &str, name: &str) -> probe::Streams {
    probe::require(&["ffprobe", "ffmpeg"]);
    assert!(reel.sigterm(), "reel exits cleanly on SIGTERM\n{}", reel.log());
    let mkv_path = artifact_dir().join(format!("{name}.mkv"));
    std::fs::write(artifact_dir().join(format!("{name}.reel.log")), reel.log()).ok();
    let stored = assemble_mkv(&reel.data_dir, stream_arn, &mkv_path).await;
    println!("stored: {stored:?}");
    assert!(stored.fragments > 0, "the stream holds fragments\n{}", reel.log());
    for (i, k) in stored.starts_with_keyframe.iter().enumerate() {
        assert!(*k, "fragment {i} of {} starts with a keyframe", stored.fragments);
    }
    let streams = probe::streams(&mkv_path).expect("ffprobe (package ffmpeg)");
    let durations: Vec<_> = streams.codecs.iter().map(|c| (c, streams.codec_duration(c))).collect();
    println!("ffprobe: {durations:?}");
    assert!(streams.codecs.iter().any(|c| c == "h264"), "ffprobe sees H.264: {:?}", streams.codecs);
    assert!(streams.codecs.iter().any(|c| c == "opus"), "ffprobe sees Opus: {:?}", streams.codecs);
    let errors = probe::decode_errors(&mkv_path).expect("ffmpeg");
    assert!(errors.trim().is_empty(), "ffmpeg decodes without errors:\n{errors}");
    streams
}
