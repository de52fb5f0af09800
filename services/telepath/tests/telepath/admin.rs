//! Admin and room-management features through the all-in-one node:
//! broadcast, disconnect, analytics, participants, closing a room.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use telepath_shared::testing::WsClient;

use crate::helpers::{TestNode, TestUser, create_room, eventually, login, login_as, spawn_node};

async fn get(node: &TestNode, user: &TestUser, path: &str) -> reqwest::Response {
    node.http
        .get(format!("{}{path}", node.url))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap()
}

async fn post(node: &TestNode, user: &TestUser, path: &str, body: Value) -> reqwest::Response {
    node.http
        .post(format!("{}{path}", node.url))
        .bearer_auth(&user.token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Waits until presence lists `user` with `n` connections.
async fn wait_online(node: &TestNode, viewer: &TestUser, user: &TestUser, n: u64) {
    eventually(
        Duration::from_secs(5),
        "presence to see the connections",
        || async {
            let body: Value = get(node, viewer, "/presence/online")
                .await
                .json()
                .await
                .unwrap();
            body["users"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u["id"] == user.id.as_str() && u["connections"] == n)
        },
    )
    .await;
}

#[tokio::test]
async fn an_admin_broadcast_reaches_every_connection_and_users_may_not_broadcast() {
    let node = spawn_node(|_| {}).await;
    let admin = login_as(&node.http, &node.url, "root", "admin").await;
    let ada = login(&node.http, &node.url, "ada").await;
    let mut a = WsClient::connect(&node.url, &ada.token).await.unwrap();
    let mut r = WsClient::connect(&node.url, &admin.token).await.unwrap();

    let resp = post(
        &node,
        &admin,
        "/messages/broadcast",
        json!({"body": "the spirits are restless"}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let id = resp.json::<Value>().await.unwrap()["id"].clone();
    for c in [&mut a, &mut r] {
        let b = c.next_of("broadcast").await;
        assert_eq!(
            (
                b["id"].clone(),
                b["body"].as_str(),
                b["from"]["name"].as_str()
            ),
            (id.clone(), Some("the spirits are restless"), Some("root"))
        );
    }
    assert_eq!(
        post(
            &node,
            &ada,
            "/messages/broadcast",
            json!({"body": "me too"})
        )
        .await
        .status(),
        StatusCode::FORBIDDEN
    );

    // The same over WebSocket.
    let refused = a
        .request(json!({"type": "broadcast", "body": "me too"}))
        .await;
    assert_eq!(refused["error"]["code"], "forbidden");
    let sent = r.ok(json!({"type": "broadcast", "body": "over ws"})).await;
    assert_eq!(a.next_of("broadcast").await["id"], sent["id"]);
}

#[tokio::test]
async fn an_admin_disconnect_closes_every_connection_of_the_user_with_bye_admin_and_4003() {
    let node = spawn_node(|_| {}).await;
    let admin = login_as(&node.http, &node.url, "root", "admin").await;
    let bob = login(&node.http, &node.url, "bob").await;
    let ada = login(&node.http, &node.url, "ada").await;
    let mut b1 = WsClient::connect(&node.url, &bob.token).await.unwrap();
    let mut b2 = WsClient::connect(&node.url, &bob.token).await.unwrap();
    let mut a = WsClient::connect(&node.url, &ada.token).await.unwrap();
    wait_online(&node, &admin, &bob, 2).await;

    assert_eq!(
        post(&node, &ada, "/admin/disconnect", json!({"user_id": bob.id}))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let resp = post(
        &node,
        &admin,
        "/admin/disconnect",
        json!({"user_id": bob.id}),
    )
    .await;
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"disconnected": 2})
    );
    for b in [&mut b1, &mut b2] {
        assert_eq!(b.next_of("bye").await["reason"], "admin");
        assert_eq!(b.closed().await, Some(4003));
    }
    assert!(
        a.ok(json!({"type": "ping"})).await["pong"].is_i64(),
        "other users stay connected"
    );
    let bad = post(
        &node,
        &admin,
        "/admin/disconnect",
        json!({"user_id": "bob"}),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn analytics_count_connections_per_node_logged_connects_and_recent_messages() {
    let node = spawn_node(|_| {}).await;
    let admin = login_as(&node.http, &node.url, "root", "admin").await;
    let ada = login(&node.http, &node.url, "ada").await;
    let room = create_room(&node.http, &node.url, &ada, "r").await;
    let mut a = WsClient::connect(&node.url, &ada.token).await.unwrap();
    let node_id = a.welcome["node"].as_str().unwrap().to_owned();
    a.join(&room).await;
    a.ok(json!({"type": "send", "room": room, "body": "one"}))
        .await;
    a.ok(json!({"type": "send", "room": room, "body": "two"}))
        .await;
    drop(WsClient::connect(&node.url, &ada.token).await.unwrap());
    wait_online(&node, &admin, &ada, 1).await;

    assert_eq!(
        get(&node, &ada, "/analytics/connections").await.status(),
        StatusCode::FORBIDDEN
    );
    eventually(
        Duration::from_secs(5),
        "connection logs to arrive",
        || async {
            let stats: Value = get(&node, &admin, "/analytics/connections")
                .await
                .json()
                .await
                .unwrap();
            stats["connects_total"] == 2 && stats["disconnects_total"] == 1
        },
    )
    .await;
    let stats: Value = get(&node, &admin, "/analytics/connections")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["online_users"], 1);
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["by_node"][node_id.as_str()], 1);
    assert_eq!(stats["messages_per_minute"], 2);
    assert_eq!(stats["active_rooms"], 1);
    assert_eq!(stats["rooms_total"], 1);
}

#[tokio::test]
async fn participants_carry_online_flags_and_are_hidden_from_non_members() {
    let node = spawn_node(|_| {}).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let bob = login(&node.http, &node.url, "bob").await;
    let eve = login(&node.http, &node.url, "eve").await;
    let room = create_room(&node.http, &node.url, &ada, "r").await;
    assert_eq!(
        post(&node, &bob, &format!("/rooms/{room}/join"), json!({}))
            .await
            .status(),
        StatusCode::OK
    );
    let _a = WsClient::connect(&node.url, &ada.token).await.unwrap();
    wait_online(&node, &bob, &ada, 1).await;

    let list: Value = get(&node, &bob, &format!("/rooms/{room}/participants"))
        .await
        .json()
        .await
        .unwrap();
    let flags: Vec<(String, String, bool)> = list["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["user"]["name"].as_str().unwrap().to_owned(),
                p["role"].as_str().unwrap().to_owned(),
                p["online"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        flags,
        vec![
            ("ada".into(), "owner".into(), true),
            ("bob".into(), "member".into(), false)
        ]
    );
    assert_eq!(
        get(&node, &eve, &format!("/rooms/{room}/participants"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn closing_a_room_tells_its_members_and_refuses_further_sends_and_joins() {
    let node = spawn_node(|_| {}).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let bob = login(&node.http, &node.url, "bob").await;
    let admin = login_as(&node.http, &node.url, "root", "admin").await;
    let room = create_room(&node.http, &node.url, &ada, "r").await;
    let mut b = WsClient::connect(&node.url, &bob.token).await.unwrap();
    b.join(&room).await;

    let del = |user: &TestUser| {
        node.http
            .delete(format!("{}/rooms/{room}", node.url))
            .bearer_auth(&user.token)
            .send()
    };
    assert_eq!(del(&bob).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(del(&ada).await.unwrap().status(), StatusCode::NO_CONTENT);
    let closed = b.next_of("room_closed").await;
    assert_eq!(
        (closed["room"].as_str(), closed["by"]["name"].as_str()),
        (Some(room.as_str()), Some("ada"))
    );
    let refused = b
        .request(json!({"type": "send", "room": room, "body": "hello?"}))
        .await;
    assert_eq!(refused["error"]["code"], "forbidden");
    let mut c = WsClient::connect(&node.url, &admin.token).await.unwrap();
    assert_eq!(
        c.request(json!({"type": "join", "room": room})).await["error"]["code"],
        "not_found"
    );
    assert_eq!(
        del(&admin).await.unwrap().status(),
        StatusCode::NOT_FOUND,
        "already closed"
    );
    let rooms: Value = get(&node, &ada, "/rooms").await.json().await.unwrap();
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn an_admin_may_close_any_room() {
    let node = spawn_node(|_| {}).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let admin = login_as(&node.http, &node.url, "root", "admin").await;
    let room = create_room(&node.http, &node.url, &ada, "r").await;
    let resp = node
        .http
        .delete(format!("{}/rooms/{room}", node.url))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn an_idle_user_turns_away_and_comes_back_online_on_activity() {
    let node = spawn_node(|c| {
        // Idleness is checked on the heartbeat; the test client answers
        // pings only while it reads, so keep the heartbeat above the waits.
        c.common.heartbeat_ms = 1000;
        c.gateway.away_after_ms = 300;
    })
    .await;
    let ada = login(&node.http, &node.url, "ada").await;
    let bob = login(&node.http, &node.url, "bob").await;
    let room = create_room(&node.http, &node.url, &ada, "r").await;
    let mut a = WsClient::connect(&node.url, &ada.token).await.unwrap();
    let mut b = WsClient::connect(&node.url, &bob.token).await.unwrap();
    a.join(&room).await;
    b.join(&room).await;
    let is = |status: &'static str| {
        move |f: &Value| {
            f["type"] == "presence" && f["user"]["name"] == "ada" && f["status"] == status
        }
    };
    // Ada sends nothing for longer than away_after: bob sees her away.
    b.wait_for(is("away")).await;
    // Any frame from her makes her active again.
    a.ok(json!({"type": "ping"})).await;
    b.wait_for(is("online")).await;
    // A chosen status is not overridden by idleness.
    a.ok(json!({"type": "status", "status": "busy"})).await;
    b.wait_for(is("busy")).await;
    assert!(!b.sees_within(Duration::from_millis(1500), is("away")).await);
}
