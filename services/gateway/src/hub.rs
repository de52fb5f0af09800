//! The hub: this node's channel -> local connections registry, and the bus
//! subscriptions that follow it.
//!
//! A channel (`room:{id}`, `user:{id}`) is subscribed on the bus once per
//! node while at least one local connection is in it, and unsubscribed after
//! the last leaves. One reconcile task owns the subscribe/unsubscribe calls,
//! so they happen in one order and never race; it retries failures every
//! second. Fan-out never waits on a client: each connection's bounded queue
//! is fed with `try_send`, and a full queue closes that connection as a slow
//! consumer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telepath_shared::bus::Bus;
use telepath_shared::protocol::{ByeReason, CloseCode};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::{GatewayMetrics, OutKind};
use crate::session::{Outbound, SessionHandle};

/// Local connection id.
pub(crate) type ConnId = u64;

/// This node's registry of who is in which channel.
pub(crate) struct Hub {
    /// channel -> its local members. A member's gate lives in its entry, so
    /// fan-out reads it without another lookup per delivery.
    channels: Mutex<HashMap<String, Members>>,
    /// The last seq relayed per room channel, for gap detection.
    relayed: Mutex<HashMap<String, i64>>,
    reconcile: mpsc::UnboundedSender<Reconcile>,
    metrics: GatewayMetrics,
}

/// One local connection in one channel.
struct Member {
    handle: SessionHandle,
    /// Set while (and just after) the connection joins the room with a replay.
    gate: Option<Gate>,
}

/// A channel's local members: a short list while there are a few (most
/// channels are one user's connections, and a hash map's smallest table
/// has room for four), a map once there are more.
enum Members {
    Few(Vec<(ConnId, Member)>),
    Many(HashMap<ConnId, Member>),
}

/// Members kept in a list at most.
const FEW: usize = 8;

impl Default for Members {
    fn default() -> Self {
        Members::Few(Vec::new())
    }
}

impl Members {
    /// Adds `conn`, or replaces its entry.
    fn insert(&mut self, conn: ConnId, member: Member) {
        match self {
            Members::Few(list) => {
                if let Some(slot) = list.iter_mut().find(|(c, _)| *c == conn) {
                    slot.1 = member;
                } else if list.len() < FEW {
                    // 1, 2, 4, 8 slots: one for the first member (a Vec would make four).
                    if list.len() == list.capacity() {
                        list.reserve_exact(list.len().max(1));
                    }
                    list.push((conn, member));
                } else {
                    let mut map: HashMap<ConnId, Member> = list.drain(..).collect();
                    map.insert(conn, member);
                    *self = Members::Many(map);
                }
            }
            Members::Many(map) => {
                map.insert(conn, member);
            }
        }
    }

    fn remove(&mut self, conn: ConnId) {
        match self {
            Members::Few(list) => {
                if let Some(i) = list.iter().position(|(c, _)| *c == conn) {
                    list.swap_remove(i);
                }
            }
            Members::Many(map) => {
                map.remove(&conn);
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Members::Few(list) => list.len(),
            Members::Many(map) => map.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn contains(&self, conn: ConnId) -> bool {
        match self {
            Members::Few(list) => list.iter().any(|(c, _)| *c == conn),
            Members::Many(map) => map.contains_key(&conn),
        }
    }

    fn get_mut(&mut self, conn: ConnId) -> Option<&mut Member> {
        match self {
            Members::Few(list) => list.iter_mut().find(|(c, _)| *c == conn).map(|(_, m)| m),
            Members::Many(map) => map.get_mut(&conn),
        }
    }

    fn iter(&self) -> impl Iterator<Item = (ConnId, &Member)> {
        let (few, many) = match self {
            Members::Few(list) => (Some(list.iter().map(|(c, m)| (*c, m))), None),
            Members::Many(map) => (None, Some(map.iter().map(|(c, m)| (*c, m)))),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }

    fn values(&self) -> impl Iterator<Item = &Member> {
        self.iter().map(|(_, m)| m)
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Member> {
        let (few, many) = match self {
            Members::Few(list) => (Some(list.iter_mut().map(|(_, m)| m)), None),
            Members::Many(map) => (None, Some(map.values_mut())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }
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

/// Ask the reconcile task to bring one channel's bus subscription in line
/// with local membership, optionally waiting for the result.
struct Reconcile {
    channel: String,
    done: Option<oneshot::Sender<bool>>,
}

impl Hub {
    /// A hub whose reconcile task subscribes on `bus`. `permanent` channels
    /// (broadcast, this node's control channel) stay subscribed for the node's life.
    pub(crate) fn new(
        bus: Arc<dyn Bus>,
        metrics: GatewayMetrics,
        permanent: Vec<String>,
    ) -> Arc<Hub> {
        // Unbounded is safe here: entries are only added by local joins and
        // leaves, which are bounded by connections x rooms per connection.
        let (tx, rx) = mpsc::unbounded_channel();
        let hub = Arc::new(Hub {
            channels: Mutex::new(HashMap::new()),
            relayed: Mutex::new(HashMap::new()),
            reconcile: tx,
            metrics,
        });
        tokio::spawn(reconcile_task(Arc::downgrade(&hub), bus, rx, permanent));
        hub
    }

    /// Adds a connection to `channel`; returns once this node is subscribed
    /// (false if the bus refused for now; the subscription is retried).
    pub(crate) async fn join(&self, channel: &str, conn: ConnId, handle: SessionHandle) -> bool {
        self.join_with(channel, conn, handle, None).await
    }

    /// Adds a connection to `channel` with `gate`; returns once subscribed.
    async fn join_with(
        &self,
        channel: &str,
        conn: ConnId,
        handle: SessionHandle,
        gate: Option<Gate>,
    ) -> bool {
        let first = {
            let mut channels = self.channels.lock().expect("hub lock poisoned");
            let members = channels.entry(channel.to_owned()).or_default();
            members.insert(conn, Member { handle, gate });
            members.len() == 1
        };
        if !first {
            return true;
        }
        if channel.starts_with("user:") {
            self.metrics.users.inc();
        }
        let (done, rx) = oneshot::channel();
        let _ = self.reconcile.send(Reconcile {
            channel: channel.to_owned(),
            done: Some(done),
        });
        rx.await.unwrap_or(false)
    }

    /// Removes a connection from `channel`.
    pub(crate) fn leave(&self, channel: &str, conn: ConnId) {
        let last = {
            let mut channels = self.channels.lock().expect("hub lock poisoned");
            let Some(members) = channels.get_mut(channel) else {
                return;
            };
            members.remove(conn);
            let empty = members.is_empty();
            if empty {
                channels.remove(channel);
            }
            empty
        };
        if last {
            if channel.starts_with("user:") {
                self.metrics.users.dec();
            }
            let _ = self.reconcile.send(Reconcile {
                channel: channel.to_owned(),
                done: None,
            });
        }
    }

    /// Removes every local connection in `user` (a user channel) from
    /// `room` (a room channel): the user left the room on some connection,
    /// so none of theirs receives it any more. Returns how many were removed.
    pub(crate) fn leave_all(&self, user: &str, room: &str) -> usize {
        let conns: Vec<ConnId> = {
            let channels = self.channels.lock().expect("hub lock poisoned");
            match (channels.get(user), channels.get(room)) {
                (Some(mine), Some(inside)) => mine
                    .iter()
                    .map(|(c, _)| c)
                    .filter(|&c| inside.contains(c))
                    .collect(),
                _ => Vec::new(),
            }
        };
        for &conn in &conns {
            self.leave(room, conn);
        }
        conns.len()
    }

    /// Whether any local connection is in `channel`.
    fn wants(&self, channel: &str) -> bool {
        self.channels
            .lock()
            .expect("hub lock poisoned")
            .contains_key(channel)
    }

    /// Queues `payload` (a frame of `kind`) to every local connection in
    /// `channel`. Returns how many connections it was queued to.
    pub(crate) fn dispatch(&self, channel: &str, payload: &Outbound, kind: OutKind) -> usize {
        let channels = self.channels.lock().expect("hub lock poisoned");
        let Some(members) = channels.get(channel) else {
            return 0;
        };
        for member in members.values() {
            self.deliver(&member.handle, payload.clone());
        }
        self.metrics.frames_out(kind, members.len());
        members.len()
    }

    /// Like [`Hub::join`], but room frames for this connection are held back
    /// until [`Hub::ungate`], so a join's reply and replay go out first.
    pub(crate) async fn join_gated(
        &self,
        channel: &str,
        conn: ConnId,
        handle: SessionHandle,
    ) -> bool {
        let gate = Gate {
            held: Some(Vec::new()),
            floor: i64::MIN,
        };
        self.join_with(channel, conn, handle, Some(gate)).await
    }

    /// Releases a gate: the held frames with a seq above `after` (or none)
    /// go to the connection's queue, in arrival order, and later frames go
    /// straight through, except messages at or below `after`. Holding the
    /// channel lock keeps the dispatcher out meanwhile, so nothing overtakes them.
    pub(crate) fn ungate(&self, channel: &str, conn: ConnId, after: i64) {
        let mut channels = self.channels.lock().expect("hub lock poisoned");
        let Some(member) = channels.get_mut(channel).and_then(|m| m.get_mut(conn)) else {
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
            if !self.deliver(&member.handle, frame) {
                break;
            }
        }
    }

    /// Queues a room frame of `kind` (with its seq, when it is a message) to
    /// every local member, holding it for gated members.
    pub(crate) fn dispatch_room(
        &self,
        channel: &str,
        payload: &Outbound,
        kind: OutKind,
        seq: Option<i64>,
    ) -> usize {
        let mut channels = self.channels.lock().expect("hub lock poisoned");
        let Some(members) = channels.get_mut(channel) else {
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
                        member.handle.close_slow(&self.metrics);
                    }
                    continue;
                }
                // Already in the join's replay.
                Some(Gate { held: None, floor }) if seq.is_some_and(|s| s <= *floor) => continue,
                // Past the floor: no gate any more.
                Some(Gate { held: None, .. }) if seq.is_some() => member.gate = None,
                Some(_) => {}
            }
            self.deliver(&member.handle, payload.clone());
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

    /// Closes every local connection in `channel` (a user's channel: all of
    /// that user's connections on this node). Returns how many.
    pub(crate) fn close_all(
        &self,
        channel: &str,
        code: CloseCode,
        bye: Option<ByeReason>,
    ) -> usize {
        let channels = self.channels.lock().expect("hub lock poisoned");
        let Some(members) = channels.get(channel) else {
            return 0;
        };
        for member in members.values() {
            member.handle.close(code, bye);
        }
        members.len()
    }

    /// Queues `payload` (a presence event) once to every local connection in any of `channels`.
    pub(crate) fn dispatch_union(&self, channels: &[String], payload: &Outbound) -> usize {
        let map = self.channels.lock().expect("hub lock poisoned");
        let n = self.once_each(channels.iter().filter_map(|c| map.get(c)), payload);
        self.metrics.frames_out(OutKind::Presence, n);
        n
    }

    /// Queues `payload` to every local connection (admin broadcasts): every
    /// connection is in its user's channel.
    pub(crate) fn dispatch_all(&self, payload: &Outbound) -> usize {
        let map = self.channels.lock().expect("hub lock poisoned");
        let users = map
            .iter()
            .filter(|(c, _)| c.starts_with("user:"))
            .map(|(_, m)| m);
        let n = self.once_each(users, payload);
        self.metrics.frames_out(OutKind::Broadcast, n);
        n
    }

    /// Queues `payload` once per connection found in `groups` (the caller holds the channel lock).
    fn once_each<'a>(
        &self,
        groups: impl Iterator<Item = &'a Members>,
        payload: &Outbound,
    ) -> usize {
        let mut seen = HashSet::new();
        for members in groups {
            for (conn, member) in members.iter() {
                if seen.insert(conn) {
                    self.deliver(&member.handle, payload.clone());
                }
            }
        }
        seen.len()
    }

    /// Queues one frame (see [`SessionHandle::deliver`]).
    fn deliver(&self, handle: &SessionHandle, frame: Outbound) -> bool {
        handle.deliver(frame, &self.metrics)
    }
}

/// Owns every subscribe/unsubscribe call of this node.
async fn reconcile_task(
    hub: std::sync::Weak<Hub>,
    bus: Arc<dyn Bus>,
    mut rx: mpsc::UnboundedReceiver<Reconcile>,
    permanent: Vec<String>,
) {
    let mut subscribed: HashSet<String> = HashSet::new();
    // Channels whose last subscribe/unsubscribe failed; retried every second.
    let mut dirty: HashSet<String> = permanent.iter().cloned().collect();
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    loop {
        let request = tokio::select! {
            r = rx.recv() => match r { Some(r) => Some(r), None => return },
            _ = retry.tick() => None,
        };
        let Some(hub) = hub.upgrade() else { return };
        let mut work: Vec<(String, Option<oneshot::Sender<bool>>)> =
            dirty.drain().map(|c| (c, None)).collect();
        if let Some(r) = request {
            work.push((r.channel, r.done));
        }
        for (channel, done) in work {
            let want = permanent.contains(&channel) || hub.wants(&channel);
            let have = subscribed.contains(&channel);
            let ok = match (want, have) {
                (true, false) => bus
                    .subscribe(&channel)
                    .await
                    .map(|_| subscribed.insert(channel.clone()))
                    .is_ok(),
                (false, true) => bus
                    .unsubscribe(&channel)
                    .await
                    .map(|_| {
                        // A later subscription starts a new relay history.
                        hub.relayed
                            .lock()
                            .expect("hub lock poisoned")
                            .remove(&channel);
                        subscribed.remove(&channel)
                    })
                    .is_ok(),
                _ => true,
            };
            if !ok {
                tracing::warn!(%channel, "bus subscription change failed; retrying");
                dirty.insert(channel);
            }
            hub.metrics.subscriptions.set(subscribed.len() as i64);
            if let Some(done) = done {
                let _ = done.send(ok);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use telepath_shared::bus::memory::MemoryBroker;

    fn out(text: &str) -> Outbound {
        Outbound::local(Bytes::from(text.to_owned()))
    }

    #[test]
    fn members_are_a_list_while_few_and_a_map_beyond() {
        let mut members = Members::default();
        let mut receivers = Vec::new();
        let mut add = |members: &mut Members, conn: ConnId| {
            let (handle, rx) = SessionHandle::detached(4);
            receivers.push(rx);
            members.insert(conn, Member { handle, gate: None });
        };
        add(&mut members, 1);
        assert!(matches!(&members, Members::Few(list) if list.capacity() == 1));
        add(&mut members, 1);
        assert_eq!(
            members.len(),
            1,
            "a second join of one connection replaces it"
        );
        for conn in 2..=FEW as ConnId {
            add(&mut members, conn);
        }
        assert!(matches!(members, Members::Few(_)));
        add(&mut members, 100);
        assert!(matches!(members, Members::Many(_)));
        assert_eq!(members.len(), FEW + 1);
        let mut seen: Vec<ConnId> = members.iter().map(|(c, _)| c).collect();
        seen.sort();
        assert_eq!(seen, (1..=FEW as ConnId).chain([100]).collect::<Vec<_>>());
        assert!(members.contains(100) && members.get_mut(3).is_some());
        for conn in (1..=FEW as ConnId).chain([100]) {
            members.remove(conn);
            assert!(!members.contains(conn));
        }
        assert!(members.is_empty());
        assert_eq!(members.values_mut().count(), 0);
    }

    fn hub() -> (Arc<Hub>, MemoryBroker) {
        let broker = MemoryBroker::new();
        let (bus, _rx) = broker.connect(16);
        let metrics = GatewayMetrics::new(&prometheus::Registry::new());
        (Hub::new(Arc::new(bus), metrics, vec![]), broker)
    }

    #[tokio::test]
    async fn a_full_queue_closes_the_slow_consumer_with_1013_and_spares_the_others() {
        let (hub, _broker) = hub();
        let (slow, _slow_rx) = SessionHandle::detached(2);
        let (fast, mut fast_rx) = SessionHandle::detached(16);
        assert!(hub.join("room:x", 1, slow.clone()).await);
        assert!(hub.join("room:x", 2, fast.clone()).await);
        for _ in 0..3 {
            hub.dispatch("room:x", &out("{}"), OutKind::Message);
        }
        assert_eq!(
            slow.close_reason(),
            Some((CloseCode::TryAgainLater, Some(ByeReason::SlowConsumer)))
        );
        assert_eq!(fast.close_reason(), None);
        for _ in 0..3 {
            assert!(fast_rx.try_recv().is_some());
        }
    }

    #[tokio::test]
    async fn the_bus_subscription_follows_the_first_and_last_local_member() {
        let (hub, broker) = hub();
        let (publisher, _) = broker.connect(16);
        let (a, mut a_rx) = SessionHandle::detached(16);
        let (b, _) = SessionHandle::detached(16);
        assert!(hub.join("room:y", 1, a.clone()).await);
        assert!(hub.join("room:y", 2, b).await);
        hub.leave("room:y", 2);
        assert!(hub.wants("room:y"));
        hub.leave("room:y", 1);
        assert!(!hub.wants("room:y"));
        assert_eq!(hub.dispatch("room:y", &out("{}"), OutKind::Message), 0);
        // The unsubscribe is asynchronous; a publish after it reaches no one here.
        let _ = publisher.publish("room:y", Bytes::from_static(b"{}")).await;
        assert!(a_rx.try_recv().is_none());
    }

    #[tokio::test]
    async fn a_gate_holds_room_frames_and_releases_only_those_above_the_join_seq() {
        let (hub, _broker) = hub();
        let (member, mut rx) = SessionHandle::detached(16);
        assert!(hub.join_gated("room:g", 7, member).await);
        for seq in [3, 4, 5] {
            hub.dispatch_room(
                "room:g",
                &out(&seq.to_string()),
                OutKind::Message,
                Some(seq),
            );
        }
        hub.dispatch_room("room:g", &out("typing"), OutKind::Typing, None);
        assert!(rx.try_recv().is_none(), "held while gated");
        hub.ungate("room:g", 7, 4);
        let released: Vec<Outbound> = std::iter::from_fn(|| rx.try_recv()).collect();
        assert_eq!(released, vec![out("5"), out("typing")]);
        // A late live copy of a replayed message is dropped; newer ones pass.
        hub.dispatch_room("room:g", &out("4"), OutKind::Message, Some(4));
        hub.dispatch_room("room:g", &out("6"), OutKind::Message, Some(6));
        assert_eq!(
            rx.try_recv().unwrap(),
            out("6"),
            "straight through after the gate"
        );
        // Past the floor the gate is gone: fan-out no longer consults it.
        let mut channels = hub.channels.lock().unwrap();
        let member = channels.get_mut("room:g").unwrap().get_mut(7).unwrap();
        assert!(member.gate.is_none());
    }

    #[tokio::test]
    async fn users_active_counts_distinct_users_with_a_connection() {
        let (hub, _broker) = hub();
        let (a, _) = SessionHandle::detached(4);
        let (b, _) = SessionHandle::detached(4);
        hub.join("user:u1", 1, a.clone()).await;
        hub.join("user:u1", 2, b).await;
        hub.join("room:r", 1, a).await;
        assert_eq!(hub.metrics.users.get(), 1);
        hub.leave("user:u1", 1);
        assert_eq!(hub.metrics.users.get(), 1);
        hub.leave("user:u1", 2);
        assert_eq!(hub.metrics.users.get(), 0);
    }

    #[tokio::test]
    async fn relay_positions_only_move_forward_and_report_the_previous_one() {
        let (hub, _broker) = hub();
        assert_eq!(hub.advance("room:p", 5), None);
        assert_eq!(hub.advance("room:p", 3), Some(5));
        assert_eq!(hub.advance("room:p", 9), Some(5));
        assert_eq!(hub.positions(), vec![("room:p".to_owned(), 9)]);
    }
}
