//! Group commit: chunks reach disk without any fsync of their own, and concurrent
//! fragment finishes across streams share fsync batches.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use reel_storage::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_chunks_are_committed_by_the_interval() {
    let h = Harness::with(Backend::Fs, |c| c.commit_interval = Duration::from_millis(100)).await;
    let s = h.store.create_stream("cam", 24).await.unwrap();
    let mut w =
        s.begin_fragment(FragmentStart { producer_ts_ms: T0, server_ts_ms: T0, header: Bytes::new() }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = h.store.commit_stats().batches;
    w.append_chunk(40, Bytes::from_static(b"frame")).await.unwrap();
    // No one waits for this chunk; the commit thread must still sync it on its own.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while h.store.commit_stats().batches == before {
        assert!(tokio::time::Instant::now() < deadline, "dirty chunk never committed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.finish(40).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_finishes_share_fsync_batches() {
    const STREAMS: usize = 200;
    let h = Harness::new(Backend::Fs).await;
    let mut writers = Vec::new();
    for i in 0..STREAMS {
        let s = h.store.create_stream(&format!("s{i}"), 24).await.unwrap();
        let mut w = s
            .begin_fragment(FragmentStart { producer_ts_ms: T0, server_ts_ms: T0, header: Bytes::new() })
            .await
            .unwrap();
        w.append_chunk(40, Bytes::from_static(b"frame")).await.unwrap();
        writers.push(w);
    }
    let before = h.store.commit_stats().batches;
    let tasks: Vec<_> = writers.into_iter().map(|w| tokio::spawn(w.finish(40))).collect();
    let mut numbers = std::collections::HashSet::new();
    for t in tasks {
        assert!(numbers.insert(t.await.unwrap().unwrap().number));
    }
    let batches = h.store.commit_stats().batches - before;
    assert!(batches < STREAMS as u64, "{STREAMS} finishes took {batches} fsync batches: no group commit");
}
