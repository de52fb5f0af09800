//! `telepath-load`: Telepath's own load generator, for rates k6 cannot drive
//! from two cores. Each scenario prints one JSON summary on stdout.
//!
//! Scenarios so far:
//! - `api-send`: room messages persisted through the api's internal send
//!   route (what a gateway does for every `send`), measuring acknowledged
//!   messages per second and ack latency.
//! - `connections`: idle authenticated connections to one gateway;
//!   handshakes per second and the gateway's memory per connection.
//! - `dm`: direct messages to online and offline recipients; send to
//!   receipt, offline queue drain, missing, repeated and refused DMs.
//! - `reconnect`: a reconnect storm; every client resumes with `since`.
//! - `mix`: messages that live: members of rooms over every gateway send,
//!   react, read and edit; per-op ack latency, and every seq of each
//!   room's log (messages and change events) delivered once and in order.
//! - `search`: `GET /search` queries at a concurrency over a database
//!   `loadtest/lib/search_seed.py` filled; latency per query shape.
//! - `room-fanout`: rooms with members spread over gateways and one
//!   publisher each; time from send to delivery, lost and repeated seqs.
//! - `rest`: a client's REST mix (rooms, joins, history pages,
//!   participants, presence, pending DMs); latency per route, errors by status.
//! - `chaos`: rooms with members resuming as a careful SDK does while
//!   `loadtest/chaos.sh` injects faults; holes, repeats and losses against
//!   SQLite.
//! - `churn`: connect, join, send, leave, close in a loop, for
//!   `loadtest/soak.sh`.
//! - `proxy` (not a scenario): the services' fault-injecting TCP proxy as a
//!   process, with an HTTP control endpoint, for `chaos.sh`.
//!
//! `dm`, `rest`, `mix`, `search` and `chaos` exit non-zero, after the summary, when the
//! server got something wrong.

mod api_send;
mod chaos;
mod churn;
mod client;
mod connections;
mod dm;
mod mix;
mod proto;
mod proxy;
mod reconnect;
mod report;
mod rest;
mod room_fanout;
mod search;

use clap::{Parser, Subcommand};
use serde_json::Value;

/// Telepath load generator.
#[derive(Debug, Parser)]
#[command(name = "telepath-load", version, about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Persist room messages through the api alone (commit, then ack).
    ApiSend(api_send::Args),
    /// Delivery while loadtest/chaos.sh injects faults: holes, repeats, losses against SQLite.
    Chaos(chaos::Args),
    /// Connect, join, send, leave, close in a loop (the load of loadtest/soak.sh).
    Churn(churn::Args),
    /// Many idle authenticated connections to one gateway: handshakes/s, memory per connection.
    Connections(connections::Args),
    /// DMs to online and offline recipients: send-to-receipt latency, offline drain, loss, repeats.
    Dm(dm::Args),
    /// Members of rooms over every gateway send, react, read and edit: per-op ack latency, delivery of every seq.
    Mix(mix::Args),
    /// Everybody drops at once and resumes with `since`: time to be back, gaps, repeats.
    Reconnect(reconnect::Args),
    /// A REST mix at a rate or a concurrency: latency per route kind, errors by status.
    Rest(rest::Args),
    /// Rooms with members over several gateways, one publisher each: send-to-delivery latency, loss, repeats.
    RoomFanout(room_fanout::Args),
    /// `GET /search` queries at a concurrency over a seeded database: latency per query shape.
    Search(search::Args),
    /// A fault-injecting TCP proxy with an HTTP control endpoint (for loadtest/chaos.sh).
    Proxy(proxy::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (summary, failure) = match cli.scenario {
        Scenario::ApiSend(args) => (serde_json::to_value(api_send::run(args).await?)?, None),
        Scenario::Chaos(args) => judged(chaos::run(args).await?, chaos::Summary::failure)?,
        Scenario::Churn(args) => (serde_json::to_value(churn::run(args).await?)?, None),
        Scenario::Proxy(args) => return proxy::run(args).await,
        Scenario::Reconnect(args) => (serde_json::to_value(reconnect::run(args).await?)?, None),
        Scenario::Connections(args) => (serde_json::to_value(connections::run(args).await?)?, None),
        Scenario::Mix(args) => judged(mix::run(args).await?, mix::Summary::failure)?,
        Scenario::Search(args) => judged(search::run(args).await?, search::Summary::failure)?,
        Scenario::Dm(args) => judged(dm::run(args).await?, dm::Summary::failure)?,
        Scenario::Rest(args) => judged(rest::run(args).await?, rest::Summary::failure)?,
        Scenario::RoomFanout(args) => (serde_json::to_value(room_fanout::run(args).await?)?, None),
    };
    println!("{}", serde_json::to_string_pretty(&summary)?);
    match failure {
        Some(why) => anyhow::bail!(why),
        None => Ok(()),
    }
}

/// A summary and why its run failed, if it did.
fn judged<S: serde::Serialize>(
    summary: S,
    failure: fn(&S) -> Option<String>,
) -> anyhow::Result<(Value, Option<String>)> {
    Ok((serde_json::to_value(&summary)?, failure(&summary)))
}
