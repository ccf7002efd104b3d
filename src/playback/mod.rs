//! Reading stored media back (services `kinesis-video-media` and
//! `kinesis-video-archived-media`): GetMedia, ListFragments, GetMediaForFragmentList.

use axum::Router;

use crate::state::AppState;

/// Signed data-plane routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
}
