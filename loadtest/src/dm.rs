//! `dm`: `pairs` senders each send `count` direct messages, `rate` per
//! second (open loop, replies read in the same task), to their own
//! recipient on another gateway. The first half of the recipients is online
//! before anything is sent; the others connect only once every DM was
//! answered, and must get all of them from their offline queue right after
//! `welcome`. Every recipient acks what it receives. Reports send-to-receipt
//! latency for the online half, how long the offline half took to drain its
//! queue, and missing, repeated and refused DMs, wrong `delivered` flags and
//! acked DMs still queued; any of them fails the run. Mirrors
//! `loadtest/k6/dm.js`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt, TryStreamExt, stream};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::client::{
    Cluster, Users, Ws, close, connect, create_room, now_us, request, sent_at, timed_body,
};
use crate::report::{Latency, cpu_percent, own_cpu_seconds};
use crate::room_fanout::histogram;

/// `telepath-load dm`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    cluster: Cluster,
    /// Sender-recipient pairs; the first half of the recipients is online from the start.
    #[arg(long, default_value_t = 50)]
    pairs: usize,
    /// DMs each sender sends (the offline queue holds 1000 per recipient by default).
    #[arg(long, default_value_t = 20)]
    count: u32,
    /// DMs per second each sender sends.
    #[arg(long, default_value_t = 10)]
    rate: u32,
    /// DM body size in bytes.
    #[arg(long, default_value_t = 100)]
    body_bytes: usize,
    /// How long a recipient waits for its DMs: after the last send (online)
    /// or after its `welcome` (offline).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    wait: Duration,
    /// Connections opened at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
}

/// What `dm` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    scenario: &'static str,
    gateways: usize,
    pairs: usize,
    online_recipients: usize,
    offline_recipients: usize,
    count_per_sender: u32,
    rate_per_sender: u32,
    /// From the first send to the last reply.
    send_s: f64,
    sent: u64,
    accepted: u64,
    accepted_per_s: f64,
    /// Sends answered with an error, or not answered within 30 s.
    refused: u64,
    /// Accepted DMs whose `delivered` was not whether the recipient was online.
    wrong_delivered_flag: u64,
    /// Accepted DMs that reached their recipient.
    received: u64,
    /// Accepted DMs their recipient never got.
    missing: u64,
    /// DMs a recipient got again on the same connection.
    repeated: u64,
    /// Received and acked (the gateway answered a request sent after the
    /// acks), and still in the recipient's offline queue (`GET
    /// /dms/pending`) 5 s after the last recipient left.
    still_queued: u64,
    /// From the send to the sender's reply (stored, queued and published).
    send_to_reply: Latency,
    /// From the send to the online recipient's receipt.
    send_to_receipt: Latency,
    /// From an offline recipient's `welcome` to the last DM of its queue.
    offline_drain: Latency,
    /// From the first offline recipient's connect to the last one drained
    /// (null when one never got everything).
    offline_all_drained_s: Option<f64>,
    generator_cpu_percent: f64,
}

impl Summary {
    /// Why the run failed, if it did.
    pub(crate) fn failure(&self) -> Option<String> {
        let counts = [
            (self.missing, "missing"),
            (self.repeated, "repeated"),
            (self.refused, "refused"),
            (self.wrong_delivered_flag, "with a wrong delivered flag"),
            (self.still_queued, "acked but still queued"),
        ];
        let bad: Vec<String> = counts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        (!bad.is_empty()).then(|| format!("DMs {}", bad.join(", ")))
    }
}

/// The fields of a `reply` or `dm` frame this scenario reads.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(rename = "ref")]
    reference: Option<&'a str>,
    ok: Option<bool>,
    data: Option<Stored>,
    id: Option<&'a str>,
    from: Option<Named<'a>>,
    body: Option<&'a str>,
}

/// A `dm` reply's data.
#[derive(Deserialize)]
struct Stored {
    id: Option<String>,
    delivered: Option<bool>,
}

#[derive(Deserialize)]
struct Named<'a> {
    name: &'a str,
}

/// How long a sender waits for replies after its last send.
const REPLY_WAIT: Duration = Duration::from_secs(30);

/// What one sender's sends came to.
struct Sent {
    sent: u64,
    accepted: HashSet<String>,
    refused: u64,
    wrong_flag: u64,
    reply_latency: Histogram<u64>,
}

/// Sends `count` DMs to `to` at `rate`, reading the replies between sends;
/// each accepted DM's `delivered` must be `online`.
async fn sender(
    mut ws: Ws,
    to: String,
    client_ids: String,
    online: bool,
    args: Arc<Args>,
) -> anyhow::Result<Sent> {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / args.rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut out = Sent {
        sent: 0,
        accepted: HashSet::new(),
        refused: 0,
        wrong_flag: 0,
        reply_latency: histogram(),
    };
    // Request ref -> send time.
    let mut pending: HashMap<u64, i64> = HashMap::new();
    let mut last_send = tokio::time::Instant::now();
    loop {
        let all_sent = out.sent >= u64::from(args.count);
        if all_sent && pending.is_empty() {
            break;
        }
        tokio::select! {
            _ = tick.tick(), if !all_sent => {
                out.sent += 1;
                pending.insert(out.sent, now_us());
                let dm = json!({
                    "type": "dm", "ref": out.sent.to_string(), "to": to,
                    "body": timed_body(args.body_bytes),
                    "client_id": format!("{client_ids}-{}", out.sent),
                });
                ws.send(WsMessage::text(dm.to_string())).await?;
                last_send = tokio::time::Instant::now();
            }
            msg = tokio::time::timeout_at(last_send + REPLY_WAIT, ws.next()) => {
                let Ok(msg) = msg else { break };
                let WsMessage::Text(t) = msg.context("closed while sending")?? else { continue };
                let Ok(f) = serde_json::from_str::<Incoming>(&t) else { continue };
                let at = f.reference.and_then(|r| r.parse().ok()).and_then(|r| pending.remove(&r));
                let Some(at) = at.filter(|_| f.kind == "reply") else { continue };
                out.reply_latency.saturating_record((now_us() - at).max(1) as u64);
                match f.data.filter(|_| f.ok == Some(true)) {
                    Some(Stored { id: Some(id), delivered }) => {
                        out.wrong_flag += u64::from(delivered != Some(online));
                        out.accepted.insert(id);
                    }
                    _ => {
                        if out.refused == 0 {
                            eprintln!("a DM to {to} was refused: {t}");
                        }
                        out.refused += 1;
                    }
                }
            }
        }
    }
    // Never answered.
    out.refused += pending.len() as u64;
    close(ws).await;
    Ok(out)
}

/// What one recipient got.
struct Got {
    ids: HashSet<String>,
    repeated: u64,
    /// Send to receipt of each DM.
    latency: Histogram<u64>,
    /// When reading began (for the offline half: right after `welcome`).
    began: Instant,
    /// When the `count`th distinct DM came, if it did.
    all_at: Option<Instant>,
}

/// Reads the DMs from `from` on `ws`, acking each, until `count` distinct
/// ones came or `deadline` passed; then makes sure the gateway took the
/// acks, and closes.
async fn recipient(
    mut ws: Ws,
    from: String,
    count: u32,
    deadline: tokio::time::Instant,
) -> anyhow::Result<Got> {
    let mut got = Got {
        ids: HashSet::new(),
        repeated: 0,
        latency: histogram(),
        began: Instant::now(),
        all_at: None,
    };
    while got.ids.len() < count as usize {
        let Ok(msg) = tokio::time::timeout_at(deadline, ws.next()).await else {
            break;
        };
        let Some(msg) = msg else {
            eprintln!("{from}'s recipient was disconnected");
            break;
        };
        let WsMessage::Text(t) = msg? else { continue };
        let Ok(f) = serde_json::from_str::<Incoming>(&t) else {
            continue;
        };
        let (Some(id), Some(body)) = (f.id, f.body) else {
            continue;
        };
        if f.kind != "dm" || f.from.map(|n| n.name) != Some(from.as_str()) {
            continue;
        }
        ws.send(WsMessage::text(
            json!({"type": "ack", "dm": id}).to_string(),
        ))
        .await?;
        if !got.ids.insert(id.to_owned()) {
            got.repeated += 1;
        } else if let Some(sent) = sent_at(body) {
            got.latency
                .saturating_record((now_us() - sent).max(1) as u64);
        }
    }
    if got.ids.len() >= count as usize {
        got.all_at = Some(Instant::now());
    }
    // A connection's frames are handled in order: the reply to a request
    // after the acks means the gateway has taken every one of them (it
    // writes them to the api on its own schedule, connected or not).
    let acked = request(&mut ws, json!({"type": "ping"}), "acked", |_| {});
    match tokio::time::timeout(REPLY_WAIT, acked).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => eprintln!("{from}'s recipient: no reply after its acks: {e:#}"),
        Err(_) => eprintln!("{from}'s recipient: no reply after its acks in time"),
    }
    close(ws).await;
    Ok(got)
}

/// Connects each of `names` to gateway `i + shift` (`concurrency` at a
/// time) and pings it: a session answers only once it is registered, so
/// DMs sent after this reach it and count as delivered.
async fn connect_all(
    args: &Args,
    users: &Users,
    names: &[String],
    shift: usize,
) -> anyhow::Result<Vec<Ws>> {
    stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let (gateway, token) = (args.cluster.gateway(i + shift), users.token(name));
            async move {
                let mut ws = connect(&gateway, &token).await?;
                request(&mut ws, json!({"type": "ping"}), "ready", |_| {}).await?;
                anyhow::Ok(ws)
            }
        })
        .buffered(args.connect_concurrency.max(1))
        .try_collect()
        .await
}

/// How many of the DMs each recipient acked are still in its offline
/// queue, once none is or after 5 s.
async fn still_queued(
    http: &reqwest::Client,
    api: &str,
    acked: &[(&String, &HashSet<String>)],
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<u64> = stream::iter(acked)
            .map(|(token, ids)| async move {
                let pending: Value = http
                    .get(format!("{api}/dms/pending"))
                    .bearer_auth(token)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let queued = pending["messages"].as_array().map_or(0, |m| {
                    m.iter()
                        .filter(|dm| dm["id"].as_str().is_some_and(|id| ids.contains(id)))
                        .count()
                });
                anyhow::Ok(queued as u64)
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        let left = left.iter().sum();
        if left == 0 || Instant::now() >= deadline {
            return Ok(left);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Summary> {
    let args = Arc::new(args);
    let api = args.cluster.api();
    let http = reqwest::Client::new();
    let users = Users::new(&args.cluster.secret);
    let run = format!("d{}", now_us() % 1_000_000_000);
    let senders: Vec<String> = (0..args.pairs).map(|i| format!("{run}-s{i}")).collect();
    let recipients: Vec<String> = (0..args.pairs).map(|i| format!("{run}-r{i}")).collect();
    let tokens: Vec<String> = recipients.iter().map(|r| users.token(r)).collect();
    let online = args.pairs.div_ceil(2);

    // A signed token alone creates no user, and DMs must name existing
    // users: every recipient joins a room first (the offline half has
    // never connected when the DMs are sent).
    let owner = users.token(&format!("{run}-owner"));
    let lobby = create_room(&http, &api, &owner, &format!("{run}-lobby")).await?;
    stream::iter(&tokens)
        .map(|token| {
            let req = http
                .post(format!("{api}/rooms/{lobby}/join"))
                .bearer_auth(token);
            async move { anyhow::Ok(req.send().await?.error_for_status().map(|_| ())?) }
        })
        .buffer_unordered(args.connect_concurrency.max(1))
        .try_collect::<()>()
        .await
        .context("recipients joining a room (so that they exist)")?;

    // Recipient i is on gateway i, its sender on the next one.
    let online_ws = connect_all(&args, &users, &recipients[..online], 0).await?;
    let sender_ws = connect_all(&args, &users, &senders, 1).await?;

    let cpu_before = own_cpu_seconds();
    let started = Instant::now();
    let send_time = Duration::from_secs(u64::from(args.count)) / args.rate.max(1);
    let online_deadline = tokio::time::Instant::now() + send_time + args.wait;
    let mut receiving: Vec<_> = online_ws
        .into_iter()
        .zip(&senders)
        .map(|(ws, from)| tokio::spawn(recipient(ws, from.clone(), args.count, online_deadline)))
        .collect();
    let sending: Vec<_> = sender_ws
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            let client_ids = format!("{run}-{i}");
            tokio::spawn(sender(
                ws,
                recipients[i].clone(),
                client_ids,
                i < online,
                args.clone(),
            ))
        })
        .collect();
    let mut sent = Vec::with_capacity(args.pairs);
    for s in sending {
        sent.push(s.await??);
    }
    let send_s = started.elapsed().as_secs_f64();

    // Every DM is answered: now the offline half connects.
    let offline_started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(args.connect_concurrency.max(1)));
    for i in online..args.pairs {
        let (gateway, token, from) = (
            args.cluster.gateway(i),
            tokens[i].clone(),
            senders[i].clone(),
        );
        let (gate, count, wait) = (gate.clone(), args.count, args.wait);
        receiving.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let ws = connect(&gateway, &token).await?;
            recipient(ws, from, count, tokio::time::Instant::now() + wait).await
        }));
    }
    let mut got = Vec::with_capacity(args.pairs);
    for r in receiving {
        got.push(r.await??);
    }
    let wall = started.elapsed();
    let cpu = own_cpu_seconds() - cpu_before;
    let acked: Vec<(&String, &HashSet<String>)> =
        tokens.iter().zip(got.iter().map(|g| &g.ids)).collect();
    let still_queued = still_queued(&http, &api, &acked).await?;

    let (mut reply_latency, mut receipt, mut drain) = (histogram(), histogram(), histogram());
    let (mut received, mut missing, mut repeated, mut all_drained) =
        (0, 0, 0, Some(offline_started));
    for (i, (s, g)) in sent.iter().zip(&got).enumerate() {
        reply_latency.add(&s.reply_latency).expect("same bounds");
        let reached = s.accepted.intersection(&g.ids).count() as u64;
        received += reached;
        missing += s.accepted.len() as u64 - reached;
        repeated += g.repeated;
        if i < online {
            receipt.add(&g.latency).expect("same bounds");
        } else {
            if let Some(at) = g.all_at {
                drain.saturating_record((at - g.began).as_micros().max(1) as u64);
            }
            all_drained = all_drained.zip(g.all_at).map(|(a, b)| a.max(b));
        }
    }
    let accepted = sent.iter().map(|s| s.accepted.len() as u64).sum::<u64>();
    Ok(Summary {
        scenario: "dm",
        gateways: args.cluster.gateways.len(),
        pairs: args.pairs,
        online_recipients: online,
        offline_recipients: args.pairs - online,
        count_per_sender: args.count,
        rate_per_sender: args.rate,
        send_s,
        sent: sent.iter().map(|s| s.sent).sum(),
        accepted,
        accepted_per_s: accepted as f64 / send_s,
        refused: sent.iter().map(|s| s.refused).sum(),
        wrong_delivered_flag: sent.iter().map(|s| s.wrong_flag).sum(),
        received,
        missing,
        repeated,
        still_queued,
        send_to_reply: Latency::from_micros(&reply_latency),
        send_to_receipt: Latency::from_micros(&receipt),
        offline_drain: Latency::from_micros(&drain),
        offline_all_drained_s: all_drained.map(|at| (at - offline_started).as_secs_f64()),
        generator_cpu_percent: cpu_percent(cpu, wall),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dm_events_and_dm_replies_decode_to_what_the_scenario_checks() {
        let dm = r#"{"type":"dm","id":"0193","from":{"id":"u1","name":"d1-s0"},"to":"u2","body":"1700000000000000|xx","ts":"2026-12-02T07:00:00.123Z"}"#;
        let f: Incoming = serde_json::from_str(dm).unwrap();
        assert_eq!(
            (
                f.kind,
                f.id,
                f.from.map(|n| n.name),
                f.body.and_then(sent_at)
            ),
            (
                "dm",
                Some("0193"),
                Some("d1-s0"),
                Some(1_700_000_000_000_000)
            )
        );
        let reply = r#"{"type":"reply","ref":"7","ok":true,"data":{"id":"0193","ts":"2026-12-02T07:00:00Z","delivered":false}}"#;
        let f: Incoming = serde_json::from_str(reply).unwrap();
        let data = f.data.unwrap();
        assert_eq!(
            (f.reference, data.id.as_deref(), data.delivered),
            (Some("7"), Some("0193"), Some(false))
        );
        let refused = r#"{"type":"reply","ref":"8","ok":false,"error":{"code":"rate_limited","message":"full"}}"#;
        let f: Incoming = serde_json::from_str(refused).unwrap();
        assert_eq!((f.ok, f.data.is_none()), (Some(false), true));
    }
}
