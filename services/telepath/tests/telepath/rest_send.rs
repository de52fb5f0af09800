//! `POST /rooms/{id}/messages`: a user's send over REST behaves as the
//! `send` frame (commit-then-ack, the same refusals, the same idempotency,
//! the same fan-out), on the split deployment with two gateways and on the
//! all-in-one.

use reqwest::Client;
use serde_json::{Value, json};
use telepath_shared::testing::TestUser;
use telepath_shared::testing::WsClient;

use crate::cluster::{start_cluster, start_cluster_with};
use crate::helpers::{create_room, get_json, login};

async fn rest_send(
    http: &Client,
    api: &str,
    user: &TestUser,
    room: &str,
    body: Value,
) -> (u16, Value, Option<String>) {
    let resp = http
        .post(format!("{api}/rooms/{room}/messages"))
        .bearer_auth(&user.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, resp.json().await.unwrap_or(Value::Null), retry)
}

#[tokio::test]
async fn a_rest_send_is_committed_ordered_fanned_out_and_idempotent_like_the_frame() {
    let cluster = start_cluster(2, 1).await;
    let http = Client::new();
    let api = &cluster.api.url;
    let ada = login(&http, api, "ada").await;
    let bob = login(&http, api, "bob").await;
    let room = create_room(&http, api, &ada, "rest").await;
    let mut a = WsClient::connect(&cluster.gateways[0].url, &ada.token)
        .await
        .unwrap();
    let mut b = WsClient::connect(&cluster.gateways[1].url, &bob.token)
        .await
        .unwrap();
    a.join(&room).await;
    b.join(&room).await;

    // A frame, then REST, then a frame: one order, seqs in it.
    let first = a
        .ok(json!({"type": "send", "room": room, "body": "by frame"}))
        .await;
    let (status, sent, _) = rest_send(
        &http,
        api,
        &ada,
        &room,
        json!({"body": "by rest", "client_id": "r-1", "kind": "note"}),
    )
    .await;
    assert_eq!(status, 201, "{sent}");
    assert_eq!(sent["body"], "by rest");
    assert_eq!(sent["kind"], "note");
    assert_eq!(sent["from"]["id"], ada.id);
    assert_eq!(sent["seq"], first["seq"].as_i64().unwrap() + 1);
    // Committed before the answer: history has it.
    let page = get_json(&http, &format!("{api}/rooms/{room}/messages"), |r| {
        r.bearer_auth(&bob.token)
    })
    .await;
    assert!(
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == sent["id"]),
        "{page}"
    );

    // Every member on every gateway gets it as a `message`, the sender's
    // connections too.
    for c in [&mut a, &mut b] {
        let m = c
            .wait_for(|f| f["type"] == "message" && f["body"] == "by rest")
            .await;
        assert_eq!(m["id"], sent["id"]);
        assert_eq!(m["seq"], sent["seq"]);
    }

    // Repeated with its client_id: the same message, nothing new stored
    // or delivered.
    let (status, again, _) = rest_send(
        &http,
        api,
        &ada,
        &room,
        json!({"body": "by rest", "client_id": "r-1", "kind": "note"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(again["id"], sent["id"]);
    assert_eq!(again["seq"], sent["seq"]);
    // A reply over REST, then a frame: the repeat took no seq.
    let (status, reply, _) = rest_send(
        &http,
        api,
        &bob,
        &room,
        json!({"body": "a reply", "reply_to": sent["id"]}),
    )
    .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["seq"], sent["seq"].as_i64().unwrap() + 1);
    assert_eq!(reply["reply_to"], sent["id"]);
    let after = sent["seq"].as_i64().unwrap();
    let r = b
        .wait_for(|f| f["type"] == "message" && f["seq"].as_i64().unwrap() > after)
        .await;
    assert_eq!(r["body"], "a reply", "no second copy of the repeat");
    // The frame's idempotency key and REST's are one: a frame repeating
    // the REST send's client_id gets the stored message.
    let framed = a
        .ok(json!({"type": "send", "room": room, "body": "by rest", "client_id": "r-1"}))
        .await;
    assert_eq!(framed["id"], sent["id"]);
}

#[tokio::test]
async fn a_rest_send_is_refused_as_the_frame_is() {
    let cluster = start_cluster_with(1, 1, &[("TELEPATH_USER_RATE_PER_S", "2".into())]).await;
    let http = Client::new();
    let api = &cluster.api.url;
    let ada = login(&http, api, "ada").await;
    let bob = login(&http, api, "bob").await;
    let cy = login(&http, api, "cy").await;
    let room = create_room(&http, api, &ada, "rules").await;
    let other = create_room(&http, api, &ada, "other").await;
    let mut b = WsClient::connect(&cluster.gateways[0].url, &bob.token)
        .await
        .unwrap();
    b.join(&room).await;
    let elsewhere = b
        .ok(json!({"type": "send", "room": room, "body": "hi"}))
        .await;

    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({}), 400, "no body"),
        (json!({"body": ""}), 400, "empty body"),
        (json!({"body": 5}), 400, "body not a string"),
        (json!({"body": "x", "room": room}), 400, "unknown field"),
        (json!({"body": "x", "kind": ""}), 400, "empty kind"),
        (
            json!({"body": "x", "client_id": "c".repeat(129)}),
            400,
            "long client_id",
        ),
        (json!({"body": "x".repeat(4097)}), 413, "long body"),
        (
            json!({"body": "x", "reply_to": "00000000-0000-0000-0000-000000000000"}),
            404,
            "reply_to of no message",
        ),
    ];
    for (body, status, what) in cases {
        let (got, answer, _) = rest_send(&http, api, &bob, &room, body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert!(answer["error"]["code"].is_string(), "{what}: {answer}");
    }
    // A reply to a message of another room.
    let (got, _, _) = rest_send(
        &http,
        api,
        &ada,
        &other,
        json!({"body": "x", "reply_to": elsewhere["id"]}),
    )
    .await;
    assert_eq!(got, 404);
    // Not a participant: 403, as the frame; not a room id: 400; no room: 404.
    let (got, _, _) = rest_send(&http, api, &cy, &room, json!({"body": "x"})).await;
    assert_eq!(got, 403);
    let (got, _, _) = rest_send(&http, api, &cy, "nope", json!({"body": "x"})).await;
    assert_eq!(got, 400);
    let (got, _, _) = rest_send(
        &http,
        api,
        &cy,
        "00000000-0000-4000-8000-000000000000",
        json!({"body": "x"}),
    )
    .await;
    assert_eq!(got, 404);
    // No token: 401.
    let resp = http
        .post(format!("{api}/rooms/{room}/messages"))
        .json(&json!({"body": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // The user's budget (2/s, burst 4, one token spent above) covers REST
    // too, and the refused are not stored.
    let mut statuses = Vec::new();
    let mut retry = None;
    for i in 0..8 {
        let (got, _, r) = rest_send(
            &http,
            api,
            &ada,
            &room,
            json!({"body": format!("burst {i}")}),
        )
        .await;
        statuses.push(got);
        retry = retry.or(r);
    }
    let accepted = statuses.iter().filter(|s| **s == 201).count();
    assert!((3..8).contains(&accepted), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(retry.is_some_and(|r| r.parse::<u64>().is_ok()));
    let page = get_json(
        &http,
        &format!("{api}/rooms/{room}/messages?limit=100"),
        |r| r.bearer_auth(&ada.token),
    )
    .await;
    let stored = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["body"].as_str().is_some_and(|b| b.starts_with("burst")))
        .count();
    assert_eq!(stored, accepted);
}
