//! The AWS CLI (botocore) against reel: docs/kvs-wire.md "Ingestion flow" steps 1–3 plus
//! describe / list / get-signaling-channel-endpoint / describe-media-storage-configuration,
//! and kinesis-video-archived-media get-images (paginated), checking the parsed JSON output.
//!
//! The CLI must be installed (`apt-get install -y awscli`; `.ci/run` does it). A missing
//! CLI fails this test with that command.

mod common;

use std::path::Path;
use std::process::Command;

use common::{REGION, ROOT_KEY_ID, ROOT_SECRET, Reel};
use serde_json::Value;

/// Runs `aws kinesisvideo …` against one reel with a sealed-off environment.
struct Cli<'a> {
    reel: &'a Reel,
    /// Nonexistent config/credentials paths, so the user's AWS setup cannot interfere.
    sealed: &'a Path,
}

/// What one CLI run produced.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> Run {
        self.run_service("kinesisvideo", args)
    }

    /// `aws <service> …` (the CLI's name of the service).
    fn run_service(&self, service: &str, args: &[&str]) -> Run {
        let mut cmd = Command::new("aws");
        // `--no-cli-pager` is AWS CLI v2 only (v1, what pip installs, rejects it);
        // AWS_PAGER="" turns the pager off in v2 and is ignored by v1.
        cmd.arg(service)
            .args(args)
            .args(["--endpoint-url", &self.reel.url, "--output", "json"])
            .env("AWS_ACCESS_KEY_ID", ROOT_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", ROOT_SECRET)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_CONFIG_FILE", self.sealed.join("config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.sealed.join("credentials"))
            .env("AWS_PAGER", "")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_MAX_ATTEMPTS", "1");
        for var in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_CA_BUNDLE"] {
            cmd.env_remove(var);
        }
        let out = match cmd.output() {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "the AWS CLI (`aws`) is not on PATH; install it with `apt-get install -y awscli` \
                 (.ci/run does this)"
            ),
            Err(e) => panic!("cannot run `aws`: {e}"),
        };
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run, require success, and parse stdout (an empty output is `{}`).
    fn json(&self, args: &[&str]) -> Value {
        let run = self.run(args);
        assert!(run.ok, "aws kinesisvideo {args:?} failed:\n{}\nserver log:\n{}", run.stderr, self.reel.log());
        if run.stdout.trim().is_empty() {
            return Value::Object(Default::default());
        }
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout))
    }
}

fn arn_of(kind: &str, name: &str, arn: &str) -> bool {
    let prefix = format!("arn:aws:kinesisvideo:{REGION}:123456789012:{kind}/{name}/");
    arn.strip_prefix(&prefix).is_some_and(|m| m.len() == 13 && m.bytes().all(|b| b.is_ascii_digit()))
}

#[test]
fn ingestion_flow_with_the_aws_cli() {
    let reel = Reel::start();
    let sealed = tempfile::tempdir().expect("tempdir");
    let cli = Cli { reel: &reel, sealed: sealed.path() };

    // 1. create-signaling-channel
    let out = cli.json(&["create-signaling-channel", "--channel-name", "front-door"]);
    let channel_arn = out["ChannelARN"].as_str().expect("ChannelARN").to_string();
    assert!(arn_of("channel", "front-door", &channel_arn), "{channel_arn}");

    // 2. create-stream with retention
    let out = cli.json(&["create-stream", "--stream-name", "front-door-video", "--data-retention-in-hours", "24"]);
    let stream_arn = out["StreamARN"].as_str().expect("StreamARN").to_string();
    assert!(arn_of("stream", "front-door-video", &stream_arn), "{stream_arn}");

    // 3. update-media-storage-configuration (shorthand syntax)
    let storage = format!("StreamARN={stream_arn},Status=ENABLED");
    let out = cli.json(&[
        "update-media-storage-configuration",
        "--channel-arn",
        &channel_arn,
        "--media-storage-configuration",
        &storage,
    ]);
    assert_eq!(out, serde_json::json!({}));

    // describe-signaling-channel
    let out = cli.json(&["describe-signaling-channel", "--channel-name", "front-door"]);
    let info = &out["ChannelInfo"];
    assert_eq!(info["ChannelARN"], channel_arn.as_str());
    assert_eq!(info["ChannelName"], "front-door");
    assert_eq!(info["ChannelType"], "SINGLE_MASTER");
    assert_eq!(info["ChannelStatus"], "ACTIVE");
    assert_eq!(info["SingleMasterConfiguration"]["MessageTtlSeconds"], 60);
    let version = info["Version"].as_str().expect("Version");
    assert!(version.len() == 20 && version.bytes().all(|b| b.is_ascii_alphanumeric()), "{version}");
    assert!(!info["CreationTime"].is_null(), "{out}");

    // list-signaling-channels
    let out = cli.json(&["list-signaling-channels"]);
    let list = out["ChannelInfoList"].as_array().expect("ChannelInfoList");
    assert_eq!(list.len(), 1, "{out}");
    assert_eq!(list[0]["ChannelARN"], channel_arn.as_str());

    // get-signaling-channel-endpoint, WEBRTC included now that storage is enabled
    let out = cli.json(&[
        "get-signaling-channel-endpoint",
        "--channel-arn",
        &channel_arn,
        "--single-master-channel-endpoint-configuration",
        "Protocols=WSS,HTTPS,WEBRTC,Role=MASTER",
    ]);
    let endpoints: Vec<(String, String)> = out["ResourceEndpointList"]
        .as_array()
        .expect("ResourceEndpointList")
        .iter()
        .map(|e| (e["Protocol"].as_str().unwrap_or("").into(), e["ResourceEndpoint"].as_str().unwrap_or("").into()))
        .collect();
    let ws = reel.url.replacen("http://", "ws://", 1);
    assert_eq!(
        endpoints,
        [("WSS".into(), ws), ("HTTPS".into(), reel.url.clone()), ("WEBRTC".into(), reel.url.clone())],
        "{out}"
    );

    // describe-media-storage-configuration
    let out = cli.json(&["describe-media-storage-configuration", "--channel-arn", &channel_arn]);
    assert_eq!(out["MediaStorageConfiguration"]["Status"], "ENABLED");
    assert_eq!(out["MediaStorageConfiguration"]["StreamARN"], stream_arn.as_str());

    // get-images (kinesis-video-archived-media): botocore parses the images and follows
    // reel's NextToken through its paginator; an empty stream has no media at any time.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let (from, to) = ((now - 60).to_string(), (now - 50).to_string());
    let run = cli.run_service(
        "kinesis-video-archived-media",
        &[
            "get-images",
            "--stream-name",
            "front-door-video",
            "--image-selector-type",
            "SERVER_TIMESTAMP",
            "--start-timestamp",
            &from,
            "--end-timestamp",
            &to,
            "--sampling-interval",
            "200",
            "--format",
            "JPEG",
        ],
    );
    assert!(run.ok, "get-images failed:\n{}", run.stderr);
    let out: Value = serde_json::from_str(&run.stdout).expect("JSON");
    let images = out["Images"].as_array().expect("Images");
    assert_eq!(images.len(), 51, "10 s every 200 ms, over three pages: {out}");
    assert!(images.iter().all(|i| i["Error"] == "NO_MEDIA" && i["TimeStamp"].is_number()), "{out}");

    // Errors reach botocore as modeled exceptions.
    let run = cli.run(&["describe-signaling-channel", "--channel-name", "missing"]);
    assert!(!run.ok, "describing a missing channel must fail: {}", run.stdout);
    assert!(run.stderr.contains("ResourceNotFoundException"), "{}", run.stderr);
    let run = cli.run(&["create-signaling-channel", "--channel-name", "front-door"]);
    assert!(!run.ok && run.stderr.contains("ResourceInUseException"), "{}", run.stderr);
}

#[test]
fn stream_configurations_with_the_aws_cli() {
    let reel = Reel::start();
    let sealed = tempfile::tempdir().expect("tempdir");
    let cli = Cli { reel: &reel, sealed: sealed.path() };
    let out = cli.json(&[
        "create-stream",
        "--stream-name",
        "porch",
        "--data-retention-in-hours",
        "720",
        "--stream-storage-configuration",
        "DefaultStorageTier=WARM",
    ]);
    let stream_arn = out["StreamARN"].as_str().expect("StreamARN").to_string();

    // Storage tier: described, then updated against the stream's version.
    let out = cli.json(&["describe-stream-storage-configuration", "--stream-name", "porch"]);
    assert_eq!(out["StreamARN"], stream_arn.as_str());
    assert_eq!(out["StreamStorageConfiguration"]["DefaultStorageTier"], "WARM");
    let out = cli.json(&["describe-stream", "--stream-arn", &stream_arn]);
    let version = out["StreamInfo"]["Version"].as_str().expect("Version").to_string();
    let update = [
        "update-stream-storage-configuration",
        "--stream-arn",
        &stream_arn,
        "--current-version",
        &version,
        "--stream-storage-configuration",
        "DefaultStorageTier=HOT",
    ];
    assert_eq!(cli.json(&update), serde_json::json!({}));
    let out = cli.json(&["describe-stream-storage-configuration", "--stream-arn", &stream_arn]);
    assert_eq!(out["StreamStorageConfiguration"]["DefaultStorageTier"], "HOT");
    let run = cli.run(&update);
    assert!(!run.ok && run.stderr.contains("VersionMismatchException"), "{}", run.stderr);

    // Image generation: none (no member), set, described as given.
    assert_eq!(cli.json(&["describe-image-generation-configuration", "--stream-name", "porch"]), serde_json::json!({}));
    let images = format!(
        r#"{{"Status":"ENABLED","ImageSelectorType":"SERVER_TIMESTAMP","DestinationConfig":{{"Uri":"s3://bucket/porch","DestinationRegion":"{REGION}"}},"SamplingInterval":3000,"Format":"JPEG","FormatConfig":{{"JPEGQuality":"90"}},"WidthPixels":640}}"#
    );
    let set = ["update-image-generation-configuration", "--stream-name", "porch", "--image-generation-configuration"];
    cli.json(&[&set[..], &[images.as_str()]].concat());
    let out = cli.json(&["describe-image-generation-configuration", "--stream-arn", &stream_arn]);
    let expected: Value = serde_json::from_str(&images).expect("json");
    assert_eq!(out["ImageGenerationConfiguration"], expected);

    // Notifications.
    let topic = format!("arn:aws:sns:{REGION}:123456789012:porch");
    let notify = format!(r#"{{"Status":"ENABLED","DestinationConfig":{{"Uri":"{topic}"}}}}"#);
    cli.json(&["update-notification-configuration", "--stream-name", "porch", "--notification-configuration", &notify]);
    let out = cli.json(&["describe-notification-configuration", "--stream-name", "porch"]);
    assert_eq!(out["NotificationConfiguration"]["DestinationConfig"]["Uri"], topic.as_str());
    cli.json(&["update-notification-configuration", "--stream-name", "porch"]);
    assert_eq!(cli.json(&["describe-notification-configuration", "--stream-name", "porch"]), serde_json::json!({}));

    // Edge: the modeled "no edge configuration" error, and an empty listing.
    let run = cli.run(&["describe-edge-configuration", "--stream-name", "porch"]);
    assert!(!run.ok && run.stderr.contains("StreamEdgeConfigurationNotFoundException"), "{}", run.stderr);
    let hub = format!("arn:aws:iot:{REGION}:123456789012:thing/hub");
    let out = cli.json(&["list-edge-agent-configurations", "--hub-device-arn", &hub]);
    assert_eq!(out["EdgeConfigs"], serde_json::json!([]));
}
