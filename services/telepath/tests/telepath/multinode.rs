//! The split deployment as real processes: a redis-server, the api,
//! presence and two gateways. A message crosses gateways through Redis, and
//! each gateway subscribes to a room once, while it has members there.

use std::time::Duration;

use reqwest::Client;
use serde_json::{Value, json};
use telepath_shared::testing::WsClient;

use crate::cluster::start_cluster;
use crate::helpers::{create_room, eventually, login};

#[tokio::test]
async fn a_room_message_sent_on_gateway_a_reaches_a_member_on_gateway_b_through_redis() {
    let cluster = start_cluster(2, 1).await;
    let http = Client::new();
    let ada = login(&http, &cluster.api.url, "ada").await;
    let bob = login(&http, &cluster.api.url, "bob").await;
    let room = create_room(&http, &cluster.api.url, &ada, "across").await;

    let mut a = WsClient::connect(&cluster.gateways[0].url, &ada.token)
        .await
        .unwrap();
    let mut b = WsClient::connect(&cluster.gateways[1].url, &bob.token)
        .await
        .unwrap();
    assert_eq!(a.welcome["node"], "gw0");
    assert_eq!(b.welcome["node"], "gw1");
    a.join(&room).await;
    b.join(&room).await;

    let reply = a
        .ok(json!({"type": "send", "room": room, "body": "through redis"}))
        .await;
    let got = b.next_of("message").await;
    assert_eq!(
        (got["seq"].clone(), got["id"].clone()),
        (reply["seq"].clone(), reply["id"].clone())
    );
    assert_eq!(a.next_of("message").await["seq"], reply["seq"]);
    // And the other way round.
    let reply = b
        .ok(json!({"type": "send", "room": room, "body": "and back"}))
        .await;
    assert_eq!(a.next_of("message").await["id"], reply["id"]);
    assert_eq!(reply["seq"], 2);

    // Presence saw both users through the gateways' reports.
    let online_url = format!("{}/presence/online", cluster.presence[0].url);
    eventually(Duration::from_secs(5), "both users online", || {
        let (http, url, token) = (http.clone(), online_url.clone(), ada.token.clone());
        async move {
            let body: Value = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["users"].as_array().is_some_and(|u| u.len() == 2)
        }
    })
    .await;
}

#[tokio::test]
async fn each_gateway_subscribes_to_a_room_once_while_it_has_members_there() {
    let cluster = start_cluster(2, 1).await;
    let http = Client::new();
    let ada = login(&http, &cluster.api.url, "ada").await;
    let room = create_room(&http, &cluster.api.url, &ada, "counted").await;
    let channel = format!("room:{room}");
    let numsub = |n: i64| {
        let redis = &cluster.redis;
        let channel = channel.clone();
        async move { redis.numsub(&channel) == n }
    };

    // Two connections on gateway 0, one on gateway 1: two subscriptions in Redis.
    let mut a1 = WsClient::connect(&cluster.gateways[0].url, &ada.token)
        .await
        .unwrap();
    let mut a2 = WsClient::connect(&cluster.gateways[0].url, &ada.token)
        .await
        .unwrap();
    let mut b1 = WsClient::connect(&cluster.gateways[1].url, &ada.token)
        .await
        .unwrap();
    a1.join(&room).await;
    assert!(numsub(1).await);
    a2.join(&room).await;
    assert!(numsub(1).await);
    b1.join(&room).await;
    assert!(numsub(2).await);

    // One of two local members leaves: still subscribed. Both gone: unsubscribed.
    drop(a1);
    eventually(
        Duration::from_secs(5),
        "gateway 0 keeps its subscription",
        || numsub(2),
    )
    .await;
    drop(a2);
    eventually(Duration::from_secs(5), "gateway 0 unsubscribes", || {
        numsub(1)
    })
    .await;
    drop(b1);
    eventually(Duration::from_secs(5), "no subscribers left", || numsub(0)).await;
    let patterns = cluster.redis.command(&["PUBSUB", "NUMPAT"]).unwrap();
    assert!(
        patterns.starts_with(":0"),
        "no pattern subscriptions: {patterns}"
    );
}

#[tokio::test]
async fn an_admin_broadcast_and_disconnect_reach_the_users_connections_on_every_gateway() {
    let cluster = start_cluster(2, 1).await;
    let http = Client::new();
    let admin = crate::helpers::login_as(&http, &cluster.api.url, "root", "admin").await;
    let bob = login(&http, &cluster.api.url, "bob").await;
    let mut on_a = WsClient::connect(&cluster.gateways[0].url, &bob.token)
        .await
        .unwrap();
    let mut on_b = WsClient::connect(&cluster.gateways[1].url, &bob.token)
        .await
        .unwrap();
    let online_url = format!("{}/presence/online", cluster.presence[0].url);
    eventually(
        Duration::from_secs(5),
        "presence to see both connections",
        || {
            let (http, url, token) = (http.clone(), online_url.clone(), bob.token.clone());
            async move {
                let body: Value = http
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                body["users"][0]["connections"] == 2
            }
        },
    )
    .await;
    // An admin broadcast reaches both gateways through Redis.
    let sent: Value = http
        .post(format!("{}/messages/broadcast", cluster.api.url))
        .bearer_auth(&admin.token)
        .json(&json!({"body": "everyone, everywhere"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for c in [&mut on_a, &mut on_b] {
        assert_eq!(c.next_of("broadcast").await["id"], sent["id"]);
    }
    // The api reaches presence through TELEPATH_PRESENCE_URL.
    let resp = http
        .post(format!("{}/admin/disconnect", cluster.api.url))
        .bearer_auth(&admin.token)
        .json(&json!({"user_id": bob.id}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"disconnected": 2})
    );
    for c in [&mut on_a, &mut on_b] {
        assert_eq!(c.next_of("bye").await["reason"], "admin");
        assert_eq!(c.closed().await, Some(4003));
    }
}

#[tokio::test]
async fn members_see_joins_and_leaves_and_a_leave_stops_the_room_on_every_connection_of_the_user() {
    let cluster = start_cluster(2, 1).await;
    let http = Client::new();
    let api = &cluster.api.url;
    let ada = login(&http, api, "ada").await;
    let bob = login(&http, api, "bob").await;
    let room = create_room(&http, api, &ada, "doors").await;
    let gw = |i: usize| cluster.gateways[i].url.clone();

    let mut a = WsClient::connect(&gw(0), &ada.token).await.unwrap();
    a.join(&room).await;
    // Bob on two devices, one per gateway.
    let mut b1 = WsClient::connect(&gw(0), &bob.token).await.unwrap();
    let mut b2 = WsClient::connect(&gw(1), &bob.token).await.unwrap();
    b1.join(&room).await;
    let joined = a.next_of("member").await;
    assert_eq!(
        (
            joined["room"].as_str(),
            joined["user"]["name"].as_str(),
            joined["action"].as_str()
        ),
        (Some(room.as_str()), Some("bob"), Some("joined"))
    );
    b2.join(&room).await; // already a participant: no second `member` event
    a.ok(json!({"type": "send", "room": room, "body": "one"}))
        .await;
    assert_eq!(a.next_of("message").await["body"], "one");
    for c in [&mut b1, &mut b2] {
        assert_eq!(c.next_of("message").await["body"], "one");
    }
    assert!(
        !a.sees_within(Duration::from_millis(300), |f| f["type"] == "member")
            .await,
        "a repeated join announces nothing"
    );

    // Bob leaves on device 1: device 2, on the other gateway, stops receiving too.
    b1.ok(json!({"type": "leave", "room": room})).await;
    let left = a.next_of("member").await;
    assert_eq!(
        (left["user"]["name"].as_str(), left["action"].as_str()),
        (Some("bob"), Some("left"))
    );
    let told = b2.next_of("member").await;
    assert_eq!(
        (told["room"].as_str(), told["action"].as_str()),
        (Some(room.as_str()), Some("left"))
    );
    a.ok(json!({"type": "send", "room": room, "body": "two"}))
        .await;
    assert_eq!(a.next_of("message").await["body"], "two");
    for c in [&mut b1, &mut b2] {
        assert!(
            !c.sees_within(Duration::from_millis(400), |f| f["type"] == "message")
                .await,
            "no connection of a user who left receives the room"
        );
    }
    // Joining again on device 2 brings the room back there (and only there).
    // (`since`: "two" was sent while Bob was out; without it the join would
    // replay from his delivery cursor.)
    b2.ok(json!({"type": "join", "room": room, "since": 2}))
        .await;
    a.ok(json!({"type": "send", "room": room, "body": "three"}))
        .await;
    assert_eq!(b2.next_of("message").await["body"], "three");
    assert!(
        !b1.sees_within(Duration::from_millis(300), |f| f["type"] == "message")
            .await
    );

    // A leave over REST does the same.
    let resp = http
        .delete(format!("{api}/rooms/{room}/leave"))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(b2.next_of("member").await["action"], "left");
    a.ok(json!({"type": "send", "room": room, "body": "four"}))
        .await;
    assert!(
        !b2.sees_within(Duration::from_millis(400), |f| f["type"] == "message")
            .await
    );
}
