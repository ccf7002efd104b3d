//! DASH manifests (sans-IO text builder) and fragment lookup by manifest time.
//!
//! One AdaptationSet per track (video, audio), fMP4 segments of one track each, and a
//! `SegmentTemplate` with timescale 1000 whose `SegmentTimeline` `S@t` is the fragment's
//! producer timestamp in ms: `$Time$` in the media URL therefore names the fragment, and
//! equals the segments' `tfdt` (which count from the Unix epoch).

use std::fmt::Write;

use super::hls::peak_bandwidth;
use super::token::{Mode, Session};
use crate::error::{ApiError, ApiResult};
use reel_media::source::{Codec, Track};
use reel_storage::{FragmentInfo, FragmentNumber, Stream, TimestampKind, TimestampRange};

/// XML namespace of the `kvs:ts` / `kvs:fn` attributes.
pub const KVS_NS: &str = "https://kinesisvideo.amazonaws.com/dash";

fn iso_duration(ms: u64) -> String {
    format!("PT{}.{:03}S", ms / 1000, ms % 1000)
}

fn iso_time(ms: u64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX)).unwrap_or_default();
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The manifest of a session over `frags` (oldest first). `complete` = static MPD.
pub fn manifest(
    token: &str,
    s: &Session,
    tracks: &[Track],
    frags: &[FragmentInfo],
    complete: bool,
    now_ms: u64,
) -> String {
    let first_t = frags.first().map_or(0, |f| f.producer_ts_ms);
    let total: u64 = frags.iter().map(|f| u64::from(f.duration_ms)).sum();
    let max_d = frags.iter().map(|f| u64::from(f.duration_ms)).max().unwrap_or(1000);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = write!(
        out,
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" xmlns:kvs=\"{KVS_NS}\" \
         profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" minBufferTime=\"{}\"",
        iso_duration(max_d)
    );
    let dynamic = !complete && s.mode != Mode::OnDemand;
    if dynamic {
        let _ = writeln!(
            out,
            " type=\"dynamic\" availabilityStartTime=\"1970-01-01T00:00:00Z\" publishTime=\"{}\" \
             minimumUpdatePeriod=\"PT1S\" timeShiftBufferDepth=\"{}\" suggestedPresentationDelay=\"{}\">",
            iso_time(now_ms),
            iso_duration(total.max(max_d)),
            iso_duration(max_d * 3)
        );
        out.push_str("<Period id=\"0\" start=\"PT0S\">\n");
    } else {
        let _ = writeln!(out, " type=\"static\" mediaPresentationDuration=\"{}\">", iso_duration(total));
        out.push_str("<Period id=\"0\" start=\"PT0S\">\n");
    }
    let first_number = frags.first().map(|f| f.number.to_string()).unwrap_or_default();
    let pto = if dynamic { 0 } else { first_t };
    for t in tracks {
        let (content, mime) = if t.codec.is_audio() { ("audio", "audio/mp4") } else { ("video", "video/mp4") };
        let _ = writeln!(
            out,
            "<AdaptationSet id=\"{}\" contentType=\"{content}\" mimeType=\"{mime}\" segmentAlignment=\"true\" startWithSAP=\"1\">",
            t.number
        );
        let _ = write!(
            out,
            "<Representation id=\"{}\" codecs=\"{}\" bandwidth=\"{}\"",
            t.number,
            t.codec_string(),
            peak_bandwidth(frags)
        );
        match &t.codec {
            Codec::Avc(c) => {
                let _ = writeln!(out, " width=\"{}\" height=\"{}\">", c.width(), c.height());
            }
            Codec::Hevc(c) => {
                let _ = writeln!(out, " width=\"{}\" height=\"{}\">", c.width, c.height);
            }
            Codec::Opus(h) => audio_attributes(&mut out, reel_media::opus::SAMPLE_RATE, u16::from(h.channels)),
            Codec::Aac(c) => audio_attributes(&mut out, c.output_sample_rate(), c.channels()),
        }
        let _ = writeln!(
            out,
            "<SegmentTemplate timescale=\"1000\" presentationTimeOffset=\"{pto}\" \
             initialization=\"getMP4InitFragment.mp4?TrackNumber={n}&amp;FragmentNumber={first_number}&amp;SessionToken={token}\" \
             media=\"getMP4MediaFragment.mp4?TrackNumber={n}&amp;Time=$Time$&amp;SessionToken={token}\">",
            n = t.number
        );
        out.push_str("<SegmentTimeline>\n");
        for f in frags {
            let _ = write!(out, "<S t=\"{}\" d=\"{}\"", f.producer_ts_ms, f.duration_ms);
            if s.show_ts {
                let ts = if s.producer { f.producer_ts_ms } else { f.server_ts_ms };
                let _ = write!(out, " kvs:ts=\"{}\"", iso_time(ts));
            }
            if s.show_fn {
                let _ = write!(out, " kvs:fn=\"{}\"", f.number);
            }
            out.push_str("/>\n");
        }
        out.push_str("</SegmentTimeline>\n</SegmentTemplate>\n</Representation>\n</AdaptationSet>\n");
    }
    out.push_str("</Period>\n</MPD>\n");
    out
}

/// Ends an audio `Representation` start tag with its sampling rate, and adds its channel
/// count (the scheme of ISO/IEC 23003-3, which counts channels).
fn audio_attributes(out: &mut String, sample_rate: u32, channels: u16) {
    let _ = writeln!(out, " audioSamplingRate=\"{sample_rate}\">");
    let _ = writeln!(
        out,
        "<AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{channels}\"/>"
    );
}

/// The fragment whose producer timestamp is exactly `t_ms` (a manifest `S@t`).
pub fn fragment_at(stream: &Stream, t_ms: u64) -> ApiResult<FragmentNumber> {
    let range = TimestampRange { kind: TimestampKind::Producer, start_ms: t_ms, end_ms: t_ms };
    stream
        .list_fragments(range, 1)?
        .fragments
        .first()
        .map(|f| f.number)
        .ok_or_else(|| ApiError::not_found(format!("No fragment starts at {t_ms}")))
}
