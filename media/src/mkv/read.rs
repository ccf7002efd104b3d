//! Reading Matroska back into typed tracks and frames (for playback, tests and PutMedia).
//!
//! Handles what reel writes and what common producers write: known- or unknown-size Segment
//! and Cluster, SimpleBlock and BlockGroup, concatenated documents (a GetMedia stream), and
//! skips SeekHead, Cues, Void and CRC-32. Laced blocks are refused.

use std::ops::Range;

use super::ebml::{self, Header};
use super::tracks::TrackEntry;
use super::write::SimpleTag;
use super::{MkvError, TIMECODE_SCALE_NS, id};

/// Deepest `SimpleTag` nesting the reader follows.
const MAX_TAG_DEPTH: usize = 8;

/// One frame of one track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Track number (as in [`TrackEntry::number`]).
    pub track: u64,
    /// Absolute timestamp in ms (cluster timecode + block offset, scaled to ms).
    pub timestamp_ms: i64,
    /// Keyframe flag (SimpleBlock flag, or a Block without ReferenceBlock).
    pub keyframe: bool,
    /// The frame bytes (length-prefixed NAL units for H.264, one packet for Opus).
    pub data: &'a [u8],
}

/// The frames of one cluster within [`Document::frames`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpan {
    /// Cluster timecode in ms.
    pub timecode_ms: i64,
    /// Indices of its frames in [`Document::frames`].
    pub frames: Range<usize>,
}

/// Everything read from one or more concatenated Matroska documents.
#[derive(Debug, Clone, PartialEq)]
pub struct Document<'a> {
    /// Tracks of the last `Tracks` element seen.
    pub tracks: Vec<TrackEntry>,
    /// Every `SimpleTag`, in document order (nested tags flattened).
    pub tags: Vec<SimpleTag>,
    /// `TimecodeScale` of the last `Info` seen (ns per timecode unit).
    pub timecode_scale_ns: u64,
    /// The clusters in order.
    pub clusters: Vec<ClusterSpan>,
    /// Every frame in document order.
    pub frames: Vec<Frame<'a>>,
}

/// A stored fragment read back: its tracks and its frames with absolute timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFragment<'a> {
    /// Tracks from the stored header.
    pub tracks: Vec<TrackEntry>,
    /// Frames from the stored chunks.
    pub frames: Vec<Frame<'a>>,
}

/// Parses a stored header: one complete `Tracks` element.
pub fn parse_tracks(header: &[u8]) -> Result<Vec<TrackEntry>, MkvError> {
    tracks_payload(tracks_element(header)?)
}

/// The payload of a header that must be exactly one `Tracks` element (nothing after it).
pub(super) fn tracks_element(header: &[u8]) -> Result<&[u8], MkvError> {
    let (h, payload, rest) = ebml::next_element(header)?;
    if h.id != id::TRACKS {
        return Err(MkvError::UnexpectedElement { expected: id::TRACKS, found: h.id });
    }
    if !rest.is_empty() {
        return Err(MkvError::BadValue("bytes after the Tracks element"));
    }
    Ok(payload)
}

pub(super) fn tracks_payload(payload: &[u8]) -> Result<Vec<TrackEntry>, MkvError> {
    let mut tracks = Vec::new();
    for child in ebml::children(payload) {
        let (cid, v) = child?;
        if cid == id::TRACK_ENTRY {
            tracks.push(TrackEntry::parse(v)?);
        }
    }
    Ok(tracks)
}

/// Converts a timecode in `scale_ns` units to ms, saturating.
fn to_ms(timecode: i128, scale_ns: u64) -> i64 {
    let ns = timecode.saturating_mul(i128::from(scale_ns));
    ns.div_euclid(1_000_000).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Decodes a (Simple)Block payload: (track, relative timecode, flags, frame data).
pub(super) fn block_parts(payload: &[u8]) -> Result<(u64, i16, u8, &[u8]), MkvError> {
    let (track, n, _) = ebml::read_vint(payload)?;
    let rest = payload.get(n..).ok_or(MkvError::BadBlock("truncated header"))?;
    let [t0, t1, flags, data @ ..] = rest else {
        return Err(MkvError::BadBlock("truncated header"));
    };
    if flags & 0x06 != 0 {
        return Err(MkvError::LacingUnsupported);
    }
    Ok((track, i16::from_be_bytes([*t0, *t1]), *flags, data))
}

/// Reads a sequence of `SimpleBlock`/`BlockGroup` elements (a stored chunk) whose cluster
/// timecode is `cluster_ms` and `TimecodeScale` 1 ms; appends the frames to `out`.
pub fn parse_blocks<'a>(chunk: &'a [u8], cluster_ms: i64, out: &mut Vec<Frame<'a>>) -> Result<(), MkvError> {
    for child in ebml::children(chunk) {
        let (cid, v) = child?;
        match cid {
            id::SIMPLE_BLOCK | id::BLOCK_GROUP => {
                block_element(cid, v, i128::from(cluster_ms), TIMECODE_SCALE_NS, out)?
            }
            id::VOID | id::CRC32 => {}
            // Anything else would change the meaning of the cluster it is served in.
            _ => return Err(MkvError::BadBlock("chunk holds a non-block element")),
        }
    }
    Ok(())
}

/// Decodes one cluster child if it is a block; other elements are ignored.
fn block_element<'a>(
    cid: u32,
    payload: &'a [u8],
    cluster_tc: i128,
    scale_ns: u64,
    out: &mut Vec<Frame<'a>>,
) -> Result<(), MkvError> {
    let (block, keyframe) = match cid {
        id::SIMPLE_BLOCK => {
            let parts = block_parts(payload)?;
            (parts, parts.2 & 0x80 != 0)
        }
        id::BLOCK_GROUP => {
            let mut block = None;
            let mut referenced = false;
            for c in ebml::children(payload) {
                let (gid, v) = c?;
                match gid {
                    id::BLOCK => block = Some(block_parts(v)?),
                    id::REFERENCE_BLOCK => referenced = true,
                    _ => {}
                }
            }
            let block = block.ok_or(MkvError::Missing("Block in BlockGroup"))?;
            (block, !referenced)
        }
        _ => return Ok(()),
    };
    let (track, rel, _, data) = block;
    out.push(Frame { track, timestamp_ms: to_ms(cluster_tc + i128::from(rel), scale_ns), keyframe, data });
    Ok(())
}

/// Parses a stored fragment: its header (`Tracks`), its chunks in order, and its start time
/// (the producer timestamp in ms that becomes the cluster timecode).
pub fn parse_stored<'a, I>(header: &[u8], chunks: I, start_ms: i64) -> Result<StoredFragment<'a>, MkvError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let tracks = parse_tracks(header)?;
    let mut frames = Vec::new();
    for chunk in chunks {
        parse_blocks(chunk, start_ms, &mut frames)?;
    }
    Ok(StoredFragment { tracks, frames })
}

/// Parses one or more concatenated Matroska documents.
pub fn parse_document(data: &[u8]) -> Result<Document<'_>, MkvError> {
    let mut doc = Document {
        tracks: Vec::new(),
        tags: Vec::new(),
        timecode_scale_ns: TIMECODE_SCALE_NS,
        clusters: Vec::new(),
        frames: Vec::new(),
    };
    let mut rest = data;
    while !rest.is_empty() {
        let h = ebml::read_header(rest)?;
        match h.id {
            id::SEGMENT => {
                let body = body_of(rest, &h)?;
                let used = segment(body, h.size.is_none(), &mut doc)?;
                rest = rest.get(h.len + used..).unwrap_or(&[]);
            }
            _ => {
                let (h, payload, after) = ebml::next_element(rest)?;
                if h.id == id::EBML {
                    check_doc_type(payload)?;
                }
                rest = after;
            }
        }
    }
    Ok(doc)
}

/// The payload region of a master element: its exact bytes, or everything left if unknown-size.
fn body_of<'a>(data: &'a [u8], h: &Header) -> Result<&'a [u8], MkvError> {
    let body = data.get(h.len..).unwrap_or(&[]);
    match h.size {
        None => Ok(body),
        Some(s) => {
            let s = usize::try_from(s).map_err(|_| MkvError::Truncated)?;
            body.get(..s).ok_or(MkvError::Truncated)
        }
    }
}

pub(super) fn check_doc_type(ebml_payload: &[u8]) -> Result<(), MkvError> {
    for c in ebml::children(ebml_payload) {
        let (cid, v) = c?;
        if cid == id::DOC_TYPE {
            let t = ebml::read_str(v)?;
            return match t.as_str() {
                "matroska" | "webm" => Ok(()),
                _ => Err(MkvError::BadDocType(t)),
            };
        }
    }
    Err(MkvError::Missing("DocType"))
}

/// Reads a Segment body; returns the bytes consumed (less than `body.len()` when an
/// unknown-size Segment is followed by another document).
fn segment<'a>(body: &'a [u8], unknown: bool, doc: &mut Document<'a>) -> Result<usize, MkvError> {
    let mut pos = 0;
    while let Some(at) = body.get(pos..).filter(|b| !b.is_empty()) {
        let h = ebml::read_header(at)?;
        if unknown && h.id == id::EBML {
            return Ok(pos);
        }
        if h.id == id::CLUSTER {
            let cbody = body_of(at, &h)?;
            let used = cluster(cbody, h.size.is_none(), doc)?;
            pos += h.len + used;
            continue;
        }
        let (h, payload, _) = ebml::next_element(at)?;
        match h.id {
            id::INFO => {
                for c in ebml::children(payload) {
                    let (cid, v) = c?;
                    if cid == id::TIMECODE_SCALE {
                        doc.timecode_scale_ns = ebml::read_uint(v)?.max(1);
                    }
                }
            }
            id::TRACKS => doc.tracks = tracks_payload(payload)?,
            id::TAGS => {
                for tag in ebml::children(payload) {
                    let (tid, v) = tag?;
                    if tid == id::TAG {
                        simple_tags(v, 0, &mut doc.tags)?;
                    }
                }
            }
            _ => {}
        }
        pos += h.len + payload.len();
    }
    Ok(body.len())
}

/// Collects the `SimpleTag`s of a `Tag` (or of a `SimpleTag`, for nested ones).
pub(super) fn simple_tags(payload: &[u8], depth: usize, out: &mut Vec<SimpleTag>) -> Result<(), MkvError> {
    if depth > MAX_TAG_DEPTH {
        return Err(MkvError::TooDeep);
    }
    for c in ebml::children(payload) {
        let (cid, v) = c?;
        if cid != id::SIMPLE_TAG {
            continue;
        }
        let (mut name, mut value) = (String::new(), String::new());
        for s in ebml::children(v) {
            let (sid, sv) = s?;
            match sid {
                id::TAG_NAME => name = ebml::read_str(sv)?,
                id::TAG_STRING => value = ebml::read_str(sv)?,
                _ => {}
            }
        }
        out.push(SimpleTag { name, value });
        simple_tags(v, depth + 1, out)?;
    }
    Ok(())
}

/// Elements that may appear inside a Cluster (an unknown-size Cluster ends at anything else).
pub(super) fn is_cluster_child(cid: u32) -> bool {
    matches!(
        cid,
        id::TIMECODE
            | id::POSITION
            | id::PREV_SIZE
            | id::SIMPLE_BLOCK
            | id::BLOCK_GROUP
            | id::VOID
            | id::CRC32
            | 0x5854 // SilentTracks
            | 0xAF // EncryptedBlock
    )
}

/// Reads a Cluster body; returns the bytes consumed.
fn cluster<'a>(body: &'a [u8], unknown: bool, doc: &mut Document<'a>) -> Result<usize, MkvError> {
    let first = doc.frames.len();
    let mut timecode: Option<i128> = None;
    let mut pos = 0;
    while let Some(at) = body.get(pos..).filter(|b| !b.is_empty()) {
        let h = ebml::read_header(at)?;
        if unknown && !is_cluster_child(h.id) {
            break;
        }
        let (h, payload, _) = ebml::next_element(at)?;
        match h.id {
            id::TIMECODE => timecode = Some(i128::from(ebml::read_uint(payload)?)),
            id::SIMPLE_BLOCK | id::BLOCK_GROUP => {
                let tc = timecode.ok_or(MkvError::MissingClusterTimecode)?;
                block_element(h.id, payload, tc, doc.timecode_scale_ns, &mut doc.frames)?;
            }
            _ => {}
        }
        pos += h.len + payload.len();
    }
    let timecode = timecode.ok_or(MkvError::Missing("cluster Timecode"))?;
    doc.clusters
        .push(ClusterSpan { timecode_ms: to_ms(timecode, doc.timecode_scale_ns), frames: first..doc.frames.len() });
    Ok(if unknown { pos } else { body.len() })
}
