//! Public value types: what writers pass in and readers get back, plus timestamp range
//! listing with opaque page tokens (sans-IO over the in-memory index).

use std::fmt;
use std::str::FromStr;

use bytes::{Bytes, BytesMut};

use crate::error::{Result, StoreError};
use crate::number::FragmentNumber;
use crate::segment::IndexEntry;

/// Everything known about a fragment when it begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentStart {
    /// Producer (media) timestamp of the fragment start, ms since the Unix epoch.
    pub producer_ts_ms: u64,
    /// Server (ingestion) timestamp of the fragment start, ms since the Unix epoch.
    pub server_ts_ms: u64,
    /// Opaque per-fragment metadata the media layer needs to decode the chunks
    /// (e.g. MKV track entries with codec private data).
    pub header: Bytes,
}

/// A stored fragment's metadata, as listed and as returned by `finish`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FragmentInfo {
    /// The fragment's number (KVS `FragmentNumber`).
    pub number: FragmentNumber,
    /// Producer timestamp of its start, ms since the Unix epoch.
    pub producer_ts_ms: u64,
    /// Server timestamp of its start, ms since the Unix epoch.
    pub server_ts_ms: u64,
    /// Media duration in ms (the writer's, or the last chunk end offset if truncated).
    pub duration_ms: u32,
    /// Number of chunks.
    pub chunk_count: u32,
    /// Sum of the chunks' byte lengths.
    pub payload_bytes: u64,
    /// Byte length of the header blob.
    pub header_bytes: u32,
    /// True when the writer never finished it and recovery kept its complete prefix.
    pub truncated: bool,
}

impl FragmentInfo {
    pub(crate) fn from_entry(e: &IndexEntry) -> Self {
        FragmentInfo {
            number: FragmentNumber::from_counter(e.counter),
            producer_ts_ms: e.producer_ts_ms,
            server_ts_ms: e.server_ts_ms,
            duration_ms: e.duration_ms,
            chunk_count: e.chunk_count,
            payload_bytes: e.payload_bytes,
            header_bytes: e.header_bytes,
            truncated: e.truncated,
        }
    }
}

/// One opaque media unit of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Media end of this chunk, ms after the fragment start.
    pub end_offset_ms: u32,
    /// The bytes as the writer appended them.
    pub data: Bytes,
}

/// A fragment read back in full (checksums verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// Its metadata.
    pub info: FragmentInfo,
    /// The header blob given at `begin_fragment`.
    pub header: Bytes,
    /// Its chunks in append order.
    pub chunks: Vec<Chunk>,
}

impl Fragment {
    /// All chunk bytes concatenated (one copy; the chunks themselves are zero-copy slices).
    pub fn payload(&self) -> Bytes {
        if let [one] = self.chunks.as_slice() {
            return one.data.clone();
        }
        let mut b = BytesMut::with_capacity(self.info.payload_bytes as usize);
        for c in &self.chunks {
            b.extend_from_slice(&c.data);
        }
        b.freeze()
    }
}

/// Which of a fragment's two timestamps a query or start position refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampKind {
    /// The producer (media) timestamp.
    Producer,
    /// The server (ingestion) timestamp.
    Server,
}

impl TimestampKind {
    pub(crate) fn of(self, e: &IndexEntry) -> u64 {
        match self {
            TimestampKind::Producer => e.producer_ts_ms,
            TimestampKind::Server => e.server_ts_ms,
        }
    }
}

/// Fragments whose start timestamp lies in `[start_ms, end_ms]` (both inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimestampRange {
    /// Which timestamp to compare.
    pub kind: TimestampKind,
    /// Inclusive lower bound, ms since the Unix epoch.
    pub start_ms: u64,
    /// Inclusive upper bound, ms since the Unix epoch.
    pub end_ms: u64,
}

/// One page of a listing, in fragment-number order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentPage {
    /// Up to the requested number of fragments.
    pub fragments: Vec<FragmentInfo>,
    /// Present when more matching fragments follow; pass it to `list_fragments_after`.
    pub next_token: Option<PageToken>,
}

/// Opaque continuation of a listing: the query plus the last fragment returned.
///
/// Renders as lowercase hex (valid for KVS's `NextToken` pattern `[a-zA-Z0-9+/]+={0,2}`),
/// checksummed so a mangled token is rejected with [`StoreError::InvalidArgument`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageToken {
    pub(crate) range: TimestampRange,
    pub(crate) after_counter: u64,
}

impl fmt::Display for PageToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(30);
        raw.push(1u8);
        raw.push(match self.range.kind {
            TimestampKind::Producer => 0,
            TimestampKind::Server => 1,
        });
        raw.extend_from_slice(&self.range.start_ms.to_le_bytes());
        raw.extend_from_slice(&self.range.end_ms.to_le_bytes());
        raw.extend_from_slice(&self.after_counter.to_le_bytes());
        let crc = crc32c::crc32c(&raw);
        raw.extend_from_slice(&crc.to_le_bytes());
        f.write_str(&hex::encode(raw))
    }
}

impl FromStr for PageToken {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || StoreError::InvalidArgument("malformed page token".into());
        let raw = hex::decode(s).map_err(|_| bad())?;
        if raw.len() != 30 || raw[0] != 1 {
            return Err(bad());
        }
        let (body, crc) = raw.split_at(26);
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return Err(bad());
        }
        let u = |i: usize| body.get(i..i + 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes).ok_or_else(bad);
        let kind = match body[1] {
            0 => TimestampKind::Producer,
            1 => TimestampKind::Server,
            _ => return Err(bad()),
        };
        Ok(PageToken { range: TimestampRange { kind, start_ms: u(2)?, end_ms: u(10)? }, after_counter: u(18)? })
    }
}

/// Selects up to `limit` entries matching `range` with counter > `after`, in counter order.
pub(crate) fn select_page(entries: &[IndexEntry], range: TimestampRange, after: u64, limit: usize) -> FragmentPage {
    let from = entries.partition_point(|e| e.counter <= after);
    let mut matching = entries[from..].iter().filter(|e| {
        let t = range.kind.of(e);
        t >= range.start_ms && t <= range.end_ms
    });
    let fragments: Vec<FragmentInfo> = matching.by_ref().take(limit.max(1)).map(FragmentInfo::from_entry).collect();
    let next_token = match (fragments.last(), matching.next()) {
        (Some(last), Some(_)) => Some(PageToken { range, after_counter: last.number.counter() }),
        _ => None,
    };
    FragmentPage { fragments, next_token }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(counter: u64, p: u64, s: u64) -> IndexEntry {
        IndexEntry {
            counter,
            producer_ts_ms: p,
            server_ts_ms: s,
            duration_ms: 1,
            chunk_count: 1,
            payload_bytes: 1,
            header_bytes: 0,
            truncated: false,
            segment: 0,
            offset: 0,
            len: 0,
        }
    }

    #[test]
    fn token_round_trips_and_rejects_tampering() {
        let t = PageToken {
            range: TimestampRange { kind: TimestampKind::Server, start_ms: 5, end_ms: 9 },
            after_counter: 77,
        };
        let s = t.to_string();
        assert!(s.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(s.parse::<PageToken>().unwrap(), t);
        let mut bad = s.into_bytes();
        bad[10] = if bad[10] == b'0' { b'1' } else { b'0' };
        assert!(String::from_utf8(bad).unwrap().parse::<PageToken>().is_err());
        assert!("zz".parse::<PageToken>().is_err());
    }

    proptest! {
        /// Paging through any index with any page size yields exactly the matching entries,
        /// once each, in number order.
        #[test]
        fn paging_is_exact(
            ts in proptest::collection::vec((0u64..100, 0u64..100), 0..60),
            start in 0u64..100, len in 0u64..100, limit in 1usize..7, producer in any::<bool>(),
        ) {
            let entries: Vec<IndexEntry> = ts.iter().enumerate().map(|(i, (p, s))| entry(i as u64 * 3 + 1, *p, *s)).collect();
            let kind = if producer { TimestampKind::Producer } else { TimestampKind::Server };
            let range = TimestampRange { kind, start_ms: start, end_ms: start + len };
            let expected: Vec<u64> = entries.iter().filter(|e| { let t = kind.of(e); t >= start && t <= start + len }).map(|e| e.counter).collect();
            let mut got = Vec::new();
            let mut page = select_page(&entries, range, 0, limit);
            loop {
                prop_assert!(page.fragments.len() <= limit);
                got.extend(page.fragments.iter().map(|f| f.number.counter()));
                match page.next_token {
                    Some(tok) => {
                        let tok: PageToken = tok.to_string().parse().unwrap();
                        page = select_page(&entries, tok.range, tok.after_counter, limit);
                        prop_assert!(!page.fragments.is_empty(), "token promised more");
                    }
                    None => break,
                }
            }
            prop_assert_eq!(got, expected);
        }
    }
}
