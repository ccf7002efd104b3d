//! Playback with the official clients (`aws-sdk-kinesisvideomedia`,
//! `aws-sdk-kinesisvideoarchivedmedia`) against an in-process reel whose store is filled
//! with real H.264/Opus fragments from the fixture files: GetMedia from EARLIEST, NOW and
//! the other selectors, live following, disconnects, ListFragments with both selector types
//! and pagination, GetMediaForFragmentList, and the errors.

#[path = "common/inproc.rs"]
mod inproc;
#[path = "common/selectors.rs"]
mod selectors;

use std::time::{Duration, Instant};

use aws_sdk_kinesisvideoarchivedmedia::primitives::DateTime;
use aws_sdk_kinesisvideoarchivedmedia::types::FragmentSelectorType;
use aws_sdk_kinesisvideomedia::primitives::ByteStream;
use aws_sdk_kinesisvideomedia::types::{StartSelector, StartSelectorType};
use inproc::{InProcess, append, fixture_fragments, now_ms};
use reel_media::mkv::{self, SimpleTag, kvs_timestamp, tag};
use reel_storage::FragmentInfo;

/// Reads the body until the documents in `buf` carry `want` fragment-number tags.
async fn read_until(payload: &mut ByteStream, buf: &mut Vec<u8>, want: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(doc) = mkv::parse_document(buf)
            && doc.tags.iter().filter(|t| t.name == tag::FRAGMENT_NUMBER).count() >= want
        {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, payload.next()).await {
            Ok(Some(Ok(bytes))) => buf.extend_from_slice(&bytes),
            Ok(Some(Err(e))) => panic!("body error: {e}"),
            Ok(None) => panic!("body ended before {want} fragments"),
            Err(_) => panic!("no {want} fragments within {limit:?}"),
        }
    }
}

fn tag_value<'a>(tags: &'a [SimpleTag], name: &str) -> Vec<&'a str> {
    tags.iter().filter(|t| t.name == name).map(|t| t.value.as_str()).collect()
}

/// Checks that `data` holds exactly the GetMedia documents of `expected`, in order, with
/// real media (video keyframe first, audio present) and the GetMedia tags.
fn check_get_media_docs(data: &[u8], expected: &[FragmentInfo]) {
    let doc = mkv::parse_document(data).expect("GetMedia body is MKV");
    assert_eq!(doc.clusters.len(), expected.len());
    let numbers: Vec<String> = expected.iter().map(|f| f.number.to_string()).collect();
    assert_eq!(tag_value(&doc.tags, tag::FRAGMENT_NUMBER), numbers);
    assert_eq!(tag_value(&doc.tags, tag::CONTINUATION_TOKEN), numbers);
    let server: Vec<String> = expected.iter().map(|f| kvs_timestamp(f.server_ts_ms)).collect();
    let producer: Vec<String> = expected.iter().map(|f| kvs_timestamp(f.producer_ts_ms)).collect();
    assert_eq!(tag_value(&doc.tags, tag::SERVER_TIMESTAMP), server);
    assert_eq!(tag_value(&doc.tags, tag::PRODUCER_TIMESTAMP), producer);
    assert_eq!(tag_value(&doc.tags, tag::MILLIS_BEHIND_NOW).len(), expected.len());
    assert!(tag_value(&doc.tags, tag::ERROR_CODE).is_empty());
    assert_eq!(doc.tracks.len(), 2);
    for (cluster, info) in doc.clusters.iter().zip(expected) {
        assert_eq!(cluster.timecode_ms as u64, info.producer_ts_ms);
        let frames = &doc.frames[cluster.frames.clone()];
        assert!(frames[0].track == 1 && frames[0].keyframe, "fragment starts with an IDR");
        assert_eq!(frames.iter().filter(|f| f.track == 1).count(), 60);
        assert!(frames.iter().any(|f| f.track == 2), "audio present");
    }
}

async fn filled_stream(server: &InProcess, name: &str) -> (String, Vec<FragmentInfo>) {
    let arn = server.create_stream(name, 24).await;
    let stream = server.stream(&arn);
    let mut infos = Vec::new();
    for f in fixture_fragments(now_ms() - 60_000) {
        infos.push(append(&stream, &f).await);
    }
    (arn, infos)
}

#[tokio::test]
async fn get_media_from_earliest_then_follows_the_tail() {
    let server = InProcess::start(None).await;
    let (arn, mut stored) = filled_stream(&server, "earliest").await;
    // Applications find the media endpoint with GetDataEndpoint: it is this server.
    let endpoint = server
        .kvs()
        .get_data_endpoint()
        .stream_arn(&arn)
        .api_name(aws_sdk_kinesisvideo::types::ApiName::GetMedia)
        .send()
        .await
        .expect("GetDataEndpoint");
    assert_eq!(endpoint.data_endpoint(), Some(server.url.as_str()));
    let out = server
        .media()
        .get_media()
        .stream_arn(&arn)
        .start_selector(StartSelector::builder().start_selector_type(StartSelectorType::Earliest).build().expect("sel"))
        .send()
        .await
        .expect("GetMedia");
    assert_eq!(out.content_type(), Some("video/webm"));
    let mut payload = out.payload;
    let mut buf = Vec::new();
    read_until(&mut payload, &mut buf, 3, Duration::from_secs(10)).await;
    check_get_media_docs(&buf, &stored);

    // Live: each appended fragment reaches the open reader before the next is appended.
    let stream = server.stream(&arn);
    for f in fixture_fragments(now_ms()) {
        let t = Instant::now();
        stored.push(append(&stream, &f).await);
        read_until(&mut payload, &mut buf, stored.len(), Duration::from_secs(1)).await;
        println!("live fragment seen {:?} after its append began", t.elapsed());
    }
    check_get_media_docs(&buf, &stored);
}

#[tokio::test]
async fn get_media_from_now_sees_only_new_fragments_and_disconnect_frees_the_reader() {
    let server = InProcess::start(None).await;
    let (arn, _old) = filled_stream(&server, "now").await;
    let out = server
        .media()
        .get_media()
        .stream_name("now")
        .start_selector(StartSelector::builder().start_selector_type(StartSelectorType::Now).build().expect("sel"))
        .send()
        .await
        .expect("GetMedia");
    assert_eq!(server.state.playback.live(&arn), 1);
    let mut payload = out.payload;
    let stream = server.stream(&arn);
    let mut new = Vec::new();
    let mut buf = Vec::new();
    for f in fixture_fragments(now_ms()).iter().take(2) {
        new.push(append(&stream, f).await);
        read_until(&mut payload, &mut buf, new.len(), Duration::from_secs(1)).await;
    }
    check_get_media_docs(&buf, &new);

    drop(payload);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.state.playback.live(&arn) != 0 {
        assert!(Instant::now() < deadline, "reader still open after the client went away");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn deleting_the_stream_ends_get_media() {
    let server = InProcess::start(None).await;
    let (arn, _) = filled_stream(&server, "doomed").await;
    let now = StartSelector::builder().start_selector_type(StartSelectorType::Now).build().expect("sel");
    let out = server.media().get_media().stream_arn(&arn).start_selector(now).send().await.expect("GetMedia");
    let mut payload = out.payload;
    server.kvs().delete_stream().stream_arn(&arn).send().await.expect("DeleteStream");
    let end = tokio::time::timeout(Duration::from_secs(5), payload.next()).await.expect("body ends");
    assert!(end.is_none(), "no document after deletion");
    assert_eq!(server.state.playback.live(&arn), 0);
}

#[tokio::test]
async fn get_media_is_rate_limited_per_stream() {
    let server = InProcess::start_with(None, |c| c.limits.playback.get_media_tps_per_stream = 1.0).await;
    let (arn, _) = filled_stream(&server, "busy").await;
    let (other, _) = filled_stream(&server, "quiet").await;
    let earliest = StartSelector::builder().start_selector_type(StartSelectorType::Earliest).build().expect("sel");
    let call = |arn: &str| server.media().get_media().stream_arn(arn).start_selector(earliest.clone()).send();
    let _first = call(&arn).await.expect("first call");
    let err = call(&arn).await.expect_err("second call in the same second");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    assert!(err.into_service_error().is_client_limit_exceeded_exception());
    let _other = call(&other).await.expect("another stream has its own quota");
}

#[tokio::test]
async fn get_media_connections_per_stream_are_capped() {
    const MAX: usize = 3;
    let server = InProcess::start_with(None, |c| {
        c.limits.playback.max_get_media_connections_per_stream = MAX;
        c.limits.playback.get_media_tps_per_stream = 1_000.0;
    })
    .await;
    let (arn, _) = filled_stream(&server, "popular").await;
    let (other, _) = filled_stream(&server, "other").await;
    let now = StartSelector::builder().start_selector_type(StartSelectorType::Now).build().expect("sel");
    let call = |arn: &str| server.media().get_media().stream_arn(arn).start_selector(now.clone()).send();
    let mut open = Vec::new();
    for n in 0..MAX {
        open.push(call(&arn).await.unwrap_or_else(|e| panic!("GetMedia {n}: {e:?}")).payload);
    }
    assert_eq!(server.state.playback.live(&arn), MAX);

    let err = call(&arn).await.expect_err("one connection too many");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    let err = err.into_service_error();
    assert!(err.is_connection_limit_exceeded_exception(), "{err:?}");
    assert!(err.meta().message().is_some_and(|m| m.contains("popular")), "{err:?}");
    let _elsewhere = call(&other).await.expect("another stream has its own connections");

    // Closing one response frees its slot for the next caller.
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.state.playback.live(&arn) != MAX - 1 {
        assert!(Instant::now() < deadline, "the closed response still holds its slot");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut again = call(&arn).await.expect("the freed slot").payload;
    assert!(call(&arn).await.expect_err("full again").into_service_error().is_connection_limit_exceeded_exception());

    // The new reader is a working one: it gets the next fragment.
    let info = append(&server.stream(&arn), &fixture_fragments(now_ms())[0]).await;
    let mut buf = Vec::new();
    read_until(&mut again, &mut buf, 1, Duration::from_secs(5)).await;
    check_get_media_docs(&buf, &[info]);
}

#[tokio::test]
async fn get_media_works_without_retention() {
    let server = InProcess::start(None).await;
    let arn = server.create_stream("live-only", 0).await;
    let now = StartSelector::builder().start_selector_type(StartSelectorType::Now).build().expect("sel");
    let out = server.media().get_media().stream_arn(&arn).start_selector(now).send().await.expect("GetMedia");
    let mut payload = out.payload;
    let stream = server.stream(&arn);
    let frags = fixture_fragments(now_ms());
    let info = append(&stream, &frags[0]).await;
    let mut buf = Vec::new();
    read_until(&mut payload, &mut buf, 1, Duration::from_secs(1)).await;
    check_get_media_docs(&buf, &[info]);
}

#[tokio::test]
async fn get_media_start_selectors() {
    let server = InProcess::start(None).await;
    let (arn, stored) = filled_stream(&server, "selectors").await;
    let media = server.media();
    let first_docs = |sel: StartSelector, want: usize| {
        let media = media.clone();
        let arn = arn.clone();
        async move {
            let out = media.get_media().stream_arn(arn).start_selector(sel).send().await.expect("GetMedia");
            let mut payload = out.payload;
            let mut buf = Vec::new();
            read_until(&mut payload, &mut buf, want, Duration::from_secs(10)).await;
            buf
        }
    };
    let sel = |t: StartSelectorType| StartSelector::builder().start_selector_type(t);

    let buf = first_docs(
        sel(StartSelectorType::FragmentNumber)
            .after_fragment_number(stored[0].number.to_string())
            .build()
            .expect("sel"),
        2,
    )
    .await;
    check_get_media_docs(&buf, &stored[1..]);
    let buf = first_docs(
        sel(StartSelectorType::ContinuationToken)
            .continuation_token(stored[1].number.to_string())
            .build()
            .expect("sel"),
        1,
    )
    .await;
    check_get_media_docs(&buf, &stored[2..]);
    let ts = aws_sdk_kinesisvideomedia::primitives::DateTime::from_millis(stored[1].server_ts_ms as i64 + 500);
    let buf = first_docs(sel(StartSelectorType::ServerTimestamp).start_timestamp(ts).build().expect("sel"), 2).await;
    check_get_media_docs(&buf, &stored[1..]);
    let ts = aws_sdk_kinesisvideomedia::primitives::DateTime::from_millis(stored[2].producer_ts_ms as i64);
    let buf = first_docs(sel(StartSelectorType::ProducerTimestamp).start_timestamp(ts).build().expect("sel"), 1).await;
    check_get_media_docs(&buf, &stored[2..]);
}

#[tokio::test]
async fn get_media_errors() {
    let server = InProcess::start(Some(RESTRICTED_KEYS)).await;
    let (arn, _) = filled_stream(&server, "errs").await;
    let earliest = StartSelector::builder().start_selector_type(StartSelectorType::Earliest).build().expect("sel");

    let err = server
        .media()
        .get_media()
        .stream_name("no-such-stream")
        .start_selector(earliest.clone())
        .send()
        .await
        .expect_err("404");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(404));
    assert!(err.into_service_error().is_resource_not_found_exception());

    let no_number =
        StartSelector::builder().start_selector_type(StartSelectorType::FragmentNumber).build().expect("sel");
    let err = server.media().get_media().stream_arn(&arn).start_selector(no_number).send().await.expect_err("400");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    assert!(err.into_service_error().is_invalid_argument_exception());

    let ts_without_time =
        StartSelector::builder().start_selector_type(StartSelectorType::ServerTimestamp).build().expect("sel");
    let err =
        server.media().get_media().stream_arn(&arn).start_selector(ts_without_time).send().await.expect_err("400");
    assert!(err.into_service_error().is_invalid_argument_exception());

    let err = server
        .media_as(VIEWER_KEY, VIEWER_SECRET)
        .get_media()
        .stream_arn(&arn)
        .start_selector(earliest)
        .send()
        .await
        .expect_err("401");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(401));
    assert!(err.into_service_error().is_not_authorized_exception());
}

/// A key that may only list fragments, nothing else.
const VIEWER_KEY: &str = "AKIAREELLISTONLY0001";
const VIEWER_SECRET: &str = "list-only-secret-000000000000000000000000";
const RESTRICTED_KEYS: &str = r#"
[[key]]
access_key_id = "AKIAREELLISTONLY0001"
secret_access_key = "list-only-secret-000000000000000000000000"
[[key.statement]]
effect = "Allow"
action = ["kinesisvideo:ListFragments"]
resource = "arn:aws:kinesisvideo:*:*:stream/*"
"#;

use selectors::fragments as selector;

#[tokio::test]
async fn list_fragments_by_both_timestamps_with_pagination() {
    let server = InProcess::start(Some(RESTRICTED_KEYS)).await;
    let (arn, mut stored) = filled_stream(&server, "listing").await;
    let stream = server.stream(&arn);
    for f in fixture_fragments(now_ms() - 30_000) {
        stored.push(append(&stream, &f).await);
    }
    let client = server.archived();
    let all = (stored[0].server_ts_ms, stored[5].server_ts_ms);
    for kind in [FragmentSelectorType::ServerTimestamp, FragmentSelectorType::ProducerTimestamp] {
        let first = client
            .list_fragments()
            .stream_arn(&arn)
            .max_results(4)
            .fragment_selector(selector(kind.clone(), all.0, all.1))
            .send()
            .await
            .expect("ListFragments");
        assert_eq!(first.fragments().len(), 4);
        let token = first.next_token().expect("more pages").to_string();
        let second = client
            .list_fragments()
            .stream_name("listing")
            .max_results(4)
            .next_token(token)
            .send()
            .await
            .expect("page 2");
        assert!(second.next_token().is_none());
        let listed: Vec<_> = first.fragments().iter().chain(second.fragments()).collect();
        assert_eq!(listed.len(), 6);
        for (f, info) in listed.iter().zip(&stored) {
            assert_eq!(f.fragment_number(), Some(info.number.to_string().as_str()));
            // The SDK reads epoch seconds through an f64 and truncates, so `.893` may come
            // back as 892.999…: compare to the millisecond.
            let ms = |t: Option<&DateTime>| t.map(|t| (t.as_secs_f64() * 1000.0).round() as u64);
            assert_eq!(ms(f.server_timestamp()), Some(info.server_ts_ms));
            assert_eq!(ms(f.producer_timestamp()), Some(info.producer_ts_ms));
            assert_eq!(f.fragment_length_in_milliseconds(), i64::from(info.duration_ms));
            assert!(f.fragment_size_in_bytes() as u64 > info.payload_bytes);
        }
    }
    // A range holding only the second batch, by producer time.
    let out = client
        .list_fragments()
        .stream_arn(&arn)
        .fragment_selector(selector(
            FragmentSelectorType::ProducerTimestamp,
            stored[3].producer_ts_ms,
            u64::MAX / 2_000,
        ))
        .send()
        .await
        .expect("ListFragments");
    let numbers: Vec<_> = out.fragments().iter().filter_map(|f| f.fragment_number()).collect();
    let want: Vec<String> = stored[3..].iter().map(|f| f.number.to_string()).collect();
    assert_eq!(numbers, want);

    // The restricted key may list; errors keep the model's shapes.
    let listed =
        server.archived_as(VIEWER_KEY, VIEWER_SECRET).list_fragments().stream_arn(&arn).send().await.expect("allowed");
    assert_eq!(listed.fragments().len(), 6);
    let err =
        client.list_fragments().stream_arn(&arn).next_token("bm90LWEtdG9rZW4=").send().await.expect_err("bad token");
    assert!(err.into_service_error().is_invalid_argument_exception());
    let err = client.list_fragments().stream_name("missing").send().await.expect_err("404");
    assert!(err.into_service_error().is_resource_not_found_exception());
    let err = client.list_fragments().stream_arn(&arn).max_results(0).send().await.expect_err("400");
    assert!(err.into_service_error().is_invalid_argument_exception());
}

#[tokio::test]
async fn get_media_for_fragment_list_returns_named_fragments_and_error_tags() {
    let server = InProcess::start(Some(RESTRICTED_KEYS)).await;
    let (arn, stored) = filled_stream(&server, "byname").await;
    let missing = reel_storage::FragmentNumber::from_counter(stored[2].number.counter() + 1_000).to_string();
    let out = server
        .archived()
        .get_media_for_fragment_list()
        .stream_arn(&arn)
        .fragments(stored[2].number.to_string())
        .fragments(missing.clone())
        .fragments(stored[0].number.to_string())
        .send()
        .await
        .expect("GetMediaForFragmentList");
    assert_eq!(out.content_type(), Some("video/webm"));
    let body = out.payload.collect().await.expect("body").into_bytes();
    let doc = mkv::parse_document(&body).expect("MKV");
    assert_eq!(doc.clusters.len(), 2);
    let want_numbers = [stored[2].number.to_string(), missing.clone(), stored[0].number.to_string()];
    assert_eq!(tag_value(&doc.tags, tag::FRAGMENT_NUMBER), want_numbers);
    assert_eq!(
        tag_value(&doc.tags, tag::SERVER_SIDE_TIMESTAMP),
        [kvs_timestamp(stored[2].server_ts_ms), kvs_timestamp(stored[0].server_ts_ms)]
    );
    assert_eq!(
        tag_value(&doc.tags, tag::PRODUCER_SIDE_TIMESTAMP),
        [kvs_timestamp(stored[2].producer_ts_ms), kvs_timestamp(stored[0].producer_ts_ms)]
    );
    assert_eq!(tag_value(&doc.tags, tag::EXCEPTION_ERROR_CODE), ["4000"]);
    assert_eq!(tag_value(&doc.tags, tag::EXCEPTION_MESSAGE).len(), 1);
    assert!(tag_value(&doc.tags, tag::SERVER_TIMESTAMP).is_empty(), "GetMedia tag names are not used here");
    assert_eq!(doc.clusters[0].timecode_ms as u64, stored[2].producer_ts_ms);

    // Ordinary tools read a returned document (one fragment: H.264 + Opus).
    reel::testkit::probe::require(&["ffprobe", "ffmpeg"]);
    let one = server
        .archived()
        .get_media_for_fragment_list()
        .stream_arn(&arn)
        .fragments(stored[1].number.to_string())
        .send()
        .await
        .expect("one fragment")
        .payload
        .collect()
        .await
        .expect("body")
        .into_bytes();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fragment.mkv");
    std::fs::write(&path, &one).expect("write");
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0"])
        .arg(&path)
        .output()
        .expect("ffprobe");
    let stderr = String::from_utf8_lossy(&probe.stderr);
    assert!(probe.status.success() && stderr.trim().is_empty(), "ffprobe: {stderr}");
    let codecs = String::from_utf8_lossy(&probe.stdout);
    assert_eq!(codecs.split_whitespace().collect::<Vec<_>>(), ["h264", "opus"]);
    let decode = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    let stderr = String::from_utf8_lossy(&decode.stderr);
    assert!(decode.status.success() && stderr.trim().is_empty(), "ffmpeg decode: {stderr}");

    let client = server.archived();
    let err = client.get_media_for_fragment_list().stream_arn(&arn).fragments("12x").send().await.expect_err("400");
    assert!(err.into_service_error().is_invalid_argument_exception());
    let err = client.get_media_for_fragment_list().stream_arn(&arn).send().await.expect_err("no fragments");
    assert!(err.into_service_error().is_invalid_argument_exception());
    let err =
        client.get_media_for_fragment_list().stream_name("gone").fragments(missing).send().await.expect_err("404");
    assert!(err.into_service_error().is_resource_not_found_exception());
    let err = server
        .archived_as(VIEWER_KEY, VIEWER_SECRET)
        .get_media_for_fragment_list()
        .stream_arn(&arn)
        .fragments(stored[0].number.to_string())
        .send()
        .await
        .expect_err("401");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(401));
    assert!(err.into_service_error().is_not_authorized_exception());
}
