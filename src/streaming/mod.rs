//! Streaming sessions for ordinary players: HLS and DASH session URLs and their
//! playlists/fragments, GetClip, GetImages, and the `/viewer` web page.
//!
//! | file | job |
//! |---|---|
//! | [`session`] | session input validation, stream checks, the fragment window |
//! | [`token`] | signed, expiring session tokens (no server-side session table) |
//! | [`hls`] / [`dash`] | playlists / manifests |
//! | [`clip`] | GetClip |
//! | [`images`] | GetImages |
//!
//! The containers (stored fragment → timed samples, fMP4 and MPEG-TS segments) are sans-IO
//! and live in `reel_media::{source, fmp4, ts}`; [`parse_fragment`] is the glue to the store.
//!
//! The signed operations go through the auth layer; the sub-resources under `/hls/v1` and
//! `/dash/v1` are plain GETs authorized by their `SessionToken` alone, as in KVS.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::FromRef;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::{get, post};

use crate::api::Core;
use crate::api::reading::{IfAbsent, open_stream};
use crate::api::resolve::{self, ArnFormatError};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use reel_media::source::SourceError;
use reel_media::ts::TsError;
use reel_media::{fmp4, source, ts};
use reel_storage::{FragmentNumber, Stream};
use token::{Mode, Protocol, Session};

pub mod clip;
pub mod dash;
pub mod hls;
pub mod images;
pub mod session;
pub mod token;
pub mod viewer;

/// A stored fragment as timed samples per track ([`reel_media::source::parse`]).
pub fn parse_fragment(f: &reel_storage::Fragment) -> Result<reel_media::source::Parsed<'_>, SourceError> {
    reel_media::source::parse(
        &f.header,
        f.chunks.iter().map(|c| &c.data[..]),
        f.info.producer_ts_ms,
        f.info.duration_ms,
    )
}

/// Stored media a player cannot be given, as the modeled KVS error.
impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> Self {
        use http::StatusCode as S;
        let code = match e {
            SourceError::Unsupported(_) => "UnsupportedStreamMediaTypeException",
            SourceError::MissingCodecPrivate(_) => "MissingCodecPrivateDataException",
            SourceError::InvalidCodecPrivate { .. } => "InvalidCodecPrivateDataException",
            SourceError::Corrupt(_) => "InvalidMediaFrameException",
        };
        ApiError::new(code, S::BAD_REQUEST, e.to_string())
    }
}

/// A fragment that cannot be written as MPEG-TS: H.265 video, and audio ADTS cannot carry,
/// are an unsupported media type (as KVS names codecs it cannot serve), a broken sample an invalid frame.
impl From<TsError> for ApiError {
    fn from(e: TsError) -> Self {
        let code = match e {
            TsError::UnsupportedAudio(_) | TsError::UnsupportedVideo(_) => "UnsupportedStreamMediaTypeException",
            TsError::Video(_) | TsError::Audio(_) => "InvalidMediaFrameException",
        };
        ApiError::new(code, http::StatusCode::BAD_REQUEST, e.to_string())
    }
}

/// The stream an archived-media read names (authorized for `op`), which must retain media
/// (else `NoDataRetentionException`), and its store handle.
pub(crate) async fn retained_stream(
    st: &Core,
    principal: &Principal,
    op: &str,
    name: Option<&str>,
    arn: Option<&str>,
) -> ApiResult<(crate::meta::StreamRecord, Stream)> {
    let record =
        resolve::stream(st, principal, op, ApiError::not_authorized, name, arn, ArnFormatError::InvalidArgument)
            .await?;
    if record.data_retention_in_hours == 0 {
        return Err(crate::api::errors::no_data_retention(format!(
            "The stream {} has no data retention (DataRetentionInHours is 0)",
            record.name
        )));
    }
    let stream = open_stream(&st.store, &record.arn, IfAbsent::NotFound).await?;
    Ok((record, stream))
}

/// Signed routes (GetHLSStreamingSessionURL, GetDASHStreamingSessionURL, GetClip, GetImages).
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Core: FromRef<S>,
{
    Router::new()
        .route("/getHLSStreamingSessionURL", post(get_hls_url))
        .route("/getDASHStreamingSessionURL", post(get_dash_url))
        .route("/getClip", post(clip::get_clip))
        .route("/getImages", post(images::get_images))
}

/// Routes authorized by a session token or public (HLS/DASH sub-resources, `/viewer`).
pub fn public_router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Core: FromRef<S>,
{
    Router::new()
        .route("/hls/v1/getHLSMasterPlaylist.m3u8", get(hls_master))
        .route("/hls/v1/getHLSMediaPlaylist.m3u8", get(hls_media))
        .route("/hls/v1/getMP4InitFragment.mp4", get(init_fragment_hls))
        .route("/hls/v1/getMP4MediaFragment.mp4", get(media_fragment_hls))
        .route("/hls/v1/getTSFragment.ts", get(ts_fragment))
        .route("/dash/v1/getDASHManifest.mpd", get(dash_manifest))
        .route("/dash/v1/getMP4InitFragment.mp4", get(init_fragment_dash))
        .route("/dash/v1/getMP4MediaFragment.mp4", get(media_fragment_dash))
        .merge(viewer::router())
}

/// Current time in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The session-token signing key of this server's data directory.
fn signing_key(st: &Core) -> ApiResult<[u8; 32]> {
    token::key_for(&st.config.data_dir).map_err(|e| {
        tracing::error!(error = %e, "cannot load the streaming session key");
        ApiError::internal("cannot load the session signing key")
    })
}

/// Shared steps of both session operations: parse, validate, resolve and authorize the
/// stream, check retention/fragments/codecs (for `MPEG_TS`, also that the audio has a TS
/// form and the video is not H.265), sign the token.
async fn start_session(st: &Core, principal: &Principal, body: &[u8], protocol: Protocol) -> ApiResult<String> {
    let input: session::SessionInput = crate::api::body::parse(body)?;
    let now = now_ms();
    let limits = &st.config.limits.streaming;
    let mut s = session::validate(&input, protocol, limits, "", now)?;
    let op = match protocol {
        Protocol::Hls => "GetHLSStreamingSessionURL",
        Protocol::Dash => "GetDASHStreamingSessionURL",
    };
    let (record, stream) =
        retained_stream(st, principal, op, input.stream_name.as_deref(), input.stream_arn.as_deref()).await?;
    s.arn = record.arn;
    let tracks = session::check_stream(&stream, &s, now, limits).await?;
    if protocol == Protocol::Hls && s.container == token::Container::Ts {
        ts::check(&tracks)?;
    }
    s.anchor_ms = match s.mode {
        Mode::Live => session::window(&stream, &s, now, limits)?.first().map(|f| f.server_ts_ms),
        Mode::LiveReplay => s.start_ms,
        Mode::OnDemand => None,
    };
    Ok(token::issue(&signing_key(st)?, &s))
}

async fn get_hls_url(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let token = start_session(&st, &principal, &body, Protocol::Hls).await?;
    let url = format!("{}/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken={token}", st.urls.https);
    Ok(axum::Json(serde_json::json!({ "HLSStreamingSessionURL": url })))
}

async fn get_dash_url(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let token = start_session(&st, &principal, &body, Protocol::Dash).await?;
    let url = format!("{}/dash/v1/getDASHManifest.mpd?SessionToken={token}", st.urls.https);
    Ok(axum::Json(serde_json::json!({ "DASHStreamingSessionURL": url })))
}

/// A sub-resource request's verified session, its stream, and the token to repeat in URLs.
struct Opened {
    session: Session,
    stream: Stream,
    token: String,
}

type Params = Query<HashMap<String, String>>;

async fn open(st: &Core, q: &HashMap<String, String>, protocol: Protocol) -> ApiResult<Opened> {
    let token = q.get("SessionToken").ok_or_else(|| ApiError::invalid_argument("SessionToken is required"))?;
    let session = token::verify(&signing_key(st)?, token, protocol, now_ms() / 1000)?;
    let stream = open_stream(&st.store, &session.arn, IfAbsent::NotFound).await?;
    Ok(Opened { session, stream, token: token.clone() })
}

fn fragment_number(q: &HashMap<String, String>) -> ApiResult<Option<FragmentNumber>> {
    q.get("FragmentNumber").map(|n| n.parse::<FragmentNumber>().map_err(ApiError::from)).transpose()
}

fn track_number(q: &HashMap<String, String>) -> ApiResult<Option<u64>> {
    q.get("TrackNumber")
        .map(|n| n.parse::<u64>().map_err(|_| ApiError::invalid_argument("TrackNumber must be a positive integer")))
        .transpose()
}

/// A response with `content_type`, no caching of live resources, and CORS open to any
/// page (the token is the authorization, as in KVS).
fn reply(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    let mut res = Response::new(body.into());
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// Whether a session's playlist is final (ON_DEMAND, or LIVE_REPLAY past its end).
fn complete(s: &Session, now: u64) -> bool {
    match s.mode {
        Mode::OnDemand => true,
        Mode::Live => false,
        Mode::LiveReplay => s.end_ms.is_some_and(|e| s.start_ms.unwrap_or(0) + now.saturating_sub(s.issued_ms) > e),
    }
}

async fn hls_master(State(st): State<Core>, Query(q): Params) -> ApiResult<Response> {
    let o = open(&st, &q, Protocol::Hls).await?;
    let frags = session::window(&o.stream, &o.session, now_ms(), &st.config.limits.streaming)?;
    let Some(first) = frags.first() else { return Err(ApiError::not_found("No fragments found in the stream")) };
    let fragment = o.stream.read_fragment(first.number).await?;
    let tracks = source::tracks(&fragment.header)?;
    let body = hls::master(&o.token, &tracks, hls::peak_bandwidth(&frags));
    Ok(reply("application/x-mpegURL", body))
}

async fn hls_media(State(st): State<Core>, Query(q): Params) -> ApiResult<Response> {
    let o = open(&st, &q, Protocol::Hls).await?;
    let now = now_ms();
    let frags = session::window(&o.stream, &o.session, now, &st.config.limits.streaming)?;
    let sequence = match frags.first() {
        Some(first) => session::media_sequence(&o.stream, &o.session, first)?,
        None => 0,
    };
    let body = hls::media(&o.token, &o.session, &frags, sequence, complete(&o.session, now));
    Ok(reply("application/x-mpegURL", body))
}

/// Init segment from the header of the given fragment (or the newest one).
async fn init_fragment(st: &Core, q: &HashMap<String, String>, protocol: Protocol) -> ApiResult<Response> {
    let o = open(st, q, protocol).await?;
    let number = match fragment_number(q)? {
        Some(n) => session::fragment_in_session(&o.stream, &o.session, n)?,
        None => {
            let frags = session::window(&o.stream, &o.session, now_ms(), &st.config.limits.streaming)?;
            frags.first().map(|f| f.number).ok_or_else(|| ApiError::not_found("No fragments found in the stream"))?
        }
    };
    let fragment = o.stream.read_fragment(number).await?;
    let mut tracks = source::tracks(&fragment.header)?;
    if let Some(t) = track_number(q)? {
        tracks.retain(|x| x.number == t);
        if tracks.is_empty() {
            return Err(ApiError::invalid_argument(format!("the stream has no track {t}")));
        }
    }
    Ok(reply("video/mp4", fmp4::init_segment(&tracks, None)))
}

async fn init_fragment_hls(State(st): State<Core>, Query(q): Params) -> ApiResult<Response> {
    init_fragment(&st, &q, Protocol::Hls).await
}

async fn init_fragment_dash(State(st): State<Core>, Query(q): Params) -> ApiResult<Response> {
    init_fragment(&st, &q, Protocol::Dash).await
}

async fn media_fragment(o: &Opened, number: FragmentNumber, track: Option<u64>) -> ApiResult<Response> {
    let number = session::fragment_in_session(&o.stream, &o.session, number)?;
    let fragment = o.stream.read_fragment(number).await?;
    let parsed = parse_fragment(&fragment)?;
    let seq = u32::try_from(number.counter() & 0xffff_ffff).unwrap_or(0);
    Ok(reply("video/mp4", fmp4::media_segment_bytes(&parsed, track, seq, 0)))
}

async fn media_fragment_hls(State(st): State<Core>, Query(q): Params) -> ApiResult<Response> {
    let o = open(&st, &q, Protocol::Hls).await?;
    let number = fragment_number(&q)?.ok_or_else(|| ApiError::invalid_argument("FragmentNumber is required"))?;
    media_fragment(&o, number, track_number(&q)?).await
}

async fn ts_fragment(State(st): State<Core>, Query(q): Params) -> ApiResult<Response> {
    let o = open(&st, &q, Protocol::Hls).await?;
    let number = fragment_number(&q)?.ok_or_else(|| ApiError::invalid_argument("FragmentNumber is required"))?;
    let number = session::fragment_in_session(&o.stream, &o.session, number)?;
    let fragment = o.stream.read_fragment(number).await?;
    let parsed = parse_fragment(&fragment)?;
    let body = ts::segment(&parsed)?;
    Ok(reply("video/mp2t", body))
}

async fn dash_manifest(State(st): State<Core>, Query(q): Params) -> ApiResult<Response> {
    let o = open(&st, &q, Protocol::Dash).await?;
    let now = now_ms();
    let frags = session::window(&o.stream, &o.session, now, &st.config.limits.streaming)?;
    let Some(first) = frags.first() else { return Err(ApiError::not_found("No fragments found in the stream")) };
    let fragment = o.stream.read_fragment(first.number).await?;
    let tracks = source::tracks(&fragment.header)?;
    let body = dash::manifest(&o.token, &o.session, &tracks, &frags, complete(&o.session, now), now);
    Ok(reply("application/dash+xml", body))
}

async fn media_fragment_dash(State(st): State<Core>, Query(q): Params) -> ApiResult<Response> {
    let o = open(&st, &q, Protocol::Dash).await?;
    let number = match (fragment_number(&q)?, q.get("Time")) {
        (Some(n), _) => n,
        (None, Some(t)) => {
            let t: u64 = t.parse().map_err(|_| ApiError::invalid_argument("Time must be an integer"))?;
            dash::fragment_at(&o.stream, t)?
        }
        (None, None) => return Err(ApiError::invalid_argument("FragmentNumber or Time is required")),
    };
    media_fragment(&o, number, track_number(&q)?).await
}
