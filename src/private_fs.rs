//! Files and directories that hold secrets: created owner-only from the start (never
//! world-readable, not even for a moment), and replaced atomically.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Create `path` (and missing parents) with mode 0700. An existing directory is left as
/// it is, with a warning when others may read it.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "directory holding secrets is accessible to other users; consider chmod 700");
            }
            Ok(())
        }
        _ => std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path),
    }
}

/// Write `contents` to `path` with mode 0600: into a new temp file opened with that mode,
/// synced, then renamed over `path`, so the bytes never sit in a file others can read
/// (nor in an old inode someone holds open).
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn private_dirs_and_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("a").join("b");
        create_private_dir(&nested).expect("create");
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700, "parents too");
        create_private_dir(&nested).expect("existing is fine");

        let key = nested.join("key.pem");
        std::fs::write(&key, b"old").expect("old file");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut held = std::fs::File::open(&key).expect("someone holds the old file open");
        write_private(&key, b"secret").expect("write");
        assert_eq!(mode(&key), 0o600);
        assert_eq!(std::fs::read(&key).expect("read"), b"secret");
        let mut old = String::new();
        held.read_to_string(&mut old).expect("read held");
        assert_eq!(old, "old", "the secret never went into the old, readable inode");
    }
}
