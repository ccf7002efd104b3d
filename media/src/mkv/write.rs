//! Writing blocks (the stored chunks) and whole per-fragment documents (what GetMedia emits).

use super::ebml::{self, UNKNOWN_SIZE, write_header, write_master, write_str, write_uint};
use super::{MkvError, TIMECODE_SCALE_NS, id};

/// Names of the tags KVS adds to the fragments it returns (docs/kvs-wire.md §5.1, §5.3).
pub mod tag {
    /// GetMedia / GetMediaForFragmentList: the fragment number.
    pub const FRAGMENT_NUMBER: &str = "AWS_KINESISVIDEO_FRAGMENT_NUMBER";
    /// GetMedia: server timestamp, seconds with a millisecond fraction.
    pub const SERVER_TIMESTAMP: &str = "AWS_KINESISVIDEO_SERVER_TIMESTAMP";
    /// GetMedia: producer timestamp, seconds with a millisecond fraction.
    pub const PRODUCER_TIMESTAMP: &str = "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP";
    /// GetMedia (after the cluster): where to resume.
    pub const CONTINUATION_TOKEN: &str = "AWS_KINESISVIDEO_CONTINUATION_TOKEN";
    /// GetMedia (after the cluster): how far behind the newest fragment this one is.
    pub const MILLIS_BEHIND_NOW: &str = "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW";
    /// GetMediaForFragmentList: server timestamp.
    pub const SERVER_SIDE_TIMESTAMP: &str = "AWS_KINESISVIDEO_SERVER_SIDE_TIMESTAMP";
    /// GetMediaForFragmentList: producer timestamp.
    pub const PRODUCER_SIDE_TIMESTAMP: &str = "AWS_KINESISVIDEO_PRODUCER_SIDE_TIMESTAMP";
    /// GetMedia error: string code.
    pub const ERROR_CODE: &str = "AWS_KINESISVIDEO_ERROR_CODE";
    /// GetMedia error: integer id.
    pub const ERROR_ID: &str = "AWS_KINESISVIDEO_ERROR_ID";
    /// GetMediaForFragmentList error: integer code.
    pub const EXCEPTION_ERROR_CODE: &str = "AWS_KINESISVIDEO_EXCEPTION_ERROR_CODE";
    /// GetMediaForFragmentList error: message.
    pub const EXCEPTION_MESSAGE: &str = "AWS_KINESISVIDEO_EXCEPTION_MESSAGE";
}

/// Formats a millisecond Unix timestamp the way KVS tag values carry it: `1531248932.123`.
pub fn kvs_timestamp(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Length of the vint that encodes a track number inside a block.
fn track_vint_len(track: u64) -> usize {
    ebml::size_len(track)
}

/// Total bytes [`write_simple_block`] appends for a frame of `data_len` bytes.
pub fn simple_block_len(track: u64, data_len: usize) -> usize {
    let payload = track_vint_len(track) + 3 + data_len;
    1 + ebml::size_len(payload as u64) + payload
}

/// Appends one `SimpleBlock` element holding one frame (no lacing).
///
/// `rel_ms` is the frame time relative to the cluster timecode; `keyframe` sets the flag
/// decoders and KVS use to find random-access points (every audio frame is one).
pub fn write_simple_block(out: &mut Vec<u8>, track: u64, rel_ms: i16, keyframe: bool, data: &[u8]) {
    let payload = track_vint_len(track) + 3 + data.len();
    out.reserve(payload + 9);
    write_header(out, id::SIMPLE_BLOCK, payload as u64);
    ebml::write_size(out, track);
    out.extend_from_slice(&rel_ms.to_be_bytes());
    out.push(if keyframe { 0x80 } else { 0x00 });
    out.extend_from_slice(data);
}

/// A Matroska `SimpleTag`: a name and a string value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleTag {
    /// `TagName`.
    pub name: String,
    /// `TagString`.
    pub value: String,
}

impl SimpleTag {
    /// A tag from anything string-like.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), value: value.into() }
    }
}

/// Appends a `Tags` element with one `Tag` holding `tags` (nothing when `tags` is empty).
fn write_tags(out: &mut Vec<u8>, tags: &[SimpleTag]) {
    if tags.is_empty() {
        return;
    }
    write_master(out, id::TAGS, |o| {
        write_master(o, id::TAG, |o| {
            write_master(o, id::TARGETS, |_| {});
            for t in tags {
                write_master(o, id::SIMPLE_TAG, |o| {
                    write_str(o, id::TAG_NAME, &t.name);
                    write_str(o, id::TAG_STRING, &t.value);
                });
            }
        });
    });
}

/// Appends an EBML header, the start of an unknown-size Segment, `Info`, the stored `Tracks`
/// header and (if any) `tags`: the beginning of every MKV document reel serves. Clusters
/// ([`write_cluster_start`] + chunks) follow; one header followed by the clusters of many
/// fragments with the same header is a continuous MKV file (a clip, or a PutMedia stream).
pub fn write_segment_start(header: &[u8], tags: &[SimpleTag], out: &mut Vec<u8>) -> Result<(), MkvError> {
    super::read::tracks_element(header)?;
    write_master(out, id::EBML, |o| {
        write_uint(o, id::EBML_VERSION, 1);
        write_uint(o, id::EBML_READ_VERSION, 1);
        write_uint(o, id::EBML_MAX_ID_LENGTH, 4);
        write_uint(o, id::EBML_MAX_SIZE_LENGTH, 8);
        write_str(o, id::DOC_TYPE, "matroska");
        // CodecDelay and SeekPreRoll are DocTypeVersion 4 elements.
        write_uint(o, id::DOC_TYPE_VERSION, 4);
        write_uint(o, id::DOC_TYPE_READ_VERSION, 2);
    });
    ebml::write_id(out, id::SEGMENT);
    out.extend_from_slice(&UNKNOWN_SIZE);
    write_master(out, id::INFO, |o| {
        write_uint(o, id::TIMECODE_SCALE, TIMECODE_SCALE_NS);
        write_str(o, id::MUXING_APP, "reel");
        write_str(o, id::WRITING_APP, "reel");
    });
    out.extend_from_slice(header);
    write_tags(out, tags);
    Ok(())
}

/// Appends a Cluster header and its `Timecode` (absolute ms). `chunks_len` is the total size
/// of the stored chunks that follow, or `None` for an unknown-size (still growing) cluster.
pub fn write_cluster_start(timecode_ms: u64, chunks_len: Option<u64>, out: &mut Vec<u8>) {
    let mut timecode = Vec::with_capacity(10);
    write_uint(&mut timecode, id::TIMECODE, timecode_ms);
    match chunks_len {
        Some(n) => write_header(out, id::CLUSTER, timecode.len() as u64 + n),
        None => {
            ebml::write_id(out, id::CLUSTER);
            out.extend_from_slice(&UNKNOWN_SIZE);
        }
    }
    out.extend_from_slice(&timecode);
}

/// One stored fragment presented as the self-contained MKV document KVS GetMedia emits:
/// EBML header, Segment (unknown size), Info, Tracks, Tags, Cluster, trailing Tags.
#[derive(Debug, Clone, Copy)]
pub struct FragmentDocument<'a> {
    /// The stored header: a complete `Tracks` element.
    pub header: &'a [u8],
    /// Cluster `Timecode`: the fragment's absolute producer timestamp in ms.
    pub start_ms: u64,
    /// Tags before the cluster (fragment number, server and producer timestamps).
    pub tags: &'a [SimpleTag],
    /// Tags after the cluster (GetMedia's continuation token and millis-behind-now).
    pub trailing_tags: &'a [SimpleTag],
}

impl FragmentDocument<'_> {
    /// Appends everything up to and including the cluster `Timecode`.
    ///
    /// With `chunks_len = Some(n)` (the total bytes of the chunks that follow) the Cluster
    /// gets its exact size; with `None` (a fragment still being written) it gets the unknown
    /// size marker and ends where the trailing tags or the next document begin.
    pub fn write_prelude(&self, chunks_len: Option<u64>, out: &mut Vec<u8>) -> Result<(), MkvError> {
        write_segment_start(self.header, self.tags, out)?;
        write_cluster_start(self.start_ms, chunks_len, out);
        Ok(())
    }

    /// Appends the trailing tags (if any).
    pub fn write_trailer(&self, out: &mut Vec<u8>) {
        write_tags(out, self.trailing_tags);
    }

    /// The whole document for a complete fragment: prelude, every chunk, trailer.
    pub fn compose<'c, I>(&self, chunks: I) -> Result<Vec<u8>, MkvError>
    where
        I: IntoIterator<Item = &'c [u8]>,
        I::IntoIter: Clone,
    {
        let chunks = chunks.into_iter();
        let len: usize = chunks.clone().map(<[u8]>::len).sum();
        let mut out = Vec::with_capacity(len + self.header.len() + 512);
        self.write_prelude(Some(len as u64), &mut out)?;
        for c in chunks {
            out.extend_from_slice(c);
        }
        self.write_trailer(&mut out);
        Ok(out)
    }
}
