//! `mix`: messages that live (issue 20). `rooms` rooms of `members`
//! members each, spread over every gateway; the first `active` members of
//! each room issue a mix of operations, `rate` per second per room in all
//! (open loop: each op at its time, replies read in the same task), by
//! default 70% `send`, 15% `react` (on/off toggles of a small emoji set on
//! the room's recent messages), 10% `read` (the member's latest contiguous
//! seq) and 5% `edit` (of its own recent messages); `--mix` changes the
//! shares and may add `delete` (of its own recent messages).
//!
//! Reports each op's ack latency (request to reply), ops per second,
//! refusals by error code, and checks delivery: messages and change events
//! (`message_edited`, `message_deleted`, `reaction`) share one seq sequence
//! per room, so every member (active ones included) must get every seq of
//! its room's log once and in order, up to an end marker sent once every
//! op was answered. Also checks the log itself: every acknowledged change
//! named its own seq, and the acknowledged changes and the end marker fill
//! the room's seqs exactly (no seq taken without an ack, none twice), and
//! a `read` reply's cursor is never behind the seq read. Lost, repeated
//! and out-of-order deliveries, unanswered or refused ops (but `not_found`
//! on a react or edit that raced a delete, when the mix deletes) and log
//! mismatches fail the run. Mirrors `loadtest/k6/mix.js`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{Semaphore, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::client::{
    Cluster, Users, Ws, close, connect, create_room, now_us, request, sent_at, timed_body,
};
use crate::report::{Latency, cpu_percent, own_cpu_seconds};
use crate::room_fanout::{END, SeqSet, histogram};

/// `telepath-load mix`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    cluster: Cluster,
    /// Rooms.
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Members of each room (connections spread over the gateways).
    #[arg(long, default_value_t = 20)]
    members: usize,
    /// Members of each room that issue operations (the others only receive).
    #[arg(long, default_value_t = 5)]
    active: usize,
    /// Operations per second per room, spread evenly over its active members.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// How long to issue operations.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Shares of each operation in percent: send, react, read, edit, delete.
    #[arg(long, default_value = "send=70,react=15,read=10,edit=5")]
    mix: Mix,
    /// Message (and edit) body size in bytes.
    #[arg(long, default_value_t = 100)]
    body_bytes: usize,
    /// How long to wait for the last replies, and then for the end marker.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// Connections opened at once while setting up.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Seed of the op choices (the same seed, the same sequence of choices).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The operations of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Send,
    React,
    Read,
    Edit,
    Delete,
}

impl Op {
    const ALL: [Op; 5] = [Op::Send, Op::React, Op::Read, Op::Edit, Op::Delete];

    fn name(self) -> &'static str {
        match self {
            Op::Send => "send",
            Op::React => "react",
            Op::Read => "read",
            Op::Edit => "edit",
            Op::Delete => "delete",
        }
    }

    /// Whether the op, when it changes something, takes a seq of the room's log.
    fn takes_seq(self) -> bool {
        self != Op::Read
    }
}

/// Shares of each op in percent, as `send=70,react=15,read=10,edit=5`
/// (ops left out get 0; the shares must add up to 100).
#[derive(Debug, Clone)]
pub(crate) struct Mix([u32; 5]);

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Mix, String> {
        let mut shares = [0u32; 5];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, share) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected op=percent"))?;
            let op = Op::ALL
                .iter()
                .position(|op| op.name() == name.trim())
                .ok_or_else(|| format!("`{name}`: not one of send, react, read, edit, delete"))?;
            shares[op] = share
                .trim()
                .parse()
                .map_err(|_| format!("`{share}`: not a whole percentage"))?;
        }
        match shares.iter().sum::<u32>() {
            100 => Ok(Mix(shares)),
            n => Err(format!("the shares add up to {n}, not 100")),
        }
    }
}

impl Mix {
    /// The op whose share holds `r` (0..100).
    fn pick(&self, r: u32) -> Op {
        let mut upto = 0;
        for (op, share) in Op::ALL.iter().zip(self.0) {
            upto += share;
            if r < upto {
                return *op;
            }
        }
        Op::Send
    }

    fn deletes(&self) -> bool {
        self.0[Op::Delete as usize] > 0
    }

    fn describe(&self) -> String {
        Op::ALL
            .iter()
            .zip(self.0)
            .filter(|(_, s)| *s > 0)
            .map(|(op, s)| format!("{}={s}", op.name()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The emoji reactions toggle (a small set, as in a real room).
const EMOJI: [&str; 6] = ["👍", "❤️", "😂", "🎉", "👀", "🙏"];
/// Recent messages of the room a member reacts to.
const RECENT: usize = 32;
/// A member's own recent messages, which it edits (and deletes).
const MINE: usize = 16;

/// splitmix64: the generator has no `rand`, and needs nothing better.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The fields of a server frame this scenario reads.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(rename = "ref", borrow)]
    reference: Option<Cow<'a, str>>,
    ok: Option<bool>,
    #[serde(borrow)]
    room: Option<Cow<'a, str>>,
    seq: Option<i64>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    body: Option<Cow<'a, str>>,
    data: Option<ReplyData>,
    error: Option<ReplyError>,
}

/// A reply's `data`: `id` and `seq` of a change, `seq` of a read cursor.
#[derive(Deserialize)]
struct ReplyData {
    id: Option<String>,
    seq: Option<i64>,
}

#[derive(Deserialize)]
struct ReplyError {
    code: String,
}

/// The change events of the room's log (with `message`).
const KINDS: [&str; 4] = ["message", "message_edited", "message_deleted", "reaction"];

/// An op waiting for its reply.
struct Pending {
    op: Op,
    at: Instant,
    /// A reaction toggle: the message, the emoji, on.
    react: Option<(String, usize)>,
    /// A read: the seq asked for.
    read: i64,
}

/// What one active member's ops came to.
struct OpsOut {
    issued: [u64; 5],
    acked: [u64; 5],
    refused: [u64; 5],
    no_reply: [u64; 5],
    latency: Vec<Histogram<u64>>,
    refused_by_code: BTreeMap<String, u64>,
    /// `not_found` on a react or edit of a message deleted meanwhile.
    raced_delete: u64,
    /// The seqs acknowledged changes named.
    acked_seqs: Vec<i64>,
    /// Acknowledged changes whose reply named no seq.
    no_seq: u64,
    /// `read` replies whose cursor was behind the seq read.
    read_behind: u64,
}

impl OpsOut {
    fn new() -> OpsOut {
        OpsOut {
            issued: [0; 5],
            acked: [0; 5],
            refused: [0; 5],
            no_reply: [0; 5],
            latency: Op::ALL.iter().map(|_| histogram()).collect(),
            refused_by_code: BTreeMap::new(),
            raced_delete: 0,
            acked_seqs: Vec::new(),
            no_seq: 0,
            read_behind: 0,
        }
    }
}

/// What one member saw (and did, if active).
struct MemberOut {
    room: usize,
    /// The join reply's seq: the log starts above it for this member.
    base: i64,
    seqs: SeqSet,
    duplicates: u64,
    out_of_order: u64,
    saw_end: bool,
    by_kind: [u64; 4],
    receipts: u64,
    send_to_delivery: Histogram<u64>,
    edit_to_delivery: Histogram<u64>,
    ops: Option<OpsOut>,
}

/// How an active member issues ops.
struct Active {
    rng: Rng,
    start: Instant,
    period: Duration,
    until: Instant,
    mix: Mix,
    body_bytes: usize,
    done: oneshot::Sender<()>,
}

/// One member: reads its room's log until the end marker and, if active,
/// issues ops at their times meanwhile. `deadline`: when to give up on the
/// end marker.
async fn member(
    mut ws: Ws,
    index: (usize, String),
    base: i64,
    active: Option<Active>,
    settle: Duration,
    deadline: Instant,
) -> anyhow::Result<MemberOut> {
    let (room_index, room) = index;
    let mut out = MemberOut {
        room: room_index,
        base,
        seqs: SeqSet::default(),
        duplicates: 0,
        out_of_order: 0,
        saw_end: false,
        by_kind: [0; 4],
        receipts: 0,
        send_to_delivery: histogram(),
        edit_to_delivery: histogram(),
        ops: None,
    };
    let (mut last, mut contiguous) = (base, base);
    let mut recent: VecDeque<String> = VecDeque::new();
    let mut mine: Vec<String> = Vec::new();
    let mut reactions: HashMap<String, u8> = HashMap::new();
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut next_ref = 0u64;
    let (mut ops, mut act, mut done) = match active {
        Some(a) => {
            let done = a.done;
            let act = (a.rng, a.start, a.period, a.until, a.mix, a.body_bytes);
            (Some(OpsOut::new()), Some(act), Some(done))
        }
        None => (None, None, None),
    };
    let deletes = act.as_ref().is_some_and(|a| a.4.deletes());
    let mut tick = match &act {
        Some((_, start, period, ..)) => tokio::time::interval_at(*start, *period),
        None => tokio::time::interval(Duration::from_secs(3600)),
    };
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        let now = Instant::now();
        let sending = act.as_ref().is_some_and(|a| now < a.3);
        // Done once every op was answered (or the settle time is up).
        if !sending && done.is_some() {
            let until = act.as_ref().map_or(now, |a| a.3);
            if pending.is_empty() || now >= until + settle {
                if let Some(o) = ops.as_mut() {
                    for p in pending.drain().map(|(_, p)| p) {
                        o.no_reply[p.op as usize] += 1;
                    }
                }
                let _ = done.take().map(|d| d.send(()));
            }
        }
        let wake = match (&act, done.is_some()) {
            (Some(a), true) if !sending => (a.3 + settle).min(deadline),
            _ => deadline,
        };
        tokio::select! {
            _ = tick.tick(), if sending => {
                let (rng, _, _, until, mix, body_bytes) = act.as_mut().expect("active");
                if Instant::now() >= *until {
                    continue;
                }
                let o = ops.as_mut().expect("active");
                let mut op = mix.pick((rng.next() % 100) as u32);
                if op == Op::React && recent.is_empty()
                    || matches!(op, Op::Edit | Op::Delete) && mine.is_empty()
                    || op == Op::Read && contiguous <= base
                {
                    op = Op::Send;
                }
                next_ref += 1;
                let r = next_ref.to_string();
                let mut p = Pending { op, at: Instant::now(), react: None, read: 0 };
                let frame = match op {
                    Op::Send => json!({"type": "send", "ref": r, "room": room, "body": timed_body(*body_bytes)}),
                    Op::React => {
                        let id = recent[rng.below(recent.len())].clone();
                        let e = rng.below(EMOJI.len());
                        let mask = reactions.entry(id.clone()).or_default();
                        let on = *mask & (1 << e) == 0;
                        *mask ^= 1 << e;
                        p.react = Some((id.clone(), e));
                        json!({"type": "react", "ref": r, "room": room, "id": id, "emoji": EMOJI[e], "on": on})
                    }
                    Op::Read => {
                        p.read = contiguous;
                        json!({"type": "read", "ref": r, "room": room, "seq": contiguous})
                    }
                    Op::Edit => {
                        let id = &mine[rng.below(mine.len())];
                        json!({"type": "edit", "ref": r, "room": room, "id": id, "body": timed_body(*body_bytes)})
                    }
                    Op::Delete => {
                        let id = mine.swap_remove(rng.below(mine.len()));
                        json!({"type": "delete", "ref": r, "room": room, "id": id})
                    }
                };
                o.issued[op as usize] += 1;
                pending.insert(next_ref, p);
                ws.send(WsMessage::text(frame.to_string())).await?;
            }
            msg = tokio::time::timeout_at(wake, ws.next()) => {
                let Ok(msg) = msg else {
                    if Instant::now() >= deadline { break }
                    continue;
                };
                let Some(msg) = msg else { break };
                let WsMessage::Text(t) = msg.context("reading the room")? else { continue };
                let Ok(f) = serde_json::from_str::<Incoming>(&t) else { continue };
                if f.kind == "reply" {
                    let n = f.reference.as_deref().and_then(|r| r.parse::<u64>().ok());
                    let (Some(p), Some(o)) = (n.and_then(|n| pending.remove(&n)), ops.as_mut()) else { continue };
                    let i = p.op as usize;
                    if f.ok == Some(true) {
                        o.acked[i] += 1;
                        o.latency[i].saturating_record(p.at.elapsed().as_micros().max(1) as u64);
                        let data = f.data.unwrap_or(ReplyData { id: None, seq: None });
                        match (p.op.takes_seq(), data.seq) {
                            (true, Some(seq)) => o.acked_seqs.push(seq),
                            (true, None) => o.no_seq += 1,
                            (false, Some(seq)) => o.read_behind += u64::from(seq < p.read),
                            (false, None) => o.read_behind += 1,
                        }
                        if let (Op::Send, Some(id)) = (p.op, data.id) {
                            if mine.len() == MINE {
                                mine.remove(0);
                            }
                            mine.push(id);
                        }
                    } else {
                        o.refused[i] += 1;
                        let code = f.error.map_or_else(|| "none".to_owned(), |e| e.code);
                        if deletes && code == "not_found" && matches!(p.op, Op::React | Op::Edit) {
                            o.raced_delete += 1;
                        }
                        *o.refused_by_code.entry(code).or_default() += 1;
                        // The toggle did not happen.
                        if let Some((id, e)) = p.react {
                            *reactions.entry(id).or_default() ^= 1 << e;
                        }
                    }
                    continue;
                }
                if f.room.as_deref() != Some(room.as_str()) {
                    continue;
                }
                if f.kind == "receipt" {
                    out.receipts += 1;
                    continue;
                }
                let Some(kind) = KINDS.iter().position(|k| *k == f.kind) else { continue };
                let Some(seq) = f.seq else { continue };
                if seq <= base || !out.seqs.insert(seq) {
                    out.duplicates += 1;
                    continue;
                }
                if seq < last {
                    out.out_of_order += 1;
                }
                last = last.max(seq);
                while out.seqs.contains(contiguous + 1) {
                    contiguous += 1;
                }
                out.by_kind[kind] += 1;
                let body = f.body.as_deref().unwrap_or("");
                match kind {
                    0 if body == END => {
                        out.saw_end = true;
                        break;
                    }
                    0 => {
                        if let Some(sent) = sent_at(body) {
                            out.send_to_delivery.saturating_record((now_us() - sent).max(1) as u64);
                        }
                        if let Some(id) = f.id {
                            if recent.len() == RECENT {
                                recent.pop_front();
                            }
                            recent.push_back(id.into_owned());
                        }
                    }
                    1 => {
                        if let Some(sent) = sent_at(body) {
                            out.edit_to_delivery.saturating_record((now_us() - sent).max(1) as u64);
                        }
                    }
                    2 => {
                        if let Some(id) = f.id.as_deref() {
                            recent.retain(|r| r != id);
                            mine.retain(|r| r != id);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some(d) = done.take() {
        let _ = d.send(());
    }
    out.ops = ops;
    close(ws).await;
    Ok(out)
}

/// One op's line in the summary.
#[derive(Debug, Serialize)]
struct OpSummary {
    issued: u64,
    acked: u64,
    acked_per_s: f64,
    refused: u64,
    no_reply: u64,
    ack: Latency,
}

/// What `mix` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    scenario: &'static str,
    gateways: usize,
    rooms: usize,
    members_per_room: usize,
    active_per_room: usize,
    rate_per_room: f64,
    mix: String,
    duration_s: f64,
    /// Every op issued, and the acknowledged ones per second of the op window.
    ops_issued: u64,
    ops_acked: u64,
    ops_per_s: f64,
    ops: BTreeMap<&'static str, OpSummary>,
    /// Every op's ack latency together.
    ack_all: Latency,
    refused: u64,
    refused_by_code: BTreeMap<String, u64>,
    /// `not_found` on a react or edit of a message deleted meanwhile (when the mix deletes).
    raced_delete: u64,
    no_reply: u64,
    /// Seqs in the rooms' logs (changes and end markers).
    log_seqs: u64,
    /// Log seqs not acknowledged exactly once, acknowledged seqs outside the
    /// log, and acknowledged changes without a seq.
    log_mismatch: u64,
    /// `read` replies with a cursor behind the seq read.
    read_behind: u64,
    /// Events of the log received (each seq once), per second of the op window.
    delivered: u64,
    deliveries_per_s: f64,
    delivered_by_kind: BTreeMap<&'static str, u64>,
    receipts: u64,
    lost: u64,
    duplicates: u64,
    out_of_order: u64,
    /// Members that never got the end marker.
    missed_end: u64,
    /// Members whose connection failed (what they saw and did is left out).
    members_failed: u64,
    send_to_delivery: Latency,
    edit_to_delivery: Latency,
    generator_cpu_percent: f64,
}

impl Summary {
    /// Why the run failed, if it did.
    pub(crate) fn failure(&self) -> Option<String> {
        let counts = [
            (self.lost, "lost"),
            (self.duplicates, "duplicated"),
            (self.out_of_order, "out of order"),
            (self.missed_end, "members without the end marker"),
            (self.members_failed, "members failed"),
            (self.no_reply, "ops unanswered"),
            (self.refused - self.raced_delete, "ops refused"),
            (self.log_mismatch, "log mismatches"),
            (self.read_behind, "reads behind"),
        ];
        let bad: Vec<String> = counts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        if !bad.is_empty() {
            return Some(bad.join(", "));
        }
        (self.ops_acked == 0).then(|| "no op was acknowledged".to_owned())
    }
}

/// Connects to `gateway` and joins `room`; returns the socket and the join's seq.
async fn joined(gateway: &str, token: &str, room: &str) -> anyhow::Result<(Ws, i64)> {
    let mut ws = connect(gateway, token).await?;
    let reply = request(
        &mut ws,
        json!({"type": "join", "room": room}),
        "join",
        |_| {},
    )
    .await?;
    Ok((ws, reply["seq"].as_i64().context("join seq")?))
}

/// Seqs of `base+1..=end` not acknowledged exactly once, plus acknowledged
/// seqs outside it.
fn log_mismatch(mut acked: Vec<i64>, base: i64, end: i64) -> u64 {
    acked.sort_unstable();
    let mut bad = 0u64;
    let mut expect = base + 1;
    let mut i = 0;
    while i < acked.len() {
        let seq = acked[i];
        let mut n = 0;
        while i < acked.len() && acked[i] == seq {
            n += 1;
            i += 1;
        }
        if seq <= base || seq > end {
            bad += n;
            continue;
        }
        bad += (seq - expect) as u64 + (n - 1);
        expect = seq + 1;
    }
    bad + (end + 1 - expect).max(0) as u64
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Summary> {
    if args.active > args.members {
        bail!(
            "--active ({}) is more than --members ({})",
            args.active,
            args.members
        );
    }
    let api = args.cluster.api();
    let http = reqwest::Client::new();
    let users = Users::new(&args.cluster.secret);
    let run = format!("x{}", now_us() % 1_000_000_000);
    let owner = users.token(&format!("{run}-owner"));
    let mut rooms = Vec::new();
    for r in 0..args.rooms.max(1) {
        rooms.push(create_room(&http, &api, &owner, &format!("{run}-{r}")).await?);
    }
    // Members, connected and joined before any op.
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut joining = Vec::new();
    for (r, room) in rooms.iter().enumerate() {
        for m in 0..args.members {
            let g = r * args.members + m;
            let (gateway, room) = (args.cluster.gateway(g), room.clone());
            let token = users.token(&format!("{run}-r{r}m{m}"));
            let gate = gate.clone();
            joining.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                joined(&gateway, &token, &room).await
            }));
        }
    }
    let mut sockets = Vec::new();
    for j in joining {
        sockets.push(j.await??);
    }
    // The end markers come from the rooms' owner, on a connection that
    // joins no room (a member may send without it), so nothing piles up
    // unread in it.
    let mut controller = connect(&args.cluster.gateway(0), &owner).await?;

    let active = args.active.min(args.members);
    let period = Duration::from_secs_f64(active.max(1) as f64 / args.rate.max(0.001));
    let cpu_before = own_cpu_seconds();
    let start = Instant::now() + Duration::from_millis(100);
    let until = start + args.duration;
    let deadline = until + 2 * args.settle;
    let mut rng = Rng(args.seed);
    let mut members = Vec::new();
    let mut dones = Vec::new();
    for (g, (ws, base)) in sockets.into_iter().enumerate() {
        let (r, m) = (g / args.members, g % args.members);
        let act = (m < active).then(|| {
            let (tx, rx) = oneshot::channel();
            dones.push(rx);
            // Each member at its own phase of the period.
            let phase = period.mul_f64((rng.next() % 1000) as f64 / 1000.0);
            Active {
                rng: Rng(rng.next()),
                start: start + phase,
                period,
                until,
                mix: args.mix.clone(),
                body_bytes: args.body_bytes,
                done: tx,
            }
        });
        let index = (r, rooms[r].clone());
        members.push(tokio::spawn(member(
            ws,
            index,
            base,
            act,
            args.settle,
            deadline,
        )));
    }
    for d in dones {
        let _ = d.await;
    }
    // Every op was answered: the end marker is the last seq of each log.
    let mut ends = Vec::new();
    for room in &rooms {
        let send = json!({"type": "send", "room": room, "body": END});
        let reply = request(&mut controller, send, "end", |_| {}).await?;
        ends.push(reply["seq"].as_i64().context("end marker seq")?);
    }
    let mut outs = Vec::new();
    let mut members_failed = 0;
    for m in members {
        match m.await? {
            Ok(out) => outs.push(out),
            Err(e) => {
                eprintln!("a member failed: {e:#}");
                members_failed += 1;
            }
        }
    }
    let cpu = own_cpu_seconds() - cpu_before;
    close(controller).await;

    // Per room: its base (the join seq every member got), the seqs acked.
    let mut acked_seqs: Vec<Vec<i64>> = rooms.iter().map(|_| Vec::new()).collect();
    let mut bases: Vec<i64> = rooms.iter().map(|_| i64::MAX).collect();
    let mut ops_total = OpsOut::new();
    let mut all_ack = histogram();
    let (mut delivered, mut lost, mut duplicates, mut out_of_order, mut missed_end) =
        (0, 0, 0, 0, 0);
    let (mut by_kind, mut receipts) = ([0u64; 4], 0);
    let (mut send_lat, mut edit_lat) = (histogram(), histogram());
    for o in &mut outs {
        let end = ends[o.room];
        bases[o.room] = bases[o.room].min(o.base);
        delivered += o.seqs.len;
        lost += ((end - o.base).max(0) as u64).saturating_sub(o.seqs.len);
        duplicates += o.duplicates;
        out_of_order += o.out_of_order;
        missed_end += u64::from(!o.saw_end);
        receipts += o.receipts;
        for (k, n) in o.by_kind.iter().enumerate() {
            by_kind[k] += n;
        }
        send_lat.add(&o.send_to_delivery).expect("same bounds");
        edit_lat.add(&o.edit_to_delivery).expect("same bounds");
        let Some(ops) = o.ops.take() else { continue };
        acked_seqs[o.room].extend(&ops.acked_seqs);
        for i in 0..Op::ALL.len() {
            ops_total.issued[i] += ops.issued[i];
            ops_total.acked[i] += ops.acked[i];
            ops_total.refused[i] += ops.refused[i];
            ops_total.no_reply[i] += ops.no_reply[i];
            ops_total.latency[i]
                .add(&ops.latency[i])
                .expect("same bounds");
            all_ack.add(&ops.latency[i]).expect("same bounds");
        }
        for (code, n) in ops.refused_by_code {
            *ops_total.refused_by_code.entry(code).or_default() += n;
        }
        ops_total.raced_delete += ops.raced_delete;
        ops_total.no_seq += ops.no_seq;
        ops_total.read_behind += ops.read_behind;
    }
    let mut log_seqs = 0;
    let mut mismatch = ops_total.no_seq;
    for (r, mut seqs) in acked_seqs.into_iter().enumerate() {
        let base = if bases[r] == i64::MAX { 0 } else { bases[r] };
        seqs.push(ends[r]);
        log_seqs += (ends[r] - base).max(0) as u64;
        mismatch += log_mismatch(seqs, base, ends[r]);
    }
    let secs = args.duration.as_secs_f64().max(0.001);
    let sum = |a: &[u64; 5]| a.iter().sum::<u64>();
    let ops_acked = sum(&ops_total.acked);
    Ok(Summary {
        scenario: "mix",
        gateways: args.cluster.gateways.len(),
        rooms: rooms.len(),
        members_per_room: args.members,
        active_per_room: active,
        rate_per_room: args.rate,
        mix: args.mix.describe(),
        duration_s: secs,
        ops_issued: sum(&ops_total.issued),
        ops_acked,
        ops_per_s: ops_acked as f64 / secs,
        ops: Op::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| ops_total.issued[*i] > 0)
            .map(|(i, op)| {
                let line = OpSummary {
                    issued: ops_total.issued[i],
                    acked: ops_total.acked[i],
                    acked_per_s: ops_total.acked[i] as f64 / secs,
                    refused: ops_total.refused[i],
                    no_reply: ops_total.no_reply[i],
                    ack: Latency::from_micros(&ops_total.latency[i]),
                };
                (op.name(), line)
            })
            .collect(),
        ack_all: Latency::from_micros(&all_ack),
        refused: sum(&ops_total.refused),
        refused_by_code: ops_total.refused_by_code,
        raced_delete: ops_total.raced_delete,
        no_reply: sum(&ops_total.no_reply),
        log_seqs,
        log_mismatch: mismatch,
        read_behind: ops_total.read_behind,
        delivered,
        deliveries_per_s: delivered as f64 / secs,
        delivered_by_kind: KINDS.iter().copied().zip(by_kind).collect(),
        receipts,
        lost,
        duplicates,
        out_of_order,
        missed_end,
        members_failed,
        send_to_delivery: Latency::from_micros(&send_lat),
        edit_to_delivery: Latency::from_micros(&edit_lat),
        generator_cpu_percent: cpu_percent(cpu, start.elapsed()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_parses_picks_by_share_and_adds_up_to_100() {
        let mix: Mix = "send=70,react=15,read=10,edit=5".parse().unwrap();
        assert_eq!(mix.pick(0), Op::Send);
        assert_eq!(mix.pick(69), Op::Send);
        assert_eq!(mix.pick(70), Op::React);
        assert_eq!(mix.pick(85), Op::Read);
        assert_eq!(mix.pick(95), Op::Edit);
        assert_eq!(mix.pick(99), Op::Edit);
        assert!(!mix.deletes());
        assert_eq!(mix.describe(), "send=70,react=15,read=10,edit=5");
        assert!("send=70,react=15".parse::<Mix>().is_err());
        assert!("send=90,shout=10".parse::<Mix>().is_err());
        let with_deletes: Mix = "send=60,react=20,edit=10,delete=10".parse().unwrap();
        assert!(with_deletes.deletes());
        assert_eq!(with_deletes.pick(95), Op::Delete);
    }

    #[test]
    fn the_log_must_be_filled_by_acked_seqs_exactly_once() {
        assert_eq!(log_mismatch(vec![3, 1, 2, 4], 0, 4), 0);
        assert_eq!(log_mismatch(vec![5, 6, 7], 4, 7), 0);
        // 2 missing; 3 twice; 9 past the end; 5 never acked.
        assert_eq!(log_mismatch(vec![1, 3, 3, 4, 9], 0, 5), 4);
        assert_eq!(log_mismatch(vec![], 0, 2), 2);
        assert_eq!(log_mismatch(vec![0, 1], 0, 1), 1);
    }

    #[test]
    fn change_events_decode_with_escaped_strings() {
        let t = r#"{"type":"message_edited","room":"r","id":"m","seq":12,"body":"1|a\"b","by":{"id":"u","name":"ada"}}"#;
        let f: Incoming = serde_json::from_str(t).unwrap();
        assert_eq!((f.kind.as_ref(), f.seq), ("message_edited", Some(12)));
        assert_eq!(f.body.as_deref(), Some("1|a\"b"));
        let t =
            r#"{"type":"reply","ref":"7","ok":false,"error":{"code":"not_found","message":"no"}}"#;
        let f: Incoming = serde_json::from_str(t).unwrap();
        assert_eq!(f.error.unwrap().code, "not_found");
        let t = r#"{"type":"reply","ref":"8","ok":true,"data":{"id":"m","seq":14,"count":3}}"#;
        let f: Incoming = serde_json::from_str(t).unwrap();
        assert_eq!(f.data.unwrap().seq, Some(14));
    }
}
