//! Streaming sessions for ordinary players: HLS and DASH session URLs and their
//! playlists/fragments, GetClip, and the `/viewer` web page.

use axum::Router;

use crate::state::AppState;

/// Signed routes (GetHLSStreamingSessionURL, GetDASHStreamingSessionURL, GetClip).
pub fn router() -> Router<AppState> {
    Router::new()
}

/// Routes authorized by a session token or public (HLS/DASH sub-resources, `/viewer`).
pub fn public_router() -> Router<AppState> {
    Router::new()
}
