//! PutMedia (`POST /putMedia`, kinesis-video-media data plane): producers that use the KVS
//! producer SDKs (kvssink, the C, C++ and Java producers) stream Matroska into a stream.
//!
//! The request is authenticated from its headers alone ([`crate::api::edge`] passes the
//! body on unread; producers sign the streamed body as empty, `UNSIGNED-PAYLOAD` or
//! `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`), checked ([`request`]), authorized as
//! `kinesisvideo:PutMedia` on the stream, and answered at once with `200` and a chunked body
//! of acknowledgements ([`ack`]), one JSON line per chunk, while [`upload`] reads the
//! Matroska as it arrives. Each Cluster becomes one fragment ([`assemble`]), numbered and
//! stored as WebRTC-ingested ones are, so every playback API serves it.
//!
//! One connection per stream, as KVS: the newest is accepted, and the older one ends after
//! storing the fragments it had completed. In cluster mode the connection also takes the
//! stream's writer lease, so a PutMedia on another node, or a storage session, fences it.
//!
//! Left to producers, as KVS leaves it: fragments that were not acknowledged `PERSISTED`
//! are resent on the next connection, so a failed fragment is never stored in part.

pub mod ack;
pub mod assemble;
pub mod request;
pub mod upload;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, FromRef, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::api::Core;
use crate::api::reading::{IfAbsent, open_stream};
use crate::api::resolve::{self, ArnFormatError, STREAM_DENY};
use crate::auth::Principal;
use crate::error::ApiResult;
use assemble::{Assembler, FragmentLimits};
use request::PutMediaRequest;

/// The path of PutMedia.
pub const PATH: &str = "/putMedia";

/// Whether a request is a streaming upload, whose body the edge must not read.
pub fn is_streaming_upload(method: &Method, path: &str) -> bool {
    method == Method::POST && path == PATH
}

/// The request parameters the audit trail records for a PutMedia (its `x-amzn-*` headers).
pub fn audit_parameters(headers: &HeaderMap) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (name, member) in [
        (request::STREAM_NAME, "StreamName"),
        (request::STREAM_ARN, "StreamARN"),
        (request::TIMECODE_TYPE, "FragmentTimecodeType"),
        (request::START_TIMESTAMP, "ProducerStartTimestamp"),
    ] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            out.insert(member.into(), serde_json::Value::String(v.chars().take(1024).collect()));
        }
    }
    serde_json::Value::Object(out)
}

/// Signed data-plane route of this module.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Core: FromRef<S>,
    Uploads: FromRef<S>,
{
    Router::new().route(PATH, post(handle))
}

/// A stream's open connection: its id and the signal that ends it.
type Open = (u64, watch::Sender<bool>);

/// The PutMedia connections open on this node, one per stream (the newest).
#[derive(Clone, Debug, Default)]
pub struct Uploads {
    inner: Arc<Mutex<HashMap<String, Open>>>,
    next_id: Arc<AtomicU64>,
}

impl Uploads {
    /// Registers a new connection to `stream`, telling the one it replaces to end.
    fn open(&self, stream: &str) -> (u64, watch::Receiver<bool>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = watch::channel(false);
        let previous = crate::peer::lock(&self.inner).insert(stream.to_owned(), (id, tx));
        if let Some((_, older)) = previous {
            let _ = older.send(true);
        }
        (id, rx)
    }

    /// Forgets connection `id` of `stream` (unless a newer one took its place).
    fn close(&self, stream: &str, id: u64) {
        let mut map = crate::peer::lock(&self.inner);
        if map.get(stream).is_some_and(|(current, _)| *current == id) {
            map.remove(stream);
        }
    }
}

/// Handles `POST /putMedia`.
pub async fn handle(
    State(st): State<Core>,
    State(uploads): State<Uploads>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let req = PutMediaRequest::from_headers(&headers)?;
    let record = resolve::stream(
        &st,
        &principal,
        "PutMedia",
        STREAM_DENY,
        req.stream_name.as_deref(),
        req.stream_arn.as_deref(),
        ArnFormatError::InvalidArgument,
    )
    .await?;
    let limits = st.config.limits.put_media.clone();
    st.throttle.check_resource("PutMedia", limits.tps_per_stream, &record.arn)?;
    let lease = if st.config.shares_metadata() {
        let (keeper, taken) = st.leases.acquire(&record.arn).await?;
        tracing::debug!(stream = %record.arn, epoch = taken.epoch, "writer lease taken for PutMedia");
        Some(keeper)
    } else {
        None
    };
    let stream =
        open_stream(&st.store, &record.arn, IfAbsent::Empty { retention_hours: record.data_retention_in_hours })
            .await?;
    let start_ms = req.start_ms.unwrap_or_else(crate::streaming::now_ms);
    let fragment_limits = FragmentLimits {
        max_fragment_bytes: limits.max_fragment_bytes,
        max_fragment_duration_ms: limits.max_fragment_duration_ms,
        max_tracks: limits.max_tracks,
    };
    let (id, replaced) = uploads.open(&record.arn);
    let up = upload::Upload {
        id,
        stream,
        lease,
        assembler: Assembler::new(fragment_limits, req.timecode_type, start_ms),
        acks: req.acks,
        persisted_acks: record.data_retention_in_hours > 0,
        limits,
        replaced,
    };
    tracing::info!(upload = id, stream = %record.arn, "PutMedia connection open");
    let (tx, rx) = mpsc::channel(upload::ACK_QUEUE);
    let arn = record.arn.clone();
    metrics::gauge!(upload::ACTIVE).increment(1.0);
    tokio::spawn(async move {
        upload::run(up, body, tx).await;
        uploads.close(&arn, id);
        metrics::gauge!(upload::ACTIVE).decrement(1.0);
    });
    let acks = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|a| (a, rx)) })
        .map(|a| Ok::<_, std::convert::Infallible>(Bytes::from(a.to_line())));
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], Body::from_stream(acks)).into_response())
}
