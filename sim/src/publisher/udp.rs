//! A publisher's UDP socket with a batched send path: the datagrams str0m hands out in one
//! drain are queued and leave together, a run of equal-sized datagrams to one destination
//! (a video frame's RTP packets: all full but the last) as one `sendmsg` with UDP
//! segmentation offload (GSO, via [`quinn_udp`]). That is one syscall and one trip through
//! the IP stack per frame instead of one per packet; the receiver sees the same datagrams.
//! The socket is non-blocking and registered with an engine thread's poller (see
//! [`super::engine`]).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use mio::net::UdpSocket;
use quinn_udp::{Transmit, UdpSocketState};

/// Most bytes one GSO send carries (the UDP length field's limit, with room for headers).
const MAX_GSO_BYTES: usize = 60_000;

/// What one [`PeerSocket::flush`] sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Datagrams sent.
    pub packets: u64,
    /// Bytes of those datagrams.
    pub bytes: u64,
    /// Datagrams the socket refused.
    pub errors: u64,
}

/// One publisher's socket and its queue of datagrams to send.
pub struct PeerSocket {
    socket: UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
    /// Queued datagrams, back to back.
    out: Vec<u8>,
    /// (destination, length) of each queued datagram, in order.
    lens: Vec<(SocketAddr, usize)>,
    /// Queued datagrams already sent (all sent: the queue is emptied).
    sent: usize,
    /// Bytes of `out` already sent.
    sent_bytes: usize,
    /// Runs go out as one GSO send each (off: one send per packet).
    gso: bool,
}

impl PeerSocket {
    /// Binds `ip` (port 0), non-blocking; with `gso`, a run of datagrams to one destination
    /// goes out in one send where the kernel has GSO, otherwise each datagram is a send of
    /// its own (as a camera sends).
    pub fn bind(ip: IpAddr, gso: bool) -> io::Result<Self> {
        let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
        socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket);
        let local = socket.local_addr()?;
        let state = UdpSocketState::new((&socket).into())?;
        // quinn_udp turns receive coalescing (GRO) on; datagrams are read one by one here.
        disable_gro(&socket);
        Ok(Self { socket, state, local, out: Vec::new(), lens: Vec::new(), sent: 0, sent_bytes: 0, gso })
    }

    /// The socket, to register with a poller.
    pub fn source(&mut self) -> &mut UdpSocket {
        &mut self.socket
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Queues a datagram for the next [`PeerSocket::flush`].
    pub fn queue(&mut self, destination: SocketAddr, contents: &[u8]) {
        self.out.extend_from_slice(contents);
        self.lens.push((destination, contents.len()));
    }

    /// Sends the queued datagrams in order. When the socket buffer is full the rest stays
    /// queued (the next flush sends it first), as a blocking send would have waited.
    pub fn flush(&mut self) -> io::Result<Flushed> {
        let mut done = Flushed::default();
        while self.sent < self.lens.len() {
            // quinn_udp lowers its limit to 1 once a device refuses GSO: read it each time.
            let max_segments = if self.gso { self.state.max_gso_segments() } else { 1 };
            let (n, bytes) = gso_run(&self.lens[self.sent..], max_segments);
            let (destination, segment) = self.lens[self.sent];
            let at = self.sent_bytes;
            let segment_size = (n > 1).then_some(segment);
            match self.send(destination, &self.out[at..at + bytes], segment_size) {
                Ok(()) => {
                    done.packets += n as u64;
                    done.bytes += bytes as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(done),
                // GSO refused (a device without it): the same datagrams one by one.
                Err(_) if n > 1 => {
                    let mut off = at;
                    for k in 0..n {
                        let (destination, len) = self.lens[self.sent + k];
                        match self.send(destination, &self.out[off..off + len], None) {
                            Ok(()) => {
                                done.packets += 1;
                                done.bytes += len as u64;
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                self.sent += k;
                                self.sent_bytes = off;
                                return Ok(done);
                            }
                            Err(_) => done.errors += 1,
                        }
                        off += len;
                    }
                }
                // A refused datagram is lost like on a network; counted apart.
                Err(_) => done.errors += 1,
            }
            self.sent += n;
            self.sent_bytes += bytes;
        }
        self.out.clear();
        self.lens.clear();
        (self.sent, self.sent_bytes) = (0, 0);
        Ok(done)
    }

    /// One `sendmsg`.
    fn send(&self, destination: SocketAddr, contents: &[u8], segment_size: Option<usize>) -> io::Result<()> {
        let transmit = Transmit { destination, ecn: None, contents, segment_size, src_ip: None };
        self.state.try_send((&self.socket).into(), &transmit)
    }

    /// Reads one datagram without waiting (`WouldBlock` when none is queued).
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf)
    }
}

/// How many of `queued`'s leading datagrams one GSO send can carry, and their bytes: a run
/// to the first one's destination, all of its size but possibly a shorter last one.
fn gso_run(queued: &[(SocketAddr, usize)], max_segments: usize) -> (usize, usize) {
    let Some(&(destination, size)) = queued.first() else { return (0, 0) };
    let (mut n, mut bytes) = (1, size);
    for &(d, len) in &queued[1..] {
        if d != destination || len > size || n >= max_segments || bytes + len > MAX_GSO_BYTES || size == 0 {
            break;
        }
        n += 1;
        bytes += len;
        if len < size {
            break; // a short datagram ends the run
        }
    }
    (n, bytes)
}

/// Turns UDP receive coalescing off (best effort: where it is off already, nothing changes).
fn disable_gro(socket: &UdpSocket) {
    let off: libc::c_int = 0;
    // SAFETY: a valid socket fd, and a c_int option value whose size is passed along.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&raw const off).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_run_is_equal_sizes_to_one_destination_with_a_shorter_tail() {
        let q = [(to(1), 1200), (to(1), 1200), (to(1), 700), (to(1), 1200)];
        assert_eq!(gso_run(&q, 64), (3, 3100));
        assert_eq!(gso_run(&q[2..], 64), (1, 700), "a longer datagram starts a new run");
        assert_eq!(gso_run(&q, 2), (2, 2400), "at most the kernel's segment count");
        let mixed = [(to(1), 1200), (to(2), 1200)];
        assert_eq!(gso_run(&mixed, 64), (1, 1200), "one destination per run");
        assert_eq!(gso_run(&[], 64), (0, 0));
    }

    #[test]
    fn queued_datagrams_arrive_one_by_one_and_in_order() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut tx = PeerSocket::bind(ip, true).unwrap();
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sizes = [1200, 1200, 1200, 300, 80, 1200, 1200];
        for (i, &n) in sizes.iter().enumerate() {
            tx.queue(rx.local_addr().unwrap(), &vec![i as u8; n]);
        }
        let sent = tx.flush().unwrap();
        assert_eq!(sent, Flushed { packets: 7, bytes: sizes.iter().sum::<usize>() as u64, errors: 0 });
        let mut buf = [0u8; 4096];
        for (i, &n) in sizes.iter().enumerate() {
            let (len, from) = rx.recv_from(&mut buf).unwrap();
            assert_eq!((len, from), (n, tx.local_addr()));
            assert!(buf[..len].iter().all(|&b| b == i as u8));
        }
    }
}
