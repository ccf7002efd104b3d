//! Connection bounds of the HTTP(S) listener: a cap on open connections in total and per
//! source IP, applied as each connection is accepted (before TLS), so slow or numerous
//! clients cannot exhaust file descriptors. Timeouts are hyper's (see [`super::serve_on`]).

use std::collections::HashMap;
use std::future::Ready;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::limits::HttpLimits;

/// Prometheus counter: connections closed on accept, by `reason` (`total`, `per_ip`).
pub const CONNECTIONS_REFUSED: &str = "reel_http_connections_refused_total";
/// Prometheus gauge: open HTTP connections.
pub const CONNECTIONS_OPEN: &str = "reel_http_connections_open";

/// The answer a refused plain-HTTP connection gets (best effort, never waited on).
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/x-amz-json-1.1\r\n\
x-amzn-ErrorType: ClientLimitExceededException\r\nConnection: close\r\nContent-Length: 109\r\n\r\n\
{\"__type\":\"ClientLimitExceededException\",\"message\":\"Too many connections.\",\"Message\":\"Too many connections.\"}";

/// Open connections, in total and per IP.
#[derive(Debug)]
pub struct ConnectionTable {
    max_total: usize,
    max_per_ip: usize,
    state: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener holds its maximum of connections.
    Total,
    /// This IP holds its maximum.
    PerIp,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::PerIp => "per_ip",
        }
    }
}

impl ConnectionTable {
    /// A table with the caps of `limits`.
    pub fn new(limits: &HttpLimits) -> Arc<Self> {
        Arc::new(Self {
            max_total: limits.max_connections,
            max_per_ip: limits.max_connections_per_ip,
            state: Mutex::default(),
        })
    }

    /// Take a slot for a connection from `ip`; released when the [`Slot`] drops.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per_ip) = &mut *guard;
        if *total >= self.max_total {
            return Err(Refusal::Total);
        }
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Refusal::PerIp);
        }
        *n += 1;
        *total += 1;
        metrics::gauge!(CONNECTIONS_OPEN).increment(1.0);
        Ok(Slot { table: self.clone(), ip })
    }

    /// Open connections (for tests).
    pub fn open(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

/// One connection's place in the [`ConnectionTable`].
#[derive(Debug)]
pub struct Slot {
    table: Arc<ConnectionTable>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut guard = self.table.state.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per_ip) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        metrics::gauge!(CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// A stream that holds its [`Slot`] for as long as it lives.
#[derive(Debug)]
pub struct Limited<S> {
    inner: S,
    _slot: Slot,
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The acceptor that applies the [`ConnectionTable`] to raw TCP connections (under TLS,
/// before the handshake). `plain` listeners answer a refusal with a KVS-shaped 503.
#[derive(Debug, Clone)]
pub struct LimitAcceptor {
    table: Arc<ConnectionTable>,
    plain: bool,
}

impl LimitAcceptor {
    /// Apply `table`; `plain` = the listener speaks HTTP without TLS.
    pub fn new(table: Arc<ConnectionTable>, plain: bool) -> Self {
        Self { table, plain }
    }
}

impl<S> Accept<TcpStream, S> for LimitAcceptor {
    type Stream = Limited<TcpStream>;
    type Service = S;
    type Future = Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let ip = match stream.peer_addr() {
            Ok(a) => a.ip(),
            Err(e) => return std::future::ready(Err(e)),
        };
        match self.table.acquire(ip) {
            Ok(slot) => std::future::ready(Ok((Limited { inner: stream, _slot: slot }, service))),
            Err(refusal) => {
                metrics::counter!(CONNECTIONS_REFUSED, "reason" => refusal.label()).increment(1);
                tracing::info!(%ip, reason = refusal.label(), "HTTP connection refused: connection limit");
                if self.plain {
                    // Never wait on the client: whatever fits the socket buffer now.
                    let _ = stream.try_write(REFUSAL);
                }
                std::future::ready(Err(io::Error::other("connection limit reached")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_total_and_per_ip_and_releases() {
        let limits = HttpLimits { max_connections: 3, max_connections_per_ip: 2, ..HttpLimits::default() };
        let t = ConnectionTable::new(&limits);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let a1 = t.acquire(a).expect("a1");
        let _a2 = t.acquire(a).expect("a2");
        assert_eq!(t.acquire(a).err(), Some(Refusal::PerIp));
        let _b1 = t.acquire(b).expect("b1");
        assert_eq!(t.acquire(b).err(), Some(Refusal::Total));
        drop(a1);
        assert_eq!(t.open(), 2);
        assert!(t.acquire(a).is_ok());
    }

    #[test]
    fn the_refusal_is_a_complete_kvs_error() {
        let text = std::str::from_utf8(REFUSAL).expect("utf8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let len: usize =
            head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).and_then(|v| v.parse().ok()).expect("length");
        assert_eq!(body.len(), len);
        let json: serde_json::Value = serde_json::from_str(body.trim_end()).expect("json");
        assert_eq!(json["__type"], "ClientLimitExceededException");
    }
}
