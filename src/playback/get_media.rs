//! `POST /getMedia` (kinesis-video-media): an endless chunked body of MKV documents, one per
//! fragment in fragment-number order, starting where `StartSelector` says and then
//! following the live tail (a `watch` wake-up from the store, no polling).
//!
//! Each document carries, before its cluster, `AWS_KINESISVIDEO_FRAGMENT_NUMBER`,
//! `…_SERVER_TIMESTAMP` and `…_PRODUCER_TIMESTAMP`, and after it
//! `AWS_KINESISVIDEO_CONTINUATION_TOKEN` (this fragment's number: start a new request with
//! `CONTINUATION_TOKEN` to resume after it) and `…_MILLIS_BEHIND_NOW` (how far the newest
//! stored fragment's server timestamp is ahead of this one's). A fragment that cannot be
//! read becomes a tags-only document with `AWS_KINESISVIDEO_ERROR_CODE`/`…_ERROR_ID`
//! (4000 not found, 5000 internal) and the stream continues after it. The body ends when
//! the stream is deleted.
//!
//! At most `max_get_media_connections_per_stream` responses are open per stream (one more is
//! refused with `ConnectionLimitExceededException`), and each body is paced to
//! `get_media_max_bytes_per_sec` ([`super::pacing`]).
//!
//! Start selectors: `EARLIEST`, `NOW` (only fragments persisted after the call),
//! `FRAGMENT_NUMBER` (the fragments after `AfterFragmentNumber`, which must exist),
//! `SERVER_TIMESTAMP`/`PRODUCER_TIMESTAMP` (from the first fragment whose span reaches
//! `StartTimestamp`), `CONTINUATION_TOKEN` (after the fragment a previous reader last got).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, stream};
use reel_storage::{Fragment, FragmentNumber, StartPosition, Stream, TailReader};
use serde::Deserialize;

use super::Readers;
use super::mkv_out::{self, ERROR_INTERNAL};
use super::pacing::paced;
use super::sessions::ReaderGuard;
use super::{MKV_CONTENT_TYPE, fragment_number_syntax, open_resolved, timestamp_ms};
use crate::api::Core;
use crate::api::{body, validate};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use reel_media::mkv::{SimpleTag, kvs_timestamp, tag};

/// `StartSelectorType` values.
pub const START_SELECTOR_TYPES: &[&str] =
    &["FRAGMENT_NUMBER", "SERVER_TIMESTAMP", "PRODUCER_TIMESTAMP", "NOW", "EARLIEST", "CONTINUATION_TOKEN"];
/// Longest `ContinuationToken` (model: 1–128, `^[a-zA-Z0-9_\.\-]+$`).
const MAX_CONTINUATION_TOKEN_LEN: usize = 128;

#[derive(Debug, Deserialize)]
pub(crate) struct Input {
    #[serde(rename = "StreamName")]
    name: Option<String>,
    #[serde(rename = "StreamARN")]
    arn: Option<String>,
    #[serde(rename = "StartSelector")]
    start: Option<StartSelector>,
}

#[derive(Debug, Deserialize)]
struct StartSelector {
    #[serde(rename = "StartSelectorType")]
    kind: Option<String>,
    #[serde(rename = "AfterFragmentNumber")]
    after_fragment_number: Option<String>,
    #[serde(rename = "StartTimestamp")]
    start_timestamp: Option<f64>,
    #[serde(rename = "ContinuationToken")]
    continuation_token: Option<String>,
}

/// Handles `POST /getMedia`.
pub async fn handle(
    State(st): State<Core>,
    State(readers): State<Readers>,
    Extension(principal): Extension<Principal>,
    raw: Bytes,
) -> ApiResult<Response> {
    let input: Input = body::parse(&raw)?;
    let selector = validate::required(input.start, "StartSelector")?;
    let kind = validate::required(selector.kind.as_deref(), "StartSelector.StartSelectorType")?;
    let kind = validate::one_of(kind, "StartSelector.StartSelectorType", START_SELECTOR_TYPES)?;
    let (record, stream) =
        open_resolved(&st, &principal, "GetMedia", input.name.as_deref(), input.arn.as_deref()).await?;
    st.throttle.check_resource("GetMedia", st.config.limits.playback.get_media_tps_per_stream, &record.arn)?;
    let position = match kind {
        "EARLIEST" => StartPosition::Earliest,
        "NOW" => StartPosition::Now,
        "FRAGMENT_NUMBER" => {
            let member = "StartSelector.AfterFragmentNumber";
            let n = validate::required(selector.after_fragment_number.as_deref(), member)?;
            fragment_number_syntax(n, member)?;
            let number: FragmentNumber = n
                .parse()
                .map_err(|_| crate::error::ApiError::not_found(format!("Fragment {n} was not found in the stream")))?;
            stream.fragment_info(number)?;
            StartPosition::AfterFragment(number)
        }
        "CONTINUATION_TOKEN" => {
            let member = "StartSelector.ContinuationToken";
            let token = validate::required(selector.continuation_token.as_deref(), member)?;
            validate::length(token, member, 1, MAX_CONTINUATION_TOKEN_LEN)?;
            let number: FragmentNumber = token.parse().map_err(|_| {
                validate::invalid(token, member, "Member must be a continuation token returned by GetMedia")
            })?;
            StartPosition::ContinuationToken(number)
        }
        timestamp_kind => {
            let member = "StartSelector.StartTimestamp";
            let ms = timestamp_ms(validate::required(selector.start_timestamp, member)?, member)?;
            if timestamp_kind == "SERVER_TIMESTAMP" {
                StartPosition::ServerTimestamp(ms)
            } else {
                StartPosition::ProducerTimestamp(ms)
            }
        }
    };
    let limits = &st.config.limits.playback;
    let guard = readers.open(&record.arn, limits.max_get_media_connections_per_stream).map_err(|e| {
        ApiError::new(
            "ConnectionLimitExceededException",
            StatusCode::BAD_REQUEST,
            format!("Stream {} already has the maximum of {} GetMedia connections", record.name, e.max),
        )
    })?;
    let reader = stream.subscribe(position)?;
    tracing::info!(stream = %record.name, start = kind, "GetMedia reader opened");
    let session = Session { reader, stream, _guard: guard };
    let documents = stream::unfold(session, |mut s| async move { Some((s.next_document().await?, s)) });
    let body = Body::from_stream(paced(documents, limits.get_media_max_bytes_per_sec).map(Ok::<_, Infallible>));
    Ok(([(header::CONTENT_TYPE, MKV_CONTENT_TYPE)], body).into_response())
}

/// One GetMedia response body: the store reader and the bookkeeping that lives with it.
struct Session {
    reader: TailReader,
    stream: Stream,
    _guard: ReaderGuard,
}

impl Session {
    /// The next document to send, or `None` once the stream is gone.
    async fn next_document(&mut self) -> Option<Bytes> {
        match self.reader.next().await {
            Ok(Some(fragment)) => Some(self.fragment_document(&fragment)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(stream = %self.stream.id(), error = %e, "GetMedia could not read a fragment");
                let code = mkv_out::error_id(&e);
                Some(error_document(code))
            }
        }
    }

    fn fragment_document(&self, f: &Fragment) -> Bytes {
        let number = f.info.number.to_string();
        let newest = self.stream.latest_fragments(1).first().map_or(f.info.server_ts_ms, |n| n.server_ts_ms);
        let tags = [
            SimpleTag::new(tag::FRAGMENT_NUMBER, number.clone()),
            SimpleTag::new(tag::SERVER_TIMESTAMP, kvs_timestamp(f.info.server_ts_ms)),
            SimpleTag::new(tag::PRODUCER_TIMESTAMP, kvs_timestamp(f.info.producer_ts_ms)),
        ];
        let trailing = [
            SimpleTag::new(tag::CONTINUATION_TOKEN, number),
            SimpleTag::new(tag::MILLIS_BEHIND_NOW, newest.saturating_sub(f.info.server_ts_ms).to_string()),
        ];
        match mkv_out::fragment_document(f, &tags, &trailing) {
            Ok(doc) => doc,
            Err(e) => {
                tracing::warn!(stream = %self.stream.id(), fragment = %f.info.number, error = %e, "stored fragment header is not MKV");
                error_document(ERROR_INTERNAL)
            }
        }
    }
}

/// A tags-only document reporting KVS error `id`.
fn error_document(id: u32) -> Bytes {
    let code = match id {
        mkv_out::ERROR_FRAGMENT_NOT_FOUND => "FRAGMENT_NOT_FOUND",
        _ => "INTERNAL_ERROR",
    };
    mkv_out::tags_document(&[SimpleTag::new(tag::ERROR_CODE, code), SimpleTag::new(tag::ERROR_ID, id.to_string())])
}
