//! Cuts a WebRTC session's frames into keyframe-aligned MKV fragments (sans-IO).
//!
//! Feed it every depacketized frame ([`Fragmenter::push`]), call
//! [`Fragmenter::handle_timeout`] when [`Fragmenter::poll_timeout`] says so, and drain
//! [`Fragmenter::poll`] after each call. It emits, in order:
//! [`FragmentEvent::BeginFragment`] (timestamps and the `Tracks` header),
//! [`FragmentEvent::Chunk`]s (complete SimpleBlocks, written to the store as they come),
//! [`FragmentEvent::EndFragment`], and [`FragmentEvent::RequestKeyframe`] whenever the peer
//! should send a PLI.
//!
//! Rules:
//! - Nothing is stored before the first IDR; a keyframe is requested at start and then every
//!   `keyframe_request_interval` while waiting.
//! - A fragment is cut at an IDR once it lasts `target_duration` or more. When the sender's
//!   GOP is longer, keyframes are requested from the target on; at `max_duration` without
//!   an IDR the fragment ends and frames are dropped until the next IDR.
//! - A change of SPS/PPS starts a new fragment (at the IDR that carries them) with new
//!   codec private data; a change announced on a non-IDR frame is handled like loss.
//! - Loss (a non-contiguous video frame from the jitter buffer), an unparsable access unit
//!   or video time running backwards ends the fragment, requests a keyframe, and drops
//!   video until the next IDR. A non-contiguous IDR simply starts a new fragment.
//! - Audio and video are interleaved by session time (see [`crate::timing`], which
//!   keeps both tracks locked to their arrival even when the sender's clocks drift) in a
//!   small window, so audio lands in the fragment its timestamp belongs to, also around
//!   cuts. Audio gaps (DTX) are normal. Within a fragment each track's timestamps never go
//!   back and never precede the fragment start: audio up to 40 ms before the fragment or
//!   behind the previous frame is moved forward (1 ms after it), anything further dropped.
//! - Nothing is dropped silently: every frame pushed is stored, parameter sets only (kept as
//!   codec private data), or counted under a [`DropReason`] per track
//!   ([`FragmenterStats::unaccounted`] is 0 once finished).
//! - Consecutive fragments are contiguous in producer time unless the sender's clock
//!   disagrees by more than `continuity_tolerance`; a fragment never starts before the
//!   previous one ended.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::h264::{AccessUnit, AvcConfig, ParameterSets, write_sample};
use super::mkv::{self, TrackEntry};
use super::opus::{OpusHead, PacketInfo};
use super::timing::{self, MediaKind, SenderReport, TimingModel, TimingStats};

/// Default fragment length to aim for, in ms (2 s, what KVS producers use).
pub const DEFAULT_TARGET_DURATION_MS: u32 = 2_000;
/// Largest configurable target duration, in ms (10 s).
pub const MAX_TARGET_DURATION_MS: u32 = 10_000;
/// Default hard cap on a fragment's length when no IDR comes, in ms: 20 % above the 10 s
/// GOP of senders that ignore keyframe requests (the KVS C SDK's GStreamer sample), so a GOP
/// that a slow clock or jitter stretches a little past 10 s is not cut short.
pub const DEFAULT_MAX_DURATION_MS: u32 = 12_000;
/// Largest allowed hard cap: SimpleBlock offsets are signed 16-bit ms.
pub const MAX_DURATION_LIMIT_MS: u32 = 30_000;
/// Default spacing of repeated keyframe requests, in ms.
pub const DEFAULT_KEYFRAME_REQUEST_INTERVAL_MS: u32 = 1_000;
/// Default time a frame may wait for the other track to interleave, in ms.
pub const DEFAULT_INTERLEAVE_WINDOW_MS: u32 = 500;
/// Default largest producer-time gap or overlap still treated as contiguous, in ms.
pub const DEFAULT_CONTINUITY_TOLERANCE_MS: u32 = 50;
/// Default number of audio frames buffered into one chunk when no video frame comes.
pub const DEFAULT_AUDIO_CHUNK_FRAMES: usize = 10;
/// Largest backward step of audio time that is clamped rather than dropped, in µs.
const AUDIO_CLAMP_US: i64 = 40_000;
/// How much of the interleave window a sender-report lip sync may not use, µs: audio held
/// back by lip sync must still arrive within the window to be interleaved.
const LIP_SYNC_MARGIN_US: i64 = 100_000;
/// Frames a queue may hold regardless of timing (guards memory against absurd timestamps).
const MAX_QUEUED_FRAMES: usize = 1_000;
/// Assumed video frame duration until two frames have been seen, in µs (30 fps).
const DEFAULT_VIDEO_FRAME_US: i64 = 33_333;

/// Settings of a [`Fragmenter`].
#[derive(Debug, Clone, PartialEq)]
pub struct FragmenterConfig {
    /// Cut at the first IDR after this many ms (default 2 s, at most 10 s).
    pub target_duration_ms: u32,
    /// End a fragment without an IDR after this many ms (≥ target, ≤ 30 s).
    pub max_duration_ms: u32,
    /// Minimum spacing of repeated keyframe requests, in ms.
    pub keyframe_request_interval_ms: u32,
    /// How long a frame may wait for the other track before it is written, in ms.
    pub interleave_window_ms: u32,
    /// Largest producer-time jump between fragments still smoothed over, in ms.
    pub continuity_tolerance_ms: u32,
    /// Audio frames per chunk when there is no video to carry them.
    pub audio_chunk_frames: usize,
    /// The Opus track's header; `None` for a video-only session.
    pub audio: Option<OpusHead>,
    /// Sender clocks further than this from arrival time are ignored, in ms.
    pub max_producer_skew_ms: u32,
}

impl Default for FragmenterConfig {
    fn default() -> Self {
        Self {
            target_duration_ms: DEFAULT_TARGET_DURATION_MS,
            max_duration_ms: DEFAULT_MAX_DURATION_MS,
            keyframe_request_interval_ms: DEFAULT_KEYFRAME_REQUEST_INTERVAL_MS,
            interleave_window_ms: DEFAULT_INTERLEAVE_WINDOW_MS,
            continuity_tolerance_ms: DEFAULT_CONTINUITY_TOLERANCE_MS,
            audio_chunk_frames: DEFAULT_AUDIO_CHUNK_FRAMES,
            audio: Some(OpusHead::default()),
            max_producer_skew_ms: (timing::DEFAULT_MAX_PRODUCER_SKEW_US / 1_000) as u32,
        }
    }
}

/// A [`FragmenterConfig`] value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Target duration must be 1..=10 000 ms.
    #[error("target fragment duration must be 1..={MAX_TARGET_DURATION_MS} ms")]
    Target,
    /// Max duration must be ≥ target and ≤ 30 000 ms.
    #[error("max fragment duration must be >= target and <= {MAX_DURATION_LIMIT_MS} ms")]
    Max,
    /// Intervals, windows and chunk sizes must be positive.
    #[error("keyframe interval, interleave window and audio chunk size must be positive")]
    Zero,
}

impl FragmenterConfig {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_TARGET_DURATION_MS).contains(&self.target_duration_ms) {
            return Err(ConfigError::Target);
        }
        if self.max_duration_ms < self.target_duration_ms || self.max_duration_ms > MAX_DURATION_LIMIT_MS {
            return Err(ConfigError::Max);
        }
        if self.keyframe_request_interval_ms == 0 || self.interleave_window_ms == 0 || self.audio_chunk_frames == 0 {
            return Err(ConfigError::Zero);
        }
        Ok(())
    }
}

/// One depacketized frame, as the WebRTC stack hands it over
/// ([`crate::peer::ingest::media_frame`] builds it from str0m's `MediaData`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFrame {
    /// Video (an Annex-B H.264 access unit) or audio (one Opus packet).
    pub kind: MediaKind,
    /// RTP timestamp; only the low 32 bits are used (the model extends them itself).
    pub rtp_timestamp: u32,
    /// When the first packet of the frame arrived, µs since the Unix epoch (server clock).
    pub arrival_unix_us: i64,
    /// False when packets were lost right before this frame.
    pub contiguous: bool,
    /// The frame bytes.
    pub data: Vec<u8>,
    /// The latest RTCP sender report of this track, if any (repeats are fine).
    pub sender_report: Option<SenderReport>,
}

/// Why a keyframe is being requested (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyframeReason {
    /// Session start: nothing can be stored before the first IDR.
    Start,
    /// Still waiting for an IDR (repeated every interval).
    Waiting,
    /// Video packets were lost.
    Loss,
    /// The fragment reached its target (or maximum) duration without an IDR.
    LongGop,
    /// SPS/PPS changed on a non-IDR frame.
    ParameterSetChange,
    /// An access unit could not be parsed, or video time went backwards.
    BadVideo,
    /// The owner abandoned the open fragment ([`Fragmenter::restart_at_keyframe`]).
    Restart,
}

/// What the fragmenter asks its owner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FragmentEvent {
    /// A new fragment begins; every chunk until [`FragmentEvent::EndFragment`] belongs to it.
    BeginFragment {
        /// Producer timestamp of the fragment's first frame (the cluster timecode), ms
        /// since the Unix epoch.
        producer_ts_ms: u64,
        /// Server (arrival) timestamp of the first frame, ms since the Unix epoch.
        server_ts_ms: u64,
        /// The serialized MKV `Tracks` element (codec private data for both tracks).
        header: Bytes,
    },
    /// Complete SimpleBlocks to append to the open fragment.
    Chunk {
        /// One or more SimpleBlock elements (offsets relative to the fragment start).
        bytes: Vec<u8>,
        /// The fragment's duration if it ended after this chunk, ms.
        media_end_ms: u32,
        /// Frames in `bytes`, so an owner that cannot store the chunk can count them.
        frames: ChunkFrames,
    },
    /// The open fragment is complete.
    EndFragment {
        /// Its duration in ms (up to the next fragment's start when cut at an IDR).
        duration_ms: u32,
    },
    /// Send a PLI to the sender.
    RequestKeyframe {
        /// Why.
        reason: KeyframeReason,
    },
}

/// Frames carried by one [`FragmentEvent::Chunk`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkFrames {
    /// Video frames.
    pub video: u32,
    /// Audio frames.
    pub audio: u32,
}

impl ChunkFrames {
    /// Adds another chunk's frames.
    pub fn add(&mut self, other: ChunkFrames) {
        self.video = self.video.saturating_add(other.video);
        self.audio = self.audio.saturating_add(other.audio);
    }
}

/// Why a frame that arrived was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Video before the first IDR, or after loss until the next IDR.
    WaitingForKeyframe,
    /// Non-contiguous (lost-before) non-IDR video.
    Loss,
    /// Unparsable access units or Opus packets.
    Malformed,
    /// IDRs without any SPS/PPS to describe them.
    MissingParameterSets,
    /// Non-IDR frames carrying a parameter set change.
    ParameterSetChange,
    /// Audio with no open fragment (before the first IDR, or between loss and the next IDR).
    NoFragment,
    /// Audio older than the fragment it would belong to.
    Late,
    /// Frames whose time went backwards within a fragment.
    NonMonotonic,
    /// Frames beyond the fragment's maximum duration.
    TooLong,
    /// Audio in a session that negotiated no audio track.
    NoAudioTrack,
}

impl DropReason {
    /// Every reason, in a stable order (for metrics and logs).
    pub const ALL: [DropReason; 10] = [
        DropReason::WaitingForKeyframe,
        DropReason::Loss,
        DropReason::Malformed,
        DropReason::MissingParameterSets,
        DropReason::ParameterSetChange,
        DropReason::NoFragment,
        DropReason::Late,
        DropReason::NonMonotonic,
        DropReason::TooLong,
        DropReason::NoAudioTrack,
    ];

    /// The reason as a metric label value.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::WaitingForKeyframe => "waiting_for_keyframe",
            DropReason::Loss => "loss",
            DropReason::Malformed => "malformed",
            DropReason::MissingParameterSets => "missing_parameter_sets",
            DropReason::ParameterSetChange => "parameter_set_change",
            DropReason::NoFragment => "no_fragment",
            DropReason::Late => "late",
            DropReason::NonMonotonic => "non_monotonic",
            DropReason::TooLong => "too_long",
            DropReason::NoAudioTrack => "no_audio_track",
        }
    }
}

/// Frames dropped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// Video before the first IDR, or after loss until the next IDR.
    pub waiting_for_keyframe: u64,
    /// Non-contiguous (lost-before) non-IDR video.
    pub loss: u64,
    /// Unparsable access units or Opus packets.
    pub malformed: u64,
    /// IDRs without any SPS/PPS to describe them.
    pub missing_parameter_sets: u64,
    /// Non-IDR frames carrying a parameter set change.
    pub parameter_set_change: u64,
    /// Audio with no open fragment (before the first IDR, or between loss and the next IDR).
    pub no_fragment: u64,
    /// Audio older than the fragment it would belong to.
    pub late: u64,
    /// Frames whose time went backwards within a fragment.
    pub non_monotonic: u64,
    /// Frames beyond the fragment's maximum duration.
    pub too_long: u64,
    /// Audio in a session that negotiated no audio track.
    pub no_audio_track: u64,
}

impl DropCounts {
    /// The counter of `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::WaitingForKeyframe => self.waiting_for_keyframe,
            DropReason::Loss => self.loss,
            DropReason::Malformed => self.malformed,
            DropReason::MissingParameterSets => self.missing_parameter_sets,
            DropReason::ParameterSetChange => self.parameter_set_change,
            DropReason::NoFragment => self.no_fragment,
            DropReason::Late => self.late,
            DropReason::NonMonotonic => self.non_monotonic,
            DropReason::TooLong => self.too_long,
            DropReason::NoAudioTrack => self.no_audio_track,
        }
    }

    fn slot(&mut self, reason: DropReason) -> &mut u64 {
        match reason {
            DropReason::WaitingForKeyframe => &mut self.waiting_for_keyframe,
            DropReason::Loss => &mut self.loss,
            DropReason::Malformed => &mut self.malformed,
            DropReason::MissingParameterSets => &mut self.missing_parameter_sets,
            DropReason::ParameterSetChange => &mut self.parameter_set_change,
            DropReason::NoFragment => &mut self.no_fragment,
            DropReason::Late => &mut self.late,
            DropReason::NonMonotonic => &mut self.non_monotonic,
            DropReason::TooLong => &mut self.too_long,
            DropReason::NoAudioTrack => &mut self.no_audio_track,
        }
    }

    /// Both counts added, reason by reason.
    pub fn plus(&self, other: &DropCounts) -> DropCounts {
        let mut sum = *self;
        for reason in DropReason::ALL {
            *sum.slot(reason) += other.get(reason);
        }
        sum
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        DropReason::ALL.iter().map(|&r| self.get(r)).sum()
    }

    /// The non-zero counters as `reason=count` pairs (for the session-end log line).
    pub fn summary(&self) -> String {
        let parts: Vec<String> = DropReason::ALL
            .iter()
            .filter(|&&r| self.get(r) > 0)
            .map(|&r| format!("{}={}", r.label(), self.get(r)))
            .collect();
        if parts.is_empty() { "none".into() } else { parts.join(",") }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FragmenterStats {
    /// Video frames pushed.
    pub video_in: u64,
    /// Audio frames pushed.
    pub audio_in: u64,
    /// Video frames written to fragments.
    pub video_out: u64,
    /// Audio frames written to fragments.
    pub audio_out: u64,
    /// Chunk bytes emitted.
    pub bytes_out: u64,
    /// Fragments begun.
    pub fragments: u64,
    /// Keyframe requests emitted.
    pub keyframe_requests: u64,
    /// New codec private data (first one included).
    pub codec_changes: u64,
    /// Audio frames whose time was moved forward to keep audio monotonic.
    pub audio_clamped: u64,
    /// Fragments whose start was moved to the previous end because the sender's clock said
    /// they began earlier.
    pub clock_backwards: u64,
    /// Frames dropped, by reason (both tracks; the sum of the two below, filled in by
    /// [`Fragmenter::stats`]).
    pub dropped: DropCounts,
    /// Video frames dropped, by reason.
    pub video_dropped: DropCounts,
    /// Audio frames dropped, by reason.
    pub audio_dropped: DropCounts,
    /// Video access units with parameter sets only: kept as codec private data, not frames.
    pub video_parameter_sets_only: u64,
    /// Audio frames placed at the start of their fragment because they were up to 40 ms
    /// before it.
    pub audio_late_clamped: u64,
    /// The timing model's counters.
    pub timing: TimingStats,
}

impl FragmenterStats {
    /// Frames of `kind` that arrived but are neither stored, still queued, nor counted as
    /// dropped. Zero once the fragmenter finished; anything else is a bug.
    pub fn unaccounted(&self, kind: MediaKind) -> i64 {
        let (input, out, dropped) = match kind {
            MediaKind::Video => {
                (self.video_in, self.video_out + self.video_parameter_sets_only, self.video_dropped.total())
            }
            MediaKind::Audio => (self.audio_in, self.audio_out, self.audio_dropped.total()),
        };
        input as i64 - out as i64 - dropped as i64
    }
}

/// A video codec configuration and the fragment header built from it.
#[derive(Debug)]
struct Codec {
    header: Bytes,
}

#[derive(Debug)]
enum Item {
    Video {
        idr: bool,
        codec: Option<Arc<Codec>>,
        discontinuity: bool,
        sample: Vec<u8>,
    },
    Audio {
        packet: Vec<u8>,
        duration_us: i64,
    },
    /// Video was lost or broken here: the open fragment ends.
    Break,
}

#[derive(Debug)]
struct Queued {
    session_us: i64,
    arrival_us: i64,
    item: Item,
}

/// The fragment being written.
#[derive(Debug)]
struct Open {
    start_session_us: i64,
    start_producer_us: i64,
    start_ms: i64,
    codec: Arc<Codec>,
    /// Blocks not yet handed out as a chunk.
    pending: Vec<u8>,
    pending_audio: usize,
    pending_video: usize,
    last_video_rel_us: Option<i64>,
    last_audio_rel_us: Option<i64>,
    /// End of the latest frame written, relative to the start, µs.
    media_end_us: i64,
}

/// The fragmenting state machine of one session. See the module docs for its rules.
#[derive(Debug)]
pub struct Fragmenter {
    cfg: FragmenterConfig,
    timing: TimingModel,
    params: ParameterSets,
    /// Parameter sets changed since the last IDR was queued.
    params_dirty: bool,
    codec: Option<Arc<Codec>>,
    /// Input side: drop non-IDR video until an IDR arrives.
    gate_closed: bool,
    /// An IDR is wanted, and why: keep asking every interval.
    want_keyframe: Option<KeyframeReason>,
    last_request_us: Option<i64>,
    video_q: VecDeque<Queued>,
    audio_q: VecDeque<Queued>,
    /// Audio that arrived before the first video packet (media ticks, arrival, packet).
    pre_origin: VecDeque<(u64, i64, Vec<u8>)>,
    open: Option<Open>,
    /// Producer time where the previous fragment ended, µs.
    prev_end_producer_us: Option<i64>,
    video_frame_us: i64,
    now_us: i64,
    events: VecDeque<FragmentEvent>,
    stats: FragmenterStats,
}

impl Fragmenter {
    /// A fragmenter for a session starting at `now_unix_us`; its first event asks for a keyframe.
    pub fn new(cfg: FragmenterConfig, now_unix_us: i64) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let mut f = Self {
            timing: TimingModel::new(i64::from(cfg.max_producer_skew_ms) * 1_000)
                .with_max_lip_sync(i64::from(cfg.interleave_window_ms) * 1_000 - LIP_SYNC_MARGIN_US),
            cfg,
            params: ParameterSets::default(),
            params_dirty: false,
            codec: None,
            gate_closed: true,
            want_keyframe: None,
            last_request_us: None,
            video_q: VecDeque::new(),
            audio_q: VecDeque::new(),
            pre_origin: VecDeque::new(),
            open: None,
            prev_end_producer_us: None,
            video_frame_us: DEFAULT_VIDEO_FRAME_US,
            now_us: now_unix_us,
            events: VecDeque::new(),
            stats: FragmenterStats::default(),
        };
        f.request_keyframe(KeyframeReason::Start, true);
        Ok(f)
    }

    /// Counters so far.
    pub fn stats(&self) -> FragmenterStats {
        let dropped = self.stats.video_dropped.plus(&self.stats.audio_dropped);
        FragmenterStats { timing: self.timing.stats(), dropped, ..self.stats }
    }

    /// Continues a stream written by an earlier session: the first fragment will not start
    /// before `producer_end_ms` (KVS requires fragment timestamps to increase), and starts
    /// exactly there if the sender's clock puts it within the continuity tolerance.
    pub fn set_previous_end(&mut self, producer_end_ms: u64) {
        let end_us = i64::try_from(producer_end_ms).unwrap_or(i64::MAX / 1_000).saturating_mul(1_000);
        self.prev_end_producer_us = Some(self.prev_end_producer_us.map_or(end_us, |p| p.max(end_us)));
    }

    /// True while a fragment is open.
    pub fn in_fragment(&self) -> bool {
        self.open.is_some()
    }

    /// The next event, if any.
    pub fn poll(&mut self) -> Option<FragmentEvent> {
        self.events.pop_front()
    }

    /// Feeds one frame.
    pub fn push(&mut self, frame: MediaFrame) {
        self.now_us = self.now_us.max(frame.arrival_unix_us);
        match frame.kind {
            MediaKind::Video => self.stats.video_in += 1,
            MediaKind::Audio => self.stats.audio_in += 1,
        }
        if frame.kind == MediaKind::Audio && self.cfg.audio.is_none() {
            return self.drop_frame(MediaKind::Audio, DropReason::NoAudioTrack);
        }
        if let Some(sr) = frame.sender_report {
            self.timing.sender_report(frame.kind, sr);
        }
        let ticks = self.timing.observe_ticks(frame.kind, frame.rtp_timestamp, frame.arrival_unix_us);
        match (frame.kind, self.timing.session_us(frame.kind, ticks)) {
            (MediaKind::Video, Some(session_us)) => {
                // The session timeline exists now: place audio that came before it.
                for (ticks, arrival_us, packet) in std::mem::take(&mut self.pre_origin) {
                    match self.timing.session_us(MediaKind::Audio, ticks) {
                        Some(session_us) => self.push_audio(packet, session_us, arrival_us),
                        None => self.drop_frame(MediaKind::Audio, DropReason::NoFragment),
                    }
                }
                self.push_video(frame, session_us);
            }
            (MediaKind::Audio, Some(session_us)) => self.push_audio(frame.data, session_us, frame.arrival_unix_us),
            (_, None) => {
                // Audio before the first video packet: keep it until the timeline starts.
                if self.pre_origin.len() >= MAX_QUEUED_FRAMES {
                    self.pre_origin.pop_front();
                    self.drop_frame(MediaKind::Audio, DropReason::NoFragment);
                }
                self.pre_origin.push_back((ticks, frame.arrival_unix_us, frame.data));
            }
        }
        self.pump(false);
        self.keep_asking();
    }

    /// Advances time without a frame: releases frames that waited long enough and repeats
    /// keyframe requests.
    pub fn handle_timeout(&mut self, now_unix_us: i64) {
        self.now_us = self.now_us.max(now_unix_us);
        self.pump(false);
        self.keep_asking();
    }

    /// When [`Fragmenter::handle_timeout`] should next be called (µs since the Unix epoch).
    pub fn poll_timeout(&self) -> Option<i64> {
        let window = i64::from(self.cfg.interleave_window_ms) * 1_000;
        let release =
            [self.video_q.front(), self.audio_q.front()].into_iter().flatten().map(|q| q.arrival_us + window).min();
        let ask = self.want_keyframe.and(self.last_request_us).map(|t| t + self.interval_us());
        release.into_iter().chain(ask).min()
    }

    /// Abandons the open fragment: it ends after the video already queued, video is then
    /// dropped until the next IDR (which starts a new fragment, whatever the target), and a
    /// keyframe is requested. For an owner that could not keep the fragment's events, e.g.
    /// because its store queue overflowed.
    pub fn restart_at_keyframe(&mut self) {
        match self.video_q.back().map(|q| (q.session_us, q.arrival_us)) {
            Some((session_us, arrival_us)) => self.video_break(session_us, arrival_us, KeyframeReason::Restart),
            None => {
                self.gate_closed = true;
                self.end_fragment(None);
                self.request_keyframe(KeyframeReason::Restart, true);
            }
        }
    }

    /// Ends the session: writes everything queued and closes the open fragment.
    pub fn finish(&mut self, now_unix_us: i64) {
        self.now_us = self.now_us.max(now_unix_us);
        self.pump(true);
        self.end_fragment(None);
        for _ in std::mem::take(&mut self.pre_origin) {
            self.drop_frame(MediaKind::Audio, DropReason::NoFragment);
        }
    }

    /// Counts one frame of `kind` that will not be stored.
    fn drop_frame(&mut self, kind: MediaKind, reason: DropReason) {
        match kind {
            MediaKind::Video => *self.stats.video_dropped.slot(reason) += 1,
            MediaKind::Audio => *self.stats.audio_dropped.slot(reason) += 1,
        }
    }

    fn interval_us(&self) -> i64 {
        i64::from(self.cfg.keyframe_request_interval_ms) * 1_000
    }

    fn request_keyframe(&mut self, reason: KeyframeReason, force: bool) {
        if !force && self.last_request_us.is_some_and(|t| self.now_us - t < self.interval_us()) {
            return;
        }
        self.want_keyframe = Some(reason);
        self.last_request_us = Some(self.now_us);
        self.stats.keyframe_requests += 1;
        self.events.push_back(FragmentEvent::RequestKeyframe { reason });
    }

    fn keep_asking(&mut self) {
        if let Some(reason) = self.want_keyframe {
            let repeat = if reason == KeyframeReason::LongGop { reason } else { KeyframeReason::Waiting };
            self.request_keyframe(repeat, false);
        }
    }

    /// Ends the open fragment at this point of the video stream and waits for an IDR.
    fn video_break(&mut self, session_us: i64, arrival_us: i64, reason: KeyframeReason) {
        if !self.gate_closed {
            self.gate_closed = true;
            self.enqueue_video(Queued { session_us, arrival_us, item: Item::Break });
        }
        self.request_keyframe(reason, true);
    }

    fn enqueue_video(&mut self, q: Queued) {
        self.video_q.push_back(q);
    }

    fn push_video(&mut self, frame: MediaFrame, session_us: i64) {
        let arrival_us = frame.arrival_unix_us;
        let parsed = AccessUnit::parse(&frame.data).and_then(|au| {
            let changed = self.params.update(&au)?;
            let mut sample = Vec::with_capacity(au.sample_len());
            write_sample(&au, &mut sample)?;
            Ok((au.is_idr(), au.has_slices(), changed, sample))
        });
        let (idr, has_slices, changed, sample) = match parsed {
            Ok(p) => p,
            Err(_) => {
                self.drop_frame(MediaKind::Video, DropReason::Malformed);
                return self.video_break(session_us, arrival_us, KeyframeReason::BadVideo);
            }
        };
        self.params_dirty |= changed;
        if !has_slices {
            self.stats.video_parameter_sets_only += 1;
            return; // recorded above, stored as codec private data
        }
        if idr {
            if self.params_dirty || self.codec.is_none() {
                match self.params.config() {
                    Ok(cfg) => {
                        self.codec = Some(Arc::new(self.build_codec(&cfg)));
                        self.stats.codec_changes += 1;
                        self.params_dirty = false;
                    }
                    Err(_) => {
                        self.drop_frame(MediaKind::Video, DropReason::MissingParameterSets);
                        return self.video_break(session_us, arrival_us, KeyframeReason::BadVideo);
                    }
                }
            }
            self.gate_closed = false;
            self.want_keyframe = None;
            let item = Item::Video { idr, codec: self.codec.clone(), discontinuity: !frame.contiguous, sample };
            self.enqueue_video(Queued { session_us, arrival_us, item });
            return;
        }
        if !frame.contiguous {
            self.drop_frame(MediaKind::Video, DropReason::Loss);
            return self.video_break(session_us, arrival_us, KeyframeReason::Loss);
        }
        if self.params_dirty {
            self.drop_frame(MediaKind::Video, DropReason::ParameterSetChange);
            return self.video_break(session_us, arrival_us, KeyframeReason::ParameterSetChange);
        }
        if self.gate_closed {
            return self.drop_frame(MediaKind::Video, DropReason::WaitingForKeyframe);
        }
        let item = Item::Video { idr: false, codec: None, discontinuity: false, sample };
        self.enqueue_video(Queued { session_us, arrival_us, item });
    }

    fn push_audio(&mut self, packet: Vec<u8>, session_us: i64, arrival_us: i64) {
        if self.cfg.audio.is_none() {
            return;
        }
        match PacketInfo::parse(&packet) {
            Ok(info) => {
                let duration_us = info.duration_us() as i64;
                let item = Item::Audio { packet, duration_us };
                self.audio_q.push_back(Queued { session_us, arrival_us, item });
            }
            Err(_) => self.drop_frame(MediaKind::Audio, DropReason::Malformed),
        }
    }

    fn build_codec(&self, avc: &AvcConfig) -> Codec {
        let mut tracks = vec![TrackEntry::h264(mkv::VIDEO_TRACK, avc)];
        if let Some(head) = &self.cfg.audio {
            tracks.push(TrackEntry::opus(mkv::AUDIO_TRACK, head));
        }
        Codec { header: Bytes::from(mkv::write_tracks(&tracks)) }
    }

    /// Writes queued frames in session-time order, as far as interleaving allows.
    fn pump(&mut self, flush: bool) {
        let window = i64::from(self.cfg.interleave_window_ms) * 1_000;
        let stale = self.now_us - window;
        let ready = |q: &VecDeque<Queued>, other_absent: bool| -> bool {
            match (q.front(), q.back()) {
                (Some(front), Some(back)) => {
                    flush
                        || other_absent
                        || back.session_us - front.session_us >= window
                        || front.arrival_us <= stale
                        || q.len() > MAX_QUEUED_FRAMES
                }
                _ => false,
            }
        };
        loop {
            let take_video = match (self.video_q.front(), self.audio_q.front()) {
                (Some(v), Some(a)) => v.session_us <= a.session_us,
                (Some(_), None) => {
                    if !ready(&self.video_q, self.cfg.audio.is_none()) {
                        break;
                    }
                    true
                }
                (None, Some(_)) => {
                    if !ready(&self.audio_q, false) {
                        break;
                    }
                    false
                }
                (None, None) => break,
            };
            let q = if take_video { self.video_q.pop_front() } else { self.audio_q.pop_front() };
            if let Some(q) = q {
                self.release(q);
            }
        }
    }

    fn release(&mut self, q: Queued) {
        match q.item {
            Item::Break => self.end_fragment(None),
            Item::Video { idr, codec, discontinuity, sample } => {
                self.release_video(q.session_us, q.arrival_us, idr, codec, discontinuity, sample)
            }
            Item::Audio { packet, duration_us } => self.release_audio(q.session_us, duration_us, packet),
        }
    }

    fn release_video(
        &mut self,
        session_us: i64,
        arrival_us: i64,
        idr: bool,
        codec: Option<Arc<Codec>>,
        discontinuity: bool,
        sample: Vec<u8>,
    ) {
        let target_us = i64::from(self.cfg.target_duration_ms) * 1_000;
        let max_us = i64::from(self.cfg.max_duration_ms) * 1_000;
        if let Some(open) = &self.open {
            let rel = session_us - open.start_session_us;
            let backwards = open.last_video_rel_us.is_some_and(|last| rel < last);
            let new_codec = codec.as_ref().is_some_and(|c| !Arc::ptr_eq(c, &open.codec));
            if idr && (discontinuity || new_codec || backwards || rel >= target_us) {
                // The fragment lasts up to this IDR unless the video paused before it: then
                // it ends with its last frame, never stretched across the pause.
                let tolerance_us = i64::from(self.cfg.continuity_tolerance_ms) * 1_000;
                let paused = rel - open.media_end_us > tolerance_us;
                self.end_fragment((!backwards && !discontinuity && !paused).then_some(rel));
            } else if backwards {
                self.drop_frame(MediaKind::Video, DropReason::NonMonotonic);
                self.end_fragment(None);
                return self.request_keyframe(KeyframeReason::BadVideo, true);
            } else if rel >= max_us {
                self.drop_frame(MediaKind::Video, DropReason::TooLong);
                self.end_fragment(None);
                return self.request_keyframe(KeyframeReason::LongGop, true);
            } else if rel >= target_us && !idr {
                self.request_keyframe(KeyframeReason::LongGop, false);
            }
        }
        if self.open.is_none() {
            match (idr, codec) {
                (true, Some(codec)) => self.begin_fragment(session_us, arrival_us, codec),
                _ => return self.drop_frame(MediaKind::Video, DropReason::WaitingForKeyframe),
            }
        }
        let frame_us = self.video_frame_us;
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let rel = session_us - open.start_session_us;
        if let Some(last) = open.last_video_rel_us {
            let delta = rel - last;
            if (1_000..=500_000).contains(&delta) {
                self.video_frame_us = delta;
            }
        }
        open.last_video_rel_us = Some(rel);
        open.media_end_us = open.media_end_us.max(rel + frame_us);
        let rel_ms = Self::block_offset(open, rel);
        mkv::write_simple_block(&mut open.pending, mkv::VIDEO_TRACK, rel_ms, idr, &sample);
        open.pending_video += 1;
        self.stats.video_out += 1;
        self.flush_chunk();
    }

    fn release_audio(&mut self, session_us: i64, duration_us: i64, packet: Vec<u8>) {
        let max_us = i64::from(self.cfg.max_duration_ms) * 1_000;
        let chunk_frames = self.cfg.audio_chunk_frames;
        let Some((start_session_us, last_audio)) =
            self.open.as_ref().map(|o| (o.start_session_us, o.last_audio_rel_us))
        else {
            return self.drop_frame(MediaKind::Audio, DropReason::NoFragment);
        };
        let mut rel = session_us - start_session_us;
        if rel < -AUDIO_CLAMP_US {
            return self.drop_frame(MediaKind::Audio, DropReason::Late);
        }
        if rel >= max_us {
            return self.drop_frame(MediaKind::Audio, DropReason::TooLong);
        }
        if rel < 0 {
            // Just before the cut: the start of this fragment is the nearest place left.
            rel = 0;
            self.stats.audio_late_clamped += 1;
        }
        // Audio blocks must have strictly increasing timestamps (players reject equal DTS):
        // a small step back (or a repeat) is moved to 1 ms after the previous frame.
        if let Some(last) = last_audio.filter(|&last| rel < last + 1_000) {
            if last - rel > AUDIO_CLAMP_US {
                return self.drop_frame(MediaKind::Audio, DropReason::NonMonotonic);
            }
            rel = last + 1_000;
            self.stats.audio_clamped += 1;
        }
        let Some(open) = self.open.as_mut() else { return };
        open.last_audio_rel_us = Some(rel);
        open.media_end_us = open.media_end_us.max(rel + duration_us);
        let rel_ms = Self::block_offset(open, rel);
        mkv::write_simple_block(&mut open.pending, mkv::AUDIO_TRACK, rel_ms, true, &packet);
        open.pending_audio += 1;
        self.stats.audio_out += 1;
        if open.pending_audio >= chunk_frames {
            self.flush_chunk();
        }
    }

    /// The SimpleBlock offset (ms) of a frame `rel_us` after the fragment start.
    fn block_offset(open: &Open, rel_us: i64) -> i16 {
        let abs_ms = timing::us_to_ms(open.start_producer_us + rel_us);
        // rel_us < max duration ≤ 30 s, so this fits; clamp anyway rather than wrap.
        (abs_ms - open.start_ms).clamp(0, i64::from(i16::MAX)) as i16
    }

    fn begin_fragment(&mut self, session_us: i64, arrival_us: i64, codec: Arc<Codec>) {
        let tolerance = i64::from(self.cfg.continuity_tolerance_ms) * 1_000;
        let mapped = self.timing.producer_unix_us(session_us).unwrap_or(arrival_us);
        let start_producer_us = match self.prev_end_producer_us {
            Some(end) if mapped < end - tolerance => {
                self.stats.clock_backwards += 1;
                end
            }
            Some(end) if mapped - end <= tolerance => end,
            _ => mapped,
        }
        .max(0);
        let start_ms = timing::us_to_ms(start_producer_us);
        self.events.push_back(FragmentEvent::BeginFragment {
            producer_ts_ms: start_ms as u64,
            server_ts_ms: timing::us_to_ms(arrival_us).max(0) as u64,
            header: codec.header.clone(),
        });
        self.stats.fragments += 1;
        self.open = Some(Open {
            start_session_us: session_us,
            start_producer_us,
            start_ms,
            codec,
            pending: Vec::new(),
            pending_audio: 0,
            pending_video: 0,
            last_video_rel_us: None,
            last_audio_rel_us: None,
            media_end_us: 0,
        });
    }

    /// Ms from the fragment start to `rel_us`. Exact ends (the next fragment's start) use
    /// the same floor as fragment starts; estimated ends round to the nearest ms.
    fn media_end_ms(open: &Open, rel_us: i64, exact: bool) -> u32 {
        let abs_us = open.start_producer_us + rel_us + if exact { 0 } else { 500 };
        let end_ms = timing::us_to_ms(abs_us) - open.start_ms;
        end_ms.clamp(0, i64::from(u32::MAX)) as u32
    }

    /// Hands out the blocks written since the last chunk.
    fn flush_chunk(&mut self) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        if open.pending.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut open.pending);
        let frames = ChunkFrames {
            video: u32::try_from(std::mem::take(&mut open.pending_video)).unwrap_or(u32::MAX),
            audio: u32::try_from(std::mem::take(&mut open.pending_audio)).unwrap_or(u32::MAX),
        };
        self.stats.bytes_out += bytes.len() as u64;
        let media_end_ms = Self::media_end_ms(open, open.media_end_us, false);
        self.events.push_back(FragmentEvent::Chunk { bytes, media_end_ms, frames });
    }

    /// Closes the open fragment; `end_rel_us` is its exact end (the next IDR) when known.
    fn end_fragment(&mut self, end_rel_us: Option<i64>) {
        self.flush_chunk();
        let Some(open) = self.open.take() else { return };
        let end = end_rel_us.unwrap_or(open.media_end_us).max(0);
        self.prev_end_producer_us = Some(open.start_producer_us + end);
        let duration_ms = Self::media_end_ms(&open, end, end_rel_us.is_some());
        self.events.push_back(FragmentEvent::EndFragment { duration_ms });
    }
}

#[cfg(test)]
mod tests;
