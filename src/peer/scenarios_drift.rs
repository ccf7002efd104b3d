//! No silent media loss under sender clock drift: hour-long sessions of masters
//! that behave like the KVS C SDK on the deterministic harness ([`super::harness`]).
//!
//! The C SDK's media threads sleep a fixed frame duration per frame on top of their own
//! work, so a track is *produced* a few percent slower (or, with a coarse sleep, faster)
//! than real time while each frame's RTP time advances by its nominal duration; its sender
//! reports map RTP time to the wall clock rather than to the packets
//! ([`MediaPlan::audio_rate`], [`MediaPlan::video_rate`], [`MediaPlan::sr_wall_clock`]), and
//! the sender's clock may step ([`MediaPlan::sr_jump`]).
//!
//! Every scenario publishes one hour of fixture media (fake time) into 2 s fragments and
//! requires, beyond [`harness::judge`]'s checks:
//! - every frame sent is stored, per track, and the fragmenter accounts for every frame it
//!   received (`FragmenterStats::unaccounted` is 0);
//! - stored audio is continuous: consecutive stored audio frames are as far apart as they
//!   were sent, ±50 ms ([`harness::gap_mismatch`]), so the only audio gap is a mute;
//! - A/V skew of the stored stream stays within 100 ms at every fragment
//!   ([`harness::av_skew`]);
//! - each track's timestamps strictly increase over the whole stream.
//!
//! Each scenario prints a report of its figures (`-- --nocapture`) and then fails with the
//! list of every requirement it broke. They take a while in the debug test profile (see
//! [`run_hour`]); run them on their own with `cargo test -p reel --lib peer::scenarios_drift`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::harness::{self, MediaPlan, Paired, Sim, Verdicts};
use super::hub::EndReason;
use crate::limits::StorageSessionLimits;
use reel_media::timing::MediaKind;

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

/// Media each scenario publishes.
const HOUR: Duration = Duration::from_secs(3_600);
/// Longest fragment accepted: 2 s target, IDR every second (1.01 s for 1 % slow video).
const MAX_FRAGMENT_MS: u32 = 3_000;
/// Longest video hole inside a fragment.
const MAX_VIDEO_GAP_MS: i64 = 100;
/// Largest A/V skew of the stored stream at any fragment.
const MAX_SKEW_MS: i64 = 100;
/// Largest difference between a stored and a sent audio gap.
const GAP_TOLERANCE_MS: i64 = 50;

/// What one hour-long session left behind, its figures and the requirements it broke.
struct Outcome {
    sim: Sim,
    verdicts: Option<Verdicts>,
    failures: Vec<String>,
    report: String,
}

impl Outcome {
    /// Prints the report and fails with every broken requirement.
    fn assert_ok(&self, name: &str) {
        println!("{}", self.report);
        assert!(self.failures.is_empty(), "{name}: {} failed:\n  {}", self.failures.len(), self.failures.join("\n  "));
    }
}

/// Stored gaps over 50 ms in `ts` (ms): how many and how long together.
fn holes(ts: &[i64]) -> (usize, i64) {
    ts.windows(2).map(|w| w[1] - w[0]).filter(|&g| g > 50).fold((0, 0), |(n, total), g| (n + 1, total + g))
}

/// Publishes `plan` (one hour) from one master, closes the session, and checks everything
/// the module docs list (scenarios may add their own figures and failures).
fn run_hour(name: &str, plan: MediaPlan) -> Outcome {
    let wall = Instant::now();
    // An hour of media outlives KVS's 1 h session limit by the connection setup: raise it.
    let limits = StorageSessionLimits { max_session_secs: HOUR.as_secs() + 60, ..StorageSessionLimits::default() };
    let mut sim = Sim::new(limits);
    let plan_duration = plan.duration;
    let i = sim.add_master(plan).expect("master");
    sim.run_for(plan_duration + S(2));
    let id = sim.peers[i].session;
    sim.hub.close(id, EndReason::Closed("test over".into()), sim.now);
    sim.run_for(MS(1));
    let simulated = wall.elapsed();
    let judging = Instant::now();
    let p = &sim.peers[i];
    let ended = p.ended.as_ref().expect("the session ended");
    let stats = ended.stats;
    let f = stats.fragmenter;
    let mut failures = Vec::new();
    let mut report = String::new();
    let _ = writeln!(report, "== {name}");
    let _ = writeln!(
        report,
        "sent: video {} (last at {:?}), audio {} (last at {:?}); sr headroom {:?}",
        p.video_sent,
        p.video_sent_at.last().copied().unwrap_or_default(),
        p.audio_sent,
        p.audio_sent_at.last().copied().unwrap_or_default(),
        p.plan.sr_headroom(),
    );
    let _ = writeln!(
        report,
        "fragmenter: video in {} out {} dropped {:?}; audio in {} out {} dropped {:?}",
        f.video_in, f.video_out, f.video_dropped, f.audio_in, f.audio_out, f.audio_dropped
    );
    let _ = writeln!(
        report,
        "fragmenter: audio clamped {}, late clamped {}, clock backwards {}, fragments {}, timing {:?}",
        f.audio_clamped, f.audio_late_clamped, f.clock_backwards, f.fragments, f.timing
    );
    if !matches!(ended.reason, EndReason::Closed(_)) {
        failures.push(format!("session ended early: {:?} at {:?}", ended.reason, p.ended_at));
    }
    if p.future_wallclocks > 0 {
        failures.push(format!("harness: {} frames written with a future wallclock", p.future_wallclocks));
    }
    for kind in [MediaKind::Video, MediaKind::Audio] {
        let n = f.unaccounted(kind);
        let _ = writeln!(report, "unaccounted {kind:?}: {n}");
        if n != 0 {
            failures.push(format!("{kind:?}: {n} frames unaccounted for"));
        }
    }
    let frags = harness::assemble(&p.events);
    let verdicts = match harness::judge(&frags, MAX_FRAGMENT_MS, MAX_VIDEO_GAP_MS) {
        Ok(v) => Some(v),
        Err(e) => {
            failures.push(format!("judge: {e}"));
            None
        }
    };
    if let Some(v) = &verdicts {
        let (a_holes, a_hole_ms) = holes(&v.audio_ts_ms);
        let span = |ts: &[i64]| ts.last().copied().unwrap_or(0) - ts.first().copied().unwrap_or(0);
        let sent_span = |at: &[Duration]| {
            at.last().copied().unwrap_or_default().saturating_sub(at.first().copied().unwrap_or_default())
        };
        let _ = writeln!(
            report,
            "stored: {} fragments, video {} (spans {} ms, sent over {:?}), audio {} (spans {} ms, sent over {:?}); \
             stored audio holes > 50 ms: {a_holes} ({a_hole_ms} ms)",
            v.fragments,
            v.video_frames,
            span(&v.video_ts_ms),
            sent_span(&p.video_sent_at),
            v.audio_frames,
            span(&v.audio_ts_ms),
            sent_span(&p.audio_sent_at),
        );
        if v.video_frames != p.video_sent {
            failures.push(format!("video: {} frames stored, {} sent", v.video_frames, p.video_sent));
        }
        if v.audio_frames != p.audio_sent {
            failures.push(format!("audio: {} frames stored, {} sent", v.audio_frames, p.audio_sent));
        }
        for (track, ts) in [("video", &v.video_ts_ms), ("audio", &v.audio_ts_ms)] {
            if let Err(e) = harness::strictly_increasing(track, ts) {
                failures.push(e);
            }
        }
        match Paired::audio(v, p) {
            Ok(audio) => {
                let g = harness::gap_mismatch(audio, GAP_TOLERANCE_MS);
                let sent = |n: usize| p.audio_sent_at.get(n).copied().unwrap_or_default();
                let _ = writeln!(
                    report,
                    "audio gaps: worst stored−sent {} ms at frame {} (sent at {:?}), {} over {GAP_TOLERANCE_MS} ms",
                    g.worst_ms,
                    g.worst_at,
                    sent(g.worst_at),
                    g.over
                );
                if g.over > 0 {
                    failures.push(format!(
                        "audio continuity: {} stored gaps differ from the sent ones by > {GAP_TOLERANCE_MS} ms, \
                         worst {} ms at frame {} (sent at {:?})",
                        g.over,
                        g.worst_ms,
                        g.worst_at,
                        sent(g.worst_at)
                    ));
                }
            }
            Err(e) => {
                let _ = writeln!(report, "audio gaps: not checked ({e})");
            }
        }
        match harness::av_skew(v, &p.video_sent_at, &p.audio_sent_at) {
            Ok(skew) => {
                let _ = writeln!(
                    report,
                    "A/V skew: max |{}| ms (fragment, ms) {:?}, first over {MAX_SKEW_MS} ms {:?}, last {:?}; \
                     {} fragments checked, {} skipped",
                    skew.max_abs_ms(),
                    skew.worst(),
                    skew.first_over(MAX_SKEW_MS),
                    skew.at.last(),
                    skew.at.len(),
                    skew.skipped
                );
                if let Some((n, ms)) = skew.first_over(MAX_SKEW_MS) {
                    failures.push(format!(
                        "A/V skew: {ms} ms at fragment {n}, worst {:?} (fragment, ms)",
                        skew.worst().unwrap_or_default()
                    ));
                }
            }
            Err(e) => {
                let _ = writeln!(report, "A/V skew: not checked ({e})");
            }
        }
    }
    let _ = writeln!(report, "real time: {simulated:?} simulating, {:?} judging", judging.elapsed());
    Outcome { sim, verdicts, failures, report }
}

/// A KVS C SDK-like plan: an hour of fixture media, sender reports on the wall clock.
fn c_sdk_plan() -> MediaPlan {
    let mut plan = MediaPlan::fixture(HOUR);
    plan.sr_wall_clock = true;
    plan
}

#[test]
fn hour_of_audio_3_percent_slow_is_stored_whole() {
    let mut plan = c_sdk_plan();
    plan.audio_rate = 0.97;
    run_hour("audio 3 % slow, SRs on the wall clock", plan).assert_ok("audio 3 % slow");
}

#[test]
fn hour_of_audio_3_percent_fast_is_stored_whole() {
    let mut plan = c_sdk_plan();
    plan.audio_rate = 1.03;
    run_hour("audio 3 % fast, SRs on the wall clock", plan).assert_ok("audio 3 % fast");
}

#[test]
fn hour_of_video_1_percent_slow_is_stored_whole() {
    let mut plan = c_sdk_plan();
    plan.video_rate = 0.99;
    run_hour("video 1 % slow, SRs on the wall clock", plan).assert_ok("video 1 % slow");
}

#[test]
fn two_minute_audio_mute_mid_hour_leaves_exactly_its_gap() {
    let mut plan = c_sdk_plan();
    let mute = (S(29 * 60), S(31 * 60));
    plan.audio_pause = Some(mute);
    let mut out = run_hour("2 min audio mute at 29 min, SRs on the wall clock", plan);
    if let Some(v) = &out.verdicts {
        // The mute is the one stored audio gap, as long as the mute (± a frame and the tolerance).
        let (at, gap) = v
            .audio_ts_ms
            .windows(2)
            .enumerate()
            .map(|(n, w)| (n, w[1] - w[0]))
            .max_by_key(|(_, g)| *g)
            .unwrap_or_default();
        let want = (mute.1 - mute.0).as_millis() as i64;
        let _ = writeln!(out.report, "largest stored audio gap: {gap} ms after stored frame {at} (mute {want} ms)");
        if (gap - want).abs() > 20 + GAP_TOLERANCE_MS {
            out.failures.push(format!("mute: largest stored audio gap {gap} ms, mute {want} ms"));
        }
        let (n, _) = holes(&v.audio_ts_ms);
        if n != 1 {
            out.failures.push(format!("mute: {n} stored audio holes over 50 ms, want the mute only"));
        }
    }
    assert_eq!(out.sim.peers[0].audio_sent_at.len(), out.sim.peers[0].audio_sent);
    out.assert_ok("2 min audio mute");
}

#[test]
fn sender_clock_step_of_5_s_at_20_min_is_stored_whole() {
    let mut plan = c_sdk_plan();
    plan.sr_jump = Some((S(20 * 60), S(5)));
    run_hour("sender clock steps +5 s at 20 min (both tracks), SRs on the wall clock", plan).assert_ok("SR jump +5 s");
}
