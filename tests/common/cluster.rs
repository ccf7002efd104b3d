//! A reel cluster for end-to-end tests, built from real processes: a private Postgres
//! (metadata), `nats-server` (bus), an s3s-fs S3 server (media), N `reel serve` nodes and
//! HAProxy in front of them. Every server binds 127.0.0.1 on an ephemeral port; run the
//! test through [`run_in_netns`] so that loopback is a private network namespace's.
//!
//! Nodes are advertised as an operator would: each node's `--public-url` is its own
//! address, not the load balancer's. Clients enter through the load balancer (control
//! plane, signaling), but the URLs reel hands out name one node: GetDataEndpoint answers
//! the URL of the node writing the stream (the live tail is served there, as KVS answers
//! per-stream endpoints), which only works when each node advertises itself; a client
//! that loses that node asks the load balancer again and gets a surviving node.
#![allow(dead_code)]

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use reel::testkit::postgres::PgTestServer;

use super::haproxy::Haproxy;
use super::nats::NatsServer;
use super::s3::S3Server;
use super::{Options, REGION, ROOT_KEY_ID, ROOT_SECRET, Reel};

/// Fast liveness (a dead node leaves the others' view within 1 s) and short writer leases.
pub const FAST_CLUSTER_CONFIG: &str = "[limits.cluster]\nheartbeat_ms = 200\nnode_timeout_ms = 1000\nlease_ms = 3000\n";

/// What [`Cluster::start`] builds.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// How many reel nodes (ids `node-1`…).
    pub nodes: usize,
    /// The nodes' `--config` file contents.
    pub config_toml: String,
    /// Extra `reel serve` flags for every node.
    pub args: Vec<String>,
    /// `--s3-prefix` of every node.
    pub s3_prefix: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self { nodes: 3, config_toml: FAST_CLUSTER_CONFIG.into(), args: Vec::new(), s3_prefix: "reel/".into() }
    }
}

/// One node's identity, kept across restarts.
pub struct Node {
    /// `--node-id` (also its HAProxy server name).
    pub id: String,
    /// `--listen`; its `--public-url` is `http://<addr>`.
    pub addr: SocketAddr,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// The running process; `None` after [`Cluster::kill`].
    pub reel: Option<Reel>,
}

/// A running cluster; everything stops on drop (nodes first, then HAProxy and the services).
pub struct Cluster {
    /// The nodes, index 0..n.
    pub nodes: Vec<Node>,
    /// The load balancer.
    pub lb: Haproxy,
    /// The S3 server every node keeps media in.
    pub s3: S3Server,
    /// The bus.
    pub nats: NatsServer,
    /// The metadata server ([`PgTestServer::stop`]/[`PgTestServer::restart`] for outages).
    pub pg: PgTestServer,
    /// `--metadata-url` of every node.
    pub metadata_url: String,
    /// Every node's flags except `--listen`, `--data-dir`, `--node-id`, `--public-url`.
    args: Vec<String>,
    dir: tempfile::TempDir,
}

/// Runs `body` on a 2-thread runtime inside a private network namespace: outside, re-runs
/// exactly `test_name` under `unshare -n` and asserts it passed (see `super::netns`);
/// missing privileges fail the test with the command that fixes them.
pub fn run_in_netns<F: Future<Output = ()>>(test_name: &str, body: impl FnOnce() -> F) {
    super::netns::run(test_name, |_| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
        runtime.expect("runtime").block_on(body());
    });
}

impl Cluster {
    /// Starts Postgres, NATS, S3, the nodes and HAProxy; returns once every node is ready
    /// and in HAProxy's rotation.
    pub async fn start(opts: ClusterOptions) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let pg = PgTestServer::start();
        let metadata_url = pg.create_database().await;
        let nats = NatsServer::start();
        let s3 = S3Server::start(loopback);
        let dir = tempfile::Builder::new().prefix("reel-cluster-").tempdir().expect("tempdir");
        let config = super::write_file(dir.path(), "cluster.toml", &opts.config_toml);
        let mut args = vec![
            "--metadata-url".into(),
            metadata_url.clone(),
            "--bus-url".into(),
            nats.url.clone(),
            "--config".into(),
            config.display().to_string(),
            // The default TURN port follows a fixed --listen port (3478): nodes would collide.
            "--turn-listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(s3.reel_args(&opts.s3_prefix));
        args.extend(opts.args.iter().cloned());

        let mut nodes: Vec<Node> = (1..=opts.nodes)
            .map(|k| Node {
                id: format!("node-{k}"),
                addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
                data_dir: dir.path().join(format!("node-{k}")),
                reel: None,
            })
            .collect();
        for node in &mut nodes {
            node.reel = Some(launch(node, &args));
        }
        let backends: Vec<(String, SocketAddr)> = nodes.iter().map(|n| (n.id.clone(), n.addr)).collect();
        let lb = Haproxy::start(loopback, &backends);
        let cluster = Self { nodes, lb, s3, nats, pg, metadata_url, args, dir };
        for k in 0..cluster.nodes.len() {
            cluster.wait_ready(k, Duration::from_secs(20)).await;
            cluster.lb.wait_status(&cluster.nodes[k].id, "UP", Duration::from_secs(10)).await;
        }
        cluster
    }

    /// Node `k`'s running process; panics when it is down.
    pub fn node(&self, k: usize) -> &Reel {
        self.nodes[k].reel.as_ref().unwrap_or_else(|| panic!("{} is down", self.nodes[k].id))
    }

    /// Node `k`'s `--node-id`.
    pub fn node_id(&self, k: usize) -> &str {
        &self.nodes[k].id
    }

    /// Node `k`'s own URL (its `--public-url`), valid while it is down too.
    pub fn node_url(&self, k: usize) -> String {
        format!("http://{}", self.nodes[k].addr)
    }

    /// The load balancer's URL: where clients enter.
    pub fn lb_url(&self) -> &str {
        &self.lb.url
    }

    /// A control-plane client through the load balancer, signed with the root key, without
    /// SDK retries (so a failure shows) and with a 15 s operation timeout.
    pub fn kvs(&self) -> aws_sdk_kinesisvideo::Client {
        kvs_client(self.lb_url())
    }

    /// Like [`Cluster::kvs`], straight to node `k`.
    pub fn kvs_at(&self, k: usize) -> aws_sdk_kinesisvideo::Client {
        kvs_client(&self.node_url(k))
    }

    /// SIGKILL node `k` (a crashed node); its data dir stays.
    pub fn kill(&mut self, k: usize) {
        let mut reel = self.nodes[k].reel.take().unwrap_or_else(|| panic!("{} is already down", self.nodes[k].id));
        reel.kill();
    }

    /// Starts node `k` again with the same id, port, data dir and flags (after
    /// [`Cluster::kill`]); returns once it listens (not necessarily ready: see
    /// [`Cluster::wait_ready`]).
    pub fn restart(&mut self, k: usize) {
        assert!(self.nodes[k].reel.is_none(), "{} is still running", self.nodes[k].id);
        let reel = launch(&self.nodes[k], &self.args);
        self.nodes[k].reel = Some(reel);
    }

    /// Node `k`'s `GET /readyz`: status and JSON body.
    pub async fn readyz(&self, k: usize) -> (u16, serde_json::Value) {
        let res = reqwest::get(format!("{}/readyz", self.node_url(k))).await.expect("readyz");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Waits until node `k`'s `/readyz` answers 200; panics after `timeout`.
    pub async fn wait_ready(&self, k: usize, timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let (status, body) = self.readyz(k).await;
            if status == 200 {
                return started.elapsed();
            }
            assert!(started.elapsed() < timeout, "{} not ready after {timeout:?}: {status} {body}", self.nodes[k].id);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Node `k`'s `/metrics` text (read with [`super::metric`]).
    pub async fn metrics(&self, k: usize) -> String {
        let res = reqwest::get(format!("{}/metrics", self.node_url(k))).await.expect("metrics");
        res.text().await.expect("metrics body")
    }

    /// The indexes of the running nodes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&k| self.nodes[k].reel.is_some()).collect()
    }

    /// Every running node's log, headed by its id (for assertion messages).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            if let Some(reel) = &node.reel {
                out.push_str(&format!("===== {} =====\n{}\n", node.id, reel.log()));
            }
        }
        out + "===== haproxy =====\n" + &self.lb.log()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Nodes before the services they use; the fields drop after this.
        for node in &mut self.nodes {
            if let Some(mut reel) = node.reel.take() {
                reel.sigterm();
            }
        }
    }
}

/// `reel serve` for `node` with the cluster's `args`.
fn launch(node: &Node, args: &[String]) -> Reel {
    let mut args = args.to_vec();
    args.extend(["--node-id".into(), node.id.clone(), "--public-url".into(), format!("http://{}", node.addr)]);
    Reel::start_with(Options {
        data_dir: Some(node.data_dir.clone()),
        listen: Some(node.addr),
        args,
        ..Default::default()
    })
}

/// A control-plane client for `url` signed with the root key, without retries and with a
/// 15 s operation timeout.
pub fn kvs_client(url: &str) -> aws_sdk_kinesisvideo::Client {
    use aws_sdk_kinesisvideo::config::retry::RetryConfig;
    use aws_sdk_kinesisvideo::config::timeout::TimeoutConfig;
    use aws_sdk_kinesisvideo::config::{BehaviorVersion, Region};
    aws_sdk_kinesisvideo::Client::from_conf(
        aws_sdk_kinesisvideo::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(url)
            .credentials_provider(aws_credential_types::Credentials::new(
                ROOT_KEY_ID,
                ROOT_SECRET,
                None,
                None,
                "reel-test",
            ))
            .retry_config(RetryConfig::disabled())
            .timeout_config(TimeoutConfig::builder().operation_timeout(Duration::from_secs(15)).build())
            .build(),
    )
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}
