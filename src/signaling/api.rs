//! The signaling HTTPS API (service `kinesis-video-signaling`, docs/kvs-wire.md §3.6):
//! `POST /v1/get-ice-server-config` and `POST /v1/send-alexa-offer-to-master`.

use std::time::{Duration, Instant, SystemTime};

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::Signaling;
use super::registry::ChannelInfo;
use super::validate::{is_channel_arn, is_client_id};
use crate::api::Core;
use crate::api::access;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::meta::ChannelRecord;

/// Longest `MessagePayload` of SendAlexaOfferToMaster (model: 10000).
pub const MAX_ALEXA_PAYLOAD: usize = 10_000;

/// `GetIceServerConfig` request members.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetIceServerConfigRequest {
    #[serde(rename = "ChannelARN")]
    channel_arn: Option<String>,
    client_id: Option<String>,
    service: Option<String>,
    username: Option<String>,
}

/// One `IceServer` of the response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IceServer {
    /// `stun:` / `turn:` URIs (at most 4, the C SDK's limit).
    pub uris: Vec<String>,
    /// TURN username.
    pub username: String,
    /// TURN password.
    pub password: String,
    /// Seconds the credentials stay valid (integer: the C SDK parses a bare integer).
    pub ttl: u64,
}

/// `GetIceServerConfig` response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetIceServerConfigResponse {
    /// At most 5 servers (the C SDK ignores more).
    pub ice_server_list: Vec<IceServer>,
}

fn parse_body<T: for<'de> Deserialize<'de> + Default>(body: &Bytes) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::serialization(format!("request body is not the expected JSON: {e}")))
}

/// Validate the ARN, authorize it, find the channel and apply the per-channel rate.
async fn channel_for(
    st: &Core,
    principal: &Principal,
    arn: Option<&str>,
    operation: &'static str,
    tps: f64,
) -> ApiResult<ChannelRecord> {
    let arn = arn.unwrap_or_default();
    if !is_channel_arn(arn) {
        return Err(ApiError::invalid_argument("ChannelARN must be a signaling channel ARN"));
    }
    // Authorize the ARN as given before looking it up (the lookup is by exact ARN), so a
    // caller without rights learns nothing about whether the channel exists.
    access::authorize_action(principal, &format!("kinesisvideo:{operation}"), arn, ApiError::not_authorized)?;
    let channel = st
        .meta
        .channel_by_arn(arn)
        .await
        .map_err(|e| ApiError::internal(format!("metadata lookup failed: {e}")))?
        .ok_or_else(|| ApiError::not_found(format!("The requested channel is not found or not active: {arn}")))?;
    if !st.throttle.take(&format!("{operation}|{}", channel.arn), tps) {
        return Err(ApiError::client_limit(format!(
            "Rate exceeded for {operation}: limit is {tps} requests per second per channel"
        )));
    }
    Ok(channel)
}

/// `POST /v1/get-ice-server-config`.
pub async fn get_ice_server_config(
    State(st): State<Core>,
    State(signaling): State<Signaling>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<GetIceServerConfigResponse>> {
    let req: GetIceServerConfigRequest = parse_body(&body)?;
    if req.client_id.as_deref().is_some_and(|c| !is_client_id(c)) {
        return Err(ApiError::invalid_argument("ClientId must be 1-256 characters of [a-zA-Z0-9_.-]"));
    }
    if req.username.as_deref().is_some_and(|u| !is_client_id(u)) {
        return Err(ApiError::invalid_argument("Username must be 1-256 characters of [a-zA-Z0-9_.-]"));
    }
    if req.service.as_deref().is_some_and(|s| s != "TURN") {
        return Err(ApiError::invalid_argument("Service must be TURN"));
    }
    let limits = &st.config.limits.signaling;
    let channel = channel_for(
        &st,
        &principal,
        req.channel_arn.as_deref(),
        "GetIceServerConfig",
        limits.get_ice_server_config_tps_per_channel,
    )
    .await?;
    let ice_server_list = signaling.ice_servers(&channel.arn, SystemTime::now());
    Ok(Json(GetIceServerConfigResponse { ice_server_list }))
}

/// `SendAlexaOfferToMaster` request members.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendAlexaOfferRequest {
    #[serde(rename = "ChannelARN")]
    channel_arn: Option<String>,
    sender_client_id: Option<String>,
    message_payload: Option<String>,
}

/// `SendAlexaOfferToMaster` response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendAlexaOfferResponse {
    /// The master's base64 SDP answer.
    pub answer: String,
}

/// `POST /v1/send-alexa-offer-to-master`: waits for the master's answer up to the
/// channel's MessageTtlSeconds.
pub async fn send_alexa_offer_to_master(
    State(st): State<Core>,
    State(signaling): State<Signaling>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<SendAlexaOfferResponse>> {
    let req: SendAlexaOfferRequest = parse_body(&body)?;
    let sender = req.sender_client_id.unwrap_or_default();
    if !is_client_id(&sender) {
        return Err(ApiError::invalid_argument("SenderClientId must be 1-256 characters of [a-zA-Z0-9_.-]"));
    }
    let payload = req.message_payload.unwrap_or_default();
    if payload.is_empty()
        || payload.len() > MAX_ALEXA_PAYLOAD
        || !payload.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return Err(ApiError::invalid_argument(format!(
            "MessagePayload must be 1-{MAX_ALEXA_PAYLOAD} characters of base64"
        )));
    }
    let limits = &st.config.limits.signaling;
    let channel = channel_for(
        &st,
        &principal,
        req.channel_arn.as_deref(),
        "SendAlexaOfferToMaster",
        limits.send_alexa_offer_tps_per_channel,
    )
    .await?;
    let ttl = Duration::from_secs(channel.message_ttl_seconds.into());
    let info = ChannelInfo { arn: channel.arn.clone(), message_ttl: ttl };
    let bus = signaling.registry.bus().clone();
    let (waiter, answer) = bus.alexa_offer(&info, &sender, payload, Instant::now());
    match tokio::time::timeout(ttl, answer).await {
        Ok(Ok(answer)) => Ok(Json(SendAlexaOfferResponse { answer })),
        Ok(Err(_)) => Err(ApiError::client_limit("a newer offer from the same SenderClientId replaced this one")),
        Err(_) => {
            bus.cancel_alexa(&channel.arn, &sender, waiter);
            Err(ApiError::not_found(format!(
                "the master did not answer within the channel's MessageTtlSeconds ({}s)",
                ttl.as_secs()
            )))
        }
    }
}
