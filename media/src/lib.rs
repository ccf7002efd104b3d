//! reel-media: the sans-IO media path of reel — depacketized WebRTC frames in, MKV fragments
//! out, and stored fragments back out as the containers players need.
//!
//! Data flows one way through small modules, each with one job:
//! - [`rtp_rx`]: received RTP packets → frames: the reorder buffer (loss, retransmissions,
//!   jumps) and the H.264 (RFC 6184) and Opus depacketizers, with bounded state.
//! - [`h264`]: Annex-B access units → NAL units, parameter sets (SPS/PPS), the AVCC
//!   `AVCDecoderConfigurationRecord`, and length-prefixed sample data.
//! - [`opus`]: the `OpusHead` codec private and packet durations from the TOC byte.
//! - [`hevc`]: the H.265 `HEVCDecoderConfigurationRecord` (hvcC) codec private of PutMedia
//!   producers: its codec string and picture size.
//! - [`aac`]: the AAC `AudioSpecificConfig` codec private (of PutMedia producers) and the
//!   ADTS headers MPEG-TS needs.
//! - [`mkv`]: a minimal EBML/Matroska writer (track header, SimpleBlocks, whole KVS-style
//!   fragment documents) and a reader that turns them back into typed tracks and frames.
//! - [`timing`]: the one timing model (RTP media time, producer time from RTCP sender
//!   reports, server time from arrival).
//! - [`fragmenter`]: the state machine that cuts keyframe-aligned fragments and asks for
//!   keyframes.
//! - [`source`]: a stored fragment's bytes → tracks and timed samples for players.
//! - [`fmp4`] / [`ts`]: fragmented-MP4 (init and media segments) and MPEG-TS segments.
//! - [`fixture`] (feature `fixture`): the repository's H.264/Opus fixture files run through
//!   the fragmenter, for tests and tools that need real stored media.
//!
//! Nothing here touches a socket, a file or a clock: bytes and times are passed in, events are
//! polled out, so every module is unit-tested and every parser is fuzzed (`fuzz/`).

#![forbid(unsafe_code)]

pub mod aac;
pub mod bits;
#[cfg(any(test, feature = "fixture"))]
pub mod fixture;
pub mod fmp4;
pub mod fragmenter;
pub mod h264;
pub mod hevc;
pub mod mkv;
pub mod opus;
pub mod rtp_rx;
pub mod source;
pub mod timing;
pub mod ts;
