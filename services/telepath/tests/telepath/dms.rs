//! Direct messages: live to every device, the offline queue, acks, the
//! bound and the expiry.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use telepath_shared::testing::WsClient;

use crate::helpers::{TestNode, TestUser, login, spawn_node};

async fn get(node: &TestNode, user: &TestUser, path: &str) -> reqwest::Response {
    node.http
        .get(format!("{}{path}", node.url))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dm_reaches_every_device_of_the_recipient_and_the_senders_other_devices() {
    let node = spawn_node(|_| {}).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let bob = login(&node.http, &node.url, "bob").await;
    let mut a1 = WsClient::connect(&node.url, &ada.token).await.unwrap();
    let mut a2 = WsClient::connect(&node.url, &ada.token).await.unwrap();
    let mut b1 = WsClient::connect(&node.url, &bob.token).await.unwrap();
    let mut b2 = WsClient::connect(&node.url, &bob.token).await.unwrap();
    let sent = a1
        .ok(json!({"type": "dm", "to": "bob", "body": "psst"}))
        .await;
    assert_eq!(sent["delivered"], true);
    for c in [&mut b1, &mut b2, &mut a2] {
        let dm = c.next_of("dm").await;
        assert_eq!(
            (
                dm["id"].clone(),
                dm["body"].as_str(),
                dm["from"]["name"].as_str(),
                dm["to"].as_str()
            ),
            (
                sent["id"].clone(),
                Some("psst"),
                Some("ada"),
                Some(bob.id.as_str())
            )
        );
    }
    // By id too; unknown recipients are not found.
    assert_eq!(
        a1.ok(json!({"type": "dm", "to": bob.id, "body": "again"}))
            .await["delivered"],
        true
    );
    assert_eq!(
        a1.request(json!({"type": "dm", "to": "nobody", "body": "?"}))
            .await["error"]["code"],
        "not_found"
    );
}

#[tokio::test]
async fn dms_to_an_offline_user_wait_in_the_queue_until_acked() {
    let node = spawn_node(|_| {}).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let bob = login(&node.http, &node.url, "bob").await;
    let mut a = WsClient::connect(&node.url, &ada.token).await.unwrap();
    let first = a
        .ok(json!({"type": "dm", "to": "bob", "body": "one"}))
        .await;
    let second = a
        .ok(json!({"type": "dm", "to": "bob", "body": "two"}))
        .await;
    assert_eq!(first["delivered"], false);
    let state: Value = get(
        &node,
        &ada,
        &format!("/dms/{}", first["id"].as_str().unwrap()),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        (state["queued"].as_bool(), state["delivered"].as_bool()),
        (Some(true), Some(false))
    );

    // Bob connects: both arrive, oldest first.
    let mut b = WsClient::connect(&node.url, &bob.token).await.unwrap();
    assert_eq!(b.next_of("dm").await["id"], first["id"]);
    assert_eq!(b.next_of("dm").await["id"], second["id"]);
    // He acks the first only; the second comes again on his next connect.
    b.send(json!({"type": "ack", "dm": first["id"]})).await;
    let acked =
        crate::helpers::eventually(Duration::from_secs(5), "the ack to be written", || async {
            let s: Value = get(
                &node,
                &bob,
                &format!("/dms/{}", first["id"].as_str().unwrap()),
            )
            .await
            .json()
            .await
            .unwrap();
            s["delivered"] == true && s["queued"] == false
        });
    acked.await;
    drop(b);
    let mut again = WsClient::connect(&node.url, &bob.token).await.unwrap();
    assert_eq!(again.next_of("dm").await["id"], second["id"]);
    assert!(
        !again
            .sees_within(Duration::from_millis(300), |f| f["type"] == "dm")
            .await
    );
    let pending: Value = get(&node, &bob, "/dms/pending").await.json().await.unwrap();
    assert_eq!(pending["messages"].as_array().unwrap().len(), 1);
    // Only the sender and the recipient see a DM's state.
    let eve = login(&node.http, &node.url, "eve").await;
    assert_eq!(
        get(
            &node,
            &eve,
            &format!("/dms/{}", second["id"].as_str().unwrap())
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_full_offline_queue_refuses_new_dms_and_keeps_the_old_ones() {
    let node = spawn_node(|c| c.api.offline_queue_max = 2).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let bob = login(&node.http, &node.url, "bob").await;
    let mut a = WsClient::connect(&node.url, &ada.token).await.unwrap();
    a.ok(json!({"type": "dm", "to": "bob", "body": "1"})).await;
    a.ok(json!({"type": "dm", "to": "bob", "body": "2"})).await;
    let refused = a
        .request(json!({"type": "dm", "to": "bob", "body": "3"}))
        .await;
    assert_eq!(refused["error"]["code"], "rate_limited");
    let pending: Value = get(&node, &bob, "/dms/pending").await.json().await.unwrap();
    let bodies: Vec<&str> = pending["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, vec!["1", "2"]);
}

#[tokio::test]
async fn a_repeated_dm_client_id_stores_nothing_new_and_expired_dms_leave_the_queue() {
    let node = spawn_node(|c| c.api.offline_ttl = Duration::from_millis(500)).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let bob = login(&node.http, &node.url, "bob").await;
    let mut a = WsClient::connect(&node.url, &ada.token).await.unwrap();
    let dm = json!({"type": "dm", "to": "bob", "body": "once", "client_id": "k"});
    let first = a.ok(dm.clone()).await;
    let again = a.ok(dm).await;
    assert_eq!(first["id"], again["id"]);
    let pending: Value = get(&node, &bob, "/dms/pending").await.json().await.unwrap();
    assert_eq!(pending["messages"].as_array().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let pending: Value = get(&node, &bob, "/dms/pending").await.json().await.unwrap();
    assert_eq!(pending["messages"].as_array().unwrap().len(), 0, "expired");
    let mut b = WsClient::connect(&node.url, &bob.token).await.unwrap();
    assert!(
        !b.sees_within(Duration::from_millis(300), |f| f["type"] == "dm")
            .await
    );
}

#[tokio::test]
async fn bad_acks_get_bad_request() {
    let node = spawn_node(|_| {}).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let mut a = WsClient::connect(&node.url, &ada.token).await.unwrap();
    for bad in [
        json!({"type": "ack"}),
        json!({"type": "ack", "dm": "x"}),
        json!({"type": "ack", "room": "r"}),
        json!({"type": "ack", "room": uuid::Uuid::now_v7().to_string(), "seq": -1}),
    ] {
        assert_eq!(
            a.request(bad.clone()).await["error"]["code"],
            "bad_request",
            "{bad}"
        );
    }
}
