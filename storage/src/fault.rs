//! Injected I/O failures, so tests can prove what happens on a full disk, a read-only
//! directory or a failing fsync without needing a broken disk (or running as non-root).

use std::io;
use std::sync::Mutex;

/// Which OS error an injected failure imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// ENOSPC.
    DiskFull,
    /// EACCES.
    PermissionDenied,
    /// EIO.
    Io,
}

impl Fault {
    fn to_io(self) -> io::Error {
        io::Error::from_raw_os_error(match self {
            Fault::DiskFull => 28,
            Fault::PermissionDenied => 13,
            Fault::Io => 5,
        })
    }
}

/// Makes the next N file writes and/or fsyncs of a store fail. Install it with
/// [`crate::StoreConfig::fault_injector`]; it is inert until armed.
#[derive(Debug, Default)]
pub struct FaultInjector {
    writes: Mutex<Option<(u32, Fault)>>,
    syncs: Mutex<Option<(u32, Fault)>>,
}

impl FaultInjector {
    /// An unarmed injector.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `count` writes (records, new segment files, index files) fail with `fault`.
    pub fn fail_writes(&self, count: u32, fault: Fault) {
        *self.writes.lock().unwrap_or_else(|p| p.into_inner()) = Some((count, fault));
    }

    /// The next `count` fsync batches fail with `fault`.
    pub fn fail_syncs(&self, count: u32, fault: Fault) {
        *self.syncs.lock().unwrap_or_else(|p| p.into_inner()) = Some((count, fault));
    }

    /// Disarms all pending failures.
    pub fn clear(&self) {
        *self.writes.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self.syncs.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(crate) fn check_write(&self) -> io::Result<()> {
        take(&self.writes)
    }

    pub(crate) fn check_sync(&self) -> io::Result<()> {
        take(&self.syncs)
    }
}

fn take(slot: &Mutex<Option<(u32, Fault)>>) -> io::Result<()> {
    let mut g = slot.lock().unwrap_or_else(|p| p.into_inner());
    match *g {
        Some((n, fault)) if n > 0 => {
            *g = if n > 1 { Some((n - 1, fault)) } else { None };
            Err(fault.to_io())
        }
        _ => Ok(()),
    }
}
