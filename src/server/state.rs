//! Shared server state handed to every handler, and the one place it is built.
//!
//! [`AppState::build`] opens everything under the data directory (metadata, credentials,
//! audit log, media store) and starts the signaling service and the storage media peer.
//! `server::serve` calls it after binding its listener; in-process servers (tests, tools)
//! call it through [`super::spawn`], so every server runs on the same state.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::FromRef;

use crate::api::urls::url_host;
use crate::api::{Core, PublicUrls};
use crate::auth::{Authenticator, CredentialStore, CredentialsError, GeneratedKey};
use crate::config::{Config, TlsMode};
use crate::meta::{self, MetaError};
use crate::observe::audit::AuditLog;
use crate::peer::Peers;
use crate::peer::lease_keeper::LeaseRenewer;
use crate::playback::Readers;
use crate::signaling::{Signaling, SignalingError};
use crate::throttle::Throttle;

/// The server's state: the shared [`Core`] and each operation area's own service. Handlers
/// never name it: they extract the parts they use (`State<Core>`, `State<Signaling>`, …)
/// through the `FromRef` impls below. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// What every handler may need (config, metadata, auth, audit, quotas, URLs, store).
    pub core: Core,
    /// Signaling registry (incl. the storage-peer seam), TURN secret and TURN server.
    pub signaling: Signaling,
    /// The storage media peer (JoinStorageSession sessions and their UDP I/O loop).
    pub peers: Peers,
    /// Open GetMedia readers per stream (the per-stream connection cap).
    pub playback: Readers,
    /// Open PutMedia connections per stream (the newest wins).
    pub uploads: crate::put_media::Uploads,
    /// The latest `/readyz` answer (reused briefly, see [`super::health::READY_TTL`]).
    pub readiness: super::health::Readiness,
}

impl FromRef<AppState> for Core {
    fn from_ref(state: &AppState) -> Self {
        state.core.clone()
    }
}

impl FromRef<AppState> for Signaling {
    fn from_ref(state: &AppState) -> Self {
        state.signaling.clone()
    }
}

impl FromRef<AppState> for Peers {
    fn from_ref(state: &AppState) -> Self {
        state.peers.clone()
    }
}

impl FromRef<AppState> for crate::put_media::Uploads {
    fn from_ref(state: &AppState) -> Self {
        state.uploads.clone()
    }
}

impl FromRef<AppState> for Readers {
    fn from_ref(state: &AppState) -> Self {
        state.playback.clone()
    }
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
    Signaling(#[from] SignalingError),
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
        crate::private_fs::create_private_dir(&data_dir)
            .map_err(|source| StateError::DataDir { path: data_dir.clone(), source })?;
        let metadata_url = config.metadata_url.clone().map(|u| u.0);
        let meta = meta::open_url(metadata_url.as_deref(), &data_dir).await?;
        let (keys, generated_key) =
            CredentialStore::load(config.root_key_pair(), config.credentials_file.as_deref(), &data_dir)?;
        let audit =
            AuditLog::open(&data_dir, config.limits.http.audit_queue_events).await.map_err(StateError::Audit)?;
        let store = reel_storage::Store::open(media_store_config(&config, &meta)).await?;
        tracing::info!(report = ?store.recovery_report(), "media store opened");

        let scheme = if config.tls == TlsMode::Off { "http" } else { "https" };
        let base = config.public_url.clone().unwrap_or_else(|| format!("{scheme}://{local}"));
        let urls = PublicUrls::from_base(&base);
        let members = crate::members::Members::new(&config.node_id, &urls.https);
        let signaling = Signaling::start(&config, &data_dir, &base, members.clone()).await?;
        if store.is_shared() {
            signaling.carry_index_notices(store.clone()).await.map_err(SignalingError::from)?;
        }
        // Media candidates fall back to the public host when it is an IP, else the bound one.
        let fallback_ip = url_host(&base).and_then(|h| h.parse::<IpAddr>().ok()).unwrap_or(local.ip());
        let peers = Peers::start(&config.webrtc, &config.limits.storage_session, Some(fallback_ip))
            .map_err(|source| StateError::Peers { addr: config.webrtc.listen, source })?;
        // A camera behind a strict NAT reaches the storage peer through the relay.
        signaling.exempt_turn_peers(&peers.candidates());
        let leases = LeaseRenewer::new(meta.clone(), &config.node_id, config.limits.cluster.lease_ms);
        let images = crate::streaming::images::Decoders::new(config.limits.streaming.image_decodes);
        let core = Core {
            images,
            auth: Arc::new(Authenticator::new(keys, &config.limits)),
            config: Arc::new(config),
            meta,
            audit,
            throttle: Arc::new(Throttle::default()),
            urls: Arc::new(urls),
            store,
            members,
            stream_cache: Default::default(),
            leases,
        };
        if signaling.bus_connected().is_some() {
            crate::peer::handoff::serve(core.clone(), signaling.clone(), peers.clone());
        }
        let state = AppState {
            core,
            signaling,
            peers,
            playback: Readers::default(),
            uploads: Default::default(),
            readiness: Default::default(),
        };
        Ok(Built { state, generated_key })
    }
}

/// The media store's configuration: `<data-dir>/media`, plus S3 when configured.
/// The media store's settings; in cluster mode (shared metadata) its fragments are indexed
/// in the metadata database's catalog and kept in S3, readable from every node.
fn media_store_config(config: &Config, meta: &Arc<dyn meta::MetaStore>) -> reel_storage::StoreConfig {
    let mut store = reel_storage::StoreConfig::new(config.data_dir.join("media"));
    store.s3 = config.s3.as_ref().map(|s| {
        let mut s3 = reel_storage::S3Config::new(&s.bucket, &s.region, &s.access_key_id, s.secret_access_key.expose());
        s3.prefix = s.prefix.clone();
        s3.endpoint_url = s.endpoint_url.clone();
        s3.force_path_style = s.path_style;
        s3
    });
    if config.shares_metadata() {
        store.catalog = Some(Arc::new(meta::catalog::MetaCatalog::new(meta.clone())));
        store.notice_trust = std::time::Duration::from_millis(config.limits.cluster.index_notice_trust_ms);
    }
    store
}
