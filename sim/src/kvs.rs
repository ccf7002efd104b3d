//! A light KVS API client: SigV4-signed JSON POSTs over a plain HTTP client, for the calls a
//! camera master and the load generator make (control plane, JoinStorageSession, and the
//! read side: GetDataEndpoint, ListFragments, GetMedia, GetMediaForFragmentList,
//! GetHLSStreamingSessionURL).
//!
//! Shapes follow the service models (docs/kvs-wire.md §2, §4, §5). Errors come back as
//! [`ApiError::Service`] with the `x-amzn-ErrorType` code, like the official parsers read it.
//! Throttled control-plane calls (`ClientLimitExceededException`) are retried with backoff.
//! Plain `http://` endpoints only (no TLS stack here).

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::sigv4::{SignError, Signer};

/// Attempts for a throttled call before giving up.
pub const THROTTLE_RETRIES: u32 = 20;
/// First backoff after a throttled call (doubles up to [`MAX_BACKOFF`]).
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest backoff between throttled attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Request timeout for unary calls.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Request timeout for reading media back (GetMediaForFragmentList).
pub const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// What a KVS call returned instead of success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Transport failure (connect, reset, timeout).
    #[error("HTTP {path}: {source}")]
    Http {
        /// The API path.
        path: String,
        /// The client error.
        source: reqwest::Error,
    },
    /// The service answered with an error shape.
    #[error("{path}: {status} {code}: {message}")]
    Service {
        /// The API path.
        path: String,
        /// HTTP status.
        status: u16,
        /// `x-amzn-ErrorType` (e.g. `ResourceInUseException`).
        code: String,
        /// The `message` member.
        message: String,
    },
    /// The request could not be signed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// A success response without the member we need.
    #[error("{path}: unexpected response: {detail}")]
    BadResponse {
        /// The API path.
        path: String,
        /// What was wrong.
        detail: String,
    },
}

impl ApiError {
    /// The service error code, if the service answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Service { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A channel's endpoints for one role (GetSignalingChannelEndpoint: WSS, HTTPS, WEBRTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelEndpoints {
    /// `WSS`: ConnectAsMaster.
    pub wss: String,
    /// `HTTPS`: GetIceServerConfig.
    pub https: String,
    /// `WEBRTC`: JoinStorageSession, JoinStorageSessionAsViewer.
    pub webrtc: String,
}

/// One entry of a ListFragments answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FragmentMeta {
    /// `FragmentNumber` (decimal string).
    pub number: String,
    /// `FragmentSizeInBytes`.
    pub size: u64,
    /// `ProducerTimestamp`, ms since the epoch.
    pub producer_ms: u64,
    /// `ServerTimestamp`, ms since the epoch.
    pub server_ms: u64,
    /// `FragmentLengthInMilliseconds`.
    pub length_ms: u64,
}

/// A KVS endpoint and the key that signs calls to it.
#[derive(Debug, Clone)]
pub struct KvsClient {
    http: reqwest::Client,
    /// Control-plane endpoint, e.g. `http://198.18.0.1:34567`.
    pub endpoint: String,
    /// Signing key and region.
    pub signer: Signer,
}

impl KvsClient {
    /// A client for `endpoint` (no trailing slash needed).
    pub fn new(endpoint: &str, signer: Signer) -> Self {
        let http = reqwest::Client::builder().pool_max_idle_per_host(4).build().unwrap_or_default();
        Self { http, endpoint: endpoint.trim_end_matches('/').to_string(), signer }
    }

    /// A signed `POST base/path` with a JSON body; returns the successful response.
    /// `timeout` of `None` means no request timeout (streaming bodies).
    pub async fn post(
        &self,
        base: &str,
        path: &str,
        body: &Value,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, ApiError> {
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let bytes = body.to_string().into_bytes();
        let headers = self.signer.sign_post(&url, &bytes, SystemTime::now())?;
        let mut req = self.http.post(&url).header("content-type", "application/json").body(bytes);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let res = req.send().await.map_err(|source| ApiError::Http { path: path.into(), source })?;
        if res.status().is_success() {
            return Ok(res);
        }
        let status = res.status().as_u16();
        let code = res
            .headers()
            .get("x-amzn-ErrorType")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or(v).to_string());
        let text = res.text().await.unwrap_or_default();
        let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let code =
            code.or_else(|| parsed["__type"].as_str().map(str::to_owned)).unwrap_or_else(|| format!("HTTP{status}"));
        let message = parsed["message"].as_str().or(parsed["Message"].as_str()).unwrap_or(&text).to_string();
        Err(ApiError::Service { path: path.into(), status, code, message })
    }

    /// A unary call returning the JSON body, retrying throttled attempts.
    pub async fn call(&self, base: &str, path: &str, body: Value) -> Result<Value, ApiError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.post(base, path, &body, Some(CALL_TIMEOUT)).await {
                Ok(res) => {
                    let text = res.text().await.map_err(|source| ApiError::Http { path: path.into(), source })?;
                    if text.trim().is_empty() {
                        return Ok(Value::Null);
                    }
                    return serde_json::from_str(&text)
                        .map_err(|e| ApiError::BadResponse { path: path.into(), detail: format!("{e}: {text}") });
                }
                Err(e) if e.code() == Some("ClientLimitExceededException") && attempt < THROTTLE_RETRIES => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn member(path: &str, v: &Value, name: &str) -> Result<String, ApiError> {
        v[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ApiError::BadResponse { path: path.into(), detail: format!("no {name} in {v}") })
    }

    /// CreateSignalingChannel (SINGLE_MASTER); returns the ChannelARN. An existing channel
    /// of that name is looked up instead.
    pub async fn create_signaling_channel(&self, name: &str) -> Result<String, ApiError> {
        let ep = self.endpoint.clone();
        match self.call(&ep, "/createSignalingChannel", json!({ "ChannelName": name })).await {
            Ok(v) => Self::member("/createSignalingChannel", &v, "ChannelARN"),
            Err(e) if e.code() == Some("ResourceInUseException") => {
                let v = self.call(&ep, "/describeSignalingChannel", json!({ "ChannelName": name })).await?;
                Self::member("/describeSignalingChannel", &v["ChannelInfo"], "ChannelARN")
            }
            Err(e) => Err(e),
        }
    }

    /// CreateStream with this retention; returns the StreamARN (an existing stream of that
    /// name is looked up instead).
    pub async fn create_stream(&self, name: &str, retention_hours: u32) -> Result<String, ApiError> {
        let ep = self.endpoint.clone();
        let body = json!({ "StreamName": name, "DataRetentionInHours": retention_hours });
        match self.call(&ep, "/createStream", body).await {
            Ok(v) => Self::member("/createStream", &v, "StreamARN"),
            Err(e) if e.code() == Some("ResourceInUseException") => {
                let v = self.call(&ep, "/describeStream", json!({ "StreamName": name })).await?;
                Self::member("/describeStream", &v["StreamInfo"], "StreamARN")
            }
            Err(e) => Err(e),
        }
    }

    /// UpdateMediaStorageConfiguration: map the channel to the stream, ENABLED.
    pub async fn enable_media_storage(&self, channel_arn: &str, stream_arn: &str) -> Result<(), ApiError> {
        let body = json!({
            "ChannelARN": channel_arn,
            "MediaStorageConfiguration": { "StreamARN": stream_arn, "Status": "ENABLED" },
        });
        self.call(&self.endpoint.clone(), "/updateMediaStorageConfiguration", body).await.map(|_| ())
    }

    /// GetSignalingChannelEndpoint as MASTER for WSS, HTTPS and WEBRTC.
    pub async fn master_endpoints(&self, channel_arn: &str) -> Result<ChannelEndpoints, ApiError> {
        self.endpoints(channel_arn, "MASTER").await
    }

    /// GetSignalingChannelEndpoint as VIEWER for WSS, HTTPS and WEBRTC (in a cluster: the
    /// node that runs the channel's storage session, where live viewers are served).
    pub async fn viewer_endpoints(&self, channel_arn: &str) -> Result<ChannelEndpoints, ApiError> {
        self.endpoints(channel_arn, "VIEWER").await
    }

    async fn endpoints(&self, channel_arn: &str, role: &str) -> Result<ChannelEndpoints, ApiError> {
        let path = "/getSignalingChannelEndpoint";
        let body = json!({
            "ChannelARN": channel_arn,
            "SingleMasterChannelEndpointConfiguration": { "Protocols": ["WSS", "HTTPS", "WEBRTC"], "Role": role },
        });
        let v = self.call(&self.endpoint.clone(), path, body).await?;
        let find = |p: &str| -> Result<String, ApiError> {
            v["ResourceEndpointList"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["Protocol"] == p)
                .and_then(|e| e["ResourceEndpoint"].as_str())
                .map(str::to_owned)
                .ok_or_else(|| ApiError::BadResponse { path: path.into(), detail: format!("no {p} endpoint in {v}") })
        };
        Ok(ChannelEndpoints { wss: find("WSS")?, https: find("HTTPS")?, webrtc: find("WEBRTC")? })
    }

    /// JoinStorageSession on the `WEBRTC` endpoint. A throttled call did nothing and is
    /// retried with backoff, as camera SDKs do; any other error is returned.
    pub async fn join_storage_session(&self, webrtc: &str, channel_arn: &str) -> Result<(), ApiError> {
        let body = json!({ "channelArn": channel_arn });
        let (mut backoff, mut attempt) = (FIRST_BACKOFF, 0);
        loop {
            attempt += 1;
            match self.post(webrtc, "/joinStorageSession", &body, Some(CALL_TIMEOUT)).await {
                Err(e) if e.code() == Some("ClientLimitExceededException") && attempt < THROTTLE_RETRIES => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                r => return r.map(|_| ()),
            }
        }
    }

    /// JoinStorageSessionAsViewer on the `WEBRTC` endpoint for the viewer connected to
    /// signaling as `client_id`. A throttled call (the per-channel call rate) is retried
    /// with backoff; the viewer cap (`ClientLimitExceededException` naming "the maximum
    /// number of viewers") is not, since waiting does not free a seat.
    pub async fn join_storage_session_as_viewer(
        &self,
        webrtc: &str,
        channel_arn: &str,
        client_id: &str,
    ) -> Result<(), ApiError> {
        let body = json!({ "channelArn": channel_arn, "clientId": client_id });
        let (mut backoff, mut attempt) = (FIRST_BACKOFF, 0);
        loop {
            attempt += 1;
            match self.post(webrtc, "/joinStorageSessionAsViewer", &body, Some(CALL_TIMEOUT)).await {
                Err(ApiError::Service { ref code, ref message, .. })
                    if code == "ClientLimitExceededException"
                        && !message.to_lowercase().contains("maximum number of viewers")
                        && attempt < THROTTLE_RETRIES =>
                {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                r => return r.map(|_| ()),
            }
        }
    }

    /// GetDataEndpoint for `api_name` (e.g. `LIST_FRAGMENTS`).
    pub async fn data_endpoint(&self, stream_arn: &str, api_name: &str) -> Result<String, ApiError> {
        let v = self
            .call(&self.endpoint.clone(), "/getDataEndpoint", json!({ "StreamARN": stream_arn, "APIName": api_name }))
            .await?;
        Self::member("/getDataEndpoint", &v, "DataEndpoint")
    }

    /// Every fragment of the stream (ListFragments by server timestamp 0…now+1 day, paged).
    pub async fn list_fragments(&self, data_endpoint: &str, stream_arn: &str) -> Result<Vec<FragmentMeta>, ApiError> {
        self.list_fragments_since(data_endpoint, stream_arn, SystemTime::UNIX_EPOCH).await
    }

    /// The fragments with a server timestamp from `since` to now + 1 day (paged), in
    /// fragment-number order.
    pub async fn list_fragments_since(
        &self,
        data_endpoint: &str,
        stream_arn: &str,
        since: SystemTime,
    ) -> Result<Vec<FragmentMeta>, ApiError> {
        let path = "/listFragments";
        let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let end = secs(SystemTime::now()) + 86_400.0;
        let mut body = json!({
            "StreamARN": stream_arn,
            "MaxResults": 1000,
            "FragmentSelector": {
                "FragmentSelectorType": "SERVER_TIMESTAMP",
                "TimestampRange": { "StartTimestamp": secs(since), "EndTimestamp": end },
            },
        });
        let mut out = Vec::new();
        loop {
            let v = self.call(data_endpoint, path, body.clone()).await?;
            for f in v["Fragments"].as_array().into_iter().flatten() {
                out.push(
                    parse_fragment(f).ok_or_else(|| ApiError::BadResponse {
                        path: path.into(),
                        detail: format!("bad fragment {f}"),
                    })?,
                );
            }
            match v["NextToken"].as_str() {
                Some(t) => body = json!({ "StreamARN": stream_arn, "MaxResults": 1000, "NextToken": t }),
                None => break,
            }
        }
        // Decimal strings without leading zeros: numeric order is (length, text).
        out.sort_by(|a, b| (a.number.len(), &a.number).cmp(&(b.number.len(), &b.number)));
        Ok(out)
    }

    /// GetMedia with `StartSelectorType` (e.g. `EARLIEST`): the open streaming response.
    pub async fn get_media(
        &self,
        data_endpoint: &str,
        stream_arn: &str,
        start: &str,
    ) -> Result<reqwest::Response, ApiError> {
        let body = json!({ "StreamARN": stream_arn, "StartSelector": { "StartSelectorType": start } });
        self.post(data_endpoint, "/getMedia", &body, None).await
    }

    /// GetMediaForFragmentList: the whole MKV body for `fragments` (at most 1000 numbers),
    /// one document per fragment in the order given.
    pub async fn get_media_for_fragment_list(
        &self,
        data_endpoint: &str,
        stream_arn: &str,
        fragments: &[String],
    ) -> Result<Vec<u8>, ApiError> {
        let path = "/getMediaForFragmentList";
        let body = json!({ "StreamARN": stream_arn, "Fragments": fragments });
        let res = self.post(data_endpoint, path, &body, Some(READ_TIMEOUT)).await?;
        let bytes = res.bytes().await.map_err(|source| ApiError::Http { path: path.into(), source })?;
        Ok(bytes.to_vec())
    }

    /// GetHLSStreamingSessionURL, LIVE, fragmented MP4, `#EXT-X-PROGRAM-DATE-TIME` on
    /// (`DisplayFragmentTimestamp` ALWAYS), producer timestamps.
    pub async fn hls_live_url(&self, data_endpoint: &str, stream_arn: &str) -> Result<String, ApiError> {
        let body = json!({
            "StreamARN": stream_arn,
            "PlaybackMode": "LIVE",
            "DisplayFragmentTimestamp": "ALWAYS",
            "HLSFragmentSelector": { "FragmentSelectorType": "PRODUCER_TIMESTAMP" },
        });
        let v = self.call(data_endpoint, "/getHLSStreamingSessionURL", body).await?;
        Self::member("/getHLSStreamingSessionURL", &v, "HLSStreamingSessionURL")
    }

    /// An unsigned GET (HLS playlists, `/metrics`), body as text.
    pub async fn get_text(&self, url: &str) -> Result<String, ApiError> {
        let res = self
            .http
            .get(url)
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|source| ApiError::Http { path: url.into(), source })?;
        let status = res.status().as_u16();
        let text = res.text().await.map_err(|source| ApiError::Http { path: url.into(), source })?;
        if !(200..300).contains(&status) {
            return Err(ApiError::Service { path: url.into(), status, code: format!("HTTP{status}"), message: text });
        }
        Ok(text)
    }
}

/// Seconds-with-fraction (JSON number) to whole ms.
fn secs_to_ms(v: &Value) -> Option<u64> {
    let s = v.as_f64()?;
    (s >= 0.0).then(|| (s * 1000.0).round() as u64)
}

/// One `Fragment` member of a ListFragments answer.
pub fn parse_fragment(f: &Value) -> Option<FragmentMeta> {
    Some(FragmentMeta {
        number: f["FragmentNumber"].as_str()?.to_string(),
        size: f["FragmentSizeInBytes"].as_u64()?,
        producer_ms: secs_to_ms(&f["ProducerTimestamp"])?,
        server_ms: secs_to_ms(&f["ServerTimestamp"])?,
        length_ms: f["FragmentLengthInMilliseconds"].as_u64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_list_fragments_entry() {
        let v = json!({
            "FragmentNumber": "91343852333181432392682062607743920146264440341",
            "FragmentSizeInBytes": 250_123,
            "ProducerTimestamp": 1_700_000_000.123,
            "ServerTimestamp": 1_700_000_000.2,
            "FragmentLengthInMilliseconds": 2000,
        });
        let f = parse_fragment(&v).unwrap();
        assert_eq!(f.producer_ms, 1_700_000_000_123);
        assert_eq!(f.server_ms, 1_700_000_000_200);
        assert_eq!(f.length_ms, 2000);
        assert!(parse_fragment(&json!({ "FragmentNumber": "1" })).is_none());
    }
}
