//! Authentication (SigV4) and authorization (IAM-style policies): the one auth layer
//! every API goes through.
//!
//! INTERFACE SKELETON — the auth helper replaces this file; keep these signatures.
//! Until then it trusts the access key named in the Authorization header WITHOUT
//! checking the signature: never ship this.

use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderMap, Method, Uri};

use crate::error::ApiError;
use crate::limits::Limits;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The access key id that signed the request.
    pub access_key_id: String,
    /// Root keys may do everything.
    pub root: bool,
}

impl Principal {
    /// Whether policy allows `action` (e.g. `kinesisvideo:CreateStream`) on `resource` (an ARN or `*`).
    pub fn is_allowed(&self, _action: &str, _resource: &str) -> bool {
        self.root
    }
}

/// Why a request was not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("request is not signed")]
    MissingAuthentication,
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::new("MissingAuthenticationTokenException", http::StatusCode::FORBIDDEN, e.to_string())
    }
}

/// Loaded access keys.
#[derive(Debug, Default)]
pub struct CredentialStore {
    root: Option<String>,
}

/// Credential loading failures.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// A root key generated on first start (printed as `export` lines).
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl CredentialStore {
    /// Root key from flags, extra keys from the credentials file, or a generated root key
    /// persisted in `data_dir` (mode 0600) when nothing is configured.
    pub fn load(
        root: Option<(String, String)>,
        _file: Option<&std::path::Path>,
        _data_dir: &std::path::Path,
    ) -> Result<(Self, Option<GeneratedKey>), CredentialsError> {
        Ok((Self { root: root.map(|r| r.0) }, None))
    }
}

/// Verifies SigV4 (header-signed and presigned-query) requests against the store.
#[derive(Debug)]
pub struct Authenticator {
    _store: Arc<CredentialStore>,
}

impl Authenticator {
    /// Build from the loaded keys and the skew/expiry limits.
    pub fn new(store: CredentialStore, _limits: &Limits) -> Self {
        Self { _store: Arc::new(store) }
    }

    /// Authenticate one request from its own signature (header or query).
    pub fn authenticate(
        &self,
        _method: &Method,
        _uri: &Uri,
        headers: &HeaderMap,
        _body: &[u8],
        _now: SystemTime,
    ) -> Result<Principal, AuthError> {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let akid = auth.split("Credential=").nth(1).and_then(|c| c.split('/').next()).unwrap_or_default();
        if self._store.root.as_deref() == Some(akid) {
            Ok(Principal { access_key_id: akid.to_string(), root: true })
        } else {
            Err(AuthError::MissingAuthentication)
        }
    }
}
