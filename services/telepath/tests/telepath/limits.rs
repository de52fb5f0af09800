//! The edge's limits: which browser origins may connect and call the REST
//! API (`TELEPATH_ALLOWED_ORIGINS`), and a node's cap on connections
//! (`TELEPATH_MAX_CONNS`) and per user across gateways
//! (`TELEPATH_MAX_CONNS_PER_USER`), on the all-in-one and on the split deployment
//! (real processes).

use std::time::{Duration, Instant};

use reqwest::{Client, Method};
use serde_json::json;
use telepath_shared::http::origins::AllowedOrigins;
use telepath_shared::testing::wsraw::{RawFrame, RawWs, close_payload, handshake_request, op};
use telepath_shared::testing::{WsClient, get_text};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::cluster::start_cluster_with;
use crate::helpers::{login, spawn_node};

/// The handshake status (and head) of a connect from `origin` (none: no header).
async fn connect_from(base: &str, token: &str, origin: Option<&str>) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(o) = origin {
        headers.push(("Origin", o));
    }
    let request = handshake_request(addr, "/connect", &headers);
    let (hs, _ws) = RawWs::handshake_raw(addr, &request).await.unwrap();
    (hs.status, hs.head)
}

/// The `Access-Control-Allow-Origin` a CORS preflight from `origin` gets.
async fn preflight(http: &Client, base: &str, origin: &str) -> (u16, Option<String>) {
    let resp = http
        .request(Method::OPTIONS, format!("{base}/rooms"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    let allow = resp
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), allow)
}

#[tokio::test]
async fn unset_the_page_own_origin_and_clients_without_one_may_connect() {
    let node = spawn_node(|_| {}).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let own = node.url.clone();
    assert_eq!(connect_from(&node.url, &ada.token, None).await.0, 101);
    assert_eq!(connect_from(&node.url, &ada.token, Some(&own)).await.0, 101);
    for refused in ["http://evil.test", "null", "http://127.0.0.1:1"] {
        let (status, head) = connect_from(&node.url, &ada.token, Some(refused)).await;
        assert_eq!(status, 403, "{refused}: {head}");
    }
    // No CORS for anyone: browsers keep cross-origin pages out themselves.
    let (_, allow) = preflight(&node.http, &node.url, "http://evil.test").await;
    assert_eq!(allow, None);
}

#[tokio::test]
async fn listed_origins_connect_and_get_cors_on_the_split_deployment() {
    let cluster = start_cluster_with(
        1,
        1,
        &[(
            "TELEPATH_ALLOWED_ORIGINS",
            "https://app.test, http://localhost:5173".into(),
        )],
    )
    .await;
    let http = Client::new();
    let api = &cluster.api.url;
    let gw = &cluster.gateways[0].url;
    let ada = login(&http, api, "ada").await;

    assert_eq!(connect_from(gw, &ada.token, None).await.0, 101);
    assert_eq!(
        connect_from(gw, &ada.token, Some("https://app.test"))
            .await
            .0,
        101
    );
    assert_eq!(
        connect_from(gw, &ada.token, Some("http://localhost:5173"))
            .await
            .0,
        101
    );
    // The list replaces same-origin: the gateway's own origin is not on it.
    for refused in ["http://app.test", "https://evil.test", gw.as_str()] {
        let (status, head) = connect_from(gw, &ada.token, Some(refused)).await;
        assert_eq!(status, 403, "{refused}: {head}");
    }
    // A refusal is the JSON error, before the token is even looked at.
    let resp = http
        .get(format!("{gw}/connect"))
        .header("Origin", "https://evil.test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");

    let (status, allow) = preflight(&http, api, "https://app.test").await;
    assert!((200..300).contains(&status), "preflight: {status}");
    assert_eq!(allow.as_deref(), Some("https://app.test"));
    let (_, allow) = preflight(&http, api, "https://evil.test").await;
    assert_eq!(allow, None);
    // An actual cross-origin request carries the header too.
    let resp = http
        .get(format!("{api}/rooms"))
        .header("Origin", "http://localhost:5173")
        .bearer_auth(&ada.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
}

#[tokio::test]
async fn a_full_node_answers_503_before_the_upgrade_and_admits_again_once_one_leaves() {
    let node = spawn_node(|c| c.gateway.max_conns = 2).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let mut first = RawWs::open(&node.url, &ada.token).await;
    assert_eq!(first.next_json().await["type"], "welcome");
    let mut second = RawWs::open(&node.url, &ada.token).await;
    assert_eq!(second.next_json().await["type"], "welcome");

    let (status, head) = connect_from(&node.url, &ada.token, None).await;
    assert_eq!(status, 503, "{head}");
    assert!(head.contains("retry-after: 1"), "{head}");
    let metrics = get_text(&node.http, &format!("{}/metrics", node.url)).await;
    assert!(
        metrics.contains("telepath_gateway_handshakes_refused_total{reason=\"node_full\"} 1"),
        "{metrics}"
    );

    // The two admitted connections work on.
    second
        .send(&RawFrame::new(op::CLOSE, close_payload(1000, b"")))
        .await
        .unwrap();
    assert!(second.ends_within(Duration::from_secs(2)).await);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = connect_from(&node.url, &ada.token, None).await;
        if status == 101 {
            break;
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline, "no room after a connection left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ping = serde_json::json!({"type": "ping", "ref": "p"}).to_string();
    first.send(&RawFrame::text(ping)).await.unwrap();
    assert_eq!(first.reply("p").await["ok"], true);
}

#[test]
fn allowed_origins_parse_from_the_environment_form() {
    assert_eq!(
        AllowedOrigins::parse("").unwrap(),
        AllowedOrigins::SameOrigin
    );
    assert_eq!(AllowedOrigins::parse("*").unwrap(), AllowedOrigins::Any);
    assert!(AllowedOrigins::parse("not an origin").is_err());
}

/// Pings `c` and expects the reply (the connection is live and served).
async fn live(c: &mut WsClient) {
    let pong = c.request(json!({"type": "ping"})).await;
    assert_eq!(pong["ok"], true, "{pong}");
}

#[tokio::test]
async fn a_user_holds_sixteen_connections_across_two_gateways_and_the_seventeenth_gets_4009() {
    // The default cap (16); heartbeats slow enough that idle test clients
    // are not closed as silent while others connect.
    let cluster = start_cluster_with(2, 1, &[("TELEPATH_HEARTBEAT_MS", "5000".into())]).await;
    let http = Client::new();
    let ada = login(&http, &cluster.api.url, "ada").await;
    let gws = [&cluster.gateways[0].url, &cluster.gateways[1].url];
    let mut conns = Vec::new();
    for i in 0..16 {
        conns.push(WsClient::connect(gws[i % 2], &ada.token).await.unwrap());
    }
    // Over the cap on either gateway: closed with 4009, no welcome.
    for gw in gws {
        let refused = WsClient::connect_or_close(gw, &ada.token).await;
        assert_eq!(refused.err(), Some(Some(4009)), "{gw}");
    }
    // Another user is not counted with ada.
    let bob = login(&http, &cluster.api.url, "bob").await;
    let mut b = WsClient::connect(gws[1], &bob.token).await.unwrap();
    live(&mut b).await;
    // The sixteen are untouched.
    for c in &mut conns {
        live(c).await;
    }
    // One leaves: a place frees once presence hears of it, and only one of
    // two connects racing on the two gateways gets it.
    let mut gone = conns.pop().unwrap();
    gone.send_raw(WsMessage::Close(None)).await.unwrap();
    assert!(gone.closed().await.is_some());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (x, y) = tokio::join!(
        WsClient::connect_or_close(gws[0], &ada.token),
        WsClient::connect_or_close(gws[1], &ada.token)
    );
    let admitted = [x.is_ok(), y.is_ok()];
    assert_eq!(
        admitted.iter().filter(|a| **a).count(),
        1,
        "exactly one of the racing connects: {admitted:?}"
    );
    let refused = if let Err(code) = x {
        code
    } else {
        y.err().unwrap()
    };
    assert_eq!(refused, Some(4009));
    let metrics = get_text(&http, &format!("{}/metrics", gws[0])).await;
    assert!(
        metrics
            .contains("telepath_gateway_handshakes_refused_total{reason=\"too_many_connections\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_all_in_one_holds_the_per_user_cap_too() {
    let node = spawn_node(|c| c.gateway.max_conns_per_user = 2).await;
    let ada = login(&node.http, &node.url, "ada").await;
    let mut a = WsClient::connect(&node.url, &ada.token).await.unwrap();
    let _b = WsClient::connect(&node.url, &ada.token).await.unwrap();
    let refused = WsClient::connect_or_close(&node.url, &ada.token).await;
    assert_eq!(refused.err(), Some(Some(4009)));
    live(&mut a).await;
    a.send_raw(WsMessage::Close(None)).await.unwrap();
    assert!(a.closed().await.is_some());
    let deadline = Instant::now() + Duration::from_secs(5);
    while WsClient::connect_or_close(&node.url, &ada.token)
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "no place after a connection left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
