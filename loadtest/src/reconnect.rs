//! `reconnect`: `clients` members of one room, spread over the gateways,
//! receive what a publisher sends at `rate` per second. `storm_at` into the
//! run every client drops its connection at once and comes back (within
//! `jitter`) with `join` + `since` = the last seq it saw, as the SDK does.
//! Reports how long each client took to be back (dropped to join reply)
//! and whether every client ended with every seq exactly once. Benchmark
//! S5 of docs/BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{Mutex, Semaphore, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::client::{Cluster, Frame, Users, Ws, connect, create_room, now_us, request};
use crate::proto::Proto;
use crate::report::{Latency, cpu_percent, own_cpu_seconds};
use crate::room_fanout::{END, SeqSet, histogram, member, publish};

/// `telepath-load reconnect`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    cluster: Cluster,
    /// Members of the room.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Messages per second the publisher sends.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// How long the publisher sends.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// When every client drops, from the start of publishing.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    storm_at: Duration,
    /// Each client reconnects after a random delay up to this.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    jitter: Duration,
    /// Connections opened at once while setting up.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
}

/// What `reconnect` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    scenario: &'static str,
    gateways: usize,
    clients: usize,
    rate: u32,
    sent: u64,
    acked: u64,
    /// Clients that came back and joined again.
    back: usize,
    /// Clients that failed (dropped early, could not reconnect or rejoin).
    failed: usize,
    /// From dropping the connection to the join's reply, over every client.
    back_latency: Latency,
    /// From the storm to the last client's join reply.
    all_back_s: f64,
    /// Seqs of the room a client never got (summed over clients).
    gaps: u64,
    /// Seqs a client got twice.
    duplicates: u64,
    /// Joins with `recovered: false`.
    unrecovered: u64,
    generator_cpu_percent: f64,
}

/// What one client saw.
struct Outcome {
    back_after: Option<Duration>,
    back_at: Option<Instant>,
    seqs: SeqSet,
    duplicates: u64,
    unrecovered: u64,
}

/// Records the room messages in `text`; true on the end marker.
fn note(text: &str, room: &str, seqs: &mut SeqSet, last: &mut i64, duplicates: &mut u64) -> bool {
    let Ok(f) = serde_json::from_str::<Frame>(text) else {
        return false;
    };
    if f.kind != "message" || f.room != Some(room) {
        return false;
    }
    if f.body == Some(END) {
        return true;
    }
    let seq = f.seq.unwrap_or(-1);
    if !seqs.insert(seq) {
        *duplicates += 1;
    }
    *last = (*last).max(seq);
    false
}

/// One client: reads until the storm, drops, comes back with `since`, reads until the end.
async fn client(
    mut ws: Ws,
    gateway: String,
    token: String,
    room: String,
    mut storm: watch::Receiver<bool>,
    jitter: Duration,
) -> anyhow::Result<Outcome> {
    let (mut seqs, mut last, mut duplicates) = (SeqSet::default(), 0i64, 0u64);
    loop {
        tokio::select! {
            _ = storm.wait_for(|s| *s) => break,
            msg = ws.next() => match msg {
                Some(Ok(WsMessage::Text(t))) => {
                    note(&t, &room, &mut seqs, &mut last, &mut duplicates);
                }
                Some(Ok(_)) => {}
                _ => anyhow::bail!("dropped before the storm"),
            },
        }
    }
    // The storm: the connection goes, without a goodbye.
    let dropped = Instant::now();
    drop(ws);
    if !jitter.is_zero() {
        let wait = jitter.mul_f64((now_us() % 1000) as f64 / 1000.0);
        tokio::time::sleep(wait).await;
    }
    let mut ws = connect(&gateway, &token).await?;
    let reply = request(
        &mut ws,
        json!({"type": "join", "room": room, "since": last}),
        "rejoin",
        |_| {},
    )
    .await?;
    let back_after = dropped.elapsed();
    let unrecovered = u64::from(reply["recovered"] != true);
    while let Some(msg) = ws.next().await {
        if let WsMessage::Text(t) = msg?
            && note(&t, &room, &mut seqs, &mut last, &mut duplicates)
        {
            break;
        }
    }
    let _ = ws.close(None).await;
    Ok(Outcome {
        back_after: Some(back_after),
        back_at: Some(dropped + back_after),
        seqs,
        duplicates,
        unrecovered,
    })
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Summary> {
    let api = args.cluster.api();
    let http = reqwest::Client::new();
    let users = Users::new(&args.cluster.secret);
    let run = format!("s{}", now_us() % 1_000_000_000);
    let owner = users.token(&format!("{run}-owner"));
    let room = create_room(&http, &api, &owner, &format!("{run}-storm")).await?;
    let (storm_tx, storm_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut joining = Vec::new();
    for i in 0..args.clients {
        let gateway = args.cluster.gateway(i);
        let token = users.token(&format!("{run}-c{i}"));
        let (gate, room) = (gate.clone(), room.clone());
        joining.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let ws = member(gateway.clone(), token.clone(), room, Proto::Telepath).await?;
            anyhow::Ok((ws, gateway, token))
        }));
    }
    let mut clients = Vec::new();
    for j in joining {
        let (ws, gateway, token) = j.await??;
        clients.push(tokio::spawn(client(
            ws,
            gateway,
            token,
            room.clone(),
            storm_rx.clone(),
            args.jitter,
        )));
    }
    let publisher = member(
        args.cluster.gateway(0),
        users.token(&format!("{run}-publisher")),
        room.clone(),
        Proto::Telepath,
    )
    .await?;
    let cpu_before = own_cpu_seconds();
    let started = Instant::now();
    let publishing = tokio::spawn(publish(
        publisher,
        room.clone(),
        args.rate,
        args.duration,
        100,
        Proto::Telepath,
    ));
    tokio::time::sleep(args.storm_at).await;
    let storm = Instant::now();
    storm_tx.send_replace(true);
    let published = publishing.await??;
    let back_latency = Arc::new(Mutex::new(histogram()));
    let (mut back, mut gaps, mut duplicates, mut unrecovered, mut failed) = (0, 0, 0, 0, 0);
    let mut last_back = storm;
    for c in clients {
        let o = match tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .context("a client never saw the end marker")??
        {
            Ok(o) => o,
            Err(e) => {
                eprintln!("a client failed: {e:#}");
                failed += 1;
                continue;
            }
        };
        if let (Some(after), Some(at)) = (o.back_after, o.back_at) {
            back += 1;
            last_back = last_back.max(at);
            back_latency
                .lock()
                .await
                .saturating_record(after.as_micros().max(1) as u64);
        }
        // The room's seqs are 1..=acked (the end marker is the one after).
        gaps += published.acked.saturating_sub(o.seqs.len);
        duplicates += o.duplicates;
        unrecovered += o.unrecovered;
    }
    let cpu = own_cpu_seconds() - cpu_before;
    let back_latency: Histogram<u64> = back_latency.lock().await.clone();
    Ok(Summary {
        scenario: "reconnect",
        gateways: args.cluster.gateways.len(),
        clients: args.clients,
        rate: args.rate,
        sent: published.sent,
        acked: published.acked,
        back,
        failed,
        back_latency: Latency::from_micros(&back_latency),
        all_back_s: (last_back - storm).as_secs_f64(),
        gaps,
        duplicates,
        unrecovered,
        generator_cpu_percent: cpu_percent(cpu, started.elapsed()),
    })
}
