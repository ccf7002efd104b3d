//! Cluster mode: a channel's storage session runs where its live viewers wait.
//!
//! A viewer session runs on the node that holds the viewer's WebSocket, and only that
//! node's storage session feeds it. Viewers that join before the master are sent to one node
//! by GetSignalingChannelEndpoint (`crate::control::endpoints`) and wait there, but the
//! master's JoinStorageSession may land on any node. After its checks, JoinStorageSession
//! asks the node where most of the channel's storage viewers are attached to start the
//! session ([`crate::signaling::handoff`]), and answers 200 once that node has. The session
//! there reaches the master through the bus, as any storage peer does. If that node refuses
//! or does not answer within [`HANDOFF_TIMEOUT`], the session starts on the node that got
//! the call, as it would without viewers. The master's ingest never depends on a viewer.

use std::time::Duration;

use super::Peers;
use super::join_storage_session::{mapped_stream, require_master, start_here};
use crate::api::Core;
use crate::error::ApiResult;
use crate::signaling::Signaling;
use crate::signaling::handoff::StorageStart;
use crate::signaling::registry::StoragePeerAt;

/// How long JoinStorageSession waits for the viewers' node before starting the session
/// itself.
pub const HANDOFF_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a start request waits for the master's connection to reach this node's view.
const MASTER_GRACE: Duration = Duration::from_millis(500);

/// Prometheus counter: JoinStorageSession calls that asked another node to start the
/// session, by `outcome` (`started`, `refused`, `unanswered`).
pub const HANDOFFS: &str = "reel_storage_session_handoffs_total";

/// Asks the node where the channel's live viewers wait to start its storage session;
/// `true` once it runs there, `false` when this node should start it (no viewers on another
/// node, or that node refused or did not answer).
pub(crate) async fn to_waiting_viewers(signaling: &Signaling, arn: &str) -> bool {
    let bus = signaling.registry.bus();
    let Some(StoragePeerAt::OtherNode(node)) = bus.storage_viewers_at(arn) else { return false };
    let (request, answer) = bus.hand_off_storage(&node, arn);
    let outcome = match tokio::time::timeout(HANDOFF_TIMEOUT, answer).await {
        Ok(Ok(Ok(()))) => {
            tracing::info!(node = %node, "storage session started on the node where the channel's viewers wait");
            "started"
        }
        Ok(Ok(Err(why))) => {
            tracing::warn!(node = %node, reason = %why, "the viewers' node did not start the storage session; starting it here");
            "refused"
        }
        Ok(Err(_)) | Err(_) => {
            bus.cancel_hand_off(request);
            tracing::warn!(node = %node, "the viewers' node did not answer; starting the storage session here");
            "unanswered"
        }
    };
    metrics::counter!(HANDOFFS, "outcome" => outcome).increment(1);
    outcome == "started"
}

/// Serves other nodes' requests to start a storage session on this node (cluster mode).
pub fn serve(st: Core, signaling: Signaling, peers: Peers) {
    let mut starts = signaling.registry.bus().serve_storage_starts();
    tokio::spawn(async move {
        while let Some(start) = starts.recv().await {
            let (st, signaling, peers) = (st.clone(), signaling.clone(), peers.clone());
            tokio::spawn(async move { answer(&st, &signaling, &peers, start).await });
        }
    });
}

/// Starts the requested session, with the checks JoinStorageSession made on the requesting
/// node repeated (the channel or its master may have changed since), and answers.
#[tracing::instrument(name = "StorageHandOff", skip_all, fields(channel = %start.channel, from = %start.from))]
async fn answer(st: &Core, signaling: &Signaling, peers: &Peers, start: StorageStart) {
    let started: ApiResult<u64> = async {
        let (stream_arn, stream) = mapped_stream(st, &start.channel).await?;
        // The master's connection was announced on another subject than this request, and
        // may be applied here a moment after it.
        let bus = signaling.registry.bus();
        let deadline = tokio::time::Instant::now() + MASTER_GRACE;
        while !bus.master_connected(&start.channel) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        require_master(signaling, &start.channel)?;
        start_here(st, signaling, peers, &start.channel, &stream_arn, &stream).await
    }
    .await;
    match started {
        Ok(id) => {
            tracing::info!(session = id, "storage session started for another node's JoinStorageSession");
            start.answer(Ok(()));
        }
        Err(e) => {
            tracing::warn!(code = e.code, error = %e.message, "cannot start the storage session asked for");
            start.answer(Err(format!("{}: {}", e.code, e.message)));
        }
    }
}
