//! Authorization: admin routes need the admin role, and users reach only
//! the rooms they belong to (IDOR): refused requests leave no trace.

use serde_json::{Value, json};

use crate::helpers::{TestApi, TestUser, assert_error, assert_refused, spawn_api};

async fn message_count(api: &TestApi) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM messages")
        .fetch_one(&api.db().await)
        .await
        .unwrap();
    n
}

#[tokio::test]
async fn admin_routes_refuse_users_with_403_and_anonymous_callers_with_401() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let admin = api.login_admin("root").await;
    let routes = [
        ("POST", "/messages/broadcast", json!({"body": "x"})),
        ("POST", "/admin/disconnect", json!({"user_id": ada.id})),
        ("GET", "/analytics/connections", json!(null)),
    ];
    for (method, path, body) in routes {
        let url = format!("{}{path}", api.url);
        let req = |token: Option<&str>| {
            let mut r = api.http.request(method.parse().unwrap(), &url);
            if !body.is_null() {
                r = r.json(&body);
            }
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            r.send()
        };
        assert_error(req(None).await.unwrap(), 401, "unauthorized").await;
        assert_error(req(Some(&ada.token)).await.unwrap(), 403, "forbidden").await;
        // The admin passes the role check (it may still need presence, absent here: 503).
        let status = req(Some(&admin.token)).await.unwrap().status().as_u16();
        assert!(
            [200, 202, 503].contains(&status),
            "{method} {path}: {status}"
        );
    }
}

#[tokio::test]
async fn a_user_cannot_reach_a_private_room_they_are_not_in_and_nothing_changes() {
    let api = spawn_api().await;
    let owner = api.login("owner").await;
    let eve = api.login("eve").await;
    let room = api
        .create_room(&owner, json!({"name": "secret", "private": true}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        api.internal_send(&owner, &room, json!({"body": "classified"}))
            .await["message"]
            .is_object()
    );
    let before = message_count(&api).await;

    assert_error(
        api.get(&eve, &format!("/rooms/{room}/messages")).await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        api.get(&eve, &format!("/rooms/{room}/participants")).await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        api.post(&eve, &format!("/rooms/{room}/join"), json!({}))
            .await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        api.delete(&eve, &format!("/rooms/{room}/leave")).await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        api.delete(&eve, &format!("/rooms/{room}")).await,
        404,
        "not_found",
    )
    .await;
    // Posting through the gateway's route on eve's behalf is refused too.
    assert_refused(
        api.internal_send(&eve, &room, json!({"body": "let me in"}))
            .await,
        "forbidden",
    );

    assert_eq!(message_count(&api).await, before);
    let page: Value = api
        .get(&owner, &format!("/rooms/{room}/messages"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["messages"].as_array().unwrap().len(),
        1,
        "the owner still reads it"
    );
}

#[tokio::test]
async fn leaving_only_ever_affects_the_caller() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let bob = api.login("bob").await;
    let room = api.room_id(&ada, "r").await;
    assert_eq!(
        api.post(&bob, &format!("/rooms/{room}/join"), json!({}))
            .await
            .status(),
        200
    );
    assert_eq!(
        api.delete(&bob, &format!("/rooms/{room}/leave"))
            .await
            .status(),
        204
    );
    assert_error(
        api.delete(&bob, &format!("/rooms/{room}/leave")).await,
        404,
        "not_found",
    )
    .await;
    // Ada is still a member: she can post, bob cannot.
    assert!(
        api.internal_send(&ada, &room, json!({"body": "still here"}))
            .await["message"]
            .is_object()
    );
    assert_refused(
        api.internal_send(&bob, &room, json!({"body": "me too"}))
            .await,
        "forbidden",
    );
}

#[tokio::test]
async fn only_the_owner_or_an_admin_closes_a_public_room() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let bob = api.login("bob").await;
    let room = api.room_id(&ada, "r").await;
    assert_eq!(
        api.post(&bob, &format!("/rooms/{room}/join"), json!({}))
            .await
            .status(),
        200
    );
    assert_error(
        api.delete(&bob, &format!("/rooms/{room}")).await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(
        api.delete(&ada, &format!("/rooms/{room}")).await.status(),
        204
    );
    assert_refused(
        api.internal_send(&ada, &room, json!({"body": "echo"}))
            .await,
        "forbidden",
    );
    assert_error(
        api.get(&ada, &format!("/rooms/{room}/messages")).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn query_parameters_outside_the_allowlist_change_nothing() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let room = api.room_id(&ada, "r").await;
    for i in 0..3 {
        api.sent(&ada, &room, json!({"body": format!("m{i}")}))
            .await;
    }
    // Unknown parameters are ignored; malformed known ones are 400; nothing reaches SQL as text.
    let page: Value = api
        .get(
            &ada,
            &format!(
                "/rooms/{room}/messages?sort=created_at;DROP%20TABLE%20messages--&order=desc,1"
            ),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["messages"].as_array().unwrap().len(), 3);
    assert_error(
        api.get(
            &ada,
            &format!("/rooms/{room}/messages?limit=1;DROP%20TABLE%20messages"),
        )
        .await,
        400,
        "bad_request",
    )
    .await;
    assert_eq!(message_count(&api).await, 3);
}

#[tokio::test]
async fn a_token_for_another_users_name_cannot_claim_an_existing_username() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    // A validly signed token whose id differs from the stored ada's.
    let keys = telepath_shared::auth::JwtKeys::new(crate::helpers::SECRET);
    let impostor = keys.mint(
        &telepath_shared::protocol::UserInfo {
            id: uuid::Uuid::now_v7().hyphenated().to_string(),
            name: "ada".into(),
            role: telepath_shared::protocol::Role::User,
        },
        60,
    );
    let user = TestUser {
        id: String::new(),
        name: "ada".into(),
        token: impostor,
    };
    assert_error(
        api.post(&user, "/rooms", json!({"name": "mine"})).await,
        409,
        "conflict",
    )
    .await;
    let list: Value = api.get(&ada, "/rooms").await.json().await.unwrap();
    assert_eq!(list["rooms"].as_array().unwrap().len(), 0);
}
