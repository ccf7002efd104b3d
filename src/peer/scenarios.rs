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
