//! KVS WebRTC signaling: the WebSocket API (ConnectAsMaster / ConnectAsViewer), the
//! signaling HTTPS API (GetIceServerConfig, SendAlexaOfferToMaster) and the embedded
//! STUN/TURN server whose credentials GetIceServerConfig issues.
//!
//! Layout (data flows socket → session → registry → recipient's session/socket):
//! - [`message`]: wire format, sans-IO (parse client frames, serialize events);
//! - [`validate`]: ARN / ClientId / correlationId patterns;
//! - [`quota`]: token buckets (per-connection SDP/ICE rates, connect rate, TURN bandwidth);
//! - [`pending`]: messages held for absent recipients for MessageTtlSeconds;
//! - [`registry`]: who is connected, routing rules, the storage-peer seam, and the
//!   [`registry::SignalingBus`] trait a multi-node deployment implements;
//! - [`session`]: one connection's loop (timeouts, GO_AWAY, STATUS_RESPONSE);
//! - [`ws`]: the `GET /` upgrade handler; [`api`]: the HTTPS operations;
//! - [`credentials`] / [`turn`]: TURN credentials and the TURN server.
//! - cluster mode: [`cluster`] (what nodes tell each other), [`nats`] (its transport),
//!   [`index_notices`] (fragment index notices), [`handoff`] (requests that gather a
//!   channel's storage and viewer sessions on one node).
//!
//! [`Signaling`] ties them together and is what `AppState` holds.

pub mod api;
pub mod cluster;
#[cfg(test)]
mod cluster_tests;
pub mod credentials;
pub mod handoff;
pub mod index_notices;
pub mod message;
pub mod nats;
pub mod pending;
pub mod quota;
pub mod registry;
pub mod session;
pub mod turn;
pub mod turn_policy;
pub mod validate;
pub mod ws;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};

use self::api::IceServer;
use self::credentials::TurnSecret;
use self::message::ServiceEvent;
use self::registry::Registry;
use self::turn::{TcpBounds, TurnOptions, TurnServer};
use crate::api::Core;
use crate::api::urls::url_host;
use crate::config::Config;
use crate::limits::SignalingLimits;
use crate::members::Members;

pub use self::message::{MessageKind, SignalingMessage};
pub use self::registry::{StoragePeerError, StoragePeerEvent, StoragePeerHandle};

/// How often held messages and idle channels are swept.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Routes of the signaling service; mount them under the signed-API layer.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Core: FromRef<S>,
    Signaling: FromRef<S>,
{
    Router::new()
        .route("/", get(ws::connect))
        .route("/v1/get-ice-server-config", post(api::get_ice_server_config))
        .route("/v1/send-alexa-offer-to-master", post(api::send_alexa_offer_to_master))
}

/// Why signaling could not start.
#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    #[error("TURN secret: {0}")]
    Secret(std::io::Error),
    #[error(transparent)]
    Turn(#[from] turn::TurnError),
    #[error(transparent)]
    Bus(#[from] nats::BusError),
}

/// The signaling service's shared state: registry, TURN secret and server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Signaling {
    /// Routing between masters, viewers, the storage peer and Alexa offers.
    pub registry: Registry,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limits: SignalingLimits,
    secret: Arc<TurnSecret>,
    turn: Option<TurnServer>,
    uris: Vec<String>,
    /// The cluster bus, when signaling spans nodes.
    bus: Option<nats::NatsBus>,
}

/// The TURN peer policy of this server: the configured allow-list, and as "own"
/// addresses every interface address plus the listen and advertised IPs.
fn turn_peer_policy(config: &Config, advertised_ip: IpAddr) -> turn_policy::PeerPolicy {
    let allowed = config.limits.turn.allowed_peer_cidrs.iter().filter_map(|c| turn_policy::parse_cidr(c)).collect();
    let mut own: Vec<IpAddr> = match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => addrs
            .filter_map(|a| a.address)
            .filter_map(|a| {
                a.as_sockaddr_in()
                    .map(|v4| IpAddr::V4(v4.ip().into()))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list interface addresses; TURN denies only the listen and advertised IPs as own");
            Vec::new()
        }
    };
    own.extend(
        [advertised_ip, config.turn.listen.ip(), config.listen.ip()].into_iter().filter(|ip| !ip.is_unspecified()),
    );
    own.sort();
    own.dedup();
    turn_policy::PeerPolicy::new(allowed, own)
}

impl Signaling {
    /// Load (or create) the TURN secret in `data_dir`, start the TURN server when enabled,
    /// and start the sweeper. `public_url` is the advertised HTTP(S) base URL.
    pub async fn start(
        config: &Config,
        data_dir: &Path,
        public_url: &str,
        members: Members,
    ) -> Result<Self, SignalingError> {
        let limits = config.limits.signaling.clone();
        let secret = Arc::new(TurnSecret::load_or_create(data_dir).map_err(SignalingError::Secret)?);
        let (turn, uris) = if config.turn.enabled {
            let url_host = url_host(public_url);
            let advertised_ip = config
                .turn
                .public_ip
                .or_else(|| url_host.as_deref().and_then(|h| h.parse().ok()))
                .or_else(|| Some(config.turn.listen.ip()).filter(|ip| !ip.is_unspecified()))
                .unwrap_or_else(|| {
                    tracing::warn!(
                        "TURN listens on an unspecified address and no --turn-public-ip is set; advertising 127.0.0.1"
                    );
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                });
            let opts = TurnOptions {
                listen: config.turn.listen,
                advertised_ip,
                max_allocations_per_channel: limits.turn_max_allocations_per_channel,
                bandwidth_bps: limits.turn_bandwidth_bps_per_allocation,
                policy: Arc::new(turn_peer_policy(config, advertised_ip)),
                tcp: TcpBounds {
                    idle_timeout: Duration::from_secs(config.limits.turn.tcp_idle_timeout_secs),
                    max_connections: config.limits.turn.max_tcp_connections,
                    max_per_ip: config.limits.turn.max_tcp_connections_per_ip,
                },
            };
            let server = TurnServer::start(opts, secret.clone()).await?;
            let host = match (config.turn.public_ip, url_host) {
                (Some(ip), _) => ip.to_string(),
                (None, Some(h)) => h,
                (None, None) => advertised_ip.to_string(),
            };
            let uris = turn_uris(&host, server.udp_addr, server.tcp_addr);
            (Some(server), uris)
        } else {
            (None, Vec::new())
        };
        let (registry, bus) = match &config.bus_url {
            None => (Registry::local(limits.clone()), None),
            Some(url) => {
                let cluster = &config.limits.cluster;
                let options = nats::BusOptions {
                    url: url.clone(),
                    node_id: config.node_id.clone(),
                    subject_prefix: "reel".into(),
                    heartbeat: Duration::from_millis(cluster.heartbeat_ms),
                    node_timeout: Duration::from_millis(cluster.node_timeout_ms),
                    advertised_url: public_url.trim_end_matches('/').to_string(),
                };
                let (bus, handle) = nats::NatsBus::start(&options, limits.clone(), members).await?;
                (Registry::new(bus), Some(handle))
            }
        };
        let sweeper = registry.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                tick.tick().await;
                sweeper.bus().sweep(Instant::now());
            }
        });
        Ok(Self { registry, inner: Arc::new(Inner { limits, secret, turn, uris, bus }) })
    }

    /// Signaling without a TURN server (tests, or `--turn-enabled false`).
    pub fn without_turn(limits: SignalingLimits, secret: TurnSecret) -> Self {
        Self {
            registry: Registry::local(limits.clone()),
            inner: Arc::new(Inner { limits, secret: Arc::new(secret), turn: None, uris: Vec::new(), bus: None }),
        }
    }

    /// The `IceServerList` for a channel: reel's STUN/TURN URIs with fresh credentials
    /// (empty when the TURN server is off).
    pub fn ice_servers(&self, channel_arn: &str, now: SystemTime) -> Vec<IceServer> {
        if self.inner.uris.is_empty() {
            return Vec::new();
        }
        let ttl = Duration::from_secs(self.inner.limits.turn_credential_ttl_secs);
        let cred = self.inner.secret.issue(channel_arn, ttl, now);
        vec![IceServer {
            uris: self.inner.uris.clone(),
            username: cred.username,
            password: cred.password,
            ttl: cred.ttl_secs,
        }]
    }

    /// Cluster mode: carries `store`'s fragment index notices over the bus (a no-op
    /// without one).
    pub async fn carry_index_notices(&self, store: reel_storage::Store) -> Result<(), nats::BusError> {
        match &self.inner.bus {
            Some(bus) => bus.carry_index_notices(store).await,
            None => Ok(()),
        }
    }

    /// Whether the cluster bus is connected: `None` without one (single node).
    pub fn bus_connected(&self) -> Option<bool> {
        self.inner.bus.as_ref().map(nats::NatsBus::connected)
    }

    /// Bound UDP and TCP addresses of the TURN server, when it runs.
    pub fn turn_addrs(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.inner.turn.as_ref().map(|t| (t.udp_addr, t.tcp_addr))
    }

    /// Let TURN relays reach these sockets of this host although own addresses are denied
    /// (the storage media peer's host candidates).
    pub fn exempt_turn_peers(&self, sockets: &[SocketAddr]) {
        if let Some(t) = &self.inner.turn {
            t.exempt_peers(sockets);
        }
    }

    /// Rotate the TURN secret (credentials issued before stop working) and tell every
    /// connected client `RECONNECT_ICE_SERVER`; returns how many were told.
    pub fn rotate_turn_secret(&self) -> std::io::Result<usize> {
        self.inner.secret.rotate()?;
        let told = self.registry.bus().broadcast(ServiceEvent::reconnect_ice_server());
        tracing::info!(clients = told, "TURN secret rotated; RECONNECT_ICE_SERVER sent");
        Ok(told)
    }

    /// Rotate the TURN secret on every SIGHUP (the admin trigger).
    pub fn spawn_sighup_rotation(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP; TURN secret rotation by signal is off");
                return;
            };
            while hup.recv().await.is_some() {
                if let Err(e) = this.rotate_turn_secret() {
                    tracing::error!(error = %e, "TURN secret rotation failed");
                }
            }
        });
    }

    /// Graceful shutdown: `GO_AWAY` to every client, a short grace, then close every
    /// connection and stop the TURN server.
    pub async fn shutdown(&self) {
        let bus = self.registry.bus();
        let told = bus.broadcast(ServiceEvent::go_away());
        tracing::info!(clients = told, "GO_AWAY sent to signaling clients");
        if told > 0 {
            tokio::time::sleep(Duration::from_millis(self.inner.limits.shutdown_go_away_grace_ms)).await;
        }
        bus.close_all();
        if let Some(cluster) = &self.inner.bus {
            // Other nodes forget this one's connections at once instead of after the timeout.
            cluster.flush().await;
        }
        if let Some(turn) = &self.inner.turn {
            turn.close().await;
        }
    }
}

/// `stun:` and `turn:` URIs for the bound ports (≤ 4, the C SDK's per-server limit).
pub fn turn_uris(host: &str, udp: SocketAddr, tcp: SocketAddr) -> Vec<String> {
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
    vec![
        format!("stun:{host}:{}", udp.port()),
        format!("turn:{host}:{}?transport=udp", udp.port()),
        format!("turn:{host}:{}?transport=tcp", tcp.port()),
    ]
}
