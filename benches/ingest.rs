//! The whole receive path per frame: SRTP datagrams from a real str0m master → the media
//! peer's hub (str0m ICE/SRTP/RTP, H.264 and Opus depacketizing) → access units → the
//! fragmenter → MKV chunks for the store writer. Time is only what the hub spent (the
//! master's own encryption and the simulated network are not counted).
//!
//! `cargo bench --features testkit --bench ingest`

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use reel::limits::StorageSessionLimits;
use reel::peer::harness::{MediaPlan, Sim};

/// Seconds of fixture media (640x360 30 fps + 20 ms Opus) one iteration publishes.
const SECS: u64 = 10;

/// One session of `SECS` s: (hub time, frames stored, datagrams into the hub).
fn one_session() -> (Duration, u64, u64) {
    let mut sim = Sim::new(StorageSessionLimits::default());
    if let Err(e) = sim.add_master(MediaPlan::fixture(Duration::from_secs(SECS))) {
        panic!("master: {e}");
    }
    sim.run_for(Duration::from_secs(SECS + 2));
    let frames =
        sim.peers.first().and_then(|p| p.judged().ok()).map_or(0, |v| (v.video_frames + v.audio_frames) as u64);
    (sim.hub_busy, frames, sim.hub_datagrams)
}

fn bench(c: &mut Criterion) {
    let (busy, frames, datagrams) = one_session();
    assert!(frames > 0, "the bench session stored nothing");
    println!(
        "ingest: {frames} frames from {datagrams} datagrams in {SECS} s of media: {:.1} µs/frame, {:.1} µs/datagram, \
         {:.3} ms hub CPU per session-second",
        busy.as_secs_f64() * 1e6 / frames as f64,
        busy.as_secs_f64() * 1e6 / datagrams as f64,
        busy.as_secs_f64() * 1e3 / SECS as f64,
    );
    let mut g = c.benchmark_group("ingest");
    g.sample_size(10);
    g.throughput(Throughput::Elements(frames));
    g.bench_function("srtp datagrams -> hub -> MKV chunks, 10 s session (per frame)", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| one_session().0).sum())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
