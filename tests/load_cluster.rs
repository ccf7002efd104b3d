//! `reel-load --target reel-cluster` (its library entry, the same code path as the binary)
//! for a few seconds: a private Postgres, nats-server, an S3 server, HAProxy and three nodes
//! of this build's reel inside a network namespace, three cameras entering through the load
//! balancer. Fails (never skips) when Postgres, NATS or HAProxy is missing.

mod common;

use std::time::Duration;

use common::{REGION, ROOT_KEY_ID, ROOT_SECRET};

#[test]
fn netns_load_generator_runs_against_a_three_node_cluster() {
    common::netns::run("netns_load_generator_runs_against_a_three_node_cluster", run);
}

fn run(ns: common::netns::Netns) {
    let bin = std::env::var_os(common::netns::BIN_ENV).unwrap_or_else(|| env!("CARGO_BIN_EXE_reel").into());
    let sessions = 3;
    let cfg = reel_sim::load::LoadConfig {
        sessions,
        ramp_per_sec: 3.0,
        duration: Duration::from_secs(6),
        bitrate_bps: 500_000,
        target: reel_sim::load::Target::ReelCluster,
        reel: reel_sim::load::ReelProcess::Spawn {
            bin: bin.into(),
            listen_ip: ns.reel_ip.parse().expect("ip"),
            extra_config: String::new(),
        },
        bind_ip: ns.master_ip.parse().expect("ip"),
        recorder_ip: ns.reel_ip.parse().expect("ip"),
        access_key_id: ROOT_KEY_ID.into(),
        secret_access_key: ROOT_SECRET.into(),
        region: REGION.into(),
        probe_streams: sessions,
        name_prefix: "it-cluster-load".into(),
        cluster_node_threads: None,
        cluster_nodes: reel_sim::load::CLUSTER_NODES,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let report = rt.block_on(reel_sim::load::run(cfg)).expect("load run");
    println!("{}", report.table());
    assert_eq!(report.sessions_failed, 0, "{:?}", report.failure_examples);
    assert_eq!(report.sessions_connected, sessions);
    assert!(report.storage.fragments >= 2 * sessions, "expected ≥ 2 fragments per stream: {:?}", report.storage);
    assert_eq!(report.sessions_per_node.len(), 3, "three nodes scraped: {:?}", report.sessions_per_node);
    assert_eq!(report.sessions_per_node.values().sum::<f64>(), sessions as f64, "{:?}", report.sessions_per_node);
    assert_eq!(report.non_writer_probes, sessions, "every probe read a non-writer node: {:?}", report.notes);
    assert!(report.close_to_list_fragments_ms.is_some(), "close → ListFragments measured on non-writers");
    assert!(report.packets.reel_session_packets.is_some_and(|p| p > 0), "{:?}", report.packets);
    let media = report.media.as_ref().expect("streams read back");
    assert!(media.sessions.iter().all(|s| s.error.is_none()), "read back from a node: {:?}", media.sessions);
    assert!(report.steady.as_ref().is_some_and(|s| s.recorder_cpu_ms.is_some()), "CPU was sampled from /proc");
}
