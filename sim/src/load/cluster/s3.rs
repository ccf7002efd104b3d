//! An S3 server for the cluster target: `s3s-fs` (S3 over a directory, SigV4 checked
//! against one key) serving [`BUCKET`] on 127.0.0.1, on a one-thread runtime of its own
//! (as reel's cluster tests run it); stopped on drop. Its CPU is neither the cluster's nor
//! the generator's: reel-load reports it apart ([`crate::load::S3_THREAD_NAME`]).

use std::net::SocketAddr;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

use super::ClusterError;

/// The one access key the server accepts.
const ACCESS_KEY: &str = "AKIAREELLOADS3000001";
/// Its secret.
const SECRET_KEY: &str = "reel-load-s3-secret-00000000000000000000";
/// The bucket every node shares.
const BUCKET: &str = "reel-media";
/// The region the nodes sign for.
const REGION: &str = "us-east-1";

/// A running s3s-fs server.
pub struct S3Server {
    addr: SocketAddr,
    /// `None` once dropped (shut down in the background: drop may run inside a runtime).
    runtime: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl S3Server {
    /// Serves [`BUCKET`] from a fresh temporary directory on a free port of 127.0.0.1.
    pub fn start() -> Result<Self, ClusterError> {
        let dir = tempfile::Builder::new().prefix("reel-load-s3-").tempdir()?;
        std::fs::create_dir_all(dir.path().join(BUCKET))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(crate::load::S3_THREAD_NAME)
            // Its file I/O threads live as long as the server, so their CPU stays countable.
            .thread_keep_alive(std::time::Duration::from_secs(24 * 3600))
            .enable_all()
            .build()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let fs = s3s_fs::FileSystem::new(dir.path()).map_err(|e| ClusterError::Tool("s3s-fs", format!("{e:?}")))?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        runtime.spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { continue };
                let service = service.clone();
                tokio::spawn(async move {
                    let conn = ConnBuilder::new(TokioExecutor::new());
                    let _ = conn.serve_connection(TokioIo::new(socket), service).await;
                });
            }
        });
        Ok(Self { addr, runtime: Some(runtime), _dir: dir })
    }

    /// The `reel serve` flags that keep media in this server's bucket.
    pub fn reel_args(&self) -> Vec<String> {
        [
            ("--s3-bucket", BUCKET.to_string()),
            ("--s3-endpoint-url", format!("http://{}", self.addr)),
            ("--s3-region", REGION.to_string()),
            ("--s3-path-style", "true".to_string()),
            ("--s3-access-key-id", ACCESS_KEY.to_string()),
            ("--s3-secret-access-key", SECRET_KEY.to_string()),
            ("--s3-prefix", "reel/".to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
