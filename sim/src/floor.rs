//! The physical-cost floor: receive, SRTP-decrypt and append, nothing else.
//!
//! What no ingest server can avoid for a WebRTC camera: take the packets off the socket
//! (batched `recvmmsg`), authenticate and decrypt them with the suite the camera
//! negotiated (SRTP AEAD-AES-GCM, RFC 7714, via aws-lc-rs as str0m uses; 256-bit keys by
//! default as str0m negotiates them, 128-bit on request), and append
//! the media payload to storage (one buffered file per session). reel's CPU per
//! session-second divided by the floor's says how far reel is above the physical cost.
//!
//! Not part of the floor: ICE, DTLS (a one-time handshake per session; the [`Sender`]
//! hands its session keys to the [`Receiver`] directly), RTCP, depacketization, muxing,
//! indexing. See `sim/BASELINE.md`.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use reel_sim::floor::{Receiver, Sender};
//! use std::time::Duration;
//! let mut rx = Receiver::bind("127.0.0.1:0".parse().unwrap(), "/tmp/floor")?;
//! let mut tx = Sender::new(rx.local_addr()?, 100, 1_000_000)?;
//! for keys in tx.keys() {
//!     rx.add_session(keys)?;
//! }
//! let rx = rx.spawn()?;
//! let sent = tx.run_for(Duration::from_secs(10))?;
//! std::thread::sleep(Duration::from_millis(100)); // let the last packets land
//! let report = rx.stop()?;
//! println!("{} / {} packets, {:?} cpu ms per session-second",
//!     report.packets, sent.packets, report.cpu_ms_per_session_second());
//! # Ok(()) }
//! ```

mod receiver;
mod sender;
pub mod srtp;

use std::collections::HashSet;
use std::io;
use std::path::Path;

pub use receiver::{FloorReport, Receiver, RunningReceiver, session_path};
pub use sender::{AUDIO_PAYLOAD, FPS, MAX_PACKET, MAX_PAYLOAD, Sender, SenderReport, payload_byte};
pub use srtp::SrtpSuite;

/// One session's SRTP parameters: its two SSRCs, the suite, and the session key and salt
/// (already derived, as after DTLS-SRTP + the RFC 3711 KDF). Both SSRCs share them, as in
/// a WebRTC session.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// SSRC of the H.264 stream (also names the session's output file).
    pub video_ssrc: u32,
    /// SSRC of the Opus stream.
    pub audio_ssrc: u32,
    /// The AEAD suite (decides the key length).
    pub suite: SrtpSuite,
    /// SRTP session encryption key ([`SrtpSuite::key_len`] bytes).
    pub key: Vec<u8>,
    /// SRTP session salt.
    pub salt: [u8; srtp::SALT_LEN],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("video_ssrc", &format_args!("{:08x}", self.video_ssrc))
            .field("audio_ssrc", &format_args!("{:08x}", self.audio_ssrc))
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// Fresh random keys for `suite` and two SSRCs not yet in `taken` (which records them).
    pub fn random(suite: SrtpSuite, taken: &mut HashSet<u32>) -> io::Result<SessionKeys> {
        let mut ssrc = || -> io::Result<u32> {
            loop {
                let mut b = [0u8; 4];
                fill_random(&mut b)?;
                let v = u32::from_be_bytes(b);
                if v != 0 && taken.insert(v) {
                    return Ok(v);
                }
            }
        };
        let (video_ssrc, audio_ssrc) = (ssrc()?, ssrc()?);
        let mut key = vec![0u8; suite.key_len()];
        let mut salt = [0u8; srtp::SALT_LEN];
        fill_random(&mut key)?;
        fill_random(&mut salt)?;
        Ok(SessionKeys { video_ssrc, audio_ssrc, suite, key, salt })
    }
}

/// Fill `buf` from the system CSPRNG (aws-lc-rs).
fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    aws_lc_rs::rand::fill(buf).map_err(|_| io::Error::other("aws-lc-rs random generator failed"))
}

/// Access-unit sizes of an Annex-B H.264 file split at its AUDs (`00 00 00 01 09`), e.g.
/// `fixtures/test-h264-baseline.h264`, for [`Sender::with_frame_sizes`].
pub fn fixture_frame_sizes(path: impl AsRef<Path>) -> io::Result<Vec<usize>> {
    let data = std::fs::read(path)?;
    Ok(split_access_units(&data).iter().map(|au| au.len()).collect())
}

/// Split an Annex-B stream at each access unit delimiter (`00 00 00 01 09`); each part
/// starts with its AUD. Bytes before the first AUD (if any) form the first part.
pub fn split_access_units(data: &[u8]) -> Vec<&[u8]> {
    const AUD: [u8; 5] = [0, 0, 0, 1, 9];
    let mut starts: Vec<usize> =
        data.windows(AUD.len()).enumerate().filter(|(_, w)| *w == AUD).map(|(i, _)| i).collect();
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| &data[s..starts.get(k + 1).copied().unwrap_or(data.len())])
        .filter(|p| !p.is_empty())
        .collect()
}
