//! The store's behaviour suite, run on both the filesystem and the S3 backend.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use reel_storage::*;

async fn ordering_and_uniqueness(backend: Backend) {
    let mut h = Harness::new(backend).await;
    let streams: Vec<Stream> = futures_join((0..3).map(|i| {
        let store = h.store.clone();
        async move {
            store
                .create_stream(&format!("arn:aws:kinesisvideo:us-east-1:000000000000:stream/s{i}/1"), 24)
                .await
                .unwrap()
        }
    }))
    .await;
    // Three writers in parallel.
    let mut tasks = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut infos = Vec::new();
            for f in 0..12u64 {
                infos.push(write_fragment(&s, i as u64, f, T0 + f * 2000, T0 + f * 2000 + 7, 3, 300).await);
            }
            infos
        }));
    }
    let mut all = HashSet::new();
    let mut per_stream = Vec::new();
    for t in tasks {
        let infos = t.await.unwrap();
        for w in infos.windows(2) {
            assert!(w[0].number < w[1].number, "numbers must increase per stream");
            assert!(w[0].number.to_string() < w[1].number.to_string(), "string order too");
        }
        for i in &infos {
            assert!(all.insert(i.number), "number {} reused across streams", i.number);
        }
        per_stream.push(infos);
    }
    h.reopen(|_| {}).await;
    if backend == Backend::S3 {
        assert_eq!(local_segment_files(&h.store_root()), 0, "cache size 0: every read below is a ranged GET");
        assert!(h.s3.as_ref().unwrap().object_count() >= 3);
    }
    for (i, infos) in per_stream.iter().enumerate() {
        let s = h.store.stream(streams[i].id()).unwrap();
        for (f, info) in infos.iter().enumerate() {
            let frag = s.read_fragment(info.number).await.unwrap();
            assert_eq!(frag.info, *info);
            assert_fragment(&frag, i as u64, f as u64, 300);
        }
        let next = write_fragment(&s, i as u64, 99, T0, T0, 1, 10).await;
        assert!(next.number > infos.last().unwrap().number, "numbers keep increasing after a restart");
        assert!(all.insert(next.number));
    }
}

async fn futures_join<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    for f in fs {
        out.push(f.await);
    }
    out
}

async fn range_scans_and_page_tokens(backend: Backend) {
    let h = Harness::new(backend).await;
    let s = h.store.create_stream("scan", 24).await.unwrap();
    let mut infos = Vec::new();
    for f in 0..30u64 {
        // Server time increases; producer time jumps around (a producer clock reset).
        let producer = T0 + ((f * 7) % 30) * 1000;
        infos.push(write_fragment(&s, 1, f, producer, T0 + f * 1000, 1, 50).await);
    }
    for kind in [TimestampKind::Server, TimestampKind::Producer] {
        for (start, end) in
            [(0u64, u64::MAX), (T0 + 5000, T0 + 17_000), (T0 + 17_000, T0 + 17_000), (T0 + 31_000, T0 + 40_000)]
        {
            let range = TimestampRange { kind, start_ms: start, end_ms: end };
            let expected: Vec<FragmentNumber> = infos
                .iter()
                .filter(|i| {
                    let t = if kind == TimestampKind::Server { i.server_ts_ms } else { i.producer_ts_ms };
                    t >= start && t <= end
                })
                .map(|i| i.number)
                .collect();
            let mut got = Vec::new();
            let mut page = s.list_fragments(range, 7).unwrap();
            loop {
                assert!(page.fragments.len() <= 7);
                got.extend(page.fragments.iter().map(|f| f.number));
                let Some(tok) = page.next_token else { break };
                let tok: PageToken = tok.to_string().parse().unwrap();
                page = s.list_fragments_after(&tok, 7).unwrap();
            }
            assert_eq!(got, expected, "{kind:?} [{start}, {end}]");
        }
    }
    let bad = TimestampRange { kind: TimestampKind::Server, start_ms: 5, end_ms: 4 };
    assert!(matches!(s.list_fragments(bad, 10), Err(StoreError::InvalidArgument(_))));
    assert!(matches!("not-a-token".parse::<PageToken>(), Err(StoreError::InvalidArgument(_))));
    assert_eq!(
        s.latest_fragments(3).iter().map(|i| i.number).collect::<Vec<_>>(),
        infos[27..].iter().map(|i| i.number).collect::<Vec<_>>()
    );
    let missing = FragmentNumber::from_counter(infos.last().unwrap().number.counter() + 1000);
    assert!(matches!(s.read_fragment(missing).await, Err(StoreError::FragmentNotFound { .. })));
    assert!(matches!(s.fragment_info(missing), Err(StoreError::FragmentNotFound { .. })));
}

async fn live_tail_under_concurrent_appends(backend: Backend) {
    let h = Harness::new(backend).await;
    let s = h.store.create_stream("live", 24).await.unwrap();
    let other = h.store.create_stream("other", 24).await.unwrap();
    let mut pre = Vec::new();
    for f in 0..5u64 {
        pre.push(write_fragment(&s, 2, f, T0 + f * 1000, T0 + f * 1000, 2, 200).await);
    }
    const LIVE: u64 = 40;
    let total = 5 + LIVE as usize;
    let readers = vec![
        (s.subscribe(StartPosition::Earliest).unwrap(), total, 0),
        (s.subscribe(StartPosition::Now).unwrap(), LIVE as usize, 5),
        (s.subscribe(StartPosition::AfterFragment(pre[1].number)).unwrap(), total - 2, 2),
        (s.subscribe(StartPosition::ContinuationToken(pre[3].number)).unwrap(), total - 4, 4),
        (s.subscribe(StartPosition::ServerTimestamp(T0 + 2500)).unwrap(), total - 3, 3), // 2500 is in the gap after fragment 2
        (s.subscribe(StartPosition::ProducerTimestamp(T0 + 3000)).unwrap(), total - 3, 3),
    ];
    let mut handles = Vec::new();
    for (n, (mut r, want, skip)) in readers.into_iter().enumerate() {
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < want {
                let f = tokio::time::timeout(Duration::from_secs(20), r.next())
                    .await
                    .expect("tail stalled")
                    .unwrap()
                    .unwrap();
                assert_fragment(&f, 2, f.info.producer_ts_ms.saturating_sub(T0) / 1000, 200);
                got.push(f.info.number);
                if n == 0 {
                    tokio::time::sleep(Duration::from_millis(15)).await; // a slow reader lags, loses nothing
                }
            }
            assert_eq!(r.last_delivered(), got.last().copied());
            (got, skip)
        }));
    }
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for f in 5..5 + LIVE {
                write_fragment(&s, 2, f, T0 + f * 1000, T0 + f * 1000, 2, 200).await;
            }
        })
    };
    let noise = tokio::spawn(async move {
        for f in 0..LIVE {
            write_fragment(&other, 3, f, T0, T0, 1, 100).await;
        }
    });
    writer.await.unwrap();
    noise.await.unwrap();
    let all: Vec<FragmentNumber> = s
        .list_fragments(TimestampRange { kind: TimestampKind::Server, start_ms: 0, end_ms: u64::MAX }, 1000)
        .unwrap()
        .fragments
        .iter()
        .map(|f| f.number)
        .collect();
    assert_eq!(all.len(), total);
    for hd in handles {
        let (got, skip) = hd.await.unwrap();
        assert_eq!(got, all[skip..].to_vec(), "tail must deliver exactly the fragments after its start, in order");
    }
}

async fn retention_with_manual_clock(backend: Backend) {
    let h = Harness::new(backend).await;
    let s = h.store.create_stream("ret", 1).await.unwrap();
    let keep = h.store.create_stream("keep", 48).await.unwrap();
    let mut old = Vec::new();
    for f in 0..20u64 {
        let now = h.clock.now_ms();
        old.push(write_fragment(&s, 4, f, now, now, 4, 300).await);
        write_fragment(&keep, 5, f, now, now, 1, 300).await;
        h.clock.advance_ms(60_000);
    }
    h.store.seal_all().await;
    h.store.wait_for_uploads().await;
    let objects_before = h.s3.as_ref().map(|s| s.object_count());
    // 20 min later nothing has expired (retention 1 h).
    assert_eq!(h.store.sweep_retention().await.unwrap(), RetentionReport::default());
    h.clock.advance_ms(3_600_000);
    let rep = h.store.sweep_retention().await.unwrap();
    assert_eq!(rep.fragments_deleted, 20, "{rep:?}");
    assert!(rep.segments_deleted >= 1);
    for i in &old {
        assert!(matches!(s.read_fragment(i.number).await, Err(StoreError::FragmentNotFound { .. })));
    }
    assert_eq!(keep.latest_fragments(100).len(), 20, "another stream's longer retention is untouched");
    if let (Some(srv), Some(before)) = (&h.s3, objects_before) {
        assert!(srv.object_count() < before, "expired segment objects are deleted from S3");
    }
    // Fresh data; then retention lowered to 0 takes effect on the next sweep.
    let now = h.clock.now_ms();
    let fresh = write_fragment(&keep, 5, 100, now, now, 1, 10).await;
    keep.set_retention_hours(0).await.unwrap();
    h.clock.advance_ms(1000);
    h.store.sweep_retention().await.unwrap();
    assert!(matches!(keep.read_fragment(fresh.number).await, Err(StoreError::FragmentNotFound { .. })));
    assert_eq!(keep.retention_hours(), 0);
}

async fn retention_change_persists(backend: Backend) {
    let mut h = Harness::new(backend).await;
    let s = h.store.create_stream("persist-ret", 5).await.unwrap();
    s.set_retention_hours(72).await.unwrap();
    h.reopen(|_| {}).await;
    assert_eq!(h.store.stream("persist-ret").unwrap().retention_hours(), 72);
}

async fn delete_semantics(backend: Backend) {
    let h = Harness::new(backend).await;
    let id = "arn:aws:kinesisvideo:us-east-1:000000000000:stream/".to_string() + &"x".repeat(256) + "/1700000000000";
    let s = h.store.create_stream(&id, 24).await.unwrap();
    let first: Vec<FragmentInfo> = {
        let mut v = Vec::new();
        for f in 0..10u64 {
            v.push(write_fragment(&s, 6, f, T0, T0, 3, 400).await);
        }
        v
    };
    h.store.seal_all().await;
    h.store.wait_for_uploads().await;
    let mut tail = s.subscribe(StartPosition::Now).unwrap();
    let waiting = tokio::spawn(async move { tail.next().await });
    let mut w =
        s.begin_fragment(FragmentStart { producer_ts_ms: T0, server_ts_ms: T0, header: Bytes::new() }).await.unwrap();
    w.append_chunk(40, Bytes::from_static(b"x")).await.unwrap();
    h.store.delete_stream(&id).await.unwrap();
    assert!(matches!(w.append_chunk(80, Bytes::from_static(b"y")).await, Err(StoreError::StreamDeleted { .. })));
    assert!(matches!(w.finish(80).await, Err(StoreError::StreamDeleted { .. })));
    assert!(matches!(
        s.begin_fragment(FragmentStart { producer_ts_ms: 0, server_ts_ms: 0, header: Bytes::new() }).await,
        Err(StoreError::StreamDeleted { .. })
    ));
    let ended = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap().unwrap();
    assert!(ended.is_none(), "live readers end when the stream is deleted");
    assert!(matches!(s.read_fragment(first[0].number).await, Err(StoreError::StreamDeleted { .. })));
    assert!(matches!(h.store.stream(&id), Err(StoreError::StreamNotFound { .. })));
    assert!(matches!(h.store.delete_stream(&id).await, Err(StoreError::StreamNotFound { .. })));
    let streams_dir = h.store_root().join("streams");
    assert_eq!(std::fs::read_dir(&streams_dir).unwrap().count(), 0, "no local data left");
    if let Some(srv) = &h.s3 {
        assert_eq!(srv.object_count(), 0, "no S3 objects left");
    }
    // The id can be reused; numbers never repeat.
    let again = h.store.create_stream(&id, 24).await.unwrap();
    assert!(again.latest_fragments(10).is_empty());
    let n = write_fragment(&again, 6, 0, T0, T0, 1, 10).await;
    assert!(n.number > first.last().unwrap().number);
}

async fn abandoned_fragment_keeps_prefix(backend: Backend) {
    let mut h = Harness::new(backend).await;
    let s = h.store.create_stream("abandon", 24).await.unwrap();
    let mut w = s
        .begin_fragment(FragmentStart { producer_ts_ms: T0, server_ts_ms: T0, header: "header 7/0".into() })
        .await
        .unwrap();
    let number = w.number();
    for c in 0..3u64 {
        w.append_chunk(((c + 1) * 40) as u32, chunk_bytes(7, 0, c, 100)).await.unwrap();
    }
    // A second writer is refused while the first is alive.
    assert!(matches!(
        s.begin_fragment(FragmentStart { producer_ts_ms: T0, server_ts_ms: T0, header: Bytes::new() }).await,
        Err(StoreError::FragmentInProgress { .. })
    ));
    drop(w);
    // An empty abandoned fragment is dropped entirely.
    let empty =
        s.begin_fragment(FragmentStart { producer_ts_ms: T0, server_ts_ms: T0, header: Bytes::new() }).await.unwrap();
    let empty_number = empty.number();
    assert!(empty_number > number);
    drop(empty);
    let next = write_fragment(&s, 7, 1, T0 + 2000, T0 + 2000, 2, 100).await;
    let kept = s.read_fragment(number).await.unwrap();
    assert!(kept.info.truncated);
    assert_eq!((kept.info.chunk_count, kept.info.duration_ms), (3, 120));
    assert_fragment(&kept, 7, 0, 100);
    assert!(matches!(s.read_fragment(empty_number).await, Err(StoreError::FragmentNotFound { .. })));
    h.reopen(|_| {}).await;
    let s = h.store.stream("abandon").unwrap();
    let listed: Vec<FragmentNumber> = s.latest_fragments(10).iter().map(|i| i.number).collect();
    assert_eq!(listed, vec![number, next.number], "same view after a restart");
    assert!(s.read_fragment(number).await.unwrap().info.truncated);
}

async fn big_fragments_round_trip(backend: Backend) {
    let mut h = Harness::with(backend, |c| c.segment_max_bytes = 1 << 20).await;
    let s = h.store.create_stream("big", 24).await.unwrap();
    let mut infos = Vec::new();
    for f in 0..6u64 {
        infos.push(write_fragment(&s, 8, f, T0 + f * 4000, T0 + f * 4000, 25, 16 * 1024).await);
    }
    h.reopen(|_| {}).await;
    let s = h.store.stream("big").unwrap();
    for (f, i) in infos.iter().enumerate() {
        let frag = s.read_fragment(i.number).await.unwrap();
        assert_fragment(&frag, 8, f as u64, 16 * 1024);
        assert_eq!(frag.payload().len(), 25 * 16 * 1024);
    }
}

both_backends!(
    ordering_and_uniqueness,
    range_scans_and_page_tokens,
    live_tail_under_concurrent_appends,
    retention_with_manual_clock,
    retention_change_persists,
    delete_semantics,
    abandoned_fragment_keeps_prefix,
    big_fragments_round_trip,
);
