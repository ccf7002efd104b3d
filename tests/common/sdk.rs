//! Helpers for tests that drive reel with the official `aws-sdk-kinesisvideo` client: the
//! error of a failed call, the raw body of a response, and a request body replaced by hand.
//!
//! Use from a test file with `#[macro_use] #[path = "common/sdk.rs"] mod sdk;` (the macro
//! [`assert_fails!`] is then in scope below the declaration).
#![allow(dead_code, unused_macros)]

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use aws_sdk_kinesisvideo::client::customize::CustomizableOperation;
use aws_sdk_kinesisvideo::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_kinesisvideo::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::AfterDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};

/// The error code, HTTP status and message of a failed call; panics if it succeeded.
pub fn failure<T: Debug, E: ProvideErrorMetadata + Debug>(
    r: Result<T, SdkError<E, HttpResponse>>,
) -> (String, u16, String) {
    let e = r.expect_err("call should fail");
    let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    (e.code().unwrap_or("<no code>").to_string(), status, e.message().unwrap_or_default().to_string())
}

/// Assert a call (a future of an SDK result) fails with `code` and `status`; evaluates to
/// its message.
macro_rules! assert_fails {
    ($call:expr, $code:expr, $status:expr) => {{
        let (code, status, message) = $crate::sdk::failure($call.await);
        assert_eq!((code.as_str(), status), ($code, $status), "{}: {message}", stringify!($call));
        message
    }};
}

/// Records the raw body of every response it sees.
#[derive(Debug, Clone, Default)]
pub struct CaptureBody(Arc<Mutex<Vec<u8>>>);

impl Intercept for CaptureBody {
    fn name(&self) -> &'static str {
        "CaptureBody"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(bytes) = context.response().body().bytes() {
            *self.0.lock().expect("lock") = bytes.to_vec();
        }
        Ok(())
    }
}

impl CaptureBody {
    /// The last response body seen, parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.0.lock().expect("lock")).expect("response body is JSON")
    }
}

/// `op` with a [`CaptureBody`] on it, and the capture, to read once `op` has been sent.
pub fn capturing<T, E, B>(op: CustomizableOperation<T, E, B>) -> (CustomizableOperation<T, E, B>, CaptureBody) {
    let capture = CaptureBody::default();
    (op.interceptor(capture.clone()), capture)
}

/// Replace the serialized request body (before signing) with `body`.
pub fn with_body(body: impl Into<String>) -> impl Fn(&mut HttpRequest) + Send + Sync {
    let body = body.into();
    move |req| {
        *req.body_mut() = body.clone().into();
        req.headers_mut().insert("content-length", body.len().to_string());
    }
}
