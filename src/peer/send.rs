//! A media worker's batched send path. The datagrams of one hub pass leave in order, and a
//! run of equal-sized datagrams to one destination (one frame's RTP packets for one live
//! viewer: all full but the last) leaves as one `sendmsg` with UDP segmentation offload
//! (GSO): one syscall and one trip through the IP stack per run instead of one per
//! datagram. The receiver gets the same datagrams. Where the kernel or the route's device
//! refuses a GSO send, the run goes out datagram by datagram and GSO stays off for the
//! socket.
//!
//! A datagram the socket cannot take (its buffer is full) is dropped, as a network would
//! drop it, and counted in [`SEND_DROPPED`]: the media loop never waits on a send.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmsg, setsockopt, sockopt};

/// Most datagrams one GSO send may carry (the kernel's `UDP_MAX_SEGMENTS`).
pub const MAX_SEGMENTS: usize = 64;
/// Most bytes one GSO send may carry (the UDP length field's limit, with room for headers).
pub const MAX_GSO_BYTES: usize = 60_000;

/// Prometheus counter: datagrams the media socket refused (buffer full, unreachable).
pub const SEND_DROPPED: &str = "reel_webrtc_send_dropped_total";

/// Counters of one [`Sender`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendStats {
    /// Datagrams handed to the kernel.
    pub datagrams: u64,
    /// `sendmsg` calls that carried them.
    pub syscalls: u64,
    /// Datagrams dropped (the socket refused them).
    pub dropped: u64,
}

/// Sends batches of datagrams on one UDP socket (see the module docs).
#[derive(Debug)]
pub struct Sender {
    /// Most datagrams per send: [`MAX_SEGMENTS`] with GSO, 1 without.
    max_segments: usize,
    /// Lifetime counters.
    pub stats: SendStats,
}

impl Sender {
    /// A sender for `socket`, with GSO when the kernel offers it.
    pub fn new(socket: &impl AsRawFd) -> Self {
        let gso = setsockopt(socket.as_raw_fd(), sockopt::UdpGsoSegment, &0).is_ok();
        Self::with_gso(gso)
    }

    /// A sender that uses GSO only if `gso` (tests, and hosts that want one send per datagram).
    pub fn with_gso(gso: bool) -> Self {
        Self { max_segments: if gso { MAX_SEGMENTS } else { 1 }, stats: SendStats::default() }
    }

    /// Whether runs still go out as one GSO send each.
    pub fn gso(&self) -> bool {
        self.max_segments > 1
    }

    /// Sends `datagrams` (destination, bytes) in order.
    pub fn send_all<B: AsRef<[u8]>>(&mut self, socket: &impl AsRawFd, datagrams: &[(SocketAddr, B)]) {
        let mut at = 0;
        while at < datagrams.len() {
            let n = gso_run(&datagrams[at..], self.max_segments);
            let run = &datagrams[at..at + n];
            at += n;
            match send(socket, run) {
                Ok(()) => {
                    self.stats.datagrams += n as u64;
                    self.stats.syscalls += 1;
                }
                Err(e) if n > 1 && e != nix::errno::Errno::EAGAIN => {
                    tracing::warn!(error = %e, "GSO send refused: sending one datagram per call from now on");
                    self.max_segments = 1;
                    for d in run {
                        self.send_one(socket, d);
                    }
                }
                Err(e) => self.dropped(n, e),
            }
        }
    }

    fn send_one<B: AsRef<[u8]>>(&mut self, socket: &impl AsRawFd, d: &(SocketAddr, B)) {
        match send(socket, std::slice::from_ref(d)) {
            Ok(()) => {
                self.stats.datagrams += 1;
                self.stats.syscalls += 1;
            }
            Err(e) => self.dropped(1, e),
        }
    }

    fn dropped(&mut self, n: usize, e: nix::errno::Errno) {
        tracing::debug!(error = %e, datagrams = n, "webrtc send dropped");
        self.stats.dropped += n as u64;
        metrics::counter!(SEND_DROPPED).increment(n as u64);
    }
}

/// One `sendmsg` of `run` (one datagram, or a GSO run: same destination, every datagram as
/// long as the first but possibly a shorter last one).
fn send<B: AsRef<[u8]>>(socket: &impl AsRawFd, run: &[(SocketAddr, B)]) -> nix::Result<()> {
    let Some((destination, first)) = run.first() else { return Ok(()) };
    // On the stack: this runs for every datagram the worker sends.
    let mut slots = [IoSlice::new(&[]); MAX_SEGMENTS];
    let iov = &mut slots[..run.len().min(MAX_SEGMENTS)];
    for (slot, (_, b)) in iov.iter_mut().zip(run) {
        *slot = IoSlice::new(b.as_ref());
    }
    let addr = SockaddrStorage::from(*destination);
    let segment = u16::try_from(first.as_ref().len()).unwrap_or(u16::MAX);
    let gso = [ControlMessage::UdpGsoSegments(&segment)];
    let cmsgs: &[ControlMessage<'_>] = if run.len() > 1 { &gso } else { &[] };
    sendmsg(socket.as_raw_fd(), iov, cmsgs, MsgFlags::MSG_DONTWAIT, Some(&addr)).map(|_| ())
}

/// How many of `queued`'s leading datagrams one send can carry: a run to the first one's
/// destination, all as long as the first but possibly a shorter last one, at most
/// `max_segments` and [`MAX_GSO_BYTES`].
pub fn gso_run<B: AsRef<[u8]>>(queued: &[(SocketAddr, B)], max_segments: usize) -> usize {
    let Some((destination, first)) = queued.first() else { return 0 };
    let size = first.as_ref().len();
    let (mut n, mut bytes) = (1, size);
    for (d, b) in &queued[1..] {
        let len = b.as_ref().len();
        if d != destination || len > size || len == 0 || n >= max_segments || bytes + len > MAX_GSO_BYTES {
            break;
        }
        n += 1;
        bytes += len;
        if len < size {
            break; // a short datagram ends the run
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn sized(lens: &[(u16, usize)]) -> Vec<(SocketAddr, Vec<u8>)> {
        lens.iter().map(|&(p, n)| (to(p), vec![0; n])).collect()
    }

    #[test]
    fn a_run_is_equal_sizes_to_one_destination_with_a_shorter_tail() {
        let q = sized(&[(1, 1200), (1, 1200), (1, 700), (1, 1200)]);
        assert_eq!(gso_run(&q, 64), 3);
        assert_eq!(gso_run(&q[2..], 64), 1, "a longer datagram starts a new run");
        assert_eq!(gso_run(&q, 2), 2, "at most the segment limit");
        assert_eq!(gso_run(&q, 1), 1, "without GSO every datagram is a send");
        assert_eq!(gso_run(&sized(&[(1, 1200), (2, 1200)]), 64), 1, "one destination per run");
        assert_eq!(gso_run(&sized(&[(1, 1200), (1, 0)]), 64), 1, "an empty datagram is a send of its own");
        assert_eq!(gso_run(&sized(&[(1, 1400); 60]), 64), 42, "at most MAX_GSO_BYTES");
        assert_eq!(gso_run::<Vec<u8>>(&[], 64), 0);
    }

    /// Every datagram arrives whole, once and in order, whether it went out in a GSO run or
    /// alone, to two destinations interleaved.
    fn datagrams_arrive_as_sent(gso: bool) {
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let rx = [
            std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"),
            std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"),
        ];
        let mut sender = if gso { Sender::new(&tx) } else { Sender::with_gso(false) };
        assert_eq!(sender.gso(), gso, "this kernel offers UDP GSO");
        let plan = [(0, 1200), (0, 1200), (0, 1200), (0, 300), (1, 80), (0, 1200), (1, 1200), (1, 1200), (1, 1199)];
        let datagrams: Vec<(SocketAddr, Vec<u8>)> =
            plan.iter().enumerate().map(|(i, &(r, n))| (rx[r].local_addr().expect("addr"), vec![i as u8; n])).collect();
        sender.send_all(&tx, &datagrams);
        let runs = if gso { 4 } else { plan.len() as u64 };
        assert_eq!(sender.stats, SendStats { datagrams: plan.len() as u64, syscalls: runs, dropped: 0 });
        let mut buf = [0u8; 2048];
        for (r, socket) in rx.iter().enumerate() {
            socket.set_read_timeout(Some(std::time::Duration::from_secs(2))).expect("timeout");
            for (i, &(to, n)) in plan.iter().enumerate().filter(|(_, p)| p.0 == r) {
                let (len, from) = socket.recv_from(&mut buf).expect("datagram");
                assert_eq!((len, from), (n, tx.local_addr().expect("addr")), "datagram {i} to receiver {to}");
                assert!(buf[..len].iter().all(|&b| b == i as u8), "datagram {i} intact");
            }
        }
    }

    #[test]
    fn gso_runs_arrive_as_their_datagrams() {
        datagrams_arrive_as_sent(true);
    }

    #[test]
    fn without_gso_every_datagram_is_a_send() {
        datagrams_arrive_as_sent(false);
    }

    #[test]
    fn a_refused_datagram_is_counted_not_fatal() {
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut sender = Sender::new(&tx);
        // Too long for one UDP datagram: the kernel refuses it (EMSGSIZE).
        let datagrams = [(to(9), vec![0u8; 70_000])];
        sender.send_all(&tx, &datagrams);
        assert_eq!(sender.stats, SendStats { datagrams: 0, syscalls: 0, dropped: 1 });
    }
}
