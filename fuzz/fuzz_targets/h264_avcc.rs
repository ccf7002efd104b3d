//! avcC records from stored or uploaded MKV: parse, and a successful parse round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reel_media::h264::{AvcConfig, LengthPrefixedNals};

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = AvcConfig::parse(data) {
        let again = AvcConfig::parse(&cfg.to_bytes()).expect("a serialized record parses");
        assert_eq!(again.sps, cfg.sps);
        assert_eq!(again.pps, cfg.pps);
        assert_eq!(again.info, cfg.info);
        assert!(cfg.width() > 0 && cfg.height() > 0);
    }
    for size in [1u8, 2, 4] {
        for nal in LengthPrefixedNals::new(data, size).unwrap() {
            if nal.is_err() {
                break;
            }
        }
    }
});
