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
//!   closes first (the crate ties allocations to 5-tuples, not to connections).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use turn::auth::{AuthHandler, generate_auth_key};
use turn::relay::RelayAddressGenerator;
use turn::server::Server;
use turn::server::config::{ConnConfig, ServerConfig};
use webrtc_util::Conn;

use super::credentials::TurnSecret;
use crate::rate::TokenBucket;

/// TURN realm reel announces.
pub const REALM: &str = "reel";
/// Burst of the bandwidth bucket, as seconds of the allowed rate.
pub const BANDWIDTH_BURST_SECS: f64 = 0.25;
/// The bandwidth bucket holds at least this many bytes (a few full-size datagrams).
pub const MIN_BURST_BYTES: u64 = 16 * 1024;
/// Concurrent TCP clients of the TURN server.
pub const MAX_TCP_CLIENTS: usize = 1024;
/// Largest STUN/ChannelData message accepted over TCP (the crate reads 1500-byte datagrams).
pub const MAX_TCP_MESSAGE: usize = 1500;
/// Prometheus counter: seconds TURN allocations were open ("connected minutes" × 60).
pub const ALLOCATION_SECONDS: &str = "reel_turn_allocation_seconds_total";
/// Prometheus counter: relayed datagrams dropped by the bandwidth cap.
pub const BANDWIDTH_DROPS: &str = "reel_turn_bandwidth_dropped_total";

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
    udp: Server,
    tcp: Server,
    /// Bound UDP address.
    pub udp_addr: SocketAddr,
    /// Bound TCP address.
    pub tcp_addr: SocketAddr,
    allocations: Arc<AllocationCounter>,
    tcp_accept: tokio::task::JoinHandle<()>,
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
        let (mux, tcp_accept) = TcpMux::start(tcp_listener, tcp_addr);

        let allocations = Arc::new(AllocationCounter::default());
        let udp = Self::server(Arc::new(udp_sock), &opts, &secret, &allocations).await?;
        let tcp = Self::server(mux, &opts, &secret, &allocations).await?;
        tracing::info!(%udp_addr, %tcp_addr, advertised = %opts.advertised_ip, "TURN server listening");
        Ok(Self { udp, tcp, udp_addr, tcp_addr, allocations, tcp_accept })
    }

    async fn server(
        conn: Arc<dyn Conn + Send + Sync>,
        opts: &TurnOptions,
        secret: &Arc<TurnSecret>,
        allocations: &Arc<AllocationCounter>,
    ) -> Result<Server, TurnError> {
        let last_channel = Arc::new(Mutex::new(None));
        Server::new(ServerConfig {
            conn_configs: vec![ConnConfig {
                conn,
                relay_addr_generator: Box::new(ReelRelays {
                    bind_ip: opts.listen.ip(),
                    advertised_ip: opts.advertised_ip,
                    last_channel: last_channel.clone(),
                    allocations: allocations.clone(),
                    max_per_channel: opts.max_allocations_per_channel,
                    bandwidth_bps: opts.bandwidth_bps,
                }),
            }],
            realm: REALM.to_string(),
            auth_handler: Arc::new(ReelAuth { secret: secret.clone(), last_channel }),
            channel_bind_timeout: Duration::from_secs(0),
            alloc_close_notify: None,
        })
        .await
        .map_err(|e| TurnError::Server(e.to_string()))
    }

    /// Current allocations of the channel with this key (see [`super::credentials::channel_key`]).
    pub fn allocations_for(&self, channel_key: &str) -> usize {
        self.allocations.count(channel_key)
    }

    /// Stop both listeners and every allocation.
    pub async fn close(&self) {
        self.tcp_accept.abort();
        let _ = self.udp.close().await;
        let _ = self.tcp.close().await;
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
    writers: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>>,
}

impl TcpMux {
    /// Start accepting on `listener`; returns the `Conn` and the accept task.
    pub fn start(listener: TcpListener, local: SocketAddr) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(1024);
        let writers: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>> = Arc::default();
        let mux = Arc::new(Self { local, inbound: tokio::sync::Mutex::new(rx), writers: writers.clone() });
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else { continue };
                let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(256);
                {
                    let mut w = writers.lock().unwrap_or_else(|p| p.into_inner());
                    if w.len() >= MAX_TCP_CLIENTS {
                        tracing::warn!(%peer, "TURN TCP client limit reached");
                        continue;
                    }
                    w.insert(peer, out_tx);
                }
                tokio::spawn(Self::serve(stream, peer, tx.clone(), out_rx, writers.clone()));
            }
        });
        (mux, task)
    }

    async fn serve(
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        inbound: mpsc::Sender<(Vec<u8>, SocketAddr)>,
        mut outbound: mpsc::Receiver<Vec<u8>>,
        writers: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>>,
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
                match reader.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                }
            }
        };
        tokio::select! { _ = write => {}, _ = read => {} }
        writers.lock().unwrap_or_else(|p| p.into_inner()).remove(&peer);
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
        let tx = self.writers.lock().unwrap_or_else(|p| p.into_inner()).get(&target).cloned();
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
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = Arc::new(TurnSecret::load_or_create(dir.path()).expect("secret"));
        let opts = TurnOptions {
            listen: "127.0.0.1:0".parse().expect("addr"),
            advertised_ip: "127.0.0.1".parse().expect("ip"),
            max_allocations_per_channel: max,
            bandwidth_bps: 5_000_000,
        };
        (TurnServer::start(opts, secret.clone()).await.expect("turn"), secret, dir)
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
