//! `reel` command line, config file and environment, merged into one [`Config`].
//!
//! Precedence: command-line flag > `REEL_*` environment variable > TOML file given by
//! `--config` > built-in default. Every flag of `reel serve` has a config-file key of
//! the same name with dashes turned into underscores.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::limits::Limits;

/// Top-level command line.
#[derive(Debug, Parser)]
#[command(name = "reel", version, about = "Self-hosted Kinesis Video Streams WebRTC server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `reel` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Run the server plus one simulated camera streaming into a storage-enabled channel,
    /// and print the /viewer URL where it plays live (cargo feature `demo`, on by default).
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
}

/// Flags of `reel demo`: every `reel serve` flag, plus the camera's.
#[cfg(feature = "demo")]
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Signaling channel the camera publishes into (stream `<name>-stream`).
    #[arg(long, default_value = "demo-camera")]
    pub channel_name: String,
    /// Camera payload bitrate in bits per second.
    #[arg(long, default_value_t = 1_000_000)]
    pub bitrate: u64,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of `reel serve`; each is optional so that the file and defaults can fill it.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML config file; its keys are the flag names with `_` for `-`.
    #[arg(long, env = "REEL_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port). Default 127.0.0.1:8080.
    #[arg(long, env = "REEL_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for metadata, media and generated secrets. Default ./reel-data.
    #[arg(long, env = "REEL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// AWS region reel presents itself as. Default us-west-2.
    #[arg(long, env = "REEL_REGION")]
    pub region: Option<String>,
    /// 12-digit account id used in ARNs. Default 123456789012.
    #[arg(long, env = "REEL_ACCOUNT_ID")]
    pub account_id: Option<String>,
    /// Base URL advertised in endpoint responses. Default: derived from the bound address.
    #[arg(long, env = "REEL_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// PEM certificate chain; enables TLS together with --tls-key.
    #[arg(long, env = "REEL_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "REEL_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Generate a self-signed certificate for the listen host (written to the data dir).
    #[arg(long, env = "REEL_TLS_SELF_SIGNED", num_args = 0..=1, default_missing_value = "true")]
    pub tls_self_signed: Option<bool>,
    /// Root access key id (with --secret-access-key); root may do everything.
    #[arg(long, env = "REEL_ACCESS_KEY_ID")]
    pub access_key_id: Option<String>,
    /// Root secret access key. Command-line flags are visible to every user of the machine
    /// (`ps`, `/proc/<pid>/cmdline`): prefer --secret-access-key-file or the environment.
    #[arg(long, env = "REEL_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: Option<Secret>,
    /// File holding the root secret access key (one line; a trailing newline is ignored).
    #[arg(long, env = "REEL_SECRET_ACCESS_KEY_FILE", conflicts_with = "secret_access_key")]
    pub secret_access_key_file: Option<PathBuf>,
    /// TOML file with more access keys, each with IAM-style policy statements.
    #[arg(long, env = "REEL_CREDENTIALS_FILE")]
    pub credentials_file: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, env = "REEL_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Run the embedded STUN/TURN server. Default true.
    #[arg(long, env = "REEL_TURN_ENABLED", num_args = 0..=1, default_missing_value = "true")]
    pub turn_enabled: Option<bool>,
    /// UDP (and TCP) address of the STUN/TURN server. Default: the --listen IP, port 3478
    /// (port 0 when --listen uses port 0, so test servers never collide).
    #[arg(long, env = "REEL_TURN_LISTEN")]
    pub turn_listen: Option<SocketAddr>,
    /// IP advertised in TURN URIs and relayed addresses. Default: the --public-url host when
    /// it is an IP, else the --turn-listen IP (127.0.0.1 when that is unspecified).
    #[arg(long, env = "REEL_TURN_PUBLIC_IP")]
    pub turn_public_ip: Option<IpAddr>,
    /// UDP address of the WebRTC media socket shared by all storage sessions.
    /// Default: the --listen IP, port 0.
    #[arg(long, env = "REEL_WEBRTC_LISTEN")]
    pub webrtc_listen: Option<SocketAddr>,
    /// IP advertised in the storage peer's host candidate (1:1 NAT). Default: the
    /// --webrtc-listen IP (or the --public-url host when that is unspecified).
    #[arg(long, env = "REEL_WEBRTC_PUBLIC_IP")]
    pub webrtc_public_ip: Option<IpAddr>,
    /// WebRTC media workers: each has its own UDP socket (port --webrtc-listen + k when
    /// that port is not 0) and I/O task; sessions are assigned round-robin. Default: one per
    /// CPU the process may use.
    #[arg(long, env = "REEL_WEBRTC_WORKERS")]
    pub webrtc_workers: Option<usize>,
    /// Log every SDP offer and answer of storage sessions.
    #[arg(long, env = "REEL_LOG_SDP", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub log_sdp: Option<bool>,
    /// Keep closed media segments in this S3 bucket (S3 or any S3-compatible server).
    #[arg(long, env = "REEL_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Object key prefix inside --s3-bucket.
    #[arg(long, env = "REEL_S3_PREFIX")]
    pub s3_prefix: Option<String>,
    /// S3 endpoint URL (for S3-compatible servers); default: AWS for --s3-region.
    #[arg(long, env = "REEL_S3_ENDPOINT_URL")]
    pub s3_endpoint_url: Option<String>,
    /// Region of --s3-bucket. Default: --region.
    #[arg(long, env = "REEL_S3_REGION")]
    pub s3_region: Option<String>,
    /// Use path-style bucket addressing (most S3-compatible servers need it).
    #[arg(long, env = "REEL_S3_PATH_STYLE", num_args = 0..=1, default_missing_value = "true")]
    pub s3_path_style: Option<bool>,
    /// Access key for S3 (default: AWS_ACCESS_KEY_ID).
    #[arg(long, env = "REEL_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    /// Secret key for S3 (default: AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "REEL_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<Secret>,
    /// Metadata database: a `sqlite:` path (default: `<data-dir>/meta.db`) or
    /// `postgres://user:pass@host:port/db`, which cluster nodes share.
    #[arg(long, env = "REEL_METADATA_URL", hide_env_values = true)]
    pub metadata_url: Option<MetadataUrl>,
    /// Cluster bus for signaling across nodes: `nats://host:port` (several comma-separated).
    /// Default: none, signaling stays within this process.
    #[arg(long, env = "REEL_BUS_URL")]
    pub bus_url: Option<String>,
    /// This node's name in a cluster (metrics label, leases, logs). Default: the hostname.
    #[arg(long, env = "REEL_NODE_ID")]
    pub node_id: Option<String>,
    /// Who may read `/metrics`: `off`, `open`, or `auth` (a SigV4-signed GET by a key allowed
    /// `reel:GetMetrics`, or the --metrics-token-file bearer token). Default: open when
    /// --listen is a loopback address, else auth.
    #[arg(long, env = "REEL_METRICS", value_enum)]
    pub metrics: Option<MetricsAccess>,
    /// File holding a bearer token that may read `/metrics` (`Authorization: Bearer …`).
    #[arg(long, env = "REEL_METRICS_TOKEN_FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// Put channel ARNs in metric labels. Default false (names stay out of the scrape).
    #[arg(long, env = "REEL_METRICS_CHANNEL_LABELS", num_args = 0..=1, default_missing_value = "true")]
    pub metrics_channel_labels: Option<bool>,
    /// Web origins whose pages may call the APIs and read playback URLs from a browser (CORS):
    /// `*` (default, as KVS answers), `none`, or origins such as `https://app.example.com`
    /// (repeat the flag, or separate with commas).
    #[arg(long = "cors-origin", env = "REEL_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origin: Option<Vec<String>>,
    /// Quotas; only settable in the config file (`[limits]` table).
    #[arg(skip)]
    #[serde(default)]
    pub limits: Option<Limits>,
}

/// Errors while assembling the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// The resolved server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub region: String,
    pub account_id: String,
    /// Explicit public base URL (no trailing slash); `None` = derive from the bound address.
    pub public_url: Option<String>,
    pub tls: TlsMode,
    /// The root key (`--access-key-id` with `--secret-access-key[-file]`).
    pub root_key: Option<(String, Secret)>,
    pub credentials_file: Option<PathBuf>,
    pub log_format: LogFormat,
    pub limits: Limits,
    /// The embedded STUN/TURN server.
    pub turn: TurnSettings,
    /// Where closed media segments are kept besides the local disk; `None` = local only.
    pub s3: Option<S3Settings>,
    /// The storage peer's WebRTC media socket.
    pub webrtc: WebRtcSettings,
    /// The metadata database URL (`--metadata-url`); `None` = SQLite in the data dir.
    pub metadata_url: Option<MetadataUrl>,
    /// This node's name (`--node-id`, default the hostname).
    pub node_id: String,
    /// The cluster bus (`--bus-url`); `None` = in-process signaling only.
    pub bus_url: Option<String>,
    /// Who may read `/metrics` and what its labels reveal.
    pub metrics: MetricsSettings,
    /// Which web origins may call reel from a browser (`--cors-origin`).
    pub cors: crate::api::cors::CorsPolicy,
}

/// Who may read `GET /metrics` (`--metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    /// Not served (404 `UnknownOperationException`).
    Off,
    /// Anyone who can reach the listener.
    Open,
    /// A SigV4-signed request by a key allowed `reel:GetMetrics`, or the bearer token.
    Auth,
}

/// `/metrics` settings (`--metrics`, `--metrics-token-file`, `--metrics-channel-labels`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Who may read it.
    pub access: MetricsAccess,
    /// Bearer token accepted in `auth` mode.
    pub token: Option<MetricsToken>,
    /// Whether channel ARNs appear in labels.
    pub channel_labels: bool,
}

/// The `/metrics` bearer token; its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct MetricsToken(pub String);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(***)")
    }
}

/// A metadata database URL; its `Debug` hides the password so configs can be logged.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct MetadataUrl(pub String);

impl std::fmt::Debug for MetadataUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_password(&self.0))
    }
}

impl From<String> for MetadataUrl {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for MetadataUrl {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// A secret setting (secret access keys): `Debug` prints `***`, so configurations and
/// command lines can be logged; [`Secret::expose`] gives the value to the one user.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// Read a secret from `path`: the file's text without its trailing line break.
fn read_secret_file(path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(ConfigError::Invalid(format!("--secret-access-key-file {} is empty", path.display())));
    }
    Ok(Secret::from(secret))
}

/// `scheme://user:secret@host/db` → `scheme://user:***@host/db` (other URLs unchanged).
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let Some((userinfo, host)) = rest.split_once('@') else { return url.to_string() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// The machine's hostname (Linux), or `reel` when it cannot be read.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "reel".into())
}

/// The storage peer's UDP media socket and what it advertises (`--webrtc-*`, `--log-sdp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRtcSettings {
    /// Where the one shared UDP socket binds.
    pub listen: SocketAddr,
    /// Explicit advertised IP (`--webrtc-public-ip`).
    pub public_ip: Option<IpAddr>,
    /// Log offers and answers (`--log-sdp`, `REEL_LOG_SDP=1`).
    pub log_sdp: bool,
    /// Media workers, each with its own socket and task (`--webrtc-workers`).
    pub workers: usize,
}

/// Default number of WebRTC media workers: one per CPU the process may use (at most
/// [`MAX_WEBRTC_WORKERS`]), so ingest scales with the machine.
pub fn default_webrtc_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from).clamp(1, MAX_WEBRTC_WORKERS)
}
/// Longest receive coalescing accepted, in ms: beyond it, batching delays RTCP feedback
/// and distorts arrival times (the sender's bandwidth estimate) for little CPU saved.
pub const MAX_RECV_COALESCE_MS: u64 = 20;
/// Most WebRTC media workers accepted.
pub const MAX_WEBRTC_WORKERS: usize = 64;

/// The S3 backend of the media store (`--s3-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    pub prefix: String,
    pub endpoint_url: Option<String>,
    pub region: String,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

/// Where and whether the embedded STUN/TURN server runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnSettings {
    /// `false` = no TURN server and no TURN URIs in GetIceServerConfig.
    pub enabled: bool,
    /// UDP listen address; TCP listens on the same address (another free port when 0).
    pub listen: SocketAddr,
    /// Explicit advertised IP (`--turn-public-ip`).
    pub public_ip: Option<IpAddr>,
}

/// Default TURN/STUN port (IANA).
pub const DEFAULT_TURN_PORT: u16 = 3478;

/// How the listener speaks TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain HTTP / ws.
    Off,
    /// Certificate and key from PEM files.
    Files { cert: PathBuf, key: PathBuf },
    /// Generate a self-signed certificate for the listen host.
    SelfSigned,
}

impl Config {
    /// The root key as the credential store takes it (id, secret).
    pub fn root_key_pair(&self) -> Option<(String, String)> {
        self.root_key.as_ref().map(|(id, secret)| (id.clone(), secret.expose().to_string()))
    }

    /// Whether this node shares its metadata with others (a Postgres `--metadata-url`):
    /// then stream writes need leases, as several nodes could serve a stream.
    pub fn shares_metadata(&self) -> bool {
        self.metadata_url.as_ref().is_some_and(|u| u.0.starts_with("postgres://") || u.0.starts_with("postgresql://"))
    }

    /// Merge flags (already merged with env by clap) over the config file over defaults.
    pub fn resolve(cli: ServeArgs) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => ServeArgs::default(),
        };
        let m = Merged { cli, file };
        let listen = m.pick(|a| a.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let account_id = m.pick(|a| a.account_id.clone()).unwrap_or_else(|| "123456789012".into());
        if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfigError::Invalid(format!("--account-id must be 12 digits, got {account_id:?}")));
        }
        let region = m.pick(|a| a.region.clone()).unwrap_or_else(|| "us-west-2".into());
        if region.is_empty() || !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(ConfigError::Invalid(format!("--region must match [a-z0-9-]+, got {region:?}")));
        }
        let public_url = m.pick(|a| a.public_url.clone()).map(|u| u.trim_end_matches('/').to_string());
        if let Some(u) = public_url.as_ref().filter(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            return Err(ConfigError::Invalid(format!("--public-url must start with http:// or https://, got {u:?}")));
        }
        let tls = match (m.pick(|a| a.tls_cert.clone()), m.pick(|a| a.tls_key.clone()), m.pick(|a| a.tls_self_signed)) {
            (Some(_), Some(_), Some(true)) => {
                return Err(ConfigError::Invalid("--tls-self-signed conflicts with --tls-cert/--tls-key".into()));
            }
            (Some(cert), Some(key), _) => TlsMode::Files { cert, key },
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(ConfigError::Invalid("--tls-cert and --tls-key must be given together".into()));
            }
            (None, None, Some(true)) => TlsMode::SelfSigned,
            (None, None, _) => TlsMode::Off,
        };
        let secret = match (m.pick(|a| a.secret_access_key.clone()), m.pick(|a| a.secret_access_key_file.clone())) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "--secret-access-key and --secret-access-key-file are mutually exclusive".into(),
                ));
            }
            (Some(secret), None) => Some(secret),
            (None, Some(path)) => Some(read_secret_file(&path)?),
            (None, None) => None,
        };
        let root_key = match (m.pick(|a| a.access_key_id.clone()), secret) {
            (Some(id), Some(secret)) => Some((id, secret)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid(
                    "--access-key-id and --secret-access-key (or --secret-access-key-file) must be given together"
                        .into(),
                ));
            }
        };
        let turn = TurnSettings {
            enabled: m.pick(|a| a.turn_enabled).unwrap_or(true),
            listen: m.pick(|a| a.turn_listen).unwrap_or_else(|| {
                let port = if listen.port() == 0 { 0 } else { DEFAULT_TURN_PORT };
                SocketAddr::new(listen.ip(), port)
            }),
            public_ip: m.pick(|a| a.turn_public_ip),
        };
        let s3 = match m.pick(|a| a.s3_bucket.clone()) {
            None => None,
            Some(bucket) => {
                let env = |k: &str| std::env::var(k).ok();
                let access_key_id = m.pick(|a| a.s3_access_key_id.clone()).or_else(|| env("AWS_ACCESS_KEY_ID"));
                let secret = m
                    .pick(|a| a.s3_secret_access_key.clone())
                    .or_else(|| env("AWS_SECRET_ACCESS_KEY").map(Secret::from));
                let (Some(access_key_id), Some(secret_access_key)) = (access_key_id, secret) else {
                    return Err(ConfigError::Invalid(
                        "--s3-bucket needs --s3-access-key-id and --s3-secret-access-key (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)".into(),
                    ));
                };
                Some(S3Settings {
                    bucket,
                    prefix: m.pick(|a| a.s3_prefix.clone()).unwrap_or_default(),
                    endpoint_url: m.pick(|a| a.s3_endpoint_url.clone()),
                    region: m.pick(|a| a.s3_region.clone()).unwrap_or_else(|| region.clone()),
                    path_style: m.pick(|a| a.s3_path_style).unwrap_or(false),
                    access_key_id,
                    secret_access_key,
                })
            }
        };
        let workers = m.pick(|a| a.webrtc_workers).unwrap_or_else(default_webrtc_workers);
        if !(1..=MAX_WEBRTC_WORKERS).contains(&workers) {
            return Err(ConfigError::Invalid(format!(
                "--webrtc-workers must be 1..={MAX_WEBRTC_WORKERS}, got {workers}"
            )));
        }
        let limits: Limits = m.pick(|a| a.limits.clone()).unwrap_or_default();
        let coalesce = limits.storage_session.recv_coalesce_ms;
        if coalesce > MAX_RECV_COALESCE_MS {
            return Err(ConfigError::Invalid(format!(
                "[limits.storage_session] recv_coalesce_ms must be at most {MAX_RECV_COALESCE_MS}, got {coalesce}"
            )));
        }
        if let Err(e) = limits.storage_session.fragmenter_config().validate() {
            return Err(ConfigError::Invalid(format!(
                "[limits.storage_session] fragment_target_ms / fragment_max_ms: {e}"
            )));
        }
        if let Err(e) = limits.put_media.validate() {
            return Err(ConfigError::Invalid(format!("[limits.put_media] {e}")));
        }
        let metadata_url = m.pick(|a| a.metadata_url.clone());
        if let Some(url) = &metadata_url {
            let ok = ["sqlite:", "postgres://", "postgresql://"].iter().any(|p| url.0.starts_with(p));
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "--metadata-url must start with sqlite:, postgres:// or postgresql://, got {url:?}"
                )));
            }
        }
        let postgres =
            metadata_url.as_ref().is_some_and(|u| u.0.starts_with("postgres://") || u.0.starts_with("postgresql://"));
        if postgres && s3.is_none() {
            return Err(ConfigError::Invalid(
                "cluster mode (a postgres:// --metadata-url) needs the S3 backend (--s3-bucket and its credentials): \
                 every node must read every fragment"
                    .into(),
            ));
        }
        let bus_url = m.pick(|a| a.bus_url.clone());
        if let Some(url) = bus_url
            .as_ref()
            .filter(|u| !u.split(',').all(|u| ["nats://", "tls://"].iter().any(|p| u.trim().starts_with(p))))
        {
            return Err(ConfigError::Invalid(format!("--bus-url must be nats:// (or tls://) URLs, got {url:?}")));
        }
        let cluster = &limits.cluster;
        if cluster.heartbeat_ms == 0 || cluster.node_timeout_ms < 2 * cluster.heartbeat_ms {
            return Err(ConfigError::Invalid(format!(
                "[limits.cluster] needs heartbeat_ms > 0 and node_timeout_ms ≥ 2 × heartbeat_ms, got {} / {}",
                cluster.heartbeat_ms, cluster.node_timeout_ms
            )));
        }
        let node_id = m.pick(|a| a.node_id.clone()).unwrap_or_else(hostname);
        if node_id.is_empty() || !node_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(ConfigError::Invalid(format!("--node-id must match [A-Za-z0-9._-]+, got {node_id:?}")));
        }
        let metrics_token = match m.pick(|a| a.metrics_token_file.clone()) {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                let token = text.trim().to_string();
                if token.len() < 16 {
                    return Err(ConfigError::Invalid(format!(
                        "--metrics-token-file {} must hold a token of at least 16 characters",
                        path.display()
                    )));
                }
                Some(MetricsToken(token))
            }
        };
        let metrics = MetricsSettings {
            access: m.pick(|a| a.metrics).unwrap_or(if listen.ip().is_loopback() {
                MetricsAccess::Open
            } else {
                MetricsAccess::Auth
            }),
            token: metrics_token,
            channel_labels: m.pick(|a| a.metrics_channel_labels).unwrap_or(false),
        };
        for cidr in &limits.turn.allowed_peer_cidrs {
            if crate::signaling::turn_policy::parse_cidr(cidr).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "[limits.turn] allowed_peer_cidrs: {cidr:?} is not a CIDR such as 10.0.0.0/8"
                )));
            }
        }
        let http = &limits.http;
        if http.max_connections == 0 || http.max_connections_per_ip == 0 || http.audit_queue_events == 0 {
            return Err(ConfigError::Invalid(
                "[limits.http] max_connections, max_connections_per_ip and audit_queue_events must be > 0".into(),
            ));
        }
        let cors = crate::api::cors::CorsPolicy::parse(&m.pick(|a| a.cors_origin.clone()).unwrap_or_default())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let webrtc = WebRtcSettings {
            listen: m.pick(|a| a.webrtc_listen).unwrap_or_else(|| SocketAddr::new(listen.ip(), 0)),
            public_ip: m.pick(|a| a.webrtc_public_ip),
            log_sdp: m.pick(|a| a.log_sdp).unwrap_or(false),
            workers,
        };
        Ok(Self {
            webrtc,
            s3,
            turn,
            listen,
            data_dir: m.pick(|a| a.data_dir.clone()).unwrap_or_else(|| PathBuf::from("./reel-data")),
            region,
            account_id,
            public_url,
            tls,
            root_key,
            credentials_file: m.pick(|a| a.credentials_file.clone()),
            log_format: m.pick(|a| a.log_format).unwrap_or_default(),
            limits,
            metadata_url,
            node_id,
            bus_url,
            metrics,
            cors,
        })
    }
}

/// The command line (with env) and the file, consulted in that order.
struct Merged {
    cli: ServeArgs,
    file: ServeArgs,
}

impl Merged {
    fn pick<T>(&self, f: impl Fn(&ServeArgs) -> Option<T>) -> Option<T> {
        f(&self.cli).or_else(|| f(&self.file))
    }
}

fn read_file(path: &Path) -> Result<ServeArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source: Box::new(source) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply() {
        let c = Config::resolve(ServeArgs::default()).expect("defaults are valid");
        assert_eq!(c.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(c.region, "us-west-2");
        assert_eq!(c.account_id, "123456789012");
        assert_eq!(c.tls, TlsMode::Off);
        assert_eq!(c.limits.max_storage_enabled_channels, 100);
        assert!(c.turn.enabled);
        assert_eq!(c.turn.listen, "127.0.0.1:3478".parse().expect("addr"));
    }

    #[test]
    fn turn_follows_an_ephemeral_listen_port_and_file_settings() {
        let c = Config::resolve(ServeArgs { listen: Some("127.0.0.1:0".parse().expect("addr")), ..Default::default() })
            .expect("valid");
        assert_eq!(c.turn.listen, "127.0.0.1:0".parse().expect("addr"));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("reel.toml");
        std::fs::write(
            &path,
            "turn_listen = \"0.0.0.0:3479\"\nturn_public_ip = \"192.0.2.7\"\n[limits.signaling]\nmax_viewers_per_channel = 3\n",
        )
        .expect("write");
        let c = Config::resolve(ServeArgs { config: Some(path), ..Default::default() }).expect("valid");
        assert_eq!(c.turn.listen, "0.0.0.0:3479".parse().expect("addr"));
        assert_eq!(c.turn.public_ip, Some("192.0.2.7".parse().expect("ip")));
        assert_eq!(c.limits.signaling.max_viewers_per_channel, 3);
        assert_eq!(c.limits.signaling.sdp_tps_per_connection, 5.0);
    }

    #[test]
    fn file_fills_and_flags_win() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("reel.toml");
        std::fs::write(
            &path,
            "region = \"eu-west-1\"\naccount_id = \"000000000001\"\n[limits]\nmax_storage_enabled_channels = 3\n",
        )
        .expect("write");
        let cli = ServeArgs { config: Some(path), region: Some("ap-south-1".into()), ..Default::default() };
        let c = Config::resolve(cli).expect("valid");
        assert_eq!(c.region, "ap-south-1");
        assert_eq!(c.account_id, "000000000001");
        assert_eq!(c.limits.max_storage_enabled_channels, 3);
        assert_eq!(c.limits.max_tags_per_resource, 50);
    }

    #[test]
    fn bad_values_are_refused() {
        let bad = ServeArgs { account_id: Some("12".into()), ..Default::default() };
        assert!(matches!(Config::resolve(bad), Err(ConfigError::Invalid(_))));
        let half_key = ServeArgs { access_key_id: Some("AKID".into()), ..Default::default() };
        assert!(matches!(Config::resolve(half_key), Err(ConfigError::Invalid(_))));
        let no_workers = ServeArgs { webrtc_workers: Some(0), ..Default::default() };
        assert!(matches!(Config::resolve(no_workers), Err(ConfigError::Invalid(_))));
        let mut limits = Limits::default();
        limits.storage_session.recv_coalesce_ms = MAX_RECV_COALESCE_MS + 1;
        let slow = ServeArgs { limits: Some(limits), ..Default::default() };
        assert!(matches!(Config::resolve(slow), Err(ConfigError::Invalid(m)) if m.contains("recv_coalesce_ms")));
        for (target, max) in [(0, 12_000), (4_000, 3_000), (11_000, 12_000), (2_000, 31_000)] {
            let mut limits = Limits::default();
            limits.storage_session.fragment_target_ms = target;
            limits.storage_session.fragment_max_ms = max;
            let args = ServeArgs { limits: Some(limits), ..Default::default() };
            assert!(
                matches!(Config::resolve(args), Err(ConfigError::Invalid(m)) if m.contains("fragment_target_ms")),
                "{target}/{max}"
            );
        }
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = ServeArgs {
            access_key_id: Some("AKIAROOT".into()),
            secret_access_key: Some("root-secret-value".into()),
            s3_bucket: Some("b".into()),
            s3_access_key_id: Some("AKIAS3".into()),
            s3_secret_access_key: Some("s3-secret-value".into()),
            metadata_url: Some("postgres://reel:db-password@db:5432/reel".into()),
            data_dir: Some(dir.path().into()),
            ..Default::default()
        };
        let shown_args = format!("{args:?}");
        let config = Config::resolve(args).expect("valid");
        let shown = format!("{config:?}");
        for text in [&shown_args, &shown] {
            for secret in ["root-secret-value", "s3-secret-value", "db-password"] {
                assert!(!text.contains(secret), "{secret} leaked: {text}");
            }
            assert!(text.contains("AKIAROOT"), "ids stay visible: {text}");
        }
        assert_eq!(config.root_key.as_ref().map(|(_, s)| s.expose()), Some("root-secret-value"));
    }

    #[test]
    fn secret_access_key_from_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file-secret\n").expect("write");
        let args = ServeArgs {
            access_key_id: Some("AKIAROOT".into()),
            secret_access_key_file: Some(path.clone()),
            ..Default::default()
        };
        let c = Config::resolve(args).expect("valid");
        assert_eq!(
            c.root_key.as_ref().map(|(id, s)| (id.as_str(), s.expose())),
            Some(("AKIAROOT", "from-file-secret"))
        );
        let both = ServeArgs {
            access_key_id: Some("AKIAROOT".into()),
            secret_access_key: Some("x".into()),
            secret_access_key_file: Some(path.clone()),
            ..Default::default()
        };
        assert!(matches!(Config::resolve(both), Err(ConfigError::Invalid(m)) if m.contains("mutually exclusive")));
        let missing = ServeArgs {
            access_key_id: Some("AKIAROOT".into()),
            secret_access_key_file: Some(dir.path().join("nope")),
            ..Default::default()
        };
        assert!(matches!(Config::resolve(missing), Err(ConfigError::Read { .. })));
        std::fs::write(&path, "\n").expect("write");
        let empty = ServeArgs {
            access_key_id: Some("AKIAROOT".into()),
            secret_access_key_file: Some(path),
            ..Default::default()
        };
        assert!(matches!(Config::resolve(empty), Err(ConfigError::Invalid(m)) if m.contains("empty")));
    }

    #[test]
    fn metrics_access_follows_the_listener_and_turn_cidrs_are_checked() {
        let c = Config::resolve(ServeArgs::default()).expect("valid");
        assert_eq!(c.metrics.access, MetricsAccess::Open, "loopback listener");
        assert!(!c.metrics.channel_labels);
        let public = ServeArgs { listen: Some("0.0.0.0:8080".parse().expect("addr")), ..Default::default() };
        assert_eq!(Config::resolve(public).expect("valid").metrics.access, MetricsAccess::Auth);
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, "short\n").expect("write");
        let bad = ServeArgs { metrics_token_file: Some(token.clone()), ..Default::default() };
        assert!(matches!(Config::resolve(bad), Err(ConfigError::Invalid(m)) if m.contains("--metrics-token-file")));
        std::fs::write(&token, "a-long-enough-metrics-token\n").expect("write");
        let good = ServeArgs { metrics_token_file: Some(token), ..Default::default() };
        let c = Config::resolve(good).expect("valid");
        assert_eq!(c.metrics.token, Some(MetricsToken("a-long-enough-metrics-token".into())));
        assert!(!format!("{c:?}").contains("a-long-enough"), "token redacted in Debug");
        let mut limits = Limits::default();
        limits.turn.allowed_peer_cidrs = vec!["10.0.0.0/8".into(), "not-a-cidr".into()];
        let bad = ServeArgs { limits: Some(limits), ..Default::default() };
        assert!(matches!(Config::resolve(bad), Err(ConfigError::Invalid(m)) if m.contains("allowed_peer_cidrs")));
    }

    #[test]
    fn one_media_worker_per_cpu_by_default() {
        let c = Config::resolve(ServeArgs::default()).expect("valid");
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(c.webrtc.workers, cpus.clamp(1, MAX_WEBRTC_WORKERS));
    }

    #[test]
    fn metadata_url_and_node_id() {
        let c = Config::resolve(ServeArgs::default()).expect("valid");
        assert_eq!(c.metadata_url, None, "SQLite in the data dir by default");
        assert!(!c.shares_metadata());
        assert!(!c.node_id.is_empty(), "the hostname by default");
        let pg = ServeArgs {
            metadata_url: Some("postgres://reel:hunter2@127.0.0.1:5432/reel".into()),
            node_id: Some("node-1".into()),
            ..Default::default()
        };
        // Cluster mode keeps media in S3: refused without it.
        let no_s3 = Config::resolve(pg.clone());
        assert!(matches!(no_s3, Err(ConfigError::Invalid(m)) if m.contains("needs the S3 backend")));
        let pg = ServeArgs {
            s3_bucket: Some("media".into()),
            s3_access_key_id: Some("AKIAS3".into()),
            s3_secret_access_key: Some("s3-secret".into()),
            ..pg
        };
        let c = Config::resolve(pg).expect("valid");
        assert_eq!(c.node_id, "node-1");
        assert!(c.shares_metadata(), "Postgres metadata: a cluster node");
        let shown = format!("{c:?}");
        assert!(shown.contains("postgres://reel:***@127.0.0.1:5432/reel") && !shown.contains("hunter2"), "{shown}");
        let bad = ServeArgs { metadata_url: Some("mysql://x".into()), ..Default::default() };
        assert!(matches!(Config::resolve(bad), Err(ConfigError::Invalid(m)) if m.contains("--metadata-url")));
        let bad = ServeArgs { node_id: Some("a b".into()), ..Default::default() };
        assert!(matches!(Config::resolve(bad), Err(ConfigError::Invalid(m)) if m.contains("--node-id")));
    }
}
