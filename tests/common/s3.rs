//! An S3 server for the reel processes of the cluster tests: `s3s-fs` (a real S3 wire
//! implementation over a directory, SigV4 checked against one key) serving [`BUCKET`] on a
//! loopback address, on a runtime of its own so it keeps answering while the test thread
//! blocks. Stopped on drop; [`S3Server::stop`] and [`S3Server::restart`] simulate an outage.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::task::JoinSet;

/// The one access key the server accepts.
pub const ACCESS_KEY: &str = "AKIAREELS3TEST000001";
/// Secret of [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "reel-s3-test-secret-00000000000000000000";
/// The bucket every node shares.
pub const BUCKET: &str = "reel-media";
/// The region the nodes sign S3 requests for.
pub const REGION: &str = "us-east-1";

/// A running s3s-fs server.
pub struct S3Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its directory: `<root>/<bucket>/<key>`.
    pub root: PathBuf,
    /// `None` once dropped (shut down in the background: drop may run inside a runtime).
    runtime: Option<tokio::runtime::Runtime>,
    tasks: Option<JoinSet<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl S3Server {
    /// Serves [`BUCKET`] from a fresh temporary directory on `bind` (port 0 picks one).
    pub fn start(bind: SocketAddr) -> Self {
        let dir = tempfile::Builder::new().prefix("reel-s3-").tempdir().expect("tempdir");
        let mut server = Self::start_in(dir.path(), bind);
        server._dir = Some(dir);
        server
    }

    /// Serves [`BUCKET`] from `root` (created if missing) on `bind`.
    pub fn start_in(root: &Path, bind: SocketAddr) -> Self {
        std::fs::create_dir_all(root.join(BUCKET)).expect("bucket directory");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("s3s-fs")
            .enable_all()
            .build()
            .expect("S3 server runtime");
        let listener = std::net::TcpListener::bind(bind).expect("bind the S3 server");
        let addr = listener.local_addr().expect("S3 server address");
        let mut server = Self { addr, root: root.to_path_buf(), runtime: Some(runtime), tasks: None, _dir: None };
        server.serve(listener);
        server
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("S3 server runtime")
    }

    fn serve(&mut self, listener: std::net::TcpListener) {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto::Builder as ConnBuilder;
        use s3s::auth::SimpleAuth;
        use s3s::service::S3ServiceBuilder;
        let fs = s3s_fs::FileSystem::new(&self.root).expect("s3s-fs over the root");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let _guard = self.runtime().enter();
        listener.set_nonblocking(true).expect("nonblocking listener");
        let listener = tokio::net::TcpListener::from_std(listener).expect("S3 listener");
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else { continue };
                let service = service.clone();
                conns.spawn(async move {
                    let conn = ConnBuilder::new(TokioExecutor::new());
                    let _ = conn.serve_connection(TokioIo::new(socket), service).await;
                });
            }
        });
        self.tasks = Some(tasks);
    }

    /// Stops listening and drops every open connection (the data stays); returns once the
    /// listener is closed. Callable from async code (it waits on a channel, briefly).
    pub fn stop(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            self.runtime().spawn(async move {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                let _ = done_tx.send(());
            });
            let _ = done_rx.recv_timeout(std::time::Duration::from_secs(10));
        }
    }

    /// Serves again on the same address and data.
    pub fn restart(&mut self) {
        self.stop();
        let listener = std::net::TcpListener::bind(self.addr).expect("rebind the S3 server");
        self.serve(listener);
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `reel serve` flags that keep media in this server's bucket under `prefix`.
    pub fn reel_args(&self, prefix: &str) -> Vec<String> {
        [
            ("--s3-bucket", BUCKET.to_string()),
            ("--s3-endpoint-url", self.url()),
            ("--s3-region", REGION.to_string()),
            ("--s3-path-style", "true".to_string()),
            ("--s3-access-key-id", ACCESS_KEY.to_string()),
            ("--s3-secret-access-key", SECRET_KEY.to_string()),
            ("--s3-prefix", prefix.to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect()
    }

    /// The files under [`BUCKET`]'s directory (the stored keys), sorted.
    pub fn keys(&self) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(base, &path, out);
                } else if let Ok(rel) = path.strip_prefix(base) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        let bucket = self.root.join(BUCKET);
        let mut keys = Vec::new();
        walk(&bucket, &bucket, &mut keys);
        keys.sort();
        keys
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            tasks.abort_all();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
