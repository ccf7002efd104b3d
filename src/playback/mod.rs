//! Reading stored media back (services `kinesis-video-media` and
//! `kinesis-video-archived-media`), one file per operation:
//!
//! | file | operation |
//! |---|---|
//! | [`get_media`] | `POST /getMedia`: live or archived MKV stream, one document per fragment |
//! | [`list_fragments`] | `POST /listFragments`: fragment metadata by timestamp range, paged |
//! | [`fragment_list`] | `POST /getMediaForFragmentList`: MKV for the fragments named |
//!
//! Each handler parses the body ([`crate::api::body`]), checks the model's constraints,
//! resolves the stream by name or ARN, authorizes `kinesisvideo:<Operation>` on its ARN
//! (refusal: 401 `NotAuthorizedException`), then reads [`reel_storage`]. Media bodies are
//! streams ([`axum::body::Body::from_stream`]) that read one fragment at a time, so memory
//! per reader is one fragment and a client that disconnects drops its reader at once.
//!
//! GetMedia quotas (`[limits.playback]`): calls per second per stream
//! (`ClientLimitExceededException`), concurrent responses per stream ([`Readers`];
//! `ConnectionLimitExceededException`, 400) and the per-session send rate ([`pacing`], a
//! token bucket; KVS: 25 MB/s).
//!
//! Decisions where KVS documentation is silent or reel differs:
//! - Retention 0: GetMedia still works (KVS serves such streams live from its buffer); reel
//!   delivers what its store holds, i.e. fragments persisted since the last retention sweep.
//!   ListFragments/GetMediaForFragmentList list no `NoDataRetentionException`; they answer
//!   from whatever is stored.
//! - Fragment numbers that are well formed (`^[0-9]+$`) but were not issued by this store
//!   are treated as fragments that do not exist.

pub mod fragment_list;
pub mod get_media;
pub mod list_fragments;
mod mkv_out;
pub mod pacing;
mod sessions;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::post;

use crate::api::Core;
use crate::api::reading::{IfAbsent, open_stream};
use crate::api::resolve::{self, ArnFormatError, STREAM_DENY};
use crate::api::validate;
use crate::auth::Principal;
use crate::error::ApiResult;
use crate::meta::StreamRecord;

pub use sessions::{ConnectionLimitExceeded, Readers};

/// Signed data-plane routes of this module.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Core: FromRef<S>,
    Readers: FromRef<S>,
{
    Router::new()
        .route("/getMedia", post(get_media::handle))
        .route("/listFragments", post(list_fragments::handle))
        .route("/getMediaForFragmentList", post(fragment_list::handle))
}

/// `Content-Type` of GetMedia and GetMediaForFragmentList bodies (what KVS sends).
pub const MKV_CONTENT_TYPE: &str = "video/webm";

/// Maximum length of a fragment number (model: `^[0-9]+$`, 1–128).
const MAX_FRAGMENT_NUMBER_LEN: usize = 128;

/// Finds the stream named by `StreamName`/`StreamARN`, authorizes `kinesisvideo:<op>` on it
/// and opens it in the media store.
async fn open_resolved(
    st: &Core,
    principal: &Principal,
    op: &str,
    name: Option<&str>,
    arn: Option<&str>,
) -> ApiResult<(StreamRecord, reel_storage::Stream)> {
    let record = resolve::stream(st, principal, op, STREAM_DENY, name, arn, ArnFormatError::InvalidArgument).await?;
    let if_absent = IfAbsent::Empty { retention_hours: record.data_retention_in_hours };
    let stream = open_stream(&st.store, &record.arn, if_absent).await?;
    Ok((record, stream))
}

/// Checks a fragment number member against the model (`^[0-9]+$`, 1–128 characters).
fn fragment_number_syntax(value: &str, member: &str) -> ApiResult<()> {
    validate::length(value, member, 1, MAX_FRAGMENT_NUMBER_LEN)?;
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(validate::invalid(value, member, "Member must satisfy regular expression pattern: ^[0-9]+$"));
    }
    Ok(())
}

/// Converts a restJson1 timestamp (epoch seconds, possibly fractional) to ms since the epoch.
fn timestamp_ms(secs: f64, member: &str) -> ApiResult<u64> {
    if !secs.is_finite() || secs < 0.0 || secs > (u64::MAX / 1000) as f64 {
        return Err(validate::invalid(&secs.to_string(), member, "Member must be a timestamp after 1970-01-01"));
    }
    Ok((secs * 1000.0).round() as u64)
}

/// A ms timestamp as restJson1 epoch seconds.
fn epoch_secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_convert_both_ways() {
        assert_eq!(timestamp_ms(1_700_000_000.123, "T").expect("ts"), 1_700_000_000_123);
        assert_eq!(timestamp_ms(5.0, "T").expect("ts"), 5_000);
        assert!(timestamp_ms(-1.0, "T").is_err());
        assert!(timestamp_ms(f64::NAN, "T").is_err());
        assert_eq!(epoch_secs(1_700_000_000_123), 1_700_000_000.123);
    }

    #[test]
    fn fragment_numbers_are_digits() {
        assert!(fragment_number_syntax("0123", "F").is_ok());
        assert!(fragment_number_syntax("", "F").is_err());
        assert!(fragment_number_syntax("12a", "F").is_err());
        assert!(fragment_number_syntax(&"1".repeat(129), "F").is_err());
    }
}
