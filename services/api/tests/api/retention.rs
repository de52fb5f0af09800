//! Retention: messages past their room's retention (or
//! `TELEPATH_RETENTION_DAYS`) are deleted as a prefix of the room's log,
//! in small batches, with simulated time (rows' `created_at` moved back,
//! the cleanup run "at" a later time): the database stays flat over ten
//! days of steady load, and a cleanup running while sends flow loses none of
//! the acknowledged messages inside the window.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::helpers::{TestApi, TestUser, spawn_api_with};

/// Sends `n` messages to `room` as `user` in batches of 100 (as a gateway
/// does); returns their ids in order.
async fn send_many(api: &TestApi, user: &TestUser, room: &str, n: usize, tag: &str) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    let from = json!({"id": user.id, "name": user.name});
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let sends: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"room": room, "send": {"from": from, "body": format!("{tag} message {i} with some words to index")}}))
            .collect();
        let resp = api.post_batch(json!({"sends": sends})).await;
        assert_eq!(resp.status(), 200);
        let answer: Value = resp.json().await.unwrap();
        for r in answer["results"].as_array().unwrap() {
            ids.push(r["message"]["id"].as_str().expect("committed").to_owned());
        }
    }
    ids
}

/// Moves the room's messages with a seq above `after` to `at`.
async fn backdate(db: &sqlx::SqlitePool, room: &str, after: i64, at: DateTime<Utc>) {
    sqlx::query("UPDATE messages SET created_at = ? WHERE room_id = ? AND seq > ?")
        .bind(at)
        .bind(room)
        .bind(after)
        .execute(db)
        .await
        .unwrap();
}

async fn scalar(db: &sqlx::SqlitePool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
}

async fn room_seqs(api: &TestApi, user: &TestUser, room: &str) -> Vec<i64> {
    let mut seqs = Vec::new();
    loop {
        let after = seqs.last().copied().unwrap_or(0);
        let page = api
            .expect(
                api.get(
                    user,
                    &format!("/rooms/{room}/messages?after={after}&limit=500"),
                )
                .await,
                200,
            )
            .await;
        seqs.extend(
            page["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["seq"].as_i64().unwrap()),
        );
        if page["has_more"] != true {
            return seqs;
        }
    }
}

#[tokio::test]
async fn ten_days_of_steady_load_keep_the_database_flat() {
    let api = spawn_api_with(|_, c| c.retention_days = Some(2)).await;
    let ada = api.login("ada").await;
    let room = api.room_id(&ada, "busy").await;
    let db = api.db().await;
    let start = Utc::now();
    let mut pages = Vec::new();
    let mut last = 0;
    for day in 0..10 {
        send_many(&api, &ada, &room, 600, &format!("day{day}")).await;
        let at = start + Duration::days(day);
        backdate(&db, &room, last, at).await;
        last += 600;
        // The cleanup "at" the end of that day.
        api.state.prune_at(at + Duration::hours(20)).await.unwrap();
        let page_count = scalar(&db, "PRAGMA page_count").await;
        let kept = scalar(&db, "SELECT COUNT(*) FROM messages").await;
        pages.push(page_count);
        eprintln!("day {day}: {page_count} pages, {kept} messages");
        // Two days kept: today's, yesterday's, and the day before's
        // (younger than 2 days at the cleanup's time).
        assert!(kept <= 3 * 600, "day {day}: {kept} messages kept");
    }
    // Flat: once the window is full (and the full-text index's segments
    // have merged), later days need no more pages (freed ones are reused).
    let settled = pages[5];
    for (day, p) in pages.iter().enumerate().skip(5) {
        assert!(
            *p as f64 <= settled as f64 * 1.1,
            "day {day}: {p} pages, day 5: {settled} ({pages:?})"
        );
    }
    // The history starts right above where retention cut it, without holes.
    let pruned: i64 = sqlx::query_scalar("SELECT pruned_seq FROM rooms WHERE id = ?")
        .bind(&room)
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(pruned >= 7 * 600, "pruned up to {pruned}");
    let seqs = room_seqs(&api, &ada, &room).await;
    assert_eq!(seqs.first(), Some(&(pruned + 1)));
    assert_eq!(seqs.last(), Some(&(10 * 600)));
    assert_eq!(seqs.len() as i64, 10 * 600 - pruned);
    // The full-text index forgot them too.
    let indexed = scalar(
        &db,
        "SELECT COUNT(*) FROM messages_fts WHERE messages_fts MATCH 'day0'",
    )
    .await;
    assert_eq!(indexed, 0);
    // A join says where the history starts.
    let joined: Value = api
        .http
        .post(format!("{}/internal/rooms/{room}/join", api.internal))
        .header("x-telepath-internal", &api.internal_token)
        .json(&json!({"user": {"id": ada.id, "name": ada.name}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(joined["pruned_seq"], pruned);
}

#[tokio::test]
async fn a_cleanup_while_sends_flow_loses_no_acknowledged_message_inside_the_window() {
    let api = spawn_api_with(|_, c| c.retention_days = Some(1)).await;
    let ada = api.login("ada").await;
    let room = api.room_id(&ada, "flowing").await;
    let db = api.db().await;
    // 3000 messages from three days ago: all past the retention.
    send_many(&api, &ada, &room, 3000, "old").await;
    backdate(&db, &room, 0, Utc::now() - Duration::days(3)).await;
    // Sends flow while the cleanup runs (three batches of 1000 with pauses).
    let sending = {
        let (http, internal, token) = (
            api.http.clone(),
            api.internal.clone(),
            api.internal_token.clone(),
        );
        let (ada, room) = (ada.clone(), room.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..300 {
                let outcome = telepath_shared::testing::internal_send(
                    &http,
                    &internal,
                    &token,
                    &ada,
                    &room,
                    json!({"body": format!("new {i}")}),
                )
                .await;
                acked.push(outcome["message"]["seq"].as_i64().expect("acknowledged"));
            }
            acked
        })
    };
    let deleted = api.state.prune_at(Utc::now()).await.unwrap();
    let acked = sending.await.unwrap();
    assert_eq!(deleted, 3000);
    // Every acknowledged message is there, in one run of seqs above the cut.
    let seqs = room_seqs(&api, &ada, &room).await;
    assert_eq!(seqs, acked);
    assert_eq!(seqs.first(), Some(&3001));
    // A room's own retention wins over the default: 0 days is refused, and
    // a long one keeps everything.
    let owner_patch = |body: Value| {
        let (api, ada, room) = (&api, &ada, &room);
        async move {
            api.http
                .patch(format!("{}/rooms/{room}", api.url))
                .bearer_auth(&ada.token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    for bad in [
        json!({"retention": -1}),
        json!({"retention": 36_501}),
        json!({"retention": "x"}),
    ] {
        assert_eq!(owner_patch(bad.clone()).await.status(), 400, "{bad}");
    }
    let resp = owner_patch(json!({"retention": 30})).await;
    assert_eq!(resp.status(), 200);
    let room_now: Value = resp.json().await.unwrap();
    assert_eq!(room_now["retention"], 30);
    backdate(&db, &room, 0, Utc::now() - Duration::days(3)).await;
    assert_eq!(api.state.prune_at(Utc::now()).await.unwrap(), 0);
    // Only the owner sets it: a moderator may not.
    let bob = api.login("bob").await;
    api.expect(
        api.post(&bob, &format!("/rooms/{room}/join"), json!({}))
            .await,
        200,
    )
    .await;
    let resp = api
        .http
        .patch(format!("{}/rooms/{room}/participants/{}", api.url, bob.id))
        .bearer_auth(&ada.token)
        .json(&json!({"role": "moderator"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = api
        .http
        .patch(format!("{}/rooms/{room}", api.url))
        .bearer_auth(&bob.token)
        .json(&json!({"retention": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // 0 returns to the default (1 day): the backdated ones go.
    assert_eq!(owner_patch(json!({"retention": 0})).await.status(), 200);
    assert_eq!(api.state.prune_at(Utc::now()).await.unwrap(), 300);
}
