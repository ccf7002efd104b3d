//! The floor of forwarding to live viewers on this machine: what the least a forwarder
//! could do per viewer costs, to set reel's CPU per forwarded viewer-second against.
//!
//! Per datagram and viewer, the least an SFU must do: copy the master's RTP packet, rewrite
//! its SSRC and sequence number, seal it with the viewer's SRTP key (AES-128-GCM, RFC 7714,
//! aws-lc-rs) and hand it to the kernel — here on loopback to a socket drained by another
//! thread, as reel-load's viewers sit on the same host: the kernel's receive work for the
//! viewer's socket runs in the sender's context on loopback and is counted, as it is in
//! reel's figure. A 1 Mbps camera's second of media (30 video frames of 4 full packets and
//! a short one, 50 Opus packets: ≈ 200 datagrams) is sent to each viewer, once datagram by
//! datagram and once with a frame's packets as one GSO send (`reel::peer::send::Sender`).
//! Nothing else: no str0m, no RTCP, no NACK buffer, no pacing, no wakeups.
//!
//! `cargo bench --bench forward_floor` prints µs per datagram and ms per viewer-second
//! (thread CPU time of the sending thread).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reel::peer::send::Sender;
use reel_sim::floor::srtp::{SrtpAead, SrtpSuite};

/// Viewers each datagram is forwarded to.
const VIEWERS: usize = 3;
/// Seconds of camera media forwarded per measurement.
const SECONDS: usize = 20;
/// Repetitions (the best is reported: the VM's speed drifts).
const ROUNDS: usize = 5;

/// One camera-second: (frame, datagram sizes) — 30 video frames of 4 × 1,200 B + 400 B,
/// 50 Opus packets of 120 B, interleaved as a camera sends them.
fn camera_second() -> Vec<Vec<usize>> {
    let mut frames = Vec::new();
    for i in 0..50 {
        frames.push(vec![120]);
        if i % 5 < 3 {
            frames.push(vec![1200, 1200, 1200, 1200, 400]);
        }
    }
    frames
}

/// A plain RTP packet of `len` bytes (12-byte header; sequence and SSRC are set per viewer).
fn rtp(len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x80;
    p[1] = 96;
    p
}

/// The sending thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Forwards `SECONDS` camera-seconds to `viewers`; returns (CPU, datagrams).
fn forward(tx: &UdpSocket, viewers: &[SocketAddr], keys: &[SrtpAead], gso: bool) -> (Duration, u64) {
    let mut sender = if gso { Sender::new(tx) } else { Sender::with_gso(false) };
    let masters: Vec<Vec<Vec<u8>>> = camera_second().iter().map(|f| f.iter().map(|&n| rtp(n)).collect()).collect();
    let mut seq = vec![0u16; viewers.len()];
    let mut out: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    let start = thread_cpu();
    for _ in 0..SECONDS {
        for frame in &masters {
            for (v, (addr, key)) in viewers.iter().zip(keys).enumerate() {
                for packet in frame {
                    let mut p = packet.clone();
                    p[2..4].copy_from_slice(&seq[v].to_be_bytes());
                    p[8..12].copy_from_slice(&(0x1000 + v as u32).to_be_bytes());
                    seq[v] = seq[v].wrapping_add(1);
                    key.protect(0, &mut p).expect("seal");
                    out.push((*addr, p));
                }
            }
            sender.send_all(tx, &out);
            out.clear();
            // A frame's worth of real time is not waited for: CPU is what is measured.
        }
    }
    (thread_cpu() - start, sender.stats.datagrams)
}

fn main() {
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let stop = Arc::new(AtomicBool::new(false));
    let mut addrs = Vec::new();
    let mut drains = Vec::new();
    for _ in 0..VIEWERS {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
        addrs.push(rx.local_addr().expect("addr"));
        let stop = stop.clone();
        drains.push(std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let _ = rx.recv_from(&mut buf);
            }
        }));
    }
    let keys: Vec<SrtpAead> =
        (0..VIEWERS).map(|v| SrtpAead::new(SrtpSuite::AeadAes128Gcm, &[v as u8; 16], &[7; 12]).expect("key")).collect();
    let per_second: usize = camera_second().iter().map(Vec::len).sum();
    for gso in [false, true] {
        let mut best: Option<(Duration, u64)> = None;
        for _ in 0..ROUNDS {
            let r = forward(&tx, &addrs, &keys, gso);
            if best.is_none_or(|b| r.0 < b.0) {
                best = Some(r);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let Some((cpu, datagrams)) = best else { continue };
        let us = cpu.as_secs_f64() * 1e6 / datagrams.max(1) as f64;
        println!(
            "forward floor, {}: {datagrams} datagrams to {VIEWERS} viewers in {:.1} ms CPU: {us:.2} µs per datagram, \
             {:.3} ms per viewer-second at {per_second} datagrams/s",
            if gso { "a frame per GSO send" } else { "one send per datagram" },
            cpu.as_secs_f64() * 1e3,
            us * per_second as f64 / 1e3,
        );
    }
    stop.store(true, Ordering::Relaxed);
    for d in drains {
        let _ = d.join();
    }
}
