//! Shared server state handed to every handler, and the one place it is built.
//!
//! [`AppState::build`] opens everything under the data directory (metadata, credentials,
//! audit log, media store) and starts the signaling service and the storage media peer.
//! `server::serve` calls it after binding its listener; in-process servers (tests, tools)
//! call it through [`crate::server::spawn`], so every server runs on the same state.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use crate::auth::{Authenticator, CredentialStore, CredentialsError, GeneratedKey};
use crate::config::{Config, TlsMode};
use crate::meta::{self, MetaError, MetaStore};
use crate::observe::audit::AuditLog;
use crate::throttle::Throttle;

/// Everything a handler may need; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Resolved configuration, including [`crate::limits::Limits`].
    pub config: Arc<Config>,
    /// The metadata store (channels, streams, tags, storage mappings).
    pub meta: Arc<dyn MetaStore>,
    /// SigV4 verifier and key store.
    pub auth: Arc<Authenticator>,
    /// Control-plane audit trail.
    pub audit: AuditLog,
    /// Request-rate quotas.
    pub throttle: Arc<Throttle>,
    /// The URLs this server advertises in endpoint responses.
    pub urls: Arc<PublicUrls>,
    /// Signaling registry (incl. the storage-peer seam), TURN secret and TURN server.
    pub signaling: crate::signaling::Signaling,
    /// The retained-stream store (media fragments), keyed by stream ARN.
    pub store: reel_storage::Store,
    /// The storage media peer (JoinStorageSession sessions and their UDP I/O loop).
    pub peers: crate::peer::Peers,
    /// Open GetMedia readers per stream (the per-stream connection cap).
    pub playback: crate::playback::Readers,
}

/// Why [`AppState::build`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("metadata database: {0}")]
    Meta(#[from] MetaError),
    #[error("credentials: {0}")]
    Credentials(#[from] CredentialsError),
    #[error("audit log: {0}")]
    Audit(std::io::Error),
    #[error("media store: {0}")]
    Store(#[from] reel_storage::StoreError),
    #[error("signaling: {0}")]
    Signaling(#[from] crate::signaling::SignalingError),
    #[error("cannot listen for WebRTC media on {addr}: {source}")]
    Peers { addr: SocketAddr, source: std::io::Error },
}

/// A built [`AppState`] and what startup has to tell the operator.
#[derive(Debug)]
pub struct Built {
    /// The state to serve.
    pub state: AppState,
    /// The root key generated on this start (no root key configured, none stored yet).
    pub generated_key: Option<GeneratedKey>,
}

impl AppState {
    /// Builds the state of a server whose HTTP listener is bound to `local`: creates
    /// `config.data_dir`, opens the metadata store, credentials, audit log and media store
    /// (`<data-dir>/media`, plus S3 when configured), and starts signaling (TURN included)
    /// and the storage media peer. The advertised URLs are `config.public_url`, else
    /// `http(s)://<local>` by the TLS mode.
    pub async fn build(config: Config, local: SocketAddr) -> Result<Built, StateError> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| StateError::DataDir { path: data_dir.clone(), source })?;
        let meta = meta::open(&data_dir).await?;
        let (keys, generated_key) =
            CredentialStore::load(config.root_key.clone(), config.credentials_file.as_deref(), &data_dir)?;
        let audit = AuditLog::open(&data_dir).await.map_err(StateError::Audit)?;
        let store = reel_storage::Store::open(media_store_config(&config)).await?;
        tracing::info!(report = ?store.recovery_report(), "media store opened");

        let scheme = if config.tls == TlsMode::Off { "http" } else { "https" };
        let base = config.public_url.clone().unwrap_or_else(|| format!("{scheme}://{local}"));
        let signaling = crate::signaling::Signaling::start(&config, &data_dir, &base).await?;
        // Media candidates fall back to the public host when it is an IP, else the bound one.
        let fallback_ip = url_host(&base).and_then(|h| h.parse::<IpAddr>().ok()).unwrap_or(local.ip());
        let peers = crate::peer::Peers::start(&config.webrtc, &config.limits.storage_session, Some(fallback_ip))
            .map_err(|source| StateError::Peers { addr: config.webrtc.listen, source })?;
        let state = AppState {
            auth: Arc::new(Authenticator::new(keys, &config.limits)),
            config: Arc::new(config),
            meta,
            audit,
            throttle: Arc::new(Throttle::default()),
            urls: Arc::new(PublicUrls::from_base(&base)),
            signaling,
            store,
            peers,
            playback: Default::default(),
        };
        Ok(Built { state, generated_key })
    }
}

/// The media store's configuration: `<data-dir>/media`, plus S3 when configured.
fn media_store_config(config: &Config) -> reel_storage::StoreConfig {
    let mut store = reel_storage::StoreConfig::new(config.data_dir.join("media"));
    store.s3 = config.s3.as_ref().map(|s| {
        let mut s3 = reel_storage::S3Config::new(&s.bucket, &s.region, &s.access_key_id, &s.secret_access_key);
        s3.prefix = s.prefix.clone();
        s3.endpoint_url = s.endpoint_url.clone();
        s3.force_path_style = s.path_style;
        s3
    });
    store
}

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
