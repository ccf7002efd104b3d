//! Typed errors for disk full, permission denied, failing fsync and S3 outages; data
//! already persisted stays intact and readable, and the store recovers once the fault ends.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use reel_storage::*;

fn start(ts: u64) -> FragmentStart {
    FragmentStart { producer_ts_ms: ts, server_ts_ms: ts, header: Bytes::from_static(b"h") }
}

async fn with_faults() -> (Harness, Arc<FaultInjector>) {
    let faults = Arc::new(FaultInjector::new());
    let f = faults.clone();
    let h = Harness::with(Backend::Fs, move |c| c.fault_injector = Some(f.clone())).await;
    (h, faults)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_mid_fragment_aborts_it_and_keeps_persisted_data() {
    let (mut h, faults) = with_faults().await;
    let s = h.store.create_stream("cam", 24).await.unwrap();
    let mut good = Vec::new();
    for f in 0..3 {
        good.push(write_fragment(&s, 1, f, T0 + f * 1000, T0 + f * 1000, 2, 100).await);
    }
    let mut w = s.begin_fragment(start(T0 + 3000)).await.unwrap();
    let failed_number = w.number();
    w.append_chunk(40, chunk_bytes(1, 3, 0, 100)).await.unwrap();
    faults.fail_writes(1, Fault::DiskFull);
    match w.append_chunk(80, chunk_bytes(1, 3, 1, 100)).await {
        Err(StoreError::DiskFull { path }) => assert!(path.to_string_lossy().contains("seg-"), "{path:?}"),
        other => panic!("expected DiskFull, got {other:?}"),
    }
    assert!(
        matches!(w.append_chunk(120, Bytes::from_static(b"z")).await, Err(StoreError::DiskFull { .. })),
        "the error sticks"
    );
    assert!(matches!(w.finish(120).await, Err(StoreError::DiskFull { .. })));
    for (f, i) in good.iter().enumerate() {
        assert_fragment(&s.read_fragment(i.number).await.unwrap(), 1, f as u64, 100);
    }
    assert!(matches!(s.read_fragment(failed_number).await, Err(StoreError::FragmentNotFound { .. })));
    // Space is back: writing resumes (in a fresh segment).
    good.push(write_fragment(&s, 1, 4, T0 + 4000, T0 + 4000, 2, 100).await);
    h.reopen(|_| {}).await;
    let s = h.store.stream("cam").unwrap();
    let listed: Vec<FragmentNumber> = s.latest_fragments(10).iter().map(|i| i.number).collect();
    assert_eq!(listed, good.iter().map(|i| i.number).collect::<Vec<_>>(), "the aborted fragment never resurfaces");
    for (i, f) in good.iter().zip([0u64, 1, 2, 4]) {
        assert_fragment(&s.read_fragment(i.number).await.unwrap(), 1, f, 100);
    }
}

/// The in-place append (reel's store thread) stores what the pooled one does and fails
/// the same way: a write error aborts the fragment and sticks, persisted data stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_appends_store_the_same_and_fail_the_same() {
    let (mut h, faults) = with_faults().await;
    let s = h.store.create_stream("cam", 24).await.unwrap();
    let mut good = Vec::new();
    for f in 0..2u64 {
        let header = Bytes::from(format!("header 5/{f}"));
        let ts = T0 + f * 1000;
        let mut w = s.begin_fragment(FragmentStart { producer_ts_ms: ts, server_ts_ms: ts, header }).await.unwrap();
        for c in 0..3u64 {
            w.append_chunk_blocking(((c + 1) * 40) as u32, chunk_bytes(5, f, c, 100)).unwrap();
        }
        good.push(w.finish(120).await.unwrap());
    }
    let mut w = s.begin_fragment(start(T0 + 2000)).await.unwrap();
    let failed_number = w.number();
    w.append_chunk_blocking(40, chunk_bytes(5, 2, 0, 100)).unwrap();
    faults.fail_writes(1, Fault::DiskFull);
    assert!(matches!(w.append_chunk_blocking(80, chunk_bytes(5, 2, 1, 100)), Err(StoreError::DiskFull { .. })));
    assert!(matches!(w.append_chunk_blocking(120, Bytes::from_static(b"z")), Err(StoreError::DiskFull { .. })));
    assert!(matches!(w.finish(120).await, Err(StoreError::DiskFull { .. })));
    assert!(matches!(s.read_fragment(failed_number).await, Err(StoreError::FragmentNotFound { .. })));
    h.reopen(|_| {}).await;
    let s = h.store.stream("cam").unwrap();
    let listed: Vec<FragmentNumber> = s.latest_fragments(10).iter().map(|i| i.number).collect();
    assert_eq!(listed, good.iter().map(|i| i.number).collect::<Vec<_>>());
    for (f, i) in good.iter().enumerate() {
        let read = s.read_fragment(i.number).await.unwrap();
        assert_eq!(read.chunks.len(), 3);
        assert_fragment(&read, 5, f as u64, 100);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_denied_creating_a_segment_is_reported() {
    let (h, faults) = with_faults().await;
    let s = h.store.create_stream("cam", 24).await.unwrap();
    faults.fail_writes(1, Fault::PermissionDenied);
    match s.begin_fragment(start(T0)).await {
        Err(StoreError::PermissionDenied { path }) => assert!(path.to_string_lossy().contains("seg-")),
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    let ok = write_fragment(&s, 2, 0, T0, T0, 1, 10).await;
    assert_fragment(&s.read_fragment(ok.number).await.unwrap(), 2, 0, 10);
    faults.fail_writes(1, Fault::DiskFull);
    assert!(matches!(h.store.create_stream("other", 1).await, Err(StoreError::DiskFull { .. })));
    assert!(matches!(h.store.stream("other"), Err(StoreError::StreamNotFound { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_fsync_fails_finish_not_earlier_fragments() {
    let (mut h, faults) = with_faults().await;
    let s = h.store.create_stream("cam", 24).await.unwrap();
    let first = write_fragment(&s, 3, 0, T0, T0, 2, 100).await;
    let mut w = s.begin_fragment(start(T0 + 1000)).await.unwrap();
    let n = w.number();
    w.append_chunk(40, Bytes::from_static(b"abc")).await.unwrap();
    faults.fail_syncs(1, Fault::Io);
    assert!(matches!(w.finish(40).await, Err(StoreError::Io { .. })));
    assert!(matches!(s.read_fragment(n).await, Err(StoreError::FragmentNotFound { .. })));
    let second = write_fragment(&s, 3, 2, T0 + 2000, T0 + 2000, 2, 100).await;
    h.reopen(|_| {}).await;
    let s = h.store.stream("cam").unwrap();
    assert_eq!(s.latest_fragments(10).iter().map(|i| i.number).collect::<Vec<_>>(), vec![first.number, second.number]);
    assert_fragment(&s.read_fragment(first.number).await.unwrap(), 3, 0, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_is_reported_and_recovered() {
    let mut h = Harness::with(Backend::S3, |c| {
        c.segment_max_bytes = 2048;
        if let Some(s3) = c.s3.as_mut() {
            s3.max_pending_upload_bytes = 16 * 1024;
        }
    })
    .await;
    let s = h.store.create_stream("cam", 24).await.unwrap();
    let mut infos = Vec::new();
    for f in 0..8u64 {
        infos.push(write_fragment(&s, 4, f, T0 + f * 1000, T0 + f * 1000, 3, 300).await);
    }
    h.store.seal_all().await;
    h.store.wait_for_uploads().await;
    assert_eq!(local_segment_files(&h.store_root()), 0);
    h.s3.as_mut().unwrap().stop().await;
    // Reads of evicted data fail with a typed error…
    match s.read_fragment(infos[0].number).await {
        Err(StoreError::S3Unavailable { message }) => assert!(message.contains("GetObject"), "{message}"),
        other => panic!("expected S3Unavailable, got {other:?}"),
    }
    // …writes keep landing locally until the upload backlog is full, then fail typed.
    let mut during = Vec::new();
    let refused = loop {
        let f = 100 + during.len() as u64;
        let header = Bytes::from(format!("header 4/{f}"));
        match s.begin_fragment(FragmentStart { producer_ts_ms: T0, server_ts_ms: T0, header }).await {
            Ok(mut w) => {
                for c in 0..3u64 {
                    w.append_chunk(((c + 1) * 40) as u32, chunk_bytes(4, f, c, 300)).await.unwrap();
                }
                let info = w.finish(120).await.unwrap();
                assert_fragment(&s.read_fragment(info.number).await.unwrap(), 4, f, 300);
                during.push((f, info));
                assert!(during.len() < 200, "back-pressure never kicked in");
            }
            Err(e) => break e,
        }
    };
    assert!(matches!(refused, StoreError::S3Unavailable { .. }), "{refused:?}");
    assert!(!during.is_empty());
    // S3 is back: the backlog drains, everything is readable (now via S3), writes resume.
    h.s3.as_mut().unwrap().restart().await;
    tokio::time::timeout(Duration::from_secs(60), h.store.wait_for_uploads()).await.expect("uploads did not resume");
    for (f, i) in infos.iter().enumerate() {
        assert_fragment(&s.read_fragment(i.number).await.unwrap(), 4, f as u64, 300);
    }
    for (f, i) in &during {
        assert_fragment(&s.read_fragment(i.number).await.unwrap(), 4, *f, 300);
    }
    write_fragment(&s, 4, 999, T0, T0, 1, 10).await;
}
