//! GetImages: images of a stream's stored video at sampled timestamps, as JPEG or PNG.
//!
//! | file | job |
//! |---|---|
//! | [`request`] | input validation, the sampling timestamps of a page, the page token |
//! | [`plan`] | which stored frame each timestamp shows |
//! | [`picture`] | decode, scale and encode one fragment's frames |
//!
//! A page has at most 25 images. Each fragment that holds one of them is read once and its
//! video decoded from its keyframe up to the last frame wanted, on a blocking thread; at
//! most `limits.streaming.image_decodes` pages decode at a time on a node, so image requests
//! cannot take every core from ingest. A timestamp no fragment spans is answered
//! `NO_MEDIA`; a frame that will not decode (or a fragment without H.264: audio only, or
//! H.265, which OpenH264 cannot decode) `MEDIA_ERROR`.

pub mod picture;
pub mod plan;
pub mod request;

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use tokio::sync::Semaphore;

use self::plan::Source;
use self::request::Request;
use crate::api::Core;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use reel_media::source::Codec;
use reel_storage::{FragmentInfo, FragmentNumber, Stream, TimestampKind, TimestampRange};

/// Longest stored fragment looked back for, ms: a timestamp is found in a fragment that
/// started up to this long before it.
const FRAGMENT_LOOKBACK_MS: u64 = 60_000;
/// Fragments listed at most for one page.
const MAX_LISTED: usize = 10_000;
/// Largest `ImageContent` (base64 characters) the model allows.
const MAX_IMAGE_CONTENT: usize = 6_291_456;

/// Prometheus counter: GetImages images by `outcome` (`image`, `no_media`, `media_error`).
pub const IMAGES: &str = "reel_images_total";

/// The pages that may decode at once on this node.
#[derive(Debug, Clone)]
pub struct Decoders(Arc<Semaphore>);

impl Decoders {
    /// At most `n` (at least 1) pages decoding at once.
    pub fn new(n: usize) -> Self {
        Self(Arc::new(Semaphore::new(n.max(1))))
    }
}

/// One `Images` element.
#[derive(Debug, Serialize)]
struct Image {
    /// Epoch seconds, a JSON number.
    #[serde(rename = "TimeStamp")]
    time_stamp: f64,
    #[serde(rename = "Error", skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    #[serde(rename = "ImageContent", skip_serializing_if = "Option::is_none")]
    content: Option<String>,
}

/// `GetImages` output.
#[derive(Debug, Serialize)]
pub struct Output {
    #[serde(rename = "Images")]
    images: Vec<Image>,
    #[serde(rename = "NextToken", skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// Why a sampling time has no image (the model's `ImageError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoImage {
    /// No stored fragment spans it.
    NoMedia,
    /// Its frame gave no image (no H.264, a decode or encode failure, too large).
    MediaError,
}

impl NoImage {
    /// The `Error` member.
    fn wire(self) -> &'static str {
        match self {
            Self::NoMedia => "NO_MEDIA",
            Self::MediaError => "MEDIA_ERROR",
        }
    }
}

/// What one timestamp got: the image (base64) or why there is none.
type Outcome = Result<String, NoImage>;

/// `POST /getImages` → `{Images, NextToken}`.
pub async fn get_images(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<Output>> {
    let input: request::Input = crate::api::body::parse(&body)?;
    let req = request::parse(&input)?;
    let (_, stream) = crate::streaming::retained_stream(
        &st,
        &principal,
        "GetImages",
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    )
    .await?;
    let (stamps, next_token) = req.page_timestamps();
    let sources = locate_all(&stream, &req, &stamps)?;
    let outcomes = {
        let _permit = st.images.0.acquire().await.map_err(|_| ApiError::internal("the server is shutting down"))?;
        render(&stream, &req, &sources).await
    };
    let images = stamps
        .iter()
        .zip(outcomes)
        .map(|(&t, outcome)| {
            let kind = match &outcome {
                Ok(_) => "image",
                Err(NoImage::NoMedia) => "no_media",
                Err(NoImage::MediaError) => "media_error",
            };
            metrics::counter!(IMAGES, "outcome" => kind).increment(1);
            let (content, error) = match outcome {
                Ok(c) => (Some(c), None),
                Err(e) => (None, Some(e.wire())),
            };
            Image { time_stamp: t as f64 / 1000.0, error, content }
        })
        .collect();
    Ok(Json(Output { images, next_token }))
}

/// The source of each of `stamps`.
fn locate_all(stream: &Stream, req: &Request, stamps: &[u64]) -> ApiResult<Vec<Source>> {
    let (Some(&first), Some(&last)) = (stamps.first(), stamps.last()) else { return Ok(Vec::new()) };
    let kind = if req.producer { TimestampKind::Producer } else { TimestampKind::Server };
    let range = TimestampRange { kind, start_ms: first.saturating_sub(FRAGMENT_LOOKBACK_MS), end_ms: last };
    let fragments: Vec<FragmentInfo> = stream.list_fragments(range, MAX_LISTED)?.fragments;
    Ok(stamps.iter().map(|&t| plan::locate(t, req.producer, &fragments)).collect())
}

/// The image (base64) or error of each source, reading each fragment once.
async fn render(stream: &Stream, req: &Request, sources: &[Source]) -> Vec<Outcome> {
    let mut out: Vec<Outcome> = vec![Err(NoImage::NoMedia); sources.len()];
    let mut fragments: Vec<FragmentNumber> = Vec::new();
    for s in sources {
        if let Source::Frame { fragment, .. } = s
            && !fragments.contains(fragment)
        {
            fragments.push(*fragment);
        }
    }
    for number in fragments {
        let wanted: Vec<(usize, i64)> = sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Source::Frame { fragment, at_ms } if *fragment == number => Some((i, *at_ms)),
                _ => None,
            })
            .collect();
        let images = match stream.read_fragment(number).await {
            Ok(fragment) => {
                let (format, size) = (req.format, req.size);
                let at: Vec<i64> = wanted.iter().map(|(_, t)| *t).collect();
                tokio::task::spawn_blocking(move || fragment_images(&fragment, &at, format, size))
                    .await
                    .unwrap_or_else(|_| vec![Err(NoImage::MediaError); wanted.len()])
            }
            Err(e) => {
                tracing::warn!(fragment = %number, error = %e, "GetImages cannot read a fragment");
                vec![Err(NoImage::MediaError); wanted.len()]
            }
        };
        for ((i, _), image) in wanted.iter().zip(images) {
            out[*i] = image;
        }
    }
    out
}

/// The images of the frames on screen at producer times `at` in `fragment`.
fn fragment_images(
    fragment: &reel_storage::Fragment,
    at: &[i64],
    format: request::Format,
    size: request::Size,
) -> Vec<Outcome> {
    let parsed = match crate::streaming::parse_fragment(fragment) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(fragment = %fragment.info.number, error = %e, "GetImages cannot parse a fragment");
            return vec![Err(NoImage::MediaError); at.len()];
        }
    };
    let video = parsed.tracks.iter().zip(&parsed.samples).find_map(|(t, s)| match &t.codec {
        Codec::Avc(config) => Some((config, s)),
        // Only H.264 is decoded (OpenH264): H.265 frames, like audio, give no image.
        Codec::Hevc(_) | Codec::Opus(_) | Codec::Aac(_) => None,
    });
    let Some((config, samples)) = video else { return vec![Err(NoImage::MediaError); at.len()] };
    let frames: Vec<Option<usize>> = at.iter().map(|&t| plan::frame_at(samples, t)).collect();
    let wanted: Vec<usize> = frames.iter().flatten().copied().collect();
    let mut pictures = picture::decode(config, samples, &wanted).into_iter();
    frames
        .iter()
        .map(|frame| {
            let picture = frame.and_then(|_| pictures.next()).ok_or(NoImage::MediaError)?;
            let encoded = picture.and_then(|p| picture::encode(&picture::resize(&p, size), format)).map_err(|e| {
                tracing::debug!(fragment = %fragment.info.number, error = %e, "GetImages media error");
                NoImage::MediaError
            })?;
            let content = STANDARD.encode(encoded);
            if content.len() > MAX_IMAGE_CONTENT { Err(NoImage::MediaError) } else { Ok(content) }
        })
        .collect()
}
