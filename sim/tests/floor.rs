//! The floor: RFC 7714 SRTP against the RFC's own vector, tamper rejection, and a real
//! two-session loopback run (127.0.0.1 only) checked packet for packet and byte for byte.

use std::net::UdpSocket;
use std::time::Duration;

use reel_sim::floor::srtp::{SrtpAead, SrtpError};
use reel_sim::floor::{Receiver, Sender, SessionKeys, SrtpSuite, payload_byte};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// RFC 7714 §16.1.1 (AEAD_AES_128_GCM, session key and salt given directly, ROC 0).
const KEY: &str = "000102030405060708090a0b0c0d0e0f";
/// RFC 7714 §16.2.1 (AEAD_AES_256_GCM): same packet, salt and IV, a 32-byte key.
const KEY_256: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const PROTECTED_256: &str = "8040f17b 8041f8d3 5501a0b2 32b1de78 a822fe12 ef9f78fa 332e33aa
                             b1801238 9a58e2f3 b50b2a02 76ffae0f 1ba63799 b87b7aa3 db36dfff
                             d6b0f9bb 7878d7a7 6c13";
const SALT: &str = "517569642070726f2071756f";
const PLAIN: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973
                     20646976 69736120 696e2070 61727465 73207472 6573";
const PROTECTED: &str = "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca
                         be633bd5 0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1
                         6a9152cf 765ee439 0cce";

fn rfc_aead() -> SrtpAead {
    SrtpAead::new(SrtpSuite::AeadAes128Gcm, &hex(KEY), hex(SALT).as_slice().try_into().unwrap()).unwrap()
}

#[test]
fn rfc7714_vectors_encrypt_and_decrypt() {
    let aead_256 =
        SrtpAead::new(SrtpSuite::AeadAes256Gcm, &hex(KEY_256), hex(SALT).as_slice().try_into().unwrap()).unwrap();
    for (name, aead, protected) in [("§16.1.1", rfc_aead(), PROTECTED), ("§16.2.1", aead_256, PROTECTED_256)] {
        let mut packet = hex(PLAIN);
        aead.protect(0, &mut packet).unwrap();
        assert_eq!(packet, hex(protected), "protect must reproduce RFC 7714 {name}");

        let mut packet = hex(protected);
        let payload = aead.unprotect(0, &mut packet).unwrap().to_vec();
        assert_eq!(payload, &hex(PLAIN)[12..]);
        assert_eq!(payload, b"Gallia est omnis divisa in partes tres");
    }
}

#[test]
fn tampered_or_misindexed_packets_are_rejected() {
    let aead = rfc_aead();
    let original = hex(PROTECTED);
    // A flipped bit in the header (AAD), the ciphertext, and the tag.
    for at in [1usize, 20, original.len() - 1] {
        let mut p = original.clone();
        p[at] ^= 0x01;
        assert_eq!(aead.unprotect(0, &mut p), Err(SrtpError::AuthFailed), "flip at byte {at}");
    }
    // The right bytes under the wrong rollover counter (the IV differs).
    let mut p = original.clone();
    assert_eq!(aead.unprotect(1, &mut p), Err(SrtpError::AuthFailed));
    // Too short to hold header + tag.
    let mut p = original[..20].to_vec();
    assert_eq!(aead.unprotect(0, &mut p), Err(SrtpError::Malformed));
}

#[test]
fn two_sessions_over_loopback_arrive_complete() {
    loopback_run(SrtpSuite::DEFAULT);
}

#[test]
fn aes_128_sessions_over_loopback_arrive_complete() {
    loopback_run(SrtpSuite::AeadAes128Gcm);
}

/// 2 sessions × 2 s over 127.0.0.1, plus one forged packet; everything accounted for.
fn loopback_run(suite: SrtpSuite) {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Receiver::bind("127.0.0.1:0".parse().unwrap(), dir.path()).unwrap();
    let target = rx.local_addr().unwrap();
    let mut tx = Sender::new_with_suite(target, 2, 1_000_000, suite).unwrap();
    let keys = tx.keys();
    let paths: Vec<_> = keys.iter().map(|k| rx.add_session(k.clone()).unwrap()).collect();
    let rx = rx.spawn().unwrap();

    // One forged packet first: a known SSRC under a key the receiver does not hold.
    let forged_keys = SessionKeys { key: vec![7; suite.key_len()], ..keys[0].clone() };
    let mut forged = vec![0x80, 96, 0, 1, 0, 0, 0, 1];
    forged.extend_from_slice(&forged_keys.video_ssrc.to_be_bytes());
    forged.extend_from_slice(&[1, 2, 3, 4]);
    SrtpAead::new(suite, &forged_keys.key, &forged_keys.salt).unwrap().protect(0, &mut forged).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(&forged, target).unwrap();

    let sent = tx.run_for(Duration::from_secs(2)).unwrap();

    std::thread::sleep(Duration::from_millis(300));
    let got = rx.stop().unwrap();
    println!("sent {sent:?}\nfloor {got:?}\ncpu ms per session-second: {:?}", got.cpu_ms_per_session_second());

    // ~2 s × 2 sessions × (30 frames × 4 packets + 50 Opus) ≈ 680 packets.
    assert!(sent.packets > 500, "the sender sent too little: {sent:?}");
    assert_eq!(sent.send_errors, 0);
    assert_eq!(got.packets, sent.packets, "every packet sent is received and decrypted");
    assert_eq!(got.bytes, sent.bytes);
    assert_eq!(got.payload_bytes, sent.payload_bytes);
    assert_eq!(got.auth_failures, 1, "the forged packet fails authentication");
    assert_eq!(got.dropped, 0);
    assert!(got.cpu_ms > 0.0 && got.session_seconds > 3.0);

    for (i, path) in paths.iter().enumerate() {
        let data = std::fs::read(path).unwrap();
        assert_eq!(data.len() as u64, sent.session_payload_bytes[i], "session {i} file length");
        let bad = data.iter().enumerate().position(|(k, b)| *b != payload_byte(i, k as u64));
        assert_eq!(bad, None, "session {i} file differs from the sent payload");
    }
}

#[test]
fn frame_sizes_scale_to_the_bitrate() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/test-h264-baseline.h264");
    let sizes = reel_sim::floor::fixture_frame_sizes(path).unwrap();
    assert_eq!(sizes.len(), 180, "the fixture holds 180 access units");
    assert!(sizes[0] > 3 * sizes[1], "the first access unit is an IDR, larger than a P frame");
}

/// reel-load moves these across threads and tasks.
#[test]
fn public_types_are_send() {
    fn send<T: Send>() {}
    send::<Sender>();
    send::<Receiver>();
    send::<reel_sim::floor::RunningReceiver>();
    send::<reel_sim::janus::Janus>();
    send::<reel_sim::janus::JanusPublisher>();
}
