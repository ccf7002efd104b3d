//! The API edge: what every request passes through before and after its handler.
//!
//! - [`stamp`] (all routes): request id, `x-amzn-RequestId` and a correct `Date` header
//!   (the KVS C SDK computes clock skew from it).
//! - [`signed_api`] (every SigV4-authenticated API): buffers the body, authenticates it,
//!   refuses a caller whose policy allows the operation nowhere, applies the account-level
//!   rate quota, then records metrics and the audit line.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Core, access};
use crate::error::ApiError;
use crate::observe::audit::AuditEvent;
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
pub async fn signed_api(State(st): State<Core>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let received = chrono::Utc::now();
    let ctx = req.extensions().get::<RequestContext>().cloned().unwrap_or_else(|| RequestContext {
        request_id: uuid::Uuid::new_v4().to_string(),
        source: None,
        operation: operation_name(req.method().as_str(), req.uri().path(), req.uri().query()),
    });
    let (mut parts, body) = req.into_parts();
    let limit = st.config.limits.max_request_body_bytes;
    let (principal, body, res) = match axum::body::to_bytes(body, limit).await {
        Err(_) => (
            None,
            Default::default(),
            Some(ApiError::invalid_argument(format!("request body exceeds {limit} bytes")).into_response()),
        ),
        Ok(body) => match st.auth.authenticate(&parts.method, &parts.uri, &parts.headers, &body, SystemTime::now()) {
            Err(e) => {
                tracing::info!(operation = %ctx.operation, error = %e, "authentication failed");
                (None, body, Some(ApiError::from(e).into_response()))
            }
            Ok(p) => {
                // A caller that may not run the operation on any resource is refused before
                // it takes a token from the account-wide quota that other keys share.
                let refused = st.config.limits.control_plane_tps.get(&ctx.operation).and_then(|lim| {
                    access::precheck(&p, &ctx.operation).err().or_else(|| {
                        st.throttle
                            .check(&ctx.operation, crate::limits::TpsLimit { resource: None, ..*lim }, None)
                            .err()
                    })
                });
                (Some(p), body, refused.map(IntoResponse::into_response))
            }
        },
    };
    let res = match (res, &principal) {
        (Some(res), _) => res,
        (None, Some(p)) => {
            parts.extensions.insert(p.clone());
            next.run(Request::from_parts(parts, Body::from(body.clone()))).await
        }
        (None, None) => ApiError::internal("authentication produced no principal").into_response(),
    };
    let error_code = res.headers().get("x-amzn-ErrorType").and_then(|v| v.to_str().ok()).map(str::to_owned);
    metrics::record_call(&ctx.operation, error_code.as_deref(), started.elapsed());
    st.audit.record(AuditEvent {
        time: received.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        access_key_id: principal.map(|p| p.access_key_id),
        source_ip: ctx.source.map(|s| s.ip().to_string()).unwrap_or_default(),
        operation: ctx.operation,
        request_parameters: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        status: res.status().as_u16(),
        outcome: error_code.unwrap_or_else(|| "Success".into()),
        request_id: ctx.request_id,
    });
    res
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
        assert_eq!(operation_name("POST", "/v1/get-ice-server-config", None), "GetIceServerConfig");
        assert_eq!(operation_name("GET", "/", Some("X-Amz-ChannelARN=a&X-Amz-ClientId=b")), "ConnectAsViewer");
        assert_eq!(operation_name("GET", "/", Some("X-Amz-ChannelARN=a")), "ConnectAsMaster");
        assert_eq!(operation_name("GET", "/hls/v1/getHLSMasterPlaylist.m3u8", None), "GetHLSMasterPlaylist");
    }
}
