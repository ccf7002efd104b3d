//! Finding the channel or stream a request names: check the name/ARN syntax, look it up,
//! authorize the operation on it and take its per-resource rate token. A missing resource
//! is authorized against the ARN it would have (see [`missing_resource_arn`]) before the
//! 404, so a caller learns nothing about resources its policy does not cover.

use tracing::Span;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::meta::{ChannelRecord, StreamRecord};

use super::access::{Deny, authorize, missing_resource_arn, throttle};
use super::{Core, validate};

/// Stream operations refuse unauthorized callers with 401 `NotAuthorizedException`.
pub const STREAM_DENY: Deny = ApiError::not_authorized;
/// Channel operations refuse unauthorized callers with 403 `AccessDeniedException`.
pub const CHANNEL_DENY: Deny = ApiError::access_denied;

/// How a bad `StreamARN` is refused: most operations say `InvalidArgumentException`;
/// Tag/Untag/ListTagsForStream model `InvalidResourceFormatException` for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArnFormatError {
    InvalidArgument,
    InvalidResourceFormat,
}

/// Find the stream a request names by `StreamARN` or `StreamName`, check that the
/// caller may run `op` on it (`deny` builds the refusal), and take its rate token.
pub async fn stream(
    core: &Core,
    principal: &Principal,
    op: &str,
    deny: Deny,
    name: Option<&str>,
    arn: Option<&str>,
    arn_error: ArnFormatError,
) -> ApiResult<StreamRecord> {
    if let Some(arn) = arn {
        validate::resource_arn(arn, "StreamARN").map_err(|e| match arn_error {
            ArnFormatError::InvalidArgument => e,
            ArnFormatError::InvalidResourceFormat => {
                ApiError::new("InvalidResourceFormatException", http::StatusCode::BAD_REQUEST, e.message)
            }
        })?;
    }
    if let Some(name) = name {
        validate::name(name, "StreamName")?;
    }
    let found = match (arn, name) {
        (Some(arn), _) => core.meta.stream_by_arn(arn).await,
        (None, Some(name)) => core.meta.stream_by_name(name).await,
        (None, None) => return Err(ApiError::invalid_argument("Either StreamName or StreamARN must be specified")),
    }?;
    match found {
        Some(stream) => {
            Span::current().record("stream", stream.name.as_str());
            authorize(principal, op, &stream.arn, deny)?;
            if name.is_some_and(|n| n != stream.name) {
                return Err(ApiError::invalid_argument("StreamName and StreamARN name different streams"));
            }
            throttle(core, op, &stream.arn)?;
            Ok(stream)
        }
        None => {
            let resource = match (arn, name) {
                (Some(arn), _) => arn.to_string(),
                (None, name) => missing_resource_arn(core, "stream", name.unwrap_or_default()),
            };
            authorize(principal, op, &resource, deny)?;
            Err(ApiError::not_found("The requested stream is not found or not active"))
        }
    }
}

/// Find the channel a request names by `ChannelARN` or `ChannelName`, check that the
/// caller may run `op` on it, and take its per-channel rate token.
pub async fn channel(
    core: &Core,
    principal: &Principal,
    op: &str,
    name: Option<&str>,
    arn: Option<&str>,
) -> ApiResult<ChannelRecord> {
    if let Some(arn) = arn {
        validate::resource_arn(arn, "ChannelARN")?;
    }
    if let Some(name) = name {
        validate::name(name, "ChannelName")?;
    }
    let found = match (arn, name) {
        (Some(arn), _) => core.meta.channel_by_arn(arn).await,
        (None, Some(name)) => core.meta.channel_by_name(name).await,
        (None, None) => return Err(ApiError::invalid_argument("Either ChannelName or ChannelARN must be specified")),
    }?;
    match found {
        Some(channel) => {
            Span::current().record("channel", channel.name.as_str());
            authorize(principal, op, &channel.arn, CHANNEL_DENY)?;
            if name.is_some_and(|n| n != channel.name) {
                return Err(ApiError::invalid_argument("ChannelName and ChannelARN name different channels"));
            }
            throttle(core, op, &channel.arn)?;
            Ok(channel)
        }
        None => {
            let resource = match (arn, name) {
                (Some(arn), _) => arn.to_string(),
                (None, name) => missing_resource_arn(core, "channel", name.unwrap_or_default()),
            };
            authorize(principal, op, &resource, CHANNEL_DENY)?;
            Err(ApiError::not_found("The requested channel is not found or not active"))
        }
    }
}
