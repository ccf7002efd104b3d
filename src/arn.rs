//! ARNs of channels and streams (docs/kvs-wire.md §1.4).
//!
//! `arn:aws:kinesisvideo:<region>:<account>:channel/<name>/<creation millis>` and the same
//! with `stream/`. Parsing follows the model's pattern
//! `arn:[a-z\d-]+:kinesisvideo:[a-z0-9-]+:[0-9]+:[a-z]+/[a-zA-Z0-9_.-]+/[0-9]+` (matched
//! against the whole string) and the model's length bound of 1–1024 characters. Formatting
//! always uses partition `aws`, because the signaling models only accept that partition.
//!
//! Sans-IO: no clock here; [`CreationClock`] is handed the current time.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Longest ARN the model accepts.
pub const MAX_ARN_LEN: usize = 1024;

/// The partition reel writes into every ARN it issues.
pub const PARTITION: &str = "aws";

/// The service segment of every KVS ARN.
pub const SERVICE: &str = "kinesisvideo";

/// What an ARN names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceKind {
    /// `channel/…`: a signaling channel.
    Channel,
    /// `stream/…`: a video stream.
    Stream,
    /// Any other lowercase resource type the pattern allows (never one reel issues).
    Other(String),
}

impl ResourceKind {
    /// The resource-type segment as written in the ARN.
    pub fn as_str(&self) -> &str {
        match self {
            ResourceKind::Channel => "channel",
            ResourceKind::Stream => "stream",
            ResourceKind::Other(s) => s,
        }
    }
}

/// A parsed KVS resource ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceArn {
    /// `aws` for every ARN reel issues; others parse but never match a resource.
    pub partition: String,
    /// Region segment.
    pub region: String,
    /// Account segment (digits).
    pub account: String,
    /// Resource type.
    pub kind: ResourceKind,
    /// Channel or stream name.
    pub name: String,
    /// Creation time in epoch milliseconds, as written in the last segment.
    pub creation_millis: String,
}

impl ResourceArn {
    /// A channel ARN.
    pub fn channel(region: &str, account: &str, name: &str, creation_millis: u64) -> Self {
        Self::new(ResourceKind::Channel, region, account, name, creation_millis)
    }

    /// A stream ARN.
    pub fn stream(region: &str, account: &str, name: &str, creation_millis: u64) -> Self {
        Self::new(ResourceKind::Stream, region, account, name, creation_millis)
    }

    fn new(kind: ResourceKind, region: &str, account: &str, name: &str, creation_millis: u64) -> Self {
        Self {
            partition: PARTITION.into(),
            region: region.into(),
            account: account.into(),
            kind,
            name: name.into(),
            creation_millis: creation_millis.to_string(),
        }
    }
}

impl fmt::Display for ResourceArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:{SERVICE}:{}:{}:{}/{}/{}",
            self.partition,
            self.region,
            self.account,
            self.kind.as_str(),
            self.name,
            self.creation_millis
        )
    }
}

/// Why a string is not a KVS resource ARN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArnError {
    /// Empty or longer than [`MAX_ARN_LEN`].
    #[error("ARN length must be between 1 and {MAX_ARN_LEN} characters")]
    Length,
    /// Does not match the model's ARN pattern.
    #[error("ARN must match the pattern arn:[a-z\\d-]+:kinesisvideo:[a-z0-9-]+:[0-9]+:[a-z]+/[a-zA-Z0-9_.-]+/[0-9]+")]
    Pattern,
}

/// Parse `s` as a KVS resource ARN (whole-string match of the model pattern).
pub fn parse(s: &str) -> Result<ResourceArn, ArnError> {
    if s.is_empty() || s.len() > MAX_ARN_LEN {
        return Err(ArnError::Length);
    }
    let mut parts = s.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(SERVICE), Some(region), Some(account), Some(resource)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ArnError::Pattern);
    };
    let mut segs = resource.splitn(3, '/');
    let (Some(kind), Some(name), Some(millis)) = (segs.next(), segs.next(), segs.next()) else {
        return Err(ArnError::Pattern);
    };
    let ok = non_empty_all(partition, |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && non_empty_all(region, |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && non_empty_all(account, |b| b.is_ascii_digit())
        && non_empty_all(kind, |b| b.is_ascii_lowercase())
        && non_empty_all(name, is_name_byte)
        && non_empty_all(millis, |b| b.is_ascii_digit());
    if !ok {
        return Err(ArnError::Pattern);
    }
    let kind = match kind {
        "channel" => ResourceKind::Channel,
        "stream" => ResourceKind::Stream,
        other => ResourceKind::Other(other.into()),
    };
    Ok(ResourceArn {
        partition: partition.into(),
        region: region.into(),
        account: account.into(),
        kind,
        name: name.into(),
        creation_millis: millis.into(),
    })
}

/// Whether `b` may appear in a channel or stream name (`[a-zA-Z0-9_.-]`).
pub fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

fn non_empty_all(s: &str, f: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && s.bytes().all(f)
}

/// Issues creation timestamps that are strictly increasing within this process, so two
/// resources never share an ARN even when created (or deleted and re-created) in the
/// same millisecond.
#[derive(Debug, Default)]
pub struct CreationClock {
    last: AtomicU64,
}

impl CreationClock {
    /// A clock that has issued nothing yet (usable in a `static`).
    pub const fn new() -> Self {
        Self { last: AtomicU64::new(0) }
    }

    /// The creation millis to use given the wall clock `now_millis`.
    pub fn next(&self, now_millis: u64) -> u64 {
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let candidate = now_millis.max(prev.saturating_add(1));
            match self.last.compare_exchange_weak(prev, candidate, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return candidate,
                Err(actual) => prev = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_channel_arn() {
        let arn = ResourceArn::channel("us-west-2", "123456789012", "cam-1", 1_700_000_000_123);
        let s = arn.to_string();
        assert_eq!(s, "arn:aws:kinesisvideo:us-west-2:123456789012:channel/cam-1/1700000000123");
        assert_eq!(parse(&s), Ok(arn));
    }

    #[test]
    fn parses_stream_and_other_kinds() {
        let a = parse("arn:aws-cn:kinesisvideo:cn-north-1:1:stream/s.1_x-y/0").expect("valid");
        assert_eq!(a.kind, ResourceKind::Stream);
        assert_eq!(a.name, "s.1_x-y");
        let b = parse("arn:aws:kinesisvideo:r:1:thing/n/1").expect("valid");
        assert_eq!(b.kind, ResourceKind::Other("thing".into()));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "arn:aws:kinesisvideo:us-west-2:123:channel/name",
            "arn:aws:kinesis:us-west-2:123:channel/name/1",
            "arn:aws:kinesisvideo:us-west-2:12a:channel/name/1",
            "arn:aws:kinesisvideo:us-west-2:123:Channel/name/1",
            "arn:aws:kinesisvideo:us-west-2:123:channel/na me/1",
            "arn:aws:kinesisvideo:us-west-2:123:channel/name/1x",
            "arn:aws:kinesisvideo:us-west-2:123:channel/name/1/2",
            "arn:AWS:kinesisvideo:us-west-2:123:channel/name/1",
            "xarn:aws:kinesisvideo:us-west-2:123:channel/name/1",
            "arn:aws:kinesisvideo::123:channel/name/1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let long = format!("arn:aws:kinesisvideo:r:1:channel/{}/1", "a".repeat(1024));
        assert_eq!(parse(&long), Err(ArnError::Length));
    }

    #[test]
    fn creation_clock_is_strictly_increasing() {
        let c = CreationClock::default();
        assert_eq!(c.next(100), 100);
        assert_eq!(c.next(100), 101);
        assert_eq!(c.next(50), 102);
        assert_eq!(c.next(500), 500);
    }
}
