//! Authorization gaps closed end to end (issue 15, items 1 and 5), with the official SDK
//! clients against an in-process server: operations on two resources authorize both,
//! signaling authorizes before it looks the channel up (no 404/403 oracle), a key without
//! permissions cannot drain the account-wide quotas, and throttle buckets are only made
//! for resources that exist.

#[path = "common/inproc.rs"]
mod inproc;
#[path = "common/signing.rs"]
mod signing;

use aws_sdk_kinesisvideo::error::ProvideErrorMetadata;
use aws_sdk_kinesisvideo::types::{ChannelType, MediaStorageConfiguration, MediaStorageConfigurationStatus};
use inproc::{InProcess, allowing_key};

/// May do everything on `cam-*` channels, nothing on streams.
const CAM_KEY: &str = "AKIACAMONLY000000001";
/// May do everything on `cam-*` channels and `cam-*` streams.
const MAPPER_KEY: &str = "AKIAMAPPER0000000001";
/// May only list.
const LISTER_KEY: &str = "AKIALISTER0000000001";
const SECRET: &str = "authorization-test-secret-000000000000000";

fn credentials() -> String {
    const CAM_CHANNELS: &str = "arn:aws:kinesisvideo:*:*:channel/cam-*";
    let cam = allowing_key(CAM_KEY, SECRET, "kinesisvideo:*", &[CAM_CHANNELS]);
    let mapper =
        allowing_key(MAPPER_KEY, SECRET, "kinesisvideo:*", &[CAM_CHANNELS, "arn:aws:kinesisvideo:*:*:stream/cam-*"]);
    cam + &mapper + &allowing_key(LISTER_KEY, SECRET, "kinesisvideo:List*", &["*"])
}

async fn create_channel(reel: &InProcess, name: &str) -> String {
    reel.kvs()
        .create_signaling_channel()
        .channel_name(name)
        .channel_type(ChannelType::SingleMaster)
        .send()
        .await
        .expect("CreateSignalingChannel")
        .channel_arn
        .expect("arn")
}

fn enabled(stream_arn: &str) -> MediaStorageConfiguration {
    MediaStorageConfiguration::builder()
        .stream_arn(stream_arn)
        .status(MediaStorageConfigurationStatus::Enabled)
        .build()
        .expect("config")
}

async fn mapped_stream(reel: &InProcess, channel_arn: &str) -> Option<String> {
    let out = reel
        .kvs()
        .describe_media_storage_configuration()
        .channel_arn(channel_arn)
        .send()
        .await
        .expect("DescribeMediaStorageConfiguration");
    out.media_storage_configuration.and_then(|c| c.stream_arn)
}

#[tokio::test]
async fn mapping_a_channel_needs_rights_on_the_stream_too() {
    let reel = InProcess::start(Some(&credentials())).await;
    let channel = create_channel(&reel, "cam-1").await;
    let victim = reel.create_stream("victim", 24).await;
    let own = reel.create_stream("cam-1-stream", 24).await;

    // Rights on the channel alone do not let a key write its media into someone's stream.
    let err = reel
        .kvs_as(CAM_KEY, SECRET)
        .update_media_storage_configuration()
        .channel_arn(&channel)
        .media_storage_configuration(enabled(&victim))
        .send()
        .await
        .expect_err("no rights on the stream");
    assert_eq!(err.code(), Some("AccessDeniedException"), "{err:?}");
    assert!(err.message().unwrap_or_default().contains(&victim), "{err:?}");
    assert_eq!(mapped_stream(&reel, &channel).await, None, "nothing was mapped");

    // Nor into a stream that does not exist (refused alike: no existence oracle).
    let missing = victim.replace("victim", "ghost");
    let err = reel
        .kvs_as(CAM_KEY, SECRET)
        .update_media_storage_configuration()
        .channel_arn(&channel)
        .media_storage_configuration(enabled(&missing))
        .send()
        .await
        .expect_err("no rights on the stream");
    assert_eq!(err.code(), Some("AccessDeniedException"), "{err:?}");

    // Rights on both: mapped.
    reel.kvs_as(MAPPER_KEY, SECRET)
        .update_media_storage_configuration()
        .channel_arn(&channel)
        .media_storage_configuration(enabled(&own))
        .send()
        .await
        .expect("rights on channel and stream");
    assert_eq!(mapped_stream(&reel, &channel).await.as_deref(), Some(own.as_str()));
    let err = reel
        .kvs_as(MAPPER_KEY, SECRET)
        .update_media_storage_configuration()
        .channel_arn(&channel)
        .media_storage_configuration(enabled(&victim))
        .send()
        .await
        .expect_err("still no rights on the victim");
    assert_eq!(err.code(), Some("AccessDeniedException"));
    assert_eq!(mapped_stream(&reel, &channel).await.as_deref(), Some(own.as_str()), "mapping unchanged");
}

/// Status and `x-amzn-ErrorType` of a presigned ConnectAsMaster to `arn` by `key`.
async fn connect_as_master(reel: &InProcess, key: &str, arn: &str) -> (u16, String) {
    let url = format!("{}/?X-Amz-ChannelARN={}", reel.url, signing::rfc3986(arn));
    let res = reqwest::get(signing::presign_url(&url, key, SECRET)).await.expect("connect");
    let code = res.headers().get("x-amzn-ErrorType").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (res.status().as_u16(), code)
}

/// Status and `x-amzn-ErrorType` of GetIceServerConfig for `arn` by `key`.
async fn get_ice_server_config(reel: &InProcess, key: &str, arn: &str) -> (u16, String) {
    let url = format!("{}/v1/get-ice-server-config", reel.url);
    let body = serde_json::json!({ "ChannelARN": arn, "ClientId": "viewer-1" }).to_string();
    let mut req = reqwest::Client::new().post(&url).body(body.clone());
    for (name, value) in signing::signed_post_headers(&url, body.as_bytes(), key, SECRET) {
        req = req.header(name, value);
    }
    let res = req.send().await.expect("GetIceServerConfig");
    let code = res.headers().get("x-amzn-ErrorType").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (res.status().as_u16(), code)
}

#[tokio::test]
async fn signaling_authorizes_before_it_looks_the_channel_up() {
    let reel = InProcess::start(Some(&credentials())).await;
    let door = create_channel(&reel, "door").await;
    let ghost = door.replace("door", "ghost");
    let cam_ghost = door.replace("door", "cam-ghost");

    // Without rights on the name: the same refusal whether or not the channel exists.
    assert_eq!(connect_as_master(&reel, CAM_KEY, &door).await, (403, "AccessDeniedException".into()));
    assert_eq!(connect_as_master(&reel, CAM_KEY, &ghost).await, (403, "AccessDeniedException".into()));
    assert_eq!(get_ice_server_config(&reel, CAM_KEY, &door).await, (401, "NotAuthorizedException".into()));
    assert_eq!(get_ice_server_config(&reel, CAM_KEY, &ghost).await, (401, "NotAuthorizedException".into()));
    // With rights on the name, a missing channel is a 404.
    assert_eq!(connect_as_master(&reel, CAM_KEY, &cam_ghost).await, (404, "ResourceNotFoundException".into()));
    assert_eq!(get_ice_server_config(&reel, CAM_KEY, &cam_ghost).await, (404, "ResourceNotFoundException".into()));
}

#[tokio::test]
async fn a_key_without_permissions_cannot_drain_the_account_quota() {
    let reel = InProcess::start_with(Some(&credentials()), |config| {
        let limit = config.limits.control_plane_tps.get_mut("DescribeSignalingChannel").expect("a quota");
        limit.account = 2.0;
    })
    .await;
    create_channel(&reel, "cam-1").await;
    let lister = reel.kvs_as(LISTER_KEY, SECRET);
    for _ in 0..10 {
        let err = lister.describe_signaling_channel().channel_name("cam-1").send().await.expect_err("no rights");
        assert_eq!(err.code(), Some("AccessDeniedException"), "refused for rights, not throttled: {err:?}");
    }
    // The account's two tokens are still there for keys that may call it.
    for _ in 0..2 {
        reel.kvs().describe_signaling_channel().channel_name("cam-1").send().await.expect("root not throttled");
    }
    let err = reel.kvs().describe_signaling_channel().channel_name("cam-1").send().await.expect_err("third");
    assert_eq!(err.code(), Some("ClientLimitExceededException"), "the quota itself still applies");
    // Refusals are counted in /metrics by error code.
    let metrics = reqwest::get(format!("{}/metrics", reel.url)).await.expect("metrics").text().await.expect("text");
    let denied = metrics
        .lines()
        .find(|l| l.contains("DescribeSignalingChannel") && l.contains("AccessDeniedException") && !l.starts_with('#'));
    assert!(denied.is_some_and(|l| l.trim_end().ends_with(" 10")), "{denied:?}\n{metrics}");
}

#[tokio::test]
async fn throttle_buckets_only_for_channels_that_exist() {
    let reel = InProcess::start(Some(&credentials())).await;
    let channel = create_channel(&reel, "cam-1").await;
    let before = reel.state.core.throttle.bucket_count();
    let url = format!("{}/joinStorageSession", reel.url);
    for i in 0..50 {
        let arn = channel.replace("cam-1", &format!("cam-x{i}"));
        let body = serde_json::json!({ "channelArn": arn }).to_string();
        let mut req = reqwest::Client::new().post(&url).body(body.clone());
        for (name, value) in signing::signed_post_headers(&url, body.as_bytes(), CAM_KEY, SECRET) {
            req = req.header(name, value);
        }
        let res = req.send().await.expect("JoinStorageSession");
        assert_eq!(res.status(), 404, "{}", res.text().await.unwrap_or_default());
    }
    let after = reel.state.core.throttle.bucket_count();
    assert!(after <= before + 1, "one account bucket at most, none per missing channel: {before} → {after}");
}
