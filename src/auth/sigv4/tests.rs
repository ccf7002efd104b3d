//! SigV4 verification tests. Requests are signed by the official `aws-sigv4` crate (the
//! signer of every Rust SDK client) and by hand the way the KVS JS and C SDKs sign, then
//! verified through [`Authenticator`]; every signed part is then tampered with.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4 as aws_v4;
use http::HeaderValue;
use percent_encoding::AsciiSet;

use super::*;
use crate::auth::{AccessKey, Authenticator, CredentialStore, KeySource, Policy, Principal};
use crate::limits::Limits;

const AKID: &str = "AKIAREELUNITTEST0001";
const SECRET: &str = "unit/test+secret=with-odd-chars0000000000";
const TOKEN: &str = "FQoGZXIvYXdzE+session/token==";
const HOST: &str = "127.0.0.1:8080";
const REGION: &str = "us-west-2";
const ARN: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/cam-1/1700000000000";

/// 2026-11-26T02:15:00Z, the "now" of most tests.
fn at(h: u32, m: u32, s: u32) -> SystemTime {
    let t = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap().and_hms_opt(h, m, s).unwrap().and_utc();
    UNIX_EPOCH + Duration::from_secs(t.timestamp() as u64)
}

fn now() -> SystemTime {
    at(2, 15, 0)
}

/// A request as the server receives it (origin-form target plus a Host header).
#[derive(Debug, Clone)]
struct Received {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn with(&self, f: impl FnOnce(&mut Self)) -> Self {
        let mut r = self.clone();
        f(&mut r);
        r
    }

    fn set_uri(&mut self, uri: &str) {
        self.uri = uri.parse().unwrap();
    }

    fn set_header(&mut self, name: &'static str, value: &str) {
        self.headers.insert(name, HeaderValue::from_str(value).unwrap());
    }

    fn query_replace(&mut self, from: &str, to: &str) {
        let s = self.uri.to_string();
        assert!(s.contains(from), "{s} lacks {from}");
        self.set_uri(&s.replacen(from, to, 1));
    }

    fn auth_replace(&mut self, from: &str, to: &str) {
        let s = self.headers["authorization"].to_str().unwrap().to_owned();
        assert!(s.contains(from), "{s} lacks {from}");
        self.set_header("authorization", &s.replacen(from, to, 1));
    }
}

/// What to sign and how.
#[derive(Clone)]
struct Signing<'a> {
    method: &'a str,
    path_query: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
    akid: &'a str,
    secret: &'a str,
    token: Option<&'a str>,
    service: &'a str,
    time: SystemTime,
    presign: Option<Duration>,
    unsigned_payload: bool,
    content_sha256_header: bool,
}

impl Default for Signing<'_> {
    fn default() -> Self {
        Self {
            method: "POST",
            path_query: "/describeSignalingChannel",
            headers: vec![("content-type", "application/json"), ("user-agent", "aws-sdk-rust/1.0")],
            body: br#"{"ChannelName":"cam-1"}"#,
            akid: AKID,
            secret: SECRET,
            token: None,
            service: SERVICE,
            time: at(2, 14, 0),
            presign: None,
            unsigned_payload: false,
            content_sha256_header: false,
        }
    }
}

/// Sign with the official `aws-sigv4` crate and return the request as received.
fn aws_sign(s: &Signing<'_>) -> Received {
    let identity = Credentials::new(s.akid, s.secret, s.token.map(str::to_owned), None, "test").into();
    let mut settings = SigningSettings::default();
    if let Some(expires) = s.presign {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires);
    }
    if s.content_sha256_header {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = aws_v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(s.service)
        .time(s.time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let url = format!("http://{HOST}{}", s.path_query);
    let body = if s.unsigned_payload { SignableBody::UnsignedPayload } else { SignableBody::Bytes(s.body) };
    let signable = SignableRequest::new(s.method, url.clone(), s.headers.iter().copied(), body).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut builder = http::Request::builder().method(s.method).uri(&url);
    for (k, v) in &s.headers {
        builder = builder.header(*k, *v);
    }
    let mut req = builder.body(s.body.to_vec()).unwrap();
    instructions.apply_to_request_http1x(&mut req);
    let (mut parts, body) = req.into_parts();
    parts.headers.insert("host", HeaderValue::from_static(HOST));
    let uri = parts.uri.path_and_query().unwrap().as_str().parse().unwrap();
    Received { method: parts.method, uri, headers: parts.headers, body }
}

fn authenticator(keys: Vec<AccessKey>) -> Authenticator {
    Authenticator::new(CredentialStore::from_keys(keys).unwrap(), &Limits::default())
}

fn root_auth() -> Authenticator {
    authenticator(vec![AccessKey::root(AKID, SECRET, KeySource::Flags)])
}

fn token_auth() -> Authenticator {
    authenticator(vec![AccessKey::with_policy(AKID, SECRET, Some(TOKEN.into()), Policy::default(), KeySource::Flags)])
}

fn check(auth: &Authenticator, r: &Received, now: SystemTime) -> Result<Principal, AuthError> {
    auth.authenticate(&r.method, &r.uri, &r.headers, Payload::Buffered(&r.body), now)
}

fn assert_mismatch(result: Result<Principal, AuthError>, what: &str) {
    match result {
        Err(AuthError::SignatureMismatch(_)) => {}
        other => panic!("{what}: expected a signature mismatch, got {other:?}"),
    }
}

const PATHS: &[&str] = &[
    "/",
    "/createSignalingChannel",
    "/v1/get-ice-server-config",
    "/a%20b/c%2Fd",
    "/x/./y/../z",
    "//double//slash/",
    "/colon:and@at!$&'()*+,;=",
    "/%E2%9C%93/unicode",
    "/trailing/.",
];

const QUERIES: &[&str] = &[
    "",
    "?b=2&a=1&a=0",
    "?X-Amz-ChannelARN=arn%3Aaws%3Akinesisvideo%3Aus-west-2%3A123456789012%3Achannel%2Fcam-1%2F1700000000000&X-Amz-ClientId=viewer-1",
    "?flag&empty=&sp=a%20b+c&u=%E2%9C%93&star=*&tilde=~&bad=%zz",
];

#[test]
fn header_signed_requests_from_aws_sigv4_verify() {
    let root = root_auth();
    let with_token = token_auth();
    for path in PATHS {
        for query in QUERIES {
            let path_query = format!("{path}{query}");
            for token in [None, Some(TOKEN)] {
                for method in ["POST", "GET"] {
                    let s = Signing {
                        method,
                        path_query: &path_query,
                        headers: vec![
                            ("content-type", "application/json"),
                            ("user-agent", "aws-sdk-rust/1.0"),
                            ("x-odd", "  spaced   out  value "),
                            ("x-multi", "one"),
                            ("x-multi", "two"),
                        ],
                        token,
                        ..Signing::default()
                    };
                    let r = aws_sign(&s);
                    // A request with a token is the token key's; one without, the root key's.
                    let (auth, root_key) = if token.is_some() { (&with_token, false) } else { (&root, true) };
                    let ok = check(auth, &r, now());
                    assert!(
                        ok.as_ref().is_ok_and(|p| p.root == root_key && p.access_key_id == AKID),
                        "{method} {path_query} token={token:?}: {ok:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn payload_variants_verify() {
    let root = root_auth();
    let signed_hash = aws_sign(&Signing { content_sha256_header: true, ..Signing::default() });
    assert!(signed_hash.headers.contains_key("x-amz-content-sha256"));
    check(&root, &signed_hash, now()).unwrap();
    assert_eq!(
        check(&root, &signed_hash.with(|r| r.body = b"{}".to_vec()), now()).unwrap_err(),
        AuthError::Invalid("The provided 'x-amz-content-sha256' header does not match what was computed.".into())
    );

    let unsigned = aws_sign(&Signing { content_sha256_header: true, unsigned_payload: true, ..Signing::default() });
    assert_eq!(unsigned.headers["x-amz-content-sha256"], UNSIGNED_PAYLOAD);
    assert!(
        matches!(check(&root, &unsigned, now()), Err(AuthError::Invalid(m)) if m.contains(UNSIGNED_PAYLOAD)),
        "a body the signer did not sign is refused"
    );
    let unsigned_empty =
        aws_sign(&Signing { content_sha256_header: true, unsigned_payload: true, body: b"", ..Signing::default() });
    check(&root, &unsigned_empty, now()).unwrap();

    let empty = aws_sign(&Signing { body: b"", ..Signing::default() });
    check(&root, &empty, now()).unwrap();
    assert!(matches!(
        check(
            &root,
            &signed_hash.with(|r| r.set_header("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")),
            now()
        ),
        Err(AuthError::Incomplete(_))
    ));
}

#[test]
fn tampering_with_a_header_signed_request_fails() {
    let root = root_auth();
    let base = aws_sign(&Signing { path_query: "/describeSignalingChannel?x=1", ..Signing::default() });
    check(&root, &base, now()).unwrap();

    assert_mismatch(check(&root, &base.with(|r| r.method = Method::PUT), now()), "method");
    assert_mismatch(check(&root, &base.with(|r| r.set_uri("/deleteSignalingChannel?x=1")), now()), "path");
    assert_mismatch(check(&root, &base.with(|r| r.set_uri("/describeSignalingChannel?x=2")), now()), "query value");
    assert_mismatch(check(&root, &base.with(|r| r.set_uri("/describeSignalingChannel?x=1&y=2")), now()), "query added");
    assert_mismatch(check(&root, &base.with(|r| r.set_uri("/describeSignalingChannel")), now()), "query removed");
    assert_mismatch(check(&root, &base.with(|r| r.body = br#"{"ChannelName":"cam-2"}"#.to_vec()), now()), "body");
    assert_mismatch(check(&root, &base.with(|r| r.set_header("content-type", "text/plain")), now()), "signed header");
    assert_mismatch(check(&root, &base.with(|r| r.set_header("host", "example.com")), now()), "host");
    assert_mismatch(check(&root, &base.with(|r| r.set_header("x-amz-date", "20261126T021401Z")), now()), "date");
    // Headers outside SignedHeaders may change (proxies rewrite user-agent).
    check(&root, &base.with(|r| r.set_header("user-agent", "curl/8")), now()).unwrap();
    check(&root, &base.with(|r| r.set_header("x-unsigned", "added")), now()).unwrap();

    let sig = base.headers["authorization"].to_str().unwrap().rsplit('=').next().unwrap().to_owned();
    let flipped = format!("{}{}", if sig.starts_with('0') { '1' } else { '0' }, &sig[1..]);
    assert_mismatch(check(&root, &base.with(|r| r.auth_replace(&sig, &flipped)), now()), "signature");
    assert_mismatch(check(&root, &base.with(|r| r.auth_replace(&sig, "nothex")), now()), "non-hex signature");
    assert_mismatch(check(&root, &base.with(|r| r.auth_replace(&sig, &sig[..62])), now()), "truncated signature");

    let wrong_secret = authenticator(vec![AccessKey::root(AKID, "another-secret", KeySource::Flags)]);
    let err = check(&wrong_secret, &base, now()).unwrap_err();
    assert_mismatch(Err(err.clone()), "secret");
    let msg = crate::error::ApiError::from(err).message;
    assert!(msg.contains("The Canonical String for this request should have been"), "{msg}");
    assert!(msg.contains("POST\n/describeSignalingChannel\nx=1\ncontent-type:application/json\n"), "{msg}");

    let other_key = aws_sign(&Signing { akid: "AKIANOBODY", ..Signing::default() });
    assert_eq!(check(&root, &other_key, now()).unwrap_err(), AuthError::UnknownAccessKey("AKIANOBODY".into()));
}

#[test]
fn header_signature_time_window() {
    let root = root_auth();
    let at_one = aws_sign(&Signing { time: at(1, 0, 0), ..Signing::default() });
    assert_eq!(
        check(&root, &at_one, now()).unwrap_err().to_string(),
        "Signature expired: 20261126T010000Z is now earlier than 20261126T020000Z (20261126T021500Z - 15 min.)"
    );
    // Exactly at the edges of the ±15 min window is accepted.
    let edge_old = aws_sign(&Signing { time: at(2, 0, 0), ..Signing::default() });
    check(&root, &edge_old, now()).unwrap();
    let edge_new = aws_sign(&Signing { time: at(2, 30, 0), ..Signing::default() });
    check(&root, &edge_new, now()).unwrap();
    let future = aws_sign(&Signing { time: at(2, 30, 1), ..Signing::default() });
    let err = check(&root, &future, now()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Signature not yet current: 20261126T023001Z is still later than 20261126T023000Z (20261126T021500Z + 15 min.)"
    );
    assert_eq!(crate::error::ApiError::from(err).code, "InvalidSignatureException");

    // The configured skew is honoured.
    let strict = Authenticator::new(
        CredentialStore::from_keys([AccessKey::root(AKID, SECRET, KeySource::Flags)]).unwrap(),
        &Limits { max_clock_skew_secs: 30, ..Limits::default() },
    );
    let msg = check(&strict, &edge_old, now()).unwrap_err().to_string();
    assert!(msg.starts_with("Signature expired:") && msg.ends_with("(20261126T021500Z - 30 sec.)"), "{msg}");
}

#[test]
fn session_tokens() {
    let signed_with = |token| aws_sign(&Signing { token, ..Signing::default() });
    let with_token = token_auth();
    check(&with_token, &signed_with(Some(TOKEN)), now()).unwrap();
    assert!(matches!(
        check(&with_token, &signed_with(Some("other-token")), now()),
        Err(AuthError::InvalidSessionToken(_))
    ));
    assert!(matches!(check(&with_token, &signed_with(None), now()), Err(AuthError::InvalidSessionToken(_))));
    // A key without a configured token refuses a token the client sends (as AWS refuses a
    // long-term key with a leftover session token).
    assert!(matches!(
        check(&root_auth(), &signed_with(Some("whatever")), now()),
        Err(AuthError::InvalidSessionToken(_))
    ));
    check(&root_auth(), &signed_with(None), now()).unwrap();
    // The token header is signed by aws-sigv4: changing it breaks the signature too.
    let r = signed_with(Some(TOKEN)).with(|r| r.set_header("x-amz-security-token", "other"));
    assert!(check(&with_token, &r, now()).is_err());
}

#[test]
fn presigned_urls_from_aws_sigv4_verify() {
    let root = root_auth();
    let with_token = token_auth();
    for query in QUERIES {
        let path_query = format!("/{query}");
        for token in [None, Some(TOKEN)] {
            for unsigned_payload in [false, true] {
                let s = Signing {
                    method: "GET",
                    path_query: &path_query,
                    headers: vec![],
                    body: b"",
                    token,
                    presign: Some(Duration::from_secs(299)),
                    unsigned_payload,
                    ..Signing::default()
                };
                let r = aws_sign(&s);
                assert!(r.uri.query().unwrap().contains("X-Amz-Signature="), "{}", r.uri);
                assert!(!r.headers.contains_key("authorization"));
                let ok = check(if token.is_some() { &with_token } else { &root }, &r, now());
                assert!(ok.is_ok(), "{path_query} token={token:?} unsigned={unsigned_payload}: {ok:?}");
            }
        }
    }
}

#[test]
fn presigned_requests_cover_their_body() {
    let root = root_auth();
    let presigned_post = |body: &'static [u8], unsigned_payload: bool| {
        aws_sign(&Signing {
            method: "POST",
            path_query: "/describeSignalingChannel",
            body,
            presign: Some(Duration::from_secs(299)),
            unsigned_payload,
            ..Signing::default()
        })
    };
    // Signed over its body: verifies; another body does not.
    let signed = presigned_post(br#"{"ChannelName":"cam-1"}"#, false);
    check(&root, &signed, now()).unwrap();
    assert_mismatch(
        check(&root, &signed.with(|r| r.body = br#"{"ChannelName":"cam-2"}"#.to_vec()), now()),
        "another body",
    );
    // Signed over UNSIGNED-PAYLOAD, or over the empty body: good without a body only.
    for unsigned_payload in [true, false] {
        let bodiless = presigned_post(b"", unsigned_payload);
        check(&root, &bodiless, now()).unwrap();
        assert_mismatch(
            check(&root, &bodiless.with(|r| r.body = br#"{"ChannelName":"cam-1"}"#.to_vec()), now()),
            "a body added to a bodiless presigned URL",
        );
    }
    // A hash carried in the query must be the body's.
    let carried = signed.with(|r| {
        let uri = format!("{}&X-Amz-Content-Sha256={}", r.uri, sha256(b"other"));
        r.set_uri(&uri);
    });
    assert!(matches!(check(&root, &carried, now()), Err(AuthError::Invalid(_))));
    let unsigned_carried = signed.with(|r| {
        let uri = format!("{}&X-Amz-Content-Sha256=UNSIGNED-PAYLOAD", r.uri);
        r.set_uri(&uri);
    });
    assert!(matches!(check(&root, &unsigned_carried, now()), Err(AuthError::Invalid(_))));
}

fn presigned_viewer(token: Option<&str>, time: SystemTime, expires: u64) -> Received {
    let path_query = format!("/?X-Amz-ChannelARN={}&X-Amz-ClientId=viewer-1", utf8_percent_encode(ARN, QUERY_ENCODE));
    aws_sign(&Signing {
        method: "GET",
        path_query: &path_query,
        headers: vec![],
        body: b"",
        token,
        time,
        presign: Some(Duration::from_secs(expires)),
        ..Signing::default()
    })
}

#[test]
fn tampering_with_a_presigned_url_fails() {
    let root = root_auth();
    let base = presigned_viewer(None, at(2, 14, 0), 299);
    check(&root, &base, now()).unwrap();

    assert_mismatch(check(&root, &base.with(|r| r.query_replace("cam-1", "cam-2")), now()), "channel ARN");
    assert_mismatch(check(&root, &base.with(|r| r.query_replace("viewer-1", "viewer-2")), now()), "client id");
    assert_mismatch(
        check(&root, &base.with(|r| r.query_replace("&X-Amz-ClientId=viewer-1", "")), now()),
        "client id removed",
    );
    assert_mismatch(
        check(&root, &base.with(|r| r.query_replace("X-Amz-Expires=299", "X-Amz-Expires=3000")), now()),
        "expires",
    );
    assert_mismatch(
        check(
            &root,
            &base.with(|r| r.query_replace("X-Amz-Date=20261126T021400Z", "X-Amz-Date=20261126T021401Z")),
            now(),
        ),
        "date",
    );
    assert_mismatch(
        check(&root, &base.with(|r| r.set_uri(&format!("/other{}", &r.uri.to_string()[1..]))), now()),
        "path",
    );
    assert_mismatch(check(&root, &base.with(|r| r.method = Method::POST), now()), "method");
    assert_mismatch(check(&root, &base.with(|r| r.set_header("host", "evil.example")), now()), "host");
    let sig = base.uri.query().unwrap().split("X-Amz-Signature=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    let flipped = format!("{}{}", if sig.starts_with('0') { '1' } else { '0' }, &sig[1..]);
    assert_mismatch(check(&root, &base.with(|r| r.query_replace(&sig, &flipped)), now()), "signature");
    let wrong_secret = authenticator(vec![AccessKey::root(AKID, "nope", KeySource::Flags)]);
    assert_mismatch(check(&wrong_secret, &base, now()), "secret");

    // Expiry: valid through date + expires, refused one second later.
    check(&root, &base, at(2, 18, 59)).unwrap();
    let err = check(&root, &base, at(2, 19, 0)).unwrap_err();
    assert!(matches!(err, AuthError::Expired(_)) && err.to_string().contains("Signature expired"), "{err}");
    assert_eq!(crate::error::ApiError::from(err).code, "InvalidSignatureException");
    // Dated in the future beyond the skew.
    let future = presigned_viewer(None, at(2, 31, 0), 299);
    assert!(matches!(check(&root, &future, now()), Err(AuthError::NotYetCurrent(_))));
    // An old URL with a long expiry is still good (C SDK: up to 604800 s).
    let week = presigned_viewer(None, at(2, 15, 0) - Duration::from_secs(604_000), 604_800);
    check(&root, &week, now()).unwrap();
    let too_long = presigned_viewer(None, at(2, 14, 0), 604_801);
    let err = check(&root, &too_long, now()).unwrap_err();
    assert!(matches!(&err, AuthError::Incomplete(m) if m.contains("604800")), "{err:?}");

    // Session token inside the signed query.
    let with_token = token_auth();
    let tokened = presigned_viewer(Some(TOKEN), at(2, 14, 0), 299);
    assert!(tokened.uri.query().unwrap().contains("X-Amz-Security-Token="));
    check(&with_token, &tokened, now()).unwrap();
    let encoded = utf8_percent_encode(TOKEN, QUERY_ENCODE).to_string();
    let swapped = tokened.with(|r| r.query_replace(&encoded, "other"));
    assert!(matches!(check(&with_token, &swapped, now()), Err(AuthError::InvalidSessionToken(_))));
    // A key whose token is the swapped-in one: the token passes, the signature does not.
    let other = authenticator(vec![AccessKey::with_policy(
        AKID,
        SECRET,
        Some("other".into()),
        Policy::default(),
        KeySource::Flags,
    )]);
    let err = check(&other, &swapped, now()).unwrap_err();
    assert_mismatch(Err(err.clone()), "token is part of the signed query");
    let msg = err.to_string();
    assert!(
        msg.contains("X-Amz-Security-Token=<redacted>&") && !msg.contains("=other"),
        "token values are redacted: {msg}"
    );
    assert!(matches!(check(&with_token, &base, now()), Err(AuthError::InvalidSessionToken(_))), "token required");
}

/// JavaScript `encodeURIComponent`: keeps `A-Za-z0-9 - _ . ! ~ * ' ( )`.
const JS_URI_COMPONENT: &AsciiSet = &QUERY_ENCODE.remove(b'!').remove(b'*').remove(b'\'').remove(b'(').remove(b')');

fn sha256(data: &[u8]) -> String {
    hex::encode(<Sha256 as Digest>::digest(data))
}

/// A presigned WebSocket URL built exactly like the KVS JS SDK's `SigV4RequestSigner`.
fn js_presign(token: Option<&str>, time: SystemTime) -> Received {
    let date = AmzDate::from_system_time(time).to_string();
    let day = &date[..8];
    let enc = |s: &str| utf8_percent_encode(s, JS_URI_COMPONENT).to_string();
    let mut params = vec![
        ("X-Amz-Algorithm", ALGORITHM.to_owned()),
        ("X-Amz-ChannelARN", ARN.to_owned()),
        ("X-Amz-ClientId", "viewer-1".to_owned()),
        ("X-Amz-Credential", format!("{AKID}/{day}/{REGION}/kinesisvideo/aws4_request")),
        ("X-Amz-Date", date.clone()),
        ("X-Amz-Expires", "299".to_owned()),
        ("X-Amz-SignedHeaders", "host".to_owned()),
    ];
    if let Some(t) = token {
        params.push(("X-Amz-Security-Token", t.to_owned()));
    }
    params.sort();
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
    let query = query.join("&");
    let canonical = format!("GET\n/\n{query}\nhost:{HOST}\n\nhost\n{}", sha256(b""));
    let sts =
        format!("{ALGORITHM}\n{date}\n{day}/{REGION}/kinesisvideo/aws4_request\n{}", sha256(canonical.as_bytes()));
    let key = aws_v4::generate_signing_key(SECRET, time, REGION, "kinesisvideo");
    let signature = aws_v4::calculate_signature(key, sts.as_bytes());
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static(HOST));
    Received {
        method: Method::GET,
        uri: format!("/?{query}&X-Amz-Signature={signature}").parse().unwrap(),
        headers,
        body: Vec::new(),
    }
}

#[test]
fn js_sdk_style_presigned_url_verifies() {
    let r = js_presign(None, at(2, 14, 0));
    check(&root_auth(), &r, now()).unwrap();
    let t = js_presign(Some(TOKEN), at(2, 14, 0));
    check(&token_auth(), &t, now()).unwrap();
    assert_mismatch(check(&root_auth(), &r.with(|r| r.query_replace("viewer-1", "viewer-9")), now()), "js client id");
    let err = check(&root_auth(), &r, at(2, 19, 0)).unwrap_err();
    assert!(err.to_string().contains("Signature expired"), "{err}");
}

/// A header-signed POST built like the KVS C SDK's `AwsV4Signer`: signs only
/// `host;user-agent;x-amz-date`, sends `content-type` and `x-amz-security-token` unsigned.
fn c_sdk_request(token: &str, time: SystemTime) -> Received {
    let date = AmzDate::from_system_time(time).to_string();
    let day = &date[..8];
    let body = br#"{"ChannelName":"cam-1"}"#;
    let ua = "AWS-WebRTC-KVS-Agent/1.15.0 c/1.0 Linux/6.1 x86_64";
    let canonical = format!(
        "POST\n/describeSignalingChannel\n\nhost:{HOST}\nuser-agent:{ua}\nx-amz-date:{date}\n\nhost;user-agent;x-amz-date\n{}",
        sha256(body)
    );
    let scope = format!("{day}/{REGION}/kinesisvideo/aws4_request");
    let sts = format!("{ALGORITHM}\n{date}\n{scope}\n{}", sha256(canonical.as_bytes()));
    let signature =
        aws_v4::calculate_signature(aws_v4::generate_signing_key(SECRET, time, REGION, "kinesisvideo"), sts.as_bytes());
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static(HOST));
    headers.insert("user-agent", HeaderValue::from_static(ua));
    headers.insert("x-amz-date", HeaderValue::from_str(&date).unwrap());
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("x-amz-security-token", HeaderValue::from_str(token).unwrap());
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!(
            "{ALGORITHM} Credential={AKID}/{scope}, SignedHeaders=host;user-agent;x-amz-date, Signature={signature}"
        ))
        .unwrap(),
    );
    Received { method: Method::POST, uri: "/describeSignalingChannel".parse().unwrap(), headers, body: body.to_vec() }
}

#[test]
fn c_sdk_style_header_signature_with_unsigned_token_verifies() {
    let r = c_sdk_request(TOKEN, at(2, 14, 0));
    check(&token_auth(), &r, now()).unwrap();
    // The unsigned headers may differ without breaking the signature ...
    check(&token_auth(), &r.with(|r| r.set_header("content-type", "application/x-amz-json")), now()).unwrap();
    // ... but the token must still be the key's token, and signed parts still count.
    let wrong = c_sdk_request("not-the-token", at(2, 14, 0));
    assert!(matches!(check(&token_auth(), &wrong, now()), Err(AuthError::InvalidSessionToken(_))));
    assert_mismatch(check(&token_auth(), &r.with(|r| r.set_header("user-agent", "other")), now()), "c user-agent");
    assert_mismatch(check(&token_auth(), &r.with(|r| r.body = b"{}".to_vec()), now()), "c body");
    // The C SDK greps 403 bodies for this text to correct its clock.
    let old = c_sdk_request(TOKEN, at(1, 0, 0));
    let api = crate::error::ApiError::from(check(&token_auth(), &old, now()).unwrap_err());
    assert_eq!((api.code, api.status.as_u16()), ("InvalidSignatureException", 403));
    assert!(api.message.contains("Signature expired"), "{}", api.message);
}

/// The worked example of the AWS SigV4 documentation (IAM ListUsers).
#[test]
fn aws_documentation_example() {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("iam.amazonaws.com"));
    headers.insert("content-type", HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"));
    headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
    headers.insert(
        "authorization",
        HeaderValue::from_static(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
        ),
    );
    let uri: Uri = "/?Action=ListUsers&Version=2010-05-08".parse().unwrap();
    let req = Request { method: &Method::GET, uri: &uri, headers: &headers, body: Payload::Buffered(b"") };
    let signed = parse(&req).unwrap();
    let canonical = canonical_request(&req, &signed, &sha256_hex(b"")).unwrap();
    assert_eq!(
        canonical,
        "GET\n/\nAction=ListUsers&Version=2010-05-08\ncontent-type:application/x-www-form-urlencoded; charset=utf-8\n\
         host:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(sha256_hex(canonical.as_bytes()), "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59");
    let key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", &signed.scope);
    assert_eq!(hex::encode(&key), "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
    verify(&req, &signed, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY").unwrap();
    // ... but reel only accepts the kinesisvideo signing name.
    assert!(matches!(check_scope(&signed), Err(AuthError::Invalid(m)) if m.contains("'kinesisvideo'")));
}

#[test]
fn canonical_uri_rules() {
    assert_eq!(canonical_uri(""), "/");
    assert_eq!(canonical_uri("/"), "/");
    assert_eq!(canonical_uri("/createSignalingChannel"), "/createSignalingChannel");
    assert_eq!(canonical_uri("/a%20b"), "/a%2520b", "already-encoded paths are encoded again");
    assert_eq!(canonical_uri("/x/./y/../z"), "/x/z");
    assert_eq!(canonical_uri("//a//b/"), "/a/b/");
    assert_eq!(canonical_uri("/a/b/.."), "/a/");
    assert_eq!(canonical_uri("/../../x"), "/x");
    assert_eq!(canonical_uri("/a:b@c"), "/a%3Ab%40c");
    assert_eq!(canonical_uri("/~user-_.x"), "/~user-_.x");
    assert_eq!(canonical_uri("/é"), "/%C3%A9");
    assert_eq!(canonical_uri("rel"), "/rel");
}

#[test]
fn canonical_query_rules() {
    assert_eq!(canonical_query(None, false), "");
    assert_eq!(canonical_query(Some(""), false), "");
    assert_eq!(canonical_query(Some("b=2&a=1&a=0"), false), "a=0&a=1&b=2");
    assert_eq!(canonical_query(Some("arn=arn%3aaws%2Fx"), false), "arn=arn%3Aaws%2Fx");
    assert_eq!(canonical_query(Some("arn=arn:aws/x"), false), "arn=arn%3Aaws%2Fx");
    assert_eq!(canonical_query(Some("a+b=c+d%20e"), false), "a%20b=c%20d%20e");
    assert_eq!(canonical_query(Some("flag&&e="), false), "e=&flag=");
    assert_eq!(canonical_query(Some("s=!'()*~"), false), "s=%21%27%28%29%2A~");
    assert_eq!(canonical_query(Some("t=a%2Bb%3D"), false), "t=a%2Bb%3D");
    assert_eq!(canonical_query(Some("X-Amz-Signature=abc&a=1"), false), "X-Amz-Signature=abc&a=1");
    assert_eq!(canonical_query(Some("X-Amz-Signature=abc&a=1"), true), "a=1");
}

#[test]
fn header_values_are_normalized() {
    assert_eq!(trim_all("  a   b  c "), "a b c");
    assert_eq!(trim_all("\ta\t"), "\ta\t", "only spaces are trimmed, like aws-sigv4");
    assert_eq!(trim_all(""), "");
}

#[test]
fn amz_dates_parse_strictly() {
    let t = AmzDate::parse("20261126T021500Z").unwrap();
    assert_eq!(t, AmzDate::from_system_time(now()));
    assert_eq!(t.to_string(), "20261126T021500Z");
    assert_eq!(t.day(), "20261126");
    for bad in [
        "20261126T021500",
        "2026-11-26T02:15:00Z",
        "20261301T000000Z",
        "20261126T250000Z",
        "20260230T000000Z",
        "2026112éT02150Z",
        "+0261126T021500Z",
        "",
    ] {
        assert!(AmzDate::parse(bad).is_none(), "{bad}");
    }
}

fn incomplete(auth: &str, date: Option<&str>) -> String {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static(HOST));
    headers.insert("authorization", HeaderValue::from_str(auth).unwrap());
    if let Some(d) = date {
        headers.insert("x-amz-date", HeaderValue::from_str(d).unwrap());
    }
    let uri: Uri = "/listSignalingChannels".parse().unwrap();
    let r = Received { method: Method::POST, uri, headers, body: b"{}".to_vec() };
    match check(&root_auth(), &r, now()) {
        Err(e @ AuthError::Incomplete(_)) => {
            assert_eq!(crate::error::ApiError::from(e.clone()).status.as_u16(), 400);
            e.to_string()
        }
        other => panic!("{auth}: expected IncompleteSignature, got {other:?}"),
    }
}

#[test]
fn malformed_signatures_are_incomplete_with_precise_messages() {
    let date = Some("20261126T021400Z");
    let cred = format!("Credential={AKID}/20261126/us-west-2/kinesisvideo/aws4_request");
    let sig = "Signature=0000000000000000000000000000000000000000000000000000000000000000";
    let m = incomplete(&format!("AWS4-HMAC-SHA256 {cred}, {sig}"), date);
    assert_eq!(m, "Authorization header requires 'SignedHeaders' parameter.");
    let m = incomplete("AWS4-HMAC-SHA256 ", date);
    assert!(m.contains("'Credential'") && m.contains("'SignedHeaders'") && m.contains("'Signature'"), "{m}");
    let m = incomplete(&format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=host, Signature="), date);
    assert!(m.contains("'Signature'"), "{m}");
    let m = incomplete("Bearer abc", date);
    assert!(m.contains("Unsupported Authorization scheme 'Bearer'"), "{m}");
    let m =
        incomplete(&format!("AWS4-HMAC-SHA256 Credential={AKID}/20261126/us-west-2, SignedHeaders=host, {sig}"), date);
    assert!(m.contains("expected 5"), "{m}");
    let m = incomplete(
        &format!(
            "AWS4-HMAC-SHA256 Credential={AKID}/2026-11-26/us-west-2/kinesisvideo/aws4_request, SignedHeaders=host, {sig}"
        ),
        date,
    );
    assert!(m.contains("invalid date '2026-11-26'"), "{m}");
    let m = incomplete(&format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=content-type, {sig}"), date);
    assert!(m.contains("'Host' must be a 'SignedHeader'"), "{m}");
    let m = incomplete(&format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=Host;X-Amz-Date, {sig}"), date);
    assert!(m.contains("not a lowercase header name"), "{m}");
    let m = incomplete(&format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=host, {sig}, Extra=1"), date);
    assert!(m.contains("unknown component 'Extra'"), "{m}");
    let m = incomplete(&format!("AWS4-HMAC-SHA256 {cred}, {cred}, SignedHeaders=host, {sig}"), date);
    assert!(m.contains("repeats the 'Credential'"), "{m}");
    let m = incomplete(&format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=host, {sig}"), None);
    assert!(m.contains("'X-Amz-Date' or a 'Date' header"), "{m}");
    let m = incomplete(&format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=host, {sig}"), Some("2026-11-26"));
    assert!(m.contains("X-Amz-Date '2026-11-26'"), "{m}");
}

#[test]
fn scope_problems_are_invalid_signatures() {
    let root = root_auth();
    let s3 = aws_sign(&Signing { service: "s3", ..Signing::default() });
    let err = check(&root, &s3, now()).unwrap_err();
    assert!(
        matches!(&err, AuthError::Invalid(m) if m.contains("scoped to correct service: 'kinesisvideo'")),
        "{err:?}"
    );
    let r = aws_sign(&Signing::default()).with(|r| r.auth_replace("/20261126/", "/20261125/"));
    let err = check(&root, &r, now()).unwrap_err();
    assert!(matches!(&err, AuthError::Invalid(m) if m.contains("Date in Credential scope does not match")), "{err:?}");
    let r = aws_sign(&Signing::default()).with(|r| r.auth_replace("aws4_request", "aws5_request"));
    assert!(matches!(check(&root, &r, now()), Err(AuthError::Invalid(m)) if m.contains("terminator")));
    // Any region is accepted.
    let r = aws_sign(&Signing::default());
    assert!(r.headers["authorization"].to_str().unwrap().contains("/us-west-2/"));
    let signed =
        parse(&Request { method: &r.method, uri: &r.uri, headers: &r.headers, body: Payload::Buffered(&r.body) })
            .unwrap();
    assert_eq!(signed.scope.region, "us-west-2");
}

#[test]
fn missing_or_ambiguous_authentication() {
    let root = root_auth();
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static(HOST));
    let bare = Received { method: Method::POST, uri: "/listSignalingChannels".parse().unwrap(), headers, body: vec![] };
    let err = check(&root, &bare, now()).unwrap_err();
    assert_eq!(err, AuthError::MissingAuthentication);
    let api = crate::error::ApiError::from(err);
    assert_eq!(
        (api.code, api.status.as_u16(), api.message.as_str()),
        ("MissingAuthenticationTokenException", 403, "Missing Authentication Token")
    );
    // A query that merely mentions a channel is not a presigned URL.
    let not_presigned = bare.with(|r| r.set_uri("/?X-Amz-ChannelARN=x"));
    assert_eq!(check(&root, &not_presigned, now()).unwrap_err(), AuthError::MissingAuthentication);

    let presigned = presigned_viewer(None, at(2, 14, 0), 299);
    let both = presigned.with(|r| r.set_header("authorization", "AWS4-HMAC-SHA256 Credential=x"));
    assert!(matches!(check(&root, &both, now()), Err(AuthError::Incomplete(m)) if m.contains("both")));
    let no_expires = presigned.with(|r| r.query_replace("X-Amz-Expires=299&", ""));
    assert!(matches!(check(&root, &no_expires, now()), Err(AuthError::Incomplete(m)) if m.contains("X-Amz-Expires")));
    let bad_expires = presigned.with(|r| r.query_replace("X-Amz-Expires=299", "X-Amz-Expires=soon"));
    assert!(matches!(check(&root, &bad_expires, now()), Err(AuthError::Incomplete(m)) if m.contains("'soon'")));
    let algo = presigned.with(|r| r.query_replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"));
    assert!(matches!(check(&root, &algo, now()), Err(AuthError::Incomplete(m)) if m.contains("AWS4-HMAC-SHA512")));
    let twice = presigned.with(|r| {
        let s = r.uri.to_string();
        r.set_uri(&format!("{s}&X-Amz-Date=20261126T021400Z"));
    });
    assert!(matches!(check(&root, &twice, now()), Err(AuthError::Incomplete(m)) if m.contains("more than once")));
}

#[test]
fn host_falls_back_to_the_uri_authority() {
    // HTTP/2 requests carry :authority in the URI instead of a Host header.
    let r = aws_sign(&Signing::default());
    let h2 = r.with(|r| {
        r.headers.remove("host");
        r.set_uri(&format!("http://{HOST}{}", r.uri));
    });
    check(&root_auth(), &h2, now()).unwrap();
    let missing = r.with(|r| {
        r.headers.remove("content-type");
    });
    assert!(matches!(check(&root_auth(), &missing, now()), Err(AuthError::Invalid(m)) if m.contains("'content-type'")));
}

#[test]
fn streaming_uploads_verify_from_their_headers() {
    let root = root_auth();
    let stream = |r: &Received| root.authenticate(&r.method, &r.uri, &r.headers, Payload::Streamed, now());
    let put = Signing { path_query: "/putMedia", body: b"", ..Signing::default() };
    // The C producer: the empty body's hash, no header.
    let c = aws_sign(&put);
    assert!(!c.headers.contains_key("x-amz-content-sha256"));
    stream(&c).unwrap();
    // The Java producer: UNSIGNED-PAYLOAD, its header added after signing.
    let java = aws_sign(&Signing { unsigned_payload: true, ..put.clone() })
        .with(|r| r.set_header("x-amz-content-sha256", UNSIGNED_PAYLOAD));
    stream(&java).unwrap();
    // A carried digest of the body cannot be checked before the body is read.
    let digest = aws_sign(&Signing { content_sha256_header: true, ..put.clone() });
    assert!(matches!(stream(&digest), Err(AuthError::Incomplete(m)) if m.contains("streaming upload")));
    // Tampering still fails.
    assert_mismatch(stream(&c.with(|r| r.set_header("content-type", "text/plain"))), "a signed header changed");
    assert_mismatch(stream(&c.with(|r| r.set_uri("/getMedia"))), "another path");
    // The streaming marker is accepted only where the body is streamed.
    let marked = c.with(|r| r.set_header("x-amz-content-sha256", STREAMING_PAYLOAD));
    assert!(matches!(check(&root, &marked, now()), Err(AuthError::Incomplete(_))));
}
