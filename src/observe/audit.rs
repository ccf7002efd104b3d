//! The audit log: one JSON line per control-plane call in `<data-dir>/audit.log`
//! (time, access key id, source IP, operation, request parameters, outcome, request id).
//!
//! Writes go through a channel to one writer task so a slow disk never stalls a handler.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

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
    /// The request's JSON parameters (or `null` if the body was not JSON).
    pub request_parameters: serde_json::Value,
    /// HTTP status of the response.
    pub status: u16,
    /// `"Success"` or the KVS error code.
    pub outcome: String,
    /// The `x-amzn-RequestId` returned to the client.
    pub request_id: String,
}

/// Handle to the audit writer; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::UnboundedSender<AuditEvent>,
    path: PathBuf,
}

impl AuditLog {
    /// Open (append) `<data_dir>/audit.log` and start its writer task.
    pub async fn open(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join("audit.log");
        let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(&path).await?;
        let (tx, mut rx) = mpsc::unbounded_channel::<AuditEvent>();
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
        Ok(Self { tx, path })
    }

    /// Queue one event; never blocks.
    pub fn record(&self, event: AuditEvent) {
        if self.tx.send(event).is_err() {
            tracing::error!("audit writer has stopped; event dropped");
        }
    }

    /// Where the log is written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
