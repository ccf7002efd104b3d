//! The store's one error type, [`StoreError`], and the mapping from `std::io::Error`.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in the store.
///
/// Cloneable so one failed group commit can be reported to every waiting writer.
/// The server maps each variant once to a KVS error (see the crate docs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The disk holding `path` is full (ENOSPC). Data already persisted stays readable.
    #[error("disk full while writing {}", path.display())]
    DiskFull { path: PathBuf },
    /// The process may not read or write `path`.
    #[error("permission denied on {}", path.display())]
    PermissionDenied { path: PathBuf },
    /// Any other I/O failure on `path`.
    #[error("I/O error on {}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    /// The S3 backend could not be reached or refused the request.
    #[error("S3 unavailable: {message}")]
    S3Unavailable { message: String },
    /// The stream was deleted; writers stop, readers end.
    #[error("stream {stream:?} was deleted")]
    StreamDeleted { stream: String },
    /// No stream with this id exists in the store.
    #[error("stream {stream:?} not found")]
    StreamNotFound { stream: String },
    /// The fragment number is well formed but no such fragment is (still) stored.
    #[error("fragment {number} not found")]
    FragmentNotFound { number: String },
    /// Stored bytes failed their checksum or do not parse; never served.
    #[error("corrupt data in {} at offset {offset}: {reason}", path.display())]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    /// Another fragment is still open on this stream (one writer at a time).
    #[error("a fragment is already being written on stream {stream:?}")]
    FragmentInProgress { stream: String },
    /// Shared mode: the writer's lease (fence) is no longer the stream's current one; the
    /// fragment is not indexed and the writer must stop.
    #[error("the writer lease of stream {stream:?} at epoch {epoch} is no longer current")]
    Fenced { stream: String, epoch: u64 },
    /// Shared mode: the fragment catalog could not be reached.
    #[error("fragment catalog unavailable: {message}")]
    CatalogUnavailable { message: String },
    /// The caller passed something the store cannot accept (malformed number, token, size…).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl StoreError {
    /// Classifies an I/O error on `path` (disk full and permission denied get their own variants).
    pub(crate) fn io(path: &Path, err: &io::Error) -> StoreError {
        const ENOSPC: i32 = 28;
        const EDQUOT: i32 = 122;
        let path = path.to_path_buf();
        match (err.kind(), err.raw_os_error()) {
            (_, Some(ENOSPC | EDQUOT)) | (io::ErrorKind::StorageFull, _) => StoreError::DiskFull { path },
            (io::ErrorKind::PermissionDenied, _) | (_, Some(30 /* EROFS */)) => StoreError::PermissionDenied { path },
            _ => StoreError::Io { path, message: err.to_string() },
        }
    }

    /// A corruption report for `path` at `offset`.
    pub(crate) fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt { path: path.to_path_buf(), offset, reason: reason.into() }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_io_errors() {
        let p = Path::new("/x");
        assert!(matches!(StoreError::io(p, &io::Error::from_raw_os_error(28)), StoreError::DiskFull { .. }));
        assert!(matches!(
            StoreError::io(p, &io::Error::from(io::ErrorKind::PermissionDenied)),
            StoreError::PermissionDenied { .. }
        ));
        assert!(matches!(StoreError::io(p, &io::Error::from_raw_os_error(5)), StoreError::Io { .. }));
        assert!(StoreError::io(p, &io::Error::from_raw_os_error(28)).to_string().contains("/x"));
    }
}
