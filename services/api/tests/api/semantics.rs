//! HTTP semantics users' tools expect: 415 for a body that is not JSON,
//! 405 with `Allow` and a JSON body, `Retry-After` on 503, and a full
//! database answered 507 with the writer working again once space returns.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{spawn_api, spawn_api_with};

#[tokio::test]
async fn a_body_that_is_not_json_gets_415_and_a_wrong_method_405_with_allow() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let resp = api
        .http
        .post(format!("{}/rooms", api.url))
        .bearer_auth(&ada.token)
        .header("content-type", "text/plain")
        .body(r#"{"name":"plain"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");

    for (method, path, allowed) in [
        (reqwest::Method::DELETE, "/rooms", vec!["GET", "POST"]),
        (reqwest::Method::PUT, "/auth/login", vec!["POST"]),
        (reqwest::Method::POST, "/healthz", vec!["GET"]),
    ] {
        let resp = api
            .http
            .request(method.clone(), format!("{}{path}", api.url))
            .bearer_auth(&ada.token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let allow = resp.headers()["allow"].to_str().unwrap().to_owned();
        for m in allowed {
            assert!(allow.contains(m), "{method} {path}: Allow {allow}");
        }
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_request", "{method} {path}");
    }
}

#[tokio::test]
async fn a_503_says_when_to_retry() {
    // This rig runs no presence: a route that needs it is unavailable.
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let room = api.room_id(&ada, "r").await;
    let resp = api.get(&ada, &format!("/rooms/{room}/participants")).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
}

#[tokio::test]
async fn a_full_database_answers_507_and_writes_work_again_once_space_returns() {
    let api = spawn_api_with(|_, c| c.db_max_bytes = Some(1 << 20)).await;
    let ada = api.login("ada").await;
    let room = api.room_id(&ada, "big").await;
    // 4,000 four-byte characters: 16,000 bytes a message.
    let body = "😀".repeat(4000);
    let mut stored = 0;
    let refused = loop {
        let outcome = api
            .internal_send(&ada, &room, json!({ "body": body }))
            .await;
        if outcome["message"].is_object() {
            stored += 1;
            assert!(stored < 200, "1 MiB never filled up");
            continue;
        }
        break outcome;
    };
    assert_eq!(refused["error"]["code"], "unavailable", "{refused}");
    assert_eq!(refused["error"]["message"], "the database is full");
    // REST writes fill the last gaps of other tables, then are refused
    // with 507, in the JSON error shape.
    let mut n = 0;
    let err = loop {
        let resp = api
            .post(&ada, "/rooms", json!({"name": format!("r{n}")}))
            .await;
        if resp.status() != StatusCode::CREATED {
            assert_eq!(resp.status(), StatusCode::INSUFFICIENT_STORAGE);
            break resp.json::<Value>().await.unwrap();
        }
        n += 1;
        assert!(n < 10_000, "rooms never filled the database");
    };
    assert_eq!(err["error"]["code"], "unavailable");
    assert_eq!(err["error"]["message"], "the database is full");
    // Reads still work.
    let resp = api.get(&ada, &format!("/rooms/{room}/messages")).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // An operator frees space (here: drops the room's messages); the same
    // api, without a restart, writes again.
    let db = api.db().await;
    sqlx::query("DELETE FROM messages")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let outcome = api
        .internal_send(&ada, &room, json!({ "body": "fits again" }))
        .await;
    assert!(outcome["message"].is_object(), "{outcome}");
    let resp = api.post(&ada, "/rooms", json!({"name": "one more"})).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}
