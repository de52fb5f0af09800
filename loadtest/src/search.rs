//! `search`: `GET /search?q=…` at a concurrency (closed loop: each worker
//! one query at a time) for a duration, over a database that
//! `loadtest/lib/search_seed.py` filled (its `--out` file gives the users,
//! the rooms and the vocabulary by rank, `--vocab` here). Queries take
//! turns through six shapes of 1–3 words drawn from the seeded vocabulary
//! (common words are in most messages, rare ones in a few; the last word of
//! every query matches as a prefix, so `prefix` is the first three letters
//! of a common word), each asked over every room of the caller and limited
//! to one room (`room=`) in turn. Reports latency percentiles (request to
//! the end of the body) per shape and scope and overall, results per page,
//! and answers other than 200 by status (any fails the run).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::client::Users;
use crate::report::{Latency, cpu_percent, own_cpu_seconds};
use crate::room_fanout::histogram;

/// `telepath-load search`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Base URL of the api (or the load balancer, or an all-in-one).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    /// JWT secret of the deployment: tokens are signed here.
    #[arg(long, env = "TELEPATH_JWT_SECRET", default_value = telepath_shared::config::DEV_JWT_SECRET)]
    secret: String,
    /// What the seeder wrote (`search_seed.py --out`): users, rooms, vocabulary.
    #[arg(long)]
    vocab: std::path::PathBuf,
    /// Concurrent workers, one query at a time each.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// How long to query.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Results per page (`limit`).
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Seed of the query choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// What the seeder wrote.
#[derive(Deserialize)]
struct Seeded {
    messages: u64,
    users: Vec<String>,
    rooms: Vec<String>,
    words: Vec<String>,
}

/// The shapes of query, by the ranks their words come from.
const SHAPES: [&str; 6] = [
    "1 common",
    "1 rare",
    "2 common",
    "common + rare",
    "3 words",
    "prefix",
];

/// Words ranked below this are common (the seeded Zipf law puts the first
/// of them in about half the messages, the 100th in about 1 in 200).
const COMMON: usize = 100;

/// splitmix64 (no `rand` in the generator).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n.max(1) as u64) as usize
    }
}

/// Query `q` of shape `shape` from `words` (by rank).
fn query(shape: usize, words: &[String], rng: &mut Rng) -> String {
    let n = words.len();
    let common = |rng: &mut Rng| words[rng.below(COMMON.min(n))].as_str();
    // The rarest three quarters of the vocabulary.
    let rare = |rng: &mut Rng| words[n / 4 + rng.below(n - n / 4)].as_str();
    let ranked = |rng: &mut Rng, upto: usize| words[rng.below(upto.min(n))].as_str();
    match shape {
        0 => common(rng).to_owned(),
        1 => rare(rng).to_owned(),
        2 => format!("{} {}", ranked(rng, 300), ranked(rng, 300)),
        3 => format!("{} {}", common(rng), rare(rng)),
        4 => {
            // Seeded words occur independently: three from the first 150
            // ranks still share messages often enough to find some.
            let w: Vec<&str> = (0..3).map(|_| ranked(rng, 150)).collect();
            w.join(" ")
        }
        _ => {
            let w = ranked(rng, 500);
            w.chars().take(3).collect()
        }
    }
}

/// One shape and scope's queries.
struct Bucket {
    queries: u64,
    errors: u64,
    results: u64,
    empty: u64,
    latency: Histogram<u64>,
}

/// A line of the summary.
#[derive(Debug, Serialize)]
struct BucketSummary {
    queries: u64,
    errors: u64,
    /// Results per page, on average.
    mean_results: f64,
    /// Share of the queries with no result.
    empty_share: f64,
    latency: Latency,
}

/// What `search` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    scenario: &'static str,
    /// Messages the seeder put in.
    seeded_messages: u64,
    rooms: usize,
    vocabulary: usize,
    concurrency: usize,
    limit: u32,
    duration_s: f64,
    queries: u64,
    queries_per_s: f64,
    errors: u64,
    errors_by_status: BTreeMap<String, u64>,
    latency: Latency,
    /// `<shape>, all rooms` and `<shape>, one room`.
    by_shape: BTreeMap<String, BucketSummary>,
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
        } else if self.queries == 0 {
            Some("no query finished".to_owned())
        } else {
            None
        }
    }
}

/// What the workers share.
struct Stats {
    buckets: Vec<Bucket>,
    errors_by_status: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
struct Page {
    results: Vec<serde::de::IgnoredAny>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Summary> {
    let seeded: Seeded = serde_json::from_slice(
        &std::fs::read(&args.vocab).with_context(|| format!("reading {}", args.vocab.display()))?,
    )
    .context("the seeder's vocabulary file")?;
    anyhow::ensure!(
        !seeded.users.is_empty() && !seeded.rooms.is_empty() && seeded.words.len() >= 8,
        "the vocabulary file names no users, rooms or words"
    );
    let api = args.api.trim_end_matches('/').to_owned();
    let workers = args.concurrency.max(1);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(workers)
        .build()?;
    let users = Users::new(&args.secret);
    let tokens: Vec<String> = seeded.users.iter().map(|u| users.token(u)).collect();
    let stats = Arc::new(Mutex::new(Stats {
        buckets: (0..SHAPES.len() * 2)
            .map(|_| Bucket {
                queries: 0,
                errors: 0,
                results: 0,
                empty: 0,
                latency: histogram(),
            })
            .collect(),
        errors_by_status: BTreeMap::new(),
    }));
    let seeded = Arc::new(seeded);
    let tokens = Arc::new(tokens);

    let cpu_before = own_cpu_seconds();
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (http, api, stats, seeded, tokens) = (
            http.clone(),
            api.clone(),
            stats.clone(),
            seeded.clone(),
            tokens.clone(),
        );
        let limit = args.limit.to_string();
        let mut rng = Rng(args.seed.wrapping_mul(1000).wrapping_add(w as u64));
        tasks.spawn(async move {
            // Worker w starts at its own place in the turns.
            let mut k = w;
            while Instant::now() < deadline {
                let (shape, one_room) = (k % SHAPES.len(), (k / SHAPES.len()) % 2 == 1);
                k += 1;
                let q = query(shape, &seeded.words, &mut rng);
                let token = &tokens[rng.below(tokens.len())];
                let mut params = vec![("q", q), ("limit", limit.clone())];
                if one_room {
                    params.push(("room", seeded.rooms[rng.below(seeded.rooms.len())].clone()));
                }
                let t0 = Instant::now();
                let answer = match http
                    .get(format!("{api}/search"))
                    .bearer_auth(token)
                    .query(&params)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let status = r.status();
                        r.text().await.map(|body| (status, body))
                    }
                    Err(e) => Err(e),
                };
                let micros = t0.elapsed().as_micros() as u64;
                let mut s = stats.lock().expect("stats lock");
                let b = &mut s.buckets[shape * 2 + usize::from(one_room)];
                b.queries += 1;
                let why = match answer {
                    Ok((status, body)) if status.is_success() => {
                        match serde_json::from_str::<Page>(&body) {
                            Ok(page) => {
                                b.latency.saturating_record(micros.max(1));
                                b.results += page.results.len() as u64;
                                b.empty += u64::from(page.results.is_empty());
                                continue;
                            }
                            Err(_) => ("bad body".to_owned(), body),
                        }
                    }
                    Ok((status, body)) => (status.as_str().to_owned(), body),
                    Err(e) if e.is_timeout() => ("timeout".to_owned(), e.to_string()),
                    Err(e) => ("transport".to_owned(), e.to_string()),
                };
                b.errors += 1;
                let n = s.errors_by_status.entry(why.0.clone()).or_default();
                *n += 1;
                if *n == 1 {
                    eprintln!("GET /search ({}): {} {}", SHAPES[shape], why.0, why.1);
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done?;
    }
    let wall = started.elapsed();
    let cpu = own_cpu_seconds() - cpu_before;

    let stats = stats.lock().expect("stats lock");
    let mut all = histogram();
    let mut by_shape = BTreeMap::new();
    for (i, b) in stats.buckets.iter().enumerate() {
        all.add(&b.latency).expect("same bounds");
        let ok = b.queries - b.errors;
        let scope = if i % 2 == 1 { "one room" } else { "all rooms" };
        by_shape.insert(
            format!("{}, {scope}", SHAPES[i / 2]),
            BucketSummary {
                queries: b.queries,
                errors: b.errors,
                mean_results: b.results as f64 / ok.max(1) as f64,
                empty_share: b.empty as f64 / ok.max(1) as f64,
                latency: Latency::from_micros(&b.latency),
            },
        );
    }
    let queries: u64 = stats.buckets.iter().map(|b| b.queries).sum();
    let secs = wall.as_secs_f64();
    Ok(Summary {
        scenario: "search",
        seeded_messages: seeded.messages,
        rooms: seeded.rooms.len(),
        vocabulary: seeded.words.len(),
        concurrency: workers,
        limit: args.limit,
        duration_s: secs,
        queries,
        queries_per_s: queries as f64 / secs,
        errors: stats.buckets.iter().map(|b| b.errors).sum(),
        errors_by_status: stats.errors_by_status.clone(),
        latency: Latency::from_micros(&all),
        by_shape,
        generator_cpu_percent: cpu_percent(cpu, wall),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_take_their_words_from_the_ranks_of_their_shape() {
        let words: Vec<String> = (0..4000).map(|i| format!("w{i:04}x")).collect();
        let rank = |w: &str| w[1..5].parse::<usize>().unwrap();
        let mut rng = Rng(7);
        for _ in 0..200 {
            assert!(rank(&query(0, &words, &mut rng)) < COMMON);
            assert!(rank(&query(1, &words, &mut rng)) >= 1000);
            let two = query(3, &words, &mut rng);
            let (a, b) = two.split_once(' ').unwrap();
            assert!(rank(a) < COMMON && rank(b) >= 1000);
            assert_eq!(query(4, &words, &mut rng).split(' ').count(), 3);
            assert_eq!(query(5, &words, &mut rng).chars().count(), 3);
        }
    }
}
