//! Annex-B access units from the network: split, classify, parameter sets, sample rewrite.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reel_media::h264::{
    AccessUnit, LengthPrefixedNals, ParameterSets, Pps, Sps, nal_type, sample_to_annex_b,
    write_sample,
};

fuzz_target!(|data: &[u8]| {
    let Ok(au) = AccessUnit::parse(data) else {
        return;
    };
    let _ = au.is_idr();
    for nal in &au.nals {
        assert!(!nal.is_empty());
        let _ = Sps::parse(nal);
        let _ = Pps::parse(nal);
    }
    let mut sample = Vec::new();
    let written = write_sample(&au, &mut sample).expect("fuzz inputs are far below 4 GiB");
    assert_eq!(written, au.sample_len());
    // The sample holds exactly the kept NAL units, in order.
    let kept: Vec<&[u8]> = au
        .nals
        .iter()
        .copied()
        .filter(|n| {
            !matches!(
                n[0] & 0x1f,
                nal_type::SPS | nal_type::PPS | nal_type::AUD | nal_type::FILLER
            )
        })
        .collect();
    let back: Vec<&[u8]> = LengthPrefixedNals::new(&sample, 4)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(back, kept);
    let mut ps = ParameterSets::default();
    if ps.update(&au).is_ok() {
        if let Ok(cfg) = ps.config() {
            let mut annexb = Vec::new();
            sample_to_annex_b(&sample, 4, Some(&cfg), &mut annexb).unwrap();
            let _ = cfg.codec_string();
        }
    }
});
