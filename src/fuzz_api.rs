//! Entry points of the fuzz targets over reel's own parsers (`fuzz/`, feature `fuzzing`).
//!
//! Why a feature-gated `#[doc(hidden)] pub mod` rather than a public function per parser:
//! some parsers are crate-private (the TURN gate, the playback inputs) and must stay so;
//! this one module reaches them from inside the crate, exists only with `fuzzing` (or in
//! tests), and never appears in the API docs. Each function takes the fuzzer's bytes, runs
//! one parser of untrusted input the way the server does (no I/O) and asserts what must
//! hold beyond "no panic". `tests/fuzz_seeds.rs` runs the committed seeds through them on
//! stable Rust, so `cargo test` catches regressions without a fuzzer.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::auth::sigv4::{self, Location, Payload, Request};
use crate::auth::{AccessKey, Authenticator, CredentialStore, KeySource};
use crate::limits::Limits;
use crate::signaling::message::{self, MessageKind, MessageLimits, ServiceEvent, SignalingMessage};
use crate::streaming::token::{self, Protocol};

/// One fuzz target: it takes the fuzzer's bytes.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name (`fuzz/fuzz_targets/<name>.rs`, `fuzz/seeds/<name>/`), plus
/// media targets whose driver is a public function of `reel-media` (so their seeds run here too).
pub const TARGETS: &[(&str, Target)] = &[
    ("signaling_message", signaling_message),
    ("master_message", master_message),
    ("sigv4", sigv4),
    ("session_token", session_token),
    ("turn_message", turn_message),
    ("api_body", api_body),
    ("rtp_rx", reel_media::rtp_rx::fuzz_drive),
    ("put_media_body", put_media_body),
];

/// A fixed point in time (2024-01-01T00:00:00Z) so runs are reproducible.
fn fixed_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_704_067_200)
}

/// A signaling WebSocket text frame from a client.
///
/// Accepted messages respect the limits; what the server relays (a `ServiceEvent`) is JSON.
pub fn signaling_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let limits = MessageLimits { max_payload_bytes: Limits::default().signaling.max_message_payload_bytes };
    match message::parse_client_message(text, limits) {
        Ok(m) => {
            assert!(m.message.payload.len() <= limits.max_payload_bytes);
            assert!(m.message.payload_bytes().is_ok(), "accepted payload must decode");
            if let Some(r) = &m.recipient {
                assert!(crate::signaling::validate::is_client_id(r) || r.is_empty(), "recipient {r:?}");
            }
            let relayed = ServiceEvent::relay(Some("sender".into()), &m.message).to_json();
            assert!(serde_json::from_str::<serde_json::Value>(&relayed).is_ok());
        }
        Err(f) => {
            // A malformed id of 1-256 bytes is echoed with BadCorrelationId (by design: the
            // sender can still match the failure); any other echoed id is well-formed.
            if let Some(c) = &f.correlation_id {
                let malformed_echo = f.error == message::MessageError::BadCorrelationId && (1..=256).contains(&c.len());
                assert!(malformed_echo || crate::signaling::validate::is_correlation_id(c), "echoed id {c:?}");
            }
            let status = ServiceEvent::status(f.correlation_id.unwrap_or_default(), "x", 400, f.error.to_string());
            assert!(serde_json::from_str::<serde_json::Value>(&status.to_json()).is_ok());
        }
    }
}

/// A master's message to the storage peer (SDP answer or ICE candidate).
///
/// The first byte selects the form: 0 raw answer SDP, 1 raw candidate line, 2 SDP_ANSWER
/// and 3 ICE_CANDIDATE messages whose payload is the rest (JSON), 4 SDP_OFFER. In answers,
/// `{V}` and `{A}` stand for the offer's video and audio mids (random per offer), so
/// seeds can match a fresh offer. A parsed answer or candidate is applied to a real
/// offerer `Rtc`, which is then driven for a few steps, as the media peer does.
pub fn master_message(data: &[u8]) {
    master_message_applied(data);
}

/// [`master_message`]; true if an answer or candidate reached the `Rtc`.
fn master_message_applied(data: &[u8]) -> bool {
    use crate::peer::sdp;
    use crate::peer::session::{MasterInput, build_rtc_at, parse_master_message};
    let Some((&mode, rest)) = data.split_first() else { return false };
    let now = Instant::now();
    let Ok(offerer) = build_rtc_at(SocketAddr::from(([127, 0, 0, 1], 5000)), now) else { return false };
    let fill = |t: &str| t.replace("{V}", &offerer.video.to_string()).replace("{A}", &offerer.audio.to_string());
    let text = fill(&String::from_utf8_lossy(rest));
    let input = match mode % 5 {
        0 => {
            let _ = sdp::finish_offer(&text, 1_000_000);
            let json = serde_json::json!({ "type": "answer", "sdp": text }).to_string();
            SignalingMessage::from_payload_bytes(MessageKind::SdpAnswer, json.as_bytes())
        }
        1 => {
            let json = serde_json::json!({ "candidate": text, "sdpMid": "0" }).to_string();
            SignalingMessage::from_payload_bytes(MessageKind::IceCandidate, json.as_bytes())
        }
        2 => SignalingMessage::from_payload_bytes(MessageKind::SdpAnswer, text.as_bytes()),
        3 => SignalingMessage::from_payload_bytes(MessageKind::IceCandidate, text.as_bytes()),
        _ => SignalingMessage::from_payload_bytes(MessageKind::SdpOffer, text.as_bytes()),
    };
    let mut rtc = offerer.rtc;
    match parse_master_message(&input) {
        Ok(MasterInput::Answer(answer)) => {
            if rtc.sdp_api().accept_answer(offerer.pending, *answer).is_err() {
                return false;
            }
        }
        Ok(MasterInput::Candidate(c)) => rtc.add_remote_candidate(c),
        Ok(MasterInput::Ignore) | Err(_) => return false,
    }
    drive(&mut rtc, now);
    true
}

/// Polls `rtc` to quiescence a few times, advancing time, as the hub's driver does.
fn drive(rtc: &mut str0m::Rtc, start: Instant) {
    let mut now = start;
    for _ in 0..4 {
        for _ in 0..64 {
            match rtc.poll_output() {
                Ok(str0m::Output::Timeout(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        now += Duration::from_millis(300);
        if rtc.handle_input(str0m::Input::Timeout(now)).is_err() {
            return;
        }
    }
}

/// The signing key the fuzz store holds.
const FUZZ_KEY_ID: &str = "AKIDEXAMPLE";
const FUZZ_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// An HTTP request as text lines: method, request target, `name: value` headers, an empty
/// line, the body. Its SigV4 claims (header or presigned query) are parsed and checked the
/// way the edge does. If the first byte is odd, the request is also signed correctly
/// ([`sigv4::canonical_request`] over the hash verification tries first) and must then
/// verify, and must not verify with one more body byte (no unsigned body on a signature).
pub fn sigv4(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Some(parts) = request_parts(rest) else { return };
    let (method, uri, headers, body) = parts;
    let req = Request { method: &method, uri: &uri, headers: &headers, body: Payload::Buffered(&body) };
    let _ = sigv4::canonical_uri(uri.path());
    let _ = sigv4::canonical_query(uri.query(), true);
    let _ = sigv4::canonical_query(uri.query(), false);
    let auth = authenticator();
    let _ = auth.precheck(&method, &uri, &headers, fixed_now());
    let _ = auth.authenticate(&method, &uri, &headers, Payload::Buffered(&body), fixed_now());
    let Ok(mut signed) = sigv4::parse(&req) else { return };
    let _ = sigv4::check_scope(&signed);
    let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(signed.date.epoch_secs()).unwrap_or(0));
    let rules = sigv4::TimeRules { max_clock_skew_secs: 300, max_presign_expires_secs: 604_800 };
    let _ = sigv4::check_time(&signed, at, rules);
    let _ = sigv4::check_time(&signed, fixed_now(), rules);
    if sigv4::verify(&req, &signed, FUZZ_SECRET).is_ok() {
        return;
    }
    if mode % 2 == 0 {
        return;
    }
    let Ok(hashes) = sigv4::payload_hashes(&req, &signed) else { return };
    let Some(hash) = hashes.first() else { return };
    let Ok(canonical) = sigv4::canonical_request(&req, &signed, hash) else { return };
    let key = sigv4::signing_key(FUZZ_SECRET, &signed.scope);
    signed.signature = sigv4::signature_hex(&key, &sigv4::string_to_sign(&signed, &canonical));
    assert!(sigv4::verify(&req, &signed, FUZZ_SECRET).is_ok(), "a correct signature must verify");
    let mut longer = body.clone();
    longer.push(b'x');
    let tampered = Request { body: Payload::Buffered(&longer), ..req };
    assert!(sigv4::verify(&tampered, &signed, FUZZ_SECRET).is_err(), "a body the signer did not sign verified");
    if signed.location == Location::Query {
        let _ = sigv4::check_time(&signed, at, rules);
    }
}

fn authenticator() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| {
        let key = AccessKey::root(FUZZ_KEY_ID, FUZZ_SECRET, KeySource::Flags);
        let store = CredentialStore::from_keys([key]).unwrap_or_else(|e| panic!("fuzz key store: {e}"));
        Authenticator::new(store, &Limits::default())
    })
}

/// Splits `method\ntarget\nheaders…\n\nbody`; `None` when a part is not valid HTTP.
fn request_parts(data: &[u8]) -> Option<(Method, Uri, HeaderMap, Vec<u8>)> {
    let mut lines = data.split(|&b| b == b'\n');
    let method = Method::from_bytes(lines.next()?).ok()?;
    let uri = Uri::try_from(lines.next()?).ok()?;
    let mut headers = HeaderMap::new();
    let mut consumed = 0;
    for line in lines.by_ref() {
        consumed += 1;
        if line.is_empty() {
            break;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = line.split_at(colon);
        let value = value.get(1..)?.trim_ascii_start();
        headers.append(HeaderName::from_bytes(name).ok()?, HeaderValue::from_bytes(value).ok()?);
        if headers.len() > 64 {
            return None;
        }
    }
    let _ = consumed;
    let body = lines.collect::<Vec<_>>().join(&b'\n');
    Some((method, uri, headers, body))
}

/// The key streaming session tokens are signed with here.
const TOKEN_KEY: [u8; 32] = [7; 32];

/// An HLS/DASH `SessionToken` query value. If the first byte is odd, the rest is instead
/// taken as the token's JSON body and signed with the key, so the fuzzer reaches what
/// follows the MAC check. A verified session re-issues to the same session, and its
/// playlist and manifest render.
pub fn session_token(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let now_s = fixed_now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let token = if mode % 2 == 1 {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use hmac::{KeyInit, Mac};
        let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&TOKEN_KEY) else { return };
        mac.update(rest);
        format!("{}.{}", URL_SAFE_NO_PAD.encode(rest), URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    } else {
        let Ok(t) = std::str::from_utf8(rest) else { return };
        t.to_owned()
    };
    for protocol in [Protocol::Hls, Protocol::Dash] {
        let Ok(s) = token::verify(&TOKEN_KEY, &token, protocol, now_s) else { continue };
        assert_eq!(s.protocol, protocol);
        assert!(s.expires_at > now_s);
        let again = token::issue(&TOKEN_KEY, &s);
        assert_eq!(token::verify(&TOKEN_KEY, &again, protocol, now_s).as_ref(), Ok(&s));
        let now_ms = now_s.saturating_mul(1000);
        let _ = crate::streaming::hls::media(&token, &s, &[], 0, false);
        let _ = crate::streaming::dash::manifest(&token, &s, &[], &[], false, now_ms);
        if let (Some(start), Some(end)) = (s.start_ms, s.end_ms) {
            let _ = crate::streaming::session::check_range(start, end, &Limits::default().streaming);
        }
    }
}

/// A datagram (or TCP byte stream) to the TURN listener, through reel's gate.
///
/// The first byte selects: bit 0 sign the message with a valid reel credential, nonce and
/// MESSAGE-INTEGRITY (so the fuzzer reaches the authenticated checks), bit 1 source IPv6.
/// The bytes are also split as a TURN-over-TCP stream ([`crate::signaling::turn::next_tcp_frame`]).
pub fn turn_message(data: &[u8]) {
    use crate::signaling::turn::{Verdict, next_tcp_frame};
    use crate::signaling::turn_policy::{decode_xor_address, denied_by_default};
    let Some((&mode, rest)) = data.split_first() else { return };
    let src = if mode & 2 == 0 {
        SocketAddr::from(([203, 0, 113, 7], 40000))
    } else {
        SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 7], 40000))
    };
    let mut stream = rest;
    while let Ok(Some((len, frame))) = next_tcp_frame(stream) {
        assert!(len >= 4 && len <= frame && frame <= stream.len(), "frame {len}/{frame} of {}", stream.len());
        stream = stream.get(frame..).unwrap_or_default();
    }
    if let Some(a) = decode_xor_address(rest, &[0; 12]) {
        let _ = denied_by_default(a.ip());
    }
    let gate = turn_gate();
    let datagram = if mode & 1 == 1 { sign_stun(gate, src, rest) } else { None };
    let datagram = datagram.as_deref().unwrap_or(rest);
    match gate.decide(src, datagram, fixed_now()) {
        Verdict::Challenge { request, code, .. } => {
            assert!(gate.challenge(src, &request, code, 0).is_some(), "a challenge must build");
        }
        Verdict::Forbidden { request, key, peer } => {
            assert!(!gate.policy.permits(peer));
            assert!(crate::signaling::turn::forbidden(&request, key).is_some(), "a 403 must build");
        }
        Verdict::Pass(_) | Verdict::Drop(_) => {}
    }
}

/// The secret of the fuzz gate's TURN credentials.
const TURN_SECRET: &[u8] = b"fuzz-turn-secret-0123456789";

fn turn_gate() -> &'static crate::signaling::turn::Gate {
    use crate::signaling::credentials::TurnSecret;
    use crate::signaling::turn_policy::{NonceIssuer, PeerPolicy};
    static GATE: OnceLock<crate::signaling::turn::Gate> = OnceLock::new();
    GATE.get_or_init(|| crate::signaling::turn::Gate {
        policy: Arc::new(PeerPolicy::new(Vec::new(), Vec::new())),
        nonces: NonceIssuer::new(),
        secret: Arc::new(TurnSecret::fixed(TURN_SECRET.to_vec())),
    })
}

/// `raw` decoded, with a valid USERNAME, REALM, NONCE and MESSAGE-INTEGRITY appended.
fn sign_stun(gate: &crate::signaling::turn::Gate, src: SocketAddr, raw: &[u8]) -> Option<Vec<u8>> {
    use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
    use stun::integrity::MessageIntegrity;
    use stun::message::{Message, Setter};
    use stun::textattrs::TextAttribute;
    let mut m = Message::new();
    m.raw = raw.to_vec();
    m.decode().ok()?;
    let now = fixed_now();
    let cred =
        gate.secret.issue("arn:aws:kinesisvideo:us-west-2:123456789012:channel/c/1", Duration::from_secs(300), now);
    let now_s = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let realm = crate::signaling::turn::REALM;
    TextAttribute::new(ATTR_USERNAME, cred.username.clone()).add_to(&mut m).ok()?;
    TextAttribute::new(ATTR_REALM, realm.to_owned()).add_to(&mut m).ok()?;
    TextAttribute::new(ATTR_NONCE, gate.nonces.issue(src, now_s)).add_to(&mut m).ok()?;
    let key = turn::auth::generate_auth_key(&cred.username, realm, &cred.password);
    MessageIntegrity(key).add_to(&mut m).ok()?;
    Some(m.raw)
}

/// A JSON request body of an API operation. The first byte picks the operation; the body
/// is parsed as the server does ([`crate::api::body::parse`]) and, where the operation has
/// a pure validation step, validated. An accepted image or notification configuration must
/// be described as one the server accepts again, unchanged.
pub fn api_body(data: &[u8]) {
    use crate::api::body::parse;
    use crate::control::{
        channels, edge, endpoints, image_generation, media_storage, notification, stream_storage, streams, tags,
    };
    let Some((&op, body)) = data.split_first() else { return };
    match op % 36 {
        0 => drop(parse::<channels::CreateInput>(body)),
        1 => drop(parse::<channels::DescribeInput>(body)),
        2 => drop(parse::<channels::ListInput>(body)),
        3 => drop(parse::<channels::UpdateInput>(body)),
        4 => drop(parse::<channels::DeleteInput>(body)),
        5 => drop(parse::<endpoints::SignalingEndpointInput>(body)),
        6 => drop(parse::<endpoints::DataEndpointInput>(body)),
        7 => drop(parse::<media_storage::UpdateInput>(body)),
        8 => drop(parse::<media_storage::DescribeInput>(body)),
        9 => drop(parse::<media_storage::MappedInput>(body)),
        10 => drop(parse::<streams::CreateInput>(body)),
        11 => drop(parse::<streams::StreamRef>(body)),
        12 => drop(parse::<streams::ListInput>(body)),
        13 => drop(parse::<streams::UpdateInput>(body)),
        14 => drop(parse::<streams::DeleteInput>(body)),
        15 => drop(parse::<streams::UpdateDataRetentionInput>(body)),
        16 => drop(parse::<tags::TagResourceInput>(body)),
        17 => drop(parse::<tags::UntagResourceInput>(body)),
        18 => drop(parse::<tags::ListTagsForResourceInput>(body)),
        19 => drop(parse::<tags::TagStreamInput>(body)),
        20 => drop(parse::<tags::UntagStreamInput>(body)),
        21 => drop(parse::<tags::ListTagsForStreamInput>(body)),
        22 | 23 => {
            let Ok(input) = parse::<crate::streaming::session::SessionInput>(body) else { return };
            let protocol = if op % 26 == 22 { Protocol::Hls } else { Protocol::Dash };
            let now_ms = fixed_now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            let limits = Limits::default().streaming;
            if let Ok(s) = crate::streaming::session::validate(&input, protocol, &limits, "arn", now_ms) {
                assert!(u64::from(s.max_results) <= u64::from(limits.max_playlist_fragments));
                if let (Some(a), Some(b)) = (s.start_ms, s.end_ms) {
                    assert!(a <= b, "session range {a}..{b}");
                }
            }
        }
        24 => {
            drop(parse::<crate::streaming::clip::ClipInput>(body));
            use crate::streaming::images::request;
            if let Ok(input) = parse::<request::Input>(body)
                && let Ok(r) = request::parse(&input)
            {
                let (stamps, _) = r.page_timestamps();
                assert!(stamps.len() <= request::MAX_PAGE);
                assert!(stamps.iter().all(|t| (r.start_ms..=r.end_ms).contains(t)), "{stamps:?} outside {r:?}");
            }
        }
        26 => drop(parse::<stream_storage::UpdateInput>(body)),
        27 => {
            if let Ok(c) = parse::<stream_storage::StreamStorageConfiguration>(body) {
                drop(stream_storage::tier(c, "StreamStorageConfiguration"));
            }
        }
        28 => drop(parse::<image_generation::UpdateInput>(body)),
        29 => {
            let Ok(c) = parse::<image_generation::ImageGenerationConfiguration>(body) else { return };
            let Ok(cfg) = image_generation::validate_config(c, "us-west-2") else { return };
            let ms = i64::from(cfg.sampling_interval_ms);
            assert!(
                (image_generation::MIN_SAMPLING_INTERVAL_MS..=image_generation::MAX_SAMPLING_INTERVAL_MS).contains(&ms)
            );
            assert_eq!(cfg.destination_region, "us-west-2");
            let described = serde_json::to_vec(&image_generation::ImageGenerationConfiguration::from(cfg.clone()));
            let again =
                described.ok().and_then(|d| parse(&d).ok()).map(|c| image_generation::validate_config(c, "us-west-2"));
            assert!(
                matches!(again, Some(Ok(ref c)) if *c == cfg),
                "described configuration not accepted again: {again:?}"
            );
        }
        30 => drop(parse::<notification::UpdateInput>(body)),
        31 => {
            let Ok(c) = parse::<notification::NotificationConfiguration>(body) else { return };
            let Ok(cfg) = notification::validate_config(c) else { return };
            let described = serde_json::to_vec(&notification::NotificationConfiguration::from(cfg.clone()));
            let again = described.ok().and_then(|d| parse(&d).ok()).map(notification::validate_config);
            assert!(
                matches!(again, Some(Ok(ref c)) if *c == cfg),
                "described configuration not accepted again: {again:?}"
            );
        }
        32 => drop(parse::<edge::StartUpdateInput>(body)),
        33 => {
            if let Ok(c) = parse::<edge::EdgeConfig>(body) {
                drop(edge::validate_edge_config(c));
            }
        }
        34 => {
            if let Ok(input) = parse::<edge::ListInput>(body) {
                drop(edge::validate_list(&input));
            }
        }
        // The input of the storage, image generation and notification Describe operations
        // and of Describe/DeleteEdgeConfiguration.
        35 => drop(parse::<streams::StreamRef>(body)),
        _ => {
            drop(parse::<crate::playback::get_media::Input>(body));
            drop(parse::<crate::playback::list_fragments::Input>(body));
            drop(parse::<crate::playback::fragment_list::Input>(body));
            drop(serde_json::from_slice::<crate::peer::join_storage_session::Input>(body));
            if let Ok((arn, client_id)) = crate::peer::join_storage_session_as_viewer::parse(body) {
                assert!(crate::peer::join_storage_session::valid_channel_arn(&arn));
                assert!(crate::peer::join_storage_session_as_viewer::valid_client_id(&client_id));
            }
        }
    }
}

/// A PutMedia body: the first byte picks the size of the pieces the rest arrives in (1–256
/// bytes), as the network would split it. The body goes through the streaming Matroska
/// reader and the fragment assembler the way [`crate::put_media::upload`] runs them, twice
/// (in pieces and whole): both runs must agree, and every fragment must read back from the
/// store's format with frames inside its span.
pub fn put_media_body(data: &[u8]) {
    use crate::put_media::assemble::{Assembler, FragmentLimits, Step};
    use crate::put_media::request::TimecodeType;
    use reel_media::mkv::StreamReader;

    let Some((&piece, body)) = data.split_first() else { return };
    let limits = FragmentLimits { max_fragment_bytes: 1 << 20, max_fragment_duration_ms: 10_000, max_tracks: 3 };
    let run = |piece: usize| {
        let mut reader = StreamReader::new(1 << 20);
        let mut assembler = Assembler::new(limits, TimecodeType::Relative, 1_700_000_000_000);
        let mut steps = Vec::new();
        for p in body.chunks(piece) {
            reader.push(p);
            loop {
                match reader.next_event() {
                    Ok(Some(ev)) => match assembler.apply(ev) {
                        Ok(step) => steps.extend(step),
                        Err(f) => return (steps, Some(f)),
                    },
                    Ok(None) => break,
                    Err(e) => return (steps, Some(assembler.reader_failure(&e))),
                }
            }
        }
        match reader.finish() {
            Ok(events) => {
                for ev in events {
                    match assembler.apply(ev) {
                        Ok(step) => steps.extend(step),
                        Err(f) => return (steps, Some(f)),
                    }
                }
                (steps, None)
            }
            Err(e) => (steps, Some(assembler.reader_failure(&e))),
        }
    };
    let pieces = run(usize::from(piece) + 1);
    let whole = run(body.len().max(1));
    assert_eq!(pieces, whole, "the same body in pieces and whole");
    for step in &pieces.0 {
        if let Step::Complete(f) = step {
            let start = i64::try_from(f.producer_ts_ms).unwrap_or(i64::MAX);
            let stored = reel_media::mkv::parse_stored(&f.header, [f.chunk.as_slice()], start)
                .unwrap_or_else(|e| panic!("an assembled fragment does not read back: {e}"));
            for frame in stored.frames {
                let offset = frame.timestamp_ms - start;
                // A block may precede its cluster's timecode (Matroska allows it), never
                // by more than a block offset can say, and never past the duration limit.
                assert!((i64::from(i16::MIN)..=10_000).contains(&offset), "frame {offset} ms into its fragment");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(target: &str, name: &str) -> Vec<u8> {
        let path = format!("{}/fuzz/seeds/{target}/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The configuration seeds are accepted, so the fuzzer starts from inputs that reach
    /// the describe-and-accept-again check.
    #[test]
    fn configuration_seeds_are_accepted_configurations() {
        use crate::api::body::parse;
        use crate::control::{edge, image_generation, notification};
        let body = |name: &str| seed("api_body", name).split_off(1);
        let images = parse(&body("op29")).expect("op29 parses");
        assert!(image_generation::validate_config(images, "us-west-2").is_ok());
        assert!(notification::validate_config(parse(&body("op31")).expect("op31 parses")).is_ok());
        assert!(edge::validate_edge_config(parse(&body("op33")).expect("op33 parses")).is_ok());
        assert!(edge::validate_list(&parse(&body("op34")).expect("op34 parses")).is_ok());
    }

    #[test]
    fn answer_and_candidate_seeds_reach_the_peer_connection() {
        for name in ["answer_raw", "answer_json", "candidate_raw", "candidate_srflx", "candidate_json"] {
            assert!(master_message_applied(&seed("master_message", name)), "{name}");
        }
        assert!(!master_message_applied(&seed("master_message", "offer")));
    }

    /// A master's ice-ufrag at the longest the answer check allows drives the ICE agent
    /// without a panic (its STUN USERNAME `remote:local` fits 128 bytes); one byte more,
    /// which once crashed the agent, never reaches the `Rtc`.
    #[test]
    fn longest_accepted_ice_ufrag_drives_ice_and_a_longer_one_is_refused() {
        let raw = String::from_utf8(seed("master_message", "answer_raw")).expect("utf-8 seed");
        let with_ufrag =
            |n: usize| raw.replace("a=ice-ufrag:abcd", &format!("a=ice-ufrag:{}", "u".repeat(n))).into_bytes();
        let longest = crate::peer::sdp::MAX_ICE_UFRAG;
        assert!(master_message_applied(&with_ufrag(longest)));
        assert!(!master_message_applied(&with_ufrag(longest + 1)));
        assert!(!master_message_applied(&seed("master_message", "crash_long_ice_ufrag")));
    }

    #[test]
    fn signed_turn_seeds_reach_the_peer_policy() {
        use crate::signaling::turn::Verdict;
        let src = SocketAddr::from(([203, 0, 113, 7], 40000));
        let gate = turn_gate();
        let verdict = |name: &str| {
            let data = seed("turn_message", name);
            let signed = sign_stun(gate, src, &data[1..]).expect("signs");
            gate.decide(src, &signed, fixed_now())
        };
        assert!(matches!(verdict("permission_loopback_signed"), Verdict::Forbidden { .. }));
        assert!(matches!(verdict("permission_public_signed"), Verdict::Forbidden { .. }));
        assert!(matches!(verdict("channelbind_signed"), Verdict::Pass(Some(_))));
        assert!(matches!(verdict("allocate_signed"), Verdict::Pass(Some(_))));
        let unsigned = seed("turn_message", "allocate_unauth");
        assert!(matches!(gate.decide(src, &unsigned[1..], fixed_now()), Verdict::Challenge { .. }));
    }

    #[test]
    fn signed_token_seeds_verify() {
        let now_s = fixed_now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        for (name, protocol) in [("signed_hls", Protocol::Hls), ("signed_dash", Protocol::Dash)] {
            let data = seed("session_token", name);
            let s: token::Session = serde_json::from_slice(&data[1..]).expect("seed is a session");
            let t = token::issue(&TOKEN_KEY, &s);
            assert_eq!(token::verify(&TOKEN_KEY, &t, protocol, now_s), Ok(s), "{name}");
        }
    }
}
