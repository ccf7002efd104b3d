//! SigV4 (`AWS4-HMAC-SHA256`) verification: sans-IO, time passed in.
//!
//! A request carries its signature either in the `Authorization` header (every SDK's
//! API calls) or in the query string (presigned URLs: the signaling WebSocket GET).
//! [`parse`] extracts what the client claims (credential scope, date, signed headers,
//! signature); [`check_scope`] and [`check_time`] validate the claims; [`verify`]
//! recomputes the signature from the request as received and compares it in constant time.
//!
//! Canonicalization follows the official `aws-sigv4` crate (the reference the unit tests
//! cross-check against), which is what every KVS client does for `kinesisvideo`:
//! - canonical URI: the path as sent, dot segments and empty segments removed, then
//!   percent-encoded again (everything but RFC 3986 unreserved characters and `/`), so a
//!   `%20` that was on the wire becomes `%2520` (standard, non-S3 "double" encoding);
//! - canonical query: every parameter decoded (`+` is a space) and RFC 3986 re-encoded,
//!   sorted by encoded name then value; presigned requests leave out `X-Amz-Signature`;
//! - canonical headers: exactly the request's own `SignedHeaders` list, names lowercased,
//!   values with surrounding spaces trimmed and runs of spaces collapsed, repeated headers
//!   joined with `,` (so the C SDK's `host;user-agent;x-amz-date` with an unsigned
//!   `x-amz-security-token` verifies as well as the Rust SDK's full list);
//! - payload hash: `x-amz-content-sha256` (or a presigned URL's `X-Amz-Content-Sha256`) when
//!   present (a hex digest must match the body), else SHA-256 of the body. `UNSIGNED-PAYLOAD`
//!   and a presigned URL's SHA-256 of the empty string (JS SDK) are accepted only without a
//!   body: a presigned POST must be signed over the body it carries.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, Method, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AuthError;

/// The only signing algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Signing name of every KVS API (control plane, signaling, storage, data plane).
pub const SERVICE: &str = "kinesisvideo";
/// Last element of every credential scope.
pub const TERMINATOR: &str = "aws4_request";
/// Payload hash of a request whose body is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// `x-amz-content-sha256` of a streamed body the AWS SDK for Java signs PutMedia with (the
/// body itself is plain chunked).
pub const STREAMING_PAYLOAD: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// Header carrying a session token on header-signed requests.
pub const SECURITY_TOKEN_HEADER: &str = "x-amz-security-token";

const CONTENT_SHA256_HEADER: &str = "x-amz-content-sha256";
const DATE_HEADER: &str = "x-amz-date";

/// Query parameters of a presigned URL.
mod param {
    pub const ALGORITHM: &str = "X-Amz-Algorithm";
    pub const CREDENTIAL: &str = "X-Amz-Credential";
    pub const DATE: &str = "X-Amz-Date";
    pub const EXPIRES: &str = "X-Amz-Expires";
    pub const SIGNED_HEADERS: &str = "X-Amz-SignedHeaders";
    pub const SIGNATURE: &str = "X-Amz-Signature";
    pub const SECURITY_TOKEN: &str = "X-Amz-Security-Token";
    pub const CONTENT_SHA256: &str = "X-Amz-Content-Sha256";
}

/// RFC 3986: everything except unreserved characters is percent-encoded (query parts).
const QUERY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
/// Same as [`QUERY_ENCODE`] but keeps `/` (canonical URI).
const PATH_ENCODE: &AsciiSet = &QUERY_ENCODE.remove(b'/');

/// The parts of an HTTP request a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Method as received.
    pub method: &'a Method,
    /// Request target as received (path and query; authority with HTTP/2).
    pub uri: &'a Uri,
    /// Headers as received.
    pub headers: &'a HeaderMap,
    /// The body, or that it is streamed.
    pub body: Payload<'a>,
}

/// What of a request's body the verifier has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    /// The whole body, read before verification.
    Buffered(&'a [u8]),
    /// A streaming upload (PutMedia) whose body is read only after verification; it is
    /// signed with one of the hashes producers sign a streamed body with
    /// ([`streaming_payload_hashes`]).
    Streamed,
}

/// Where the request carried its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// `Authorization: AWS4-HMAC-SHA256 ...` header.
    Header,
    /// Presigned URL (`X-Amz-Signature` and friends in the query).
    Query,
}

/// Credential scope `AKID/yyyymmdd/region/service/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialScope {
    /// Access key id that signed.
    pub access_key_id: String,
    /// Scope date, `yyyymmdd`.
    pub date: String,
    /// Region the client signed for (any region is accepted).
    pub region: String,
    /// Signing name; must be [`SERVICE`].
    pub service: String,
    /// Must be [`TERMINATOR`].
    pub terminator: String,
}

impl CredentialScope {
    /// Parse `AKID/yyyymmdd/region/service/aws4_request`.
    pub fn parse(credential: &str) -> Result<Self, AuthError> {
        let parts: Vec<&str> = credential.split('/').collect();
        let [access_key_id, date, region, service, terminator] = parts[..] else {
            return Err(AuthError::Incomplete(format!(
                "Credential '{credential}' must have the form <AccessKeyId>/<yyyymmdd>/<region>/{SERVICE}/{TERMINATOR} \
                 (found {} '/'-separated parts, expected 5)",
                parts.len()
            )));
        };
        if access_key_id.is_empty() {
            return Err(AuthError::Incomplete(format!("Credential '{credential}' has an empty access key id")));
        }
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AuthError::Incomplete(format!(
                "Credential '{credential}' has an invalid date '{date}'; expected yyyymmdd"
            )));
        }
        if region.is_empty() {
            return Err(AuthError::Incomplete(format!("Credential '{credential}' has an empty region")));
        }
        Ok(Self {
            access_key_id: access_key_id.to_owned(),
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            terminator: terminator.to_owned(),
        })
    }

    /// `yyyymmdd/region/service/aws4_request`, the scope line of the string to sign.
    pub fn scope(&self) -> String {
        format!("{}/{}/{}/{}", self.date, self.region, self.service, self.terminator)
    }
}

/// A UTC timestamp in SigV4's basic ISO 8601 form (`yyyymmddTHHMMSSZ`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AmzDate(i64);

impl AmzDate {
    /// Strictly parse `yyyymmddTHHMMSSZ`.
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
            return None;
        }
        let digits = |range: std::ops::Range<usize>| -> Option<u32> {
            let s = text.get(range)?;
            if s.bytes().all(|c| c.is_ascii_digit()) { s.parse().ok() } else { None }
        };
        let date = chrono::NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(4..6)?, digits(6..8)?)?;
        let time = date.and_hms_opt(digits(9..11)?, digits(11..13)?, digits(13..15)?)?;
        Some(Self(time.and_utc().timestamp()))
    }

    /// The timestamp of a `SystemTime` (whole seconds; before 1970 clamps to 0).
    pub fn from_system_time(t: SystemTime) -> Self {
        Self(t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0))
    }

    /// Seconds since the Unix epoch.
    pub fn epoch_secs(self) -> i64 {
        self.0
    }

    /// This timestamp shifted by `secs`.
    pub fn plus(self, secs: i64) -> Self {
        Self(self.0.saturating_add(secs))
    }

    /// The `yyyymmdd` day.
    pub fn day(self) -> String {
        self.to_string().chars().take(8).collect()
    }
}

impl std::fmt::Display for AmzDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match chrono::DateTime::from_timestamp(self.0, 0) {
            Some(t) => write!(f, "{}", t.format("%Y%m%dT%H%M%SZ")),
            None => write!(f, "{}", self.0),
        }
    }
}

/// What a request claims about its own signature, before verification.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// Header or presigned query.
    pub location: Location,
    /// The credential scope.
    pub scope: CredentialScope,
    /// `X-Amz-Date` (or `Date`) of the signature.
    pub date: AmzDate,
    /// `SignedHeaders`, as listed by the client.
    pub signed_headers: Vec<String>,
    /// Hex signature as sent.
    pub signature: String,
    /// `X-Amz-Expires` of a presigned URL.
    pub expires_secs: Option<u64>,
    /// Session token from `X-Amz-Security-Token` (query) or `x-amz-security-token` (header).
    pub security_token: Option<String>,
}

/// Limits on signature times.
#[derive(Debug, Clone, Copy)]
pub struct TimeRules {
    /// Allowed distance between the signature date and now (header-signed), seconds.
    pub max_clock_skew_secs: u64,
    /// Longest accepted `X-Amz-Expires`, seconds.
    pub max_presign_expires_secs: u64,
}

/// Extract the signature claims of a request (header-signed or presigned).
pub fn parse(req: &Request<'_>) -> Result<SignedRequest, AuthError> {
    let query = decode_query(req.uri.query());
    let presign_markers = [param::ALGORITHM, param::CREDENTIAL, param::SIGNATURE];
    let presigned = query.iter().any(|(k, _)| presign_markers.contains(&k.as_ref()));
    let mut auth_headers = req.headers.get_all(http::header::AUTHORIZATION).iter();
    match (auth_headers.next(), presigned) {
        (Some(_), true) => Err(AuthError::Incomplete(
            "Found both an Authorization header and presigned X-Amz-* query parameters; use only one".into(),
        )),
        (Some(value), false) => {
            if auth_headers.next().is_some() {
                return Err(AuthError::Incomplete("Found more than one Authorization header".into()));
            }
            let value =
                value.to_str().map_err(|_| AuthError::Incomplete("Authorization header is not valid ASCII".into()))?;
            parse_header_auth(req, value)
        }
        (None, true) => parse_query_auth(req, &query),
        (None, false) => Err(AuthError::MissingAuthentication),
    }
}

fn parse_header_auth(req: &Request<'_>, value: &str) -> Result<SignedRequest, AuthError> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    if scheme != ALGORITHM {
        return Err(AuthError::Incomplete(format!(
            "Unsupported Authorization scheme '{scheme}'; only {ALGORITHM} is accepted"
        )));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, v)) = part.split_once('=') else {
            return Err(AuthError::Incomplete(format!(
                "Authorization header component '{part}' is not of the form name=value"
            )));
        };
        let slot = match name.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            other => {
                return Err(AuthError::Incomplete(format!("Authorization header has an unknown component '{other}'")));
            }
        };
        if slot.replace(v.trim()).is_some() {
            return Err(AuthError::Incomplete(format!("Authorization header repeats the '{}' component", name.trim())));
        }
    }
    let missing: Vec<String> =
        [("Credential", &credential), ("SignedHeaders", &signed_headers), ("Signature", &signature)]
            .into_iter()
            .filter(|(_, v)| v.is_none_or(str::is_empty))
            .map(|(n, _)| format!("Authorization header requires '{n}' parameter."))
            .collect();
    let (Some(credential), Some(signed_headers), Some(signature)) = (credential, signed_headers, signature) else {
        return Err(AuthError::Incomplete(missing.join(" ")));
    };
    if !missing.is_empty() {
        // A component was present but empty.
        return Err(AuthError::Incomplete(missing.join(" ")));
    }
    let date = match single_header(req.headers, DATE_HEADER)? {
        Some(v) => AmzDate::parse(&v)
            .ok_or_else(|| AuthError::Incomplete(format!("X-Amz-Date '{v}' is not of the form yyyymmddTHHMMSSZ")))?,
        None => match single_header(req.headers, "date")? {
            Some(v) => httpdate::parse_http_date(&v)
                .map(AmzDate::from_system_time)
                .map_err(|_| AuthError::Incomplete(format!("Date header '{v}' is not an HTTP date")))?,
            None => {
                return Err(AuthError::Incomplete(
                    "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".into(),
                ));
            }
        },
    };
    Ok(SignedRequest {
        location: Location::Header,
        scope: CredentialScope::parse(credential)?,
        date,
        signed_headers: parse_signed_headers(signed_headers)?,
        signature: signature.to_owned(),
        expires_secs: None,
        security_token: single_header(req.headers, SECURITY_TOKEN_HEADER)?,
    })
}

fn parse_query_auth(req: &Request<'_>, query: &[(Cow<'_, str>, Cow<'_, str>)]) -> Result<SignedRequest, AuthError> {
    let get = |name: &str| -> Result<Option<&str>, AuthError> {
        let mut found = query.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_ref());
        let first = found.next();
        if found.next().is_some() {
            return Err(AuthError::Incomplete(format!("Query parameter {name} appears more than once")));
        }
        Ok(first)
    };
    let required = |name: &str| -> Result<&str, AuthError> {
        match get(name)? {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(AuthError::Incomplete(format!("Presigned URL requires the {name} query parameter"))),
        }
    };
    let algorithm = required(param::ALGORITHM)?;
    if algorithm != ALGORITHM {
        return Err(AuthError::Incomplete(format!(
            "X-Amz-Algorithm '{algorithm}' is not supported; only {ALGORITHM} is accepted"
        )));
    }
    let scope = CredentialScope::parse(required(param::CREDENTIAL)?)?;
    let date_text = required(param::DATE)?;
    let date = AmzDate::parse(date_text).ok_or_else(|| {
        AuthError::Incomplete(format!("X-Amz-Date '{date_text}' is not of the form yyyymmddTHHMMSSZ"))
    })?;
    let expires_text = required(param::EXPIRES)?;
    let expires: u64 = expires_text
        .parse()
        .map_err(|_| AuthError::Incomplete(format!("X-Amz-Expires '{expires_text}' is not a number of seconds")))?;
    let signed_headers = parse_signed_headers(required(param::SIGNED_HEADERS)?)?;
    let signature = required(param::SIGNATURE)?.to_owned();
    let security_token = match get(param::SECURITY_TOKEN)? {
        Some(t) => Some(t.to_owned()),
        None => single_header(req.headers, SECURITY_TOKEN_HEADER)?,
    };
    Ok(SignedRequest {
        location: Location::Query,
        scope,
        date,
        signed_headers,
        signature,
        expires_secs: Some(expires),
        security_token,
    })
}

/// `host;x-amz-date` → names; each must be a lowercase header-name token.
fn parse_signed_headers(list: &str) -> Result<Vec<String>, AuthError> {
    let names: Vec<String> = list.split(';').map(str::to_owned).collect();
    for name in &names {
        let valid = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid {
            return Err(AuthError::Incomplete(format!(
                "SignedHeaders '{list}' is invalid: '{name}' is not a lowercase header name"
            )));
        }
    }
    if !names.iter().any(|n| n == "host") {
        return Err(AuthError::Incomplete(format!("'Host' must be a 'SignedHeader' (SignedHeaders was '{list}')")));
    }
    Ok(names)
}

/// One header value as text, refusing a repeated header.
fn single_header(headers: &HeaderMap, name: &str) -> Result<Option<String>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(AuthError::Incomplete(format!("Header {name} appears more than once")));
    }
    first
        .to_str()
        .map(|s| Some(s.trim().to_owned()))
        .map_err(|_| AuthError::Incomplete(format!("Header {name} is not valid ASCII")))
}

/// Scope checks: service `kinesisvideo`, terminator, and a scope day equal to the date's day.
pub fn check_scope(signed: &SignedRequest) -> Result<(), AuthError> {
    let scope = &signed.scope;
    if scope.service != SERVICE {
        return Err(AuthError::Invalid(format!(
            "Credential should be scoped to correct service: '{SERVICE}' (the request was signed for '{}').",
            scope.service
        )));
    }
    if scope.terminator != TERMINATOR {
        return Err(AuthError::Invalid(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{}'.",
            scope.terminator
        )));
    }
    let day = signed.date.day();
    if scope.date != day {
        return Err(AuthError::Invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{day}', from '{}'.",
            scope.date, signed.date
        )));
    }
    Ok(())
}

/// Time checks: header signatures within ±skew of `now`; presigned URLs not dated in the
/// future beyond the skew, `X-Amz-Expires` within the limit, and not past date + expires.
pub fn check_time(signed: &SignedRequest, now: SystemTime, rules: TimeRules) -> Result<(), AuthError> {
    let now = AmzDate::from_system_time(now);
    let skew = i64::try_from(rules.max_clock_skew_secs).unwrap_or(i64::MAX);
    let skew_text = if skew % 60 == 0 { format!("{} min.", skew / 60) } else { format!("{skew} sec.") };
    if signed.date > now.plus(skew) {
        return Err(AuthError::NotYetCurrent(format!(
            "Signature not yet current: {} is still later than {} ({now} + {skew_text})",
            signed.date,
            now.plus(skew)
        )));
    }
    match signed.expires_secs {
        None => {
            if signed.date < now.plus(-skew) {
                return Err(AuthError::Expired(format!(
                    "Signature expired: {} is now earlier than {} ({now} - {skew_text})",
                    signed.date,
                    now.plus(-skew)
                )));
            }
        }
        Some(expires) => {
            if expires > rules.max_presign_expires_secs {
                return Err(AuthError::Incomplete(format!(
                    "X-Amz-Expires must be less than a week (in seconds) that is {}; it was {expires}",
                    rules.max_presign_expires_secs
                )));
            }
            let expiry = signed.date.plus(i64::try_from(expires).unwrap_or(i64::MAX));
            if now > expiry {
                return Err(AuthError::Expired(format!(
                    "Signature expired: the presigned URL signed at {} with X-Amz-Expires={expires} expired at {expiry}; it is now {now}",
                    signed.date
                )));
            }
        }
    }
    Ok(())
}

/// Recompute the signature with `secret` and compare it (constant time) with the one sent.
pub fn verify(req: &Request<'_>, signed: &SignedRequest, secret: &str) -> Result<(), AuthError> {
    let key = signing_key(secret, &signed.scope);
    let provided = hex::decode(&signed.signature).unwrap_or_default();
    let mut first_attempt = None;
    for payload_hash in payload_hashes(req, signed)? {
        let canonical = canonical_request(req, signed, &payload_hash)?;
        let sts = string_to_sign(signed, &canonical);
        let expected = hmac(&key, sts.as_bytes());
        if bool::from(expected.as_slice().ct_eq(&provided)) {
            return Ok(());
        }
        first_attempt.get_or_insert((canonical, sts));
    }
    let (canonical, sts) = first_attempt.unwrap_or_default();
    Err(AuthError::SignatureMismatch(format!(
        "\n\nThe Canonical String for this request should have been\n'{}'\n\nThe String-to-Sign should have been\n'{sts}'\n",
        redact_token(&canonical)
    )))
}

/// The canonical request with session token values replaced (it ends up in logs).
fn redact_token(canonical: &str) -> String {
    let query_param = format!("{}=", param::SECURITY_TOKEN);
    canonical
        .split('\n')
        .map(|line| {
            if line.starts_with(SECURITY_TOKEN_HEADER)
                && line.as_bytes().get(SECURITY_TOKEN_HEADER.len()) == Some(&b':')
            {
                format!("{SECURITY_TOKEN_HEADER}:<redacted>")
            } else if let Some(start) = line.find(&query_param) {
                let value_start = start + query_param.len();
                let value_end = line[value_start..].find('&').map_or(line.len(), |i| value_start + i);
                format!("{}<redacted>{}", &line[..value_start], &line[value_end..])
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The payload hashes the client may have signed, in the order tried. Whatever is tried
/// covers the body as received: a carried hash must be the body's, and the hashes that
/// do not cover it (`UNSIGNED-PAYLOAD`, a presigned URL's empty-body hash) are tried only
/// for an empty body, so no request carries bytes its signer did not sign. A streamed body
/// has the hashes of [`streaming_payload_hashes`].
pub(crate) fn payload_hashes(req: &Request<'_>, signed: &SignedRequest) -> Result<Vec<String>, AuthError> {
    let body = match req.body {
        Payload::Buffered(body) => body,
        Payload::Streamed => return streaming_payload_hashes(req),
    };
    let carried = match single_header(req.headers, CONTENT_SHA256_HEADER)? {
        Some(h) => Some(h),
        None if signed.location == Location::Query => {
            let query = decode_query(req.uri.query());
            let mut values = query.iter().filter(|(k, _)| k == param::CONTENT_SHA256).map(|(_, v)| v.to_string());
            let first = values.next();
            if values.next().is_some() {
                return Err(AuthError::Incomplete(format!(
                    "Query parameter {} appears more than once",
                    param::CONTENT_SHA256
                )));
            }
            first
        }
        None => None,
    };
    if let Some(claimed) = carried {
        if claimed == UNSIGNED_PAYLOAD {
            if !body.is_empty() {
                return Err(AuthError::Invalid(format!(
                    "{UNSIGNED_PAYLOAD} is accepted only for requests without a body; sign the body's SHA-256"
                )));
            }
            return Ok(vec![claimed]);
        }
        if claimed.len() == 64 && claimed.bytes().all(|b| b.is_ascii_hexdigit()) {
            if !claimed.eq_ignore_ascii_case(&sha256_hex(body)) {
                return Err(AuthError::Invalid(
                    "The provided 'x-amz-content-sha256' header does not match what was computed.".into(),
                ));
            }
            return Ok(vec![claimed]);
        }
        return Err(AuthError::Incomplete(format!(
            "x-amz-content-sha256 '{claimed}' is not supported; send a hex SHA-256 of the body or {UNSIGNED_PAYLOAD}"
        )));
    }
    Ok(match signed.location {
        Location::Header => vec![sha256_hex(body)],
        // A presigned URL with a body verifies only if it was signed over that body.
        Location::Query if !body.is_empty() => vec![sha256_hex(body)],
        Location::Query => vec![sha256_hex(b""), UNSIGNED_PAYLOAD.to_owned()],
    })
}

/// The payload hashes a streaming upload may be signed with, none of which covers the body
/// (it is still arriving): the SHA-256 of the empty string (the KVS C and C++ producers,
/// which send no `x-amz-content-sha256`), or what `x-amz-content-sha256` says,
/// `UNSIGNED-PAYLOAD` (the Java producer) or [`STREAMING_PAYLOAD`] (the AWS SDK for Java's
/// PutMedia client). A carried digest of the body cannot be checked before the body is
/// read, so it is refused.
pub(crate) fn streaming_payload_hashes(req: &Request<'_>) -> Result<Vec<String>, AuthError> {
    match single_header(req.headers, CONTENT_SHA256_HEADER)? {
        None => Ok(vec![sha256_hex(b"")]),
        Some(claimed) if claimed == UNSIGNED_PAYLOAD || claimed == STREAMING_PAYLOAD => Ok(vec![claimed]),
        Some(claimed) => Err(AuthError::Incomplete(format!(
            "x-amz-content-sha256 '{claimed}' is not supported for a streaming upload; sign it with the SHA-256 of \
             the empty string, {UNSIGNED_PAYLOAD} or {STREAMING_PAYLOAD}"
        ))),
    }
}

/// The canonical request (method, URI, query, headers, signed header list, payload hash).
pub fn canonical_request(req: &Request<'_>, signed: &SignedRequest, payload_hash: &str) -> Result<String, AuthError> {
    let mut out = String::with_capacity(256);
    out.push_str(req.method.as_str());
    out.push('\n');
    out.push_str(&canonical_uri(req.uri.path()));
    out.push('\n');
    out.push_str(&canonical_query(req.uri.query(), signed.location == Location::Query));
    out.push('\n');
    for name in &signed.signed_headers {
        out.push_str(name);
        out.push(':');
        out.push_str(&canonical_header_value(req, name)?);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed.signed_headers.join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    Ok(out)
}

/// `AWS4-HMAC-SHA256\n<date>\n<scope>\n<hex sha256 of the canonical request>`.
pub fn string_to_sign(signed: &SignedRequest, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{}\n{}\n{}", signed.date, signed.scope.scope(), sha256_hex(canonical_request.as_bytes()))
}

/// HMAC chain `AWS4<secret>` → date → region → service → `aws4_request`.
pub fn signing_key(secret: &str, scope: &CredentialScope) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), scope.date.as_bytes());
    let k_region = hmac(&k_date, scope.region.as_bytes());
    let k_service = hmac(&k_region, scope.service.as_bytes());
    hmac(&k_service, scope.terminator.as_bytes())
}

/// Hex signature of `string_to_sign` under `key` (what a client computes).
pub fn signature_hex(key: &[u8], string_to_sign: &str) -> String {
    hex::encode(hmac(key, string_to_sign.as_bytes()))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so construction cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { return Vec::new() };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Canonical URI of a path as sent: dot/empty segments removed, then percent-encoded again.
pub fn canonical_uri(path: &str) -> String {
    utf8_percent_encode(&normalize_path(path), PATH_ENCODE).to_string()
}

/// RFC 3986 §5.2.4 dot-segment removal plus removal of empty segments, keeping a
/// trailing slash (what `aws-sigv4` does before signing).
fn normalize_path(path: &str) -> Cow<'_, str> {
    if path.is_empty() {
        return Cow::Borrowed("/");
    }
    let absolute: Cow<'_, str> =
        if path.starts_with('/') { Cow::Borrowed(path) } else { Cow::Owned(format!("/{path}")) };
    if !(absolute.contains('.') || absolute.contains("//")) {
        return absolute;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in absolute.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = format!("/{}", segments.join("/"));
    let trailing = ["/", "/.", "/./", "/..", "/../"].iter().any(|s| absolute.ends_with(s));
    if trailing && !out.ends_with('/') {
        out.push('/');
    }
    Cow::Owned(out)
}

/// Decode a query string into (name, value) pairs: `+` is a space, `%XX` decoded,
/// empty pieces skipped (form-urlencoded rules, like `aws-sigv4`).
fn decode_query(query: Option<&str>) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    let decode = |s: &str| -> String {
        let plus = s.replace('+', " ");
        percent_decode_str(&plus).decode_utf8_lossy().into_owned()
    };
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let k = if k.contains(['+', '%']) { Cow::Owned(decode(k)) } else { Cow::Borrowed(k) };
            let v = if v.contains(['+', '%']) { Cow::Owned(decode(v)) } else { Cow::Borrowed(v) };
            (k, v)
        })
        .collect()
}

/// Canonical query string; `presigned` leaves out `X-Amz-Signature`.
pub fn canonical_query(query: Option<&str>, presigned: bool) -> String {
    let mut pairs: Vec<(String, String)> = decode_query(query)
        .into_iter()
        .filter(|(k, _)| !(presigned && k == param::SIGNATURE))
        .map(|(k, v)| {
            (utf8_percent_encode(&k, QUERY_ENCODE).to_string(), utf8_percent_encode(&v, QUERY_ENCODE).to_string())
        })
        .collect();
    pairs.sort();
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Values of one signed header, normalized and joined with `,`. `host` falls back to
/// the URI authority (HTTP/2 has no Host header).
fn canonical_header_value(req: &Request<'_>, name: &str) -> Result<String, AuthError> {
    let values: Vec<String> =
        req.headers.get_all(name).iter().map(|v| trim_all(&String::from_utf8_lossy(v.as_bytes()))).collect();
    if values.is_empty() {
        if name == "host"
            && let Some(authority) = req.uri.authority()
        {
            return Ok(authority.as_str().to_owned());
        }
        return Err(AuthError::Invalid(format!(
            "The request signature we calculated does not match the signature you provided: \
             signed header '{name}' is not present in the request."
        )));
    }
    Ok(values.join(","))
}

/// Trim spaces at both ends and collapse runs of spaces (only ` `, like `aws-sigv4`).
fn trim_all(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut previous_space = false;
    for c in value.trim_matches(' ').chars() {
        if c == ' ' {
            if !previous_space {
                out.push(c);
            }
            previous_space = true;
        } else {
            out.push(c);
            previous_space = false;
        }
    }
    out
}

#[cfg(test)]
mod tests;
