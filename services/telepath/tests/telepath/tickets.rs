//! Connect tickets (`POST /auth/ticket`, `GET /connect?ticket=`): single
//! use, across gateways (split deployment, tickets in Redis) and in the
//! all-in-one (tickets in memory); a revoked user's ticket gets nothing.

use reqwest::Client;
use serde_json::Value;
use telepath_shared::testing::TestUser;
use telepath_shared::testing::{WsClient, WsError};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::cluster::start_cluster;
use crate::helpers::{login, login_as, spawn_node};
use std::time::Duration;
use telepath_shared::testing::eventually;

async fn ticket(http: &Client, api: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = http.post(format!("{api}/auth/ticket"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn issue(http: &Client, api: &str, user: &TestUser) -> String {
    let (status, body) = ticket(http, api, Some(&user.token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 30);
    body["ticket"].as_str().unwrap().to_owned()
}

/// Connects to `gw` with `?ticket=`: the client, or the HTTP status of the
/// refusal.
async fn connect_with(gw: &str, ticket: &str) -> Result<WsClient, u16> {
    let url = format!(
        "{}/connect?ticket={ticket}",
        gw.replacen("http://", "ws://", 1)
    );
    let req = url.into_client_request().unwrap();
    match WsClient::connect_request(req).await {
        Ok(c) => Ok(c),
        Err(WsError::Http(resp)) => Err(resp.status().as_u16()),
        Err(other) => panic!("expected an HTTP answer, got {other}"),
    }
}

#[tokio::test]
async fn a_ticket_connects_once_on_any_gateway_and_never_again() {
    let cluster = start_cluster(2, 1).await;
    let http = Client::new();
    let api = &cluster.api.url;
    let ada = login(&http, api, "ada").await;

    // Issued through the api, redeemed by either gateway.
    for gw in 0..2 {
        let t = issue(&http, api, &ada).await;
        let c = connect_with(&cluster.gateways[gw].url, &t).await.unwrap();
        assert_eq!(c.welcome["user"]["id"], ada.id);
        assert_eq!(c.welcome["user"]["name"], "ada");
        // Used up: neither gateway takes it again.
        for again in 0..2 {
            assert_eq!(
                connect_with(&cluster.gateways[again].url, &t).await.err(),
                Some(401)
            );
        }
    }
    // Two tickets are two secrets.
    assert_ne!(issue(&http, api, &ada).await, issue(&http, api, &ada).await);

    // No token, a bad one: no ticket. Made-up tickets: 401 without a lookup
    // of anything the shape rules out.
    assert_eq!(ticket(&http, api, None).await.0, 401);
    assert_eq!(ticket(&http, api, Some("not-a-jwt")).await.0, 401);
    let made_up = "A".repeat(43);
    for bad in ["", "x", made_up.as_str(), "%00", "a%20b"] {
        assert_eq!(
            connect_with(&cluster.gateways[0].url, bad).await.err(),
            Some(401),
            "{bad:?}"
        );
    }

    // A ticket of a user revoked since it was issued gets nothing (the
    // revocation covers tokens issued in an earlier second).
    let root = login_as(&http, api, "root", "admin").await;
    let t = issue(&http, api, &ada).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = http
        .post(format!("{api}/admin/users/{}/revoke", ada.id))
        .bearer_auth(&root.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Once the gateway knows of the revocation (the token itself is
    // refused), the ticket issued before it is refused too.
    let gw = cluster.gateways[1].url.clone();
    eventually(
        Duration::from_secs(5),
        "the gateway refusing the revoked token",
        || {
            let (gw, token) = (gw.clone(), ada.token.clone());
            async move { WsClient::connect(&gw, &token).await.is_err() }
        },
    )
    .await;
    assert_eq!(
        connect_with(&cluster.gateways[1].url, &t).await.err(),
        Some(401)
    );
}

#[tokio::test]
async fn the_all_in_one_keeps_tickets_in_memory_and_they_are_single_use() {
    let node = spawn_node(|_| {}).await;
    let http = Client::new();
    let bob = login(&http, &node.url, "bob").await;
    let t = issue(&http, &node.url, &bob).await;
    let c = connect_with(&node.url, &t).await.unwrap();
    assert_eq!(c.welcome["user"]["id"], bob.id);
    assert_eq!(connect_with(&node.url, &t).await.err(), Some(401));
    // The token still works the old ways.
    WsClient::connect(&node.url, &bob.token).await.unwrap();
}
