//! `room-fanout`: one publisher sends room messages at a fixed rate through
//! one gateway; receivers spread over every gateway record the time from
//! send to delivery (the send time travels in the body) and count lost and
//! repeated seqs.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::report::{Latency, cpu_percent, own_cpu_seconds};

/// `telepath-load room-fanout`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Base URL of the api (dev login on).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    /// Gateway base URLs, comma-separated; receivers are spread over them.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    gateways: Vec<String>,
    /// Receivers in the room.
    #[arg(long, default_value_t = 20)]
    receivers: usize,
    /// Messages per second sent.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

/// What `room-fanout` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    scenario: &'static str,
    gateways: usize,
    receivers: usize,
    rate: u32,
    sent: u64,
    acked: u64,
    delivered: u64,
    lost: u64,
    duplicates: u64,
    send_to_delivery: Latency,
    generator_cpu_percent: f64,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

async fn login(http: &reqwest::Client, api: &str, name: &str) -> anyhow::Result<String> {
    let body: Value = http
        .post(format!("{api}/auth/login"))
        .json(&json!({"username": name}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(body["token"].as_str().context("token")?.to_owned())
}

/// Connects, reads `welcome`, joins `room`, waits for the join's reply.
async fn connect(gateway: &str, token: &str, room: &str) -> anyhow::Result<Ws> {
    let mut req = format!("{}/connect", gateway.replacen("http", "ws", 1)).into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    ws.send(WsMessage::text(
        json!({"type": "join", "ref": "j", "room": room}).to_string(),
    ))
    .await?;
    while let Some(msg) = ws.next().await {
        if let WsMessage::Text(t) = msg? {
            let v: Value = serde_json::from_str(&t)?;
            if v["type"] == "reply" && v["ref"] == "j" {
                if v["ok"] != true {
                    bail!("join failed: {v}");
                }
                return Ok(ws);
            }
        }
    }
    bail!("closed before the join reply")
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Summary> {
    let api = args.api.trim_end_matches('/').to_owned();
    let http = reqwest::Client::new();
    let sender_token = login(&http, &api, "fanout-sender").await?;
    let room: Value = http
        .post(format!("{api}/rooms"))
        .bearer_auth(&sender_token)
        .json(&json!({"name": "fanout", "max_participants": 100_000}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let room = room["id"].as_str().context("room id")?.to_owned();
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let mut receivers = Vec::new();
    for i in 0..args.receivers {
        let token = login(&http, &api, &format!("fanout-r{i}")).await?;
        let mut ws = connect(&args.gateways[i % args.gateways.len()], &token, &room).await?;
        let histogram = histogram.clone();
        receivers.push(tokio::spawn(async move {
            let mut local =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let (mut seen, mut dups) = (HashSet::new(), 0u64);
            // Reads until the sender says it is done (a message with body "end").
            while let Some(Ok(msg)) = ws.next().await {
                let WsMessage::Text(t) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&t) else {
                    continue;
                };
                if v["type"] != "message" {
                    continue;
                }
                if v["body"] == "end" {
                    break;
                }
                if !seen.insert(v["seq"].as_i64().unwrap_or(-1)) {
                    dups += 1;
                    continue;
                }
                if let Some(sent) = v["body"].as_str().and_then(|b| b.parse::<i64>().ok()) {
                    local.saturating_record((now_us() - sent).max(1) as u64);
                }
            }
            histogram.lock().await.add(&local).expect("same bounds");
            (seen.len() as u64, dups)
        }));
    }
    let mut sender = connect(&args.gateways[0], &sender_token, &room).await?;
    let cpu_before = own_cpu_seconds();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / args.rate.max(1));
    let (mut sent, mut acked) = (0u64, 0u64);
    while started.elapsed() < args.duration {
        tick.tick().await;
        sent += 1;
        let frame = json!({"type": "send", "ref": sent.to_string(), "room": room, "body": now_us().to_string()});
        sender.send(WsMessage::text(frame.to_string())).await?;
        // Count the acks that are already here, without waiting for them.
        while let Ok(Some(Ok(WsMessage::Text(t)))) =
            tokio::time::timeout(Duration::ZERO, sender.next()).await
        {
            if t.contains("\"type\":\"reply\"") && t.contains("\"ok\":true") {
                acked += 1;
            }
        }
    }
    // Collect the remaining acks, then end the receivers.
    let deadline = Instant::now() + Duration::from_secs(10);
    while acked < sent && Instant::now() < deadline {
        if let Ok(Some(Ok(WsMessage::Text(t)))) =
            tokio::time::timeout(Duration::from_secs(1), sender.next()).await
            && t.contains("\"type\":\"reply\"")
            && t.contains("\"ok\":true")
        {
            acked += 1;
        }
    }
    let wall = started.elapsed();
    sender
        .send(WsMessage::text(
            json!({"type": "send", "room": room, "body": "end"}).to_string(),
        ))
        .await?;
    let (mut delivered, mut duplicates) = (0, 0);
    for r in receivers {
        let (d, dup) = tokio::time::timeout(Duration::from_secs(30), r)
            .await
            .context("a receiver never saw the end")??;
        delivered += d;
        duplicates += dup;
    }
    let expected = acked * args.receivers as u64;
    let histogram = histogram.lock().await;
    Ok(Summary {
        scenario: "room-fanout",
        gateways: args.gateways.len(),
        receivers: args.receivers,
        rate: args.rate,
        sent,
        acked,
        delivered,
        lost: expected.saturating_sub(delivered),
        duplicates,
        send_to_delivery: Latency::from_micros(&histogram),
        generator_cpu_percent: cpu_percent(own_cpu_seconds() - cpu_before, wall),
    })
}
