//! The backend-agnostic [`MetaStore`] checks, run against every backend.
//!
//! Each check takes a fresh, empty store. A backend's test module runs them all with
//! [`backend_tests!`], so a check added here runs against SQLite and Postgres alike.

use std::collections::BTreeSet;

use futures::future::join_all;

use super::{
    ChannelRecord, ImageGenerationConfig, Lease, ListQuery, MediaStorageConfig, MetaError, MetaStore,
    NotificationConfig, Quota, StorageTier, StreamRecord, StreamUpdate, Tags, new_version,
};

/// Declares one `#[tokio::test]` per shared check. `$fresh` is an async fn returning
/// `(store, guard)`: a fresh, empty store and whatever must live as long as it.
macro_rules! backend_tests {
    ($fresh:path) => {
        $crate::meta::suite::backend_tests!(
            $fresh;
            channel_lifecycle_and_version_checks,
            stream_lifecycle_and_version_checks,
            quotas_are_enforced_atomically,
            storage_mapping_rules,
            storage_tier_is_versioned_with_the_stream,
            stream_configurations_round_trip_and_go_with_their_stream,
            tags_follow_their_resource,
            listing_pages_by_name_with_prefix,
            listing_orders_names_bytewise,
            concurrent_writers_cannot_both_win,
            leases_fence_stale_writers,
            fragment_catalog_is_fenced_and_expires,
        );
    };
    ($fresh:path; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let (store, _guard) = $fresh().await;
                $crate::meta::suite::$check(&store).await;
            }
        )+
    };
}
pub(crate) use backend_tests;

/// Stream writer leases on fake time: take, expiry, takeover with a larger epoch, the stale
/// writer refused, release keeping the epoch, the lease going with its stream, and racing
/// takes of one free stream won by exactly one node.
pub async fn leases_fence_stale_writers(store: &dyn MetaStore) {
    const LEASE: u64 = 10_000;
    let s = stream("leased", 24);
    assert!(matches!(store.acquire_lease(&s.arn, "a", 0, LEASE).await, Err(MetaError::NotFound(_))));
    store.create_stream(&s, &Tags::new(), 10).await.expect("stream");
    assert_eq!(store.lease(&s.arn).await.expect("lease"), None);
    let a = store.acquire_lease(&s.arn, "a", 1_000, LEASE).await.expect("free");
    assert_eq!((a.holder.as_str(), a.expires_ms), ("a", 11_000));
    let a = store.renew_lease(&s.arn, "a", a.epoch, 9_000, LEASE).await.expect("renewed");
    assert_eq!(a.expires_ms, 19_000);
    // b takes over while a's lease runs (the newest session wins): a larger epoch, and a's
    // renewal is refused.
    let b = store.acquire_lease(&s.arn, "b", 12_000, LEASE).await.expect("takeover");
    assert!(b.holder == "b" && b.epoch > a.epoch, "{b:?}");
    assert!(matches!(store.renew_lease(&s.arn, "a", a.epoch, 12_500, LEASE).await, Err(MetaError::LeaseLost { .. })));
    // A stale release changes nothing; b's own release frees it without resetting the epoch.
    store.release_lease(&s.arn, "a", a.epoch).await.expect("stale release is a no-op");
    assert_eq!(store.lease(&s.arn).await.expect("lease"), Some(b.clone()));
    store.release_lease(&s.arn, "b", b.epoch).await.expect("release");
    let c = store.acquire_lease(&s.arn, "c", 20_000, LEASE).await.expect("free after release");
    assert!(c.epoch > b.epoch);
    // Epochs come from one counter: unique across streams, so ten racing takes of streams
    // and of one stream all get distinct epochs, and exactly one holds the raced stream.
    let r = stream("raced", 24);
    store.create_stream(&r, &Tags::new(), 10).await.expect("stream");
    let takes = join_all((0..10).map(|i| {
        let arn = if i % 2 == 0 { r.arn.clone() } else { s.arn.clone() };
        async move { store.acquire_lease(&arn, &format!("n{i}"), 50_000, LEASE).await.expect("take") }
    }))
    .await;
    let mut epochs: Vec<u64> = takes.iter().map(|t| t.epoch).collect();
    epochs.sort_unstable();
    epochs.dedup();
    assert_eq!(epochs.len(), 10, "{takes:?}");
    let newest = takes.iter().filter(|t| t.stream_arn == r.arn).max_by_key(|t| t.epoch).expect("some");
    assert_eq!(store.lease(&r.arn).await.expect("lease").as_ref(), Some(newest));
    // A node's leases renew in one call: those it still holds come back renewed, the rest
    // (s, taken by a racer after c had it; a stale epoch) are left out.
    let t = stream("batched", 24);
    store.create_stream(&t, &Tags::new(), 10).await.expect("stream");
    let mine = store.acquire_lease(&t.arn, "c", 60_000, LEASE).await.expect("take");
    let held = [(s.arn.clone(), c.epoch), (t.arn.clone(), mine.epoch), (r.arn.clone(), c.epoch)];
    let renewed = store.renew_leases("c", &held, 61_000, LEASE).await.expect("renew");
    assert_eq!(renewed, vec![Lease { expires_ms: 71_000, ..mine }]);
    assert_eq!(store.renew_leases("c", &[], 61_000, LEASE).await.expect("nothing to renew"), vec![]);
    // Deleting the stream deletes its lease.
    store.delete_stream(&s.arn, None).await.expect("delete");
    assert!(matches!(store.acquire_lease(&s.arn, "a", 30_000, LEASE).await, Err(MetaError::NotFound(_))));
}

/// The fragment catalog: inserts only under the current lease (idempotent), listings in
/// number order, batched catch-up polls, floors, retention by each stream's hours and
/// for streams that are gone, and removal of a stream's rows.
pub async fn fragment_catalog_is_fenced_and_expires(store: &dyn MetaStore) {
    use reel_storage::{CatalogEntry, FragmentInfo, FragmentNumber};
    let entry = |counter: u64, server_ts_ms: u64| CatalogEntry {
        info: FragmentInfo {
            number: FragmentNumber::from_counter(counter),
            producer_ts_ms: server_ts_ms,
            server_ts_ms,
            duration_ms: 2_000,
            chunk_count: 3,
            payload_bytes: 1_000,
            header_bytes: 50,
            truncated: counter.is_multiple_of(2),
        },
        object_bytes: 1_200,
    };
    let s = stream("cataloged", 1);
    let gone = stream("gone", 24);
    store.create_stream(&s, &Tags::new(), 10).await.expect("stream");
    store.create_stream(&gone, &Tags::new(), 10).await.expect("stream");
    let a = store.acquire_lease(&s.arn, "a", 0, 10_000).await.expect("lease");
    store.insert_fragment(&s.arn, &entry(10, 1_000), "a", a.epoch).await.expect("insert");
    store.insert_fragment(&s.arn, &entry(10, 1_000), "a", a.epoch).await.expect("a retry is accepted");
    assert!(matches!(
        store.insert_fragment(&s.arn, &entry(11, 3_000), "a", a.epoch + 100).await,
        Err(MetaError::LeaseLost { .. })
    ));
    assert!(matches!(
        store.insert_fragment(&s.arn, &entry(11, 3_000), "b", a.epoch).await,
        Err(MetaError::LeaseLost { .. })
    ));
    // b takes over: a's inserts are refused from now on, b's go in.
    let b = store.acquire_lease(&s.arn, "b", 1, 10_000).await.expect("takeover");
    assert!(matches!(
        store.insert_fragment(&s.arn, &entry(11, 3_000), "a", a.epoch).await,
        Err(MetaError::LeaseLost { .. })
    ));
    store.insert_fragment(&s.arn, &entry(12, 3_000), "b", b.epoch).await.expect("insert");
    let g = store.acquire_lease(&gone.arn, "a", 0, 10_000).await.expect("lease");
    store.insert_fragment(&gone.arn, &entry(20, 1_000), "a", g.epoch).await.expect("insert");

    let listed = store.fragments_after(&s.arn, 0, 10).await.expect("list");
    assert_eq!(listed, vec![entry(10, 1_000), entry(12, 3_000)]);
    assert_eq!(store.fragments_after(&s.arn, 10, 10).await.expect("list"), vec![entry(12, 3_000)]);
    assert_eq!(store.fragments_after(&s.arn, 0, 1).await.expect("list").len(), 1);
    // Several streams' catch-up in one statement, each after its own counter.
    let each = [(s.arn.clone(), 10), (gone.arn.clone(), 0), ("arn:none".to_string(), 0)];
    let polled = store.fragments_after_each(&each, 100).await.expect("poll");
    let mut expected = vec![(s.arn.clone(), entry(12, 3_000)), (gone.arn.clone(), entry(20, 1_000))];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(polled, expected);
    assert!(store.fragments_after_each(&[(s.arn.clone(), 12)], 100).await.expect("poll").is_empty());
    assert!(store.fragments_after_each(&[], 100).await.expect("poll").is_empty());
    assert_eq!(store.fragments_after_each(&each, 1).await.expect("poll").len(), 1);
    let mut floors =
        store.fragment_floors(&[s.arn.clone(), gone.arn.clone(), "arn:none".into()]).await.expect("floors");
    floors.sort();
    let mut expected = vec![(s.arn.clone(), 10), (gone.arn.clone(), 20)];
    expected.sort();
    assert_eq!(floors, expected);

    // Retention: s keeps 1 h; `gone` is deleted, so its rows expire whatever their age.
    store.delete_stream(&gone.arn, None).await.expect("delete");
    let hour = 3_600_000;
    let expired = store.expire_fragments(1_000 + 2_000 + hour - 1, 100).await.expect("expire");
    assert_eq!(expired, vec![(gone.arn.clone(), 20)]);
    let expired = store.expire_fragments(1_000 + 2_000 + hour + 1, 100).await.expect("expire");
    assert_eq!(expired, vec![(s.arn.clone(), 10)]);
    assert_eq!(store.fragment_floors(std::slice::from_ref(&s.arn)).await.expect("floor"), vec![(s.arn.clone(), 12)]);
    assert_eq!(store.remove_fragments(&s.arn).await.expect("remove"), vec![12]);
    assert_eq!(store.fragment_floors(std::slice::from_ref(&s.arn)).await.expect("floor"), vec![]);
}

/// A channel named `name` whose ARN ends in `millis` (also its creation time).
pub fn channel(name: &str, millis: u64) -> ChannelRecord {
    ChannelRecord {
        name: name.into(),
        arn: format!("arn:aws:kinesisvideo:us-west-2:123456789012:channel/{name}/{millis}"),
        channel_type: "SINGLE_MASTER".into(),
        status: "ACTIVE".into(),
        creation_time: millis as f64 / 1000.0,
        message_ttl_seconds: 60,
        version: new_version(),
    }
}

/// A stream named `name` keeping `retention` hours.
pub fn stream(name: &str, retention: u32) -> StreamRecord {
    StreamRecord {
        name: name.into(),
        arn: format!("arn:aws:kinesisvideo:us-west-2:123456789012:stream/{name}/1700000000000"),
        device_name: None,
        media_type: Some("video/h264".into()),
        kms_key_id: None,
        status: "ACTIVE".into(),
        creation_time: 1_700_000_000.0,
        data_retention_in_hours: retention,
        default_storage_tier: StorageTier::Hot,
        version: new_version(),
    }
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn names<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<String> {
    items.iter().map(|t| name(t).to_string()).collect()
}

pub async fn channel_lifecycle_and_version_checks(store: &dyn MetaStore) {
    let c = channel("cam", 1_700_000_000_123);
    store.create_channel(&c, &Tags::new(), 10).await.expect("create");
    assert_eq!(store.channel_by_name("cam").await.expect("get"), Some(c.clone()));
    assert_eq!(store.channel_by_arn(&c.arn).await.expect("get"), Some(c.clone()));
    assert_eq!(store.channel_by_name("nope").await.expect("get"), None);
    assert!(matches!(store.create_channel(&c, &Tags::new(), 10).await, Err(MetaError::AlreadyExists(_))));
    let same_name = ChannelRecord { arn: format!("{}-other", c.arn), ..c.clone() };
    assert!(matches!(store.create_channel(&same_name, &Tags::new(), 10).await, Err(MetaError::AlreadyExists(_))));

    let v2 = new_version();
    assert!(matches!(
        store.update_channel(&c.arn, "stale", Some(30), &v2).await,
        Err(MetaError::VersionMismatch { .. })
    ));
    assert!(matches!(store.update_channel("arn:missing", "v", Some(30), &v2).await, Err(MetaError::NotFound(_))));
    let updated = store.update_channel(&c.arn, &c.version, Some(30), &v2).await.expect("update");
    assert_eq!((updated.message_ttl_seconds, updated.version.as_str()), (30, v2.as_str()));
    let v3 = new_version();
    let kept = store.update_channel(&c.arn, &v2, None, &v3).await.expect("update without TTL");
    assert_eq!((kept.message_ttl_seconds, kept.version.as_str()), (30, v3.as_str()), "None keeps the TTL");
    assert_eq!(store.channel_by_arn(&c.arn).await.expect("get"), Some(kept));
    assert!(matches!(store.delete_channel(&c.arn, Some(&v2)).await, Err(MetaError::VersionMismatch { .. })));
    store.delete_channel(&c.arn, Some(&v3)).await.expect("delete");
    assert!(matches!(store.delete_channel(&c.arn, None).await, Err(MetaError::NotFound(_))));
    assert_eq!(store.channel_by_arn(&c.arn).await.expect("get"), None);
}

pub async fn stream_lifecycle_and_version_checks(store: &dyn MetaStore) {
    let s = StreamRecord {
        device_name: Some("dev".into()),
        kms_key_id: Some("arn:aws:kms:us-west-2:123456789012:key/k".into()),
        ..stream("cam", 24)
    };
    store.create_stream(&s, &tags(&[("k", "v")]), 10).await.expect("create");
    assert_eq!(store.stream_by_name("cam").await.expect("get"), Some(s.clone()));
    assert_eq!(store.stream_by_arn(&s.arn).await.expect("get"), Some(s.clone()));
    assert_eq!(store.stream_by_arn("arn:missing").await.expect("get"), None);
    assert_eq!(store.tags(&s.arn).await.expect("tags"), tags(&[("k", "v")]));
    assert!(matches!(store.create_stream(&s, &Tags::new(), 10).await, Err(MetaError::AlreadyExists(_))));

    let v2 = new_version();
    let retention = StreamUpdate { data_retention_in_hours: Some(48), ..Default::default() };
    assert!(matches!(
        store.update_stream(&s.arn, "stale", &retention, &v2).await,
        Err(MetaError::VersionMismatch { .. })
    ));
    assert!(matches!(store.update_stream("arn:missing", "v", &retention, &v2).await, Err(MetaError::NotFound(_))));
    let updated = store.update_stream(&s.arn, &s.version, &retention, &v2).await.expect("update");
    assert_eq!(updated, StreamRecord { data_retention_in_hours: 48, version: v2.clone(), ..s.clone() });
    let v3 = new_version();
    let media =
        StreamUpdate { device_name: Some("dev2".into()), media_type: Some("video/h265".into()), ..Default::default() };
    let updated = store.update_stream(&s.arn, &v2, &media, &v3).await.expect("update");
    assert_eq!(
        updated,
        StreamRecord {
            device_name: Some("dev2".into()),
            media_type: Some("video/h265".into()),
            data_retention_in_hours: 48,
            version: v3.clone(),
            ..s.clone()
        }
    );
    assert_eq!(store.stream_by_name("cam").await.expect("get"), Some(updated));

    assert!(matches!(store.delete_stream(&s.arn, Some(&v2)).await, Err(MetaError::VersionMismatch { .. })));
    store.delete_stream(&s.arn, Some(&v3)).await.expect("delete");
    assert!(matches!(store.delete_stream(&s.arn, None).await, Err(MetaError::NotFound(_))));
    assert!(matches!(store.tags(&s.arn).await, Err(MetaError::NotFound(_))));
}

pub async fn quotas_are_enforced_atomically(store: &dyn MetaStore) {
    store.create_channel(&channel("a", 1), &Tags::new(), 1).await.expect("first");
    assert!(matches!(
        store.create_channel(&channel("b", 2), &Tags::new(), 1).await,
        Err(MetaError::QuotaExceeded(Quota::Channels(1)))
    ));
    store.create_stream(&stream("s", 1), &Tags::new(), 1).await.expect("first stream");
    assert!(matches!(
        store.create_stream(&stream("t", 1), &Tags::new(), 1).await,
        Err(MetaError::QuotaExceeded(Quota::Streams(1)))
    ));
    assert_eq!(store.stream_by_name("t").await.expect("get"), None, "a refused create leaves nothing");

    let a = channel("a", 1);
    let two = tags(&[("k1", "v"), ("k2", "v")]);
    store.tag(&a.arn, &two, 2).await.expect("two tags fit");
    store.tag(&a.arn, &tags(&[("k1", "w")]), 2).await.expect("overwriting a key adds no tag");
    assert!(matches!(store.tag(&a.arn, &tags(&[("k3", "v")]), 2).await, Err(MetaError::QuotaExceeded(Quota::Tags(2)))));
    assert_eq!(
        store.tags(&a.arn).await.expect("tags"),
        tags(&[("k1", "w"), ("k2", "v")]),
        "refused tagging leaves tags unchanged"
    );
}

pub async fn storage_mapping_rules(store: &dyn MetaStore) {
    let (a, b, c) = (channel("a", 1), channel("b", 2), channel("c", 3));
    for ch in [&a, &b, &c] {
        store.create_channel(ch, &Tags::new(), 10).await.expect("channel");
    }
    let (s0, s1, s2) = (stream("s0", 0), stream("s1", 24), stream("s2", 24));
    for s in [&s0, &s1, &s2] {
        store.create_stream(s, &Tags::new(), 10).await.expect("stream");
    }
    assert!(matches!(store.set_media_storage(&a.arn, Some(&s0.arn), 1).await, Err(MetaError::NoDataRetention(_))));
    assert!(matches!(store.set_media_storage(&a.arn, Some("arn:missing"), 1).await, Err(MetaError::NotFound(_))));
    assert!(matches!(store.set_media_storage("arn:missing", Some(&s1.arn), 1).await, Err(MetaError::NotFound(_))));
    assert!(matches!(store.media_storage("arn:missing").await, Err(MetaError::NotFound(_))));
    store.set_media_storage(&a.arn, Some(&s1.arn), 1).await.expect("enable");
    store.set_media_storage(&a.arn, Some(&s1.arn), 1).await.expect("idempotent");
    assert!(matches!(store.set_media_storage(&b.arn, Some(&s1.arn), 5).await, Err(MetaError::InUse(_))));
    assert!(matches!(
        store.set_media_storage(&b.arn, Some(&s2.arn), 1).await,
        Err(MetaError::QuotaExceeded(Quota::StorageEnabledChannels(1)))
    ));
    assert_eq!(
        store.media_storage(&a.arn).await.expect("cfg"),
        MediaStorageConfig { stream_arn: Some(s1.arn.clone()), enabled: true }
    );
    assert_eq!(store.channel_for_stream(&s1.arn).await.expect("mapped").map(|c| c.arn), Some(a.arn.clone()));
    assert_eq!(store.channel_for_stream(&s2.arn).await.expect("unmapped"), None);
    assert!(matches!(store.delete_stream(&s1.arn, None).await, Err(MetaError::InUse(_))));
    let zero = StreamUpdate { data_retention_in_hours: Some(0), ..Default::default() };
    assert!(matches!(store.update_stream(&s1.arn, &s1.version, &zero, "v2").await, Err(MetaError::InUse(_))));
    // Moving a channel to another stream frees the first one.
    store.set_media_storage(&a.arn, Some(&s2.arn), 1).await.expect("move");
    assert_eq!(store.channel_for_stream(&s1.arn).await.expect("freed"), None);
    store.set_media_storage(&a.arn, None, 1).await.expect("disable");
    assert_eq!(
        store.media_storage(&a.arn).await.expect("cfg"),
        MediaStorageConfig { stream_arn: None, enabled: false }
    );
    store.set_media_storage(&a.arn, Some(&s1.arn), 1).await.expect("enable again");
    // Deleting the channel removes its mapping, freeing the stream.
    store.delete_channel(&a.arn, None).await.expect("delete channel");
    assert_eq!(store.channel_for_stream(&s1.arn).await.expect("freed"), None);
    store.delete_stream(&s1.arn, Some(&s1.version)).await.expect("delete stream");
    assert_eq!(
        store.media_storage(&c.arn).await.expect("never set"),
        MediaStorageConfig { stream_arn: None, enabled: false }
    );
}

/// The storage tier: HOT unless created otherwise, changed only by a compare-and-set update
/// that issues a new version, and left alone by the other updates.
pub async fn storage_tier_is_versioned_with_the_stream(store: &dyn MetaStore) {
    let hot = stream("hot", 24);
    let warm = StreamRecord { default_storage_tier: StorageTier::Warm, ..stream("warm", 720) };
    for s in [&hot, &warm] {
        store.create_stream(s, &Tags::new(), 10).await.expect("create");
    }
    let got = store.stream_by_arn(&warm.arn).await.expect("get").expect("exists");
    assert_eq!(got.default_storage_tier, StorageTier::Warm);
    assert_eq!(store.stream_by_name("hot").await.expect("get").map(|s| s.default_storage_tier), Some(StorageTier::Hot));

    let to_warm = StreamUpdate { default_storage_tier: Some(StorageTier::Warm), ..Default::default() };
    let v2 = new_version();
    assert!(matches!(
        store.update_stream(&hot.arn, "stale", &to_warm, &v2).await,
        Err(MetaError::VersionMismatch { .. })
    ));
    assert_eq!(
        store.stream_by_arn(&hot.arn).await.expect("get").map(|s| s.default_storage_tier),
        Some(StorageTier::Hot)
    );
    let updated = store.update_stream(&hot.arn, &hot.version, &to_warm, &v2).await.expect("update");
    assert_eq!(updated, StreamRecord { default_storage_tier: StorageTier::Warm, version: v2.clone(), ..hot.clone() });
    // Other updates keep the tier.
    let retention = StreamUpdate { data_retention_in_hours: Some(48), ..Default::default() };
    let v3 = new_version();
    let kept = store.update_stream(&hot.arn, &v2, &retention, &v3).await.expect("retention");
    assert_eq!((kept.default_storage_tier, kept.data_retention_in_hours), (StorageTier::Warm, 48));
    let listed = store.list_streams(&ListQuery { name_prefix: None, after: None, limit: 10 }).await.expect("list");
    let tiers: Vec<_> = listed.items.iter().map(|s| (s.name.as_str(), s.default_storage_tier)).collect();
    assert_eq!(tiers, [("hot", StorageTier::Warm), ("warm", StorageTier::Warm)]);
}

/// An image generation configuration with its optional members set.
pub fn image_generation(enabled: bool) -> ImageGenerationConfig {
    ImageGenerationConfig {
        enabled,
        image_selector_type: "PRODUCER_TIMESTAMP".into(),
        destination_uri: "s3://bucket/prefix".into(),
        destination_region: "us-west-2".into(),
        sampling_interval_ms: 3_000,
        format: "JPEG".into(),
        jpeg_quality: Some("80".into()),
        width_pixels: Some(320),
        height_pixels: Some(240),
    }
}

/// Image generation and notification configurations: absent until set, replaced and removed
/// in place, refused (atomically, nothing written) for a missing stream or, when enabled,
/// for a stream without retention, and deleted with their stream.
pub async fn stream_configurations_round_trip_and_go_with_their_stream(store: &dyn MetaStore) {
    let s = stream("cfg", 24);
    let live = stream("live", 0);
    for st in [&s, &live] {
        store.create_stream(st, &Tags::new(), 10).await.expect("create");
    }
    let missing = "arn:aws:kinesisvideo:us-west-2:123456789012:stream/none/1";
    assert!(matches!(store.image_generation_config(missing).await, Err(MetaError::NotFound(_))));
    assert!(matches!(store.notification_config(missing).await, Err(MetaError::NotFound(_))));
    let image = image_generation(true);
    let notify = NotificationConfig { enabled: true, destination_uri: "arn:aws:sns:us-west-2:123456789012:t".into() };
    assert!(matches!(store.set_image_generation_config(missing, Some(&image)).await, Err(MetaError::NotFound(_))));
    assert!(matches!(store.set_notification_config(missing, None).await, Err(MetaError::NotFound(_))));
    assert_eq!(store.image_generation_config(&s.arn).await.expect("none yet"), None);
    assert_eq!(store.notification_config(&s.arn).await.expect("none yet"), None);

    store.set_image_generation_config(&s.arn, Some(&image)).await.expect("set image");
    store.set_notification_config(&s.arn, Some(&notify)).await.expect("set notification");
    assert_eq!(store.image_generation_config(&s.arn).await.expect("get"), Some(image.clone()));
    assert_eq!(store.notification_config(&s.arn).await.expect("get"), Some(notify.clone()));
    // Replacing overwrites every member, optional ones included.
    let bare = ImageGenerationConfig {
        format: "PNG".into(),
        jpeg_quality: None,
        width_pixels: None,
        height_pixels: None,
        sampling_interval_ms: 200,
        ..image_generation(false)
    };
    store.set_image_generation_config(&s.arn, Some(&bare)).await.expect("replace");
    assert_eq!(store.image_generation_config(&s.arn).await.expect("get"), Some(bare));
    // The stream itself is untouched: same version.
    assert_eq!(store.stream_by_arn(&s.arn).await.expect("get"), Some(s.clone()));

    // Enabled needs retention; disabled does not, and a refusal writes nothing.
    assert!(matches!(
        store.set_image_generation_config(&live.arn, Some(&image)).await,
        Err(MetaError::NoDataRetention(_))
    ));
    assert!(matches!(
        store.set_notification_config(&live.arn, Some(&notify)).await,
        Err(MetaError::NoDataRetention(_))
    ));
    assert_eq!(store.image_generation_config(&live.arn).await.expect("get"), None);
    let off = NotificationConfig { enabled: false, ..notify.clone() };
    store.set_notification_config(&live.arn, Some(&off)).await.expect("disabled is fine");
    assert_eq!(store.notification_config(&live.arn).await.expect("get"), Some(off));
    store.set_image_generation_config(&live.arn, Some(&image_generation(false))).await.expect("disabled is fine");

    // Removing: gone, and removing again is fine.
    store.set_notification_config(&s.arn, None).await.expect("remove");
    store.set_notification_config(&s.arn, None).await.expect("remove again");
    assert_eq!(store.notification_config(&s.arn).await.expect("get"), None);

    // Deleting a stream deletes its configurations: a new stream with the same ARN starts bare.
    store.delete_stream(&s.arn, None).await.expect("delete");
    store.delete_stream(&live.arn, None).await.expect("delete");
    assert!(matches!(store.image_generation_config(&s.arn).await, Err(MetaError::NotFound(_))));
    store.create_stream(&s, &Tags::new(), 10).await.expect("recreate");
    store.create_stream(&live, &Tags::new(), 10).await.expect("recreate");
    assert_eq!(store.image_generation_config(&s.arn).await.expect("get"), None);
    assert_eq!(store.image_generation_config(&live.arn).await.expect("get"), None);
    assert_eq!(store.notification_config(&live.arn).await.expect("get"), None);
}

pub async fn tags_follow_their_resource(store: &dyn MetaStore) {
    let c = channel("cam", 1);
    assert!(matches!(store.tags(&c.arn).await, Err(MetaError::NotFound(_))));
    assert!(matches!(store.tag(&c.arn, &tags(&[("k", "v")]), 50).await, Err(MetaError::NotFound(_))));
    assert!(matches!(store.untag(&c.arn, &["k".into()]).await, Err(MetaError::NotFound(_))));

    store.create_channel(&c, &tags(&[("a", "1"), ("b", "2")]), 10).await.expect("create");
    store.tag(&c.arn, &tags(&[("b", "3"), ("ünï", "cödé ✓")]), 50).await.expect("tag");
    assert_eq!(store.tags(&c.arn).await.expect("tags"), tags(&[("a", "1"), ("b", "3"), ("ünï", "cödé ✓")]));
    store.untag(&c.arn, &["a".into(), "absent".into()]).await.expect("untag");
    assert_eq!(store.tags(&c.arn).await.expect("tags"), tags(&[("b", "3"), ("ünï", "cödé ✓")]));

    // Tags go with their resource: a new channel with the same ARN starts bare.
    store.delete_channel(&c.arn, None).await.expect("delete");
    store.create_channel(&c, &Tags::new(), 10).await.expect("recreate");
    assert_eq!(store.tags(&c.arn).await.expect("tags"), Tags::new());
}

pub async fn listing_pages_by_name_with_prefix(store: &dyn MetaStore) {
    for (i, name) in ["b_1", "a%1", "b_2", "b%3", "bx"].iter().enumerate() {
        store.create_channel(&channel(name, i as u64), &Tags::new(), 10).await.expect("create");
        store.create_stream(&stream(name, 1), &Tags::new(), 10).await.expect("create");
    }
    let q = ListQuery { name_prefix: Some("b_".into()), after: None, limit: 1 };
    let p1 = store.list_channels(&q).await.expect("page 1");
    assert_eq!(names(&p1.items, |c| &c.name), ["b_1"]);
    let p2 = store.list_channels(&ListQuery { after: p1.next_after, ..q.clone() }).await.expect("page 2");
    assert_eq!(names(&p2.items, |c| &c.name), ["b_2"]);
    assert_eq!(p2.next_after, None, "LIKE wildcards in the prefix are literal");

    let s1 = store.list_streams(&q).await.expect("page 1");
    assert_eq!(names(&s1.items, |s| &s.name), ["b_1"]);
    let s2 = store.list_streams(&ListQuery { after: s1.next_after, ..q }).await.expect("page 2");
    assert_eq!((names(&s2.items, |s| &s.name), s2.next_after), (vec!["b_2".to_string()], None));

    let all = store.list_streams(&ListQuery { name_prefix: None, after: None, limit: 100 }).await.expect("all");
    assert_eq!(names(&all.items, |s| &s.name), ["a%1", "b%3", "b_1", "b_2", "bx"]);
    assert_eq!(all.next_after, None);
    let none = store.list_channels(&ListQuery { name_prefix: Some("z".into()), after: None, limit: 5 }).await;
    assert_eq!(none.expect("empty").items, []);
}

/// Both backends order (and resume listings) by the names' bytes, whatever the locale.
pub async fn listing_orders_names_bytewise(store: &dyn MetaStore) {
    let given = ["b", "B", "a", "_x", "A-1", "a.b", "Z"];
    for (i, name) in given.iter().enumerate() {
        store.create_channel(&channel(name, i as u64), &Tags::new(), 100).await.expect("create");
    }
    let mut expected: Vec<String> = given.iter().map(|n| n.to_string()).collect();
    expected.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_channels(&ListQuery { name_prefix: None, after, limit: 2 }).await.expect("page");
        seen.extend(names(&page.items, |c| &c.name));
        after = page.next_after;
        if after.is_none() {
            break;
        }
    }
    assert_eq!(seen, expected);
}

pub async fn concurrent_writers_cannot_both_win(store: &dyn MetaStore) {
    // Ten creates of one name: exactly one succeeds.
    let creates = join_all((0..10u64).map(|i| async move {
        let c = channel("race", 100 + i);
        store.create_channel(&c, &Tags::new(), 100).await
    }))
    .await;
    let mut won = 0;
    for r in creates {
        match r {
            Ok(()) => won += 1,
            Err(MetaError::AlreadyExists(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(won, 1);
    // Ten updates from the same version: exactly one succeeds.
    let c = store.channel_by_name("race").await.expect("get").expect("exists");
    let c = &c;
    let updates = join_all(
        (0..10).map(|_| async move { store.update_channel(&c.arn, &c.version, Some(10), &new_version()).await }),
    )
    .await;
    let mut won = 0;
    for r in updates {
        match r {
            Ok(_) => won += 1,
            Err(MetaError::VersionMismatch { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(won, 1);
}

/// Two stores on one database (two reel nodes): concurrent creates from both never take
/// the account past its quotas, and each sees what the other wrote.
pub async fn quotas_hold_across_nodes(a: &dyn MetaStore, b: &dyn MetaStore) {
    const MAX: u64 = 5;
    const ATTEMPTS: u64 = 24;
    let nodes = [a, b];
    let creates = join_all((0..ATTEMPTS).map(|i| async move {
        let node = nodes[(i % 2) as usize];
        node.create_channel(&channel(&format!("ch{i:02}"), i), &Tags::new(), MAX).await
    }))
    .await;
    let streams = join_all((0..ATTEMPTS).map(|i| async move {
        let node = nodes[(i % 2) as usize];
        node.create_stream(&stream(&format!("st{i:02}"), 1), &Tags::new(), MAX).await
    }))
    .await;
    for (created, what) in [(&creates, "channels"), (&streams, "streams")] {
        let mut won = 0;
        for r in created {
            match r {
                Ok(()) => won += 1,
                Err(MetaError::QuotaExceeded(Quota::Channels(MAX) | Quota::Streams(MAX))) => {}
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(won, MAX, "{what}: exactly the quota succeeds");
    }
    let all = ListQuery { name_prefix: None, after: None, limit: 100 };
    for node in nodes {
        assert_eq!(node.list_channels(&all).await.expect("list").items.len() as u64, MAX);
        assert_eq!(node.list_streams(&all).await.expect("list").items.len() as u64, MAX);
    }

    // Storage-enabled channels: every channel races to map its own stream; MAX - 2 fit.
    let channels = a.list_channels(&all).await.expect("list").items;
    let streams = b.list_streams(&all).await.expect("list").items;
    let enabled = join_all(
        channels
            .iter()
            .zip(&streams)
            .enumerate()
            .map(|(i, (c, s))| async move { nodes[i % 2].set_media_storage(&c.arn, Some(&s.arn), MAX - 2).await }),
    )
    .await;
    let won = enabled.iter().filter(|r| r.is_ok()).count() as u64;
    assert!(
        enabled.iter().all(|r| matches!(r, Ok(()) | Err(MetaError::QuotaExceeded(Quota::StorageEnabledChannels(_))))),
        "{enabled:?}"
    );
    assert_eq!(won, MAX - 2);

    // Tags per resource: both nodes add distinct keys to one channel; at most 3 fit.
    let target = &channels[0].arn;
    let tagged =
        join_all((0..8).map(|i| async move { nodes[i % 2].tag(target, &tags(&[(&format!("k{i}"), "v")]), 3).await }))
            .await;
    assert_eq!(tagged.iter().filter(|r| r.is_ok()).count(), 3, "{tagged:?}");
    let keys: BTreeSet<String> = a.tags(target).await.expect("tags").into_keys().collect();
    assert_eq!(keys.len(), 3);
    assert_eq!(b.tags(target).await.expect("tags").into_keys().collect::<BTreeSet<_>>(), keys);
}
