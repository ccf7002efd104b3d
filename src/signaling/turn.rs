//! The embedded STUN/TURN server: webrtc-rs `turn` 0.17 with reel's credential check,
//! a per-channel allocation cap and a per-allocation bandwidth cap.
//!
//! How each requirement maps onto the crate's hooks:
//! - **Credentials**: the crate's `AuthHandler` returns the long-term key for a username;
//!   [`ReelAuth`] accepts only usernames [`TurnSecret`] issued and only until they expire
//!   (so Allocate *and* Refresh fail after expiry), with the password HMAC-derived again.
//! - **50 allocations per channel**: the crate has no allocation-quota hook and its
//!   `RelayAddressGenerator::allocate_conn` does not see the username. Each listener's read
//!   loop handles one request at a time and authenticates an Allocate immediately before
//!   allocating its relay, so the listener's auth handler records the channel of the last
//!   authenticated request and the listener's [`ReelRelays`] charges it. Over the cap, the
//!   allocation fails with the crate's 508 (Insufficient Capacity) rather than RFC 5766's
//!   486 (Allocation Quota Reached), which the crate cannot emit.
//! - **5 Mbps per allocation**: the crate has no bandwidth hook; the relay socket is wrapped
//!   in [`LimitedConn`], a token bucket per direction that drops datagrams over the budget
//!   (what a congested link does to UDP).
//! - **TCP**: the crate serves packet `Conn`s only; [`TcpMux`] accepts TCP clients and
//!   frames STUN/ChannelData messages over the stream (RFC 5766 §11.5), presenting all of
//!   them to the crate as one packet `Conn` keyed by peer address. Relays are UDP either way.
//!   An allocation made over TCP lives until its lifetime ends even if the TCP connection
//!   closes first (the crate ties allocations to 5-tuples, not to connections). TCP clients
//!   are capped in total and per source IP and closed when idle ([`TcpBounds`]).
//! - **Peer addresses and nonces**: the crate relays anywhere and keeps every nonce it
//!   issues in a map that only grows. reel runs the crate's per-datagram `Request` from its
//!   own read loop behind a gate ([`super::turn_policy`]): requests without credentials are
//!   challenged with stateless nonces by the gate itself, a nonce reaches the crate's map only
//!   for the one request that carries it, and CreatePermission / ChannelBind / Send naming a
//!   denied peer are answered 403 Forbidden (requests) or dropped (indications).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use stun::attributes::{ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::error_code::{CODE_FORBIDDEN, CODE_STALE_NONCE, CODE_UNAUTHORIZED, ErrorCode, ErrorCodeAttribute};
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_REQUEST, METHOD_ALLOCATE, METHOD_CHANNEL_BIND,
    METHOD_CREATE_PERMISSION, METHOD_REFRESH, METHOD_SEND, Message, MessageType, Setter,
};
use stun::textattrs::TextAttribute;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use turn::allocation::allocation_manager::{Manager, ManagerConfig};
use turn::auth::{AuthHandler, generate_auth_key};
use turn::proto::chandata::ChannelData;
use turn::relay::RelayAddressGenerator;
use turn::server::request::Request;
use webrtc_util::Conn;

use super::credentials::TurnSecret;
use super::turn_policy::{NonceIssuer, PeerPolicy, xor_peer_addresses};
use crate::rate::TokenBucket;

/// TURN realm reel announces.
pub const REALM: &str = "reel";
/// Burst of the bandwidth bucket, as seconds of the allowed rate.
pub const BANDWIDTH_BURST_SECS: f64 = 0.25;
/// The bandwidth bucket holds at least this many bytes (a few full-size datagrams).
pub const MIN_BURST_BYTES: u64 = 16 * 1024;
/// Largest STUN/ChannelData message accepted over TCP (the crate reads 1500-byte datagrams).
pub const MAX_TCP_MESSAGE: usize = 1500;
/// Largest datagram the read loops accept (the crate's inbound MTU).
const INBOUND_MTU: usize = 1500;
/// Prometheus counter: seconds TURN allocations were open ("connected minutes" × 60).
pub const ALLOCATION_SECONDS: &str = "reel_turn_allocation_seconds_total";
/// Prometheus counter: relayed datagrams dropped by the bandwidth cap.
pub const BANDWIDTH_DROPS: &str = "reel_turn_bandwidth_dropped_total";
/// Prometheus counter: TURN requests and connections refused, by `reason`
/// (`peer_denied`, `stale_nonce`, `tcp_limit`, `tcp_idle`).
pub const REFUSED: &str = "reel_turn_refused_total";

/// Bounds of TURN over TCP.
#[derive(Debug, Clone, Copy)]
pub struct TcpBounds {
    /// Close a connection that sent nothing for this long.
    pub idle_timeout: Duration,
    /// Connections at once.
    pub max_connections: usize,
    /// Connections at once from one IP.
    pub max_per_ip: usize,
}

impl Default for TcpBounds {
    fn default() -> Self {
        let l = crate::limits::TurnLimits::default();
        Self {
            idle_timeout: Duration::from_secs(l.tcp_idle_timeout_secs),
            max_connections: l.max_tcp_connections,
            max_per_ip: l.max_tcp_connections_per_ip,
        }
    }
}

/// Settings of one TURN server instance.
#[derive(Debug, Clone)]
pub struct TurnOptions {
    /// UDP listen address (TCP on the same IP; same port unless the port is 0).
    pub listen: SocketAddr,
    /// IP put in relayed addresses (what peers send to).
    pub advertised_ip: IpAddr,
    /// Allocations per channel.
    pub max_allocations_per_channel: usize,
    /// Bits per second per allocation and direction.
    pub bandwidth_bps: u64,
    /// Which peers relays may reach.
    pub policy: Arc<PeerPolicy>,
    /// TURN/TCP bounds.
    pub tcp: TcpBounds,
}

/// Why the TURN server did not start.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("cannot bind TURN {proto} on {addr}: {source}")]
    Bind { proto: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("TURN server: {0}")]
    Server(String),
}

/// A running TURN server (UDP and TCP listeners).
pub struct TurnServer {
    /// Bound UDP address.
    pub udp_addr: SocketAddr,
    /// Bound TCP address.
    pub tcp_addr: SocketAddr,
    allocations: Arc<AllocationCounter>,
    policy: Arc<PeerPolicy>,
    managers: Vec<Arc<Manager>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for TurnServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnServer").field("udp_addr", &self.udp_addr).field("tcp_addr", &self.tcp_addr).finish()
    }
}

impl TurnServer {
    /// Bind and start both listeners.
    pub async fn start(opts: TurnOptions, secret: Arc<TurnSecret>) -> Result<Self, TurnError> {
        let udp_sock = UdpSocket::bind(opts.listen).await.map_err(|source| TurnError::Bind {
            proto: "udp",
            addr: opts.listen,
            source,
        })?;
        let udp_addr =
            udp_sock.local_addr().map_err(|source| TurnError::Bind { proto: "udp", addr: opts.listen, source })?;
        let tcp_want = SocketAddr::new(opts.listen.ip(), if opts.listen.port() == 0 { 0 } else { udp_addr.port() });
        let tcp_listener = TcpListener::bind(tcp_want).await.map_err(|source| TurnError::Bind {
            proto: "tcp",
            addr: tcp_want,
            source,
        })?;
        let tcp_addr =
            tcp_listener.local_addr().map_err(|source| TurnError::Bind { proto: "tcp", addr: tcp_want, source })?;
        let (mux, tcp_accept) = TcpMux::start(tcp_listener, tcp_addr, opts.tcp);

        let allocations = Arc::new(AllocationCounter::default());
        let gate = Arc::new(Gate { policy: opts.policy.clone(), nonces: NonceIssuer::new(), secret: secret.clone() });
        let mut managers = Vec::new();
        let mut tasks = vec![tcp_accept];
        let conns: [Arc<dyn Conn + Send + Sync>; 2] = [Arc::new(udp_sock), mux];
        for conn in conns {
            let last_channel = Arc::new(Mutex::new(None));
            let manager = Arc::new(Manager::new(ManagerConfig {
                relay_addr_generator: Box::new(ReelRelays {
                    bind_ip: opts.listen.ip(),
                    advertised_ip: opts.advertised_ip,
                    last_channel: last_channel.clone(),
                    allocations: allocations.clone(),
                    max_per_channel: opts.max_allocations_per_channel,
                    bandwidth_bps: opts.bandwidth_bps,
                }),
                alloc_close_notify: None,
            }));
            let auth: Arc<dyn AuthHandler + Send + Sync> = Arc::new(ReelAuth { secret: secret.clone(), last_channel });
            tasks.push(tokio::spawn(read_loop(conn, manager.clone(), auth, gate.clone())));
            managers.push(manager);
        }
        tracing::info!(%udp_addr, %tcp_addr, advertised = %opts.advertised_ip, "TURN server listening");
        Ok(Self { udp_addr, tcp_addr, allocations, policy: opts.policy, managers, tasks })
    }

    /// Current allocations of the channel with this key (see [`super::credentials::channel_key`]).
    pub fn allocations_for(&self, channel_key: &str) -> usize {
        self.allocations.count(channel_key)
    }

    /// Let relays reach these exact sockets of this host (the media peer's candidates).
    pub fn exempt_peers(&self, sockets: &[SocketAddr]) {
        self.policy.exempt(sockets);
    }

    /// Stop both listeners and every allocation.
    pub async fn close(&self) {
        for task in &self.tasks {
            task.abort();
        }
        for manager in &self.managers {
            let _ = manager.close().await;
        }
    }
}

/// One listener's loop: each datagram passes the [`Gate`], then the crate handles it.
async fn read_loop(
    conn: Arc<dyn Conn + Send + Sync>,
    manager: Arc<Manager>,
    auth: Arc<dyn AuthHandler + Send + Sync>,
    gate: Arc<Gate>,
) {
    // The crate looks nonces up in this map; it holds at most the current request's.
    let nonces: Arc<tokio::sync::Mutex<HashMap<String, tokio::time::Instant>>> = Arc::default();
    let mut buf = vec![0u8; INBOUND_MTU];
    loop {
        let (n, src) = match conn.recv_from(&mut buf).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "TURN read loop stopped");
                break;
            }
        };
        let Some(data) = buf.get(..n) else { continue };
        let nonce = match gate.screen(&conn, src, data).await {
            Screen::Handled => continue,
            Screen::Pass(nonce) => nonce,
        };
        if let Some(nonce) = nonce {
            nonces.lock().await.insert(nonce, tokio::time::Instant::now());
        }
        let mut req = Request {
            conn: conn.clone(),
            src_addr: src,
            buff: data.to_vec(),
            allocation_manager: manager.clone(),
            nonces: nonces.clone(),
            auth_handler: auth.clone(),
            realm: REALM.to_string(),
            channel_bind_timeout: turn::proto::lifetime::DEFAULT_LIFETIME,
        };
        if let Err(e) = req.handle_request().await {
            tracing::debug!(%src, error = %e, "TURN request failed");
        }
        nonces.lock().await.clear();
    }
    let _ = manager.close().await;
}

/// What the gate did with a datagram.
#[derive(Debug, PartialEq, Eq)]
enum Screen {
    /// Hand it to the crate, with the (verified) nonce it carries.
    Pass(Option<String>),
    /// Answered or dropped here.
    Handled,
}

/// The gate's decision on one datagram (sans-IO; [`Gate::screen`] carries it out).
pub(crate) enum Verdict {
    /// Hand it to the crate, with the (verified) nonce it carries.
    Pass(Option<String>),
    /// Drop it silently; `Some(reason)` is counted in [`REFUSED`].
    Drop(Option<&'static str>),
    /// Answer 401 / 438 with a fresh nonce (`Some(reason)` is counted in [`REFUSED`]).
    Challenge { request: Box<Message>, code: ErrorCode, reason: Option<&'static str> },
    /// Answer 403 Forbidden, integrity-protected with the requester's key: `peer` is denied.
    Forbidden { request: Box<Message>, key: Vec<u8>, peer: SocketAddr },
}

/// Checks the crate has no hook for: stateless nonces and the peer policy (module docs).
pub(crate) struct Gate {
    pub(crate) policy: Arc<PeerPolicy>,
    pub(crate) nonces: NonceIssuer,
    pub(crate) secret: Arc<TurnSecret>,
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Gate {
    async fn screen(&self, conn: &Arc<dyn Conn + Send + Sync>, src: SocketAddr, data: &[u8]) -> Screen {
        match self.decide(src, data, SystemTime::now()) {
            Verdict::Pass(nonce) => return Screen::Pass(nonce),
            Verdict::Drop(reason) => {
                if let Some(reason) = reason {
                    metrics::counter!(REFUSED, "reason" => reason).increment(1);
                    tracing::debug!(%src, reason, "TURN datagram dropped");
                }
            }
            Verdict::Challenge { request, code, reason } => {
                if let Some(reason) = reason {
                    metrics::counter!(REFUSED, "reason" => reason).increment(1);
                }
                send_raw(conn, src, self.challenge(src, &request, code, unix_secs())).await;
            }
            Verdict::Forbidden { request, key, peer } => {
                metrics::counter!(REFUSED, "reason" => "peer_denied").increment(1);
                tracing::info!(%src, %peer, "TURN peer address denied");
                send_raw(conn, src, forbidden(&request, key)).await;
            }
        }
        Screen::Handled
    }

    /// What to do with datagram `data` from `src` at `now` (pure).
    pub(crate) fn decide(&self, src: SocketAddr, data: &[u8], now: SystemTime) -> Verdict {
        if ChannelData::is_channel_data(data) {
            return Verdict::Pass(None);
        }
        let now_secs = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut m = Message::new();
        m.raw = data.to_vec();
        if m.decode().is_err() {
            return Verdict::Drop(None);
        }
        let method = m.typ.method;
        if m.typ.class == CLASS_INDICATION && method == METHOD_SEND {
            return match xor_peer_addresses(&m) {
                Some(peers) if peers.iter().all(|p| self.policy.permits(*p)) => Verdict::Pass(None),
                _ => Verdict::Drop(Some("peer_denied")),
            };
        }
        let authenticated =
            [METHOD_ALLOCATE, METHOD_REFRESH, METHOD_CREATE_PERMISSION, METHOD_CHANNEL_BIND].contains(&method);
        if m.typ.class != CLASS_REQUEST || !authenticated {
            return Verdict::Pass(None);
        }
        if !m.contains(ATTR_MESSAGE_INTEGRITY) {
            return Verdict::Challenge { request: Box::new(m), code: CODE_UNAUTHORIZED, reason: None };
        }
        // Without a nonce the crate answers 400 Bad Request.
        let Ok(nonce) = TextAttribute::get_from_as(&m, ATTR_NONCE) else { return Verdict::Pass(None) };
        if !self.nonces.check(&nonce.text, src, now_secs) {
            return Verdict::Challenge { request: Box::new(m), code: CODE_STALE_NONCE, reason: Some("stale_nonce") };
        }
        if method == METHOD_CREATE_PERMISSION || method == METHOD_CHANNEL_BIND {
            let denied = xor_peer_addresses(&m).and_then(|peers| peers.into_iter().find(|p| !self.policy.permits(*p)));
            // Only an authenticated request learns the policy; others get the crate's 400.
            if let (Some(peer), Some(key)) = (denied, self.integrity_key(&m, now)) {
                return Verdict::Forbidden { request: Box::new(m), key, peer };
            }
        }
        Verdict::Pass(Some(nonce.text))
    }

    /// The long-term key of a request's credentials if they are reel's (valid at `now`) and
    /// the request's MESSAGE-INTEGRITY checks out with it.
    fn integrity_key(&self, m: &Message, now: SystemTime) -> Option<Vec<u8>> {
        let username = TextAttribute::get_from_as(m, ATTR_USERNAME).ok()?;
        let realm = TextAttribute::get_from_as(m, ATTR_REALM).ok()?;
        let user = self.secret.verify(&username.text, now).ok()?;
        let key = generate_auth_key(&username.text, &realm.text, &user.password);
        MessageIntegrity(key.clone()).check(&mut m.clone()).ok()?;
        Some(key)
    }

    /// 401 / 438 with a fresh stateless nonce and the realm.
    pub(crate) fn challenge(&self, src: SocketAddr, m: &Message, code: ErrorCode, now_secs: u64) -> Option<Vec<u8>> {
        build(vec![
            Box::new(m.transaction_id),
            Box::new(MessageType::new(m.typ.method, CLASS_ERROR_RESPONSE)),
            Box::new(ErrorCodeAttribute { code, reason: Vec::new() }),
            Box::new(TextAttribute::new(ATTR_NONCE, self.nonces.issue(src, now_secs))),
            Box::new(TextAttribute::new(ATTR_REALM, REALM.to_string())),
        ])
    }
}

/// 403 Forbidden to `m`, integrity-protected with `key`.
pub(crate) fn forbidden(m: &Message, key: Vec<u8>) -> Option<Vec<u8>> {
    build(vec![
        Box::new(m.transaction_id),
        Box::new(MessageType::new(m.typ.method, CLASS_ERROR_RESPONSE)),
        Box::new(ErrorCodeAttribute { code: CODE_FORBIDDEN, reason: b"Forbidden".to_vec() }),
        Box::new(MessageIntegrity(key)),
    ])
}

/// A STUN message from its setters (transaction id and type first).
fn build(attrs: Vec<Box<dyn Setter>>) -> Option<Vec<u8>> {
    let mut msg = Message::new();
    match msg.build(&attrs) {
        Ok(()) => Some(msg.raw),
        Err(e) => {
            tracing::warn!(error = %e, "cannot build a TURN response");
            None
        }
    }
}

async fn send_raw(conn: &Arc<dyn Conn + Send + Sync>, dst: SocketAddr, raw: Option<Vec<u8>>) {
    let Some(raw) = raw else { return };
    if let Err(e) = conn.send_to(&raw, dst).await {
        tracing::debug!(%dst, error = %e, "cannot send a TURN response");
    }
}

/// Accepts only credentials reel issued, until they expire; remembers the channel of the
/// last authenticated request for [`ReelRelays`] (see module docs).
struct ReelAuth {
    secret: Arc<TurnSecret>,
    last_channel: Arc<Mutex<Option<String>>>,
}

impl AuthHandler for ReelAuth {
    fn auth_handle(&self, username: &str, realm: &str, src_addr: SocketAddr) -> Result<Vec<u8>, turn::Error> {
        let mut last = self.last_channel.lock().unwrap_or_else(|p| p.into_inner());
        match self.secret.verify(username, SystemTime::now()) {
            Ok(user) => {
                *last = Some(user.channel_key);
                Ok(generate_auth_key(username, realm, &user.password))
            }
            Err(e) => {
                *last = None;
                tracing::debug!(%src_addr, error = %e, "TURN credential refused");
                Err(turn::Error::Other(e.to_string()))
            }
        }
    }
}

/// Live allocations per channel key.
#[derive(Debug, Default)]
pub struct AllocationCounter {
    by_channel: Mutex<HashMap<String, usize>>,
}

impl AllocationCounter {
    /// Take a slot for `channel_key` if fewer than `max` are in use.
    pub fn acquire(self: &Arc<Self>, channel_key: &str, max: usize) -> Option<AllocationGuard> {
        let mut map = self.by_channel.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(channel_key.to_string()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AllocationGuard { counter: self.clone(), channel_key: channel_key.to_string(), opened: Instant::now() })
    }

    /// Slots in use for `channel_key`.
    pub fn count(&self, channel_key: &str) -> usize {
        self.by_channel.lock().unwrap_or_else(|p| p.into_inner()).get(channel_key).copied().unwrap_or(0)
    }
}

/// One allocation's slot; released on drop.
#[derive(Debug)]
pub struct AllocationGuard {
    counter: Arc<AllocationCounter>,
    channel_key: String,
    opened: Instant,
}

impl Drop for AllocationGuard {
    fn drop(&mut self) {
        let mut map = self.counter.by_channel.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.channel_key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.channel_key);
            }
        }
        metrics::counter!(ALLOCATION_SECONDS).increment(self.opened.elapsed().as_secs());
    }
}

/// Allocates UDP relays, charging the channel authenticated last on this listener.
struct ReelRelays {
    bind_ip: IpAddr,
    advertised_ip: IpAddr,
    last_channel: Arc<Mutex<Option<String>>>,
    allocations: Arc<AllocationCounter>,
    max_per_channel: usize,
    bandwidth_bps: u64,
}

#[async_trait]
impl RelayAddressGenerator for ReelRelays {
    fn validate(&self) -> Result<(), turn::Error> {
        Ok(())
    }

    async fn allocate_conn(
        &self,
        _use_ipv4: bool,
        requested_port: u16,
    ) -> Result<(Arc<dyn Conn + Send + Sync>, SocketAddr), turn::Error> {
        let channel = self.last_channel.lock().unwrap_or_else(|p| p.into_inner()).take();
        let channel =
            channel.ok_or_else(|| turn::Error::Other("allocation without an authenticated request".into()))?;
        let guard = self.allocations.acquire(&channel, self.max_per_channel).ok_or_else(|| {
            tracing::info!(channel_key = %channel, max = self.max_per_channel, "TURN allocation quota reached");
            turn::Error::Other(format!("channel already has {} TURN allocations", self.max_per_channel))
        })?;
        let sock = UdpSocket::bind(SocketAddr::new(self.bind_ip, requested_port))
            .await
            .map_err(|e| turn::Error::Other(e.to_string()))?;
        let mut relay_addr = sock.local_addr().map_err(|e| turn::Error::Other(e.to_string()))?;
        relay_addr.set_ip(self.advertised_ip);
        let conn = LimitedConn::new(Arc::new(sock), self.bandwidth_bps, Some(guard), Instant::now());
        Ok((Arc::new(conn), relay_addr))
    }
}

/// A relay socket with a bandwidth cap per direction (see module docs).
pub struct LimitedConn {
    inner: Arc<dyn Conn + Send + Sync>,
    send_budget: Mutex<TokenBucket>,
    recv_budget: Mutex<TokenBucket>,
    guard: Mutex<Option<AllocationGuard>>,
}

impl LimitedConn {
    /// Wrap `inner` with `bps` bits per second each way; `guard` is released on close/drop.
    pub fn new(inner: Arc<dyn Conn + Send + Sync>, bps: u64, guard: Option<AllocationGuard>, now: Instant) -> Self {
        let bytes_per_sec = bps as f64 / 8.0;
        let burst = (bytes_per_sec * BANDWIDTH_BURST_SECS).max(MIN_BURST_BYTES as f64);
        Self::with_burst(inner, bytes_per_sec, burst, guard, now)
    }

    /// Like [`LimitedConn::new`] with an explicit rate and burst, in bytes.
    pub fn with_burst(
        inner: Arc<dyn Conn + Send + Sync>,
        bytes_per_sec: f64,
        burst_bytes: f64,
        guard: Option<AllocationGuard>,
        now: Instant,
    ) -> Self {
        Self {
            inner,
            send_budget: Mutex::new(TokenBucket::new(bytes_per_sec, burst_bytes, now)),
            recv_budget: Mutex::new(TokenBucket::new(bytes_per_sec, burst_bytes, now)),
            guard: Mutex::new(guard),
        }
    }

    fn admit(bucket: &Mutex<TokenBucket>, n: usize) -> bool {
        let ok = bucket.lock().unwrap_or_else(|p| p.into_inner()).try_take(n as f64, Instant::now());
        if !ok {
            metrics::counter!(BANDWIDTH_DROPS).increment(1);
        }
        ok
    }
}

#[async_trait]
impl Conn for LimitedConn {
    async fn connect(&self, addr: SocketAddr) -> webrtc_util::Result<()> {
        self.inner.connect(addr).await
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        loop {
            let n = self.inner.recv(buf).await?;
            if Self::admit(&self.recv_budget, n) {
                return Ok(n);
            }
        }
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        loop {
            let (n, from) = self.inner.recv_from(buf).await?;
            if Self::admit(&self.recv_budget, n) {
                return Ok((n, from));
            }
        }
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        if Self::admit(&self.send_budget, buf.len()) { self.inner.send(buf).await } else { Ok(buf.len()) }
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        if Self::admit(&self.send_budget, buf.len()) { self.inner.send_to(buf, target).await } else { Ok(buf.len()) }
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote_addr()
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        drop(self.guard.lock().unwrap_or_else(|p| p.into_inner()).take());
        self.inner.close().await
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// Length of the next message in a TURN-over-TCP byte stream, sans-IO.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some((message_len, frame_len)))`
/// otherwise (`frame_len` includes ChannelData padding), or an error for bytes that are
/// neither STUN nor ChannelData.
pub fn next_tcp_frame(buf: &[u8]) -> Result<Option<(usize, usize)>, &'static str> {
    const STUN_HEADER: usize = 20;
    const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
    let Some(first) = buf.first() else { return Ok(None) };
    match first >> 6 {
        0b00 => {
            if buf.len() < STUN_HEADER {
                return Ok(None);
            }
            if buf.get(4..8) != Some(&MAGIC_COOKIE[..]) {
                return Err("not a STUN message (bad magic cookie)");
            }
            let len = STUN_HEADER + usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            Ok((buf.len() >= len).then_some((len, len)))
        }
        0b01 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            let len = 4 + usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            let padded = len.div_ceil(4) * 4;
            Ok((buf.len() >= padded).then_some((len, padded)))
        }
        _ => Err("neither STUN nor ChannelData"),
    }
}

/// TURN over TCP presented as one packet `Conn` (see module docs).
pub struct TcpMux {
    local: SocketAddr,
    inbound: tokio::sync::Mutex<mpsc::Receiver<(Vec<u8>, SocketAddr)>>,
    clients: Arc<Mutex<TcpClients>>,
}

/// The connected TCP clients: where to write to each, and how many each IP holds.
#[derive(Debug, Default)]
pub struct TcpClients {
    writers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    per_ip: HashMap<IpAddr, usize>,
}

impl TcpClients {
    /// Register `peer` unless that exceeds `bounds`; `false` = refuse the connection.
    pub fn admit(&mut self, peer: SocketAddr, tx: mpsc::Sender<Vec<u8>>, bounds: &TcpBounds) -> bool {
        let from_ip = self.per_ip.get(&peer.ip()).copied().unwrap_or(0);
        if self.writers.len() >= bounds.max_connections || from_ip >= bounds.max_per_ip {
            return false;
        }
        self.writers.insert(peer, tx);
        *self.per_ip.entry(peer.ip()).or_insert(0) += 1;
        true
    }

    /// Forget `peer` (its connection ended).
    pub fn remove(&mut self, peer: SocketAddr) {
        if self.writers.remove(&peer).is_none() {
            return;
        }
        if let Some(n) = self.per_ip.get_mut(&peer.ip()) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&peer.ip());
            }
        }
    }

    /// Connected clients.
    pub fn len(&self) -> usize {
        self.writers.len()
    }

    /// Whether no client is connected.
    pub fn is_empty(&self) -> bool {
        self.writers.is_empty()
    }
}

impl TcpMux {
    /// Start accepting on `listener` within `bounds`; returns the `Conn` and the accept task.
    pub fn start(
        listener: TcpListener,
        local: SocketAddr,
        bounds: TcpBounds,
    ) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(1024);
        let clients: Arc<Mutex<TcpClients>> = Arc::default();
        let mux = Arc::new(Self { local, inbound: tokio::sync::Mutex::new(rx), clients: clients.clone() });
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(v) => v,
                    Err(e) => {
                        // Out of file descriptors, typically: back off instead of spinning.
                        tracing::warn!(error = %e, "TURN TCP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(256);
                let admitted = clients.lock().unwrap_or_else(|p| p.into_inner()).admit(peer, out_tx, &bounds);
                if !admitted {
                    metrics::counter!(REFUSED, "reason" => "tcp_limit").increment(1);
                    tracing::info!(%peer, "TURN TCP connection limit reached; closing");
                    continue;
                }
                tokio::spawn(Self::serve(stream, peer, tx.clone(), out_rx, clients.clone(), bounds.idle_timeout));
            }
        });
        (mux, task)
    }

    async fn serve(
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        inbound: mpsc::Sender<(Vec<u8>, SocketAddr)>,
        mut outbound: mpsc::Receiver<Vec<u8>>,
        clients: Arc<Mutex<TcpClients>>,
        idle_timeout: Duration,
    ) {
        let (mut reader, mut writer) = stream.into_split();
        let write = async move {
            while let Some(frame) = outbound.recv().await {
                if writer.write_all(&frame).await.is_err() {
                    break;
                }
            }
        };
        let read = async move {
            let mut buf: Vec<u8> = Vec::with_capacity(4096);
            let mut chunk = [0u8; 4096];
            loop {
                match next_tcp_frame(&buf) {
                    Err(e) => {
                        tracing::debug!(%peer, error = e, "closing TURN TCP client");
                        break;
                    }
                    Ok(Some((len, frame_len))) => {
                        if len <= MAX_TCP_MESSAGE {
                            let msg = buf.get(..len).map(<[u8]>::to_vec).unwrap_or_default();
                            if inbound.send((msg, peer)).await.is_err() {
                                break;
                            }
                        }
                        buf.drain(..frame_len.min(buf.len()));
                        continue;
                    }
                    Ok(None) => {}
                }
                match tokio::time::timeout(idle_timeout, reader.read(&mut chunk)).await {
                    Err(_) => {
                        metrics::counter!(REFUSED, "reason" => "tcp_idle").increment(1);
                        tracing::debug!(%peer, "closing idle TURN TCP client");
                        break;
                    }
                    Ok(Ok(0) | Err(_)) => break,
                    Ok(Ok(n)) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                }
            }
        };
        tokio::select! { _ = write => {}, _ = read => {} }
        clients.lock().unwrap_or_else(|p| p.into_inner()).remove(peer);
    }
}

#[async_trait]
impl Conn for TcpMux {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(webrtc_util::Error::Other("TURN TCP mux cannot connect".into()))
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        self.recv_from(buf).await.map(|(n, _)| n)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let mut rx = self.inbound.lock().await;
        loop {
            let (msg, from) = rx.recv().await.ok_or(webrtc_util::Error::ErrClosedListener)?;
            if let Some(dst) = buf.get_mut(..msg.len()) {
                dst.copy_from_slice(&msg);
                return Ok((msg.len(), from));
            }
        }
    }

    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(webrtc_util::Error::ErrNoRemAddr)
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        let tx = self.clients.lock().unwrap_or_else(|p| p.into_inner()).writers.get(&target).cloned();
        let Some(tx) = tx else { return Err(webrtc_util::Error::ErrNoSuchUdpConn) };
        let mut frame = buf.to_vec();
        if buf.first().is_some_and(|b| b >> 6 == 0b01) {
            frame.resize(buf.len().div_ceil(4) * 4, 0);
        }
        // A client that does not read loses frames, like a UDP client would.
        let _ = tx.try_send(frame);
        Ok(buf.len())
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.local)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        // The crate closes the listener conn whenever an allocation closes; the mux must
        // outlive allocations, so this is a no-op (the accept task is aborted on shutdown).
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::credentials::channel_key;

    const ARN: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/c/1";

    #[test]
    fn tcp_framing() {
        assert_eq!(next_tcp_frame(&[]), Ok(None));
        let mut stun = vec![0x00, 0x01, 0x00, 0x04, 0x21, 0x12, 0xA4, 0x42];
        stun.extend([0u8; 12]);
        assert_eq!(next_tcp_frame(&stun), Ok(None), "header says 4 more bytes");
        stun.extend([1, 2, 3, 4, 9]);
        assert_eq!(next_tcp_frame(&stun), Ok(Some((24, 24))));
        assert!(next_tcp_frame(&[0x00, 0x01, 0x00, 0x00, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        let chan = [0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0, 0xff];
        assert_eq!(next_tcp_frame(&chan), Ok(Some((9, 12))));
        assert_eq!(next_tcp_frame(&chan[..11]), Ok(None));
        assert!(next_tcp_frame(&[0xC0, 0, 0, 0]).is_err());
    }

    #[test]
    fn allocation_counter_caps_and_releases() {
        let c = Arc::new(AllocationCounter::default());
        let a = c.acquire("k", 2).expect("1");
        let _b = c.acquire("k", 2).expect("2");
        assert!(c.acquire("k", 2).is_none());
        assert!(c.acquire("other", 2).is_some());
        drop(a);
        assert_eq!(c.count("k"), 1);
        assert!(c.acquire("k", 2).is_some());
    }

    #[tokio::test]
    async fn limited_conn_drops_over_budget() {
        let rx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let tx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let target = rx.local_addr().expect("addr");
        // 8 kbit/s with a 2000-byte burst: two 1000-byte datagrams pass, the rest drop.
        let limited = LimitedConn::with_burst(Arc::new(tx), 1000.0, 2000.0, None, Instant::now());
        for _ in 0..5 {
            assert_eq!(limited.send_to(&[7u8; 1000], target).await.expect("send"), 1000);
        }
        let mut buf = [0u8; 2000];
        let mut got = 0;
        while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), rx.recv_from(&mut buf)).await {
            got += 1;
        }
        assert_eq!(got, 2);
    }

    async fn turn_client(server: SocketAddr, username: &str, password: &str) -> turn::client::Client {
        let conn = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let client = turn::client::Client::new(turn::client::ClientConfig {
            stun_serv_addr: server.to_string(),
            turn_serv_addr: server.to_string(),
            username: username.into(),
            password: password.into(),
            realm: REALM.into(),
            software: String::new(),
            rto_in_ms: 0,
            conn: Arc::new(conn),
            vnet: None,
        })
        .await
        .expect("client");
        client.listen().await.expect("listen");
        client
    }

    async fn started(max: usize) -> (TurnServer, Arc<TurnSecret>, tempfile::TempDir) {
        started_with(max, PeerPolicy::default(), TcpBounds::default()).await
    }

    async fn started_with(
        max: usize,
        policy: PeerPolicy,
        tcp: TcpBounds,
    ) -> (TurnServer, Arc<TurnSecret>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = Arc::new(TurnSecret::load_or_create(dir.path()).expect("secret"));
        let opts = TurnOptions {
            listen: "127.0.0.1:0".parse().expect("addr"),
            advertised_ip: "127.0.0.1".parse().expect("ip"),
            max_allocations_per_channel: max,
            bandwidth_bps: 5_000_000,
            policy: Arc::new(policy),
            tcp,
        };
        (TurnServer::start(opts, secret.clone()).await.expect("turn"), secret, dir)
    }

    /// Allocates, then relays one datagram to a UDP socket on 127.0.0.1; returns whether
    /// the peer received it.
    async fn relays_to_loopback(policy: PeerPolicy) -> bool {
        let (server, secret, _dir) = started_with(5, policy, TcpBounds::default()).await;
        let peer = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let creds = secret.issue(ARN, Duration::from_secs(300), SystemTime::now());
        let client = turn_client(server.udp_addr, &creds.username, &creds.password).await;
        let relay = client.allocate().await.expect("allocate");
        // The client sends CreatePermission first; a 403 fails the send.
        let sent = relay.send_to(b"ping", peer.local_addr().expect("addr")).await;
        let mut buf = [0u8; 16];
        let got = tokio::time::timeout(Duration::from_millis(500), peer.recv_from(&mut buf)).await;
        let _ = client.close().await;
        server.close().await;
        if let Err(e) = &sent {
            assert!(e.to_string().contains("403"), "refused with 403 Forbidden: {e}");
        }
        sent.is_ok() && got.is_ok()
    }

    #[tokio::test]
    async fn loopback_peers_are_denied_unless_allow_listed() {
        assert!(!relays_to_loopback(PeerPolicy::default()).await, "loopback denied by default");
        let allowed =
            PeerPolicy::new(vec![super::super::turn_policy::parse_cidr("127.0.0.0/8").expect("cidr")], vec![]);
        assert!(relays_to_loopback(allowed).await, "allow-listed loopback relays");
    }

    /// Sends one STUN message over UDP and decodes the answer.
    async fn exchange(sock: &UdpSocket, server: SocketAddr, attrs: Vec<Box<dyn Setter>>) -> Message {
        let raw = build(attrs).expect("build");
        sock.send_to(&raw, server).await.expect("send");
        let mut buf = [0u8; 1500];
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
            .await
            .expect("timely")
            .expect("recv");
        let mut m = Message::new();
        m.raw = buf[..n].to_vec();
        m.decode().expect("decode");
        m
    }

    fn error_code(m: &Message) -> u16 {
        let mut e = ErrorCodeAttribute::default();
        stun::message::Getter::get_from(&mut e, m).expect("error code");
        e.code.0
    }

    #[tokio::test]
    async fn nonces_are_stateless_and_bound_to_the_client() {
        use stun::agent::TransactionId;
        let (server, secret, _dir) = started(5).await;
        let creds = secret.issue(ARN, Duration::from_secs(300), SystemTime::now());
        let allocate = |nonce: Option<&str>| -> Vec<Box<dyn Setter>> {
            let mut attrs: Vec<Box<dyn Setter>> = vec![
                Box::new(TransactionId::new()),
                Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
                Box::new(turn::proto::reqtrans::RequestedTransport { protocol: turn::proto::PROTO_UDP }),
            ];
            if let Some(n) = nonce {
                attrs.push(Box::new(TextAttribute::new(ATTR_USERNAME, creds.username.clone())));
                attrs.push(Box::new(TextAttribute::new(ATTR_REALM, REALM.into())));
                attrs.push(Box::new(TextAttribute::new(ATTR_NONCE, n.into())));
                attrs.push(Box::new(MessageIntegrity::new_long_term_integrity(
                    creds.username.clone(),
                    REALM.into(),
                    creds.password.clone(),
                )));
            }
            attrs
        };
        let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        // Many unauthenticated Allocates: each is challenged, by the gate, with the same
        // nonce for the same client (nothing is stored per request).
        let mut nonces = std::collections::HashSet::new();
        for _ in 0..50 {
            let res = exchange(&a, server.udp_addr, allocate(None)).await;
            assert_eq!(error_code(&res), 401);
            nonces.insert(TextAttribute::get_from_as(&res, ATTR_NONCE).expect("nonce").text);
        }
        assert_eq!(nonces.len(), 1, "one stateless nonce per client and window");
        let nonce = nonces.into_iter().next().expect("nonce");
        // Another client address cannot use it: 438 Stale Nonce.
        let res = exchange(&b, server.udp_addr, allocate(Some(&nonce))).await;
        assert_eq!(error_code(&res), 438, "a nonce is bound to the client that got it");
        // Its own client allocates with it.
        let res = exchange(&a, server.udp_addr, allocate(Some(&nonce))).await;
        assert_eq!(res.typ.class, stun::message::CLASS_SUCCESS_RESPONSE, "{res}");
        server.close().await;
    }

    #[tokio::test]
    async fn tcp_clients_are_capped_per_ip_and_closed_when_idle() {
        let bounds = TcpBounds { idle_timeout: Duration::from_millis(300), max_connections: 100, max_per_ip: 2 };
        let (server, _secret, _dir) = started_with(5, PeerPolicy::default(), bounds).await;
        let mut first = tokio::net::TcpStream::connect(server.tcp_addr).await.expect("connect");
        let _second = tokio::net::TcpStream::connect(server.tcp_addr).await.expect("connect");
        let mut third = tokio::net::TcpStream::connect(server.tcp_addr).await.expect("connect");
        let mut buf = [0u8; 16];
        // The third from the same IP is closed at once.
        let n = tokio::time::timeout(Duration::from_millis(250), third.read(&mut buf)).await;
        assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "third connection closed: {n:?}");
        // The first, silent, is closed after the idle timeout.
        let n = tokio::time::timeout(Duration::from_secs(3), first.read(&mut buf)).await;
        assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "idle connection closed: {n:?}");
        server.close().await;
    }

    #[test]
    fn tcp_client_table_counts_per_ip() {
        let bounds = TcpBounds { idle_timeout: Duration::from_secs(1), max_connections: 3, max_per_ip: 2 };
        let mut t = TcpClients::default();
        let (tx, _rx) = mpsc::channel(1);
        let a1: SocketAddr = "192.0.2.1:1".parse().expect("addr");
        let a2: SocketAddr = "192.0.2.1:2".parse().expect("addr");
        let a3: SocketAddr = "192.0.2.1:3".parse().expect("addr");
        let b1: SocketAddr = "192.0.2.2:1".parse().expect("addr");
        let c1: SocketAddr = "192.0.2.3:1".parse().expect("addr");
        assert!(t.admit(a1, tx.clone(), &bounds) && t.admit(a2, tx.clone(), &bounds));
        assert!(!t.admit(a3, tx.clone(), &bounds), "per-IP cap");
        assert!(t.admit(b1, tx.clone(), &bounds));
        assert!(!t.admit(c1, tx.clone(), &bounds), "total cap");
        t.remove(a1);
        t.remove(a1);
        assert!(t.admit(a3, tx.clone(), &bounds), "released");
        assert_eq!(t.len(), 3);
    }

    #[tokio::test]
    async fn issued_credentials_allocate_bogus_and_expired_do_not_and_the_cap_holds() {
        let (server, secret, _dir) = started(1).await;
        let good = secret.issue(ARN, Duration::from_secs(300), SystemTime::now());
        let c1 = turn_client(server.udp_addr, &good.username, &good.password).await;
        let relay = c1.allocate().await.expect("issued credentials allocate");
        assert_eq!(relay.local_addr().expect("relay").ip(), "127.0.0.1".parse::<IpAddr>().expect("ip"));
        assert_eq!(server.allocations_for(&channel_key(ARN)), 1);

        // Second allocation on the same channel: over the cap of 1.
        let c2 = turn_client(server.udp_addr, &good.username, &good.password).await;
        assert!(c2.allocate().await.is_err(), "per-channel cap");
        // Another channel is unaffected.
        let other = secret.issue(&format!("{ARN}0"), Duration::from_secs(300), SystemTime::now());
        let c3 = turn_client(server.udp_addr, &other.username, &other.password).await;
        assert!(c3.allocate().await.is_ok());

        let bogus = turn_client(server.udp_addr, &good.username, "not-the-password").await;
        assert!(bogus.allocate().await.is_err(), "wrong password");
        let foreign = turn_client(server.udp_addr, "someone", "x").await;
        assert!(foreign.allocate().await.is_err(), "unknown username");
        let old = secret.issue(ARN, Duration::from_secs(300), SystemTime::now() - Duration::from_secs(301));
        let expired = turn_client(server.udp_addr, &old.username, &old.password).await;
        assert!(expired.allocate().await.is_err(), "expired credentials");

        // Releasing the allocation frees the slot.
        c1.close().await.expect("close");
        drop(relay);
        for c in [c2, c3, bogus, foreign, expired] {
            let _ = c.close().await;
        }
        server.close().await;
    }

    #[tokio::test]
    async fn stun_binding_over_tcp() {
        use stun::agent::TransactionId;
        use stun::message::{BINDING_REQUEST, Getter, Message};
        use stun::xoraddr::XorMappedAddress;
        let (server, _secret, _dir) = started(50).await;
        let mut stream = tokio::net::TcpStream::connect(server.tcp_addr).await.expect("connect");
        let mut req = Message::new();
        req.build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)]).expect("build");
        stream.write_all(&req.raw).await.expect("write");
        let mut buf = vec![0u8; 0];
        let mut chunk = [0u8; 1500];
        let len = loop {
            if let Ok(Some((len, _))) = next_tcp_frame(&buf) {
                break len;
            }
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
                .await
                .expect("timely")
                .expect("read");
            assert!(n > 0, "server closed");
            buf.extend_from_slice(&chunk[..n]);
        };
        let mut res = Message::new();
        res.raw = buf[..len].to_vec();
        res.decode().expect("decode");
        assert_eq!(res.transaction_id, req.transaction_id);
        let mut mapped = XorMappedAddress::default();
        mapped.get_from(&res).expect("xor-mapped-address");
        assert_eq!(SocketAddr::new(mapped.ip, mapped.port), stream.local_addr().expect("addr"));
        server.close().await;
    }
}
