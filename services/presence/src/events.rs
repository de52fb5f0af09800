//! Publishing what the store changed, on the bus:
//!
//! - a presence change becomes `PresenceBroadcast {rooms, event:
//!   PresenceEvent {user, status, text?, last_seen}, choice?}` as JSON on
//!   [`PRESENCE_CHANNEL`]; gateways deliver the event to the connections in
//!   `rooms` and to the user's own and keep the choice for their heartbeats,
//!   the api persists the event;
//! - a typing change becomes the `typing` server frame on `room:{id}`,
//!   ready for gateways to relay as is.
//!
//! Changes go to the bus through an outbox (`telepath_shared::bus::outbox`),
//! in order, without waiting: a publish that fails (Redis restarting, a
//! broken connection) or stalls is retried until Redis is back, so an event
//! announced during an outage arrives after it (possibly twice, when an
//! attempt got through in part). Deciding *what* changed is the store's
//! job, not this one's.

use bytes::Bytes;
use telepath_shared::bus::Outgoing;
use telepath_shared::bus::outbox::Outbox;
use telepath_shared::protocol::{
    PRESENCE_CHANNEL, PresenceBroadcast, PresenceEvent, ServerFrame, TypingEvent, room_channel,
};

use crate::change::Change;
use crate::metrics::Metrics;
use crate::store::to_utc;

/// The bus message (channel, payload) announcing `change`.
pub(crate) fn message(change: &Change) -> (String, Bytes) {
    match change {
        Change::Presence(p) => {
            let broadcast = PresenceBroadcast {
                rooms: p.rooms.clone(),
                event: PresenceEvent {
                    user: p.user.clone(),
                    status: p.status,
                    text: p.text.clone(),
                    last_seen: to_utc(p.last_seen_ms),
                },
                choice: p.choice.clone(),
            };
            let json =
                serde_json::to_vec(&broadcast).expect("presence broadcasts always serialise");
            (PRESENCE_CHANNEL.to_owned(), Bytes::from(json))
        }
        Change::Typing(t) => {
            let frame = ServerFrame::Typing(TypingEvent {
                room: t.room.clone(),
                user: t.user.clone(),
                active: t.active,
            });
            (room_channel(&t.room), Bytes::from(frame.to_json()))
        }
    }
}

/// Queues `changes` for the bus in order at `now_ms` and updates the event
/// metrics (an event counts as published once it is in the outbox).
pub(crate) fn push(outbox: &Outbox, metrics: &Metrics, changes: &[Change], now_ms: i64) {
    if changes.is_empty() {
        return;
    }
    outbox.push(changes.iter().map(|c| {
        let (channel, payload) = message(c);
        Outgoing::new(channel, payload)
    }));
    for change in changes {
        match change {
            Change::Presence(p) => {
                metrics.events.with_label_values(&[p.status.as_str()]).inc();
                let lag_ms = now_ms.saturating_sub(p.cause_ms).max(0);
                metrics.event_lag.observe(lag_ms as f64 / 1000.0);
                tracing::debug!(user_id = %p.user.id, status = p.status.as_str(), lag_ms, "presence queued");
            }
            Change::Typing(_) => metrics.typing_events.inc(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};
    use telepath_shared::bus::Bus;
    use telepath_shared::bus::memory::MemoryBroker;
    use telepath_shared::bus::outbox::{OutboxLimits, OutboxMetrics};
    use telepath_shared::protocol::{Status, StatusChoice, UserRef};

    use super::*;
    use crate::change::{PresenceChange, TypingChange};

    const ROOM: &str = "0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6f";

    fn ada() -> UserRef {
        UserRef {
            id: "u1".into(),
            name: "ada".into(),
        }
    }

    fn offline() -> Change {
        Change::Presence(PresenceChange {
            user: ada(),
            status: Status::Offline,
            text: None,
            choice: None,
            last_seen_ms: 1_700_000_000_000,
            rooms: vec![ROOM.into()],
            cause_ms: 1_700_000_001_000,
        })
    }

    #[test]
    fn a_presence_change_is_a_presence_broadcast_on_the_presence_channel() {
        let (channel, payload) = message(&offline());
        assert_eq!(channel, "presence");
        let v: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            v,
            json!({"rooms": [ROOM], "event": {"user": {"id": "u1", "name": "ada"},
                "status": "offline", "last_seen": "2023-11-14T22:13:20Z"}})
        );
    }

    #[test]
    fn a_presence_change_carries_the_users_choice_record_for_the_gateways() {
        let choice = StatusChoice {
            status: Status::Meditating,
            text: Some("om".into()),
            at_ms: 1_699_999_999_000,
        };
        let change = Change::Presence(PresenceChange {
            user: ada(),
            status: Status::Meditating,
            text: Some("om".into()),
            choice: Some(choice.clone()),
            last_seen_ms: 1_700_000_000_000,
            rooms: vec![ROOM.into()],
            cause_ms: 1_700_000_000_000,
        });
        let (_, payload) = message(&change);
        let v: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            v["choice"],
            json!({"status": "meditating", "text": "om", "at_ms": 1_699_999_999_000_i64})
        );
        let broadcast: PresenceBroadcast = serde_json::from_slice(&payload).unwrap();
        assert_eq!(broadcast.choice, Some(choice));
    }

    #[test]
    fn a_typing_change_is_a_typing_frame_on_the_rooms_channel() {
        let change = Change::Typing(TypingChange {
            room: ROOM.into(),
            user: ada(),
            active: true,
        });
        let (channel, payload) = message(&change);
        assert_eq!(channel, format!("room:{ROOM}"));
        let v: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            v,
            json!({"type": "typing", "room": ROOM, "user": {"id": "u1", "name": "ada"}, "active": true})
        );
    }

    #[tokio::test]
    async fn publishing_counts_events_by_status_and_observes_the_lag() {
        let registry = prometheus::Registry::new();
        let metrics = Metrics::new(&registry);
        let (bus, mut rx) = MemoryBroker::new().connect(8);
        bus.subscribe("presence").await.unwrap();
        let outbox = Outbox::new(
            Arc::new(bus),
            OutboxLimits::default(),
            OutboxMetrics::detached(),
        );
        push(&outbox, &metrics, &[offline()], 1_700_000_001_250);
        assert_eq!(rx.recv().await.unwrap().channel, "presence");
        assert_eq!(metrics.events.with_label_values(&["offline"]).get(), 1);
        assert_eq!(metrics.event_lag.get_sample_count(), 1);
        assert!((metrics.event_lag.get_sample_sum() - 0.25).abs() < 1e-9);
    }
}
