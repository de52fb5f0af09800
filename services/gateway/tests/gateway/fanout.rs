//! Fan-out across gateway nodes and within one node.

use serde_json::json;
use telepath_shared::testing::WsClient;

use crate::helpers::spawn_stack;

#[tokio::test]
async fn a_message_sent_on_gateway_a_reaches_members_on_both_gateways_once_and_in_order() {
    let stack = spawn_stack(2).await;
    let ada = stack.login("ada").await;
    let bob = stack.login("bob").await;
    let room = stack.room(&ada).await;
    let mut a = WsClient::connect(&stack.gateways[0], &ada).await.unwrap();
    let mut b1 = WsClient::connect(&stack.gateways[1], &bob).await.unwrap();
    let mut b2 = WsClient::connect(&stack.gateways[1], &bob).await.unwrap();
    for c in [&mut a, &mut b1, &mut b2] {
        c.join(&room).await;
    }
    for i in 1..=20 {
        a.send(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
    }
    for c in [&mut a, &mut b1, &mut b2] {
        let mut seqs = Vec::new();
        for _ in 0..20 {
            seqs.push(c.next_of("message").await["seq"].as_i64().unwrap());
        }
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
        assert!(
            !c.sees_within(std::time::Duration::from_millis(200), |f| f["type"]
                == "message")
                .await,
            "no duplicates"
        );
    }
}

#[tokio::test]
async fn typing_reaches_room_members_on_other_gateways_and_needs_membership() {
    let stack = spawn_stack(2).await;
    let ada = stack.login("ada").await;
    let bob = stack.login("bob").await;
    let room = stack.room(&ada).await;
    let mut a = WsClient::connect(&stack.gateways[0], &ada).await.unwrap();
    let mut b = WsClient::connect(&stack.gateways[1], &bob).await.unwrap();
    let refused = a
        .request(json!({"type": "typing", "room": room, "active": true}))
        .await;
    assert_eq!(refused["error"]["code"], "forbidden");
    a.join(&room).await;
    b.join(&room).await;
    a.send(json!({"type": "typing", "room": room, "active": true}))
        .await;
    let t = b.next_of("typing").await;
    assert_eq!(
        (t["user"]["name"].as_str(), t["active"].as_bool()),
        (Some("ada"), Some(true))
    );
}

#[tokio::test]
async fn operations_this_version_does_not_support_get_a_clear_error() {
    let stack = spawn_stack(1).await;
    let ada = stack.login("ada").await;
    let mut a = WsClient::connect(&stack.gateways[0], &ada).await.unwrap();
    let reply = a
        .request(json!({"type": "dm", "to": "bob", "body": "hi"}))
        .await;
    assert_eq!(reply["error"]["code"], "bad_request");
}
