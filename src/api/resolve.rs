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
/// caller may run `op` on it (`deny` builds the refusal), and take its rate token. Media
/// reads reuse a record found moments ago ([`super::stream_cache::reuses_records`]).
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
    let now = std::time::Instant::now();
    let cached = super::stream_cache::reuses_records(op);
    let hit = match (arn, name) {
        _ if !cached => None,
        (Some(arn), _) => core.stream_cache.by_arn(arn, now),
        (None, Some(name)) => core.stream_cache.by_name(name, now),
        (None, None) => None,
    };
    if hit.is_some() {
        return authorize_found(core, principal, op, deny, name, arn, hit);
    }
    let found = match (arn, name) {
        (Some(arn), _) => core.meta.stream_by_arn(arn).await,
        (None, Some(name)) => core.meta.stream_by_name(name).await,
        (None, None) => return Err(ApiError::invalid_argument("Either StreamName or StreamARN must be specified")),
    }?;
    // Only what the database answered starts a TTL (a hit never extends one).
    if cached && let Some(record) = &found {
        core.stream_cache.put(record, now);
    }
    authorize_found(core, principal, op, deny, name, arn, found)
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
    authorize_found(core, principal, op, CHANNEL_DENY, name, arn, found)
}

/// What [`authorize_found`] needs to know of a channel or stream record.
trait Resource {
    /// The resource kind in ARNs, spans and messages (`stream`, `channel`).
    const KIND: &'static str;
    /// The member prefix in messages (`Stream` of `StreamName`/`StreamARN`).
    const MEMBER: &'static str;
    fn name(&self) -> &str;
    fn arn(&self) -> &str;
}

impl Resource for StreamRecord {
    const KIND: &'static str = "stream";
    const MEMBER: &'static str = "Stream";
    fn name(&self) -> &str {
        &self.name
    }
    fn arn(&self) -> &str {
        &self.arn
    }
}

impl Resource for ChannelRecord {
    const KIND: &'static str = "channel";
    const MEMBER: &'static str = "Channel";
    fn name(&self) -> &str {
        &self.name
    }
    fn arn(&self) -> &str {
        &self.arn
    }
}

/// The shared second half of [`stream`] and [`channel`]: authorize the found resource (or,
/// when missing, the ARN it would have), check that name and ARN agree, take its rate token.
fn authorize_found<R: Resource>(
    core: &Core,
    principal: &Principal,
    op: &str,
    deny: Deny,
    name: Option<&str>,
    arn: Option<&str>,
    found: Option<R>,
) -> ApiResult<R> {
    match found {
        Some(resource) => {
            Span::current().record(R::KIND, resource.name());
            authorize(principal, op, resource.arn(), deny)?;
            if name.is_some_and(|n| n != resource.name()) {
                let m = R::MEMBER;
                return Err(ApiError::invalid_argument(format!("{m}Name and {m}ARN name different {}s", R::KIND)));
            }
            throttle(core, op, resource.arn())?;
            Ok(resource)
        }
        None => {
            let missing = match (arn, name) {
                (Some(arn), _) => arn.to_string(),
                (None, name) => missing_resource_arn(core, R::KIND, name.unwrap_or_default()),
            };
            authorize(principal, op, &missing, deny)?;
            Err(ApiError::not_found(format!("The requested {} is not found or not active", R::KIND)))
        }
    }
}
