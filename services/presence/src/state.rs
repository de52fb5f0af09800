//! The service state every handler and the sweeper share: the store, the
//! outbox events go to the bus through, the token keys, the settings, the
//! clock and the metrics.
//!
//! Cloning is cheap (one `Arc`). The state owns one task, the outbox's;
//! the sweeper, which works on the state, is started beside it
//! (`spawn_sweeper` in `lib.rs`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus::Registry;
use telepath_shared::auth::JwtKeys;
use telepath_shared::bus::Bus;
use telepath_shared::bus::outbox::{Outbox, OutboxLimits};
use telepath_shared::config::Common;
use telepath_shared::http::ApiError;

use crate::change::Change;
use crate::clock::Clock;
use crate::config::PresenceConfig;
use crate::events;
use crate::metrics::Metrics;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::{self, Interrupted, PresenceStore, Timing};

/// Longest pause between two sweeps, whatever the heartbeat interval.
const MAX_SWEEP_PERIOD: Duration = Duration::from_millis(250);

/// Shared presence state.
#[derive(Clone)]
pub struct PresenceState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn PresenceStore>,
    /// Events on their way to the bus, in order, retried while Redis is away.
    outbox: Outbox,
    keys: JwtKeys,
    internal_token: String,
    heartbeat_ms: u64,
    /// How long a graceful shutdown may take (`TELEPATH_DRAIN_SECS`).
    drain: Duration,
    http_policy: telepath_shared::http::serve::Policy,
    metrics_internal: bool,
    /// The revoked users, once someone hands them over
    /// ([`PresenceState::check_revocations`]).
    revocations: std::sync::OnceLock<Arc<telepath_shared::auth::RevocationList>>,
    clock: Clock,
    metrics: Metrics,
    registry: Registry,
}

impl std::fmt::Debug for PresenceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresenceState")
            .field("heartbeat_ms", &self.inner.heartbeat_ms)
            .finish_non_exhaustive()
    }
}

impl PresenceState {
    /// Uses a Redis store when `common.redis_url` is set, else the
    /// in-memory one; presence events go to `bus` (through an outbox, whose
    /// task starts here); registers the metrics in `registry`.
    pub async fn build(
        common: Common,
        config: PresenceConfig,
        bus: Arc<dyn Bus>,
        registry: Registry,
    ) -> anyhow::Result<Self> {
        let timing = Timing::from_config(&common, &config);
        let store: Arc<dyn PresenceStore> = match &common.redis_url {
            Some(url) => {
                let pool = telepath_shared::bus::redis::pool(url).context("redis pool")?;
                Arc::new(RedisStore::new(pool, timing))
            }
            None => Arc::new(MemoryStore::new(timing)),
        };
        // Redis may come up after presence: an unreachable store only makes
        // /readyz fail, it does not stop start-up.
        if let Err(e) = store.ping().await {
            tracing::warn!(error = %e, "presence store not reachable yet");
        }
        Ok(Self::with_store(&common, bus, registry, store))
    }

    /// State over an already built `store` (its timing should match `common`'s heartbeat).
    pub fn with_store(
        common: &Common,
        bus: Arc<dyn Bus>,
        registry: Registry,
        store: Arc<dyn PresenceStore>,
    ) -> Self {
        Self::with_clock(common, bus, registry, store, Clock::System)
    }

    pub(crate) fn with_clock(
        common: &Common,
        bus: Arc<dyn Bus>,
        registry: Registry,
        store: Arc<dyn PresenceStore>,
        clock: Clock,
    ) -> Self {
        let metrics = Metrics::new(&registry);
        let outbox = Outbox::new(bus, OutboxLimits::default(), metrics.outbox.clone());
        PresenceState {
            inner: Arc::new(Inner {
                store,
                outbox,
                keys: common
                    .jwt_keys()
                    .expect("the TELEPATH_JWT_* settings are checked at start"),
                internal_token: common.internal_token(),
                drain: common.drain(),
                http_policy: common.http_policy(),
                metrics_internal: common.metrics_internal,
                revocations: std::sync::OnceLock::new(),
                heartbeat_ms: common.heartbeat_ms.max(1),
                clock,
                metrics,
                registry,
            }),
        }
    }

    /// Readiness: `Ok` when the store answers, else `unavailable`.
    pub async fn ready(&self) -> Result<(), ApiError> {
        self.inner.store.ping().await.map_err(ApiError::from)
    }

    pub(crate) fn store(&self) -> &dyn PresenceStore {
        self.inner.store.as_ref()
    }

    /// From now on, tokens `list` covers are refused (set once).
    pub fn check_revocations(&self, list: Arc<telepath_shared::auth::RevocationList>) {
        let _ = self.inner.revocations.set(list);
    }

    /// The revoked users, when presence checks them.
    pub(crate) fn revocations(&self) -> Option<&telepath_shared::auth::RevocationList> {
        self.inner.revocations.get().map(|l| l.as_ref())
    }

    pub(crate) fn keys(&self) -> &JwtKeys {
        &self.inner.keys
    }

    pub(crate) fn internal_token(&self) -> &str {
        &self.inner.internal_token
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// How long a graceful shutdown may take.
    pub(crate) fn drain(&self) -> Duration {
        self.inner.drain
    }

    /// Whether `/metrics` is served on the internal listener only.
    pub(crate) fn metrics_internal(&self) -> bool {
        self.inner.metrics_internal
    }

    /// The accept loop's limits.
    pub(crate) fn http_policy(&self) -> telepath_shared::http::serve::Policy {
        self.inner.http_policy
    }

    /// Now, in ms since the epoch.
    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// Queues `changes` for the bus, without waiting for it.
    pub(crate) fn publish(&self, changes: &[Change]) {
        let now = self.now_ms();
        events::push(&self.inner.outbox, &self.inner.metrics, changes, now);
    }

    /// Publishes what a store operation changed, also when it failed part-way
    /// (those changes happened and nobody else will announce them).
    pub(crate) fn announce<T>(
        &self,
        result: Result<T, Interrupted>,
        changes: impl FnOnce(&T) -> &[Change],
    ) -> Result<T, store::Error> {
        match result {
            Ok(done) => {
                self.publish(changes(&done));
                Ok(done)
            }
            Err(Interrupted { changes, error }) => {
                self.publish(&changes);
                Err(error)
            }
        }
    }

    /// The end of a graceful shutdown: publishes the events still in the
    /// outbox, for at most `TELEPATH_DRAIN_SECS`.
    pub async fn close(&self) {
        self.inner.outbox.close(self.inner.drain).await;
    }

    /// How often the sweeper runs: a quarter heartbeat, at most 250 ms.
    pub(crate) fn sweep_period(&self) -> Duration {
        Duration::from_millis((self.inner.heartbeat_ms / 4).max(1)).min(MAX_SWEEP_PERIOD)
    }

    /// How often the sweeper recounts the gauges: every half heartbeat (a
    /// count reads every live connection, too much for every sweep).
    pub(crate) fn count_period(&self) -> Duration {
        Duration::from_millis((self.inner.heartbeat_ms / 2).max(1)).max(self.sweep_period())
    }
}
