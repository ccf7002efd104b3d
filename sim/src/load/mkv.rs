//! A small Matroska block walker: what a stored stream holds, per track, read back from a
//! GetMediaForFragmentList (or GetMedia) body. Sans-IO.
//!
//! It does not build a tree. It walks the elements in order, stepping *into* the masters it
//! cares about (Segment, Info, Tracks, TrackEntry, Cluster, BlockGroup, Tags, Tag,
//! SimpleTag) and over everything else, so unknown-size Segments and Clusters (live
//! GetMedia) need no special case. Each EBML header starts a new *document* (one fragment
//! in KVS bodies); the `AWS_KINESISVIDEO_FRAGMENT_NUMBER` tag names it, and a document with
//! `AWS_KINESISVIDEO_EXCEPTION_ERROR_CODE` is a fragment the service could not return.
//!
//! Block times are `(Cluster Timecode + block offset) × TimecodeScale`, in µs. Tracks are
//! told apart by their `TrackType` (1 video, 2 audio); a block of an undeclared track
//! number falls back to KVS's convention (1 video, 2 audio).

use std::collections::BTreeMap;

/// Tag naming the fragment of a document.
pub const FRAGMENT_NUMBER_TAG: &str = "AWS_KINESISVIDEO_FRAGMENT_NUMBER";
/// Tag of a GetMediaForFragmentList error document (with `…_EXCEPTION_MESSAGE`).
pub const EXCEPTION_CODE_TAG: &str = "AWS_KINESISVIDEO_EXCEPTION_ERROR_CODE";

/// Element ids the walker knows.
mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const SEGMENT: u32 = 0x1853_8067;
    pub const INFO: u32 = 0x1549_A966;
    pub const TIMECODE_SCALE: u32 = 0x2A_D7B1;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const TAGS: u32 = 0x1254_C367;
    pub const TAG: u32 = 0x7373;
    pub const SIMPLE_TAG: u32 = 0x67C8;
    pub const TAG_NAME: u32 = 0x45A3;
    pub const TAG_STRING: u32 = 0x4487;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TIMECODE: u32 = 0xE7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
    pub const BLOCK_GROUP: u32 = 0xA0;
    pub const BLOCK: u32 = 0xA1;
}

/// Masters the walker steps into.
const DESCEND: [u32; 9] = [
    id::SEGMENT,
    id::INFO,
    id::TRACKS,
    id::TRACK_ENTRY,
    id::CLUSTER,
    id::BLOCK_GROUP,
    id::TAGS,
    id::TAG,
    id::SIMPLE_TAG,
];

/// Why a body could not be walked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MkvError {
    /// An element id or size that is not a valid EBML vint.
    #[error("bad EBML vint at byte {0}")]
    BadVint(usize),
    /// An element running past the end of the body.
    #[error("element at byte {0} is truncated")]
    Truncated(usize),
    /// An unknown size on an element that must have one.
    #[error("element {id:#x} at byte {at} has an unknown size")]
    UnknownSize {
        /// The element id.
        id: u32,
        /// Where it starts.
        at: usize,
    },
    /// A block too short for its header.
    #[error("block at byte {0} is too short")]
    ShortBlock(usize),
}

/// Which track a block belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    /// `TrackType` 1.
    Video,
    /// `TrackType` 2.
    Audio,
    /// Anything else.
    Other,
}

/// One stored frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredFrame {
    /// Its timestamp, µs (producer time: ms since the Unix epoch × 1000 in KVS bodies).
    pub ts_us: i64,
    /// The keyframe flag of a SimpleBlock (false for a plain Block).
    pub keyframe: bool,
    /// The document (fragment) it came in, counted from 0 across every body pushed.
    pub doc: usize,
}

/// Everything read back of one stream, in storage order per track.
#[derive(Debug, Clone, Default)]
pub struct StoredStream {
    /// Video frames.
    pub video: Vec<StoredFrame>,
    /// Audio frames.
    pub audio: Vec<StoredFrame>,
    /// Frames of other tracks.
    pub other_frames: u64,
    /// Fragment number per document (`None` when the document had no such tag).
    pub fragment_numbers: Vec<Option<String>>,
    /// Error documents: (fragment number, error code).
    pub fragment_errors: Vec<(String, String)>,
}

/// The walker's position-independent state.
#[derive(Debug, Default)]
struct Walk {
    timecode_scale_ns: u64,
    tracks: BTreeMap<u64, TrackKind>,
    entry_number: Option<u64>,
    entry_type: Option<u64>,
    cluster_tc: i64,
    tag_name: Option<String>,
}

impl StoredStream {
    /// Walks one body (whole documents) and appends what it holds.
    pub fn push_body(&mut self, body: &[u8]) -> Result<(), MkvError> {
        let mut walk = Walk { timecode_scale_ns: 1_000_000, ..Default::default() };
        let mut pos = 0;
        while pos < body.len() {
            let (elem, len) = read_id(body, pos)?;
            let (size, size_len) = read_size(body, pos + len)?;
            let data = pos + len + size_len;
            if DESCEND.contains(&elem) {
                if elem == id::TRACK_ENTRY {
                    (walk.entry_number, walk.entry_type) = (None, None);
                }
                pos = data;
                continue;
            }
            let size = size.ok_or(MkvError::UnknownSize { id: elem, at: pos })?;
            let end = usize::try_from(size).ok().and_then(|s| data.checked_add(s)).filter(|&e| e <= body.len());
            let end = end.ok_or(MkvError::Truncated(pos))?;
            self.leaf(&mut walk, elem, &body[data..end], pos)?;
            pos = end;
        }
        Ok(())
    }

    /// Handles one element the walker does not step into.
    fn leaf(&mut self, walk: &mut Walk, elem: u32, payload: &[u8], at: usize) -> Result<(), MkvError> {
        match elem {
            id::EBML => {
                self.fragment_numbers.push(None);
                walk.cluster_tc = 0;
            }
            id::TIMECODE_SCALE => walk.timecode_scale_ns = uint(payload).max(1),
            id::TRACK_NUMBER => walk.entry_number = Some(uint(payload)),
            id::TRACK_TYPE => walk.entry_type = Some(uint(payload)),
            id::TIMECODE => walk.cluster_tc = uint(payload) as i64,
            id::TAG_NAME => walk.tag_name = Some(String::from_utf8_lossy(payload).into_owned()),
            id::TAG_STRING => self.tag(walk, String::from_utf8_lossy(payload).into_owned()),
            id::SIMPLE_BLOCK | id::BLOCK => self.block(walk, payload, elem == id::SIMPLE_BLOCK, at)?,
            _ => {}
        }
        if let (Some(n), Some(t)) = (walk.entry_number, walk.entry_type) {
            let kind = match t {
                1 => TrackKind::Video,
                2 => TrackKind::Audio,
                _ => TrackKind::Other,
            };
            walk.tracks.insert(n, kind);
        }
        Ok(())
    }

    /// A `TagString` after a `TagName`.
    fn tag(&mut self, walk: &mut Walk, value: String) {
        let doc_number = |s: &mut Self| s.fragment_numbers.last().cloned().flatten().unwrap_or_default();
        match walk.tag_name.take().as_deref() {
            Some(FRAGMENT_NUMBER_TAG) => {
                if let Some(slot) = self.fragment_numbers.last_mut() {
                    *slot = Some(value);
                }
            }
            Some(EXCEPTION_CODE_TAG) => {
                let number = doc_number(self);
                self.fragment_errors.push((number, value));
            }
            _ => {}
        }
    }

    /// A `SimpleBlock` or `Block`: track vint, signed 16-bit offset, flags, frame(s).
    fn block(&mut self, walk: &Walk, b: &[u8], simple: bool, at: usize) -> Result<(), MkvError> {
        let (track, len) = read_size(b, 0).map_err(|_| MkvError::BadVint(at))?;
        let track = track.ok_or(MkvError::BadVint(at))?;
        let header = b.get(len..len + 3).ok_or(MkvError::ShortBlock(at))?;
        let offset = i64::from(i16::from_be_bytes([header[0], header[1]]));
        let flags = header[2];
        // Laced blocks carry (count − 1) right after the flags.
        let frames =
            if flags & 0x06 != 0 { u64::from(*b.get(len + 3).ok_or(MkvError::ShortBlock(at))?) + 1 } else { 1 };
        let ts_us = (walk.cluster_tc + offset).saturating_mul(walk.timecode_scale_ns as i64) / 1000;
        let frame = StoredFrame {
            ts_us,
            keyframe: simple && flags & 0x80 != 0,
            doc: self.fragment_numbers.len().saturating_sub(1),
        };
        let kind = walk.tracks.get(&track).copied().unwrap_or(match track {
            1 => TrackKind::Video,
            2 => TrackKind::Audio,
            _ => TrackKind::Other,
        });
        for _ in 0..frames {
            match kind {
                TrackKind::Video => self.video.push(frame),
                TrackKind::Audio => self.audio.push(frame),
                TrackKind::Other => self.other_frames += 1,
            }
        }
        Ok(())
    }
}

/// An element id at `pos` (marker bits kept) and its length.
fn read_id(b: &[u8], pos: usize) -> Result<(u32, usize), MkvError> {
    let first = *b.get(pos).ok_or(MkvError::Truncated(pos))?;
    let len = first.leading_zeros() as usize + 1;
    if len > 4 {
        return Err(MkvError::BadVint(pos));
    }
    let bytes = b.get(pos..pos + len).ok_or(MkvError::Truncated(pos))?;
    Ok((bytes.iter().fold(0u32, |v, &x| v << 8 | u32::from(x)), len))
}

/// An element size (or block track number) at `pos`: `None` for the unknown size.
fn read_size(b: &[u8], pos: usize) -> Result<(Option<u64>, usize), MkvError> {
    let first = *b.get(pos).ok_or(MkvError::Truncated(pos))?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return Err(MkvError::BadVint(pos));
    }
    let bytes = b.get(pos..pos + len).ok_or(MkvError::Truncated(pos))?;
    let mask = if len == 8 { 0 } else { 0xFFu8 >> len };
    let value = bytes[1..].iter().fold(u64::from(first & mask), |v, &x| v << 8 | u64::from(x));
    let all_ones = (1u64 << (7 * len)) - 1;
    Ok(((value != all_ones).then_some(value), len))
}

/// A big-endian unsigned integer payload (0 for an empty one, low 8 bytes if longer).
fn uint(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |v, &x| v << 8 | u64::from(x))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An element with a 1-byte size (payload < 127 bytes) or an 8-byte one.
    pub(crate) fn elem(id: u32, payload: &[u8]) -> Vec<u8> {
        let mut v: Vec<u8> = id.to_be_bytes().iter().copied().skip_while(|&b| b == 0).collect();
        if payload.len() < 127 {
            v.push(0x80 | payload.len() as u8);
        } else {
            v.push(0x01);
            v.extend_from_slice(&(payload.len() as u64).to_be_bytes()[1..]);
        }
        v.extend_from_slice(payload);
        v
    }

    fn unknown_size(id: u32) -> Vec<u8> {
        let mut v: Vec<u8> = id.to_be_bytes().to_vec();
        v.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        v
    }

    fn simple_block(track: u8, offset: i16, key: bool) -> Vec<u8> {
        let mut p = vec![0x80 | track];
        p.extend_from_slice(&offset.to_be_bytes());
        p.push(if key { 0x80 } else { 0 });
        p.extend_from_slice(&[1, 2, 3]);
        elem(id::SIMPLE_BLOCK, &p)
    }

    fn track(number: u8, kind: u8) -> Vec<u8> {
        let mut e = elem(id::TRACK_NUMBER, &[number]);
        e.extend(elem(id::TRACK_TYPE, &[kind]));
        elem(id::TRACK_ENTRY, &e)
    }

    fn simple_tag(name: &str, value: &str) -> Vec<u8> {
        let mut t = elem(id::TAG_NAME, name.as_bytes());
        t.extend(elem(id::TAG_STRING, value.as_bytes()));
        elem(id::TAGS, &elem(id::TAG, &elem(id::SIMPLE_TAG, &t)))
    }

    /// A KVS-like document: video on track 2 and audio on track 1 (to prove TrackType is
    /// read), `blocks` as (track, offset ms, keyframe) in a cluster at `tc` ms.
    pub(crate) fn document(number: &str, tc: u64, blocks: &[(u8, i16, bool)], known_cluster_size: bool) -> Vec<u8> {
        let mut d = elem(id::EBML, &elem(0x4282, b"matroska"));
        d.extend(unknown_size(id::SEGMENT));
        d.extend(elem(id::INFO, &elem(id::TIMECODE_SCALE, &[0x0F, 0x42, 0x40])));
        let mut tracks = track(2, 1);
        tracks.extend(track(1, 2));
        d.extend(elem(id::TRACKS, &tracks));
        d.extend(simple_tag(FRAGMENT_NUMBER_TAG, number));
        let mut cluster = elem(id::TIMECODE, &tc.to_be_bytes());
        for &(t, off, key) in blocks {
            cluster.extend(simple_block(t, off, key));
        }
        if known_cluster_size {
            d.extend(elem(id::CLUSTER, &cluster));
        } else {
            d.extend(unknown_size(id::CLUSTER));
            d.extend(cluster);
        }
        d
    }

    #[test]
    fn walks_documents_blocks_and_tags() {
        let mut body =
            document("100", 1_700_000_000_000, &[(2, 0, true), (1, 0, true), (1, 20, true), (2, 33, false)], true);
        body.extend(document("101", 1_700_000_000_066, &[(2, 0, true), (1, -5, true)], false));
        let mut s = StoredStream::default();
        s.push_body(&body).unwrap();
        assert_eq!(s.fragment_numbers, vec![Some("100".into()), Some("101".into())]);
        let v: Vec<_> = s.video.iter().map(|f| (f.ts_us, f.keyframe, f.doc)).collect();
        let t0 = 1_700_000_000_000_000i64;
        assert_eq!(v, vec![(t0, true, 0), (t0 + 33_000, false, 0), (t0 + 66_000, true, 1)]);
        let a: Vec<_> = s.audio.iter().map(|f| (f.ts_us, f.doc)).collect();
        assert_eq!(a, vec![(t0, 0), (t0 + 20_000, 0), (t0 + 61_000, 1)]);
        // A second body continues the document count.
        s.push_body(&document("102", 1_700_000_000_132, &[(2, 0, true)], true)).unwrap();
        assert_eq!(s.video.last().map(|f| f.doc), Some(2));
    }

    #[test]
    fn error_documents_and_bad_bodies() {
        let mut err = elem(id::EBML, &[]);
        err.extend(unknown_size(id::SEGMENT));
        err.extend(simple_tag(FRAGMENT_NUMBER_TAG, "7"));
        err.extend(simple_tag(EXCEPTION_CODE_TAG, "4000"));
        let mut s = StoredStream::default();
        s.push_body(&err).unwrap();
        assert_eq!(s.fragment_errors, vec![("7".to_string(), "4000".to_string())]);
        let doc = document("1", 0, &[(2, 0, true)], true);
        assert_eq!(StoredStream::default().push_body(&doc[..doc.len() - 2]), Err(MkvError::Truncated(doc.len() - 9)));
        assert!(StoredStream::default().push_body(&[0x00, 0x80]).is_err());
        // An unknown size on a leaf.
        let mut leaf = vec![0x42, 0x82];
        leaf.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(StoredStream::default().push_body(&leaf), Err(MkvError::UnknownSize { .. })));
    }

    #[test]
    fn vints() {
        assert_eq!(read_size(&[0x81], 0), Ok((Some(1), 1)));
        assert_eq!(read_size(&[0x40, 0x02], 0), Ok((Some(2), 2)));
        assert_eq!(read_size(&[0xFF], 0), Ok((None, 1)));
        assert_eq!(read_size(&[0x01, 0, 0, 0, 0, 0, 1, 0], 0), Ok((Some(256), 8)));
        assert_eq!(read_id(&[0x1A, 0x45, 0xDF, 0xA3], 0), Ok((id::EBML, 4)));
        assert!(read_id(&[0x08], 0).is_err());
    }
}
