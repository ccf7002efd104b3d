//! A stored fragment (header + chunks) read back, and composed into a GetMedia document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reel_media::mkv::{FragmentDocument, parse_document, parse_stored, parse_tracks};

fuzz_target!(|data: &[u8]| {
    // Input: u16 BE header length, header bytes, chunk bytes.
    let Some(([hi, lo], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let split = usize::from(u16::from_be_bytes([*hi, *lo]));
    let (header, chunk) = rest.split_at(split.min(rest.len()));
    let _ = parse_tracks(header);
    let Ok(stored) = parse_stored(header, [chunk], 1_000) else {
        return;
    };
    // What parsed as a stored fragment also parses as the document GetMedia would serve.
    let doc = FragmentDocument {
        header,
        start_ms: 1_000,
        tags: &[],
        trailing_tags: &[],
    };
    let whole = doc.compose([chunk]).expect("the header parsed as Tracks");
    let parsed = parse_document(&whole).expect("a composed document parses");
    assert_eq!(parsed.frames, stored.frames);
    assert_eq!(parsed.tracks, stored.tracks);
});
