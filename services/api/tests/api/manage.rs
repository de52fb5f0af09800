//! Rooms people can run (issue 21), on the api alone: roles and handing a
//! room over, invitations and invite links, kick/ban/mute and the audit
//! log, settings, profiles; and the matrix of every new route refusing
//! callers without the role (403) or outside a private room (404) while
//! leaving every table as it was.

use serde_json::{Value, json};

use crate::helpers::{TestApi, TestUser, assert_error, assert_refused, spawn_api};

impl TestApi {
    /// `PATCH path` as `user`.
    async fn patch(&self, user: &TestUser, path: &str, body: Value) -> reqwest::Response {
        self.http
            .patch(format!("{}{path}", self.url))
            .bearer_auth(&user.token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// The JSON of a response that must have `status`.
    pub(crate) async fn expect(&self, resp: reqwest::Response, status: u16) -> Value {
        let got = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(got, status, "{body}");
        body
    }

    /// Row counts (and a digest of the mutable columns) of every table the
    /// new routes write, to prove a refusal changed nothing.
    async fn snapshot(&self) -> Vec<Value> {
        let db = self.db().await;
        let queries = [
            "SELECT json_group_array(json_array(id, name, description, topic, max_participants, is_private, is_active)) FROM rooms",
            "SELECT json_group_array(json_array(room_id, user_id, role, is_active, muted_until, removed)) FROM room_participants",
            "SELECT json_group_array(json_array(id, state)) FROM room_invites",
            "SELECT json_group_array(json_array(token_hash, uses)) FROM room_invite_links",
            "SELECT json_group_array(json_array(room_id, user_id, until)) FROM room_bans",
            "SELECT COUNT(*) || '' FROM room_audit",
            "SELECT json_group_array(json_array(id, display_name, bio, avatar_url, abilities)) FROM users",
            "SELECT COUNT(*) || '' FROM messages",
        ];
        let mut out = Vec::new();
        for q in queries {
            let (v,): (String,) = sqlx::query_as(q).fetch_one(&db).await.unwrap();
            out.push(Value::String(v));
        }
        out
    }
}

async fn room(api: &TestApi, owner: &TestUser, private: bool) -> String {
    api.create_room(owner, json!({"name": "crew", "private": private}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Invites `user` into `room` as `by` and accepts it as `user`.
async fn bring_in(api: &TestApi, room: &str, by: &TestUser, user: &TestUser) {
    let invite = api
        .expect(
            api.post(
                by,
                &format!("/rooms/{room}/invites"),
                json!({"user": user.name}),
            )
            .await,
            201,
        )
        .await;
    let id = invite["id"].as_str().unwrap();
    api.expect(
        api.post(user, &format!("/invites/{id}/accept"), json!({}))
            .await,
        200,
    )
    .await;
}

#[tokio::test]
async fn roles_are_set_by_the_owner_who_hands_over_before_leaving() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let bob = api.login("bob").await;
    let cy = api.login("cy").await;
    let root = api.login_admin("root").await;
    let r = room(&api, &ada, false).await;
    let (_bus, mut events) = api.watch(&format!("room:{r}")).await;
    for u in [&bob, &cy] {
        api.expect(
            api.post(u, &format!("/rooms/{r}/join"), json!({})).await,
            200,
        )
        .await;
    }
    // The creator is the owner; GET /rooms/{id} says the caller's role.
    let part = api
        .expect(
            api.patch(
                &ada,
                &format!("/rooms/{r}/participants/{}", bob.id),
                json!({"role": "moderator"}),
            )
            .await,
            200,
        )
        .await;
    assert_eq!(part["role"], "moderator");
    // A moderator does not set roles; nobody sets the owner's but by handing over.
    assert_error(
        api.patch(
            &bob,
            &format!("/rooms/{r}/participants/{}", cy.id),
            json!({"role": "moderator"}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    assert_error(
        api.patch(
            &root,
            &format!("/rooms/{r}/participants/{}", ada.id),
            json!({"role": "member"}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    assert_error(
        api.patch(
            &ada,
            &format!("/rooms/{r}/participants/{}", cy.id),
            json!({"role": "king"}),
        )
        .await,
        400,
        "bad_request",
    )
    .await;
    // The owner of an open room hands it over before leaving.
    assert_error(
        api.delete(&ada, &format!("/rooms/{r}/leave")).await,
        409,
        "conflict",
    )
    .await;
    api.expect(
        api.patch(
            &ada,
            &format!("/rooms/{r}/participants/{}", cy.name),
            json!({"role": "owner"}),
        )
        .await,
        200,
    )
    .await;
    // (GET /rooms/{id}/participants needs presence, absent here: the rows.)
    let roles: Vec<(String, String)> = sqlx::query_as(
        "SELECT u.username, p.role FROM room_participants p JOIN users u ON u.id = p.user_id
         WHERE p.room_id = ? AND p.is_active = 1 ORDER BY u.username",
    )
    .bind(&r)
    .fetch_all(&api.db().await)
    .await
    .unwrap();
    let roles: Vec<(&str, &str)> = roles
        .iter()
        .map(|(u, r)| (u.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        roles,
        [("ada", "moderator"), ("bob", "moderator"), ("cy", "owner")]
    );
    let room = api.expect(api.get(&cy, "/rooms").await, 200).await;
    let mine = room["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == r.as_str())
        .unwrap();
    assert_eq!(mine["role"], "owner");
    api.expect(api.delete(&ada, &format!("/rooms/{r}/leave")).await, 204)
        .await;
    // An admin acts as an owner anywhere: demotes bob.
    api.expect(
        api.patch(
            &root,
            &format!("/rooms/{r}/participants/{}", bob.id),
            json!({"role": "member"}),
        )
        .await,
        200,
    )
    .await;
    // The room heard every change as member events with action role.
    let mut roles = Vec::new();
    while roles.len() < 4 {
        let m = tokio::time::timeout(std::time::Duration::from_secs(5), events.recv())
            .await
            .expect("member events")
            .unwrap();
        let f: Value = serde_json::from_slice(&m.payload).unwrap();
        if f["action"] == "role" {
            roles.push((f["user"]["name"].clone(), f["role"].clone()));
        }
    }
    assert_eq!(
        roles,
        vec![
            (json!("bob"), json!("moderator")),
            (json!("ada"), json!("moderator")),
            (json!("cy"), json!("owner")),
            (json!("bob"), json!("member")),
        ]
    );
    // Only the owner (now cy) or an admin closes it.
    assert_error(
        api.delete(&bob, &format!("/rooms/{r}")).await,
        403,
        "forbidden",
    )
    .await;
    api.expect(api.delete(&cy, &format!("/rooms/{r}")).await, 204)
        .await;
}

#[tokio::test]
async fn invitations_are_the_way_into_a_private_room() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let eve = api.login("eve").await;
    let max = api.login("max").await;
    let r = room(&api, &ada, true).await;
    let (_bus, mut inbox) = api.watch(&format!("user:{}", eve.id)).await;
    assert_error(
        api.post(&eve, &format!("/rooms/{r}/join"), json!({})).await,
        404,
        "not_found",
    )
    .await;

    let invite = api
        .expect(
            api.post(&ada, &format!("/rooms/{r}/invites"), json!({"user": "eve"}))
                .await,
            201,
        )
        .await;
    assert_eq!(invite["state"], "pending");
    assert_eq!(invite["room"]["id"], r.as_str());
    assert_eq!(invite["user"]["name"], "eve");
    assert_eq!(invite["from"]["name"], "ada");
    // Asking again gives the same pending invitation.
    let again = api
        .expect(
            api.post(
                &ada,
                &format!("/rooms/{r}/invites"),
                json!({"user": eve.id}),
            )
            .await,
            200,
        )
        .await;
    assert_eq!(again["id"], invite["id"]);
    // The invitee heard of it live and lists it.
    let m = tokio::time::timeout(std::time::Duration::from_secs(5), inbox.recv())
        .await
        .unwrap()
        .unwrap();
    let event: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(event["type"], "invite");
    assert_eq!(event["id"], invite["id"]);
    let list = api.expect(api.get(&eve, "/invites").await, 200).await;
    assert_eq!(list["invites"][0]["id"], invite["id"]);
    assert_eq!(
        api.expect(api.get(&max, "/invites").await, 200).await["invites"],
        json!([])
    );

    // Someone else's invitation is not theirs to accept.
    let id = invite["id"].as_str().unwrap();
    assert_error(
        api.post(&max, &format!("/invites/{id}/accept"), json!({}))
            .await,
        404,
        "not_found",
    )
    .await;
    let joined = api
        .expect(
            api.post(&eve, &format!("/invites/{id}/accept"), json!({}))
                .await,
            200,
        )
        .await;
    assert_eq!(joined["role"], "member");
    assert_eq!(joined["room"]["id"], r.as_str());
    api.expect(api.get(&eve, &format!("/rooms/{r}/messages")).await, 200)
        .await;
    assert_error(
        api.post(&eve, &format!("/invites/{id}/accept"), json!({}))
            .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(
        api.expect(api.get(&eve, "/invites").await, 200).await["invites"],
        json!([])
    );
    // Inviting a participant, an unknown user; a member inviting.
    assert_error(
        api.post(&ada, &format!("/rooms/{r}/invites"), json!({"user": "eve"}))
            .await,
        409,
        "conflict",
    )
    .await;
    assert_error(
        api.post(
            &ada,
            &format!("/rooms/{r}/invites"),
            json!({"user": "nobody"}),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        api.post(&eve, &format!("/rooms/{r}/invites"), json!({"user": "max"}))
            .await,
        403,
        "forbidden",
    )
    .await;

    // A declined invitation ends.
    let second = api
        .expect(
            api.post(&ada, &format!("/rooms/{r}/invites"), json!({"user": "max"}))
                .await,
            201,
        )
        .await;
    let id = second["id"].as_str().unwrap();
    api.expect(
        api.post(&max, &format!("/invites/{id}/decline"), json!({}))
            .await,
        204,
    )
    .await;
    assert_error(
        api.post(&max, &format!("/invites/{id}/accept"), json!({}))
            .await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        api.get(&max, &format!("/rooms/{r}/messages")).await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        api.post(&max, "/invites/not-an-id/accept", json!({})).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn invite_links_join_private_rooms_within_their_uses_and_time() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let users = [
        api.login("u1").await,
        api.login("u2").await,
        api.login("u3").await,
    ];
    let r = room(&api, &ada, true).await;
    let link = api
        .expect(
            api.post(
                &ada,
                &format!("/rooms/{r}/invite-links"),
                json!({"max_uses": 2}),
            )
            .await,
            201,
        )
        .await;
    let token = link["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43);
    assert_eq!(link["room"]["id"], r.as_str());
    // Only the hash is stored.
    let (stored,): (String,) = sqlx::query_as("SELECT token_hash FROM room_invite_links")
        .fetch_one(&api.db().await)
        .await
        .unwrap();
    assert_ne!(stored, token);

    for u in &users[..2] {
        let joined = api
            .expect(api.post(u, &format!("/join/{token}"), json!({})).await, 200)
            .await;
        assert_eq!(joined["room"]["id"], r.as_str());
    }
    // A participant using it again spends nothing; the third user finds it used up.
    api.expect(
        api.post(&users[0], &format!("/join/{token}"), json!({}))
            .await,
        200,
    )
    .await;
    assert_error(
        api.post(&users[2], &format!("/join/{token}"), json!({}))
            .await,
        404,
        "not_found",
    )
    .await;

    // An expired link, a malformed one, bad bounds.
    let link = api
        .expect(
            api.post(&ada, &format!("/rooms/{r}/invite-links"), json!({}))
                .await,
            201,
        )
        .await;
    sqlx::query("UPDATE room_invite_links SET expires_at = '2000-01-01T00:00:00+00:00'")
        .execute(&api.db().await)
        .await
        .unwrap();
    let expired = link["token"].as_str().unwrap();
    assert_error(
        api.post(&users[2], &format!("/join/{expired}"), json!({}))
            .await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        api.post(&users[2], "/join/short", json!({})).await,
        404,
        "not_found",
    )
    .await;
    for bad in [
        json!({"max_uses": 0}),
        json!({"expires_in": 59}),
        json!({"expires_in": 2_592_001}),
    ] {
        assert_error(
            api.post(&ada, &format!("/rooms/{r}/invite-links"), bad)
                .await,
            400,
            "bad_request",
        )
        .await;
    }
    // Members without a role do not make links.
    assert_error(
        api.post(&users[0], &format!("/rooms/{r}/invite-links"), json!({}))
            .await,
        403,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn moderation_follows_the_hierarchy_and_every_action_is_audited() {
    let api = spawn_api().await;
    let own = api.login("own").await;
    let moda = api.login("moda").await;
    let modb = api.login("modb").await;
    let m1 = api.login("m1").await;
    let m2 = api.login("m2").await;
    let r = room(&api, &own, false).await;
    for u in [&moda, &modb, &m1, &m2] {
        api.expect(
            api.post(u, &format!("/rooms/{r}/join"), json!({})).await,
            200,
        )
        .await;
    }
    for u in [&moda, &modb] {
        api.expect(
            api.patch(
                &own,
                &format!("/rooms/{r}/participants/{}", u.id),
                json!({"role": "moderator"}),
            )
            .await,
            200,
        )
        .await;
    }
    let (_bus, mut m1_channel) = api.watch(&format!("user:{}", m1.id)).await;

    // Kick: a moderator on a member; not on a moderator, not on the owner; members not at all.
    api.expect(
        api.post(&moda, &format!("/rooms/{r}/kick"), json!({"user": "m1"}))
            .await,
        204,
    )
    .await;
    let m = tokio::time::timeout(std::time::Duration::from_secs(5), m1_channel.recv())
        .await
        .unwrap()
        .unwrap();
    let left: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(left["type"], "member");
    assert_eq!(left["action"], "left");
    assert_eq!(left["reason"], "kicked");
    assert_eq!(left["by"]["name"], "moda");
    for (who, target) in [
        (&moda, "modb"),
        (&moda, "own"),
        (&m2, "moda"),
        (&own, "own"),
    ] {
        assert_error(
            api.post(who, &format!("/rooms/{r}/kick"), json!({"user": target}))
                .await,
            403,
            "forbidden",
        )
        .await;
    }
    assert_error(
        api.post(&moda, &format!("/rooms/{r}/kick"), json!({"user": "m1"}))
            .await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        api.post(&moda, &format!("/rooms/{r}/kick"), json!({"user": "ghost"}))
            .await,
        404,
        "not_found",
    )
    .await;
    // A kicked user reads no more of it, and sends nothing, until they come back.
    assert_error(
        api.get(&m1, &format!("/rooms/{r}/messages")).await,
        404,
        "not_found",
    )
    .await;
    assert_refused(
        api.internal_send(&m1, &r, json!({"body": "still here?"}))
            .await,
        "forbidden",
    );
    api.expect(
        api.post(&m1, &format!("/rooms/{r}/join"), json!({})).await,
        200,
    )
    .await;
    api.expect(api.get(&m1, &format!("/rooms/{r}/messages")).await, 200)
        .await;

    // Ban: keeps them out until lifted; a timed one too; owners act on moderators.
    api.expect(
        api.post(
            &moda,
            &format!("/rooms/{r}/ban"),
            json!({"user": "m2", "duration": 3600}),
        )
        .await,
        204,
    )
    .await;
    assert_error(
        api.post(&m2, &format!("/rooms/{r}/join"), json!({})).await,
        403,
        "forbidden",
    )
    .await;
    assert_error(
        api.get(&m2, &format!("/rooms/{r}/messages")).await,
        404,
        "not_found",
    )
    .await;
    let bans = api
        .expect(api.get(&moda, &format!("/rooms/{r}/bans")).await, 200)
        .await;
    assert_eq!(bans["bans"][0]["user"]["name"], "m2");
    assert!(bans["bans"][0]["until"].is_string());
    api.expect(api.delete(&moda, &format!("/rooms/{r}/ban/m2")).await, 204)
        .await;
    assert_error(
        api.delete(&moda, &format!("/rooms/{r}/ban/m2")).await,
        404,
        "not_found",
    )
    .await;
    api.expect(
        api.post(&m2, &format!("/rooms/{r}/join"), json!({})).await,
        200,
    )
    .await;
    api.expect(
        api.post(&own, &format!("/rooms/{r}/ban"), json!({"user": "modb"}))
            .await,
        204,
    )
    .await;
    assert_error(
        api.post(&modb, &format!("/rooms/{r}/join"), json!({}))
            .await,
        403,
        "forbidden",
    )
    .await;
    for bad in [
        json!({"user": "m2", "duration": 0}),
        json!({"user": "m2", "duration": 31_536_001}),
        json!({"user": ""}),
    ] {
        assert_error(
            api.post(&own, &format!("/rooms/{r}/ban"), bad).await,
            400,
            "bad_request",
        )
        .await;
    }

    // Mute: sends, edits and reactions refused; reading goes on; lifted.
    let msg = api.sent(&m2, &r, json!({"body": "before the mute"})).await;
    api.expect(
        api.post(&moda, &format!("/rooms/{r}/mute"), json!({"user": "m2"}))
            .await,
        204,
    )
    .await;
    assert_refused(
        api.internal_send(&m2, &r, json!({"body": "muted?"})).await,
        "forbidden",
    );
    let change = |op: &str, extra: Value| {
        let mut c = json!({"op": op, "from": {"id": m2.id, "name": m2.name}, "admin": false, "room": r, "id": msg["id"]});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        json!({"changes": [c]})
    };
    for (op, extra) in [
        ("react", json!({"emoji": "👍", "on": true})),
        ("edit", json!({"body": "changed"})),
    ] {
        let answer: Value = api
            .post_batch(change(op, extra))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            answer["changes"][0]["error"]["code"], "forbidden",
            "{answer}"
        );
    }
    api.expect(api.get(&m2, &format!("/rooms/{r}/messages")).await, 200)
        .await;
    let (until,): (Option<String>,) = sqlx::query_as(
        "SELECT muted_until FROM room_participants WHERE room_id = ? AND user_id = ?",
    )
    .bind(&r)
    .bind(&m2.id)
    .fetch_one(&api.db().await)
    .await
    .unwrap();
    assert!(
        until.is_some_and(|u| u.starts_with("9999-")),
        "a mute without end"
    );
    api.expect(api.delete(&moda, &format!("/rooms/{r}/mute/m2")).await, 204)
        .await;
    api.sent(&m2, &r, json!({"body": "after the mute"})).await;

    // The audit log, newest first, for owners and moderators only.
    let audit = api
        .expect(
            api.get(&moda, &format!("/rooms/{r}/audit?limit=200")).await,
            200,
        )
        .await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "unmute", "mute", "ban", "unban", "ban", "kick", "role", "role"
        ]
    );
    assert_eq!(audit["entries"][5]["target"]["name"], "m1");
    assert_eq!(audit["entries"][5]["actor"]["name"], "moda");
    let page = api
        .expect(
            api.get(&own, &format!("/rooms/{r}/audit?limit=3")).await,
            200,
        )
        .await;
    assert_eq!(page["has_more"], true);
    let before = page["entries"][2]["id"].as_i64().unwrap();
    let next = api
        .expect(
            api.get(&own, &format!("/rooms/{r}/audit?before={before}&limit=3"))
                .await,
            200,
        )
        .await;
    assert_eq!(next["entries"][0]["action"], "unban");
    assert_error(
        api.get(&m1, &format!("/rooms/{r}/audit")).await,
        403,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn settings_change_the_room_and_are_checked() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let bob = api.login("bob").await;
    let r = room(&api, &ada, false).await;
    api.expect(
        api.post(&bob, &format!("/rooms/{r}/join"), json!({})).await,
        200,
    )
    .await;
    let (_bus, mut everyone) = api.watch("broadcast").await;
    let room = api
        .expect(
            api.patch(&ada, &format!("/rooms/{r}"), json!({"name": "renamed", "topic": "launch day", "description": "", "max_participants": 2}))
                .await,
            200,
        )
        .await;
    assert_eq!(room["name"], "renamed");
    assert_eq!(room["topic"], "launch day");
    assert_eq!(room["max_participants"], 2);
    assert_eq!(room["role"], "owner");
    let m = tokio::time::timeout(std::time::Duration::from_secs(5), everyone.recv())
        .await
        .unwrap()
        .unwrap();
    let event: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(event["type"], "room_updated");
    assert_eq!(event["room"]["topic"], "launch day");
    assert_eq!(event["by"]["name"], "ada");
    // Below the current participants, bad values, unknown fields, a member.
    assert_error(
        api.patch(&ada, &format!("/rooms/{r}"), json!({"max_participants": 1}))
            .await,
        409,
        "conflict",
    )
    .await;
    for bad in [
        json!({"name": ""}),
        json!({"name": " x"}),
        json!({"topic": "a\u{7}b"}),
        json!({"max_participants": 0}),
        json!({"colour": "red"}),
    ] {
        assert_error(
            api.patch(&ada, &format!("/rooms/{r}"), bad).await,
            400,
            "bad_request",
        )
        .await;
    }
    assert_error(
        api.patch(&bob, &format!("/rooms/{r}"), json!({"topic": "mine"}))
            .await,
        403,
        "forbidden",
    )
    .await;
    // Turning it private hides it from strangers' lists.
    let eve = api.login("eve").await;
    api.expect(
        api.patch(&ada, &format!("/rooms/{r}"), json!({"private": true}))
            .await,
        200,
    )
    .await;
    let list = api.expect(api.get(&eve, "/rooms").await, 200).await;
    assert!(
        list["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["id"] != r.as_str())
    );
    assert_error(
        api.get(&eve, &format!("/rooms/{r}/messages")).await,
        404,
        "not_found",
    )
    .await;
    let mine = api.expect(api.get(&bob, "/rooms").await, 200).await;
    let it = mine["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == r.as_str())
        .unwrap();
    assert_eq!(it["role"], "member");
    assert_eq!(it["member_count"], 2);
}

#[tokio::test]
async fn profiles_are_checked_found_by_prefix_and_pushed_to_who_shares_a_room() {
    let api = spawn_api().await;
    let ada = api.login("ada").await;
    let bob = api.login("bob").await;
    let _cy = api.login("cy").await;
    let r = room(&api, &ada, false).await;
    api.expect(
        api.post(&bob, &format!("/rooms/{r}/join"), json!({})).await,
        200,
    )
    .await;
    let (_bus, mut users) = api.watch("users").await;
    let me = api
        .expect(
            api.patch(&ada, "/users/me", json!({"display_name": "Ada L.", "bio": "first programmer", "avatar_url": "https://example.invalid/a.png", "abilities": ["telepathy", "math", "telepathy"]}))
                .await,
            200,
        )
        .await;
    assert_eq!(me["abilities"], json!(["telepathy", "math"]));
    let m = tokio::time::timeout(std::time::Duration::from_secs(5), users.recv())
        .await
        .unwrap()
        .unwrap();
    let message: Value = serde_json::from_slice(&m.payload).unwrap();
    let mut audience: Vec<String> = serde_json::from_value(message["users"].clone()).unwrap();
    audience.sort();
    let mut expected = vec![ada.id.clone(), bob.id.clone()];
    expected.sort();
    assert_eq!(
        audience, expected,
        "those who share a room, and the user; not cy"
    );
    let frame: Value = serde_json::from_str(message["frame"].as_str().unwrap()).unwrap();
    assert_eq!(frame["type"], "profile");
    assert_eq!(frame["display_name"], "Ada L.");

    let got = api.expect(api.get(&bob, "/users/ada").await, 200).await;
    assert_eq!(got["id"], ada.id.as_str());
    assert_eq!(got["bio"], "first programmer");
    assert_eq!(got["status"], "offline");
    assert_eq!(got["online"], false);
    assert_eq!(
        api.expect(api.get(&bob, &format!("/users/{}", ada.id)).await, 200)
            .await["name"],
        "ada"
    );
    assert_error(api.get(&bob, "/users/nobody").await, 404, "not_found").await;
    // Clearing a field.
    let cleared = api
        .expect(
            api.patch(&ada, "/users/me", json!({"bio": "", "abilities": []}))
                .await,
            200,
        )
        .await;
    assert!(cleared.get("bio").is_none());
    assert_eq!(cleared["abilities"], json!([]));

    let seventeen: Vec<String> = (0..17).map(|i| format!("t{i}")).collect();
    for bad in [
        json!({"avatar_url": "http://example.invalid/a.png"}),
        json!({"avatar_url": "javascript:alert(1)"}),
        json!({"avatar_url": format!("https://{}", "a".repeat(510))}),
        json!({"display_name": "x".repeat(65)}),
        json!({"bio": "b".repeat(1025)}),
        json!({"abilities": seventeen}),
        json!({"abilities": ["x".repeat(33)]}),
        json!({"abilities": [""]}),
        json!({"nickname": "ada"}),
    ] {
        assert_error(
            api.patch(&ada, "/users/me", bad.clone()).await,
            400,
            "bad_request",
        )
        .await;
    }
    let still = api.expect(api.get(&ada, "/users/me").await, 200).await;
    assert_eq!(still["display_name"], "Ada L.");

    // Finding users by name prefix, paged.
    for name in ["adam", "adele", "adrian"] {
        api.login(name).await;
    }
    let page = api
        .expect(api.get(&bob, "/users?q=ad&limit=2").await, 200)
        .await;
    let names: Vec<&str> = page["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ada", "adam"]);
    let next = page["next"].as_str().unwrap();
    let rest = api
        .expect(
            api.get(&bob, &format!("/users?q=ad&limit=2&after={next}"))
                .await,
            200,
        )
        .await;
    let names: Vec<&str> = rest["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["adele", "adrian"]);
    assert!(rest.get("next").is_none());
    assert_eq!(
        api.expect(api.get(&bob, "/users?q=%25").await, 200).await["users"],
        json!([])
    );
    assert_error(api.get(&bob, "/users").await, 400, "bad_request").await;
    assert_error(
        api.get(&bob, &format!("/users?q={}", "a".repeat(65))).await,
        400,
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn every_new_route_refuses_outsiders_with_404_and_members_with_403_changing_nothing() {
    let api = spawn_api().await;
    let own = api.login("own").await;
    let mia = api.login("mia").await;
    let eve = api.login("eve").await;
    let tim = api.login("tim").await;
    let r = room(&api, &own, true).await;
    bring_in(&api, &r, &own, &mia).await;
    bring_in(&api, &r, &own, &tim).await;
    let pending = api
        .expect(
            api.post(&own, &format!("/rooms/{r}/invites"), json!({"user": "eve"}))
                .await,
            201,
        )
        .await;
    let invite = pending["id"].as_str().unwrap().to_owned();
    api.expect(
        api.post(
            &own,
            &format!("/rooms/{r}/mute"),
            json!({"user": "tim", "duration": 600}),
        )
        .await,
        204,
    )
    .await;
    api.expect(
        api.post(&own, &format!("/rooms/{r}/ban"), json!({"user": "own2"}))
            .await,
        404,
    )
    .await;
    let before = api.snapshot().await;

    let routes: Vec<(&str, String, Value)> = vec![
        ("PATCH", format!("/rooms/{r}"), json!({"topic": "hijacked"})),
        (
            "PATCH",
            format!("/rooms/{r}/participants/{}", mia.id),
            json!({"role": "owner"}),
        ),
        (
            "PATCH",
            format!("/rooms/{r}/participants/{}", own.id),
            json!({"role": "member"}),
        ),
        (
            "POST",
            format!("/rooms/{r}/invites"),
            json!({"user": "eve"}),
        ),
        ("POST", format!("/rooms/{r}/invite-links"), json!({})),
        ("POST", format!("/rooms/{r}/kick"), json!({"user": "tim"})),
        ("POST", format!("/rooms/{r}/ban"), json!({"user": "tim"})),
        ("DELETE", format!("/rooms/{r}/ban/tim"), Value::Null),
        ("POST", format!("/rooms/{r}/mute"), json!({"user": "own"})),
        ("DELETE", format!("/rooms/{r}/mute/tim"), Value::Null),
        ("GET", format!("/rooms/{r}/bans"), Value::Null),
        ("GET", format!("/rooms/{r}/audit"), Value::Null),
        ("DELETE", format!("/rooms/{r}"), Value::Null),
    ];
    for (method, path, body) in &routes {
        for (who, status, code) in [(&eve, 404, "not_found"), (&mia, 403, "forbidden")] {
            let mut req = api
                .http
                .request(method.parse().unwrap(), format!("{}{path}", api.url))
                .bearer_auth(&who.token);
            if !body.is_null() {
                req = req.json(body);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(
                resp.status().as_u16(),
                status,
                "{method} {path} as {}",
                who.name
            );
            let body: Value = resp.json().await.unwrap();
            assert_eq!(
                body["error"]["code"], code,
                "{method} {path} as {}",
                who.name
            );
        }
    }
    // Room info: outsiders learn nothing either.
    assert_error(
        api.get(&eve, &format!("/rooms/{r}")).await,
        404,
        "not_found",
    )
    .await;
    // Someone else's invitation: neither accepted nor declined by another user.
    for who in [&mia, &tim] {
        assert_error(
            api.post(who, &format!("/invites/{invite}/accept"), json!({}))
                .await,
            404,
            "not_found",
        )
        .await;
        assert_error(
            api.post(who, &format!("/invites/{invite}/decline"), json!({}))
                .await,
            404,
            "not_found",
        )
        .await;
    }
    // The muted member's writes are refused too.
    assert_refused(
        api.internal_send(&tim, &r, json!({"body": "let me talk"}))
            .await,
        "forbidden",
    );
    assert_eq!(
        api.snapshot().await,
        before,
        "refused calls changed nothing"
    );
    // An unknown room is 404 for everyone, owners included.
    let ghost = "00000000-0000-7000-8000-000000000000";
    assert_error(
        api.patch(&own, &format!("/rooms/{ghost}"), json!({"topic": "x"}))
            .await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        api.post(
            &own,
            &format!("/rooms/{ghost}/kick"),
            json!({"user": "tim"}),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(api.snapshot().await, before);
}
