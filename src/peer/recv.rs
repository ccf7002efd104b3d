//! Batched UDP receive for a media worker: `recvmmsg` into fixed slots, GRO-aware, with the
//! kernel's arrival time of every datagram.
//!
//! The arrival time is why this is not a plain `recvmmsg`: the worker rests between reads
//! (`recv_coalesce_ms`) so one wakeup serves many cameras, and a datagram can wait in the
//! socket for that long. str0m stamps RTP arrivals into TWCC feedback and jitter, which feed
//! the sender's bandwidth estimate, so they must be the time the datagram reached the host,
//! not the time the worker got round to it. `SO_TIMESTAMPNS` gives that time per datagram.

use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, setsockopt, sockopt};
use nix::sys::time::TimeSpec;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams (or GRO batches) taken per `recvmmsg` call at most.
pub const BATCH: usize = 32;
/// Largest UDP payload a receive slot holds without GRO.
const MAX_DATAGRAM: usize = 2048;
/// Largest batch the kernel coalesces with GRO (its 64 KiB cap on one aggregated datagram).
const MAX_GRO_BATCH: usize = 64 * 1024;
/// A kernel timestamp further in the past than this is not trusted (the wall clock stepped);
/// the read time is used instead.
const MAX_TIMESTAMP_AGE: Duration = Duration::from_secs(1);

/// What one receive slot holds after a call.
#[derive(Debug, Clone, Copy)]
struct Slot {
    source: SocketAddr,
    /// Bytes received (0 for a datagram dropped on receipt, see [`Receiver::recv`]).
    len: usize,
    /// Segment size when the kernel coalesced several datagrams (GRO); else `len`.
    stride: usize,
    arrived: Instant,
}

/// Batched receive on one socket; see the module docs.
pub struct Receiver {
    bufs: Vec<u8>,
    slot: usize,
    slots: Vec<Slot>,
}

impl Receiver {
    /// Prepares `socket`: kernel arrival timestamps on, and GRO where the kernel has it.
    pub fn new(socket: &UdpSocket) -> std::io::Result<Self> {
        setsockopt(socket.as_raw_fd(), sockopt::ReceiveTimestampns, &true).map_err(std::io::Error::from)?;
        let gro = setsockopt(socket.as_raw_fd(), sockopt::UdpGroSegment, &true).is_ok();
        let slot = if gro { MAX_GRO_BATCH } else { MAX_DATAGRAM };
        Ok(Self { bufs: vec![0; slot * BATCH], slot, slots: Vec::with_capacity(BATCH) })
    }

    /// One `recvmmsg` without waiting: the number of slots filled (`WouldBlock` when the
    /// socket is empty, which also clears its readiness).
    pub fn recv(&mut self, socket: &UdpSocket) -> std::io::Result<usize> {
        let Self { bufs, slot, slots } = self;
        socket.try_io(Interest::READABLE, || {
            // Fresh headers per call: the kernel shrinks each header's control length to what
            // it used, and nix 0.26 does not restore it, so reused headers would truncate the
            // next call's GRO segment size (a GRO batch would then look like one datagram).
            let mut headers =
                MultiHeaders::<SockaddrStorage>::preallocate(BATCH, Some(nix::cmsg_space!(TimeSpec, u16)));
            let iovs: Vec<[IoSliceMut<'_>; 1]> = bufs.chunks_mut(*slot).map(|b| [IoSliceMut::new(b)]).collect();
            let got = recvmmsg(socket.as_raw_fd(), &mut headers, iovs.iter(), MsgFlags::MSG_DONTWAIT, None)
                .map_err(std::io::Error::from)?;
            // One clock pair per call converts every kernel timestamp of the batch.
            let (now, wall) = (Instant::now(), SystemTime::now());
            slots.clear();
            for msg in got {
                // Without its source, or with its control messages cut (its GRO segment size
                // unknown), a datagram can be neither demuxed nor split: it is dropped here.
                let whole = !msg.flags.contains(MsgFlags::MSG_CTRUNC);
                let (source, len) = match msg.address.and_then(socket_addr) {
                    Some(a) if whole => (a, msg.bytes),
                    _ => (SocketAddr::from(([0, 0, 0, 0], 0)), 0),
                };
                let mut s = Slot { source, len, stride: 0, arrived: now };
                for c in msg.cmsgs() {
                    match c {
                        ControlMessageOwned::ScmTimestampns(ts) => s.arrived = arrival(ts, now, wall),
                        ControlMessageOwned::UdpGroSegments(size) => s.stride = usize::from(size),
                        _ => {}
                    }
                }
                if s.stride == 0 {
                    s.stride = s.len;
                }
                slots.push(s);
            }
            Ok(slots.len())
        })
    }

    /// The datagrams of slot `i` (several when the kernel coalesced them with GRO), each
    /// with its source and arrival time.
    pub fn datagrams(&self, i: usize) -> impl Iterator<Item = (Instant, SocketAddr, &[u8])> {
        let filled = self.bufs.get(i * self.slot..).unwrap_or_default();
        self.slots.get(i).copied().into_iter().flat_map(move |s| {
            let data = filled.get(..s.len.min(self.slot)).unwrap_or_default();
            data.chunks(s.stride.max(1)).map(move |d| (s.arrived, s.source, d))
        })
    }
}

fn socket_addr(a: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// The `Instant` of a kernel (wall clock) timestamp, given one simultaneous reading of both
/// clocks; the read time when the timestamp is in the future or implausibly old.
fn arrival(ts: TimeSpec, now: Instant, wall: SystemTime) -> Instant {
    let stamped = UNIX_EPOCH + Duration::new(ts.tv_sec().max(0) as u64, ts.tv_nsec().clamp(0, 999_999_999) as u32);
    match wall.duration_since(stamped) {
        Ok(age) if age <= MAX_TIMESTAMP_AGE => now.checked_sub(age).unwrap_or(now),
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batched_reads_return_every_datagram_with_its_source_and_arrival() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let to = socket.local_addr().expect("addr");
        let mut recv = Receiver::new(&socket).expect("receiver");
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a");
        wait_for_kernel_timestamps(&socket, &mut recv, &a).await;
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind b");
        // More than one recvmmsg batch, from two sources, same-size runs (GRO candidates)
        // and odd sizes.
        let before = Instant::now();
        let mut sent = Vec::new();
        for i in 0..(2 * BATCH as u8 + 5) {
            let (from, len) = if i % 3 == 0 { (&b, 100 + usize::from(i)) } else { (&a, 1200) };
            let data = vec![i; len];
            from.send_to(&data, to).expect("send");
            sent.push((from.local_addr().expect("addr"), data));
        }
        let after_send = Instant::now();
        // Datagrams wait in the socket; their arrival times must not be the read time.
        std::thread::sleep(Duration::from_millis(50));
        let mut got = Vec::new();
        for (at, src, d) in read_n(&socket, &mut recv, sent.len()).await {
            // The two clocks are paired by reading both, a few µs apart: a small slack, far
            // below the 50 ms the datagrams waited.
            let slack = Duration::from_millis(5);
            assert!(
                at + slack >= before && at <= after_send + slack,
                "arrival {at:?} outside the send window {before:?}..{after_send:?}"
            );
            got.push((src, d));
        }
        got.sort();
        sent.sort();
        assert_eq!(got, sent);
    }

    /// Reads until `n` datagrams came (at most 5 s): arrival, source and bytes of each.
    async fn read_n(socket: &UdpSocket, recv: &mut Receiver, n: usize) -> Vec<(Instant, SocketAddr, Vec<u8>)> {
        let mut got = Vec::new();
        let read_all = async {
            while got.len() < n {
                socket.readable().await.expect("readable");
                match recv.recv(socket) {
                    Ok(filled) => {
                        for i in 0..filled {
                            got.extend(recv.datagrams(i).map(|(at, src, d)| (at, src, d.to_vec())));
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("recv: {e}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), read_all).await.expect("every datagram arrives");
        got
    }

    /// Linux turns receive timestamping on system-wide through deferred work, so right after
    /// the first socket asks for it a datagram can still be stamped when it is read. Waits
    /// until a datagram that waited 20 ms in the socket carries its arrival time.
    async fn wait_for_kernel_timestamps(socket: &UdpSocket, recv: &mut Receiver, from: &std::net::UdpSocket) {
        let to = socket.local_addr().expect("addr");
        for _ in 0..100 {
            let sent = Instant::now();
            from.send_to(b"probe", to).expect("send probe");
            std::thread::sleep(Duration::from_millis(20));
            socket.readable().await.expect("readable");
            let Ok(filled) = recv.recv(socket) else { continue };
            let stamped =
                (0..filled).flat_map(|i| recv.datagrams(i)).any(|(at, _, _)| at < sent + Duration::from_millis(10));
            if stamped {
                return;
            }
        }
        panic!("the kernel never stamped a datagram with its arrival time (SO_TIMESTAMPNS)");
    }

    /// A sender with segmentation offload (reel-load's publisher, or any GSO peer) hands the
    /// kernel one buffer of equal-sized datagrams; with GRO they may reach us as one slot.
    #[tokio::test]
    async fn gso_batches_come_back_as_their_datagrams() {
        use nix::sys::socket::{ControlMessage, sendmsg};
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let to = socket.local_addr().expect("addr");
        let mut recv = Receiver::new(&socket).expect("receiver");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind tx");
        let from = tx.local_addr().expect("addr");
        // A plain datagram first: the headers of that call must not shrink the next one's.
        tx.send_to(b"plain", to).expect("send");
        let first: Vec<Vec<u8>> = read_n(&socket, &mut recv, 1).await.into_iter().map(|(_, _, d)| d).collect();
        assert_eq!(first, vec![b"plain".to_vec()]);
        let mut sent = Vec::new();
        let mut batch = Vec::new();
        for i in 0..5u8 {
            let len = if i == 4 { 300 } else { 1200 };
            let d = vec![i; len];
            batch.extend_from_slice(&d);
            sent.push((from, d));
        }
        let dest = SockaddrStorage::from(to);
        let seg: u16 = 1200;
        let iov = [std::io::IoSlice::new(&batch)];
        sendmsg(tx.as_raw_fd(), &iov, &[ControlMessage::UdpGsoSegments(&seg)], MsgFlags::empty(), Some(&dest))
            .expect("gso send");
        let got: Vec<(SocketAddr, Vec<u8>)> =
            read_n(&socket, &mut recv, sent.len()).await.into_iter().map(|(_, src, d)| (src, d)).collect();
        assert_eq!(got, sent);
    }

    #[test]
    fn implausible_timestamps_fall_back_to_the_read_time() {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let unix = wall.duration_since(UNIX_EPOCH).expect("after 1970");
        let at = |d: Duration| TimeSpec::from_duration(d);
        assert_eq!(arrival(at(unix + Duration::from_secs(5)), now, wall), now, "future");
        assert_eq!(arrival(at(unix - Duration::from_secs(30)), now, wall), now, "stepped clock");
        assert_eq!(arrival(at(unix - Duration::from_millis(7)), now, wall), now - Duration::from_millis(7));
    }
}
