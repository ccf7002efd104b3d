//! The console: a browser UI for the seed's flows (channels, streams, media storage, a
//! master with ingest and storage, the sessions dashboard), embedded in the binary and
//! served at `/` and `/console`. It signs every API request in the browser with the
//! credentials the user enters (kept in `sessionStorage`), so policies apply to it exactly
//! as to the AWS CLI; the server only serves static files.

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page shell.
const INDEX_HTML: &str = include_str!("assets/index.html");
/// The single-page app (ES module).
const APP_JS: &str = include_str!("assets/app.js");
/// SigV4 signing with WebCrypto (ES module).
const SIGV4_JS: &str = include_str!("assets/sigv4.js");
/// Live (WebRTC) viewing of a storage session (ES module), shared with `/viewer`.
const LIVE_WEBRTC_JS: &str = include_str!("assets/live-webrtc.js");
/// Styles.
const STYLE_CSS: &str = include_str!("assets/style.css");
/// The KVS WebRTC SDK for JavaScript 2.9.0 (Apache-2.0, `assets/kvs-webrtc.LICENSE`), as
/// published on npm (`dist/kvs-webrtc.min.js`): the master page runs the SDK's own
/// signaling client, as the KVS console does, and the console must work offline.
const KVS_WEBRTC_JS: &str = include_str!("assets/kvs-webrtc.2.9.0.min.js");

/// `/console` and its assets (public: static files, no data).
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/console", get(|| async { index() }))
        .route("/console/", get(|| async { index() }))
        .route("/console/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/console/sigv4.js", get(|| async { asset("text/javascript; charset=utf-8", SIGV4_JS) }))
        .route("/console/live-webrtc.js", get(|| async { asset("text/javascript; charset=utf-8", LIVE_WEBRTC_JS) }))
        .route("/console/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }))
        .route("/console/kvs-webrtc.min.js", get(|| async { asset("text/javascript; charset=utf-8", KVS_WEBRTC_JS) }))
}

/// Serves the console at `/` for a plain browser visit. `GET /` is also the KVS signaling
/// WebSocket endpoint (`?X-Amz-ChannelARN=…`, an upgrade): those pass through untouched.
pub async fn root(req: Request, next: Next) -> Response {
    let plain_visit = req.method() == Method::GET
        && req.uri().path() == "/"
        && req.uri().query().is_none_or(str::is_empty)
        && !req.headers().contains_key(header::UPGRADE);
    if plain_visit { index() } else { next.run(req).await }
}

fn index() -> Response {
    let mut res = asset("text/html; charset=utf-8", INDEX_HTML);
    // The page runs only its own scripts and talks only to its own origin (the API).
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self' https: wss: http://127.0.0.1:* http://localhost:*; media-src 'self' blob:; worker-src 'self' blob:; img-src 'self' data:",
        ),
    );
    res
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_sdk_is_pinned_and_licensed() {
        assert!(KVS_WEBRTC_JS.starts_with("/* Amazon Kinesis Video Streams WebRTC SDK for JavaScript v2.9.0"));
        assert!(include_str!("assets/kvs-webrtc.LICENSE").contains("Apache License"));
        // Every asset the page loads is one the router serves.
        for path in ["/console/app.js", "/console/style.css"] {
            assert!(INDEX_HTML.contains(path), "{path}");
        }
        assert!(APP_JS.contains("/console/sigv4.js") && APP_JS.contains("/console/kvs-webrtc.min.js"));
        assert!(APP_JS.contains("/console/live-webrtc.js") && LIVE_WEBRTC_JS.contains("/console/kvs-webrtc.min.js"));
        assert!(crate::streaming::viewer::INDEX_HTML.contains("/console/live-webrtc.js"));
    }
}
