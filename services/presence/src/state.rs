//! The service state every handler and the sweeper share: the store, the
//! token keys, the settings and the metrics.
//!
//! Cloning is cheap (one `Arc`). The state owns no task; the sweeper is
//! started explicitly with [`PresenceState::spawn_sweeper`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus::Registry;
use telepath_shared::auth::JwtKeys;
use telepath_shared::config::PresenceConfig;
use telepath_shared::http::ApiError;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::{PresenceStore, expiry_ms};
use crate::sweeper;

/// Shared presence state.
#[derive(Clone)]
pub struct PresenceState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn PresenceStore>,
    keys: JwtKeys,
    internal_token: String,
    heartbeat_ms: u64,
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
    /// Connects Redis when `config.common.redis_url` is set, else uses the
    /// in-memory store; registers the metrics in `registry`.
    pub async fn build(config: PresenceConfig, registry: Registry) -> anyhow::Result<Self> {
        let store: Arc<dyn PresenceStore> = match &config.common.redis_url {
            Some(url) => {
                let pool = telepath_shared::bus::redis::pool(url).context("redis pool")?;
                Arc::new(RedisStore::new(pool, config.heartbeat_ms))
            }
            None => Arc::new(MemoryStore::new(config.heartbeat_ms)),
        };
        // Redis may come up after presence: an unreachable store only makes
        // /readyz fail, it does not stop start-up.
        if let Err(e) = store.ping().await {
            tracing::warn!(error = %e, "presence store not reachable yet");
        }
        Ok(Self::with_store(config, registry, store))
    }

    /// State over an already built `store`.
    pub fn with_store(
        config: PresenceConfig,
        registry: Registry,
        store: Arc<dyn PresenceStore>,
    ) -> Self {
        PresenceState {
            inner: Arc::new(Inner {
                store,
                keys: JwtKeys::new(&config.common.jwt_secret),
                internal_token: config.common.internal_token,
                heartbeat_ms: config.heartbeat_ms.max(1),
                metrics: Metrics::new(&registry),
                registry,
            }),
        }
    }

    /// Starts the background sweeper task (stops when `shutdown` is cancelled).
    pub fn spawn_sweeper(&self, shutdown: CancellationToken) {
        tokio::spawn(sweeper::run(self.clone(), shutdown));
    }

    /// Readiness: `Ok` when the store answers, else `unavailable`.
    pub async fn ready(&self) -> Result<(), ApiError> {
        self.inner.store.ping().await.map_err(ApiError::from)
    }

    pub(crate) fn store(&self) -> &dyn PresenceStore {
        self.inner.store.as_ref()
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

    /// How long a connection lives without a heartbeat, ms.
    pub(crate) fn expiry_ms(&self) -> i64 {
        expiry_ms(self.inner.heartbeat_ms)
    }

    /// How often the sweeper runs: half a heartbeat, so a dead connection is
    /// gone at most half an interval after it expires.
    pub(crate) fn sweep_period(&self) -> Duration {
        Duration::from_millis((self.inner.heartbeat_ms / 2).max(1))
    }
}
