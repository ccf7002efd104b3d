//! Segment record framing (sans-IO): every record is length-prefixed and CRC32C-checksummed.
//!
//! ```text
//! segment = MAGIC record*
//! record  = body_len:u32le  crc32c(body):u32le  body
//! body    = kind:u8 fields…          (all integers little-endian)
//!   BEGIN  (1): counter:u64 producer_ts_ms:u64 server_ts_ms:u64 header_len:u32 header
//!   CHUNK  (2): counter:u64 end_offset_ms:u32 data…
//!   FINISH (3): counter:u64 duration_ms:u32 chunk_count:u32 payload_bytes:u64
//! ```
//! A fragment is BEGIN, CHUNK*, then FINISH. FINISH may be missing after a crash; see
//! [`crate::segment`] for what recovery makes of that.

use bytes::Bytes;

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: &[u8; 8] = b"REELSEG1";
/// Bytes of a record's length + checksum prefix.
pub const RECORD_HEADER_BYTES: usize = 8;
/// Largest record body accepted (one chunk, or a fragment header, must fit).
pub const MAX_RECORD_BODY_BYTES: usize = 64 << 20;

const KIND_BEGIN: u8 = 1;
const KIND_CHUNK: u8 = 2;
const KIND_FINISH: u8 = 3;

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Opens fragment `counter`.
    Begin { counter: u64, producer_ts_ms: u64, server_ts_ms: u64, header: Bytes },
    /// One opaque media chunk of fragment `counter`, ending `end_offset_ms` after its start.
    Chunk { counter: u64, end_offset_ms: u32, data: Bytes },
    /// Closes fragment `counter`.
    Finish { counter: u64, duration_ms: u32, chunk_count: u32, payload_bytes: u64 },
}

/// Why bytes did not decode as a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The buffer ends before the record does (a torn write, or a short read).
    Truncated,
    /// The length prefix is impossible.
    BadLength(u32),
    /// The checksum does not match the body.
    BadChecksum,
    /// The checksum matches but the body is malformed (unknown kind, short fields).
    BadBody(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "record truncated"),
            DecodeError::BadLength(n) => write!(f, "impossible record length {n}"),
            DecodeError::BadChecksum => write!(f, "record checksum mismatch"),
            DecodeError::BadBody(why) => write!(f, "malformed record: {why}"),
        }
    }
}

impl Record {
    /// The fragment counter this record belongs to.
    pub fn counter(&self) -> u64 {
        match self {
            Record::Begin { counter, .. } | Record::Chunk { counter, .. } | Record::Finish { counter, .. } => *counter,
        }
    }

    /// Encoded size of a CHUNK record carrying `data_len` bytes.
    pub fn chunk_encoded_len(data_len: usize) -> usize {
        RECORD_HEADER_BYTES + 1 + 8 + 4 + data_len
    }

    /// Appends the framed record to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
        match self {
            Record::Begin { counter, producer_ts_ms, server_ts_ms, header } => {
                out.push(KIND_BEGIN);
                out.extend_from_slice(&counter.to_le_bytes());
                out.extend_from_slice(&producer_ts_ms.to_le_bytes());
                out.extend_from_slice(&server_ts_ms.to_le_bytes());
                out.extend_from_slice(&(header.len() as u32).to_le_bytes());
                out.extend_from_slice(header);
            }
            Record::Chunk { counter, end_offset_ms, data } => {
                out.push(KIND_CHUNK);
                out.extend_from_slice(&counter.to_le_bytes());
                out.extend_from_slice(&end_offset_ms.to_le_bytes());
                out.extend_from_slice(data);
            }
            Record::Finish { counter, duration_ms, chunk_count, payload_bytes } => {
                out.push(KIND_FINISH);
                out.extend_from_slice(&counter.to_le_bytes());
                out.extend_from_slice(&duration_ms.to_le_bytes());
                out.extend_from_slice(&chunk_count.to_le_bytes());
                out.extend_from_slice(&payload_bytes.to_le_bytes());
            }
        }
        let body = &out[start + RECORD_HEADER_BYTES..];
        let len = (body.len() as u32).to_le_bytes();
        let crc = crc32c::crc32c(body).to_le_bytes();
        out[start..start + 4].copy_from_slice(&len);
        out[start + 4..start + 8].copy_from_slice(&crc);
    }

    /// The framed record as a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v
    }

    /// Decodes the record at the start of `buf`; returns it and its framed length.
    /// Bodies are zero-copy slices of `buf`.
    pub fn decode(buf: &Bytes) -> Result<(Record, usize), DecodeError> {
        if buf.len() < RECORD_HEADER_BYTES {
            return Err(DecodeError::Truncated);
        }
        let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if len == 0 || len as usize > MAX_RECORD_BODY_BYTES + 64 {
            return Err(DecodeError::BadLength(len));
        }
        let total = RECORD_HEADER_BYTES + len as usize;
        if buf.len() < total {
            return Err(DecodeError::Truncated);
        }
        let body = buf.slice(RECORD_HEADER_BYTES..total);
        if crc32c::crc32c(&body) != crc {
            return Err(DecodeError::BadChecksum);
        }
        Ok((parse_body(&body)?, total))
    }
}

/// Little-endian field reader over a record body.
struct Fields<'a> {
    body: &'a Bytes,
    pos: usize,
}

impl Fields<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end =
            self.pos.checked_add(n).filter(|&e| e <= self.body.len()).ok_or(DecodeError::BadBody("short field"))?;
        let s = &self.body[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    fn rest(&mut self) -> Bytes {
        let b = self.body.slice(self.pos..);
        self.pos = self.body.len();
        b
    }
    fn end(&self) -> Result<(), DecodeError> {
        if self.pos == self.body.len() { Ok(()) } else { Err(DecodeError::BadBody("trailing bytes")) }
    }
}

fn parse_body(body: &Bytes) -> Result<Record, DecodeError> {
    let mut f = Fields { body, pos: 1 };
    let kind = *body.first().ok_or(DecodeError::BadBody("empty"))?;
    let rec = match kind {
        KIND_BEGIN => {
            let counter = f.u64()?;
            let producer_ts_ms = f.u64()?;
            let server_ts_ms = f.u64()?;
            let header_len = f.u32()? as usize;
            f.take(header_len)?;
            let header = body.slice(f.pos - header_len..f.pos);
            Record::Begin { counter, producer_ts_ms, server_ts_ms, header }
        }
        KIND_CHUNK => {
            let counter = f.u64()?;
            let end_offset_ms = f.u32()?;
            Record::Chunk { counter, end_offset_ms, data: f.rest() }
        }
        KIND_FINISH => {
            Record::Finish { counter: f.u64()?, duration_ms: f.u32()?, chunk_count: f.u32()?, payload_bytes: f.u64()? }
        }
        _ => return Err(DecodeError::BadBody("unknown record kind")),
    };
    f.end()?;
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_record() -> impl Strategy<Value = Record> {
        prop_oneof![
            (any::<u64>(), any::<u64>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(
                |(counter, p, s, h)| Record::Begin { counter, producer_ts_ms: p, server_ts_ms: s, header: h.into() }
            ),
            (any::<u64>(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..256))
                .prop_map(|(counter, e, d)| Record::Chunk { counter, end_offset_ms: e, data: d.into() }),
            (any::<u64>(), any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(counter, d, c, p)| Record::Finish {
                counter,
                duration_ms: d,
                chunk_count: c,
                payload_bytes: p
            }),
        ]
    }

    proptest! {
        #[test]
        fn round_trips(rec in arb_record()) {
            let bytes = Bytes::from(rec.encode());
            let (back, used) = Record::decode(&bytes).unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(back, rec);
        }

        #[test]
        fn every_prefix_is_truncated(rec in arb_record()) {
            let bytes = Bytes::from(rec.encode());
            for cut in 0..bytes.len() {
                prop_assert!(Record::decode(&bytes.slice(..cut)).is_err());
            }
        }

        #[test]
        fn any_flipped_byte_is_detected(rec in arb_record(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut raw = rec.encode();
            let i = pos.index(raw.len());
            raw[i] ^= 1 << bit;
            let bytes = Bytes::from(raw);
            match Record::decode(&bytes) {
                Err(_) => {}
                Ok((r, _)) => prop_assert!(false, "flipped byte {} decoded as {:?}", i, r),
            }
        }
    }

    #[test]
    fn chunk_len_formula_matches() {
        let r = Record::Chunk { counter: 1, end_offset_ms: 2, data: Bytes::from_static(b"abc") };
        assert_eq!(r.encode().len(), Record::chunk_encoded_len(3));
    }
}
