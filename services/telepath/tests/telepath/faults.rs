//! Delivery under network faults, with real processes: a gateway whose
//! Redis subscription goes deaf (its replies blackholed or stalled, or cut
//! in the middle of one) while messages flow heals by itself, catches up
//! every room it follows (quiet ones too) and becomes ready again.

use std::time::Duration;

use reqwest::Client;
use serde_json::json;
use telepath_shared::testing::WsClient;
use telepath_shared::testing::proxy::{Direction, Fault};

use crate::cluster::{Pair, ada_and_bob, start_cluster_proxied};
use crate::helpers::create_room;

/// The next `n` distinct seqs `c` receives in room `room`, in arrival
/// order (a repeat of the last one is dropped, as clients do).
async fn room_seqs(c: &mut WsClient, room: &str, n: usize) -> Vec<i64> {
    let mut seqs: Vec<i64> = Vec::with_capacity(n);
    while seqs.len() < n {
        let m = c
            .wait_for(|f| f["type"] == "message" && f["room"] == room)
            .await;
        let seq = m["seq"].as_i64().unwrap();
        if !seqs.contains(&seq) {
            seqs.push(seq);
        }
    }
    seqs
}

/// Whether `url`'s `/readyz` answers 200.
async fn ready(http: &Client, url: &str) -> bool {
    http.get(format!("{url}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

/// Waits up to `secs` seconds for `url`'s readiness to be `want`, reading
/// `clients` meanwhile (so they answer pings; what they receive is kept).
async fn until_ready(http: &Client, url: &str, want: bool, secs: u64, clients: [&mut WsClient; 2]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let [a, b] = clients;
    while ready(http, url).await != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} ready={want} not within {secs} s"
        );
        a.sees_within(Duration::from_millis(50), |_| false).await;
        b.sees_within(Duration::from_millis(50), |_| false).await;
    }
}

/// Gateway 1 (bob's) loses its subscription to `fault` while ada sends to a
/// busy room and to a quiet one; once the fault ends, bob has every
/// message of both, in order, and the gateway is ready again.
async fn heals_from(fault: impl FnOnce(&crate::cluster::Cluster)) {
    let cluster = start_cluster_proxied(2, 1).await;
    let http = Client::new();
    let Pair {
        ada,
        room,
        mut a,
        mut b,
        ..
    } = ada_and_bob(&cluster).await;
    // A room that hears nothing before the fault: gateway 1 never relayed
    // a message of it.
    let quiet = create_room(&http, &cluster.api.url, &ada, "quiet").await;
    a.join(&quiet).await;
    b.join(&quiet).await;
    for i in 1..=5 {
        a.ok(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
    }
    assert_eq!(room_seqs(&mut b, &room, 5).await, vec![1, 2, 3, 4, 5]);

    fault(&cluster);
    let gw1 = cluster.gateways[1].url.clone();
    for i in 6..=15 {
        a.ok(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.ok(json!({"type": "send", "room": quiet, "body": "while deaf"}))
        .await;
    until_ready(&http, &gw1, false, 10, [&mut a, &mut b]).await;

    cluster.proxies[1].set(Fault::None);
    for i in 16..=20 {
        a.ok(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until_ready(&http, &gw1, true, 15, [&mut a, &mut b]).await;
    assert_eq!(
        room_seqs(&mut b, &room, 15).await,
        (6..=20).collect::<Vec<_>>(),
        "every message of the busy room, in order"
    );
    assert_eq!(
        room_seqs(&mut b, &quiet, 1).await,
        vec![1],
        "the quiet room's message too, with nothing after it"
    );
    // And the subscription delivers live again.
    a.ok(json!({"type": "send", "room": quiet, "body": "after"}))
        .await;
    assert_eq!(room_seqs(&mut b, &quiet, 1).await, vec![2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_redis_replies_are_blackholed_heals_and_catches_up() {
    heals_from(|c| c.proxies[1].set(Fault::Drop(Direction::ToClient))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_redis_replies_stall_heals_and_catches_up() {
    heals_from(|c| c.proxies[1].set(Fault::Stall(Direction::ToClient))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_redis_requests_are_blackholed_heals_and_catches_up() {
    heals_from(|c| c.proxies[1].set(Fault::Drop(Direction::ToUpstream))).await;
}
