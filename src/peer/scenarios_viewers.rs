//! Scenario tests of live viewers (JoinStorageSessionAsViewer) on the deterministic harness:
//! a real hub, str0m masters and str0m viewers on fake time (see [`super::harness_viewer`]).

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use super::harness::{LATENCY, MediaPlan, Sim, Verdict, Verdicts, channel_of};
use super::hub::EndReason;
use crate::limits::StorageSessionLimits;

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

fn sim() -> Sim {
    Sim::new(StorageSessionLimits::default())
}

/// Closes master `i`'s session and judges what it stored.
fn stored(sim: &mut Sim, i: usize) -> Verdicts {
    let id = sim.peers[i].session;
    sim.hub.close(id, EndReason::Closed("test over".into()), sim.now);
    sim.run_for(MS(1));
    sim.peers[i].judged().unwrap_or_else(|e| panic!("{e}"))
}

/// Every viewer's video starts with a keyframe and has no hole.
fn assert_decodable(sim: &Sim) {
    for (i, v) in sim.viewers.iter().enumerate() {
        assert_eq!(v.frames_before_keyframe(), 0, "viewer {i} got frames before a keyframe");
        assert!(v.video.iter().all(|f| f.contiguous), "viewer {i} has a hole in its video");
    }
}

#[test]
fn three_viewers_get_every_frame_and_the_store_is_unchanged() {
    let mut sim = sim();
    let m = sim.add_master(MediaPlan::fixture(S(6))).expect("master");
    for id in ["v1", "v2", "v3"] {
        sim.add_viewer(&channel_of(m), id).expect("viewer");
    }
    sim.run_for(S(8));
    assert_decodable(&sim);
    for (i, v) in sim.viewers.iter().enumerate() {
        assert!(v.connected.is_some(), "viewer {i} connected");
        assert!(v.video.len() >= 170, "viewer {i}: {} video frames of 180", v.video.len());
        assert!(v.audio >= 280, "viewer {i}: {} audio frames", v.audio);
        assert!(v.ended.is_none());
    }
    let stats = sim.hub.viewer_stats(sim.viewers[0].session).expect("live");
    assert!(stats.video_frames >= 170, "{stats:?}");
    let summary = sim.hub.summaries(sim.now);
    assert_eq!(summary.iter().map(|s| s.viewers).collect::<Vec<_>>(), vec![3], "the sessions dashboard counts them");
    let v = stored(&mut sim, m);
    assert_eq!(v.video_frames, 180, "{v:?}");
    assert!(v.audio_frames >= 295, "{v:?}");
    assert_eq!(v.fragments, 3, "{v:?}");
}

#[test]
fn a_viewer_that_joins_before_the_master_gets_its_media() {
    let mut sim = sim();
    let v = sim.add_viewer(&channel_of(0), "early").expect("viewer");
    sim.run_for(S(20));
    assert!(sim.viewers[v].connected.is_some(), "the viewer connects to the storage session alone");
    assert!(sim.viewers[v].video.is_empty() && sim.viewers[v].ended.is_none());
    let m = sim.add_master(MediaPlan::fixture(S(6))).expect("master");
    sim.run_for(S(8));
    assert_decodable(&sim);
    assert!(sim.viewers[v].video.len() >= 170, "{} video frames", sim.viewers[v].video.len());
    assert!(sim.viewers[v].audio >= 280);
    assert_eq!(stored(&mut sim, m).video_frames, 180);
}

#[test]
fn a_viewer_joining_mid_gop_asks_for_a_keyframe_and_starts_with_one() {
    let mut sim = sim();
    let m = sim.add_master(MediaPlan::fixture(S(10))).expect("master");
    sim.run_for(MS(3300));
    let asked_before = sim.peers[m].keyframe_requests;
    let v = sim.add_viewer(&channel_of(m), "late").expect("viewer");
    sim.run_for(S(4));
    let viewer = &sim.viewers[v];
    assert!(sim.peers[m].keyframe_requests > asked_before, "the join asked the master for a keyframe");
    assert_decodable(&sim);
    let connected = viewer.connected.expect("connected");
    let first = viewer.first_keyframe().expect("a keyframe");
    // The harness master does not encode on request: the keyframe is the next one of its
    // clip (a real encoder answers within one RTT + encode time); never later than a GOP.
    assert!(first - connected <= S(2), "first keyframe {:?} after connecting", first - connected);
}

#[test]
fn a_rejoin_with_the_same_client_id_replaces_the_older_viewer() {
    let mut sim = sim();
    let m = sim.add_master(MediaPlan::fixture(S(8))).expect("master");
    let old = sim.add_viewer(&channel_of(m), "same").expect("viewer");
    sim.run_for(S(2));
    let new = sim.add_viewer(&channel_of(m), "same").expect("viewer");
    sim.run_for(MS(1));
    assert_eq!(sim.viewers[old].ended.as_ref().map(|e| e.reason.clone()), Some(EndReason::Replaced));
    sim.run_for(S(4));
    assert!(sim.viewers[new].video.len() >= 90, "{}", sim.viewers[new].video.len());
    assert_eq!(sim.hub.viewers_of(&channel_of(m)), vec![sim.viewers[new].session]);
    assert_eq!(sim.viewers[new].frames_before_keyframe(), 0);
}

#[test]
fn a_viewers_nacks_are_answered_from_its_retransmission_buffer() {
    let mut sim = sim();
    let m = sim.add_master(MediaPlan::fixture(S(6))).expect("master");
    let lossy = sim.add_viewer(&channel_of(m), "lossy").expect("viewer");
    let clean = sim.add_viewer(&channel_of(m), "clean").expect("viewer");
    let dropped = Rc::new(RefCell::new(HashSet::new()));
    let seen = dropped.clone();
    // Lose every 20th original video packet to the lossy viewer, once each, after its
    // first 20 and in its first 5 s of media (a loss before the first packet a receiver
    // sees, or of the very last packet, shows no gap to NACK).
    let mut originals = 0u32;
    let mut first_ts = None;
    let h264 = [108, 127, 123, 112, 114]; // the viewer offer's H.264 types (not their RTX)
    sim.downlink = Some(Box::new(move |i, rtp| match rtp {
        Some(r) if i == lossy && h264.contains(&r.pt) => {
            originals += 1;
            let early = r.timestamp.wrapping_sub(*first_ts.get_or_insert(r.timestamp)) < 5 * 90_000;
            if originals > 20 && early && r.seq % 20 == 7 && seen.borrow_mut().insert(r.seq) {
                Verdict::Drop
            } else {
                Verdict::Deliver
            }
        }
        _ => Verdict::Deliver,
    }));
    sim.run_for(S(8));
    assert!(dropped.borrow().len() >= 5, "packets were lost: {}", dropped.borrow().len());
    let (l, c) = (&sim.viewers[lossy], &sim.viewers[clean]);
    assert!(l.nacks > 0, "the lossy viewer sent NACKs");
    assert!(l.video.iter().all(|f| f.contiguous), "retransmissions filled every hole");
    assert_eq!(l.video.len(), c.video.len(), "the lossy viewer got every frame the clean one got");
    // The master was not asked: NACKs never go upstream.
    let v = stored(&mut sim, m);
    assert_eq!(v.video_frames, 180);
}

#[test]
fn a_viewer_that_stops_reading_stalls_neither_the_others_nor_the_store() {
    let mut sim = sim();
    let m = sim.add_master(MediaPlan::fixture(S(30))).expect("master");
    let stuck = sim.add_viewer(&channel_of(m), "stuck").expect("viewer");
    let fine = sim.add_viewer(&channel_of(m), "fine").expect("viewer");
    sim.run_for(S(1));
    sim.viewers[stuck].reading = false;
    sim.run_for(S(31));
    assert_decodable(&sim);
    assert!(sim.viewers[fine].video.len() >= 890, "{}", sim.viewers[fine].video.len());
    let ended = sim.viewers[stuck].ended.as_ref().map(|e| e.reason.clone());
    assert_eq!(ended, Some(EndReason::Disconnected), "the stuck viewer ends when ICE consent fails");
    assert!(sim.viewers[fine].ended.is_none());
    assert_eq!(stored(&mut sim, m).video_frames, 900);
}

#[test]
fn a_pli_flood_reaches_the_master_at_most_once_per_interval() {
    let mut sim = sim();
    let m = sim.add_master(MediaPlan::fixture(S(10))).expect("master");
    let v = sim.add_viewer(&channel_of(m), "flood").expect("viewer");
    sim.run_for(S(2));
    let before = sim.peers[m].keyframe_requests;
    sim.viewers[v].pli_flood = true;
    sim.run_for(S(5));
    let flood_requests = sim.hub.viewer_stats(sim.viewers[v].session).expect("live").keyframe_requests;
    let forwarded = sim.peers[m].keyframe_requests - before;
    assert!(flood_requests >= 50, "the viewer flooded: {flood_requests}");
    // 5 s / 500 ms = 10 viewer requests at most, plus the store's own (one per fragment).
    assert!(forwarded <= 10 + 4, "{forwarded} keyframe requests reached the master");
    let sent = sim.peers[m].video_sent;
    assert_eq!(stored(&mut sim, m).video_frames, sent);
}

#[test]
fn talk_back_reaches_the_master_and_is_not_stored() {
    let mut sim = sim();
    let m = sim.add_master(MediaPlan::fixture(S(6))).expect("master");
    let a = sim.add_viewer(&channel_of(m), "talker").expect("viewer");
    let b = sim.add_viewer(&channel_of(m), "quiet").expect("viewer");
    sim.run_for(S(1));
    sim.viewers[a].talking = true;
    sim.run_for(S(3));
    let heard = sim.peers[m].talk_received;
    assert!(heard >= 100, "the master heard {heard} talk-back packets");
    // A second talker takes the floor; the first is no longer forwarded while it talks.
    sim.viewers[b].talking = true;
    sim.run_for(S(2));
    let (sa, sb) = (sim.hub.viewer_stats(sim.viewers[a].session), sim.hub.viewer_stats(sim.viewers[b].session));
    let (sa, sb) = (sa.expect("live"), sb.expect("live"));
    assert!(sb.talk_packets >= 80 && sb.talk_dropped == 0, "{sb:?}");
    assert!(sa.talk_dropped >= 80, "{sa:?}");
    let v = stored(&mut sim, m);
    assert!((295..=305).contains(&v.audio_frames), "only the master's audio is stored: {v:?}");
}

#[test]
fn viewers_end_after_the_masters_session_when_no_newer_one_comes() {
    let mut sim = sim();
    let m = sim.add_master(MediaPlan::fixture(S(20))).expect("master");
    let v = sim.add_viewer(&channel_of(m), "v").expect("viewer");
    sim.run_for(S(2));
    sim.hub.close(sim.peers[m].session, EndReason::Closed("superseded".into()), sim.now);
    sim.run_for(S(9));
    assert!(sim.viewers[v].ended.is_none(), "waits for the channel's next session");
    sim.run_for(S(2));
    assert_eq!(sim.viewers[v].ended.as_ref().map(|e| e.reason.clone()), Some(EndReason::MasterEnded));
}

#[test]
fn a_newer_session_of_the_channel_keeps_its_viewers() {
    let mut sim = sim();
    let m = sim.add_master(MediaPlan::fixture(S(20))).expect("master");
    let v = sim.add_viewer(&channel_of(m), "v").expect("viewer");
    sim.run_for(S(2));
    // JoinStorageSession again: the old session closes before the new one is added.
    sim.hub.close(sim.peers[m].session, EndReason::Closed("superseded".into()), sim.now);
    sim.run_for(S(1));
    let got = sim.viewers[v].video.len();
    // The newer master session of the same channel (the harness names channels by index).
    let mut again = MediaPlan::fixture(S(4));
    again.video_rtp_base = 1_000_000;
    let n = add_master_on(&mut sim, &channel_of(m), again);
    sim.run_for(S(5));
    assert!(sim.viewers[v].ended.is_none());
    assert!(sim.viewers[v].video.len() >= got + 110, "{} then {}", got, sim.viewers[v].video.len());
    assert_decodable(&sim);
    let _ = n;
}

/// Adds a master whose session belongs to `channel` (not its own index's channel).
fn add_master_on(sim: &mut Sim, channel: &str, plan: MediaPlan) -> usize {
    sim.add_master_on(channel, plan).expect("master")
}

#[test]
fn a_viewer_alone_ends_after_the_no_master_limit() {
    let mut sim = sim();
    let v = sim.add_viewer(&channel_of(0), "alone").expect("viewer");
    sim.run_for(S(179));
    assert!(sim.viewers[v].ended.is_none());
    sim.run_for(S(2));
    assert_eq!(sim.viewers[v].ended.as_ref().map(|e| e.reason.clone()), Some(EndReason::NoMaster));
}

#[test]
fn closing_a_viewer_for_its_signaling_leaves_the_master_and_others() {
    let mut sim = sim();
    let m = sim.add_master(MediaPlan::fixture(S(6))).expect("master");
    let a = sim.add_viewer(&channel_of(m), "a").expect("viewer");
    let b = sim.add_viewer(&channel_of(m), "b").expect("viewer");
    sim.run_for(S(2));
    sim.hub.close_viewer(sim.viewers[a].session, EndReason::SignalingClosed, sim.now);
    sim.run_for(S(5));
    assert_eq!(sim.viewers[a].ended.as_ref().map(|e| e.reason.clone()), Some(EndReason::SignalingClosed));
    assert!(sim.viewers[b].ended.is_none() && sim.viewers[b].video.len() >= 170);
    assert_eq!(stored(&mut sim, m).video_frames, 180);
}

/// The hub sends a viewer's packets in the pass that wrote them (`Rtc::poll_stream_transmit`):
/// a frame reaches the viewer two network hops after the master sent it.
#[test]
fn a_forwarded_frame_leaves_in_the_pass_its_last_packet_arrived_in() {
    let mut sim = sim();
    let m = sim.add_master(MediaPlan::fixture(S(4))).expect("master");
    sim.add_viewer(&channel_of(m), "v1").expect("viewer");
    sim.run_for(S(5));
    let (p, v) = (&sim.peers[m], &sim.viewers[0]);
    let t0 = p.media_start().expect("media started");
    let n = v.video.len();
    assert!(n >= 60 && n <= p.video_sent_at.len(), "{n} frames received of {}", p.video_sent_at.len());
    // The viewer's frames are the master's last `n` (it starts at a keyframe, then has no hole).
    let sent = &p.video_sent_at[p.video_sent_at.len() - n..];
    let delays: Vec<Duration> =
        v.video.iter().zip(sent).map(|(f, s)| f.at.saturating_duration_since(t0 + *s)).collect();
    // Two network hops and nothing else: no wait for the viewer's next timer.
    let (min, max) = (delays.iter().min().copied(), delays.iter().max().copied());
    assert!(min >= Some(2 * LATENCY) && max <= Some(2 * LATENCY + MS(1)), "master → viewer {min:?}..{max:?}");
}
