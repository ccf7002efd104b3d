//! Scenario: the fixture clip (H.264 + Opus) fragmented by reel and checked by real tools.
//!
//! The fragments the store would hold are (1) concatenated behind one track header into a
//! continuous MKV and (2) composed one by one into the documents GetMedia serves; `ffprobe`,
//! `ffmpeg` and `mkvinfo` must read them as H.264 640x360 + Opus 48 kHz stereo with the
//! right durations, keyframe-aligned fragments and KVS tags. Skips (with a message) when the
//! tools are not installed; `.ci/run` installs them.

use std::path::Path;
use std::process::Command;

use reel::media::fragmenter::{FragmentEvent, Fragmenter, FragmenterConfig, MediaFrame};
use reel::media::mkv::{self, FragmentDocument, SimpleTag, tag};
use reel::media::timing::MediaKind;

const T0_US: i64 = 1_700_000_000_000_000;

struct Fragment {
    producer_ms: u64,
    server_ms: u64,
    header: Vec<u8>,
    chunks: Vec<Vec<u8>>,
    duration_ms: u32,
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)).unwrap()
}

/// Access units of an Annex-B file written with access unit delimiters.
fn access_units(data: &[u8]) -> Vec<Vec<u8>> {
    let starts: Vec<usize> = (0..data.len().saturating_sub(4))
        .filter(|&i| data[i..i + 4] == [0, 0, 0, 1] && data[i + 4] & 0x1f == 9)
        .collect();
    starts.iter().enumerate().map(|(n, &s)| data[s..*starts.get(n + 1).unwrap_or(&data.len())].to_vec()).collect()
}

/// Packets of a file of 4-byte big-endian length-prefixed packets.
fn packets(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![];
    while data.len() >= 4 {
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        out.push(data[4..4 + len].to_vec());
        data = &data[4 + len..];
    }
    out
}

/// Runs the fixture clip (30 fps video, 20 ms audio, real-time arrival) through a fragmenter.
fn fragment_fixtures() -> Vec<Fragment> {
    let video = access_units(&fixture("test-h264-baseline.h264"));
    let audio = packets(&fixture("test-opus.packets"));
    let mut f = Fragmenter::new(FragmenterConfig::default(), T0_US).unwrap();
    let mut frags: Vec<Fragment> = vec![];
    let drain = |f: &mut Fragmenter, frags: &mut Vec<Fragment>| {
        while let Some(ev) = f.poll() {
            match ev {
                FragmentEvent::BeginFragment { producer_ts_ms, server_ts_ms, header } => frags.push(Fragment {
                    producer_ms: producer_ts_ms,
                    server_ms: server_ts_ms,
                    header: header.to_vec(),
                    chunks: vec![],
                    duration_ms: 0,
                }),
                FragmentEvent::Chunk { bytes, .. } => frags.last_mut().unwrap().chunks.push(bytes),
                FragmentEvent::EndFragment { duration_ms } => frags.last_mut().unwrap().duration_ms = duration_ms,
                FragmentEvent::RequestKeyframe { .. } => {}
            }
        }
    };
    let (mut vi, mut ai) = (0usize, 0usize);
    while vi < video.len() || ai < audio.len() {
        let v_us = vi as i64 * 1_000_000 / 30;
        let a_us = ai as i64 * 20_000;
        let frame = if ai < audio.len() && (vi >= video.len() || a_us <= v_us) {
            ai += 1;
            MediaFrame {
                kind: MediaKind::Audio,
                rtp_timestamp: 1_234 + (ai as u32 - 1) * 960,
                arrival_unix_us: T0_US + a_us,
                contiguous: true,
                data: audio[ai - 1].clone(),
                sender_report: None,
            }
        } else {
            vi += 1;
            MediaFrame {
                kind: MediaKind::Video,
                rtp_timestamp: 99 + (vi as u32 - 1) * 3_000,
                arrival_unix_us: T0_US + v_us,
                contiguous: true,
                data: video[vi - 1].clone(),
                sender_report: None,
            }
        };
        f.push(frame);
        drain(&mut f, &mut frags);
    }
    f.finish(T0_US + 7_000_000);
    drain(&mut f, &mut frags);
    frags
}

fn tool(name: &str) -> bool {
    let ok = Command::new(name).arg("-version").output().is_ok_and(|o| o.status.success())
        || Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: `{name}` not found; install ffmpeg and mkvtoolnix to run this check");
    }
    ok
}

fn run(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "{cmd:?} failed: {stderr}");
    (stdout, stderr)
}

/// `(stream index, pts seconds, keyframe)` of every packet ffprobe sees.
fn packets_of(path: &Path) -> Vec<(u32, f64, bool)> {
    let (out, _) = run(Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "packet=stream_index,pts_time,flags", "-of", "csv=p=0"])
        .arg(path));
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].contains('K'))
        })
        .collect()
}

fn streams_of(path: &Path) -> String {
    run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=index,codec_name,width,height,sample_rate,channels,profile",
            "-of",
            "compact",
        ])
        .arg(path))
    .0
}

#[test]
fn fragments_concatenated_behind_the_header_are_a_valid_mkv() {
    let frags = fragment_fixtures();
    assert_eq!(frags.len(), 3);
    if !tool("ffprobe") || !tool("ffmpeg") || !tool("mkvinfo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mkv");
    let mut clip = vec![];
    mkv::write_segment_start(&frags[0].header, &[], &mut clip).unwrap();
    for f in &frags {
        assert_eq!(f.header, frags[0].header, "one codec configuration throughout");
        let len: usize = f.chunks.iter().map(Vec::len).sum();
        mkv::write_cluster_start(f.producer_ms, Some(len as u64), &mut clip);
        f.chunks.iter().for_each(|c| clip.extend_from_slice(c));
    }
    std::fs::write(&path, &clip).unwrap();

    let streams = streams_of(&path);
    assert!(
        streams.contains("codec_name=h264") && streams.contains("width=640") && streams.contains("height=360"),
        "{streams}"
    );
    assert!(streams.contains("profile=Constrained Baseline"), "{streams}");
    assert!(
        streams.contains("codec_name=opus") && streams.contains("sample_rate=48000") && streams.contains("channels=2"),
        "{streams}"
    );

    let pkts = packets_of(&path);
    let video: Vec<_> = pkts.iter().filter(|p| p.0 == 0).collect();
    let audio: Vec<_> = pkts.iter().filter(|p| p.0 == 1).collect();
    assert_eq!(video.len(), 180);
    assert!(audio.len() >= 299, "{}", audio.len());
    let start = video[0].1;
    let span = video.last().unwrap().1 - start + 1.0 / 30.0;
    assert!((span - 6.0).abs() < 0.05, "video lasts {span} s");
    let audio_span = audio.last().unwrap().1 - audio[0].1 + 0.02;
    assert!((audio_span - 6.0).abs() < 0.1, "audio lasts {audio_span} s");
    // Fragments start every 2 s, each with a keyframe.
    for f in &frags {
        let t = (f.producer_ms - frags[0].producer_ms) as f64 / 1_000.0 + start;
        let first = video.iter().find(|p| (p.1 - t).abs() < 0.0015).unwrap_or_else(|| panic!("no frame at {t}"));
        assert!(first.2, "fragment at {t} s starts with a keyframe");
    }

    let (_, errors) = run(Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(&path).args(["-f", "null", "-"]));
    assert_eq!(errors.trim(), "", "decoding reported errors");

    let (info, _) = run(Command::new("mkvinfo").arg(&path));
    assert!(info.contains("V_MPEG4/ISO/AVC") && info.contains("A_OPUS"), "{info}");
}

#[test]
fn each_fragment_as_a_getmedia_document_stands_alone() {
    let frags = fragment_fixtures();
    for (n, f) in frags.iter().enumerate() {
        let tags = [
            SimpleTag::new(tag::FRAGMENT_NUMBER, format!("9134385233318143239268206260774392014626415{n}")),
            SimpleTag::new(tag::SERVER_TIMESTAMP, mkv::kvs_timestamp(f.server_ms)),
            SimpleTag::new(tag::PRODUCER_TIMESTAMP, mkv::kvs_timestamp(f.producer_ms)),
        ];
        let trailing = [SimpleTag::new(tag::MILLIS_BEHIND_NOW, "0"), SimpleTag::new(tag::CONTINUATION_TOKEN, "x")];
        let doc =
            FragmentDocument { header: &f.header, start_ms: f.producer_ms, tags: &tags, trailing_tags: &trailing }
                .compose(f.chunks.iter().map(Vec::as_slice))
                .unwrap();
        let parsed = mkv::parse_document(&doc).unwrap();
        assert_eq!(parsed.clusters.len(), 1);
        assert_eq!(parsed.clusters[0].timecode_ms, f.producer_ms as i64);
        assert!(parsed.frames[0].keyframe && parsed.frames.iter().any(|x| x.track == 2));
        assert_eq!(
            parsed.tags.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            [
                tag::FRAGMENT_NUMBER,
                tag::SERVER_TIMESTAMP,
                tag::PRODUCER_TIMESTAMP,
                tag::MILLIS_BEHIND_NOW,
                tag::CONTINUATION_TOKEN
            ]
        );
        assert!(f.duration_ms >= 2_000);

        if !tool("ffprobe") || !tool("mkvinfo") {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("fragment-{n}.mkv"));
        std::fs::write(&path, &doc).unwrap();
        let streams = streams_of(&path);
        assert!(streams.contains("codec_name=h264") && streams.contains("codec_name=opus"), "{streams}");
        let pkts = packets_of(&path);
        let video: Vec<_> = pkts.iter().filter(|p| p.0 == 0).collect();
        assert_eq!(video.len(), 60);
        assert!(video[0].2, "starts with a keyframe");
        // -v: mkvinfo stops at the first Cluster unless asked to read on.
        let (info, _) = run(Command::new("mkvinfo").arg("-v").arg(&path));
        assert!(info.contains(tag::FRAGMENT_NUMBER) && info.contains(tag::CONTINUATION_TOKEN), "{info}");
    }
}
