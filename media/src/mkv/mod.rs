//! Minimal Matroska: what reel writes for a fragment, and a reader for what it (or a PutMedia
//! producer, or ffmpeg) wrote.
//!
//! How a fragment is stored (the store is media-agnostic and keeps opaque bytes):
//! - **header**: one serialized `Tracks` element ([`write_tracks`]): track 1
//!   `V_MPEG4/ISO/AVC` with the avcC record and the picture size, track 2 `A_OPUS` with the
//!   `OpusHead`, `CodecDelay` and `SeekPreRoll`;
//! - **chunks**: bytes appended as frames arrive, each one or more complete `SimpleBlock`s
//!   ([`write_simple_block`]) whose timecodes are relative to the fragment start in ms
//!   (`TimecodeScale` is 1 ms, so a fragment can span at most 32.767 s);
//! - **start timestamp**: the fragment's producer time in ms, which becomes the `Cluster`
//!   `Timecode`.
//!
//! For playback, [`FragmentDocument`] turns header + chunks + start time + KVS tags into the
//! self-contained MKV document KVS GetMedia emits per fragment; [`parse_document`] and
//! [`parse_stored`] turn documents or stored fragments back into typed tracks and frames.

pub mod ebml;
mod read;
mod stream;
mod tracks;
mod write;

pub use read::{
    ClusterSpan, Document, Frame, StoredFragment, parse_blocks, parse_document, parse_stored, parse_tracks,
};
pub use stream::{StreamBlock, StreamEvent, StreamReader};
pub use tracks::{AudioSettings, TrackEntry, TrackType, VideoSettings, write_tracks};
pub use write::{
    FragmentDocument, SimpleTag, kvs_timestamp, simple_block_len, tag, write_cluster_start, write_segment_start,
    write_simple_block,
};

#[cfg(test)]
mod tests;

/// Element IDs used by reel (Matroska specification, with their marker bits).
pub mod id {
    #![allow(missing_docs)]
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const EBML_VERSION: u32 = 0x4286;
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const VOID: u32 = 0xEC;
    pub const CRC32: u32 = 0xBF;
    pub const SEGMENT: u32 = 0x1853_8067;
    pub const SEEK_HEAD: u32 = 0x114D_9B74;
    pub const INFO: u32 = 0x1549_A966;
    pub const TIMECODE_SCALE: u32 = 0x2A_D7B1;
    pub const MUXING_APP: u32 = 0x4D80;
    pub const WRITING_APP: u32 = 0x5741;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_UID: u32 = 0x73C5;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const FLAG_LACING: u32 = 0x9C;
    pub const NAME: u32 = 0x536E;
    pub const CODEC_ID: u32 = 0x86;
    pub const CODEC_PRIVATE: u32 = 0x63A2;
    pub const DEFAULT_DURATION: u32 = 0x23_E383;
    pub const CODEC_DELAY: u32 = 0x56AA;
    pub const SEEK_PRE_ROLL: u32 = 0x56BB;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const AUDIO: u32 = 0xE1;
    pub const SAMPLING_FREQUENCY: u32 = 0xB5;
    pub const CHANNELS: u32 = 0x9F;
    pub const BIT_DEPTH: u32 = 0x6264;
    pub const TAGS: u32 = 0x1254_C367;
    pub const TAG: u32 = 0x7373;
    pub const TARGETS: u32 = 0x63C0;
    pub const SIMPLE_TAG: u32 = 0x67C8;
    pub const TAG_NAME: u32 = 0x45A3;
    pub const TAG_STRING: u32 = 0x4487;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TIMECODE: u32 = 0xE7;
    pub const POSITION: u32 = 0xA7;
    pub const PREV_SIZE: u32 = 0xAB;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
    pub const BLOCK_GROUP: u32 = 0xA0;
    pub const BLOCK: u32 = 0xA1;
    pub const REFERENCE_BLOCK: u32 = 0xFB;
    pub const BLOCK_DURATION: u32 = 0x9B;
    pub const CUES: u32 = 0x1C53_BB6B;
}

/// Matroska codec ID of H.264 with avcC codec private.
pub const CODEC_H264: &str = "V_MPEG4/ISO/AVC";
/// Matroska codec ID of Opus with OpusHead codec private.
pub const CODEC_OPUS: &str = "A_OPUS";
/// Matroska codec ID of AAC with AudioSpecificConfig codec private.
pub const CODEC_AAC: &str = "A_AAC";
/// Track number reel gives the video track.
pub const VIDEO_TRACK: u64 = 1;
/// Track number reel gives the audio track.
pub const AUDIO_TRACK: u64 = 2;
/// The `TimecodeScale` reel writes: 1 ms in nanoseconds.
pub const TIMECODE_SCALE_NS: u64 = 1_000_000;

/// Why Matroska data was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MkvError {
    /// The data ended inside an element.
    #[error("MKV data truncated")]
    Truncated,
    /// An element ID or size is not a valid EBML variable-length integer.
    #[error("invalid EBML variable-length integer")]
    BadVint,
    /// An element that must have a known size uses the unknown-size marker.
    #[error("element {0:#x} has unknown size")]
    UnknownSizeNotAllowed(u32),
    /// A value has the wrong length or encoding.
    #[error("invalid element value: {0}")]
    BadValue(&'static str),
    /// The EBML header names a document type other than `matroska` or `webm`.
    #[error("not a Matroska document (DocType {0:?})")]
    BadDocType(String),
    /// The data is not the element the caller asked to parse.
    #[error("expected element {expected:#x}, found {found:#x}")]
    UnexpectedElement {
        /// ID wanted.
        expected: u32,
        /// ID found.
        found: u32,
    },
    /// A required child element is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A block is malformed.
    #[error("invalid block: {0}")]
    BadBlock(&'static str),
    /// A block uses lacing (several frames in one block), which reel does not read.
    #[error("laced blocks are not supported")]
    LacingUnsupported,
    /// A block comes before its cluster's `Timecode`.
    #[error("block before cluster timecode")]
    MissingClusterTimecode,
    /// Nesting deeper than the reader allows.
    #[error("elements nested too deeply")]
    TooDeep,
    /// An element the reader must hold whole is larger than its limit.
    #[error("element {id:#x} of {size} bytes is larger than allowed")]
    TooLarge {
        /// Element ID.
        id: u32,
        /// Its declared size.
        size: u64,
    },
}
