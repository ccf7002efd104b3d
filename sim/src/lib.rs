//! reel-sim: simulated KVS camera masters and the tools that measure reel with them.
//!
//! - [`publisher`]: one simulated camera (str0m) publishing the fixture H.264 + Opus in real
//!   time, as a KVS storage master ([`publisher::run_camera`]) or as an offerer (recorders).
//! - [`kvs`], [`signaling`], [`sigv4`]: the light KVS client a camera needs (no AWS SDK).
//! - [`netns`]: the private network namespace the WebRTC tests and `reel-load` run in.
//! - [`load`]: the `reel-load` generator (sessions, ramp, measurements, report).
//! - [`floor`]: the physical-cost floor receiver (batched receive, SRTP decrypt, append).
//! - [`janus`]: the Janus VideoRoom recorder baseline, driven through its HTTP API.
//! - [`put_media`]: a simulated PutMedia producer (the KVS C producer's Matroska, in real
//!   time), for `reel-put-media-load`.
//! - [`viewer`]: one simulated live viewer of a storage session (JoinStorageSessionAsViewer).

pub mod floor;
pub mod janus;
pub mod kvs;
pub mod launcher;
pub mod load;
pub mod netns;
pub mod pg;
pub mod publisher;
pub mod put_media;
pub mod signaling;
pub mod sigv4;
pub mod viewer;
