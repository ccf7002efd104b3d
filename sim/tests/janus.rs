//! The Janus baseline end to end: Janus (VideoRoom, recording on) started with the
//! generated config, a minimal str0m sendonly H.264 + Opus offerer publishing fixture
//! frames through `Janus::publish`, ICE + DTLS connecting, and `.mjr` recordings growing.
//!
//! Janus skips loopback interfaces when gathering ICE candidates, so the test re-runs
//! itself under `unshare -n` in a private network namespace: `lo` up (Janus's HTTP API on
//! 127.0.0.1) plus a veth pair 198.18.0.1/24 (Janus ICE) ↔ 198.18.0.2/24 (publisher).
//! It fails with the install command when `janus` is not installed or namespaces are unavailable.

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reel_sim::floor::split_access_units;
use reel_sim::janus::{self, Janus};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

const JANUS_IP: &str = "198.18.0.1";
const PUBLISHER_IP: &str = "198.18.0.2";
const INNER_ENV: &str = "REEL_SIM_IN_NETNS";

/// Inside the namespace: bring the links up and run `body`. Outside: re-run exactly `test`
/// under `unshare -n` and assert it passed there.
fn in_netns(test: &str, body: impl FnOnce()) {
    if std::env::var_os(INNER_ENV).is_some() {
        for args in [
            &["link", "set", "lo", "up"][..],
            &["link", "add", "janus0", "type", "veth", "peer", "name", "pub0"],
            &["addr", "add", "198.18.0.1/24", "dev", "janus0"],
            &["addr", "add", "198.18.0.2/24", "dev", "pub0"],
            &["link", "set", "janus0", "up"],
            &["link", "set", "pub0", "up"],
        ] {
            let out = Command::new("ip").args(args).output().expect("run `ip` (iproute2)");
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        // Both veth ends are local here: let Janus's replies in (see the function's doc).
        janus::netns_accept_local().expect("accept_local in the test namespace");
        // veth carrier comes up asynchronously; Janus picks its addresses once at start.
        let up = Instant::now();
        while std::fs::read_to_string("/sys/class/net/janus0/operstate").unwrap_or_default().trim() != "up"
            && up.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        body();
    } else {
        reexec_in_netns(test);
    }
}

/// Runs exactly `test` in a fresh namespace; fails unless it ran and passed there.
fn reexec_in_netns(test: &str) {
    match Command::new("unshare").args(["-n", "true"]).output() {
        Ok(o) if o.status.success() => {}
        other => panic!(
            "{test} needs a private network namespace ({other:?}): run as root with `unshare` (apt-get install util-linux iproute2)"
        ),
    }
    let exe = std::env::current_exe().expect("test executable");
    let mut child = Command::new("unshare")
        .arg("-n")
        .arg("--")
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1", "--include-ignored"])
        .env(INNER_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the test under unshare -n");
    let mut passed = false;
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines().map_while(Result::ok) {
        passed |= line.contains("test result: ok. 1 passed");
        println!("[netns] {line}");
    }
    let status = child.wait().expect("wait");
    assert!(status.success() && passed, "{test} failed inside its network namespace ({status})");
}

#[test]
fn netns_janus_records_a_str0m_publisher() {
    if let Err(why) = janus::installed() {
        panic!("netns_janus_records_a_str0m_publisher needs Janus: {why}; install with: bash tests/e2e/install.sh");
    }
    in_netns("netns_janus_records_a_str0m_publisher", || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(publish_and_record());
    });
}

async fn publish_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let janus = Janus::start(dir.path(), JANUS_IP.parse::<IpAddr>().unwrap()).await.expect("start janus");
    println!("janus pid {} api {}", janus.pid(), janus.api_url());

    // A sendonly H.264 + Opus offerer with one host candidate.
    let socket = tokio::net::UdpSocket::bind((PUBLISHER_IP, 0)).await.unwrap();
    let local = socket.local_addr().unwrap();
    let mut rtc = Rtc::new(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mut api = rtc.sdp_api();
    let vmid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let amid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().expect("an offer");

    let publisher = match janus.publish(&offer.to_sdp_string()).await {
        Ok(p) => p,
        Err(e) => panic!("publish: {e}\njanus log:\n{}", janus.log_tail(40)),
    };
    println!("room {} publisher {}", publisher.room(), publisher.publisher_id());
    let answer = SdpAnswer::from_sdp_string(publisher.answer_sdp()).expect("answer parses");
    rtc.sdp_api().accept_answer(pending, answer).expect("accept answer");

    let h264 = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/test-h264-baseline.h264")).unwrap();
    let frames: Vec<Vec<u8>> = split_access_units(&h264).into_iter().map(<[u8]>::to_vec).collect();
    let opus = opus_packets();

    let deadline = Instant::now() + Duration::from_secs(15);
    let mut connected_at: Option<Instant> = None;
    let (mut video_sent, mut audio_sent) = (0usize, 0usize);
    let mut mid_bytes = None;
    let mut buf = vec![0u8; 2000];
    loop {
        let timeout = loop {
            match rtc.poll_output().expect("rtc") {
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Output::Timeout(t) => break t,
                Output::Event(Event::Connected) => {
                    println!("connected after ICE + DTLS");
                    connected_at.get_or_insert_with(Instant::now);
                }
                Output::Event(Event::IceConnectionStateChange(s)) => println!("publisher ICE: {s:?}"),
                Output::Event(_) => {}
            }
        };
        let now = Instant::now();
        assert!(now < deadline, "no connection / not enough media in 15 s; janus log:\n{}", janus.log_tail(80));
        if let Some(t0) = connected_at {
            let elapsed = now - t0;
            if mid_bytes.is_none() && elapsed >= Duration::from_millis(1500) {
                mid_bytes = Some(janus.recorded_bytes());
            }
            if elapsed >= Duration::from_secs(3) {
                break;
            }
            write_due(
                &mut rtc,
                vmid,
                Codec::H264,
                &frames,
                &mut video_sent,
                elapsed,
                33_333,
                3000,
                Frequency::NINETY_KHZ,
                now,
            );
            write_due(
                &mut rtc,
                amid,
                Codec::Opus,
                &opus,
                &mut audio_sent,
                elapsed,
                20_000,
                960,
                Frequency::FORTY_EIGHT_KHZ,
                now,
            );
        }
        let wake = timeout.min(now + Duration::from_millis(5));
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, source)) = r
                    && let Ok(contents) = buf[..n].try_into()
                {
                    let _ = rtc.handle_input(Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents }));
                }
            }
            () = tokio::time::sleep_until(wake.into()) => {
                let _ = rtc.handle_input(Input::Timeout(Instant::now()));
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let end_bytes = janus.recorded_bytes();
    let mid_bytes = mid_bytes.unwrap_or(0);
    println!(
        "sent {video_sent} frames, {audio_sent} opus packets; .mjr bytes {mid_bytes} at 1.5 s, {end_bytes} at 3 s"
    );
    let files: Vec<String> = std::fs::read_dir(janus.rec_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| format!("{} ({} bytes)", e.file_name().to_string_lossy(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect();
    println!("recordings: {files:?}");
    assert!(files.iter().any(|f| f.contains("video")), "a video recording exists: {files:?}");
    assert!(files.iter().any(|f| f.contains("audio")), "an audio recording exists: {files:?}");
    assert!(mid_bytes > 0 && end_bytes > mid_bytes, "recordings grow while media flows ({mid_bytes} → {end_bytes})");
    // The fixture alone carries ~250 kbps: 1.5 s of it is well above 20 kB.
    assert!(end_bytes - mid_bytes > 20_000, "recordings grew by only {} bytes", end_bytes - mid_bytes);

    // The SRTP profile Janus negotiated (logged at REEL_JANUS_DEBUG_LEVEL ≥ 5).
    for line in janus.log_tail(2000).lines().filter(|l| l.to_ascii_lowercase().contains("srtp")).take(6) {
        println!("janus: {line}");
    }
    publisher.unpublish().await.expect("unpublish");
    janus.stop().expect("stop janus");
}

/// The Opus fixture's packets (`fixtures/test-opus.packets`: u32-BE length + bytes each).
fn opus_packets() -> Vec<Vec<u8>> {
    let data = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/test-opus.packets")).unwrap();
    let mut out = Vec::new();
    let mut rest = &data[..];
    while let [a, b, c, d, tail @ ..] = rest {
        let n = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
        out.push(tail[..n].to_vec());
        rest = &tail[n..];
    }
    assert!(!out.is_empty(), "opus fixture has packets");
    out
}

/// Write every item of `items` (cycled) whose time (`index × step_us`) has come.
#[allow(clippy::too_many_arguments)]
fn write_due(
    rtc: &mut Rtc,
    mid: Mid,
    codec: Codec,
    items: &[Vec<u8>],
    sent: &mut usize,
    elapsed: Duration,
    step_us: u64,
    ticks: u64,
    freq: Frequency,
    now: Instant,
) {
    while Duration::from_micros(*sent as u64 * step_us) <= elapsed {
        let Some(w) = rtc.writer(mid) else { return };
        let Some(pt) = w.payload_params().find(|p| p.spec().codec == codec).map(|p| p.pt()) else {
            panic!("{codec:?} was not negotiated")
        };
        let data = items[*sent % items.len()].clone();
        w.write(pt, now, MediaTime::new(*sent as u64 * ticks, freq), data).expect("write media");
        *sent += 1;
    }
}
