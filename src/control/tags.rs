//! Tags: Tag/Untag/ListTagsForResource (by ARN; request tags are a list of
//! `{Key, Value}`) and Tag/Untag/ListTagsForStream (by stream name or ARN; request tags
//! are a map). Every response carries tags as a map.
//!
//! A resource holds at most `limits.max_tags_per_resource` tags: a TagResource/TagStream
//! that would exceed it fails with `TagsPerResourceExceededLimitException` and changes
//! nothing. A single request with more than 50 tags breaks the model's list/map bound
//! and is an `InvalidArgumentException`. Tag operations do not change a resource's
//! version. The list operations return every tag at once (≤ 50), so they never issue
//! a `NextToken`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use serde::{Deserialize, Serialize};
use tracing::Span;

use crate::api::Core;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::meta::{MetaError, Quota, Tags};

use super::channels::{self, TagEntry};
use super::empty;
use super::streams;
use crate::api::access::{authorize, throttle};
use crate::api::resolve::ArnFormatError;
use crate::api::resolve::{self, CHANNEL_DENY, STREAM_DENY};
use crate::api::{body, pagination, validate};

/// `ListTagsFor*` output.
#[derive(Debug, Serialize)]
pub struct ListTagsOutput {
    #[serde(rename = "Tags")]
    tags: Tags,
}

fn check_keys(keys: &[String]) -> ApiResult<()> {
    validate::count(keys.len(), "TagKeyList", 1, validate::MAX_TAGS_PER_REQUEST)?;
    keys.iter().try_for_each(|k| validate::tag_key(k, "TagKeyList.member"))
}

/// `NextToken` of a list-tags call: only "no token" is valid, since none is ever issued.
fn check_no_token(token: Option<&str>) -> ApiResult<()> {
    match pagination::decode(token)? {
        None => Ok(()),
        Some(_) => Err(ApiError::invalid_argument("The NextToken is not a token this server issued")),
    }
}

async fn add_tags(st: &Core, arn: &str, tags: &Tags) -> ApiResult<()> {
    let max = st.config.limits.max_tags_per_resource;
    st.meta.tag(arn, tags, max).await.map_err(|e| match e {
        MetaError::QuotaExceeded(Quota::Tags(max)) => crate::api::errors::tags_limit(max),
        other => ApiError::from(other),
    })
}

/// Authorize a by-ARN tag operation on the resource and take its rate token.
fn by_arn(st: &Core, principal: &Principal, op: &str, arn: &str) -> ApiResult<()> {
    validate::resource_arn(arn, "ResourceARN")?;
    Span::current().record("resource", arn);
    authorize(principal, op, arn, CHANNEL_DENY)?;
    throttle(st, op, arn)
}

/// `TagResource` input.
#[derive(Debug, Deserialize)]
pub struct TagResourceInput {
    #[serde(rename = "ResourceARN")]
    arn: Option<String>,
    #[serde(rename = "Tags")]
    tags: Option<Vec<TagEntry>>,
}

/// `POST /TagResource` → `{}`.
#[tracing::instrument(name = "TagResource", skip_all, fields(resource = tracing::field::Empty))]
pub async fn tag_resource(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let input: TagResourceInput = body::parse(&body)?;
    let arn = validate::required(input.arn, "ResourceARN")?;
    let tags = channels::tag_list(validate::required(input.tags, "Tags")?, "Tags", 1)?;
    by_arn(&st, &principal, "TagResource", &arn)?;
    add_tags(&st, &arn, &tags).await?;
    Ok(empty())
}

/// `UntagResource` input.
#[derive(Debug, Deserialize)]
pub struct UntagResourceInput {
    #[serde(rename = "ResourceARN")]
    arn: Option<String>,
    #[serde(rename = "TagKeyList")]
    keys: Option<Vec<String>>,
}

/// `POST /UntagResource` → `{}`.
#[tracing::instrument(name = "UntagResource", skip_all, fields(resource = tracing::field::Empty))]
pub async fn untag_resource(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let input: UntagResourceInput = body::parse(&body)?;
    let arn = validate::required(input.arn, "ResourceARN")?;
    let keys = validate::required(input.keys, "TagKeyList")?;
    check_keys(&keys)?;
    by_arn(&st, &principal, "UntagResource", &arn)?;
    st.meta.untag(&arn, &keys).await?;
    Ok(empty())
}

/// `ListTagsForResource` input.
#[derive(Debug, Deserialize)]
pub struct ListTagsForResourceInput {
    #[serde(rename = "ResourceARN")]
    arn: Option<String>,
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
}

/// `POST /ListTagsForResource` → `{Tags}`.
#[tracing::instrument(name = "ListTagsForResource", skip_all, fields(resource = tracing::field::Empty))]
pub async fn list_tags_for_resource(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<ListTagsOutput>> {
    let input: ListTagsForResourceInput = body::parse(&body)?;
    let arn = validate::required(input.arn, "ResourceARN")?;
    check_no_token(input.next_token.as_deref())?;
    by_arn(&st, &principal, "ListTagsForResource", &arn)?;
    let tags = st.meta.tags(&arn).await?;
    Ok(Json(ListTagsOutput { tags }))
}

/// `TagStream` input.
#[derive(Debug, Deserialize)]
pub struct TagStreamInput {
    #[serde(rename = "StreamARN")]
    arn: Option<String>,
    #[serde(rename = "StreamName")]
    name: Option<String>,
    #[serde(rename = "Tags")]
    tags: Option<Tags>,
}

/// `POST /tagStream` → `{}`.
#[tracing::instrument(name = "TagStream", skip_all, fields(stream = tracing::field::Empty))]
pub async fn tag_stream(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let input: TagStreamInput = body::parse(&body)?;
    let tags = streams::tag_map(validate::required(input.tags, "Tags")?, "Tags")?;
    let stream = resolve::stream(
        &st,
        &principal,
        "TagStream",
        STREAM_DENY,
        input.name.as_deref(),
        input.arn.as_deref(),
        ArnFormatError::InvalidResourceFormat,
    )
    .await?;
    add_tags(&st, &stream.arn, &tags).await?;
    Ok(empty())
}

/// `UntagStream` input.
#[derive(Debug, Deserialize)]
pub struct UntagStreamInput {
    #[serde(rename = "StreamARN")]
    arn: Option<String>,
    #[serde(rename = "StreamName")]
    name: Option<String>,
    #[serde(rename = "TagKeyList")]
    keys: Option<Vec<String>>,
}

/// `POST /untagStream` → `{}`.
#[tracing::instrument(name = "UntagStream", skip_all, fields(stream = tracing::field::Empty))]
pub async fn untag_stream(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let input: UntagStreamInput = body::parse(&body)?;
    let keys = validate::required(input.keys, "TagKeyList")?;
    check_keys(&keys)?;
    let stream = resolve::stream(
        &st,
        &principal,
        "UntagStream",
        STREAM_DENY,
        input.name.as_deref(),
        input.arn.as_deref(),
        ArnFormatError::InvalidResourceFormat,
    )
    .await?;
    st.meta.untag(&stream.arn, &keys).await?;
    Ok(empty())
}

/// `ListTagsForStream` input.
#[derive(Debug, Deserialize)]
pub struct ListTagsForStreamInput {
    #[serde(rename = "StreamARN")]
    arn: Option<String>,
    #[serde(rename = "StreamName")]
    name: Option<String>,
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
}

/// `POST /listTagsForStream` → `{Tags}`.
#[tracing::instrument(name = "ListTagsForStream", skip_all, fields(stream = tracing::field::Empty))]
pub async fn list_tags_for_stream(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<ListTagsOutput>> {
    let input: ListTagsForStreamInput = body::parse(&body)?;
    check_no_token(input.next_token.as_deref())?;
    let stream = resolve::stream(
        &st,
        &principal,
        "ListTagsForStream",
        STREAM_DENY,
        input.name.as_deref(),
        input.arn.as_deref(),
        ArnFormatError::InvalidResourceFormat,
    )
    .await?;
    let tags = st.meta.tags(&stream.arn).await?;
    Ok(Json(ListTagsOutput { tags }))
}
