//! Browsers on other origins (CORS): a preflight is answered before authentication, signed
//! answers (errors included) are readable with the headers KVS clients read, `/metrics`
//! stays same-origin, and `--cors-origin` narrows or turns it off. The browser tests
//! (tests/ingest_browser.rs, tests/storage_viewers_browser.rs) run the KVS JS SDK on another
//! origin than reel, with Chromium's own CORS checks on.

mod common;

use common::signing::signed_post_headers;
use common::{Options, ROOT_KEY_ID, ROOT_SECRET, Reel};
use reqwest::Method;

const PAGE: &str = "https://app.example.com";

fn reel(args: &[&str]) -> Reel {
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.extend(["--metrics".into(), "open".into()]);
    Reel::start_with(Options { args, ..Default::default() })
}

/// The preflight a browser sends before a signed POST from `origin`.
async fn preflight(reel: &Reel, path: &str, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, format!("{}{path}", reel.url))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type,x-amz-date,x-amz-content-sha256")
        .send()
        .await
        .expect("preflight")
}

/// A signed POST of `body` to `path`, from a page on `origin`.
async fn signed(reel: &Reel, path: &str, body: &str, origin: &str) -> reqwest::Response {
    let url = format!("{}{path}", reel.url);
    let mut req = reqwest::Client::new().post(&url).header("origin", origin).body(body.to_string());
    for (k, v) in signed_post_headers(&url, body.as_bytes(), ROOT_KEY_ID, ROOT_SECRET) {
        req = req.header(k, v);
    }
    req.send().await.expect("signed POST")
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn any_origin_by_default_as_kvs_answers() {
    let reel = reel(&[]);
    let pre = preflight(&reel, "/listSignalingChannels", PAGE).await;
    assert!(pre.status().is_success(), "preflight: {}", pre.status());
    assert_eq!(header(&pre, "access-control-allow-origin"), Some("*"));
    let methods = header(&pre, "access-control-allow-methods").unwrap_or_default().to_string();
    assert!(methods.contains("POST"), "{methods}");
    assert_eq!(
        header(&pre, "access-control-allow-headers"),
        Some("authorization,content-type,x-amz-date,x-amz-content-sha256"),
        "the headers SigV4 signed are allowed"
    );

    let ok = signed(&reel, "/listSignalingChannels", "{}", PAGE).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(header(&ok, "access-control-allow-origin"), Some("*"));
    let exposed = header(&ok, "access-control-expose-headers").unwrap_or_default().to_lowercase();
    for h in ["x-amzn-requestid", "x-amzn-errortype"] {
        assert!(exposed.contains(h), "{h} not exposed: {exposed}");
    }
    // An error answer is readable too: the page learns the KVS error type.
    let err = signed(&reel, "/describeSignalingChannel", r#"{"ChannelName":"nope"}"#, PAGE).await;
    assert_eq!(err.status(), 404);
    assert_eq!(header(&err, "access-control-allow-origin"), Some("*"));
    assert!(header(&err, "x-amzn-ErrorType").is_some_and(|t| t.starts_with("ResourceNotFoundException")));
    // An unsigned call from a page is still refused, readably.
    let unsigned = reqwest::Client::new()
        .post(format!("{}/listSignalingChannels", reel.url))
        .header("origin", PAGE)
        .body("{}")
        .send()
        .await
        .expect("unsigned");
    assert_eq!(unsigned.status(), 403);
    assert_eq!(header(&unsigned, "access-control-allow-origin"), Some("*"));

    // Playback URLs (hls.js fetches them from the page): readable, even when refused.
    let hls = reqwest::Client::new()
        .get(format!("{}/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=not-a-session", reel.url))
        .header("origin", PAGE)
        .send()
        .await
        .expect("HLS");
    assert!(hls.status().is_client_error(), "{}", hls.status());
    assert_eq!(header(&hls, "access-control-allow-origin"), Some("*"));

    // Operational endpoints stay same-origin.
    for path in ["/metrics", "/healthz"] {
        let res =
            reqwest::Client::new().get(format!("{}{path}", reel.url)).header("origin", PAGE).send().await.expect(path);
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(header(&res, "access-control-allow-origin"), None, "{path} must not be readable cross-origin");
    }
}

#[tokio::test]
async fn cors_origin_narrows_or_turns_it_off() {
    let listed = reel(&["--cors-origin", "https://app.example.com/,http://127.0.0.1:3000"]);
    let pre = preflight(&listed, "/listSignalingChannels", PAGE).await;
    assert_eq!(header(&pre, "access-control-allow-origin"), Some(PAGE));
    let res = signed(&listed, "/listSignalingChannels", "{}", "http://127.0.0.1:3000").await;
    assert_eq!(header(&res, "access-control-allow-origin"), Some("http://127.0.0.1:3000"));
    let other = preflight(&listed, "/listSignalingChannels", "https://evil.example").await;
    assert_eq!(header(&other, "access-control-allow-origin"), None, "an origin not listed gets no grant");

    let off = reel(&["--cors-origin", "none"]);
    let pre = preflight(&off, "/listSignalingChannels", PAGE).await;
    assert_eq!(header(&pre, "access-control-allow-origin"), None);
    let res = signed(&off, "/listSignalingChannels", "{}", PAGE).await;
    assert_eq!((res.status().as_u16(), header(&res, "access-control-allow-origin")), (200, None));
    // A value that is no origin stops the start: tests/server.rs.
}
