//! Fragment numbers: KVS-style decimal strings backed by one store-wide counter.
//!
//! A number renders as [`FRAGMENT_NUMBER_PREFIX`] followed by the counter zero-padded to
//! [`COUNTER_DIGITS`] digits (44 digits in all, like KVS's). Every number has the same
//! width, so string order equals numeric order. The counter is shared by all streams of a
//! store (so numbers are unique across streams) and persisted by leasing blocks of
//! [`LEASE_BLOCK`] values in the `counter` file before handing them out, so a restart
//! never reuses a number, even of a deleted stream.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use crate::error::{Result, StoreError};

/// Fixed leading digits of every fragment number this store issues.
pub const FRAGMENT_NUMBER_PREFIX: &str = "91343852333181432";
/// Digits of the zero-padded counter after the prefix.
pub const COUNTER_DIGITS: usize = 27;
/// How many counter values are reserved per write of the `counter` file.
pub const LEASE_BLOCK: u64 = 1 << 16;

/// A fragment number: strictly increasing per stream, unique across the store's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FragmentNumber(u64);

impl FragmentNumber {
    /// The number with counter value `counter` (exposed for tests and tools).
    pub fn from_counter(counter: u64) -> Self {
        FragmentNumber(counter)
    }

    /// The store-wide counter value behind this number.
    pub fn counter(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FragmentNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{FRAGMENT_NUMBER_PREFIX}{:0width$}", self.0, width = COUNTER_DIGITS)
    }
}

impl FromStr for FragmentNumber {
    type Err = StoreError;

    /// Parses a number this store issued. Anything else (wrong length, non-digits, another
    /// prefix) is [`StoreError::InvalidArgument`].
    fn from_str(s: &str) -> Result<Self> {
        let bad = || StoreError::InvalidArgument(format!("not a fragment number of this store: {s:?}"));
        let rest = s.strip_prefix(FRAGMENT_NUMBER_PREFIX).ok_or_else(bad)?;
        if rest.len() != COUNTER_DIGITS || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        rest.parse::<u64>().map(FragmentNumber).map_err(|_| bad())
    }
}

/// Hands out counter values, leasing them durably in blocks.
#[derive(Debug)]
pub(crate) struct NumberAllocator {
    path: PathBuf,
    state: Mutex<AllocState>,
}

#[derive(Debug)]
struct AllocState {
    next: u64,
    leased_until: u64,
}

impl NumberAllocator {
    /// Opens the lease file at `path`; `min_next` is one past the largest counter found on disk.
    pub(crate) fn open(path: &Path, min_next: u64) -> Result<Self> {
        let leased = match fs::read_to_string(path) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|_| StoreError::corrupt(path, 0, "counter file is not a decimal number"))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
            Err(e) => return Err(StoreError::io(path, &e)),
        };
        let next = leased.max(min_next).max(1);
        Ok(Self { path: path.to_path_buf(), state: Mutex::new(AllocState { next, leased_until: next }) })
    }

    /// The next counter value; blocks on a file write + fsync once per [`LEASE_BLOCK`] values,
    /// so call it from a blocking context.
    pub(crate) fn allocate_blocking(&self) -> Result<u64> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.next >= st.leased_until {
            let until = st.next + LEASE_BLOCK;
            write_atomically(&self.path, until.to_string().as_bytes())?;
            st.leased_until = until;
        }
        let n = st.next;
        st.next += 1;
        Ok(n)
    }

    /// True when the next allocation needs no disk write.
    pub(crate) fn has_lease(&self) -> bool {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.next < st.leased_until
    }
}

/// Replaces `path` with `bytes` durably: write a temp file, fsync, rename, fsync the directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let on_tmp = |e: std::io::Error| StoreError::io(&tmp, &e);
    let mut f = fs::File::create(&tmp).map_err(on_tmp)?;
    f.write_all(bytes).map_err(on_tmp)?;
    f.sync_all().map_err(on_tmp)?;
    fs::rename(&tmp, path).map_err(|e| StoreError::io(path, &e))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Fsyncs a directory so entries created or renamed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StoreError::io(dir, &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn renders_like_kvs() {
        let n = FragmentNumber::from_counter(42);
        let s = n.to_string();
        assert_eq!(s.len(), 44);
        assert!(s.starts_with("913438523331814320"));
        assert!(s.ends_with("42"));
        assert_eq!(s.parse::<FragmentNumber>().unwrap(), n);
    }

    #[test]
    fn rejects_foreign_numbers() {
        for bad in
            ["", "12", "91343852333181432x00000000000000000000000001", "9134385233318143200000000000000000000000000001"]
        {
            assert!(matches!(bad.parse::<FragmentNumber>(), Err(StoreError::InvalidArgument(_))), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn string_order_is_numeric_order(a in any::<u64>(), b in any::<u64>()) {
            let (na, nb) = (FragmentNumber::from_counter(a), FragmentNumber::from_counter(b));
            prop_assert_eq!(na.to_string().cmp(&nb.to_string()), a.cmp(&b));
            prop_assert_eq!(na.to_string().parse::<FragmentNumber>().unwrap(), na);
        }
    }

    #[test]
    fn lease_survives_reopen_without_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counter");
        let a = NumberAllocator::open(&path, 0).unwrap();
        let first: Vec<u64> = (0..5).map(|_| a.allocate_blocking().unwrap()).collect();
        assert_eq!(first, vec![1, 2, 3, 4, 5]);
        drop(a);
        let b = NumberAllocator::open(&path, 0).unwrap();
        let next = b.allocate_blocking().unwrap();
        assert!(next > 5, "reopened allocator reused a number: {next}");
        let c = NumberAllocator::open(&path, next + 10_000_000).unwrap();
        assert_eq!(c.allocate_blocking().unwrap(), next + 10_000_000);
    }
}
