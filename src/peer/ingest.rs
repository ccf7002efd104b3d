//! From received media to stored fragments: [`received_media_frame`] maps a reassembled frame onto the
//! fragmenter's input, and [`spawn_writer`] runs the per-session store writer task that
//! turns fragment events into store calls on the worker's store thread, never on the I/O
//! loop.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reel_storage::{Fence, FragmentStart, FragmentWriter, StoreError, Stream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use reel_media::fragmenter::{ChunkFrames, FragmentEvent, MediaFrame};
use reel_media::rtp_rx::RxFrame;
use reel_media::timing::{MediaKind, SenderReport};
use str0m::rtp::rtcp::SenderInfo;

/// Store events queued per session before the I/O loop starts dropping (and counting) them.
pub const WRITER_QUEUE: usize = 4096;
/// How long a new session's first fragment waits for the superseded session's writer.
const BEGIN_RETRY_FOR: Duration = Duration::from_secs(3);

/// Pairs an `Instant` with the wall clock once, so str0m's `Instant`s become Unix µs.
#[derive(Debug, Clone, Copy)]
pub struct ClockAnchor {
    instant: Instant,
    unix_us: i64,
}

impl ClockAnchor {
    /// The anchor for "now".
    pub fn now() -> Self {
        Self { instant: Instant::now(), unix_us: unix_us(SystemTime::now()) }
    }

    /// An anchor pairing `instant` with `unix_us` (fake clocks in tests and benches).
    pub fn at(instant: Instant, unix_us: i64) -> Self {
        Self { instant, unix_us }
    }

    /// The `Instant` this anchor pairs with the wall clock.
    pub fn instant_of_anchor(&self) -> Instant {
        self.instant
    }

    /// `t` as µs since the Unix epoch.
    pub fn unix_us(&self, t: Instant) -> i64 {
        match t.checked_duration_since(self.instant) {
            Some(d) => self.unix_us + d.as_micros() as i64,
            None => self.unix_us - self.instant.duration_since(t).as_micros() as i64,
        }
    }

    /// The `Instant` of Unix time `us` (clamped to the anchor's past).
    pub fn instant(&self, us: i64) -> Instant {
        let delta = us - self.unix_us;
        if delta >= 0 {
            self.instant + Duration::from_micros(delta as u64)
        } else {
            self.instant.checked_sub(Duration::from_micros(delta.unsigned_abs())).unwrap_or(self.instant)
        }
    }
}

fn unix_us(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// The fragmenter input for one frame of reel's own reassembler ([`super::media_rx`]),
/// with the track's latest sender report.
pub fn received_media_frame(kind: MediaKind, f: RxFrame, sender_info: Option<SenderInfo>) -> MediaFrame {
    MediaFrame {
        kind,
        rtp_timestamp: f.rtp_time as u32,
        arrival_unix_us: f.arrival_us,
        contiguous: f.contiguous,
        sender_report: sender_info
            .map(|sr| SenderReport { ntp_unix_us: unix_us(sr.ntp_time), rtp_timestamp: sr.rtp_time.numer() as u32 }),
        data: f.data,
    }
}

/// Runs the store side of one session: `BeginFragment` → `begin_fragment`, `Chunk` →
/// `append_chunk`, `EndFragment` → `finish`. When the queue closes, an open fragment is
/// finished with the end of its last chunk, so no accepted media is lost. With `fence`
/// (cluster mode) fragments are written under the session's writer lease.
///
/// `store` is the runtime of a thread whose job is to block on the store: chunks are
/// written in place there (`append_chunk_blocking`), one queue hand-off per chunk.
pub fn spawn_writer(
    store: &tokio::runtime::Handle,
    session: u64,
    stream: Stream,
    fence: Option<Fence>,
    mut rx: mpsc::Receiver<FragmentEvent>,
) -> JoinHandle<()> {
    store.spawn(async move {
        let mut open: Option<(FragmentWriter, u32)> = None;
        // After a failed begin, drop chunks until the next fragment.
        let mut skipping = false;
        while let Some(ev) = rx.recv().await {
            match ev {
                FragmentEvent::BeginFragment { producer_ts_ms, server_ts_ms, header } => {
                    if let Some((w, end)) = open.take() {
                        finish(session, w, end).await;
                    }
                    let start = FragmentStart { producer_ts_ms, server_ts_ms, header };
                    match begin(&stream, start, fence.as_ref()).await {
                        Ok(w) => {
                            skipping = false;
                            open = Some((w, 0));
                        }
                        Err(e) => {
                            tracing::error!(session, error = %e, "cannot begin fragment; dropping it");
                            metrics::counter!("reel_storage_session_fragment_errors_total").increment(1);
                            skipping = true;
                        }
                    }
                }
                FragmentEvent::Chunk { bytes, media_end_ms, frames } => {
                    if skipping {
                        count_store_errors(frames);
                        continue;
                    }
                    if let Some((w, end)) = open.as_mut() {
                        if let Err(e) = w.append_chunk_blocking(media_end_ms, Bytes::from(bytes)) {
                            tracing::error!(session, error = %e, "cannot append chunk");
                            count_store_errors(frames);
                        }
                        *end = (*end).max(media_end_ms);
                    }
                }
                FragmentEvent::EndFragment { duration_ms } => {
                    if let Some((w, _)) = open.take() {
                        finish(session, w, duration_ms).await;
                    }
                }
                FragmentEvent::RequestKeyframe { .. } => {}
            }
        }
        if let Some((w, end)) = open.take() {
            finish(session, w, end).await;
        }
    })
}

/// Counts frames the store refused (`reel_storage_frames_dropped_total{reason="store_error"}`).
fn count_store_errors(frames: ChunkFrames) {
    for (track, n) in [("video", frames.video), ("audio", frames.audio)] {
        if n > 0 {
            metrics::counter!(crate::observe::metrics::FRAMES_DROPPED, "track" => track, "reason" => "store_error")
                .increment(u64::from(n));
        }
    }
}

/// `begin_fragment`, retrying while the previous session of the stream still holds its writer.
pub(crate) async fn begin(
    stream: &Stream,
    start: FragmentStart,
    fence: Option<&Fence>,
) -> Result<FragmentWriter, StoreError> {
    let deadline = Instant::now() + BEGIN_RETRY_FOR;
    loop {
        let begun = match fence {
            Some(f) => stream.begin_fenced_fragment(start.clone(), f).await,
            None => stream.begin_fragment(start.clone()).await,
        };
        match begun {
            Err(StoreError::FragmentInProgress { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

async fn finish(session: u64, w: FragmentWriter, duration_ms: u32) {
    match w.finish(duration_ms).await {
        Ok(info) => {
            metrics::counter!("reel_storage_session_fragments_total").increment(1);
            tracing::debug!(session, fragment = ?info.number, duration_ms, "fragment stored");
        }
        Err(e) => tracing::error!(session, error = %e, "cannot finish fragment"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_round_trips() {
        let a = ClockAnchor::now();
        let later = a.instant + Duration::from_millis(1500);
        let us = a.unix_us(later);
        assert_eq!(us - a.unix_us, 1_500_000);
        assert_eq!(a.instant(us), later);
    }
}
