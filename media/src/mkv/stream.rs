//! Reading a continuous Matroska stream as it arrives (a PutMedia body), sans-IO.
//!
//! A producer sends one or more documents back to back (EBML header, Segment of known or
//! unknown size, Info, Tracks, then Clusters of known or unknown size, with Tags between
//! them). [`StreamReader`] takes the bytes in whatever pieces the network delivers
//! ([`StreamReader::push`]) and hands out [`StreamEvent`]s: the tracks of each segment, the
//! start of each cluster with its timecode, each block, and the end of each cluster. It
//! buffers at most one element: a block (up to the caller's limit) or a header element
//! (EBML header, Info, Tracks: up to [`MAX_HEADER_ELEMENT`]); elements it does not use,
//! Tags among them, are passed over without being buffered, so memory stays bounded
//! whatever the producer sends, and each byte is moved at most once per push. An
//! unknown-size Cluster ends where the next Segment-level element begins, as in every
//! Matroska reader; a child that runs past its known-size parent is refused.

use std::collections::VecDeque;

use bytes::Bytes;

use super::ebml::{self, Header};
use super::read::{block_parts, is_cluster_child, tracks_payload};
use super::tracks::TrackEntry;
use super::{MkvError, TIMECODE_SCALE_NS, id};

/// Largest header element (EBML header, Info, Tracks) the reader holds whole.
pub const MAX_HEADER_ELEMENT: u64 = 1 << 20;
/// Most TrackEntry elements one Tracks element may hold (Matroska allows 127 per block
/// track number byte; KVS allows 3).
pub const MAX_TRACK_ENTRIES: usize = 127;

/// One thing read from the stream, in stream order.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A segment's `Tracks`, with the segment's `TimecodeScale` (ns per timecode unit).
    Tracks {
        /// The track entries.
        entries: Vec<TrackEntry>,
        /// ns per timecode unit of this segment.
        timecode_scale_ns: u64,
    },
    /// A cluster began; `timecode` is its `Timecode` in the segment's timecode units.
    ClusterStart {
        /// Cluster timecode (timecode-scale units).
        timecode: u64,
    },
    /// One frame of the current cluster.
    Block(StreamBlock),
    /// The current cluster is complete.
    ClusterEnd,
}

/// One frame read from a `SimpleBlock` or `BlockGroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamBlock {
    /// Track number.
    pub track: u64,
    /// Timecode relative to the cluster's, in timecode-scale units.
    pub relative: i16,
    /// Keyframe flag (SimpleBlock flag, or a Block without `ReferenceBlock`).
    pub keyframe: bool,
    /// The frame bytes (a view of the block as received, not a copy).
    pub data: Bytes,
}

/// Where the reader is in the element tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// Between documents: an EBML header or a Segment comes next.
    Top,
    /// Inside a Segment ending at this stream offset (`None`: unknown size).
    Segment(Option<u64>),
    /// Inside a Cluster ending at this offset; `timecode` once read.
    Cluster { end: Option<u64>, segment_end: Option<u64>, started: bool },
}

/// Incremental Matroska stream reader (see the module docs).
#[derive(Debug)]
pub struct StreamReader {
    /// Bytes received; `buf[pos..]` is not yet consumed and `buf[pos]` is at stream offset
    /// `consumed`. The consumed head is dropped once per push, not once per element.
    buf: Vec<u8>,
    pos: usize,
    consumed: u64,
    /// Payload bytes of a skipped element still to discard.
    skipping: u64,
    level: Level,
    timecode_scale_ns: u64,
    max_element: u64,
    events: VecDeque<StreamEvent>,
    /// Set once an error was returned: the stream cannot be resynchronised.
    failed: Option<MkvError>,
}

impl StreamReader {
    /// A reader that refuses a block larger than `max_element` bytes (and a header element
    /// larger than [`MAX_HEADER_ELEMENT`]).
    pub fn new(max_element: u64) -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            consumed: 0,
            skipping: 0,
            level: Level::Top,
            timecode_scale_ns: TIMECODE_SCALE_NS,
            max_element,
            events: VecDeque::new(),
            failed: None,
        }
    }

    /// Bytes of the stream consumed so far (parsed or skipped).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Whether the reader is inside a cluster (one has started and not ended).
    pub fn in_cluster(&self) -> bool {
        matches!(self.level, Level::Cluster { started: true, .. })
    }

    /// Takes the next piece of the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.drain(..self.pos);
        self.pos = 0;
        let mut data = data;
        if self.skipping > 0 {
            let n = usize::try_from(self.skipping).unwrap_or(usize::MAX).min(data.len());
            self.skipping -= n as u64;
            self.consumed += n as u64;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
    }

    /// The next event the bytes pushed so far complete, `Ok(None)` when more bytes are needed.
    /// After an error every call returns it again.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, MkvError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            if let Some(ev) = self.events.pop_front() {
                return Ok(Some(ev));
            }
            match self.step() {
                Ok(true) => {}
                Ok(false) => return Ok(self.events.pop_front()),
                Err(e) => {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        }
    }

    /// The end of the stream: the events left (a cluster still open ends here), or
    /// [`MkvError::Truncated`] when the stream stopped inside an element. Events already
    /// complete are returned before the error by [`StreamReader::next_event`].
    pub fn finish(&mut self) -> Result<Vec<StreamEvent>, MkvError> {
        let mut out = Vec::new();
        while let Some(ev) = self.next_event()? {
            out.push(ev);
        }
        let mut partial = self.pos < self.buf.len() || self.skipping > 0;
        match self.level {
            // A known-size Cluster cut short is incomplete, whatever blocks it had.
            Level::Cluster { end: Some(end), .. } if self.consumed < end => partial = true,
            Level::Cluster { started: true, .. } => out.push(StreamEvent::ClusterEnd),
            _ => {}
        }
        self.level = Level::Top;
        if partial {
            self.failed = Some(MkvError::Truncated);
            return Err(MkvError::Truncated);
        }
        Ok(out)
    }

    /// Makes one step of progress; `false` when more bytes are needed.
    fn step(&mut self) -> Result<bool, MkvError> {
        if self.skipping > 0 {
            return Ok(false);
        }
        // Leave any level whose known size is used up.
        match self.level {
            Level::Cluster { end: Some(end), segment_end, started } if self.consumed >= end => {
                if !started {
                    return Err(MkvError::Missing("cluster Timecode"));
                }
                self.level = Level::Segment(segment_end);
                self.events.push_back(StreamEvent::ClusterEnd);
                return Ok(true);
            }
            Level::Segment(Some(end)) if self.consumed >= end => {
                self.level = Level::Top;
                return Ok(true);
            }
            _ => {}
        }
        let h = match ebml::read_header(&self.buf[self.pos..]) {
            Ok(h) => h,
            Err(MkvError::Truncated) => return Ok(false),
            Err(e) => return Err(e),
        };
        // A child must end within its known-size parent.
        let parent_end = match self.level {
            Level::Top => None,
            Level::Segment(end) => end,
            Level::Cluster { end, segment_end, .. } => end.or(segment_end),
        };
        if let (Some(end), Some(size)) = (parent_end, h.size) {
            let child_end = self.consumed.saturating_add(h.len as u64).saturating_add(size);
            // A Segment-level element in an unknown-size Cluster ends the Cluster first; the
            // Segment's bound applies to it there.
            let ends_unknown_cluster =
                matches!(self.level, Level::Cluster { end: None, .. }) && !is_cluster_child(h.id);
            if child_end > end && !ends_unknown_cluster {
                return Err(MkvError::BadValue("element runs past the end of its parent"));
            }
        }
        match self.level {
            Level::Top => self.top(h),
            Level::Segment(end) => self.segment(h, end),
            Level::Cluster { end, segment_end, started } => self.cluster(h, end, segment_end, started),
        }
    }

    fn top(&mut self, h: Header) -> Result<bool, MkvError> {
        match h.id {
            id::SEGMENT => {
                self.advance(h.len);
                self.level = Level::Segment(h.size.map(|s| self.consumed.saturating_add(s)));
                self.timecode_scale_ns = TIMECODE_SCALE_NS;
                Ok(true)
            }
            id::EBML => {
                let Some(payload) = self.whole(&h, MAX_HEADER_ELEMENT)? else { return Ok(false) };
                check_doc_type(&payload)?;
                Ok(true)
            }
            id::VOID | id::CRC32 => self.skip(&h),
            // Anything else means the bytes are not Matroska (or lost their framing).
            found => Err(MkvError::UnexpectedElement { expected: id::EBML, found }),
        }
    }

    fn segment(&mut self, h: Header, end: Option<u64>) -> Result<bool, MkvError> {
        match h.id {
            // A new document: an unknown-size Segment ends here.
            id::EBML | id::SEGMENT if end.is_none() => {
                self.level = Level::Top;
                Ok(true)
            }
            id::CLUSTER => {
                self.advance(h.len);
                let cluster_end = h.size.map(|s| self.consumed.saturating_add(s));
                self.level = Level::Cluster { end: cluster_end, segment_end: end, started: false };
                Ok(true)
            }
            id::INFO => {
                let Some(payload) = self.whole(&h, MAX_HEADER_ELEMENT)? else { return Ok(false) };
                for c in ebml::children(&payload) {
                    let (cid, v) = c?;
                    if cid == id::TIMECODE_SCALE {
                        self.timecode_scale_ns = ebml::read_uint(v)?.max(1);
                    }
                }
                Ok(true)
            }
            id::TRACKS => {
                let Some(payload) = self.whole(&h, MAX_HEADER_ELEMENT)? else { return Ok(false) };
                let entries = ebml::children(&payload).filter(|c| matches!(c, Ok((id::TRACK_ENTRY, _)))).count();
                if entries > MAX_TRACK_ENTRIES {
                    return Err(MkvError::BadValue("more TrackEntry elements than a stream can use"));
                }
                let entries = tracks_payload(&payload)?;
                self.events.push_back(StreamEvent::Tracks { entries, timecode_scale_ns: self.timecode_scale_ns });
                Ok(true)
            }
            _ => self.skip(&h),
        }
    }

    fn cluster(
        &mut self,
        h: Header,
        end: Option<u64>,
        segment_end: Option<u64>,
        started: bool,
    ) -> Result<bool, MkvError> {
        if end.is_none() && !is_cluster_child(h.id) {
            // An unknown-size Cluster ends at the next Segment-level element.
            if !started {
                return Err(MkvError::Missing("cluster Timecode"));
            }
            self.level = Level::Segment(segment_end);
            self.events.push_back(StreamEvent::ClusterEnd);
            return Ok(true);
        }
        match h.id {
            id::TIMECODE if !started => {
                let Some(payload) = self.whole(&h, MAX_HEADER_ELEMENT)? else { return Ok(false) };
                let timecode = ebml::read_uint(&payload)?;
                self.level = Level::Cluster { end, segment_end, started: true };
                self.events.push_back(StreamEvent::ClusterStart { timecode });
                Ok(true)
            }
            id::SIMPLE_BLOCK | id::BLOCK_GROUP => {
                if !started {
                    return Err(MkvError::MissingClusterTimecode);
                }
                let Some(payload) = self.whole(&h, self.max_element)? else { return Ok(false) };
                self.events.push_back(StreamEvent::Block(block(h.id, payload)?));
                Ok(true)
            }
            _ => self.skip(&h),
        }
    }

    /// The payload of the complete element `h` at the unconsumed start (consumed), `None`
    /// until all of it arrived; refuses unknown sizes and sizes above `limit`.
    fn whole(&mut self, h: &Header, limit: u64) -> Result<Option<Vec<u8>>, MkvError> {
        let size = h.size.ok_or(MkvError::UnknownSizeNotAllowed(h.id))?;
        if size > limit {
            return Err(MkvError::TooLarge { id: h.id, size });
        }
        let total = h.len + size as usize;
        if self.buf.len() - self.pos < total {
            return Ok(None);
        }
        let payload = self.buf[self.pos + h.len..self.pos + total].to_vec();
        self.advance(total);
        Ok(Some(payload))
    }

    /// Passes over the element `h` (header and payload) without buffering its payload.
    fn skip(&mut self, h: &Header) -> Result<bool, MkvError> {
        let size = h.size.ok_or(MkvError::UnknownSizeNotAllowed(h.id))?;
        self.advance(h.len);
        let here = ((self.buf.len() - self.pos) as u64).min(size);
        self.advance(here as usize);
        self.skipping = size - here;
        Ok(true)
    }

    fn advance(&mut self, n: usize) {
        self.pos += n;
        self.consumed += n as u64;
    }
}

fn check_doc_type(ebml_payload: &[u8]) -> Result<(), MkvError> {
    super::read::check_doc_type(ebml_payload)
}

/// The frame of a (Simple)Block element, its data a view of `payload`.
fn block(cid: u32, payload: Vec<u8>) -> Result<StreamBlock, MkvError> {
    let payload = Bytes::from(payload);
    let ((track, relative, _, data), keyframe) = match cid {
        id::SIMPLE_BLOCK => {
            let parts = block_parts(&payload)?;
            (parts, parts.2 & 0x80 != 0)
        }
        _ => {
            let mut found = None;
            let mut referenced = false;
            for c in ebml::children(&payload) {
                let (gid, v) = c?;
                match gid {
                    id::BLOCK => found = Some(block_parts(v)?),
                    id::REFERENCE_BLOCK => referenced = true,
                    _ => {}
                }
            }
            (found.ok_or(MkvError::Missing("Block in BlockGroup"))?, !referenced)
        }
    };
    let data = payload.slice_ref(data);
    Ok(StreamBlock { track, relative, keyframe, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mkv::ebml::{UNKNOWN_SIZE, write_header, write_master, write_str, write_uint};
    use crate::mkv::write_simple_block;

    fn ebml_header(out: &mut Vec<u8>) {
        write_master(out, id::EBML, |o| {
            write_uint(o, id::EBML_VERSION, 1);
            write_str(o, id::DOC_TYPE, "matroska");
        });
    }

    fn tracks() -> Vec<u8> {
        let mut out = Vec::new();
        write_master(&mut out, id::TRACKS, |o| {
            write_master(o, id::TRACK_ENTRY, |t| {
                write_uint(t, id::TRACK_NUMBER, 1);
                write_uint(t, id::TRACK_TYPE, 1);
                write_str(t, id::CODEC_ID, "V_MPEG4/ISO/AVC");
            });
        });
        out
    }

    fn unknown(out: &mut Vec<u8>, element: u32) {
        ebml::write_id(out, element);
        out.extend_from_slice(&UNKNOWN_SIZE);
    }

    /// A block of a test cluster: relative timecode, keyframe, data.
    type TestBlock<'a> = (i16, bool, &'a [u8]);

    /// A PIC-style stream: unknown-size Segment and Clusters, Tags between clusters.
    fn producer_stream(clusters: &[(u64, &[TestBlock])]) -> Vec<u8> {
        let mut out = Vec::new();
        ebml_header(&mut out);
        unknown(&mut out, id::SEGMENT);
        write_master(&mut out, id::INFO, |o| write_uint(o, id::TIMECODE_SCALE, 1_000_000));
        out.extend_from_slice(&tracks());
        for (tc, blocks) in clusters {
            unknown(&mut out, id::CLUSTER);
            write_uint(&mut out, id::TIMECODE, *tc);
            for (rel, key, data) in *blocks {
                write_simple_block(&mut out, 1, *rel, *key, data);
            }
            write_master(&mut out, id::TAGS, |o| {
                write_master(o, id::TAG, |t| {
                    write_master(t, id::SIMPLE_TAG, |s| {
                        write_str(s, id::TAG_NAME, "NAME");
                        write_str(s, id::TAG_STRING, "value");
                    })
                })
            });
        }
        out
    }

    fn read_all(reader: &mut StreamReader, data: &[u8], piece: usize) -> Vec<StreamEvent> {
        let mut events = Vec::new();
        for p in data.chunks(piece) {
            reader.push(p);
            while let Some(ev) = reader.next_event().expect("event") {
                events.push(ev);
            }
        }
        events.extend(reader.finish().expect("finish"));
        events
    }

    fn summary(events: &[StreamEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                StreamEvent::Tracks { entries, timecode_scale_ns } => {
                    format!("tracks {} {timecode_scale_ns}", entries.len())
                }
                StreamEvent::ClusterStart { timecode } => format!("start {timecode}"),
                StreamEvent::Block(b) => format!("block {} {} {} {}", b.track, b.relative, b.keyframe, b.data.len()),
                StreamEvent::ClusterEnd => "end".into(),
            })
            .collect()
    }

    #[test]
    fn an_unknown_size_stream_reads_the_same_in_any_pieces() {
        let data = producer_stream(&[(1000, &[(0, true, b"key"), (33, false, b"delta")]), (2000, &[(0, true, b"k2")])]);
        let want = vec![
            "tracks 1 1000000",
            "start 1000",
            "block 1 0 true 3",
            "block 1 33 false 5",
            "end",
            "start 2000",
            "block 1 0 true 2",
            "end",
        ];
        for piece in [1, 2, 7, 64, data.len()] {
            let mut r = StreamReader::new(1 << 20);
            assert_eq!(summary(&read_all(&mut r, &data, piece)), want, "pieces of {piece}");
            assert_eq!(r.consumed(), data.len() as u64);
        }
    }

    #[test]
    fn the_last_cluster_of_a_stream_ends_with_it() {
        let mut data = producer_stream(&[(5, &[(0, true, b"x")])]);
        // Without the trailing Tags the cluster is still open when the body ends.
        let tags_len = {
            let mut t = Vec::new();
            write_master(&mut t, id::TAGS, |o| {
                write_master(o, id::TAG, |t| {
                    write_master(t, id::SIMPLE_TAG, |s| {
                        write_str(s, id::TAG_NAME, "NAME");
                        write_str(s, id::TAG_STRING, "value");
                    })
                })
            });
            t.len()
        };
        data.truncate(data.len() - tags_len);
        let mut r = StreamReader::new(1 << 20);
        r.push(&data);
        let mut events = Vec::new();
        while let Some(ev) = r.next_event().expect("event") {
            events.push(ev);
        }
        assert!(r.in_cluster());
        events.extend(r.finish().expect("finish"));
        assert_eq!(summary(&events), vec!["tracks 1 1000000", "start 5", "block 1 0 true 1", "end"]);
    }

    #[test]
    fn known_sizes_concatenated_documents_and_skipped_elements() {
        let mut doc = Vec::new();
        ebml_header(&mut doc);
        let mut body = Vec::new();
        write_master(&mut body, id::SEEK_HEAD, |o| o.extend_from_slice(&[0xEC, 0x81, 0]));
        write_master(&mut body, id::INFO, |o| write_uint(o, id::TIMECODE_SCALE, 100_000));
        body.extend_from_slice(&tracks());
        write_master(&mut body, id::CLUSTER, |o| {
            write_uint(o, id::TIMECODE, 7);
            write_header(o, id::VOID, 3);
            o.extend_from_slice(&[0, 0, 0]);
            write_simple_block(o, 1, 2, true, b"abc");
        });
        write_master(&mut body, id::CUES, |o| o.extend_from_slice(&[0xEC, 0x80]));
        write_header(&mut doc, id::SEGMENT, body.len() as u64);
        doc.extend_from_slice(&body);
        let twice = [doc.clone(), doc].concat();
        let mut r = StreamReader::new(1 << 20);
        let events = read_all(&mut r, &twice, 5);
        let one = ["tracks 1 100000", "start 7", "block 1 2 true 3", "end"];
        assert_eq!(summary(&events), [one, one].concat());
    }

    #[test]
    fn a_new_document_ends_an_unknown_size_segment_and_its_cluster() {
        let mut a = producer_stream(&[(1, &[(0, true, b"a")])]);
        let b = producer_stream(&[(9, &[(0, true, b"b")])]);
        a.extend_from_slice(&b);
        let mut r = StreamReader::new(1 << 20);
        let events = summary(&read_all(&mut r, &a, 3));
        assert_eq!(events.iter().filter(|e| e.starts_with("tracks")).count(), 2);
        assert_eq!(events.iter().filter(|e| *e == "end").count(), 2);
    }

    #[test]
    fn bad_streams_are_refused_with_a_reason() {
        // A block before the cluster's timecode.
        let mut data = Vec::new();
        ebml_header(&mut data);
        unknown(&mut data, id::SEGMENT);
        unknown(&mut data, id::CLUSTER);
        write_simple_block(&mut data, 1, 0, true, b"x");
        let mut r = StreamReader::new(1 << 20);
        r.push(&data);
        assert_eq!(r.next_event(), Err(MkvError::MissingClusterTimecode));
        assert_eq!(r.next_event(), Err(MkvError::MissingClusterTimecode), "errors stick");

        // A block larger than the limit.
        let data = producer_stream(&[(1, &[(0, true, &[0u8; 100])])]);
        let mut r = StreamReader::new(64);
        r.push(&data);
        let err = loop {
            match r.next_event() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("needs no more bytes"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, MkvError::TooLarge { id: id::SIMPLE_BLOCK, .. }), "{err:?}");

        // Not Matroska at all.
        let mut r = StreamReader::new(1 << 20);
        r.push(b"this is not matroska");
        assert!(matches!(r.next_event(), Err(MkvError::UnexpectedElement { expected: id::EBML, .. })));

        // Matroska's framing, another DocType.
        let mut data = Vec::new();
        write_master(&mut data, id::EBML, |o| write_str(o, id::DOC_TYPE, "mp4"));
        let mut r = StreamReader::new(1 << 20);
        r.push(&data);
        assert_eq!(r.next_event(), Err(MkvError::BadDocType("mp4".into())));

        // Laced blocks.
        let mut data = producer_stream(&[]);
        unknown(&mut data, id::CLUSTER);
        write_uint(&mut data, id::TIMECODE, 0);
        write_header(&mut data, id::SIMPLE_BLOCK, 5);
        data.extend_from_slice(&[0x81, 0, 0, 0x82, 0]);
        let mut r = StreamReader::new(1 << 20);
        r.push(&data);
        let mut last = Ok(None);
        for _ in 0..10 {
            last = r.next_event();
            if last.is_err() {
                break;
            }
        }
        assert_eq!(last, Err(MkvError::LacingUnsupported));

        // A child running past its known-size Cluster.
        let mut data = producer_stream(&[]);
        write_header(&mut data, id::CLUSTER, 8);
        write_uint(&mut data, id::TIMECODE, 0);
        write_simple_block(&mut data, 1, 0, true, b"longer than the cluster");
        let mut r = StreamReader::new(1 << 20);
        r.push(&data);
        let err = std::iter::from_fn(|| Some(r.next_event())).find(|e| e.is_err()).and_then(Result::err);
        assert_eq!(err, Some(MkvError::BadValue("element runs past the end of its parent")));

        // A known-size Cluster cut short at a block boundary is incomplete, not complete.
        let mut data = producer_stream(&[]);
        let mut cluster = Vec::new();
        write_uint(&mut cluster, id::TIMECODE, 0);
        write_simple_block(&mut cluster, 1, 0, true, b"one");
        let one_block = cluster.len();
        write_simple_block(&mut cluster, 1, 33, false, b"two");
        write_header(&mut data, id::CLUSTER, cluster.len() as u64);
        data.extend_from_slice(&cluster[..one_block]);
        let mut r = StreamReader::new(1 << 20);
        r.push(&data);
        while let Ok(Some(_)) = r.next_event() {}
        assert_eq!(r.finish(), Err(MkvError::Truncated));

        // Header elements have their own, small limit; Tracks a bounded number of entries.
        let mut data = Vec::new();
        ebml_header(&mut data);
        unknown(&mut data, id::SEGMENT);
        write_header(&mut data, id::TRACKS, MAX_HEADER_ELEMENT + 1);
        let mut r = StreamReader::new(u64::MAX);
        r.push(&data);
        assert!(matches!(r.next_event(), Err(MkvError::TooLarge { id: id::TRACKS, .. })));
        let mut data = Vec::new();
        ebml_header(&mut data);
        unknown(&mut data, id::SEGMENT);
        let entry = [0xAE, 0x83, 0xD7, 0x81, 0x01];
        write_header(&mut data, id::TRACKS, (entry.len() * (MAX_TRACK_ENTRIES + 1)) as u64);
        for _ in 0..=MAX_TRACK_ENTRIES {
            data.extend_from_slice(&entry);
        }
        let mut r = StreamReader::new(1 << 20);
        r.push(&data);
        assert!(matches!(r.next_event(), Err(MkvError::BadValue(_))));

        // Cut inside a block.
        let data = producer_stream(&[(1, &[(0, true, b"abcdef")])]);
        let cut = data.len() - 40;
        let mut r = StreamReader::new(1 << 20);
        r.push(&data[..cut]);
        while let Ok(Some(_)) = r.next_event() {}
        assert_eq!(r.finish(), Err(MkvError::Truncated));
    }

    #[test]
    fn skipped_elements_are_not_buffered() {
        let mut data = producer_stream(&[]);
        // A 1 MiB attachment-like element the reader does not use.
        write_header(&mut data, 0x1941_A469, 1 << 20);
        let mut r = StreamReader::new(1024);
        r.push(&data);
        while r.next_event().expect("event").is_some() {}
        for _ in 0..256 {
            r.push(&[0u8; 4096]);
            assert!(r.next_event().expect("event").is_none());
            assert!(r.buf.len() < 4096);
        }
        let mut tail = Vec::new();
        unknown(&mut tail, id::CLUSTER);
        write_uint(&mut tail, id::TIMECODE, 3);
        r.push(&tail);
        assert_eq!(r.next_event(), Ok(Some(StreamEvent::ClusterStart { timecode: 3 })));
    }
}
