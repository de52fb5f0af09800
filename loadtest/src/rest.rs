//! `rest`: what a chat client does over REST besides its WebSocket, as
//! `loadtest/k6/rest.js` drives it. Each iteration lists rooms (every tenth
//! of a user's also creates one), joins the shared room, reads its latest
//! history page, the page before it and one from the middle (`after`), its
//! participants, who is online and the user's pending DMs, while a writer
//! fills the room over WebSocket. Closed loop (`concurrency` users, one
//! iteration at a time each) or open loop (`rate` iterations per second
//! spread over those users, each at its time). Reports latency percentiles
//! per route kind and unexpected answers by status; any of those fails the
//! run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use reqwest::{RequestBuilder, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::{Cluster, Users, create_room, now_us};
use crate::proto::Proto;
use crate::report::{Latency, cpu_percent, own_cpu_seconds};
use crate::room_fanout::{histogram, member, publish};

/// `telepath-load rest`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    cluster: Cluster,
    /// Base URL of `GET /presence/online` when presence is not behind the
    /// api's origin (default: `--api`).
    #[arg(long)]
    presence: Option<String>,
    /// Users; without `--rate`, each runs one iteration at a time.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Iterations per second, open loop: each starts at its time, whether
    /// earlier ones finished or not, as the users' next one.
    #[arg(long)]
    rate: Option<u32>,
    /// How long to start iterations.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Messages per second the writer sends to the shared room (0: none).
    #[arg(long, default_value_t = 20)]
    write_rate: u32,
    /// History page size (`limit`).
    #[arg(long, default_value_t = 50)]
    page: u32,
}

/// The kinds of request an iteration makes.
#[derive(Debug, Clone, Copy)]
enum Route {
    ListRooms,
    CreateRoom,
    Join,
    History,
    HistoryBefore,
    HistoryAfter,
    Participants,
    PresenceOnline,
    PendingDms,
}

impl Route {
    const ALL: [Route; 9] = [
        Route::ListRooms,
        Route::CreateRoom,
        Route::Join,
        Route::History,
        Route::HistoryBefore,
        Route::HistoryAfter,
        Route::Participants,
        Route::PresenceOnline,
        Route::PendingDms,
    ];

    fn name(self) -> &'static str {
        match self {
            Route::ListRooms => "GET /rooms",
            Route::CreateRoom => "POST /rooms",
            Route::Join => "POST /rooms/{id}/join",
            Route::History => "GET /rooms/{id}/messages?limit",
            Route::HistoryBefore => "GET /rooms/{id}/messages?before&limit",
            Route::HistoryAfter => "GET /rooms/{id}/messages?after&limit",
            Route::Participants => "GET /rooms/{id}/participants",
            Route::PresenceOnline => "GET /presence/online",
            Route::PendingDms => "GET /dms/pending",
        }
    }

    /// The status every answer should have.
    fn expected(self) -> StatusCode {
        match self {
            Route::CreateRoom => StatusCode::CREATED,
            _ => StatusCode::OK,
        }
    }
}

/// One route's requests.
struct RouteStats {
    requests: u64,
    errors: u64,
    /// Of the expected answers, to the end of the body.
    latency: Histogram<u64>,
}

/// Everything the iterations recorded.
struct Stats {
    routes: Vec<RouteStats>,
    errors_by_status: BTreeMap<String, u64>,
    iterations: u64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            routes: Route::ALL
                .iter()
                .map(|_| RouteStats {
                    requests: 0,
                    errors: 0,
                    latency: histogram(),
                })
                .collect(),
            errors_by_status: BTreeMap::new(),
            iterations: 0,
        }
    }

    /// Records one answer (`Err`: none, with why); true when it was the expected one.
    fn record(&mut self, route: Route, answer: Result<StatusCode, &str>, micros: u64) -> bool {
        let r = &mut self.routes[route as usize];
        r.requests += 1;
        let status = match answer {
            Ok(status) if status == route.expected() => {
                r.latency.saturating_record(micros.max(1));
                return true;
            }
            Ok(status) => status.as_u16().to_string(),
            Err(why) => why.to_owned(),
        };
        r.errors += 1;
        *self.errors_by_status.entry(status).or_default() += 1;
        false
    }
}

/// A route's line in the summary.
#[derive(Debug, Serialize)]
struct RouteSummary {
    requests: u64,
    errors: u64,
    latency: Latency,
}

/// What `rest` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    scenario: &'static str,
    /// `closed` (each user one iteration at a time) or `open` (at `rate`).
    mode: &'static str,
    users: usize,
    rate: Option<u32>,
    duration_s: f64,
    iterations: u64,
    iterations_per_s: f64,
    requests: u64,
    requests_per_s: f64,
    /// Answers with another status than the route's (or none at all).
    errors: u64,
    /// Those by status; `timeout` and `transport` when there was no answer.
    errors_by_status: BTreeMap<String, u64>,
    routes: BTreeMap<&'static str, RouteSummary>,
    /// Room messages the writer had acknowledged meanwhile.
    written: u64,
    generator_cpu_percent: f64,
}

impl Summary {
    /// Why the run failed, if it did.
    pub(crate) fn failure(&self) -> Option<String> {
        if self.errors > 0 {
            Some(format!(
                "{} unexpected answers by status: {:?}",
                self.errors, self.errors_by_status
            ))
        } else if self.iterations == 0 {
            Some("no iteration finished".to_owned())
        } else {
            None
        }
    }
}

/// The first seq of a history page, if it has a message.
fn first_seq(page: &str) -> Option<i64> {
    #[derive(Deserialize)]
    struct Page {
        messages: Vec<Seq>,
    }
    #[derive(Deserialize)]
    struct Seq {
        seq: i64,
    }
    let page: Page = serde_json::from_str(page).ok()?;
    page.messages.first().map(|m| m.seq)
}

/// What every iteration shares.
struct Ctx {
    http: reqwest::Client,
    api: String,
    presence: String,
    run: String,
    room: String,
    page: u32,
    stats: Mutex<Stats>,
}

impl Ctx {
    /// Sends `req` as a `route` request and records its answer; the body
    /// when the status was the expected one.
    async fn call(&self, route: Route, req: RequestBuilder) -> Option<String> {
        let t0 = Instant::now();
        let answer = match req.send().await {
            Ok(r) => {
                let status = r.status();
                r.text().await.map(|body| (status, body))
            }
            Err(e) => Err(e),
        };
        let micros = t0.elapsed().as_micros() as u64;
        let mut stats = self.stats.lock().expect("stats lock");
        match answer {
            Ok((status, body)) => {
                let ok = stats.record(route, Ok(status), micros);
                if !ok && stats.errors_by_status[status.as_str()] == 1 {
                    eprintln!("{}: {status} {body}", route.name());
                }
                ok.then_some(body)
            }
            Err(e) => {
                let why = if e.is_timeout() {
                    "timeout"
                } else {
                    "transport"
                };
                if !stats.errors_by_status.contains_key(why) {
                    eprintln!("{}: {e}", route.name());
                }
                stats.record(route, Err(why), micros);
                None
            }
        }
    }

    /// Iteration `n` of the user whose token is `token`.
    async fn iteration(&self, token: &str, user: usize, n: u64) {
        let (api, room, limit) = (&self.api, &self.room, self.page);
        let get = |url: String| self.http.get(url).bearer_auth(token);
        let post = |url: String| self.http.post(url).bearer_auth(token);
        self.call(Route::ListRooms, get(format!("{api}/rooms")))
            .await;
        if n.is_multiple_of(10) {
            let name = format!("{}-u{user}-{n}", self.run);
            let body = json!({"name": name, "max_participants": 100_000});
            self.call(Route::CreateRoom, post(format!("{api}/rooms")).json(&body))
                .await;
        }
        self.call(Route::Join, post(format!("{api}/rooms/{room}/join")))
            .await;
        let history = format!("{api}/rooms/{room}/messages");
        let latest = self
            .call(Route::History, get(format!("{history}?limit={limit}")))
            .await;
        if let Some(first) = latest.as_deref().and_then(first_seq) {
            // One page further back, and one from the middle of the history.
            let before = format!("{history}?before={first}&limit={limit}");
            self.call(Route::HistoryBefore, get(before)).await;
            let after = format!("{history}?after={}&limit={limit}", first / 2);
            self.call(Route::HistoryAfter, get(after)).await;
        }
        self.call(
            Route::Participants,
            get(format!("{api}/rooms/{room}/participants")),
        )
        .await;
        let online = format!("{}/presence/online", self.presence);
        self.call(Route::PresenceOnline, get(online)).await;
        self.call(Route::PendingDms, get(format!("{api}/dms/pending")))
            .await;
        self.stats.lock().expect("stats lock").iterations += 1;
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Summary> {
    let api = args.cluster.api();
    let presence = args
        .presence
        .as_deref()
        .map_or(api.clone(), |p| p.trim_end_matches('/').to_owned());
    let users = args.concurrency.max(1);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(users)
        .build()?;
    let tokens = Users::new(&args.cluster.secret);
    let run = format!("r{}", now_us() % 1_000_000_000);
    let owner = tokens.token(&format!("{run}-owner"));
    let room = create_room(&http, &api, &owner, &format!("{run}-shared")).await?;
    let writer = match args.write_rate {
        0 => None,
        _ => Some(
            member(
                args.cluster.gateway(0),
                tokens.token(&format!("{run}-writer")),
                room.clone(),
                Proto::Telepath,
            )
            .await?,
        ),
    };
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..users)
            .map(|u| tokens.token(&format!("{run}-u{u}")))
            .collect(),
    );
    let ctx = Arc::new(Ctx {
        http,
        api,
        presence,
        run,
        room: room.clone(),
        page: args.page,
        stats: Mutex::new(Stats::new()),
    });

    let cpu_before = own_cpu_seconds();
    let started = Instant::now();
    let deadline = started + args.duration;
    let writing = writer.map(|ws| {
        tokio::spawn(publish(
            ws,
            room,
            args.write_rate,
            args.duration,
            100,
            Proto::Telepath,
        ))
    });
    let mut iterations = tokio::task::JoinSet::new();
    match args.rate {
        // Each user in its own loop.
        None => {
            for u in 0..users {
                let (ctx, tokens) = (ctx.clone(), tokens.clone());
                iterations.spawn(async move {
                    let mut n = 0;
                    while Instant::now() < deadline {
                        ctx.iteration(&tokens[u], u, n).await;
                        n += 1;
                    }
                });
            }
        }
        // Iteration k at its time, as user k % users's next.
        Some(rate) => {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut k = 0;
            loop {
                tick.tick().await;
                if Instant::now() >= deadline {
                    break;
                }
                let (ctx, tokens) = (ctx.clone(), tokens.clone());
                let (u, n) = (k % users, (k / users) as u64);
                iterations.spawn(async move { ctx.iteration(&tokens[u], u, n).await });
                k += 1;
            }
        }
    }
    while let Some(done) = iterations.join_next().await {
        done?;
    }
    let wall = started.elapsed();
    let cpu = own_cpu_seconds() - cpu_before;
    let written = match writing {
        Some(w) => w.await??.acked,
        None => 0,
    };

    let stats = ctx.stats.lock().expect("stats lock");
    let requests = stats.routes.iter().map(|r| r.requests).sum();
    let secs = wall.as_secs_f64();
    Ok(Summary {
        scenario: "rest",
        mode: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        users,
        rate: args.rate,
        duration_s: secs,
        iterations: stats.iterations,
        iterations_per_s: stats.iterations as f64 / secs,
        requests,
        requests_per_s: requests as f64 / secs,
        errors: stats.routes.iter().map(|r| r.errors).sum(),
        errors_by_status: stats.errors_by_status.clone(),
        routes: Route::ALL
            .iter()
            .zip(&stats.routes)
            .map(|(route, r)| {
                let line = RouteSummary {
                    requests: r.requests,
                    errors: r.errors,
                    latency: Latency::from_micros(&r.latency),
                };
                (route.name(), line)
            })
            .collect(),
        written,
        generator_cpu_percent: cpu_percent(cpu, wall),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unexpected_answers_are_counted_by_status_and_fail_the_run() {
        let mut stats = Stats::new();
        assert!(stats.record(Route::CreateRoom, Ok(StatusCode::CREATED), 900));
        assert!(!stats.record(Route::CreateRoom, Ok(StatusCode::OK), 900));
        assert!(stats.record(Route::Join, Ok(StatusCode::OK), 1200));
        assert!(!stats.record(Route::Participants, Ok(StatusCode::SERVICE_UNAVAILABLE), 5));
        assert!(!stats.record(Route::ListRooms, Err("timeout"), 30_000_000));
        let by_status: Vec<(&str, u64)> = stats
            .errors_by_status
            .iter()
            .map(|(s, n)| (s.as_str(), *n))
            .collect();
        assert_eq!(by_status, [("200", 1), ("503", 1), ("timeout", 1)]);
        let create = &stats.routes[Route::CreateRoom as usize];
        assert_eq!(
            (create.requests, create.errors, create.latency.len()),
            (2, 1, 1)
        );
    }

    #[test]
    fn the_next_history_pages_start_from_the_latest_pages_first_seq() {
        let page = r#"{"messages":[{"seq":51,"body":"a"},{"seq":52,"body":"b"}],"has_more":true}"#;
        assert_eq!(first_seq(page), Some(51));
        assert_eq!(first_seq(r#"{"messages":[],"has_more":false}"#), None);
        assert_eq!(first_seq("not json"), None);
    }
}
