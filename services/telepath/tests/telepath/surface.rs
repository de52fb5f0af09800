//! No internal surface on a public port: the all-in-one wires its parts in
//! process and serves `/internal/*` nowhere; split services serve them only
//! on `TELEPATH_INTERNAL_LISTEN`; `/metrics` moves there with
//! `TELEPATH_METRICS_INTERNAL`; split services refuse the development
//! secret (anyone could derive their internal token from it).

use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::json;
use telepath_shared::auth::{INTERNAL_HEADER, derive_internal_token};
use telepath_shared::testing::WsClient;

use crate::cluster::start_cluster;
use crate::helpers::{SECRET, Service, create_room, login};

/// The status of `method path` at `base` with the right internal token.
async fn internal_status(http: &Client, method: &str, base: &str, path: &str) -> StatusCode {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    http.request(method, format!("{base}{path}"))
        .header(INTERNAL_HEADER, derive_internal_token(SECRET))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .status()
}

/// Every internal route, as `(method, path)`.
fn internal_routes(room: &str, user: &str) -> Vec<(&'static str, String)> {
    vec![
        ("POST", "/internal/messages".into()),
        ("POST", format!("/internal/rooms/{room}/join")),
        ("POST", format!("/internal/rooms/{room}/leave")),
        ("GET", format!("/internal/rooms/{room}/messages")),
        ("POST", "/internal/memberships".into()),
        ("POST", "/internal/acks".into()),
        ("POST", "/internal/connections".into()),
        ("GET", format!("/internal/dms/pending?user_id={user}")),
        ("POST", "/internal/dms/pending".into()),
        ("POST", "/internal/presence/reports".into()),
        ("POST", "/internal/presence/heartbeat".into()),
        ("POST", "/internal/presence/admit".into()),
        ("GET", "/internal/presence/summary".into()),
        (
            "GET",
            format!("/internal/presence/users/{user}/connections"),
        ),
    ]
}

#[tokio::test]
async fn the_all_in_one_serves_no_internal_route_anywhere_and_metrics_only_internally() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("t.db").display());
    let node = Service::start(
        "telepath",
        &[
            ("DATABASE_URL", db),
            ("TELEPATH_METRICS_INTERNAL", "1".into()),
        ],
    )
    .await;
    let http = Client::new();
    let ada = login(&http, &node.url, "ada").await;
    let room = create_room(&http, &node.url, &ada, "surface").await;
    for (method, path) in internal_routes(&room, &ada.id) {
        for base in [&node.url, &node.internal_url] {
            assert_eq!(
                internal_status(&http, method, base, &path).await,
                404,
                "{method} {path} at {base}, with the right internal token"
            );
        }
    }
    // /metrics only on the internal listener.
    let public = http
        .get(format!("{}/metrics", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
    let internal = http
        .get(format!("{}/metrics", node.internal_url))
        .send()
        .await
        .unwrap();
    assert_eq!(internal.status(), 200);
    // The parts still talk to each other (in process): a message commits,
    // is delivered, and the api's internal routes were measured doing it.
    let mut ws = WsClient::connect(&node.url, &ada.token).await.unwrap();
    ws.join(&room).await;
    let reply = ws
        .ok(json!({"type": "send", "room": room, "body": "inside"}))
        .await;
    assert_eq!(reply["seq"], 1);
    assert_eq!(ws.next_of("message").await["body"], "inside");
    drop(internal);
    let page = http
        .get(format!("{}/metrics", node.internal_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.lines().any(
            |l| l.starts_with("telepath_http_request_duration_seconds_count")
                && l.contains("route=\"/internal/messages\"")
        ),
        "in-process calls are measured like HTTP ones"
    );
}

#[tokio::test]
async fn split_services_serve_internal_routes_only_on_their_internal_listener() {
    let cluster = start_cluster(1, 1).await;
    let http = Client::new();
    let ada = login(&http, &cluster.api.url, "ada").await;
    let room = create_room(&http, &cluster.api.url, &ada, "surface").await;
    let (api, presence) = (&cluster.api, &cluster.presence[0]);
    for (method, path) in internal_routes(&room, &ada.id) {
        let owner = if path.starts_with("/internal/presence/") {
            presence
        } else {
            api
        };
        for public in [&api.url, &presence.url, &cluster.gateways[0].url] {
            assert_eq!(
                internal_status(&http, method, public, &path).await,
                404,
                "{method} {path} on the public listener {public}"
            );
        }
        let on_internal = internal_status(&http, method, &owner.internal_url, &path).await;
        assert_ne!(
            on_internal, 404,
            "{method} {path} is served on {}",
            owner.internal_url
        );
    }
    // What the public listeners do serve still works.
    let online = http
        .get(format!("{}/presence/online", presence.url))
        .bearer_auth(&ada.token)
        .send()
        .await
        .unwrap();
    assert_eq!(online.status(), 200);
    let doc: serde_json::Value = http
        .get(format!("{}/openapi.json", api.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(
        paths.keys().all(|p| !p.starts_with("/internal/")),
        "{paths:?}"
    );
    assert!(paths.contains_key("/rooms"));
}

#[test]
fn split_services_refuse_the_development_secret() {
    let bin_dir = std::path::PathBuf::from(env!("CARGO_BIN_EXE_telepath"))
        .parent()
        .unwrap()
        .to_path_buf();
    for name in ["telepath-api", "telepath-presence", "telepath-gateway"] {
        let port = telepath_shared::testing::free_port();
        let mut child = Command::new(bin_dir.join(name))
            .env_clear()
            .env(
                "TELEPATH_JWT_SECRET",
                telepath_shared::config::DEV_JWT_SECRET,
            )
            .env("TELEPATH_LISTEN", format!("127.0.0.1:{port}"))
            .env("REDIS_URL", "redis://127.0.0.1:9")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name} started with the development secret"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(!status.success(), "{name}");
        assert!(err.contains("development secret"), "{name}: {err}");
    }
}

/// Runs the all-in-one with `env` until it exits (within 10 s); its stderr.
fn all_in_one_exits(env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let bin = env!("CARGO_BIN_EXE_telepath");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("t.db").display()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the all-in-one kept running with {env:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status, err)
}

#[test]
fn dev_login_on_by_default_refuses_to_listen_beyond_loopback() {
    // Refused before anything is bound.
    let (status, err) = all_in_one_exits(&[("TELEPATH_LISTEN", "0.0.0.0:1")]);
    assert!(!status.success());
    assert!(err.contains("loopback only"), "{err}");
}

#[tokio::test]
async fn dev_login_grants_admin_only_to_the_users_telepath_dev_admins_names() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("t.db").display());
    let http = Client::new();
    let try_admin = |base: String, name: &'static str| {
        let http = http.clone();
        async move {
            http.post(format!("{base}/auth/login"))
                .json(&json!({"username": name, "role": "admin"}))
                .send()
                .await
                .unwrap()
        }
    };
    // Nobody by default.
    let node = Service::start("telepath", &[("DATABASE_URL", db.clone())]).await;
    let resp = try_admin(node.url.clone(), "root").await;
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(login(&http, &node.url, "plain").await.name, "plain");
    drop(node);
    // Only the named ones.
    let node = Service::start(
        "telepath",
        &[
            ("DATABASE_URL", db),
            ("TELEPATH_DEV_ADMINS", "root,ops".into()),
        ],
    )
    .await;
    let resp = try_admin(node.url.clone(), "root").await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["user"]["role"], "admin");
    assert_eq!(try_admin(node.url.clone(), "eve").await.status(), 403);
}
