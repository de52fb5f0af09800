//! Rooms, joins, auth and error shapes.

use serde_json::{Value, json};

use crate::helpers::{SECRET, assert_error, spawn_api, spawn_api_with};

#[tokio::test]
async fn dev_login_returns_a_token_for_a_new_or_known_user() {
    let api = spawn_api().await;
    let a = api.login("ada").await;
    let again = api.login("ada").await;
    assert_eq!(a.id, again.id);
    let claims = telepath_shared::auth::JwtKeys::new(SECRET)
        .verify_own(&a.token)
        .unwrap();
    assert_eq!(claims.sub, a.id);
}

#[tokio::test]
async fn dev_login_is_not_found_when_off_and_bad_names_are_refused() {
    let api = spawn_api_with(|_, c| c.dev_login = false).await;
    let resp = api
        .http
        .post(format!("{}/auth/login", api.url))
        .json(&json!({"username": "ada"}))
        .send()
        .await
        .unwrap();
    assert_error(resp, 404, "not_found").await;
    let api = spawn_api().await;
    for name in ["", "a b", "x".repeat(33).as_str(), "room:*"] {
        let resp = api
            .http
            .post(format!("{}/auth/login", api.url))
            .json(&json!({"username": name}))
            .send()
            .await
            .unwrap();
        assert_error(resp, 400, "bad_request").await;
    }
}

#[tokio::test]
async fn routes_refuse_missing_or_bad_tokens_with_401() {
    let api = spawn_api().await;
    let resp = api
        .http
        .get(format!("{}/rooms", api.url))
        .send()
        .await
        .unwrap();
    assert_error(resp, 401, "unauthorized").await;
    let forged = telepath_shared::auth::JwtKeys::new("wrong").mint(
        &telepath_shared::protocol::UserInfo {
            id: "x".into(),
            name: "x".into(),
            role: telepath_shared::protocol::Role::Admin,
        },
        60,
    );
    let resp = api
        .http
        .get(format!("{}/rooms", api.url))
        .bearer_auth(forged)
        .send()
        .await
        .unwrap();
    assert_error(resp, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_created_room_is_listed_and_its_creator_is_its_owner() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let room = api
        .create_room(&ada, json!({"name": "seance", "description": "spirits"}))
        .await;
    assert_eq!(room["name"], "seance");
    assert_eq!(room["created_by"], ada.id.as_str());
    assert_eq!(room["is_active"], true);
    assert_eq!(room["max_participants"], 100);
    let list: Value = api.get(&ada, "/rooms").await.json().await.unwrap();
    assert_eq!(list["rooms"][0]["id"], room["id"]);
    // Joining again as the owner is idempotent and keeps the owner role.
    let p: Value = api
        .post(
            &ada,
            &format!("/rooms/{}/join", room["id"].as_str().unwrap()),
            json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["role"], "owner");
}

#[tokio::test]
async fn private_rooms_are_invisible_to_non_members() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let bob = api.login("bob").await;
    let room = api
        .create_room(&ada, json!({"name": "secret", "private": true}))
        .await;
    let id = room["id"].as_str().unwrap();
    let list: Value = api.get(&bob, "/rooms").await.json().await.unwrap();
    assert_eq!(list["rooms"].as_array().unwrap().len(), 0);
    assert_error(
        api.get(&bob, &format!("/rooms/{id}/messages")).await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        api.post(&bob, &format!("/rooms/{id}/join"), json!({}))
            .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(
        api.get(&ada, &format!("/rooms/{id}/messages"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn fifty_concurrent_joins_into_a_room_of_ten_admit_exactly_ten() {
    let api = spawn_api().await;
    let owner = api.login("owner").await;
    let room = api
        .create_room(&owner, json!({"name": "tiny", "max_participants": 11}))
        .await;
    let id = room["id"].as_str().unwrap().to_owned();
    // The owner holds one of the eleven seats (an owner cannot leave an open room).
    let mut users = Vec::new();
    for i in 0..50 {
        users.push(api.login(&format!("u{i}")).await);
    }
    let path = format!("/rooms/{id}/join");
    let joins = users.iter().map(|u| api.post(u, &path, json!({})));
    let results = futures_util::future::join_all(joins).await;
    let ok = results.iter().filter(|r| r.status() == 200).count();
    let full = results.iter().filter(|r| r.status() == 409).count();
    assert_eq!((ok, full), (10, 40));
    // And the room really holds ten: one more is refused.
    let late = api.login("late").await;
    assert_error(api.post(&late, &path, json!({})).await, 409, "room_full").await;
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let api = spawn_api_with(|_, c| c.max_request_bytes = 1024).await;
    let ada = api.login("ada").await;
    let url = format!("{}/rooms", api.url);
    let resp = api
        .http
        .post(&url)
        .bearer_auth(&ada.token)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, "bad_request").await;
    let big = json!({"name": "x", "description": "y".repeat(4096)});
    assert_error(api.post(&ada, "/rooms", big).await, 413, "too_large").await;
    assert_error(
        api.post(&ada, "/rooms", json!({"name": ""})).await,
        400,
        "bad_request",
    )
    .await;
    assert_error(
        api.post(&ada, "/rooms", json!({"name": "ok", "max_participants": 0}))
            .await,
        400,
        "bad_request",
    )
    .await;
    assert_error(api.get(&ada, "/nowhere").await, 404, "not_found").await;
    assert_error(
        api.post(&ada, "/rooms/room:*/join", json!({})).await,
        400,
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let api = spawn_api().await;
    assert_eq!(
        api.http
            .get(format!("{}/healthz", api.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        api.http
            .get(format!("{}/readyz", api.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics =
        telepath_shared::testing::get_text(&api.http, &format!("{}/metrics", api.url)).await;
    assert!(
        metrics.contains("telepath_api_messages_persisted_total"),
        "{metrics}"
    );
}
