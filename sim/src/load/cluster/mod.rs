//! The `reel-cluster` target: three `reel serve` nodes sharing a private Postgres
//! (metadata), a `nats-server` (bus) and an s3s-fs S3 server (media), behind HAProxy, as
//! reel's cluster tests build it (`tests/common/cluster.rs`). Postgres, NATS and S3 bind
//! 127.0.0.1; the nodes and HAProxy bind the recorder address (inside `--netns`, the
//! namespace's veth end), each on a free port.
//!
//! Each node advertises itself (`--public-url`), so clients that enter through the load
//! balancer are sent to one node: GetSignalingChannelEndpoint answers the node that served
//! it (that is how the cameras spread over the nodes), GetDataEndpoint the node writing the
//! stream.

pub mod haproxy;
mod s3;

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::launcher::{ReelProcess, SpawnError};

/// How long a node may take to answer `/readyz` 200 after it listens.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Filesystem, socket or process failure.
    #[error("starting the cluster: {0}")]
    Io(#[from] std::io::Error),
    /// A service (Postgres, NATS, HAProxy, S3) is missing or failed.
    #[error("{0}: {1}")]
    Tool(&'static str, String),
    /// A reel node did not start.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// A node or the load balancer did not become ready.
    #[error("cluster not ready: {0}")]
    NotReady(String),
}

/// One running node.
#[derive(Debug)]
pub struct Node {
    /// `--node-id`.
    pub id: String,
    /// Its own URL (`--public-url`).
    pub url: String,
    addr: SocketAddr,
    process: ReelProcess,
}

impl Node {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid
    }
}

/// A running cluster; stopped (nodes first, then the services) on drop.
#[derive(Debug)]
pub struct SpawnedCluster {
    // Field order is drop order: nodes before the services they use.
    /// The nodes.
    pub nodes: Vec<Node>,
    lb: haproxy::Haproxy,
    _s3: s3::S3Server,
    _nats: Nats,
    _pg: crate::pg::PrivatePostgres,
    _dir: tempfile::TempDir,
}

impl SpawnedCluster {
    /// Starts Postgres, NATS, S3, `node_count` nodes of `bin` on `ip` (config `config_toml`,
    /// root key `key`, `node_threads` media and runtime threads each if given, else their
    /// default) and HAProxy on `ip`; returns once every node is ready and in the load
    /// balancer's rotation.
    pub async fn start(
        bin: &Path,
        ip: IpAddr,
        config_toml: &str,
        key: (&str, &str),
        region: &str,
        node_count: usize,
        node_threads: Option<usize>,
    ) -> Result<Self, ClusterError> {
        let pg = crate::pg::PrivatePostgres::start().map_err(|e| ClusterError::Tool("postgres", e.to_string()))?;
        let nats = Nats::start()?;
        let s3 = s3::S3Server::start()?;
        let dir = tempfile::Builder::new().prefix("reel-load-cluster-").tempdir()?;
        let config = dir.path().join("reel-load.toml");
        std::fs::write(&config, config_toml)?;
        let mut nodes = Vec::new();
        for k in 1..=node_count.max(1) {
            let id = format!("node-{k}");
            let addr = SocketAddr::new(ip, free_port(ip)?);
            let url = format!("http://{addr}");
            let data = dir.path().join(&id);
            std::fs::create_dir_all(&data)?;
            let mut cmd = Command::new(bin);
            cmd.arg("serve")
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--data-dir")
                .arg(&data)
                .arg("--config")
                .arg(&config)
                .args(["--access-key-id", key.0, "--secret-access-key", key.1, "--region", region])
                .args(["--metadata-url", &pg.url("postgres"), "--bus-url", &nats.url])
                .args(["--node-id", &id, "--public-url", &url])
                // The default TURN port follows a fixed --listen port (3478): nodes would collide.
                .args(["--turn-listen", &SocketAddr::new(ip, 0).to_string()])
                .args(s3.reel_args())
                .env_remove("RUST_LOG")
                .env("REEL_METRICS", "open");
            if let Some(n) = node_threads {
                let n = n.to_string();
                cmd.args(["--webrtc-workers", &n]).env("TOKIO_WORKER_THREADS", &n);
            }
            let process = ReelProcess::spawn(cmd, &dir.path().join(format!("{id}.log")))?;
            nodes.push(Node { id, url, addr, process });
        }
        let backends: Vec<(String, SocketAddr)> = nodes.iter().map(|n| (n.id.clone(), n.addr)).collect();
        let lb = haproxy::Haproxy::start(ip, &backends)?;
        let cluster = Self { nodes, lb, _s3: s3, _nats: nats, _pg: pg, _dir: dir };
        for node in &cluster.nodes {
            wait_ready(node).await?;
        }
        let names: Vec<String> = cluster.nodes.iter().map(|n| n.id.clone()).collect();
        cluster.lb.wait_all_up(&names, Duration::from_secs(10)).await?;
        Ok(cluster)
    }

    /// The load balancer's URL: where the cameras enter.
    pub fn url(&self) -> &str {
        &self.lb.url
    }

    /// The last `max` bytes of every node's log, headed by its id.
    pub fn log_tail(&self, max: usize) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push_str(&format!("===== {} =====\n{}\n", n.id, n.process.log_tail(max)));
        }
        out + "===== haproxy =====\n" + &self.lb.log()
    }

    /// SIGTERM every node (then kill after a grace); whether all exited cleanly.
    pub fn stop(&mut self) -> bool {
        // Every node, even after one failed to stop cleanly.
        let clean: Vec<bool> = self.nodes.iter_mut().map(|n| n.process.stop()).collect();
        clean.into_iter().all(|c| c)
    }
}

/// Polls `node`'s `/readyz` until 200, at most [`READY_TIMEOUT`].
async fn wait_ready(node: &Node) -> Result<(), ClusterError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let client = reqwest::Client::new();
    loop {
        let last = match client.get(format!("{}/readyz", node.url)).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            return Err(ClusterError::NotReady(format!(
                "{} /readyz after {READY_TIMEOUT:?}: {last}\n{}",
                node.id,
                node.process.log_tail(4_000)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A private `nats-server` on 127.0.0.1; stopped on drop.
#[derive(Debug)]
struct Nats {
    child: Child,
    url: String,
}

impl Nats {
    fn start() -> Result<Self, ClusterError> {
        let port = free_port([127, 0, 0, 1].into())?;
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                ClusterError::Tool("nats-server", format!("{e}; install with: apt-get install -y nats-server"))
            })?;
        let mut nats = Self { child, url: format!("nats://127.0.0.1:{port}") };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = nats.child.try_wait() {
                return Err(ClusterError::Tool("nats-server", format!("exited ({status})")));
            }
            if Instant::now() > deadline {
                return Err(ClusterError::Tool("nats-server", format!("not listening on {addr} after 20 s")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(nats)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port of `ip` that was free a moment ago.
fn free_port(ip: IpAddr) -> std::io::Result<u16> {
    Ok(TcpListener::bind(SocketAddr::new(ip, 0))?.local_addr()?.port())
}
