//! The server starts, answers in the KVS error shape and stops cleanly on SIGTERM.

mod common;

use common::Reel;

#[test]
fn starts_answers_kvs_errors_and_stops_cleanly() {
    let reel = Reel::start();
    assert!(reel.url.starts_with("http://127.0.0.1:"), "url {}", reel.url);
    // An unsigned call: a restJson1 error (docs/kvs-wire.md §1.2), as the SDKs parse it.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (status, headers, body) = rt.block_on(async {
        let res = reqwest::Client::new()
            .post(format!("{}/describeSignalingChannel", reel.url))
            .header("content-type", "application/json")
            .body(r#"{"ChannelName":"cam"}"#)
            .send()
            .await
            .expect("POST /describeSignalingChannel");
        let (status, headers) = (res.status(), res.headers().clone());
        (status, headers, res.text().await.expect("body"))
    });
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("JSON body ({e}): {body}"));
    assert_eq!(status.as_u16(), 403, "{body}");
    assert_eq!(header("x-amzn-ErrorType"), "MissingAuthenticationTokenException", "{headers:?}");
    assert_eq!(json["__type"], "MissingAuthenticationTokenException", "{body}");
    assert!(!header("x-amzn-RequestId").is_empty(), "x-amzn-RequestId: {headers:?}");
    assert!(header("content-type").starts_with("application/json"), "{headers:?}");
    let message = json["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty() && json["Message"] == message, "message and Message: {body}");
    assert!(reel.stop(), "reel must exit 0 on SIGTERM");
}
