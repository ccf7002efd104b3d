//! A private Postgres server for the metadata and cluster tests, on 127.0.0.1 only.
//!
//! [`fresh_database`] starts one server per test process on first use and gives each test
//! a database of its own. [`PgTestServer::start`] starts a separate one for a test that
//! needs to stop it: [`PgTestServer::stop`] and [`PgTestServer::restart`] take it down and
//! back up on the same data and port (a database outage); dropping it stops the server.
//!
//! - The binaries (`initdb`, `postgres`) are looked up on `PATH`, then in Debian's
//!   `/usr/lib/postgresql/<version>/bin`. Missing binaries fail the test with the command
//!   that installs them; the tests never skip.
//! - Postgres refuses to run as root, so when the tests run as root the cluster belongs to
//!   `nobody`: its directory is chowned to that user, and `initdb` and the server are
//!   spawned with its uid and gid.
//! - The server runs under a small `sh` supervisor that holds the read end of a pipe from
//!   the test process. When that pipe closes (the server is dropped, or the test process
//!   exits, even by a crash, which is how the shared server ends) the supervisor stops the
//!   server and removes its directory, so no server outlives its tests.

use std::io::Read as _;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlx::{Connection as _, Executor as _, PgConnection};

/// What the failure of a missing binary says.
const INSTALL: &str = "install with: apt-get install -y postgresql";
/// The superuser `initdb` creates (trust authentication, no password).
const USER: &str = "reel";
/// How long the server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Stops the server (fast shutdown) when its stdin reaches end of file, then removes the
/// cluster directory unless a `keep` file is there ([`PgTestServer::stop`]). Arguments:
/// postgres binary, cluster root, port.
const SUPERVISOR: &str = r#"
root="$2"
"$1" -D "$root/data" -k "$root" -h 127.0.0.1 -p "$3" -F \
    -c max_connections=200 -c full_page_writes=off -c synchronous_commit=off \
    </dev/null >"$root/postgres.log" 2>&1 &
pg=$!
exec 3<&0
( read -r _ <&3; : >"$root/stopping"; kill -INT "$pg" 2>/dev/null ) &
wait "$pg"
echo "postgres exited with status $?" >>"$root/postgres.log"
if [ -e "$root/stopping" ] && [ ! -e "$root/keep" ]; then rm -rf "$root"; fi
"#;

/// A running private Postgres server.
#[derive(Debug)]
pub struct PgTestServer {
    port: u16,
    /// The cluster directory: `data/`, the Unix socket, `postgres.log`.
    root: PathBuf,
    /// The supervising shell; closing its stdin stops the server. `None` while stopped.
    supervisor: Option<Child>,
    /// The directory of `initdb` and `postgres`.
    bin: PathBuf,
    /// Who runs the server (`nobody` when the tests run as root), else this user.
    owner: Option<(u32, u32)>,
}

/// The server shared by the tests of this process (never dropped: it stops when the
/// process exits and the supervisor's pipe closes).
static SHARED: OnceLock<PgTestServer> = OnceLock::new();

/// The URL of a fresh, empty database on this process's shared test server.
pub async fn fresh_database() -> String {
    SHARED.get_or_init(PgTestServer::start).create_database().await
}

impl PgTestServer {
    /// Create a cluster in a new temporary directory and start a server on a free port of
    /// 127.0.0.1; returns once it accepts connections. Panics (never skips) if Postgres is
    /// not installed or does not start.
    pub fn start() -> Self {
        let bin = bin_dir();
        let root = tempfile::Builder::new().prefix("reel-pg-").tempdir().expect("temporary directory").keep();
        let owner = if running_as_root() { Some(nobody()) } else { None };
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid)).expect("chown the cluster directory to nobody");
        }
        let mut server = Self { port: free_port(), root, supervisor: None, bin, owner };
        let mut initdb = Command::new(server.bin.join("initdb"));
        initdb.arg("-D").arg(server.root.join("data")).args([
            "-U",
            USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]);
        server.as_owner(&mut initdb);
        let out = initdb
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL}", server.bin.join("initdb").display()));
        assert!(
            out.status.success(),
            "initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        server.spawn_supervisor();
        server
    }

    /// Fast shutdown (like `pg_ctl stop -m fast`), keeping the data directory and port for
    /// [`PgTestServer::restart`]; returns once the server has exited.
    pub fn stop(&mut self) {
        let Some(mut supervisor) = self.supervisor.take() else { return };
        std::fs::write(self.root.join("keep"), b"").expect("write the keep marker");
        drop(supervisor.stdin.take());
        let _ = supervisor.wait();
        let _ = std::fs::remove_file(self.root.join("keep"));
        let _ = std::fs::remove_file(self.root.join("stopping"));
    }

    /// Starts a [stopped](PgTestServer::stop) server again on the same data and port;
    /// returns once it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.supervisor.is_none(), "restart() of a running server");
        self.spawn_supervisor();
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn as_owner(&self, cmd: &mut Command) {
        cmd.current_dir(&self.root);
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
    }

    fn spawn_supervisor(&mut self) {
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(SUPERVISOR).arg("sh").arg(self.bin.join("postgres")).arg(&self.root);
        sh.arg(self.port.to_string()).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
        self.as_owner(&mut sh);
        let supervisor = sh.spawn().unwrap_or_else(|e| panic!("cannot start the postgres supervisor: {e}"));
        self.supervisor = Some(supervisor);
        self.wait_ready();
    }

    /// Create a database with a fresh name; its URL.
    pub async fn create_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("reel_test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let mut admin = PgConnection::connect(&self.url("postgres"))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}\n{}", self.log()));
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        admin.close().await.expect("close the admin connection");
        self.url(&name)
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Wait until `postmaster.pid` reports the server ready for connections.
    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(Ok(Some(status))) = self.supervisor.as_mut().map(Child::try_wait) {
                panic!("postgres did not start ({status}):\n{}", self.log());
            }
            // The eighth line of postmaster.pid is the server's status.
            let pid_file = std::fs::read_to_string(self.root.join("data/postmaster.pid")).unwrap_or_default();
            if pid_file.lines().nth(7).map(str::trim) == Some("ready") {
                return;
            }
            assert!(started.elapsed() < READY_TIMEOUT, "postgres not ready after {READY_TIMEOUT:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        let mut log = String::new();
        if let Ok(mut f) = std::fs::File::open(self.root.join("postgres.log")) {
            let _ = f.read_to_string(&mut log);
        }
        log
    }
}

impl Drop for PgTestServer {
    fn drop(&mut self) {
        // End of file on its stdin makes the supervisor stop the server and clean up.
        if let Some(mut supervisor) = self.supervisor.take() {
            drop(supervisor.stdin.take());
            let _ = supervisor.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The directory holding `initdb` and `postgres`, or a panic naming the install command.
fn bin_dir() -> PathBuf {
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
    on_path.into_iter().chain(debian.into_iter().map(|(_, dir)| dir)).find(|d| has_both(d)).unwrap_or_else(|| {
        panic!("the Postgres server binaries (initdb, postgres) are not on PATH nor in /usr/lib/postgresql/*/bin; {INSTALL}")
    })
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// The uid and gid of `nobody`, who owns the cluster when the tests run as root.
fn nobody() -> (u32, u32) {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "nobody"]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    (id("-u").unwrap_or(65534), id("-g").unwrap_or(65534))
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}
