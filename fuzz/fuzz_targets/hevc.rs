//! H.265 `HEVCDecoderConfigurationRecord` (a `V_MPEGH/ISO/HEVC` codec private from a
//! producer): parse, and what an accepted record feeds: the codec string, the `hvc1`/`hvcC`
//! init segment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reel_media::fmp4;
use reel_media::hevc::{HevcConfig, NAL_SPS};
use reel_media::source::{Codec, Track};

fuzz_target!(|data: &[u8]| {
    let Ok(config) = HevcConfig::parse(data) else {
        return;
    };
    assert_eq!(config.as_bytes(), data);
    assert_eq!(config.version, 1);
    assert!(matches!(config.length_size, 1 | 2 | 4));
    assert!(config.units(NAL_SPS).next().is_some());
    assert!(config.codec_string().starts_with("hvc1."));
    assert!(config.width <= 16_888 && config.height <= 16_888);
    // The init segment carries the record whole (the hvcC box body).
    let track = Track { number: 1, codec: Codec::Hevc(config) };
    let init = fmp4::init_segment(&[track], None);
    assert!(init.windows(data.len()).any(|w| w == data));
});
