//! Whole MKV documents (GetMedia streams, PutMedia uploads, foreign files).
#![no_main]

use libfuzzer_sys::fuzz_target;
use reel_media::mkv::parse_document;

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = parse_document(data) {
        let mut last = 0;
        for c in &doc.clusters {
            assert!(c.frames.start == last && c.frames.end <= doc.frames.len());
            last = c.frames.end;
        }
        assert_eq!(last, doc.frames.len());
    }
});
