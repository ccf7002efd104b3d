//! GetImages end to end: the in-process server with the fixture clip (testsrc2, 640x360,
//! 30 fps, three 2 s fragments) in its store, the official
//! `aws-sdk-kinesisvideoarchivedmedia` client, and `ffmpeg`/`ffprobe` as the judges of the
//! images: each must be the very frame ffmpeg decodes from the fixture at that time.

#[path = "common/inproc.rs"]
mod inproc;

use std::process::Command;

use am::error::ProvideErrorMetadata;
use am::primitives::DateTime;
use am::types::{Format, FormatConfigKey, ImageError, ImageSelectorType};
use aws_sdk_kinesisvideoarchivedmedia as am;
use base64::Engine;
use inproc::{InProcess, append, fixture_fragments, now_ms};
use reel::testkit::{VIDEO_FIXTURE, fixture_path, probe};

const WIDTH: usize = 640;
const HEIGHT: usize = 360;

fn at(ms: u64) -> DateTime {
    DateTime::from_millis(ms as i64)
}

/// Frame `n` of the fixture as RGB, decoded by ffmpeg.
fn ffmpeg_frame(n: usize) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "h264", "-i"])
        .arg(fixture_path(VIDEO_FIXTURE))
        .args(["-vf", &format!("select=eq(n\\,{n})"), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.len(), WIDTH * HEIGHT * 3, "frame {n}");
    out.stdout
}

/// An encoded image as RGB, decoded by ffmpeg, with its codec and size from ffprobe.
fn ffmpeg_image(bytes: &[u8], dir: &std::path::Path, name: &str) -> (String, usize, usize, Vec<u8>) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write image");
    let summary = probe::stream_summary(&path).expect("ffprobe");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dims = regex::Regex::new(r"width=(\d+)\|height=(\d+)").expect("re");
    let c = dims.captures(&summary).unwrap_or_else(|| panic!("no size in {summary}"));
    (summary.clone(), c[1].parse().expect("w"), c[2].parse().expect("h"), out.stdout)
}

/// Peak signal-to-noise ratio of two RGB pictures of the same size, dB.
fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse: f64 = a.iter().zip(b).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum::<f64>() / a.len() as f64;
    if mse == 0.0 { f64::INFINITY } else { 10.0 * (255.0f64.powi(2) / mse).log10() }
}

fn content(image: &am::types::Image) -> Vec<u8> {
    let b64 =
        image.image_content().unwrap_or_else(|| panic!("no image at {:?}: {:?}", image.time_stamp(), image.error()));
    base64::engine::general_purpose::STANDARD.decode(b64).expect("base64")
}

/// Sampled every 500 ms from 1 s before the clip to 1 s after it, 5 images a page through
/// the SDK's paginator: the timestamps no fragment spans are NO_MEDIA, every other one is a
/// PNG of exactly the frame on screen then (against ffmpeg's own decode of the fixture).
#[tokio::test]
async fn images_are_the_frames_on_screen_at_each_sampled_time() {
    probe::require(&["ffmpeg", "ffprobe"]);
    let server = InProcess::start(None).await;
    let arn = server.create_stream("front-door", 24).await;
    let start = now_ms() - 120_000;
    let mut spans = Vec::new();
    for f in fixture_fragments(start) {
        let info = append(&server.stream(&arn), &f).await;
        spans.push(info.producer_ts_ms as i64..(info.producer_ts_ms + u64::from(info.duration_ms)) as i64);
    }
    let pages: Vec<am::operation::get_images::GetImagesOutput> = server
        .archived()
        .get_images()
        .stream_arn(&arn)
        .image_selector_type(ImageSelectorType::ProducerTimestamp)
        .start_timestamp(at(start - 1_000))
        .end_timestamp(at(start + 7_000))
        .sampling_interval(500)
        .format(Format::Png)
        .max_results(5)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("GetImages pages");
    assert_eq!(pages.len(), 4, "17 images, 5 a page");
    let images: Vec<&am::types::Image> = pages.iter().flat_map(|p| p.images()).collect();
    let stamps: Vec<i64> = images.iter().map(|i| i.time_stamp().expect("TimeStamp").to_millis().expect("ms")).collect();
    // Epoch seconds as a JSON number: the SDK's parse may land 1 ms below.
    let expected: Vec<i64> = (0..17).map(|i| (start - 1_000 + i * 500) as i64).collect();
    assert!(stamps.iter().zip(&expected).all(|(s, e)| (e - 1..=*e).contains(s)), "{stamps:?} vs {expected:?}");
    let stamps = expected;
    let covered = stamps.iter().filter(|t| spans.iter().any(|span| span.contains(*t))).count();
    assert!(covered >= 12 && stamps.len() - covered >= 2, "{covered} of {} sampled times have media", stamps.len());
    let dir = tempfile::tempdir().expect("tempdir");
    for (image, t) in images.iter().zip(&stamps) {
        let offset = t - start as i64;
        if !spans.iter().any(|span| span.contains(t)) {
            assert_eq!(image.error(), Some(&ImageError::NoMedia), "{offset} ms");
            assert!(image.image_content().is_none());
            continue;
        }
        let (summary, w, h, rgb) = ffmpeg_image(&content(image), dir.path(), &format!("{offset}.png"));
        assert!(summary.contains("png"), "{summary}");
        assert_eq!((w, h), (WIDTH, HEIGHT));
        // 30 fps: the frame on screen at `offset` ms is number offset * 30 / 1000.
        // (The last of the 180 frames stays on screen to the end of the last fragment.)
        let frame = ((offset * 30 / 1000) as usize).min(179);
        let same = psnr(&rgb, &ffmpeg_frame(frame));
        let other = psnr(&rgb, &ffmpeg_frame(if frame >= 15 { frame - 15 } else { frame + 15 }));
        assert!(same > 30.0, "{offset} ms: {same:.1} dB against frame {frame}");
        assert!(
            other < same - 6.0,
            "{offset} ms: {other:.1} dB against a frame 0.5 s away, {same:.1} dB against its own"
        );
    }
}

/// JPEG at the asked width keeps the aspect ratio; quality changes the size; both sizes
/// stretch; server timestamps find the same frames.
#[tokio::test]
async fn jpeg_sizes_quality_and_server_timestamps() {
    probe::require(&["ffmpeg", "ffprobe"]);
    let server = InProcess::start(None).await;
    let arn = server.create_stream("porch", 24).await;
    let start = now_ms() - 120_000;
    let mut server_start = None;
    for f in fixture_fragments(start) {
        let info = append(&server.stream(&arn), &f).await;
        server_start.get_or_insert(info.server_ts_ms);
    }
    let server_start = server_start.expect("fragments");
    let dir = tempfile::tempdir().expect("tempdir");
    let one = |quality: &'static str, width: Option<i32>, height: Option<i32>, selector, t: u64| {
        let mut call = server
            .archived()
            .get_images()
            .stream_name("porch")
            .image_selector_type(selector)
            .start_timestamp(at(t))
            .end_timestamp(at(t))
            .format(Format::Jpeg)
            .format_config(FormatConfigKey::JpegQuality, quality);
        if let Some(w) = width {
            call = call.width_pixels(w);
        }
        if let Some(h) = height {
            call = call.height_pixels(h);
        }
        call.send()
    };
    let small =
        one("90", Some(320), None, ImageSelectorType::ProducerTimestamp, start + 2_510).await.expect("320 wide");
    assert_eq!(small.images().len(), 1);
    assert!(small.next_token().is_none());
    let (summary, w, h, _) = ffmpeg_image(&content(&small.images()[0]), dir.path(), "small.jpg");
    assert!(summary.contains("mjpeg"), "{summary}");
    assert_eq!((w, h), (320, 180));
    let tall = one("90", None, Some(720), ImageSelectorType::ProducerTimestamp, start + 2_510).await.expect("720 high");
    let (_, w, h, _) = ffmpeg_image(&content(&tall.images()[0]), dir.path(), "tall.jpg");
    assert_eq!((w, h), (1280, 720));
    let square =
        one("90", Some(100), Some(100), ImageSelectorType::ProducerTimestamp, start + 2_510).await.expect("square");
    let (_, w, h, _) = ffmpeg_image(&content(&square.images()[0]), dir.path(), "square.jpg");
    assert_eq!((w, h), (100, 100));
    let rough = one("5", None, None, ImageSelectorType::ProducerTimestamp, start + 2_510).await.expect("q5");
    let fine = one("95", None, None, ImageSelectorType::ProducerTimestamp, start + 2_510).await.expect("q95");
    let (rough, fine) = (content(&rough.images()[0]), content(&fine.images()[0]));
    assert!(rough.len() * 2 < fine.len(), "quality 5: {} bytes, 95: {} bytes", rough.len(), fine.len());
    let (_, _, _, fine_rgb) = ffmpeg_image(&fine, dir.path(), "fine.jpg");
    assert!(psnr(&fine_rgb, &ffmpeg_frame(75)) > 30.0, "2.51 s is frame 75");
    // The same moment by the server's clock.
    let by_server =
        one("95", None, None, ImageSelectorType::ServerTimestamp, server_start + 2_510).await.expect("server");
    let (_, _, _, rgb) = ffmpeg_image(&content(&by_server.images()[0]), dir.path(), "server.jpg");
    assert!(psnr(&rgb, &ffmpeg_frame(75)) > 30.0, "server timestamps find frame 75 too");
}

fn code<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    r: Result<R, am::error::SdkError<E, am::config::http::HttpResponse>>,
) -> (String, u16) {
    let e = r.expect_err("the call must fail");
    let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or_default();
    (e.code().unwrap_or_default().to_string(), status)
}

/// The model's errors: a missing stream, a stream without retention, a range over 300 s,
/// a sampling interval under 200 ms, a token of another request.
#[tokio::test]
async fn errors_are_the_models() {
    let server = InProcess::start(None).await;
    server.create_stream("kept", 24).await;
    server.create_stream("unkept", 0).await;
    let call = |name: &str, start: u64, end: u64, interval: i32| {
        server
            .archived()
            .get_images()
            .stream_name(name)
            .image_selector_type(ImageSelectorType::ServerTimestamp)
            .start_timestamp(at(start))
            .end_timestamp(at(end))
            .sampling_interval(interval)
            .format(Format::Png)
            .send()
    };
    let t = now_ms() - 60_000;
    assert_eq!(code(call("absent", t, t + 1_000, 500).await), ("ResourceNotFoundException".into(), 404));
    assert_eq!(code(call("unkept", t, t + 1_000, 500).await), ("NoDataRetentionException".into(), 400));
    assert_eq!(code(call("kept", t, t + 300_001, 500).await), ("InvalidArgumentException".into(), 400));
    assert_eq!(code(call("kept", t, t + 1_000, 199).await), ("InvalidArgumentException".into(), 400));
    assert_eq!(code(call("kept", t + 1, t, 500).await), ("InvalidArgumentException".into(), 400));
    // An empty stream: every timestamp answers NO_MEDIA.
    let empty = call("kept", t, t + 1_000, 500).await.expect("empty stream");
    assert_eq!(empty.images().len(), 3);
    assert!(empty.images().iter().all(|i| i.error() == Some(&ImageError::NoMedia)));
    let paged = server
        .archived()
        .get_images()
        .stream_name("kept")
        .image_selector_type(ImageSelectorType::ServerTimestamp)
        .start_timestamp(at(t))
        .end_timestamp(at(t + 10_000))
        .sampling_interval(200)
        .format(Format::Png)
        .send()
        .await
        .expect("a page");
    assert_eq!(paged.images().len(), 25);
    let token = paged.next_token().expect("more pages");
    let foreign = server
        .archived()
        .get_images()
        .stream_name("kept")
        .image_selector_type(ImageSelectorType::ServerTimestamp)
        .start_timestamp(at(t + 5))
        .end_timestamp(at(t + 10_000))
        .sampling_interval(200)
        .format(Format::Png)
        .next_token(token)
        .send()
        .await;
    assert_eq!(code(foreign), ("InvalidArgumentException".into(), 400));
}
