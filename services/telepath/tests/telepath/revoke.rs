//! Token revocation across real processes: `POST /admin/users/{id}/revoke`
//! closes the user's connections on every gateway with 4001 within a
//! second, and their older tokens are refused everywhere from then on (REST
//! 401, handshake 401, a gateway started later too); a role change does the
//! same; `nbf` and a future `iat` are honoured.

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use telepath_shared::testing::{WsClient, WsError};

use crate::cluster::{HEARTBEAT_MS, start_cluster};
use crate::helpers::{SECRET, Service, login, login_as};

/// The HTTP status a refused handshake got.
fn refused(result: Result<WsClient, WsError>) -> u16 {
    match result {
        Ok(_) => panic!("the handshake was accepted"),
        Err(WsError::Http(resp)) => resp.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
    }
}

/// `GET /rooms` with `token`: its status.
async fn rooms_status(http: &Client, api: &str, token: &str) -> StatusCode {
    http.get(format!("{api}/rooms"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

/// Waits for `c`'s `bye` and close; the bye's reason and the close code.
async fn bye_and_close(c: &mut WsClient) -> (Value, Option<u16>) {
    let bye = c.wait_for(|f| f["type"] == "bye").await;
    (bye["reason"].clone(), c.closed().await)
}

#[tokio::test]
async fn a_revoked_users_connections_close_on_every_gateway_within_a_second_and_their_old_tokens_are_refused()
 {
    let cluster = start_cluster(2, 1).await;
    let http = Client::new();
    let api = cluster.api.url.clone();
    let root = login_as(&http, &api, "root", "admin").await;
    let ada = login(&http, &api, "ada").await;
    let bob = login(&http, &api, "bob").await;
    let (gw0, gw1) = (&cluster.gateways[0].url, &cluster.gateways[1].url);
    // A presence that reads the revocations from the api.
    let checking_presence = Service::start(
        "telepath-presence",
        &[
            ("REDIS_URL", cluster.redis.url()),
            ("TELEPATH_API_URL", cluster.api.internal_url.clone()),
        ],
    )
    .await;
    let online_url = format!("{}/presence/online", checking_presence.url);
    let status = http
        .get(&online_url)
        .bearer_auth(&ada.token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200, "before the revocation");
    let mut on0 = WsClient::connect(gw0, &ada.token).await.unwrap();
    let mut on1 = WsClient::connect(gw1, &ada.token).await.unwrap();
    let mut bystander = WsClient::connect(gw1, &bob.token).await.unwrap();
    // Tokens issued in an earlier second than the revocation (the clients
    // keep reading meanwhile, so their pings are answered).
    let wait = Duration::from_millis(1100);
    tokio::join!(
        on0.sees_within(wait, |_| false),
        on1.sees_within(wait, |_| false),
        bystander.sees_within(wait, |_| false),
    );

    let revoke = |id: String, token: String| {
        let (http, api) = (http.clone(), api.clone());
        async move {
            http.post(format!("{api}/admin/users/{id}/revoke"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    // Only admins, only real users, only ids.
    assert_eq!(
        revoke(ada.id.clone(), bob.token.clone()).await.status(),
        403
    );
    let nobody = uuid::Uuid::new_v4().to_string();
    assert_eq!(revoke(nobody, root.token.clone()).await.status(), 404);
    assert_eq!(revoke("ada".into(), root.token.clone()).await.status(), 400);

    let started = Instant::now();
    let resp = revoke(ada.id.clone(), root.token.clone()).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["user_id"], ada.id);
    let (first, second) = tokio::join!(bye_and_close(&mut on0), bye_and_close(&mut on1));
    let took = started.elapsed();
    for (reason, code) in [first, second] {
        assert_eq!(reason, "token_revoked");
        assert_eq!(code, Some(4001));
    }
    eprintln!("revoke -> last connection closed: {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // Nobody else is touched.
    assert!(
        !bystander
            .sees_within(Duration::from_millis(2 * HEARTBEAT_MS), |f| f["type"]
                == "bye")
            .await
    );

    // The old token: refused on every gateway, by the api and by a
    // presence that knows the api.
    for gw in [gw0, gw1] {
        assert_eq!(refused(WsClient::connect(gw, &ada.token).await), 401);
    }
    assert_eq!(rooms_status(&http, &api, &ada.token).await, 401);
    let online = |token: String| {
        let (http, url) = (http.clone(), checking_presence.url.clone());
        async move {
            http.get(format!("{url}/presence/online"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    eventually_status(|| online(ada.token.clone()), 401).await;
    // A gateway started after the revocation refuses it too.
    let late = Service::start(
        "telepath-gateway",
        &[
            ("REDIS_URL", cluster.redis.url()),
            ("TELEPATH_API_URL", cluster.api.internal_url.clone()),
            (
                "TELEPATH_PRESENCE_URL",
                cluster.presence[0].internal_url.clone(),
            ),
        ],
    )
    .await;
    assert_eq!(refused(WsClient::connect(&late.url, &ada.token).await), 401);
    // A token issued from now on works.
    let fresh = login(&http, &api, "ada").await;
    assert_eq!(rooms_status(&http, &api, &fresh.token).await, 200);
    assert_eq!(online(fresh.token.clone()).await, 200);
    let mut again = WsClient::connect(gw0, &fresh.token).await.unwrap();
    assert!(again.ok(json!({"type": "ping"})).await["pong"].is_i64());
    WsClient::connect(&late.url, &fresh.token).await.unwrap();
}

#[tokio::test]
async fn a_demoted_admins_tokens_stop_working_at_once() {
    let cluster = start_cluster(1, 1).await;
    let http = Client::new();
    let api = cluster.api.url.clone();
    let admin = login_as(&http, &api, "boss", "admin").await;
    let mut live = WsClient::connect(&cluster.gateways[0].url, &admin.token)
        .await
        .unwrap();
    live.sees_within(Duration::from_millis(1100), |_| false)
        .await;
    // Logging in again with another role is a role change.
    let demoted = login(&http, &api, "boss").await;
    let (reason, code) = bye_and_close(&mut live).await;
    assert_eq!((reason, code), (json!("token_revoked"), Some(4001)));
    let broadcast = |token: String| {
        let (http, api) = (http.clone(), api.clone());
        async move {
            http.post(format!("{api}/messages/broadcast"))
                .bearer_auth(token)
                .json(&json!({"body": "hi"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(broadcast(admin.token.clone()).await, 401, "the admin token");
    assert_eq!(broadcast(demoted.token.clone()).await, 403, "now a user");
}

#[tokio::test]
async fn nbf_in_the_future_and_iat_in_the_future_are_refused() {
    let cluster = start_cluster(1, 1).await;
    let http = Client::new();
    let api = cluster.api.url.clone();
    let ada = login(&http, &api, "ada").await;
    let now = chrono::Utc::now().timestamp();
    let sign = |extra: Value| {
        let mut claims = json!({"sub": ada.id, "name": "ada", "role": "user", "exp": now + 600});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let gw = &cluster.gateways[0].url;
    for (case, extra) in [
        ("nbf in an hour", json!({"nbf": now + 3600})),
        ("nbf as a string", json!({"nbf": "9999999999"})),
        ("iat in an hour", json!({"iat": now + 3600})),
        ("exp as a string", json!({"exp": "never"})),
    ] {
        let token = sign(extra);
        assert_eq!(rooms_status(&http, &api, &token).await, 401, "{case}");
        assert_eq!(refused(WsClient::connect(gw, &token).await), 401, "{case}");
    }
    for (case, extra) in [
        ("nbf passed", json!({"nbf": now - 60})),
        ("iat passed", json!({"iat": now - 60})),
    ] {
        let token = sign(extra);
        assert_eq!(rooms_status(&http, &api, &token).await, 200, "{case}");
        WsClient::connect(gw, &token).await.unwrap();
    }
}

/// Polls `status` until it returns `want` (the bus takes a moment), at most 2 s.
async fn eventually_status<F, Fut>(mut status: F, want: u16)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StatusCode>,
{
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let got = status().await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "still {got}, not {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn in_the_all_in_one_a_revoked_token_is_refused_everywhere() {
    let node = crate::helpers::spawn_node(|_| {}).await;
    let http = Client::new();
    let root = login_as(&http, &node.url, "root", "admin").await;
    let ada = login(&http, &node.url, "ada").await;
    let mut live = WsClient::connect(&node.url, &ada.token).await.unwrap();
    live.sees_within(Duration::from_millis(1100), |_| false)
        .await;
    let resp = http
        .post(format!("{}/admin/users/{}/revoke", node.url, ada.id))
        .bearer_auth(&root.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (reason, code) = bye_and_close(&mut live).await;
    assert_eq!((reason, code), (json!("token_revoked"), Some(4001)));
    assert_eq!(refused(WsClient::connect(&node.url, &ada.token).await), 401);
    assert_eq!(rooms_status(&http, &node.url, &ada.token).await, 401);
    let online = http
        .get(format!("{}/presence/online", node.url))
        .bearer_auth(&ada.token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(online, 401, "presence shares the api's list");
}
