//! Metadata failures and quota refusals as the KVS errors operations answer with.

use http::StatusCode;

use crate::error::ApiError;
use crate::meta::{MetaError, Quota};

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::NotFound(what) => ApiError::not_found(format!("The requested {what} was not found")),
            MetaError::AlreadyExists(what) => ApiError::resource_in_use(format!("The {what} already exists")),
            MetaError::VersionMismatch { resource, given } => ApiError::version_mismatch(format!(
                "The supplied version {given} is not the latest version of {resource}"
            )),
            MetaError::InUse(message) => ApiError::resource_in_use(message),
            MetaError::NoDataRetention(stream) => no_data_retention(format!(
                "The stream {stream} has no data retention; this configuration needs DataRetentionInHours > 0"
            )),
            MetaError::QuotaExceeded(quota) => quota_error(quota),
            MetaError::LeaseLost { stream, .. } => {
                ApiError::resource_in_use(format!("The storage session of stream {stream} was replaced"))
            }
            e @ (MetaError::Locked { .. }
            | MetaError::Corrupt { .. }
            | MetaError::Open { .. }
            | MetaError::Database(_)) => {
                tracing::error!(error = %e, "metadata store failure");
                ApiError::internal("Internal metadata store failure")
            }
        }
    }
}

/// The refusal of an account quota counted by the metadata store.
fn quota_error(quota: Quota) -> ApiError {
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
pub fn tags_limit(max: usize) -> ApiError {
    ApiError::new(
        "TagsPerResourceExceededLimitException",
        StatusCode::BAD_REQUEST,
        format!("A resource can have at most {max} tags"),
    )
}

/// 400 `NoDataRetentionException`.
pub fn no_data_retention(message: String) -> ApiError {
    ApiError::new("NoDataRetentionException", StatusCode::BAD_REQUEST, message)
}
