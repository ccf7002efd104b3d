//! HAProxy (Debian `haproxy`) in front of reel nodes, as an operator runs it: one HTTP
//! frontend for the APIs and WebSocket signaling, the nodes as backends in rotation while
//! `GET /readyz` answers 200 (checked every 200 ms, 2 failures take a node out, 2 successes
//! bring it back), a connection refused retried on another node, and a stats page. When no
//! node is ready, HAProxy answers a KVS-shaped 503 (`x-amzn-ErrorType`, JSON body) so SDK
//! clients see a service error rather than an HTML page. Stopped on drop.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs it.
pub const BIN: &str = "/usr/sbin/haproxy";
/// What a missing binary's failure says.
pub const INSTALL: &str = "install with: apt-get install -y haproxy";

/// The response HAProxy sends when no backend is up.
const NO_NODE: &str = "HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
x-amzn-ErrorType: ServiceUnavailable\r\n\
cache-control: no-cache\r\n\
connection: close\r\n\
\r\n\
{\"__type\":\"ServiceUnavailable\",\"message\":\"No reel node is ready\",\"Message\":\"No reel node is ready\"}\n";

/// A running HAProxy.
pub struct Haproxy {
    child: Child,
    /// `http://<frontend>`: the load-balanced endpoint.
    pub url: String,
    /// The frontend address.
    pub addr: SocketAddr,
    /// `http://<stats address>/stats`.
    pub stats_url: String,
    /// The generated configuration (for failure messages).
    pub config: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts HAProxy with its frontend on `bind` (port 0 picks a free one) and the named
    /// `backends` (`server <name> <addr>`); returns once the frontend accepts connections.
    /// Fails the test (never skips) when the binary is missing or the config is refused.
    pub fn start(bind: SocketAddr, backends: &[(String, SocketAddr)]) -> Self {
        assert!(std::path::Path::new(BIN).is_file(), "{BIN} not found; {INSTALL}");
        let addr = if bind.port() == 0 { SocketAddr::new(bind.ip(), free_port(bind)) } else { bind };
        let stats = SocketAddr::new(bind.ip(), free_port(bind));
        let dir = tempfile::Builder::new().prefix("reel-haproxy-").tempdir().expect("tempdir");
        let errorfile = dir.path().join("503.http");
        std::fs::write(&errorfile, NO_NODE).expect("write the 503 errorfile");
        let config =
            reel_sim::load::cluster::haproxy::config(addr, stats, backends, Some(&errorfile.display().to_string()));
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, &config).expect("write haproxy.cfg");

        let check = Command::new(BIN).arg("-c").arg("-f").arg(&cfg).output();
        let check = check.unwrap_or_else(|e| panic!("cannot run {BIN}: {e}; {INSTALL}"));
        assert!(
            check.status.success(),
            "haproxy refused its config:\n{}{}\n{config}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let log = dir.path().join("haproxy.log");
        let log_file = std::fs::File::create(&log).expect("haproxy log");
        let child = Command::new(BIN)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log fd"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}; {INSTALL}"));
        let mut lb = Self {
            child,
            url: format!("http://{addr}"),
            addr,
            stats_url: format!("http://{stats}/stats"),
            config,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = lb.child.try_wait() {
                panic!("haproxy exited ({status}):\n{}", lb.log());
            }
            assert!(Instant::now() < deadline, "haproxy did not listen on {addr} within 10 s:\n{}", lb.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        lb
    }

    /// What HAProxy printed (alerts, warnings, server state changes).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The check status of backend server `name` from the stats page: `UP`, `DOWN`, or a
    /// transition such as `UP 1/2`.
    pub async fn server_status(&self, name: &str) -> String {
        let csv = reqwest::get(format!("{};csv", self.stats_url)).await.expect("haproxy stats");
        let csv = csv.text().await.expect("haproxy stats body");
        // Columns: pxname, svname, …, status is the 18th (index 17).
        csv.lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&"nodes") && f.get(1) == Some(&name))
            .and_then(|f| f.get(17).map(|s| s.to_string()))
            .unwrap_or_else(|| panic!("no server {name} in haproxy's stats:\n{csv}"))
    }

    /// Waits until backend `name`'s status is exactly `status` (`UP`/`DOWN`); panics after
    /// `timeout`. Returns how long it took.
    pub async fn wait_status(&self, name: &str, status: &str, timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let now = self.server_status(name).await;
            if now == status {
                return started.elapsed();
            }
            assert!(started.elapsed() < timeout, "haproxy: {name} is {now}, not {status}, after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port of `bind`'s IP that was free a moment ago.
fn free_port(bind: SocketAddr) -> u16 {
    TcpListener::bind(SocketAddr::new(bind.ip(), 0)).and_then(|l| l.local_addr()).expect("free port").port()
}
