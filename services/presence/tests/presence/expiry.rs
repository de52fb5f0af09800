//! Heartbeats keep connections alive, rebuild presence after Redis loses it,
//! and their absence takes a user offline (no ghost presence).

use std::time::Duration;

use reqwest::StatusCode;
use telepath_shared::testing::RedisServer;

use crate::helpers::{TestPresence, config, conn, eventually, spawn_presence, user};

const HEARTBEAT_MS: u64 = 200;

async fn a_silent_connection_expires_while_a_heartbeating_one_stays(presence: TestPresence) {
    let (ada, bob) = (user("ada"), user("bob"));
    let live = conn("bob-1", &bob);
    presence.connect(&conn("ada-1", &ada)).await;
    presence.connect(&live).await;
    assert_eq!(presence.online(&bob).await.len(), 2);
    // Ada's gateway "dies": only bob's connection keeps heartbeating. The
    // listing hides ada once she is stale; the counter shows the sweeper
    // actually removed her.
    let mut tick = tokio::time::interval(Duration::from_millis(HEARTBEAT_MS / 2));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        tick.tick().await;
        let status = presence.heartbeat(std::slice::from_ref(&live)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        if presence.online(&bob).await == [("bob".to_string(), 1)]
            && expired(&presence.metrics().await) >= 1
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "ada never expired");
    }
}

/// The value of the expired-connections counter in a `/metrics` text.
fn expired(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("telepath_presence_connections_expired_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("expired counter in /metrics")
}

#[tokio::test]
async fn the_sweeper_expires_a_connection_whose_heartbeats_stopped_in_memory() {
    let presence = spawn_presence(config(HEARTBEAT_MS, None)).await;
    a_silent_connection_expires_while_a_heartbeating_one_stays(presence).await;
}

#[tokio::test]
async fn the_sweeper_expires_a_connection_whose_heartbeats_stopped_with_redis() {
    let redis = RedisServer::start();
    let presence = spawn_presence(config(HEARTBEAT_MS, Some(redis.url()))).await;
    a_silent_connection_expires_while_a_heartbeating_one_stays(presence).await;
}

#[tokio::test]
async fn a_heartbeat_re_registers_connections_after_redis_restarts_empty() {
    let mut redis = RedisServer::start();
    let presence = spawn_presence(config(15_000, Some(redis.url()))).await;
    let ada = user("ada");
    let conns = [conn("c1", &ada), conn("c2", &ada)];
    for c in &conns {
        presence.connect(c).await;
    }
    assert_eq!(presence.online(&ada).await, [("ada".into(), 2)]);
    redis.restart();
    eventually("presence answers from the emptied redis", || async {
        presence
            .try_online(&ada)
            .await
            .is_some_and(|o| o.users.is_empty())
    })
    .await;
    // Drop the online event of the first connect.
    let first = presence.presence_event().await;
    assert_eq!(
        first.event.status,
        telepath_shared::protocol::Status::Online
    );
    assert_eq!(presence.heartbeat(&conns).await, StatusCode::NO_CONTENT);
    assert_eq!(presence.online(&ada).await, [("ada".into(), 2)]);
    // Presence lost ada: the rebuild announces her again.
    let again = presence.presence_event().await;
    assert_eq!(again.event.user, ada);
    assert_eq!(
        again.event.status,
        telepath_shared::protocol::Status::Online
    );
}

#[tokio::test]
async fn readiness_fails_with_unavailable_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let presence = spawn_presence(config(15_000, Some(redis.url()))).await;
    redis.stop();
    let resp = presence
        .client
        .get(presence.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
}
