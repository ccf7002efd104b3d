//! EBML primitives (RFC 8794): variable-length integers, element headers, typed payloads.
//!
//! Writing appends to a `Vec<u8>`; reading works on borrowed slices and checks every length
//! against the bytes actually present.

use super::MkvError;

/// The 8-byte "unknown size" marker, for elements whose end is not known when they start.
pub const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

/// Largest element size an 8-byte size field can express (2^56 − 2; all ones means unknown).
pub const MAX_SIZE: u64 = (1 << 56) - 2;

/// Appends an element ID (IDs keep their length marker bits, so they are written as-is).
pub fn write_id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(3);
    out.extend_from_slice(&bytes[skip..]);
}

/// Number of bytes the shortest size field for `size` takes.
pub fn size_len(size: u64) -> usize {
    // A length-n vint holds 7n value bits; the all-ones value is reserved for "unknown".
    (1..=8).find(|n| size < (1u64 << (7 * n)) - 1).unwrap_or(8)
}

/// Appends `size` as the shortest EBML variable-length integer.
pub fn write_size(out: &mut Vec<u8>, size: u64) {
    let size = size.min(MAX_SIZE);
    let n = size_len(size);
    let marked = size | (1u64 << (7 * n));
    out.extend_from_slice(&marked.to_be_bytes()[8 - n..]);
}

/// Appends an element header: ID then size.
pub fn write_header(out: &mut Vec<u8>, id: u32, size: u64) {
    write_id(out, id);
    write_size(out, size);
}

/// Appends an unsigned-integer element using the fewest bytes (at least one).
pub fn write_uint(out: &mut Vec<u8>, id: u32, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(7);
    write_header(out, id, (8 - skip) as u64);
    out.extend_from_slice(&bytes[skip..]);
}

/// Appends an 8-byte float element.
pub fn write_float(out: &mut Vec<u8>, id: u32, v: f64) {
    write_header(out, id, 8);
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a binary element.
pub fn write_bytes(out: &mut Vec<u8>, id: u32, v: &[u8]) {
    write_header(out, id, v.len() as u64);
    out.extend_from_slice(v);
}

/// Appends a string (ASCII or UTF-8) element.
pub fn write_str(out: &mut Vec<u8>, id: u32, v: &str) {
    write_bytes(out, id, v.as_bytes());
}

/// Appends a master element whose children `body` writes.
pub fn write_master(out: &mut Vec<u8>, id: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let mut children = Vec::new();
    body(&mut children);
    write_bytes(out, id, &children);
}

/// A parsed element header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Element ID with its marker bits (e.g. `0x1A45DFA3`).
    pub id: u32,
    /// Payload size; `None` for the "unknown size" marker.
    pub size: Option<u64>,
    /// Bytes taken by the ID and size fields.
    pub len: usize,
}

/// Reads an element ID (1–4 bytes) from the start of `data`: (id, length).
pub fn read_id(data: &[u8]) -> Result<(u32, usize), MkvError> {
    let first = *data.first().ok_or(MkvError::Truncated)?;
    let n = first.leading_zeros() as usize + 1;
    if n > 4 {
        return Err(MkvError::BadVint);
    }
    let bytes = data.get(..n).ok_or(MkvError::Truncated)?;
    Ok((bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)), n))
}

/// Reads a variable-length integer (1–8 bytes): (value without marker, length, all value bits set).
pub fn read_vint(data: &[u8]) -> Result<(u64, usize, bool), MkvError> {
    let first = *data.first().ok_or(MkvError::Truncated)?;
    let n = first.leading_zeros() as usize + 1;
    if n > 8 {
        return Err(MkvError::BadVint);
    }
    let bytes = data.get(..n).ok_or(MkvError::Truncated)?;
    let raw = bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let value = raw & ((1u64 << (7 * n)) - 1);
    Ok((value, n, value == (1u64 << (7 * n)) - 1))
}

/// Reads an element header from the start of `data`.
pub fn read_header(data: &[u8]) -> Result<Header, MkvError> {
    let (id, id_len) = read_id(data)?;
    let (size, size_len, unknown) = read_vint(data.get(id_len..).unwrap_or(&[]))?;
    Ok(Header { id, size: (!unknown).then_some(size), len: id_len + size_len })
}

/// Splits the next complete (known-size) element off `data`: (header, payload, rest).
pub fn next_element(data: &[u8]) -> Result<(Header, &[u8], &[u8]), MkvError> {
    let h = read_header(data)?;
    let size = h.size.ok_or(MkvError::UnknownSizeNotAllowed(h.id))?;
    let body = data.get(h.len..).unwrap_or(&[]);
    let size = usize::try_from(size).map_err(|_| MkvError::Truncated)?;
    let (payload, rest) = body.split_at_checked(size).ok_or(MkvError::Truncated)?;
    Ok((h, payload, rest))
}

/// Iterates over the complete elements of a master element's payload.
pub fn children(mut data: &[u8]) -> impl Iterator<Item = Result<(u32, &[u8]), MkvError>> {
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        match next_element(data) {
            Ok((h, payload, rest)) => {
                data = rest;
                Some(Ok((h.id, payload)))
            }
            Err(e) => {
                data = &[];
                Some(Err(e))
            }
        }
    })
}

/// Decodes an unsigned-integer payload (0–8 bytes, big-endian).
pub fn read_uint(payload: &[u8]) -> Result<u64, MkvError> {
    if payload.len() > 8 {
        return Err(MkvError::BadValue("integer longer than 8 bytes"));
    }
    Ok(payload.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// Decodes a float payload (0, 4 or 8 bytes).
pub fn read_float(payload: &[u8]) -> Result<f64, MkvError> {
    match payload.len() {
        0 => Ok(0.0),
        4 => Ok(f64::from(f32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]))),
        8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(payload);
            Ok(f64::from_be_bytes(b))
        }
        _ => Err(MkvError::BadValue("float is not 0, 4 or 8 bytes")),
    }
}

/// Decodes a string payload (UTF-8; trailing NUL padding is dropped).
pub fn read_str(payload: &[u8]) -> Result<String, MkvError> {
    let end = payload.iter().position(|&b| b == 0).unwrap_or(payload.len());
    String::from_utf8(payload[..end].to_vec()).map_err(|_| MkvError::BadValue("string is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_the_shortest_vint() {
        let enc = |s| {
            let mut v = vec![];
            write_size(&mut v, s);
            v
        };
        assert_eq!(enc(0), vec![0x80]);
        assert_eq!(enc(126), vec![0xfe]);
        assert_eq!(enc(127), vec![0x40, 0x7f]); // 0xff would mean "unknown"
        assert_eq!(enc(16_382), vec![0x7f, 0xfe]);
        assert_eq!(enc(16_383), vec![0x20, 0x3f, 0xff]);
        for s in [0, 1, 126, 127, 128, 16_383, 1 << 20, 1 << 40, MAX_SIZE] {
            let bytes = enc(s);
            assert_eq!(bytes.len(), size_len(s));
            assert_eq!(read_vint(&bytes).unwrap(), (s, bytes.len(), false));
        }
        assert!(read_vint(&UNKNOWN_SIZE).unwrap().2);
        assert!(read_vint(&[0xff]).unwrap().2);
        assert_eq!(read_vint(&[0x00, 1]), Err(MkvError::BadVint));
        assert_eq!(read_vint(&[0x40]), Err(MkvError::Truncated));
    }

    #[test]
    fn elements_round_trip() {
        let mut out = vec![];
        write_uint(&mut out, 0x2AD7B1, 1_000_000);
        write_uint(&mut out, 0xD7, 0);
        write_str(&mut out, 0x86, "A_OPUS");
        write_float(&mut out, 0xB5, 48_000.0);
        write_master(&mut out, 0xE0, |o| write_uint(o, 0xB0, 640));
        assert_eq!(&out[..7], &[0x2a, 0xd7, 0xb1, 0x83, 0x0f, 0x42, 0x40]);
        let kids: Vec<_> = children(&out).map(Result::unwrap).collect();
        assert_eq!(kids.len(), 5);
        assert_eq!(read_uint(kids[0].1), Ok(1_000_000));
        assert_eq!(read_uint(kids[1].1), Ok(0));
        assert_eq!(read_str(kids[2].1).unwrap(), "A_OPUS");
        assert_eq!(read_float(kids[3].1), Ok(48_000.0));
        assert_eq!(kids[4].0, 0xE0);
        assert_eq!(read_uint(children(kids[4].1).next().unwrap().unwrap().1), Ok(640));
        assert!(children(&out[..out.len() - 1]).any(|r| r == Err(MkvError::Truncated)));
    }
}
