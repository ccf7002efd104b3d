//! The KVS control plane (service `kinesisvideo`), one file per operation group.
//!
//! INTERFACE SKELETON — the control-plane helper replaces this module.

use axum::Router;

use crate::state::AppState;

/// Routes of every control-plane operation (`POST` fixed paths).
pub fn router() -> Router<AppState> {
    Router::new()
}
