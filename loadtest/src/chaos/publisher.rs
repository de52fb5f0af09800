//! A chaos publisher: one room, messages created at a steady rate whatever
//! happens, each sent with its `client_id` until acked.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::{Ctx, END, Rng, Route};
use crate::client::{Ws, close, connect, now_us};
use crate::room_fanout::histogram;

/// A connect that takes longer has failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A send not answered within this is sent again (same `client_id`).
const RESEND_AFTER: Duration = Duration::from_secs(10);
/// Sends waiting for their answer, at most (the gateway pipelines 32).
const IN_FLIGHT: usize = 64;

/// Who a publisher is.
pub(crate) struct Spec {
    pub(crate) room: usize,
    pub(crate) token: String,
    /// Its first gateway, and how it comes back (see [`Route`]).
    pub(crate) home: usize,
    pub(crate) sticky: bool,
    /// Messages per second.
    pub(crate) rate: f64,
    /// After the stop: how long to keep trying to get every ack.
    pub(crate) settle: Duration,
    pub(crate) seed: u64,
}

/// What a publisher did.
pub(crate) struct Outcome {
    pub(crate) room: usize,
    /// Messages created (numbered 1..=created; the end marker is created + 1).
    pub(crate) created: u64,
    /// The seq each message was acked with, by number (index 0 unused).
    pub(crate) acked: Vec<Option<i64>>,
    /// The end marker's seq, once acked.
    pub(crate) end_seq: Option<i64>,
    pub(crate) sends: u64,
    pub(crate) resends: u64,
    pub(crate) repeat_acks: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) reconnects: u64,
    pub(crate) ack_latency: Histogram<u64>,
}

/// A message not acked yet.
struct Pending {
    body: String,
    /// When the attempt in flight was sent (`None`: none is).
    sent_at: Option<Instant>,
    /// Not before this (after an error reply).
    retry_at: Option<Instant>,
    attempts: u32,
    /// Unix µs of the first attempt.
    first_us: Option<i64>,
}

impl Pending {
    fn new(body: String) -> Pending {
        Pending {
            body,
            sent_at: None,
            retry_at: None,
            attempts: 0,
            first_us: None,
        }
    }
}

pub(crate) async fn run(spec: Spec, ctx: Arc<Ctx>, stop: watch::Receiver<bool>) -> Outcome {
    let room = ctx.rooms[spec.room].clone();
    let name = format!("r{}/publisher", spec.room);
    let mut out = Outcome {
        room: spec.room,
        created: 0,
        acked: vec![None],
        end_seq: None,
        sends: 0,
        resends: 0,
        repeat_acks: 0,
        errors: BTreeMap::new(),
        reconnects: 0,
        ack_latency: histogram(),
    };
    let mut rng = Rng::new(spec.seed);
    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    // Request ref -> message number, for the connection in use.
    let mut refs: HashMap<String, u64> = HashMap::new();
    let mut next_ref = 0u64;
    let mut ws: Option<Ws> = None;
    let mut route = Route::new(spec.home, ctx.gateways.len(), spec.sticky);
    let mut connect_at = Instant::now();
    let started = Instant::now();
    let mut stopped_at: Option<Instant> = None;
    let mut end: Option<u64> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = Instant::now();
        if stopped_at.is_none() && *stop.borrow() {
            stopped_at = Some(now);
        }
        match (stopped_at, end) {
            (None, _) => {
                // The steady rate: every message due by now exists, connected or not.
                let due = (started.elapsed().as_secs_f64() * spec.rate) as u64;
                while out.created < due {
                    out.created += 1;
                    out.acked.push(None);
                    pending.insert(out.created, Pending::new(ctx.body(out.created)));
                }
            }
            (Some(_), None) if pending.is_empty() => {
                let k = out.created + 1;
                out.acked.push(None);
                pending.insert(k, Pending::new(END.to_owned()));
                end = Some(k);
            }
            _ => {}
        }
        if let Some(k) = end
            && out.acked[k as usize].is_some()
        {
            out.end_seq = out.acked[k as usize];
            break;
        }
        if let Some(at) = stopped_at
            && at.elapsed() > spec.settle
        {
            for k in pending.keys() {
                ctx.violation(
                    "unacked",
                    spec.room,
                    &name,
                    None,
                    format!(
                        "message {k}{} never acked within the settle time",
                        if Some(*k) == end { " (end marker)" } else { "" }
                    ),
                );
            }
            break;
        }
        if ws.is_none() && now >= connect_at {
            let url = &ctx.gateways[route.gateway()];
            match tokio::time::timeout(CONNECT_TIMEOUT, connect(url, &spec.token)).await {
                Ok(Ok(w)) => {
                    ws = Some(w);
                    route.failures = 0;
                    refs.clear();
                    for p in pending.values_mut() {
                        p.sent_at = None;
                    }
                }
                _ => {
                    route.failed();
                    connect_at = Instant::now() + rng.backoff(route.failures);
                }
            }
        }
        if let Some(w) = ws.as_mut() {
            // (Re)send what is due, oldest first.
            let now = Instant::now();
            let in_flight = pending
                .values()
                .filter(|p| p.sent_at.is_some_and(|s| now - s < RESEND_AFTER))
                .count();
            let mut budget = IN_FLIGHT.saturating_sub(in_flight);
            let mut broken = false;
            for (k, p) in pending.iter_mut() {
                if budget == 0 {
                    break;
                }
                let due = match p.sent_at {
                    None => p.retry_at.is_none_or(|r| r <= now),
                    Some(s) => now - s >= RESEND_AFTER,
                };
                if !due {
                    continue;
                }
                next_ref += 1;
                let reference = format!("s{next_ref}");
                let frame = json!({
                    "type": "send", "ref": reference, "room": room, "body": p.body,
                    "client_id": format!("{}-r{}-{k}", ctx.run, spec.room),
                });
                if w.send(WsMessage::text(frame.to_string())).await.is_err() {
                    broken = true;
                    break;
                }
                out.sends += 1;
                out.resends += u64::from(p.attempts > 0);
                p.attempts += 1;
                p.sent_at = Some(now);
                p.retry_at = None;
                p.first_us.get_or_insert_with(now_us);
                refs.insert(reference, *k);
                budget -= 1;
            }
            if broken {
                ws = None;
                out.reconnects += 1;
                route.lost();
                connect_at = Instant::now() + rng.backoff(0);
                continue;
            }
        }
        let msg = match ws.as_mut() {
            Some(w) => tokio::select! {
                m = w.next() => Some(m),
                _ = tick.tick() => None,
            },
            None => {
                tick.tick().await;
                None
            }
        };
        match msg {
            None
            | Some(Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Binary(_)))) => {}
            Some(Some(Ok(WsMessage::Text(t)))) => {
                answered(&t, &mut out, &mut pending, &mut refs, &ctx, &name, end);
            }
            Some(_) => {
                // Closed or broken: whatever was in flight is sent again.
                ws = None;
                out.reconnects += 1;
                route.lost();
                connect_at = Instant::now() + rng.backoff(0);
            }
        }
    }
    if let Some(w) = ws {
        tokio::spawn(close(w));
    }
    out
}

/// Applies a reply: an ack (checked against earlier acks of the same
/// message) or an error (retried unless it is final).
fn answered(
    text: &str,
    out: &mut Outcome,
    pending: &mut BTreeMap<u64, Pending>,
    refs: &mut HashMap<String, u64>,
    ctx: &Ctx,
    name: &str,
    end: Option<u64>,
) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return;
    };
    if v["type"] != "reply" {
        return;
    }
    let Some(k) = v["ref"].as_str().and_then(|r| refs.remove(r)) else {
        return;
    };
    if v["ok"] == true {
        let Some(seq) = v["data"]["seq"].as_i64() else {
            return;
        };
        match out.acked[k as usize] {
            Some(first) if first != seq => ctx.violation(
                "double_ack",
                out.room,
                name,
                None,
                format!("message {k} acked with seq {first}, then with seq {seq}"),
            ),
            Some(_) => out.repeat_acks += 1,
            None => {
                out.acked[k as usize] = Some(seq);
                if let Some(first) = pending.get(&k).and_then(|p| p.first_us) {
                    out.ack_latency
                        .saturating_record((now_us() - first).max(1) as u64);
                }
            }
        }
        pending.remove(&k);
        return;
    }
    let code = v["error"]["code"].as_str().unwrap_or("?").to_owned();
    *out.errors.entry(code.clone()).or_default() += 1;
    let Some(p) = pending.get_mut(&k) else {
        return;
    };
    if matches!(code.as_str(), "unavailable" | "internal" | "rate_limited") {
        p.sent_at = None;
        let wait = Duration::from_millis(100 << p.attempts.min(4));
        p.retry_at = Some(Instant::now() + wait);
    } else {
        ctx.violation(
            "refused",
            out.room,
            name,
            None,
            format!(
                "message {k}{} refused: {}",
                if Some(k) == end { " (end marker)" } else { "" },
                v["error"]
            ),
        );
        pending.remove(&k);
    }
}
