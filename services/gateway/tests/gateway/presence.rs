//! What gateways tell presence: reports as things happen, and heartbeats
//! carrying every connection's whole state, which repair whatever reports
//! never arrived.

use std::time::Duration;

use serde_json::json;
use telepath_shared::testing::{eventually, get_json};

use crate::helpers::{TwoDevices, spawn_stack_without_presence, two_devices_and_a_peer};

#[tokio::test]
async fn reports_lost_while_presence_was_down_are_repaired_by_the_next_heartbeat() {
    let stack = spawn_stack_without_presence(1, |common, _| common.heartbeat_ms = 500).await;
    let ada = stack.login("ada").await;
    let bob = stack.login("bob").await;
    let room = stack.room(&ada).await;
    let mut a = stack.connect(0, &ada).await;
    let mut b = stack.connect(0, &bob).await;
    a.join(&room).await;
    b.join(&room).await;
    // Every report of this goes nowhere: presence is not running.
    a.ok(json!({"type": "status", "status": "meditating", "text": "om"}))
        .await;
    stack.start_presence().await;
    // The next heartbeat carries ada's connection with its room and her
    // chosen status: presence takes it, and tells the room.
    let seen = b
        .wait_for(|f| {
            f["type"] == "presence" && f["user"]["name"] == "ada" && f["status"] == "meditating"
        })
        .await;
    assert_eq!(seen["text"], "om");
    let url = format!("{}/presence/online", stack.presence);
    eventually(
        Duration::from_secs(5),
        "ada meditating in the online list",
        || async {
            let online = get_json(&stack.http, &url, |r| r.bearer_auth(&bob.token)).await;
            online["users"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u["name"] == "ada" && u["status"] == "meditating" && u["text"] == "om")
        },
    )
    .await;
}

#[tokio::test]
async fn a_status_chosen_on_one_gateway_is_repeated_by_the_heartbeats_of_another() {
    let stack = spawn_stack_without_presence(2, |common, _| common.heartbeat_ms = 1000).await;
    stack.start_presence().await;
    let TwoDevices {
        mut phone,
        mut laptop,
        bob: mut b,
        ..
    } = two_devices_and_a_peer(&stack).await;
    phone
        .ok(json!({"type": "status", "status": "busy", "text": "in a meeting"}))
        .await;
    b.wait_for(|f| f["type"] == "presence" && f["status"] == "busy")
        .await;
    // The phone goes away; the laptop's gateway learnt the choice from
    // presence, so its heartbeats keep it: a later, newer choice still wins.
    drop(phone);
    laptop
        .ok(json!({"type": "status", "status": "online"}))
        .await;
    let back = b
        .wait_for(|f| {
            f["type"] == "presence" && f["user"]["name"] == "ada" && f["status"] == "online"
        })
        .await;
    assert!(
        back.get("text").is_none() || back["text"].is_null(),
        "{back}"
    );
    // Heartbeats repeating the older `busy` choice do not bring it back.
    let relapse = b
        .sees_within(Duration::from_millis(2500), |f| {
            f["type"] == "presence" && f["status"] == "busy"
        })
        .await;
    assert!(!relapse, "an older choice came back");
}
