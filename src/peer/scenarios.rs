//! Scenario tests of the media peer on the deterministic harness ([`super::harness`]):
//! real str0m on both ends, fake time, a simulated network.

use std::time::Duration;

use super::harness::{MediaPlan, Sim, Verdict, Verdicts};
use super::hub::EndReason;
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
    plan.video = [first.clone(), super::harness::with_sps(&first, SPS_720P)].concat();
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
    let mut n = 0u32;
    sim.uplink = Box::new(move |u| {
        if u.is_video_rtx() {
            *r.borrow_mut() += 1;
        }
        let Some(h) = u.rtp.filter(|_| u.is_video()) else { return Verdict::Deliver };
        n += 1;
        // Lose every 10th original video packet once, between 1 s and 4 s.
        if (S(1)..S(4)).contains(&u.at) && n.is_multiple_of(10) {
            d.borrow_mut().push(h.seq);
            return Verdict::Drop;
        }
        Verdict::Deliver
    });
    let i = sim.add_master(MediaPlan::fixture(S(6))).expect("master");
    sim.run_for(S(8));
    let id = sim.peers[i].session;
    // str0m reported ingress stats (every 5 s): the session has its labelled series...
    assert_eq!(crate::observe::metrics::session_series_count(id), 2);
    sim.hub.close(id, EndReason::Closed("test over".into()), sim.now);
    sim.run_for(MS(1));
    // ...and they are gone once it ended.
    assert_eq!(crate::observe::metrics::session_series_count(id), 0);
    let v = sim.peers[i].judged().unwrap_or_else(|e| panic!("{e}"));
    assert!(dropped.borrow().len() >= 5, "dropped {:?}", dropped.borrow());
    assert!(*rtx.borrow() >= dropped.borrow().len(), "{} retransmissions", rtx.borrow());
    assert_eq!(v.video_frames, 180, "{v:?}");
    assert_eq!(v.fragments, 3, "{v:?}");
    let stats = sim.peers[0].ended.as_ref().expect("ended").stats;
    assert_eq!(stats.fragmenter.dropped.loss, 0, "{stats:?}");
    assert!(stats.nacks > 0, "{stats:?}");
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
    let mut n = 0u32;
    // Every 7th RTP packet arrives 25 ms late (after a few of its successors). Not in the
    // first second: str0m's receive buffer drops packets older than the very first one it
    // saw, so reordering right at the start costs the first GOP (PLI, next IDR).
    sim.uplink = Box::new(move |u| {
        if u.rtp.is_none() || u.at < S(1) {
            return Verdict::Deliver;
        }
        n += 1;
        if n.is_multiple_of(7) {
            *d.borrow_mut() += 1;
            return Verdict::Delay(MS(25));
        }
        Verdict::Deliver
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
    sim.uplink =
        Box::new(|u| if u.rtp.is_some_and(|h| h.seq % 3 == 0) { Verdict::Duplicate } else { Verdict::Deliver });
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
    // Stored time follows arrival (the drift is corrected), so 60 frames of a clock 0.5 %
    // fast may span just under the 2 s target: fragments last 2 or 3 s (1 s GOP).
    assert!(v.fragments >= 10, "{} fragments, {:?}", v.fragments, v.durations_ms);
    // Producer time and server time stay a constant distance apart: 0.5 % of 30 s is
    // 150 ms at most, never a growing blow-up.
    let worst = v.skews_ms.iter().map(|s| (s - v.skews_ms[0]).abs()).max().unwrap_or(0);
    assert!(worst <= 250, "skews {:?}", v.skews_ms);
    assert!(worst <= 60, "the corrected timeline follows arrival: skews {:?}", v.skews_ms);
    assert!(v.durations_ms.iter().all(|&d| d <= 3_100), "{:?}", v.durations_ms);
}

#[test]
fn configured_fragment_target_is_used() {
    let limits = StorageSessionLimits { fragment_target_ms: 4_000, ..StorageSessionLimits::default() };
    let (_, v) = run_one(Sim::new(limits), MediaPlan::fixture(S(12)), S(14));
    assert_eq!(v.video_frames, 360, "{} fragments {:?}", v.fragments, v.durations_ms);
    // 1 s GOP: cut at the first IDR at or after 4 s; the last one ends with the session.
    let (last, full) = v.durations_ms.split_last().expect("fragments");
    assert!(full.iter().all(|&d| (4_000..4_100).contains(&d)), "{:?}", v.durations_ms);
    assert!(*last <= 4_100 && v.fragments == 3, "{:?}", v.durations_ms);
}

/// Closes every live session and settles.
fn close_all(sim: &mut Sim) {
    for id in sim.hub.session_ids() {
        sim.hub.close(id, EndReason::Closed("test over".into()), sim.now);
    }
    sim.run_for(MS(1));
}

#[test]
fn shared_socket_demuxes_sessions_and_counts_strangers() {
    let mut sim = sim();
    let sent: Shared<[u64; 2]> = shared();
    let s = sent.clone();
    sim.uplink = Box::new(move |u| {
        s.borrow_mut()[u.master] += u.data.len() as u64;
        Verdict::Deliver
    });
    let a = sim.add_master(MediaPlan::fixture(S(6))).expect("a");
    sim.run_for(MS(500));
    let b = sim.add_master(MediaPlan::fixture(S(6))).expect("b");
    for n in 0..20u16 {
        let stranger = std::net::SocketAddr::from(([127, 0, 0, 1], 50_000 + n));
        sim.inject(stranger, vec![0x80, 0x60, 0, n as u8, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6]);
    }
    sim.run_for(S(8));
    // Stop counting and let what is in flight land before the sessions close (with the
    // sendrecv audio of the offer the masters also send RTCP for it, at any moment).
    sim.uplink = Box::new(|_| Verdict::Drop);
    sim.run_for(MS(50));
    close_all(&mut sim);
    assert!(sim.hub.stats().unknown_datagrams >= 20, "{:?}", sim.hub.stats());
    for (i, p) in [a, b].into_iter().map(|i| (i, &sim.peers[i])) {
        let v = p.judged().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.video_frames, 180, "peer {i}: {v:?}");
        // Every byte a master sent reached its own session, none another's.
        let stats = p.ended.as_ref().expect("ended").stats;
        assert_eq!(stats.bytes, sent.borrow()[i], "peer {i}");
    }
    assert!(sim.hub.is_empty());
}

/// Runs two sessions; with `flood`, thousands of bad datagrams hit the hub meanwhile.
/// Returns the sim (sessions still live) and the number of stranger datagrams sent.
fn flood_run(flood: bool) -> (Sim, u64) {
    let mut sim = sim();
    let captured: Shared<Vec<Vec<u8>>> = shared();
    let c = captured.clone();
    sim.uplink = Box::new(move |u| {
        if u.master == 0 && c.borrow().len() < 200 {
            c.borrow_mut().push(u.data.to_vec());
        }
        Verdict::Deliver
    });
    let victim = sim.add_master(MediaPlan::fixture(S(12))).expect("victim");
    sim.add_master(MediaPlan::fixture(S(12))).expect("bystander");
    sim.run_for(S(2));
    let mut rng = super::harness::Rng::new(0x5eed);
    let mut strangers = 0;
    let victim_addr = sim.peers[victim].addr;
    // 6 s of flood: 40 datagrams every 10 ms = 24 000 datagrams.
    let per_tick = if flood { 40 } else { 0 };
    for _ in 0..600 {
        for _ in 0..per_tick {
            let kind = rng.below(6);
            let mut data = match kind {
                // Truncated or garbled copies of the victim's real datagrams.
                0 | 1 => {
                    let cap = captured.borrow();
                    let mut d = cap.get(rng.below(cap.len() as u64) as usize).cloned().unwrap_or_default();
                    if kind == 0 {
                        d.truncate(rng.below(d.len() as u64 + 1) as usize);
                    } else {
                        for _ in 0..4 {
                            let n = rng.below(d.len().max(1) as u64) as usize;
                            if let Some(b) = d.get_mut(n) {
                                *b ^= rng.next_u64() as u8 | 1;
                            }
                        }
                    }
                    d
                }
                _ => {
                    let len = rng.below(1_400) as usize;
                    rng.bytes(len)
                }
            };
            // Make random ones look like STUN, DTLS, RTP or RTCP to reach deep into str0m.
            if kind >= 2
                && let Some(b) = data.first_mut()
            {
                *b = [0x00, 0x16, 0x80, 0x81][(kind - 2) as usize];
            }
            if rng.below(2) == 0 {
                sim.inject(victim_addr, data);
            } else {
                strangers += 1;
                let port = 50_000 + rng.below(1_000) as u16;
                sim.inject(std::net::SocketAddr::from(([127, 0, 0, 1], port)), data);
            }
        }
        sim.run_for(MS(10));
    }
    sim.run_for(S(6));
    (sim, strangers)
}

#[test]
fn malformed_flood_leaves_other_sessions_untouched() {
    let (mut calm, _) = flood_run(false);
    let (mut flooded, strangers) = flood_run(true);
    let unknown = flooded.hub.stats().unknown_datagrams;
    close_all(&mut calm);
    close_all(&mut flooded);
    assert!(unknown >= strangers, "{unknown} unknown < {strangers} strangers");
    let calm_bystander = calm.peers[1].judged().unwrap_or_else(|e| panic!("{e}"));
    let bystander = flooded.peers[1].judged().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bystander.video_frames, calm_bystander.video_frames);
    assert_eq!(bystander.video_frames, 360, "{bystander:?}");
    assert_eq!(bystander.fragments, calm_bystander.fragments);
    // The victim either survived and kept storing whole fragments, or ended cleanly.
    let victim = &flooded.peers[0];
    let v = victim.judged().unwrap_or_else(|e| panic!("victim: {e}"));
    match &victim.ended.as_ref().expect("ended").reason {
        EndReason::Closed(_) => assert!(v.video_frames >= 300, "victim stored {v:?}"),
        other => assert!(v.fragments > 0, "victim ended with {other:?}"),
    }
}

#[test]
fn idle_session_ends_after_three_minutes_and_flushes() {
    let mut plan = MediaPlan::fixture(S(600));
    plan.active = vec![(Duration::ZERO, S(5))];
    let mut sim = sim();
    let i = sim.add_master(plan).expect("master");
    sim.run_for(S(200));
    let p = &sim.peers[i];
    assert_eq!(p.ended.as_ref().map(|e| e.reason.clone()), Some(EndReason::Idle));
    let at = p.ended_at.expect("ended").as_secs();
    assert!((184..=186).contains(&at), "ended at {at} s");
    assert!(matches!(p.events.last(), Some(reel_media::fragmenter::FragmentEvent::EndFragment { .. })));
    let v = p.judged().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.video_frames, 150, "{v:?}");
}

#[test]
fn session_ends_at_its_maximum_life_with_the_open_fragment_finished() {
    let mut plan = MediaPlan::fixture(S(3_700));
    // Media at the start, a few frames every 2 min (under the idle timeout), then steady
    // media across the 1 h mark.
    plan.active = (1..30).map(|k| (S(k * 120), S(k * 120) + MS(100))).collect();
    plan.active.push((Duration::ZERO, S(3)));
    plan.active.push((S(3_590), S(3_700)));
    let mut sim = sim();
    let i = sim.add_master(plan).expect("master");
    sim.run_for(S(3_610));
    let p = &sim.peers[i];
    assert_eq!(p.ended.as_ref().map(|e| e.reason.clone()), Some(EndReason::MaxLife));
    let at = p.ended_at.expect("ended").as_secs();
    assert!((3_599..=3_601).contains(&at), "ended at {at} s");
    assert!(matches!(p.events.last(), Some(reel_media::fragmenter::FragmentEvent::EndFragment { .. })));
    let frags = super::harness::assemble(&p.events);
    assert!(frags.last().is_some_and(|f| f.ended));
    let v = p.judged().unwrap_or_else(|e| panic!("{e}"));
    // The last fragment holds media from just before the end.
    let last = v.video_ts_ms.last().copied().unwrap_or(0) - v.video_ts_ms.first().copied().unwrap_or(0);
    assert!(last > 3_595_000, "last stored frame at {last} ms");
}

#[test]
fn superseded_session_flushes_its_open_fragment() {
    let mut plan = MediaPlan::fixture(S(600));
    plan.active = vec![(Duration::ZERO, MS(3_500))];
    let mut sim = sim();
    let i = sim.add_master(plan).expect("master");
    sim.run_for(S(4));
    assert!(sim.peers[i].ended.is_none());
    let id = sim.peers[i].session;
    sim.hub.close(id, EndReason::Closed("superseded by a newer session".into()), sim.now);
    sim.run_for(MS(1));
    let p = &sim.peers[i];
    assert!(matches!(p.ended.as_ref().map(|e| &e.reason), Some(EndReason::Closed(r)) if r.contains("superseded")));
    assert!(matches!(p.events.last(), Some(reel_media::fragmenter::FragmentEvent::EndFragment { .. })));
    let v = p.judged().unwrap_or_else(|e| panic!("{e}"));
    // Every frame sent (3.5 s at 30 fps) is stored, the open second fragment included.
    assert_eq!(v.video_frames, p.video_sent, "{v:?}");
    assert_eq!(v.video_frames, 105);
    assert_eq!(v.fragments, 2, "{v:?}");
}

#[test]
fn writer_queue_overflow_drops_the_rest_of_the_fragment_consistently() {
    let mut sim = sim();
    sim.writer_queue = 16;
    let i = sim.add_master(MediaPlan::fixture(S(10))).expect("master");
    sim.run_for(MS(2_500));
    sim.peers[i].writer_paused = true;
    let requests = sim.peers[i].keyframe_requests;
    sim.run_for(S(2));
    sim.peers[i].writer_paused = false;
    sim.run_for(S(8));
    close_all(&mut sim);
    let p = &sim.peers[i];
    let stats = p.ended.as_ref().expect("ended").stats;
    assert!(stats.aborted_fragments >= 1 && stats.dropped_events > 0, "{stats:?}");
    assert!(p.keyframe_requests > requests, "no PLI after the overflow");
    // No fragment has a hole: the cut one is a shorter, whole prefix.
    let v = p.judged().unwrap_or_else(|e| panic!("{e}"));
    assert!(v.video_frames < 300 && v.video_frames > 200, "{v:?}");
    // Storing restarts at the first IDR after the writer caught up (IDRs every second).
    let t0 = v.video_ts_ms[0];
    let resumed = v.video_ts_ms.windows(2).find(|w| w[1] - w[0] > 500).map(|w| w[1] - t0);
    assert!(resumed.is_some_and(|r| r <= 5_100), "storing resumed at {resumed:?} ms");
    assert!(v.video_ts_ms.iter().any(|t| t - t0 > 9_000), "{v:?}");
}

#[test]
fn network_partition_ends_the_session_and_flushes() {
    let mut sim = sim();
    sim.uplink = Box::new(|u| if u.at >= MS(3_500) { Verdict::Drop } else { Verdict::Deliver });
    let i = sim.add_master(MediaPlan::fixture(S(600))).expect("master");
    sim.run_for(S(200));
    let p = &sim.peers[i];
    let ended = p.ended.as_ref().expect("ended");
    // ICE notices the silence long before the idle timeout would.
    assert_eq!(ended.reason, EndReason::Disconnected, "after {:?}", p.ended_at);
    assert!(p.ended_at.is_some_and(|t| t < S(60)), "{:?}", p.ended_at);
    assert!(matches!(p.events.last(), Some(reel_media::fragmenter::FragmentEvent::EndFragment { .. })));
    let v = p.judged().unwrap_or_else(|e| panic!("{e}"));
    assert!((100..=106).contains(&v.video_frames), "{v:?}");
}
