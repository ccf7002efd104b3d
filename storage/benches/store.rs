//! Store benchmarks: print figures beside their baselines (no timed assertions).
//!
//! Run: `cargo bench -p reel-storage --bench store` (set `REEL_BENCH_DIR` to choose the disk;
//! default: the system temp dir). Sizes are kept modest so a run takes about a minute.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reel_storage::*;

const MIB: f64 = 1024.0 * 1024.0;

fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var_os("REEL_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    tempfile::tempdir_in(base).unwrap()
}

fn config(root: &Path) -> StoreConfig {
    let mut c = StoreConfig::new(root);
    c.retention_sweep_interval = None;
    c
}

fn payload(len: usize) -> Bytes {
    (0..len).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>().into()
}

/// Raw sequential write of `total` bytes in `chunk`-sized writes, one fsync at the end.
fn raw_write(dir: &Path, total: usize, chunk: usize) -> Duration {
    use std::io::Write;
    let data = payload(chunk);
    let path = dir.join("raw.bin");
    let t = Instant::now();
    let mut f = std::fs::File::create(&path).unwrap();
    let mut written = 0;
    while written < total {
        f.write_all(&data).unwrap();
        written += chunk;
    }
    f.sync_all().unwrap();
    let d = t.elapsed();
    std::fs::remove_file(path).unwrap();
    d
}

/// Open a fragment on `s` with both timestamps `ts` and a static `header`.
async fn begin(s: &Stream, ts: u64, header: &'static [u8]) -> FragmentWriter {
    s.begin_fragment(FragmentStart { producer_ts_ms: ts, server_ts_ms: ts, header: Bytes::from_static(header) })
        .await
        .unwrap()
}

/// One stream, fragments of 50 chunks, `total` payload bytes.
async fn store_append(dir: &Path, total: usize, chunk: usize) -> (Duration, Store, Vec<FragmentInfo>) {
    let store = Store::open(config(&dir.join("append"))).await.unwrap();
    let s = store.create_stream("bench", 24).await.unwrap();
    let data = payload(chunk);
    let mut infos = Vec::new();
    let t = Instant::now();
    let mut written = 0;
    let mut ts = 1_700_000_000_000u64;
    while written < total {
        let mut w = begin(&s, ts, b"tracks").await;
        for c in 0..50u32 {
            w.append_chunk((c + 1) * 40, data.clone()).await.unwrap();
            written += chunk;
        }
        infos.push(w.finish(2000).await.unwrap());
        ts += 2000;
    }
    (t.elapsed(), store, infos)
}

async fn append_vs_raw(dir: &Path) -> (Store, Vec<FragmentInfo>) {
    println!(
        "== append throughput (1 stream, 2 s fragments of 50 chunks; store fsyncs via group commit, raw fsyncs once) =="
    );
    let total = 256 << 20;
    let mut kept = None;
    for chunk in [16 << 10, 256 << 10] {
        let raw = raw_write(dir, total, chunk);
        let (d, store, infos) = store_append(&dir.join(format!("c{chunk}")), total, chunk).await;
        println!(
            "chunk {:>4} KiB: store append {:>7.1} MB/s   raw sequential write {:>7.1} MB/s   ({:.0}% of raw)",
            chunk >> 10,
            total as f64 / MIB / d.as_secs_f64(),
            total as f64 / MIB / raw.as_secs_f64(),
            100.0 * raw.as_secs_f64() / d.as_secs_f64()
        );
        if chunk == 256 << 10 {
            kept = Some((store, infos));
        }
    }
    kept.unwrap()
}

async fn concurrent_streams(dir: &Path, syncfs_threshold: usize, label: &str) {
    const STREAMS: usize = 1000;
    const FRAGMENTS: usize = 10;
    let mut c = config(&dir.join(format!("many-{label}")));
    c.syncfs_threshold = syncfs_threshold;
    let store = Store::open(c).await.unwrap();
    let mut streams = Vec::new();
    for i in 0..STREAMS {
        streams.push(
            store
                .create_stream(&format!("arn:aws:kinesisvideo:us-east-1:000000000000:stream/s{i}/1"), 24)
                .await
                .unwrap(),
        );
    }
    let data = payload(4096);
    let batches_before = store.commit_stats().batches;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for s in streams {
        let data = data.clone();
        tasks.push(tokio::spawn(async move {
            let mut ts = 1_700_000_000_000u64;
            for _ in 0..FRAGMENTS {
                let mut w = begin(&s, ts, b"tracks").await;
                for c in 0..5u32 {
                    w.append_chunk((c + 1) * 40, data.clone()).await.unwrap();
                }
                w.finish(200).await.unwrap();
                ts += 200;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let d = t.elapsed();
    let n = (STREAMS * FRAGMENTS) as f64;
    let batches = store.commit_stats().batches - batches_before;
    println!(
        "{label:>22}: {:>8.0} persisted fragments/s  ({} fragments, {} commit batches, {:.1} fragments per batch, {:.2} s)",
        n / d.as_secs_f64(),
        n,
        batches,
        n / batches.max(1) as f64,
        d.as_secs_f64()
    );
}

async fn read_vs_cat(store: &Store, infos: &[FragmentInfo], root: &Path) {
    println!("== read throughput (warm page cache, 256 MiB of 256 KiB chunks) ==");
    let s = store.stream("bench").unwrap();
    let mut bytes = 0u64;
    let t = Instant::now();
    for i in infos {
        let f = s.read_fragment(i.number).await.unwrap();
        bytes += f.payload().len() as u64;
    }
    let d = t.elapsed();
    let mut tail = s.subscribe(StartPosition::Earliest).unwrap();
    let t2 = Instant::now();
    let mut tail_bytes = 0u64;
    for _ in infos {
        tail_bytes += tail.next().await.unwrap().unwrap().info.payload_bytes;
    }
    let d2 = t2.elapsed();
    let mut segs: Vec<PathBuf> = Vec::new();
    for sd in std::fs::read_dir(root.join("streams")).unwrap().flatten() {
        for f in std::fs::read_dir(sd.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|x| x == "log") {
                segs.push(f.path());
            }
        }
    }
    let seg_bytes: u64 = segs.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    let t3 = Instant::now();
    let st = std::process::Command::new("cat").args(&segs).stdout(std::process::Stdio::null()).status().unwrap();
    assert!(st.success());
    let d3 = t3.elapsed();
    println!("read_fragment + payload() (CRC check + concat copy): {:>7.1} MB/s", bytes as f64 / MIB / d.as_secs_f64());
    println!(
        "live tail from Earliest (CRC check, zero-copy chunks):{:>7.1} MB/s",
        tail_bytes as f64 / MIB / d2.as_secs_f64()
    );
    println!(
        "cat of the segment files:                              {:>7.1} MB/s",
        seg_bytes as f64 / MIB / d3.as_secs_f64()
    );
}

async fn recovery(dir: &Path) {
    println!("== recovery of 100,000 fragments (100 streams x 1,000 fragments of 1 x 200 B chunk) ==");
    let root = dir.join("recovery");
    let mut c = config(&root);
    c.segment_max_bytes = 1 << 20;
    let store = Store::open(c.clone()).await.unwrap();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let s = store.create_stream(&format!("r{i}"), 24).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let data = payload(200);
            for f in 0..1000u64 {
                let mut w = begin(&s, f, b"h").await;
                w.append_chunk(40, data.clone()).await.unwrap();
                w.finish(40).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "(writing them took {:.1} s: {:.0} persisted fragments/s over 100 streams)",
        t.elapsed().as_secs_f64(),
        100_000.0 / t.elapsed().as_secs_f64()
    );
    // Crash: drop without sealing, so the active segments have no sidecar index.
    drop(store);
    let t = Instant::now();
    let store = Store::open(c.clone()).await.unwrap();
    let d_crash = t.elapsed();
    let rep = store.recovery_report().clone();
    drop(store);
    let t = Instant::now();
    let store = Store::open(c.clone()).await.unwrap();
    let d_clean = t.elapsed();
    let clean_rep = store.recovery_report().clone();
    drop(store);
    // Worst case: every index lost, every segment rescanned.
    for sd in std::fs::read_dir(root.join("streams")).unwrap().flatten() {
        for f in std::fs::read_dir(sd.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|x| x == "idx") {
                std::fs::remove_file(f.path()).unwrap();
            }
        }
    }
    let t = Instant::now();
    let store = Store::open(c).await.unwrap();
    let d_scan = t.elapsed();
    let scan_rep = store.recovery_report().clone();
    println!(
        "after a crash (active segments rescanned): {:>7.3} s  ({} fragments, {} segments scanned)",
        d_crash.as_secs_f64(),
        rep.fragments,
        rep.segments_scanned
    );
    println!(
        "clean reopen (sidecar indexes):            {:>7.3} s  ({} fragments, {} segments scanned)",
        d_clean.as_secs_f64(),
        clean_rep.fragments,
        clean_rep.segments_scanned
    );
    println!(
        "every index lost (full rescan):            {:>7.3} s  ({} fragments, {} segments scanned)",
        d_scan.as_secs_f64(),
        scan_rep.fragments,
        scan_rep.segments_scanned
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let dir = bench_dir();
        println!("bench dir: {}", dir.path().display());
        let (store, infos) = append_vs_raw(dir.path()).await;
        read_vs_cat(&store, &infos, &dir.path().join(format!("c{}", 256 << 10)).join("append")).await;
        drop(store);
        println!("== 1,000 concurrent streams, 10 fragments each of 5 x 4 KiB chunks ==");
        concurrent_streams(dir.path(), 16, "group commit (syncfs)").await;
        concurrent_streams(dir.path(), usize::MAX, "group commit (fdatasync)").await;
        recovery(dir.path()).await;
    });
}
