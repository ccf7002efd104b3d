//! `reel::fuzz_api::put_media_body` (see its docs for the input form and the checks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| reel::fuzz_api::put_media_body(data));
