//! Bit-level reading for codec headers: emulation-prevention removal and exp-Golomb codes.
//!
//! H.264 parameter sets are bit-packed with variable-length `ue(v)`/`se(v)` codes, and the
//! byte stream inserts `0x03` after any `00 00` so that start codes cannot appear inside a
//! NAL unit. [`rbsp`] undoes that escaping; [`BitReader`] reads the result. Every read is
//! bounds-checked and returns [`BitsError`] instead of panicking.

/// Why a bit-level read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BitsError {
    /// The data ended before the field did.
    #[error("bitstream ended early")]
    Truncated,
    /// An exp-Golomb code had more than 31 leading zero bits (its value would not fit in 32 bits).
    #[error("exp-Golomb code too long")]
    GolombOverflow,
}

/// Removes H.264 emulation-prevention bytes: every `00 00 03` becomes `00 00`.
///
/// Returns the raw byte sequence payload (RBSP) the bit reader works on.
pub fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0usize;
    for &b in nal {
        if zeros >= 2 && b == 0x03 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// A big-endian bit cursor over a byte slice.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// Starts reading at the first bit of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Bits left to read.
    pub fn remaining(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    /// Reads one bit.
    pub fn bit(&mut self) -> Result<bool, BitsError> {
        let byte = self.data.get(self.pos / 8).ok_or(BitsError::Truncated)?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// Reads `n` (≤ 32) bits as an unsigned integer, most significant bit first.
    pub fn bits(&mut self, n: u32) -> Result<u32, BitsError> {
        debug_assert!(n <= 32, "bits() reads at most 32 bits");
        if self.remaining() < n as usize {
            return Err(BitsError::Truncated);
        }
        let mut v: u64 = 0;
        for _ in 0..n.min(32) {
            v = (v << 1) | u64::from(self.bit()?);
        }
        Ok(v as u32)
    }

    /// Reads an 8-bit value.
    pub fn u8(&mut self) -> Result<u8, BitsError> {
        Ok(self.bits(8)? as u8)
    }

    /// Skips `n` bits.
    pub fn skip(&mut self, n: usize) -> Result<(), BitsError> {
        if self.remaining() < n {
            return Err(BitsError::Truncated);
        }
        self.pos += n;
        Ok(())
    }

    /// Reads an unsigned exp-Golomb code, `ue(v)`.
    pub fn ue(&mut self) -> Result<u32, BitsError> {
        let mut zeros = 0u32;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return Err(BitsError::GolombOverflow);
            }
        }
        if zeros == 0 {
            return Ok(0);
        }
        let rest = u64::from(self.bits(zeros)?);
        let v = (1u64 << zeros) - 1 + rest;
        u32::try_from(v).map_err(|_| BitsError::GolombOverflow)
    }

    /// Reads a signed exp-Golomb code, `se(v)`.
    pub fn se(&mut self) -> Result<i32, BitsError> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        // |v| ≤ 2^31, which fits i32 except for exactly +2^31; clamp that one value.
        Ok(v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_emulation_prevention() {
        assert_eq!(rbsp(&[0, 0, 3, 1]), vec![0, 0, 1]);
        assert_eq!(rbsp(&[0, 0, 3, 0, 0, 3]), vec![0, 0, 0, 0]);
        assert_eq!(rbsp(&[1, 0, 3]), vec![1, 0, 3]);
        assert_eq!(rbsp(&[0, 0, 0, 3]), vec![0, 0, 0]);
    }

    #[test]
    fn reads_exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 → ue 0,1,2,3,4
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data);
        assert_eq!(r.ue().unwrap(), 0);
        assert_eq!(r.ue().unwrap(), 1);
        assert_eq!(r.ue().unwrap(), 2);
        assert_eq!(r.ue().unwrap(), 3);
        assert_eq!(r.ue().unwrap(), 4);
        let mut r = BitReader::new(&data[..1]);
        r.skip(1).unwrap();
        assert_eq!(r.se().unwrap(), 1); // 010 → +1
        assert_eq!(r.se().unwrap(), -1); // 011 → -1
    }

    #[test]
    fn truncation_and_overflow_are_errors() {
        let mut r = BitReader::new(&[0x00]);
        assert_eq!(r.ue(), Err(BitsError::Truncated));
        let zeros = [0u8; 8];
        let mut r = BitReader::new(&zeros);
        assert_eq!(r.ue(), Err(BitsError::GolombOverflow));
        let mut r = BitReader::new(&[0xff]);
        assert_eq!(r.bits(9), Err(BitsError::Truncated));
        assert_eq!(r.bits(8), Ok(0xff));
    }

    #[test]
    fn largest_ue_fits() {
        // 31 zeros, a one, then 31 ones: 2^32 - 2.
        let mut data = vec![0u8; 3];
        data.extend([0b0000_0001, 0xff, 0xff, 0xff, 0xfe]);
        let mut r = BitReader::new(&data);
        assert_eq!(r.ue(), Ok(u32::MAX - 1));
    }
}
