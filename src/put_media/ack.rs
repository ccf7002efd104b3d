//! PutMedia acknowledgements: the JSON objects KVS streams back on the response body, one
//! per line (docs/kvs-wire.md §6). The producer SDKs parse them with exact, case-sensitive
//! keys and bare numbers (the C producer's `AckParser.c`, the AWS SDK for Java's
//! `PutMediaDecoder`), so the shape here is fixed.

use serde::Serialize;

/// Longest acknowledgement the C producer accepts in one piece of the body (its
/// `MAX_ACK_FRAGMENT_LEN`); each acknowledgement is sent as its own chunk.
pub const MAX_ACK_BYTES: usize = 1024;

/// Why a fragment or the connection failed (`ErrorId`, with KVS's `ErrorCode` name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorId {
    /// 4000: the body could not be read (a read error or a stalled upload).
    StreamReadError,
    /// 4001: a fragment is larger than the limit (KVS: 50 MB).
    MaxFragmentSizeReached,
    /// 4002: a fragment is longer than the limit (KVS: 10 s).
    MaxFragmentDurationReached,
    /// 4003: the connection lasted longer than allowed.
    MaxConnectionDurationReached,
    /// 4004: a fragment starts at or before the end of the previous one.
    FragmentTimecodeLesserThanPrevious,
    /// 4006: the body is not valid Matroska.
    InvalidMkvData,
    /// 4007: a producer timestamp is out of range.
    InvalidProducerTimestamp,
    /// 4010: a block names a track the Tracks element does not declare.
    TrackNumberMismatch,
    /// 4011: a fragment holds no frames.
    FramesMissingForTrack,
    /// 4012: more tracks than allowed (KVS: 3).
    MoreThanAllowedTracksFound,
    /// 4507: the stream was deleted during the upload.
    StreamDeleted,
    /// 5000: the server failed to store the fragment.
    InternalError,
}

impl ErrorId {
    /// The numeric `ErrorId`.
    pub fn id(self) -> u32 {
        match self {
            Self::StreamReadError => 4000,
            Self::MaxFragmentSizeReached => 4001,
            Self::MaxFragmentDurationReached => 4002,
            Self::MaxConnectionDurationReached => 4003,
            Self::FragmentTimecodeLesserThanPrevious => 4004,
            Self::InvalidMkvData => 4006,
            Self::InvalidProducerTimestamp => 4007,
            Self::TrackNumberMismatch => 4010,
            Self::FramesMissingForTrack => 4011,
            Self::MoreThanAllowedTracksFound => 4012,
            Self::StreamDeleted => 4507,
            Self::InternalError => 5000,
        }
    }

    /// The `ErrorCode` name KVS sends beside the id.
    pub fn code(self) -> &'static str {
        match self {
            Self::StreamReadError => "STREAM_READ_ERROR",
            Self::MaxFragmentSizeReached => "MAX_FRAGMENT_SIZE_REACHED",
            Self::MaxFragmentDurationReached => "MAX_FRAGMENT_DURATION_REACHED",
            Self::MaxConnectionDurationReached => "MAX_CONNECTION_DURATION_REACHED",
            Self::FragmentTimecodeLesserThanPrevious => "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS",
            Self::InvalidMkvData => "INVALID_MKV_DATA",
            Self::InvalidProducerTimestamp => "INVALID_PRODUCER_TIMESTAMP",
            Self::TrackNumberMismatch => "TRACK_NUMBER_MISMATCH",
            Self::FramesMissingForTrack => "FRAMES_MISSING_FOR_TRACK",
            Self::MoreThanAllowedTracksFound => "MORE_THAN_ALLOWED_TRACKS_FOUND",
            Self::StreamDeleted => "STREAM_DELETED",
            Self::InternalError => "INTERNAL_ERROR",
        }
    }
}

/// One acknowledgement. `timecode` is the fragment's Cluster `Timecode` exactly as the
/// producer wrote it (timecode-scale units, relative in RELATIVE mode): the producer SDK
/// finds the fragment by that value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// The first bytes of a fragment arrived.
    Buffering {
        /// Cluster timecode.
        timecode: u64,
    },
    /// The whole fragment arrived.
    Received {
        /// Cluster timecode.
        timecode: u64,
        /// The fragment number it is stored under.
        number: String,
    },
    /// The fragment is durably stored (sent only for streams with retention > 0).
    Persisted {
        /// Cluster timecode.
        timecode: u64,
        /// Its fragment number.
        number: String,
    },
    /// The fragment (or the connection) failed; the connection ends after this.
    Error {
        /// Cluster timecode of the fragment concerned (0 before any fragment).
        timecode: u64,
        /// Why.
        error: ErrorId,
    },
    /// The connection is open but no data is arriving (a keep-alive).
    Idle,
}

#[derive(Serialize)]
struct Wire<'a> {
    #[serde(rename = "EventType")]
    event_type: &'a str,
    #[serde(rename = "FragmentTimecode", skip_serializing_if = "Option::is_none")]
    fragment_timecode: Option<u64>,
    #[serde(rename = "FragmentNumber", skip_serializing_if = "Option::is_none")]
    fragment_number: Option<&'a str>,
    #[serde(rename = "ErrorId", skip_serializing_if = "Option::is_none")]
    error_id: Option<u32>,
    #[serde(rename = "ErrorCode", skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a str>,
}

impl Ack {
    /// The acknowledgement as one line of the response body (JSON and a newline).
    pub fn to_line(&self) -> String {
        let none =
            Wire { event_type: "", fragment_timecode: None, fragment_number: None, error_id: None, error_code: None };
        let wire = match self {
            Self::Buffering { timecode } => {
                Wire { event_type: "BUFFERING", fragment_timecode: Some(*timecode), ..none }
            }
            Self::Received { timecode, number } => Wire {
                event_type: "RECEIVED",
                fragment_timecode: Some(*timecode),
                fragment_number: Some(number),
                ..none
            },
            Self::Persisted { timecode, number } => Wire {
                event_type: "PERSISTED",
                fragment_timecode: Some(*timecode),
                fragment_number: Some(number),
                ..none
            },
            Self::Error { timecode, error } => Wire {
                event_type: "ERROR",
                fragment_timecode: Some(*timecode),
                error_id: Some(error.id()),
                error_code: Some(error.code()),
                ..none
            },
            Self::Idle => Wire { event_type: "IDLE", ..none },
        };
        let mut line = serde_json::to_string(&wire).unwrap_or_default();
        line.push('\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_have_the_producer_sdks_shape() {
        let n = "91343852333181432392682062607743920146264157".to_string();
        assert_eq!(
            Ack::Buffering { timecode: 1_700_000_000_123 }.to_line(),
            "{\"EventType\":\"BUFFERING\",\"FragmentTimecode\":1700000000123}\n"
        );
        assert_eq!(
            Ack::Persisted { timecode: 7, number: n.clone() }.to_line(),
            format!("{{\"EventType\":\"PERSISTED\",\"FragmentTimecode\":7,\"FragmentNumber\":\"{n}\"}}\n")
        );
        assert_eq!(
            Ack::Error { timecode: 9, error: ErrorId::FragmentTimecodeLesserThanPrevious }.to_line(),
            "{\"EventType\":\"ERROR\",\"FragmentTimecode\":9,\"ErrorId\":4004,\"ErrorCode\":\"FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS\"}\n"
        );
        assert_eq!(Ack::Idle.to_line(), "{\"EventType\":\"IDLE\"}\n");
        let longest = Ack::Received { timecode: u64::MAX, number: "9".repeat(128) }.to_line();
        assert!(longest.len() <= MAX_ACK_BYTES);
    }
}
