//! Opening a stream of the media store for reading, the one way every reader does it.

use reel_storage::{Store, StoreError, Stream};

use crate::error::{ApiError, ApiResult};

/// What reading a stream the metadata knows but the media store has never seen means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfAbsent {
    /// An empty stream, as KVS shows one that never received media (GetMedia waits for its
    /// first fragment, ListFragments lists nothing). Opening creates it with this retention.
    Empty { retention_hours: u32 },
    /// `ResourceNotFoundException` "No fragments found in the stream" (what the HLS/DASH
    /// and clip operations answer for a stream without media).
    NotFound,
}

/// The stream `arn` of `store`, or what `if_absent` says when it was never written.
pub async fn open_stream(store: &Store, arn: &str, if_absent: IfAbsent) -> ApiResult<Stream> {
    // Cluster mode: any node may have written it; opening loads what the catalog indexes
    // (and catches up with it, so what another node just indexed is already listed).
    if store.is_shared() {
        let retention_hours = match if_absent {
            IfAbsent::Empty { retention_hours } => retention_hours,
            IfAbsent::NotFound => 0,
        };
        // A handle this node already has catches up; a new one is loaded whole when opened.
        let stream = match store.stream(arn) {
            Ok(stream) => {
                stream.catch_up().await?;
                stream
            }
            Err(_) => store.open_or_create_stream(arn, retention_hours).await?,
        };
        if if_absent == IfAbsent::NotFound && stream.latest_fragments(1).is_empty() {
            return Err(ApiError::not_found("No fragments found in the stream"));
        }
        return Ok(stream);
    }
    match (store.stream(arn), if_absent) {
        (Ok(stream), _) => Ok(stream),
        (Err(StoreError::StreamNotFound { .. }), IfAbsent::Empty { retention_hours }) => {
            Ok(store.open_or_create_stream(arn, retention_hours).await?)
        }
        (Err(StoreError::StreamNotFound { .. }), IfAbsent::NotFound) => {
            Err(ApiError::not_found("No fragments found in the stream"))
        }
        (Err(e), _) => Err(e.into()),
    }
}
