//! Every KVS quota reel enforces, named once, with the KVS value as its default.
//!
//! Operators override any of them in the `[limits]` table of the TOML config file;
//! handlers read them from here and never hard-code a number.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A per-operation request-rate quota (token bucket, burst = rate).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpsLimit {
    /// Requests per second across the whole account.
    pub account: f64,
    /// Requests per second against one resource (channel or stream); `None` = no per-resource cap.
    #[serde(default)]
    pub resource: Option<f64>,
}

impl TpsLimit {
    const fn new(account: f64, resource: Option<f64>) -> Self {
        Self { account, resource }
    }
}

/// All quotas. Field names are the keys accepted under `[limits]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Signaling channels per account (KVS: 5,000 default quota).
    pub max_channels_per_account: u64,
    /// Streams per account (KVS default quota: 10,000).
    pub max_streams_per_account: u64,
    /// Channels with media storage ENABLED per account (KVS: 100).
    pub max_storage_enabled_channels: u64,
    /// Tags per channel or stream (KVS: 50).
    pub max_tags_per_resource: usize,
    /// Control-plane request rates keyed by operation name (kvs-api §2.2).
    pub control_plane_tps: BTreeMap<String, TpsLimit>,
    /// Control-plane operations not listed in `control_plane_tps` get this rate.
    pub default_control_plane_tps: TpsLimit,
    /// Maximum request body accepted by any JSON API, in bytes.
    pub max_request_body_bytes: usize,
    /// Allowed clock skew between a signed request's `X-Amz-Date` and now, in seconds.
    pub max_clock_skew_secs: u64,
    /// Longest `X-Amz-Expires` accepted on a presigned URL, in seconds (KVS: 604800).
    pub max_presign_expires_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let tps = |pairs: &[(&str, TpsLimit)]| -> BTreeMap<String, TpsLimit> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        let per_channel_50_5 = TpsLimit::new(50.0, Some(5.0));
        Self {
            max_channels_per_account: 5_000,
            max_streams_per_account: 10_000,
            max_storage_enabled_channels: 100,
            max_tags_per_resource: 50,
            control_plane_tps: tps(&[
                ("CreateSignalingChannel", TpsLimit::new(50.0, None)),
                ("DescribeSignalingChannel", TpsLimit::new(300.0, None)),
                ("GetSignalingChannelEndpoint", TpsLimit::new(300.0, None)),
                ("ListSignalingChannels", TpsLimit::new(50.0, None)),
                ("DeleteSignalingChannel", per_channel_50_5),
                ("UpdateSignalingChannel", per_channel_50_5),
                ("TagResource", per_channel_50_5),
                ("UntagResource", per_channel_50_5),
                ("ListTagsForResource", per_channel_50_5),
                ("DescribeMediaStorageConfiguration", per_channel_50_5),
                ("UpdateMediaStorageConfiguration", TpsLimit::new(10.0, Some(5.0))),
                ("CreateStream", TpsLimit::new(50.0, None)),
                ("DescribeStream", TpsLimit::new(300.0, None)),
                ("ListStreams", TpsLimit::new(300.0, None)),
                ("GetDataEndpoint", TpsLimit::new(300.0, None)),
                ("DeleteStream", TpsLimit::new(50.0, Some(5.0))),
                ("UpdateStream", TpsLimit::new(50.0, Some(5.0))),
                ("UpdateDataRetention", TpsLimit::new(50.0, Some(5.0))),
                ("TagStream", TpsLimit::new(50.0, Some(5.0))),
                ("UntagStream", TpsLimit::new(50.0, Some(5.0))),
                ("ListTagsForStream", TpsLimit::new(50.0, Some(5.0))),
                ("DescribeMappedResourceConfiguration", TpsLimit::new(50.0, Some(5.0))),
            ]),
            default_control_plane_tps: TpsLimit::new(50.0, None),
            max_request_body_bytes: 1 << 20,
            max_clock_skew_secs: 15 * 60,
            max_presign_expires_secs: 604_800,
        }
    }
}

impl Limits {
    /// The rate quota of one control-plane operation.
    pub fn control_plane(&self, operation: &str) -> TpsLimit {
        self.control_plane_tps.get(operation).copied().unwrap_or(self.default_control_plane_tps)
    }
}
