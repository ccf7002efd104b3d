//! Kills a writer process with SIGKILL mid-append, repeatedly at random points, then proves
//! after reopening: every fragment reported persisted is intact, at most 1 s of media per
//! stream is lost, and nothing corrupt is served.
//!
//! The writer is this test binary re-run as a child on the ignored `child_writer` entry.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use reel_storage::*;

const STREAMS: u64 = 3;
const CHUNK_MS: u64 = 40;
const CHUNKS_PER_FRAGMENT: u64 = 50; // 2 s fragments
const CHUNK_LEN: usize = 200;
/// The RPO the store promises.
const MAX_LOSS_MS: u64 = 1000;

fn config(root: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(root);
    c.retention_sweep_interval = None;
    c.segment_max_bytes = 256 * 1024;
    c
}

/// Child process: writes real-time paced chunks on several streams until killed, printing
/// `C <stream> <media end ms>` after each append and `P <stream> <number> <chunks>` after
/// each finished fragment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "entry point of the writer process spawned by sigkill_mid_append"]
async fn child_writer() {
    let dir = std::env::var("REEL_CRASH_DIR").expect("run by sigkill_mid_append");
    let round: u64 = std::env::var("REEL_CRASH_ROUND").unwrap().parse().unwrap();
    let store = Store::open(config(dir.as_ref())).await.unwrap();
    let mut tasks = Vec::new();
    for st in 0..STREAMS {
        let s = store.open_or_create_stream(&format!("stream-{st}"), 24).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut frag_ts = T0 + round * 10_000_000;
            while started.elapsed() < Duration::from_secs(60) {
                let header = Bytes::from(format!("header {st}/{frag_ts}"));
                let mut w = s
                    .begin_fragment(FragmentStart { producer_ts_ms: frag_ts, server_ts_ms: frag_ts, header })
                    .await
                    .unwrap();
                for c in 0..CHUNKS_PER_FRAGMENT {
                    tokio::time::sleep(Duration::from_millis(CHUNK_MS)).await;
                    let end = ((c + 1) * CHUNK_MS) as u32;
                    w.append_chunk(end, chunk_bytes(st, frag_ts, c, CHUNK_LEN)).await.unwrap();
                    println!("C {st} {}", frag_ts + end as u64);
                }
                let info = w.finish((CHUNKS_PER_FRAGMENT * CHUNK_MS) as u32).await.unwrap();
                println!("P {st} {} {}", info.number, info.chunk_count);
                frag_ts += CHUNKS_PER_FRAGMENT * CHUNK_MS;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_append() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let mut persisted: HashMap<FragmentNumber, (u64, u32)> = HashMap::new();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..6u64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let run_for = Duration::from_millis(700 + rng % 2600);
        let mut child = Command::new(&exe)
            .args(["--exact", "child_writer", "--ignored", "--nocapture", "--test-threads", "1"])
            .env("REEL_CRASH_DIR", &root)
            .env("REEL_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader =
            std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<String>>());
        tokio::time::sleep(run_for).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        let mut last_media: HashMap<u64, u64> = HashMap::new();
        for l in &lines {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["C", st, end] => {
                    last_media.insert(st.parse().unwrap(), end.parse().unwrap());
                }
                ["P", st, n, chunks] => {
                    persisted.insert(n.parse().unwrap(), (st.parse().unwrap(), chunks.parse().unwrap()));
                }
                _ => {}
            }
        }
        // Reopen as the next process would.
        let store = Store::open(config(&root)).await.unwrap();
        for (number, (st, chunks)) in &persisted {
            let s = store.stream(&format!("stream-{st}")).unwrap();
            let f = s
                .read_fragment(*number)
                .await
                .unwrap_or_else(|e| panic!("round {round}: persisted {number} lost: {e}"));
            assert_eq!(f.info.chunk_count, *chunks);
            assert!(!f.info.truncated);
        }
        for st in 0..STREAMS {
            let Ok(s) = store.stream(&format!("stream-{st}")) else { continue };
            let mut recovered_end = 0;
            for info in s.latest_fragments(usize::MAX) {
                let f = s
                    .read_fragment(info.number)
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: corrupt fragment served: {e}"));
                assert_eq!(f.header, Bytes::from(format!("header {st}/{}", info.producer_ts_ms)));
                for (c, ch) in f.chunks.iter().enumerate() {
                    assert_eq!(
                        ch.data,
                        chunk_bytes(st, info.producer_ts_ms, c as u64, CHUNK_LEN),
                        "round {round}: wrong bytes"
                    );
                }
                recovered_end = recovered_end.max(info.producer_ts_ms + info.duration_ms as u64);
            }
            if let Some(reported) = last_media.get(&st) {
                let lost = reported.saturating_sub(recovered_end);
                assert!(lost <= MAX_LOSS_MS, "round {round} stream {st}: lost {lost} ms of media");
            }
        }
        drop(store);
    }
    assert!(!persisted.is_empty(), "the writer never persisted anything");
}
