//! Group commit: one dedicated thread fsyncs every dirty segment file of every stream in
//! batches, so appends never fsync themselves and the async runtime never blocks on disk.
//!
//! Two kinds of requests arrive: *dirty marks* (a chunk was written; it must be durable
//! within [`crate::StoreConfig::commit_interval`] to keep RPO ≤ 1 s) and *sync waits* (a
//! fragment is finishing; its writer waits). A waiting request starts a batch at once;
//! requests that arrive while a batch runs ride the next one, which is how concurrent
//! streams share fsyncs. A batch of many files is flushed with one `syncfs` of the store's
//! filesystem instead of one `fdatasync` each.
//!
//! A shared-mode store ([`Committer::write_ahead_only`]) syncs nothing: its local segments
//! are only the write-ahead copy S3 replication reads from, discarded when the store opens,
//! so a fsync would make durable what is never read back. Its fragments are durable once
//! in S3.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::{Result, StoreError};
use crate::fault::FaultInjector;

/// Handle to the commit thread; dropping the last handle flushes and stops it.
#[derive(Debug)]
pub(crate) struct Committer {
    /// `None`: write-ahead only, nothing is synced (no thread).
    shared: Option<Arc<Shared>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    interval: Duration,
    syncfs_threshold: usize,
    root: File,
    faults: Option<Arc<FaultInjector>>,
}

#[derive(Debug, Default)]
struct State {
    dirty: HashMap<u64, DirtyFile>,
    oldest: Option<Instant>,
    waiting: usize,
    shutdown: bool,
    batches: u64,
}

#[derive(Debug)]
struct DirtyFile {
    file: Arc<File>,
    path: PathBuf,
    waiters: Vec<oneshot::Sender<Result<()>>>,
}

/// Counters for benchmarks and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommitStats {
    /// fsync batches run so far.
    pub batches: u64,
}

impl Committer {
    /// Starts the commit thread for the store rooted at `root`.
    pub(crate) fn start(
        root: &Path,
        interval: Duration,
        syncfs_threshold: usize,
        faults: Option<Arc<FaultInjector>>,
    ) -> Result<Self> {
        let root_file = File::open(root).map_err(|e| StoreError::io(root, &e))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            interval,
            syncfs_threshold: syncfs_threshold.max(1),
            root: root_file,
            faults,
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("reel-storage-commit".into())
            .spawn(move || run(&s))
            .map_err(|e| StoreError::io(root, &e))?;
        Ok(Self { shared: Some(shared), thread: Some(thread) })
    }

    /// A committer that syncs nothing (see the module docs): every sync resolves at once.
    pub(crate) fn write_ahead_only() -> Self {
        Self { shared: None, thread: None }
    }

    /// Records that `file` (id `id`) has unsynced writes; it will be synced within the interval.
    pub(crate) fn mark_dirty(&self, id: u64, file: &Arc<File>, path: &Path) {
        let Some(shared) = &self.shared else { return };
        let mut st = shared.lock();
        let newly = st.dirty.is_empty();
        st.dirty.entry(id).or_insert_with(|| DirtyFile {
            file: file.clone(),
            path: path.to_path_buf(),
            waiters: Vec::new(),
        });
        if st.oldest.is_none() {
            st.oldest = Some(Instant::now());
        }
        drop(st);
        if newly {
            shared.wake.notify_one();
        }
    }

    /// Resolves once every write made to `file` before this call is on disk.
    pub(crate) async fn sync(&self, id: u64, file: &Arc<File>, path: &Path) -> Result<()> {
        let Some(shared) = &self.shared else { return Ok(()) };
        let (tx, rx) = oneshot::channel();
        {
            let mut st = shared.lock();
            st.dirty
                .entry(id)
                .or_insert_with(|| DirtyFile { file: file.clone(), path: path.to_path_buf(), waiters: Vec::new() })
                .waiters
                .push(tx);
            st.waiting += 1;
            if st.oldest.is_none() {
                st.oldest = Some(Instant::now());
            }
        }
        shared.wake.notify_one();
        rx.await.unwrap_or_else(|_| {
            Err(StoreError::Io { path: path.to_path_buf(), message: "commit thread stopped".into() })
        })
    }

    /// Batches run so far.
    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats { batches: self.shared.as_ref().map_or(0, |s| s.lock().batches) }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        let Some(shared) = &self.shared else { return };
        shared.lock().shutdown = true;
        shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn run(shared: &Shared) {
    loop {
        let batch = {
            let mut st = shared.lock();
            loop {
                if st.waiting > 0 || (st.shutdown && !st.dirty.is_empty()) {
                    break;
                }
                if st.shutdown {
                    return;
                }
                match st.oldest {
                    Some(t) => {
                        let due = t + shared.interval;
                        let now = Instant::now();
                        if now >= due {
                            break;
                        }
                        st = shared.wake.wait_timeout(st, due - now).map(|r| r.0).unwrap_or_else(|p| p.into_inner().0);
                    }
                    None => st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner()),
                }
            }
            st.oldest = None;
            st.waiting = 0;
            st.batches += 1;
            std::mem::take(&mut st.dirty)
        };
        sync_batch(shared, batch);
    }
}

fn sync_batch(shared: &Shared, batch: HashMap<u64, DirtyFile>) {
    let injected = shared.faults.as_ref().map(|f| f.check_sync()).unwrap_or(Ok(()));
    if let Err(e) = injected {
        for (_, d) in batch {
            let err = StoreError::io(&d.path, &e);
            tracing::error!(path = %d.path.display(), error = %err, "fsync failed (injected)");
            d.waiters.into_iter().for_each(|w| drop(w.send(Err(err.clone()))));
        }
        return;
    }
    if batch.len() >= shared.syncfs_threshold {
        let res = rustix::fs::syncfs(&shared.root).map_err(std::io::Error::from);
        for (_, d) in batch {
            let r = res.as_ref().map(|_| ()).map_err(|e| StoreError::io(&d.path, e));
            if let Err(err) = &r {
                tracing::error!(path = %d.path.display(), error = %err, "syncfs failed");
            }
            d.waiters.into_iter().for_each(|w| drop(w.send(r.clone())));
        }
    } else {
        for (_, d) in batch {
            let r = d.file.sync_data().map_err(|e| StoreError::io(&d.path, &e));
            if let Err(err) = &r {
                tracing::error!(path = %d.path.display(), error = %err, "fdatasync failed");
            }
            d.waiters.into_iter().for_each(|w| drop(w.send(r.clone())));
        }
    }
}
