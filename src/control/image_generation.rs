//! Image generation: Describe/UpdateImageGenerationConfiguration.
//!
//! The configuration is validated against the model and stored with the stream (one per
//! stream, deleted with it); Update without one (or with `null`) removes it, and Describe of
//! a stream without one answers `{}`. reel does not generate images or upload them to S3: the
//! configuration is kept and described so clients and tools round-trip it.
//!
//! Constraints beyond the model's shapes, from its documentation (docs/kvs-wire.md §2.1):
//! `DestinationRegion` must be the stream's region; `SamplingInterval` is 200–20000 ms (the
//! model documents the 200 ms minimum, the API reference the 20000 ms maximum); the
//! `JPEGQuality` format parameter is an integer 1–100. An `ENABLED` configuration needs a
//! stream that keeps data (`NoDataRetentionException`, modeled for the update). The stream's
//! version does not change: the operation takes no `CurrentVersion`. Refusals by policy are
//! `AccessDeniedException`, the model's choice for both operations.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::api::{Core, body, validate};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::meta::{ImageGenerationConfig, MetaStore};

use super::configuration::{self, Stored, StreamConfiguration};
use super::streams::StreamRef;

/// Shortest `SamplingInterval`, in ms (documented in the model).
pub const MIN_SAMPLING_INTERVAL_MS: i64 = 200;
/// Longest `SamplingInterval`, in ms (documented in the API reference).
pub const MAX_SAMPLING_INTERVAL_MS: i64 = 20_000;
/// Pattern of `DestinationRegion` (9–14 characters).
pub const DESTINATION_REGION_PATTERN: &str = "^[a-z]+(-[a-z]+)?-[a-z]+-[0-9]$";

static DESTINATION_REGION_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(DESTINATION_REGION_PATTERN).unwrap_or_else(|e| unreachable!("static pattern: {e}")));

/// `ImageGenerationDestinationConfig`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct DestinationConfig {
    #[serde(rename = "Uri", skip_serializing_if = "Option::is_none")]
    uri: Option<String>,
    #[serde(rename = "DestinationRegion", skip_serializing_if = "Option::is_none")]
    region: Option<String>,
}

/// `ImageGenerationConfiguration` (Update input, Describe output); absent members are omitted.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ImageGenerationConfiguration {
    #[serde(rename = "Status", skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(rename = "ImageSelectorType", skip_serializing_if = "Option::is_none")]
    image_selector_type: Option<String>,
    #[serde(rename = "DestinationConfig", skip_serializing_if = "Option::is_none")]
    destination: Option<DestinationConfig>,
    #[serde(rename = "SamplingInterval", skip_serializing_if = "Option::is_none")]
    sampling_interval: Option<i64>,
    #[serde(rename = "Format", skip_serializing_if = "Option::is_none")]
    format: Option<String>,
    #[serde(rename = "FormatConfig", skip_serializing_if = "Option::is_none")]
    format_config: Option<BTreeMap<String, String>>,
    #[serde(rename = "WidthPixels", skip_serializing_if = "Option::is_none")]
    width_pixels: Option<i64>,
    #[serde(rename = "HeightPixels", skip_serializing_if = "Option::is_none")]
    height_pixels: Option<i64>,
}

impl From<ImageGenerationConfig> for ImageGenerationConfiguration {
    fn from(c: ImageGenerationConfig) -> Self {
        Self {
            status: Some(if c.enabled { "ENABLED" } else { "DISABLED" }.into()),
            image_selector_type: Some(c.image_selector_type),
            destination: Some(DestinationConfig { uri: Some(c.destination_uri), region: Some(c.destination_region) }),
            sampling_interval: Some(i64::from(c.sampling_interval_ms)),
            format: Some(c.format),
            format_config: c.jpeg_quality.map(|q| BTreeMap::from([("JPEGQuality".to_string(), q)])),
            width_pixels: c.width_pixels.map(i64::from),
            height_pixels: c.height_pixels.map(i64::from),
        }
    }
}

const M: &str = "ImageGenerationConfiguration";

/// Check a requested configuration against the model (and the documented rules above) for
/// a stream in `region`, giving what the store keeps. Pure: no I/O.
pub fn validate_config(c: ImageGenerationConfiguration, region: &str) -> ApiResult<ImageGenerationConfig> {
    let status = validate::required(c.status, &format!("{M}.Status"))?;
    let status = validate::one_of(&status, &format!("{M}.Status"), validate::CONFIGURATION_STATUSES)?;
    let selector = validate::required(c.image_selector_type, &format!("{M}.ImageSelectorType"))?;
    let selector = validate::one_of(&selector, &format!("{M}.ImageSelectorType"), validate::IMAGE_SELECTOR_TYPES)?;
    let destination = validate::required(c.destination, &format!("{M}.DestinationConfig"))?;
    let uri = validate::required(destination.uri, &format!("{M}.DestinationConfig.Uri"))?;
    validate::destination_uri(&uri, &format!("{M}.DestinationConfig.Uri"))?;
    let region_member = format!("{M}.DestinationConfig.DestinationRegion");
    let destination_region = validate::required(destination.region, &region_member)?;
    validate::matches(
        &destination_region,
        &region_member,
        (9, 14),
        &DESTINATION_REGION_RE,
        DESTINATION_REGION_PATTERN,
    )?;
    if destination_region != region {
        return Err(ApiError::invalid_argument(format!(
            "{region_member} {destination_region} must be the Region of the stream ({region})"
        )));
    }
    let interval = validate::required(c.sampling_interval, &format!("{M}.SamplingInterval"))?;
    let interval = validate::range(
        interval,
        &format!("{M}.SamplingInterval"),
        MIN_SAMPLING_INTERVAL_MS,
        MAX_SAMPLING_INTERVAL_MS,
    )?;
    let format = validate::required(c.format, &format!("{M}.Format"))?;
    let format = validate::one_of(&format, &format!("{M}.Format"), validate::IMAGE_FORMATS)?;
    let jpeg_quality = match c.format_config {
        None => None,
        Some(map) => Some(validate::jpeg_quality(map, &format!("{M}.FormatConfig"))?.0),
    };
    let pixels = |v: Option<i64>, member: &str, max: i64| -> ApiResult<Option<u32>> {
        v.map(|n| validate::range(n, &format!("{M}.{member}"), 1, max).map(|n| u32::try_from(n).unwrap_or(1)))
            .transpose()
    };
    Ok(ImageGenerationConfig {
        enabled: status == "ENABLED",
        image_selector_type: selector.into(),
        destination_uri: uri,
        destination_region,
        sampling_interval_ms: u32::try_from(interval).unwrap_or(0),
        format: format.into(),
        jpeg_quality,
        width_pixels: pixels(c.width_pixels, "WidthPixels", validate::MAX_WIDTH_PIXELS)?,
        height_pixels: pixels(c.height_pixels, "HeightPixels", validate::MAX_HEIGHT_PIXELS)?,
    })
}

impl StreamConfiguration for ImageGenerationConfig {
    type Wire = ImageGenerationConfiguration;
    const NAME: &'static str = "image generation configuration";
    fn validate(wire: ImageGenerationConfiguration, core: &Core) -> ApiResult<Self> {
        validate_config(wire, &core.config.region)
    }
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn load<'a>(meta: &'a dyn MetaStore, stream_arn: &'a str) -> Stored<'a, Option<Self>> {
        meta.image_generation_config(stream_arn)
    }
    fn store<'a>(meta: &'a dyn MetaStore, stream_arn: &'a str, config: Option<&'a Self>) -> Stored<'a, ()> {
        meta.set_image_generation_config(stream_arn, config)
    }
}

/// `DescribeImageGenerationConfiguration` output: `{}` for a stream without a configuration.
#[derive(Debug, Serialize)]
pub struct DescribeOutput {
    #[serde(rename = "ImageGenerationConfiguration", skip_serializing_if = "Option::is_none")]
    config: Option<ImageGenerationConfiguration>,
}

/// `POST /describeImageGenerationConfiguration` → `{ImageGenerationConfiguration?}`.
#[tracing::instrument(name = "DescribeImageGenerationConfiguration", skip_all, fields(stream = tracing::field::Empty))]
pub async fn describe(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<DescribeOutput>> {
    let op = "DescribeImageGenerationConfiguration";
    let config = configuration::describe::<ImageGenerationConfig>(&st, &principal, op, &body).await?;
    Ok(Json(DescribeOutput { config }))
}

/// `UpdateImageGenerationConfiguration` input.
#[derive(Debug, Deserialize)]
pub struct UpdateInput {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(rename = "ImageGenerationConfiguration")]
    config: Option<ImageGenerationConfiguration>,
}

/// `POST /updateImageGenerationConfiguration` → `{}`; sets the configuration, or removes it
/// when the request carries none.
#[tracing::instrument(name = "UpdateImageGenerationConfiguration", skip_all, fields(stream = tracing::field::Empty))]
pub async fn update(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let input: UpdateInput = body::parse(&body)?;
    let op = "UpdateImageGenerationConfiguration";
    configuration::update::<ImageGenerationConfig>(&st, &principal, op, &input.stream, input.config).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGION: &str = "us-west-2";

    fn check(json: &str) -> ApiResult<ImageGenerationConfig> {
        validate_config(body::parse(json.as_bytes())?, REGION)
    }

    /// A valid configuration with `extra` members merged over it.
    fn with(extra: serde_json::Value) -> String {
        let mut v = serde_json::json!({
            "Status": "ENABLED",
            "ImageSelectorType": "SERVER_TIMESTAMP",
            "DestinationConfig": {"Uri": "s3://bucket/images", "DestinationRegion": REGION},
            "SamplingInterval": 3000,
            "Format": "JPEG",
        });
        if let (Some(base), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in extra {
                base.insert(k.clone(), x.clone());
            }
        }
        v.to_string()
    }

    #[test]
    fn a_complete_configuration_round_trips() {
        let cfg = check(&with(serde_json::json!({
            "FormatConfig": {"JPEGQuality": "80"}, "WidthPixels": 3840, "HeightPixels": 2160
        })))
        .expect("valid");
        assert!(cfg.enabled);
        assert_eq!(
            (cfg.width_pixels, cfg.height_pixels, cfg.jpeg_quality.as_deref()),
            (Some(3840), Some(2160), Some("80"))
        );
        let wire = serde_json::to_value(ImageGenerationConfiguration::from(cfg)).expect("json");
        assert_eq!(wire["FormatConfig"]["JPEGQuality"], "80");
        assert_eq!(wire["SamplingInterval"], 3000);
        assert_eq!(wire["DestinationConfig"]["DestinationRegion"], REGION);
        let minimal = check(&with(serde_json::json!({"Status": "DISABLED", "Format": "PNG"}))).expect("valid");
        let wire = serde_json::to_value(ImageGenerationConfiguration::from(minimal)).expect("json");
        let text = wire.to_string();
        assert!(!text.contains("FormatConfig") && !text.contains("Pixels") && !text.contains("null"), "{text}");
    }

    #[test]
    fn model_constraints_are_enforced() {
        let invalid = [
            serde_json::json!({"Status": null}),
            serde_json::json!({"Status": "ON"}),
            serde_json::json!({"ImageSelectorType": "CLIENT_TIMESTAMP"}),
            serde_json::json!({"DestinationConfig": null}),
            serde_json::json!({"DestinationConfig": {"DestinationRegion": REGION}}),
            serde_json::json!({"DestinationConfig": {"Uri": "no-scheme", "DestinationRegion": REGION}}),
            serde_json::json!({"DestinationConfig": {"Uri": "s3://b"}}),
            serde_json::json!({"DestinationConfig": {"Uri": "s3://b", "DestinationRegion": "Us-West-2"}}),
            serde_json::json!({"DestinationConfig": {"Uri": "s3://b", "DestinationRegion": "eu-west-1"}}),
            serde_json::json!({"SamplingInterval": 199}),
            serde_json::json!({"SamplingInterval": 20001}),
            serde_json::json!({"Format": "GIF"}),
            serde_json::json!({"FormatConfig": {}}),
            serde_json::json!({"FormatConfig": {"Quality": "80"}}),
            serde_json::json!({"FormatConfig": {"JPEGQuality": "0"}}),
            serde_json::json!({"FormatConfig": {"JPEGQuality": "101"}}),
            serde_json::json!({"FormatConfig": {"JPEGQuality": "8 0"}}),
            serde_json::json!({"WidthPixels": 0}),
            serde_json::json!({"WidthPixels": 3841}),
            serde_json::json!({"HeightPixels": 2161}),
        ];
        for extra in invalid {
            let e = check(&with(extra.clone())).expect_err(&extra.to_string());
            assert_eq!(e.code, "InvalidArgumentException", "{extra}: {}", e.message);
        }
        for extra in [serde_json::json!({"SamplingInterval": 200}), serde_json::json!({"SamplingInterval": 20000})] {
            assert!(check(&with(extra.clone())).is_ok(), "{extra}");
        }
        let e = check(&with(serde_json::json!({"SamplingInterval": "3000"}))).expect_err("wrong type");
        assert_eq!(e.code, "SerializationException");
    }
}
