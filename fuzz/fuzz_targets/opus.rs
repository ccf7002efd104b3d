//! Opus packets (TOC) and OpusHead codec private data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reel_media::opus::{MAX_PACKET_SAMPLES, OpusHead, PacketInfo};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = PacketInfo::parse(data) {
        assert!(p.frames >= 1 && p.duration_samples() <= MAX_PACKET_SAMPLES);
    }
    if let Ok(h) = OpusHead::parse(data) {
        assert_eq!(OpusHead::parse(&h.to_bytes()), Ok(h));
    }
});
