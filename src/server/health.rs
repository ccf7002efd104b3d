//! Liveness and readiness for load balancers (unsigned, like `/metrics`).
//!
//! - `GET /healthz`: the process serves HTTP (200 `ok`).
//! - `GET /readyz`: every service this node depends on answers: the metadata database, the
//!   cluster bus (when configured) and the S3 backend (when configured). 200 when all do,
//!   else 503; the JSON body names each check's state, so an operator sees which failed.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let metadata = match tokio::time::timeout(CHECK_TIMEOUT, state.core.meta.ping()).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => format!("error: {e}"),
        Err(_) => "error: no answer within 2 s".to_string(),
    };
    let bus = match state.signaling.bus_connected() {
        None => "off".to_string(),
        Some(true) => "ok".to_string(),
        Some(false) => "error: disconnected".to_string(),
    };
    let s3 = match tokio::time::timeout(CHECK_TIMEOUT, state.core.store.check_remote()).await {
        Ok(None) => "off".to_string(),
        Ok(Some(Ok(()))) => "ok".to_string(),
        Ok(Some(Err(e))) => format!("error: {e}"),
        Err(_) => "error: no answer within 2 s".to_string(),
    };
    let ready = [&metadata, &bus, &s3].iter().all(|s| *s == "ok" || *s == "off");
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "ready": ready,
        "node": state.core.config.node_id,
        "metadata": metadata,
        "bus": bus,
        "s3": s3,
    });
    (status, Json(body))
}
