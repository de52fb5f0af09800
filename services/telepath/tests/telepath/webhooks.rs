//! Webhooks against a real HTTP receiver: every event of a user's session
//! on the split deployment (two gateways, real Redis), signed; a receiver
//! that fails, times out and recovers; a dead endpoint that slows nothing;
//! deliveries that survive the api being killed; the bound per endpoint,
//! giving up, private addresses refused, and the routes' bad input.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::Mac as _;
use reqwest::Client;
use serde_json::{Value, json};
use telepath_shared::testing::{RedisServer, WsClient, metric};

use crate::cluster::start_cluster_with;
use crate::helpers::{
    Service, bin_dir, create_room, eventually, get_json, get_text, login, login_as, spawn_node,
};
use crate::server_api::call;

const SECRET: &str = "whsec-test-0123456789abcdef";

/// One request the receiver got, and what it answered.
#[derive(Clone, Debug)]
struct Received {
    headers: HashMap<String, String>,
    body: Value,
    raw: String,
    /// 200, 500, or 0 when it held the request past the sender's timeout.
    answered: u16,
}

/// A webhook receiver on 127.0.0.1. Requests for a message whose body is
/// `flaky` fail on their first two attempts (500), hang on the third (2 s,
/// past the sender's timeout) and succeed from the fourth; anything else
/// gets 200.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start_on(listener: tokio::net::TcpListener) -> Receiver {
        let receiver = Receiver::default();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    async fn start() -> (Receiver, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        (Receiver::start_on(listener).await, url)
    }

    /// Every request answered 200, in arrival order.
    fn delivered(&self) -> Vec<Received> {
        let got = self.got.lock().unwrap();
        got.iter().filter(|r| r.answered == 200).cloned().collect()
    }

    fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits for a delivered event of `kind` matching `pred`.
    async fn wait_for(&self, kind: &str, pred: impl Fn(&Value) -> bool) -> Received {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(r) = self
                .delivered()
                .into_iter()
                .find(|r| r.body["type"] == kind && pred(&r.body["data"]))
            {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {kind} event arrived; got {:#?}",
                self.all()
                    .iter()
                    .map(|r| (r.answered, r.body.clone()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn hook(State(receiver): State<Receiver>, headers: HeaderMap, raw: String) -> StatusCode {
    let body: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let attempt: u32 = headers
        .get("telepath-attempt")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let flaky = body["data"]["body"] == "flaky";
    let answered = match (flaky, attempt) {
        (true, 1 | 2) => 500,
        (true, 3) => 0,
        _ => 200,
    };
    receiver.got.lock().unwrap().push(Received {
        headers,
        body,
        raw,
        answered,
    });
    match answered {
        500 => StatusCode::INTERNAL_SERVER_ERROR,
        0 => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            StatusCode::OK
        }
        _ => StatusCode::OK,
    }
}

/// Checks a delivery's signature and headers the way a receiver should.
fn verify(r: &Received, secret: &str) {
    let sig = &r.headers["telepath-signature"];
    let (t, v1) = sig
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("signature header {sig:?}"));
    let t: i64 = t.parse().unwrap();
    assert!(
        (chrono::Utc::now().timestamp() - t).abs() < 300,
        "a fresh timestamp"
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", r.raw).as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, expected, "the signature of {}", r.raw);
    assert_eq!(
        r.headers["telepath-event"],
        r.body["type"].as_str().unwrap()
    );
    assert_eq!(
        r.headers["telepath-event-id"],
        r.body["id"].as_str().unwrap()
    );
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(r.body["created_at"].is_string());
}

/// `telepath apikey create` against the database at `db`: the key.
fn key(db: &std::path::Path, scopes: &str, rooms: Option<&str>) -> String {
    let mut args = vec!["apikey", "create", "--name", "hooks", "--scope", scopes];
    if let Some(prefix) = rooms {
        args.extend(["--rooms", prefix]);
    }
    let out = std::process::Command::new(bin_dir().join("telepath"))
        .args(&args)
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_owned()
}

/// A port nothing listens on.
async fn dead_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// The deliveries of webhook `id`, newest first.
async fn deliveries(http: &Client, api: &str, key: &str, id: &str) -> Vec<Value> {
    let (status, page) = call(
        http,
        "GET",
        format!("{api}/api/webhooks/{id}/deliveries?limit=100"),
        key,
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page["deliveries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_session_on_two_gateways_reaches_a_webhook_signed_through_failures_and_timeouts() {
    let cluster = start_cluster_with(
        2,
        1,
        &[
            ("TELEPATH_WEBHOOK_ALLOW_PRIVATE", "1".into()),
            ("TELEPATH_WEBHOOK_TIMEOUT_MS", "500".into()),
        ],
    )
    .await;
    let http = Client::new();
    let api = &cluster.api.url;
    let key = key(&cluster.db_path(), "webhooks,publish", None);
    let (receiver, url) = Receiver::start().await;
    let every = [
        "user.connected",
        "user.disconnected",
        "room.joined",
        "room.left",
        "message.created",
        "message.edited",
        "message.deleted",
        "presence.changed",
    ];
    let (status, created) = call(
        &http,
        "POST",
        format!("{api}/api/webhooks"),
        &key,
        Some(json!({"url": url, "events": every, "secret": SECRET})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["secret"], SECRET);
    let hook_id = created["id"].as_str().unwrap().to_owned();
    // A second webhook, to an endpoint that is down for the whole test.
    let dead = format!("http://127.0.0.1:{}/hook", dead_port().await);
    let (status, dead_hook) = call(
        &http,
        "POST",
        format!("{api}/api/webhooks"),
        &key,
        Some(json!({"url": dead, "events": ["message.created"]})),
    )
    .await;
    assert_eq!(status, 201, "{dead_hook}");
    assert!(
        dead_hook["secret"].as_str().unwrap().starts_with("whsec_"),
        "a secret is made when none is given: {dead_hook}"
    );
    let (_, listed) = call(&http, "GET", format!("{api}/api/webhooks"), &key, None).await;
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 2);
    assert!(
        listed["webhooks"][0].get("secret").is_none(),
        "never listed: {listed}"
    );

    let ada = login(&http, api, "ada").await;
    let bob = login(&http, api, "bob").await;
    let room = create_room(&http, api, &ada, "hooked").await;
    let mut b = WsClient::connect(&cluster.gateways[1].url, &bob.token)
        .await
        .unwrap();
    let connected = receiver
        .wait_for("user.connected", |d| d["user"]["id"] == bob.id.as_str())
        .await;
    assert_eq!(connected.body["data"]["node"], "gw1");
    let at = connected.body["data"]["at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(at).is_ok() && at.len() <= 24,
        "to the millisecond: {at}"
    );
    receiver
        .wait_for("presence.changed", |d| {
            d["user"]["id"] == bob.id.as_str() && d["status"] == "online"
        })
        .await;
    b.join(&room).await;
    receiver
        .wait_for("room.joined", |d| {
            d["room"] == room.as_str() && d["user"]["id"] == bob.id.as_str()
        })
        .await;

    // Message, edit, delete: each delivered with the frame's data, signed.
    let sent = b
        .ok(json!({"type": "send", "room": room, "body": "hello"}))
        .await;
    let id = sent["id"].as_str().unwrap().to_owned();
    let created = receiver
        .wait_for("message.created", |d| d["id"] == id.as_str())
        .await;
    assert_eq!(created.body["data"]["body"], "hello");
    assert_eq!(created.body["data"]["room"], room.as_str());
    assert_eq!(created.body["data"]["seq"], sent["seq"]);
    verify(&created, SECRET);
    b.ok(json!({"type": "edit", "room": room, "id": id, "body": "hello, edited"}))
        .await;
    let edited = receiver
        .wait_for("message.edited", |d| d["id"] == id.as_str())
        .await;
    assert_eq!(edited.body["data"]["body"], "hello, edited");
    verify(&edited, SECRET);
    b.ok(json!({"type": "delete", "room": room, "id": id}))
        .await;
    verify(
        &receiver
            .wait_for("message.deleted", |d| d["id"] == id.as_str())
            .await,
        SECRET,
    );

    // Leave and disconnect.
    b.ok(json!({"type": "leave", "room": room})).await;
    receiver
        .wait_for("room.left", |d| {
            d["room"] == room.as_str() && d["user"]["id"] == bob.id.as_str()
        })
        .await;
    drop(b);
    receiver
        .wait_for("user.disconnected", |d| d["user"]["id"] == bob.id.as_str())
        .await;
    receiver
        .wait_for("presence.changed", |d| {
            d["user"]["id"] == bob.id.as_str() && d["status"] == "offline"
        })
        .await;
    // A delivery the receiver fails twice, then holds past the timeout,
    // then takes (a backend's publish this time): it is retried with
    // backoff, and visible meanwhile.
    let (status, flaky) = call(
        &http,
        "POST",
        format!("{api}/api/rooms/{room}/publish"),
        &key,
        Some(json!({"body": "flaky"})),
    )
    .await;
    assert_eq!(status, 201, "{flaky}");
    let mut saw_timeout = false;
    let mut saw_500 = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let event_id = loop {
        let list = deliveries(&http, api, &key, &hook_id).await;
        let mine = list.iter().find(|d| {
            receiver
                .all()
                .iter()
                .any(|r| r.body["id"] == d["event_id"] && r.body["data"]["id"] == flaky["id"])
        });
        if let Some(d) = mine {
            if d["status"] == "pending" && d["last_status"] == 500 {
                assert!(d["last_error"].as_str().unwrap().contains("500"), "{d}");
                assert!(d["next_attempt_at"].is_string(), "{d}");
                saw_500 = true;
            }
            if d["status"] == "pending"
                && d["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("no answer within 500 ms"))
            {
                saw_timeout = true;
            }
            if d["status"] == "delivered" {
                assert_eq!(d["attempts"], 4, "{d}");
                assert_eq!(d["last_status"], 200, "{d}");
                assert!(d["delivered_at"].is_string() && d.get("last_error").is_none());
                break d["event_id"].as_str().unwrap().to_owned();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the flaky delivery was never delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(saw_500 && saw_timeout, "both failures were visible");
    let attempts: Vec<(String, u16)> = receiver
        .all()
        .iter()
        .filter(|r| r.body["id"] == event_id.as_str())
        .map(|r| (r.headers["telepath-attempt"].clone(), r.answered))
        .collect();
    assert_eq!(
        attempts,
        [
            ("1".to_owned(), 500),
            ("2".to_owned(), 500),
            ("3".to_owned(), 0),
            ("4".to_owned(), 200)
        ],
        "one event id on every attempt"
    );

    // The dead endpoint slowed nothing: every send above was acknowledged;
    // its deliveries wait with the reason.
    let waiting = deliveries(&http, api, &key, dead_hook["id"].as_str().unwrap()).await;
    assert_eq!(waiting.len(), 2, "hello and flaky: {waiting:?}");
    for d in &waiting {
        assert_eq!(d["status"], "pending", "{d}");
        assert!(d["attempts"].as_i64().unwrap() >= 1, "{d}");
        assert!(
            d["last_error"].as_str().is_some_and(|e| !e.is_empty()),
            "{d}"
        );
        assert!(d.get("last_status").is_none(), "no answer: {d}");
    }

    for r in receiver.delivered() {
        verify(&r, SECRET);
    }
    let metrics = get_text(&http, &format!("{api}/metrics")).await;
    assert!(
        metric(
            &metrics,
            "telepath_api_webhook_attempts_total{outcome=\"failed\"}"
        )
        .unwrap()
            >= 3.0
    );

    // Deleted: nothing more is sent, and it is gone.
    let (status, _) = call(
        &http,
        "DELETE",
        format!("{api}/api/webhooks/{hook_id}"),
        &key,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        &http,
        "GET",
        format!("{api}/api/webhooks/{hook_id}"),
        &key,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let before = receiver.all().len();
    let (status, _) = call(
        &http,
        "POST",
        format!("{api}/api/rooms/{room}/publish"),
        &key,
        Some(json!({"body": "after the delete"})),
    )
    .await;
    assert_eq!(status, 201);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.all().len(),
        before,
        "a deleted webhook hears nothing"
    );
}

#[tokio::test]
async fn queued_deliveries_survive_the_api_being_killed_and_arrive_once_the_receiver_is_up() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("api.db");
    let env = [
        ("REDIS_URL", redis.url()),
        ("DATABASE_URL", format!("sqlite://{}", db_path.display())),
        ("TELEPATH_DEV_LOGIN", "1".into()),
        ("TELEPATH_IP_LOGIN_RATE_PER_S", "0".into()),
        ("TELEPATH_IP_ROOM_RATE_PER_S", "0".into()),
        ("TELEPATH_WEBHOOK_ALLOW_PRIVATE", "1".into()),
    ];
    let mut api = Service::start("telepath-api", &env).await;
    let http = Client::new();
    let key = key(&db_path, "webhooks,publish", None);
    let ada = login(&http, &api.url, "ada").await;
    let room = create_room(&http, &api.url, &ada, "durable").await;
    // The receiver's port, not listening yet.
    let port = dead_port().await;
    let (status, created) = call(
        &http,
        "POST",
        format!("{}/api/webhooks", api.url),
        &key,
        Some(json!({"url": format!("http://127.0.0.1:{port}/hook"), "events": ["message.created"], "secret": SECRET})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let hook_id = created["id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for i in 0..20 {
        let (status, m) = call(
            &http,
            "POST",
            format!("{}/api/rooms/{room}/publish", api.url),
            &key,
            Some(json!({"body": format!("durable {i}")})),
        )
        .await;
        assert_eq!(status, 201, "{m}");
        ids.push(m["id"].as_str().unwrap().to_owned());
    }
    // Attempted at least once (refused), then the api dies without a goodbye.
    let url = api.url.clone();
    eventually(Duration::from_secs(10), "a failed attempt", || async {
        deliveries(&http, &url, &key, &hook_id)
            .await
            .iter()
            .any(|d| d["attempts"].as_i64() >= Some(1))
    })
    .await;
    api.kill();

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let receiver = Receiver::start_on(listener).await;
    let api = Service::start("telepath-api", &env).await;
    eventually(Duration::from_secs(30), "all 20 delivered", || async {
        let got: std::collections::HashSet<String> = receiver
            .delivered()
            .iter()
            .map(|r| r.body["data"]["id"].as_str().unwrap_or("").to_owned())
            .collect();
        ids.iter().all(|id| got.contains(id))
    })
    .await;
    // At least once: a repeat carries the same event id, so the receiver
    // can drop it; no event is missing, none is invented.
    let mut by_event: HashMap<String, String> = HashMap::new();
    for r in receiver.delivered() {
        verify(&r, SECRET);
        let message = r.body["data"]["id"].as_str().unwrap().to_owned();
        let event = r.body["id"].as_str().unwrap().to_owned();
        if let Some(seen) = by_event.insert(event, message.clone()) {
            assert_eq!(seen, message, "one event id names one message");
        }
    }
    assert_eq!(by_event.len(), 20);
    let url = api.url.clone();
    eventually(Duration::from_secs(10), "all marked delivered", || async {
        let list = deliveries(&http, &url, &key, &hook_id).await;
        list.len() == 20 && list.iter().all(|d| d["status"] == "delivered")
    })
    .await;
}

#[tokio::test]
async fn a_webhook_is_bounded_gives_up_after_its_window_and_refuses_private_addresses() {
    // Defaults: private addresses refused.
    let node = spawn_node(|_| {}).await;
    let http = &node.http;
    let admin = login_as(http, &node.url, "root", "admin").await;
    let make_key = |scopes: Value| {
        let body = json!({"name": "k", "scopes": scopes});
        let (http, url, token) = (http.clone(), node.url.clone(), admin.token.clone());
        async move {
            let created: Value = http
                .post(format!("{url}/admin/api-keys"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            created["key"].as_str().unwrap().to_owned()
        }
    };
    let key = make_key(json!(["webhooks"])).await;
    let hooks = format!("{}/api/webhooks", node.url);
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
    ] {
        let (status, body) = call(
            http,
            "POST",
            hooks.clone(),
            &key,
            Some(json!({"url": url, "events": ["message.created"]})),
        )
        .await;
        assert_eq!(status, 400, "{url}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("non-public"),
            "{url}: {body}"
        );
    }
    // Bad input: what the check says, or what the schema refuses.
    for (body, says) in [
        (
            json!({"url": "ftp://a.test/", "events": ["message.created"]}),
            Some("http:// or https://"),
        ),
        (
            json!({"url": "https://u:p@a.test/", "events": ["message.created"]}),
            Some("user info"),
        ),
        (
            json!({"url": "https://a.test/", "events": []}),
            Some("events: 1-8"),
        ),
        (
            json!({"url": "https://a.test/", "events": ["room.left", "room.left"]}),
            Some("named twice"),
        ),
        (
            json!({"url": "https://a.test/", "events": ["room.left"], "secret": "short"}),
            Some("secret: 16-128"),
        ),
        (
            json!({"url": "https://a.test/", "events": ["room.left"], "secret": "has a space in it!"}),
            Some("secret: 16-128"),
        ),
        (
            json!({"url": "https://a.test/", "events": ["room.left"]}),
            Some("does not resolve"),
        ),
        (
            json!({"url": "https://a.test/", "events": ["message.sent"]}),
            None,
        ),
        (
            json!({"url": "https://a.test/", "events": ["room.left"], "extra": 1}),
            None,
        ),
        (json!({"events": ["room.left"]}), None),
    ] {
        let (status, answer) = call(http, "POST", hooks.clone(), &key, Some(body.clone())).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        if let Some(says) = says {
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(message.contains(says), "{body} -> {answer}");
        }
    }
    let publish_only = make_key(json!(["publish"])).await;
    let (status, _) = call(http, "GET", hooks.clone(), &publish_only, None).await;
    assert_eq!(status, 403, "the webhooks scope is needed");
    // Webhooks hear about every room: no key limited to some holds the scope.
    let (status, answer) = call(
        http,
        "POST",
        format!("{}/admin/api-keys", node.url),
        &admin.token,
        Some(json!({"name": "k", "scopes": ["publish", "webhooks"], "room_prefix": "billing-"})),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let (status, _) = call(http, "GET", hooks.clone(), &admin.token, None).await;
    assert_eq!(status, 401, "a user token is not an API key");
    let unknown = "0190a0a0-0000-7000-8000-000000000000";
    for (method, path) in [
        ("GET", format!("{hooks}/{unknown}")),
        ("DELETE", format!("{hooks}/{unknown}")),
        ("GET", format!("{hooks}/{unknown}/deliveries")),
        ("GET", format!("{hooks}/not-an-id")),
    ] {
        let (status, _) = call(http, method, path.clone(), &key, None).await;
        assert_eq!(status, 404, "{method} {path}");
    }
    drop(node);

    // Private addresses allowed, a window of 4 s and 5 pending at most.
    let node = spawn_node(|c| {
        c.api.webhook_allow_private = true;
        c.api.webhook_retry_for = Duration::from_secs(4);
        c.api.webhook_max_pending = 5;
    })
    .await;
    let http = &node.http;
    let admin = login_as(http, &node.url, "root", "admin").await;
    let created: Value = http
        .post(format!("{}/admin/api-keys", node.url))
        .bearer_auth(&admin.token)
        .json(&json!({"name": "k", "scopes": ["webhooks", "publish"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let room = create_room(http, &node.url, &admin, "bounded").await;
    let dead = format!("http://127.0.0.1:{}/hook", dead_port().await);
    let (status, hook) = call(
        http,
        "POST",
        format!("{}/api/webhooks", node.url),
        &key,
        Some(json!({"url": dead, "events": ["message.created"]})),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    let id = hook["id"].as_str().unwrap().to_owned();
    let (status, batch) = call(
        http,
        "POST",
        format!("{}/api/publish", node.url),
        &key,
        Some(json!({"items": (0..8).map(|i| json!({"room": room, "body": format!("m{i}")})).collect::<Vec<_>>()})),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    let (_, hook) = call(
        http,
        "GET",
        format!("{}/api/webhooks/{id}", node.url),
        &key,
        None,
    )
    .await;
    assert_eq!(hook["dropped"], 3, "8 events, 5 queued: {hook}");
    assert!(hook["pending"].as_i64().unwrap() <= 5, "{hook}");
    let url = node.url.clone();
    eventually(Duration::from_secs(20), "all 5 given up", || async {
        let list = deliveries(http, &url, &key, &id).await;
        list.len() == 5
            && list.iter().all(|d| {
                d["status"] == "failed"
                    && d.get("next_attempt_at").is_none()
                    && d["last_error"].is_string()
            })
    })
    .await;
    let (_, failed) = call(
        http,
        "GET",
        format!(
            "{}/api/webhooks/{id}/deliveries?status=failed&limit=2",
            node.url
        ),
        &key,
        None,
    )
    .await;
    let page = failed["deliveries"].as_array().unwrap();
    assert_eq!(page.len(), 2, "{failed}");
    let before = page[1]["id"].as_i64().unwrap();
    let (_, rest) = call(
        http,
        "GET",
        format!("{}/api/webhooks/{id}/deliveries?before={before}", node.url),
        &key,
        None,
    )
    .await;
    assert_eq!(rest["deliveries"].as_array().unwrap().len(), 3);
    for query in [
        "limit=0",
        "limit=101",
        "status=lost",
        "before=0",
        "before=x",
    ] {
        let (status, _) = call(
            http,
            "GET",
            format!("{}/api/webhooks/{id}/deliveries?{query}", node.url),
            &key,
            None,
        )
        .await;
        assert_eq!(status, 400, "{query}");
    }
    let metrics = get_json(http, &format!("{}/api/webhooks/{id}", node.url), |r| {
        r.bearer_auth(&key)
    })
    .await;
    assert_eq!(metrics["pending"], 0, "{metrics}");
    let page = get_text(http, &format!("{}/metrics", node.url)).await;
    assert_eq!(
        metric(&page, "telepath_api_webhook_gave_up_total"),
        Some(5.0)
    );
    assert_eq!(
        metric(&page, "telepath_api_webhook_dropped_total"),
        Some(3.0)
    );
}
