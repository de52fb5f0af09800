//! The hub's registry: channels and their subscriptions, the rooms of each
//! connection, gates, heartbeat snapshots and status choices.

use bytes::Bytes;
use telepath_shared::bus::memory::MemoryBroker;
use telepath_shared::protocol::{Status, UserRef};

use super::*;
use crate::handle::queue::Receiver;

fn out(text: &str) -> Outbound {
    Outbound::local(Bytes::from(text.to_owned()))
}

fn hub() -> (Arc<Hub>, MemoryBroker) {
    let broker = MemoryBroker::new();
    let (bus, _rx) = broker.connect(16);
    let metrics = GatewayMetrics::new(&prometheus::Registry::new());
    (Hub::new(Arc::new(bus), metrics, vec![]), broker)
}

/// Connects `conn` of user `user` with a queue of `capacity` frames.
async fn connect(
    hub: &Hub,
    conn: ConnId,
    user: &str,
    capacity: usize,
) -> (SessionHandle, Receiver<Outbound>) {
    let user = UserRef {
        id: user.into(),
        name: user.into(),
    };
    let (handle, rx) = SessionHandle::new(capacity, format!("c{conn}"), user, i64::MAX);
    assert!(hub.connect(conn, handle.clone()).await);
    (handle, rx)
}

/// Joins `room` on `conn` as a session does: gated, confirmed, released after `seq`.
async fn join(hub: &Hub, room: &str, conn: ConnId, seq: i64) {
    assert_eq!(hub.begin_join(room, conn, 100).await, Ok(true));
    assert!(hub.confirm_join(room, conn).is_some());
    hub.ungate(&room_channel(room), conn, seq);
}

fn drain(rx: &mut Receiver<Outbound>) -> Vec<Outbound> {
    std::iter::from_fn(|| rx.try_recv()).collect()
}

#[tokio::test]
async fn a_full_queue_closes_the_slow_consumer_with_1013_and_spares_the_others() {
    let (hub, _broker) = hub();
    let (slow, _slow_rx) = connect(&hub, 1, "u1", 2).await;
    let (fast, mut fast_rx) = connect(&hub, 2, "u2", 16).await;
    join(&hub, "x", 1, 0).await;
    join(&hub, "x", 2, 0).await;
    for _ in 0..3 {
        hub.fan_out("room:x", &out("{}"), OutKind::Message);
    }
    assert_eq!(
        slow.control().reason(),
        Some((CloseCode::TryAgainLater, Some(ByeReason::SlowConsumer)))
    );
    assert_eq!(fast.control().reason(), None);
    assert_eq!(drain(&mut fast_rx).len(), 3);
}

#[tokio::test]
async fn the_bus_subscription_follows_the_first_and_last_local_member() {
    let (hub, broker) = hub();
    let (publisher, _) = broker.connect(16);
    let (_a, mut a_rx) = connect(&hub, 1, "u1", 16).await;
    let (_b, _) = connect(&hub, 2, "u2", 16).await;
    join(&hub, "y", 1, 0).await;
    join(&hub, "y", 2, 0).await;
    hub.leave_room("y", 2);
    assert!(hub.wants("room:y"));
    hub.leave_room("y", 1);
    assert!(!hub.wants("room:y"));
    assert_eq!(hub.fan_out("room:y", &out("{}"), OutKind::Message), 0);
    // The unsubscribe is asynchronous; a publish after it reaches no one here.
    let _ = publisher.publish("room:y", Bytes::from_static(b"{}")).await;
    assert!(a_rx.try_recv().is_none());
}

#[tokio::test]
async fn a_gate_holds_room_frames_and_releases_only_those_above_the_join_seq() {
    let (hub, _broker) = hub();
    let (_member, mut rx) = connect(&hub, 7, "u7", 16).await;
    assert_eq!(hub.begin_join("g", 7, 100).await, Ok(true));
    for seq in [3, 4, 5] {
        let frame = out(&seq.to_string());
        hub.fan_out_room("room:g", &frame, OutKind::Message, Some(seq));
    }
    hub.fan_out_room("room:g", &out("typing"), OutKind::Typing, None);
    assert!(rx.try_recv().is_none(), "held while gated");
    hub.ungate("room:g", 7, 4);
    assert_eq!(drain(&mut rx), vec![out("5"), out("typing")]);
    // A late live copy of a replayed message is dropped; newer ones pass.
    hub.fan_out_room("room:g", &out("4"), OutKind::Message, Some(4));
    hub.fan_out_room("room:g", &out("6"), OutKind::Message, Some(6));
    assert_eq!(
        drain(&mut rx),
        vec![out("6")],
        "straight through after the gate"
    );
    // Past the floor the gate is gone: fan-out no longer consults it.
    let mut registry = hub.registry();
    let member = registry
        .channels
        .get_mut("room:g")
        .unwrap()
        .get_mut(7)
        .unwrap();
    assert!(member.gate.is_none());
}

#[tokio::test]
async fn a_gate_with_a_hole_is_filled_and_released_in_seq_order() {
    let (hub, _broker) = hub();
    let (_member, mut rx) = connect(&hub, 7, "u7", 16).await;
    assert_eq!(hub.begin_join("g", 7, 100).await, Ok(true));
    // The join named seq 2; 3 was lost on the bus, 4 and a typing came.
    hub.fan_out_room("room:g", &out("4"), OutKind::Message, Some(4));
    hub.fan_out_room("room:g", &out("typing"), OutKind::Typing, None);
    hub.fan_out_room("room:g", &out("5"), OutKind::Message, Some(5));
    assert_eq!(hub.gate_gap("room:g", 7, 2), Some((2, 5)));
    assert_eq!(hub.gate_gap("room:g", 7, 3), None, "4 and 5 follow 3");
    hub.fill_gate("room:g", 7, vec![(3, out("3")), (4, out("4 again"))]);
    assert_eq!(hub.gate_gap("room:g", 7, 2), None);
    hub.ungate("room:g", 7, 2);
    assert_eq!(
        drain(&mut rx),
        vec![out("3"), out("4"), out("typing"), out("5")],
        "in seq order, the typing after the message it followed, no repeat"
    );
}

#[tokio::test]
async fn a_rooms_position_starts_at_its_first_join_and_a_later_join_sets_an_expectation() {
    let (hub, _broker) = hub();
    let t0 = std::time::Instant::now();
    assert_eq!(hub.position("room:p"), None);
    hub.anchor("room:p", 5, t0);
    assert_eq!(hub.position("room:p"), Some(5), "the first join sets it");
    hub.anchor("room:p", 3, t0);
    assert_eq!(hub.position("room:p"), Some(5), "never backwards");
    // A join names 8: expected within a second, unless the relay brings it.
    hub.anchor("room:p", 8, t0);
    assert!(hub.overdue(t0).is_empty(), "not due yet");
    let later = t0 + std::time::Duration::from_secs(2);
    assert_eq!(hub.overdue(later), vec![("room:p".to_owned(), 5, 8)]);
    assert!(hub.overdue(later).is_empty(), "taken once");
    // Met by the relay in time: nothing to fetch.
    hub.anchor("room:p", 9, t0);
    assert_eq!(hub.advance("room:p", 9), Some(5));
    assert!(hub.overdue(later).is_empty());
    hub.forget_position("room:p");
    assert_eq!(hub.position("room:p"), None);
}

#[tokio::test]
async fn users_active_counts_distinct_users_with_a_connection() {
    let (hub, _broker) = hub();
    connect(&hub, 1, "u1", 4).await;
    connect(&hub, 2, "u1", 4).await;
    join(&hub, "r", 1, 0).await;
    assert_eq!(hub.metrics.users.get(), 1);
    hub.disconnect(1);
    assert_eq!(hub.metrics.users.get(), 1);
    hub.disconnect(2);
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

#[tokio::test]
async fn a_leave_on_another_device_takes_each_of_the_users_connections_out_of_the_room() {
    let (hub, _broker) = hub();
    let (_a, mut a_rx) = connect(&hub, 1, "ada", 16).await;
    let (_b, mut b_rx) = connect(&hub, 2, "ada", 16).await;
    let (_c, mut c_rx) = connect(&hub, 3, "bob", 16).await;
    for conn in [1, 2, 3] {
        join(&hub, "r", conn, 0).await;
    }
    let left = hub.leave_everywhere("ada", "r");
    assert_eq!(left.len(), 2);
    assert!(left.contains(&"c1".to_owned()) && left.contains(&"c2".to_owned()));
    assert!(!hub.in_room("r", 1) && !hub.in_room("r", 2));
    assert!(hub.in_room("r", 3), "another user stays");
    hub.fan_out_room("room:r", &out("m"), OutKind::Message, Some(1));
    assert!(drain(&mut a_rx).is_empty() && drain(&mut b_rx).is_empty());
    assert_eq!(drain(&mut c_rx), vec![out("m")]);
    // Heartbeats no longer list the room for them either.
    for conn in hub.live("n") {
        let expected: &[&str] = if conn.user.id == "bob" { &["r"] } else { &[] };
        assert_eq!(conn.rooms, expected, "{}", conn.conn_id);
    }
}

#[tokio::test]
async fn a_disconnect_leaves_every_channel_including_a_join_in_progress() {
    let (hub, _broker) = hub();
    connect(&hub, 1, "ada", 16).await;
    join(&hub, "done", 1, 0).await;
    assert_eq!(hub.begin_join("pending", 1, 100).await, Ok(true));
    assert!(hub.wants("room:pending") && !hub.in_room("pending", 1));
    hub.disconnect(1);
    for channel in ["room:done", "room:pending", "user:ada"] {
        assert!(!hub.wants(channel), "{channel} left behind");
    }
    assert_eq!(hub.connections(), 0);
}

#[tokio::test]
async fn joins_are_capped_per_connection_and_a_rejoin_is_not_a_new_room() {
    let (hub, _broker) = hub();
    connect(&hub, 1, "ada", 16).await;
    for room in ["a", "b"] {
        assert_eq!(hub.begin_join(room, 1, 2).await, Ok(true));
        assert_eq!(hub.confirm_join(room, 1), Some(true), "newly in {room}");
    }
    assert_eq!(
        hub.begin_join("c", 1, 2).await,
        Err(JoinRefused::TooManyRooms)
    );
    assert_eq!(hub.begin_join("a", 1, 2).await, Ok(true));
    assert_eq!(hub.confirm_join("a", 1), Some(false), "already in a");
    assert_eq!(hub.begin_join("a", 9, 2).await, Err(JoinRefused::Gone));
}

#[tokio::test]
async fn heartbeats_carry_rooms_idle_flags_and_the_latest_choice_while_the_user_is_here() {
    let (hub, _broker) = hub();
    let (a, _a_rx) = connect(&hub, 1, "ada", 16).await;
    join(&hub, "r", 1, 0).await;
    let choice = |status, at_ms| StatusChoice {
        status,
        text: Some("om".into()),
        at_ms,
    };
    hub.record_choice("ada", choice(Status::Meditating, 20));
    hub.record_choice("ada", choice(Status::Busy, 10));
    hub.record_choice("nobody-here", choice(Status::Busy, 30));
    assert!(a.control().become_idle());
    let live = hub.live("n1");
    assert_eq!(live.len(), 1);
    let conn = &live[0];
    assert_eq!((conn.conn_id.as_str(), conn.node.as_str()), ("c1", "n1"));
    assert_eq!(conn.rooms, vec!["r".to_owned()]);
    assert!(conn.idle);
    assert_eq!(
        conn.choice,
        Some(choice(Status::Meditating, 20)),
        "the newer choice wins"
    );
    hub.disconnect(1);
    connect(&hub, 2, "ada", 16).await;
    assert_eq!(
        hub.live("n1")[0].choice,
        None,
        "forgotten with the user's last connection"
    );
}

#[tokio::test]
async fn a_choice_made_here_is_stamped_after_every_choice_known_for_the_user() {
    let (hub, _broker) = hub();
    let (_a, _a_rx) = connect(&hub, 1, "ada", 16).await;
    let first = hub.choose("ada", Status::Busy, None, 1_000);
    assert_eq!(first.at_ms, 1_000, "now, when nothing newer is known");
    // Within the same millisecond: still strictly later, so presence takes it.
    let second = hub.choose("ada", Status::Online, None, 1_000);
    assert_eq!(second.at_ms, 1_001);
    // Another gateway's choice, stamped by a clock ahead of ours.
    hub.record_choice(
        "ada",
        StatusChoice {
            status: Status::Meditating,
            text: None,
            at_ms: 5_000,
        },
    );
    let third = hub.choose("ada", Status::Busy, Some("call".into()), 2_000);
    assert_eq!((third.at_ms, third.text.as_deref()), (5_001, Some("call")));
    assert_eq!(
        hub.live("n1")[0].choice,
        Some(third),
        "and it is the one kept"
    );
    // A user with no connection here is stamped but not remembered.
    let elsewhere = hub.choose("bob", Status::Busy, None, 3_000);
    assert_eq!(elsewhere.at_ms, 3_000);
    assert_eq!(hub.choose("bob", Status::Busy, None, 3_000).at_ms, 3_000);
}

#[tokio::test]
async fn a_leave_heard_during_a_join_does_not_undo_that_join() {
    let (hub, _broker) = hub();
    let (_a, mut a_rx) = connect(&hub, 1, "ada", 16).await;
    let (_b, _) = connect(&hub, 2, "ada", 16).await;
    join(&hub, "r", 2, 0).await;
    // Connection 1 left and joins again; the leave's event arrives while the
    // join waits for the api.
    assert_eq!(hub.begin_join("r", 1, 100).await, Ok(true));
    assert_eq!(hub.leave_everywhere("ada", "r"), vec!["c2".to_owned()]);
    assert_eq!(hub.confirm_join("r", 1), Some(true), "the join stands");
    hub.ungate("room:r", 1, 0);
    assert!(hub.in_room("r", 1) && !hub.in_room("r", 2));
    hub.fan_out_room("room:r", &out("m"), OutKind::Message, Some(1));
    assert_eq!(drain(&mut a_rx), vec![out("m")]);
    // A join whose connection left the room meanwhile is gone.
    assert_eq!(hub.begin_join("s", 1, 100).await, Ok(true));
    hub.leave_room("s", 1);
    assert_eq!(hub.confirm_join("s", 1), None);
}

/// A bus whose subscribes wait until the test lets them through.
struct HeldBus {
    inner: telepath_shared::bus::memory::MemoryBus,
    gate: Arc<tokio::sync::Semaphore>,
}

#[async_trait::async_trait]
impl Bus for HeldBus {
    async fn publish_counted(
        &self,
        channel: &str,
        payload: Bytes,
    ) -> Result<usize, telepath_shared::bus::BusError> {
        self.inner.publish_counted(channel, payload).await
    }
    async fn publish_many(
        &self,
        messages: &[telepath_shared::bus::Outgoing],
    ) -> Result<Vec<usize>, telepath_shared::bus::BusError> {
        self.inner.publish_many(messages).await
    }
    async fn subscribe(&self, channel: &str) -> Result<(), telepath_shared::bus::BusError> {
        let _pass = self.gate.acquire().await.expect("the gate stays open");
        self.inner.subscribe(channel).await
    }
    async fn unsubscribe(&self, channel: &str) -> Result<(), telepath_shared::bus::BusError> {
        self.inner.unsubscribe(channel).await
    }
    fn is_healthy(&self) -> bool {
        true
    }
    fn dropped(&self) -> u64 {
        0
    }
}

#[tokio::test]
async fn a_users_later_connection_waits_for_the_user_channels_subscription_too() {
    // What the connect marks rely on: once `connect` returns, for any of a
    // user's connections, what is published on the user's channel reaches it.
    let broker = MemoryBroker::new();
    let (inner, _rx) = broker.connect(16);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let bus = HeldBus {
        inner,
        gate: gate.clone(),
    };
    let metrics = GatewayMetrics::new(&prometheus::Registry::new());
    let hub = Hub::new(Arc::new(bus), metrics, vec![]);
    let user = UserRef {
        id: "u1".into(),
        name: "u1".into(),
    };
    let mut connecting = Vec::new();
    for conn in 1..=2 {
        let (handle, _rx) = SessionHandle::new(16, format!("c{conn}"), user.clone(), i64::MAX);
        let hub = hub.clone();
        connecting.push(tokio::spawn(async move { hub.connect(conn, handle).await }));
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        connecting.iter().all(|c| !c.is_finished()),
        "a connect returned before its user's channel was subscribed"
    );
    gate.add_permits(1);
    for c in connecting {
        assert!(c.await.unwrap());
    }
}
