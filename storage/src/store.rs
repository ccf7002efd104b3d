//! The store: configuration, startup recovery, the stream registry, deletion, retention
//! sweeps, and the S3 upload/eviction task.
//!
//! On-disk layout under [`StoreConfig::root`]:
//! ```text
//! counter                          fragment-number lease (see crate::number)
//! streams/stream-<n>/stream.meta   stream id (hex) + retention, checksummed
//! streams/stream-<n>/seg-<seq>.log segment: magic + records (crate::record)
//! streams/stream-<n>/seg-<seq>.idx sidecar index of a sealed segment
//! streams/stream-<n>/seg-<seq>.uploaded  marker: the S3 object exists
//! trash/                           deleted streams being removed
//! ```
//! Stream directories are named by an allocated number, not derived from the stream id, so
//! any id (an ARN of any length) maps to a short safe name; `stream.meta` holds the id.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::catalog::{Catalog, CatalogEntry, IndexNotices, NoticeOutcome};
use crate::clock::{Clock, SystemClock};
use crate::commit::{CommitStats, Committer};
use crate::error::{Result, StoreError};
use crate::fault::FaultInjector;
use crate::number::{NumberAllocator, sync_dir, write_atomically};
use crate::remote::{Remote, S3Config};
use crate::segment::{IndexEntry, decode_index, encode_index, scan_segment};
use crate::stream::{
    EMPTY_SEGMENT_LEN, SegmentMeta, Stream, StreamIndex, StreamInner, blocking, index_path, segment_path,
    uploaded_marker_path,
};

/// How the store is set up. Build with [`StoreConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory holding all data (created if missing).
    pub root: PathBuf,
    /// Longest time a written chunk may stay unsynced: the RPO bound (keep ≤ 1 s).
    pub commit_interval: Duration,
    /// A commit batch touching at least this many files uses one `syncfs` instead of an
    /// `fdatasync` per file.
    pub syncfs_threshold: usize,
    /// A segment is sealed once it reaches this size (checked between fragments).
    pub segment_max_bytes: u64,
    /// A segment is sealed once this old (by [`StoreConfig::clock`]); the retention granularity.
    pub segment_max_age: Duration,
    /// How often the background retention sweep runs; `None` = only on explicit
    /// [`Store::sweep_retention`] calls.
    pub retention_sweep_interval: Option<Duration>,
    /// Time source for retention and segment age.
    pub clock: Arc<dyn Clock>,
    /// S3 backend; `None` = local filesystem only.
    pub s3: Option<S3Config>,
    /// Test hook: injected I/O failures.
    pub fault_injector: Option<Arc<FaultInjector>>,
    /// Shared mode (a cluster): the fragment index every node shares; needs [`Self::s3`].
    /// See the `shared` module docs for what changes.
    pub catalog: Option<Arc<dyn Catalog>>,
    /// Shared mode: how often this node polls the catalog for other nodes' fragments.
    pub catalog_poll_interval: Duration,
    /// Shared mode with [`IndexNotices`] attached: how long after the last notice (or
    /// catalog read) a stream's index is trusted complete, so reads and the poll skip the
    /// catalog. Bounds how stale a listing can get when a notice is lost.
    pub notice_trust: Duration,
}

impl StoreConfig {
    /// Defaults: 200 ms commit interval, syncfs from 16 files, 64 MiB / 10 min segments,
    /// 60 s retention sweeps, system clock, no S3, local mode (no catalog; 100 ms polls,
    /// notices trusted for 5 s).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StoreConfig {
            root: root.into(),
            commit_interval: Duration::from_millis(200),
            syncfs_threshold: 16,
            segment_max_bytes: 64 << 20,
            segment_max_age: Duration::from_secs(600),
            retention_sweep_interval: Some(Duration::from_secs(60)),
            clock: Arc::new(SystemClock),
            s3: None,
            fault_injector: None,
            catalog: None,
            catalog_poll_interval: Duration::from_millis(100),
            notice_trust: Duration::from_secs(5),
        }
    }
}

/// What startup recovery found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Streams loaded.
    pub streams: usize,
    /// Fragments indexed.
    pub fragments: usize,
    /// Segments whose index had to be rebuilt by scanning records.
    pub segments_scanned: usize,
    /// Unfinished fragments kept as shorter fragments (torn-fragment rule).
    pub torn_fragments_kept: usize,
    /// Unfinished fragments dropped (no complete chunk).
    pub torn_fragments_dropped: usize,
    /// Bytes cut from torn segment tails.
    pub bytes_truncated: u64,
    /// Human-readable notes on damaged files (each names the file).
    pub problems: Vec<String>,
}

/// What one retention sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segment files deleted.
    pub segments_deleted: usize,
    /// Fragments they held.
    pub fragments_deleted: usize,
}

/// A sealed segment waiting for upload.
#[derive(Debug)]
pub(crate) struct UploadJob {
    pub stream: Weak<StreamInner>,
    pub seq: u64,
    pub len: u64,
}

/// Shared by the store and its streams.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub root: PathBuf,
    pub config: StoreConfig,
    pub committer: Committer,
    pub numbers: NumberAllocator,
    pub remote: Option<Remote>,
    pub next_file_id: AtomicU64,
    pub seal_order: AtomicU64,
    pub upload_tx: mpsc::UnboundedSender<UploadJob>,
    /// Shared mode's catalog (a copy of the config's).
    pub catalog: Option<Arc<dyn Catalog>>,
    /// Signalled after every finished upload job.
    pub upload_done: Notify,
    /// Shared mode: where this node announces what it indexed (attached after opening).
    pub notices: std::sync::OnceLock<Arc<dyn IndexNotices>>,
}

impl Ctx {
    /// Next store-wide counter value (fragment numbers and stream directories).
    pub(crate) async fn allocate_number(self: &Arc<Self>) -> Result<u64> {
        if self.numbers.has_lease() {
            return self.numbers.allocate_blocking();
        }
        let me = self.clone();
        blocking(move || me.numbers.allocate_blocking()).await
    }
}

/// The retained-stream store. Cheap to clone; see the crate docs for the model.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

#[derive(Debug)]
pub(crate) struct StoreInner {
    pub(crate) ctx: Arc<Ctx>,
    streams: Mutex<HashMap<String, Arc<StreamInner>>>,
    create_lock: tokio::sync::Mutex<()>,
    report: RecoveryReport,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        for t in self.tasks.get_mut().unwrap_or_else(|p| p.into_inner()).drain(..) {
            t.abort();
        }
    }
}

impl Store {
    /// Opens (creating if needed) the store at `config.root`, running recovery: torn segment
    /// tails are truncated, indexes verified or rebuilt, and the torn-fragment rule applied.
    /// Fails with a typed error naming the file when data cannot be read at all.
    pub async fn open(config: StoreConfig) -> Result<Store> {
        let root = config.root.clone();
        if config.catalog.is_some() {
            if config.s3.is_none() {
                return Err(StoreError::InvalidArgument("shared mode (a catalog) needs the S3 backend".into()));
            }
            let root = root.clone();
            blocking(move || discard_local_streams(&root)).await?;
        }
        let (found, report, max_counter) = {
            let root = root.clone();
            blocking(move || recover(&root)).await?
        };
        let numbers = NumberAllocator::open(&root.join("counter"), max_counter + 1)?;
        let committer = if config.catalog.is_some() {
            Committer::write_ahead_only()
        } else {
            Committer::start(&root, config.commit_interval, config.syncfs_threshold, config.fault_injector.clone())?
        };
        let (upload_tx, upload_rx) = mpsc::unbounded_channel();
        let ctx = Arc::new(Ctx {
            root: root.clone(),
            remote: config.s3.clone().map(Remote::new),
            catalog: config.catalog.clone(),
            config,
            committer,
            numbers,
            next_file_id: AtomicU64::new(1),
            seal_order: AtomicU64::new(1),
            upload_tx,
            upload_done: Notify::new(),
            notices: std::sync::OnceLock::new(),
        });
        let mut streams = HashMap::new();
        for r in found {
            let s = StreamInner::new(
                ctx.clone(),
                r.id.clone(),
                r.dir,
                r.dir_name,
                r.retention_hours,
                r.index,
                r.next_segment,
            );
            for seg in s.write_index().segments.values_mut() {
                seg.sealed_order = ctx.seal_order.fetch_add(1, Ordering::Relaxed);
            }
            streams.insert(r.id, s);
        }
        let inner = Arc::new(StoreInner {
            ctx: ctx.clone(),
            streams: Mutex::new(streams),
            create_lock: tokio::sync::Mutex::new(()),
            report,
            tasks: Mutex::new(Vec::new()),
        });
        if ctx.remote.is_some() {
            let streams: Vec<Arc<StreamInner>> = inner.lock_streams().values().cloned().collect();
            for s in streams {
                let segs: Vec<(u64, u64)> = s
                    .read_index()
                    .segments
                    .iter()
                    .filter(|(_, m)| !m.uploaded && m.local)
                    .map(|(k, m)| (*k, m.len))
                    .collect();
                for (seq, len) in segs {
                    s.queue_upload(seq, len);
                }
            }
            let t = tokio::spawn(upload_loop(Arc::downgrade(&inner), upload_rx));
            inner.lock_tasks().push(t);
        }
        if inner.ctx.catalog.is_some() {
            let t =
                tokio::spawn(crate::shared::poll_loop(Arc::downgrade(&inner), inner.ctx.config.catalog_poll_interval));
            inner.lock_tasks().push(t);
        }
        if let Some(every) = inner.ctx.config.retention_sweep_interval {
            let weak = Arc::downgrade(&inner);
            let t = tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else { return };
                    let store = Store { inner };
                    if let Err(e) = store.sweep_retention().await {
                        tracing::warn!(error = %e, "retention sweep failed");
                    }
                }
            });
            inner.lock_tasks().push(t);
        }
        let store = Store { inner };
        let r = store.recovery_report();
        tracing::info!(
            streams = r.streams,
            fragments = r.fragments,
            scanned = r.segments_scanned,
            problems = r.problems.len(),
            "store opened"
        );
        Ok(store)
    }

    /// Whether the S3 backend answers: `None` without one, else the outcome of a
    /// HeadBucket on it (for a load balancer's readiness check).
    pub async fn check_remote(&self) -> Option<Result<()>> {
        let remote = self.inner.ctx.remote.as_ref()?;
        Some(remote.check().await)
    }

    /// What recovery did when the store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// Group-commit counters.
    pub fn commit_stats(&self) -> CommitStats {
        self.inner.ctx.committer.stats()
    }

    /// Creates a stream; [`StoreError::InvalidArgument`] if it already exists.
    pub async fn create_stream(&self, id: &str, retention_hours: u32) -> Result<Stream> {
        let _g = self.inner.create_lock.lock().await;
        if self.inner.lock_streams().contains_key(id) {
            return Err(StoreError::InvalidArgument(format!("stream {id:?} already exists")));
        }
        let n = self.inner.ctx.allocate_number().await?;
        let dir_name = format!("stream-{n:020}");
        let dir = self.inner.ctx.root.join("streams").join(&dir_name);
        {
            let (dir, id) = (dir.clone(), id.to_string());
            let faults = self.inner.ctx.config.fault_injector.clone();
            blocking(move || {
                if let Some(f) = faults {
                    f.check_write().map_err(|e| StoreError::io(&dir, &e))?;
                }
                std::fs::create_dir(&dir).map_err(|e| StoreError::io(&dir, &e))?;
                write_stream_meta(&dir, &id, retention_hours)?;
                sync_dir(dir.parent().unwrap_or(&dir))
            })
            .await?;
        }
        let s = StreamInner::new(
            self.inner.ctx.clone(),
            id.to_string(),
            dir,
            dir_name,
            retention_hours,
            StreamIndex::default(),
            0,
        );
        self.inner.lock_streams().insert(id.to_string(), s.clone());
        Ok(Stream { inner: s })
    }

    /// Returns the stream, creating it with `retention_hours` if it does not exist
    /// (an existing stream keeps its retention). In shared mode a stream this node has not
    /// opened yet is loaded from the catalog: what any node wrote is readable here.
    pub async fn open_or_create_stream(&self, id: &str, retention_hours: u32) -> Result<Stream> {
        if let Ok(s) = self.stream(id) {
            return Ok(s);
        }
        let created = match self.create_stream(id, retention_hours).await {
            Err(StoreError::InvalidArgument(_)) => return self.stream(id),
            other => other?,
        };
        if let Err(e) = created.catch_up().await {
            // Not loaded: forget the handle so the next open tries again.
            self.inner.lock_streams().remove(id);
            return Err(e);
        }
        Ok(created)
    }

    /// Shared mode: announce every fragment this node indexes through `notices`, and from
    /// now on trust the notices other nodes send ([`Self::apply_index_notice`]) to keep
    /// open streams current without asking the catalog on every read. Once per store;
    /// false if notices were already attached or the store is not shared.
    pub fn attach_index_notices(&self, notices: Arc<dyn IndexNotices>) -> bool {
        self.is_shared() && self.inner.ctx.notices.set(notices).is_ok()
    }

    /// Another node indexed `entry` of `stream` after its fragment `previous`
    /// ([`IndexNotices::indexed`]): list it here at once, or note the gap.
    pub fn apply_index_notice(&self, stream: &str, entry: &CatalogEntry, previous: u64) -> NoticeOutcome {
        match self.inner.lock_streams().get(stream).cloned() {
            Some(s) if self.is_shared() => s.apply_notice(entry, previous),
            _ => NoticeOutcome::NotOpen,
        }
    }

    /// Whether this store shares its streams with other nodes through a catalog.
    pub fn is_shared(&self) -> bool {
        self.inner.ctx.catalog.is_some()
    }

    /// The stream with this id, or [`StoreError::StreamNotFound`].
    pub fn stream(&self, id: &str) -> Result<Stream> {
        self.inner
            .lock_streams()
            .get(id)
            .map(|s| Stream { inner: s.clone() })
            .ok_or_else(|| StoreError::StreamNotFound { stream: id.to_string() })
    }

    /// Ids of all streams.
    pub fn stream_ids(&self) -> Vec<String> {
        self.inner.lock_streams().keys().cloned().collect()
    }

    /// Deletes a stream and all its data (local files and S3 objects). Its writers then get
    /// [`StoreError::StreamDeleted`]; its live readers end. The id can be created again.
    pub async fn delete_stream(&self, id: &str) -> Result<()> {
        let local = self.inner.lock_streams().remove(id);
        if let Some(s) = &local {
            s.mark_deleted();
        }
        if let (Some(catalog), Some(remote)) = (&self.inner.ctx.catalog, &self.inner.ctx.remote) {
            for counter in catalog.remove_stream(id).await? {
                let key = crate::shared::fragment_key(&remote.config.prefix, id, counter);
                if let Err(e) = remote.delete(&key).await {
                    tracing::warn!(key, error = %e, "could not delete the object of a deleted stream");
                }
            }
        }
        let s = local.ok_or_else(|| StoreError::StreamNotFound { stream: id.to_string() })?;
        let uploaded: Vec<u64> = s.read_index().segments.iter().filter(|(_, m)| m.uploaded).map(|(k, _)| *k).collect();
        let trash = self.inner.ctx.root.join("trash").join(&s.dir_name);
        let dir = s.dir.clone();
        blocking(move || {
            std::fs::rename(&dir, &trash).map_err(|e| StoreError::io(&dir, &e))?;
            if let Some(p) = dir.parent() {
                sync_dir(p)?;
            }
            std::fs::remove_dir_all(&trash).map_err(|e| StoreError::io(&trash, &e))
        })
        .await?;
        if let Some(remote) = &self.inner.ctx.remote {
            for seq in uploaded {
                let key = remote.key(&s.dir_name, seq);
                if let Err(e) = remote.delete(&key).await {
                    tracing::warn!(key, error = %e, "could not delete the object of a deleted stream");
                }
            }
        }
        Ok(())
    }

    /// Applies every stream's retention now (the background task calls this periodically).
    pub async fn sweep_retention(&self) -> Result<RetentionReport> {
        let now = self.inner.ctx.config.clock.now_ms();
        let streams: Vec<Arc<StreamInner>> = self.inner.lock_streams().values().cloned().collect();
        let mut report = RetentionReport::default();
        report.fragments_deleted += crate::shared::expire(&self.inner.ctx, now).await?;
        for s in streams {
            let (segs, frags) = s.sweep(now).await;
            report.segments_deleted += segs;
            report.fragments_deleted += frags;
        }
        Ok(report)
    }

    /// With S3: waits until every sealed segment is uploaded (S3 must be reachable).
    pub async fn wait_for_uploads(&self) {
        let Some(remote) = &self.inner.ctx.remote else { return };
        loop {
            let done = self.inner.ctx.upload_done.notified();
            if remote.pending_bytes.load(Ordering::SeqCst) == 0 {
                return;
            }
            done.await;
        }
    }

    /// Seals every stream's active segment (publishing abandoned fragments) so the data is
    /// indexed and, with S3, queued for upload. Streams with a live writer are skipped.
    pub async fn seal_all(&self) {
        let streams: Vec<Arc<StreamInner>> = self.inner.lock_streams().values().cloned().collect();
        for s in streams {
            if let Ok(mut st) = s.writer.clone().try_lock_owned() {
                s.seal_active(&mut st).await;
            }
        }
    }
}

impl StoreInner {
    /// Every open stream.
    pub(crate) fn stream_handles(&self) -> Vec<Arc<StreamInner>> {
        self.lock_streams().values().cloned().collect()
    }

    fn lock_streams(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<StreamInner>>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes local copies of uploaded segments, oldest sealed first, beyond the cache size.
    async fn evict_cache(&self) {
        let Some(remote) = &self.ctx.remote else { return };
        let streams: Vec<Arc<StreamInner>> = self.lock_streams().values().cloned().collect();
        let mut cached: Vec<(u64, Arc<StreamInner>, u64, u64)> = Vec::new();
        for s in &streams {
            for (seq, m) in s.read_index().segments.iter() {
                if m.local && m.sealed && m.uploaded {
                    cached.push((m.sealed_order, s.clone(), *seq, m.len));
                }
            }
        }
        let mut total: u64 = cached.iter().map(|c| c.3).sum();
        cached.sort_by_key(|c| c.0);
        for (_, s, seq, len) in cached {
            if total <= remote.config.local_cache_max_bytes {
                break;
            }
            if let Some(m) = s.write_index().segments.get_mut(&seq) {
                m.local = false;
            }
            let path = segment_path(&s.dir, seq);
            let _ = blocking(move || std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, &e))).await;
            total -= len;
        }
    }
}

/// Uploads sealed segments one at a time, retrying with backoff while S3 is unavailable.
async fn upload_loop(store: Weak<StoreInner>, mut rx: mpsc::UnboundedReceiver<UploadJob>) {
    while let Some(job) = rx.recv().await {
        let mut backoff = Duration::from_millis(200);
        loop {
            let Some(inner) = store.upgrade() else { return };
            let Some(remote) = inner.ctx.remote.as_ref() else { return };
            let stream = job.stream.upgrade().filter(|s| !s.deleted.load(Ordering::SeqCst));
            let Some(stream) = stream.filter(|s| s.read_index().segments.contains_key(&job.seq)) else {
                remote.pending_bytes.fetch_sub(job.len, Ordering::SeqCst);
                break;
            };
            let path = segment_path(&stream.dir, job.seq);
            let body = match tokio::fs::read(&path).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "segment vanished before upload");
                    remote.pending_bytes.fetch_sub(job.len, Ordering::SeqCst);
                    break;
                }
            };
            let key = remote.key(&stream.dir_name, job.seq);
            match remote.put(&key, Bytes::from(body)).await {
                Ok(()) => {
                    let marker = uploaded_marker_path(&stream.dir, job.seq);
                    let _ = tokio::fs::write(&marker, b"").await;
                    if let Some(m) = stream.write_index().segments.get_mut(&job.seq) {
                        m.uploaded = true;
                    }
                    *remote.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    remote.pending_bytes.fetch_sub(job.len, Ordering::SeqCst);
                    if stream.deleted.load(Ordering::SeqCst) {
                        let _ = remote.delete(&key).await;
                    }
                    inner.evict_cache().await;
                    break;
                }
                Err(e) => {
                    tracing::warn!(key, error = %e, "segment upload failed; retrying");
                    *remote.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    drop(inner);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        if let Some(inner) = store.upgrade() {
            inner.ctx.upload_done.notify_waiters();
        }
    }
}

const META_MAGIC: &str = "reel-stream-meta 1";

/// Writes `stream.meta` atomically.
pub(crate) fn write_stream_meta(dir: &Path, id: &str, retention_hours: u32) -> Result<()> {
    let body = format!("{META_MAGIC}\nstream-id-hex {}\nretention-hours {retention_hours}\n", hex::encode(id));
    let text = format!("{body}crc32c {}\n", crc32c::crc32c(body.as_bytes()));
    write_atomically(&dir.join("stream.meta"), text.as_bytes())
}

fn read_stream_meta(path: &Path) -> Result<(String, u32)> {
    let text = std::fs::read_to_string(path).map_err(|e| StoreError::io(path, &e))?;
    let bad = |why: &str| StoreError::corrupt(path, 0, why.to_string());
    let cut = text.rfind("crc32c ").ok_or_else(|| bad("no checksum line"))?;
    let (body, crc_line) = text.split_at(cut);
    let crc: u32 = crc_line.trim_start_matches("crc32c ").trim().parse().map_err(|_| bad("bad checksum line"))?;
    if crc32c::crc32c(body.as_bytes()) != crc {
        return Err(bad("checksum mismatch"));
    }
    let mut lines = body.lines();
    if lines.next() != Some(META_MAGIC) {
        return Err(bad("unknown format"));
    }
    let field = |line: Option<&str>, name: &str| {
        line.and_then(|l| l.strip_prefix(name)).map(str::to_string).ok_or_else(|| bad("missing field"))
    };
    let id_hex = field(lines.next(), "stream-id-hex ")?;
    let id = hex::decode(&id_hex).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(|| bad("bad stream id"))?;
    let hours = field(lines.next(), "retention-hours ")?.parse().map_err(|_| bad("bad retention"))?;
    Ok((id, hours))
}

/// One stream as found on disk.
struct RecoveredStream {
    id: String,
    dir: PathBuf,
    dir_name: String,
    retention_hours: u32,
    index: StreamIndex,
    next_segment: u64,
}

fn parse_seq(name: &str, ext: &str) -> Option<u64> {
    name.strip_prefix("seg-")?.strip_suffix(ext)?.parse().ok()
}

/// Scans the whole root (blocking). Returns the streams, the report and the largest counter seen.
/// Shared mode: a node's local streams are only write-ahead copies of what the catalog
/// indexes (see the `shared` module), so they are removed when the store opens.
fn discard_local_streams(root: &Path) -> Result<()> {
    let streams = root.join("streams");
    if !streams.exists() {
        return Ok(());
    }
    let trash = root.join("trash");
    std::fs::create_dir_all(&trash).map_err(|e| StoreError::io(&trash, &e))?;
    let target = trash.join(format!("streams-{}", std::process::id()));
    std::fs::rename(&streams, &target).map_err(|e| StoreError::io(&streams, &e))?;
    tracing::info!(path = %target.display(), "shared mode: discarding this node's local write-ahead copies");
    std::fs::remove_dir_all(&target).map_err(|e| StoreError::io(&target, &e))
}

fn recover(root: &Path) -> Result<(Vec<RecoveredStream>, RecoveryReport, u64)> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| StoreError::io(&p, &e)
    };
    let streams_dir = root.join("streams");
    let trash = root.join("trash");
    std::fs::create_dir_all(&streams_dir).map_err(io(&streams_dir))?;
    std::fs::create_dir_all(&trash).map_err(io(&trash))?;
    for e in std::fs::read_dir(&trash).map_err(io(&trash))?.flatten() {
        let _ = std::fs::remove_dir_all(e.path());
    }
    let mut report = RecoveryReport::default();
    let mut max_counter = 0u64;
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(&streams_dir).map_err(io(&streams_dir))?.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        let Some(dir_name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        let Some(n) = dir_name.strip_prefix("stream-").and_then(|n| n.parse::<u64>().ok()) else { continue };
        max_counter = max_counter.max(n);
        let meta_path = dir.join("stream.meta");
        if !meta_path.exists() {
            // Crashed while creating: nothing was ever written to it.
            let _ = std::fs::remove_dir_all(&dir);
            continue;
        }
        let (id, retention_hours) = read_stream_meta(&meta_path)?;
        let (index, next_segment) = recover_stream(&dir, &mut report, &mut max_counter)?;
        report.streams += 1;
        report.fragments += index.entries.len();
        out.push(RecoveredStream { id, dir, dir_name, retention_hours, index, next_segment });
    }
    Ok((out, report, max_counter))
}

fn recover_stream(dir: &Path, report: &mut RecoveryReport, max_counter: &mut u64) -> Result<(StreamIndex, u64)> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| StoreError::io(&p, &e)
    };
    let mut seqs = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        } else if let Some(s) = parse_seq(&name, ".log").or_else(|| parse_seq(&name, ".idx")) {
            seqs.insert(s);
        }
    }
    let last = seqs.last().copied();
    let mut index = StreamIndex::default();
    for seq in seqs.iter().copied() {
        let log = segment_path(dir, seq);
        let idx_path = index_path(dir, seq);
        let uploaded = uploaded_marker_path(dir, seq).exists();
        let log_len = match std::fs::metadata(&log) {
            Ok(m) => Some(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::io(&log, &e)),
        };
        let from_idx = match std::fs::read(&idx_path) {
            Ok(b) => match decode_index(&b) {
                Ok((len, entries))
                    if log_len.map_or(uploaded, |l| l >= len) && entries.iter().all(|e| e.segment == seq) =>
                {
                    Some((len, entries))
                }
                Ok(_) => {
                    report
                        .problems
                        .push(format!("{}: index does not match its segment; rebuilding", idx_path.display()));
                    None
                }
                Err(why) => {
                    report.problems.push(format!("{}: {why}; rebuilding", idx_path.display()));
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::io(&idx_path, &e)),
        };
        let (len, entries) = match (from_idx, log_len) {
            (Some(x), _) => x,
            (None, None) => {
                return Err(StoreError::corrupt(&idx_path, 0, "segment evicted to S3 and its index is unreadable"));
            }
            (None, Some(file_len)) => {
                let buf = Bytes::from(std::fs::read(&log).map_err(io(&log))?);
                let scan = scan_segment(&buf, seq);
                report.segments_scanned += 1;
                report.torn_fragments_kept += scan.torn_kept;
                report.torn_fragments_dropped += scan.torn_dropped;
                *max_counter = (*max_counter).max(scan.max_counter);
                if scan.valid_len < file_len {
                    let why = scan
                        .stopped
                        .as_ref()
                        .map_or("trailing bytes".to_string(), |(off, r)| format!("{r} at offset {off}"));
                    if Some(seq) == last {
                        tracing::warn!(path = %log.display(), bytes = file_len - scan.valid_len, %why, "truncating torn segment tail");
                        let f = std::fs::OpenOptions::new().write(true).open(&log).map_err(io(&log))?;
                        f.set_len(scan.valid_len).map_err(io(&log))?;
                        f.sync_all().map_err(io(&log))?;
                        report.bytes_truncated += file_len - scan.valid_len;
                    } else {
                        tracing::error!(path = %log.display(), %why, "damaged sealed segment: keeping its valid prefix");
                        report.problems.push(format!(
                            "{}: {why}; {} bytes after it are unreadable",
                            log.display(),
                            file_len - scan.valid_len
                        ));
                    }
                }
                // An empty tail segment (crash while creating it) is removed; a damaged
                // older one is kept for inspection even if nothing in it is readable.
                if scan.fragments.is_empty()
                    && scan.valid_len <= EMPTY_SEGMENT_LEN
                    && (Some(seq) == last || file_len <= EMPTY_SEGMENT_LEN)
                {
                    std::fs::remove_file(&log).map_err(io(&log))?;
                    let _ = std::fs::remove_file(&idx_path);
                    continue;
                }
                write_atomically(&idx_path, &encode_index(scan.valid_len, &scan.fragments))?;
                (scan.valid_len, scan.fragments)
            }
        };
        let newest_end_ms =
            entries.iter().map(|e: &IndexEntry| e.server_ts_ms.saturating_add(e.duration_ms as u64)).max().unwrap_or(0);
        if let Some(e) = entries.last() {
            *max_counter = (*max_counter).max(e.counter);
        }
        index.segments.insert(
            seq,
            SegmentMeta { len, sealed: true, local: log_len.is_some(), uploaded, newest_end_ms, sealed_order: 0 },
        );
        index.entries.extend(entries);
    }
    index.entries.sort_by_key(|e| e.counter);
    sync_dir(dir)?;
    Ok((index, last.map_or(0, |l| l + 1)))
}
