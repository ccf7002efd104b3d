//! From a PutMedia body's Matroska events to stored fragments, sans-IO: one Cluster is one
//! fragment. [`Assembler`] checks what KVS checks per fragment (tracks declared and at most
//! the limit, blocks of declared tracks, fragment size and duration, fragment timecodes
//! increasing, timestamps within the epoch's range, no empty fragment) and hands out each
//! complete fragment as reel stores it: the tracks as
//! the header, the frames as SimpleBlocks relative to the fragment start in ms (the store's
//! format, whatever `TimecodeScale` the producer used), and the producer timestamp in ms.
//!
//! A fragment is held in memory until its Cluster ends, so a fragment that fails is never
//! stored in part: the producer SDKs resend a fragment that was not acknowledged.

use std::collections::HashMap;

use reel_media::mkv::{MkvError, StreamBlock, StreamEvent, write_simple_block, write_tracks};

use super::ack::ErrorId;
use super::request::TimecodeType;

/// What one connection allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentLimits {
    /// Largest fragment, bytes of frame data (KVS: 50 MB).
    pub max_fragment_bytes: u64,
    /// Longest fragment, ms from its cluster timecode to its last frame (KVS: 10 s; at most
    /// 32,767 ms, the store's block offsets).
    pub max_fragment_duration_ms: u64,
    /// Most tracks (KVS: 3).
    pub max_tracks: usize,
}

/// A complete fragment, ready for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyFragment {
    /// Its Cluster `Timecode` as sent (what acknowledgements echo).
    pub timecode: u64,
    /// Producer timestamp of its start, ms since the epoch.
    pub producer_ts_ms: u64,
    /// The store header: one `Tracks` element.
    pub header: Vec<u8>,
    /// Its frames as SimpleBlocks, relative to `producer_ts_ms` in ms.
    pub chunk: Vec<u8>,
    /// End of its last frame (by the frame spacing of its track), ms after the start.
    pub duration_ms: u32,
}

/// What an event produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A fragment began (the BUFFERING point).
    Began {
        /// Its Cluster `Timecode`.
        timecode: u64,
    },
    /// A fragment is complete (the RECEIVED point).
    Complete(ReadyFragment),
}

/// A fragment (or the stream) failed; the connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// The Cluster `Timecode` of the fragment concerned (the last one begun, 0 before any).
    pub timecode: u64,
    /// Why.
    pub error: ErrorId,
}

#[derive(Debug)]
struct Tracks {
    header: Vec<u8>,
    numbers: Vec<u64>,
    scale_ns: u64,
}

#[derive(Debug)]
struct Open {
    timecode: u64,
    start_ms: i64,
    chunk: Vec<u8>,
    /// Per track: its last frame's time and the spacing before it, ms.
    last: HashMap<u64, (i64, i64)>,
}

/// The latest producer timestamp accepted: the end of year 9999, in ms since the epoch.
pub const MAX_PRODUCER_MS: i64 = 253_402_300_799_999;

/// Turns stream events into fragments (see the module docs).
#[derive(Debug)]
pub struct Assembler {
    limits: FragmentLimits,
    /// Producer time of timecode 0, ms: the start timestamp in RELATIVE mode, else 0.
    base_ms: i64,
    tracks: Option<Tracks>,
    open: Option<Open>,
    last_timecode: u64,
    /// The start of the previous fragment, ms.
    previous_start_ms: Option<i64>,
}

impl Assembler {
    /// An assembler for one connection. `start_ms` is the producer start timestamp (or the
    /// connection's start when the producer sent none), the origin of RELATIVE timecodes.
    pub fn new(limits: FragmentLimits, timecode_type: TimecodeType, start_ms: u64) -> Self {
        let base_ms = match timecode_type {
            TimecodeType::Absolute => 0,
            TimecodeType::Relative => i64::try_from(start_ms).unwrap_or(i64::MAX),
        };
        Self { limits, base_ms, tracks: None, open: None, last_timecode: 0, previous_start_ms: None }
    }

    /// The failure a reader error means for the current fragment.
    pub fn reader_failure(&self, e: &MkvError) -> Failure {
        let error = match e {
            MkvError::TooLarge { .. } => ErrorId::MaxFragmentSizeReached,
            _ => ErrorId::InvalidMkvData,
        };
        self.fail(error)
    }

    /// A failure of the current fragment with `error`.
    pub fn fail(&self, error: ErrorId) -> Failure {
        Failure { timecode: self.last_timecode, error }
    }

    /// Applies one event.
    pub fn apply(&mut self, ev: StreamEvent) -> Result<Option<Step>, Failure> {
        match ev {
            StreamEvent::Tracks { entries, timecode_scale_ns } => {
                if entries.is_empty() {
                    return Err(self.fail(ErrorId::InvalidMkvData));
                }
                if entries.len() > self.limits.max_tracks {
                    return Err(self.fail(ErrorId::MoreThanAllowedTracksFound));
                }
                let numbers = entries.iter().map(|t| t.number).collect();
                self.tracks = Some(Tracks { header: write_tracks(&entries), numbers, scale_ns: timecode_scale_ns });
                Ok(None)
            }
            StreamEvent::ClusterStart { timecode } => {
                self.last_timecode = timecode;
                let Some(tracks) = &self.tracks else { return Err(self.fail(ErrorId::InvalidMkvData)) };
                let start_ms = self.time_ms(tracks.scale_ns, i128::from(timecode));
                if !(0..=MAX_PRODUCER_MS).contains(&start_ms) {
                    return Err(self.fail(ErrorId::InvalidProducerTimestamp));
                }
                // KVS: "fragment timecode is less than the timecode previous time code";
                // an equal one would be the same fragment again.
                if self.previous_start_ms.is_some_and(|previous| start_ms <= previous) {
                    return Err(self.fail(ErrorId::FragmentTimecodeLesserThanPrevious));
                }
                self.previous_start_ms = Some(start_ms);
                self.open = Some(Open { timecode, start_ms, chunk: Vec::new(), last: HashMap::new() });
                Ok(Some(Step::Began { timecode }))
            }
            StreamEvent::Block(block) => {
                self.block(block)?;
                Ok(None)
            }
            StreamEvent::ClusterEnd => {
                let (Some(open), Some(tracks)) = (self.open.take(), &self.tracks) else { return Ok(None) };
                if open.last.is_empty() {
                    return Err(Failure { timecode: open.timecode, error: ErrorId::FramesMissingForTrack });
                }
                let end_ms = open.last.values().map(|(t, gap)| t.saturating_add(*gap)).max().unwrap_or(open.start_ms);
                let duration = end_ms.saturating_sub(open.start_ms).clamp(0, i64::from(u32::MAX));
                Ok(Some(Step::Complete(ReadyFragment {
                    timecode: open.timecode,
                    producer_ts_ms: open.start_ms as u64,
                    header: tracks.header.clone(),
                    chunk: open.chunk,
                    duration_ms: duration as u32,
                })))
            }
        }
    }

    fn block(&mut self, block: StreamBlock) -> Result<(), Failure> {
        let fail = |error| Failure { timecode: self.last_timecode, error };
        let (Some(tracks), Some(open)) = (&self.tracks, self.open.as_ref()) else {
            return Err(fail(ErrorId::InvalidMkvData));
        };
        if !tracks.numbers.contains(&block.track) {
            return Err(fail(ErrorId::TrackNumberMismatch));
        }
        let at_ms = self.time_ms(tracks.scale_ns, i128::from(open.timecode) + i128::from(block.relative));
        if !(0..=MAX_PRODUCER_MS).contains(&at_ms) {
            return Err(fail(ErrorId::InvalidProducerTimestamp));
        }
        let offset = at_ms - open.start_ms;
        let max = self.limits.max_fragment_duration_ms.min(i16::MAX as u64) as i64;
        if offset > max {
            return Err(fail(ErrorId::MaxFragmentDurationReached));
        }
        let Ok(offset) = i16::try_from(offset) else { return Err(fail(ErrorId::InvalidMkvData)) };
        let Some(open) = self.open.as_mut() else { return Err(fail(ErrorId::InvalidMkvData)) };
        // What the fragment holds, block framing included, counts against the limit.
        let grown = open.chunk.len() + reel_media::mkv::simple_block_len(block.track, block.data.len());
        if grown as u64 > self.limits.max_fragment_bytes {
            return Err(Failure { timecode: open.timecode, error: ErrorId::MaxFragmentSizeReached });
        }
        write_simple_block(&mut open.chunk, block.track, offset, block.keyframe, &block.data);
        let gap = open.last.get(&block.track).map_or(0, |(t, _)| at_ms.saturating_sub(*t).max(0));
        open.last.insert(block.track, (at_ms, gap));
        Ok(())
    }

    /// Producer time in ms of `timecode` (timecode-scale units).
    fn time_ms(&self, scale_ns: u64, timecode: i128) -> i64 {
        let ms = timecode.saturating_mul(i128::from(scale_ns)).div_euclid(1_000_000) + i128::from(self.base_ms);
        ms.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reel_media::mkv::{TrackEntry, TrackType, parse_stored, parse_tracks};

    const LIMITS: FragmentLimits =
        FragmentLimits { max_fragment_bytes: 1000, max_fragment_duration_ms: 10_000, max_tracks: 3 };

    fn track(number: u64) -> TrackEntry {
        TrackEntry::bare(number, TrackType::Video, "V_MPEG4/ISO/AVC")
    }

    fn tracks(scale_ns: u64, n: u64) -> StreamEvent {
        StreamEvent::Tracks { entries: (1..=n).map(track).collect(), timecode_scale_ns: scale_ns }
    }

    fn block(track: u64, relative: i16, data: &[u8]) -> StreamEvent {
        StreamEvent::Block(StreamBlock {
            track,
            relative,
            keyframe: relative == 0,
            data: bytes::Bytes::copy_from_slice(data),
        })
    }

    fn run(a: &mut Assembler, events: Vec<StreamEvent>) -> Result<Vec<Step>, Failure> {
        let mut out = Vec::new();
        for ev in events {
            out.extend(a.apply(ev)?);
        }
        Ok(out)
    }

    #[test]
    fn a_cluster_becomes_a_fragment_in_ms() {
        // TimecodeScale 100 µs: timecode 17,000,000,000,000 is 1,700,000,000,000 ms.
        let mut a = Assembler::new(LIMITS, TimecodeType::Absolute, 5);
        let steps = run(
            &mut a,
            vec![
                tracks(100_000, 2),
                StreamEvent::ClusterStart { timecode: 17_000_000_000_000 },
                block(1, 0, b"key"),
                block(2, 100, b"aud"),
                block(1, 333, b"p"),
                block(1, 666, b"p2"),
                StreamEvent::ClusterEnd,
            ],
        )
        .expect("fragment");
        assert_eq!(steps[0], Step::Began { timecode: 17_000_000_000_000 });
        let Step::Complete(f) = &steps[1] else { panic!("{steps:?}") };
        assert_eq!(f.timecode, 17_000_000_000_000);
        assert_eq!(f.producer_ts_ms, 1_700_000_000_000);
        assert_eq!(f.duration_ms, 66 + 33, "last video frame plus its spacing");
        assert_eq!(parse_tracks(&f.header).expect("tracks").len(), 2);
        let stored = parse_stored(&f.header, [f.chunk.as_slice()], 1_700_000_000_000).expect("stored");
        let times: Vec<_> = stored.frames.iter().map(|fr| (fr.track, fr.timestamp_ms - 1_700_000_000_000)).collect();
        assert_eq!(times, vec![(1, 0), (2, 10), (1, 33), (1, 66)]);
        assert!(stored.frames[0].keyframe && !stored.frames[2].keyframe);
    }

    #[test]
    fn relative_timecodes_count_from_the_start_timestamp() {
        let mut a = Assembler::new(LIMITS, TimecodeType::Relative, 1_700_000_000_000);
        let steps = run(
            &mut a,
            vec![
                tracks(1_000_000, 1),
                StreamEvent::ClusterStart { timecode: 2000 },
                block(1, 0, b"k"),
                StreamEvent::ClusterEnd,
            ],
        )
        .expect("fragment");
        let Step::Complete(f) = &steps[1] else { panic!("{steps:?}") };
        assert_eq!((f.timecode, f.producer_ts_ms), (2000, 1_700_000_002_000));
    }

    #[test]
    fn what_kvs_refuses_fails_the_fragment() {
        let start = |a: &mut Assembler| {
            run(a, vec![tracks(1_000_000, 1), StreamEvent::ClusterStart { timecode: 1000 }]).expect("start")
        };
        let err = |events: Vec<StreamEvent>| {
            let mut a = Assembler::new(LIMITS, TimecodeType::Absolute, 0);
            start(&mut a);
            run(&mut a, events).expect_err("refused")
        };
        assert_eq!(err(vec![block(2, 0, b"x")]).error, ErrorId::TrackNumberMismatch);
        assert_eq!(err(vec![block(1, 10_001, b"x")]).error, ErrorId::MaxFragmentDurationReached);
        assert_eq!(err(vec![block(1, 0, &[0; 600]), block(1, 1, &[0; 600])]).error, ErrorId::MaxFragmentSizeReached);
        // Block framing counts too: empty frames cannot grow a fragment past the limit.
        let empties: Vec<StreamEvent> = (0..200).map(|_| block(1, 0, b"")).collect();
        assert_eq!(err(empties).error, ErrorId::MaxFragmentSizeReached);
        for timecode in [1000, 999] {
            let f = err(vec![
                block(1, 0, b"a"),
                StreamEvent::ClusterEnd,
                StreamEvent::ClusterStart { timecode },
                block(1, 0, b"c"),
            ]);
            assert_eq!(f, Failure { timecode, error: ErrorId::FragmentTimecodeLesserThanPrevious });
        }
        assert_eq!(err(vec![StreamEvent::ClusterEnd]).error, ErrorId::FramesMissingForTrack, "an empty fragment");

        // Producer times outside the epoch's range.
        let mut a = Assembler::new(LIMITS, TimecodeType::Absolute, 0);
        a.apply(tracks(1_000_000, 1)).expect("tracks");
        let f = a.apply(StreamEvent::ClusterStart { timecode: i64::MAX as u64 }).expect_err("year 292 million");
        assert_eq!(f.error, ErrorId::InvalidProducerTimestamp);
        a.apply(StreamEvent::ClusterStart { timecode: 3 }).expect("near the epoch");
        assert_eq!(a.apply(block(1, -5, b"x")).expect_err("before the epoch").error, ErrorId::InvalidProducerTimestamp);

        let mut a = Assembler::new(LIMITS, TimecodeType::Absolute, 0);
        assert_eq!(a.apply(tracks(1_000_000, 4)).expect_err("tracks").error, ErrorId::MoreThanAllowedTracksFound);
        let mut a = Assembler::new(LIMITS, TimecodeType::Absolute, 0);
        assert_eq!(
            a.apply(StreamEvent::ClusterStart { timecode: 1 }).expect_err("no tracks").error,
            ErrorId::InvalidMkvData
        );
        assert_eq!(a.reader_failure(&MkvError::TooLarge { id: 0xA3, size: 1 }).error, ErrorId::MaxFragmentSizeReached);
        assert_eq!(a.reader_failure(&MkvError::Truncated).error, ErrorId::InvalidMkvData);
    }

    #[test]
    fn audio_may_run_ahead_of_the_next_keyframe() {
        // The PIC cuts at video keyframes: an audio frame later than the next keyframe may
        // still belong to the fragment before it.
        let mut a = Assembler::new(LIMITS, TimecodeType::Absolute, 0);
        let steps = run(
            &mut a,
            vec![
                tracks(1_000_000, 2),
                StreamEvent::ClusterStart { timecode: 1000 },
                block(1, 0, b"key"),
                block(2, 1005, b"audio"),
                StreamEvent::ClusterEnd,
                StreamEvent::ClusterStart { timecode: 2000 },
                block(1, 0, b"key"),
                StreamEvent::ClusterEnd,
            ],
        )
        .expect("both fragments");
        assert_eq!(steps.iter().filter(|s| matches!(s, Step::Complete(_))).count(), 2);
    }

    #[test]
    fn fragments_follow_each_other() {
        let mut a = Assembler::new(LIMITS, TimecodeType::Absolute, 0);
        let steps = run(
            &mut a,
            vec![
                tracks(1_000_000, 1),
                StreamEvent::ClusterStart { timecode: 0 },
                block(1, 0, b"a"),
                block(1, 33, b"b"),
                StreamEvent::ClusterEnd,
                StreamEvent::ClusterStart { timecode: 66 },
                block(1, 0, b"c"),
                StreamEvent::ClusterEnd,
            ],
        )
        .expect("two fragments");
        let done: Vec<_> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Complete(f) => Some((f.producer_ts_ms, f.duration_ms)),
                Step::Began { .. } => None,
            })
            .collect();
        assert_eq!(done, vec![(0, 66), (66, 0)]);
    }
}
