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
/// Prometheus counter: datagrams the media sockets handed to the kernel.
pub const SENT_DATAGRAMS: &str = "reel_webrtc_sent_datagrams_total";
/// Prometheus counter: `sendmsg` calls that carried them (datagrams per call shows how
/// much GSO groups).
pub const SEND_CALLS: &str = "reel_webrtc_send_calls_total";

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
        let before = self.stats;
        self.send_runs(socket, datagrams);
        metrics::counter!(SENT_DATAGRAMS).increment(self.stats.datagrams - before.datagrams);
        metrics::counter!(SEND_CALLS).increment(self.stats.syscalls - before.syscalls);
    }

    fn send_runs<B: AsRef<[u8]>>(&mut self, socket: &impl AsRawFd, datagrams: &[(SocketAddr, B)]) {
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

/// Reorders a pass's datagrams so each destination's RTP streams lie one after the other:
/// a viewer's video packets of one pass form one GSO run instead of being split by the audio
/// packet str0m's round-robin queue put between them. Order is kept within each (destination,
/// SSRC) and among each destination's other datagrams (RTCP, DTLS, STUN), the only orders a
/// receiver relies on; RTP streams are independent of each other.
pub fn group_streams<B: AsRef<[u8]>>(datagrams: &mut [(SocketAddr, B)]) {
    if datagrams.len() > 2 {
        datagrams.sort_by_key(|(destination, d)| (*destination, rtp_ssrc(d.as_ref())));
    }
}

/// The SSRC of an RTP packet (SRTP leaves the header in the clear), or 0 for anything else:
/// RTCP (payload types 192–223 by RFC 5761's demultiplexing), DTLS and STUN.
fn rtp_ssrc(d: &[u8]) -> u64 {
    match d {
        [first, second, _, _, _, _, _, _, a, b, c, e, ..] if first >> 6 == 2 && !(192..=223).contains(second) => {
            1 + u64::from(u32::from_be_bytes([*a, *b, *c, *e]))
        }
        _ => 0,
    }
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

    fn rtp(ssrc: u32, seq: u16, len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x80;
        p[1] = 96;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p
    }

    #[test]
    fn grouping_keeps_each_streams_order_and_makes_runs() {
        let (video, audio) = (0x1111_u32, 0x2222_u32);
        let mut rtcp = vec![0x80, 200, 0, 6];
        rtcp.extend([0u8; 24]);
        let dtls = vec![23u8, 0xfe, 0xfd, 0, 1];
        let mut out = vec![
            (to(1), rtp(video, 1, 1200)),
            (to(1), rtp(audio, 7, 120)),
            (to(2), rtp(video, 1, 1200)),
            (to(1), rtcp.clone()),
            (to(1), rtp(video, 2, 1200)),
            (to(1), rtp(video, 3, 400)),
            (to(1), dtls.clone()),
            (to(1), rtp(audio, 8, 120)),
        ];
        let runs = |q: &[(SocketAddr, Vec<u8>)]| {
            let (mut at, mut n) = (0, 0);
            while at < q.len() {
                at += gso_run(&q[at..], 64);
                n += 1;
            }
            n
        };
        // A shorter datagram may end a run: {v1, a7}, {v1 to 2}, {RTCP}, {v2, v3}, {DTLS}, {a8}.
        assert_eq!(runs(&out), 6);
        group_streams(&mut out);
        // Per destination: non-RTP first in their order, then each SSRC's packets in order.
        let seqs: Vec<(u16, u32, u16)> = out
            .iter()
            .map(|(d, p)| {
                (d.port(), rtp_ssrc(p) as u32, if rtp_ssrc(p) > 0 { u16::from_be_bytes([p[2], p[3]]) } else { 0 })
            })
            .collect();
        assert_eq!(out[0].1, rtcp);
        assert_eq!(out[1].1, dtls);
        assert_eq!(
            seqs[2..],
            [
                (1, video + 1, 1),
                (1, video + 1, 2),
                (1, video + 1, 3),
                (1, audio + 1, 7),
                (1, audio + 1, 8),
                (2, video + 1, 1)
            ]
        );
        assert_eq!(runs(&out), 4, "{{RTCP, DTLS}}, the video frame, the audio, the other viewer");
        let mut two = vec![(to(1), rtp(video, 2, 1200)), (to(1), rtp(video, 1, 1200))];
        group_streams(&mut two);
        assert_eq!(two[0].1, rtp(video, 2, 1200), "two datagrams are left as they are");
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
