//! The deployment as processes (deploy/local/run.sh: redis-server, api,
//! presence, three gateways, HAProxy, Prometheus): it works through the
//! load balancer, its dashboard and alerts find their metrics, and the
//! compose file's health checks pass against it. deploy_config.rs checks
//! the files themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{Value, json};
use telepath_shared::testing::WsClient;

use crate::deploy_config::{
    alert_names, alert_rules, compose_health_check, dashboard_queries, metric_names,
};
use crate::helpers::{TestUser, create_room, eventually, get_json, get_text, login};
use crate::local::{LocalTopology, alive, require, signal};

/// The metric names in a Prometheus text exposition.
fn exposed_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The node (`gw1`..) each client landed on.
fn nodes(clients: &[WsClient]) -> BTreeMap<String, usize> {
    let mut by_node = BTreeMap::new();
    for c in clients {
        *by_node
            .entry(c.welcome["node"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    by_node
}

/// `n` users logged in through the load balancer, each connected once, all in `room`.
async fn members(
    http: &Client,
    url: &str,
    room: &str,
    prefix: &str,
    n: usize,
) -> Vec<(TestUser, WsClient)> {
    let mut out = Vec::new();
    for i in 0..n {
        let user = login(http, url, &format!("{prefix}{i}")).await;
        let mut ws = WsClient::connect(url, &user.token).await.unwrap();
        ws.join(room).await;
        out.push((user, ws));
    }
    out
}

/// The seqs of the next `n` messages `ws` receives.
async fn next_seqs(ws: &mut WsClient, n: usize) -> Vec<i64> {
    let mut seqs = Vec::new();
    for _ in 0..n {
        seqs.push(ws.next_of("message").await["seq"].as_i64().unwrap());
    }
    seqs
}

#[tokio::test]
async fn through_haproxy_connections_spread_over_the_gateways_and_a_message_crosses_nodes() {
    require("haproxy");
    let mut topo = LocalTopology::start(&[]);
    let url = topo.url().to_owned();
    let http = Client::new();
    // Only /connect, /presence and the api's public routes are routed.
    for path in ["/metrics", "/internal/presence/summary"] {
        let resp = http.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path} must not be routed");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
    // The demo web app and the SDK it imports come through the LB (from the api).
    for (path, kind) in [
        ("/", "text/html"),
        ("/app/app.js", "text/javascript"),
        ("/sdk/index.js", "text/javascript"),
    ] {
        let resp = http.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let got = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(got.starts_with(kind), "{path}: {got}");
    }
    let owner = login(&http, &url, "owner").await;
    let room = create_room(&http, &url, &owner, "lobby").await;

    let mut people = members(&http, &url, &room, "spread", 9).await;
    let clients: Vec<WsClient> = people.drain(..).map(|(_, ws)| ws).collect();
    let by_node = nodes(&clients);
    assert_eq!(by_node.len(), 3, "every gateway gets clients: {by_node:?}");
    assert!(
        by_node.values().all(|&n| (2..=4).contains(&n)),
        "least connections spreads them evenly: {by_node:?}"
    );

    // A message sent on one gateway reaches the members on the other two.
    let mut clients = clients;
    let sender_node = clients[0].welcome["node"].clone();
    let reply = clients[0]
        .ok(json!({"type": "send", "room": room, "body": "across the cluster"}))
        .await;
    for c in clients.iter_mut() {
        let got = c.next_of("message").await;
        assert_eq!(got["id"], reply["id"]);
    }
    assert!(clients.iter().any(|c| c.welcome["node"] != sender_node));

    // SIGTERM to run.sh stops every process it started.
    let pids = topo.pids();
    drop(clients);
    assert!(
        topo.stop(Duration::from_secs(30)),
        "run.sh stops on SIGTERM"
    );
    for pid in pids {
        assert!(!alive(pid), "pid {pid} outlived run.sh");
    }
}

/// Reconnects through the load balancer and resumes `room` after `since`.
async fn resume(url: &str, user: &TestUser, room: &str, since: i64) -> WsClient {
    let mut ws = WsClient::connect(url, &user.token).await.unwrap();
    let reply = ws
        .ok(json!({"type": "join", "room": room, "since": since}))
        .await;
    assert_eq!(reply["recovered"], true);
    ws
}

#[tokio::test]
async fn killing_a_gateway_moves_its_clients_to_the_others_without_losing_a_message() {
    require("haproxy");
    let topo = LocalTopology::start(&[("TELEPATH_HEARTBEAT_MS", "500")]);
    let url = topo.url().to_owned();
    let http = Client::new();
    let owner = login(&http, &url, "owner").await;
    let room = create_room(&http, &url, &owner, "fragile").await;
    let people = members(&http, &url, &room, "k", 6).await;
    let (mut on_victim, mut others): (Vec<_>, Vec<_>) = people
        .into_iter()
        .partition(|(_, ws)| ws.welcome["node"] == "gw1");
    assert!(!on_victim.is_empty() && !others.is_empty());

    let (_, pid) = topo.gateway(1);
    signal(pid, "KILL");
    for (_, ws) in on_victim.iter_mut() {
        // No close frame: the process is gone.
        assert_ne!(ws.closed().await, Some(1000));
    }
    // Messages sent while gw1's clients are away.
    let sender = &mut others[0].1;
    let mut last = 0;
    for i in 0..20 {
        last = sender
            .ok(json!({"type": "send", "room": room, "body": format!("while away {i}")}))
            .await["seq"]
            .as_i64()
            .unwrap();
    }
    for (user, _) in &on_victim {
        let mut ws = resume(&url, user, &room, last - 20).await;
        assert_ne!(
            ws.welcome["node"], "gw1",
            "the load balancer skips the dead gateway"
        );
        let expected: Vec<i64> = (last - 19..=last).collect();
        assert_eq!(
            next_seqs(&mut ws, 20).await,
            expected,
            "every message once, in order"
        );
    }
}

/// The seqs of the `message` frames `ws` has received but not consumed.
fn pending_seqs(ws: &WsClient) -> Vec<i64> {
    ws.pending()
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| f["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn sigterm_drains_a_gateway_behind_haproxy_within_the_drain_deadline_and_its_clients_resume_with_no_gap()
 {
    require("haproxy");
    // Long heartbeats: expiry would take 10 s, so a prompt removal can only be the drain's.
    let topo = LocalTopology::start(&[
        ("TELEPATH_HEARTBEAT_MS", "5000"),
        ("TELEPATH_DRAIN_SECS", "3"),
    ]);
    let url = topo.url().to_owned();
    let http = Client::new();
    let owner = login(&http, &url, "owner").await;
    let room = create_room(&http, &url, &owner, "restarting").await;
    let people = members(&http, &url, &room, "d", 30).await;
    let (mut draining, mut others): (Vec<_>, Vec<_>) = people
        .into_iter()
        .partition(|(_, ws)| ws.welcome["node"] == "gw1");
    assert!(
        draining.len() >= 5 && !others.is_empty(),
        "{}",
        draining.len()
    );
    let (gw1_url, pid) = topo.gateway(1);
    // A client that completes the upgrade and then never answers anything.
    let _mute = mute_client(&gw1_url, &draining[0].0.token).await;
    let presence = topo.env["PRESENCE_INTERNAL_URL"].clone();
    let gw1_connections = || {
        let (http, presence) = (http.clone(), presence.clone());
        async move {
            let url = format!("{presence}/internal/presence/summary");
            let summary = get_json(&http, &url, |r| {
                r.header(
                    telepath_shared::auth::INTERNAL_HEADER,
                    telepath_shared::auth::derive_internal_token(crate::helpers::SECRET),
                )
            })
            .await;
            summary["by_node"]["gw1"].as_u64().unwrap_or(0)
        }
    };
    let before = draining.len() as u64 + 1;
    eventually(
        Duration::from_secs(5),
        "gw1's connections in presence",
        || {
            let n = gw1_connections();
            async move { n.await == before }
        },
    )
    .await;

    // A publisher on another gateway keeps sending through the whole drain.
    let (_, mut publisher) = others.remove(0);
    let room_id = room.clone();
    let publishing = tokio::spawn(async move {
        let mut last = 0;
        for i in 0..150 {
            let body = format!("through the restart {i}");
            last = publisher
                .ok(json!({"type": "send", "room": room_id, "body": body}))
                .await["seq"]
                .as_i64()
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        last
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    signal(pid, "TERM");
    for (_, ws) in draining.iter_mut() {
        assert_eq!(ws.next_of("bye").await["reason"], "restart");
        assert_eq!(ws.closed().await, Some(1012));
    }
    let ready = http.get(format!("{gw1_url}/readyz")).send().await;
    assert!(
        ready.is_err() || ready.unwrap().status() != 200,
        "a draining gateway is not ready"
    );
    while alive(pid) {
        assert!(
            started.elapsed() < Duration::from_millis(3500),
            "the gateway must exit within TELEPATH_DRAIN_SECS (3 s)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "gw1 drained {} connections and exited {:?} after SIGTERM",
        draining.len() + 1,
        started.elapsed()
    );
    // Its connections left presence as it went, not two heartbeats later.
    assert_eq!(gw1_connections().await, 0);
    assert!(started.elapsed() < Duration::from_secs(5));

    // Every drained client comes back through the load balancer, resumes
    // from the last seq it saw and ends up with every message exactly once.
    let mut resumed = Vec::new();
    for (user, ws) in &draining {
        let seen = pending_seqs(ws);
        let since = seen.last().copied().unwrap_or(0);
        let fresh = resume(&url, user, &room, since).await;
        assert_ne!(fresh.welcome["node"], "gw1");
        resumed.push((seen, fresh));
    }
    let last = publishing.await.unwrap();
    for (mut seen, mut ws) in resumed {
        let since = seen.last().copied().unwrap_or(0);
        seen.extend(next_seqs(&mut ws, (last - since) as usize).await);
        assert_eq!(seen, (1..=last).collect::<Vec<_>>(), "no gap, no repeat");
    }
}

/// A raw TCP connection that upgrades to WebSocket and then reads and writes nothing.
async fn mute_client(base: &str, token: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /connect?token={token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    tcp
}

#[tokio::test]
async fn every_dashboard_and_alert_metric_exists_in_a_live_scrape_and_logs_are_json_without_tokens()
{
    require("haproxy");
    let topo = LocalTopology::start(&[
        ("TELEPATH_LOG_FORMAT", "json"),
        ("RUST_LOG", "debug"),
        ("TELEPATH_HEARTBEAT_MS", "500"),
    ]);
    let url = topo.url().to_owned();
    let http = Client::new();
    // Traffic that touches every family of metrics: REST, connects with the
    // token in the query string (as browsers do), joins, sends, typing,
    // statuses, DMs, acks, a refused handshake and a disconnect.
    let ada = login(&http, &url, "ada").await;
    let bob = login(&http, &url, "bob").await;
    let room = create_room(&http, &url, &ada, "metrics").await;
    let ws_url = format!("{}/connect?token=", url.replacen("http", "ws", 1));
    let connect = |token: &str| {
        let req = format!("{ws_url}{token}");
        async move {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            WsClient::connect_request(req.into_client_request().unwrap())
                .await
                .unwrap()
        }
    };
    let mut a = connect(&ada.token).await;
    let mut b = connect(&bob.token).await;
    a.join(&room).await;
    b.join(&room).await;
    let sent = a
        .ok(json!({"type": "send", "room": room, "body": "measured"}))
        .await;
    b.next_of("message").await;
    a.send(json!({"type": "typing", "room": room, "active": true}))
        .await;
    a.ok(json!({"type": "status", "status": "meditating", "text": "om"}))
        .await;
    let dm = a
        .ok(json!({"type": "dm", "to": "bob", "body": "psst"}))
        .await;
    b.ok(json!({"type": "ack", "dm": dm["id"]})).await;
    b.ok(json!({"type": "ack", "room": room, "seq": sent["seq"]}))
        .await;
    let refused = http
        .get(format!("{url}/connect?token=forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let history = http
        .get(format!("{url}/rooms/{room}/messages"))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(history.status(), 200);
    drop(b);

    // Every metric the dashboard uses is exposed by some process.
    let mut targets = vec![
        topo.env["API_URL"].clone(),
        topo.env["PRESENCE_URL"].clone(),
        topo.env["LB_METRICS_URL"].clone(),
    ];
    targets.extend((1..=3).map(|i| topo.gateway(i).0));
    let mut exposed = BTreeSet::new();
    for t in &targets {
        let text = get_text(&http, &format!("{t}/metrics")).await;
        exposed.extend(exposed_names(&text));
    }
    let queries = dashboard_queries();
    for q in &queries {
        for name in metric_names(q) {
            assert!(
                exposed.contains(&name),
                "the dashboard uses {name}, which no process exposes"
            );
        }
    }
    // So is every metric the alert rules use or name (a histogram by its
    // base name, as their descriptions call it).
    for name in metric_names(&alert_rules()) {
        assert!(
            exposed.contains(&name) || exposed.contains(&format!("{name}_count")),
            "alerts.yml uses {name}, which no process exposes"
        );
    }

    // And with Prometheus scraping the topology, every panel's query returns series.
    if let Some(prom) = topo.env.get("PROMETHEUS_URL").filter(|u| !u.is_empty()) {
        for q in &queries {
            let q = q.replace("$__rate_interval", "1m");
            eventually(Duration::from_secs(30), &format!("series for {q}"), || {
                let (http, prom, q) = (http.clone(), prom.clone(), q.clone());
                async move {
                    let url = reqwest::Url::parse_with_params(
                        &format!("{prom}/api/v1/query"),
                        [("query", q.as_str())],
                    )
                    .unwrap();
                    let body: Value = http.get(url).send().await.unwrap().json().await.unwrap();
                    assert_eq!(body["status"], "success", "{q}: {body}");
                    body["data"]["result"]
                        .as_array()
                        .is_some_and(|r| !r.is_empty())
                }
            })
            .await;
        }
        // Prometheus loaded every alert (run.sh points it at alerts.yml) and
        // evaluates each without error; none fires on a healthy cluster.
        let alerts = alert_names();
        eventually(Duration::from_secs(30), "every alert evaluated", || {
            let (http, prom, alerts) = (http.clone(), prom.clone(), alerts.clone());
            async move {
                let url = format!("{prom}/api/v1/rules?type=alert");
                let body: Value = http.get(url).send().await.unwrap().json().await.unwrap();
                let rules: Vec<Value> = body["data"]["groups"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|g| g["rules"].as_array().unwrap().clone())
                    .collect();
                let names: BTreeSet<String> = rules
                    .iter()
                    .map(|r| r["name"].as_str().unwrap().to_owned())
                    .collect();
                assert_eq!(names, alerts, "the alerts Prometheus loaded");
                for r in &rules {
                    assert_ne!(r["state"], "firing", "{r}");
                }
                rules.iter().all(|r| r["health"] == "ok")
            }
        })
        .await;
    } else {
        eprintln!(
            "prometheus is not installed: the dashboard queries and alerts were checked by name only"
        );
    }

    // Logs: JSON lines from every service, and no token anywhere (HAProxy's included).
    drop(a);
    let secrets = [ada.token.as_str(), bob.token.as_str()];
    for (name, text) in topo.logs() {
        for secret in secrets {
            assert!(!text.contains(secret), "{name} logged a token");
        }
        let service = ["api", "presence", "gw1", "gw2", "gw3"]
            .iter()
            .any(|s| name == format!("{s}.log"));
        if service {
            assert!(!text.is_empty(), "{name} logged nothing at debug level");
            for line in text.lines().filter(|l| !l.is_empty()) {
                assert!(
                    serde_json::from_str::<Value>(line).is_ok(),
                    "{name}: not a JSON log line: {line}"
                );
            }
        }
    }
}

/// Runs a compose health check command here; whether it passed.
fn passes(check: &[String]) -> bool {
    Command::new(&check[0])
        .args(&check[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `check` with `from` (an address it probes) replaced by `to`.
fn aimed(check: &[String], from: &str, to: &str) -> Vec<String> {
    assert!(
        check.iter().any(|a| a.contains(from)),
        "{check:?} probes {from}"
    );
    check.iter().map(|a| a.replace(from, to)).collect()
}

#[tokio::test]
async fn the_compose_health_checks_pass_against_the_same_processes_and_fail_without_them() {
    for tool in ["haproxy", "curl", "docker-compose"] {
        require(tool);
    }
    // Stopping it at the end takes a gateway up to its drain deadline.
    let topo = LocalTopology::start(&[("TELEPATH_DRAIN_SECS", "2")]);
    let nobody = format!("127.0.0.1:{}", telepath_shared::testing::free_port());
    // Telepath's services: curl on their /readyz, in compose on port 8080.
    for (name, url) in [
        ("api", topo.env["API_URL"].clone()),
        ("presence", topo.env["PRESENCE_URL"].clone()),
        ("gateway", topo.gateway(2).0),
    ] {
        let check = compose_health_check(name);
        let here = url.trim_start_matches("http://");
        assert!(passes(&aimed(&check, "127.0.0.1:8080", here)), "{name}");
        assert!(!passes(&aimed(&check, "127.0.0.1:8080", &nobody)), "{name}");
    }
    // HAProxy: bash's /dev/tcp and monitor-uri on the metrics port (8405 in compose).
    let check = compose_health_check("haproxy");
    let port = topo.env["LB_METRICS_URL"].rsplit(':').next().unwrap();
    assert!(passes(&aimed(
        &check,
        "127.0.0.1/8405",
        &format!("127.0.0.1/{port}")
    )));
    let nobody = nobody.replace(':', "/");
    assert!(!passes(&aimed(&check, "127.0.0.1/8405", &nobody)));
}

/// Behind HAProxy, a revoked token is refused by every part a client
/// reaches: the api's REST routes, presence's `/presence/online` (run.sh
/// gives presence the api's internal listener) and the gateways.
#[tokio::test]
async fn behind_haproxy_a_revoked_token_is_refused_by_the_api_presence_and_the_gateways() {
    require("haproxy");
    let topo = LocalTopology::start(&[("TELEPATH_DEV_ADMINS", "root")]);
    let url = topo.url().to_owned();
    let http = Client::new();
    let root = crate::helpers::login_as(&http, &url, "root", "admin").await;
    let ada = login(&http, &url, "ada").await;
    let status = |path: &'static str, token: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.get(format!("{url}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("/presence/online", ada.token.clone()).await, 200);
    // An earlier second than the revocation.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = http
        .post(format!("{url}/admin/users/{}/revoke", ada.id))
        .bearer_auth(&root.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    eventually(
        Duration::from_secs(3),
        "presence to refuse the token",
        || {
            let check = status("/presence/online", ada.token.clone());
            async move { check.await == 401 }
        },
    )
    .await;
    assert_eq!(status("/rooms", ada.token.clone()).await, 401);
    match WsClient::connect(&url, &ada.token).await {
        Err(telepath_shared::testing::WsError::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 401)
        }
        other => panic!(
            "the handshake was not refused with 401: {:?}",
            other.is_ok()
        ),
    }
}
