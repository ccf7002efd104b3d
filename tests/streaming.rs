//! In-process end-to-end tests of HLS, DASH and GetClip: the real router on a loopback
//! socket, the real SQLite metadata and media store, a stream filled with the fixture clip
//! (H.264 + Opus, 6 s) run through reel's fragmenter (and one with H.264 + AAC as a KVS
//! producer sends it, cut from an ffmpeg-muxed Matroska file), the official
//! `aws-sdk-kinesisvideoarchivedmedia` client for the signed calls, and `ffprobe`/`ffmpeg`
//! as ordinary players (required: a missing tool fails with the command that installs it).

#[path = "common/browser.rs"]
mod browser;
#[path = "common/selectors.rs"]
mod selectors;

use std::net::SocketAddr;
use std::path::Path;

use aws_sdk_kinesisvideoarchivedmedia as am;

use reel::meta::StreamRecord;
use reel::server::AppState;
use reel::testkit::{self, probe};
use reel_media::fixture::FixtureFragment;

const KEY_ID: &str = "AKIAREELUNITTEST0001";
const SECRET: &str = "secret";
/// A key whose policy allows GetClip only.
const CLIP_ONLY: &str = "AKIAREELCLIPONLY0001";
const STREAM: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:stream/cam/1700000000000";
const NO_RETENTION: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:stream/nokeep/1700000000001";
/// A stream holding H.264 + AAC LC (`aaccam`), and one whose AAC is explicit HE-AAC (`hecam`).
const AAC_STREAM: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:stream/aaccam/1700000000003";
const HE_AAC_STREAM: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:stream/hecam/1700000000004";
/// A stream holding H.265 video (`hevccam`).
const HEVC_STREAM: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:stream/hevccam/1700000000005";

struct Harness {
    addr: SocketAddr,
    state: AppState,
    dir: tempfile::TempDir,
}

fn record(name: &str, arn: &str, hours: u32) -> StreamRecord {
    StreamRecord {
        name: name.into(),
        arn: arn.into(),
        device_name: None,
        media_type: Some("video/h264,audio/opus".into()),
        kms_key_id: None,
        status: "ACTIVE".into(),
        creation_time: 1_700_000_000.0,
        data_retention_in_hours: hours,
        default_storage_tier: reel::meta::StorageTier::Hot,
        version: "1".into(),
    }
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = reel::testkit::loopback_config(dir.path()).expect("config");
    let file = dir.path().join("credentials.toml");
    std::fs::write(
        &file,
        format!(
            "[[key]]\naccess_key_id = \"{CLIP_ONLY}\"\nsecret_access_key = \"{SECRET}\"\n\
             [[key.statement]]\neffect = \"Allow\"\naction = \"kinesisvideo:GetClip\"\nresource = \"*\"\n"
        ),
    )
    .expect("credentials file");
    config.root_key = Some((KEY_ID.into(), SECRET.into()));
    config.credentials_file = Some(file);
    let (addr, state) = reel::server::spawn(config).await.expect("in-process server");
    state.core.meta.create_stream(&record("cam", STREAM, 24), &Default::default(), 100).await.expect("stream");
    state.core.meta.create_stream(&record("nokeep", NO_RETENTION, 0), &Default::default(), 100).await.expect("stream");
    state.core.store.create_stream(STREAM, 24).await.expect("store stream");
    Harness { addr, state, dir }
}

fn client(h: &Harness) -> am::Client {
    client_as(h, KEY_ID)
}

fn client_as(h: &Harness, key_id: &str) -> am::Client {
    am::Client::from_conf(
        am::Config::builder()
            .behavior_version(am::config::BehaviorVersion::latest())
            .region(am::config::Region::new("us-west-2"))
            .endpoint_url(format!("http://{}", h.addr))
            .credentials_provider(aws_credential_types::Credentials::new(key_id, SECRET, None, None, "test"))
            .build(),
    )
}

/// The fixture clip (6 s, 30 fps H.264 + 20 ms Opus) fragmented as if it arrived from `t0_us`.
fn fragment_fixture(t0_us: i64) -> Vec<FixtureFragment> {
    testkit::fixture_fragments(t0_us).expect("fixture files")
}

/// Appends the fixture clip to the stream, starting `ago_ms` before now; returns the
/// producer time range it covers.
async fn fill(h: &Harness, ago_ms: u64) -> (u64, u64) {
    fill_into(h, STREAM, ago_ms).await
}

/// [`fill`] for any stream of the store.
async fn fill_into(h: &Harness, arn: &str, ago_ms: u64) -> (u64, u64) {
    let t0_us = (reel::streaming::now_ms() - ago_ms) as i64 * 1000;
    let frags = fragment_fixture(t0_us);
    assert!(frags.len() >= 2, "fixture gives several fragments");
    let stream = h.state.core.store.stream(arn).expect("stream");
    for f in &frags {
        testkit::append(&stream, f).await.expect("append fragment");
    }
    let last = frags.last().expect("frags");
    (frags[0].producer_ts_ms, last.producer_ts_ms + u64::from(last.duration_ms))
}

use selectors::secs;

fn require_tools() {
    probe::require(&["ffmpeg", "ffprobe"]);
}

/// Decodes `input` with ffmpeg: (errors it reported, duration from ffprobe).
async fn play(input: String) -> (String, f64) {
    tokio::task::spawn_blocking(move || {
        let errors = probe::decode_errors(&input).expect("ffmpeg");
        let duration = probe::duration(&input).expect("ffprobe duration");
        eprintln!("ffprobe: {duration} s for {}", input.split('?').next().unwrap_or_default());
        (errors, duration)
    })
    .await
    .expect("join")
}

/// Streams ffprobe reports: `codec_name` per stream.
async fn codecs(input: String) -> Vec<String> {
    tokio::task::spawn_blocking(move || probe::streams(&input).expect("ffprobe").codecs).await.expect("join")
}

/// An on-demand DASH session of `stream` over producer times `start..end`: its URL and MPD.
async fn dash_session(c: &am::Client, stream: &str, start: u64, end: u64) -> (String, String) {
    let url = c
        .get_dash_streaming_session_url()
        .stream_name(stream)
        .playback_mode(am::types::DashPlaybackMode::OnDemand)
        .dash_fragment_selector(selectors::dash(start, end))
        .send()
        .await
        .expect("GetDASHStreamingSessionURL")
        .dash_streaming_session_url
        .expect("url");
    let mpd = reqwest::get(&url).await.expect("mpd").text().await.expect("text");
    (url, mpd)
}

/// GetClip of `stream` over producer times `start..end`, written to `file` in the
/// harness's directory; returns its path.
async fn clip_file(h: &Harness, c: &am::Client, stream: &str, start: u64, end: u64, file: &str) -> String {
    let clip = c
        .get_clip()
        .stream_name(stream)
        .clip_fragment_selector(selectors::clip(start, end))
        .send()
        .await
        .expect("GetClip");
    let bytes = clip.payload.collect().await.expect("body").into_bytes();
    let path = h.dir.path().join(file);
    std::fs::write(&path, &bytes).expect("write clip");
    path.to_string_lossy().to_string()
}

async fn hls_url(c: &am::Client, format: am::types::ContainerFormat, start: u64, end: u64) -> String {
    hls_session(c, "cam", format, start, end).await.expect("GetHLSStreamingSessionURL")
}

/// An ON_DEMAND HLS session of the stream `name` over a producer time range: its URL.
async fn hls_session(
    c: &am::Client,
    name: &str,
    format: am::types::ContainerFormat,
    start: u64,
    end: u64,
) -> Result<String, am::error::SdkError<am::operation::get_hls_streaming_session_url::GetHLSStreamingSessionURLError>> {
    let out = c
        .get_hls_streaming_session_url()
        .stream_name(name)
        .playback_mode(am::types::HlsPlaybackMode::OnDemand)
        .container_format(format)
        .display_fragment_timestamp(am::types::HlsDisplayFragmentTimestamp::Always)
        .hls_fragment_selector(selectors::hls(start, end))
        .send()
        .await?;
    Ok(out.hls_streaming_session_url.expect("url"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_on_demand_fmp4_and_ts_play_in_ffmpeg() {
    let h = harness().await;
    let (start, end) = fill(&h, 20_000).await;
    let c = client(&h);
    let url = hls_url(&c, am::types::ContainerFormat::FragmentedMp4, start, end).await;
    assert!(url.starts_with(&format!("http://{}/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=", h.addr)), "{url}");
    let master = reqwest::get(&url).await.expect("master").text().await.expect("text");
    assert!(master.contains("CODECS=\"avc1.42e01f,opus\""), "{master}");
    assert!(master.contains("RESOLUTION=640x360"), "{master}");
    let media_url = url.replace("getHLSMasterPlaylist", "getHLSMediaPlaylist");
    let media = reqwest::get(&media_url).await.expect("media").text().await.expect("text");
    for needle in
        ["#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:", "#EXT-X-MAP:URI=", "#EXT-X-PROGRAM-DATE-TIME:", "#EXT-X-ENDLIST"]
    {
        assert!(media.contains(needle), "{needle} missing in\n{media}");
    }
    require_tools();
    let expected = (end - start) as f64 / 1000.0;
    let (errors, duration) = play(url.clone()).await;
    assert!(errors.is_empty(), "ffmpeg errors on HLS fMP4: {errors}");
    assert!((duration - expected).abs() <= 0.5, "HLS fMP4 duration {duration}, expected {expected}");
    let found = codecs(url).await;
    assert!(found.contains(&"h264".to_string()) && found.contains(&"opus".to_string()), "{found:?}");

    let ts = hls_url(&c, am::types::ContainerFormat::MpegTs, start, end).await;
    let (errors, duration) = play(ts.clone()).await;
    assert!(errors.is_empty(), "ffmpeg errors on HLS TS: {errors}");
    assert!((duration - expected).abs() <= 0.5, "HLS TS duration {duration}, expected {expected}");
    let found = codecs(ts).await;
    assert!(found.contains(&"h264".to_string()) && found.contains(&"opus".to_string()), "{found:?}");
    drop(h.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dash_and_clip_play_in_ffmpeg() {
    let h = harness().await;
    let (start, end) = fill(&h, 20_000).await;
    let c = client(&h);
    let url = c
        .get_dash_streaming_session_url()
        .stream_arn(STREAM)
        .playback_mode(am::types::DashPlaybackMode::OnDemand)
        .display_fragment_number(am::types::DashDisplayFragmentNumber::Always)
        .display_fragment_timestamp(am::types::DashDisplayFragmentTimestamp::Always)
        .dash_fragment_selector(selectors::dash(start, end))
        .send()
        .await
        .expect("GetDASHStreamingSessionURL")
        .dash_streaming_session_url
        .expect("url");
    assert!(url.contains("/dash/v1/getDASHManifest.mpd?SessionToken="), "{url}");
    let mpd = reqwest::get(&url).await.expect("mpd").text().await.expect("text");
    assert!(mpd.contains("kvs:fn=\"") && mpd.contains("kvs:ts=\"") && mpd.contains("<SegmentTimeline>"), "{mpd}");

    let clip = c
        .get_clip()
        .stream_name("cam")
        .clip_fragment_selector(selectors::clip(start, end))
        .send()
        .await
        .expect("GetClip");
    assert_eq!(clip.content_type.as_deref(), Some("video/mp4"));
    let bytes = clip.payload.collect().await.expect("body").into_bytes();
    assert_eq!(&bytes[4..8], b"ftyp");
    let moov = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    assert_eq!(&bytes[moov + 4..moov + 8], b"moov", "moov right after ftyp (faststart)");
    let path = h.dir.path().join("clip.mp4");
    std::fs::write(&path, &bytes).expect("write clip");
    require_tools();
    let expected = (end - start) as f64 / 1000.0;
    let (errors, duration) = play(url).await;
    assert!(errors.is_empty(), "ffmpeg errors on DASH: {errors}");
    assert!((duration - expected).abs() <= 0.5, "DASH duration {duration}, expected {expected}");
    let clip_path = path.to_string_lossy().to_string();
    let (errors, duration) = play(clip_path.clone()).await;
    assert!(errors.is_empty(), "ffmpeg errors on the clip: {errors}");
    assert!((duration - expected).abs() <= 0.5, "clip duration {duration}, expected {expected}");
    let found = codecs(clip_path).await;
    assert_eq!(found, vec!["h264".to_string(), "opus".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_playlist_follows_the_tail() {
    let h = harness().await;
    let c = client(&h);
    let live = || async {
        c.get_hls_streaming_session_url()
            .stream_name("cam")
            .playback_mode(am::types::HlsPlaybackMode::Live)
            .max_media_playlist_fragment_results(3)
            .send()
            .await
    };
    // Nothing ingested yet: no fragments in the last 30 s.
    let err = live().await.expect_err("empty stream");
    assert_eq!(err.as_service_error().and_then(|e| e.meta().code()), Some("ResourceNotFoundException"));
    fill(&h, 14_000).await;
    let url = live().await.expect("live session").hls_streaming_session_url.expect("url");
    let media_url = url.replace("getHLSMasterPlaylist", "getHLSMediaPlaylist");
    let before = reqwest::get(&media_url).await.expect("media").text().await.expect("text");
    assert!(!before.contains("#EXT-X-ENDLIST"), "{before}");
    let count = |p: &str| p.lines().filter(|l| l.starts_with("#EXTINF")).count();
    assert!(count(&before) <= 3 && count(&before) >= 1, "{before}");
    // Another stream ingesting at the same time takes fragment numbers in between.
    let other = "arn:aws:kinesisvideo:us-west-2:123456789012:stream/other/1700000000002";
    h.state.core.store.create_stream(other, 1).await.expect("other stream");
    let shown = count(&before) as u64;
    let total_before = h.state.core.store.stream(STREAM).expect("s").latest_fragments(1000).len() as u64;
    fill_into(&h, other, 7_000).await;
    fill(&h, 7_000).await;
    let total_after = h.state.core.store.stream(STREAM).expect("s").latest_fragments(1000).len() as u64;
    let after = reqwest::get(&media_url).await.expect("media").text().await.expect("text");
    let seq = |p: &str| {
        p.lines()
            .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
            .and_then(|v| v.parse::<u64>().ok())
            .expect("seq")
    };
    assert_eq!(seq(&before), 0, "{before}");
    assert_eq!(
        seq(&after),
        (total_after - 3) - (total_before - shown),
        "the sequence advances by one per fragment the window moved:\n{before}\n{after}"
    );
    assert_eq!(count(&after), 3, "{after}");
    require_tools();
    // The newest fragment of the live playlist decodes.
    let newest = after.lines().rev().find(|l| l.starts_with("getMP4MediaFragment")).expect("segment");
    let init = after.lines().find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\"")).expect("map").trim_end_matches('"');
    let base = format!("http://{}/hls/v1/", h.addr);
    let mut file = reqwest::get(format!("{base}{init}")).await.expect("init").bytes().await.expect("b").to_vec();
    file.extend_from_slice(&reqwest::get(format!("{base}{newest}")).await.expect("seg").bytes().await.expect("b"));
    let path = h.dir.path().join("live.mp4");
    std::fs::write(&path, file).expect("write");
    let (errors, duration) = play(path.to_string_lossy().to_string()).await;
    assert!(errors.is_empty(), "{errors}");
    assert!(duration > 0.5, "{duration}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_serves_only_its_own_range() {
    let h = harness().await;
    fill(&h, 20_000).await;
    let frags = h.state.core.store.stream(STREAM).expect("stream").latest_fragments(100);
    assert!(frags.len() >= 3, "fixture gives several fragments");
    // An ON_DEMAND session for the second fragment only.
    let inside = &frags[1];
    let c = client(&h);
    let url =
        hls_url(&c, am::types::ContainerFormat::FragmentedMp4, inside.producer_ts_ms, inside.producer_ts_ms).await;
    let token = url.split_once("SessionToken=").expect("token").1;
    let get = |resource: &str, number: &reel_storage::FragmentNumber| {
        let url = format!("http://{}/hls/v1/{resource}?FragmentNumber={number}&SessionToken={token}", h.addr);
        async move {
            let res = reqwest::get(&url).await.expect("sub-resource");
            let code = res.headers().get("x-amzn-ErrorType").map(|v| v.to_str().unwrap_or_default().to_owned());
            (res.status().as_u16(), code)
        }
    };
    for resource in ["getMP4MediaFragment.mp4", "getMP4InitFragment.mp4", "getTSFragment.ts"] {
        assert_eq!(get(resource, &inside.number).await.0, 200, "{resource} of the session's fragment");
        for outside in [&frags[0], &frags[2], frags.last().expect("last")] {
            assert_eq!(
                get(resource, &outside.number).await,
                (404, Some("ResourceNotFoundException".to_owned())),
                "{resource} of fragment {} outside the session's range",
                outside.number
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_tokens_and_errors() {
    let h = harness().await;
    let (start, end) = fill(&h, 20_000).await;
    let c = client(&h);
    let url = hls_url(&c, am::types::ContainerFormat::FragmentedMp4, start, end).await;
    // Forged: flip a character of the signature.
    let mut forged = url.clone();
    let last = forged.pop().expect("char");
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let res = reqwest::get(&forged).await.expect("forged");
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["x-amzn-ErrorType"], "NotAuthorizedException");
    // Expired: a correctly signed token whose expiry has passed.
    let key = reel::streaming::token::key_for(h.dir.path()).expect("key");
    let token = url.split_once("SessionToken=").expect("token").1;
    let body = token.split_once('.').expect("dot").0;
    use base64::Engine;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body).expect("b64");
    let mut session: reel::streaming::token::Session = serde_json::from_slice(&json).expect("json");
    session.expires_at = reel::streaming::now_ms() / 1000 - 1;
    let expired = reel::streaming::token::issue(&key, &session);
    let res = reqwest::get(format!("http://{}/hls/v1/getHLSMediaPlaylist.m3u8?SessionToken={expired}", h.addr))
        .await
        .expect("expired");
    assert_eq!(res.status(), 401);
    assert!(res.text().await.expect("text").contains("expired"));
    // A DASH token is not an HLS token.
    session.protocol = reel::streaming::token::Protocol::Dash;
    session.expires_at += 600;
    let dash = reel::streaming::token::issue(&key, &session);
    let res = reqwest::get(format!("http://{}/hls/v1/getHLSMediaPlaylist.m3u8?SessionToken={dash}", h.addr))
        .await
        .expect("dash");
    assert_eq!(res.status(), 401);
    // The key file is private.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(h.dir.path().join(reel::streaming::token::KEY_FILE)).expect("key file").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // LIVE_REPLAY from the first fragment advances in real time from there: right after
    // issue it shows the first fragment only, and no ENDLIST.
    let replay = c
        .get_hls_streaming_session_url()
        .stream_name("cam")
        .playback_mode(am::types::HlsPlaybackMode::LiveReplay)
        .hls_fragment_selector(
            am::types::HlsFragmentSelector::builder()
                .fragment_selector_type(am::types::HlsFragmentSelectorType::ProducerTimestamp)
                .timestamp_range(am::types::HlsTimestampRange::builder().start_timestamp(secs(start)).build())
                .build(),
        )
        .send()
        .await
        .expect("LIVE_REPLAY")
        .hls_streaming_session_url
        .expect("url");
    let playlist = reqwest::get(replay.replace("getHLSMasterPlaylist", "getHLSMediaPlaylist"))
        .await
        .expect("replay playlist")
        .text()
        .await
        .expect("text");
    assert_eq!(playlist.lines().filter(|l| l.starts_with("#EXTINF")).count(), 1, "{playlist}");
    assert!(!playlist.contains("#EXT-X-ENDLIST"), "{playlist}");

    let code = |e: am::error::SdkError<
        am::operation::get_hls_streaming_session_url::GetHLSStreamingSessionURLError,
    >| { e.as_service_error().and_then(|s| s.meta().code().map(str::to_string)) };
    let range = |s: u64, e: u64| {
        am::types::HlsFragmentSelector::builder()
            .fragment_selector_type(am::types::HlsFragmentSelectorType::ServerTimestamp)
            .timestamp_range(
                am::types::HlsTimestampRange::builder().start_timestamp(secs(s)).end_timestamp(secs(e)).build(),
            )
            .build()
    };
    let on_demand =
        || c.get_hls_streaming_session_url().stream_name("cam").playback_mode(am::types::HlsPlaybackMode::OnDemand);
    // No fragments in the range.
    let e = on_demand().hls_fragment_selector(range(1_000_000, 2_000_000)).send().await.expect_err("empty range");
    assert_eq!(code(e).as_deref(), Some("ResourceNotFoundException"));
    // Range longer than 24 h.
    let e =
        on_demand().hls_fragment_selector(range(1_000_000, 1_000_000 + 25 * 3_600_000)).send().await.expect_err("long");
    assert_eq!(code(e).as_deref(), Some("InvalidArgumentException"));
    // ON_DEMAND without a range; LIVE with one; Expires out of bounds; unknown stream; no retention.
    let e = on_demand().send().await.expect_err("no range");
    assert_eq!(code(e).as_deref(), Some("InvalidArgumentException"));
    let e = c
        .get_hls_streaming_session_url()
        .stream_name("cam")
        .hls_fragment_selector(range(start, end))
        .send()
        .await
        .expect_err("live with range");
    assert_eq!(code(e).as_deref(), Some("InvalidArgumentException"));
    let e = c.get_hls_streaming_session_url().stream_name("cam").expires(299).send().await.expect_err("expires");
    assert_eq!(code(e).as_deref(), Some("InvalidArgumentException"));
    let e = c.get_hls_streaming_session_url().stream_name("nope").send().await.expect_err("unknown");
    assert_eq!(code(e).as_deref(), Some("ResourceNotFoundException"));
    let e = c.get_hls_streaming_session_url().stream_name("nokeep").send().await.expect_err("no retention");
    assert_eq!(code(e).as_deref(), Some("NoDataRetentionException"));
    // The policy check names the operation: a GetClip-only key may not open HLS sessions.
    let e =
        client_as(&h, CLIP_ONLY).get_hls_streaming_session_url().stream_name("cam").send().await.expect_err("denied");
    assert_eq!(code(e).as_deref(), Some("NotAuthorizedException"));
}

/// Appends the fixture clip again and again in real time (each fragment once its media has
/// "happened"), like a live camera, until the returned task is aborted.
fn feed_live(h: &Harness) -> tokio::task::JoinHandle<()> {
    let stream = h.state.core.store.stream(STREAM).expect("stream");
    tokio::spawn(async move {
        let mut t0_ms = reel::streaming::now_ms();
        loop {
            let frags = fragment_fixture(t0_ms as i64 * 1000);
            let Some(last) = frags.last() else { return };
            let next = last.producer_ts_ms + u64::from(last.duration_ms);
            for mut f in frags {
                let due = f.producer_ts_ms + u64::from(f.duration_ms);
                tokio::time::sleep(std::time::Duration::from_millis(due.saturating_sub(reel::streaming::now_ms())))
                    .await;
                f.server_ts_ms = reel::streaming::now_ms();
                if testkit::append(&stream, &f).await.is_err() {
                    return;
                }
            }
            t0_ms = next;
        }
    })
}

/// Runs tests/viewer/play.mjs (playwright-core + Debian chromium) and returns its verdict.
async fn run_viewer(h: &Harness, mode: &str, range: (u64, u64), shot: &str) -> serde_json::Value {
    let (dir, chromium) = browser::playwright();
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join("play.mjs"))
        .env("VIEWER_URL", format!("http://{}/viewer", h.addr))
        .env("KEY_ID", KEY_ID)
        .env("SECRET", SECRET)
        .env("REGION", "us-west-2")
        .env("STREAM", "cam")
        .env("MODE", mode)
        .env("START_MS", range.0.to_string())
        .env("END_MS", range.1.to_string())
        .env("SCREENSHOT", target.join(shot))
        .env("CHROMIUM", chromium)
        .kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(90), cmd.output())
        .await
        .expect("viewer script timed out")
        .expect("node");
    browser::report(&out, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_plays_live_and_on_demand_in_chromium() {
    let h = harness().await;
    let range = fill(&h, 8_000).await;
    let feeder = feed_live(&h);
    let live = run_viewer(&h, "LIVE", range, "viewer-live.png").await;
    assert_eq!(live["ok"], true, "live playback in the viewer: {live}");
    let on_demand = run_viewer(&h, "ON_DEMAND", range, "viewer-on-demand.png").await;
    assert_eq!(on_demand["ok"], true, "on-demand playback in the viewer: {on_demand}");
    eprintln!("viewer: live {live}\nviewer: on demand {on_demand}");
    feeder.abort();
}

/// Creates the stream `name` (`arn`, media type `video/h264,audio/aac`) and stores the
/// H.264 + AAC fixture in it, starting `ago_ms` before now, with `audio_config` (when given)
/// as the AAC track's codec private; returns the producer time range it covers.
async fn fill_aac(h: &Harness, name: &str, arn: &str, ago_ms: u64, audio_config: Option<&[u8]>) -> (u64, u64) {
    let record = StreamRecord { media_type: Some("video/h264,audio/aac".into()), ..record(name, arn, 24) };
    h.state.core.meta.create_stream(&record, &Default::default(), 100).await.expect("stream");
    h.state.core.store.create_stream(arn, 24).await.expect("store stream");
    let mut frags = testkit::aac_fixture_fragments(reel::streaming::now_ms() - ago_ms).expect("AAC fixture");
    if let Some(config) = audio_config {
        let mut entries = reel_media::mkv::parse_tracks(&frags[0].header).expect("tracks");
        entries[1].codec_private = config.to_vec();
        let header = bytes::Bytes::from(reel_media::mkv::write_tracks(&entries));
        frags.iter_mut().for_each(|f| f.header = header.clone());
    }
    let stream = h.state.core.store.stream(arn).expect("stream");
    for f in &frags {
        testkit::append(&stream, f).await.expect("append fragment");
    }
    let last = frags.last().expect("frags");
    (frags[0].producer_ts_ms, last.producer_ts_ms + u64::from(last.duration_ms))
}

/// ffprobe's one-line-per-stream summary of `input` (a file or URL).
async fn summary(input: String) -> String {
    tokio::task::spawn_blocking(move || probe::stream_summary(&input).expect("ffprobe")).await.expect("join")
}

/// Asserts `input` plays in ffmpeg without errors for `expected` s, as H.264 + AAC at
/// 44.1 kHz stereo.
async fn assert_plays_h264_aac(what: &str, input: String, expected: f64) {
    let (errors, duration) = play(input.clone()).await;
    assert!(errors.is_empty(), "ffmpeg errors on {what}: {errors}");
    assert!((duration - expected).abs() <= 0.5, "{what} duration {duration}, expected {expected}");
    let streams = summary(input).await;
    assert!(streams.contains("codec_name=h264") && streams.contains("width=640"), "{what}: {streams}");
    assert!(
        streams.contains("codec_name=aac") && streams.contains("sample_rate=44100") && streams.contains("channels=2"),
        "{what}: {streams}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aac_stream_plays_in_hls_dash_and_clip() {
    let h = harness().await;
    let (start, end) = fill_aac(&h, "aaccam", AAC_STREAM, 20_000, None).await;
    let expected = (end - start) as f64 / 1000.0;
    let c = client(&h);
    require_tools();

    let url = hls_session(&c, "aaccam", am::types::ContainerFormat::FragmentedMp4, start, end).await.expect("HLS");
    let master = reqwest::get(&url).await.expect("master").text().await.expect("text");
    assert!(master.contains("CODECS=\"avc1.42e01f,mp4a.40.2\""), "{master}");
    assert_plays_h264_aac("HLS fMP4", url, expected).await;
    let ts = hls_session(&c, "aaccam", am::types::ContainerFormat::MpegTs, start, end).await.expect("HLS TS");
    assert_plays_h264_aac("HLS TS", ts, expected).await;

    let (dash, mpd) = dash_session(&c, "aaccam", start, end).await;
    for needle in [
        "contentType=\"audio\" mimeType=\"audio/mp4\"",
        "codecs=\"mp4a.40.2\"",
        "audioSamplingRate=\"44100\"",
        "audio_channel_configuration:2011\" value=\"2\"",
    ] {
        assert!(mpd.contains(needle), "{needle} missing in\n{mpd}");
    }
    assert_plays_h264_aac("DASH", dash, expected).await;

    let path = clip_file(&h, &c, "aaccam", start, end, "aac-clip.mp4").await;
    assert_plays_h264_aac("the clip", path.clone(), expected).await;
    assert_eq!(codecs(path).await, ["h264", "aac"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn he_aac_plays_in_hls_fmp4_and_mpeg_ts_sessions_are_refused() {
    let h = harness().await;
    // Explicit HE-AAC: object type 5, core 44.1 kHz stereo, SBR at 88.2 kHz, core AAC LC.
    let (start, end) = fill_aac(&h, "hecam", HE_AAC_STREAM, 20_000, Some(&[0x2a, 0x10, 0x88, 0x00])).await;
    let c = client(&h);
    let e = hls_session(&c, "hecam", am::types::ContainerFormat::MpegTs, start, end).await.expect_err("TS refused");
    let e = e.into_service_error();
    assert_eq!(e.meta().code(), Some("UnsupportedStreamMediaTypeException"), "{e:?}");
    assert!(e.meta().message().is_some_and(|m| m.contains("object type 5")), "{e:?}");

    let url = hls_session(&c, "hecam", am::types::ContainerFormat::FragmentedMp4, start, end).await.expect("fMP4");
    let master = reqwest::get(&url).await.expect("master").text().await.expect("text");
    assert!(master.contains("CODECS=\"avc1.42e01f,mp4a.40.5\""), "{master}");
    require_tools();
    let (errors, _) = play(url.clone()).await;
    assert!(errors.is_empty(), "ffmpeg errors on HE-AAC HLS: {errors}");
    let streams = summary(url).await;
    assert!(streams.contains("codec_name=aac") && streams.contains("sample_rate=88200"), "{streams}");
}

/// Creates the stream `name` (`arn`, media type `video/h265`) and stores the H.265 fixture
/// in it, starting `ago_ms` before now; returns the producer time range it covers.
async fn fill_hevc(h: &Harness, name: &str, arn: &str, ago_ms: u64) -> (u64, u64) {
    let record = StreamRecord { media_type: Some("video/h265".into()), ..record(name, arn, 24) };
    h.state.core.meta.create_stream(&record, &Default::default(), 100).await.expect("stream");
    h.state.core.store.create_stream(arn, 24).await.expect("store stream");
    let frags = testkit::hevc_fixture_fragments(reel::streaming::now_ms() - ago_ms).expect("H.265 fixture");
    let stream = h.state.core.store.stream(arn).expect("stream");
    for f in &frags {
        testkit::append(&stream, f).await.expect("append fragment");
    }
    let last = frags.last().expect("frags");
    (frags[0].producer_ts_ms, last.producer_ts_ms + u64::from(last.duration_ms))
}

/// Asserts `input` plays in ffmpeg without errors for `expected` s, as HEVC Main 320×240.
async fn assert_plays_hevc(what: &str, input: String, expected: f64) {
    let (errors, duration) = play(input.clone()).await;
    assert!(errors.is_empty(), "ffmpeg errors on {what}: {errors}");
    assert!((duration - expected).abs() <= 0.5, "{what} duration {duration}, expected {expected}");
    let streams = summary(input).await;
    assert!(streams.contains("codec_name=hevc|profile=Main|width=320|height=240"), "{what}: {streams}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hevc_stream_plays_in_hls_fmp4_dash_and_clip_and_mpeg_ts_is_refused() {
    let h = harness().await;
    let (start, end) = fill_hevc(&h, "hevccam", HEVC_STREAM, 20_000).await;
    let expected = (end - start) as f64 / 1000.0;
    let c = client(&h);

    // KVS serves H.265 over HLS only as fragmented MP4.
    let e = hls_session(&c, "hevccam", am::types::ContainerFormat::MpegTs, start, end).await.expect_err("TS refused");
    let e = e.into_service_error();
    assert_eq!(e.meta().code(), Some("UnsupportedStreamMediaTypeException"), "{e:?}");
    assert!(e.meta().message().is_some_and(|m| m.contains("H.265")), "{e:?}");

    require_tools();
    let url = hls_session(&c, "hevccam", am::types::ContainerFormat::FragmentedMp4, start, end).await.expect("HLS");
    let master = reqwest::get(&url).await.expect("master").text().await.expect("text");
    assert!(master.contains("CODECS=\"hvc1.1.6.L60.90\",RESOLUTION=320x240"), "{master}");
    assert_plays_hevc("HLS fMP4", url, expected).await;

    let (dash, mpd) = dash_session(&c, "hevccam", start, end).await;
    assert!(mpd.contains("codecs=\"hvc1.1.6.L60.90\"") && mpd.contains("width=\"320\" height=\"240\""), "{mpd}");
    assert_plays_hevc("DASH", dash, expected).await;

    let path = clip_file(&h, &c, "hevccam", start, end, "hevc-clip.mp4").await;
    assert_plays_hevc("the clip", path.clone(), expected).await;
    assert_eq!(codecs(path).await, ["hevc"]);

    // GetImages decodes H.264 only: every sampled time with H.265 media is a MEDIA_ERROR.
    let images = c
        .get_images()
        .stream_name("hevccam")
        .image_selector_type(am::types::ImageSelectorType::ProducerTimestamp)
        .start_timestamp(am::primitives::DateTime::from_millis(start as i64))
        .end_timestamp(am::primitives::DateTime::from_millis(end as i64))
        .sampling_interval(1_000)
        .format(am::types::Format::Jpeg)
        .send()
        .await
        .expect("GetImages");
    assert!(!images.images().is_empty());
    for image in images.images() {
        assert_eq!(image.error(), Some(&am::types::ImageError::MediaError), "{image:?}");
        assert!(image.image_content().is_none());
    }
}
