//! `GET /` — ConnectAsMaster / ConnectAsViewer: validation, authorization, channel lookup
//! and quotas as HTTP responses in the KVS error shape, then the WebSocket upgrade.

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use futures::{Sink, Stream};
use http::StatusCode;
use tracing::Instrument;

use super::Signaling;
use super::pending::Party;
use super::registry::{ChannelInfo, ConnectError};
use super::session::{self, InFrame, OutFrame, SessionLimits};
use super::validate::{is_channel_arn, is_viewer_client_id};
use crate::api::Core;
use crate::api::access;
use crate::auth::Principal;
use crate::error::ApiError;

/// Query parameter naming the channel.
pub const CHANNEL_ARN_PARAM: &str = "X-Amz-ChannelARN";
/// Query parameter naming the viewer.
pub const CLIENT_ID_PARAM: &str = "X-Amz-ClientId";
/// Subprotocol the C SDK requests and must get back.
pub const SUBPROTOCOL: &str = "wss";

/// 403 `AccessDeniedException`, the status ConnectAs* documents.
pub fn access_denied(message: String) -> ApiError {
    ApiError::new("AccessDeniedException", StatusCode::FORBIDDEN, message)
}

/// The ConnectAsMaster / ConnectAsViewer handler.
pub async fn connect(
    State(st): State<Core>,
    State(signaling): State<Signaling>,
    principal: Option<Extension<Principal>>,
    Query(params): Query<HashMap<String, String>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match prepare(&st, &signaling, principal.map(|p| p.0), &params, upgrade).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    }
}

async fn prepare(
    st: &Core,
    signaling: &Signaling,
    principal: Option<Principal>,
    params: &HashMap<String, String>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let arn = params.get(CHANNEL_ARN_PARAM).map(String::as_str).unwrap_or_default();
    if !is_channel_arn(arn) {
        return Err(ApiError::invalid_argument(format!("{CHANNEL_ARN_PARAM} must be a signaling channel ARN")));
    }
    let role = match params.get(CLIENT_ID_PARAM) {
        None => Party::Master,
        Some(id) if is_viewer_client_id(id) => Party::Viewer(id.clone()),
        Some(_) => {
            return Err(ApiError::invalid_argument(format!(
                "{CLIENT_ID_PARAM} must be 1-256 characters of [a-zA-Z0-9_.-] and must not start with AWS_"
            )));
        }
    };
    let principal = principal.ok_or_else(|| ApiError::internal("request reached signaling without a principal"))?;
    let (action, operation) = match role {
        Party::Master => ("kinesisvideo:ConnectAsMaster", "ConnectAsMaster"),
        Party::Viewer(_) => ("kinesisvideo:ConnectAsViewer", "ConnectAsViewer"),
    };
    // Authorize the ARN as given before looking it up (the lookup is by exact ARN): a caller
    // without rights on it is refused alike whether or not the channel exists.
    access::authorize_action(&principal, action, arn, access_denied)?;
    let channel = st
        .meta
        .channel_by_arn(arn)
        .await
        .map_err(|e| ApiError::internal(format!("metadata lookup failed: {e}")))?
        .ok_or_else(|| ApiError::not_found(format!("The requested channel is not found or not active: {arn}")))?;
    let upgrade =
        upgrade.map_err(|e| ApiError::invalid_argument(format!("{operation} needs a WebSocket upgrade: {e}")))?;

    let info = ChannelInfo {
        arn: channel.arn.clone(),
        message_ttl: std::time::Duration::from_secs(channel.message_ttl_seconds.into()),
    };
    let bus = signaling.registry.bus().clone();
    let conn = bus.connect(&info, role.clone(), Instant::now()).map_err(|e| match e {
        ConnectError::RateExceeded(_) | ConnectError::TooManyViewers(_) => ApiError::client_limit(e.to_string()),
    })?;
    let endpoint = conn.endpoint.clone();
    let (role_name, client_id) = match &role {
        Party::Master => ("master", None),
        Party::Viewer(id) => ("viewer", Some(id.clone())),
    };
    let span = tracing::info_span!("signaling", channel = %channel.arn, role = role_name, client_id = client_id.as_deref().unwrap_or(""), conn_id = endpoint.conn_id);
    span.in_scope(|| tracing::info!(access_key_id = %principal.access_key_id, "signaling connection opened"));
    let limits = SessionLimits::from(&st.config.limits.signaling);
    let failed_bus = bus.clone();
    Ok(upgrade
        // Refused from the frame header, before the payload is buffered.
        .max_frame_size(limits.max_frame_bytes)
        .max_message_size(limits.max_frame_bytes)
        .protocols([SUBPROTOCOL])
        .on_failed_upgrade(move |e| {
            tracing::info!(error = %e, "WebSocket upgrade failed");
            failed_bus.disconnect(&endpoint);
        })
        .on_upgrade(move |socket| {
            async move {
                session::run(AxumSocket(socket), conn, bus, limits).await;
            }
            .instrument(span)
        }))
}

/// axum's WebSocket seen as [`InFrame`]s / [`OutFrame`]s (pings are answered by tungstenite).
struct AxumSocket(WebSocket);

impl Stream for AxumSocket {
    type Item = InFrame;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<InFrame>> {
        Pin::new(&mut self.0).poll_next(cx).map(|item| match item {
            Some(Err(e)) if is_capacity_error(&e) => Some(InFrame::TooLarge),
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Some(InFrame::Close),
            Some(Ok(Message::Text(t))) => Some(InFrame::Text(t.as_str().to_string())),
            // Binary frames are not part of the protocol: activity, otherwise ignored.
            Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => Some(InFrame::Other),
        })
    }
}

/// Whether a WebSocket read failed on the frame/message size limit.
fn is_capacity_error(e: &axum::Error) -> bool {
    let inner = std::error::Error::source(e).and_then(|s| s.downcast_ref::<tungstenite::Error>());
    matches!(inner, Some(tungstenite::Error::Capacity(_)))
}

impl Sink<OutFrame> for AxumSocket {
    type Error = axum::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: OutFrame) -> Result<(), Self::Error> {
        let msg = match item {
            OutFrame::Text(t) => Message::Text(t.into()),
            OutFrame::Close(code, reason) => Message::Close(Some(CloseFrame { code, reason: reason.into() })),
        };
        Pin::new(&mut self.0).start_send(msg)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}
