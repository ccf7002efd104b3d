//! SRTP with the AEAD suites (AEAD_AES_128_GCM, AEAD_AES_256_GCM) exactly as RFC 7714
//! specifies them, sans-IO.
//!
//! Packet layout (RFC 7714 §5): `RTP header || AES-GCM(payload) || 16-byte tag`, where the
//! whole RTP header (fixed part, CSRCs and header extension) is the additional
//! authenticated data and the 12-byte IV is (RFC 7714 §8.1)
//! `(00 00 || SSRC || ROC || SEQ) XOR session salt`.
//!
//! Keys here are SRTP *session* keys (what the RFC 3711 KDF derives from the DTLS-exported
//! master key): the KDF runs once per session and is not part of the per-packet floor.
//! Also here: the RTP header length parser and the RFC 3711 Appendix A rollover-counter
//! estimate with a 64-packet replay window, the two bits of state every SRTP receiver keeps.

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

/// Bytes of the GCM authentication tag appended to every packet (RFC 7714 §7).
pub const TAG_LEN: usize = 16;
/// An SRTP AEAD protection profile (RFC 7714 §14). Both use a 12-byte salt and 16-byte tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    /// SRTP_AEAD_AES_128_GCM: 16-byte session key.
    AeadAes128Gcm,
    /// SRTP_AEAD_AES_256_GCM: 32-byte session key.
    AeadAes256Gcm,
}

impl SrtpSuite {
    /// What str0m 0.25 negotiates by default (its first preference, which str0m peers and
    /// Janus/libsrtp 2.5 both accept): the suite reel's publishers end up using.
    pub const DEFAULT: SrtpSuite = SrtpSuite::AeadAes256Gcm;

    /// Session key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            SrtpSuite::AeadAes128Gcm => 16,
            SrtpSuite::AeadAes256Gcm => 32,
        }
    }
}

/// Bytes of an SRTP session salt for the AEAD suites (RFC 7714 §12).
pub const SALT_LEN: usize = 12;
/// Packets behind the highest index still accepted (once each).
pub const REPLAY_WINDOW: u64 = 64;

/// Why a packet was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// Not a version-2 RTP packet, or shorter than its own header plus the tag.
    #[error("not an SRTP packet (bad version or too short)")]
    Malformed,
    /// The GCM tag did not verify (wrong key, tampered, or wrong rollover counter).
    #[error("SRTP authentication failed")]
    AuthFailed,
    /// The packet's index was already received or is older than the replay window.
    #[error("SRTP replay")]
    Replay,
    /// The session key's length does not match the suite.
    #[error("SRTP session key has the wrong length for the suite")]
    BadKey,
}

/// One SRTP session key + salt for an AEAD suite, used for protecting or unprotecting.
pub struct SrtpAead {
    key: LessSafeKey,
    salt: [u8; SALT_LEN],
}

impl SrtpAead {
    /// Wrap a session key (16 or 32 bytes, per `suite`) and salt.
    pub fn new(suite: SrtpSuite, key: &[u8], salt: &[u8; SALT_LEN]) -> Result<Self, SrtpError> {
        let alg = match suite {
            SrtpSuite::AeadAes128Gcm => &AES_128_GCM,
            SrtpSuite::AeadAes256Gcm => &AES_256_GCM,
        };
        if key.len() != suite.key_len() {
            return Err(SrtpError::BadKey);
        }
        let unbound = UnboundKey::new(alg, key).map_err(|_| SrtpError::BadKey)?;
        Ok(SrtpAead { key: LessSafeKey::new(unbound), salt: *salt })
    }

    /// The RFC 7714 §8.1 IV for one packet.
    pub fn iv(&self, ssrc: u32, roc: u32, seq: u16) -> [u8; 12] {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&roc.to_be_bytes());
        iv[10..12].copy_from_slice(&seq.to_be_bytes());
        for (b, s) in iv.iter_mut().zip(self.salt) {
            *b ^= s;
        }
        iv
    }

    /// Encrypt `packet` (a plain RTP packet) in place and append the tag.
    pub fn protect(&self, roc: u32, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let header_len = rtp_header_len(packet).ok_or(SrtpError::Malformed)?;
        let (ssrc, seq) = ssrc_seq(packet);
        let nonce = Nonce::assume_unique_for_key(self.iv(ssrc, roc, seq));
        let (header, payload) = packet.split_at_mut(header_len);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&*header), payload)
            .map_err(|_| SrtpError::Malformed)?;
        packet.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Authenticate and decrypt `packet` in place; returns the plaintext payload (RTP
    /// padding, if flagged, removed).
    pub fn unprotect<'a>(&self, roc: u32, packet: &'a mut [u8]) -> Result<&'a [u8], SrtpError> {
        let header_len = rtp_header_len(packet).ok_or(SrtpError::Malformed)?;
        if packet.len() < header_len + TAG_LEN {
            return Err(SrtpError::Malformed);
        }
        let (ssrc, seq) = ssrc_seq(packet);
        let padded = packet[0] & 0x20 != 0;
        let nonce = Nonce::assume_unique_for_key(self.iv(ssrc, roc, seq));
        let (header, rest) = packet.split_at_mut(header_len);
        let plain = self.key.open_in_place(nonce, Aad::from(&*header), rest).map_err(|_| SrtpError::AuthFailed)?;
        if padded {
            let pad = usize::from(plain.last().copied().unwrap_or(0));
            if pad == 0 || pad > plain.len() {
                return Err(SrtpError::Malformed);
            }
            let keep = plain.len() - pad;
            return Ok(&plain[..keep]);
        }
        Ok(plain)
    }
}

/// SSRC and sequence number of a packet already checked by [`rtp_header_len`].
fn ssrc_seq(packet: &[u8]) -> (u32, u16) {
    (u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]), u16::from_be_bytes([packet[2], packet[3]]))
}

/// SSRC of an RTP packet (`None` if shorter than the fixed header).
pub fn rtp_ssrc(packet: &[u8]) -> Option<u32> {
    let b = packet.get(8..12)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Sequence number of an RTP packet (`None` if shorter than the fixed header).
pub fn rtp_seq(packet: &[u8]) -> Option<u16> {
    let b = packet.get(2..4)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Length of the RTP header (fixed part + CSRCs + header extension), or `None` if the
/// packet is not RTP version 2 or is shorter than its header.
pub fn rtp_header_len(packet: &[u8]) -> Option<usize> {
    let first = *packet.first()?;
    if first >> 6 != 2 || packet.len() < 12 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let ext = packet.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    (len <= packet.len()).then_some(len)
}

/// Per-SSRC receive state: the RFC 3711 Appendix A index estimate and a replay window.
#[derive(Debug, Clone, Default)]
pub struct ReplayState {
    /// Highest accepted 48-bit index (ROC << 16 | SEQ); `None` before the first packet.
    highest: Option<u64>,
    /// Bit i set: index `highest - i` was accepted.
    window: u64,
}

impl ReplayState {
    /// The rollover counter to try for `seq` (RFC 3711 Appendix A), and whether that
    /// index is a replay.
    pub fn estimate(&self, seq: u16) -> Result<(u32, u64), SrtpError> {
        let Some(highest) = self.highest else { return Ok((0, u64::from(seq))) };
        let roc = (highest >> 16) as u32;
        let s_l = (highest & 0xffff) as u16;
        let v = if s_l < 0x8000 {
            if seq > s_l && seq - s_l > 0x8000 {
                // Older than the stream's first packet: nothing to decrypt it with.
                roc.checked_sub(1).ok_or(SrtpError::Replay)?
            } else {
                roc
            }
        } else if s_l - 0x8000 > seq {
            roc.wrapping_add(1)
        } else {
            roc
        };
        let index = (u64::from(v) << 16) | u64::from(seq);
        if index <= highest {
            let behind = highest - index;
            if behind >= REPLAY_WINDOW || self.window & (1 << behind) != 0 {
                return Err(SrtpError::Replay);
            }
        }
        Ok((v, index))
    }

    /// Record an authenticated index.
    pub fn accept(&mut self, index: u64) {
        match self.highest {
            None => {
                self.highest = Some(index);
                self.window = 1;
            }
            Some(h) if index > h => {
                let shift = index - h;
                self.window = if shift >= 64 { 1 } else { (self.window << shift) | 1 };
                self.highest = Some(index);
            }
            Some(h) => self.window |= 1 << (h - index),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn header_len_counts_csrcs_and_extension() {
        let mut p = vec![0x80u8, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9];
        assert_eq!(rtp_header_len(&p), Some(12));
        p[0] = 0x91; // X + 1 CSRC
        p.truncate(12);
        p.extend_from_slice(&[0, 0, 0, 2]); // CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension, 1 word
        assert_eq!(rtp_header_len(&p), Some(24));
        assert_eq!(rtp_header_len(&p[..20]), None);
        assert_eq!(rtp_header_len(&[0x40; 20]), None);
    }

    #[test]
    fn roc_follows_wrap_and_replays_are_refused() {
        let mut st = ReplayState::default();
        for seq in [65534u16, 65535, 0, 1] {
            let (roc, idx) = st.estimate(seq).unwrap();
            assert_eq!(roc, u32::from(seq < 100));
            st.accept(idx);
        }
        assert_eq!(st.estimate(1), Err(SrtpError::Replay));
        // A late packet from before the wrap is still in the window, once.
        let (roc, idx) = st.estimate(65533).unwrap();
        assert_eq!(roc, 0);
        st.accept(idx);
        assert_eq!(st.estimate(65533), Err(SrtpError::Replay));
    }

    #[test]
    fn rfc7714_iv() {
        let salt = hex("517569642070726f2071756f");
        let a = SrtpAead::new(SrtpSuite::AeadAes128Gcm, &[0; 16], salt.as_slice().try_into().unwrap()).unwrap();
        assert_eq!(SrtpAead::new(SrtpSuite::AeadAes256Gcm, &[0; 16], &[0; 12]).err(), Some(SrtpError::BadKey));
        assert_eq!(a.iv(0x5501a0b2, 0, 0xf17b).to_vec(), hex("51753c6580c2726f20718414"));
    }
}
