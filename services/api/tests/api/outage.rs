//! Redis trouble never holds a reply: with Redis stalled (SIGSTOP) or out
//! of reach, what the api commits is answered at once, and it reaches the
//! bus, in seq order, once Redis is back. Real redis-server processes; the
//! watching node is a `RedisBus` of its own, connected straight to Redis.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use telepath_shared::bus::redis::RedisBus;
use telepath_shared::bus::{Bus, DEFAULT_INBOUND_CAPACITY, Inbound};
use telepath_shared::protocol::{ServerFrame, room_channel, user_channel};
use telepath_shared::testing::proxy::{Direction, Fault, Proxy};
use telepath_shared::testing::{RedisServer, eventually, get_text, metric};

use crate::helpers::{TestApi, TestUser, spawn_api_on};

/// Well under the gateway's 5 s timeout for a batch.
const PROMPT: Duration = Duration::from_secs(1);

/// An api whose bus is Redis at `url`.
async fn spawn_api_on_redis(url: &str) -> TestApi {
    let (bus, inbound) = RedisBus::connect(url, DEFAULT_INBOUND_CAPACITY)
        .await
        .unwrap();
    spawn_api_on(Arc::new(bus), inbound, |_, _| {}).await
}

/// A node of its own on `redis`, subscribed to `channels`.
async fn watch(redis: &RedisServer, channels: &[String]) -> (RedisBus, Inbound) {
    let (node, rx) = RedisBus::connect(&redis.url(), 4096).await.unwrap();
    for channel in channels {
        node.subscribe(channel).await.unwrap();
    }
    (node, rx)
}

/// One send of a batch: `body` from `user` to `room`.
fn send(user: &TestUser, room: &str, body: String) -> Value {
    json!({"room": room, "send": {"from": {"id": user.id, "name": user.name}, "body": body}})
}

impl TestApi {
    /// Posts `batch` and checks it was answered within [`PROMPT`]; the answer.
    async fn post_promptly(&self, batch: Value) -> Value {
        let started = Instant::now();
        let resp = self.post_batch(batch).await;
        let took = started.elapsed();
        assert_eq!(resp.status(), 200);
        assert!(took < PROMPT, "answered after {took:?}");
        resp.json().await.unwrap()
    }

    /// Posts `n` sends from `user` to `room` as one batch, which must be
    /// answered within [`PROMPT`] with every send committed; their seqs.
    async fn commit_promptly(&self, user: &TestUser, room: &str, n: usize) -> Vec<i64> {
        let sends: Vec<Value> = (0..n).map(|i| send(user, room, format!("m{i}"))).collect();
        let answer = self.post_promptly(json!({ "sends": sends })).await;
        let results = answer["results"].as_array().unwrap();
        results
            .iter()
            .map(|r| {
                r["message"]["seq"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("{r}"))
            })
            .collect()
    }

    /// Sends a DM from `from` to `to`, answered within [`PROMPT`]; its `{"id","ts","delivered"}`.
    async fn dm_promptly(&self, from: &TestUser, to: &TestUser, body: &str) -> Value {
        let dm = json!({"from": {"id": from.id, "name": from.name}, "to": to.id, "body": body});
        let answer = self.post_promptly(json!({ "dms": [dm] })).await;
        answer["dms"][0]["dm"].clone()
    }

    /// The value of `name` (labels as written) on the api's `/metrics`.
    async fn metric(&self, name: &str) -> f64 {
        let page = get_text(&self.http, &format!("{}/metrics", self.url)).await;
        metric(&page, name).unwrap_or_else(|| panic!("no {name}"))
    }
}

/// The seqs of the next `n` room messages on `rx`, repeats dropped as a
/// gateway drops them; each must come after the last.
async fn next_seqs(rx: &mut Inbound, n: usize) -> Vec<i64> {
    let mut seqs: Vec<i64> = Vec::new();
    while seqs.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {seqs:?} arrived"))
            .unwrap();
        let Ok(ServerFrame::Message(m)) = serde_json::from_slice(&msg.payload) else {
            continue;
        };
        if seqs.last().is_none_or(|last| m.seq > *last) {
            seqs.push(m.seq);
        }
    }
    seqs
}

/// The id of the next DM on `rx` that is not one of `seen` (which it joins):
/// a DM may be published twice when an attempt got through before its
/// connection broke, and clients drop repeats by id.
async fn next_dm(rx: &mut Inbound, seen: &mut HashSet<String>) -> String {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("a DM in time")
            .unwrap();
        if let Ok(ServerFrame::Dm(dm)) = serde_json::from_slice(&msg.payload)
            && seen.insert(dm.id.clone())
        {
            return dm.id;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stalled_sends_and_dms_are_answered_at_once_and_reach_the_bus_in_order_after() {
    let redis = RedisServer::start();
    let api = spawn_api_on_redis(&redis.url()).await;
    let (ada, bob) = (api.login("ada").await, api.login("bob").await);
    let room = api.room_id(&ada, "stalled").await;
    let (_room_node, mut room_rx) = watch(&redis, &[room_channel(&room)]).await;
    let (_bob_node, mut bob_rx) = watch(&redis, &[user_channel(&bob.id)]).await;
    // Before the stall, the path to the bus works.
    assert_eq!(api.commit_promptly(&ada, &room, 1).await, vec![1]);
    assert_eq!(next_seqs(&mut room_rx, 1).await, vec![1]);

    // Nothing is answered by Redis until it resumes, after every reply.
    redis.pause();
    let mut committed = Vec::new();
    for _ in 0..5 {
        committed.extend(api.commit_promptly(&ada, &room, 20).await);
    }
    let dm = api.dm_promptly(&ada, &bob, "while stalled").await;
    redis.resume();

    assert_eq!(committed, (2..=101).collect::<Vec<_>>());
    assert_eq!(next_seqs(&mut room_rx, 100).await, committed);
    assert_eq!(dm["delivered"], false, "{dm}");
    assert_eq!(next_dm(&mut bob_rx, &mut HashSet::new()).await, dm["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_out_of_reach_past_a_publish_attempt_replies_stay_prompt_and_all_goes_out_after()
{
    let redis = RedisServer::start();
    let proxy = Proxy::start(([127, 0, 0, 1], redis.port()).into()).await;
    let api = spawn_api_on_redis(&format!("redis://{}", proxy.addr())).await;
    let (ada, bob) = (api.login("ada").await, api.login("bob").await);
    let room = api.room_id(&ada, "cut off").await;
    let (_room_node, mut room_rx) = watch(&redis, &[room_channel(&room)]).await;
    let (_bob_node, mut bob_rx) = watch(&redis, &[user_channel(&bob.id)]).await;
    assert_eq!(api.commit_promptly(&ada, &room, 1).await, vec![1]);
    assert_eq!(next_seqs(&mut room_rx, 1).await, vec![1]);
    let before = api.dm_promptly(&ada, &bob, "before").await;
    assert_eq!(before["delivered"], true, "bob's channel has a node");
    let mut dms = HashSet::new();
    assert_eq!(next_dm(&mut bob_rx, &mut dms).await, before["id"]);

    // The api's connections to Redis break, and new ones go unanswered.
    proxy.set(Fault::Drop(Direction::ToUpstream));
    proxy.cut();
    let mut committed = Vec::new();
    for _ in 0..3 {
        committed.extend(api.commit_promptly(&ada, &room, 10).await);
    }
    let during = api.dm_promptly(&ada, &bob, "during").await;
    assert_eq!(during["delivered"], false, "{during}");
    // The outbox keeps trying: a broken connection, then attempts that time out.
    let failures = r#"telepath_api_publish_failures_total{outbox="rooms"}"#;
    eventually(Duration::from_secs(20), "a retry that failed", || async {
        api.metric(failures).await >= 2.0
    })
    .await;
    assert_eq!(
        api.metric(r#"telepath_api_outbox_messages{outbox="rooms"}"#)
            .await,
        30.0
    );

    proxy.set(Fault::None);
    assert_eq!(committed, (2..=31).collect::<Vec<_>>());
    assert_eq!(next_seqs(&mut room_rx, 30).await, committed);
    assert_eq!(next_dm(&mut bob_rx, &mut dms).await, during["id"]);
    for outbox in ["rooms", "dms"] {
        let depth = format!(r#"telepath_api_outbox_messages{{outbox="{outbox}"}}"#);
        eventually(Duration::from_secs(5), "an empty outbox", || async {
            api.metric(&depth).await == 0.0
        })
        .await;
    }
}
