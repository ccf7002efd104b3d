//! A PutMedia producer as the KVS producer SDKs are on the wire, for tests: the C
//! producer's request (curl's chunked HTTP/1.1, the C signer's header set and empty-body
//! payload hash, signed by the official `aws-sigv4` crate), the Java signers, and the PIC's
//! Matroska (unknown-size Segment and Clusters, 8-byte block sizes, the end-of-session tag).
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use reel_media::fixture::FixtureFragment;
use reel_media::mkv::{ebml, id};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// What the KVS C producer signs (`IS_CANONICAL_HEADER_NAME` leaves out content-type,
/// content-length, the token and Authorization).
const C_SIGNED_HEADERS: &str = "connection;host;transfer-encoding;user-agent;x-amz-date;\
x-amzn-fragment-acknowledgment-required;x-amzn-fragment-timecode-type;x-amzn-producer-start-timestamp;\
x-amzn-stream-name";

/// How a producer signs its streamed body.
#[derive(Clone, Copy, Debug)]
pub enum Signer {
    /// The C/C++ producers: SHA-256 of the empty string, no `x-amz-content-sha256`.
    C,
    /// The Java producer: `UNSIGNED-PAYLOAD`, its header added after signing.
    JavaProducer,
    /// The AWS SDK for Java: `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, header signed.
    JavaSdk,
}

/// A PutMedia request's `x-amzn-*` headers.
pub struct Request<'a> {
    pub stream_name: &'a str,
    pub timecode_type: &'a str,
    pub start: &'a str,
    pub signer: Signer,
    pub key_id: &'a str,
    pub secret: &'a str,
    pub region: &'a str,
    /// `x-amzn-fragment-acknowledgment-required`.
    pub acks: bool,
}

/// The request head of a PutMedia, signed as the producer does it.
pub fn request_head(url: &str, r: &Request<'_>) -> String {
    let mut head = String::from("POST /putMedia HTTP/1.1\r\n");
    for (k, v) in request_headers(url, r) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// The headers of a PutMedia (`host` without the port, as the C signer sends it), signed as
/// the producer does it, then the unsigned ones curl and the producers add.
pub fn request_headers(url: &str, r: &Request<'_>) -> Vec<(String, String)> {
    let host = "127.0.0.1";
    let mut headers = vec![
        ("connection", "keep-alive".to_string()),
        ("host", host.to_string()),
        ("transfer-encoding", "chunked".to_string()),
        ("user-agent", "AWS-SDK-KVS-CPP-CLIENT/3.4.2/1.5.3 GCC/12.2.0 Linux/6.1.0 x86_64".to_string()),
        ("x-amzn-fragment-acknowledgment-required", if r.acks { "1" } else { "0" }.to_string()),
        ("x-amzn-fragment-timecode-type", r.timecode_type.to_string()),
        ("x-amzn-producer-start-timestamp", r.start.to_string()),
        ("x-amzn-stream-name", r.stream_name.to_string()),
    ];
    let payload = match r.signer {
        Signer::C => EMPTY_SHA256,
        Signer::JavaProducer => "UNSIGNED-PAYLOAD",
        Signer::JavaSdk => {
            headers.push(("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD".into()));
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
        }
    };
    let identity = aws_credential_types::Credentials::new(r.key_id, r.secret, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.excluded_headers = Some(Vec::new());
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(r.region)
        .name("kinesisvideo")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .expect("signing params")
        .into();
    let signable = SignableRequest::new(
        "POST",
        format!("{url}/putMedia"),
        headers.iter().map(|(k, v)| (*k, v.as_str())),
        SignableBody::Precomputed(payload.to_string()),
    )
    .expect("signable");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    let mut out: Vec<(String, String)> = headers.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    out.extend(instructions.headers().map(|(k, v)| (k.to_owned(), v.to_owned())));
    if let Signer::C = r.signer {
        let auth = out.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.clone()).expect("authorization");
        assert!(auth.contains(&format!("SignedHeaders={C_SIGNED_HEADERS},")), "{auth}");
    }
    // Sent but not signed, as by the producers and curl.
    for (k, v) in [("content-type", "application/json"), ("accept", "*/*"), ("expect", "100-continue")] {
        out.push((k.into(), v.into()));
    }
    if let Signer::JavaProducer = r.signer {
        out.push(("x-amz-content-sha256".into(), "UNSIGNED-PAYLOAD".into()));
    }
    out
}

/// A PutMedia connection: the body goes out chunked, the response comes back.
pub struct Upload {
    tx: OwnedWriteHalf,
    rx: OwnedReadHalf,
    buf: Vec<u8>,
}

impl Upload {
    pub async fn open(url: &str, r: &Request<'_>) -> Self {
        let addr = url.trim_start_matches("http://");
        let sock = TcpStream::connect(addr).await.expect("connect");
        let (rx, mut tx) = sock.into_split();
        tx.write_all(request_head(url, r).as_bytes()).await.expect("head");
        Self { tx, rx, buf: Vec::new() }
    }

    /// Sends `data` as HTTP chunks of at most `piece` bytes.
    pub async fn send(&mut self, data: &[u8], piece: usize) {
        for p in data.chunks(piece) {
            self.tx.write_all(format!("{:x}\r\n", p.len()).as_bytes()).await.expect("chunk size");
            self.tx.write_all(p).await.expect("chunk");
            self.tx.write_all(b"\r\n").await.expect("chunk end");
        }
    }

    /// Ends the body (the terminating chunk).
    pub async fn end(&mut self) {
        let _ = self.tx.write_all(b"0\r\n\r\n").await;
    }

    async fn fill(&mut self) -> bool {
        let mut b = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(20), self.rx.read(&mut b)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&b[..n]);
                true
            }
            Ok(_) => false,
            Err(_) => panic!("no response within 20 s; so far: {:?}", String::from_utf8_lossy(&self.buf)),
        }
    }

    /// The response status and headers (skipping a `100 Continue`).
    pub async fn status(&mut self) -> (u16, String) {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                self.buf.drain(..end + 4);
                let code: u16 = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status code");
                if code == 100 {
                    continue;
                }
                return (code, head);
            }
            assert!(self.fill().await, "connection closed before a response");
        }
    }

    /// The next HTTP chunk of the response body; `None` at its end.
    pub async fn chunk(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(line_end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let size = usize::from_str_radix(String::from_utf8_lossy(&self.buf[..line_end]).trim(), 16)
                    .expect("chunk size");
                if self.buf.len() >= line_end + 2 + size + 2 {
                    let data = self.buf[line_end + 2..line_end + 2 + size].to_vec();
                    self.buf.drain(..line_end + 2 + size + 2);
                    return (size > 0).then_some(data);
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next acknowledgement; each arrives as one chunk holding one JSON line.
    pub async fn ack(&mut self) -> Option<Value> {
        let chunk = self.chunk().await?;
        assert!(chunk.len() <= 1024, "the C producer reads acknowledgements of at most 1024 bytes");
        assert_eq!(chunk.last(), Some(&b'\n'), "one line per acknowledgement");
        Some(serde_json::from_slice(&chunk).expect("ack JSON"))
    }

    /// Acknowledgements until `n` PERSISTED ones arrived (IDLE ones left out).
    pub async fn acks_until_persisted(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.iter().filter(|a: &&Value| a["EventType"] == "PERSISTED").count() < n {
            let a = self.ack().await.unwrap_or_else(|| panic!("body ended; acks so far: {out:?}"));
            if a["EventType"] != "IDLE" {
                out.push(a);
            }
        }
        out
    }
}

/// The body the KVS PIC writes for these fragments, each fragment's Cluster `Timecode`
/// given by `timecode`: EBML header, unknown-size (1-byte 0xFF) Segment, Info with a 1 ms
/// TimecodeScale, Tracks, then per fragment an unknown-size Cluster with an 8-byte Timecode,
/// Position 0 and SimpleBlocks with 8-byte sizes; the end-of-session tag after the last.
pub fn pic_stream(fragments: &[FixtureFragment], timecode: impl Fn(&FixtureFragment) -> u64) -> Vec<u8> {
    let mut out = vec![
        0x1A, 0x45, 0xDF, 0xA3, 0xA3, 0x42, 0x86, 0x81, 0x01, 0x42, 0xF7, 0x81, 0x01, 0x42, 0xF2, 0x81, 0x04, 0x42,
        0xF3, 0x81, 0x08, 0x42, 0x82, 0x88,
    ];
    out.extend_from_slice(b"matroska");
    out.extend_from_slice(&[0x42, 0x87, 0x81, 0x02, 0x42, 0x85, 0x81, 0x02]);
    out.extend_from_slice(&[0x18, 0x53, 0x80, 0x67, 0xFF]);
    ebml::write_master(&mut out, id::INFO, |o| {
        ebml::write_bytes(o, 0x73A4, &[7u8; 16]);
        ebml::write_id(o, id::TIMECODE_SCALE);
        o.push(0x88);
        o.extend_from_slice(&1_000_000u64.to_be_bytes());
        ebml::write_str(o, 0x7BA9, "Kinesis Video SDK");
        ebml::write_str(o, id::MUXING_APP, "Kinesis Video SDK 1.1.0");
        ebml::write_str(o, id::WRITING_APP, "Kinesis Video SDK 1.1.0");
    });
    out.extend_from_slice(&fragments[0].header);
    for f in fragments {
        out.extend_from_slice(&[0x1F, 0x43, 0xB6, 0x75, 0xFF, 0xE7, 0x88]);
        out.extend_from_slice(&timecode(f).to_be_bytes());
        out.extend_from_slice(&[0xA7, 0x81, 0x00]);
        for (_, chunk) in &f.chunks {
            for block in ebml::children(chunk) {
                let (bid, payload) = block.expect("fixture block");
                assert_eq!(bid, id::SIMPLE_BLOCK);
                out.push(0xA3);
                out.push(0x01);
                out.extend_from_slice(&(payload.len() as u64).to_be_bytes()[1..]);
                out.extend_from_slice(payload);
            }
        }
    }
    ebml::write_master(&mut out, id::TAGS, |o| {
        ebml::write_master(o, id::TAG, |t| {
            ebml::write_master(t, id::SIMPLE_TAG, |s| {
                ebml::write_str(s, id::TAG_NAME, "AWS_KINESISVIDEO_END_OF_FRAGMENT");
                ebml::write_str(s, id::TAG_STRING, "");
            })
        })
    });
    out
}
