//! A KVS master in Rust (str0m + tokio + tokio-tungstenite): ConnectAsMaster over a
//! presigned WebSocket, JoinStorageSession (SigV4 header-signed), answer the storage
//! peer's offer (sendonly H.264 + Opus), trickle candidates and publish the fixture media
//! in real time. Reused later as the load generator's publisher.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine;
use futures::{SinkExt, StreamExt};
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio_tungstenite::tungstenite::Message;

/// How the master answers (to exercise reel's answer validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerMode {
    /// A normal answer.
    Normal,
    /// The audio codec renamed so the answer carries no Opus.
    WithoutOpus,
    /// A normal answer, then no media at all (idle sessions).
    Silent,
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct MasterReport {
    /// SDP offers received.
    pub offers: usize,
    /// The last offer's SDP.
    pub last_offer: String,
    /// Whether ICE+DTLS connected.
    pub connected: bool,
    /// Video frames and audio packets written.
    pub video_frames: usize,
    pub audio_packets: usize,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn rfc3986(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

fn signing_params<'a>(
    identity: &'a aws_smithy_runtime_api::client::identity::Identity,
    region: &'a str,
    settings: SigningSettings,
) -> aws_sigv4::http_request::SigningParams<'a> {
    v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name("kinesisvideo")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .expect("signing params")
        .into()
}

/// A presigned ConnectAsMaster URL, as the JS SDK builds it.
pub fn presign_master(wss: &str, arn: &str, region: &str, key: (&str, &str)) -> String {
    let base = if wss.ends_with('/') { wss.to_string() } else { format!("{wss}/") };
    let mut url = format!("{base}?X-Amz-ChannelARN={}", rfc3986(arn));
    let identity = aws_credential_types::Credentials::new(key.0, key.1, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(299));
    let params = signing_params(&identity, region, settings);
    let signable = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[])).expect("signable");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    for (name, value) in instructions.params() {
        url.push_str(&format!("&{name}={}", rfc3986(value)));
    }
    url
}

/// `POST <webrtc>/joinStorageSession {"channelArn"}`, SigV4 header-signed; returns
/// (status, body).
pub async fn join_storage_session(webrtc: &str, arn: &str, region: &str, key: (&str, &str)) -> (u16, String) {
    let url = format!("{}/joinStorageSession", webrtc.trim_end_matches('/'));
    let body = serde_json::json!({ "channelArn": arn }).to_string();
    let host = url.split("://").nth(1).and_then(|r| r.split('/').next()).expect("host").to_string();
    let identity = aws_credential_types::Credentials::new(key.0, key.1, None, None, "test").into();
    let params = signing_params(&identity, region, SigningSettings::default());
    let headers = [("host", host.as_str()), ("content-type", "application/json")];
    let signable = SignableRequest::new("POST", &url, headers.iter().copied(), SignableBody::Bytes(body.as_bytes()))
        .expect("signable");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    let mut req = reqwest::Client::new().post(&url).header("content-type", "application/json").body(body);
    for (name, value) in instructions.headers() {
        req = req.header(name, value);
    }
    let res = req.send().await.expect("JoinStorageSession request");
    let status = res.status().as_u16();
    (status, res.text().await.unwrap_or_default())
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A connected master.
pub struct Master {
    ws: Ws,
    pub arn: String,
    webrtc: String,
    region: String,
    key: (String, String),
}

/// Access units of the H.264 fixture (split at AUDs) and the Opus packets.
pub fn fixtures() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let h264 = std::fs::read(root.join("test-h264-baseline.h264")).expect("h264 fixture");
    let aud = [0u8, 0, 0, 1, 9];
    let mut starts: Vec<usize> = h264.windows(5).enumerate().filter(|(_, w)| *w == aud).map(|(i, _)| i).collect();
    starts.push(h264.len());
    let video = starts.windows(2).map(|w| h264[w[0]..w[1]].to_vec()).filter(|v| !v.is_empty()).collect();
    let packets = std::fs::read(root.join("test-opus.packets")).expect("opus fixture");
    let mut audio = Vec::new();
    let mut i = 0;
    while i + 4 <= packets.len() {
        let n = u32::from_be_bytes([packets[i], packets[i + 1], packets[i + 2], packets[i + 3]]) as usize;
        audio.push(packets[i + 4..i + 4 + n].to_vec());
        i += 4 + n;
    }
    (video, audio)
}

impl Master {
    /// ConnectAsMaster.
    pub async fn connect(wss: &str, webrtc: &str, arn: &str, region: &str, key: (&str, &str)) -> Self {
        let url = presign_master(wss, arn, region, key);
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("ConnectAsMaster");
        Self { ws, arn: arn.into(), webrtc: webrtc.into(), region: region.into(), key: (key.0.into(), key.1.into()) }
    }

    /// Calls JoinStorageSession for this master's channel.
    pub async fn join(&self) -> (u16, String) {
        join_storage_session(&self.webrtc, &self.arn, &self.region, (&self.key.0, &self.key.1)).await
    }

    async fn send(&mut self, action: &str, payload: serde_json::Value) {
        let msg = serde_json::json!({ "action": action, "messagePayload": b64(&payload.to_string()) });
        self.ws.send(Message::text(msg.to_string())).await.expect("ws send");
    }

    /// Waits up to `wait` for the next SDP_OFFER; returns its SDP (buffering nothing else).
    pub async fn next_offer(&mut self, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()??.ok()?;
            if let Some((kind, payload)) = parse_event(&msg)
                && kind == "SDP_OFFER"
            {
                return payload["sdp"].as_str().map(str::to_owned);
            }
        }
    }

    /// Answers `offer` and publishes the fixtures for `duration` (media starts once connected).
    pub async fn answer_and_publish(&mut self, offer: &str, mode: AnswerMode, duration: Duration) -> MasterReport {
        let mut report = MasterReport { offers: 1, last_offer: offer.to_string(), ..Default::default() };
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("udp");
        let local = socket.local_addr().expect("addr");
        let mut rtc = Rtc::new(Instant::now());
        let cand = Candidate::host(local, "udp").expect("candidate");
        rtc.add_local_candidate(cand.clone());
        let offer = SdpOffer::from_sdp_string(offer).expect("offer parses");
        let answer = rtc.sdp_api().accept_offer(offer).expect("accept offer");
        let mut sdp = answer.to_sdp_string();
        if mode == AnswerMode::WithoutOpus {
            sdp = sdp.replace("opus/48000/2", "PCMU/8000");
        }
        self.send("SDP_ANSWER", serde_json::json!({ "type": "answer", "sdp": sdp })).await;
        self.send(
            "ICE_CANDIDATE",
            serde_json::json!({ "candidate": cand.to_sdp_string(), "sdpMid": "0", "sdpMLineIndex": 0 }),
        )
        .await;
        let (video, audio) = fixtures();
        let (mut vmid, mut amid): (Option<Mid>, Option<Mid>) = (None, None);
        let mut started: Option<Instant> = None;
        let end = Instant::now() + duration;
        let mut buf = vec![0u8; 2000];
        loop {
            // Drain str0m.
            let timeout = loop {
                match rtc.poll_output() {
                    Ok(Output::Transmit(t)) => {
                        let _ = socket.send_to(&t.contents, t.destination).await;
                    }
                    Ok(Output::Timeout(t)) => break t,
                    Ok(Output::Event(ev)) => match ev {
                        Event::Connected => {
                            report.connected = true;
                            started.get_or_insert_with(Instant::now);
                        }
                        Event::MediaAdded(m) => match m.kind {
                            MediaKind::Video => vmid = Some(m.mid),
                            MediaKind::Audio => amid = Some(m.mid),
                        },
                        _ => {}
                    },
                    Err(e) => panic!("master rtc: {e}"),
                }
            };
            let now = Instant::now();
            if now >= end || !rtc.is_alive() {
                break;
            }
            // Publish what is due.
            if let (Some(t0), Some(vm), Some(am), false) = (started, vmid, amid, mode == AnswerMode::Silent) {
                let elapsed = now.duration_since(t0);
                while report.video_frames < video.len()
                    && Duration::from_micros(report.video_frames as u64 * 33_333) <= elapsed
                {
                    let i = report.video_frames;
                    if let Some(w) = rtc.writer(vm) {
                        let pt = w.payload_params().find(|p| p.spec().codec == Codec::H264).map(|p| p.pt());
                        if let Some(pt) = pt {
                            let ts = MediaTime::new(i as u64 * 3000, Frequency::NINETY_KHZ);
                            let _ = w.write(pt, now, ts, video[i].clone());
                        }
                    }
                    report.video_frames += 1;
                }
                while report.audio_packets < audio.len()
                    && Duration::from_millis(report.audio_packets as u64 * 20) <= elapsed
                {
                    let i = report.audio_packets;
                    if let Some(w) = rtc.writer(am) {
                        let pt = w.payload_params().find(|p| p.spec().codec == Codec::Opus).map(|p| p.pt());
                        if let Some(pt) = pt {
                            let ts = MediaTime::new(i as u64 * 960, Frequency::FORTY_EIGHT_KHZ);
                            let _ = w.write(pt, now, ts, audio[i].clone());
                        }
                    }
                    report.audio_packets += 1;
                }
                // Loop the clip isn't needed for ≤ 6 s.
            }
            let wake = timeout.min(now + Duration::from_millis(5)).min(end);
            let sleep = tokio::time::sleep_until(wake.into());
            tokio::select! {
                r = socket.recv_from(&mut buf) => {
                    if let Ok((n, source)) = r
                        && let Ok(contents) = buf[..n].try_into()
                    {
                        let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents });
                        let _ = rtc.handle_input(input);
                    }
                }
                msg = self.ws.next() => {
                    if let Some(Ok(msg)) = msg
                        && let Some((kind, payload)) = parse_event(&msg)
                    {
                        if kind == "ICE_CANDIDATE" {
                            if let Some(c) = payload["candidate"].as_str().and_then(|c| Candidate::from_sdp_string(c).ok()) {
                                rtc.add_remote_candidate(c);
                            }
                        } else if kind == "SDP_OFFER" {
                            report.offers += 1;
                        }
                    }
                }
                () = sleep => {
                    let _ = rtc.handle_input(Input::Timeout(Instant::now()));
                }
            }
        }
        rtc.disconnect();
        report
    }

    /// Closes the WebSocket (reel sees the master disconnect).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// (messageType, decoded payload JSON) of a service event.
fn parse_event(msg: &Message) -> Option<(String, serde_json::Value)> {
    let text = msg.to_text().ok()?;
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let kind = v["messageType"].as_str()?.to_string();
    let payload = base64::engine::general_purpose::STANDARD.decode(v["messagePayload"].as_str()?).ok()?;
    Some((kind, serde_json::from_slice(&payload).ok()?))
}

/// Unused address helper kept for the load generator.
pub fn any_local() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}
