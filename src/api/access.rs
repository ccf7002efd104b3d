//! Policy checks and per-resource rate quotas, as every operation applies them after
//! finding its resource.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};

use super::Core;

/// How an operation refuses an unauthorized caller: channel operations with
/// `AccessDeniedException`, stream operations with `NotAuthorizedException` (the model's
/// choice per operation).
pub type Deny = fn(String) -> ApiError;

/// Control-plane operations whose model refuses with `NotAuthorizedException` (the stream
/// operations); the others refuse with `AccessDeniedException`.
const NOT_AUTHORIZED_OPS: &[&str] = &[
    "CreateStream",
    "DescribeStream",
    "ListStreams",
    "GetDataEndpoint",
    "DeleteStream",
    "UpdateStream",
    "UpdateDataRetention",
    "TagStream",
    "UntagStream",
    "ListTagsForStream",
    "ListEdgeAgentConfigurations",
];

/// The modeled refusal of control-plane operation `op` (what its handler uses).
pub fn deny_for(op: &str) -> Deny {
    if NOT_AUTHORIZED_OPS.contains(&op) { ApiError::not_authorized } else { ApiError::access_denied }
}

/// Refuse a caller whose policy allows `kinesisvideo:<op>` on no resource at all, before
/// the operation takes any quota or looks anything up (so a key without permissions
/// cannot drain the account's quotas).
pub fn precheck(principal: &Principal, op: &str) -> ApiResult<()> {
    let action = format!("kinesisvideo:{op}");
    if principal.may_perform(&action) {
        Ok(())
    } else {
        Err(deny_for(op)(format!("User: {} is not authorized to perform: {action}", principal.access_key_id)))
    }
}

/// Check policy for `action` (`<service>:<Operation>`) on `resource`; `deny` builds the
/// operation's modeled refusal.
pub fn authorize_action(principal: &Principal, action: &str, resource: &str, deny: Deny) -> ApiResult<()> {
    if principal.is_allowed(action, resource) {
        Ok(())
    } else {
        Err(deny(format!(
            "User: {} is not authorized to perform: {} on resource: {}",
            principal.access_key_id, action, resource
        )))
    }
}

/// Policy check of `kinesisvideo:<op>` on `resource`.
pub fn authorize(principal: &Principal, op: &str, resource: &str, deny: Deny) -> ApiResult<()> {
    authorize_action(principal, &format!("kinesisvideo:{op}"), resource, deny)
}

/// Per-resource rate quota of `op` (docs/kvs-wire.md §2.2), if it has one.
pub fn throttle(core: &Core, op: &str, resource: &str) -> ApiResult<()> {
    match core.config.limits.control_plane(op).resource {
        Some(rate) => core.throttle.check_resource(op, rate, resource),
        None => Ok(()),
    }
}

/// The ARN a policy is checked against when the named resource does not exist: the
/// ARN it would have, with `*` for the creation time. A policy on `channel/cam-*`
/// therefore still lets its holder learn that `cam-9` is missing (the KVS C SDK relies
/// on that 404 to create the channel), while a policy without access gets a refusal.
pub fn missing_resource_arn(core: &Core, kind: &str, name: &str) -> String {
    format!("arn:aws:kinesisvideo:{}:{}:{kind}/{name}/*", core.config.region, core.config.account_id)
}
