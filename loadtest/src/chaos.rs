//! `chaos`: delivery while faults are injected (`loadtest/chaos.sh` injects
//! them: gateways SIGKILLed, Redis stopped or restarted empty, the api
//! SIGKILLed, a gateway's Redis connections blackholed). `rooms` rooms of
//! `members` members each, spread over the gateways, and one publisher per
//! room sending at a steady rate until the script says stop.
//!
//! Clients behave as a careful SDK does:
//! - a member keeps, per room, the last seq it holds with nothing missing
//!   below it (`contiguous`); on any loss (connection closed or broken, a
//!   join refused or timed out, `recovered:false`, a seq that jumps) it
//!   reconnects with a jittered backoff (the same gateway first, then the
//!   next one) and joins with `since` = `contiguous`. A seq at or below
//!   `contiguous` is a repeat and is dropped (deduped by seq), one above
//!   `contiguous + 1` is a hole: the message is dropped and the member
//!   rejoins with `since`, as the SDK does when its gap fill fails;
//! - a publisher gives every message a `client_id` and sends it again (same
//!   `client_id`) after an error reply, a broken connection or 10 s
//!   without an answer, until it is acked, so a message is stored and
//!   acked once whatever happened to the first attempts.
//!
//! The server promises neither holes nor repeats on a connection, so every
//! hole and repeat a member sees is recorded (with when it happened and the
//! fault that preceded it, from the script's fault log). After the stop
//! every publisher sends an end marker once all its messages are acked; the
//! members read up to it (for at most `--settle`). Then each room's history
//! is read from the api (SQLite) and checked: every acked message is there
//! at the seq its ack named, each `client_id` once, no seq missing; every
//! member got every seq of its room up to the end marker, each with the
//! right message. The summary counts faults by kind, acked messages,
//! deliveries checked, holes, repeats, missing and wrong deliveries,
//! reconnects and `recovered:false` joins; any hole, repeat, loss or wrong
//! delivery fails the run.

mod check;
mod member;
mod publisher;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::client::{Cluster, Users, create_room, now_us};
use crate::report::{Latency, cpu_percent, own_cpu_seconds};
use crate::room_fanout::histogram;

/// `telepath-load chaos`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    cluster: Cluster,
    /// Rooms, each with its own publisher.
    #[arg(long, default_value_t = 8)]
    rooms: usize,
    /// Members per room, dealt round robin over the gateways.
    #[arg(long, default_value_t = 20)]
    members: usize,
    /// Messages per second over all busy rooms.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Of the rooms, how many are quiet: each hears `quiet_rate` msgs/s, so
    /// a message lost in it is not followed at once by one exposing the hole.
    #[arg(long, default_value_t = 0)]
    quiet_rooms: usize,
    /// Messages per second in each quiet room.
    #[arg(long, default_value_t = 0.1)]
    quiet_rate: f64,
    /// Publishing stops when this file appears (the fault loop is done).
    #[arg(long)]
    stop_file: Option<PathBuf>,
    /// Publishing stops after this long at the latest.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    max_duration: Duration,
    /// Created once every member has joined and publishing has started.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// The script's fault log: lines `<unix ms> <start|healed|ready|unready> <kind> <target>`.
    #[arg(long)]
    faults: Option<PathBuf>,
    /// After the stop: how long publishers may take to get their last acks,
    /// and members to read up to the end marker.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    body_bytes: usize,
    /// Connections opened at once while setting up.
    #[arg(long, default_value_t = 32)]
    connect_concurrency: usize,
    /// Violations listed one by one in the summary (the counts cover all).
    #[arg(long, default_value_t = 40)]
    max_listed: usize,
}

/// Where a violation happened and what preceded it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Violation {
    /// `gap`, `duplicate`, `missing`, `wrong_content`, `lost_ack`,
    /// `double_ack`, `stored_twice`, `history_hole`, `refused`, `unacked`.
    pub(crate) kind: &'static str,
    /// Unix ms.
    #[serde(skip)]
    pub(crate) at_ms: i64,
    /// Seconds since publishing started.
    pub(crate) t_s: f64,
    /// `r3`, and its id.
    pub(crate) room: String,
    pub(crate) room_id: String,
    /// `r3/m7` (members) or `r3/publisher`.
    pub(crate) client: String,
    /// The gateway the client was connected to, if any.
    pub(crate) gateway: Option<String>,
    pub(crate) detail: String,
    /// The last fault started before it.
    pub(crate) after_fault: Option<check::FaultRef>,
}

/// What every task of a run shares.
pub(crate) struct Ctx {
    pub(crate) gateways: Vec<String>,
    pub(crate) rooms: Vec<String>,
    pub(crate) run: String,
    pub(crate) body_bytes: usize,
    /// When publishing started, Unix ms (0 before).
    t0_ms: AtomicI64,
    violations: Mutex<Vec<Violation>>,
}

impl Ctx {
    /// Records a violation seen now.
    pub(crate) fn violation(
        &self,
        kind: &'static str,
        room: usize,
        client: &str,
        gateway: Option<&str>,
        detail: String,
    ) {
        self.violation_at(kind, now_ms(), room, client, gateway, detail);
    }

    /// Records a violation that happened at `at_ms`.
    pub(crate) fn violation_at(
        &self,
        kind: &'static str,
        at_ms: i64,
        room: usize,
        client: &str,
        gateway: Option<&str>,
        detail: String,
    ) {
        let t0 = self.t0_ms.load(Ordering::Relaxed);
        let v = Violation {
            kind,
            at_ms,
            t_s: if t0 == 0 {
                0.0
            } else {
                (at_ms - t0) as f64 / 1000.0
            },
            room: format!("r{room}"),
            room_id: self.rooms[room].clone(),
            client: client.to_owned(),
            gateway: gateway.map(str::to_owned),
            detail,
            after_fault: None,
        };
        self.violations.lock().expect("not poisoned").push(v);
    }

    /// The body of message `k` (1, 2, ...) of a room: send time, number, padding.
    pub(crate) fn body(&self, k: u64) -> String {
        let mut body = format!("{}|{k}|", now_us());
        body.extend(std::iter::repeat_n(
            'x',
            self.body_bytes.saturating_sub(body.len()),
        ));
        body
    }
}

/// The body of the end marker each publisher sends last.
pub(crate) const END: &str = "end";

/// The message number a body carries (0 for the end marker, `u32::MAX` for
/// a body this run did not write).
pub(crate) fn number(body: &str) -> u32 {
    if body == END {
        return 0;
    }
    body.split('|')
        .nth(1)
        .and_then(|k| k.parse().ok())
        .unwrap_or(u32::MAX)
}

/// The current time in Unix milliseconds (what the fault log uses).
pub(crate) fn now_ms() -> i64 {
    now_us() / 1000
}

/// A small xorshift generator for backoff jitter (no crate needed for that).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A reconnect delay after `failures` failures in a row: 100 ms doubling
    /// up to 3 s, times a jitter in [0.5, 1.5).
    pub(crate) fn backoff(&mut self, failures: u32) -> Duration {
        let base = (100u64 << failures.min(5)).min(3000);
        Duration::from_millis(base).mul_f64(0.5 + self.unit())
    }
}

/// Failed connects in a row after which a sticky client gives up on its
/// home gateway (a restarted gateway is back within about a second; the
/// backoff makes these five tries last about three).
const STICKY_TRIES: u32 = 5;

/// Which gateway a client connects to. After losing a connection away from
/// its home gateway it goes home first. After losing one at home, a sticky
/// client tries home again, up to [`STICKY_TRIES`] failed connects, and any
/// other client moves to the next gateway at once (then on every failure).
/// So both ways back are exercised, and whatever is killed, both gateways
/// keep about half the clients: a fault aimed at either one hits clients.
pub(crate) struct Route {
    home: usize,
    current: usize,
    sticky: bool,
    gateways: usize,
    /// Failed connects (or joins) in a row: they drive the backoff.
    pub(crate) failures: u32,
}

impl Route {
    pub(crate) fn new(home: usize, gateways: usize, sticky: bool) -> Route {
        Route {
            home,
            current: home,
            sticky,
            gateways: gateways.max(1),
            failures: 0,
        }
    }

    /// The gateway to connect to now.
    pub(crate) fn gateway(&self) -> usize {
        self.current
    }

    /// The connection, which was up, is lost.
    pub(crate) fn lost(&mut self) {
        self.failures = 0;
        if self.current != self.home {
            self.current = self.home;
        } else if !self.sticky {
            self.current = (self.current + 1) % self.gateways;
        }
    }

    /// A connect (or join) failed.
    pub(crate) fn failed(&mut self) {
        self.failures += 1;
        if !self.sticky || self.failures >= STICKY_TRIES {
            self.current = (self.current + 1) % self.gateways;
        }
    }
}

/// What `chaos` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    scenario: &'static str,
    gateways: usize,
    rooms: usize,
    members_per_room: usize,
    rate: u32,
    quiet_rooms: usize,
    quiet_rate: f64,
    publishing_s: f64,
    /// Faults the script injected, by kind (from its log).
    faults: BTreeMap<String, u64>,
    faults_total: u64,
    /// Messages the publishers created (end markers not counted).
    messages_created: u64,
    /// Of those, acked (each once).
    messages_acked: u64,
    /// Room messages in SQLite (end markers included).
    messages_committed: u64,
    /// Committed messages whose ack the publisher never got (its give-up at the end).
    committed_unacked: u64,
    /// Send frames, first attempts and retries.
    sends: u64,
    resends: u64,
    send_errors: BTreeMap<String, u64>,
    /// Acks for a message acked before (a retry's answer), same seq.
    repeat_acks: u64,
    publisher_reconnects: u64,
    /// Seqs checked against SQLite, summed over members (each member: every
    /// seq of its room up to the end marker).
    deliveries_checked: u64,
    /// Of those, received in order (after deduping by seq).
    delivered: u64,
    /// Holes seen on a connection: a seq above the next one due.
    gaps: u64,
    /// Repeats seen: a seq at or below the last contiguous one.
    duplicates: u64,
    /// Seqs a member never got by the end.
    missing: u64,
    /// Deliveries whose message is not the one SQLite has at that seq.
    wrong_content: u64,
    /// Acked messages not in SQLite at the acked seq.
    lost_acked: u64,
    /// Messages acked with two different seqs.
    double_acked: u64,
    /// `client_id`s stored twice.
    stored_twice: u64,
    /// Seqs missing from SQLite itself.
    history_holes: u64,
    /// Messages refused for good, and messages still unacked at the end.
    refused: u64,
    unacked_at_end: u64,
    members_unfinished: u64,
    /// Member reconnects, all causes, and by cause.
    reconnects: u64,
    reconnects_by_cause: BTreeMap<String, u64>,
    connect_failures: u64,
    joins: u64,
    join_failures: BTreeMap<String, u64>,
    recovered_false: u64,
    /// Send to delivery at members, resumes and replays after faults included.
    send_to_delivery: Latency,
    /// First send to ack at publishers, retries through faults included.
    send_to_ack: Latency,
    /// Violations by the fault that preceded them (`#3 redis_restart -`).
    violations_by_fault: BTreeMap<String, BTreeMap<String, u64>>,
    violations_listed: Vec<Violation>,
    violations_total: u64,
    generator_cpu_percent: f64,
    ok: bool,
}

impl Summary {
    /// Why the run failed, if it did.
    pub(crate) fn failure(&self) -> Option<String> {
        (!self.ok).then(|| {
            format!(
                "chaos: {} gaps, {} duplicates, {} missing, {} wrong, {} lost acked, {} double acked, \
                 {} stored twice, {} history holes, {} refused, {} unacked",
                self.gaps,
                self.duplicates,
                self.missing,
                self.wrong_content,
                self.lost_acked,
                self.double_acked,
                self.stored_twice,
                self.history_holes,
                self.refused,
                self.unacked_at_end
            )
        })
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Summary> {
    let api = args.cluster.api();
    let http = reqwest::Client::new();
    let users = Users::new(&args.cluster.secret);
    let run = format!("c{}", now_us() % 1_000_000_000);
    // Each room is created by its publisher, who is then a participant and
    // can send from any connection without joining (so it receives nothing).
    let mut room_ids = Vec::new();
    let mut publisher_tokens = Vec::new();
    for r in 0..args.rooms.max(1) {
        let token = users.token(&format!("{run}-p{r}"));
        room_ids.push(create_room(&http, &api, &token, &format!("{run}-{r}")).await?);
        publisher_tokens.push(token);
    }
    let ctx = Arc::new(Ctx {
        gateways: args.cluster.gateways.clone(),
        rooms: room_ids.clone(),
        run: run.clone(),
        body_bytes: args.body_bytes,
        t0_ms: AtomicI64::new(0),
        violations: Mutex::new(Vec::new()),
    });

    let (give_up_tx, give_up) = watch::channel(false);
    let (joined_tx, mut joined_rx) = mpsc::unbounded_channel();
    let first_connects = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut members = Vec::new();
    for r in 0..room_ids.len() {
        for j in 0..args.members {
            let i = r * args.members + j;
            let spec = member::Spec {
                room: r,
                name: format!("r{r}/m{j}"),
                token: users.token(&format!("{run}-r{r}-m{j}")),
                home: i % ctx.gateways.len(),
                sticky: (i / 2).is_multiple_of(2),
                seed: now_us() as u64 ^ (i as u64) << 20,
            };
            members.push(tokio::spawn(member::run(
                spec,
                ctx.clone(),
                first_connects.clone(),
                joined_tx.clone(),
                give_up.clone(),
            )));
        }
    }
    let total = members.len();
    tokio::time::timeout(Duration::from_secs(120), async {
        for _ in 0..total {
            joined_rx.recv().await;
        }
    })
    .await
    .context("members did not all join within 120 s")?;
    eprintln!("chaos: {total} members joined {} rooms", room_ids.len());

    let (stop_tx, stop) = watch::channel(false);
    let cpu_before = own_cpu_seconds();
    let started = Instant::now();
    ctx.t0_ms.store(now_ms(), Ordering::Relaxed);
    let quiet = args.quiet_rooms.min(room_ids.len().saturating_sub(1));
    let busy_rate = f64::from(args.rate.max(1)) / (room_ids.len() - quiet) as f64;
    let publishers: Vec<_> = publisher_tokens
        .iter()
        .enumerate()
        .map(|(r, token)| {
            let spec = publisher::Spec {
                room: r,
                token: token.clone(),
                home: r % ctx.gateways.len(),
                sticky: (r / 2).is_multiple_of(2),
                // The last `quiet` rooms are the quiet ones.
                rate: if r + quiet >= room_ids.len() {
                    args.quiet_rate
                } else {
                    busy_rate
                },
                settle: args.settle,
                seed: now_us() as u64 ^ (r as u64) << 40,
            };
            tokio::spawn(publisher::run(spec, ctx.clone(), stop.clone()))
        })
        .collect();
    if let Some(path) = &args.ready_file {
        std::fs::write(path, format!("{}\n", ctx.t0_ms.load(Ordering::Relaxed)))?;
    }
    loop {
        let asked = args.stop_file.as_ref().is_some_and(|f| f.exists());
        if asked || started.elapsed() >= args.max_duration {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let publishing_s = started.elapsed().as_secs_f64();
    eprintln!("chaos: stop after {publishing_s:.1} s; waiting for the last acks and end markers");
    stop_tx.send_replace(true);
    let mut pubs = Vec::new();
    for p in publishers {
        pubs.push(p.await?);
    }
    // Members read up to the end marker for at most `settle` more.
    let settle = args.settle;
    tokio::spawn(async move {
        tokio::time::sleep(settle).await;
        give_up_tx.send_replace(true);
    });
    let mut outcomes = Vec::new();
    for m in members {
        outcomes.push(m.await?);
    }
    let cpu = own_cpu_seconds() - cpu_before;
    let wall = started.elapsed();

    let history = check::history(&http, &api, &publisher_tokens, &room_ids).await?;
    let faults = match &args.faults {
        Some(path) => check::read_faults(path)?,
        None => Vec::new(),
    };
    let verdict = check::judge(&ctx, &history, &pubs, &outcomes);
    let mut violations = std::mem::take(&mut *ctx.violations.lock().expect("not poisoned"));
    violations.sort_by_key(|v| v.at_ms);
    let t0 = ctx.t0_ms.load(Ordering::Relaxed);
    let mut violations_by_fault: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for v in &mut violations {
        v.after_fault = check::preceding(&faults, v.at_ms, t0);
        let key = v
            .after_fault
            .as_ref()
            .map_or_else(|| "before any fault".to_owned(), |f| f.label());
        *violations_by_fault
            .entry(key)
            .or_default()
            .entry(v.kind.to_owned())
            .or_default() += 1;
    }
    let count = |kind: &str| violations.iter().filter(|v| v.kind == kind).count() as u64;

    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for f in &faults {
        *by_kind.entry(f.kind.clone()).or_default() += 1;
    }
    let mut send_errors = BTreeMap::new();
    let mut ack_latency = histogram();
    let (mut created, mut sends, mut resends, mut repeat_acks, mut pub_reconnects) =
        (0, 0, 0, 0, 0);
    for p in &pubs {
        created += p.created;
        sends += p.sends;
        resends += p.resends;
        repeat_acks += p.repeat_acks;
        pub_reconnects += p.reconnects;
        ack_latency.add(&p.ack_latency).expect("same bounds");
        for (code, n) in &p.errors {
            *send_errors.entry(code.clone()).or_default() += n;
        }
    }
    let mut delivery_latency = histogram();
    let mut reconnects_by_cause: BTreeMap<String, u64> = BTreeMap::new();
    let mut join_failures: BTreeMap<String, u64> = BTreeMap::new();
    let (mut connect_failures, mut joins, mut recovered_false, mut unfinished) = (0, 0, 0, 0);
    for o in &outcomes {
        delivery_latency.add(&o.latency).expect("same bounds");
        for (cause, n) in &o.reconnects {
            *reconnects_by_cause.entry((*cause).to_owned()).or_default() += n;
        }
        for (code, n) in &o.join_failures {
            *join_failures.entry(code.clone()).or_default() += n;
        }
        connect_failures += o.connect_failures;
        joins += o.joins;
        recovered_false += o.unrecovered;
        unfinished += u64::from(!o.finished);
    }
    let summary = Summary {
        scenario: "chaos",
        gateways: ctx.gateways.len(),
        rooms: room_ids.len(),
        members_per_room: args.members,
        rate: args.rate,
        quiet_rooms: quiet,
        quiet_rate: args.quiet_rate,
        publishing_s,
        faults_total: faults.len() as u64,
        faults: by_kind,
        messages_created: created,
        messages_acked: verdict.acked,
        messages_committed: verdict.committed,
        committed_unacked: verdict.committed_unacked,
        sends,
        resends,
        send_errors,
        repeat_acks,
        publisher_reconnects: pub_reconnects,
        deliveries_checked: verdict.deliveries_checked,
        delivered: verdict.delivered,
        gaps: count("gap"),
        duplicates: count("duplicate"),
        missing: verdict.missing,
        wrong_content: verdict.wrong_content,
        lost_acked: count("lost_ack"),
        double_acked: count("double_ack"),
        stored_twice: count("stored_twice"),
        history_holes: count("history_hole"),
        refused: count("refused"),
        unacked_at_end: count("unacked"),
        members_unfinished: unfinished,
        reconnects: reconnects_by_cause.values().sum(),
        reconnects_by_cause,
        connect_failures,
        joins,
        join_failures,
        recovered_false,
        send_to_delivery: Latency::from_micros(&delivery_latency),
        send_to_ack: Latency::from_micros(&ack_latency),
        violations_by_fault,
        violations_total: violations.len() as u64,
        violations_listed: violations.into_iter().take(args.max_listed).collect(),
        generator_cpu_percent: cpu_percent(cpu, wall),
        ok: false,
    };
    let ok = summary.gaps == 0
        && summary.duplicates == 0
        && summary.missing == 0
        && summary.wrong_content == 0
        && summary.lost_acked == 0
        && summary.double_acked == 0
        && summary.stored_twice == 0
        && summary.history_holes == 0
        && summary.refused == 0
        && summary.unacked_at_end == 0;
    Ok(Summary { ok, ..summary })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_their_message_number() {
        let ctx = Ctx {
            gateways: vec![],
            rooms: vec![],
            run: "c1".into(),
            body_bytes: 100,
            t0_ms: AtomicI64::new(0),
            violations: Mutex::new(Vec::new()),
        };
        let body = ctx.body(42);
        assert_eq!(body.len(), 100);
        assert_eq!(number(&body), 42);
        assert_eq!(number(END), 0);
        assert_eq!(number("hello"), u32::MAX);
    }

    #[test]
    fn clients_go_home_after_a_loss_and_sticky_ones_wait_for_it() {
        let mut sticky = Route::new(0, 2, true);
        sticky.lost();
        assert_eq!(sticky.gateway(), 0, "home again");
        for _ in 1..STICKY_TRIES {
            sticky.failed();
            assert_eq!(sticky.gateway(), 0);
        }
        sticky.failed();
        assert_eq!(sticky.gateway(), 1, "gave up on home");
        assert_eq!(sticky.failures, STICKY_TRIES);
        sticky.lost();
        assert_eq!((sticky.gateway(), sticky.failures), (0, 0), "home first");

        let mut other = Route::new(1, 2, false);
        other.lost();
        assert_eq!(other.gateway(), 0, "the next gateway at once");
        other.failed();
        assert_eq!(other.gateway(), 1);
        other.failed();
        other.lost();
        assert_eq!(other.gateway(), 1, "home first");
    }

    #[test]
    fn backoff_grows_to_a_cap_with_jitter() {
        let mut rng = Rng::new(7);
        for failures in 0..10 {
            let d = rng.backoff(failures);
            let base = (100u64 << failures.min(5)).min(3000) as f64;
            let ms = d.as_secs_f64() * 1000.0;
            assert!(ms >= base * 0.5 && ms < base * 1.5, "{failures}: {ms}");
        }
    }
}
