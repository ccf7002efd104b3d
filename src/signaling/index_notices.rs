//! Fragment index notices over the cluster bus (`<prefix>.fragments`): the node writing a
//! stream tells every other node each fragment it indexed, right after the catalog insert,
//! so their ListFragments, GetMedia and HLS/DASH reads list it without asking Postgres, and
//! their live readers get it without waiting for the catalog poll.
//!
//! Notices are best effort (NATS core, at most once). The media store only trusts them
//! while they chain — each names the fragment indexed before it, which must be the
//! receiver's newest — and for `[limits.cluster] index_notice_trust_ms` after the last one;
//! a gap or a silence sends reads back to the catalog (`reel_storage::IndexNotices`). A
//! lost notice therefore delays a listing on another node by at most that trust window,
//! never loses or reorders a fragment.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use reel_storage::{CatalogEntry, IndexNotices, NoticeOutcome, Store};

use super::cluster::Envelope;
use super::nats::{self, BusError};

/// Prometheus counter: index notices by `outcome` (`sent`, `dropped` when the publish
/// queue was full, and for received ones `applied`, `known`, `gap`, `not_open`, `undecodable`).
pub const INDEX_NOTICES: &str = "reel_cluster_index_notices_total";

/// One indexed fragment, as sent on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Notice {
    stream: String,
    /// Counter of the stream's fragment indexed before this one (0 for none).
    previous: u64,
    entry: CatalogEntry,
}

/// This node's sender: queues each notice on the bus's publish queue (never blocks the
/// store's replicator; a full queue drops the notice, which receivers see as a gap).
#[derive(Debug)]
struct Sender {
    node: String,
    subject: String,
    tx: mpsc::Sender<(String, Bytes)>,
}

impl IndexNotices for Sender {
    fn indexed(&self, stream: &str, entry: &CatalogEntry, previous: u64) {
        let body = Notice { stream: stream.to_string(), previous, entry: entry.clone() };
        let sent = nats::enqueue(&self.tx, &self.node, self.subject.clone(), body);
        metrics::counter!(INDEX_NOTICES, "outcome" => if sent { "sent" } else { "dropped" }).increment(1);
    }
}

/// Subscribes this node to the other nodes' notices and attaches a sender over the bus's
/// publish queue `tx` to `store` (a shared store; the subscription is live before the
/// store starts trusting notices).
pub async fn start(
    client: &async_nats::Client,
    tx: mpsc::Sender<(String, Bytes)>,
    subject_prefix: &str,
    node_id: &str,
    store: Store,
) -> Result<(), BusError> {
    let subject = format!("{subject_prefix}.fragments");
    let sub = client
        .subscribe(subject.clone())
        .await
        .map_err(|e| BusError::Subscribe { subject: subject.clone(), detail: e.to_string() })?;
    tokio::spawn(receive(sub, node_id.to_string(), store.clone()));
    store.attach_index_notices(Arc::new(Sender { node: node_id.to_string(), subject, tx }));
    Ok(())
}

async fn receive(mut sub: async_nats::Subscriber, node_id: String, store: Store) {
    while let Some(msg) = sub.next().await {
        let outcome = match nats::decode::<Notice>(&msg.payload) {
            Some(Envelope { from, .. }) if from == node_id => continue,
            Some(Envelope { body, .. }) => match store.apply_index_notice(&body.stream, &body.entry, body.previous) {
                NoticeOutcome::Applied => "applied",
                NoticeOutcome::Known => "known",
                NoticeOutcome::Gap => "gap",
                NoticeOutcome::NotOpen => "not_open",
            },
            None => "undecodable",
        };
        metrics::counter!(INDEX_NOTICES, "outcome" => outcome).increment(1);
    }
    tracing::warn!("cluster bus: index notice subscription ended");
}

#[cfg(test)]
mod tests {
    use super::*;
    use reel_storage::{FragmentInfo, FragmentNumber};

    #[test]
    fn a_notice_carries_the_whole_catalog_entry() {
        let entry = CatalogEntry {
            info: FragmentInfo {
                number: FragmentNumber::from_counter(5 << 24 | 3),
                producer_ts_ms: 1_700_000_000_123,
                server_ts_ms: 1_700_000_000_456,
                duration_ms: 2000,
                chunk_count: 20,
                payload_bytes: 250_000,
                header_bytes: 400,
                truncated: true,
            },
            object_bytes: 251_000,
        };
        let n = Notice { stream: "arn:aws:kinesisvideo:us-west-2:1:stream/s/1".into(), previous: 5 << 24 | 2, entry };
        let json = serde_json::to_vec(&Envelope { from: "node-1".to_string(), body: n.clone() }).unwrap();
        let back: Envelope<Notice> = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.body, n);
        // The number travels as its counter.
        assert!(String::from_utf8_lossy(&json).contains(&format!("\"number\":{}", 5u64 << 24 | 3)));
    }
}
