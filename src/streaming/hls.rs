//! HLS playlists (sans-IO text builders).
//!
//! Layout: one muxed rendition. The master playlist lists a single variant whose media
//! playlist references segments that carry every track (video track 1 + Opus or AAC track 2
//! in one `moof`, or one TS with both PIDs); `CODECS` lists each track's RFC 6381 string
//! (`avc1.42e01f,mp4a.40.2`). ffmpeg and hls.js both play muxed fMP4/TS; a
//! separate audio rendition would double the requests per fragment for no gain.

use std::fmt::Write;

use super::token::{Container, Discontinuity, Mode, Session};
use reel_media::source::{Codec, Track};
use reel_storage::FragmentInfo;

/// Gap or overlap (ms) between fragments that ON_DISCONTINUITY marks.
pub const DISCONTINUITY_THRESHOLD_MS: i64 = 50;

/// Peak bit rate (bit/s) of a window, for `BANDWIDTH`.
pub fn peak_bandwidth(frags: &[FragmentInfo]) -> u64 {
    frags
        .iter()
        .map(|f| (f.payload_bytes + u64::from(f.header_bytes)) * 8 * 1000 / u64::from(f.duration_ms.max(1)))
        .max()
        .unwrap_or(1)
        .max(1)
}

/// The master playlist of a session.
pub fn master(token: &str, tracks: &[Track], bandwidth: u64) -> String {
    let codecs: Vec<String> = tracks.iter().map(Track::codec_string).collect();
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},CODECS=\"{}\"", codecs.join(","));
    let size = match tracks.first().map(|t| &t.codec) {
        Some(Codec::Avc(c)) => Some((c.width(), c.height())),
        Some(Codec::Hevc(c)) => Some((c.width, c.height)).filter(|&(w, h)| w > 0 && h > 0),
        _ => None,
    };
    if let Some((w, h)) = size {
        let _ = write!(out, ",RESOLUTION={w}x{h}");
    }
    let _ = write!(out, "\ngetHLSMediaPlaylist.m3u8?SessionToken={token}\n");
    out
}

/// `#EXT-X-PROGRAM-DATE-TIME` value of a ms timestamp.
fn date_time(ms: u64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX)).unwrap_or_default();
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The media playlist of a session over `frags` (oldest first). `complete` adds
/// `#EXT-X-ENDLIST` (ON_DEMAND, or LIVE_REPLAY whose range has ended); `sequence` is the
/// media sequence number of the first fragment (see [`super::session::media_sequence`]).
pub fn media(token: &str, s: &Session, frags: &[FragmentInfo], sequence: u64, complete: bool) -> String {
    let target = frags.iter().map(|f| u64::from(f.duration_ms).div_ceil(1000)).max().unwrap_or(1).max(1);
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{sequence}");
    if s.mode != Mode::Live && complete {
        out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
    }
    if s.discontinuity == Discontinuity::Always && s.mode == Mode::Live {
        let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{sequence}");
    }
    let map = |out: &mut String, f: &FragmentInfo| {
        if s.container == Container::Fmp4 {
            let _ = writeln!(
                out,
                "#EXT-X-MAP:URI=\"getMP4InitFragment.mp4?SessionToken={token}&FragmentNumber={}\"",
                f.number
            );
        }
    };
    let mut prev_end: Option<i64> = None;
    for (i, f) in frags.iter().enumerate() {
        let start = i64::try_from(f.producer_ts_ms).unwrap_or(i64::MAX);
        let disc = i > 0
            && match s.discontinuity {
                Discontinuity::Always => true,
                Discontinuity::Never => false,
                Discontinuity::OnDiscontinuity => {
                    prev_end.is_some_and(|e| (start - e).abs() > DISCONTINUITY_THRESHOLD_MS)
                }
            };
        if disc {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if i == 0 || disc {
            map(&mut out, f);
        }
        if s.show_ts {
            let ts = if s.producer { f.producer_ts_ms } else { f.server_ts_ms };
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", date_time(ts));
        }
        let _ = writeln!(out, "#EXTINF:{:.3},", f64::from(f.duration_ms) / 1000.0);
        let resource = match s.container {
            Container::Fmp4 => "getMP4MediaFragment.mp4",
            Container::Ts => "getTSFragment.ts",
        };
        let _ = writeln!(out, "{resource}?FragmentNumber={}&SessionToken={token}", f.number);
        prev_end = Some(start + i64::from(f.duration_ms));
    }
    if complete {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}
