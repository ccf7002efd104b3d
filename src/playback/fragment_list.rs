//! `POST /getMediaForFragmentList` (kinesis-video-archived-media): the named fragments, in
//! the order given, as one MKV document each, read one at a time while the body streams.
//!
//! Tags per document (note the names differ from GetMedia's): before the cluster
//! `AWS_KINESISVIDEO_FRAGMENT_NUMBER`, `AWS_KINESISVIDEO_SERVER_SIDE_TIMESTAMP`,
//! `AWS_KINESISVIDEO_PRODUCER_SIDE_TIMESTAMP`. A fragment that is not stored (or cannot be
//! read) becomes a tags-only document with `AWS_KINESISVIDEO_FRAGMENT_NUMBER`,
//! `AWS_KINESISVIDEO_EXCEPTION_ERROR_CODE` (4000 not found, 5000 internal) and
//! `AWS_KINESISVIDEO_EXCEPTION_MESSAGE`; the others are still delivered.

use std::collections::VecDeque;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::stream;
use reel_storage::{FragmentNumber, StoreError, Stream};
use serde::Deserialize;

use super::mkv_out::{self, ERROR_INTERNAL};
use super::{MKV_CONTENT_TYPE, fragment_number_syntax, open_resolved};
use crate::api::Core;
use crate::api::{body, validate};
use crate::auth::Principal;
use crate::error::ApiResult;
use reel_media::mkv::{SimpleTag, kvs_timestamp, tag};

/// Most fragments one request may name (model: 1–1000).
pub const MAX_FRAGMENTS: usize = 1_000;

#[derive(Debug, Deserialize)]
pub(crate) struct Input {
    #[serde(rename = "StreamName")]
    name: Option<String>,
    #[serde(rename = "StreamARN")]
    arn: Option<String>,
    #[serde(rename = "Fragments")]
    fragments: Option<Vec<String>>,
}

/// Handles `POST /getMediaForFragmentList`.
pub async fn handle(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    raw: Bytes,
) -> ApiResult<Response> {
    let input: Input = body::parse(&raw)?;
    let fragments = validate::required(input.fragments, "Fragments")?;
    validate::count(fragments.len(), "Fragments", 1, MAX_FRAGMENTS)?;
    for (i, f) in fragments.iter().enumerate() {
        fragment_number_syntax(f, &format!("Fragments.{}", i + 1))?;
    }
    let (record, stream) =
        open_resolved(&st, &principal, "GetMediaForFragmentList", input.name.as_deref(), input.arn.as_deref()).await?;
    tracing::info!(stream = %record.name, fragments = fragments.len(), "GetMediaForFragmentList");
    let pending: VecDeque<String> = fragments.into();
    let body = Body::from_stream(stream::unfold((stream, pending), |(stream, mut pending)| async move {
        let number = pending.pop_front()?;
        let doc = document(&stream, &number).await;
        Some((Ok::<_, std::convert::Infallible>(doc), (stream, pending)))
    }));
    Ok(([(header::CONTENT_TYPE, MKV_CONTENT_TYPE)], body).into_response())
}

/// The document for fragment `number` (its media, or its error).
async fn document(stream: &Stream, number: &str) -> Bytes {
    let read = match number.parse::<FragmentNumber>() {
        Ok(n) => stream.read_fragment(n).await,
        Err(_) => Err(StoreError::FragmentNotFound { number: number.to_string() }),
    };
    let fragment = match read {
        Ok(f) => f,
        Err(e) => return error_document(number, mkv_out::error_id(&e), &e.to_string()),
    };
    let tags = [
        SimpleTag::new(tag::FRAGMENT_NUMBER, number),
        SimpleTag::new(tag::SERVER_SIDE_TIMESTAMP, kvs_timestamp(fragment.info.server_ts_ms)),
        SimpleTag::new(tag::PRODUCER_SIDE_TIMESTAMP, kvs_timestamp(fragment.info.producer_ts_ms)),
    ];
    mkv_out::fragment_document(&fragment, &tags, &[]).unwrap_or_else(|e| {
        tracing::warn!(stream = %stream.id(), fragment = number, error = %e, "stored fragment header is not MKV");
        error_document(number, ERROR_INTERNAL, "the stored fragment could not be read")
    })
}

fn error_document(number: &str, code: u32, message: &str) -> Bytes {
    mkv_out::tags_document(&[
        SimpleTag::new(tag::FRAGMENT_NUMBER, number),
        SimpleTag::new(tag::EXCEPTION_ERROR_CODE, code.to_string()),
        SimpleTag::new(tag::EXCEPTION_MESSAGE, message),
    ])
}
