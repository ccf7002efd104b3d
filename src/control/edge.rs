//! KVS Edge Agent: Describe/DeleteEdgeConfiguration, StartEdgeConfigurationUpdate and
//! ListEdgeAgentConfigurations.
//!
//! An edge configuration ties a stream to an Edge Agent running on an IoT hub device, which
//! records a camera and uploads to the stream. reel manages no hub devices, so no stream of
//! reel ever has an edge configuration, and reel answers what KVS answers for such a stream:
//!
//! - Describe/DeleteEdgeConfiguration of an existing stream: 404
//!   `StreamEdgeConfigurationNotFoundException` (a modeled error of both); of a missing one,
//!   `ResourceNotFoundException`;
//! - ListEdgeAgentConfigurations: the input checked against the model, then an empty
//!   `EdgeConfigs` list (no next page);
//! - StartEdgeConfigurationUpdate: the input checked against the model and the stream looked
//!   up, then refused with `InvalidArgumentException` (one of its modeled errors) saying so,
//!   rather than accepting a configuration nothing would ever sync.
//!
//! Refusals by policy follow the model: `AccessDeniedException`, except
//! ListEdgeAgentConfigurations (`NotAuthorizedException`, checked on `*`: the operation
//! names no reel resource).

use std::sync::LazyLock;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use http::StatusCode;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::api::{Core, access, body, pagination, validate};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};

use super::streams::StreamRef;

/// Pattern of `HubDeviceArn` (an IoT thing ARN, 1–1024 characters).
pub const HUB_DEVICE_ARN_PATTERN: &str = r"arn:[a-z\d-]+:iot:[a-z0-9-]+:[0-9]+:thing/[a-zA-Z0-9_.-]+";
/// Pattern of `MediaUriSecretArn` (a Secrets Manager ARN, 20–2048 characters).
pub const MEDIA_URI_SECRET_ARN_PATTERN: &str = r"arn:[a-z\d-]+:secretsmanager:[a-z0-9-]+:[0-9]+:secret:[a-zA-Z0-9_.-]+";
/// Pattern of `ScheduleExpression` (a Quartz cron expression, 11–100 characters).
pub const SCHEDULE_EXPRESSION_PATTERN: &str = r"[^\n]{11,100}";
/// `MediaUriType` values.
pub const MEDIA_URI_TYPES: &[&str] = &["RTSP_URI", "FILE_URI"];
/// `StrategyOnFullSize` values.
pub const FULL_SIZE_STRATEGIES: &[&str] = &["DELETE_OLDEST_MEDIA", "DENY_NEW_MEDIA"];
/// `ListEdgeAgentConfigurations` page size when `MaxResults` is absent.
pub const DEFAULT_LIST_SIZE: usize = 5;
/// Largest `MaxResults` of `ListEdgeAgentConfigurations`.
pub const MAX_LIST_SIZE: usize = 10;
/// What StartEdgeConfigurationUpdate answers once its input is valid.
pub const NO_EDGE_AGENTS: &str = "reel does not manage KVS Edge Agent hub devices: edge configurations cannot be \
                                  created on this server";

static HUB_DEVICE_ARN_RE: LazyLock<Regex> = LazyLock::new(|| whole(HUB_DEVICE_ARN_PATTERN));
static MEDIA_URI_SECRET_ARN_RE: LazyLock<Regex> = LazyLock::new(|| whole(MEDIA_URI_SECRET_ARN_PATTERN));
static SCHEDULE_EXPRESSION_RE: LazyLock<Regex> = LazyLock::new(|| whole(SCHEDULE_EXPRESSION_PATTERN));

/// A model pattern compiled to match whole values.
fn whole(pattern: &str) -> Regex {
    Regex::new(&format!("^(?:{pattern})$")).unwrap_or_else(|e| unreachable!("static pattern: {e}"))
}

/// 404 `StreamEdgeConfigurationNotFoundException` for `stream`.
pub fn no_edge_configuration(stream: &str) -> ApiError {
    ApiError::new(
        "StreamEdgeConfigurationNotFoundException",
        StatusCode::NOT_FOUND,
        format!("The stream {stream} has no edge configuration"),
    )
}

/// A `HubDeviceArn` at `member`.
pub fn hub_device_arn(value: &str, member: &str) -> ApiResult<()> {
    validate::matches(value, member, (1, 1024), &HUB_DEVICE_ARN_RE, HUB_DEVICE_ARN_PATTERN)
}

/// `ScheduleConfig`.
#[derive(Debug, Deserialize)]
pub struct ScheduleConfig {
    #[serde(rename = "ScheduleExpression")]
    expression: Option<String>,
    #[serde(rename = "DurationInSeconds")]
    duration_in_seconds: Option<i64>,
}

/// `MediaSourceConfig`.
#[derive(Debug, Deserialize)]
pub struct MediaSourceConfig {
    #[serde(rename = "MediaUriSecretArn")]
    secret_arn: Option<String>,
    #[serde(rename = "MediaUriType")]
    uri_type: Option<String>,
}

/// `RecorderConfig`.
#[derive(Debug, Deserialize)]
pub struct RecorderConfig {
    #[serde(rename = "MediaSourceConfig")]
    media_source: Option<MediaSourceConfig>,
    #[serde(rename = "ScheduleConfig")]
    schedule: Option<ScheduleConfig>,
}

/// `UploaderConfig`.
#[derive(Debug, Deserialize)]
pub struct UploaderConfig {
    #[serde(rename = "ScheduleConfig")]
    schedule: Option<ScheduleConfig>,
}

/// `LocalSizeConfig`.
#[derive(Debug, Deserialize)]
pub struct LocalSizeConfig {
    #[serde(rename = "MaxLocalMediaSizeInMB")]
    max_local_media_size_in_mb: Option<i64>,
    #[serde(rename = "StrategyOnFullSize")]
    strategy: Option<String>,
}

/// `DeletionConfig`.
#[derive(Debug, Deserialize)]
pub struct DeletionConfig {
    #[serde(rename = "EdgeRetentionInHours")]
    edge_retention_in_hours: Option<i64>,
    #[serde(rename = "LocalSizeConfig")]
    local_size: Option<LocalSizeConfig>,
    #[serde(rename = "DeleteAfterUpload")]
    _delete_after_upload: Option<bool>,
}

/// `EdgeConfig` of StartEdgeConfigurationUpdate.
#[derive(Debug, Deserialize)]
pub struct EdgeConfig {
    #[serde(rename = "HubDeviceArn")]
    hub_device_arn: Option<String>,
    #[serde(rename = "RecorderConfig")]
    recorder: Option<RecorderConfig>,
    #[serde(rename = "UploaderConfig")]
    uploader: Option<UploaderConfig>,
    #[serde(rename = "DeletionConfig")]
    deletion: Option<DeletionConfig>,
}

/// Check a `ScheduleConfig` at `member` (both members required when present).
fn schedule(s: ScheduleConfig, member: &str) -> ApiResult<()> {
    let expr_member = format!("{member}.ScheduleExpression");
    let expression = validate::required(s.expression, &expr_member)?;
    validate::matches(&expression, &expr_member, (11, 100), &SCHEDULE_EXPRESSION_RE, SCHEDULE_EXPRESSION_PATTERN)?;
    let duration_member = format!("{member}.DurationInSeconds");
    validate::range(validate::required(s.duration_in_seconds, &duration_member)?, &duration_member, 60, 3600)?;
    Ok(())
}

/// Check an `EdgeConfig` against the model. Pure. `MediaUriSecretArn` is a sensitive member:
/// its value is never quoted in a refusal.
pub fn validate_edge_config(c: EdgeConfig) -> ApiResult<()> {
    const M: &str = "EdgeConfig";
    let hub = validate::required(c.hub_device_arn, &format!("{M}.HubDeviceArn"))?;
    hub_device_arn(&hub, &format!("{M}.HubDeviceArn"))?;
    let recorder = validate::required(c.recorder, &format!("{M}.RecorderConfig"))?;
    let source_member = format!("{M}.RecorderConfig.MediaSourceConfig");
    let source = validate::required(recorder.media_source, &source_member)?;
    let secret_member = format!("{source_member}.MediaUriSecretArn");
    let secret = validate::required(source.secret_arn, &secret_member)?;
    let secret_ok = (20..=2048).contains(&secret.chars().count()) && MEDIA_URI_SECRET_ARN_RE.is_match(&secret);
    if !secret_ok {
        return Err(validate::invalid(
            "*** Sensitive Data Redacted ***",
            &secret_member,
            &format!("Member must have length between 20 and 2048 and satisfy pattern: {MEDIA_URI_SECRET_ARN_PATTERN}"),
        ));
    }
    let uri_type = validate::required(source.uri_type, &format!("{source_member}.MediaUriType"))?;
    validate::one_of(&uri_type, &format!("{source_member}.MediaUriType"), MEDIA_URI_TYPES)?;
    if let Some(s) = recorder.schedule {
        schedule(s, &format!("{M}.RecorderConfig.ScheduleConfig"))?;
    }
    if let Some(u) = c.uploader {
        let member = format!("{M}.UploaderConfig.ScheduleConfig");
        schedule(validate::required(u.schedule, &member)?, &member)?;
    }
    if let Some(d) = c.deletion {
        if let Some(h) = d.edge_retention_in_hours {
            validate::range(h, &format!("{M}.DeletionConfig.EdgeRetentionInHours"), 1, 720)?;
        }
        if let Some(l) = d.local_size {
            let member = format!("{M}.DeletionConfig.LocalSizeConfig");
            if let Some(mb) = l.max_local_media_size_in_mb {
                validate::range(mb, &format!("{member}.MaxLocalMediaSizeInMB"), 64, 2_000_000)?;
            }
            if let Some(s) = l.strategy {
                validate::one_of(&s, &format!("{member}.StrategyOnFullSize"), FULL_SIZE_STRATEGIES)?;
            }
        }
    }
    Ok(())
}

/// What Describe/DeleteEdgeConfiguration answer: for the stream `body` names (a
/// [`StreamRef`]), found and authorized for `op`, `StreamEdgeConfigurationNotFoundException`.
async fn no_configuration(
    st: &Core,
    principal: &Principal,
    op: &str,
    body: &[u8],
) -> ApiResult<Json<serde_json::Value>> {
    let input: StreamRef = body::parse(body)?;
    let stream = input.resolve(st, principal, op, ApiError::access_denied).await?;
    Err(no_edge_configuration(&stream.name))
}

/// `POST /describeEdgeConfiguration`: no stream of reel has an edge configuration.
#[tracing::instrument(name = "DescribeEdgeConfiguration", skip_all, fields(stream = tracing::field::Empty))]
pub async fn describe(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    no_configuration(&st, &principal, "DescribeEdgeConfiguration", &body).await
}

/// `POST /deleteEdgeConfiguration`: there is never an edge configuration to delete.
#[tracing::instrument(name = "DeleteEdgeConfiguration", skip_all, fields(stream = tracing::field::Empty))]
pub async fn delete(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    no_configuration(&st, &principal, "DeleteEdgeConfiguration", &body).await
}

/// `StartEdgeConfigurationUpdate` input.
#[derive(Debug, Deserialize)]
pub struct StartUpdateInput {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(rename = "EdgeConfig")]
    config: Option<EdgeConfig>,
}

/// `POST /startEdgeConfigurationUpdate`: a valid request for an existing stream is refused
/// with `InvalidArgumentException` ([`NO_EDGE_AGENTS`]).
#[tracing::instrument(name = "StartEdgeConfigurationUpdate", skip_all, fields(stream = tracing::field::Empty))]
pub async fn start_update(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let input: StartUpdateInput = body::parse(&body)?;
    validate_edge_config(validate::required(input.config, "EdgeConfig")?)?;
    input.stream.resolve(&st, &principal, "StartEdgeConfigurationUpdate", ApiError::access_denied).await?;
    Err(ApiError::invalid_argument(NO_EDGE_AGENTS))
}

/// `ListEdgeAgentConfigurations` input.
#[derive(Debug, Deserialize)]
pub struct ListInput {
    #[serde(rename = "HubDeviceArn")]
    hub_device_arn: Option<String>,
    #[serde(rename = "MaxResults")]
    max_results: Option<i64>,
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
}

/// `ListEdgeAgentConfigurations` output: always empty, never a next page.
#[derive(Debug, Serialize)]
pub struct ListOutput {
    #[serde(rename = "EdgeConfigs")]
    edge_configs: Vec<serde_json::Value>,
}

/// Check a `ListEdgeAgentConfigurations` request against the model. Pure. reel never issues
/// a token for this listing, so a non-empty `NextToken` is not one of its tokens.
pub fn validate_list(input: &ListInput) -> ApiResult<()> {
    let hub = validate::required(input.hub_device_arn.as_deref(), "HubDeviceArn")?;
    hub_device_arn(hub, "HubDeviceArn")?;
    pagination::page_size(input.max_results, DEFAULT_LIST_SIZE, MAX_LIST_SIZE)?;
    if pagination::decode(input.next_token.as_deref())?.is_some() {
        return Err(ApiError::invalid_argument("The NextToken is not a token this server issued"));
    }
    Ok(())
}

/// `POST /listEdgeAgentConfigurations` → `{"EdgeConfigs":[]}`.
#[tracing::instrument(name = "ListEdgeAgentConfigurations", skip_all)]
pub async fn list(
    State(_st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<ListOutput>> {
    let input: ListInput = body::parse(&body)?;
    validate_list(&input)?;
    access::authorize(&principal, "ListEdgeAgentConfigurations", "*", ApiError::not_authorized)?;
    Ok(Json(ListOutput { edge_configs: Vec::new() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUB: &str = "arn:aws:iot:us-west-2:123456789012:thing/hub-1";
    const SECRET: &str = "arn:aws:secretsmanager:us-west-2:123456789012:secret:cam-1";

    fn edge(extra: serde_json::Value) -> ApiResult<()> {
        let mut v = serde_json::json!({
            "HubDeviceArn": HUB,
            "RecorderConfig": {"MediaSourceConfig": {"MediaUriSecretArn": SECRET, "MediaUriType": "RTSP_URI"}},
        });
        if let (Some(base), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in extra {
                base.insert(k.clone(), x.clone());
            }
        }
        validate_edge_config(body::parse(v.to_string().as_bytes())?)
    }

    #[test]
    fn edge_configs_are_checked_against_the_model() {
        edge(serde_json::json!({})).expect("minimal");
        let schedule = serde_json::json!({"ScheduleExpression": "0 0/5 * * * ?", "DurationInSeconds": 60});
        edge(serde_json::json!({
            "UploaderConfig": {"ScheduleConfig": schedule},
            "DeletionConfig": {"EdgeRetentionInHours": 720, "DeleteAfterUpload": true,
                "LocalSizeConfig": {"MaxLocalMediaSizeInMB": 64, "StrategyOnFullSize": "DENY_NEW_MEDIA"}},
        }))
        .expect("complete");
        for extra in [
            serde_json::json!({"HubDeviceArn": null}),
            serde_json::json!({"HubDeviceArn": "arn:aws:iot:us-west-2:123456789012:policy/p"}),
            serde_json::json!({"RecorderConfig": {}}),
            serde_json::json!({"RecorderConfig": {"MediaSourceConfig": {"MediaUriSecretArn": "arn:aws:s3:::x", "MediaUriType": "RTSP_URI"}}}),
            serde_json::json!({"RecorderConfig": {"MediaSourceConfig": {"MediaUriSecretArn": SECRET, "MediaUriType": "HTTP"}}}),
            serde_json::json!({"UploaderConfig": {}}),
            serde_json::json!({"UploaderConfig": {"ScheduleConfig": {"ScheduleExpression": "too short", "DurationInSeconds": 60}}}),
            serde_json::json!({"UploaderConfig": {"ScheduleConfig": {"ScheduleExpression": "0 0/5 * * * ?", "DurationInSeconds": 59}}}),
            serde_json::json!({"DeletionConfig": {"EdgeRetentionInHours": 721}}),
            serde_json::json!({"DeletionConfig": {"LocalSizeConfig": {"MaxLocalMediaSizeInMB": 63}}}),
            serde_json::json!({"DeletionConfig": {"LocalSizeConfig": {"StrategyOnFullSize": "KEEP"}}}),
        ] {
            let e = edge(extra.clone()).expect_err(&extra.to_string());
            assert_eq!(e.code, "InvalidArgumentException", "{extra}: {}", e.message);
        }
        let e = edge(serde_json::json!({"RecorderConfig": {"MediaSourceConfig": {
            "MediaUriSecretArn": "arn:aws:secretsmanager:us-west-2:1:secret:has space", "MediaUriType": "RTSP_URI"}}}))
        .expect_err("bad secret");
        assert!(!e.message.contains("has space"), "a sensitive value is not quoted: {}", e.message);
    }

    #[test]
    fn listings_are_checked_against_the_model() {
        let list = |json: &str| -> ApiResult<()> { validate_list(&body::parse(json.as_bytes())?) };
        list(&format!(r#"{{"HubDeviceArn":"{HUB}","MaxResults":10,"NextToken":""}}"#)).expect("valid");
        for bad in [
            "{}".to_string(),
            r#"{"HubDeviceArn":"hub-1"}"#.to_string(),
            format!(r#"{{"HubDeviceArn":"{HUB}","MaxResults":0}}"#),
            format!(r#"{{"HubDeviceArn":"{HUB}","MaxResults":11}}"#),
            format!(r#"{{"HubDeviceArn":"{HUB}","NextToken":"not a token"}}"#),
            format!(r#"{{"HubDeviceArn":"{HUB}","NextToken":"{}"}}"#, pagination::encode("x")),
        ] {
            assert_eq!(list(&bad).expect_err(&bad).code, "InvalidArgumentException", "{bad}");
        }
    }
}
