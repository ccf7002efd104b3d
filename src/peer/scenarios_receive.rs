//! reel's own receive path over a long session: str0m's receive queue → [`super::media_rx`]
//! (reorder buffer, H.264/Opus depacketizers) → fragmenter, on the deterministic harness.
//!
//! One hour of 1 Mbps video (the fixture's access units padded with a filler NAL unit) and
//! Opus, with 1 % of the original video packets lost (NACK and RTX recover them), 1 % of all
//! packets reordered and 0.5 % duplicated: the reassemblers and str0m's receive bookkeeping
//! (TWCC receipts, pending feedback, queued RTP, sequence windows) stay bounded for the
//! whole hour, and every frame the master sent is stored.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::harness::{MediaPlan, Rng, Sim, Verdict};
use super::hub::EndReason;
use crate::limits::StorageSessionLimits;

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;
const HOUR: Duration = Duration::from_secs(3_600);

/// Bytes per video frame for ≈ 1 Mbps at 30 fps.
const FRAME_BYTES: usize = 1_000_000 / 8 / 30;

/// `au` padded with a filler-data NAL unit (type 12) to at least `size` bytes.
fn padded(au: &[u8], size: usize) -> Vec<u8> {
    let mut out = au.to_vec();
    if out.len() + 6 < size {
        out.extend_from_slice(&[0, 0, 0, 1, 0x0c]);
        out.resize(size - 1, 0xff);
        out.push(0x80);
    }
    out
}

#[test]
fn an_hour_at_1_mbps_with_loss_keeps_receive_state_bounded_and_stores_every_frame() {
    let limits = StorageSessionLimits { max_session_secs: HOUR.as_secs() + 60, ..StorageSessionLimits::default() };
    let mut sim = Sim::new(limits);
    let lost = Rc::new(RefCell::new(0u64));
    let l = lost.clone();
    let mut rng = Rng::new(18);
    sim.uplink = Box::new(move |u| {
        // Not in the first second: a stream's first packet sets where its receive order
        // starts, so a packet reordered before it would be late by definition.
        if u.rtp.is_none() || u.at < S(1) || u.is_video_rtx() {
            return Verdict::Deliver;
        }
        match rng.below(1_000) {
            0..10 if u.is_video() => {
                *l.borrow_mut() += 1;
                Verdict::Drop
            }
            10..20 => Verdict::Delay(MS(15)),
            20..25 => Verdict::Duplicate,
            _ => Verdict::Deliver,
        }
    });
    let mut plan = MediaPlan::fixture(HOUR);
    plan.video = plan.video.iter().map(|au| padded(au, FRAME_BYTES)).collect();
    let i = sim.add_master(plan).expect("master");
    let id = sim.peers[i].session;

    // Sample the receive state every 10 s of the hour.
    let (mut max_held, mut bookkeeping) = (0usize, Vec::new());
    while sim.elapsed() < HOUR + S(2) {
        sim.run_for(S(10));
        if let Some(st) = sim.hub.session_stats(id) {
            max_held = max_held.max(st.rx_held);
            bookkeeping.push(st.rx_bookkeeping);
        }
    }
    let before_close = sim.hub.session_stats(id).expect("session still running");
    sim.hub.close(id, EndReason::Closed("test over".into()), sim.now);
    sim.run_for(MS(1));

    let p = &sim.peers[i];
    let v = p.judged().unwrap_or_else(|e| panic!("{e}"));
    let (video_rx, audio_rx) = before_close.rx;
    let bytes_per_s = before_close.bytes / HOUR.as_secs();
    println!(
        "1 h: {} B/s in, {} video packets lost, NACKs {}, video rx {video_rx:?}, audio rx {audio_rx:?}, \
         max held {max_held}, bookkeeping first/max/last {:?}/{:?}/{:?}",
        bytes_per_s,
        lost.borrow(),
        before_close.nacks,
        bookkeeping.first(),
        bookkeeping.iter().max(),
        bookkeeping.last(),
    );
    assert!(bytes_per_s > 120_000, "not a 1 Mbps session: {bytes_per_s} B/s");
    assert!(*lost.borrow() > 1_000, "only {} video packets lost", lost.borrow());
    // Every frame sent is stored: NACK and RTX recovered every loss, reordering and
    // duplicates changed nothing.
    assert_eq!(v.video_frames, p.video_sent, "{v:?}");
    assert_eq!(v.audio_frames, p.audio_sent, "{v:?}");
    assert_eq!(video_rx.gaps + audio_rx.gaps, 0, "{video_rx:?} {audio_rx:?}");
    // str0m's replay window drops the duplicates; the reordered packets wait in the
    // reassemblers.
    assert!(max_held > 0, "no reordered packet reached the reassemblers");
    // Bounded: the reassemblers never hold more than their hold-back, and str0m's receive
    // bookkeeping at the end of the hour is no larger than in its first minutes.
    assert!(max_held <= 30 + 15, "reassemblers held {max_held} packets");
    let early = bookkeeping.iter().take(12).max().copied().unwrap_or(0);
    let late = bookkeeping.iter().rev().take(12).max().copied().unwrap_or(usize::MAX);
    assert!(late <= early.max(64) * 2, "receive bookkeeping grew: first 2 min ≤ {early}, last 2 min ≤ {late}");
}
