//! What Describe/UpdateImageGenerationConfiguration and Describe/UpdateNotificationConfiguration
//! share: a per-stream configuration that is read whole, and replaced or removed whole.
//!
//! Each operation keeps its own handler (route, span name, input and output structures) in
//! [`super::image_generation`] and [`super::notification`], and runs the steps here. Policy
//! refusals are `AccessDeniedException`, the model's choice for all four operations.

use axum::Json;
use futures::future::BoxFuture;

use crate::api::{Core, body};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::meta::{MetaError, MetaStore};

use super::empty;
use super::streams::StreamRef;

/// What a [`MetaStore`] read or write of a configuration gives.
pub(super) type Stored<'a, T> = BoxFuture<'a, Result<T, MetaError>>;

/// A per-stream configuration as the store keeps it, with its wire structure and the
/// [`MetaStore`] methods that read and write it.
pub(super) trait StreamConfiguration: Sized + Sync {
    /// The wire structure: the Update input's member and the Describe output's.
    type Wire: From<Self>;
    /// What the configuration is called in logs (`"notification configuration"`).
    const NAME: &'static str;
    /// Check a requested configuration against the model for a stream of `core`. Pure.
    fn validate(wire: Self::Wire, core: &Core) -> ApiResult<Self>;
    /// Whether its `Status` is `ENABLED`.
    fn enabled(&self) -> bool;
    /// The stream's configuration, `None` if it has none.
    fn load<'a>(meta: &'a dyn MetaStore, stream_arn: &'a str) -> Stored<'a, Option<Self>>;
    /// Replace the stream's configuration, or remove it (`None`).
    fn store<'a>(meta: &'a dyn MetaStore, stream_arn: &'a str, config: Option<&'a Self>) -> Stored<'a, ()>;
}

/// Describe: the configuration of the stream `body` names (a [`StreamRef`]), `None` if it
/// has none.
pub(super) async fn describe<C: StreamConfiguration>(
    st: &Core,
    principal: &Principal,
    op: &str,
    body: &[u8],
) -> ApiResult<Option<C::Wire>> {
    let input: StreamRef = body::parse(body)?;
    let stream = input.resolve(st, principal, op, ApiError::access_denied).await?;
    Ok(C::load(st.meta.as_ref(), &stream.arn).await?.map(C::Wire::from))
}

/// Update: check `config` (before the stream is looked up), then set it on `stream`, or
/// remove the stream's configuration when the request carries none; answers `{}`.
pub(super) async fn update<C: StreamConfiguration>(
    st: &Core,
    principal: &Principal,
    op: &str,
    stream: &StreamRef,
    config: Option<C::Wire>,
) -> ApiResult<Json<serde_json::Value>> {
    let config = config.map(|c| C::validate(c, st)).transpose()?;
    let stream = stream.resolve(st, principal, op, ApiError::access_denied).await?;
    C::store(st.meta.as_ref(), &stream.arn, config.as_ref()).await?;
    tracing::info!(
        configured = config.is_some(),
        enabled = config.as_ref().is_some_and(C::enabled),
        "{} updated",
        C::NAME
    );
    Ok(empty())
}
