//! The relay: one task per node that takes every message this node receives
//! from the bus and hands it to the hub, in order.
//!
//! Room messages carry their room's `seq`. The relay remembers the last seq
//! it relayed per room: a repeat is dropped, and a jump (pub/sub is
//! at-most-once, e.g. while Redis restarts) makes it fetch the missing range
//! from the api and relay that first, so no member sees a hole. When the bus
//! comes back after being down, every room with a relay position is caught
//! up from the api the same way. Presence changes, admin broadcasts and node
//! control messages take their own paths. A probe the node publishes to its
//! own channel every half second proves the subscription still delivers;
//! without it `/readyz` fails (see [`Probe`]).
//!
//! Two events change the hub beyond fan-out: a `member` `left` event on a
//! user's channel takes the user's connections out of the room (they left
//! on some device), and a presence change carrying a status choice is
//! recorded for the heartbeats.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use telepath_shared::auth::RevocationList;
use telepath_shared::bus::{Bus, BusMessage, Inbound};
use telepath_shared::protocol::{
    BROADCAST_CHANNEL, ByeReason, CloseCode, MemberAction, NODES_CHANNEL, NodeControl,
    PRESENCE_CHANNEL, PresenceBroadcast, ServerFrame, USERS_CHANNEL, UsersBroadcast,
    is_canonical_id, is_log_type, room_channel, user_channel,
};
use telepath_shared::telemetry;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::GatewayMetrics;
use crate::handle::Outbound;
use crate::hub::Hub;
use crate::metrics::OutKind;
use crate::upstream::{ApiClient, PresenceReporter};

mod recover;

/// How often the relay probes its own node channel.
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// A probe not back within this long marks the bus unhealthy.
const PROBE_DEADLINE: Duration = Duration::from_secs(3);
/// What a catch-up reads back starts this long before the last probe that
/// came back (DMs sent earlier are not sent again).
const LOSS_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// The fields of a room frame the relay needs.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: String,
    seq: Option<i64>,
}

/// The liveness of this node's subscription: it publishes a probe to its
/// own `node:{id}` channel every half second and records when one comes
/// back. A connection that is open but silent stops bringing them back.
pub(crate) struct Probe {
    started: Instant,
    /// Milliseconds since `started` when a probe last came back.
    last_back_ms: AtomicU64,
    /// Whether the bus connection and the probe were both healthy at the last check.
    healthy: AtomicBool,
}

impl Probe {
    pub(crate) fn new() -> Self {
        // Healthy until proven otherwise: the first probe has not had time to return.
        Probe {
            started: Instant::now(),
            last_back_ms: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
        }
    }

    /// Whether the subscription delivered recently (what `/readyz` reports).
    pub(crate) fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn back(&self) {
        self.last_back_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn fresh(&self) -> bool {
        let last = Duration::from_millis(self.last_back_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last) < PROBE_DEADLINE
    }
}

/// What the relay works with.
pub(crate) struct Relay {
    pub(crate) hub: Arc<Hub>,
    pub(crate) bus: Arc<dyn Bus>,
    /// For gap repair.
    pub(crate) api: ApiClient,
    /// For the leaves a `member` `left` event causes.
    pub(crate) presence: PresenceReporter,
    pub(crate) metrics: GatewayMetrics,
    pub(crate) probe: Arc<Probe>,
    /// Users whose older tokens are refused.
    pub(crate) revocations: Arc<RevocationList>,
    /// This node's control channel (`node:{id}`), where its probes come back.
    pub(crate) own_channel: String,
}

/// Relays until the bus closes.
pub(crate) async fn run(mut inbound: Inbound, relay: Relay) {
    let Relay {
        bus,
        metrics,
        probe,
        own_channel,
        ..
    } = &relay;
    let mut tick = tokio::time::interval(PROBE_EVERY);
    let mut nonce = 0u64;
    let mut epoch = bus.epoch();
    let mut dropped = bus.dropped();
    // When a probe last came back: what the bus brought until then is safe.
    let mut delivered_until = Utc::now();
    // A catch-up owed since the bus lost messages (from about the time
    // given), due once a probe sent after the loss was noticed comes back:
    // that proves the subscription delivers again.
    let mut owed: Option<(DateTime<Utc>, u64)> = None;
    let mut last_tick = Utc::now();
    // When this node last asked the bus for a new subscription connection.
    let mut reconnected: Option<Instant> = None;
    loop {
        tokio::select! {
            msg = inbound.recv() => {
                let Some(msg) = msg else { return };
                metrics.bus_in.inc();
                if msg.channel == *own_channel
                    && let Ok(NodeControl::Probe { nonce: back }) = serde_json::from_slice(&msg.payload)
                {
                    probe.back();
                    if let Some((lost_at, sent)) = owed
                        && back > sent
                    {
                        owed = None;
                        tracing::info!("bus subscription delivers again: catching up from the api");
                        recover::catch_up(&relay, lost_at).await;
                    }
                    delivered_until = Utc::now();
                    continue;
                }
                relay_one(&relay, msg).await;
            }
            _ = tick.tick() => {
                let now_dropped = bus.dropped();
                metrics.bus_dropped.inc_by(now_dropped.saturating_sub(dropped));
                dropped = now_dropped;
                // What a full inbound queue dropped since the last tick.
                let lost = inbound.take_lost();
                if !lost.is_empty() {
                    metrics.bus_resyncs.inc_by(lost.len() as u64);
                    tracing::warn!(channels = lost.len(), "the inbound queue overflowed: reading back");
                    recover::resync(&relay, lost, last_tick - LOSS_MARGIN).await;
                }
                last_tick = Utc::now();
                let lost = bus.epoch() != epoch;
                if lost {
                    metrics.bus_reconnects.inc_by(bus.epoch().saturating_sub(epoch));
                    epoch = bus.epoch();
                }
                let healthy = bus.is_healthy() && probe.fresh();
                let was_healthy = probe.healthy.swap(healthy, Ordering::Relaxed);
                if !healthy && was_healthy {
                    metrics.probe_failures.inc();
                    tracing::warn!("bus subscription is not delivering");
                }
                if lost || (!healthy && was_healthy) {
                    // From shortly before the last probe came back (a
                    // message published just before it may be lost too).
                    let since = owed.map_or(delivered_until - LOSS_MARGIN, |(at, _)| at);
                    owed = Some((since, nonce));
                }
                // Up by the bus's account but deaf by ours: a new connection
                // (every channel subscribed again), at most once per deadline.
                if bus.is_healthy()
                    && !probe.fresh()
                    && reconnected.is_none_or(|at| at.elapsed() >= PROBE_DEADLINE)
                {
                    tracing::warn!("bus subscription is deaf: reconnecting it");
                    bus.reconnect();
                    reconnected = Some(Instant::now());
                }
                // Seqs joins named that the bus has not brought in time.
                for (channel, last, expected) in relay.hub.overdue(Instant::now()) {
                    if let Some(room) = channel.strip_prefix("room:") {
                        tracing::info!(room, last, expected, "a joined seq never came: fetching it");
                        recover::repair(&relay, room, &channel, last, None).await;
                    }
                }
                nonce += 1;
                // Published aside: a stalled publish must not hold up relaying.
                let payload = Bytes::from(serde_json::to_vec(&NodeControl::Probe { nonce }).expect("serialises"));
                let (bus, metrics, channel) = (bus.clone(), metrics.clone(), own_channel.clone());
                tokio::spawn(async move {
                    if bus.publish(&channel, payload).await.is_ok() {
                        metrics.bus_out.inc();
                    }
                });
            }
        }
    }
}

async fn relay_one(relay: &Relay, msg: BusMessage) {
    let hub = relay.hub.as_ref();
    // The publisher's trace continues here when it carried one (traces on).
    let span = match &msg.meta.traceparent {
        Some(tp) if telemetry::tracing_enabled() => {
            let span = tracing::info_span!(
                "bus.relay",
                otel.kind = "consumer",
                channel = channel_kind(&msg.channel)
            );
            telemetry::adopt_traceparent(&span, tp);
            span
        }
        _ => tracing::Span::none(),
    };
    let _entered = span.enter();
    let channel = msg.channel.as_str();
    let out = Outbound::bus(msg.payload.clone(), msg.meta.published_us);
    if channel == BROADCAST_CHANNEL {
        hub.fan_out_all(&out);
        // A public room closed (the directory): nobody here stays in it.
        if let Some(room) = closed_room(out.frame()) {
            recover::leave_all(relay, &room);
        }
    } else if channel == USERS_CHANNEL {
        for_users(relay, &msg.payload, msg.meta.published_us);
    } else if channel == PRESENCE_CHANNEL {
        fan_out_presence(hub, &out);
    } else if channel.starts_with("node:") {
        control(hub, &msg.payload);
    } else if channel == NODES_CHANNEL {
        revocation(relay, &msg.payload);
    } else if let Some(room) = channel.strip_prefix("room:") {
        drop(_entered);
        relay_room(relay, room, channel, out).instrument(span).await;
    } else {
        let kind = member_left(relay, channel, out.frame());
        hub.fan_out(channel, &out, kind);
    }
}

/// A frame on a user channel. A `member` event about that user is carried
/// out here first: after `left` (their own, a kick or a ban) their
/// connections on this node leave the room (they stop receiving it, and
/// room-scoped requests for it are refused); `muted` and `unmuted` set
/// whether their `typing` is refused. The event itself still reaches
/// them. Returns the kind of the frame, for counting.
fn member_left(relay: &Relay, channel: &str, frame: &[u8]) -> OutKind {
    if frame.starts_with(br#"{"type":"dm""#) {
        return OutKind::Dm;
    }
    if !frame.starts_with(br#"{"type":"member""#) {
        return serde_json::from_slice::<Head>(frame)
            .map_or(OutKind::Dm, |h| OutKind::of_type(&h.kind));
    }
    if let Ok(ServerFrame::Member(event)) = serde_json::from_slice::<ServerFrame>(frame)
        && is_canonical_id(&event.room)
        && user_channel(&event.user.id) == channel
    {
        let (user, room) = (&event.user.id, &event.room);
        match event.action {
            MemberAction::Left => recover::left(relay, user, room),
            MemberAction::Muted => {
                // Without an end: as long as any real time.
                let until = event.until.map_or(i64::MAX, |t| t.timestamp_millis());
                relay.hub.set_mute(user, room, Some(until));
            }
            MemberAction::Unmuted => relay.hub.set_mute(user, room, None),
            MemberAction::Joined | MemberAction::Role => {}
        }
    }
    OutKind::Member
}

/// The room of a `room_closed` frame.
fn closed_room(frame: &[u8]) -> Option<String> {
    if !frame.starts_with(br#"{"type":"room_closed""#) {
        return None;
    }
    match serde_json::from_slice::<ServerFrame>(frame) {
        Ok(ServerFrame::RoomClosed(closed)) if is_canonical_id(&closed.room) => Some(closed.room),
        _ => None,
    }
}

/// A frame for a list of users (a private room's directory event, a
/// profile change): once to each local connection of each listed user. A
/// `room_closed` also takes those users' connections out of the room.
fn for_users(relay: &Relay, payload: &[u8], published_us: u64) {
    let message: UsersBroadcast = match serde_json::from_slice(payload) {
        Ok(m) => m,
        Err(e) => return tracing::warn!(error = %e, "malformed users message"),
    };
    let frame = Bytes::from(message.frame);
    let kind = serde_json::from_slice::<Head>(&frame)
        .map_or(OutKind::Message, |h| OutKind::of_type(&h.kind));
    let closed = closed_room(&frame);
    let out = Outbound::bus(frame, published_us);
    for user in message.users.iter().filter(|u| is_canonical_id(u)) {
        relay.hub.fan_out(&user_channel(user), &out, kind);
        if let Some(room) = &closed {
            recover::left(relay, user, room);
        }
    }
}

/// The kind of channel (for span fields: never the id).
fn channel_kind(channel: &str) -> &str {
    channel.split(':').next().unwrap_or(channel)
}

/// Relays one room frame: messages in seq order without repeats or holes.
async fn relay_room(relay: &Relay, room: &str, channel: &str, out: Outbound) {
    let hub = relay.hub.as_ref();
    let head = serde_json::from_slice::<Head>(out.frame()).ok();
    let kind = head
        .as_ref()
        .map_or(OutKind::Message, |h| OutKind::of_type(&h.kind));
    // Messages and the changes to them share the room's log and its seqs.
    let seq = head.filter(|h| is_log_type(&h.kind)).and_then(|h| h.seq);
    let Some(seq) = seq else {
        if kind == OutKind::RoomClosed {
            // Its members leave it here too, as after a catch-up.
            return recover::room_closed(relay, room, &out);
        }
        hub.fan_out_room(channel, &out, kind, None);
        return;
    };
    match hub.advance(channel, seq) {
        Some(last) if seq <= last => {} // already relayed (a repair got there first)
        Some(last) if seq > last + 1 => {
            recover::repair(relay, room, channel, last, Some(seq)).await;
            hub.fan_out_room(channel, &out, kind, Some(seq));
        }
        _ => {
            hub.fan_out_room(channel, &out, kind, Some(seq));
        }
    }
}

/// Delivers a presence change once to every local connection that shares a
/// room with the user, and to the user's own connections; records the
/// user's status choice for the heartbeats.
fn fan_out_presence(hub: &Hub, out: &Outbound) {
    let change: PresenceBroadcast = match serde_json::from_slice(out.frame()) {
        Ok(c) => c,
        Err(e) => return tracing::warn!(error = %e, "malformed presence broadcast"),
    };
    if let Some(choice) = change.choice {
        hub.record_choice(&change.event.user.id, choice);
    }
    let mut channels: Vec<String> = change
        .rooms
        .iter()
        .filter(|r| is_canonical_id(r))
        .map(|r| room_channel(r))
        .collect();
    channels.push(user_channel(&change.event.user.id));
    let frame = Outbound::bus(
        Bytes::from(ServerFrame::Presence(change.event).to_json()),
        out.published_us(),
    );
    hub.fan_out_union(&channels, &frame);
}

/// A revocation from the api: older tokens of the user are refused from
/// now on, and the user's connections here close with 4001.
fn revocation(relay: &Relay, payload: &[u8]) {
    match serde_json::from_slice::<NodeControl>(payload) {
        Ok(NodeControl::Revoke {
            user_id,
            valid_after,
        }) => {
            if !relay.revocations.record(&user_id, valid_after) {
                return;
            }
            let n = relay.hub.close_all(
                &user_channel(&user_id),
                CloseCode::TokenExpired,
                Some(ByeReason::TokenRevoked),
            );
            tracing::info!(user_id, connections = n, "tokens revoked");
        }
        Ok(_) => revocation_misrouted(),
        Err(e) => tracing::warn!(error = %e, "unknown message on the nodes channel"),
    }
}

/// A control message on a channel it does not belong to.
fn revocation_misrouted() {
    tracing::warn!("a control message on the wrong channel");
}

/// Loads the revocations from the api until it answers (every 500 ms), so
/// that a connect waits for them (`connect.rs`) at a node's start.
pub(crate) async fn load_revocations(
    api: ApiClient,
    revocations: Arc<RevocationList>,
    shutdown: CancellationToken,
) {
    loop {
        match api.revocations().await {
            Ok(list) => return revocations.load(&list.revocations),
            Err(e) => tracing::warn!(error = %e, "could not load the revocations; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            () = shutdown.cancelled() => return,
        }
    }
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
        Ok(NodeControl::Probe { .. }) => {}
        Ok(NodeControl::Revoke { .. }) => revocation_misrouted(),
        Err(e) => tracing::warn!(error = %e, "unknown control message"),
    }
}
