//! Text-level SDP checks and touch-ups the storage peer applies (sans-IO).
//!
//! str0m builds and parses the SDP; this module only enforces what KVS masters need from
//! the offer (docs/kvs-wire.md §4.3b) and what reel needs from the answer (H.264 + Opus).

/// Why a master's answer cannot start an ingestion session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// The answer accepted no H.264 video section.
    #[error("the answer has no accepted H.264 video")]
    NoH264,
    /// The answer accepted no Opus audio section.
    #[error("the answer has no accepted Opus audio")]
    NoOpus,
    /// An `a=ice-ufrag` is empty, longer than [`MAX_ICE_UFRAG`] bytes or not printable
    /// ASCII without `:`.
    #[error("the answer's ice-ufrag is invalid (1 to {MAX_ICE_UFRAG} printable ASCII characters, no ':')")]
    BadIceUfrag,
    /// An `a=ice-pwd` is empty, longer than 256 bytes or not printable ASCII.
    #[error("the answer's ice-pwd is invalid (1 to 256 printable ASCII characters)")]
    BadIcePwd,
}

/// Longest remote ICE username fragment accepted, in bytes. The ICE agent (the `is` crate
/// under str0m) puts `remote:local` (its own ufrag has 16 characters) into every STUN
/// binding request's USERNAME and panics when that exceeds 128 bytes, so a longer remote
/// ufrag would take the media worker down (found by the `master_message` fuzz target).
/// RFC 8839 allows 256 characters; real masters send 4 to 32.
pub const MAX_ICE_UFRAG: usize = 128 - 1 - 16;

/// Checks every `a=ice-ufrag` and `a=ice-pwd` line (session or media level).
fn check_ice_credentials(sdp: &str) -> Result<(), AnswerError> {
    let printable = |v: &str| v.bytes().all(|b| (0x21..=0x7e).contains(&b));
    for line in sdp.lines().map(str::trim_end) {
        if let Some(v) = line.strip_prefix("a=ice-ufrag:") {
            if v.is_empty() || v.len() > MAX_ICE_UFRAG || !printable(v) || v.contains(':') {
                return Err(AnswerError::BadIceUfrag);
            }
        } else if let Some(v) = line.strip_prefix("a=ice-pwd:")
            && (v.is_empty() || v.len() > 256 || !printable(v))
        {
            return Err(AnswerError::BadIcePwd);
        }
    }
    Ok(())
}

/// One `m=` section: its media kind, port and attribute lines.
fn sections(sdp: &str) -> Vec<(&str, &str, Vec<&str>)> {
    let mut out: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split(' ');
            let kind = parts.next().unwrap_or_default();
            let port = parts.next().unwrap_or_default();
            out.push((kind, port, Vec::new()));
        } else if let Some(last) = out.last_mut() {
            last.2.push(line);
        }
    }
    out
}

/// True when a section of `kind` with a non-zero port has an `a=rtpmap` for `codec`
/// (case-insensitive `name/clock[/channels]` prefix) and is not `inactive`/`recvonly`.
fn has_codec(sdp: &str, kind: &str, codec: &str) -> bool {
    has_codec_except(sdp, kind, codec, "a=recvonly")
}

/// [`has_codec`] for a section that is not `inactive` nor `refused` (a direction line).
fn has_codec_except(sdp: &str, kind: &str, codec: &str, refused: &str) -> bool {
    let codec = codec.to_ascii_lowercase();
    sections(sdp).iter().any(|(k, port, lines)| {
        *k == kind
            && *port != "0"
            && !lines.iter().any(|l| *l == "a=inactive" || *l == refused)
            && lines.iter().any(|l| {
                l.strip_prefix("a=rtpmap:")
                    .and_then(|r| r.split_once(' '))
                    .is_some_and(|(_, enc)| enc.to_ascii_lowercase().starts_with(&codec))
            })
    })
}

/// Checks that the master's answer sends both H.264 video and Opus 48000/2 audio.
pub fn validate_answer(sdp: &str) -> Result<(), AnswerError> {
    check_ice_credentials(sdp)?;
    if !has_codec(sdp, "video", "H264/90000") {
        return Err(AnswerError::NoH264);
    }
    if !has_codec(sdp, "audio", "opus/48000/2") {
        return Err(AnswerError::NoOpus);
    }
    Ok(())
}

/// Checks that a viewer's answer receives H.264 video (its Opus talk-back is optional).
pub fn validate_viewer_answer(sdp: &str) -> Result<(), AnswerError> {
    check_ice_credentials(sdp)?;
    if !has_codec_except(sdp, "video", "H264/90000", "a=sendonly") {
        return Err(AnswerError::NoH264);
    }
    Ok(())
}

/// The offer as sent to the master: session-level `a=ice-options:trickle` (the C SDK
/// answers ~10 s later without it), exactly one fingerprint, `sha-256`, at session level
/// (the C SDK reads just the last fingerprint line and assumes sha-256; GStreamer's
/// webrtcbin needs one that applies to every m-section), and `b=AS` in the video section
/// to advertise the session bitrate quota.
pub fn finish_offer(sdp: &str, bitrate_bps: u64) -> String {
    let mut out = String::with_capacity(sdp.len() + 64);
    let has_session_trickle =
        sdp.lines().take_while(|l| !l.starts_with("m=")).any(|l| l.trim_end() == "a=ice-options:trickle");
    let fingerprint = sdp.lines().map(str::trim_end).find(|l| l.starts_with("a=fingerprint:sha-256 "));
    let kbps = bitrate_bps.div_ceil(1000);
    let mut in_video = false;
    for line in sdp.lines().map(str::trim_end) {
        if line.starts_with("a=fingerprint:") || (line.starts_with("b=AS:") && in_video) {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
        if line.starts_with("t=") {
            if !has_session_trickle {
                out.push_str("a=ice-options:trickle\r\n");
            }
            if let Some(fp) = fingerprint {
                out.push_str(fp);
                out.push_str("\r\n");
            }
        }
        if line.starts_with("m=") {
            in_video = line.starts_with("m=video");
        }
        if in_video && line.starts_with("c=") && kbps > 0 {
            out.push_str(&format!("b=AS:{kbps}\r\n"));
        }
    }
    out
}

/// Counts lines starting with `prefix` (used by tests and the session's self-check).
pub fn count_lines(sdp: &str, prefix: &str) -> usize {
    sdp.lines().filter(|l| l.starts_with(prefix)).count()
}

/// The ICE_CANDIDATE payload announcing our host candidate `addr` on the offer's first
/// m-line, whose mid is `first_mid` (the offers put video first). Browsers reject a
/// candidate whose `sdpMid` names no section of the offer, so it carries the offer's own mid
/// (str0m's are random, e.g. `3na`), not a guessed `"0"`.
pub fn host_candidate_payload(addr: std::net::SocketAddr, first_mid: &str) -> Option<String> {
    let c = str0m::Candidate::host(addr, "udp").ok()?;
    Some(serde_json::json!({ "candidate": c.to_sdp_string(), "sdpMid": first_mid, "sdpMLineIndex": 0 }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_candidate_names_the_offers_first_mid() {
        let json = host_candidate_payload("198.18.0.1:5000".parse().expect("addr"), "3na").expect("candidate");
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["sdpMid"], "3na");
        assert_eq!(v["sdpMLineIndex"], 0);
        assert!(v["candidate"].as_str().expect("str").contains("198.18.0.1 5000 typ host"));
    }

    const ANSWER: &str = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 108\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n\
        a=rtpmap:108 H264/90000\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\n\
        a=rtpmap:111 opus/48000/2\r\n";

    #[test]
    fn answer_with_both_codecs_passes() {
        assert_eq!(validate_answer(ANSWER), Ok(()));
    }

    #[test]
    fn answer_without_opus_or_h264_fails() {
        let no_opus = ANSWER.replace("opus/48000/2", "PCMU/8000");
        assert_eq!(validate_answer(&no_opus), Err(AnswerError::NoOpus));
        let no_h264 = ANSWER.replace("H264/90000", "VP8/90000");
        assert_eq!(validate_answer(&no_h264), Err(AnswerError::NoH264));
        let rejected = ANSWER.replace("m=audio 9", "m=audio 0");
        assert_eq!(validate_answer(&rejected), Err(AnswerError::NoOpus));
        let inactive = ANSWER.replace("a=mid:0\r\na=sendonly", "a=mid:0\r\na=inactive");
        assert_eq!(validate_answer(&inactive), Err(AnswerError::NoH264));
    }

    #[test]
    fn ice_credentials_must_be_short_printable_ascii() {
        let with = |line: &str| ANSWER.replace("a=mid:0\r\n", &format!("a=mid:0\r\n{line}\r\n"));
        assert_eq!(validate_answer(&with("a=ice-ufrag:abcd")), Ok(()));
        assert_eq!(validate_answer(&with(&format!("a=ice-ufrag:{}", "u".repeat(MAX_ICE_UFRAG)))), Ok(()));
        for bad in ["a=ice-ufrag:", "a=ice-ufrag:ab cd", "a=ice-ufrag:ab:cd", "a=ice-ufrag:ab\u{fffd}"] {
            assert_eq!(validate_answer(&with(bad)), Err(AnswerError::BadIceUfrag), "{bad}");
        }
        let long = format!("a=ice-ufrag:{}", "u".repeat(MAX_ICE_UFRAG + 1));
        assert_eq!(validate_answer(&long), Err(AnswerError::BadIceUfrag));
        assert_eq!(validate_viewer_answer(&with(&long)), Err(AnswerError::BadIceUfrag));
        assert_eq!(validate_answer(&with(&format!("a=ice-pwd:{}", "p".repeat(257)))), Err(AnswerError::BadIcePwd));
    }

    #[test]
    fn offer_gets_trickle_one_fingerprint_and_bitrate() {
        let offer = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
            a=fingerprint:sha-256 AA:BB\r\na=fingerprint:sha-384 CC\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 108\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n";
        let out = finish_offer(offer, 1_000_000);
        assert_eq!(count_lines(&out, "a=fingerprint:"), 1);
        assert_eq!(count_lines(&out, "a=fingerprint:sha-256 "), 1);
        assert_eq!(count_lines(&out, "a=ice-options:trickle"), 1);
        assert_eq!(count_lines(&out, "b=AS:1000"), 1);
        let video = out.split("m=audio").next().unwrap_or_default();
        assert!(video.contains("b=AS:1000"), "{out}");
        // Idempotent on trickle.
        assert_eq!(count_lines(&finish_offer(&out, 1_000_000), "a=ice-options:trickle"), 1);
    }

    #[test]
    fn media_level_fingerprints_move_to_the_session_level() {
        let offer = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 108\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=fingerprint:sha-256 AA:BB\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=fingerprint:sha-256 AA:BB\r\n";
        let out = finish_offer(offer, 1_000_000);
        assert_eq!(count_lines(&out, "a=fingerprint:"), 1);
        let session = out.split("m=video").next().unwrap_or_default();
        assert!(session.contains("a=fingerprint:sha-256 AA:BB"), "{out}");
    }
}
