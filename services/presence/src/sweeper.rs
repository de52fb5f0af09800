//! The sweeper: every quarter heartbeat interval (at most 250 ms) it asks
//! the store to expire connections whose last heartbeat is older than 1.5
//! intervals, announce users whose grace period ended, and expire typing
//! indicators; it publishes what that changed. Every half interval it also
//! recounts the online gauges.
//!
//! This is what makes presence ghost-free (invariant 3 in
//! docs/ARCHITECTURE.md): a gateway that dies stops heartbeating, and its
//! users are announced offline within 1.5 intervals plus one sweep period
//! of its last heartbeat — under two intervals. Several replicas may sweep the same Redis at once; the store
//! returns each change to exactly one of them.

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::state::PresenceState;
use crate::store::{Error, Swept};

/// Sweeps until `shutdown` is cancelled; a failed sweep is logged and retried
/// on the next tick.
pub(crate) async fn run(state: PresenceState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(state.sweep_period());
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut next_count = Instant::now();
    // Ends when shutdown is cancelled; a sweep in progress is abandoned then
    // (the store's script runs are atomic, so nothing is half done).
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let count = Instant::now() >= next_count;
        if count {
            next_count = Instant::now() + state.count_period();
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            result = sweep_once(&state, count) => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "presence sweep failed");
                }
            }
        }
    }
}

/// One sweep at the state's current time: expire, announce, count the
/// expired; with `count`, also recount the gauges.
pub(crate) async fn sweep_once(state: &PresenceState, count: bool) -> Result<Swept, Error> {
    let result = state.store().sweep(state.now_ms()).await;
    let swept = state.announce(result, |swept| &swept.changes)?;
    for conn_id in &swept.expired {
        tracing::debug!(conn_id = %conn_id, "connection expired");
    }
    let metrics = state.metrics();
    metrics.expired.inc_by(swept.expired.len() as u64);
    metrics.sweeps.inc();
    if count {
        let online = state.store().online(state.now_ms()).await?;
        let connections: u64 = online.iter().map(|u| u.connections).sum();
        metrics
            .online_users
            .set(i64::try_from(online.len()).unwrap_or(i64::MAX));
        metrics
            .connections
            .set(i64::try_from(connections).unwrap_or(i64::MAX));
    }
    Ok(swept)
}

#[cfg(test)]
mod tests;
