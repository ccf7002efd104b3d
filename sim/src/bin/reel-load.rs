//! reel-load: N simulated camera masters against reel; prints what they cost it.
//!
//! ```text
//! reel-load --netns --reel-bin target/release/reel --sessions 200 --ramp 20 --duration 60
//! reel-load --endpoint http://127.0.0.1:8080 --pid $(pidof reel) --access-key-id … --secret-access-key …
//! ```
//! See `reel_sim::load` for what is measured and how.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use reel_sim::load::{self, LoadConfig, ReelProcess, Target};
use reel_sim::netns;

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
    /// (e.g. `reel,janus,floor`; CPU ratios against reel are printed).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "reel")]
    target: Vec<Target>,
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
    let default_ip = |ns: &str| -> IpAddr {
        if inside { ns.parse().unwrap_or(IpAddr::from([127, 0, 0, 1])) } else { IpAddr::from([127, 0, 0, 1]) }
    };
    let wants_reel = args.target.contains(&Target::Reel);
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
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut reports = Vec::new();
    for &target in &args.target {
        let cfg = LoadConfig { target, ..base.clone() };
        let report = rt.block_on(load::run(cfg))?;
        if args.json {
            eprint!("{}", report.table());
        } else {
            print!("{}", report.table());
        }
        reports.push(report);
    }
    let ratios = load::report::cpu_ratios(&reports);
    let mut table: String = reports.iter().map(|r| r.table()).collect::<Vec<_>>().join("\n");
    table.push_str(&ratios_text(&ratios));
    let json = if reports.len() == 1 {
        serde_json::to_string_pretty(&reports[0])?
    } else {
        serde_json::to_string_pretty(&serde_json::json!({ "runs": reports, "cpu_ratios": ratios }))?
    };
    if args.json {
        println!("{json}");
    } else {
        print!("{}", ratios_text(&ratios));
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
}
