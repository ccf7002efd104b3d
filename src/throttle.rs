//! Request-rate quotas as token buckets ([`TokenBucket::per_second`]: burst = rate),
//! keyed by operation and scope.
//!
//! Throttled calls fail with `ClientLimitExceededException`, as KVS does.
//!
//! Buckets are forgotten once idle (full again), swept every [`SWEEP_INTERVAL`] or sooner
//! when more than [`SWEEP_ABOVE`] are held, so keys named after resources do not pile up.
//! Callers create per-resource buckets only for resources that exist.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::ApiError;
use crate::limits::TpsLimit;
use crate::rate::TokenBucket;

/// How often idle buckets are swept.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Above this many buckets, idle ones are swept every second rather than every minute.
pub const SWEEP_ABOVE: usize = 10_000;

/// One bucket per (operation, scope) key.
#[derive(Debug, Default)]
pub struct Throttle {
    inner: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    map: HashMap<String, TokenBucket>,
    last_sweep: Option<Instant>,
}

impl Buckets {
    /// Drop the buckets that are full again at `now` (a fresh bucket would be the same).
    fn sweep(&mut self, now: Instant) {
        let due = match self.last_sweep {
            None => {
                self.last_sweep = Some(now);
                false
            }
            Some(last) => {
                let since = now.saturating_duration_since(last);
                since >= SWEEP_INTERVAL || (self.map.len() > SWEEP_ABOVE && since >= Duration::from_secs(1))
            }
        };
        if due {
            let before = self.map.len();
            self.map.retain(|_, bucket| !bucket.is_full(now));
            self.last_sweep = Some(now);
            tracing::debug!(before, after = self.map.len(), "idle throttle buckets swept");
        }
    }
}

impl Throttle {
    /// Take one token for `operation` at account scope and, when both are given,
    /// at the resource's scope.
    pub fn check(&self, operation: &str, limit: TpsLimit, resource: Option<&str>) -> Result<(), ApiError> {
        self.check_at(operation, limit, resource, Instant::now())
    }

    /// [`Throttle::check`] with the time passed in (for tests).
    pub fn check_at(
        &self,
        operation: &str,
        limit: TpsLimit,
        resource: Option<&str>,
        now: Instant,
    ) -> Result<(), ApiError> {
        let mut keys = vec![(format!("{operation}|account"), limit.account)];
        if let (Some(r), Some(rate)) = (resource, limit.resource) {
            keys.push((format!("{operation}|{r}"), rate));
        }
        self.take_all(operation, keys, now)
    }

    /// Take one token for `operation` at one resource's scope only, at `rate` per second
    /// (handlers call this once they know the resource; the edge already applied the
    /// account-wide quota).
    pub fn check_resource(&self, operation: &str, rate: f64, resource: &str) -> Result<(), ApiError> {
        self.check_resource_at(operation, rate, resource, Instant::now())
    }

    /// [`Throttle::check_resource`] with the time passed in (for tests).
    pub fn check_resource_at(&self, operation: &str, rate: f64, resource: &str, now: Instant) -> Result<(), ApiError> {
        self.take_all(operation, vec![(format!("{operation}|{resource}"), rate)], now)
    }

    fn take_all(&self, operation: &str, keys: Vec<(String, f64)>, now: Instant) -> Result<(), ApiError> {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.sweep(now);
        let buckets = &mut inner.map;
        // Check every scope before taking tokens so a refused call costs nothing.
        let mut updated = Vec::with_capacity(keys.len());
        for (key, rate) in keys {
            let mut bucket = buckets.get(&key).copied().unwrap_or_else(|| TokenBucket::per_second(rate, now));
            if !bucket.try_take(1.0, now) {
                return Err(ApiError::client_limit(format!(
                    "Rate exceeded for {operation}: limit is {rate} requests per second"
                )));
            }
            updated.push((key, bucket));
        }
        for (key, bucket) in updated {
            buckets.insert(key, bucket);
        }
        Ok(())
    }

    /// Take one token from a single named bucket (e.g. `connect|<channel>`).
    pub fn take(&self, key: &str, rate: f64) -> bool {
        self.check(key, TpsLimit { account: rate, resource: None }, None).is_ok()
    }

    /// How many buckets are held (idle ones are swept away).
    pub fn bucket_count(&self) -> usize {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let t = Throttle::default();
        let lim = TpsLimit { account: 2.0, resource: Some(1.0) };
        let t0 = Instant::now();
        assert!(t.check_at("Op", lim, Some("a"), t0).is_ok());
        // Resource bucket (1/s) is empty, account bucket still has one token.
        assert!(t.check_at("Op", lim, Some("a"), t0).is_err());
        assert!(t.check_at("Op", lim, Some("b"), t0).is_ok());
        assert!(t.check_at("Op", lim, Some("c"), t0).is_err());
        let later = t0 + Duration::from_secs(1);
        assert!(t.check_at("Op", lim, Some("a"), later).is_ok());
    }

    #[test]
    fn idle_buckets_are_forgotten() {
        let t = Throttle::default();
        let t0 = Instant::now();
        for i in 0..100 {
            assert!(t.check_resource_at("Op", 5.0, &format!("arn-{i}"), t0).is_ok());
        }
        assert_eq!(t.bucket_count(), 100);
        // A key still in use is kept; the others are full again after a sweep interval.
        let later = t0 + SWEEP_INTERVAL;
        for _ in 0..5 {
            assert!(t.check_resource_at("Op", 5.0, "busy", later).is_ok());
        }
        assert_eq!(t.bucket_count(), 1, "only the busy bucket is left");
        assert!(t.check_resource_at("Op", 5.0, "busy", later).is_err(), "its state survived the sweep");
    }

    #[test]
    fn resource_scope_leaves_account_bucket_alone() {
        let t = Throttle::default();
        let t0 = Instant::now();
        let lim = TpsLimit { account: 1.0, resource: None };
        assert!(t.check_at("Op", lim, None, t0).is_ok());
        assert!(t.check_resource_at("Op", 2.0, "x", t0).is_ok());
        assert!(t.check_resource_at("Op", 2.0, "x", t0).is_ok());
        assert!(t.check_resource_at("Op", 2.0, "x", t0).is_err());
        assert!(t.check_resource_at("Op", 2.0, "y", t0).is_ok());
        assert!(t.check_at("Op", lim, None, t0).is_err(), "account bucket still empty");
    }
}
