//! Streams: Create/Describe/List/Update/DeleteStream and UpdateDataRetention.
//!
//! Streams are `ACTIVE` at once; every update issues a fresh version and Update* /
//! Delete compare `CurrentVersion` with it. Refusals by policy are
//! `NotAuthorizedException`, as the model lists for stream operations.
//!
//! Decisions where the documentation is silent (docs/kvs-wire.md §2.1):
//! - `DeleteStream` of a stream a storage-enabled channel writes into is
//!   `ResourceInUseException` (the model lists it for DeleteStream): deleting it would
//!   leave the channel's ingestion pointing nowhere. Disable storage first.
//! - `UpdateDataRetention` that would leave the documented range 0…87600 hours is
//!   `InvalidArgumentException` rather than silently clamped; dropping to 0 while a
//!   storage-enabled channel writes into the stream is `ResourceInUseException`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use serde::{Deserialize, Serialize};
use tracing::Span;

use crate::api::Core;
use crate::arn::ResourceArn;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::meta::{self, StorageTier, StreamRecord, StreamUpdate, Tags};

use super::channels::{NameCondition, list_query};
use super::empty;
use super::stream_storage::{self, StreamStorageConfiguration};
use crate::api::access::{Deny, authorize};
use crate::api::resolve::{self, ArnFormatError, STREAM_DENY};
use crate::api::{body, pagination, validate};

/// Longest retention the documentation allows (ten years).
pub const MAX_DATA_RETENTION_HOURS: i64 = 87_600;
/// `ListStreams` page size when `MaxResults` is absent.
pub const DEFAULT_LIST_SIZE: usize = 10_000;
/// Largest `MaxResults` of `ListStreams`.
pub const MAX_LIST_SIZE: usize = 10_000;
/// `UpdateDataRetention.Operation` values.
pub const RETENTION_OPERATIONS: &[&str] = &["INCREASE_DATA_RETENTION", "DECREASE_DATA_RETENTION"];

/// Check a stream `Tags` map (model: 1–50 entries) and collect it.
pub(crate) fn tag_map(tags: Tags, member: &str) -> ApiResult<Tags> {
    validate::count(tags.len(), member, 1, validate::MAX_TAGS_PER_REQUEST)?;
    for (k, v) in &tags {
        validate::tag_key(k, &format!("{member}.key"))?;
        validate::tag_value(v, &format!("{member}.value"))?;
    }
    Ok(tags)
}

/// `StreamInfo` of Describe/List responses; absent optional members are omitted.
#[derive(Debug, Serialize)]
pub struct StreamInfo {
    #[serde(rename = "DeviceName", skip_serializing_if = "Option::is_none")]
    device_name: Option<String>,
    #[serde(rename = "StreamName")]
    name: String,
    #[serde(rename = "StreamARN")]
    arn: String,
    #[serde(rename = "MediaType", skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(rename = "KmsKeyId", skip_serializing_if = "Option::is_none")]
    kms_key_id: Option<String>,
    #[serde(rename = "Version")]
    version: String,
    #[serde(rename = "Status")]
    status: String,
    /// Epoch seconds, a JSON number.
    #[serde(rename = "CreationTime")]
    creation_time: f64,
    #[serde(rename = "DataRetentionInHours")]
    data_retention_in_hours: u32,
}

/// The `KmsKeyId` KVS reports for a stream created without one: the AWS managed key of its
/// region and account (`alias/aws/kinesisvideo`), which KVS encrypts such streams with.
fn default_kms_key_id(stream_arn: &str) -> Option<String> {
    let arn = crate::arn::parse(stream_arn).ok()?;
    Some(format!("arn:{}:kms:{}:{}:alias/aws/kinesisvideo", arn.partition, arn.region, arn.account))
}

impl From<StreamRecord> for StreamInfo {
    fn from(s: StreamRecord) -> Self {
        Self {
            device_name: s.device_name,
            kms_key_id: s.kms_key_id.or_else(|| default_kms_key_id(&s.arn)),
            name: s.name,
            arn: s.arn,
            media_type: s.media_type,
            version: s.version,
            status: s.status,
            creation_time: s.creation_time,
            data_retention_in_hours: s.data_retention_in_hours,
        }
    }
}

/// `CreateStream` input.
#[derive(Debug, Deserialize)]
pub struct CreateInput {
    #[serde(rename = "DeviceName")]
    device_name: Option<String>,
    #[serde(rename = "StreamName")]
    name: Option<String>,
    #[serde(rename = "MediaType")]
    media_type: Option<String>,
    #[serde(rename = "KmsKeyId")]
    kms_key_id: Option<String>,
    #[serde(rename = "DataRetentionInHours")]
    data_retention_in_hours: Option<i64>,
    #[serde(rename = "Tags")]
    tags: Option<Tags>,
    #[serde(rename = "StreamStorageConfiguration")]
    storage: Option<StreamStorageConfiguration>,
}

/// `POST /createStream` → `{StreamARN}`.
#[tracing::instrument(name = "CreateStream", skip_all, fields(stream = tracing::field::Empty))]
pub async fn create(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let input: CreateInput = body::parse(&body)?;
    let name = validate::required(input.name, "StreamName")?;
    validate::name(&name, "StreamName")?;
    Span::current().record("stream", name.as_str());
    if let Some(d) = &input.device_name {
        validate::device_name(d, "DeviceName")?;
    }
    if let Some(m) = &input.media_type {
        validate::media_type(m, "MediaType")?;
    }
    if let Some(k) = &input.kms_key_id {
        validate::kms_key_id(k, "KmsKeyId")?;
    }
    let retention = match input.data_retention_in_hours {
        None => 0,
        Some(h) => validate::range(h, "DataRetentionInHours", 0, MAX_DATA_RETENTION_HOURS)?,
    };
    // Absent, the stream is HOT (the model's documented default).
    let default_storage_tier = match input.storage {
        None => StorageTier::Hot,
        Some(storage) => stream_storage::tier(storage, "StreamStorageConfiguration")?,
    };
    let tags = match input.tags {
        None => Tags::new(),
        Some(t) => tag_map(t, "Tags")?,
    };
    let limits = &st.config.limits;
    if tags.len() > limits.max_tags_per_resource {
        return Err(crate::api::errors::tags_limit(limits.max_tags_per_resource));
    }

    let millis = super::creation_millis();
    let arn = ResourceArn::stream(&st.config.region, &st.config.account_id, &name, millis).to_string();
    authorize(&principal, "CreateStream", &arn, STREAM_DENY)?;
    let record = StreamRecord {
        name,
        arn,
        device_name: input.device_name,
        media_type: input.media_type,
        kms_key_id: input.kms_key_id,
        status: "ACTIVE".into(),
        creation_time: millis as f64 / 1000.0,
        data_retention_in_hours: u32::try_from(retention).unwrap_or(0),
        default_storage_tier,
        version: meta::new_version(),
    };
    st.meta.create_stream(&record, &tags, limits.max_streams_per_account).await?;
    st.store.open_or_create_stream(&record.arn, record.data_retention_in_hours).await?;
    tracing::info!(arn = %record.arn, retention_hours = record.data_retention_in_hours, "stream created");
    Ok(Json(serde_json::json!({ "StreamARN": record.arn })))
}

/// The stream an operation names by `StreamName` and/or `StreamARN`: the whole input of
/// operations that name one stream and nothing else, flattened into larger inputs.
///
/// Flatten it only into inputs whose other members all sort before `StreamARN`: bodies are
/// read member by member in name order ([`body::parse`] goes through a sorted JSON map), a
/// flattened struct after the rest, so otherwise the `SerializationException` for a body with
/// two mistyped members could name a different one.
#[derive(Debug, Default, Deserialize)]
pub struct StreamRef {
    #[serde(rename = "StreamName")]
    pub(crate) name: Option<String>,
    #[serde(rename = "StreamARN")]
    pub(crate) arn: Option<String>,
}

impl StreamRef {
    /// [`resolve::stream`] for the named stream: found, authorized for `op` (`deny` builds
    /// the operation's modeled policy refusal) and rate-limited; a malformed ARN is an
    /// `InvalidArgumentException`.
    pub(crate) async fn resolve(
        &self,
        st: &Core,
        principal: &Principal,
        op: &str,
        deny: Deny,
    ) -> ApiResult<StreamRecord> {
        let (name, arn) = (self.name.as_deref(), self.arn.as_deref());
        resolve::stream(st, principal, op, deny, name, arn, ArnFormatError::InvalidArgument).await
    }
}

/// `DescribeStream` output.
#[derive(Debug, Serialize)]
pub struct DescribeOutput {
    #[serde(rename = "StreamInfo")]
    info: StreamInfo,
}

/// `POST /describeStream` → `{StreamInfo}`.
#[tracing::instrument(name = "DescribeStream", skip_all, fields(stream = tracing::field::Empty))]
pub async fn describe(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<DescribeOutput>> {
    let input: StreamRef = body::parse(&body)?;
    let stream = input.resolve(&st, &principal, "DescribeStream", STREAM_DENY).await?;
    Ok(Json(DescribeOutput { info: stream.into() }))
}

/// `ListStreams` input.
#[derive(Debug, Deserialize)]
pub struct ListInput {
    #[serde(rename = "MaxResults")]
    max_results: Option<i64>,
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
    #[serde(rename = "StreamNameCondition")]
    condition: Option<NameCondition>,
}

/// `ListStreams` output.
#[derive(Debug, Serialize)]
pub struct ListOutput {
    #[serde(rename = "StreamInfoList")]
    streams: Vec<StreamInfo>,
    #[serde(rename = "NextToken", skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// `POST /listStreams` → `{StreamInfoList, NextToken?}` in name order.
#[tracing::instrument(name = "ListStreams", skip_all)]
pub async fn list(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<ListOutput>> {
    let input: ListInput = body::parse(&body)?;
    let query = list_query(
        (DEFAULT_LIST_SIZE, MAX_LIST_SIZE),
        input.max_results,
        input.next_token.as_deref(),
        input.condition,
        "StreamNameCondition",
    )?;
    authorize(&principal, "ListStreams", "*", STREAM_DENY)?;
    let page = st.meta.list_streams(&query).await?;
    Ok(Json(ListOutput {
        streams: page.items.into_iter().map(StreamInfo::from).collect(),
        next_token: page.next_after.as_deref().map(pagination::encode),
    }))
}

/// `UpdateStream` input.
#[derive(Debug, Deserialize)]
pub struct UpdateInput {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(rename = "CurrentVersion")]
    current_version: Option<String>,
    #[serde(rename = "DeviceName")]
    device_name: Option<String>,
    #[serde(rename = "MediaType")]
    media_type: Option<String>,
}

/// `POST /updateStream` → `{}`; new device name / media type, new version.
#[tracing::instrument(name = "UpdateStream", skip_all, fields(stream = tracing::field::Empty))]
pub async fn update(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let input: UpdateInput = body::parse(&body)?;
    let current_version = validate::required(input.current_version, "CurrentVersion")?;
    validate::version(&current_version, "CurrentVersion")?;
    if let Some(d) = &input.device_name {
        validate::device_name(d, "DeviceName")?;
    }
    if let Some(m) = &input.media_type {
        validate::media_type(m, "MediaType")?;
    }
    let stream = input.stream.resolve(&st, &principal, "UpdateStream", STREAM_DENY).await?;
    let update = StreamUpdate { device_name: input.device_name, media_type: input.media_type, ..Default::default() };
    st.meta.update_stream(&stream.arn, &current_version, &update, &meta::new_version()).await?;
    st.stream_cache.forget(&stream.arn);
    tracing::info!("stream updated");
    Ok(empty())
}

/// `DeleteStream` input.
#[derive(Debug, Deserialize)]
pub struct DeleteInput {
    #[serde(rename = "StreamARN")]
    arn: Option<String>,
    #[serde(rename = "CurrentVersion")]
    current_version: Option<String>,
}

/// `POST /deleteStream` → `{}`; refused while a storage-enabled channel writes into it.
#[tracing::instrument(name = "DeleteStream", skip_all, fields(stream = tracing::field::Empty))]
pub async fn delete(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let input: DeleteInput = body::parse(&body)?;
    let arn = validate::required(input.arn, "StreamARN")?;
    if let Some(v) = &input.current_version {
        validate::version(v, "CurrentVersion")?;
    }
    let stream = StreamRef { name: None, arn: Some(arn) }.resolve(&st, &principal, "DeleteStream", STREAM_DENY).await?;
    st.meta.delete_stream(&stream.arn, input.current_version.as_deref()).await?;
    st.stream_cache.forget(&stream.arn);
    match st.store.delete_stream(&stream.arn).await {
        Ok(()) | Err(reel_storage::StoreError::StreamNotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!("stream deleted");
    Ok(empty())
}

/// `UpdateDataRetention` input.
#[derive(Debug, Deserialize)]
pub struct UpdateDataRetentionInput {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(rename = "CurrentVersion")]
    current_version: Option<String>,
    #[serde(rename = "Operation")]
    operation: Option<String>,
    #[serde(rename = "DataRetentionChangeInHours")]
    change_in_hours: Option<i64>,
}

/// The retention after `operation` by `change` hours, or `InvalidArgumentException` if
/// it would leave 0…[`MAX_DATA_RETENTION_HOURS`].
pub fn apply_retention_change(current: u32, operation: &str, change: i64) -> ApiResult<u32> {
    let current = i64::from(current);
    let new = if operation == "INCREASE_DATA_RETENTION" {
        current.saturating_add(change)
    } else {
        current.saturating_sub(change)
    };
    if !(0..=MAX_DATA_RETENTION_HOURS).contains(&new) {
        return Err(ApiError::invalid_argument(format!(
            "The data retention would become {new} hours; it must stay between 0 and {MAX_DATA_RETENTION_HOURS}"
        )));
    }
    Ok(u32::try_from(new).unwrap_or(0))
}

/// `POST /updateDataRetention` → `{}`; retention ± change, new version.
#[tracing::instrument(name = "UpdateDataRetention", skip_all, fields(stream = tracing::field::Empty))]
pub async fn update_data_retention(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let input: UpdateDataRetentionInput = body::parse(&body)?;
    let current_version = validate::required(input.current_version, "CurrentVersion")?;
    validate::version(&current_version, "CurrentVersion")?;
    let operation = validate::required(input.operation, "Operation")?;
    let operation = validate::one_of(&operation, "Operation", RETENTION_OPERATIONS)?;
    let change = validate::required(input.change_in_hours, "DataRetentionChangeInHours")?;
    let change = validate::range(change, "DataRetentionChangeInHours", 1, i64::MAX)?;
    let stream = input.stream.resolve(&st, &principal, "UpdateDataRetention", STREAM_DENY).await?;
    // The new value is computed from the version the caller saw; the store's
    // compare-and-set on that version makes the read-modify-write atomic.
    if stream.version != current_version {
        return Err(ApiError::from(meta::MetaError::VersionMismatch { resource: stream.arn, given: current_version }));
    }
    let hours = apply_retention_change(stream.data_retention_in_hours, operation, change)?;
    let update = StreamUpdate { data_retention_in_hours: Some(hours), ..Default::default() };
    st.meta.update_stream(&stream.arn, &current_version, &update, &meta::new_version()).await?;
    st.stream_cache.forget(&stream.arn);
    st.store.open_or_create_stream(&stream.arn, hours).await?.set_retention_hours(hours).await?;
    tracing::info!(retention_hours = hours, "stream data retention updated");
    Ok(empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_changes_stay_in_range() {
        assert_eq!(apply_retention_change(24, "INCREASE_DATA_RETENTION", 6).expect("ok"), 30);
        assert_eq!(apply_retention_change(24, "DECREASE_DATA_RETENTION", 24).expect("ok"), 0);
        assert!(apply_retention_change(24, "DECREASE_DATA_RETENTION", 25).is_err());
        assert_eq!(apply_retention_change(87_000, "INCREASE_DATA_RETENTION", 600).expect("ok"), 87_600);
        assert!(apply_retention_change(87_000, "INCREASE_DATA_RETENTION", 601).is_err());
        assert!(apply_retention_change(0, "INCREASE_DATA_RETENTION", i64::MAX).is_err());
    }
}
