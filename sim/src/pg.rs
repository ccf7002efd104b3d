//! A private Postgres server on 127.0.0.1 only, for tests and the `reel-cluster` load target
//! (the one implementation: reel's `testkit::postgres` wraps it).
//!
//! - `initdb` and `postgres` are looked up on `PATH`, then in Debian's
//!   `/usr/lib/postgresql/<version>/bin`; missing binaries are an error naming the install
//!   command.
//! - Postgres refuses to run as root: as root, the cluster belongs to `nobody` (its directory
//!   is chowned, and `initdb` and the server run with that uid and gid).
//! - The server runs under a small `sh` supervisor that holds a pipe from this process; when
//!   the pipe closes (drop, or this process dies, even by a crash) it stops the server and
//!   removes its directory, so no server outlives its user. [`PrivatePostgres::stop`] and
//!   [`PrivatePostgres::restart`] take it down and back up on the same data and port (a
//!   database outage).

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a missing binary's error says.
pub const INSTALL: &str = "install with: apt-get install -y postgresql";
/// The superuser `initdb` creates (trust authentication, no password).
pub const USER: &str = "reel";
/// How long the server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Stops the server (fast shutdown) when its stdin reaches end of file, then removes the
/// cluster directory unless a `keep` file is there ([`PrivatePostgres::stop`]). Arguments:
/// postgres binary, cluster root, port.
const SUPERVISOR: &str = r#"
root="$2"
"$1" -D "$root/data" -k "$root" -h 127.0.0.1 -p "$3" -F \
    -c max_connections=300 -c full_page_writes=off -c synchronous_commit=off \
    </dev/null >"$root/postgres.log" 2>&1 &
pg=$!
exec 3<&0
( read -r _ <&3; : >"$root/stopping"; kill -INT "$pg" 2>/dev/null ) &
wait "$pg"
echo "postgres exited with status $?" >>"$root/postgres.log"
if [ -e "$root/stopping" ] && [ ! -e "$root/keep" ]; then rm -rf "$root"; fi
"#;

/// Why the server could not be set up or started.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// `initdb`/`postgres` are not installed.
    #[error("initdb and postgres are not on PATH nor in /usr/lib/postgresql/*/bin; {INSTALL}")]
    Missing,
    /// A filesystem or process failure.
    #[error("private postgres: {0}")]
    Io(#[from] std::io::Error),
    /// `initdb` or the server failed; the output or log says why.
    #[error("private postgres: {0}")]
    Failed(String),
}

/// A running private Postgres server; stopped and removed on drop.
#[derive(Debug)]
pub struct PrivatePostgres {
    port: u16,
    /// The cluster directory: `data/`, the Unix socket, `postgres.log`.
    root: PathBuf,
    /// The supervising shell; closing its stdin stops the server. `None` while stopped.
    supervisor: Option<Child>,
    /// The directory of `initdb` and `postgres`.
    bin: PathBuf,
    /// Who runs the server (`nobody` when running as root).
    owner: Option<(u32, u32)>,
}

impl PrivatePostgres {
    /// `initdb` into a new temporary directory and start the server on a free port of
    /// 127.0.0.1; returns once it accepts connections.
    pub fn start() -> Result<Self, PgError> {
        let bin = bin_dir()?;
        let root = tempfile::Builder::new().prefix("reel-pg-").tempdir()?.keep();
        let owner = running_as_root().then(nobody);
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut pg = Self { port, root, supervisor: None, bin, owner };
        let mut initdb = Command::new(pg.bin.join("initdb"));
        initdb.arg("-D").arg(pg.root.join("data")).args([
            "-U",
            USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]);
        pg.as_owner(&mut initdb);
        let out = initdb.output().map_err(|e| PgError::Failed(format!("cannot run initdb: {e}; {INSTALL}")))?;
        if !out.status.success() {
            return Err(PgError::Failed(format!(
                "initdb failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        pg.spawn_supervisor()?;
        Ok(pg)
    }

    /// Fast shutdown (like `pg_ctl stop -m fast`), keeping the data directory and port for
    /// [`PrivatePostgres::restart`]; returns once the server has exited.
    pub fn stop(&mut self) -> Result<(), PgError> {
        let Some(mut supervisor) = self.supervisor.take() else { return Ok(()) };
        std::fs::write(self.root.join("keep"), b"")?;
        drop(supervisor.stdin.take());
        let _ = supervisor.wait();
        let _ = std::fs::remove_file(self.root.join("keep"));
        let _ = std::fs::remove_file(self.root.join("stopping"));
        Ok(())
    }

    /// Starts a [stopped](PrivatePostgres::stop) server again on the same data and port;
    /// returns once it accepts connections.
    pub fn restart(&mut self) -> Result<(), PgError> {
        if self.supervisor.is_some() {
            return Err(PgError::Failed("restart() of a running server".into()));
        }
        self.spawn_supervisor()
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("postgres.log")).unwrap_or_default()
    }

    fn as_owner(&self, cmd: &mut Command) {
        cmd.current_dir(&self.root);
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
    }

    fn spawn_supervisor(&mut self) -> Result<(), PgError> {
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(SUPERVISOR).arg("sh").arg(self.bin.join("postgres")).arg(&self.root);
        sh.arg(self.port.to_string()).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
        self.as_owner(&mut sh);
        self.supervisor = Some(sh.spawn()?);
        self.wait_ready()
    }

    /// Waits until `postmaster.pid` reports the server ready for connections.
    fn wait_ready(&mut self) -> Result<(), PgError> {
        let started = Instant::now();
        loop {
            if let Some(Ok(Some(status))) = self.supervisor.as_mut().map(Child::try_wait) {
                return Err(PgError::Failed(format!("postgres did not start ({status}):\n{}", self.log())));
            }
            // The eighth line of postmaster.pid is the server's status.
            let pid_file = std::fs::read_to_string(self.root.join("data/postmaster.pid")).unwrap_or_default();
            if pid_file.lines().nth(7).map(str::trim) == Some("ready") {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(PgError::Failed(format!("postgres not ready after {READY_TIMEOUT:?}:\n{}", self.log())));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // End of file on its stdin makes the supervisor stop the server and clean up.
        if let Some(mut supervisor) = self.supervisor.take() {
            drop(supervisor.stdin.take());
            let _ = supervisor.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The directory holding `initdb` and `postgres`.
fn bin_dir() -> Result<PathBuf, PgError> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let on_path: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    // Debian installs the server out of PATH, per major version; newest first.
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    debian.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    on_path.into_iter().chain(debian.into_iter().map(|(_, dir)| dir)).find(|d| has_both(d)).ok_or(PgError::Missing)
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// The uid and gid of `nobody`, who owns the cluster when running as root.
fn nobody() -> (u32, u32) {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "nobody"]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    (id("-u").unwrap_or(65534), id("-g").unwrap_or(65534))
}
