//! Shared harness for end-to-end tests: runs the real `reel` binary on 127.0.0.1:0 and
//! builds official AWS SDK clients pointed at it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use reel_sim::launcher::ReelProcess;

/// Root key every test server is started with.
pub const ROOT_KEY_ID: &str = "AKIAREELTESTROOT0001";
/// Secret of [`ROOT_KEY_ID`].
pub const ROOT_SECRET: &str = "reel-test-root-secret-0000000000000000000";
/// Region the test clients sign for.
pub const REGION: &str = "us-west-2";

/// A running `reel serve` child process ([`reel_sim::launcher`]); stopped on drop.
pub struct Reel {
    // Dropped first, so reel has stopped before its temp data dir goes.
    process: ReelProcess,
    /// Base URL from the `reel listening on` line.
    pub url: String,
    /// The data directory (owned by `_tmp` unless the test passed its own).
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// Every stdout line printed before the listening line (e.g. generated keys).
    pub preamble: Vec<String>,
}

/// Options for [`Reel::start_with`].
#[derive(Default, Clone)]
pub struct Options {
    /// Reuse this data directory (restart tests) instead of a fresh temp dir.
    pub data_dir: Option<PathBuf>,
    /// Extra `reel serve` flags.
    pub args: Vec<String>,
    /// Do not pass the root key flags (tests of generated keys).
    pub no_root_key: bool,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// `--listen` address; default 127.0.0.1:0 (a fixed port lets a node restart on it).
    pub listen: Option<std::net::SocketAddr>,
}

impl Reel {
    /// Start with a fresh data dir and the test root key.
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    /// Start with options; panics (failing the test) if the server does not come up.
    pub fn start_with(opts: Options) -> Self {
        let (tmp, data_dir) = match &opts.data_dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::tempdir().expect("tempdir");
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reel"));
        let listen = opts.listen.map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
        cmd.arg("serve").arg("--listen").arg(listen).arg("--data-dir").arg(&data_dir);
        if !opts.no_root_key {
            cmd.args(["--access-key-id", ROOT_KEY_ID, "--secret-access-key", ROOT_SECRET]);
        }
        cmd.args(&opts.args);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        Self::launch(cmd, data_dir, tmp)
    }

    /// Spawns a prepared `reel serve` command (logging to `<data_dir>/reel-test.log`) and
    /// waits for its `reel listening on` line; panics with the log if it never comes.
    pub fn launch(mut cmd: Command, data_dir: PathBuf, tmp: Option<tempfile::TempDir>) -> Self {
        cmd.env("RUST_LOG", "info,reel=debug");
        let process = ReelProcess::spawn(cmd, &data_dir.join("reel-test.log")).unwrap_or_else(|e| panic!("{e}"));
        let (url, preamble) = (process.url.clone(), process.preamble.clone());
        Self { process, url, data_dir, _tmp: tmp, preamble }
    }

    /// The server's log so far (for assertion messages).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Send SIGTERM and wait for a clean exit; returns whether it exited successfully.
    pub fn stop(mut self) -> bool {
        self.process.stop()
    }

    /// Like [`Reel::stop`], also returning every stdout line printed after the listening line.
    pub fn stop_with_stdout(mut self) -> (bool, Vec<String>) {
        let clean = self.process.stop();
        (clean, self.process.stdout_after_listening())
    }

    /// SIGKILL (a crashed node); the handle keeps its data dir and log.
    pub fn kill(&mut self) {
        self.process.kill()
    }

    /// Like [`Reel::stop`] but keeps the handle, so its data dir and log outlive the exit.
    pub fn sigterm(&mut self) -> bool {
        self.process.stop()
    }

    /// A control-plane client signed with the root key.
    pub fn kvs(&self) -> aws_sdk_kinesisvideo::Client {
        self.kvs_as(ROOT_KEY_ID, ROOT_SECRET)
    }

    /// A control-plane client signed with the given key.
    pub fn kvs_as(&self, key_id: &str, secret: &str) -> aws_sdk_kinesisvideo::Client {
        aws_sdk_kinesisvideo::Client::from_conf(
            aws_sdk_kinesisvideo::Config::builder()
                .behavior_version(aws_sdk_kinesisvideo::config::BehaviorVersion::latest())
                .region(aws_sdk_kinesisvideo::config::Region::new(REGION))
                .endpoint_url(&self.url)
                .credentials_provider(aws_credential_types::Credentials::new(key_id, secret, None, None, "reel-test"))
                .http_client(self.http_client())
                .build(),
        )
    }

    /// An archived-media client signed with the root key.
    pub fn archived(&self) -> aws_sdk_kinesisvideoarchivedmedia::Client {
        aws_sdk_kinesisvideoarchivedmedia::Client::from_conf(
            aws_sdk_kinesisvideoarchivedmedia::Config::builder()
                .behavior_version(aws_sdk_kinesisvideoarchivedmedia::config::BehaviorVersion::latest())
                .region(aws_sdk_kinesisvideoarchivedmedia::config::Region::new(REGION))
                .endpoint_url(&self.url)
                .credentials_provider(aws_credential_types::Credentials::new(
                    ROOT_KEY_ID,
                    ROOT_SECRET,
                    None,
                    None,
                    "reel-test",
                ))
                .http_client(self.http_client())
                .build(),
        )
    }

    /// An SDK HTTP client that trusts reel's generated CA when TLS is on.
    pub fn http_client(&self) -> aws_smithy_runtime_api::client::http::SharedHttpClient {
        use aws_smithy_http_client::tls;
        let mut store = tls::TrustStore::empty().with_native_roots(false);
        if let Ok(pem) = std::fs::read(self.ca_path()) {
            store = store.with_pem_certificate(pem);
        }
        aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
            .tls_context(tls::TlsContext::builder().with_trust_store(store).build().expect("tls context"))
            .build_https()
    }

    /// Path of the generated CA certificate (self-signed TLS mode).
    pub fn ca_path(&self) -> PathBuf {
        self.data_dir.join("tls").join("ca.pem")
    }
}

/// Write `contents` to `dir/name` and return the path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).expect("write file");
    p
}

pub mod browser;
pub mod cluster;
pub mod haproxy;
pub mod ingest;
pub mod nats;
pub mod netns;
pub mod producer;
pub mod s3;
pub mod signing;
pub mod ws;

/// The endpoints GetSignalingChannelEndpoint returns for a MASTER of `arn`, by protocol.
pub async fn master_endpoints(
    kvs: &aws_sdk_kinesisvideo::Client,
    arn: &str,
    protocols: &[aws_sdk_kinesisvideo::types::ChannelProtocol],
) -> std::collections::HashMap<aws_sdk_kinesisvideo::types::ChannelProtocol, String> {
    use aws_sdk_kinesisvideo::types::{ChannelRole, SingleMasterChannelEndpointConfiguration};
    let endpoints = kvs
        .get_signaling_channel_endpoint()
        .channel_arn(arn)
        .single_master_channel_endpoint_configuration(
            SingleMasterChannelEndpointConfiguration::builder()
                .set_protocols(Some(protocols.to_vec()))
                .role(ChannelRole::Master)
                .build(),
        )
        .send()
        .await
        .expect("GetSignalingChannelEndpoint");
    endpoints
        .resource_endpoint_list()
        .iter()
        .filter_map(|e| Some((e.protocol()?.clone(), e.resource_endpoint()?.to_string())))
        .collect()
}

/// The value of the Prometheus series `name` whose labels include all of `labels` (other
/// labels, such as the global `node`, are ignored), from `/metrics` text.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric_name, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        let wanted = |(k, v): &(&str, &str)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\""));
        (metric_name == name && labels.iter().all(wanted)).then(|| value.parse().ok()).flatten()
    })
}

/// Fails unless a reel-sim viewer `id` watched without error and received live media: at
/// least 20 video frames starting at a keyframe, and 50 audio frames. `context` (logs,
/// publisher stats) goes into the failure message.
pub fn assert_watched_live<E: std::fmt::Debug>(
    id: &str,
    watched: &Result<(), E>,
    stats: &reel_sim::viewer::ViewerStats,
    context: impl std::fmt::Display,
) {
    use reel_sim::viewer::Track;
    let frames = stats.frames();
    let video: Vec<_> = frames.iter().filter(|f| f.track == Track::Video).collect();
    let audio = frames.iter().filter(|f| f.track == Track::Audio).count();
    assert!(
        watched.is_ok() && video.len() >= 20 && video[0].keyframe && audio >= 50,
        "viewer {id}: {watched:?}, {} video frames (first a keyframe: {:?}), {audio} audio\n{context}",
        video.len(),
        video.first().map(|f| f.keyframe),
    );
}
