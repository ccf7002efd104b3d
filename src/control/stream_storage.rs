//! Stream storage tiers: Describe/UpdateStreamStorageConfiguration, and the
//! `StreamStorageConfiguration` CreateStream takes.
//!
//! The tier is a stream attribute stored with the stream record (HOT unless set). Updating
//! it is a compare-and-set on the stream's `CurrentVersion` and issues a new version, as
//! every change of a stream's metadata does in KVS. reel keeps all media in one store: the
//! tier is recorded and described, and changes neither where nor how long media is kept.
//!
//! Decisions where the documentation is silent (docs/kvs-wire.md §2.1): `WARM` is accepted
//! with any retention (KVS bills warm media for at least 30 days but documents no minimum
//! retention), and the update takes effect at once (KVS calls it asynchronous), so reel never
//! answers `ResourceInUseException` for a stream that is still switching tiers.
//! Refusals by policy are `AccessDeniedException`, the model's choice for both operations.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use serde::{Deserialize, Serialize};

use crate::api::Core;
use crate::api::{body, validate};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::meta::{self, StorageTier, StreamUpdate};

use super::empty;
use super::streams::StreamRef;

/// `StreamStorageConfiguration` (CreateStream and UpdateStreamStorageConfiguration input,
/// DescribeStreamStorageConfiguration output).
#[derive(Debug, Deserialize, Serialize)]
pub struct StreamStorageConfiguration {
    #[serde(rename = "DefaultStorageTier")]
    default_storage_tier: Option<String>,
}

/// The tier a request's `StreamStorageConfiguration` (at `member`) names: its
/// `DefaultStorageTier` is required and must be `HOT` or `WARM`.
pub fn tier(config: StreamStorageConfiguration, member: &str) -> ApiResult<StorageTier> {
    let tier_member = format!("{member}.DefaultStorageTier");
    let name = validate::required(config.default_storage_tier, &tier_member)?;
    let name = validate::one_of(&name, &tier_member, StorageTier::NAMES)?;
    // `one_of` only returns listed names, all of which parse.
    StorageTier::parse(name).ok_or_else(|| validate::invalid(name, &tier_member, "Member must be HOT or WARM"))
}

/// `DescribeStreamStorageConfiguration` output: always names the stream and its tier.
#[derive(Debug, Serialize)]
pub struct DescribeOutput {
    #[serde(rename = "StreamName")]
    name: String,
    #[serde(rename = "StreamARN")]
    arn: String,
    #[serde(rename = "StreamStorageConfiguration")]
    config: StreamStorageConfiguration,
}

/// `POST /describeStreamStorageConfiguration` → `{StreamName, StreamARN, StreamStorageConfiguration}`.
#[tracing::instrument(name = "DescribeStreamStorageConfiguration", skip_all, fields(stream = tracing::field::Empty))]
pub async fn describe(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<DescribeOutput>> {
    let input: StreamRef = body::parse(&body)?;
    let stream = input.resolve(&st, &principal, "DescribeStreamStorageConfiguration", ApiError::access_denied).await?;
    let tier = stream.default_storage_tier.as_str().to_string();
    Ok(Json(DescribeOutput {
        name: stream.name,
        arn: stream.arn,
        config: StreamStorageConfiguration { default_storage_tier: Some(tier) },
    }))
}

/// `UpdateStreamStorageConfiguration` input. Not a flattened [`StreamRef`]: see there why
/// `StreamStorageConfiguration` (sorting after `StreamARN`) rules that out.
#[derive(Debug, Deserialize)]
pub struct UpdateInput {
    #[serde(rename = "StreamName")]
    name: Option<String>,
    #[serde(rename = "StreamARN")]
    arn: Option<String>,
    #[serde(rename = "CurrentVersion")]
    current_version: Option<String>,
    #[serde(rename = "StreamStorageConfiguration")]
    config: Option<StreamStorageConfiguration>,
}

/// `POST /updateStreamStorageConfiguration` → `{}`; the new tier and a new stream version,
/// or `VersionMismatchException` when `CurrentVersion` is not the stream's.
#[tracing::instrument(name = "UpdateStreamStorageConfiguration", skip_all, fields(stream = tracing::field::Empty))]
pub async fn update(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let input: UpdateInput = body::parse(&body)?;
    let current_version = validate::required(input.current_version, "CurrentVersion")?;
    validate::version(&current_version, "CurrentVersion")?;
    let config = validate::required(input.config, "StreamStorageConfiguration")?;
    let tier = tier(config, "StreamStorageConfiguration")?;
    let stream = StreamRef { name: input.name, arn: input.arn }
        .resolve(&st, &principal, "UpdateStreamStorageConfiguration", ApiError::access_denied)
        .await?;
    let update = StreamUpdate { default_storage_tier: Some(tier), ..Default::default() };
    st.meta.update_stream(&stream.arn, &current_version, &update, &meta::new_version()).await?;
    st.stream_cache.forget(&stream.arn);
    tracing::info!(tier = tier.as_str(), "stream storage configuration updated");
    Ok(empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_tier(json: &str) -> ApiResult<StorageTier> {
        let config: StreamStorageConfiguration = body::parse(json.as_bytes())?;
        tier(config, "StreamStorageConfiguration")
    }

    #[test]
    fn tiers_are_required_and_enumerated() {
        assert_eq!(parse_tier(r#"{"DefaultStorageTier":"HOT"}"#).expect("hot"), StorageTier::Hot);
        assert_eq!(parse_tier(r#"{"DefaultStorageTier":"WARM"}"#).expect("warm"), StorageTier::Warm);
        for bad in [r#"{}"#, r#"{"DefaultStorageTier":null}"#, r#"{"DefaultStorageTier":"warm"}"#] {
            let e = parse_tier(bad).expect_err(bad);
            assert_eq!(e.code, "InvalidArgumentException", "{bad}");
            assert!(e.message.contains("StreamStorageConfiguration.DefaultStorageTier"), "{}", e.message);
        }
    }
}
