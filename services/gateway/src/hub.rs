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
//! where it stands in each followed room ([`positions`], for gap repair).

mod census;
mod gate;
mod members;
mod positions;
mod reconcile;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use telepath_shared::bus::Bus;
use telepath_shared::protocol::{
    ByeReason, CloseCode, LiveConn, Status, StatusChoice, room_channel, user_channel,
};
use tokio::sync::{mpsc, oneshot};

use crate::handle::{ConnId, Outbound, SessionHandle};
use crate::metrics::{GatewayMetrics, OutKind};
use gate::Gate;
use members::Members;
use reconcile::Reconcile;

/// This node's registry of who is in which channel.
pub(crate) struct Hub {
    registry: Mutex<Registry>,
    /// Where this node stands in each followed room (see `positions.rs`).
    positions: Mutex<positions::Positions>,
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
    /// (user id, room) -> until when (ms since the epoch) the user is muted
    /// there, for users with a local connection; `typing` is refused meanwhile.
    mutes: HashMap<(String, String), i64>,
}

/// One local connection.
struct Local {
    handle: SessionHandle,
    /// The rooms it joined (ids), and the one it is joining.
    rooms: Vec<Joined>,
}

impl Local {
    /// Whether its join of `room` is confirmed (not merely in progress).
    fn in_room(&self, room: &str) -> bool {
        self.rooms.iter().any(|j| j.room == room && j.confirmed)
    }
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
            positions: Mutex::new(positions::Positions::default()),
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
        if first {
            self.metrics.users.inc();
        }
        // Another connection of the user asked first: this request queues
        // behind its subscribe, so it too returns once the channel is
        // subscribed (what the offline read's skip relies on, see
        // `upstream::Marks`), without another bus call.
        self.subscribe(&channel).await
    }

    /// Removes every trace of a connection.
    pub(crate) fn disconnect(&self, conn: ConnId) {
        let emptied = {
            let mut registry = self.registry();
            let Some(local) = registry.conns.remove(&conn) else {
                return;
            };
            let mut emptied = Vec::new();
            for joined in local.rooms {
                let channel = room_channel(&joined.room);
                if registry.remove_member(&channel, conn) {
                    emptied.push(channel);
                }
            }
            let user = &local.handle.control().user.id;
            let channel = user_channel(user);
            if registry.remove_member(&channel, conn) {
                registry.choices.remove(user);
                registry.mutes.retain(|(u, _), _| u != user);
                self.metrics.users.dec();
                emptied.push(channel);
            }
            emptied
        };
        for channel in emptied {
            self.unsubscribe(channel);
        }
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
            let member = Member {
                handle: local.handle.clone(),
                gate: Some(Gate::closed()),
            };
            registry.add_member(&channel, conn, member)
        };
        Ok(!first || self.subscribe(&channel).await)
    }

    /// The api made the user a participant: the connection is in `room`.
    /// `Some(true)` when it was not in it before (the caller reports the
    /// join), `None` when the join is gone (the connection left the room or
    /// closed meanwhile).
    pub(crate) fn confirm_join(&self, room: &str, conn: ConnId) -> Option<bool> {
        let mut registry = self.registry();
        let joined = registry
            .conns
            .get_mut(&conn)?
            .rooms
            .iter_mut()
            .find(|j| j.room == room)?;
        Some(!std::mem::replace(&mut joined.confirmed, true))
    }

    /// Takes the connection out of `room` (a join in progress included);
    /// true when it had joined it (the join was confirmed).
    pub(crate) fn leave_room(&self, room: &str, conn: ConnId) -> bool {
        let (was_in, emptied) = {
            let mut registry = self.registry();
            let was_in = registry.conns.get(&conn).is_some_and(|l| l.in_room(room));
            (was_in, registry.leave_room(room, conn))
        };
        if emptied {
            self.unsubscribe(room_channel(room));
        }
        was_in
    }

    /// Takes every local connection of `user_id` out of `room`: the user is
    /// no longer a participant. Returns the `conn_id`s of those that were in it.
    ///
    /// A connection whose join of the room is still waiting for the api is
    /// left alone: the leave it hears of happened before that join reached
    /// the api (a client that leaves and joins again at once), and the join's
    /// answer is the newer word. (A leave on another device that the api
    /// commits between this join's commit and its answer is not told apart;
    /// the api still refuses that user's sends, and presence's heartbeats
    /// say the room until the connection leaves it.)
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
                if !local.in_room(room) {
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
            .is_some_and(|l| l.in_room(room))
    }

    /// Local connections.
    #[cfg(test)]
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

    /// Records a choice of `status` (with `text`) that `user_id` just made
    /// here and returns it stamped: now, or 1 ms after the latest choice
    /// known for them if that is not earlier (two choices within one
    /// millisecond, or a clock behind another gateway's), so presence, which
    /// takes only strictly newer choices, takes every one made in turn.
    pub(crate) fn choose(
        &self,
        user_id: &str,
        status: Status,
        text: Option<String>,
        now_ms: i64,
    ) -> StatusChoice {
        let mut registry = self.registry();
        let at_ms = registry
            .choices
            .get(user_id)
            .map_or(now_ms, |known| now_ms.max(known.at_ms.saturating_add(1)));
        let choice = StatusChoice {
            status,
            text,
            at_ms,
        };
        if registry.channels.contains_key(&user_channel(user_id)) {
            registry.choices.insert(user_id.to_owned(), choice.clone());
        }
        choice
    }

    /// Records that `user_id` is muted in `room` until `until_ms` (none:
    /// no longer muted), if they have a local connection.
    pub(crate) fn set_mute(&self, user_id: &str, room: &str, until_ms: Option<i64>) {
        let mut registry = self.registry();
        let key = (user_id.to_owned(), room.to_owned());
        match until_ms {
            Some(until) if registry.channels.contains_key(&user_channel(user_id)) => {
                registry.mutes.insert(key, until);
            }
            _ => {
                registry.mutes.remove(&key);
            }
        }
    }

    /// Whether `user_id` is muted in `room` at `now_ms` (an ended mute is forgotten).
    pub(crate) fn muted(&self, user_id: &str, room: &str, now_ms: i64) -> bool {
        let mut registry = self.registry();
        let key = (user_id.to_owned(), room.to_owned());
        match registry.mutes.get(&key) {
            Some(until) if *until > now_ms => true,
            Some(_) => {
                registry.mutes.remove(&key);
                false
            }
            None => false,
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
