//! Acks and DMs across gateways: an ack the client waits for means the api
//! stored it, and DMs are pipelined like room messages, in order.

use std::time::Duration;

use serde_json::json;
use telepath_shared::testing;

use crate::helpers::spawn_stack;

#[tokio::test]
async fn an_ack_with_a_ref_is_answered_once_stored_so_a_reconnect_elsewhere_brings_no_repeat() {
    let stack = spawn_stack(2).await;
    let ada = stack.login("ada").await;
    let bob = stack.login("bob").await;
    let mut a = stack.connect(0, &ada).await;
    let mut b = stack.connect(0, &bob).await;
    let sent = a
        .ok(json!({"type": "dm", "to": "bob", "body": "psst"}))
        .await;
    let id = sent["id"].as_str().unwrap().to_owned();
    assert_eq!(b.next_of("dm").await["id"], id.as_str());
    b.ok(json!({"type": "ack", "dm": id})).await;
    // The reply means stored: the DM left the offline queue already.
    let state = stack.get(&bob, &format!("/dms/{id}")).await;
    assert_eq!(
        (state["delivered"].as_bool(), state["queued"].as_bool()),
        (Some(true), Some(false)),
        "{state}"
    );
    // So bob's next connection, on another gateway, is not sent it again.
    drop(b);
    let mut again = stack.connect(1, &bob).await;
    let repeat = again
        .sees_within(Duration::from_millis(500), |f| f["type"] == "dm")
        .await;
    assert!(!repeat, "the acked DM came again: {:?}", again.pending());
}

#[tokio::test]
async fn an_ack_without_a_ref_is_written_within_a_moment() {
    let stack = spawn_stack(1).await;
    let ada = stack.login("ada").await;
    let bob = stack.login("bob").await;
    let mut a = stack.connect(0, &ada).await;
    let mut b = stack.connect(0, &bob).await;
    let sent = a
        .ok(json!({"type": "dm", "to": "bob", "body": "later"}))
        .await;
    let id = sent["id"].as_str().unwrap().to_owned();
    b.next_of("dm").await;
    b.send(json!({"type": "ack", "dm": id})).await;
    let path = format!("/dms/{id}");
    testing::eventually(Duration::from_secs(5), "the ack to land", || async {
        stack.get(&bob, &path).await["delivered"] == true
    })
    .await;
}

#[tokio::test]
async fn dms_are_pipelined_through_the_send_pipe_and_keep_their_order() {
    let stack = spawn_stack(2).await;
    let ada = stack.login("ada").await;
    let bob = stack.login("bob").await;
    let mut a = stack.connect(0, &ada).await;
    let mut b = stack.connect(1, &bob).await;
    // Twenty DMs in one go: each is read and queued without waiting for
    // the one before it to be stored; replies and deliveries keep the order.
    for i in 0..20 {
        a.send(json!({"type": "dm", "ref": format!("d{i}"), "to": "bob", "body": format!("m{i}")}))
            .await;
    }
    let mut ids = Vec::new();
    for i in 0..20 {
        let reply = a.wait_for(|f| f["type"] == "reply").await;
        assert_eq!(reply["ref"], format!("d{i}"), "replies in request order");
        assert_eq!(reply["ok"], true, "{reply}");
        ids.push(reply["data"]["id"].as_str().unwrap().to_owned());
    }
    let mut bodies = Vec::new();
    for _ in 0..20 {
        bodies.push(b.next_of("dm").await["body"].as_str().unwrap().to_owned());
    }
    assert_eq!(bodies, (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>());
    // They went through the gateway's send pipe, in batches.
    let metrics = testing::get_text(&stack.http, &format!("{}/metrics", stack.gw(0))).await;
    let items = testing::metric(&metrics, "telepath_gateway_send_batch_messages_sum")
        .expect("the batch histogram");
    assert_eq!(items, 20.0, "every DM went through the pipe");
}

#[tokio::test]
async fn sends_and_dms_in_one_go_are_answered_in_the_order_they_were_asked() {
    let stack = crate::helpers::spawn_stack_with(1, |_, gw| gw.max_rate_per_s = 10_000).await;
    let ada = stack.login("ada").await;
    let _bob = stack.login("bob").await;
    let room = stack.room(&ada).await;
    let mut a = stack.connect(0, &ada).await;
    a.join(&room).await;
    let mut refs = Vec::new();
    for i in 0..30 {
        let reference = format!("q{i}");
        let frame = if i % 3 == 0 {
            json!({"type": "dm", "ref": reference, "to": "bob", "body": format!("d{i}")})
        } else {
            json!({"type": "send", "ref": reference, "room": room, "body": format!("m{i}")})
        };
        a.send(frame).await;
        refs.push(reference);
    }
    let mut answered = Vec::new();
    while answered.len() < refs.len() {
        let reply = a.wait_for(|f| f["type"] == "reply").await;
        assert_eq!(reply["ok"], true, "{reply}");
        answered.push(reply["ref"].as_str().unwrap().to_owned());
    }
    assert_eq!(answered, refs);
}

#[tokio::test]
async fn a_refused_dm_is_answered_in_turn_and_the_next_ones_still_go() {
    let stack = spawn_stack(1).await;
    let ada = stack.login("ada").await;
    let _bob = stack.login("bob").await;
    let mut a = stack.connect(0, &ada).await;
    a.send(json!({"type": "dm", "ref": "1", "to": "bob", "body": "one"}))
        .await;
    a.send(json!({"type": "dm", "ref": "2", "to": "nobody-at-all", "body": "lost"}))
        .await;
    a.send(json!({"type": "dm", "ref": "3", "to": "bob", "body": ""}))
        .await;
    a.send(json!({"type": "dm", "ref": "4", "to": "bob", "body": "four"}))
        .await;
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        let reply = a.wait_for(|f| f["type"] == "reply").await;
        let code = reply["error"]["code"].as_str().unwrap_or("ok").to_owned();
        outcomes.push((reply["ref"].as_str().unwrap().to_owned(), code));
    }
    let expected = [
        ("1", "ok"),
        ("2", "not_found"),
        ("3", "bad_request"),
        ("4", "ok"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(r, c)| (r.to_string(), c.to_string()))
        .collect();
    assert_eq!(outcomes, expected);
}
