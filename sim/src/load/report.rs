//! The figures of one load run: serialisable (`--json`) and printable as a table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::Target;
use super::media::MediaReport;
use super::stats::{Percentiles, prometheus_sum};
use crate::kvs::FragmentMeta;

/// reel's counter of datagrams routed to a storage session.
pub const METRIC_SESSION_PACKETS: &str = "reel_storage_session_packets_total";
/// reel's counter of datagrams no session accepted.
pub const METRIC_UNKNOWN_DATAGRAMS: &str = "reel_webrtc_unknown_datagrams_total";

/// The recorder's CPU over the steady window.
#[derive(Debug, Clone, Serialize)]
pub struct Steady {
    /// Window length.
    pub seconds: f64,
    /// Sessions connected and not failed throughout.
    pub active_sessions: usize,
    /// Recorder CPU (user + system) in the window, ms.
    pub recorder_cpu_ms: Option<f64>,
    /// Recorder CPU ms per session-second.
    pub cpu_ms_per_session_s: Option<f64>,
    /// Recorder CPU as % of one core.
    pub recorder_core_pct: Option<f64>,
    /// The generator's own CPU (user + system) in the window, ms.
    pub generator_cpu_ms: Option<f64>,
    /// The generator's own CPU ms per session-second (publishers + probes).
    pub generator_cpu_ms_per_session_s: Option<f64>,
    /// CPU of the S3 server reel-load hosts for the cluster target, ms (not in the
    /// generator's figure).
    pub s3_server_cpu_ms: Option<f64>,
    /// Datagrams the kernel dropped at the recorder's sockets within the window (the
    /// run's total also counts the ramp, when handshakes compete with media).
    pub recorder_socket_drops: Option<u64>,
}

impl Steady {
    /// From the window's length, session count and CPU deltas (ms).
    pub fn new(seconds: f64, active_sessions: usize, cpu_ms: Option<f64>, generator_cpu_ms: Option<f64>) -> Self {
        let per = |ms: f64| (active_sessions > 0 && seconds > 0.0).then(|| ms / (seconds * active_sessions as f64));
        Self {
            seconds,
            active_sessions,
            recorder_cpu_ms: cpu_ms,
            cpu_ms_per_session_s: cpu_ms.and_then(per),
            recorder_core_pct: cpu_ms.map(|ms| ms / (seconds * 10.0)),
            generator_cpu_ms,
            generator_cpu_ms_per_session_s: generator_cpu_ms.and_then(per),
            s3_server_cpu_ms: None,
            recorder_socket_drops: None,
        }
    }
}

/// Recorder memory.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rss {
    /// VmRSS before the first session, KiB.
    pub before_kib: Option<u64>,
    /// VmRSS at the end of the steady window, KiB.
    pub steady_kib: Option<u64>,
    /// (steady − before) / active sessions, KiB.
    pub per_session_kib: Option<f64>,
}

impl Rss {
    /// From the two readings and the active session count.
    pub fn new(before_kib: Option<u64>, steady_kib: Option<u64>, sessions: usize) -> Self {
        let per_session_kib =
            before_kib.zip(steady_kib).filter(|_| sessions > 0).map(|(b, s)| (s as f64 - b as f64) / sessions as f64);
        Self { before_kib, steady_kib, per_session_kib }
    }
}

/// Publisher datagrams vs what reel counted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Packets {
    /// Datagrams the publishers (and live viewers, if any) sent.
    pub sent: u64,
    /// Δ `reel_storage_session_packets_total` (None without `/metrics`).
    pub reel_session_packets: Option<u64>,
    /// Δ `reel_webrtc_unknown_datagrams_total`.
    pub reel_unknown_datagrams: Option<u64>,
    /// sent − session packets − unknown.
    pub unaccounted: Option<i64>,
    /// unaccounted / sent, %.
    pub unaccounted_pct: Option<f64>,
    /// Δ kernel drops (full receive buffer) of UDP sockets on the recorder's address
    /// (`/proc/net/udp`; meaningful inside `--netns`, where only this run's sockets exist).
    pub recorder_socket_drops: Option<u64>,
    /// Datagrams the publishers' sockets refused (not in `sent`).
    pub send_errors: u64,
    /// Frames the publishers could not write (a track without a send stream). A CPU-starved
    /// generator shows as publisher lateness instead: it sends overdue frames late, not never.
    pub frames_dropped: u64,
}

impl Packets {
    /// From the publishers' total and two `/metrics` scrapes.
    pub fn new(sent: u64, before: Option<&str>, after: Option<&str>) -> Self {
        let delta = |name: &str| {
            let (b, a) = (before?, after?);
            Some((prometheus_sum(a, name) - prometheus_sum(b, name)).max(0.0) as u64)
        };
        let session = delta(METRIC_SESSION_PACKETS);
        let unknown = delta(METRIC_UNKNOWN_DATAGRAMS);
        let unaccounted = session.zip(unknown).map(|(s, u)| sent as i64 - s as i64 - u as i64);
        let unaccounted_pct = unaccounted.filter(|_| sent > 0).map(|u| u as f64 * 100.0 / sent as f64);
        Self {
            sent,
            reel_session_packets: session,
            reel_unknown_datagrams: unknown,
            unaccounted,
            unaccounted_pct,
            ..Default::default()
        }
    }
}

/// What was stored.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Storage {
    /// Fragments listed over all streams.
    pub fragments: usize,
    /// Σ FragmentSizeInBytes.
    pub stored_bytes: u64,
    /// Σ FragmentLengthInMilliseconds / 1000.
    pub stored_media_s: f64,
    /// stored media seconds × the source's sample byte rate.
    pub payload_bytes: f64,
    /// stored_bytes / payload_bytes.
    pub stored_per_payload: Option<f64>,
    /// Sample bytes the publishers sent (incl. any tail not yet in a closed fragment).
    pub sample_bytes_sent: u64,
    /// stored_bytes / sample_bytes_sent.
    pub stored_per_sample_sent: Option<f64>,
}

impl Storage {
    /// Adds one stream's fragments.
    pub fn add(&mut self, frags: &[FragmentMeta]) {
        self.fragments += frags.len();
        self.stored_bytes += frags.iter().map(|f| f.size).sum::<u64>();
        self.stored_media_s += frags.iter().map(|f| f.length_ms).sum::<u64>() as f64 / 1000.0;
    }

    /// Computes the ratios.
    pub fn finish(&mut self, sample_bytes_per_sec: f64, sample_bytes_sent: u64) {
        self.payload_bytes = self.stored_media_s * sample_bytes_per_sec;
        self.stored_per_payload = (self.payload_bytes > 0.0).then(|| self.stored_bytes as f64 / self.payload_bytes);
        self.sample_bytes_sent = sample_bytes_sent;
        self.stored_per_sample_sent =
            (sample_bytes_sent > 0).then(|| self.stored_bytes as f64 / sample_bytes_sent as f64);
    }
}

/// Everything one run measured (see the module docs of [`super`] for the method).
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub target: Target,
    pub sessions: usize,
    pub ramp_per_sec: f64,
    pub duration_s: f64,
    pub bitrate_bps: u64,
    /// What the padded source really sends (video Annex-B + Opus), bits/s.
    pub source_bitrate_bps: f64,
    /// The publishers sent a frame's packets in GSO batches (false: one send per packet).
    pub gso_sends: bool,
    pub recorder_pid: Option<u32>,
    pub cores: usize,
    /// Control-plane set-up of all channels, s (not part of any other figure).
    pub provision_s: f64,
    pub sessions_connected: usize,
    pub sessions_failed: usize,
    /// Sessions lost and started over (with `--reconnect`).
    pub reconnects: u64,
    /// Loss → reconnected (ICE + DTLS up again), ms, per reconnect that recovered.
    pub resume_gap_ms: Option<Percentiles>,
    /// Failure kind → count.
    pub failures: BTreeMap<String, usize>,
    pub failure_examples: Vec<String>,
    pub steady: Option<Steady>,
    pub rss: Rss,
    pub packets: Packets,
    pub join_to_first_frame_stored_ms: Option<Percentiles>,
    pub join_to_first_fragment_closed_ms: Option<Percentiles>,
    pub join_to_first_fragment_readable_ms: Option<Percentiles>,
    pub close_to_list_fragments_ms: Option<Percentiles>,
    pub close_to_get_media_ms: Option<Percentiles>,
    pub hls_lag_ms: Option<Percentiles>,
    pub storage: Storage,
    /// ListFragments/HLS probe requests per second sent to the recorder during the run.
    pub probe_requests_per_sec: f64,
    /// Most any publisher's media write ran behind schedule (generator saturation), ms.
    pub max_publisher_lateness_ms: f64,
    /// Stored vs sent frames per track and the stored A/V skew (reel, when read back).
    pub media: Option<MediaReport>,
    pub notes: Vec<String>,
    /// reel-cluster: running storage sessions per node URL at the end of the steady window.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sessions_per_node: BTreeMap<String, f64>,
    /// reel-cluster: probe streams whose ListFragments were polled on a non-writer node.
    pub non_writer_probes: usize,
    /// Live viewers through the storage session (`--viewers-per-session`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub viewers: Option<super::viewers::ViewersReport>,
}

pub(super) fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.digits$}"))
}

pub(super) fn pct_row(out: &mut String, label: &str, p: &Option<Percentiles>) {
    match p {
        Some(p) => {
            let _ = writeln!(
                out,
                "  {label:<44} p50 {:>8.1}  p95 {:>8.1}  p99 {:>8.1}  max {:>8.1}  (n={})",
                p.p50, p.p95, p.p99, p.max, p.n
            );
        }
        None => {
            let _ = writeln!(out, "  {label:<44} n/a");
        }
    }
}

impl LoadReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "reel-load: target {:?}, {} sessions, ramp {}/s, {} s steady publishing, {:.0} kbps/camera (source sends {:.0} kbps, {}), {} cores",
            self.target,
            self.sessions,
            self.ramp_per_sec,
            self.duration_s,
            self.bitrate_bps as f64 / 1000.0,
            self.source_bitrate_bps / 1000.0,
            if self.gso_sends { "GSO batches" } else { "one send per packet" },
            self.cores
        );
        let _ = writeln!(
            o,
            "  sessions connected / failed                  {} / {}   (channels provisioned in {:.1} s)",
            self.sessions_connected, self.sessions_failed, self.provision_s
        );
        if self.reconnects > 0 {
            let _ = writeln!(o, "  reconnects                                   {}", self.reconnects);
            pct_row(&mut o, "loss → reconnected (ms)", &self.resume_gap_ms);
        }
        for (k, n) in &self.failures {
            let _ = writeln!(o, "    failed: {k} × {n}");
        }
        for e in &self.failure_examples {
            let _ = writeln!(o, "      e.g. {e}");
        }
        match &self.steady {
            Some(s) => {
                let _ = writeln!(
                    o,
                    "  steady window                                {:.1} s, {} active sessions",
                    s.seconds, s.active_sessions
                );
                let _ = writeln!(
                    o,
                    "  recorder CPU per session-second              {} ms   ({} % of one core; generator {} ms)",
                    opt(s.cpu_ms_per_session_s, 3),
                    opt(s.recorder_core_pct, 1),
                    opt(s.generator_cpu_ms_per_session_s, 3)
                );
                if let Some(ms) = s.s3_server_cpu_ms {
                    let _ = writeln!(o, "  S3 server CPU (hosted by reel-load, in neither figure) {:.0} ms", ms);
                }
            }
            None => {
                let _ = writeln!(o, "  steady window                                too short (raise --duration)");
            }
        }
        let _ = writeln!(
            o,
            "  recorder RSS per session                     {} KiB   (before {} KiB, steady {} KiB)",
            opt(self.rss.per_session_kib, 1),
            self.rss.before_kib.map_or("n/a".into(), |v| v.to_string()),
            self.rss.steady_kib.map_or("n/a".into(), |v| v.to_string())
        );
        let p = &self.packets;
        let _ = writeln!(
            o,
            "  packets sent / reel session / unknown        {} / {} / {}   unaccounted {} ({} %)",
            p.sent,
            p.reel_session_packets.map_or("n/a".into(), |v| v.to_string()),
            p.reel_unknown_datagrams.map_or("n/a".into(), |v| v.to_string()),
            p.unaccounted.map_or("n/a".into(), |v| v.to_string()),
            opt(p.unaccounted_pct, 3)
        );
        let _ = writeln!(
            o,
            "  kernel drops at the recorder's sockets       {} ({} in the steady window)   (publisher send errors {}, frames dropped {})",
            p.recorder_socket_drops.map_or("n/a".into(), |v| v.to_string()),
            self.steady.as_ref().and_then(|s| s.recorder_socket_drops).map_or("n/a".into(), |v| v.to_string()),
            p.send_errors,
            p.frames_dropped
        );
        if !self.sessions_per_node.is_empty() {
            let spread: Vec<String> =
                self.sessions_per_node.iter().map(|(n, k)| format!("{n} {}", k.round() as i64)).collect();
            let _ = writeln!(o, "  sessions per node                            {}", spread.join(", "));
        }
        if !self.target.is_reel() {
            let s = &self.storage;
            let _ = writeln!(
                o,
                "  recorded bytes / media bytes sent            {}   ({} B)",
                opt(s.stored_per_sample_sent, 4),
                s.stored_bytes
            );
            for n in &self.notes {
                let _ = writeln!(o, "  note: {n}");
            }
            return o;
        }
        pct_row(&mut o, "join → first frame stored (ms)", &self.join_to_first_frame_stored_ms);
        pct_row(&mut o, "join → first fragment closed (ms)", &self.join_to_first_fragment_closed_ms);
        pct_row(&mut o, "join → first fragment readable, GetMedia (ms)", &self.join_to_first_fragment_readable_ms);
        let list_label = match self.target {
            Target::ReelCluster => "fragment close → ListFragments, non-writer (ms)",
            _ => "fragment close → ListFragments (ms)",
        };
        pct_row(&mut o, list_label, &self.close_to_list_fragments_ms);
        pct_row(&mut o, "fragment close → GetMedia (ms)", &self.close_to_get_media_ms);
        pct_row(&mut o, "live HLS lag behind publisher (ms)", &self.hls_lag_ms);
        let s = &self.storage;
        let _ = writeln!(
            o,
            "  stored bytes / payload                       {}   ({} fragments, {} B over {:.1} s of media; vs samples sent {})",
            opt(s.stored_per_payload, 4),
            s.fragments,
            s.stored_bytes,
            s.stored_media_s,
            opt(s.stored_per_sample_sent, 4)
        );
        let _ = writeln!(
            o,
            "  probe requests to the recorder               {:.1}/s;  worst publisher lateness {:.1} ms",
            self.probe_requests_per_sec, self.max_publisher_lateness_ms
        );
        if let Some(m) = &self.media {
            media_rows(&mut o, m);
        }
        if let Some(v) = &self.viewers {
            o.push_str(&v.table());
        }
        for n in &self.notes {
            let _ = writeln!(o, "  note: {n}");
        }
        o
    }
}

/// The stored-vs-sent rows: totals, then one line per session.
fn media_rows(o: &mut String, m: &MediaReport) {
    let _ = writeln!(o, "  senders                                      {}", m.sender);
    if m.video_frames_muted + m.audio_packets_muted + m.sr_wallclock_clamped > 0 {
        let _ = writeln!(
            o,
            "    muted video frames {}, muted audio packets {}, SR wallclocks clamped {}",
            m.video_frames_muted, m.audio_packets_muted, m.sr_wallclock_clamped
        );
    }
    let _ = writeln!(o, "  video frames stored / sent                   {}", m.video.text());
    let _ = writeln!(o, "  audio frames stored / sent                   {}", m.audio.text());
    let _ = writeln!(
        o,
        "  stored A/V skew vs send times (ms)           {}   (pairing exact in {} of {} sessions)",
        skew_text(m.av_skew_ms.as_ref()),
        m.sessions_paired_exactly,
        m.sessions.len()
    );
    for s in &m.sessions {
        let _ = writeln!(
            o,
            "    session {:>4}: video {}  audio {}  skew {}  pairing {:?}{}",
            s.session,
            s.video.text(),
            s.audio.text(),
            skew_text(s.av_skew_ms.as_ref()),
            s.pairing,
            s.error.as_deref().map_or(String::new(), |e| format!("  ({e})"))
        );
    }
}

fn skew_text(s: Option<&super::media::SkewStats>) -> String {
    s.map_or("n/a".into(), |s| {
        format!("p95 |x| {:.1}  max |x| {:.1}  last {:+.1}  (n={})", s.p95_abs_ms, s.max_abs_ms, s.last_ms, s.n)
    })
}

/// reel's CPU per session-second divided by each baseline's in `reports` (`"reel/janus"`,
/// `"reel/floor"`), and the cluster's divided by reel's (`"reel-cluster/reel"`); targets
/// without the figure are left out.
pub fn cpu_ratios(reports: &[LoadReport]) -> BTreeMap<String, f64> {
    let per = |r: &LoadReport| r.steady.as_ref().and_then(|s| s.cpu_ms_per_session_s).filter(|&v| v > 0.0);
    let Some(reel) = reports.iter().find(|r| r.target == Target::Reel).and_then(per) else {
        return BTreeMap::new();
    };
    reports
        .iter()
        .filter(|r| r.target != Target::Reel)
        .filter_map(|r| {
            let other = per(r)?;
            Some(match r.target {
                Target::ReelCluster => ("reel-cluster/reel".to_string(), other / reel),
                t => (format!("reel/{}", format!("{t:?}").to_lowercase()), reel / other),
            })
        })
        .chain(cluster_per_generator(reports))
        .collect()
}

/// Each ratio's median over `rounds` (the mean of the middle two for an even count).
pub fn median_ratios(rounds: &[BTreeMap<String, f64>]) -> BTreeMap<String, f64> {
    let mut all: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (name, &r) in rounds.iter().flatten() {
        all.entry(name.clone()).or_default().push(r);
    }
    all.into_iter()
        .map(|(name, mut v)| {
            v.sort_by(f64::total_cmp);
            let mid = v.len() / 2;
            let median = if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 };
            (name, median)
        })
        .collect()
}

/// The cluster's CPU over reel's, each first divided by its own run's generator CPU
/// (`"reel-cluster/reel per generator"`): the generator does the same work in both runs, so
/// this cancels the machine's speed drifting between the two (the cluster's S3 server,
/// hosted by reel-load, is in neither generator figure).
fn cluster_per_generator(reports: &[LoadReport]) -> Option<(String, f64)> {
    let per_gen = |t: Target| {
        let s = reports.iter().find(|r| r.target == t)?.steady.as_ref()?;
        let (cpu, generator) = (s.cpu_ms_per_session_s?, s.generator_cpu_ms_per_session_s?);
        (cpu > 0.0 && generator > 0.0).then(|| cpu / generator)
    };
    Some(("reel-cluster/reel per generator".into(), per_gen(Target::ReelCluster)? / per_gen(Target::Reel)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_rounds() {
        let round = |a: f64, b: Option<f64>| {
            let mut m = BTreeMap::from([("a".to_string(), a)]);
            if let Some(b) = b {
                m.insert("b".into(), b);
            }
            m
        };
        let m = median_ratios(&[round(1.5, Some(2.0)), round(1.1, None), round(1.3, Some(1.0))]);
        assert_eq!(m, BTreeMap::from([("a".to_string(), 1.3), ("b".to_string(), 1.5)]));
        assert!(median_ratios(&[]).is_empty());
    }

    #[test]
    fn packets_from_scrapes() {
        let before = "reel_storage_session_packets_total 100\nreel_webrtc_unknown_datagrams_total 1\n";
        let after = "reel_storage_session_packets_total 1090\nreel_webrtc_unknown_datagrams_total 6\n";
        let p = Packets::new(1000, Some(before), Some(after));
        assert_eq!((p.reel_session_packets, p.reel_unknown_datagrams, p.unaccounted), (Some(990), Some(5), Some(5)));
        assert_eq!(p.unaccounted_pct, Some(0.5));
        assert_eq!(Packets::new(10, None, Some(after)).unaccounted, None);
    }

    #[test]
    fn steady_and_rss_per_session() {
        let s = Steady::new(10.0, 20, Some(400.0), Some(100.0));
        assert_eq!(s.cpu_ms_per_session_s, Some(2.0));
        assert_eq!(s.recorder_core_pct, Some(4.0));
        assert_eq!(s.generator_cpu_ms_per_session_s, Some(0.5));
        assert_eq!(Steady::new(10.0, 0, Some(1.0), None).cpu_ms_per_session_s, None);
        assert_eq!(Rss::new(Some(1000), Some(3000), 4).per_session_kib, Some(500.0));
    }

    #[test]
    fn storage_ratio() {
        let f = |size, len| FragmentMeta { number: "1".into(), size, producer_ms: 0, server_ms: 0, length_ms: len };
        let mut s = Storage::default();
        s.add(&[f(1010, 2000), f(1010, 2000)]);
        s.finish(500.0, 2000);
        assert_eq!(s.payload_bytes, 2000.0);
        assert_eq!(s.stored_per_payload, Some(1.01));
        assert_eq!(s.stored_per_sample_sent, Some(1.01));
    }
}
