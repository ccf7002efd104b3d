//! SigV4 signing the way the official KVS clients do it: header-signed JSON POSTs and the
//! presigned `ConnectAsMaster` WebSocket URL (query-string signature, as the JS SDK builds it).
//!
//! Built on the `aws-sigv4` crate only (no SDK client), so that `reel demo` can embed the
//! simulated camera without the whole AWS SDK.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;

/// Service name KVS signs every API with (control plane, signaling, media, storage).
pub const SERVICE: &str = "kinesisvideo";
/// How long a presigned `ConnectAsMaster` URL stays valid (the JS SDK uses 299 s).
pub const PRESIGN_EXPIRES: Duration = Duration::from_secs(299);

/// An access key pair and the region requests are signed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Region (reel's `--region`, default `us-west-2`).
    pub region: String,
}

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The URL or a header is not signable.
    #[error("cannot sign request: {0}")]
    Signing(String),
    /// The URL has no host.
    #[error("URL has no host: {0}")]
    NoHost(String),
}

impl Signer {
    /// A signer for this key pair and region.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        region: impl Into<String>,
    ) -> Self {
        Self { access_key_id: access_key_id.into(), secret_access_key: secret_access_key.into(), region: region.into() }
    }

    fn identity(&self) -> aws_smithy_runtime_api::client::identity::Identity {
        aws_credential_types::Credentials::new(&self.access_key_id, &self.secret_access_key, None, None, "reel-sim")
            .into()
    }

    /// The headers (`authorization`, `x-amz-date`, …) that sign `POST url` with this JSON body.
    pub fn sign_post(&self, url: &str, body: &[u8], now: SystemTime) -> Result<Vec<(String, String)>, SignError> {
        self.sign_headers(url, &[("content-type", "application/json")], body, now)
    }

    /// The headers that sign a streaming `POST url` (PutMedia) as the KVS C producer does:
    /// `headers` signed with the SHA-256 of an empty body, since the body is still to come.
    pub fn sign_streaming_post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        now: SystemTime,
    ) -> Result<Vec<(String, String)>, SignError> {
        self.sign_headers(url, headers, &[], now)
    }

    /// The signing headers of `POST url` with `headers` (and the host) and `body` signed.
    fn sign_headers(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        now: SystemTime,
    ) -> Result<Vec<(String, String)>, SignError> {
        let host = host_of(url).ok_or_else(|| SignError::NoHost(url.to_string()))?;
        let identity = self.identity();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(now)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| SignError::Signing(e.to_string()))?
            .into();
        let all: Vec<(&str, &str)> = std::iter::once(("host", host)).chain(headers.iter().copied()).collect();
        let signable = SignableRequest::new("POST", url, all.iter().copied(), SignableBody::Bytes(body))
            .map_err(|e| SignError::Signing(e.to_string()))?;
        let (instructions, _) = sign(signable, &params).map_err(|e| SignError::Signing(e.to_string()))?.into_parts();
        Ok(instructions.headers().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    /// A presigned `ConnectAsMaster` URL for `channel_arn` on the `WSS` endpoint.
    pub fn presign_connect_as_master(
        &self,
        wss: &str,
        channel_arn: &str,
        now: SystemTime,
    ) -> Result<String, SignError> {
        self.presign_wss(wss, channel_arn, None, now)
    }

    /// A presigned `ConnectAsViewer` URL (`X-Amz-ClientId`) for `channel_arn` on the `WSS`
    /// endpoint.
    pub fn presign_connect_as_viewer(
        &self,
        wss: &str,
        channel_arn: &str,
        client_id: &str,
        now: SystemTime,
    ) -> Result<String, SignError> {
        self.presign_wss(wss, channel_arn, Some(client_id), now)
    }

    /// The presigned signaling URL: master without a ClientId, viewer with one.
    fn presign_wss(
        &self,
        wss: &str,
        channel_arn: &str,
        client_id: Option<&str>,
        now: SystemTime,
    ) -> Result<String, SignError> {
        let base = if wss.ends_with('/') { wss.to_string() } else { format!("{wss}/") };
        let mut url = format!("{base}?X-Amz-ChannelARN={}", rfc3986(channel_arn));
        if let Some(id) = client_id {
            url.push_str(&format!("&X-Amz-ClientId={}", rfc3986(id)));
        }
        let identity = self.identity();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(PRESIGN_EXPIRES);
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(now)
            .settings(settings)
            .build()
            .map_err(|e| SignError::Signing(e.to_string()))?
            .into();
        let signable = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
            .map_err(|e| SignError::Signing(e.to_string()))?;
        let (instructions, _) = sign(signable, &params).map_err(|e| SignError::Signing(e.to_string()))?.into_parts();
        for (name, value) in instructions.params() {
            url.push_str(&format!("&{name}={}", rfc3986(value)));
        }
        Ok(url)
    }
}

/// `host[:port]` of an absolute URL.
pub fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let host = rest.split(['/', '?']).next()?;
    (!host.is_empty()).then_some(host)
}

/// RFC 3986 percent-encoding (unreserved characters kept), as SigV4 query strings need.
pub fn rfc3986(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_urls() {
        assert_eq!(host_of("http://198.18.0.1:8080/x"), Some("198.18.0.1:8080"));
        assert_eq!(host_of("wss://h?X=1"), Some("h"));
        assert_eq!(host_of("nope"), None);
    }

    #[test]
    fn presigned_url_carries_the_query_signature() {
        let s = Signer::new("AKIDEXAMPLE", "secret", "us-west-2");
        let url = s
            .presign_connect_as_master("ws://h:1", "arn:aws:kinesisvideo:us-west-2:1:channel/c/1", SystemTime::now())
            .unwrap();
        assert!(url.starts_with("ws://h:1/?X-Amz-ChannelARN=arn%3Aaws%3Akinesisvideo"), "{url}");
        for p in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE",
            "X-Amz-Signature=",
            "X-Amz-Expires=299",
        ] {
            assert!(url.contains(p), "{p} missing in {url}");
        }
    }

    #[test]
    fn viewer_url_carries_the_client_id() {
        let s = Signer::new("AKIDEXAMPLE", "secret", "us-west-2");
        let arn = "arn:aws:kinesisvideo:us-west-2:1:channel/c/1";
        let url = s.presign_connect_as_viewer("ws://h:1", arn, "viewer-1", SystemTime::now()).unwrap();
        assert!(url.contains("&X-Amz-ClientId=viewer-1&"), "{url}");
        assert!(url.contains("X-Amz-Signature="), "{url}");
    }

    #[test]
    fn post_headers_sign_host_and_body() {
        let s = Signer::new("AKIDEXAMPLE", "secret", "us-west-2");
        let h = s.sign_post("http://h:1/createStream", b"{}", SystemTime::now()).unwrap();
        let auth = h.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.clone()).unwrap();
        assert!(auth.contains("/us-west-2/kinesisvideo/aws4_request"), "{auth}");
        assert!(auth.contains("SignedHeaders=content-type;host;"), "{auth}");
    }
}
