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
//! - Audio and video are interleaved by session time (see [`crate::media::timing`]) in a
//!   small window, so audio lands in the fragment its timestamp belongs to, also around
//!   cuts. Audio gaps (DTX) are normal. Within a fragment each track's timestamps never go
//!   back and never precede the fragment start: small audio steps back are clamped, the
//!   rest dropped, all counted in [`FragmenterStats`].
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

/// Default fragment length to aim for, in ms (issue 5: 2 s).
pub const DEFAULT_TARGET_DURATION_MS: u32 = 2_000;
/// Largest configurable target duration, in ms (issue 5: 10 s).
pub const MAX_TARGET_DURATION_MS: u32 = 10_000;
/// Default hard cap on a fragment's length when no IDR comes, in ms.
pub const DEFAULT_MAX_DURATION_MS: u32 = 10_000;
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
    /// Frames dropped, by reason.
    pub dropped: DropCounts,
    /// The timing model's counters.
    pub timing: TimingStats,
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
            timing: TimingModel::new(i64::from(cfg.max_producer_skew_ms) * 1_000),
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
        FragmenterStats { timing: self.timing.stats(), ..self.stats }
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
        if frame.kind == MediaKind::Audio && self.cfg.audio.is_none() {
            return;
        }
        if let Some(sr) = frame.sender_report {
            self.timing.sender_report(frame.kind, sr);
        }
        match frame.kind {
            MediaKind::Video => self.stats.video_in += 1,
            MediaKind::Audio => self.stats.audio_in += 1,
        }
        let ticks = self.timing.observe_ticks(frame.kind, frame.rtp_timestamp, frame.arrival_unix_us);
        match (frame.kind, self.timing.session_us(frame.kind, ticks)) {
            (MediaKind::Video, Some(session_us)) => {
                // The session timeline exists now: place audio that came before it.
                for (ticks, arrival_us, packet) in std::mem::take(&mut self.pre_origin) {
                    if let Some(session_us) = self.timing.session_us(MediaKind::Audio, ticks) {
                        self.push_audio(packet, session_us, arrival_us);
                    }
                }
                self.push_video(frame, session_us);
            }
            (MediaKind::Audio, Some(session_us)) => self.push_audio(frame.data, session_us, frame.arrival_unix_us),
            (_, None) => {
                // Audio before the first video packet: keep it until the timeline starts.
                if self.pre_origin.len() >= MAX_QUEUED_FRAMES {
                    self.pre_origin.pop_front();
                    self.stats.dropped.no_fragment += 1;
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
                self.stats.dropped.malformed += 1;
                return self.video_break(session_us, arrival_us, KeyframeReason::BadVideo);
            }
        };
        self.params_dirty |= changed;
        if !has_slices {
            return; // parameter sets only: recorded above
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
                        self.stats.dropped.missing_parameter_sets += 1;
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
            self.stats.dropped.loss += 1;
            return self.video_break(session_us, arrival_us, KeyframeReason::Loss);
        }
        if self.params_dirty {
            self.stats.dropped.parameter_set_change += 1;
            return self.video_break(session_us, arrival_us, KeyframeReason::ParameterSetChange);
        }
        if self.gate_closed {
            self.stats.dropped.waiting_for_keyframe += 1;
            return;
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
            Err(_) => self.stats.dropped.malformed += 1,
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
                self.stats.dropped.non_monotonic += 1;
                self.end_fragment(None);
                return self.request_keyframe(KeyframeReason::BadVideo, true);
            } else if rel >= max_us {
                self.stats.dropped.too_long += 1;
                self.end_fragment(None);
                return self.request_keyframe(KeyframeReason::LongGop, true);
            } else if rel >= target_us && !idr {
                self.request_keyframe(KeyframeReason::LongGop, false);
            }
        }
        if self.open.is_none() {
            match (idr, codec) {
                (true, Some(codec)) => self.begin_fragment(session_us, arrival_us, codec),
                _ => {
                    self.stats.dropped.waiting_for_keyframe += 1;
                    return;
                }
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
        self.stats.video_out += 1;
        self.flush_chunk();
    }

    fn release_audio(&mut self, session_us: i64, duration_us: i64, packet: Vec<u8>) {
        let max_us = i64::from(self.cfg.max_duration_ms) * 1_000;
        let chunk_frames = self.cfg.audio_chunk_frames;
        let Some(open) = self.open.as_mut() else {
            self.stats.dropped.no_fragment += 1;
            return;
        };
        let mut rel = session_us - open.start_session_us;
        if rel < 0 {
            self.stats.dropped.late += 1;
            return;
        }
        if rel >= max_us {
            self.stats.dropped.too_long += 1;
            return;
        }
        // Audio blocks must have strictly increasing timestamps (players reject equal DTS):
        // a small step back (or a repeat) is moved to 1 ms after the previous frame.
        if let Some(last) = open.last_audio_rel_us.filter(|&last| rel < last + 1_000) {
            if last - rel > AUDIO_CLAMP_US {
                self.stats.dropped.non_monotonic += 1;
                return;
            }
            rel = last + 1_000;
            self.stats.audio_clamped += 1;
        }
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
        open.pending_audio = 0;
        self.stats.bytes_out += bytes.len() as u64;
        let media_end_ms = Self::media_end_ms(open, open.media_end_us, false);
        self.events.push_back(FragmentEvent::Chunk { bytes, media_end_ms });
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
