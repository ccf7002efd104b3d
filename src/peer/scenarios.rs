//! Scenario tests of the media peer on the deterministic harness ([`super::testkit`]):
//! real str0m on both ends, fake time, a simulated network.

use std::time::Duration;

use super::hub::EndReason;
use super::testkit::{MediaPlan, Sim, Verdict, Verdicts};
use crate::limits::StorageSessionLimits;

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

fn sim() -> Sim {
    Sim::new(StorageSessionLimits::default())
}

/// Runs one master publishing `plan`, then closes the session; returns its verdicts.
fn run_one(mut sim: Sim, plan: MediaPlan, run: Duration) -> (Sim, Verdicts) {
    let i = sim.add_master(plan).expect("master");
    sim.run_for(run);
    let id = sim.peers[i].session;
    sim.hub.close(id, EndReason::Closed("test over".into()), sim.now);
    sim.run_for(MS(1));
    let v = sim.peers[i].judged().unwrap_or_else(|e| panic!("{e}"));
    (sim, v)
}

#[test]
fn clean_session_stores_every_frame() {
    let (sim, v) = run_one(sim(), MediaPlan::fixture(S(6)), S(8));
    let p = &sim.peers[0];
    assert!(p.connected.is_some());
    assert_eq!(p.video_sent, 180);
    assert_eq!(v.video_frames, 180, "{v:?}");
    assert!(v.audio_frames >= 295, "{v:?}");
    assert_eq!(v.fragments, 3, "{v:?}");
    assert!(matches!(p.ended.as_ref().map(|e| &e.reason), Some(EndReason::Closed(_))));
}

/// A 1280x720 SPS (42e01f) for parameter-set changes.
const SPS_720P: &[u8] = &[0x67, 0x42, 0xe0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe4];

type Shared<T> = std::rc::Rc<std::cell::RefCell<T>>;

fn shared<T: Default>() -> Shared<T> {
    Shared::default()
}

#[test]
fn rtp_timestamps_wrapping_past_2_pow_32_stay_monotonic() {
    let mut plan = MediaPlan::fixture(S(6));
    // Both tracks cross 2^32 two seconds into the media.
    plan.video_rtp_base = (1 << 32) - 2 * 90_000;
    plan.audio_rtp_base = (1 << 32) - 2 * 48_000;
    let mut sim = sim();
    let wire: Shared<Vec<u32>> = shared();
    let seen = wire.clone();
    sim.uplink = Box::new(move |u| {
        if u.is_video() {
            seen.borrow_mut().push(u.rtp.map_or(0, |r| r.timestamp));
        }
        Verdict::Deliver
    });
    let (_, v) = run_one(sim, plan, S(8));
    // str0m put our media time on the wire without re-offsetting it: it wrapped there.
    let wire = wire.borrow();
    assert!(wire.iter().any(|&t| t > 0xfff0_0000) && wire.iter().any(|&t| t < 0x0010_0000), "no wrap on the wire");
    assert_eq!(v.video_frames, 180, "{v:?}");
    assert!(v.audio_frames >= 295, "{v:?}");
    assert_eq!(v.fragments, 3, "{v:?}");
    let span = v.video_ts_ms.last().copied().unwrap_or(0) - v.video_ts_ms.first().copied().unwrap_or(0);
    assert!((5_900..=6_050).contains(&span), "video spans {span} ms across the wrap");
}

#[test]
fn dtx_pause_leaves_an_audio_gap_and_keeps_storing() {
    let mut plan = MediaPlan::fixture(S(9));
    plan.audio_pause = Some((S(2), S(5)));
    let (_, v) = run_one(sim(), plan, S(11));
    assert_eq!(v.video_frames, 270, "{v:?}");
    // 9 s of 20 ms packets minus the 3 s pause.
    assert!((290..=300).contains(&v.audio_frames), "{v:?}");
    let gap = v.audio_ts_ms.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!((2_950..=3_100).contains(&gap), "audio gap {gap} ms");
    // Audio after the pause is placed where it belongs, not pulled back to close the gap.
    let (first_v, first_a_after) = (v.video_ts_ms[0], v.audio_ts_ms.iter().find(|&&t| t - v.video_ts_ms[0] > 4_000));
    let resumed = first_a_after.map_or(0, |t| t - first_v);
    assert!((4_950..=5_100).contains(&resumed), "audio resumed at {resumed} ms");
}

#[test]
fn sps_change_starts_a_fragment_with_new_codec_private_data() {
    let mut plan = MediaPlan::fixture(S(12));
    let first = plan.video.clone();
    plan.video = [first.clone(), super::testkit::with_sps(&first, SPS_720P)].concat();
    let (_, v) = run_one(sim(), plan, S(14));
    assert_eq!(v.video_frames, 360, "{v:?}");
    let switch = v.sizes.iter().position(|&s| s == (1280, 720)).expect("a 720p fragment");
    assert!(switch > 0 && v.sizes[..switch].iter().all(|&s| s == (640, 360)), "{:?}", v.sizes);
    assert!(v.sizes[switch..].iter().all(|&s| s == (1280, 720)), "{:?}", v.sizes);
    // The new codec data starts exactly at the first IDR carrying it (6 s in).
    let at = v.starts_ms[switch] as i64 - v.video_ts_ms[0];
    assert!((5_980..=6_020).contains(&at), "720p fragment starts at {at} ms");
}

#[test]
fn nack_recovers_lost_video_packets() {
    let mut sim = sim();
    let rtx: Shared<usize> = shared();
    let dropped: Shared<Vec<u16>> = shared();
    let (r, d) = (rtx.clone(), dropped.clone());
    sim.uplink = Box::new(move |u| {
        if u.is_video_rtx() {
            *r.borrow_mut() += 1;
        }
        let Some(h) = u.rtp.filter(|_| u.is_video()) else { return Verdict::Deliver };
        // Lose every 25th video packet once, between 1 s and 4 s.
        if (S(1)..S(4)).contains(&u.at) && h.seq % 25 == 0 && !d.borrow().contains(&h.seq) {
            d.borrow_mut().push(h.seq);
            return Verdict::Drop;
        }
        Verdict::Deliver
    });
    let (sim, v) = run_one(sim, MediaPlan::fixture(S(6)), S(8));
    assert!(dropped.borrow().len() >= 5, "dropped {:?}", dropped.borrow());
    assert!(*rtx.borrow() >= dropped.borrow().len(), "{} retransmissions", rtx.borrow());
    assert_eq!(v.video_frames, 180, "{v:?}");
    assert_eq!(v.fragments, 3, "{v:?}");
    let stats = sim.peers[0].ended.as_ref().expect("ended").stats;
    assert_eq!(stats.fragmenter.dropped.loss, 0, "{stats:?}");
}

#[test]
fn unrecovered_loss_is_not_stored_as_a_broken_fragment() {
    let mut sim = sim();
    let lost_at: Shared<Option<Duration>> = shared();
    let l = lost_at.clone();
    sim.uplink = Box::new(move |u| {
        // Retransmissions never arrive; a burst of video packets 2.5 s in is lost for good.
        if u.is_video_rtx() {
            return Verdict::Drop;
        }
        if u.is_video() && (MS(2_500)..MS(2_560)).contains(&u.at) {
            l.borrow_mut().get_or_insert(u.at);
            return Verdict::Drop;
        }
        Verdict::Deliver
    });
    let i = sim.add_master(MediaPlan::fixture(S(8))).expect("master");
    sim.run_for(MS(2_400));
    let requests_before = sim.peers[i].keyframe_requests;
    sim.run_for(MS(7_600));
    let after = sim.peers[i].keyframe_requests;
    let id = sim.peers[i].session;
    sim.hub.close(id, EndReason::Closed("test over".into()), sim.now);
    sim.run_for(MS(1));
    assert!(lost_at.borrow().is_some());
    let p = &sim.peers[i];
    // Every stored fragment is whole: starts at a keyframe, no hole in its video.
    let v = p.judged().unwrap_or_else(|e| panic!("{e}"));
    assert!(v.video_frames < 240 && v.video_frames >= 150, "{v:?}");
    let stats = p.ended.as_ref().expect("ended").stats;
    assert!(stats.fragmenter.dropped.loss + stats.fragmenter.dropped.waiting_for_keyframe > 0, "{stats:?}");
    assert!(after > requests_before, "no PLI after the loss ({requests_before} → {after})");
    // Storing resumed after the damaged GOP.
    let t0 = v.video_ts_ms[0];
    assert!(v.video_ts_ms.iter().any(|t| t - t0 > 6_000), "{v:?}");
}

#[test]
fn reordered_packets_are_stored_in_order() {
    let mut sim = sim();
    let delayed: Shared<usize> = shared();
    let d = delayed.clone();
    sim.uplink = Box::new(move |u| match u.rtp {
        Some(h) if h.seq % 7 == 0 => {
            *d.borrow_mut() += 1;
            Verdict::Delay(MS(25))
        }
        _ => Verdict::Deliver,
    });
    let (_, v) = run_one(sim, MediaPlan::fixture(S(6)), S(8));
    assert!(*delayed.borrow() > 50);
    assert_eq!(v.video_frames, 180, "{v:?}");
    assert!(v.audio_frames >= 295, "{v:?}");
    assert_eq!(v.fragments, 3, "{v:?}");
}

#[test]
fn duplicated_packets_are_stored_once() {
    let mut sim = sim();
    sim.uplink = Box::new(|u| if u.rtp.is_some_and(|h| h.seq % 3 == 0) { Verdict::Duplicate } else { Verdict::Deliver });
    let (_, v) = run_one(sim, MediaPlan::fixture(S(6)), S(8));
    assert_eq!(v.video_frames, 180, "{v:?}");
    assert!((295..=300).contains(&v.audio_frames), "{v:?}");
}

#[test]
fn sender_clock_drift_does_not_blow_up_timestamps() {
    let mut plan = MediaPlan::fixture(S(30));
    plan.rtp_rate = 1.005;
    let (_, v) = run_one(sim(), plan, S(32));
    assert_eq!(v.video_frames, 900, "{v:?}");
    assert!(v.fragments >= 14, "{v:?}");
    // Producer time follows the sender (its reports), server time the arrival: 0.5 % of
    // 30 s is 150 ms at most, never a growing blow-up.
    let worst = v.skews_ms.iter().map(|s| (s - v.skews_ms[0]).abs()).max().unwrap_or(0);
    assert!(worst <= 250, "skews {:?}", v.skews_ms);
    assert!(v.durations_ms.iter().all(|&d| d <= 3_100), "{:?}", v.durations_ms);
}
