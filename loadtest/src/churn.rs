//! `churn`: the load of `loadtest/soak.sh`. `users` virtual users loop, each
//! visit: connect to a gateway picked at random, join one to three rooms of
//! a pool (resuming with `since` = the last seq it saw there, as the SDK
//! does), send a few messages with pauses between them (reading what
//! arrives meanwhile), sometimes a typing notice, sometimes a `leave`, then
//! close: three times in four with the close handshake, otherwise by
//! dropping the socket. Every virtual user cycles through four user names,
//! so the set of users and rooms stays bounded however long it runs. At the
//! end every connection is closed. Counts what happened and every error by
//! kind.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::chaos::Rng;
use crate::client::{Cluster, Frame, Users, Ws, close, connect, create_room, now_us};
use crate::report::{cpu_percent, own_cpu_seconds};

/// `telepath-load churn`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    cluster: Cluster,
    /// Virtual users, each with one connection at a time.
    #[arg(long, default_value_t = 40)]
    users: usize,
    /// Rooms in the pool the users join.
    #[arg(long, default_value_t = 20)]
    rooms: usize,
    /// How long to churn.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Messages sent per visit.
    #[arg(long, default_value_t = 3)]
    sends: u32,
    /// The longest pause between two steps of a visit.
    #[arg(long, default_value = "400ms", value_parser = humantime::parse_duration)]
    pause: Duration,
}

/// What `churn` prints.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Summary {
    scenario: &'static str,
    users: usize,
    rooms: usize,
    duration_s: f64,
    visits_per_s: f64,
    /// Every user's counts, added up.
    #[serde(flatten)]
    counts: Counts,
    generator_cpu_percent: f64,
}

/// What one virtual user counted (and, added up, all of them).
#[derive(Debug, Default, Serialize)]
struct Counts {
    visits: u64,
    connects: u64,
    joins: u64,
    sends: u64,
    typing: u64,
    leaves: u64,
    closes: u64,
    drops: u64,
    #[serde(rename = "messages_received")]
    received: u64,
    /// Failed steps by kind (`connect`, `join:<code>`, `send:timeout`...).
    errors: BTreeMap<String, u64>,
}

impl Counts {
    fn add(&mut self, c: Counts) {
        self.visits += c.visits;
        self.connects += c.connects;
        self.joins += c.joins;
        self.sends += c.sends;
        self.typing += c.typing;
        self.leaves += c.leaves;
        self.closes += c.closes;
        self.drops += c.drops;
        self.received += c.received;
        for (k, n) in c.errors {
            *self.errors.entry(k).or_default() += n;
        }
    }
}

/// How long a step may take before it counts as failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn run(args: Args) -> anyhow::Result<Summary> {
    let api = args.cluster.api();
    let http = reqwest::Client::new();
    let users = Users::new(&args.cluster.secret);
    let run = format!("k{}", now_us() % 1_000_000_000);
    let owner = users.token(&format!("{run}-owner"));
    let mut rooms = Vec::new();
    for r in 0..args.rooms.max(1) {
        rooms.push(create_room(&http, &api, &owner, &format!("{run}-{r}")).await?);
    }
    let rooms = Arc::new(rooms);
    let args = Arc::new(args);
    let cpu_before = own_cpu_seconds();
    let started = Instant::now();
    let deadline = started + args.duration;
    let tasks: Vec<_> = (0..args.users)
        .map(|i| {
            let tokens: Vec<String> = (0..4)
                .map(|n| users.token(&format!("{run}-u{i}-{n}")))
                .collect();
            let (args, rooms) = (args.clone(), rooms.clone());
            tokio::spawn(user(i, tokens, args, rooms, deadline))
        })
        .collect();
    let mut s = Summary {
        scenario: "churn",
        users: args.users,
        rooms: rooms.len(),
        ..Summary::default()
    };
    for t in tasks {
        s.counts.add(t.await?);
    }
    let wall = started.elapsed();
    s.duration_s = wall.as_secs_f64();
    s.visits_per_s = s.counts.visits as f64 / s.duration_s;
    s.generator_cpu_percent = cpu_percent(own_cpu_seconds() - cpu_before, wall);
    Ok(s)
}

/// One virtual user's visits until `deadline`.
async fn user(
    i: usize,
    tokens: Vec<String>,
    args: Arc<Args>,
    rooms: Arc<Vec<String>>,
    deadline: Instant,
) -> Counts {
    let mut c = Counts::default();
    let mut rng = Rng::new(now_us() as u64 ^ ((i as u64) << 32));
    // (user, room) -> the last seq that user saw there.
    let mut seen: HashMap<(usize, usize), i64> = HashMap::new();
    let gateways = &args.cluster.gateways;
    // Spread the first connects over the first second.
    tokio::time::sleep(Duration::from_secs(1).mul_f64(rng.unit())).await;
    while Instant::now() < deadline {
        let who = (c.visits % tokens.len() as u64) as usize;
        c.visits += 1;
        let gateway = &gateways[(rng.unit() * gateways.len() as f64) as usize];
        let mut ws = match tokio::time::timeout(STEP_TIMEOUT, connect(gateway, &tokens[who])).await
        {
            Ok(Ok(ws)) => ws,
            _ => {
                *c.errors.entry("connect".into()).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        c.connects += 1;
        let mut joined = Vec::new();
        for _ in 0..1 + (rng.unit() * 3.0) as usize {
            let r = (rng.unit() * rooms.len() as f64) as usize;
            if joined.contains(&r) {
                continue;
            }
            let mut join = json!({"type": "join", "room": rooms[r]});
            if let Some(since) = seen.get(&(who, r)) {
                join["since"] = json!(since);
            }
            match ask(&mut ws, join, &mut c, &rooms, who, &mut seen).await {
                Ok(data) => {
                    c.joins += 1;
                    joined.push(r);
                    let latest = data["seq"].as_i64().unwrap_or(0);
                    let at = seen.entry((who, r)).or_default();
                    *at = (*at).max(latest);
                }
                Err(e) => *c.errors.entry(format!("join:{e}")).or_default() += 1,
            }
        }
        for n in 0..args.sends {
            let Some(&r) = joined.get(n as usize % joined.len().max(1)) else {
                break;
            };
            let send = json!({"type": "send", "room": rooms[r], "body": format!("soak {n}")});
            match ask(&mut ws, send, &mut c, &rooms, who, &mut seen).await {
                Ok(_) => c.sends += 1,
                Err(e) => *c.errors.entry(format!("send:{e}")).or_default() += 1,
            }
            if n == 0 && rng.unit() < 0.3 {
                let typing = json!({"type": "typing", "room": rooms[r], "active": true});
                if ws.send(WsMessage::text(typing.to_string())).await.is_ok() {
                    c.typing += 1;
                }
            }
            let pause = args.pause.mul_f64(rng.unit());
            read_for(&mut ws, pause, &mut c, &rooms, who, &mut seen).await;
        }
        if let Some(&r) = joined.first()
            && rng.unit() < 0.5
        {
            match ask(
                &mut ws,
                json!({"type": "leave", "room": rooms[r]}),
                &mut c,
                &rooms,
                who,
                &mut seen,
            )
            .await
            {
                Ok(_) => c.leaves += 1,
                Err(e) => *c.errors.entry(format!("leave:{e}")).or_default() += 1,
            }
        }
        if rng.unit() < 0.75 {
            close(ws).await;
            c.closes += 1;
        } else {
            drop(ws);
            c.drops += 1;
        }
        tokio::time::sleep(args.pause.mul_f64(rng.unit())).await;
    }
    c
}

/// Sends `frame` with a ref and reads until its reply: the reply's data, or
/// the error code (`timeout`, `closed` when it never came).
async fn ask(
    ws: &mut Ws,
    mut frame: Value,
    c: &mut Counts,
    rooms: &[String],
    who: usize,
    seen: &mut HashMap<(usize, usize), i64>,
) -> Result<Value, String> {
    let reference = format!("q{}", c.joins + c.sends + c.leaves + c.received);
    frame["ref"] = json!(reference);
    if ws.send(WsMessage::text(frame.to_string())).await.is_err() {
        return Err("closed".into());
    }
    let wait = async {
        while let Some(Ok(msg)) = ws.next().await {
            let WsMessage::Text(t) = msg else { continue };
            let Ok(f) = serde_json::from_str::<Frame>(&t) else {
                continue;
            };
            if f.kind == "reply" && f.reference == Some(reference.as_str()) {
                let reply: Value = serde_json::from_str(&t).unwrap_or_default();
                return if f.ok == Some(true) {
                    Ok(reply["data"].clone())
                } else {
                    Err(reply["error"]["code"].as_str().unwrap_or("?").to_owned())
                };
            }
            note(&f, c, rooms, who, seen);
        }
        Err("closed".to_owned())
    };
    tokio::time::timeout(STEP_TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| Err("timeout".into()))
}

/// Reads what arrives for `pause`.
async fn read_for(
    ws: &mut Ws,
    pause: Duration,
    c: &mut Counts,
    rooms: &[String],
    who: usize,
    seen: &mut HashMap<(usize, usize), i64>,
) {
    let read = async {
        while let Some(Ok(msg)) = ws.next().await {
            if let WsMessage::Text(t) = msg
                && let Ok(f) = serde_json::from_str::<Frame>(&t)
            {
                note(&f, c, rooms, who, seen);
            }
        }
    };
    let _ = tokio::time::timeout(pause, read).await;
}

/// Counts a room message and remembers its seq for the next resume.
fn note(
    f: &Frame<'_>,
    c: &mut Counts,
    rooms: &[String],
    who: usize,
    seen: &mut HashMap<(usize, usize), i64>,
) {
    if f.kind != "message" {
        return;
    }
    let (Some(room), Some(seq)) = (f.room, f.seq) else {
        return;
    };
    c.received += 1;
    if let Some(r) = rooms.iter().position(|id| id == room) {
        let at = seen.entry((who, r)).or_default();
        *at = (*at).max(seq);
    }
}
