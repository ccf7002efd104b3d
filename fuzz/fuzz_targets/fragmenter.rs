//! The fragmenter fed arbitrary frame sequences (valid, broken and hostile access units,
//! timestamps and arrival times): it never panics, and what it emits is always a well-formed
//! sequence of keyframe-led fragments whose chunks parse.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use reel_media::fragmenter::{FragmentEvent, Fragmenter, FragmenterConfig, MediaFrame};
use reel_media::mkv::parse_stored;
use reel_media::timing::{MediaKind, SenderReport};

const T0: i64 = 1_700_000_000_000_000;
const SPS: &[u8] = &[
    0x67, 0x42, 0xe0, 0x1f, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01,
    0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x18, 0x32, 0x48,
];
const PPS: &[u8] = &[0x68, 0xcb, 0x8c, 0xb2];

fn frame(u: &mut Unstructured, state: &mut (u32, u32, i64)) -> Result<MediaFrame> {
    let (v_ts, a_ts, arrival) = state;
    *arrival += i64::from(u.int_in_range(0..=200_000u32)?) - 1_000;
    let video = u.ratio(1, 2)?;
    let ts = if video { v_ts } else { a_ts };
    *ts = match u.int_in_range(0..=9)? {
        0 => u.arbitrary()?,
        1 => ts.wrapping_sub(u.int_in_range(0..=5_000)?),
        _ => ts.wrapping_add(if video { 3_000 } else { 960 }),
    };
    let data = match (video, u.int_in_range(0..=5)?) {
        (true, 0) => [
            &[0, 0, 0, 1][..],
            SPS,
            &[0, 0, 0, 1],
            PPS,
            &[0, 0, 0, 1, 0x65, 0x88, 1],
        ]
        .concat(),
        (true, 1..=3) => vec![0, 0, 0, 1, 0x41, 0x9a, u.arbitrary()?],
        (false, 0..=3) => vec![0xfc, u.arbitrary()?],
        _ => u.arbitrary::<Vec<u8>>()?,
    };
    let sender_report = if u.ratio(1, 8)? {
        Some(SenderReport {
            ntp_unix_us: *arrival + i64::from(u.arbitrary::<i16>()?) * 1_000,
            rtp_timestamp: *ts,
        })
    } else {
        None
    };
    Ok(MediaFrame {
        kind: if video {
            MediaKind::Video
        } else {
            MediaKind::Audio
        },
        rtp_timestamp: *ts,
        arrival_unix_us: *arrival,
        contiguous: u.ratio(15, 16)?,
        data,
        sender_report,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let cfg = FragmenterConfig {
        target_duration_ms: 500,
        max_duration_ms: 2_000,
        ..FragmenterConfig::default()
    };
    let mut f = Fragmenter::new(cfg, T0).unwrap();
    let mut state = (0u32, 0u32, T0);
    // (start ms, header, chunks) of the open fragment.
    let mut open: Option<(u64, Vec<u8>, Vec<Vec<u8>>)> = None;
    let check = |f: &mut Fragmenter, open: &mut Option<(u64, Vec<u8>, Vec<Vec<u8>>)>| {
        while let Some(ev) = f.poll() {
            match ev {
                FragmentEvent::BeginFragment {
                    producer_ts_ms,
                    header,
                    ..
                } => {
                    assert!(open.is_none(), "fragment begun while one is open");
                    *open = Some((producer_ts_ms, header.to_vec(), vec![]));
                }
                FragmentEvent::Chunk { bytes, .. } => open
                    .as_mut()
                    .expect("chunk outside a fragment")
                    .2
                    .push(bytes),
                FragmentEvent::EndFragment { .. } => {
                    let (start, header, chunks) = open.take().expect("end outside a fragment");
                    let frag =
                        parse_stored(&header, chunks.iter().map(Vec::as_slice), start as i64)
                            .expect("chunks parse");
                    if let Some(first) = frag.frames.iter().find(|x| x.track == 1) {
                        assert!(first.keyframe, "fragment does not start with a keyframe");
                    }
                    assert!(frag.frames.iter().all(|x| x.timestamp_ms >= start as i64));
                }
                FragmentEvent::RequestKeyframe { .. } => {}
            }
        }
    };
    // Unstructured keeps yielding defaults once empty, so stop when the input is used up.
    while !u.is_empty() {
        let Ok(fr) = frame(&mut u, &mut state) else {
            break;
        };
        f.push(fr);
        check(&mut f, &mut open);
        if u.ratio(1, 16).unwrap_or(false) {
            f.handle_timeout(state.2 + 600_000);
            check(&mut f, &mut open);
        }
    }
    f.finish(state.2);
    check(&mut f, &mut open);
    assert!(open.is_none());
});
