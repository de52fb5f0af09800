//! Presence events announced while Redis is stalled or out of reach are not
//! lost: the report is answered at once, and the event reaches the bus once
//! Redis is back. Presence runs on the memory store with a Redis bus (real
//! redis-server processes); the watching node is connected straight to Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use telepath_shared::bus::redis::RedisBus;
use telepath_shared::protocol::Status;
use telepath_shared::testing::RedisServer;
use telepath_shared::testing::proxy::{Direction, Fault, Proxy};

use crate::helpers::{TestPresence, config, conn, eventually, spawn_presence_on, user};

/// A presence publishing on Redis at `bus_url`, and listening on `redis` itself.
async fn spawn_on_redis(bus_url: &str, redis: &RedisServer) -> TestPresence {
    let (bus, _inbound) = RedisBus::connect(bus_url, 16).await.unwrap();
    let (listener, events) = RedisBus::connect(&redis.url(), 256).await.unwrap();
    spawn_presence_on(
        config(15_000, None),
        Arc::new(bus),
        Box::new(listener),
        events,
    )
    .await
}

impl TestPresence {
    /// Reports that a new connection of a new user `name` opened, which
    /// must be answered within a second; returns the user's id.
    async fn connect_promptly(&self, name: &str) -> String {
        let someone = user(name);
        let started = Instant::now();
        self.connect(&conn(&format!("{name}-1"), &someone)).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "answered after {took:?}");
        someone.id
    }

    /// The next presence event about `user_id`, which must announce them
    /// online. Events about others are repeats of earlier ones (an attempt
    /// that got through before its connection broke is published again).
    async fn online_event(&self, user_id: &str) {
        loop {
            let event = self.presence_event().await.event;
            if event.user.id == user_id {
                assert_eq!(event.status, Status::Online);
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_announced_while_redis_is_stalled_arrives_after_it_resumes() {
    let redis = RedisServer::start();
    let presence = spawn_on_redis(&redis.url(), &redis).await;
    let ada = presence.connect_promptly("ada").await;
    presence.online_event(&ada).await;

    // Redis answers nothing until after the report was answered.
    redis.pause();
    let bob = presence.connect_promptly("bob").await;
    redis.resume();

    presence.online_event(&bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_announced_while_redis_is_out_of_reach_arrives_once_it_is_back() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(([127, 0, 0, 1], redis.port()).into()).await;
    let presence = spawn_on_redis(&format!("redis://{}", proxy.addr()), &redis).await;
    let ada = presence.connect_promptly("ada").await;
    presence.online_event(&ada).await;

    // Presence's connection to Redis breaks (a restart's broken pipe), and
    // new ones go unanswered, for longer than a publish attempt.
    proxy.set(Fault::Drop(Direction::ToUpstream));
    proxy.cut();
    let bob = presence.connect_promptly("bob").await;
    let failures = r#"telepath_presence_publish_failures_total{outbox="events"}"#;
    eventually("a retry that failed", || async {
        let page = presence.metrics().await;
        telepath_shared::testing::metric(&page, failures).is_some_and(|n| n >= 2.0)
    })
    .await;
    proxy.set(Fault::None);

    presence.online_event(&bob).await;
}
