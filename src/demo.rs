//! `reel demo`: reel on its embedded defaults plus one simulated camera, for a first look.
//!
//! The camera is the load generator's publisher ([`reel_sim::publisher::run_camera`]): it
//! creates a storage-enabled channel through reel's own control plane, connects as the
//! KVS master, calls JoinStorageSession and streams the fixture H.264 + Opus in real time.
//! Once the camera's first fragment is stored, the demo prints a `/viewer` URL that plays the
//! live stream through a LIVE HLS session.
//!
//! The channel is reused when it exists (a second `reel demo` on the same data directory):
//! its stream then already holds fragments of earlier runs, so the demo waits for a *fresh*
//! one, whose server timestamp is not before the moment this demo's camera started (reel and
//! the camera share this process's clock).

use std::future::Future;
use std::time::{Duration, SystemTime};

use reel_sim::kvs::{ApiError as KvsError, FragmentMeta, KvsClient};
use reel_sim::publisher::{CameraConfig, StorageChannel};
use reel_sim::sigv4::Signer;
use tokio::sync::oneshot;

use crate::auth::{CredentialStore, CredentialsError};
use crate::config::{Config, TlsMode};
use crate::server::{self, ServeError};

/// Longest HLS session KVS allows (12 h), so the printed viewer URL outlives a long look.
const VIEWER_SESSION_SECS: u64 = 43_200;
/// How long the demo waits for the camera's first stored fragment.
const FIRST_FRAGMENT_WAIT: Duration = Duration::from_secs(30);
/// ListFragments poll interval while waiting for it.
const FIRST_FRAGMENT_POLL: Duration = Duration::from_millis(250);

/// What the demo camera publishes into.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Signaling channel name (its stream is `<name>-stream`); reused when it exists.
    pub channel_name: String,
    /// Camera payload bitrate, bits per second.
    pub bitrate_bps: u64,
}

/// Why the demo stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The demo camera speaks plain HTTP only.
    #[error("reel demo serves plain HTTP; drop --tls-cert/--tls-key/--tls-self-signed")]
    Tls,
    /// The data directory could not be created.
    #[error("cannot create data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Credentials could not be loaded or generated.
    #[error("credentials: {0}")]
    Credentials(#[from] CredentialsError),
    /// No root key is configured (only restricted keys in the credentials file).
    #[error("no root access key is configured for the demo camera")]
    NoRootKey,
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The server stopped before it listened.
    #[error("reel stopped before it listened")]
    NotListening,
    /// A control-plane or playback call failed.
    #[error("{0}")]
    Api(#[from] KvsError),
    /// The camera never got a fragment stored.
    #[error("no fragment was stored within {0:?}; see the log above")]
    NoFragment(Duration),
}

/// Runs reel and the demo camera until `shutdown` resolves (or the server fails).
pub async fn run(
    config: Config,
    options: DemoOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DemoError> {
    if config.tls != TlsMode::Off {
        return Err(DemoError::Tls);
    }
    crate::private_fs::create_private_dir(&config.data_dir)
        .map_err(|source| DemoError::DataDir { path: config.data_dir.clone(), source })?;
    // Load (or create) the root key first, so the camera signs with the key reel accepts.
    let (keys, _generated) =
        CredentialStore::load(config.root_key_pair(), config.credentials_file.as_deref(), &config.data_dir)?;
    let root = keys.root_key().ok_or(DemoError::NoRootKey)?;
    let (key_id, secret) = (root.access_key_id.clone(), root.secret().to_string());
    let region = config.region.clone();

    let (listening_tx, listening_rx) = oneshot::channel();
    let server = tokio::spawn(server::serve_with(config, shutdown, move |url| {
        let _ = listening_tx.send(url.to_string());
    }));
    let Ok(url) = listening_rx.await else {
        return match server.await {
            Ok(Err(e)) => Err(e.into()),
            _ => Err(DemoError::NotListening),
        };
    };
    println!("# demo credentials (for the AWS CLI and the viewer's sign-in):");
    println!("export AWS_ACCESS_KEY_ID={key_id}");
    println!("export AWS_SECRET_ACCESS_KEY={secret}");
    println!("export AWS_DEFAULT_REGION={region}");

    let mut camera = CameraConfig::new(&url, &key_id, &secret, &options.channel_name);
    camera.region = region.clone();
    camera.bitrate_bps = options.bitrate_bps;
    let (channel_tx, channel_rx) = oneshot::channel::<StorageChannel>();
    let camera_started = SystemTime::now();
    let camera_task = tokio::spawn(async move {
        let result = reel_sim::publisher::run_camera(camera, move |channel| {
            let _ = channel_tx.send(channel.clone());
        })
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "demo camera stopped");
        }
    });
    let announce = async {
        let Ok(channel) = channel_rx.await else { return Ok(()) };
        println!("# demo camera publishing into {}", channel.stream_arn);
        let client = KvsClient::new(&url, Signer::new(&key_id, &secret, &region));
        let session = live_session_url(&client, &channel.stream_arn, camera_started).await?;
        let encoded = percent_encode(&session);
        println!("# watch it live:");
        println!("{}/viewer#{encoded}", url.trim_end_matches('/'));
        Ok::<(), DemoError>(())
    };
    let announced = announce.await;
    if let Err(e) = &announced {
        tracing::error!(error = %e, "demo viewer URL");
    }
    // Run until the server stops (Ctrl-C); the camera ends with it.
    let served = server.await;
    camera_task.abort();
    match served {
        Ok(Err(e)) => Err(e.into()),
        _ => announced,
    }
}

/// Waits for the camera's first fragment (stored since `camera_started`), then opens a LIVE
/// HLS session on the stream.
async fn live_session_url(
    client: &KvsClient,
    stream_arn: &str,
    camera_started: SystemTime,
) -> Result<String, DemoError> {
    wait_for_fresh_fragment(client, stream_arn, camera_started).await?;
    let endpoint = client.data_endpoint(stream_arn, "GET_HLS_STREAMING_SESSION_URL").await?;
    let body = serde_json::json!({
        "StreamARN": stream_arn,
        "PlaybackMode": "LIVE",
        "ContainerFormat": "FRAGMENTED_MP4",
        "Expires": VIEWER_SESSION_SECS,
    });
    let v = client.call(&endpoint, "/getHLSStreamingSessionURL", body).await?;
    v["HLSStreamingSessionURL"].as_str().map(str::to_owned).ok_or_else(|| {
        DemoError::Api(KvsError::BadResponse {
            path: "/getHLSStreamingSessionURL".into(),
            detail: "no HLSStreamingSessionURL".into(),
        })
    })
}

/// Polls ListFragments (from `since` on) until a fragment whose server timestamp is not
/// before `since` is listed; fragments of earlier runs on a reused stream do not count.
async fn wait_for_fresh_fragment(client: &KvsClient, stream_arn: &str, since: SystemTime) -> Result<(), DemoError> {
    let endpoint = client.data_endpoint(stream_arn, "LIST_FRAGMENTS").await?;
    let since_ms = unix_ms(since);
    let deadline = tokio::time::Instant::now() + FIRST_FRAGMENT_WAIT;
    loop {
        let fragments = client.list_fragments_since(&endpoint, stream_arn, since).await?;
        if fragments.iter().any(|f| is_fresh(f, since_ms)) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DemoError::NoFragment(FIRST_FRAGMENT_WAIT));
        }
        tokio::time::sleep(FIRST_FRAGMENT_POLL).await;
    }
}

/// Whether a fragment was stored at or after `since_ms` (ms since the Unix epoch).
fn is_fresh(fragment: &FragmentMeta, since_ms: u64) -> bool {
    fragment.server_ms >= since_ms
}

/// `t` in ms since the Unix epoch (0 before it).
fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// `encodeURIComponent`, which the viewer page reverses on its `#fragment`.
fn percent_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'!')
        .remove(b'~')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fragments_stored_since_the_camera_started_are_fresh() {
        let f = |server_ms| FragmentMeta { number: "1".into(), size: 1, producer_ms: 0, server_ms, length_ms: 2000 };
        let started = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        let since = unix_ms(started);
        assert!(!is_fresh(&f(1_700_000_000_000), since), "an earlier run's fragment");
        assert!(is_fresh(&f(1_700_000_000_500), since));
        assert!(is_fresh(&f(1_700_000_003_000), since));
        assert_eq!(unix_ms(SystemTime::UNIX_EPOCH - Duration::from_secs(1)), 0);
    }

    #[test]
    fn viewer_fragment_is_uri_component_encoded() {
        assert_eq!(
            percent_encode("http://127.0.0.1:8080/hls/v1/x.m3u8?SessionToken=a+b/c="),
            "http%3A%2F%2F127.0.0.1%3A8080%2Fhls%2Fv1%2Fx.m3u8%3FSessionToken%3Da%2Bb%2Fc%3D"
        );
    }
}
