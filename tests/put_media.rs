//! PutMedia as the KVS producers send it, against an in-process reel: the C producer's
//! request (curl's chunked HTTP/1.1, the C signer's header set and empty-body payload hash,
//! the PIC's Matroska with unknown-size Segment and Clusters, 8-byte block sizes and the
//! end-of-session tag), the Java producers' `UNSIGNED-PAYLOAD` and the AWS SDK for Java's
//! `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, ffmpeg's Matroska as a foreign producer, and what
//! reel answers: acknowledgements (BUFFERING, RECEIVED, PERSISTED, ERROR, with the cluster
//! timecode the producer SDK matches them by), errors, and fragments every reader serves
//! (official SDK ListFragments, GetMediaForFragmentList and a live GetMedia, HLS, GetClip of
//! kvssink's H.264 + AAC; judged by ffprobe and ffmpeg).

#[path = "common/inproc.rs"]
mod inproc;
#[path = "common/producer.rs"]
mod producer;
#[path = "common/selectors.rs"]
mod selectors;

use aws_sdk_kinesisvideoarchivedmedia::types as am_types;
use inproc::{InProcess, fixture_fragments, now_ms};
use producer::{Request, Signer, Upload, pic_stream};
use serde_json::Value;

/// A request signed with the test server's root key.
fn request<'a>(stream_name: &'a str, timecode_type: &'a str, start: &'a str, signer: Signer) -> Request<'a> {
    Request {
        stream_name,
        timecode_type,
        start,
        signer,
        key_id: inproc::ROOT_KEY_ID,
        secret: inproc::ROOT_SECRET,
        region: inproc::REGION,
        acks: true,
    }
}

/// Matroska that ffmpeg writes from `inputs` (stream copy, a cluster per keyframe after
/// 0.9 s, unknown-size Segment as when live).
fn ffmpeg_matroska(inputs: &[&str]) -> Vec<u8> {
    reel::testkit::probe::require(&["ffmpeg"]);
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-v", "error"]);
    for input in inputs {
        if input.ends_with(".h264") {
            cmd.args(["-r", "30"]);
        }
        cmd.arg("-i").arg(fixtures.join(input));
    }
    for i in 0..inputs.len() {
        cmd.args(["-map", &format!("{i}")]);
    }
    let out = cmd
        .args(["-c", "copy", "-t", "4", "-live", "1", "-cluster_time_limit", "900", "-f", "matroska", "-"])
        .output()
        .expect("ffmpeg");
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Uploads `body` whole on one connection, then returns every acknowledgement; none may be
/// an ERROR.
async fn upload_all(server: &InProcess, r: &Request<'_>, body: &[u8], piece: usize) -> Vec<Value> {
    let mut up = Upload::open(&server.url, r).await;
    up.send(body, piece).await;
    up.end().await;
    assert_eq!(up.status().await.0, 200);
    let mut acks = Vec::new();
    while let Some(a) = up.ack().await {
        acks.push(a);
    }
    assert!(acks.iter().all(|a| a["EventType"] != "ERROR"), "{acks:?}");
    acks
}

/// (fragment number, producer timestamp ms, length ms) of every fragment, oldest first.
async fn listed(server: &InProcess, stream: &str) -> Vec<(String, u64, i64)> {
    let out = server
        .archived()
        .list_fragments()
        .stream_name(stream)
        .fragment_selector(selectors::fragments(
            am_types::FragmentSelectorType::ProducerTimestamp,
            0,
            now_ms() + 60_000,
        ))
        .send()
        .await
        .expect("ListFragments");
    let mut frags: Vec<_> = out
        .fragments()
        .iter()
        .map(|f| {
            (
                f.fragment_number().expect("number").to_string(),
                // Rounded: restJson timestamps are float seconds.
                (f.producer_timestamp().expect("producer ts").as_secs_f64() * 1000.0).round() as u64,
                f.fragment_length_in_milliseconds(),
            )
        })
        .collect();
    frags.sort_by_key(|f| f.1);
    frags
}

/// ffprobe's codec names and ffmpeg's decode errors of one Matroska file.
fn judge(mkv: &[u8]) -> (Vec<String>, String) {
    use reel::testkit::probe;
    probe::require(&["ffprobe", "ffmpeg"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("media.mkv");
    std::fs::write(&path, mkv).expect("write");
    (probe::streams(&path).expect("ffprobe").codecs, probe::decode_errors(&path).expect("ffmpeg"))
}

#[tokio::test]
async fn a_c_producer_uploads_fragments_that_every_reader_plays() {
    let server = InProcess::start(None).await;
    server.create_stream("cam-c", 24).await;
    let start = now_ms() - 20_000;
    let frags = fixture_fragments(start);
    assert_eq!(frags.len(), 3);
    let body = pic_stream(&frags, |f| f.producer_ts_ms);
    let start_header = format!("{}.{}", start / 1000, start % 1000);
    let r = request("cam-c", "ABSOLUTE", &start_header, Signer::C);
    let mut up = Upload::open(&server.url, &r).await;
    up.send(&body, 1400).await;
    let (code, head) = up.status().await;
    assert_eq!(code, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
    // As the PIC does: the body ends only after the last fragment is PERSISTED.
    let acks = up.acks_until_persisted(3).await;
    up.end().await;
    assert_eq!(up.chunk().await, None, "the response ends with the upload");

    for f in &frags {
        let mine: Vec<&Value> = acks.iter().filter(|a| a["FragmentTimecode"] == f.producer_ts_ms).collect();
        let kinds: Vec<&str> = mine.iter().map(|a| a["EventType"].as_str().expect("type")).collect();
        assert_eq!(kinds, ["BUFFERING", "RECEIVED", "PERSISTED"], "acks of {}: {acks:?}", f.producer_ts_ms);
        assert_eq!(mine[1]["FragmentNumber"], mine[2]["FragmentNumber"]);
    }
    let listed = listed(&server, "cam-c").await;
    let numbers: Vec<&str> = acks
        .iter()
        .filter(|a| a["EventType"] == "PERSISTED")
        .map(|a| a["FragmentNumber"].as_str().expect("number"))
        .collect();
    assert_eq!(listed.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), numbers);
    for (l, f) in listed.iter().zip(&frags) {
        assert_eq!(l.1, f.producer_ts_ms, "producer timestamps are the cluster timecodes");
        assert!((l.2 - i64::from(f.duration_ms)).abs() <= 40, "length {} vs {}", l.2, f.duration_ms);
    }

    for number in numbers {
        let (codecs, errors) = judge(&fragment_media(&server, "cam-c", number).await);
        assert_eq!(codecs, ["h264", "opus"]);
        assert!(errors.trim().is_empty(), "ffprobe/ffmpeg: {errors}");
    }
}

/// One fragment's document from GetMediaForFragmentList.
async fn fragment_media(server: &InProcess, stream: &str, number: &str) -> Vec<u8> {
    server
        .archived()
        .get_media_for_fragment_list()
        .stream_name(stream)
        .fragments(number)
        .send()
        .await
        .expect("GetMediaForFragmentList")
        .payload
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

#[tokio::test]
async fn relative_timecodes_and_the_java_signers() {
    let server = InProcess::start(None).await;
    server.create_stream("cam-j", 24).await;
    for (n, signer) in [Signer::JavaProducer, Signer::JavaSdk].into_iter().enumerate() {
        let start = now_ms() - 60_000 + n as u64 * 20_000;
        let frags = fixture_fragments(start);
        // RELATIVE: cluster timecodes count from the producer start timestamp.
        let body = pic_stream(&frags, |f| f.producer_ts_ms - start);
        let start_header = format!("{:.3}", start as f64 / 1000.0);
        let r = request("cam-j", "RELATIVE", &start_header, signer);
        let mut up = Upload::open(&server.url, &r).await;
        up.send(&body, 64 * 1024).await;
        assert_eq!(up.status().await.0, 200, "{signer:?}");
        let acks = up.acks_until_persisted(3).await;
        up.end().await;
        let timecodes: Vec<u64> = acks
            .iter()
            .filter(|a| a["EventType"] == "PERSISTED")
            .map(|a| a["FragmentTimecode"].as_u64().expect("timecode"))
            .collect();
        assert_eq!(timecodes, frags.iter().map(|f| f.producer_ts_ms - start).collect::<Vec<_>>(), "echoed as sent");
    }
    let listed = listed(&server, "cam-j").await;
    assert_eq!(listed.len(), 6);
    let first = now_ms() - 60_000;
    assert!(listed[0].1 >= first - 1_000 && listed[0].1 <= first + 1_000, "start + relative timecode");
}

#[tokio::test]
async fn requests_that_kvs_refuses_are_refused_before_the_upload() {
    let server = InProcess::start(None).await;
    let r = |name: &'static str, secret: &'static str| Request {
        stream_name: name,
        timecode_type: "ABSOLUTE",
        start: "1700000000.000",
        signer: Signer::C,
        key_id: inproc::ROOT_KEY_ID,
        secret,
        region: inproc::REGION,
        acks: true,
    };
    let mut up = Upload::open(&server.url, &r("nope", inproc::ROOT_SECRET)).await;
    let (code, head) = up.status().await;
    assert_eq!(code, 404, "{head}");
    assert!(head.to_ascii_lowercase().contains("x-amzn-errortype: resourcenotfoundexception"), "{head}");

    server.create_stream("cam-e", 24).await;
    let mut up = Upload::open(&server.url, &r("cam-e", "wrong-secret")).await;
    let (code, head) = up.status().await;
    assert_eq!(code, 403, "{head}");
    assert!(head.contains("InvalidSignatureException"), "{head}");

    let mut bad = r("cam-e", inproc::ROOT_SECRET);
    bad.timecode_type = "SOMETIMES";
    let mut up = Upload::open(&server.url, &bad).await;
    let (code, head) = up.status().await;
    assert_eq!(code, 400, "{head}");
    assert!(head.contains("InvalidArgumentException"), "{head}");
}

#[tokio::test]
async fn a_bad_fragment_ends_the_connection_with_an_error_and_keeps_the_good_ones() {
    let server = InProcess::start(None).await;
    server.create_stream("cam-x", 24).await;
    let start = now_ms() - 20_000;
    let frags = fixture_fragments(start);
    // The third fragment goes back in time: 4004, as KVS answers.
    let body =
        pic_stream(&frags, |f| if f.producer_ts_ms == frags[2].producer_ts_ms { start } else { f.producer_ts_ms });
    let r = request("cam-x", "ABSOLUTE", "1700000000.000", Signer::C);
    let mut up = Upload::open(&server.url, &r).await;
    up.send(&body, 4096).await;
    assert_eq!(up.status().await.0, 200);
    let mut acks = Vec::new();
    while let Some(a) = up.ack().await {
        acks.push(a);
    }
    let error = acks.iter().find(|a| a["EventType"] == "ERROR").unwrap_or_else(|| panic!("{acks:?}"));
    assert_eq!(error["ErrorId"], 4004);
    assert_eq!(error["ErrorCode"], "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS");
    assert_eq!(error["FragmentTimecode"], start);
    assert_eq!(acks.iter().filter(|a| a["EventType"] == "PERSISTED").count(), 2, "{acks:?}");
    assert_eq!(listed(&server, "cam-x").await.len(), 2, "the failed fragment is not stored");

    // Not Matroska at all: 4006.
    let mut up = Upload::open(&server.url, &r).await;
    up.send(b"this is not matroska", 100).await;
    assert_eq!(up.status().await.0, 200);
    let a = up.ack().await.expect("error ack");
    assert_eq!((a["EventType"].as_str(), a["ErrorId"].as_u64()), (Some("ERROR"), Some(4006)));
    assert_eq!(up.ack().await, None, "the connection ends after an error");
}

#[tokio::test]
async fn a_newer_connection_replaces_the_older_one() {
    let server = InProcess::start(None).await;
    server.create_stream("cam-n", 24).await;
    let start = now_ms() - 20_000;
    let frags = fixture_fragments(start);
    let body = pic_stream(&frags[..2], |f| f.producer_ts_ms);
    let r = request("cam-n", "ABSOLUTE", "1700000000.000", Signer::C);
    // The older connection stores one fragment and keeps its second open: the body stops
    // inside the second cluster's last block.
    let tags = body.windows(4).rposition(|w| w == [0x12, 0x54, 0xC3, 0x67]).expect("end tags");
    let cut = tags - 10;
    let mut older = Upload::open(&server.url, &r).await;
    older.send(&body[..cut], 8192).await;
    assert_eq!(older.status().await.0, 200);
    older.acks_until_persisted(1).await;

    let newer_body = pic_stream(&frags[2..], |f| f.producer_ts_ms);
    let mut newer = Upload::open(&server.url, &r).await;
    newer.send(&newer_body, 8192).await;
    assert_eq!(newer.status().await.0, 200);
    newer.acks_until_persisted(1).await;
    newer.end().await;
    while let Some(a) = older.ack().await {
        assert_ne!(a["EventType"], "PERSISTED", "the older connection stored nothing more: {a}");
    }
    let listed = listed(&server, "cam-n").await;
    assert_eq!(listed.iter().map(|f| f.1).collect::<Vec<_>>(), [frags[0].producer_ts_ms, frags[2].producer_ts_ms]);
}

#[tokio::test]
async fn ffmpeg_matroska_is_stored_cluster_by_cluster() {
    reel::testkit::probe::require(&["ffmpeg"]);
    let server = InProcess::start(None).await;
    server.create_stream("cam-f", 24).await;
    // ffmpeg as a foreign producer: known-size Clusters, a new one at each keyframe after 1 s.
    let body = ffmpeg_matroska(&["test-h264-baseline.h264", "test-opus.ogg"]);
    let start = now_ms() - 30_000;
    let start_header = format!("{:.3}", start as f64 / 1000.0);
    let acks = upload_all(&server, &request("cam-f", "RELATIVE", &start_header, Signer::C), &body, 3000).await;
    let persisted = acks.iter().filter(|a| a["EventType"] == "PERSISTED").count();
    let listed = listed(&server, "cam-f").await;
    assert!(persisted >= 3 && listed.len() == persisted, "{persisted} persisted, {} listed", listed.len());
    assert!(listed[0].1 >= start && listed[0].1 < start + 100, "RELATIVE from {start}: {listed:?}");
    for (number, _, _) in &listed {
        let (codecs, errors) = judge(&fragment_media(&server, "cam-f", number).await);
        assert_eq!(codecs, ["h264", "opus"]);
        assert!(errors.trim().is_empty(), "ffprobe/ffmpeg: {errors}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploading_producer_is_watched_live_and_played_over_hls() {
    use aws_sdk_kinesisvideoarchivedmedia::types as am;
    use aws_sdk_kinesisvideomedia::types::{StartSelector, StartSelectorType};
    use reel_media::mkv::{self, tag};
    reel::testkit::probe::require(&["ffmpeg", "ffprobe"]);
    let server = InProcess::start(None).await;
    server.create_stream("cam-live", 24).await;

    // A live GetMedia reader (NOW) before the producer starts.
    let mut live = server
        .media()
        .get_media()
        .stream_name("cam-live")
        .start_selector(StartSelector::builder().start_selector_type(StartSelectorType::Now).build().expect("selector"))
        .send()
        .await
        .expect("GetMedia")
        .payload;

    let start = now_ms() - 20_000;
    let frags = fixture_fragments(start);
    let body = pic_stream(&frags, |f| f.producer_ts_ms);
    let r = request("cam-live", "ABSOLUTE", "1700000000.000", Signer::C);
    let mut up = Upload::open(&server.url, &r).await;
    up.send(&body, 1400).await;
    assert_eq!(up.status().await.0, 200);
    up.acks_until_persisted(3).await;
    up.end().await;

    // The live reader got the three fragments as they were stored.
    let mut buf = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let doc = loop {
        if let Ok(doc) = mkv::parse_document(&buf)
            && doc.tags.iter().filter(|t| t.name == tag::FRAGMENT_NUMBER).count() >= 3
        {
            break doc;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match tokio::time::timeout(left, live.next()).await {
            Ok(Some(Ok(bytes))) => buf.extend_from_slice(&bytes),
            other => panic!("live GetMedia stopped before 3 fragments: {other:?}"),
        }
    };
    let clusters: Vec<i64> = doc.clusters.iter().map(|c| c.timecode_ms).collect();
    assert_eq!(clusters, frags.iter().map(|f| f.producer_ts_ms as i64).collect::<Vec<_>>());

    // HLS on demand over the uploaded range plays in ffmpeg.
    let url = server
        .archived()
        .get_hls_streaming_session_url()
        .stream_name("cam-live")
        .playback_mode(am::HlsPlaybackMode::OnDemand)
        .hls_fragment_selector(selectors::hls(start, start + 7_000))
        .send()
        .await
        .expect("GetHLSStreamingSessionURL")
        .hls_streaming_session_url
        .expect("url");
    let (errors, duration) = tokio::task::spawn_blocking(move || {
        (
            reel::testkit::probe::decode_errors(&url).expect("ffmpeg"),
            reel::testkit::probe::duration(&url).expect("ffprobe"),
        )
    })
    .await
    .expect("join");
    assert!(errors.trim().is_empty(), "ffmpeg errors on HLS of a PutMedia stream: {errors}");
    assert!((5.5..=6.5).contains(&duration), "6 s uploaded, {duration} s played");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kvssink_h264_aac_upload_plays_over_hls_and_get_clip() {
    use aws_sdk_kinesisvideoarchivedmedia::types as am;
    use reel::testkit::probe;
    probe::require(&["ffmpeg", "ffprobe"]);
    let server = InProcess::start(None).await;
    server.create_stream("cam-aac", 24).await;
    // What kvssink sends: H.264 on track 1, A_AAC (AudioSpecificConfig, raw access units) on 2.
    let start = now_ms() - 20_000;
    let frags = reel::testkit::aac_fixture_fragments(start).expect("AAC fixture");
    let body = pic_stream(&frags, |f| f.producer_ts_ms);
    let start_header = format!("{}.{:03}", start / 1000, start % 1000);
    let r = request("cam-aac", "ABSOLUTE", &start_header, Signer::C);
    let mut up = Upload::open(&server.url, &r).await;
    up.send(&body, 1400).await;
    assert_eq!(up.status().await.0, 200);
    let acks = up.acks_until_persisted(frags.len()).await;
    up.end().await;
    assert!(acks.iter().all(|a| a["EventType"] != "ERROR"), "{acks:?}");
    let (first, end) = (start, start + frags.iter().map(|f| u64::from(f.duration_ms)).sum::<u64>());
    let expected = (end - first) as f64 / 1000.0;

    // Plays without an error, as long as uploaded, and ffprobe sees AAC 44.1 kHz stereo.
    let judge_url = |what: &'static str, input: String| async move {
        let (errors, duration, streams) = tokio::task::spawn_blocking(move || {
            (
                probe::decode_errors(&input).expect("ffmpeg"),
                probe::duration(&input).expect("ffprobe"),
                probe::stream_summary(&input).expect("ffprobe"),
            )
        })
        .await
        .expect("join");
        assert!(errors.trim().is_empty(), "ffmpeg errors on {what}: {errors}");
        assert!((duration - expected).abs() <= 0.5, "{what}: {duration} s played, {expected} s uploaded");
        assert!(streams.contains("codec_name=h264"), "{what}: {streams}");
        assert!(
            streams.contains("codec_name=aac")
                && streams.contains("sample_rate=44100")
                && streams.contains("channels=2"),
            "{what}: {streams}"
        );
    };
    for format in [am::ContainerFormat::FragmentedMp4, am::ContainerFormat::MpegTs] {
        let url = server
            .archived()
            .get_hls_streaming_session_url()
            .stream_name("cam-aac")
            .playback_mode(am::HlsPlaybackMode::OnDemand)
            .container_format(format.clone())
            .hls_fragment_selector(selectors::hls(first, end))
            .send()
            .await
            .expect("GetHLSStreamingSessionURL")
            .hls_streaming_session_url
            .expect("url");
        let master = reqwest::get(&url).await.expect("master").text().await.expect("text");
        assert!(master.contains("CODECS=\"avc1.42e01f,mp4a.40.2\""), "{master}");
        judge_url(if format == am::ContainerFormat::MpegTs { "HLS TS" } else { "HLS fMP4" }, url).await;
    }

    let clip = server
        .archived()
        .get_clip()
        .stream_name("cam-aac")
        .clip_fragment_selector(selectors::clip(first, end))
        .send()
        .await
        .expect("GetClip");
    let bytes = clip.payload.collect().await.expect("body").into_bytes();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("clip.mp4");
    std::fs::write(&path, &bytes).expect("write clip");
    judge_url("GetClip", path.to_string_lossy().into_owned()).await;
}

#[tokio::test]
async fn no_persisted_without_retention_and_no_acknowledgements_when_refused() {
    let server = InProcess::start(None).await;
    server.create_stream("cam-zero", 0).await;
    server.create_stream("cam-quiet", 24).await;
    let start = now_ms() - 20_000;
    let frags = fixture_fragments(start);
    let body = pic_stream(&frags, |f| f.producer_ts_ms);

    // Retention 0: the fragments are received, never PERSISTED (KVS sends none).
    let r = request("cam-zero", "ABSOLUTE", "1700000000.000", Signer::C);
    let mut up = Upload::open(&server.url, &r).await;
    up.send(&body, 8192).await;
    up.end().await;
    assert_eq!(up.status().await.0, 200);
    let mut kinds = Vec::new();
    while let Some(a) = up.ack().await {
        kinds.push(a["EventType"].as_str().expect("type").to_owned());
    }
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!((count("BUFFERING"), count("RECEIVED"), count("PERSISTED"), count("ERROR")), (3, 3, 0, 0), "{kinds:?}");

    // Acknowledgements refused: none at all, and the fragments are stored all the same.
    let mut r = request("cam-quiet", "ABSOLUTE", "1700000000.000", Signer::C);
    r.acks = false;
    let mut up = Upload::open(&server.url, &r).await;
    up.send(&body, 8192).await;
    up.end().await;
    assert_eq!(up.status().await.0, 200);
    assert_eq!(up.ack().await, None, "no acknowledgement when refused");
    assert_eq!(listed(&server, "cam-quiet").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h265_camera_uploads_and_plays_over_hls_fmp4() {
    use aws_sdk_kinesisvideoarchivedmedia::types as am;
    reel::testkit::probe::require(&["ffmpeg", "ffprobe"]);
    let server = InProcess::start(None).await;
    server.create_stream("cam-hevc", 24).await;
    // ffmpeg's H.265 Matroska (V_MPEGH/ISO/HEVC, hvcC), re-cut into a cluster per keyframe.
    let body = ffmpeg_matroska(&["ffmpeg-h265.mkv"]);
    let start = now_ms() - 30_000;
    let start_header = format!("{:.3}", start as f64 / 1000.0);
    let acks = upload_all(&server, &request("cam-hevc", "RELATIVE", &start_header, Signer::C), &body, 4096).await;
    assert!(acks.iter().filter(|a| a["EventType"] == "PERSISTED").count() >= 3, "{acks:?}");

    let url = server
        .archived()
        .get_hls_streaming_session_url()
        .stream_name("cam-hevc")
        .playback_mode(am::HlsPlaybackMode::OnDemand)
        .container_format(am::ContainerFormat::FragmentedMp4)
        .hls_fragment_selector(selectors::hls(start, start + 10_000))
        .send()
        .await
        .expect("GetHLSStreamingSessionURL")
        .hls_streaming_session_url
        .expect("url");
    let (errors, codecs) = tokio::task::spawn_blocking(move || {
        (
            reel::testkit::probe::decode_errors(&url).expect("ffmpeg"),
            reel::testkit::probe::streams(&url).expect("ffprobe").codecs,
        )
    })
    .await
    .expect("join");
    assert!(errors.trim().is_empty(), "ffmpeg errors on HLS of an H.265 upload: {errors}");
    assert_eq!(codecs, ["hevc"]);
}
