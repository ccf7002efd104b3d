//! GetHLSStreamingSessionURL / GetDASHStreamingSessionURL: input parsing and the model's
//! validation, the checks on the stream (retention, fragments, codecs), and which fragments
//! a session's playlist shows at a given moment.

use serde::Deserialize;

use super::token::{Container, Discontinuity, Mode, Protocol, Session};
use crate::error::{ApiError, ApiResult};
use crate::limits::StreamingLimits;
use reel_media::source;
use reel_storage::{FragmentInfo, FragmentNumber, Stream, TimestampKind, TimestampRange};

/// `HLSFragmentSelector` / `DASHFragmentSelector` / `ClipFragmentSelector`.
#[derive(Debug, Default, Deserialize)]
pub struct Selector {
    /// `PRODUCER_TIMESTAMP` | `SERVER_TIMESTAMP`.
    #[serde(rename = "FragmentSelectorType")]
    pub kind: Option<String>,
    /// The range.
    #[serde(rename = "TimestampRange")]
    pub range: Option<Range>,
}

/// `*TimestampRange` (epoch seconds, restJson1 timestamps).
#[derive(Debug, Default, Deserialize)]
pub struct Range {
    /// `StartTimestamp`.
    #[serde(rename = "StartTimestamp")]
    pub start: Option<f64>,
    /// `EndTimestamp`.
    #[serde(rename = "EndTimestamp")]
    pub end: Option<f64>,
}

/// The input of both session operations (members of the other one are simply absent).
#[derive(Debug, Default, Deserialize)]
pub struct SessionInput {
    /// `StreamName`.
    #[serde(rename = "StreamName")]
    pub stream_name: Option<String>,
    /// `StreamARN`.
    #[serde(rename = "StreamARN")]
    pub stream_arn: Option<String>,
    /// `PlaybackMode`.
    #[serde(rename = "PlaybackMode")]
    pub playback_mode: Option<String>,
    /// `HLSFragmentSelector`.
    #[serde(rename = "HLSFragmentSelector")]
    pub hls_selector: Option<Selector>,
    /// `DASHFragmentSelector`.
    #[serde(rename = "DASHFragmentSelector")]
    pub dash_selector: Option<Selector>,
    /// `ContainerFormat` (HLS).
    #[serde(rename = "ContainerFormat")]
    pub container_format: Option<String>,
    /// `DiscontinuityMode` (HLS).
    #[serde(rename = "DiscontinuityMode")]
    pub discontinuity_mode: Option<String>,
    /// `DisplayFragmentTimestamp`.
    #[serde(rename = "DisplayFragmentTimestamp")]
    pub display_fragment_timestamp: Option<String>,
    /// `DisplayFragmentNumber` (DASH).
    #[serde(rename = "DisplayFragmentNumber")]
    pub display_fragment_number: Option<String>,
    /// `Expires` in seconds.
    #[serde(rename = "Expires")]
    pub expires: Option<i64>,
    /// `MaxMediaPlaylistFragmentResults` (HLS).
    #[serde(rename = "MaxMediaPlaylistFragmentResults")]
    pub max_playlist: Option<i64>,
    /// `MaxManifestFragmentResults` (DASH).
    #[serde(rename = "MaxManifestFragmentResults")]
    pub max_manifest: Option<i64>,
}

fn enum_of<T: Copy>(value: Option<&str>, member: &str, options: &[(&str, T)], default: T) -> ApiResult<T> {
    let Some(v) = value else { return Ok(default) };
    options.iter().find(|(name, _)| *name == v).map(|(_, t)| *t).ok_or_else(|| {
        let names: Vec<_> = options.iter().map(|(n, _)| *n).collect();
        ApiError::invalid_argument(format!(
            "1 validation error detected: Value '{v}' at '{member}' failed to satisfy constraint: \
             Member must satisfy enum value set: [{}]",
            names.join(", ")
        ))
    })
}

/// Epoch seconds → ms (negative or non-finite values are invalid).
pub fn seconds_to_ms(s: f64, member: &str) -> ApiResult<u64> {
    if !s.is_finite() || s < 0.0 {
        return Err(ApiError::invalid_argument(format!("{member} is not a valid timestamp")));
    }
    Ok((s * 1000.0).round() as u64)
}

/// Selector type (`true` = producer timestamps) with the model's default (server).
pub fn selector_kind(sel: Option<&Selector>, member: &str) -> ApiResult<bool> {
    enum_of(
        sel.and_then(|s| s.kind.as_deref()),
        member,
        &[("PRODUCER_TIMESTAMP", true), ("SERVER_TIMESTAMP", false)],
        false,
    )
}

/// Validates the session input against the model and the KVS rules (stream lookup and
/// data checks follow in [`check_stream`]). `now_ms` is the current time.
pub fn validate(
    input: &SessionInput,
    protocol: Protocol,
    limits: &StreamingLimits,
    arn: &str,
    now_ms: u64,
) -> ApiResult<Session> {
    let mode = enum_of(
        input.playback_mode.as_deref(),
        "playbackMode",
        &[("LIVE", Mode::Live), ("LIVE_REPLAY", Mode::LiveReplay), ("ON_DEMAND", Mode::OnDemand)],
        Mode::Live,
    )?;
    let (selector, sel_member, max, max_member) = match protocol {
        Protocol::Hls => {
            (input.hls_selector.as_ref(), "hLSFragmentSelector", input.max_playlist, "maxMediaPlaylistFragmentResults")
        }
        Protocol::Dash => {
            (input.dash_selector.as_ref(), "dASHFragmentSelector", input.max_manifest, "maxManifestFragmentResults")
        }
    };
    let producer = selector_kind(selector, &format!("{sel_member}.fragmentSelectorType"))?;
    let container = match protocol {
        Protocol::Hls => enum_of(
            input.container_format.as_deref(),
            "containerFormat",
            &[("FRAGMENTED_MP4", Container::Fmp4), ("MPEG_TS", Container::Ts)],
            Container::Fmp4,
        )?,
        Protocol::Dash => Container::Fmp4,
    };
    let discontinuity = enum_of(
        input.discontinuity_mode.as_deref(),
        "discontinuityMode",
        &[
            ("ALWAYS", Discontinuity::Always),
            ("NEVER", Discontinuity::Never),
            ("ON_DISCONTINUITY", Discontinuity::OnDiscontinuity),
        ],
        if producer { Discontinuity::Never } else { Discontinuity::Always },
    )?;
    let yes_no = [("ALWAYS", true), ("NEVER", false)];
    let show_ts = enum_of(input.display_fragment_timestamp.as_deref(), "displayFragmentTimestamp", &yes_no, false)?;
    let show_fn = enum_of(input.display_fragment_number.as_deref(), "displayFragmentNumber", &yes_no, false)?;
    let expires = input.expires.unwrap_or(i64::from(limits.default_session_expires_s));
    if !(i64::from(limits.min_session_expires_s)..=i64::from(limits.max_session_expires_s)).contains(&expires) {
        return Err(ApiError::invalid_argument(format!(
            "1 validation error detected: Value '{expires}' at 'expires' failed to satisfy constraint: \
             Member must have value between {} and {}",
            limits.min_session_expires_s, limits.max_session_expires_s
        )));
    }
    let default_max = if mode == Mode::OnDemand { 1000 } else { 5 };
    let max = max.unwrap_or(default_max);
    if !(1..=i64::from(limits.max_playlist_fragments)).contains(&max) {
        return Err(ApiError::invalid_argument(format!(
            "1 validation error detected: Value '{max}' at '{max_member}' failed to satisfy constraint: \
             Member must have value between 1 and {}",
            limits.max_playlist_fragments
        )));
    }
    let range = selector.and_then(|s| s.range.as_ref());
    let (start_ms, end_ms) = match (mode, range) {
        (Mode::Live, Some(_)) => {
            return Err(ApiError::invalid_argument("TimestampRange must not be set when PlaybackMode is LIVE"));
        }
        (Mode::Live, None) => (None, None),
        (_, None) | (_, Some(Range { start: None, .. })) => {
            return Err(ApiError::invalid_argument(
                "StartTimestamp is required when PlaybackMode is LIVE_REPLAY or ON_DEMAND",
            ));
        }
        (Mode::OnDemand, Some(Range { end: None, .. })) => {
            return Err(ApiError::invalid_argument("EndTimestamp is required when PlaybackMode is ON_DEMAND"));
        }
        (_, Some(Range { start: Some(s), end })) => {
            let s = seconds_to_ms(*s, "StartTimestamp")?;
            let e = end.map(|e| seconds_to_ms(e, "EndTimestamp")).transpose()?;
            if let Some(e) = e {
                check_range(s, e, limits)?;
            }
            if s > now_ms && !producer {
                return Err(ApiError::invalid_argument("StartTimestamp must not be in the future"));
            }
            (Some(s), e)
        }
    };
    let max_results = u32::try_from(max).unwrap_or(u32::MAX);
    Ok(Session {
        protocol,
        arn: arn.to_string(),
        mode,
        producer,
        start_ms,
        end_ms,
        container,
        discontinuity,
        show_ts,
        show_fn,
        max_results,
        issued_ms: now_ms,
        anchor_ms: None,
        expires_at: now_ms / 1000 + u64::try_from(expires).unwrap_or(0),
    })
}

/// A closed range must be ordered and at most the configured span (KVS: 24 h).
pub fn check_range(start_ms: u64, end_ms: u64, limits: &StreamingLimits) -> ApiResult<()> {
    if end_ms < start_ms {
        return Err(ApiError::invalid_argument("EndTimestamp must not be before StartTimestamp"));
    }
    if end_ms - start_ms > limits.max_range_ms {
        return Err(ApiError::invalid_argument(format!(
            "EndTimestamp must be within {} hours of StartTimestamp",
            limits.max_range_ms / 3_600_000
        )));
    }
    Ok(())
}

fn kind(producer: bool) -> TimestampKind {
    if producer { TimestampKind::Producer } else { TimestampKind::Server }
}

/// The fragments a session's playlist/manifest shows at `now_ms`, oldest first.
///
/// - ON_DEMAND: the first `max_results` fragments whose start lies in the range.
/// - LIVE: the newest `max_results` fragments.
/// - LIVE_REPLAY: fragments from the start timestamp, advancing in real time since the
///   session was issued: the `max_results` fragments up to `start + (now - issued)`.
pub fn window(stream: &Stream, s: &Session, now_ms: u64, limits: &StreamingLimits) -> ApiResult<Vec<FragmentInfo>> {
    let max = s.max_results as usize;
    Ok(match s.mode {
        Mode::Live => stream.latest_fragments(max),
        Mode::OnDemand => {
            let range = TimestampRange {
                kind: kind(s.producer),
                start_ms: s.start_ms.unwrap_or(0),
                end_ms: s.end_ms.unwrap_or(u64::MAX),
            };
            stream.list_fragments(range, max)?.fragments
        }
        Mode::LiveReplay => {
            let start = s.start_ms.unwrap_or(0);
            let virtual_now = start.saturating_add(now_ms.saturating_sub(s.issued_ms));
            let end = s.end_ms.unwrap_or(u64::MAX).min(virtual_now.max(start));
            let range = TimestampRange { kind: kind(s.producer), start_ms: start, end_ms: end };
            let all = stream.list_fragments(range, limits.max_playlist_fragments as usize)?.fragments;
            let from = all.len().saturating_sub(max);
            all[from..].to_vec()
        }
    })
}

/// Whether session `s` may serve fragment `f`: its own time range, not the whole retained
/// stream. ON_DEMAND and LIVE_REPLAY: a start timestamp (of the session's selector kind)
/// within `[StartTimestamp, EndTimestamp]` (no end: open); LIVE: from the first fragment
/// its playlist showed when it was issued on.
pub fn covers(s: &Session, f: &FragmentInfo) -> bool {
    match s.mode {
        Mode::Live => s.anchor_ms.is_none_or(|anchor| f.server_ts_ms >= anchor),
        Mode::OnDemand | Mode::LiveReplay => {
            let ts = if s.producer { f.producer_ts_ms } else { f.server_ts_ms };
            ts >= s.start_ms.unwrap_or(0) && s.end_ms.is_none_or(|end| ts <= end)
        }
    }
}

/// `number` if session `s` may serve it (see [`covers`]); a fragment outside the session
/// is `ResourceNotFoundException`, as one that does not exist.
pub fn fragment_in_session(stream: &Stream, s: &Session, number: FragmentNumber) -> ApiResult<FragmentNumber> {
    let info = stream.fragment_info(number)?;
    if covers(s, &info) {
        Ok(number)
    } else {
        tracing::info!(stream = %s.arn, fragment = %number, "fragment outside the streaming session refused");
        Err(ApiError::not_found("The requested fragment is not part of this streaming session"))
    }
}

/// Checks done once when the session URL is requested: there are fragments to show (for
/// LIVE: one ingested within the live window) and their codecs can be packaged.
pub async fn check_stream(
    stream: &Stream,
    s: &Session,
    now_ms: u64,
    limits: &StreamingLimits,
) -> ApiResult<Vec<source::Track>> {
    let frags = match s.mode {
        Mode::LiveReplay => {
            let range = TimestampRange {
                kind: kind(s.producer),
                start_ms: s.start_ms.unwrap_or(0),
                end_ms: s.end_ms.unwrap_or(u64::MAX),
            };
            stream.list_fragments(range, 1)?.fragments
        }
        _ => window(stream, s, now_ms, limits)?,
    };
    let newest = match s.mode {
        Mode::Live => frags.last().filter(|f| f.server_ts_ms + limits.live_window_ms >= now_ms),
        _ => frags.first(),
    };
    let Some(info) = newest else {
        return Err(ApiError::not_found(match s.mode {
            Mode::Live => {
                format!("No fragments found in the stream for the last {} seconds", limits.live_window_ms / 1000)
            }
            _ => "No fragments found in the stream for the given timestamp range".to_string(),
        }));
    };
    let fragment = stream.read_fragment(info.number).await?;
    Ok(source::tracks(&fragment.header)?)
}

/// The media sequence number of `first` within a session: how many fragments of the stream
/// lie between the session's anchor and `first`. Stable across playlist reloads even when
/// fragment numbers of several streams interleave (HLS needs +1 per segment).
pub fn media_sequence(stream: &Stream, s: &Session, first: &FragmentInfo) -> ApiResult<u64> {
    let Some(anchor) = s.anchor_ms else { return Ok(0) };
    let (kind, ts) = match s.mode {
        Mode::Live => (TimestampKind::Server, first.server_ts_ms),
        _ => (kind(s.producer), if s.producer { first.producer_ts_ms } else { first.server_ts_ms }),
    };
    if ts <= anchor {
        return Ok(0);
    }
    let range = TimestampRange { kind, start_ms: anchor, end_ms: ts - 1 };
    Ok(stream.list_fragments(range, usize::MAX)?.fragments.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(
        mode: Mode,
        producer: bool,
        start_ms: Option<u64>,
        end_ms: Option<u64>,
        anchor_ms: Option<u64>,
    ) -> Session {
        Session {
            protocol: Protocol::Hls,
            arn: "arn:aws:kinesisvideo:us-west-2:123456789012:stream/s/1".into(),
            mode,
            producer,
            start_ms,
            end_ms,
            container: Container::Fmp4,
            discontinuity: Discontinuity::Always,
            show_ts: false,
            show_fn: false,
            max_results: 5,
            issued_ms: 0,
            anchor_ms,
            expires_at: 1,
        }
    }

    fn fragment(producer_ts_ms: u64, server_ts_ms: u64) -> FragmentInfo {
        FragmentInfo {
            number: FragmentNumber::from_counter(1),
            producer_ts_ms,
            server_ts_ms,
            duration_ms: 2000,
            chunk_count: 1,
            payload_bytes: 1,
            header_bytes: 1,
            truncated: false,
        }
    }

    #[test]
    fn sessions_cover_their_own_range_only() {
        let on_demand = session(Mode::OnDemand, true, Some(10_000), Some(20_000), None);
        assert!(covers(&on_demand, &fragment(10_000, 0)));
        assert!(covers(&on_demand, &fragment(20_000, 0)));
        assert!(!covers(&on_demand, &fragment(9_999, 15_000)), "producer timestamps select");
        assert!(!covers(&on_demand, &fragment(20_001, 15_000)));
        let by_server = session(Mode::OnDemand, false, Some(10_000), Some(20_000), None);
        assert!(covers(&by_server, &fragment(0, 15_000)));
        assert!(!covers(&by_server, &fragment(15_000, 25_000)));
        let replay = session(Mode::LiveReplay, false, Some(10_000), None, Some(10_000));
        assert!(!covers(&replay, &fragment(0, 9_999)));
        assert!(covers(&replay, &fragment(0, u64::MAX)), "no end: open");
        let bounded = session(Mode::LiveReplay, false, Some(10_000), Some(12_000), Some(10_000));
        assert!(!covers(&bounded, &fragment(0, 12_001)));
        let live = session(Mode::Live, false, None, None, Some(50_000));
        assert!(covers(&live, &fragment(0, 50_000)));
        assert!(!covers(&live, &fragment(0, 49_999)), "nothing from before the live edge at issue");
    }
}
