//! The server API on the split deployment (two gateways, real Redis):
//! keys made by the CLI and the admin routes, publishing to rooms (one,
//! and many at once) and to users, presence, rooms and members, disconnect;
//! scopes, room prefixes, revocation, and keys and user tokens each kept
//! to their own routes.

use reqwest::Client;
use serde_json::{Value, json};
use telepath_shared::testing::WsClient;

use crate::cluster::start_cluster;
use crate::helpers::{bin_dir, create_room, get_json, login, login_as};

/// `telepath apikey ARGS` against the database at `db`: its output.
fn cli(db: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(bin_dir().join("telepath"))
        .arg("apikey")
        .args(args)
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "telepath apikey {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `METHOD url` with `key` as the bearer and `body` as JSON: the status
/// and the JSON answer (null when there is none).
pub(crate) async fn call(
    http: &Client,
    method: &str,
    url: String,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method.parse().unwrap(), url).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_backend_publishes_reads_presence_manages_rooms_and_disconnects_with_a_scoped_key() {
    let cluster = start_cluster(2, 1).await;
    let http = Client::new();
    let api = &cluster.api.url;
    let ada = login(&http, api, "ada").await;
    let bob = login(&http, api, "bob").await;
    let room = create_room(&http, api, &ada, "billing-alerts").await;
    let other = create_room(&http, api, &ada, "random").await;
    let mut a = WsClient::connect(&cluster.gateways[0].url, &ada.token)
        .await
        .unwrap();
    let mut b = WsClient::connect(&cluster.gateways[1].url, &bob.token)
        .await
        .unwrap();
    a.join(&room).await;
    b.join(&room).await;

    // A key from the CLI: printed once, stored hashed, listed.
    let out = cli(
        &cluster.db_path(),
        &[
            "create",
            "--name",
            "billing",
            "--scope",
            "publish,presence",
            "--rooms",
            "billing-",
        ],
    );
    let key = out.lines().next().unwrap().trim().to_owned();
    assert!(key.starts_with("tpk_") && key.len() == 47, "{out}");
    let listed = cli(&cluster.db_path(), &["list"]);
    assert!(
        listed.contains("billing") && !listed.contains(&key[4..]),
        "{listed}"
    );
    assert!(!listed.contains("last_used_at"), "not used yet: {listed}");

    // Publish as a bot: committed, ordered and delivered on both gateways
    // like a user's send; a repeat with its client_id stores nothing new.
    let url = format!("{api}/api/rooms/{room}/publish");
    let (status, m) = call(
        &http,
        "POST",
        url.clone(),
        &key,
        Some(json!({"body": "invoice paid", "as": "billing-bot", "client_id": "inv-1"})),
    )
    .await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["from"]["name"], "billing-bot");
    for c in [&mut a, &mut b] {
        let got = c
            .wait_for(|f| f["type"] == "message" && f["body"] == "invoice paid")
            .await;
        assert_eq!(got["id"], m["id"]);
        assert_eq!(got["seq"], m["seq"]);
    }
    let (status, again) = call(
        &http,
        "POST",
        url.clone(),
        &key,
        Some(json!({"body": "invoice paid", "as": "billing-bot", "client_id": "inv-1"})),
    )
    .await;
    assert_eq!((status, &again["id"]), (201, &m["id"]));
    // As the system user.
    let (status, sys) = call(
        &http,
        "POST",
        url.clone(),
        &key,
        Some(json!({"body": "maintenance at 5"})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(sys["from"]["name"], "system");
    assert_eq!(
        sys["seq"],
        m["seq"].as_i64().unwrap() + 1,
        "the repeat took no seq"
    );

    // Many at once: one outcome each, the bad one alone refused.
    let (status, batch) = call(
        &http,
        "POST",
        format!("{api}/api/publish"),
        &key,
        Some(json!({"items": [
            {"room": room, "body": "one"},
            {"room": other, "body": "outside the prefix"},
            {"room": room, "body": "two", "as": "billing-bot"},
        ]})),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    let results = batch["results"].as_array().unwrap();
    assert_eq!(results[0]["message"]["body"], "one");
    assert_eq!(results[1]["error"]["code"], "forbidden");
    assert_eq!(
        results[2]["message"]["seq"].as_i64(),
        results[0]["message"]["seq"].as_i64().map(|s| s + 1)
    );
    let history = get_json(&http, &format!("{api}/rooms/{room}/messages"), |r| {
        r.bearer_auth(&bob.token)
    })
    .await;
    let bodies: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["invoice paid", "maintenance at 5", "one", "two"]);

    // A DM to a user who is offline waits for them.
    let cy = login(&http, api, "cy").await;
    let (status, dm) = call(
        &http,
        "POST",
        format!("{api}/api/users/{}/publish", cy.id),
        &key,
        Some(json!({"body": "your invoice", "as": "billing-bot"})),
    )
    .await;
    assert_eq!(status, 201, "{dm}");
    let mut c = WsClient::connect(&cluster.gateways[1].url, &cy.token)
        .await
        .unwrap();
    let got = c.wait_for(|f| f["type"] == "dm").await;
    assert_eq!(got["body"], "your invoice");
    assert_eq!(got["from"]["name"], "billing-bot");

    // Presence of the room and of users.
    let (status, p) = call(
        &http,
        "GET",
        format!("{api}/api/rooms/{room}/presence"),
        &key,
        None,
    )
    .await;
    assert_eq!(status, 200, "{p}");
    let online: Vec<&str> = p["online"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert!(
        online.contains(&ada.id.as_str()) && online.contains(&bob.id.as_str()),
        "{p}"
    );
    let nobody = "00000000-0000-4000-8000-000000000000";
    let (status, p) = call(
        &http,
        "GET",
        format!("{api}/api/presence?users={},{nobody}", cy.id),
        &key,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(p["online"][0]["id"], cy.id);
    assert_eq!(p["offline"], json!([nobody]));

    // Scopes: this key may not manage rooms nor disconnect; outside its
    // prefix it may not publish.
    let (status, e) = call(
        &http,
        "POST",
        format!("{api}/api/rooms"),
        &key,
        Some(json!({"name": "billing-x"})),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(e["error"]["message"], "missing scope: rooms");
    let (status, _) = call(
        &http,
        "POST",
        format!("{api}/api/users/{}/disconnect", bob.id),
        &key,
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &http,
        "POST",
        format!("{api}/api/rooms/{other}/publish"),
        &key,
        Some(json!({"body": "x"})),
    )
    .await;
    assert_eq!(status, 403);

    // A key from the admin routes with the other scopes.
    let root = login_as(&http, api, "root", "admin").await;
    let (status, made) = call(
        &http,
        "POST",
        format!("{api}/admin/api-keys"),
        &root.token,
        Some(json!({"name": "ops", "scopes": ["rooms", "users"]})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let ops = made["key"].as_str().unwrap().to_owned();
    let (status, listed) = call(
        &http,
        "GET",
        format!("{api}/admin/api-keys"),
        &root.token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&ops[4..]), "no secret listed");
    // A private room of the application, with members added.
    let (status, private) = call(
        &http,
        "POST",
        format!("{api}/api/rooms"),
        &ops,
        Some(json!({"name": "ops-war-room", "private": true})),
    )
    .await;
    assert_eq!(status, 201, "{private}");
    let private_id = private["id"].as_str().unwrap().to_owned();
    let (status, added) = call(
        &http,
        "POST",
        format!("{api}/api/rooms/{private_id}/members"),
        &ops,
        Some(json!({"users": [bob.id, cy.id]})),
    )
    .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["added"].as_array().unwrap().len(), 2);
    let joined = b.request(json!({"type": "join", "room": private_id})).await;
    assert_eq!(joined["ok"], true, "{joined}");
    // Disconnect: every connection of cy closes with 4003.
    let (status, d) = call(
        &http,
        "POST",
        format!("{api}/api/users/{}/disconnect", cy.id),
        &ops,
        None,
    )
    .await;
    assert_eq!((status, d["disconnected"].as_u64()), (200, Some(1)));
    assert_eq!(c.closed().await, Some(4003));

    // Revoked: refused from then on; keys never work on user routes and
    // user tokens never on /api/.
    let id = made["id"].as_str().unwrap();
    let resp = http
        .delete(format!("{api}/admin/api-keys/{id}"))
        .bearer_auth(&root.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let (status, e) = call(
        &http,
        "POST",
        format!("{api}/api/rooms"),
        &ops,
        Some(json!({"name": "ops-2"})),
    )
    .await;
    assert_eq!(
        (status, e["error"]["message"].as_str()),
        (401, Some("revoked_api_key"))
    );
    let (status, e) = call(
        &http,
        "POST",
        url.clone(),
        &ada.token,
        Some(json!({"body": "x"})),
    )
    .await;
    assert_eq!(
        (status, e["error"]["message"].as_str()),
        (401, Some("not_an_api_key"))
    );
    let (status, _) = call(&http, "GET", format!("{api}/rooms"), &key, None).await;
    assert_eq!(status, 401);
    let made_up = format!("tpk_{}", "A".repeat(43));
    let (status, e) = call(
        &http,
        "POST",
        url.clone(),
        &made_up,
        Some(json!({"body": "x"})),
    )
    .await;
    assert_eq!(
        (status, e["error"]["message"].as_str()),
        (401, Some("unknown_api_key"))
    );
    // Not an admin: no key management.
    let (status, _) = call(
        &http,
        "GET",
        format!("{api}/admin/api-keys"),
        &ada.token,
        None,
    )
    .await;
    assert_eq!(status, 403);
    // Bad input.
    for body in [
        json!({}),
        json!({"body": ""}),
        json!({"body": "x", "as": "not a name"}),
        json!({"body": "x", "room": room}),
    ] {
        let (status, _) = call(&http, "POST", url.clone(), &key, Some(body.clone())).await;
        assert_eq!(status, 400, "{body}");
    }
    let (status, _) = call(
        &http,
        "POST",
        format!("{api}/api/publish"),
        &key,
        Some(json!({"items": []})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(
        &http,
        "GET",
        format!("{api}/api/presence?users=nope"),
        &key,
        None,
    )
    .await;
    assert_eq!(status, 400);
    let revoked = cli(
        &cluster.db_path(),
        &["revoke", made["id"].as_str().unwrap()],
    );
    assert!(revoked.contains("revoked"));
    // The keys used say when (to the minute).
    let listed = cli(&cluster.db_path(), &["list"]);
    assert_eq!(listed.matches("last_used_at").count(), 2, "{listed}");
}

#[tokio::test]
async fn a_backend_notifies_a_user_live_and_offline_once_per_client_id() {
    let node = crate::helpers::spawn_node(|_| {}).await;
    let http = &node.http;
    let admin = login_as(http, &node.url, "root", "admin").await;
    let created: Value = http
        .post(format!("{}/admin/api-keys", node.url))
        .bearer_auth(&admin.token)
        .json(&json!({"name": "exports", "scopes": ["publish"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let bob = login(http, &node.url, "bob").await;
    let carol = login(http, &node.url, "carol").await;
    let mut b = WsClient::connect(&node.url, &bob.token).await.unwrap();
    let publish = |to: &str, body: Value| {
        let (http, url, key) = (
            http.clone(),
            format!("{}/api/users/{to}/publish", node.url),
            key.clone(),
        );
        async move { call(&http, "POST", url, &key, Some(body)).await }
    };

    // Live: the notification event on bob's connection, kind `app`.
    let (status, sent) = publish(
        &bob.id,
        json!({"kind": "notification", "body": "Your export is ready", "as": "exports", "client_id": "exp-1"}),
    )
    .await;
    assert_eq!(status, 201, "{sent}");
    assert!(sent.get("dm").is_none(), "{sent}");
    let n = &sent["notification"];
    assert_eq!(n["kind"], "app");
    assert_eq!(n["text"], "Your export is ready");
    assert_eq!(n["from"]["name"], "exports");
    assert_eq!(n["read"], false);
    let event = b.next_of("notification").await;
    assert_eq!(event["id"], n["id"]);
    assert_eq!(event["kind"], "app");
    // A repeat of its client_id: the first, and no second event.
    let (status, again) = publish(
        &bob.id,
        json!({"kind": "notification", "body": "Your export is ready", "as": "exports", "client_id": "exp-1"}),
    )
    .await;
    assert_eq!((status, &again["notification"]["id"]), (201, &n["id"]));
    assert!(
        !b.sees_within(std::time::Duration::from_millis(300), |f| f["type"]
            == "notification")
            .await,
        "a repeat publishes nothing"
    );

    // Offline: kept, listed and counted for when carol comes.
    let (status, _) = publish(
        &carol.id,
        json!({"kind": "notification", "body": "Welcome aboard"}),
    )
    .await;
    assert_eq!(status, 201);
    let list = get_json(http, &format!("{}/notifications", node.url), |r| {
        r.bearer_auth(&carol.token)
    })
    .await;
    assert_eq!(list["unread"], 1, "{list}");
    assert_eq!(list["notifications"][0]["kind"], "app");
    assert_eq!(list["notifications"][0]["text"], "Welcome aboard");
    assert_eq!(list["notifications"][0]["from"]["name"], "system");

    // The default is still a DM.
    let (status, dm) = publish(&bob.id, json!({"body": "a plain DM"})).await;
    assert_eq!(status, 201, "{dm}");
    assert!(
        dm["dm"].is_object() && dm.get("notification").is_none(),
        "{dm}"
    );

    // Bad input.
    for (to, body, want) in [
        (
            carol.id.as_str(),
            json!({"kind": "shout", "body": "x"}),
            400,
        ),
        (
            carol.id.as_str(),
            json!({"kind": "notification", "body": ""}),
            400,
        ),
        (
            carol.id.as_str(),
            json!({"kind": "notification", "body": "x", "client_id": ""}),
            400,
        ),
        (
            "0190a0a0-0000-7000-8000-000000000000",
            json!({"kind": "notification", "body": "x"}),
            404,
        ),
    ] {
        let (status, answer) = publish(to, body.clone()).await;
        assert_eq!(status, want, "{body} -> {answer}");
    }
}
