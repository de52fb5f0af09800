//! The relay: one task per node that takes every message this node receives
//! from the bus and hands it to the hub, in order.
//!
//! Room messages carry their room's `seq`. The relay remembers the last seq
//! it relayed per room: a repeat is dropped, and a jump (pub/sub is
//! at-most-once, e.g. while Redis restarts) makes it fetch the missing range
//! from the api and relay that first, so no member sees a hole. When the bus
//! comes back after being down, every room with a relay position is caught
//! up from the api the same way. Presence changes, admin broadcasts and node
//! control messages take their own paths.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use telepath_shared::bus::{Bus, BusMessage, Inbound};
use telepath_shared::protocol::{
    BROADCAST_CHANNEL, ByeReason, CloseCode, NodeControl, PRESENCE_CHANNEL, PresenceBroadcast,
    ServerFrame, is_canonical_id, room_channel, user_channel,
};

use crate::GatewayMetrics;
use crate::hub::Hub;
use crate::upstream::ApiClient;

/// How often the relay checks whether the bus came back.
const HEALTH_CHECK: Duration = Duration::from_millis(500);
/// Most messages one repair fetches (pages of 500).
const REPAIR_LIMIT: i64 = 10_000;

/// The fields of a room frame the relay needs.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: String,
    seq: Option<i64>,
}

/// Relays until the bus closes.
pub(crate) async fn run(
    mut inbound: Inbound,
    hub: Arc<Hub>,
    bus: Arc<dyn Bus>,
    api: ApiClient,
    metrics: GatewayMetrics,
) {
    let mut health = tokio::time::interval(HEALTH_CHECK);
    let mut was_healthy = bus.is_healthy();
    loop {
        tokio::select! {
            msg = inbound.recv() => {
                let Some(msg) = msg else { return };
                metrics.bus_in.inc();
                metrics.bus_dropped.set(bus.dropped() as i64);
                relay(&hub, &api, msg).await;
            }
            _ = health.tick() => {
                let healthy = bus.is_healthy();
                if healthy && !was_healthy {
                    tracing::info!("bus is back: catching rooms up from the api");
                    catch_up(&hub, &api).await;
                }
                was_healthy = healthy;
            }
        }
    }
}

async fn relay(hub: &Hub, api: &ApiClient, msg: BusMessage) {
    let channel = msg.channel.as_str();
    if channel == BROADCAST_CHANNEL {
        hub.dispatch_all(&msg.payload);
    } else if channel == PRESENCE_CHANNEL {
        deliver_presence(hub, &msg.payload);
    } else if channel.starts_with("node:") {
        control(hub, &msg.payload);
    } else if let Some(room) = channel.strip_prefix("room:") {
        relay_room(hub, api, room, channel, msg.payload).await;
    } else {
        hub.dispatch(channel, &msg.payload);
    }
}

/// Relays one room frame: messages in seq order without repeats or holes.
async fn relay_room(hub: &Hub, api: &ApiClient, room: &str, channel: &str, payload: Bytes) {
    let seq = serde_json::from_slice::<Head>(&payload)
        .ok()
        .filter(|h| h.kind == "message")
        .and_then(|h| h.seq);
    let Some(seq) = seq else {
        hub.dispatch_room(channel, &payload, None);
        return;
    };
    match hub.advance(channel, seq) {
        Some(last) if seq <= last => {} // already relayed (a repair got there first)
        Some(last) if seq > last + 1 => {
            repair(hub, api, room, channel, last, Some(seq)).await;
            hub.dispatch_room(channel, &payload, Some(seq));
        }
        _ => {
            hub.dispatch_room(channel, &payload, Some(seq));
        }
    }
}

/// Fetches the messages of `room` after `after` (and below `before`) from the
/// api and relays them in order.
async fn repair(
    hub: &Hub,
    api: &ApiClient,
    room: &str,
    channel: &str,
    mut after: i64,
    before: Option<i64>,
) {
    let start = after;
    while after - start < REPAIR_LIMIT {
        let page = match api.history_between(room, after, before, 500).await {
            Ok(page) => page,
            Err(e) => {
                // Members resume with `since` on their next join; nothing else to do here.
                tracing::warn!(room, after, error = %e.message, "gap repair failed");
                return;
            }
        };
        for m in &page.messages {
            hub.advance(channel, m.seq);
            let frame = Bytes::from(ServerFrame::Message(m.clone()).to_json());
            hub.dispatch_room(channel, &frame, Some(m.seq));
            after = m.seq;
        }
        if !page.has_more || page.messages.is_empty() {
            break;
        }
    }
    tracing::info!(room, from = start, to = after, "gap repaired from the api");
}

/// After the bus was down: relay whatever every followed room missed.
async fn catch_up(hub: &Hub, api: &ApiClient) {
    for (channel, last) in hub.positions() {
        if let Some(room) = channel.strip_prefix("room:") {
            repair(hub, api, room, &channel, last, None).await;
        }
    }
}

/// Delivers a presence change once to every local connection that shares a
/// room with the user, and to the user's own connections.
fn deliver_presence(hub: &Hub, payload: &[u8]) {
    let change: PresenceBroadcast = match serde_json::from_slice(payload) {
        Ok(c) => c,
        Err(e) => return tracing::warn!(error = %e, "malformed presence broadcast"),
    };
    let mut channels: Vec<String> = change
        .rooms
        .iter()
        .filter(|r| is_canonical_id(r))
        .map(|r| room_channel(r))
        .collect();
    channels.push(user_channel(&change.event.user.id));
    let frame = Bytes::from(ServerFrame::Presence(change.event).to_json());
    hub.dispatch_union(&channels, &frame);
}

/// Carries out a control message from this node's channel.
fn control(hub: &Hub, payload: &[u8]) {
    match serde_json::from_slice::<NodeControl>(payload) {
        Ok(NodeControl::DisconnectUser { user_id }) => {
            let n = hub.close_all(
                &user_channel(&user_id),
                CloseCode::Admin,
                Some(ByeReason::Admin),
            );
            tracing::info!(user_id, connections = n, "disconnected by an admin");
        }
        Err(e) => tracing::warn!(error = %e, "unknown control message"),
    }
}
