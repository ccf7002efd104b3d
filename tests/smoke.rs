//! The server starts, answers in the KVS error shape and stops cleanly on SIGTERM.

mod common;

use common::Reel;

#[test]
fn starts_and_stops_cleanly() {
    let reel = Reel::start();
    assert!(reel.url.starts_with("http://127.0.0.1:"), "url {}", reel.url);
    assert!(reel.stop(), "reel must exit 0 on SIGTERM");
}
