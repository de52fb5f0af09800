//! The routes a gateway reads to catch up after its bus subscription was
//! lost and restored: `POST /internal/memberships` (which rooms are still
//! active, who still takes part) and `POST /internal/dms/pending` (several
//! users' offline queues at once).

use reqwest::Response;
use serde_json::{Value, json};

use crate::helpers::{TestApi, TestUser, assert_error, spawn_api};

/// A canonical id nothing in the database has.
const UNKNOWN: &str = "00000000-0000-4000-8000-000000000000";

/// The `i`th of many canonical ids.
fn id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

impl TestApi {
    /// POSTs `body` to the internal route `path` with `token` (if any).
    async fn post_internal_as(&self, token: Option<&str>, path: &str, body: Value) -> Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.internal))
            .json(&body);
        if let Some(token) = token {
            req = req.header("x-telepath-internal", token);
        }
        req.send().await.unwrap()
    }

    /// What `GET /internal/dms/pending` returns for `user_id`.
    async fn pending_of_one(&self, user_id: &str) -> Value {
        self.http
            .get(format!(
                "{}/internal/dms/pending?user_id={user_id}",
                self.internal
            ))
            .header("x-telepath-internal", &self.internal_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// POSTs `body` to the internal route `path` with the internal token.
    async fn post_internal(&self, path: &str, body: Value) -> Response {
        let token = self.internal_token.clone();
        self.post_internal_as(Some(&token), path, body).await
    }

    /// `POST /internal/memberships`, which must answer 200; its `rooms`.
    async fn memberships(&self, rooms: Value) -> Value {
        let resp = self
            .post_internal("/internal/memberships", json!({ "rooms": rooms }))
            .await;
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().await.unwrap()["rooms"].take()
    }
}

/// Ada, bob, carol and dave, logged in.
async fn four_users(api: &TestApi) -> [TestUser; 4] {
    [
        api.login("ada").await,
        api.login("bob").await,
        api.login("carol").await,
        api.login("dave").await,
    ]
}

/// A room's entry in a memberships query.
fn ask(room: &str, users: &[&TestUser]) -> Value {
    let users: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
    json!({"room": room, "users": users})
}

#[tokio::test]
async fn memberships_say_which_rooms_are_active_and_which_listed_users_take_part() {
    let api = spawn_api().await;
    let [ada, bob, carol, dave] = four_users(&api).await;
    let open = api.room_id(&ada, "open").await;
    let closed = api.room_id(&ada, "closed").await;
    for user in [&bob, &dave] {
        let joined = api
            .post(user, &format!("/rooms/{open}/join"), json!({}))
            .await;
        assert_eq!(joined.status(), 200);
    }
    let left = api.delete(&dave, &format!("/rooms/{open}/leave")).await;
    assert_eq!(left.status(), 204);
    assert_eq!(
        api.delete(&ada, &format!("/rooms/{closed}")).await.status(),
        204
    );

    let rooms = api
        .memberships(json!([
            ask(&open, &[&ada, &bob, &carol, &dave, &bob]),
            ask(&closed, &[&ada]),
            ask(UNKNOWN, &[&ada]),
            {"room": open},
        ]))
        .await;
    assert_eq!(
        rooms,
        json!([
            // Participants, in the order asked, once each; not carol
            // (never joined) nor dave (left).
            {"room": open, "active": true, "members": [ada.id, bob.id]},
            // With who closed it, for the `room_closed` a gateway may owe.
            {"room": closed, "active": false, "members": [],
             "closed_by": {"id": ada.id, "name": "ada"}},
            {"room": UNKNOWN, "active": false, "members": []},
            {"room": open, "active": true, "members": []},
        ])
    );
    assert_eq!(api.memberships(json!([])).await, json!([]));
}

#[tokio::test]
async fn memberships_take_a_thousand_rooms_and_ten_thousand_users_and_no_more() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let room = api.room_id(&ada, "r").await;
    // 1,000 rooms of 10 users, ada among them in her room: within the bounds
    // and the body limit.
    let mut rooms: Vec<Value> = (0..999)
        .map(|i| json!({"room": id(i), "users": (0..10).map(id).collect::<Vec<_>>()}))
        .collect();
    let mut users: Vec<String> = (0..9).map(id).collect();
    users.push(ada.id.clone());
    rooms.push(json!({"room": room, "users": users}));
    let answer = api.memberships(json!(rooms)).await;
    assert_eq!(answer.as_array().unwrap().len(), 1000);
    assert_eq!(answer[999]["members"], json!([ada.id]));

    let path = "/internal/memberships";
    let rooms_over: Vec<Value> = (0..1001).map(|i| json!({"room": id(i)})).collect();
    let resp = api
        .post_internal(path, json!({ "rooms": rooms_over }))
        .await;
    assert_error(resp, 400, "bad_request").await;
    let users_over = json!([
        {"room": id(0), "users": (0..5000).map(id).collect::<Vec<_>>()},
        {"room": id(1), "users": (0..5001).map(id).collect::<Vec<_>>()},
    ]);
    let resp = api
        .post_internal(path, json!({ "rooms": users_over }))
        .await;
    assert_error(resp, 400, "bad_request").await;
    // Past the body limit (1 MiB) before any count.
    let huge = json!([{"room": id(0), "users": (0..30_000).map(id).collect::<Vec<_>>()}]);
    let resp = api.post_internal(path, json!({ "rooms": huge })).await;
    assert_error(resp, 413, "too_large").await;
}

/// `good` posted to `path` without the internal token, or with a wrong one, is 401.
async fn refuses_without_the_internal_token(api: &TestApi, path: &str, good: Value) {
    for token in [None, Some("nope")] {
        assert_error(
            api.post_internal_as(token, path, good.clone()).await,
            401,
            "unauthorized",
        )
        .await;
    }
}

#[tokio::test]
async fn memberships_refuse_a_missing_token_and_bad_ids() {
    let api = spawn_api().await;
    let path = "/internal/memberships";
    let good = json!({"rooms": [{"room": UNKNOWN, "users": [UNKNOWN]}]});
    refuses_without_the_internal_token(&api, path, good).await;
    for (body, names) in [
        (json!({"rooms": [{"room": "room:*"}]}), "rooms[0].room"),
        (
            json!({"rooms": [{"room": UNKNOWN}, {"room": UNKNOWN, "users": [UNKNOWN, "ADA"]}]}),
            "rooms[1].users[1]",
        ),
        (
            json!({"rooms": [{"room": "0190F5A4-7C1E-7C3A-9D2E-1A2B3C4D5E6F"}]}),
            "rooms[0].room",
        ),
    ] {
        let resp = api.post_internal(path, body).await;
        assert_eq!(resp.status(), 400);
        let error: Value = resp.json().await.unwrap();
        assert_eq!(error["error"]["code"], "bad_request");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(names), "{message}");
    }
    for body in [json!({}), json!({"rooms": "all"}), json!([1])] {
        assert_error(api.post_internal(path, body).await, 400, "bad_request").await;
    }
}

#[tokio::test]
async fn pending_dms_of_several_users_come_in_the_order_asked_each_oldest_first() {
    let api = spawn_api().await;
    let [ada, bob, carol, dave] = four_users(&api).await;
    let mut sent = Vec::new();
    for (to, body) in [(&bob, "b1"), (&carol, "c1"), (&bob, "b2")] {
        let outcome = api
            .internal_dm(&ada, json!({"to": to.id, "body": body}))
            .await;
        sent.push(outcome["dm"]["id"].as_str().unwrap().to_owned());
    }
    let resp = api
        .post_internal(
            "/internal/dms/pending",
            json!({"user_ids": [dave.id, bob.id, carol.id, bob.id]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let users: Value = resp.json::<Value>().await.unwrap()["users"].take();
    let ids = |messages: &Value| -> Vec<String> {
        let messages = messages.as_array().unwrap();
        messages
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let asked: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(asked, [&dave.id, &bob.id, &carol.id, &bob.id]);
    assert_eq!(users[0]["messages"], json!([]));
    assert_eq!(
        ids(&users[1]["messages"]),
        [sent[0].clone(), sent[2].clone()]
    );
    assert_eq!(ids(&users[2]["messages"]), [sent[1].clone()]);
    // What the GET route returns for one user, exactly.
    let one = api.pending_of_one(&bob.id).await;
    assert_eq!(users[1]["messages"], one["messages"]);
    assert_eq!(users[3], users[1]);

    // With `connect`, each entry is what the GET route reads for a connect:
    // announcements not dismissed (and invitations) too.
    let root = api.login_admin("root").await;
    let resp = api
        .post(
            &root,
            "/announcements",
            json!({"title": "maintenance", "body": "at noon", "level": "info"}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let resp = api
        .post_internal(
            "/internal/dms/pending",
            json!({"user_ids": [dave.id, bob.id], "connect": true}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let users: Value = resp.json::<Value>().await.unwrap()["users"].take();
    for (entry, user) in users.as_array().unwrap().iter().zip([&dave, &bob]) {
        let one = api.pending_of_one(&user.id).await;
        assert_eq!(entry["messages"], one["messages"]);
        assert_eq!(entry["announcements"], one["announcements"]);
        assert_eq!(entry["announcements"][0]["title"], "maintenance");
    }
    // Without it, the catch-up's entries carry DMs only.
    let resp = api
        .post_internal("/internal/dms/pending", json!({"user_ids": [dave.id]}))
        .await;
    let users: Value = resp.json::<Value>().await.unwrap()["users"].take();
    assert!(users[0].get("announcements").is_none(), "{users}");
}

#[tokio::test]
async fn pending_dms_of_several_users_refuse_a_missing_token_bad_ids_and_too_many() {
    let api = spawn_api().await;
    let path = "/internal/dms/pending";
    let good = json!({"user_ids": [UNKNOWN]});
    refuses_without_the_internal_token(&api, path, good).await;
    let hundred: Vec<String> = (0..100).map(id).collect();
    let resp = api
        .post_internal(path, json!({ "user_ids": hundred }))
        .await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["users"].as_array().unwrap().len(), 100);
    let over: Vec<String> = (0..101).map(id).collect();
    let resp = api.post_internal(path, json!({ "user_ids": over })).await;
    assert_error(resp, 400, "bad_request").await;
    let resp = api
        .post_internal(path, json!({"user_ids": [UNKNOWN, "bob"]}))
        .await;
    assert_eq!(resp.status(), 400);
    let error: Value = resp.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("user_ids[1]"), "{message}");
    for body in [json!({}), json!({"user_ids": UNKNOWN})] {
        assert_error(api.post_internal(path, body).await, 400, "bad_request").await;
    }
    // Past the body limit.
    let huge: Vec<String> = (0..5000).map(id).collect();
    let resp = api.post_internal(path, json!({ "user_ids": huge })).await;
    assert_error(resp, 413, "too_large").await;
}
