//! An in-process reel for data-plane tests: the real router, SQLite metadata and media store
//! in a temp dir, served on 127.0.0.1:0, with its `AppState` in reach so a test can append
//! real H.264/Opus fragments (from the fixture files, via `reel_media::fixture`) straight
//! into the store while official SDK clients read them back.
//!
//! Use from a test file with `#[path = "common/inproc.rs"] mod inproc;`.
#![allow(dead_code)]

use reel::config::Config;
use reel::server::AppState;
use reel_media::fixture::FixtureFragment;
use reel_storage::FragmentInfo;

/// Root key of the in-process server.
pub const ROOT_KEY_ID: &str = "AKIAREELINPROCROOT01";
/// Secret of [`ROOT_KEY_ID`].
pub const ROOT_SECRET: &str = "reel-inproc-root-secret-00000000000000000";
/// Region every client signs for.
pub const REGION: &str = "us-west-2";

/// A running in-process server.
pub struct InProcess {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its state (store, metadata…).
    pub state: AppState,
    _dir: tempfile::TempDir,
}

impl InProcess {
    /// Starts a server; `credentials_toml` adds keys (the `--credentials-file` format).
    pub async fn start(credentials_toml: Option<&str>) -> Self {
        Self::start_with(credentials_toml, |_| {}).await
    }

    /// As [`InProcess::start`], letting the test adjust the resolved configuration (limits…).
    pub async fn start_with(credentials_toml: Option<&str>, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = reel::testkit::loopback_config(dir.path()).expect("config");
        config.root_key = Some((ROOT_KEY_ID.into(), ROOT_SECRET.into()));
        config.credentials_file = credentials_toml.map(|t| {
            let p = dir.path().join("credentials.toml");
            std::fs::write(&p, t).expect("credentials file");
            p
        });
        tweak(&mut config);
        let (addr, state) = reel::server::spawn(config).await.expect("in-process server");
        InProcess { url: format!("http://{addr}"), state, _dir: dir }
    }

    fn creds(key_id: &str, secret: &str) -> aws_credential_types::Credentials {
        aws_credential_types::Credentials::new(key_id, secret, None, None, "reel-test")
    }

    /// Control-plane client signed with the given key.
    pub fn kvs_as(&self, key_id: &str, secret: &str) -> aws_sdk_kinesisvideo::Client {
        use aws_sdk_kinesisvideo::config::{BehaviorVersion, Region};
        aws_sdk_kinesisvideo::Client::from_conf(
            aws_sdk_kinesisvideo::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(REGION))
                .endpoint_url(&self.url)
                .credentials_provider(Self::creds(key_id, secret))
                .build(),
        )
    }

    /// Control-plane client (root key).
    pub fn kvs(&self) -> aws_sdk_kinesisvideo::Client {
        self.kvs_as(ROOT_KEY_ID, ROOT_SECRET)
    }

    /// `kinesis-video-media` client signed with the given key.
    pub fn media_as(&self, key_id: &str, secret: &str) -> aws_sdk_kinesisvideomedia::Client {
        use aws_sdk_kinesisvideomedia::config::{BehaviorVersion, Region};
        aws_sdk_kinesisvideomedia::Client::from_conf(
            aws_sdk_kinesisvideomedia::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(REGION))
                .endpoint_url(&self.url)
                .credentials_provider(Self::creds(key_id, secret))
                .build(),
        )
    }

    /// `kinesis-video-media` client (root key).
    pub fn media(&self) -> aws_sdk_kinesisvideomedia::Client {
        self.media_as(ROOT_KEY_ID, ROOT_SECRET)
    }

    /// `kinesis-video-archived-media` client signed with the given key.
    pub fn archived_as(&self, key_id: &str, secret: &str) -> aws_sdk_kinesisvideoarchivedmedia::Client {
        use aws_sdk_kinesisvideoarchivedmedia::config::{BehaviorVersion, Region};
        aws_sdk_kinesisvideoarchivedmedia::Client::from_conf(
            aws_sdk_kinesisvideoarchivedmedia::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(REGION))
                .endpoint_url(&self.url)
                .credentials_provider(Self::creds(key_id, secret))
                .build(),
        )
    }

    /// `kinesis-video-archived-media` client (root key).
    pub fn archived(&self) -> aws_sdk_kinesisvideoarchivedmedia::Client {
        self.archived_as(ROOT_KEY_ID, ROOT_SECRET)
    }

    /// Creates a stream through the control plane; returns its ARN.
    pub async fn create_stream(&self, name: &str, retention_hours: i32) -> String {
        let out = self
            .kvs()
            .create_stream()
            .stream_name(name)
            .data_retention_in_hours(retention_hours)
            .send()
            .await
            .expect("CreateStream");
        out.stream_arn().expect("StreamARN").to_string()
    }

    /// The store handle of a stream.
    pub fn stream(&self, arn: &str) -> reel_storage::Stream {
        self.state.core.store.stream(arn).expect("stream in store")
    }
}

/// A `[[key]]` of a credentials file (the `--credentials-file` format) with one statement
/// allowing `action` on `resources` (one: a TOML string; more: an array).
pub fn allowing_key(key_id: &str, secret: &str, action: &str, resources: &[&str]) -> String {
    let quoted: Vec<String> = resources.iter().map(|r| format!("\"{r}\"")).collect();
    let resource = match quoted.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    format!(
        "[[key]]\naccess_key_id = \"{key_id}\"\nsecret_access_key = \"{secret}\"\n[[key.statement]]\n\
         effect = \"Allow\"\naction = \"{action}\"\nresource = {resource}\n"
    )
}

/// The fixture media as three 2 s fragments whose first frame arrives at `start_unix_ms`
/// ([`reel::testkit::fixture_fragments`]).
pub fn fixture_fragments(start_unix_ms: u64) -> Vec<FixtureFragment> {
    reel::testkit::fixture_fragments(start_unix_ms as i64 * 1_000).expect("fixture files")
}

/// Writes one fragment to the store ([`reel::testkit::append`]); resolves once persisted.
pub async fn append(stream: &reel_storage::Stream, f: &FixtureFragment) -> FragmentInfo {
    reel::testkit::append(stream, f).await.expect("append fragment")
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64
}
