//! Shared mode: two stores (two nodes) over one real S3-compatible server and one catalog.
//! What one node writes under its lease is readable, listable and followable live on the
//! other; a writer whose lease moved on is refused by the catalog and its fragments never
//! become visible; numbers increase across writers; an unavailable catalog delays
//! visibility without losing fragments; a restarted node reads everything back from S3.

mod common;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use reel_storage::*;

const STREAM: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:stream/cam/1";

/// The catalog in memory: rows per stream in insertion order, the current fence per stream,
/// an "available" switch, and its own clock for polls.
#[derive(Debug, Default)]
struct MemCatalog {
    state: Mutex<CatalogState>,
}

#[derive(Debug, Default)]
struct CatalogState {
    rows: Vec<(String, CatalogEntry, u64)>,
    fences: HashMap<String, Fence>,
    down: bool,
    retention_ms: u64,
    /// Reads of fragment rows (`list_after` and `after_each` calls).
    reads: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl MemCatalog {
    fn lock(&self) -> std::sync::MutexGuard<'_, CatalogState> {
        self.state.lock().unwrap()
    }
    fn take(&self, holder: &str, epoch: u64) -> Fence {
        let f = Fence { holder: holder.into(), epoch };
        self.lock().fences.insert(STREAM.into(), f.clone());
        f
    }
    fn check(&self) -> Result<std::sync::MutexGuard<'_, CatalogState>, CatalogError> {
        let s = self.lock();
        if s.down { Err(CatalogError::Unavailable("switched off".into())) } else { Ok(s) }
    }
}

#[async_trait::async_trait]
impl Catalog for MemCatalog {
    async fn insert(&self, stream: &str, entry: &CatalogEntry, fence: &Fence) -> Result<(), CatalogError> {
        let mut s = self.check()?;
        if s.fences.get(stream) != Some(fence) {
            return Err(CatalogError::Fenced { stream: stream.into(), epoch: fence.epoch });
        }
        if !s.rows.iter().any(|(id, e, _)| id == stream && e.info.number == entry.info.number) {
            s.rows.push((stream.into(), entry.clone(), now_ms()));
        }
        Ok(())
    }
    async fn list_after(&self, stream: &str, after: u64, limit: usize) -> Result<Vec<CatalogEntry>, CatalogError> {
        let mut s = self.check()?;
        s.reads += 1;
        let mut v: Vec<CatalogEntry> = s
            .rows
            .iter()
            .filter(|(id, e, _)| id == stream && e.info.number.counter() > after)
            .map(|(_, e, _)| e.clone())
            .collect();
        v.sort_by_key(|e| e.info.number);
        v.truncate(limit);
        Ok(v)
    }
    async fn after_each(&self, after: &[(String, u64)]) -> Result<Vec<(String, CatalogEntry)>, CatalogError> {
        let mut s = self.check()?;
        s.reads += 1;
        let mut rows: Vec<(String, CatalogEntry)> = s
            .rows
            .iter()
            .filter(|(id, e, _)| after.iter().any(|(s, c)| s == id && e.info.number.counter() > *c))
            .map(|(id, e, _)| (id.clone(), e.clone()))
            .collect();
        rows.sort_by(|a, b| (&a.0, a.1.info.number).cmp(&(&b.0, b.1.info.number)));
        Ok(rows)
    }
    async fn floors(&self, streams: &[String]) -> Result<Vec<(String, u64)>, CatalogError> {
        let s = self.check()?;
        let mut out: Vec<(String, u64)> = Vec::new();
        for id in streams {
            if let Some(min) = s.rows.iter().filter(|(i, _, _)| i == id).map(|(_, e, _)| e.info.number.counter()).min()
            {
                out.push((id.clone(), min));
            }
        }
        Ok(out)
    }
    async fn expire(&self, now: u64) -> Result<Vec<(String, u64)>, CatalogError> {
        let mut s = self.check()?;
        let keep = s.retention_ms;
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut s.rows)
            .into_iter()
            .partition(|(_, e, _)| e.info.server_ts_ms + u64::from(e.info.duration_ms) + keep < now);
        s.rows = kept;
        Ok(gone.into_iter().map(|(id, e, _)| (id, e.info.number.counter())).collect())
    }
    async fn remove_stream(&self, stream: &str) -> Result<Vec<u64>, CatalogError> {
        let mut s = self.check()?;
        let (gone, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut s.rows).into_iter().partition(|(id, _, _)| id == stream);
        s.rows = kept;
        Ok(gone.into_iter().map(|(_, e, _)| e.info.number.counter()).collect())
    }
}

struct Node {
    store: Store,
}

async fn node(dir: &std::path::Path, s3: &S3Server, catalog: &Arc<MemCatalog>, clock: &ManualClock) -> Node {
    node_with(dir, s3, catalog, clock, |_| {}).await
}

async fn node_with(
    dir: &std::path::Path,
    s3: &S3Server,
    catalog: &Arc<MemCatalog>,
    clock: &ManualClock,
    tune: impl FnOnce(&mut StoreConfig),
) -> Node {
    let mut c = StoreConfig::new(dir);
    c.clock = Arc::new(clock.clone());
    c.retention_sweep_interval = None;
    c.segment_max_bytes = 4096;
    c.s3 = Some(s3.config("reel/"));
    c.catalog = Some(catalog.clone() as Arc<dyn Catalog>);
    c.catalog_poll_interval = Duration::from_millis(10);
    tune(&mut c);
    Node { store: Store::open(c).await.expect("open shared store") }
}

async fn write(stream: &Stream, fence: &Fence, frag: u64, ts: u64) -> Result<FragmentInfo, StoreError> {
    let header = Bytes::from(format!("header {frag}"));
    let mut w =
        stream.begin_fenced_fragment(FragmentStart { producer_ts_ms: ts, server_ts_ms: ts, header }, fence).await?;
    for c in 0..3 {
        w.append_chunk(((c + 1) * 40) as u32, chunk_bytes(1, frag, c, 700)).await?;
    }
    w.finish(120).await
}

/// Writes fragments `frags` (fragment i at T0 + i × 120 ms) under `fence`, waits until
/// `store` has replicated them, and returns their numbers.
async fn write_replicated(store: &Store, stream: &Stream, fence: &Fence, frags: Range<u64>) -> Vec<FragmentNumber> {
    let mut written = Vec::new();
    for i in frags {
        written.push(write(stream, fence, i, T0 + i * 120).await.unwrap().number);
    }
    store.wait_for_uploads().await;
    written
}

fn numbers(page: &FragmentPage) -> Vec<FragmentNumber> {
    page.fragments.iter().map(|f| f.number).collect()
}

const ALL: TimestampRange = TimestampRange { kind: TimestampKind::Server, start_ms: 0, end_ms: u64::MAX };

/// Waits until `cond` holds (polls every 10 ms, fails after 5 s).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_streams_and_fencing_keeps_one_writer() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3")).await;
    let catalog = Arc::new(MemCatalog::default());
    let clock = ManualClock::new(T0);
    let a = node(&dir.path().join("a"), &s3, &catalog, &clock).await;
    let b = node(&dir.path().join("b"), &s3, &catalog, &clock).await;

    // A writes under its lease; the fragments become visible once replicated.
    let fence_a = catalog.take("a", 5);
    let sa = a.store.open_or_create_stream(STREAM, 24).await.unwrap();
    assert!(
        sa.begin_fragment(FragmentStart { producer_ts_ms: 1, server_ts_ms: 1, header: Bytes::new() }).await.is_err(),
        "a shared store is written only under a fence"
    );
    let mut written = write_replicated(&a.store, &sa, &fence_a, 0..4).await;
    assert_eq!(numbers(&sa.list_fragments(ALL, 100).unwrap()), written);
    assert_eq!(a.store.commit_stats().batches, 0, "the local write-ahead copy is never fsynced: S3 holds the data");

    // B opens the stream: everything A indexed is listed and reads back byte for byte.
    let sb = b.store.open_or_create_stream(STREAM, 24).await.unwrap();
    assert_eq!(numbers(&sb.list_fragments(ALL, 100).unwrap()), written);
    for (i, n) in written.iter().enumerate() {
        let f = sb.read_fragment(*n).await.unwrap();
        assert_eq!(f.header, Bytes::from(format!("header {i}")));
        assert_eq!(f.chunks[2].data, chunk_bytes(1, i as u64, 2, 700));
    }

    // B follows live: A's next fragment arrives through B's poll of the catalog.
    let mut live = sb.subscribe(StartPosition::Now).unwrap();
    let next = write(&sa, &fence_a, 4, T0 + 480).await.unwrap().number;
    let got = tokio::time::timeout(Duration::from_secs(5), live.next()).await.expect("live on B").unwrap().unwrap();
    assert_eq!(got.info.number, next);
    written.push(next);

    // B takes the stream over: A's lease is dead, so what A writes now is never indexed,
    // and B's numbers continue above A's.
    let fence_b = catalog.take("b", 9);
    let stale = write(&sa, &fence_a, 5, T0 + 600).await.unwrap().number;
    let fresh = write(&sb, &fence_b, 6, T0 + 720).await.unwrap().number;
    assert!(fresh > next && stale > next);
    b.store.wait_for_uploads().await;
    a.store.wait_for_uploads().await;
    written.push(fresh);
    // A has no live reader, so nothing polls for it: a read catches up first (as reel's
    // readers all do).
    sa.catch_up().await.unwrap();
    assert_eq!(numbers(&sa.list_fragments(ALL, 100).unwrap()), written, "A sees B's fragment");
    assert_eq!(numbers(&sb.list_fragments(ALL, 100).unwrap()), written);
    assert!(matches!(sb.read_fragment(stale).await, Err(StoreError::FragmentNotFound { .. })));
    // A stale epoch on the node that already wrote under a newer one is refused at once.
    let old = Fence { holder: "b".into(), epoch: 3 };
    assert!(matches!(write(&sb, &old, 7, T0 + 840).await, Err(StoreError::Fenced { epoch: 3, .. })));

    // The catalog is down for a while: B keeps writing locally; nothing is visible until it
    // returns, then everything is, in order.
    catalog.lock().down = true;
    let mut during = Vec::new();
    for i in 0..3 {
        during.push(write(&sb, &fence_b, 10 + i, T0 + 1000 + i * 120).await.unwrap().number);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(numbers(&sb.list_fragments(ALL, 100).unwrap()), written, "not visible while unindexed");
    catalog.lock().down = false;
    b.store.wait_for_uploads().await;
    written.extend(&during);
    assert_eq!(numbers(&sb.list_fragments(ALL, 100).unwrap()), written);
    sa.catch_up().await.unwrap();
    assert_eq!(numbers(&sa.list_fragments(ALL, 100).unwrap()), written, "A sees them too");

    // A restarts: its local copies are discarded and everything reads back from S3.
    drop(sa);
    drop(a);
    let a = node(&dir.path().join("a"), &s3, &catalog, &clock).await;
    let sa = a.store.open_or_create_stream(STREAM, 24).await.unwrap();
    assert_eq!(numbers(&sa.list_fragments(ALL, 100).unwrap()), written);
    for n in &written {
        sa.read_fragment(*n).await.unwrap();
    }

    // Retention removes rows and objects cluster-wide; both nodes' indexes follow.
    let objects_before = s3.object_count();
    catalog.lock().retention_ms = 0;
    clock.advance_ms(10_000);
    b.store.sweep_retention().await.unwrap();
    eventually("both indexes trimmed", || {
        sa.list_fragments(ALL, 100).unwrap().fragments.is_empty()
            && sb.list_fragments(ALL, 100).unwrap().fragments.is_empty()
    })
    .await;
    assert_eq!(s3.object_count(), objects_before - written.len(), "their objects are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_segments_leave_the_local_disk_and_deletion_is_cluster_wide() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3")).await;
    let catalog = Arc::new(MemCatalog::default());
    let clock = ManualClock::new(T0);
    let a = node(&dir.path().join("a"), &s3, &catalog, &clock).await;
    let b = node(&dir.path().join("b"), &s3, &catalog, &clock).await;
    let fence = catalog.take("a", 1);
    let sa = a.store.open_or_create_stream(STREAM, 24).await.unwrap();
    // 4 KiB segments and ~2 KiB fragments: several sealed segments.
    let written = write_replicated(&a.store, &sa, &fence, 0..8).await;
    a.store.sweep_retention().await.unwrap();
    let local_segments = std::fs::read_dir(dir.path().join("a/streams"))
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .filter(|f| f.file_name().to_string_lossy().ends_with(".log"))
        .count();
    assert!(local_segments <= 1, "only the active segment stays local, found {local_segments}");
    for n in &written {
        sa.read_fragment(*n).await.unwrap();
    }
    let sb = b.store.open_or_create_stream(STREAM, 24).await.unwrap();
    assert_eq!(numbers(&sb.list_fragments(ALL, 100).unwrap()), written);
    // Deleting on B removes the stream's rows and objects; A's index empties on its next floor poll.
    b.store.delete_stream(STREAM).await.unwrap();
    assert_eq!(s3.object_count(), 0);
    eventually("A's index emptied", || sa.list_fragments(ALL, 100).map(|p| p.fragments.is_empty()).unwrap_or(true))
        .await;
}

/// The bus between nodes in memory: every notice a node sent, delivered by the test.
#[derive(Debug, Default)]
struct MemNotices {
    sent: Mutex<Vec<(String, CatalogEntry, u64)>>,
}

impl IndexNotices for MemNotices {
    fn indexed(&self, stream: &str, entry: &CatalogEntry, previous: u64) {
        self.sent.lock().unwrap().push((stream.into(), entry.clone(), previous));
    }
}

impl MemNotices {
    fn take(&self) -> Vec<(String, CatalogEntry, u64)> {
        std::mem::take(&mut *self.sent.lock().unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_notices_keep_a_reader_current_without_the_catalog_and_a_gap_or_silence_sends_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3")).await;
    let catalog = Arc::new(MemCatalog::default());
    let clock = ManualClock::new(T0);
    // Long enough for the steps before the silence to run within it on a loaded machine.
    let trust = Duration::from_secs(3);
    let a = node_with(&dir.path().join("a"), &s3, &catalog, &clock, |c| c.notice_trust = trust).await;
    let b = node_with(&dir.path().join("b"), &s3, &catalog, &clock, |c| c.notice_trust = trust).await;
    let bus = Arc::new(MemNotices::default());
    assert!(a.store.attach_index_notices(bus.clone()));
    assert!(b.store.attach_index_notices(bus.clone()));
    assert!(!b.store.attach_index_notices(bus.clone()), "once per store");
    let reads = || catalog.lock().reads;

    // A writes two fragments: one notice each, chained by `previous`.
    let fence = catalog.take("a", 3);
    let sa = a.store.open_or_create_stream(STREAM, 24).await.unwrap();
    let mut written = write_replicated(&a.store, &sa, &fence, 0..2).await;
    let sent = bus.take();
    let chain: Vec<(u64, u64)> = sent.iter().map(|(_, e, p)| (e.info.number.counter(), *p)).collect();
    assert_eq!(chain, vec![(written[0].counter(), 0), (written[1].counter(), written[0].counter())]);
    assert!(sent.iter().all(|(id, e, _)| id == STREAM && e.object_bytes > 0));
    // A node that has not opened the stream ignores notices (it loads the stream whole).
    assert_eq!(b.store.apply_index_notice(STREAM, &sent[0].1, sent[0].2), NoticeOutcome::NotOpen);

    // B opens the stream (one catalog read); notices of what it already has are known.
    let sb = b.store.open_or_create_stream(STREAM, 24).await.unwrap();
    for (id, e, p) in &sent {
        assert_eq!(b.store.apply_index_notice(id, e, *p), NoticeOutcome::Known);
    }
    let after_open = reads();
    sb.catch_up().await.unwrap();
    assert_eq!(reads(), after_open, "a current stream is read without the catalog");

    // A's next fragment reaches B's listing and its live reader by the notice alone.
    let mut live = sb.subscribe(StartPosition::Now).unwrap();
    written.extend(write_replicated(&a.store, &sa, &fence, 2..3).await);
    for (id, e, p) in bus.take() {
        assert_eq!(b.store.apply_index_notice(&id, &e, p), NoticeOutcome::Applied);
    }
    let got = tokio::time::timeout(Duration::from_secs(5), live.next()).await.expect("live on B").unwrap().unwrap();
    assert_eq!(got.info.number, written[2]);
    sb.catch_up().await.unwrap();
    assert_eq!(numbers(&sb.list_fragments(ALL, 100).unwrap()), written);
    assert_eq!(reads(), after_open, "neither the read nor the live reader's poll asked the catalog");

    // A notice is lost: the next one shows the gap, and the next read asks the catalog.
    written.extend(write_replicated(&a.store, &sa, &fence, 3..5).await);
    let sent = bus.take();
    assert_eq!(sent.len(), 2);
    let (id, e, p) = &sent[1];
    assert_eq!(b.store.apply_index_notice(id, e, *p), NoticeOutcome::Gap);
    assert_eq!(sb.list_fragments(ALL, 100).unwrap().fragments.len(), 3, "not listed out of order");
    sb.catch_up().await.unwrap();
    assert!(reads() > after_open);
    assert_eq!(numbers(&sb.list_fragments(ALL, 100).unwrap()), written);

    // Silence: the last notice is lost and no other follows; once the trust has run out,
    // a read asks the catalog again and finds it.
    written.extend(write_replicated(&a.store, &sa, &fence, 5..6).await);
    assert_eq!(bus.take().len(), 1);
    sb.catch_up().await.unwrap();
    assert_eq!(sb.list_fragments(ALL, 100).unwrap().fragments.len(), 5, "trusted: not asked yet");
    tokio::time::sleep(trust + Duration::from_millis(50)).await;
    sb.catch_up().await.unwrap();
    assert_eq!(numbers(&sb.list_fragments(ALL, 100).unwrap()), written);
}
