//! Endpoints: GetSignalingChannelEndpoint and GetDataEndpoint.
//!
//! Every endpoint is a node's own URL: `WSS` is the signaling WebSocket URL, `HTTPS` and
//! `WEBRTC` (signaling HTTPS API, WebRTC storage API) and every data endpoint are the
//! HTTPS base URL. Clients append the API path themselves. One node answers its own URLs,
//! except where another node serves the resource (cluster mode): a stream's data endpoint
//! is the node writing it, and a VIEWER of a storage-enabled channel is sent to the node
//! running the channel's storage session (its live viewers are served there).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use serde::{Deserialize, Serialize};

use crate::api::Core;
use crate::api::urls::PublicUrls;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::signaling::Signaling;
use crate::signaling::handoff::session_node;
use crate::signaling::registry::StoragePeerAt;

use crate::api::resolve::ArnFormatError;
use crate::api::resolve::{self, STREAM_DENY};
use crate::api::{body, validate};

/// `Protocols` values.
pub const PROTOCOLS: &[&str] = &["WSS", "HTTPS", "WEBRTC"];
/// Protocols returned when the request names none (what the C and JS SDKs ask for).
pub const DEFAULT_PROTOCOLS: &[&str] = &["WSS", "HTTPS"];
/// Most protocols one request may list.
pub const MAX_PROTOCOLS: usize = 5;
/// `Role` values.
pub const ROLES: &[&str] = &["MASTER", "VIEWER"];
/// `APIName` values of GetDataEndpoint.
pub const DATA_API_NAMES: &[&str] = &[
    "PUT_MEDIA",
    "GET_MEDIA",
    "LIST_FRAGMENTS",
    "GET_MEDIA_FOR_FRAGMENT_LIST",
    "GET_HLS_STREAMING_SESSION_URL",
    "GET_DASH_STREAMING_SESSION_URL",
    "GET_CLIP",
    "GET_IMAGES",
];

/// `SingleMasterChannelEndpointConfiguration`.
#[derive(Debug, Deserialize)]
pub struct EndpointConfiguration {
    #[serde(rename = "Protocols")]
    protocols: Option<Vec<String>>,
    #[serde(rename = "Role")]
    role: Option<String>,
}

/// `GetSignalingChannelEndpoint` input.
#[derive(Debug, Deserialize)]
pub struct SignalingEndpointInput {
    #[serde(rename = "ChannelARN")]
    arn: Option<String>,
    #[serde(rename = "SingleMasterChannelEndpointConfiguration")]
    config: Option<EndpointConfiguration>,
}

/// One `ResourceEndpointList` element.
#[derive(Debug, Serialize)]
pub struct ResourceEndpoint {
    #[serde(rename = "Protocol")]
    protocol: &'static str,
    #[serde(rename = "ResourceEndpoint")]
    endpoint: String,
}

/// `GetSignalingChannelEndpoint` output.
#[derive(Debug, Serialize)]
pub struct SignalingEndpointOutput {
    #[serde(rename = "ResourceEndpointList")]
    endpoints: Vec<ResourceEndpoint>,
}

/// The distinct protocols a request asks for, in request order (defaults if none).
fn requested_protocols(config: Option<&EndpointConfiguration>) -> ApiResult<Vec<&'static str>> {
    let Some(list) = config.and_then(|c| c.protocols.as_ref()) else {
        return Ok(DEFAULT_PROTOCOLS.to_vec());
    };
    validate::count(list.len(), "SingleMasterChannelEndpointConfiguration.Protocols", 1, MAX_PROTOCOLS)?;
    let mut out = Vec::with_capacity(list.len());
    for p in list {
        let p = validate::one_of(p, "SingleMasterChannelEndpointConfiguration.Protocols", PROTOCOLS)?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// `POST /getSignalingChannelEndpoint` → one endpoint per requested protocol.
/// `WEBRTC` is only offered when the channel's media storage is enabled.
#[tracing::instrument(name = "GetSignalingChannelEndpoint", skip_all, fields(channel = tracing::field::Empty))]
pub async fn get_signaling_channel_endpoint(
    State(st): State<Core>,
    State(signaling): State<Signaling>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<SignalingEndpointOutput>> {
    let input: SignalingEndpointInput = body::parse(&body)?;
    let arn = validate::required(input.arn, "ChannelARN")?;
    let protocols = requested_protocols(input.config.as_ref())?;
    if let Some(role) = input.config.as_ref().and_then(|c| c.role.as_deref()) {
        validate::one_of(role, "SingleMasterChannelEndpointConfiguration.Role", ROLES)?;
    }
    let channel = resolve::channel(&st, &principal, "GetSignalingChannelEndpoint", None, Some(&arn)).await?;
    // Only a cluster steers viewers (one node serves everything): no extra lookup otherwise.
    let steered_viewer =
        input.config.as_ref().and_then(|c| c.role.as_deref()) == Some("VIEWER") && signaling.bus_connected().is_some();
    let storage = if protocols.contains(&"WEBRTC") || steered_viewer {
        Some(st.meta.media_storage(&channel.arn).await?).filter(|m| m.enabled)
    } else {
        None
    };
    if protocols.contains(&"WEBRTC") && storage.is_none() {
        return Err(ApiError::invalid_argument(
            "The WEBRTC protocol is only available for channels with media storage enabled",
        ));
    }
    // A viewer of a stored channel watches through the storage session, which serves its
    // viewers on its own node (their media is forwarded on that node's socket): send it there.
    let urls = match storage.and_then(|m| m.stream_arn).filter(|_| steered_viewer) {
        Some(_) => PublicUrls::from_base(&storage_session_endpoint(&st, &signaling, &channel.arn)),
        None => st.urls.as_ref().clone(),
    };
    let endpoints = protocols
        .into_iter()
        .map(|protocol| ResourceEndpoint {
            protocol,
            endpoint: if protocol == "WSS" { urls.wss.clone() } else { urls.https.clone() },
        })
        .collect();
    Ok(Json(SignalingEndpointOutput { endpoints }))
}

/// The base URL of the node where `channel_arn`'s storage session and viewer sessions run
/// (`crate::signaling::handoff::session_node`): the viewer's signaling then stays on the node
/// that serves it.
fn storage_session_endpoint(st: &Core, signaling: &Signaling, channel_arn: &str) -> String {
    match session_node(signaling.registry.bus().as_ref(), &st.members, channel_arn) {
        StoragePeerAt::ThisNode => st.urls.https.clone(),
        StoragePeerAt::OtherNode(node) => st.members.url(&node).unwrap_or_else(|| st.urls.https.clone()),
    }
}

/// `GetDataEndpoint` input.
#[derive(Debug, Deserialize)]
pub struct DataEndpointInput {
    #[serde(rename = "StreamName")]
    name: Option<String>,
    #[serde(rename = "StreamARN")]
    arn: Option<String>,
    #[serde(rename = "APIName")]
    api_name: Option<String>,
}

/// `POST /getDataEndpoint` → `{DataEndpoint}`: the base URL of the node that writes the stream
/// (this one on a single node).
#[tracing::instrument(name = "GetDataEndpoint", skip_all, fields(stream = tracing::field::Empty))]
pub async fn get_data_endpoint(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let input: DataEndpointInput = body::parse(&body)?;
    let api_name = validate::required(input.api_name, "APIName")?;
    validate::one_of(&api_name, "APIName", DATA_API_NAMES)?;
    let stream = resolve::stream(
        &st,
        &principal,
        "GetDataEndpoint",
        STREAM_DENY,
        input.name.as_deref(),
        input.arn.as_deref(),
        ArnFormatError::InvalidArgument,
    )
    .await?;
    Ok(Json(serde_json::json!({ "DataEndpoint": data_endpoint(&st, &stream.arn).await })))
}

/// The node a stream's data is read from: the node that writes it (or wrote it last, which
/// keeps its fragments) while that node is alive, else this one. As KVS answers per-stream
/// endpoints, clients then read the live tail where it is written.
async fn data_endpoint(st: &Core, stream_arn: &str) -> String {
    let writer = match st.meta.lease(stream_arn).await {
        Ok(lease) => lease.map(|l| l.holder),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the stream's writer lease; answering this node");
            None
        }
    };
    writer.and_then(|node| st.members.url(&node)).unwrap_or_else(|| st.urls.https.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(protocols: Option<&[&str]>) -> EndpointConfiguration {
        EndpointConfiguration { protocols: protocols.map(|p| p.iter().map(|s| s.to_string()).collect()), role: None }
    }

    #[test]
    fn protocols_default_dedupe_and_validate() {
        assert_eq!(requested_protocols(None).expect("default"), ["WSS", "HTTPS"]);
        assert_eq!(requested_protocols(Some(&cfg(None))).expect("default"), ["WSS", "HTTPS"]);
        assert_eq!(
            requested_protocols(Some(&cfg(Some(&["HTTPS", "WSS", "HTTPS"])))).expect("dedupe"),
            ["HTTPS", "WSS"]
        );
        assert!(requested_protocols(Some(&cfg(Some(&[])))).is_err());
        assert!(requested_protocols(Some(&cfg(Some(&["wss"])))).is_err());
        assert!(requested_protocols(Some(&cfg(Some(&["WSS"; 6])))).is_err());
    }
}
