//! The `reel-load` generator: N simulated cameras against one recorder, and what it cost.
//!
//! A run: provision N storage-enabled channels (control plane, before anything is measured),
//! start a session every `1/ramp` s (ConnectAsMaster → JoinStorageSession → answer → ICE/DTLS →
//! publish, see [`crate::publisher::publish_to_storage`]), keep all of them publishing until
//! `ramp end + duration`, then read back what was stored.
//!
//! Measured (see [`report::LoadReport`] for every field):
//! - **CPU per session-second**: `utime+stime` of the recorder (`/proc/<pid>/stat`) over the
//!   *steady window*, which opens once the ramp is over, every session has connected or
//!   failed, and [`SETTLE`] has passed, and closes [`STEADY_END_MARGIN`] before publishers stop.
//! - **RSS per session**: `VmRSS` at the end of the steady window minus before the first session.
//! - **Packets**: datagrams the publishers sent (str0m transmit outputs) vs reel's
//!   `reel_storage_session_packets_total` + `reel_webrtc_unknown_datagrams_total` (deltas).
//! - **Join → first frame stored**: the first fragment's server timestamp (reel's arrival time of
//!   the first stored IDR; chunks are appended to the store as frames arrive) minus the instant
//!   JoinStorageSession was sent; **→ first fragment closed**: that plus the fragment's
//!   length (it closes when the next IDR arrives); **→ readable**: the first
//!   `AWS_KINESISVIDEO_FRAGMENT_NUMBER` tag on a GetMedia `EARLIEST` body opened beforehand.
//! - **Close → visible** (probe streams): a fragment's close is estimated as
//!   `ServerTimestamp + FragmentLengthInMilliseconds` (the arrival of the IDR that cut it);
//!   ListFragments is polled every [`FAST_POLL`] around each predicted close (else every
//!   [`SLOW_POLL`]); visible = send time of the first poll whose answer lists it. GetMedia
//!   visibility is the arrival of its document on a live `EARLIEST` reader.
//! - **HLS lag**: `now − (last #EXT-X-PROGRAM-DATE-TIME + #EXTINF)` of a LIVE media playlist
//!   (producer timestamps, i.e. the publisher's clock), fetched every [`HLS_POLL`].
//! - **Stored / payload**: ListFragments sizes over the stored media duration × the source's
//!   sample byte rate (what a recorder must keep: video NAL units without SPS/PPS/AUD/filler,
//!   plus Opus).
//! - **Stored / sent frames per track, A/V skew** ([`media`]): every stream is read back with
//!   GetMediaForFragmentList after the run ([`READBACK_BATCH`] fragments a call) and its
//!   blocks counted per track ([`mkv`]) against the frames each publisher wrote; the skew
//!   compares stored audio/video timestamps with the frames' send instants.
//!
//! **`reel-cluster`** ([`cluster`]): the same sessions against three reel nodes behind
//! HAProxy. The cameras enter through the load balancer; CPU and RSS are summed over the
//! three node processes; `/metrics` counters over the three nodes; and each probe stream's
//! ListFragments is polled on a node that is *not* the stream's writer (GetDataEndpoint,
//! asked once the session is connected, names the writer), so close → ListFragments
//! includes the hop through S3 and Postgres.
//!
//! **Live viewers** ([`viewers`], `--viewers-per-session K`): K simulated viewers
//! ([`crate::viewer`]) join each session through JoinStorageSessionAsViewer once it has
//! connected; the report's `viewers` section gives what they received, the glass-to-glass
//! latency (publisher write → viewer frame, paired by RTP time) and, with a baseline run
//! without viewers, reel's CPU per forwarded viewer-second.
//!
//! The publishers can be made to misbehave like real cameras (drifting clocks, wall-clock
//! RTCP sender reports, NTP steps, muted tracks): see [`RunOptions::sender`] and
//! [`crate::publisher::profile`].

mod baselines;
#[cfg(feature = "cluster")]
pub mod cluster;

/// Nodes the `reel-cluster` target runs by default.
pub const CLUSTER_NODES: usize = 3;
/// The thread name of the S3 server the `reel-cluster` target hosts in this process: its
/// CPU is measured apart from the generator's.
pub const S3_THREAD_NAME: &str = "s3s-fs";
pub mod media;
pub mod mkv;
pub mod procstat;
pub mod reel_process;
pub mod report;
pub mod stats;
pub mod viewers;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::kvs::{ApiError, FragmentMeta, KvsClient};
use crate::publisher::{
    MediaSource, PublisherConfig, PublisherStats, ReconnectPolicy, SenderProfile, StorageChannel, endpoint_ip,
    provision_storage_channel, publish_to_storage, publish_with_reconnect, unix_us,
};
use crate::sigv4::Signer;
use media::{MediaReport, SentLog};
use mkv::StoredStream;
use report::{LoadReport, Packets, Rss, Steady, Storage};
use stats::{Percentiles, TagScanner};

/// Wait after the ramp (and after every session has connected) before the steady window.
pub const SETTLE: Duration = Duration::from_secs(2);
/// The steady window closes this long before the publishers stop.
pub const STEADY_END_MARGIN: Duration = Duration::from_millis(500);
/// ListFragments poll interval around a predicted fragment close.
pub const FAST_POLL: Duration = Duration::from_millis(10);
/// ListFragments poll interval otherwise.
pub const SLOW_POLL: Duration = Duration::from_millis(200);
/// Fast polling starts this long before a predicted close…
const FAST_BEFORE: Duration = Duration::from_millis(40);
/// …and lasts at most this long after it.
const FAST_AFTER: Duration = Duration::from_millis(300);
/// HLS media playlist fetch interval (players reload about every second).
pub const HLS_POLL: Duration = Duration::from_millis(500);
/// Wait after publishers stop before reading counters and stored fragments back.
pub const DRAIN: Duration = Duration::from_secs(3);
/// Control-plane set-up calls in flight at once.
const PROVISION_CONCURRENCY: usize = 8;
/// Fragments per GetMediaForFragmentList call when reading streams back.
pub const READBACK_BATCH: usize = 100;
/// Streams read back at once.
const READBACK_CONCURRENCY: usize = 4;
/// Tag that marks each GetMedia document.
const FRAGMENT_NUMBER_TAG: &str = "AWS_KINESISVIDEO_FRAGMENT_NUMBER";

/// What the publishers record into (the seam for the side-by-side baselines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// reel: KVS storage sessions (the publishers answer reel's offers).
    Reel,
    /// Janus VideoRoom with recording on (the publishers offer; `reel_sim::janus`).
    Janus,
    /// The floor receiver: recvmmsg + SRTP decrypt + append (`reel_sim::floor`).
    Floor,
    /// Three reel nodes on Postgres + NATS + S3 behind HAProxy ([`cluster`]).
    #[serde(rename = "reel-cluster")]
    ReelCluster,
}

impl Target {
    /// reel, alone or as a cluster (storage sessions, the KVS read APIs).
    pub fn is_reel(self) -> bool {
        matches!(self, Target::Reel | Target::ReelCluster)
    }
}

/// Where reel runs.
#[derive(Debug, Clone)]
pub enum ReelProcess {
    /// Already running at `url`; CPU/RSS need its `pid`.
    Endpoint {
        /// Base URL (plain HTTP).
        url: String,
        /// Its process id, for `/proc`.
        pid: Option<u32>,
    },
    /// Start `bin` on `listen_ip` with a temporary data directory.
    Spawn {
        /// Path of the `reel` binary.
        bin: PathBuf,
        /// Address to listen on.
        listen_ip: IpAddr,
        /// TOML appended to its generated config file (e.g. `[limits.storage_session]` knobs).
        extra_config: String,
    },
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Concurrent sessions.
    pub sessions: usize,
    /// Sessions started per second.
    pub ramp_per_sec: f64,
    /// Publishing time after the ramp ends.
    pub duration: Duration,
    /// Payload bitrate per camera.
    pub bitrate_bps: u64,
    /// The recorder.
    pub target: Target,
    /// Where reel is.
    pub reel: ReelProcess,
    /// Address the publishers bind.
    pub bind_ip: IpAddr,
    /// Address the baseline recorders (Janus, floor) listen on; Janus needs a non-loopback
    /// address (inside `--netns`: the reel end of the veth pair).
    pub recorder_ip: IpAddr,
    /// Access key (root key when reel is spawned).
    pub access_key_id: String,
    /// Secret key.
    pub secret_access_key: String,
    /// Region.
    pub region: String,
    /// Sessions that also get the close→visible and HLS probes (0 disables them).
    pub probe_streams: usize,
    /// Prefix of channel and stream names (unique per run).
    pub name_prefix: String,
    /// `reel-cluster` only: threads each node runs (`--webrtc-workers` media threads and as
    /// many runtime workers, `TOKIO_WORKER_THREADS`), what an operator co-locating nodes on
    /// one box would give each (like a container's CPU share); `None` = each node's default,
    /// one of each per CPU it may use.
    pub cluster_node_threads: Option<usize>,
    /// `reel-cluster` only: how many nodes run ([`CLUSTER_NODES`] by default). One node
    /// measures what cluster mode itself costs (Postgres, NATS, S3) apart from co-locating
    /// several nodes on one box; probes then read from the writer itself.
    pub cluster_nodes: usize,
}

/// How the publishers of a run behave beyond [`LoadConfig`], and what is read back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunOptions {
    /// Clock behaviour of every publisher (drift, SR mapping, mutes).
    pub sender: SenderProfile,
    /// Read every stream back at the end and count stored frames per track (reel only).
    pub media_readback: bool,
    /// Start lost sessions over as a KVS master does ([`crate::publisher::publish_with_reconnect`]);
    /// `None`: a lost session counts as failed.
    pub reconnect: Option<ReconnectPolicy>,
    /// Live viewers joining each session once it has connected (0: none); see [`viewers`].
    pub viewers_per_session: usize,
    /// The viewers join before their session's master does ([`viewers::VIEWERS_FIRST_LEAD`]).
    pub viewers_first: bool,
    /// Publishers send with GSO ([`PublisherConfig::gso`]); off: one send per packet.
    pub gso: bool,
}

impl Default for RunOptions {
    /// Perfect senders, streams read back.
    fn default() -> Self {
        Self {
            sender: SenderProfile::default(),
            media_readback: true,
            reconnect: None,
            viewers_per_session: 0,
            viewers_first: false,
            gso: true,
        }
    }
}

/// Why a run could not happen at all (per-session failures are counted, not raised).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// reel could not be started.
    #[error(transparent)]
    Spawn(#[from] reel_process::SpawnError),
    /// The embedded media is unusable.
    #[error(transparent)]
    Source(#[from] crate::publisher::SourceError),
    /// Channel set-up failed.
    #[error("provisioning session {index}: {source}")]
    Provision {
        /// Which session.
        index: usize,
        /// The call that failed.
        source: ApiError,
    },
    /// A baseline recorder could not be started or used.
    #[error("{0:?} baseline: {1}")]
    Baseline(Target, String),
    /// Bad configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The cluster could not be started.
    #[cfg(feature = "cluster")]
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
}

/// The reel under test, as the run sees it.
#[derive(Debug, Clone)]
struct Recorder {
    /// Where the cameras enter (the load balancer for a cluster).
    url: String,
    /// The processes whose CPU and RSS are summed.
    pids: Vec<u32>,
    /// Every node's own URL (for `/metrics`); one entry, `url`, for a single reel.
    nodes: Vec<String>,
    /// Probe ListFragments on a node that is not the stream's writer.
    non_writer_reads: bool,
}

/// Everything the sampled probe tasks collect.
#[derive(Debug, Default)]
struct ProbeLog {
    /// Per session: first GetMedia document arrival (µs since epoch).
    first_readable_us: BTreeMap<usize, i64>,
    /// (session, fragment number) → GetMedia document arrival (µs), probe streams only.
    get_media_arrivals: BTreeMap<(usize, String), i64>,
    /// ListFragments close→visible samples (ms).
    list_visible_ms: Vec<f64>,
    /// Probe streams whose ListFragments were polled on a node other than the writer.
    non_writer_probes: usize,
    /// HLS lag samples: (sample time µs, lag ms).
    hls_lag: Vec<(i64, f64)>,
    /// Probe requests made (ListFragments + HLS playlists).
    probe_requests: u64,
    /// Probe errors (first few).
    errors: Vec<String>,
}

impl ProbeLog {
    fn error(&mut self, e: String) {
        if self.errors.len() < 5 {
            self.errors.push(e);
        }
    }
}

/// Runs one load test against `cfg.target` with [`RunOptions::default`] and returns its report.
pub async fn run(cfg: LoadConfig) -> Result<LoadReport, LoadError> {
    run_with(cfg, RunOptions::default()).await
}

/// Runs one load test against `cfg.target` with `opts` and returns its report. The floor
/// baseline has its own sender and ignores `opts.sender`.
pub async fn run_with(cfg: LoadConfig, opts: RunOptions) -> Result<LoadReport, LoadError> {
    if cfg.sessions == 0 || cfg.ramp_per_sec <= 0.0 || cfg.duration.is_zero() {
        return Err(LoadError::Config("sessions, ramp and duration must be positive".into()));
    }
    match cfg.target {
        Target::Reel => {}
        Target::Janus => return baselines::run_janus(&cfg, opts.sender, opts.gso).await,
        Target::Floor => return baselines::run_floor(&cfg).await,
        Target::ReelCluster => return run_cluster(cfg, opts).await,
    }
    let mut spawned = None;
    let (url, pid) = match &cfg.reel {
        ReelProcess::Endpoint { url, pid } => (url.clone(), *pid),
        ReelProcess::Spawn { bin, listen_ip, extra_config } => {
            let r = reel_process::SpawnedReel::start(
                bin,
                *listen_ip,
                extra_config,
                (&cfg.access_key_id, &cfg.secret_access_key),
                &cfg.region,
                cfg.sessions,
            )?;
            let out = (r.url.clone(), Some(r.pid));
            spawned = Some(r);
            out
        }
    };
    tracing::info!(%url, ?pid, "recorder ready");
    let rec = Recorder { nodes: vec![url.clone()], url, pids: pid.into_iter().collect(), non_writer_reads: false };
    let result = run_against(&cfg, opts, &rec).await;
    if let (Err(_), Some(r)) = (&result, &spawned) {
        tracing::warn!(log = %r.log_tail(3_000), "reel log tail");
    }
    if let Some(mut r) = spawned {
        let clean = r.stop();
        if !clean {
            tracing::warn!("reel did not exit cleanly on SIGTERM");
        }
    }
    result
}

/// The `reel-cluster` target: starts [`cluster::SpawnedCluster`] from `cfg.reel`'s binary
/// (which must be [`ReelProcess::Spawn`]), runs against its load balancer, stops it.
#[cfg(feature = "cluster")]
async fn run_cluster(cfg: LoadConfig, opts: RunOptions) -> Result<LoadReport, LoadError> {
    let ReelProcess::Spawn { bin, listen_ip, extra_config } = &cfg.reel else {
        return Err(LoadError::Config("the reel-cluster target starts its nodes itself: give a reel binary".into()));
    };
    let config = reel_process::config_toml(extra_config, cfg.sessions);
    let key = (cfg.access_key_id.as_str(), cfg.secret_access_key.as_str());
    let mut c = cluster::SpawnedCluster::start(
        bin,
        *listen_ip,
        &config,
        key,
        &cfg.region,
        cfg.cluster_nodes,
        cfg.cluster_node_threads,
    )
    .await?;
    let rec = Recorder {
        url: c.url().to_string(),
        pids: c.nodes.iter().map(|n| n.pid()).collect(),
        nodes: c.nodes.iter().map(|n| n.url.clone()).collect(),
        non_writer_reads: c.nodes.len() > 1,
    };
    tracing::info!(url = %rec.url, pids = ?rec.pids, "cluster ready");
    let result = run_against(&cfg, opts, &rec).await;
    if result.is_err() {
        tracing::warn!(log = %c.log_tail(2_000), "cluster log tails");
    }
    if !c.stop() {
        tracing::warn!("a cluster node did not exit cleanly on SIGTERM");
    }
    result
}

#[cfg(not(feature = "cluster"))]
async fn run_cluster(_cfg: LoadConfig, _opts: RunOptions) -> Result<LoadReport, LoadError> {
    Err(LoadError::Config("reel-sim was built without the `cluster` feature".into()))
}

/// Every node's `/metrics`, concatenated (counters are summed by name); `None` if any fails.
async fn scrape(client: &KvsClient, rec: &Recorder) -> Option<String> {
    let mut all = String::new();
    for node in &rec.nodes {
        all.push_str(&client.get_text(&metrics_url(node)).await.ok()?);
        all.push('\n');
    }
    Some(all)
}

fn metrics_url(base: &str) -> String {
    format!("{}/metrics", base.trim_end_matches('/'))
}

/// Sum of `procstat` `f` over `pids`; `None` if any is unreadable (or there are none).
fn sum_over<T: std::iter::Sum<T>>(pids: &[u32], f: impl Fn(u32) -> std::io::Result<T>) -> Option<T> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| f(p).ok()).sum()
}

async fn run_against(cfg: &LoadConfig, opts: RunOptions, rec: &Recorder) -> Result<LoadReport, LoadError> {
    let url = rec.url.as_str();
    let pid = rec.pids.first().copied();
    let signer = Signer::new(&cfg.access_key_id, &cfg.secret_access_key, &cfg.region);
    let client = Arc::new(KvsClient::new(url, signer));
    let source = Arc::new(MediaSource::new(cfg.bitrate_bps)?);
    let ticks = procstat::clock_ticks_per_sec();

    // 1. Provision every channel before anything is measured.
    let t_prov = Instant::now();
    let channels = provision(cfg, &client).await?;
    let data_endpoint = client
        .data_endpoint(&channels[0].stream_arn, "GET_MEDIA")
        .await
        .map_err(|source| LoadError::Provision { index: 0, source })?;
    let provision_s = t_prov.elapsed().as_secs_f64();
    tracing::info!(sessions = channels.len(), secs = provision_s, "channels provisioned");

    // 2. Baselines.
    let metrics_before = scrape(&client, rec).await;
    let drops_before = procstat::udp_drops(endpoint_ip(url));
    let rss_before = sum_over(&rec.pids, procstat::rss_kib);

    // 3. Sessions, ramped.
    let stats: Vec<Arc<PublisherStats>> = (0..cfg.sessions).map(|_| PublisherStats::new()).collect();
    let probes = Arc::new(Mutex::new(ProbeLog::default()));
    let start = Instant::now() + Duration::from_millis(200);
    let ramp = Duration::from_secs_f64(cfg.sessions as f64 / cfg.ramp_per_sec);
    // Viewers that join first do so at `start`'s ramp; their masters follow a lead later.
    let lead = if opts.viewers_first && opts.viewers_per_session > 0 {
        viewers::viewers_first_lead(opts.viewers_per_session)
    } else {
        Duration::ZERO
    };
    let ramp_end = start + lead + ramp;
    let until = ramp_end + cfg.duration;
    let mut tasks = Vec::new();
    let mut starts = Vec::with_capacity(channels.len());
    for (i, channel) in channels.iter().enumerate() {
        let at = start + lead + Duration::from_secs_f64(i as f64 / cfg.ramp_per_sec);
        starts.push(at - lead);
        let mut pcfg = PublisherConfig::new(cfg.bind_ip, source.clone());
        // Live viewers pair every frame they get with its send instant.
        pcfg.record_all_frames = opts.viewers_per_session > 0;
        pcfg.record_audio_sends = opts.media_readback || opts.viewers_per_session > 0;
        pcfg.profile = opts.sender;
        pcfg.gso = opts.gso;
        let (c, ch, st) = (client.clone(), channel.clone(), stats[i].clone());
        let reconnect = opts.reconnect;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let _ = match reconnect {
                Some(policy) => publish_with_reconnect(&c, &ch, pcfg, st, until, policy).await,
                None => publish_to_storage(&c, &ch, pcfg, st, until).await,
            };
        }));
        let probe_all = i < cfg.probe_streams;
        let (c, arn, log, ep) = (client.clone(), channel.stream_arn.clone(), probes.clone(), data_endpoint.clone());
        tasks.push(tokio::spawn(async move {
            // Opened just before the session starts: EARLIEST waits for the first fragment.
            tokio::time::sleep_until((at - Duration::from_millis(100)).into()).await;
            get_media_probe(&c, &ep, &arn, i, probe_all, until + DRAIN, &log).await;
        }));
        if probe_all {
            let (c, arn, log, ep) = (client.clone(), channel.stream_arn.clone(), probes.clone(), data_endpoint.clone());
            let reader = rec.non_writer_reads.then(|| (rec.nodes.clone(), stats[i].clone()));
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                let ep = match reader {
                    None => ep,
                    Some((nodes, st)) => match non_writer(&c, &arn, &nodes, &st, until).await {
                        Ok(node) => {
                            lock(&log).non_writer_probes += 1;
                            node
                        }
                        Err(e) => {
                            lock(&log).error(format!("session {i}: no non-writer node to probe: {e}"));
                            return;
                        }
                    },
                };
                list_fragments_probe(&c, &ep, &arn, until, &log).await;
            }));
        }
        if i == 0 && cfg.probe_streams > 0 {
            let (c, arn, log) = (client.clone(), channel.stream_arn.clone(), probes.clone());
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                hls_probe(&c, &arn, until, &log).await;
            }));
        }
    }

    let plan = viewers::ViewerPlan {
        bind_ip: cfg.bind_ip,
        per_session: opts.viewers_per_session,
        join: if lead.is_zero() { viewers::Join::OnceConnected } else { viewers::Join::At(starts) },
        until,
    };
    let viewer_stats = viewers::spawn_viewers(&client, &channels, &stats, &plan, &mut tasks);

    // 4. The steady window.
    let viewers_settled = || viewer_stats.iter().all(|v| v.1.settled());
    let (steady, rss_steady) =
        steady_window(&stats, &viewers_settled, ramp_end, until, &rec.pids, endpoint_ip(url), ticks).await;
    let viewers_active = viewer_stats.iter().filter(|v| v.1.active()).count();
    let active_sessions = steady.as_ref().map_or(0, |s| s.active_sessions);
    let sessions_per_node = match rec.nodes.len() {
        1 => BTreeMap::new(),
        _ => sessions_per_node(&client, rec).await,
    };

    // 5. Stop, drain, read back.
    for t in tasks {
        let _ = t.await;
    }
    tokio::time::sleep(DRAIN).await;
    if opts.media_readback {
        // The last fragment of each session closes when reel ends the session (ICE
        // disconnect after the publisher stops): read back only once it has.
        wait_sessions_ended(&client, rec, SESSION_END_WAIT).await;
    }
    let metrics_after = scrape(&client, rec).await;
    let drops_after = procstat::udp_drops(endpoint_ip(url));
    let listings = list_all(&client, &data_endpoint, &channels).await;
    let stored = match opts.media_readback {
        true => Some(read_back_all(&client, &data_endpoint, &channels, &listings).await),
        false => None,
    };

    // 6. Figures.
    let snaps: Vec<_> = stats.iter().map(|s| s.snapshot()).collect();
    let probes = std::mem::take(&mut *probes.lock().unwrap_or_else(|e| e.into_inner()));
    let mut join_first_frame = Vec::new();
    let mut join_first_closed = Vec::new();
    let mut join_readable = Vec::new();
    let mut close_get_media = Vec::new();
    let mut storage = Storage::default();
    for (i, snap) in snaps.iter().enumerate() {
        let frags = match &listings[i] {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(session = i, error = %e, "ListFragments failed");
                continue;
            }
        };
        storage.add(frags);
        let Some(join_us) = snap.join_sent_us else { continue };
        if let Some(first) = frags.first() {
            join_first_frame.push(first.server_ms as f64 - join_us as f64 / 1000.0);
            join_first_closed.push((first.server_ms + first.length_ms) as f64 - join_us as f64 / 1000.0);
        }
        if let Some(&at) = probes.first_readable_us.get(&i) {
            join_readable.push((at - join_us) as f64 / 1000.0);
        }
        for f in frags.iter().skip(1) {
            if let Some(&at) = probes.get_media_arrivals.get(&(i, f.number.clone())) {
                close_get_media.push(at as f64 / 1000.0 - (f.server_ms + f.length_ms) as f64);
            }
        }
    }
    storage.finish(source.sample_bytes_per_sec(), snaps.iter().map(|s| s.sample_bytes).sum());
    let (failures, failure_examples) = tally_failures(&snaps);
    // Live viewers' datagrams (RTCP feedback, STUN) reach reel's session counter too.
    let viewer_packets: u64 = viewer_stats.iter().map(|v| v.1.packets_sent.load(Ordering::Relaxed)).sum();
    let sent = snaps.iter().map(|s| s.packets_sent).sum::<u64>() + viewer_packets;
    let mut packets = Packets::new(sent, metrics_before.as_deref(), metrics_after.as_deref());
    packets.recorder_socket_drops = run_drops(drops_before, drops_after, steady.as_ref());
    packets.send_errors = snaps.iter().map(|s| s.send_errors).sum();
    packets.frames_dropped = snaps.iter().map(|s| s.frames_dropped).sum();
    let hls_samples: Vec<f64> = probes.hls_lag.iter().map(|(_, l)| *l).collect();
    let run_secs = (until - start).as_secs_f64();
    let mut notes = probes.errors.clone();
    if pid.is_none() {
        notes.push("no --pid: CPU and RSS of the recorder were not measured".into());
    }
    if rec.non_writer_reads {
        notes.push(format!(
            "close → ListFragments polled on a node other than the stream's writer ({} probe streams; CPU and RSS summed over {} nodes)",
            probes.non_writer_probes,
            rec.nodes.len()
        ));
    }
    let media = stored.map(|stored| media_report(opts.sender, &stats, &snaps, stored));
    let viewers = (opts.viewers_per_session > 0).then(|| {
        let mut v = viewers::report(opts.viewers_per_session, &stats, &viewer_stats);
        v.active_in_steady_window = viewers_active;
        v.add_metrics(metrics_before.as_deref(), metrics_after.as_deref());
        v
    });
    if let Some(m) = media.as_ref().filter(|m| m.sessions_paired_exactly < m.sessions.len()) {
        notes.push(format!(
            "A/V skew: {} of {} sessions lost or gained frames; their stored frames were paired with sent ones by order, which may be off by the difference",
            m.sessions.len() - m.sessions_paired_exactly,
            m.sessions.len()
        ));
    }
    Ok(LoadReport {
        provision_s,
        sessions_connected: snaps.iter().filter(|s| s.connected_us.is_some()).count(),
        sessions_failed: snaps.iter().filter(|s| s.failure_kind.is_some()).count(),
        reconnects: snaps.iter().map(|s| s.reconnects).sum(),
        resume_gap_ms: Percentiles::of(
            &snaps.iter().flat_map(|s| s.resume_gaps_us.iter().map(|&us| us as f64 / 1000.0)).collect::<Vec<_>>(),
        ),
        failures,
        failure_examples,
        steady,
        rss: Rss::new(rss_before, rss_steady, active_sessions),
        packets,
        join_to_first_frame_stored_ms: Percentiles::of(&join_first_frame),
        join_to_first_fragment_closed_ms: Percentiles::of(&join_first_closed),
        join_to_first_fragment_readable_ms: Percentiles::of(&join_readable),
        close_to_list_fragments_ms: Percentiles::of(&probes.list_visible_ms),
        close_to_get_media_ms: Percentiles::of(&close_get_media),
        hls_lag_ms: Percentiles::of(&hls_samples),
        storage,
        probe_requests_per_sec: probes.probe_requests as f64 / run_secs.max(1.0),
        max_publisher_lateness_ms: snaps.iter().map(|s| s.max_lateness_us).max().unwrap_or(0) as f64 / 1000.0,
        media,
        notes,
        sessions_per_node,
        non_writer_probes: probes.non_writer_probes,
        viewers,
        gso_sends: opts.gso,
        ..baselines::base_report(cfg, &source, pid)
    })
}

/// Waits for the steady window (ramp over, every session connected or failed, [`SETTLE`]),
/// and measures the recorder's CPU (and ours) over it; returns it with the recorder's RSS at
/// its end (both summed over `pids`). Live viewers, if any, must have settled too
/// (`viewers_settled`). `None` when the window would be shorter than a second. Kernel drops are
/// counted at the sockets bound to `recorder_ip`.
async fn steady_window(
    stats: &[Arc<PublisherStats>],
    viewers_settled: &dyn Fn() -> bool,
    ramp_end: Instant,
    until: Instant,
    pids: &[u32],
    recorder_ip: IpAddr,
    ticks: u64,
) -> (Option<Steady>, Option<u64>) {
    tokio::time::sleep_until(ramp_end.into()).await;
    let connect_deadline =
        ramp_end + crate::publisher::DEFAULT_CONNECT_TIMEOUT + crate::publisher::DEFAULT_OFFER_TIMEOUT;
    while Instant::now() < connect_deadline && !(stats.iter().all(|s| settled(s)) && viewers_settled()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let steady_end = until.checked_sub(STEADY_END_MARGIN).unwrap_or(until);
    if Instant::now() + Duration::from_secs(1) >= steady_end {
        return (None, None);
    }
    let me = std::process::id();
    let a_t = Instant::now();
    let a_cpu = sum_over(pids, |p| procstat::cpu_ms(p, ticks));
    let a_self = procstat::cpu_ms(me, ticks).ok();
    let a_s3 = procstat::own_threads_cpu_ms(S3_THREAD_NAME, ticks);
    let active_a = stats.iter().filter(|s| active(s)).count();
    let drops_a = procstat::udp_drops(recorder_ip);
    tokio::time::sleep_until(steady_end.into()).await;
    let drops_b = procstat::udp_drops(recorder_ip);
    let b_t = Instant::now();
    let b_cpu = sum_over(pids, |p| procstat::cpu_ms(p, ticks));
    let b_self = procstat::cpu_ms(me, ticks).ok();
    let b_s3 = procstat::own_threads_cpu_ms(S3_THREAD_NAME, ticks);
    let active_b = stats.iter().filter(|s| active(s)).count();
    let rss_b = sum_over(pids, procstat::rss_kib);
    let secs = (b_t - a_t).as_secs_f64();
    let cpu = a_cpu.zip(b_cpu).map(|(a, b)| b - a);
    // The cluster's S3 server runs in this process: its CPU is neither side's.
    let s3 = b_s3 - a_s3;
    let own = a_self.zip(b_self).map(|(a, b)| (b - a - s3).max(0.0));
    let mut steady = Steady::new(secs, active_a.min(active_b), cpu, own);
    steady.s3_server_cpu_ms = (s3 > 0.0).then_some(s3);
    steady.recorder_socket_drops = drops_a.zip(drops_b).map(|(a, b)| b.saturating_sub(a));
    (Some(steady), rss_b)
}

/// Kernel drops at the recorder's sockets over the whole run: the counter's growth, but at
/// least what the steady window saw (a recorder that closes its sockets, like Janus at
/// hang-up, takes their counts along).
fn run_drops(before: Option<u64>, after: Option<u64>, steady: Option<&Steady>) -> Option<u64> {
    before.zip(after).map(|(b, a)| a.saturating_sub(b)).max(steady.and_then(|s| s.recorder_socket_drops))
}

/// Failure kind → count, and the first few messages.
fn tally_failures(snaps: &[crate::publisher::StatsSnapshot]) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut examples = Vec::new();
    for s in snaps {
        if let Some(kind) = &s.failure_kind {
            *failures.entry(kind.clone()).or_default() += 1;
            if examples.len() < 5 {
                examples.push(s.failure.clone().unwrap_or_default());
            }
        }
    }
    (failures, examples)
}

/// Connected or failed (no longer starting up).
fn settled(s: &PublisherStats) -> bool {
    s.times.connected.get().is_some() || s.failure_kind.lock().map(|f| f.is_some()).unwrap_or(true)
}

/// Connected and not failed.
fn active(s: &PublisherStats) -> bool {
    s.times.connected.get().is_some() && s.failure_kind.lock().map(|f| f.is_none()).unwrap_or(false)
}

/// Attempts per channel when the control plane answers ClientLimitExceededException.
const PROVISION_RETRIES: u32 = 10;

/// Creates `cfg.sessions` storage-enabled channels, a few calls in flight at a time. A call
/// refused by the control plane's rate limit is retried.
async fn provision(cfg: &LoadConfig, client: &Arc<KvsClient>) -> Result<Vec<StorageChannel>, LoadError> {
    let mut out: Vec<Option<StorageChannel>> = vec![None; cfg.sessions];
    let mut pending = FuturesUnordered::new();
    let mut next = 0;
    loop {
        while next < cfg.sessions && pending.len() < PROVISION_CONCURRENCY {
            let i = next;
            next += 1;
            let name = format!("{}-{i:04}", cfg.name_prefix);
            let client = client.clone();
            pending.push(async move {
                let stream = format!("{name}-stream");
                let mut attempt = 0;
                let r = loop {
                    match provision_storage_channel(&client, &name, &stream, 24).await {
                        // The control plane's per-operation rate limit (10/s): wait, then go on
                        // (names are reused, so the calls that went through are not repeated).
                        Err(e) if e.code() == Some("ClientLimitExceededException") && attempt < PROVISION_RETRIES => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        r => break r,
                    }
                };
                (i, r)
            });
        }
        match pending.next().await {
            Some((i, Ok(ch))) => out[i] = Some(ch),
            Some((index, Err(source))) => return Err(LoadError::Provision { index, source }),
            None => break,
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// GetMedia `EARLIEST` on one stream: records the first document's arrival, and with `all`
/// every document's (by fragment number) until `until`.
async fn get_media_probe(
    client: &KvsClient,
    ep: &str,
    stream_arn: &str,
    session: usize,
    all: bool,
    until: Instant,
    log: &Mutex<ProbeLog>,
) {
    let mut res = match client.get_media(ep, stream_arn, "EARLIEST").await {
        Ok(r) => r,
        Err(e) => {
            lock(log).error(format!("GetMedia {session}: {e}"));
            return;
        }
    };
    let mut scanner = TagScanner::new(FRAGMENT_NUMBER_TAG);
    let mut first = true;
    loop {
        let chunk = match tokio::time::timeout_at(until.into(), res.chunk()).await {
            Ok(Ok(Some(c))) => c,
            _ => return,
        };
        let now = unix_us();
        for number in scanner.push(&chunk) {
            let mut l = lock(log);
            if first {
                l.first_readable_us.insert(session, now);
                first = false;
            }
            if all {
                l.get_media_arrivals.insert((session, number), now);
            }
        }
        if !first && !all {
            return;
        }
    }
}

/// Running storage sessions per node (`reel_storage_sessions_active`), by node URL.
async fn sessions_per_node(client: &KvsClient, rec: &Recorder) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for node in &rec.nodes {
        if let Ok(text) = client.get_text(&metrics_url(node)).await {
            out.insert(node.clone(), stats::prometheus_sum(&text, METRIC_SESSIONS_ACTIVE));
        }
    }
    out
}

/// A node of `nodes` that does not write `stream_arn`: waits until the session is connected
/// (its writer lease taken), asks GetDataEndpoint (through the load balancer) for the
/// writer, and answers the next node after it.
async fn non_writer(
    client: &KvsClient,
    stream_arn: &str,
    nodes: &[String],
    session: &PublisherStats,
    until: Instant,
) -> Result<String, String> {
    while session.times.connected.get().is_none() {
        if Instant::now() >= until || session.failure_kind.lock().map(|f| f.is_some()).unwrap_or(true) {
            return Err("the session never connected".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let writer = client.data_endpoint(stream_arn, "GET_MEDIA").await.map_err(|e| e.to_string())?;
    other_node(nodes, &writer).ok_or_else(|| format!("writer {writer} is not one of {nodes:?}"))
}

/// The node after `writer` in `nodes` (URLs compared without a trailing slash).
fn other_node(nodes: &[String], writer: &str) -> Option<String> {
    let norm = |u: &str| u.trim_end_matches('/').to_string();
    let k = nodes.iter().position(|n| norm(n) == norm(writer))?;
    (nodes.len() > 1).then(|| nodes[(k + 1) % nodes.len()].clone())
}

/// Polls ListFragments around each predicted fragment close; records close → visible.
async fn list_fragments_probe(client: &KvsClient, ep: &str, stream_arn: &str, until: Instant, log: &Mutex<ProbeLog>) {
    let mut seen: BTreeMap<String, ()> = BTreeMap::new();
    // Predicted close of the next fragment (ms since epoch), once one fragment is known.
    let mut predicted_ms: Option<i64> = None;
    while Instant::now() < until {
        let sent_us = unix_us();
        let result = client.list_fragments(ep, stream_arn).await;
        lock(log).probe_requests += 1;
        match result {
            Ok(frags) => {
                let first_listing = seen.is_empty();
                for f in &frags {
                    if seen.insert(f.number.clone(), ()).is_some() {
                        continue;
                    }
                    // Fragments already there at the first successful listing have no
                    // meaningful visibility time; neither has one found by a slow poll.
                    let close_ms = (f.server_ms + f.length_ms) as i64;
                    if !first_listing && predicted_ms.is_some() {
                        lock(log).list_visible_ms.push(sent_us as f64 / 1000.0 - close_ms as f64);
                    }
                    // The next fragment should be as long as this one.
                    predicted_ms = Some(close_ms + f.length_ms.max(1) as i64);
                }
            }
            Err(e) => lock(log).error(format!("ListFragments: {e}")),
        }
        let now_ms = unix_us() / 1000;
        let wait = match predicted_ms {
            Some(p) if now_ms >= p - FAST_BEFORE.as_millis() as i64 && now_ms <= p + FAST_AFTER.as_millis() as i64 => {
                FAST_POLL
            }
            Some(p) if now_ms < p - FAST_BEFORE.as_millis() as i64 => {
                Duration::from_millis((p - FAST_BEFORE.as_millis() as i64 - now_ms) as u64).min(SLOW_POLL)
            }
            _ => SLOW_POLL,
        };
        tokio::time::sleep(wait).await;
    }
}

/// Fetches the LIVE HLS media playlist every [`HLS_POLL`]; records how far its newest
/// segment's end is behind the wall clock.
async fn hls_probe(client: &KvsClient, stream_arn: &str, until: Instant, log: &Mutex<ProbeLog>) {
    let media_url = loop {
        if Instant::now() >= until {
            return;
        }
        match hls_media_url(client, stream_arn).await {
            Ok(u) => break u,
            // Before the first fragment LIVE has nothing: retry.
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    };
    while Instant::now() < until {
        let r = client.get_text(&media_url).await;
        let now_us = unix_us();
        let end_ms = r.ok().as_deref().and_then(stats::newest_segment_end_ms);
        {
            let mut l = lock(log);
            l.probe_requests += 1;
            match end_ms {
                Some(end_ms) => l.hls_lag.push((now_us, now_us as f64 / 1000.0 - end_ms as f64)),
                None => l.error("HLS media playlist without a program date-time".into()),
            }
        }
        tokio::time::sleep(HLS_POLL).await;
    }
}

async fn hls_media_url(client: &KvsClient, stream_arn: &str) -> Result<String, ApiError> {
    let ep = client.data_endpoint(stream_arn, "GET_HLS_STREAMING_SESSION_URL").await?;
    let master = client.hls_live_url(&ep, stream_arn).await?;
    let text = client.get_text(&master).await?;
    let uri = stats::first_uri(&text)
        .ok_or_else(|| ApiError::BadResponse { path: master.clone(), detail: "no media playlist".into() })?;
    Ok(stats::resolve(&master, uri))
}

/// ListFragments of every stream, a few in flight at a time.
async fn list_all(
    client: &KvsClient,
    ep: &str,
    channels: &[StorageChannel],
) -> Vec<Result<Vec<FragmentMeta>, ApiError>> {
    let mut out: Vec<Option<Result<Vec<FragmentMeta>, ApiError>>> = (0..channels.len()).map(|_| None).collect();
    let mut pending = FuturesUnordered::new();
    let mut next = 0;
    loop {
        while next < channels.len() && pending.len() < PROVISION_CONCURRENCY {
            let i = next;
            next += 1;
            let arn = channels[i].stream_arn.clone();
            pending.push(async move { (i, client.list_fragments(ep, &arn).await) });
        }
        match pending.next().await {
            Some((i, r)) => out[i] = Some(r),
            None => break,
        }
    }
    out.into_iter()
        .map(|r| {
            r.unwrap_or_else(|| Err(ApiError::BadResponse { path: "/listFragments".into(), detail: "not run".into() }))
        })
        .collect()
}

/// How long the read-back waits for reel to end the stopped sessions.
const SESSION_END_WAIT: Duration = Duration::from_secs(60);

/// reel's gauge of running storage sessions (every series carries a `node` label).
const METRIC_SESSIONS_ACTIVE: &str = "reel_storage_sessions_active";

/// Polls every node's `/metrics` until `reel_storage_sessions_active` sums to 0 (or is
/// absent), at most `wait`.
async fn wait_sessions_ended(client: &KvsClient, rec: &Recorder, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        let active = scrape(client, rec).await.map(|text| stats::prometheus_sum(&text, METRIC_SESSIONS_ACTIVE));
        if active.is_none_or(|n| n <= 0.0) {
            return;
        }
        tokio::time::sleep(SLOW_POLL).await;
    }
    tracing::warn!(secs = wait.as_secs(), "sessions still active; reading back what is stored");
}

/// Every stream read back (see [`read_back`]), a few at a time; a failed listing is an error.
async fn read_back_all(
    client: &KvsClient,
    ep: &str,
    channels: &[StorageChannel],
    listings: &[Result<Vec<FragmentMeta>, ApiError>],
) -> Vec<Result<StoredStream, String>> {
    let mut out: Vec<Option<Result<StoredStream, String>>> = (0..channels.len()).map(|_| None).collect();
    let mut pending = FuturesUnordered::new();
    let mut next = 0;
    loop {
        while next < channels.len() && pending.len() < READBACK_CONCURRENCY {
            let i = next;
            next += 1;
            let arn = channels[i].stream_arn.clone();
            let listing = &listings[i];
            pending.push(async move {
                let r = match listing {
                    Ok(frags) => read_back(client, ep, &arn, frags).await,
                    Err(e) => Err(format!("ListFragments: {e}")),
                };
                (i, r)
            });
        }
        match pending.next().await {
            Some((i, r)) => out[i] = Some(r),
            None => break,
        }
    }
    out.into_iter().map(|r| r.unwrap_or_else(|| Err("not read".into()))).collect()
}

/// One stream's fragments through GetMediaForFragmentList, [`READBACK_BATCH`] at a time.
async fn read_back(
    client: &KvsClient,
    ep: &str,
    stream_arn: &str,
    frags: &[FragmentMeta],
) -> Result<StoredStream, String> {
    let mut stored = StoredStream::default();
    for batch in frags.chunks(READBACK_BATCH) {
        let numbers: Vec<String> = batch.iter().map(|f| f.number.clone()).collect();
        let body = client
            .get_media_for_fragment_list(ep, stream_arn, &numbers)
            .await
            .map_err(|e| format!("GetMediaForFragmentList: {e}"))?;
        stored.push_body(&body).map_err(|e| format!("reading the MKV back: {e}"))?;
    }
    Ok(stored)
}

/// Stored vs sent per session and in total, from the read-back streams.
fn media_report(
    sender: SenderProfile,
    stats: &[Arc<PublisherStats>],
    snaps: &[crate::publisher::StatsSnapshot],
    stored: Vec<Result<StoredStream, String>>,
) -> MediaReport {
    let sessions = stored
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            let keyframes = stats[i].frames.lock().map(|f| f.clone()).unwrap_or_default();
            let audio_sends = stats[i].audio_sends.lock().map(|a| a.clone()).unwrap_or_default();
            let sent = SentLog {
                video_frames: snaps[i].video_frames,
                audio_packets: snaps[i].audio_packets,
                keyframes: &keyframes,
                audio_sends_us: &audio_sends,
            };
            media::session_media(i, stream.as_ref().map_err(Clone::clone), &sent)
        })
        .collect();
    MediaReport::new(sender, sessions, snaps)
}

fn lock(log: &Mutex<ProbeLog>) -> std::sync::MutexGuard<'_, ProbeLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}
