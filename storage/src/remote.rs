//! The S3 backend: sealed segments are uploaded as objects, the local copies become a
//! bounded cache, and reads of evicted segments are served by ranged GETs.
//!
//! Object key of a segment: `{prefix}{stream dir}/seg-{seq:020}.log`. The local directory
//! stays the source of truth for stream metadata and the index; S3 holds segment bytes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig, retry::RetryConfig, timeout::TimeoutConfig,
};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use crate::error::{Result, StoreError};

/// Where and how to reach the S3 (or S3-compatible) service.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// Custom endpoint (e.g. `http://127.0.0.1:9000` for an S3-compatible server); `None` = AWS.
    pub endpoint_url: Option<String>,
    /// Signing region.
    pub region: String,
    /// Bucket holding the segments (must exist).
    pub bucket: String,
    /// Key prefix, e.g. `"reel/"`; may be empty.
    pub prefix: String,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most S3-compatible servers.
    pub force_path_style: bool,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token for temporary credentials.
    pub session_token: Option<String>,
    /// Bytes of uploaded segments kept on local disk as a read cache (oldest evicted first).
    pub local_cache_max_bytes: u64,
    /// Bytes of sealed segments still waiting for upload beyond which new fragments are
    /// refused with [`StoreError::S3Unavailable`] (back-pressure while S3 is down).
    pub max_pending_upload_bytes: u64,
    /// Attempts per S3 request (the SDK's standard retry with backoff).
    pub max_attempts: u32,
    /// Time limit of one S3 operation, retries included.
    pub operation_timeout: Duration,
}

impl S3Config {
    /// A config with defaults: 1 GiB cache, 4 GiB pending-upload limit, 3 attempts, 30 s timeout.
    pub fn new(
        bucket: impl Into<String>,
        region: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        S3Config {
            endpoint_url: None,
            region: region.into(),
            bucket: bucket.into(),
            prefix: String::new(),
            force_path_style: false,
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
            local_cache_max_bytes: 1 << 30,
            max_pending_upload_bytes: 4 << 30,
            max_attempts: 3,
            operation_timeout: Duration::from_secs(30),
        }
    }
}

/// A connected S3 backend plus upload bookkeeping.
#[derive(Debug)]
pub(crate) struct Remote {
    client: aws_sdk_s3::Client,
    pub(crate) config: S3Config,
    /// Bytes of sealed segments not yet uploaded.
    pub(crate) pending_bytes: AtomicU64,
    /// Last upload failure, reported to writers refused for back-pressure.
    pub(crate) last_error: Mutex<Option<String>>,
}

impl Remote {
    pub(crate) fn new(config: S3Config) -> Self {
        let creds = Credentials::new(
            config.access_key_id.clone(),
            config.secret_access_key.clone(),
            config.session_token.clone(),
            None,
            "reel-storage",
        );
        let mut b = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(creds)
            .force_path_style(config.force_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts.max(1)))
            // Uploads are in-memory segments: no producer can stall them, and the operation
            // timeout bounds a stalled connection. Downloads keep the throughput check.
            .stalled_stream_protection(StalledStreamProtectionConfig::enabled().upload_enabled(false).build())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(config.operation_timeout)
                    .connect_timeout(Duration::from_secs(5))
                    .build(),
            );
        if let Some(url) = &config.endpoint_url {
            b = b.endpoint_url(url);
        }
        Remote {
            client: aws_sdk_s3::Client::from_conf(b.build()),
            config,
            pending_bytes: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// Object key of segment `seq` of the stream stored in directory `stream_dir`.
    pub(crate) fn key(&self, stream_dir: &str, seq: u64) -> String {
        format!("{}{stream_dir}/seg-{seq:020}.log", self.config.prefix)
    }

    /// Whether the bucket answers (HeadBucket), for readiness checks.
    pub(crate) async fn check(&self) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.config.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| unavailable("HeadBucket", &self.config.bucket, &DisplayErrorContext(&e)))
    }

    /// Uploads a whole object (a segment, or a shared-mode fragment).
    ///
    /// The body is not hashed for the signature (`UNSIGNED-PAYLOAD`: SigV4 would run
    /// SHA-256 over every byte, the largest CPU cost of replication); its integrity is kept
    /// by a CRC32C checksum (hardware-accelerated) sent in the signed
    /// `x-amz-checksum-crc32c` header, which S3 verifies before storing the object and
    /// refuses with `BadDigest` on mismatch. Over plain `http://` this guards against
    /// corruption, not against a tampering man-in-the-middle (the checksum is not a MAC):
    /// reach S3 over `https://` across networks you do not trust.
    pub(crate) async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        let crc = crc32c_header(&body);
        self.client
            .put_object()
            .bucket(&self.config.bucket)
            .key(key)
            .checksum_crc32_c(crc)
            .body(ByteStream::from(body))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map(|_| ())
            .map_err(|e| unavailable("PutObject", key, &DisplayErrorContext(&e)))
    }

    /// Reads `len` bytes at `offset` of an object.
    pub(crate) async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let out = self
            .client
            .get_object()
            .bucket(&self.config.bucket)
            .key(key)
            .range(format!("bytes={}-{}", offset, offset + len - 1))
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) if se.is_no_such_key() => {
                    StoreError::corrupt(std::path::Path::new(key), offset, "segment object missing from S3")
                }
                _ => unavailable("GetObject", key, &DisplayErrorContext(&e)),
            })?;
        let bytes = out.body.collect().await.map_err(|e| unavailable("GetObject body", key, &e))?.into_bytes();
        if bytes.len() as u64 != len {
            return Err(StoreError::corrupt(
                std::path::Path::new(key),
                offset,
                format!("ranged GET returned {} of {len} bytes", bytes.len()),
            ));
        }
        Ok(bytes)
    }

    /// Deletes an object (missing objects are fine).
    pub(crate) async fn delete(&self, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.config.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| unavailable("DeleteObject", key, &DisplayErrorContext(&e)))
    }

    /// Whether writers must be refused because too much is waiting for upload.
    pub(crate) fn backlog_error(&self) -> Option<StoreError> {
        let pending = self.pending_bytes.load(Ordering::Relaxed);
        (pending > self.config.max_pending_upload_bytes).then(|| {
            let last = self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
            StoreError::S3Unavailable {
                message: format!(
                    "{pending} bytes of sealed segments are waiting for upload (limit {}); last error: {}",
                    self.config.max_pending_upload_bytes,
                    last.unwrap_or_else(|| "none".into())
                ),
            }
        })
    }
}

/// The `x-amz-checksum-crc32c` value of `body`: its CRC32C, big-endian, base64.
fn crc32c_header(body: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(crc32c::crc32c(body).to_be_bytes())
}

fn unavailable(op: &str, key: &str, e: &dyn std::fmt::Display) -> StoreError {
    StoreError::S3Unavailable { message: format!("{op} {key}: {e}") }
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32c_header_is_the_big_endian_checksum_in_base64() {
        // CRC32C("123456789") = 0xE3069283 (the catalogue check value).
        assert_eq!(super::crc32c_header(b"123456789"), "4waSgw==");
        assert_eq!(super::crc32c_header(b""), "AAAAAA==");
    }
}
