//! Prometheus metrics: per operation, requests, `Failure` and `Latency` (the KVS
//! service metrics), rendered at `GET /metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests per operation and outcome (`ok` / error code).
pub const REQUESTS: &str = "reel_requests_total";
/// KVS `Failure`: failed calls per operation (Failure = failures / requests).
pub const FAILURES: &str = "reel_failure_total";
/// KVS `Latency`: request receipt to response, in milliseconds.
pub const LATENCY_MS: &str = "reel_latency_ms";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the process-wide recorder once and return the handle that renders it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_ms".into()),
                    &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0],
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (embedding, tests): then this
            // handle renders nothing, which is the honest answer.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Record one API call.
pub fn record_call(operation: &str, error_code: Option<&str>, latency: Duration) {
    let operation = operation.to_owned();
    let outcome = error_code.unwrap_or("ok").to_owned();
    metrics::counter!(REQUESTS, "operation" => operation.clone(), "outcome" => outcome).increment(1);
    metrics::counter!(FAILURES, "operation" => operation.clone()).increment(u64::from(error_code.is_some()));
    metrics::histogram!(LATENCY_MS, "operation" => operation).record(latency.as_secs_f64() * 1000.0);
}
