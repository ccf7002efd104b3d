//! The API edge: what every request passes through before and after its handler.
//!
//! - [`stamp`] (all routes): request id, `x-amzn-RequestId` and a correct `Date` header
//!   (the KVS C SDK computes clock skew from it).
//! - [`signed_api`] (every SigV4-authenticated API): checks what it can without the body,
//!   reads the body within its size and time limits, authenticates it, refuses a caller whose policy allows the operation
//!   nowhere, applies the account-level rate quota, then records metrics and the (bounded) audit line.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Core, access};
use crate::auth::sigv4::Payload;
use crate::error::ApiError;
use crate::observe::audit::{AuditEvent, bounded_reason};
use crate::observe::metrics;

/// Per-request facts handlers and the audit log share.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Value of `x-amzn-RequestId`.
    pub request_id: String,
    /// Peer address of the connection.
    pub source: Option<SocketAddr>,
    /// KVS operation name derived from the route.
    pub operation: String,
}

/// Outer layer for every route: request id and `Date`.
pub async fn stamp(mut req: Request, next: Next) -> Response {
    let source = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let ctx = RequestContext {
        request_id: uuid::Uuid::new_v4().to_string(),
        source,
        operation: operation_name(req.method().as_str(), req.uri().path(), req.uri().query()),
    };
    req.extensions_mut().insert(ctx.clone());
    let mut res = next.run(req).await;
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        headers.insert("x-amzn-RequestId", v);
    }
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::now())) {
        headers.insert(http::header::DATE, v);
    }
    res
}

/// Layer for SigV4-authenticated APIs (control plane, signaling, storage, data plane).
///
/// Order: everything that needs no body ([`crate::auth::Authenticator::precheck`]: claims,
/// scope, time, key, session token) before a byte of the body is read; then the body,
/// within `max_request_body_bytes` and `body_read_timeout_ms`; then the signature over it,
/// the account quota and the handler. Refusals are audited without their body.
pub async fn signed_api(State(st): State<Core>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let received = chrono::Utc::now();
    let ctx = req.extensions().get::<RequestContext>().cloned().unwrap_or_else(|| RequestContext {
        request_id: uuid::Uuid::new_v4().to_string(),
        source: None,
        operation: operation_name(req.method().as_str(), req.uri().path(), req.uri().query()),
    });
    let (mut parts, body) = req.into_parts();
    match admit(&st, &ctx, &parts, body).await {
        Ok(Admitted { principal, params, body }) => {
            parts.extensions.insert(principal.clone());
            let res = next.run(Request::from_parts(parts, body)).await;
            finish(&st, ctx, started, received, Some(principal), params, None, res)
        }
        Err(Refused { principal, params, error }) => {
            let reason = Some(error.message.clone());
            finish(&st, ctx, started, received, principal, params, reason, error.into_response())
        }
    }
}

/// A request let through to its handler: who signed it, what is audited, its body.
struct Admitted {
    principal: crate::auth::Principal,
    params: serde_json::Value,
    body: Body,
}

/// A refused request: who signed it and what is audited, as far as it got, and why.
struct Refused {
    principal: Option<crate::auth::Principal>,
    params: serde_json::Value,
    error: ApiError,
}

/// The checks of [`signed_api`] in their order. A streaming upload's body is its media
/// (PutMedia): it is authenticated from the headers and passed on unread.
async fn admit(st: &Core, ctx: &RequestContext, parts: &http::request::Parts, body: Body) -> Result<Admitted, Refused> {
    let now = SystemTime::now();
    let refused = |principal, params, error| Refused { principal, params, error };
    if let Err(e) = st.auth.precheck(&parts.method, &parts.uri, &parts.headers, now) {
        return Err(refused(None, serde_json::Value::Null, auth_refusal(ctx, e)));
    }
    let streaming = crate::put_media::is_streaming_upload(&parts.method, parts.uri.path());
    let (buffered, upload) = if streaming {
        (bytes::Bytes::new(), Some(body))
    } else {
        let buffered = read_body(st, &parts.headers, body).await;
        (buffered.map_err(|e| refused(None, serde_json::Value::Null, e))?, None)
    };
    let payload = if streaming { Payload::Streamed } else { Payload::Buffered(&buffered) };
    let principal = st
        .auth
        .authenticate(&parts.method, &parts.uri, &parts.headers, payload, now)
        .map_err(|e| refused(None, serde_json::Value::Null, auth_refusal(ctx, e)))?;
    let params = if streaming {
        crate::put_media::audit_parameters(&parts.headers)
    } else {
        serde_json::from_slice(&buffered).unwrap_or(serde_json::Value::Null)
    };
    // A caller that may not run the operation on any resource is refused before it takes a
    // token from the account-wide quota that other keys share.
    let throttled = st.config.limits.control_plane_tps.get(&ctx.operation).and_then(|lim| {
        access::precheck(&principal, &ctx.operation).err().or_else(|| {
            st.throttle.check(&ctx.operation, crate::limits::TpsLimit { resource: None, ..*lim }, None).err()
        })
    });
    if let Some(e) = throttled {
        return Err(refused(Some(principal), params, e));
    }
    Ok(Admitted { principal, params, body: upload.unwrap_or_else(|| Body::from(buffered)) })
}

/// Metrics and the audit line of one finished request.
#[allow(clippy::too_many_arguments)]
fn finish(
    st: &Core,
    ctx: RequestContext,
    started: Instant,
    received: chrono::DateTime<chrono::Utc>,
    principal: Option<crate::auth::Principal>,
    request_parameters: serde_json::Value,
    reason: Option<String>,
    res: Response,
) -> Response {
    let error_code = res.headers().get("x-amzn-ErrorType").and_then(|v| v.to_str().ok()).map(str::to_owned);
    metrics::record_call(&ctx.operation, error_code.as_deref(), started.elapsed());
    st.audit.record(AuditEvent {
        time: received.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        access_key_id: principal.map(|p| p.access_key_id),
        source_ip: ctx.source.map(|s| s.ip().to_string()).unwrap_or_default(),
        operation: ctx.operation,
        request_parameters,
        status: res.status().as_u16(),
        outcome: error_code.unwrap_or_else(|| "Success".into()),
        request_id: ctx.request_id,
        reason: reason.map(|r| bounded_reason(&r)),
    });
    res
}

fn auth_refusal(ctx: &RequestContext, e: crate::auth::AuthError) -> ApiError {
    tracing::info!(operation = %ctx.operation, source = ?ctx.source, error = %e, "authentication failed");
    ApiError::from(e)
}

/// The body, at most `max_request_body_bytes`, arriving within `body_read_timeout_ms`.
async fn read_body(st: &Core, headers: &http::HeaderMap, body: Body) -> Result<bytes::Bytes, ApiError> {
    let limits = &st.config.limits;
    let max = limits.max_request_body_bytes;
    let too_large = || ApiError::invalid_argument(format!("request body exceeds {max} bytes"));
    let declared = headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let timeout = std::time::Duration::from_millis(limits.http.body_read_timeout_ms);
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, max)).await {
        Err(_) => Err(ApiError::new(
            "RequestTimeoutException",
            http::StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {} ms", timeout.as_millis()),
        )),
        Ok(Err(_)) => Err(too_large()),
        Ok(Ok(body)) => Ok(body),
    }
}

/// KVS operation name of a route: `/createStream` → `CreateStream`,
/// `/v1/get-ice-server-config` → `GetIceServerConfig`, the signaling WebSocket GET →
/// `ConnectAsMaster` / `ConnectAsViewer`.
pub fn operation_name(method: &str, path: &str, query: Option<&str>) -> String {
    if method == "GET" && query.is_some_and(|q| q.contains("X-Amz-ChannelARN")) {
        return if query.is_some_and(|q| q.contains("X-Amz-ClientId")) { "ConnectAsViewer" } else { "ConnectAsMaster" }
            .into();
    }
    let last = path.rsplit('/').next().unwrap_or_default();
    let last = last.split('.').next().unwrap_or_default();
    let mut out = String::with_capacity(last.len());
    let mut upper = true;
    for c in last.chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    if out.is_empty() { "Unknown".into() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names() {
        assert_eq!(operation_name("POST", "/createSignalingChannel", None), "CreateSignalingChannel");
        assert_eq!(operation_name("POST", "/TagResource", None), "TagResource");
        assert_eq!(operation_name("POST", "/joinStorageSessionAsViewer", None), "JoinStorageSessionAsViewer");
        assert_eq!(operation_name("POST", "/v1/get-ice-server-config", None), "GetIceServerConfig");
        assert_eq!(operation_name("GET", "/", Some("X-Amz-ChannelARN=a&X-Amz-ClientId=b")), "ConnectAsViewer");
        assert_eq!(operation_name("GET", "/", Some("X-Amz-ChannelARN=a")), "ConnectAsMaster");
        assert_eq!(operation_name("GET", "/hls/v1/getHLSMasterPlaylist.m3u8", None), "GetHLSMasterPlaylist");
    }
}
