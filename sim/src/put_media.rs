//! A simulated PutMedia producer: what the KVS C producer (the PIC, under kvssink) sends, for
//! `reel-put-media-load`. One chunked `POST /putMedia` per producer carrying one Matroska
//! document as the PIC lays it out — EBML header, unknown-size Segment, Info (1 ms
//! TimecodeScale), Tracks (H.264 with its avcC, Opus with its OpusHead), then one
//! unknown-size Cluster per keyframe with SimpleBlocks in AVCC form and an absolute
//! timecode — sent in real time from the looped fixture clip ([`MediaSource`]), with the
//! acknowledgements read back as they arrive.
//!
//! The Matroska is written here, not with reel's own writer, so the load judges reel's
//! reader with bytes reel did not produce.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::publisher::source::{AUDIO_PACKET, FPS, MediaSource, nal, nal_type, split_annex_b};

const EBML_HEADER: &[u8] = &[
    0x1A, 0x45, 0xDF, 0xA3, 0xA3, 0x42, 0x86, 0x81, 0x01, 0x42, 0xF7, 0x81, 0x01, 0x42, 0xF2, 0x81, 0x04, 0x42, 0xF3,
    0x81, 0x08, 0x42, 0x82, 0x88, b'm', b'a', b't', b'r', b'o', b's', b'k', b'a', 0x42, 0x87, 0x81, 0x02, 0x42, 0x85,
    0x81, 0x02,
];
/// An unknown-size Segment, as the PIC writes it (1-byte size).
const SEGMENT_UNKNOWN: &[u8] = &[0x18, 0x53, 0x80, 0x67, 0xFF];
/// An unknown-size Cluster.
const CLUSTER_UNKNOWN: &[u8] = &[0x1F, 0x43, 0xB6, 0x75, 0xFF];

/// EBML element: ID bytes, an 8-byte size, the payload (the PIC's fixed-width sizes).
fn element(out: &mut Vec<u8>, id: &[u8], payload: &[u8]) {
    out.extend_from_slice(id);
    out.push(0x01);
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
}

fn uint(out: &mut Vec<u8>, id: &[u8], v: u64) {
    element(out, id, &v.to_be_bytes());
}

/// The document head: EBML header, Segment, Info, Tracks.
pub fn document_head(source: &MediaSource) -> Vec<u8> {
    let mut out = EBML_HEADER.to_vec();
    out.extend_from_slice(SEGMENT_UNKNOWN);
    let mut info = Vec::new();
    uint(&mut info, &[0x2A, 0xD7, 0xB1], 1_000_000);
    element(&mut info, &[0x4D, 0x80], b"Kinesis Video SDK 1.1.0");
    element(&mut out, &[0x15, 0x49, 0xA9, 0x66], &info);

    let mut video = Vec::new();
    uint(&mut video, &[0xD7], 1);
    uint(&mut video, &[0x73, 0xC5], 1);
    uint(&mut video, &[0x83], 1);
    element(&mut video, &[0x86], b"V_MPEG4/ISO/AVC");
    let mut picture = Vec::new();
    uint(&mut picture, &[0xB0], 640);
    uint(&mut picture, &[0xBA], 360);
    element(&mut video, &[0xE0], &picture);
    element(&mut video, &[0x63, 0xA2], &avcc_record(source));
    let mut audio = Vec::new();
    uint(&mut audio, &[0xD7], 2);
    uint(&mut audio, &[0x73, 0xC5], 2);
    uint(&mut audio, &[0x83], 2);
    element(&mut audio, &[0x86], b"A_OPUS");
    let mut sound = Vec::new();
    element(&mut sound, &[0xB5], &48_000f64.to_be_bytes());
    uint(&mut sound, &[0x9F], 2);
    element(&mut audio, &[0xE1], &sound);
    // OpusHead: version 1, 2 channels, pre-skip 312, 48 kHz, gain 0, mapping family 0.
    let mut head = b"OpusHead".to_vec();
    head.extend_from_slice(&[1, 2]);
    head.extend_from_slice(&312u16.to_le_bytes());
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&[0, 0, 0]);
    element(&mut audio, &[0x63, 0xA2], &head);
    let mut tracks = Vec::new();
    element(&mut tracks, &[0xAE], &video);
    element(&mut tracks, &[0xAE], &audio);
    element(&mut out, &[0x16, 0x54, 0xAE, 0x6B], &tracks);
    out
}

/// The avcC record of the clip's first SPS and PPS.
fn avcc_record(source: &MediaSource) -> Vec<u8> {
    let nals = split_annex_b(&source.video_frame(0).data);
    let sps = nals.iter().find(|n| nal_type(n) == Some(nal::SPS)).copied().unwrap_or(&[0x67, 0x42, 0xE0, 0x1F]);
    let pps = nals.iter().find(|n| nal_type(n) == Some(nal::PPS)).copied().unwrap_or(&[0x68]);
    let profile = |i: usize| sps.get(i).copied().unwrap_or(0);
    let mut out = vec![1, profile(1), profile(2), profile(3), 0xFF, 0xE1];
    out.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    out.extend_from_slice(sps);
    out.push(1);
    out.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    out.extend_from_slice(pps);
    out
}

/// One access unit in AVCC form (4-byte lengths), without its access unit delimiter.
fn avcc_frame(annex_b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(annex_b.len());
    for n in split_annex_b(annex_b) {
        if nal_type(n) == Some(nal::AUD) {
            continue;
        }
        out.extend_from_slice(&(n.len() as u32).to_be_bytes());
        out.extend_from_slice(n);
    }
    out
}

fn simple_block(out: &mut Vec<u8>, track: u8, relative_ms: i16, keyframe: bool, data: &[u8]) {
    let mut payload = Vec::with_capacity(data.len() + 4);
    payload.push(0x80 | track);
    payload.extend_from_slice(&relative_ms.to_be_bytes());
    payload.push(if keyframe { 0x80 } else { 0 });
    payload.extend_from_slice(data);
    element(out, &[0xA3], &payload);
}

/// The end-of-session tag the PIC writes after the last Cluster.
pub fn end_of_session() -> Vec<u8> {
    let mut simple = Vec::new();
    element(&mut simple, &[0x45, 0xA3], b"AWS_KINESISVIDEO_END_OF_FRAGMENT");
    element(&mut simple, &[0x44, 0x87], b"");
    let mut tag = Vec::new();
    element(&mut tag, &[0x67, 0xC8], &simple);
    let mut tags = Vec::new();
    element(&mut tags, &[0x73, 0x73], &tag);
    let mut out = Vec::new();
    element(&mut out, &[0x12, 0x54, 0xC3, 0x67], &tags);
    out
}

/// Cuts the looped clip into what a producer sends as time passes: [`Clip::due`] returns
/// the bytes of every frame due by a point in time, opening a Cluster at each keyframe.
#[derive(Debug)]
pub struct Clip<'a> {
    source: &'a MediaSource,
    start_ms: u64,
    next_video: u64,
    next_audio: u64,
    cluster_ms: Option<u64>,
}

/// What became due.
#[derive(Debug, Default)]
pub struct Due {
    /// The bytes to send.
    pub bytes: Vec<u8>,
    /// Timecodes (ms) of Clusters this piece opened; each closes the one before it.
    pub opened: Vec<u64>,
}

impl<'a> Clip<'a> {
    /// The clip starting at `start_ms` (ms since the epoch, the first frame's timestamp).
    pub fn new(source: &'a MediaSource, start_ms: u64) -> Self {
        Self { source, start_ms, next_video: 0, next_audio: 0, cluster_ms: None }
    }

    fn video_ms(&self, i: u64) -> u64 {
        self.start_ms + i * 1000 / FPS
    }

    fn audio_ms(&self, j: u64) -> u64 {
        self.start_ms + j * AUDIO_PACKET.as_millis() as u64
    }

    /// Every frame due by `now_ms`, in timestamp order.
    pub fn due(&mut self, now_ms: u64) -> Due {
        let mut due = Due::default();
        loop {
            let (v, a) = (self.video_ms(self.next_video), self.audio_ms(self.next_audio));
            let video_first = v <= a;
            let at = v.min(a);
            if at > now_ms {
                return due;
            }
            if video_first {
                let frame = self.source.video_frame(self.next_video);
                if frame.keyframe || self.cluster_ms.is_none() {
                    due.bytes.extend_from_slice(CLUSTER_UNKNOWN);
                    uint(&mut due.bytes, &[0xE7], at);
                    self.cluster_ms = Some(at);
                    due.opened.push(at);
                }
                let rel = (at - self.cluster_ms.unwrap_or(at)) as i16;
                simple_block(&mut due.bytes, 1, rel, frame.keyframe, &avcc_frame(&frame.data));
                self.next_video += 1;
            } else {
                let packet = self.source.audio_packet(self.next_audio);
                if let Some(cluster) = self.cluster_ms {
                    simple_block(&mut due.bytes, 2, (at - cluster) as i16, true, packet);
                }
                self.next_audio += 1;
            }
        }
    }
}

/// ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_open_at_keyframes_and_blocks_follow_in_time() {
        let source = MediaSource::new(1_000_000).expect("fixture");
        let mut clip = Clip::new(&source, 1_000_000);
        let first = clip.due(1_000_000);
        assert_eq!(first.opened, vec![1_000_000]);
        let rest = clip.due(1_000_000 + 6_000);
        assert!(!rest.opened.is_empty(), "a keyframe within 6 s opens a cluster");
        assert!(rest.opened.iter().all(|t| (t - 1_000_000) % 1000 < 40), "clusters open on frame times");
        let bytes = [first.bytes, rest.bytes].concat();
        // ≈ 6 s of 1 Mbps.
        assert!((600_000..1_000_000).contains(&bytes.len()), "{} bytes", bytes.len());
        assert!(document_head(&source).starts_with(EBML_HEADER));
        assert!(end_of_session().starts_with(&[0x12, 0x54, 0xC3, 0x67]));
    }
}
