//! The one listener that serves every API, its startup sequence and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::auth::{Authenticator, CredentialStore, CredentialsError};
use crate::config::Config;
use crate::edge;
use crate::error::ApiError;
use crate::meta::{self, MetaError};
use crate::observe::{audit::AuditLog, metrics};
use crate::state::{AppState, PublicUrls, url_host};
use crate::throttle::Throttle;
use crate::tls::{self, TlsError};

/// How long in-flight requests may run after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: std::path::PathBuf, source: std::io::Error },
    #[error("metadata database: {0}")]
    Meta(#[from] MetaError),
    #[error("credentials: {0}")]
    Credentials(#[from] CredentialsError),
    #[error("audit log: {0}")]
    Audit(std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    #[error("media store: {0}")]
    Store(#[from] reel_storage::StoreError),
    #[error("signaling: {0}")]
    Signaling(#[from] crate::signaling::SignalingError),
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Start reel, print `reel listening on <url>` once connections are accepted, and run
/// until `shutdown` resolves.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| ServeError::DataDir { path: data_dir.clone(), source })?;

    let meta = meta::open(&data_dir).await?;
    let (keys, generated) =
        CredentialStore::load(config.root_key.clone(), config.credentials_file.as_deref(), &data_dir)?;
    if let Some(key) = generated {
        println!("# reel generated a root access key (stored in {}):", data_dir.display());
        println!("export AWS_ACCESS_KEY_ID={}", key.access_key_id);
        println!("export AWS_SECRET_ACCESS_KEY={}", key.secret_access_key);
    }
    let audit = AuditLog::open(&data_dir).await.map_err(ServeError::Audit)?;
    let media = reel_storage::Store::open(media_store_config(&config)).await?;
    let recovered = media.recovery_report();
    tracing::info!(report = ?recovered, "media store opened");
    let prometheus = metrics::install();

    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;

    let tls_on = config.tls != crate::config::TlsMode::Off;
    let scheme = if tls_on { "https" } else { "http" };
    let base = config.public_url.clone().unwrap_or_else(|| format!("{scheme}://{local}"));
    let urls = PublicUrls::from_base(&base);
    let mut hosts = vec![local.ip().to_string()];
    if let Some(host) = url_host(&base) {
        hosts.push(host);
    }
    let tls_config = tls::server_config(&config.tls, &data_dir, &hosts)?;
    let signaling = crate::signaling::Signaling::start(&config, &data_dir, &base).await?;
    signaling.spawn_sighup_rotation();

    let fallback_ip = url_host(&base).and_then(|h| h.parse().ok()).or(Some(local.ip()));
    let peers = crate::peer::Peers::start(&config.webrtc, &config.limits.storage_session, fallback_ip)
        .map_err(|source| ServeError::Bind { addr: config.webrtc.listen, source })?;
    let state = AppState {
        peers: peers.clone(),
        auth: Arc::new(Authenticator::new(keys, &config.limits)),
        config: Arc::new(config),
        meta,
        audit,
        throttle: Arc::new(Throttle::default()),
        urls: Arc::new(urls),
        signaling: signaling.clone(),
        store: media.clone(),
    };
    let app = router(state, prometheus).into_make_service_with_connect_info::<SocketAddr>();

    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested; draining connections");
        signaling.shutdown().await;
        // Sessions end and their open fragments are finished before the store is sealed.
        peers.shutdown().await;
        stopper.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });

    println!("reel listening on {scheme}://{local}");
    tracing::info!(%local, public_url = %base, tls = tls_on, "reel listening");
    match tls_config {
        Some(cfg) => {
            let rustls = axum_server::tls_rustls::RustlsConfig::from_config(cfg);
            axum_server::from_tcp_rustls(listener, rustls)?.handle(handle).serve(app).await?
        }
        None => axum_server::from_tcp(listener)?.handle(handle).serve(app).await?,
    }
    // Close open segments so the next start has nothing to recover.
    media.seal_all().await;
    tracing::info!("reel stopped");
    Ok(())
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

/// Every route of the server.
pub fn router(state: AppState, prometheus: metrics_exporter_prometheus::PrometheusHandle) -> Router {
    let signed = crate::control::router()
        .merge(crate::signaling::router())
        .merge(crate::peer::router())
        .merge(crate::playback::router())
        .merge(crate::streaming::router())
        .layer(axum::middleware::from_fn_with_state(state.clone(), edge::signed_api));
    Router::new()
        .route("/metrics", get(move || std::future::ready(metrics::render(&prometheus))))
        .merge(signed)
        .merge(crate::streaming::public_router())
        .fallback(unknown_operation)
        .layer(axum::middleware::from_fn(edge::stamp))
        .with_state(state)
}

async fn unknown_operation(State(_): State<AppState>, req: axum::extract::Request) -> impl IntoResponse {
    ApiError::new(
        "UnknownOperationException",
        http::StatusCode::NOT_FOUND,
        format!("no operation at {} {}", req.method(), req.uri().path()),
    )
}
