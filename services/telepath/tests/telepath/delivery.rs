//! Delivery guarantees across real processes: every acknowledged message
//! reaches every member in seq order, through Redis restarts, gateway
//! deaths, retries and concurrent publishers.

use std::time::Duration;

use reqwest::Client;
use serde_json::{Value, json};
use telepath_shared::testing::WsClient;

use crate::cluster::{Pair, ada_and_bob, start_cluster};
use crate::helpers::{create_room, login};

/// The seqs of the next `n` messages `c` receives, dropping repeats by seq
/// (as clients do).
async fn receive(c: &mut WsClient, n: usize) -> Vec<i64> {
    let mut seqs: Vec<i64> = Vec::with_capacity(n);
    while seqs.len() < n {
        let seq = c.next_of("message").await["seq"].as_i64().unwrap();
        if seqs.last().is_none_or(|last| seq > *last) {
            seqs.push(seq);
        }
    }
    seqs
}

async fn history(http: &Client, api: &str, token: &str, room: &str) -> Vec<i64> {
    let page: Value = http
        .get(format!("{api}/rooms/{room}/messages?limit=500"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn every_acknowledged_message_arrives_in_order_across_a_redis_restart() {
    let mut cluster = start_cluster(2, 1).await;
    let http = Client::new();
    let Pair {
        bob,
        room,
        mut a,
        mut b,
        ..
    } = ada_and_bob(&cluster).await;
    let mut acked = 0;
    for i in 1..=40 {
        if i == 15 {
            // Redis dies and comes back empty while messages keep being sent.
            cluster.redis.restart();
        }
        let reply = a
            .request(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
        if reply["ok"] == true {
            acked += 1;
        }
    }
    assert_eq!(acked, 40, "the api commits and acks without Redis");
    assert_eq!(receive(&mut b, 40).await, (1..=40).collect::<Vec<_>>());
    assert_eq!(
        history(&http, &cluster.api.url, &bob.token, &room).await,
        (1..=40).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn after_a_gateway_is_killed_its_clients_resume_elsewhere_without_loss() {
    let mut cluster = start_cluster(2, 1).await;
    let Pair {
        bob,
        room,
        mut a,
        mut b,
        ..
    } = ada_and_bob(&cluster).await;
    for i in 1..=10 {
        a.ok(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
    }
    let seen = receive(&mut b, 10).await;
    cluster.gateways[1].kill();
    for i in 11..=20 {
        a.ok(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
    }
    // Bob reconnects through the surviving gateway and resumes after the last seq he saw.
    let mut again = WsClient::connect(&cluster.gateways[0].url, &bob.token)
        .await
        .unwrap();
    let since = *seen.last().unwrap();
    let joined = again
        .ok(json!({"type": "join", "room": room, "since": since}))
        .await;
    assert_eq!(
        (joined["seq"].as_i64(), joined["recovered"].as_bool()),
        (Some(20), Some(true))
    );
    assert_eq!(receive(&mut again, 10).await, (11..=20).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_retried_client_id_through_another_gateway_is_stored_and_delivered_once() {
    let cluster = start_cluster(2, 1).await;
    let http = Client::new();
    let ada = login(&http, &cluster.api.url, "ada").await;
    let bob = login(&http, &cluster.api.url, "bob").await;
    let room = create_room(&http, &cluster.api.url, &ada, "r").await;
    let mut a0 = WsClient::connect(&cluster.gateways[0].url, &ada.token)
        .await
        .unwrap();
    let mut a1 = WsClient::connect(&cluster.gateways[1].url, &ada.token)
        .await
        .unwrap();
    let mut b = WsClient::connect(&cluster.gateways[1].url, &bob.token)
        .await
        .unwrap();
    for c in [&mut a0, &mut a1, &mut b] {
        c.join(&room).await;
    }
    let send = json!({"type": "send", "room": room, "body": "once", "client_id": "retry-1"});
    let first = a0.ok(send.clone()).await;
    let retry = a1.ok(send).await;
    assert_eq!(first, retry);
    assert_eq!(receive(&mut b, 1).await, vec![1]);
    assert!(
        !b.sees_within(Duration::from_millis(300), |f| f["type"] == "message")
            .await
    );
    assert_eq!(
        history(&http, &cluster.api.url, &bob.token, &room).await,
        vec![1]
    );
}

#[tokio::test]
async fn four_concurrent_publishers_on_two_gateways_are_delivered_in_history_order() {
    let cluster = start_cluster(2, 1).await;
    let http = Client::new();
    let owner = login(&http, &cluster.api.url, "owner").await;
    let room = create_room(&http, &cluster.api.url, &owner, "busy").await;
    // Watchers read while the publishers run (they must answer the gateways' pings).
    let mut watchers = Vec::new();
    for g in 0..2 {
        let mut w = WsClient::connect(&cluster.gateways[g].url, &owner.token)
            .await
            .unwrap();
        w.join(&room).await;
        watchers.push(tokio::spawn(async move { receive(&mut w, 100).await }));
    }
    let mut publishers = Vec::new();
    for p in 0..4 {
        let user = login(&http, &cluster.api.url, &format!("pub{p}")).await;
        let mut c = WsClient::connect(&cluster.gateways[p % 2].url, &user.token)
            .await
            .unwrap();
        c.join(&room).await;
        let room = room.clone();
        publishers.push(tokio::spawn(async move {
            for i in 0..25 {
                c.ok(json!({"type": "send", "room": room, "body": format!("p{p}-{i}")}))
                    .await;
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    let expected = history(&http, &cluster.api.url, &owner.token, &room).await;
    assert_eq!(expected, (1..=100).collect::<Vec<_>>());
    for w in watchers {
        assert_eq!(w.await.unwrap(), expected);
    }
}
