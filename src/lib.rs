//! reel: a self-hosted, wire-compatible Kinesis Video Streams WebRTC server.
//!
//! Module map, bottom layer first: a module uses only those listed before it (see
//! ARCHITECTURE.md). The media path is the separate `reel-media` crate, the store
//! `reel-storage`.
//! - Foundations: [`config`] / [`limits`] (every setting and KVS quota), [`arn`], [`error`]
//!   (the KVS error shape), [`rate`] (the token bucket), [`throttle`] (request-rate quotas),
//!   [`tls`], [`private_fs`] (owner-only files and directories for secrets).
//! - Services the API stands on: [`auth`] (SigV4 and IAM-style policies), [`meta`] (durable
//!   metadata: channels, streams, tags, storage mappings), [`observe`] (metrics, audit log).
//! - [`api`]: the toolkit every operation uses ([`api::Core`], the request edge, body
//!   parsing, validation, pagination, resource resolution, error mapping, stream reading).
//! - Operation areas, one per KVS service: [`control`] (control plane), [`signaling`]
//!   (WebSocket signaling, its HTTPS API, STUN/TURN), [`peer`] (JoinStorageSession and the
//!   server-side media peer), [`playback`] (GetMedia, ListFragments,
//!   GetMediaForFragmentList), [`streaming`] (HLS, DASH, GetClip, `/viewer`).
//! - Top: [`server`] (the shared state and its builder, the router, the one listener,
//!   startup and shutdown), [`console`] (the browser console's static files, at `/`),
//!   `demo` (`reel demo`, feature `demo`).
//! - `testkit` (tests and feature `testkit` only): fixture fragments, an in-process server
//!   config and ffprobe/ffmpeg probing for tests, benches and tools.
#![forbid(unsafe_code)]

pub mod api;
pub mod arn;
pub mod auth;
pub mod config;
pub mod console;
pub mod control;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz_api;
pub mod limits;
pub mod members;
pub mod meta;
pub mod observe;
pub mod peer;
pub mod playback;
pub mod private_fs;
pub mod put_media;
pub mod rate;
pub mod server;
pub mod signaling;
pub mod streaming;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod throttle;
pub mod tls;
