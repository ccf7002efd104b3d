//! HAProxy (Debian `haproxy`) in front of the cluster's nodes, configured like reel's
//! cluster tests: one HTTP frontend, the nodes in `roundrobin` rotation while `GET /readyz`
//! answers 200, a stats page for readiness. Stopped on drop.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{ClusterError, free_port};

/// Where Debian installs it.
pub const BIN: &str = "/usr/sbin/haproxy";
/// What a missing binary's error says.
pub const INSTALL: &str = "install with: apt-get install -y haproxy";

/// A running HAProxy.
#[derive(Debug)]
pub struct Haproxy {
    child: Child,
    /// `http://<frontend>`.
    pub url: String,
    /// `http://<stats>/stats;csv`.
    pub stats_csv_url: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts HAProxy with its frontend and stats page on free ports of `ip` and `backends`
    /// (`server <name> <addr>`); returns once the frontend accepts connections.
    pub fn start(ip: IpAddr, backends: &[(String, SocketAddr)]) -> Result<Self, ClusterError> {
        if !std::path::Path::new(BIN).is_file() {
            return Err(ClusterError::Tool("haproxy", format!("{BIN} not found; {INSTALL}")));
        }
        let addr = SocketAddr::new(ip, free_port(ip)?);
        let stats = SocketAddr::new(ip, free_port(ip)?);
        let dir = tempfile::Builder::new().prefix("reel-load-haproxy-").tempdir()?;
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config(addr, stats, backends, None))?;
        let log = dir.path().join("haproxy.log");
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(BIN)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| ClusterError::Tool("haproxy", format!("{e}; {INSTALL}")))?;
        let mut lb = Self {
            child,
            url: format!("http://{addr}"),
            stats_csv_url: format!("http://{stats}/stats;csv"),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = lb.child.try_wait() {
                return Err(ClusterError::Tool("haproxy", format!("exited ({status}):\n{}", lb.log())));
            }
            if Instant::now() > deadline {
                return Err(ClusterError::Tool(
                    "haproxy",
                    format!("not listening on {addr} after 10 s:\n{}", lb.log()),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(lb)
    }

    /// What HAProxy printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until every backend is `UP` on the stats page, at most `timeout`.
    pub async fn wait_all_up(&self, names: &[String], timeout: Duration) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        let client = reqwest::Client::new();
        loop {
            let csv = match client.get(&self.stats_csv_url).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if names.iter().all(|n| status(&csv, n) == Some("UP")) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ClusterError::NotReady(format!("haproxy backends not all UP after {timeout:?}:\n{csv}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Backend `name`'s check status in the stats CSV (`pxname,svname,…`, status is column 18).
fn status<'a>(csv: &'a str, name: &str) -> Option<&'a str> {
    csv.lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"nodes") && f.get(1) == Some(&name))?
        .get(17)
        .copied()
}

/// The configuration of a load balancer over reel nodes (the one builder: the load target
/// and the cluster tests use it): an HTTP frontend on `frontend`, a stats page on `stats`
/// (`/stats`, CSV with `;csv`), round-robin over `backends` with `/readyz` health checks
/// every 200 ms (down after 2 failures, up after 2 successes), a long WebSocket tunnel
/// timeout, and a retry on another node when a connection fails. With `errorfile`, a 503
/// (no node ready) answers that file: the tests give it a KVS-shaped error.
pub fn config(
    frontend: SocketAddr,
    stats: SocketAddr,
    backends: &[(String, SocketAddr)],
    errorfile: Option<&str>,
) -> String {
    let errorfile = errorfile.map(|f| format!("    errorfile 503 {f}\n")).unwrap_or_default();
    let mut c = format!(
        "global
    maxconn 4096
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout tunnel 1h
    timeout check 1s
    retries 2
    option redispatch 1
{errorfile}frontend reel
    bind {frontend}
    default_backend nodes
frontend stats
    bind {stats}
    stats enable
    stats uri /stats
    stats refresh 1s
backend nodes
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
"
    );
    for (name, addr) in backends {
        let _ = writeln!(c, "    server {name} {addr} check inter 200ms fall 2 rise 2");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_status_from_csv() {
        let csv = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status\n\
            nodes,node-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP\n\
            nodes,node-2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN 1/2\n";
        assert_eq!(status(csv, "node-1"), Some("UP"));
        assert_eq!(status(csv, "node-2"), Some("DOWN 1/2"));
        assert_eq!(status(csv, "node-3"), None);
    }
}
