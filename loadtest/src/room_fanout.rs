//! `room-fanout`: `rooms` rooms, `receivers` members spread over them and
//! over every gateway, one publisher per room sending at `rate` messages
//! per second (open loop: each send at its time, acks read concurrently).
//! Receivers record the time from send to delivery (the send time travels
//! in the body) and count lost, repeated and out-of-order seqs. Benchmarks
//! S1 (10 rooms x 100) and S3 (1 room x 2000) of docs/BENCHMARKS.md. With
//! `--protocol socketio` the same load goes to Socket.IO nodes
//! (`loadtest/socketio/server.js`) for the side-by-side comparison.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::client::{Cluster, Users, Ws, create_room, now_us, sent_at, timed_body};
use crate::proto::{Event, Proto};
use crate::report::{Latency, cpu_percent, own_cpu_seconds};

/// `telepath-load room-fanout`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    cluster: Cluster,
    /// Rooms, each with its own publisher.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Members in all, spread evenly over the rooms.
    #[arg(long, default_value_t = 20)]
    receivers: usize,
    /// Messages per second sent to each room.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    body_bytes: usize,
    /// Connections opened at once while setting up.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// The server's protocol.
    #[arg(long, value_enum, default_value = "telepath")]
    protocol: Proto,
}

/// What `room-fanout` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    scenario: &'static str,
    gateways: usize,
    rooms: usize,
    receivers: usize,
    rate_per_room: u32,
    duration_s: f64,
    sent: u64,
    acked: u64,
    acked_per_s: f64,
    delivered: u64,
    deliveries_per_s: f64,
    lost: u64,
    duplicates: u64,
    out_of_order: u64,
    send_to_delivery: Latency,
    send_to_ack: Latency,
    generator_cpu_percent: f64,
}

/// The body sent last to each room: receivers stop on it.
pub(crate) const END: &str = "end";

/// Microseconds up to a minute, 2 significant digits (1% resolution: small
/// enough to stay in cache on a receiver's hot path).
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid bounds")
}

/// The seqs one receiver has seen: a bitmap, since seqs count up from 1.
#[derive(Default)]
pub(crate) struct SeqSet {
    bits: Vec<u64>,
    pub(crate) len: u64,
}

impl SeqSet {
    /// Records `seq`; false when it was seen before (or is not a seq).
    pub(crate) fn insert(&mut self, seq: i64) -> bool {
        let Ok(seq) = usize::try_from(seq) else {
            return false;
        };
        let (word, bit) = (seq / 64, 1u64 << (seq % 64));
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        let fresh = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        self.len += u64::from(fresh);
        fresh
    }

    /// Whether `seq` was recorded.
    pub(crate) fn contains(&self, seq: i64) -> bool {
        usize::try_from(seq).is_ok_and(|seq| {
            self.bits
                .get(seq / 64)
                .is_some_and(|w| w & (1u64 << (seq % 64)) != 0)
        })
    }
}

/// What one receiver saw.
#[derive(Default)]
struct Seen {
    unique: u64,
    duplicates: u64,
    out_of_order: u64,
}

/// Reads `room`'s messages until the end marker, recording latencies.
async fn receive(
    mut ws: Ws,
    room: String,
    latency: Arc<Mutex<Histogram<u64>>>,
    proto: Proto,
) -> Seen {
    let mut local = histogram();
    let mut seqs = SeqSet::default();
    let (mut seen, mut last) = (Seen::default(), 0);
    while let Some(Ok(msg)) = ws.next().await {
        let WsMessage::Text(t) = msg else { continue };
        let (seq, body) = match proto.decode(&t) {
            Event::Message { room: r, seq, body } if r == room => (seq, body),
            Event::Ping => {
                let _ = ws.send(WsMessage::text(proto.pong())).await;
                continue;
            }
            _ => continue,
        };
        if body == END {
            break;
        }
        if !seqs.insert(seq) {
            seen.duplicates += 1;
            continue;
        }
        if seq < last {
            seen.out_of_order += 1;
        }
        last = last.max(seq);
        if let Some(sent) = sent_at(body) {
            local.saturating_record((now_us() - sent).max(1) as u64);
        }
    }
    seen.unique = seqs.len;
    latency.lock().await.add(&local).expect("same bounds");
    let _ = ws.close(None).await;
    seen
}

/// What one publisher did.
pub(crate) struct Published {
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    pub(crate) ack_latency: Histogram<u64>,
}

/// Sends to `room` at `rate` for `duration`, then the end marker, reading
/// acks as they come in between sends (one task: a split stream's reader is
/// only woken by the writer's next operation, which would delay every ack
/// until the next send).
pub(crate) async fn publish(
    mut ws: Ws,
    room: String,
    rate: u32,
    duration: Duration,
    body_bytes: usize,
    proto: Proto,
) -> anyhow::Result<Published> {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let (mut sent, mut acked, mut ack_latency) = (0u64, 0u64, histogram());
    // Request id -> send time; ids count up from 1.
    let mut pending: HashMap<u64, i64> = HashMap::new();
    let mut ack = |pending: &mut HashMap<u64, i64>, id: u64, ok: bool| {
        if let Some(at) = pending.remove(&id).filter(|_| ok) {
            acked += 1;
            ack_latency.saturating_record((now_us() - at).max(1) as u64);
        }
    };
    while started.elapsed() < duration {
        tokio::select! {
            _ = tick.tick() => {
                sent += 1;
                pending.insert(sent, now_us());
                ws.send(WsMessage::text(proto.send(sent, &room, &timed_body(body_bytes)))).await?;
            }
            msg = ws.next() => {
                let Some(Ok(WsMessage::Text(t))) = msg else { continue };
                match proto.decode(&t) {
                    Event::Ack { id, ok } => ack(&mut pending, id, ok),
                    Event::Ping => ws.send(WsMessage::text(proto.pong())).await?,
                    _ => {}
                }
            }
        }
    }
    // The end marker is acked after every earlier send: acks come in order.
    ws.send(WsMessage::text(proto.send(END_ID, &room, END)))
        .await?;
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(Ok(msg)) = ws.next().await {
            let WsMessage::Text(t) = msg else { continue };
            match proto.decode(&t) {
                Event::Ack { id: END_ID, .. } => break,
                Event::Ack { id, ok } => ack(&mut pending, id, ok),
                Event::Ping => {
                    let _ = ws.send(WsMessage::text(proto.pong())).await;
                }
                _ => {}
            }
        }
    })
    .await
    .context("acks did not come back in time")?;
    Ok(Published {
        sent,
        acked,
        ack_latency,
    })
}

/// The request id of the end marker (a plain number for Socket.IO's parser too).
const END_ID: u64 = 999_999_999;

/// Connects as `name` to `gateway` and joins `room`.
pub(crate) async fn member(
    gateway: String,
    token: String,
    room: String,
    proto: Proto,
) -> anyhow::Result<Ws> {
    let mut ws = proto.connect(&gateway, &token).await?;
    proto
        .request(&mut ws, END_ID - 1, proto.join(END_ID - 1, &room))
        .await?;
    Ok(ws)
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Summary> {
    let args = Arc::new(args);
    let api = args.cluster.api();
    let http = reqwest::Client::new();
    let users = Users::new(&args.cluster.secret);
    let run = format!("f{}", now_us() % 1_000_000_000);
    let owner = users.token(&format!("{run}-owner"));
    let mut rooms = Vec::new();
    for r in 0..args.rooms.max(1) {
        rooms.push(match args.protocol {
            Proto::Telepath => create_room(&http, &api, &owner, &format!("{run}-{r}")).await?,
            // Socket.IO rooms are just names.
            Proto::Socketio => format!("{run}-{r}"),
        });
    }
    // Members: connected and joined before anything is sent.
    let latency = Arc::new(Mutex::new(histogram()));
    let gate = Arc::new(tokio::sync::Semaphore::new(args.connect_concurrency.max(1)));
    let mut joining = Vec::new();
    for i in 0..args.receivers {
        let gateway = args.cluster.gateway(i);
        let room = rooms[i % rooms.len()].clone();
        let token = users.token(&format!("{run}-m{i}"));
        let (gate, proto) = (gate.clone(), args.protocol);
        joining.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            member(gateway, token, room.clone(), proto)
                .await
                .map(|ws| (ws, room))
        }));
    }
    let mut receivers = Vec::new();
    for j in joining {
        let (ws, room) = j.await??;
        receivers.push(tokio::spawn(receive(
            ws,
            room,
            latency.clone(),
            args.protocol,
        )));
    }
    let mut publishers = Vec::new();
    for (r, room) in rooms.iter().enumerate() {
        let gateway = args.cluster.gateway(r);
        let token = users.token(&format!("{run}-p{r}"));
        publishers.push(member(gateway, token, room.clone(), args.protocol).await?);
    }

    let cpu_before = own_cpu_seconds();
    let started = Instant::now();
    let publishing: Vec<_> = publishers
        .into_iter()
        .zip(rooms.iter().cloned())
        .map(|(ws, room)| {
            tokio::spawn(publish(
                ws,
                room,
                args.rate,
                args.duration,
                args.body_bytes,
                args.protocol,
            ))
        })
        .collect();
    let (mut sent, mut acked, mut ack_latency) = (0, 0, histogram());
    let mut acked_per_room = Vec::new();
    for p in publishing {
        let p = p.await??;
        sent += p.sent;
        acked += p.acked;
        acked_per_room.push(p.acked);
        ack_latency.add(&p.ack_latency).expect("same bounds");
    }
    let wall = started
        .elapsed()
        .min(args.duration.max(Duration::from_millis(1)));
    let (mut delivered, mut duplicates, mut out_of_order) = (0, 0, 0);
    for r in receivers {
        let seen = tokio::time::timeout(Duration::from_secs(60), r)
            .await
            .context("a receiver never saw the end marker")??;
        delivered += seen.unique;
        duplicates += seen.duplicates;
        out_of_order += seen.out_of_order;
    }
    let cpu = own_cpu_seconds() - cpu_before;
    // Members per room: receivers are dealt round robin.
    let expected: u64 = acked_per_room
        .iter()
        .enumerate()
        .map(|(r, a)| {
            let members = (args.receivers + rooms.len() - 1 - r) / rooms.len();
            a * members as u64
        })
        .sum();
    let secs = wall.as_secs_f64();
    let latency = latency.lock().await;
    Ok(Summary {
        scenario: "room-fanout",
        gateways: args.cluster.gateways.len(),
        rooms: rooms.len(),
        receivers: args.receivers,
        rate_per_room: args.rate,
        duration_s: secs,
        sent,
        acked,
        acked_per_s: acked as f64 / secs,
        delivered,
        deliveries_per_s: delivered as f64 / secs,
        lost: expected.saturating_sub(delivered),
        duplicates,
        out_of_order,
        send_to_delivery: Latency::from_micros(&latency),
        send_to_ack: Latency::from_micros(&ack_latency),
        generator_cpu_percent: cpu_percent(cpu, started.elapsed()),
    })
}
