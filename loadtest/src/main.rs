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
//! - `room-fanout`: rooms with members spread over gateways and one
//!   publisher each; time from send to delivery, lost and repeated seqs.
//! - `rest`: a client's REST mix (rooms, joins, history pages,
//!   participants, presence, pending DMs); latency per route, errors by status.
//!
//! `dm` and `rest` exit non-zero, after the summary, when the server got
//! something wrong.

mod api_send;
mod client;
mod connections;
mod dm;
mod proto;
mod reconnect;
mod report;
mod rest;
mod room_fanout;

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
    /// Many idle authenticated connections to one gateway: handshakes/s, memory per connection.
    Connections(connections::Args),
    /// DMs to online and offline recipients: send-to-receipt latency, offline drain, loss, repeats.
    Dm(dm::Args),
    /// Everybody drops at once and resumes with `since`: time to be back, gaps, repeats.
    Reconnect(reconnect::Args),
    /// A REST mix at a rate or a concurrency: latency per route kind, errors by status.
    Rest(rest::Args),
    /// Rooms with members over several gateways, one publisher each: send-to-delivery latency, loss, repeats.
    RoomFanout(room_fanout::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (summary, failure) = match cli.scenario {
        Scenario::ApiSend(args) => (serde_json::to_value(api_send::run(args).await?)?, None),
        Scenario::Reconnect(args) => (serde_json::to_value(reconnect::run(args).await?)?, None),
        Scenario::Connections(args) => (serde_json::to_value(connections::run(args).await?)?, None),
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
