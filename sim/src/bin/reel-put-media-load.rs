//! `reel-put-media-load`: N simulated PutMedia producers (the KVS C producer's requests and
//! Matroska, 1 Mbps H.264 + Opus in real time, one 2 s fragment per keyframe) against a reel
//! it starts on 127.0.0.1, and what it costs reel: CPU per producer-second over the steady
//! window, resident memory, and how long after a fragment closes (the first bytes of the next
//! cluster are sent) its `PERSISTED` acknowledgement arrives. Prints the figures.
//!
//! ```sh
//! cargo build --release -p reel -p reel-sim
//! target/release/reel-put-media-load --reel-bin target/release/reel --producers 100 --duration 40
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use clap::Parser;
use reel_sim::kvs::KvsClient;
use reel_sim::launcher::ReelProcess;
use reel_sim::load::procstat;
use reel_sim::publisher::source::MediaSource;
use reel_sim::put_media::{Clip, document_head, end_of_session, now_ms};
use reel_sim::sigv4::Signer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY_ID: &str = "AKIAREELPUTMEDIALOAD";
const SECRET: &str = "reel-put-media-load-secret-0000000000000";
const REGION: &str = "us-west-2";

#[derive(Parser, Debug)]
#[command(about = "Simulated PutMedia producers against a reel it starts; prints what reel spends")]
struct Args {
    /// The reel binary to run.
    #[arg(long, default_value = "target/release/reel")]
    reel_bin: PathBuf,
    /// Producers, one stream each.
    #[arg(long, default_value_t = 50)]
    producers: usize,
    /// Seconds each producer streams.
    #[arg(long, default_value_t = 40)]
    duration: u64,
    /// Payload bitrate of each producer, bits per second.
    #[arg(long, default_value_t = 1_000_000)]
    bitrate: u64,
    /// Seconds at the start and the end left out of the CPU window.
    #[arg(long, default_value_t = 5)]
    settle: u64,
}

/// What one producer saw.
#[derive(Debug, Default)]
struct Seen {
    sent_fragments: usize,
    persisted: usize,
    errors: Vec<String>,
    /// ms from a fragment's close to its PERSISTED acknowledgement.
    persist_ms: Vec<f64>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut cmd = std::process::Command::new(&args.reel_bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--access-key-id", KEY_ID, "--secret-access-key", SECRET])
        .arg("--data-dir")
        .arg(dir.path());
    let mut reel = ReelProcess::spawn(cmd, &dir.path().join("reel.log")).context("start reel")?;
    let kvs = KvsClient::new(&reel.url, Signer::new(KEY_ID, SECRET, REGION));
    for i in 0..args.producers {
        kvs.create_stream(&format!("producer-{i}"), 24).await.context("CreateStream")?;
    }
    let source = Arc::new(MediaSource::new(args.bitrate)?);
    let results = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..args.producers {
        let (url, source, results) = (reel.url.clone(), source.clone(), results.clone());
        let duration = Duration::from_secs(args.duration);
        // Spread the producers' keyframes over the first two seconds.
        let offset = Duration::from_millis((i as u64 * 2_000) / args.producers.max(1) as u64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let seen = produce(&url, &format!("producer-{i}"), &source, duration)
                .await
                .unwrap_or_else(|e| Seen { errors: vec![format!("{e:#}")], ..Seen::default() });
            if let Ok(mut r) = results.lock() {
                r.push(seen);
            }
        }));
    }
    // CPU over the steady window.
    let ticks = procstat::clock_ticks_per_sec();
    tokio::time::sleep(Duration::from_secs(args.settle + 2)).await;
    let (cpu0, t0) = (procstat::cpu_ms(reel.pid, ticks)?, Instant::now());
    let window = Duration::from_secs(args.duration.saturating_sub(2 * args.settle).max(1));
    tokio::time::sleep(window).await;
    let (cpu1, t1) = (procstat::cpu_ms(reel.pid, ticks)?, Instant::now());
    let rss_kib = procstat::rss_kib(reel.pid).unwrap_or(0);
    for t in tasks {
        t.await?;
    }
    let wall = started.elapsed();
    let seen = std::mem::take(&mut *results.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let sent: usize = seen.iter().map(|s| s.sent_fragments).sum();
    let persisted: usize = seen.iter().map(|s| s.persisted).sum();
    let errors: Vec<&String> = seen.iter().flat_map(|s| &s.errors).collect();
    let mut latency: Vec<f64> = seen.iter().flat_map(|s| s.persist_ms.iter().copied()).collect();
    latency.sort_by(f64::total_cmp);
    let pct = |p: f64| latency.get(((latency.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN);
    let window_s = (t1 - t0).as_secs_f64();
    let cpu_per_session_s = (cpu1 - cpu0) / (window_s * args.producers as f64);
    println!(
        "reel-put-media-load: {} producers × {} s at {} bps ({:.1} s wall)",
        args.producers,
        args.duration,
        args.bitrate,
        wall.as_secs_f64()
    );
    println!("fragments sent {sent}, persisted {persisted}, errors {}", errors.len());
    for e in errors.iter().take(5) {
        println!("  error: {e}");
    }
    println!(
        "reel CPU {:.3} ms per producer-second over {window_s:.1} s ({:.1} % of one core)",
        cpu_per_session_s,
        (cpu1 - cpu0) / window_s / 10.0
    );
    println!("reel RSS {} KiB ({:.0} KiB per producer)", rss_kib, rss_kib as f64 / args.producers as f64);
    println!(
        "fragment close → PERSISTED p50 / p95 / p99 / max: {:.1} / {:.1} / {:.1} / {:.1} ms (n={})",
        pct(0.5),
        pct(0.95),
        pct(0.99),
        latency.last().copied().unwrap_or(f64::NAN),
        latency.len()
    );
    reel.stop();
    if persisted < sent || !errors.is_empty() {
        bail!("{} of {sent} fragments persisted, {} errors", persisted, errors.len());
    }
    Ok(())
}

/// One producer: a PutMedia connection streaming for `duration`, then the end-of-session
/// tag, the last PERSISTED, and the end of the body.
async fn produce(url: &str, stream: &str, source: &MediaSource, duration: Duration) -> anyhow::Result<Seen> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let sock = TcpStream::connect(addr).await?;
    sock.set_nodelay(true)?;
    let (mut rx, mut tx) = sock.into_split();
    let start = now_ms();
    let start_header = format!("{}.{}", start / 1000, start % 1000);
    let headers = [
        ("x-amzn-stream-name", stream),
        ("x-amzn-fragment-timecode-type", "ABSOLUTE"),
        ("x-amzn-producer-start-timestamp", start_header.as_str()),
        ("x-amzn-fragment-acknowledgment-required", "1"),
    ];
    let signed = Signer::new(KEY_ID, SECRET, REGION).sign_streaming_post(
        &format!("{url}/putMedia"),
        &headers,
        SystemTime::now(),
    )?;
    let mut head =
        format!("POST /putMedia HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\nconnection: keep-alive\r\n");
    for (k, v) in headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).chain(signed) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tx.write_all(head.as_bytes()).await?;

    // Acknowledgements, matched to the time each fragment closed.
    let closed: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let acks = {
        let closed = closed.clone();
        tokio::spawn(async move { read_acks(&mut rx, &closed).await })
    };
    let chunk = |data: &[u8]| {
        let mut out = format!("{:x}\r\n", data.len()).into_bytes();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        out
    };
    tx.write_all(&chunk(&document_head(source))).await?;
    let mut clip = Clip::new(source, start);
    let mut sent_fragments = 0;
    let mut last_open: Option<u64> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let end = Instant::now() + duration;
    while Instant::now() < end {
        tick.tick().await;
        let due = clip.due(now_ms());
        if due.bytes.is_empty() {
            continue;
        }
        let now = Instant::now();
        for opened in &due.opened {
            if let Some(previous) = last_open.replace(*opened)
                && let Ok(mut c) = closed.lock()
            {
                c.insert(previous, now);
                sent_fragments += 1;
            }
        }
        tx.write_all(&chunk(&due.bytes)).await?;
    }
    // The end of the session closes the last fragment.
    if let Some(previous) = last_open
        && let Ok(mut c) = closed.lock()
    {
        c.insert(previous, Instant::now());
        sent_fragments += 1;
    }
    tx.write_all(&chunk(&end_of_session())).await?;
    let (persisted, persist_ms, errors) = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let done = closed.lock().map(|c| c.is_empty()).unwrap_or(true);
            if done || acks.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = tx.write_all(b"0\r\n\r\n").await;
        acks.await
    })
    .await
    .context("the last PERSISTED did not arrive within 20 s")??;
    Ok(Seen { sent_fragments, persisted, errors, persist_ms })
}

/// Reads the response: status, then chunked acknowledgements until the body ends.
async fn read_acks(
    rx: &mut tokio::net::tcp::OwnedReadHalf,
    closed: &Mutex<HashMap<u64, Instant>>,
) -> (usize, Vec<f64>, Vec<String>) {
    let (mut persisted, mut persist_ms, mut errors) = (0, Vec::new(), Vec::new());
    let mut buf = Vec::new();
    let mut body_at = None;
    let mut piece = [0u8; 8192];
    loop {
        if body_at.is_none()
            && let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n")
        {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            if !head.starts_with("HTTP/1.1 200") {
                errors.push(head);
                return (persisted, persist_ms, errors);
            }
            buf.drain(..end + 4);
            body_at = Some(());
        }
        if body_at.is_some() {
            // Whole lines of JSON; the chunk framing around them is skipped.
            while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let text = String::from_utf8_lossy(&line);
                let Some(json) = text.find('{').map(|i| &text[i..]) else { continue };
                let Ok(ack) = serde_json::from_str::<serde_json::Value>(json.trim()) else { continue };
                match ack["EventType"].as_str() {
                    Some("PERSISTED") => {
                        persisted += 1;
                        let tc = ack["FragmentTimecode"].as_u64().unwrap_or(0);
                        if let Some(at) = closed.lock().ok().and_then(|mut c| c.remove(&tc)) {
                            persist_ms.push(at.elapsed().as_secs_f64() * 1000.0);
                        }
                    }
                    Some("ERROR") => errors.push(ack.to_string()),
                    _ => {}
                }
            }
        }
        match rx.read(&mut piece).await {
            Ok(0) | Err(_) => return (persisted, persist_ms, errors),
            Ok(n) => buf.extend_from_slice(&piece[..n]),
        }
    }
}
