//! The one way a test or tool starts a `reel serve` child process: stdout is read for the
//! `reel listening on <url>` line (the lines before it, e.g. a generated key, are kept),
//! stderr goes to a log file, and the process is stopped with SIGTERM (then killed) when
//! asked or dropped. Used by the load generator ([`crate::load`]) and the end-to-end tests
//! in the server's `tests/`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long reel may take to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`ReelProcess::stop`] waits after SIGTERM before killing.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Why reel could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Filesystem or process failure.
    #[error("starting reel: {0}")]
    Io(#[from] std::io::Error),
    /// It exited or stayed silent.
    #[error("reel did not print its listening line within {timeout:?}; stdout so far: {preamble:?}; log:\n{log}")]
    NoListeningLine {
        /// The wait.
        timeout: Duration,
        /// What it printed on stdout before giving up.
        preamble: Vec<String>,
        /// The tail of its log.
        log: String,
    },
}

/// A running reel child; stopped (SIGTERM, then kill) on drop.
#[derive(Debug)]
pub struct ReelProcess {
    child: Child,
    /// Base URL from its listening line.
    pub url: String,
    /// Its process id.
    pub pid: u32,
    /// Every stdout line printed before the listening line.
    pub preamble: Vec<String>,
    log_path: PathBuf,
    /// Stdout lines after the listening line (kept open, so later prints never hit EPIPE).
    stdout: mpsc::Receiver<String>,
}

impl ReelProcess {
    /// Spawns `cmd` (a prepared `reel serve …`) with stderr appended to `log_path` and waits
    /// up to [`START_TIMEOUT`] for its listening line.
    pub fn spawn(mut cmd: Command, log_path: &Path) -> Result<Self, SpawnError> {
        let log = std::fs::File::create(log_path)?;
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log));
        let mut child = cmd.spawn()?;
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
        let mut this =
            Self { child, url: String::new(), pid, preamble: Vec::new(), log_path: log_path.to_path_buf(), stdout: rx };
        loop {
            match this.stdout.recv_timeout(START_TIMEOUT) {
                Ok(line) => match line.strip_prefix("reel listening on ") {
                    Some(url) => {
                        this.url = url.trim().to_string();
                        return Ok(this);
                    }
                    None => this.preamble.push(line),
                },
                Err(_) => {
                    this.stop();
                    return Err(SpawnError::NoListeningLine {
                        timeout: START_TIMEOUT,
                        preamble: std::mem::take(&mut this.preamble),
                        log: this.log_tail(8_000),
                    });
                }
            }
        }
    }

    /// Path of reel's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `max` bytes of its log.
    pub fn log_tail(&self, max: usize) -> String {
        let log = self.log();
        let mut start = log.len().saturating_sub(max);
        while !log.is_char_boundary(start) {
            start += 1;
        }
        log[start..].to_string()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// After the process exited: every stdout line it printed after its listening line.
    pub fn stdout_after_listening(&self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.stdout.recv_timeout(STOP_GRACE) {
            lines.push(line);
        }
        lines
    }

    /// SIGKILL now (a crashed node), and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, wait up to [`STOP_GRACE`], then kill. Returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        let polls = STOP_GRACE.as_millis() / 50;
        for _ in 0..polls {
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

impl Drop for ReelProcess {
    fn drop(&mut self) {
        if self.running() {
            self.stop();
        }
    }
}
