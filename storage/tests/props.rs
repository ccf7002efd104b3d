//! Property test: random interleavings of writes, abandoned fragments and restarts across
//! streams always leave a store whose numbering, listings and contents match a model.

mod common;

use std::collections::HashSet;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use reel_storage::*;

#[derive(Debug, Clone)]
enum Op {
    /// A finished fragment on stream `s` with `chunks` chunks.
    Write { s: usize, chunks: u64, producer: u64 },
    /// A fragment dropped after `chunks` chunks (kept as a truncated prefix if > 0).
    Abandon { s: usize, chunks: u64, producer: u64 },
    /// Close and reopen the store.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3usize, 1..4u64, 0..50u64).prop_map(|(s, chunks, producer)| Op::Write { s, chunks, producer }),
        2 => (0..3usize, 0..3u64, 0..50u64).prop_map(|(s, chunks, producer)| Op::Abandon { s, chunks, producer }),
        1 => Just(Op::Restart),
    ]
}

/// What the model expects of one fragment.
#[derive(Debug, Clone)]
struct Expect {
    key: u64,
    producer: u64,
    server: u64,
    chunks: u64,
    truncated: bool,
}

async fn check(store: &Store, model: &[Vec<Expect>], numbers: &[Vec<FragmentNumber>], range: (u64, u64), page: usize) {
    let mut seen = HashSet::new();
    for (si, exp) in model.iter().enumerate() {
        let s = store.stream(&format!("s{si}")).unwrap();
        let infos = s.latest_fragments(usize::MAX);
        assert_eq!(infos.len(), exp.len(), "stream {si}");
        for (i, (info, e)) in infos.iter().zip(exp).enumerate() {
            assert_eq!(info.number, numbers[si][i]);
            assert!(seen.insert(info.number), "duplicate number across streams");
            assert_eq!(
                (info.producer_ts_ms, info.server_ts_ms, info.chunk_count as u64, info.truncated),
                (e.producer, e.server, e.chunks, e.truncated)
            );
            let f = s.read_fragment(info.number).await.unwrap();
            assert_eq!(f.header, Bytes::from(format!("header {si}/{}", e.key)));
            for (c, ch) in f.chunks.iter().enumerate() {
                assert_eq!(ch.data, chunk_bytes(si as u64, e.key, c as u64, 64));
            }
        }
        for w in infos.windows(2) {
            assert!(w[0].number < w[1].number);
        }
        for kind in [TimestampKind::Producer, TimestampKind::Server] {
            let r = TimestampRange { kind, start_ms: T0 + range.0, end_ms: T0 + range.0 + range.1 };
            let want: Vec<FragmentNumber> = infos
                .iter()
                .filter(|i| {
                    let t = if kind == TimestampKind::Producer { i.producer_ts_ms } else { i.server_ts_ms };
                    t >= r.start_ms && t <= r.end_ms
                })
                .map(|i| i.number)
                .collect();
            let mut got = Vec::new();
            let mut p = s.list_fragments(r, page).unwrap();
            loop {
                got.extend(p.fragments.iter().map(|i| i.number));
                let Some(t) = p.next_token else { break };
                p = s.list_fragments_after(&t, page).unwrap();
            }
            assert_eq!(got, want);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_match_the_model(ops in proptest::collection::vec(op(), 1..25), range in (0u64..60, 0u64..60), page in 1usize..5) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let mut h = Harness::new(Backend::Fs).await;
            for s in 0..3 {
                h.store.create_stream(&format!("s{s}"), 24).await.unwrap();
            }
            let mut model: Vec<Vec<Expect>> = vec![Vec::new(); 3];
            let mut numbers: Vec<Vec<FragmentNumber>> = vec![Vec::new(); 3];
            let mut key = 0u64;
            let mut server = 0u64;
            for op in ops {
                key += 1;
                server += 1;
                let finish = matches!(op, Op::Write { .. });
                match op {
                    Op::Restart => h.reopen(|_| {}).await,
                    Op::Write { s, chunks, producer } | Op::Abandon { s, chunks, producer } => {
                        let stream = h.store.stream(&format!("s{s}")).unwrap();
                        let header = Bytes::from(format!("header {s}/{key}"));
                        let mut w = stream.begin_fragment(FragmentStart { producer_ts_ms: T0 + producer, server_ts_ms: T0 + server, header }).await.unwrap();
                        let n = w.number();
                        for c in 0..chunks {
                            w.append_chunk(((c + 1) * 10) as u32, chunk_bytes(s as u64, key, c, 64)).await.unwrap();
                        }
                        if finish {
                            w.finish((chunks * 10) as u32).await.unwrap();
                        } else {
                            drop(w);
                        }
                        if finish || chunks > 0 {
                            model[s].push(Expect { key, producer: T0 + producer, server: T0 + server, chunks, truncated: !finish });
                            numbers[s].push(n);
                        }
                    }
                }
            }
            // Abandoned fragments are published by the next begin, a sweep, seal_all or recovery.
            h.store.seal_all().await;
            check(&h.store, &model, &numbers, range, page).await;
            h.reopen(|_| {}).await;
            check(&h.store, &model, &numbers, range, page).await;
        });
    }
}
