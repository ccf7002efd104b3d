//! Prometheus metrics: per operation, requests, `Failure` and `Latency` (the KVS
//! service metrics), rendered at `GET /metrics`.
//!
//! Per-session media series (`reel_storage_session_rx_*{session,mid}`) are kept apart in
//! [`record_ingress`]'s table and removed with [`remove_session`] when the session ends, so
//! they do not grow forever (the `metrics` facade cannot forget a series); [`render`]
//! appends them to the exporter's output. Totals across sessions go through the facade.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use reel_media::fragmenter::{ChunkFrames, DropCounts, DropReason, FragmenterStats};

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
/// Frames depacketized by all storage sessions, per `track`.
pub const FRAMES_RECEIVED: &str = "reel_storage_frames_received_total";
/// Frames received but not stored, per `track` and `reason` (alert on any increase).
pub const FRAMES_DROPPED: &str = "reel_storage_frames_dropped_total";
/// The `reason` of frames lost because the store writer's queue was full.
pub const QUEUE_OVERFLOW: &str = "queue_overflow";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// Whether series may carry channel ARNs (`--metrics-channel-labels`; off by default).
static CHANNEL_LABELS: AtomicBool = AtomicBool::new(false);

/// Let series carry channel ARNs in a `channel` label (process-wide; the operator's opt-in).
pub fn set_channel_labels(on: bool) {
    CHANNEL_LABELS.store(on, Ordering::Relaxed);
}

/// Whether series may carry channel ARNs.
pub fn channel_labels() -> bool {
    CHANNEL_LABELS.load(Ordering::Relaxed)
}

/// Install the process-wide recorder once and return the handle that renders it; every
/// series carries `node=<node_id>`, so a cluster's nodes can be told apart.
pub fn install(node_id: &str) -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .add_global_label("node", node_id)
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

/// One track's frame counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackLedger {
    /// Frames received (depacketized).
    pub received: u64,
    /// Frames dropped by the fragmenter, by reason.
    pub dropped: DropCounts,
    /// Frames lost because the store writer's queue was full.
    pub queue_overflow: u64,
}

impl TrackLedger {
    /// Every dropped frame, whatever the reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.total() + self.queue_overflow
    }
}

/// A storage session's frame counts, as last exported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameLedger {
    /// Video.
    pub video: TrackLedger,
    /// Audio.
    pub audio: TrackLedger,
}

impl FrameLedger {
    /// The counts of a session's fragmenter plus its writer-queue losses.
    pub fn of(f: &FragmenterStats, overflow: ChunkFrames) -> Self {
        Self {
            video: TrackLedger {
                received: f.video_in,
                dropped: f.video_dropped,
                queue_overflow: u64::from(overflow.video),
            },
            audio: TrackLedger {
                received: f.audio_in,
                dropped: f.audio_dropped,
                queue_overflow: u64::from(overflow.audio),
            },
        }
    }
}

static FRAMES: Mutex<BTreeMap<u64, FrameLedger>> = Mutex::new(BTreeMap::new());

/// Adds a session's frame counts since `before` to the totals ([`FRAMES_RECEIVED`],
/// [`FRAMES_DROPPED`]) and keeps `now` as its per-session series.
pub fn record_frames(session: u64, before: &FrameLedger, now: &FrameLedger) {
    for (track, b, n) in [("video", &before.video, &now.video), ("audio", &before.audio, &now.audio)] {
        metrics::counter!(FRAMES_RECEIVED, "track" => track).increment(n.received.saturating_sub(b.received));
        for reason in DropReason::ALL {
            let delta = n.dropped.get(reason).saturating_sub(b.dropped.get(reason));
            if delta > 0 {
                metrics::counter!(FRAMES_DROPPED, "track" => track, "reason" => reason.label()).increment(delta);
            }
        }
        let delta = n.queue_overflow.saturating_sub(b.queue_overflow);
        if delta > 0 {
            metrics::counter!(FRAMES_DROPPED, "track" => track, "reason" => QUEUE_OVERFLOW).increment(delta);
        }
    }
    if let Ok(mut t) = FRAMES.lock() {
        t.insert(session, *now);
    }
}

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
    if let Ok(mut t) = FRAMES.lock() {
        t.remove(&session);
    }
}

/// Number of sessions with per-session series (for tests).
pub fn session_series_count(session: u64) -> usize {
    SESSIONS.lock().map(|t| t.keys().filter(|(s, _)| *s == session).count()).unwrap_or(0)
}

/// The exporter's output followed by the live sessions' series.
pub fn render(handle: &PrometheusHandle) -> String {
    let mut out = handle.render();
    render_frames(&mut out);
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

/// Appends the live sessions' frame series.
fn render_frames(out: &mut String) {
    let Ok(t) = FRAMES.lock() else { return };
    if t.is_empty() {
        return;
    }
    type Field = fn(&TrackLedger) -> u64;
    let fields: [(&str, &str, Field); 2] = [
        ("reel_storage_session_frames_received", "frames received", |l| l.received),
        ("reel_storage_session_frames_dropped", "frames received but not stored", TrackLedger::dropped_total),
    ];
    for (name, help, get) in fields {
        let _ = writeln!(out, "# HELP {name} Per storage session: {help}.\n# TYPE {name} gauge");
        for (session, l) in t.iter() {
            for (track, tl) in [("video", &l.video), ("audio", &l.audio)] {
                let _ = writeln!(out, "{name}{{session=\"{session}\",track=\"{track}\"}} {}", get(tl));
            }
        }
    }
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
        let text = render(&install("test-node"));
        assert!(text.contains(&format!("reel_storage_session_rx_packets{{session=\"{id}\",mid=\"1\"}} 7")), "{text}");
        remove_session(id);
        assert_eq!(session_series_count(id), 0);
        assert!(!render(&install("test-node")).contains(&format!("session=\"{id}\"")));
    }

    #[test]
    fn dropped_frames_are_exported_by_track_and_reason_and_per_session() {
        let id = 9_000_002;
        let handle = install("test-node");
        let dropped = DropCounts { late: 3, ..Default::default() };
        let before = FrameLedger::default();
        let now = FrameLedger {
            video: TrackLedger { received: 10, ..Default::default() },
            audio: TrackLedger { received: 20, dropped, queue_overflow: 2 },
        };
        record_frames(id, &before, &now);
        let text = render(&handle);
        let late = text
            .lines()
            .find(|l| l.starts_with(FRAMES_DROPPED) && l.contains("reason=\"late\"") && l.contains("track=\"audio\""))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(late.trim_end().split(' ').next_back().and_then(|v| v.parse::<f64>().ok()).is_some_and(|v| v >= 3.0));
        assert!(text.contains("reason=\"queue_overflow\""), "{text}");
        assert!(text.contains(&format!("reel_storage_session_frames_dropped{{session=\"{id}\",track=\"audio\"}} 5")));
        assert!(text.contains(&format!("reel_storage_session_frames_received{{session=\"{id}\",track=\"video\"}} 10")));
        // A second export adds only the difference.
        record_frames(id, &now, &now);
        remove_session(id);
        assert!(!render(&handle).contains(&format!("session=\"{id}\"")));
    }
}
