//! Delivery under network faults, with real processes: a gateway whose
//! Redis subscription goes deaf (its replies blackholed or stalled, or cut
//! in the middle of one) while messages flow heals by itself, catches up
//! every room it follows (quiet ones too) and becomes ready again; a
//! frozen Redis holds no acknowledgement hostage.

use std::time::Duration;

use reqwest::Client;
use serde_json::json;
use telepath_shared::testing::WsClient;
use telepath_shared::testing::proxy::{Direction, Fault};

use crate::cluster::{Pair, ada_and_bob, start_cluster, start_cluster_proxied};
use crate::helpers::create_room;

/// The next `n` distinct seqs `c` receives in room `room`, in arrival
/// order (a repeat of the last one is dropped, as clients do).
async fn room_seqs(c: &mut WsClient, room: &str, n: usize) -> Vec<i64> {
    let mut seqs: Vec<i64> = Vec::with_capacity(n);
    while seqs.len() < n {
        let m = c
            .wait_for(|f| f["type"] == "message" && f["room"] == room)
            .await;
        let seq = m["seq"].as_i64().unwrap();
        if !seqs.contains(&seq) {
            seqs.push(seq);
        }
    }
    seqs
}

/// Whether `url`'s `/readyz` answers 200.
async fn ready(http: &Client, url: &str) -> bool {
    http.get(format!("{url}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

/// Waits up to `secs` seconds for `url`'s readiness to be `want`, reading
/// `clients` meanwhile (so they answer pings; what they receive is kept).
async fn until_ready(
    http: &Client,
    url: &str,
    want: bool,
    secs: u64,
    clients: &mut [&mut WsClient],
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while ready(http, url).await != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} ready={want} not within {secs} s"
        );
        for c in clients.iter_mut() {
            c.sees_within(Duration::from_millis(50), |_| false).await;
        }
    }
}

/// Gateway 1 (bob's) loses its subscription to `fault` while ada sends to a
/// busy room and to a quiet one; once the fault ends, bob has every
/// message of both, in order, and the gateway is ready again.
async fn heals_from(fault: impl FnOnce(&crate::cluster::Cluster)) {
    let cluster = start_cluster_proxied(2, 1).await;
    let http = Client::new();
    let Pair {
        ada,
        room,
        mut a,
        mut b,
        ..
    } = ada_and_bob(&cluster).await;
    // A room that hears nothing before the fault: gateway 1 never relayed
    // a message of it.
    let quiet = create_room(&http, &cluster.api.url, &ada, "quiet").await;
    a.join(&quiet).await;
    b.join(&quiet).await;
    for i in 1..=5 {
        a.ok(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
    }
    assert_eq!(room_seqs(&mut b, &room, 5).await, vec![1, 2, 3, 4, 5]);

    fault(&cluster);
    let gw1 = cluster.gateways[1].url.clone();
    for i in 6..=15 {
        a.ok(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
        // Bob reads meanwhile (answering pings); what comes is kept.
        b.sees_within(Duration::from_millis(100), |_| false).await;
    }
    a.ok(json!({"type": "send", "room": quiet, "body": "while deaf"}))
        .await;
    until_ready(&http, &gw1, false, 10, &mut [&mut a, &mut b]).await;

    cluster.proxies[1].set(Fault::None);
    for i in 16..=20 {
        a.ok(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
        b.sees_within(Duration::from_millis(100), |_| false).await;
    }
    until_ready(&http, &gw1, true, 15, &mut [&mut a, &mut b]).await;
    assert_eq!(
        room_seqs(&mut b, &room, 15).await,
        (6..=20).collect::<Vec<_>>(),
        "every message of the busy room, in order"
    );
    assert_eq!(
        room_seqs(&mut b, &quiet, 1).await,
        vec![1],
        "the quiet room's message too, with nothing after it"
    );
    // And the subscription delivers live again.
    a.ok(json!({"type": "send", "room": quiet, "body": "after"}))
        .await;
    assert_eq!(room_seqs(&mut b, &quiet, 1).await, vec![2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_redis_replies_are_blackholed_heals_and_catches_up() {
    heals_from(|c| c.proxies[1].set(Fault::Drop(Direction::ToClient))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_redis_replies_stall_heals_and_catches_up() {
    heals_from(|c| c.proxies[1].set(Fault::Stall(Direction::ToClient))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_redis_requests_are_blackholed_heals_and_catches_up() {
    heals_from(|c| c.proxies[1].set(Fault::Drop(Direction::ToUpstream))).await;
}

/// Ada (gateway 0) sends m1..=m3 to the pair's room and bob (gateway 1)
/// has them: the cluster works before the fault.
async fn three_delivered(cluster: &crate::cluster::Cluster) -> (String, WsClient, WsClient) {
    let Pair {
        room, mut a, mut b, ..
    } = ada_and_bob(cluster).await;
    for i in 1..=3 {
        a.ok(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
    }
    assert_eq!(room_seqs(&mut b, &room, 3).await, vec![1, 2, 3]);
    (room, a, b)
}

/// `b` gets exactly `seqs` of `room` next, in order, and then no message.
async fn gets_each_once(b: &mut WsClient, room: &str, seqs: std::ops::RangeInclusive<i64>) {
    let want: Vec<i64> = seqs.collect();
    assert_eq!(room_seqs(b, room, want.len()).await, want, "in order");
    assert!(
        !b.sees_within(Duration::from_secs(2), |f| f["type"] == "message")
            .await,
        "no message twice"
    );
}

/// Gateway 1's connections to Redis are cut in the middle of the next
/// chunk Redis sends (a message of the room, a reply): the gateway
/// reconnects and bob still gets every message, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_redis_stream_is_cut_mid_reply_catches_up() {
    let cluster = start_cluster_proxied(2, 1).await;
    let (room, mut a, mut b) = three_delivered(&cluster).await;
    cluster.proxies[1].cut_mid_reply();
    for i in 4..=10 {
        a.ok(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
        // Bob reads meanwhile (answering pings); what comes is kept.
        b.sees_within(Duration::from_millis(100), |_| false).await;
    }
    gets_each_once(&mut b, &room, 4..=10).await;
}

/// With Redis frozen (SIGSTOP), sends without a `client_id` are still
/// answered `ok` at once, since the api answers a message when it is
/// committed and publishes it afterwards; once Redis runs again, a member on
/// the other gateway gets every one of them, in order, once. (Before the
/// outbox, each batch waited for its publish: seconds per send, then
/// `unavailable` for committed messages, which a client resends.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_holds_no_ack_hostage_and_nothing_is_lost_or_repeated() {
    let cluster = start_cluster(2, 1).await;
    let (room, mut a, mut b) = three_delivered(&cluster).await;
    cluster.redis.pause();
    let started = tokio::time::Instant::now();
    for i in 4..=13 {
        let reply = a
            .request(json!({"type": "send", "room": room, "body": format!("m{i}")}))
            .await;
        assert_eq!(reply["ok"], true, "send {i} with Redis frozen: {reply}");
        assert_eq!(reply["data"]["seq"], i, "{reply}");
        // Bob answers his pings on a busy machine too.
        b.sees_within(Duration::from_millis(10), |_| false).await;
    }
    // Ten sends one after the other; each waiting for a publish took
    // seconds, and the gateway gives up on the api after 5 s.
    let took = started.elapsed();
    // Redis stays frozen a while longer; bob reads meanwhile (answering
    // pings, or the gateway closes him with 1011).
    b.sees_within(Duration::from_secs(1), |_| false).await;
    cluster.redis.resume();
    assert!(
        took < Duration::from_secs(4),
        "ten sends took {took:?} with Redis frozen"
    );

    gets_each_once(&mut b, &room, 4..=13).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_has_no_seq_is_read_back_after_an_outage_dms_leaves_and_closed_rooms() {
    let cluster = start_cluster_proxied(2, 1).await;
    let http = Client::new();
    let api = cluster.api.url.clone();
    let Pair {
        ada,
        room,
        mut a,
        mut b,
        ..
    } = ada_and_bob(&cluster).await;
    let carol = crate::helpers::login(&http, &api, "carol").await;
    let closing = create_room(&http, &api, &ada, "closing").await;
    b.join(&closing).await;
    // Carol on gateway 1, in the room too.
    let mut c = WsClient::connect(&cluster.gateways[1].url, &carol.token)
        .await
        .unwrap();
    c.join(&room).await;

    cluster.proxies[1].set(Fault::Drop(Direction::ToClient));
    let gw1 = cluster.gateways[1].url.clone();
    until_ready(&http, &gw1, false, 10, &mut [&mut a, &mut b, &mut c]).await;
    // While gateway 1 hears nothing: a DM to bob, carol leaving the room
    // from another device, ada closing the other room.
    let dm = a
        .ok(json!({"type": "dm", "to": "bob", "body": "psst"}))
        .await;
    let left = http
        .delete(format!("{api}/rooms/{room}/leave"))
        .bearer_auth(&carol.token)
        .send()
        .await
        .unwrap();
    assert_eq!(left.status(), 204);
    let closed = http
        .delete(format!("{api}/rooms/{closing}"))
        .bearer_auth(&ada.token)
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 204);

    cluster.proxies[1].set(Fault::None);
    until_ready(&http, &gw1, true, 15, &mut [&mut a, &mut b, &mut c]).await;
    let got = b.wait_for(|f| f["type"] == "dm").await;
    assert_eq!((&got["id"], &got["body"]), (&dm["id"], &json!("psst")));
    let gone = b
        .wait_for(|f| f["type"] == "room_closed" && f["room"] == closing)
        .await;
    assert_eq!(gone["by"]["name"], "ada");
    let went = c
        .wait_for(|f| f["type"] == "member" && f["room"] == room && f["action"] == "left")
        .await;
    assert_eq!(went["user"]["name"], "carol");
    // And the gateway acts on them: room-scoped requests are refused.
    let typing = c
        .request(json!({"type": "typing", "room": room, "active": true}))
        .await;
    assert_eq!(typing["error"]["code"], "forbidden", "{typing}");
    let typing = b
        .request(json!({"type": "typing", "room": closing, "active": true}))
        .await;
    assert_eq!(typing["error"]["code"], "forbidden", "{typing}");
}

/// Posts `n` messages of `chars` characters to `room` as `user`, in
/// batches through the api's internal route (a backend flooding the room).
async fn flood(
    http: &Client,
    api: &str,
    user: &crate::helpers::TestUser,
    room: &str,
    n: usize,
    chars: usize,
) {
    let body = "x".repeat(chars);
    let send =
        json!({"room": room, "send": {"from": {"id": user.id, "name": user.name}, "body": body}});
    for batch in (0..n).collect::<Vec<_>>().chunks(25) {
        let sends = vec![send.clone(); batch.len()];
        let resp = http
            .post(format!("{api}/internal/messages"))
            .header(
                telepath_shared::auth::INTERNAL_HEADER,
                telepath_shared::auth::derive_internal_token(crate::helpers::SECRET),
            )
            .json(&json!({ "sends": sends }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
}

/// The gateway's open connections, and its disconnects labelled `reason`.
async fn gateway_counts(http: &Client, gw: &str, reason: &str) -> (f64, f64) {
    let page = telepath_shared::testing::get_text(http, &format!("{gw}/metrics")).await;
    let open = telepath_shared::testing::metric(&page, "telepath_gateway_connections_active");
    let closed: f64 = page
        .lines()
        .filter(|l| {
            l.starts_with("telepath_gateway_disconnects_total")
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    (open.unwrap_or(-1.0), closed)
}

/// A queue long enough that a flood blocks the socket before it fills the
/// queue (which would close the connection as a slow consumer anyway).
fn big_queue() -> (&'static str, String) {
    ("TELEPATH_OUTBOUND_QUEUE", "8192".to_owned())
}

/// Bob joins a room over a socket with a tiny receive buffer and stops
/// reading; a backend then floods the room with more than the socket
/// buffers hold (but fewer frames than his queue), so the gateway's write
/// to him blocks. Returns bob's client (kept open, never read again).
async fn a_client_that_stops_reading(
    cluster: &crate::cluster::Cluster,
    http: &Client,
    token_ttl_secs: Option<i64>,
) -> WsClient {
    let ada = crate::helpers::login(http, &cluster.api.url, "ada").await;
    let bob = crate::helpers::login(http, &cluster.api.url, "bob").await;
    let room = create_room(http, &cluster.api.url, &ada, "flood").await;
    let token = match token_ttl_secs {
        Some(ttl) => telepath_shared::auth::JwtKeys::new(crate::helpers::SECRET).mint(
            &telepath_shared::protocol::UserInfo {
                id: bob.id.clone(),
                name: bob.name.clone(),
                role: telepath_shared::protocol::Role::User,
            },
            ttl,
        ),
        None => bob.token.clone(),
    };
    let mut b = WsClient::connect_small(&cluster.gateways[0].url, &token, 4096)
        .await
        .unwrap();
    b.join(&room).await;
    // 1,500 frames of 4 KB: 6 MB, more than the 4 MB a socket may buffer,
    // in fewer frames than bob's queue holds (see [`big_queue`]).
    flood(http, &cluster.api.internal_url, &ada, &room, 1500, 4000).await;
    b
}

/// A cluster with `env`, a client that stops reading (with a token valid
/// for `ttl` seconds, if given), and the wait for the gateway to have closed
/// it, counted under `reason`.
async fn closes_a_reader_that_stopped(env: &[(&str, String)], ttl: Option<i64>, reason: &str) {
    let cluster = crate::cluster::start_cluster_with(1, 1, env).await;
    let http = Client::new();
    let _bob = a_client_that_stops_reading(&cluster, &http, ttl).await;
    let gw = cluster.gateways[0].url.clone();
    telepath_shared::testing::eventually(Duration::from_secs(15), reason, || {
        let (http, gw) = (http.clone(), gw.clone());
        async move { gateway_counts(&http, &gw, reason).await == (0.0, 1.0) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_when_its_writes_stay_blocked() {
    // Heartbeat 500 ms: a write blocked for 1 s ends the connection.
    closes_a_reader_that_stopped(&[big_queue()], None, "slow_consumer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_still_closed_when_its_token_expires() {
    // Heartbeats far apart, so the token's expiry (2 s, plus the 5 s of
    // leeway) comes first.
    let slow = [big_queue(), ("TELEPATH_HEARTBEAT_MS", "20000".to_owned())];
    closes_a_reader_that_stopped(&slow, Some(2), "token_expired").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_gateways_full_inbound_queue_drops_is_read_back() {
    // A gateway whose relay may have only 4 bus messages waiting.
    let small = [("TELEPATH_INBOUND_QUEUE", "4".to_owned())];
    let cluster = crate::cluster::start_cluster_with(1, 1, &small).await;
    let http = Client::new();
    let api = cluster.api.url.clone();
    let ada = crate::helpers::login(&http, &api, "ada").await;
    let bob = crate::helpers::login(&http, &api, "bob").await;
    let room = create_room(&http, &api, &ada, "burst").await;
    let mut b = WsClient::connect(&cluster.gateways[0].url, &bob.token)
        .await
        .unwrap();
    b.join(&room).await;
    // 300 messages in bursts of 25, and then nothing.
    flood(&http, &cluster.api.internal_url, &ada, &room, 300, 10).await;
    assert_eq!(
        room_seqs(&mut b, &room, 300).await,
        (1..=300).collect::<Vec<_>>(),
        "every message, in order"
    );
    let gw = cluster.gateways[0].url.clone();
    let page = telepath_shared::testing::get_text(&http, &format!("{gw}/metrics")).await;
    let metric = |name| telepath_shared::testing::metric(&page, name).unwrap_or(0.0);
    assert!(
        metric("telepath_gateway_bus_dropped_messages_total") > 0.0,
        "the queue overflowed (else this test proves nothing)"
    );
    assert!(metric("telepath_gateway_bus_resyncs_total") >= 1.0);
}

/// How many history reads the api has served gateways so far.
async fn history_reads(http: &Client, api: &str) -> f64 {
    let page = telepath_shared::testing::get_text(http, &format!("{api}/metrics")).await;
    page.lines()
        .filter(|l| {
            l.starts_with("telepath_http_request_duration_seconds_count")
                && l.contains("route=\"/internal/rooms/{id}/messages\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_reads_a_rooms_history_about_once() {
    // Forty connections of one user: over the default per-user cap.
    let cluster =
        crate::cluster::start_cluster_with(1, 1, &[("TELEPATH_MAX_CONNS_PER_USER", "100".into())])
            .await;
    let http = Client::new();
    let api = cluster.api.url.clone();
    let ada = crate::helpers::login(&http, &api, "ada").await;
    let bob = crate::helpers::login(&http, &api, "bob").await;
    let room = create_room(&http, &api, &ada, "storm").await;
    flood(&http, &cluster.api.internal_url, &ada, &room, 20, 10).await;
    // Forty clients come back at once, each resuming from seq 0.
    let mut clients = Vec::new();
    for _ in 0..40 {
        clients.push(
            WsClient::connect(&cluster.gateways[0].url, &bob.token)
                .await
                .unwrap(),
        );
    }
    let before = history_reads(&http, &api).await;
    for c in clients.iter_mut() {
        c.send(json!({"type": "join", "room": room, "since": 0, "ref": "j"}))
            .await;
    }
    for c in clients.iter_mut() {
        let reply = c
            .wait_for(|f| f["type"] == "reply" && f["ref"] == "j")
            .await;
        assert_eq!(reply["ok"], true, "{reply}");
        assert_eq!(room_seqs(c, &room, 20).await, (1..=20).collect::<Vec<_>>());
    }
    let reads = history_reads(&http, &api).await - before;
    assert!(
        (1.0..=3.0).contains(&reads),
        "{reads} history reads for 40 joins of one room"
    );
}
