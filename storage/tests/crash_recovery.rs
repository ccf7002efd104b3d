//! Recovery from torn writes and damaged bytes (filesystem backend; S3 holds only sealed,
//! already-recovered segments). A "crash" is simulated by cutting or flipping bytes of a
//! copy of the store's files, then opening the copy.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use reel_storage::*;

const CHUNK: usize = 100;

fn config(root: &Path) -> StoreConfig {
    let mut c = StoreConfig::new(root);
    c.retention_sweep_interval = None;
    c.clock = Arc::new(ManualClock::new(T0));
    c
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

fn segments(root: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for s in std::fs::read_dir(root.join("streams")).unwrap().flatten() {
        for f in std::fs::read_dir(s.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|x| x == "log") {
                v.push(f.path());
            }
        }
    }
    v.sort();
    v
}

/// Start offsets of every record of a segment file (after the 8-byte magic), plus its end.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut v = vec![8];
    let mut pos = 8;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 8 + len;
        v.push(pos);
    }
    v
}

/// Golden image: 3 finished fragments, then a 4th with `torn_chunks` chunks whose FINISH is
/// written only if `finish_last`. Returns (root, finished infos, number of the 4th).
async fn golden(dir: &Path, torn_chunks: u64, finish_last: bool) -> (PathBuf, Vec<FragmentInfo>, FragmentNumber) {
    let root = dir.join("golden");
    let store = Store::open(config(&root)).await.unwrap();
    let s = store.create_stream("cam", 24).await.unwrap();
    let mut infos = Vec::new();
    for f in 0..3 {
        infos.push(write_fragment(&s, 1, f, T0 + f * 1000, T0 + f * 1000, 3, CHUNK).await);
    }
    let mut w = s
        .begin_fragment(FragmentStart {
            producer_ts_ms: T0 + 3000,
            server_ts_ms: T0 + 3000,
            header: "header 1/3".into(),
        })
        .await
        .unwrap();
    let n = w.number();
    for c in 0..torn_chunks {
        w.append_chunk(((c + 1) * 40) as u32, chunk_bytes(1, 3, c, CHUNK)).await.unwrap();
    }
    if finish_last {
        w.finish((torn_chunks * 40) as u32).await.unwrap();
    } else {
        drop(w);
    }
    drop(s);
    drop(store);
    (root, infos, n)
}

async fn check_intact(store: &Store, infos: &[FragmentInfo]) {
    let s = store.stream("cam").unwrap();
    for (f, i) in infos.iter().enumerate() {
        let frag = s.read_fragment(i.number).await.unwrap();
        assert_eq!(frag.info, *i);
        assert_fragment(&frag, 1, f as u64, CHUNK);
    }
}

/// Cuts the last segment at every offset from the start of the torn fragment to its end and
/// checks the torn-fragment rule: complete chunks kept as a shorter fragment, none → dropped.
#[tokio::test]
async fn truncation_at_every_offset_of_the_torn_fragment() {
    let dir = tempfile::tempdir().unwrap();
    let (root, infos, torn) = golden(dir.path(), 3, false).await;
    let seg = segments(&root).pop().unwrap();
    let image = std::fs::read(&seg).unwrap();
    let offs = record_offsets(&image);
    assert_eq!(*offs.last().unwrap(), image.len());
    // Records: 3 × (BEGIN, 3 CHUNK, FINISH) = 15, then BEGIN + 3 CHUNK of the torn one.
    let torn_begin = offs[15];
    let rel = seg.strip_prefix(&root).unwrap().to_path_buf();
    for cut in torn_begin..=image.len() {
        let case = dir.path().join(format!("cut-{cut}"));
        copy_dir(&root, &case);
        std::fs::OpenOptions::new().write(true).open(case.join(&rel)).unwrap().set_len(cut as u64).unwrap();
        let store = Store::open(config(&case)).await.unwrap();
        check_intact(&store, &infos).await;
        // offs[16] ends the torn BEGIN; offs[17..=19] end its three chunks.
        let complete_chunks = offs[17..=19].iter().filter(|&&o| o <= cut).count() as u32;
        let s = store.stream("cam").unwrap();
        let rep = store.recovery_report();
        assert_eq!(
            rep.bytes_truncated,
            (cut - offs.iter().copied().filter(|&o| o <= cut).max().unwrap()) as u64,
            "cut {cut}"
        );
        if complete_chunks == 0 {
            assert!(matches!(s.read_fragment(torn).await, Err(StoreError::FragmentNotFound { .. })), "cut {cut}");
            assert_eq!(s.latest_fragments(10).len(), 3);
        } else {
            let f = s.read_fragment(torn).await.unwrap();
            assert!(f.info.truncated, "cut {cut}");
            assert_eq!(f.info.chunk_count, complete_chunks, "cut {cut}");
            assert_eq!(f.info.duration_ms, complete_chunks * 40);
            assert_eq!(f.header, Bytes::from("header 1/3"));
            for (c, ch) in f.chunks.iter().enumerate() {
                assert_eq!(ch.data, chunk_bytes(1, 3, c as u64, CHUNK));
            }
        }
        // New writes continue after the repaired tail, and a second recovery agrees
        // (checked at record boundaries ±1 and a sample in between, to keep the test quick).
        let near_boundary = offs.iter().any(|&o| cut.abs_diff(o) <= 1);
        if !near_boundary && cut % 7 != 0 {
            drop(s);
            drop(store);
            std::fs::remove_dir_all(&case).unwrap();
            continue;
        }
        let next = write_fragment(&s, 1, 9, T0 + 9000, T0 + 9000, 1, CHUNK).await;
        assert!(next.number > torn);
        drop(s);
        let before: Vec<FragmentInfo> = store.stream("cam").unwrap().latest_fragments(10);
        drop(store);
        let again = Store::open(config(&case)).await.unwrap();
        assert_eq!(again.stream("cam").unwrap().latest_fragments(10), before, "cut {cut}: recovery is idempotent");
        drop(again);
        std::fs::remove_dir_all(&case).unwrap();
    }
}

/// A fragment whose FINISH record is torn keeps all its chunks, marked truncated.
#[tokio::test]
async fn torn_finish_record_keeps_every_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let (root, infos, last) = golden(dir.path(), 4, true).await;
    let seg = segments(&root).pop().unwrap();
    let image = std::fs::read(&seg).unwrap();
    let offs = record_offsets(&image);
    let finish_start = offs[offs.len() - 2];
    for cut in finish_start..image.len() {
        let case = dir.path().join(format!("cut-{cut}"));
        copy_dir(&root, &case);
        let rel = seg.strip_prefix(&root).unwrap();
        std::fs::OpenOptions::new().write(true).open(case.join(rel)).unwrap().set_len(cut as u64).unwrap();
        let store = Store::open(config(&case)).await.unwrap();
        check_intact(&store, &infos).await;
        let f = store.stream("cam").unwrap().read_fragment(last).await.unwrap();
        assert!(f.info.truncated);
        assert_eq!((f.info.chunk_count, f.info.duration_ms), (4, 160));
        drop(store);
        std::fs::remove_dir_all(&case).unwrap();
    }
}

/// Flipping any byte of the unsealed tail segment: recovery cuts at the first bad record;
/// everything it keeps verifies, and nothing corrupt is ever served.
#[tokio::test]
async fn flipped_bytes_in_the_active_segment_are_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let (root, infos, _) = golden(dir.path(), 3, false).await;
    let seg = segments(&root).pop().unwrap();
    let rel = seg.strip_prefix(&root).unwrap().to_path_buf();
    let image = std::fs::read(&seg).unwrap();
    let offs = record_offsets(&image);
    // Every byte of the last two records and a sample through the rest of the file.
    let positions: Vec<usize> =
        (offs[offs.len() - 3]..image.len()).chain((8..offs[offs.len() - 3]).step_by(37)).collect();
    for pos in positions {
        let case = dir.path().join(format!("flip-{pos}"));
        copy_dir(&root, &case);
        let mut bad = image.clone();
        bad[pos] ^= 0x5a;
        std::fs::write(case.join(&rel), &bad).unwrap();
        let store = Store::open(config(&case)).await.unwrap();
        let s = store.stream("cam").unwrap();
        let kept = s.latest_fragments(100);
        for info in &kept {
            let f = s
                .read_fragment(info.number)
                .await
                .unwrap_or_else(|e| panic!("flip {pos}: kept fragment unreadable: {e}"));
            let f_idx = (info.producer_ts_ms - T0) / 1000;
            for (c, ch) in f.chunks.iter().enumerate() {
                assert_eq!(ch.data, chunk_bytes(1, f_idx, c as u64, CHUNK), "flip {pos}: served wrong bytes");
            }
        }
        // Fragments wholly before the damaged record are all kept.
        let damaged_record = offs.iter().copied().filter(|&o| o <= pos).max().unwrap();
        let whole_before = infos.iter().enumerate().filter(|(i, _)| offs[(i + 1) * 5] <= damaged_record).count();
        assert!(kept.len() >= whole_before, "flip {pos}: lost fragments before the damage");
        assert!(store.recovery_report().bytes_truncated > 0, "flip {pos}");
        drop(s);
        drop(store);
        std::fs::remove_dir_all(&case).unwrap();
    }
}

/// A store at `root` whose stream `cam` holds three whole fragments in a sealed segment;
/// the store is closed again before returning.
async fn three_sealed_fragments(root: &Path) -> Vec<FragmentInfo> {
    let store = Store::open(config(root)).await.unwrap();
    let s = store.create_stream("cam", 24).await.unwrap();
    let mut infos = Vec::new();
    for f in 0..3 {
        infos.push(write_fragment(&s, 1, f, T0 + f * 1000, T0 + f * 1000, 3, CHUNK).await);
    }
    store.seal_all().await;
    infos
}

/// A flipped byte in a sealed segment (trusted sidecar index) is caught on read: that one
/// fragment is a `Corrupt` error naming the file; its neighbours are fine.
#[tokio::test]
async fn flipped_byte_in_a_sealed_segment_fails_only_that_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let infos = three_sealed_fragments(&root).await;
    let seg = segments(&root).pop().unwrap();
    let mut image = std::fs::read(&seg).unwrap();
    let offs = record_offsets(&image);
    image[offs[7] + 20] ^= 1; // inside a chunk of fragment 1
    std::fs::write(&seg, &image).unwrap();
    let store = Store::open(config(&root)).await.unwrap();
    assert_eq!(store.recovery_report().segments_scanned, 0, "sealed segments are not rescanned");
    let s = store.stream("cam").unwrap();
    match s.read_fragment(infos[1].number).await {
        Err(StoreError::Corrupt { path, .. }) => assert_eq!(path, seg),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_fragment(&s.read_fragment(infos[0].number).await.unwrap(), 1, 0, CHUNK);
    assert_fragment(&s.read_fragment(infos[2].number).await.unwrap(), 1, 2, CHUNK);
    // A live reader reports the bad fragment and carries on.
    let mut tail = s.subscribe(StartPosition::Earliest).unwrap();
    assert!(tail.next().await.unwrap().is_some());
    assert!(matches!(tail.next().await, Err(StoreError::Corrupt { .. })));
    assert_eq!(tail.next().await.unwrap().unwrap().info.number, infos[2].number);
}

/// A damaged sidecar index is rebuilt from the segment's records.
#[tokio::test]
async fn damaged_index_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let infos = three_sealed_fragments(&root).await;
    let idx = segments(&root).pop().unwrap().with_extension("idx");
    let mut b = std::fs::read(&idx).unwrap();
    b[30] ^= 0xff;
    std::fs::write(&idx, b).unwrap();
    let store = Store::open(config(&root)).await.unwrap();
    assert_eq!(store.recovery_report().segments_scanned, 1);
    assert!(store.recovery_report().problems[0].contains(".idx"));
    check_intact(&store, &infos).await;
}

/// Unreadable metadata stops the store from opening with an error naming the file.
#[tokio::test]
async fn unreadable_stream_metadata_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(config(&root)).await.unwrap();
    store.create_stream("cam", 24).await.unwrap();
    drop(store);
    let meta = std::fs::read_dir(root.join("streams")).unwrap().flatten().next().unwrap().path().join("stream.meta");
    let text = std::fs::read_to_string(&meta).unwrap().replace("retention-hours 24", "retention-hours 25");
    std::fs::write(&meta, text).unwrap();
    match Store::open(config(&root)).await {
        Err(StoreError::Corrupt { path, .. }) => assert_eq!(path, meta),
        other => panic!("expected Corrupt naming stream.meta, got {other:?}"),
    }
}
