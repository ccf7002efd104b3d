//! reel-load: N simulated camera masters against reel; prints what they cost it.
//!
//! ```text
//! reel-load --netns --reel-bin target/release/reel --sessions 200 --ramp 20 --duration 60
//! reel-load --netns --reel-bin target/release/reel --sessions 60 --duration 40 --target reel,reel-cluster
//! reel-load --endpoint http://127.0.0.1:8080 --pid $(pidof reel) --access-key-id … --secret-access-key …
//! reel-load --reel-bin target/release/reel --sessions 2 --duration 60 --audio-drift-pct -3 --sr-wall-clock
//! reel-load --netns --reel-bin target/release/reel --sessions 10 --duration 30 --viewers-per-session 3
//! ```
//! See `reel_sim::load` for what is measured and how.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use reel_sim::load::{self, LoadConfig, ReelProcess, RunOptions, Target};
use reel_sim::netns;
use reel_sim::publisher::profile::rate_from_drift_pct;
use reel_sim::publisher::{MuteWindow, ReconnectPolicy, SenderProfile, SrJump};

/// Access key of a reel that reel-load starts itself.
const SPAWN_KEY_ID: &str = "AKIAREELLOADROOT0001";
/// Its secret.
const SPAWN_SECRET: &str = "reel-load-root-secret-000000000000000000";

#[derive(Debug, Parser)]
#[command(name = "reel-load", version, about = "Simulated KVS camera masters against reel, with the cost measured")]
struct Args {
    /// Concurrent sessions (cameras).
    #[arg(long, default_value_t = 10)]
    sessions: usize,
    /// Sessions started per second.
    #[arg(long, default_value_t = 10.0)]
    ramp: f64,
    /// Seconds every camera keeps publishing after the ramp.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Payload bitrate per camera (bits/s; k and M suffixes allowed).
    #[arg(long, default_value = "1M", value_parser = parse_bitrate)]
    bitrate: u64,
    /// The recorders the cameras publish to, one after the other with the same settings
    /// (e.g. `reel,janus,floor`; CPU ratios against reel are printed). `reel-cluster` starts
    /// Postgres, nats-server, an S3 server, HAProxy and three nodes of --reel-bin.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "reel")]
    target: Vec<Target>,
    /// Runs the --target list this many times over, alternating, and prints each round's
    /// CPU ratios and their median: on a machine whose speed drifts between minutes, one
    /// pair of runs is not enough to compare two recorders.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// A running reel's base URL (plain HTTP).
    #[arg(long, conflicts_with = "reel_bin")]
    endpoint: Option<String>,
    /// The running reel's process id (for CPU and RSS).
    #[arg(long, requires = "endpoint")]
    pid: Option<u32>,
    /// Start this reel binary (temporary data dir, quotas raised to --sessions).
    #[arg(long)]
    reel_bin: Option<PathBuf>,
    /// TOML appended to the spawned reel's config file, e.g.
    /// `'[limits.storage_session]\nrecv_coalesce_ms = 0'`.
    #[arg(long, requires = "reel_bin", default_value = "")]
    reel_config: String,
    /// Re-run inside a private network namespace (veth 198.18.0.1 ↔ 198.18.0.2); needs --reel-bin.
    #[arg(long)]
    netns: bool,
    /// Address the publishers bind (default: 198.18.0.2 with --netns, else 127.0.0.1).
    #[arg(long)]
    bind_ip: Option<IpAddr>,
    /// Address a spawned reel, Janus and the floor listen on (default: 198.18.0.1 with
    /// --netns, else 127.0.0.1).
    #[arg(long)]
    listen_ip: Option<IpAddr>,
    /// Access key id (default: the key a spawned reel gets).
    #[arg(long, env = "REEL_LOAD_ACCESS_KEY_ID")]
    access_key_id: Option<String>,
    /// Secret access key.
    #[arg(long, env = "REEL_LOAD_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: Option<String>,
    /// Region reel runs as.
    #[arg(long, default_value = "us-west-2")]
    region: String,
    /// Sessions that also get the close→visible and HLS lag probes.
    #[arg(long, default_value_t = 1)]
    probe_streams: usize,
    /// Print the report as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// Also write the report to <OUT>.json and <OUT>.txt.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Audio produced this many % off real time, like a drifting KVS C SDK master: at −3 an
    /// Opus packet goes out every 20.6 ms while its RTP time still advances 20 ms.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    audio_drift_pct: f64,
    /// Video produced this many % off real time (RTP still advances 3000 ticks a frame).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    video_drift_pct: f64,
    /// RTCP sender reports map RTP time to the wall clock, like the C SDK (`false`: they
    /// follow the packets). Default: on when a drift is set, else off.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    sr_wall_clock: Option<bool>,
    /// Seconds after connecting at which the sender's NTP clock steps by --sr-jump-ms.
    #[arg(long, requires = "sr_jump_ms")]
    sr_jump_at: Option<f64>,
    /// The NTP step, ms (positive: forward; see `reel_sim::publisher::profile` for when a
    /// forward step is clamped).
    #[arg(long, requires = "sr_jump_at", allow_negative_numbers = true)]
    sr_jump_ms: Option<i64>,
    /// Seconds after connecting at which audio goes silent (nothing sent) …
    #[arg(long, requires = "mute_audio_for")]
    mute_audio_at: Option<f64>,
    /// … for this many seconds.
    #[arg(long, requires = "mute_audio_at")]
    mute_audio_for: Option<f64>,
    /// Seconds after connecting at which video stops (it resumes on the next keyframe) …
    #[arg(long, requires = "mute_video_for")]
    mute_video_at: Option<f64>,
    /// … for this many seconds.
    #[arg(long, requires = "mute_video_at")]
    mute_video_for: Option<f64>,
    /// Do not read the streams back (no stored/sent frame counts, no A/V skew).
    #[arg(long)]
    no_media_readback: bool,
    /// Publishers send each packet on its own, as cameras do, instead of a frame's packets
    /// in one GSO send (which a GRO socket such as reel's then reads as one batch). The
    /// floor's sender always sends packet by packet.
    #[arg(long)]
    no_gso: bool,
    /// reel-cluster: media and runtime threads of each node (`--webrtc-workers` and
    /// `TOKIO_WORKER_THREADS`), as an operator co-locating the nodes on one box would size
    /// them; default: each node's own default (one per CPU).
    #[arg(long)]
    cluster_node_threads: Option<usize>,
    /// reel-cluster: nodes to run. One node measures cluster mode's own cost (Postgres,
    /// NATS, S3) apart from co-locating several nodes on one box.
    #[arg(long, default_value_t = load::CLUSTER_NODES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=5))]
    cluster_nodes: usize,
    /// Start a lost session over as a KVS master does (backoff, new connection, JoinStorageSession
    /// again), instead of counting it as failed; reports reconnects and resume gaps.
    #[arg(long)]
    reconnect: bool,
    /// Live viewers (JoinStorageSessionAsViewer) joining each session once it connected;
    /// reports what they received, the master → viewer latency and, from a first run of the
    /// same load without viewers, reel's CPU per forwarded viewer-second.
    #[arg(long, default_value_t = 0)]
    viewers_per_session: usize,
    /// The viewers join before their session's master (which starts 2 s after the first of
    /// them, plus 0.6 s per further viewer) and wait for it.
    #[arg(long, requires = "viewers_per_session")]
    viewers_first: bool,
}

/// `secs` as a duration, for flag `name`.
fn secs(name: &str, secs: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs).map_err(|e| format!("--{name} {secs}: {e}"))
}

/// A mute window from its two flags.
fn mute(name: &str, at: Option<f64>, len: Option<f64>) -> Result<Option<MuteWindow>, String> {
    match (at, len) {
        (Some(at), Some(len)) => Ok(Some(MuteWindow {
            at: secs(&format!("mute-{name}-at"), at)?,
            len: secs(&format!("mute-{name}-for"), len)?,
        })),
        _ => Ok(None),
    }
}

/// The publishers' [`SenderProfile`] from the drift, SR and mute flags.
fn sender_profile(args: &Args) -> Result<SenderProfile, String> {
    let audio_rate = rate_from_drift_pct("audio", args.audio_drift_pct).map_err(|e| e.to_string())?;
    let video_rate = rate_from_drift_pct("video", args.video_drift_pct).map_err(|e| e.to_string())?;
    let drifting = audio_rate != 1.0 || video_rate != 1.0;
    let sr_jump = match (args.sr_jump_at, args.sr_jump_ms) {
        (Some(at), Some(shift_ms)) => Some(SrJump { at: secs("sr-jump-at", at)?, shift_ms }),
        _ => None,
    };
    Ok(SenderProfile {
        audio_rate,
        video_rate,
        sr_wall_clock: args.sr_wall_clock.unwrap_or(drifting),
        sr_jump,
        audio_mute: mute("audio", args.mute_audio_at, args.mute_audio_for)?,
        video_mute: mute("video", args.mute_video_at, args.mute_video_for)?,
    })
}

fn parse_bitrate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1_000.0),
        Some((i, 'm' | 'M')) => (&s[..i], 1_000_000.0),
        _ => (s, 1.0),
    };
    let v: f64 = num.parse().map_err(|e| format!("bad bitrate {s:?}: {e}"))?;
    if v.is_nan() || v <= 0.0 {
        return Err(format!("bitrate must be positive: {s}"));
    }
    Ok((v * mult) as u64)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,reel_sim=info")),
        )
        .init();
    let args = Args::parse();
    if args.netns && !netns::inside() {
        return reexec_in_netns();
    }
    if args.netns
        && let Err(e) = netns::setup_links()
    {
        eprintln!("reel-load: {e}");
        return ExitCode::FAILURE;
    }
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("reel-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs this same command line again under `unshare -n`, passing its exit status through.
fn reexec_in_netns() -> ExitCode {
    if let Err(e) = netns::probe() {
        eprintln!("reel-load: --netns: {e}");
        return ExitCode::FAILURE;
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("reel-load: cannot find my own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    match netns::reexec_command(&exe, std::env::args_os().skip(1)).status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => ExitCode::from(s.code().unwrap_or(1).clamp(1, 255) as u8),
        Err(e) => {
            eprintln!("reel-load: cannot run unshare: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let inside = args.netns;
    let opts = RunOptions {
        sender: sender_profile(&args).map_err(anyhow::Error::msg)?,
        media_readback: !args.no_media_readback,
        reconnect: args.reconnect.then(ReconnectPolicy::default),
        viewers_per_session: args.viewers_per_session,
        viewers_first: args.viewers_first,
        gso: !args.no_gso,
    };
    let default_ip = |ns: &str| -> IpAddr {
        if inside { ns.parse().unwrap_or(IpAddr::from([127, 0, 0, 1])) } else { IpAddr::from([127, 0, 0, 1]) }
    };
    let wants_reel = args.target.iter().any(|t| t.is_reel());
    let listen_ip = args.listen_ip.unwrap_or_else(|| default_ip(netns::REEL_IP));
    let reel = match (&args.endpoint, &args.reel_bin) {
        (Some(url), _) => {
            anyhow::ensure!(!inside, "--netns runs in a fresh namespace: use --reel-bin, not --endpoint");
            ReelProcess::Endpoint { url: url.clone(), pid: args.pid }
        }
        (None, Some(bin)) => {
            let bin = std::fs::canonicalize(bin).map_err(|e| anyhow::anyhow!("--reel-bin {}: {e}", bin.display()))?;
            ReelProcess::Spawn { bin, listen_ip, extra_config: args.reel_config.clone() }
        }
        (None, None) if wants_reel => anyhow::bail!("give --endpoint (with --pid) or --reel-bin"),
        // Baselines only: no reel involved.
        (None, None) => ReelProcess::Endpoint { url: String::new(), pid: None },
    };
    let spawn = matches!(reel, ReelProcess::Spawn { .. });
    let key_id = args.access_key_id.clone().or_else(|| spawn.then(|| SPAWN_KEY_ID.to_string()));
    let secret = args.secret_access_key.clone().or_else(|| spawn.then(|| SPAWN_SECRET.to_string()));
    let (access_key_id, secret_access_key) = match (key_id, secret) {
        (Some(k), Some(s)) => (k, s),
        _ if !wants_reel => (SPAWN_KEY_ID.to_string(), SPAWN_SECRET.to_string()),
        _ => anyhow::bail!("--access-key-id and --secret-access-key are needed with --endpoint"),
    };
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let base = LoadConfig {
        sessions: args.sessions,
        ramp_per_sec: args.ramp,
        duration: Duration::from_secs_f64(args.duration.max(0.0)),
        bitrate_bps: args.bitrate,
        target: Target::Reel,
        reel,
        bind_ip: args.bind_ip.unwrap_or_else(|| default_ip(netns::MASTER_IP)),
        recorder_ip: listen_ip,
        access_key_id,
        secret_access_key,
        region: args.region.clone(),
        probe_streams: args.probe_streams,
        name_prefix: format!("load-{stamp}"),
        cluster_node_threads: args.cluster_node_threads,
        cluster_nodes: args.cluster_nodes,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // Progress text goes to stderr when stdout carries the JSON.
    let progress = |text: &str| if args.json { eprint!("{text}") } else { print!("{text}") };
    let mut reports = Vec::new();
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let first = reports.len();
        for &target in &args.target {
            let cfg = LoadConfig { target, ..base.clone() };
            let report = match opts.viewers_per_session {
                k if k > 0 && target.is_reel() => rt.block_on(run_with_viewer_baseline(cfg, opts))?,
                _ => rt.block_on(load::run_with(cfg, opts))?,
            };
            progress(&report.table());
            reports.push(report);
        }
        let ratios = load::report::cpu_ratios(&reports[first..]);
        if args.rounds > 1 {
            progress(&format!("round {round}:\n{}", ratios_text(&ratios)));
        }
        rounds.push(ratios);
    }
    let ratios = load::report::median_ratios(&rounds);
    let mut table: String = reports.iter().map(|r| r.table()).collect::<Vec<_>>().join("\n");
    let summary = match args.rounds {
        1 => ratios_text(&ratios),
        n => format!("median of {n} rounds:\n{}", ratios_text(&ratios)),
    };
    table.push_str(&summary);
    let json = if reports.len() == 1 {
        serde_json::to_string_pretty(&reports[0])?
    } else {
        serde_json::to_string_pretty(
            &serde_json::json!({ "runs": reports, "cpu_ratios": ratios, "cpu_ratios_by_round": rounds }),
        )?
    };
    if args.json {
        println!("{json}");
    } else {
        print!("{summary}");
    }
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out.with_extension("json"), format!("{json}\n"))?;
        std::fs::write(out.with_extension("txt"), &table)?;
    }
    Ok(if reports.iter().all(|r| r.sessions_failed == 0) { ExitCode::SUCCESS } else { ExitCode::from(3) })
}

/// The load without viewers (no read-back; only its steady CPU is kept), then with them;
/// the second report's `viewers` section gets the CPU per forwarded viewer-second.
async fn run_with_viewer_baseline(cfg: LoadConfig, opts: RunOptions) -> anyhow::Result<load::report::LoadReport> {
    let base_opts = RunOptions { viewers_per_session: 0, media_readback: false, ..opts };
    let base_cfg = LoadConfig { name_prefix: format!("{}-base", cfg.name_prefix), ..cfg.clone() };
    eprintln!("reel-load: baseline run without viewers (for the CPU per forwarded viewer-second)");
    let baseline = load::run_with(base_cfg, base_opts).await?;
    eprint!("{}", baseline.table());
    eprintln!("reel-load: the same load with {} viewers per session", opts.viewers_per_session);
    let mut report = load::run_with(cfg, opts).await?;
    if let Some(v) = report.viewers.as_mut() {
        v.compare(report.steady.as_ref(), baseline.steady.as_ref());
    }
    report.notes.push(format!(
        "CPU per forwarded viewer-second: against a run of the same load without viewers just before (its reel CPU {} ms over {:.1} s, {} sessions; failed {})",
        baseline.steady.as_ref().and_then(|s| s.recorder_cpu_ms).map_or("n/a".into(), |c| format!("{c:.0}")),
        baseline.steady.as_ref().map_or(0.0, |s| s.seconds),
        baseline.steady.as_ref().map_or(0, |s| s.active_sessions),
        baseline.sessions_failed,
    ));
    Ok(report)
}

fn ratios_text(ratios: &std::collections::BTreeMap<String, f64>) -> String {
    ratios.iter().map(|(name, r)| format!("CPU per session-second, {name}: {r:.2}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates() {
        assert_eq!(parse_bitrate("1M"), Ok(1_000_000));
        assert_eq!(parse_bitrate("2.5M"), Ok(2_500_000));
        assert_eq!(parse_bitrate("500k"), Ok(500_000));
        assert_eq!(parse_bitrate("64000"), Ok(64_000));
        assert!(parse_bitrate("0").is_err());
        assert!(parse_bitrate("fast").is_err());
    }

    fn profile(args: &[&str]) -> Result<SenderProfile, String> {
        let args = Args::try_parse_from(["reel-load"].iter().chain(args)).map_err(|e| e.to_string())?;
        sender_profile(&args)
    }

    #[test]
    fn sender_flags() {
        assert_eq!(profile(&[]), Ok(SenderProfile::default()));
        let slow = profile(&["--audio-drift-pct", "-3"]).unwrap();
        assert_eq!((slow.audio_rate, slow.video_rate, slow.sr_wall_clock), (0.97, 1.0, true), "wall clock by default");
        let follow = profile(&["--audio-drift-pct", "-3", "--sr-wall-clock", "false"]).unwrap();
        assert!(!follow.sr_wall_clock);
        assert!(profile(&["--sr-wall-clock"]).unwrap().sr_wall_clock);
        let jump = profile(&["--sr-jump-at", "30", "--sr-jump-ms", "-500"]).unwrap();
        assert_eq!(jump.sr_jump, Some(SrJump { at: Duration::from_secs(30), shift_ms: -500 }));
        let muted = profile(&[
            "--mute-audio-at",
            "10",
            "--mute-audio-for",
            "2.5",
            "--mute-video-at",
            "1",
            "--mute-video-for",
            "1",
        ])
        .unwrap();
        assert_eq!(
            muted.audio_mute,
            Some(MuteWindow { at: Duration::from_secs(10), len: Duration::from_millis(2500) })
        );
        assert_eq!(muted.video_mute.map(|w| w.at), Some(Duration::from_secs(1)));
        assert!(profile(&["--mute-audio-at", "10"]).is_err(), "needs --mute-audio-for");
        assert!(profile(&["--audio-drift-pct", "-60"]).is_err());
        assert!(profile(&["--mute-video-at", "-1", "--mute-video-for", "1"]).is_err());
    }
}
