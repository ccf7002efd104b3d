//! The media viewer: one HTML page at `/viewer` with hls.js, both embedded in the binary.
//!
//! The page signs ListStreams / GetHLSStreamingSessionURL / ListFragments requests in the
//! browser (SigV4 with WebCrypto) from credentials the user enters, or plays a session URL
//! given directly (`/viewer#<url-encoded HLS session URL>`). Its "Live (WebRTC)" mode joins
//! the storage session of the channel that stores into the stream as a viewer
//! (JoinStorageSessionAsViewer), with the console's `/console/live-webrtc.js` and the KVS JS
//! SDK it embeds.

use axum::Router;
use axum::extract::FromRef;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::get;

use crate::api::Core;

/// The page.
pub(crate) const INDEX_HTML: &str = include_str!("viewer/index.html");
/// hls.js 1.7.4 light build (Apache-2.0, see `viewer/hls.LICENSE`), checked in minified.
const HLS_JS: &str = include_str!("viewer/hls.light.min.js");

/// `/viewer` and its script.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Core: FromRef<S>,
{
    Router::new()
        .route("/viewer", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/viewer/hls.light.min.js", get(|| async { asset("text/javascript; charset=utf-8", HLS_JS) }))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut res = Response::new(body.into());
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}
