//! Cluster mode: a channel's storage session and its viewer sessions run on one node.
//!
//! Viewers are fed the master's packets on the worker of the storage session's node, so a
//! viewer session must run there, wherever the viewer's WebSocket is (its signaling travels
//! through the bus). The node is [`session_node`]: where the storage session runs; with
//! none, where the channel's viewer sessions wait; with none either, the channel's home node.
//!
//! - **Viewers.** JoinStorageSessionAsViewer on another node asks that node to run the viewer
//!   session ([`Ask::JoinViewer`]) and answers what it answers (the viewer cap is counted
//!   there). A viewer that joins before the master waits there.
//! - **Masters.** The master's JoinStorageSession may land on any node. After its checks, it
//!   asks the node where the channel's viewers wait to start the session ([`Ask::StartStorage`])
//!   and answers 200 once that node has. The session reaches the master through the bus, as any
//!   storage peer does.
//!
//! If the asked node is unavailable or does not answer within [`HANDOFF_TIMEOUT`], the node
//! that got the call does the work itself, as it would on its own: the master's ingest never
//! depends on a viewer, and a viewer is never refused for a node it cannot reach.

use std::time::Duration;

use super::Peers;
use super::join_storage_session::{mapped_stream, require_master, start_here};
use super::join_storage_session_as_viewer::join_here;
use crate::api::Core;
use crate::error::{ApiError, ApiResult};
use crate::signaling::Signaling;
use crate::signaling::handoff::{Ask, Asked, Refusal};
use crate::signaling::registry::StoragePeerAt;

pub use crate::signaling::handoff::session_node;

/// How long a node waits for the node it asked before doing the work itself.
pub const HANDOFF_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a request waits for a party's connection to reach this node's view: it was
/// announced on another subject than the request, and may be applied here a moment after it.
const ANNOUNCE_GRACE: Duration = Duration::from_millis(500);

/// Polls `seen` (first at once, then every 20 ms) until it holds or [`ANNOUNCE_GRACE`] is
/// over: what a request names may reach this node's view a moment after the request.
pub(crate) async fn until_announced(mut seen: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + ANNOUNCE_GRACE;
    while !seen() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Prometheus counter: JoinStorageSession calls that asked another node to start the
/// session, by `outcome` (`started`, `refused`, `unanswered`).
pub const HANDOFFS: &str = "reel_storage_session_handoffs_total";

/// Prometheus counter: JoinStorageSessionAsViewer calls that asked another node to run the
/// viewer session, by `outcome` (`joined`, `refused`, `unanswered`).
pub const VIEWER_HANDOFFS: &str = "reel_storage_viewer_handoffs_total";

/// What became of a request to another node.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Done there.
    Done,
    /// Refused there for a reason the client should hear.
    Refused(ApiError),
    /// Not done there (unavailable, or no answer in time): do it here.
    Unanswered,
}

/// Asks `node` to do `ask` for `arn` and waits for its answer (at most [`HANDOFF_TIMEOUT`]).
pub(crate) async fn ask(signaling: &Signaling, node: &str, arn: &str, ask: Ask) -> Outcome {
    let bus = signaling.registry.bus();
    let (request, answer) = bus.ask(node, arn, ask);
    match tokio::time::timeout(HANDOFF_TIMEOUT, answer).await {
        Ok(Ok(Ok(()))) => Outcome::Done,
        Ok(Ok(Err(Refusal::Api { code, status, message }))) => {
            Outcome::Refused(ApiError::relayed(&code, status, message))
        }
        Ok(Ok(Err(Refusal::Unavailable(why)))) => {
            tracing::warn!(node = %node, reason = %why, "the node asked is unavailable; doing it here");
            Outcome::Unanswered
        }
        Ok(Err(_)) | Err(_) => {
            bus.cancel_ask(request);
            tracing::warn!(node = %node, "the node asked did not answer; doing it here");
            Outcome::Unanswered
        }
    }
}

/// Asks the node where the channel's live viewers wait to start its storage session;
/// `true` once it runs there, `false` when this node should start it (no viewers on another
/// node, or that node refused or did not answer).
pub(crate) async fn to_waiting_viewers(signaling: &Signaling, arn: &str) -> bool {
    let bus = signaling.registry.bus();
    let Some(StoragePeerAt::OtherNode(node)) = bus.storage_viewers_at(arn) else { return false };
    let outcome = match ask(signaling, &node, arn, Ask::StartStorage).await {
        Outcome::Done => {
            tracing::info!(node = %node, "storage session started on the node where the channel's viewers wait");
            "started"
        }
        Outcome::Refused(e) => {
            tracing::warn!(node = %node, code = e.code, error = %e.message, "the viewers' node did not start the storage session; starting it here");
            "refused"
        }
        Outcome::Unanswered => "unanswered",
    };
    metrics::counter!(HANDOFFS, "outcome" => outcome).increment(1);
    outcome == "started"
}

/// Serves other nodes' requests to this node (cluster mode).
pub fn serve(st: Core, signaling: Signaling, peers: Peers) {
    let mut requests = signaling.registry.bus().serve_asks();
    tokio::spawn(async move {
        while let Some(asked) = requests.recv().await {
            let (st, signaling, peers) = (st.clone(), signaling.clone(), peers.clone());
            tokio::spawn(async move { answer(&st, &signaling, &peers, asked).await });
        }
    });
}

/// Does what another node asked, with the checks the asking node made repeated (the channel,
/// its master or its viewer may have changed since), and answers.
#[tracing::instrument(name = "HandOff", skip_all, fields(channel = %asked.channel, from = %asked.from))]
async fn answer(st: &Core, signaling: &Signaling, peers: &Peers, asked: Asked) {
    let done: ApiResult<u64> = match &asked.ask {
        Ask::StartStorage => start_storage(st, signaling, peers, &asked.channel).await,
        Ask::JoinViewer { client_id } => {
            async {
                mapped_stream(st, &asked.channel).await?;
                Ok(join_here(signaling, peers, &asked.channel, client_id).await?)
            }
            .await
        }
    };
    match done {
        Ok(id) => {
            tracing::info!(session = id, ask = ?asked.ask, "started for another node's call");
            asked.answer(Ok(()));
        }
        Err(e) => {
            tracing::warn!(code = e.code, error = %e.message, ask = ?asked.ask, "cannot do what another node asked");
            let refusal = Refusal::Api { code: e.code.to_string(), status: e.status.as_u16(), message: e.message };
            asked.answer(Err(refusal));
        }
    }
}

/// Starts the channel's storage session here for another node's JoinStorageSession.
async fn start_storage(st: &Core, signaling: &Signaling, peers: &Peers, channel: &str) -> ApiResult<u64> {
    let (stream_arn, stream) = mapped_stream(st, channel).await?;
    let bus = signaling.registry.bus();
    until_announced(|| bus.master_connected(channel)).await;
    require_master(signaling, channel)?;
    start_here(st, signaling, peers, channel, &stream_arn, &stream).await
}
