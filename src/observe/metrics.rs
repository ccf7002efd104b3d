//! Prometheus metrics: per operation, requests, `Failure` and `Latency` (the KVS
//! service metrics), rendered at `GET /metrics`.
//!
//! Per-session media series (`reel_storage_session_rx_*{session,mid}`) are kept apart in
//! [`record_ingress`]'s table and removed with [`remove_session`] when the session ends, so
//! they do not grow forever (the `metrics` facade cannot forget a series); [`render`]
//! appends them to the exporter's output. Totals across sessions go through the facade.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests per operation and outcome (`ok` / error code).
pub const REQUESTS: &str = "reel_requests_total";
/// KVS `Failure`: failed calls per operation (Failure = failures / requests).
pub const FAILURES: &str = "reel_failure_total";
/// KVS `Latency`: request receipt to response, in milliseconds.
pub const LATENCY_MS: &str = "reel_latency_ms";

/// NACKs sent by all storage sessions.
pub const NACKS_TOTAL: &str = "reel_storage_nacks_total";
/// Interarrival jitter reported by any storage session's stream, ms (histogram).
pub const JITTER_MS: &str = "reel_storage_jitter_ms";
/// Fraction of packets lost per report of any storage session's stream (histogram).
pub const LOSS_FRACTION: &str = "reel_storage_loss_fraction";

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
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(LOSS_FRACTION.into()),
                        &[0.0, 0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0],
                    )
                })
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

/// One str0m ingress stats report of a session's stream (absolute values).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IngressSample {
    /// RTP packets received, retransmissions included.
    pub packets: u64,
    /// Bytes received.
    pub bytes: u64,
    /// NACKs sent.
    pub nacks: u64,
    /// PLIs sent.
    pub plis: u64,
    /// Interarrival jitter, ms.
    pub jitter_ms: f64,
    /// Fraction of packets lost (last receiver report).
    pub loss: Option<f32>,
}

static SESSIONS: Mutex<BTreeMap<(u64, String), IngressSample>> = Mutex::new(BTreeMap::new());

/// Records a session stream's stats: its per-session series, and the totals (`new_nacks`
/// NACKs since its previous report, jitter and loss histograms).
pub fn record_ingress(session: u64, mid: &str, sample: IngressSample, new_nacks: u64) {
    metrics::counter!(NACKS_TOTAL).increment(new_nacks);
    metrics::histogram!(JITTER_MS).record(sample.jitter_ms);
    if let Some(loss) = sample.loss {
        metrics::histogram!(LOSS_FRACTION).record(f64::from(loss));
    }
    if let Ok(mut t) = SESSIONS.lock() {
        t.insert((session, mid.to_owned()), sample);
    }
}

/// Forgets an ended session's per-session series.
pub fn remove_session(session: u64) {
    if let Ok(mut t) = SESSIONS.lock() {
        t.retain(|(s, _), _| *s != session);
    }
}

/// Number of sessions with per-session series (for tests).
pub fn session_series_count(session: u64) -> usize {
    SESSIONS.lock().map(|t| t.keys().filter(|(s, _)| *s == session).count()).unwrap_or(0)
}

/// The exporter's output followed by the live sessions' series.
pub fn render(handle: &PrometheusHandle) -> String {
    let mut out = handle.render();
    let Ok(t) = SESSIONS.lock() else { return out };
    if t.is_empty() {
        return out;
    }
    type Field = fn(&IngressSample) -> Option<f64>;
    let fields: [(&str, &str, Field); 6] = [
        ("reel_storage_session_rx_packets", "RTP packets received", |s| Some(s.packets as f64)),
        ("reel_storage_session_rx_bytes", "bytes received", |s| Some(s.bytes as f64)),
        ("reel_storage_session_nacks", "NACKs sent", |s| Some(s.nacks as f64)),
        ("reel_storage_session_plis", "PLIs sent", |s| Some(s.plis as f64)),
        ("reel_storage_session_jitter_ms", "interarrival jitter, ms", |s| Some(s.jitter_ms)),
        ("reel_storage_session_loss_fraction", "fraction lost", |s| s.loss.map(f64::from)),
    ];
    for (name, help, get) in fields {
        let _ = writeln!(out, "# HELP {name} Per storage session: {help}.\n# TYPE {name} gauge");
        for ((session, mid), sample) in t.iter() {
            if let Some(v) = get(sample) {
                let _ = writeln!(out, "{name}{{session=\"{session}\",mid=\"{mid}\"}} {v}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_series_are_removed_when_the_session_ends() {
        let id = 9_000_001;
        record_ingress(id, "0", IngressSample { packets: 5, jitter_ms: 1.5, ..Default::default() }, 0);
        record_ingress(id, "1", IngressSample { packets: 7, ..Default::default() }, 0);
        assert_eq!(session_series_count(id), 2);
        let text = render(&install());
        assert!(text.contains(&format!("reel_storage_session_rx_packets{{session=\"{id}\",mid=\"1\"}} 7")), "{text}");
        remove_session(id);
        assert_eq!(session_series_count(id), 0);
        assert!(!render(&install()).contains(&format!("session=\"{id}\"")));
    }
}
