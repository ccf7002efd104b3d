//! AAC `AudioSpecificConfig` (an `A_AAC` codec private from a producer): parse, and what an
//! accepted config feeds: the codec string, the `mp4a`/`esds` init segment, ADTS headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reel_media::aac::{AacConfig, ADTS_HEADER_LEN, MAX_ADTS_FRAME};
use reel_media::fmp4;
use reel_media::source::{Codec, Track};

fuzz_target!(|data: &[u8]| {
    let Ok(config) = AacConfig::parse(data) else {
        return;
    };
    assert_eq!(config.config, data);
    assert!(config.codec_string().starts_with("mp4a.40."));
    assert!(config.sample_rate > 0 && (1..=8).contains(&config.channels()));
    assert!(matches!(config.frame_length, 960 | 1024));
    // The init segment carries the config whole (in the esds DecoderSpecificInfo).
    let track = Track { number: 2, codec: Codec::Aac(config.clone()) };
    let init = fmp4::init_segment(&[track], None);
    assert!(init.windows(data.len()).any(|w| w == data));
    // An ADTS header, when there is one, announces the frame it starts.
    let payload = data.len() * 8;
    match config.adts_header(payload) {
        Ok(h) => {
            assert_eq!(h[..2], [0xff, 0xf1]);
            let len = (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
            assert_eq!(len, payload + ADTS_HEADER_LEN);
        }
        Err(_) => assert!(config.adts_frequency_index().is_err() || payload + ADTS_HEADER_LEN > MAX_ADTS_FRAME),
    }
});
