//! The hub: this node's registry of connections and the channels they are
//! in, and the bus subscriptions that follow it.
//!
//! It is the one owner of "which local connection is in which room": the
//! session asks it before room-scoped requests (`typing`), the presence
//! reporter's heartbeats are built from it, and a leave on any device
//! (a `member` `left` event, see `relay.rs`) takes the user's connections
//! out of the room here, for every purpose at once.
//!
//! A channel (`room:{id}`, `user:{id}`) is subscribed on the bus once per
//! node while at least one local connection is in it, and unsubscribed after
//! the last leaves; one reconcile task owns those calls ([`reconcile`]).
//! Fan-out never waits on a client: each connection's bounded queue is fed
//! with [`SessionHandle::queue`], and a full queue closes that connection as
//! a slow consumer. The hub also keeps, per user with a local connection,
//! their latest status choice (so heartbeats can repeat it to presence), and
//! the last seq the relay passed on per room (for gap repair).

mod members;
mod reconcile;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use telepath_shared::bus::Bus;
use telepath_shared::protocol::{
    ByeReason, CloseCode, LiveConn, StatusChoice, room_channel, user_channel,
};
use tokio::sync::{mpsc, oneshot};

use crate::handle::{ConnId, Outbound, SessionHandle};
use crate::metrics::{GatewayMetrics, OutKind};
use members::Members;
use reconcile::Reconcile;

/// This node's registry of who is in which channel.
pub(crate) struct Hub {
    registry: Mutex<Registry>,
    /// The last seq relayed per room channel, for gap detection.
    relayed: Mutex<HashMap<String, i64>>,
    reconcile: mpsc::UnboundedSender<Reconcile>,
    metrics: GatewayMetrics,
}

/// Everything under the hub's one lock, so a connection's channels and its
/// rooms never disagree.
#[derive(Default)]
struct Registry {
    /// channel -> its local members. A member's gate lives in its entry, so
    /// fan-out reads it without another lookup per delivery.
    channels: HashMap<String, Members<Member>>,
    /// Every local connection, with the rooms it is in.
    conns: HashMap<ConnId, Local>,
    /// user id -> their latest status choice, for users with a local connection.
    choices: HashMap<String, StatusChoice>,
}

/// One local connection.
struct Local {
    handle: SessionHandle,
    /// The rooms it joined (ids), and the one it is joining.
    rooms: Vec<Joined>,
}

/// A room of a connection.
struct Joined {
    room: String,
    /// The api made the user a participant; false while the join is pending.
    confirmed: bool,
}

/// One local connection in one channel.
struct Member {
    handle: SessionHandle,
    /// Set while (and just after) the connection joins the room with a replay.
    gate: Option<Gate>,
}

/// Room frames held for one gated connection, with their seq when they are messages.
type Held = Vec<(Option<i64>, Outbound)>;

/// One connection's view of one room's live stream around its join.
struct Gate {
    /// While the join's reply and replay are being prepared: what arrived meanwhile.
    held: Option<Held>,
    /// After: messages at or below this seq were in the join's replay (or
    /// before it); the relay may still bring some late, and they are dropped.
    /// Once a message above it passes, the gate is gone.
    floor: i64,
}

/// Frames a gate may hold before its connection counts as a slow consumer.
const GATE_LIMIT: usize = 4096;

/// Why a join cannot start.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JoinRefused {
    /// The connection is in as many rooms as it may be.
    TooManyRooms,
    /// The connection is gone.
    Gone,
}

impl Registry {
    /// Removes `conn` from `channel`; true when that emptied the channel.
    fn remove_member(&mut self, channel: &str, conn: ConnId) -> bool {
        let Some(members) = self.channels.get_mut(channel) else {
            return false;
        };
        members.remove(conn);
        let empty = members.is_empty();
        if empty {
            self.channels.remove(channel);
        }
        empty
    }

    /// Adds `conn` to `channel` (replacing its entry); true when it is the first member.
    fn add_member(&mut self, channel: &str, conn: ConnId, member: Member) -> bool {
        let members = self.channels.entry(channel.to_owned()).or_default();
        members.insert(conn, member);
        members.len() == 1
    }

    /// Takes `conn` out of `room` (channel and room list); true when the
    /// room's channel is now empty here.
    fn leave_room(&mut self, room: &str, conn: ConnId) -> bool {
        if let Some(local) = self.conns.get_mut(&conn) {
            local.rooms.retain(|j| j.room != room);
        }
        self.remove_member(&room_channel(room), conn)
    }
}

impl Hub {
    /// A hub whose reconcile task subscribes on `bus`. `permanent` channels
    /// (broadcast, presence, this node's control channel) stay subscribed
    /// for the node's life.
    pub(crate) fn new(
        bus: Arc<dyn Bus>,
        metrics: GatewayMetrics,
        permanent: Vec<String>,
    ) -> Arc<Hub> {
        // Unbounded is safe here: entries are only added by local joins and
        // leaves, which are bounded by connections x rooms per connection.
        let (tx, rx) = mpsc::unbounded_channel();
        let hub = Arc::new(Hub {
            registry: Mutex::new(Registry::default()),
            relayed: Mutex::new(HashMap::new()),
            reconcile: tx,
            metrics,
        });
        tokio::spawn(reconcile::run(Arc::downgrade(&hub), bus, rx, permanent));
        hub
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().expect("hub lock poisoned")
    }

    /// Registers a connection and adds it to its user's channel; returns
    /// once this node is subscribed to that channel (false if the bus
    /// refused for now; the subscription is retried).
    pub(crate) async fn connect(&self, conn: ConnId, handle: SessionHandle) -> bool {
        let channel = user_channel(&handle.control().user.id);
        let first = {
            let mut registry = self.registry();
            let local = Local {
                handle: handle.clone(),
                rooms: Vec::new(),
            };
            registry.conns.insert(conn, local);
            let member = Member { handle, gate: None };
            registry.add_member(&channel, conn, member)
        };
        if !first {
            return true;
        }
        self.metrics.users.inc();
        self.subscribe(&channel).await
    }

    /// Removes every trace of a connection; returns the rooms it was in.
    pub(crate) fn disconnect(&self, conn: ConnId) -> Vec<String> {
        let (emptied, rooms) = {
            let mut registry = self.registry();
            let Some(local) = registry.conns.remove(&conn) else {
                return Vec::new();
            };
            let mut emptied = Vec::new();
            let mut rooms = Vec::new();
            for joined in local.rooms {
                let channel = room_channel(&joined.room);
                if registry.remove_member(&channel, conn) {
                    emptied.push(channel);
                }
                if joined.confirmed {
                    rooms.push(joined.room);
                }
            }
            let user = &local.handle.control().user.id;
            let channel = user_channel(user);
            if registry.remove_member(&channel, conn) {
                registry.choices.remove(user);
                self.metrics.users.dec();
                emptied.push(channel);
            }
            (emptied, rooms)
        };
        for channel in emptied {
            self.unsubscribe(channel);
        }
        rooms
    }

    /// Starts a join of `room`: the connection is added to the room's
    /// channel with its room frames held back until [`Hub::ungate`], so the
    /// join's reply and replay go out first. A connection already in the
    /// room rejoins the same way. Returns once this node is subscribed
    /// (`Ok(false)`: the bus refused for now).
    pub(crate) async fn begin_join(
        &self,
        room: &str,
        conn: ConnId,
        max_rooms: usize,
    ) -> Result<bool, JoinRefused> {
        let channel = room_channel(room);
        let first = {
            let mut registry = self.registry();
            let local = registry.conns.get_mut(&conn).ok_or(JoinRefused::Gone)?;
            if !local.rooms.iter().any(|j| j.room == room) {
                if local.rooms.len() >= max_rooms {
                    return Err(JoinRefused::TooManyRooms);
                }
                local.rooms.push(Joined {
                    room: room.to_owned(),
                    confirmed: false,
                });
            }
            let gate = Gate {
                held: Some(Vec::new()),
                floor: i64::MIN,
            };
            let member = Member {
                handle: local.handle.clone(),
                gate: Some(gate),
            };
            registry.add_member(&channel, conn, member)
        };
        Ok(!first || self.subscribe(&channel).await)
    }

    /// The api made the user a participant: the connection is in `room`.
    /// Returns true when it was not in it before (the caller reports the join).
    pub(crate) fn confirm_join(&self, room: &str, conn: ConnId) -> bool {
        let mut registry = self.registry();
        let joined = registry
            .conns
            .get_mut(&conn)
            .and_then(|l| l.rooms.iter_mut().find(|j| j.room == room));
        match joined {
            Some(j) => !std::mem::replace(&mut j.confirmed, true),
            None => false,
        }
    }

    /// Takes the connection out of `room`; true when it was in it (joined
    /// or joining).
    pub(crate) fn leave_room(&self, room: &str, conn: ConnId) -> bool {
        let (was_in, emptied) = {
            let mut registry = self.registry();
            let was_in = registry
                .conns
                .get(&conn)
                .is_some_and(|l| l.rooms.iter().any(|j| j.room == room && j.confirmed));
            (was_in, registry.leave_room(room, conn))
        };
        if emptied {
            self.unsubscribe(room_channel(room));
        }
        was_in
    }

    /// Takes every local connection of `user_id` out of `room`: the user is
    /// no longer a participant. Returns the `conn_id`s of those that were in it.
    pub(crate) fn leave_everywhere(&self, user_id: &str, room: &str) -> Vec<String> {
        let (left, emptied) = {
            let mut registry = self.registry();
            let mine: Vec<ConnId> = registry
                .channels
                .get(&user_channel(user_id))
                .map(|m| m.iter().map(|(c, _)| c).collect())
                .unwrap_or_default();
            let mut left = Vec::new();
            let mut emptied = false;
            for conn in mine {
                let Some(local) = registry.conns.get(&conn) else {
                    continue;
                };
                if !local.rooms.iter().any(|j| j.room == room) {
                    continue;
                }
                left.push(local.handle.control().conn_id.clone());
                emptied |= registry.leave_room(room, conn);
            }
            (left, emptied)
        };
        if emptied {
            self.unsubscribe(room_channel(room));
        }
        left
    }

    /// Whether the connection has joined `room` (and the join was confirmed).
    pub(crate) fn in_room(&self, room: &str, conn: ConnId) -> bool {
        self.registry()
            .conns
            .get(&conn)
            .is_some_and(|l| l.rooms.iter().any(|j| j.room == room && j.confirmed))
    }

    /// Local connections.
    pub(crate) fn connections(&self) -> usize {
        self.registry().conns.len()
    }

    /// Every local connection as a heartbeat lists it: its confirmed rooms,
    /// its idle flag and its user's latest status choice.
    pub(crate) fn live(&self, node: &str) -> Vec<LiveConn> {
        let registry = self.registry();
        registry
            .conns
            .values()
            .map(|local| {
                let control = local.handle.control();
                LiveConn {
                    conn_id: control.conn_id.clone(),
                    user: control.user.clone(),
                    node: node.to_owned(),
                    rooms: local
                        .rooms
                        .iter()
                        .filter(|j| j.confirmed)
                        .map(|j| j.room.clone())
                        .collect(),
                    idle: control.is_idle(),
                    choice: registry.choices.get(&control.user.id).cloned(),
                }
            })
            .collect()
    }

    /// Records `choice` as `user_id`'s latest status choice if they have a
    /// local connection and it is newer than the one known.
    pub(crate) fn record_choice(&self, user_id: &str, choice: StatusChoice) {
        let mut registry = self.registry();
        if !registry.channels.contains_key(&user_channel(user_id)) {
            return;
        }
        let newer = registry
            .choices
            .get(user_id)
            .is_none_or(|known| choice.at_ms > known.at_ms);
        if newer {
            registry.choices.insert(user_id.to_owned(), choice);
        }
    }

    /// Whether any local connection is in `channel`.
    fn wants(&self, channel: &str) -> bool {
        self.registry().channels.contains_key(channel)
    }

    /// Asks the reconcile task to subscribe `channel`; waits for the result.
    async fn subscribe(&self, channel: &str) -> bool {
        let (done, rx) = oneshot::channel();
        let _ = self.reconcile.send(Reconcile {
            channel: channel.to_owned(),
            done: Some(done),
        });
        rx.await.unwrap_or(false)
    }

    /// Asks the reconcile task to drop `channel` once it is no longer wanted.
    fn unsubscribe(&self, channel: String) {
        let _ = self.reconcile.send(Reconcile {
            channel,
            done: None,
        });
    }

    /// Queues `payload` (a frame of `kind`) to every local connection in
    /// `channel`. Returns how many connections it was queued to.
    pub(crate) fn fan_out(&self, channel: &str, payload: &Outbound, kind: OutKind) -> usize {
        let registry = self.registry();
        let Some(members) = registry.channels.get(channel) else {
            return 0;
        };
        for member in members.values() {
            member.handle.queue(payload.clone());
        }
        self.metrics.frames_out(kind, members.len());
        members.len()
    }

    /// Releases a gate: the held frames with a seq above `after` (or none)
    /// go to the connection's queue, in arrival order, and later frames go
    /// straight through, except messages at or below `after`. Holding the
    /// hub's lock keeps the relay out meanwhile, so nothing overtakes them.
    pub(crate) fn ungate(&self, channel: &str, conn: ConnId, after: i64) {
        let mut registry = self.registry();
        let Some(member) = registry
            .channels
            .get_mut(channel)
            .and_then(|m| m.get_mut(conn))
        else {
            return;
        };
        // The gate stays as a floor: the relay can be behind the api, so a
        // message the replay already carried may still come live.
        let Some(held) = member.gate.as_mut().and_then(|gate| {
            gate.floor = after;
            gate.held.take()
        }) else {
            return;
        };
        for (_, frame) in held
            .into_iter()
            .filter(|(seq, _)| seq.is_none_or(|s| s > after))
        {
            if !member.handle.queue(frame) {
                break;
            }
        }
    }

    /// Queues a room frame of `kind` (with its seq, when it is a message) to
    /// every local member, holding it for gated members.
    pub(crate) fn fan_out_room(
        &self,
        channel: &str,
        payload: &Outbound,
        kind: OutKind,
        seq: Option<i64>,
    ) -> usize {
        let mut registry = self.registry();
        let Some(members) = registry.channels.get_mut(channel) else {
            return 0;
        };
        for member in members.values_mut() {
            match &mut member.gate {
                None => {}
                Some(Gate {
                    held: Some(held), ..
                }) => {
                    if held.len() < GATE_LIMIT {
                        held.push((seq, payload.clone()));
                    } else {
                        // A gate over its limit: the connection cannot keep up.
                        member.handle.close_slow();
                    }
                    continue;
                }
                // Already in the join's replay.
                Some(Gate { held: None, floor }) if seq.is_some_and(|s| s <= *floor) => continue,
                // Past the floor: no gate any more.
                Some(Gate { held: None, .. }) if seq.is_some() => member.gate = None,
                Some(_) => {}
            }
            member.handle.queue(payload.clone());
        }
        self.metrics.frames_out(kind, members.len());
        members.len()
    }

    /// The last seq relayed on `channel`, and records `seq` as the new one
    /// when it is higher.
    pub(crate) fn advance(&self, channel: &str, seq: i64) -> Option<i64> {
        let mut relayed = self.relayed.lock().expect("hub lock poisoned");
        let last = relayed.get(channel).copied();
        if last.is_none_or(|l| seq > l) {
            relayed.insert(channel.to_owned(), seq);
        }
        last
    }

    /// Every room channel with a relay position, and the position.
    pub(crate) fn positions(&self) -> Vec<(String, i64)> {
        self.relayed
            .lock()
            .expect("hub lock poisoned")
            .iter()
            .map(|(c, s)| (c.clone(), *s))
            .collect()
    }

    /// Forgets the relay position of `channel` (its subscription ended).
    fn forget_position(&self, channel: &str) {
        self.relayed
            .lock()
            .expect("hub lock poisoned")
            .remove(channel);
    }

    /// Closes every local connection in `channel` (a user's channel: all of
    /// that user's connections on this node). Returns how many.
    pub(crate) fn close_all(
        &self,
        channel: &str,
        code: CloseCode,
        bye: Option<ByeReason>,
    ) -> usize {
        let registry = self.registry();
        let Some(members) = registry.channels.get(channel) else {
            return 0;
        };
        for member in members.values() {
            member.handle.close(code, bye);
        }
        members.len()
    }

    /// Queues `payload` (a presence event) once to every local connection in any of `channels`.
    pub(crate) fn fan_out_union(&self, channels: &[String], payload: &Outbound) -> usize {
        let registry = self.registry();
        let groups = channels.iter().filter_map(|c| registry.channels.get(c));
        let n = once_each(groups, payload);
        self.metrics.frames_out(OutKind::Presence, n);
        n
    }

    /// Queues `payload` to every local connection (admin broadcasts).
    pub(crate) fn fan_out_all(&self, payload: &Outbound) -> usize {
        let registry = self.registry();
        for local in registry.conns.values() {
            local.handle.queue(payload.clone());
        }
        let n = registry.conns.len();
        self.metrics.frames_out(OutKind::Broadcast, n);
        n
    }
}

/// Queues `payload` once per connection found in `groups` (the caller holds the hub's lock).
fn once_each<'a>(groups: impl Iterator<Item = &'a Members<Member>>, payload: &Outbound) -> usize {
    let mut seen = HashSet::new();
    for members in groups {
        for (conn, member) in members.iter() {
            if seen.insert(conn) {
                member.handle.queue(payload.clone());
            }
        }
    }
    seen.len()
}

#[cfg(test)]
mod tests;
