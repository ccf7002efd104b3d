//! One stream: its handle ([`Stream`]), the single-writer fragment path ([`FragmentWriter`]),
//! reads, listings and the per-stream half of retention.
//!
//! Write path: every record goes to the stream's active segment file with a positional
//! write on the blocking pool, then the file is marked dirty for the group-commit thread
//! ([`crate::commit`]). `finish` waits for a commit covering its FINISH record, then
//! publishes the fragment to the in-memory index and wakes live readers.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tokio::sync::{OwnedMutexGuard, watch};

use crate::catalog::Fence;
use crate::error::{Result, StoreError};
use crate::fragment::{
    Chunk, Fragment, FragmentInfo, FragmentPage, FragmentStart, PageToken, TimestampRange, select_page,
};
use crate::number::{FragmentNumber, sync_dir, write_atomically};
use crate::record::{MAX_RECORD_BODY_BYTES, Record, SEGMENT_MAGIC};
use crate::segment::{IndexEntry, decode_fragment, encode_index};
use crate::shared::{REMOTE_SEGMENT, SharedStream};
use crate::store::{Ctx, UploadJob};
use crate::tail::{StartPosition, TailReader};

/// Length of an empty segment (just its magic).
pub(crate) const EMPTY_SEGMENT_LEN: u64 = SEGMENT_MAGIC.len() as u64;

/// What live readers watch: the newest published fragment and whether the stream is gone.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TailSignal {
    pub last_counter: u64,
    pub deleted: bool,
}

/// Per-segment bookkeeping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentMeta {
    /// Valid bytes (magic + published fragments).
    pub len: u64,
    /// No more writes will go to it.
    pub sealed: bool,
    /// A local copy exists (false once evicted from the S3 cache).
    pub local: bool,
    /// The S3 object exists.
    pub uploaded: bool,
    /// Latest `server_ts + duration` of its fragments; retention compares this.
    pub newest_end_ms: u64,
    /// Store-wide sealing order, for oldest-first cache eviction.
    pub sealed_order: u64,
}

/// The in-memory index of a stream, in fragment-number order.
#[derive(Debug, Default)]
pub(crate) struct StreamIndex {
    pub entries: Vec<IndexEntry>,
    pub segments: BTreeMap<u64, SegmentMeta>,
}

/// The segment currently being appended to.
#[derive(Debug)]
struct ActiveSegment {
    seq: u64,
    file: Arc<File>,
    path: PathBuf,
    file_id: u64,
    /// Bytes written so far.
    len: u64,
    /// End of the last published fragment: what survives if the rest is abandoned.
    good_len: u64,
    created_ms: u64,
}

/// The fragment being written.
#[derive(Debug)]
struct OpenFragment {
    entry: IndexEntry,
    max_end_offset_ms: u32,
}

/// State owned by whoever holds the stream's writer lock.
#[derive(Debug, Default)]
pub(crate) struct WriterState {
    active: Option<ActiveSegment>,
    open: Option<OpenFragment>,
    pub(crate) next_segment: u64,
    /// A write or sync failed: the active segment is sealed at `good_len` before reuse.
    broken: bool,
    /// Shared mode: the lease this node writes under ([`Stream::set_fence`]).
    fence: Option<crate::catalog::Fence>,
    /// Shared mode: the sequence number of the next fragment under `fence`.
    next_seq: u64,
}

/// Shared state of a stream; [`Stream`] and [`TailReader`] hold it.
#[derive(Debug)]
pub(crate) struct StreamInner {
    pub ctx: Arc<Ctx>,
    pub id: String,
    pub dir: PathBuf,
    /// Directory name, also the stream's S3 key component.
    pub dir_name: String,
    pub deleted: AtomicBool,
    pub retention_hours: AtomicU32,
    pub index: RwLock<StreamIndex>,
    pub writer: Arc<tokio::sync::Mutex<WriterState>>,
    pub tail: watch::Sender<TailSignal>,
    meta_write: tokio::sync::Mutex<()>,
    /// Shared mode only: the writer's fence and the replication queue.
    pub shared: Option<SharedStream>,
}

/// Handle to a stream of the store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Stream {
    pub(crate) inner: Arc<StreamInner>,
}

/// Writes one fragment. Obtained from [`Stream::begin_fragment`]; holds the stream's
/// single-writer lock until [`FragmentWriter::finish`] or drop.
///
/// Dropping it without `finish` abandons the fragment: like a crash, its complete chunks
/// are kept as a shorter (truncated) fragment, published by the stream's next
/// `begin_fragment`, the next retention sweep, [`crate::Store::close`] or recovery.
#[derive(Debug)]
pub struct FragmentWriter {
    stream: Arc<StreamInner>,
    state: OwnedMutexGuard<WriterState>,
    number: FragmentNumber,
    /// The first error; the fragment is aborted and every later call repeats it.
    failed: Option<StoreError>,
}

pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("seg-{seq:020}.log"))
}
pub(crate) fn index_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("seg-{seq:020}.idx"))
}
pub(crate) fn uploaded_marker_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("seg-{seq:020}.uploaded"))
}

/// One record write at a known offset of a segment, runnable on any thread.
struct RecordWrite {
    file: Arc<File>,
    path: PathBuf,
    offset: u64,
    buf: Vec<u8>,
    faults: Option<Arc<crate::fault::FaultInjector>>,
}

impl RecordWrite {
    /// Writes the record; returns its length.
    fn run(self) -> Result<u64> {
        if let Some(f) = &self.faults {
            f.check_write().map_err(|e| StoreError::io(&self.path, &e))?;
        }
        self.file.write_all_at(&self.buf, self.offset).map_err(|e| StoreError::io(&self.path, &e))?;
        Ok(self.buf.len() as u64)
    }
}

pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StoreError::Io { path: PathBuf::new(), message: format!("blocking task failed: {e}") }))
}

impl StreamInner {
    pub(crate) fn new(
        ctx: Arc<Ctx>,
        id: String,
        dir: PathBuf,
        dir_name: String,
        retention_hours: u32,
        index: StreamIndex,
        next_segment: u64,
    ) -> Arc<Self> {
        let last_counter = index.entries.last().map_or(0, |e| e.counter);
        let (shared, replication) = match ctx.catalog {
            Some(_) => {
                let (s, rx) = SharedStream::new();
                (Some(s), Some(rx))
            }
            None => (None, None),
        };
        let inner = Arc::new(StreamInner {
            ctx,
            id,
            dir,
            dir_name,
            deleted: AtomicBool::new(false),
            retention_hours: AtomicU32::new(retention_hours),
            index: RwLock::new(index),
            writer: Arc::new(tokio::sync::Mutex::new(WriterState { next_segment, ..WriterState::default() })),
            tail: watch::Sender::new(TailSignal { last_counter, deleted: false }),
            meta_write: tokio::sync::Mutex::new(()),
            shared,
        });
        if let Some(rx) = replication {
            tokio::spawn(crate::shared::replicate_loop(Arc::downgrade(&inner), rx));
        }
        inner
    }

    pub(crate) fn read_index(&self) -> std::sync::RwLockReadGuard<'_, StreamIndex> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, StreamIndex> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn check_alive(&self) -> Result<()> {
        if self.deleted.load(Ordering::SeqCst) {
            return Err(StoreError::StreamDeleted { stream: self.id.clone() });
        }
        Ok(())
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::SeqCst);
        self.tail.send_modify(|s| s.deleted = true);
    }

    fn inject_write_fault(&self, path: &Path) -> Result<()> {
        match &self.ctx.config.fault_injector {
            Some(f) => f.check_write().map_err(|e| StoreError::io(path, &e)),
            None => Ok(()),
        }
    }

    /// First published entry with a counter above `after`.
    pub(crate) fn first_after(&self, after: u64) -> Option<IndexEntry> {
        let idx = self.read_index();
        let i = idx.entries.partition_point(|e| e.counter <= after);
        idx.entries.get(i).copied()
    }

    fn lookup(&self, number: FragmentNumber) -> Result<IndexEntry> {
        let idx = self.read_index();
        let i = idx.entries.partition_point(|e| e.counter < number.counter());
        match idx.entries.get(i) {
            Some(e) if e.counter == number.counter() => Ok(*e),
            _ => Err(StoreError::FragmentNotFound { number: number.to_string() }),
        }
    }

    /// Reads and verifies one indexed fragment, from the local file or S3.
    pub(crate) async fn read_entry(&self, entry: &IndexEntry) -> Result<Fragment> {
        self.check_alive()?;
        let not_found =
            || StoreError::FragmentNotFound { number: FragmentNumber::from_counter(entry.counter).to_string() };
        if entry.segment == REMOTE_SEGMENT {
            return self.read_remote(entry).await;
        }
        let seg = self.read_index().segments.get(&entry.segment).copied().ok_or_else(not_found)?;
        let path = segment_path(&self.dir, entry.segment);
        let remote = self.ctx.remote.as_ref().filter(|_| seg.uploaded);
        let (offset, len) = (entry.offset, entry.len);
        let local = if seg.local {
            let p = path.clone();
            let r = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                let f = File::open(&p)?;
                let mut buf = vec![0u8; len as usize];
                f.read_exact_at(&mut buf, offset)?;
                Ok(buf)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
            match r {
                Ok(buf) => Some(Bytes::from(buf)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && remote.is_some() => None,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.check_alive()?;
                    return Err(not_found());
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(StoreError::corrupt(&path, offset, "segment shorter than its index says"));
                }
                Err(e) => return Err(StoreError::io(&path, &e)),
            }
        } else {
            None
        };
        let (bytes, source) = match (local, remote) {
            (Some(b), _) => (b, path),
            (None, Some(r)) => {
                let key = r.key(&self.dir_name, entry.segment);
                (r.get_range(&key, offset, len).await?, PathBuf::from(key))
            }
            (None, None) => return Err(not_found()),
        };
        let decoded = decode_fragment(&bytes, entry)
            .map_err(|(off, reason)| StoreError::corrupt(&source, offset + off, reason))?;
        Ok(Fragment {
            info: FragmentInfo::from_entry(entry),
            header: decoded.header,
            chunks: decoded.chunks.into_iter().map(|(end_offset_ms, data)| Chunk { end_offset_ms, data }).collect(),
        })
    }

    /// Writes `buf` at the end of the active segment and marks it dirty for group commit
    /// (the write runs on the blocking pool).
    async fn append_record(&self, state: &mut WriterState, buf: Vec<u8>) -> Result<()> {
        let write = self.record_write(state, buf)?;
        let res = blocking(move || write.run()).await;
        self.record_written(state, res)
    }

    /// [`Self::append_record`] with the write in the calling thread, for a thread that may
    /// block (see [`FragmentWriter::append_chunk_blocking`]).
    fn append_record_blocking(&self, state: &mut WriterState, buf: Vec<u8>) -> Result<()> {
        let write = self.record_write(state, buf)?;
        let res = write.run();
        self.record_written(state, res)
    }

    /// The write that appends `buf` to the active segment.
    fn record_write(&self, state: &WriterState, buf: Vec<u8>) -> Result<RecordWrite> {
        let Some(a) = state.active.as_ref() else {
            return Err(StoreError::Io { path: self.dir.clone(), message: "no active segment".into() });
        };
        Ok(RecordWrite {
            file: a.file.clone(),
            path: a.path.clone(),
            offset: a.len,
            buf,
            faults: self.ctx.config.fault_injector.clone(),
        })
    }

    /// Accounts a record write: the segment grows and is marked dirty, or a failed write
    /// breaks the segment (sealed at its last good length before reuse) and the fragment.
    fn record_written(&self, state: &mut WriterState, res: Result<u64>) -> Result<()> {
        match (res, state.active.as_mut()) {
            (Ok(n), Some(a)) => {
                a.len += n;
                self.ctx.committer.mark_dirty(a.file_id, &a.file, &a.path);
                Ok(())
            }
            (Ok(_), None) => Err(StoreError::Io { path: self.dir.clone(), message: "no active segment".into() }),
            (Err(e), _) => {
                state.broken = true;
                state.open = None;
                Err(e)
            }
        }
    }

    /// Makes a durable fragment visible: in local mode at once, in shared mode once it is
    /// in S3 and the catalog (queued for the stream's replicator).
    fn publish(&self, state: &mut WriterState, entry: IndexEntry) -> Result<()> {
        self.check_alive()?;
        let Some(a) = state.active.as_mut() else {
            return Err(StoreError::Io { path: self.dir.clone(), message: "no active segment".into() });
        };
        a.good_len = entry.offset + entry.len;
        if let Some(seg) = self.write_index().segments.get_mut(&entry.segment) {
            seg.len = a.good_len;
            seg.newest_end_ms = seg.newest_end_ms.max(entry.server_ts_ms.saturating_add(entry.duration_ms as u64));
        }
        match (&self.shared, state.fence.clone()) {
            (None, _) => self.publish_entry(entry),
            (Some(_), Some(fence)) => self.queue_replication(entry, fence),
            (Some(_), None) => {
                return Err(StoreError::InvalidArgument("a shared stream is written only under a fence".into()));
            }
        }
        Ok(())
    }

    /// Adds a fragment to the index (after any with a smaller number) and wakes live readers.
    pub(crate) fn publish_entry(&self, entry: IndexEntry) {
        {
            let mut idx = self.write_index();
            let i = idx.entries.partition_point(|e| e.counter < entry.counter);
            match idx.entries.get_mut(i) {
                // Already merged from the catalog: keep the local copy (faster to read).
                Some(e) if e.counter == entry.counter => *e = entry,
                _ => idx.entries.insert(i, entry),
            }
        }
        self.tail.send_modify(|s| s.last_counter = s.last_counter.max(entry.counter));
    }

    /// Reads a fragment from its own S3 object (shared mode).
    async fn read_remote(&self, entry: &IndexEntry) -> Result<Fragment> {
        let Some(remote) = self.ctx.remote.as_ref() else {
            return Err(StoreError::FragmentNotFound {
                number: FragmentNumber::from_counter(entry.counter).to_string(),
            });
        };
        let key = crate::shared::fragment_key(&remote.config.prefix, &self.id, entry.counter);
        let bytes = remote.get_range(&key, 0, entry.len).await?;
        let decoded = decode_fragment(&bytes, entry)
            .map_err(|(off, reason)| StoreError::corrupt(Path::new(&key), off, reason))?;
        Ok(Fragment {
            info: FragmentInfo::from_entry(entry),
            header: decoded.header,
            chunks: decoded.chunks.into_iter().map(|(end_offset_ms, data)| Chunk { end_offset_ms, data }).collect(),
        })
    }

    /// Publishes an abandoned fragment's complete prefix (the torn-fragment rule), if any.
    pub(crate) async fn finalize_abandoned(&self, state: &mut WriterState) {
        let Some(open) = state.open.take() else { return };
        if open.entry.chunk_count == 0 {
            return;
        }
        let Some(a) = state.active.as_ref() else { return };
        if let Err(e) = self.ctx.committer.sync(a.file_id, &a.file, &a.path).await {
            tracing::error!(stream = %self.id, error = %e, "could not persist an abandoned fragment");
            state.broken = true;
            return;
        }
        let mut entry = open.entry;
        entry.truncated = true;
        entry.duration_ms = open.max_end_offset_ms;
        entry.len = a.len - entry.offset;
        if let Err(e) = self.publish(state, entry) {
            tracing::warn!(stream = %self.id, error = %e, "abandoned fragment not published");
        }
    }

    /// Makes sure an active segment exists that may take a new fragment (rolling by size,
    /// age, or after a failure).
    async fn ensure_segment(self: &Arc<Self>, state: &mut WriterState) -> Result<()> {
        let cfg = &self.ctx.config;
        let now = cfg.clock.now_ms();
        let roll = match &state.active {
            None => true,
            Some(a) => {
                state.broken
                    || a.len >= cfg.segment_max_bytes
                    || (a.good_len > EMPTY_SEGMENT_LEN
                        && now.saturating_sub(a.created_ms) >= cfg.segment_max_age.as_millis() as u64)
            }
        };
        if !roll {
            return Ok(());
        }
        self.seal_active(state).await;
        let seq = state.next_segment;
        state.next_segment += 1;
        let path = segment_path(&self.dir, seq);
        self.inject_write_fault(&path)?;
        let (p, dir) = (path.clone(), self.dir.clone());
        let file = blocking(move || {
            let create = || -> std::io::Result<File> {
                let mut f = OpenOptions::new().read(true).write(true).create_new(true).open(&p)?;
                f.write_all(SEGMENT_MAGIC)?;
                f.sync_all()?;
                Ok(f)
            };
            match create() {
                Ok(f) => {
                    sync_dir(&dir)?;
                    Ok(f)
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&p);
                    Err(StoreError::io(&p, &e))
                }
            }
        })
        .await?;
        self.write_index().segments.insert(
            seq,
            SegmentMeta {
                len: EMPTY_SEGMENT_LEN,
                sealed: false,
                local: true,
                uploaded: false,
                newest_end_ms: 0,
                sealed_order: 0,
            },
        );
        state.active = Some(ActiveSegment {
            seq,
            file: Arc::new(file),
            path,
            file_id: self.ctx.next_file_id.fetch_add(1, Ordering::Relaxed),
            len: EMPTY_SEGMENT_LEN,
            good_len: EMPTY_SEGMENT_LEN,
            created_ms: now,
        });
        state.broken = false;
        Ok(())
    }

    /// Closes the active segment: cut abandoned bytes, fsync, write its sidecar index and
    /// queue it for upload. Failures are logged; recovery rescans a segment without index.
    pub(crate) async fn seal_active(self: &Arc<Self>, state: &mut WriterState) {
        self.finalize_abandoned(state).await;
        let Some(a) = state.active.take() else { return };
        let entries: Vec<IndexEntry> = {
            let idx = self.read_index();
            let mut v: Vec<IndexEntry> = idx.entries.iter().rev().take_while(|e| e.segment == a.seq).copied().collect();
            v.reverse();
            v
        };
        // Shared mode publishes after replication, so the index may not show the segment's
        // fragments yet: what was made durable (good_len) says whether it holds any. Its
        // copy is only the write-ahead copy: no sidecar index, no segment upload.
        let shared = self.shared.is_some();
        let empty = if shared { a.good_len <= EMPTY_SEGMENT_LEN } else { entries.is_empty() };
        let (dir, seq, good_len, len, file) = (self.dir.clone(), a.seq, a.good_len, a.len, a.file.clone());
        let faults = self.ctx.config.fault_injector.clone();
        let res = blocking(move || {
            let log = segment_path(&dir, seq);
            if empty {
                std::fs::remove_file(&log).map_err(|e| StoreError::io(&log, &e))?;
                return sync_dir(&dir);
            }
            if len > good_len {
                file.set_len(good_len).map_err(|e| StoreError::io(&log, &e))?;
            }
            file.sync_all().map_err(|e| StoreError::io(&log, &e))?;
            if shared {
                return Ok(());
            }
            let idx_path = index_path(&dir, seq);
            if let Some(f) = faults {
                f.check_write().map_err(|e| StoreError::io(&idx_path, &e))?;
            }
            write_atomically(&idx_path, &encode_index(good_len, &entries))
        })
        .await;
        if let Err(e) = &res {
            tracing::error!(stream = %self.id, segment = seq, error = %e, "sealing a segment failed; recovery will rescan it");
        }
        let mut idx = self.write_index();
        if empty {
            idx.segments.remove(&seq);
            return;
        }
        let order = self.ctx.seal_order.fetch_add(1, Ordering::Relaxed);
        if let Some(seg) = idx.segments.get_mut(&seq) {
            seg.sealed = true;
            seg.len = good_len;
            seg.sealed_order = order;
        }
        drop(idx);
        if !shared {
            self.queue_upload(seq, good_len);
        }
    }

    pub(crate) fn queue_upload(self: &Arc<Self>, seq: u64, len: u64) {
        if let Some(remote) = &self.ctx.remote {
            remote.pending_bytes.fetch_add(len, Ordering::SeqCst);
            let _ = self.ctx.upload_tx.send(UploadJob { stream: Arc::downgrade(self), seq, len });
        }
    }

    /// Deletes sealed segments whose newest fragment ended before the retention cutoff.
    /// Returns (segments, fragments) removed.
    pub(crate) async fn sweep(self: &Arc<Self>, now_ms: u64) -> (usize, usize) {
        if self.shared.is_some() {
            return (self.sweep_shared(now_ms).await, 0);
        }
        let hours = self.retention_hours.load(Ordering::SeqCst) as u64;
        let cutoff = now_ms.saturating_sub(hours * 3_600_000);
        if let Ok(mut st) = self.writer.clone().try_lock_owned() {
            self.finalize_abandoned(&mut st).await;
            let expired_active = st.active.as_ref().is_some_and(|a| {
                a.good_len > EMPTY_SEGMENT_LEN
                    && self.read_index().segments.get(&a.seq).is_some_and(|s| s.newest_end_ms < cutoff)
            });
            if expired_active {
                self.seal_active(&mut st).await;
            }
        }
        let removed: Vec<(u64, SegmentMeta, usize)> = {
            let mut idx = self.write_index();
            let expired: Vec<(u64, SegmentMeta)> = idx
                .segments
                .iter()
                .filter(|(_, s)| s.sealed && s.newest_end_ms < cutoff)
                .map(|(k, s)| (*k, *s))
                .collect();
            expired
                .into_iter()
                .map(|(seq, meta)| {
                    idx.segments.remove(&seq);
                    let before = idx.entries.len();
                    idx.entries.retain(|e| e.segment != seq);
                    (seq, meta, before - idx.entries.len())
                })
                .collect()
        };
        let fragments = removed.iter().map(|r| r.2).sum();
        for (seq, meta, _) in &removed {
            self.remove_segment_files(*seq, meta).await;
        }
        (removed.len(), fragments)
    }

    /// Shared mode: seals an idle active segment once it is older than the segment age and
    /// drops local segments whose fragments are all replicated (retention itself is the
    /// catalog's). Returns the segments dropped.
    async fn sweep_shared(self: &Arc<Self>, now_ms: u64) -> usize {
        if let Ok(mut st) = self.writer.clone().try_lock_owned() {
            self.finalize_abandoned(&mut st).await;
            let max_age = self.ctx.config.segment_max_age.as_millis() as u64;
            if st.active.as_ref().is_some_and(|a| now_ms.saturating_sub(a.created_ms) >= max_age) {
                self.seal_active(&mut st).await;
            }
        }
        self.drop_replicated_segments().await
    }

    async fn remove_segment_files(&self, seq: u64, meta: &SegmentMeta) {
        let dir = self.dir.clone();
        let _ = blocking(move || {
            for p in [segment_path(&dir, seq), index_path(&dir, seq), uploaded_marker_path(&dir, seq)] {
                let _ = std::fs::remove_file(p);
            }
            Ok(())
        })
        .await;
        if let (Some(remote), true) = (&self.ctx.remote, meta.uploaded) {
            let key = remote.key(&self.dir_name, seq);
            if let Err(e) = remote.delete(&key).await {
                tracing::warn!(key, error = %e, "could not delete an expired segment object");
            }
        }
    }
}

impl Stream {
    /// The stream id it was created with.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Whether the stream has been deleted (writers fail, readers end).
    pub fn is_deleted(&self) -> bool {
        self.inner.deleted.load(Ordering::SeqCst)
    }

    /// Current data retention in hours (0: nothing is retained past the next sweep).
    pub fn retention_hours(&self) -> u32 {
        self.inner.retention_hours.load(Ordering::SeqCst)
    }

    /// Changes the retention (persisted); the next retention sweep applies it.
    pub async fn set_retention_hours(&self, hours: u32) -> Result<()> {
        let _g = self.inner.meta_write.lock().await;
        self.inner.check_alive()?;
        let (dir, id) = (self.inner.dir.clone(), self.inner.id.clone());
        blocking(move || crate::store::write_stream_meta(&dir, &id, hours)).await?;
        self.inner.retention_hours.store(hours, Ordering::SeqCst);
        Ok(())
    }

    /// Opens a new fragment. Fails with [`StoreError::FragmentInProgress`] while another
    /// [`FragmentWriter`] of this stream is alive (one writer per stream), with
    /// [`StoreError::StreamDeleted`] after deletion, and with
    /// [`StoreError::S3Unavailable`] when too much data is waiting for upload. A store in
    /// shared mode is written only with [`Stream::begin_fenced_fragment`].
    pub async fn begin_fragment(&self, start: FragmentStart) -> Result<FragmentWriter> {
        self.begin(start, None).await
    }

    /// Opens a new fragment in shared mode, written under the writer lease `fence`: its
    /// number derives from the fence's epoch, and it becomes visible only once S3 and the
    /// catalog accepted it under that fence. A fence older than one this stream was already
    /// written under on this node is refused with [`StoreError::Fenced`].
    pub async fn begin_fenced_fragment(&self, start: FragmentStart, fence: &Fence) -> Result<FragmentWriter> {
        self.begin(start, Some(fence)).await
    }

    async fn begin(&self, start: FragmentStart, fence: Option<&Fence>) -> Result<FragmentWriter> {
        let inner = &self.inner;
        inner.check_alive()?;
        if inner.shared.is_some() != fence.is_some() {
            return Err(StoreError::InvalidArgument(match fence {
                Some(_) => "a fence is only used by a store in shared mode".into(),
                None => "a store in shared mode is written only under a writer fence".into(),
            }));
        }
        if start.header.len() + 64 > MAX_RECORD_BODY_BYTES {
            return Err(StoreError::InvalidArgument(format!(
                "fragment header of {} bytes is too large",
                start.header.len()
            )));
        }
        let mut state = inner
            .writer
            .clone()
            .try_lock_owned()
            .map_err(|_| StoreError::FragmentInProgress { stream: inner.id.clone() })?;
        inner.finalize_abandoned(&mut state).await;
        if let Some(e) = inner.ctx.remote.as_ref().and_then(|r| r.backlog_error()) {
            return Err(e);
        }
        if let Some(f) = fence {
            match &state.fence {
                Some(cur) if cur.epoch > f.epoch => {
                    return Err(StoreError::Fenced { stream: inner.id.clone(), epoch: f.epoch });
                }
                Some(cur) if cur == f => {}
                _ => {
                    state.fence = Some(f.clone());
                    state.next_seq = 1;
                }
            }
        }
        inner.ensure_segment(&mut state).await?;
        let counter = match &state.fence {
            Some(f) if fence.is_some() => {
                let c = crate::shared::shared_counter(f.epoch, state.next_seq)?;
                state.next_seq += 1;
                c
            }
            _ => inner.ctx.allocate_number().await?,
        };
        let seq = state.active.as_ref().map_or(0, |a| a.seq);
        let offset = state.active.as_ref().map_or(0, |a| a.len);
        let rec = Record::Begin {
            counter,
            producer_ts_ms: start.producer_ts_ms,
            server_ts_ms: start.server_ts_ms,
            header: start.header.clone(),
        };
        inner.append_record(&mut state, rec.encode()).await?;
        let len = state.active.as_ref().map_or(0, |a| a.len) - offset;
        state.open = Some(OpenFragment {
            entry: IndexEntry {
                counter,
                producer_ts_ms: start.producer_ts_ms,
                server_ts_ms: start.server_ts_ms,
                duration_ms: 0,
                chunk_count: 0,
                payload_bytes: 0,
                header_bytes: start.header.len() as u32,
                truncated: false,
                segment: seq,
                offset,
                len,
            },
            max_end_offset_ms: 0,
        });
        Ok(FragmentWriter { stream: inner.clone(), state, number: FragmentNumber::from_counter(counter), failed: None })
    }

    /// Reads one fragment (checksums verified; a corrupt one is an error, never served).
    pub async fn read_fragment(&self, number: FragmentNumber) -> Result<Fragment> {
        self.inner.check_alive()?;
        let entry = self.inner.lookup(number)?;
        self.inner.read_entry(&entry).await
    }

    /// Metadata of one fragment, from memory.
    pub fn fragment_info(&self, number: FragmentNumber) -> Result<FragmentInfo> {
        self.inner.check_alive()?;
        self.inner.lookup(number).map(|e| FragmentInfo::from_entry(&e))
    }

    /// First page (≤ `limit`, at least 1) of fragments whose start timestamp lies in `range`,
    /// in fragment-number order.
    pub fn list_fragments(&self, range: TimestampRange, limit: usize) -> Result<FragmentPage> {
        self.inner.check_alive()?;
        if range.start_ms > range.end_ms {
            return Err(StoreError::InvalidArgument("timestamp range starts after it ends".into()));
        }
        Ok(select_page(&self.inner.read_index().entries, range, 0, limit))
    }

    /// The page after `token` (from a previous [`FragmentPage::next_token`]).
    pub fn list_fragments_after(&self, token: &PageToken, limit: usize) -> Result<FragmentPage> {
        self.inner.check_alive()?;
        Ok(select_page(&self.inner.read_index().entries, token.range, token.after_counter, limit))
    }

    /// The newest `n` fragments, oldest first (e.g. for a live playlist).
    pub fn latest_fragments(&self, n: usize) -> Vec<FragmentInfo> {
        let idx = self.inner.read_index();
        let from = idx.entries.len().saturating_sub(n);
        idx.entries[from..].iter().map(FragmentInfo::from_entry).collect()
    }

    /// Shared mode: brings this node's index up to the catalog now (what other nodes indexed
    /// since the last poll), so a listing right after a fragment closed on another node
    /// already shows it — without asking the catalog while index notices keep the stream
    /// current (see the `shared` module). A no-op in local mode.
    pub async fn catch_up(&self) -> Result<()> {
        let Some(catalog) = self.inner.ctx.catalog.as_ref() else { return Ok(()) };
        if self.inner.in_sync() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut after = self.inner.last_counter();
        loop {
            let page = catalog.list_after(&self.inner.id, after, 10_000).await?;
            let Some(last) = page.last() else {
                self.inner.mark_synced(started);
                return Ok(());
            };
            after = last.info.number.counter();
            self.inner.merge_remote(&page);
        }
    }

    /// A live reader delivering every fragment after `start` as soon as it is persisted.
    pub fn subscribe(&self, start: StartPosition) -> Result<TailReader> {
        self.inner.check_alive()?;
        Ok(TailReader::new(self.inner.clone(), start))
    }
}

impl FragmentWriter {
    /// This fragment's number (already allocated; visible to readers after `finish`).
    pub fn number(&self) -> FragmentNumber {
        self.number
    }

    fn fail(&mut self, e: StoreError) -> StoreError {
        self.failed = Some(e.clone());
        e
    }

    /// Appends one opaque chunk ending `end_offset_ms` after the fragment start. Returns once
    /// written to the OS; it is on disk within the commit interval (RPO), with no fsync here.
    pub async fn append_chunk(&mut self, end_offset_ms: u32, data: Bytes) -> Result<()> {
        let (buf, len) = self.chunk_record(end_offset_ms, data)?;
        let res = self.stream.append_record(&mut self.state, buf).await;
        self.chunk_appended(end_offset_ms, len, res)
    }

    /// [`Self::append_chunk`] with the write in the calling thread instead of the blocking
    /// pool: for a thread whose job is to block on the store (reel's per-worker store
    /// thread), where a hop to the pool per chunk would cost more than the write itself.
    /// Never call it from a runtime thread that serves other work.
    pub fn append_chunk_blocking(&mut self, end_offset_ms: u32, data: Bytes) -> Result<()> {
        let (buf, len) = self.chunk_record(end_offset_ms, data)?;
        let res = self.stream.append_record_blocking(&mut self.state, buf);
        self.chunk_appended(end_offset_ms, len, res)
    }

    /// The encoded chunk record and its payload length, after the checks every append makes.
    fn chunk_record(&mut self, end_offset_ms: u32, data: Bytes) -> Result<(Vec<u8>, u64)> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if data.len() + 64 > MAX_RECORD_BODY_BYTES {
            return Err(StoreError::InvalidArgument(format!("chunk of {} bytes is too large", data.len())));
        }
        if let Err(e) = self.stream.check_alive() {
            return Err(self.fail(e));
        }
        let len = data.len() as u64;
        let mut buf = Vec::with_capacity(Record::chunk_encoded_len(data.len()));
        Record::Chunk { counter: self.number.counter(), end_offset_ms, data }.encode_into(&mut buf);
        Ok((buf, len))
    }

    /// Accounts an appended chunk in the open fragment, or fails the fragment.
    fn chunk_appended(&mut self, end_offset_ms: u32, len: u64, res: Result<()>) -> Result<()> {
        if let Err(e) = res {
            return Err(self.fail(e));
        }
        if let Some(open) = self.state.open.as_mut() {
            open.entry.chunk_count += 1;
            open.entry.payload_bytes += len;
            open.max_end_offset_ms = open.max_end_offset_ms.max(end_offset_ms);
        }
        Ok(())
    }

    /// Closes the fragment with its media duration and returns once it is on disk and
    /// visible to readers (the KVS PERSISTED point).
    pub async fn finish(mut self, duration_ms: u32) -> Result<FragmentInfo> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let stream = self.stream.clone();
        let state = &mut *self.state;
        stream.check_alive()?;
        let Some(open) = state.open.as_ref() else {
            return Err(StoreError::InvalidArgument("fragment is no longer open".into()));
        };
        let rec = Record::Finish {
            counter: open.entry.counter,
            duration_ms,
            chunk_count: open.entry.chunk_count,
            payload_bytes: open.entry.payload_bytes,
        };
        stream.append_record(state, rec.encode()).await?;
        let (file_id, file, path, len) = match state.active.as_ref() {
            Some(a) => (a.file_id, a.file.clone(), a.path.clone(), a.len),
            None => return Err(StoreError::Io { path: stream.dir.clone(), message: "no active segment".into() }),
        };
        if let Err(e) = stream.ctx.committer.sync(file_id, &file, &path).await {
            state.broken = true;
            state.open = None;
            return Err(e);
        }
        let Some(open) = state.open.take() else {
            return Err(StoreError::InvalidArgument("fragment is no longer open".into()));
        };
        let mut entry = open.entry;
        entry.duration_ms = duration_ms;
        entry.len = len - entry.offset;
        stream.publish(state, entry)?;
        if len >= stream.ctx.config.segment_max_bytes {
            stream.seal_active(state).await;
        }
        Ok(FragmentInfo::from_entry(&entry))
    }
}
