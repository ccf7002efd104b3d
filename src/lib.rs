//! reel: a self-hosted, wire-compatible Kinesis Video Streams WebRTC server.
//!
//! Module map (one owner per concern; data flows one way):
//! - [`config`] / [`limits`]: every setting and every KVS quota, in one place.
//! - [`server`]: the one HTTP(S) listener that serves every API, and shutdown.
//! - [`auth`]: SigV4 verification and IAM-style policy evaluation.
//! - [`meta`]: durable metadata (channels, streams, tags, storage mappings).
//! - [`control`]: the KVS control-plane operations, one file per operation group.
//! - [`observe`]: metrics and the audit log.
//! - [`signaling`]: WebSocket signaling, the signaling HTTPS API and the STUN/TURN server.
//! - [`error`]: the KVS error shape every API answers with.
//! - [`testkit`]: fixture media and ffprobe/ffmpeg probing for tests, benches and tools.
#![forbid(unsafe_code)]

pub mod arn;
pub mod auth;
pub mod config;
pub mod control;
pub mod demo;
pub mod edge;
pub mod error;
pub mod limits;
pub mod meta;
pub mod observe;
pub mod peer;
pub mod playback;
pub mod server;
pub mod signaling;
pub mod state;
pub mod streaming;
pub mod testkit;
pub mod throttle;
pub mod tls;
