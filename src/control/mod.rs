//! The KVS control plane (service `kinesisvideo`, API 2017-09-30), one file per
//! operation group:
//!
//! | file | operations |
//! |---|---|
//! | [`channels`] | Create/Describe/List/Update/DeleteSignalingChannel |
//! | [`streams`] | Create/Describe/List/Update/DeleteStream, UpdateDataRetention |
//! | [`endpoints`] | GetSignalingChannelEndpoint, GetDataEndpoint |
//! | [`media_storage`] | Update/DescribeMediaStorageConfiguration, DescribeMappedResourceConfiguration |
//! | [`stream_storage`] | Describe/UpdateStreamStorageConfiguration (the stream's storage tier) |
//! | [`image_generation`] | Describe/UpdateImageGenerationConfiguration (stored, no images made) |
//! | [`notification`] | Describe/UpdateNotificationConfiguration (stored, no SNS delivery) |
//! | [`edge`] | Describe/DeleteEdgeConfiguration, StartEdgeConfigurationUpdate, ListEdgeAgentConfigurations |
//! | [`tags`] | Tag/Untag/ListTagsForResource, Tag/Untag/ListTagsForStream |
//!
//! Every handler follows the same steps with the [`crate::api`] toolkit: parse the body
//! (`api::body`), check the model's constraints (`api::validate`, `api::pagination`),
//! find the resource, authorize `kinesisvideo:<Operation>` on its ARN and apply the
//! per-resource rate quota (`api::resolve`), then act through [`crate::meta::MetaStore`].
//! The edge has already authenticated the caller and applied the account-wide quota.
//! [`image_generation`] and [`notification`] share their steps (the private `configuration`).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::post;

use crate::api::Core;
use crate::arn::CreationClock;
use crate::error::ApiError;

pub mod channels;
mod configuration;
pub mod edge;
pub mod endpoints;
pub mod image_generation;
pub mod media_storage;
pub mod notification;
pub mod stream_storage;
pub mod streams;
pub mod tags;

/// Routes of every control-plane operation (`POST` fixed paths; case-sensitive, and the
/// channel tag operations really are capitalised).
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Core: FromRef<S>,
    crate::signaling::Signaling: FromRef<S>,
{
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
        .route("/describeStreamStorageConfiguration", post(stream_storage::describe))
        .route("/updateStreamStorageConfiguration", post(stream_storage::update))
        .route("/describeImageGenerationConfiguration", post(image_generation::describe))
        .route("/updateImageGenerationConfiguration", post(image_generation::update))
        .route("/describeNotificationConfiguration", post(notification::describe))
        .route("/updateNotificationConfiguration", post(notification::update))
        .route("/describeEdgeConfiguration", post(edge::describe))
        .route("/deleteEdgeConfiguration", post(edge::delete))
        .route("/startEdgeConfigurationUpdate", post(edge::start_update))
        .route("/listEdgeAgentConfigurations", post(edge::list))
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

/// The empty output structure (`{}`) of Update*/Delete*/Tag*/Untag* operations.
pub(crate) fn empty() -> Json<serde_json::Value> {
    Json(serde_json::json!({}))
}
