//! RedisStore against a real `redis-server` per test: the shared conformance
//! suite, plus what only a shared store has — replicas racing on one Redis,
//! a Redis restart, big batches and key hygiene.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use telepath_shared::protocol::Status;
use telepath_shared::testing::RedisServer;

use super::*;
use crate::store::conformance::{
    self, GRACE, ROOM_A, ROOM_B, T, apply, connect, disconnect, heartbeat, join, live, presences,
    status, statuses, typing,
};

fn store(redis: &RedisServer) -> RedisStore {
    let pool = telepath_shared::bus::redis::pool(&redis.url()).unwrap();
    RedisStore::new(pool, conformance::timing())
}

conformance::suite!({
    let redis = RedisServer::start();
    let store = store(&redis);
    (redis, store)
});

/// How many `offline` changes each user got.
fn offline_counts(changes: &[Change]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for p in presences(changes) {
        if p.status == Status::Offline {
            *counts.entry(p.user.name.clone()).or_default() += 1;
        }
    }
    counts
}

#[tokio::test]
async fn two_replicas_sweeping_the_same_expired_users_announce_each_offline_once() {
    let redis = RedisServer::start();
    let (a, b) = (store(&redis), store(&redis));
    let reports: Vec<_> = (0..1_500)
        .map(|i| connect(&format!("c{i}"), &format!("u{}", i % 600)))
        .collect();
    apply(&a, &reports, T).await;
    apply(&a, &[connect("fresh", "bob")], T + 1_000).await;
    let (x, y) = tokio::join!(a.sweep(T + 1_501), b.sweep(T + 1_501));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.expired.len() + y.expired.len(), 1_500);
    assert!(x.expired.iter().all(|id| !y.expired.contains(id)));
    let mut all = x.changes;
    all.extend(y.changes);
    let counts = offline_counts(&all);
    assert_eq!(counts.len(), 600);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    let users = a.online(T + 1_501).await.unwrap();
    assert_eq!(
        users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        ["bob"]
    );
}

#[tokio::test]
async fn two_replicas_firing_the_same_pending_users_announce_each_offline_once() {
    let redis = RedisServer::start();
    let (a, b) = (store(&redis), store(&redis));
    let users: Vec<String> = (0..300).map(|i| format!("u{i}")).collect();
    let connects: Vec<_> = users
        .iter()
        .map(|u| connect(&format!("{u}-1"), u))
        .collect();
    apply(&a, &connects, T).await;
    // Each user's disconnect goes to a different replica than the next one's.
    for (i, u) in users.iter().enumerate() {
        let replica = if i % 2 == 0 { &a } else { &b };
        assert!(
            apply(replica, &[disconnect(&format!("{u}-1"), u)], T + 10)
                .await
                .is_empty()
        );
    }
    let (x, y) = tokio::join!(a.sweep(T + 10 + GRACE), b.sweep(T + 10 + GRACE));
    let mut all = x.unwrap().changes;
    all.extend(y.unwrap().changes);
    let counts = offline_counts(&all);
    assert_eq!(counts.len(), 300);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
}

#[tokio::test]
async fn two_replicas_closing_a_users_two_devices_at_once_leave_one_pending_offline() {
    let redis = RedisServer::start();
    let (a, b) = (store(&redis), store(&redis));
    for round in 0..50 {
        let name = format!("u{round}");
        let (phone, laptop) = (format!("{name}-phone"), format!("{name}-laptop"));
        apply(&a, &[connect(&phone, &name), connect(&laptop, &name)], T).await;
        let (one, other) = ([disconnect(&phone, &name)], [disconnect(&laptop, &name)]);
        let (x, y) = tokio::join!(a.apply(&one, T + 1), b.apply(&other, T + 1));
        assert!(x.unwrap().is_empty() && y.unwrap().is_empty());
    }
    let (x, y) = tokio::join!(a.sweep(T + 1 + GRACE), b.sweep(T + 1 + GRACE));
    let mut all = x.unwrap().changes;
    all.extend(y.unwrap().changes);
    let counts = offline_counts(&all);
    assert_eq!(counts.len(), 50);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
}

/// Retries `op` until Redis answers again after a restart (bounded).
async fn until_ok<T, F, Fut>(mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Interrupted>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) => assert!(Instant::now() < deadline, "redis never came back: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_heartbeat_after_a_redis_restart_rebuilds_connections_rooms_and_online_state() {
    let mut redis = RedisServer::start();
    let s = store(&redis);
    let reports = [
        connect("c1", "ada"),
        join("c1", "ada", ROOM_A),
        connect("c2", "ada"),
    ];
    apply(&s, &reports, T).await;
    apply(&s, &[connect("b1", "bob"), join("b1", "bob", ROOM_B)], T).await;
    redis.restart();
    let conns = vec![
        live("c1", "ada", &[ROOM_A], true),
        live("c2", "ada", &[], true),
        live("b1", "bob", &[ROOM_B], false),
    ];
    let report = heartbeat(conns);
    let changes = until_ok(|| s.heartbeat(&report, T + 1_000)).await;
    // Presence lost everything: each user is announced again, ada away (all idle).
    assert_eq!(
        statuses(&changes),
        [
            ("ada".into(), Status::Away, None),
            ("bob".into(), Status::Online, None)
        ]
    );
    assert_eq!(presences(&changes)[0].rooms, [ROOM_A]);
    let mut users = s.online(T + 1_000).await.unwrap();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    let got: Vec<_> = users
        .iter()
        .map(|u| (u.name.as_str(), u.status, u.connections))
        .collect();
    assert_eq!(got, [("ada", Status::Away, 2), ("bob", Status::Online, 1)]);
    let member = redis.command(&["SISMEMBER", &format!("presence:room:{ROOM_A}"), "c1"]);
    assert_eq!(member.unwrap(), ":1\r\n");
    // The script cache was lost too; the store loaded it again.
    let stopped = apply(&s, &[typing("c1", "ada", ROOM_A, true)], T + 1_001).await;
    assert_eq!(stopped.len(), 1);
}

#[tokio::test]
async fn a_large_heartbeat_registers_every_connection_and_announces_each_user_once() {
    let redis = RedisServer::start();
    let s = store(&redis);
    let conns: Vec<_> = (0..1_203)
        .map(|i| live(&format!("c{i}"), &format!("u{}", i % 7), &[ROOM_A], false))
        .collect();
    let changes = s.heartbeat(&heartbeat(conns), T).await.unwrap();
    assert_eq!(presences(&changes).len(), 7);
    let users = s.online(T).await.unwrap();
    assert_eq!(users.len(), 7);
    assert_eq!(users.iter().map(|u| u.connections).sum::<u64>(), 1_203);
    let members = redis.command(&["SCARD", &format!("presence:room:{ROOM_A}")]);
    assert_eq!(members.unwrap(), ":1203\r\n");
}

/// Calls per command since the last `CONFIG RESETSTAT`, from `INFO commandstats`.
fn command_calls(redis: &RedisServer) -> HashMap<String, u64> {
    let info = redis.command(&["INFO", "commandstats"]).unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, stats) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.strip_prefix("calls=")?.split(',').next()?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// A heartbeat of unchanged connections, each repeating its user's choice,
/// only compares each connection's owner, idle flag and rooms, weighs each
/// user's choice once (a user's connections share a script run), and
/// writes nothing but liveness.
#[tokio::test]
async fn an_unchanged_heartbeat_reads_little_and_writes_only_liveness() {
    let redis = RedisServer::start();
    let s = store(&redis);
    let users = 7;
    let conns: Vec<_> = (0..1_203)
        .map(|i| {
            let name = format!("u{}", i % users);
            let c = live(&format!("c{i}"), &name, &[ROOM_A], i % 2 == 0);
            let busy = conformance::choice(Status::Busy, Some("x"), T - 1_000);
            conformance::choosing(c, busy)
        })
        .collect();
    assert_eq!(
        presences(&s.heartbeat(&heartbeat(conns.clone()), T).await.unwrap()).len(),
        7
    );
    let runs = heartbeat_chunks(&conns, HEARTBEAT_BATCH).len() as u64;
    redis.command(&["CONFIG", "RESETSTAT"]).unwrap();
    let unchanged = s.heartbeat(&heartbeat(conns), T + 1_000).await.unwrap();
    assert!(unchanged.is_empty());
    let calls = command_calls(&redis);
    assert_eq!(calls.get("evalsha"), Some(&runs), "{calls:?}");
    assert_eq!(calls.get("hmget"), Some(&1_203), "{calls:?}");
    assert_eq!(calls.get("smembers"), Some(&1_203), "{calls:?}");
    assert_eq!(calls.get("hget"), Some(&users), "{calls:?}");
    for write in ["hset", "hdel", "sadd", "srem", "del", "zrem"] {
        assert_eq!(calls.get(write), None, "{write}: {calls:?}");
    }
}

#[test]
fn heartbeat_chunks_keep_each_users_connections_together() {
    let conn = |id: &str, name: &str| live(id, name, &[], false);
    let conns = [
        conn("a1", "ada"),
        conn("b1", "bob"),
        conn("a2", "ada"),
        conn("c1", "cy"),
        conn("c2", "cy"),
        conn("e1", "eve"),
        conn("e2", "eve"),
        conn("e3", "eve"),
        conn("e4", "eve"),
        conn("d1", "dan"),
    ];
    let ids: Vec<Vec<&str>> = heartbeat_chunks(&conns, 3)
        .iter()
        .map(|chunk| chunk.iter().map(|c| c.conn_id.as_str()).collect())
        .collect();
    // Eve alone exceeds the batch: only she is split.
    assert_eq!(
        ids,
        [
            vec!["a1", "a2", "b1"],
            vec!["c1", "c2"],
            vec!["e1", "e2", "e3"],
            vec!["e4", "d1"]
        ]
    );
    assert!(heartbeat_chunks(&[], 3).is_empty());
}

#[tokio::test]
async fn a_user_whose_connections_straddle_a_batch_is_announced_once() {
    let redis = RedisServer::start();
    let s = store(&redis);
    // Others fill the first script run but one place; ada's idle phone
    // would close it and her active laptop open the next.
    let mut conns: Vec<_> = (1..HEARTBEAT_BATCH)
        .map(|i| live(&format!("c{i}"), &format!("u{i}"), &[], false))
        .collect();
    conns.push(live("phone", "ada", &[], true));
    conns.push(live("laptop", "ada", &[], false));
    let changes = s.heartbeat(&heartbeat(conns), T).await.unwrap();
    let ada: Vec<_> = statuses(&changes)
        .into_iter()
        .filter(|(name, _, _)| name == "ada")
        .collect();
    assert_eq!(ada, [("ada".into(), Status::Online, None)]);
}

#[tokio::test]
async fn connections_and_summary_read_more_than_one_batch() {
    let redis = RedisServer::start();
    let s = store(&redis);
    let conns: Vec<_> = (0..READ_BATCH + 3)
        .map(|i| {
            let mut c = live(&format!("c{i}"), "ada", &[], false);
            c.node = format!("n{}", i % 2);
            c
        })
        .collect();
    s.heartbeat(&heartbeat(conns), T).await.unwrap();
    assert_eq!(
        s.connections("id-ada", T).await.unwrap().len(),
        READ_BATCH + 3
    );
    let summary = s.summary(T).await.unwrap();
    let by_node: Vec<_> = summary.by_node.into_iter().collect();
    assert_eq!(by_node, [("n0".into(), 502), ("n1".into(), 501)]);
    assert_eq!(summary.users.len(), 1);
}

#[tokio::test]
async fn status_text_keeps_quotes_and_non_ascii_characters() {
    let redis = RedisServer::start();
    let s = store(&redis);
    let text = "caf\u{e9} \u{2615} \"quoted\", back\\slash";
    apply(&s, &[connect("c1", "ada")], T).await;
    let changes = apply(&s, &[status("ada", Status::Busy, Some(text), T + 1)], T + 1).await;
    assert_eq!(
        statuses(&changes),
        [("ada".into(), Status::Busy, Some(text.into()))]
    );
    assert_eq!(
        s.online(T + 1).await.unwrap()[0].text.as_deref(),
        Some(text)
    );
}

/// Every key but the swept connection index carries a TTL.
#[tokio::test]
async fn every_key_but_the_connection_index_expires_by_itself() {
    let redis = RedisServer::start();
    let s = store(&redis);
    let reports = [
        connect("c1", "ada"),
        join("c1", "ada", ROOM_A),
        typing("c1", "ada", ROOM_A, true),
        status("ada", Status::Busy, Some("x"), T),
        connect("b1", "bob"),
        disconnect("b1", "bob"),
    ];
    apply(&s, &reports, T).await;
    let keys = redis.command(&["KEYS", "*"]).unwrap();
    let keys: Vec<&str> = keys
        .lines()
        .filter(|l| l.starts_with("presence:"))
        .collect();
    assert!(keys.len() >= 8, "{keys:?}");
    for key in keys {
        let ttl = redis.command(&["PTTL", key]).unwrap();
        let ttl: i64 = ttl.trim().trim_start_matches(':').parse().unwrap();
        if key == CONNS_KEY {
            assert_eq!(ttl, -1, "the index is swept, not expired");
        } else {
            assert!(ttl > 0, "{key} has no TTL");
        }
    }
}

/// The rooms a user was seen in live as long as the status hash: with a
/// TTL while online and pending offline, gone once the user is offline.
#[tokio::test]
async fn the_seen_rooms_expire_with_the_status_and_go_with_the_offline() {
    let redis = RedisServer::start();
    let s = store(&redis);
    let seen = format!("presence:seenrooms:{}", conformance::user("ada").id);
    let ttl = |key: &str| -> i64 {
        let reply = redis.command(&["PTTL", key]).unwrap();
        reply.trim().trim_start_matches(':').parse().unwrap()
    };
    let reports = [
        connect("a", "ada"),
        connect("b", "ada"),
        join("a", "ada", ROOM_A),
    ];
    apply(&s, &reports, T).await;
    let key_ttl = conformance::timing().key_ttl_ms;
    assert!((1..=key_ttl).contains(&ttl(&seen)));
    apply(&s, &[disconnect("a", "ada"), disconnect("b", "ada")], T + 1).await;
    assert!(ttl(&seen) > key_ttl, "kept through the grace");
    let swept = s.sweep(T + 1 + GRACE).await.unwrap();
    assert_eq!(presences(&swept.changes)[0].rooms, [ROOM_A]);
    assert_eq!(ttl(&seen), -2, "deleted with the offline");
}

#[tokio::test]
async fn an_unreachable_redis_fails_within_the_bound() {
    let mut redis = RedisServer::start();
    let s = store(&redis);
    redis.stop();
    let started = Instant::now();
    assert!(s.ping().await.is_err());
    assert!(s.sweep(T).await.is_err());
    assert!(started.elapsed() < OP_TIMEOUT * 4);
}
