//! `api-send`: closed-loop senders posting room messages to the api the way
//! gateways do, as batches on `POST /internal/messages` (the route every
//! WebSocket `send` reaches the api through). Each worker waits for its
//! batch's outcomes before sending again, so throughput is what the api
//! acknowledges (committed, then published), and latency is the ack time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use telepath_shared::auth::{INTERNAL_HEADER, derive_internal_token};
use tokio::sync::Mutex;

use crate::report::{Latency, cpu_percent, own_cpu_seconds};

/// `telepath-load api-send`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Base URL of the api (dev login, rooms).
    #[arg(long, env = "TELEPATH_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The api's internal listener (`TELEPATH_INTERNAL_LISTEN`), where the
    /// batches go; an all-in-one node serves its internal routes nowhere.
    #[arg(long, default_value = "http://127.0.0.1:9081")]
    internal_url: String,
    /// JWT secret of the deployment (the internal token is derived from it).
    #[arg(long, env = "TELEPATH_JWT_SECRET", default_value = telepath_shared::config::DEV_JWT_SECRET)]
    secret: String,
    /// The internal token, when the deployment sets one explicitly
    /// (`TELEPATH_INTERNAL_TOKEN`) [default: derived from the secret].
    #[arg(long, env = "TELEPATH_INTERNAL_TOKEN", hide_env_values = true)]
    internal_token: Option<String>,
    /// Rooms to spread the messages over.
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Concurrent closed-loop senders.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Body size in bytes.
    #[arg(long, default_value_t = 100)]
    body_bytes: usize,
    /// Sends per request: 1 is one client's send on a quiet gateway; a busy
    /// gateway sends what queued during its last round trip (up to 256).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    batch: u16,
}

/// What `api-send` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    scenario: &'static str,
    rooms: usize,
    concurrency: usize,
    batch: u16,
    duration_s: f64,
    acked: u64,
    errors: u64,
    acked_per_s: f64,
    ack_latency: Latency,
    generator_cpu_percent: f64,
}

/// Logs in, creates `n` rooms, and returns (sender, room ids).
async fn setup(
    http: &reqwest::Client,
    base: &str,
    n: usize,
) -> anyhow::Result<(Value, Vec<String>)> {
    let login: Value = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"username": "loadgen"}))
        .send()
        .await?
        .error_for_status()
        .context("dev login (TELEPATH_DEV_LOGIN=1 on the api)")?
        .json()
        .await?;
    let token = login["token"].as_str().context("token")?;
    let mut rooms = Vec::with_capacity(n);
    for i in 0..n {
        let room: Value = http
            .post(format!("{base}/rooms"))
            .bearer_auth(token)
            .json(&json!({"name": format!("load-{i}"), "max_participants": 100_000}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        rooms.push(room["id"].as_str().context("room id")?.to_owned());
    }
    Ok((login["user"].clone(), rooms))
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Summary> {
    let base = args.url.trim_end_matches('/').to_owned();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let (user, rooms) = setup(&http, &base, args.rooms).await?;
    let token = args
        .internal_token
        .clone()
        .unwrap_or_else(|| derive_internal_token(&args.secret));
    let body = "x".repeat(args.body_bytes);
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let cpu_before = own_cpu_seconds();
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let (http, internal, token, body, user) = (
            http.clone(),
            args.internal_url.trim_end_matches('/').to_owned(),
            token.clone(),
            body.clone(),
            user.clone(),
        );
        let room = rooms[w % rooms.len()].clone();
        let histogram = histogram.clone();
        let sends: Vec<Value> = (0..args.batch)
            .map(|_| json!({"room": room, "send": {"from": user, "body": body}}))
            .collect();
        let batch = json!({ "sends": sends });
        workers.push(tokio::spawn(async move {
            let url = format!("{internal}/internal/messages");
            let mut local =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let (mut acked, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                let sent = Instant::now();
                let result = http
                    .post(&url)
                    .header(INTERNAL_HEADER, &token)
                    .json(&batch)
                    .send()
                    .await;
                let answer = match result {
                    Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                    _ => None,
                };
                let Some(answer) = answer else {
                    errors += 1;
                    continue;
                };
                let took = sent.elapsed().as_micros() as u64;
                for outcome in answer["results"].as_array().into_iter().flatten() {
                    if outcome["message"].is_object() {
                        local.saturating_record(took);
                        acked += 1;
                    } else {
                        errors += 1;
                    }
                }
            }
            histogram.lock().await.add(&local).expect("same bounds");
            (acked, errors)
        }));
    }
    let (mut acked, mut errors) = (0, 0);
    for w in workers {
        let (a, e) = w.await?;
        acked += a;
        errors += e;
    }
    let wall = started.elapsed();
    if acked == 0 {
        bail!("no message was acknowledged ({errors} errors)");
    }
    let histogram = histogram.lock().await;
    Ok(Summary {
        scenario: "api-send",
        rooms: args.rooms,
        concurrency: args.concurrency,
        batch: args.batch,
        duration_s: wall.as_secs_f64(),
        acked,
        errors,
        acked_per_s: acked as f64 / wall.as_secs_f64(),
        ack_latency: Latency::from_micros(&histogram),
        generator_cpu_percent: cpu_percent(own_cpu_seconds() - cpu_before, wall),
    })
}
