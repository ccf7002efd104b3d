//! Secrets at rest (issue 15, item 9): the data directory is private from its creation, and
//! the root secret can come from a file instead of the (world-visible) command line.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Options, Reel};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[tokio::test]
async fn the_data_dir_is_created_owner_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("fresh").join("reel-data");
    let config = reel::testkit::loopback_config(&data_dir).expect("config");
    let (_addr, _state) = reel::server::spawn(config).await.expect("in-process server");
    assert_eq!(mode(&data_dir), 0o700, "data dir");
    assert_eq!(mode(data_dir.parent().expect("parent")), 0o700, "the parents it created too");
    // TLS keys: `tls::tests::generated_keys_are_private_from_the_start`.
}

#[tokio::test]
async fn the_root_secret_can_come_from_a_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let secret = "secret-from-a-file-0000000000000000000000";
    let path = common::write_file(tmp.path(), "root-secret", &format!("{secret}\n"));
    let reel = Reel::start_with(Options {
        no_root_key: true,
        args: vec![
            "--access-key-id".into(),
            "AKIAFROMFILE00000001".into(),
            "--secret-access-key-file".into(),
            path.display().to_string(),
        ],
        ..Default::default()
    });
    reel.kvs_as("AKIAFROMFILE00000001", secret)
        .list_signaling_channels()
        .send()
        .await
        .expect("the file's secret signs");
    let wrong = reel.kvs_as("AKIAFROMFILE00000001", "not-the-secret").list_signaling_channels().send().await;
    assert!(wrong.is_err(), "another secret does not");
    assert!(!reel.log().contains(secret), "the secret is not logged");
}
