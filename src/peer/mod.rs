//! The storage media peer: `JoinStorageSession` → a server-side WebRTC peer (str0m) that
//! receives the master's H.264 + Opus and writes MKV fragments into the mapped stream.

use axum::Router;

use crate::state::AppState;

/// Signed routes (`POST /joinStorageSession`).
pub fn router() -> Router<AppState> {
    Router::new()
}
