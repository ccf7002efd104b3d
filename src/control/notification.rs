//! Notifications: Describe/UpdateNotificationConfiguration.
//!
//! The configuration (`Status`, `DestinationConfig.Uri`) is validated against the model and
//! stored with the stream (one per stream, deleted with it); Update without one (or with
//! `null`) removes it, and Describe of a stream without one answers `{}`. reel publishes no
//! Amazon SNS notifications: the configuration is kept and described only.
//!
//! As for image generation (docs/kvs-wire.md §2.1): an `ENABLED` configuration needs a stream
//! that keeps data (`NoDataRetentionException`, modeled for the update; KVS notifies of
//! persisted fragments), the stream's version does not change, and refusals by policy are
//! `AccessDeniedException`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use serde::{Deserialize, Serialize};

use crate::api::{Core, body, validate};
use crate::auth::Principal;
use crate::error::ApiResult;
use crate::meta::{MetaStore, NotificationConfig};

use super::configuration::{self, Stored, StreamConfiguration};
use super::streams::StreamRef;

/// `NotificationDestinationConfig`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct DestinationConfig {
    #[serde(rename = "Uri", skip_serializing_if = "Option::is_none")]
    uri: Option<String>,
}

/// `NotificationConfiguration` (Update input, Describe output).
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct NotificationConfiguration {
    #[serde(rename = "Status", skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(rename = "DestinationConfig", skip_serializing_if = "Option::is_none")]
    destination: Option<DestinationConfig>,
}

impl From<NotificationConfig> for NotificationConfiguration {
    fn from(c: NotificationConfig) -> Self {
        Self {
            status: Some(if c.enabled { "ENABLED" } else { "DISABLED" }.into()),
            destination: Some(DestinationConfig { uri: Some(c.destination_uri) }),
        }
    }
}

/// Check a requested configuration against the model, giving what the store keeps. Pure.
pub fn validate_config(c: NotificationConfiguration) -> ApiResult<NotificationConfig> {
    const M: &str = "NotificationConfiguration";
    let status = validate::required(c.status, &format!("{M}.Status"))?;
    let status = validate::one_of(&status, &format!("{M}.Status"), validate::CONFIGURATION_STATUSES)?;
    let destination = validate::required(c.destination, &format!("{M}.DestinationConfig"))?;
    let uri = validate::required(destination.uri, &format!("{M}.DestinationConfig.Uri"))?;
    validate::destination_uri(&uri, &format!("{M}.DestinationConfig.Uri"))?;
    Ok(NotificationConfig { enabled: status == "ENABLED", destination_uri: uri })
}

impl StreamConfiguration for NotificationConfig {
    type Wire = NotificationConfiguration;
    const NAME: &'static str = "notification configuration";
    fn validate(wire: NotificationConfiguration, _core: &Core) -> ApiResult<Self> {
        validate_config(wire)
    }
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn load<'a>(meta: &'a dyn MetaStore, stream_arn: &'a str) -> Stored<'a, Option<Self>> {
        meta.notification_config(stream_arn)
    }
    fn store<'a>(meta: &'a dyn MetaStore, stream_arn: &'a str, config: Option<&'a Self>) -> Stored<'a, ()> {
        meta.set_notification_config(stream_arn, config)
    }
}

/// `DescribeNotificationConfiguration` output: `{}` for a stream without a configuration.
#[derive(Debug, Serialize)]
pub struct DescribeOutput {
    #[serde(rename = "NotificationConfiguration", skip_serializing_if = "Option::is_none")]
    config: Option<NotificationConfiguration>,
}

/// `POST /describeNotificationConfiguration` → `{NotificationConfiguration?}`.
#[tracing::instrument(name = "DescribeNotificationConfiguration", skip_all, fields(stream = tracing::field::Empty))]
pub async fn describe(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<DescribeOutput>> {
    let op = "DescribeNotificationConfiguration";
    let config = configuration::describe::<NotificationConfig>(&st, &principal, op, &body).await?;
    Ok(Json(DescribeOutput { config }))
}

/// `UpdateNotificationConfiguration` input.
#[derive(Debug, Deserialize)]
pub struct UpdateInput {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(rename = "NotificationConfiguration")]
    config: Option<NotificationConfiguration>,
}

/// `POST /updateNotificationConfiguration` → `{}`; sets the configuration, or removes it
/// when the request carries none.
#[tracing::instrument(name = "UpdateNotificationConfiguration", skip_all, fields(stream = tracing::field::Empty))]
pub async fn update(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let input: UpdateInput = body::parse(&body)?;
    let op = "UpdateNotificationConfiguration";
    configuration::update::<NotificationConfig>(&st, &principal, op, &input.stream, input.config).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> ApiResult<NotificationConfig> {
        validate_config(body::parse(json.as_bytes())?)
    }

    #[test]
    fn configurations_are_checked_against_the_model() {
        let topic = "arn:aws:sns:us-west-2:123456789012:doorbell";
        let ok = check(&format!(r#"{{"Status":"DISABLED","DestinationConfig":{{"Uri":"{topic}"}}}}"#)).expect("valid");
        assert_eq!(ok, NotificationConfig { enabled: false, destination_uri: topic.into() });
        let wire = serde_json::to_value(NotificationConfiguration::from(ok)).expect("json");
        assert_eq!(wire, serde_json::json!({"Status": "DISABLED", "DestinationConfig": {"Uri": topic}}));
        for bad in [
            r#"{"DestinationConfig":{"Uri":"s3://b"}}"#,
            r#"{"Status":"enabled","DestinationConfig":{"Uri":"s3://b"}}"#,
            r#"{"Status":"ENABLED"}"#,
            r#"{"Status":"ENABLED","DestinationConfig":{}}"#,
            r#"{"Status":"ENABLED","DestinationConfig":{"Uri":"topic"}}"#,
            r#"{"Status":"ENABLED","DestinationConfig":{"Uri":"s3://b/*"}}"#,
        ] {
            assert_eq!(check(bad).expect_err(bad).code, "InvalidArgumentException", "{bad}");
        }
    }
}
