//! Stream records for media reads: GetMedia, ListFragments, GetMediaForFragmentList, the
//! HLS/DASH session and clip calls look up the stream they name on every request (a
//! Postgres round trip per request in cluster mode, and players poll). A record found is
//! reused for [`STREAM_RECORD_TTL`]; this node drops it at once when it updates or deletes
//! the stream, so on a single node reads never see an old record, and in a cluster a change
//! made on another node reaches this node's reads within the TTL (KVS applies stream
//! updates and deletions asynchronously too). Control-plane calls always read the database.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::meta::StreamRecord;

/// The operations that reuse records: reads of a stream's media and index.
const MEDIA_READS: &[&str] = &[
    "GetMedia",
    "ListFragments",
    "GetMediaForFragmentList",
    "GetHLSStreamingSessionURL",
    "GetDASHStreamingSessionURL",
    "GetClip",
    "GetImages",
];

/// Whether operation `op` may use a record from the cache (media reads) rather than the
/// database (everything else, the control plane above all).
pub fn reuses_records(op: &str) -> bool {
    MEDIA_READS.contains(&op)
}

/// How long a stream record found for a media read is reused.
pub const STREAM_RECORD_TTL: Duration = Duration::from_secs(1);
/// Records kept at most (expired ones are dropped first, then all when still over).
const MAX_RECORDS: usize = 10_000;

/// Recently found stream records, by ARN and by name.
#[derive(Debug, Default)]
pub struct StreamCache {
    entries: Mutex<HashMap<Key, (StreamRecord, Instant)>>,
}

/// How a request named the stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Arn(String),
    Name(String),
}

impl StreamCache {
    /// The record of the stream with this ARN found less than the TTL before `now`.
    pub fn by_arn(&self, arn: &str, now: Instant) -> Option<StreamRecord> {
        self.get(&Key::Arn(arn.to_string()), now)
    }

    /// The record of the stream with this name found less than the TTL before `now`.
    pub fn by_name(&self, name: &str, now: Instant) -> Option<StreamRecord> {
        self.get(&Key::Name(name.to_string()), now)
    }

    /// Remembers `record`, found in the database at `now`.
    pub fn put(&self, record: &StreamRecord, now: Instant) {
        let mut entries = self.lock();
        if entries.len() >= MAX_RECORDS {
            entries.retain(|_, (_, at)| now.saturating_duration_since(*at) < STREAM_RECORD_TTL);
            if entries.len() >= MAX_RECORDS {
                entries.clear();
            }
        }
        entries.insert(Key::Arn(record.arn.clone()), (record.clone(), now));
        entries.insert(Key::Name(record.name.clone()), (record.clone(), now));
    }

    /// Drops the stream `arn` (this node changed or deleted it).
    pub fn forget(&self, arn: &str) {
        self.lock().retain(|_, (r, _)| r.arn != arn);
    }

    fn get(&self, key: &Key, now: Instant) -> Option<StreamRecord> {
        let entries = self.lock();
        let (record, at) = entries.get(key)?;
        (now.saturating_duration_since(*at) < STREAM_RECORD_TTL).then(|| record.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (StreamRecord, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, version: &str) -> StreamRecord {
        StreamRecord {
            arn: format!("arn:aws:kinesisvideo:us-west-2:123456789012:stream/{name}/1"),
            name: name.to_string(),
            device_name: None,
            media_type: None,
            kms_key_id: None,
            status: "ACTIVE".to_string(),
            creation_time: 0.0,
            data_retention_in_hours: 24,
            default_storage_tier: crate::meta::StorageTier::Hot,
            version: version.to_string(),
        }
    }

    #[test]
    fn a_record_is_reused_within_the_ttl_by_arn_and_name_and_forgotten_on_change() {
        let c = StreamCache::default();
        let t0 = Instant::now();
        let r = record("cam", "v1");
        assert_eq!(c.by_arn(&r.arn, t0), None);
        c.put(&r, t0);
        assert_eq!(c.by_arn(&r.arn, t0 + Duration::from_millis(999)), Some(r.clone()));
        assert_eq!(c.by_name("cam", t0), Some(r.clone()));
        assert_eq!(c.by_arn(&r.arn, t0 + STREAM_RECORD_TTL), None, "expired");
        c.put(&r, t0);
        c.forget(&r.arn);
        assert_eq!(c.by_arn(&r.arn, t0), None);
        assert_eq!(c.by_name("cam", t0), None, "both keys go");
    }

    #[test]
    fn only_media_reads_reuse_records() {
        for op in ["GetMedia", "ListFragments", "GetMediaForFragmentList", "GetHLSStreamingSessionURL", "GetClip"] {
            assert!(reuses_records(op), "{op}");
        }
        for op in ["DescribeStream", "UpdateStream", "DeleteStream", "GetDataEndpoint", "TagStream"] {
            assert!(!reuses_records(op), "{op}");
        }
    }

    #[test]
    fn the_cache_stays_bounded() {
        let c = StreamCache::default();
        let t0 = Instant::now();
        for i in 0..MAX_RECORDS + 10 {
            c.put(&record(&format!("s{i}"), "v"), t0);
        }
        assert!(c.lock().len() <= MAX_RECORDS + 2);
    }
}
