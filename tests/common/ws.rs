//! A real WebSocket client (tokio-tungstenite) for signaling tests: connect with or without
//! the `wss` subprotocol, read the KVS refusal of a connect, and exchange JSON frames.
#![allow(dead_code)]

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

/// A client WebSocket, plain or TLS.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a test waits for a frame or a close.
const WAIT: Duration = Duration::from_secs(10);

/// Connects to a (presigned) URL, asking for the `wss` subprotocol when `subprotocol`.
pub async fn try_connect(
    url: &str,
    subprotocol: bool,
) -> Result<(Ws, http::Response<Option<Vec<u8>>>), tungstenite::Error> {
    let mut req = url.into_client_request().expect("request");
    if subprotocol {
        req.headers_mut().insert("sec-websocket-protocol", "wss".parse().expect("header"));
    }
    tokio_tungstenite::connect_async(req).await
}

/// Connects or fails the test.
pub async fn connect(url: &str) -> Ws {
    try_connect(url, false).await.expect("connect").0
}

/// The HTTP status and JSON body (the KVS error shape) of a refused connect.
pub async fn refused(url: &str) -> (u16, serde_json::Value) {
    match try_connect(url, false).await {
        Err(tungstenite::Error::Http(res)) => {
            let body = res.body().clone().unwrap_or_default();
            (res.status().as_u16(), serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
        }
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected an HTTP refusal, got an upgrade"),
    }
}

/// The next text frame as JSON (pings and pongs skipped).
pub async fn recv_json(ws: &mut Ws) -> serde_json::Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next()).await.expect("timely").expect("open").expect("frame");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("json"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Sends `json` as one text frame.
pub async fn send(ws: &mut Ws, json: serde_json::Value) {
    ws.send(Message::Text(json.to_string().into())).await.expect("send");
}

/// The server closes the connection (close frame, EOF or reset).
pub async fn assert_closed(ws: &mut Ws) {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("timely") {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => panic!("expected the connection to close, got {other:?}"),
        }
    }
}

/// Nothing arrives within a short window (used only to show a message was NOT routed).
pub async fn assert_silent(ws: &mut Ws) {
    if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
        panic!("unexpected message {t}");
    }
}
