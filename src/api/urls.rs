//! The base URLs reel hands to clients (endpoint responses, signaling, ICE servers).

/// Base URLs reel hands to clients (no trailing slash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrls {
    /// `https://host:port` (or `http://` without TLS): control plane, HTTPS signaling,
    /// WEBRTC storage and data-plane endpoints.
    pub https: String,
    /// `wss://host:port` (or `ws://` without TLS): the signaling WebSocket endpoint.
    pub wss: String,
}

impl PublicUrls {
    /// Derive both URLs from the HTTP(S) base URL.
    pub fn from_base(base: &str) -> Self {
        let base = base.trim_end_matches('/').to_string();
        let wss = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base.clone()
        };
        Self { https: base, wss }
    }
}

/// The host part of a URL (`https://[::1]:443/x` → `::1`), or `None` if it has none.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_from_urls() {
        assert_eq!(url_host("https://reel.example:8443/x").as_deref(), Some("reel.example"));
        assert_eq!(url_host("https://[::1]:443").as_deref(), Some("::1"));
        assert_eq!(url_host("http://10.0.0.1").as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn websocket_url_follows_scheme() {
        assert_eq!(PublicUrls::from_base("https://h:1/").wss, "wss://h:1");
        assert_eq!(PublicUrls::from_base("http://h:1").wss, "ws://h:1");
    }
}
