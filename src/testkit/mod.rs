//! Helpers shared by reel's tests, benches and tools (not used by the server itself): the
//! configuration of an in-process server, the repository's fixture media as stored
//! fragments, appending them to a store the way the media peer does, and [`probe`], the one
//! wrapper around `ffprobe`/`ffmpeg`/`mkvinfo`.
//!
//! Unit tests inside the crate and the integration tests in `tests/` both reach it as
//! `reel::testkit` (`crate::testkit`), so each helper exists once.

pub mod postgres;
pub mod probe;

use std::path::{Path, PathBuf};

use reel_storage::{FragmentInfo, FragmentStart, StoreError};

use crate::config::{Config, ConfigError, ServeArgs};
use reel_media::fixture::{self, FixtureFragment};

/// Annex-B H.264 fixture (640x360, 30 fps, 6 s, access unit delimiters).
pub const VIDEO_FIXTURE: &str = "test-h264-baseline.h264";
/// Opus fixture (48 kHz stereo, 20 ms packets, 4-byte length prefixes).
pub const AUDIO_FIXTURE: &str = "test-opus.packets";
/// H.264 + AAC fixture: 4 s of Matroska as a KVS producer sends it (`A_AAC`, AAC LC
/// 44.1 kHz stereo).
pub const AAC_FIXTURE: &str = "ffmpeg-h264-aac.mkv";
/// An ffmpeg-muxed H.265 Matroska file (`V_MPEGH/ISO/HEVC`, libx265 Main, 320×240 at 30 fps,
/// 4 s, a keyframe every second), as H.265 cameras upload it.
pub const HEVC_FIXTURE: &str = "ffmpeg-h265.mkv";

/// The configuration of an in-process test server (`crate::server::spawn`): listening on
/// 127.0.0.1:0, data in `data_dir`, every other setting at its default.
pub fn loopback_config(data_dir: &Path) -> Result<Config, ConfigError> {
    Config::resolve(ServeArgs {
        listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        data_dir: Some(data_dir.to_path_buf()),
        ..Default::default()
    })
}

/// Path of `fixtures/<name>` in this repository.
pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// The fixture media (6 s of H.264 + Opus) through the real fragmenter as three 2 s
/// fragments whose first frame arrives at `start_unix_us`.
pub fn fixture_fragments(start_unix_us: i64) -> std::io::Result<Vec<FixtureFragment>> {
    let video = std::fs::read(fixture_path(VIDEO_FIXTURE))?;
    let audio = std::fs::read(fixture_path(AUDIO_FIXTURE))?;
    fixture::fragments(&video, &audio, start_unix_us).map_err(std::io::Error::other)
}

/// The H.264 + AAC fixture ([`AAC_FIXTURE`]) as two stored 2 s fragments, the first
/// starting at `start_unix_ms` ([`reel_media::fixture::from_document`]).
pub fn aac_fixture_fragments(start_unix_ms: u64) -> std::io::Result<Vec<FixtureFragment>> {
    let data = std::fs::read(fixture_path(AAC_FIXTURE))?;
    fixture::from_document(&data, start_unix_ms).map_err(std::io::Error::other)
}

/// The H.265 fixture ([`HEVC_FIXTURE`]) as two stored 2 s fragments, the first starting at
/// `start_unix_ms` ([`reel_media::fixture::from_document`]).
pub fn hevc_fixture_fragments(start_unix_ms: u64) -> std::io::Result<Vec<FixtureFragment>> {
    let data = std::fs::read(fixture_path(HEVC_FIXTURE))?;
    fixture::from_document(&data, start_unix_ms).map_err(std::io::Error::other)
}

/// Writes one fragment to `stream` the way the media peer does (begin, chunks, finish);
/// resolves once it is persisted.
pub async fn append(stream: &reel_storage::Stream, f: &FixtureFragment) -> Result<FragmentInfo, StoreError> {
    let mut w = stream
        .begin_fragment(FragmentStart {
            producer_ts_ms: f.producer_ts_ms,
            server_ts_ms: f.server_ts_ms,
            header: f.header.clone(),
        })
        .await?;
    for (end_ms, chunk) in &f.chunks {
        w.append_chunk(*end_ms, chunk.clone()).await?;
    }
    w.finish(f.duration_ms).await
}
