//! Authentication (SigV4) and authorization (IAM-style policies): the one auth layer
//! every API goes through.
//!
//! - [`sigv4`]: sans-IO signature verification (header-signed and presigned URLs).
//! - [`policy`]: statements, wildcard matching, explicit-deny-wins evaluation.
//! - [`credentials`]: the access keys (flags, credentials file, generated root key).
//!
//! The edge ([`crate::api::edge::signed_api`]) calls [`Authenticator::authenticate`] for every
//! signed request with the buffered body; handlers then call [`Principal::is_allowed`]
//! (through `edge::authorize`) with the operation's action and resource ARN. Auth failures
//! become KVS/AWS error shapes in exactly one place: `impl From<AuthError> for ApiError`.

pub mod credentials;
pub mod policy;
pub mod sigv4;

use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderMap, Method, StatusCode, Uri};
use subtle::ConstantTimeEq;

pub use credentials::{AccessKey, CredentialStore, CredentialsError, GeneratedKey, KeySource};
pub use policy::{Decision, Policy};

use crate::error::ApiError;
use crate::limits::Limits;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The access key id that signed the request.
    pub access_key_id: String,
    /// Root keys may do everything.
    pub root: bool,
    /// The key's policy (ignored for root keys).
    policy: Arc<Policy>,
}

impl Principal {
    /// A root caller (allowed everything).
    pub fn root(access_key_id: impl Into<String>) -> Self {
        Self { access_key_id: access_key_id.into(), root: true, policy: Arc::default() }
    }

    /// A non-root caller governed by `policy`.
    pub fn with_policy(access_key_id: impl Into<String>, policy: Arc<Policy>) -> Self {
        Self { access_key_id: access_key_id.into(), root: false, policy }
    }

    /// The caller's policy (empty for root).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Whether policy could allow `action` on some resource (see [`Policy::may_allow`]).
    pub fn may_perform(&self, action: &str) -> bool {
        self.root || self.policy.may_allow(action)
    }

    /// Whether policy allows `action` (e.g. `kinesisvideo:CreateStream`) on `resource` (an
    /// ARN or `*`): root keys always; others when a statement allows it and none denies
    /// it (see [`policy`] for the matching rules).
    pub fn is_allowed(&self, action: &str, resource: &str) -> bool {
        self.root || self.policy.evaluate(action, resource) == Decision::Allow
    }
}

/// The first sentence of AWS's signature-mismatch message (clients and people grep it).
pub const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. \
     Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";
/// AWS's message for an unknown key or a wrong session token.
pub const INVALID_TOKEN: &str = "The security token included in the request is invalid.";

/// Why a request was not authenticated. The `Display` text is the API error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Neither an `Authorization` header nor presigned query parameters.
    #[error("Missing Authentication Token")]
    MissingAuthentication,
    /// A malformed `Authorization` header, credential, date or presign parameter (400).
    #[error("{0}")]
    Incomplete(String),
    /// The access key id is not known.
    #[error("{INVALID_TOKEN}")]
    UnknownAccessKey(String),
    /// The key requires a session token and the request's is missing or different.
    #[error("{INVALID_TOKEN}")]
    InvalidSessionToken(String),
    /// The recomputed signature differs; carries AWS-style canonical-request details.
    #[error("{SIGNATURE_MISMATCH}{0}")]
    SignatureMismatch(String),
    /// Well-formed but unacceptable signature claims (wrong service, scope date, body hash).
    #[error("{0}")]
    Invalid(String),
    /// Signed too long ago, or a presigned URL past its expiry (message has `Signature expired`).
    #[error("{0}")]
    Expired(String),
    /// Dated too far in the future (message has `Signature not yet current`).
    #[error("{0}")]
    NotYetCurrent(String),
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let (code, status) = match &e {
            AuthError::MissingAuthentication => ("MissingAuthenticationTokenException", StatusCode::FORBIDDEN),
            AuthError::Incomplete(_) => ("IncompleteSignatureException", StatusCode::BAD_REQUEST),
            AuthError::UnknownAccessKey(_) | AuthError::InvalidSessionToken(_) => {
                ("UnrecognizedClientException", StatusCode::FORBIDDEN)
            }
            AuthError::SignatureMismatch(_)
            | AuthError::Invalid(_)
            | AuthError::Expired(_)
            | AuthError::NotYetCurrent(_) => ("InvalidSignatureException", StatusCode::FORBIDDEN),
        };
        ApiError::new(code, status, e.to_string())
    }
}

/// Verifies SigV4 (header-signed and presigned-query) requests against the store.
#[derive(Debug)]
pub struct Authenticator {
    store: Arc<CredentialStore>,
    rules: sigv4::TimeRules,
}

impl Authenticator {
    /// Build from the loaded keys and the skew/expiry limits.
    pub fn new(store: CredentialStore, limits: &Limits) -> Self {
        Self {
            store: Arc::new(store),
            rules: sigv4::TimeRules {
                max_clock_skew_secs: limits.max_clock_skew_secs,
                max_presign_expires_secs: limits.max_presign_expires_secs,
            },
        }
    }

    /// The loaded keys.
    pub fn store(&self) -> &CredentialStore {
        &self.store
    }

    /// What can be checked before the body is read: the signature claims parse, their scope
    /// and time are acceptable, the key exists and the session token matches. A request
    /// failing here is refused without reading (or buffering) its body.
    pub fn precheck(&self, method: &Method, uri: &Uri, headers: &HeaderMap, now: SystemTime) -> Result<(), AuthError> {
        let req = sigv4::Request { method, uri, headers, body: sigv4::Payload::Buffered(&[]) };
        self.claims(&req, now).map(|_| ())
    }

    /// Authenticate one request from its own signature (header or presigned query): parse
    /// the claims, check scope and time, find the key, check its session token, then
    /// recompute and compare the signature over `body` (a streamed body, PutMedia's, with the
    /// payload hashes producers sign it with).
    pub fn authenticate(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: sigv4::Payload<'_>,
        now: SystemTime,
    ) -> Result<Principal, AuthError> {
        let req = sigv4::Request { method, uri, headers, body };
        let (signed, key) = self.claims(&req, now)?;
        let key_id = &signed.scope.access_key_id;
        sigv4::verify(&req, &signed, key.secret())?;
        Ok(if key.root {
            Principal::root(key_id.clone())
        } else {
            Principal::with_policy(key_id.clone(), key.policy().clone())
        })
    }

    /// The request's signature claims, checked for scope and time, and its key, checked for
    /// its session token: everything but the signature itself.
    fn claims(
        &self,
        req: &sigv4::Request<'_>,
        now: SystemTime,
    ) -> Result<(sigv4::SignedRequest, &AccessKey), AuthError> {
        let signed = sigv4::parse(req)?;
        sigv4::check_scope(&signed)?;
        sigv4::check_time(&signed, now, self.rules)?;
        let key_id = &signed.scope.access_key_id;
        let key = self.store.get(key_id).ok_or_else(|| AuthError::UnknownAccessKey(key_id.clone()))?;
        check_session_token(key, signed.security_token.as_deref())?;
        Ok((signed, key))
    }
}

/// The request's session token must be the key's: a key with one requires it, and a key
/// without one refuses any (as AWS refuses a long-term key sent with a leftover
/// `AWS_SESSION_TOKEN`).
fn check_session_token(key: &AccessKey, sent: Option<&str>) -> Result<(), AuthError> {
    let matches = match (key.session_token(), sent) {
        (Some(expected), Some(sent)) => bool::from(sent.as_bytes().ct_eq(expected.as_bytes())),
        (None, None) => true,
        _ => false,
    };
    if matches { Ok(()) } else { Err(AuthError::InvalidSessionToken(key.access_key_id.clone())) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::policy::{Effect, Statement};

    #[test]
    fn root_allows_everything_and_policies_govern_others() {
        assert!(Principal::root("AKIAROOT").is_allowed("kinesisvideo:DeleteStream", "*"));
        let p = Principal::with_policy(
            "AKIAUSER",
            Arc::new(Policy::new(vec![Statement::new(Effect::Allow, &["kinesisvideo:List*"], &["*"])])),
        );
        assert!(p.is_allowed("kinesisvideo:ListStreams", "*"));
        assert!(!p.is_allowed("kinesisvideo:DeleteStream", "*"));
    }

    #[test]
    fn errors_map_to_aws_shapes() {
        let api = |e: AuthError| ApiError::from(e);
        let e = api(AuthError::MissingAuthentication);
        assert_eq!(
            (e.code, e.status, e.message.as_str()),
            ("MissingAuthenticationTokenException", StatusCode::FORBIDDEN, "Missing Authentication Token")
        );
        let e = api(AuthError::Incomplete("bad credential".into()));
        assert_eq!((e.code, e.status), ("IncompleteSignatureException", StatusCode::BAD_REQUEST));
        let e = api(AuthError::UnknownAccessKey("AKIAX".into()));
        assert_eq!(
            (e.code, e.status, e.message.as_str()),
            ("UnrecognizedClientException", StatusCode::FORBIDDEN, INVALID_TOKEN)
        );
        let e = api(AuthError::InvalidSessionToken("AKIAX".into()));
        assert_eq!(e.code, "UnrecognizedClientException");
        let e = api(AuthError::SignatureMismatch(String::new()));
        assert_eq!((e.code, e.status), ("InvalidSignatureException", StatusCode::FORBIDDEN));
        assert!(e.message.starts_with("The request signature we calculated does not match"));
        let e = api(AuthError::Expired("Signature expired: x".into()));
        assert_eq!((e.code, e.status), ("InvalidSignatureException", StatusCode::FORBIDDEN));
        let e = api(AuthError::NotYetCurrent("Signature not yet current: x".into()));
        assert_eq!(e.code, "InvalidSignatureException");
    }
}
