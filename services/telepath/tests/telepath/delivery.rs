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

#[tokio::test]
async fn resume_after_a_hundred_missed_messages_and_a_gap_past_the_cap() {
    // Ada sends 200 messages as fast as they are answered: over the default
    // per-connection rate limit (50/s), which is not what this test is about.
    let cluster = crate::cluster::start_cluster_with(
        2,
        1,
        &[
            ("TELEPATH_REPLAY_CAP", "150".into()),
            ("TELEPATH_MAX_RATE_PER_S", "10000".into()),
        ],
    )
    .await;
    let http = Client::new();
    let Pair {
        bob,
        room,
        mut a,
        b,
        ..
    } = ada_and_bob(&cluster).await;
    drop(b);
    for i in 1..=100 {
        a.ok(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
    }
    // Bob missed all 100: he resumes on the other gateway with since = 0.
    let mut again = WsClient::connect(&cluster.gateways[0].url, &bob.token)
        .await
        .unwrap();
    let joined = again
        .ok(json!({"type": "join", "room": room, "since": 0}))
        .await;
    assert_eq!(
        (joined["seq"].as_i64(), joined["recovered"].as_bool()),
        (Some(100), Some(true))
    );
    assert_eq!(
        receive(&mut again, 100).await,
        (1..=100).collect::<Vec<_>>()
    );
    // Past the cap (150): nothing partial, recovered false; history pages instead.
    for i in 101..=200 {
        a.ok(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
    }
    let mut late = WsClient::connect(&cluster.gateways[1].url, &bob.token)
        .await
        .unwrap();
    let joined = late
        .ok(json!({"type": "join", "room": room, "since": 10}))
        .await;
    assert_eq!(joined["recovered"], false);
    assert!(
        !late
            .sees_within(Duration::from_millis(300), |f| f["type"] == "message")
            .await
    );
    assert_eq!(
        history(&http, &cluster.api.url, &bob.token, &room)
            .await
            .len(),
        200
    );
}

#[tokio::test]
async fn an_offline_dm_is_delivered_once_across_processes_and_not_again_after_ack() {
    let cluster = crate::cluster::start_cluster_with(
        2,
        1,
        &[
            ("TELEPATH_OFFLINE_QUEUE_MAX", "3".into()),
            ("TELEPATH_OFFLINE_TTL", "3s".into()),
        ],
    )
    .await;
    let http = Client::new();
    let ada = login(&http, &cluster.api.url, "ada").await;
    let bob = login(&http, &cluster.api.url, "bob").await;
    let mut a = WsClient::connect(&cluster.gateways[0].url, &ada.token)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 1..=3 {
        let sent = a
            .ok(json!({"type": "dm", "to": "bob", "body": format!("dm{i}")}))
            .await;
        assert_eq!(sent["delivered"], false);
        ids.push(sent["id"].clone());
    }
    // The queue bound: a fourth is refused, the three stay.
    assert_eq!(
        a.request(json!({"type": "dm", "to": "bob", "body": "dm4"}))
            .await["error"]["code"],
        "rate_limited"
    );
    // Bob connects on the other gateway: all three, oldest first, once.
    let mut b = WsClient::connect(&cluster.gateways[1].url, &bob.token)
        .await
        .unwrap();
    for id in &ids {
        let dm = b.next_of("dm").await;
        assert_eq!(&dm["id"], id);
        b.send(json!({"type": "ack", "dm": dm["id"]})).await;
    }
    assert!(
        !b.sees_within(Duration::from_millis(300), |f| f["type"] == "dm")
            .await
    );
    // After the acks are written, a new connection gets nothing again.
    crate::helpers::eventually(Duration::from_secs(5), "the acks to be written", || async {
        let pending: Value = http
            .get(format!("{}/dms/pending", cluster.api.url))
            .bearer_auth(&bob.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pending["messages"].as_array().unwrap().is_empty()
    })
    .await;
    let mut again = WsClient::connect(&cluster.gateways[0].url, &bob.token)
        .await
        .unwrap();
    assert!(
        !again
            .sees_within(Duration::from_millis(300), |f| f["type"] == "dm")
            .await
    );
    // Expiry: a DM nobody acks leaves the queue after the TTL.
    drop(again);
    drop(b);
    a.ok(json!({"type": "dm", "to": "bob", "body": "expiring"}))
        .await;
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let pending: Value = http
        .get(format!("{}/dms/pending", cluster.api.url))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        pending["messages"].as_array().unwrap().is_empty(),
        "expired: {pending}"
    );
}

// The relay can be behind the api: a message the join's replay carried may
// still arrive live afterwards. This test caught that as a repeated seq.
#[tokio::test]
async fn a_join_with_since_while_messages_are_committed_sees_every_seq_once_in_order() {
    let cluster = start_cluster(2, 1).await;
    let http = Client::new();
    let Pair {
        ada,
        bob,
        room,
        mut a,
        b,
        ..
    } = ada_and_bob(&cluster).await;
    drop(b);
    for i in 1..=20 {
        a.ok(json!({"type": "send", "room": room, "body": format!("before {i}")}))
            .await;
    }
    // Messages keep being committed through the api (as another gateway
    // would send them) while bob joins with since.
    let internal = telepath_shared::auth::derive_internal_token(crate::helpers::SECRET);
    let (api, room2, http2, from) = (
        cluster.api.internal_url.clone(),
        room.clone(),
        http.clone(),
        ada.clone(),
    );
    let writer = tokio::spawn(async move {
        for i in 0..60 {
            let send = json!({"body": format!("during {i}")});
            let outcome = telepath_shared::testing::internal_send(
                &http2, &api, &internal, &from, &room2, send,
            )
            .await;
            assert!(outcome["message"].is_object(), "{outcome}");
        }
    });
    let mut again = WsClient::connect(&cluster.gateways[0].url, &bob.token)
        .await
        .unwrap();
    let joined = again
        .ok(json!({"type": "join", "room": room, "since": 5}))
        .await;
    assert!(joined["seq"].as_i64().unwrap() >= 20);
    writer.await.unwrap();
    let mut seqs = Vec::new();
    for _ in 0..75 {
        seqs.push(again.next_of("message").await["seq"].as_i64().unwrap());
    }
    assert_eq!(
        seqs,
        (6..=80).collect::<Vec<_>>(),
        "no hole, no repeat, in order"
    );
    assert!(
        !again
            .sees_within(Duration::from_millis(300), |f| f["type"] == "message")
            .await
    );
}
