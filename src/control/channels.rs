//! Signaling channels: Create/Describe/List/Update/DeleteSignalingChannel.
//!
//! Channels are `ACTIVE` as soon as they are created (KVS calls Create asynchronous; the
//! C SDK only refuses `DELETING`). Every update issues a fresh version; Update and Delete
//! compare `CurrentVersion` with it. Refusals by policy are `AccessDeniedException`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use serde::{Deserialize, Serialize};
use tracing::Span;

use crate::api::Core;
use crate::arn::ResourceArn;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::meta::{self, ChannelRecord, ListQuery, Tags};

use super::empty;
use crate::api::access::authorize;
use crate::api::resolve::{self, CHANNEL_DENY};
use crate::api::{body, pagination, validate};

/// `ChannelType` values of the model.
pub const CHANNEL_TYPES: &[&str] = &["SINGLE_MASTER", "FULL_MESH"];
/// `MessageTtlSeconds` when the request gives none.
pub const DEFAULT_MESSAGE_TTL_SECONDS: u32 = 60;
/// Bounds of `MessageTtlSeconds`.
pub const MESSAGE_TTL_RANGE: (i64, i64) = (5, 120);
/// `ListSignalingChannels` page size when `MaxResults` is absent.
pub const DEFAULT_LIST_SIZE: usize = 500;
/// Largest `MaxResults` of `ListSignalingChannels`.
pub const MAX_LIST_SIZE: usize = 10_000;

/// `SingleMasterConfiguration` (request and response).
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct SingleMasterConfiguration {
    /// Seconds an undelivered message stays queued (5–120).
    #[serde(rename = "MessageTtlSeconds", skip_serializing_if = "Option::is_none")]
    pub message_ttl_seconds: Option<i64>,
}

/// A `{Key, Value}` element of a channel's `Tags` list.
#[derive(Debug, Deserialize)]
pub struct TagEntry {
    #[serde(rename = "Key")]
    key: Option<String>,
    #[serde(rename = "Value")]
    value: Option<String>,
}

/// `ChannelInfo` of Describe/List responses.
#[derive(Debug, Serialize)]
pub struct ChannelInfo {
    #[serde(rename = "ChannelName")]
    name: String,
    #[serde(rename = "ChannelARN")]
    arn: String,
    #[serde(rename = "ChannelType")]
    channel_type: String,
    #[serde(rename = "ChannelStatus")]
    status: String,
    /// Epoch seconds, a JSON number.
    #[serde(rename = "CreationTime")]
    creation_time: f64,
    #[serde(rename = "SingleMasterConfiguration")]
    single_master: SingleMasterConfiguration,
    #[serde(rename = "Version")]
    version: String,
}

impl From<ChannelRecord> for ChannelInfo {
    fn from(c: ChannelRecord) -> Self {
        Self {
            name: c.name,
            arn: c.arn,
            channel_type: c.channel_type,
            status: c.status,
            creation_time: c.creation_time,
            single_master: SingleMasterConfiguration { message_ttl_seconds: Some(i64::from(c.message_ttl_seconds)) },
            version: c.version,
        }
    }
}

/// Check a channel's `Tags` list (model: 0–50 `{Key, Value}`) and collect it.
pub(crate) fn tag_list(entries: Vec<TagEntry>, member: &str, min: usize) -> ApiResult<Tags> {
    validate::count(entries.len(), member, min, validate::MAX_TAGS_PER_REQUEST)?;
    let mut tags = Tags::new();
    for (i, e) in entries.into_iter().enumerate() {
        let key = validate::required(e.key, &format!("{member}[{i}].Key"))?;
        let value = validate::required(e.value, &format!("{member}[{i}].Value"))?;
        validate::tag_key(&key, "Key")?;
        validate::tag_value(&value, "Value")?;
        tags.insert(key, value);
    }
    Ok(tags)
}

fn message_ttl(cfg: Option<&SingleMasterConfiguration>) -> ApiResult<Option<u32>> {
    match cfg.and_then(|c| c.message_ttl_seconds) {
        None => Ok(None),
        Some(ttl) => {
            let ttl = validate::range(
                ttl,
                "SingleMasterConfiguration.MessageTtlSeconds",
                MESSAGE_TTL_RANGE.0,
                MESSAGE_TTL_RANGE.1,
            )?;
            Ok(u32::try_from(ttl).ok())
        }
    }
}

/// `CreateSignalingChannel` input.
#[derive(Debug, Deserialize)]
pub struct CreateInput {
    #[serde(rename = "ChannelName")]
    name: Option<String>,
    #[serde(rename = "ChannelType")]
    channel_type: Option<String>,
    #[serde(rename = "SingleMasterConfiguration")]
    single_master: Option<SingleMasterConfiguration>,
    #[serde(rename = "Tags")]
    tags: Option<Vec<TagEntry>>,
}

/// `POST /createSignalingChannel` → `{ChannelARN}`.
#[tracing::instrument(name = "CreateSignalingChannel", skip_all, fields(channel = tracing::field::Empty))]
pub async fn create(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    const OP: &str = "CreateSignalingChannel";
    let input: CreateInput = body::parse(&body)?;
    let name = validate::required(input.name, "ChannelName")?;
    validate::name(&name, "ChannelName")?;
    Span::current().record("channel", name.as_str());
    let channel_type = match input.channel_type.as_deref() {
        None => "SINGLE_MASTER",
        Some(t) => validate::one_of(t, "ChannelType", CHANNEL_TYPES)?,
    };
    if channel_type != "SINGLE_MASTER" {
        return Err(ApiError::invalid_argument("Only SINGLE_MASTER signaling channels are supported"));
    }
    let ttl = message_ttl(input.single_master.as_ref())?.unwrap_or(DEFAULT_MESSAGE_TTL_SECONDS);
    let tags = tag_list(input.tags.unwrap_or_default(), "Tags", 0)?;
    let limits = &st.config.limits;
    if tags.len() > limits.max_tags_per_resource {
        return Err(crate::api::errors::tags_limit(limits.max_tags_per_resource));
    }

    let millis = super::creation_millis();
    let arn = ResourceArn::channel(&st.config.region, &st.config.account_id, &name, millis).to_string();
    authorize(&principal, OP, &arn, CHANNEL_DENY)?;
    let record = ChannelRecord {
        name,
        arn,
        channel_type: channel_type.to_string(),
        status: "ACTIVE".into(),
        creation_time: millis as f64 / 1000.0,
        message_ttl_seconds: ttl,
        version: meta::new_version(),
    };
    st.meta.create_channel(&record, &tags, limits.max_channels_per_account).await?;
    tracing::info!(arn = %record.arn, "signaling channel created");
    Ok(Json(serde_json::json!({ "ChannelARN": record.arn })))
}

/// `DescribeSignalingChannel` input.
#[derive(Debug, Deserialize)]
pub struct DescribeInput {
    #[serde(rename = "ChannelName")]
    name: Option<String>,
    #[serde(rename = "ChannelARN")]
    arn: Option<String>,
}

/// `DescribeSignalingChannel` output.
#[derive(Debug, Serialize)]
pub struct DescribeOutput {
    #[serde(rename = "ChannelInfo")]
    info: ChannelInfo,
}

/// `POST /describeSignalingChannel` → `{ChannelInfo}` (404 if missing: the C SDK then creates it).
#[tracing::instrument(name = "DescribeSignalingChannel", skip_all, fields(channel = tracing::field::Empty))]
pub async fn describe(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<DescribeOutput>> {
    let input: DescribeInput = body::parse(&body)?;
    let channel =
        resolve::channel(&st, &principal, "DescribeSignalingChannel", input.name.as_deref(), input.arn.as_deref())
            .await?;
    Ok(Json(DescribeOutput { info: channel.into() }))
}

/// `ChannelNameCondition` / `StreamNameCondition`.
#[derive(Debug, Deserialize)]
pub struct NameCondition {
    #[serde(rename = "ComparisonOperator")]
    operator: Option<String>,
    #[serde(rename = "ComparisonValue")]
    value: Option<String>,
}

/// The name prefix a `…NameCondition` asks for (only `BEGINS_WITH` exists).
pub(crate) fn name_prefix(cond: Option<NameCondition>, member: &str) -> ApiResult<Option<String>> {
    let Some(cond) = cond else { return Ok(None) };
    if let Some(op) = &cond.operator {
        validate::one_of(op, &format!("{member}.ComparisonOperator"), &["BEGINS_WITH"])?;
    }
    if let Some(v) = &cond.value {
        validate::name(v, &format!("{member}.ComparisonValue"))?;
    }
    Ok(cond.value)
}

/// The [`ListQuery`] of a `List…` request: `MaxResults` checked against the operation's
/// `(default, max)` page sizes, decoded `NextToken` and the `member` name condition's prefix.
pub(crate) fn list_query(
    (default_size, max_size): (usize, usize),
    max_results: Option<i64>,
    next_token: Option<&str>,
    condition: Option<NameCondition>,
    member: &str,
) -> ApiResult<ListQuery> {
    let limit = pagination::page_size(max_results, default_size, max_size)?;
    let after = pagination::decode(next_token)?;
    let name_prefix = name_prefix(condition, member)?;
    Ok(ListQuery { name_prefix, after, limit })
}

/// `ListSignalingChannels` input.
#[derive(Debug, Deserialize)]
pub struct ListInput {
    #[serde(rename = "MaxResults")]
    max_results: Option<i64>,
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
    #[serde(rename = "ChannelNameCondition")]
    condition: Option<NameCondition>,
}

/// `ListSignalingChannels` output.
#[derive(Debug, Serialize)]
pub struct ListOutput {
    #[serde(rename = "ChannelInfoList")]
    channels: Vec<ChannelInfo>,
    #[serde(rename = "NextToken", skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// `POST /listSignalingChannels` → `{ChannelInfoList, NextToken?}` in name order.
#[tracing::instrument(name = "ListSignalingChannels", skip_all)]
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
        "ChannelNameCondition",
    )?;
    authorize(&principal, "ListSignalingChannels", "*", CHANNEL_DENY)?;
    let page = st.meta.list_channels(&query).await?;
    Ok(Json(ListOutput {
        channels: page.items.into_iter().map(ChannelInfo::from).collect(),
        next_token: page.next_after.as_deref().map(pagination::encode),
    }))
}

/// `UpdateSignalingChannel` input.
#[derive(Debug, Deserialize)]
pub struct UpdateInput {
    #[serde(rename = "ChannelARN")]
    arn: Option<String>,
    #[serde(rename = "CurrentVersion")]
    current_version: Option<String>,
    #[serde(rename = "SingleMasterConfiguration")]
    single_master: Option<SingleMasterConfiguration>,
}

/// `POST /updateSignalingChannel` → `{}`; new TTL, new version.
#[tracing::instrument(name = "UpdateSignalingChannel", skip_all, fields(channel = tracing::field::Empty))]
pub async fn update(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let input: UpdateInput = body::parse(&body)?;
    let arn = validate::required(input.arn, "ChannelARN")?;
    let current_version = validate::required(input.current_version, "CurrentVersion")?;
    validate::version(&current_version, "CurrentVersion")?;
    let ttl = message_ttl(input.single_master.as_ref())?;
    let channel = resolve::channel(&st, &principal, "UpdateSignalingChannel", None, Some(&arn)).await?;
    let updated = st.meta.update_channel(&channel.arn, &current_version, ttl, &meta::new_version()).await?;
    tracing::info!(version = %updated.version, ttl = updated.message_ttl_seconds, "signaling channel updated");
    Ok(empty())
}

/// `DeleteSignalingChannel` input.
#[derive(Debug, Deserialize)]
pub struct DeleteInput {
    #[serde(rename = "ChannelARN")]
    arn: Option<String>,
    #[serde(rename = "CurrentVersion")]
    current_version: Option<String>,
}

/// `POST /deleteSignalingChannel` → `{}`; removes the channel, its tags and its storage mapping.
#[tracing::instrument(name = "DeleteSignalingChannel", skip_all, fields(channel = tracing::field::Empty))]
pub async fn delete(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let input: DeleteInput = body::parse(&body)?;
    let arn = validate::required(input.arn, "ChannelARN")?;
    if let Some(v) = &input.current_version {
        validate::version(v, "CurrentVersion")?;
    }
    let channel = resolve::channel(&st, &principal, "DeleteSignalingChannel", None, Some(&arn)).await?;
    st.meta.delete_channel(&channel.arn, input.current_version.as_deref()).await?;
    tracing::info!("signaling channel deleted");
    Ok(empty())
}
