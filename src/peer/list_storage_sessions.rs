//! `POST /listStorageSessions` — reel's own operation behind the console's sessions
//! dashboard: the storage sessions live on this node, with their counters. Signed like every
//! API; a caller sees the sessions of the channels its policy allows the action
//! `reel:ListStorageSessions` on (none: an empty list, as a listing shows nothing to see).

use axum::extract::State;
use axum::{Extension, Json};

use super::Peers;
use crate::api::Core;
use crate::auth::Principal;
use crate::error::ApiResult;

/// The policy action of the operation (per channel ARN).
pub const ACTION: &str = "reel:ListStorageSessions";

/// `POST /listStorageSessions {}` → `{"Node", "Sessions": [...]}`.
#[tracing::instrument(name = "ListStorageSessions", skip_all)]
pub async fn handle(
    State(st): State<Core>,
    State(peers): State<Peers>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<serde_json::Value>> {
    let sessions: Vec<_> =
        peers.summaries().await.into_iter().filter(|s| principal.is_allowed(ACTION, &s.channel_arn)).collect();
    Ok(Json(serde_json::json!({ "Node": st.config.node_id, "Sessions": sessions })))
}
