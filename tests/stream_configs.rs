//! The stream configuration operations driven by the official `aws-sdk-kinesisvideo` client
//! against an in-process reel: stream storage tiers, image generation and notification
//! configurations (round trips, versions, removal, model constraints the SDK lets through,
//! missing streams) and the edge operations' answers for streams without edge
//! configurations, with their authorization and per-stream rate quotas.

#[path = "common/inproc.rs"]
mod inproc;
#[macro_use]
#[path = "common/sdk.rs"]
mod sdk;

use aws_sdk_kinesisvideo::Client;
use aws_sdk_kinesisvideo::operation::{
    update_image_generation_configuration::builders::UpdateImageGenerationConfigurationFluentBuilder,
    update_notification_configuration::builders::UpdateNotificationConfigurationFluentBuilder,
    update_stream_storage_configuration::builders::UpdateStreamStorageConfigurationFluentBuilder,
};
use aws_sdk_kinesisvideo::types::{
    ConfigurationStatus, DefaultStorageTier, EdgeConfig, Format, FormatConfigKey, ImageGenerationConfiguration,
    ImageGenerationDestinationConfig, ImageSelectorType, MediaSourceConfig, MediaUriType, NotificationConfiguration,
    NotificationDestinationConfig, RecorderConfig, ScheduleConfig, StreamStorageConfiguration, UploaderConfig,
};
use inproc::{InProcess, REGION, allowing_key};
use sdk::{capturing, failure, with_body};

const INVALID: &str = "InvalidArgumentException";
const NOT_FOUND: &str = "ResourceNotFoundException";
const HUB: &str = "arn:aws:iot:us-west-2:123456789012:thing/hub-1";
const SECRET_ARN: &str = "arn:aws:secretsmanager:us-west-2:123456789012:secret:cam-1";
const TOPIC: &str = "arn:aws:sns:us-west-2:123456789012:doorbell";

/// An in-process reel without per-stream rate quotas, for tests that call one stream many
/// times in a row (the quotas have a test of their own below).
async fn unthrottled() -> InProcess {
    InProcess::start_with(None, |config| {
        for limit in config.limits.control_plane_tps.values_mut() {
            limit.resource = None;
        }
    })
    .await
}

async fn version(kvs: &Client, arn: &str) -> String {
    let out = kvs.describe_stream().stream_arn(arn).send().await.expect("DescribeStream");
    out.stream_info.and_then(|i| i.version).expect("version")
}

fn tier(t: DefaultStorageTier) -> StreamStorageConfiguration {
    StreamStorageConfiguration::builder().default_storage_tier(t).build().expect("tier")
}

/// The tier DescribeStreamStorageConfiguration reports for the stream `arn`.
async fn tier_of(kvs: &Client, arn: &str) -> Option<DefaultStorageTier> {
    let out = kvs.describe_stream_storage_configuration().stream_arn(arn).send().await.expect("describe");
    out.stream_storage_configuration().map(|c| c.default_storage_tier().clone())
}

/// UpdateStreamStorageConfiguration of the stream `arn`, at `version`, to tier `t`.
fn set_tier(
    kvs: &Client,
    arn: &str,
    version: &str,
    t: DefaultStorageTier,
) -> UpdateStreamStorageConfigurationFluentBuilder {
    kvs.update_stream_storage_configuration()
        .stream_arn(arn)
        .current_version(version)
        .stream_storage_configuration(tier(t))
}

/// The configuration DescribeImageGenerationConfiguration reports for the stream `arn`.
async fn images_of(kvs: &Client, arn: &str) -> Option<ImageGenerationConfiguration> {
    let out = kvs.describe_image_generation_configuration().stream_arn(arn).send().await.expect("describe");
    out.image_generation_configuration
}

/// UpdateImageGenerationConfiguration of the stream `arn`: sets `config`, or removes the
/// configuration (`None`: the request carries none).
fn set_images(
    kvs: &Client,
    arn: &str,
    config: Option<ImageGenerationConfiguration>,
) -> UpdateImageGenerationConfigurationFluentBuilder {
    kvs.update_image_generation_configuration().stream_arn(arn).set_image_generation_configuration(config)
}

/// The configuration DescribeNotificationConfiguration reports for the stream `arn`.
async fn notifications_of(kvs: &Client, arn: &str) -> Option<NotificationConfiguration> {
    let out = kvs.describe_notification_configuration().stream_arn(arn).send().await.expect("describe");
    out.notification_configuration
}

/// UpdateNotificationConfiguration of the stream `arn`: sets `config`, or removes the
/// configuration (`None`: the request carries none).
fn set_notifications(
    kvs: &Client,
    arn: &str,
    config: Option<NotificationConfiguration>,
) -> UpdateNotificationConfigurationFluentBuilder {
    kvs.update_notification_configuration().stream_arn(arn).set_notification_configuration(config)
}

/// A valid image generation configuration (ENABLED, JPEG 320x240 every 3 s into S3).
fn images() -> aws_sdk_kinesisvideo::types::builders::ImageGenerationConfigurationBuilder {
    ImageGenerationConfiguration::builder()
        .status(ConfigurationStatus::Enabled)
        .image_selector_type(ImageSelectorType::ProducerTimestamp)
        .destination_config(destination("s3://bucket/images", REGION))
        .sampling_interval(3000)
        .format(Format::Jpeg)
        .format_config(FormatConfigKey::JpegQuality, "80")
        .width_pixels(320)
        .height_pixels(240)
}

fn destination(uri: &str, region: &str) -> ImageGenerationDestinationConfig {
    ImageGenerationDestinationConfig::builder().uri(uri).destination_region(region).build().expect("destination")
}

fn notifications(status: ConfigurationStatus, uri: &str) -> NotificationConfiguration {
    NotificationConfiguration::builder()
        .status(status)
        .destination_config(NotificationDestinationConfig::builder().uri(uri).build().expect("destination"))
        .build()
        .expect("notification configuration")
}

fn schedule(expression: &str, seconds: i32) -> ScheduleConfig {
    ScheduleConfig::builder().schedule_expression(expression).duration_in_seconds(seconds).build().expect("schedule")
}

fn edge_config(hub: &str, upload_every: ScheduleConfig) -> EdgeConfig {
    let source = MediaSourceConfig::builder()
        .media_uri_secret_arn(SECRET_ARN)
        .media_uri_type(MediaUriType::RtspUri)
        .build()
        .expect("source");
    EdgeConfig::builder()
        .hub_device_arn(hub)
        .recorder_config(RecorderConfig::builder().media_source_config(source).build())
        .uploader_config(UploaderConfig::builder().schedule_config(upload_every).build())
        .build()
        .expect("edge config")
}

#[tokio::test]
async fn stream_storage_tier_is_created_described_and_updated_by_version() {
    let reel = unthrottled().await;
    let kvs = reel.kvs();
    let hot = reel.create_stream("hot", 24).await;
    let warm = kvs
        .create_stream()
        .stream_name("warm")
        .data_retention_in_hours(720)
        .stream_storage_configuration(tier(DefaultStorageTier::Warm))
        .send()
        .await
        .expect("create WARM")
        .stream_arn
        .expect("arn");

    // Created without a configuration: HOT. Described by name or ARN, naming the stream.
    let (describe, capture) = capturing(kvs.describe_stream_storage_configuration().stream_name("hot").customize());
    describe.send().await.expect("describe");
    assert_eq!(
        capture.json(),
        serde_json::json!({"StreamName": "hot", "StreamARN": hot, "StreamStorageConfiguration": {"DefaultStorageTier": "HOT"}})
    );
    let out = kvs.describe_stream_storage_configuration().stream_arn(&warm).send().await.expect("describe");
    assert_eq!(out.stream_name(), Some("warm"));
    let described = out.stream_storage_configuration().map(|c| c.default_storage_tier().clone());
    assert_eq!(described, Some(DefaultStorageTier::Warm), "CreateStream's tier is kept");

    // Update: compare-and-set on the stream's version, which then changes.
    let v1 = version(&kvs, &hot).await;
    let by_name = kvs.update_stream_storage_configuration().stream_name("hot").current_version(&v1);
    by_name.stream_storage_configuration(tier(DefaultStorageTier::Warm)).send().await.expect("update");
    assert_eq!(tier_of(&kvs, &hot).await, Some(DefaultStorageTier::Warm));
    let v2 = version(&kvs, &hot).await;
    assert_ne!(v1, v2, "a new tier is a new stream version");
    assert_fails!(set_tier(&kvs, &hot, &v1, DefaultStorageTier::Hot).send(), "VersionMismatchException", 400);
    set_tier(&kvs, &hot, &v2, DefaultStorageTier::Hot).send().await.expect("back to HOT");
    assert_eq!(tier_of(&kvs, &hot).await, Some(DefaultStorageTier::Hot));
    // Other stream updates keep the tier.
    let v3 = version(&kvs, &warm).await;
    kvs.update_stream().stream_arn(&warm).current_version(&v3).media_type("video/h265").send().await.expect("update");
    assert_eq!(tier_of(&kvs, &warm).await, Some(DefaultStorageTier::Warm));

    // Values the SDK sends but the model forbids.
    let v = version(&kvs, &hot).await;
    assert_fails!(set_tier(&kvs, &hot, &v, DefaultStorageTier::from("COLD")).send(), INVALID, 400);
    assert_fails!(set_tier(&kvs, &hot, "not-alnum!", DefaultStorageTier::Warm).send(), INVALID, 400);
    for body in [
        format!(r#"{{"StreamARN":"{hot}","CurrentVersion":"{v}"}}"#),
        format!(r#"{{"StreamARN":"{hot}","StreamStorageConfiguration":{{"DefaultStorageTier":"WARM"}}}}"#),
        format!(r#"{{"StreamARN":"{hot}","CurrentVersion":"{v}","StreamStorageConfiguration":{{}}}}"#),
    ] {
        let update = set_tier(&kvs, &hot, &v, DefaultStorageTier::Warm).customize();
        assert_fails!(update.mutate_request(with_body(body)).send(), INVALID, 400);
    }
    assert_eq!(version(&kvs, &hot).await, v, "refused updates change nothing");
    let cold = kvs.create_stream().stream_name("cold");
    assert_fails!(cold.stream_storage_configuration(tier(DefaultStorageTier::from("COLD"))).send(), INVALID, 400);
    let body = r#"{"StreamName":"x","StreamStorageConfiguration":{}}"#;
    assert_fails!(
        kvs.create_stream().stream_name("x").customize().mutate_request(with_body(body)).send(),
        INVALID,
        400
    );
    assert_fails!(kvs.describe_stream_storage_configuration().send(), INVALID, 400);

    // Missing streams.
    assert_fails!(kvs.describe_stream_storage_configuration().stream_name("nope").send(), NOT_FOUND, 404);
    let missing = kvs.update_stream_storage_configuration().stream_name("nope").current_version(&v);
    assert_fails!(missing.stream_storage_configuration(tier(DefaultStorageTier::Warm)).send(), NOT_FOUND, 404);
}

#[tokio::test]
async fn image_generation_configuration_round_trips_and_is_removed() {
    let reel = unthrottled().await;
    let kvs = reel.kvs();
    let arn = reel.create_stream("cam", 24).await;
    let live = reel.create_stream("live-only", 0).await;
    let v = version(&kvs, &arn).await;

    // None yet: 200 with no configuration member.
    let (describe, capture) = capturing(kvs.describe_image_generation_configuration().stream_arn(&arn).customize());
    let out = describe.send().await.expect("describe");
    assert!(out.image_generation_configuration().is_none());
    assert_eq!(capture.json(), serde_json::json!({}));

    // Set, by name; described back member for member.
    let full = images().build().expect("config");
    let by_name = kvs.update_image_generation_configuration().stream_name("cam");
    by_name.image_generation_configuration(full.clone()).send().await.expect("update");
    let out = kvs.describe_image_generation_configuration().stream_name("cam").send().await.expect("describe");
    assert_eq!(out.image_generation_configuration(), Some(&full));

    // Replaced whole: optional members left out are gone.
    let minimal = ImageGenerationConfiguration::builder()
        .status(ConfigurationStatus::Disabled)
        .image_selector_type(ImageSelectorType::ServerTimestamp)
        .destination_config(destination("s3://other-bucket", REGION))
        .sampling_interval(200)
        .format(Format::Png)
        .build()
        .expect("config");
    set_images(&kvs, &arn, Some(minimal.clone())).send().await.expect("replace");
    let (describe, capture) = capturing(kvs.describe_image_generation_configuration().stream_arn(&arn).customize());
    let out = describe.send().await.expect("describe");
    assert_eq!(out.image_generation_configuration(), Some(&minimal));
    let text = capture.json().to_string();
    assert!(!text.contains("FormatConfig") && !text.contains("Pixels") && !text.contains("null"), "{text}");
    assert_eq!(version(&kvs, &arn).await, v, "the operation takes no version and changes none");

    // Removed by an update without a configuration, or with an explicit null.
    set_images(&kvs, &arn, None).send().await.expect("remove");
    assert!(images_of(&kvs, &arn).await.is_none());
    set_images(&kvs, &arn, Some(full.clone())).send().await.expect("set again");
    let null = format!(r#"{{"StreamARN":"{arn}","ImageGenerationConfiguration":null}}"#);
    set_images(&kvs, &arn, None).customize().mutate_request(with_body(null)).send().await.expect("remove with null");
    assert!(images_of(&kvs, &arn).await.is_none());

    // ENABLED needs a stream that keeps data; DISABLED does not.
    assert_fails!(set_images(&kvs, &live, Some(full.clone())).send(), "NoDataRetentionException", 400);
    set_images(&kvs, &live, Some(minimal.clone())).send().await.expect("DISABLED on a stream without retention");

    // Values the SDK sends but the model (and its documentation) forbids.
    let bad = [
        images().sampling_interval(199).build(),
        images().sampling_interval(20_001).build(),
        images().width_pixels(3841).build(),
        images().width_pixels(0).build(),
        images().height_pixels(2161).build(),
        images().format_config(FormatConfigKey::JpegQuality, "0").build(),
        images().format_config(FormatConfigKey::JpegQuality, "101").build(),
        images().format_config(FormatConfigKey::JpegQuality, "eighty!").build(),
        images().format_config(FormatConfigKey::from("PNGCompression"), "9").build(),
        images().destination_config(destination("s3://bucket", "eu-west-1")).build(),
        images().destination_config(destination("s3://bucket", "uswest2")).build(),
        images().destination_config(destination("bucket", REGION)).build(),
        images().destination_config(destination(&format!("s3://{}", "b".repeat(251)), REGION)).build(),
        images().status(ConfigurationStatus::from("PAUSED")).build(),
        images().image_selector_type(ImageSelectorType::from("CLIENT_TIMESTAMP")).build(),
        images().format(Format::from("GIF")).build(),
    ];
    for config in bad {
        let config = config.expect("the SDK builds it");
        assert_fails!(set_images(&kvs, &arn, Some(config)).send(), INVALID, 400);
    }
    // A required member left out, and a configuration that is not an object.
    for cfg in [
        r#"{"Status":"ENABLED","ImageSelectorType":"SERVER_TIMESTAMP","SamplingInterval":3000,"Format":"JPEG"}"#,
        r#"{"Status":"ENABLED","ImageSelectorType":"SERVER_TIMESTAMP","DestinationConfig":{"Uri":"s3://b","DestinationRegion":"us-west-2"},"Format":"JPEG"}"#,
    ] {
        let body = format!(r#"{{"StreamARN":"{arn}","ImageGenerationConfiguration":{cfg}}}"#);
        assert_fails!(set_images(&kvs, &arn, None).customize().mutate_request(with_body(body)).send(), INVALID, 400);
    }
    let body = format!(r#"{{"StreamARN":"{arn}","ImageGenerationConfiguration":"on"}}"#);
    let update = set_images(&kvs, &arn, None).customize().mutate_request(with_body(body));
    assert_fails!(update.send(), "SerializationException", 400);
    assert!(images_of(&kvs, &arn).await.is_none(), "refused updates store nothing");

    // Missing streams, bad names.
    assert_fails!(kvs.describe_image_generation_configuration().stream_name("nope").send(), NOT_FOUND, 404);
    let missing = kvs.update_image_generation_configuration().stream_name("nope");
    assert_fails!(missing.image_generation_configuration(full.clone()).send(), NOT_FOUND, 404);
    assert_fails!(kvs.describe_image_generation_configuration().stream_name("has space").send(), INVALID, 400);
    assert_fails!(kvs.describe_image_generation_configuration().send(), INVALID, 400);

    // Deleting the stream deletes its configuration: a new stream of the same name has none.
    set_images(&kvs, &arn, Some(full)).send().await.expect("set");
    kvs.delete_stream().stream_arn(&arn).send().await.expect("delete");
    assert_fails!(kvs.describe_image_generation_configuration().stream_arn(&arn).send(), NOT_FOUND, 404);
    reel.create_stream("cam", 24).await;
    let out = kvs.describe_image_generation_configuration().stream_name("cam").send().await.expect("describe");
    assert!(out.image_generation_configuration().is_none());
}

#[tokio::test]
async fn notification_configuration_round_trips_and_is_removed() {
    let reel = unthrottled().await;
    let kvs = reel.kvs();
    let arn = reel.create_stream("door", 24).await;
    let live = reel.create_stream("live-only", 0).await;
    let v = version(&kvs, &arn).await;

    let (describe, capture) = capturing(kvs.describe_notification_configuration().stream_name("door").customize());
    describe.send().await.expect("describe");
    assert_eq!(capture.json(), serde_json::json!({}), "no configuration: no member");

    let on = notifications(ConfigurationStatus::Enabled, TOPIC);
    let by_name = kvs.update_notification_configuration().stream_name("door");
    by_name.notification_configuration(on.clone()).send().await.expect("update");
    let (describe, capture) = capturing(kvs.describe_notification_configuration().stream_arn(&arn).customize());
    let out = describe.send().await.expect("describe");
    assert_eq!(out.notification_configuration(), Some(&on));
    assert_eq!(
        capture.json(),
        serde_json::json!({"NotificationConfiguration": {"Status": "ENABLED", "DestinationConfig": {"Uri": TOPIC}}})
    );
    let off = notifications(ConfigurationStatus::Disabled, "arn:aws:sns:us-west-2:123456789012:other");
    set_notifications(&kvs, &arn, Some(off.clone())).send().await.expect("replace");
    assert_eq!(notifications_of(&kvs, &arn).await.as_ref(), Some(&off));
    assert_eq!(version(&kvs, &arn).await, v, "the stream's version does not change");

    set_notifications(&kvs, &arn, None).send().await.expect("remove");
    assert!(notifications_of(&kvs, &arn).await.is_none());
    set_notifications(&kvs, &arn, None).send().await.expect("removing again is fine");

    assert_fails!(set_notifications(&kvs, &live, Some(on.clone())).send(), "NoDataRetentionException", 400);
    set_notifications(&kvs, &live, Some(off.clone())).send().await.expect("DISABLED without retention");

    for config in [
        notifications(ConfigurationStatus::Enabled, "topic"),
        notifications(ConfigurationStatus::Enabled, "s3://bucket/*"),
        notifications(ConfigurationStatus::Enabled, &format!("arn:{}", "x".repeat(252))),
        notifications(ConfigurationStatus::from("ON"), TOPIC),
    ] {
        assert_fails!(set_notifications(&kvs, &arn, Some(config)).send(), INVALID, 400);
    }
    for cfg in [
        r#"{"Status":"ENABLED"}"#,
        r#"{"DestinationConfig":{"Uri":"x:y"}}"#,
        r#"{"Status":"ENABLED","DestinationConfig":{}}"#,
    ] {
        let body = format!(r#"{{"StreamARN":"{arn}","NotificationConfiguration":{cfg}}}"#);
        let update = set_notifications(&kvs, &arn, None).customize().mutate_request(with_body(body));
        assert_fails!(update.send(), INVALID, 400);
    }
    assert!(notifications_of(&kvs, &arn).await.is_none(), "refused updates store nothing");

    assert_fails!(kvs.describe_notification_configuration().stream_name("nope").send(), NOT_FOUND, 404);
    let missing = kvs.update_notification_configuration().stream_name("nope");
    assert_fails!(missing.notification_configuration(on.clone()).send(), NOT_FOUND, 404);
    // The configuration goes with its stream.
    set_notifications(&kvs, &live, Some(off)).send().await.expect("set");
    kvs.delete_stream().stream_arn(&live).send().await.expect("delete");
    assert_fails!(kvs.describe_notification_configuration().stream_arn(&live).send(), NOT_FOUND, 404);
    reel.create_stream("live-only", 0).await;
    let out = kvs.describe_notification_configuration().stream_name("live-only").send().await.expect("describe");
    assert!(out.notification_configuration().is_none());
}

#[tokio::test]
async fn edge_operations_answer_as_for_streams_without_edge_configurations() {
    let reel = unthrottled().await;
    let kvs = reel.kvs();
    let arn = reel.create_stream("yard", 24).await;
    let edge = "StreamEdgeConfigurationNotFoundException";

    // Describe/Delete of an existing stream: its (modeled) "no edge configuration" error.
    let describe = kvs.describe_edge_configuration().stream_arn(&arn).send().await.expect_err("no edge configuration");
    assert!(describe.as_service_error().is_some_and(|e| e.is_stream_edge_configuration_not_found_exception()));
    assert_fails!(kvs.describe_edge_configuration().stream_name("yard").send(), edge, 404);
    assert_fails!(kvs.delete_edge_configuration().stream_arn(&arn).send(), edge, 404);
    let delete = kvs.delete_edge_configuration().stream_name("yard").send().await.expect_err("nothing to delete");
    assert!(delete.as_service_error().is_some_and(|e| e.is_stream_edge_configuration_not_found_exception()));
    // Missing streams are ResourceNotFound.
    assert_fails!(kvs.describe_edge_configuration().stream_name("nope").send(), NOT_FOUND, 404);
    assert_fails!(kvs.delete_edge_configuration().stream_name("nope").send(), NOT_FOUND, 404);
    assert_fails!(kvs.describe_edge_configuration().send(), INVALID, 400);

    // StartEdgeConfigurationUpdate: checked against the model, then refused clearly.
    let hourly = || schedule("0 0 * * * ?", 3600);
    let message = assert_fails!(
        kvs.start_edge_configuration_update().stream_arn(&arn).edge_config(edge_config(HUB, hourly())).send(),
        INVALID,
        400
    );
    assert!(message.contains("Edge Agent"), "{message}");
    assert_fails!(
        kvs.start_edge_configuration_update().stream_name("nope").edge_config(edge_config(HUB, hourly())).send(),
        NOT_FOUND,
        404
    );
    for (config, wrong) in [
        (edge_config(HUB, schedule("0 0 * * * ?", 30)), "DurationInSeconds"),
        (edge_config(HUB, schedule("* *", 60)), "ScheduleExpression"),
        (edge_config("arn:aws:iot:us-west-2:123456789012:policy/p", hourly()), "HubDeviceArn"),
    ] {
        let message = assert_fails!(
            kvs.start_edge_configuration_update().stream_arn(&arn).edge_config(config).send(),
            INVALID,
            400
        );
        assert!(message.contains(wrong) && !message.contains("Edge Agent"), "{message}");
    }
    assert_fails!(
        kvs.start_edge_configuration_update()
            .stream_arn(&arn)
            .edge_config(edge_config(HUB, hourly()))
            .customize()
            .mutate_request(with_body(format!(r#"{{"StreamARN":"{arn}"}}"#)))
            .send(),
        INVALID,
        400
    );
    assert_fails!(kvs.describe_edge_configuration().stream_arn(&arn).send(), edge, 404);

    // ListEdgeAgentConfigurations: an empty list, no next page.
    let (list, capture) =
        capturing(kvs.list_edge_agent_configurations().hub_device_arn(HUB).max_results(10).customize());
    let out = list.send().await.expect("list");
    assert!(out.edge_configs().is_empty() && out.next_token().is_none());
    assert_eq!(capture.json(), serde_json::json!({"EdgeConfigs": []}));
    kvs.list_edge_agent_configurations().hub_device_arn(HUB).next_token("").send().await.expect("empty token");
    assert_fails!(kvs.list_edge_agent_configurations().hub_device_arn("hub-1").send(), INVALID, 400);
    assert_fails!(kvs.list_edge_agent_configurations().hub_device_arn(HUB).max_results(0).send(), INVALID, 400);
    assert_fails!(kvs.list_edge_agent_configurations().hub_device_arn(HUB).max_results(11).send(), INVALID, 400);
    assert_fails!(kvs.list_edge_agent_configurations().hub_device_arn(HUB).next_token("no such!").send(), INVALID, 400);
    assert_fails!(
        kvs.list_edge_agent_configurations().hub_device_arn(HUB).next_token("cmVlbDE6eA==").send(),
        INVALID,
        400
    );
    let list = kvs.list_edge_agent_configurations().hub_device_arn(HUB).customize();
    assert_fails!(list.mutate_request(with_body("{}")).send(), INVALID, 400);
}

/// May do everything on `cam-*` streams, nothing else.
const CAM_KEY: &str = "AKIACAMSTREAMS000001";
/// May only describe streams (no List*, no configuration operations).
const DESCRIBER_KEY: &str = "AKIADESCRIBER0000001";
const SECRET: &str = "stream-configs-test-secret-0000000000000";

fn credentials() -> String {
    let cam = allowing_key(CAM_KEY, SECRET, "kinesisvideo:*", &["arn:aws:kinesisvideo:*:*:stream/cam-*"]);
    cam + &allowing_key(DESCRIBER_KEY, SECRET, "kinesisvideo:DescribeStream", &["*"])
}

#[tokio::test]
async fn configuration_operations_are_authorized_on_the_stream_and_rate_limited() {
    let reel = InProcess::start(Some(&credentials())).await;
    let kvs = reel.kvs();
    let own = reel.create_stream("cam-1", 24).await;
    let other = reel.create_stream("garage", 24).await;
    let cam = reel.kvs_as(CAM_KEY, SECRET);
    let denied = "AccessDeniedException";

    // Allowed on its own stream.
    cam.describe_stream_storage_configuration().stream_arn(&own).send().await.expect("own stream");
    let on = notifications(ConfigurationStatus::Enabled, TOPIC);
    set_notifications(&cam, &own, Some(on)).send().await.expect("own stream");
    // Refused on another stream, existing or not (no existence oracle), with the modeled error.
    assert_fails!(cam.describe_stream_storage_configuration().stream_arn(&other).send(), denied, 401);
    assert_fails!(cam.describe_image_generation_configuration().stream_name("garage").send(), denied, 401);
    assert_fails!(cam.describe_image_generation_configuration().stream_name("ghost").send(), denied, 401);
    assert_fails!(set_images(&cam, &other, Some(images().build().expect("config"))).send(), denied, 401);
    assert_fails!(cam.describe_notification_configuration().stream_arn(&other).send(), denied, 401);
    assert_fails!(cam.describe_edge_configuration().stream_arn(&other).send(), denied, 401);
    assert_fails!(cam.delete_edge_configuration().stream_arn(&other).send(), denied, 401);
    let v = version(&kvs, &other).await;
    assert_fails!(set_tier(&cam, &other, &v, DefaultStorageTier::Warm).send(), denied, 401);
    assert_eq!(version(&kvs, &other).await, v, "nothing changed");
    assert!(notifications_of(&kvs, &other).await.is_none());
    // A key with no right to an operation is refused before any lookup, with the modeled error:
    // ListEdgeAgentConfigurations models NotAuthorizedException.
    let describer = reel.kvs_as(DESCRIBER_KEY, SECRET);
    assert_fails!(describer.list_edge_agent_configurations().hub_device_arn(HUB).send(), "NotAuthorizedException", 401);
    assert_fails!(describer.describe_notification_configuration().stream_arn(&own).send(), denied, 401);
    cam.list_edge_agent_configurations().hub_device_arn(HUB).send().await.expect_err("cam-* streams only");
    kvs.list_edge_agent_configurations().hub_device_arn(HUB).send().await.expect("root may list");

    // Per-stream quota: DeleteEdgeConfiguration allows 1 TPS per stream (burst 1).
    let mut throttled = 0;
    for _ in 0..5 {
        let (code, _, _) = failure(kvs.delete_edge_configuration().stream_arn(&own).send().await);
        match code.as_str() {
            "StreamEdgeConfigurationNotFoundException" => {}
            "ClientLimitExceededException" => throttled += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(throttled > 0, "5 back-to-back calls on one stream must hit its 1 TPS quota");
    let (code, _, _) = failure(kvs.delete_edge_configuration().stream_arn(&other).send().await);
    assert_eq!(code, "StreamEdgeConfigurationNotFoundException", "other streams are unaffected");
}
