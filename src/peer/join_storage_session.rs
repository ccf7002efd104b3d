//! `POST /joinStorageSession` (docs/kvs-wire.md §4.1): check the channel, its storage mapping and
//! its master, answer 200 at once, and start a storage session that offers to the master.
//!
//! Cluster mode: the session starts on this node, unless the channel's live viewers wait on
//! another node; then that node is asked to start it ([`super::handoff`]).

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use serde::Deserialize;

use super::Peers;
use crate::api::Core;
use crate::api::access::authorize_action as authorize;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::limits::TpsLimit;
use crate::signaling::Signaling;

/// The KVS operation name (throttle and policy action).
pub const OPERATION: &str = "JoinStorageSession";

#[derive(Debug, Deserialize)]
pub(crate) struct Input {
    #[serde(rename = "channelArn")]
    channel_arn: Option<String>,
}

/// The AccessDeniedException of both joins (403, as the storage service's model says).
pub(crate) fn access_denied(message: String) -> ApiError {
    ApiError::new("AccessDeniedException", StatusCode::FORBIDDEN, message)
}

/// Checks the model's `channelArn` pattern
/// `^arn:(aws[a-zA-Z-]*):kinesisvideo:[a-z0-9-]+:[0-9]+:[a-z]+/[a-zA-Z0-9_.-]+/[0-9]+$`.
pub fn valid_channel_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [arn_s, partition, service, region, account, resource] = parts.as_slice() else { return false };
    let res: Vec<&str> = resource.split('/').collect();
    *arn_s == "arn"
        && partition.strip_prefix("aws").is_some_and(|r| r.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-'))
        && *service == "kinesisvideo"
        && !region.is_empty()
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !account.is_empty()
        && account.bytes().all(|b| b.is_ascii_digit())
        && matches!(res.as_slice(), [kind, name, ts]
            if !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_lowercase())
            && !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            && !ts.is_empty() && ts.bytes().all(|b| b.is_ascii_digit()))
}

/// The checks both joins make after authorizing: the account-wide rate quota of
/// `operation`, the channel exists, its per-channel quota, storage enabled and mapped to a
/// stream that exists and has retention. Returns the stream's ARN and record.
pub(crate) async fn storage_stream(
    st: &Core,
    operation: &'static str,
    arn: &str,
) -> ApiResult<(String, crate::meta::StreamRecord)> {
    let lim = &st.config.limits.storage_session;
    // The account quota before any work; the per-channel bucket only for a channel that
    // exists (a bucket per caller-supplied ARN would let a caller grow the table at will).
    st.throttle.check(operation, TpsLimit { account: lim.join_tps_account, resource: None }, None)?;
    if st.meta.channel_by_arn(arn).await?.is_none() {
        return Err(ApiError::not_found(format!("the channel {arn} was not found")));
    }
    st.throttle.check_resource(operation, lim.join_tps_per_channel, arn)?;
    mapped_stream(st, arn).await
}

/// The channel's storage stream: storage enabled and mapped to a stream that exists and has
/// retention. Returns the stream's ARN and record.
pub(crate) async fn mapped_stream(st: &Core, arn: &str) -> ApiResult<(String, crate::meta::StreamRecord)> {
    let storage = st.meta.media_storage(arn).await?;
    let stream_arn = match (storage.enabled, storage.stream_arn) {
        (true, Some(s)) => s,
        _ => return Err(ApiError::invalid_argument(format!("media storage is not enabled for the channel {arn}"))),
    };
    let Some(stream) = st.meta.stream_by_arn(&stream_arn).await? else {
        return Err(ApiError::not_found(format!("the stream {stream_arn} mapped to the channel was not found")));
    };
    if stream.data_retention_in_hours == 0 {
        return Err(ApiError::invalid_argument(format!("the stream {stream_arn} has no data retention")));
    }
    Ok((stream_arn, stream))
}

/// `POST /joinStorageSession {"channelArn"}` → 200 with an empty body.
#[tracing::instrument(name = "JoinStorageSession", skip_all, fields(channel = tracing::field::Empty))]
pub async fn handle(
    State(st): State<Core>,
    State(signaling): State<Signaling>,
    State(peers): State<Peers>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let input: Input = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid_argument(format!("the request body is not valid: {e}")))?;
    let Some(arn) = input.channel_arn else {
        return Err(ApiError::invalid_argument("1 validation error detected: channelArn must not be null"));
    };
    if !valid_channel_arn(&arn) {
        return Err(ApiError::invalid_argument(format!("channelArn {arn:?} does not match the channel ARN pattern")));
    }
    tracing::Span::current().record("channel", arn.as_str());
    authorize(&principal, "kinesisvideo:JoinStorageSession", &arn, access_denied)?;
    let (stream_arn, stream) = storage_stream(&st, OPERATION, &arn).await?;
    require_master(&signaling, &arn)?;
    if super::handoff::to_waiting_viewers(&signaling, &arn).await {
        return Ok(StatusCode::OK);
    }
    start_here(&st, &signaling, &peers, &arn, &stream_arn, &stream).await?;
    Ok(StatusCode::OK)
}

/// JoinStorageSession needs the channel's master connected (to this node or, in a cluster,
/// to any).
pub(crate) fn require_master(signaling: &Signaling, arn: &str) -> ApiResult<()> {
    if signaling.registry.bus().master_connected(arn) {
        Ok(())
    } else {
        Err(ApiError::invalid_argument(format!("no master is connected to the channel {arn}")))
    }
}

/// Starts the channel's storage session on this node, writing into its stream
/// `stream_arn`; returns the session id.
pub(crate) async fn start_here(
    st: &Core,
    signaling: &Signaling,
    peers: &Peers,
    arn: &str,
    stream_arn: &str,
    stream: &crate::meta::StreamRecord,
) -> ApiResult<u64> {
    // One writer per stream across nodes: take its lease (a newer session, here or on another
    // node, fences the older one; another node's running session is refused until it
    // lapses). A single node needs none: the newer session replaces the older in-process,
    // and renewing leases would only add metadata writes per session.
    let lease = if st.config.shares_metadata() {
        let (keeper, taken) = st.leases.acquire(stream_arn).await?;
        tracing::debug!(stream = %stream_arn, epoch = taken.epoch, "writer lease taken");
        Some(keeper)
    } else {
        None
    };
    let store = st.store.open_or_create_stream(stream_arn, stream.data_retention_in_hours).await?;
    let handle = signaling.registry.attach_storage_peer(arn);
    let id = peers.start_session(handle, store, lease);
    tracing::info!(session = id, stream = %stream_arn, "storage session starting");
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::valid_channel_arn;

    #[test]
    fn channel_arn_pattern() {
        assert!(valid_channel_arn("arn:aws:kinesisvideo:us-west-2:123456789012:channel/my-ch_1.x/1700000000000"));
        assert!(!valid_channel_arn("arn:aws:kinesisvideo:us-west-2:123456789012:channel/my ch/1"));
        assert!(!valid_channel_arn("arn:aws:s3:us-west-2:123456789012:channel/c/1"));
        assert!(!valid_channel_arn("not-an-arn"));
        assert!(!valid_channel_arn("arn:aws:kinesisvideo:us-west-2:123456789012:channel/c"));
    }
}
