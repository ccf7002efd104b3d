//! `POST /joinStorageSessionAsViewer` (docs/kvs-wire.md §4.1): check the channel, its storage
//! mapping, the viewer's signaling connection and the viewer cap, answer 200 at once, and
//! start a viewer session that offers to the viewer over its own signaling connection.
//!
//! The viewer must be connected to signaling as VIEWER with the request's `clientId` (the
//! offer travels over that connection). KVS does not document the answer when it is not;
//! reel answers `InvalidArgumentException`, as JoinStorageSession does when no master is
//! connected. The master may join later: the viewer waits (see [`super::fanout`]).
//!
//! Cluster mode: the call may land on any node, and the viewer's WebSocket may be on any
//! node. The viewer session runs on the node of the channel's storage session (or, before
//! the master, where its viewers wait, else the channel's home node): a call landing
//! elsewhere asks that node to run it and answers what it answers ([`super::handoff`]). The
//! session's offer and candidates reach the viewer through the bus.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use serde::Deserialize;

use super::Peers;
use super::handoff::{self, Outcome, VIEWER_HANDOFFS, session_node};
use super::join_storage_session::{access_denied, storage_stream, valid_channel_arn};
use super::viewer_quota::ViewersFull;
use crate::api::Core;
use crate::api::access::authorize_action as authorize;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::signaling::Signaling;
use crate::signaling::handoff::Ask;
use crate::signaling::registry::{StoragePeerAt, StorageViewerError};

/// The KVS operation name (throttle and audit).
pub const OPERATION: &str = "JoinStorageSessionAsViewer";
/// The IAM action it is authorized with.
pub const ACTION: &str = "kinesisvideo:JoinStorageSessionAsViewer";

/// The request body.
#[derive(Debug, Deserialize)]
pub(crate) struct Input {
    #[serde(rename = "channelArn")]
    channel_arn: Option<String>,
    #[serde(rename = "clientId")]
    client_id: Option<String>,
}

/// Why a viewer cannot join (mapped once to the KVS error shape by [`From`]).
#[derive(Debug, thiserror::Error)]
pub enum ViewerJoinError {
    /// A member is missing or does not match the model's constraints.
    #[error("{0}")]
    Invalid(String),
    /// The viewer is not connected to the channel's signaling as VIEWER.
    #[error("no viewer with client id {client_id} is connected to the signaling channel {channel}")]
    NotConnected { channel: String, client_id: String },
    /// The cluster bus could not take the message that routes the viewer to its session.
    #[error("the cluster bus is busy; retry the call")]
    Busy,
    /// The per-session viewer cap.
    #[error(transparent)]
    Full(#[from] ViewersFull),
}

impl From<ViewerJoinError> for ApiError {
    fn from(e: ViewerJoinError) -> Self {
        match e {
            ViewerJoinError::Full(_) | ViewerJoinError::Busy => ApiError::client_limit(e.to_string()),
            _ => ApiError::invalid_argument(e.to_string()),
        }
    }
}

/// Checks the model's `clientId`: 1–256 of `[a-zA-Z0-9_.-]`.
pub fn valid_client_id(id: &str) -> bool {
    (1..=256).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Parses and validates the body (sans-IO; fuzzed by `fuzz_api::api_body`).
pub(crate) fn parse(body: &[u8]) -> Result<(String, String), ViewerJoinError> {
    let input: Input = serde_json::from_slice(body)
        .map_err(|e| ViewerJoinError::Invalid(format!("the request body is not valid: {e}")))?;
    let Some(arn) = input.channel_arn else {
        return Err(ViewerJoinError::Invalid("1 validation error detected: channelArn must not be null".into()));
    };
    let Some(client_id) = input.client_id else {
        return Err(ViewerJoinError::Invalid("1 validation error detected: clientId must not be null".into()));
    };
    if !valid_channel_arn(&arn) {
        return Err(ViewerJoinError::Invalid(format!("channelArn {arn:?} does not match the channel ARN pattern")));
    }
    if !valid_client_id(&client_id) {
        return Err(ViewerJoinError::Invalid(format!(
            "clientId {client_id:?} must be 1 to 256 characters of [a-zA-Z0-9_.-]"
        )));
    }
    Ok((arn, client_id))
}

/// `POST /joinStorageSessionAsViewer {"channelArn","clientId"}` → 200 with an empty body.
#[tracing::instrument(name = "JoinStorageSessionAsViewer", skip_all, fields(channel = tracing::field::Empty, client_id = tracing::field::Empty))]
pub async fn handle(
    State(st): State<Core>,
    State(signaling): State<Signaling>,
    State(peers): State<Peers>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let (arn, client_id) = parse(&body)?;
    tracing::Span::current().record("channel", arn.as_str()).record("client_id", client_id.as_str());
    authorize(&principal, ACTION, &arn, access_denied)?;
    let (stream_arn, _) = storage_stream(&st, OPERATION, &arn).await?;
    if let StoragePeerAt::OtherNode(node) = session_node(signaling.registry.bus().as_ref(), &st.members, &arn) {
        let ask = Ask::JoinViewer { client_id: client_id.clone() };
        let outcome = match handoff::ask(&signaling, &node, &arn, ask).await {
            Outcome::Done => {
                metrics::counter!(VIEWER_HANDOFFS, "outcome" => "joined").increment(1);
                tracing::info!(node = %node, stream = %stream_arn, "viewer session starting on the storage session's node");
                return Ok(StatusCode::OK);
            }
            Outcome::Refused(e) => {
                metrics::counter!(VIEWER_HANDOFFS, "outcome" => "refused").increment(1);
                return Err(e);
            }
            Outcome::Unanswered => "unanswered",
        };
        metrics::counter!(VIEWER_HANDOFFS, "outcome" => outcome).increment(1);
    }
    let id = join_here(&signaling, &peers, &arn, &client_id).await?;
    tracing::info!(viewer = id, stream = %stream_arn, "viewer session starting");
    Ok(StatusCode::OK)
}

/// Attaches the viewer (connected to this node or, in a cluster, another) to a viewer
/// session of this node, takes its seat and starts it; returns the session id.
pub(crate) async fn join_here(
    signaling: &Signaling,
    peers: &Peers,
    arn: &str,
    client_id: &str,
) -> Result<u64, ViewerJoinError> {
    let registry = &signaling.registry;
    // In a cluster, a viewer that just connected to another node may reach this node's view
    // a moment after the call that names it.
    let clustered = signaling.bus_connected().is_some();
    let mut attached = Err(StorageViewerError::NotConnected);
    handoff::until_announced(|| {
        attached = registry.attach_storage_viewer(arn, client_id);
        !clustered || !matches!(attached, Err(StorageViewerError::NotConnected))
    })
    .await;
    // Attach first: a refused call takes no seat. A call over the cap is for a new client
    // id (the same id reuses its seat), so the attachment it drops replaced nothing.
    let handle = attached.map_err(|e| match e {
        StorageViewerError::Busy => ViewerJoinError::Busy,
        _ => ViewerJoinError::NotConnected { channel: arn.to_string(), client_id: client_id.to_string() },
    })?;
    let id = peers.take_viewer_seat(arn, client_id)?;
    peers.start_viewer(id, handle);
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/c/1";

    #[test]
    fn body_validation() {
        let ok = format!(r#"{{"channelArn":"{ARN}","clientId":"viewer-1_a.b"}}"#);
        assert_eq!(parse(ok.as_bytes()).expect("valid"), (ARN.to_string(), "viewer-1_a.b".to_string()));
        for bad in [
            format!(r#"{{"channelArn":"{ARN}"}}"#),
            r#"{"clientId":"v"}"#.to_string(),
            format!(r#"{{"channelArn":"{ARN}","clientId":""}}"#),
            format!(r#"{{"channelArn":"{ARN}","clientId":"a b"}}"#),
            format!(r#"{{"channelArn":"{ARN}","clientId":"{}"}}"#, "x".repeat(257)),
            r#"{"channelArn":"nope","clientId":"v"}"#.to_string(),
            "not json".to_string(),
        ] {
            let e = parse(bad.as_bytes()).expect_err(&bad);
            let e = ApiError::from(e);
            assert_eq!((e.code, e.status), ("InvalidArgumentException", StatusCode::BAD_REQUEST), "{bad}");
        }
        assert!(valid_client_id(&"x".repeat(256)));
    }

    #[test]
    fn the_cap_answers_what_the_kvs_js_sample_checks() {
        let e = ApiError::from(ViewerJoinError::Full(ViewersFull(3)));
        assert_eq!((e.code, e.status), ("ClientLimitExceededException", StatusCode::BAD_REQUEST));
        assert!(e.message.to_lowercase().contains("maximum number of viewers connected to the session"));
    }
}
