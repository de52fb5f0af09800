//! The sweeper: every half heartbeat interval it expires connections whose
//! last heartbeat is older than two intervals, then refreshes the gauges.
//!
//! This is what makes presence ghost-free (DESIGN invariant 3): a gateway that
//! dies stops heartbeating, and its connections disappear within two intervals
//! plus one sweep period. Several replicas may sweep the same Redis at once;
//! the store guarantees each expired connection is reported once.

use chrono::Utc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::state::PresenceState;
use crate::store::Error;

/// What one sweep did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sweep {
    /// Connections expired by this sweep.
    pub(crate) expired: usize,
    /// Users still online afterwards.
    pub(crate) online_users: usize,
    /// Connections still live afterwards.
    pub(crate) connections: u64,
}

/// Sweeps until `shutdown` is cancelled; a failed sweep is logged and retried
/// on the next tick.
pub(crate) async fn run(state: PresenceState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(state.sweep_period());
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Ends when shutdown is cancelled; a sweep in progress is abandoned then.
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now_ms = Utc::now().timestamp_millis();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            result = sweep_once(&state, now_ms) => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "presence sweep failed");
                }
            }
        }
    }
}

/// One sweep at time `now_ms`: expire, count what is left, update metrics.
pub(crate) async fn sweep_once(state: &PresenceState, now_ms: i64) -> Result<Sweep, Error> {
    let expired = state
        .store()
        .sweep(now_ms.saturating_sub(state.expiry_ms()))
        .await?;
    for conn_id in &expired {
        tracing::debug!(conn_id = %conn_id, "connection expired");
    }
    let online = state.store().online(now_ms).await?;
    let sweep = Sweep {
        expired: expired.len(),
        online_users: online.len(),
        connections: online.iter().map(|u| u.connections).sum(),
    };
    let metrics = state.metrics();
    metrics.expired.inc_by(sweep.expired as u64);
    metrics.sweeps.inc();
    metrics
        .online_users
        .set(i64::try_from(sweep.online_users).unwrap_or(i64::MAX));
    metrics
        .connections
        .set(i64::try_from(sweep.connections).unwrap_or(i64::MAX));
    Ok(sweep)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use telepath_shared::config::{Common, PresenceConfig};
    use telepath_shared::protocol::{ConnReport, UserRef};

    use super::*;
    use crate::store::memory::MemoryStore;

    const HB: u64 = 1_000;

    fn state() -> PresenceState {
        let mut config = PresenceConfig::for_tests(Common::for_tests("s"));
        config.heartbeat_ms = HB;
        let store = Arc::new(MemoryStore::new(HB));
        PresenceState::with_store(config, prometheus::Registry::new(), store)
    }

    async fn connect(state: &PresenceState, conn_id: &str, user: &str, now_ms: i64) {
        let report = ConnReport {
            conn_id: conn_id.into(),
            user: UserRef {
                id: user.into(),
                name: user.into(),
            },
            node: "n1".into(),
        };
        state.store().connect(&report, now_ms).await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_survives_exactly_two_heartbeat_intervals() {
        let state = state();
        connect(&state, "c1", "ada", 10_000).await;
        let kept = sweep_once(&state, 12_000).await.unwrap();
        assert_eq!((kept.expired, kept.online_users), (0, 1));
        let gone = sweep_once(&state, 12_001).await.unwrap();
        assert_eq!((gone.expired, gone.online_users), (1, 0));
    }

    #[tokio::test]
    async fn a_sweep_updates_the_counters_and_gauges() {
        let state = state();
        connect(&state, "c1", "ada", 10_000).await;
        connect(&state, "c2", "ada", 10_000).await;
        connect(&state, "c3", "bob", 5_000).await;
        let sweep = sweep_once(&state, 10_500).await.unwrap();
        assert_eq!(
            sweep,
            Sweep {
                expired: 1,
                online_users: 1,
                connections: 2
            }
        );
        let m = state.metrics();
        assert_eq!(m.expired.get(), 1);
        assert_eq!(m.sweeps.get(), 1);
        assert_eq!(m.online_users.get(), 1);
        assert_eq!(m.connections.get(), 2);
    }

    #[tokio::test]
    async fn the_sweeper_keeps_sweeping_until_shutdown() {
        let mut config = PresenceConfig::for_tests(Common::for_tests("s"));
        config.heartbeat_ms = 20;
        let store = Arc::new(MemoryStore::new(20));
        let state = PresenceState::with_store(config, prometheus::Registry::new(), store);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(state.clone(), shutdown.clone()));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        // Polls a condition (three sweeps at 10 ms apart), bounded by the deadline.
        while state.metrics().sweeps.get() < 3 {
            assert!(tokio::time::Instant::now() < deadline, "sweeper stalled");
            tokio::task::yield_now().await;
            tokio::time::sleep(state.sweep_period()).await;
        }
        shutdown.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("sweeper stops on shutdown")
            .unwrap();
    }
}
