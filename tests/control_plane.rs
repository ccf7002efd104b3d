//! The control plane driven by the official `aws-sdk-kinesisvideo` client: lifecycles of
//! channels, streams, media storage configuration and tags, pagination, and every error
//! class a client can reach (not found, in use, invalid argument, version mismatch,
//! no data retention, quotas, throttling, malformed bodies).

mod common;
#[macro_use]
#[path = "common/sdk.rs"]
mod sdk;

use std::collections::{BTreeSet, HashMap};

use aws_sdk_kinesisvideo::Client;
use aws_sdk_kinesisvideo::error::ProvideErrorMetadata;
use aws_sdk_kinesisvideo::types::{
    ApiName, ChannelNameCondition, ChannelProtocol, ChannelRole, ChannelType, ComparisonOperator,
    MediaStorageConfiguration, MediaStorageConfigurationStatus, SingleMasterChannelEndpointConfiguration,
    SingleMasterConfiguration, Status, StreamNameCondition, Tag, UpdateDataRetentionOperation,
};
use common::{Options, Reel, write_file};
use sdk::{CaptureBody, with_body};

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build().expect("tag")
}

fn storage(stream_arn: Option<&str>, status: MediaStorageConfigurationStatus) -> MediaStorageConfiguration {
    MediaStorageConfiguration::builder()
        .set_stream_arn(stream_arn.map(str::to_owned))
        .status(status)
        .build()
        .expect("cfg")
}

fn is_arn(s: &str, kind: &str, name: &str) -> bool {
    let prefix = format!("arn:aws:kinesisvideo:us-west-2:123456789012:{kind}/{name}/");
    s.strip_prefix(&prefix).is_some_and(|millis| millis.len() == 13 && millis.bytes().all(|b| b.is_ascii_digit()))
}

fn is_version(v: &str) -> bool {
    v.len() == 20 && v.bytes().all(|b| b.is_ascii_alphanumeric())
}

async fn create_channel(kvs: &Client, name: &str) -> String {
    kvs.create_signaling_channel().channel_name(name).send().await.expect("create channel").channel_arn.expect("arn")
}

async fn create_stream(kvs: &Client, name: &str, retention: i32) -> String {
    kvs.create_stream()
        .stream_name(name)
        .data_retention_in_hours(retention)
        .send()
        .await
        .expect("create stream")
        .stream_arn
        .expect("arn")
}

async fn channel_version(kvs: &Client, arn: &str) -> String {
    let out = kvs.describe_signaling_channel().channel_arn(arn).send().await.expect("describe");
    out.channel_info.and_then(|i| i.version).expect("version")
}

async fn stream_info(kvs: &Client, arn: &str) -> aws_sdk_kinesisvideo::types::StreamInfo {
    kvs.describe_stream().stream_arn(arn).send().await.expect("describe stream").stream_info.expect("info")
}

#[tokio::test]
async fn channel_lifecycle() {
    let reel = Reel::start();
    let kvs = reel.kvs();
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();

    let arn = kvs
        .create_signaling_channel()
        .channel_name("cam-1")
        .channel_type(ChannelType::SingleMaster)
        .single_master_configuration(SingleMasterConfiguration::builder().message_ttl_seconds(30).build())
        .tags(tag("site", "lab"))
        .send()
        .await
        .expect("create")
        .channel_arn
        .expect("arn");
    assert!(is_arn(&arn, "channel", "cam-1"), "{arn}");

    let by_name = kvs.describe_signaling_channel().channel_name("cam-1").send().await.expect("describe by name");
    let info = by_name.channel_info.expect("info");
    assert_eq!(info.channel_name(), Some("cam-1"));
    assert_eq!(info.channel_arn(), Some(arn.as_str()));
    assert_eq!(info.channel_type(), Some(&ChannelType::SingleMaster));
    assert_eq!(info.channel_status().map(|s| s.as_str()), Some("ACTIVE"));
    assert_eq!(info.single_master_configuration().and_then(|c| c.message_ttl_seconds()), Some(30));
    let created = info.creation_time().expect("creation time").as_secs_f64();
    assert!((created - before).abs() < 60.0, "creation time {created} vs {before}");
    let v1 = info.version().expect("version").to_string();
    assert!(is_version(&v1), "{v1}");
    let by_arn = kvs.describe_signaling_channel().channel_arn(&arn).send().await.expect("describe by arn");
    assert_eq!(by_arn.channel_info.and_then(|i| i.version), Some(v1.clone()));

    // Default TTL is 60 when none is given.
    let other = create_channel(&kvs, "cam-2").await;
    let info2 = kvs.describe_signaling_channel().channel_arn(&other).send().await.expect("d").channel_info.expect("i");
    assert_eq!(info2.single_master_configuration().and_then(|c| c.message_ttl_seconds()), Some(60));

    // Duplicate names are refused.
    assert_fails!(kvs.create_signaling_channel().channel_name("cam-1").send(), "ResourceInUseException", 400);

    // Update checks and bumps the version.
    kvs.update_signaling_channel()
        .channel_arn(&arn)
        .current_version(&v1)
        .single_master_configuration(SingleMasterConfiguration::builder().message_ttl_seconds(120).build())
        .send()
        .await
        .expect("update");
    let v2 = channel_version(&kvs, &arn).await;
    assert!(is_version(&v2) && v2 != v1, "{v1} -> {v2}");
    let info = kvs.describe_signaling_channel().channel_arn(&arn).send().await.expect("d").channel_info.expect("i");
    assert_eq!(info.single_master_configuration().and_then(|c| c.message_ttl_seconds()), Some(120));
    assert_fails!(
        kvs.update_signaling_channel().channel_arn(&arn).current_version(&v1).send(),
        "VersionMismatchException",
        400
    );

    // Delete with a stale version is refused; with the current one it works.
    assert_fails!(
        kvs.delete_signaling_channel().channel_arn(&arn).current_version(&v1).send(),
        "VersionMismatchException",
        400
    );
    kvs.delete_signaling_channel().channel_arn(&arn).current_version(&v2).send().await.expect("delete");
    assert_fails!(kvs.describe_signaling_channel().channel_arn(&arn).send(), "ResourceNotFoundException", 404);
    assert_fails!(kvs.describe_signaling_channel().channel_name("cam-1").send(), "ResourceNotFoundException", 404);
    assert_fails!(kvs.delete_signaling_channel().channel_arn(&arn).send(), "ResourceNotFoundException", 404);
    assert_fails!(
        kvs.update_signaling_channel().channel_arn(&arn).current_version(&v2).send(),
        "ResourceNotFoundException",
        404
    );

    // The name is free again; the new channel gets a new ARN.
    let again = create_channel(&kvs, "cam-1").await;
    assert_ne!(again, arn);
    // Delete without CurrentVersion deletes the latest.
    kvs.delete_signaling_channel().channel_arn(&again).send().await.expect("delete latest");
}

#[tokio::test]
async fn stream_lifecycle() {
    let reel = Reel::start();
    let kvs = reel.kvs();
    let arn = kvs
        .create_stream()
        .stream_name("front-door")
        .device_name("cam-01")
        .media_type("video/h264,audio/aac")
        .data_retention_in_hours(24)
        .tags("owner", "ops")
        .send()
        .await
        .expect("create")
        .stream_arn
        .expect("arn");
    assert!(is_arn(&arn, "stream", "front-door"), "{arn}");

    let info = kvs.describe_stream().stream_name("front-door").send().await.expect("by name").stream_info.expect("i");
    assert_eq!(info.stream_arn(), Some(arn.as_str()));
    assert_eq!(info.device_name(), Some("cam-01"));
    assert_eq!(info.media_type(), Some("video/h264,audio/aac"));
    assert_eq!(info.status(), Some(&Status::Active));
    assert_eq!(info.data_retention_in_hours(), Some(24));
    // Created without a key: KVS reports the AWS managed key of the stream's region and account.
    let account = arn.split(':').nth(4).expect("account");
    assert_eq!(info.kms_key_id(), Some(format!("arn:aws:kms:us-west-2:{account}:alias/aws/kinesisvideo").as_str()));
    let v1 = info.version().expect("version").to_string();
    assert!(is_version(&v1));
    assert_fails!(kvs.create_stream().stream_name("front-door").send(), "ResourceInUseException", 400);

    // UpdateStream.
    kvs.update_stream().stream_arn(&arn).current_version(&v1).media_type("video/h265").send().await.expect("update");
    let info = stream_info(&kvs, &arn).await;
    assert_eq!((info.media_type(), info.device_name()), (Some("video/h265"), Some("cam-01")));
    let v2 = info.version().expect("v").to_string();
    assert_ne!(v1, v2);
    assert_fails!(
        kvs.update_stream().stream_arn(&arn).current_version(&v1).device_name("x").send(),
        "VersionMismatchException",
        400
    );

    // UpdateDataRetention.
    kvs.update_data_retention()
        .stream_name("front-door")
        .current_version(&v2)
        .operation(UpdateDataRetentionOperation::IncreaseDataRetention)
        .data_retention_change_in_hours(6)
        .send()
        .await
        .expect("increase");
    let info = stream_info(&kvs, &arn).await;
    assert_eq!(info.data_retention_in_hours(), Some(30));
    let v3 = info.version().expect("v").to_string();
    assert_fails!(
        kvs.update_data_retention()
            .stream_arn(&arn)
            .current_version(&v2)
            .operation(UpdateDataRetentionOperation::DecreaseDataRetention)
            .data_retention_change_in_hours(1)
            .send(),
        "VersionMismatchException",
        400
    );
    assert_fails!(
        kvs.update_data_retention()
            .stream_arn(&arn)
            .current_version(&v3)
            .operation(UpdateDataRetentionOperation::DecreaseDataRetention)
            .data_retention_change_in_hours(31)
            .send(),
        "InvalidArgumentException",
        400
    );
    assert_fails!(
        kvs.update_data_retention()
            .stream_arn(&arn)
            .current_version(&v3)
            .operation(UpdateDataRetentionOperation::IncreaseDataRetention)
            .data_retention_change_in_hours(87_600)
            .send(),
        "InvalidArgumentException",
        400
    );
    assert_fails!(
        kvs.update_data_retention()
            .stream_arn(&arn)
            .current_version(&v3)
            .operation(UpdateDataRetentionOperation::IncreaseDataRetention)
            .data_retention_change_in_hours(0)
            .send(),
        "InvalidArgumentException",
        400
    );

    // GetDataEndpoint points at this server for every API.
    for api in [ApiName::PutMedia, ApiName::GetMedia, ApiName::GetHlsStreamingSessionUrl, ApiName::GetClip] {
        let out = kvs.get_data_endpoint().stream_arn(&arn).api_name(api).send().await.expect("endpoint");
        assert_eq!(out.data_endpoint(), Some(reel.url.as_str()));
    }
    assert_fails!(
        kvs.get_data_endpoint().stream_name("nope").api_name(ApiName::GetMedia).send(),
        "ResourceNotFoundException",
        404
    );

    // Delete.
    assert_fails!(kvs.delete_stream().stream_arn(&arn).current_version(&v1).send(), "VersionMismatchException", 400);
    kvs.delete_stream().stream_arn(&arn).current_version(&v3).send().await.expect("delete");
    assert_fails!(kvs.describe_stream().stream_arn(&arn).send(), "ResourceNotFoundException", 404);
    assert_fails!(kvs.delete_stream().stream_arn(&arn).send(), "ResourceNotFoundException", 404);
    let listed = kvs.list_streams().send().await.expect("list");
    assert!(listed.stream_info_list().is_empty());
}

#[tokio::test]
async fn media_storage_configuration_lifecycle() {
    let reel = Reel::start();
    let kvs = reel.kvs();
    let channel = create_channel(&kvs, "doorbell").await;
    let stream = create_stream(&kvs, "doorbell-video", 24).await;
    let no_retention = create_stream(&kvs, "live-only", 0).await;

    // Never configured: the object is still there, DISABLED, with no stream.
    let cfg = kvs.describe_media_storage_configuration().channel_arn(&channel).send().await.expect("describe");
    let cfg = cfg.media_storage_configuration.expect("object always present");
    assert_eq!((cfg.status(), cfg.stream_arn()), (&MediaStorageConfigurationStatus::Disabled, None));

    // Without storage, WEBRTC is refused and the default protocols are WSS + HTTPS.
    let webrtc = SingleMasterChannelEndpointConfiguration::builder()
        .protocols(ChannelProtocol::Wss)
        .protocols(ChannelProtocol::Https)
        .protocols(ChannelProtocol::Webrtc)
        .role(ChannelRole::Master)
        .build();
    assert_fails!(
        kvs.get_signaling_channel_endpoint()
            .channel_arn(&channel)
            .single_master_channel_endpoint_configuration(webrtc.clone())
            .send(),
        "InvalidArgumentException",
        400
    );
    let out = kvs.get_signaling_channel_endpoint().channel_arn(&channel).send().await.expect("default endpoints");
    let list: Vec<(String, String)> = out
        .resource_endpoint_list()
        .iter()
        .map(|e| {
            (
                e.protocol().map(|p| p.as_str().to_string()).unwrap_or_default(),
                e.resource_endpoint().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let ws_url = reel.url.replacen("http://", "ws://", 1);
    assert_eq!(list, [("WSS".to_string(), ws_url.clone()), ("HTTPS".to_string(), reel.url.clone())]);

    // Storage needs retention, an existing stream, and a stream in the request.
    assert_fails!(
        kvs.update_media_storage_configuration()
            .channel_arn(&channel)
            .media_storage_configuration(storage(Some(&no_retention), MediaStorageConfigurationStatus::Enabled))
            .send(),
        "NoDataRetentionException",
        400
    );
    let missing_stream = format!("{}0", stream);
    assert_fails!(
        kvs.update_media_storage_configuration()
            .channel_arn(&channel)
            .media_storage_configuration(storage(Some(&missing_stream), MediaStorageConfigurationStatus::Enabled))
            .send(),
        "ResourceNotFoundException",
        404
    );
    assert_fails!(
        kvs.update_media_storage_configuration()
            .channel_arn(&channel)
            .media_storage_configuration(storage(None, MediaStorageConfigurationStatus::Enabled))
            .send(),
        "InvalidArgumentException",
        400
    );

    // Enable.
    kvs.update_media_storage_configuration()
        .channel_arn(&channel)
        .media_storage_configuration(storage(Some(&stream), MediaStorageConfigurationStatus::Enabled))
        .send()
        .await
        .expect("enable");
    let cfg = kvs.describe_media_storage_configuration().channel_name("doorbell").send().await.expect("describe");
    let cfg = cfg.media_storage_configuration.expect("cfg");
    assert_eq!((cfg.status(), cfg.stream_arn()), (&MediaStorageConfigurationStatus::Enabled, Some(stream.as_str())));
    let mapped = kvs.describe_mapped_resource_configuration().stream_arn(&stream).send().await.expect("mapped");
    let items = mapped.mapped_resource_configuration_list();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].arn(), Some(channel.as_str()));
    let out = kvs
        .get_signaling_channel_endpoint()
        .channel_arn(&channel)
        .single_master_channel_endpoint_configuration(webrtc)
        .send()
        .await
        .expect("endpoints with WEBRTC");
    let protocols: Vec<(&str, &str)> = out
        .resource_endpoint_list()
        .iter()
        .map(|e| (e.protocol().map(|p| p.as_str()).unwrap_or_default(), e.resource_endpoint().unwrap_or_default()))
        .collect();
    assert_eq!(protocols, [("WSS", ws_url.as_str()), ("HTTPS", reel.url.as_str()), ("WEBRTC", reel.url.as_str())]);

    // The stream is taken: another channel cannot use it, and it cannot be deleted or
    // lose its retention.
    let second = create_channel(&kvs, "porch").await;
    assert_fails!(
        kvs.update_media_storage_configuration()
            .channel_arn(&second)
            .media_storage_configuration(storage(Some(&stream), MediaStorageConfigurationStatus::Enabled))
            .send(),
        "ResourceInUseException",
        400
    );
    assert_fails!(kvs.delete_stream().stream_arn(&stream).send(), "ResourceInUseException", 400);
    let version = stream_info(&kvs, &stream).await.version.expect("v");
    assert_fails!(
        kvs.update_data_retention()
            .stream_arn(&stream)
            .current_version(&version)
            .operation(UpdateDataRetentionOperation::DecreaseDataRetention)
            .data_retention_change_in_hours(24)
            .send(),
        "ResourceInUseException",
        400
    );

    // Disable the way the JS examples do it: an explicit `"StreamARN": null`.
    kvs.update_media_storage_configuration()
        .channel_arn(&channel)
        .media_storage_configuration(storage(None, MediaStorageConfigurationStatus::Disabled))
        .customize()
        .mutate_request(with_body(format!(
            r#"{{"ChannelARN":"{channel}","MediaStorageConfiguration":{{"Status":"DISABLED","StreamARN":null}}}}"#
        )))
        .send()
        .await
        .expect("disable with null StreamARN");
    let cfg = kvs.describe_media_storage_configuration().channel_arn(&channel).send().await.expect("describe");
    assert_eq!(cfg.media_storage_configuration.expect("cfg").status(), &MediaStorageConfigurationStatus::Disabled);
    let mapped = kvs.describe_mapped_resource_configuration().stream_name("doorbell-video").send().await.expect("m");
    assert!(mapped.mapped_resource_configuration_list().is_empty());

    // Deleting a channel removes its mapping and frees the stream.
    kvs.update_media_storage_configuration()
        .channel_arn(&second)
        .media_storage_configuration(storage(Some(&stream), MediaStorageConfigurationStatus::Enabled))
        .send()
        .await
        .expect("second channel takes the freed stream");
    kvs.delete_signaling_channel().channel_arn(&second).send().await.expect("delete channel");
    let mapped = kvs.describe_mapped_resource_configuration().stream_arn(&stream).send().await.expect("m");
    assert!(mapped.mapped_resource_configuration_list().is_empty());
    kvs.delete_stream().stream_arn(&stream).send().await.expect("stream deletable again");
    assert_fails!(
        kvs.describe_media_storage_configuration().channel_arn(&second).send(),
        "ResourceNotFoundException",
        404
    );
}

#[tokio::test]
async fn tags_on_channels_and_streams() {
    let reel = Reel::start();
    let kvs = reel.kvs();
    let channel = kvs
        .create_signaling_channel()
        .channel_name("tagged")
        .tags(tag("a", "1"))
        .tags(tag("b", "2"))
        .send()
        .await
        .expect("create")
        .channel_arn
        .expect("arn");
    let tags = |m: Option<&HashMap<String, String>>| -> Vec<(String, String)> {
        let mut v: Vec<_> = m.cloned().unwrap_or_default().into_iter().collect();
        v.sort();
        v
    };
    let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };

    let out = kvs.list_tags_for_resource().resource_arn(&channel).send().await.expect("list");
    assert_eq!(tags(out.tags()), pairs(&[("a", "1"), ("b", "2")]));
    kvs.tag_resource().resource_arn(&channel).tags(tag("b", "20")).tags(tag("c", "3")).send().await.expect("tag");
    kvs.untag_resource().resource_arn(&channel).tag_key_list("a").tag_key_list("zz").send().await.expect("untag");
    let out = kvs.list_tags_for_resource().resource_arn(&channel).send().await.expect("list");
    assert_eq!(tags(out.tags()), pairs(&[("b", "20"), ("c", "3")]));
    // Tagging does not change the version.
    let v = channel_version(&kvs, &channel).await;
    kvs.tag_resource().resource_arn(&channel).tags(tag("d", "")).send().await.expect("tag with empty value");
    assert_eq!(channel_version(&kvs, &channel).await, v);

    // Streams: map-shaped tags, by name or ARN.
    let stream = kvs
        .create_stream()
        .stream_name("tagged-stream")
        .tags("x", "1")
        .send()
        .await
        .expect("create stream")
        .stream_arn
        .expect("arn");
    kvs.tag_stream().stream_name("tagged-stream").tags("y", "2").send().await.expect("tag stream");
    kvs.untag_stream().stream_arn(&stream).tag_key_list("x").send().await.expect("untag stream");
    let out = kvs.list_tags_for_stream().stream_arn(&stream).send().await.expect("list stream tags");
    assert_eq!(tags(out.tags()), pairs(&[("y", "2")]));
    let out = kvs.list_tags_for_stream().stream_name("tagged-stream").send().await.expect("by name");
    assert_eq!(tags(out.tags()), pairs(&[("y", "2")]));

    // Missing resources.
    let gone = format!("{channel}1");
    assert_fails!(kvs.list_tags_for_resource().resource_arn(&gone).send(), "ResourceNotFoundException", 404);
    assert_fails!(kvs.tag_resource().resource_arn(&gone).tags(tag("k", "v")).send(), "ResourceNotFoundException", 404);
    assert_fails!(kvs.list_tags_for_stream().stream_name("nope").send(), "ResourceNotFoundException", 404);
    assert_fails!(kvs.list_tags_for_stream().stream_arn("not-an-arn").send(), "InvalidResourceFormatException", 400);

    // Limits: 50 per request (model bound) and 50 per resource (quota).
    let mut fifty = kvs.create_signaling_channel().channel_name("fifty");
    for i in 0..50 {
        fifty = fifty.tags(tag(&format!("k{i}"), "v"));
    }
    let full = fifty.send().await.expect("50 tags fit").channel_arn.expect("arn");
    assert_fails!(
        kvs.tag_resource().resource_arn(&full).tags(tag("one-more", "v")).send(),
        "TagsPerResourceExceededLimitException",
        400
    );
    kvs.tag_resource().resource_arn(&full).tags(tag("k0", "overwritten")).send().await.expect("overwrite fits");
    let out = kvs.list_tags_for_resource().resource_arn(&full).send().await.expect("list");
    assert_eq!(out.tags().map(|t| t.len()), Some(50));
    assert_eq!(out.tags().and_then(|t| t.get("k0")).map(String::as_str), Some("overwritten"));
    let mut fifty_one = kvs.create_signaling_channel().channel_name("fifty-one");
    for i in 0..51 {
        fifty_one = fifty_one.tags(tag(&format!("k{i}"), "v"));
    }
    assert_fails!(fifty_one.send(), "InvalidArgumentException", 400);
    let mut stream_51 = kvs.tag_stream().stream_arn(&stream);
    for i in 0..51 {
        stream_51 = stream_51.tags(format!("k{i}"), "v");
    }
    assert_fails!(stream_51.send(), "InvalidArgumentException", 400);
    assert_fails!(
        kvs.tag_resource().resource_arn(&channel).tags(tag("bad*key", "v")).send(),
        "InvalidArgumentException",
        400
    );
}

#[tokio::test]
async fn pagination_and_name_conditions() {
    let reel = Reel::start();
    let kvs = reel.kvs();
    for i in 0..25 {
        create_channel(&kvs, &format!("cam-{i:02}")).await;
    }
    for name in ["other-a", "other-b", "ca"] {
        create_channel(&kvs, name).await;
    }

    let cond = ChannelNameCondition::builder()
        .comparison_operator(ComparisonOperator::BeginsWith)
        .comparison_value("cam-")
        .build();
    let mut names = Vec::new();
    let mut sizes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = kvs
            .list_signaling_channels()
            .max_results(10)
            .channel_name_condition(cond.clone())
            .set_next_token(token.clone())
            .send()
            .await
            .expect("page");
        sizes.push(out.channel_info_list().len());
        names.extend(out.channel_info_list().iter().filter_map(|c| c.channel_name().map(str::to_owned)));
        token = out.next_token.clone();
        match &token {
            Some(t) => {
                assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) && t.len() <= 1024, "{t}")
            }
            None => break,
        }
    }
    assert_eq!(sizes, [10, 10, 5]);
    let expected: Vec<String> = (0..25).map(|i| format!("cam-{i:02}")).collect();
    assert_eq!(names, expected, "every matching channel once, in name order");

    let all = kvs.list_signaling_channels().send().await.expect("all");
    assert_eq!(all.channel_info_list().len(), 28);
    assert!(all.next_token().is_none());
    let all: BTreeSet<_> = all.channel_info_list().iter().filter_map(|c| c.channel_name()).collect();
    assert!(all.contains("other-b") && all.contains("ca"));

    // The SDK's own paginator follows the tokens too.
    let pages: Vec<_> = kvs
        .list_signaling_channels()
        .max_results(7)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("paginator");
    assert_eq!(pages.iter().map(|p| p.channel_info_list().len()).sum::<usize>(), 28);

    // Streams page the same way.
    for i in 0..12 {
        create_stream(&kvs, &format!("s-{i:02}"), 0).await;
    }
    create_stream(&kvs, "t-0", 0).await;
    let scond = StreamNameCondition::builder()
        .comparison_operator(ComparisonOperator::BeginsWith)
        .comparison_value("s-")
        .build();
    let p1 = kvs.list_streams().max_results(5).stream_name_condition(scond.clone()).send().await.expect("p1");
    assert_eq!(p1.stream_info_list().len(), 5);
    let p2 = kvs
        .list_streams()
        .max_results(10)
        .stream_name_condition(scond)
        .next_token(p1.next_token().expect("more"))
        .send()
        .await
        .expect("p2");
    assert_eq!(p2.stream_info_list().len(), 7);
    assert!(p2.next_token().is_none());
    assert_eq!(p2.stream_info_list()[0].stream_name(), Some("s-05"));

    // Bounds and foreign tokens.
    assert_fails!(kvs.list_signaling_channels().max_results(0).send(), "InvalidArgumentException", 400);
    assert_fails!(kvs.list_signaling_channels().max_results(10_001).send(), "InvalidArgumentException", 400);
    assert_fails!(kvs.list_streams().next_token("not a token!").send(), "InvalidArgumentException", 400);
    assert_fails!(kvs.list_streams().next_token("aGVsbG8=").send(), "InvalidArgumentException", 400);
    let bad_cond = ChannelNameCondition::builder().comparison_value("has space").build();
    assert_fails!(
        kvs.list_signaling_channels().channel_name_condition(bad_cond).send(),
        "InvalidArgumentException",
        400
    );
}

#[tokio::test]
async fn invalid_arguments_are_refused() {
    let reel = Reel::start();
    let kvs = reel.kvs();
    let invalid = "InvalidArgumentException";
    assert_fails!(kvs.create_signaling_channel().channel_name("has space").send(), invalid, 400);
    assert_fails!(kvs.create_signaling_channel().channel_name("a".repeat(257)).send(), invalid, 400);
    assert_fails!(kvs.create_signaling_channel().channel_name("").send(), invalid, 400);
    for ttl in [4, 121] {
        assert_fails!(
            kvs.create_signaling_channel()
                .channel_name("ttl")
                .single_master_configuration(SingleMasterConfiguration::builder().message_ttl_seconds(ttl).build())
                .send(),
            invalid,
            400
        );
    }
    assert_fails!(
        kvs.create_signaling_channel().channel_name("t").channel_type(ChannelType::from("MESH")).send(),
        invalid,
        400
    );
    assert_fails!(
        kvs.create_signaling_channel().channel_name("t").channel_type(ChannelType::FullMesh).send(),
        invalid,
        400
    );
    assert_fails!(kvs.describe_signaling_channel().send(), invalid, 400);
    assert_fails!(
        kvs.describe_signaling_channel().channel_arn("arn:aws:kinesisvideo:us-west-2:1:channel/x").send(),
        invalid,
        400
    );
    assert_fails!(kvs.describe_stream().stream_arn("arn:aws:s3:::bucket").send(), invalid, 400);
    assert_fails!(kvs.describe_stream().send(), invalid, 400);
    assert_fails!(kvs.delete_signaling_channel().channel_arn("nope").send(), invalid, 400);
    assert_fails!(kvs.create_stream().stream_name("s").media_type("h264").send(), invalid, 400);
    assert_fails!(kvs.create_stream().stream_name("s").data_retention_in_hours(-1).send(), invalid, 400);
    assert_fails!(kvs.create_stream().stream_name("s").device_name("d".repeat(129)).send(), invalid, 400);
    assert_fails!(kvs.get_data_endpoint().stream_name("s").api_name(ApiName::from("PUT_IT")).send(), invalid, 400);

    let channel = create_channel(&kvs, "valid").await;
    assert_fails!(
        kvs.update_signaling_channel().channel_arn(&channel).current_version("not-alnum!").send(),
        invalid,
        400
    );
    let bogus = SingleMasterChannelEndpointConfiguration::builder().protocols(ChannelProtocol::from("QUIC")).build();
    assert_fails!(
        kvs.get_signaling_channel_endpoint()
            .channel_arn(&channel)
            .single_master_channel_endpoint_configuration(bogus)
            .send(),
        invalid,
        400
    );
    assert_fails!(
        kvs.update_media_storage_configuration()
            .channel_arn(&channel)
            .media_storage_configuration(storage(Some("arn:bad"), MediaStorageConfigurationStatus::Enabled))
            .send(),
        invalid,
        400
    );
    assert_fails!(
        kvs.update_media_storage_configuration()
            .channel_arn(&channel)
            .media_storage_configuration(storage(None, MediaStorageConfigurationStatus::from("PAUSED")))
            .send(),
        invalid,
        400
    );
    // Name and ARN that disagree.
    create_channel(&kvs, "other").await;
    assert_fails!(kvs.describe_signaling_channel().channel_arn(&channel).channel_name("other").send(), invalid, 400);
}

#[tokio::test]
async fn wire_format_is_lenient_in_and_exact_out() {
    let reel = Reel::start();
    let kvs = reel.kvs();
    create_channel(&kvs, "wire").await;

    // An empty body is `{}`; unknown members are ignored.
    let out = kvs.list_signaling_channels().customize().mutate_request(with_body("")).send().await.expect("empty body");
    assert_eq!(out.channel_info_list().len(), 1);
    let out = kvs
        .describe_signaling_channel()
        .channel_name("x")
        .customize()
        .mutate_request(with_body(r#"{"ChannelName":"wire","FutureMember":{"a":[1,2]}}"#))
        .send()
        .await
        .expect("unknown member ignored");
    assert_eq!(out.channel_info.and_then(|i| i.channel_name), Some("wire".into()));

    // Wrong JSON types and non-JSON bodies are SerializationException.
    for body in [r#"{"ChannelNameCondition":5}"#, r#"{"NextToken":["a"]}"#, "[]", "{not json", r#"{"MaxResults":"10"}"#]
    {
        assert_fails!(
            kvs.list_signaling_channels().customize().mutate_request(with_body(body)).send(),
            "SerializationException",
            400
        );
    }
    // A missing required member is InvalidArgumentException.
    assert_fails!(
        kvs.create_signaling_channel().channel_name("x").customize().mutate_request(with_body("{}")).send(),
        "InvalidArgumentException",
        400
    );

    // Responses: numbers where the model has numbers, no nulls, ChannelInfo complete.
    let capture = CaptureBody::default();
    kvs.describe_signaling_channel()
        .channel_name("wire")
        .customize()
        .interceptor(capture.clone())
        .send()
        .await
        .expect("describe");
    let body = capture.json();
    let info = &body["ChannelInfo"];
    assert!(info["SingleMasterConfiguration"]["MessageTtlSeconds"].is_u64(), "{body}");
    assert!(info["CreationTime"].is_number(), "{body}");
    for key in ["ChannelName", "ChannelARN", "ChannelType", "ChannelStatus", "Version"] {
        assert!(info[key].is_string(), "{key} in {body}");
    }
    let stream = create_stream(&kvs, "wire-stream", 0).await;
    let capture = CaptureBody::default();
    kvs.describe_stream().stream_arn(&stream).customize().interceptor(capture.clone()).send().await.expect("describe");
    let body = capture.json();
    let text = body.to_string();
    assert!(!text.contains("null"), "absent members are omitted: {text}");
    assert!(body["StreamInfo"]["DataRetentionInHours"].is_u64(), "{text}");
    let capture = CaptureBody::default();
    let channel =
        kvs.describe_signaling_channel().channel_name("wire").send().await.expect("d").channel_info.expect("i");
    kvs.delete_signaling_channel()
        .channel_arn(channel.channel_arn().expect("arn"))
        .customize()
        .interceptor(capture.clone())
        .send()
        .await
        .expect("delete");
    assert_eq!(capture.json(), serde_json::json!({}), "empty outputs are {{}}");

    // Paths are case-sensitive.
    let res = reqwest::Client::new()
        .post(format!("{}/CreateSignalingChannel", reel.url))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(res.status().as_u16(), 404);
    // Every operation is a POST; a signed GET on an operation path is an unknown operation.
    assert_fails!(
        kvs.list_streams()
            .customize()
            .mutate_request(|req| {
                let _ = req.set_method("GET");
                *req.body_mut() = "".into();
                req.headers_mut().remove("content-length");
            })
            .send(),
        "UnknownOperationException",
        404
    );
}

#[tokio::test]
async fn account_quotas_from_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_file(
        dir.path(),
        "reel.toml",
        "[limits]\nmax_storage_enabled_channels = 2\nmax_channels_per_account = 4\nmax_streams_per_account = 3\n",
    );
    let reel =
        Reel::start_with(Options { args: vec!["--config".into(), config.display().to_string()], ..Default::default() });
    let kvs = reel.kvs();
    let mut channels = Vec::new();
    for i in 0..4 {
        channels.push(create_channel(&kvs, &format!("c{i}")).await);
    }
    assert_fails!(
        kvs.create_signaling_channel().channel_name("c4").send(),
        "AccountChannelLimitExceededException",
        400
    );
    let mut streams = Vec::new();
    for i in 0..3 {
        streams.push(create_stream(&kvs, &format!("s{i}"), 1).await);
    }
    assert_fails!(kvs.create_stream().stream_name("s3").send(), "AccountStreamLimitExceededException", 400);

    let enable = |channel: &str, stream: &str| {
        kvs.update_media_storage_configuration()
            .channel_arn(channel)
            .media_storage_configuration(storage(Some(stream), MediaStorageConfigurationStatus::Enabled))
            .send()
    };
    enable(&channels[0], &streams[0]).await.expect("first");
    enable(&channels[1], &streams[1]).await.expect("second");
    enable(&channels[1], &streams[1]).await.expect("re-enabling the same mapping does not count twice");
    assert_fails!(enable(&channels[2], &streams[2]), "ClientLimitExceededException", 400);
    // Disabling one frees a slot.
    kvs.update_media_storage_configuration()
        .channel_arn(&channels[0])
        .media_storage_configuration(storage(None, MediaStorageConfigurationStatus::Disabled))
        .send()
        .await
        .expect("disable");
    enable(&channels[2], &streams[2]).await.expect("third after a slot was freed");
    // Deleting a channel frees a slot and a channel quota.
    kvs.delete_signaling_channel().channel_arn(&channels[1]).send().await.expect("delete");
    enable(&channels[3], &streams[1]).await.expect("slot and stream freed by delete");
    create_channel(&kvs, "c4").await;
}

#[tokio::test]
async fn per_channel_rate_quota() {
    let reel = Reel::start();
    let kvs = reel.kvs();
    let busy = create_channel(&kvs, "busy").await;
    let quiet = create_channel(&kvs, "quiet").await;
    // DescribeMediaStorageConfiguration: 5 TPS per channel (burst 5).
    let mut throttled = 0;
    for _ in 0..20 {
        match kvs.describe_media_storage_configuration().channel_arn(&busy).send().await {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.code(), Some("ClientLimitExceededException"), "{e:?}");
                throttled += 1;
            }
        }
    }
    assert!(throttled > 0, "20 back-to-back calls on one channel must hit its 5 TPS quota");
    kvs.describe_media_storage_configuration().channel_arn(&quiet).send().await.expect("other channels are unaffected");
}
