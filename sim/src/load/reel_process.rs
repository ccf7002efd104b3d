//! Starting a `reel serve` child for a load run: a temporary data directory, the load
//! generator's key as root key, quotas raised to the session count, and the
//! `reel listening on <url>` line parsed from its stdout ([`crate::launcher`]).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::launcher::ReelProcess;
pub use crate::launcher::SpawnError;

/// Storage-enabled channels allowed beyond the session count (reel's default is 100).
const CHANNEL_HEADROOM: usize = 16;

/// A running `reel serve` for a load run; stopped and its data removed on drop.
#[derive(Debug)]
pub struct SpawnedReel {
    process: ReelProcess,
    /// Base URL from its listening line.
    pub url: String,
    /// Its process id.
    pub pid: u32,
    // Dropped after `process`, so reel has stopped before its data directory goes.
    _dir: tempfile::TempDir,
}

impl SpawnedReel {
    /// Starts `bin serve --listen <ip>:0` with a fresh data directory, `key` as root key and
    /// `[limits] max_storage_enabled_channels = sessions + 16`, then `extra_config`, then
    /// `[limits.http]` room for every session's connections from one IP; `/metrics` open.
    pub fn start(
        bin: &Path,
        ip: IpAddr,
        extra_config: &str,
        key: (&str, &str),
        region: &str,
        sessions: usize,
    ) -> Result<Self, SpawnError> {
        let dir = tempfile::Builder::new().prefix("reel-load-").tempdir()?;
        let config = dir.path().join("reel-load.toml");
        std::fs::write(&config, config_toml(extra_config, sessions))?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("{ip}:0"))
            .arg("--data-dir")
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .args(["--access-key-id", key.0, "--secret-access-key", key.1, "--region", region])
            .env_remove("RUST_LOG")
            // The report scrapes /metrics, which is signed-only off loopback by default.
            .env("REEL_METRICS", "open");
        let process = ReelProcess::spawn(cmd, &dir.path().join("reel.log"))?;
        Ok(Self { url: process.url.clone(), pid: process.pid, process, _dir: dir })
    }

    /// Path of reel's log file.
    pub fn log_path(&self) -> PathBuf {
        self.process.log_path().to_path_buf()
    }

    /// The last `max` bytes of its log.
    pub fn log_tail(&self, max: usize) -> String {
        self.process.log_tail(max)
    }

    /// SIGTERM, wait up to 10 s, then kill. Returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        self.process.stop()
    }
}

/// The config file of a reel under load: `[limits] max_storage_enabled_channels = sessions +
/// 16`, then `extra_config`, then `[limits.http]` room for every session's connections from
/// one IP (a load balancer's, or the publishers' address).
pub fn config_toml(extra_config: &str, sessions: usize) -> String {
    format!(
        "[limits]\nmax_storage_enabled_channels = {}\n{extra_config}\n[limits.http]\nmax_connections_per_ip = {}\n",
        sessions + CHANNEL_HEADROOM,
        (2 * sessions).max(512) + CHANNEL_HEADROOM,
    )
}
