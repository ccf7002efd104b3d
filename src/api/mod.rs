//! The toolkit every operation area builds its handlers from, and the state they share.
//!
//! Layering: `api` stands on the foundations (config, limits, arn, error) and the services
//! (auth, meta, observe, the media store); the operation areas (`control`, `signaling`,
//! `peer`, `playback`, `streaming`) stand on `api`, and only `server` sees them all.
//!
//! - [`Core`]: what every handler may need (configuration, metadata, authentication,
//!   audit, quotas, advertised URLs, the media store). Areas extract it with axum's
//!   `State<Core>` from whatever state the server builds (`FromRef`), so no area names
//!   the server's state type.
//! - [`edge`]: the layers every request passes through (request id, `Date`, SigV4,
//!   account quota, metrics, audit); [`cors`]: which web origins may call from a browser.
//! - Request steps, in the order handlers use them: [`body`] (restJson1 parsing),
//!   [`validate`] / [`pagination`] (the model's constraints), [`resolve`] (find the named
//!   channel or stream, authorize, take its rate token), [`access`] (policy checks and
//!   per-resource quotas), [`errors`] (metadata failures and quota refusals as KVS errors),
//!   [`reading`] (open a stream of the media store for reading).
//! - [`urls`]: the base URLs reel hands to clients.

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::meta::MetaStore;
use crate::observe::audit::AuditLog;
use crate::throttle::Throttle;

pub mod access;
pub mod body;
pub mod cors;
pub mod edge;
pub mod errors;
pub mod pagination;
pub mod reading;
pub mod resolve;
pub mod stream_cache;
pub mod urls;
pub mod validate;

pub use urls::PublicUrls;

/// What every handler may need; cheap to clone.
#[derive(Clone, Debug)]
pub struct Core {
    /// Resolved configuration, including [`crate::limits::Limits`].
    pub config: Arc<Config>,
    /// The metadata store (channels, streams, tags, storage mappings).
    pub meta: Arc<dyn MetaStore>,
    /// SigV4 verifier and key store.
    pub auth: Arc<Authenticator>,
    /// Control-plane audit trail.
    pub audit: AuditLog,
    /// Request-rate quotas.
    pub throttle: Arc<Throttle>,
    /// The URLs this server advertises in endpoint responses.
    pub urls: Arc<PublicUrls>,
    /// The retained-stream store (media fragments), keyed by stream ARN.
    pub store: reel_storage::Store,
    /// The cluster's live nodes and their URLs (only this node without a bus).
    pub members: crate::members::Members,
    /// Stream records recently found for media reads.
    pub stream_cache: Arc<stream_cache::StreamCache>,
    /// This node's stream writer leases (cluster mode), renewed together.
    pub leases: crate::peer::lease_keeper::LeaseRenewer,
    /// GetImages pages decoding at once on this node.
    pub images: crate::streaming::images::Decoders,
}
