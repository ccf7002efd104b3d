//! Fragment selectors of the official archived-media SDK over producer-time ranges, as the
//! playback tests build them (ListFragments, HLS, DASH, GetClip).
#![allow(dead_code)]

use aws_sdk_kinesisvideoarchivedmedia::primitives::DateTime;
use aws_sdk_kinesisvideoarchivedmedia::types as am;

/// ms since the epoch as an SDK timestamp.
pub fn secs(ms: u64) -> DateTime {
    DateTime::from_millis(ms as i64)
}

/// ListFragments: fragments of `kind` time within `start_ms..end_ms`.
pub fn fragments(kind: am::FragmentSelectorType, start_ms: u64, end_ms: u64) -> am::FragmentSelector {
    am::FragmentSelector::builder()
        .fragment_selector_type(kind)
        .timestamp_range(
            am::TimestampRange::builder()
                .start_timestamp(secs(start_ms))
                .end_timestamp(secs(end_ms))
                .build()
                .expect("range"),
        )
        .build()
        .expect("selector")
}

/// HLS: producer times `start_ms..end_ms`.
pub fn hls(start_ms: u64, end_ms: u64) -> am::HlsFragmentSelector {
    am::HlsFragmentSelector::builder()
        .fragment_selector_type(am::HlsFragmentSelectorType::ProducerTimestamp)
        .timestamp_range(
            am::HlsTimestampRange::builder().start_timestamp(secs(start_ms)).end_timestamp(secs(end_ms)).build(),
        )
        .build()
}

/// DASH: producer times `start_ms..end_ms`.
pub fn dash(start_ms: u64, end_ms: u64) -> am::DashFragmentSelector {
    am::DashFragmentSelector::builder()
        .fragment_selector_type(am::DashFragmentSelectorType::ProducerTimestamp)
        .timestamp_range(
            am::DashTimestampRange::builder().start_timestamp(secs(start_ms)).end_timestamp(secs(end_ms)).build(),
        )
        .build()
}

/// GetClip: producer times `start_ms..end_ms`.
pub fn clip(start_ms: u64, end_ms: u64) -> am::ClipFragmentSelector {
    am::ClipFragmentSelector::builder()
        .fragment_selector_type(am::ClipFragmentSelectorType::ProducerTimestamp)
        .timestamp_range(
            am::ClipTimestampRange::builder()
                .start_timestamp(secs(start_ms))
                .end_timestamp(secs(end_ms))
                .build()
                .expect("range"),
        )
        .build()
        .expect("selector")
}
