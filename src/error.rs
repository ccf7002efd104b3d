//! The KVS error shape, emitted once at the API edge.
//!
//! Every API answers failures as restJson1 errors: the model's HTTP status, an
//! `x-amzn-ErrorType` header, an `x-amzn-RequestId` header and a JSON body
//! `{"__type","message","Message"}` (docs/kvs-wire.md §1.2). Libraries return their own typed
//! errors; handlers map them into [`ApiError`] here, and nowhere else.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// A modeled KVS error: shape name, HTTP status and a human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// Shape name, e.g. `ResourceNotFoundException`; becomes `__type` and `x-amzn-ErrorType`.
    pub code: &'static str,
    /// HTTP status from the service model (clients such as the C SDK act on it).
    pub status: StatusCode,
    /// Human-readable explanation, sent as both `message` and `Message`.
    pub message: String,
}

impl ApiError {
    /// Any modeled error with an explicit status.
    pub fn new(code: &'static str, status: StatusCode, message: impl Into<String>) -> Self {
        Self { code, status, message: message.into() }
    }

    /// 400 `InvalidArgumentException`: a parameter breaks a documented constraint.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new("InvalidArgumentException", StatusCode::BAD_REQUEST, message)
    }

    /// 404 `ResourceNotFoundException`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new("ResourceNotFoundException", StatusCode::NOT_FOUND, message)
    }

    /// 400 `ResourceInUseException`: name taken, or the resource is busy/mapped.
    pub fn resource_in_use(message: impl Into<String>) -> Self {
        Self::new("ResourceInUseException", StatusCode::BAD_REQUEST, message)
    }

    /// 400 `VersionMismatchException`: `CurrentVersion` is not the latest.
    pub fn version_mismatch(message: impl Into<String>) -> Self {
        Self::new("VersionMismatchException", StatusCode::BAD_REQUEST, message)
    }

    /// 400 `ClientLimitExceededException`: throttled or over a client quota.
    pub fn client_limit(message: impl Into<String>) -> Self {
        Self::new("ClientLimitExceededException", StatusCode::BAD_REQUEST, message)
    }

    /// 401 `AccessDeniedException` (control plane status per the model).
    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new("AccessDeniedException", StatusCode::UNAUTHORIZED, message)
    }

    /// 401 `NotAuthorizedException` (stream and data-plane operations).
    pub fn not_authorized(message: impl Into<String>) -> Self {
        Self::new("NotAuthorizedException", StatusCode::UNAUTHORIZED, message)
    }

    /// 500 `InternalFailure`: a server-side fault (database, disk); never a client error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("InternalFailure", StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 400 `SerializationException`: the body is not the JSON the operation expects.
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new("SerializationException", StatusCode::BAD_REQUEST, message)
    }

    /// The error another node of the cluster answered, by its code and status; a code reel
    /// does not know becomes an `InternalFailure` naming it.
    pub fn relayed(code: &str, status: u16, message: String) -> Self {
        const CODES: &[&str] = &[
            "AccessDeniedException",
            "ClientLimitExceededException",
            "InternalFailure",
            "InvalidArgumentException",
            "NoDataRetentionException",
            "NotAuthorizedException",
            "ResourceInUseException",
            "ResourceNotFoundException",
            "StreamEdgeConfigurationNotFoundException",
            "VersionMismatchException",
        ];
        match (CODES.iter().find(|c| **c == code), StatusCode::from_u16(status)) {
            (Some(code), Ok(status)) => Self::new(code, status, message),
            _ => Self::internal(format!("another node answered {code} ({status}): {message}")),
        }
    }

    /// The JSON body of the error.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "__type": self.code, "message": self.message, "Message": self.message })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, axum::Json(self.body())).into_response();
        res.headers_mut().insert("x-amzn-ErrorType", HeaderValue::from_static(self.code));
        res
    }
}

impl From<reel_storage::StoreError> for ApiError {
    /// Media store failures as the API reports them: missing things are 404, a deleted
    /// stream is `ResourceNotFoundException`, server-side faults (disk, S3, corruption) are
    /// 500 so clients retry instead of blaming their request.
    fn from(e: reel_storage::StoreError) -> Self {
        use reel_storage::StoreError as E;
        match &e {
            E::StreamNotFound { .. } | E::StreamDeleted { .. } => ApiError::not_found(e.to_string()),
            E::FragmentNotFound { .. } => ApiError::not_found(e.to_string()),
            E::InvalidArgument(_) => ApiError::invalid_argument(e.to_string()),
            E::FragmentInProgress { .. } => ApiError::resource_in_use(e.to_string()),
            _ => {
                tracing::error!(error = %e, "media store failure");
                ApiError::internal(e.to_string())
            }
        }
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_has_kvs_shape() {
        let res = ApiError::not_found("no such channel").into_response();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert_eq!(res.headers()["x-amzn-ErrorType"], "ResourceNotFoundException");
    }
}
