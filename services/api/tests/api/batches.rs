//! `POST /internal/messages`: the batches of room messages gateways post.

use std::time::Duration;

use serde_json::{Value, json};
use telepath_shared::protocol::ServerFrame;

use crate::helpers::{TestApi, TestUser, assert_error, assert_refused, spawn_api, spawn_api_with};

impl TestApi {
    /// Posts `sends` as one batch, as a gateway does.
    async fn send_batch(&self, sends: Value) -> reqwest::Response {
        self.post_batch(json!({ "sends": sends })).await
    }
}

/// One send of a batch: `body` from `user` to `room`.
fn send(user: &TestUser, room: &str, body: Value) -> Value {
    let mut send = body;
    send["from"] = json!({"id": user.id, "name": user.name});
    json!({"room": room, "send": send})
}

/// The outcomes of a batch, in order.
async fn outcomes(resp: reqwest::Response) -> Vec<Value> {
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["results"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_batch_commits_its_sends_in_order_and_refuses_the_bad_ones_alone() {
    let api = spawn_api_with(|common, _| common.max_body_bytes = 1000).await;
    let ada = api.login("ada").await;
    let eve = api.login("eve").await;
    let one = api.room_id(&ada, "one").await;
    let two = api.room_id(&ada, "two").await;
    let (_node, mut rx) = api.watch(&format!("room:{one}")).await;
    let unknown = "00000000-0000-4000-8000-000000000000";
    let results = outcomes(
        api.send_batch(json!([
            send(&ada, &one, json!({"body": "a1"})),
            send(&eve, &one, json!({"body": "not a member"})),
            send(&ada, &two, json!({"body": "b1"})),
            send(&ada, "not-a-uuid", json!({"body": "x"})),
            send(&ada, unknown, json!({"body": "x"})),
            // Within the schema's 4096 characters, over this api's byte limit.
            send(&ada, &one, json!({"body": "y".repeat(1001)})),
            send(&ada, &one, json!({"body": "a2", "client_id": "k"})),
            send(&ada, &one, json!({"body": "a2 again", "client_id": "k"})),
            send(&ada, &one, json!({"body": "a3\u{0}with a NUL"})),
        ]))
        .await,
    )
    .await;
    let code = |i: usize| results[i]["error"]["code"].as_str().unwrap_or("-");
    let seq = |i: usize| results[i]["message"]["seq"].as_i64().unwrap_or(-1);
    assert_eq!(results.len(), 9);
    assert_eq!((seq(0), seq(2), seq(6), seq(8)), (1, 1, 2, 3));
    assert_eq!(code(1), "forbidden");
    assert_eq!(code(3), "bad_request");
    assert_eq!(code(4), "not_found");
    assert_eq!(code(5), "too_large");
    // The repeat within the batch answers with the first message.
    assert_eq!(results[7]["message"], results[6]["message"]);
    assert_eq!(results[8]["message"]["body"], "a3\u{0}with a NUL");

    // Room one got a1, a2, a3 in that order, published after the commit.
    let mut published = Vec::new();
    while published.len() < 3 {
        let msg = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .expect("published")
            .unwrap();
        let ServerFrame::Message(m) = serde_json::from_slice(&msg.payload).unwrap() else {
            panic!("not a message")
        };
        published.push((m.seq, m.body));
    }
    assert_eq!(
        published,
        vec![
            (1, "a1".to_owned()),
            (2, "a2".to_owned()),
            (3, "a3\u{0}with a NUL".to_owned())
        ]
    );
    let page: Value = api
        .get(&ada, &format!("/rooms/{one}/messages"))
        .await
        .json()
        .await
        .unwrap();
    let bodies: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["a1", "a2", "a3\u{0}with a NUL"]);
}

#[tokio::test]
async fn every_message_a_batch_commits_is_found_by_search() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let eve = api.login("eve").await;
    let one = api.room_id(&ada, "one").await;
    let two = api.room_id(&ada, "two").await;
    // Two batches over two rooms, each with a refused send among its own:
    // the writer indexes a batch's rows from its first message on, so a
    // message it left out would not be found.
    let words = [
        ["apple", "banana", "cherry", "damson", "elder", "fig"],
        ["grape", "hazel", "iris", "juniper", "kumquat", "lemon"],
    ];
    for batch in words {
        let mut sends: Vec<Value> = batch
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let room = if i % 2 == 0 { &one } else { &two };
                send(&ada, room, json!({"body": format!("{w} pie")}))
            })
            .collect();
        sends.insert(3, send(&eve, &one, json!({"body": "refused mango pie"})));
        let results = outcomes(api.send_batch(json!(sends)).await).await;
        assert_eq!(
            results.iter().filter(|r| r["message"].is_object()).count(),
            batch.len()
        );
    }
    let hits = |q: String| {
        let (api, ada) = (&api, &ada);
        async move {
            let found: Value = api
                .get(ada, &format!("/search?q={q}&limit=50"))
                .await
                .json()
                .await
                .unwrap();
            found["results"].as_array().unwrap().len()
        }
    };
    for w in words.iter().flatten() {
        assert_eq!(hits(w.to_string()).await, 1, "{w}");
    }
    assert_eq!(hits("pie".into()).await, 12);
    assert_eq!(
        hits("mango".into()).await,
        0,
        "a refused send is not indexed"
    );
}

#[tokio::test]
async fn a_batch_needs_the_internal_token_and_stays_within_its_bounds() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let room = api.room_id(&ada, "r").await;
    let resp = api
        .http
        .post(format!("{}/internal/messages", api.internal))
        .json(&json!({"sends": []}))
        .send()
        .await
        .unwrap();
    assert_error(resp, 401, "unauthorized").await;

    assert!(outcomes(api.send_batch(json!([])).await).await.is_empty());
    let too_many: Vec<Value> = (0..1001)
        .map(|i| send(&ada, &room, json!({"body": format!("m{i}")})))
        .collect();
    assert_error(api.send_batch(json!(too_many)).await, 400, "bad_request").await;
    let bad = json!([{"room": room, "send": {"body": "no sender"}}]);
    assert_error(api.send_batch(bad).await, 400, "bad_request").await;
    // What the schema bounds refuses the whole batch, good sends and all.
    let good = send(&ada, &room, json!({"body": "fine"}));
    let mut long_trace = send(&ada, &room, json!({"body": "b"}));
    long_trace["traceparent"] = json!("x".repeat(200));
    let resp = api.send_batch(json!([good, long_trace])).await;
    assert_error(resp, 400, "bad_request").await;
    let long_body = send(&ada, &room, json!({"body": "y".repeat(5000)}));
    let resp = api.send_batch(json!([good, long_body])).await;
    assert_error(resp, 413, "too_large").await;
    let long_kind = send(&ada, &room, json!({"body": "b", "kind": "k".repeat(33)}));
    let resp = api.send_batch(json!([good, long_kind])).await;
    assert_error(resp, 400, "bad_request").await;

    // Nothing of the refused batches was stored.
    let page: Value = api
        .get(&ada, &format!("/rooms/{room}/messages"))
        .await
        .json()
        .await
        .unwrap();
    assert!(page["messages"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_client_id_used_for_a_dm_refuses_that_room_send_alone_and_the_reverse_too() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let _bob = api.login("bob").await;
    let room = api.room_id(&ada, "r").await;
    let dm = |client_id: &str| {
        api.internal_dm(
            &ada,
            json!({"to": "bob", "body": "hi", "client_id": client_id}),
        )
    };
    assert!(dm("k").await["dm"].is_object());
    // The DM's key in a batch: that send is refused, the others commit.
    let results = outcomes(
        api.send_batch(json!([
            send(&ada, &room, json!({"body": "before"})),
            send(&ada, &room, json!({"body": "same key", "client_id": "k"})),
            send(&ada, &room, json!({"body": "after", "client_id": "j"})),
        ]))
        .await,
    )
    .await;
    let seqs: Vec<i64> = results
        .iter()
        .filter_map(|r| r["message"]["seq"].as_i64())
        .collect();
    assert_eq!(seqs, [1, 2]);
    assert_eq!(results[1]["error"]["code"], "conflict");
    // And a room message's key for a DM: conflict, nothing stored.
    assert_refused(dm("j").await, "conflict");
    let (dms,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM messages WHERE recipient_id IS NOT NULL")
            .fetch_one(&api.db().await)
            .await
            .unwrap();
    assert_eq!(dms, 1);
}

#[tokio::test]
async fn a_batch_of_dms_is_committed_together_and_its_bad_ones_are_refused_alone() {
    let api = spawn_api_with(|_, c| c.offline_queue_max = 2).await;
    let ada = api.login("ada").await;
    let bob = api.login("bob").await;
    api.login("cy").await;
    let (_node, mut bob_rx) = api.watch(&format!("user:{}", bob.id)).await;
    let (_node2, mut ada_rx) = api.watch(&format!("user:{}", ada.id)).await;
    let dm = |to: &str, body: &str, client_id: Option<&str>| {
        let mut dm = json!({"from": {"id": ada.id, "name": "ada"}, "to": to, "body": body});
        if let Some(key) = client_id {
            dm["client_id"] = json!(key);
        }
        dm
    };
    let batch = json!({"dms": [
        dm("bob", "one", Some("k1")),
        dm("nobody", "lost", None),
        dm(&bob.id, "two", None),
        dm("bob", "one again", Some("k1")),
        dm("bob", "three: the queue is full", None),
        dm("cy", "hi cy", None),
        dm("cy", "", None),
    ]});
    let resp = api.post_batch(batch.clone()).await;
    // An empty body breaks the schema: the whole batch is refused, nothing stored.
    assert_error(resp, 400, "bad_request").await;

    let mut batch = batch;
    batch["dms"].as_array_mut().unwrap().pop();
    let resp = api.post_batch(batch).await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    let dms = answer["dms"].as_array().unwrap();
    assert_eq!(dms.len(), 6);
    assert!(dms[0]["dm"]["id"].is_string());
    assert_eq!(dms[1]["error"]["code"], "not_found");
    assert!(dms[2]["dm"]["id"].is_string());
    assert_eq!(dms[3], dms[0], "a repeated client_id gets the first DM");
    assert_eq!(
        dms[4]["error"]["code"], "rate_limited",
        "bob's queue holds two"
    );
    assert!(dms[5]["dm"]["id"].is_string());
    // Bob is subscribed here: delivered; cy is not.
    assert_eq!(dms[0]["dm"]["delivered"], true);
    assert_eq!(dms[5]["dm"]["delivered"], false);
    // Published in order to bob, and to ada's other devices.
    for rx in [&mut bob_rx, &mut ada_rx] {
        let mut bodies = Vec::new();
        for _ in 0..2 {
            let got = tokio::time::timeout(Duration::from_secs(2), rx.recv())
                .await
                .unwrap()
                .unwrap();
            let ServerFrame::Dm(d) = serde_json::from_slice(&got.payload).unwrap() else {
                panic!("not a DM")
            };
            bodies.push(d.body);
        }
        assert_eq!(bodies[..2], ["one", "two"]);
    }
    let pending = api.get(&bob, "/dms/pending").await;
    let pending: Value = pending.json().await.unwrap();
    assert_eq!(pending["messages"].as_array().unwrap().len(), 2);
    let stored: (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM messages WHERE recipient_id IS NOT NULL")
            .fetch_one(&api.db().await)
            .await
            .unwrap();
    assert_eq!(stored.0, 3, "one, two and hi cy");
}
