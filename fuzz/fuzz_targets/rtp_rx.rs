//! `reel_media::rtp_rx::fuzz_drive` (see its docs for the input form and the checks): RTP
//! packets in any order, with loss, jumps and hostile payloads, through the reorder buffer and
//! the H.264/Opus depacketizers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| reel_media::rtp_rx::fuzz_drive(data));
