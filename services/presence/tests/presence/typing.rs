//! Typing reports come out on the room's bus channel as `typing` frames:
//! once when started, silent on refresh, once when stopped or expired.

use std::time::Duration;

use serde_json::{Value, json};
use telepath_shared::protocol::{ConnReport, PresenceReport};
use telepath_shared::testing::RedisServer;

use crate::helpers::{TestPresence, config, conn, room, spawn_presence, user};

fn typing(c: &ConnReport, room: &str, active: bool) -> PresenceReport {
    PresenceReport::Typing {
        conn_id: c.conn_id.clone(),
        user: c.user.clone(),
        room: room.into(),
        active,
    }
}

/// The next message, which must be a typing frame on `room:{room}`.
async fn typing_frame(presence: &TestPresence, room: &str) -> Value {
    let msg = presence
        .next_event(Duration::from_secs(5))
        .await
        .expect("a typing frame");
    assert_eq!(msg.channel, format!("room:{room}"));
    serde_json::from_slice(&msg.payload).unwrap()
}

/// A presence service with a short typing TTL whose room channel the test
/// listens to, and ada connected (her online event already read).
async fn with_ada_in_a_room(redis: Option<&RedisServer>) -> (TestPresence, ConnReport, String) {
    let mut config = config(15_000, redis.map(RedisServer::url));
    config.presence.typing_ttl_ms = 400;
    let presence = spawn_presence(config).await;
    let lobby = room();
    presence.subscribe(&format!("room:{lobby}")).await;
    let phone = conn("ada-phone", &user("ada"));
    presence.connect(&phone).await;
    presence.presence_event().await;
    (presence, phone, lobby)
}

async fn typing_starts_once_and_stops_once(redis: Option<&RedisServer>) {
    let (presence, phone, lobby) = with_ada_in_a_room(redis).await;
    let started = vec![typing(&phone, &lobby, true), typing(&phone, &lobby, true)];
    presence.reports(started).await;
    assert_eq!(
        typing_frame(&presence, &lobby).await,
        json!({"type": "typing", "room": lobby, "user": {"id": phone.user.id, "name": "ada"}, "active": true})
    );
    let stopped = vec![typing(&phone, &lobby, false), typing(&phone, &lobby, false)];
    presence.reports(stopped).await;
    assert_eq!(typing_frame(&presence, &lobby).await["active"], false);
    presence.assert_quiet(Duration::from_millis(800)).await;
}

async fn typing_nobody_stops_expires_once_after_the_ttl(redis: Option<&RedisServer>) {
    let (presence, phone, lobby) = with_ada_in_a_room(redis).await;
    presence.reports(vec![typing(&phone, &lobby, true)]).await;
    assert_eq!(typing_frame(&presence, &lobby).await["active"], true);
    let expired = typing_frame(&presence, &lobby).await;
    assert_eq!(
        (expired["active"].clone(), expired["user"]["name"].clone()),
        (json!(false), json!("ada"))
    );
    presence.assert_quiet(Duration::from_millis(800)).await;
}

#[tokio::test]
async fn typing_starts_once_and_stops_once_in_memory() {
    typing_starts_once_and_stops_once(None).await;
}

#[tokio::test]
async fn typing_starts_once_and_stops_once_with_redis() {
    let redis = RedisServer::start();
    typing_starts_once_and_stops_once(Some(&redis)).await;
}

#[tokio::test]
async fn typing_nobody_stops_expires_once_after_the_ttl_in_memory() {
    typing_nobody_stops_expires_once_after_the_ttl(None).await;
}

#[tokio::test]
async fn typing_nobody_stops_expires_once_after_the_ttl_with_redis() {
    let redis = RedisServer::start();
    typing_nobody_stops_expires_once_after_the_ttl(Some(&redis)).await;
}

#[tokio::test]
async fn a_typing_connection_that_disconnects_stops_typing() {
    let (presence, phone, lobby) = with_ada_in_a_room(None).await;
    let join = PresenceReport::Join {
        conn_id: phone.conn_id.clone(),
        user: phone.user.clone(),
        room: lobby.clone(),
    };
    presence
        .reports(vec![join, typing(&phone, &lobby, true)])
        .await;
    assert_eq!(typing_frame(&presence, &lobby).await["active"], true);
    presence.disconnect(&phone).await;
    assert_eq!(typing_frame(&presence, &lobby).await["active"], false);
}
