//! Which stored frame each sampling timestamp shows, sans-IO.
//!
//! A sampling timestamp `t` shows the video frame on screen at `t`: in the fragment whose
//! time span (start to start + duration, on the timeline the request selects) contains
//! `t`, the last video frame that starts at or before `t`. Server timestamps map into the
//! fragment's producer timeline by their offset from the fragment's server start. A `t`
//! that no fragment spans has no media.

use reel_media::source::Sample;
use reel_storage::{FragmentInfo, FragmentNumber};

/// Where the image of one sampling timestamp comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The frame shown at producer time `at_ms` in fragment `fragment`.
    Frame {
        /// The fragment spanning the timestamp.
        fragment: FragmentNumber,
        /// The timestamp on the fragment's producer timeline, ms.
        at_ms: i64,
    },
    /// No stored fragment spans the timestamp.
    NoMedia,
}

/// The source of sampling timestamp `t` among `fragments` (in stream order; a later one
/// wins where spans overlap).
pub fn locate(t: u64, producer: bool, fragments: &[FragmentInfo]) -> Source {
    let spanning = fragments.iter().rev().find(|f| {
        let start = if producer { f.producer_ts_ms } else { f.server_ts_ms };
        start <= t && t < start + u64::from(f.duration_ms.max(1))
    });
    match spanning {
        Some(f) => {
            let offset = t - if producer { f.producer_ts_ms } else { f.server_ts_ms };
            let at = f.producer_ts_ms.saturating_add(offset);
            Source::Frame { fragment: f.number, at_ms: i64::try_from(at).unwrap_or(i64::MAX) }
        }
        None => Source::NoMedia,
    }
}

/// The index of the video sample on screen at `at_ms`: the last one starting at or before
/// it, or the first one when `at_ms` precedes them all (the fragment's start is its first
/// frame); `None` without video samples.
pub fn frame_at(samples: &[Sample<'_>], at_ms: i64) -> Option<usize> {
    if samples.is_empty() {
        return None;
    }
    Some(samples.partition_point(|s| s.time_ms <= at_ms).saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(counter: u64, producer: u64, server: u64, duration: u32) -> FragmentInfo {
        FragmentInfo {
            number: FragmentNumber::from_counter(counter),
            producer_ts_ms: producer,
            server_ts_ms: server,
            duration_ms: duration,
            chunk_count: 1,
            payload_bytes: 1,
            header_bytes: 1,
            truncated: false,
        }
    }

    #[test]
    fn a_timestamp_shows_the_fragment_spanning_it() {
        // Two 2 s fragments, then a gap, then one more; the server clock runs 500 ms late.
        let frags = [frag(1, 10_000, 10_500, 2_000), frag(2, 12_000, 12_500, 2_000), frag(3, 20_000, 20_500, 2_000)];
        let n = |c| FragmentNumber::from_counter(c);
        assert_eq!(locate(9_999, true, &frags), Source::NoMedia);
        assert_eq!(locate(10_000, true, &frags), Source::Frame { fragment: n(1), at_ms: 10_000 });
        assert_eq!(locate(11_999, true, &frags), Source::Frame { fragment: n(1), at_ms: 11_999 });
        assert_eq!(locate(12_000, true, &frags), Source::Frame { fragment: n(2), at_ms: 12_000 });
        assert_eq!(locate(15_000, true, &frags), Source::NoMedia, "the gap");
        assert_eq!(locate(22_000, true, &frags), Source::NoMedia, "after the last");
        // Server timestamps map onto the producer timeline by their offset.
        assert_eq!(locate(10_400, false, &frags), Source::NoMedia);
        assert_eq!(locate(11_000, false, &frags), Source::Frame { fragment: n(1), at_ms: 10_500 });
        assert_eq!(locate(12_600, false, &frags), Source::Frame { fragment: n(2), at_ms: 12_100 });
    }

    #[test]
    fn the_frame_on_screen_is_the_last_one_started() {
        let s = |t| Sample { time_ms: t, duration: 3000, keyframe: t == 100, data: &[] };
        let samples = [s(100), s(133), s(166), s(200)];
        assert_eq!(frame_at(&samples, 100), Some(0));
        assert_eq!(frame_at(&samples, 150), Some(1));
        assert_eq!(frame_at(&samples, 166), Some(2));
        assert_eq!(frame_at(&samples, 5_000), Some(3));
        assert_eq!(frame_at(&samples, 50), Some(0), "before the first frame: the first");
        assert_eq!(frame_at(&[], 50), None);
    }
}
