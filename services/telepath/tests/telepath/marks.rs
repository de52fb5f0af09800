//! Connect marks on the split deployment (two gateways, a real Redis, real
//! processes): a connect skips the api's offline read only while its user
//! certainly has nothing waiting. Each kind of thing that waits (a DM, a
//! DM's edit, an invitation, an announcement) is made while the user's
//! mark is current, and the next connect must still get it; a Redis
//! restart drops every mark; connects racing DMs miss none.

use std::time::Duration;

use reqwest::Client;
use serde_json::{Value, json};
use telepath_shared::testing::{WsClient, get_text, metric};

use crate::cluster::{Cluster, start_cluster_with};
use crate::helpers::{TestUser, get_json, login, login_as};

/// Connects that skipped the offline read, on every gateway.
async fn skipped(http: &Client, cluster: &Cluster) -> f64 {
    let mut n = 0.0;
    for gw in &cluster.gateways {
        let page = get_text(http, &format!("{}/metrics", gw.url)).await;
        n += metric(&page, "telepath_gateway_offline_reads_skipped_total").unwrap_or(0.0);
    }
    n
}

/// Connects `user` (alternating gateways) until a connect skips the
/// offline read: the user's mark is current. Returns that connection.
async fn until_marked(http: &Client, cluster: &Cluster, user: &TestUser) -> WsClient {
    for attempt in 0..50 {
        let before = skipped(http, cluster).await;
        let gw = &cluster.gateways[attempt % cluster.gateways.len()].url;
        let ws = WsClient::connect(gw, &user.token).await.unwrap();
        for _ in 0..10 {
            if skipped(http, cluster).await > before {
                return ws;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    panic!("{}'s connects never skipped the offline read", user.name);
}

/// A split cluster (two gateways) with ada connected and bob away, his
/// mark current.
async fn bob_marked_ada_connected() -> (Cluster, Client, TestUser, TestUser, WsClient) {
    let cluster = start_cluster_with(2, 1, &[]).await;
    let http = Client::new();
    let ada = login(&http, &cluster.api.url, "ada").await;
    let bob = login(&http, &cluster.api.url, "bob").await;
    let a = WsClient::connect(&cluster.gateways[0].url, &ada.token)
        .await
        .unwrap();
    drop(until_marked(&http, &cluster, &bob).await);
    (cluster, http, ada, bob, a)
}

/// POSTs `body` as `user`; the answer, which must be a success.
async fn post(http: &Client, url: String, user: &TestUser, body: Value) -> Value {
    let (status, answer) = crate::notify::post(http, url, user, body).await;
    assert!((200..300).contains(&status), "{status}: {answer}");
    answer
}

/// Connects `user` on `gw` and waits for the DM `id` (as it is now), acks it.
async fn gets_dm(gw: &str, user: &TestUser, id: &Value) -> Value {
    let mut ws = WsClient::connect(gw, &user.token).await.unwrap();
    let dm = ws.wait_for(|f| f["type"] == "dm" && f["id"] == *id).await;
    ws.send(json!({"type": "ack", "dm": id})).await;
    dm
}

#[tokio::test]
async fn a_connect_skips_the_offline_read_only_while_nothing_waits() {
    let (mut cluster, http, ada, bob, mut a) = bob_marked_ada_connected().await;
    let api = cluster.api.url.clone();
    let root = login_as(&http, &api, "root", "admin").await;

    // A DM while bob's mark is current: his next connect gets it.
    let dm = a
        .ok(json!({"type": "dm", "to": "bob", "body": "while you were out"}))
        .await;
    gets_dm(&cluster.gateways[1].url, &bob, &dm["id"]).await;

    // Its edit, once acked and marked again: it is back in his queue.
    drop(until_marked(&http, &cluster, &bob).await);
    a.ok(json!({"type": "edit", "dm": dm["id"], "id": dm["id"], "body": "edited while you were out"}))
        .await;
    let edited = gets_dm(&cluster.gateways[0].url, &bob, &dm["id"]).await;
    assert_eq!(edited["body"], "edited while you were out");

    // An invitation.
    drop(until_marked(&http, &cluster, &bob).await);
    let room = post(
        &http,
        format!("{api}/rooms"),
        &ada,
        json!({"name": "secret", "private": true}),
    )
    .await;
    let room = room["id"].as_str().unwrap().to_owned();
    post(
        &http,
        format!("{api}/rooms/{room}/invites"),
        &ada,
        json!({"user": bob.id}),
    )
    .await;
    let mut b = WsClient::connect(&cluster.gateways[1].url, &bob.token)
        .await
        .unwrap();
    assert_eq!(b.next_of("invite").await["room"]["id"], room);
    drop(b);
    let declined = http
        .post(format!(
            "{api}/invites/{}/decline",
            invite_id(&http, &api, &bob).await
        ))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert!(declined.status().is_success(), "{}", declined.status());

    // An announcement: every mark stops matching.
    drop(until_marked(&http, &cluster, &bob).await);
    drop(until_marked(&http, &cluster, &ada).await);
    let made = post(
        &http,
        format!("{api}/announcements"),
        &root,
        json!({"title": "Maintenance", "body": "Tonight", "level": "info"}),
    )
    .await;
    for user in [&bob, &ada] {
        let mut ws = WsClient::connect(&cluster.gateways[0].url, &user.token)
            .await
            .unwrap();
        assert_eq!(ws.next_of("announcement").await["id"], made["id"]);
    }
    // Until dismissed, it comes on every connect: no skip.
    let before = skipped(&http, &cluster).await;
    let mut again = WsClient::connect(&cluster.gateways[1].url, &bob.token)
        .await
        .unwrap();
    assert_eq!(again.next_of("announcement").await["id"], made["id"]);
    assert_eq!(skipped(&http, &cluster).await, before);
    let dismissed = http
        .post(format!(
            "{api}/announcements/{}/dismiss",
            made["id"].as_str().unwrap()
        ))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert!(dismissed.status().is_success(), "{}", dismissed.status());
    drop(again);

    // A Redis restart forgets every mark: connects read the api again
    // (and get what waits), then are marked anew.
    drop(until_marked(&http, &cluster, &bob).await);
    drop(a);
    cluster.redis.restart();
    let mut a = None;
    for _ in 0..150 {
        if let Ok(ws) = WsClient::connect(&cluster.gateways[0].url, &ada.token).await {
            a = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut a = a.expect("ada connects after the restart");
    let dm = a
        .ok(json!({"type": "dm", "to": "bob", "body": "after the restart"}))
        .await;
    gets_dm(&cluster.gateways[1].url, &bob, &dm["id"]).await;
    drop(until_marked(&http, &cluster, &bob).await);
}

/// bob's pending invitation's id.
async fn invite_id(http: &Client, api: &str, bob: &TestUser) -> String {
    let list = get_json(http, &format!("{api}/invites"), |r| {
        r.bearer_auth(&bob.token)
    })
    .await;
    list["invites"][0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn connects_racing_dms_miss_none_of_them() {
    let (cluster, _http, _ada, bob, mut a) = bob_marked_ada_connected().await;
    // Bob connects 16 times on both gateways while ada sends 16 DMs: each
    // connection, whenever its connect fell, gets every DM (live, or from
    // the queue its connect read).
    const N: usize = 16;
    let connecting: Vec<_> = (0..N)
        .map(|i| {
            let url = cluster.gateways[i % 2].url.clone();
            let token = bob.token.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5 * i as u64)).await;
                WsClient::connect(&url, &token).await.unwrap()
            })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..N {
        let dm = a
            .ok(json!({"type": "dm", "to": "bob", "body": format!("dm{i}")}))
            .await;
        ids.insert(dm["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for c in connecting {
        let mut ws = c.await.unwrap();
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < ids.len() {
            let dm = ws.next_of("dm").await;
            seen.insert(dm["id"].as_str().unwrap().to_owned());
        }
        assert_eq!(seen, ids);
    }
}

/// Requests the api answered on `route` with `method` (its HTTP metrics).
async fn api_requests(http: &Client, cluster: &Cluster, method: &str, route: &str) -> f64 {
    let page = get_text(http, &format!("{}/metrics", cluster.api.url)).await;
    page.lines()
        .filter(|l| {
            l.starts_with("telepath_http_request_duration_seconds_count{")
                && l.contains(&format!("method=\"{method}\""))
                && l.contains(&format!("route=\"{route}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn connects_arriving_together_read_their_offline_queues_in_shared_requests() {
    let cluster = start_cluster_with(2, 1, &[]).await;
    let http = Client::new();
    let api = cluster.api.url.clone();
    let ada = login(&http, &api, "ada").await;
    let mut a = WsClient::connect(&cluster.gateways[0].url, &ada.token)
        .await
        .unwrap();
    let mut waiting = Vec::new();
    for i in 0..40 {
        let user = login(&http, &api, &format!("away{i}")).await;
        let dm = a
            .ok(json!({"type": "dm", "to": user.name, "body": format!("for away{i}")}))
            .await;
        waiting.push((user, dm["id"].clone()));
    }
    let route = "/internal/dms/pending";
    let gets = api_requests(&http, &cluster, "GET", route).await;
    let posts = api_requests(&http, &cluster, "POST", route).await;
    // All 40 connect at once to the other gateway: each gets its DM.
    let gw = cluster.gateways[1].url.clone();
    let connects: Vec<_> = waiting
        .into_iter()
        .map(|(user, id)| {
            let gw = gw.clone();
            tokio::spawn(async move { (gets_dm(&gw, &user, &id).await, user.name) })
        })
        .collect();
    for connect in connects {
        let (dm, name) = connect.await.unwrap();
        assert_eq!(dm["body"], format!("for {name}"));
    }
    // Read through the batched route only, in at most one request each.
    assert_eq!(api_requests(&http, &cluster, "GET", route).await, gets);
    let batches = api_requests(&http, &cluster, "POST", route).await - posts;
    assert!((1.0..=40.0).contains(&batches), "{batches} requests");
}
