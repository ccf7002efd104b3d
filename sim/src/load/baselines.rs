//! The side-by-side baselines of a load run (see `sim/BASELINE.md`):
//! - **Janus** VideoRoom with recording on: the same str0m publishers, as *offerers*
//!   (`Janus::publish(offer) → answer`), the same ramp, duration and steady window; CPU and
//!   RSS of the `janus` process from `/proc`.
//! - **the floor**: `floor::Sender` (one thread, the same frame sizes as the publishers'
//!   padded source, AES-256-GCM SRTP, keys handed over) into `floor::Receiver` (recvmmsg +
//!   SRTP decrypt + append); CPU of the receiver thread alone over the steady window.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::report::{LoadReport, Packets, Rss, Steady, Storage};
use super::{
    DRAIN, LoadConfig, LoadError, SETTLE, STEADY_END_MARGIN, Target, procstat, run_drops, steady_window, tally_failures,
};
use crate::janus::Janus;
use crate::publisher::{
    MediaSource, NoSignals, Publisher, PublisherConfig, PublisherError, PublisherStats, SenderProfile, StatsSnapshot,
    unix_us,
};

/// A report with the fields every target shares; the rest empty.
pub(super) fn base_report(cfg: &LoadConfig, source: &MediaSource, pid: Option<u32>) -> LoadReport {
    LoadReport {
        target: cfg.target,
        sessions: cfg.sessions,
        ramp_per_sec: cfg.ramp_per_sec,
        duration_s: cfg.duration.as_secs_f64(),
        bitrate_bps: cfg.bitrate_bps,
        source_bitrate_bps: source.sent_bytes_per_sec() * 8.0,
        gso_sends: false,
        recorder_pid: pid,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        provision_s: 0.0,
        sessions_connected: 0,
        sessions_failed: 0,
        reconnects: 0,
        resume_gap_ms: None,
        failures: Default::default(),
        failure_examples: Vec::new(),
        steady: None,
        rss: Rss::default(),
        packets: Packets::default(),
        join_to_first_frame_stored_ms: None,
        join_to_first_fragment_closed_ms: None,
        join_to_first_fragment_readable_ms: None,
        close_to_list_fragments_ms: None,
        close_to_get_media_ms: None,
        hls_lag_ms: None,
        storage: Storage::default(),
        probe_requests_per_sec: 0.0,
        max_publisher_lateness_ms: 0.0,
        media: None,
        notes: Vec::new(),
        sessions_per_node: Default::default(),
        non_writer_probes: 0,
        viewers: None,
    }
}

/// The publishers (behaving as `sender` says) against Janus VideoRoom (recording on).
pub(super) async fn run_janus(cfg: &LoadConfig, sender: SenderProfile, gso: bool) -> Result<LoadReport, LoadError> {
    let fail = |e: String| LoadError::Baseline(Target::Janus, e);
    crate::janus::installed().map_err(fail)?;
    if crate::netns::inside() {
        // libnice's packets reach the publishers' veth end with a local source address.
        crate::janus::netns_accept_local().map_err(|e| fail(e.to_string()))?;
    }
    let source = Arc::new(MediaSource::new(cfg.bitrate_bps)?);
    let work = tempfile::Builder::new().prefix("reel-load-janus-").tempdir().map_err(|e| fail(e.to_string()))?;
    let janus = Arc::new(Janus::start(work.path(), cfg.recorder_ip).await.map_err(|e| fail(e.to_string()))?);
    let pid = Some(janus.pid());
    let ticks = procstat::clock_ticks_per_sec();
    let rss_before = pid.and_then(|p| procstat::rss_kib(p).ok());
    let drops_before = procstat::udp_drops(cfg.recorder_ip);
    let stats: Vec<Arc<PublisherStats>> = (0..cfg.sessions).map(|_| PublisherStats::new()).collect();
    let start = Instant::now() + Duration::from_millis(200);
    let ramp_end = start + Duration::from_secs_f64(cfg.sessions as f64 / cfg.ramp_per_sec);
    let until = ramp_end + cfg.duration;
    let mut tasks = Vec::new();
    for (i, st) in stats.iter().enumerate() {
        let at = start + Duration::from_secs_f64(i as f64 / cfg.ramp_per_sec);
        let (janus, st, mut pcfg) = (janus.clone(), st.clone(), PublisherConfig::new(cfg.bind_ip, source.clone()));
        pcfg.profile = sender;
        pcfg.gso = gso;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let _ = publish_to_janus(&janus, pcfg, st, until).await;
        }));
    }
    let (steady, rss_steady) =
        steady_window(&stats, &|| true, ramp_end, until, pid.as_slice(), cfg.recorder_ip, ticks).await;
    for t in tasks {
        let _ = t.await;
    }
    tokio::time::sleep(DRAIN).await;
    let recorded = janus.recorded_bytes();
    let drops_after = procstat::udp_drops(cfg.recorder_ip);
    let log_tail = janus.log_tail(20);
    match Arc::try_unwrap(janus) {
        Ok(j) => {
            if let Err(e) = j.stop() {
                tracing::warn!(error = %e, "janus did not stop cleanly");
            }
        }
        Err(_) => tracing::warn!("janus still shared at the end; it is killed on drop"),
    }
    let snaps: Vec<StatsSnapshot> = stats.iter().map(|s| s.snapshot()).collect();
    let mut r = base_report(cfg, &source, pid);
    r.gso_sends = gso;
    fill_sessions(&mut r, &snaps);
    let active = steady.as_ref().map_or(0, |s| s.active_sessions);
    r.steady = steady;
    r.rss = Rss::new(rss_before, rss_steady, active);
    r.packets = Packets {
        sent: snaps.iter().map(|s| s.packets_sent).sum(),
        send_errors: snaps.iter().map(|s| s.send_errors).sum(),
        frames_dropped: snaps.iter().map(|s| s.frames_dropped).sum(),
        recorder_socket_drops: run_drops(drops_before, drops_after, r.steady.as_ref()),
        ..Default::default()
    };
    let media_sent: u64 = snaps.iter().map(|s| s.media_bytes).sum();
    r.storage = Storage {
        stored_bytes: recorded,
        sample_bytes_sent: snaps.iter().map(|s| s.sample_bytes).sum(),
        stored_per_sample_sent: (media_sent > 0).then(|| recorded as f64 / media_sent as f64),
        ..Default::default()
    };
    r.notes.push(
        "janus records raw RTP (.mjr, filler NAL units included): stored/payload is .mjr bytes / media bytes sent"
            .into(),
    );
    if r.sessions_failed > 0 {
        r.notes.push(format!("janus log tail:\n{log_tail}"));
    }
    Ok(r)
}

/// One publisher into Janus: offer, `publish`, accept the answer, publish until `until`,
/// unpublish.
async fn publish_to_janus(
    janus: &Janus,
    cfg: PublisherConfig,
    stats: Arc<PublisherStats>,
    until: Instant,
) -> Result<(), PublisherError> {
    let result = async {
        let mut publisher = Publisher::bind(cfg, stats.clone()).await?;
        let offer = publisher.create_offer()?;
        let _ = stats.times.join_sent.set(unix_us());
        let jp = janus.publish(&offer).await.map_err(|e| PublisherError::Recorder(e.to_string()))?;
        let _ = stats.times.join_ok.set(unix_us());
        publisher.accept_answer(jp.answer_sdp())?;
        let end = publisher.run(&mut NoSignals, until).await;
        publisher.disconnect();
        if let Err(e) = jp.unpublish().await {
            tracing::debug!(error = %e, "janus unpublish failed");
        }
        end.map(|_| ())
    }
    .await;
    result.map_err(|e| stats.fail(e))
}

/// The floor: its own sender (same frame sizes and bitrate) into the minimal receiver.
pub(super) async fn run_floor(cfg: &LoadConfig) -> Result<LoadReport, LoadError> {
    use crate::floor::{Receiver, Sender};
    let fail = |e: std::io::Error| LoadError::Baseline(Target::Floor, e.to_string());
    let source = Arc::new(MediaSource::new(cfg.bitrate_bps)?);
    let out = tempfile::Builder::new().prefix("reel-load-floor-").tempdir().map_err(fail)?;
    let mut rx = Receiver::bind(std::net::SocketAddr::new(cfg.recorder_ip, 0), out.path()).map_err(fail)?;
    let sizes: Vec<usize> = (0..source.video_len() as u64).map(|i| source.video_frame(i).data.len()).collect();
    let mut tx = Sender::new(rx.local_addr().map_err(fail)?, cfg.sessions, cfg.bitrate_bps)
        .map_err(fail)?
        .with_frame_sizes(&sizes);
    for keys in tx.keys() {
        rx.add_session(keys).map_err(fail)?;
    }
    let running = rx.spawn().map_err(fail)?;
    // No ramp (keys are handed over, nothing to set up): all sessions start at once.
    let total = SETTLE + cfg.duration;
    let sender = tokio::task::spawn_blocking(move || tx.run_for(total));
    let ticks = procstat::clock_ticks_per_sec();
    let me = std::process::id();
    tokio::time::sleep(SETTLE).await;
    let (a, a_self, a_t) = (running.snapshot(), procstat::cpu_ms(me, ticks).ok(), Instant::now());
    tokio::time::sleep(cfg.duration.saturating_sub(STEADY_END_MARGIN)).await;
    let (b, b_self, b_t) = (running.snapshot(), procstat::cpu_ms(me, ticks).ok(), Instant::now());
    let sent = sender.await.map_err(|e| LoadError::Baseline(Target::Floor, e.to_string()))?.map_err(fail)?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fin = running.stop().map_err(fail)?;
    let d = b.since(&a);
    let secs = (b_t - a_t).as_secs_f64();
    // Our process CPU holds the receiver thread too: the generator's share is the rest.
    let own = a_self.zip(b_self).map(|(x, y)| (y - x - d.cpu_ms).max(0.0));
    let mut steady = Steady::new(secs, cfg.sessions, Some(d.cpu_ms), own);
    steady.cpu_ms_per_session_s = d.cpu_ms_per_session_second();
    let mut r = base_report(cfg, &source, None);
    r.ramp_per_sec = 0.0;
    r.sessions_connected = cfg.sessions;
    r.steady = Some(steady);
    r.packets = Packets {
        sent: sent.packets,
        reel_session_packets: Some(fin.packets),
        reel_unknown_datagrams: Some(fin.auth_failures + fin.dropped),
        unaccounted: Some(sent.packets as i64 - fin.packets as i64 - (fin.auth_failures + fin.dropped) as i64),
        unaccounted_pct: (sent.packets > 0).then(|| {
            (sent.packets as i64 - fin.packets as i64 - (fin.auth_failures + fin.dropped) as i64) as f64 * 100.0
                / sent.packets as f64
        }),
        recorder_socket_drops: None,
        send_errors: sent.send_errors,
        frames_dropped: 0,
    };
    r.storage = Storage {
        stored_bytes: fin.payload_bytes,
        sample_bytes_sent: sent.payload_bytes,
        stored_per_sample_sent: (sent.payload_bytes > 0).then(|| fin.payload_bytes as f64 / sent.payload_bytes as f64),
        ..Default::default()
    };
    r.max_publisher_lateness_ms = sent.max_lateness.as_secs_f64() * 1000.0;
    r.notes.push(format!(
        "floor: receiver thread CPU only (pthread CPU clock); sessions start together (no ramp); {} send errors",
        sent.send_errors
    ));
    Ok(r)
}

/// Session counts and failures from the publishers' snapshots.
fn fill_sessions(r: &mut LoadReport, snaps: &[StatsSnapshot]) {
    r.sessions_connected = snaps.iter().filter(|s| s.connected_us.is_some()).count();
    r.sessions_failed = snaps.iter().filter(|s| s.failure_kind.is_some()).count();
    let (failures, examples) = tally_failures(snaps);
    r.failures = failures;
    r.failure_examples = examples;
    r.max_publisher_lateness_ms = snaps.iter().map(|s| s.max_lateness_us).max().unwrap_or(0) as f64 / 1000.0;
}
