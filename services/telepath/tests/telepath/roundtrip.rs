//! The all-in-one round trip: REST, WebSocket, fan-out, history.

use serde_json::{Value, json};
use telepath_shared::testing::WsClient;

use crate::helpers::{create_room, get_text, login, spawn_node};

#[tokio::test]
async fn two_users_in_one_room_both_receive_a_message_with_the_same_seq_and_it_is_in_history() {
    let node = spawn_node(|_| {}).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let bob = login(&node.http, &node.url, "bob").await;
    let room = create_room(&node.http, &node.url, &ada, "seance").await;

    let mut a = WsClient::connect(&node.url, &ada.token).await.unwrap();
    let mut b = WsClient::connect(&node.url, &bob.token).await.unwrap();
    assert_eq!(a.welcome["user"]["name"], "ada");
    assert!(a.welcome["limits"]["max_frame_bytes"].as_u64().unwrap() > 0);
    assert_eq!(a.join(&room).await["seq"], 0);
    let joined = b.join(&room).await;
    assert_eq!(
        (joined["room"].as_str(), joined["recovered"].as_bool()),
        (Some(room.as_str()), Some(true))
    );

    let reply = a
        .ok(json!({"type": "send", "room": room, "body": "hello from beyond"}))
        .await;
    assert_eq!(reply["seq"], 1);
    let at_a = a.next_of("message").await;
    let at_b = b.next_of("message").await;
    for m in [&at_a, &at_b] {
        assert_eq!(m["seq"], 1);
        assert_eq!(m["id"], reply["id"]);
        assert_eq!(m["body"], "hello from beyond");
        assert_eq!(m["from"]["name"], "ada");
        assert_eq!(m["room"], room.as_str());
    }

    let page: Value = node
        .http
        .get(format!("{}/rooms/{room}/messages", node.url))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["messages"][0]["id"], reply["id"]);
    assert_eq!(page["messages"][0]["seq"], 1);
    assert_eq!(page["has_more"], false);
}

#[tokio::test]
async fn a_repeated_client_id_over_websocket_returns_the_first_reply_and_delivers_once() {
    let node = spawn_node(|_| {}).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let room = create_room(&node.http, &node.url, &ada, "r").await;
    let mut a = WsClient::connect(&node.url, &ada.token).await.unwrap();
    a.join(&room).await;
    let send = json!({"type": "send", "room": room, "body": "once", "client_id": "k1"});
    let first = a.ok(send.clone()).await;
    let second = a.ok(send).await;
    assert_eq!(first, second);
    a.next_of("message").await;
    assert!(
        !a.sees_within(std::time::Duration::from_millis(300), |f| f["type"]
            == "message")
            .await
    );
}

#[tokio::test]
async fn pipelined_sends_are_committed_in_order_and_every_reply_keeps_the_request_order() {
    let node = spawn_node(|c| c.gateway.max_rate_per_s = 10_000).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let room = create_room(&node.http, &node.url, &ada, "r").await;
    let mut a = WsClient::connect(&node.url, &ada.token).await.unwrap();
    a.join(&room).await;
    // 100 requests written back to back (more than a connection may have
    // waiting for the api), with two sends the gateway refuses itself and a
    // ping among them.
    let n = 100;
    for i in 0..n {
        let frame = match i {
            40 => json!({"type": "send", "ref": "40", "room": "not-a-room", "body": "x"}),
            55 => {
                json!({"type": "send", "ref": "55", "room": room, "body": "x", "client_id": "c".repeat(129)})
            }
            70 => json!({"type": "ping", "ref": "70"}),
            _ => {
                json!({"type": "send", "ref": i.to_string(), "room": room, "body": format!("m{i}")})
            }
        };
        a.send(frame).await;
    }
    let mut replies = Vec::new();
    while replies.len() < n {
        replies.push(a.next_of("reply").await);
    }
    let refs: Vec<String> = replies
        .iter()
        .map(|r| r["ref"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    assert_eq!(refs, expected, "replies in request order");
    assert_eq!(replies[40]["error"]["code"], "bad_request");
    assert_eq!(replies[55]["error"]["code"], "bad_request");
    assert!(replies[70]["data"]["pong"].is_i64());
    let seqs: Vec<i64> = replies
        .iter()
        .filter_map(|r| r["data"]["seq"].as_i64())
        .collect();
    assert_eq!(seqs, (1..=97).collect::<Vec<_>>(), "seqs in send order");
    // The messages arrive in the same order.
    for (seq, i) in (1..).zip((0..n).filter(|i| ![40, 55, 70].contains(i))) {
        let m = a.next_of("message").await;
        assert_eq!(
            (m["seq"].as_i64(), m["body"].as_str()),
            (Some(seq), Some(format!("m{i}").as_str()))
        );
    }
    // They went to the api in batches: not one request per send.
    let metrics = get_text(&node.http, &format!("{}/metrics", node.url)).await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in the metrics"))
    };
    let (sent, batches) = (
        value("telepath_gateway_send_batch_messages_sum"),
        value("telepath_gateway_send_batch_messages_count"),
    );
    assert_eq!(sent, 97.0, "the refused sends never reached the api");
    assert!(batches < sent, "{batches} batches for {sent} sends");
}

#[tokio::test]
async fn joining_with_since_replays_the_missed_messages_in_seq_order() {
    let node = spawn_node(|_| {}).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let bob = login(&node.http, &node.url, "bob").await;
    let room = create_room(&node.http, &node.url, &ada, "r").await;
    let mut a = WsClient::connect(&node.url, &ada.token).await.unwrap();
    a.join(&room).await;
    for i in 1..=5 {
        a.ok(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
    }
    let mut b = WsClient::connect(&node.url, &bob.token).await.unwrap();
    let joined = b
        .ok(json!({"type": "join", "room": room, "since": 2}))
        .await;
    assert_eq!(
        (joined["seq"].as_i64(), joined["recovered"].as_bool()),
        (Some(5), Some(true))
    );
    // The reply comes first, then the replayed messages.
    assert!(
        !b.pending().iter().any(|f| f["type"] == "message"),
        "no message before the reply: {:?}",
        b.pending()
    );
    let mut seqs = Vec::new();
    for _ in 0..3 {
        seqs.push(b.next_of("message").await["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, vec![3, 4, 5]);
}

#[tokio::test]
async fn a_gap_larger_than_the_replay_cap_is_not_recovered_and_nothing_partial_arrives() {
    let node = spawn_node(|c| c.gateway.replay_cap = 2).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let room = create_room(&node.http, &node.url, &ada, "r").await;
    let mut a = WsClient::connect(&node.url, &ada.token).await.unwrap();
    a.join(&room).await;
    for i in 1..=4 {
        a.ok(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
    }
    let mut b = WsClient::connect(&node.url, &ada.token).await.unwrap();
    let joined = b
        .ok(json!({"type": "join", "room": room, "since": 1}))
        .await;
    assert_eq!(joined["recovered"], false);
    assert!(
        !b.sees_within(std::time::Duration::from_millis(300), |f| f["type"]
            == "message")
            .await
    );
}

#[tokio::test]
async fn after_leave_the_room_stops_arriving_and_sending_is_refused() {
    let node = spawn_node(|_| {}).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let bob = login(&node.http, &node.url, "bob").await;
    let room = create_room(&node.http, &node.url, &ada, "r").await;
    let mut a = WsClient::connect(&node.url, &ada.token).await.unwrap();
    let mut b = WsClient::connect(&node.url, &bob.token).await.unwrap();
    a.join(&room).await;
    b.join(&room).await;
    assert_eq!(
        b.ok(json!({"type": "leave", "room": room})).await["room"],
        room.as_str()
    );
    a.ok(json!({"type": "send", "room": room, "body": "gone?"}))
        .await;
    assert!(
        !b.sees_within(std::time::Duration::from_millis(300), |f| f["type"]
            == "message")
            .await
    );
    let refused = b
        .request(json!({"type": "send", "room": room, "body": "x"}))
        .await;
    assert_eq!(refused["error"]["code"], "forbidden");
}

#[tokio::test]
async fn health_readiness_and_metrics_cover_every_service() {
    let node = spawn_node(|_| {}).await;
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            node.http
                .get(format!("{}{path}", node.url))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let ada = login(&node.http, &node.url, "ada").await;
    let _c = WsClient::connect(&node.url, &ada.token).await.unwrap();
    let text = get_text(&node.http, &format!("{}/metrics", node.url)).await;
    for metric in [
        "telepath_gateway_connections_active 1",
        "telepath_api_messages_persisted_total",
        "telepath_presence_heartbeats_total",
    ] {
        assert!(text.contains(metric), "{metric} missing from /metrics");
    }
}

#[tokio::test]
async fn a_join_without_since_resumes_from_the_acked_delivery_cursor() {
    let node = spawn_node(|_| {}).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let bob = login(&node.http, &node.url, "bob").await;
    let room = create_room(&node.http, &node.url, &ada, "r").await;
    let mut a = WsClient::connect(&node.url, &ada.token).await.unwrap();
    let mut b = WsClient::connect(&node.url, &bob.token).await.unwrap();
    a.join(&room).await;
    b.join(&room).await;
    for i in 1..=5 {
        a.ok(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
    }
    for _ in 0..5 {
        b.next_of("message").await;
    }
    // Bob acks up to 2 and goes away; a plain join later replays 3..5.
    b.send(json!({"type": "ack", "room": room, "seq": 2})).await;
    drop(b);
    crate::helpers::eventually(
        std::time::Duration::from_secs(5),
        "the cursor to be written and used",
        || async {
            let mut again = WsClient::connect(&node.url, &bob.token).await.unwrap();
            let joined = again.join(&room).await;
            if joined["seq"] != 5
                || !again
                    .sees_within(std::time::Duration::from_millis(300), |f| {
                        f["type"] == "message"
                    })
                    .await
            {
                return false;
            }
            let mut seqs = Vec::new();
            for _ in 0..3 {
                seqs.push(again.next_of("message").await["seq"].as_i64().unwrap());
            }
            seqs == vec![3, 4, 5]
        },
    )
    .await;
}

#[tokio::test]
async fn the_all_in_one_drains_its_gateway_and_stops_on_shutdown() {
    let mut node = spawn_node(|_| {}).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let mut c = WsClient::connect(&node.url, &ada.token).await.unwrap();
    node.shutdown.cancel();
    assert_eq!(c.next_of("bye").await["reason"], "restart");
    assert_eq!(c.closed().await, Some(1012));
    let task = node.task.take().unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), task)
        .await
        .expect("the node stops within its drain")
        .unwrap()
        .unwrap();
}
