//! Shared harness for reel-storage's integration tests: stores on either backend, a real
//! S3-compatible server (s3s-fs, SigV4-checked) on 127.0.0.1:0, and fragment helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reel_storage::*;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub const ACCESS_KEY: &str = "AKIAREELTEST0000";
pub const SECRET_KEY: &str = "reel-test-secret-key";
pub const BUCKET: &str = "reel-media";

/// Which backend a suite test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Fs,
    S3,
}

/// An s3s-fs server on loopback; stop and restart it on the same port and data.
pub struct S3Server {
    pub addr: SocketAddr,
    pub root: PathBuf,
    tasks: Option<JoinSet<()>>,
}

impl S3Server {
    pub async fn start(root: &Path) -> S3Server {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut s = S3Server { addr, root: root.to_path_buf(), tasks: None };
        s.serve(listener);
        s
    }

    fn serve(&mut self, listener: TcpListener) {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto::Builder as ConnBuilder;
        use s3s::auth::SimpleAuth;
        use s3s::service::S3ServiceBuilder;
        let fs = s3s_fs::FileSystem::new(&self.root).unwrap();
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = b.build();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else { continue };
                let service = service.clone();
                conns.spawn(async move {
                    let _ =
                        ConnBuilder::new(TokioExecutor::new()).serve_connection(TokioIo::new(socket), service).await;
                });
            }
        });
        self.tasks = Some(tasks);
    }

    /// Stops accepting and drops every open connection.
    pub async fn stop(&mut self) {
        if let Some(mut t) = self.tasks.take() {
            t.abort_all();
            while t.join_next().await.is_some() {}
        }
    }

    /// Serves again on the same address.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    pub fn config(&self, prefix: &str) -> S3Config {
        let mut c = S3Config::new(BUCKET, "us-east-1", ACCESS_KEY, SECRET_KEY);
        c.endpoint_url = Some(format!("http://{}", self.addr));
        c.force_path_style = true;
        c.prefix = prefix.to_string();
        c.local_cache_max_bytes = 0; // evict at once: reads of sealed data go to S3
        c.max_attempts = 1;
        c.operation_timeout = Duration::from_secs(5);
        c
    }

    /// Object keys currently stored (walks the server's directory).
    pub fn object_count(&self) -> usize {
        fn walk(p: &Path) -> usize {
            std::fs::read_dir(p)
                .map(|rd| rd.flatten().map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 }).sum())
                .unwrap_or(0)
        }
        walk(&self.root.join(BUCKET))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(t) = self.tasks.as_mut() {
            t.abort_all();
        }
    }
}

/// A store under a temp dir on the chosen backend.
pub struct Harness {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub s3: Option<S3Server>,
    pub clock: ManualClock,
    pub store: Store,
}

pub const T0: u64 = 1_700_000_000_000;

impl Harness {
    pub async fn new(backend: Backend) -> Harness {
        Self::with(backend, |_| {}).await
    }

    pub async fn with(backend: Backend, tweak: impl Fn(&mut StoreConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let s3 = match backend {
            Backend::Fs => None,
            Backend::S3 => Some(S3Server::start(&dir.path().join("s3")).await),
        };
        let clock = ManualClock::new(T0);
        let config = Self::config_for(dir.path(), &s3, &clock, &tweak);
        let store = Store::open(config).await.unwrap();
        Harness { backend, dir, s3, clock, store }
    }

    fn config_for(
        dir: &Path,
        s3: &Option<S3Server>,
        clock: &ManualClock,
        tweak: &dyn Fn(&mut StoreConfig),
    ) -> StoreConfig {
        let mut c = StoreConfig::new(dir.join("store"));
        c.clock = Arc::new(clock.clone());
        c.retention_sweep_interval = None;
        c.segment_max_bytes = 4096; // many segments, so sealing/upload/eviction paths run
        c.s3 = s3.as_ref().map(|s| s.config("reel/"));
        tweak(&mut c);
        c
    }

    /// Closes the store (sealing segments) and opens it again on the same data.
    pub async fn reopen(&mut self, tweak: impl Fn(&mut StoreConfig)) {
        self.store.seal_all().await;
        self.store.wait_for_uploads().await;
        let config = Self::config_for(self.dir.path(), &self.s3, &self.clock, &tweak);
        let old = std::mem::replace(&mut self.store, Store::open(config.clone()).await.unwrap());
        drop(old);
    }

    pub fn store_root(&self) -> PathBuf {
        self.dir.path().join("store")
    }
}

/// Deterministic chunk bytes for (stream, fragment index, chunk index).
pub fn chunk_bytes(tag: u64, frag: u64, chunk: u64, len: usize) -> Bytes {
    let mut x = tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ frag.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ chunk;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// Writes one whole fragment of `chunks` chunks of `chunk_len` bytes, 40 ms apart.
pub async fn write_fragment(
    stream: &Stream,
    tag: u64,
    frag: u64,
    producer_ts_ms: u64,
    server_ts_ms: u64,
    chunks: u64,
    chunk_len: usize,
) -> FragmentInfo {
    let header = Bytes::from(format!("header {tag}/{frag}"));
    let mut w = stream.begin_fragment(FragmentStart { producer_ts_ms, server_ts_ms, header }).await.unwrap();
    for c in 0..chunks {
        w.append_chunk(((c + 1) * 40) as u32, chunk_bytes(tag, frag, c, chunk_len)).await.unwrap();
    }
    w.finish((chunks * 40) as u32).await.unwrap()
}

/// Checks a fragment read back against what `write_fragment` wrote.
pub fn assert_fragment(f: &Fragment, tag: u64, frag: u64, chunk_len: usize) {
    assert_eq!(f.header, Bytes::from(format!("header {tag}/{frag}")));
    for (c, chunk) in f.chunks.iter().enumerate() {
        assert_eq!(chunk.data, chunk_bytes(tag, frag, c as u64, chunk_len), "chunk {c} of fragment {frag}");
        assert_eq!(chunk.end_offset_ms, ((c as u32) + 1) * 40);
    }
    assert_eq!(f.info.chunk_count as usize, f.chunks.len());
    assert_eq!(f.payload().len() as u64, f.info.payload_bytes);
}

/// Generates `#[tokio::test]`s running one async scenario fn on both backends.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod fs { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name($crate::common::Backend::Fs).await } )* }
        mod s3 { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name($crate::common::Backend::S3).await } )* }
    };
}

/// Number of `seg-*.log` files under the store root.
pub fn local_segment_files(root: &Path) -> usize {
    fn walk(p: &Path) -> usize {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() { walk(&p) } else { usize::from(p.extension().is_some_and(|x| x == "log")) }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(root)
}
