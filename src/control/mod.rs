//! The KVS control plane (service `kinesisvideo`, API 2017-09-30), one file per
//! operation group:
//!
//! | file | operations |
//! |---|---|
//! | [`channels`] | Create/Describe/List/Update/DeleteSignalingChannel |
//! | [`streams`] | Create/Describe/List/Update/DeleteStream, UpdateDataRetention |
//! | [`endpoints`] | GetSignalingChannelEndpoint, GetDataEndpoint |
//! | [`media_storage`] | Update/DescribeMediaStorageConfiguration, DescribeMappedResourceConfiguration |
//! | [`tags`] | Tag/Untag/ListTagsForResource, Tag/Untag/ListTagsForStream |
//!
//! Every handler follows the same steps: parse the body ([`body`]), check the model's
//! constraints ([`validate`], [`pagination`]), find the resource, authorize
//! `kinesisvideo:<Operation>` on its ARN, apply the per-resource rate quota, then act
//! through [`crate::meta::MetaStore`]. The edge has already authenticated the caller
//! and applied the account-wide quota.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::routing::post;

use crate::arn::CreationClock;
use crate::auth::Principal;
use crate::edge;
use crate::error::{ApiError, ApiResult};
use crate::meta::{MetaError, Quota};
use crate::state::AppState;

pub mod body;
pub mod channels;
pub mod endpoints;
pub mod media_storage;
pub mod pagination;
pub mod streams;
pub mod tags;
pub mod validate;

/// Routes of every control-plane operation (`POST` fixed paths; case-sensitive, and the
/// channel tag operations really are capitalised).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/createSignalingChannel", post(channels::create))
        .route("/describeSignalingChannel", post(channels::describe))
        .route("/listSignalingChannels", post(channels::list))
        .route("/updateSignalingChannel", post(channels::update))
        .route("/deleteSignalingChannel", post(channels::delete))
        .route("/getSignalingChannelEndpoint", post(endpoints::get_signaling_channel_endpoint))
        .route("/createStream", post(streams::create))
        .route("/describeStream", post(streams::describe))
        .route("/listStreams", post(streams::list))
        .route("/updateStream", post(streams::update))
        .route("/deleteStream", post(streams::delete))
        .route("/updateDataRetention", post(streams::update_data_retention))
        .route("/getDataEndpoint", post(endpoints::get_data_endpoint))
        .route("/updateMediaStorageConfiguration", post(media_storage::update))
        .route("/describeMediaStorageConfiguration", post(media_storage::describe))
        .route("/describeMappedResourceConfiguration", post(media_storage::describe_mapped_resource))
        .route("/TagResource", post(tags::tag_resource))
        .route("/UntagResource", post(tags::untag_resource))
        .route("/ListTagsForResource", post(tags::list_tags_for_resource))
        .route("/tagStream", post(tags::tag_stream))
        .route("/untagStream", post(tags::untag_stream))
        .route("/listTagsForStream", post(tags::list_tags_for_stream))
        .method_not_allowed_fallback(wrong_method)
}

/// Every operation is a `POST`; other methods on its path get the KVS error shape
/// instead of a bare 405.
async fn wrong_method(method: http::Method, uri: http::Uri) -> ApiError {
    ApiError::new(
        "UnknownOperationException",
        http::StatusCode::NOT_FOUND,
        format!("no operation at {method} {}", uri.path()),
    )
}

/// Issues the creation millis of new ARNs (strictly increasing in this process).
static CREATION_CLOCK: CreationClock = CreationClock::new();

/// The creation time, in epoch millis, of a resource created now.
pub(crate) fn creation_millis() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    CREATION_CLOCK.next(u64::try_from(now).unwrap_or(u64::MAX))
}

/// How the model says an operation refuses an unauthorized caller: channel operations
/// with `AccessDeniedException`, stream operations with `NotAuthorizedException` (both 401).
pub(crate) type Deny = fn(String) -> ApiError;

/// Policy check of `kinesisvideo:<op>` on `resource`.
pub(crate) fn authorize(principal: &Principal, op: &str, resource: &str, deny: Deny) -> ApiResult<()> {
    edge::authorize(principal, &format!("kinesisvideo:{op}"), resource, deny)
}

/// Per-resource rate quota of `op` (kvs-api §2.2), if it has one.
pub(crate) fn throttle(st: &AppState, op: &str, resource: &str) -> ApiResult<()> {
    match st.config.limits.control_plane(op).resource {
        Some(rate) => st.throttle.check_resource(op, rate, resource),
        None => Ok(()),
    }
}

/// The empty output structure (`{}`) of Update*/Delete*/Tag*/Untag* operations.
pub(crate) fn empty() -> Json<serde_json::Value> {
    Json(serde_json::json!({}))
}

/// Map a metadata failure to the KVS error an operation answers with.
pub(crate) fn meta_error(e: MetaError) -> ApiError {
    match e {
        MetaError::NotFound(what) => ApiError::not_found(format!("The requested {what} was not found")),
        MetaError::AlreadyExists(what) => ApiError::resource_in_use(format!("The {what} already exists")),
        MetaError::VersionMismatch { resource, given } => {
            ApiError::version_mismatch(format!("The supplied version {given} is not the latest version of {resource}"))
        }
        MetaError::InUse(message) => ApiError::resource_in_use(message),
        MetaError::NoDataRetention(stream) => no_data_retention(format!(
            "The stream {stream} has no data retention; media storage needs DataRetentionInHours > 0"
        )),
        MetaError::QuotaExceeded(quota) => quota_error(quota),
        e
        @ (MetaError::Locked { .. } | MetaError::Corrupt { .. } | MetaError::Open { .. } | MetaError::Database(_)) => {
            tracing::error!(error = %e, "metadata store failure");
            ApiError::internal("Internal metadata store failure")
        }
    }
}

fn quota_error(quota: Quota) -> ApiError {
    use http::StatusCode;
    match quota {
        Quota::Channels(max) => ApiError::new(
            "AccountChannelLimitExceededException",
            StatusCode::BAD_REQUEST,
            format!("You have reached the maximum limit of {max} signaling channels for this account"),
        ),
        Quota::Streams(max) => ApiError::new(
            "AccountStreamLimitExceededException",
            StatusCode::BAD_REQUEST,
            format!("You have reached the maximum limit of {max} streams for this account"),
        ),
        Quota::Tags(max) => tags_limit(max),
        // UpdateMediaStorageConfiguration's modeled errors offer no account-limit shape;
        // ClientLimitExceededException is its only "limit" error, while
        // ResourceInUseException means *this* channel or stream is busy and would send
        // the caller looking at the wrong resource. Clients do not retry it (it is not in
        // the SDKs' throttling-code lists), so a quota refusal does not loop.
        Quota::StorageEnabledChannels(max) => ApiError::client_limit(format!(
            "You have reached the maximum limit of {max} signaling channels with media storage enabled for this account"
        )),
    }
}

/// 400 `TagsPerResourceExceededLimitException`.
pub(crate) fn tags_limit(max: usize) -> ApiError {
    ApiError::new(
        "TagsPerResourceExceededLimitException",
        http::StatusCode::BAD_REQUEST,
        format!("A resource can have at most {max} tags"),
    )
}

/// 400 `NoDataRetentionException`.
pub(crate) fn no_data_retention(message: String) -> ApiError {
    ApiError::new("NoDataRetentionException", http::StatusCode::BAD_REQUEST, message)
}

/// The ARN a policy is checked against when the named resource does not exist: the
/// ARN it would have, with `*` for the creation time. A policy on `channel/cam-*`
/// therefore still lets its holder learn that `cam-9` is missing (the KVS C SDK relies
/// on that 404 to create the channel), while a policy without access gets a refusal.
pub(crate) fn missing_resource_arn(st: &AppState, kind: &str, name: &str) -> String {
    format!("arn:aws:kinesisvideo:{}:{}:{kind}/{name}/*", st.config.region, st.config.account_id)
}
