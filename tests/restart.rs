//! Metadata is durable and owned by one process: everything survives a SIGTERM restart
//! on the same data dir; a second reel on a data dir in use, or a garbage `meta.db`,
//! fails at startup with a clear error naming the file (and no panic).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesisvideo::Client;
use aws_sdk_kinesisvideo::types::{
    MediaStorageConfiguration, MediaStorageConfigurationStatus, SingleMasterConfiguration, Tag,
};
use common::{Options, ROOT_KEY_ID, ROOT_SECRET, Reel};

/// Everything a client can observe about the metadata.
#[derive(Debug, PartialEq)]
struct Snapshot {
    channels: Vec<(String, String, String, i32)>,
    streams: Vec<(String, String, String, i32)>,
    channel_tags: HashMap<String, String>,
    stream_tags: HashMap<String, String>,
    storage: (String, Option<String>),
}

async fn snapshot(kvs: &Client, channel: &str, stream: &str) -> Snapshot {
    let channels = kvs.list_signaling_channels().send().await.expect("list channels");
    let channels = channels
        .channel_info_list()
        .iter()
        .map(|c| {
            (
                c.channel_name().unwrap_or_default().to_string(),
                c.channel_arn().unwrap_or_default().to_string(),
                c.version().unwrap_or_default().to_string(),
                c.single_master_configuration().and_then(|s| s.message_ttl_seconds()).unwrap_or_default(),
            )
        })
        .collect();
    let streams = kvs.list_streams().send().await.expect("list streams");
    let streams = streams
        .stream_info_list()
        .iter()
        .map(|s| {
            (
                s.stream_name().unwrap_or_default().to_string(),
                s.stream_arn().unwrap_or_default().to_string(),
                s.version().unwrap_or_default().to_string(),
                s.data_retention_in_hours().unwrap_or_default(),
            )
        })
        .collect();
    let channel_tags = kvs.list_tags_for_resource().resource_arn(channel).send().await.expect("tags");
    let stream_tags = kvs.list_tags_for_stream().stream_arn(stream).send().await.expect("stream tags");
    let cfg = kvs.describe_media_storage_configuration().channel_arn(channel).send().await.expect("storage");
    let cfg = cfg.media_storage_configuration.expect("cfg");
    Snapshot {
        channels,
        streams,
        channel_tags: channel_tags.tags.unwrap_or_default(),
        stream_tags: stream_tags.tags.unwrap_or_default(),
        storage: (cfg.status().as_str().to_string(), cfg.stream_arn().map(str::to_owned)),
    }
}

#[tokio::test]
async fn metadata_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_path_buf();
    let opts = Options { data_dir: Some(data_dir.clone()), ..Default::default() };

    let reel = Reel::start_with(opts.clone());
    let kvs = reel.kvs();
    let channel = kvs
        .create_signaling_channel()
        .channel_name("persist")
        .single_master_configuration(SingleMasterConfiguration::builder().message_ttl_seconds(45).build())
        .tags(Tag::builder().key("team").value("video").build().expect("tag"))
        .send()
        .await
        .expect("create channel")
        .channel_arn
        .expect("arn");
    kvs.create_signaling_channel().channel_name("persist-2").send().await.expect("second channel");
    let stream = kvs
        .create_stream()
        .stream_name("persist-video")
        .data_retention_in_hours(48)
        .tags("tier", "gold")
        .send()
        .await
        .expect("create stream")
        .stream_arn
        .expect("arn");
    kvs.update_media_storage_configuration()
        .channel_arn(&channel)
        .media_storage_configuration(
            MediaStorageConfiguration::builder()
                .stream_arn(&stream)
                .status(MediaStorageConfigurationStatus::Enabled)
                .build()
                .expect("cfg"),
        )
        .send()
        .await
        .expect("enable storage");
    // A version that changed after creation must survive too.
    let v = kvs
        .describe_signaling_channel()
        .channel_arn(&channel)
        .send()
        .await
        .expect("d")
        .channel_info
        .and_then(|i| i.version);
    kvs.update_signaling_channel().channel_arn(&channel).current_version(v.expect("v")).send().await.expect("update");

    let before = snapshot(&kvs, &channel, &stream).await;
    assert_eq!(before.channels.len(), 2);
    assert_eq!(before.storage, ("ENABLED".to_string(), Some(stream.clone())));

    // A second reel on the same data dir is refused while the first runs.
    let second = run_to_exit(&data_dir, Duration::from_secs(30));
    assert!(!second.success, "a second reel on a data dir in use must fail");
    assert!(second.stderr.contains("meta.db"), "error must name the database file: {}", second.stderr);
    assert!(second.stderr.contains("locked") || second.stderr.contains("another reel"), "{}", second.stderr);
    assert!(!second.stderr.contains("panicked"), "{}", second.stderr);
    assert!(!second.stdout.contains("reel listening on"), "{}", second.stdout);
    // ...and the first is unharmed.
    kvs.describe_signaling_channel().channel_arn(&channel).send().await.expect("first reel still serves");

    assert!(reel.stop(), "reel must exit 0 on SIGTERM");

    let reel = Reel::start_with(opts);
    let kvs = reel.kvs();
    let after = snapshot(&kvs, &channel, &stream).await;
    assert_eq!(after, before, "everything survives the restart");
    assert_eq!(after.channel_tags.get("team").map(String::as_str), Some("video"));
    assert_eq!(after.stream_tags.get("tier").map(String::as_str), Some("gold"));
    let mapped = kvs.describe_mapped_resource_configuration().stream_arn(&stream).send().await.expect("mapped");
    assert_eq!(mapped.mapped_resource_configuration_list().first().and_then(|m| m.arn()), Some(channel.as_str()));
    // Names stay unique across the restart.
    let dup = kvs.create_signaling_channel().channel_name("persist").send().await;
    assert!(dup.is_err(), "duplicate name after restart must be refused");
    assert!(reel.stop(), "reel must exit 0 on SIGTERM");
}

#[test]
fn garbage_database_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage: Vec<u8> = (0..16_384u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(dir.path().join("meta.db"), garbage).expect("write garbage");
    let run = run_to_exit(dir.path(), Duration::from_secs(30));
    assert!(!run.success, "reel must refuse a corrupt database");
    assert!(run.stderr.contains("meta.db"), "error must name the file: {}", run.stderr);
    assert!(run.stderr.contains("corrupt") || run.stderr.contains("not a"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(!run.stdout.contains("reel listening on"), "{}", run.stdout);
}

/// How a `reel serve` run that is expected to stop on its own ended.
struct Exit {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Run `reel serve` on `data_dir` and wait (at most `timeout`) for it to exit.
fn run_to_exit(data_dir: &Path, timeout: Duration) -> Exit {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reel"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(["--access-key-id", ROOT_KEY_ID, "--secret-access-key", ROOT_SECRET])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn reel");
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "reel kept running although it should have refused to start\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("collect output");
    Exit {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
