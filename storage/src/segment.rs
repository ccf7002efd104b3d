//! Segment files (sans-IO part): scanning records into fragments, the sidecar index format,
//! and decoding one fragment's byte range.
//!
//! **Torn-fragment rule.** A fragment whose FINISH record is missing (the writer crashed, or
//! dropped its [`crate::FragmentWriter`] without finishing) is kept as a *shorter fragment*
//! made of its complete, checksummed chunks: its duration becomes the largest chunk end
//! offset and [`crate::FragmentInfo::truncated`] is set. A torn fragment without any complete
//! chunk is dropped. This bounds media lost in a crash to what was not yet group-committed
//! (≤ the commit interval), instead of the whole 2–10 s fragment.

use bytes::Bytes;

use crate::record::{DecodeError, Record, SEGMENT_MAGIC};

/// One fragment's index entry: where it lives and what readers need to know without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub counter: u64,
    pub producer_ts_ms: u64,
    pub server_ts_ms: u64,
    pub duration_ms: u32,
    pub chunk_count: u32,
    pub payload_bytes: u64,
    pub header_bytes: u32,
    /// Finished by the torn-fragment rule rather than a FINISH record.
    pub truncated: bool,
    /// Sequence number of the segment holding it.
    pub segment: u64,
    /// Byte offset of its BEGIN record in the segment.
    pub offset: u64,
    /// Bytes from BEGIN through its last record.
    pub len: u64,
}

/// What a scan of a segment's bytes found.
#[derive(Debug, Default)]
pub(crate) struct ScanOutcome {
    /// Fragments in file order (torn ones already shortened).
    pub fragments: Vec<IndexEntry>,
    /// Length of the valid prefix: everything after it is torn or corrupt.
    pub valid_len: u64,
    /// Where and why scanning stopped early, if it did.
    pub stopped: Option<(u64, String)>,
    /// Largest fragment counter seen, including dropped ones (never reuse it).
    pub max_counter: u64,
    /// Unfinished fragments kept as shorter fragments.
    pub torn_kept: usize,
    /// Unfinished fragments dropped because no chunk was complete.
    pub torn_dropped: usize,
}

/// A fragment being assembled by the scanner.
struct Draft {
    entry: IndexEntry,
    max_end_offset_ms: u32,
}

impl Draft {
    /// Applies the torn-fragment rule: `None` when no chunk survived.
    fn into_truncated(mut self) -> Option<IndexEntry> {
        if self.entry.chunk_count == 0 {
            return None;
        }
        self.entry.duration_ms = self.max_end_offset_ms;
        self.entry.truncated = true;
        Some(self.entry)
    }
}

/// Scans a whole segment file image.
pub(crate) fn scan_segment(buf: &Bytes, segment: u64) -> ScanOutcome {
    let mut out = ScanOutcome::default();
    if buf.len() < SEGMENT_MAGIC.len() || &buf[..SEGMENT_MAGIC.len()] != SEGMENT_MAGIC {
        out.stopped = Some((0, "missing segment magic".into()));
        return out;
    }
    let mut pos = SEGMENT_MAGIC.len();
    out.valid_len = pos as u64;
    let mut open: Option<Draft> = None;
    while pos < buf.len() {
        let (rec, used) = match Record::decode(&buf.slice(pos..)) {
            Ok(x) => x,
            Err(e) => {
                out.stopped = Some((pos as u64, e.to_string()));
                break;
            }
        };
        let rec_end = (pos + used) as u64;
        out.max_counter = out.max_counter.max(rec.counter());
        match rec {
            Record::Begin { counter, producer_ts_ms, server_ts_ms, header } => {
                if let Some(prev) = open.take() {
                    out.close_torn(prev);
                }
                open = Some(Draft {
                    entry: IndexEntry {
                        counter,
                        producer_ts_ms,
                        server_ts_ms,
                        duration_ms: 0,
                        chunk_count: 0,
                        payload_bytes: 0,
                        header_bytes: header.len() as u32,
                        truncated: false,
                        segment,
                        offset: pos as u64,
                        len: rec_end - pos as u64,
                    },
                    max_end_offset_ms: 0,
                });
            }
            Record::Chunk { counter, end_offset_ms, data } => match open.as_mut() {
                Some(d) if d.entry.counter == counter => {
                    d.entry.chunk_count += 1;
                    d.entry.payload_bytes += data.len() as u64;
                    d.entry.len = rec_end - d.entry.offset;
                    d.max_end_offset_ms = d.max_end_offset_ms.max(end_offset_ms);
                }
                _ => {
                    out.stopped = Some((pos as u64, "chunk outside its fragment".into()));
                    break;
                }
            },
            Record::Finish { counter, duration_ms, .. } => match open.take() {
                Some(mut d) if d.entry.counter == counter => {
                    d.entry.duration_ms = duration_ms;
                    d.entry.len = rec_end - d.entry.offset;
                    out.fragments.push(d.entry);
                }
                _ => {
                    out.stopped = Some((pos as u64, "finish outside its fragment".into()));
                    break;
                }
            },
        }
        pos += used;
        out.valid_len = pos as u64;
    }
    if let Some(last) = open {
        out.close_torn(last);
    }
    out
}

impl ScanOutcome {
    fn close_torn(&mut self, draft: Draft) {
        match draft.into_truncated() {
            Some(e) => {
                self.torn_kept += 1;
                self.fragments.push(e);
            }
            None => self.torn_dropped += 1,
        }
    }
}

/// A fragment's decoded contents.
pub(crate) struct DecodedFragment {
    pub header: Bytes,
    pub chunks: Vec<(u32, Bytes)>,
}

/// Decodes the byte range of one fragment (`buf` starts at its BEGIN record) and checks it
/// against its index entry. Errors carry the offset within `buf`.
pub(crate) fn decode_fragment(buf: &Bytes, entry: &IndexEntry) -> Result<DecodedFragment, (u64, String)> {
    let mut pos = 0usize;
    let mut header = None;
    let mut chunks = Vec::with_capacity(entry.chunk_count as usize);
    while pos < buf.len() {
        let (rec, used) = Record::decode(&buf.slice(pos..)).map_err(|e: DecodeError| (pos as u64, e.to_string()))?;
        if rec.counter() != entry.counter {
            return Err((pos as u64, "record of another fragment".into()));
        }
        match rec {
            Record::Begin { header: h, .. } if pos == 0 => header = Some(h),
            Record::Chunk { end_offset_ms, data, .. } if header.is_some() => chunks.push((end_offset_ms, data)),
            Record::Finish { .. } if pos + used == buf.len() => {}
            _ => return Err((pos as u64, "records out of order".into())),
        }
        pos += used;
    }
    let header = header.ok_or((0, "fragment has no BEGIN record".to_string()))?;
    if chunks.len() as u32 != entry.chunk_count {
        return Err((0, format!("expected {} chunks, found {}", entry.chunk_count, chunks.len())));
    }
    Ok(DecodedFragment { header, chunks })
}

/// First bytes of a sidecar index file.
const INDEX_MAGIC: &[u8; 8] = b"REELIDX1";
const INDEX_ENTRY_BYTES: usize = 8 * 7 + 4 * 3 + 1;

/// Encodes the sidecar index of a sealed segment of `segment_len` bytes.
pub(crate) fn encode_index(segment_len: u64, entries: &[IndexEntry]) -> Vec<u8> {
    let mut v = Vec::with_capacity(24 + entries.len() * INDEX_ENTRY_BYTES);
    v.extend_from_slice(INDEX_MAGIC);
    v.extend_from_slice(&segment_len.to_le_bytes());
    v.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        for x in [e.counter, e.producer_ts_ms, e.server_ts_ms, e.payload_bytes, e.segment, e.offset, e.len] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        for x in [e.duration_ms, e.chunk_count, e.header_bytes] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.push(u8::from(e.truncated));
    }
    let crc = crc32c::crc32c(&v);
    v.extend_from_slice(&crc.to_le_bytes());
    v
}

/// Decodes a sidecar index: `(segment_len, entries)`, or why it is unusable.
pub(crate) fn decode_index(buf: &[u8]) -> Result<(u64, Vec<IndexEntry>), &'static str> {
    let body_len = buf.len().checked_sub(4).ok_or("index too short")?;
    let (body, crc) = buf.split_at(body_len);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err("index checksum mismatch");
    }
    if body.len() < 20 || &body[..8] != INDEX_MAGIC {
        return Err("index magic missing");
    }
    let u64_at = |i: usize| body.get(i..i + 8).map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])));
    let u32_at = |i: usize| body.get(i..i + 4).map(|s| u32::from_le_bytes(s.try_into().unwrap_or([0; 4])));
    let segment_len = u64_at(8).ok_or("index too short")?;
    let count = u32_at(16).ok_or("index too short")? as usize;
    if body.len() != 20 + count * INDEX_ENTRY_BYTES {
        return Err("index length does not match its entry count");
    }
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let b = 20 + i * INDEX_ENTRY_BYTES;
        let w = |k: usize| u64_at(b + 8 * k).ok_or("index too short");
        let n = |k: usize| u32_at(b + 56 + 4 * k).ok_or("index too short");
        entries.push(IndexEntry {
            counter: w(0)?,
            producer_ts_ms: w(1)?,
            server_ts_ms: w(2)?,
            payload_bytes: w(3)?,
            segment: w(4)?,
            offset: w(5)?,
            len: w(6)?,
            duration_ms: n(0)?,
            chunk_count: n(1)?,
            header_bytes: n(2)?,
            truncated: body.get(b + 68).copied().ok_or("index too short")? != 0,
        });
    }
    Ok((segment_len, entries))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a segment image: each fragment is (chunk end offsets, finished?).
    pub(crate) fn image(frags: &[(u64, &[u32], bool)]) -> Vec<u8> {
        let mut v = SEGMENT_MAGIC.to_vec();
        for (counter, ends, finished) in frags {
            Record::Begin {
                counter: *counter,
                producer_ts_ms: counter * 1000,
                server_ts_ms: counter * 1000 + 5,
                header: Bytes::from_static(b"hdr"),
            }
            .encode_into(&mut v);
            for (i, end) in ends.iter().enumerate() {
                Record::Chunk { counter: *counter, end_offset_ms: *end, data: Bytes::from(vec![i as u8; 10]) }
                    .encode_into(&mut v);
            }
            if *finished {
                Record::Finish {
                    counter: *counter,
                    duration_ms: 2000,
                    chunk_count: ends.len() as u32,
                    payload_bytes: 10 * ends.len() as u64,
                }
                .encode_into(&mut v);
            }
        }
        v
    }

    #[test]
    fn finished_fragments_scan_whole() {
        let img = Bytes::from(image(&[(1, &[40, 80], true), (2, &[40], true)]));
        let out = scan_segment(&img, 0);
        assert!(out.stopped.is_none());
        assert_eq!(out.valid_len, img.len() as u64);
        assert_eq!(out.fragments.len(), 2);
        assert_eq!(out.fragments[0].duration_ms, 2000);
        assert!(!out.fragments[1].truncated);
        for e in &out.fragments {
            let d = decode_fragment(&img.slice(e.offset as usize..(e.offset + e.len) as usize), e).unwrap();
            assert_eq!(d.header, Bytes::from_static(b"hdr"));
            assert_eq!(d.chunks.len() as u32, e.chunk_count);
        }
    }

    #[test]
    fn torn_fragment_keeps_complete_chunks_or_is_dropped() {
        let img = Bytes::from(image(&[(1, &[40], true), (2, &[40, 80, 120], false)]));
        let out = scan_segment(&img, 0);
        assert_eq!(out.fragments.len(), 2);
        let torn = out.fragments[1];
        assert!(torn.truncated);
        assert_eq!((torn.chunk_count, torn.duration_ms), (3, 120));
        let img = Bytes::from(image(&[(1, &[40], true), (2, &[], false)]));
        let out = scan_segment(&img, 0);
        assert_eq!(out.fragments.len(), 1);
        assert_eq!(out.max_counter, 2);
    }

    #[test]
    fn index_round_trips_and_rejects_damage() {
        let img = Bytes::from(image(&[(1, &[40, 80], true), (2, &[40], false)]));
        let out = scan_segment(&img, 7);
        let enc = encode_index(img.len() as u64, &out.fragments);
        let (len, back) = decode_index(&enc).unwrap();
        assert_eq!(len, img.len() as u64);
        assert_eq!(back, out.fragments);
        for i in 0..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 0x10;
            assert!(decode_index(&bad).is_err(), "flip at {i} accepted");
        }
    }
}
