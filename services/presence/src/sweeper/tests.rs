//! The sweeper's timing, on tokio's paused clock: a running sweeper over the
//! memory store, publishing to an in-memory bus a test node listens on.

use std::sync::Arc;
use std::time::Duration;

use telepath_shared::bus::memory::MemoryBroker;
use telepath_shared::bus::{Bus, Inbound};
use telepath_shared::config::Common;
use telepath_shared::protocol::{PresenceBroadcast, PresenceReport, Status, UserRef};

use super::*;
use crate::clock::Clock;
use crate::config::PresenceConfig;
use crate::store::Timing;
use crate::store::memory::MemoryStore;

const ROOM: &str = "0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6f";

/// A presence state with a running sweeper, and a bus node listening to
/// `presence` and `room:{ROOM}`.
struct Rig {
    state: PresenceState,
    rx: Inbound,
    shutdown: CancellationToken,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn rig(heartbeat_ms: u64, grace_ms: u64, typing_ttl_ms: u64) -> Rig {
    let mut common = Common::for_tests("s");
    common.heartbeat_ms = heartbeat_ms;
    let mut config = PresenceConfig::for_tests();
    (config.grace_ms, config.typing_ttl_ms) = (grace_ms, typing_ttl_ms);
    let store = Arc::new(MemoryStore::new(Timing::from_config(&common, &config)));
    let broker = MemoryBroker::new();
    let (bus, _unused) = broker.connect(16);
    let (listener, rx) = broker.connect(64);
    listener.subscribe("presence").await.unwrap();
    listener.subscribe(&format!("room:{ROOM}")).await.unwrap();
    // The broker keeps the listener's subscriptions while `rx` lives.
    drop(listener);
    let registry = prometheus::Registry::new();
    let state = PresenceState::with_clock(&common, Arc::new(bus), registry, store, Clock::tokio());
    let shutdown = CancellationToken::new();
    crate::spawn_sweeper(&state, shutdown.clone());
    Rig {
        state,
        rx,
        shutdown,
    }
}

fn ada() -> UserRef {
    UserRef {
        id: "u-ada".into(),
        name: "ada".into(),
    }
}

fn connect(conn_id: &str) -> PresenceReport {
    PresenceReport::Connect {
        conn_id: conn_id.into(),
        user: ada(),
        node: "n1".into(),
    }
}

fn disconnect(conn_id: &str) -> PresenceReport {
    PresenceReport::Disconnect {
        conn_id: conn_id.into(),
        user_id: ada().id,
    }
}

fn typing(active: bool) -> PresenceReport {
    PresenceReport::Typing {
        conn_id: "c1".into(),
        user: ada(),
        room: ROOM.into(),
        active,
    }
}

impl Rig {
    /// Applies reports now and publishes their changes, like the route does.
    async fn report(&self, reports: &[PresenceReport]) {
        let result = self.state.store().apply(reports, self.state.now_ms()).await;
        self.state.announce(result, |c| c).unwrap();
    }

    /// The next bus message within `within` (virtual time), as (channel, JSON).
    async fn next(&mut self, within: Duration) -> Option<(String, serde_json::Value)> {
        let msg = tokio::time::timeout(within, self.rx.recv()).await.ok()??;
        Some((msg.channel, serde_json::from_slice(&msg.payload).unwrap()))
    }

    async fn next_presence(&mut self, within: Duration) -> Option<PresenceBroadcast> {
        let (channel, json) = self.next(within).await?;
        assert_eq!(channel, "presence");
        Some(serde_json::from_value(json).unwrap())
    }
}

#[tokio::test(start_paused = true)]
async fn a_user_whose_gateway_died_is_offline_within_two_heartbeats() {
    const HB: u64 = 1_000;
    let mut rig = rig(HB, 3_000, 6_000).await;
    let connected_ms = rig.state.now_ms();
    rig.report(&[connect("c1")]).await;
    let online = rig.next_presence(Duration::from_millis(1)).await.unwrap();
    assert_eq!(online.event.status, Status::Online);
    // The gateway is killed right after its connect: no heartbeat, no disconnect.
    let killed = Instant::now();
    let offline = rig.next_presence(Duration::from_secs(60)).await.unwrap();
    let took = killed.elapsed();
    assert_eq!(offline.event.status, Status::Offline);
    assert!(took > Duration::from_millis(HB * 3 / 2), "{took:?}");
    assert!(took <= Duration::from_millis(2 * HB), "{took:?}");
    assert_eq!(offline.event.last_seen.timestamp_millis(), connected_ms);
    assert_eq!(rig.state.metrics().expired.get(), 1);
    let lag = rig.state.metrics().event_lag.get_sample_sum();
    assert!(
        lag <= 0.25 + 1e-9,
        "offline published {lag}s after it was due"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reconnect_within_the_grace_announces_nothing() {
    let mut rig = rig(15_000, 3_000, 6_000).await;
    rig.report(&[connect("c1")]).await;
    rig.next_presence(Duration::from_millis(1)).await.unwrap();
    rig.report(&[disconnect("c1")]).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    rig.report(&[connect("c2")]).await;
    assert!(rig.next(Duration::from_secs(10)).await.is_none());
    let users = rig.state.store().online(rig.state.now_ms()).await.unwrap();
    assert_eq!((users.len(), users[0].status), (1, Status::Online));
}

#[tokio::test(start_paused = true)]
async fn the_last_disconnect_is_announced_offline_once_the_grace_is_over() {
    const GRACE: u64 = 3_000;
    let mut rig = rig(15_000, GRACE, 6_000).await;
    rig.report(&[connect("c1")]).await;
    rig.next_presence(Duration::from_millis(1)).await.unwrap();
    let closed_ms = rig.state.now_ms();
    let closed = Instant::now();
    rig.report(&[disconnect("c1")]).await;
    let offline = rig.next_presence(Duration::from_secs(60)).await.unwrap();
    let took = closed.elapsed();
    assert_eq!(offline.event.status, Status::Offline);
    assert!(took >= Duration::from_millis(GRACE), "{took:?}");
    assert!(took <= Duration::from_millis(GRACE + 250), "{took:?}");
    assert_eq!(offline.event.last_seen.timestamp_millis(), closed_ms);
    assert!(
        rig.next(Duration::from_secs(60)).await.is_none(),
        "one offline only"
    );
}

#[tokio::test(start_paused = true)]
async fn a_typing_indicator_expires_once_after_the_ttl_from_its_last_refresh() {
    const TTL: u64 = 6_000;
    let mut rig = rig(15_000, 3_000, TTL).await;
    rig.report(&[connect("c1")]).await;
    rig.next_presence(Duration::from_millis(1)).await.unwrap();
    rig.report(&[typing(true)]).await;
    let (channel, started) = rig.next(Duration::from_millis(1)).await.unwrap();
    assert_eq!(channel, format!("room:{ROOM}"));
    assert_eq!(started["active"], true);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let refreshed = Instant::now();
    rig.report(&[typing(true)]).await;
    let (_, stopped) = rig.next(Duration::from_secs(60)).await.unwrap();
    let took = refreshed.elapsed();
    assert_eq!(stopped["type"], "typing");
    assert_eq!(stopped["active"], false);
    assert_eq!(stopped["user"]["name"], "ada");
    assert!(took >= Duration::from_millis(TTL), "{took:?}");
    assert!(took <= Duration::from_millis(TTL + 250), "{took:?}");
    assert!(rig.next(Duration::from_secs(10)).await.is_none());
    assert_eq!(rig.state.metrics().typing_events.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_runs_every_quarter_heartbeat_capped_at_250_ms_and_counts() {
    let fast = rig(400, 3_000, 6_000).await;
    assert_eq!(fast.state.sweep_period(), Duration::from_millis(100));
    let slow = rig(15_000, 3_000, 6_000).await;
    assert_eq!(slow.state.sweep_period(), Duration::from_millis(250));
    slow.report(&[connect("c1"), connect("c2")]).await;
    tokio::time::sleep(Duration::from_millis(1_001)).await;
    let m = slow.state.metrics();
    assert!((4..=6).contains(&m.sweeps.get()), "{}", m.sweeps.get());
    assert_eq!((m.online_users.get(), m.connections.get()), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_stops_on_shutdown() {
    let rig = rig(1_000, 3_000, 6_000).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    rig.shutdown.cancel();
    tokio::task::yield_now().await;
    let sweeps = rig.state.metrics().sweeps.get();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rig.state.metrics().sweeps.get(), sweeps);
}
