//! Rooms people can run (issue 21) with real processes: a kick or a ban
//! reaches every connection of the user on every gateway within a second
//! (timed over 100 kicks and bans), after which nothing of the room reaches
//! them and their room frames are refused; mutes refuse typing on the
//! gateway; invitations reach the invitee live and on connect; the room
//! directory (room_created / room_updated / room_closed) reaches users who
//! did not join; profile events; last seen survives a restart.

use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{Value, json};
use telepath_shared::testing::{TestUser, WsClient};

use crate::cluster::start_cluster;
use crate::helpers::{Service, create_room, get_json, login, spawn_node};

/// `method path` as `user` with an optional JSON body; the status and JSON answer.
async fn call(
    http: &Client,
    base: &str,
    user: &TestUser,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http
        .request(method.parse().unwrap(), format!("{base}{path}"))
        .bearer_auth(&user.token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Whether `f` is the `member` `left` event of `user` with `reason`.
fn left_with(f: &Value, user: &str, reason: &str) -> bool {
    f["type"] == "member"
        && f["action"] == "left"
        && f["user"]["id"] == user
        && f["reason"] == reason
}

/// Removes the buffered frames matching `pred` (repeats of an event that
/// came both from the room and from the user's own channel).
async fn drain(ws: &mut WsClient, pred: impl Fn(&Value) -> bool) {
    while ws.pending().iter().any(&pred) {
        ws.wait_for(&pred).await;
    }
}

/// The p-th percentile of sorted `xs`.
fn percentile(xs: &[Duration], p: f64) -> Duration {
    let i = ((xs.len() as f64 - 1.0) * p).round() as usize;
    xs[i]
}

#[tokio::test]
async fn a_kick_or_ban_reaches_every_connection_on_every_gateway_within_a_second() {
    let cluster = start_cluster(2, 1).await;
    let (api, gw0, gw1) = (
        &cluster.api.url,
        &cluster.gateways[0].url,
        &cluster.gateways[1].url,
    );
    let http = Client::new();
    let ada = login(&http, api, "ada").await;
    let bob = login(&http, api, "bob").await;
    let room = create_room(&http, api, &ada, "moderated").await;
    let mut b0 = WsClient::connect(gw0, &bob.token).await.unwrap();
    let mut b1 = WsClient::connect(gw1, &bob.token).await.unwrap();
    b0.join(&room).await;
    b1.join(&room).await;

    // 100 removals, kicks and bans in turn: the time from the REST call to
    // the event on the later of bob's two connections.
    let rounds: usize = std::env::var("TELEPATH_KICK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let (path, reason) = if i % 2 == 0 {
            (format!("/rooms/{room}/kick"), "kicked")
        } else {
            (format!("/rooms/{room}/ban"), "banned")
        };
        let is_left = |f: &Value| left_with(f, &bob.id, reason);
        let start = Instant::now();
        let (status, _) = call(
            &http,
            api,
            &ada,
            "POST",
            &path,
            Some(json!({"user": bob.id})),
        )
        .await;
        assert_eq!(status, 204);
        let (t0, t1) = tokio::join!(
            async {
                b0.wait_for(is_left).await;
                Instant::now()
            },
            async {
                b1.wait_for(is_left).await;
                Instant::now()
            }
        );
        times.push(t0.max(t1) - start);
        if i + 1 == rounds {
            break;
        }
        if reason == "banned" {
            let (status, _) = call(
                &http,
                api,
                &ada,
                "DELETE",
                &format!("/rooms/{room}/ban/{}", bob.id),
                None,
            )
            .await;
            assert_eq!(status, 204);
        }
        // Paced under the per-connection frame rate limit (50/s).
        tokio::time::sleep(Duration::from_millis(30)).await;
        b0.join(&room).await;
        b1.join(&room).await;
        drain(&mut b0, is_left).await;
        drain(&mut b1, is_left).await;
    }
    times.sort();
    let (p50, p99, max) = (
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[times.len() - 1],
    );
    eprintln!(
        "revocation over {rounds} kicks and bans, REST call to the last connection's event: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    assert!(
        max < Duration::from_secs(1),
        "every revocation within 1 s: {max:?}"
    );

    // Bob is banned now: nothing published afterwards reaches him, his
    // room frames are refused on both gateways, and REST says 404.
    let mut a = WsClient::connect(gw0, &ada.token).await.unwrap();
    a.join(&room).await;
    a.ok(json!({"type": "send", "room": room, "body": "after the ban"}))
        .await;
    for b in [&mut b0, &mut b1] {
        assert!(
            !b.sees_within(Duration::from_millis(500), |f| f["body"] == "after the ban")
                .await,
            "a banned user gets nothing of the room"
        );
        for frame in [
            json!({"type": "send", "room": room, "body": "let me back"}),
            json!({"type": "typing", "room": room, "active": true}),
        ] {
            let reply = b.request(frame).await;
            assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
        }
        let reply = b.request(json!({"type": "join", "room": room})).await;
        assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
    }
    let (status, _) = call(
        &http,
        api,
        &bob,
        "GET",
        &format!("/rooms/{room}/messages"),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

/// Mutes, invitations and the directory, on one deployment (`gw_a`,
/// `gw_b`: gateways, the same for the all-in-one).
async fn room_life(gw_a: &str, gw_b: &str, api: &str) {
    let http = Client::new();
    let ada = login(&http, api, "ada").await;
    let bob = login(&http, api, "bob").await;
    let cy = login(&http, api, "cy").await;
    let mut a = WsClient::connect(gw_a, &ada.token).await.unwrap();
    let mut b = WsClient::connect(gw_b, &bob.token).await.unwrap();
    let mut c = WsClient::connect(gw_b, &cy.token).await.unwrap();

    // The directory: a new public room reaches everyone connected, unjoined.
    let room = create_room(&http, api, &ada, "lobby").await;
    for ws in [&mut a, &mut b, &mut c] {
        let created = ws.next_of("room_created").await;
        assert_eq!(created["room"]["id"], room.as_str());
        assert_eq!(created["by"]["name"], "ada");
    }
    let (status, _) = call(
        &http,
        api,
        &ada,
        "PATCH",
        &format!("/rooms/{room}"),
        Some(json!({"topic": "hello"})),
    )
    .await;
    assert_eq!(status, 200);
    for ws in [&mut a, &mut b, &mut c] {
        assert_eq!(ws.next_of("room_updated").await["room"]["topic"], "hello");
    }

    // A private room: only its participants hear of it.
    let (status, secret) = call(
        &http,
        api,
        &ada,
        "POST",
        "/rooms",
        Some(json!({"name": "secret", "private": true})),
    )
    .await;
    assert_eq!(status, 201);
    let secret = secret["id"].as_str().unwrap().to_owned();
    assert_eq!(
        a.next_of("room_created").await["room"]["id"],
        secret.as_str()
    );
    // An invitation reaches bob live; cy, offline, gets hers on connect.
    let (status, invite) = call(
        &http,
        api,
        &ada,
        "POST",
        &format!("/rooms/{secret}/invites"),
        Some(json!({"user": "bob"})),
    )
    .await;
    assert_eq!(status, 201, "{invite}");
    let live = b.next_of("invite").await;
    assert_eq!(live["id"], invite["id"]);
    assert_eq!(live["room"]["name"], "secret");
    drop(c);
    let (status, _) = call(
        &http,
        api,
        &ada,
        "POST",
        &format!("/rooms/{secret}/invites"),
        Some(json!({"user": "cy"})),
    )
    .await;
    assert_eq!(status, 201);
    let mut c = WsClient::connect(gw_a, &cy.token).await.unwrap();
    let waiting = c.next_of("invite").await;
    assert_eq!(waiting["room"]["id"], secret.as_str());
    assert_eq!(waiting["from"]["name"], "ada");
    let id = live["id"].as_str().unwrap();
    let (status, _) = call(
        &http,
        api,
        &bob,
        "POST",
        &format!("/invites/{id}/accept"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    b.join(&secret).await;
    a.join(&secret).await;
    let (status, _) = call(
        &http,
        api,
        &ada,
        "PATCH",
        &format!("/rooms/{secret}"),
        Some(json!({"name": "secret-2"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(b.next_of("room_updated").await["room"]["name"], "secret-2");
    assert!(
        !c.sees_within(Duration::from_millis(300), |f| f["type"] == "room_updated"
            && f["room"]["id"] == secret.as_str())
            .await,
        "a private room's update reaches its participants only"
    );

    // A mute: typing and sends refused, reading goes on; lifted.
    let (status, _) = call(
        &http,
        api,
        &ada,
        "POST",
        &format!("/rooms/{secret}/mute"),
        Some(json!({"user": "bob", "duration": 600})),
    )
    .await;
    assert_eq!(status, 204);
    let muted = b
        .wait_for(|f| f["type"] == "member" && f["action"] == "muted")
        .await;
    assert!(muted["until"].is_string());
    for frame in [
        json!({"type": "typing", "room": secret, "active": true}),
        json!({"type": "send", "room": secret, "body": "psst"}),
    ] {
        let reply = b.request(frame).await;
        assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
    }
    a.ok(json!({"type": "send", "room": secret, "body": "you still read this"}))
        .await;
    b.wait_for(|f| f["body"] == "you still read this").await;
    // A mute known from the join too: on a new connection.
    let mut b2 = WsClient::connect(gw_a, &bob.token).await.unwrap();
    b2.join(&secret).await;
    let reply = b2
        .request(json!({"type": "typing", "room": secret, "active": true}))
        .await;
    assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
    let (status, _) = call(
        &http,
        api,
        &ada,
        "DELETE",
        &format!("/rooms/{secret}/mute/bob"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    b.wait_for(|f| f["type"] == "member" && f["action"] == "unmuted")
        .await;
    b2.wait_for(|f| f["type"] == "member" && f["action"] == "unmuted")
        .await;
    b.ok(json!({"type": "typing", "room": secret, "active": true}))
        .await;
    b.ok(json!({"type": "send", "room": secret, "body": "free again"}))
        .await;

    // Closing the private room reaches its participants and takes them out.
    let (status, _) = call(
        &http,
        api,
        &ada,
        "DELETE",
        &format!("/rooms/{secret}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    for ws in [&mut a, &mut b, &mut b2] {
        assert_eq!(ws.next_of("room_closed").await["room"], secret.as_str());
    }
    let reply = b
        .request(json!({"type": "typing", "room": secret, "active": true}))
        .await;
    assert_eq!(reply["error"]["code"], "forbidden");
    // And a public room's closing reaches everyone.
    let (status, _) = call(&http, api, &ada, "DELETE", &format!("/rooms/{room}"), None).await;
    assert_eq!(status, 204);
    for ws in [&mut a, &mut b, &mut c] {
        assert_eq!(ws.next_of("room_closed").await["room"], room.as_str());
    }

    // A profile change reaches who shares a room with the user.
    let shared = create_room(&http, api, &ada, "shared").await;
    b.join(&shared).await;
    let (status, _) = call(
        &http,
        api,
        &ada,
        "PATCH",
        "/users/me",
        Some(json!({"display_name": "Ada", "abilities": ["telepathy"]})),
    )
    .await;
    assert_eq!(status, 200);
    let profile = b.next_of("profile").await;
    assert_eq!(profile["id"], ada.id.as_str());
    assert_eq!(profile["abilities"], json!(["telepathy"]));
    assert!(
        !c.sees_within(Duration::from_millis(300), |f| f["type"] == "profile")
            .await,
        "cy shares no room with ada"
    );
    let seen = get_json(&http, &format!("{api}/users/ada"), |r| {
        r.bearer_auth(&bob.token)
    })
    .await;
    assert_eq!(seen["display_name"], "Ada");
    assert_eq!(seen["online"], true);

    // The room's info: counts and the caller's role.
    let info = get_json(&http, &format!("{api}/rooms/{shared}"), |r| {
        r.bearer_auth(&bob.token)
    })
    .await;
    assert_eq!(info["member_count"], 2, "{info}");
    assert_eq!(info["online_count"], 2, "{info}");
    assert_eq!(info["role"], "member", "{info}");
    assert_eq!(info["name"], "shared");

    // A kick takes the room away from bob's connection at once.
    let (status, _) = call(
        &http,
        api,
        &ada,
        "POST",
        &format!("/rooms/{shared}/kick"),
        Some(json!({"user": "bob"})),
    )
    .await;
    assert_eq!(status, 204);
    let left = b
        .wait_for(|f| {
            f["type"] == "member" && f["action"] == "left" && f["room"] == shared.as_str()
        })
        .await;
    assert_eq!(left["reason"], "kicked");
    assert_eq!(left["by"]["name"], "ada");
    let reply = b
        .request(json!({"type": "typing", "room": shared, "active": true}))
        .await;
    assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
    a.join(&shared).await;
    a.ok(json!({"type": "send", "room": shared, "body": "after the kick"}))
        .await;
    assert!(
        !b.sees_within(Duration::from_millis(300), |f| f["body"]
            == "after the kick")
            .await
    );
    let (status, _) = call(
        &http,
        api,
        &bob,
        "GET",
        &format!("/rooms/{shared}/messages"),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn on_the_all_in_one_mutes_invitations_and_the_directory_work() {
    let node = spawn_node(|_| {}).await;
    room_life(&node.url, &node.url, &node.url).await;
}

#[tokio::test]
async fn on_two_gateways_mutes_invitations_and_the_directory_work() {
    let cluster = start_cluster(2, 1).await;
    room_life(
        &cluster.gateways[0].url,
        &cluster.gateways[1].url,
        &cluster.api.url,
    )
    .await;
}

#[tokio::test]
async fn last_seen_is_persisted_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("telepath.db").display()),
        ),
        ("TELEPATH_HEARTBEAT_MS", "500".to_owned()),
        ("TELEPATH_PRESENCE_GRACE_MS", "200".to_owned()),
        ("TELEPATH_DRAIN_SECS", "2".to_owned()),
    ];
    let mut node = Service::start("telepath", &env).await;
    let http = Client::new();
    let ada = login(&http, &node.url, "ada").await;
    let bob = login(&http, &node.url, "bob").await;
    let room = create_room(&http, &node.url, &ada, "porch").await;
    let mut a = WsClient::connect(&node.url, &ada.token).await.unwrap();
    a.join(&room).await;
    let url = format!("{}/users/ada", node.url);
    drop(a);
    // Offline after the grace period, with the time she was last seen.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = get_json(&http, &url, |r| r.bearer_auth(&bob.token)).await;
        if p["online"] == false && p["last_seen"].is_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ada offline with a last_seen: {p}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection log's disconnect and presence's offline both write it:
    // let the later one land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = get_json(&http, &url, |r| r.bearer_auth(&bob.token)).await["last_seen"].clone();
    assert!(seen.is_string());
    // The participants list shows it too.
    let parts = get_json(
        &http,
        &format!("{}/rooms/{room}/participants", node.url),
        |r| r.bearer_auth(&ada.token),
    )
    .await;
    let ada_part = parts["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["user"]["name"] == "ada")
        .unwrap()
        .clone();
    assert_eq!(ada_part["last_seen"], seen);
    // A restart (presence's state is gone: the all-in-one keeps it in memory).
    node.terminate();
    let node = Service::start("telepath", &env).await;
    let url = format!("{}/users/ada", node.url);
    let after = get_json(&http, &url, |r| r.bearer_auth(&bob.token)).await;
    assert_eq!(after["last_seen"], seen, "{after}");
    assert_eq!(after["status"], "offline");
}
