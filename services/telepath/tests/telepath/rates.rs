//! Rate limits that hold across connections and gateways
//! (`TELEPATH_USER_RATE_PER_S`, `TELEPATH_IP_LOGIN_RATE_PER_S`,
//! `TELEPATH_IP_ROOM_RATE_PER_S`, `TELEPATH_IP_CONNECT_RATE_PER_S`) and the
//! client address behind trusted proxies (`TELEPATH_TRUSTED_PROXIES`), on
//! real processes sharing a real Redis.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{Value, json};
use sqlx::ConnectOptions;
use telepath_shared::testing::WsClient;
use telepath_shared::testing::wsraw::{RawWs, handshake_request};

use crate::cluster::start_cluster_with;
use crate::helpers::{create_room, get_json, login};

/// A client whose requests leave from `ip` (any 127.x address is this machine).
fn client_from(ip: Ipv4Addr) -> Client {
    Client::builder()
        .local_address(IpAddr::V4(ip))
        .build()
        .unwrap()
}

async fn login_status(
    http: &Client,
    api: &str,
    name: &str,
    xff: Option<&str>,
) -> (u16, Option<String>) {
    let mut req = http
        .post(format!("{api}/auth/login"))
        .json(&json!({"username": name}));
    if let Some(x) = xff {
        req = req.header("X-Forwarded-For", x);
    }
    let resp = req.send().await.unwrap();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), retry)
}

#[tokio::test]
async fn a_user_flooding_over_ten_connections_on_two_gateways_is_held_to_one_budget() {
    const RATE: f64 = 20.0;
    let cluster = start_cluster_with(
        2,
        1,
        &[
            ("TELEPATH_HEARTBEAT_MS", "5000".into()),
            ("TELEPATH_USER_RATE_PER_S", "20".into()),
        ],
    )
    .await;
    let http = Client::new();
    let api = &cluster.api.url;
    let ada = login(&http, api, "ada").await;
    let bob = login(&http, api, "bob").await;
    let room = create_room(&http, api, &ada, "flood").await;
    let mut conns = Vec::new();
    for i in 0..10 {
        let mut c = WsClient::connect(&cluster.gateways[i % 2].url, &ada.token)
            .await
            .unwrap();
        c.join(&room).await;
        conns.push(c);
    }
    assert_eq!(conns[0].welcome["limits"]["max_user_rate_per_s"], 20);

    // Each connection sends 30 messages at 20 a second: 600 offered in
    // 1.5 s, each connection well under its own limit (50/s).
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut c) in conns.into_iter().enumerate() {
        let room = room.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut limited) = (0u32, 0u32);
            for k in 0..30 {
                let reply = c
                    .request(json!({"type": "send", "room": room, "body": format!("c{i} m{k}")}))
                    .await;
                if reply["ok"] == true {
                    ok += 1;
                } else {
                    assert_eq!(reply["error"]["code"], "rate_limited", "{reply}");
                    limited += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (ok, limited, c)
        }));
    }
    let (mut ok, mut limited) = (0, 0);
    let mut conns = Vec::new();
    for t in tasks {
        let (o, l, c) = t.await.unwrap();
        ok += o;
        limited += l;
        conns.push(c);
    }
    let elapsed = started.elapsed().as_secs_f64();
    // One bucket: its burst (40) plus 20 a second, and at most one lease
    // (2 tokens) per gateway not yet spent when the flood started.
    let most = (2.0 * RATE + RATE * elapsed + 4.0).ceil() as u32;
    assert!(
        ok <= most,
        "{ok} sends accepted in {elapsed:.2}s; at most {most}"
    );
    assert!(ok >= 2 * RATE as u32, "the burst at least: {ok}");
    assert_eq!(ok + limited, 300);
    // Nobody was closed: the strikes did not add up to 4008.
    for c in &mut conns {
        let reply = c.request(json!({"type": "ping"})).await;
        assert_eq!(reply["ok"], true);
    }
    // Every accepted message is stored; none of the refused ones is.
    let url = format!("{api}/rooms/{room}/messages?limit=500");
    let history = get_json(&http, &url, |r| r.bearer_auth(&bob.token)).await;
    let stored = history["messages"].as_array().unwrap().len() as u32;
    assert_eq!(stored, ok);
    // Another user has a budget of their own.
    let mut b = WsClient::connect(&cluster.gateways[1].url, &bob.token)
        .await
        .unwrap();
    b.join(&room).await;
    b.ok(json!({"type": "send", "room": room, "body": "mine"}))
        .await;
}

#[tokio::test]
async fn a_login_flood_from_one_address_gets_429_while_another_logs_in() {
    let cluster = start_cluster_with(1, 1, &[("TELEPATH_IP_LOGIN_RATE_PER_S", "2".into())]).await;
    let api = &cluster.api.url;
    let flooder = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let mut refused = None;
    for i in 0..20 {
        let (status, retry) = login_status(&flooder, api, &format!("f{i}"), None).await;
        if status == 429 {
            refused = Some((i, retry));
            break;
        }
        assert_eq!(status, 200);
    }
    // The burst is twice the rate: 4 logins, then 429 with Retry-After.
    let (at, retry) = refused.expect("the flood is refused");
    assert!((4..=5).contains(&at), "refused after {at} logins");
    assert_eq!(retry.as_deref(), Some("1"));
    // Another address is not held by it.
    let other = client_from(Ipv4Addr::new(127, 0, 0, 3));
    assert_eq!(login_status(&other, api, "ok", None).await.0, 200);
    // A made-up X-Forwarded-For from a peer that is no trusted proxy changes nothing.
    let (status, _) = login_status(&flooder, api, "sly", Some("198.51.100.7")).await;
    assert_eq!(status, 429);
    // The bucket refills: one login every half second.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(login_status(&flooder, api, "later", None).await.0, 200);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let cluster = start_cluster_with(
        1,
        1,
        &[
            ("TELEPATH_HEARTBEAT_MS", "5000".into()),
            ("TELEPATH_IP_LOGIN_RATE_PER_S", "1".into()),
            ("TELEPATH_IP_ROOM_RATE_PER_S", "1".into()),
            ("TELEPATH_IP_CONNECT_RATE_PER_S", "1".into()),
            ("TELEPATH_TRUSTED_PROXIES", "127.0.0.1/32, ::1".into()),
        ],
    )
    .await;
    let http = Client::new();
    let api = &cluster.api.url;
    let gw = &cluster.gateways[0].url;
    // Logins: two per forwarded client (burst 2), then 429 for that client only.
    for who in ["203.0.113.1", "203.0.113.2"] {
        for i in 0..2 {
            let (status, _) = login_status(&http, api, &format!("u{i}"), Some(who)).await;
            assert_eq!(status, 200, "{who} login {i}");
        }
        assert_eq!(login_status(&http, api, "u9", Some(who)).await.0, 429);
    }
    // The rightmost untrusted hop is the client: a prefix the client wrote is ignored.
    assert_eq!(
        login_status(&http, api, "u3", Some("203.0.113.1, 203.0.113.3"))
            .await
            .0,
        200
    );
    let ada = login(&http, api, "ada").await;
    // Room creation: per forwarded client too.
    let create = |who: &'static str| {
        http.post(format!("{api}/rooms"))
            .bearer_auth(&ada.token)
            .header("X-Forwarded-For", who)
            .json(&json!({"name": "r"}))
            .send()
    };
    assert_eq!(create("203.0.113.4").await.unwrap().status(), 201);
    assert_eq!(create("203.0.113.4").await.unwrap().status(), 201);
    let third = create("203.0.113.4").await.unwrap();
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
    let body: Value = third.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(create("203.0.113.5").await.unwrap().status(), 201);

    // Handshakes: 2 per client address, then 429 before the upgrade.
    let addr = gw.trim_start_matches("http://").to_owned();
    let handshake = |who: &str| {
        let auth = format!("Bearer {}", ada.token);
        let request = handshake_request(
            &addr,
            "/connect",
            &[("Authorization", auth.as_str()), ("X-Forwarded-For", who)],
        );
        let addr = addr.clone();
        async move { RawWs::handshake_raw(&addr, &request).await.unwrap() }
    };
    let mut kept = Vec::new();
    for _ in 0..2 {
        let (hs, ws) = handshake("203.0.113.6").await;
        assert_eq!(hs.status, 101, "{}", hs.head);
        kept.push(ws);
    }
    let (hs, _) = handshake("203.0.113.6").await;
    assert_eq!(hs.status, 429, "{}", hs.head);
    assert!(
        hs.head.to_ascii_lowercase().contains("retry-after"),
        "{}",
        hs.head
    );
    let (hs, ws) = handshake("203.0.113.7").await;
    assert_eq!(hs.status, 101, "{}", hs.head);
    kept.push(ws);
    drop(kept);
    // The connection log records the forwarded client, not the proxy.
    let db = cluster.db_path();
    crate::helpers::eventually(
        Duration::from_secs(10),
        "the forwarded address is logged",
        || {
            let db = db.clone();
            async move {
                let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&db)
                    .read_only(true)
                    .connect()
                    .await
                    .unwrap();
                let ips: Vec<Option<String>> =
                    sqlx::query_scalar("SELECT ip FROM connection_logs WHERE event = 'connect'")
                        .fetch_all(&mut conn)
                        .await
                        .unwrap();
                ips.iter().flatten().any(|ip| ip == "203.0.113.7")
            }
        },
    )
    .await;
}

#[tokio::test]
async fn the_all_in_one_holds_a_user_to_one_budget_over_their_connections() {
    let node = crate::helpers::spawn_node(|c| c.common.user_rate_per_s = 5).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let room = create_room(&node.http, &node.url, &ada, "slow").await;
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut c = WsClient::connect(&node.url, &ada.token).await.unwrap();
        c.join(&room).await;
        conns.push(c);
    }
    let started = Instant::now();
    let (mut ok, mut limited) = (0u32, 0u32);
    for k in 0..30 {
        let c = &mut conns[k % 3];
        let reply = c
            .request(json!({"type": "send", "room": room, "body": format!("m{k}")}))
            .await;
        if reply["ok"] == true {
            ok += 1;
        } else {
            assert_eq!(reply["error"]["code"], "rate_limited", "{reply}");
            limited += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let most = (10.0 + 5.0 * elapsed).ceil() as u32;
    assert!(ok >= 10 && ok <= most, "{ok} accepted in {elapsed:.2}s");
    assert_eq!(ok + limited, 30);
    // Joins and pings are not part of the budget.
    conns[0].ok(json!({"type": "ping"})).await;
}
