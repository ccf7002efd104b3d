//! GetClip: one MP4 file for a timestamp range, streamed fragment by fragment.
//!
//! The file is a fragmented MP4 whose `ftyp` + `moov` come first (so it plays while it
//! downloads, like a faststart file), with the clip duration in `mehd`, followed by one
//! `moof` + `mdat` per stored fragment, decode times counted from the clip start. Only one
//! stored fragment is in memory at a time; the listing (index metadata only) decides the
//! limits before the first byte is sent.

use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::response::Response;
use futures::StreamExt;
use serde::Deserialize;

use super::session::{self, Selector};
use crate::api::Core;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use reel_media::{fmp4, source};
use reel_storage::{TimestampKind, TimestampRange};

/// `GetClip` input.
#[derive(Debug, Default, Deserialize)]
pub struct ClipInput {
    #[serde(rename = "StreamName")]
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    #[serde(rename = "ClipFragmentSelector")]
    selector: Option<Selector>,
}

/// `POST /getClip` → `video/mp4` body.
pub async fn get_clip(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Response> {
    let input: ClipInput = crate::api::body::parse(&body)?;
    let limits = &st.config.limits.streaming;
    let selector =
        input.selector.as_ref().ok_or_else(|| ApiError::invalid_argument("ClipFragmentSelector is required"))?;
    if selector.kind.is_none() {
        return Err(ApiError::invalid_argument("ClipFragmentSelector.FragmentSelectorType is required"));
    }
    let producer = session::selector_kind(Some(selector), "clipFragmentSelector.fragmentSelectorType")?;
    let (start, end) = match selector.range.as_ref() {
        Some(session::Range { start: Some(s), end: Some(e) }) => {
            (session::seconds_to_ms(*s, "StartTimestamp")?, session::seconds_to_ms(*e, "EndTimestamp")?)
        }
        _ => return Err(ApiError::invalid_argument("TimestampRange with StartTimestamp and EndTimestamp is required")),
    };
    session::check_range(start, end, limits)?;
    if !producer && start > super::now_ms() {
        return Err(ApiError::invalid_argument("StartTimestamp must be in the past"));
    }
    let (_, stream) =
        super::retained_stream(&st, &principal, "GetClip", input.stream_name.as_deref(), input.stream_arn.as_deref())
            .await?;
    let kind = if producer { TimestampKind::Producer } else { TimestampKind::Server };
    let page =
        stream.list_fragments(TimestampRange { kind, start_ms: start, end_ms: end }, limits.max_clip_fragments + 1)?;
    let frags = page.fragments;
    if frags.is_empty() {
        return Err(ApiError::not_found("No fragments found in the stream for the given timestamp range"));
    }
    if frags.len() > limits.max_clip_fragments {
        return Err(ApiError::client_limit(format!(
            "The clip would have more than {} fragments; request a shorter range",
            limits.max_clip_fragments
        )));
    }
    let bytes: u64 = frags.iter().map(|f| f.payload_bytes).sum();
    if bytes > limits.max_clip_bytes {
        return Err(ApiError::client_limit(format!(
            "The clip would exceed {} bytes of media; request a shorter range",
            limits.max_clip_bytes
        )));
    }
    let first = stream.read_fragment(frags[0].number).await?;
    let tracks = source::tracks(&first.header)?;
    let origin = i64::try_from(frags[0].producer_ts_ms).unwrap_or(i64::MAX);
    let duration: u64 = frags.iter().map(|f| u64::from(f.duration_ms)).sum();
    let init = Bytes::from(fmp4::init_segment(&tracks, Some(duration)));
    let track_numbers: Vec<u64> = tracks.iter().map(|t| t.number).collect();
    // One stored fragment per step: read, repackage, send.
    let parts = futures::stream::unfold((0usize, frags), move |(i, frags)| {
        let stream = stream.clone();
        let track_numbers = track_numbers.clone();
        async move {
            let info = *frags.get(i)?;
            let out = match stream.read_fragment(info.number).await {
                Ok(f) => match super::parse_fragment(&f) {
                    Ok(p) if p.tracks.iter().map(|t| t.number).eq(track_numbers.iter().copied()) => {
                        Ok(Bytes::from(fmp4::media_segment_bytes(&p, None, i as u32 + 1, origin)))
                    }
                    Ok(_) => Err(std::io::Error::other("the track layout changed inside the clip")),
                    Err(e) => Err(std::io::Error::other(e.to_string())),
                },
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            if let Err(e) = &out {
                tracing::warn!(error = %e, fragment = %info.number, "GetClip aborted mid-stream");
            }
            Some((out, (i + 1, frags)))
        }
    });
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(init) }).chain(parts);
    let mut res = Response::new(Body::from_stream(body));
    res.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("video/mp4"));
    Ok(res)
}
