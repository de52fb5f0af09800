//! Persisting presence: the api subscribes to the bus channel `presence` and
//! writes each user's latest status, status text and `last_online` to
//! SQLite, so they outlive Redis and show up for offline users.
//!
//! Events are applied in batches (one transaction for whatever is queued);
//! an event for a user the database has not seen is ignored.

use std::sync::Arc;
use std::time::Duration;

use chrono::SubsecRound;
use sqlx::SqlitePool;
use telepath_shared::bus::{Bus, Inbound};
use telepath_shared::protocol::{PRESENCE_CHANNEL, PresenceBroadcast, WebhookEvent};

use crate::webhooks::Event;

/// Most events written in one transaction.
const BATCH: usize = 512;

/// Subscribes to presence changes and persists them until the bus closes;
/// each is a `presence.changed` webhook event, queued in the same
/// transaction.
pub(crate) fn spawn(
    bus: Arc<dyn Bus>,
    mut inbound: Inbound,
    pool: SqlitePool,
    webhooks: crate::webhooks::Webhooks,
) {
    tokio::spawn(async move {
        // The subscription is retried until the bus takes it (Redis may be starting).
        while let Err(e) = bus.subscribe(PRESENCE_CHANNEL).await {
            tracing::warn!(error = %e, "subscribing to presence changes failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut batch = Vec::with_capacity(BATCH);
        while inbound.recv_many(&mut batch, BATCH).await > 0 {
            let changes: Vec<PresenceBroadcast> = batch
                .drain(..)
                .filter(|m| m.channel == PRESENCE_CHANNEL)
                .filter_map(|m| serde_json::from_slice(&m.payload).ok())
                .collect();
            match persist(&pool, &webhooks, &changes).await {
                Ok(true) => webhooks.wake(),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, events = changes.len(), "persisting presence failed");
                }
            }
        }
    });
}

/// Persists `changes`; true when it queued webhook deliveries.
async fn persist(
    pool: &SqlitePool,
    webhooks: &crate::webhooks::Webhooks,
    changes: &[PresenceBroadcast],
) -> Result<bool, sqlx::Error> {
    if changes.is_empty() {
        return Ok(false);
    }
    let mut tx = crate::db::begin_write(pool).await?;
    for change in changes {
        let e = &change.event;
        // Stored to the millisecond like every time the api writes, so the
        // text comparison below orders it with the connection log's.
        let seen = e.last_seen.trunc_subsecs(3);
        // last_online only moves forward: events from several replicas may interleave.
        sqlx::query(
            "UPDATE users SET status = ?, status_text = ?,
                    last_online = CASE WHEN last_online IS NULL OR last_online < ? THEN ? ELSE last_online END
             WHERE id = ?",
        )
        .bind(e.status.as_str())
        .bind(&e.text)
        .bind(seen)
        .bind(seen)
        .bind(&e.user.id)
        .execute(&mut *tx)
        .await?;
    }
    let events: Vec<Event> = if webhooks.wants(WebhookEvent::PresenceChanged) {
        changes
            .iter()
            .filter_map(|c| Event::new(WebhookEvent::PresenceChanged, &c.event))
            .collect()
    } else {
        Vec::new()
    };
    let hooked = webhooks.record(&mut tx, &events).await?;
    tx.commit().await?;
    Ok(hooked)
}
