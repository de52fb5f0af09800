//! Presence changes reported over HTTP come out once on the bus's `presence`
//! channel, as the gateways and the api read them; with both stores.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use telepath_shared::protocol::{ConnReport, PresenceReport, Status, UserRef};
use telepath_shared::testing::RedisServer;

use crate::helpers::{
    TestPresence, config, conn, connect_report as connect, eventually, now_ms, room,
    spawn_presence, user,
};

fn join(c: &ConnReport, room: &str) -> PresenceReport {
    PresenceReport::Join {
        conn_id: c.conn_id.clone(),
        user: c.user.clone(),
        room: room.into(),
    }
}

fn idle(c: &ConnReport, idle: bool) -> PresenceReport {
    PresenceReport::Idle {
        conn_id: c.conn_id.clone(),
        user_id: c.user.id.clone(),
        idle,
    }
}

fn status(user: &UserRef, status: Status, text: Option<&str>, at_ms: i64) -> PresenceReport {
    PresenceReport::Status {
        user: user.clone(),
        status,
        text: text.map(Into::into),
        at_ms,
    }
}

/// Grace of these tests, ms: short, so offline comes quickly.
const GRACE_MS: u64 = 300;

async fn spawn(redis: Option<&RedisServer>) -> TestPresence {
    let mut config = config(15_000, redis.map(RedisServer::url));
    config.presence.grace_ms = GRACE_MS;
    spawn_presence(config).await
}

async fn a_session_is_announced_online_then_offline_after_the_grace(presence: &TestPresence) {
    let (ada, lobby) = (user("ada"), room());
    let phone = conn("ada-phone", &ada);
    presence
        .reports(vec![connect(&phone), join(&phone, &lobby)])
        .await;
    let online = presence.presence_event().await;
    assert_eq!(
        (online.event.user.clone(), online.event.status),
        (ada.clone(), Status::Online)
    );
    // The connect was announced before the join: no rooms yet.
    assert!(online.rooms.is_empty());
    presence.disconnect(&phone).await;
    let closed = chrono::Utc::now();
    let offline = presence.presence_event().await;
    assert_eq!(offline.event.status, Status::Offline);
    assert_eq!(offline.rooms, [lobby]);
    let off_by = (offline.event.last_seen - closed).num_milliseconds().abs();
    assert!(
        off_by < 1_000,
        "last_seen is the disconnect time, off by {off_by} ms"
    );
    assert!(
        chrono::Utc::now()
            >= offline.event.last_seen + chrono::Duration::milliseconds(GRACE_MS as i64)
    );
    presence
        .assert_quiet(Duration::from_millis(3 * GRACE_MS))
        .await;
}

async fn a_chosen_status_is_published_with_its_text_and_listed(presence: &TestPresence) {
    let (ada, lobby) = (user("ada"), room());
    let laptop = conn("ada-laptop", &ada);
    presence
        .reports(vec![connect(&laptop), join(&laptop, &lobby)])
        .await;
    presence.presence_event().await;
    let chosen_at = now_ms();
    let busy = status(&ada, Status::Busy, Some("in a meeting"), chosen_at);
    presence.reports(vec![busy.clone(), busy]).await;
    let msg = presence.next_event(Duration::from_secs(5)).await.unwrap();
    let payload: Value = serde_json::from_slice(&msg.payload).unwrap();
    let last_seen = payload["event"]["last_seen"].clone();
    assert_eq!(
        payload,
        json!({"rooms": [lobby], "event": {"user": {"id": ada.id, "name": "ada"},
            "status": "busy", "text": "in a meeting", "last_seen": last_seen},
            "choice": {"status": "busy", "text": "in a meeting", "at_ms": chosen_at}})
    );
    // The same choice again is no newer: published once.
    presence.assert_quiet(Duration::from_millis(100)).await;
    let listed = presence.try_online(&ada).await.unwrap().users;
    assert_eq!(
        (listed[0].status, listed[0].text.as_deref()),
        (Status::Busy, Some("in a meeting"))
    );
    presence
        .reports(vec![status(&ada, Status::Online, None, chosen_at + 1)])
        .await;
    let back = presence.presence_event().await;
    assert_eq!((back.event.status, back.event.text), (Status::Online, None));
    let cleared = back.choice.expect("the clearing choice");
    assert_eq!(
        (cleared.status, cleared.at_ms),
        (Status::Online, chosen_at + 1)
    );
}

async fn idle_devices_make_the_user_away_and_activity_online_again(presence: &TestPresence) {
    let ada = user("ada");
    let (phone, laptop) = (conn("ada-1", &ada), conn("ada-2", &ada));
    presence
        .reports(vec![connect(&phone), connect(&laptop)])
        .await;
    assert_eq!(presence.presence_event().await.event.status, Status::Online);
    presence
        .reports(vec![idle(&phone, true), idle(&laptop, true)])
        .await;
    assert_eq!(presence.presence_event().await.event.status, Status::Away);
    presence.reports(vec![idle(&laptop, false)]).await;
    assert_eq!(presence.presence_event().await.event.status, Status::Online);
    presence.assert_quiet(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_session_is_announced_online_then_offline_after_the_grace_in_memory() {
    a_session_is_announced_online_then_offline_after_the_grace(&spawn(None).await).await;
}

#[tokio::test]
async fn a_session_is_announced_online_then_offline_after_the_grace_with_redis() {
    let redis = RedisServer::start();
    a_session_is_announced_online_then_offline_after_the_grace(&spawn(Some(&redis)).await).await;
}

#[tokio::test]
async fn a_chosen_status_is_published_once_with_its_text_in_memory() {
    a_chosen_status_is_published_with_its_text_and_listed(&spawn(None).await).await;
}

#[tokio::test]
async fn a_chosen_status_is_published_once_with_its_text_with_redis() {
    let redis = RedisServer::start();
    a_chosen_status_is_published_with_its_text_and_listed(&spawn(Some(&redis)).await).await;
}

#[tokio::test]
async fn idle_devices_make_the_user_away_and_activity_online_again_in_memory() {
    idle_devices_make_the_user_away_and_activity_online_again(&spawn(None).await).await;
}

#[tokio::test]
async fn idle_devices_make_the_user_away_and_activity_online_again_with_redis() {
    let redis = RedisServer::start();
    idle_devices_make_the_user_away_and_activity_online_again(&spawn(Some(&redis)).await).await;
}

#[tokio::test]
async fn a_quick_reconnect_announces_nothing() {
    let presence = spawn(None).await;
    let ada = user("ada");
    presence.connect(&conn("c1", &ada)).await;
    presence.presence_event().await;
    presence.disconnect(&conn("c1", &ada)).await;
    presence.connect(&conn("c2", &ada)).await;
    presence
        .assert_quiet(Duration::from_millis(3 * GRACE_MS))
        .await;
}

async fn a_killed_gateways_user_is_offline_within_two_heartbeats(redis: Option<&RedisServer>) {
    // Expiry 1.5 s, a sweep every 250 ms: offline by 1.75 s, under the 2 s bound.
    const HB: u64 = 1_000;
    let presence = spawn_presence(config(HB, redis.map(RedisServer::url))).await;
    let ada = user("ada");
    presence.connect(&conn("c1", &ada)).await;
    // The gateway dies right after reporting: no heartbeat, no disconnect.
    let killed = Instant::now();
    presence.presence_event().await;
    let offline = presence.presence_event().await;
    assert_eq!(offline.event.status, Status::Offline);
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_millis(2 * HB),
        "offline after {took:?}"
    );
    // The counters move just after the publish the test saw.
    eventually("the offline event is counted", || async {
        let metrics = presence.metrics().await;
        metrics.contains("telepath_presence_events_total{status=\"offline\"} 1")
            && metrics.contains("telepath_presence_event_lag_seconds_count 2")
    })
    .await;
}

#[tokio::test]
async fn a_killed_gateways_user_is_offline_within_two_heartbeats_in_memory() {
    a_killed_gateways_user_is_offline_within_two_heartbeats(None).await;
}

#[tokio::test]
async fn a_killed_gateways_user_is_offline_within_two_heartbeats_with_redis() {
    let redis = RedisServer::start();
    a_killed_gateways_user_is_offline_within_two_heartbeats(Some(&redis)).await;
}
