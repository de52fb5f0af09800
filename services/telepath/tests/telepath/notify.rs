//! Personal notifications and announcements on the split deployment (two
//! gateways, a real Redis, real processes): made while the user is away,
//! listed and counted for them, delivered live to every connection, and
//! announcements replayed on connect until dismissed.

use std::time::Duration;

use reqwest::Client;
use serde_json::{Value, json};
use telepath_shared::testing::WsClient;

use crate::cluster::start_cluster_with;
use crate::helpers::{TestUser, create_room, eventually, get_json, login, login_as};

async fn notifications(http: &Client, api: &str, user: &TestUser, query: &str) -> Value {
    let url = format!("{api}/notifications{query}");
    get_json(http, &url, |r| r.bearer_auth(&user.token)).await
}

pub(crate) async fn post(http: &Client, url: String, user: &TestUser, body: Value) -> (u16, Value) {
    let resp = http
        .post(url)
        .bearer_auth(&user.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Connects `user` to `gw` once the welcome counts `n` unread notifications
/// (gateways with Redis read the count the api keeps there, written a
/// moment after the change).
async fn connect_counting(gw: &str, user: &TestUser, n: i64) -> WsClient {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let c = WsClient::connect(gw, &user.token).await.unwrap();
        if c.welcome["notifications_unread"] == n {
            return c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "welcome still says {}",
            c.welcome
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn join_rest(http: &Client, api: &str, user: &TestUser, room: &str) {
    let resp = http
        .post(format!("{api}/rooms/{room}/join"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn mentions_replies_and_reactions_wait_for_the_offline_and_reach_every_connection() {
    let cluster = start_cluster_with(2, 1, &[("TELEPATH_HEARTBEAT_MS", "5000".into())]).await;
    let http = Client::new();
    let api = &cluster.api.url;
    let ada = login(&http, api, "ada").await;
    let bob = login(&http, api, "bob").await;
    let carol = login(&http, api, "carol").await;
    let room = create_room(&http, api, &ada, "lobby").await;
    join_rest(&http, api, &bob, &room).await;

    // Bob is offline: a mention, a self-mention and a non-member's mention.
    let mut a = WsClient::connect(&cluster.gateways[0].url, &ada.token)
        .await
        .unwrap();
    a.join(&room).await;
    let sent = a
        .ok(json!({"type": "send", "room": room, "body": "hey @bob, and @ada and @carol"}))
        .await;
    let mention_id = sent["id"].as_str().unwrap().to_owned();
    let list = notifications(&http, api, &bob, "").await;
    assert_eq!(list["unread"], 1, "{list}");
    let n = &list["notifications"][0];
    assert_eq!(n["kind"], "mention");
    assert_eq!(n["room"], room.as_str());
    assert_eq!(n["message_id"], mention_id.as_str());
    assert_eq!(n["from"]["name"], "ada");
    assert_eq!(n["read"], false);
    assert!(n["text"].as_str().unwrap().contains("@bob"));
    // Carol is no participant; ada is not told of herself.
    assert_eq!(
        notifications(&http, api, &carol, "").await["notifications"],
        json!([])
    );
    assert_eq!(
        notifications(&http, api, &ada, "").await["notifications"],
        json!([])
    );

    // Bob connects on both gateways: each welcome carries the count.
    let mut b0 = connect_counting(&cluster.gateways[0].url, &bob, 1).await;
    let mut b1 = connect_counting(&cluster.gateways[1].url, &bob, 1).await;
    b1.join(&room).await;
    let bobs = b1
        .ok(json!({"type": "send", "room": room, "body": "my message"}))
        .await;
    let bobs_id = bobs["id"].as_str().unwrap().to_owned();

    // A reply and two reactions to bob's message, live on both connections.
    a.ok(json!({"type": "send", "room": room, "body": "a reply", "reply_to": bobs_id}))
        .await;
    for c in [&mut b0, &mut b1] {
        let n = c.next_of("notification").await;
        assert_eq!(n["kind"], "reply");
        assert_eq!(n["from"]["name"], "ada");
        assert_eq!(n["text"], "a reply");
    }
    for emoji in ["👍", "🎉"] {
        a.ok(json!({"type": "react", "room": room, "id": bobs_id, "emoji": emoji, "on": true}))
            .await;
        let n = b0.next_of("notification").await;
        assert_eq!(n["kind"], "reaction");
        assert!(n["text"].as_str().unwrap().starts_with(emoji), "{n}");
    }
    // Bob reacting to his own message tells nobody.
    b1.ok(json!({"type": "react", "room": room, "id": bobs_id, "emoji": "😀", "on": true}))
        .await;
    // Coalesced: one reaction notification for the message, the latest.
    let list = notifications(&http, api, &bob, "").await;
    let kinds: Vec<&str> = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["reaction", "reply", "mention"], "{list}");
    assert!(
        list["notifications"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("🎉")
    );
    assert_eq!(list["unread"], 3);

    // Marked read by id on one device: every device hears the new count.
    let first = list["notifications"][2]["id"].as_str().unwrap().to_owned();
    let (status, read) = post(
        &http,
        format!("{api}/notifications/read"),
        &bob,
        json!({"ids": [first]}),
    )
    .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["unread"], 2);
    for c in [&mut b0, &mut b1] {
        let e = c.next_of("notifications_read").await;
        assert_eq!(e["unread"], 2);
    }
    let unread = notifications(&http, api, &bob, "?unread=true").await;
    assert_eq!(unread["notifications"].as_array().unwrap().len(), 2);
    // Then everything up to the newest.
    let newest = list["notifications"][0]["id"].as_str().unwrap().to_owned();
    let (_, read) = post(
        &http,
        format!("{api}/notifications/read"),
        &bob,
        json!({"up_to": newest}),
    )
    .await;
    assert_eq!(read["unread"], 0);
    connect_counting(&cluster.gateways[1].url, &bob, 0).await;
    // Paging: newest first, `before` the last one seen.
    let page = notifications(&http, api, &bob, "?limit=2").await;
    assert_eq!(page["has_more"], true);
    let last = page["notifications"][1]["id"].as_str().unwrap();
    let rest = notifications(&http, api, &bob, &format!("?limit=2&before={last}")).await;
    assert_eq!(rest["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(rest["has_more"], false);

    // Once bob leaves the room, its notifications are no longer his to see.
    b1.ok(json!({"type": "leave", "room": room})).await;
    a.ok(json!({"type": "send", "room": room, "body": "@bob are you there?"}))
        .await;
    let list = notifications(&http, api, &bob, "").await;
    assert_eq!(list["notifications"], json!([]), "{list}");
}

#[tokio::test]
async fn invitations_and_dms_while_offline_are_notified_and_bad_input_is_refused() {
    // Without the per-user cap a gateway asks the api for the welcome's count.
    let cluster = start_cluster_with(
        1,
        1,
        &[
            ("TELEPATH_HEARTBEAT_MS", "5000".into()),
            ("TELEPATH_MAX_CONNS_PER_USER", "0".into()),
        ],
    )
    .await;
    let http = Client::new();
    let api = &cluster.api.url;
    let ada = login(&http, api, "ada").await;
    let bob = login(&http, api, "bob").await;
    let (status, room) = post(
        &http,
        format!("{api}/rooms"),
        &ada,
        json!({"name": "secret", "private": true}),
    )
    .await;
    assert_eq!(status, 201);
    let room = room["id"].as_str().unwrap().to_owned();
    let (status, _) = post(
        &http,
        format!("{api}/rooms/{room}/invites"),
        &ada,
        json!({"user": bob.id}),
    )
    .await;
    assert_eq!(status, 201);
    let mut a = WsClient::connect(&cluster.gateways[0].url, &ada.token)
        .await
        .unwrap();
    let dm = a
        .ok(json!({"type": "dm", "to": "bob", "body": "psst"}))
        .await;
    assert_eq!(dm["delivered"], false);
    eventually(Duration::from_secs(5), "both notifications", || {
        let (http, api, bob) = (http.clone(), api.clone(), bob.clone());
        async move { notifications(&http, &api, &bob, "").await["unread"] == 2 }
    })
    .await;
    let list = notifications(&http, api, &bob, "").await;
    let dm_note = &list["notifications"][0];
    assert_eq!(dm_note["kind"], "dm");
    assert_eq!(dm_note["text"], "psst");
    assert_eq!(dm_note["message_id"], dm["id"]);
    let invite = &list["notifications"][1];
    assert_eq!(invite["kind"], "invite");
    assert_eq!(invite["room"], room.as_str());
    assert!(invite["text"].as_str().unwrap().contains("secret"));

    // Online now: a DM is no notification (bob has it live).
    let mut b = WsClient::connect(&cluster.gateways[0].url, &bob.token)
        .await
        .unwrap();
    assert_eq!(b.welcome["notifications_unread"], 2);
    let dm = a
        .ok(json!({"type": "dm", "to": "bob", "body": "you there"}))
        .await;
    assert_eq!(dm["delivered"], true);
    b.ok(json!({"type": "ping"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(notifications(&http, api, &bob, "").await["unread"], 2);

    // Bad input: a clear 400 each.
    let url = || format!("{api}/notifications/read");
    // Nothing named: nothing changes, the count comes back.
    for nothing in [json!({}), json!({"ids": []})] {
        let (status, read) = post(&http, url(), &bob, nothing).await;
        assert_eq!(status, 200);
        assert_eq!(read["unread"], 2);
    }
    for body in [
        json!({"ids": ["nope"]}),
        json!({"up_to": "NOPE"}),
        json!({"ids": [dm["id"], "NOT-AN-ID"]}),
        json!({"ids": vec![dm["id"].clone(); 501]}),
        json!({"what": 1}),
        json!({"ids": "x"}),
    ] {
        let (status, err) = post(&http, url(), &bob, body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"]["code"], "bad_request");
    }
    for q in ["?limit=0", "?before=x", "?unread=maybe", "?limit=x"] {
        let resp = http
            .get(format!("{api}/notifications{q}"))
            .bearer_auth(&bob.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{q}");
    }
    let resp = http
        .get(format!("{api}/notifications"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Someone else's ids change nothing.
    let bobs = notifications(&http, api, &bob, "").await;
    let id = bobs["notifications"][0]["id"].clone();
    let (status, read) = post(&http, url(), &ada, json!({"ids": [id]})).await;
    assert_eq!(status, 200);
    assert_eq!(read["unread"], 0);
    assert_eq!(notifications(&http, api, &bob, "").await["unread"], 2);
}

#[tokio::test]
async fn announcements_reach_everyone_now_and_those_who_connect_later_until_dismissed() {
    let cluster = start_cluster_with(2, 1, &[("TELEPATH_HEARTBEAT_MS", "5000".into())]).await;
    let http = Client::new();
    let api = &cluster.api.url;
    let root = login_as(&http, api, "root", "admin").await;
    let ada = login(&http, api, "ada").await;
    let bob = login(&http, api, "bob").await;
    let mut a = WsClient::connect(&cluster.gateways[1].url, &ada.token)
        .await
        .unwrap();
    let url = || format!("{api}/announcements");

    // Only admins; bad input refused.
    let body = json!({"title": "Maintenance", "body": "Tonight 22:00", "level": "warning"});
    assert_eq!(post(&http, url(), &ada, body.clone()).await.0, 403);
    for bad in [
        json!({"title": "", "body": "x", "level": "info"}),
        json!({"title": "t", "body": "", "level": "info"}),
        json!({"title": "t".repeat(201), "body": "x", "level": "info"}),
        json!({"title": "t", "body": "x", "level": "loud"}),
        json!({"title": "t", "body": "x", "level": "info", "extra": 1}),
    ] {
        let (status, err) = post(&http, url(), &root, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {err}");
    }

    let (status, made) = post(&http, url(), &root, body).await;
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["level"], "warning");
    assert_eq!(made["created_by"]["name"], "root");
    // Live to whoever is connected, on any gateway.
    let live = a.next_of("announcement").await;
    assert_eq!(live["id"], id.as_str());
    assert_eq!(live["title"], "Maintenance");

    // One already expired is kept on record and shown to nobody.
    let (status, past) = post(
        &http,
        url(),
        &root,
        json!({"title": "Old", "body": "long ago", "level": "info", "expires_at": "2001-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(status, 201, "{past}");
    // One that expires at once is never sent to those who come later.
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(800)).to_rfc3339();
    let (status, _) = post(
        &http,
        url(),
        &root,
        json!({"title": "Blink", "body": "gone soon", "level": "info", "expires_at": soon}),
    )
    .await;
    assert_eq!(status, 201);
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // Bob was offline: he gets it after his welcome, on every connect.
    for _ in 0..2 {
        let mut b = WsClient::connect(&cluster.gateways[0].url, &bob.token)
            .await
            .unwrap();
        let got = b.next_of("announcement").await;
        assert_eq!(got["id"], id.as_str());
        assert!(
            !b.sees_within(Duration::from_millis(300), |f| f["type"] == "announcement")
                .await
        );
    }
    let listed = get_json(&http, &url(), |r| r.bearer_auth(&bob.token)).await;
    assert_eq!(
        listed["announcements"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
    assert_eq!(listed["announcements"][0]["dismissed"], false);

    // Dismissed: his other connections hear it; later connects do not get it.
    let mut b = WsClient::connect(&cluster.gateways[1].url, &bob.token)
        .await
        .unwrap();
    b.next_of("announcement").await;
    let resp = http
        .post(format!("{api}/announcements/{id}/dismiss"))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let e = b.next_of("announcement_dismissed").await;
    assert_eq!(e["id"], id.as_str());
    let mut again = WsClient::connect(&cluster.gateways[0].url, &bob.token)
        .await
        .unwrap();
    assert!(
        !again
            .sees_within(Duration::from_millis(500), |f| f["type"] == "announcement")
            .await
    );
    let listed = get_json(&http, &url(), |r| r.bearer_auth(&bob.token)).await;
    assert_eq!(listed["announcements"][0]["dismissed"], true);
    // Ada has not dismissed it.
    let mut a2 = WsClient::connect(&cluster.gateways[0].url, &ada.token)
        .await
        .unwrap();
    assert_eq!(a2.next_of("announcement").await["id"], id.as_str());
    // Unknown and malformed ids.
    for (path, status) in [
        (
            format!("{api}/announcements/{}/dismiss", uuid::Uuid::now_v7()),
            404,
        ),
        (format!("{api}/announcements/nope/dismiss"), 400),
    ] {
        let resp = http
            .post(path)
            .bearer_auth(&bob.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status);
    }
}

#[tokio::test]
async fn a_user_keeps_at_most_five_hundred_notifications_oldest_read_first() {
    let node = crate::helpers::spawn_node(|c| c.gateway.max_rate_per_s = 100_000).await;
    let (http, url) = (&node.http, &node.url);
    let ada = login(http, url, "ada").await;
    let bob = login(http, url, "bob").await;
    let room = create_room(http, url, &ada, "busy").await;
    join_rest(http, url, &bob, &room).await;
    let mut a = WsClient::connect(url, &ada.token).await.unwrap();
    a.join(&room).await;
    for i in 0..10 {
        a.ok(json!({"type": "send", "room": room, "body": format!("@bob early {i}")}))
            .await;
    }
    // The ten earliest are read.
    let list = notifications(http, url, &bob, "?limit=1").await;
    let newest = list["notifications"][0]["id"].clone();
    post(
        http,
        format!("{url}/notifications/read"),
        &bob,
        json!({"up_to": newest}),
    )
    .await;
    for i in 0..495 {
        a.ok(json!({"type": "send", "room": room, "body": format!("@bob later {i}")}))
            .await;
    }
    // 505 made, 500 kept: the five gone are read ones, every unread one stays.
    let mut all = Vec::new();
    let mut before = String::new();
    loop {
        let page = notifications(http, url, &bob, &format!("?limit=100{before}")).await;
        let items = page["notifications"].as_array().unwrap().clone();
        before = format!("&before={}", items.last().unwrap()["id"].as_str().unwrap());
        all.extend(items);
        if page["has_more"] != true {
            assert_eq!(page["unread"], 495);
            break;
        }
    }
    assert_eq!(all.len(), 500);
    let read = all.iter().filter(|n| n["read"] == true).count();
    assert_eq!(read, 5);
    assert!(all.iter().any(|n| n["text"] == "@bob early 9"));
    assert!(!all.iter().any(|n| n["text"] == "@bob early 0"));
}
