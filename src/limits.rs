//! Every KVS quota reel enforces, named once, with the KVS value as its default.
//!
//! Operators override any of them in the `[limits]` table of the TOML config file;
//! handlers read them from here and never hard-code a number.

use reel_media::fragmenter::{self, FragmenterConfig};
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
    /// Control-plane request rates keyed by operation name (docs/kvs-wire.md §2.2).
    pub control_plane_tps: BTreeMap<String, TpsLimit>,
    /// Control-plane operations not listed in `control_plane_tps` get this rate.
    pub default_control_plane_tps: TpsLimit,
    /// Maximum request body accepted by any JSON API, in bytes.
    pub max_request_body_bytes: usize,
    /// Allowed clock skew between a signed request's `X-Amz-Date` and now, in seconds.
    pub max_clock_skew_secs: u64,
    /// Longest `X-Amz-Expires` accepted on a presigned URL, in seconds (KVS: 604800).
    pub max_presign_expires_secs: u64,
    /// Signaling WebSocket, signaling HTTPS API and TURN quotas (`[limits.signaling]`).
    pub signaling: SignalingLimits,
    /// GetMedia quotas (`[limits.playback]`).
    pub playback: PlaybackLimits,
    /// HLS/DASH sessions and GetClip (docs/kvs-wire.md §5.4–5.6).
    pub streaming: StreamingLimits,
    /// PutMedia uploads (`[limits.put_media]`).
    pub put_media: PutMediaLimits,
    /// WebRTC storage sessions (`[limits.storage_session]`).
    pub storage_session: StorageSessionLimits,
    /// Cluster mode: node liveness on the bus and stream writer leases (`[limits.cluster]`).
    pub cluster: ClusterLimits,
    /// The HTTP listener: connection caps, read timeouts, the audit queue (`[limits.http]`).
    pub http: HttpLimits,
    /// The embedded TURN server's relay policy and TCP bounds (`[limits.turn]`).
    pub turn: TurnLimits,
}

/// Bounds of the HTTP(S) listener, so slow or numerous clients cannot exhaust file
/// descriptors or memory (reel's choices; KVS publishes none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// Open connections at once; one more is closed as soon as it is accepted (default 8192).
    pub max_connections: usize,
    /// Open connections at once from one source IP (default 512).
    pub max_connections_per_ip: usize,
    /// A connection must deliver a request's headers (the first request's from the moment
    /// it is accepted) within this many ms, or it is closed (default 10 s).
    pub header_read_timeout_ms: u64,
    /// A request body must arrive within this many ms of the handler starting to read it,
    /// or the request fails with `RequestTimeoutException` (default 30 s).
    pub body_read_timeout_ms: u64,
    /// Audit events queued for the writer; when it is full, further events are dropped and
    /// counted in `reel_audit_dropped_total` (default 10,000).
    pub audit_queue_events: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 8192,
            max_connections_per_ip: 512,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            audit_queue_events: 10_000,
        }
    }
}

/// The embedded TURN server's relay policy and TCP bounds (reel's choices, after coturn).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnLimits {
    /// Peer networks (CIDRs, e.g. `"10.1.0.0/16"`) a relay may reach although they are
    /// denied by default: loopback, `0.0.0.0/8`, link-local, RFC 1918, CGNAT, unique-local,
    /// multicast, reserved ranges and the server's own addresses. Default: none.
    pub allowed_peer_cidrs: Vec<String>,
    /// A TURN/TCP connection that sends nothing for this many seconds is closed (default 120;
    /// ICE consent checks arrive every few seconds on a live one).
    pub tcp_idle_timeout_secs: u64,
    /// TURN/TCP connections at once (default 1024).
    pub max_tcp_connections: usize,
    /// TURN/TCP connections at once from one source IP (default 32).
    pub max_tcp_connections_per_ip: usize,
}

impl Default for TurnLimits {
    fn default() -> Self {
        Self {
            allowed_peer_cidrs: Vec::new(),
            tcp_idle_timeout_secs: 120,
            max_tcp_connections: 1024,
            max_tcp_connections_per_ip: 32,
        }
    }
}

/// Cluster-mode timings (only used with `--bus-url` / `--metadata-url postgres://…`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterLimits {
    /// How often a node announces it is alive on the bus, in ms.
    pub heartbeat_ms: u64,
    /// After how long without a heartbeat a node is forgotten (its signaling connections
    /// leave the other nodes' view), in ms.
    pub node_timeout_ms: u64,
    /// How long a stream's writer lease lasts unless renewed, in ms: a dead node's
    /// sessions can be taken over this long after its last renewal (≤ 10 s by default).
    pub lease_ms: u64,
    /// How long after the last fragment index notice from a stream's writer (or the last
    /// catalog read) a node trusts its index of the stream complete and serves reads
    /// without asking the catalog, in ms. The most a listing on another node can lag when a
    /// notice is lost; 0 = always ask the catalog (notices then only wake live readers sooner).
    pub index_notice_trust_ms: u64,
}

impl Default for ClusterLimits {
    fn default() -> Self {
        Self { heartbeat_ms: 1_000, node_timeout_ms: 5_000, lease_ms: 10_000, index_notice_trust_ms: 5_000 }
    }
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
                ("DescribeImageGenerationConfiguration", TpsLimit::new(50.0, Some(5.0))),
                ("DescribeNotificationConfiguration", TpsLimit::new(50.0, Some(5.0))),
                ("DescribeEdgeConfiguration", TpsLimit::new(50.0, Some(5.0))),
                ("DeleteEdgeConfiguration", TpsLimit::new(10.0, Some(1.0))),
                ("StartEdgeConfigurationUpdate", TpsLimit::new(10.0, Some(1.0))),
                ("ListEdgeAgentConfigurations", TpsLimit::new(50.0, None)),
                // Not in the KVS quota table: as the other stream configuration operations.
                ("UpdateImageGenerationConfiguration", TpsLimit::new(50.0, Some(5.0))),
                ("UpdateNotificationConfiguration", TpsLimit::new(50.0, Some(5.0))),
                ("DescribeStreamStorageConfiguration", TpsLimit::new(50.0, Some(5.0))),
                ("UpdateStreamStorageConfiguration", TpsLimit::new(50.0, Some(5.0))),
            ]),
            default_control_plane_tps: TpsLimit::new(50.0, None),
            max_request_body_bytes: 1 << 20,
            max_clock_skew_secs: 15 * 60,
            max_presign_expires_secs: 604_800,
            signaling: SignalingLimits::default(),
            playback: PlaybackLimits::default(),
            streaming: StreamingLimits::default(),
            put_media: PutMediaLimits::default(),
            storage_session: StorageSessionLimits::default(),
            cluster: ClusterLimits::default(),
            http: HttpLimits::default(),
            turn: TurnLimits::default(),
        }
    }
}

impl Limits {
    /// The rate quota of one control-plane operation.
    pub fn control_plane(&self, operation: &str) -> TpsLimit {
        self.control_plane_tps.get(operation).copied().unwrap_or(self.default_control_plane_tps)
    }
}

/// Quotas of the playback APIs (docs/kvs-wire.md §5.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlaybackLimits {
    /// GetMedia calls per second per stream (KVS: 5).
    pub get_media_tps_per_stream: f64,
    /// GetMedia responses open at once on one stream; one more is refused with
    /// `ConnectionLimitExceededException` until a reader goes away. KVS documents the
    /// exception but not the number (docs/kvs-wire.md §5.1), so this is reel's choice: 10.
    pub max_get_media_connections_per_stream: usize,
    /// Highest rate one GetMedia response body is sent at, in bytes per second (KVS: 25 MB/s,
    /// i.e. 200 Mbps); 0 = no cap. Bursts of up to one second's worth go out at once.
    pub get_media_max_bytes_per_sec: u64,
}

/// KVS's GetMedia session rate: 25 MB/s (200 Mbps).
pub const GET_MEDIA_MAX_BYTES_PER_SEC: u64 = 25_000_000;
/// reel's default cap of concurrent GetMedia responses per stream.
pub const MAX_GET_MEDIA_CONNECTIONS_PER_STREAM: usize = 10;

impl Default for PlaybackLimits {
    fn default() -> Self {
        Self {
            get_media_tps_per_stream: 5.0,
            max_get_media_connections_per_stream: MAX_GET_MEDIA_CONNECTIONS_PER_STREAM,
            get_media_max_bytes_per_sec: GET_MEDIA_MAX_BYTES_PER_SEC,
        }
    }
}

/// Quotas of PutMedia (docs/kvs-wire.md §6; the KVS PutMedia reference and quotas page).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PutMediaLimits {
    /// PutMedia calls per second per stream (KVS: 5).
    pub tps_per_stream: f64,
    /// Largest fragment, bytes (KVS: 50 MB); a larger one fails with ErrorId 4001.
    pub max_fragment_bytes: u64,
    /// Longest fragment, ms (KVS: 10 s; at most 32,767); a longer one fails with 4002.
    pub max_fragment_duration_ms: u64,
    /// Most tracks in a stream (KVS: 3); more fail with 4012.
    pub max_tracks: usize,
    /// Longest connection, seconds; it then ends with 4003. KVS does not publish its own; its
    /// producer SDKs reconnect every 40 minutes, so reel allows 45.
    pub max_connection_secs: u64,
    /// While no data arrives, an `IDLE` acknowledgement is sent this often, ms.
    pub idle_ack_interval_ms: u64,
    /// A connection without data for this long is closed, seconds (KVS: 30).
    pub idle_timeout_secs: u64,
}

/// Largest `max_fragment_bytes`: a fragment is stored as one record, and the store's records
/// hold at most 64 MiB.
pub const MAX_PUT_MEDIA_FRAGMENT_BYTES: u64 = 60 << 20;
/// Longest `max_connection_secs` (a day).
pub const MAX_PUT_MEDIA_CONNECTION_SECS: u64 = 86_400;

impl PutMediaLimits {
    /// Checks the values a connection relies on; the error names the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.tps_per_stream > 0.0 && self.tps_per_stream.is_finite()) {
            return Err(format!("tps_per_stream must be a positive number, got {}", self.tps_per_stream));
        }
        if !(1..=MAX_PUT_MEDIA_FRAGMENT_BYTES).contains(&self.max_fragment_bytes) {
            return Err(format!(
                "max_fragment_bytes must be 1..={MAX_PUT_MEDIA_FRAGMENT_BYTES}, got {}",
                self.max_fragment_bytes
            ));
        }
        if !(1..=i16::MAX as u64).contains(&self.max_fragment_duration_ms) {
            return Err(format!("max_fragment_duration_ms must be 1..=32767, got {}", self.max_fragment_duration_ms));
        }
        if !(1..=127).contains(&self.max_tracks) {
            return Err(format!("max_tracks must be 1..=127, got {}", self.max_tracks));
        }
        if !(1..=MAX_PUT_MEDIA_CONNECTION_SECS).contains(&self.max_connection_secs) {
            return Err(format!(
                "max_connection_secs must be 1..={MAX_PUT_MEDIA_CONNECTION_SECS}, got {}",
                self.max_connection_secs
            ));
        }
        if !(100..=3_600_000).contains(&self.idle_ack_interval_ms) {
            return Err(format!("idle_ack_interval_ms must be 100..=3600000, got {}", self.idle_ack_interval_ms));
        }
        if !(1..=86_400).contains(&self.idle_timeout_secs) {
            return Err(format!("idle_timeout_secs must be 1..=86400, got {}", self.idle_timeout_secs));
        }
        Ok(())
    }
}

impl Default for PutMediaLimits {
    fn default() -> Self {
        Self {
            tps_per_stream: 5.0,
            max_fragment_bytes: 50_000_000,
            max_fragment_duration_ms: 10_000,
            max_tracks: 3,
            max_connection_secs: 45 * 60,
            idle_ack_interval_ms: 3_000,
            idle_timeout_secs: 30,
        }
    }
}

/// Quotas of the signaling service and the embedded TURN server (docs/kvs-wire.md "Limits").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalingLimits {
    /// ConnectAsMaster + ConnectAsViewer per channel, per second (KVS: 3).
    pub connect_tps_per_channel: f64,
    /// Concurrent viewers per channel (KVS soft limit: 10).
    pub max_viewers_per_channel: usize,
    /// SDP offers + answers per WebSocket connection, per second (KVS: 5).
    pub sdp_tps_per_connection: f64,
    /// ICE candidates per WebSocket connection, per second (KVS: 20).
    pub ice_tps_per_connection: f64,
    /// Longest `messagePayload` (base64 text) a client may send, in bytes (KVS: 10 KB).
    pub max_message_payload_bytes: usize,
    /// A connection with no frame from the client for this long is closed (KVS: 10 min).
    pub idle_timeout_secs: u64,
    /// Longest life of one WebSocket connection (KVS: 1 h).
    pub max_connection_secs: u64,
    /// `GO_AWAY` is sent this long before a connection reaches its maximum life (KVS: 1 min).
    pub go_away_before_close_secs: u64,
    /// On graceful shutdown, connections close this long after their `GO_AWAY` (reel's choice:
    /// short, so a restart is quick; clients reconnect on `GO_AWAY` anyway).
    pub shutdown_go_away_grace_ms: u64,
    /// Undelivered messages held per absent recipient (reel's bound on memory; KVS holds
    /// them for the channel's MessageTtlSeconds).
    pub max_pending_messages_per_recipient: usize,
    /// Events queued towards one connection before further ones fail (reel's bound on memory).
    pub outbound_queue_per_connection: usize,
    /// GetIceServerConfig per channel, per second (KVS: 5).
    pub get_ice_server_config_tps_per_channel: f64,
    /// SendAlexaOfferToMaster per channel, per second (KVS: 5).
    pub send_alexa_offer_tps_per_channel: f64,
    /// Lifetime of issued TURN credentials, the `Ttl` of GetIceServerConfig (KVS: 300 s).
    pub turn_credential_ttl_secs: u64,
    /// Concurrent TURN allocations per channel (KVS: 50).
    pub turn_max_allocations_per_channel: usize,
    /// Relayed bandwidth per TURN allocation and direction, bits per second (KVS: 5 Mbps).
    pub turn_bandwidth_bps_per_allocation: u64,
}

impl Default for SignalingLimits {
    fn default() -> Self {
        Self {
            connect_tps_per_channel: 3.0,
            max_viewers_per_channel: 10,
            sdp_tps_per_connection: 5.0,
            ice_tps_per_connection: 20.0,
            max_message_payload_bytes: 10 * 1024,
            idle_timeout_secs: 10 * 60,
            max_connection_secs: 60 * 60,
            go_away_before_close_secs: 60,
            shutdown_go_away_grace_ms: 1_000,
            max_pending_messages_per_recipient: 64,
            outbound_queue_per_connection: 256,
            get_ice_server_config_tps_per_channel: 5.0,
            send_alexa_offer_tps_per_channel: 5.0,
            turn_credential_ttl_secs: 300,
            turn_max_allocations_per_channel: 50,
            turn_bandwidth_bps_per_allocation: 5_000_000,
        }
    }
}

/// Quotas of HLS/DASH streaming sessions, GetClip and GetImages (docs/kvs-wire.md §5.4–5.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingLimits {
    /// Shortest session lifetime, seconds (`Expires` minimum, KVS: 300).
    pub min_session_expires_s: u32,
    /// Longest session lifetime, seconds (`Expires` maximum, KVS: 43,200).
    pub max_session_expires_s: u32,
    /// Session lifetime when `Expires` is absent (KVS: 300).
    pub default_session_expires_s: u32,
    /// Most fragments in one playlist/manifest (KVS: 5,000).
    pub max_playlist_fragments: u32,
    /// Longest timestamp range of a session or clip, ms (KVS: 24 h).
    pub max_range_ms: u64,
    /// LIVE needs a fragment ingested within this many ms (KVS: 30 s).
    pub live_window_ms: u64,
    /// Most fragments in one GetClip (KVS: 200).
    pub max_clip_fragments: usize,
    /// Most media bytes in one GetClip (KVS: 100 MB).
    pub max_clip_bytes: u64,
    /// GetImages pages decoding video at once on a node (reel; each takes one core while it
    /// decodes); further calls wait their turn.
    pub image_decodes: usize,
}

impl Default for StreamingLimits {
    fn default() -> Self {
        Self {
            min_session_expires_s: 300,
            max_session_expires_s: 43_200,
            default_session_expires_s: 300,
            max_playlist_fragments: 5_000,
            max_range_ms: 24 * 3_600_000,
            live_window_ms: 30_000,
            max_clip_fragments: 200,
            max_clip_bytes: 100 * 1024 * 1024,
            image_decodes: 1,
        }
    }
}

/// Quotas of the storage media peer (docs/kvs-wire.md "Limits", docs/kvs-wire.md §4.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSessionLimits {
    /// Longest life of one storage session, in seconds (KVS: 1 h).
    pub max_session_secs: u64,
    /// A session without media for this long ends, in seconds (reel: 3 min).
    pub idle_timeout_secs: u64,
    /// Bitrate advertised to the sender per session, bits per second (reel: 1 Mbps).
    pub bitrate_bps: u64,
    /// JoinStorageSession calls per second across the account (KVS: 50).
    pub join_tps_account: f64,
    /// JoinStorageSession calls per second on one channel (KVS: 2).
    pub join_tps_per_channel: f64,
    /// Media reaches the store writer at least this often, in ms: frames in between are
    /// coalesced into one chunk (one queue hand-off and one store append instead of one per
    /// frame). A fragment's end is always handed over at once (reel: 100 ms).
    pub chunk_flush_ms: u64,
    /// Receive buffer asked for on each media UDP socket, in bytes (reel: 8 MiB). Bursts
    /// from many cameras overflow the kernel's default (~208 KiB) while the loop is busy;
    /// beyond `net.core.rmem_max` it takes CAP_NET_ADMIN (SO_RCVBUFFORCE).
    pub recv_buffer_bytes: usize,
    /// Session timers are rounded up to this grid, in ms, so one wakeup serves every
    /// session due in the same tick (reel: 10 ms; 0 = exact).
    pub timer_tick_ms: u64,
    /// After a wakeup that read datagrams, the media loop waits this long before reading
    /// again, so one wakeup (and one `recvmmsg`) serves a batch of datagrams from many
    /// sessions instead of one each. It delays each datagram's processing (and forwarding to
    /// live viewers) by at most this much; arrival times in TWCC feedback and jitter are the
    /// kernel's, so they do not move (reel: 5 ms; 0 = read as soon as the socket is readable).
    pub recv_coalesce_ms: u64,
    /// A fragment is cut at the first keyframe once it lasts this long, in ms (reel: 2 s,
    /// at most 10 s; keyframes are requested from then on). It is also the shortest regular
    /// fragment: only loss, a codec change or the session's end cut one earlier, so there is
    /// no separate minimum.
    pub fragment_target_ms: u32,
    /// A fragment without a keyframe ends at this length, in ms, and video waits for the
    /// next keyframe (reel: 12 s, ≥ the target, at most 30 s).
    pub fragment_max_ms: u32,
    /// Viewers of one storage session (JoinStorageSessionAsViewer; KVS: 3). A viewer's
    /// quota stays taken for `viewer_quota_hold_secs` after it leaves.
    pub max_viewers: usize,
    /// A viewer's quota stays taken this long after its session ends, in seconds; a rejoin
    /// with the same ClientId within it takes no more quota (KVS: 1 min).
    pub viewer_quota_hold_secs: u64,
    /// A viewer with no master session on its channel stays at most this long, in seconds
    /// (KVS: 3 min).
    pub viewer_no_master_secs: u64,
    /// After the master's session ends, its viewers wait this long for the channel's next
    /// session (a master rejoining, or a newer JoinStorageSession superseding the old one)
    /// before they end, in seconds (reel: 10 s).
    pub viewer_master_gone_secs: u64,
    /// Viewers' keyframe requests reach the master at most this often, in ms (reel: 500).
    pub viewer_keyframe_interval_ms: u64,
}

impl StorageSessionLimits {
    /// The fragmenter settings these limits ask for (checked by [`FragmenterConfig::validate`]).
    pub fn fragmenter_config(&self) -> FragmenterConfig {
        FragmenterConfig {
            target_duration_ms: self.fragment_target_ms,
            max_duration_ms: self.fragment_max_ms,
            ..FragmenterConfig::default()
        }
    }
}

impl Default for StorageSessionLimits {
    fn default() -> Self {
        Self {
            max_session_secs: 60 * 60,
            idle_timeout_secs: 3 * 60,
            bitrate_bps: 1_000_000,
            join_tps_account: 50.0,
            join_tps_per_channel: 2.0,
            chunk_flush_ms: 100,
            recv_buffer_bytes: 8 * 1024 * 1024,
            timer_tick_ms: 10,
            recv_coalesce_ms: 5,
            fragment_target_ms: fragmenter::DEFAULT_TARGET_DURATION_MS,
            fragment_max_ms: fragmenter::DEFAULT_MAX_DURATION_MS,
            max_viewers: 3,
            viewer_quota_hold_secs: 60,
            viewer_no_master_secs: 3 * 60,
            viewer_master_gone_secs: 10,
            viewer_keyframe_interval_ms: 500,
        }
    }
}
