//! Media storage: Update/DescribeMediaStorageConfiguration and
//! DescribeMappedResourceConfiguration.
//!
//! A channel with storage `ENABLED` has its master's media ingested into one stream.
//! Rules (docs/kvs-wire.md §2.1), enforced atomically by the store: the stream must exist and
//! keep data (`NoDataRetentionException`), may take the media of one channel only
//! (`ResourceInUseException`), and at most `limits.max_storage_enabled_channels`
//! channels may be enabled (`ClientLimitExceededException`, see
//! the `From<MetaError>` mapping in [`crate::api::errors`]). `DISABLED` removes the mapping; its `StreamARN` (the JS
//! examples send `null`) is only checked for form.
//!
//! Authorization: UpdateMediaStorageConfiguration needs the operation on the channel *and*
//! on the stream it maps (as in KVS, whose IAM resources for it are both), checked before
//! either is looked up; otherwise a key confined to `channel/cam-*` could point its channel
//! at any stream and write into it. The Describe operations take one resource each, as in
//! KVS: the other side's ARN they return is an identifier, not its data.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use serde::{Deserialize, Serialize};

use crate::api::Core;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};

use super::empty;
use crate::api::access;
use crate::api::resolve::{self, ArnFormatError, CHANNEL_DENY};
use crate::api::{body, pagination, validate};

/// `MediaStorageConfiguration.Status` values.
pub const STATUSES: &[&str] = &["ENABLED", "DISABLED"];
/// `Type` of the channel entry in `MappedResourceConfigurationList`. The model does not
/// enumerate the values and AWS's exact string was not found (docs/kvs-wire.md §7.10; unverified).
pub const MAPPED_CHANNEL_TYPE: &str = "SIGNALING_CHANNEL";

/// `MediaStorageConfiguration` (request and response).
#[derive(Debug, Deserialize, Serialize)]
pub struct MediaStorageConfiguration {
    #[serde(rename = "StreamARN", skip_serializing_if = "Option::is_none")]
    stream_arn: Option<String>,
    #[serde(rename = "Status", skip_serializing_if = "Option::is_none")]
    status: Option<String>,
}

/// `UpdateMediaStorageConfiguration` input.
#[derive(Debug, Deserialize)]
pub struct UpdateInput {
    #[serde(rename = "ChannelARN")]
    channel_arn: Option<String>,
    #[serde(rename = "MediaStorageConfiguration")]
    config: Option<MediaStorageConfiguration>,
}

/// `POST /updateMediaStorageConfiguration` → `{}`.
#[tracing::instrument(name = "UpdateMediaStorageConfiguration", skip_all, fields(channel = tracing::field::Empty))]
pub async fn update(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let input: UpdateInput = body::parse(&body)?;
    let channel_arn = validate::required(input.channel_arn, "ChannelARN")?;
    let config = validate::required(input.config, "MediaStorageConfiguration")?;
    let status = validate::required(config.status, "MediaStorageConfiguration.Status")?;
    let status = validate::one_of(&status, "MediaStorageConfiguration.Status", STATUSES)?;
    if let Some(s) = &config.stream_arn {
        validate::resource_arn(s, "MediaStorageConfiguration.StreamARN")?;
    }
    let stream_arn = match (status, config.stream_arn) {
        ("ENABLED", None) => {
            return Err(ApiError::invalid_argument(
                "MediaStorageConfiguration.StreamARN is required when Status is ENABLED",
            ));
        }
        ("ENABLED", Some(s)) => Some(s),
        _ => None,
    };
    if let Some(stream_arn) = &stream_arn {
        // The caller needs rights on the stream it maps as well as on the channel. Checked
        // against the ARN as given, before any lookup: the store maps exactly that ARN.
        access::authorize(&principal, "UpdateMediaStorageConfiguration", stream_arn, CHANNEL_DENY)?;
    }
    let channel =
        resolve::channel(&st, &principal, "UpdateMediaStorageConfiguration", None, Some(&channel_arn)).await?;
    let max = st.config.limits.max_storage_enabled_channels;
    st.meta.set_media_storage(&channel.arn, stream_arn.as_deref(), max).await?;
    tracing::info!(status, stream = stream_arn.as_deref().unwrap_or(""), "media storage configuration updated");
    Ok(empty())
}

/// `DescribeMediaStorageConfiguration` input.
#[derive(Debug, Deserialize)]
pub struct DescribeInput {
    #[serde(rename = "ChannelName")]
    name: Option<String>,
    #[serde(rename = "ChannelARN")]
    arn: Option<String>,
}

/// `DescribeMediaStorageConfiguration` output: always carries the object, also for a
/// channel that was never configured (the JS examples dereference it unconditionally).
#[derive(Debug, Serialize)]
pub struct DescribeOutput {
    #[serde(rename = "MediaStorageConfiguration")]
    config: MediaStorageConfiguration,
}

/// `POST /describeMediaStorageConfiguration` → `{MediaStorageConfiguration{Status, StreamARN?}}`.
#[tracing::instrument(name = "DescribeMediaStorageConfiguration", skip_all, fields(channel = tracing::field::Empty))]
pub async fn describe(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<DescribeOutput>> {
    let input: DescribeInput = body::parse(&body)?;
    let channel = resolve::channel(
        &st,
        &principal,
        "DescribeMediaStorageConfiguration",
        input.name.as_deref(),
        input.arn.as_deref(),
    )
    .await?;
    let cfg = st.meta.media_storage(&channel.arn).await?;
    let status = if cfg.enabled { "ENABLED" } else { "DISABLED" };
    Ok(Json(DescribeOutput {
        config: MediaStorageConfiguration { stream_arn: cfg.stream_arn, status: Some(status.into()) },
    }))
}

/// `DescribeMappedResourceConfiguration` input.
#[derive(Debug, Deserialize)]
pub struct MappedInput {
    #[serde(rename = "StreamName")]
    name: Option<String>,
    #[serde(rename = "StreamARN")]
    arn: Option<String>,
    #[serde(rename = "MaxResults")]
    max_results: Option<i64>,
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
}

/// One `MappedResourceConfigurationList` element.
#[derive(Debug, Serialize)]
pub struct MappedResource {
    #[serde(rename = "Type")]
    kind: &'static str,
    #[serde(rename = "ARN")]
    arn: String,
}

/// `DescribeMappedResourceConfiguration` output (0 or 1 element; never a next page).
#[derive(Debug, Serialize)]
pub struct MappedOutput {
    #[serde(rename = "MappedResourceConfigurationList")]
    list: Vec<MappedResource>,
}

/// `POST /describeMappedResourceConfiguration` → the channel whose storage writes into the stream.
#[tracing::instrument(name = "DescribeMappedResourceConfiguration", skip_all, fields(stream = tracing::field::Empty))]
pub async fn describe_mapped_resource(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<MappedOutput>> {
    let input: MappedInput = body::parse(&body)?;
    pagination::page_size(input.max_results, 1, 1)?;
    // A single-item list never has a second page, so no token is valid but "start".
    if pagination::decode(input.next_token.as_deref())?.is_some() {
        return Err(ApiError::invalid_argument("The NextToken is not a token this server issued"));
    }
    // The model lists AccessDeniedException (not NotAuthorized) for this operation.
    let stream = resolve::stream(
        &st,
        &principal,
        "DescribeMappedResourceConfiguration",
        ApiError::access_denied,
        input.name.as_deref(),
        input.arn.as_deref(),
        ArnFormatError::InvalidArgument,
    )
    .await?;
    let channel = st.meta.channel_for_stream(&stream.arn).await?;
    let list = channel.into_iter().map(|c| MappedResource { kind: MAPPED_CHANNEL_TYPE, arn: c.arn }).collect();
    Ok(Json(MappedOutput { list }))
}
