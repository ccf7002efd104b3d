//! A private Postgres server for the cluster target, on 127.0.0.1 only: `initdb` into a
//! temporary directory, the server on a free port, trust authentication for user
//! [`USER`]; the nodes use its `postgres` database. The approach of reel's
//! `testkit::postgres` (which reel-sim cannot use: reel depends on reel-sim):
//!
//! - `initdb` and `postgres` are looked up on `PATH`, then in Debian's
//!   `/usr/lib/postgresql/<version>/bin`; missing binaries are an error naming the install
//!   command.
//! - Postgres refuses to run as root: as root, the cluster belongs to `nobody`.
//! - The server runs under a small `sh` supervisor that holds a pipe from this process;
//!   when the pipe closes (drop, or this process dies) it stops the server and removes the
//!   directory, so no server outlives the run.

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{ClusterError, free_port};

/// What a missing binary's error says.
pub const INSTALL: &str = "install with: apt-get install -y postgresql";
/// The superuser `initdb` creates (trust authentication, no password).
const USER: &str = "reel";
/// How long the server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Stops the server when its stdin reaches end of file, then removes the cluster
/// directory. Arguments: postgres binary, cluster root, port.
const SUPERVISOR: &str = r#"
root="$2"
"$1" -D "$root/data" -k "$root" -h 127.0.0.1 -p "$3" -F \
    -c max_connections=300 -c full_page_writes=off -c synchronous_commit=off \
    </dev/null >"$root/postgres.log" 2>&1 &
pg=$!
exec 3<&0
( read -r _ <&3; kill -INT "$pg" 2>/dev/null ) &
wait "$pg"
rm -rf "$root"
"#;

/// A running private Postgres; stopped and removed on drop.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    root: PathBuf,
    supervisor: Child,
}

impl Postgres {
    /// `initdb` into a new temporary directory and start the server on a free port of
    /// 127.0.0.1; returns once it accepts connections.
    pub fn start() -> Result<Self, ClusterError> {
        let bin = bin_dir()?;
        let root = tempfile::Builder::new().prefix("reel-load-pg-").tempdir()?.keep();
        let owner = running_as_root().then(nobody);
        let as_owner = |cmd: &mut Command| {
            cmd.current_dir(&root);
            if let Some((uid, gid)) = owner {
                cmd.uid(uid).gid(gid);
            }
        };
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid))?;
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.arg("-D").arg(root.join("data")).args([
            "-U",
            USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]);
        as_owner(&mut initdb);
        let out = initdb.output().map_err(|e| ClusterError::Tool("initdb", format!("{e}; {INSTALL}")))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&root);
            return Err(ClusterError::Tool(
                "initdb",
                format!(
                    "{}: {}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            ));
        }
        let port = free_port([127, 0, 0, 1].into())?;
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(SUPERVISOR).arg("sh").arg(bin.join("postgres")).arg(&root).arg(port.to_string());
        sh.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
        as_owner(&mut sh);
        let supervisor = sh.spawn().map_err(|e| ClusterError::Tool("postgres", e.to_string()))?;
        let mut pg = Self { port, root, supervisor };
        pg.wait_ready()?;
        Ok(pg)
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// Waits until `postmaster.pid` says "ready".
    fn wait_ready(&mut self) -> Result<(), ClusterError> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.supervisor.try_wait() {
                return Err(ClusterError::Tool("postgres", format!("exited ({status}):\n{}", self.log())));
            }
            // The eighth line of postmaster.pid is the server's status.
            let pid_file = std::fs::read_to_string(self.root.join("data/postmaster.pid")).unwrap_or_default();
            if pid_file.lines().nth(7).map(str::trim) == Some("ready") {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(ClusterError::Tool(
                    "postgres",
                    format!("not ready after {READY_TIMEOUT:?}:\n{}", self.log()),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // End of file on its stdin makes the supervisor stop the server and clean up.
        drop(self.supervisor.stdin.take());
        let _ = self.supervisor.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The directory holding `initdb` and `postgres`.
fn bin_dir() -> Result<PathBuf, ClusterError> {
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
    on_path.into_iter().chain(debian.into_iter().map(|(_, dir)| dir)).find(|d| has_both(d)).ok_or_else(|| {
        ClusterError::Tool(
            "postgres",
            format!("initdb and postgres are not on PATH nor in /usr/lib/postgresql/*/bin; {INSTALL}"),
        )
    })
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// The uid and gid of `nobody`.
fn nobody() -> (u32, u32) {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "nobody"]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    (id("-u").unwrap_or(65534), id("-g").unwrap_or(65534))
}
