//! reel-sim: simulated KVS camera masters and the tools that measure reel with them.
//!
//! - [`publisher`]: one simulated camera (str0m) publishing the fixture H.264 + Opus in real time.
//! - [`floor`]: the physical-cost floor receiver (batched receive, SRTP decrypt, append).
//! - [`janus`]: the Janus VideoRoom recorder baseline, driven through its HTTP API.

pub mod floor;
pub mod janus;
pub mod publisher;
