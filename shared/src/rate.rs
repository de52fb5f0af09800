//! Rate limits that hold across connections and nodes.
//!
//! A [`Limiter`] is a set of token buckets, one per key (a user id, a client
//! address), each refilled at [`Rate::per_s`] tokens a second and holding at
//! most [`Rate::burst`]. With Redis the buckets live there (one atomic
//! script, [`crate::bus::rate`]) and every gateway and api node that shares
//! the Redis shares them; takes arriving together go in one round trip.
//! Without Redis (the all-in-one) they live in the process. When Redis does
//! not answer within [`REDIS_WAIT`], the take is answered from the
//! process's own buckets instead: the limit then holds per node until Redis
//! is back, and an outage of Redis never refuses or stalls everyone.
//!
//! The buckets use GCRA: a bucket is one number, the time at which it would
//! be full again ("theoretical arrival time"); a bucket at or before now is
//! full and need not be stored.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::batch::Batcher;
use crate::bus::rate::TakeFrom;

/// How long a take waits for Redis before the process's buckets answer it.
pub const REDIS_WAIT: Duration = Duration::from_millis(250);
/// Takes asked in one round trip at most.
const BATCH: usize = 512;
/// Takes that may wait for a round trip; more are answered locally.
const QUEUE: usize = 16_384;
/// Round trips in flight at once.
const IN_FLIGHT: usize = 4;
/// Local buckets kept before full ones are forgotten.
const PRUNE_AT: usize = 4096;

/// A bucket's refill rate and size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second; 0 is no limit.
    pub per_s: u32,
    /// Most tokens the bucket holds (the largest burst).
    pub burst: u32,
}

impl Rate {
    /// `per_s` a second with a burst of twice that (the limits' default shape).
    pub fn with_double_burst(per_s: u32) -> Self {
        Rate {
            per_s,
            burst: per_s.saturating_mul(2),
        }
    }

    /// Whether this limits anything.
    pub fn is_on(&self) -> bool {
        self.per_s > 0
    }

    fn interval_ms(&self) -> f64 {
        1000.0 / f64::from(self.per_s.max(1))
    }

    fn tolerance_ms(&self) -> f64 {
        f64::from(self.burst.max(1)) * self.interval_ms()
    }
}

/// The answer to a take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    /// Tokens granted (0: the bucket is empty).
    pub granted: u32,
    /// When nothing was granted, how long until the bucket's next token.
    pub retry_after: Duration,
}

impl Take {
    fn from_parts(granted: u32, retry_ms: u64) -> Self {
        Take {
            granted,
            retry_after: Duration::from_millis(retry_ms),
        }
    }

    /// Retry-After in whole seconds (at least 1), for HTTP.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_millis().div_ceil(1000).max(1) as u64
    }
}

/// Buckets kept in this process. Full buckets are forgotten when the map
/// has doubled since the last pruning (at least [`PRUNE_AT`]), so pruning
/// costs O(1) a take however many buckets are busy.
#[derive(Default)]
struct LocalBuckets {
    tats: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    tats: HashMap<String, f64>,
    prune_at: usize,
}

impl LocalBuckets {
    fn take(&self, key: &str, n: u32, rate: Rate, now_ms: f64) -> Take {
        let (t, tau) = (rate.interval_ms(), rate.tolerance_ms());
        let mut buckets = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        let Buckets { tats, prune_at } = &mut *buckets;
        if tats.len() >= (*prune_at).max(PRUNE_AT) {
            tats.retain(|_, tat| *tat > now_ms);
            *prune_at = tats.len() * 2;
        }
        let tat = tats.get(key).copied().unwrap_or(now_ms).max(now_ms);
        let avail = ((now_ms + tau - tat) / t + 1e-9).floor();
        let k = f64::from(n).min(avail);
        if k >= 1.0 {
            tats.insert(key.to_owned(), tat + k * t);
            Take::from_parts(k as u32, 0)
        } else {
            let retry = (tat + t - tau - now_ms).ceil().max(1.0);
            Take::from_parts(0, retry as u64)
        }
    }
}

/// A set of rate-limited buckets under one scope (`user`, `ip_login`, ...);
/// cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    scope: &'static str,
    rate: Rate,
    local: LocalBuckets,
    redis: Option<Batcher<TakeFrom, Take>>,
    last_warned: AtomicI64,
}

impl Limiter {
    /// Buckets of `rate` named `rate:{scope}:{key}` in Redis when `pool` is
    /// given (a task sends the takes; call within a Tokio runtime), else in
    /// this process. A rate of 0 limits nothing.
    pub fn new(scope: &'static str, rate: Rate, pool: Option<deadpool_redis::Pool>) -> Self {
        let redis = pool.filter(|_| rate.is_on()).map(|pool| {
            Batcher::spawn(QUEUE, BATCH, IN_FLIGHT, move |takes: Vec<TakeFrom>| {
                let pool = pool.clone();
                async move {
                    match crate::bus::rate::take(&pool, &takes, now_ms()).await {
                        Ok(answers) => Some(
                            answers
                                .into_iter()
                                .map(|(granted, retry)| Take::from_parts(granted, retry))
                                .collect(),
                        ),
                        // Unanswered: each take falls back to the local buckets.
                        Err(e) => {
                            tracing::debug!(error = %e, "rate limit round trip failed");
                            None
                        }
                    }
                }
            })
        });
        Limiter {
            inner: Arc::new(Inner {
                scope,
                rate,
                local: LocalBuckets::default(),
                redis,
                last_warned: AtomicI64::new(0),
            }),
        }
    }

    /// The buckets' rate.
    pub fn rate(&self) -> Rate {
        self.inner.rate
    }

    /// Whether the buckets are shared through Redis.
    pub fn is_shared(&self) -> bool {
        self.inner.redis.is_some()
    }

    /// Takes up to `n` tokens from `key`'s bucket (all `n` when off).
    pub async fn take(&self, key: &str, n: u32) -> Take {
        let inner = &*self.inner;
        if !inner.rate.is_on() {
            return Take::from_parts(n, 0);
        }
        let now = now_ms();
        let Some(redis) = &inner.redis else {
            return inner.local.take(key, n, inner.rate, now as f64);
        };
        let ask = TakeFrom {
            key: format!("rate:{}:{key}", inner.scope),
            interval_ms: inner.rate.interval_ms(),
            tolerance_ms: inner.rate.tolerance_ms(),
            n,
        };
        if let Some(answer) = redis.ask(ask)
            && let Ok(Ok(take)) = tokio::time::timeout(REDIS_WAIT, answer).await
        {
            return take;
        }
        let last = inner.last_warned.load(Ordering::Relaxed);
        if now - last > 10_000
            && inner
                .last_warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                scope = inner.scope,
                "Redis did not answer a rate limit; this node's own buckets answer meanwhile"
            );
        }
        inner.local.take(key, n, inner.rate, now as f64)
    }

    /// Takes one token from `key`'s bucket: `Err` with the take when it is empty.
    pub async fn check(&self, key: &str) -> Result<(), Take> {
        let take = self.take(key, 1).await;
        if take.granted > 0 { Ok(()) } else { Err(take) }
    }
}

/// Unix time in ms (the clock every node's buckets agree on through Redis).
fn now_ms() -> i64 {
    i64::try_from(crate::bus::unix_micros() / 1000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_bucket_grants_its_burst_then_its_rate() {
        let buckets = LocalBuckets::default();
        let rate = Rate::with_double_burst(50);
        let t0 = 1_000_000.0;
        // The burst: 100 at once, then nothing.
        assert_eq!(buckets.take("u", 60, rate, t0).granted, 60);
        assert_eq!(buckets.take("u", 60, rate, t0).granted, 40);
        let empty = buckets.take("u", 1, rate, t0);
        assert_eq!(empty.granted, 0);
        assert_eq!(empty.retry_after, Duration::from_millis(20));
        // One token per 20 ms afterwards.
        assert_eq!(buckets.take("u", 10, rate, t0 + 100.0).granted, 5);
        assert_eq!(buckets.take("u", 1, rate, t0 + 100.0).granted, 0);
        // Another key has its own bucket.
        assert_eq!(buckets.take("v", 1, rate, t0).granted, 1);
        // A bucket left alone fills up to its burst, no more.
        assert_eq!(buckets.take("u", 500, rate, t0 + 60_000.0).granted, 100);
    }

    #[test]
    fn full_buckets_are_forgotten() {
        let buckets = LocalBuckets::default();
        let rate = Rate::with_double_burst(5);
        for i in 0..PRUNE_AT {
            buckets.take(&format!("ip{i}"), 1, rate, 0.0);
        }
        // Later than any bucket's refill: every bucket is full and dropped.
        buckets.take("late", 1, rate, 10_000.0);
        assert_eq!(buckets.tats.lock().unwrap().tats.len(), 1);
    }

    #[test]
    fn off_grants_everything() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let limiter = Limiter::new("t", Rate::with_double_burst(0), None);
        let take = rt.block_on(limiter.take("u", 1000));
        assert_eq!(take.granted, 1000);
    }

    #[tokio::test]
    async fn without_an_answer_from_redis_the_process_buckets_hold_the_limit() {
        // Nothing listens on port 1: every round trip fails at once.
        let pool = crate::bus::redis::pool("redis://127.0.0.1:1").unwrap();
        let limiter = Limiter::new("t", Rate::with_double_burst(5), Some(pool));
        assert!(limiter.is_shared());
        let mut granted = 0;
        for _ in 0..20 {
            granted += limiter.take("u", 1).await.granted;
        }
        // The burst (10), and at most a token or two refilled meanwhile.
        assert!((10..=12).contains(&granted), "{granted}");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(Take::from_parts(0, 20).retry_after_secs(), 1);
        assert_eq!(Take::from_parts(0, 1001).retry_after_secs(), 2);
    }
}
