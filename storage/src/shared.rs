//! Shared mode: several stores (the nodes of a cluster) serve the same streams through one
//! [`Catalog`] and one S3 bucket.
//!
//! - **Writing.** The node holding a stream's lease writes fragments to its local segments
//!   as in local mode (the write-ahead copy, never fsynced: it is discarded on restart, see
//!   below). A finished fragment is then *replicated* in
//!   order by the stream's replicator task: its bytes go to S3 as one object, its metadata
//!   into the catalog — fenced by the writer's lease epoch — and only then is it published
//!   to readers. Replication retries while S3 or the catalog are down; ingest continues
//!   locally meanwhile (bounded by [`crate::S3Config::max_pending_upload_bytes`]).
//! - **Numbers.** A fragment's counter is the lease epoch (unique across the cluster and
//!   increasing per stream) shifted left by [`SEQ_BITS`] plus a sequence within the lease,
//!   so numbers are unique and increase per stream across writers without coordination.
//! - **Reading.** Every node mirrors the index of the streams it has opened: loaded from the
//!   catalog on open, extended by its own replicator, by other writers' index notices
//!   ([`crate::IndexNotices`]: a fragment that follows the node's newest one is listed at
//!   once), by each read's catch-up and, for streams with live readers, by polling the
//!   catalog for other nodes' fragments (one request per poll for all of them, each asking
//!   only for what follows its newest fragment). While notices keep a stream current
//!   (the last one followed its newest fragment, less than
//!   [`crate::StoreConfig::notice_trust`] ago) reads and the poll skip the catalog; a gap
//!   or silence sends them back to it. The index is trimmed when the catalog's oldest fragment moves (retention, deletion). Entries written elsewhere (or whose local segment was dropped) are read
//!   from their S3 object.
//! - **Restart.** A node's local segments are only a write-ahead copy: they are discarded
//!   when the store opens, and what was not replicated before a crash is gone (the
//!   stream's next writer holds a newer epoch, so it could not be indexed anyway).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::catalog::{CatalogEntry, CatalogError, Fence, NoticeOutcome};
use crate::error::{Result, StoreError};
use crate::fragment::FragmentInfo;
use crate::number::FragmentNumber;
use crate::segment::IndexEntry;
use crate::stream::{StreamInner, segment_path};

/// Bits of a shared-mode fragment counter that count fragments within one lease.
pub const SEQ_BITS: u32 = 24;
/// Largest lease epoch whose fragment counters still fit the number format.
pub const MAX_EPOCH: u64 = (1 << (64 - SEQ_BITS)) - 1;
/// `IndexEntry::segment` of a fragment that is read from its own S3 object.
pub(crate) const REMOTE_SEGMENT: u64 = u64::MAX;

/// The counter of fragment `seq` (from 1) written under lease `epoch`.
pub(crate) fn shared_counter(epoch: u64, seq: u64) -> Result<u64> {
    if epoch == 0 || epoch > MAX_EPOCH {
        return Err(StoreError::InvalidArgument(format!("lease epoch {epoch} is outside 1..={MAX_EPOCH}")));
    }
    if seq == 0 || seq >= 1 << SEQ_BITS {
        return Err(StoreError::InvalidArgument(format!(
            "lease epoch {epoch} has written its {} fragments; take a new lease",
            (1u64 << SEQ_BITS) - 1
        )));
    }
    Ok(epoch << SEQ_BITS | seq)
}

/// The S3 object key of fragment `counter` of stream `stream_id`. Shared-mode numbers are
/// unique across streams, so the stream part (a short checksum of its id, keeping keys
/// short for any ARN) only groups a stream's objects.
pub(crate) fn fragment_key(prefix: &str, stream_id: &str, counter: u64) -> String {
    format!("{prefix}fragments/{:08x}/{}", crc32c::crc32c(stream_id.as_bytes()), FragmentNumber::from_counter(counter))
}

/// The index entry of a fragment known from the catalog (read from its object).
pub(crate) fn remote_entry(e: &CatalogEntry) -> IndexEntry {
    let i = &e.info;
    IndexEntry {
        counter: i.number.counter(),
        producer_ts_ms: i.producer_ts_ms,
        server_ts_ms: i.server_ts_ms,
        duration_ms: i.duration_ms,
        chunk_count: i.chunk_count,
        payload_bytes: i.payload_bytes,
        header_bytes: i.header_bytes,
        truncated: i.truncated,
        segment: REMOTE_SEGMENT,
        offset: 0,
        len: e.object_bytes,
    }
}

impl From<CatalogError> for StoreError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Fenced { stream, epoch } => StoreError::Fenced { stream, epoch },
            CatalogError::Unavailable(message) => StoreError::CatalogUnavailable { message },
        }
    }
}

/// A fragment waiting for replication: durable locally, not yet visible.
#[derive(Debug)]
pub(crate) struct Pending {
    pub entry: IndexEntry,
    pub fence: Fence,
}

/// Shared-mode state of one stream.
#[derive(Debug)]
pub(crate) struct SharedStream {
    /// Feeds the stream's replicator task (spawned with the stream).
    pub replicate: mpsc::UnboundedSender<Pending>,
    /// Fragments queued and not yet published or dropped.
    pub pending: std::sync::atomic::AtomicU64,
    /// Queued fragments per local segment (a segment is kept while it has any).
    pub pending_segments: std::sync::Mutex<std::collections::BTreeMap<u64, usize>>,
    /// When this node's index of the stream was last known complete (a catalog read's
    /// start, or a notice that followed its newest fragment); `None` after a gap.
    pub synced: std::sync::Mutex<Option<Instant>>,
}

impl SharedStream {
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<Pending>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            SharedStream {
                replicate: tx,
                pending: std::sync::atomic::AtomicU64::new(0),
                pending_segments: std::sync::Mutex::new(Default::default()),
                synced: std::sync::Mutex::new(None),
            },
            rx,
        )
    }

    /// Whether a queued fragment still needs local segment `seq`.
    pub(crate) fn segment_in_use(&self, seq: u64) -> bool {
        self.pending_segments.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&seq)
    }

    fn track(&self, seq: u64, delta: isize) {
        let mut m = self.pending_segments.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(seq).or_insert(0);
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            m.remove(&seq);
        }
    }
}

impl StreamInner {
    /// Queues a locally durable fragment for replication (shared mode).
    pub(crate) fn queue_replication(&self, entry: IndexEntry, fence: Fence) {
        let Some(shared) = &self.shared else { return };
        shared.pending.fetch_add(1, Ordering::SeqCst);
        shared.track(entry.segment, 1);
        if let Some(r) = &self.ctx.remote {
            r.pending_bytes.fetch_add(entry.len, Ordering::SeqCst);
        }
        if shared.replicate.send(Pending { entry, fence }).is_err() {
            self.replication_done(&entry);
        }
    }

    fn replication_done(&self, entry: &IndexEntry) {
        if let Some(shared) = &self.shared {
            shared.pending.fetch_sub(1, Ordering::SeqCst);
            shared.track(entry.segment, -1);
        }
        if let Some(r) = &self.ctx.remote {
            r.pending_bytes.fetch_sub(entry.len, Ordering::SeqCst);
        }
        self.ctx.upload_done.notify_waiters();
    }

    /// Puts fragments known from the catalog into the index (in counter order, skipping
    /// ones already there) and wakes live readers.
    pub(crate) fn merge_remote(&self, entries: &[CatalogEntry]) {
        if entries.is_empty() {
            return;
        }
        let mut newest = 0;
        {
            let mut idx = self.write_index();
            for e in entries {
                let c = e.info.number.counter();
                let i = idx.entries.partition_point(|x| x.counter < c);
                if idx.entries.get(i).is_some_and(|x| x.counter == c) {
                    continue;
                }
                idx.entries.insert(i, remote_entry(e));
                newest = newest.max(c);
            }
        }
        if newest > 0 {
            self.tail.send_modify(|s| s.last_counter = s.last_counter.max(newest));
        }
    }

    /// Whether reads may skip the catalog: notices are attached and the index was known
    /// complete less than [`crate::StoreConfig::notice_trust`] ago.
    pub(crate) fn in_sync(&self) -> bool {
        let Some(shared) = &self.shared else { return false };
        if self.ctx.notices.get().is_none() {
            return false;
        }
        let synced = *shared.synced.lock().unwrap_or_else(|p| p.into_inner());
        synced.is_some_and(|t| t.elapsed() < self.ctx.config.notice_trust)
    }

    /// The index held every fragment the catalog had at `at`.
    pub(crate) fn mark_synced(&self, at: Instant) {
        if let Some(shared) = &self.shared {
            let mut synced = shared.synced.lock().unwrap_or_else(|p| p.into_inner());
            *synced = Some(synced.map_or(at, |t| t.max(at)));
        }
    }

    /// Applies another node's notice: `entry` was indexed right after `previous`.
    pub(crate) fn apply_notice(&self, entry: &CatalogEntry, previous: u64) -> NoticeOutcome {
        let last = self.last_counter();
        if entry.info.number.counter() <= last {
            return NoticeOutcome::Known;
        }
        if previous != last {
            if let Some(shared) = &self.shared {
                *shared.synced.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            return NoticeOutcome::Gap;
        }
        // A catch-up merging meanwhile is fine: the merge keeps order and skips duplicates.
        self.merge_remote(std::slice::from_ref(entry));
        self.mark_synced(Instant::now());
        NoticeOutcome::Applied
    }

    /// The counter of the indexed fragment before `counter` (0 if none).
    fn counter_before(&self, counter: u64) -> u64 {
        let idx = self.read_index();
        let i = idx.entries.partition_point(|e| e.counter < counter);
        i.checked_sub(1).map_or(0, |i| idx.entries[i].counter)
    }

    /// The counter of the newest indexed fragment (0 if none).
    pub(crate) fn last_counter(&self) -> u64 {
        self.read_index().entries.last().map_or(0, |e| e.counter)
    }

    /// Drops indexed fragments below `floor` (none below it remain in the catalog).
    pub(crate) fn trim_below(&self, floor: u64) {
        let mut idx = self.write_index();
        let cut = idx.entries.partition_point(|e| e.counter < floor);
        if cut > 0 {
            idx.entries.drain(..cut);
        }
    }

    /// Sealed local segments whose fragments are all replicated: their entries now read
    /// from S3 and the files are deleted (the local copy was only the write-ahead copy).
    pub(crate) async fn drop_replicated_segments(&self) -> usize {
        let Some(shared) = &self.shared else { return 0 };
        let done: Vec<u64> = {
            let mut idx = self.write_index();
            let done: Vec<u64> =
                idx.segments.iter().filter(|(k, m)| m.sealed && !shared.segment_in_use(**k)).map(|(k, _)| *k).collect();
            for seq in &done {
                idx.segments.remove(seq);
            }
            for e in idx.entries.iter_mut().filter(|e| done.contains(&e.segment)) {
                e.segment = REMOTE_SEGMENT;
                e.offset = 0;
            }
            done
        };
        for seq in &done {
            let p = segment_path(&self.dir, *seq);
            if let Err(e) = tokio::fs::remove_file(&p).await {
                tracing::warn!(path = %p.display(), error = %e, "cannot remove a replicated segment");
            }
        }
        done.len()
    }
}

/// Replicates one stream's fragments in order: object to S3, row to the catalog, then
/// publish. Ends when the stream is dropped or deleted.
pub(crate) async fn replicate_loop(stream: std::sync::Weak<StreamInner>, mut rx: mpsc::UnboundedReceiver<Pending>) {
    // After a fence refusal, everything queued under that epoch is refused too.
    let mut fenced_epoch = None;
    while let Some(job) = rx.recv().await {
        let Some(s) = stream.upgrade() else { return };
        if fenced_epoch != Some(job.fence.epoch) {
            match replicate_one(&s, &job).await {
                Ok(row) => {
                    s.publish_entry(job.entry);
                    if let Some(notices) = s.ctx.notices.get() {
                        notices.indexed(&s.id, &row, s.counter_before(job.entry.counter));
                    }
                }
                Err(StoreError::Fenced { epoch, .. }) => {
                    tracing::error!(stream = %s.id, epoch, fragment = %FragmentNumber::from_counter(job.entry.counter),
                        "writer lease lost: fragment not indexed (another writer holds the stream)");
                    fenced_epoch = Some(epoch);
                }
                Err(e) => tracing::warn!(stream = %s.id, error = %e, "replication stopped"),
            }
        } else {
            tracing::error!(stream = %s.id, fragment = %FragmentNumber::from_counter(job.entry.counter),
                "writer lease lost: fragment not indexed");
        }
        s.replication_done(&job.entry);
    }
}

/// Uploads and indexes one fragment, retrying transient failures until it succeeds (the
/// catalog row it indexed), the fence is refused, or the stream is deleted.
async fn replicate_one(s: &Arc<StreamInner>, job: &Pending) -> Result<CatalogEntry> {
    let (Some(remote), Some(catalog)) = (s.ctx.remote.as_ref(), s.ctx.catalog.as_ref()) else {
        return Err(StoreError::InvalidArgument("shared mode needs S3 and a catalog".into()));
    };
    let e = job.entry;
    let bytes = read_local(s, &e).await?;
    let key = fragment_key(&remote.config.prefix, &s.id, e.counter);
    let row = CatalogEntry { info: FragmentInfo::from_entry(&e), object_bytes: e.len };
    let mut backoff = Duration::from_millis(50);
    let mut uploaded = false;
    loop {
        s.check_alive()?;
        let attempt = async {
            if !uploaded {
                remote.put(&key, bytes.clone()).await?;
                uploaded = true;
            }
            catalog.insert(&s.id, &row, &job.fence).await.map_err(StoreError::from)
        };
        match attempt.await {
            Ok(()) => return Ok(row),
            Err(e @ StoreError::Fenced { .. }) => {
                if let Err(d) = remote.delete(&key).await {
                    tracing::warn!(key, error = %d, "cannot remove the object of a refused fragment");
                }
                return Err(e);
            }
            Err(e) => {
                tracing::warn!(stream = %s.id, error = %e, retry_in_ms = backoff.as_millis() as u64, "replicating a fragment failed");
                *remote.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// The bytes of a fragment in its local segment (exactly its records: the object's body).
async fn read_local(s: &StreamInner, e: &IndexEntry) -> Result<Bytes> {
    let path = segment_path(&s.dir, e.segment);
    let (offset, len) = (e.offset, e.len);
    let p = path.clone();
    crate::stream::blocking(move || {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(&p).map_err(|err| StoreError::io(&p, &err))?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, offset).map_err(|err| StoreError::io(&p, &err))?;
        Ok(Bytes::from(buf))
    })
    .await
}

/// The node's poller. Every `every`: the streams open here that have live readers
/// ([`crate::TailReader`]s, which wait for fragments other nodes index) and are not kept
/// current by index notices catch up with the catalog in one request, each asking only for
/// what follows its newest known fragment.
/// Streams nobody follows live are not polled: a listing or a read catches up on its own
/// ([`crate::Stream::catch_up`]), and the writer's own fragments are published by its
/// replicator. Every [`FLOOR_EVERY`] ticks, one request reads the oldest fragment of every
/// open stream, trimming what retention or deletion removed elsewhere.
pub(crate) async fn poll_loop(store: std::sync::Weak<crate::store::StoreInner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut polls = 0u32;
    loop {
        tick.tick().await;
        let Some(inner) = store.upgrade() else { return };
        let Some(catalog) = inner.ctx.catalog.clone() else { return };
        let streams = inner.stream_handles();
        drop(inner);
        polls = polls.wrapping_add(1);
        // Streams kept current by notices need no poll.
        let followed: Vec<&Arc<StreamInner>> =
            streams.iter().filter(|s| s.tail.receiver_count() > 0 && !s.in_sync()).collect();
        if !followed.is_empty() {
            let started = Instant::now();
            let after: Vec<(String, u64)> = followed.iter().map(|s| (s.id.clone(), s.last_counter())).collect();
            match catalog.after_each(&after).await {
                Ok(rows) => {
                    merge_by_stream(&followed, rows);
                    for s in &followed {
                        s.mark_synced(started);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "polling the fragment catalog failed"),
            }
        }
        if polls.is_multiple_of(FLOOR_EVERY) && !streams.is_empty() {
            let ids: Vec<String> = streams.iter().map(|s| s.id.clone()).collect();
            // What each stream held when asking: fragments published later are newer than
            // any answer, so they are never trimmed by it.
            let held: Vec<u64> = streams.iter().map(|s| s.last_counter()).collect();
            match catalog.floors(&ids).await {
                Ok(floors) => {
                    let floors: HashMap<String, u64> = floors.into_iter().collect();
                    for (s, held) in streams.iter().zip(held) {
                        s.trim_below(floors.get(&s.id).copied().unwrap_or(held.saturating_add(1)));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading fragment floors from the catalog failed"),
            }
        }
    }
}

/// Polls between two reads of the catalog's per-stream floors.
const FLOOR_EVERY: u32 = 20;

/// Merges a poll's rows (grouped by stream, in counter order) into their streams.
fn merge_by_stream(streams: &[&Arc<StreamInner>], rows: Vec<(String, CatalogEntry)>) {
    let mut by_stream: HashMap<String, Vec<CatalogEntry>> = HashMap::new();
    for (id, e) in rows {
        by_stream.entry(id).or_default().push(e);
    }
    for s in streams {
        if let Some(entries) = by_stream.get(&s.id) {
            s.merge_remote(entries);
        }
    }
}

/// Removes what retention expired cluster-wide (rows, then objects).
pub(crate) async fn expire(ctx: &crate::store::Ctx, now_ms: u64) -> Result<usize> {
    let (Some(catalog), Some(remote)) = (ctx.catalog.as_ref(), ctx.remote.as_ref()) else { return Ok(0) };
    let removed = catalog.expire(now_ms).await?;
    for (stream, counter) in &removed {
        let key = fragment_key(&remote.config.prefix, stream, *counter);
        if let Err(e) = remote.delete(&key).await {
            tracing::warn!(key, error = %e, "cannot delete the object of an expired fragment");
        }
    }
    Ok(removed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_increase_with_the_epoch_and_stay_unique() {
        let a = shared_counter(7, 1).expect("valid");
        let b = shared_counter(7, 2).expect("valid");
        let c = shared_counter(8, 1).expect("valid");
        assert!(a < b && b < c);
        assert!(shared_counter(7, (1 << SEQ_BITS) - 1).expect("last") < c);
        assert!(shared_counter(7, 1 << SEQ_BITS).is_err());
        assert!(shared_counter(0, 1).is_err() && shared_counter(MAX_EPOCH + 1, 1).is_err());
        assert!(shared_counter(MAX_EPOCH, (1 << SEQ_BITS) - 1).is_ok());
        // The number format keeps string order = numeric order for the largest counter too.
        let max = FragmentNumber::from_counter(u64::MAX).to_string();
        assert_eq!(max.len(), FragmentNumber::from_counter(1).to_string().len());
    }

    #[test]
    fn object_keys_are_per_stream_and_fragment() {
        let k = fragment_key("p/", "arn:aws:kinesisvideo:us-west-2:1:stream/a/1", 5);
        assert!(k.starts_with("p/fragments/") && k.ends_with(&FragmentNumber::from_counter(5).to_string()));
        assert_ne!(k, fragment_key("p/", "arn:aws:kinesisvideo:us-west-2:1:stream/a/2", 5));
    }
}
