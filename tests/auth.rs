//! Authentication and authorization end to end: the real server, official SDK clients
//! (and raw presigned HTTP requests), keys and policies from a credentials file.

mod common;

use std::time::{Duration, SystemTime};

use aws_sdk_kinesisvideo::config::BehaviorVersion;
use aws_sdk_kinesisvideo::error::{ProvideErrorMetadata, SdkError};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use common::{REGION, ROOT_KEY_ID, ROOT_SECRET, Reel};

const CAMERA_KEY: &str = "AKIACAMERA0001";
const CAMERA_SECRET: &str = "camera-secret-0000000000000000000000000";
const LISTER_KEY: &str = "AKIALISTER0001";
const LISTER_SECRET: &str = "lister-secret-0000000000000000000000000";
const OPERATOR_KEY: &str = "AKIAOPERATOR01";
const OPERATOR_SECRET: &str = "operator-secret-000000000000000000000000";
const TEMP_KEY: &str = "AKIATEMPORARY1";
const TEMP_SECRET: &str = "temporary-secret-0000000000000000000000";
const TEMP_TOKEN: &str = "reel-session-token/with+base64=chars";

const CREDENTIALS: &str = r#"
# A camera: may connect and describe its own channels only.
[[key]]
access_key_id = "AKIACAMERA0001"
secret_access_key = "camera-secret-0000000000000000000000000"
[[key.statement]]
effect = "Allow"
action = ["kinesisvideo:ConnectAsMaster", "kinesisvideo:Describe*"]
resource = "arn:aws:kinesisvideo:*:*:channel/cam-*"

# A dashboard: may list everything (List* acts on resource "*").
[[key]]
access_key_id = "AKIALISTER0001"
secret_access_key = "lister-secret-0000000000000000000000000"
[[key.statement]]
effect = "Allow"
action = "kinesisvideo:List*"
resource = "*"

# An operator: everything, except describing secret-* channels and creating channels.
[[key]]
access_key_id = "AKIAOPERATOR01"
secret_access_key = "operator-secret-000000000000000000000000"
[[key.statement]]
effect = "Allow"
action = "kinesisvideo:*"
resource = "*"
[[key.statement]]
effect = "Deny"
action = "kinesisvideo:describe*"
resource = "arn:aws:kinesisvideo:*:*:channel/secret-*"
[[key.statement]]
effect = "Deny"
action = "kinesisvideo:CreateSignalingChannel"
resource = "*"

# Temporary credentials: requests must carry the session token.
[[key]]
access_key_id = "AKIATEMPORARY1"
secret_access_key = "temporary-secret-0000000000000000000000"
session_token = "reel-session-token/with+base64=chars"
[[key.statement]]
effect = "Allow"
action = "kinesisvideo:List*"
resource = "*"
"#;

/// A server with the test root key plus the keys of [`CREDENTIALS`].
fn start() -> Reel {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::write_file(dir.path(), "credentials.toml", CREDENTIALS);
    let reel = Reel::start_with(common::Options {
        args: vec!["--credentials-file".into(), path.display().to_string()],
        ..Default::default()
    });
    // The server has read the file; the temp dir may go.
    drop(dir);
    reel
}

/// A client for `key`, with `tweak` applied to its config (time source, retries, ...).
fn client(
    reel: &Reel,
    key: &str,
    secret: &str,
    token: Option<&str>,
    tweak: impl FnOnce(aws_sdk_kinesisvideo::config::Builder) -> aws_sdk_kinesisvideo::config::Builder,
) -> aws_sdk_kinesisvideo::Client {
    let builder = aws_sdk_kinesisvideo::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_sdk_kinesisvideo::config::Region::new(REGION))
        .endpoint_url(&reel.url)
        .credentials_provider(aws_credential_types::Credentials::new(
            key,
            secret,
            token.map(str::to_owned),
            None,
            "reel-test",
        ))
        .http_client(reel.http_client());
    aws_sdk_kinesisvideo::Client::from_conf(tweak(builder).build())
}

/// Error code, HTTP status and message of a failed SDK call.
fn failure<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    result: Result<T, SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>>,
) -> (String, u16, String) {
    let err = result.expect_err("the call must fail");
    let status = err.raw_response().map(|r| r.status().as_u16()).unwrap_or_default();
    let code = err.code().unwrap_or_default().to_owned();
    let message = err.message().unwrap_or_default().to_owned();
    assert!(!code.is_empty(), "no error code in {err:?}");
    (code, status, message)
}

async fn create_channels(reel: &Reel, names: &[&str]) {
    let root = reel.kvs();
    for name in names {
        root.create_signaling_channel().channel_name(*name).send().await.expect("root creates a channel");
    }
}

#[tokio::test]
async fn wrong_secret_is_an_invalid_signature() {
    let reel = start();
    let kvs = client(&reel, ROOT_KEY_ID, "not-the-root-secret", None, |b| b);
    let (code, status, message) = failure(kvs.list_signaling_channels().send().await);
    assert_eq!((code.as_str(), status), ("InvalidSignatureException", 403));
    assert!(message.starts_with("The request signature we calculated does not match"), "{message}");
    // The right secret works.
    reel.kvs().list_signaling_channels().send().await.expect("root lists");
}

#[tokio::test]
async fn unknown_key_is_an_unrecognized_client() {
    let reel = start();
    let kvs = client(&reel, "AKIANOBODY000000", "whatever", None, |b| b);
    let (code, status, message) = failure(kvs.list_signaling_channels().send().await);
    assert_eq!((code.as_str(), status), ("UnrecognizedClientException", 403));
    assert_eq!(message, "The security token included in the request is invalid.");
}

#[tokio::test]
async fn expired_signature_is_refused_with_signature_expired() {
    let reel = start();
    let twenty_minutes_ago = SystemTime::now() - Duration::from_secs(20 * 60);
    let kvs = client(&reel, ROOT_KEY_ID, ROOT_SECRET, None, |b| {
        b.time_source(aws_smithy_async::time::StaticTimeSource::new(twenty_minutes_ago))
            .disable_clock_skew_correction(true)
    });
    let (code, status, message) = failure(kvs.list_signaling_channels().send().await);
    assert_eq!((code.as_str(), status), ("InvalidSignatureException", 403));
    assert!(message.contains("Signature expired"), "the KVS C SDK greps for this: {message}");

    let future = SystemTime::now() + Duration::from_secs(20 * 60);
    let kvs = client(&reel, ROOT_KEY_ID, ROOT_SECRET, None, |b| {
        b.time_source(aws_smithy_async::time::StaticTimeSource::new(future)).disable_clock_skew_correction(true)
    });
    let (code, _, message) = failure(kvs.list_signaling_channels().send().await);
    assert_eq!(code, "InvalidSignatureException");
    assert!(message.contains("Signature not yet current"), "{message}");
}

#[tokio::test]
async fn sdk_clock_skew_correction_works_from_the_date_header() {
    // With correction on (the default), the Rust SDK reads reel's `Date` header after the
    // InvalidSignatureException and retries with a corrected clock.
    let reel = start();
    let twenty_minutes_ago = SystemTime::now() - Duration::from_secs(20 * 60);
    let attempts = Attempts::default();
    let kvs = client(&reel, ROOT_KEY_ID, ROOT_SECRET, None, |b| {
        b.time_source(aws_smithy_async::time::StaticTimeSource::new(twenty_minutes_ago)).interceptor(attempts.clone())
    });
    kvs.list_signaling_channels().send().await.expect("the SDK corrects its clock from the Date header");
    // Two attempts: signed 20 min ago and refused, then signed with the server's clock.
    let seen = attempts.0.lock().expect("attempts").clone();
    assert_eq!(seen.iter().map(|a| a.1).collect::<Vec<_>>(), [403, 200], "attempts (X-Amz-Date, status): {seen:?}");
    let now = chrono::Utc::now().naive_utc();
    let age = |(date, _): &(String, u16)| {
        let signed = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ").expect("X-Amz-Date");
        (now - signed).num_seconds()
    };
    assert!((19 * 60..=21 * 60).contains(&age(&seen[0])), "first attempt signed 20 min ago: {seen:?}");
    assert!(age(&seen[1]).abs() <= 60, "the retry is signed with the corrected clock: {seen:?}");
}

/// Each attempt's `X-Amz-Date` and HTTP status, recorded by an SDK interceptor.
#[derive(Debug, Clone, Default)]
struct Attempts(std::sync::Arc<std::sync::Mutex<Vec<(String, u16)>>>);

impl aws_sdk_kinesisvideo::config::Intercept for Attempts {
    fn name(&self) -> &'static str {
        "Attempts"
    }

    fn read_before_transmit(
        &self,
        ctx: &aws_sdk_kinesisvideo::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_kinesisvideo::config::RuntimeComponents,
        _: &mut aws_sdk_kinesisvideo::config::ConfigBag,
    ) -> Result<(), aws_sdk_kinesisvideo::error::BoxError> {
        let date = ctx.request().headers().get("x-amz-date").unwrap_or_default().to_owned();
        self.0.lock().expect("attempts").push((date, 0));
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        ctx: &aws_sdk_kinesisvideo::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
        _: &aws_sdk_kinesisvideo::config::RuntimeComponents,
        _: &mut aws_sdk_kinesisvideo::config::ConfigBag,
    ) -> Result<(), aws_sdk_kinesisvideo::error::BoxError> {
        if let Some(last) = self.0.lock().expect("attempts").last_mut() {
            last.1 = ctx.response().status().as_u16();
        }
        Ok(())
    }
}

#[tokio::test]
async fn denied_by_policy() {
    let reel = start();
    create_channels(&reel, &["cam-1", "door-1"]).await;
    let camera = client(&reel, CAMERA_KEY, CAMERA_SECRET, None, |b| b);

    let (code, status, message) = failure(camera.create_signaling_channel().channel_name("cam-9").send().await);
    assert_eq!((code.as_str(), status), ("AccessDeniedException", 401));
    assert!(message.contains(CAMERA_KEY) && message.contains("kinesisvideo:CreateSignalingChannel"), "{message}");

    let (code, _, _) = failure(camera.describe_signaling_channel().channel_name("door-1").send().await);
    assert_eq!(code, "AccessDeniedException", "Describe* is allowed on cam-* channels only");

    let (code, _, _) = failure(camera.list_signaling_channels().send().await);
    assert_eq!(code, "AccessDeniedException", "List acts on resource '*', which cam-* does not match");

    let (code, _, _) =
        failure(camera.delete_signaling_channel().channel_arn(channel_arn(&reel, "cam-1").await).send().await);
    assert_eq!(code, "AccessDeniedException");
}

async fn channel_arn(reel: &Reel, name: &str) -> String {
    let out = reel.kvs().describe_signaling_channel().channel_name(name).send().await.expect("root describes");
    out.channel_info().and_then(|c| c.channel_arn()).expect("channel ARN").to_owned()
}

#[tokio::test]
async fn allowed_by_wildcard_policy() {
    let reel = start();
    create_channels(&reel, &["cam-1", "door-1"]).await;

    let camera = client(&reel, CAMERA_KEY, CAMERA_SECRET, None, |b| b);
    let out = camera.describe_signaling_channel().channel_name("cam-1").send().await.expect("Describe* on cam-*");
    assert_eq!(out.channel_info().and_then(|c| c.channel_name()), Some("cam-1"));

    let lister = client(&reel, LISTER_KEY, LISTER_SECRET, None, |b| b);
    let out = lister.list_signaling_channels().send().await.expect("List* on *");
    let mut names: Vec<&str> = out.channel_info_list().iter().filter_map(|c| c.channel_name()).collect();
    names.sort();
    assert_eq!(names, ["cam-1", "door-1"]);
}

#[tokio::test]
async fn explicit_deny_beats_allow() {
    let reel = start();
    create_channels(&reel, &["cam-1", "secret-1"]).await;
    let operator = client(&reel, OPERATOR_KEY, OPERATOR_SECRET, None, |b| b);

    operator.describe_signaling_channel().channel_name("cam-1").send().await.expect("allowed by kinesisvideo:*");
    operator.list_signaling_channels().send().await.expect("allowed by kinesisvideo:*");

    let (code, _, _) = failure(operator.describe_signaling_channel().channel_name("secret-1").send().await);
    assert_eq!(code, "AccessDeniedException", "Deny on secret-* wins over Allow *");
    let (code, _, _) = failure(operator.create_signaling_channel().channel_name("new-1").send().await);
    assert_eq!(code, "AccessDeniedException", "Deny CreateSignalingChannel wins over Allow *");
}

#[tokio::test]
async fn session_token_must_match() {
    let reel = start();
    let good = client(&reel, TEMP_KEY, TEMP_SECRET, Some(TEMP_TOKEN), |b| b);
    good.list_signaling_channels().send().await.expect("right token");

    let wrong = client(&reel, TEMP_KEY, TEMP_SECRET, Some("another-token"), |b| b);
    let (code, status, _) = failure(wrong.list_signaling_channels().send().await);
    assert_eq!((code.as_str(), status), ("UnrecognizedClientException", 403));

    let missing = client(&reel, TEMP_KEY, TEMP_SECRET, None, |b| b);
    let (code, _, _) = failure(missing.list_signaling_channels().send().await);
    assert_eq!(code, "UnrecognizedClientException");

    // A long-term key sent with a leftover session token is refused, as AWS refuses it.
    let leftover = client(&reel, ROOT_KEY_ID, ROOT_SECRET, Some("leftover-token"), |b| b);
    let (code, status, message) = failure(leftover.list_signaling_channels().send().await);
    assert_eq!((code.as_str(), status), ("UnrecognizedClientException", 403));
    assert_eq!(message, "The security token included in the request is invalid.");
}

/// Presign `method url` with the official signer (query-string signature, `UNSIGNED-PAYLOAD`).
fn presign(method: &str, url: &str, key: &str, secret: &str, time: SystemTime, expires: Duration) -> String {
    presign_body(method, url, key, secret, time, expires, None)
}

/// [`presign`] signed over `body` when given.
fn presign_body(
    method: &str,
    url: &str,
    key: &str,
    secret: &str,
    time: SystemTime,
    expires: Duration,
    body: Option<&[u8]>,
) -> String {
    let identity = aws_credential_types::Credentials::new(key, secret, None, None, "reel-test").into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires);
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("kinesisvideo")
        .time(time)
        .settings(settings)
        .build()
        .expect("signing params")
        .into();
    let signable_body = body.map_or(SignableBody::UnsignedPayload, SignableBody::Bytes);
    let signable = SignableRequest::new(method, url, std::iter::empty(), signable_body).expect("signable");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    let mut req = http::Request::builder().method(method).uri(url).body(()).expect("request");
    instructions.apply_to_request_http1x(&mut req);
    req.uri().to_string()
}

/// Flip the first hex digit of the `X-Amz-Signature` value.
fn tamper_signature(url: &str) -> String {
    let (head, sig) = url.split_once("X-Amz-Signature=").expect("presigned");
    let flipped = if sig.starts_with('0') { '1' } else { '0' };
    format!("{head}X-Amz-Signature={flipped}{}", &sig[1..])
}

/// Status, `x-amzn-ErrorType`, body and whether a `Date` header came back.
async fn send(method: reqwest::Method, url: &str, body: &'static str) -> (u16, String, serde_json::Value, bool) {
    let res = reqwest::Client::new().request(method, url).body(body).send().await.expect("http request");
    let status = res.status().as_u16();
    let code = res.headers().get("x-amzn-ErrorType").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let has_date = res.headers().contains_key("date");
    let json = res.json().await.unwrap_or(serde_json::Value::Null);
    (status, code, json, has_date)
}

#[tokio::test]
async fn presigned_control_plane_call_verifies_and_tampering_is_refused() {
    let reel = start();
    let url = format!("{}/listSignalingChannels", reel.url);
    let good =
        presign_body("POST", &url, ROOT_KEY_ID, ROOT_SECRET, SystemTime::now(), Duration::from_secs(299), Some(b"{}"));
    let (status, code, body, _) = send(reqwest::Method::POST, &good, "{}").await;
    assert_eq!(status, 200, "{code} {body}");

    // A presigned POST carries only the body its signer signed.
    let (status, code, body, _) = send(reqwest::Method::POST, &good, r#"{"MaxResults":1}"#).await;
    assert_eq!((status, code.as_str()), (403, "InvalidSignatureException"), "another body: {body}");
    let unsigned = presign("POST", &url, ROOT_KEY_ID, ROOT_SECRET, SystemTime::now(), Duration::from_secs(299));
    let (status, code, body, _) = send(reqwest::Method::POST, &unsigned, "{}").await;
    assert_eq!((status, code.as_str()), (403, "InvalidSignatureException"), "UNSIGNED-PAYLOAD with a body: {body}");
    let (status, code, body, _) = send(reqwest::Method::POST, &unsigned, "").await;
    assert_eq!(status, 200, "UNSIGNED-PAYLOAD without a body: {code} {body}");

    let (status, code, body, has_date) = send(reqwest::Method::POST, &tamper_signature(&good), "{}").await;
    assert_eq!((status, code.as_str()), (403, "InvalidSignatureException"), "{body}");
    assert_eq!(body["__type"], "InvalidSignatureException");
    assert!(has_date, "auth failures carry a Date header (C SDK clock skew)");

    let expired = presign(
        "POST",
        &url,
        ROOT_KEY_ID,
        ROOT_SECRET,
        SystemTime::now() - Duration::from_secs(600),
        Duration::from_secs(60),
    );
    let (status, code, body, _) = send(reqwest::Method::POST, &expired, "{}").await;
    assert_eq!((status, code.as_str()), (403, "InvalidSignatureException"));
    assert!(body["message"].as_str().unwrap_or_default().contains("Signature expired"), "{body}");

    let (status, code, body, _) = send(reqwest::Method::POST, &url, "{}").await;
    assert_eq!((status, code.as_str()), (403, "MissingAuthenticationTokenException"), "{body}");
    assert_eq!(body["message"], "Missing Authentication Token");
}

#[tokio::test]
async fn presigned_websocket_url_tampered_is_refused() {
    let reel = start();
    create_channels(&reel, &["cam-1"]).await;
    let arn = channel_arn(&reel, "cam-1").await;
    let encoded: String = arn.replace(':', "%3A").replace('/', "%2F");
    let url = format!("{}/?X-Amz-ChannelARN={encoded}&X-Amz-ClientId=viewer-1", reel.url);
    let good = presign("GET", &url, ROOT_KEY_ID, ROOT_SECRET, SystemTime::now(), Duration::from_secs(299));

    let (status, code, body, _) = send(reqwest::Method::GET, &tamper_signature(&good), "").await;
    assert_eq!((status, code.as_str()), (403, "InvalidSignatureException"), "{body}");
    assert_eq!(body["__type"], "InvalidSignatureException");

    let other_channel = good.replace("cam-1", "cam-2");
    let (status, code, _, _) = send(reqwest::Method::GET, &other_channel, "").await;
    assert_eq!((status, code.as_str()), (403, "InvalidSignatureException"));

    let expired = presign(
        "GET",
        &url,
        ROOT_KEY_ID,
        ROOT_SECRET,
        SystemTime::now() - Duration::from_secs(600),
        Duration::from_secs(299),
    );
    let (status, _, body, _) = send(reqwest::Method::GET, &expired, "").await;
    assert_eq!(status, 403);
    assert!(body["message"].as_str().unwrap_or_default().contains("Signature expired"), "{body}");
}

#[tokio::test]
async fn first_start_generates_a_root_key_that_survives_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = common::Options { data_dir: Some(dir.path().to_path_buf()), no_root_key: true, ..Default::default() };
    let reel = Reel::start_with(opts.clone());
    let export = |name: &str| -> String {
        let prefix = format!("export {name}=");
        let line = reel.preamble.iter().find(|l| l.starts_with(&prefix));
        line.map(|l| l[prefix.len()..].to_owned()).unwrap_or_else(|| panic!("no {name} in {:?}", reel.preamble))
    };
    let (key, secret) = (export("AWS_ACCESS_KEY_ID"), export("AWS_SECRET_ACCESS_KEY"));
    assert!(key.starts_with("AKIA") && key.len() == 20, "{key}");
    assert_eq!(secret.len(), 40);
    client(&reel, &key, &secret, None, |b| b).list_signaling_channels().send().await.expect("generated root key works");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            std::fs::metadata(dir.path().join("root-credentials.toml")).expect("stored key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(reel.stop());

    let again = Reel::start_with(opts);
    assert!(!again.preamble.iter().any(|l| l.starts_with("export ")), "printed only once: {:?}", again.preamble);
    client(&again, &key, &secret, None, |b| b).list_signaling_channels().send().await.expect("same key after restart");
}
