//! The per-user budget (`TELEPATH_USER_RATE_PER_S`): the frames that write
//! or fan out (sends, DMs, edits, deletes, reactions, typing) of one user,
//! over all of their connections on every gateway, draw from one bucket.
//!
//! With Redis the bucket is shared there ([`telepath_shared::rate`]), but a
//! frame does not wait for Redis each time: a gateway takes a small lease of
//! tokens from the shared bucket ([`LEASE_DIVISOR`]: a tenth of a second's
//! worth) and spends it locally, so a user sending at the full rate costs
//! about ten round trips a second. Leased tokens are already gone from the
//! shared bucket, so all gateways together never grant more than the bucket
//! holds; a lease left unspent for [`LEASE_LIFE`] is dropped (the user had
//! time to spend it), which keeps a quiet user from banking tokens. Once
//! the shared bucket refuses, the gateway refuses that user locally until
//! the bucket's next token is due: a flood costs no round trips. Without
//! Redis (the all-in-one) each frame takes from the process's bucket
//! directly.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use telepath_shared::rate::{Limiter, Rate};

/// A lease is this fraction of a second's worth of tokens.
const LEASE_DIVISOR: u32 = 10;
/// How long leased tokens stay spendable.
const LEASE_LIFE: Duration = Duration::from_secs(1);
/// Users' leases kept before expired ones are forgotten.
const PRUNE_AT: usize = 4096;

/// One user's tokens on this gateway.
#[derive(Clone, Copy)]
struct Lease {
    tokens: u32,
    until: Instant,
    refused_until: Option<Instant>,
}

impl Lease {
    fn spent(&self, now: Instant) -> bool {
        now >= self.until && self.refused_until.is_none_or(|r| now >= r)
    }
}

/// Every user's budget as this gateway sees it.
pub(crate) struct UserBudget {
    limiter: Limiter,
    lease: u32,
    leases: Mutex<Leases>,
}

/// Users' leases, pruned when the map has doubled since the last pruning.
#[derive(Default)]
struct Leases {
    by_user: HashMap<String, Lease>,
    prune_at: usize,
}

impl UserBudget {
    /// `rate` per user, shared through Redis when `pool` is given.
    pub(crate) fn new(rate: Rate, pool: Option<telepath_shared::bus::admit::RedisPool>) -> Self {
        let limiter = Limiter::new("user", rate, pool);
        let lease = if limiter.is_shared() {
            (rate.per_s / LEASE_DIVISOR).clamp(1, rate.burst.max(1))
        } else {
            1
        };
        UserBudget {
            limiter,
            lease,
            leases: Mutex::new(Leases::default()),
        }
    }

    /// The budget's rate.
    pub(crate) fn rate(&self) -> Rate {
        self.limiter.rate()
    }

    /// Spends one token of `user`'s budget: false when it is spent.
    pub(crate) async fn spend(&self, user: &str) -> bool {
        if !self.limiter.rate().is_on() {
            return true;
        }
        if !self.limiter.is_shared() {
            return self.limiter.check(user).await.is_ok();
        }
        let now = Instant::now();
        {
            let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(lease) = leases.by_user.get_mut(user) {
                if lease.tokens > 0 && now < lease.until {
                    lease.tokens -= 1;
                    return true;
                }
                if lease.refused_until.is_some_and(|r| now < r) {
                    return false;
                }
            }
        }
        let take = self.limiter.take(user, self.lease).await;
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let Leases { by_user, prune_at } = &mut *leases;
        if by_user.len() >= (*prune_at).max(PRUNE_AT) {
            by_user.retain(|_, lease| !lease.spent(now));
            *prune_at = by_user.len() * 2;
        }
        let lease = by_user.entry(user.to_owned()).or_insert(Lease {
            tokens: 0,
            until: now,
            refused_until: None,
        });
        if take.granted == 0 {
            lease.refused_until = Some(now + take.retry_after);
            return false;
        }
        // Another connection of the user may have leased meanwhile: both
        // leases are the user's.
        let left = if now < lease.until { lease.tokens } else { 0 };
        lease.tokens = left + take.granted - 1;
        lease.until = now + LEASE_LIFE;
        lease.refused_until = None;
        true
    }
}
