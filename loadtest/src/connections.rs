//! `connections`: opens `count` authenticated WebSocket connections to one
//! gateway, `concurrency` handshakes at a time, and holds them idle. Reports
//! handshakes per second (TCP connect, upgrade with the JWT check, until the
//! `welcome` frame), their latency percentiles, and, given the gateway's
//! pid, its resident memory before and with the connections, per
//! connection. Benchmark S2 of docs/BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{Mutex, Semaphore};

use crate::client::{Users, now_us};
use crate::proto::Proto;
use crate::report::{Latency, cpu_percent, own_cpu_seconds};

/// `telepath-load connections`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Gateway base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    gateway: String,
    /// JWT secret of the deployment: tokens are signed here.
    #[arg(long, env = "TELEPATH_JWT_SECRET", default_value = telepath_shared::config::DEV_JWT_SECRET)]
    secret: String,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Users the connections belong to, round robin (0: a user of its own
    /// for each connection). The shape of issue 24: 100 users, each with
    /// 100 of 10,000 connections.
    #[arg(long, default_value_t = 0)]
    users: usize,
    /// The server's protocol: Telepath's (until `welcome`), or Socket.IO's
    /// (engine.io open, then the namespace's connect) to measure the
    /// socketioxide baseline alike.
    #[arg(long, value_enum, default_value = "telepath")]
    protocol: Proto,
    /// How long to hold the connections once all are open.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// The gateway's pid, to read its resident memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// What `connections` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    scenario: &'static str,
    count: usize,
    /// Distinct users (as many as connections unless `--users`).
    users: usize,
    concurrency: usize,
    opened: usize,
    failed: usize,
    handshakes_per_s: f64,
    handshake: Latency,
    /// Still open at the end of the hold (a connection the server dropped is not).
    open_after_hold: usize,
    server_rss_before_kib: Option<u64>,
    server_rss_with_connections_kib: Option<u64>,
    server_rss_per_connection_kib: Option<f64>,
    generator_cpu_percent: f64,
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Summary> {
    let users = Arc::new(Users::new(&args.secret));
    let run = format!("c{}", now_us() % 1_000_000_000);
    // Tokens first: signing is not part of a handshake.
    let distinct = if args.users == 0 {
        args.count
    } else {
        args.users.min(args.count)
    };
    let signed: Vec<String> = (0..distinct)
        .map(|i| users.token(&format!("{run}-{i}")))
        .collect();
    let tokens: Vec<String> = (0..args.count)
        .map(|i| signed[i % distinct].clone())
        .collect();
    let rss_before = args.server_pid.and_then(rss_kib);
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 2,
    )?));
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let cpu_before = own_cpu_seconds();
    let started = Instant::now();
    let mut opening = Vec::with_capacity(args.count);
    for token in tokens {
        let (gate, latency, gateway) = (gate.clone(), latency.clone(), args.gateway.clone());
        let proto = args.protocol;
        opening.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.ok()?;
            let t0 = Instant::now();
            let ws = proto.connect(&gateway, &token).await.ok()?;
            latency
                .lock()
                .await
                .saturating_record(t0.elapsed().as_micros().max(1) as u64);
            Some(ws)
        }));
    }
    let mut open = Vec::with_capacity(args.count);
    for o in opening {
        if let Some(ws) = o.await.context("a handshake task panicked")? {
            open.push(ws);
        }
    }
    let wall = started.elapsed();
    let cpu = own_cpu_seconds() - cpu_before;
    let opened = open.len();
    // Hold them; read whatever the server sends (pings are answered by tungstenite).
    let holders: Vec<_> = open
        .into_iter()
        .map(|mut ws| {
            let hold = args.hold;
            tokio::spawn(async move {
                use futures_util::StreamExt;
                let deadline = tokio::time::Instant::now() + hold;
                loop {
                    match tokio::time::timeout_at(deadline, ws.next()).await {
                        Err(_) => return Some(ws),
                        Ok(Some(Ok(_))) => continue,
                        Ok(_) => return None,
                    }
                }
            })
        })
        .collect();
    // Resident memory once every connection is registered and idle.
    tokio::time::sleep(args.hold / 2).await;
    let rss_with = args.server_pid.and_then(rss_kib);
    let mut still = Vec::new();
    for h in holders {
        if let Some(ws) = h.await? {
            still.push(ws);
        }
    }
    let open_after_hold = still.len();
    drop(still);
    let per_connection = match (rss_before, rss_with) {
        (Some(b), Some(w)) if opened > 0 => Some(w.saturating_sub(b) as f64 / opened as f64),
        _ => None,
    };
    let latency = latency.lock().await;
    Ok(Summary {
        scenario: "connections",
        count: args.count,
        users: distinct,
        concurrency: args.concurrency,
        opened,
        failed: args.count - opened,
        handshakes_per_s: opened as f64 / wall.as_secs_f64(),
        handshake: Latency::from_micros(&latency),
        open_after_hold,
        server_rss_before_kib: rss_before,
        server_rss_with_connections_kib: rss_with,
        server_rss_per_connection_kib: per_connection,
        generator_cpu_percent: cpu_percent(cpu, wall),
    })
}
