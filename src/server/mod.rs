//! The one listener that serves every API, its startup sequence and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::api::edge;
use crate::api::urls::url_host;
use crate::config::{Config, MetricsAccess};
use crate::error::ApiError;
use crate::observe::metrics;
use crate::tls::{self, TlsError};
use axum::extract::State;

mod health;
pub mod listener;
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
    let http_limits = state.core.config.limits.http.clone();
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
    serve_on(listener, app, tls_config, handle, &http_limits).await?;
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
    let listener = std::net::TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let Built { state, .. } = AppState::build(config, local).await?;
    let prometheus = metrics::install(&state.core.config.node_id);
    let limits = state.core.config.limits.http.clone();
    let app = router(state.clone(), prometheus).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        if let Err(e) = serve_on(listener, app, None, axum_server::Handle::new(), &limits).await {
            tracing::warn!(error = %e, "in-process server stopped");
        }
    });
    Ok((local, state))
}

/// Serve `app` on `listener` (TLS when `tls` is set) within `limits`: the connection caps
/// ([`listener::ConnectionTable`], before any TLS handshake), the TLS handshake and the
/// first request's headers within `header_read_timeout_ms` of the accept, and every later
/// request's headers within the same time (hyper's HTTP/1 `header_read_timeout`).
async fn serve_on(
    listener: std::net::TcpListener,
    app: axum::extract::connect_info::IntoMakeServiceWithConnectInfo<Router, SocketAddr>,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    handle: axum_server::Handle<SocketAddr>,
    limits: &crate::limits::HttpLimits,
) -> std::io::Result<()> {
    let table = listener::ConnectionTable::new(limits);
    let header_timeout = Duration::from_millis(limits.header_read_timeout_ms);
    match tls {
        Some(cfg) => {
            let acceptor =
                axum_server::tls_rustls::RustlsAcceptor::new(axum_server::tls_rustls::RustlsConfig::from_config(cfg))
                    .handshake_timeout(header_timeout)
                    .acceptor(listener::LimitAcceptor::new(table, false));
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(acceptor)
                .first_request_timeout(header_timeout)
                .handle(handle);
            server.http_builder().http1().header_read_timeout(header_timeout);
            server.serve(app).await
        }
        None => {
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(listener::LimitAcceptor::new(table, true))
                .first_request_timeout(header_timeout)
                .handle(handle);
            server.http_builder().http1().header_read_timeout(header_timeout);
            server.serve(app).await
        }
    }
}

/// Every route of the server.
pub fn router(state: AppState, prometheus: metrics_exporter_prometheus::PrometheusHandle) -> Router {
    metrics::set_channel_labels(state.core.config.metrics.channel_labels);
    let signed = crate::control::router()
        .merge(crate::signaling::router())
        .merge(crate::peer::router())
        .merge(crate::playback::router())
        .merge(crate::put_media::router())
        .merge(crate::streaming::router())
        .layer(axum::middleware::from_fn_with_state(state.core.clone(), edge::signed_api));
    // Outside the signature check: a preflight carries none.
    let cors = state.core.config.cors.layer();
    let signed = signed.layer(tower::util::option_layer(cors.clone()));
    let playback = crate::streaming::public_router().layer(tower::util::option_layer(cors));
    let base = match state.core.config.metrics.access {
        MetricsAccess::Off => Router::new(),
        MetricsAccess::Open => {
            Router::new().route("/metrics", get(move || std::future::ready(metrics::render(&prometheus))))
        }
        MetricsAccess::Auth => Router::new().route(
            "/metrics",
            get(move |State(core): State<crate::api::Core>, req: axum::extract::Request| {
                let prometheus = prometheus.clone();
                async move { guarded_metrics(&core, &req, &prometheus) }
            }),
        ),
    };
    base.route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(signed)
        .merge(playback)
        .merge(crate::console::router())
        .fallback(unknown_operation)
        .layer(axum::middleware::from_fn(crate::console::root))
        .layer(axum::middleware::from_fn(edge::stamp))
        .with_state(state)
}

/// Action a key's policy must allow to read `/metrics` in `auth` mode (root may).
pub const METRICS_ACTION: &str = "reel:GetMetrics";

/// `/metrics` in `auth` mode: the bearer token, or a SigV4-signed GET by a key allowed
/// [`METRICS_ACTION`]; a refusal is a KVS-shaped error and counted as `GetMetrics`.
fn guarded_metrics(
    core: &crate::api::Core,
    req: &axum::extract::Request,
    prometheus: &metrics_exporter_prometheus::PrometheusHandle,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let bearer = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let verdict = match (bearer, &core.config.metrics.token) {
        (Some(sent), Some(token)) => {
            if bool::from(subtle::ConstantTimeEq::ct_eq(sent.trim().as_bytes(), token.0.as_bytes())) {
                Ok(())
            } else {
                Err(ApiError::new("AccessDeniedException", http::StatusCode::FORBIDDEN, "invalid metrics token"))
            }
        }
        _ => core
            .auth
            .authenticate(
                req.method(),
                req.uri(),
                req.headers(),
                crate::auth::sigv4::Payload::Buffered(&[]),
                std::time::SystemTime::now(),
            )
            .map_err(ApiError::from)
            .and_then(|p| {
                if p.is_allowed(METRICS_ACTION, "*") {
                    Ok(())
                } else {
                    Err(ApiError::access_denied(format!("{} is not allowed {METRICS_ACTION}", p.access_key_id)))
                }
            }),
    };
    metrics::record_call("GetMetrics", verdict.as_ref().err().map(|e| e.code), started.elapsed());
    match verdict {
        Ok(()) => metrics::render(prometheus).into_response(),
        Err(e) => {
            tracing::info!(error = %e.message, "/metrics refused");
            e.into_response()
        }
    }
}

async fn unknown_operation(req: axum::extract::Request) -> impl IntoResponse {
    ApiError::new(
        "UnknownOperationException",
        http::StatusCode::NOT_FOUND,
        format!("no operation at {} {}", req.method(), req.uri().path()),
    )
}
