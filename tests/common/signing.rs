//! Request signing with the official `aws-sigv4` crate, for tests that build requests the
//! SDK clients do not (presigned WebSocket URLs, hand-made signed POSTs).
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;

/// Region the test signatures are scoped to.
pub const REGION: &str = "us-west-2";

/// RFC 3986 encoding of a query value, as SigV4 canonicalizes it.
pub fn rfc3986(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

fn params<'a>(
    identity: &'a aws_smithy_runtime_api::client::identity::Identity,
    settings: SigningSettings,
) -> aws_sigv4::http_request::SigningParams<'a> {
    v4::SigningParams::builder()
        .identity(identity)
        .region(REGION)
        .name("kinesisvideo")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .expect("signing params")
        .into()
}

/// Presign `url` (whose query values must already be RFC 3986 encoded) the way the KVS JS
/// SDK presigns WebSocket connects: query signature, `X-Amz-Expires=299`.
pub fn presign_url(url: &str, key_id: &str, secret: &str) -> String {
    let identity = aws_credential_types::Credentials::new(key_id, secret, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(299));
    let signable = SignableRequest::new("GET", url, std::iter::empty(), SignableBody::Bytes(&[])).expect("signable");
    let (instructions, _) = sign(signable, &params(&identity, settings)).expect("sign").into_parts();
    let mut out = url.to_string();
    for (name, value) in instructions.params() {
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(&format!("{name}={}", rfc3986(value)));
    }
    out
}

/// The SigV4 headers (`authorization`, `x-amz-date`, …) for a JSON POST of `body` to `url`.
pub fn signed_post_headers(url: &str, body: &[u8], key_id: &str, secret: &str) -> Vec<(String, String)> {
    let identity = aws_credential_types::Credentials::new(key_id, secret, None, None, "test").into();
    let headers = [("content-type", "application/json")];
    let signable =
        SignableRequest::new("POST", url, headers.iter().copied(), SignableBody::Bytes(body)).expect("signable");
    let (instructions, _) = sign(signable, &params(&identity, SigningSettings::default())).expect("sign").into_parts();
    let mut out: Vec<(String, String)> = instructions.headers().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    out.push(("content-type".into(), "application/json".into()));
    out
}
