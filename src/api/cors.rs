//! Cross-origin calls from web pages (CORS): which origins may call reel's signed APIs and
//! read its playback URLs from a browser.
//!
//! The KVS endpoints answer browsers from any origin. That is how the KVS JavaScript SDK,
//! hls.js or an operator's own web app on its own origin reach them. reel does the same by
//! default (`--cors-origin '*'`). The preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered before authentication, as it carries no
//! signature. Calls are authorized by their SigV4 signature or session token, never by
//! cookies, so no credentials mode is offered. `/metrics`, `/healthz` and `/readyz` stay
//! same-origin: a page on another origin cannot read them. In a cluster, GetDataEndpoint and
//! a VIEWER's GetSignalingChannelEndpoint name other nodes, so a page served by one node
//! calls the others, and needs this even for reel's own console.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer, ExposeHeaders};

/// How long a browser may cache a preflight answer.
pub const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Response headers a page may read besides the CORS-safelisted ones: the request id and
/// the error type that KVS clients read from error answers.
const EXPOSED: [&str; 3] = ["x-amzn-requestid", "x-amzn-errortype", "date"];

/// Which web origins may call reel from a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsPolicy {
    /// Any origin (`*`), as KVS answers.
    Any,
    /// Only these origins (`scheme://host[:port]`).
    Origins(Vec<HeaderValue>),
    /// None: no CORS headers, so pages on other origins cannot read answers.
    Off,
}

/// A `--cors-origin` value that is not `*`, `none` or an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--cors-origin {0:?}: expected '*', 'none' or an origin like https://app.example.com[:port]")]
pub struct BadOrigin(pub String);

impl CorsPolicy {
    /// From the `--cors-origin` values: `*`, `none`, or origins (a trailing `/` is dropped).
    pub fn parse(values: &[String]) -> Result<Self, BadOrigin> {
        let values: Vec<&str> = values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()).collect();
        match values.as_slice() {
            [] | ["*"] => return Ok(Self::Any),
            ["none"] => return Ok(Self::Off),
            _ => {}
        }
        values
            .iter()
            .map(|v| {
                let origin = v.trim_end_matches('/');
                let ok = origin.split_once("://").is_some_and(|(scheme, host)| {
                    matches!(scheme, "http" | "https")
                        && !host.is_empty()
                        && !host.contains(|c: char| "/?#*".contains(c) || c.is_whitespace())
                });
                match (ok, HeaderValue::from_str(origin)) {
                    (true, Ok(h)) => Ok(h),
                    _ => Err(BadOrigin((*v).to_string())),
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self::Origins)
    }

    /// The layer answering preflights and marking answers readable; `None` when off.
    pub fn layer(&self) -> Option<CorsLayer> {
        let origin = match self {
            Self::Off => return None,
            Self::Any => AllowOrigin::any(),
            Self::Origins(list) => AllowOrigin::list(list.iter().cloned()),
        };
        let exposed: Vec<HeaderName> = EXPOSED.iter().map(|h| HeaderName::from_static(h)).collect();
        Some(
            CorsLayer::new()
                .allow_origin(origin)
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
                // SigV4 signs whichever headers the client chose: allow what it asks for.
                .allow_headers(AllowHeaders::mirror_request())
                .expose_headers(ExposeHeaders::list(exposed))
                .max_age(PREFLIGHT_MAX_AGE),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<CorsPolicy, BadOrigin> {
        CorsPolicy::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn origins_parse_strictly() {
        assert_eq!(parse(&[]), Ok(CorsPolicy::Any));
        assert_eq!(parse(&["*"]), Ok(CorsPolicy::Any));
        assert_eq!(parse(&["none"]), Ok(CorsPolicy::Off));
        assert_eq!(
            parse(&["https://app.example.com/", "http://127.0.0.1:3000"]),
            Ok(CorsPolicy::Origins(vec![
                HeaderValue::from_static("https://app.example.com"),
                HeaderValue::from_static("http://127.0.0.1:3000"),
            ]))
        );
        for bad in ["app.example.com", "ftp://x", "https://", "https://a/b", "*", "none"] {
            assert!(parse(&["https://ok.example", bad]).is_err(), "{bad}");
        }
        assert!(parse(&["https://a.example\n"]).is_ok(), "trimmed");
        assert!(parse(&["https://a.exa mple"]).is_err());
    }
}
