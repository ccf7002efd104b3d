//! One publisher's peer as a synchronous state machine: str0m, its socket, and the media
//! schedule. [`PeerCore::step`] does everything that is due (reads nothing itself: the
//! engine hands it readable sockets and fired timers) and says when it wants to run next;
//! an engine thread drives many of them (see [`super::engine`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};

use super::udp::PeerSocket;
use super::{
    FrameSent, PublisherConfig, PublisherError, PublisherStats, RunEnd, SenderProfile, StatsMark, pacing, profile,
    source, unix_us,
};

/// Longest idle wait (bounds timer drift; media deadlines come sooner).
const MAX_IDLE_WAIT: Duration = Duration::from_millis(100);

/// What [`PeerCore::step`] decided.
#[derive(Debug)]
pub enum Step {
    /// Run again at this instant (or when the socket is readable, or on a command).
    Wait(Instant),
    /// The run is over.
    Done(Result<RunEnd, PublisherError>),
}

/// A str0m peer with its socket, settings, counters and (while running) media schedule.
pub struct PeerCore {
    /// The str0m peer.
    pub rtc: Rtc,
    /// Its UDP socket.
    pub socket: PeerSocket,
    /// The socket's address (str0m's receive destination).
    pub local: SocketAddr,
    /// Settings.
    pub cfg: PublisherConfig,
    /// Shared counters.
    pub stats: Arc<PublisherStats>,
    /// (video, audio) mids this peer offered (str0m reports MediaAdded only for the remote's).
    pub offered: Option<(Mid, Mid)>,
    /// The schedule of the run in progress.
    media: MediaClock,
    /// Connect deadline of the run in progress.
    connect_deadline: Instant,
    /// End of the run in progress.
    until: Instant,
    /// A timeout input is owed to str0m (its timer fired).
    poke: bool,
    /// [`super::Signal::Stop`] arrived.
    stop: bool,
}

impl PeerCore {
    /// A peer that has not run yet.
    pub fn new(rtc: Rtc, socket: PeerSocket, cfg: PublisherConfig, stats: Arc<PublisherStats>) -> Self {
        let local = socket.local_addr();
        let now = Instant::now();
        Self {
            rtc,
            socket,
            local,
            cfg,
            stats,
            offered: None,
            media: MediaClock::default(),
            connect_deadline: now,
            until: now,
            poke: false,
            stop: false,
        }
    }

    /// Prepares a run until `until` (connect deadline from now).
    pub fn start(&mut self, until: Instant) {
        // Sequence numbers start at random points below 2^15 (ROC 0, and far from a wrap).
        let (video_seq_no, audio_seq_no) = (random_u16() as u64 / 2, random_u16() as u64 / 2);
        self.media = MediaClock { profile: self.cfg.profile, video_seq_no, audio_seq_no, ..Default::default() };
        if let Some((video, audio)) = self.offered {
            self.media.video = Some((video, None));
            self.media.audio = Some((audio, None));
        }
        self.connect_deadline = Instant::now() + self.cfg.connect_timeout;
        self.until = until;
        self.poke = true;
        self.stop = false;
    }

    /// When the run in progress connected (ICE + DTLS), if it has.
    pub fn connected_at(&self) -> Option<Instant> {
        self.media.t0
    }

    /// Ends the run at its next step ([`RunEnd::Stopped`]).
    pub fn stop(&mut self) {
        self.stop = true;
    }

    /// Notes that the instant of the last [`Step::Wait`] has come.
    pub fn fire(&mut self) {
        self.poke = true;
    }

    /// Adds a trickled remote candidate (`candidate:…` or `a=candidate:…`); bad ones are ignored.
    pub fn add_remote_candidate(&mut self, candidate: &str) {
        let c = candidate.trim().trim_start_matches("a=");
        if let Ok(c) = str0m::Candidate::from_sdp_string(c) {
            self.rtc.add_remote_candidate(c);
        }
    }

    /// Does whatever is due: ends the run, writes the media that fell due, feeds str0m its
    /// timeout, sends its output. Returns when it next wants to run.
    pub fn step(&mut self) -> Step {
        match self.step_inner() {
            Ok(step) => step,
            Err(e) => Step::Done(Err(e)),
        }
    }

    fn step_inner(&mut self) -> Result<Step, PublisherError> {
        loop {
            let now = Instant::now();
            if self.stop {
                return Ok(Step::Done(Ok(RunEnd::Stopped)));
            }
            if now >= self.until {
                return Ok(Step::Done(Ok(RunEnd::Deadline)));
            }
            if !self.rtc.is_alive() {
                return Err(match self.media.t0 {
                    Some(t0) => PublisherError::Disconnected(now - t0),
                    None => PublisherError::ConnectTimeout(self.cfg.connect_timeout),
                });
            }
            if let Some(t0) = self.media.t0 {
                if self.media.disconnected {
                    return Err(PublisherError::Disconnected(now - t0));
                }
                // Everything due by now, in schedule order, as RTP packets on the send streams;
                // the drain below sends them in one batch (str0m's direct API marks the peer
                // for polling, so no timeout input is needed for them).
                let mut media = std::mem::take(&mut self.media);
                let wrote = self.write_all_due(&mut media, t0, now);
                self.media = media;
                wrote?;
            } else if now >= self.connect_deadline {
                return Err(PublisherError::ConnectTimeout(self.cfg.connect_timeout));
            }
            if std::mem::take(&mut self.poke) {
                self.rtc.handle_input(Input::Timeout(now))?;
            }
            let rtc_timeout = self.drain()?;
            self.flush()?;
            let now = Instant::now();
            let mut wake = rtc_timeout.min(self.until).min(now + MAX_IDLE_WAIT);
            match self.media.t0 {
                Some(t0) if self.cfg.send_media => wake = wake.min(self.media.next_due(t0)),
                Some(_) => {}
                None => wake = wake.min(self.connect_deadline),
            }
            if wake > now {
                if self.media.t0.is_some() {
                    // Connected: wake with every other publisher on the shared grid (what is
                    // due already, such as the first frame at connection, goes at once).
                    wake = pacing::tick_at_or_after(wake).min(self.until);
                }
                return Ok(Step::Wait(wake));
            }
            self.poke = true;
        }
    }

    /// Writes every frame and packet due by `now`.
    fn write_all_due(&mut self, media: &mut MediaClock, t0: Instant, now: Instant) -> Result<(), PublisherError> {
        while self.cfg.send_media && self.write_due(media, t0, now)? {}
        Ok(())
    }

    /// Hands every datagram waiting on the socket to str0m (all of them: the engine's
    /// poller reports readiness once per arrival, not while data is left).
    pub fn receive(&mut self, buf: &mut [u8]) {
        while let Ok((n, source)) = self.socket.try_recv(buf) {
            self.stats.packets_received.fetch_add(1, Ordering::Relaxed);
            if let Ok(contents) = buf[..n].try_into() {
                let input = Input::Receive(
                    Instant::now(),
                    Receive { proto: Protocol::Udp, source, destination: self.local, contents },
                );
                // A datagram str0m rejects (stray, late) is not fatal.
                let _ = self.rtc.handle_input(input);
            }
        }
    }

    /// Polls str0m until it wants a timeout: queues transmits on the socket, handles events.
    fn drain(&mut self) -> Result<Instant, PublisherError> {
        let media = &mut self.media;
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => self.socket.queue(t.destination, &t.contents),
                Output::Event(ev) => match ev {
                    Event::Connected if media.t0.is_none() => {
                        media.t0 = Some(Instant::now());
                        StatsMark::connected(&self.stats);
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) if media.t0.is_some() => {
                        media.disconnected = true;
                    }
                    Event::MediaAdded(m) => match m.kind {
                        MediaKind::Video => media.video = Some((m.mid, None)),
                        MediaKind::Audio => media.audio = Some((m.mid, None)),
                    },
                    Event::KeyframeRequest(_) => {
                        self.stats.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                },
            }
        }
    }

    /// Sends what [`PeerCore::drain`] queued (what the socket buffer has no room for stays
    /// queued for the next step) and counts it.
    fn flush(&mut self) -> Result<(), PublisherError> {
        let sent = self.socket.flush()?;
        self.stats.packets_sent.fetch_add(sent.packets, Ordering::Relaxed);
        self.stats.bytes_sent.fetch_add(sent.bytes, Ordering::Relaxed);
        if sent.errors > 0 {
            self.stats.send_errors.fetch_add(sent.errors, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Writes (or mutes, or drops) the earliest frame or packet due by `now`; whether one was
    /// due. The step calls this until nothing is due.
    fn write_due(&mut self, media: &mut MediaClock, t0: Instant, now: Instant) -> Result<bool, PublisherError> {
        let video_pt =
            self.payload_type(media.video.as_mut(), Codec::H264).ok_or(PublisherError::MissingMedia("H.264"))?;
        let audio_pt =
            self.payload_type(media.audio.as_mut(), Codec::Opus).ok_or(PublisherError::MissingMedia("Opus"))?;
        let (video_due, audio_due) = (media.video_due(t0), media.audio_due(t0));
        if video_due <= now && video_due <= audio_due {
            self.write_video(media, video_pt, t0, now)?;
        } else if audio_due <= now {
            self.write_audio(media, audio_pt, t0, now)?;
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// Writes (or mutes, or drops) video frame `media.video_next`.
    fn write_video(
        &mut self,
        media: &mut MediaClock,
        (mid, pt): (Mid, Pt),
        t0: Instant,
        now: Instant,
    ) -> Result<(), PublisherError> {
        let i = media.video_next;
        let due = media.video_due(t0);
        media.video_next += 1;
        let source = self.cfg.source.clone();
        let frame = source.video_frame(i);
        let send_offset = media.profile.video_send_offset(i);
        if media.video_held(send_offset, frame.keyframe) {
            self.stats.video_frames_muted.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let (wallclock, clamped) = media.profile.str0m_wallclock(t0, profile::video_media_offset(i), send_offset, now);
        // RTP time is frame index × 3000 ticks, wrapping like str0m's own conversion.
        let rtp_time = (i * source::VIDEO_TICKS_PER_FRAME) as u32;
        let mut api = self.rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(mid, None) else {
            self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let last = frame.rtp_payloads.len().saturating_sub(1);
        for (k, payload) in frame.rtp_payloads.iter().enumerate() {
            let seq_no = SeqNo::from(media.video_seq_no);
            media.video_seq_no += 1;
            // As str0m's H.264 payloader: marker on the frame's last packet, resendable on NACK.
            let write =
                RtpWrite::new(pt, seq_no, rtp_time, wallclock, payload.clone()).marker(k == last).nackable(true);
            stream.write_rtp(write);
        }
        let sent = unix_us();
        if media.video_seq == 0 {
            let _ = self.stats.times.first_frame.set(sent);
        }
        if frame.keyframe || self.cfg.record_all_frames {
            let rec = FrameSent {
                index: i,
                seq: media.video_seq,
                rtp_ticks: i * source::VIDEO_TICKS_PER_FRAME,
                keyframe: frame.keyframe,
                sent_unix_us: sent,
            };
            if let Ok(mut f) = self.stats.frames.lock() {
                f.push(rec);
            }
        }
        media.video_seq += 1;
        self.count_write(frame.data.len(), frame.sample_bytes, clamped, late_beyond_tick(due, now));
        self.stats.video_frames.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Writes (or mutes, or drops) Opus packet `media.audio_next`.
    fn write_audio(
        &mut self,
        media: &mut MediaClock,
        (mid, pt): (Mid, Pt),
        t0: Instant,
        now: Instant,
    ) -> Result<(), PublisherError> {
        let j = media.audio_next;
        let due = media.audio_due(t0);
        media.audio_next += 1;
        let send_offset = media.profile.audio_send_offset(j);
        if media.profile.audio_muted(send_offset) {
            self.stats.audio_packets_muted.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let source = self.cfg.source.clone();
        let packet = source.audio_payload(j);
        let (wallclock, clamped) = media.profile.str0m_wallclock(t0, profile::audio_media_offset(j), send_offset, now);
        let rtp_time = (j * source::AUDIO_TICKS_PER_PACKET) as u32;
        let mut api = self.rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(mid, None) else {
            self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let seq_no = SeqNo::from(media.audio_seq_no);
        media.audio_seq_no += 1;
        // As str0m's Opus payloader: one packet, no marker, not resent.
        stream.write_rtp(RtpWrite::new(pt, seq_no, rtp_time, wallclock, packet.clone()));
        if self.cfg.record_audio_sends
            && let Ok(mut a) = self.stats.audio_sends.lock()
        {
            a.push(unix_us());
            if let Ok(mut t) = self.stats.audio_send_ticks.lock() {
                t.push(j * source::AUDIO_TICKS_PER_PACKET);
            }
        }
        self.count_write(packet.len(), packet.len(), clamped, late_beyond_tick(due, now));
        self.stats.audio_packets.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Counts one successful media write of `bytes` (`sample_bytes` kept by a recorder),
    /// `late` behind the grid tick it was due on.
    fn count_write(&self, bytes: usize, sample_bytes: usize, clamped: bool, late: Duration) {
        self.stats.media_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.stats.sample_bytes.fetch_add(sample_bytes as u64, Ordering::Relaxed);
        if clamped {
            self.stats.sr_wallclock_clamped.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.max_lateness_us.fetch_max(late.as_micros() as u64, Ordering::Relaxed);
    }

    /// The (mid, payload type) for `codec` on a track, looked up once.
    fn payload_type(&mut self, track: Option<&mut (Mid, Option<Pt>)>, codec: Codec) -> Option<(Mid, Pt)> {
        let (mid, pt) = track?;
        if pt.is_none() {
            let w = self.rtc.writer(*mid)?;
            *pt = w.payload_params().find(|p| p.spec().codec == codec).map(|p| p.pt());
        }
        Some((*mid, (*pt)?))
    }
}

/// 16 bits for a sequence number start (no RNG dependency: the clock's nanoseconds, mixed).
fn random_u16() -> u16 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mixed = nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 48) as u16
}

/// How far behind its schedule a write due at `due` ran at `now`, not counting the wait
/// for the pacing tick it was due on (that wait is by design; see [`pacing`]).
fn late_beyond_tick(due: Instant, now: Instant) -> Duration {
    now.saturating_duration_since(pacing::tick_at_or_after(due))
}

/// The media schedule of one run.
#[derive(Debug, Default)]
pub(super) struct MediaClock {
    /// When it connected (media time zero).
    t0: Option<Instant>,
    /// Rates and mute windows.
    profile: SenderProfile,
    pub(super) video: Option<(Mid, Option<Pt>)>,
    pub(super) audio: Option<(Mid, Option<Pt>)>,
    /// Index (media time) of the next video frame due.
    pub(super) video_next: u64,
    /// Index (media time) of the next Opus packet due.
    pub(super) audio_next: u64,
    /// Video frames written so far.
    video_seq: u64,
    disconnected: bool,
    /// Extended RTP sequence number of the next video packet.
    video_seq_no: u64,
    /// Extended RTP sequence number of the next Opus packet.
    audio_seq_no: u64,
    /// Video was muted: send nothing until the next keyframe.
    video_resuming: bool,
}

impl MediaClock {
    pub(super) fn video_due(&self, t0: Instant) -> Instant {
        t0 + self.profile.video_send_offset(self.video_next)
    }
    pub(super) fn audio_due(&self, t0: Instant) -> Instant {
        t0 + self.profile.audio_send_offset(self.audio_next)
    }
    /// Whether the video frame scheduled `send_offset` after `t0` stays unsent: inside the
    /// mute window, or after it until a keyframe (a camera resumes with an IDR).
    fn video_held(&mut self, send_offset: Duration, keyframe: bool) -> bool {
        if self.profile.video_muted(send_offset) {
            self.video_resuming = true;
            return true;
        }
        if self.video_resuming && !keyframe {
            return true;
        }
        self.video_resuming = false;
        false
    }
    pub(super) fn next_due(&self, t0: Instant) -> Instant {
        self.video_due(t0).min(self.audio_due(t0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_clock_schedules_30fps_and_20ms() {
        let t0 = Instant::now();
        let mut m = MediaClock { video_next: 30, audio_next: 50, ..Default::default() };
        assert_eq!(m.video_due(t0), t0 + Duration::from_secs(1));
        assert_eq!(m.audio_due(t0), t0 + Duration::from_secs(1));
        m.video_next = 1;
        assert_eq!(m.next_due(t0), t0 + Duration::from_micros(33_333));
    }
}
