//! Starting a `reel serve` child for a load run: a temporary data directory, the load
//! generator's key as root key, quotas raised to the session count, and the
//! `reel listening on <url>` line parsed from its stdout.

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long reel may take to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Storage-enabled channels allowed beyond the session count (reel's default is 100).
const CHANNEL_HEADROOM: usize = 16;

/// Why reel could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Filesystem or process failure.
    #[error("starting reel: {0}")]
    Io(#[from] std::io::Error),
    /// It exited or stayed silent.
    #[error("reel did not print its listening line within {timeout:?}; log:\n{log}")]
    NoListeningLine {
        /// The wait.
        timeout: Duration,
        /// The tail of its log.
        log: String,
    },
}

/// A running `reel serve`; stopped (SIGTERM, then kill) and its data removed on drop.
#[derive(Debug)]
pub struct SpawnedReel {
    child: Child,
    /// Base URL from its listening line.
    pub url: String,
    /// Its process id.
    pub pid: u32,
    dir: tempfile::TempDir,
}

impl SpawnedReel {
    /// Starts `bin serve --listen <ip>:0` with a fresh data directory, `key` as root key and
    /// `[limits] max_storage_enabled_channels = sessions + 16`, then `extra_config`.
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
        std::fs::write(
            &config,
            format!("[limits]\nmax_storage_enabled_channels = {}\n{extra_config}\n", sessions + CHANNEL_HEADROOM),
        )?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let log = std::fs::File::create(dir.path().join("reel.log"))?;
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--listen")
            .arg(format!("{ip}:0"))
            .arg("--data-dir")
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .args(["--access-key-id", key.0, "--secret-access-key", key.1, "--region", region])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()?;
        let pid = child.id();
        let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut this = Self { child, url: String::new(), pid, dir };
        loop {
            match rx.recv_timeout(START_TIMEOUT) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("reel listening on ") {
                        this.url = url.trim().to_string();
                        return Ok(this);
                    }
                }
                Err(_) => {
                    return Err(SpawnError::NoListeningLine { timeout: START_TIMEOUT, log: this.log_tail(4_000) });
                }
            }
        }
    }

    /// Path of reel's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("reel.log")
    }

    /// The last `max` bytes of its log.
    pub fn log_tail(&self, max: usize) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let mut start = log.len().saturating_sub(max);
        while !log.is_char_boundary(start) {
            start += 1;
        }
        log[start..].to_string()
    }

    /// SIGTERM, wait up to 10 s, then kill. Returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for SpawnedReel {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}
