//! The audit log: one JSON line per control-plane call in `<data-dir>/audit.log`
//! (time, access key id, source IP, operation, request parameters, outcome, request id).
//!
//! Writes go through a bounded channel to one writer task so a slow disk never stalls a
//! handler; when the queue is full, events are dropped and counted in [`DROPPED`].
//! Refused requests are recorded in bounded form: no parameters, a [`MAX_REASON_CHARS`]
//! reason.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Prometheus counter: audit events dropped because the writer's queue was full.
pub const DROPPED: &str = "reel_audit_dropped_total";
/// Longest `reason` recorded, in characters.
pub const MAX_REASON_CHARS: usize = 256;

/// One audited call.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// RFC 3339 UTC time the request was received.
    pub time: String,
    /// Access key that signed the call (`null` when authentication failed).
    pub access_key_id: Option<String>,
    /// Peer address of the connection.
    pub source_ip: String,
    /// KVS operation name.
    pub operation: String,
    /// The request's JSON parameters; `null` if the body was not JSON or the request was
    /// not authenticated (a refused request's body is never recorded).
    pub request_parameters: serde_json::Value,
    /// HTTP status of the response.
    pub status: u16,
    /// `"Success"` or the KVS error code.
    pub outcome: String,
    /// The `x-amzn-RequestId` returned to the client.
    pub request_id: String,
    /// Why the call failed (the error message, at most [`MAX_REASON_CHARS`]); absent on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `text` cut to [`MAX_REASON_CHARS`] characters.
pub fn bounded_reason(text: &str) -> String {
    match text.char_indices().nth(MAX_REASON_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Handle to the audit writer; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<AuditEvent>,
    path: PathBuf,
}

impl AuditLog {
    /// Open (append) `<data_dir>/audit.log` and start its writer task with a queue of
    /// `queue` events.
    pub async fn open(data_dir: &Path, queue: usize) -> std::io::Result<Self> {
        let path = data_dir.join("audit.log");
        let file = tokio::fs::OpenOptions::new().create(true).append(true).open(&path).await?;
        Ok(Self::with_writer(file, queue, path))
    }

    /// An audit log writing to `out` (tests use a stalled writer).
    pub fn with_writer<W>(mut file: W, queue: usize, path: PathBuf) -> Self
    where
        W: tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<AuditEvent>(queue.max(1));
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let Ok(mut line) = serde_json::to_vec(&event) else { continue };
                line.push(b'\n');
                if let Err(e) = file.write_all(&line).await {
                    tracing::error!(error = %e, "audit log write failed");
                }
                if rx.is_empty() {
                    let _ = file.flush().await;
                }
            }
        });
        Self { tx, path }
    }

    /// Queue one event; never blocks. A full queue drops it (counted in [`DROPPED`]).
    pub fn record(&self, event: AuditEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!(DROPPED).increment(1);
                tracing::warn!("audit queue full; event dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                metrics::counter!(DROPPED).increment(1);
                tracing::error!("audit writer has stopped; event dropped");
            }
        }
    }

    /// Where the log is written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize) -> AuditEvent {
        AuditEvent {
            time: String::new(),
            access_key_id: None,
            source_ip: "192.0.2.1".into(),
            operation: "CreateStream".into(),
            request_parameters: serde_json::Value::Null,
            status: 403,
            outcome: "UnrecognizedClientException".into(),
            request_id: i.to_string(),
            reason: Some(bounded_reason(&"x".repeat(10_000))),
        }
    }

    /// A writer that never completes: the queue fills and stays full.
    struct Stalled;

    impl tokio::io::AsyncWrite for Stalled {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Pending
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Pending
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_stalled_writer_bounds_the_queue() {
        let log = AuditLog::with_writer(Stalled, 4, PathBuf::from("/dev/null"));
        for round in 0..3 {
            for i in 0..100 {
                log.record(event(i));
            }
            // However many are recorded, at most four wait (the writer holds one more).
            assert_eq!(log.tx.capacity(), 0, "round {round}: queue full, the rest dropped");
            assert_eq!(log.tx.max_capacity(), 4);
            tokio::task::yield_now().await;
        }
    }

    #[test]
    fn reasons_are_bounded() {
        let r = event(0).reason.expect("reason");
        assert_eq!(r.chars().count(), MAX_REASON_CHARS + 1);
        assert_eq!(bounded_reason("short"), "short");
    }
}
