//! The one listener that serves every API, its startup sequence and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::api::edge;
use crate::api::urls::url_host;
use crate::config::Config;
use crate::error::ApiError;
use crate::observe::metrics;
use crate::tls::{self, TlsError};

mod health;
mod state;

pub use state::{AppState, Built, StateError};

/// How long in-flight requests may run after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Start reel, print `reel listening on <url>` once connections are accepted, and run
/// until `shutdown` resolves.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
    serve_with(config, shutdown, |_| {}).await
}

/// [`serve`], calling `on_listening` with the listener's URL right after the listening line
/// (for tools that run beside the server, such as `reel demo`).
pub async fn serve_with(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(&str),
) -> Result<(), ServeError> {
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|source| ServeError::Bind { addr: config.listen, source })?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;

    let Built { state, generated_key } = AppState::build(config, local).await?;
    if let Some(key) = generated_key {
        println!("# reel generated a root access key (stored in {}):", state.core.config.data_dir.display());
        println!("export AWS_ACCESS_KEY_ID={}", key.access_key_id);
        println!("export AWS_SECRET_ACCESS_KEY={}", key.secret_access_key);
    }
    let prometheus = metrics::install(&state.core.config.node_id);
    let base = state.core.urls.https.clone();
    let mut hosts = vec![local.ip().to_string()];
    if let Some(host) = url_host(&base) {
        hosts.push(host);
    }
    let tls_config = tls::server_config(&state.core.config.tls, &state.core.config.data_dir, &hosts)?;
    state.signaling.spawn_sighup_rotation();
    let (signaling, peers, media) = (state.signaling.clone(), state.peers.clone(), state.core.store.clone());
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

    let tls_on = tls_config.is_some();
    let scheme = if tls_on { "https" } else { "http" };
    println!("reel listening on {scheme}://{local}");
    on_listening(&format!("{scheme}://{local}"));
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

/// An in-process server for tests and tools that embed reel: binds `config.listen`, builds
/// the state with [`AppState::build`] and serves [`router`] over plain HTTP on a background
/// task (no TLS, no shutdown sequence; it lives as long as the runtime). Returns the bound
/// address and the state, so the caller can reach the store and metadata directly.
pub async fn spawn(config: Config) -> Result<(SocketAddr, AppState), ServeError> {
    let addr = config.listen;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener.local_addr()?;
    let Built { state, .. } = AppState::build(config, local).await?;
    let prometheus = metrics::install(&state.core.config.node_id);
    let app = router(state.clone(), prometheus).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "in-process server stopped");
        }
    });
    Ok((local, state))
}

/// Every route of the server.
pub fn router(state: AppState, prometheus: metrics_exporter_prometheus::PrometheusHandle) -> Router {
    let signed = crate::control::router()
        .merge(crate::signaling::router())
        .merge(crate::peer::router())
        .merge(crate::playback::router())
        .merge(crate::streaming::router())
        .layer(axum::middleware::from_fn_with_state(state.core.clone(), edge::signed_api));
    Router::new()
        .route("/metrics", get(move || std::future::ready(metrics::render(&prometheus))))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(signed)
        .merge(crate::streaming::public_router())
        .fallback(unknown_operation)
        .layer(axum::middleware::from_fn(edge::stamp))
        .with_state(state)
}

async fn unknown_operation(req: axum::extract::Request) -> impl IntoResponse {
    ApiError::new(
        "UnknownOperationException",
        http::StatusCode::NOT_FOUND,
        format!("no operation at {} {}", req.method(), req.uri().path()),
    )
}
