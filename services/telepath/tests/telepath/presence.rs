//! Presence across real processes: the ghost test (a SIGKILLed gateway's
//! users go offline within two heartbeats, peers told once), multi-device,
//! statuses with text across gateways, typing expiry, two presence replicas,
//! and presence rebuilt after Redis loses everything.

use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{Value, json};
use telepath_shared::testing::WsClient;

use crate::cluster::{Cluster, GRACE_MS, Pair, TYPING_TTL_MS, ada_and_bob, start_cluster};
use crate::helpers::{TestUser, eventually};

fn is_presence(user: &TestUser, status: &'static str) -> impl Fn(&Value) -> bool + use<> {
    let id = user.id.clone();
    move |f: &Value| {
        f["type"] == "presence" && f["user"]["id"] == id.as_str() && f["status"] == status
    }
}

/// Counts the frames matching `pred` that arrive within `within`.
async fn count_within(c: &mut WsClient, within: Duration, pred: impl Fn(&Value) -> bool) -> usize {
    let deadline = Instant::now() + within;
    let mut n = 0;
    while Instant::now() < deadline {
        if c.sees_within(deadline - Instant::now(), &pred).await {
            c.wait_for(&pred).await;
            n += 1;
        }
    }
    n
}

async fn online_list(cluster: &Cluster, viewer: &TestUser) -> Value {
    let url = format!("{}/presence/online", cluster.presence[0].url);
    Client::new()
        .get(url)
        .bearer_auth(&viewer.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_sigkilled_gateways_user_is_offline_within_two_heartbeats_and_peers_are_told_once() {
    let mut cluster = start_cluster(2, 1).await;
    let Pair {
        ada,
        bob,
        a: _a,
        mut b,
        ..
    } = ada_and_bob(&cluster).await;
    eventually(Duration::from_secs(5), "ada online", || async {
        online_list(&cluster, &bob).await["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == ada.id.as_str())
    })
    .await;

    let killed = Instant::now();
    cluster.gateways[0].kill();
    let offline = b.wait_for(is_presence(&ada, "offline")).await;
    let took = killed.elapsed();
    eprintln!(
        "SIGKILL to offline event: {} ms (heartbeat {} ms)",
        took.as_millis(),
        cluster.heartbeat().as_millis()
    );
    assert!(took <= cluster.heartbeat() * 2, "offline after {took:?}");
    assert!(offline["last_seen"].is_string());
    assert_eq!(
        count_within(
            &mut b,
            cluster.heartbeat() * 3,
            is_presence(&ada, "offline")
        )
        .await,
        0,
        "told exactly once"
    );
    let users = online_list(&cluster, &bob).await;
    assert!(
        !users["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == ada.id.as_str()),
        "no ghost: {users}"
    );
}

#[tokio::test]
async fn a_user_with_two_devices_goes_offline_only_after_the_last_closes() {
    let cluster = start_cluster(2, 1).await;
    let Pair {
        ada,
        bob,
        a: a1,
        mut b,
        ..
    } = ada_and_bob(&cluster).await;
    let a2 = WsClient::connect(&cluster.gateways[1].url, &ada.token)
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "two connections", || async {
        online_list(&cluster, &bob).await["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == ada.id.as_str() && u["connections"] == 2)
    })
    .await;
    drop(a1);
    assert!(
        !b.sees_within(
            Duration::from_millis(GRACE_MS * 3),
            is_presence(&ada, "offline")
        )
        .await,
        "still online on the other device"
    );
    drop(a2);
    b.wait_for(is_presence(&ada, "offline")).await;
    assert_eq!(
        count_within(
            &mut b,
            Duration::from_millis(GRACE_MS * 3),
            is_presence(&ada, "offline")
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_quick_reconnect_within_the_grace_announces_nothing() {
    let cluster = start_cluster(2, 1).await;
    let Pair { ada, a, mut b, .. } = ada_and_bob(&cluster).await;
    drop(a);
    let _again = WsClient::connect(&cluster.gateways[1].url, &ada.token)
        .await
        .unwrap();
    let flaps = count_within(&mut b, Duration::from_millis(GRACE_MS * 4), |f| {
        f["type"] == "presence" && f["user"]["id"] == ada.id.as_str()
    })
    .await;
    assert_eq!(flaps, 0);
}

#[tokio::test]
async fn a_status_with_text_reaches_peers_on_other_gateways_and_the_online_list() {
    let cluster = start_cluster(2, 1).await;
    let Pair {
        ada,
        bob,
        mut a,
        mut b,
        ..
    } = ada_and_bob(&cluster).await;
    assert_eq!(
        a.ok(json!({"type": "status", "status": "meditating", "text": "om"}))
            .await["status"],
        "meditating"
    );
    let event = b.wait_for(is_presence(&ada, "meditating")).await;
    assert_eq!(event["text"], "om");
    eventually(
        Duration::from_secs(5),
        "the online list to show the status",
        || async {
            online_list(&cluster, &bob).await["users"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| {
                    u["id"] == ada.id.as_str() && u["status"] == "meditating" && u["text"] == "om"
                })
        },
    )
    .await;
    // Back to automatic.
    a.ok(json!({"type": "status", "status": "online"})).await;
    b.wait_for(is_presence(&ada, "online")).await;
    let bad = a
        .request(json!({"type": "status", "status": "busy", "text": "x".repeat(200)}))
        .await;
    assert_eq!(bad["error"]["code"], "bad_request");
}

#[tokio::test]
async fn typing_reaches_peers_and_expires_by_itself() {
    let cluster = start_cluster(2, 1).await;
    let Pair {
        room, mut a, mut b, ..
    } = ada_and_bob(&cluster).await;
    let typing = |active: bool| {
        move |f: &Value| {
            f["type"] == "typing" && f["user"]["name"] == "ada" && f["active"] == active
        }
    };
    a.send(json!({"type": "typing", "room": room, "active": true}))
        .await;
    b.wait_for(typing(true)).await;
    let started = Instant::now();
    // No refresh, no explicit stop: presence turns it off after the TTL.
    b.wait_for(typing(false)).await;
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(TYPING_TTL_MS * 8 / 10),
        "expired too early: {after:?}"
    );
    assert!(
        after <= Duration::from_millis(TYPING_TTL_MS * 2),
        "expired too late: {after:?}"
    );
    assert_eq!(
        count_within(&mut b, Duration::from_millis(TYPING_TTL_MS), typing(false)).await,
        0,
        "active:false once"
    );
}

#[tokio::test]
async fn two_presence_replicas_sweeping_one_redis_tell_peers_exactly_once() {
    let mut cluster = start_cluster(2, 2).await;
    let Pair {
        ada,
        bob,
        a: _a,
        mut b,
        ..
    } = ada_and_bob(&cluster).await;
    eventually(Duration::from_secs(5), "ada online", || async {
        online_list(&cluster, &bob).await["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == ada.id.as_str())
    })
    .await;
    cluster.gateways[0].kill();
    b.wait_for(is_presence(&ada, "offline")).await;
    assert_eq!(
        count_within(
            &mut b,
            cluster.heartbeat() * 4,
            is_presence(&ada, "offline")
        )
        .await,
        0
    );
}

#[tokio::test]
async fn presence_is_rebuilt_after_redis_restarts_empty() {
    let mut cluster = start_cluster(2, 1).await;
    let Pair {
        bob, a: _a, b: _b, ..
    } = ada_and_bob(&cluster).await;
    eventually(Duration::from_secs(5), "both online", || async {
        online_list(&cluster, &bob).await["users"]
            .as_array()
            .unwrap()
            .len()
            == 2
    })
    .await;
    cluster.redis.restart();
    // The gateways' next heartbeats list every live connection again.
    eventually(cluster.heartbeat() * 10, "presence to rebuild", || async {
        let url = format!("{}/presence/online", cluster.presence[0].url);
        match Client::new().get(url).bearer_auth(&bob.token).send().await {
            Ok(r) if r.status() == 200 => {
                r.json::<Value>().await.unwrap()["users"]
                    .as_array()
                    .unwrap()
                    .len()
                    == 2
            }
            _ => false,
        }
    })
    .await;
}

#[tokio::test]
async fn a_gateway_shutting_down_gracefully_removes_its_connections_at_once() {
    let mut cluster = start_cluster(2, 1).await;
    let Pair {
        ada,
        bob,
        mut a,
        b: _b,
        ..
    } = ada_and_bob(&cluster).await;
    eventually(Duration::from_secs(5), "ada online", || async {
        online_list(&cluster, &bob).await["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == ada.id.as_str())
    })
    .await;
    // SIGTERM: the gateway says bye, closes with 1012 and reports the disconnects before it exits.
    cluster.gateways[0].terminate();
    assert_eq!(a.next_of("bye").await["reason"], "restart");
    assert_eq!(a.closed().await, Some(1012));
    let users = online_list(&cluster, &bob).await;
    let ada_conns = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == ada.id.as_str())
        .map(|u| u["connections"].clone());
    assert!(
        ada_conns.is_none(),
        "ada's connection must be gone at once, not after expiry: {users}"
    );
}
