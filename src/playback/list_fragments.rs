//! `POST /listFragments` (kinesis-video-archived-media): metadata of the stored fragments
//! whose producer or server start timestamp lies in a range (both ends inclusive), in
//! fragment-number order, paged with `NextToken`.
//!
//! - `NextToken` is the store's checksummed page token (hex, within the model pattern
//!   `[a-zA-Z0-9+/]+={0,2}`); it carries the selector, so a request with a token ignores
//!   any `FragmentSelector` it also sends. A mangled token is `InvalidArgumentException`.
//! - Without either, every stored fragment is listed (server timestamps 0…∞).
//! - `MaxResults` 1–1000, default [`DEFAULT_MAX_RESULTS`].

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use reel_storage::{FragmentInfo, PageToken, TimestampKind, TimestampRange};
use serde::{Deserialize, Serialize};

use super::{epoch_secs, open_resolved, timestamp_ms};
use crate::api::Core;
use crate::api::{body, validate};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};

/// Page size when `MaxResults` is absent (KVS documentation: 100).
pub const DEFAULT_MAX_RESULTS: i64 = 100;
/// Largest `MaxResults` (model).
pub const MAX_RESULTS: i64 = 1_000;
/// Longest `NextToken` (model).
const MAX_TOKEN_LEN: usize = 4_096;
/// `FragmentSelectorType` values.
pub const SELECTOR_TYPES: &[&str] = &["PRODUCER_TIMESTAMP", "SERVER_TIMESTAMP"];

#[derive(Debug, Deserialize)]
pub(crate) struct Input {
    #[serde(rename = "StreamName")]
    name: Option<String>,
    #[serde(rename = "StreamARN")]
    arn: Option<String>,
    #[serde(rename = "MaxResults")]
    max_results: Option<i64>,
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
    #[serde(rename = "FragmentSelector")]
    selector: Option<FragmentSelector>,
}

#[derive(Debug, Deserialize)]
struct FragmentSelector {
    #[serde(rename = "FragmentSelectorType")]
    kind: Option<String>,
    #[serde(rename = "TimestampRange")]
    range: Option<Range>,
}

#[derive(Debug, Deserialize)]
struct Range {
    #[serde(rename = "StartTimestamp")]
    start: Option<f64>,
    #[serde(rename = "EndTimestamp")]
    end: Option<f64>,
}

/// `ListFragmentsOutput`.
#[derive(Debug, Serialize)]
pub struct Output {
    #[serde(rename = "Fragments")]
    fragments: Vec<FragmentOut>,
    #[serde(rename = "NextToken", skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// One `Fragment` of the output.
#[derive(Debug, Serialize)]
struct FragmentOut {
    #[serde(rename = "FragmentNumber")]
    number: String,
    #[serde(rename = "FragmentSizeInBytes")]
    size: u64,
    #[serde(rename = "ProducerTimestamp")]
    producer: f64,
    #[serde(rename = "ServerTimestamp")]
    server: f64,
    #[serde(rename = "FragmentLengthInMilliseconds")]
    length_ms: u64,
}

impl From<&FragmentInfo> for FragmentOut {
    fn from(f: &FragmentInfo) -> Self {
        Self {
            number: f.number.to_string(),
            size: f.payload_bytes + u64::from(f.header_bytes),
            producer: epoch_secs(f.producer_ts_ms),
            server: epoch_secs(f.server_ts_ms),
            length_ms: u64::from(f.duration_ms),
        }
    }
}

/// Handles `POST /listFragments`.
pub async fn handle(
    State(st): State<Core>,
    Extension(principal): Extension<Principal>,
    raw: Bytes,
) -> ApiResult<Json<Output>> {
    let input: Input = body::parse(&raw)?;
    let limit =
        validate::range(input.max_results.unwrap_or(DEFAULT_MAX_RESULTS), "MaxResults", 1, MAX_RESULTS)? as usize;
    let token = match input.next_token.as_deref() {
        Some(t) => Some(parse_token(t)?),
        None => None,
    };
    let range = match (&token, input.selector) {
        (Some(_), _) => None,
        (None, Some(sel)) => Some(selector_range(sel)?),
        (None, None) => Some(TimestampRange { kind: TimestampKind::Server, start_ms: 0, end_ms: u64::MAX }),
    };
    let (_, stream) =
        open_resolved(&st, &principal, "ListFragments", input.name.as_deref(), input.arn.as_deref()).await?;
    let page = match (token, range) {
        (Some(token), _) => stream.list_fragments_after(&token, limit)?,
        (None, Some(range)) => stream.list_fragments(range, limit)?,
        (None, None) => return Err(ApiError::internal("no selector and no token")),
    };
    Ok(Json(Output {
        fragments: page.fragments.iter().map(FragmentOut::from).collect(),
        next_token: page.next_token.map(|t| t.to_string()),
    }))
}

/// Checks `NextToken` against the model and decodes it.
fn parse_token(t: &str) -> ApiResult<PageToken> {
    validate::length(t, "NextToken", 1, MAX_TOKEN_LEN)?;
    let body = t.trim_end_matches('=');
    let pattern_ok = t.len() - body.len() <= 2
        && !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if !pattern_ok {
        return Err(validate::invalid(
            t,
            "NextToken",
            "Member must satisfy regular expression pattern: [a-zA-Z0-9+/]+={0,2}",
        ));
    }
    t.parse::<PageToken>().map_err(|_| ApiError::invalid_argument("NextToken is not a token returned by ListFragments"))
}

/// The store range a `FragmentSelector` names.
fn selector_range(sel: FragmentSelector) -> ApiResult<TimestampRange> {
    let kind = validate::required(sel.kind.as_deref(), "FragmentSelector.FragmentSelectorType")?;
    let kind = match validate::one_of(kind, "FragmentSelector.FragmentSelectorType", SELECTOR_TYPES)? {
        "PRODUCER_TIMESTAMP" => TimestampKind::Producer,
        _ => TimestampKind::Server,
    };
    let range = validate::required(sel.range, "FragmentSelector.TimestampRange")?;
    let start_member = "FragmentSelector.TimestampRange.StartTimestamp";
    let end_member = "FragmentSelector.TimestampRange.EndTimestamp";
    let start_ms = timestamp_ms(validate::required(range.start, start_member)?, start_member)?;
    let end_ms = timestamp_ms(validate::required(range.end, end_member)?, end_member)?;
    if start_ms > end_ms {
        return Err(ApiError::invalid_argument("StartTimestamp must not be later than EndTimestamp"));
    }
    Ok(TimestampRange { kind, start_ms, end_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_match_the_model_pattern() {
        assert!(parse_token("").is_err());
        assert!(parse_token("ab-cd").is_err());
        assert!(parse_token("abc===").is_err());
        let err = parse_token("abcd").expect_err("not a store token");
        assert_eq!(err.code, "InvalidArgumentException");
    }

    #[test]
    fn selector_needs_type_and_ordered_range() {
        let sel = |kind: Option<&str>, start, end| FragmentSelector {
            kind: kind.map(str::to_string),
            range: Some(Range { start, end }),
        };
        let r = selector_range(sel(Some("PRODUCER_TIMESTAMP"), Some(1.5), Some(2.0))).expect("range");
        assert_eq!((r.kind, r.start_ms, r.end_ms), (TimestampKind::Producer, 1_500, 2_000));
        assert!(selector_range(sel(None, Some(1.0), Some(2.0))).is_err());
        assert!(selector_range(sel(Some("WALL_CLOCK"), Some(1.0), Some(2.0))).is_err());
        assert!(selector_range(sel(Some("SERVER_TIMESTAMP"), Some(3.0), Some(2.0))).is_err());
        assert!(selector_range(sel(Some("SERVER_TIMESTAMP"), None, Some(2.0))).is_err());
    }
}
