//! Liveness and readiness for load balancers (unsigned, like `/metrics`).
//!
//! - `GET /healthz`: the process serves HTTP (200 `ok`).
//! - `GET /readyz`: every service this node depends on answers: the metadata database, the
//!   cluster bus (when configured) and the S3 backend (when configured). 200 when all do,
//!   else 503; the JSON body names each check's state, so an operator sees which failed.
//!   A result is reused for [`READY_TTL`]: load balancers check often (reel-load's HAProxy
//!   every 200 ms per node), and each round of checks is a database round trip and an S3
//!   request, which S3 bills.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a round of readiness checks answers `/readyz`. A dependency that fails is
/// reported at most this much later (HAProxy's `fall 2` at 200 ms: out of rotation within
/// ≈ 1.4 s).
pub const READY_TTL: Duration = Duration::from_secs(1);

/// The latest `/readyz` answer and when it was computed. Concurrent requests wait for the
/// round in progress and share its answer.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<tokio::sync::Mutex<Option<(Instant, StatusCode, Value)>>>);

/// `GET /healthz`.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let mut latest = state.readiness.0.lock().await;
    if let Some((at, status, body)) = latest.as_ref()
        && at.elapsed() < READY_TTL
    {
        return (*status, Json(body.clone()));
    }
    let (status, body) = check(&state).await;
    *latest = Some((Instant::now(), status, body.clone()));
    (status, Json(body))
}

/// One round of readiness checks: the metadata database, the bus and S3.
async fn check(state: &AppState) -> (StatusCode, Value) {
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
    (status, body)
}
