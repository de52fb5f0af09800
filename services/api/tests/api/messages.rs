//! Persisting room messages through the internal route, and history pages.

use std::time::Duration;

use serde_json::{Value, json};
use telepath_shared::protocol::ServerFrame;

use crate::helpers::{TestApi, TestUser, assert_error, assert_refused, spawn_api};

#[tokio::test]
async fn a_message_gets_the_next_seq_and_is_published_after_commit() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let room = api.create_room(&ada, json!({"name": "r"})).await;
    let id = room["id"].as_str().unwrap();
    let (_node, mut rx) = api.watch(&format!("room:{id}")).await;
    for expected in 1..=3 {
        let msg = api
            .sent(&ada, id, json!({"body": format!("m{expected}")}))
            .await;
        assert_eq!(msg["seq"], expected);
        let published = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let ServerFrame::Message(m) = serde_json::from_slice(&published.payload).unwrap() else {
            panic!("not a message")
        };
        assert_eq!(
            (m.seq, m.id.as_str()),
            (expected, msg["id"].as_str().unwrap())
        );
    }
}

#[tokio::test]
async fn a_repeated_client_id_returns_the_first_message_and_stores_nothing_new() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let id = api.room_id(&ada, "r").await;
    let first = api
        .sent(&ada, &id, json!({"body": "once", "client_id": "c-1"}))
        .await;
    let again = api
        .sent(&ada, &id, json!({"body": "once", "client_id": "c-1"}))
        .await;
    assert_eq!(first, again);
    let page: Value = api
        .get(&ada, &format!("/rooms/{id}/messages"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn concurrent_sends_with_one_client_id_store_one_message_and_all_get_it() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let id = api.room_id(&ada, "r").await;
    // Sent at once, most of them land in one group commit together.
    let sends = (0..20).map(|i| {
        let body = if i % 2 == 0 {
            json!({"body": "once", "client_id": "same"})
        } else {
            json!({"body": format!("other {i}")})
        };
        api.sent(&ada, &id, body)
    });
    let replies: Vec<Value> = futures_util::future::join_all(sends).await;
    let same: std::collections::BTreeSet<&str> = replies
        .iter()
        .step_by(2)
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(same.len(), 1, "every repeat gets the first message");
    let page: Value = api
        .get(&ada, &format!("/rooms/{id}/messages"))
        .await
        .json()
        .await
        .unwrap();
    let seqs: Vec<i64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=11).collect::<Vec<_>>(),
        "one stored for the 10 repeats"
    );
}

#[tokio::test]
async fn non_members_cannot_send_and_nothing_is_stored() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let bob = api.login("bob").await;
    let id = api.room_id(&ada, "r").await;
    assert_refused(
        api.internal_send(&bob, &id, json!({"body": "hi"})).await,
        "forbidden",
    );
    let page: Value = api
        .get(&ada, &format!("/rooms/{id}/messages"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["messages"].as_array().unwrap().len(), 0);
    let unknown = uuid::Uuid::now_v7().hyphenated().to_string();
    assert_refused(
        api.internal_send(&ada, &unknown, json!({"body": "hi"}))
            .await,
        "not_found",
    );
}

#[tokio::test]
async fn internal_routes_need_the_internal_token() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let id = api.room_id(&ada, "r").await;
    let url = format!("{}/internal/messages", api.internal);
    let send = json!({"from": {"id": ada.id, "name": "ada"}, "body": "x"});
    let body = json!({"sends": [{"room": id, "send": send}]});
    assert_error(
        api.http.post(&url).json(&body).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let resp = api
        .http
        .post(&url)
        .header("x-telepath-internal", "nope")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(resp, 401, "unauthorized").await;
}

#[tokio::test]
async fn concurrent_senders_get_distinct_seqs_without_holes() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let id = api.room_id(&ada, "r").await;
    let sends = (0..100).map(|i| api.sent(&ada, &id, json!({"body": format!("m{i}")})));
    let mut seqs: Vec<i64> = Vec::new();
    for v in futures_util::future::join_all(sends).await {
        seqs.push(v["seq"].as_i64().unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
}

/// The seqs of one history page and its `has_more`.
async fn page(api: &TestApi, user: &TestUser, room: &str, query: &str) -> (Vec<i64>, bool) {
    let v: Value = api
        .get(user, &format!("/rooms/{room}/messages?{query}"))
        .await
        .json()
        .await
        .unwrap();
    let seqs = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    (seqs, v["has_more"].as_bool().unwrap())
}

#[tokio::test]
async fn history_pages_forward_backward_and_between_in_seq_order() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let id = api.room_id(&ada, "r").await;
    for i in 1..=7 {
        assert!(
            api.internal_send(&ada, &id, json!({"body": format!("m{i}")}))
                .await["message"]
                .is_object()
        );
    }
    assert_eq!(
        page(&api, &ada, &id, "limit=3").await,
        (vec![5, 6, 7], true)
    );
    assert_eq!(
        page(&api, &ada, &id, "before=5&limit=3").await,
        (vec![2, 3, 4], true)
    );
    assert_eq!(
        page(&api, &ada, &id, "after=4").await,
        (vec![5, 6, 7], false)
    );
    assert_eq!(
        page(&api, &ada, &id, "after=1&before=6&limit=2").await,
        (vec![2, 3], true)
    );
    assert_eq!(
        page(&api, &ada, &id, "after=1&before=6").await,
        (vec![2, 3, 4, 5], false)
    );
    assert_eq!(
        page(&api, &ada, &id, "limit=10000000").await.0.len(),
        7,
        "clamped, not refused"
    );
    let latest: Value = api
        .get(&ada, &format!("/rooms/{id}/messages?limit=1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(latest["messages"][0]["from"]["name"], "ada");
    for bad in [
        "limit=0",
        "limit=-1",
        "before=abc",
        "after=-5",
        "limit=1e400",
    ] {
        assert_error(
            api.get(&ada, &format!("/rooms/{id}/messages?{bad}")).await,
            400,
            "bad_request",
        )
        .await;
    }
}

#[tokio::test]
async fn acks_move_room_cursors_forward_only_and_only_the_recipient_acks_a_dm() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let bob = api.login("bob").await;
    let room = api.room_id(&ada, "r").await;
    let url = format!("{}/internal/acks", api.internal);
    let post = |body: Value| {
        api.http
            .post(&url)
            .header("x-telepath-internal", &api.internal_token)
            .json(&body)
            .send()
    };
    assert_eq!(
        post(json!({"user_id": ada.id, "cursors": [{"room": room, "seq": 7}]}))
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        post(json!({"user_id": ada.id, "cursors": [{"room": room, "seq": 3}]}))
            .await
            .unwrap()
            .status(),
        204
    );
    let db = api.db().await;
    let (cursor,): (i64,) = sqlx::query_as(
        "SELECT delivered_seq FROM room_participants WHERE room_id = ? AND user_id = ?",
    )
    .bind(&room)
    .bind(&ada.id)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(cursor, 7);
    // A DM from ada to bob: ada's "ack" of it changes nothing; bob's does.
    let dm = api
        .internal_dm(&ada, json!({"to": "bob", "body": "hi"}))
        .await;
    let id = dm["dm"]["id"].as_str().unwrap();
    post(json!({"user_id": ada.id, "dms": [id]})).await.unwrap();
    let queued = || async {
        sqlx::query_as::<_, (i64,)>("SELECT COUNT(*) FROM dm_queue")
            .fetch_one(&db)
            .await
            .unwrap()
            .0
    };
    assert_eq!(queued().await, 1);
    post(json!({"user_id": bob.id, "dms": [id]})).await.unwrap();
    assert_eq!(queued().await, 0);
    assert_error(
        post(json!({"user_id": ada.id, "cursors": [{"room": "nope", "seq": 1}]}))
            .await
            .unwrap(),
        400,
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn the_checkpointer_copies_committed_messages_from_the_wal_into_the_database_file() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let room = api.room_id(&ada, "r").await;
    let file = api.dir.path().join("api.db");
    let before = std::fs::metadata(&file).unwrap().len();
    // About 2 MB of messages in 500 commits, a few thousand WAL pages:
    // below the writer's own checkpoint threshold (10,000 pages), so only
    // the checkpointer moves them out of the WAL.
    let body = "x".repeat(4000);
    for _ in 0..500 {
        api.sent(&ada, &room, json!({"body": body})).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = std::fs::metadata(&file).unwrap().len();
        if now > before + 1_000_000 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the database file stayed at {now} bytes (from {before})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
