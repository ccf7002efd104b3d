//! reel: a self-hosted, wire-compatible Kinesis Video Streams WebRTC server.
//!
//! Module map, bottom layer first: the intended layering, where a module uses only those
//! listed before it (one exception remains: the operation areas take the shared
//! [`state::AppState`], which is built from them; see ARCHITECTURE.md). The media path is the
//! separate `reel-media` crate, the store `reel-storage`.
//! - Foundations: [`config`] / [`limits`] (every setting and KVS quota), [`arn`], [`error`]
//!   (the KVS error shape), [`throttle`] (request-rate token buckets), [`tls`].
//! - Services the API stands on: [`auth`] (SigV4 and IAM-style policies), [`meta`] (durable
//!   metadata: channels, streams, tags, storage mappings), [`observe`] (metrics, audit log).
//! - Operation areas, one per KVS service: [`control`] (control plane), [`signaling`]
//!   (WebSocket signaling, its HTTPS API, STUN/TURN), [`peer`] (JoinStorageSession and the
//!   server-side media peer), [`playback`] (GetMedia, ListFragments,
//!   GetMediaForFragmentList), [`streaming`] (HLS, DASH, GetClip, `/viewer`).
//! - Top: [`edge`] (what every request passes through), [`state`] (the shared handler
//!   state and its builder), [`server`] (the one listener, startup and shutdown), [`demo`]
//!   (`reel demo`).
//! - [`testkit`]: fixture fragments and ffprobe/ffmpeg probing for tests, benches and tools.
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
