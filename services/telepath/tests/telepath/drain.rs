//! Graceful shutdown of the api as a real process: SIGTERM while many
//! senders are mid-request. The requests in flight finish, the writer
//! commits what it holds, every acknowledged message is in the database,
//! no seq is skipped, and the process exits within `TELEPATH_DRAIN_SECS`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{Value, json};
use telepath_shared::auth::{INTERNAL_HEADER, derive_internal_token};
use telepath_shared::testing::RedisServer;

use crate::helpers::{SECRET, Service, create_room, get_json, login};

/// What one sender saw.
#[derive(Default)]
struct Outcome {
    /// Ids of the messages acknowledged.
    acked: Vec<String>,
    /// Statuses other than 200, and refused sends (there must be none).
    refused: Vec<String>,
    /// Requests that failed without an answer (sent or not: unknown).
    unanswered: usize,
}

/// Sends messages one after another, as a gateway does (a batch of one on
/// `POST /internal/messages`), until the api stops answering.
async fn sender(http: Client, url: String, room: String, from: Value, n: usize) -> Outcome {
    let mut out = Outcome::default();
    let token = derive_internal_token(SECRET);
    for i in 0.. {
        let send = json!({"from": from, "body": format!("sender {n} message {i}")});
        let resp = http
            .post(&url)
            .header(INTERNAL_HEADER, &token)
            .json(&json!({"sends": [{"room": room, "send": send}]}))
            .send()
            .await;
        match resp {
            Ok(r) if r.status() == 200 => {
                let answer: Value = r.json().await.unwrap();
                match answer["results"][0]["message"]["id"].as_str() {
                    Some(id) => out.acked.push(id.to_owned()),
                    None => out.refused.push(answer["results"][0].to_string()),
                }
            }
            Ok(r) => out.refused.push(r.status().to_string()),
            Err(_) => {
                out.unanswered += 1;
                break;
            }
        }
    }
    out
}

#[tokio::test]
async fn sigterm_to_the_api_acknowledges_only_what_it_committed_and_commits_what_it_holds() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("api.db").display());
    let env = [
        ("REDIS_URL", redis.url()),
        ("DATABASE_URL", db),
        ("TELEPATH_DEV_LOGIN", "1".into()),
        ("TELEPATH_NODE_ID", "api".into()),
        ("TELEPATH_DRAIN_SECS", "5".into()),
    ];
    let mut api = Service::start("telepath-api", &env).await;
    let http = Client::new();
    let ada = login(&http, &api.url, "ada").await;
    let room = create_room(&http, &api.url, &ada, "closing time").await;
    let from = json!({"id": ada.id, "name": "ada"});
    let url = format!("{}/internal/messages", api.internal_url);
    let senders: Vec<_> = (0..64)
        .map(|n| {
            let (url, room) = (url.clone(), room.clone());
            tokio::spawn(sender(http.clone(), url, room, from.clone(), n))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    api.terminate();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the api exits within TELEPATH_DRAIN_SECS, took {:?}",
        started.elapsed()
    );
    let mut acked = BTreeSet::new();
    let mut unanswered = 0;
    for s in senders {
        let out = s.await.unwrap();
        assert!(
            out.refused.is_empty(),
            "refused while draining: {:?}",
            out.refused
        );
        acked.extend(out.acked);
        unanswered += out.unanswered;
    }
    assert!(
        acked.len() > 64,
        "the senders got going ({} acks)",
        acked.len()
    );

    // Start it again on the same database and read the room back.
    let api = Service::start("telepath-api", &env).await;
    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let url = format!("{}/rooms/{room}/messages?after={after}&limit=500", api.url);
        let page = get_json(&http, &url, |r| r.bearer_auth(&ada.token)).await;
        let messages = page["messages"].as_array().unwrap();
        for m in messages {
            stored.push((
                m["seq"].as_i64().unwrap(),
                m["id"].as_str().unwrap().to_owned(),
            ));
        }
        after = stored.last().map_or(0, |(s, _)| *s);
        if page["has_more"] != true {
            break;
        }
    }
    let seqs: Vec<i64> = stored.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as i64).collect::<Vec<_>>(),
        "no seq skipped"
    );
    let ids: BTreeSet<String> = stored.into_iter().map(|(_, id)| id).collect();
    assert!(acked.is_subset(&ids), "an acknowledged message is missing");
    // Whatever was committed but not acknowledged was a request cut off by the shutdown.
    assert!(
        ids.len() - acked.len() <= unanswered,
        "{} stored, {} acked, {unanswered} unanswered",
        ids.len(),
        acked.len()
    );
}

/// An idle node stops as soon as it has drained: nothing waits for the next
/// heartbeat (15 s by default, past the 10 s drain deadline), which the
/// presence reporter once did when the drain began during its wait.
#[tokio::test]
async fn sigterm_to_an_idle_node_with_default_heartbeats_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // For the gateway, whose api and presence are absent: its reporters
    // have nothing to flush and must not wait either. Dropped (stopped)
    // when the test ends.
    let redis = RedisServer::start();
    for (binary, env) in [
        (
            "telepath",
            vec![(
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("a.db").display()),
            )],
        ),
        (
            "telepath-gateway",
            vec![
                ("REDIS_URL", redis.url()),
                ("TELEPATH_API_URL", "http://127.0.0.1:9".to_owned()),
                ("TELEPATH_PRESENCE_URL", "http://127.0.0.1:9".to_owned()),
            ],
        ),
    ] {
        let mut node = Service::start(binary, &env).await;
        // Past the first heartbeat, into the wait for the next.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        node.terminate();
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "{binary} took {took:?} to stop (the drain deadline is 10 s)"
        );
    }
}
